"""The replay buffer of persistent chain states (Tieleman 2008; Du & Mordatch 2019)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from ebmlib.utils import check_int, check_real, check_tensor


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
        if not callable(init_fn):
            raise ValueError(f"init_fn must be callable, init_fn(n) -> (n, *event), got {type(init_fn).__name__}")
        check_int(capacity, "capacity", minimum=1)
        if not 0.0 <= check_real(reinit_prob, "reinit_prob") < 1.0:
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
        """Write moved ``states`` (shape ``(n, *event)``, finite) back at ``index`` (integers, shape ``(n,)``)."""
        check_tensor(index, "index", ndim=1)
        if index.is_floating_point() or index.dtype == torch.bool:
            raise ValueError(f"index must hold integer positions, got dtype {index.dtype}")
        check_tensor(states, "states", min_ndim=1)
        if states.shape[0] != index.shape[0]:
            raise ValueError(f"index and states must have one entry per state, got {index.shape[0]} and "
                             f"{states.shape[0]}")
        if states.shape[1:] != self.states.shape[1:]:
            raise ValueError(
                f"states must have shape ({index.shape[0]}, {', '.join(map(str, self.states.shape[1:]))}), "
                f"got {tuple(states.shape)}"
            )
        self.states[index] = states.detach().to(self.states)

    def state_dict(self) -> dict[str, Tensor]:
        """The stored states, ``{"states": (capacity, *event)}`` (the live tensor, as in ``nn.Module``)."""
        return {"states": self.states}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Copy the states of a :meth:`state_dict` into the buffer (same capacity, event shape and dtype)."""
        states = state["states"]
        if states.shape != self.states.shape or states.dtype != self.states.dtype:
            raise ValueError(f"state['states'] must be a {self.states.dtype} tensor of shape "
                             f"{tuple(self.states.shape)}, got {states.dtype} {tuple(states.shape)}")
        self.states.copy_(states)
