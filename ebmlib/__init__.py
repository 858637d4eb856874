"""ebmlib: reusable, GPU-capable building blocks for energy-based models.

Convention: an energy ``E`` maps a batch ``(B, *event_shape)`` to ``(B,)`` and the model density is
``p(x) ∝ exp(-E(x))``. Modules: :mod:`~ebmlib.utils` (devices, seeds, validation, timing);
data — :mod:`~ebmlib.data`, :mod:`~ebmlib.graphs`, :mod:`~ebmlib.images`, :mod:`~ebmlib.tabular`,
:mod:`~ebmlib.mixtures`; models — :mod:`~ebmlib.nets`, :mod:`~ebmlib.flows`; sampling —
:mod:`~ebmlib.samplers`, :mod:`~ebmlib.joint`, :mod:`~ebmlib.flowmc`, :mod:`~ebmlib.noisefree`; training —
:mod:`~ebmlib.losses`, :mod:`~ebmlib.discrepancy`, :mod:`~ebmlib.train`; evaluation — :mod:`~ebmlib.metrics`,
:mod:`~ebmlib.plotting`, :mod:`~ebmlib.bench`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ebmlib")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
