"""Fetch on first use, end to end and offline: a local HTTP server on 127.0.0.1 serves small fixture files made
here, the registry is pointed at them, and the loaders read what was fetched."""

import gzip
import hashlib
import pickle
import threading
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import networkx as nx
import numpy as np
import pooch
import pytest
import torch

from ebmlib.data import (
    MNIST_FILES,
    REMOTE_FILES,
    RemoteFile,
    data_home,
    fetch_dataset,
    load_adult,
    load_citeseer_ego,
    load_mnist,
    remote_file,
)
from ebmlib.metrics import inception_fid


class _Server:
    """Files by URL path. ``corrupt`` paths serve other bytes than announced; ``truncate`` paths announce the
    whole file, send half of it and close the connection."""

    def __init__(self):
        self.files, self.corrupt, self.truncate, self.hits = {}, set(), set(), Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the name http.server calls)
                server.hits[self.path] += 1
                if self.path not in server.files:
                    self.send_error(404)
                    return
                body = server.files[self.path]
                if self.path in server.corrupt:
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in server.truncate:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, path, body):
        self.files[path] = body
        return f"{self.url}{path}"


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # a proxy set for the internet must not catch local requests
    monkeypatch.delenv("EBMLIB_MIRROR", raising=False)
    local = _Server()
    yield local
    local.httpd.shutdown()
    local.httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EBMLIB_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _register(monkeypatch, dataset, files, server, *, prefix=""):
    """Point ``REMOTE_FILES[dataset]`` at fixture files served by ``server`` (name → bytes)."""
    remotes = tuple(
        RemoteFile(name, hashlib.sha256(body).hexdigest(), len(body), (server.add(f"{prefix}/{dataset}/{name}", body),))
        for name, body in files.items())
    monkeypatch.setitem(REMOTE_FILES, dataset, remotes)
    return remotes


def _idx(array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def _tiny_mnist(seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"train": (rng.integers(0, 256, (5, 28, 28)), rng.integers(0, 10, 5)),
              "test": (rng.integers(0, 256, (3, 28, 28)), rng.integers(0, 10, 3))}
    files = {name: _idx(array) for split, names in MNIST_FILES.items() for name, array in zip(names, arrays[split])}
    return files, arrays


def _listing(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---------------------------------------------------------------------------------------------------------
# The fetch path
# ---------------------------------------------------------------------------------------------------------
def test_a_good_file_is_fetched_verified_and_cached(server, cache, monkeypatch, capsys):
    files, arrays = _tiny_mnist()
    _register(monkeypatch, "mnist", files, server)
    folder = fetch_dataset("mnist")
    assert folder == cache / "mnist"
    assert {name: (folder / name).read_bytes() for name in files} == files
    line = capsys.readouterr().out.strip()
    assert line.startswith("ebmlib: fetched mnist (4 files") and f"from {server.url}/mnist into {folder}" in line
    assert "\n" not in line
    assert set(server.hits.values()) == {1}

    assert fetch_dataset("mnist") == folder  # cached: no second download, nothing printed
    assert set(server.hits.values()) == {1} and capsys.readouterr().out == ""
    x, y = load_mnist(None, "test")  # the loader's default: fetch, then read the verified files
    assert torch.equal(x[:, 0], torch.from_numpy(arrays["test"][0]).to(torch.uint8))
    assert torch.equal(y, torch.from_numpy(arrays["test"][1]))
    assert set(server.hits.values()) == {1}


def test_a_corrupted_download_is_rejected_and_not_cached(server, cache, monkeypatch):
    (remote,) = _register(monkeypatch, "adult", {"adult.data": b"39, State-gov, 77516\n" * 50}, server)
    server.corrupt.add("/adult/adult.data")
    with pytest.raises(RuntimeError, match=r"adult\.data .*does not match the known hash.*Nothing was saved"):
        fetch_dataset("adult")
    assert _listing(cache / "adult") == []  # neither the file nor a temporary one
    server.corrupt.clear()
    assert (fetch_dataset("adult") / "adult.data").read_bytes() == server.files["/adult/adult.data"]
    assert server.hits["/adult/adult.data"] == 2


def test_an_interrupted_download_leaves_no_partial_file(server, cache, monkeypatch):
    _register(monkeypatch, "inception", {"weights.pth": bytes(range(256)) * 400}, server)
    server.truncate.add("/inception/weights.pth")
    with pytest.raises(RuntimeError, match=r"could not fetch weights\.pth"):
        fetch_dataset("inception")
    assert _listing(cache / "inception") == []
    assert server.hits["/inception/weights.pth"] == 1


def test_mirrors_are_tried_in_order_until_one_delivers_the_pinned_file(server, cache, monkeypatch, capsys):
    body = b"0 1\n" * 100
    good = server.add("/second/citeseer/ind.citeseer.graph", body)
    corrupt = server.add("/first/citeseer/ind.citeseer.graph", body)
    server.corrupt.add("/first/citeseer/ind.citeseer.graph")
    missing = f"{server.url}/gone/ind.citeseer.graph"
    remote = RemoteFile("ind.citeseer.graph", hashlib.sha256(body).hexdigest(), len(body), (missing, corrupt, good))
    monkeypatch.setitem(REMOTE_FILES, "citeseer", (remote,))
    assert (fetch_dataset("citeseer") / remote.name).read_bytes() == body
    assert f"from {server.url}/second/citeseer into" in capsys.readouterr().out
    assert [server.hits[p] for p in ("/gone/ind.citeseer.graph", "/first/citeseer/ind.citeseer.graph")] == [1, 1]


def test_a_mirror_replaces_the_published_urls_and_a_damaged_cached_copy_is_fetched_again(
        server, cache, monkeypatch, tmp_path):
    body = b"pretend weights" * 10
    remote = RemoteFile("w.pth", hashlib.sha256(body).hexdigest(), len(body), ("https://example.invalid/w.pth",))
    monkeypatch.setitem(REMOTE_FILES, "inception", (remote,))
    server.add("/mirror/inception/w.pth", body)
    monkeypatch.setenv("EBMLIB_MIRROR", f"{server.url}/mirror/")
    other = tmp_path / "elsewhere"
    assert fetch_dataset("inception", root=other) == other / "inception"
    (other / "inception" / "w.pth").write_bytes(b"bit rot")
    assert (fetch_dataset("inception", root=other) / "w.pth").read_bytes() == body
    assert server.hits["/mirror/inception/w.pth"] == 2 and not cache.exists()


def test_fetch_without_any_source_says_what_to_do(cache, monkeypatch):
    remote = RemoteFile("x.bin", "0" * 64, 1, ("http://127.0.0.1:9/x.bin",))  # port 9 (discard): refused
    monkeypatch.setitem(REMOTE_FILES, "adult", (remote,))
    with pytest.raises(RuntimeError, match=r"127\.0\.0\.1:9/x\.bin.*copy a file with that SHA-256 there"):
        fetch_dataset("adult")
    with pytest.raises(ValueError, match="dataset must be one of"):
        fetch_dataset("celeba")
    with pytest.raises(ValueError, match="name must be a file of 'mnist'"):
        remote_file("mnist", "adult.data")


def test_data_home_is_ebmlib_data_or_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("EBMLIB_DATA", str(tmp_path))
    assert data_home() == tmp_path
    monkeypatch.delenv("EBMLIB_DATA")
    assert data_home() == pooch.os_cache("ebmlib")


def test_registry_pins_a_sha256_and_https_sources_for_every_file():
    assert sorted(REMOTE_FILES) == ["adult", "cifar10", "citeseer", "fashion_mnist", "inception", "mnist"]
    for dataset, remotes in REMOTE_FILES.items():
        assert [r.name for r in remotes] == list(dict.fromkeys(r.name for r in remotes)), dataset
        for r in remotes:
            assert len(r.sha256) == 64 and int(r.sha256, 16) >= 0 and r.size > 0, r.name
            assert r.urls and all(u.startswith("https://") for u in r.urls), r.name
            # Published under the file's name, or (the Inception weights) under torch.hub's "<name>-<the first
            # eight hex digits of the SHA-256>.pth", which ties each URL to the pinned digest.
            ending = f"-{r.sha256[:8]}.pth" if dataset == "inception" else f"/{r.name}"
            assert all(u.endswith(ending) for u in r.urls), r.name
    for dataset in ("mnist", "fashion_mnist"):
        assert {r.name for r in REMOTE_FILES[dataset]} == {n for names in MNIST_FILES.values() for n in names}


# ---------------------------------------------------------------------------------------------------------
# The loaders on fetched fixture files
# ---------------------------------------------------------------------------------------------------------
def test_load_adult_fetches_uci_format_on_first_use(server, cache, monkeypatch):
    lines = ["39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, "
             "0, 40, United-States, <=50K",
             "50, Self-emp-not-inc, 83311, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, White, "
             "Male, 0, 0, 13, United-States, >50K",
             "38, ?, 215646, HS-grad, 9, Divorced, Handlers-cleaners, Not-in-family, White, Male, 0, 0, 40, "
             "United-States, <=50K",
             "28, Private, 338409, Masters, 14, Married-civ-spouse, Prof-specialty, Wife, Black, Female, 0, 0, 40, "
             "Cuba, <=50K."]
    _register(monkeypatch, "adult", {"adult.data": ("\n".join(lines) + "\n").encode()}, server)
    table = load_adult()
    assert table.rows().shape == (3, 15) and (cache / "adult" / "adult.data").is_file()


def test_load_citeseer_ego_fetches_the_planetoid_graph_on_first_use(server, cache, monkeypatch):
    star = {0: [1, 2, 3, 4], 5: [6, 7, 8, 0]}  # two hubs joined by an edge: ego graphs of 6 and 5 nodes
    body = pickle.dumps(defaultdict(list, star), protocol=2)
    _register(monkeypatch, "citeseer", {"ind.citeseer.graph": body}, server)
    graphs = load_citeseer_ego(n_graphs=2, seed=0)
    assert sorted(g.number_of_nodes() for g in graphs) == [5, 6]
    assert all(nx.is_connected(g) for g in graphs)


def test_inception_fid_checks_a_local_weights_file_before_anything_else(tmp_path):
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"not the Inception weights")
    with pytest.raises(ValueError, match="weights"):
        inception_fid(torch.rand(4, 1, 8, 8) * 2 - 1, torch.rand(4, 1, 8, 8) * 2 - 1, weights=weights)
