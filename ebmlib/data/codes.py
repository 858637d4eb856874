"""Discrete encodings: enumeration of ``{0, 1}^d``, Gray and base-``q`` codes of 2-D points, categorical codes.

* :func:`~ebmlib.data.all_binary_states` enumerates ``{0, 1}^d``; row ``k`` spells ``k`` in binary, first column most
  significant (the order of :meth:`~ebmlib.data.IsingLattice.exact_log_probs` and
  :func:`~ebmlib.metrics.empirical_distribution`).
* :class:`~ebmlib.data.GrayCode` turns 2-D points into the ``2 * n_bits`` binary strings used by the RMwGGIS and
  energy-discrepancy papers for discrete density estimation, and back; :class:`~ebmlib.data.BaseQCode` writes them as
  base-``q`` digits (categorical values) instead.
* :func:`~ebmlib.data.check_codes` validates rows of integer class codes stored as floats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ebmlib.utils import check_binary, check_float_dtype, check_int, check_positive, check_tensor


MAX_ENUMERATION_DIM = 20
"""Largest ``d`` for which ``2**d`` states are enumerated (:func:`~ebmlib.data.all_binary_states`, Ising exact probabilities)."""


MAX_GRAY_BITS = 1023
"""Longest Gray-code word per coordinate (``2**1023`` is the largest power of two a float64 holds)."""


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
    significant, matching :func:`~ebmlib.metrics.empirical_distribution`. ``1 ≤ d ≤ 20``; default floating dtype."""
    weights = bit_weights(d, device)
    bits = torch.arange(2**d, device=device).unsqueeze(1).div(weights, rounding_mode="floor") % 2
    return bits.to(dtype or torch.get_default_dtype())


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
        dtype = check_float_dtype(dtype)
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
        dtype = check_float_dtype(dtype)
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
        dtype = check_float_dtype(dtype)
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
        dtype = check_float_dtype(dtype)
        words = codes.double().reshape(len(codes), 2, self.n_digits)
        level = (words * self._place_values(codes.device)).sum(dim=-1)
        return (2 * (level + 0.5) / self.int_scale - self.f_scale).to(dtype)


def check_classes(n_classes: Sequence[int]) -> tuple[int, ...]:
    """Return ``n_classes`` as a tuple of ints ``>= 2`` (one class count per column); raise ``ValueError``."""
    if isinstance(n_classes, (int, str)) or not isinstance(n_classes, Sequence) or len(n_classes) == 0:
        raise ValueError(f"n_classes must be a non-empty sequence of class counts, got {n_classes!r}")
    return tuple(check_int(k, f"n_classes[{i}]", minimum=2) for i, k in enumerate(n_classes))


def check_codes(x: Tensor, n_classes: Sequence[int], name: str = "x") -> Tensor:
    """Check that ``x`` is ``(B, C)`` floating with integer codes ``0 <= x[:, c] < n_classes[c]``."""
    check_tensor(x, name, ndim=2, floating=True)
    if x.shape[1] != len(n_classes):
        raise ValueError(f"{name} must have {len(n_classes)} categorical columns, got {x.shape[1]}")
    upper = torch.tensor(n_classes, device=x.device, dtype=x.dtype)
    if not ((x == x.round()) & (x >= 0) & (x < upper)).all():
        raise ValueError(f"{name} must hold integer codes 0 <= x[:, c] < n_classes[c] = {list(n_classes)}")
    return x
