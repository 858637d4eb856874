"""Tests of :mod:`ebmlib.data`: toy densities, Gray code and the lattice Ising model.

Every check compares against an independent computation (closed-form moments, numerical integration,
hand-worked codes, a pure-Python Gray code, networkx lattices, explicit loops over edges, exact enumeration).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ebmlib.data import (
    ANALYTIC_TOY_NAMES,
    TOY_NAMES,
    GrayCode,
    IsingLattice,
    all_binary_states,
    sample_toy,
    toy_code_probs,
    toy_log_prob,
    toy_mode_centres,
)
from ebmlib.metrics import empirical_distribution, total_variation


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Run on one intra-op thread. The tensors here are small, so threads only add overhead, and when other
    processes share the cores, OpenMP spin-waits made the Gibbs test 10-30x slower in our measurements."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------------
# Toy densities
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", TOY_NAMES)
def test_sample_toy_shape_dtype_device_and_seeding(name):
    x = sample_toy(name, 5000, generator=gen(1))
    assert x.shape == (5000, 2) and x.dtype == torch.float32 and x.device == torch.device("cpu")
    assert torch.isfinite(x).all()
    assert ((x.abs() <= 4.5).all(dim=1)).float().mean() > 0.999  # "roughly in [-4, 4]^2"
    assert torch.equal(x, sample_toy(name, 5000, generator=gen(1)))
    assert not torch.equal(x, sample_toy(name, 5000, generator=gen(2)))
    x64 = sample_toy(name, 3, generator=gen(1), device="cpu", dtype=torch.float64)
    assert x64.dtype == torch.float64 and x64.shape == (3, 2)
    assert sample_toy(name, 1).shape == (1, 2)


def test_sample_toy_rejects_bad_arguments():
    with pytest.raises(ValueError, match="name must be one of.*2spirals.*9gaussians"):
        sample_toy("25gaussians", 10)
    for bad_n in (0, -3, 2.0, True):
        with pytest.raises(ValueError, match="n must"):
            sample_toy("moons", bad_n)
    with pytest.raises(ValueError, match="dtype"):
        sample_toy("moons", 10, dtype=torch.int64)


# Moments by hand (ε: the Gaussian noise, U: uniform draws; all independent).
# Means: moons = 2 * (mean of the two sklearn half circles, (0.5, 0.25)) + (-1, -0.2); swissroll =
# E[(t cos t, t sin t)] / 5 = (6π, 2) / (3π) / 5 for t ~ U(1.5π, 4.5π); every other toy is symmetric about 0.
# Second moments E|x|²:
#   8gaussians (16 + 2 * 0.5²) / 1.414²;  9gaussians 2 * (2 * 2.5² / 3) + 2 * 0.1²;  checkerboard 2 * 16 / 3;
#   circles (3² + 1.5²) / 2 + 2 * 0.24²;  rings mean of 0.75², 1.5², 2.25², 3² + 2 * 0.08²;
#   pinwheel 2² * E[f_r² + f_t²] = 4 * (1 + 0.3² + 0.1²);  swissroll (E t² + 2) / 25 with E t² = 9.75 π²;
#   moons 4 E|m|² + 4 * 2 * 0.1² + |c|² + 4 E[m]·c with E|m|² = 1.625 - 1/π, E[m]·c = -0.55, |c|² = 1.04;
#   2spirals (E t² + E[-t cos t] + E[t sin t] + 2 * 0.5² / 3) / 9 + 2 * 0.1², where t = 3π sqrt(U) gives
#   E t² = 4.5 π², E[t cos t] = -4 / (3π), E[t sin t] = 2 (9π² - 4) / (9π²).
SECOND_MOMENTS = {
    "8gaussians": 16.5 / 1.414**2,
    "9gaussians": 4 * 6.25 / 3 + 0.02,
    "checkerboard": 32 / 3,
    "circles": (9 + 2.25) / 2 + 2 * 0.24**2,
    "rings": (0.75**2 + 1.5**2 + 2.25**2 + 3**2) / 4 + 2 * 0.08**2,
    "pinwheel": 4 * 1.1,
    "swissroll": (9.75 * math.pi**2 + 2) / 25,
    "moons": 4 * (1.625 - 1 / math.pi) + 0.08 + 1.04 - 2.2,
    "2spirals": (4.5 * math.pi**2 + 2 / (3 * math.pi) + 1 - 4 / (9 * math.pi**2) + 1 / 6) / 9 + 0.02,
}
MEANS = {name: (0.0, 0.0) for name in TOY_NAMES}
MEANS |= {"moons": (0.0, 0.3), "swissroll": (0.4, 2 / (15 * math.pi))}


@pytest.mark.parametrize("name", TOY_NAMES)
def test_sample_toy_moments_match_closed_form(name):
    x = sample_toy(name, 40000, generator=gen(3), dtype=torch.float64)
    stats = torch.cat([x, x.pow(2).sum(dim=1, keepdim=True)], dim=1)
    expected = torch.tensor([*MEANS[name], SECOND_MOMENTS[name]], dtype=torch.float64)
    standard_error = stats.std(dim=0) / math.sqrt(len(x))
    assert ((stats.mean(dim=0) - expected).abs() < 5 * standard_error).all()


@pytest.mark.parametrize(
    ("name", "radii", "noise"), [("circles", (1.5, 3.0), 0.24), ("rings", (0.75, 1.5, 2.25, 3.0), 0.08)]
)
def test_rings_and_circles_radii(name, radii, noise):
    x = sample_toy(name, 20000, generator=gen(4), dtype=torch.float64)
    r = x.norm(dim=1)
    radii_t = torch.tensor(radii, dtype=torch.float64)
    nearest = (r[:, None] - radii_t).abs().argmin(dim=1)
    assert ((r - radii_t[nearest]).abs() < 5 * noise).float().mean() > 0.999
    freq = torch.bincount(nearest, minlength=len(radii)).double() / len(x)
    assert torch.allclose(freq, torch.full_like(freq, 1 / len(radii)), atol=0.02)


def _midpoint_grid(low: float, high: float, h: float) -> tuple[torch.Tensor, int]:
    axis = torch.arange(low + h / 2, high, h, dtype=torch.float64)
    return torch.cartesian_prod(axis, axis), len(axis)


def _grid_step(name: str) -> float:
    """Far below the toy's smallest length scale (std 0.1 for 9gaussians, 0.2 or more otherwise), where the
    midpoint rule for Gaussians is essentially exact; both steps put the checkerboard's edges on cell edges."""
    return 0.02 if name == "9gaussians" else 0.05


@pytest.mark.parametrize("name", ANALYTIC_TOY_NAMES)
def test_toy_log_prob_integrates_to_one(name):
    h = _grid_step(name)
    grid, _ = _midpoint_grid(-6.0, 6.0, h)
    log_p = toy_log_prob(name, grid)
    assert log_p.shape == (len(grid),) and log_p.dtype == torch.float64
    assert log_p.exp().sum().item() * h * h == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("name", ANALYTIC_TOY_NAMES)
def test_toy_log_prob_matches_histogram_of_samples(name):
    n, bins = 200_000, 20
    sub = round(0.5 / _grid_step(name))
    x = sample_toy(name, n, generator=gen(5), dtype=torch.float64)
    assert torch.isfinite(toy_log_prob(name, x)).all()  # every sample lies in the support
    # hist[i, j] counts x-bin i and y-bin j, the order of the grid below (first coordinate slowest).
    counts = torch.histogramdd(x, bins=[bins, bins], range=[-5.0, 5.0, -5.0, 5.0]).hist.flatten()
    # Bin probabilities by the midpoint rule on a sub x sub grid inside each 0.5 x 0.5 bin.
    grid, side = _midpoint_grid(-5.0, 5.0, 10.0 / (bins * sub))
    dens = toy_log_prob(name, grid).exp().reshape(side, side) * (10.0 / (bins * sub)) ** 2
    p = dens.reshape(bins, sub, bins, sub).sum(dim=(1, 3)).flatten()
    # Per bin: binomial count within 5 standard deviations (plus slack for Poisson tails of empty bins).
    assert ((counts - n * p).abs() <= 5 * (n * p * (1 - p)).sqrt() + 5).all()
    assert 0.5 * (counts / n - p).abs().sum() < 0.02


def test_toy_log_prob_values():
    x = torch.tensor([[0.5, 0.5], [2.5, 0.5], [-3.5, -3.5], [4.5, 0.0], [1.0, -1.0], [-2.0, 3.9]])
    expected = torch.tensor([-math.log(32), -math.inf, -math.log(32), -math.inf, -math.inf, -math.log(32)])
    assert torch.equal(toy_log_prob("checkerboard", x), expected)
    eight = [(4 * math.cos(k * math.pi / 4) / 1.414, 4 * math.sin(k * math.pi / 4) / 1.414) for k in range(8)]
    nine = [(a, b) for a in (-2.5, 0.0, 2.5) for b in (-2.5, 0.0, 2.5)]
    for name, centres, std in [("8gaussians", eight, 0.5 / 1.414), ("9gaussians", nine, 0.1)]:
        mixture = torch.distributions.MixtureSameFamily(
            torch.distributions.Categorical(torch.ones(len(centres))),
            torch.distributions.Independent(torch.distributions.Normal(torch.tensor(centres), std), 1),
        )
        assert torch.allclose(toy_log_prob(name, x), mixture.log_prob(x), atol=1e-4)


def test_toy_mode_centres():
    eight = toy_mode_centres("8gaussians", dtype=torch.float64)
    assert eight.shape == (8, 2) and eight.dtype == torch.float64
    assert torch.allclose(eight.norm(dim=1), torch.full((8,), 4 / 1.414, dtype=torch.float64))
    assert torch.allclose(eight[2], torch.tensor([0.0, 4 / 1.414], dtype=torch.float64), atol=1e-12)
    nine = toy_mode_centres("9gaussians", device="cpu")
    assert nine.dtype == torch.float32 and nine.device == torch.device("cpu")
    assert {tuple(c) for c in nine.tolist()} == {(a, b) for a in (-2.5, 0.0, 2.5) for b in (-2.5, 0.0, 2.5)}
    # Every sample's nearest centre is (nearly always) its own component: the components are well separated.
    x = sample_toy("9gaussians", 9000, generator=gen(16))
    share = torch.bincount(torch.cdist(x, nine).argmin(dim=1), minlength=9) / 9000
    assert torch.allclose(share, torch.full((9,), 1 / 9), atol=0.02)
    with pytest.raises(ValueError, match="not a Gaussian mixture"):
        toy_mode_centres("rings")


def test_toy_log_prob_rejects_bad_arguments():
    with pytest.raises(ValueError, match="not analytic"):
        toy_log_prob("moons", torch.zeros(3, 2))
    with pytest.raises(ValueError, match="x must have shape"):
        toy_log_prob("8gaussians", torch.zeros(3, 3))
    with pytest.raises(ValueError, match="x must have a floating-point dtype"):
        toy_log_prob("8gaussians", torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="x contains NaN"):
        toy_log_prob("checkerboard", torch.tensor([[math.nan, 0.0]]))


# ---------------------------------------------------------------------------------------------------------
# Gray code
# ---------------------------------------------------------------------------------------------------------
def _reference_code(v: float, int_scale: float, n_bits: int) -> list[int]:
    """The papers' recipe with Python ints and strings: sign bit, Gray code of |int(v * int_scale)|."""
    m = abs(int(v * int_scale))
    return [int(v < 0)] + [int(c) for c in format(m ^ (m >> 1), f"0{n_bits - 1}b")]


def test_gray_code_by_hand_with_four_bits():
    code = GrayCode(f_scale=1.0, n_bits=4)  # int_scale = 8 / 2 = 4, magnitudes 0..7 on 3 bits
    assert code.int_scale == 4.0 and code.dim == 8
    points = torch.tensor([[0.0, 0.3], [-0.5, 1.9], [-1.0, -0.1]])
    expected = torch.tensor(
        [
            [0, 0, 0, 0, 0, 0, 0, 1],  # 0 -> +0 = 000;     0.3 -> n = 1, gray 001
            [1, 0, 1, 1, 0, 1, 0, 0],  # -0.5 -> -2, gray 011; 1.9 -> n = 7, gray 100
            [1, 1, 1, 0, 1, 0, 0, 0],  # -1.0 -> -4, gray 110; -0.1 -> n = 0 with sign 1 ("negative zero")
        ],
        dtype=torch.float32,
    )
    assert torch.equal(code.encode(points), expected)
    # Decoding returns cell midpoints sign * (m + 1/2) / int_scale.
    midpoints = torch.tensor([[0.125, 0.375], [-0.625, 1.875], [-1.125, -0.125]])
    assert torch.equal(code.decode(expected), midpoints)
    with pytest.raises(ValueError, match="f_scale \\+ 1"):
        code.encode(torch.tensor([[2.0, 0.0]]))  # n = 8 needs a fourth magnitude bit
    largest = torch.tensor([0, 1, 0, 0, 1, 1, 0, 0.0])  # ±7: gray 100
    assert torch.equal(code.encode(torch.tensor([[1.99, -1.99]]))[0], largest)


def test_gray_code_matches_python_reference():
    x = 4.0 * torch.randn(500, 2, generator=gen(6), dtype=torch.float64)
    code = GrayCode.from_samples(x)
    assert code.f_scale == pytest.approx(x.abs().max().item() + 1) and code.n_bits == 16
    assert code.int_scale == pytest.approx(2**15 / (code.f_scale + 1))
    scale = code.int_scale
    expected = [_reference_code(a, scale, 16) + _reference_code(b, scale, 16) for a, b in x.tolist()]
    assert torch.equal(code.encode(x), torch.tensor(expected, dtype=torch.float32))


@pytest.mark.parametrize("n_bits", [2, 5, 16, 23, 31])
def test_encode_decode_round_trips(n_bits):
    code = GrayCode(f_scale=3.0, n_bits=n_bits)
    bits = torch.randint(0, 2, (2000, 2 * n_bits), generator=gen(7)).float()
    # Include every "negative zero" word (sign 1, magnitude 0) and the extreme codes explicitly.
    neg_zero = torch.zeros(1, n_bits)
    neg_zero[0, 0] = 1
    extremes = torch.cat([torch.ones(1, 2 * n_bits), neg_zero.repeat(1, 2), torch.zeros(1, 2 * n_bits)])
    bits = torch.cat([bits, extremes])
    points = code.decode(bits, dtype=torch.float64)
    assert torch.equal(code.encode(points), bits)
    if n_bits <= 23:  # float32 midpoints stay inside their cells while half a cell exceeds float32 rounding
        assert torch.equal(code.encode(code.decode(bits)), bits)
    assert (points[-2] < 0).all() and (points[-2].abs() < 1 / code.int_scale).all()
    x = (2 * torch.rand(2000, 2, generator=gen(8), dtype=torch.float64) - 1) * 3.999
    error = (code.decode(code.encode(x), dtype=torch.float64) - x).abs()
    assert (error <= 0.5 / code.int_scale + 1e-12).all()


COORDINATE = st.floats(min_value=-4.99, max_value=4.99, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(COORDINATE, COORDINATE), min_size=1, max_size=10), st.integers(2, 31))
def test_decode_encode_within_half_a_cell(points, n_bits):
    code = GrayCode(f_scale=4.0, n_bits=n_bits)
    x = torch.tensor(points, dtype=torch.float64)
    y = code.decode(code.encode(x), dtype=torch.float64)
    assert ((y - x).abs() <= 0.5 / code.int_scale * (1 + 1e-9)).all()
    assert torch.equal(torch.signbit(y), x < 0)


def test_neighbouring_cells_differ_in_one_bit():
    code = GrayCode(f_scale=1.0, n_bits=6)  # 63 cells on each side of zero
    m = torch.arange(-(2**5) + 1, 2**5, dtype=torch.float64)
    v = (m + 0.5) / code.int_scale  # one point inside each cell, increasing, crossing zero
    bits = code.encode(torch.stack([v, torch.zeros_like(v)], dim=1))[:, :6]
    assert len(bits.unique(dim=0)) == len(v)
    assert ((bits[1:] != bits[:-1]).sum(dim=1) == 1).all()
    assert (code.decode(torch.cat([bits, bits], dim=1))[:, 0].diff() > 0).all()


def test_gray_code_output_dtype_and_device():
    code = GrayCode(f_scale=2.0)
    x = torch.zeros(3, 2)
    assert code.encode(x).dtype == torch.float32
    assert code.encode(x, dtype=torch.float64).dtype == torch.float64
    bits = code.encode(x, dtype=torch.float16)
    assert code.decode(bits).dtype == torch.float32 and code.decode(bits).device == x.device
    assert code.decode(bits.long(), dtype=torch.float64).shape == (3, 2)


def test_long_words_extend_the_float64_digits_with_zeros():
    """128-bit words (the paper's 256-dimensional 2spirals): the top bits agree with an exact big-int recipe."""
    points = sample_toy("2spirals", 200, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    code = GrayCode.from_samples(points, n_bits=128)
    bits = code.encode(points, dtype=torch.float64)
    for row, (vx, vy) in zip(bits.long().tolist(), points.tolist()):
        for word, v in ((row[:128], vx), (row[128:], vy)):
            m = int(abs(v) * code.int_scale)  # Python ints have arbitrary precision
            gray = m ^ (m >> 1)
            assert word == [int(v < 0)] + [(gray >> k) & 1 for k in range(126, -1, -1)]
    assert torch.allclose(code.decode(bits, dtype=torch.float64), points, atol=1e-12)
    assert bits[:, 100:128].sum() == 0  # below float64 precision every digit is zero


def test_gray_code_rejects_bad_arguments():
    for f_scale in (0.0, -1.0, math.inf, math.nan, "2"):
        with pytest.raises(ValueError, match="f_scale"):
            GrayCode(f_scale=f_scale)
    for n_bits in (1, 1024, 16.0, True):
        with pytest.raises(ValueError, match="n_bits"):
            GrayCode(f_scale=1.0, n_bits=n_bits)
    code = GrayCode(f_scale=1.0, n_bits=4)
    for points, msg in [
        (torch.zeros(3, 3), "points must have shape"),
        (torch.zeros(3), "points must have shape"),
        (torch.zeros(3, 2, dtype=torch.long), "points must have a floating-point"),
        (torch.tensor([[math.inf, 0.0]]), "points contains NaN"),
        (torch.tensor([[0.0, -2.0]]), "points: every"),
    ]:
        with pytest.raises(ValueError, match=msg):
            code.encode(points)
    with pytest.raises(ValueError, match="points must have"):
        GrayCode.from_samples(torch.zeros(4))
    with pytest.raises(ValueError, match="at least one point"):
        GrayCode.from_samples(torch.zeros(0, 2))
    for bits, msg in [
        (torch.full((2, 8), 0.5), "bits must contain only 0/1"),
        (torch.zeros(2, 9), "bits must have 8 columns"),
        (torch.zeros(8), "bits must have 2 dimensions"),
        ([0] * 8, "bits must be a torch.Tensor"),
    ]:
        with pytest.raises(ValueError, match=msg):
            code.decode(bits)
    with pytest.raises(ValueError, match="dtype"):
        code.encode(torch.zeros(1, 2), dtype=torch.int32)


# ---------------------------------------------------------------------------------------------------------
# Ising lattice
# ---------------------------------------------------------------------------------------------------------
def test_all_binary_states():
    states = all_binary_states(3)
    expected = [[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1], [1, 0, 0], [1, 0, 1], [1, 1, 0], [1, 1, 1]]
    assert torch.equal(states, torch.tensor(expected, dtype=torch.float32))
    s12 = all_binary_states(12, dtype=torch.float64)
    assert s12.shape == (4096, 12) and s12.dtype == torch.float64 and len(s12.unique(dim=0)) == 4096
    for bad in (0, 21, 2.0):
        with pytest.raises(ValueError, match="d must"):
            all_binary_states(bad)


@pytest.mark.parametrize(("side", "periodic"), [(3, True), (4, True), (5, True), (4, False), (5, False)])
def test_couplings_match_networkx_lattice(side, periodic):
    nx = pytest.importorskip("networkx")
    model = IsingLattice(side, 0.7, periodic=periodic)
    graph = nx.grid_2d_graph(side, side, periodic=periodic)
    adjacency = torch.zeros(side * side, side * side)
    for (r1, c1), (r2, c2) in graph.edges():
        adjacency[r1 * side + c1, r2 * side + c2] = adjacency[r2 * side + c2, r1 * side + c1] = 1
    assert torch.equal(model.J, 0.7 * adjacency)
    assert torch.equal(model.J, model.J.T) and (model.J.diagonal() == 0).all()
    degree = (model.J != 0).sum(dim=1)
    if periodic:
        assert (degree == 4).all()
    else:
        assert sorted(set(degree.tolist())) == [2, 3, 4] and degree.sum() == 4 * side * (side - 1)


@pytest.mark.parametrize(
    ("side", "periodic", "n_colours"), [(25, True, 3), (3, True, 3), (24, True, 2), (5, False, 2)]
)
def test_colour_classes_are_proper_partitions(side, periodic, n_colours):
    model = IsingLattice(side, 1.0, periodic=periodic)
    classes = model.colour_classes
    assert len(classes) == n_colours
    assert torch.equal(torch.cat(classes).sort().values, torch.arange(side * side))
    for sites in classes:
        assert (model.J[sites][:, sites] == 0).all()  # no coupling inside a class


def _energy_by_edge_loop(x: torch.Tensor, side: int, sigma: float, bias: float, periodic: bool) -> float:
    """-(2 sigma Σ_edges s_i s_j + b Σ s_i), edges enumerated one by one."""
    s = [[2 * x[r * side + c].item() - 1 for c in range(side)] for r in range(side)]
    coupling = 0.0
    for r in range(side):
        for c in range(side):
            if periodic or c + 1 < side:  # right neighbour
                coupling += s[r][c] * s[r][(c + 1) % side]
            if periodic or r + 1 < side:  # lower neighbour
                coupling += s[r][c] * s[(r + 1) % side][c]
    return -(2 * sigma * coupling + bias * sum(map(sum, s)))


@pytest.mark.parametrize(("side", "periodic"), [(3, True), (4, False), (5, True)])
def test_energy_matches_loop_over_edges(side, periodic):
    sigma, bias = 0.3, -0.2
    model = IsingLattice(side, sigma, periodic=periodic, bias=bias)
    x = torch.randint(0, 2, (6, side * side), generator=gen(9)).double()
    x[0] = 1  # all spins up
    energy = model.energy(x)
    assert energy.shape == (6,) and energy.dtype == torch.float64
    expected = [_energy_by_edge_loop(row, side, sigma, bias, periodic) for row in x]
    expected = torch.tensor(expected, dtype=torch.float64)
    assert torch.allclose(energy, expected, atol=1e-5)
    assert torch.allclose(model(x.float()), expected.float(), atol=1e-4)


def test_energy_gradient_matches_closed_form():
    model = IsingLattice(4, 0.25, bias=0.3)
    x = torch.randint(0, 2, (5, 16), generator=gen(10)).double().requires_grad_(True)
    (grad,) = torch.autograd.grad(model.energy(x).sum(), x)
    s = 2 * x.detach() - 1
    # E = -(sᵀJs + b Σ s) with s = 2x - 1, so ∇_x E = -2 (2 J s + b).
    assert torch.allclose(grad, -2 * (2 * s @ model.J.double() + 0.3))


def test_exact_log_probs_are_normalised_and_ordered():
    model = IsingLattice(3, 0.2, bias=0.1)
    log_p = model.exact_log_probs(dtype=torch.float64)
    assert log_p.shape == (512,) and torch.logsumexp(log_p, dim=0).abs() < 1e-12
    assert model.exact_log_probs().dtype == torch.float32
    for k in (0, 5, 170, 511):
        state = torch.tensor([[(k >> (8 - j)) & 1 for j in range(9)]], dtype=torch.float64)
        diff = log_p[k] - log_p[0]
        assert diff.item() == pytest.approx(
            _energy_by_edge_loop(torch.zeros(9), 3, 0.2, 0.1, True)
            - _energy_by_edge_loop(state[0], 3, 0.2, 0.1, True),
            abs=1e-9,
        )
    with pytest.raises(ValueError, match="side"):
        IsingLattice(5, 0.2).exact_log_probs()


def _state_index(x: torch.Tensor) -> torch.Tensor:
    return (x.long() * 2 ** torch.arange(x.shape[1] - 1, -1, -1)).sum(dim=1)


def test_chromatic_gibbs_matches_exact_distribution():
    n, side = 4000, 3
    model = IsingLattice(side, 0.3, bias=0.1)
    p = model.exact_log_probs(dtype=torch.float64).exp()
    # Bimodal target (all-up 0.79, all-down 0.13). Powers of the exact 512 x 512 sweep kernel (computed once
    # offline) show that ~1000 sweeps from the uniform start reach TV 7e-4 from p; 200 sweeps leave 0.085.
    x = model.sample(n, 1000, generator=gen(11))
    freq = torch.bincount(_state_index(x), minlength=512).double() / n
    tv = 0.5 * (freq - p).abs().sum()
    # Even exact iid sampling has TV > 0: estimate its mean from multinomial draws. By McDiarmid (one sample
    # moves TV by <= 1/n), TV exceeds that mean by 0.03 with probability <= exp(-2 n 0.03²) < 1e-3.
    draws = torch.multinomial(p, 20 * n, replacement=True, generator=gen(12)).reshape(20, n)
    iid_freq = torch.stack([torch.bincount(d, minlength=512) for d in draws]).double() / n
    iid_tv = 0.5 * (iid_freq - p).abs().sum(dim=1).mean()
    assert tv < iid_tv + 0.03 + 1e-3
    magnetisation = (2 * x.double() - 1).mean(dim=1)
    exact = (p * (2 * all_binary_states(9, dtype=torch.float64) - 1).mean(dim=1)).sum()
    assert (magnetisation.mean() - exact).abs() < 4 * magnetisation.std() / math.sqrt(n)


def test_chromatic_gibbs_open_lattice_moments():
    n, side, sigma, bias = 4000, 4, 0.15, -0.1
    model = IsingLattice(side, sigma, periodic=False, bias=bias)
    p = model.exact_log_probs(dtype=torch.float64).exp()
    spins_all = 2 * all_binary_states(16, dtype=torch.float64) - 1
    # Statistics per state: magnetisation and the mean of s_i s_j over the 24 edges (sᵀ J s / (2 sigma 24)).
    edge_mean = ((spins_all @ model.J.double()) * spins_all).sum(dim=1) / (48 * sigma)
    stats_all = torch.stack([spins_all.mean(dim=1), edge_mean], dim=1)
    x = model.sample(n, 100, generator=gen(13), dtype=torch.float64)
    stats = stats_all[_state_index(x)]
    exact = (p[:, None] * stats_all).sum(dim=0)
    assert ((stats.mean(dim=0) - exact).abs() < 4 * stats.std(dim=0) / math.sqrt(n)).all()


def test_sample_shapes_seeding_and_start():
    model = IsingLattice(4, 0.2)
    x = model.sample(7, 3, generator=gen(14), device="cpu", dtype=torch.float64)
    assert x.shape == (7, 16) and x.dtype == torch.float64 and x.device == torch.device("cpu")
    assert ((x == 0) | (x == 1)).all()
    assert torch.equal(x, model.sample(7, 3, generator=gen(14), dtype=torch.float64))
    assert model.sample(1, 1).shape == (1, 16)
    start = model.sample(20000, 0, generator=gen(15))  # uniform random spins
    assert (start.mean() - 0.5).abs() < 5 * 0.5 / math.sqrt(start.numel())


def test_ising_rejects_bad_arguments():
    for kwargs, msg in [
        ({"side": 2, "sigma": 0.1}, "side must be >= 3"),
        ({"side": 3.0, "sigma": 0.1}, "side must be an integer"),
        ({"side": 3, "sigma": math.nan}, "sigma"),
        ({"side": 3, "sigma": "0.1"}, "sigma"),
        ({"side": 3, "sigma": 0.1, "bias": math.inf}, "bias"),
        ({"side": 3, "sigma": 0.1, "periodic": 1}, "periodic"),
    ]:
        with pytest.raises(ValueError, match=msg):
            IsingLattice(**kwargs)
    model = IsingLattice(3, 0.1)
    for x, msg in [
        (torch.zeros(2, 8), "x must have shape"),
        (torch.zeros(9), "x must have shape"),
        (torch.full((2, 9), 0.5), "x must contain only 0/1"),
        (-torch.ones(2, 9), "x must contain only 0/1"),
        (torch.zeros(2, 9, dtype=torch.long), "x must have a floating-point"),
    ]:
        with pytest.raises(ValueError, match=msg):
            model.energy(x)
    for args, kwargs, msg in [
        ((0, 5), {}, "n must"),
        ((5, -1), {}, "n_sweeps must"),
        ((5, 2.5), {}, "n_sweeps must"),
        ((5, 1), {"dtype": torch.int64}, "dtype"),
    ]:
        with pytest.raises(ValueError, match=msg):
            model.sample(*args, **kwargs)


def test_swissroll_log_prob_matches_adaptive_quadrature():
    # An independent evaluation of log (1/3π) ∫ N(x; (t cos t, t sin t)/5, 0.2² I) dt by scipy's adaptive
    # quadrature: catches a wrong noise scale (the FFJORD roll adds N(0, I) before dividing by 5), a wrong
    # range of t or a missing normaliser.
    from scipy.integrate import quad

    def density(x1: float, x2: float) -> float:
        def integrand(t: float) -> float:
            sq = (x1 - t * math.cos(t) / 5) ** 2 + (x2 - t * math.sin(t) / 5) ** 2
            return math.exp(-sq / (2 * 0.04)) / (2 * math.pi * 0.04) / (3 * math.pi)

        return quad(integrand, 1.5 * math.pi, 4.5 * math.pi, limit=500, epsabs=0, epsrel=1e-11)[0]

    x = torch.tensor([[0.0, 0.0], [-1.0, 2.0], [1.9, -0.3], [0.9, 1.3], [2.5, 2.5], [-2.8, -0.1]],
                     dtype=torch.float64)
    expected = torch.tensor([math.log(density(*p)) for p in x.tolist()], dtype=torch.float64)
    torch.testing.assert_close(toy_log_prob("swissroll", x), expected, rtol=0, atol=1e-8)
    assert toy_log_prob("swissroll", x.float()).dtype == torch.float32


@pytest.mark.parametrize("name", ["8gaussians", "9gaussians", "checkerboard"])
def test_toy_code_probs_integrate_the_density_over_each_cell(name):
    """Each code's probability equals a fine midpoint quadrature of the exact density over the code's cell."""
    code = GrayCode.from_samples(sample_toy(name, 5000, generator=gen(0)), n_bits=6)
    probs = toy_code_probs(name, code)
    assert probs.shape == (2**12,) and probs.dtype == torch.float64
    assert abs(probs.sum().item() - 1) < 1e-12 and (probs >= 0).all()
    states = all_binary_states(12, dtype=torch.float64)
    picked = torch.cat([probs.topk(20).indices, torch.randint(0, 2**12, (20,), generator=gen(1))])
    width, m = 1 / code.int_scale, 60
    offsets = (torch.arange(m, dtype=torch.float64) + 0.5) / m * width - width / 2
    grid = torch.cartesian_prod(offsets, offsets)
    # The checkerboard's density jumps inside some cells: there the midpoint rule is only good to ~1/m.
    tolerance = 1 / m if name == "checkerboard" else 2e-3
    for k in picked.tolist():
        centre = code.decode(states[k : k + 1], dtype=torch.float64)
        quadrature = toy_log_prob(name, centre + grid).exp().mean() * width**2
        assert quadrature.item() == pytest.approx(probs[k].item(), rel=tolerance, abs=1e-12)


@pytest.mark.parametrize("name", ["8gaussians", "checkerboard"])
def test_toy_code_probs_are_the_law_of_encoded_samples(name):
    code = GrayCode.from_samples(sample_toy(name, 5000, generator=gen(0)), n_bits=5)
    probs = toy_code_probs(name, code)
    empirical = empirical_distribution(code.encode(sample_toy(name, 400_000, generator=gen(2))), 10)
    assert total_variation(probs, empirical.double()) < 0.02
    # a code off by one cell (the x word of the neighbouring cell) is far from the samples' law
    shifted = probs.view(32, 32).roll(1, dims=0).reshape(-1)
    assert total_variation(shifted, empirical.double()) > 0.1


def test_toy_code_probs_bad_input():
    code = GrayCode(5.0, n_bits=6)
    for name in ("2spirals", "swissroll"):
        with pytest.raises(ValueError, match="name"):
            toy_code_probs(name, code)
    with pytest.raises(ValueError, match="code"):
        toy_code_probs("8gaussians", GrayCode(5.0, n_bits=11))
    with pytest.raises(ValueError, match="code"):
        toy_code_probs("8gaussians", GrayCode(1.0, n_bits=6))  # range ±2 misses most of the mass
