"""Synthetic data for the chapters: 2-D toy densities, their Gray-code binarisation, a lattice Ising model.

* :func:`sample_toy` draws from the 2-D toy densities of FFJORD / Gibbs-with-Gradients (:data:`TOY_NAMES`);
  :func:`toy_log_prob` is the exact log-density where analytic, :func:`toy_mode_centres` the mixture means.
* :class:`GrayCode` turns 2-D points into the ``2 * n_bits`` binary strings used by the RMwGGIS and
  energy-discrepancy papers for discrete density estimation, and back; :class:`BaseQCode` writes them as
  base-``q`` digits (categorical values) instead.
* :class:`IsingLattice` is the lattice Ising model of Gibbs-with-Gradients / RMwGGIS, with an exact
  enumeration for small lattices and a vectorised chromatic Gibbs sampler for ground-truth samples.
* :func:`all_binary_states` enumerates ``{0, 1}^d``; row ``k``
  spells ``k`` in binary, first column most significant, which is also the order of
  :meth:`IsingLattice.exact_log_probs`.

All random draws use an optional CPU :class:`torch.Generator`, so results are reproducible on any device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ebmlib.utils import check_binary, check_int, check_positive, check_tensor

TOY_NAMES = ("2spirals", "8gaussians", "circles", "moons", "pinwheel", "swissroll", "checkerboard", "rings",
             "9gaussians")
"""Names accepted by :func:`sample_toy`."""

ANALYTIC_TOY_NAMES = ("8gaussians", "9gaussians", "checkerboard")
"""Toys whose normalised density :func:`toy_log_prob` evaluates exactly."""

MAX_ENUMERATION_DIM = 20
"""Largest ``d`` for which ``2**d`` states are enumerated (:func:`all_binary_states`, Ising exact probabilities)."""

MAX_GRAY_BITS = 1023
"""Longest Gray-code word per coordinate (``2**1023`` is the largest power of two a float64 holds)."""


def _check_float_dtype(dtype: Any) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    return dtype


def _check_real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """U(0, 1) draws: on the CPU with ``generator`` (reproducible everywhere), else directly on ``device``."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator).to(device)


# ---------------------------------------------------------------------------------------------------------
# Enumeration of {0,1}^d (exact computations on tiny spaces)
# ---------------------------------------------------------------------------------------------------------
def bit_weights(d: int, device: torch.device | str | None = None) -> Tensor:
    """``2^{d-1}, …, 2, 1`` for ``1 ≤ d ≤ 20``: the first column is the most significant bit."""
    d = check_int(d, "d", minimum=1)
    if d > MAX_ENUMERATION_DIM:
        raise ValueError(f"d must be <= {MAX_ENUMERATION_DIM} to enumerate 2**d states, got {d}")
    return 2 ** torch.arange(d - 1, -1, -1, device=device)


def all_binary_states(
    d: int, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> Tensor:
    """All ``2^d`` states, shape ``(2^d, d)``: row ``k`` spells ``k`` in binary, first column most
    significant, matching :func:`ebmlib.metrics.empirical_distribution`. ``1 ≤ d ≤ 20``; default floating dtype."""
    weights = bit_weights(d, device)
    bits = torch.arange(2**d, device=device).unsqueeze(1).div(weights, rounding_mode="floor") % 2
    return bits.to(dtype or torch.get_default_dtype())


# ---------------------------------------------------------------------------------------------------------
# 2-D toy densities. Each sampler maps (n, generator, dtype) to CPU points of shape (n, 2).
# ---------------------------------------------------------------------------------------------------------
_EIGHT_GAUSS_RADIUS, _EIGHT_GAUSS_STD, _EIGHT_GAUSS_DIVISOR = 4.0, 0.5, 1.414
_NINE_GAUSS_GRID, _NINE_GAUSS_STD = (-2.5, 0.0, 2.5), 0.1
_RING_RADII, _RING_NOISE = (0.75, 1.5, 2.25, 3.0), 0.08


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
        One of :data:`TOY_NAMES`.
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
    dtype = _check_float_dtype(dtype)
    return _TOY_SAMPLERS[name](n, generator, dtype).to(device)


def toy_mode_centres(name: str, *, device: torch.device | str | None = None,
                     dtype: torch.dtype = torch.float32) -> Tensor:
    """Means of the mixture components of a Gaussian-mixture toy, shape ``(K, 2)``.

    ``8gaussians``: ``4 (cos kπ/4, sin kπ/4) / 1.414`` for ``k = 0..7``; ``9gaussians``: ``{-2.5, 0, 2.5}²``
    in row-major order (first coordinate slowest). Other names raise ``ValueError``.
    """
    if name not in ("8gaussians", "9gaussians"):
        raise ValueError(f"name: {name!r} is not a Gaussian mixture; use '8gaussians' or '9gaussians'")
    dtype = _check_float_dtype(dtype)
    if name == "8gaussians":
        return (_eight_gaussian_centres(dtype) / _EIGHT_GAUSS_DIVISOR).to(device)
    return _nine_gaussian_centres(dtype).to(device)


def sample_toy_mixture(name: str, n: int, *, generator: torch.Generator | None = None,
                       device: torch.device | str | None = None,
                       dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Like :func:`sample_toy` for ``8gaussians`` / ``9gaussians``, also returning each point's component.

    Returns
    -------
    x, component
        Points ``(n, 2)`` and the index ``k`` (``torch.long``, ``(n,)``) of the mean
        ``toy_mode_centres(name)[k]`` each point was drawn around.
    """
    centres = toy_mode_centres(name, dtype=_check_float_dtype(dtype))
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


def toy_log_prob(name: str, x: Tensor) -> Tensor:
    """Exact normalised log-density ``log p(x)`` of an analytic toy; input ``(B, 2)``, output ``(B,)``.

    * ``8gaussians``: ``log (1/8) Σ_k N(x; c_k / 1.414, (0.5 / 1.414)² I)``.
    * ``9gaussians``: ``log (1/9) Σ_k N(x; μ_k, 0.1² I)``.
    * ``checkerboard``: ``-log 32`` on the support and ``-inf`` outside it (the density is zero there).

    Other names raise ``ValueError``: their densities have no closed form.
    """
    if name not in ANALYTIC_TOY_NAMES:
        raise ValueError(f"name: the density of {name!r} is not analytic; use one of {ANALYTIC_TOY_NAMES}")
    check_tensor(x, "x", shape=(None, 2), floating=True)
    if name != "checkerboard":
        std = _EIGHT_GAUSS_STD / _EIGHT_GAUSS_DIVISOR if name == "8gaussians" else _NINE_GAUSS_STD
        return _mixture_log_prob(x, toy_mode_centres(name, device=x.device, dtype=x.dtype), std)
    cell = torch.floor(x / 2)
    inside = ((x >= -4) & (x < 4)).all(dim=1) & (cell.sum(dim=1) % 2 == 0)
    return torch.where(inside, -math.log(32.0), -math.inf).to(x.dtype)


# ---------------------------------------------------------------------------------------------------------
# Gray code of 2-D points
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GrayCode:
    """Sign + reflected-Gray-code binarisation of 2-D points, as in the RMwGGIS / energy-discrepancy code.

    A coordinate ``v`` becomes the integer ``n = trunc(v · int_scale)`` with
    ``int_scale = 2**(n_bits - 1) / (f_scale + 1)``, then an ``n_bits``-bit word: a sign bit (1 iff
    ``v < 0``) followed by the Gray code ``g = m XOR (m >> 1)`` of ``m = |n|`` on ``n_bits - 1`` bits, most
    significant bit first. The words of ``x`` and ``y`` are concatenated, giving ``2 * n_bits`` bits.

    Each code stands for a cell of width ``1 / int_scale``: ``[m, m + 1) / int_scale`` for sign 0 and
    ``(-(m + 1), -m] / int_scale`` for sign 1 (so "negative zero", sign 1 with ``m = 0``, is the cell
    ``(-1/int_scale, 0)``). Cells of neighbouring integers, including the two cells around 0, differ in
    exactly one bit. Points with ``|v| >= f_scale + 1`` have no code and raise ``ValueError``.

    ``f_scale > 0`` is the data scale (the papers use ``max |samples| + 1``, see :meth:`from_samples`);
    ``n_bits`` in ``[2, 1023]`` is the word length per coordinate (the papers use 16, i.e. 32 bits per point).
    """

    f_scale: float
    n_bits: int = 16

    def __post_init__(self) -> None:
        check_positive(self.f_scale, "f_scale")
        check_int(self.n_bits, "n_bits", minimum=2)
        if self.n_bits > MAX_GRAY_BITS:
            raise ValueError(f"n_bits must be <= {MAX_GRAY_BITS}, got {self.n_bits}")

    @property
    def int_scale(self) -> float:
        """Integer units per unit of ``v``: ``2**(n_bits - 1) / (f_scale + 1)``."""
        return 2 ** (self.n_bits - 1) / (self.f_scale + 1)

    @property
    def dim(self) -> int:
        """Bits per point, ``2 * n_bits``."""
        return 2 * self.n_bits

    @classmethod
    def from_samples(cls, points: Tensor, n_bits: int = 16) -> GrayCode:
        """Code with ``f_scale = max |points| + 1`` (the papers' convention); ``points``: ``(B, 2)``."""
        check_tensor(points, "points", shape=(None, 2), floating=True)
        if points.shape[0] == 0:
            raise ValueError("points must contain at least one point")
        return cls(f_scale=float(points.abs().max()) + 1.0, n_bits=n_bits)

    def _place_values(self, device: torch.device) -> Tensor:
        """``2^{n_bits-2}, …, 2, 1`` in float64: the weights of the magnitude's digits, MSB first."""
        return torch.pow(2.0, torch.arange(self.n_bits - 2, -1, -1, device=device, dtype=torch.float64))

    def encode(self, points: Tensor, *, dtype: torch.dtype = torch.float32) -> Tensor:
        """Bits of ``points``: ``(B, 2)`` floating → ``(B, 2 * n_bits)`` of 0./1. (``x`` word, ``y`` word).

        The magnitude ``m = floor(|v| · int_scale)`` is kept as an integer-valued float64 and its binary digits
        are read off with exact power-of-two divisions, so words longer than 64 bits (the paper's 256- to
        2048-dimensional 2spirals) work: like the authors' arbitrary-precision integers, all digits below the
        53 significant bits of ``v · int_scale`` are zero.
        """
        check_tensor(points, "points", shape=(None, 2), floating=True)
        dtype = _check_float_dtype(dtype)
        magnitude = torch.floor(points.double().abs() * self.int_scale)
        if (magnitude >= 2.0 ** (self.n_bits - 1)).any():
            raise ValueError(
                f"points: every |coordinate| must be < f_scale + 1 = {self.f_scale + 1}, "
                f"got max {float(points.abs().max())}"
            )
        binary = torch.fmod(torch.floor(magnitude.unsqueeze(-1) / self._place_values(points.device)), 2.0)
        # Gray digit k is binary digit k XOR binary digit k-1 (the digit above the MSB is 0).
        previous = torch.nn.functional.pad(binary[..., :-1], (1, 0))
        gray_bits = (binary != previous).double()
        sign = (points < 0).double().unsqueeze(-1)
        return torch.cat([sign, gray_bits], dim=-1).reshape(len(points), self.dim).to(dtype)

    def decode(self, bits: Tensor, *, dtype: torch.dtype = torch.float32) -> Tensor:
        """Cell midpoints of codes: ``(B, 2 * n_bits)`` of 0/1 → ``(B, 2)``.

        ``v = (1 - 2 sign) (m + 1/2) / int_scale``, where the binary digits of ``m`` are the prefix XORs of
        the Gray digits. Using the midpoint (rather than the papers' ``n / int_scale``, half a cell lower in
        magnitude) makes ``encode(decode(b)) == b`` hold exactly for every bit string, and
        ``|decode(encode(x)) - x| <= 1 / (2 int_scale)``. The first identity needs the rounding error of
        ``dtype`` below half a cell: float32 (24-bit significand) suffices for ``n_bits <= 23``, float64 for
        ``n_bits <= 53``; longer words decode to the nearest float.
        """
        check_tensor(bits, "bits", ndim=2)
        check_binary(bits, "bits")
        if bits.shape[1] != self.dim:
            raise ValueError(f"bits must have {self.dim} columns (2 * n_bits), got {bits.shape[1]}")
        dtype = _check_float_dtype(dtype)
        words = bits.long().reshape(len(bits), 2, self.n_bits)
        binary = torch.cumsum(words[..., 1:], dim=-1) & 1  # prefix XOR turns Gray digits into binary digits
        magnitude = (binary.double() * self._place_values(bits.device)).sum(dim=-1)
        sign = 1 - 2 * words[..., 0]
        return (sign * (magnitude + 0.5) / self.int_scale).to(dtype)


@dataclass(frozen=True)
class BaseQCode:
    """Base-``q`` digits of 2-D points: the energy-discrepancy paper's "beyond binary" toys (no Gray code).

    A coordinate ``v ∈ (-f_scale, f_scale)`` is shifted to ``u = (v + f_scale) / 2 · int_scale`` with
    ``int_scale = q**n_digits / (f_scale + 1)`` and written as the ``n_digits`` base-``q`` digits of
    ``floor(u)``, most significant first. The two words are concatenated: ``2 * n_digits`` categorical values
    in ``{0, …, q-1}``, returned as floats. The paper uses ``q = 5`` with 8 digits per coordinate (16 in all)
    and ``q = 10`` with 6.

    Parameters
    ----------
    f_scale
        Data scale ``> 0`` (``max |samples| + 1``, see :meth:`from_samples`); ``|v| >= f_scale`` raises.
    base
        ``q >= 2``.
    n_digits
        Digits per coordinate, ``>= 1``, with ``q**n_digits < 2**53``.
    """

    f_scale: float
    base: int = 5
    n_digits: int = 8

    def __post_init__(self) -> None:
        check_positive(self.f_scale, "f_scale")
        check_int(self.base, "base", minimum=2)
        check_int(self.n_digits, "n_digits", minimum=1)
        if self.base**self.n_digits >= 2**53:
            raise ValueError(f"n_digits: base**n_digits must be < 2**53, got {self.base}**{self.n_digits}")

    @property
    def int_scale(self) -> float:
        """Integer units per unit of ``u``: ``q**n_digits / (f_scale + 1)``."""
        return self.base**self.n_digits / (self.f_scale + 1)

    @property
    def dim(self) -> int:
        """Digits per point, ``2 * n_digits``."""
        return 2 * self.n_digits

    @classmethod
    def from_samples(cls, points: Tensor, base: int = 5, n_digits: int = 8) -> BaseQCode:
        """Code with ``f_scale = max |points| + 1``; ``points``: ``(B, 2)``."""
        check_tensor(points, "points", shape=(None, 2), floating=True)
        if points.shape[0] == 0:
            raise ValueError("points must contain at least one point")
        return cls(f_scale=float(points.abs().max()) + 1.0, base=base, n_digits=n_digits)

    def _place_values(self, device: torch.device) -> Tensor:
        return torch.pow(float(self.base), torch.arange(self.n_digits - 1, -1, -1, device=device, dtype=torch.float64))

    def encode(self, points: Tensor, *, dtype: torch.dtype = torch.float32) -> Tensor:
        """Digits of ``points``: ``(B, 2)`` floating → ``(B, 2 * n_digits)`` integer-valued floats."""
        check_tensor(points, "points", shape=(None, 2), floating=True)
        dtype = _check_float_dtype(dtype)
        if (points.abs() >= self.f_scale).any():
            raise ValueError(f"points: every |coordinate| must be < f_scale = {self.f_scale}, "
                             f"got max {float(points.abs().max())}")
        level = torch.floor((points.double() + self.f_scale) / 2 * self.int_scale)
        digits = torch.fmod(torch.floor(level.unsqueeze(-1) / self._place_values(points.device)), self.base)
        return digits.reshape(len(points), self.dim).to(dtype)

    def decode(self, codes: Tensor, *, dtype: torch.dtype = torch.float32) -> Tensor:
        """Cell midpoints: ``(B, 2 * n_digits)`` digits → ``(B, 2)``, ``v = 2 (n + ½) / int_scale - f_scale``.

        ``encode(decode(c)) == c`` for every code whose cell lies inside ``(-f_scale, f_scale)``.
        """
        check_tensor(codes, "codes", shape=(None, self.dim))
        if not ((codes == codes.round()) & (codes >= 0) & (codes < self.base)).all():
            raise ValueError(f"codes must hold integer digits in [0, {self.base})")
        dtype = _check_float_dtype(dtype)
        words = codes.double().reshape(len(codes), 2, self.n_digits)
        level = (words * self._place_values(codes.device)).sum(dim=-1)
        return (2 * (level + 0.5) / self.int_scale - self.f_scale).to(dtype)


# ---------------------------------------------------------------------------------------------------------
# Ising model on a square lattice
# ---------------------------------------------------------------------------------------------------------
def _lattice_colour_classes(side: int, periodic: bool) -> list[Tensor]:
    """Site indices of each class of a proper lattice colouring with the fewest colours.

    If ``a`` properly colours the row (= column) path or cycle with values in Z_k, then
    ``(a(r) + a(c)) mod k`` changes along every lattice edge, as an edge moves exactly one of ``r, c`` to a
    neighbour. Alternating ``a = 0, 1, 0, ...`` with ``k = 2`` (the checkerboard) works unless the side is odd
    and periodic: such lattices (e.g. 25 × 25) are not bipartite, so the last node of the odd cycle gets
    ``a = 2`` and ``k = 3``.
    """
    a = torch.arange(side) % 2
    odd_cycle = periodic and side % 2 == 1
    if odd_cycle:
        a[-1] = 2
    colour = ((a[:, None] + a[None, :]) % (3 if odd_cycle else 2)).flatten()
    return [torch.nonzero(colour == c).flatten() for c in colour.unique().tolist()]


def _local_field(spins: Tensor, neighbours: Tensor, weights: Tensor) -> Tensor:
    """``h_i = Σ_j J_ij s_j`` from a neighbour table ``(n_sites, 4)``: ``(B, D)`` spins → ``(B, n_sites)``."""
    return (spins[:, neighbours] * weights).sum(dim=-1)


class IsingLattice:
    """Ising model on a ``side × side`` square lattice with 4-neighbour couplings (GWG / RMwGGIS convention).

    States are bits ``x ∈ {0, 1}^D``, ``D = side²``, with spins ``s = 2x - 1``; site ``(r, c)`` has index
    ``r * side + c``. The unnormalised log-density is

        ``log p̃(x) = sᵀ J s + b Σ_i s_i``,   ``J = sigma · A``,

    with ``A`` the symmetric, zero-diagonal adjacency matrix of the lattice (wrap-around when ``periodic``).
    As ``J`` is symmetric, each edge enters twice: ``sᵀ J s = 2 sigma Σ_{edges {i,j}} s_i s_j``. The energy
    is ``E = -log p̃``, so ``p(x) ∝ exp(-E(x))``; calling the model evaluates :meth:`energy`.

    Parameters
    ----------
    side
        Lattice side, ``>= 3`` (smaller periodic lattices would have repeated neighbours).
    sigma
        Coupling strength, any finite real (``> 0`` is ferromagnetic).
    periodic
        Wrap around the edges (a torus: every site has 4 neighbours) or not (open boundary).
    bias
        Uniform external field ``b``.

    Attributes
    ----------
    J
        Dense coupling matrix ``sigma · A``, shape ``(D, D)``, CPU float32.
    colour_classes
        Site indices of the colour classes used by :meth:`sample`: 2 classes, or 3 for odd periodic sides.
    """

    def __init__(self, side: int, sigma: float, *, periodic: bool = True, bias: float = 0.0) -> None:
        self.side = check_int(side, "side", minimum=3)
        self.sigma = _check_real(sigma, "sigma")
        self.bias = _check_real(bias, "bias")
        if not isinstance(periodic, bool):
            raise ValueError(f"periodic must be a bool, got {periodic!r}")  # noqa: TRY004 (ebmlib convention)
        self.periodic = periodic
        self.dim = side * side
        # Neighbour table (D, 4): up, down, left, right. A missing (open-boundary) neighbour points at the
        # site itself with weight 0, so that gathers stay in range.
        site = torch.arange(self.dim)[:, None]
        n_row, n_col = site // side + torch.tensor([-1, 1, 0, 0]), site % side + torch.tensor([0, 0, -1, 1])
        exists = torch.ones(self.dim, 4, dtype=torch.bool)
        if not periodic:
            exists = (n_row >= 0) & (n_row < side) & (n_col >= 0) & (n_col < side)
        self._neighbours = torch.where(exists, (n_row % side) * side + n_col % side, site)
        self._weights = self.sigma * exists.double()  # float64 so that exact_log_probs is exact
        self.J = torch.zeros(self.dim, self.dim)
        self.J[site.expand(-1, 4)[exists], self._neighbours[exists]] = self.sigma
        self.colour_classes = _lattice_colour_classes(side, periodic)

    def energy(self, x: Tensor) -> Tensor:
        """``E(x) = -(sᵀ J s + b Σ_i s_i)`` with ``s = 2x - 1``: ``(B, D)`` binary floats → ``(B,)``.

        Differentiable in ``x`` (Gibbs-with-Gradients takes ``∇_x E`` at binary points).
        """
        check_tensor(x, "x", shape=(None, self.dim), floating=True)
        check_binary(x, "x")
        spins = 2 * x - 1
        field = _local_field(spins, self._neighbours.to(x.device), self._weights.to(x.device, x.dtype))
        return -((spins * field).sum(dim=-1) + self.bias * spins.sum(dim=-1))

    __call__ = energy

    def exact_log_probs(self, *, dtype: torch.dtype = torch.float32) -> Tensor:
        """Normalised ``log p(x)`` of all ``2**D`` states, ordered as :func:`all_binary_states` (``D <= 20``).

        Computed in float64, then cast to ``dtype``.
        """
        dtype = _check_float_dtype(dtype)
        if self.dim > MAX_ENUMERATION_DIM:
            raise ValueError(f"side: enumeration needs side**2 <= {MAX_ENUMERATION_DIM}, got {self.dim}")
        log_p = -self.energy(all_binary_states(self.dim, dtype=torch.float64))
        return (log_p - torch.logsumexp(log_p, dim=0)).to(dtype)

    def sample(self, n: int, n_sweeps: int, *, generator: torch.Generator | None = None,
               device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """Ground-truth samples by chromatic Gibbs sampling of ``n`` independent chains: ``(n, D)`` bits.

        Chains start from uniform random spins. A sweep updates the colour classes one after another; sites
        of one class are not coupled, so all of them (in all chains) are resampled at once from the exact
        conditional ``p(s_i = +1 | s_rest) = sigmoid(2 (2 Σ_j J_ij s_j + b))``.

        ``n >= 1`` chains run for ``n_sweeps >= 0`` sweeps on ``device`` (default CPU); all draws use the
        optional CPU ``generator`` (then move to ``device``). The bits are returned as ``dtype``.
        """
        check_int(n, "n", minimum=1)
        check_int(n_sweeps, "n_sweeps", minimum=0)
        dtype = _check_float_dtype(dtype)
        device = torch.device("cpu" if device is None else device)
        classes = [(c.to(device), self._neighbours[c].to(device), self._weights[c].to(device, torch.float32))
                   for c in self.colour_classes]
        spins = torch.where(_uniform((n, self.dim), generator, device) < 0.5, 1.0, -1.0)
        for _ in range(n_sweeps):
            for sites, neighbours, weights in classes:
                p_up = torch.sigmoid(2 * (2 * _local_field(spins, neighbours, weights) + self.bias))
                u = _uniform((n, len(sites)), generator, device)
                spins[:, sites] = torch.where(u < p_up, 1.0, -1.0)
        return ((spins + 1) / 2).to(dtype)
