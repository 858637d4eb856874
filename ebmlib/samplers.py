"""MCMC samplers for energy-based models with density ``p(x) ∝ exp(-E(x))``.

Every sampler runs ``B`` independent chains at once: each step is a batched tensor operation over all chains,
on the device and in the dtype of the input states. Samplers never modify their input in place, need no
autograd graph from the caller, and return detached tensors.

Binary states ``x ∈ {0, 1}^{B×d}`` are stored as floating-point tensors so that ``∇_x E`` exists for the
gradient-informed samplers. The building blocks :func:`flip_bits` and :func:`flip_log_proposal` are public
because ratio matching (RMwGGIS) and the tests reuse them; ``_metropolis_hastings`` is the accept/reject
step that later Metropolis-adjusted samplers (MALA, categorical Gibbs-with-Gradients) share.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import torch
from torch import Tensor

from ebmlib.utils import (
    EnergyFn,
    check_binary,
    check_energy_output,
    check_int,
    check_positive,
    check_tensor,
    energy_and_grad,
)

GIBBS_ORDERS = ("systematic", "random")


# ---------------------------------------------------------------------------------------------------------
# Shared building blocks
# ---------------------------------------------------------------------------------------------------------
def flip_bits(x: Tensor, index: Tensor) -> Tensor:
    """Flip one bit per chain: ``x'_{b,j} = 1 - x_{b,j}`` if ``j = index_b``, else ``x_{b,j}``.

    Only metadata is checked (no device synchronisation), so the function is safe inside sampling loops;
    an index outside ``[0, d)`` makes torch raise.

    Parameters
    ----------
    x
        Binary states, shape ``(B, d)``.
    index
        The bit to flip in each chain, integer dtype ``torch.long``, shape ``(B,)``.

    Returns
    -------
    Tensor
        A new tensor of shape ``(B, d)``; ``x`` is left unchanged.
    """
    check_tensor(x, "x", ndim=2, finite=False)
    check_tensor(index, "index", shape=(x.shape[0],))
    if index.dtype != torch.long:
        raise ValueError(f"index must have dtype torch.long, got {index.dtype}")
    column = index.unsqueeze(1)
    return x.scatter(1, column, 1 - x.gather(1, column))


def flip_log_proposal(x: Tensor, grad: Tensor, temperature: float = 2.0) -> Tensor:
    """Gradient-informed log-proposal over single-bit flips (Grathwohl et al. 2021).

    The change of ``f = -E`` when bit ``i`` is flipped is estimated to first order by
    ``d̃(x)_i = (2 x_i - 1) ∂E/∂x_i  ≈ E(x) - E(x with bit i flipped)``, and
    ``log q(i | x) = log_softmax(d̃(x) / temperature)_i``.

    ``temperature = 2`` is the locally balanced proposal of Gibbs-with-Gradients; RMwGGIS's importance
    distribution ``ñ_i ∝ exp(2 d̃(x)_i)`` is ``temperature = 0.5``. Only metadata is checked, so the
    function is safe inside sampling loops.

    Parameters
    ----------
    x
        Binary states, shape ``(B, d)``.
    grad
        ``∇_x E(x)``, shape ``(B, d)``.
    temperature
        Divides the first-order estimate before the softmax.

    Returns
    -------
    Tensor
        ``log q(· | x)``, shape ``(B, d)``; each row's exponentials sum to one.
    """
    check_tensor(x, "x", ndim=2, finite=False)
    check_tensor(grad, "grad", shape=tuple(x.shape), finite=False)
    temperature = check_positive(temperature, "temperature")
    return torch.log_softmax((2 * x - 1) * grad / temperature, dim=-1)


def _metropolis_hastings(log_alpha: Tensor) -> Tensor:
    """Accept chain ``b`` with probability ``min(1, exp(log_alpha_b))``; return the ``(B,)`` boolean mask."""
    # log U < log α avoids overflowing exp(log α); U = 0 (log U = -inf) is accepted, as U < α demands.
    return torch.rand_like(log_alpha).log() < log_alpha


def _sample_categorical(log_probs: Tensor) -> Tensor:
    """One index per row from ``softmax(log_probs)``, shape ``(B,)``, by the Gumbel-max trick.

    Unlike :func:`torch.multinomial` it does not validate values on the host, so NaN reaches the deferred
    finiteness check of the calling sampler.
    """
    gumbel = -torch.empty_like(log_probs).exponential_().log()
    return (log_probs + gumbel).argmax(dim=-1)


def _select(accepted: Tensor, proposal: Tensor, current: Tensor) -> Tensor:
    """Per chain, ``proposal`` where ``accepted`` (shape ``(B,)``) else ``current``; any trailing shape."""
    mask = accepted.view(-1, *([1] * (current.ndim - 1)))
    return torch.where(mask, proposal, current)


def _all_finite(*tensors: Tensor) -> Tensor:
    """A 0-dim boolean tensor on the device: accumulating it costs no host synchronisation per step."""
    return torch.stack([torch.isfinite(t).all() for t in tensors]).all()


def _raise_unless_finite(finite: Tensor) -> None:
    if not finite:
        raise ValueError("energy_fn returned NaN or infinite values or gradients")


def _check_binary_states(x: Tensor) -> Tensor:
    check_tensor(x, "x", ndim=2, floating=True)
    return check_binary(x, "x")


# ---------------------------------------------------------------------------------------------------------
# Samplers for binary states
# ---------------------------------------------------------------------------------------------------------
def gibbs_binary(energy_fn: EnergyFn, x: Tensor, n_sweeps: int = 1, *, order: str = "systematic") -> Tensor:
    """Gibbs sampling of binary states, one coordinate at a time.

    For coordinate ``i`` with ``x^{(i)}`` = ``x`` with bit ``i`` flipped, the exact conditional gives

        p(x_i flips | x_{-i}) = e^{-E(x^{(i)})} / (e^{-E(x)} + e^{-E(x^{(i)})}) = sigmoid(E(x) - E(x^{(i)})).

    Each coordinate costs one batched evaluation of ``E`` at the flipped states; the current energies are
    carried along, so a sweep costs ``d`` evaluations (plus one at the start).

    Parameters
    ----------
    energy_fn
        Maps ``(B, d)`` to ``(B,)``.
    x
        Initial binary states (floating dtype), shape ``(B, d)``.
    n_sweeps
        Number of sweeps; one sweep updates every coordinate once.
    order
        ``"systematic"`` visits coordinates ``0, …, d-1``; ``"random"`` draws a fresh permutation per sweep,
        shared by all chains.

    Returns
    -------
    Tensor
        Final states, shape ``(B, d)``, dtype and device of ``x``.
    """
    _check_binary_states(x)
    check_int(n_sweeps, "n_sweeps", minimum=1)
    if order not in GIBBS_ORDERS:
        raise ValueError(f"order must be one of {GIBBS_ORDERS}, got {order!r}")
    batch, dim = x.shape
    with torch.no_grad():
        x = x.detach().clone()
        energy = check_energy_output(energy_fn(x), batch, "energy_fn", finite=False)
        # Finiteness is checked once at the end: a check per coordinate would synchronise with the device.
        finite = _all_finite(energy)
        for _ in range(n_sweeps):
            coords = torch.randperm(dim).tolist() if order == "random" else range(dim)
            for i in coords:
                flipped = x.clone()
                flipped[:, i] = 1 - x[:, i]
                energy_flipped = check_energy_output(energy_fn(flipped), batch, "energy_fn", finite=False)
                finite &= _all_finite(energy_flipped)
                flip = torch.rand_like(energy) < torch.sigmoid(energy - energy_flipped)
                x[:, i] = torch.where(flip, flipped[:, i], x[:, i])
                energy = torch.where(flip, energy_flipped, energy)
    _raise_unless_finite(finite)
    return x


def gibbs_random_site(energy_fn: EnergyFn, x: Tensor, n_steps: int = 1) -> Tensor:
    """Random-scan Gibbs sampling of binary states: one uniformly chosen coordinate per chain and step.

    Each step draws ``i_b ~ U{0, …, d-1}`` independently for every chain ``b`` and resamples that bit from its
    exact conditional, ``p(x_i flips | x_{-i}) = sigmoid(E(x) - E(x^{(i)}))``, which leaves ``p ∝ exp(-E)``
    invariant. This is the "Gibbs step" counted by Gibbs-with-Gradients and RMwGGIS when they compare
    samplers at equal numbers of steps; one step costs one batched energy evaluation (plus one at the start),
    against ``d`` for a sweep of :func:`gibbs_binary`.

    Parameters
    ----------
    energy_fn
        Maps ``(B, d)`` to ``(B,)``.
    x
        Initial binary states (floating dtype), shape ``(B, d)``.
    n_steps
        Number of single-site updates per chain.

    Returns
    -------
    Tensor
        Final states, shape ``(B, d)``, dtype and device of ``x``.
    """
    _check_binary_states(x)
    check_int(n_steps, "n_steps", minimum=1)
    batch, dim = x.shape
    with torch.no_grad():
        x = x.detach()
        energy = check_energy_output(energy_fn(x), batch, "energy_fn", finite=False)
        finite = _all_finite(energy)
        for _ in range(n_steps):
            proposal = flip_bits(x, torch.randint(dim, (batch,), device=x.device))
            energy_flipped = check_energy_output(energy_fn(proposal), batch, "energy_fn", finite=False)
            finite &= _all_finite(energy_flipped)
            flip = torch.rand_like(energy) < torch.sigmoid(energy - energy_flipped)
            x = _select(flip, proposal, x)
            energy = torch.where(flip, energy_flipped, energy)
    _raise_unless_finite(finite)
    return x


def gwg_binary(energy_fn: EnergyFn, x: Tensor, n_steps: int = 1) -> tuple[Tensor, Tensor]:
    """Gibbs-with-Gradients for binary states (Grathwohl et al. 2021), one bit flip per step.

    With ``log q(i | x) = log_softmax(d̃(x) / 2)_i`` from :func:`flip_log_proposal`, each step draws
    ``i ~ q(· | x)``, proposes ``x'`` = ``x`` with bit ``i`` flipped, and accepts with the Metropolis–Hastings
    probability

        min(1, exp(E(x) - E(x')) q(i | x') / q(i | x)),

    computed in log space (flipping bit ``i`` of ``x'`` is the reverse move). This leaves ``p ∝ exp(-E)``
    invariant. Energy and gradient of the current state are carried along, so ``n_steps`` cost
    ``n_steps + 1`` batched energy-and-gradient evaluations.

    Parameters
    ----------
    energy_fn
        Maps ``(B, d)`` to ``(B,)``; must be differentiable in ``x``.
    x
        Initial binary states (floating dtype), shape ``(B, d)``.
    n_steps
        Number of proposals per chain.

    Returns
    -------
    states, acceptance_rate
        Final states, shape ``(B, d)``, and the fraction of accepted proposals per chain, shape ``(B,)``;
        dtype and device of ``x``.
    """
    _check_binary_states(x)
    check_int(n_steps, "n_steps", minimum=1)
    with torch.no_grad():
        x = x.detach()
        energy, grad = energy_and_grad(energy_fn, x)
        log_q = flip_log_proposal(x, grad)
        finite = _all_finite(energy, grad)
        n_accepted = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for _ in range(n_steps):
            index = _sample_categorical(log_q)
            proposal = flip_bits(x, index)
            energy_prop, grad_prop = energy_and_grad(energy_fn, proposal)
            log_q_prop = flip_log_proposal(proposal, grad_prop)
            finite &= _all_finite(energy_prop, grad_prop)
            column = index.unsqueeze(1)
            log_q_reverse = log_q_prop.gather(1, column).squeeze(1)
            log_q_forward = log_q.gather(1, column).squeeze(1)
            accepted = _metropolis_hastings(energy - energy_prop + log_q_reverse - log_q_forward)
            x = _select(accepted, proposal, x)
            energy = _select(accepted, energy_prop, energy)
            log_q = _select(accepted, log_q_prop, log_q)
            n_accepted += accepted
    _raise_unless_finite(finite)
    return x, n_accepted / n_steps


# ---------------------------------------------------------------------------------------------------------
# Samplers for continuous states
# ---------------------------------------------------------------------------------------------------------
def langevin(
    energy_fn: EnergyFn,
    x: Tensor,
    *,
    n_steps: int,
    step_size: float,
    temperature: float = 1.0,
    noise_scale: float | None = None,
    clamp: tuple[float, float] | None = None,
) -> Tensor:
    """Unadjusted Langevin algorithm (ULA) with temperature, no Metropolis correction.

    Each step computes

        x ← x - (ε² / (2λ)) ∇_x E(x) + σ ξ,   ξ ~ N(0, I),

    with ``ε = step_size``, ``λ = temperature`` and ``σ = noise_scale`` (default ``ε``). This is eq. 3 of
    Kelly & Grathwohl with ``f = -E``. For ``σ = ε`` it is the standard ULA
    ``x ← x - h ∇(E/λ) + √(2h) ξ`` with ``h = ε²/2``, which targets ``p_λ ∝ exp(-E/λ)`` up to a
    discretisation bias of order ``ε²``; for ``λ = 1``, ``x ← x - h ∇E + √(2h) ξ``. For a Gaussian
    ``E = |x - μ|²/(2s²)`` the chain's stationary law is ``N(μ, λs² / (1 - h_λ/(2s²)) I)`` with
    ``h_λ = ε²/(2λ)``, stable for ``h_λ < 2s²``.

    A ``noise_scale`` different from ``ε`` decouples drift and noise (the common "short-run" heuristic);
    the chain then no longer targets ``p_λ``. ``noise_scale = 0`` is gradient descent on ``E``.

    Parameters
    ----------
    energy_fn
        Maps ``(B, *event_shape)`` to ``(B,)``; must be differentiable in ``x``.
    x
        Initial states, floating dtype, shape ``(B, *event_shape)``.
    n_steps
        Number of updates.
    step_size
        ``ε > 0``.
    temperature
        ``λ > 0``; the drift is divided by it.
    noise_scale
        Standard deviation ``σ ≥ 0`` of the injected noise; ``None`` means ``ε``.
    clamp
        ``(lo, hi)``: clamp every coordinate after each step (e.g. to the data range).

    Returns
    -------
    Tensor
        Final states, shape, dtype and device of ``x``.
    """
    check_tensor(x, "x", min_ndim=1, floating=True)
    check_int(n_steps, "n_steps", minimum=1)
    eps = check_positive(step_size, "step_size")
    drift = eps**2 / (2 * check_positive(temperature, "temperature"))
    sigma = eps if noise_scale is None else _check_noise_scale(noise_scale)
    bounds = None if clamp is None else _check_clamp(clamp)
    with torch.no_grad():
        x = x.detach()
        finite = torch.ones((), dtype=torch.bool, device=x.device)
        for _ in range(n_steps):
            x, ok = _langevin_step(energy_fn, x, drift, sigma, bounds)
            finite &= ok
    _raise_unless_finite(finite)
    return x


def _langevin_step(
    energy_fn: EnergyFn, x: Tensor, drift: float, sigma: float, bounds: tuple[float, float] | None = None
) -> tuple[Tensor, Tensor]:
    """One unchecked step ``x ← x - drift ∇_x E(x) + σ ξ`` (then clamped to ``bounds``) for validated settings.

    Returns the new states and a 0-dim boolean device tensor saying whether energy and gradient were finite,
    so that callers running it in a loop (:func:`langevin`, the joint sampler of :mod:`ebmlib.joint`) check
    finiteness once at the end instead of synchronising with the device every step.
    """
    energy, grad = energy_and_grad(energy_fn, x)
    return _langevin_move(x, grad, drift, sigma, bounds), _all_finite(energy, grad)


def _langevin_move(x: Tensor, grad: Tensor, drift: float, sigma: float,
                   bounds: tuple[float, float] | None = None) -> Tensor:
    """The update of :func:`_langevin_step` for a gradient ``∇_x E(x)`` already computed (``grad``, shape of ``x``)."""
    x = x - drift * grad
    if sigma > 0:
        x = x + sigma * torch.randn_like(x)
    if bounds is not None:
        x = x.clamp(*bounds)
    return x


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_noise_scale(value: object) -> float:
    if not _is_real(value) or not 0 <= value < float("inf"):
        raise ValueError(f"noise_scale must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_clamp(clamp: object, name: str = "clamp") -> tuple[float, float]:
    valid = isinstance(clamp, (tuple, list)) and len(clamp) == 2 and all(_is_real(v) for v in clamp)
    if not valid or not clamp[0] < clamp[1]:
        raise ValueError(f"{name} must be a pair (lo, hi) of numbers with lo < hi, got {clamp!r}")
    return float(clamp[0]), float(clamp[1])


class ReplayBuffer:
    """Store of persistent chain states with random re-initialisation.

    Persistent chains (Tieleman, 2008) continue from where the previous training step left them; the buffer
    of Du & Mordatch (2019) and JEM keeps more states than one batch and restarts a fraction ``reinit_prob``
    of each drawn batch from ``init_fn`` so that the chains keep exploring.

    Parameters
    ----------
    init_fn
        ``init_fn(n) -> (n, *event)``: draws fresh chain states (e.g. uniform noise); its device and dtype
        define the buffer's.
    capacity
        Number of stored states.
    reinit_prob
        Probability that a drawn state is replaced by a fresh one, in ``[0, 1)``.
    """

    def __init__(self, init_fn: Callable[[int], Tensor], capacity: int, reinit_prob: float = 0.05) -> None:
        check_int(capacity, "capacity", minimum=1)
        if not 0.0 <= reinit_prob < 1.0:
            raise ValueError(f"reinit_prob must lie in [0, 1), got {reinit_prob}")
        self.init_fn = init_fn
        self.reinit_prob = float(reinit_prob)
        self.states = check_tensor(init_fn(capacity).detach(), "init_fn(capacity)", min_ndim=1).clone()
        if self.states.shape[0] != capacity:
            raise ValueError(f"init_fn(capacity) must return {capacity} states, got {self.states.shape[0]}")

    def __len__(self) -> int:
        return self.states.shape[0]

    def sample(self, n: int) -> tuple[Tensor, Tensor]:
        """Draw ``n <= capacity`` distinct stored states, a fraction of them freshly re-initialised.

        Returns
        -------
        states, index
            Shapes ``(n, *event)`` and ``(n,)``; pass ``index`` to :meth:`update` with the moved states.
        """
        check_int(n, "n", minimum=1)
        if n > len(self):
            raise ValueError(f"n must be <= capacity={len(self)}, got {n}")
        device = self.states.device
        index = torch.randperm(len(self), device=device)[:n]
        states = self.states[index]
        if self.reinit_prob > 0:
            fresh = torch.rand(n, device=device) < self.reinit_prob
            mask = fresh.view(n, *([1] * (states.ndim - 1)))
            states = torch.where(mask, self.init_fn(n).to(states), states)
        return states, index

    def update(self, index: Tensor, states: Tensor) -> None:
        """Write moved ``states`` (shape ``(n, *event)``) back at ``index`` (shape ``(n,)``)."""
        if states.shape[1:] != self.states.shape[1:] or states.shape[0] != index.shape[0]:
            raise ValueError(
                f"states must have shape ({index.shape[0]}, {', '.join(map(str, self.states.shape[1:]))}), "
                f"got {tuple(states.shape)}"
            )
        self.states[index] = states.detach().to(self.states)
