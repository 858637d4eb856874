"""Image data: scikit-learn's digits, procedural dSprites-style ellipses, MNIST, Fashion-MNIST and CIFAR-10 (fetched
on first use), and the dequantisation and logit transform of Nijkamp/Grathwohl-style image EBMs."""

from __future__ import annotations

import gzip
import io
import math
import tarfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ebmlib.data.fetch import fetch_dataset, remote_file
from ebmlib.utils import check_int, check_probability, check_tensor, read_verified

LOGIT_ALPHA = 1e-6
"""``α`` of the logit transform (App. B.2.1)."""


def dequantise(levels: Tensor, n_levels: int, *, generator: torch.Generator | None = None) -> Tensor:
    """Uniform dequantisation ``x̃ = (v + u) / L``, ``u ~ U[0, 1)``: values in ``[0, 1)``, shape of ``levels``.

    MNIST (``v = 255 x``, ``L = 256``) gives the paper's ``(255 x + u) / 256``; dSprites (``v = 7 x``,
    ``L = 8``) its ``(7 x + u) / 8``; the 8×8 digits have ``L = 17``.
    """
    check_tensor(levels, "levels", min_ndim=1)
    n_levels = check_int(n_levels, "n_levels", minimum=2)
    values = levels.float() if not levels.is_floating_point() else levels
    if (values < 0).any() or (values > n_levels - 1).any():
        raise ValueError(f"levels must lie in [0, {n_levels - 1}]")
    u = torch.rand(values.shape, generator=generator, dtype=values.dtype).to(values.device)
    return (values + u) / n_levels


def logit_transform(x: Tensor, alpha: float = LOGIT_ALPHA) -> Tensor:
    """``logit(α + (1 - 2α) x)`` for ``x ∈ [0, 1]``; maps to about ``[-13.8, 13.8]`` for ``α = 10⁻⁶``."""
    check_tensor(x, "x", min_ndim=1, floating=True)
    alpha = check_probability(alpha, "alpha")
    if (x < 0).any() or (x > 1).any():
        raise ValueError("x must lie in [0, 1]")
    squeezed = alpha + (1 - 2 * alpha) * x
    return torch.log(squeezed) - torch.log1p(-squeezed)


def inverse_logit_transform(x_bar: Tensor, alpha: float = LOGIT_ALPHA) -> Tensor:
    """Inverse of :func:`~ebmlib.data.logit_transform`, clipped to ``[0, 1]`` (samples may leave the data's range)."""
    check_tensor(x_bar, "x_bar", min_ndim=1, floating=True)
    alpha = check_probability(alpha, "alpha")
    return ((torch.sigmoid(x_bar) - alpha) / (1 - 2 * alpha)).clamp(0, 1)


DIGITS_LEVELS = 17
"""Grey levels of the 8×8 digits (0, …, 16)."""


def load_digits_levels(*, test_fraction: float = 0.2, seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn's 1,797 8×8 digits as integer levels, split at random into train and test.

    Returns
    -------
    train_levels, train_labels, test_levels, test_labels
        Levels ``(N, 1, 8, 8)`` (``torch.uint8``, 0–16) and labels ``(N,)`` (``torch.long``).
    """
    from sklearn.datasets import load_digits

    check_probability(test_fraction, "test_fraction")
    check_int(seed, "seed", minimum=0)
    digits = load_digits()
    levels = torch.from_numpy(digits.images.astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_test = round(test_fraction * len(labels))
    test, train = order[:n_test], order[n_test:]
    return levels[train], labels[train], levels[test], labels[test]


ELLIPSE_SCALES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
"""The six dSprites scales."""


ELLIPSE_ORIENTATIONS = (0.0, 0.5 * math.pi, math.pi, 1.5 * math.pi)
"""The rotations kept by the paper, the multiples of 90°."""


N_POSITIONS, N_POSITION_BINS = 32, 16
"""dSprites' 32 x and 32 y positions, binned in pairs into 16 classes each."""


def render_ellipses(scale: Tensor, orientation: Tensor, pos_x: Tensor, pos_y: Tensor, *, size: int = 32,
                    supersample: int = 2) -> Tensor:
    """Draw ellipses as dSprites does, then downsample: images ``(N, 1, size, size)`` in ``[0, 1]``.

    Each ellipse is binary on a ``supersample · size`` grid (semi-axes ``0.16 s`` and ``0.08 s`` of the image
    width for scale ``s``; centre ``0.19 + 0.62 · pos / 31`` of the width, so every ellipse stays inside) and
    averaged over ``supersample × supersample`` blocks — for ``supersample = 2`` the bilinear 64→32
    downsampling of the paper. ``pos_x`` moves the ellipse to the right (columns), ``pos_y`` down (rows).

    Parameters
    ----------
    scale, orientation, pos_x, pos_y
        ``(N,)`` integer indices into :data:`~ebmlib.data.ELLIPSE_SCALES`,
        :data:`~ebmlib.data.ELLIPSE_ORIENTATIONS` and ``0..31``.
    """
    check_int(size, "size", minimum=4)
    check_int(supersample, "supersample", minimum=1)
    check_tensor(scale, "scale", ndim=1)
    for name, t, top in (("scale", scale, len(ELLIPSE_SCALES)), ("orientation", orientation,
                         len(ELLIPSE_ORIENTATIONS)), ("pos_x", pos_x, N_POSITIONS), ("pos_y", pos_y, N_POSITIONS)):
        check_tensor(t, name, ndim=1)
        if len(t) != len(scale):
            raise ValueError(f"{name} must have one entry per ellipse, like scale: {len(t)} != {len(scale)}")
        if t.is_floating_point() or (t < 0).any() or (t >= top).any():
            raise ValueError(f"{name} must hold integer indices in [0, {top})")
    fine = size * supersample
    centres = (torch.arange(fine, dtype=torch.float32) + 0.5) / fine
    rows, cols = torch.meshgrid(centres, centres, indexing="ij")
    s = torch.tensor(ELLIPSE_SCALES)[scale.cpu()].view(-1, 1, 1)
    angle = torch.tensor(ELLIPSE_ORIENTATIONS)[orientation.cpu()].view(-1, 1, 1)
    cx = (0.19 + 0.62 * pos_x.cpu().float() / (N_POSITIONS - 1)).view(-1, 1, 1)
    cy = (0.19 + 0.62 * pos_y.cpu().float() / (N_POSITIONS - 1)).view(-1, 1, 1)
    dx, dy = cols - cx, rows - cy
    u = dx * angle.cos() + dy * angle.sin()
    v = -dx * angle.sin() + dy * angle.cos()
    inside = ((u / (0.16 * s)) ** 2 + (v / (0.08 * s)) ** 2 <= 1).float().unsqueeze(1)
    return torch.nn.functional.avg_pool2d(inside, supersample).to(scale.device)


def ellipse_dataset(n: int, *, generator: torch.Generator | None = None, size: int = 32,
                    n_bins: int = N_POSITION_BINS) -> tuple[Tensor, Tensor]:
    """``n`` ellipses with uniformly random scale, orientation and position.

    Parameters
    ----------
    n_bins
        Position classes per axis, a divisor of 32: 16 (the paper: ``pos // 2``, 256 configurations) or
        fewer, coarser bins.

    Returns
    -------
    images, labels
        ``(n, 1, size, size)`` in ``[0, 1]`` and the position classes ``(n, 2)`` =
        ``(pos_x // (32 / n_bins), pos_y // (32 / n_bins))``, ``n_bins`` values each.
    """
    check_int(n, "n", minimum=1)
    check_int(n_bins, "n_bins", minimum=2)
    if N_POSITIONS % n_bins:
        raise ValueError(f"n_bins must divide {N_POSITIONS}, got {n_bins}")
    draw = [torch.randint(top, (n,), generator=generator)
            for top in (len(ELLIPSE_SCALES), len(ELLIPSE_ORIENTATIONS), N_POSITIONS, N_POSITIONS)]
    images = render_ellipses(*draw, size=size)
    width = N_POSITIONS // n_bins
    return images, torch.stack([draw[2] // width, draw[3] // width], dim=1)


MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
"""File names of the images and labels of each split, as published (MNIST and Fashion-MNIST alike)."""

CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
"""The published archive of CIFAR-10's binary version (the pickled Python version is not read: unpickling runs
code)."""

CIFAR10_BATCHES = {
    "train": tuple(f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("cifar-10-batches-bin/test_batch.bin",),
}
"""Members of :data:`~ebmlib.data.CIFAR10_ARCHIVE` holding each split, 10,000 records each."""

_CIFAR_RECORD = 1 + 3 * 32 * 32  # a label byte, then the red, green and blue 32×32 planes row by row


def read_idx(data: bytes) -> np.ndarray:
    """Parse an (uncompressed) IDX array of unsigned bytes: magic ``0x0000 08 ndim``, big-endian sizes, data."""
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise ValueError("data: not an IDX file of unsigned bytes (magic 0x000008..)")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + math.prod(shape):
        raise ValueError(f"data: IDX header announces shape {shape} but holds {len(data) - header} values")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_cifar_records(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Parse records of CIFAR-10's binary version: each a label byte and 3,072 pixel bytes (channels first).

    Returns
    -------
    images, labels
        ``(N, 3, 32, 32)`` and ``(N,)`` ``uint8`` arrays.
    """
    if not data or len(data) % _CIFAR_RECORD:
        raise ValueError(f"data: {len(data)} bytes are not whole CIFAR-10 records of {_CIFAR_RECORD} bytes")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0]
    if labels.max() > 9:
        raise ValueError(f"data: label {int(labels.max())} outside CIFAR-10's 0-9")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def _verified_file(folder: Path, name: str, checksums: dict[str, str], dataset: str) -> bytes:
    path = folder / name
    if not path.exists():
        raise ValueError(f"root: {path} does not exist; copy the files of {dataset!r} into root, or pass root=None to "
                         "fetch them")
    if checksums.get(name) is None:
        raise ValueError(f"checksums: no SHA-256 given for {name}")
    return read_verified(path, checksums[name], argument="checksums")


def _files_and_folder(dataset: str, names: tuple[str, ...], root: str | Path | None,
                      checksums: dict[str, str] | None) -> tuple[Path, dict[str, str]]:
    """The folder to read ``names`` from (fetched when ``root`` is None) and their SHA-256 (pinned by default)."""
    if checksums is None:
        checksums = {name: remote_file(dataset, name).sha256 for name in names}
    elif not isinstance(checksums, dict):
        raise ValueError(f"checksums must be a dict of file name -> SHA-256, got {checksums!r}")
    return (fetch_dataset(dataset) if root is None else Path(root)), checksums


def _load_idx_split(dataset: str, root: str | Path | None, split: str,
                    checksums: dict[str, str] | None) -> tuple[Tensor, Tensor]:
    if split not in MNIST_FILES:
        raise ValueError(f"split must be one of {tuple(MNIST_FILES)}, got {split!r}")
    folder, checksums = _files_and_folder(dataset, MNIST_FILES[split], root, checksums)
    image_file, label_file = MNIST_FILES[split]
    images = read_idx(gzip.decompress(_verified_file(folder, image_file, checksums, dataset)))
    labels = read_idx(gzip.decompress(_verified_file(folder, label_file, checksums, dataset)))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"root: images {images.shape} and labels {labels.shape} do not match")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def load_mnist(root: str | Path | None = None, split: str = "train", *,
               checksums: dict[str, str] | None = None) -> tuple[Tensor, Tensor]:
    """Load MNIST from its gzipped IDX files, verifying each file's SHA-256 first.

    Parameters
    ----------
    root
        Folder holding the files named in :data:`~ebmlib.data.MNIST_FILES` (a local copy); ``None``: the
        cache of :func:`~ebmlib.data.fetch_dataset`, which downloads the files on first use.
    split
        ``"train"`` (60,000) or ``"test"`` (10,000).
    checksums
        File name → SHA-256; defaults to the pinned ones of :data:`~ebmlib.data.REMOTE_FILES` ``["mnist"]``.

    Returns
    -------
    images, labels
        ``(N, 1, 28, 28)`` ``torch.uint8`` levels 0–255 and ``(N,)`` ``torch.long`` labels.
    """
    return _load_idx_split("mnist", root, split, checksums)


def load_fashion_mnist(root: str | Path | None = None, split: str = "train", *,
                       checksums: dict[str, str] | None = None) -> tuple[Tensor, Tensor]:
    """Load Fashion-MNIST (Zalando's 28×28 clothing images, MNIST's file names and format), verifying each
    file's SHA-256 first. Parameters and returns as :func:`~ebmlib.data.load_mnist`, with the checksums of
    :data:`~ebmlib.data.REMOTE_FILES` ``["fashion_mnist"]``."""
    return _load_idx_split("fashion_mnist", root, split, checksums)


def load_cifar10(root: str | Path | None = None, split: str = "train", *,
                 checksums: dict[str, str] | None = None) -> tuple[Tensor, Tensor]:
    """Load CIFAR-10 from the archive of its binary version, verifying the archive's SHA-256 first.

    Parameters
    ----------
    root
        Folder holding :data:`~ebmlib.data.CIFAR10_ARCHIVE` (a local copy); ``None``: the cache of
        :func:`~ebmlib.data.fetch_dataset`, which downloads it (170 MB) on first use.
    split
        ``"train"`` (50,000) or ``"test"`` (10,000).
    checksums
        File name → SHA-256; defaults to the pinned one of :data:`~ebmlib.data.REMOTE_FILES` ``["cifar10"]``.

    Returns
    -------
    images, labels
        ``(N, 3, 32, 32)`` ``torch.uint8`` levels 0–255 (RGB) and ``(N,)`` ``torch.long`` labels.
    """
    if split not in CIFAR10_BATCHES:
        raise ValueError(f"split must be one of {tuple(CIFAR10_BATCHES)}, got {split!r}")
    folder, checksums = _files_and_folder("cifar10", (CIFAR10_ARCHIVE,), root, checksums)
    raw = _verified_file(folder, CIFAR10_ARCHIVE, checksums, "cifar10")
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as archive:
        try:
            parts = [read_cifar_records(archive.extractfile(name).read()) for name in CIFAR10_BATCHES[split]]
        except KeyError as error:
            raise ValueError(f"root: {CIFAR10_ARCHIVE} lacks {error}") from error
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


def preprocess(levels: Tensor, n_levels: int, *, generator: torch.Generator | None = None) -> Tensor:
    """:func:`~ebmlib.data.dequantise` then :func:`~ebmlib.data.logit_transform`, flattened: ``(N, ...)`` levels to
    ``(N, D)`` floats."""
    return logit_transform(dequantise(levels, n_levels, generator=generator)).flatten(1)
