"""ebmlib: reusable, GPU-capable building blocks for energy-based models.

Convention: an energy ``E`` maps a batch ``(B, *event_shape)`` to ``(B,)`` and the model density is
``p(x) ∝ exp(-E(x))``. Modules: :mod:`~ebmlib.utils` (devices, seeds, validation, timing),
:mod:`~ebmlib.data`, :mod:`~ebmlib.nets`, :mod:`~ebmlib.samplers`, :mod:`~ebmlib.losses`,
:mod:`~ebmlib.metrics`, :mod:`~ebmlib.train` and :mod:`~ebmlib.plotting`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ebmlib")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
