"""The bad-input survey: every public callable of ``ebmlib``, every argument corrupted in the ways that apply
(NaN, inf, wrong number of dimensions, wrong trailing size, wrong dtype, non-binary where binary is required,
zero or negative counts and step sizes, wrong type), must raise a ``ValueError`` whose message names the
argument.

The public samplers and losses are surveyed by tests/test_battery.py from its registry; :data:`SPECS` covers
every other public function, class and public method (:func:`public_callables` lists them), and
:data:`EXCLUDED` names the few left out and why. A public callable with parameters and neither a spec nor an
exclusion fails :func:`test_survey_covers_every_public_callable`.

Two kinds of callables check only metadata (shapes, dtypes, Python numbers), never values: the kernels that
samplers call once per step, and the forward passes of energies and flows (``forward``, ``log_prob``,
``inverse``), which samplers evaluate once per step too. Reading a value back would synchronise host and device
every step; NaN reaching them is caught by the calling sampler's deferred finiteness check instead. Their specs
list no value corruptions.

``python tests/test_bad_input.py`` prints the count of corrupted calls and every call not answered.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import networkx as nx
import pandas as pd
import pytest
import torch
from corruption import Spec, corrupted_calls, outcome

import ebmlib.data as D
import ebmlib.flows as F
import ebmlib.losses as L
import ebmlib.metrics as M
import ebmlib.nets as NN
import ebmlib.samplers as S
import ebmlib.train as T
import ebmlib.utils as U
from ebmlib import bench, ledger, plotting, report, scale

MODULES = ("utils", "data", "nets", "flows", "samplers", "losses", "metrics", "train", "ledger", "report",
           "plotting", "bench", "scale")
COUNT = "zero negative frac bool"
NONNEG = "negative frac bool"
STEP = "zero negative nan inf str"
PROB = "zero above1 negative nan str"
EFN = "efn_nan efn_shape"
SEQ = "seq1 empty seqstr"
META = "ndim cols int list"  # metadata-only callables: shape, dtype and type corruptions
TMP = Path(tempfile.gettempdir()) / f"ebmlib-bad-input-{os.getpid()}"


def public_callables() -> dict[str, list[str]]:
    """``"ebmlib.<module>.<name>[.<method>]"`` -> parameter names, for every public function, class (its
    constructor) and public method (``__call__`` included) defined on a public class."""
    found = {}
    for short in MODULES:
        module = importlib.import_module(f"ebmlib.{short}")
        names = getattr(module, "__all__", None) or [
            n for n, o in vars(module).items()
            if not n.startswith("_") and getattr(o, "__module__", None) == module.__name__]
        for name in names:
            obj = getattr(module, name)
            key = f"ebmlib.{short}.{name}"
            if inspect.isfunction(obj):
                found[key] = list(inspect.signature(obj).parameters)
            elif inspect.isclass(obj):
                try:
                    found[key] = list(inspect.signature(obj).parameters)
                except (TypeError, ValueError):
                    found[key] = []
                for attr, value in vars(obj).items():
                    func = value.__func__ if isinstance(value, (classmethod, staticmethod)) else value
                    if inspect.isfunction(func) and (not attr.startswith("_") or attr == "__call__"):
                        params = [p for p in inspect.signature(func).parameters if p not in ("self", "cls")]
                        found[f"{key}.{attr}"] = params
    return found


# ---------------------------------------------------------------------------------------------------------
# Small valid inputs
# ---------------------------------------------------------------------------------------------------------
def _bits(dt, n=6, d=3):
    return torch.randint(0, 2, (n, d)).to(dt)


def _graphs():
    return [nx.path_graph(3), nx.cycle_graph(4), nx.complete_graph(3)]


def _frame():
    return pd.DataFrame({"a": [0.1, 0.5, 0.3, 0.9], "b": ["x", "y", "x", "y"]})


def _energy_2d(x):
    return (x**2).sum(-1) / 2


def _rows(dt, n=40):
    x = torch.randn(n, 1, dtype=dt)
    c = (x[:, 0] > 0).to(dt)[:, None]  # a learnable target
    return torch.cat([x, c, torch.randint(0, 3, (n, 1)).to(dt)], 1)


def _ensemble():
    return NN.Ensemble([NN.MLPEnergy(2, 4, 1) for _ in range(2)])


def _joint_noise(dt):
    return S.JointNoise(torch.zeros(1, dtype=dt), torch.ones(1, dtype=dt), [torch.full((2,), 0.5, dtype=dt)])


def _joint_energy(z):
    return (z[:, 0] - z[:, 1]) ** 2 + z[:, 2]


def _axes():
    plt.close("all")
    return plt.subplots()[1]


def _run_record():
    from ebmlib.ledger import RunRecord

    return RunRecord(desc="d", step=ledger.OperationCount(10, 2, 8), steps=3, timed_steps=2, seconds=0.1,
                     full_steps=100, repeats=1.0, members=1, threads=1)


def _ledger_file():
    path = _tmp("read.jsonl")
    path.unlink(missing_ok=True)
    ledger.record_run(path, _run_record())
    return path


def _tmp(name):
    TMP.mkdir(exist_ok=True)
    return TMP / name


def _verified_file(dt):
    _tmp("file.bin").write_bytes(b"ebmlib")
    return dict(path=_tmp("file.bin"), expected=hashlib.sha256(b"ebmlib").hexdigest())


# ---------------------------------------------------------------------------------------------------------
# Specs of every public callable that is not a sampler or loss of the battery
# ---------------------------------------------------------------------------------------------------------
SPECS: dict[str, Spec] = {
    # --- utils ---
    "ebmlib.utils.get_device": Spec(U.get_device, lambda dt: dict(prefer="cpu"), {"prefer": "choice"}),
    "ebmlib.utils.seed_everything": Spec(U.seed_everything, lambda dt: dict(seed=3),
                                         {"seed": "negative frac bool str"}),
    "ebmlib.utils.energy_and_grad": Spec(U.energy_and_grad, lambda dt: dict(energy_fn=_energy_2d,
                                                                             x=torch.randn(4, 2, dtype=dt)),
                                         {"energy_fn": "efn_shape", "x": "int list"}),
    "ebmlib.utils.measure": Spec(U.measure, lambda dt: dict(fn=lambda: None, device="cpu", repeats=1, warmup=0),
                                 {"fn": "notcallable", "device": "choice", "repeats": COUNT, "warmup": NONNEG}),
    "ebmlib.utils.grid_2d": Spec(U.grid_2d, lambda dt: dict(lim=2.0, n=4, dtype=dt),
                                 {"lim": STEP, "n": COUNT, "dtype": "intdtype"}),
    "ebmlib.utils.grid_log_density": Spec(U.grid_log_density, lambda dt: dict(energy_fn=_energy_2d, lim=2.0, n=4,
                                                                              batch_size=5),
                                          {"energy_fn": EFN, "lim": STEP, "n": COUNT, "batch_size": COUNT}),
    "ebmlib.utils.describe_hardware": Spec(U.describe_hardware, lambda dt: dict(device="cpu"), {"device": "choice"}),
    "ebmlib.utils.read_verified": Spec(U.read_verified, _verified_file, {"expected": "choice"},
                                       names={"expected": "expected_sha256"}),
    # --- data: toys, codes, one-hot blocks ---
    "ebmlib.data.sample_toy": Spec(D.sample_toy, lambda dt: dict(name="moons", n=5, dtype=dt),
                                   {"name": "choice", "n": COUNT, "dtype": "intdtype"}),
    "ebmlib.data.toy_mode_centres": Spec(D.toy_mode_centres, lambda dt: dict(name="8gaussians", dtype=dt),
                                         {"name": "choice", "dtype": "intdtype"}),
    "ebmlib.data.sample_toy_mixture": Spec(D.sample_toy_mixture, lambda dt: dict(name="8gaussians", n=5, dtype=dt),
                                           {"name": "choice", "n": COUNT, "dtype": "intdtype"}),
    "ebmlib.data.toy_log_prob": Spec(D.toy_log_prob, lambda dt: dict(name="8gaussians", x=torch.randn(5, 2, dtype=dt)),
                                     {"name": "choice", "x": "nan inf ndim flat cols int list"}),
    "ebmlib.data.bit_weights": Spec(D.bit_weights, lambda dt: dict(d=3), {"d": COUNT + " huge"}),
    "ebmlib.data.all_binary_states": Spec(D.all_binary_states, lambda dt: dict(d=3, dtype=dt),
                                          {"d": COUNT + " huge"}),
    "ebmlib.data.GrayCode": Spec(lambda f_scale, n_bits: D.GrayCode(f_scale, n_bits), lambda dt: dict(f_scale=2.0,
                                                                                                    n_bits=4),
                                 {"f_scale": STEP, "n_bits": COUNT + " huge"}),
    "ebmlib.data.GrayCode.from_samples": Spec(D.GrayCode.from_samples,
                                              lambda dt: dict(points=torch.randn(5, 2, dtype=dt), n_bits=4),
                                              {"points": "nan inf ndim cols int list", "n_bits": COUNT}),
    "ebmlib.data.GrayCode.encode": Spec(lambda points, dtype: D.GrayCode(4.0, 4).encode(points, dtype=dtype),
                                        lambda dt: dict(points=torch.rand(5, 2, dtype=dt), dtype=dt),
                                        {"points": "nan inf ndim cols int big list", "dtype": "intdtype"}),
    "ebmlib.data.GrayCode.decode": Spec(lambda bits, dtype: D.GrayCode(4.0, 4).decode(bits, dtype=dtype),
                                        lambda dt: dict(bits=_bits(dt, 5, 8), dtype=dt),
                                        {"bits": "nan ndim cols binary list", "dtype": "intdtype"}),
    "ebmlib.data.BaseQCode": Spec(lambda f_scale, base, n_digits: D.BaseQCode(f_scale, base, n_digits),
                                  lambda dt: dict(f_scale=2.0, base=3, n_digits=4),
                                  {"f_scale": STEP, "base": COUNT, "n_digits": COUNT + " huge"}),
    "ebmlib.data.BaseQCode.from_samples": Spec(D.BaseQCode.from_samples,
                                               lambda dt: dict(points=torch.randn(5, 2, dtype=dt), base=3, n_digits=4),
                                               {"points": "nan inf ndim cols int list", "base": COUNT,
                                                "n_digits": COUNT}),
    "ebmlib.data.BaseQCode.encode": Spec(lambda points, dtype: D.BaseQCode(4.0, 3, 4).encode(points, dtype=dtype),
                                         lambda dt: dict(points=torch.rand(5, 2, dtype=dt), dtype=dt),
                                         {"points": "nan inf ndim cols int big list", "dtype": "intdtype"}),
    "ebmlib.data.BaseQCode.decode": Spec(lambda codes, dtype: D.BaseQCode(4.0, 3, 4).decode(codes, dtype=dtype),
                                         lambda dt: dict(codes=torch.randint(0, 3, (5, 8)).to(dt), dtype=dt),
                                         {"codes": "nan ndim cols big codefrac neg list", "dtype": "intdtype"}),
    "ebmlib.data.block_index": Spec(D.block_index, lambda dt: dict(block_sizes=(2, 3)), {"block_sizes": SEQ}),
    "ebmlib.data.block_sums": Spec(D.block_sums, lambda dt: dict(values=torch.rand(4, 5, dtype=dt),
                                                                 index=D.block_index((2, 3)), n_blocks=2),
                                   {"values": "ndim cols list", "index": "float rows list", "n_blocks": COUNT}),
    "ebmlib.data.labels_to_one_hot": Spec(D.labels_to_one_hot, lambda dt: dict(labels=torch.tensor([[0, 2], [1, 1]]),
                                                                               block_sizes=(2, 3), dtype=dt),
                                          {"labels": "ndim cols float big neg list", "block_sizes": SEQ,
                                           "dtype": "intdtype"}),
    "ebmlib.data.one_hot_to_labels": Spec(D.one_hot_to_labels, lambda dt: dict(
        y=D.labels_to_one_hot(torch.tensor([[0, 2]]), (2, 3), dtype=dt), block_sizes=(2, 3)),
        {"y": "ndim cols list", "block_sizes": SEQ}),
    "ebmlib.data.all_configurations": Spec(D.all_configurations, lambda dt: dict(block_sizes=(2, 3)),
                                           {"block_sizes": SEQ}),
    "ebmlib.data.free_columns": Spec(D.free_columns, lambda dt: dict(clamp=torch.tensor([True, False]),
                                                                     index=D.block_index((2, 3)), n_blocks=2, batch=4,
                                                                     device="cpu"),
                                     {"clamp": "rows float list", "index": "float list", "n_blocks": COUNT,
                                      "batch": COUNT}),
    # --- data: Ising, graphs ---
    "ebmlib.data.IsingLattice": Spec(lambda side, sigma, periodic, bias: D.IsingLattice(side, sigma, periodic=periodic,
                                                                                       bias=bias),
                                     lambda dt: dict(side=3, sigma=0.2, periodic=True, bias=0.1),
                                     {"side": COUNT, "sigma": "nan inf str", "periodic": "str", "bias": "nan inf str"}),
    "ebmlib.data.IsingLattice.energy": Spec(lambda x: D.IsingLattice(3, 0.2).energy(x),
                                            lambda dt: dict(x=_bits(dt, 4, 9)),
                                            {"x": "nan ndim cols int binary list"}),
    "ebmlib.data.IsingLattice.__call__": Spec(lambda x: D.IsingLattice(3, 0.2)(x), lambda dt: dict(x=_bits(dt, 4, 9)),
                                              {"x": "nan ndim cols int binary list"}),
    "ebmlib.data.IsingLattice.exact_log_probs": Spec(lambda dtype: D.IsingLattice(3, 0.2).exact_log_probs(dtype=dtype),
                                                     lambda dt: dict(dtype=dt), {"dtype": "intdtype"}),
    "ebmlib.data.IsingLattice.sample": Spec(lambda n, n_sweeps, dtype: D.IsingLattice(3, 0.2).sample(n, n_sweeps,
                                                                                                   dtype=dtype),
                                            lambda dt: dict(n=4, n_sweeps=1, dtype=dt),
                                            {"n": COUNT, "n_sweeps": NONNEG, "dtype": "intdtype"}),
    "ebmlib.data.citation_like_graph": Spec(D.citation_like_graph,
                                            lambda dt: dict(n_nodes=40, seed=0, link_probs=(0.5, 0.5), triad_prob=0.3),
                                            {"n_nodes": COUNT, "seed": "negative frac str",
                                             "link_probs": "empty seqstr", "triad_prob": "negative above1 nan str"}),
    "ebmlib.data.ego_graphs": Spec(D.ego_graphs, lambda dt: dict(n_graphs=2, min_nodes=3, max_nodes=8, seed=0,
                                                                 n_nodes=80),
                                   {"n_graphs": COUNT, "min_nodes": COUNT, "max_nodes": COUNT,
                                    "seed": "negative frac str", "n_nodes": COUNT}),
    "ebmlib.data.num_pairs": Spec(D.num_pairs, lambda dt: dict(max_nodes=4), {"max_nodes": COUNT}),
    "ebmlib.data.max_nodes_of_bits": Spec(D.max_nodes_of_bits, lambda dt: dict(x=_bits(dt, 2, 6)), {"x": "cols list"}),
    "ebmlib.data.graphs_to_bits": Spec(D.graphs_to_bits, lambda dt: dict(graphs=_graphs(), max_nodes=4),
                                       {"graphs": "empty seqstr", "max_nodes": COUNT}),
    "ebmlib.data.bits_to_adjacency": Spec(D.bits_to_adjacency, lambda dt: dict(bits=_bits(dt, 2, 6), max_nodes=4),
                                          {"bits": "ndim cols list", "max_nodes": COUNT}),
    "ebmlib.data.bits_to_graphs": Spec(D.bits_to_graphs, lambda dt: dict(bits=_bits(dt, 2, 6), max_nodes=4),
                                       {"bits": "nan ndim cols binary list", "max_nodes": COUNT}),
    "ebmlib.data.node_pair_mask": Spec(D.node_pair_mask, lambda dt: dict(node_counts=torch.tensor([2, 4]), max_nodes=4),
                                       {"node_counts": "ndim float big list", "max_nodes": COUNT}),
    "ebmlib.data.sample_node_counts": Spec(D.sample_node_counts, lambda dt: dict(graphs=_graphs(), n_samples=3),
                                           {"graphs": "empty seqstr", "n_samples": COUNT}),
    # --- data: images ---
    "ebmlib.data.dequantise": Spec(D.dequantise, lambda dt: dict(levels=torch.randint(0, 4, (3, 5)), n_levels=4),
                                   {"levels": "scalar big neg list", "n_levels": COUNT}),
    "ebmlib.data.preprocess": Spec(D.preprocess, lambda dt: dict(levels=torch.randint(0, 4, (3, 5)), n_levels=4),
                                   {"levels": "scalar big neg list", "n_levels": COUNT}),
    "ebmlib.data.logit_transform": Spec(D.logit_transform, lambda dt: dict(x=torch.rand(3, 5, dtype=dt), alpha=1e-6),
                                        {"x": "nan inf scalar int big neg list", "alpha": PROB}),
    "ebmlib.data.inverse_logit_transform": Spec(D.inverse_logit_transform,
                                                lambda dt: dict(x_bar=torch.randn(3, 5, dtype=dt), alpha=1e-6),
                                                {"x_bar": "nan inf scalar int list", "alpha": PROB}),
    "ebmlib.data.load_digits_levels": Spec(D.load_digits_levels, lambda dt: dict(test_fraction=0.2, seed=0),
                                           {"test_fraction": PROB, "seed": "negative frac str"}),
    "ebmlib.data.render_ellipses": Spec(D.render_ellipses, lambda dt: dict(
        scale=torch.tensor([0, 1]), orientation=torch.tensor([0, 2]), pos_x=torch.tensor([3, 4]),
        pos_y=torch.tensor([5, 6]), size=8, supersample=1),
        {"scale": "rows float big neg list", "orientation": "rows float big list", "pos_x": "rows float big list",
         "pos_y": "rows float big list", "size": COUNT, "supersample": COUNT}),
    "ebmlib.data.ellipse_dataset": Spec(D.ellipse_dataset, lambda dt: dict(n=3, size=8, n_bins=16),
                                        {"n": COUNT, "size": COUNT, "n_bins": COUNT}),
    "ebmlib.data.remote_file": Spec(D.remote_file, lambda dt: dict(dataset="adult", name="adult.data"),
                                    {"dataset": "choice", "name": "choice"}),
    # only corruptions caught before any download: the valid call fetches from the network
    "ebmlib.data.fetch_dataset": Spec(D.fetch_dataset, lambda dt: dict(dataset="adult", root=_tmp("cache")),
                                      {"dataset": "choice"}),
    "ebmlib.data.read_idx": Spec(D.read_idx, lambda dt: dict(data=bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9])),
                                 {"data": "bytes str"}),
    "ebmlib.data.read_cifar_records": Spec(D.read_cifar_records, lambda dt: dict(data=bytes(3073)),
                                           {"data": "bytes str"}),
    # --- data: tables, mixtures ---
    "ebmlib.data.sample_rings": Spec(D.sample_rings, lambda dt: dict(n=5, dtype=dt), {"n": COUNT, "dtype": "intdtype"}),
    "ebmlib.data.ring_plot_coordinates": Spec(D.ring_plot_coordinates,
                                              lambda dt: dict(rows=D.sample_rings(5, dtype=dt)),
                                              {"rows": "nan inf ndim cols int list"}),
    "ebmlib.data.MixedTable.column": Spec(lambda name: D.table_from_frame(_frame(), ["a"], ["b"]).column(name),
                                          lambda dt: dict(name="a"), {"name": "choice"}),
    "ebmlib.data.table_from_frame": Spec(D.table_from_frame, lambda dt: dict(frame=_frame(), numeric=["a"],
                                                                             categorical=["b"]),
                                         {"frame": "object", "numeric": "seqstr", "categorical": "seqstr"}),
    "ebmlib.data.split_rows": Spec(D.split_rows, lambda dt: dict(rows=torch.randn(10, 3, dtype=dt), test_fraction=0.3,
                                                                 seed=0),
                                   {"rows": "ndim scalar list", "test_fraction": PROB, "seed": "negative frac str"}),
    "ebmlib.data.GaussianMixture": Spec(D.GaussianMixture, lambda dt: dict(
        means=torch.randn(2, 3, dtype=dt), stds=torch.ones(2, dtype=dt), weights=torch.tensor([0.3, 0.7], dtype=dt)),
        {"means": "nan inf ndim int list", "stds": "nan neg rows int list", "weights": "nan neg rows int list"}),
    "ebmlib.data.GaussianMixture.sample": Spec(lambda n: D.paper_mixture("two_modes").sample(n), lambda dt: dict(n=3),
                                               {"n": COUNT}),
    "ebmlib.data.GaussianMixture.log_prob": Spec(lambda x: D.paper_mixture("two_modes").log_prob(x),
                                                 lambda dt: dict(x=torch.randn(4, 2, dtype=dt)),
                                                 {"x": "nan inf ndim flat cols int list"}),
    "ebmlib.data.GaussianMixture.energy": Spec(lambda x: D.paper_mixture("two_modes").energy(x),
                                               lambda dt: dict(x=torch.randn(4, 2, dtype=dt)),
                                               {"x": "nan inf ndim flat cols int list"}),
    "ebmlib.data.paper_mixture": Spec(D.paper_mixture, lambda dt: dict(name="high_dim", dim=4, mean_scaling="sqrt_d",
                                                                       dtype=dt),
                                      {"name": "choice", "dim": COUNT, "mean_scaling": "choice", "dtype": "intdtype"}),
    "ebmlib.data.Rings": Spec(D.Rings, lambda dt: dict(radii=(1.0, 2.0), std=0.1),
                              {"radii": "empty seqstr seqneg", "std": STEP}),
    "ebmlib.data.Rings.sample": Spec(lambda n: D.Rings().sample(n), lambda dt: dict(n=3), {"n": COUNT}),
    "ebmlib.data.Rings.log_prob": Spec(lambda x: D.Rings().log_prob(x), lambda dt: dict(x=torch.randn(4, 2, dtype=dt)),
                                       {"x": "nan inf ndim flat cols int list"}),
}
SPECS.update({
    # --- nets (forward passes: metadata only) ---
    "ebmlib.nets.Swish": Spec(NN.Swish, lambda dt: dict(learnable_beta=True), {"learnable_beta": "str"}),
    "ebmlib.nets.Swish.forward": Spec(lambda x: NN.Swish()(x), lambda dt: dict(x=torch.randn(3, 2, dtype=dt)),
                                      {"x": "int list"}),
    "ebmlib.nets.make_activation": Spec(NN.make_activation, lambda dt: dict(name="silu"), {"name": "choice"}),
    "ebmlib.nets.MLP": Spec(NN.MLP, lambda dt: dict(in_dim=2, out_dim=1, hidden_dims=(4,), activation="silu"),
                            {"in_dim": COUNT, "out_dim": COUNT, "hidden_dims": "seqstr seqneg",
                             "activation": "choice"}),
    "ebmlib.nets.MLP.forward": Spec(lambda x: NN.MLP(2, 1, (4,))(x), lambda dt: dict(x=torch.randn(3, 2)),
                                    {"x": "cols int list"}),
    "ebmlib.nets.layer_stack": Spec(NN.layer_stack, lambda dt: dict(widths=[2, 4, 1], layer=torch.nn.Linear,
                                                                 activation=torch.nn.SiLU),
                                    {"widths": "empty seqstr seqneg", "layer": "notcallable",
                                     "activation": "notcallable"}),
    "ebmlib.nets.MLPEnergy": Spec(NN.MLPEnergy, lambda dt: dict(in_dim=2, hidden=4, depth=1, activation="silu"),
                                  {"in_dim": COUNT, "hidden": COUNT, "depth": NONNEG, "activation": "choice"}),
    # MLPEnergy, IsingEnergy, GraphEnergy and MixedEnergy accept integer states (cast to their parameters' dtype)
    "ebmlib.nets.MLPEnergy.forward": Spec(lambda x: NN.MLPEnergy(2, 4, 1)(x), lambda dt: dict(x=torch.randn(3, 2)),
                                          {"x": "cols scalar list"}),
    "ebmlib.nets.MLPEnergy.first_layer": Spec(lambda x: NN.MLPEnergy(2, 4, 1).first_layer(x),
                                              lambda dt: dict(x=torch.randn(3, 2)), {"x": "cols scalar list"}),
    "ebmlib.nets.MLPEnergy.grad_and_laplacian": Spec(lambda x: NN.MLPEnergy(2, 4, 1).grad_and_laplacian(x),
                                                     lambda dt: dict(x=torch.randn(3, 2)), {"x": "ndim cols list"}),
    "ebmlib.nets.MLPEnergy.head": Spec(lambda h: NN.MLPEnergy(2, 4, 1).head(h),
                                       lambda dt: dict(h=torch.randn(3, 4)), {"h": "ndim flat int list"}),
    "ebmlib.nets.Ensemble": Spec(NN.Ensemble, lambda dt: dict(members=[NN.MLPEnergy(2, 4, 1) for _ in range(2)]),
                                 {"members": "empty object seqstr"}),
    "ebmlib.nets.Ensemble.forward": Spec(lambda x: _ensemble()(x), lambda dt: dict(x=torch.randn(4, 2)),
                                         {"x": "rows cols scalar list"}),
    "ebmlib.nets.Ensemble.member": Spec(lambda k: _ensemble().member(k), lambda dt: dict(k=1),
                                        {"k": "negative huge frac str"}),
    "ebmlib.nets.Ensemble.stacked": Spec(lambda name: _ensemble().stacked(name), lambda dt: dict(name="mlp.net.0.bias"),
                                         {"name": "choice none"}),
    "ebmlib.nets.Ensemble.clip_grad_norm_": Spec(lambda max_norm: _ensemble().clip_grad_norm_(max_norm),
                                                 lambda dt: dict(max_norm=1.0), {"max_norm": STEP}),
    "ebmlib.train.MemberStreams": Spec(T.MemberStreams, lambda dt: dict(seeds=[0, 1], device="cpu"),
                                       {"seeds": "empty seqneg seqstr", "device": "choice"}),
    "ebmlib.train.MemberStreams.generator": Spec(lambda k, device: T.MemberStreams([0, 1]).generator(k, device),
                                                 lambda dt: dict(k=1, device=torch.device("cpu")),
                                                 {"device": "object"}),
    "ebmlib.train.MemberStreams.use": Spec(lambda k: T.MemberStreams([0, 1]).use(k).__enter__(), lambda dt: dict(k=1),
                                           {"k": "negative huge frac str"}),
    "ebmlib.train.MemberStreams.build": Spec(lambda make: T.MemberStreams([0, 1]).build(make),
                                             lambda dt: dict(make=lambda: NN.MLPEnergy(2, 4, 1)),
                                             {"make": "notcallable"}),
    "ebmlib.train.MemberStreams.batches": Spec(lambda next_batches: T.MemberStreams([0, 1]).batches(next_batches),
                                               lambda dt: dict(next_batches=[lambda: torch.zeros(2, 2)] * 2),
                                               {"next_batches": "empty object"}),
    "ebmlib.train.MemberStreams.loss": Spec(lambda loss_fn: T.MemberStreams([0, 1]).loss(loss_fn),
                                            lambda dt: dict(loss_fn=L.ratio_matching), {"loss_fn": "notcallable"}),
    "ebmlib.train.MemberStreams.load_state_dict": Spec(lambda state: T.MemberStreams([0, 1]).load_state_dict(state),
                                                       lambda dt: dict(state=T.MemberStreams([0, 1]).state_dict()),
                                                       {"state": "object none"}),
    "ebmlib.train.MemberBatches": Spec(T.MemberBatches, lambda dt: dict(
        streams=T.MemberStreams([0, 1]), next_batches=[lambda: torch.zeros(2, 2)] * 2),
        {"next_batches": "empty object"}),
    "ebmlib.train.MemberLoss": Spec(T.MemberLoss, lambda dt: dict(streams=T.MemberStreams([0, 1]),
                                                                  loss_fn=L.ratio_matching),
                                    {"loss_fn": "notcallable"}),
    "ebmlib.train.MemberLoss.__call__": Spec(lambda batch: T.MemberStreams([0, 1]).loss(L.ratio_matching)(
        _ensemble(), batch), lambda dt: dict(batch=_bits(dt, 4, 2)), {"batch": "nan rows cols binary list"},
        names={"batch": "x"}),
    "ebmlib.train.EnsembleAdam": Spec(lambda lr, eps, weight_decay: T.EnsembleAdam(_ensemble(), lr, eps=eps,
                                                                                  weight_decay=weight_decay),
                                      lambda dt: dict(lr=[1e-3, 2e-3], eps=1e-8, weight_decay=0.0),
                                      {"lr": "empty seqneg seqstr", "eps": STEP, "weight_decay": "negative str"}),
    "ebmlib.train.fit_ensemble": Spec(lambda ensemble, n_iters, lr: T.fit_ensemble(
        ensemble, T.MemberStreams([0, 1]), L.ratio_matching, [lambda: _bits(torch.float32, 4, 2)] * 2,
        n_iters=n_iters, lr=lr, progress=False), lambda dt: dict(ensemble=_ensemble(), n_iters=1, lr=1e-3),
        {"ensemble": "object", "n_iters": COUNT, "lr": STEP}),
    "ebmlib.nets.count_parameters": Spec(NN.count_parameters, lambda dt: dict(module=torch.nn.Linear(2, 1)),
                                         {"module": "object"}),
    "ebmlib.nets.toy_energy_net": Spec(NN.toy_energy_net, lambda dt: dict(dim=2, hidden_dims=(4,)),
                                       {"dim": COUNT, "hidden_dims": "seqstr seqneg"}),
    "ebmlib.nets.TiltedEnergy": Spec(NN.TiltedEnergy, lambda dt: dict(net=NN.toy_energy_net(2, (4,)), dim=2,
                                                                      base_std=1.0),
                                     {"net": "object", "dim": COUNT, "base_std": STEP}),
    "ebmlib.nets.TiltedEnergy.forward": Spec(lambda x: NN.TiltedEnergy(NN.toy_energy_net(2, (4,)), 2, 1.0)(x),
                                             lambda dt: dict(x=torch.randn(3, 2)), {"x": META}),
    "ebmlib.nets.TiltedEnergy.base_log_prob": Spec(
        lambda x: NN.TiltedEnergy(NN.toy_energy_net(2, (4,)), 2, 1.0).base_log_prob(x),
        lambda dt: dict(x=torch.randn(3, 2)), {"x": META}),
    "ebmlib.nets.IsingEnergy": Spec(NN.IsingEnergy, lambda dt: dict(dim=4), {"dim": COUNT}),
    "ebmlib.nets.IsingEnergy.forward": Spec(lambda x: NN.IsingEnergy(4)(x),
                                            lambda dt: dict(x=_bits(torch.float32, 3, 4)),
                                            {"x": "ndim cols list"}),
    "ebmlib.nets.GraphEnergy": Spec(NN.GraphEnergy, lambda dt: dict(max_nodes=4, hidden=4, depth=1, activation="silu"),
                                    {"max_nodes": COUNT, "hidden": COUNT, "depth": COUNT, "activation": "choice"}),
    "ebmlib.nets.GraphEnergy.forward": Spec(lambda x: NN.GraphEnergy(4, 4, 1)(x),
                                            lambda dt: dict(x=_bits(torch.float32, 3, 6)), {"x": "ndim cols list"}),
    "ebmlib.nets.conv_features": Spec(NN.conv_features, lambda dt: dict(width=2, out_channels=2),
                                      {"width": COUNT, "out_channels": COUNT}),
    "ebmlib.nets.ConvEnergy": Spec(NN.ConvEnergy, lambda dt: dict(image_size=8, channels=1, nf=2, n_down=1,
                                                                  doubling=False),
                                   {"image_size": COUNT, "channels": COUNT, "nf": COUNT, "n_down": NONNEG,
                                    "doubling": "str"}),
    "ebmlib.nets.ConvEnergy.forward": Spec(lambda x: NN.ConvEnergy(8, 1, nf=2, n_down=1)(x),
                                           lambda dt: dict(x=torch.rand(2, 1, 8, 8)), {"x": META}),
    "ebmlib.nets.FeatureClassifier": Spec(NN.FeatureClassifier, lambda dt: dict(image_size=8, channels=1, n_classes=3,
                                                                                feature_dim=4),
                                          {"image_size": COUNT, "channels": COUNT, "n_classes": COUNT,
                                           "feature_dim": COUNT}),
    "ebmlib.nets.FeatureClassifier.features": Spec(lambda x: NN.FeatureClassifier(8, 1, n_classes=3, feature_dim=4)
                                                   .features(x), lambda dt: dict(x=torch.rand(2, 1, 8, 8)),
                                                   {"x": META}),
    "ebmlib.nets.FeatureClassifier.forward": Spec(lambda x: NN.FeatureClassifier(8, 1, n_classes=3, feature_dim=4)(x),
                                                  lambda dt: dict(x=torch.rand(2, 1, 8, 8)), {"x": META}),
    "ebmlib.nets.MixedEnergy": Spec(NN.MixedEnergy, lambda dt: dict(n_numeric=1, n_classes=(2, 3), emb_dim=2, hidden=4,
                                                                    depth=1),
                                    {"n_numeric": NONNEG, "n_classes": SEQ, "emb_dim": COUNT, "hidden": COUNT,
                                     "depth": NONNEG}),
    "ebmlib.nets.MixedEnergy.forward": Spec(lambda x: NN.MixedEnergy(1, (2, 3), emb_dim=2, hidden=4, depth=1)(x),
                                            lambda dt: dict(x=torch.tensor([[0.5, 1.0, 2.0]])),
                                            {"x": "ndim cols list"}),
    "ebmlib.nets.JointEnergy": Spec(NN.JointEnergy, lambda dt: dict(x_shape=(2,), block_sizes=(2, 3), hidden_dims=(4,),
                                                                    activation="elu"),
                                    {"x_shape": "empty seqstr seqneg", "block_sizes": SEQ,
                                     "hidden_dims": "seqstr seqneg", "activation": "choice"}),
    "ebmlib.nets.JointEnergy.forward": Spec(lambda z: NN.JointEnergy((2,), (2, 3), (4,))(z),
                                            lambda dt: dict(z=torch.rand(3, 7)), {"z": META}),
    "ebmlib.nets.JointEnergy.label_energy": Spec(lambda x, y: NN.JointEnergy((2,), (2, 3), (4,)).label_energy(x)(y),
                                                 lambda dt: dict(x=torch.rand(3, 2), y=torch.rand(6, 5)),
                                                 {"x": META, "y": "ndim cols rows list"}),
    # --- flows (forward passes: metadata only) ---
    "ebmlib.flows.AffineCoupling": Spec(F.AffineCoupling, lambda dt: dict(mask=torch.tensor([1.0, 0.0]),
                                                                          hidden_dims=(4,), max_log_scale=2.0,
                                                                          image_shape=(2, 1, 1)),
                                        {"mask": "ndim scalar binary list", "hidden_dims": "seqstr seqneg",
                                         "max_log_scale": STEP, "image_shape": "seqstr empty seq1 seqneg"}),
    "ebmlib.flows.AffineCoupling.forward": Spec(lambda z: F.AffineCoupling(torch.tensor([1.0, 0.0]), (4,))(z),
                                                lambda dt: dict(z=torch.randn(3, 2)), {"z": META}),
    "ebmlib.flows.AffineCoupling.inverse": Spec(lambda x: F.AffineCoupling(torch.tensor([1.0, 0.0]), (4,)).inverse(x),
                                                lambda dt: dict(x=torch.randn(3, 2)), {"x": META}),
    "ebmlib.flows.RealNVP": Spec(F.RealNVP, lambda dt: dict(dim=2, n_layers=1, hidden_dims=(4,), base_std=1.0),
                                 {"dim": COUNT, "n_layers": COUNT, "hidden_dims": "seqstr seqneg", "base_std": STEP}),
    "ebmlib.flows.RealNVP[image]": Spec(F.RealNVP, lambda dt: dict(dim=8, n_layers=2, hidden_dims=(4,),
                                                                   image_shape=(2, 2, 2)),
                                        {"hidden_dims": "seqstr seqneg", "image_shape": "seqstr empty seq1 seqneg"}),
    "ebmlib.flows.image_masks": Spec(F.image_masks, lambda dt: dict(image_shape=(2, 2, 2), n_layers=2),
                                     {"image_shape": "seqstr empty seqneg", "n_layers": COUNT}),
    **{f"ebmlib.flows.RealNVP.{method}": Spec(lambda x, method=method: getattr(F.RealNVP(2, 1, (4,)), method)(x),
                                              lambda dt: dict(x=torch.randn(3, 2)), {"x": META + " flat"},
                                              names={"x": "z" if method in ("forward", "base_log_prob") else "x"})
       for method in ("base_log_prob", "forward", "inverse", "log_prob")},
    "ebmlib.flows.RealNVP.sample_with_log_prob": Spec(lambda n: F.RealNVP(2, 1, (4,)).sample_with_log_prob(n),
                                                      lambda dt: dict(n=3), {"n": COUNT}),
    "ebmlib.flows.RealNVP.sample": Spec(lambda n: F.RealNVP(2, 1, (4,)).sample(n), lambda dt: dict(n=3), {"n": COUNT}),
    "ebmlib.flows.flow_ml_step": Spec(F.flow_ml_step, lambda dt: _flow_step_args(dt),
                                      {"flow": "object", "optimizer": "object", "x": "nan inf ndim cols int list"}),
    # --- public methods of the samplers' and losses' classes (the classes are in the battery) ---
    "ebmlib.samplers.JointNoise.from_batch": Spec(S.JointNoise.from_batch, lambda dt: dict(
        x=torch.randn(4, 2, dtype=dt), y=D.labels_to_one_hot(torch.tensor([[0], [1], [1], [0]]), (2,), dtype=dt),
        block_sizes=(2,)), {"x": "nan inf ndim flat int list", "y": "ndim cols rows int codefrac list",
                            "block_sizes": SEQ}),
    "ebmlib.samplers.JointNoise.sample_x": Spec(lambda n: _joint_noise(torch.float32).sample_x(n), lambda dt: dict(n=3),
                                                {"n": COUNT}),
    "ebmlib.samplers.JointNoise.sample_y": Spec(lambda n: _joint_noise(torch.float32).sample_y(n), lambda dt: dict(n=3),
                                                {"n": COUNT}),
    "ebmlib.samplers.ReplayBuffer.update": Spec(
        lambda index, states: S.ReplayBuffer(lambda m: torch.zeros(m, 2), 8).update(index, states),
        lambda dt: dict(index=torch.tensor([1, 4]), states=torch.randn(2, 2)),
        {"index": "ndim float rows list", "states": "nan inf ndim cols rows list"}),
    "ebmlib.losses.Perturbation.sample_from": Spec(lambda y, n: L.BernoulliPerturbation(0.2).sample_from(y, n),
                                                   lambda dt: dict(y=_bits(dt), n=2),
                                                   {"y": "nan ndim flat int binary list", "n": COUNT}),
    "ebmlib.losses.BernoulliPerturbation.from_time": Spec(L.BernoulliPerturbation.from_time,
                                                          lambda dt: dict(t=0.1, dim=3), {"t": STEP, "dim": COUNT}),
    **{f"ebmlib.losses.Perturbation.sample_y[{cls}]": Spec(lambda x, make=make: make().sample_y(x),
                                             lambda dt, rows=rows: dict(x=rows(dt)),
                                             {"x": kinds})
       for cls, make, rows, kinds in (
           ("BernoulliPerturbation", lambda: L.BernoulliPerturbation(0.2), _bits, "nan ndim flat int binary list"),
           ("BitFlipPerturbation", lambda: L.BitFlipPerturbation(), _bits, "nan ndim flat int binary list"),
           ("GaussianPerturbation", lambda: L.GaussianPerturbation(0.1), lambda dt: torch.randn(4, 2, dtype=dt),
            "nan inf ndim flat int list"),
           ("NodeSetPerturbation", lambda: L.NodeSetPerturbation(3, 0.2),
            lambda dt: torch.tensor([[1.0, 0, 0, 2], [1, 1, 0, 3]], dtype=dt), "nan ndim cols int binary codebig list"),
           ("HeatPerturbation", lambda: L.HeatPerturbation((3, 2), 0.3),
            lambda dt: torch.tensor([[0.0, 1], [2, 0]], dtype=dt), "nan ndim cols int codebig codefrac list"),
           ("GridPerturbation", lambda: L.GridPerturbation((3, 2)),
            lambda dt: torch.tensor([[0.0, 1], [2, 0]], dtype=dt), "nan ndim cols int codebig codefrac list"),
           ("MixedPerturbation", lambda: L.MixedPerturbation(1, 0.1, L.UniformPerturbation((3, 2))),
            lambda dt: torch.tensor([[0.5, 0, 1], [0.1, 2, 0]], dtype=dt), "nan inf ndim cols int codebig list"),
       )},
    "ebmlib.losses.SelfAdversarialLoss.sample": Spec(
        lambda energy, x0: L.SelfAdversarialLoss("euler", n_steps=2, step_size=0.1).sample(energy, x0),
        lambda dt: dict(energy=_energy_2d, x0=torch.randn(4, 2, dtype=dt)), {"energy": EFN, "x0": "nan inf int list"},
        names={"energy": "energy_fn"}),
    "ebmlib.losses.FlowEBMLoss.sample": Spec(
        lambda energy_fn, n_chains: L.FlowEBMLoss("ula", torch.randn(8, 2), n_chains=4, n_steps=1, step_size=0.1)
        .sample(energy_fn, n_chains), lambda dt: dict(energy_fn=_energy_2d, n_chains=3),
        {"energy_fn": EFN, "n_chains": COUNT + " huge"}),
})


def _flow_step_args(dt):
    flow = F.RealNVP(2, 1, (4,)).to(dt)
    return dict(flow=flow, optimizer=torch.optim.SGD(flow.parameters(), lr=1e-3), x=torch.randn(4, 2, dtype=dt))
SPECS.update({
    # --- metrics ---
    "ebmlib.metrics.hamming_distance": Spec(M.hamming_distance, lambda dt: dict(a=_bits(dt), b=_bits(dt, 4)),
                                            {"a": "nan ndim binary list", "b": "cols binary list"}),
    "ebmlib.metrics.linear_hamming_kernel": Spec(M.linear_hamming_kernel, lambda dt: dict(a=_bits(dt), b=_bits(dt, 4)),
                                                 {"a": "nan ndim binary list", "b": "cols binary list"}),
    "ebmlib.metrics.exp_hamming_kernel": Spec(M.exp_hamming_kernel, lambda dt: dict(a=_bits(dt), b=_bits(dt, 4),
                                                                                    bandwidth=0.1),
                                              {"a": "nan ndim binary list", "b": "cols binary list",
                                               "bandwidth": STEP}),
    "ebmlib.metrics.mmd2": Spec(M.mmd2, lambda dt: dict(x=torch.randn(5, 2, dtype=dt), y=torch.randn(4, 2, dtype=dt),
                                                        kernel=lambda a, b: a @ b.T, chunk_size=2),
                                {"x": "nan inf ndim list", "y": "nan inf cols list", "kernel": "notcallable",
                                 "chunk_size": COUNT}),
    "ebmlib.metrics.mmd_hamming": Spec(M.mmd_hamming, lambda dt: dict(x=_bits(dt), y=_bits(dt, 4), kernel="exp",
                                                                      bandwidth=0.1),
                                       {"x": "nan ndim binary list", "y": "cols binary list", "kernel": "choice",
                                        "bandwidth": STEP}),
    "ebmlib.metrics.empirical_distribution": Spec(M.empirical_distribution, lambda dt: dict(states=_bits(dt), d=3),
                                                  {"states": "nan ndim cols binary list", "d": COUNT + " huge"}),
    **{f"ebmlib.metrics.{name}": Spec(getattr(M, name), lambda dt: dict(
        p=torch.tensor([0.2, 0.3, 0.5], dtype=dt), q=torch.tensor([0.4, 0.4, 0.2], dtype=dt), atol=1e-5),
        {"p": "nan neg big ndim int list", "q": "nan neg big rows int list", "atol": STEP})
       for name in ("total_variation", "kl_divergence")},
    "ebmlib.metrics.mode_weights": Spec(M.mode_weights, lambda dt: dict(
        x=torch.randn(6, 2, dtype=dt), centres=torch.randn(3, 2, dtype=dt), weights=torch.rand(6, dtype=dt)),
        {"x": "nan inf ndim int list", "centres": "nan inf cols int list", "weights": "nan neg rows int list"}),
    **{f"ebmlib.metrics.{name}": Spec(getattr(M, name), lambda dt: dict(estimate=torch.rand(3, dtype=dt),
                                                                        target=torch.rand(3, dtype=dt)),
                                      {"estimate": "nan inf int list", "target": "nan inf rows int list"})
       for name in ("log_rmse", "mode_weight_mse")},
    "ebmlib.metrics.median_squared_log_density_error": Spec(
        M.median_squared_log_density_error, lambda dt: dict(energy_fn=_energy_2d, x=torch.randn(5, 2, dtype=dt),
                                                            true_log_prob=torch.randn(5, dtype=dt), lim=3.0, n=8),
        {"energy_fn": EFN, "x": "nan inf ndim cols int list", "true_log_prob": "nan inf rows int list", "lim": STEP,
         "n": COUNT}),
    "ebmlib.metrics.gaussian_frechet_distance": Spec(M.gaussian_frechet_distance, lambda dt: dict(
        mu1=torch.zeros(2, dtype=dt), cov1=torch.eye(2, dtype=dt), mu2=torch.ones(2, dtype=dt),
        cov2=2 * torch.eye(2, dtype=dt)),
        {"mu1": "nan inf ndim list", "cov1": "nan inf cols neg list", "mu2": "nan inf rows list",
         "cov2": "nan inf rows neg list"}),
    "ebmlib.metrics.frechet_distance": Spec(M.frechet_distance, lambda dt: dict(x=torch.randn(6, 2, dtype=dt),
                                                                                y=torch.randn(5, 2, dtype=dt)),
                                            {"x": "nan inf ndim list", "y": "nan inf cols list"}),
    "ebmlib.metrics.degree_histogram": Spec(M.degree_histogram, lambda dt: dict(graph=nx.path_graph(3)),
                                            {"graph": "object"}),
    "ebmlib.metrics.clustering_histogram": Spec(M.clustering_histogram, lambda dt: dict(graph=nx.path_graph(3), bins=4),
                                                {"graph": "object", "bins": COUNT}),
    "ebmlib.metrics.orbit_counts": Spec(M.orbit_counts, lambda dt: dict(graph=nx.path_graph(3)), {"graph": "object"}),
    "ebmlib.metrics.orbit_statistic": Spec(M.orbit_statistic, lambda dt: dict(graph=nx.path_graph(3)),
                                           {"graph": "object"}),
    "ebmlib.metrics.graph_mmd": Spec(M.graph_mmd, lambda dt: dict(generated=_graphs(), reference=_graphs()[:2],
                                                                  statistic="degree", sigma=1.0),
                                     {"generated": "empty seqstr", "reference": "empty seqstr", "statistic": "choice",
                                      "sigma": STEP}),
    "ebmlib.metrics.split_rhat": Spec(M.split_rhat, lambda dt: dict(chains=torch.randn(2, 8, 1, dtype=dt)),
                                      {"chains": "nan inf ndim flat int list"}),
    "ebmlib.metrics.importance_log_partition": Spec(M.importance_log_partition, lambda dt: dict(
        energy_fn=lambda x: x.sum(1), samples=_bits(dt), log_q=torch.full((6,), -2.0, dtype=dt), batch_size=4),
        {"energy_fn": EFN, "samples": "nan inf ndim list", "log_q": "nan inf rows int list", "batch_size": COUNT}),
    "ebmlib.metrics.CodeKernelDensity": Spec(M.CodeKernelDensity, lambda dt: dict(centres=_bits(dt), n_classes=2,
                                                                                  epsilon=0.1),
                                             {"centres": "nan ndim big neg codefrac list", "n_classes": COUNT,
                                              "epsilon": PROB}),
    "ebmlib.metrics.CodeKernelDensity.sample": Spec(lambda density, n: density.sample(n),
                                                    lambda dt: dict(density=M.CodeKernelDensity(_bits(dt), 2, 0.1),
                                                                    n=3), {"n": COUNT}),
    "ebmlib.metrics.CodeKernelDensity.log_prob": Spec(
        lambda density, x, chunk_size: density.log_prob(x, chunk_size=chunk_size),
        lambda dt: dict(density=M.CodeKernelDensity(_bits(dt), 2, 0.1), x=_bits(dt, 4), chunk_size=2),
        {"x": "nan ndim cols big neg codefrac list", "chunk_size": COUNT}),
    "ebmlib.metrics.ais_log_partition": Spec(M.ais_log_partition, lambda dt: dict(
        energy_fn=lambda x: x.sum(1), base_probs=torch.full((3,), 0.5, dtype=dt), n_chains=4, n_steps=2, mcmc_steps=1),
        {"energy_fn": EFN, "base_probs": "nan ndim big neg int list", "n_chains": COUNT, "n_steps": COUNT,
         "mcmc_steps": COUNT}),
    "ebmlib.metrics.predict_energy": Spec(M.predict_energy, lambda dt: dict(energy_fn=_joint_energy,
                                                                            x=torch.randn(4, 1, dtype=dt),
                                                                            block_sizes=(2,), max_rows=3),
                                          {"energy_fn": EFN, "x": "nan inf ndim int list", "block_sizes": SEQ,
                                           "max_rows": COUNT}),
    "ebmlib.metrics.predict_sample": Spec(M.predict_sample, lambda dt: dict(
        energy_fn=_joint_energy, x=torch.randn(4, 1, dtype=dt), noise=_joint_noise(dt), n_samples=2, n_steps=2),
        {"energy_fn": EFN, "x": "nan inf ndim cols int list", "noise": "object", "n_samples": COUNT,
         "n_steps": COUNT}),
    "ebmlib.metrics.attribute_accuracy": Spec(M.attribute_accuracy, lambda dt: dict(
        predicted=torch.randint(0, 3, (5, 2)), target=torch.randint(0, 3, (5, 2))),
        {"predicted": "ndim flat list", "target": "rows cols list"}),
    "ebmlib.metrics.tstr_auc": Spec(M.tstr_auc, lambda dt: dict(train_rows=_rows(dt), test_rows=_rows(dt), target=1,
                                                                n_numeric=1, n_classes=(2, 3), model="sklearn", seed=0),
                                    {"train_rows": "nan inf cols codebig list",
                                     "test_rows": "nan inf cols codebig list",
                                     "target": "negative huge frac bool", "n_numeric": NONNEG, "n_classes": SEQ,
                                     "model": "choice", "seed": "negative frac str"}),
    "ebmlib.metrics.sdmetrics_quality": Spec(M.sdmetrics_quality, lambda dt: dict(
        real_rows=_rows(dt), synthetic_rows=_rows(dt), n_numeric=1, n_classes=(2, 3)),
        {"real_rows": "nan inf cols codebig list", "synthetic_rows": "nan inf cols codebig list",
         "n_numeric": NONNEG, "n_classes": "seq1 seqstr"}),
    "ebmlib.metrics.inception_fid": Spec(M.inception_fid, lambda dt: dict(real=torch.rand(2, 1, 8, 8, dtype=dt),
                                                                          fake=torch.rand(2, 1, 8, 8, dtype=dt),
                                                                          batch_size=2),
                                         {"real": "nan inf ndim int list", "fake": "nan inf ndim int list",
                                          "batch_size": COUNT}),
    # --- train ---
    "ebmlib.train.progress_disabled": Spec(T.progress_disabled, lambda dt: dict(progress=True),
                                           {"progress": "str none"}),
    "ebmlib.train.progress_bar": Spec(T.progress_bar, lambda dt: dict(iterable=[1, 2], desc="bar", progress=False),
                                      {"iterable": "notcallable", "desc": "none", "progress": "str"}),
    "ebmlib.train.tensor_batches": Spec(T.tensor_batches, lambda dt: dict(data=torch.randn(8, 2, dtype=dt),
                                                                          batch_size=4),
                                        {"data": "scalar list", "batch_size": COUNT + " huge"}),
    "ebmlib.scale.smoke_cap": Spec(scale.smoke_cap, lambda dt: dict(settings={"n_iters": 5, "toys": ("a", "b")},
                                                                   caps={"n_iters": 2}, first={"toys": 1}),
                                   {"settings": "object none", "caps": "object none",
                                    "first": "object"}),
    "ebmlib.scale.smoke_data": Spec(lambda datasets: scale.smoke_data(datasets), lambda dt: dict(datasets="adult"),
                                    {"datasets": "choice none"}),
    "ebmlib.scale.study_budgets": Spec(scale.study_budgets, lambda dt: dict(n_iters=300, factors=(0.5, 1.0)),
                                       {"n_iters": "zero negative frac str", "factors": "empty seqstr"}),
    "ebmlib.ledger.RunRecord": Spec(lambda desc, step, steps, timed_steps, seconds, full_steps, repeats, members,
                                    threads, kind: ledger.RunRecord(desc, step, steps, timed_steps, seconds,
                                                                    full_steps, repeats, members, threads, kind),
                                    lambda dt: dict(desc="d", step=ledger.OperationCount(1, 1), steps=3,
                                                    timed_steps=2, seconds=0.1, full_steps=10, repeats=1.0,
                                                    members=1, threads=1, kind="evaluation"),
                                    {"desc": "none", "step": "object", "steps": COUNT, "timed_steps": NONNEG,
                                     "seconds": "negative nan inf str", "full_steps": COUNT,
                                     "repeats": "negative nan inf str", "members": COUNT, "threads": COUNT,
                                     "kind": "choice none"}),
    "ebmlib.ledger.recorded_steps": Spec(lambda n_steps, desc: list(ledger.recorded_steps(n_steps, desc)),
                                         lambda dt: dict(n_steps=3, desc="chains"),
                                         {"n_steps": NONNEG, "desc": "none"}),
    "ebmlib.ledger.repetitions": Spec(ledger.repetitions, lambda dt: dict(n=2), {"n": NONNEG}),
    "ebmlib.ledger.run_record": Spec(ledger.run_record, lambda dt: dict(
        desc="d", step=ledger.OperationCount(1, 1), n_iters=3, steps=3, timed_steps=2, seconds=0.1, members=1,
        kind="training"),
        {"desc": "none", "step": "object", "steps": COUNT, "timed_steps": NONNEG,
         "seconds": "negative nan inf str", "members": COUNT, "kind": "choice none"}),
    "ebmlib.ledger.record_run": Spec(ledger.record_run, lambda dt: dict(path=_tmp("ledger.jsonl"),
                                                                             record=_run_record()),
                                           {"path": "none", "record": "object"}),
    "ebmlib.ledger.read_ledger": Spec(ledger.read_ledger, lambda dt: dict(path=_ledger_file()),
                                            {"path": "none"}),
    "ebmlib.ledger.Capped": Spec(ledger.Capped, lambda dt: dict(value=3, full=10),
                                {"value": "negative frac str", "full": "negative frac str"}),
    "ebmlib.ledger.Repeats": Spec(ledger.Repeats, lambda dt: dict(entries=(0,), full=3),
                                 {"entries": "object", "full": "negative frac str"}),
    "ebmlib.scale.run_dir": Spec(scale.run_dir, lambda dt: dict(chapter="ch2", experiment="mnist", scale="ci"),
                                 {"chapter": "none empty", "experiment": "none empty", "scale": "choice none"}),
    "ebmlib.train.TensorBatches": Spec(T.TensorBatches, lambda dt: dict(data=torch.randn(8, 2, dtype=dt), batch_size=4),
                                       {"data": "scalar list", "batch_size": COUNT + " huge"}),
    "ebmlib.train.fit": Spec(lambda n_iters, lr, log_every, ema_decay, grad_clip, checkpoint_every, run_dir: T.fit(
        torch.nn.Linear(2, 1), lambda m, b: m(b).mean(), lambda: torch.randn(4, 2), n_iters=n_iters, lr=lr,
        log_every=log_every, ema_decay=ema_decay, grad_clip=grad_clip, checkpoint_every=checkpoint_every,
        run_dir=run_dir, progress=False), lambda dt: dict(n_iters=2, lr=0.1, log_every=1, ema_decay=0.9, grad_clip=1.0,
                                                          checkpoint_every=1, run_dir=TMP / "fit"),
        {"n_iters": COUNT, "lr": STEP, "log_every": COUNT, "ema_decay": PROB, "grad_clip": STEP,
         "checkpoint_every": COUNT}),
    **{f"ebmlib.{name}.load_state_dict": Spec(lambda state, make=make: make().load_state_dict(state),
                                              lambda dt, make=make: dict(state=make().state_dict()),
                                              {"state": "object none"})
       for name, make in (
           ("train.TensorBatches", lambda: T.TensorBatches(torch.randn(8, 2), 4)),
           ("samplers.ReplayBuffer", lambda: S.ReplayBuffer(lambda m: torch.zeros(m, 2), 8)),
           ("losses.PersistentContrastiveDivergence", lambda: L.PersistentContrastiveDivergence(
               S.ReplayBuffer(lambda m: torch.zeros(m, 2), 8), lambda e, x: x)),
           ("losses.FlowEBMLoss", lambda: L.FlowEBMLoss("ula", torch.randn(16, 2), n_chains=8, n_steps=2,
                                                        step_size=0.05)))},
    "ebmlib.train.linear_warmup": Spec(T.linear_warmup, lambda dt: dict(
        optimizer=torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1), n_warmup=3),
        {"optimizer": "object", "n_warmup": COUNT}),
    "ebmlib.train.train_classifier": Spec(T.train_classifier, lambda dt: dict(
        model=torch.nn.Linear(2, 3).to(dt), x=torch.randn(8, 2, dtype=dt), y=torch.randint(0, 3, (8,)), n_iters=1,
        batch_size=4, lr=1e-3),
        {"model": "object", "x": "nan inf int list", "y": "rows float neg list", "n_iters": COUNT,
         "batch_size": COUNT, "lr": STEP}),
    "ebmlib.train.train_mixed": Spec(T.train_mixed, lambda dt: dict(
        loss=lambda e, x: (e(x).mean(), {}), next_batch=lambda: _rows(torch.float32, 8), n_numeric=1,
        n_classes=(2, 3), hidden=4, n_iters=1, lr=1e-3),
        {"loss": "notcallable", "next_batch": "notcallable", "n_numeric": NONNEG, "n_classes": SEQ, "hidden": COUNT,
         "n_iters": COUNT, "lr": STEP}),
    "ebmlib.train.compare_tstr": Spec(T.compare_tstr, lambda dt: dict(
        losses={"ED": L.EnergyDiscrepancy(L.MixedPerturbation(1, 0.1, L.UniformPerturbation((2, 3))), n_negatives=2)},
        train_rows=_rows(torch.float32), test_rows=_rows(torch.float32), target=1, n_numeric=1, n_classes=(2, 3),
        hidden=4, n_iters=1, lr=1e-3, sample_rounds=1, n_draws=1, batch_size=8, step_size=0.01, model="sklearn",
        progress=False, seed=0),
        {"losses": "empty object", "train_rows": "nan inf cols codebig list", "test_rows": "nan inf cols list",
         "target": "negative huge frac", "n_numeric": NONNEG, "n_classes": SEQ, "hidden": COUNT, "n_iters": COUNT,
         "lr": STEP, "sample_rounds": COUNT, "n_draws": COUNT, "batch_size": COUNT + " huge", "step_size": STEP,
         "model": "choice", "seed": "negative frac str"}),
    # --- report, plotting, bench ---
    "ebmlib.report.budget_trend": Spec(report.budget_trend, lambda dt: dict(budgets=[1, 2, 4], gaps=[[0.1, 0.2, 0.3],
                                                                                                [0.2, 0.1, 0.0]],
                                                                            since=2),
                                       {"budgets": "empty seqneg seqstr", "gaps": "empty seqstr", "since": "huge str"}),
    "ebmlib.plotting.plain_log_ticks": Spec(plotting.plain_log_ticks, lambda dt: dict(axis=_axes().xaxis),
                                            {"axis": "object"}),
    "ebmlib.plotting.plot_budget_study": Spec(plotting.plot_budget_study, lambda dt: dict(
        ax=_axes(), budgets=[1, 2], values=[[0.1, 0.2], [0.3, 0.1]], label="a", paper=0.1, xlabel="s"),
        {"ax": "object", "budgets": "empty seqneg", "values": "empty", "label": "none"}),
    "ebmlib.report.paper_vs_ours": Spec(report.paper_vs_ours, lambda dt: dict(
        rows=[dict(experiment="e", metric="m", paper=1.0, ours=1.1)], scale="ci", hardware="CPU"),
        {"rows": "empty seqstr", "scale": "choice", "hardware": "none"}),
    "ebmlib.report.glue": Spec(report.glue, lambda dt: dict(name="x", value=1.0, display=False), {"name": "none"}),
    "ebmlib.plotting.plot_log_density": Spec(plotting.plot_log_density, lambda dt: dict(
        ax=_axes(), log_density=torch.randn(4, 4, dtype=dt), lim=2.0),
        {"ax": "object", "log_density": "ndim flat int list", "lim": STEP}),
    "ebmlib.plotting.plot_energy_density": Spec(plotting.plot_energy_density, lambda dt: dict(
        ax=_axes(), energy_fn=_energy_2d, lim=2.0, n=4),
        {"ax": "object", "energy_fn": EFN, "lim": STEP, "n": COUNT}),
    "ebmlib.plotting.plot_samples": Spec(plotting.plot_samples, lambda dt: dict(
        ax=_axes(), x=torch.randn(20, 2, dtype=dt), lim=2.0, kind="hist", bins=5),
        {"ax": "object", "x": "nan ndim cols list", "lim": STEP, "kind": "choice", "bins": COUNT}),
    "ebmlib.plotting.plot_history": Spec(plotting.plot_history, lambda dt: dict(
        ax=_axes(), history={"loss": [1.0, 0.5]}, keys=["loss"]),
        {"ax": "object", "history": "object", "keys": "seqstr empty"}),
    "ebmlib.plotting.image_grid": Spec(plotting.image_grid, lambda dt: dict(x_bar=torch.rand(4, 16, dtype=dt),
                                                                            shape=(4, 4), nrow=2),
                                       {"x_bar": "ndim cols int list", "shape": "seqstr seqneg empty", "nrow": COUNT}),
    "ebmlib.plotting.draw_graphs": Spec(plotting.draw_graphs, lambda dt: dict(
        graphs=_graphs()[:2], axes=plt.subplots(1, 2)[1], seed=0),
        {"graphs": "seqstr", "axes": "object", "seed": "negative frac str"}),
    "ebmlib.bench.bench_rmwggis": Spec(bench.bench_rmwggis, lambda dt: dict(
        dims=(4,), batch_size=2, device="cpu", repeats=1, n_samples=2, chunk_size=4, warmup=0),
        {"dims": "empty seqneg seqstr", "batch_size": COUNT, "device": "choice", "repeats": COUNT,
         "n_samples": COUNT, "chunk_size": COUNT, "warmup": NONNEG}),
    "ebmlib.bench.format_table": Spec(bench.format_table, lambda dt: dict(rows=bench.paper_table2_rows()),
                                      {"rows": "empty seqstr"}),
    "ebmlib.bench.bench_ensemble": Spec(bench.bench_ensemble, lambda dt: dict(
        methods=["RMwRAND"], ks=(2,), n_iters=1, repeats=1, device="cpu"),
        {"methods": "seqstr", "ks": "empty seqneg seqstr", "n_iters": COUNT, "repeats": COUNT, "device": "choice"}),
    "ebmlib.bench.format_ensemble_table": Spec(bench.format_ensemble_table, lambda dt: dict(rows=[dict(
        method="RM", chapter=1, K=2, separate_ms=1.0, member_ms=0.5, speedup=2.0)]), {"rows": "empty seqstr"}),
})



def _bit_energy(x):
    return x @ torch.linspace(-1.0, 1.0, x.shape[1], dtype=x.dtype, device=x.device)


def _hub_bits(dt):
    """Graphs on 3 nodes (pairs (0,1), (0,2), (1,2)); the second has 2 nodes, so only pair (0,1) may be an edge."""
    return dict(bits=torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 1]], dtype=dt), node_counts=torch.tensor([3, 2, 3]))


def _code_energy(dt):
    return torch.nn.Sequential(torch.nn.Linear(6, 1), torch.nn.Flatten(0)).to(dt)


SPECS.update({
    # --- data, nets, losses, metrics added with the chapters' code ---
    "ebmlib.data.toy_code_probs": Spec(D.toy_code_probs, lambda dt: dict(name="8gaussians", code=D.GrayCode(4.0, 3)),
                                       {"name": "choice", "code": "object"}),
    "ebmlib.nets.BernoulliTiltedEnergy": Spec(NN.BernoulliTiltedEnergy, lambda dt: dict(
        net=NN.MLPEnergy(3, 4, 1), probs=torch.tensor([0.2, 0.5, 0.7], dtype=dt)),
        {"net": "object", "probs": "nan ndim int neg big list"}),
    **{f"ebmlib.nets.BernoulliTiltedEnergy.{method}": Spec(
        lambda x, method=method: getattr(NN.BernoulliTiltedEnergy(NN.MLPEnergy(3, 4, 1), torch.full((3,), 0.3)),
                                         method)(x), lambda dt: dict(x=_bits(torch.float32, 4, 3)), {"x": META})
       for method in ("forward", "base_log_prob")},
    "ebmlib.losses.FlowEBMLoss.from_flow": Spec(
        lambda method, flow, pool_size, lr, uniform_lim: L.FlowEBMLoss.from_flow(
            method, flow, pool_size=pool_size, lr=lr, uniform_lim=uniform_lim, n_chains=4, n_steps=2, step_size=0.1),
        lambda dt: dict(method="ula", flow=F.RealNVP(2, 1, (4,)).to(dt), pool_size=8, lr=1e-3, uniform_lim=2.0),
        {"method": "choice", "flow": "object", "pool_size": COUNT, "lr": STEP, "uniform_lim": STEP}),
    "ebmlib.metrics.decoded_log_density": Spec(M.decoded_log_density, lambda dt: dict(
        energy_fn=_code_energy(dt), code=D.GrayCode(4.0, 3), lim=2.0, n=4, batch_size=5),
        {"energy_fn": EFN, "code": "object", "lim": STEP, "n": COUNT, "batch_size": COUNT}),
    "ebmlib.metrics.energy_mode_weights": Spec(M.energy_mode_weights, lambda dt: dict(
        energy_fn=_energy_2d, centres=torch.randn(3, 2, dtype=dt), lim=2.0, n=4, batch_size=5),
        {"energy_fn": EFN, "centres": "nan inf ndim flat cols int list", "lim": STEP, "n": COUNT,
         "batch_size": COUNT}),
    "ebmlib.metrics.enumerated_log_probs": Spec(M.enumerated_log_probs, lambda dt: dict(
        energy_fn=_bit_energy, dim=3, batch_size=5, device="cpu"),
        {"energy_fn": EFN, "dim": COUNT + " huge", "batch_size": COUNT, "device": "choice"}),
    "ebmlib.metrics.expected_calibration_error": Spec(M.expected_calibration_error, lambda dt: dict(
        probs=torch.softmax(torch.randn(6, 3, dtype=dt), 1), labels=torch.randint(0, 3, (6,)), n_bins=4),
        {"probs": "nan inf ndim flat cols int neg big list", "labels": "ndim rows float neg big list",
         "n_bins": COUNT}),
    "ebmlib.metrics.has_hub": Spec(M.has_hub, _hub_bits, {"bits": "nan ndim cols int binary list",
                                                         "node_counts": "ndim rows float big neg list"}),
    "ebmlib.metrics.score_graph_samples": Spec(M.score_graph_samples, lambda dt: dict(**_hub_bits(dt),
                                                                                      reference=_graphs()),
                                               {"bits": "nan ndim cols int binary list",
                                                "node_counts": "ndim rows float big neg list",
                                                "reference": "empty seqstr"}),
    "ebmlib.metrics.mode_switches": Spec(M.mode_switches, lambda dt: dict(chains=torch.randn(2, 5, 2, dtype=dt),
                                                                          centres=torch.randn(3, 2, dtype=dt)),
                                         {"chains": "nan inf ndim flat int list", "centres": "nan inf cols int list"}),
    "ebmlib.metrics.pseudo_log_likelihood": Spec(M.pseudo_log_likelihood, lambda dt: dict(
        energy_fn=_bit_energy, x=_bits(dt), mask=_bits(dt), batch_size=4),
        {"energy_fn": EFN, "x": "nan ndim flat int binary list", "mask": "nan ndim rows cols binary list",
         "batch_size": COUNT}),
    # --- report ---
    "ebmlib.report.Claims": Spec(report.Claims, lambda dt: dict(scale="ci", hardware="CPU"),
                                 {"scale": "choice", "hardware": "none"}),
    "ebmlib.report.Claims.add": Spec(
        lambda claim, paper, ours, holds, asserted_at: report.Claims("ci", "CPU").add(
            claim, paper=paper, ours=ours, holds=holds, asserted_at=asserted_at),
        lambda dt: dict(claim="x > 1", paper=2.0, ours=1.5, holds=True, asserted_at=("ci",)),
        {"claim": "none", "holds": "str", "asserted_at": "choice seqneg"}),
    "ebmlib.report.Claims.table": Spec(lambda caption: report.Claims("ci", "CPU").table(caption),
                                       lambda dt: dict(caption="Claims"), {"caption": "none"}),
    "ebmlib.report.styled_table": Spec(report.styled_table, lambda dt: dict(frame=_frame(), caption="A table",
                                                                            digits=3),
                                       {"frame": "object", "caption": "none", "digits": COUNT}),
})


# Tiny benchmark tasks: every bench spec builds its task afresh (a few milliseconds each).
_GRAY = dict(name="gray", toy="8gaussians", n_bits=3, hidden=4, lr=1e-3, batch_size=8, device="cpu")
_SPIRALS = dict(name="spirals", toy="2spirals", n_bits=4, hidden=4, lr=1e-3, batch_size=8, n_test=20, n_grid=4,
                ais_steps=2, ais_chains=3, n_mmd=4, gibbs_sweeps=1, device="cpu")
_ISING = dict(name="ising", side=3, sigma=0.2, n_data=20, sweeps=2, l1=1e-3, lr=1e-3, batch_size=10, device="cpu")
_DIGITS = dict(name="digits", hidden=4, lr=1e-3, batch_size=10, ais_steps=2, ais_chains=3, device="cpu")
_GRID = dict(name="grid", density="8gaussians", hidden=4, lr=1e-3, batch_size=8, n_grid=8, gaussian_sigma=0.1,
             device="cpu")
_MIXTURE = dict(name="mixture", dim=2, hidden=4, lr=1e-3, batch_size=8, n_eval=16, gaussian_sigma=0.3, device="cpu")
_TASKS = {"ExactCodeTask": _GRAY, "CodedToyTask": _SPIRALS, "IsingTask": _ISING, "DigitsTask": _DIGITS,
          "GridDensityTask": _GRID, "MixtureTask": _MIXTURE}
_SETTINGS = {"name": "none", "hidden": COUNT, "lr": STEP, "batch_size": COUNT, "device": "choice"}


def _task(cls="ExactCodeTask"):
    return getattr(bench, cls)(**_TASKS[cls])


def _rows_table(dt=None):
    return [dict(task="t", method=m, seed=s, checkpoint=c, iteration=10 * (c + 1), seconds=0.1 * (c + 1), status="ok",
                 metric="kl", value=0.5 / (c + 1) + 0.1 * s + (0.2 if m == "B" else 0.0))
            for m in ("A", "B") for s in (0, 1) for c in (0, 1)]


def _csv(dt):
    return dict(path=bench.write_csv(_rows_table(), _tmp("rows.csv")))


def _ising_fit_args(dt):
    lattice = D.IsingLattice(3, 0.2)
    return dict(loss_fn=L.ratio_matching, data=lattice.sample(20, 2, dtype=dt), coupling=lattice.J.to(dt), n_iters=2,
                lr=1e-2, l1=1e-3, batch_size=10, n_records=2)


SPECS.update({
    "ebmlib.bench.Task": Spec(bench.Task, lambda dt: dict(name="t", lr=1e-3, batch_size=8, device="cpu"),
                              {k: _SETTINGS[k] for k in ("name", "lr", "batch_size", "device")}),
    "ebmlib.bench.ExactCodeTask": Spec(bench.ExactCodeTask, lambda dt: dict(_GRAY),
                                       {**_SETTINGS, "toy": "choice", "n_bits": COUNT + " huge"}),
    "ebmlib.bench.CodedToyTask": Spec(bench.CodedToyTask, lambda dt: dict(_SPIRALS), {
        **_SETTINGS, "toy": "choice", "n_bits": COUNT, "n_test": COUNT, "n_grid": COUNT, "ais_steps": NONNEG,
        "ais_chains": COUNT, "n_mmd": NONNEG + " huge", "gibbs_sweeps": COUNT}),
    "ebmlib.bench.IsingTask": Spec(bench.IsingTask, lambda dt: dict(_ISING), {
        **{k: v for k, v in _SETTINGS.items() if k != "hidden"}, "batch_size": COUNT + " huge", "side": COUNT,
        "sigma": "nan inf str", "n_data": COUNT, "sweeps": COUNT, "l1": "negative nan inf str"}),
    "ebmlib.bench.DigitsTask": Spec(bench.DigitsTask, lambda dt: dict(_DIGITS), {
        **_SETTINGS, "batch_size": COUNT + " huge", "ais_steps": COUNT, "ais_chains": COUNT}),
    "ebmlib.bench.GridDensityTask": Spec(bench.GridDensityTask, lambda dt: dict(_GRID), {
        **_SETTINGS, "density": "choice", "n_grid": COUNT, "gaussian_sigma": STEP}),
    "ebmlib.bench.MixtureTask": Spec(bench.MixtureTask, lambda dt: dict(_MIXTURE), {
        **_SETTINGS, "dim": COUNT, "n_eval": COUNT, "gaussian_sigma": STEP}),
    **{f"ebmlib.bench.{owner}.init_states": Spec(lambda n, cls=cls: _task(cls).init_states(n), lambda dt: dict(n=3),
                                                 {"n": COUNT})
       for owner, cls in (("BinaryTask", "ExactCodeTask"), ("DigitsTask", "DigitsTask"),
                          ("ContinuousTask", "MixtureTask"))},
    # evaluations take the trained energy module; NaN energies raise inside the metrics (the runner marks the
    # run diverged), so the corruption here is an object that is not an energy module
    **{f"ebmlib.bench.{cls}.evaluate": Spec(lambda energy, cls=cls: _task(cls).evaluate(energy),
                                            lambda dt, cls=cls: dict(energy=_task(cls).make_energy()),
                                            {"energy": "object"})
       for cls in _TASKS},
    "ebmlib.bench.CodedToyTask.grid_nll": Spec(lambda energy, lim: _task("CodedToyTask").grid_nll(energy, lim),
                                               lambda dt: dict(energy=_task("CodedToyTask").make_energy(), lim=4.0),
                                               {"energy": "object", "lim": STEP}),
    "ebmlib.bench.IsingTask.penalty": Spec(lambda energy: _task("IsingTask").penalty(energy),
                                           lambda dt: dict(energy=_task("IsingTask").make_energy()),
                                           {"energy": "object"}),
    "ebmlib.bench.GridDensityTask.log_prob": Spec(lambda x: _task("GridDensityTask").log_prob(x),
                                                  lambda dt: dict(x=torch.randn(4, 2, dtype=dt)),
                                                  {"x": "nan inf ndim flat cols int list"}),
    "ebmlib.bench.tilted_mlp": Spec(bench.tilted_mlp, lambda dt: dict(dim=2, hidden=4, base_std=1.0, device="cpu"),
                                    {"dim": COUNT, "hidden": COUNT, "base_std": STEP, "device": "choice"}),
    "ebmlib.bench.make_task": Spec(lambda name, scale, device: bench.make_task(name, scale, device=device, n_bits=3),
                                   lambda dt: dict(name="gray16", scale="ci", device="cpu"),
                                   {"name": "choice", "scale": "choice", "device": "choice"}),
    "ebmlib.bench.Training": Spec(bench.Training, lambda dt: dict(loss_fn=L.ratio_matching, lr=1e-3),
                                  {"loss_fn": "notcallable", "lr": STEP}),
    "ebmlib.bench.Method": Spec(bench.Method, lambda dt: dict(
        name="RM2", kind="binary", family="ratio matching", chapter=1, needs_mcmc=False, step="all neighbours",
        build=lambda task, energy: bench.Training(L.ratio_matching)),
        {"name": "none", "kind": "choice", "chapter": "negative frac str", "needs_mcmc": "str",
         "build": "notcallable"}),
    "ebmlib.bench.methods_for": Spec(bench.methods_for, lambda dt: dict(task=_task()), {"task": "object"}),
    "ebmlib.bench.Budget": Spec(lambda iterations, n_checkpoints: bench.Budget(iterations=iterations,
                                                                               n_checkpoints=n_checkpoints),
                                lambda dt: dict(iterations=4, n_checkpoints=2), {"iterations": COUNT,
                                                                                 "n_checkpoints": COUNT}),
    "ebmlib.bench.Budget[seconds]": Spec(lambda seconds, clock: bench.Budget(seconds=seconds, clock=clock),
                                         lambda dt: dict(seconds=1.0, clock="cpu"),
                                         {"seconds": STEP, "clock": "choice"}),
    "ebmlib.bench.start_run": Spec(bench.start_run, lambda dt: dict(task=_task(), method=bench.METHODS["RM"], seed=0,
                                                                    ema_decay=0.9),
                                   {"task": "object", "method": "object choice", "seed": "negative frac str",
                                    "ema_decay": PROB}),
    "ebmlib.bench.advance": Spec(bench.advance, lambda dt: dict(run=bench.start_run(_task(), bench.METHODS["RM"], 0),
                                                                n_iters=1, clock="wall"),
                                 {"run": "object", "n_iters": COUNT, "clock": "choice"}),
    "ebmlib.bench.evaluate": Spec(bench.evaluate, lambda dt: dict(run=bench.start_run(_task(), bench.METHODS["RM"], 0),
                                                                  checkpoint=0),
                                  {"run": "object", "checkpoint": "negative frac str"}),
    "ebmlib.bench.run_method": Spec(bench.run_method, lambda dt: dict(
        task=_task(), method="RM", seed=0, budget=bench.Budget(iterations=1, n_checkpoints=1), ema_decay=0.9),
        {"task": "object", "method": "choice object", "seed": "negative frac str", "budget": "object",
         "ema_decay": PROB}),
    "ebmlib.bench.compare_methods": Spec(bench.compare_methods, lambda dt: dict(
        task=_task(), methods=["RM"], seeds=[0], budget=bench.Budget(iterations=1, n_checkpoints=1), ema_decay=0.9,
        progress=False, backend="inprocess", address=None),
        {"task": "object", "methods": "empty seqstr", "seeds": "empty seqneg seqstr", "budget": "object",
         "ema_decay": PROB, "backend": "choice none", "address": "str object"}),
    # no calls: the arguments are checked, and nothing is sent to Ray (tests/test_bench_ray.py runs sweeps on it)
    "ebmlib.bench.run_calls": Spec(bench.run_calls, lambda dt: dict(fn=len, shared=None, calls=[], backend="ray",
                                                                    address="auto", device="cpu"),
                                   {"fn": "notcallable", "calls": "seqstr object", "backend": "choice none",
                                    "address": "object empty", "device": "choice"}),
    "ebmlib.bench.profile_methods": Spec(bench.profile_methods, lambda dt: dict(task=_task(), methods=["RM"],
                                                                                repeats=1),
                                         {"task": "object", "methods": "empty seqstr", "repeats": COUNT}),
    "ebmlib.bench.count_methods": Spec(bench.count_methods, lambda dt: dict(task=_task(), methods=["RM"], warmup=0),
                                       {"task": "object", "methods": "empty seqstr", "warmup": NONNEG}),
    "ebmlib.ledger.count_operations": Spec(ledger.count_operations, lambda dt: dict(fn=lambda: None),
                                          {"fn": "notcallable"}),
    "ebmlib.ledger.OperationCount": Spec(ledger.OperationCount, lambda dt: dict(flops=10, operators=2, bytes=8,
                                                                              large_bytes=0),
                                        {"flops": NONNEG, "operators": NONNEG, "bytes": NONNEG,
                                         "large_bytes": NONNEG + " huge"}),
    "ebmlib.bench.DeviceModel": Spec(bench.DeviceModel, lambda dt: dict(name="d", flops_per_second=1e9,
                                                                        launch_seconds=1e-5, bytes_per_second=1e9,
                                                                        overlap=True, large_bytes_per_second=1e8),
                                     {"name": "none", "flops_per_second": STEP, "launch_seconds": STEP,
                                      "bytes_per_second": STEP.replace(" inf", ""), "overlap": "str none",
                                      "large_bytes_per_second": STEP.replace(" inf", "")}),
    "ebmlib.bench.predict_seconds": Spec(bench.predict_seconds, lambda dt: dict(
        count=ledger.OperationCount(10, 2), device=bench.DeviceModel("d", 1e9, 1e-5)),
        {"count": "object", "device": "object"}),
    "ebmlib.bench.calibrate_cpu": Spec(bench.calibrate_cpu, lambda dt: dict(threads=1, repeats=1),
                                       {"threads": COUNT, "repeats": COUNT}),
    "ebmlib.bench.chapter_costs": Spec(bench.chapter_costs, lambda dt: dict(records=[_run_record()],
                                                                            devices=dict(bench.GPUS)),
                                       {"records": "seqstr object", "devices": "object"}),
    "ebmlib.bench.check_against_measured": Spec(bench.check_against_measured, lambda dt: dict(
        records=[_run_record()], device=bench.GPUS["t4"]), {"records": "seqstr object", "device": "object"}),
    "ebmlib.bench.check_on_this_cpu": Spec(bench.check_on_this_cpu, lambda dt: dict(
        ledgers={"01_x": [_run_record()]}, calibrate=lambda threads: bench.GPUS["t4"]),
        {"ledgers": "object", "calibrate": "object"}),
    "ebmlib.bench.format_cost_table": Spec(bench.format_cost_table, lambda dt: dict(
        ledgers={"01_x": [_run_record()]}, devices=dict(bench.GPUS), colab="t4", checks=None),
        {"ledgers": "object", "devices": "object", "colab": "choice", "checks": "object"}),
    "ebmlib.bench.read_ledgers": Spec(bench.read_ledgers, lambda dt: dict(folder=_tmp("")), {"folder": "none"}),
    "ebmlib.bench.write_csv": Spec(bench.write_csv, lambda dt: dict(rows=_rows_table(), path=_tmp("out.csv")),
                                   {"rows": "seqstr object", "path": "none"}),
    "ebmlib.bench.read_csv": Spec(bench.read_csv, _csv, {"path": "none"}),
    "ebmlib.bench.anytime": Spec(bench.anytime, lambda dt: dict(rows=_rows_table(), metric="kl"),
                                 {"rows": "empty seqstr object", "metric": "choice none"}),
    **{f"ebmlib.bench.{name}": Spec(getattr(bench, name), lambda dt: dict(rows=_rows_table(), metric="kl",
                                                                          checkpoint=-1),
                                    {"rows": "empty seqstr object", "metric": "choice none",
                                     "checkpoint": "huge frac str"})
       for name in ("equal_budget", "which_method")},
    "ebmlib.bench.plot_anytime": Spec(bench.plot_anytime, lambda dt: dict(
        ax=_axes(), rows=_rows_table(), metric="kl", methods=["A"], title="t", logy=True),
        {"ax": "object", "rows": "empty seqstr object", "metric": "choice none", "methods": "empty seqstr",
         "logy": "str"}),
    "ebmlib.bench.fit_ising": Spec(lambda loss_fn, data, coupling, n_iters, lr, l1, batch_size, n_records:
                                   bench.fit_ising(loss_fn, data, coupling, n_iters=n_iters, lr=lr, l1=l1,
                                                   batch_size=batch_size, n_records=n_records),
                                   _ising_fit_args,
                                   {"loss_fn": "notcallable", "data": "nan ndim flat int binary list",
                                    "coupling": "nan inf ndim cols int list", "n_iters": COUNT, "lr": STEP,
                                    "l1": "negative nan inf str", "batch_size": COUNT + " huge",
                                    "n_records": COUNT}),
})


EXCLUDED = {
    # validators: raising ValueError naming the argument they are given is their whole job
    **{f"ebmlib.utils.{n}": "validator" for n in ("check_int", "check_positive", "check_real", "check_float_dtype",
                                                  "check_probability", "check_tensor", "check_binary",
                                                  "check_energy_output", "check_device", "repeat_rows")},
    "ebmlib.flows.check_image_shape": "validator",
    **{f"ebmlib.data.{n}": "validator" for n in ("check_classes", "check_codes", "check_block_sizes", "check_one_hot",
                                                 "check_graph", "check_node_counts")},
    **{f"ebmlib.losses.{n}.check": "validator" for n in ("Perturbation", "BinaryPerturbation", "GaussianPerturbation",
                                                         "NodeSetPerturbation", "CategoricalPerturbation",
                                                         "MixedPerturbation")},
    # protocols: no implementation to call
    "ebmlib.samplers.FlowProposal": "protocol", "ebmlib.samplers.FlowProposal.sample_with_log_prob": "protocol",
    "ebmlib.samplers.FlowProposal.log_prob": "protocol", "ebmlib.samplers.TransportMap": "protocol",
    "ebmlib.samplers.TransportMap.__call__": "protocol", "ebmlib.losses.PerturbationKernel": "protocol",
    "ebmlib.losses.PerturbationKernel.contrast": "protocol", "ebmlib.losses.LinearFirstLayer": "protocol",
    "ebmlib.losses.LinearFirstLayer.first_layer": "protocol", "ebmlib.losses.LinearFirstLayer.head": "protocol",
    "ebmlib.bench.EnsembleCase": "settings container of the runs bench_ensemble times (ENSEMBLE_CASES)",
    # no arguments that can be wrong: a context manager, a state getter, a training step of the optimiser
    "ebmlib.train.EnsembleAdam.step": "optimiser step (torch.optim.Optimizer's closure)",
    # containers of results, built by the library itself
    "ebmlib.utils.Measurement": "result container", "ebmlib.train.TrainResult": "result container",
    "ebmlib.data.MixedTable": "container built by table_from_frame and the loaders",
    "ebmlib.data.RemoteFile": "container of a published file's name, checksum, size and URLs",
    # readers of downloaded files: tested with fixture files in tests/test_data.py and tests/test_fetch.py
    # (a checksum mismatch raises a ValueError naming the checksum's argument)
    "ebmlib.data.load_citeseer_ego": "file reader", "ebmlib.data.load_mnist": "file reader",
    "ebmlib.data.load_adult": "file reader", "ebmlib.data.load_fashion_mnist": "file reader",
    "ebmlib.data.load_cifar10": "file reader",
    # the command line: argparse reports bad arguments and exits with status 2, the convention of CLIs
    "ebmlib.bench.main": "command line",
    "ebmlib.bench.check_energy": "validator", "ebmlib.bench.check_task": "validator",
    "ebmlib.bench.check_backend": "validator", "ebmlib.bench.check_method": "validator",
    "ebmlib.bench.check_methods": "validator",
    "ebmlib.metrics.PointCode": "protocol", "ebmlib.metrics.PointCode.encode": "protocol",
    "ebmlib.report.Claim": "result container, built by Claims.add (which checks its fields)",
    "ebmlib.bench.IsingFit": "result container", "ebmlib.bench.Run": "state container, built by start_run",
    # bases of the tasks: their constructor is Task's (surveyed), each concrete task is surveyed
    "ebmlib.bench.BinaryTask": "base class (Task's constructor)",
    "ebmlib.bench.ContinuousTask": "base class (Task's constructor)",
    # the base class's placeholders: each task's own methods are surveyed
    "ebmlib.bench.Task.evaluate": "abstract method", "ebmlib.bench.Task.init_states": "abstract method",
    "ebmlib.bench.Task.penalty": "the base's default, no penalty for any energy",
}

# Methods the battery's entries call besides the constructors (tests/test_battery.py).
BATTERY_METHODS = {
    "ebmlib.samplers.MWGSampler.__call__", "ebmlib.samplers.GWGBinarySampler.__call__",
    "ebmlib.samplers.DiscreteLangevinSampler.__call__",
    "ebmlib.samplers.JointNoise.__call__", "ebmlib.samplers.ReplayBuffer.sample",
    "ebmlib.losses.PersistentContrastiveDivergence.__call__", "ebmlib.losses.EnergyDiscrepancy.__call__",
    "ebmlib.losses.Perturbation.contrast", "ebmlib.losses.GridPerturbation.contrast",
    "ebmlib.losses.MixedPerturbation.contrast", "ebmlib.losses.SelfAdversarialLoss.__call__",
    "ebmlib.losses.FlowMaximumLikelihood.__call__", "ebmlib.losses.FlowEBMLoss.__call__",
}


def _battery_keys() -> set[str]:
    from test_battery import EXCLUDED as BATTERY_EXCLUDED
    from test_battery import REGISTRY

    return {f"ebmlib.{m}.{n}" for m in ("samplers", "losses") for n in (*REGISTRY, *BATTERY_EXCLUDED)} | BATTERY_METHODS


def test_survey_covers_every_public_callable():
    callables = public_callables()
    keys = {key.split("[")[0] for key in SPECS}  # "name[variant]": one of several specs of one callable
    surveyed = keys | set(EXCLUDED) | _battery_keys()
    assert not {k for k, params in callables.items() if params} - surveyed, "public callable without a spec"
    assert not (keys | set(EXCLUDED)) - set(callables), "stale spec"
    for key, spec in SPECS.items():
        assert set(spec.bad) <= set(inspect.signature(spec.fn).parameters), key


SURVEY_CALLS = [call for name in sorted(SPECS) for call in corrupted_calls(name, SPECS[name])]


@pytest.fixture(scope="module", autouse=True)
def _quiet():
    """One thread for tiny tensors; figures closed and temporary files removed afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    plt.close("all")
    shutil.rmtree(TMP, ignore_errors=True)


@pytest.mark.parametrize("name, arg, kind", SURVEY_CALLS, ids=["-".join(c) for c in SURVEY_CALLS])
def test_bad_input_raises_a_value_error_naming_the_argument(name, arg, kind):
    assert outcome(SPECS[name], arg, kind) == "ok"


def main() -> None:
    """Print the survey over every public callable (battery and specs here): counts and unanswered calls."""
    import warnings

    from test_battery import REGISTRY

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    specs = {f"battery:{n}": e.spec for n, e in REGISTRY.items()} | SPECS
    results = Counter()
    failures = []
    for name in sorted(specs):
        for _, arg, kind in corrupted_calls(name, specs[name]):
            result = outcome(specs[name], arg, kind)
            results["ok" if result == "ok" else result.split(":")[0].split(" not naming")[0]] += 1
            if result != "ok":
                failures.append(f"{name} {arg} [{kind}]: {result[:160]}")
    plt.close("all")
    shutil.rmtree(TMP, ignore_errors=True)
    print("\n".join(failures))
    print(f"{sum(results.values())} corrupted calls on {len(specs)} callables; {dict(results)}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
