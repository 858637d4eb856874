"""Tests of ebmlib.scale: the smoke switch, its caps, and where run directories go."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from ebmlib.data import (
    REMOTE_FILES,
    load_adult,
    load_cifar10,
    load_citeseer_ego,
    load_fashion_mnist,
    load_mnist,
)
from ebmlib.scale import run_dir, runs_home, smoke_cap, smoke_data, smoke_run


def test_smoke_cap_lowers_only_the_named_counts_and_only_in_the_smoke_run(monkeypatch):
    settings = {"n_iters": 20_000, "n_steps": 2, "batch_size": 256}
    monkeypatch.delenv("EBMLIB_SMOKE", raising=False)
    assert smoke_cap(settings, {"n_iters": 3, "n_steps": 5}) == settings
    monkeypatch.setenv("EBMLIB_SMOKE", "1")
    assert smoke_run()
    # a cap above the value leaves it (n_steps), shapes are untouched (batch_size)
    assert smoke_cap(settings, {"n_iters": 3, "n_steps": 5}) == {"n_iters": 3, "n_steps": 2, "batch_size": 256}
    assert settings["n_iters"] == 20_000  # the caller's dict is not modified


def test_smoke_switch_and_caps_refuse_bad_values(monkeypatch):
    monkeypatch.setenv("EBMLIB_SMOKE", "yes")
    with pytest.raises(ValueError, match="EBMLIB_SMOKE"):
        smoke_run()
    monkeypatch.setenv("EBMLIB_SMOKE", "0")
    with pytest.raises(ValueError, match="n_itres"):
        smoke_cap({"n_iters": 5}, {"n_itres": 3})
    with pytest.raises(ValueError, match="caps"):
        smoke_cap({"n_iters": 5}, {"n_iters": -1})


def test_run_dirs_only_at_full_scale_and_fresh_in_the_smoke_run(monkeypatch, tmp_path):
    monkeypatch.setenv("EBMLIB_RUNS", str(tmp_path))
    monkeypatch.delenv("EBMLIB_SMOKE", raising=False)
    assert runs_home() == tmp_path
    assert run_dir("ch2", "mnist", "ci") is None and run_dir("ch2", "mnist", "book") is None
    assert run_dir("ch2", "mnist", "full") == tmp_path / "ch2" / "mnist"
    monkeypatch.setenv("EBMLIB_SMOKE", "1")
    smoke = run_dir("ch2", "mnist", "full")
    assert tmp_path not in smoke.parents and smoke.name == "mnist"
    assert run_dir("ch2", "other", "full").parent == smoke.parent  # one fresh folder per process
    monkeypatch.delenv("EBMLIB_RUNS")
    monkeypatch.setenv("EBMLIB_DATA", str(tmp_path / "cache"))
    assert runs_home() == Path(tmp_path / "cache" / "runs")
    for bad in ("", "a/b", ".."):
        with pytest.raises(ValueError, match="experiment"):
            run_dir("ch2", bad, "full")
    with pytest.raises(ValueError, match="scale"):
        run_dir("ch2", "mnist", "huge")


def test_smoke_cap_caps_each_entry_of_a_schedule(monkeypatch):
    settings = {"snapshots": (1000, 5000, 30_000), "n_iters": 30_000}
    monkeypatch.setenv("EBMLIB_SMOKE", "1")
    assert smoke_cap(settings, {"snapshots": 5, "n_iters": 5}) == {"snapshots": (5,), "n_iters": 5}
    assert smoke_cap({"steps": (2, 10)}, {"steps": 5}) == {"steps": (2, 5)}
    with pytest.raises(ValueError, match="count"):
        smoke_cap({"lr": 1e-3}, {"lr": 1})


def test_smoke_cap_keeps_the_first_repetitions_only_in_the_smoke_run(monkeypatch):
    settings = {"toys": ("moons", "rings", "pinwheel"), "seeds": (0, 1, 2), "n_iters": 100}
    monkeypatch.delenv("EBMLIB_SMOKE", raising=False)
    assert smoke_cap(settings, {"n_iters": 5}, first={"toys": 1, "seeds": 2}) == settings
    monkeypatch.setenv("EBMLIB_SMOKE", "1")
    assert smoke_cap(settings, {"n_iters": 5}, first={"toys": 1, "seeds": 2}) == {
        "toys": ("moons",), "seeds": (0, 1), "n_iters": 5}
    with pytest.raises(ValueError, match="first"):
        smoke_cap(settings, {}, first={"n_iters": 1})  # not a list of repetitions
    with pytest.raises(ValueError, match="first"):
        smoke_cap(settings, {}, first={"toy": 1})
    with pytest.raises(ValueError, match="first"):
        smoke_cap(settings, {}, first={"toys": 0})


def test_smoke_data_feeds_the_real_loaders_files_of_the_published_shapes(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("EBMLIB_DATA", str(tmp_path))  # restored after the test, as are the registry entries
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the fixture folder (57 MB) goes with tmp_path
    for dataset in ("mnist", "fashion_mnist", "cifar10", "adult", "citeseer"):
        monkeypatch.setitem(REMOTE_FILES, dataset, REMOTE_FILES[dataset])
    monkeypatch.delenv("EBMLIB_SMOKE", raising=False)
    assert smoke_data("mnist") is None and REMOTE_FILES["mnist"][0].urls  # outside the smoke run: nothing
    monkeypatch.setenv("EBMLIB_SMOKE", "1")
    home = smoke_data("mnist", "adult", "citeseer")
    assert "not the real data" in capsys.readouterr().out
    assert home != tmp_path and all((home / d).is_dir() for d in ("mnist", "adult", "citeseer"))
    images, labels = load_mnist(split="train")
    assert images.shape == (60_000, 1, 28, 28) and images.dtype == torch.uint8 and labels.max() <= 9
    assert load_mnist(split="test")[0].shape == (10_000, 1, 28, 28)
    table = load_adult()
    assert 29_000 < table.rows().shape[0] < 32_561  # rows with "?" dropped
    assert len(load_citeseer_ego(n_graphs=200, seed=0)) == 200
    with pytest.raises(ValueError, match="datasets"):
        smoke_data("celeba")


def test_smoke_data_of_the_other_image_sets(monkeypatch, tmp_path):
    monkeypatch.setenv("EBMLIB_DATA", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for dataset in ("fashion_mnist", "cifar10"):
        monkeypatch.setitem(REMOTE_FILES, dataset, REMOTE_FILES[dataset])
    monkeypatch.setenv("EBMLIB_SMOKE", "1")
    smoke_data("fashion_mnist", "cifar10")
    assert load_fashion_mnist(split="test")[0].shape == (10_000, 1, 28, 28)
    images, labels = load_cifar10(split="train")
    assert images.shape == (50_000, 3, 32, 32) and images.dtype == torch.uint8 and labels.max() <= 9
    assert load_cifar10(split="test")[0].shape == (10_000, 3, 32, 32)


def test_smoke_report_finds_nested_run_directories(tmp_path):
    from smoke import checkpoints

    from ebmlib.checkpoint import CHECKPOINT_NAME, save_checkpoint

    runs = tmp_path / "ebmlib-smoke-runs-abc" / "03_ch"
    for experiment in ("toy-CD", "tstr-adult/TabCD"):  # compare_tstr keeps one run per loss inside its run_dir
        save_checkpoint(runs / experiment / CHECKPOINT_NAME, {"w": torch.zeros(10)})
    found = checkpoints(tmp_path)
    assert [row["experiment"] for row in found] == ["03_ch/toy-CD", "03_ch/tstr-adult/TabCD"]
    assert all(row["mb"] >= 0 and row["save_seconds"] >= 0 for row in found)
