"""MCMC diagnostics: split-R̂ against ArviZ's reference implementation, and mode switches by hand."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from ebmlib.metrics import mode_switches, split_rhat

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # ArviZ announces its 1.0 refactor on import
    import arviz


def _arviz_rhat(chains: torch.Tensor) -> np.ndarray:
    """ArviZ's rank-normalised split-R̂ (Vehtari et al. 2021), one coordinate at a time."""
    draws = chains.double().numpy()
    return np.array([float(arviz.rhat(draws[:, :, j], method="rank")) for j in range(draws.shape[2])])


def _cases() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    iid = torch.randn(4, 100, 3, generator=g, dtype=torch.float64)
    stuck = iid + torch.tensor([0.0, 0.0, 3.0, 3.0], dtype=torch.float64)[:, None, None]  # two modes
    frozen = iid.clone()
    frozen[0] = frozen[0, :1]  # one chain never moves
    scales = iid * torch.tensor([0.3, 1.0, 1.0, 3.0], dtype=torch.float64)[:, None, None]  # tails disagree
    drift = iid + torch.linspace(0, 2, 100, dtype=torch.float64)[None, :, None]
    heavy = torch.distributions.StudentT(2.0).sample((3, 41, 2)).double()  # odd length, heavy tails
    ties = torch.randint(0, 3, (4, 20, 2), generator=g).double()  # a discrete chain: many tied ranks
    return {"iid": iid, "stuck in two modes": stuck, "one frozen chain": frozen, "different scales": scales,
            "drift": drift, "odd length, heavy tails": heavy, "ties": ties}


@pytest.mark.parametrize("name", list(_cases()))
def test_split_rhat_matches_arviz_rank_method(name):
    # Catches any departure from Vehtari et al.'s definition: ranking before splitting an odd-length chain,
    # the lower instead of the average middle value as the median of the folded draws, or W with ddof=0.
    chains = _cases()[name]
    ours = split_rhat(chains)
    assert ours.shape == (chains.shape[2],) and ours.dtype == torch.float64
    np.testing.assert_allclose(ours.numpy(), _arviz_rhat(chains), rtol=1e-10)


def test_split_rhat_float32_and_constant_chains():
    chains = _cases()["stuck in two modes"]
    np.testing.assert_allclose(split_rhat(chains.float()).numpy(), _arviz_rhat(chains), rtol=1e-4)
    assert split_rhat(chains.float()).dtype == torch.float32
    # Constant within every half but different between chains: no within-chain variance, R-hat infinite.
    apart = torch.arange(4, dtype=torch.float64)[:, None, None].expand(4, 10, 1)
    assert split_rhat(apart).item() == float("inf")
    assert split_rhat(torch.ones(3, 10, 1, dtype=torch.float64)).item() == 1.0


def test_mode_switches_counts_changes_of_the_nearest_centre():
    centres = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])
    x = torch.tensor([-0.9, -1.2, 0.8, 1.1, -0.2, -0.7, 0.3])  # nearest: 0 0 1 1 0 0 1 -> 3 changes
    chains = torch.stack([torch.stack([x, torch.zeros_like(x)], 1),
                          torch.stack([x.abs() + 0.1, torch.ones_like(x)], 1)])  # always mode 1 -> 0 changes
    counts = mode_switches(chains, centres)
    assert counts.tolist() == [3, 0] and counts.dtype == torch.long


def test_mode_diagnostics_reject_bad_input():
    with pytest.raises(ValueError, match="chains"):
        split_rhat(torch.zeros(1, 10, 2))
    with pytest.raises(ValueError, match="chains"):
        split_rhat(torch.zeros(2, 3, 2))
    with pytest.raises(ValueError, match="chains"):
        mode_switches(torch.zeros(2, 1, 2), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="centres"):
        mode_switches(torch.zeros(2, 5, 2), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="centres"):
        mode_switches(torch.zeros(2, 5, 2), torch.zeros(0, 2))
    with pytest.raises(ValueError, match="chains"):
        mode_switches(torch.full((2, 5, 2), float("nan")), torch.zeros(1, 2))
