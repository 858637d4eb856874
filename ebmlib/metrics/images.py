"""Inception FID through ``torchmetrics`` (optional extra ``ebmlib[fid]``)."""

from __future__ import annotations

import torch
from torch import Tensor

from ebmlib.utils import check_int, check_tensor


def inception_fid(real: Tensor, fake: Tensor, *, batch_size: int = 256) -> float:
    """FID (Heusel et al., 2017) between two image sets by ``torchmetrics``' ``FrechetInceptionDistance``
    (2048 pool features of the Inception-v3 weights of ``pytorch-fid``, images resized to 299×299).

    An optional path for ``full`` scale: it needs ``pip install "ebmlib[fid]"`` (``torchmetrics`` and
    ``torch-fidelity``) and downloads the Inception weights on first use.

    Parameters
    ----------
    real, fake
        Images in ``[-1, 1]``, shapes ``(N, C, H, W)`` and ``(M, C, H, W)`` with ``C`` 1 (replicated to RGB)
        or 3; ``N, M >= 2``. Processed in chunks of ``batch_size`` on the images' device.

    Raises
    ------
    ImportError
        If ``torchmetrics`` or ``torch-fidelity`` is missing.
    RuntimeError
        If the Inception weights cannot be loaded (e.g. no internet on first use).
    """
    for x, name in ((real, "real"), (fake, "fake")):
        check_tensor(x, name, ndim=4, floating=True)
        if x.shape[0] < 2 or x.shape[1] not in (1, 3):
            raise ValueError(f"{name} must have shape (N >= 2, 1 or 3, H, W), got {tuple(x.shape)}")
    check_int(batch_size, "batch_size", minimum=1)
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except ImportError as error:
        raise ImportError('inception_fid needs torchmetrics and torch-fidelity: pip install "ebmlib[fid]"') from error
    try:
        metric = FrechetInceptionDistance(feature=2048, normalize=True).to(real.device)
    except (ImportError, ModuleNotFoundError) as error:
        raise ImportError('inception_fid needs torch-fidelity: pip install "ebmlib[fid]"') from error
    except Exception as error:  # a failed download surfaces as URLError, HTTPError or OSError
        message = f"could not load the Inception-v3 weights (internet needed on first use): {error}"
        raise RuntimeError(message) from error
    with torch.no_grad():
        for x, is_real in ((real, True), (fake, False)):
            for chunk in x.split(batch_size):
                rgb = chunk.expand(-1, 3, -1, -1) if chunk.shape[1] == 1 else chunk
                metric.update(((rgb.clamp(-1, 1) + 1) / 2).to(real.device), real=is_real)
        return float(metric.compute())
