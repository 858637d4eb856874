"""Device and dtype following, checked without a GPU, and host reads that must not grow with the number of steps.

Every public sampler and loss (the battery's registry, tests/test_battery.py) and every public metric (the
survey's specs, tests/test_bad_input.py) is called on CPU inputs while torch's default device is ``meta``: a
tensor the library creates without ``device=`` from its input lands on ``meta``, and combining it with the
CPU input raises (or leaves a ``meta`` output), so the test fails just as a GPU run would when a tensor is
created on the CPU instead of the input's GPU. The metrics are also called on float32 inputs under a float64
default dtype (the battery does this for samplers and losses), which catches tensors created without
``dtype=``.

Samplers that loop over steps must not read values back to the host once per step (a host-device
synchronisation on a GPU): each is run at two step counts and the reads are counted, as the joint sampler's
test in tests/test_joint.py does. Reads inside C++ (boolean-mask indexing, ``nonzero``) are not counted; the
loops use neither. ``ode_sample`` and ``flow_log_prob`` are left out: torchdiffeq's solvers compare the time
grid (fixed-grid methods) or the error estimate (adaptive ones) on the host at every step.
"""

from __future__ import annotations

import pytest
import torch
from test_bad_input import SPECS
from test_battery import REGISTRY, tensors_of

METRICS = {name: spec for name, spec in SPECS.items() if name.startswith("ebmlib.metrics.")}
# Needs the Inception weights (a download); its inputs are checked before anything is created.
METRICS_WITHOUT_A_VALID_CALL = {"ebmlib.metrics.inception_fid"}
# Statistics of networkx graphs: no tensor input whose device could be followed; computed on the host.
GRAPH_METRICS = {"ebmlib.metrics.graph_mmd", "ebmlib.metrics.degree_histogram", "ebmlib.metrics.clustering_histogram",
                 "ebmlib.metrics.orbit_counts", "ebmlib.metrics.orbit_statistic"}
# Outputs that are not tensors: floats computed by scikit-learn or SDMetrics, an object, a scorecard of floats.
NO_TENSOR_OUTPUT = {"ebmlib.metrics.tstr_auc", "ebmlib.metrics.sdmetrics_quality", "ebmlib.metrics.CodeKernelDensity",
                    "ebmlib.metrics.score_graph_samples"}
ENTRIES = {**{f"battery:{name}": entry.spec for name, entry in REGISTRY.items()},
           **{name: spec for name, spec in METRICS.items()
              if name not in METRICS_WITHOUT_A_VALID_CALL | GRAPH_METRICS}}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _call(spec, *, dtype=torch.float32, default_device=None, default_dtype=None):
    """Build the arguments on the CPU in the normal state, then call under the switched defaults."""
    torch.manual_seed(0)
    with torch.device("cpu"):
        args = spec.make(dtype)
    previous = torch.get_default_dtype()
    try:
        if default_device is not None:
            torch.set_default_device(default_device)
        if default_dtype is not None:
            torch.set_default_dtype(default_dtype)
        return spec.fn(**args)
    finally:
        torch.set_default_device(None)
        torch.set_default_dtype(previous)


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_tensors_are_created_on_the_input_device(name):
    out = _call(ENTRIES[name], default_device="meta")
    tensors = tensors_of(out)
    assert tensors or name in NO_TENSOR_OUTPUT
    assert all(t.device.type == "cpu" for t in tensors), [t.device for t in tensors]


@pytest.mark.parametrize("name", sorted(set(METRICS) - METRICS_WITHOUT_A_VALID_CALL - GRAPH_METRICS - NO_TENSOR_OUTPUT))
def test_metrics_follow_the_input_dtype(name):
    """float32 in gives float32 (or the documented float64 accumulation) out under a float64 default."""
    floats = [t for t in tensors_of(_call(METRICS[name], default_dtype=torch.float64)) if t.is_floating_point()]
    reference = [t for t in tensors_of(_call(METRICS[name])) if t.is_floating_point()]
    assert [t.dtype for t in floats] == [t.dtype for t in reference]


def count_host_reads(monkeypatch) -> list[int]:
    """Count calls that read a tensor's value back to the host (a device synchronisation on a GPU)."""
    calls = [0]
    for name in ("__bool__", "__int__", "__float__", "__index__", "item", "tolist", "cpu", "numpy"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            calls[0] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls


LOOPS = sorted(name for name, entry in REGISTRY.items() if entry.steps)


@pytest.mark.parametrize("name", LOOPS)
def test_host_reads_do_not_grow_with_the_number_of_steps(monkeypatch, name):
    """Validation and the final finiteness check read values once per call, never once per step."""
    entry = REGISTRY[name]
    counts = []
    for steps in (2, 5):
        torch.manual_seed(0)
        args = entry.spec.make(torch.float32)
        args[entry.steps] = steps
        if "record_steps" in args:  # recorded steps must lie within n_steps
            args["record_steps"] = [steps]
        calls = count_host_reads(monkeypatch)
        entry.spec.fn(**args)
        counts.append(calls[0])
        monkeypatch.undo()
    assert counts[0] == counts[1], counts
