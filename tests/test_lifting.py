"""Lifted objective, block steps and lift() errors (DESIGN §3-§4)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from liftinv.lifted import LiftingError, lift, state_sweep, weight_step
from liftinv.lifted.activations import NotProximalError
from liftinv.lifted.penalties import BregmanPenalty, FenchelPenalty, QuadraticPenalty
from liftinv.models import ProximalBlock, ResidualBlock, convnet, mlp


def _models():
    torch.manual_seed(0)
    return {
        "mlp": (mlp((6, 16, 16, 3)).double(), (20, 6)),
        "mlp-tanh-sigmoid": (
            nn.Sequential(
                nn.Linear(6, 9), nn.Tanh(), nn.Linear(9, 7), nn.Sigmoid(), nn.Linear(7, 3)
            ).double(),
            (20, 6),
        ),
        "conv": (convnet(1, 3, 8, (4, 4), hidden=8).double(), (20, 1, 8, 8)),
        "resnet": (
            nn.Sequential(
                nn.Linear(6, 8),
                nn.ReLU(),
                ResidualBlock(8, 12),
                nn.ReLU(),
                ResidualBlock(8, 6, "tanh"),
                nn.Linear(8, 3),
            ).double(),
            (20, 6),
        ),
        "pnn": (
            nn.Sequential(
                nn.Linear(6, 8), ProximalBlock(8, 12), ProximalBlock(8, 12, "tanh"), nn.Linear(8, 3)
            ).double(),
            (20, 6),
        ),
    }


MODELS = sorted(_models())


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_objective_equals_nested_loss_at_forward_states(name, loss):
    model, shape = _models()[name]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    y = torch.nn.functional.one_hot(torch.randint(0, 3, (shape[0],), generator=g), 3).double()
    net = lift(model, loss=loss, lambdas=0.7)
    states = net.init_states(x, y)
    parts = {k: v.detach() for k, v in net.objective(states, y).items()}
    nested = net.nested_loss(x, y).detach()
    assert abs(float(parts["penalty"])) <= 1e-10
    assert abs(float(parts["objective"] - nested)) <= 1e-6 * abs(float(nested))
    # and the nested loss is the one of the user's model
    out = model(x)
    ref = (
        0.5 * (out - y).pow(2).sum(1).mean()
        if loss == "mse"
        else nn.functional.cross_entropy(out, y.argmax(1))
    )
    torch.testing.assert_close(nested, ref)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("penalty", ["bregman", "quadratic"])
def test_bcd_never_increases_objective(name, penalty):
    model, shape = _models()[name]
    g = torch.Generator().manual_seed(2)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    y = torch.randn(shape[0], 3, generator=g, dtype=torch.float64)
    net = lift(model, penalty=penalty, lambdas=0.5)
    states = net.init_states(x, y)
    cache: dict = {}
    values = [float(net.objective(states, y)["objective"].detach())]
    for _ in range(20):
        state_sweep(net, states, y, cache=cache)
        values.append(float(net.objective(states, y)["objective"].detach()))
        weight_step(net, states, y, cache=cache)
        values.append(float(net.objective(states, y)["objective"].detach()))
    diffs = torch.tensor(values).diff()
    assert torch.all(diffs <= 1e-10 * abs(values[0])), diffs.max()
    assert values[-1] < 0.7 * values[0]  # and it actually makes progress


def test_parity_order_also_monotone():
    model, shape = _models()["mlp"]
    x = torch.randn(shape, dtype=torch.float64)
    y = torch.randn(shape[0], 3, dtype=torch.float64)
    net = lift(model)
    states = net.init_states(x, y)
    prev = float(net.objective(states, y)["objective"].detach())
    for _ in range(5):
        state_sweep(net, states, y, order="parity")
        cur = float(net.objective(states, y)["objective"].detach())
        assert cur <= prev + 1e-12
        prev = cur


def test_fln_lower_bound():
    """Fenchel lifted networks: min over states of the FLN objective <= nested loss at the same weights."""
    torch.manual_seed(3)
    model = mlp((6, 16, 16, 3)).double()
    x = torch.randn(40, 6, dtype=torch.float64)
    y = torch.randn(40, 3, dtype=torch.float64)
    net = lift(model, penalty="fenchel", lambdas=1.0)
    states = net.init_states(x, y)
    cache: dict = {}
    for _ in range(10):  # BCD on weights and states
        state_sweep(net, states, y, cache=cache)
        weight_step(net, states, y, cache=cache)
    for _ in range(30):  # minimise over the states at the final weights
        state_sweep(net, states, y, cache=cache)
    fln = float(net.objective(states, y)["objective"].detach())
    nested = float(net.nested_loss(x, y).detach())
    assert fln <= nested
    assert fln < 0.99 * nested  # strictly below: the relaxation is not tight here


def test_weights_are_shared_with_the_model():
    model = mlp((4, 8, 2)).double()
    before = model[1].weight.detach().clone()
    net = lift(model)
    assert net.layers[0].linear[1] is model[1]  # the same module object, not a copy
    x, y = torch.randn(10, 4, dtype=torch.float64), torch.randn(10, 2, dtype=torch.float64)
    states = net.init_states(x, y)
    state_sweep(net, states, y)
    weight_step(net, states, y)
    assert not torch.equal(before, model[1].weight)


def test_bregman_weight_gradient_needs_no_activation_derivative():
    """d/dW of mean_i B(x_l, W x_prev + b) = (sigma(z) - x_l) x_prev^T / N (DESIGN §3)."""
    torch.manual_seed(4)
    lin = nn.Linear(5, 4).double()
    xp = torch.randn(12, 5, dtype=torch.float64)
    xl = torch.rand(12, 4, dtype=torch.float64)
    pen = BregmanPenalty("relu")
    val = pen.value(xl, lin(xp)).mean()
    gw, gb = torch.autograd.grad(val, [lin.weight, lin.bias])
    r = torch.relu(lin(xp)).detach() - xl
    torch.testing.assert_close(gw, r.T @ xp / 12)
    torch.testing.assert_close(gb, r.mean(0))


def test_bregman_convex_in_weights_midpoint():
    torch.manual_seed(5)
    xp = torch.randn(30, 5, dtype=torch.float64)
    xl = torch.rand(30, 4, dtype=torch.float64)
    pen = BregmanPenalty("tanh")
    xl = 0.9 * (2 * xl - 1)
    for _ in range(20):
        w1, w2 = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)

        def f(w):
            return pen.value(xl, xp @ w.T).sum()

        assert f((w1 + w2) / 2) <= (f(w1) + f(w2)) / 2 + 1e-9


def test_penalty_relations():
    g = torch.Generator().manual_seed(6)
    z = torch.randn(50, 8, generator=g, dtype=torch.float64)
    x = torch.rand(50, 8, generator=g, dtype=torch.float64)
    b = BregmanPenalty("relu").value(x, z)
    f = FenchelPenalty("relu").value(x, z)
    q = QuadraticPenalty("relu").value(x, z)
    torch.testing.assert_close(b, f)
    assert torch.all(b >= q - 1e-12)
    zz = z.clone().requires_grad_(True)
    (gq,) = torch.autograd.grad(QuadraticPenalty("tanh").value(x, zz).sum(), zz)
    torch.testing.assert_close(QuadraticPenalty("tanh").grad_z(x, z), gq)


def test_penalty_errors():
    with pytest.raises(TypeError, match="ReLU layers only"):
        FenchelPenalty("tanh")
    with pytest.raises(ValueError, match="lambda must be >= 0"):
        BregmanPenalty("relu", weight=-1)
    with pytest.raises(ValueError, match="lambdas must be >= 0"):
        lift(mlp((4, 8, 2)), lambdas=[-1.0, 1.0])
    with pytest.raises(ValueError, match="lambdas has 3 entries"):
        lift(mlp((4, 8, 2)), lambdas=[1.0, 1.0, 1.0])


@pytest.mark.parametrize(
    "layer, match",
    [
        (nn.GELU(), "not monotone"),
        (nn.SiLU(), "not monotone"),
        (nn.MaxPool1d(2), "MaxPool1d.*not supported"),
        (nn.BatchNorm1d(8), "BatchNorm1d.*not supported"),
        (nn.Dropout(0.1), "Dropout.*not supported"),
        (nn.LSTM(8, 8), "LSTM.*not supported"),
    ],
)
def test_lift_rejects_unsupported_layers(layer, match):
    model = nn.Sequential(nn.Linear(4, 8), layer, nn.Linear(8, 2))
    with pytest.raises((LiftingError, NotProximalError), match=match):
        lift(model)


def test_lift_error_lists_supported_layers():
    with pytest.raises(LiftingError, match="Supported: nn.Sequential, nn.Linear"):
        lift(nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)))


def test_ce_needs_fixed_last_state():
    with pytest.raises(ValueError, match="loss='ce' needs last='fixed'"):
        lift(mlp((4, 8, 2)), loss="ce", last="free")


def test_free_last_state_for_models_ending_with_activation():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4), nn.Sigmoid()).double()
    net = lift(model)
    assert net.last == "free"
    x, y = torch.randn(10, 4, dtype=torch.float64), torch.rand(10, 4, dtype=torch.float64)
    states = net.init_states(x, None)
    torch.testing.assert_close(net.objective(states, y)["objective"], net.nested_loss(x, y))
    before = float(net.objective(states, y)["objective"].detach())
    state_sweep(net, states, y)
    assert float(net.objective(states, y)["objective"].detach()) <= before
