"""Tests of ebmlib.scale: the smoke switch, its caps, and where run directories go."""

from __future__ import annotations

from pathlib import Path

import pytest

from ebmlib.scale import run_dir, runs_home, smoke_cap, smoke_run


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
        smoke_cap({"n_iters": 5}, {"n_iters": 0})


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
