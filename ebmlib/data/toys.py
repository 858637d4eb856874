"""2-D toy densities: samplers, exact log-densities where analytic, and the mixtures' mode centres.

:func:`~ebmlib.data.sample_toy` draws from the toy densities of FFJORD / Gibbs-with-Gradients
(:data:`~ebmlib.data.TOY_NAMES`); :func:`~ebmlib.data.toy_log_prob` is the exact log-density where analytic,
:func:`~ebmlib.data.toy_code_probs` the exact probability of every Gray code of such a toy;
:func:`~ebmlib.data.toy_mode_centres` the mixture means. All random draws use an optional CPU
:class:`torch.Generator`, so results are reproducible on any device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache

import numpy as np
import torch
from torch import Tensor

from ebmlib.data.codes import MAX_ENUMERATION_DIM, GrayCode, all_binary_states
from ebmlib.utils import check_float_dtype, check_int, check_tensor

TOY_NAMES = ("2spirals", "8gaussians", "circles", "moons", "pinwheel", "swissroll", "checkerboard", "rings",
             "9gaussians")
"""Names accepted by :func:`~ebmlib.data.sample_toy`."""


ANALYTIC_TOY_NAMES = ("8gaussians", "9gaussians", "checkerboard", "swissroll")
"""Toys whose normalised density :func:`~ebmlib.data.toy_log_prob` evaluates: in closed form, or for the Swiss
roll by quadrature over the roll's parameter, accurate to ~1e-10 in ``log p``."""


_EIGHT_GAUSS_RADIUS, _EIGHT_GAUSS_STD, _EIGHT_GAUSS_DIVISOR = 4.0, 0.5, 1.414


_NINE_GAUSS_GRID, _NINE_GAUSS_STD = (-2.5, 0.0, 2.5), 0.1


_RING_RADII, _RING_NOISE = (0.75, 1.5, 2.25, 3.0), 0.08


_SWISSROLL_STD, _SWISSROLL_PANELS, _SWISSROLL_ORDER = 0.2, 64, 8


def _eight_gaussian_centres(dtype: torch.dtype) -> Tensor:
    angles = torch.arange(8, dtype=dtype) * (math.pi / 4)
    return _EIGHT_GAUSS_RADIUS * torch.stack([angles.cos(), angles.sin()], dim=1)


def _nine_gaussian_centres(dtype: torch.dtype) -> Tensor:
    grid = torch.tensor(_NINE_GAUSS_GRID, dtype=dtype)
    return torch.cartesian_prod(grid, grid)


def _gaussian_mixture(centres: Tensor, std: float, n: int, g: torch.Generator | None) -> Tensor:
    component = torch.randint(len(centres), (n,), generator=g)
    return centres[component] + std * torch.randn(n, 2, generator=g, dtype=centres.dtype)


def _eight_gaussians(n: int, g: torch.Generator | None, dtype: torch.dtype) -> Tensor:
    # The 1.414 (not sqrt 2) divisor is the FFJORD constant; kept so f_scale matches the papers.
    return _gaussian_mixture(_eight_gaussian_centres(dtype), _EIGHT_GAUSS_STD, n, g) / _EIGHT_GAUSS_DIVISOR


def _nine_gaussians(n: int, g: torch.Generator | None, dtype: torch.dtype) -> Tensor:
    return _gaussian_mixture(_nine_gaussian_centres(dtype), _NINE_GAUSS_STD, n, g)


def _two_spirals(n: int, g: torch.Generator | None, dtype: torch.dtype) -> Tensor:
    # sqrt(U) makes the arc-length density roughly uniform; the angle runs up to 540 degrees.
    t = torch.rand(n, generator=g, dtype=dtype).sqrt() * (3 * math.pi)
    arm = torch.stack([-t.cos() * t, t.sin() * t], dim=1) + 0.5 * torch.rand(n, 2, generator=g, dtype=dtype)
    sign = 1.0 - 2.0 * torch.randint(2, (n, 1), generator=g).to(dtype)
    return sign * arm / 3 + 0.1 * torch.randn(n, 2, generator=g, dtype=dtype)


def _circles(n: int, g: torch.Generator | None, dtype: torch.dtype) -> Tensor:
    # sklearn make_circles(factor=0.5, noise=0.08) scaled by 3, with random (not evenly spaced) angles.
    angle = 2 * math.pi * torch.rand(n, generator=g, dtype=dtype)
    radius = torch.where(torch.rand(n, generator=g) < 0.5, 1.0, 0.5).to(dtype)
    unit = radius[:, None] * torch.stack([angle.cos(), angle.sin()], dim=1)
    return 3 * (unit + 0.08 * torch.randn(n, 2, generator=g, dtype=dtype))


def _moons(n: int, g: torch.Generator | None, dtype: torch.dtype) -> Tensor:
    # sklearn make_moons(noise=0.1), then the FFJORD affine map 2 x + (-1, -0.2).
    t = math.pi * torch.rand(n, generator=g, dtype=dtype)
    outer = torch.stack([t.cos(), t.sin()], dim=1)
    inner = torch.stack([1 - t.cos(), 0.5 - t.sin()], dim=1)
    moon = torch.where(torch.rand(n, 1, generator=g) < 0.5, outer, inner)
    moon = moon + 0.1 * torch.randn(n, 2, generator=g, dtype=dtype)
    return 2 * moon + torch.tensor([-1.0, -0.2], dtype=dtype)


def _pinwheel(n: int, g: torch.Generator | None, dtype: torch.dtype) -> Tensor:
    # Five arms: a radial/tangential Gaussian blob, rotated by an angle that grows exponentially with radius.
    arm = torch.randint(5, (n,), generator=g).to(dtype) * (2 * math.pi / 5)
    feats = torch.randn(n, 2, generator=g, dtype=dtype) * torch.tensor([0.3, 0.1], dtype=dtype)
    feats[:, 0] += 1.0
    angle = arm + 0.25 * feats[:, 0].exp()
    cos, sin = angle.cos(), angle.sin()
    # Rotation by -angle, as in FFJORD, so the arms curl the familiar way.
    radial, tangential = feats[:, 0], feats[:, 1]
    return 2 * torch.stack([radial * cos + tangential * sin, tangential * cos - radial * sin], dim=1)


def _swissroll(n: int, g: torch.Generator | None, dtype: torch.dtype) -> Tensor:
    # The (x, z) plane of sklearn make_swiss_roll(noise=1.0), divided by 5.
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g, dtype=dtype))
    roll = torch.stack([t * t.cos(), t * t.sin()], dim=1)
    return (roll + torch.randn(n, 2, generator=g, dtype=dtype)) / 5


def _checkerboard(n: int, g: torch.Generator | None, dtype: torch.dtype) -> Tensor:
    # Uniform column x1 in [-4, 4); within it, one of the two 2x2 squares whose cell parity matches.
    x1 = 8 * torch.rand(n, generator=g, dtype=dtype) - 4
    x2 = 2 * torch.rand(n, generator=g, dtype=dtype) - 4 * torch.randint(2, (n,), generator=g).to(dtype)
    x2 = x2 + 2 * (torch.floor(x1 / 2) % 2)
    return torch.stack([x1, x2], dim=1)


def _rings(n: int, g: torch.Generator | None, dtype: torch.dtype) -> Tensor:
    radius = torch.tensor(_RING_RADII, dtype=dtype)[torch.randint(len(_RING_RADII), (n,), generator=g)]
    angle = 2 * math.pi * torch.rand(n, generator=g, dtype=dtype)
    ring = radius[:, None] * torch.stack([angle.cos(), angle.sin()], dim=1)
    return ring + _RING_NOISE * torch.randn(n, 2, generator=g, dtype=dtype)


_TOY_SAMPLERS: dict[str, Callable[[int, torch.Generator | None, torch.dtype], Tensor]] = {
    "2spirals": _two_spirals, "8gaussians": _eight_gaussians, "circles": _circles, "moons": _moons,
    "pinwheel": _pinwheel, "swissroll": _swissroll, "checkerboard": _checkerboard, "rings": _rings,
    "9gaussians": _nine_gaussians,
}


def sample_toy(name: str, n: int, *, generator: torch.Generator | None = None,
               device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Draw ``n`` points from a 2-D toy density; returns shape ``(n, 2)``, points roughly in ``[-4, 4]^2``.

    The definitions follow FFJORD's ``toy_data.py`` (used by Gibbs-with-Gradients, RMwGGIS and energy
    discrepancy), with class labels, angles and rings drawn at random instead of in fixed proportions:

    * ``8gaussians``: ``(c_k + 0.5 ε) / 1.414`` with ``c_k = 4 (cos kπ/4, sin kπ/4)``, ``ε ~ N(0, I)``.
    * ``9gaussians``: equal mixture of ``N(μ, 0.1² I)`` for ``μ ∈ {-2.5, 0, 2.5}²``.
    * ``checkerboard``: uniform (density 1/32) on the eight 2×2 squares ``[2i, 2i+2) × [2j, 2j+2)`` of
      ``[-4, 4)²`` with ``i + j`` even.
    * ``circles``: radius 3 or 1.5 (probability 1/2 each), uniform angle, plus ``N(0, 0.24² I)``.
    * ``rings``: radius uniform in ``{0.75, 1.5, 2.25, 3}``, uniform angle, plus ``N(0, 0.08² I)``.
    * ``moons``: two interleaved half circles (sklearn, noise 0.1) mapped by ``2x + (-1, -0.2)``.
    * ``pinwheel``: five arms, radial std 0.3, tangential std 0.1, rate 0.25, scaled by 2.
    * ``swissroll``: ``(t cos t, t sin t) + N(0, I)``, ``t ~ U(1.5π, 4.5π)``, divided by 5.
    * ``2spirals``: two point-symmetric spiral arms of up to 540°, plus ``N(0, 0.1² I)``.

    Parameters
    ----------
    name
        One of :data:`~ebmlib.data.TOY_NAMES`.
    n
        Number of points, ``>= 1``.
    generator
        Optional CPU generator; points are drawn on the CPU and then moved to ``device``.
    device, dtype
        Where and in which floating-point type to return the points.
    """
    if name not in _TOY_SAMPLERS:
        raise ValueError(f"name must be one of {TOY_NAMES}, got {name!r}")
    check_int(n, "n", minimum=1)
    dtype = check_float_dtype(dtype)
    return _TOY_SAMPLERS[name](n, generator, dtype).to(device)


def toy_mode_centres(name: str, *, device: torch.device | str | None = None,
                     dtype: torch.dtype = torch.float32) -> Tensor:
    """Means of the mixture components of a Gaussian-mixture toy, shape ``(K, 2)``.

    ``8gaussians``: ``4 (cos kπ/4, sin kπ/4) / 1.414`` for ``k = 0..7``; ``9gaussians``: ``{-2.5, 0, 2.5}²``
    in row-major order (first coordinate slowest). Other names raise ``ValueError``.
    """
    if name not in ("8gaussians", "9gaussians"):
        raise ValueError(f"name: {name!r} is not a Gaussian mixture; use '8gaussians' or '9gaussians'")
    dtype = check_float_dtype(dtype)
    if name == "8gaussians":
        return (_eight_gaussian_centres(dtype) / _EIGHT_GAUSS_DIVISOR).to(device)
    return _nine_gaussian_centres(dtype).to(device)


def sample_toy_mixture(name: str, n: int, *, generator: torch.Generator | None = None,
                       device: torch.device | str | None = None,
                       dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Like :func:`~ebmlib.data.sample_toy` for ``8gaussians`` / ``9gaussians``, also returning each point's component.

    Returns
    -------
    x, component
        Points ``(n, 2)`` and the index ``k`` (``torch.long``, ``(n,)``) of the mean
        ``toy_mode_centres(name)[k]`` each point was drawn around.
    """
    centres = toy_mode_centres(name, dtype=check_float_dtype(dtype))
    check_int(n, "n", minimum=1)
    std = _EIGHT_GAUSS_STD / _EIGHT_GAUSS_DIVISOR if name == "8gaussians" else _NINE_GAUSS_STD
    component = torch.randint(len(centres), (n,), generator=generator)
    x = centres[component] + std * torch.randn(n, 2, generator=generator, dtype=dtype)
    return x.to(device), component.to(device)


def _mixture_log_prob(x: Tensor, centres: Tensor, std: float) -> Tensor:
    # log (1/K) Σ_k N(x; μ_k, std² I) in two dimensions.
    sq_dist = (x[:, None, :] - centres[None]).pow(2).sum(-1)
    log_normal = -sq_dist / (2 * std**2) - math.log(2 * math.pi * std**2)
    return torch.logsumexp(log_normal, dim=1) - math.log(len(centres))


@cache
def _swissroll_nodes() -> tuple[Tensor, Tensor]:
    """Nodes ``t`` and log-weights ``log(w / 3π)`` of composite Gauss–Legendre quadrature on ``[1.5π, 4.5π]``.

    Each of the 64 panels is 0.15 wide in ``t``, which moves the roll's centre ``c(t)/5`` by at most 0.43 (two
    noise standard deviations), and its 8 nodes integrate the Gaussian bump to ~1e-10 in ``log p``, as scipy's
    adaptive quadrature confirms in the tests.
    """
    points, weights = np.polynomial.legendre.leggauss(_SWISSROLL_ORDER)
    edges = np.linspace(1.5 * math.pi, 4.5 * math.pi, _SWISSROLL_PANELS + 1)
    half, middle = (edges[1:] - edges[:-1])[:, None] / 2, (edges[1:] + edges[:-1])[:, None] / 2
    t = (middle + half * points).ravel()
    return torch.from_numpy(t), torch.from_numpy(np.log((half * weights).ravel() / (3 * math.pi)))


def _swissroll_log_prob(x: Tensor, chunk_size: int = 4096) -> Tensor:
    t, log_w = (v.to(x) for v in _swissroll_nodes())
    centres = torch.stack([t * t.cos(), t * t.sin()], dim=1) / 5
    var = _SWISSROLL_STD**2
    return torch.cat([torch.logsumexp(log_w - (chunk[:, None] - centres).pow(2).sum(-1) / (2 * var), 1)
                      for chunk in x.split(chunk_size)]) - math.log(2 * math.pi * var)


def toy_log_prob(name: str, x: Tensor) -> Tensor:
    r"""Normalised log-density ``log p(x)`` of a toy of :data:`~ebmlib.data.ANALYTIC_TOY_NAMES`; input ``(B, 2)``,
    output ``(B,)`` in the dtype and on the device of ``x``.

    * ``8gaussians``: ``log (1/8) Σ_k N(x; c_k / 1.414, (0.5 / 1.414)² I)``.
    * ``9gaussians``: ``log (1/9) Σ_k N(x; μ_k, 0.1² I)``.
    * ``checkerboard``: ``-log 32`` on the support and ``-inf`` outside it (the density is zero there).
    * ``swissroll``: :math:`\log \frac{1}{3\pi} \int_{1.5\pi}^{4.5\pi} N(x;\ (t\cos t, t\sin t)/5,\ 0.2^2 I)\,dt`,
      the roll's Gaussian noise averaged over its uniform parameter ``t``, by Gauss–Legendre quadrature (512
      nodes; accurate to ~1e-10).

    Other names raise ``ValueError``: their densities have no closed form.
    """
    if name not in ANALYTIC_TOY_NAMES:
        raise ValueError(f"name: the density of {name!r} is not analytic; use one of {ANALYTIC_TOY_NAMES}")
    check_tensor(x, "x", shape=(None, 2), floating=True)
    if name == "swissroll":
        return _swissroll_log_prob(x)
    if name != "checkerboard":
        std = _EIGHT_GAUSS_STD / _EIGHT_GAUSS_DIVISOR if name == "8gaussians" else _NINE_GAUSS_STD
        return _mixture_log_prob(x, toy_mode_centres(name, device=x.device, dtype=x.dtype), std)
    cell = torch.floor(x / 2)
    inside = ((x >= -4) & (x < 4)).all(dim=1) & (cell.sum(dim=1) % 2 == 0)
    return torch.where(inside, -math.log(32.0), -math.inf).to(x.dtype)


_CELL_MASS_TOYS = ("8gaussians", "9gaussians", "checkerboard")


def _word_intervals(code: GrayCode) -> tuple[Tensor, Tensor]:
    """Lower and upper ends ``(2**n_bits,)`` of the cell of every word of one coordinate, word ``k`` spelling ``k``."""
    words = all_binary_states(code.n_bits, dtype=torch.float64)
    centres = code.decode(torch.cat([words, torch.zeros_like(words)], dim=1), dtype=torch.float64)[:, 0]
    half = 0.5 / code.int_scale
    return centres - half, centres + half


def toy_code_probs(name: str, code: GrayCode) -> Tensor:
    """Exact probability of every Gray code of an analytic toy: the toy's mass in each code's cell.

    A code of :class:`~ebmlib.data.GrayCode` stands for a square cell (the product of one interval per
    coordinate), so its probability is an integral of the toy's density over that cell, in closed form here:

    * ``8gaussians``, ``9gaussians``: ``Σ_k w_k [Φ((b₁ - μ_k1)/s) - Φ((a₁ - μ_k1)/s)] [Φ((b₂ - μ_k2)/s) -
      Φ((a₂ - μ_k2)/s)]`` for the cell ``[a₁, b₁) × [a₂, b₂)``, the isotropic components factorising;
    * ``checkerboard``: the cell's area inside the eight squares, divided by 32.

    (The Swiss roll has no closed-form cell mass.)

    The mass beyond the code's range ``|v| < f_scale + 1`` (at most ``1e-6``, else ``ValueError``; below ``1e-12``
    for the papers' ``f_scale``) is left out and the probabilities renormalised: they are the law of
    ``code.encode(x)`` for ``x`` drawn from the toy conditioned on having a code.

    Parameters
    ----------
    name
        ``"8gaussians"``, ``"9gaussians"`` or ``"checkerboard"``.
    code
        A code with ``code.dim <= 20`` bits, so that its ``2**dim`` states can be listed.

    Returns
    -------
    Tensor
        Shape ``(2**code.dim,)``, float64, summing to 1, entry ``k`` belonging to row ``k`` of
        ``all_binary_states(code.dim)`` (the ``x`` word first).
    """
    if name not in _CELL_MASS_TOYS:
        raise ValueError(f"name: the cell masses of {name!r} have no closed form; use one of {_CELL_MASS_TOYS}")
    if not isinstance(code, GrayCode):
        raise ValueError(f"code must be a GrayCode, got {type(code).__name__}")
    if code.dim > MAX_ENUMERATION_DIM:
        raise ValueError(f"code: its {code.dim} bits have too many states to list (at most {MAX_ENUMERATION_DIM} bits)")
    lo, hi = _word_intervals(code)
    if name == "checkerboard":
        starts = torch.arange(-4.0, 4.0, 2.0, dtype=torch.float64)
        overlap = (torch.minimum(hi[:, None], starts + 2) - torch.maximum(lo[:, None], starts)).clamp_min(0)
        parity = torch.arange(4)
        black = ((parity[:, None] + parity[None, :]) % 2 == 0).double()  # squares with i + j even
        probs = overlap @ black @ overlap.T / 32
    else:
        centres = toy_mode_centres(name, dtype=torch.float64)
        std = _EIGHT_GAUSS_STD / _EIGHT_GAUSS_DIVISOR if name == "8gaussians" else _NINE_GAUSS_STD
        mass_x, mass_y = (torch.special.ndtr((hi[:, None] - centres[:, i]) / std)
                          - torch.special.ndtr((lo[:, None] - centres[:, i]) / std) for i in (0, 1))
        probs = (mass_x / len(centres)) @ mass_y.T
    total = probs.sum()
    if total < 1 - 1e-6:
        raise ValueError(f"code: its range holds only {float(total):.6f} of the {name} mass; increase f_scale")
    return (probs / total).reshape(-1)
