import pytest
import torch
from torch import nn

from ebmlib.nets import MLP, IsingEnergy, MLPEnergy, Swish, count_parameters, layer_stack, make_activation


def test_mlp_energy_maps_batches_to_scalars_and_flattens_events():
    energy = MLPEnergy(in_dim=12, hidden=16, depth=2)
    assert energy(torch.randn(5, 12)).shape == (5,)
    assert energy(torch.randn(5, 3, 4)).shape == (5,)
    assert energy(torch.randint(0, 2, (5, 12))).shape == (5,)  # discrete states are cast


def test_mlp_energy_rejects_wrong_width():
    with pytest.raises(ValueError, match="x must have 12 features"):
        MLPEnergy(in_dim=12)(torch.randn(5, 13))


def test_mlp_layer_structure_and_parameter_count():
    mlp = MLP(3, 2, [4, 5], activation="elu")
    linear_params = (3 * 4 + 4) + (4 * 5 + 5) + (5 * 2 + 2)
    assert count_parameters(mlp) == linear_params
    assert count_parameters(MLP(3, 2, [4, 5], activation="swish")) == linear_params + 2  # one β per layer


def test_swish_matches_its_formula_and_learns_beta():
    act = Swish()
    x = torch.linspace(-3, 3, 7)
    torch.testing.assert_close(act(x), x * torch.sigmoid(x))
    act(x).sum().backward()
    assert act.beta.grad is not None and act.beta.grad.abs() > 0
    assert Swish(learnable_beta=False).beta is None


@pytest.mark.parametrize(
    "bad",
    [dict(in_dim=0), dict(in_dim=2, hidden=0), dict(in_dim=2, depth=-1), dict(in_dim=2, activation="gelu")],
)
def test_bad_configuration_raises(bad):
    with pytest.raises(ValueError):
        MLPEnergy(**bad)


def test_make_activation_returns_fresh_modules():
    assert make_activation("swish") is not make_activation("swish")


def test_float64_energy_works_after_conversion():
    energy = MLPEnergy(in_dim=2, hidden=8, depth=1).double()
    assert energy(torch.randn(3, 2, dtype=torch.float64)).dtype == torch.float64


def test_ising_energy_matches_the_lattice_model_when_given_its_couplings():
    from ebmlib.data import IsingLattice

    lattice = IsingLattice(3, 0.3)
    model = IsingEnergy(9)
    with torch.no_grad():
        model.weight.copy_(lattice.J + torch.diag(torch.ones(9)))  # the diagonal must not matter
    x = torch.randint(0, 2, (20, 9)).float()
    torch.testing.assert_close(model(x), lattice.energy(x))
    torch.testing.assert_close(model.coupling, model.coupling.T)
    assert (model.coupling.diagonal() == 0).all()
    with pytest.raises(ValueError, match="x must have shape"):
        model(torch.zeros(2, 8))


def test_bernoulli_tilted_energy_is_the_base_distribution_for_a_flat_network():
    # With E_θ ≡ 0 the normalised model over {0,1}^d must be the product of Bernoulli(μ_j): catches a swapped
    # μ / 1 - μ or a sign error in the tilt.
    from ebmlib.data import all_binary_states
    from ebmlib.nets import BernoulliTiltedEnergy

    class Zero(torch.nn.Module):
        def forward(self, x):
            return x.new_zeros(x.shape[0], 1)

    probs = torch.tensor([0.1, 0.6, 0.75, 0.3], dtype=torch.float64)
    states = all_binary_states(4, dtype=torch.float64)
    model = BernoulliTiltedEnergy(Zero(), probs)
    exact = (states * probs + (1 - states) * (1 - probs)).prod(1)
    torch.testing.assert_close(torch.softmax(-model(states), 0), exact)
    net = MLPEnergy(4, hidden=8, depth=2).double()
    tilted = BernoulliTiltedEnergy(net, probs)
    torch.testing.assert_close(tilted(states), net(states) - exact.log())
    assert tilted.probs.dtype == torch.float64 and "probs" in dict(tilted.named_buffers())
    for bad in (torch.tensor([0.0, 0.5]), torch.tensor([0.5, 1.0]), torch.tensor([[0.5]]), torch.tensor([1, 0])):
        with pytest.raises(ValueError, match="probs"):
            BernoulliTiltedEnergy(net, bad)
    with pytest.raises(ValueError, match="x"):
        tilted(states[:, :3])


def test_layer_stack_puts_one_activation_between_consecutive_layers():
    stack = layer_stack([3, 5, 7, 2], nn.Linear, nn.Tanh)
    assert [type(m) for m in stack] == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh, nn.Linear]
    assert [(m.in_features, m.out_features) for m in stack[::2]] == [(3, 5), (5, 7), (7, 2)]
    assert stack[1] is not stack[3]  # a fresh activation each time (a learnable Swish has one beta per layer)
    assert [type(m) for m in layer_stack([3, 2], nn.Linear, nn.Tanh)] == [nn.Linear]


def test_an_mlp_checks_its_activation_name_even_without_hidden_layers():
    with pytest.raises(ValueError, match="activation"):
        MLP(2, 1, [], activation="sigmoid")


def test_layer_stack_needs_an_input_and_an_output_width():
    with pytest.raises(ValueError, match="widths"):
        layer_stack([3], nn.Linear, nn.Tanh)
