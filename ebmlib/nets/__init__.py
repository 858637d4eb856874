"""Energy networks. Every energy maps a batch ``(B, *event_shape)`` to ``(B,)``; ``p(x) ∝ exp(-E(x))``.

* :mod:`~ebmlib.nets.mlp` — MLPs (Swish with learnable β, ...), the flowMC-EBM toy net and tilted energy;
* :mod:`~ebmlib.nets.discrete` — Ising energy with free couplings, Bernoulli-tilted energy, R-GCN graph energy;
* :mod:`~ebmlib.nets.images` — convolutional image energies and a feature classifier;
* :mod:`~ebmlib.nets.mixed` — energies of table rows and of joint states ``(x, y)``;
* :mod:`~ebmlib.nets.ensemble` — ``K`` networks of one architecture evaluated at once by batched products.
"""

from ebmlib.nets.discrete import (
    BernoulliTiltedEnergy,
    GraphEnergy,
    IsingEnergy,
)
from ebmlib.nets.ensemble import Ensemble
from ebmlib.nets.images import (
    ConvEnergy,
    FeatureClassifier,
    conv_features,
)
from ebmlib.nets.mixed import (
    JointEnergy,
    MixedEnergy,
)
from ebmlib.nets.mlp import (
    MLP,
    MLPEnergy,
    Swish,
    TiltedEnergy,
    count_parameters,
    layer_stack,
    make_activation,
    toy_energy_net,
)

__all__ = [
    "Swish",
    "make_activation",
    "layer_stack",
    "MLP",
    "MLPEnergy",
    "count_parameters",
    "toy_energy_net",
    "TiltedEnergy",
    "IsingEnergy",
    "BernoulliTiltedEnergy",
    "GraphEnergy",
    "conv_features",
    "ConvEnergy",
    "FeatureClassifier",
    "MixedEnergy",
    "JointEnergy",
    "Ensemble",
]
