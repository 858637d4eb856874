"""Training protocols several chapters share: a feature classifier, a mixed-table energy, the TSTR comparison."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ebmlib.data.codes import check_classes, check_codes
from ebmlib.ledger import repetitions
from ebmlib.losses.tabular import mixed_noise
from ebmlib.metrics.tabular import tstr_auc
from ebmlib.nets.mixed import MixedEnergy
from ebmlib.samplers.mixed import langevin_gibbs
from ebmlib.train.loop import fit, progress_bar, tensor_batches
from ebmlib.utils import check_int, check_positive, check_tensor, seed_everything


def train_classifier(model: nn.Module, x: Tensor, y: Tensor, *, n_iters: int, batch_size: int = 128, lr: float = 1e-3,
                     run_dir: str | Path | None = None) -> nn.Module:
    """Fit ``model`` (logits) to images ``x`` ``(N, ...)`` and integer labels ``y`` ``(N,)`` by cross-entropy
    with Adam on random minibatches (:func:`~ebmlib.train.fit`, resumable in ``run_dir`` if given); returns the
    model in eval mode."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_tensor(x, "x", min_ndim=2, floating=True)
    check_tensor(y, "y", shape=(x.shape[0],))
    if y.is_floating_point() or y.dtype == torch.bool or (y < 0).any():
        raise ValueError(f"y must hold integer class labels >= 0, got dtype {y.dtype}")
    check_int(batch_size, "batch_size", minimum=1)
    model.train()
    fit(model, lambda m, index: nn.functional.cross_entropy(m(x[index]), y[index]),
        lambda: torch.randint(0, x.shape[0], (batch_size,), device=x.device), n_iters=n_iters, lr=lr,
        log_every=n_iters, progress=False, desc="classifier", run_dir=run_dir)
    return model.eval()


def train_mixed(loss: Any, next_batch: Any, n_numeric: int, n_classes: Sequence[int], *, hidden: int,
                n_iters: int, lr: float, device: torch.device | str | None = None, desc: str | None = None,
                run_dir: str | Path | None = None) -> tuple[MixedEnergy, float]:
    """Fit a fresh ``MixedEnergy(hidden=hidden, depth=3)`` with ``loss(model, batch)`` on ``next_batch()``.

    Adam for ``n_iters`` steps with gradient clipping 5 and EMA 0.99 (:func:`ebmlib.train.fit`, resumable in
    ``run_dir`` if given); returns the EMA energy in eval mode and the training time in seconds.
    """
    for name, value in (("loss", loss), ("next_batch", next_batch)):
        if not callable(value):
            raise ValueError(f"{name} must be callable, got {type(value).__name__}")
    energy = MixedEnergy(n_numeric, n_classes, hidden=hidden, depth=3).to(device)
    result = fit(energy, loss, next_batch, n_iters=n_iters, lr=lr, grad_clip=5.0, ema_decay=0.99,
                 progress=False, desc=desc, run_dir=run_dir)
    return result.ema.module.eval(), result.seconds


def compare_tstr(losses: dict[str, Any], train_rows: Tensor, test_rows: Tensor, *, target: int, n_numeric: int,
                 n_classes: Sequence[int], hidden: int, n_iters: int, lr: float, sample_rounds: int, n_draws: int,
                 batch_size: int = 128, step_size: float = 5e-4, model: str = "xgboost",
                 progress: bool = True, run_dir: str | Path | None = None,
                 seed: int | None = None) -> dict[str, dict[str, Any]]:
    """Train a :class:`~ebmlib.nets.MixedEnergy` per loss on ``train_rows`` and score its samples by TSTR on
    ``test_rows``.

    Per loss (in the dict's order): an energy is trained by :func:`~ebmlib.train.train_mixed` on minibatches of
    ``batch_size`` training rows; then ``n_draws`` times, ``len(train_rows)`` synthetic rows are drawn by
    ``sample_rounds`` rounds of :func:`~ebmlib.samplers.langevin_gibbs` from :func:`~ebmlib.losses.mixed_noise` and
    scored by :func:`~ebmlib.metrics.tstr_auc`. Given ``run_dir``, each loss's training is resumable in
    ``<run_dir>/<loss name>``. Given ``seed``, every loss's training and draws start from
    :func:`~ebmlib.utils.seed_everything` of it, so that a loss's result does not depend on the others run
    before it (one call per loss gives the same runs as one call with all of them).

    Returns
    -------
    dict
        Per loss name: ``model`` (EMA energy, eval mode), ``auc`` and ``auc_std`` (mean and standard deviation
        over draws), ``aucs``, ``seconds`` (training time) and ``synthetic`` (the last draw, on the CPU).
    """
    if not isinstance(losses, Mapping) or not losses or not all(callable(f) for f in losses.values()):
        raise ValueError(f"losses must map names to losses loss(energy, batch), got {losses!r}")
    n_classes = check_classes(n_classes)
    check_int(n_numeric, "n_numeric", minimum=0)
    for name, rows in (("train_rows", train_rows), ("test_rows", test_rows)):
        check_tensor(rows, name, shape=(None, n_numeric + len(n_classes)), floating=True)
        check_codes(rows[:, n_numeric:], n_classes, f"{name} (categorical columns)")
    if not n_numeric <= check_int(target, "target") < n_numeric + len(n_classes):
        raise ValueError(f"target must index a categorical column, got {target}")
    for name, value in (("hidden", hidden), ("n_iters", n_iters), ("sample_rounds", sample_rounds),
                        ("n_draws", n_draws), ("batch_size", batch_size)):
        check_int(value, name, minimum=1)
    check_positive(lr, "lr")
    check_positive(step_size, "step_size")
    if model not in ("xgboost", "sklearn"):
        raise ValueError(f"model must be 'xgboost' or 'sklearn', got {model!r}")
    if seed is not None:
        check_int(seed, "seed", minimum=0)
    runs = {}
    for name, loss in progress_bar(losses.items(), desc="TSTR", progress=progress):
        if seed is not None:
            seed_everything(seed)
        energy, seconds = train_mixed(loss, tensor_batches(train_rows, batch_size), n_numeric, n_classes,
                                      hidden=hidden, n_iters=n_iters, lr=lr, device=train_rows.device, desc=name,
                                      run_dir=None if run_dir is None else Path(run_dir) / name)
        aucs = []
        for _ in repetitions(n_draws):
            start = mixed_noise(len(train_rows), n_numeric, n_classes, device=train_rows.device,
                                dtype=train_rows.dtype)
            synthetic = langevin_gibbs(energy, start, n_classes, n_numeric=n_numeric, n_rounds=sample_rounds,
                                       step_size=step_size)
            aucs.append(tstr_auc(synthetic, test_rows, target=target, n_numeric=n_numeric, n_classes=n_classes,
                                 model=model))
        runs[name] = {"model": energy, "auc": float(np.mean(aucs)), "auc_std": float(np.std(aucs)), "aucs": aucs,
                      "seconds": seconds, "synthetic": synthetic.cpu()}
    return runs
