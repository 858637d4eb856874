from functools import partial

import pytest
import torch
from torch import nn

from ebmlib.losses import PersistentContrastiveDivergence, contrastive_divergence
from ebmlib.samplers import ReplayBuffer, langevin
from ebmlib.train import fit, progress_bar, progress_disabled, tensor_batches


class GaussianEnergy(nn.Module):
    """E(x) = ½‖(x − μ)/σ‖², a model whose maximum-likelihood fit is known in closed form."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(dim))
        self.log_sigma = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        return 0.5 * ((x - self.mu) / self.log_sigma.exp()).pow(2).sum(-1)


def test_contrastive_divergence_gradient_is_the_likelihood_gradient_difference():
    model = GaussianEnergy(2)
    x_pos, x_neg = torch.randn(7, 2) + 1, torch.randn(5, 2)
    loss, logs = contrastive_divergence(model, x_pos, x_neg)
    loss.backward()
    # ∂E/∂μ = −(x − μ)/σ² with μ = 0, σ = 1
    torch.testing.assert_close(model.mu.grad, -x_pos.mean(0) + x_neg.mean(0))
    torch.testing.assert_close(logs["energy_pos"], model(x_pos).mean().detach())


def test_contrastive_divergence_validates_input():
    model = GaussianEnergy(2)
    with pytest.raises(ValueError, match="event shape"):
        contrastive_divergence(model, torch.randn(3, 2), torch.randn(3, 3))
    with pytest.raises(ValueError, match="l2_reg"):
        contrastive_divergence(model, torch.randn(3, 2), torch.randn(3, 2), l2_reg=-1.0)


def test_replay_buffer_draws_distinct_states_and_reinitialises_a_fraction():
    buffer = ReplayBuffer(lambda n: torch.full((n, 3), -1.0), capacity=1000, reinit_prob=0.2)
    buffer.states.copy_(torch.arange(1000.0).unsqueeze(1).expand(1000, 3))
    states, index = buffer.sample(1000)
    assert index.unique().numel() == 1000
    fresh = (states[:, 0] == -1).float().mean()
    assert 0.15 < fresh < 0.25  # Binomial(1000, 0.2): sd 0.013
    kept = states[:, 0] != -1
    torch.testing.assert_close(states[kept, 0], index[kept].float())
    buffer.update(index, torch.zeros(1000, 3))
    assert buffer.states.abs().sum() == 0


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda b: b.sample(0), "n"),
        (lambda b: b.sample(11), "n"),
        (lambda b: b.update(torch.arange(2), torch.zeros(2, 4)), "states"),
    ],
)
def test_replay_buffer_rejects_bad_input(call, name):
    buffer = ReplayBuffer(lambda n: torch.zeros(n, 3), capacity=10)
    with pytest.raises(ValueError, match=name):
        call(buffer)
    with pytest.raises(ValueError, match="reinit_prob"):
        ReplayBuffer(lambda n: torch.zeros(n, 3), capacity=10, reinit_prob=1.0)


def test_tensor_batches_visit_every_point_once_per_epoch():
    data = torch.arange(12.0).unsqueeze(1)
    next_batch = tensor_batches(data, 4)
    epoch = torch.cat([next_batch() for _ in range(3)])
    assert sorted(epoch.squeeze().tolist()) == list(range(12))
    with pytest.raises(ValueError, match="batch_size"):
        tensor_batches(data, 13)


def test_pcd_with_langevin_recovers_a_gaussian():
    """The full loop (fit + PCD + replay buffer + Langevin) must find the maximum-likelihood Gaussian."""
    torch.manual_seed(0)
    mu, sigma = torch.tensor([1.0, -1.0]), torch.tensor([0.5, 1.5])
    data = mu + sigma * torch.randn(20000, 2)
    model = GaussianEnergy(2)
    # ULA with h = 5e-3 biases the variance by a factor 1/(1 − h/(2σ²)) ≤ 1.01: negligible here.
    pcd = PersistentContrastiveDivergence(
        ReplayBuffer(lambda n: 3 * torch.randn(n, 2), capacity=1000, reinit_prob=0.0),
        partial(langevin, n_steps=20, step_size=0.005),
    )
    result = fit(model, pcd, tensor_batches(data, 500), n_iters=600, lr=0.01, ema_decay=0.98, progress=False)
    averaged = result.ema.module
    torch.testing.assert_close(averaged.mu.detach(), data.mean(0), atol=0.1, rtol=0)
    torch.testing.assert_close(averaged.log_sigma.exp().detach(), data.std(0), atol=0, rtol=0.1)
    assert result.seconds > 0
    assert len(result.history["loss"]) == 60 and len(result.history["energy_pos"]) == 60


def test_fit_stops_with_a_clear_error_on_a_nan_loss():
    model = GaussianEnergy(1)
    with pytest.raises(RuntimeError, match="iteration 1"):
        fit(
            model,
            lambda m, x: m(x).mean() * float("nan"),
            lambda: torch.randn(4, 1),
            n_iters=3,
            log_every=1,
            progress=False,
        )


def test_fit_validates_arguments():
    model = GaussianEnergy(1)
    with pytest.raises(ValueError, match="n_iters"):
        fit(model, lambda m, x: m(x).mean(), lambda: torch.randn(4, 1), n_iters=0)
    with pytest.raises(ValueError, match="ema_decay"):
        fit(model, lambda m, x: m(x).mean(), lambda: torch.randn(4, 1), n_iters=1, ema_decay=1.5)


@pytest.mark.parametrize(("progress", "env", "hidden"), [
    (True, None, False), (False, None, True), (True, "1", True), (True, "0", False), (False, "0", True),
])
def test_progress_bars_hide_when_asked_or_when_tqdm_disable_is_set(progress, env, hidden, monkeypatch, capsys):
    """Book builds set TQDM_DISABLE=1; the library's bars pass `disable` themselves, so tqdm alone would not
    hide them."""
    if env is None:
        monkeypatch.delenv("TQDM_DISABLE", raising=False)
    else:
        monkeypatch.setenv("TQDM_DISABLE", env)
    assert progress_disabled(progress) is hidden
    model = nn.Linear(2, 1)
    fit(model, lambda m, x: m(x).pow(2).mean(), lambda: torch.randn(4, 2), n_iters=2,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1), progress=progress, desc="bar-under-test")
    assert ("bar-under-test" in capsys.readouterr().err) is not hidden
    assert list(progress_bar([1, 2], desc="loop-under-test", progress=progress)) == [1, 2]
    assert ("loop-under-test" in capsys.readouterr().err) is not hidden
