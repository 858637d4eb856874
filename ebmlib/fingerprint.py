"""What a training run is made of: a description of its configuration, to refuse a checkpoint written by
another configuration, and the stateful objects a loss or data function hides in its closure, which a
checkpoint would miss (:func:`ebmlib.train.fit` uses both for resumable runs).
"""

from __future__ import annotations

import contextlib
import functools
import re
import types
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _name(obj: Any) -> str:
    kind = obj if isinstance(obj, type) else type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _children(obj: Any) -> Iterator[tuple[str, Any]]:
    """The values an object's behaviour depends on, with path suffixes: a function's closure and defaults (and,
    for a function of a script or notebook, the global variables it reads), a partial's arguments, a bound
    method's owner, a container's items, a plain object's public attributes."""
    if isinstance(obj, functools.partial):
        yield ".func", obj.func
        yield from ((f".args[{i}]", a) for i, a in enumerate(obj.args))
        yield from ((f".{k}", v) for k, v in sorted(obj.keywords.items()))
    elif isinstance(obj, types.MethodType):
        yield ".__self__", obj.__self__
    elif isinstance(obj, types.FunctionType):
        for name, cell in zip(obj.__code__.co_freevars, obj.__closure__ or ()):
            with contextlib.suppress(ValueError):  # a cell not yet assigned
                yield f".{name}", cell.cell_contents
        yield from ((f".defaults[{i}]", d) for i, d in enumerate(obj.__defaults__ or ()))
        yield from ((f".{k}", v) for k, v in sorted((obj.__kwdefaults__ or {}).items()))
        if obj.__module__ == "__main__":
            names = sorted(_global_names(obj.__code__) & obj.__globals__.keys())
            yield from ((f".{name}", obj.__globals__[name]) for name in names)
    elif isinstance(obj, (list, tuple)):
        yield from ((f"[{i}]", item) for i, item in enumerate(obj))
    elif isinstance(obj, dict):
        yield from ((f"[{k!r}]", v) for k, v in sorted(obj.items(), key=lambda kv: repr(kv[0])))
    elif hasattr(obj, "__dict__") and not isinstance(obj, (type, types.ModuleType)):
        # Values a stateful object saves itself (a pool, an adapted step size) are state, not configuration.
        state = set(obj.state_dict()) if callable(getattr(obj, "state_dict", None)) else set()
        yield from ((f".{k}", v) for k, v in vars(obj).items()
                    if not k.startswith("_") and not (k in state and (v is None or _leaf(v) is not None)))


def _leaf(obj: Any) -> str | None:
    """A description of an object that is described whole, or ``None`` if its children describe it."""
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
        return repr(obj)
    if isinstance(obj, np.generic):
        return repr(obj.item())
    if isinstance(obj, (Tensor, np.ndarray)):
        return f"{type(obj).__name__}{list(obj.shape)} {obj.dtype}"
    if isinstance(obj, torch.device):
        return f"device {obj.type}"  # the index may differ between sessions of one run
    if isinstance(obj, torch.dtype):
        return str(obj)
    if isinstance(obj, nn.Module):
        shapes = ", ".join(f"{k}{list(v.shape)}:{v.dtype}" for k, v in obj.state_dict().items())
        return f"{_ADDRESS.sub('', repr(obj))} with state {shapes}"
    if isinstance(obj, torch.optim.Optimizer):
        groups = [{k: v for k, v in g.items() if k != "params"} | {"params": [list(p.shape) for p in g["params"]]}
                  for g in obj.param_groups]
        return f"{_name(obj)} {_ADDRESS.sub('', repr(groups))}"
    if isinstance(obj, (type, torch.Generator)):
        return _name(obj)
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    if isinstance(obj, types.BuiltinFunctionType):
        return f"{obj.__module__}.{obj.__qualname__}"
    return None


def describe_config(objects: Mapping[str, Any], *, max_depth: int = 8, max_items: int = 64) -> dict[str, str]:
    """Describe the configuration of ``objects`` as ``{path: description}``, to tell whether two runs match.

    Settings (numbers, strings) are described by value; tensors and arrays by shape and dtype (their values
    are state, not configuration); modules by their ``repr`` and parameter shapes; optimisers by their
    hyperparameters; functions by name, closure and default arguments (and the global variables read by a
    function defined in a script or notebook, ``__main__``); other objects by their type and public attributes,
    recursively. Global variables read by functions of other modules are not seen.
    """
    out: dict[str, str] = {}

    def visit(path: str, obj: Any, depth: int, active: set[int]) -> None:
        leaf = _leaf(obj)
        if leaf is not None or depth >= max_depth or id(obj) in active:
            out[path] = leaf if leaf is not None else _name(obj) + (" (cycle)" if id(obj) in active else "")
            return
        function = isinstance(obj, types.FunctionType)
        out[path] = f"{obj.__module__}.{obj.__qualname__}" if function else _name(obj)
        if isinstance(obj, (list, tuple, dict)):
            out[path] += f" of {len(obj)}"
        for i, (suffix, child) in enumerate(_children(obj)):
            if i == max_items:
                break
            visit(path + suffix, child, depth + 1, active | {id(obj)})

    for name, obj in objects.items():
        visit(name, obj, 0, set())
    return out


def unsaved_state(roots: Mapping[str, Any], saved: Iterable[Any], *, max_depth: int = 8) -> list[str]:
    """Paths of stateful objects that ``roots`` (functions, losses) reach but whose state would not be saved.

    An object is stateful if it has ``state_dict`` (an optimiser, a replay buffer, a loss, a scheduler) or is a
    ``torch.Generator``; it is saved if it is one of ``saved`` (identity) or reached through one. Objects are
    reached as in :func:`~ebmlib.fingerprint.describe_config` (closures, defaults, a notebook function's global
    variables, attributes). Modules are skipped: a frozen network reached through a closure needs no saving.
    Roots with ``state_dict`` count as saved.
    """
    saved_ids = {id(s) for s in saved}
    found: list[str] = []

    def visit(path: str, obj: Any, depth: int, active: set[int]) -> None:
        if id(obj) in saved_ids or id(obj) in active or isinstance(obj, nn.Module) or depth >= max_depth:
            return
        if hasattr(obj, "state_dict") or isinstance(obj, torch.Generator):
            found.append(f"{path} ({_name(obj)})")
            return
        if _leaf(obj) is None:
            for suffix, child in _children(obj):
                visit(path + suffix, child, depth + 1, active | {id(obj)})

    for name, root in roots.items():
        if not hasattr(root, "state_dict"):
            visit(name, root, 0, set())
    return found
