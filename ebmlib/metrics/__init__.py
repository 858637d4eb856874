"""Evaluation: sample metrics, graph statistics, MCMC diagnostics, likelihood estimators, predictors.

* :mod:`~ebmlib.metrics.samples` — MMD, TV, KL, mode weights, coupling errors, Fréchet distances;
* :mod:`~ebmlib.metrics.graphs` — GraphRNN's degree, clustering and orbit MMD, hubs, a scorecard of samples;
* :mod:`~ebmlib.metrics.mcmc` — split-R̂ and mode switches of chains;
* :mod:`~ebmlib.metrics.likelihood` — ``log Z`` by enumeration, importance sampling or AIS; pseudo-log-likelihood;
* :mod:`~ebmlib.metrics.prediction` — the predictors of joint EBMs and their accuracy;
* :mod:`~ebmlib.metrics.tabular` — train-synthetic-test-real AUC and SDMetrics' quality scores;
* :mod:`~ebmlib.metrics.images` — Inception FID;
* :mod:`~ebmlib.metrics.calibration` — expected calibration error;
* :mod:`~ebmlib.metrics.densities` — a model on the plane by quadrature: decoded log-densities, mode weights.
"""

from ebmlib.metrics.calibration import (
    expected_calibration_error,
)
from ebmlib.metrics.densities import (
    PointCode,
    decoded_log_density,
    energy_mode_weights,
)
from ebmlib.metrics.graphs import (
    N_ORBITS,
    clustering_histogram,
    degree_histogram,
    graph_mmd,
    has_hub,
    orbit_counts,
    orbit_statistic,
    score_graph_samples,
)
from ebmlib.metrics.images import (
    inception_fid,
)
from ebmlib.metrics.likelihood import (
    CodeKernelDensity,
    ais_log_partition,
    enumerated_log_probs,
    importance_log_partition,
    pseudo_log_likelihood,
)
from ebmlib.metrics.mcmc import (
    mode_switches,
    split_rhat,
)
from ebmlib.metrics.prediction import (
    attribute_accuracy,
    predict_energy,
    predict_sample,
)
from ebmlib.metrics.samples import (
    Kernel,
    empirical_distribution,
    exp_hamming_kernel,
    frechet_distance,
    gaussian_frechet_distance,
    hamming_distance,
    kl_divergence,
    linear_hamming_kernel,
    log_rmse,
    median_squared_log_density_error,
    mmd2,
    mmd_hamming,
    mode_weight_mse,
    mode_weights,
    total_variation,
)
from ebmlib.metrics.tabular import (
    sdmetrics_quality,
    tstr_auc,
)

__all__ = [
    "Kernel",
    "hamming_distance",
    "linear_hamming_kernel",
    "exp_hamming_kernel",
    "mmd2",
    "mmd_hamming",
    "empirical_distribution",
    "total_variation",
    "kl_divergence",
    "mode_weights",
    "log_rmse",
    "mode_weight_mse",
    "median_squared_log_density_error",
    "gaussian_frechet_distance",
    "frechet_distance",
    "degree_histogram",
    "clustering_histogram",
    "N_ORBITS",
    "orbit_counts",
    "orbit_statistic",
    "graph_mmd",
    "has_hub",
    "score_graph_samples",
    "split_rhat",
    "mode_switches",
    "importance_log_partition",
    "CodeKernelDensity",
    "ais_log_partition",
    "pseudo_log_likelihood",
    "enumerated_log_probs",
    "predict_energy",
    "predict_sample",
    "attribute_accuracy",
    "sdmetrics_quality",
    "tstr_auc",
    "inception_fid",
    "expected_calibration_error",
    "PointCode",
    "decoded_log_density",
    "energy_mode_weights",
]
