"""Graphs as data: Ego-small-like ego networks, Ego-small from Citeseer (fetched on first use), adjacency bits.

A graph on at most ``n`` nodes is stored as the ``n (n - 1) / 2`` bits of the strict upper triangle of its
adjacency matrix (:func:`~ebmlib.data.graphs_to_bits`), row by row; :func:`~ebmlib.data.node_pair_mask` marks the
bits among the first ``n_b`` nodes of graph ``b``, the pairs its node set allows.
"""

from __future__ import annotations

import io
import math
import pickle
from collections.abc import Sequence
from pathlib import Path

import networkx as nx
import numpy as np
import torch
from torch import Tensor

from ebmlib.data.fetch import fetch_dataset, remote_file
from ebmlib.utils import check_binary, check_int, check_probability, check_tensor, read_verified


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
    """Ego-small-like data: radius-1 ego graphs of random centres of a :func:`~ebmlib.data.citation_like_graph`.

    Built like Ego-small (GraphRNN's ``citeseer_small``): every node whose ego graph (the node, its
    neighbours and all edges among them) has ``min_nodes``–``max_nodes`` nodes is a candidate centre, and
    ``n_graphs`` distinct centres are drawn uniformly. Each graph is relabelled ``0..n-1``, centre = 0.

    How it differs from the real Ego-small: the host network is synthetic (same average degree and
    clustering as Citeseer's largest component, but not its degree sequence or community structure), so
    statistics match only roughly. Over seeds 0–4 the graphs have about 5.8 nodes and 6.2 edges on average
    (Citeseer's Ego-small candidates: 6.2 and 7.8), 43% have 4 nodes (35%) and the mean clustering
    coefficient is 0.40 (0.40). GraphRNN's code kept graphs of up to 20 nodes (19–20 are rare) and drew
    from the Planetoid copy of Citeseer; see :func:`~ebmlib.data.load_citeseer_ego`. Returns ``n_graphs`` connected
    graphs; equal seeds give equal lists.
    """
    return _sample_egos(citation_like_graph(n_nodes, seed=seed), n_graphs, min_nodes, max_nodes, seed)


class _AdjacencyListUnpickler(pickle.Unpickler):
    """Unpickle only a ``defaultdict`` of ``list`` of ints: the Planetoid graph file, and nothing that runs code."""

    def find_class(self, module: str, name: str) -> type:
        if (module, name) in {("collections", "defaultdict"), ("__builtin__", "list"), ("builtins", "list")}:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of an adjacency-list file")


def load_citeseer_ego(
    root: str | Path | None = None,
    *,
    n_graphs: int = 200,
    min_nodes: int = 4,
    max_nodes: int = 18,
    seed: int,
    expected_sha256: str | None = None,
) -> list[nx.Graph]:
    """Ego-small from the real Citeseer citation graph, as GraphRNN built it.

    Reads ``root/ind.citeseer.graph``, the Planetoid copy of Citeseer that GraphRNN used (3,327 papers, node →
    list of neighbours, pickled by Python 2), after checking its SHA-256; only a dict of integer lists is
    unpickled. The graph is made undirected without its 124 self-citations, and the ego graphs are drawn as
    in :func:`~ebmlib.data.ego_graphs` from its largest connected component (2,120 nodes, 3,679 edges), as
    GraphRNN did; 996 of its nodes have ego graphs of 4–18 nodes.

    Parameters
    ----------
    root
        Folder holding ``ind.citeseer.graph`` (a local copy); ``None``: the cache of
        :func:`~ebmlib.data.fetch_dataset`, which downloads the file on first use.
    expected_sha256
        Hex digest the file must have; default the pinned one of :data:`~ebmlib.data.REMOTE_FILES`
        ``["citeseer"]``.

    Raises
    ------
    ValueError
        Naming the file on a checksum mismatch or when it is not an adjacency-list pickle.
    FileNotFoundError
        When ``root`` lacks the file.
    """
    name = "ind.citeseer.graph"
    path = (fetch_dataset("citeseer") if root is None else Path(root)) / name
    expected = expected_sha256 if expected_sha256 is not None else remote_file("citeseer", name).sha256
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: copy Planetoid's {name} into root, or pass root=None to fetch it")
    raw = read_verified(path, expected)
    try:
        adjacency = _AdjacencyListUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as error:
        raise ValueError(f"{path}: not a pickled dict of adjacency lists ({error})") from error
    if not isinstance(adjacency, dict) or not adjacency:
        raise ValueError(f"{path}: not a pickled dict of adjacency lists")
    graph = nx.from_dict_of_lists(adjacency)
    graph.remove_edges_from(list(nx.selfloop_edges(graph)))
    if graph.number_of_edges() == 0:
        raise ValueError(f"{path} holds no citations")
    largest = graph.subgraph(max(nx.connected_components(graph), key=len))
    return _sample_egos(largest, n_graphs, min_nodes, max_nodes, seed)


def num_pairs(max_nodes: int) -> int:
    """Number of adjacency bits ``max_nodes (max_nodes - 1) / 2`` of a graph on ``max_nodes`` nodes."""
    check_int(max_nodes, "max_nodes", minimum=2)
    return max_nodes * (max_nodes - 1) // 2


def max_nodes_of_bits(x: Tensor, name: str = "x") -> int:
    """The ``n`` with ``n (n - 1) / 2`` equal to the number of columns of bits ``x`` ``(B, D)``; a ``ValueError``
    names ``name`` (the caller's argument) otherwise."""
    check_tensor(x, name, ndim=2, finite=False)
    n = int(round((1 + math.sqrt(1 + 8 * x.shape[1])) / 2))
    if num_pairs(n) != x.shape[1]:
        raise ValueError(f"{name} must have n (n - 1) / 2 columns for some n, got {x.shape[1]}")
    return n


def check_graph(graph: nx.Graph, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``graph`` is an undirected simple graph without self-loops."""
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
        check_graph(graph, f"graphs[{i}]")
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
    """networkx graphs from 0/1 bits ``(N, D)``; the inverse of :func:`~ebmlib.data.graphs_to_bits`.

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


def node_pair_mask(node_counts: Tensor, max_nodes: int) -> Tensor:
    """The bits a graph on its first ``n_b`` nodes may use: ``(B, D)`` 0/1 floats, ``D = max_nodes (max_nodes-1)/2``.

    Bit ``(i, j)``, ``i < j``, is 1 for graph ``b`` when ``j < node_counts[b]``; the other nodes are padding.
    """
    counts = check_node_counts(node_counts, max_nodes)
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
    for i, graph in enumerate(graphs):
        check_graph(graph, f"graphs[{i}]")
    check_int(n_samples, "n_samples", minimum=1)
    counts = torch.tensor([graph.number_of_nodes() for graph in graphs])
    return counts[torch.randint(len(graphs), (n_samples,), generator=generator)]


def check_node_counts(node_counts: Tensor, max_nodes: int) -> Tensor:
    """Check integer node counts ``(B,)`` in ``[2, max_nodes]``; return them unchanged."""
    check_int(max_nodes, "max_nodes", minimum=2)
    check_tensor(node_counts, "node_counts", ndim=1)
    if node_counts.is_floating_point() or node_counts.dtype == torch.bool:
        raise ValueError(f"node_counts must hold integers, got dtype {node_counts.dtype}")
    if ((node_counts < 2) | (node_counts > max_nodes)).any():
        raise ValueError(f"node_counts must lie in [2, max_nodes={max_nodes}]")
    return node_counts
