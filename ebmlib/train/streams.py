"""Random streams for ensembles: member ``k`` of a batched run draws exactly what a separate run seeded with
``seeds[k]`` draws (:class:`~ebmlib.train.MemberStreams`).

A separate run draws its data and its loss's random numbers from the global generators. In a batched run the
members' rows are concatenated (member-grouped rows, see :class:`~ebmlib.nets.Ensemble`), so one draw covers all
of them; :class:`~ebmlib.train.MemberStreams` keeps one generator per member (and device) and splits every such
draw into the members' row blocks, each drawn from its member's generator.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ebmlib.nets.ensemble import Ensemble
from ebmlib.train.loop import LossFn
from ebmlib.utils import check_device, check_int

# The random functions whose draws are split into the members' row blocks (MemberStreams.draws), by how a block
# is refilled: a factory ``f(..)`` is ``empty(..).<fill>_(*args)`` (ATen implements them so), a ``*_like`` likewise.
_FACTORIES = {"rand": ("uniform_", (0.0, 1.0)), "randn": ("normal_", (0.0, 1.0))}
_LIKE = {"rand_like": ("uniform_", (0.0, 1.0)), "randn_like": ("normal_", (0.0, 1.0))}
_IN_PLACE = ("uniform_", "normal_", "exponential_", "bernoulli_", "random_", "geometric_", "log_normal_", "cauchy_")
_ROWWISE = ("bernoulli", "multinomial", "poisson")  # functions of torch and methods of tensors, row by row
# A draw that is not made row by row: a batched run cannot give each member its own. (Random functions not
# named here draw from the global generator, which MemberStreams.draws() notices.)
_SHARED = ("randperm",)
_ACTIVE: list[MemberStreams] = []  # the streams whose draws() block is running (at most one)


class MemberStreams:
    """One random stream per ensemble member: member ``k`` draws what a run seeded with ``seeds[k]`` draws.

    Parameters
    ----------
    seeds
        One integer seed per member; ``torch.manual_seed(seeds[k])`` is the separate run it stands for.
    device
        The device the loss draws on (a CUDA device adds a generator per member there); default the CPU.
    """

    def __init__(self, seeds: Sequence[int], device: torch.device | str | None = None) -> None:
        if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds:
            raise ValueError(f"seeds must be a non-empty sequence of ints, got {seeds!r}")
        for i, seed in enumerate(seeds):
            check_int(seed, f"seeds[{i}]", minimum=0)
        devices = [torch.device("cpu")]
        device = torch.device("cpu") if device is None else check_device(device)
        if device.type != "cpu":
            devices.append(device if device.index is not None else torch.device(device.type, 0))
        self.devices = devices
        self.generators = [{str(d): torch.Generator(device=d).manual_seed(int(s)) for d in devices} for s in seeds]

    @property
    def n_members(self) -> int:
        """``K``."""
        return len(self.generators)

    def generator(self, k: int, device: torch.device) -> torch.Generator:
        """Member ``k``'s generator for ``device``."""
        if not isinstance(device, torch.device):
            raise ValueError(f"device must be a torch.device, got {type(device).__name__}")
        key = str(device if device.type == "cpu" or device.index is not None else torch.device(device.type, 0))
        if key not in self.generators[k]:
            raise ValueError(f"the streams draw on {[str(d) for d in self.devices]}, not on {device}")
        return self.generators[k][key]

    @contextlib.contextmanager
    def use(self, k: int) -> Iterator[None]:
        """Make member ``k``'s generators the global ones (``torch.rand`` with no ``generator``) inside the block."""
        check_int(k, "k", minimum=0)
        if k >= self.n_members:
            raise ValueError(f"k must be < n_members = {self.n_members}, got {k}")
        defaults = [_default_generator(d) for d in self.devices]
        saved = [g.get_state() for g in defaults]
        for default, d in zip(defaults, self.devices):
            default.set_state(self.generators[k][str(d)].get_state())
        try:
            yield
        finally:
            for default, d, state in zip(defaults, self.devices, saved):
                self.generators[k][str(d)].set_state(default.get_state())
                default.set_state(state)

    @contextlib.contextmanager
    def draws(self) -> Iterator[None]:
        """Inside the block, every random draw over member-grouped rows comes from the members' own generators.

        ``torch``'s random functions and tensor methods (``rand``, ``randn``, ``randint``, ``rand_like``,
        ``randn_like``, ``bernoulli``, ``multinomial``, ``poisson``, ``uniform_``, ``normal_``, ``exponential_``,
        ...) are replaced for the block's duration by versions that draw block ``k`` of the rows from member ``k``'s
        generator; every other operation runs untouched, at full speed. A draw whose first dimension is not a
        multiple of ``K``, or that is shared by all rows (``torch.randperm``), raises ``ValueError``; a draw that
        escaped the split (a random function not named here, or one imported by name before the block) changes
        the global generator, which raises ``RuntimeError`` at the end of the block. The replacement is global to
        the process: do not draw random numbers in other threads meanwhile; blocks do not nest.
        """
        if _ACTIVE:
            raise RuntimeError("MemberStreams.draws() blocks do not nest")
        before = [_default_generator(d).get_state() for d in self.devices]
        patches = _member_draw_patches(self)
        saved = {(owner, name): owner.__dict__.get(name) for owner, name, _ in patches}
        _ACTIVE.append(self)
        try:
            for owner, name, replacement in patches:
                setattr(owner, name, replacement)
            yield
        finally:
            for (owner, name), original in saved.items():
                if original is None:
                    delattr(owner, name)
                else:
                    setattr(owner, name, original)
            _ACTIVE.clear()
        if any(not torch.equal(s, _default_generator(d).get_state()) for s, d in zip(before, self.devices)):
            raise RuntimeError("a random draw inside MemberStreams.draws() used the global generator: it is not "
                               "split by member, so the members' runs would not be their separate runs")

    def _blocks(self, x: Tensor, name: str) -> tuple[Tensor, ...]:
        k = self.n_members
        if x.ndim == 0 or x.shape[0] % k:
            raise ValueError(f"torch.{name} drew {tuple(x.shape)}: the first dimension of a draw inside "
                             f"MemberStreams.draws() must be a multiple of n_members = {k} (member-grouped rows)")
        return x.chunk(k)

    def _fill(self, out: Tensor, fill: str, fill_args: tuple, name: str, kwargs: Mapping[str, Any] | None = None,
              method: Callable | None = None) -> Tensor:
        """Fill ``out``'s member blocks in place with ``fill`` (a tensor method) from the members' generators."""
        blocks = self._blocks(out, name)
        method = getattr(Tensor, fill) if method is None else method
        # A tensor argument with the draw's rows (bernoulli_'s probabilities) is split alike.
        split = [a.chunk(len(blocks)) if isinstance(a, Tensor) and a.ndim and a.shape[0] == out.shape[0] else None
                 for a in fill_args]
        for k, block in enumerate(blocks):
            block_args = [a if s is None else s[k] for a, s in zip(fill_args, split)]
            method(block, *block_args, **(kwargs or {}), generator=self.generator(k, block.device))
        return out

    def build(self, make: Callable[[], nn.Module]) -> Ensemble:
        """An :class:`~ebmlib.nets.Ensemble` of ``make()`` called once per member with that member's generators
        global, as a separate run creates its network right after seeding; the streams continue from there."""
        if not callable(make):
            raise ValueError(f"make must be callable, got {type(make).__name__}")
        members = []
        for k in range(self.n_members):
            with self.use(k):
                members.append(make())
        return Ensemble(members)

    def batches(self, next_batches: Sequence[Callable[[], Tensor]]) -> MemberBatches:
        """``next_batch()`` of the ensemble: member ``k``'s ``next_batches[k]()`` drawn with its generators, the
        ``K`` batches (of equal shape) concatenated into member-grouped rows."""
        return MemberBatches(self, next_batches)

    def loss(self, loss_fn: LossFn) -> MemberLoss:
        """``loss_fn`` with its random draws split by member (:meth:`~ebmlib.train.MemberStreams.draws`)."""
        return MemberLoss(self, loss_fn)

    def state_dict(self) -> dict[str, list[list[Tensor]]]:
        """Every member's generator states (for resumable runs)."""
        return {"states": [[g[str(d)].get_state() for d in self.devices] for g in self.generators]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`~ebmlib.train.MemberStreams.state_dict`."""
        states = state.get("states") if isinstance(state, Mapping) else None
        if not isinstance(states, list) or len(states) != self.n_members or any(
                not isinstance(s, list) or len(s) != len(self.devices) for s in states):
            raise ValueError(f"state must be a MemberStreams.state_dict() of {self.n_members} members")
        for generators, member_states in zip(self.generators, states):
            for d, s in zip(self.devices, member_states):
                generators[str(d)].set_state(s)


def _default_generator(device: torch.device) -> torch.Generator:
    if device.type == "cpu":
        return torch.default_generator
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index]
    raise ValueError(f"member streams support CPU and CUDA devices, got {device}")


class MemberBatches:
    """The ensemble's ``next_batch()``: see :meth:`~ebmlib.train.MemberStreams.batches`."""

    def __init__(self, streams: MemberStreams, next_batches: Sequence[Callable[[], Tensor]]) -> None:
        if not isinstance(next_batches, Sequence) or len(next_batches) != streams.n_members:
            raise ValueError(f"next_batches must be a sequence of {streams.n_members} functions, one per member")
        for i, f in enumerate(next_batches):
            if not callable(f):
                raise ValueError(f"next_batches[{i}] must be callable, got {type(f).__name__}")
        self.streams, self.next_batches = streams, list(next_batches)

    def __call__(self) -> Tensor:
        parts = []
        for k, next_batch in enumerate(self.next_batches):
            with self.streams.use(k):
                parts.append(next_batch())
        if any(p.shape != parts[0].shape for p in parts):
            raise ValueError(f"next_batches must return batches of one shape, got {[tuple(p.shape) for p in parts]}")
        return torch.cat(parts)


class MemberLoss:
    """A loss whose random draws are split by member: see :meth:`~ebmlib.train.MemberStreams.loss`."""

    def __init__(self, streams: MemberStreams, loss_fn: LossFn) -> None:
        if not callable(loss_fn):
            raise ValueError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
        self.streams, self.loss_fn = streams, loss_fn

    def __call__(self, model: nn.Module, batch: Tensor) -> Any:
        with self.streams.draws():
            return self.loss_fn(model, batch)


def _member_draw_patches(streams: MemberStreams) -> list[tuple[Any, str, Callable]]:
    """``(owner, name, replacement)`` for every random function of ``torch`` and method of tensors that
    :meth:`~ebmlib.train.MemberStreams.draws` splits by member; each replacement calls the original when given
    a ``generator``."""
    patches = []

    def passthrough(original: Callable, draw: Callable) -> Callable:
        def replacement(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("generator") is not None or kwargs.get("out") is not None:
                return original(*args, **kwargs)
            return draw(*args, **kwargs)
        return replacement

    for name, (fill, fill_args) in _FACTORIES.items():
        original = getattr(torch, name)

        def factory(*args: Any, _original: Callable = original, _fill: str = fill, _fill_args: tuple = fill_args,
                    _name: str = name, **kwargs: Any) -> Tensor:
            shape = _original(*args, **{**kwargs, "device": "meta"})
            out = torch.empty(shape.shape, dtype=shape.dtype, device=kwargs.get("device"))
            return streams._fill(out, _fill, _fill_args, _name)

        patches.append((torch, name, passthrough(original, factory)))

    def randint(*args: Any, **kwargs: Any) -> Tensor:
        shape = _RANDINT(*args, **{**kwargs, "device": "meta"})
        bounds = [a for a in args if not isinstance(a, (tuple, list, torch.Size))]
        bounds += [kwargs[key] for key in ("low", "high") if key in kwargs]
        low, high = (0, bounds[0]) if len(bounds) == 1 else bounds[:2]
        out = torch.empty(shape.shape, dtype=shape.dtype, device=kwargs.get("device"))
        return streams._fill(out, "random_", (low, high), "randint")

    patches.append((torch, "randint", passthrough(_RANDINT, randint)))
    for name, (fill, fill_args) in _LIKE.items():
        original = getattr(torch, name)

        def like(x: Tensor, *, _fill: str = fill, _fill_args: tuple = fill_args, _name: str = name,
                 **kwargs: Any) -> Tensor:
            out = torch.empty_like(x, dtype=kwargs.get("dtype"), device=kwargs.get("device"))
            return streams._fill(out, _fill, _fill_args, _name)

        patches.append((torch, name, passthrough(original, like)))
    for name in _IN_PLACE:
        original = getattr(Tensor, name)

        def in_place(x: Tensor, *args: Any, _original: Callable = original, _name: str = name, **kwargs: Any) -> Tensor:
            return streams._fill(x, _name, args, _name, kwargs, method=_original)

        patches.append((Tensor, name, passthrough(original, in_place)))
    for owner in (torch, Tensor):
        for name in (n for n in _ROWWISE if hasattr(owner, n)):  # tensors have no poisson method
            original = getattr(owner, name)

            def rowwise(x: Tensor, *args: Any, _original: Callable = original, _name: str = name,
                        **kwargs: Any) -> Tensor:
                return torch.cat([_original(block, *args, **kwargs, generator=streams.generator(k, block.device))
                                  for k, block in enumerate(streams._blocks(x, _name))])

            patches.append((owner, name, passthrough(original, rowwise)))
    for name in _SHARED:
        original = getattr(torch, name)

        def shared(*args: Any, _name: str = name, **kwargs: Any) -> Tensor:
            raise ValueError(f"torch.{_name} draws randomness shared by all rows, which a batched ensemble cannot "
                             "give each member separately; train these networks one at a time")

        patches.append((torch, name, passthrough(original, shared)))
    return patches


_RANDINT = torch.randint
