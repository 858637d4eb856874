"""Every training objective of the book. A loss is called as ``loss(energy_fn, x_batch)`` (bind its settings
with :func:`functools.partial` or use the class form) and returns ``(scalar, logs)``, the scalar's gradient
being the (estimated) gradient of the paper's objective, ``logs`` detached diagnostics.

* :mod:`~ebmlib.losses.contrastive` — contrastive divergence and persistent CD;
* :mod:`~ebmlib.losses.ratio` — exact ratio matching, RMwGGIS, the node-set form;
* :mod:`~ebmlib.losses.discrepancy` — energy discrepancy; its noise in :mod:`~ebmlib.losses.perturbations`
  (binary, Gaussian, node sets) and :mod:`~ebmlib.losses.heat` (categorical, mixed);
* :mod:`~ebmlib.losses.noisefree` — the self-adversarial loss and ODE-flow maximum likelihood;
* :mod:`~ebmlib.losses.flowmc` — flowMC-EBM, ULA-EBM and NT-EBM training steps;
* :mod:`~ebmlib.losses.tabular` — the TabED variants and TabCD.
"""

from ebmlib.losses.contrastive import (
    PersistentContrastiveDivergence,
    Sampler,
    contrastive_divergence,
)
from ebmlib.losses.discrepancy import (
    EnergyDiscrepancy,
    PerturbationKernel,
    check_perturbation,
    discrepancy_from_energies,
    energy_discrepancy,
    exact_energy_discrepancy,
)
from ebmlib.losses.flowmc import (
    FLOW_EBM_METHODS,
    FlowEBMLoss,
)
from ebmlib.losses.graph_ratio import ratio_matching_within_nodes
from ebmlib.losses.heat import (
    HEAT_GRAPHS,
    CategoricalPerturbation,
    CyclicalPerturbation,
    GridPerturbation,
    HeatPerturbation,
    MixedPerturbation,
    OrdinalPerturbation,
    UniformPerturbation,
    heat_kernel,
)
from ebmlib.losses.noisefree import (
    DYNAMICS,
    FlowMaximumLikelihood,
    SelfAdversarialLoss,
    frozen,
    self_adversarial_loss,
)
from ebmlib.losses.perturbations import (
    MAX_STATES,
    BernoulliPerturbation,
    BinaryPerturbation,
    BitFlipPerturbation,
    GaussianPerturbation,
    NodeSetPerturbation,
    Perturbation,
    enumerate_states,
    product_matrix,
)
from ebmlib.losses.ratio import (
    RM_ESTIMATORS,
    RM_PAIRINGS,
    RM_PROPOSALS,
    LinearFirstLayer,
    ratio_matching,
    rmwggis,
    rmwggis_proposal,
)
from ebmlib.losses.tabular import (
    mixed_noise,
    tabcd_loss,
    tabular_losses,
)

__all__ = [
    "Sampler",
    "contrastive_divergence",
    "PersistentContrastiveDivergence",
    "RM_ESTIMATORS",
    "RM_PROPOSALS",
    "LinearFirstLayer",
    "ratio_matching",
    "rmwggis_proposal",
    "rmwggis",
    "ratio_matching_within_nodes",
    "RM_PAIRINGS",
    "PerturbationKernel",
    "discrepancy_from_energies",
    "check_perturbation",
    "energy_discrepancy",
    "EnergyDiscrepancy",
    "exact_energy_discrepancy",
    "MAX_STATES",
    "Perturbation",
    "enumerate_states",
    "product_matrix",
    "BinaryPerturbation",
    "BernoulliPerturbation",
    "BitFlipPerturbation",
    "GaussianPerturbation",
    "NodeSetPerturbation",
    "HEAT_GRAPHS",
    "CategoricalPerturbation",
    "heat_kernel",
    "HeatPerturbation",
    "UniformPerturbation",
    "CyclicalPerturbation",
    "OrdinalPerturbation",
    "GridPerturbation",
    "MixedPerturbation",
    "DYNAMICS",
    "frozen",
    "self_adversarial_loss",
    "SelfAdversarialLoss",
    "FlowMaximumLikelihood",
    "FLOW_EBM_METHODS",
    "FlowEBMLoss",
    "mixed_noise",
    "tabular_losses",
    "tabcd_loss",
]
