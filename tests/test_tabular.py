"""Mixed tabular data: ring table, energy network, categorical Gibbs, loaders (Adult on a fixture), TSTR."""

import hashlib
import math

import numpy as np
import pandas as pd
import pytest
import torch

from ebmlib.data import (
    RING_CLASSES,
    load_adult,
    load_penguins,
    ring_plot_coordinates,
    sample_rings,
    split_rows,
    table_from_frame,
)
from ebmlib.losses import tabular_losses
from ebmlib.metrics import sdmetrics_quality, tstr_auc
from ebmlib.nets import MixedEnergy
from ebmlib.samplers import gibbs_categorical, langevin_gibbs
from ebmlib.train import compare_tstr


def test_ring_table_structure():
    rows = sample_rings(5000, generator=torch.Generator().manual_seed(0))
    assert rows.shape == (5000, 4)
    radius = rows[:, :2].norm(dim=1)
    assert (radius - 1.5).abs().max() < 0.1
    ring, colour = rows[:, 2].long(), rows[:, 3].long()
    assert set(ring.tolist()) == {0, 1, 2, 3} and colour.min() >= 0 and colour.max() <= 15
    # The colour is the angle's octant shifted by 4 · ring.
    angle = torch.atan2(rows[:, 1], rows[:, 0]) % (2 * torch.pi)
    octant = torch.floor(angle / (torch.pi / 4)).long().clamp(max=7)
    assert ((octant + 4 * ring) % 16 == colour).float().mean() > 0.999
    plotted = ring_plot_coordinates(rows).norm(dim=1)
    assert torch.allclose(plotted / radius, rows[:, 2] + 1)


def test_mixed_energy_shapes_and_errors():
    energy = MixedEnergy(2, RING_CLASSES, hidden=16, depth=2)
    rows = sample_rings(7)
    assert energy(rows).shape == (7,)
    with pytest.raises(ValueError, match="x"):
        energy(rows[:, :3])


def test_gibbs_categorical_matches_exact_conditionals():
    """One Gibbs sweep from the exact joint distribution leaves it invariant (frequency check)."""
    torch.manual_seed(0)
    table = torch.randn(3, 4)

    def energy(x):
        return table[x[:, 1].long(), x[:, 2].long()] + 0.0 * x[:, 0]

    probs = torch.softmax(-table.flatten(), 0)
    n = 40_000
    index = torch.multinomial(probs, n, replacement=True)
    x = torch.stack([torch.randn(n), (index // 4).float(), (index % 4).float()], dim=1)
    moved = gibbs_categorical(energy, x, (3, 4), 1, n_numeric=1)
    freq = torch.bincount((moved[:, 1] * 4 + moved[:, 2]).long(), minlength=12).float() / n
    assert (freq - probs).abs().max() < 0.012
    assert torch.equal(moved[:, 0], x[:, 0]), "numeric columns must stay fixed"
    # From a point mass, one sweep draws column 0 from its conditional given column 1.
    start = torch.tensor([[0.0, 0.0, 2.0]]).expand(n, -1).contiguous()
    first = gibbs_categorical(energy, start, (3, 4), 1, n_numeric=1)
    cond = torch.softmax(-table[:, 2], 0)
    freq0 = torch.bincount(first[:, 1].long(), minlength=3).float() / n
    assert (freq0 - cond).abs().max() < 0.012


def test_langevin_gibbs_moves_numeric_towards_low_energy():
    torch.manual_seed(1)

    def energy(x):
        return 0.5 * ((x[:, :2] - 3.0) ** 2).sum(-1) + (x[:, 2] != 1).float() * 5

    x = torch.cat([torch.zeros(500, 2), torch.zeros(500, 1)], dim=1)
    out = langevin_gibbs(energy, x, (3,), n_numeric=2, n_rounds=300, step_size=0.025)
    assert (out[:, :2].mean(0) - 3).abs().max() < 0.2
    assert (out[:, 2] == 1).float().mean() > 0.97


def test_table_from_frame_and_penguins():
    frame = pd.DataFrame({"a": [1.0, 2.0, None, 4.0], "c": ["x", "y", "x", "z"], "o": [3, 1, 2, 2]})
    table = table_from_frame(frame, ["a"], ["c", "o"])
    assert table.rows().shape == (3, 3) and table.categories == [["x", "y", "z"], [1, 2, 3]]
    assert torch.allclose(table.numeric.mean(), torch.tensor(0.0), atol=1e-6)
    assert table.column("o") == 2
    with pytest.raises(ValueError, match="columns"):
        table_from_frame(frame, ["missing"], ["c"])
    penguins = load_penguins()
    assert penguins.rows().shape == (333, 8) and penguins.n_classes == (3, 3, 2, 3)


ADULT_LINES = [
    "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, "
    "United-States, <=50K",
    "50, Self-emp-not-inc, 83311, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, White, Male, 0, 0, "
    "13, United-States, >50K",
    "38, ?, 215646, HS-grad, 9, Divorced, Handlers-cleaners, Not-in-family, White, Male, 0, 0, 40, "
    "United-States, <=50K",
    "28, Private, 338409, Masters, 14, Married-civ-spouse, Prof-specialty, Wife, Black, Female, 0, 0, 40, "
    "Cuba, <=50K.",
]


def test_adult_loader_verifies_the_checksum(tmp_path):
    raw = ("\n".join(ADULT_LINES) + "\n").encode()
    (tmp_path / "adult.data").write_bytes(raw)
    digest = hashlib.sha256(raw).hexdigest()
    table = load_adult(tmp_path, expected_sha256=digest)
    assert table.rows().shape == (3, 6 + 9)  # the row with '?' is dropped
    assert table.categories[table.categorical_names.index("income")] == ["<=50K", ">50K"]
    with pytest.raises(ValueError, match="SHA-256"):
        load_adult(tmp_path, expected_sha256="0" * 64)
    with pytest.raises(ValueError, match="SHA-256"):
        load_adult(tmp_path)  # the fixture is not UCI's file, whose checksum is pinned
    with pytest.raises(FileNotFoundError, match="root=None"):
        load_adult(tmp_path / "nowhere", expected_sha256=digest)


def test_tstr_auc():
    gen = torch.Generator().manual_seed(2)
    n = 400
    label = torch.randint(0, 2, (n,), generator=gen).float()
    rows = torch.stack([label + 0.3 * torch.randn(n, generator=gen), label], dim=1)
    train, test = split_rows(rows, 0.5)
    for model in ("xgboost", "sklearn"):
        assert tstr_auc(train, test, target=1, n_numeric=1, n_classes=(2,), model=model) > 0.9
    # Labels shuffled in the training rows: no better than chance.
    shuffled = train.clone()
    shuffled[:, 1] = shuffled[torch.randperm(len(train), generator=gen), 1]
    assert tstr_auc(shuffled, test, target=1, n_numeric=1, n_classes=(2,)) < 0.65
    one_class = train.clone()
    one_class[:, 1] = 0
    assert tstr_auc(one_class, test, target=1, n_numeric=1, n_classes=(2,)) == 0.5
    with pytest.raises(ValueError, match="target"):
        tstr_auc(train, test, target=0, n_numeric=1, n_classes=(2,))
    with pytest.raises(ValueError, match="model"):
        tstr_auc(train, test, target=1, n_numeric=1, n_classes=(2,), model="forest")
    bad = train.clone()
    bad[0, 1] = 2
    with pytest.raises(ValueError, match="categorical"):
        tstr_auc(bad, test, target=1, n_numeric=1, n_classes=(2,))


def adult_fixture_lines(n, seed=0):
    """``n`` rows in UCI Adult format whose income follows education and hours (a learnable signal)."""
    rng = np.random.default_rng(seed)
    education = [("HS-grad", 9), ("Some-college", 10), ("Bachelors", 13), ("Masters", 14)]
    lines = []
    for _ in range(n):
        edu, edu_num = education[rng.integers(4)]
        hours = int(rng.integers(20, 60))
        rich = edu_num + hours / 10 + rng.normal(0, 1) > 16
        sex, relationship = (("Male", "Husband"), ("Female", "Wife"))[rng.integers(2)]
        lines.append(
            f"{rng.integers(20, 65)}, {('Private', 'State-gov', 'Self-emp-not-inc')[rng.integers(3)]}, "
            f"{rng.integers(50_000, 300_000)}, {edu}, {edu_num}, "
            f"{('Married-civ-spouse', 'Never-married')[rng.integers(2)]}, "
            f"{('Adm-clerical', 'Exec-managerial', 'Prof-specialty')[rng.integers(3)]}, {relationship}, "
            f"{('White', 'Black')[rng.integers(2)]}, {sex}, 0, 0, {hours}, "
            f"{('United-States', 'Cuba')[rng.integers(2)]}, {'>50K' if rich else '<=50K'}")
    return lines


def test_tabular_losses_structure_and_errors():
    torch.manual_seed(0)
    losses = tabular_losses(2, (3, 4), [False, True], cd_rounds=1)
    assert list(losses) == ["TabED-Uni", "TabED-Grid", "TabED-Cyc", "TabED-Ord", "TabED-Str", "TabCD"]
    structured = losses["TabED-Str"].perturbation.categorical
    assert structured.graphs == ("uniform", "ordinal")
    assert structured.times == pytest.approx((-math.log(0.1), 0.01 * 16))
    assert losses["TabED-Str"].perturbation.numeric.sigma == 0.1
    rows = sample_rings(8)[:, [0, 1, 2, 2]]
    rows[:, 2] = rows[:, 2] % 3
    # Replaces a check that each loss was merely a finite scalar. A constant energy E ≡ c makes every energy
    # difference 0: each TabED loss is exactly log(w + M) = log(1 + 32), and TabCD's contrastive term cancels,
    # leaving its L2 penalty 0.3 (c² + c²). Catches a changed number of negatives or offset w, a sign error in
    # the log-sum-exp, and a wrong or missing L2 weight in TabCD.
    c = 1.5

    def constant(x):
        return x[:, 0] * 0 + c

    for name, loss in losses.items():
        value, _ = loss(constant, rows)
        expected = 0.3 * 2 * c**2 if name == "TabCD" else math.log(1 + 32)
        assert value.item() == pytest.approx(expected, rel=1e-6), name
    with pytest.raises(ValueError, match="ordinal"):
        tabular_losses(2, (3, 4), [True], cd_rounds=1)


def test_compare_tstr_on_an_adult_fixture(tmp_path):
    """The `full`-scale path of the chapter: Adult loader → every TabED variant and TabCD → TSTR AUC."""
    raw = ("\n".join(adult_fixture_lines(300)) + "\n").encode()
    (tmp_path / "adult.data").write_bytes(raw)
    table = load_adult(tmp_path, expected_sha256=hashlib.sha256(raw).hexdigest())
    train, test = split_rows(table.rows(), 0.3, seed=0)
    target = table.column("income")
    args = dict(target=target, n_numeric=table.n_numeric, n_classes=table.n_classes)
    torch.manual_seed(0)
    losses = tabular_losses(table.n_numeric, table.n_classes, [False] * len(table.n_classes), cd_rounds=1)
    runs = compare_tstr(losses, train, test, **args, hidden=16, n_iters=3, lr=1e-3, sample_rounds=2, n_draws=2,
                        batch_size=64, progress=False)
    assert list(runs) == list(losses)
    for name, run in runs.items():
        # Replaces a check that the AUC lay in [0, 1]. The reported AUCs must be those of the returned synthetic
        # rows scored against the test rows (catches scoring the training rows or another column instead), and
        # auc/auc_std their mean and standard deviation.
        assert len(run["aucs"]) == 2 and run["aucs"][-1] == tstr_auc(run["synthetic"], test, **args), name
        assert run["auc"] == pytest.approx(np.mean(run["aucs"]))
        assert run["auc_std"] == pytest.approx(np.std(run["aucs"]))
        assert run["synthetic"].shape == train.shape, name
        assert run["synthetic"][:, table.n_numeric:].eq(run["synthetic"][:, table.n_numeric:].round()).all(), name
    # Trained for longer, the structure-chosen ED model's synthetic rows carry the income signal.
    real = tstr_auc(train, test, **args)
    torch.manual_seed(1)
    long = compare_tstr({"TabED-Str": losses["TabED-Str"]}, train, test, **args, hidden=32, n_iters=300, lr=3e-3,
                        sample_rounds=30, n_draws=1, batch_size=64, progress=False)
    assert real > 0.85 and long["TabED-Str"]["auc"] > 0.7, (real, long["TabED-Str"]["auc"])
    with pytest.raises(ValueError, match="n_draws"):
        compare_tstr(losses, train, test, **args, hidden=8, n_iters=1, lr=1e-3, sample_rounds=1, n_draws=0)


def test_with_a_seed_a_loss_gives_the_same_run_alone_as_after_others(tmp_path):
    raw = ("\n".join(adult_fixture_lines(200)) + "\n").encode()
    (tmp_path / "adult.data").write_bytes(raw)
    table = load_adult(tmp_path, expected_sha256=hashlib.sha256(raw).hexdigest())
    train, test = split_rows(table.rows(), 0.3, seed=0)
    args = dict(target=table.column("income"), n_numeric=table.n_numeric, n_classes=table.n_classes, hidden=8,
                n_iters=3, lr=1e-3, sample_rounds=2, n_draws=1, batch_size=32, progress=False, model="sklearn")


    def losses(*names):  # fresh ones per call, made alike: TabCD's replay buffer is state
        torch.manual_seed(0)
        made = tabular_losses(table.n_numeric, table.n_classes, [False] * len(table.n_classes), cd_rounds=1)
        return {name: made[name] for name in names}

    both = compare_tstr(losses("TabED-Uni", "TabCD"), train, test, **args, seed=3)
    alone = compare_tstr(losses("TabCD"), train, test, **args, seed=3)
    assert torch.equal(both["TabCD"]["synthetic"], alone["TabCD"]["synthetic"])
    assert both["TabCD"]["aucs"] == alone["TabCD"]["aucs"]


def test_sdmetrics_quality_matches_the_formulas_it_implements():
    from scipy.stats import ks_2samp

    g = torch.Generator().manual_seed(0)
    real = torch.randn(300, 2, generator=g)
    real[:, 1] += 0.8 * real[:, 0]
    synthetic = torch.randn(250, 2, generator=g) * torch.tensor([1.0, 1.5]) + 0.2
    scores = sdmetrics_quality(real, synthetic, n_numeric=2, n_classes=[])
    shapes = np.mean([1 - ks_2samp(real[:, i].numpy(), synthetic[:, i].numpy()).statistic for i in range(2)])
    rho = [np.corrcoef(t[:, 0].numpy(), t[:, 1].numpy())[0, 1] for t in (real, synthetic)]
    assert scores["column shapes"] == pytest.approx(shapes, abs=1e-6)
    assert scores["column pair trends"] == pytest.approx(1 - abs(rho[0] - rho[1]) / 2, abs=1e-6)

    codes_real = torch.randint(0, 3, (400, 2), generator=g).double()
    codes_synthetic = torch.randint(0, 3, (300, 2), generator=g).double()
    codes_synthetic[:, 1] = (codes_synthetic[:, 0] + (codes_synthetic[:, 1] > 1)) % 3  # a different joint law

    def frequencies(*columns):
        return pd.Series(list(zip(*columns))).value_counts(normalize=True)

    def tv_complement(a, b):
        return 1 - 0.5 * a.sub(b, fill_value=0).abs().sum()

    scores = sdmetrics_quality(codes_real, codes_synthetic, n_numeric=0, n_classes=[3, 3])
    shapes = np.mean([tv_complement(frequencies(codes_real[:, c].tolist()), frequencies(codes_synthetic[:, c].tolist()))
                      for c in range(2)])
    pairs = tv_complement(frequencies(*codes_real.T.tolist()), frequencies(*codes_synthetic.T.tolist()))
    assert scores["column shapes"] == pytest.approx(shapes, abs=1e-6)
    assert scores["column pair trends"] == pytest.approx(pairs, abs=1e-6)

    mixed = torch.cat([real[:, :1], codes_real[:300, :1]], dim=1)
    assert sdmetrics_quality(mixed, mixed, n_numeric=1, n_classes=[3]) == pytest.approx(
        {"column shapes": 1.0, "column pair trends": 1.0})
    with pytest.raises(ValueError, match="synthetic_rows"):
        sdmetrics_quality(mixed, real, n_numeric=1, n_classes=[3])
    with pytest.raises(ValueError, match="two columns"):
        sdmetrics_quality(real[:, :1], real[:, :1], n_numeric=1, n_classes=[])
