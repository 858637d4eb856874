"""Training ``K`` networks of one architecture as one batched run, each exactly as its own run would train.

An :class:`~ebmlib.nets.Ensemble` evaluates ``K`` stacked members on member-grouped rows. What makes member ``k``'s
training equal to a separate run started with ``torch.manual_seed(seeds[k])``:

* its own random numbers: :class:`~ebmlib.train.MemberStreams` keeps one generator per member (and device); the
  data function of member ``k`` runs with member ``k``'s generator as the global one, and inside the loss every
  random draw (``torch.rand_like``, ``exponential_``, ``torch.randint``, ...) is split into the members' row
  blocks, each drawn from its member's generator;
* its own gradient: :func:`~ebmlib.train.fit` multiplies the batch-mean loss by ``K`` (the sum of the members'
  losses) and clips each member's gradient norm separately (:meth:`~ebmlib.nets.Ensemble.clip_grad_norm_`);
* its own optimiser: Adam is elementwise; :class:`~ebmlib.train.EnsembleAdam` also gives each member its own
  learning rate.

:func:`~ebmlib.train.fit_ensemble` puts these together. On a CPU the result equals ``K`` separate runs up to float
rounding (batched and single matrix products sum in different orders); on a GPU the ``K`` runs cost about one.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ebmlib.nets.ensemble import Ensemble
from ebmlib.train.loop import LossFn, TrainResult, fit
from ebmlib.train.streams import MemberStreams
from ebmlib.utils import check_int, check_positive


class EnsembleAdam(torch.optim.Optimizer):
    """Adam (with L2 weight decay, as :class:`torch.optim.Adam`) on an :class:`~ebmlib.nets.Ensemble`'s stacked
    parameters, with a learning rate per member.

    Member ``k``'s update is :class:`torch.optim.Adam`'s with learning rate ``lr[k]``: the same formulas, in the
    same order (on a CPU the two agree to the last bit but for rare rounding of the fused ``addcdiv``).

    Parameters
    ----------
    ensemble
        The ensemble whose parameters (all with the leading member axis) to optimise.
    lr
        One learning rate for all members or one per member.
    betas, eps, weight_decay
        As in :class:`torch.optim.Adam`.
    """

    def __init__(self, ensemble: Ensemble, lr: float | Sequence[float] = 1e-3, *,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        if not isinstance(ensemble, Ensemble):
            raise ValueError(f"ensemble must be an ebmlib.nets.Ensemble, got {type(ensemble).__name__}")
        k = ensemble.n_members
        rates = [lr] * k if isinstance(lr, (int, float)) and not isinstance(lr, bool) else lr
        if isinstance(rates, (str, bytes)) or not isinstance(rates, Sequence) or len(rates) != k:
            raise ValueError(f"lr must be a number or a sequence of {k} numbers (one per member), got {lr!r}")
        rates = [check_positive(r, f"lr[{i}]") for i, r in enumerate(rates)]
        if not (isinstance(betas, tuple) and len(betas) == 2 and all(0 <= b < 1 for b in betas)):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        check_positive(eps, "eps")
        if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or weight_decay < 0:
            raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
        super().__init__(ensemble.parameters(), {"lr": tuple(rates), "betas": betas, "eps": eps,
                                                 "weight_decay": float(weight_decay)})
        self.n_members = k
        self._rate_cache: dict[tuple, Tensor] = {}

    def _rates(self, rates: Sequence[float], device: torch.device) -> Tensor:
        """The members' learning rates as a float64 tensor on ``device``, copied there once (not every step)."""
        key = (tuple(rates), str(device))
        if key not in self._rate_cache:
            self._rate_cache[key] = torch.tensor(rates, dtype=torch.float64, device=device)
        return self._rate_cache[key]

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # noqa: D102 (Optimizer.step)
        loss = None if closure is None else closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                grad = param.grad
                if group["weight_decay"]:
                    grad = grad.add(param, alpha=group["weight_decay"])
                state["step"] += 1
                step = state["step"].item()
                state["exp_avg"].lerp_(grad, 1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                bias_correction1, bias_correction2 = 1 - beta1**step, 1 - beta2**step
                # In double precision, as torch.optim.Adam computes its scalar step size, then the parameter's dtype.
                step_size = (self._rates(group["lr"], param.device) / -bias_correction1).to(param.dtype)
                step_size = step_size.view(-1, *[1] * (param.ndim - 1))
                denom = (state["exp_avg_sq"].sqrt() / math.sqrt(bias_correction2)).add_(group["eps"])
                param.add_(step_size * state["exp_avg"] / denom)
        return loss


def fit_ensemble(ensemble: Ensemble, streams: MemberStreams, loss_fn: LossFn,
                 next_batches: Sequence[Callable[[], Tensor]], *, n_iters: int,
                 lr: float | Sequence[float] = 1e-3, weight_decay: float = 0.0, batched: bool | None = None,
                 run_dir: str | Path | None = None, stateful: Mapping[str, Any] | None = None,
                 **fit_kwargs: Any) -> TrainResult:
    """Train every member of ``ensemble`` on its own data with ``loss_fn``, as ``K`` separate runs would.

    :func:`~ebmlib.train.fit` on ``streams.loss(loss_fn)`` and ``streams.batches(next_batches)`` with
    :class:`~ebmlib.train.EnsembleAdam` (``lr`` one number or one per member, ``weight_decay``); the streams are
    checkpointed with the run. Other keyword arguments (``ema_decay``, ``grad_clip`` — per member —, ``log_every``,
    ``callback``, ``progress``, ``desc``, ``checkpoint_every``) go to ``fit``, whose logged loss is the members'
    mean.

    ``batched`` chooses how: ``True`` trains all members at once; ``False`` trains them one after the other (each
    as an ensemble of one, with its own stream), which gives the same result (up to float rounding) and is faster
    where a step is bound by arithmetic rather than by the number of operations — on a CPU, steps of large
    products. ``None`` (default) batches on a GPU, with a ``run_dir`` or a ``callback``, and otherwise times a few
    steps both ways on copies of the ensemble and its streams (which the training run never sees) and takes the
    faster.

    Returns
    -------
    TrainResult
        ``fit``'s result; ``result.ema.module`` (with ``ema_decay``) is an ensemble too. Members as standalone
        modules: :meth:`~ebmlib.nets.Ensemble.member`.
    """
    if not isinstance(ensemble, Ensemble):
        raise ValueError(f"ensemble must be an ebmlib.nets.Ensemble, got {type(ensemble).__name__}")
    if not isinstance(streams, MemberStreams) or streams.n_members != ensemble.n_members:
        raise ValueError(f"streams must be MemberStreams of {ensemble.n_members} members")
    if "optimizer" in fit_kwargs:
        raise ValueError("optimizer is chosen by fit_ensemble (EnsembleAdam); call fit directly for another")
    if batched not in (None, True, False):
        raise ValueError(f"batched must be None, True or False, got {batched!r}")
    check_int(n_iters, "n_iters", minimum=1)
    rates = EnsembleAdam(ensemble, lr, weight_decay=weight_decay).param_groups[0]["lr"]  # checks lr
    if batched is None:
        device = next(ensemble.parameters()).device
        batched = (device.type != "cpu" or run_dir is not None or fit_kwargs.get("callback") is not None
                   or ensemble.n_members == 1
                   or _batched_is_faster(ensemble, streams, loss_fn, next_batches, rates, weight_decay, fit_kwargs))
    elif not batched and (run_dir is not None or fit_kwargs.get("callback") is not None):
        raise ValueError("batched=False trains member by member: it takes no run_dir or callback")
    if not batched:
        return _fit_one_by_one(ensemble, streams, loss_fn, next_batches, n_iters, rates, weight_decay, fit_kwargs)
    optimizer = EnsembleAdam(ensemble, rates, weight_decay=weight_decay)
    return fit(ensemble, streams.loss(loss_fn), streams.batches(next_batches), n_iters=n_iters, optimizer=optimizer,
               run_dir=run_dir, stateful={**(stateful or {}), "member_streams": streams}, **fit_kwargs)


def _member_run(ensemble: Ensemble, streams: MemberStreams, k: int) -> tuple[Ensemble, MemberStreams]:
    """Member ``k`` as an ensemble of one, with a stream sharing member ``k``'s generators (so it advances them)."""
    single = Ensemble([ensemble.member(k)])
    sub = MemberStreams([0], streams.devices[-1])
    sub.generators = [streams.generators[k]]
    return single, sub


def _fit_one_by_one(ensemble: Ensemble, streams: MemberStreams, loss_fn: LossFn, next_batches: Sequence[Callable],
                    n_iters: int, rates: Sequence[float], weight_decay: float,
                    fit_kwargs: dict[str, Any]) -> TrainResult:
    """``fit_ensemble(batched=False)``: each member trained alone, then written back into the ensemble."""
    results = []
    for k in range(ensemble.n_members):
        single, sub = _member_run(ensemble, streams, k)
        optimizer = EnsembleAdam(single, [rates[k]], weight_decay=weight_decay)
        results.append(fit(single, sub.loss(loss_fn), sub.batches([next_batches[k]]), n_iters=n_iters,
                           optimizer=optimizer, **fit_kwargs))
        with torch.no_grad():
            for name, key in ensemble._param_keys.items():
                getattr(ensemble, key)[k] = single.stacked(name)[0]
    merged = TrainResult(seconds=sum(r.seconds for r in results))
    merged.history = {key: [sum(v) / len(v) for v in zip(*(r.history[key] for r in results))]
                      for key in results[0].history}
    if results[0].ema is not None:
        merged.ema = copy.deepcopy(results[0].ema)
        merged.ema.module = copy.deepcopy(ensemble)
        with torch.no_grad():
            for name, key in ensemble._param_keys.items():
                getattr(merged.ema.module, key).copy_(torch.cat([r.ema.module.stacked(name) for r in results]))
    return merged


def _batched_is_faster(ensemble: Ensemble, streams: MemberStreams, loss_fn: LossFn, next_batches: Sequence[Callable],
                       rates: Sequence[float], weight_decay: float, fit_kwargs: dict[str, Any],
                       n_probe: int = 3) -> bool:
    """Whether a batched step takes less time than ``K`` steps of one member, timed on copies (after a warm-up)."""
    probe = MemberStreams([0] * streams.n_members, streams.devices[-1])
    probe.load_state_dict(streams.state_dict())
    settings = {key: fit_kwargs[key] for key in ("grad_clip", "ema_decay") if key in fit_kwargs}

    def seconds(model: Ensemble, sub: MemberStreams, batches: Sequence[Callable], lrs: Sequence[float]) -> float:
        optimizer = EnsembleAdam(model, lrs, weight_decay=weight_decay)
        run = partial(fit, model, sub.loss(loss_fn), sub.batches(batches), optimizer=optimizer, progress=False,
                      **settings)
        run(n_iters=1, log_every=1)
        start = time.perf_counter()
        run(n_iters=n_probe, log_every=n_probe)
        return time.perf_counter() - start

    batched = seconds(copy.deepcopy(ensemble), probe, next_batches, rates)
    single, sub = _member_run(ensemble, probe, 0)
    alone = seconds(single, sub, next_batches[:1], rates[:1])
    return batched <= ensemble.n_members * alone
