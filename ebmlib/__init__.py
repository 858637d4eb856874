"""ebmlib: reusable, GPU-capable building blocks for energy-based models, organised by job.

Convention: an energy ``E`` maps a batch ``(B, *event_shape)`` to ``(B,)`` and the model density is
``p(x) ∝ exp(-E(x))``. Subpackages: :mod:`ebmlib.samplers` (every sampler), :mod:`ebmlib.losses` (every
objective), :mod:`ebmlib.data` (data sets and encodings), :mod:`ebmlib.nets` (energy networks),
:mod:`ebmlib.metrics` (evaluation); modules: :mod:`ebmlib.flows`, :mod:`ebmlib.train`, :mod:`ebmlib.report`,
:mod:`ebmlib.plotting`, :mod:`ebmlib.bench`, :mod:`ebmlib.utils`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ebmlib")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
