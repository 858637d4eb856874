"""Checkpoints that survive a kill: atomic, verified files, the random-number generator states, and the run
directory through which :func:`ebmlib.train.fit` resumes a training run bit for bit.

A checkpoint file is one header line, ``EBMLIB-CHECKPOINT {json}``, followed by the bytes that
:func:`torch.save` wrote. The header records the payload's length and SHA-256 and a small dictionary of
plain values (``meta``) that can be read without loading the payload. A file is written to a temporary file
in the same directory, flushed to disk and renamed over the old one, so a process killed in the middle of a
save leaves the previous checkpoint intact; it is loaded with ``weights_only=True`` after its length and hash
are checked, so a truncated or corrupted file raises ``ValueError`` instead of being loaded.

A *run directory* holds one training run: its latest checkpoint (:data:`CHECKPOINT_NAME`) with every state
the run needs to continue (model, optimiser, EMA, the loss's replay buffer or chains, data order, random
generators, iteration, history) and a description of its configuration (:func:`describe_config`); a run
started again with another configuration is refused.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import random
import re
import tempfile
import types
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

CHECKPOINT_NAME = "checkpoint.pt"
"""File name of a run directory's latest checkpoint."""
_MAGIC = b"EBMLIB-CHECKPOINT "
_FORMAT = 1
_MAX_HEADER = 1 << 16
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


# ---------------------------------------------------------------------------------------------------------
# Verified, atomic files
# ---------------------------------------------------------------------------------------------------------
def save_checkpoint(path: str | Path, state: Mapping[str, Any], *, meta: Mapping[str, Any] | None = None) -> int:
    """Write ``state`` (tensors, numbers, strings, lists, tuples, dicts) to ``path`` atomically.

    The file is written in full to a temporary file in the same directory, flushed with ``fsync`` and renamed
    over ``path`` (``os.replace``), so ``path`` always holds either the previous checkpoint or this one.

    Parameters
    ----------
    path
        Destination file; its directory is created if needed.
    state
        What :func:`~ebmlib.checkpoint.load_checkpoint` returns.
    meta
        JSON-serialisable values stored in the header too, readable by :func:`~ebmlib.checkpoint.checkpoint_meta`
        without loading the payload.

    Returns
    -------
    int
        The size of the file in bytes.
    """
    path = Path(path)
    try:
        meta = json.loads(json.dumps(dict(meta or {})))
    except TypeError as error:
        raise ValueError(f"meta must hold JSON-serialisable values: {error}") from None
    buffer = io.BytesIO()
    torch.save({"meta": meta, "state": dict(state)}, buffer)
    payload = buffer.getbuffer()
    header = {"format": _FORMAT, "size": len(payload), "sha256": hashlib.sha256(payload).hexdigest(), "meta": meta}
    head = _MAGIC + json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(head)
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent)
    return len(head) + len(payload)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable on POSIX; directories cannot be opened this way on Windows.
    if hasattr(os, "O_DIRECTORY"):
        handle = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def _parse_header(line: bytes, path: Path) -> dict[str, Any]:
    if not line.startswith(_MAGIC) or not line.endswith(b"\n"):
        raise ValueError(f"{path} is not an ebmlib checkpoint or its header is damaged")
    try:
        header = json.loads(line[len(_MAGIC):])
    except ValueError:
        raise ValueError(f"{path} is corrupted: its header is not valid JSON") from None
    if not isinstance(header, dict) or header.get("format") != _FORMAT or not isinstance(header.get("size"), int) \
            or not isinstance(header.get("sha256"), str) or not isinstance(header.get("meta"), dict):
        raise ValueError(f"{path} is corrupted or of an unknown format: header {header!r}")
    return header


def checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """The ``meta`` values of a checkpoint file, read from its header alone (the payload is not verified)."""
    path = Path(path)
    with path.open("rb") as file:
        return _parse_header(file.readline(_MAX_HEADER), path)["meta"]


def load_checkpoint(path: str | Path, *, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a file written by :func:`~ebmlib.checkpoint.save_checkpoint`, after checking it is whole.

    Raises ``ValueError`` if the file is truncated or padded (its length differs from the header's), corrupted
    (the payload's SHA-256 or the header's values do not match), or not a checkpoint. Loads with
    ``torch.load(..., weights_only=True)``, so a checkpoint cannot execute code.
    """
    path = Path(path)
    data = path.read_bytes()
    end = data.find(b"\n", 0, _MAX_HEADER) + 1
    header = _parse_header(data[:end] if end else data[:_MAX_HEADER], path)
    payload = memoryview(data)[end:]
    if len(payload) != header["size"]:
        raise ValueError(f"{path} is truncated or padded: its header announces {header['size']} bytes of payload, "
                         f"the file holds {len(payload)}")
    if hashlib.sha256(payload).hexdigest() != header["sha256"]:
        raise ValueError(f"{path} is corrupted: the SHA-256 of its payload differs from the one in its header")
    content = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    if content.get("meta") != header["meta"]:
        raise ValueError(f"{path} is corrupted: the header's meta values differ from the payload's")
    return content["state"]


# ---------------------------------------------------------------------------------------------------------
# Random-number generators
# ---------------------------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """The states of the global generators: torch (CPU, every CUDA device, MPS), NumPy's legacy
    ``np.random`` and Python's ``random``, as tensors and numbers (loadable with ``weights_only=True``)."""
    _, keys, position, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the generators from :func:`~ebmlib.checkpoint.rng_state`; the CUDA and MPS states only where
    those devices exist (as many CUDA devices as both machines have)."""
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["position"], numpy["has_gauss"],
                         numpy["gauss"]))
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"].tolist()), python["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        for device, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, device)
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])


# ---------------------------------------------------------------------------------------------------------
# What a run is made of
# ---------------------------------------------------------------------------------------------------------
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
        yield from ((f".{k}", v) for k, v in vars(obj).items() if not k.startswith("_"))


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
    reached as in :func:`~ebmlib.checkpoint.describe_config` (closures, defaults, a notebook function's global
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


# ---------------------------------------------------------------------------------------------------------
# Run directories
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunProgress:
    """How far the run in a run directory got: its last checkpoint's ``iteration`` out of ``n_iters``."""

    iteration: int
    n_iters: int

    @property
    def finished(self) -> bool:
        """Whether the last checkpoint is the run's final one."""
        return self.iteration >= self.n_iters


def run_progress(run_dir: str | Path) -> RunProgress | None:
    """The progress of the run in ``run_dir``, or ``None`` if it holds no checkpoint yet (read from the
    checkpoint's header only, so it is cheap; :func:`ebmlib.train.fit` verifies the whole file)."""
    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.exists():
        return None
    meta = checkpoint_meta(path)
    return RunProgress(int(meta["iteration"]), int(meta["n_iters"]))


def save_run(run_dir: str | Path, parts: Mapping[str, Any], *, iteration: int, n_iters: int,
             config: Mapping[str, str], extra: Mapping[str, Any]) -> int:
    """Checkpoint a run: the ``state_dict()`` of every object in ``parts``, the random generators, the
    configuration description ``config``, and ``extra`` values; returns the file size in bytes."""
    state = {"parts": {name: obj.state_dict() for name, obj in parts.items()}, "rng": rng_state(),
             "config": dict(config), "extra": dict(extra), "iteration": iteration}
    return save_checkpoint(Path(run_dir) / CHECKPOINT_NAME, state, meta={"iteration": iteration, "n_iters": n_iters})


def restore_run(run_dir: str | Path, parts: Mapping[str, Any], *, n_iters: int,
                config: Mapping[str, str]) -> tuple[int, dict[str, Any]] | None:
    """Load the latest checkpoint of ``run_dir`` into ``parts`` and the random generators.

    Temporary files left by a save that was killed are removed first. Nothing is loaded unless the file is
    whole, its configuration equals ``config``, it holds a state for exactly the names in ``parts``, and its
    iteration is at most ``n_iters``; otherwise ``ValueError`` says why.

    Returns
    -------
    (iteration, extra) or None
        The checkpoint's iteration and ``extra`` values, or ``None`` if ``run_dir`` holds no checkpoint.
    """
    run_dir = Path(run_dir)
    for stale in run_dir.glob(f".{CHECKPOINT_NAME}.*.tmp"):
        stale.unlink(missing_ok=True)
    path = run_dir / CHECKPOINT_NAME
    if not path.exists():
        return None
    state = load_checkpoint(path)
    differences = [key for key in sorted(set(config) | set(state["config"]))
                   if config.get(key) != state["config"].get(key)]
    if differences:
        shown = "; ".join(f"{key}: saved {_short(state['config'].get(key))}, now {_short(config.get(key))}"
                          for key in differences[:5])
        raise ValueError(f"{path} was written by a run with another configuration ({len(differences)} "
                         f"differences: {shown}); use another run_dir, or delete this one to start afresh")
    if set(state["parts"]) != set(parts):
        raise ValueError(f"{path} holds states for {sorted(state['parts'])}, this run has {sorted(parts)}")
    if state["iteration"] > n_iters:
        raise ValueError(f"{path} is at iteration {state['iteration']}, beyond n_iters={n_iters}")
    for name, obj in parts.items():
        obj.load_state_dict(state["parts"][name])
    set_rng_state(state["rng"])
    return state["iteration"], state["extra"]


def _short(text: str | None, width: int = 80) -> str:
    return "(absent)" if text is None else repr(text if len(text) <= width else text[: width - 3] + "...")
