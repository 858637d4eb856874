"""Ensembles: ``K`` networks of one architecture evaluated at once by batched matrix products.

Training the same network on ``K`` toys or from ``K`` seeds one run after the other repeats every small matrix
product ``K`` times, each paying its own kernel launch and Python dispatch. An :class:`~ebmlib.nets.Ensemble`
stacks the members' parameters along a leading axis (:func:`torch.func.stack_module_state`) and evaluates them
with :func:`torch.func.vmap`, so that one batched product serves all members. The losses and samplers of
``ebmlib`` need no change: the ensemble is an energy of *member-grouped rows* (see :class:`Ensemble`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from ebmlib.nets.mixed import MixedEnergy
from ebmlib.nets.mlp import MLP, MLPEnergy, Swish
from ebmlib.utils import check_positive, check_tensor

_FORWARDED = ("first_layer", "head")  # methods of the members an ensemble offers when they have them


class _Method(nn.Module):
    """Calls one method of ``module`` as its forward, so that :func:`torch.func.functional_call` can run it."""

    def __init__(self, module: nn.Module, method: str) -> None:
        super().__init__()
        self.module, self.method = module, method

    def forward(self, *args: Tensor) -> Any:
        return getattr(self.module, self.method)(*args)


# Direct batched evaluation of the library's MLP energies: one batched product per layer. vmap over
# functional_call evaluates any architecture, but costs about a millisecond per call in dispatch, as much as the
# arithmetic of a small network; these cover every network the chapters train as ensembles.
_ELEMENTWISE = (nn.SiLU, nn.ELU, nn.ReLU, nn.LeakyReLU, nn.Tanh)  # no parameters: applied as they are
_DIRECT_TYPES = (MLPEnergy, MixedEnergy, MLP, nn.Sequential, nn.Linear, nn.Embedding, Swish, *_ELEMENTWISE)


def _direct_layers(ensemble: Ensemble, module: nn.Module, prefix: str, h: Tensor) -> Tensor:
    """``module`` (a Linear, an activation or a Sequential of them) of every member on ``h`` ``(K, n, ...)``."""
    if isinstance(module, nn.Sequential):
        for i, child in enumerate(module):
            h = _direct_layers(ensemble, child, f"{prefix}{i}.", h)
        return h
    if isinstance(module, nn.Linear):
        weight = ensemble.stacked(prefix + "weight")
        if module.bias is None:
            return torch.bmm(h, weight.transpose(1, 2))
        return torch.baddbmm(ensemble.stacked(prefix + "bias").unsqueeze(1), h, weight.transpose(1, 2))
    if isinstance(module, Swish):
        if module.beta is None:
            return nn.functional.silu(h)
        beta = ensemble.stacked(prefix + "beta").view(-1, *[1] * (h.ndim - 1))
        return h * torch.sigmoid(beta * h)
    return module(h)  # an elementwise activation


def _direct_mlp(ensemble: Ensemble, mlp: MLP, prefix: str, h: Tensor, name: str = "x") -> Tensor:
    if h.shape[-1] != mlp.in_dim:
        raise ValueError(f"{name} must have {mlp.in_dim} features in its last dimension, got {h.shape[-1]}")
    return _direct_layers(ensemble, mlp.net, prefix + "net.", h)


def _mlp_energy_forward(ensemble: Ensemble, template: MLPEnergy, x: Tensor) -> Tensor:
    flat = x.reshape(*x.shape[:2], -1)
    return _direct_mlp(ensemble, template.mlp, "mlp.", flat.to(ensemble.stacked("mlp.net.0.weight").dtype)).squeeze(-1)


def _mlp_energy_first_layer(ensemble: Ensemble, template: MLPEnergy, x: Tensor) -> tuple[Tensor, Tensor]:
    flat = x.reshape(*x.shape[:2], -1)
    weight = ensemble.stacked("mlp.net.0.weight")
    if flat.shape[-1] != template.mlp.in_dim:
        raise ValueError(f"x must have {template.mlp.in_dim} features per sample, got {flat.shape[-1]}")
    pre = _direct_layers(ensemble, template.mlp.net[0], "mlp.net.0.", flat.to(weight.dtype))
    return pre, weight.transpose(1, 2).unsqueeze(1)  # (K, 1, d, H): one group of rows per member


def _mlp_energy_head(ensemble: Ensemble, template: MLPEnergy, h: Tensor) -> Tensor:
    for i, layer in enumerate(template.mlp.net[1:], start=1):
        h = _direct_layers(ensemble, layer, f"mlp.net.{i}.", h)
    return h.squeeze(-1)


def _mixed_energy_forward(ensemble: Ensemble, template: MixedEnergy, x: Tensor) -> Tensor:
    if x.ndim != 3 or x.shape[2] != template.n_numeric + len(template.n_classes):
        raise ValueError(f"x must have shape (K·n, {template.n_numeric + len(template.n_classes)}), got rows of "
                         f"shape {tuple(x.shape[2:])}")
    table = ensemble.stacked("embedding.weight")  # (K, V, E): member k's rows are k·V ... (k+1)·V - 1 of one table
    members, size = table.shape[:2]
    shift = torch.arange(members, device=x.device).view(-1, 1, 1) * size
    codes = x[..., template.n_numeric:].long() + ensemble.stacked("offsets").unsqueeze(1) + shift
    embedded = nn.functional.embedding(codes, table.reshape(members * size, -1)).flatten(2)
    features = torch.cat([x[..., : template.n_numeric].to(table.dtype), embedded], dim=2)
    return _direct_mlp(ensemble, template.mlp, "mlp.", features).squeeze(-1)


_DIRECT_METHODS = {
    (MLPEnergy, "forward"): _mlp_energy_forward,
    (MLPEnergy, "first_layer"): _mlp_energy_first_layer,
    (MLPEnergy, "head"): _mlp_energy_head,
    (MixedEnergy, "forward"): _mixed_energy_forward,
}


def _direct(template: nn.Module) -> bool:
    """Whether every module of ``template`` (exactly of these classes, no subclass) has a direct batched form."""
    return all(type(m) in _DIRECT_TYPES for m in template.modules()) and type(template) in (MLPEnergy, MixedEnergy)


class Ensemble(nn.Module):
    r"""``K`` networks of one architecture as one module, every parameter stacked along a leading axis of size ``K``.

    Rows are *member-grouped*: an input of ``N = K·n`` rows is split into ``K`` consecutive blocks of ``n``, and
    block ``k`` goes through member ``k`` (``x.view(K, n, ...)``). The output keeps that order, ``(K·n, ...)``. A loss
    or sampler that builds its energy calls from rows of the batch (the neighbours of every row, the negatives of
    every row, a chain per row) therefore keeps each member's rows together and works unchanged: given the ``K``
    members' batches concatenated, ratio matching, RMwGGIS, energy discrepancy, contrastive divergence and Gibbs
    sampling compute every member's own loss or chains at once. A function that evaluates a subset of the rows
    (chunking, per-graph node sets) would mix members; train those one network at a time.

    A loss that averages over the batch returns the mean of the members' losses, so :func:`~ebmlib.train.fit`
    multiplies it by ``n_members`` before the backward pass: member ``k``'s gradient is then its own loss's gradient.
    Gradient clipping is per member (:meth:`clip_grad_norm_`), Adam is elementwise and so per member already, and
    :class:`~ebmlib.train.MemberStreams` gives each member the random numbers a separate run would draw.

    Parameters
    ----------
    members
        ``K ≥ 1`` modules of one class with parameters and buffers of equal names and shapes (e.g. ``K`` fresh
        :class:`~ebmlib.nets.MLPEnergy`), on one device. Their values are copied; the modules are not kept.

    Attributes
    ----------
    n_members
        ``K``.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if isinstance(members, nn.Module) or not isinstance(members, Sequence) or not members:
            raise ValueError(f"members must be a non-empty sequence of modules, got {type(members).__name__}")
        for i, member in enumerate(members):
            if not isinstance(member, nn.Module):
                raise ValueError(f"members[{i}] must be a torch.nn.Module, got {type(member).__name__}")
            if type(member) is not type(members[0]):
                raise ValueError(f"members must share one class: members[{i}] is a {type(member).__name__}, "
                                 f"members[0] a {type(members[0]).__name__}")
            shapes = {n: t.shape for n, t in [*member.named_parameters(), *member.named_buffers()]}
            first = {n: t.shape for n, t in [*members[0].named_parameters(), *members[0].named_buffers()]}
            if shapes != first:
                raise ValueError(f"members must have parameters and buffers of equal names and shapes: members[{i}] "
                                 "differs from members[0]")
        params, buffers = stack_module_state(list(members))
        self.n_members = len(members)
        # The architecture without values (meta tensors): functional_call substitutes the stacked tensors.
        self._template = [copy.deepcopy(members[0]).to("meta")]  # a list: not a submodule, not in state_dict
        self._direct = _direct(self._template[0])  # batched products without vmap (see _DIRECT_METHODS)
        self._param_keys = {name: name.replace(".", "__") for name in params}
        self._buffer_keys = {name: name.replace(".", "__") for name in buffers}
        for name, key in self._param_keys.items():
            self.register_parameter(key, nn.Parameter(params[name].detach().clone()))
        for name, key in self._buffer_keys.items():
            self.register_buffer(key, buffers[name].detach().clone())

    def __getattr__(self, name: str) -> Any:
        # first_layer / head exist on the ensemble exactly when they exist on its members (see LinearFirstLayer).
        if name in _FORWARDED and hasattr(self.__dict__.get("_template", [None])[0], name):
            return lambda *args: self._call(name, *args)
        return super().__getattr__(name)

    def stacked(self, name: str) -> Tensor:
        """The members' parameter or buffer ``name`` (as named in a member, e.g. ``"mlp.net.0.weight"``), stacked:
        shape ``(K, *shape in a member)``."""
        key = self._param_keys.get(name, self._buffer_keys.get(name))
        if key is None:
            raise ValueError(f"name must name a parameter or buffer of the members, got {name!r}")
        return getattr(self, key)

    def _stacked(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        params = {f"module.{name}": getattr(self, key) for name, key in self._param_keys.items()}
        buffers = {f"module.{name}": getattr(self, key) for name, key in self._buffer_keys.items()}
        return params, buffers

    def _group(self, x: Tensor, name: str) -> Tensor:
        check_tensor(x, name, min_ndim=1, finite=False)
        if x.shape[0] % self.n_members:
            raise ValueError(f"{name} must have a multiple of n_members = {self.n_members} rows (member-grouped), "
                             f"got {x.shape[0]}")
        return x.reshape(self.n_members, x.shape[0] // self.n_members, *x.shape[1:])

    def _call(self, method: str, *args: Tensor) -> Any:
        """``method`` of every member on its block of rows of each argument; outputs ungrouped to ``(K·m, ...)``."""
        grouped = [self._group(a, "x") for a in args]
        template = self._template[0]
        direct = _DIRECT_METHODS.get((type(template), method)) if self._direct else None
        if direct is not None:
            out = direct(self, template, *grouped)
        else:
            wrapper = _Method(template, method)

            def one(params: dict[str, Tensor], buffers: dict[str, Tensor], *xs: Tensor) -> Any:
                return functional_call(wrapper, (params, buffers), xs)

            out = vmap(one)(*self._stacked(), *grouped)
        merge = lambda t: t.reshape(t.shape[0] * t.shape[1], *t.shape[2:])  # noqa: E731
        return tuple(merge(t) for t in out) if isinstance(out, tuple) else merge(out)

    def forward(self, x: Tensor) -> Tensor:
        """Member ``k`` on rows ``k·n … (k+1)·n - 1`` of ``x`` (``(K·n, ...)``); returns ``(K·n, ...)``."""
        return self._call("forward", x)

    def member(self, k: int) -> nn.Module:
        """A standalone copy of member ``k`` (its own parameters, on the ensemble's device), e.g. for evaluation."""
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < self.n_members:
            raise ValueError(f"k must be an int in [0, {self.n_members}), got {k!r}")
        params, buffers = self._stacked()
        device = next(iter(params.values()), next(iter(buffers.values()), torch.empty(0))).device
        module = copy.deepcopy(self._template[0]).to_empty(device=device)
        state = {name.removeprefix("module."): t[k].detach().clone() for name, t in {**params, **buffers}.items()}
        module.load_state_dict(state, strict=True)
        return module.train(self.training)

    def members(self) -> list[nn.Module]:
        """Standalone copies of all members (:meth:`member`)."""
        return [self.member(k) for k in range(self.n_members)]

    def clip_grad_norm_(self, max_norm: float) -> Tensor:
        """Clip each member's gradient norm (over all its parameters) to ``max_norm``, as
        :func:`torch.nn.utils.clip_grad_norm_` would in a separate run; returns the ``(K,)`` norms before clipping."""
        max_norm = check_positive(max_norm, "max_norm")
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if not grads:
            return torch.zeros(self.n_members)
        norms = torch.stack([torch.linalg.vector_norm(g.reshape(self.n_members, -1), dim=1) for g in grads], dim=1)
        total = torch.linalg.vector_norm(norms, dim=1)
        coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *[1] * (g.ndim - 1)))
        return total
