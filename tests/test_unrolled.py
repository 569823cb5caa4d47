"""Unrolled proximal networks: lifted structure, constraints, lifted training, save/load, reconstruction."""

from __future__ import annotations

import functools

import pytest
import torch
from liftinv.operators import make_operator

from liftinv.lifted import lift
from liftinv.metrics import psnr
from liftinv.models import OperatorAdapter, ParsevalConv, UnrolledDualFB, UnrolledProxGrad
from liftinv.training import fit, get_trainer
from liftinv.training.unrolled import UnrolledLiftedTrainer
from liftinv.unrolled import (
    ModelMismatchError,
    build_model,
    load_model,
    make_task_data,
    reconstruct,
    save_model,
    train,
)

requires_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device; none is available"
)


def _psnr(x, ref):
    return float(psnr(x.clamp(0, 1), ref).mean())


OPERATORS = [("blur", {}), ("tomography", {"angles": 8}), ("inpainting", {}), ("denoising", {})]


def _net(arch, name, kw, size=12, dtype=torch.float64, **mk):
    op = make_operator(name, size, **kw)
    net = build_model(arch, op, iterations=3, **mk)
    return net.to(dtype), op


@pytest.mark.parametrize("arch", ["proxgrad", "dualfb"])
@pytest.mark.parametrize("name,kw", OPERATORS)
def test_forward_states_have_zero_penalty_and_objective_equals_nested_loss(arch, name, kw, generator):
    mk = {"init": "dagger"} if arch == "dualfb" else {"init": "adjoint"}
    net, op = _net(arch, name, kw, **mk)
    # random weights so that thresholds/clips are active
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    x = torch.rand(4, 1, 12, 12, generator=generator, dtype=torch.float64)
    y = op.A(x.float()).double() + 0.01 * torch.randn(
        4, *op.measurement_size, generator=generator, dtype=torch.float64
    )
    for last in ("free", "fixed"):
        lifted = lift(net, last=last)
        assert lifted.depth == net.iterations + 1
        states = lifted.forward_states(y)
        assert torch.allclose(states[-1], net(y), atol=1e-12)
        parts = lifted.objective(states, x)
        assert abs(float(parts["penalty"].detach())) < 1e-10
        if last == "fixed":
            nested = float(lifted.nested_loss(y, x).detach())
            assert abs(float(parts["objective"].detach()) - nested) <= 1e-6 * abs(nested)


@pytest.mark.parametrize("arch", ["proxgrad", "dualfb"])
def test_each_layer_is_a_proximal_map_of_its_preactivation(arch, generator):
    net, op = _net(arch, "blur", {})
    lifted = lift(net, last="free")
    y = op.A(torch.rand(3, 1, 12, 12, generator=generator)).double()
    states = lifted.forward_states(y)
    for l in range(1, lifted.depth):
        layer = lifted.layers[l - 1]
        z = lifted.preactivation(l, states)
        act = layer.activation
        # sigma(z) = prox_psi(z): it minimises psi(u) + 1/2||u - z||^2; compare with perturbed points
        u = act(z)
        base = act.psi(u) + 0.5 * (u - z).pow(2).flatten(1).sum(1)
        for _ in range(3):
            v = u + 0.05 * torch.randn(u.shape, generator=generator, dtype=u.dtype)
            other = act.psi(v) + 0.5 * (v - z).pow(2).flatten(1).sum(1)
            assert bool((other >= base - 1e-12).all())
        # Bregman penalty: 0 at u = sigma(z), >= 1/2 ||x - sigma(z)||^2 elsewhere
        pen = lifted.penalties[l - 1]
        assert float(pen.value(u, z).abs().max().detach()) < 1e-10
        x = act(z + 0.1 * torch.randn(z.shape, generator=generator, dtype=z.dtype))
        assert bool((pen.value(x, z) >= 0.5 * (x - u).pow(2).flatten(1).sum(1) - 1e-10).all())


def test_parseval_frame_and_state_map_norms(generator):
    D = ParsevalConv(16, kernel_size=3)
    with torch.no_grad():
        D.bank.parametrizations.weight.original.add_(
            torch.randn(D.bank.parametrizations.weight.original.shape, generator=generator)
        )
    assert D.parseval_error() < 1e-5
    x = torch.randn(2, 1, 10, 10, generator=generator)
    assert torch.allclose(D.synthesis(D.analysis(x)), x, atol=1e-5)
    # adjointness of analysis / synthesis
    u = torch.randn(2, 16, 10, 10, generator=generator)
    assert torch.isclose((D.analysis(x) * u).sum(), (x * D.synthesis(u)).sum(), rtol=1e-4)
    with pytest.raises(ValueError, match="channels must be >="):
        ParsevalConv(4, kernel_size=3)


def test_overcomplete_frame_channels_all_learn(generator):
    """Every channel of an overcomplete Parseval frame starts non-zero and receives a gradient (zero rows of the
    filter matrix would be a stationary point: the extra channels would never learn)."""
    D = ParsevalConv(18, kernel_size=3)
    assert D.parseval_error() < 1e-5
    filters = D.filters().detach()
    assert filters.flatten(1).norm(dim=1).min() > 0.02
    # the first 9 filters stay close to the DCT basis (channel 0 = the mean filter)
    mean = torch.full((3, 3), 1 / 3) / 3
    assert torch.nn.functional.cosine_similarity(filters[0].flatten(), mean.flatten(), dim=0) > 0.8
    x = torch.randn(4, 1, 8, 8, generator=generator)
    u = D.analysis(x)
    loss = (torch.nn.functional.softshrink(u, 0.1) ** 2).sum()
    (grad,) = torch.autograd.grad(loss, D.bank.parametrizations.weight.original)
    assert grad.abs().sum() > 0
    # each channel's filter changes under one gradient step on the raw parameter
    with torch.no_grad():
        D.bank.parametrizations.weight.original.sub_(0.1 * grad)
    change = (D.filters().detach() - filters).flatten(1).norm(dim=1)
    assert change.min() > 1e-6, change


def test_dense_tomography_matches_the_operator(generator):
    op = make_operator("tomography", 12, angles=6)
    dense = OperatorAdapter(op, dense=True)
    free = OperatorAdapter(op, dense=False)
    x = torch.rand(2, 1, 12, 12, generator=generator)
    y = op.A(x)
    assert torch.allclose(dense.A(x), free.A(x), atol=1e-5)
    assert torch.allclose(dense.At(y), free.At(y), atol=1e-4)
    assert torch.allclose(dense.dagger(y), free.dagger(y), atol=1e-4)
    assert abs(dense.norm_sq - op.norm() ** 2) < 1e-3 * dense.norm_sq


def test_state_sweep_never_increases_the_lifted_objective(generator):
    data = make_task_data("deblur", image_size=12, n_train=8, seed=0)
    net = build_model("proxgrad", data.operator, iterations=3, init="adjoint").double()
    y, x = (t.double() for t in data.train)
    trainer = UnrolledLiftedTrainer(net, y, x, penalty="bregman", scheme="isgm")
    states = trainer.net.init_states(y, x)
    values = [float(trainer.net.objective(states, x)["objective"].detach())]
    for _ in range(5):
        trainer.state_sweep(states, x)
        values.append(float(trainer.net.objective(states, x)["objective"].detach()))
    assert all(b <= a + 1e-10 for a, b in zip(values, values[1:]))
    assert values[-1] < values[0]  # the targets reach the states (top-down sweep)


@pytest.mark.parametrize("method", ["bregman-bcd", "mac-bcd"])
@pytest.mark.parametrize("order", ["top-down", "parity", "symmetric"])
def test_bcd_with_gradient_weight_steps_never_increases_the_lifted_objective(method, order):
    """``weight_update="gd"``: backtracked gradient steps; with exact state steps in any sweep order and the
    states kept across epochs (one batch), every block update is a descent step."""
    data = make_task_data("deblur", image_size=12, n_train=8, seed=0)
    y, x = (t.double() for t in data.train)
    net = build_model("proxgrad", data.operator, iterations=3, init="adjoint").double()
    with torch.no_grad():
        nested = float(0.5 * (net(y) - x).pow(2).flatten(1).sum(1).mean())
    opts = dict(batch_size=8, weight_update="gd", order=order, sweeps=2, weight_steps=2, lr=1e-2)
    h = fit(net, (y, x), method=method, epochs=4, progress=False, **opts)
    obj = h["objective"]
    assert obj[0] < nested  # the states start at the forward pass, where the objective is the nested loss
    assert all(b <= a + 1e-12 * abs(a) for a, b in zip(obj, obj[1:])), obj
    assert obj[-1] < obj[0]


def test_isgm_with_gradient_weight_steps_resumes_to_the_same_weights(tmp_path):
    data = make_task_data("deblur", image_size=12, n_train=8, seed=0)
    y, x = (t.double() for t in data.train)

    def run(epochs, checkpoint=None):
        net = build_model("proxgrad", data.operator, iterations=2, init="adjoint").double()
        opts = dict(batch_size=4, weight_update="gd", tau=0.5, lr=1e-2, seed=3, progress=False)
        fit(net, (y, x), method="bregman-isgm", epochs=epochs, checkpoint=checkpoint, **opts)
        return net

    straight = run(3)
    run(1, tmp_path / "ck.pt")
    resumed = run(3, tmp_path / "ck.pt")
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_unrolled_trainers_share_the_option_vocabulary(generator):
    """Same ``lambdas`` contract (one weight per penalised, i.e. hidden, layer), ``order`` names and ``tau``
    as the general lifted trainers."""
    data = make_task_data("deblur", image_size=12, n_train=4, seed=0)
    y, x = data.train
    net = build_model("proxgrad", data.operator, iterations=3)
    cls = get_trainer("bregman-isgm", net)
    assert cls is not get_trainer("bregman-isgm")  # the specialised implementation
    tr = cls(net, y, x, lambdas=[0.5, 1.0, 2.0], order="parity")
    assert tr.net.lambdas == [0.5, 1.0, 2.0, 1.0] and tr.sweep_order == [3, 1, 2]
    with pytest.raises(ValueError, match=r"lambdas must be a float >= 0 or a sequence of 3 floats >= 0"):
        cls(net, y, x, lambdas=[1.0, 1.0])
    with pytest.raises(ValueError, match="order must be one of 'top-down', 'parity', 'symmetric'"):
        cls(net, y, x, order="bottom-up")
    with pytest.raises(ValueError, match="tau must be a positive float"):
        cls(net, y, x, tau=0.0)


@pytest.fixture(scope="module")
def deblur_data():
    return make_task_data("deblur", image_size=16, n_train=64, test_crops=2, seed=0)


def test_lifted_bregman_training_improves_deblurring_and_keeps_parseval(deblur_data):
    # x_0 = 0 and steps of 5% of the largest stable one: training must learn the data-consistency steps
    kw = {"iterations": 4, "init": "zero", "step": 0.05}
    net0 = build_model("proxgrad", deblur_data.operator, **kw)
    before = _psnr(net0.reconstruct(deblur_data.test[0]), deblur_data.test[1])
    model, history, _ = train(
        "deblur",
        "proxgrad",
        "bregman-isgm",
        epochs=6,
        seed=0,
        data=deblur_data,
        progress=False,
        model_kwargs=kw,
        lr=0.05,
        batch_size=16,
    )
    after = _psnr(model.reconstruct(deblur_data.test[0]), deblur_data.test[1])
    assert after >= before + 2.0, (before, after)
    assert model.parseval_error() <= 1e-4
    # the lifted objective went down
    assert history["objective"][-1] < history["objective"][0]


def test_lifted_bcd_and_mac_run_and_resume(deblur_data, tmp_path):
    ck = tmp_path / "bcd.ckpt"
    bcd = functools.partial(
        train,
        "deblur",
        "proxgrad",
        "bregman-bcd",
        seed=1,
        data=deblur_data,
        progress=False,
        model_kwargs={"iterations": 2, "init": "adjoint"},
    )
    full, _, _ = bcd(epochs=2)
    bcd(epochs=1, checkpoint=ck)  # interrupted after one epoch
    resumed, h_res, _ = bcd(epochs=2, checkpoint=ck)
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    assert len(h_res) == 2
    mac, h_mac, _ = train(
        "deblur",
        "dualfb",
        "mac",
        epochs=1,
        seed=0,
        data=deblur_data,
        progress=False,
        model_kwargs={"iterations": 2},
    )
    assert h_mac.last["test_psnr"] > 10


def test_save_load_roundtrip_and_mismatch_errors(tmp_path, generator):
    op = make_operator("tomography", 12, angles=6)
    net = build_model("dualfb", op, iterations=2, init="dagger")
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=generator))
    path = save_model(tmp_path / "ct.pt", net, task="ct", metadata={"note": "test"})
    y = op.A(torch.rand(2, 1, 12, 12, generator=generator))
    loaded = load_model(path, expected_operator=op, image_size=12)
    assert torch.equal(loaded(y), net.eval()(y))
    assert loaded.metadata["task"] == "ct"
    with pytest.raises(ModelMismatchError, match=r"images of size \[1, 12, 12\].*not \[1, 16, 16\]"):
        load_model(path, image_size=16)
    with pytest.raises(ModelMismatchError, match="another operator.*angles"):
        load_model(path, expected_operator=make_operator("tomography", 12, angles=7))
    with pytest.raises(ModelMismatchError, match="another operator.*name"):
        load_model(path, expected_operator=make_operator("blur", 12))
    # reconstruct with a model checks the measurements and the operator
    assert torch.equal(reconstruct(y, op, model=loaded).x, loaded(y))
    with pytest.raises(ModelMismatchError, match="expected measurements of shape"):
        reconstruct(torch.rand(2, 1, 17, 7), model=loaded)
    with pytest.raises(ModelMismatchError, match="another operator"):
        reconstruct(y, make_operator("tomography", 12, angles=5), model=loaded)
    with pytest.raises(ValueError, match="not a liftinv unrolled model file"):
        torch.save({"x": 1}, tmp_path / "junk.pt")
        load_model(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pt")


def test_reconstruct_falls_back_to_classical_methods(generator):
    op = make_operator("inpainting", 12)
    y = op.A(torch.rand(1, 1, 12, 12, generator=generator))
    assert torch.equal(reconstruct(y, op, method="pinv").x, op.A_dagger(y))
    assert reconstruct(y, op, method="tv", alpha=0.01, progress=False, max_iter=5).method == "tv"
    with pytest.raises(ValueError, match="classical method but a model"):
        reconstruct(y, op, model=build_model("proxgrad", op, iterations=1), method="tv")


def test_bad_arguments_are_reported(generator):
    op = make_operator("blur", 12)
    with pytest.raises(ValueError, match="iterations"):
        UnrolledProxGrad(op, iterations=0)
    with pytest.raises(ValueError, match="kernel_size"):
        UnrolledProxGrad(op, kernel_size=4)
    with pytest.raises(ValueError, match="init"):
        UnrolledDualFB(op, init="zero")
    with pytest.raises(ValueError, match="arch"):
        build_model("unet", op)
    with pytest.raises(ValueError, match="task"):
        make_task_data("superres")
    net = UnrolledProxGrad(op, iterations=1)
    with pytest.raises(ValueError, match="does not match this network's operator"):
        net(torch.rand(1, 1, 10, 10))


@requires_cuda
def test_cuda_forward_and_lifted_epoch(deblur_data):
    model, history, _ = train(
        "deblur",
        "proxgrad",
        "bregman-isgm",
        epochs=1,
        seed=0,
        data=deblur_data,
        progress=False,
        device="cuda",
        model_kwargs={"iterations": 2},
    )
    assert next(model.parameters()).is_cuda
    assert history.last["test_psnr"] > 10
