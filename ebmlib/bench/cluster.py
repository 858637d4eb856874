"""Where the runs of a sweep train: in this process, or on a Ray cluster, one at a time per GPU or per node, so
that a budget of wall-clock seconds measures a run that had its hardware to itself.

Ray (https://docs.ray.io) does the scheduling: every call becomes a Ray task that asks for resources no other
run can hold at the same time — one GPU when the runs are on CUDA, otherwise every CPU of a node. Ray is an
optional dependency (``pip install 'ebmlib[cluster]'``), imported only when a sweep runs on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import torch
from tqdm.auto import tqdm

from ebmlib.train import progress_disabled
from ebmlib.utils import check_device

BACKENDS: tuple[str, ...] = ("inprocess", "ray")
"""Where :func:`~ebmlib.bench.compare_methods` trains its runs: one after the other in this process, or as Ray
tasks (:func:`~ebmlib.bench.run_calls`)."""


def check_backend(backend: Any, address: Any) -> str:
    """Return ``backend`` if it is one of :data:`~ebmlib.bench.BACKENDS` and ``address`` suits it; raise
    ``ValueError`` naming the argument otherwise. ``address`` (a Ray cluster's address, e.g. ``"10.0.0.1:6379"``
    or ``"auto"``) is only meaningful with ``backend="ray"``."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise ValueError(f"address must be a Ray cluster's address (e.g. 'host:6379') or None, got {address!r}")
    if address is not None and backend != "ray":
        raise ValueError(f"address is a Ray cluster's and needs backend='ray', got backend={backend!r}")
    return backend


def _import_ray() -> ModuleType:
    try:
        import ray
    except ImportError as error:
        raise ImportError("backend='ray' needs Ray: pip install 'ebmlib[cluster]'") from error
    return ray


def _exclusive_resources(ray: ModuleType, device: torch.device) -> dict[str, float]:
    """The Ray resources of one run that no other run can share.

    A CUDA run holds one GPU (``num_gpus=1``). Any other run holds as many CPUs as the largest live node has:
    two such requests never fit on one node, so every node trains at most one run, with all its cores; a node
    with fewer CPUs than the largest trains none (a cluster of equal nodes, e.g. a SLURM allocation, uses them
    all).
    """
    if device.type == "cuda":
        return {"num_gpus": 1}
    cpus = max((node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node["Alive"]), default=0.0)
    if cpus < 1:
        raise RuntimeError("the Ray cluster has no node with a CPU to train on")
    return {"num_cpus": cpus}


def _call(fn: Callable[..., Any], shared: Any, args: tuple[Any, ...]) -> Any:
    """One call in a Ray worker, with torch on as many threads as the CPUs the task holds (a worker process
    outlives its tasks and torch reads ``OMP_NUM_THREADS`` only once, so the count is set for every task)."""
    import ray

    torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
    return fn(shared, *args)


def _wait_all(ray: ModuleType, refs: list[Any], desc: str, progress: bool) -> None:
    """Wait until every task has ended, finished or failed, so that one failed run stops no other. An interrupt
    cancels the tasks still queued or running: none keeps a node busy for a sweep that was stopped."""
    pending = list(refs)
    with tqdm(total=len(refs), desc=desc, disable=progress_disabled(progress)) as bar:
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                bar.update(len(done))
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise


def run_calls(fn: Callable[..., Any], shared: Any, calls: Sequence[tuple[Any, ...]], *, backend: str = "inprocess",
              address: str | None = None, device: torch.device | str = "cpu", desc: str = "",
              progress: bool = True) -> list[Any]:
    """``[fn(shared, *args) for args in calls]``, one call after the other in this process or as Ray tasks.

    On Ray, every call holds resources that no other call can hold at the same time: a GPU when ``device`` is
    CUDA, else every CPU of a node (as many as the largest node has, so that a node runs one call at a time, with
    all its cores; nodes with fewer CPUs get none).

    Parameters
    ----------
    fn
        A module-level function (Ray workers import it by name, so they need the package installed).
    shared
        The argument every call shares (a task with its data): sent to Ray's object store once.
    calls
        The remaining arguments of each call.
    backend
        One of :data:`~ebmlib.bench.BACKENDS`: ``"inprocess"`` or ``"ray"`` (``pip install 'ebmlib[cluster]'``).
    address
        The Ray cluster to join, as ``ray.init`` takes it: ``None`` joins the cluster that ``RAY_ADDRESS`` or
        a ``ray start`` on this machine names, else starts a local one. Unused when Ray is already initialised in
        this process.
    device
        Where the calls compute (``"cuda"``, ``"cpu"``, a :class:`torch.device`).
    desc, progress
        A progress bar over the calls.

    Returns
    -------
    list
        The calls' results, in the order of ``calls``. On Ray, a call that failed (an error, or its worker died)
        is not retried: it raises here once every other call has ended.
    """
    backend = check_backend(backend, address)
    if not callable(fn):
        raise ValueError(f"fn must be callable, got {fn!r}")
    if isinstance(calls, str) or not isinstance(calls, Sequence):
        raise ValueError(f"calls must be a sequence of argument tuples, got {calls!r}")
    device = check_device(device)
    if backend == "inprocess":
        return [fn(shared, *args) for args in tqdm(calls, desc=desc, disable=progress_disabled(progress))]
    if not calls:
        return []
    ray = _import_ray()
    if not ray.is_initialized():
        ray.init(address=address)
    # No retry: a run whose worker died starts again from its seed when the sweep is run again.
    remote = ray.remote(_call).options(max_retries=0, **_exclusive_resources(ray, device))
    shared_ref = ray.put(shared)
    refs = [remote.remote(fn, shared_ref, tuple(args)) for args in calls]
    _wait_all(ray, refs, desc, progress)
    return ray.get(refs)
