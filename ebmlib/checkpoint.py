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
generators, iteration, history) and a description of its configuration
(:func:`ebmlib.fingerprint.describe_config`); a run started again with another configuration is refused.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
import random
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_NAME = "checkpoint.pt"
"""File name of a run directory's latest checkpoint."""
_MAGIC = b"EBMLIB-CHECKPOINT "
_FORMAT = 1
_MAX_HEADER = 1 << 16


# Verified, atomic files
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


# Random-number generators
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


# Run directories
@dataclass(frozen=True)
class RunProgress:
    """How far the run in a run directory got: its last checkpoint's ``iteration`` out of ``n_iters``."""

    iteration: int
    n_iters: int

    @property
    def finished(self) -> bool:
        """Whether the last checkpoint is the run's final one."""
        return self.iteration >= self.n_iters


class Recorder(dict):
    """A dict of results recorded while training (by a ``callback``) that a resumable run saves and restores.

    Pass it to :func:`ebmlib.train.fit` in ``stateful``: a resumed run then keeps what was recorded before the
    interruption, and a finished run, which ``fit`` does not train again, gets its records back. Keys and values
    must be what :func:`~ebmlib.checkpoint.save_checkpoint` stores (numbers, strings, tensors, and tuples, lists
    and dicts of them).

    Examples
    --------
    >>> curve = Recorder()
    >>> curve[10] = 0.5
    >>> restored = Recorder()
    >>> restored.load_state_dict(curve.state_dict())
    >>> restored
    {10: 0.5}
    """

    def state_dict(self) -> dict[str, Any]:
        """The records, as ``{"items": [(key, value), ...]}`` (keys may be tuples)."""
        return {"items": list(self.items())}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the records by those of a :meth:`state_dict`."""
        if not isinstance(state, Mapping) or not isinstance(state.get("items"), list):
            raise ValueError(f"state must be a Recorder.state_dict(), got {type(state).__name__}")
        self.clear()
        self.update((key, value) for key, value in state["items"])


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
    whole, its configuration equals ``config``, it holds a state for exactly the names in ``parts``, its
    iteration is at most ``n_iters`` and every part accepts its state; otherwise ``ValueError`` says why and
    the parts keep the states they had.

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
                         f"differences: {shown}); build the objects given to fit as that run did, use another "
                         "run_dir, or delete this one to start afresh")
    if set(state["parts"]) != set(parts):
        raise ValueError(f"{path} holds states for {sorted(state['parts'])}, this run has {sorted(parts)}")
    if state["iteration"] > n_iters:
        raise ValueError(f"{path} is at iteration {state['iteration']}, beyond n_iters={n_iters}")
    _load_all_or_none(parts, state["parts"], path)
    set_rng_state(state["rng"])
    return state["iteration"], state["extra"]


def _load_all_or_none(parts: Mapping[str, Any], states: Mapping[str, Any], path: Path) -> None:
    """Load every part's state, or, if one refuses its state, put back the states loaded so far and raise."""
    loaded: list[tuple[Any, Any]] = []
    try:
        for name, obj in parts.items():
            previous = copy.deepcopy(obj.state_dict())
            obj.load_state_dict(states[name])
            loaded.append((obj, previous))
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        for obj, previous in reversed(loaded):
            obj.load_state_dict(previous)
        raise ValueError(f"{path}: the state of {name!r} does not fit this run ({error}); nothing was "
                         "loaded") from error


def _short(text: str | None, width: int = 80) -> str:
    return "(absent)" if text is None else repr(text if len(text) <= width else text[: width - 3] + "...")
