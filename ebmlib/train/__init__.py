"""Training: the loop, ensembles of runs trained as one, and the protocols several chapters share.

* :mod:`~ebmlib.train.loop` — :func:`~ebmlib.train.fit` (EMA, gradient clipping, progress bar, resumable runs),
  minibatches, warm-up;
* :mod:`~ebmlib.train.ensemble` — ``K`` networks of one architecture trained at once, each exactly as its own run
  (:func:`~ebmlib.train.fit_ensemble`);
* :mod:`~ebmlib.train.streams` — one random stream per member of such a run (:class:`~ebmlib.train.MemberStreams`);
* :mod:`~ebmlib.train.protocols` — a feature classifier, a mixed-table energy, the TSTR comparison.
"""

from ebmlib.train.ensemble import EnsembleAdam, fit_ensemble
from ebmlib.train.loop import (
    LossFn,
    TensorBatches,
    TrainResult,
    fit,
    linear_warmup,
    progress_bar,
    progress_disabled,
    tensor_batches,
)
from ebmlib.train.protocols import compare_tstr, train_classifier, train_mixed
from ebmlib.train.streams import MemberBatches, MemberLoss, MemberStreams

__all__ = [
    "LossFn",
    "progress_disabled",
    "progress_bar",
    "TrainResult",
    "TensorBatches",
    "tensor_batches",
    "fit",
    "linear_warmup",
    "MemberStreams",
    "MemberBatches",
    "MemberLoss",
    "EnsembleAdam",
    "fit_ensemble",
    "train_classifier",
    "train_mixed",
    "compare_tstr",
]
