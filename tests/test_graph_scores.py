"""Pseudo-log-likelihood against exact enumeration, hubs of hand-made graphs, and the graph scorecard."""

from __future__ import annotations

import math

import networkx as nx
import pytest
import torch

from ebmlib.data import all_binary_states, ego_graphs, graphs_to_bits, node_pair_mask
from ebmlib.metrics import graph_mmd, has_hub, pseudo_log_likelihood, score_graph_samples
from ebmlib.nets import MLPEnergy


def test_pseudo_log_likelihood_matches_exact_conditionals():
    # p(x_i | x_-i) = p(x) / (p(x) + p(x^(i))) from the enumerated joint: catches a sign error in the energy
    # difference (it gives log p(flip) instead of log p(keep)) or a flip of the wrong bit.
    d = 5
    net = MLPEnergy(d, hidden=16, depth=2).double()
    with torch.no_grad():
        states = all_binary_states(d, dtype=torch.float64)
        log_p = torch.log_softmax(-net(states), 0)
    weights = 2 ** torch.arange(d - 1, -1, -1)
    index = (states.long() * weights).sum(1)  # row k of all_binary_states spells k
    expected = torch.zeros(len(states), dtype=torch.float64)
    for i in range(d):
        flipped = index ^ (1 << (d - 1 - i))
        expected += log_p[index] - torch.logaddexp(log_p[index], log_p[flipped])
    ours = pseudo_log_likelihood(net, states)
    assert ours.shape == (2**d,) and ours.dtype == torch.float64
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(pseudo_log_likelihood(net, states, batch_size=3), expected, rtol=0, atol=1e-12)


def test_pseudo_log_likelihood_of_independent_bits_is_their_log_likelihood_on_the_mask():
    rho = torch.tensor([0.2, 0.7, 0.5, 0.9], dtype=torch.float64)

    def bernoulli_energy(x):
        return -(x @ torch.log(rho) + (1 - x) @ torch.log1p(-rho))

    x = torch.tensor([[1.0, 0, 1, 1], [0, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
    exact = ((x * rho.log() + (1 - x) * torch.log1p(-rho)) * mask).sum(1)
    torch.testing.assert_close(pseudo_log_likelihood(bernoulli_energy, x, mask=mask), exact)
    assert pseudo_log_likelihood(bernoulli_energy, x, mask=torch.zeros_like(x)).tolist() == [0.0, 0.0, 0.0]


def test_pseudo_log_likelihood_rejects_bad_input():
    x = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="x"):
        pseudo_log_likelihood(lambda z: z.sum(1), x + 0.5)
    with pytest.raises(ValueError, match="mask"):
        pseudo_log_likelihood(lambda z: z.sum(1), x, mask=torch.ones(2, 3))
    with pytest.raises(ValueError, match="mask"):
        pseudo_log_likelihood(lambda z: z.sum(1), x, mask=torch.full((2, 2), 2.0))
    with pytest.raises(ValueError, match="energy_fn"):
        pseudo_log_likelihood(lambda z: z, x)
    with pytest.raises(ValueError, match="energy_fn"):
        pseudo_log_likelihood(lambda z: z.sum(1) * math.nan, x)
    with pytest.raises(ValueError, match="batch_size"):
        pseudo_log_likelihood(lambda z: z.sum(1), x, batch_size=0)


def _bits(graphs, max_nodes=6):
    return graphs_to_bits(graphs, max_nodes)


def test_has_hub_on_hand_made_graphs():
    graphs = [nx.star_graph(4), nx.path_graph(4), nx.complete_graph(3), nx.cycle_graph(5), nx.empty_graph(3),
              nx.path_graph(2)]
    counts = torch.tensor([5, 4, 3, 5, 3, 2])
    # star: its centre; path on 4: no node of degree 3; triangle: every node; 5-cycle: degrees 2 < 4; no edges:
    # none; a single edge on 2 nodes: both ends.
    assert has_hub(_bits(graphs), counts).tolist() == [True, False, True, False, False, True]
    # The same path on 4 nodes counted as a graph on 2 nodes would put edges outside its node set.
    with pytest.raises(ValueError, match="node set"):
        has_hub(_bits([nx.path_graph(4)]), torch.tensor([2]))
    with pytest.raises(ValueError, match="node_counts"):
        has_hub(_bits(graphs), counts[:-1])
    with pytest.raises(ValueError, match="bits"):
        has_hub(_bits(graphs) * 2, counts)


def test_score_graph_samples_matches_graph_mmd_and_counts():
    ego = ego_graphs(30, seed=1)
    samples, reference = ego[:12], ego[12:]
    max_nodes = max(g.number_of_nodes() for g in ego)
    bits = torch.cat([graphs_to_bits(samples, max_nodes), torch.zeros(2, max_nodes * (max_nodes - 1) // 2)])
    counts = torch.tensor([g.number_of_nodes() for g in samples] + [3, 4])
    scores = score_graph_samples(bits, counts, reference)
    for stat in ("degree", "clustering", "orbit"):
        assert scores[stat] == pytest.approx(graph_mmd(samples, reference, stat), abs=1e-12)
    assert scores["avg"] == pytest.approx(sum(scores[s] for s in ("degree", "clustering", "orbit")) / 3)
    assert scores["empty graphs"] == 2
    assert scores["edge density in node set"] == pytest.approx(
        (bits.sum() / node_pair_mask(counts, max_nodes).sum()).item())
    assert scores["share with a hub"] == pytest.approx(12 / 14)  # every ego graph has its ego as a hub
    empty = score_graph_samples(torch.zeros(2, 3), torch.tensor([2, 3]), reference)
    assert math.isnan(empty["avg"]) and empty["empty graphs"] == 2 and empty["share with a hub"] == 0.0
    with pytest.raises(ValueError, match="reference"):
        score_graph_samples(torch.zeros(2, 3), torch.tensor([2, 3]), [])
    with pytest.raises(ValueError, match="reference"):
        score_graph_samples(torch.zeros(2, 3), torch.tensor([2, 3]), [nx.DiGraph()])
