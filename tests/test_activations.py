"""Property tests for every proximal activation (DESIGN §2): Bregman >= 0, zero at the forward pass,
gradient in z against autograd, prox optimality, float32 stability for |z| <= 1e4."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from liftinv.lifted.activations import (
    ACTIVATIONS,
    NotProximalError,
    from_module,
    get_activation,
)
from liftinv.lifted.penalties import BregmanPenalty

# name -> constructor kwargs (every registered activation is covered)
PARAMS = {
    "identity": {},
    "relu": {},
    "leaky_relu": {"negative_slope": 0.2},
    "soft_threshold": {"theta": 0.3},
    "clip": {"c": 0.7},
    "tanh": {},
    "sigmoid": {},
    "softmax": {},
}
assert set(PARAMS) == set(ACTIVATIONS), "every activation must be tested"


def _in_domain(name, shape, g, dtype=torch.float64):
    """Random points inside dom psi."""
    u = torch.randn(shape, generator=g, dtype=dtype)
    if name == "relu":
        return u.abs() * torch.bernoulli(torch.full(shape, 0.7, dtype=dtype), generator=g)
    if name == "clip":
        return 0.7 * torch.tanh(u)
    if name == "tanh":
        return 0.999 * torch.tanh(u)
    if name == "sigmoid":
        return torch.sigmoid(2 * u)
    if name == "softmax":
        return torch.softmax(2 * u, dim=1)
    return u


@pytest.fixture(params=sorted(PARAMS))
def act(request):
    return request.param, get_activation(request.param, **PARAMS[request.param])


def test_bregman_nonnegative_and_dominates_squared_distance(act, generator):
    name, a = act
    x = _in_domain(name, (64, 7), generator)
    z = 3 * torch.randn(64, 7, generator=generator, dtype=torch.float64)
    b = a.bregman(x, z)
    assert torch.all(b >= -1e-12)
    # B(x, z) >= 1/2 ||x - sigma(z)||^2
    assert torch.all(b >= 0.5 * (x - a(z)).pow(2).sum(1) - 1e-9)


def test_bregman_zero_at_forward_pass(act, generator):
    _, a = act
    z = 4 * torch.randn(64, 7, generator=generator, dtype=torch.float64)
    assert a.bregman(a(z), z).abs().max() <= 1e-6


def test_grad_z_matches_autograd(act, generator):
    name, a = act
    x = _in_domain(name, (16, 5), generator)
    z = (2 * torch.randn(16, 5, generator=generator, dtype=torch.float64)).requires_grad_(True)
    (g,) = torch.autograd.grad(a.bregman(x, z).sum(), z)
    pen = BregmanPenalty(a)
    torch.testing.assert_close(pen.grad_z(x, z.detach()), g, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(g, a(z.detach()) - x, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("mu", [0.05, 1.0, 7.0])
def test_prox_optimality(act, mu, generator):
    """u = prox_{mu Phi}(v) minimises G(u) = mu Phi(u) + 1/2||u - v||^2: no feasible direction decreases G."""
    name, a = act
    v = 2 * torch.randn(8, 6, generator=generator, dtype=torch.float64)
    u = a.prox(v, mu)
    assert torch.all(a.in_domain(u))

    def G(w):
        return mu * a.phi(w) + 0.5 * (w - v).pow(2).sum(1)

    g0 = G(u)
    for _ in range(20):
        d = torch.randn(8, 6, generator=generator, dtype=torch.float64)
        if name == "softmax":
            d = d - d.mean(1, keepdim=True)  # stay on the simplex
        for eps in (1e-2, 1e-4):
            w = u + eps * d
            ok = a.in_domain(w).all(1) if name != "softmax" else a.in_domain(w).all(1)
            g1 = G(w)
            assert torch.all((g1 >= g0 - 1e-9) | ~ok)


def test_prox_closed_forms():
    """Where the first-order condition is smooth, check it directly: (v - u)/mu = Phi'(u)."""
    v = torch.linspace(-3, 3, 41, dtype=torch.float64).reshape(1, -1)
    mu = 0.7
    u = get_activation("tanh").prox(v, mu)
    torch.testing.assert_close((v - u) / mu, torch.atanh(u), atol=1e-9, rtol=1e-7)
    u = get_activation("sigmoid").prox(v, mu)
    torch.testing.assert_close((v - u) / mu, torch.logit(u), atol=1e-9, rtol=1e-7)
    u = get_activation("relu").prox(v, mu)
    torch.testing.assert_close(u, torch.relu(v) / (1 + mu))


def test_float32_stability_large_inputs(act, generator):
    name, a = act
    z = torch.tensor([[-1e4, -100.0, -1.0, 0.0, 1.0, 100.0, 1e4]], dtype=torch.float32).repeat(3, 1)
    s = a(z)
    for t in (s, a.phi_conj(z), a.bregman(s, z), a.prox(z, 0.5), a.prox(z, 1e-3)):
        assert torch.isfinite(t).all(), name


@pytest.mark.parametrize(
    "module, expected",
    [
        (nn.ReLU(), "relu"),
        (nn.LeakyReLU(0.3), "leaky_relu"),
        (nn.Tanh(), "tanh"),
        (nn.Sigmoid(), "sigmoid"),
        (nn.Hardtanh(), "clip"),
        (nn.Hardtanh(0.0, 1.0), "clip"),
        (nn.Softshrink(0.2), "soft_threshold"),
        (nn.Identity(), "identity"),
        (nn.Softmax(dim=1), "softmax"),
    ],
)
def test_from_torch_modules(module, expected):
    a = from_module(module)
    assert a.name == expected
    z = torch.randn(4, 5) if expected != "softmax" else torch.randn(4, 3)
    torch.testing.assert_close(a(z), module(z))


@pytest.mark.parametrize(
    "module, reason",
    [
        (nn.GELU(), "not monotone"),
        (nn.SiLU(), "not monotone"),
        (nn.LeakyReLU(1.5), "slope must be in"),
        (nn.Hardshrink(), "non-convex"),
    ],
)
def test_non_admissible_activation_errors(module, reason):
    with pytest.raises(NotProximalError, match=reason):
        from_module(module)


def test_sign_points_to_ftprop():
    with pytest.raises(NotProximalError, match="FTPROP"):
        get_activation("sign")


def test_unknown_name():
    with pytest.raises(NotProximalError, match="unknown activation"):
        get_activation("wobbly")
