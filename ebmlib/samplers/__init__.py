"""Every sampler of the book, whatever paper it came from.

An energy ``E`` maps ``(B, *event)`` to ``(B,)`` and a sampler moves ``B`` chains (one per row) towards
``p ∝ exp(-E)``; everything is batched over chains, follows the device and dtype of its input, and checks
finiteness once per call (:func:`~ebmlib.samplers.all_finite` accumulates on the device).

**Step size.** Every gradient-based sampler here discretises the Langevin diffusion
``dx = -∇E(x) dt + √2 dW`` (or, without noise, the gradient flow ``dx = -∇E(x) dt``), and ``step_size`` is
always its time step ``h``: one step moves ``x`` by ``-h ∇E(x)`` plus, where there is noise, ``√(2h) ξ``.
This holds for :func:`~ebmlib.samplers.langevin` (and :func:`~ebmlib.samplers.langevin_trajectory`),
:func:`~ebmlib.samplers.mala`,
:func:`~ebmlib.samplers.flowmc`, :func:`~ebmlib.samplers.latent_mala`, :func:`~ebmlib.samplers.mwg_joint`,
:func:`~ebmlib.samplers.langevin_gibbs`, :func:`~ebmlib.samplers.euler_sample`,
:func:`~ebmlib.samplers.noisy_sample` and the fixed-grid solvers of :func:`~ebmlib.samplers.ode_sample`.
Papers write the same step differently: Kelly & Grathwohl's ``ε`` is ``√(2h)``, Xiao et al.'s ``η`` is
``2h``, the energy-discrepancy code's ``s`` is ``2h``; each chapter converts its paper's value. The discrete
samplers' :func:`~ebmlib.samplers.discrete_langevin_binary` is the exception: its ``step_size`` is Zhang et al.'s
``α``, the scale of a proposal over bit flips, not a diffusion time.

* :mod:`~ebmlib.samplers.core` — Metropolis–Hastings acceptance, categorical draws, bit flips, clamping;
* :mod:`~ebmlib.samplers.discrete` — Gibbs, Gibbs-with-Gradients and the discrete Langevin proposal for binary
  states;
* :mod:`~ebmlib.samplers.categorical` — Gibbs-with-Gradients over one-hot blocks, Gibbs over codes;
* :mod:`~ebmlib.samplers.continuous` — Langevin (ULA) and MALA;
* :mod:`~ebmlib.samplers.mixed` — Metropolis-within-Gibbs for ``(x, y)``, Langevin-Gibbs for table rows;
* :mod:`~ebmlib.samplers.flow` — i-SIR, flowMC and latent MALA with a normalising-flow proposal;
* :mod:`~ebmlib.samplers.ode` — the noise-free gradient-flow ODE, its Euler and noisy versions, its density;
* :mod:`~ebmlib.samplers.buffer` — the replay buffer of persistent chains.
"""

from ebmlib.samplers.buffer import (
    ReplayBuffer,
)
from ebmlib.samplers.categorical import (
    categorical_log_proposal,
    gibbs_categorical,
    gibbs_categorical_sweep,
    gwg_categorical,
    gwg_categorical_step,
)
from ebmlib.samplers.continuous import (
    MALAResult,
    adapt_step_size,
    check_adaptation,
    langevin,
    langevin_trajectory,
    langevin_update,
    mala,
    mala_step,
)
from ebmlib.samplers.core import (
    all_finite,
    check_binary_states,
    check_clamp,
    check_noise_scale,
    flip_bits,
    flip_log_proposal,
    metropolis_accept,
    raise_unless_finite,
    sample_categorical,
    select_rows,
)
from ebmlib.samplers.discrete import (
    GIBBS_ORDERS,
    DiscreteLangevinSampler,
    GWGBinarySampler,
    discrete_langevin_binary,
    gibbs_binary,
    gibbs_random_site,
    gibbs_within_nodes,
    gwg_binary,
    langevin_flip_logits,
)
from ebmlib.samplers.flow import (
    FlowMCResult,
    FlowProposal,
    TransportMap,
    check_flow,
    flowmc,
    isir_step,
    latent_energy,
    latent_mala,
)
from ebmlib.samplers.mixed import (
    JointNoise,
    MWGSampler,
    impute_missing,
    label_energy,
    langevin_gibbs,
    mwg_joint,
)
from ebmlib.samplers.ode import (
    ADAPTIVE_METHODS,
    TRACE_ESTIMATORS,
    euler_sample,
    flow_log_prob,
    hessian_trace,
    hutchinson_trace,
    noisy_sample,
    ode_sample,
    standard_normal_log_prob,
)

__all__ = [
    "flip_bits",
    "flip_log_proposal",
    "metropolis_accept",
    "sample_categorical",
    "select_rows",
    "all_finite",
    "raise_unless_finite",
    "check_binary_states",
    "check_noise_scale",
    "check_clamp",
    "GIBBS_ORDERS",
    "gibbs_binary",
    "gibbs_random_site",
    "gwg_binary",
    "GWGBinarySampler",
    "discrete_langevin_binary",
    "DiscreteLangevinSampler",
    "langevin_flip_logits",
    "gibbs_within_nodes",
    "categorical_log_proposal",
    "gwg_categorical_step",
    "gwg_categorical",
    "gibbs_categorical_sweep",
    "gibbs_categorical",
    "langevin_update",
    "langevin",
    "langevin_trajectory",
    "MALAResult",
    "check_adaptation",
    "mala_step",
    "adapt_step_size",
    "mala",
    "label_energy",
    "mwg_joint",
    "MWGSampler",
    "JointNoise",
    "impute_missing",
    "langevin_gibbs",
    "FlowProposal",
    "TransportMap",
    "check_flow",
    "isir_step",
    "FlowMCResult",
    "flowmc",
    "latent_energy",
    "latent_mala",
    "TRACE_ESTIMATORS",
    "ADAPTIVE_METHODS",
    "ode_sample",
    "euler_sample",
    "noisy_sample",
    "hessian_trace",
    "hutchinson_trace",
    "standard_normal_log_prob",
    "flow_log_prob",
    "ReplayBuffer",
]
