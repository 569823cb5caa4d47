"""Learned unrolled networks (Learned Primal-Dual, proximal gradient with CNN steps) and ellipse streams."""

from __future__ import annotations

import pytest
import torch
from liftinv.datasets.streams import EllipseStream, ellipse_set
from liftinv.operators import make_operator

import liftinv
from liftinv.lifted import Identity, LeakyReLU, NotProximalError, ReLU, lift, state_gradient
from liftinv.metrics import psnr
from liftinv.models import ARCHITECTURES, LearnedPrimalDual, UnrolledProxGradCNN, build_model
from liftinv.training.unrolled import UnrolledLiftedTrainer

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SMALL = {
    "lpd": {"iterations": 2, "primal_channels": 2, "dual_channels": 3, "width": 4},
    "proxgrad-cnn": {"iterations": 2, "depth": 3, "width": 4},
    # the prox-grad CNN with proximal data steps (half-quadratic splitting): a test-only name
    "proxgrad-prox": {"iterations": 2, "depth": 3, "width": 4, "data_step": "prox"},
    # with dilated hidden convs (IRCNN's prior): a test-only name
    "proxgrad-dilated": {"iterations": 2, "depth": 3, "width": 4, "dilations": (1, 2, 1)},
}
ARCHS = ["lpd", "proxgrad-cnn", "proxgrad-prox", "proxgrad-dilated"]
OPERATORS = [("tomography", {"angles": 6}), ("blur", {"sigma": 1.0}), ("inpainting", {}), ("denoising", {})]


def _psnr(x, ref):
    return float(psnr(x.clamp(0, 1), ref).mean())


def _build(arch, op, **kw):
    """``build_model`` that also knows the test-only names ``proxgrad-prox`` and ``proxgrad-dilated``."""
    return build_model("proxgrad-cnn" if arch.startswith("proxgrad-") else arch, op, **kw)


def _net(arch, name="blur", kw=None, size=10, init="adjoint", perturb=0.0, seed=0, **extra):
    op = make_operator(name, size, **(kw if kw is not None else dict(OPERATORS)[name]))
    net = _build(arch, op, init=init, **{**SMALL[arch], **extra}).double()
    if perturb:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(perturb * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return net, op


def _data(op, n, size, generator, noise=0.05):
    x = torch.rand(n, 1, size, size, generator=generator, dtype=torch.float64)
    y = op.A(x.float()).double()
    return y + noise * torch.randn(y.shape, generator=generator, dtype=y.dtype), x


# ---------------------------------------------------------------------------------------------------------
# lifted form
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name,kw", [OPERATORS[0], OPERATORS[1]])
@pytest.mark.parametrize("init", ["zero", "fbp"])
def test_forward_states_zero_penalty_and_objective_equals_nested_loss(arch, name, kw, init, generator):
    net, op = _net(arch, name, kw, init=init, perturb=0.2)
    y, x = _data(op, 3, 10, generator)
    out = net(y)
    depth = 6 * net.iterations if arch == "lpd" else net.depth * net.iterations
    for last in ("free", "fixed"):
        lifted = lift(net, last=last)
        assert lifted.depth == depth
        states = lifted.forward_states(y)
        assert torch.allclose(lifted(y), out, atol=1e-12)  # lift(model).forward(y) == model(y)
        parts = lifted.objective(states, x)
        assert abs(float(parts["penalty"].detach())) < 1e-10
        for l in range(1, depth):
            assert float(parts[f"layer_{l}"].detach().abs()) < 1e-10
    lifted = lift(net)  # last="fixed"
    init_states = lifted.init_states(y, x)
    objective = float(lifted.objective(init_states, x)["objective"].detach())
    nested = float(lifted.nested_loss(y, x).detach())
    assert objective == pytest.approx(nested, rel=1e-9)
    assert nested == pytest.approx(0.5 * float((out - x).pow(2).flatten(1).sum(1).mean().detach()), rel=1e-9)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_layer_is_a_proximal_map_of_an_affine_preactivation(arch, generator):
    net, op = _net(arch, perturb=0.3)
    lifted = lift(net, last="free")
    y, _ = _data(op, 2, 10, generator)
    states = lifted.forward_states(y)
    kinds = set()
    for l in range(1, lifted.depth + 1):
        layer, pen = lifted.layers[l - 1], lifted.penalties[l - 1]
        act = layer.activation
        assert isinstance(act, LeakyReLU | ReLU | Identity)
        assert not isinstance(act, LeakyReLU) or 0 < act.negative_slope <= 1
        kinds.add(type(act).__name__)
        z = lifted.preactivation(l, states)
        u = act(z)
        # sigma(z) = prox_psi(z): it minimises psi(v) + 1/2 ||v - z||^2
        base = act.psi(u) + 0.5 * (u - z).pow(2).flatten(1).sum(1)
        for _ in range(3):
            v = u + 0.05 * torch.randn(u.shape, generator=generator, dtype=u.dtype)
            assert bool((act.psi(v) + 0.5 * (v - z).pow(2).flatten(1).sum(1) >= base - 1e-12).all())
        # Bregman penalty: 0 at the forward state, >= 1/2 ||x - sigma(z)||^2 elsewhere
        assert float(pen.value(u, z).abs().max().detach()) < 1e-10
        xx = act(z + 0.1 * torch.randn(z.shape, generator=generator, dtype=z.dtype))
        assert bool((pen.value(xx, z) >= 0.5 * (xx - u).pow(2).flatten(1).sum(1) - 1e-10).all())
        # the pre-activation is affine in the layer's inputs: K(a u + b v) + c = a (K u + c) + b (K v + c)
        ins = [states[j] for j in layer.inputs]
        r1 = [torch.randn(t.shape, generator=generator, dtype=t.dtype) for t in ins]
        r2 = [torch.randn(t.shape, generator=generator, dtype=t.dtype) for t in ins]
        mix = layer(*[0.3 * a + 0.7 * b for a, b in zip(r1, r2)])
        assert torch.allclose(mix, 0.3 * layer(*r1) + 0.7 * layer(*r2), atol=1e-10)
    assert kinds == {"LeakyReLU", "Identity"}


def test_lifted_structure_of_learned_primal_dual():
    net, _ = _net("lpd", "tomography", init="fbp")
    layers = net.lifted_layers(0)
    # iteration 1: h1(y), h2, d1 = conv3(h2), g1(y, d1), g2, p1 = p0(y) + conv3(g2)
    assert [la.inputs for la in layers[:6]] == [(0,), (1,), (2,), (0, 3), (4,), (0, 5)]
    # iteration 2: reads d1 = 3, p1 = 6 and y; the last layer is the output p_2^(1)
    assert [la.inputs for la in layers[6:]] == [(3, 6, 0), (7,), (3, 8), (6, 9), (10,), (6, 11)]
    assert [type(la.activation).__name__ for la in layers[:6]] == ["LeakyReLU", "LeakyReLU", "Identity"] * 2
    zero, _ = _net("lpd", "tomography", init="zero")
    assert [la.inputs for la in zero.lifted_layers(0)[:6]] == [(0,), (1,), (2,), (3,), (4,), (5,)]
    pg, _ = _net("proxgrad-cnn", depth=3)
    assert [la.inputs for la in pg.lifted_layers(0)] == [(0,), (1,), (0, 2), (3, 0), (4,), (3, 5, 0)]


@pytest.mark.parametrize("name", ["blur", "inpainting", "denoising", "tomography"])
def test_proximal_data_step_solves_its_problem_and_differs_from_a_gradient_step_only_for_blur(
    name, generator
):
    """z = argmin tau/2 ||A_n z - y_n||^2 + 1/2 ||z - x||^2: its optimality condition
    tau A_n^T (A_n z - y_n) + z - x = 0 holds (closed forms; conjugate gradients for tomography), the step size
    gets a gradient, and for denoising / inpainting the step is a gradient step with tau / (1 + tau)."""
    net, op = _net("proxgrad-prox", name, size=10, perturb=0.1)
    y, _ = _data(op, 2, 10, generator)
    x = torch.rand(2, 1, 10, 10, generator=generator, dtype=torch.float64)
    z = net._data_step(1, x, y)
    tau = float(net.steps[1].detach())
    s = net.op_scale  # A_n = s A, y_n = s y
    residual = tau * net._At(net._A(z) - y * s) + z - x
    tol = 1e-4 if name == "tomography" else 1e-10  # conjugate gradients to relative residual 1e-6
    assert float(residual.detach().abs().max()) < tol * max(1.0, float(x.abs().max()))
    (g,) = torch.autograd.grad(z.square().sum(), net.steps[1])
    assert torch.isfinite(g) and float(g.abs()) > 0
    grad_net, _ = _net("proxgrad-cnn", name, size=10, step=tau / (1 + tau))
    gradient_step = grad_net._data_step(1, x, y)
    same = torch.allclose(z, gradient_step, atol=1e-10)
    assert same == (name in ("inpainting", "denoising")), name


def test_dilations_widen_the_proximal_cnns_at_the_same_cost(generator):
    op = make_operator("denoising", 33)

    def support(dilations):
        net = UnrolledProxGradCNN(op, iterations=1, depth=3, width=4, dilations=dilations)
        z = torch.rand(1, 1, 33, 33, generator=generator, requires_grad=True)
        h = z
        for conv in net.cnn(0)[:-1]:
            h = net.activation(conv(h))
        (g,) = torch.autograd.grad(net.cnn(0)[-1](h)[0, 0, 16, 16], z)
        rows = torch.nonzero(g[0, 0].abs().sum(1)).flatten()
        return int(rows.max() - rows.min() + 1), sum(p.numel() for p in net.parameters())

    # receptive field 1 + 2 * sum(dilations) for 3x3 filters, parameters unchanged
    (plain, n_plain), (dilated, n_dilated) = support(None), support((1, 3, 1))
    assert (plain, dilated) == (7, 11) and n_plain == n_dilated


@pytest.mark.parametrize("arch", ARCHS)
def test_state_gradient_matches_autograd_and_state_lipschitz_bounds_the_state_maps(arch, generator):
    net, op = _net(arch, size=6, perturb=0.2)
    lifted = lift(net)
    y, x = _data(op, 2, 6, generator)
    states = [
        s + 0.1 * torch.randn(s.shape, generator=generator, dtype=s.dtype) for s in lifted.init_states(y, x)
    ]
    states[0], states[-1] = y, x
    for l in (1, 3, lifted.depth - 1):
        # the smooth part's gradient (no sigma') plus grad of lambda Phi_l = the objective's gradient
        xl = states[l].detach().requires_grad_(True)
        st = list(states)
        st[l] = xl
        total = lifted.objective(st, x)["objective"] * y.shape[0]
        (auto,) = torch.autograd.grad(total, xl)
        act = lifted.layers[l - 1].activation
        slope = act.negative_slope if isinstance(act, LeakyReLU) else 1.0
        grad_phi = xl.detach() + (1 / slope - 1) * xl.detach().clamp(max=0)
        lam = lifted.penalties[l - 1].weight
        assert torch.allclose(state_gradient(lifted, states, l, x) + lam * grad_phi, auto, atol=1e-9)
    # state_lipschitz(k) ~ 1.05 sum_m ||K_{m,k}||^2 over the consumers m of state k (exact by dense Jacobians)
    for k in (1, 3):
        exact = 0.0
        for m in lifted.consumers[k]:
            layer = lifted.layers[m - 1]
            ins = [torch.zeros_like(states[j][:1]) for j in layer.inputs]
            pos = layer.inputs.index(k)

            def K(v, ins=ins, pos=pos, layer=layer):
                args = list(ins)
                args[pos] = v
                return layer(*args)

            J = torch.autograd.functional.jacobian(K, ins[pos]).reshape(K(ins[pos]).numel(), -1)
            exact += float(torch.linalg.matrix_norm(J, ord=2)) ** 2
        for _ in range(8):  # warm-started power iterations converge
            est = net.state_lipschitz(k)
        assert exact * 1.0 <= est <= exact * 1.06, (k, est, exact)


# ---------------------------------------------------------------------------------------------------------
# any image size; tomography geometry
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", ["blur", "inpainting", "denoising"])
def test_model_built_at_32_reconstructs_48_and_97(arch, name, generator):
    net, _ = _net(arch, name, size=32, perturb=0.05)
    net.float()
    for n in (48, 97):
        op_n = make_operator(name, n, **dict(OPERATORS)[name])
        y = op_n.A(torch.rand(2, 1, n, n, generator=generator))
        out = net(y)
        assert out.shape == (2, 1, n, n) and bool(torch.isfinite(out).all())
        assert torch.allclose(liftinv.lift(net)(y), out, atol=1e-5)
        if n == 48:  # the same as the network rebuilt for the 48x48 operator
            assert torch.allclose(net.with_operator(op_n)(y), out, atol=1e-5)


def test_trained_model_at_32_reconstructs_other_sizes_and_keeps_its_quality(generator):
    op = make_operator("denoising", 32)
    x = ellipse_set(16, 32, seed=3)
    y = x + 0.1 * torch.randn(x.shape, generator=generator)
    net = UnrolledProxGradCNN(op, iterations=1, depth=3, width=6)
    liftinv.fit(net, (y, x), method="backprop-adam", epochs=5, batch_size=8, lr=1e-2, progress=False)
    for n in (48, 97):
        xn = ellipse_set(2, n, seed=4)
        yn = xn + 0.1 * torch.randn(xn.shape, generator=generator)
        out = net.reconstruct(yn)
        assert out.shape == (2, 1, n, n) and bool(torch.isfinite(out).all())
        assert _psnr(out, xn) > _psnr(yn, xn) + 1.0


def test_tomography_model_refuses_another_geometry(generator):
    op = make_operator("tomography", 12, angles=6)
    for arch in ("lpd", "proxgrad-cnn"):
        net = build_model(arch, op, **SMALL[arch])
        y = op.A(torch.rand(2, 1, 12, 12, generator=generator))
        assert net(y).shape == (2, 1, 12, 12)  # any batch at its geometry
        other = make_operator("tomography", 16, angles=6)
        with pytest.raises(
            ValueError, match=r"built for the geometry .*tomography.*\[1, 12, 12\].*another geometry"
        ):
            net(other.A(torch.rand(1, 1, 16, 16)))
        with pytest.raises(ValueError, match=r"'angles': 6.*requested operator.*'angles': 9"):
            net.with_operator(make_operator("tomography", 12, angles=9))
        with pytest.raises(ValueError, match="another geometry"):
            net.adapter((16, 16))


# ---------------------------------------------------------------------------------------------------------
# training, save / load, devices, arguments
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_short_lifted_training_improves_psnr(arch, generator):
    op = make_operator("denoising", 16)
    x, xt = ellipse_set(32, 16, seed=5), ellipse_set(8, 16, seed=6)
    y = x + 0.1 * torch.randn(x.shape, generator=generator)
    yt = xt + 0.1 * torch.randn(xt.shape, generator=generator)
    kw = {**SMALL[arch], "width": 8}
    if arch == "lpd":
        kw["init"] = "adjoint"
    net = _build(arch, op, **kw)
    before = _psnr(net.reconstruct(yt), xt)
    history = liftinv.fit(
        net, (y, x), method="bregman-isgm", epochs=3, batch_size=16, lr=1e-2, progress=False
    )
    after = _psnr(net.reconstruct(yt), xt)
    assert after >= before + 1.0, (before, after)
    assert history["objective"][-1] < history["objective"][0]


def test_lifted_state_sweep_never_increases_the_objective(generator):
    net, op = _net("lpd", "tomography", size=10, perturb=0.1)
    y, x = _data(op, 4, 10, generator)
    trainer = UnrolledLiftedTrainer(net, y, x, penalty="bregman", scheme="isgm")
    states = trainer.net.init_states(y, x)
    values = [float(trainer.net.objective(states, x)["objective"].detach())]
    for _ in range(4):
        trainer.state_sweep(states, x)
        values.append(float(trainer.net.objective(states, x)["objective"].detach()))
    assert all(b <= a + 1e-9 for a, b in zip(values, values[1:])), values
    assert values[-1] < values[0]


def test_registered_save_load_roundtrip(tmp_path, generator):
    from liftinv.unrolled import load_model, save_model

    assert ARCHITECTURES["lpd"] is LearnedPrimalDual and ARCHITECTURES["proxgrad-cnn"] is UnrolledProxGradCNN
    op = make_operator("tomography", 12, angles=6)
    for arch in ("lpd", "proxgrad-cnn", "proxgrad-dilated"):
        net = _build(arch, op, **SMALL[arch], init="fbp", seed=3)
        assert net.config()["arch"] == arch.replace("-dilated", "-cnn")
        path = save_model(tmp_path / f"{arch}.pt", net, task="ct")
        loaded = load_model(path)
        y = op.A(torch.rand(2, 1, 12, 12, generator=generator))
        assert loaded.config() == net.config()
        assert torch.allclose(loaded(y), net.eval()(y), atol=1e-6)


@pytest.mark.parametrize("arch", ["lpd", "proxgrad-cnn"])
def test_float64_moves_the_operator_and_parameter_counts(arch, generator):
    op = make_operator("blur", 12, sigma=1.0)
    net = build_model(arch, op, **SMALL[arch]).double()
    assert net.op.operator.kernel.dtype == torch.float64
    for n in (12, 20):
        y = torch.rand(1, 1, n, n, generator=generator, dtype=torch.float64)
        assert net(y).dtype == torch.float64
    full = build_model(arch, make_operator("tomography", 16, angles=4))
    # defaults: LPD 10 x (Gamma 12741 + Lambda 12453); proxgrad-cnn 5 x (320 + 2 x 9248 + 289 + 1 step)
    assert sum(p.numel() for p in full.parameters()) == {"lpd": 251940, "proxgrad-cnn": 95530}[arch]


@requires_cuda
@pytest.mark.parametrize("arch", ["lpd", "proxgrad-cnn"])
def test_cuda_forward_other_size_and_lifted_epoch(arch, generator):
    op = make_operator("denoising", 16)
    net = build_model(arch, op, **SMALL[arch]).to("cuda")
    y = torch.rand(2, 1, 24, 24, generator=generator).cuda()
    assert net(y).is_cuda and net(y).shape == (2, 1, 24, 24)
    x = ellipse_set(8, 16, seed=0)
    history = liftinv.fit(
        net, (x + 0.1, x), method="bregman-isgm", epochs=1, batch_size=8, device="cuda", progress=False
    )
    assert next(net.parameters()).is_cuda and len(history) == 1


def test_bad_arguments_are_reported():
    op = make_operator("blur", 12)
    with pytest.raises(NotProximalError, match="slope"):
        LearnedPrimalDual(op, slope=1.5)
    with pytest.raises(ValueError, match="init"):
        LearnedPrimalDual(op, init="dagger")
    with pytest.raises(ValueError, match="depth"):
        UnrolledProxGradCNN(op, depth=1)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        UnrolledProxGradCNN(op, kernel_size=4)
    with pytest.raises(ValueError, match="activation"):
        UnrolledProxGradCNN(op, activation="gelu")
    with pytest.raises(ValueError, match="data_step must be one of 'gradient', 'prox', got 'newton'"):
        UnrolledProxGradCNN(op, data_step="newton")
    with pytest.raises(ValueError, match=r"dilations must be a sequence of 4 ints >= 1 \(one per conv\)"):
        UnrolledProxGradCNN(op, depth=4, dilations=(1, 2))
    with pytest.raises(ValueError, match=r"dilations\[2\] must be an int >= 1, got 0"):
        UnrolledProxGradCNN(op, depth=4, dilations=(1, 2, 0, 1))
    with pytest.raises(ValueError, match="primal_channels"):
        LearnedPrimalDual(op, primal_channels=0)
    net = LearnedPrimalDual(op, iterations=1, width=4)
    with pytest.raises(ValueError, match="1-channel images"):
        net(torch.rand(1, 2, 12, 12))
    with pytest.raises(ValueError, match="hidden state"):
        net.state_lipschitz(0)


# ---------------------------------------------------------------------------------------------------------
# ellipse phantoms
# ---------------------------------------------------------------------------------------------------------
def test_ellipse_stream_is_deterministic_per_seed():
    a = EllipseStream(24, seed=0).batch(4)
    assert a.shape == (4, 1, 24, 24) and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0 and float(a.std()) > 0
    assert torch.equal(a, EllipseStream(24, seed=0).batch(4))
    it = iter(EllipseStream(24, seed=0))
    assert all(torch.equal(next(it), a[i]) for i in range(4))  # iteration = random access = batches
    assert torch.equal(next(EllipseStream(24, seed=0).batches(2, start=2)), a[2:])
    b = EllipseStream(24, seed=1).batch(4)
    assert not any(torch.equal(a[i], b[j]) for i in range(4) for j in range(4))
    # fixed sets: deterministic, prefix-stable, disjoint from the training stream of the same seed
    val = ellipse_set(4, 24, seed=0)
    assert torch.equal(val, ellipse_set(4, 24, seed=0)) and torch.equal(val[:2], ellipse_set(2, 24, seed=0))
    assert not any(torch.equal(val[i], a[j]) for i in range(4) for j in range(4))
    assert not torch.equal(val, ellipse_set(4, 24, seed=1))


def test_ellipse_stream_splits_across_dataloader_workers(monkeypatch):
    import types

    import liftinv.datasets.streams as streams

    stream = EllipseStream(16, seed=2)
    # worker w of W yields images w, w + W, ... (simulated: real workers would cost seconds to start)
    monkeypatch.setattr(streams, "get_worker_info", lambda: types.SimpleNamespace(id=1, num_workers=2))
    it = iter(stream)
    assert torch.equal(next(it), stream[1]) and torch.equal(next(it), stream[3])
    with pytest.raises(ValueError, match="seed"):
        EllipseStream(16, seed=-1)


# ---------------------------------------------------------------------------------------------------------
# the lifted trainer on DAG-shaped networks (states read by several layers)
# ---------------------------------------------------------------------------------------------------------
def _trainer(arch, lambdas, generator, name="tomography", n=4, **opts):
    net, op = _net(arch, name, size=8, perturb=0.1)
    y, x = _data(op, n, 8, generator)
    return UnrolledLiftedTrainer(net, y, x, lambdas=lambdas, **opts), y, x


def _depth(arch):
    """Number of lifted layers of the SMALL networks."""
    return (
        6 * SMALL["lpd"]["iterations"] if arch == "lpd" else SMALL[arch]["depth"] * SMALL[arch]["iterations"]
    )


def _random_lambdas(arch, generator):
    """One lambda per hidden layer, log-uniform in [0.1, 10]."""
    u = torch.rand(_depth(arch) - 1, generator=generator, dtype=torch.float64)
    return [float(v) for v in 10 ** (2 * u - 1)]


@pytest.mark.parametrize("arch", ARCHS)
def test_state_steps_use_every_reader_and_never_increase_the_objective_for_any_lambdas(arch, generator):
    """The state step of state l is ``1 / sum_m lambda_m ||K_{m,l}||^2`` over the layers m reading it (LPD's
    d and p are read by 3 layers, the prox-grad CNN's iterates by 2), so a sweep is a descent step for any
    lambdas; the cached sweep (pre-activations and their graphs) is the plain block-coordinate sweep."""
    from liftinv.lifted.norms import state_map_norms

    lambdas = _random_lambdas(arch, generator)  # 0.1 .. 10
    tr, y, x = _trainer(arch, lambdas, generator)
    net = tr.net
    assert max(len(net.consumers[l]) for l in range(1, tr.K + 1)) >= 2
    exact = state_map_norms(net, [s.shape[1:] for s in net.init_states(y, x)], {}, iters=300)
    norms = tr.model.state_map_norms()  # cold: 12 iterations, from below (safe down to half the norm)
    assert all(0.5 * exact[k] <= norms[k] <= exact[k] * (1 + 1e-9) for k in exact)
    for _ in range(30):  # warm-started calls converge (the trainer's warm starts: its checkpointed cache)
        norms = tr.model.state_map_norms(cache=tr._power_cache)
    assert all(norms[k] == pytest.approx(exact[k], rel=0.02) for k in exact)
    lips = tr.lipschitz_constants()
    lam = [1.0] + net.lambdas
    for l in range(1, tr.K + 1):
        assert lips[l] == pytest.approx(sum(lam[m] * exact[(m, l)] for m in net.consumers[l]), rel=0.02)
    # one sweep = the reference block-coordinate sweep (autograd state gradients, same steps)
    states = net.init_states(y, x)
    ref = [s.clone() for s in states]
    for l in tr.sweep_order:
        g = state_gradient(net, ref, l, x)
        pen = net.penalties[l - 1]
        ref[l] = pen.prox_state(ref[l] - g / lips[l], pen.weight / lips[l])
    tr.state_sweep(states, x)
    for a, b in zip(states, ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    values = [float(net.objective(states, x)["objective"].detach())]
    for _ in range(6):
        tr.state_sweep(states, x)
        values.append(float(net.objective(states, x)["objective"].detach()))
    assert all(b <= a + 1e-10 for a, b in zip(values, values[1:])), values
    assert values[-1] < values[0]


@pytest.mark.parametrize("arch", ARCHS)
def test_weight_gradient_through_the_preactivations_is_the_objective_gradient(arch, generator):
    tr, y, x = _trainer(arch, 0.7, generator, weight_point="final")
    assert tr._through_z  # no learnable activation: the gradient is one vector-Jacobian product
    states = tr.net.init_states(y, x)
    tr.state_sweep(states, x)
    anchor = [p.detach() + 0.01 for p in tr.params]
    tr.tau = 0.5
    parts, f0, grads = tr._weight_gradient(states, x, anchor, None)
    full = tr.net.objective(states, x)["objective"]
    full = full + sum(((p - a) ** 2).sum() for p, a in zip(tr.params, anchor)) / (2 * 0.5)
    auto = torch.autograd.grad(full, tr.params)
    assert float(f0) == pytest.approx(float(full.detach()), rel=1e-12)
    assert parts["objective"] == pytest.approx(
        float(tr.net.objective(states, x)["objective"].detach()), rel=1e-12
    )
    for a, b in zip(grads, auto):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert tr._weight_gradient(states, x, anchor, None, value=False)[0] is None  # Adam needs no value


def test_parity_order_on_a_dag_updates_groups_of_states_that_do_not_interact(generator):
    tr, y, x = _trainer("lpd", 1.0, generator, order="parity")
    net = tr.net
    assert sorted(tr.sweep_order) == list(range(1, tr.K + 1))

    def interact(a, b):
        return any(
            {a, b} <= set(layer.inputs) | ({m} if m < net.depth else set())
            for m, layer in enumerate(net.layers, start=1)
        )

    from liftinv.lifted.steps import independent_groups

    groups = independent_groups(net, range(tr.K, 0, -1))
    assert [l for g in groups for l in g] == tr.sweep_order and len(groups) >= 3  # not the two parities
    for g in groups:
        assert not any(interact(a, b) for a in g for b in g if a != b)
    states = net.init_states(y, x)
    values = [float(net.objective(states, x)["objective"].detach())]
    for _ in range(4):
        tr.state_sweep(states, x)
        values.append(float(net.objective(states, x)["objective"].detach()))
    assert all(b <= a + 1e-10 for a, b in zip(values, values[1:])) and values[-1] < values[0]


def test_isgm_records_the_nested_loss_and_bcd_the_lifted_objective(generator):
    tr, y, x = _trainer("proxgrad-cnn", 1.0, generator, n=4, batch_size=4, inner=2)
    with torch.no_grad():
        nested = float(0.5 * (tr.model(y) - x).pow(2).flatten(1).sum(1).mean())
    record = tr.run_epoch(0, torch.Generator().manual_seed(0))
    assert record == {
        "objective": pytest.approx(nested, rel=1e-10),
        "penalty": 0.0,
        "data": pytest.approx(nested),
    }
    final, _, _ = _trainer("proxgrad-cnn", 1.0, generator, batch_size=4, record="final")
    parts = final.run_epoch(0, torch.Generator().manual_seed(0))
    assert parts["penalty"] > 0 and parts["objective"] == pytest.approx(parts["penalty"] + parts["data"])
    with pytest.raises(ValueError, match="record must be"):
        _trainer("proxgrad-cnn", 1.0, generator, scheme="bcd", record="forward")


def test_fast_leaky_relu_prox_is_the_penalty_prox(generator):
    from liftinv.lifted.penalties import BregmanPenalty
    from liftinv.training.unrolled import _prox_state

    v = torch.randn(3, 50, generator=generator, dtype=torch.float64)
    for slope in (0.1, 0.5, 1.0):
        pen = BregmanPenalty(LeakyReLU(slope), 0.7)
        for mu in (0.01, 1.0, 30.0):
            torch.testing.assert_close(_prox_state(pen, v.clone(), mu), pen.prox_state(v, mu))


def test_a_state_map_of_norm_zero_recovers_when_it_changes():
    """Proximal-gradient CNN on denoising with ``tau = 1``: the map ``x_k -> x_k - tau (x_k - y)`` is 0, so its
    estimated norm is 0; once ``tau`` moves, the warm-started estimate finds the new norm."""
    net = UnrolledProxGradCNN(make_operator("denoising", 8), iterations=2, depth=2, width=3).double()
    layers = net.lifted_layers(0)
    m = next(i for i, la in enumerate(layers, start=1) if la.inputs == (2, 0))  # iteration 2 reads x_1 and y
    assert net.state_map_norms()[(m, 2)] == pytest.approx(0.0, abs=1e-20)
    with torch.no_grad():
        net.steps[1].fill_(0.5)  # (1 - tau) I = I / 2 before the first conv
        conv = net.cnn(1)[0]
        K = torch.autograd.functional.jacobian(
            lambda v: torch.nn.functional.conv2d(0.5 * v, conv.weight, padding=1),
            torch.zeros(1, 1, 8, 8, dtype=torch.float64),
        ).reshape(3 * 64, 64)
    exact = float(torch.linalg.matrix_norm(K, ord=2)) ** 2
    for _ in range(20):
        est = net.state_map_norms()[(m, 2)]
    assert est == pytest.approx(1.05 * exact, rel=1e-3)


@pytest.mark.parametrize("arch", ["lpd", "proxgrad-cnn"])
def test_sweep_point_weight_gradient_takes_each_layer_where_the_sweep_updated_its_state(arch, generator):
    """``weight_point="sweep"`` (Adam's default): layer m's gradient at its state after the sweep and its
    inputs as they were when the top-down sweep updated that state, i.e. before the sweep (no recomputed
    pre-activation). This is the lifted gradient that is close to back-propagation's (DESIGN §4)."""
    tr, y, x = _trainer(arch, [0.5 + 0.1 * i for i in range(_depth(arch) - 1)], generator)
    assert tr.weight_point == "sweep"
    net = tr.net
    states = net.init_states(y, x)
    before = [s.clone() for s in states]
    pre = tr.state_sweep(states, x)
    assert set(pre.at_update) == set(range(1, net.depth + 1))
    _, _, grads = tr._weight_gradient(states, x, None, pre, value=False)
    terms = [
        net.layer_terms(m, states, x, z=net.preactivation(m, before)).mean() for m in range(1, net.depth + 1)
    ]
    auto = torch.autograd.grad(sum(terms), tr.params)
    for a, b in zip(grads, auto):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="weight_point"):
        _trainer(arch, 1.0, generator, weight_update="gd", weight_point="sweep")


def test_frozen_preactivations_propagate_targets_from_the_forward_pass(generator):
    """``frozen_preactivations=True``: every state step sees the layers' pre-activations at the states the
    round started from (the others as if they had not moved), not at the current states."""
    tr, y, x = _trainer("lpd", 0.8, generator, frozen_preactivations=True)
    net = tr.net
    start = net.init_states(y, x)
    states, ref = [s.clone() for s in start], [s.clone() for s in start]
    lips = tr.lipschitz_constants()
    for l in tr.sweep_order:
        xl = start[l].clone().requires_grad_(True)
        total = 0.0
        for m in net.consumers[l]:
            layer = net.layers[m - 1]
            z = layer(*[xl if j == l else start[j] for j in layer.inputs])
            total = total + net.layer_terms(m, ref, x, z=z).sum()
        (g,) = torch.autograd.grad(total, xl)
        pen = net.penalties[l - 1]
        g = g - pen.weight * net.preactivation(l, start).detach()
        ref[l] = pen.prox_state(ref[l] - g / lips[l], pen.weight / lips[l]).detach()
    tr.state_sweep(states, x)
    for a, b in zip(states, ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    for bad in ({"weight_update": "gd"}, {"backtrack": True}, {"frozen_preactivations": 1}):
        with pytest.raises(ValueError, match="frozen_preactivations"):
            _trainer("lpd", 0.8, generator, **{"frozen_preactivations": True, **bad})


@pytest.mark.parametrize("arch", ["lpd", "proxgrad-cnn"])
def test_lifted_training_resumes_to_the_same_weights(arch, tmp_path, generator):
    """The trainer's checkpoint holds the power-iteration warm starts and the state step constants in use,
    so an interrupted run (estimated norms, refreshed every ``lipschitz_every`` weight steps) resumes exactly."""
    op = make_operator("denoising", 8)
    x = ellipse_set(12, 8, seed=1)
    y = x + 0.1 * torch.randn(x.shape, generator=generator)

    def run(epochs, checkpoint=None):
        net = build_model(arch, op, **SMALL[arch])
        opts = dict(batch_size=4, lr=1e-2, lipschitz_every=2, seed=3, progress=False)
        liftinv.fit(net, (y, x), method="bregman-isgm", epochs=epochs, checkpoint=checkpoint, **opts)
        return net

    straight = run(3)
    run(1, tmp_path / "ck.pt")
    resumed = run(3, tmp_path / "ck.pt")
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
