"""Corrupted calls: the engine behind the bad-input checks of tests/test_battery.py and tests/test_bad_input.py.

A :class:`Spec` describes one public callable by a small valid call (``make(dtype)`` builds the arguments,
``fn(**args)`` calls it) and, per argument, the corruptions that apply to it. :func:`corrupted_calls` derives
one call per (argument, corruption); :func:`outcome` runs it and says how it was answered. The library's
contract is that every such call raises a :class:`ValueError` whose message names the argument.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


def _set_first(v: Tensor, value: float) -> Tensor:
    out = v.detach().clone()
    out.view(-1)[0] = value
    return out


def _set_last(v: Tensor, value: float) -> Tensor:
    out = v.detach().clone()
    out.view(-1)[-1] = value
    return out


def _number(v: Any, value: float) -> Any:
    return int(value) if isinstance(v, int) and value == int(value) else float(value)


# Each corruption maps a valid value to an invalid one of the same role.
TENSOR_KINDS: dict[str, Callable[[Tensor], Any]] = {
    "nan": lambda v: _set_first(v, math.nan),
    "inf": lambda v: _set_first(v, math.inf),
    "ndim": lambda v: v.unsqueeze(-1),  # one dimension too many
    "flat": lambda v: v.reshape(-1) if v.ndim > 1 else v[0],  # one dimension too few
    "cols": lambda v: v[..., :-1],  # wrong trailing size
    "rows": lambda v: v[:-1],  # wrong number of rows for the other arguments
    "int": lambda v: v.detach().round().long(),  # integer where a floating dtype is needed
    "float": lambda v: v.detach().double() + 0.5,  # non-integer where integers are needed
    "binary": lambda v: _set_first(v, 0.5),  # not 0/1
    "neg": lambda v: _set_first(v, -1.0),  # a negative entry where entries must be >= 0
    "big": lambda v: _set_first(v, 1e6),  # an entry far outside the valid range
    "codebig": lambda v: _set_last(v, 1e6),  # the last column (a code or a one-hot entry) out of range
    "codefrac": lambda v: _set_last(v, 0.5),  # the last column not an integer code / not 0-1
    "scalar": lambda v: v.reshape(-1)[0],  # a 0-dim tensor where a batch is needed
    "list": lambda v: v.tolist(),  # not a tensor
}
NUMBER_KINDS: dict[str, Callable[[Any], Any]] = {
    "zero": lambda v: _number(v, 0),
    "negative": lambda v: _number(v, -1),
    "nan": lambda v: math.nan,
    "inf": lambda v: math.inf,
    "frac": lambda v: 2.5,  # not an integer
    "above1": lambda v: 1.5,  # a probability above 1
    "huge": lambda v: 10**6,  # more than the other arguments allow
    "bool": lambda v: True,
    "str": lambda v: "1",
}
OTHER_KINDS: dict[str, Callable[[Any], Any]] = {
    "seq1": lambda v: (1, *tuple(v)[1:]),  # a class or block count below 2
    "seqneg": lambda v: (-1, *tuple(v)[1:]),
    "empty": lambda v: (),
    "reversed": lambda v: tuple(reversed(tuple(v))),  # a (lo, hi) pair with lo > hi
    "seqstr": lambda v: "23",  # a string is not a sequence of counts
    "choice": lambda v: "nonsense",  # not one of the allowed names
    "none": lambda v: None,
    "intdtype": lambda v: torch.int64,  # a dtype that is not floating
    "bytes": lambda v: b"\x00\x01",  # bytes of the wrong format
    "str": lambda v: "1",  # a string where something else is needed
    "efn_nan": lambda f: (lambda x, *a, **k: f(x, *a, **k) * math.nan),  # energy_fn returns NaN
    "efn_shape": lambda f: (lambda x, *a, **k: f(x, *a, **k).unsqueeze(-1)),  # energy_fn returns (B, 1)
    "notcallable": lambda v: 3,
    "object": lambda v: object(),  # an object without the methods the argument needs
}


@dataclass(frozen=True)
class Spec:
    """One public callable: a valid call and the corruptions of each argument.

    Attributes
    ----------
    fn
        Called as ``fn(**args)`` (a lambda for methods: ``lambda flow, x: flow.log_prob(x)``).
    make
        ``make(dtype) -> args``: small valid arguments, floating tensors in ``dtype`` on the default device.
    bad
        Argument -> space-separated corruption kinds (keys of the tables above) that make the call invalid.
    names
        Argument -> the word the error message must contain when it is not the argument's own name.
    """

    fn: Callable[..., Any]
    make: Callable[[torch.dtype], dict[str, Any]]
    bad: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)


def _corrupt(value: Any, kind: str) -> Any:
    if isinstance(value, Tensor) and kind in TENSOR_KINDS:
        return TENSOR_KINDS[kind](value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and kind in NUMBER_KINDS:
        return NUMBER_KINDS[kind](value)
    if kind in OTHER_KINDS:
        return OTHER_KINDS[kind](value)
    raise KeyError(f"corruption {kind!r} does not apply to {type(value).__name__}")


def corrupted_calls(name: str, spec: Spec) -> Iterator[tuple[str, str, str]]:
    """``(callable name, argument, corruption kind)`` for every corruption the spec lists."""
    for arg, kinds in spec.bad.items():
        for kind in kinds.split():
            yield name, arg, kind


def names_argument(message: str, word: str) -> bool:
    """Whether ``message`` contains ``word`` as a whole word (``x`` in ``"x must ..."``, not in ``"max"``)."""
    return re.search(rf"(?<![\w.]){re.escape(word)}(?!\w)", message) is not None


def _has_nan(out: Any) -> bool:
    if isinstance(out, Tensor):
        return out.is_floating_point() and bool(torch.isnan(out.detach()).any())
    if isinstance(out, (tuple, list)):
        return any(_has_nan(o) for o in out)
    if isinstance(out, dict):
        return any(_has_nan(o) for o in out.values())
    if hasattr(out, "__dataclass_fields__"):
        return any(_has_nan(getattr(out, f)) for f in out.__dataclass_fields__)
    return isinstance(out, float) and math.isnan(out)


def outcome(spec: Spec, arg: str, kind: str, seed: int = 0) -> str:
    """Run one corrupted call; ``"ok"`` when a ``ValueError`` names the argument, else what happened instead."""
    torch.manual_seed(seed)
    args = spec.make(torch.float32)
    args[arg] = _corrupt(args[arg], kind)
    word = spec.names.get(arg, arg)
    try:
        out = spec.fn(**args)
    except ValueError as error:
        return "ok" if names_argument(str(error), word) else f"ValueError not naming {word!r}: {error}"
    except Exception as error:  # noqa: BLE001 - the survey reports whatever else was raised
        return f"{type(error).__name__}: {error}"
    return "returned NaN" if _has_nan(out) else "returned without error"
