"""RealNVP normalizing flows (Dinh et al., 2017) with a Gaussian base, initialised to the identity map.

A flow is an invertible map ``x = T(z)`` pushing a base density ``ρ`` forward; its density is ::

    λ(x) = ρ(T⁻¹(x)) |det J_{T⁻¹}(x)|

(eq. 5 of Grenioux, Moulines & Gabrié). :class:`~ebmlib.flows.RealNVP` stacks affine coupling layers whose scale and
shift networks have a zero output layer, so a freshly built flow is exactly ``T = Id`` and ``λ = ρ``: the
initialisation flowMC-EBM needs, where the flow starts equal to the tilted EBM ``e^{-E_{θ0}} ρ`` with ``E_{θ0} ≡
0``. :func:`~ebmlib.flows.flow_ml_step` fits a flow to samples by maximum likelihood.

For images (``image_shape=(C, H, W)``) the couplings alternate checkerboard and channel masks and compute the
scale and shift with convolutions, as RealNVP does on images; the flow still maps flattened ``(B, C·H·W)``
vectors, so it plugs into every sampler and loss that takes a :class:`~ebmlib.flows.RealNVP`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ebmlib.nets import MLP, layer_stack
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
        Hidden widths of the network computing ``(s, t)`` from the conditioning coordinates: an MLP, or with
        ``image_shape`` the channels of 3×3 convolutions (SiLU between them) that see the masked image and the
        mask.
    max_log_scale
        The clamp ``c``.
    image_shape
        ``(C, H, W)`` with ``C·H·W = d``: the coordinates are the pixels of an image, flattened channel first.
    """

    def __init__(self, mask: Tensor, hidden_dims: Sequence[int], max_log_scale: float = 3.0,
                 image_shape: Sequence[int] | None = None) -> None:
        super().__init__()
        check_tensor(mask, "mask", ndim=1)
        if not ((mask == 0) | (mask == 1)).all() or mask.min() != 0 or mask.max() != 1:
            raise ValueError("mask must be a 0/1 vector with at least one 0 and one 1")
        dim = mask.shape[0]
        self.register_buffer("mask", mask.float())
        self.max_log_scale = check_positive(max_log_scale, "max_log_scale")
        self.image_shape = None if image_shape is None else check_image_shape(image_shape, dim)
        if self.image_shape is None:
            self.net = MLP(dim, 2 * dim, hidden_dims, activation="silu")
            last = self.net.net[-1]
        else:
            self.net = _conv_net(self.image_shape[0], hidden_dims)
            last = self.net[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def _check_points(self, x: Tensor, name: str) -> None:
        check_tensor(x, name, shape=(None, self.mask.shape[0]), floating=True, finite=False)

    def _scale_shift(self, z_cond: Tensor) -> tuple[Tensor, Tensor]:
        if self.image_shape is None:
            raw_s, t = self.net(z_cond).chunk(2, dim=-1)
        else:
            image = z_cond.reshape(-1, *self.image_shape)
            mask = self.mask.to(z_cond.dtype).reshape(self.image_shape)[:1].expand(image.shape[0], -1, -1, -1)
            raw_s, t = (part.flatten(1) for part in self.net(torch.cat([image, mask], 1)).chunk(2, dim=1))
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


def check_image_shape(image_shape: Sequence[int], dim: int | None = None) -> tuple[int, int, int]:
    """``image_shape`` as ``(C, H, W)`` if it is three positive integers (whose product is ``dim``, when given);
    otherwise a ``ValueError`` naming ``image_shape``."""
    if isinstance(image_shape, (str, bytes)) or not isinstance(image_shape, Sequence) or len(image_shape) != 3 or any(
            isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in image_shape):
        raise ValueError(f"image_shape must be three positive integers (C, H, W), got {image_shape!r}")
    if dim is not None and math.prod(image_shape) != dim:
        raise ValueError(f"image_shape must hold dim = {dim} values (C·H·W), got {tuple(image_shape)}")
    return tuple(image_shape)


def _conv_net(channels: int, hidden: Sequence[int]) -> nn.Sequential:
    """3×3 convolutions from ``channels + 1`` (the masked image and the mask) through ``hidden`` to
    ``2 · channels`` (log-scale and shift per pixel), SiLU between them."""
    widths = [channels + 1, *(check_int(w, f"hidden_dims[{i}]", minimum=1) for i, w in enumerate(hidden)), 2 * channels]
    return layer_stack(widths, lambda w_in, w_out: nn.Conv2d(w_in, w_out, 3, padding=1), nn.SiLU)


def image_masks(image_shape: Sequence[int], n_layers: int) -> list[Tensor]:
    """The masks of RealNVP on images (Dinh et al., 2017, Fig. 3), flattened to ``(C·H·W,)``: a checkerboard and
    its complement, then (for ``C ≥ 2``) the first half of the channels and its complement, repeated."""
    c, h, w = check_image_shape(image_shape)
    check_int(n_layers, "n_layers", minimum=1)
    board = ((torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2 == 0).float().expand(c, h, w)
    channel = (torch.arange(c) < c // 2).float()[:, None, None].expand(c, h, w)
    cycle = [board, 1 - board] + ([channel, 1 - channel] if c >= 2 else [])
    return [cycle[i % len(cycle)].reshape(-1).clone() for i in range(n_layers)]


class RealNVP(nn.Module):
    r"""RealNVP flow ``x = T(z)``, ``z ~ ρ = N(0, σ² I_d)``, from alternating affine coupling layers.

    For ``d = 2`` the masks alternate between the two coordinates; for larger ``d`` between the first and the
    second half (each coordinate is transformed by every other layer); for images, those of
    :func:`~ebmlib.flows.image_masks` with convolutional scale/shift networks.

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
    image_shape
        ``(C, H, W)`` with ``C·H·W = d``: a flow of images (flattened channel first); ``hidden_dims`` are then
        the channels of each coupling's convolutions.
    """

    def __init__(self, dim: int, n_layers: int = 4, hidden_dims: Sequence[int] = (16, 16, 16),
                 base_std: float = 1.0, image_shape: Sequence[int] | None = None) -> None:
        super().__init__()
        check_int(dim, "dim", minimum=2)
        check_int(n_layers, "n_layers", minimum=1)
        self.dim = dim
        # float64, so that .double() keeps σ exact; a 0-dim tensor does not promote float32 computations.
        self.register_buffer("base_std", torch.tensor(check_positive(base_std, "base_std"), dtype=torch.float64))
        if image_shape is None:
            first = (torch.arange(dim) < dim // 2).float()
            masks = [first if i % 2 == 0 else 1 - first for i in range(n_layers)]
        else:
            masks = image_masks(check_image_shape(image_shape, dim), n_layers)
        self.layers = nn.ModuleList(AffineCoupling(mask, hidden_dims, image_shape=image_shape) for mask in masks)

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
