"""GraphRNN's graph statistics (degree, clustering, 4-node orbits) and their squared MMD between two sets of
graphs, as used by GraphRNN, GNF and the RMwGGIS paper; hubs and a scorecard of sampled adjacency bits."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import cache, lru_cache, partial

import networkx as nx
import numpy as np
import torch
from torch import Tensor

from ebmlib.data.graphs import (
    bits_to_adjacency,
    bits_to_graphs,
    check_graph,
    check_node_counts,
    max_nodes_of_bits,
    node_pair_mask,
)
from ebmlib.metrics.samples import mmd2
from ebmlib.utils import check_binary, check_int, check_positive, check_tensor


def degree_histogram(graph: nx.Graph) -> np.ndarray:
    """Counts of nodes by degree: entry ``d`` is the number of nodes of degree ``d``, length ``max degree + 1``."""
    check_graph(graph, "graph")
    return np.asarray(nx.degree_histogram(graph), dtype=float)


def clustering_histogram(graph: nx.Graph, bins: int = 100) -> np.ndarray:
    """Counts of nodes' clustering coefficients in ``bins`` equal bins on ``[0, 1]``, shape ``(bins,)``."""
    check_graph(graph, "graph")
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
    check_graph(graph, "graph")
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
    """GraphRNN's orbit feature of one graph: :func:`~ebmlib.metrics.orbit_counts` averaged over nodes, shape
    ``(15,)``."""
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
        check_graph(graph, f"{name}[{i}]")
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

    - ``"degree"``: :func:`~ebmlib.metrics.degree_histogram` normalised to a pmf, zero-padded to a common length;
      Gaussian-EMD kernel ``exp(-EMD² / 2σ²)``, EMD in degree units, ``σ = 1``.
    - ``"clustering"``: :func:`~ebmlib.metrics.clustering_histogram` (100 bins) normalised; Gaussian-EMD kernel, EMD in
      clustering-coefficient units (bin width 0.01), ``σ = 0.1``.
    - ``"orbit"``: :func:`~ebmlib.metrics.orbit_statistic` (mean orbit counts per node, not normalised); Gaussian
      kernel on the Euclidean distance, ``σ = 30``.

    These are the kernels and bandwidths of GraphRNN's evaluation code, which GNF and the RMwGGIS paper
    reuse. ``sigma`` overrides the bandwidth. Graphs must be non-empty.
    """
    if statistic not in _STATISTICS:
        raise ValueError(f"statistic must be one of {sorted(_STATISTICS)}, got {statistic!r}")
    _, is_histogram, kernel_fn, default_sigma = _STATISTICS[statistic]
    sigma = default_sigma if sigma is None else check_positive(sigma, "sigma")
    features = _features(generated, "generated", statistic) + _features(reference, "reference", statistic)
    width = max(len(f) for f in features)
    x = torch.zeros(len(features), width, dtype=torch.float64, device="cpu")  # host statistics of graphs
    for i, feature in enumerate(features):
        x[i, : len(feature)] = torch.as_tensor(feature / feature.sum() if is_histogram else feature, device="cpu")
    kernel = partial(kernel_fn, sigma=sigma)
    return float(mmd2(x[: len(generated)], x[len(generated) :], kernel, unbiased=False))


def _check_bits_in_node_sets(bits: Tensor, node_counts: Tensor) -> tuple[int, Tensor]:
    """``max_nodes`` and the ``(B, D)`` node-set mask of 0/1 bits whose edges all lie inside their node sets."""
    check_tensor(bits, "bits", ndim=2, floating=True)
    check_binary(bits, "bits")
    max_nodes = max_nodes_of_bits(bits, "bits")
    check_node_counts(node_counts, max_nodes)
    if node_counts.shape[0] != bits.shape[0]:
        raise ValueError(f"node_counts must have one entry per graph ({bits.shape[0]}), got {node_counts.shape[0]}")
    mask = node_pair_mask(node_counts.to(bits.device), max_nodes).to(bits)
    if (bits * (1 - mask)).any():
        raise ValueError("bits has edges outside its graph's node set (see node_pair_mask)")
    return max_nodes, mask


def has_hub(bits: Tensor, node_counts: Tensor) -> Tensor:
    r"""Whether each graph has a hub: a node adjacent to all other nodes of its node set.

    Graph ``b`` lives on its first :math:`n_b` nodes; with adjacency matrix :math:`A`
    (:func:`~ebmlib.data.bits_to_adjacency`) it has a hub when :math:`\sum_j A_{vj} = n_b - 1` for some node
    :math:`v < n_b` (a universal vertex). Every one-hop ego graph has one, its ego, so the share of sampled
    graphs with a hub measures whether a generator learned that defining feature.

    Parameters
    ----------
    bits
        Adjacency bits ``(B, D)``, ``D = n (n - 1) / 2`` (:func:`~ebmlib.data.graphs_to_bits`), 0/1 floats, with
        no edge outside a graph's node set.
    node_counts
        Integer node counts ``(B,)`` in ``[2, n]``.

    Returns
    -------
    Tensor
        ``(B,)`` booleans on the device of ``bits``.
    """
    max_nodes, _ = _check_bits_in_node_sets(bits, node_counts)
    degrees = bits_to_adjacency(bits, max_nodes).sum(2)  # (B, n)
    counts = node_counts.to(bits.device)
    inside = torch.arange(max_nodes, device=bits.device)[None, :] < counts[:, None]
    return ((degrees == (counts[:, None] - 1).to(degrees)) & inside).any(1)


def score_graph_samples(bits: Tensor, node_counts: Tensor, reference: Sequence[nx.Graph]) -> dict[str, float]:
    r"""Scorecard of sampled graphs given as adjacency bits on node sets, against reference graphs.

    Each row of ``bits`` becomes a graph (:func:`~ebmlib.data.bits_to_graphs`, isolated nodes dropped); graphs
    without an edge are left out of the MMDs and counted. Returns, with ``M`` the node-set mask
    (:func:`~ebmlib.data.node_pair_mask`):

    - ``"degree"``, ``"clustering"``, ``"orbit"``: :func:`~ebmlib.metrics.graph_mmd` against ``reference``
      (NaN when every sampled graph is empty), and ``"avg"``, their mean;
    - ``"empty graphs"``: the number of rows without an edge;
    - ``"edge density in node set"``: :math:`\sum_b \sum_i x_{bi} / \sum_b \sum_i M_{bi}`, the share of the
      allowed pairs that are edges;
    - ``"share with a hub"``: the mean of :func:`~ebmlib.metrics.has_hub`.

    Parameters
    ----------
    bits
        Sampled adjacency bits ``(B, D)``, 0/1 floats, no edge outside a graph's node set.
    node_counts
        Integer node counts ``(B,)`` in ``[2, n]`` (all ``n`` for samples over every bit).
    reference
        Non-empty networkx graphs, e.g. held-out test graphs.
    """
    _, mask = _check_bits_in_node_sets(bits, node_counts)
    if len(reference) == 0:
        raise ValueError("reference must hold at least one graph")
    for i, graph in enumerate(reference):
        check_graph(graph, f"reference[{i}]")
    generated = [g for g in bits_to_graphs(bits.cpu(), max_nodes_of_bits(bits)) if g.number_of_nodes() > 0]
    mmds = {stat: graph_mmd(generated, reference, stat) if generated else float("nan") for stat in _STATISTICS}
    return {**mmds, "avg": sum(mmds.values()) / len(mmds), "empty graphs": len(bits) - len(generated),
            "edge density in node set": (bits.sum() / mask.sum()).item(),
            "share with a hub": has_hub(bits, node_counts).double().mean().item()}
