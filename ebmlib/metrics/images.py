"""Inception FID through ``torchmetrics`` (optional extra ``ebmlib[full]``), on weights fetched and verified."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ebmlib.data import REMOTE_FILES, fetch_dataset
from ebmlib.utils import check_int, check_tensor, read_verified


def inception_fid(real: Tensor, fake: Tensor, *, batch_size: int = 256, weights: str | Path | None = None) -> float:
    """FID (Heusel et al., 2017) between two image sets by ``torchmetrics``' ``FrechetInceptionDistance``
    (2048 pool features of the Inception-v3 weights of ``pytorch-fid``/``torch-fidelity``, images resized to
    299×299).

    An optional path for ``full`` scale: it needs ``pip install "ebmlib[full]"`` (``torchmetrics`` and
    ``torch-fidelity``). The weights (96 MB) are downloaded into the data cache on first use by
    :func:`~ebmlib.data.fetch_dataset` (``"inception"``), which checks their SHA-256.

    Parameters
    ----------
    real, fake
        Images in ``[-1, 1]``, shapes ``(N, C, H, W)`` and ``(M, C, H, W)`` with ``C`` 1 (replicated to RGB)
        or 3; ``N, M >= 2``. Processed in chunks of ``batch_size`` on the images' device.
    weights
        A local copy of the weights file; it must have the pinned SHA-256 of
        :data:`~ebmlib.data.REMOTE_FILES` ``["inception"]``. Default: the fetched copy.

    Raises
    ------
    ImportError
        If ``torchmetrics`` or ``torch-fidelity`` is missing.
    RuntimeError
        If the weights are not cached and cannot be downloaded (no internet on first use).
    """
    for x, name in ((real, "real"), (fake, "fake")):
        check_tensor(x, name, ndim=4, floating=True)
        if x.shape[0] < 2 or x.shape[1] not in (1, 3):
            raise ValueError(f"{name} must have shape (N >= 2, 1 or 3, H, W), got {tuple(x.shape)}")
    check_int(batch_size, "batch_size", minimum=1)
    remote = REMOTE_FILES["inception"][0]
    if weights is not None:  # torch-fidelity unpickles the file: load only the pinned bytes
        read_verified(Path(weights), remote.sha256, argument="weights")
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except ImportError as error:
        raise ImportError('inception_fid needs torchmetrics and torch-fidelity: pip install "ebmlib[full]"') from error
    path = fetch_dataset("inception") / remote.name if weights is None else Path(weights)
    try:
        metric = FrechetInceptionDistance(feature=2048, normalize=True, feature_extractor_weights_path=str(path))
    except (ImportError, ModuleNotFoundError) as error:
        raise ImportError('inception_fid needs torch-fidelity: pip install "ebmlib[full]"') from error
    metric = metric.to(real.device)
    with torch.no_grad():
        for x, is_real in ((real, True), (fake, False)):
            for chunk in x.split(batch_size):
                rgb = chunk.expand(-1, 3, -1, -1) if chunk.shape[1] == 1 else chunk
                metric.update(((rgb.clamp(-1, 1) + 1) / 2).to(real.device), real=is_real)
        return float(metric.compute())
