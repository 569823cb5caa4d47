"""Lifted solvers (liftinv.training.bcd / minibatch) through the shared ``fit`` loop: descent, accuracy, resume, errors."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from liftinv.lifted import LiftingError, lift, state_step, weight_step
from liftinv.lifted.activations import NotProximalError
from liftinv.lifted.dense import DenseWeightBlock, dense_state_step
from liftinv.lifted.norms import exact_sq_norm
from liftinv.models import ProximalBlock, ResidualBlock, convnet, mlp
from liftinv.training import fit, get_trainer
from liftinv.training.lifted_base import make_shards
from liftinv.training.minibatch import SOLVERS

LIFTED = [
    "mac-bcd",
    "fenchel-bcd",
    "bregman-bcd",
    "bregman-accel",
    "bregman-adaptive",
    "bregman-isgm",
    "mac-isgm",
]


@pytest.fixture(scope="module")
def digits():
    """8x8 digits, pixels / 16, 30% held out (stratified, fixed seed), as in benchmarks/classification.py."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    X = torch.tensor(d.data / 16.0, dtype=torch.float32)
    Y = torch.tensor(d.target)
    Xtr, Xte, Ytr, Yte = train_test_split(X, Y, test_size=0.3, random_state=0, stratify=Y)
    return Xtr, Ytr, Xte, Yte


@pytest.fixture(scope="module")
def small(digits):
    """300 training digits in float64 (for exact comparisons)."""
    Xtr, Ytr, _, _ = digits
    return Xtr[:300].double(), Ytr[:300]


def _net(seed=0, sizes=(64, 32, 32, 10), dtype=torch.float64, act="relu"):
    torch.manual_seed(seed)
    return mlp(list(sizes), act, flatten=False).to(dtype)


def test_every_method_is_registered():
    for name in LIFTED:
        cls = get_trainer(name)
        assert SOLVERS[name] is cls
        assert cls.__doc__ and "Parameters" in cls.__doc__


def test_make_shards_is_a_fixed_partition():
    shards = make_shards(103, 25, seed=3)
    assert [len(s) for s in shards] == [25, 25, 25, 25, 3]
    assert sorted(torch.cat(shards).tolist()) == list(range(103))
    assert all(torch.equal(a, b) for a, b in zip(shards, make_shards(103, 25, seed=3)))
    assert not torch.equal(shards[0], make_shards(103, 25, seed=4)[0])


# ---------------------------------------------------------------------------------------------------------
# the closed-form blocks agree with the engine's autograd + backtracking primitives
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("penalty", ["bregman", "fenchel"])
def test_closed_form_blocks_match_engine(loss, penalty):
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(12, 20), nn.ReLU(), nn.Linear(20, 15), nn.ReLU(), nn.Linear(15, 4)
    )
    model = model.double()
    net = lift(model, loss=loss, penalty=penalty, lambdas=[0.7, 1.3])
    x = torch.randn(30, 3, 4, dtype=torch.float64)
    y = F.one_hot(torch.randint(0, 4, (30,)), 4).double()
    st = net.init_states(x, y)
    st[2] = st[2] + 0.3 * torch.rand_like(st[2])  # away from the forward states
    for l in (2, 1):
        a, b = list(st), list(st)
        state_step(net, a, l, y)
        lam = 1.0 if l + 1 == net.depth else net.penalties[l].weight
        dense_state_step(net, b, l, y, lam * exact_sq_norm(net.layers[l].linear.weight.detach()))
        torch.testing.assert_close(a[l], b[l], rtol=1e-5, atol=1e-7)
        st[l] = a[l]
    before = copy.deepcopy(model.state_dict())
    weight_step(net, st, y)
    engine = copy.deepcopy(model.state_dict())
    model.load_state_dict(before)
    for l in (1, 2, 3):
        blk = DenseWeightBlock(net, st, y, l)
        f0 = blk.value()
        blk.step()
        assert blk.value() <= f0
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, engine[k], rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------------------------
# descent
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["bregman-bcd", "fenchel-bcd", "bregman-accel", "mac-bcd"])
def test_full_batch_bcd_never_increases_the_objective(small, method):
    X, Y = small
    model = _net()
    with torch.no_grad():
        nested0 = float(0.5 * (model(X) - F.one_hot(Y, 10).double()).pow(2).sum(1).mean())
    h = fit(model, (X, Y), method=method, epochs=8, progress=False, weight_steps=3)
    obj = h["objective"]
    assert obj[0] < nested0  # the first epoch starts at the forward states, where objective = nested loss
    for a, b in zip(obj, obj[1:]):
        assert b <= a + 1e-12 * abs(a), f"{method}: objective rose from {a} to {b}"
    assert obj[-1] < 0.7 * obj[0]
    assert all(set(r) >= {"objective", "data", "penalty", "nested"} for r in h.records)


@pytest.mark.parametrize("method", ["bregman-bcd", "bregman-accel"])
def test_bcd_descends_on_conv_residual_and_proximal_networks(method):
    torch.manual_seed(0)
    X = torch.rand(40, 1, 8, 8, dtype=torch.float64)
    Y = torch.randint(0, 3, (40,))
    models = [
        convnet(1, 3, image_size=8, widths=(4,), hidden=8).double(),
        nn.Sequential(
            nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), ResidualBlock(16, 8), nn.Linear(16, 3)
        ).double(),
        nn.Sequential(
            nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), ProximalBlock(16, 24), nn.Linear(16, 3)
        ).double(),
    ]
    for model in models:
        h = fit(model, (X, Y), method=method, epochs=4, progress=False, weight_steps=2)
        obj = h["objective"]
        assert all(b <= a + 1e-10 * abs(a) for a, b in zip(obj, obj[1:])), obj


@pytest.mark.parametrize(
    "method,options",
    [("bregman-isgm", {}), ("mac-isgm", {}), ("bregman-adaptive", {"lr": 3e-3})],
    ids=["bregman-isgm", "mac-isgm", "bregman-adaptive"],
)
def test_minibatch_methods_decrease_the_nested_loss(small, method, options):
    X, Y = small
    model = _net()
    with torch.no_grad():
        nested0 = float(0.5 * (model(X) - F.one_hot(Y, 10).double()).pow(2).sum(1).mean())
    h = fit(model, (X, Y), method=method, epochs=4, progress=False, batch_size=60, **options)
    nested = h["nested"]
    assert nested[0] < nested0
    assert nested[-1] < 0.7 * nested0
    assert all(b < a for a, b in zip(nested, nested[1:])), nested


def test_cross_entropy_loss(small):
    X, Y = small
    h = fit(_net(), (X, Y), method="bregman-bcd", loss="ce", epochs=6, progress=False)
    obj = h["objective"]
    assert all(b <= a + 1e-12 for a, b in zip(obj, obj[1:]))
    assert obj[-1] < 0.8 * obj[0]
    assert h.last["train_accuracy"] > 0.3  # chance: 0.1


# ---------------------------------------------------------------------------------------------------------
# accuracy on digits (a smaller version of benchmarks/classification.py)
# ---------------------------------------------------------------------------------------------------------
def test_digits_accuracy_floor(digits):
    """One seed, MLP 64-128-128-10 ReLU, MSE: Adam 15 epochs >= 96%, Bregman-accelerated 25 epochs >= 96%,
    Bregman-BCD 40 full-batch epochs >= 93%, Bregman-ISGM 4 epochs >= 90%."""
    Xtr, Ytr, Xte, Yte = digits
    floors = {
        ("backprop-adam", 15): 0.96,
        ("bregman-accel", 25): 0.96,
        ("bregman-bcd", 40): 0.93,
        ("bregman-isgm", 4): 0.90,
    }
    acc = {}
    for method, epochs in floors:
        model = _net(0, (64, 128, 128, 10), torch.float32)
        h = fit(model, (Xtr, Ytr), method=method, epochs=epochs, test=(Xte, Yte), progress=False, seed=0)
        acc[method] = h.last["test_accuracy"]
    for (method, _), floor in floors.items():
        assert acc[method] >= floor, acc
    assert acc["backprop-adam"] - acc["bregman-accel"] <= 0.02, acc


# ---------------------------------------------------------------------------------------------------------
# determinism and resume
# ---------------------------------------------------------------------------------------------------------
RESUME = [
    ("bregman-bcd", {}),
    ("bregman-bcd", {"batch_size": 100}),
    ("bregman-accel", {"batch_size": 150}),
    ("bregman-isgm", {"batch_size": 64}),
    ("bregman-adaptive", {"batch_size": 64}),
]


@pytest.mark.parametrize("method,options", RESUME, ids=[f"{m}{o}" for m, o in RESUME])
def test_resume_gives_the_same_weights(small, tmp_path, method, options):
    X, Y = small
    ck = tmp_path / "ck.pt"
    part = _net(3)
    fit(part, (X, Y), method=method, epochs=2, checkpoint=ck, progress=False, seed=5, **options)
    resumed = _net(99)  # different init: everything must come from the checkpoint
    h = fit(resumed, (X, Y), method=method, epochs=4, checkpoint=ck, progress=False, seed=5, **options)
    straight = _net(3)
    h2 = fit(straight, (X, Y), method=method, epochs=4, progress=False, seed=5, **options)
    for (k, a), b in zip(resumed.state_dict().items(), straight.state_dict().values()):
        assert torch.equal(a, b), f"{method}: parameter {k} differs after resume"
    assert h["objective"] == h2["objective"]


def test_seed_changes_the_minibatch_order(small):
    X, Y = small
    runs = []
    for seed in (0, 0, 1):
        model = _net(0)
        fit(model, (X, Y), method="bregman-isgm", epochs=1, batch_size=64, progress=False, seed=seed)
        runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_checkpoint_from_other_shards_is_rejected(small, tmp_path):
    X, Y = small
    ck = tmp_path / "ck.pt"
    fit(_net(), (X, Y), method="bregman-bcd", epochs=1, checkpoint=ck, progress=False, batch_size=100)
    with pytest.raises(ValueError, match="shards differ"):
        fit(_net(), (X, Y), method="bregman-bcd", epochs=2, checkpoint=ck, progress=False, batch_size=50)


def test_states_live_on_the_model_device(small, device):
    X, Y = small
    model = _net().to(device)
    cls = get_trainer("bregman-bcd")
    tr = cls(model, X.to(device), Y.to(device), loss="mse", seed=0)
    tr.run_epoch(0, torch.Generator().manual_seed(0))
    assert all(s.device.type == device.type for s in tr.states[0])
    assert all(v.device.type == "cpu" for v in tr.state_dict()["states"][0].values())


# ---------------------------------------------------------------------------------------------------------
# bad input -> clear errors
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["bregman-bcd", "bregman-isgm", "fenchel-bcd", "mac-bcd"])
@pytest.mark.parametrize(
    "layer,error,match",
    [
        (nn.GELU(), NotProximalError, "GELU is not monotone"),
        (nn.SiLU(), NotProximalError, "not a proximal map"),
        (nn.MaxPool1d(1), LiftingError, "MaxPool1d.*not supported"),
        (nn.BatchNorm1d(16), LiftingError, "BatchNorm1d.*not supported"),
        (nn.Dropout(0.1), LiftingError, "Dropout.*not supported"),
    ],
    ids=["gelu", "silu", "maxpool", "batchnorm", "dropout"],
)
def test_unsupported_layers(method, layer, error, match):
    model = nn.Sequential(nn.Linear(8, 16), layer, nn.Linear(16, 3))
    X, Y = torch.randn(20, 8), torch.randint(0, 3, (20,))
    with pytest.raises(error, match=match):
        fit(model, (X, Y), method=method, epochs=1, progress=False)


def test_maxpool2d_in_a_convnet_is_rejected():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 3)
    )
    X, Y = torch.rand(10, 1, 8, 8), torch.randint(0, 3, (10,))
    with pytest.raises(LiftingError, match=r"bregman-bcd: .*MaxPool2d.*not supported by lift"):
        fit(model, (X, Y), method="bregman-bcd", epochs=1, progress=False)


@pytest.mark.parametrize("method", ["bregman-bcd", "bregman-accel", "bregman-isgm", "bregman-adaptive"])
@pytest.mark.parametrize("activation,name", [("sign", "Sign"), ("qrelu2", "Staircase")])
def test_hard_thresholds_point_to_ftprop(method, activation, name):
    from liftinv.models import activation_module

    model = nn.Sequential(nn.Linear(8, 16), activation_module(activation), nn.Linear(16, 3))
    X, Y = torch.randn(20, 8), torch.randint(0, 3, (20,))
    with pytest.raises(
        NotProximalError, match=rf"(?s){method}: activation '{name}' is not admissible.*FTPROP"
    ):
        fit(model, (X, Y), method=method, epochs=1, progress=False)


def test_fenchel_needs_relu():
    X, Y = torch.randn(20, 8), torch.randint(0, 3, (20,))
    with pytest.raises(TypeError, match="Fenchel.*ReLU"):
        fit(
            _net(0, (8, 16, 3), torch.float32, "tanh"), (X, Y), method="fenchel-bcd", epochs=1, progress=False
        )


@pytest.mark.parametrize("method", LIFTED)
def test_shape_mismatch_and_nan(method):
    model = _net(0, (8, 16, 3), torch.float32)
    with pytest.raises(ValueError, match=r"inputs of shape \(5,\) \(per sample\) do not fit the model"):
        fit(model, (torch.randn(20, 5), torch.randint(0, 3, (20,))), method=method, epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
        fit(model, (torch.randn(20, 8), torch.arange(20)), method=method, epochs=1, progress=False)
    with pytest.raises(
        ValueError, match=r"targets have shape \(4,\) per sample but the model outputs \(3,\)"
    ):
        fit(model, (torch.randn(20, 8), torch.randn(20, 4)), method=method, epochs=1, progress=False)
    with pytest.raises(ValueError, match="X has 20 samples but Y has 19"):
        fit(model, (torch.randn(20, 8), torch.randint(0, 3, (19,))), method=method, epochs=1, progress=False)
    X = torch.randn(20, 8)
    X[3, 2] = float("nan")
    with pytest.raises(ValueError, match="contain NaN"):
        fit(model, (X, torch.randint(0, 3, (20,))), method=method, epochs=1, progress=False)


@pytest.mark.parametrize("method", LIFTED)
@pytest.mark.parametrize(
    "lambdas",
    [-1.0, [1.0, -0.5], float("nan"), [1.0, 1.0, 1.0], "1"],
    ids=["neg", "neg-list", "nan", "len", "str"],
)
def test_bad_lambdas(method, lambdas):
    """One contract: a float >= 0 or one value >= 0 per penalised layer (the 8-16-16-3 MLP has two)."""
    X, Y = torch.randn(20, 8), torch.randint(0, 3, (20,))
    with pytest.raises(
        ValueError,
        match=r"lambdas must be a float >= 0 or a sequence of 2 floats >= 0 \(one per penalised layer\)",
    ):
        fit(
            _net(0, (8, 16, 16, 3), torch.float32),
            (X, Y),
            method=method,
            epochs=1,
            progress=False,
            lambdas=lambdas,
        )


@pytest.mark.parametrize(
    "method,options,match",
    [
        ("bregman-bcd", {"weight_steps": 0}, "weight_steps must be an int >= 1"),
        ("bregman-bcd", {"sweeps": -1}, "sweeps must be an int >= 0"),
        ("bregman-bcd", {"batch_size": 0}, "batch_size must be a positive int"),
        ("bregman-bcd", {"order": "bottom-up"}, "order must be one of 'top-down', 'parity', 'symmetric'"),
        ("bregman-isgm", {"tau": 0.0}, "tau must be a positive float"),
        ("bregman-isgm", {"inner": 0}, "inner must be an int >= 1"),
        ("bregman-adaptive", {"lr": -1e-3}, "lr must be a positive float"),
        ("bregman-adaptive", {"weight_decay": -1.0}, "weight_decay must be a non-negative number"),
        ("bregman-bcd", {"penalty": "l1"}, "penalty must be one of"),
    ],
)
def test_bad_options(method, options, match):
    X, Y = torch.randn(20, 8), torch.randint(0, 3, (20,))
    with pytest.raises(ValueError, match=match):
        fit(_net(0, (8, 16, 3), torch.float32), (X, Y), method=method, epochs=1, progress=False, **options)


def test_parity_order_and_other_activations(small):
    X, Y = small
    for act in ("tanh", "leaky_relu", "clipped_relu"):
        h = fit(_net(0, act=act), (X, Y), method="bregman-bcd", epochs=3, progress=False, order="parity")
        obj = h["objective"]
        assert all(b <= a + 1e-12 * abs(a) for a, b in zip(obj, obj[1:])), (act, obj)


# ---------------------------------------------------------------------------------------------------------
# the shared option vocabulary: lambdas per penalised layer, sweep orders, reinit, weight decay
# ---------------------------------------------------------------------------------------------------------
def test_lambdas_are_one_weight_per_penalised_layer(small):
    X, Y = small
    cls = get_trainer("bregman-bcd")
    # a classifier: the last layer holds the data term (weight 1), the two hidden layers are penalised
    assert cls(_net(), X, Y, lambdas=[0.5, 2.0]).net.lambdas == [0.5, 2.0, 1.0]
    assert cls(_net(), X, Y, lambdas=0.5).net.lambdas == [0.5, 0.5, 1.0]
    # a network that ends with an activation: its last state is free and penalised too
    torch.manual_seed(0)
    ae = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 64), nn.Sigmoid()).double()
    tr = get_trainer("bregman-isgm")(ae, X, X, lambdas=[0.5, 2.0])
    assert tr.net.last == "free" and tr.net.lambdas == [0.5, 2.0]


@pytest.mark.parametrize(
    "order,expected", [("top-down", [3, 2, 1]), ("parity", [3, 1, 2]), ("symmetric", [1, 2, 3, 3, 2, 1])]
)
def test_every_sweep_order_descends(small, order, expected):
    """Full-batch BCD decreases the lifted objective whatever the order of the (safe) state steps."""
    X, Y = small
    sizes = (64, 32, 32, 32, 10)
    assert get_trainer("bregman-bcd")(_net(0, sizes), X, Y, order=order).sweep_order == expected
    h = fit(_net(0, sizes), (X, Y), method="bregman-bcd", epochs=4, progress=False, order=order, sweeps=2)
    obj = h["objective"]
    assert all(b <= a + 1e-12 * abs(a) for a, b in zip(obj, obj[1:])), (order, obj)
    assert obj[-1] < 0.6 * obj[0]


def test_reinit_restarts_the_states_from_a_forward_pass(small):
    X, Y = small
    cls = get_trainer("bregman-bcd")
    for reinit in (True, False):
        tr = cls(_net(), X, Y, reinit=reinit, batch_size=100)
        tr.run_epoch(0, torch.Generator().manual_seed(0))
        forward = [
            torch.allclose(tr.states[s][l], tr.net.init_states(X[idx], tr.T[idx])[l])
            for s, idx in enumerate(tr.shards)
            for l in tr.free
        ]
        assert all(forward) if reinit else not any(forward)


def test_adaptive_weight_decay_shrinks_the_weights(small):
    X, Y = small
    norms = {}
    for weight_decay in (0.0, 1.0):
        model = _net(0)
        opts = dict(batch_size=60, lr=1e-2, weight_decay=weight_decay)
        fit(model, (X, Y), method="bregman-adaptive", epochs=2, progress=False, **opts)
        norms[weight_decay] = float(sum(p.detach().pow(2).sum() for p in model.parameters()))
    assert norms[1.0] < 0.5 * norms[0.0], norms
