import hashlib
import itertools
import math
import os
import pickle
from collections import defaultdict

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from ebmlib.data import (
    bits_to_adjacency,
    bits_to_graphs,
    citation_like_graph,
    ego_graphs,
    graphs_to_bits,
    load_citeseer_ego,
    node_pair_mask,
    num_pairs,
    sample_node_counts,
)
from ebmlib.losses import NodeSetPerturbation, ratio_matching, ratio_matching_within_nodes
from ebmlib.metrics import N_ORBITS, clustering_histogram, degree_histogram, graph_mmd, orbit_counts, orbit_statistic
from ebmlib.nets import GraphEnergy, MLPEnergy
from ebmlib.plotting import draw_graphs
from ebmlib.samplers import gibbs_within_nodes
from ebmlib.utils import energy_and_grad


def edge_set(graph):
    return sorted(tuple(sorted(edge)) for edge in graph.edges())


# ---------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------
def test_citation_like_graph_is_sparse_heavy_tailed_clustered_and_seeded():
    graph = citation_like_graph(3000, seed=0)
    degrees = np.array([d for _, d in graph.degree()])
    assert graph.number_of_nodes() == 3000 and nx.is_connected(graph)
    assert 3.0 < degrees.mean() < 3.8  # Citeseer's largest component: 3.47
    assert degrees.max() > 20 * degrees.mean()  # heavy tail (preferential attachment)
    assert 0.1 < nx.average_clustering(graph) < 0.25  # Citeseer's largest component: 0.17
    assert edge_set(citation_like_graph(500, seed=3)) == edge_set(citation_like_graph(500, seed=3))
    assert edge_set(citation_like_graph(500, seed=3)) != edge_set(citation_like_graph(500, seed=4))
    one_link = citation_like_graph(300, seed=0, link_probs=[1.0])  # the seed triangle plus a tree
    assert one_link.number_of_edges() == 3 + 297 and nx.is_connected(one_link)


@pytest.mark.parametrize(
    "bad",
    [dict(n_nodes=3), dict(seed=-1), dict(triad_prob=1.5), dict(link_probs=[0.5, 0.2]), dict(link_probs=[])],
)
def test_citation_like_graph_rejects_bad_arguments(bad):
    kwargs = dict(n_nodes=100, seed=0) | bad
    with pytest.raises(ValueError, match=next(iter(bad))):
        citation_like_graph(**kwargs)


def test_ego_graphs_are_seeded_one_hop_ego_graphs_in_the_size_range():
    graphs = ego_graphs(seed=0)
    assert len(graphs) == 200
    sizes = np.array([g.number_of_nodes() for g in graphs])
    assert sizes.min() >= 4 and sizes.max() <= 18 and 5.0 < sizes.mean() < 7.0
    for graph in graphs:
        assert list(graph) == list(range(graph.number_of_nodes()))
        assert graph.degree(0) == graph.number_of_nodes() - 1  # the centre sees every other node
    assert 0.5 < np.mean([g.number_of_edges() > g.number_of_nodes() - 1 for g in graphs]) < 0.9  # not all stars
    assert [edge_set(g) for g in ego_graphs(20, seed=1)] == [edge_set(g) for g in ego_graphs(20, seed=1)]
    assert [edge_set(g) for g in ego_graphs(20, seed=1)] != [edge_set(g) for g in ego_graphs(20, seed=2)]
    small = ego_graphs(50, min_nodes=5, max_nodes=6, seed=0)
    assert {g.number_of_nodes() for g in small} <= {5, 6}


@pytest.mark.parametrize("bad", [dict(n_graphs=100_000), dict(n_graphs=0), dict(min_nodes=1), dict(max_nodes=3)])
def test_ego_graphs_reject_bad_arguments(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        ego_graphs(**(dict(seed=0, n_nodes=500) | bad))


# ---------------------------------------------------------------------------------------------------------
# Loader (fixture file in the real format: Planetoid's pickled dict of adjacency lists, Python 2 protocol)
# ---------------------------------------------------------------------------------------------------------
# hub=0 cites a, b, c, d (1-4); a cites b and itself; d cites e, f, g (5-7); z=8 and its three neighbours form
# a smaller component.
ADJACENCY = {0: [1, 2, 3, 4], 1: [2, 1], 4: [5, 6, 7], 8: [9, 10, 11]}


def write_planetoid(tmp_path, adjacency=ADJACENCY):
    raw = pickle.dumps(defaultdict(list, adjacency), protocol=2)
    (tmp_path / "ind.citeseer.graph").write_bytes(raw)
    return hashlib.sha256(raw).hexdigest()


def test_load_citeseer_ego_reads_the_largest_component_and_checks_the_checksum(tmp_path):
    digest = write_planetoid(tmp_path)
    graphs = load_citeseer_ego(tmp_path, n_graphs=2, seed=0, expected_sha256=digest)
    # Eligible centres (ego graph with 4-18 nodes) in the largest component: the hub and d; z lies in a
    # smaller component, and the self-citation of a is dropped.
    assert sorted((g.number_of_nodes(), g.number_of_edges()) for g in graphs) == [(5, 4), (5, 5)]
    assert all(nx.number_of_selfloops(g) == 0 for g in graphs)
    with pytest.raises(ValueError, match="n_graphs=3: only 2"):
        load_citeseer_ego(tmp_path, n_graphs=3, seed=0, expected_sha256=digest.upper())


class _RunsCode:
    """An object whose unpickling would create a folder: what a hostile download could do."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.mkdir, (str(self.target),)


def test_load_citeseer_ego_rejects_bad_files_and_checksums(tmp_path):
    digest = write_planetoid(tmp_path)
    with pytest.raises(ValueError, match=r"ind\.citeseer\.graph: SHA-256 .* does not match"):
        load_citeseer_ego(tmp_path, n_graphs=1, seed=0, expected_sha256="0" * 64)
    with pytest.raises(ValueError, match="SHA-256"):
        load_citeseer_ego(tmp_path, n_graphs=1, seed=0)  # the fixture is not the pinned Citeseer file
    with pytest.raises(FileNotFoundError, match="root=None"):
        load_citeseer_ego(tmp_path / "missing", n_graphs=1, seed=0, expected_sha256=digest)
    raw = pickle.dumps({0: [_RunsCode(tmp_path / "pwned")]}, protocol=2)
    (tmp_path / "ind.citeseer.graph").write_bytes(raw)
    with pytest.raises(ValueError, match="not a pickled dict of adjacency lists"):
        load_citeseer_ego(tmp_path, n_graphs=1, seed=0, expected_sha256=hashlib.sha256(raw).hexdigest())
    assert not (tmp_path / "pwned").exists()
    digest = write_planetoid(tmp_path, {0: [0], 1: [1]})
    with pytest.raises(ValueError, match="ind.citeseer.graph holds no citations"):
        load_citeseer_ego(tmp_path, n_graphs=1, seed=0, expected_sha256=digest)


# ---------------------------------------------------------------------------------------------------------
# Adjacency bits
# ---------------------------------------------------------------------------------------------------------
def test_bits_follow_the_documented_row_major_order():
    assert num_pairs(4) == 6
    # Pairs (0,1) (0,2) (0,3) (1,2) (1,3) (2,3); the path 0-1-2 is padded with one isolated node.
    bits = graphs_to_bits([nx.path_graph(3), nx.star_graph(3)], max_nodes=4)
    assert bits.dtype == torch.get_default_dtype()
    assert bits.tolist() == [[1, 0, 0, 1, 0, 0], [1, 1, 1, 0, 0, 0]]


def test_graphs_and_bits_round_trip():
    graphs = ego_graphs(30, seed=5)
    back = bits_to_graphs(graphs_to_bits(graphs, 18), 18)
    assert [edge_set(g) for g in back] == [edge_set(g) for g in graphs]
    assert [g.number_of_nodes() for g in back] == [g.number_of_nodes() for g in graphs]
    bits = torch.randint(0, 2, (5, num_pairs(7))).float()
    full = bits_to_graphs(bits, 7, drop_isolated=False)
    assert all(g.number_of_nodes() == 7 for g in full)
    torch.testing.assert_close(graphs_to_bits(full, 7), bits)
    empty = bits_to_graphs(torch.zeros(1, num_pairs(5)), 5)[0]
    assert empty.number_of_nodes() == 0


def test_bits_to_adjacency_is_symmetric_and_differentiable():
    bits = torch.randint(0, 2, (4, num_pairs(6))).double().requires_grad_()
    adjacency = bits_to_adjacency(bits, 6)
    assert adjacency.shape == (4, 6, 6) and adjacency.dtype == torch.float64
    torch.testing.assert_close(adjacency, adjacency.transpose(1, 2))
    assert (adjacency.diagonal(dim1=1, dim2=2) == 0).all()
    expected = [nx.to_numpy_array(g) for g in bits_to_graphs(bits.detach(), 6, drop_isolated=False)]
    torch.testing.assert_close(adjacency.detach(), torch.tensor(np.array(expected)))
    weights = torch.randn(6, 6, dtype=torch.float64)
    (adjacency * weights).sum().backward()
    rows, cols = torch.triu_indices(6, 6, offset=1)
    torch.testing.assert_close(bits.grad, (weights[rows, cols] + weights[cols, rows]).expand(4, -1))
    assert bits_to_adjacency(torch.ones(1, 3, dtype=torch.long), 3).dtype == torch.get_default_dtype()


def test_bits_functions_reject_bad_input():
    with pytest.raises(ValueError, match=r"graphs\[1\] has 5 nodes"):
        graphs_to_bits([nx.path_graph(3), nx.path_graph(5)], 4)
    with pytest.raises(ValueError, match=r"graphs\[0\] must be an undirected"):
        graphs_to_bits([nx.DiGraph([(0, 1)])], 4)
    with pytest.raises(ValueError, match=r"graphs\[0\] has self-loops"):
        graphs_to_bits([nx.Graph([(0, 0), (0, 1)])], 4)
    with pytest.raises(ValueError, match="graphs must not be empty"):
        graphs_to_bits([], 4)
    with pytest.raises(ValueError, match="bits must have shape"):
        bits_to_adjacency(torch.zeros(2, 5), 4)
    with pytest.raises(ValueError, match="bits must contain only 0/1"):
        bits_to_graphs(torch.full((1, 6), 0.5), 4)
    with pytest.raises(ValueError, match="max_nodes"):
        num_pairs(1)


# ---------------------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------------------
SMALL = {
    "triangle": nx.complete_graph(3),
    "path3": nx.path_graph(3),
    "star": nx.star_graph(3),
    "cycle4": nx.cycle_graph(4),
    "k4": nx.complete_graph(4),
}


@pytest.mark.parametrize(
    "name, expected",
    [
        ("triangle", [0, 0, 3]),
        ("path3", [0, 2, 1]),
        ("star", [0, 3, 0, 1]),
        ("cycle4", [0, 0, 4]),
        ("k4", [0, 0, 0, 4]),
    ],
)
def test_degree_histogram_by_hand(name, expected):
    assert degree_histogram(SMALL[name]).tolist() == expected


def test_clustering_histogram_by_hand():
    assert clustering_histogram(nx.complete_graph(3)).tolist() == [0] * 99 + [3]  # C = 1 goes to the last bin
    assert clustering_histogram(nx.star_graph(3)).tolist() == [4] + [0] * 99
    paw = nx.Graph([(0, 1), (1, 2), (2, 0), (2, 3)])  # C = 1, 1, 1/3, 0
    assert clustering_histogram(paw, bins=3).tolist() == [1, 1, 2]


def orbit_dict(graph):
    """{node: {orbit: count}} without zeros, for readable hand-computed expectations."""
    counts = orbit_counts(graph)
    return {v: {k: int(c) for k, c in enumerate(row) if c} for v, row in zip(graph, counts)}


def test_orbit_counts_by_hand():
    assert orbit_counts(nx.complete_graph(3)).shape == (3, N_ORBITS)
    assert orbit_dict(nx.complete_graph(3)) == {v: {0: 2, 3: 1} for v in range(3)}
    assert orbit_dict(nx.path_graph(3)) == {0: {0: 1, 1: 1}, 1: {0: 2, 2: 1}, 2: {0: 1, 1: 1}}
    # Star K_{1,3}: the centre is the middle of 3 paths and the centre of 1 claw; each leaf ends 2 paths.
    assert orbit_dict(nx.star_graph(3)) == {0: {0: 3, 2: 3, 7: 1}, **{v: {0: 1, 1: 2, 6: 1} for v in (1, 2, 3)}}
    assert orbit_dict(nx.cycle_graph(4)) == {v: {0: 2, 1: 2, 2: 1, 8: 1} for v in range(4)}
    assert orbit_dict(nx.complete_graph(4)) == {v: {0: 3, 3: 3, 14: 1} for v in range(4)}
    assert orbit_dict(nx.path_graph(4)) == {
        0: {0: 1, 1: 1, 4: 1},
        1: {0: 2, 1: 1, 2: 1, 5: 1},
        2: {0: 2, 1: 1, 2: 1, 5: 1},
        3: {0: 1, 1: 1, 4: 1},
    }
    paw = nx.Graph([(0, 1), (1, 2), (2, 0), (2, 3)])
    assert orbit_dict(paw) == {
        0: {0: 2, 1: 1, 3: 1, 10: 1},
        1: {0: 2, 1: 1, 3: 1, 10: 1},
        2: {0: 3, 2: 2, 3: 1, 11: 1},
        3: {0: 1, 1: 2, 9: 1},
    }
    diamond = nx.Graph([(0, 1), (0, 2), (0, 3), (1, 2), (1, 3)])  # edge 2-3 missing
    assert orbit_dict(diamond) == {
        0: {0: 3, 2: 1, 3: 2, 13: 1},
        1: {0: 3, 2: 1, 3: 2, 13: 1},
        2: {0: 2, 1: 2, 3: 1, 12: 1},  # ends the paths 2-0-3 and 2-1-3
        3: {0: 2, 1: 2, 3: 1, 12: 1},
    }
    assert orbit_counts(nx.empty_graph(2)).tolist() == [[0] * N_ORBITS] * 2


# Each graphlet drawn once by hand, with each node's orbit: an enumeration that matches subsets by
# isomorphism, independent of the degree-sequence classification used by orbit_counts.
GRAPHLETS = [
    ([(0, 1), (1, 2)], {0: 1, 1: 2, 2: 1}),
    ([(0, 1), (1, 2), (2, 0)], {0: 3, 1: 3, 2: 3}),
    ([(0, 1), (1, 2), (2, 3)], {0: 4, 1: 5, 2: 5, 3: 4}),
    ([(0, 1), (0, 2), (0, 3)], {0: 7, 1: 6, 2: 6, 3: 6}),
    ([(0, 1), (1, 2), (2, 3), (3, 0)], {0: 8, 1: 8, 2: 8, 3: 8}),
    ([(0, 1), (1, 2), (2, 0), (2, 3)], {0: 10, 1: 10, 2: 11, 3: 9}),
    ([(0, 1), (0, 2), (0, 3), (1, 2), (1, 3)], {0: 13, 1: 13, 2: 12, 3: 12}),
    ([(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)], {0: 14, 1: 14, 2: 14, 3: 14}),
]


def brute_force_orbits(graph):
    counts = np.zeros((graph.number_of_nodes(), N_ORBITS), dtype=np.int64)
    for v, degree in graph.degree():
        counts[v, 0] = degree
    for size in (3, 4):
        for nodes in itertools.combinations(graph, size):
            sub = graph.subgraph(nodes)
            for edges, orbits in GRAPHLETS:
                matcher = nx.isomorphism.GraphMatcher(sub, nx.Graph(edges))
                if matcher.is_isomorphic():
                    for v, w in matcher.mapping.items():
                        counts[v, orbits[w]] += 1
    return counts


@pytest.mark.parametrize("seed", [0, 1])
def test_orbit_counts_match_an_isomorphism_based_enumeration(seed):
    graph = nx.gnp_random_graph(9, 0.45, seed=seed)
    counts = orbit_counts(graph)
    np.testing.assert_array_equal(counts, brute_force_orbits(graph))
    triangles = np.array([nx.triangles(graph, v) for v in graph])
    np.testing.assert_array_equal(counts[:, 3], triangles)
    np.testing.assert_array_equal(counts[:, 2], counts[:, 0] * (counts[:, 0] - 1) // 2 - triangles)
    np.testing.assert_allclose(orbit_statistic(graph), counts.mean(0))


def test_graph_mmd_is_zero_on_equal_sets_and_large_on_different_families():
    graphs = ego_graphs(40, seed=0)
    complete = [nx.complete_graph(n) for n in range(6, 12)]
    paths = [nx.path_graph(n) for n in range(6, 12)]
    for statistic in ("degree", "clustering", "orbit"):
        assert abs(graph_mmd(graphs, graphs, statistic)) < 1e-12
        assert graph_mmd(complete, paths, statistic) > 0.3
        assert graph_mmd(complete, paths, statistic) == pytest.approx(graph_mmd(paths, complete, statistic))
    # Two disjoint halves of one Ego-like sample are closer than Ego-like graphs and paths.
    for statistic in ("degree", "clustering"):
        assert graph_mmd(graphs[:20], graphs[20:], statistic) < graph_mmd(graphs, paths, statistic) / 5


def test_graph_mmd_matches_hand_computed_values():
    path, triangle = [nx.path_graph(3)], [nx.complete_graph(3)]
    # Degree pmfs (0, 2/3, 1/3) and (0, 0, 1): EMD = |CDF difference| summed = 2/3 (degree units), σ = 1.
    assert graph_mmd(path, triangle, "degree") == pytest.approx(2 - 2 * math.exp(-((2 / 3) ** 2) / 2))
    # Clustering: all mass in bin 0 vs bin 99, EMD = 0.99, σ = 0.1.
    assert graph_mmd(path, triangle, "clustering") == pytest.approx(2 - 2 * math.exp(-(0.99**2) / 0.02))
    # Mean orbit counts (4/3, 2/3, 1/3, 0, …) vs (2, 0, 0, 1, …): squared distance 2, σ = 30.
    assert graph_mmd(path, triangle, "orbit") == pytest.approx(2 - 2 * math.exp(-2 / 1800))
    assert graph_mmd(path, triangle, "orbit", sigma=1.0) == pytest.approx(2 - 2 * math.exp(-1))
    # Biased estimator: within-set terms include the diagonal; two paths vs one triangle.
    assert graph_mmd(path * 2, triangle, "degree") == pytest.approx(2 - 2 * math.exp(-((2 / 3) ** 2) / 2))


def test_graph_mmd_rejects_bad_input():
    graphs = [nx.path_graph(3)]
    with pytest.raises(ValueError, match="statistic must be one of"):
        graph_mmd(graphs, graphs, "spectral")
    with pytest.raises(ValueError, match=r"generated\[1\] has no nodes"):
        graph_mmd([nx.path_graph(2), nx.Graph()], graphs, "degree")
    with pytest.raises(ValueError, match="reference must hold at least one graph"):
        graph_mmd(graphs, [], "orbit")
    with pytest.raises(ValueError, match="sigma"):
        graph_mmd(graphs, graphs, "orbit", sigma=0.0)


def test_draw_graphs_fills_panels_and_hides_spares():
    fig, axes = plt.subplots(2, 3)
    assert isinstance(draw_graphs(ego_graphs(4, seed=0), axes), Figure)
    assert [ax.get_visible() for ax in axes.ravel()] == [True] * 4 + [False] * 2
    with pytest.raises(ValueError, match="axes has 6 panels"):
        draw_graphs(ego_graphs(7, seed=0), axes)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------
# GraphEnergy
# ---------------------------------------------------------------------------------------------------------
def test_graph_energy_maps_bit_batches_to_scalars():
    energy = GraphEnergy(max_nodes=18)
    bits = graphs_to_bits(ego_graphs(8, seed=0), 18)
    assert energy(bits).shape == (8,)
    assert energy(bits.long()).shape == (8,)  # cast to the parameters' dtype
    with pytest.raises(ValueError, match=r"x must have shape \(B, 153\)"):
        energy(torch.zeros(2, 152))


@pytest.mark.parametrize("bad", [dict(max_nodes=1), dict(hidden=0), dict(depth=0), dict(activation="gelu")])
def test_graph_energy_rejects_bad_configuration(bad):
    with pytest.raises(ValueError):
        GraphEnergy(**(dict(max_nodes=5) | bad))


def permute_bits(bits, max_nodes, perm):
    adjacency = bits_to_adjacency(bits, max_nodes)[:, perm][:, :, perm]
    rows, cols = torch.triu_indices(max_nodes, max_nodes, offset=1)
    return adjacency[:, rows, cols]


def test_graph_energy_is_permutation_invariant_but_sees_structure():
    energy = GraphEnergy(max_nodes=12)
    bits = graphs_to_bits(ego_graphs(6, max_nodes=12, seed=1), 12)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(0))  # also moves padding nodes
    relabelled = permute_bits(bits, 12, perm)
    assert not torch.equal(relabelled, bits)
    torch.testing.assert_close(energy(relabelled), energy(bits), atol=1e-5, rtol=1e-5)
    # An MLP on the same bits is not invariant: the check above can fail.
    mlp = MLPEnergy(in_dim=num_pairs(12), hidden=32, depth=2)
    assert (mlp(relabelled) - mlp(bits)).abs().max() > 1e-3
    # Same numbers of nodes and edges, different degrees: different energies. (A per-node mean of the
    # messages would give equal energies here: every node has neighbours and non-neighbours.)
    chair = nx.Graph([(0, 1), (0, 2), (0, 3), (3, 4)])
    values = GraphEnergy(max_nodes=5)(graphs_to_bits([nx.path_graph(5), chair], 5))
    assert (values[0] - values[1]).abs() > 1e-4


def test_graph_energy_has_finite_bit_gradients_and_works_in_float64():
    energy = GraphEnergy(max_nodes=10)
    bits = graphs_to_bits(ego_graphs(5, max_nodes=10, seed=2), 10)
    values, grad = energy_and_grad(energy, bits)
    assert grad.shape == bits.shape and torch.isfinite(grad).all() and grad.abs().sum() > 0
    energy64 = GraphEnergy(max_nodes=10).double()
    values64, grad64 = energy_and_grad(energy64, bits.double())
    assert values64.dtype == grad64.dtype == torch.float64 and torch.isfinite(grad64).all()
    tiny = GraphEnergy(max_nodes=4, hidden=4, depth=2).double()
    relaxed = torch.rand(3, num_pairs(4), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(tiny, (relaxed,))


# ---------------------------------------------------------------------------------------------------------
# Sampling on a node set
# ---------------------------------------------------------------------------------------------------------
def test_node_pair_mask_by_hand_and_sample_node_counts():
    mask = node_pair_mask(torch.tensor([3, 2, 4]), 4)  # bits (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
    assert mask.tolist() == [[1, 1, 0, 1, 0, 0], [1, 0, 0, 0, 0, 0], [1] * 6]
    graphs = [nx.path_graph(3), nx.path_graph(5)]
    counts = sample_node_counts(graphs, 2000, generator=torch.Generator().manual_seed(0))
    assert set(counts.tolist()) == {3, 5} and abs((counts == 3).float().mean().item() - 0.5) < 0.05


class _PairEnergy(torch.nn.Module):
    """A fixed quadratic energy on bits, ``E(x) = x W x + b x``, exactly enumerable on 6 bits."""

    def __init__(self, dim, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(dim, dim, generator=g, dtype=torch.float64)
        self.bias = torch.randn(dim, generator=g, dtype=torch.float64)

    def forward(self, x):
        return ((x @ self.weight) * x).sum(1) + x @ self.bias


def _exact_conditional(energy, allowed):
    """p(x | bits outside ``allowed`` are 0) over all 2^|allowed| states, as a dict state -> probability."""
    states = torch.zeros(2 ** len(allowed), energy.bias.shape[0], dtype=torch.float64)
    for k, bits in enumerate(itertools.product((0, 1), repeat=len(allowed))):
        states[k, allowed] = torch.tensor(bits, dtype=torch.float64)
    probs = torch.softmax(-energy(states), 0)
    return {tuple(s.int().tolist()): p.item() for s, p in zip(states, probs)}


def test_gibbs_within_nodes_samples_the_conditional_on_each_node_set():
    torch.manual_seed(0)
    energy = _PairEnergy(6)  # max_nodes = 4
    counts = torch.tensor([3, 4] * 1500)  # interleaved: the sampler must sort chains and restore their order
    x = gibbs_within_nodes(energy, torch.zeros(3000, 6, dtype=torch.float64), counts, n_sweeps=6)
    assert (x * (1 - node_pair_mask(counts, 4).double())).sum() == 0, "a padding bit was switched on"
    for n, allowed in ((3, [0, 1, 3]), (4, list(range(6)))):
        exact = _exact_conditional(energy, allowed)
        chains = x[counts == n]
        empirical = {}
        for state in map(tuple, chains.int().tolist()):
            empirical[state] = empirical.get(state, 0) + 1 / len(chains)
        tv = 0.5 * sum(abs(empirical.get(s, 0) - p) for s, p in exact.items())
        assert set(empirical) <= set(exact) and tv < 0.08, (n, tv)  # sampling noise of 1500 draws: about 0.03-0.06


def test_gibbs_within_nodes_rejects_bad_input():
    energy = _PairEnergy(6)
    zeros = torch.zeros(2, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="outside"):
        gibbs_within_nodes(energy, torch.eye(2, 6, dtype=torch.float64).flip(1), torch.tensor([2, 3]))
    with pytest.raises(ValueError, match="node_counts"):
        gibbs_within_nodes(energy, zeros, torch.tensor([2, 5]))
    with pytest.raises(ValueError, match="node_counts"):
        gibbs_within_nodes(energy, zeros, torch.tensor([2.0, 3.0]))
    with pytest.raises(ValueError, match="node_counts"):
        gibbs_within_nodes(energy, zeros, torch.tensor([2, 3, 4]))
    with pytest.raises(ValueError, match="columns"):
        gibbs_within_nodes(energy, torch.zeros(2, 5), torch.tensor([2, 3]))
    with pytest.raises(ValueError, match="n_sweeps"):
        gibbs_within_nodes(energy, zeros, torch.tensor([2, 3]), n_sweeps=0)
    with pytest.raises(ValueError, match="x"):
        gibbs_within_nodes(energy, zeros + 0.5, torch.tensor([2, 3]))
    with pytest.raises(ValueError, match="NaN"):
        gibbs_within_nodes(lambda b: energy(b) * float("nan"), zeros, torch.tensor([2, 3]))
    with pytest.raises(ValueError, match="max_nodes"):
        node_pair_mask(torch.tensor([2]), 1)
    with pytest.raises(ValueError, match="graphs"):
        sample_node_counts([], 3)


# ---------------------------------------------------------------------------------------------------------
# Ratio matching on a node set
# ---------------------------------------------------------------------------------------------------------
def _within_nodes_by_loop(energy, x, counts):
    """The objective bit by bit: sum over the allowed flips of exp(2 (E(x) - E(x_-i))), batch mean."""
    mask = node_pair_mask(counts, 4)
    total = 0.0
    for b in range(x.shape[0]):
        for i in range(x.shape[1]):
            if mask[b, i]:
                flipped = x[b : b + 1].clone()
                flipped[0, i] = 1 - flipped[0, i]
                total += torch.exp(2 * (energy(x[b : b + 1]) - energy(flipped))).item()
    return total / x.shape[0]


def test_ratio_matching_within_nodes_equals_the_sum_over_allowed_flips():
    energy = _PairEnergy(6, seed=1)
    counts = torch.tensor([2, 3, 4, 3])
    x = (torch.rand(4, 6, generator=torch.Generator().manual_seed(0)) < 0.5).double() * node_pair_mask(counts, 4)
    exact, logs = ratio_matching_within_nodes(energy, x, counts)
    assert math.isclose(exact.item(), _within_nodes_by_loop(energy, x, counts), rel_tol=1e-10)
    assert logs["max_log_term"].isfinite()
    full = torch.full((4,), 4)  # every pair allowed: plain ratio matching
    assert torch.allclose(ratio_matching_within_nodes(energy, x, full)[0], ratio_matching(energy, x)[0])
    # s >= every graph's pair count: the sampled estimate takes every allowed flip once, so it is exact.
    assert torch.allclose(ratio_matching_within_nodes(energy, x, counts, n_samples=6)[0], exact)
    # s = 1: one allowed term per graph, so the estimate lies between the smallest and the full sum; the
    # one-pair graph (n = 2) contributes its single term every time.
    torch.manual_seed(0)
    draws = torch.stack([ratio_matching_within_nodes(energy, x, counts, n_samples=1)[0] for _ in range(200)])
    assert (draws < exact).all() and (draws > 0).all() and draws.std() > 0
    one_pair = ratio_matching_within_nodes(energy, x[:1], counts[:1], n_samples=1)[0]
    assert torch.allclose(one_pair, ratio_matching_within_nodes(energy, x[:1], counts[:1])[0])


def test_ratio_matching_within_nodes_ignores_padding_and_trains_the_energy():
    torch.manual_seed(0)
    x = torch.tensor([[1.0, 1, 0, 0, 0, 0], [0, 1, 0, 1, 0, 0]])
    # On 3 nodes, bits (0,3) (1,3) (2,3) are padding. Switching one on would lower this energy by 200, a
    # ratio term of e^400 (inf in float32): excluding those flips must keep the loss finite.
    def steep(bits):
        return -200.0 * bits[:, [2, 4, 5]].sum(1) + bits[:, 0]

    for s in (None, 2, 6):
        loss, _ = ratio_matching_within_nodes(steep, x, torch.tensor([3, 3]), n_samples=s)
        assert loss.isfinite() and loss > 0, s
    assert not ratio_matching_within_nodes(steep, x, torch.tensor([4, 4]))[0].isfinite()  # the test has power
    counts = torch.tensor([3, 4])
    x = torch.tensor([[1.0, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 1]])
    model = GraphEnergy(4, hidden=8, depth=2)
    for s in (None, 3):
        model.zero_grad()
        ratio_matching_within_nodes(model, x, counts, n_samples=s)[0].backward()
        # Every weight but the readout's last bias (energy differences cancel it) must receive a gradient.
        grads = [p.grad for name, p in model.named_parameters() if not name.endswith(".bias")]
        assert all(g is not None and g.abs().sum() > 0 for g in grads), s


def test_ratio_matching_within_nodes_rejects_bad_input():
    energy = _PairEnergy(6)
    x = torch.zeros(2, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="outside"):
        ratio_matching_within_nodes(energy, torch.eye(2, 6, dtype=torch.float64).flip(1), torch.tensor([2, 3]))
    with pytest.raises(ValueError, match="node_counts"):
        ratio_matching_within_nodes(energy, x, torch.tensor([2, 3, 4]))
    with pytest.raises(ValueError, match="node_counts"):
        ratio_matching_within_nodes(energy, x, torch.tensor([2, 7]))
    with pytest.raises(ValueError, match="n_samples"):
        ratio_matching_within_nodes(energy, x, torch.tensor([2, 3]), n_samples=0)
    with pytest.raises(ValueError, match="x"):
        ratio_matching_within_nodes(energy, x + 0.5, torch.tensor([2, 3]))
    with pytest.raises(ValueError, match="columns"):
        ratio_matching_within_nodes(energy, torch.zeros(2, 5), torch.tensor([2, 3]))


def test_node_set_perturbation_flips_only_node_set_pairs_at_the_stated_rate():
    torch.manual_seed(0)
    counts = torch.tensor([3.0, 4.0, 2.0]).repeat(2000)
    bits = (torch.rand(6000, 6) < 0.5).float() * node_pair_mask(counts.long(), 4)
    rows = torch.cat([bits, counts[:, None]], 1)
    allowed = node_pair_mask(counts.long(), 4)
    for epsilon in (0.2, None):
        y = NodeSetPerturbation(4, epsilon).sample_y(rows)
        assert torch.equal(y[:, -1], counts), "the node count must not change"
        flips = (y[:, :-1] != bits).float()
        assert (flips * (1 - allowed)).sum() == 0, "a padding bit was flipped"
        if epsilon is None:
            assert (flips.sum(1) == 1).all()
            two_nodes = flips[counts == 2]  # one allowed pair: always bit 0
            assert (two_nodes[:, 0] == 1).all()
            per_bit = flips[counts == 3][:, [0, 1, 3]].mean(0)  # uniform over the 3 allowed pairs
            assert (per_bit - 1 / 3).abs().max() < 0.05, per_bit
        else:
            assert abs(flips.sum().item() / allowed.sum().item() - epsilon) < 0.02
    with pytest.raises(ValueError, match="epsilon"):
        NodeSetPerturbation(4, 1.5)
    with pytest.raises(ValueError, match="x"):
        NodeSetPerturbation(4, 0.1).check(torch.zeros(2, 6))
