"""A generic training loop for energy-based models, with EMA, progress bar, warm-up and resumable runs.

The loop knows nothing about a particular objective: it takes ``loss_fn(model, batch)`` (for instance a
:class:`~ebmlib.losses.PersistentContrastiveDivergence`, which owns its sampler and replay buffer) and a
``next_batch()`` function that supplies data. Given a ``run_dir``, :func:`~ebmlib.train.fit` checkpoints
everything the run needs to continue (:mod:`ebmlib.checkpoint`) and, started again, continues from there.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from ebmlib.checkpoint import restore_run, save_run
from ebmlib.fingerprint import describe_config, unsaved_state
from ebmlib.ledger import OperationCounter, ledger_path, record_run, recorded_loop, run_record
from ebmlib.utils import check_int, check_positive, check_probability, check_tensor

LossFn = Callable[[nn.Module, Tensor], "Tensor | tuple[Tensor, dict[str, Tensor]]"]


def progress_disabled(progress: bool) -> bool:
    """Whether to hide a progress bar: when ``progress`` is false or the environment sets ``TQDM_DISABLE``.

    tqdm reads ``TQDM_DISABLE`` only for bars that do not pass ``disable`` themselves; the library's bars pass
    it, so they ask here. The book's builds set ``TQDM_DISABLE=1`` to keep progress bars out of the pages.
    """
    if not isinstance(progress, bool):
        raise ValueError(f"progress must be a bool, got {progress!r}")
    return not progress or os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false")


def progress_bar(iterable: Iterable[Any], *, desc: str, progress: bool = True) -> Iterable[Any]:
    """``iterable`` with a tqdm progress bar (a widget in Jupyter), hidden as :func:`progress_disabled` says.

    In Jupyter, tqdm's widget bar ignores ``TQDM_DISABLE``; chapters loop through this instead of ``tqdm``.
    """
    if not isinstance(desc, str):
        raise ValueError(f"desc must be a string, got {desc!r}")
    if not isinstance(iterable, Iterable):
        raise ValueError(f"iterable must be iterable, got {type(iterable).__name__}")
    return tqdm(iterable, desc=desc, disable=progress_disabled(progress))


@dataclass
class TrainResult:
    """What :func:`~ebmlib.train.fit` returns.

    Attributes
    ----------
    history
        ``history["iteration"]`` and, at the same positions, ``history["loss"]`` and every diagnostic the loss
        returned, recorded every ``log_every`` iterations and at the last one.
    seconds
        Wall-clock training time, summed over the sessions of a resumed run, without checkpoint writes.
    ema
        The exponential moving average of the parameters (``ema.module`` is a model), or ``None``.
    resumed_from
        The iteration this call continued from (0 for a fresh run; ``n_iters`` if the run had finished).
    checkpoint_seconds
        Time this call spent writing checkpoints.
    """

    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    ema: AveragedModel | None = None
    resumed_from: int = 0
    checkpoint_seconds: float = 0.0


class TensorBatches:
    """``next_batch()`` drawing minibatches of ``data`` (shape ``(N, *event)``) epoch by epoch.

    Each epoch visits a fresh random permutation (drawn from ``generator``, default the global one), in
    ``N // batch_size`` batches. The batches left in the current epoch are state: :meth:`state_dict` saves them
    (and the generator's state), so that a resumed run sees the same batches.
    """

    def __init__(self, data: Tensor, batch_size: int, *, generator: torch.Generator | None = None) -> None:
        check_tensor(data, "data", min_ndim=1)
        check_int(batch_size, "batch_size", minimum=1)
        if batch_size > data.shape[0]:
            raise ValueError(f"batch_size must be <= len(data)={data.shape[0]}, got {batch_size}")
        self.data, self.batch_size, self.generator = data, batch_size, generator
        self._order: list[Tensor] = []

    def __call__(self) -> Tensor:
        if not self._order:
            perm = torch.randperm(self.data.shape[0], generator=self.generator).to(self.data.device)
            self._order.extend(perm.split(self.batch_size)[: self.data.shape[0] // self.batch_size])
        return self.data[self._order.pop(0)]

    def state_dict(self) -> dict[str, Tensor]:
        """The indices of the batches left in this epoch, ``(n_left, batch_size)``, and the generator's state."""
        order = torch.stack(self._order).cpu() if self._order else torch.empty(0, self.batch_size, dtype=torch.long)
        state = {"order": order}
        if self.generator is not None:
            state["generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Restore a :meth:`state_dict`."""
        if not isinstance(state, Mapping) or not isinstance(state.get("order"), Tensor):
            raise ValueError(f"state must be a TensorBatches.state_dict(), got {type(state).__name__}")
        order = state["order"]
        if order.ndim != 2 or order.shape[1] != self.batch_size or (order.numel() and order.max() >= len(self.data)):
            raise ValueError(f"state['order'] must index batches of {self.batch_size} of {len(self.data)} rows")
        if ("generator" in state) != (self.generator is not None):
            raise ValueError("state and batches disagree on whether a generator is used")
        self._order = list(order.to(self.data.device).unbind(0))
        if self.generator is not None:
            self.generator.set_state(state["generator"])


def tensor_batches(data: Tensor, batch_size: int, *, generator: torch.Generator | None = None) -> TensorBatches:
    """Return ``next_batch()`` drawing minibatches of ``data`` (shape ``(N, *event)``) epoch by epoch.

    Each epoch visits a fresh random permutation; the indices are drawn on the CPU and moved to the data's
    device. The result is a :class:`~ebmlib.train.TensorBatches`, whose position :func:`~ebmlib.train.fit`
    checkpoints.
    """
    return TensorBatches(data, batch_size, generator=generator)


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    next_batch: Callable[[], Tensor],
    *,
    n_iters: int,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    ema_decay: float | None = None,
    grad_clip: float | None = None,
    log_every: int = 10,
    callback: Callable[[int, nn.Module], None] | None = None,
    run_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    stateful: Mapping[str, Any] | None = None,
    progress: bool = True,
    desc: str = "training",
) -> TrainResult:
    """Minimise ``loss_fn(model, next_batch())`` for ``n_iters`` iterations, resumably if given ``run_dir``.

    Parameters
    ----------
    model
        The energy network, or an :class:`~ebmlib.nets.Ensemble` of ``K`` networks trained as ``K`` runs at once
        (:func:`~ebmlib.train.fit_ensemble`).
    loss_fn
        ``loss_fn(model, batch)`` returning a scalar loss, or ``(loss, logs)`` with a dict of scalar
        diagnostics.
    next_batch
        Called once per iteration for a data batch (see :func:`~ebmlib.train.tensor_batches`).
    n_iters
        Number of optimiser steps.
    optimizer
        Defaults to Adam on ``model.parameters()`` with learning rate ``lr``.
    ema_decay
        If given, keep an exponential moving average :math:`\\bar\\theta \\leftarrow d\\,\\bar\\theta +
        (1-d)\\,\\theta` of the parameters (``torch.optim.swa_utils.AveragedModel``).
    grad_clip
        Clip the global gradient norm to this value.
    log_every
        Record the loss and diagnostics every this many iterations (each record reads values back from the
        device once, so it is not done every step); a non-finite loss raises ``RuntimeError`` there.
    callback
        ``callback(iteration, model)`` after every optimiser step, e.g. to snapshot densities or
        :func:`~ebmlib.train.linear_warmup`.
    run_dir
        A directory for this run's checkpoint (one run per directory). Every ``checkpoint_every`` iterations
        and at the end, ``fit`` saves the model, optimiser, EMA, the ``state_dict()`` of ``loss_fn``,
        ``next_batch``, ``callback`` and ``stateful`` where they have one (replay buffers, persistent chains,
        flows, adapted step sizes, data order), every random generator (:func:`~ebmlib.checkpoint.rng_state`),
        the iteration, the history and the training time, atomically (:func:`~ebmlib.checkpoint.save_checkpoint`).
        Called again with the same directory and configuration, ``fit`` loads that checkpoint and continues:
        on the CPU the result equals an uninterrupted run's bit for bit, and a finished run returns at once
        with its model, EMA and history (the random generators are left where the finished run left them).
        A checkpoint of another configuration (:func:`~ebmlib.fingerprint.describe_config` of the model,
        optimiser, loss, batches and settings; ``n_iters`` may grow) raises ``ValueError``, as does a
        ``loss_fn``, ``next_batch`` or ``callback`` that closes over a stateful object not saved with the run
        (pass it in ``stateful``). :func:`~ebmlib.checkpoint.run_progress` tells a finished run from an
        unfinished one without loading it.
    checkpoint_every
        Iterations between checkpoints; default ``max(1, n_iters // 100)``.
    stateful
        Further objects with ``state_dict()`` and ``load_state_dict()`` to checkpoint, by name: e.g. a loss
        that ``loss_fn`` wraps, a learning-rate scheduler stepped by ``callback``, a recorder of results.
    progress
        Show a tqdm progress bar (unless the environment sets ``TQDM_DISABLE``, see :func:`progress_disabled`).
    desc
        Label of the progress bar (and of the run in the cost ledger).

    Notes
    -----
    With the environment variable ``EBMLIB_COST`` naming a file, ``fit`` also counts the FLOPs, operators and
    bytes of one step and appends a record of the run to that file (:mod:`ebmlib.ledger`); the counted
    step runs slower under the counter and is left out of the ledger's timed steps.
    """
    check_int(n_iters, "n_iters", minimum=1)
    check_int(log_every, "log_every", minimum=1)
    if grad_clip is not None:
        check_positive(grad_clip, "grad_clip")
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=check_positive(lr, "lr"))
    ema = None
    if ema_decay is not None:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(check_probability(ema_decay, "ema_decay")))
    result = TrainResult(ema=ema)
    checkpoint = None
    if run_dir is not None:
        every = max(1, n_iters // 100) if checkpoint_every is None else check_int(checkpoint_every, "checkpoint_every",
                                                                                   minimum=1)
        settings = {"ema_decay": ema_decay, "grad_clip": grad_clip, "log_every": log_every}
        checkpoint = _resume(Path(run_dir), result, n_iters, settings, model=model, optimizer=optimizer, ema=ema,
                             loss_fn=loss_fn, next_batch=next_batch, callback=callback, stateful=stateful)
    bar = tqdm(range(result.resumed_from + 1, n_iters + 1), desc=desc, disable=progress_disabled(progress),
               mininterval=1.0, initial=result.resumed_from, total=n_iters)
    # An ensemble (ebmlib.nets.Ensemble) of K members: the batch-mean loss is the members' mean, so K times it
    # gives each member its own loss's gradient; clipping is per member.
    members = getattr(model, "n_members", 1)
    # The cost ledger (EBMLIB_COST, ebmlib.ledger): one step counted, the others' time without callbacks.
    ledger = ledger_path()
    counted = min(result.resumed_from + 2, n_iters) if ledger is not None else None
    step_count, step_seconds = None, 0.0
    for iteration in bar:
        start = time.perf_counter()
        # A sampler inside the loss is part of this step's count (recorded_loop); one in the callback is not.
        with recorded_loop(), OperationCounter() if iteration == counted else nullcontext() as counter:
            out = loss_fn(model, next_batch())
            loss, logs = out if isinstance(out, tuple) else (out, {})
            optimizer.zero_grad(set_to_none=True)
            (loss * members if members > 1 else loss).backward()
            if grad_clip is not None and members > 1:
                model.clip_grad_norm_(grad_clip)
            elif grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            if ema is not None:
                ema.update_parameters(model)
        if counter is not None:
            step_count = counter.count
        elif ledger is not None:
            step_seconds += time.perf_counter() - start
        if iteration % log_every == 0 or iteration == n_iters:
            _record(result.history, iteration, loss, logs)
            bar.set_postfix(loss=f"{result.history['loss'][-1]:.4g}", refresh=False)
        if callback is not None:
            callback(iteration, model)
        result.seconds += time.perf_counter() - start
        if checkpoint is not None and (iteration % every == 0 or iteration == n_iters):
            checkpoint(iteration)
    if step_count is not None:
        steps = n_iters - result.resumed_from
        record_run(ledger, run_record(desc, step_count, n_iters, steps, steps - 1, step_seconds, members))
    return result


def _resume(run_dir: Path, result: TrainResult, n_iters: int, settings: dict[str, Any], *, model: nn.Module,
            optimizer: torch.optim.Optimizer, ema: AveragedModel | None, loss_fn: Any, next_batch: Any, callback: Any,
            stateful: Mapping[str, Any] | None) -> Callable[[int], None]:
    """Restore :func:`fit`'s run from ``run_dir`` into the objects and ``result`` (if it holds a checkpoint)
    and return ``checkpoint(iteration)``, which saves it there."""
    extra = dict(stateful or {})
    for name, obj in extra.items():
        if not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
            raise ValueError(f"stateful[{name!r}] must have state_dict() and load_state_dict(), got {type(obj)}")
    roots = {"loss_fn": loss_fn, "next_batch": next_batch, "callback": callback}
    parts = {"model": model, "optimizer": optimizer, "ema": ema, **roots,
             **{f"stateful.{k}": v for k, v in extra.items()}}
    parts = {name: obj for name, obj in parts.items() if hasattr(obj, "state_dict")}
    hidden = unsaved_state(roots, parts.values())
    if hidden:
        raise ValueError(f"state that a checkpoint would miss: {', '.join(hidden)}; give the object itself as "
                         "loss_fn, next_batch or callback, or pass it in stateful={name: object}")
    config = describe_config({"model": model, "optimizer": optimizer, "loss_fn": loss_fn, "next_batch": next_batch,
                              "settings": settings})
    restored = restore_run(run_dir, parts, n_iters=n_iters, config=config)
    if restored is not None:
        result.resumed_from, saved = restored
        result.history = {k: v.tolist() for k, v in saved["history"].items()}
        result.seconds = saved["seconds"]

    def checkpoint(iteration: int) -> None:
        start = time.perf_counter()
        history = {k: torch.tensor(v, dtype=torch.float64) for k, v in result.history.items()}
        save_run(run_dir, parts, iteration=iteration, n_iters=n_iters, config=config,
                 extra={"history": history, "seconds": result.seconds})
        result.checkpoint_seconds += time.perf_counter() - start

    return checkpoint


def _record(history: dict[str, list[float]], iteration: int, loss: Tensor, logs: dict[str, Tensor]) -> None:
    values = {"loss": float(loss.detach()), **{k: float(v) for k, v in logs.items()}}
    if not math.isfinite(values["loss"]):
        raise RuntimeError(f"the loss became {values['loss']} at iteration {iteration}")
    history.setdefault("iteration", []).append(float(iteration))
    for key, value in values.items():
        history.setdefault(key, []).append(value)


def linear_warmup(optimizer: torch.optim.Optimizer, n_warmup: int) -> Callable[[int, nn.Module], None]:
    """A :func:`ebmlib.train.fit` callback: learning rate ``lr · (t + 1) / n_warmup`` for ``t < n_warmup``.

    Sets the warm-up rate of the first step at once; call before :func:`~ebmlib.train.fit`.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    check_int(n_warmup, "n_warmup", minimum=1)
    base = [group["lr"] for group in optimizer.param_groups]

    def set_rate(iteration: int, _model: nn.Module | None = None) -> None:
        factor = min(1.0, (iteration + 1) / n_warmup)
        for group, lr in zip(optimizer.param_groups, base):
            group["lr"] = lr * factor

    set_rate(0)
    return set_rate
