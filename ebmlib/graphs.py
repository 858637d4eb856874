"""Small undirected graphs for graph generation with EBMs (RMwGGIS §5.2, the Ego-small benchmark).

Six pieces: Ego-small-like data (a synthetic citation-like network, or the real Citeseer file when you
have it); the adjacency-bits representation that discrete samplers and :class:`ebmlib.nets.GraphEnergy` work
on; Gibbs sampling restricted to a node set (:func:`gibbs_within_nodes`) and ratio matching of the same
node-set conditional (:func:`ratio_matching_within_nodes`); the GraphRNN evaluation (MMD² of degree,
clustering and orbit statistics); and a plotting helper.

Bit order: a graph on ``n`` nodes is the strict upper triangle of its ``n × n`` adjacency matrix read row by
row, ``(0,1), (0,2), …, (0,n-1), (1,2), …, (n-2,n-1)`` (the order of ``torch.triu_indices(n, n, 1)``), so
there are ``n (n - 1) / 2`` bits. Node ``i`` is the ``i``-th node of ``list(graph)``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from functools import cache, lru_cache, partial
from pathlib import Path

import networkx as nx
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from ebmlib.discrepancy import Perturbation
from ebmlib.losses import rmwggis_proposal
from ebmlib.metrics import mmd2
from ebmlib.utils import (
    check_binary,
    check_energy_output,
    check_int,
    check_positive,
    check_probability,
    check_tensor,
    read_verified,
)

CITESEER_CITES_SHA256: str | None = None
"""SHA-256 of the LINQS ``citeseer.cites`` file. ``None``: no checksum from a reliable source could be read
when this was written, so :func:`load_citeseer_ego` needs ``expected_sha256`` until one is pinned here."""

CITESEER_URL = "https://linqs-data.soe.ucsc.edu/public/lbc/citeseer.tgz"
"""Where the LINQS Citeseer archive (``citeseer/citeseer.cites`` inside) is published."""


# ---------------------------------------------------------------------------------------------------------
# Ego-small-like data
# ---------------------------------------------------------------------------------------------------------
def citation_like_graph(
    n_nodes: int = 3000,
    *,
    seed: int,
    link_probs: Sequence[float] = (0.5, 0.3, 0.2),
    triad_prob: float = 0.4,
) -> nx.Graph:
    """A connected, sparse graph with citation-network statistics (Holme–Kim growth, random out-degree).

    Starting from a triangle, each new node (a new paper) cites ``k`` earlier ones, ``P(k = j) =
    link_probs[j-1]``. The first citation is preferential (probability ∝ degree: heavy-tailed degrees);
    each further one, with probability ``triad_prob``, goes to a neighbour of the first (closing a
    triangle: clustering), otherwise it is again preferential. The defaults (mean ``k = 1.7``) give an
    average degree of about 3.4 and an average clustering of about 0.16, close to the largest connected
    component of Citeseer (3.47 and 0.17), from which Ego-small is drawn; ``nx.powerlaw_cluster_graph``
    cannot, as its fixed ``m`` gives average degree ``2m`` (a tree or 4).

    Parameters
    ----------
    n_nodes, seed
        Number of nodes (at least 4) and NumPy seed; equal seeds give equal graphs.
    link_probs
        Probabilities of citing 1, 2, … earlier papers; they must sum to 1.
    triad_prob
        Probability that a further citation closes a triangle, in ``[0, 1]``.
    """
    check_int(n_nodes, "n_nodes", minimum=4)
    check_int(seed, "seed", minimum=0)
    check_probability(triad_prob, "triad_prob", closed=True)
    probs = np.asarray(link_probs, dtype=float)
    if probs.ndim != 1 or probs.size == 0 or (probs < 0).any() or abs(probs.sum() - 1) > 1e-8:
        raise ValueError(f"link_probs must be a non-empty sequence of probabilities summing to 1, got {link_probs}")
    rng = np.random.default_rng(seed)
    graph = nx.complete_graph(3)
    endpoints = [0, 0, 1, 1, 2, 2]  # every node once per incident edge: uniform draws are ∝ degree
    n_links = rng.choice(len(probs), size=n_nodes, p=probs) + 1
    for new in range(3, n_nodes):
        first = endpoints[rng.integers(len(endpoints))]
        targets = [first]
        while len(targets) < min(n_links[new], new):
            friends = [u for u in graph.adj[first] if u not in targets]
            if friends and rng.random() < triad_prob:
                targets.append(friends[rng.integers(len(friends))])
            elif (u := endpoints[rng.integers(len(endpoints))]) not in targets:
                targets.append(u)
        for target in targets:
            graph.add_edge(new, target)
            endpoints += [new, target]
    return graph


def _sample_egos(graph: nx.Graph, n_graphs: int, min_nodes: int, max_nodes: int, seed: int) -> list[nx.Graph]:
    """``n_graphs`` radius-1 ego graphs of distinct random centres, sized in ``[min_nodes, max_nodes]``."""
    check_int(n_graphs, "n_graphs", minimum=1)
    check_int(min_nodes, "min_nodes", minimum=2)
    check_int(max_nodes, "max_nodes", minimum=min_nodes)
    check_int(seed, "seed", minimum=0)
    centres = [v for v in graph if min_nodes <= graph.degree(v) + 1 <= max_nodes]
    if len(centres) < n_graphs:
        raise ValueError(f"n_graphs={n_graphs}: only {len(centres)} ego graphs have {min_nodes}-{max_nodes} nodes")
    egos = []
    for i in np.random.default_rng(seed).choice(len(centres), size=n_graphs, replace=False):
        # Centre first, then its neighbours: node order is arbitrary for a permutation-invariant energy.
        nodes = [centres[i], *graph.adj[centres[i]]]
        index = {node: k for k, node in enumerate(nodes)}
        ego = nx.Graph()
        ego.add_nodes_from(range(len(nodes)))
        ego.add_edges_from((index[u], index[v]) for u, v in graph.subgraph(nodes).edges())
        egos.append(ego)
    return egos


def ego_graphs(
    n_graphs: int = 200, *, min_nodes: int = 4, max_nodes: int = 18, seed: int, n_nodes: int = 3000
) -> list[nx.Graph]:
    """Ego-small-like data: radius-1 ego graphs of random centres of a :func:`citation_like_graph`.

    Built like Ego-small (GraphRNN's ``citeseer_small``): every node whose ego graph (the node, its
    neighbours and all edges among them) has ``min_nodes``–``max_nodes`` nodes is a candidate centre, and
    ``n_graphs`` distinct centres are drawn uniformly. Each graph is relabelled ``0..n-1``, centre = 0.

    How it differs from the real Ego-small: the host network is synthetic (same average degree and
    clustering as Citeseer's largest component, but not its degree sequence or community structure), so
    statistics match only roughly. Over seeds 0–4 the graphs have about 5.8 nodes and 6.2 edges on average
    (Citeseer's Ego-small candidates: 6.2 and 7.8), 43% have 4 nodes (35%) and the mean clustering
    coefficient is 0.40 (0.40). GraphRNN's code kept graphs of up to 20 nodes (19–20 are rare) and drew
    from the Planetoid copy of Citeseer; see :func:`load_citeseer_ego`. Returns ``n_graphs`` connected
    graphs; equal seeds give equal lists.
    """
    return _sample_egos(citation_like_graph(n_nodes, seed=seed), n_graphs, min_nodes, max_nodes, seed)


def load_citeseer_ego(
    root: str | Path,
    *,
    n_graphs: int = 200,
    min_nodes: int = 4,
    max_nodes: int = 18,
    seed: int,
    expected_sha256: str | None = None,
) -> list[nx.Graph]:
    """Ego-small from the real Citeseer citation graph in ``root/citeseer.cites`` (not downloaded here).

    Get ``citeseer.tgz`` from :data:`CITESEER_URL` and unpack it; ``citeseer.cites`` holds one citation per
    line, ``"<cited id> <citing id>"`` with string ids. The file's SHA-256 is checked first, then the graph
    is read undirected, self-citations are dropped, and the ego graphs are drawn as in :func:`ego_graphs`
    from its largest connected component (as GraphRNN did). Raises ``ValueError`` (naming the file) when
    no checksum is given, on a mismatch or a malformed line, and ``FileNotFoundError`` without the file.

    Parameters
    ----------
    root
        Folder holding ``citeseer.cites``.
    expected_sha256
        Hex digest the file must have; default :data:`CITESEER_CITES_SHA256`. While that constant is
        ``None`` this argument is required: compute the digest of a copy you trust and pin it.
    """
    path = Path(root) / "citeseer.cites"
    expected = expected_sha256 if expected_sha256 is not None else CITESEER_CITES_SHA256
    if expected is None:
        raise ValueError("expected_sha256: no checksum is pinned in CITESEER_CITES_SHA256; pass the file's SHA-256")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: unpack {CITESEER_URL} and pass its citeseer/ folder as root")
    text = read_verified(path, expected).decode()
    graph = nx.Graph()
    for number, line in enumerate(text.splitlines(), start=1):
        ids = line.split()
        if len(ids) not in (0, 2):
            raise ValueError(f"{path}, line {number}: expected '<cited> <citing>', got {line!r}")
        if ids and ids[0] != ids[1]:  # skip blank lines and self-citations
            graph.add_edge(*ids)
    if graph.number_of_edges() == 0:
        raise ValueError(f"{path} holds no citations")
    largest = graph.subgraph(max(nx.connected_components(graph), key=len))
    return _sample_egos(largest, n_graphs, min_nodes, max_nodes, seed)


# ---------------------------------------------------------------------------------------------------------
# Adjacency bits
# ---------------------------------------------------------------------------------------------------------
def num_pairs(max_nodes: int) -> int:
    """Number of adjacency bits ``max_nodes (max_nodes - 1) / 2`` of a graph on ``max_nodes`` nodes."""
    check_int(max_nodes, "max_nodes", minimum=2)
    return max_nodes * (max_nodes - 1) // 2


def _nodes_of_bits(x: Tensor) -> int:
    """The ``n`` with ``n (n - 1) / 2`` equal to the number of columns of bits ``x`` ``(B, D)``."""
    n = int(round((1 + math.sqrt(1 + 8 * x.shape[1])) / 2))
    if num_pairs(n) != x.shape[1]:
        raise ValueError(f"x must have n (n - 1) / 2 columns for some n, got {x.shape[1]}")
    return n


def _check_simple(graph: nx.Graph, name: str) -> None:
    if not isinstance(graph, nx.Graph) or graph.is_directed() or graph.is_multigraph():
        raise ValueError(f"{name} must be an undirected simple networkx.Graph, got {type(graph).__name__}")
    if nx.number_of_selfloops(graph) > 0:
        raise ValueError(f"{name} has self-loops, which adjacency bits cannot represent")


def graphs_to_bits(graphs: Sequence[nx.Graph], max_nodes: int) -> Tensor:
    """Adjacency bits of graphs with at most ``max_nodes`` nodes, shape ``(N, max_nodes (max_nodes-1) / 2)``.

    Smaller graphs are padded with isolated nodes (zero bits); see the module docstring for the order.
    Returns the default floating dtype, so that gradients in the bits exist.
    """
    if len(graphs) == 0:
        raise ValueError("graphs must not be empty")
    bits = np.zeros((len(graphs), num_pairs(max_nodes)))
    rows, cols = np.triu_indices(max_nodes, k=1)
    for i, graph in enumerate(graphs):
        _check_simple(graph, f"graphs[{i}]")
        n = graph.number_of_nodes()
        if n > max_nodes:
            raise ValueError(f"graphs[{i}] has {n} nodes, more than max_nodes={max_nodes}")
        adjacency = np.zeros((max_nodes, max_nodes))
        adjacency[:n, :n] = nx.to_numpy_array(graph, nodelist=list(graph))
        bits[i] = adjacency[rows, cols]
    return torch.as_tensor(bits, dtype=torch.get_default_dtype())


def bits_to_adjacency(bits: Tensor, max_nodes: int) -> Tensor:
    """Symmetric, zero-diagonal adjacency matrices ``(N, max_nodes, max_nodes)`` from bits ``(N, D)``.

    Differentiable in ``bits`` (``∂A_ij / ∂bit = 1`` for both ``(i, j)`` and ``(j, i)``), so an energy built on
    it has the bit gradients Gibbs-with-Gradients and RMwGGIS need. Values are not required to be 0/1;
    floating inputs keep their dtype, others become the default floating dtype.
    """
    check_tensor(bits, "bits", shape=(None, num_pairs(max_nodes)), finite=False)
    if not bits.is_floating_point():
        bits = bits.to(torch.get_default_dtype())
    rows, cols = torch.triu_indices(max_nodes, max_nodes, offset=1, device=bits.device)
    upper = bits.new_zeros(bits.shape[0], max_nodes, max_nodes)
    upper[:, rows, cols] = bits  # index_put: autograd routes the gradient back to ``bits``
    return upper + upper.transpose(1, 2)


def bits_to_graphs(bits: Tensor, max_nodes: int, *, drop_isolated: bool = True) -> list[nx.Graph]:
    """networkx graphs from 0/1 bits ``(N, D)``; the inverse of :func:`graphs_to_bits`.

    With ``drop_isolated`` (default) isolated nodes — padding, or nodes a sampler disconnected — are removed
    and the rest relabelled ``0..k-1`` in order; otherwise every graph has ``max_nodes`` nodes.
    """
    check_tensor(bits, "bits", shape=(None, num_pairs(max_nodes)))
    check_binary(bits, "bits")
    rows, cols = np.triu_indices(max_nodes, k=1)
    graphs = []
    for sample in bits.detach().cpu().numpy():
        graph = nx.Graph()
        graph.add_nodes_from(range(max_nodes))
        on = sample != 0
        graph.add_edges_from(zip(rows[on].tolist(), cols[on].tolist()))
        if drop_isolated:
            graph.remove_nodes_from(list(nx.isolates(graph)))
            graph = nx.convert_node_labels_to_integers(graph)
        graphs.append(graph)
    return graphs


# ---------------------------------------------------------------------------------------------------------
# Sampling graphs on a given node set
# ---------------------------------------------------------------------------------------------------------
def node_pair_mask(node_counts: Tensor, max_nodes: int) -> Tensor:
    """The bits a graph on its first ``n_b`` nodes may use: ``(B, D)`` 0/1 floats, ``D = max_nodes (max_nodes-1)/2``.

    Bit ``(i, j)``, ``i < j``, is 1 for graph ``b`` when ``j < node_counts[b]``; the other nodes are padding.
    """
    counts = _check_node_counts(node_counts, max_nodes)
    _, cols = torch.triu_indices(max_nodes, max_nodes, offset=1, device=counts.device)
    return (cols < counts[:, None]).to(torch.get_default_dtype())


def sample_node_counts(
    graphs: Sequence[nx.Graph], n_samples: int, *, generator: torch.Generator | None = None
) -> Tensor:
    """``n_samples`` node counts drawn with replacement from those of ``graphs``, shape ``(n_samples,)``.

    The empirical distribution that GraphRNN-style generators use to fix the size of each new graph.
    """
    if len(graphs) == 0:
        raise ValueError("graphs must not be empty")
    check_int(n_samples, "n_samples", minimum=1)
    counts = torch.tensor([graph.number_of_nodes() for graph in graphs])
    return counts[torch.randint(len(graphs), (n_samples,), generator=generator)]


def _check_node_counts(node_counts: Tensor, max_nodes: int) -> Tensor:
    check_int(max_nodes, "max_nodes", minimum=2)
    check_tensor(node_counts, "node_counts", ndim=1)
    if node_counts.is_floating_point() or node_counts.dtype == torch.bool:
        raise ValueError(f"node_counts must hold integers, got dtype {node_counts.dtype}")
    if ((node_counts < 2) | (node_counts > max_nodes)).any():
        raise ValueError(f"node_counts must lie in [2, max_nodes={max_nodes}]")
    return node_counts


def gibbs_within_nodes(
    energy_fn: Callable[[Tensor], Tensor], x: Tensor, node_counts: Tensor, n_sweeps: int = 1
) -> Tensor:
    """Systematic-scan Gibbs sampling of adjacency bits, graph ``b`` restricted to its first ``node_counts[b]`` nodes.

    Samples ``p(x_in | x_out = 0) ∝ exp(-E(x))`` where ``x_in`` are the bits of :func:`node_pair_mask` and the
    padding bits ``x_out`` stay 0: a sweep resamples every allowed bit once from its exact conditional,
    ``p(flip) = sigmoid(E(x) - E(x^{(i)}))``, as :func:`ebmlib.samplers.gibbs_binary` does for all bits. This is
    sampling conditioned on the number of nodes, as GraphRNN-style generators do: the energy is still defined
    on the padded ``max_nodes`` adjacency, but no chain can grow beyond its node set into regions of the
    padded space that training never visited. Chains are sorted by node count, so bit ``(i, j)`` is resampled
    on a leading block of chains only (those with ``n_b > j``), and a sweep costs about ``Σ_b n_b (n_b - 1)/2``
    single-graph energy evaluations instead of ``B · D``.

    Parameters
    ----------
    energy_fn
        Maps bits ``(B, D)`` to energies ``(B,)``.
    x
        Initial 0/1 states, floating dtype, shape ``(B, D)``; 0 outside each chain's node set (e.g. all zeros:
        chains started from empty graphs).
    node_counts
        Integer tensor ``(B,)`` in ``[2, max_nodes]``, on any device (see :func:`sample_node_counts`).
    n_sweeps
        Number of sweeps over the allowed bits.

    Returns
    -------
    Tensor
        Final states ``(B, D)``, in the order of the input chains.
    """
    check_tensor(x, "x", ndim=2, floating=True)
    check_binary(x, "x")
    max_nodes = _nodes_of_bits(x)
    check_int(n_sweeps, "n_sweeps", minimum=1)
    counts = _check_node_counts(node_counts, max_nodes).cpu()
    if counts.shape[0] != x.shape[0]:
        raise ValueError(f"node_counts must have one entry per chain ({x.shape[0]}), got {counts.shape[0]}")
    if (x * (1 - node_pair_mask(counts, max_nodes).to(x))).any():
        raise ValueError("x has edges outside its chain's node set; start from states inside node_pair_mask")
    order = torch.argsort(counts, descending=True)
    _, cols = torch.triu_indices(max_nodes, max_nodes, offset=1)
    # Chains with n_b > j form a prefix after sorting; their number per bit is known before the loop, so the
    # loop needs no host synchronisation.
    n_active = (counts[order][None, :] > cols[:, None]).sum(1).tolist()
    with torch.no_grad():
        x = x[order.to(x.device)].clone()
        energy = check_energy_output(energy_fn(x), x.shape[0], "energy_fn", finite=False)
        finite = torch.isfinite(energy).all()
        for _ in range(n_sweeps):
            for bit, k in enumerate(n_active):
                if k == 0:
                    continue
                flipped = x[:k].clone()
                flipped[:, bit] = 1 - flipped[:, bit]
                energy_flipped = check_energy_output(energy_fn(flipped), k, "energy_fn", finite=False)
                finite &= torch.isfinite(energy_flipped).all()
                flip = torch.rand_like(energy_flipped) < torch.sigmoid(energy[:k] - energy_flipped)
                x[:k, bit] = torch.where(flip, flipped[:, bit], x[:k, bit])
                energy[:k] = torch.where(flip, energy_flipped, energy[:k])
    if not finite:
        raise ValueError("energy_fn returned NaN or infinite values")
    return x[torch.argsort(order).to(x.device)]


def ratio_matching_within_nodes(
    energy_fn: Callable[[Tensor], Tensor], x: Tensor, node_counts: Tensor, *, n_samples: int | None = None
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""Ratio matching of the model conditioned on each graph's node set: only flips among its nodes count.

    Exact ratio matching (RMwGGIS eq. 4) sums over all ``D`` bit flips, but for padded graphs most flips
    add an edge to a padding node, which the data never do; those terms dominate the loss while the sampler
    (:func:`gibbs_within_nodes`) never visits them. Here the sum runs over the ``P_b = n_b (n_b - 1)/2``
    pairs of graph ``b``'s node set ``S_b`` (:func:`node_pair_mask`), which is ratio matching for the
    conditional :math:`p(x \mid n) \propto e^{-E(x)}` on those bits,

    .. math:: J(x) = \sum_{i \in S_b} e^{2(E(x) - E(x_{-i}))}.

    ``n_samples = s`` gives the biased RMwGGIS estimate (eq. 12) of it: ``min(s, P_b)`` distinct flips drawn
    without replacement from the gradient proposal (eq. 11, :func:`ebmlib.losses.rmwggis_proposal`)
    restricted to ``S_b``, their terms summed; graphs with ``P_b ≤ s`` get the exact sum.

    Parameters
    ----------
    energy_fn
        ``(N, D) -> (N,)``, differentiable in the bits when ``n_samples`` is given.
    x
        0/1 floats ``(B, D)``, zero outside each graph's node set.
    node_counts
        Integers ``(B,)`` in ``[2, max_nodes]``.
    n_samples
        ``None``: exact sum over ``S_b``; otherwise ``s ≥ 1``.

    Returns
    -------
    loss, logs
        Batch mean of ``J``; ``logs`` holds ``objective`` (detached) and ``max_log_term``.
    """
    check_tensor(x, "x", ndim=2, floating=True)
    check_binary(x, "x")
    max_nodes = _nodes_of_bits(x)
    if node_counts.shape != (x.shape[0],):
        raise ValueError(f"node_counts must have shape ({x.shape[0]},), got {tuple(node_counts.shape)}")
    mask = node_pair_mask(_check_node_counts(node_counts, max_nodes).to(x.device), max_nodes).to(x)
    if (x * (1 - mask)).any():
        raise ValueError("x has edges outside its node set (see node_pair_mask)")
    if n_samples is None:
        energy = check_energy_output(energy_fn(x), x.shape[0], "energy_fn", finite=False)
        graph, bit = mask.nonzero(as_tuple=True)  # every allowed flip of every graph, in one batch
        kept = torch.ones_like(bit)
    else:
        check_int(n_samples, "n_samples", minimum=1)
        energy, log_q = rmwggis_proposal(energy_fn, x)
        # Gumbel-top-k on the proposal with the other bits at -inf: a draw without replacement within S_b;
        # draws beyond P_b land on excluded bits and are dropped through `kept`.
        gumbel = -torch.empty_like(log_q).exponential_().log()
        index = (log_q.masked_fill(mask == 0, -math.inf) + gumbel).topk(min(n_samples, x.shape[1]), dim=1).indices
        kept = mask.gather(1, index).reshape(-1)
        graph = torch.arange(x.shape[0], device=x.device).repeat_interleave(index.shape[1])
        bit = index.reshape(-1)
    rows = torch.arange(len(bit), device=x.device)
    flipped = x[graph].clone()
    flipped[rows, bit] = 1 - flipped[rows, bit]
    energy_flipped = check_energy_output(energy_fn(flipped), len(bit), "energy_fn", finite=False)
    # Excluded draws may have huge log-terms (padding flips are untrained): -inf, not 0 * inf = NaN.
    log_terms = (2 * (energy[graph] - energy_flipped)).masked_fill(kept == 0, -math.inf)
    loss = torch.zeros_like(energy).index_add(0, graph, log_terms.exp()).mean()
    max_log = log_terms.max()
    return loss, {"objective": loss.detach(), "max_log_term": max_log.detach()}


class NodeSetPerturbation(Perturbation):
    """Energy-discrepancy noise that flips only pairs of each graph's node set (cf. :func:`gibbs_within_nodes`).

    Rows are ``(D + 1,)``: the adjacency bits followed by the node count ``n`` (as a float), which is never
    changed. ``epsilon`` flips each of the ``n (n - 1)/2`` allowed bits with that probability (the Bernoulli
    perturbation on the node set); ``epsilon=None`` flips one allowed bit chosen uniformly (the grid
    perturbation). Both are symmetric, as energy discrepancy needs. Train an energy ``E`` on bits with
    ``lambda z: E(z[:, :-1])``.
    """

    def __init__(self, max_nodes: int, epsilon: float | None = None) -> None:
        self.max_nodes = check_int(max_nodes, "max_nodes", minimum=2)
        self.epsilon = None if epsilon is None else check_probability(epsilon, "epsilon")

    def check(self, x: Tensor, name: str = "x") -> Tensor:
        check_tensor(x, name, shape=(None, num_pairs(self.max_nodes) + 1), floating=True)
        check_binary(x[:, :-1], name)
        return x

    def sample_y(self, x: Tensor) -> Tensor:
        bits, counts = x[:, :-1], x[:, -1:]
        mask = node_pair_mask(counts[:, 0].long(), self.max_nodes).to(bits)
        if self.epsilon is None:  # argmax of uniform noise over the allowed bits: one uniform allowed bit
            index = (torch.rand_like(bits) + mask).argmax(1, keepdim=True)
            bits = bits.scatter(1, index, 1 - bits.gather(1, index))
        else:
            bits = torch.where((torch.rand_like(bits) < self.epsilon) & (mask > 0), 1 - bits, bits)
        return torch.cat([bits, counts], dim=1)


# ---------------------------------------------------------------------------------------------------------
# GraphRNN statistics
# ---------------------------------------------------------------------------------------------------------
def degree_histogram(graph: nx.Graph) -> np.ndarray:
    """Counts of nodes by degree: entry ``d`` is the number of nodes of degree ``d``, length ``max degree + 1``."""
    _check_simple(graph, "graph")
    return np.asarray(nx.degree_histogram(graph), dtype=float)


def clustering_histogram(graph: nx.Graph, bins: int = 100) -> np.ndarray:
    """Counts of nodes' clustering coefficients in ``bins`` equal bins on ``[0, 1]``, shape ``(bins,)``."""
    _check_simple(graph, "graph")
    check_int(bins, "bins", minimum=1)
    counts, _ = np.histogram(list(nx.clustering(graph).values()), bins=bins, range=(0.0, 1.0))
    return counts.astype(float)


# Induced connected graphlets on 3 and 4 nodes, keyed by their sorted degree sequence (unique among all
# graphs on ≤ 4 nodes), mapping a node's degree inside the graphlet to its orbit in ORCA's numbering
# (Hočevar & Demšar 2014). Orbit 0 is the degree itself.
_GRAPHLET_ORBITS = {
    (1, 1, 2): {1: 1, 2: 2},  # path: ends 1, middle 2
    (2, 2, 2): {2: 3},  # triangle
    (1, 1, 2, 2): {1: 4, 2: 5},  # path: ends 4, inner 5
    (1, 1, 1, 3): {1: 6, 3: 7},  # star: leaves 6, centre 7
    (2, 2, 2, 2): {2: 8},  # 4-cycle
    (1, 2, 2, 3): {1: 9, 2: 10, 3: 11},  # paw: pendant 9, triangle 10, joint 11
    (2, 2, 3, 3): {2: 12, 3: 13},  # diamond: degree-2 nodes 12, degree-3 nodes 13
    (3, 3, 3, 3): {3: 14},  # K4
}
N_ORBITS = 15


@cache
def _orbit_table(size: int) -> np.ndarray:
    """``table[code, degree]`` = orbit, or -1, where ``code`` is the base-``size`` sorted degree sequence."""
    table = np.full((size**size, size), -1)
    for degrees, orbits in _GRAPHLET_ORBITS.items():
        if len(degrees) == size:
            code = sum(d * size**i for i, d in enumerate(degrees))
            for degree, orbit in orbits.items():
                table[code, degree] = orbit
    return table


@lru_cache(maxsize=64)
def _subsets(n: int, size: int) -> np.ndarray:
    return np.array(list(itertools.combinations(range(n), size)), dtype=np.int64).reshape(-1, size)


def orbit_counts(graph: nx.Graph) -> np.ndarray:
    """Exact per-node counts of the 15 orbits of graphlets on 2–4 nodes, shape ``(n, 15)``.

    The statistic ORCA computes with ``orca node 4`` (the binary GraphRNN calls): entry ``[v, k]`` counts the
    *induced* connected subgraphs on 2–4 nodes in which node ``v`` sits in orbit ``k`` (ORCA numbering, see
    ``_GRAPHLET_ORBITS``). Computed by enumerating every 3- and 4-node subset — ``C(n, 4)`` of them — and
    classifying it by its degree sequence, which is exact and fast for Ego-small sizes (3060 subsets at
    ``n = 18``) but grows as ``n⁴``: use ORCA for large graphs.
    """
    _check_simple(graph, "graph")
    adjacency = nx.to_numpy_array(graph, nodelist=list(graph), dtype=np.int64)
    n = adjacency.shape[0]
    counts = np.zeros((n, N_ORBITS), dtype=np.int64)
    counts[:, 0] = adjacency.sum(1)
    for size in (3, 4):
        subsets = _subsets(n, size)
        if len(subsets) == 0:
            continue
        degrees = adjacency[subsets[:, :, None], subsets[:, None, :]].sum(2)  # degrees inside each subset
        code = (np.sort(degrees, axis=1) * size ** np.arange(size)).sum(1)
        orbits = _orbit_table(size)[code[:, None], degrees]
        found = orbits >= 0
        np.add.at(counts, (subsets[found], orbits[found]), 1)
    return counts


def orbit_statistic(graph: nx.Graph) -> np.ndarray:
    """GraphRNN's orbit feature of one graph: :func:`orbit_counts` averaged over nodes, shape ``(15,)``."""
    counts = orbit_counts(graph)
    if counts.shape[0] == 0:
        raise ValueError("graph has no nodes")
    return counts.mean(0)


def _gaussian_emd(a: Tensor, b: Tensor, *, bin_width: float, sigma: float) -> Tensor:
    """``exp(-EMD² / 2σ²)`` between rows of pmfs ``a (n, L)``, ``b (m, L)`` on bins ``bin_width`` apart.

    In 1-D the EMD (ground distance ``|i - j| · bin_width``, GraphRNN uses pyemd) is ``bin_width · ‖CDF_a - CDF_b‖₁``.
    """
    emd = torch.cdist(a.cumsum(1), b.cumsum(1), p=1) * bin_width
    return torch.exp(-(emd**2) / (2 * sigma**2))


def _gaussian(a: Tensor, b: Tensor, *, sigma: float) -> Tensor:
    return torch.exp(-(torch.cdist(a, b, p=2) ** 2) / (2 * sigma**2))


_STATISTICS = {
    # name: (per-graph feature, is a histogram, kernel without sigma, GraphRNN's sigma)
    "degree": (degree_histogram, True, partial(_gaussian_emd, bin_width=1.0), 1.0),
    "clustering": (clustering_histogram, True, partial(_gaussian_emd, bin_width=0.01), 0.1),
    "orbit": (orbit_statistic, False, _gaussian, 30.0),
}


def _features(graphs: Sequence[nx.Graph], name: str, statistic: str) -> list[np.ndarray]:
    if len(graphs) == 0:
        raise ValueError(f"{name} must hold at least one graph")
    for i, graph in enumerate(graphs):
        _check_simple(graph, f"{name}[{i}]")
        if graph.number_of_nodes() == 0:
            # GraphRNN drops empty generated graphs silently; we make the caller drop (and report) them.
            raise ValueError(f"{name}[{i}] has no nodes; filter out empty graphs and report how many")
    return [_STATISTICS[statistic][0](graph) for graph in graphs]


def graph_mmd(
    generated: Sequence[nx.Graph], reference: Sequence[nx.Graph], statistic: str, *, sigma: float | None = None
) -> float:
    """GraphRNN's squared MMD between two sets of graphs for one statistic (biased V-statistic).

    Each graph becomes one feature vector and ``MMD² = mean k(g, g') + mean k(r, r') - 2 mean k(g, r)`` over
    all pairs, diagonal included (GraphRNN's estimator, so ``MMD²(S, S) = 0``; ``sqrt`` is not taken):

    - ``"degree"``: :func:`degree_histogram` normalised to a pmf, zero-padded to a common length; Gaussian-EMD
      kernel ``exp(-EMD² / 2σ²)``, EMD in degree units, ``σ = 1``.
    - ``"clustering"``: :func:`clustering_histogram` (100 bins) normalised; Gaussian-EMD kernel, EMD in
      clustering-coefficient units (bin width 0.01), ``σ = 0.1``.
    - ``"orbit"``: :func:`orbit_statistic` (mean orbit counts per node, not normalised); Gaussian kernel on
      the Euclidean distance, ``σ = 30``.

    These are the kernels and bandwidths of GraphRNN's evaluation code, which GNF and the RMwGGIS paper
    reuse. ``sigma`` overrides the bandwidth. Graphs must be non-empty.
    """
    if statistic not in _STATISTICS:
        raise ValueError(f"statistic must be one of {sorted(_STATISTICS)}, got {statistic!r}")
    _, is_histogram, kernel_fn, default_sigma = _STATISTICS[statistic]
    sigma = default_sigma if sigma is None else check_positive(sigma, "sigma")
    features = _features(generated, "generated", statistic) + _features(reference, "reference", statistic)
    width = max(len(f) for f in features)
    x = torch.zeros(len(features), width, dtype=torch.float64)
    for i, feature in enumerate(features):
        x[i, : len(feature)] = torch.as_tensor(feature / feature.sum() if is_histogram else feature)
    kernel = partial(kernel_fn, sigma=sigma)
    return float(mmd2(x[: len(generated)], x[len(generated) :], kernel, unbiased=False))


# ---------------------------------------------------------------------------------------------------------
# Plotting
# ---------------------------------------------------------------------------------------------------------
def draw_graphs(graphs: Sequence[nx.Graph], axes: Sequence[Axes] | np.ndarray, *, seed: int = 0) -> Figure:
    """Draw ``graphs[i]`` on ``axes[i]`` (spring layout with a fixed ``seed``); spare axes are hidden.

    ``axes`` may be the array returned by ``plt.subplots``; returns the figure of the axes.
    """
    flat = list(np.asarray(axes, dtype=object).ravel())
    if len(flat) < len(graphs):
        raise ValueError(f"axes has {len(flat)} panels, fewer than the {len(graphs)} graphs")
    check_int(seed, "seed", minimum=0)
    for i, (graph, ax) in enumerate(zip(graphs, flat)):
        _check_simple(graph, f"graphs[{i}]")
        nx.draw_networkx(graph, nx.spring_layout(graph, seed=seed), ax=ax, with_labels=False, node_size=25, width=0.8)
        ax.set_axis_off()
    for ax in flat[len(graphs) :]:
        ax.set_visible(False)
    return flat[0].figure
