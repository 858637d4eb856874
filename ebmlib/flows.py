"""RealNVP normalizing flows (Dinh et al., 2017) with a Gaussian base, initialised to the identity map.

A flow is an invertible map ``x = T(z)`` pushing a base density ``ρ`` forward; its density is ::

    λ(x) = ρ(T⁻¹(x)) |det J_{T⁻¹}(x)|

(eq. 5 of Grenioux, Moulines & Gabrié). :class:`~ebmlib.flows.RealNVP` stacks affine coupling layers whose scale and
shift networks have a zero output layer, so a freshly built flow is exactly ``T = Id`` and ``λ = ρ``: the
initialisation flowMC-EBM needs, where the flow starts equal to the tilted EBM ``e^{-E_{θ0}} ρ`` with ``E_{θ0} ≡
0``. :func:`~ebmlib.flows.flow_ml_step` fits a flow to samples by maximum likelihood.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ebmlib.nets import MLP
from ebmlib.utils import check_int, check_positive, check_tensor


class AffineCoupling(nn.Module):
    r"""One affine coupling layer: the coordinates where ``mask = 1`` condition an affine map of the others,

    .. math::

        x = m \odot z + (1 - m) \odot \big(z\, e^{s(m \odot z)} + t(m \odot z)\big),

        \log|\det J| = \textstyle\sum_i (1 - m_i)\, s_i(m \odot z).

    The log-scale is soft-clamped, ``s = c \tanh(h / c)``, so a few large steps cannot make the map blow up.
    The last linear layer of the scale/shift network is zero, so the layer starts as the identity.

    Parameters
    ----------
    mask
        Binary tensor ``(d,)`` with at least one 0 and one 1.
    hidden_dims
        Hidden widths of the network computing ``(s, t)`` from the conditioning coordinates.
    max_log_scale
        The clamp ``c``.
    """

    def __init__(self, mask: Tensor, hidden_dims: Sequence[int], max_log_scale: float = 3.0) -> None:
        super().__init__()
        check_tensor(mask, "mask", ndim=1)
        if not ((mask == 0) | (mask == 1)).all() or mask.min() != 0 or mask.max() != 1:
            raise ValueError("mask must be a 0/1 vector with at least one 0 and one 1")
        dim = mask.shape[0]
        self.register_buffer("mask", mask.float())
        self.max_log_scale = check_positive(max_log_scale, "max_log_scale")
        self.net = MLP(dim, 2 * dim, hidden_dims, activation="silu")
        last = self.net.net[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def _check_points(self, x: Tensor, name: str) -> None:
        check_tensor(x, name, shape=(None, self.mask.shape[0]), floating=True, finite=False)

    def _scale_shift(self, z_cond: Tensor) -> tuple[Tensor, Tensor]:
        raw_s, t = self.net(z_cond).chunk(2, dim=-1)
        s = self.max_log_scale * torch.tanh(raw_s / self.max_log_scale)
        free = 1 - self.mask
        return s * free, t * free

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``x = T(z)`` and ``log|det J_T(z)|``; shapes ``(B, d)`` and ``(B,)``."""
        self._check_points(z, "z")
        s, t = self._scale_shift(z * self.mask)
        return z * torch.exp(s) + t, s.sum(-1)

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``z = T⁻¹(x)`` and ``log|det J_{T⁻¹}(x)|``; shapes ``(B, d)`` and ``(B,)``."""
        self._check_points(x, "x")
        # The conditioning coordinates are unchanged by the layer, so s and t are computed from x itself.
        s, t = self._scale_shift(x * self.mask)
        return (x - t) * torch.exp(-s), -s.sum(-1)


class RealNVP(nn.Module):
    r"""RealNVP flow ``x = T(z)``, ``z ~ ρ = N(0, σ² I_d)``, from alternating affine coupling layers.

    For ``d = 2`` the masks alternate between the two coordinates; for larger ``d`` between the first and the
    second half (each coordinate is transformed by every other layer).

    Parameters
    ----------
    dim
        ``d ≥ 2``.
    n_layers
        Number of coupling layers (the paper: 4 in 2D; "2 blocks" of 2 layers in high dimension).
    hidden_dims
        Hidden widths of each layer's scale/shift network (the paper: three layers of 16 in 2D).
    base_std
        ``σ`` of the base ``ρ``; the paper uses the largest per-coordinate standard deviation of the target.
    """

    def __init__(self, dim: int, n_layers: int = 4, hidden_dims: Sequence[int] = (16, 16, 16),
                 base_std: float = 1.0) -> None:
        super().__init__()
        check_int(dim, "dim", minimum=2)
        check_int(n_layers, "n_layers", minimum=1)
        self.dim = dim
        # float64, so that .double() keeps σ exact; a 0-dim tensor does not promote float32 computations.
        self.register_buffer("base_std", torch.tensor(check_positive(base_std, "base_std"), dtype=torch.float64))
        first = (torch.arange(dim) < dim // 2).float()
        self.layers = nn.ModuleList(
            AffineCoupling(first if i % 2 == 0 else 1 - first, hidden_dims) for i in range(n_layers)
        )

    def _check_points(self, x: Tensor, name: str) -> None:
        check_tensor(x, name, shape=(None, self.dim), floating=True, finite=False)

    def base_log_prob(self, z: Tensor) -> Tensor:
        """``log ρ(z)`` of the Gaussian base, ``(B, d) -> (B,)``: also the tilt of flowMC-EBM's energy."""
        self._check_points(z, "z")
        var = self.base_std**2
        return -0.5 * (z.pow(2).sum(-1) / var + self.dim * torch.log(2 * math.pi * var))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``x = T(z)`` and ``log|det J_T(z)|`` for ``z`` of shape ``(B, d)``; shapes ``(B, d)``, ``(B,)``."""
        self._check_points(z, "z")
        log_det = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        for layer in self.layers:
            z, ld = layer(z)
            log_det = log_det + ld
        return z, log_det

    def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``z = T⁻¹(x)`` and ``log|det J_{T⁻¹}(x)|`` for ``x`` of shape ``(B, d)``."""
        self._check_points(x, "x")
        log_det = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for layer in reversed(self.layers):
            x, ld = layer.inverse(x)
            log_det = log_det + ld
        return x, log_det

    def log_prob(self, x: Tensor) -> Tensor:
        """``log λ(x) = log ρ(T⁻¹(x)) + log|det J_{T⁻¹}(x)|`` (paper eq. 5), ``(B, d) -> (B,)``."""
        z, log_det = self.inverse(x)
        return self.base_log_prob(z) + log_det

    def sample_with_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` samples ``x = T(z)``, ``z ~ ρ``, and their ``log λ(x) = log ρ(z) - log|det J_T(z)|``.

        One forward pass gives both, which is what i-SIR's importance weights need.
        """
        check_int(n, "n", minimum=1)
        z = self.base_std * torch.randn(n, self.dim, device=self.base_std.device, dtype=self.layers[0].mask.dtype)
        x, log_det = self(z)
        return x, self.base_log_prob(z) - log_det

    def sample(self, n: int) -> Tensor:
        """``n`` samples from the flow, shape ``(n, d)``."""
        return self.sample_with_log_prob(n)[0]


def flow_ml_step(flow: RealNVP, optimizer: torch.optim.Optimizer, x: Tensor) -> Tensor:
    r"""One maximum-likelihood step on samples ``x`` (shape ``(B, d)``, treated as constants).

    Minimises :math:`-\frac1B \sum_i \log \lambda_\alpha(x_i)`, i.e. the forward KL from the samples' law to
    the flow (Alg. 1, last line, of Grenioux et al.). Returns the detached loss.
    """
    if not (isinstance(flow, nn.Module) and callable(getattr(flow, "log_prob", None)) and hasattr(flow, "dim")):
        raise ValueError(f"flow must be a flow module with log_prob and dim (a RealNVP), got {type(flow).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    check_tensor(x, "x", shape=(None, flow.dim), floating=True)
    loss = -flow.log_prob(x.detach()).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()
