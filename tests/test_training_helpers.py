"""Training helpers shared by chapters: the Ising coupling fit and FlowEBMLoss's paper-style constructor."""

from __future__ import annotations

import math

import pytest
import torch

from ebmlib.bench import IsingFit, fit_ising
from ebmlib.data import IsingLattice
from ebmlib.flows import RealNVP
from ebmlib.losses import FlowEBMLoss, ratio_matching
from ebmlib.metrics import log_rmse


@pytest.fixture(scope="module")
def lattice_data():
    lattice = IsingLattice(3, 0.5)
    torch.manual_seed(0)
    return lattice, lattice.sample(500, 50)


def test_fit_ising_learns_the_couplings_and_records_its_curve(lattice_data):
    lattice, data = lattice_data
    result = fit_ising(ratio_matching, data, lattice.J, n_iters=100, lr=0.05, l1=0.0, batch_size=100, n_records=4)
    assert isinstance(result, IsingFit) and result.seconds_per_iter > 0
    assert [it for it, _ in result.curve] == [25, 50, 75, 100]
    zero = log_rmse(torch.zeros_like(lattice.J), lattice.J).item()
    # Ratio matching is consistent; on 500 samples of this strongly coupled 9-spin lattice it gets about 0.3
    # nats below the all-zero matrix (a fit that dropped the loss would stay at the all-zero matrix).
    assert result.curve[-1][1] < zero - 0.2, (result.curve[-1], zero)
    assert result.curve[-1][1] == pytest.approx(log_rmse(result.model.coupling.detach(), lattice.J).item())


def test_fit_ising_applies_the_l1_penalty(lattice_data):
    lattice, data = lattice_data
    free = fit_ising(ratio_matching, data, lattice.J, n_iters=60, lr=0.05, l1=0.0)
    penalised = fit_ising(ratio_matching, data, lattice.J, n_iters=60, lr=0.05, l1=1.0)
    # A strong penalty keeps the couplings near 0 (Adam's steps of ~lr make it oscillate around 0).
    free_mass = free.model.coupling.abs().sum().item()
    assert penalised.model.coupling.abs().sum().item() < 0.3 * free_mass, free_mass


def test_fit_ising_resumes_with_its_curve_and_a_persistent_loss(lattice_data, tmp_path):
    from ebmlib.losses import PersistentContrastiveDivergence
    from ebmlib.samplers import ReplayBuffer, gibbs_random_site

    lattice, data = lattice_data

    def run(n_iters, run_dir):
        torch.manual_seed(1)
        pcd = PersistentContrastiveDivergence(ReplayBuffer(lambda n: torch.randint(0, 2, (n, 9)).float(), 200),
                                              lambda e, x: gibbs_random_site(e, x, n_steps=2))
        return fit_ising(pcd, data, lattice.J, n_iters=n_iters, lr=0.05, l1=0.0, n_records=4, run_dir=run_dir)

    whole = run(40, None)
    run(20, tmp_path / "run")  # the first half, as a run that stopped there
    resumed = run(40, tmp_path / "run")
    assert torch.equal(resumed.model.coupling, whole.model.coupling)  # bit for bit, buffer and RNGs restored
    assert [it for it, _ in resumed.curve][-2:] == [30, 40] and resumed.curve[-1] == whole.curve[-1]
    again = run(40, tmp_path / "run")  # finished: returned without training, with its curve
    assert again.curve == resumed.curve and torch.equal(again.model.coupling, whole.model.coupling)


def test_fit_ising_rejects_bad_input(lattice_data):
    lattice, data = lattice_data
    for kwargs, argument in [(dict(data=data * 2), "data"), (dict(data=data[0]), "data"),
                             (dict(coupling=lattice.J[:3]), "coupling"), (dict(l1=-1.0), "l1"),
                             (dict(n_iters=0), "n_iters"), (dict(n_records=0), "n_records")]:
        settings = dict(data=data, coupling=lattice.J, n_iters=2, lr=0.01, l1=0.0) | kwargs
        with pytest.raises(ValueError, match=argument):
            fit_ising(ratio_matching, settings.pop("data"), settings.pop("coupling"), **settings)


def test_flow_ebm_loss_from_flow_starts_each_method_from_its_pool():
    flow = RealNVP(2, 2, (8,), base_std=1.5)
    common = dict(pool_size=20_000, lr=3e-3, n_chains=16, n_steps=2, step_size=0.01)
    torch.manual_seed(1)
    ula = FlowEBMLoss.from_flow("ula", flow, uniform_lim=4.0, **common)
    torch.manual_seed(1)
    assert torch.equal(ula.pool, 4.0 * (2 * torch.rand(20_000, 2) - 1))  # uniform on [-4, 4]^2
    gaussian = FlowEBMLoss.from_flow("ula", flow, **common)
    flowmc = FlowEBMLoss.from_flow("flowmc", flow, n_local=1, n_particles=4, **common)
    # The identity flow at initialisation samples its base N(0, 1.5² I): both pools have std 1.5 (s.e. 0.008).
    for loss in (gaussian, flowmc):
        assert abs(loss.pool.std().item() - 1.5) < 0.04 and abs(loss.pool.mean().item()) < 0.04
    assert flowmc.method == "flowmc" and flowmc.flow is flow and flowmc.n_local == 1
    assert flowmc.flow_optimizer.param_groups[0]["lr"] == 3e-3
    assert sum(p.numel() for p in flowmc.flow_optimizer.param_groups[0]["params"]) == sum(
        p.numel() for p in flow.parameters())
    with pytest.raises(ValueError, match="method"):
        FlowEBMLoss.from_flow("cd", flow, **common)
    with pytest.raises(ValueError, match="flow"):
        FlowEBMLoss.from_flow("flowmc", object(), **common)
    with pytest.raises(ValueError, match="uniform_lim"):
        FlowEBMLoss.from_flow("ula", flow, uniform_lim=-1.0, **common)
    with pytest.raises(ValueError, match="uniform_lim"):
        FlowEBMLoss.from_flow("flowmc", flow, uniform_lim=4.0, **common)
    with pytest.raises(ValueError, match="pool_size"):
        FlowEBMLoss.from_flow("ula", flow, **common | dict(pool_size=0))
    with pytest.raises(ValueError, match="lr"):
        FlowEBMLoss.from_flow("nt", flow, **common | dict(lr=math.nan))


def test_train_classifier_in_a_run_directory_returns_the_finished_run(tmp_path):
    # Catches a classifier that is retrained (or trained differently) when its run directory already holds
    # the finished run: a re-run chapter must get the same classifier back.
    import torch

    from ebmlib.train import train_classifier

    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 3, (64,))

    def trained(run_dir, seed):
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
        return train_classifier(model, x, y, n_iters=40, run_dir=run_dir).state_dict()

    plain, first = trained(None, 1), trained(tmp_path / "run", 1)
    again = trained(tmp_path / "run", 2)  # another seed: a retrained model would differ
    for key in plain:
        assert torch.equal(plain[key], first[key]) and torch.equal(first[key], again[key]), key
