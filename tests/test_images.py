"""Tests of ebmlib.images: preprocessing, the digits loader, procedural ellipses, the MNIST, Fashion-MNIST and
CIFAR-10 loaders.

The file loaders are tested on tiny files of the published formats written here; no test downloads anything.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

import numpy as np
import pytest
import torch

from ebmlib.data import (
    CIFAR10_ARCHIVE,
    CIFAR10_BATCHES,
    DIGITS_LEVELS,
    MNIST_FILES,
    dequantise,
    ellipse_dataset,
    inverse_logit_transform,
    load_cifar10,
    load_digits_levels,
    load_fashion_mnist,
    load_mnist,
    logit_transform,
    preprocess,
    read_cifar_records,
    read_idx,
    render_ellipses,
)
from ebmlib.plotting import image_grid


def test_dequantise_fills_each_level_uniformly():
    levels = torch.full((20_000,), 3, dtype=torch.uint8)
    x = dequantise(levels, 17)
    assert (x >= 3 / 17).all() and (x < 4 / 17).all()
    assert abs(x.mean().item() - 3.5 / 17) < 1e-3
    with pytest.raises(ValueError, match="levels"):
        dequantise(torch.tensor([17]), 17)
    with pytest.raises(ValueError, match="n_levels"):
        dequantise(levels, 1)


def test_logit_transform_round_trip():
    x = torch.rand(1000, dtype=torch.float64)
    assert torch.allclose(inverse_logit_transform(logit_transform(x)), x, atol=1e-9)
    assert logit_transform(torch.tensor([0.0, 1.0])).abs().max() == pytest.approx(13.8155, abs=1e-3)
    with pytest.raises(ValueError, match="x must lie"):
        logit_transform(torch.tensor([1.5]))
    assert inverse_logit_transform(torch.tensor([-50.0, 50.0])).tolist() == [0.0, 1.0]


def test_digits_loader_splits_and_ranges():
    train_x, train_y, test_x, test_y = load_digits_levels(test_fraction=0.25, seed=1)
    assert train_x.shape[1:] == (1, 8, 8) and len(train_x) + len(test_x) == 1797
    assert len(test_x) == round(0.25 * 1797) and train_x.dtype == torch.uint8
    assert int(train_x.max()) == DIGITS_LEVELS - 1 and set(test_y.tolist()) == set(range(10))
    assert len(train_y) == len(train_x) and len(test_y) == len(test_x)
    x = preprocess(train_x[:5], DIGITS_LEVELS)
    assert x.shape == (5, 64) and torch.isfinite(x).all()


def _centre_of_mass(images):
    grid = torch.arange(images.shape[-1], dtype=torch.float32)
    mass = images.sum((1, 2, 3))
    return (images.sum((1, 2)) @ grid) / mass, (images.sum((1, 3)) @ grid) / mass  # columns, rows


def test_ellipses_follow_their_latents():
    n = 32
    pos = torch.arange(n)
    zeros = torch.zeros(n, dtype=torch.long)
    images = render_ellipses(zeros + 5, zeros, pos, zeros + 16)
    cols, rows = _centre_of_mass(images)
    assert (cols.diff() > 0).all() and (rows - rows[0]).abs().max() < 0.05  # pos_x moves right only
    images_y = render_ellipses(zeros + 5, zeros, zeros + 16, pos)
    assert (_centre_of_mass(images_y)[1].diff() > 0).all()  # pos_y moves down
    one = torch.tensor([3])
    upright = render_ellipses(one, torch.tensor([0]), one, one)
    assert torch.equal(upright, render_ellipses(one, torch.tensor([2]), one, one))
    assert torch.equal(render_ellipses(one, torch.tensor([1]), one, one).transpose(-1, -2),
                       render_ellipses(one, torch.tensor([0]), one, one))
    areas = render_ellipses(torch.arange(6), zeros[:6], zeros[:6] + 10, zeros[:6] + 10).sum((1, 2, 3))
    assert (areas.diff() > 0).all()
    edge = render_ellipses(torch.tensor([5]), torch.tensor([0]), torch.tensor([31]), torch.tensor([0]))
    assert edge[..., :, -1].sum() == 0 and edge[..., 0, :].sum() == 0  # stays inside the frame
    with pytest.raises(ValueError, match="pos_x"):
        render_ellipses(one, one, torch.tensor([32]), one)


def test_ellipse_dataset_labels_are_position_bins():
    images, labels = ellipse_dataset(3000, generator=torch.Generator().manual_seed(0))
    assert images.shape == (3000, 1, 32, 32) and labels.shape == (3000, 2)
    assert labels.min() == 0 and labels.max() == 15
    assert len({tuple(r) for r in labels.tolist()}) > 240  # nearly all 256 configurations occur
    values = set(images.unique().tolist())
    assert values <= {0.0, 0.25, 0.5, 0.75, 1.0}
    cols, rows = _centre_of_mass(images)
    assert torch.corrcoef(torch.stack([cols, labels[:, 0].float()]))[0, 1] > 0.99
    assert torch.corrcoef(torch.stack([rows, labels[:, 1].float()]))[0, 1] > 0.99
    same, coarse = ellipse_dataset(3000, generator=torch.Generator().manual_seed(0), n_bins=8)
    assert torch.equal(same, images) and torch.equal(coarse, labels // 2)  # same draws, bins twice as wide
    with pytest.raises(ValueError, match="n_bins"):
        ellipse_dataset(10, n_bins=5)


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def mnist_fixture(tmp_path):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (7, 28, 28)), rng.integers(0, 10, 7)
    checksums = {}
    for name, array in zip(MNIST_FILES["test"], (images, labels)):
        raw = gzip.compress(_idx_bytes(array))
        (tmp_path / name).write_bytes(raw)
        checksums[name] = hashlib.sha256(raw).hexdigest()
    return tmp_path, images, labels, checksums


def test_mnist_loader_reads_verified_idx_files(mnist_fixture):
    root, images, labels, checksums = mnist_fixture
    x, y = load_mnist(root, "test", checksums=checksums)
    assert x.shape == (7, 1, 28, 28) and x.dtype == torch.uint8 and y.dtype == torch.long
    assert np.array_equal(x[:, 0].numpy(), images) and np.array_equal(y.numpy(), labels)


def test_mnist_loader_rejects_bad_files(mnist_fixture):
    root, _, _, checksums = mnist_fixture
    with pytest.raises(ValueError, match="SHA-256"):
        load_mnist(root, "test")  # the fixture is not the real MNIST
    with pytest.raises(ValueError, match="does not exist"):
        load_mnist(root, "train", checksums=checksums)
    with pytest.raises(ValueError, match="split"):
        load_mnist(root, "validation")
    with pytest.raises(ValueError, match="IDX"):
        read_idx(b"\x00\x00\x09\x01")
    with pytest.raises(ValueError, match="announces"):
        read_idx(_idx_bytes(np.zeros((2, 3)))[:-1])


def test_image_grid_tiles_samples():
    grid = image_grid(torch.zeros(5, 64), (8, 8), nrow=3)
    assert grid.shape == (2 * 9 + 1, 3 * 9 + 1) and grid.min() >= 0 and grid.max() <= 1
    with pytest.raises(ValueError, match="columns"):
        image_grid(torch.zeros(5, 63), (8, 8), nrow=3)


def test_fashion_mnist_reads_mnist_format_against_its_own_checksums(mnist_fixture):
    root, images, labels, checksums = mnist_fixture
    x, y = load_fashion_mnist(root, "test", checksums=checksums)
    assert np.array_equal(x[:, 0].numpy(), images) and np.array_equal(y.numpy(), labels)
    with pytest.raises(ValueError, match="SHA-256"):
        load_fashion_mnist(root, "test")  # pinned to Fashion-MNIST's published files, not these


def _cifar_records(rng, n):
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    return np.concatenate([labels[:, None], images.reshape(n, -1)], axis=1).tobytes(), images, labels


def test_cifar10_loader_reads_the_binary_archive(tmp_path):
    rng = np.random.default_rng(0)
    members, expected = {}, {}
    for split, names in CIFAR10_BATCHES.items():
        parts = [_cifar_records(rng, 3) for _ in names]
        members.update({name: raw for name, (raw, _, _) in zip(names, parts)})
        expected[split] = (np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]))
    with tarfile.open(tmp_path / CIFAR10_ARCHIVE, "w:gz") as archive:
        for name, raw in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            archive.addfile(info, io.BytesIO(raw))
    checksums = {CIFAR10_ARCHIVE: hashlib.sha256((tmp_path / CIFAR10_ARCHIVE).read_bytes()).hexdigest()}
    for split, (images, labels) in expected.items():
        x, y = load_cifar10(tmp_path, split, checksums=checksums)
        assert x.shape == (len(labels), 3, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.long
        assert np.array_equal(x.numpy(), images) and np.array_equal(y.numpy(), labels)
    with pytest.raises(ValueError, match="SHA-256"):
        load_cifar10(tmp_path, "test")
    with pytest.raises(ValueError, match="split"):
        load_cifar10(tmp_path, "validation", checksums=checksums)
    with pytest.raises(ValueError, match="whole CIFAR-10 records"):
        read_cifar_records(bytes(3072))
    with pytest.raises(ValueError, match="label 10"):
        read_cifar_records(bytes([10]) + bytes(3072))
