"""Ensembles: K networks trained as one batched run equal K separate runs with the same seeds, for every loss and
sampler the chapters batch; the rank-one path of exact ratio matching equals the generic one."""

from functools import partial

import pytest
import torch

from ebmlib.losses import (
    BernoulliPerturbation,
    BitFlipPerturbation,
    EnergyDiscrepancy,
    GridPerturbation,
    LinearFirstLayer,
    OrdinalPerturbation,
    contrastive_divergence,
    ratio_matching,
    rmwggis,
)
from ebmlib.nets import Ensemble, MixedEnergy, MLPEnergy
from ebmlib.samplers import gibbs_binary, gibbs_categorical
from ebmlib.train import EnsembleAdam, MemberStreams, fit, fit_ensemble

SEEDS = (3, 7, 11)
LRS = (1e-3, 2e-3, 5e-4)
DIM, CLASSES = 10, (4, 4, 4)


def _binary_batches(k, dtype):
    return lambda: (torch.rand(8, DIM, dtype=dtype) < 0.2 + 0.2 * k).to(dtype)


def _code_batches(k, dtype):
    return lambda: torch.randint(0, 4, (8, len(CLASSES))).to(dtype).clamp(max=k + 1)


def _cd_binary(model, x):
    return contrastive_divergence(model, x, gibbs_binary(model, x, n_sweeps=1), l2_reg=0.3)


def _cd_categorical(model, x):
    return contrastive_divergence(model, x, gibbs_categorical(model, x, CLASSES, 1), l2_reg=0.3)


BINARY = lambda dtype: MLPEnergy(DIM, hidden=16, depth=2).to(dtype)  # noqa: E731
CATEGORICAL = lambda dtype: MixedEnergy(0, CLASSES, hidden=16, depth=2).to(dtype)  # noqa: E731
# Every loss the chapters train as ensembles: chapter 1's Table 1, chapter 3's binary and base-q toys.
LOSSES = {
    "ratio matching (rank-one)": (BINARY, _binary_batches, ratio_matching),
    "ratio matching (generic)": (BINARY, _binary_batches, partial(ratio_matching, rank_one=False)),
    "RMwGGIS unbiased": (BINARY, _binary_batches, partial(rmwggis, n_samples=3)),
    "RMwGGIS biased": (BINARY, _binary_batches, partial(rmwggis, n_samples=3, estimator="biased", replacement=False)),
    "RMwRAND": (BINARY, _binary_batches, partial(rmwggis, n_samples=3, proposal="uniform")),
    "ratio matching, authors' pairing": (BINARY, _binary_batches, partial(ratio_matching, pairing="authors")),
    "RMwGGIS biased, authors' pairing": (BINARY, _binary_batches,
                                         partial(rmwggis, n_samples=3, estimator="biased", pairing="authors")),
    "ED Bernoulli": (BINARY, _binary_batches, EnergyDiscrepancy(BernoulliPerturbation(0.1), n_negatives=4)),
    "ED bit flip": (BINARY, _binary_batches, EnergyDiscrepancy(BitFlipPerturbation(), n_negatives=4)),
    "CD Gibbs": (BINARY, _binary_batches, _cd_binary),
    "ED grid (categorical)": (CATEGORICAL, _code_batches, EnergyDiscrepancy(GridPerturbation(CLASSES), n_negatives=4)),
    "ED ordinal": (CATEGORICAL, _code_batches, EnergyDiscrepancy(OrdinalPerturbation(CLASSES, 0.1), n_negatives=4)),
    "CD Gibbs (categorical)": (CATEGORICAL, _code_batches, _cd_categorical),
}


def _max_relative_error(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(((p - q).abs().max() / p.abs().max()).item() for p, q in zip(a.parameters(), b.parameters()))


def _separate_runs(make, batches, loss, dtype, n_iters, **settings):
    models = []
    for k, seed in enumerate(SEEDS):
        torch.manual_seed(seed)
        model = make(dtype)
        optimizer = torch.optim.Adam(model.parameters(), lr=LRS[k], weight_decay=1e-4)
        result = fit(model, loss, batches(k, dtype), n_iters=n_iters, optimizer=optimizer, progress=False, **settings)
        models.append(result.ema.module)
    return models


@pytest.mark.parametrize("batched", [True, False, None], ids=["batched", "one-by-one", "auto"])
@pytest.mark.parametrize("name", LOSSES)
def test_an_ensemble_trains_each_member_as_its_separate_run(name, batched):
    """Per-member data, random draws, learning rate, clipping and EMA: member k is the run seeded with SEEDS[k].

    In float64: batched and single matrix products sum in different orders, and in float32 that alone moves
    gradients with cancellations by 1e-5 relative (as much as the generic and rank-one paths of one network
    differ), which would hide a real difference; in float64 the runs agree to 1e-11.
    """
    make, batches, loss = LOSSES[name]
    dtype, tolerance = torch.float64, 1e-11
    settings = dict(grad_clip=0.05, ema_decay=0.9, log_every=2)
    separate = _separate_runs(make, batches, loss, dtype, 6, **settings)
    streams = MemberStreams(list(SEEDS))
    ensemble = streams.build(partial(make, dtype))
    result = fit_ensemble(ensemble, streams, loss, [batches(k, dtype) for k in range(3)], n_iters=6, lr=list(LRS),
                          weight_decay=1e-4, batched=batched, progress=False, **settings)
    for k, model in enumerate(separate):
        assert _max_relative_error(model, result.ema.module.member(k)) < tolerance, f"member {k}"
    assert len(result.history["loss"]) == 3


@pytest.mark.parametrize("sampler", ["gibbs_binary", "gibbs_categorical"])
def test_samplers_on_an_ensemble_draw_each_members_chains(sampler):
    make, dim = (BINARY, DIM) if sampler == "gibbs_binary" else (CATEGORICAL, len(CLASSES))
    run = (lambda e, x: gibbs_binary(e, x, n_sweeps=2)) if sampler == "gibbs_binary" else (
        lambda e, x: gibbs_categorical(e, x, CLASSES, 2))
    starts = [torch.randint(0, 2, (5, dim), generator=torch.Generator().manual_seed(s + 100)).double()
              for s in SEEDS]
    separate = []
    for k, seed in enumerate(SEEDS):
        torch.manual_seed(seed)
        separate.append(run(make(torch.float64), starts[k]))
    streams = MemberStreams(list(SEEDS))
    ensemble = streams.build(partial(make, torch.float64))
    with streams.draws():
        batched = run(ensemble, torch.cat(starts))
    assert torch.equal(batched, torch.cat(separate))


def test_ensemble_forward_first_layer_and_members():
    members = [MLPEnergy(DIM, hidden=8, depth=2).double() for _ in range(3)]
    ensemble = Ensemble(members)
    x = torch.randint(0, 2, (12, DIM)).double()
    expected = torch.cat([m(x[4 * k: 4 * k + 4]) for k, m in enumerate(members)])
    torch.testing.assert_close(ensemble(x), expected, rtol=1e-12, atol=1e-12)
    assert isinstance(ensemble, LinearFirstLayer) and not isinstance(Ensemble([MixedEnergy(0, CLASSES)]),
                                                                     LinearFirstLayer)
    single = Ensemble([m.float() for m in members])
    torch.testing.assert_close(single(x.float()), expected.float(), rtol=1e-6, atol=1e-6)
    members = [m.double() for m in members]
    pre, weight_t = ensemble.first_layer(x)
    assert pre.shape == (12, 8) and weight_t.shape == (3, DIM, 8)
    torch.testing.assert_close(ensemble.head(pre), expected, rtol=1e-12, atol=1e-12)
    copy = ensemble.member(1)
    torch.testing.assert_close(copy(x), members[1](x), rtol=0, atol=0)
    assert copy.mlp.net[0].weight.data_ptr() != ensemble.mlp__net__0__weight.data_ptr()


@pytest.mark.parametrize("make", [BINARY, CATEGORICAL], ids=["MLPEnergy", "MixedEnergy"])
def test_direct_batched_products_equal_vmap(make):
    """The direct path (one batched product per layer) and vmap over the members give the same energies and
    gradients."""
    members = [make(torch.float64) for _ in range(3)]
    direct, general = Ensemble(members), Ensemble(members)
    general._direct = False
    x = torch.cat([batches(k, torch.float64)() for k, batches in enumerate([_binary_batches if make is BINARY
                                                                              else _code_batches] * 3)])
    for ensemble in (direct, general):
        ensemble(x).square().sum().backward()
    torch.testing.assert_close(direct(x), general(x), rtol=1e-12, atol=1e-12)
    for p, q in zip(direct.parameters(), general.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12)


def test_ensemble_clipping_is_per_member():
    ensemble = Ensemble([MLPEnergy(DIM, hidden=8, depth=1) for _ in range(2)])
    x = torch.randint(0, 2, (4, DIM)).float()
    (ensemble(x)[:2].sum() * 100 + ensemble(x)[2:].sum() * 1e-3).backward()
    norms = ensemble.clip_grad_norm_(1.0)
    after = torch.stack([torch.cat([p.grad[k].flatten() for p in ensemble.parameters()]).norm() for k in range(2)])
    assert norms[0] > 1 > norms[1]
    torch.testing.assert_close(after, torch.stack([torch.tensor(1.0), norms[1]]), rtol=1e-5, atol=0)


def test_member_streams_refuse_draws_they_cannot_split():
    streams = MemberStreams([0, 1])
    ensemble = Ensemble([MLPEnergy(4, hidden=4, depth=1) for _ in range(2)])
    with pytest.raises(ValueError, match="multiple of n_members"), streams.draws():
        torch.rand(3, 4)
    with pytest.raises(ValueError, match="shared by all rows"), streams.draws():
        torch.randperm(4)
    with pytest.raises(RuntimeError, match="global generator"), streams.draws():
        torch.normal(torch.zeros(4), 1.0)
    with pytest.raises(ValueError, match="multiple of n_members"):
        ensemble(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="chunk_size would split"):
        ratio_matching(ensemble, torch.zeros(4, 4), chunk_size=2, rank_one=False)


def test_member_streams_restore_their_state():
    streams = MemberStreams([0, 1])
    state = streams.state_dict()
    with streams.draws():
        first = torch.rand(4, 3)
    streams.load_state_dict(state)
    with streams.draws():
        assert torch.equal(torch.rand(4, 3), first)
    with pytest.raises(ValueError, match="state must be"):
        streams.load_state_dict({"states": []})


def test_fit_ensemble_resumes_bit_for_bit(tmp_path):
    def run(n_iters, run_dir):
        streams = MemberStreams([5, 6])
        ensemble = streams.build(lambda: MLPEnergy(DIM, hidden=8, depth=2))
        result = fit_ensemble(ensemble, streams, partial(rmwggis, n_samples=3),
                              [_binary_batches(k, torch.float32) for k in range(2)], n_iters=n_iters, lr=[1e-3, 3e-3],
                              run_dir=run_dir, progress=False)
        return ensemble, result

    whole, _ = run(8, None)
    run(4, tmp_path / "run")  # a run stopped after 4 of its iterations ...
    continued, result = run(8, tmp_path / "run")  # ... continued to 8
    assert result.resumed_from == 4
    for p, q in zip(whole.parameters(), continued.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("bad, match", [
    (dict(lr=[1e-3]), "one per member"), (dict(lr=-1.0), "lr"), (dict(weight_decay=-1), "weight_decay"),
    (dict(betas=(0.9, 1.0)), "betas")])
def test_ensemble_adam_rejects_bad_settings(bad, match):
    ensemble = Ensemble([MLPEnergy(4, hidden=4, depth=1) for _ in range(2)])
    with pytest.raises(ValueError, match=match):
        EnsembleAdam(ensemble, **bad)


def test_ensemble_rejects_members_that_differ():
    with pytest.raises(ValueError, match="equal names and shapes"):
        Ensemble([MLPEnergy(4, hidden=4), MLPEnergy(4, hidden=8)])
    with pytest.raises(ValueError, match="share one class"):
        Ensemble([MLPEnergy(4, hidden=4), MixedEnergy(0, (2, 2, 2, 2), hidden=4)])
    with pytest.raises(ValueError, match="non-empty sequence"):
        Ensemble([])


@pytest.mark.parametrize("d", [32, 64, 128, 256, 512, 1024, 2048])
def test_rank_one_ratio_matching_equals_the_generic_path(d):
    """Value and gradient in float64 to 1e-10 relative, at every dimension of Table 2 (paper and full scale)."""
    torch.manual_seed(d)
    net = MLPEnergy(d, hidden=32, depth=3).double()
    x = torch.randint(0, 2, (4, d)).double()
    generic, _ = ratio_matching(net, x, rank_one=False)
    generic_grads = torch.autograd.grad(generic, list(net.parameters()))
    fast, _ = ratio_matching(net, x, rank_one=True)
    fast_grads = torch.autograd.grad(fast, list(net.parameters()))
    assert abs(fast.item() / generic.item() - 1) < 1e-10
    for g, f in zip(generic_grads, fast_grads):
        assert (g - f).abs().max() <= 1e-10 * g.abs().max()


def test_rank_one_in_chunks_equals_one_pass():
    """Checkpointed chunks of whole data points: the same value and gradient, with or without autograd."""
    net = MLPEnergy(12, hidden=8, depth=2).double()
    x = torch.randint(0, 2, (10, 12)).double()
    whole, _ = ratio_matching(net, x)
    chunked, _ = ratio_matching(net, x, chunk_size=30)  # two points (24 rows) per chunk
    torch.testing.assert_close(chunked, whole, rtol=1e-12, atol=0)
    for g, h in zip(torch.autograd.grad(whole, list(net.parameters())),
                    torch.autograd.grad(chunked, list(net.parameters()))):
        torch.testing.assert_close(g, h, rtol=1e-10, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(ratio_matching(net, x, chunk_size=5)[0], whole.detach(), rtol=1e-12, atol=0)


def test_rank_one_needs_a_linear_first_layer():
    with pytest.raises(ValueError, match="rank_one=True needs"):
        ratio_matching(lambda z: z.sum(1), torch.zeros(2, 3), rank_one=True)
    with pytest.raises(ValueError, match="rank_one must be"):
        ratio_matching(MLPEnergy(3, hidden=4), torch.zeros(2, 3), rank_one="yes")
