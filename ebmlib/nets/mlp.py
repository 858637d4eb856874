"""Fully connected energies: the MLPs of the papers' toy experiments and the tilted energy of flowMC-EBM."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ebmlib.utils import check_int, check_positive, check_tensor


class Swish(nn.Module):
    r"""Swish activation :math:`x \, \sigma(\beta x)` (Ramachandran et al., 2017).

    Parameters
    ----------
    learnable_beta
        Learn :math:`\beta` (initialised to 1), as in the MLP energies of the RMwGGIS and
        Gibbs-with-Gradients papers; with ``False`` it is the fixed SiLU (:math:`\beta = 1`).
    """

    def __init__(self, learnable_beta: bool = True) -> None:
        super().__init__()
        if not isinstance(learnable_beta, bool):
            raise ValueError(f"learnable_beta must be a bool, got {learnable_beta!r}")
        self.beta = nn.Parameter(torch.ones(())) if learnable_beta else None

    def forward(self, x: Tensor) -> Tensor:
        check_tensor(x, "x", floating=True, finite=False)
        beta = 1.0 if self.beta is None else self.beta
        return x * torch.sigmoid(beta * x)


_ACTIVATIONS = {
    "swish": lambda: Swish(learnable_beta=True),
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "tanh": nn.Tanh,
}


def _activation_derivatives(activation: nn.Module, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``f(z), f'(z), f''(z)`` for an activation module of :func:`make_activation` (``f'' = 0`` where it is
    piecewise linear, as autograd's second derivative is); a ``ValueError`` for any other module."""
    if isinstance(activation, Swish | nn.SiLU):
        beta = 1.0 if isinstance(activation, nn.SiLU) or activation.beta is None else activation.beta
        s = torch.sigmoid(beta * z)
        bz, ss = beta * z, s * (1 - s)
        return z * s, s + bz * ss, beta * ss * (2 + bz * (1 - 2 * s))
    if isinstance(activation, nn.Tanh):
        t = torch.tanh(z)
        d1 = 1 - t * t
        return t, d1, -2 * t * d1
    positive = z > 0
    if isinstance(activation, nn.ELU):
        curved = activation.alpha * torch.exp(z.clamp(max=0.0))  # f' = f'' = α eˣ below 0
        return activation(z), torch.where(positive, 1.0, curved), torch.where(positive, 0.0, curved)
    if not isinstance(activation, nn.ReLU | nn.LeakyReLU):
        raise ValueError(f"no forward Laplacian for activation {type(activation).__name__}")
    slope = activation.negative_slope if isinstance(activation, nn.LeakyReLU) else 0.0
    return activation(z), torch.where(positive, torch.ones_like(z), torch.full_like(z, slope)), torch.zeros_like(z)


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module by name (one of ``swish, silu, elu, relu, leaky_relu, tanh``)."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation name must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]()


def layer_stack(widths: Sequence[int], layer: Callable[[int, int], nn.Module],
                activation: Callable[[], nn.Module]) -> nn.Sequential:
    """Layers ``layer(w_in, w_out)`` between consecutive ``widths``, a fresh ``activation()`` between two of them.

    The body of :class:`MLP` (``nn.Linear``) and of :class:`~ebmlib.flows.RealNVP`'s convolutional couplings
    (3×3 ``nn.Conv2d``).

    Parameters
    ----------
    widths
        At least two positive integers: the input width, the hidden widths, the output width.
    layer
        ``(w_in, w_out) -> nn.Module``.
    activation
        ``() -> nn.Module``, called once per hidden layer (none after the last layer).
    """
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or len(widths) < 2:
        raise ValueError(f"widths must be a sequence of at least two positive integers, got {widths!r}")
    for i, width in enumerate(widths):
        check_int(width, f"widths[{i}]", minimum=1)
    for fn, name in ((layer, "layer"), (activation, "activation")):
        if not callable(fn):
            raise ValueError(f"{name} must be callable, got {type(fn).__name__}")
    modules: list[nn.Module] = []
    for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:])):
        modules.append(layer(w_in, w_out))
        if i < len(widths) - 2:
            modules.append(activation())
    return nn.Sequential(*modules)


class MLP(nn.Module):
    """Fully connected network ``in_dim -> hidden_dims... -> out_dim`` with one activation between layers.

    Parameters
    ----------
    in_dim, out_dim
        Input and output widths.
    hidden_dims
        Widths of the hidden layers (may be empty: a linear map).
    activation
        Name accepted by :func:`~ebmlib.nets.make_activation`; each hidden layer gets its own instance (so a learnable
        Swish has one β per layer).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dims: Sequence[int], activation: str = "swish") -> None:
        super().__init__()
        check_int(in_dim, "in_dim", minimum=1)
        check_int(out_dim, "out_dim", minimum=1)
        for i, width in enumerate(hidden_dims):
            check_int(width, f"hidden_dims[{i}]", minimum=1)
        make_activation(activation)  # the name is checked even without hidden layers
        self.net = layer_stack([in_dim, *hidden_dims, out_dim], nn.Linear, lambda: make_activation(activation))
        self.in_dim = in_dim

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, in_dim)`` to ``(B, out_dim)`` (any leading dimensions; metadata checked only)."""
        check_tensor(x, "x", min_ndim=1, floating=True, finite=False)
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"x must have {self.in_dim} features in its last dimension, got shape {tuple(x.shape)}")
        return self.net(x)


class MLPEnergy(nn.Module):
    """Energy ``E(x)`` given by an MLP with a scalar output; inputs are flattened.

    Parameters
    ----------
    in_dim
        Number of input features after flattening ``(B, *event_shape)`` to ``(B, in_dim)``.
    hidden
        Width of every hidden layer.
    depth
        Number of hidden layers.
    activation
        See :func:`~ebmlib.nets.make_activation`. The default Swish with learnable β follows the RMwGGIS and
        Gibbs-with-Gradients papers' toy experiments.
    """

    def __init__(self, in_dim: int, hidden: int = 256, depth: int = 3, activation: str = "swish") -> None:
        super().__init__()
        check_int(depth, "depth", minimum=0)
        check_int(hidden, "hidden", minimum=1)
        self.mlp = MLP(in_dim, 1, [hidden] * depth, activation)

    def forward(self, x: Tensor) -> Tensor:
        """Return energies of shape ``(B,)`` for ``x`` of shape ``(B, *event_shape)``."""
        check_tensor(x, "x", min_ndim=1, finite=False)
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.mlp.in_dim:
            raise ValueError(f"x must have {self.mlp.in_dim} features per sample, got {flat.shape[1]}")
        return self.mlp(flat.to(next(self.parameters()).dtype)).squeeze(-1)

    def grad_and_laplacian(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        r"""Energy, gradient :math:`\nabla_x E` and Laplacian :math:`\mathrm{tr}\,\nabla_x^2 E` in one forward pass.

        The "forward Laplacian" (Li et al., 2023): each layer carries its value ``h``, its Jacobian
        ``J = ∂h/∂x`` and its Laplacian ``L = Σ_k ∂²h/∂x_k²``; a linear layer maps all three, an activation
        ``f`` gives ``J' = f'(z) J`` and ``L' = f''(z) Σ_k J_k² + f'(z) L``. It costs about ``d + 2`` forward
        passes of matrix products and no second-order autograd, so training through it (the ODE flow's
        likelihood, :func:`~ebmlib.samplers.flow_log_prob`) needs only first-order backpropagation;
        :func:`~ebmlib.samplers.hessian_trace` uses it for this network.

        Parameters
        ----------
        x
            Shape ``(B, in_dim)``.

        Returns
        -------
        energy, grad, laplacian
            Shapes ``(B,)``, ``(B, in_dim)`` and ``(B,)``; differentiable in ``x`` and the parameters.
        """
        check_tensor(x, "x", ndim=2, finite=False)
        if x.shape[1] != self.mlp.in_dim:
            raise ValueError(f"x must have {self.mlp.in_dim} features per sample, got {x.shape[1]}")
        first, *rest = self.mlp.net
        z = first(x.to(first.weight.dtype))
        jac = first.weight.t().expand(x.shape[0], -1, -1)  # (B, d, width): the first layer's is W^T for all
        lap = torch.zeros_like(z)
        for activation, linear in zip(rest[::2], rest[1::2]):  # the layers after the first alternate
            h, d1, d2 = _activation_derivatives(activation, z)
            lap = d2 * jac.pow(2).sum(1) + d1 * lap
            jac = d1.unsqueeze(1) * jac
            z, jac, lap = linear(h), jac @ linear.weight.t(), lap @ linear.weight.t()
        return z.squeeze(-1), jac.squeeze(-1), lap.squeeze(-1)

    def first_layer(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The first layer's pre-activations ``W x + b``, ``(B, width)``, and ``Wᵀ`` as ``(1, in_dim, width)``.

        With :meth:`head`, ``E(x) = head(W x + b)``: the split that lets exact ratio matching evaluate all
        single-bit flips of ``x`` as rank-one updates of one product (:func:`~ebmlib.losses.ratio_matching`).
        ``width`` is ``hidden`` (1 for ``depth=0``, a linear energy, whose head is the identity).
        """
        check_tensor(x, "x", min_ndim=1, finite=False)
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.mlp.in_dim:
            raise ValueError(f"x must have {self.mlp.in_dim} features per sample, got {flat.shape[1]}")
        linear = self.mlp.net[0]
        return linear(flat.to(linear.weight.dtype)), linear.weight.t().unsqueeze(0)

    def head(self, h: Tensor) -> Tensor:
        """Energies ``(M,)`` from first-layer pre-activations ``h``, ``(M, width)`` (see :meth:`first_layer`)."""
        check_tensor(h, "h", ndim=2, floating=True, finite=False)
        for layer in self.mlp.net[1:]:
            h = layer(h)
        return h.squeeze(-1)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars in ``module``."""
    if not isinstance(module, nn.Module):
        raise ValueError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    return sum(math.prod(p.shape) for p in module.parameters() if p.requires_grad)


def toy_energy_net(dim: int, hidden_dims: Sequence[int] = (32, 64, 64, 64)) -> MLP:
    """The MLP energy of the paper's toy experiments (Nijkamp et al., 2020: ``d→32→64→64→64→1``, LeakyReLU).

    The output layer is zero, so ``E_{θ0} ≡ 0`` as flowMC-EBM's initialisation requires. The MLP maps
    ``(B, d)`` to ``(B, 1)``; :class:`~ebmlib.nets.TiltedEnergy` squeezes it to ``(B,)``.
    """
    net = MLP(check_int(dim, "dim", minimum=1), 1, hidden_dims, activation="leaky_relu")
    nn.init.zeros_(net.net[-1].weight)
    nn.init.zeros_(net.net[-1].bias)
    return net


class TiltedEnergy(nn.Module):
    r"""Energy :math:`U_\theta(x) = E_\theta(x) - \log\rho(x)` of the tilted EBM :math:`p_\theta^\rho` (eq. 6).

    ``log ρ`` has no parameters, so the maximum-likelihood gradient keeps its usual form (paper App. B);
    the tilt only makes the model integrable from the start and ties it to the flow's base.

    Parameters
    ----------
    net
        ``E_θ``: maps ``(B, d)`` to ``(B,)`` or ``(B, 1)``.
    dim
        ``d``.
    base_std
        ``σ`` of ``ρ = N(0, σ² I_d)``, the same as the companion :class:`~ebmlib.flows.RealNVP`'s.
    """

    def __init__(self, net: nn.Module, dim: int, base_std: float) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise ValueError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        self.net = net
        self.dim = check_int(dim, "dim", minimum=1)
        # float64, so that .double() keeps σ exact; a 0-dim tensor does not promote float32 inputs.
        self.register_buffer("base_std", torch.tensor(check_positive(base_std, "base_std"), dtype=torch.float64))

    def base_log_prob(self, x: Tensor) -> Tensor:
        """``log ρ(x)``, ``(B, d) -> (B,)``."""
        check_tensor(x, "x", shape=(None, self.dim), floating=True, finite=False)
        var = self.base_std**2
        return -0.5 * (x.pow(2).sum(-1) / var + self.dim * torch.log(2 * torch.pi * var))

    def forward(self, x: Tensor) -> Tensor:
        """``U_θ(x)``, ``(B, d) -> (B,)``."""
        check_tensor(x, "x", shape=(None, self.dim), floating=True, finite=False)
        return self.net(x).reshape(x.shape[0]) - self.base_log_prob(x)
