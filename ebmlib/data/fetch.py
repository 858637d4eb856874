"""Data fetched on first use: one cache folder, pinned SHA-256 checksums, mirrors, atomic downloads.

Every file a ``full``-scale chapter needs is listed in :data:`~ebmlib.data.REMOTE_FILES` with its size, its
SHA-256 and the URLs that publish it. :func:`~ebmlib.data.fetch_dataset` returns the folder ``<data home>/<data set>``
holding verified copies and downloads only what is missing, with `pooch <https://www.fatiando.org/pooch>`_:
each file is streamed into a temporary file beside its destination, its SHA-256 checked, and only then renamed,
so neither a corrupted nor an interrupted download leaves a file under the final name. A cached file is checked
again on every call and fetched anew if it no longer matches.

Two environment variables:

``EBMLIB_DATA``
    The cache folder; default the per-user cache (``~/.cache/ebmlib`` on Linux, ``~/Library/Caches/ebmlib``
    on macOS).
``EBMLIB_MIRROR``
    A base URL used instead of the published ones, with the cache's layout ``<mirror>/<data set>/<file>``, so
    a filled cache folder served over HTTP is a mirror (the offline tests serve one on 127.0.0.1).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_DATA_ENV = "EBMLIB_DATA"
_MIRROR_ENV = "EBMLIB_MIRROR"


@dataclass(frozen=True)
class RemoteFile:
    """A published file: its name in the cache, SHA-256 (hex), size in bytes, and URLs tried in order."""

    name: str
    sha256: str
    size: int
    urls: tuple[str, ...]


def _published(bases: tuple[str, ...], name: str, sha256: str, size: int) -> RemoteFile:
    return RemoteFile(name, sha256, size, tuple(f"{base}/{name}" for base in bases))


# MNIST: the four gzipped IDX files. URLs: torchvision's first mirror (ossci-datasets) and the copy TensorFlow
# Datasets downloads (cvdf-datasets). SHA-256 and sizes: TensorFlow Datasets' registry of the same files,
# tensorflow/datasets, tensorflow_datasets/url_checksums/mnist.txt (commit 31f1255e).
_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist", "https://storage.googleapis.com/cvdf-datasets/mnist")

# Fashion-MNIST: MNIST's four file names and format. URLs: the data folder of the publisher's repository
# (zalandoresearch/fashion-mnist) and, over HTTPS, the S3 bucket whose website TensorFlow Datasets and torchvision
# download from. SHA-256 and sizes: TensorFlow Datasets' registry of the same files,
# tensorflow_datasets/url_checksums/fashion_mnist.txt (commit 333639b3).
_FASHION_MIRRORS = ("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion",
                    "https://fashion-mnist.s3.eu-central-1.amazonaws.com")

# CIFAR-10, binary version: the archive published by its authors at the University of Toronto. SHA-256 and size:
# TensorFlow Datasets' registry, tensorflow_datasets/url_checksums/cifar10.txt (commit 333639b3).
_CIFAR10 = ("https://www.cs.toronto.edu/~kriz",)

# Adult: UCI's adult.data. SHA-256 and size: TensorFlow Datasets' registry of the same URL,
# tensorflow_datasets/url_checksums/adult.txt (commit 2b472251); several other loaders pin the same digest.
_UCI_ADULT = ("https://archive.ics.uci.edu/ml/machine-learning-databases/adult",)

# Citeseer: the Planetoid copy of the citation graph (a pickled dict of adjacency lists) from which GraphRNN
# built Ego-small. Both URLs name a fixed commit of a git repository that holds the file as the same git blob,
# a01dca663d0103c130f525017a4a9c313037e286 (git checks a blob's content against that id); the SHA-256 was
# computed from that blob: Planetoid (kimiyoung/planetoid, data/) and GraphRNN (snap-stanford/GraphRNN,
# dataset/).
_CITESEER_MIRRORS = (
    "https://raw.githubusercontent.com/kimiyoung/planetoid/af6abf468a772cc055bec88c52e4d6f51b7c37e3/data",
    "https://raw.githubusercontent.com/snap-stanford/GraphRNN/1ef475d957414d7c0bf8c778a1d44cb52dd7829b/dataset",
)

# Inception-v3 for FID: TensorFlow's 2015-12-05 graph converted to PyTorch, the file torch-fidelity (and thus
# torchmetrics) downloads; pytorch-fid publishes the same bytes under another name. Both names end in the first
# eight hex digits of the SHA-256 (torch.hub's convention); the full digest is pinned by genforce's model
# registry (_MODEL_URL_SHA256, as in snap-research/discoscene, models/inception_model.py, commit 3b15039f).
_INCEPTION = RemoteFile(
    "weights-inception-2015-12-05-6726825d.pth",
    "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
    95_628_359,
    ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
     "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"),
)

REMOTE_FILES: dict[str, tuple[RemoteFile, ...]] = {
    "mnist": (
        _published(_MNIST_MIRRORS, "train-images-idx3-ubyte.gz",
                   "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9_912_422),
        _published(_MNIST_MIRRORS, "train-labels-idx1-ubyte.gz",
                   "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28_881),
        _published(_MNIST_MIRRORS, "t10k-images-idx3-ubyte.gz",
                   "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1_648_877),
        _published(_MNIST_MIRRORS, "t10k-labels-idx1-ubyte.gz",
                   "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4_542),
    ),
    "fashion_mnist": (
        _published(_FASHION_MIRRORS, "train-images-idx3-ubyte.gz",
                   "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26_421_880),
        _published(_FASHION_MIRRORS, "train-labels-idx1-ubyte.gz",
                   "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29_515),
        _published(_FASHION_MIRRORS, "t10k-images-idx3-ubyte.gz",
                   "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4_422_102),
        _published(_FASHION_MIRRORS, "t10k-labels-idx1-ubyte.gz",
                   "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5_148),
    ),
    "cifar10": (
        _published(_CIFAR10, "cifar-10-binary.tar.gz",
                   "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd", 170_052_171),
    ),
    "adult": (
        _published(_UCI_ADULT, "adult.data", "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
                   3_974_305),
    ),
    "citeseer": (
        _published(_CITESEER_MIRRORS, "ind.citeseer.graph",
                   "d79a4ef9d3e7169aee8946145f6b7306e35bc79bffad26346cfb94e10e9912a7", 61_987),
    ),
    "inception": (_INCEPTION,),
}
"""Data set → its files (:class:`~ebmlib.data.RemoteFile`): what :func:`~ebmlib.data.fetch_dataset` downloads and
what the loaders check local copies against. ``mnist`` (chapters 2 and 5), ``fashion_mnist`` and ``cifar10``
(chapter 5), ``adult`` (chapter 3), ``citeseer`` (Ego-small, chapters 1 and 3) and ``inception`` (the FID weights,
chapter 5)."""


def data_home() -> Path:
    """The cache folder: ``EBMLIB_DATA`` when set, else the per-user cache ``pooch.os_cache("ebmlib")``."""
    import pooch

    value = os.environ.get(_DATA_ENV)
    return Path(value).expanduser() if value else Path(pooch.os_cache("ebmlib"))


def remote_file(dataset: str, name: str) -> RemoteFile:
    """The entry of file ``name`` of ``dataset`` in :data:`~ebmlib.data.REMOTE_FILES`."""
    for remote in _files_of(dataset):
        if remote.name == name:
            return remote
    raise ValueError(f"name must be a file of {dataset!r}: {[r.name for r in _files_of(dataset)]}, got {name!r}")


def fetch_dataset(dataset: str, *, root: str | Path | None = None, mirror: str | None = None) -> Path:
    """Return the folder holding verified copies of ``dataset``'s files, downloading those missing.

    Each file of :data:`~ebmlib.data.REMOTE_FILES` ``[dataset]`` that is absent from ``<root>/<dataset>`` (or
    whose SHA-256 no longer matches) is downloaded from its URLs in turn until one delivers the pinned
    SHA-256. When anything was downloaded, one line says what, from where and into which folder.

    Parameters
    ----------
    dataset
        A key of :data:`~ebmlib.data.REMOTE_FILES`: ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``,
        ``"adult"``, ``"citeseer"`` or ``"inception"``.
    root
        Cache folder; default :func:`~ebmlib.data.data_home` (``EBMLIB_DATA``).
    mirror
        Base URL replacing the published ones (files at ``<mirror>/<dataset>/<name>``); default the
        ``EBMLIB_MIRROR`` environment variable, if set.

    Raises
    ------
    RuntimeError
        When a file could not be fetched from any URL (no network, or every copy fails its checksum); it names
        each URL with its error, and nothing is left under the file's name.
    """
    files = _files_of(dataset)
    folder = (Path(root).expanduser() if root is not None else data_home()) / dataset
    base = mirror if mirror is not None else os.environ.get(_MIRROR_ENV) or None
    fetched = []
    for remote in files:
        urls = (f"{base.rstrip('/')}/{dataset}/{remote.name}",) if base else remote.urls
        url = _ensure(remote, urls, folder)
        if url is not None:
            fetched.append((remote, url))
    if fetched:
        what = fetched[0][0].name if len(fetched) == 1 else f"{len(fetched)} files"
        megabytes = sum(remote.size for remote, _ in fetched) / 1e6
        sources = ", ".join(dict.fromkeys(url.rsplit("/", 1)[0] for _, url in fetched))
        print(f"ebmlib: fetched {dataset} ({what}, {megabytes:.1f} MB) from {sources} into {folder}")
    return folder


def _files_of(dataset: str) -> tuple[RemoteFile, ...]:
    if dataset not in REMOTE_FILES:
        raise ValueError(f"dataset must be one of {sorted(REMOTE_FILES)}, got {dataset!r}")
    return REMOTE_FILES[dataset]


def _ensure(remote: RemoteFile, urls: tuple[str, ...], folder: Path) -> str | None:
    """Make ``folder/remote.name`` a verified copy; return the URL it came from, or ``None`` if it was there."""
    import pooch  # here, not at the top: importing ebmlib.data need not load pooch and requests

    path = folder / remote.name
    if path.is_file():
        if pooch.file_hash(str(path)) == remote.sha256:
            return None
        path.unlink()  # a stale or damaged copy must not outlive a failed download
    failures = []
    with _quiet(pooch.get_logger()):
        for url in urls:
            try:
                pooch.retrieve(url, known_hash=f"sha256:{remote.sha256}", fname=remote.name, path=folder,
                               progressbar=False)
                return url
            except (ValueError, OSError) as error:  # checksum mismatch; network, HTTP or disk error
                failures.append(f"{url}: {str(error).rstrip('.')}")
    raise RuntimeError(
        f"could not fetch {remote.name} (SHA-256 {remote.sha256}) into {folder}: " + "; ".join(failures)
        + f". Nothing was saved under {path.name}. Without internet, copy a file with that SHA-256 there, or "
        f"set {_MIRROR_ENV} to a server holding <data set>/<file>."
    )


@contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """Silence pooch's per-file messages: :func:`fetch_dataset` prints its own single line."""
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
