"""Device choice, seeding, input validation and time/memory measurement.

Every other module of ``ebmlib`` validates its inputs with the ``check_*`` helpers below, so that bad
input raises a :class:`ValueError` that names the offending argument instead of broadcasting silently or
returning NaN.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

EnergyFn = Callable[[Tensor], Tensor]
"""An energy maps a batch ``x`` of shape ``(B, *event_shape)`` to energies of shape ``(B,)``;
the model density is ``p(x) ∝ exp(-E(x))``."""


# ---------------------------------------------------------------------------------------------------------
# Device and seeds
# ---------------------------------------------------------------------------------------------------------
def get_device(prefer: str | None = None) -> torch.device:
    """Return the best available device: CUDA, then Apple MPS, then CPU.

    Parameters
    ----------
    prefer
        Force a device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``). ``None`` picks automatically; the
        environment variable ``EBMLIB_DEVICE`` overrides the automatic choice.
    """
    prefer = prefer if prefer is not None else os.environ.get("EBMLIB_DEVICE")
    if prefer is not None:
        device = check_device(prefer, "prefer")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"prefer={prefer!r}: CUDA is not available on this machine")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"prefer={prefer!r}: MPS is not available on this machine")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's, NumPy's and torch's (CPU and all CUDA devices) random number generators.

    Returns a fresh CPU :class:`torch.Generator` seeded with ``seed`` for code that wants its own stream.
    """
    check_int(seed, "seed", minimum=0)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------
def check_device(device: Any, name: str = "device") -> torch.device:
    """``device`` (``"cuda:1"``, a device) as a :class:`torch.device`; else ``ValueError`` naming ``name``."""
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"{name} must name a torch device such as 'cpu' or 'cuda', got {device!r}") from error


def check_int(value: Any, name: str, minimum: int | None = None) -> int:
    """Return ``value`` if it is an integer (not a bool) ``>= minimum``; raise ``ValueError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_positive(value: Any, name: str) -> float:
    """Return ``value`` as a float if it is a finite number ``> 0``; raise ``ValueError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return float(value)


def check_real(value: Any, name: str) -> float:
    """Return ``value`` as a float if it is a finite real number (not a bool); raise ``ValueError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


def check_float_dtype(dtype: Any, name: str = "dtype") -> torch.dtype:
    """Return ``dtype`` if it is a floating-point :class:`torch.dtype`; raise ``ValueError`` otherwise."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating-point torch.dtype, got {dtype!r}")
    return dtype


def check_probability(value: Any, name: str, *, closed: bool = False) -> float:
    """Return ``value`` if it lies in ``(0, 1)`` (or ``[0, 1]`` when ``closed``); raise otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    inside = 0.0 <= value <= 1.0 if closed else 0.0 < value < 1.0
    if not inside:
        interval = "[0, 1]" if closed else "(0, 1)"
        raise ValueError(f"{name} must lie in {interval}, got {value}")
    return float(value)


def check_tensor(x: Any, name: str, *, ndim: int | None = None, min_ndim: int | None = None,
                 shape: tuple[int | None, ...] | None = None, floating: bool = False, finite: bool = True) -> Tensor:
    """Check that ``x`` is a (finite) tensor of the requested rank/shape; return it unchanged.

    Parameters
    ----------
    x
        The candidate tensor.
    name
        The argument name used in the error message.
    ndim, min_ndim
        Exact or minimal number of dimensions.
    shape
        Expected shape; ``None`` entries match any size.
    floating
        Require a floating-point dtype (needed wherever gradients are taken).
    finite
        Reject NaN/inf. This reads values back to the host (a device synchronisation), so inner loops pass
        ``False`` and only public entry points check values.
    """
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if min_ndim is not None and x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got shape {tuple(x.shape)}")
    if shape is not None:
        if x.ndim != len(shape) or any(s is not None and s != xs for s, xs in zip(shape, x.shape)):
            expected = tuple("*" if s is None else s for s in shape)
            raise ValueError(f"{name} must have shape {expected}, got {tuple(x.shape)}")
    if floating and not x.is_floating_point():
        raise ValueError(f"{name} must have a floating-point dtype, got {x.dtype}")
    if finite and x.is_floating_point() and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def check_binary(x: Any, name: str, *, min_ndim: int = 2) -> Tensor:
    """Check that ``x`` is a tensor of 0/1 values (any dtype) with at least ``min_ndim`` dimensions."""
    check_tensor(x, name, min_ndim=min_ndim)
    if not ((x == 0) | (x == 1)).all():
        raise ValueError(f"{name} must contain only 0/1 values")
    return x


def check_energy_output(energy: Tensor, batch_size: int, name: str = "energy", *, finite: bool = True) -> Tensor:
    """Check that an energy function returned shape ``(batch_size,)`` (and, if ``finite``, no NaN/inf)."""
    if not isinstance(energy, Tensor) or energy.shape != (batch_size,):
        got = tuple(energy.shape) if isinstance(energy, Tensor) else type(energy).__name__
        raise ValueError(f"{name} must return a tensor of shape ({batch_size},), got {got}")
    if finite and not torch.isfinite(energy).all():
        raise ValueError(f"{name} returned NaN or infinite values")
    return energy


# ---------------------------------------------------------------------------------------------------------
# Energies and their gradients
# ---------------------------------------------------------------------------------------------------------
def energy_and_grad(energy_fn: EnergyFn, x: Tensor, *, create_graph: bool = False) -> tuple[Tensor, Tensor]:
    """Evaluate ``E(x)`` and ``∇_x E(x)`` in one backward pass.

    Parameters
    ----------
    energy_fn
        Maps ``(B, *event_shape)`` to ``(B,)``.
    x
        Points, shape ``(B, *event_shape)``, floating point. Discrete states are passed as floats so that the
        gradient exists (Gibbs-with-Gradients, RMwGGIS).
    create_graph
        Keep the graph of the gradient, for losses that differentiate through it.

    Returns
    -------
    energy, grad
        Shapes ``(B,)`` and ``(B, *event_shape)``. Without ``create_graph`` both are detached.
    """
    # Called in samplers' inner loops: metadata checks only, no device synchronisation.
    check_tensor(x, "x", min_ndim=1, floating=True, finite=False)
    with torch.enable_grad():
        x_req = x.detach().requires_grad_(True)
        energy = check_energy_output(energy_fn(x_req), x.shape[0], "energy_fn", finite=False)
        # Summing is exact: sample b's energy depends only on x[b].
        (grad,) = torch.autograd.grad(energy.sum(), x_req, create_graph=create_graph)
    if create_graph:
        return energy, grad
    return energy.detach(), grad.detach()


def repeat_rows(h: Tensor, n: int, name: str = "x") -> Tensor:
    """Repeat each row of ``h`` (``(B, F)``) ``n / B`` times, grouped, so row ``i·m + j`` is ``h[i]``: ``(n, F)``.

    Raises ``ValueError`` naming ``name`` (the argument that has ``n`` rows) when ``n`` is not a multiple of ``B``.
    """
    if n % h.shape[0]:
        raise ValueError(f"{name} must have a multiple of {h.shape[0]} rows, got {n}")
    return h.repeat_interleave(n // h.shape[0], dim=0) if n != h.shape[0] else h


# ---------------------------------------------------------------------------------------------------------
# Time and memory
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Measurement:
    """Result of :func:`~ebmlib.utils.measure`.

    Attributes
    ----------
    seconds
        Median wall-clock seconds per call.
    peak_bytes
        Peak of the memory held by tensors during one call, above the level before the call. On CUDA this is
        ``torch.cuda.max_memory_allocated``; on the CPU it is replayed from the allocation events that
        ``torch.profiler`` records with ``profile_memory=True``. Both count tensor storage only (no
        allocator caching, no Python objects), so CPU and GPU numbers are comparable.
    device
        The device that was measured.
    """

    seconds: float
    peak_bytes: int
    device: str


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _cpu_peak_tensor_bytes(fn: Callable[[], Any]) -> int:
    """Peak tensor memory of one call of ``fn`` on the CPU, from the profiler's allocation events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # Each "[memory]" event is one allocation (nbytes > 0) or free (nbytes < 0); replaying them in time
    # order gives the live tensor memory, whose maximum is the peak.
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def measure(fn: Callable[[], Any], device: torch.device | str = "cpu", *, repeats: int = 3,
            warmup: int = 1) -> Measurement:
    """Time ``fn()`` and record its peak tensor memory on ``device``.

    Parameters
    ----------
    fn
        A callable without arguments (wrap the work in a closure or :func:`functools.partial`).
    device
        Where ``fn`` does its work; CUDA/MPS work is synchronised before the clock stops.
    repeats
        Timed calls; the median is reported.
    warmup
        Untimed calls first (kernel selection, allocator warm-up).

    Notes
    -----
    The timed calls run without instrumentation; on the CPU one extra call under ``torch.profiler``
    measures memory. Memory is not measured on MPS (``peak_bytes`` is 0 there).
    """
    if not callable(fn):
        raise ValueError(f"fn must be callable without arguments, got {type(fn).__name__}")
    device = check_device(device)
    check_int(repeats, "repeats", minimum=1)
    check_int(warmup, "warmup", minimum=0)
    for _ in range(warmup):
        fn()
    _synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - baseline
    elif device.type == "cpu":
        peak = _cpu_peak_tensor_bytes(fn)
    else:
        peak = 0
    return Measurement(seconds=statistics.median(times), peak_bytes=max(int(peak), 0), device=str(device))


# ---------------------------------------------------------------------------------------------------------
# Densities on a 2D grid (exact normalisation of 2D energies)
# ---------------------------------------------------------------------------------------------------------
def grid_2d(
    lim: float, n: int, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, float]:
    """Centres of an ``n × n`` grid of square cells covering ``[-lim, lim]²``.

    Returns
    -------
    points, cell_area
        ``points`` has shape ``(n * n, 2)`` in row-major order: ``points.view(n, n, 2)[i, j]`` is
        ``(x_j, y_i)``, so ``values.view(n, n)`` can be passed to ``imshow(origin="lower")`` directly.
    """
    check_positive(lim, "lim")
    check_int(n, "n", minimum=2)
    check_float_dtype(dtype)
    width = 2 * lim / n
    centres = torch.linspace(-lim + width / 2, lim - width / 2, n, device=device, dtype=dtype)
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1), width**2


@torch.no_grad()
def grid_log_density(energy_fn: EnergyFn, lim: float, n: int, *, batch_size: int = 65536) -> Tensor:
    r"""Normalised log-density of ``p(x) ∝ exp(-E(x))`` on the ``n × n`` grid of :func:`~ebmlib.utils.grid_2d`.

    The normaliser is the Riemann sum :math:`Z \approx \sum_k e^{-E(x_k)} \Delta` over cell centres
    :math:`x_k` with cell area :math:`\Delta`, i.e. the density is that of ``p`` restricted to the square
    ``[-lim, lim]²``; for a smooth energy and a fine grid this is exact up to the mass outside the square.

    Parameters
    ----------
    energy_fn
        2D energy, ``(B, 2) -> (B,)``. Its device is taken from its parameters when it is a module.
    lim, n
        Grid half-width and cells per side.
    batch_size
        Points evaluated per forward pass.

    Returns
    -------
    Tensor
        Shape ``(n, n)``, ``log p`` at the cell centres (rows = y, columns = x), with
        ``exp(out).sum() * cell_area == 1``.
    """
    check_int(batch_size, "batch_size", minimum=1)
    params = list(energy_fn.parameters()) if isinstance(energy_fn, torch.nn.Module) else []
    device = params[0].device if params else None
    dtype = params[0].dtype if params else torch.float32
    points, area = grid_2d(lim, n, device=device, dtype=dtype)
    neg_energy = torch.cat([-energy_fn(chunk) for chunk in points.split(batch_size)])
    check_energy_output(neg_energy, points.shape[0], "energy_fn")
    log_p = neg_energy - torch.logsumexp(neg_energy, 0) - math.log(area)
    return log_p.view(n, n)


def describe_hardware(device: torch.device | str | None = None) -> str:
    """One line naming the device results were measured on, e.g. ``"CPU (2 cores), torch 2.13.0"``."""
    device = get_device() if device is None else check_device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    elif device.type == "mps":
        name = "Apple MPS"
    else:
        name = f"CPU ({os.cpu_count()} cores)"
    return f"{name}, torch {torch.__version__.split('+')[0]}"


def read_verified(path: Path, expected: str, *, argument: str = "expected_sha256") -> bytes:
    """The bytes of ``path`` after checking their SHA-256 against ``expected`` (hex, any case).

    The one checksum check behind every loader of downloaded data (Citeseer, Adult, MNIST).

    Raises
    ------
    ValueError
        Naming ``argument`` when the digest differs, so a corrupted or different file never loads silently.
    """
    raw = Path(path).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != expected.strip().lower():
        raise ValueError(f"{path}: SHA-256 {digest} does not match {argument} {expected}")
    return raw
