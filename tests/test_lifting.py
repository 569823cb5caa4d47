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
        # a linear map straight before a block whose skip reads the block input: the map gets its own state
        "resnet-linear-first": (
            nn.Sequential(nn.Linear(6, 8), ResidualBlock(8, 12), nn.ReLU(), nn.Linear(8, 3)).double(),
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
    # one weight per penalised layer: mlp((4, 8, 2)) has one hidden layer; its last layer holds the data
    with pytest.raises(ValueError, match=r"lambdas must be a float >= 0 or a sequence of 1 floats"):
        lift(mlp((4, 8, 2)), lambdas=[-1.0])
    with pytest.raises(ValueError, match=r"sequence of 1 floats >= 0 \(one per penalised layer\)"):
        lift(mlp((4, 8, 2)), lambdas=[1.0, 1.0])
    assert lift(mlp((4, 8, 2)), lambdas=[0.5]).lambdas == [0.5, 1.0]
    assert lift(mlp((4, 8, 2)), last="free", lambdas=[0.5, 2.0]).lambdas == [0.5, 2.0]


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


# ---------------------------------------------------------------------------------------------------------
# the one power iteration (liftinv.lifted.norms.power_iteration) and the norms built on it
# ---------------------------------------------------------------------------------------------------------
def test_power_iteration_estimates_the_largest_eigenvalue_from_below():
    from liftinv.lifted.norms import power_iteration

    A = torch.randn(30, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = float(torch.linalg.matrix_norm(A, ord=2)) ** 2
    v0 = torch.randn(12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    estimates = [power_iteration(lambda v: A.T @ (A @ v), v0, k)[0] for k in (1, 5, 200)]
    assert all(e <= exact * (1 + 1e-12) for e in estimates)  # Rayleigh quotients: lower bounds
    assert estimates[0] <= estimates[1] <= estimates[2] == pytest.approx(exact, rel=1e-10)
    # the returned vector warm-starts: one more iteration from it is as good as the long run
    est, v = power_iteration(lambda v: A.T @ (A @ v), v0, 150)
    assert power_iteration(lambda v: A.T @ (A @ v), v, 1)[0] == pytest.approx(exact, rel=1e-10)
    # a quotient supplied by the caller (||A v||^2) is used as the estimate
    est_q, _ = power_iteration(lambda v: (A.T @ (A @ v), (A @ v) @ (A @ v)), v0, 200)
    assert est_q == pytest.approx(exact, rel=1e-10)
    with pytest.raises(ValueError, match="iters must be >= 1"):
        power_iteration(lambda v: v, v0, 0)


def test_power_iteration_tolerance_dicts_and_batches():
    from liftinv.lifted.norms import power_iteration

    calls = []

    def gram(v):
        calls.append(1)
        return torch.tensor([1.0, 3.0, 2.0], dtype=torch.float64) * v

    est, _ = power_iteration(gram, torch.ones(3, dtype=torch.float64), 500, tol=1e-8)
    assert est == pytest.approx(3.0, rel=1e-7) and 5 < len(calls) < 500  # stopped early
    # a dict is one vector of several blocks: theta = (w, b) -> X w + b is the matrix K = [X, 1]
    X = torch.randn(7, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    K = torch.cat([X, torch.ones(7, 1, dtype=torch.float64)], 1)

    def gram_dict(v):
        full = K.T @ (X @ v["w"] + v["b"])
        return {"w": full[:-1], "b": full[-1]}

    start = {"w": torch.ones(4, dtype=torch.float64), "b": torch.ones((), dtype=torch.float64)}
    est_d, v = power_iteration(gram_dict, start, 300)
    assert est_d == pytest.approx(float(torch.linalg.matrix_norm(K, ord=2)) ** 2, rel=1e-9)
    assert set(v) == {"w", "b"}
    # batched: one problem per sample
    D = torch.tensor([[1.0, 2.0, 0.5], [4.0, 0.5, 3.0]], dtype=torch.float64)
    est_b, _ = power_iteration(lambda v: D * v, torch.ones(2, 3, dtype=torch.float64), 300, batched=True)
    torch.testing.assert_close(est_b, torch.tensor([2.0, 4.0], dtype=torch.float64))
    est_bt, _ = power_iteration(
        lambda v: D * v, torch.ones(2, 3, dtype=torch.float64), 10_000, tol=1e-12, batched=True
    )
    torch.testing.assert_close(est_bt, torch.tensor([2.0, 4.0], dtype=torch.float64))


def test_norm_helpers_agree_with_exact_norms():
    """lipschitz_state, param_map_norm_sq, power_sq_norm, jacobian_norm_sq run the one power iteration."""
    from liftinv.lifted.norms import (
        exact_sq_norm,
        jacobian_norm_sq,
        lipschitz_state,
        param_map_norm_sq,
        power_sq_norm,
    )

    g = torch.Generator().manual_seed(3)
    A = torch.randn(40, 9, generator=g, dtype=torch.float64)
    cache: dict = {}
    for augment in (False, True):
        exact = exact_sq_norm(A, augment) / (1 + 1e-6)  # (exact_sq_norm is 1e-6 on the safe side)
        cold = power_sq_norm(A, augment, cache, augment, cold_iters=200)
        assert cold == pytest.approx(1.05 * exact, rel=1e-6)  # x1.05 safety factor
        assert power_sq_norm(A, augment, cache, augment) == pytest.approx(1.05 * exact, rel=1e-6)  # warm
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, bias=False), nn.ReLU()).double()
    net = lift(conv, last="free")
    states = net.init_states(torch.randn(3, 1, 6, 6, generator=g, dtype=torch.float64))
    # ||K||^2 of the convolution, exactly: the largest singular value of its matrix
    eye = torch.eye(36, dtype=torch.float64).reshape(36, 1, 6, 6)
    with torch.no_grad():
        K = conv[0](eye).reshape(36, -1).T
    exact_k = float(torch.linalg.matrix_norm(K, ord=2)) ** 2
    # (the top eigenvalues of a convolution cluster: the power iteration approaches them slowly, from below)
    lip = lipschitz_state(net, states, 0, {}, iters=300)
    assert 1.05 * exact_k * (1 - 1e-3) <= lip <= 1.05 * exact_k * (1 + 1e-12)
    # the map weight -> conv(X, weight) of the layer
    X = states[0]
    cols = torch.stack(
        [
            torch.nn.functional.conv2d(X, e.reshape(1, 1, 3, 3), padding=1).reshape(-1)
            for e in torch.eye(9, dtype=torch.float64)
        ],
        1,
    )
    exact_w = float(torch.linalg.matrix_norm(cols, ord=2)) ** 2
    est_w = param_map_norm_sq(net.layers[0], [X], None, "w", iters=300)
    assert 1.05 * exact_w * (1 - 1e-3) <= est_w <= 1.05 * exact_w * (1 + 1e-12)
    # the Jacobian of a linear map is the map: max over the batch of ||J||^2 = ||A||^2
    lin = nn.Linear(9, 40, bias=True).double()
    with torch.no_grad():
        lin.weight.copy_(A)
    jac = jacobian_norm_sq(lin, torch.randn(2, 9, generator=g, dtype=torch.float64), g, iters=300)
    assert jac == pytest.approx(float(torch.linalg.matrix_norm(A, ord=2)) ** 2, rel=1e-8)


def test_power_iteration_never_returns_a_zero_warm_start():
    """A map of norm 0 (e.g. ``(1 - tau) I`` at ``tau = 1``) gives the estimate 0, and the returned vector is
    not zero, so a warm start from it still finds the norm once the map changes; a zero start is re-seeded."""
    from liftinv.lifted.norms import power_iteration

    D = torch.tensor([1.0, 3.0, 2.0], dtype=torch.float64)
    v0 = torch.ones(3, dtype=torch.float64)
    est, v = power_iteration(lambda v: 0.0 * v, v0, 5)
    assert est == 0.0 and float(v.norm()) > 0
    assert power_iteration(lambda v: D * v, v, 60)[0] == pytest.approx(3.0, rel=1e-8)
    est0, v = power_iteration(lambda v: D * v, torch.zeros(3, dtype=torch.float64), 60)
    assert est0 == pytest.approx(3.0, rel=1e-8) and float(v.norm()) > 0
    # batched: only the zero samples are kept / re-seeded
    B = torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]], dtype=torch.float64)
    est_b, vb = power_iteration(lambda v: B * v, torch.ones(2, 3, dtype=torch.float64), 100, batched=True)
    assert est_b.tolist() == pytest.approx([2.0, 0.0]) and bool((vb.norm(dim=1) > 0).all())
    start = torch.stack([torch.ones(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)])
    est_s, _ = power_iteration(lambda v: D * v, start, 100, batched=True)
    assert est_s.tolist() == pytest.approx([3.0, 3.0])
    # dict vectors (blocks of one vector)
    est_d, vd = power_iteration(lambda v: {"a": 0.0 * v["a"]}, {"a": torch.ones(2)}, 3)
    assert est_d == 0.0 and float(vd["a"].norm()) > 0


def test_lipschitz_state_restarts_cold_from_a_zero_cached_vector():
    from liftinv.lifted.norms import lipschitz_state

    torch.manual_seed(0)
    # (Flatten + Linear: a layer whose norm is estimated by the power iteration, not computed exactly)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    net = lift(model)
    states = net.init_states(torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64))
    exact = float(torch.linalg.matrix_norm(model[1].weight.detach(), ord=2)) ** 2
    cache = {("state", 0, 1): torch.zeros(1, 4, dtype=torch.float64)}  # e.g. left by older code
    assert lipschitz_state(net, states, 0, cache, iters=200) == pytest.approx(1.05 * exact, rel=1e-6)


def test_state_map_norms_are_the_norms_of_each_input_of_each_layer():
    """``state_map_norms``: 1.05 ||K_{m,l}||^2 per (layer, input state), all inputs of a layer in one batch."""
    from liftinv.lifted.network import LiftedLayer, LiftedNetwork
    from liftinv.lifted.norms import state_map_norms

    g = torch.Generator().manual_seed(0)
    A = torch.randn(5, 4, generator=g, dtype=torch.float64)
    Bm = torch.randn(5, 3, generator=g, dtype=torch.float64)

    class TwoInputs(nn.Module):  # z = A a + B b + 1 (affine)
        def forward(self, a, b):
            return a @ A.T + b @ Bm.T + 1.0

    lin = nn.Linear(4, 3).double()
    net = LiftedNetwork(
        [
            LiftedLayer(nn.Linear(2, 4).double(), nn.ReLU(), inputs=(0,)),
            LiftedLayer(lin, nn.ReLU(), inputs=(1,)),
            LiftedLayer(TwoInputs(), nn.Identity(), inputs=(1, 2)),
        ]
    )
    cache: dict = {}
    norms = state_map_norms(net, [(2,), (4,), (3,), (5,)], cache, iters=300)
    assert set(norms) == {(2, 1), (3, 1), (3, 2)}  # the input state 0 is not a state block

    def sq(M):
        return float(torch.linalg.matrix_norm(M, ord=2)) ** 2

    for key, M in {(2, 1): lin.weight.detach(), (3, 1): A, (3, 2): Bm}.items():
        assert norms[key] == pytest.approx(1.05 * sq(M), rel=1e-8)
    # warm starts from the cache: one more iteration is as good
    warm = state_map_norms(net, [(2,), (4,), (3,), (5,)], cache, warm_iters=1)
    assert warm == pytest.approx(norms, rel=1e-8)
    # a map of norm 0 gives 0 and recovers once it changes (the warm-start vector is never zero)
    with torch.no_grad():
        lin.weight.zero_()
    assert state_map_norms(net, [(2,), (4,), (3,), (5,)], cache, layers=[2])[(2, 1)] == 0.0
    with torch.no_grad():
        lin.weight.copy_(torch.randn(3, 4, generator=g, dtype=torch.float64))
    for _ in range(60):
        est = state_map_norms(net, [(2,), (4,), (3,), (5,)], cache, layers=[2])[(2, 1)]
    assert est == pytest.approx(1.05 * sq(lin.weight.detach()), rel=1e-6)


def test_independent_groups_generalise_the_parities_to_networks_with_skips():
    from liftinv.lifted.steps import independent_groups

    model, _ = _models()["mlp"]
    chain = lift(model)
    levels = list(range(chain.depth - 1, 0, -1))
    assert independent_groups(chain, levels) == [levels[0::2], levels[1::2]]  # the two parities
    resnet = lift(_models()["resnet"][0])
    levels = list(range(resnet.depth - 1, 0, -1))
    groups = independent_groups(resnet, levels)
    assert sorted(l for g in groups for l in g) == sorted(levels)

    def interact(a, b):  # in one term: a layer's output and one of its inputs, or two inputs of a layer
        for m, layer in enumerate(resnet.layers, start=1):
            term = set(layer.inputs) | ({m} if m < resnet.depth else set())
            if a in term and b in term:
                return True
        return False

    for g in groups:
        assert not any(interact(a, b) for a in g for b in g if a != b)
    # the skip connections make the index parities interact: the parity sweep needs more groups
    assert len(groups) > 2 and any(
        interact(a, b) for a in levels for b in levels if (a - b) % 2 == 0 and a != b
    )
