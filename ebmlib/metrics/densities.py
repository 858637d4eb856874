"""Quantities of a model on the plane, by quadrature on a grid: the log-density of a discrete model of 2-D
points decoded to the plane, and the mass of an energy-based model in each mode's cell."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from ebmlib.metrics.samples import mode_weights
from ebmlib.utils import EnergyFn, check_energy_output, check_int, check_positive, check_tensor, grid_2d


class PointCode(Protocol):
    """A discrete code of 2-D points, such as :class:`~ebmlib.data.GrayCode` or :class:`~ebmlib.data.BaseQCode`:
    it encodes every point with ``|coordinate| < f_scale``."""

    f_scale: float

    def encode(self, points: Tensor, *, dtype: torch.dtype = ...) -> Tensor: ...


def _parameter_device_and_dtype(energy_fn: EnergyFn) -> tuple[torch.device, torch.dtype]:
    params = list(energy_fn.parameters()) if isinstance(energy_fn, torch.nn.Module) else []
    return (params[0].device, params[0].dtype) if params else (torch.device("cpu"), torch.float32)


def _energies(energy_fn: EnergyFn, x: Tensor, batch_size: int) -> Tensor:
    with torch.no_grad():
        energy = torch.cat([energy_fn(chunk) for chunk in x.split(batch_size)])
    return check_energy_output(energy, x.shape[0], "energy_fn")


def decoded_log_density(energy_fn: EnergyFn, code: PointCode, lim: float = 4.0, n: int = 150, *,
                        batch_size: int = 65536) -> Tensor:
    r"""A discrete model of coded 2-D points, seen on the plane: :math:`\log p` of each cell of an ``n × n`` grid.

    Every cell centre :math:`u_k` of :func:`~ebmlib.utils.grid_2d` over ``[-lim, lim]²`` is encoded (clamped
    into the code's range ``(-f_scale, f_scale)`` first) and

    .. math:: \log p_k = -E(\mathrm{enc}(u_k)) - \log \sum_{k'} e^{-E(\mathrm{enc}(u_{k'}))},

    a distribution over the grid cells (summing to 1, not a density per unit area): the heat maps with which
    the RMwGGIS and energy-discrepancy papers show their discrete models of the 2-D toys. The model lives on
    the codes, so this is a picture of it, not its likelihood.

    Parameters
    ----------
    energy_fn
        Energy of codes, ``(B, code.dim) -> (B,)``; the grid is built on the device and in the dtype of its
        parameters when it is a module (else on the CPU in float32).
    code
        The code, e.g. :class:`~ebmlib.data.GrayCode`.
    lim, n
        Grid half-width and cells per side.
    batch_size
        Cells per energy evaluation.

    Returns
    -------
    Tensor
        ``(n, n)``, rows = y and columns = x (``imshow(origin="lower")``), ``exp(out).sum() == 1``.
    """
    check_positive(lim, "lim")
    check_int(batch_size, "batch_size", minimum=1)
    if not callable(getattr(code, "encode", None)) or not hasattr(code, "f_scale"):
        raise ValueError(f"code must have encode() and f_scale, like GrayCode, got {type(code).__name__}")
    device, dtype = _parameter_device_and_dtype(energy_fn)
    points, _ = grid_2d(lim, n, device=device, dtype=dtype)
    # The largest value of the points' dtype below f_scale: both codes encode only |v| < f_scale.
    # A host scalar: computed on the CPU, whatever the default device.
    scale, zero = (torch.tensor(v, dtype=dtype, device="cpu") for v in (float(code.f_scale), 0.0))
    bound = torch.nextafter(scale, zero).item()
    neg_energy = -_energies(energy_fn, code.encode(points.clamp(-bound, bound), dtype=dtype), batch_size)
    return torch.log_softmax(neg_energy, 0).view(n, n)


def energy_mode_weights(energy_fn: EnergyFn, centres: Tensor, lim: float, n: int = 200, *,
                        batch_size: int = 65536) -> Tensor:
    r"""Mass of :math:`p \propto e^{-E}` in each mode's Voronoi cell, by quadrature on a 2-D grid.

    With the ``n × n`` cell centres :math:`u_k` of :func:`~ebmlib.utils.grid_2d` over ``[-lim, lim]²``,

    .. math:: w_j = \sum_{k:\ \arg\min_i \lVert u_k - \mu_i \rVert = j} e^{-E(u_k)} \Big/ \sum_k e^{-E(u_k)},

    the midpoint rule for the probability of cell ``j`` of the model restricted to the square. It is the
    model side of :func:`~ebmlib.metrics.mode_weights`, which counts samples (the flowMC-EBM paper's
    mode-weight errors, Table 3 and Figure 1).

    Parameters
    ----------
    energy_fn
        2-D energy, ``(B, 2) -> (B,)``.
    centres
        Mode centres ``(K, 2)``; the grid is built on their device and in their dtype.
    lim, n
        Grid half-width and cells per side; ``lim`` should cover the model's mass.
    batch_size
        Grid points per energy evaluation.

    Returns
    -------
    Tensor
        ``(K,)``, summing to 1.
    """
    check_tensor(centres, "centres", shape=(None, 2), floating=True)
    if centres.shape[0] == 0:
        raise ValueError("centres must hold at least one centre")
    check_positive(lim, "lim")
    check_int(batch_size, "batch_size", minimum=1)
    points, _ = grid_2d(lim, n, device=centres.device, dtype=centres.dtype)
    weights = torch.softmax(-_energies(energy_fn, points, batch_size).to(centres.dtype), 0)
    return mode_weights(points, centres, weights=weights)
