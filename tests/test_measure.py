"""The one measurement simulation (``LinearOperator.measure``) and the diagonal-operator base class."""

from __future__ import annotations

import pytest
import torch
from liftinv.operators import (
    Blur,
    Denoising,
    DiagonalOperator,
    GaussianNoise,
    Inpainting,
    LinearOperator,
    PoissonNoise,
    Tomography,
    make_operator,
)


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() * b.double()).sum())


def _weights(size: int = 8, channels: int = 1) -> torch.Tensor:
    weights = torch.linspace(-2.0, 3.0, channels * size * size).reshape(channels, size, size)
    weights[:, ::3] = 0.0  # unmeasured rows
    return weights


# ------------------------------------------------------------------------------------ diagonal operators
def test_inpainting_and_denoising_are_diagonal_operators():
    for op in (Inpainting(8), Inpainting(8, "box"), Denoising(8), make_operator("inpaint", 8)):
        assert isinstance(op, DiagonalOperator) and isinstance(op, LinearOperator)
        assert op.measurement_size == op.image_size
    assert not isinstance(Blur(8, sigma=1.0), DiagonalOperator)
    assert not isinstance(Tomography(8, angles=4), DiagonalOperator)
    assert torch.equal(Inpainting(8).support, Inpainting(8).mask != 0)
    assert bool(Denoising(8).support.all()) and "mask" not in Denoising(8).state_dict()
    assert "mask" in Inpainting(8).state_dict()


@pytest.mark.parametrize(
    "op",
    [
        DiagonalOperator(8, _weights()),
        DiagonalOperator((2, 8, 8), _weights(channels=2)),
        DiagonalOperator((3, 8, 8), _weights()),  # one [H, W] map for every channel
        DiagonalOperator(8, 0.5),
        Inpainting((2, 8, 8), "blocks", keep_rate=0.6, block_size=3, seed=1),
        Denoising((2, 8, 8)),
    ],
    ids=["weights", "per-channel", "shared-map", "scalar", "inpainting", "denoising"],
)
def test_diagonal_operator_closed_forms(op):
    op = op.double()  # float64 buffers: the identities below hold to round-off
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, *op.image_size, generator=generator, dtype=torch.float64)
    y = torch.randn(3, *op.measurement_size, generator=generator, dtype=torch.float64)
    assert _dot(op.A(x), y) == pytest.approx(_dot(x, op.A_adjoint(y)), rel=1e-12, abs=1e-12)
    torch.testing.assert_close(op.A_adjoint_A(x), op.A_adjoint(op.A(x)))
    torch.testing.assert_close(op.A_A_adjoint(y), op.A(op.A_adjoint(y)))
    # pseudo-inverse: A A^+ A = A and A^+ y lies in the support
    torch.testing.assert_close(op.A(op.A_dagger(op.A(x))), op.A(x))
    assert bool((op.A_dagger(y)[..., ~op.support.expand(1, *op.image_size)[0]] == 0).all())
    # prox of gamma/2 ||A x - y||^2: the gradient of the objective vanishes
    z, gamma = torch.randn(3, *op.image_size, generator=generator, dtype=torch.float64), 0.7
    p = op.prox_l2(z, y, gamma)
    torch.testing.assert_close(gamma * op.A_adjoint(op.A(p) - y) + p - z, torch.zeros_like(p))
    # closed-form norm = the power iteration of the base class
    assert op.norm() == pytest.approx(LinearOperator._compute_norm(op, max_iter=500, tol=1e-10), rel=1e-6)


def test_diagonal_operator_checks_its_mask():
    with pytest.raises(ValueError, match="does not broadcast"):
        DiagonalOperator(8, torch.ones(7, 8))
    with pytest.raises(ValueError, match="does not broadcast"):
        DiagonalOperator((2, 8, 8), torch.ones(3, 8, 8))
    with pytest.raises(ValueError, match="real and finite"):
        DiagonalOperator(8, torch.full((8, 8), float("nan")))
    with pytest.raises(TypeError, match="mask must be a number or a tensor"):
        DiagonalOperator(8, "random")
    assert DiagonalOperator(8, torch.tensor(2.0)).norm() == 2.0


# ------------------------------------------------------------------------------------------- measure
OPERATORS = {
    "blur": lambda: Blur(16, sigma=1.0),
    "tomography": lambda: Tomography(16, angles=6),
    "inpainting": lambda: Inpainting(16, keep_rate=0.5, seed=0),
    "denoising": lambda: Denoising(16),
    "diagonal": lambda: DiagonalOperator(16, _weights(16)),
}


@pytest.mark.parametrize("name", OPERATORS)
def test_measure_is_deterministic_per_generator(name):
    op = OPERATORS[name]()
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    first = op.measure(x, 0.1, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, op.measure(x, 0.1, generator=torch.Generator().manual_seed(3)))
    assert torch.equal(first, op.measure(x, 0.1, seed=3))  # a seed is a fresh generator
    assert torch.equal(first, op.measure(x, GaussianNoise(0.1), generator=torch.Generator().manual_seed(3)))
    assert not torch.equal(first, op.measure(x, 0.1, generator=torch.Generator().manual_seed(4)))
    # one generator advances: two calls differ, and replaying the stream reproduces both
    generator = torch.Generator().manual_seed(3)
    a, b = op.measure(x, 0.1, generator=generator), op.measure(x, 0.1, generator=generator)
    assert torch.equal(a, first) and not torch.equal(a, b)
    replay = torch.Generator().manual_seed(3)
    assert torch.equal(op.measure(x, 0.1, generator=replay), a)
    assert torch.equal(op.measure(x, 0.1, generator=replay), b)
    # y = A x + sigma n with n ~ N(0, I) drawn in y's shape, zero where nothing is measured
    y = op.A(x)
    n = torch.randn(y.shape, generator=torch.Generator().manual_seed(3))
    if isinstance(op, DiagonalOperator):
        n = n * op.support
    torch.testing.assert_close(first, y + 0.1 * n, rtol=0, atol=1e-6)
    poisson = op.measure(x.clamp_min(0), PoissonNoise(0.01), generator=torch.Generator().manual_seed(1))
    assert torch.equal(poisson, op.measure(x.clamp_min(0), PoissonNoise(0.01), seed=1))


def test_measure_keeps_unmeasured_entries_at_plus_zero():
    for op in (Inpainting(16, keep_rate=0.5, seed=0), DiagonalOperator(16, _weights(16))):
        x = torch.rand(4, 1, 16, 16)
        missing = ~op.support.expand(4, 1, 16, 16)
        for y in (op.measure(x, 0.5, seed=0), op.measure(x, PoissonNoise(0.1), seed=0)):
            assert bool((y[missing] == 0).all()) and not bool(torch.signbit(y[missing]).any())
            assert bool((y[~missing] != op.A(x)[~missing]).any())
    noisy_op = Inpainting(16, noise_model=GaussianNoise(0.5, seed=0))
    y = noisy_op(torch.rand(4, 1, 16, 16))  # forward applies the noise model the same way
    assert bool((y[~noisy_op.support.expand(4, 1, 16, 16)] == 0).all())


def test_measure_defaults_and_errors():
    op = Blur(8, sigma=1.0)
    x = torch.rand(1, 1, 8, 8)
    assert torch.equal(op.measure(x), op.A(x))  # no noise model: noiseless
    assert torch.equal(op.measure(x, 0.0, seed=0), op.A(x))
    noisy = Blur(8, sigma=1.0, noise_model=GaussianNoise(0.1))
    assert torch.equal(noisy.measure(x, seed=2), op.measure(x, 0.1, seed=2))  # the operator's own model
    with pytest.raises(ValueError, match="either seed or generator"):
        op.measure(x, 0.1, seed=0, generator=torch.Generator())
    with pytest.raises(TypeError, match="noise must be a NoiseModel"):
        op.measure(x, "loud")
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        op.measure(x, -0.1)
