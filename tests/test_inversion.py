"""Tests of liftinv.inversion (lifted Bregman inversion of pre-trained networks) and liftinv.inversion.recipes.

Reference problem: the P2 ReLU perceptron at a reduced size, 32 x 32 image -> 256 features (unit-variance
Gaussian W, seed 0), the 32 x 32 Shepp-Logan phantom, 2% relative noise, TV with alpha = 2.5
(= 10 (32/64)^2, the 64 x 64 setting scaled with the number of pixels), 300 iterations.
Measured here: lifted-adam 21.15 dB vs gradient-adam 20.92 dB; lifted-pdhg 19.57 dB vs gradient-pdhg
19.43 dB. Floors below are about 1 dB under those values.
"""

from __future__ import annotations

import math

import pytest
import torch
from liftinv.datasets import random_phantoms, shepp_logan
from liftinv.operators import div2d, grad2d, project_l2_ball
from torch import nn

from liftinv import metrics
from liftinv.inversion import InversionResult, invert
from liftinv.inversion._common import _Context, _InputStep
from liftinv.inversion._lifted import _Preactivations
from liftinv.inversion.recipes import (
    RECIPES,
    Autoencoder,
    autoencoder,
    fold_batchnorm,
    get_recipe,
    perceptron,
)
from liftinv.lifted import LiftingError, lift, state_gradient
from liftinv.lifted.activations import NotProximalError
from liftinv.metrics import History
from liftinv.models import ResidualBlock

SIZE, FEATURES, ALPHA, ITERS = 32, 256, 2.5, 300


def psnr(x: torch.Tensor, truth: torch.Tensor) -> float:
    """PSNR of the whole batch as one signal (clipped to [0, 1]), through liftinv.metrics."""
    return float(metrics.psnr(x.clamp(0, 1).reshape(1, -1), truth.reshape(1, -1))[0])


@pytest.fixture(scope="module")
def problem():
    net = perceptron(SIZE, FEATURES, seed=0)
    u = shepp_logan(SIZE, source="skimage")
    with torch.no_grad():
        f0 = net(u)
    e = torch.randn(f0.shape, generator=torch.Generator().manual_seed(1))
    f = f0 + 0.02 * f0.norm() * e / e.norm()
    return net, u, f0, f


# ---------------------------------------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------------------------------------
def test_tv_input_step_is_the_written_condat_vu_iteration(generator):
    """The PDHG input step (TV from liftinv.operators.tv) runs, step after step,

    u <- proj_box(u - tau (g - alpha div p)),  p <- proj_{|p_ij| <= 1}(p + s alpha grad(2 u_new - u))

    with tau = 1/L and s = L / (16 alpha^2) (per-sample alpha), also when L changes between steps (the
    adaptive step of the gradient baseline). TV itself is tested in test_reconstruct.py.
    """
    B, image = 2, (1, 5, 6)
    alpha = torch.tensor([0.7, 0.0], dtype=torch.float64)
    ctx = _Context(
        model=nn.Identity(),
        f=torch.zeros(B, 30, dtype=torch.float64),
        alpha=alpha,
        regulariser="tv",
        box=(0.0, 1.0),
        tol=0.0,
        max_iter=5,
        image_shape=image,
        input_shape=(30,),
        gen=generator,
        progress=False,
        log_every=1,
        dev=torch.device("cpu"),
    )
    u = torch.rand(B, 30, generator=generator, dtype=torch.float64)
    step = _InputStep(ctx, 3.0, u)
    u_ref, p_ref = u.clone(), torch.zeros(B, 1, 2, 5, 6, dtype=torch.float64)
    a = alpha.reshape(B, 1, 1, 1)
    for k, lip in enumerate((3.0, 3.0, 6.0, 6.0)):
        if k:
            step.set_lipschitz(lip)
        g = torch.randn(B, 30, generator=generator, dtype=torch.float64)
        u = step.step(u, g)
        tau, s = 1.0 / lip, torch.where(alpha > 0, lip / (16 * alpha.clamp(min=1e-30) ** 2), 0.0)
        img = u_ref.reshape(B, *image)
        new = (img - tau * (g.reshape(B, *image) - a * div2d(p_ref))).clamp(0.0, 1.0)
        p_ref = project_l2_ball(p_ref + (s * alpha).reshape(B, 1, 1, 1, 1) * grad2d(2 * new - img))
        u_ref = new.reshape(B, 30)
        torch.testing.assert_close(u, u_ref, rtol=0, atol=1e-14)


def test_input_gradient_matches_engine_and_needs_no_backprop(generator):
    """The lifted input gradient sum_m lambda_m K_m^T(sigma(z_m) - x_m) equals lifting.state_gradient(.., 0)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), ResidualBlock(5, 4), nn.Linear(5, 3), nn.Tanh())
    net = lift(model, last="free", lambdas=[0.5, 1.0, 2.0, 0.7])
    assert net.depth == 4 and net.consumers[1] == [2, 3]  # the residual block reads state 1 twice
    x0 = torch.randn(4, 6, generator=generator)
    states = net.init_states(x0)
    for l in range(1, net.depth + 1):  # move the states away from the forward pass
        states[l] = states[l] + 0.3 * torch.rand(states[l].shape, generator=generator)
    y = torch.randn(4, 3, generator=generator)
    zs = _Preactivations(net, states)
    for l in range(0, net.depth):
        ours = zs.input_gradient(l)
        ref = state_gradient(net, states, l, y)
        if l > 0:  # the engine's hidden-state gradient also holds -lambda_l z_l (the prox centre)
            ref = ref + net.penalties[l - 1].weight * net.preactivation(l, states).detach()
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# the reference perceptron problem
# ---------------------------------------------------------------------------------------------------------
def test_lifted_tv_beats_gradient_at_2_percent_noise(problem):
    net, u, _, f = problem
    lifted = invert(net, f, alpha=ALPHA, method="lifted", solver="adam", max_iter=ITERS, progress=False)
    grad = invert(net, f, alpha=ALPHA, method="gradient", solver="adam", max_iter=ITERS, progress=False)
    p_l, p_g = psnr(lifted.u, u), psnr(grad.u, u)
    assert isinstance(lifted, InversionResult) and lifted.u.shape == (1, 1, SIZE, SIZE)
    assert p_l >= 20.0, f"lifted PSNR {p_l:.2f} dB below the 20 dB floor"
    assert p_l > p_g, f"lifted {p_l:.2f} dB did not beat gradient {p_g:.2f} dB (same alpha, TV, Adam, budget)"


def test_lifted_pdhg_default_vs_gradient_pdhg(problem):
    """P2's algorithm (PDHG input step) against the gradient baseline with the same PDHG."""
    net, u, _, f = problem
    lifted = invert(net, f, alpha=ALPHA, max_iter=ITERS, progress=False)  # defaults: lifted, PDHG, active
    grad = invert(net, f, alpha=ALPHA, method="gradient", solver="pdhg", max_iter=ITERS, progress=False)
    assert lifted.info["solver"] == "pdhg" and lifted.info["coupling"] == "active"
    p_l, p_g = psnr(lifted.u, u), psnr(grad.u, u)
    assert p_l >= 18.5
    assert p_l >= p_g


def test_lifted_objective_decreases(problem):
    """Plain BCD (inertia 0) with exact / safe-step block updates: monotone for Tikhonov; PDHG (TV): nearly
    monotone. (The inertial, heavy-ball iteration is not monotone.)"""
    net, _, _, f = problem
    net, f = perceptron(SIZE, FEATURES, seed=0).double(), f.double()  # float64: no rounding noise
    for coupling in ("relaxed", "hard"):
        kw = dict(regulariser="tikhonov", alpha=1.0, coupling=coupling, max_iter=150, log_every=1, tol=0)
        res = invert(net, f, inertia=0.0, progress=False, **kw)
        h = torch.tensor(res.history["objective"], dtype=torch.float64)
        assert len(h) == 151
        assert bool((h[1:] <= h[:-1] * (1 + 1e-10)).all()), f"Tikhonov/{coupling}: the objective increased"
        assert h[-1] < 0.05 * h[0]
    res = invert(net, f, alpha=ALPHA, max_iter=150, log_every=1, tol=0, progress=False, inertia=0.0)
    h = torch.tensor(res.history["objective"], dtype=torch.float64)
    rises = (h[1:] - h[:-1]).clamp(min=0) / h[1:]
    assert float(rises.max()) < 1e-3, "TV/PDHG: an increase of more than 0.1%"
    assert h[-1] < 0.1 * h[0]


def test_exact_fit_without_noise(problem):
    """noise 0, alpha = 0: the direct (hard) lifted form fits exactly; gradient inversion stalls (dead ReLUs)."""
    net, _, f0, _ = problem
    res = invert(net, f0, regulariser=None, coupling="hard", max_iter=500, progress=False)
    assert float(res.residual.max()) < 1e-3
    assert res.converged
    grad = invert(net, f0, regulariser=None, method="gradient", max_iter=500, progress=False)
    assert float(grad.residual.max()) > 1e-2
    # the relaxed form keeps a few saturated ("dead") units: documented, not exact
    relaxed = invert(net, f0, regulariser=None, coupling="relaxed", max_iter=500, progress=False)
    assert float(relaxed.residual.max()) < float(grad.residual.max())


def test_batch_and_per_sample_alpha_match_separate_runs(problem):
    _, _, _, f = problem
    net64 = perceptron(SIZE, FEATURES, seed=0).double()
    fb = torch.cat([f, 1.01 * f]).double()
    both = invert(net64, fb, alpha=torch.tensor([1.0, 3.0]), max_iter=40, tol=0, progress=False)
    one = invert(net64, fb[1:], alpha=3.0, max_iter=40, tol=0, progress=False)
    assert both.u.dtype == torch.float64
    torch.testing.assert_close(both.u[1:], one.u, rtol=1e-9, atol=1e-9)


def test_deterministic_and_history_fields(problem):
    net, _, _, f = problem
    a = invert(net, f, alpha=ALPHA, max_iter=30, progress=False, seed=3)
    b = invert(net, f, alpha=ALPHA, max_iter=30, progress=False, seed=3)
    assert torch.equal(a.u, b.u)
    for key in ("iteration", "objective", "data", "penalty", "regulariser", "residual", "time"):
        assert key in a.history
    # one History shape for fit, reconstruct and invert: columns by key, records by index
    assert isinstance(a.history, History) and a.history.method == "lifted"
    assert a.history["iteration"] == [0, 10, 20, 30] and a.history[-1]["iteration"] == a.iterations
    g = invert(net, f, alpha=ALPHA, method="gradient", max_iter=20, progress=False)
    assert isinstance(g.history, History) and g.history.method == "gradient" and "penalty" not in g.history
    assert a.iterations == 30 and a.time > 0 and a.residual.shape == (1,)
    assert float(a.u.min()) >= 0 and float(a.u.max()) <= 1  # box (0, 1)


def test_init_is_zeros_or_a_tensor(problem):
    net, u, _, f = problem
    start = invert(net, f, alpha=ALPHA, init=u[0], max_iter=0, progress=False)  # one input: broadcast
    torch.testing.assert_close(start.u, u)
    zeros = invert(net, f, alpha=ALPHA, init="zeros", max_iter=0, progress=False)
    assert torch.equal(zeros.u, torch.zeros_like(u))
    clipped = invert(net, f, alpha=ALPHA, init=torch.full_like(u, 2.0), max_iter=0, progress=False)
    assert torch.equal(clipped.u, torch.ones_like(u))  # projected onto the box (0, 1)
    for bad in ("random", "box-mid"):
        with pytest.raises(ValueError, match="init must be 'zeros' or a tensor"):
            invert(net, f, init=bad, progress=False)
    with pytest.raises(ValueError, match=r"init has shape \(2, 2\)"):
        invert(net, f, init=torch.zeros(2, 2), progress=False)


def test_hard_coupling_clips_negative_outputs(problem):
    net, _, _, f = problem
    res = invert(net, f, alpha=ALPHA, coupling="hard", max_iter=5, progress=False)
    assert res.info["clipped"] == int((f < 0).sum()) > 0


def test_deep_conv_network_runs_and_decreases():
    """A small conv encoder (Conv/AvgPool/Linear + ReLU): multi-layer lifted inversion works and descends."""
    torch.manual_seed(0)
    enc = Autoencoder(code=8, channels=4).encoder
    u = random_phantoms(2, 16, seed=1, kind="mixed")
    with torch.no_grad():
        f = enc(u)
    res = invert(enc, f, regulariser="tikhonov", alpha=1e-3, max_iter=60, log_every=1, tol=0, progress=False)
    h = torch.tensor(res.history["objective"])
    assert bool((h[1:] <= h[:-1] * (1 + 1e-5) + 1e-7).all())
    assert res.info["depth"] == 3 and len(res.info["state_steps"]) == 2
    grad = invert(
        enc, f, regulariser="tv", alpha=1e-3, method="gradient", solver="pdhg", max_iter=20, progress=False
    )
    assert torch.isfinite(grad.u).all()


# ---------------------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------------------
def test_unsupported_layers_fail_clearly():
    f = torch.rand(1, 4)
    gelu = nn.Sequential(nn.Linear(9, 4), nn.GELU())
    with pytest.raises(NotProximalError, match="GELU"):
        invert(gelu, f, regulariser=None, progress=False)
    pool = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
    with pytest.raises(LiftingError, match="MaxPool2d"):
        invert(pool, torch.rand(1, 4), input_shape=(1, 4, 4), progress=False)


def test_bad_arguments_name_the_argument(problem):
    net, _, _, f = problem
    with pytest.raises(ValueError, match=r"f has shape \(1, 255\).*outputs of shape \(256,\)"):
        invert(net, f[:, :255], progress=False)
    bad = f.clone()
    bad[0, 3] = float("nan")
    with pytest.raises(ValueError, match="f contains NaN or inf"):
        invert(net, bad, progress=False)
    with pytest.raises(ValueError, match="alpha must be finite and >= 0"):
        invert(net, f, alpha=-1.0, progress=False)
    with pytest.raises(ValueError, match="regulariser must be one of"):
        invert(net, f, regulariser="l1", progress=False)
    with pytest.raises(ValueError, match="method must be one of"):
        invert(net, f, method="newton", progress=False)
    with pytest.raises(ValueError, match="coupling must be one of"):
        invert(net, f, coupling="loose", progress=False)
    with pytest.raises(ValueError, match="solver must be one of"):
        invert(net, f, solver="lbfgs", progress=False)  # L-BFGS is for the gradient baseline only
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    with pytest.raises(ValueError, match="input_shape is needed"):
        invert(conv, torch.rand(1, 2, 2, 2), progress=False)
    with pytest.raises(ValueError, match="input_shape=\\(1, 3, 3\\) does not fit"):
        invert(net, f, input_shape=(1, 3, 3), progress=False)
    with pytest.raises(ValueError, match="regulariser='tv' needs image-shaped inputs"):
        invert(nn.Sequential(nn.Linear(9, 4), nn.ReLU()), torch.rand(1, 4), progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            invert(net, f, device="cuda", progress=False)


# ---------------------------------------------------------------------------------------------------------
# recipes
# ---------------------------------------------------------------------------------------------------------
def test_perceptron_recipe_is_reproducible_and_half_active():
    a, b = perceptron(16, 64, seed=4), perceptron(16, 64, seed=4)
    assert torch.equal(a[1].weight, b[1].weight) and torch.equal(a[1].bias, b[1].bias)
    assert float(a[1].weight.std()) == pytest.approx(1.0, rel=0.05)  # unit variance, as in P2
    frac = float((a(shepp_logan(16, source="skimage")) > 0).float().mean())
    assert 0.3 < frac < 0.7
    assert set(RECIPES) >= {"perceptron", "autoencoder"}
    prob = get_recipe("perceptron", image_size=16, features=64)
    assert prob.inputs.shape == (2, 1, 16, 16) and prob.model.input_shape == (1, 16, 16)
    with pytest.raises(ValueError, match="unknown recipe"):
        get_recipe("vgg")


def test_autoencoder_recipe_trains_caches_and_lifts(tmp_path):
    path = tmp_path / "ae.pt"
    ae = autoencoder(epochs=1, n_train=256, path=path)
    assert path.is_file() and ae.train_info["epochs"] == 1
    again = autoencoder(epochs=1, n_train=256, path=path)
    for p, q in zip(ae.parameters(), again.parameters()):
        assert torch.equal(p, q)
    net = lift(ae.encoder, last="free")
    assert net.depth == 3
    assert lift(ae.decoder, last="free").depth == 3


# ---------------------------------------------------------------------------------------------------------
# devices
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; none is available here")
def test_cuda_matches_cpu(problem):
    net, _, _, f = problem
    for method in ("lifted", "gradient"):
        cpu = invert(
            net,
            f,
            alpha=ALPHA,
            method=method,
            solver="pdhg",
            max_iter=50,
            dtype=torch.float64,
            progress=False,
        )
        gpu = invert(
            net,
            f,
            alpha=ALPHA,
            method=method,
            solver="pdhg",
            max_iter=50,
            device="cuda",
            dtype=torch.float64,
            progress=False,
        )
        assert gpu.u.device.type == "cuda"
        torch.testing.assert_close(gpu.u.cpu(), cpu.u, rtol=1e-6, atol=1e-6)
        assert math.isfinite(gpu.time)


def test_unrolled_recipe_inverts_when_available():
    pytest.importorskip("liftinv.models", reason="the unrolled-networks module is not installed")
    prob = get_recipe("unrolled", image_size=16, n_images=1)
    with torch.no_grad():
        f = prob.model(prob.inputs)
    res = invert(prob.model, f, alpha=prob.alpha, max_iter=40, tol=0, progress=False)
    assert res.info["depth"] >= 2
    assert res.history["residual"][-1] < 0.5 * res.history["residual"][0]


# ---------------------------------------------------------------------------------------------------------
# issue 15: layers that cannot be lifted, batch = one at a time, batch-norm folding, validation split
# ---------------------------------------------------------------------------------------------------------
class _SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.att = nn.MultiheadAttention(4, 1, batch_first=True)

    def forward(self, x):
        x = x.reshape(x.shape[0], 1, 4)
        return self.att(x, x, x)[0].reshape(x.shape[0], 4)


@pytest.mark.parametrize(
    ("model", "shape", "error", "layer", "advice"),
    [
        (
            nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()),
            (1, 4, 4),
            LiftingError,
            "MaxPool2d",
            "average pooling",
        ),
        (nn.Sequential(nn.Linear(4, 4), nn.GELU()), (4,), NotProximalError, "GELU", "ReLU"),
        (nn.Sequential(_SelfAttention()), (4,), LiftingError, "MultiheadAttention", "method='gradient'"),
    ],
)
def test_non_liftable_layer_names_the_layer_and_the_advice(model, shape, error, layer, advice):
    """One error of the lift() type, naming the layer, with the suggestion that applies to it."""
    with pytest.raises(error) as info:
        invert(model, torch.rand(1, 4), input_shape=shape, regulariser=None, progress=False)
    msg = str(info.value)
    assert layer in msg and advice in msg
    assert "Supported:" not in msg  # the advice replaces the long list of supported modules
    assert invert(
        model,
        torch.rand(1, 4),
        input_shape=shape,
        regulariser=None,
        method="gradient",
        max_iter=2,
        progress=False,
    ).u.shape == (1, *shape)  # the suggested fallback works


def test_default_batch_equals_one_at_a_time_with_per_sample_alpha(problem):
    """Samples are independent under the defaults: a batch gives each sample's separate result."""
    _, _, f0, f = problem
    net64 = perceptron(SIZE, FEATURES, seed=0).double()
    fb = torch.cat([f, f0, 1.02 * f]).double()
    alphas = torch.tensor([ALPHA, 0.5 * ALPHA, 2 * ALPHA], dtype=torch.float64)
    both = invert(net64, fb, alpha=alphas, max_iter=60, tol=0, progress=False)
    for k in range(3):
        one = invert(net64, fb[k : k + 1], alpha=float(alphas[k]), max_iter=60, tol=0, progress=False)
        torch.testing.assert_close(both.u[k : k + 1], one.u, rtol=1e-9, atol=1e-9)


def test_fold_batchnorm_is_exact_and_makes_the_network_liftable():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten())
    net(torch.rand(16, 1, 6, 6))  # running statistics
    net.eval()
    folded = fold_batchnorm(net)
    x = torch.rand(4, 1, 6, 6)
    torch.testing.assert_close(folded(x), net(x), rtol=1e-5, atol=1e-6)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    with pytest.raises(LiftingError, match="fold"):
        invert(net, net(x).detach(), input_shape=(1, 6, 6), progress=False)
    res = invert(folded, folded(x).detach(), input_shape=(1, 6, 6), max_iter=5, progress=False)
    assert res.u.shape == x.shape


def test_validation_split_is_disjoint_from_the_test_split(tmp_path):
    test = get_recipe("perceptron", image_size=16, features=32, n_images=2)
    val = get_recipe("perceptron", image_size=16, features=32, n_images=2, split="validation")
    assert torch.equal(test.model[1].weight, val.model[1].weight)
    for v in val.inputs:
        assert all(not torch.equal(v, t) for t in test.inputs)
    with pytest.raises(ValueError, match="split"):
        get_recipe("perceptron", image_size=16, features=32, split="train")


def test_default_fits_exact_data_of_an_injective_network():
    """Defaults (coupling="auto", alpha = 0): relative residual <= 1e-4 on exact data (issue 15)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 48), nn.ReLU()).double()  # 16 -> 48: injective here
    u = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    f = net(u).detach()
    res = invert(net, f, regulariser=None, max_iter=4000, progress=False)
    assert res.info["coupling"] == "active" and res.info["coupling_option"] == "auto"
    assert float(res.residual.max()) <= 1e-4, res.residual
    # injective: the exact fit recovers the input itself
    assert (
        float(((res.u.reshape(3, -1) - u.reshape(3, -1)).norm(dim=1) / u.reshape(3, -1).norm(dim=1)).max())
        < 1e-3
    )
    # the perceptron of the benchmark (32x32 -> 256), default settings, alpha = 0
    net2 = perceptron(SIZE, FEATURES, seed=0).double()
    u2 = shepp_logan(SIZE, source="skimage").double()
    res2 = invert(net2, net2(u2).detach(), regulariser=None, progress=False)
    assert float(res2.residual.max()) <= 1e-4, res2.residual
    relaxed = invert(net2, net2(u2).detach(), regulariser=None, coupling="relaxed", progress=False)
    assert float(relaxed.residual.max()) > 1e-3  # the saturated units the continuation removes


def test_default_is_the_inertial_active_coupling_and_mixed_batches_match_single_runs(problem):
    """coupling="auto" is the validated "active" coupling with inertia 0.9, for alpha = 0 and alpha > 0; a
    batch mixing both gives every sample its own run's result (the noise estimate is per sample)."""
    _, _, f0, f = problem
    net64 = perceptron(SIZE, FEATURES, seed=0).double()
    fb = torch.cat([f, f0]).double()
    alphas = torch.tensor([ALPHA, 0.0], dtype=torch.float64)
    both = invert(net64, fb, alpha=alphas, max_iter=80, tol=0, progress=False)
    assert both.info["coupling"] == "active" and both.info["coupling_option"] == "auto"
    assert both.info["inertia"] == 0.9
    explicit = invert(net64, fb, alpha=alphas, max_iter=80, tol=0, progress=False, coupling="active")
    torch.testing.assert_close(both.u, explicit.u, rtol=0, atol=0)
    # noisy output: a positive noise estimate; exact output: none, every active unit coupled hard
    assert float(both.info["noise_estimate"][0]) > 0 and float(both.info["noise_estimate"][1]) == 0
    for k in range(2):
        one = invert(net64, fb[k : k + 1], alpha=float(alphas[k]), max_iter=80, tol=0, progress=False)
        torch.testing.assert_close(both.u[k : k + 1], one.u, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(both.residual[k : k + 1], one.residual, rtol=1e-9, atol=1e-12)
