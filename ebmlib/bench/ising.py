"""The Ising benchmark shared by Gibbs-with-Gradients, RMwGGIS and energy discrepancy: learn a lattice's couplings
from samples with any objective, scored by the error of the couplings and the time per iteration."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from ebmlib.checkpoint import Recorder
from ebmlib.metrics import log_rmse
from ebmlib.nets import IsingEnergy
from ebmlib.train import LossFn, fit, tensor_batches
from ebmlib.utils import check_binary, check_int, check_positive, check_tensor


@dataclass
class IsingFit:
    """What :func:`~ebmlib.bench.fit_ising` returns: the learned model, the curve of ``(iteration, log-RMSE)``
    pairs and the training time per iteration in seconds: CPU seconds of the process on a CPU, wall-clock seconds
    on a GPU."""

    model: IsingEnergy
    curve: list[tuple[int, float]]
    seconds_per_iter: float


def fit_ising(loss_fn: LossFn, data: Tensor, coupling: Tensor, *, n_iters: int, lr: float, l1: float,
              batch_size: int = 100, n_records: int = 20, progress: bool = False,
              run_dir: str | Path | None = None) -> IsingFit:
    r"""Learn the couplings of an Ising model from its samples, recording the error of :math:`\hat J` along the way.

    The experiment of Gibbs-with-Gradients (Grathwohl et al. 2021, §5.2), RMwGGIS (Table 4) and energy
    discrepancy (App. D.4): an :class:`~ebmlib.nets.IsingEnergy` with :math:`\hat J = 0` is trained by Adam on

    .. math:: \mathcal L(\theta) + \lambda \lVert \hat J \rVert_1

    with minibatches of ``batch_size`` rows of ``data`` (:func:`~ebmlib.train.fit` on
    :func:`~ebmlib.train.tensor_batches`), and :func:`~ebmlib.metrics.log_rmse` of :math:`\hat J` against the
    true ``coupling`` is recorded every ``max(n_iters // n_records, 1)`` iterations.

    Parameters
    ----------
    loss_fn
        :math:`\mathcal L`: ``loss_fn(model, batch)`` returning a scalar or ``(scalar, logs)``, e.g.
        :func:`~ebmlib.losses.rmwggis` or a :class:`~ebmlib.losses.PersistentContrastiveDivergence`.
    data
        Ground-truth samples ``(N, D)`` of 0/1 floats (e.g. :meth:`~ebmlib.data.IsingLattice.sample`); the model
        is trained on their device.
    coupling
        The true :math:`J`, ``(D, D)``.
    n_iters, lr
        Adam steps and learning rate.
    l1
        :math:`\lambda \ge 0` (the papers: 0.01 for RMwGGIS and PCD, 0.001 for energy discrepancy).
    batch_size, n_records
        Rows per minibatch (the papers: 100) and the number of points of the curve.
    progress
        Show a progress bar.
    run_dir
        A run directory for :func:`~ebmlib.train.fit`: the run (with the loss's state and the curve so far) is
        checkpointed there and, called again, resumed or, if finished, returned without training.
    """
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable as loss_fn(model, batch), got {type(loss_fn).__name__}")
    check_tensor(data, "data", ndim=2, floating=True)
    check_binary(data, "data")
    dim = data.shape[1]
    check_tensor(coupling, "coupling", shape=(dim, dim), floating=True)
    check_int(n_iters, "n_iters", minimum=1)
    if l1 != 0.0:
        check_positive(l1, "l1")
    every = max(n_iters // check_int(n_records, "n_records", minimum=1), 1)
    model = IsingEnergy(dim).to(data.device)
    target = coupling.to(data.device)
    records = Recorder()  # iteration -> log-RMSE, saved with a resumable run

    def penalised(m: IsingEnergy, batch: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        out = loss_fn(m, batch)
        value, logs = out if isinstance(out, tuple) else (out, {})
        return value + l1 * m.coupling.abs().sum(), logs

    def record(iteration: int, m: IsingEnergy) -> None:
        if iteration % every == 0:
            records[iteration] = log_rmse(m.coupling.detach(), target).item()

    stateful = {"curve": records, **({"loss": loss_fn} if hasattr(loss_fn, "state_dict") else {})}
    start = time.process_time()
    result = fit(model, penalised, tensor_batches(data, batch_size), n_iters=n_iters, lr=lr, callback=record,
                 progress=progress, desc="Ising", run_dir=run_dir, stateful=stateful if run_dir is not None else None)
    # On a CPU, the CPU seconds of this process, which a program sharing the machine does not inflate (a run resumed
    # from a checkpoint has only the wall-clock seconds of its earlier sessions).
    cpu_clock = data.device.type == "cpu" and result.resumed_from == 0
    seconds = time.process_time() - start if cpu_clock else result.seconds
    return IsingFit(model=model, curve=list(records.items()), seconds_per_iter=seconds / n_iters)
