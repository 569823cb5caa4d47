"""Forward operators: adjointness, norms, shapes, dtypes, gradients, devices, registry, noise, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from liftinv.operators import (
    BOUNDARIES,
    OPERATORS,
    Blur,
    Denoising,
    GaussianNoise,
    Inpainting,
    PoissonNoise,
    Tomography,
    from_odl,
    gaussian_kernel,
    make_operator,
    motion_kernel,
    normalize_image_size,
    odl_ray_transform,
)


def _odl_space(n: int = 12):
    import odl

    return odl.uniform_discr([-1, -1], [1, 1], (n, n), dtype="float64")


def _odl_gradient():
    import odl

    # Gradient with zero padding: ODL's adjoint (-divergence) is exact; the range is a product space.
    return from_odl(odl.Gradient(_odl_space(), pad_mode="constant"))


def _odl_matrix():
    import odl

    matrix = np.random.default_rng(0).standard_normal((7, 12))
    return from_odl(odl.MatrixOperator(matrix, domain=_odl_space(), axis=0), channels=2)


#: every operator family, with its variants (all registry names plus ODL-wrapped ones)
CASES = {
    "blur": lambda: make_operator("blur", 16),
    "blur-reflect-motion": lambda: Blur(16, kernel="motion", length=5, angle=30, boundary="reflect"),
    "blur-replicate-user": lambda: Blur(
        (2, 12, 10), kernel=[[0.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 1.0, 0.0]], boundary="replicate"
    ),
    "blur-zeros": lambda: Blur(16, sigma=1.0, boundary="zeros"),
    "tomography": lambda: make_operator("tomography", 16, angles=12),
    "tomography-2ch-angles": lambda: Tomography((2, 13, 13), angles=[0.0, 17.0, 45.0, 90.0, 133.0]),
    "inpainting": lambda: make_operator("inpainting", 16),
    "inpainting-blocks": lambda: Inpainting((3, 16, 16), mask="blocks", keep_rate=0.6, block_size=4, seed=2),
    "inpainting-box": lambda: Inpainting(16, mask="box"),
    "denoising": lambda: make_operator("denoising", (2, 8, 12)),
    "odl-gradient": _odl_gradient,
    "odl-matrix": _odl_matrix,
}


@pytest.fixture(params=list(CASES), ids=list(CASES))
def op(request):
    return CASES[request.param]()


def _random(shape, dtype=torch.float64, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _adjoint_error(op, dtype, batch=3):
    x = _random((batch, *op.image_size), dtype, seed=1)
    y = _random((batch, *op.measurement_size), dtype, seed=2)
    ax = op.A(x)
    lhs = (ax * y).sum()
    rhs = (x * op.A_adjoint(y)).sum()
    return float((lhs - rhs).abs() / (ax.norm() * y.norm()))


def test_registry_names_and_cases():
    assert set(OPERATORS) == {"blur", "tomography", "inpainting", "denoising"}
    assert set(OPERATORS) <= set(CASES)
    for name in OPERATORS:
        assert make_operator(name, 8 if name != "blur" else 16).name == name
    assert make_operator("ct", 16).name == "tomography"  # alias used by the training CLI


def test_adjoint_float64(op):
    assert _adjoint_error(op, torch.float64) <= 1e-5


def test_adjoint_float32(op):
    assert _adjoint_error(op, torch.float32) <= 1e-5


def _long_power_iteration(op, iterations=300):
    x = _random((1, *op.image_size), seed=7)
    with torch.no_grad():
        for _ in range(iterations):
            x = op.A_adjoint(op.A(x))
            x = x / x.norm()
        return float(op.A(x).norm())


def test_norm_matches_long_power_iteration(op):
    reference = _long_power_iteration(op)
    first = op.norm()
    assert first == pytest.approx(reference, rel=0.01)
    assert op.norm() == first and len(op._norm_cache) == 1  # memoised, not recomputed


def test_norm_is_the_norm_not_its_square():
    kernel = 3.0 * gaussian_kernel(1.0)
    op = Blur(16, kernel=kernel, boundary="circular")
    assert op.norm() == pytest.approx(3.0, rel=1e-6)
    padded = Blur(16, kernel=kernel, boundary="zeros")
    x = _random((4, 1, 16, 16))
    ratios = padded.A(x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
    assert float(ratios.max()) <= padded.norm() * (1 + 1e-6)
    assert padded.norm() < 3.0 + 1e-6 and padded.norm() > 2.5


def test_batch_shapes_and_per_sample_consistency(op):
    x = _random((3, *op.image_size))
    y = op.A(x)
    assert y.shape == (3, *op.measurement_size)
    assert op.A_adjoint(y).shape == x.shape
    assert op.A_dagger(y, max_iter=5).shape == x.shape  # max_iter: CG-based pseudo-inverses only
    torch.testing.assert_close(op.A(x[1:2]), y[1:2])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes_follow_the_input(op, dtype, request):
    x = _random((2, *op.image_size), dtype)
    y = op.A(x)
    assert y.dtype == dtype
    assert op.A_adjoint(y).dtype == dtype
    assert op.A_dagger(y, max_iter=5).dtype == dtype
    op64 = CASES[request.node.callspec.params["op"]]().double()  # float64 buffers: the same operator
    torch.testing.assert_close(op64.A(x.double()), op.A(x.double()), rtol=1e-5, atol=1e-6)


def test_gradient_flows_through_A_exactly(op):
    x = _random((2, *op.image_size)).requires_grad_(True)
    loss = op.A(x).square().sum()
    (grad,) = torch.autograd.grad(loss, x, create_graph=True)
    torch.testing.assert_close(grad, 2 * op.A_adjoint(op.A(x.detach())), rtol=1e-8, atol=1e-10)
    # second order: d/dx <grad, v> = 2 A^T A v for a linear operator
    v = _random((2, *op.image_size), seed=5)
    (hvp,) = torch.autograd.grad((grad * v).sum(), x)
    torch.testing.assert_close(hvp, 2 * op.A_adjoint(op.A(v)), rtol=1e-8, atol=1e-10)


def test_gradient_flows_through_adjoint(op):
    y = _random((2, *op.measurement_size)).requires_grad_(True)
    w = _random((2, *op.image_size), seed=3)
    (grad,) = torch.autograd.grad((op.A_adjoint(y) * w).sum(), y)
    torch.testing.assert_close(grad, op.A(w), rtol=1e-8, atol=1e-10)


def test_to_device(op, device):
    x = _random((2, *op.image_size), torch.float32)
    expected = op.A(x)
    moved = op.to(device)
    y = moved.A(x.to(device))
    assert y.device.type == device.type
    assert moved.A_adjoint(y).device.type == device.type
    torch.testing.assert_close(y.cpu(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in CASES if not n.startswith("odl")])
def test_describe_is_json_and_rebuilds(name):
    op = CASES[name]()
    description = json.loads(json.dumps(op.describe()))
    assert description["name"] == op.name and description["image_size"] == list(op.image_size)
    rebuilt = make_operator(**description)
    assert rebuilt.describe() == op.describe()
    x = _random((2, *op.image_size), torch.float32)
    torch.testing.assert_close(rebuilt.A(x), op.A(x))
    rebuilt.load_state_dict(op.state_dict())


def test_operators_do_not_mutate_state(op):
    y = op.A(_random((2, *op.image_size), torch.float32))
    op.norm()  # the only memo: compute it before taking the snapshot
    before_state = {k: v.clone() for k, v in op.state_dict().items()}
    before_attrs = {k: repr(v) for k, v in vars(op).items() if not k.startswith("_modules")}
    op.A_dagger(y, max_iter=5)
    op.prox_l2(op.A_adjoint(y), y, 0.5, max_iter=5)
    op.A_adjoint_A(op.A_adjoint(y))
    op.measure(op.A_adjoint(y), 0.1, seed=0)
    op.norm()
    after_attrs = {k: repr(v) for k, v in vars(op).items() if not k.startswith("_modules")}
    assert after_attrs == before_attrs
    for key, value in op.state_dict().items():
        torch.testing.assert_close(value, before_state[key], rtol=0, atol=0)


def test_prox_l2_solves_its_problem(op):
    y = op.A(_random((2, *op.image_size), seed=3))
    z = _random((2, *op.image_size), seed=4)
    gamma = 0.7
    x = op.prox_l2(z, y, gamma)
    # optimality: gamma A^T (A x - y) + (x - z) = 0
    residual = gamma * op.A_adjoint(op.A(x) - y) + (x - z)
    assert float(residual.norm() / z.norm()) < 1e-4


# --------------------------------------------------------------------------------------- pseudo-inverses
def test_blur_pinv_is_a_pseudo_inverse():
    op = Blur(16, sigma=0.7, rcond=1e-12)
    x = _random((2, 1, 16, 16))
    ax = op.A(x)
    torch.testing.assert_close(op.A(op.A_dagger(ax)), ax, rtol=1e-5, atol=1e-5)
    truncated = Blur(16, sigma=2.0, rcond=1e-2)  # truncation: A A^+ A != A, but A^+ is bounded by 1/rcond
    assert float(truncated.A_dagger(ax).norm()) <= 100 * float(ax.norm()) * (1 + 1e-6)


def test_padded_blur_pinv_by_cg_recovers_a_well_conditioned_blur():
    op = Blur(16, sigma=0.5, boundary="reflect")
    x = _random((2, 1, 16, 16))
    assert float((op.A_dagger(op.A(x)) - x).norm() / x.norm()) < 1e-3


def test_inpainting_and_denoising_pinv():
    op = Inpainting(16, keep_rate=0.3, seed=1)
    x = _random((2, 1, 16, 16))
    torch.testing.assert_close(op.A_dagger(op.A(x)), x * op.mask)
    assert Denoising(16).A_dagger(x) is x


def test_fbp_reconstructs_a_phantom_like_skimage():
    from liftinv.datasets import shepp_logan
    from skimage.transform import iradon

    x = shepp_logan(64).double()
    op = Tomography(64, angles=60)
    fbp = op.A_dagger(op.A(x))
    assert float((fbp - x).norm() / x.norm()) < 0.3
    sinogram = (op.A(x) / op.pixel_size)[0, 0].numpy()
    reference = iradon(sinogram, theta=op.angles.double().numpy(), circle=False, filter_name="ramp")
    assert np.linalg.norm(fbp[0, 0].numpy() - reference) / np.linalg.norm(reference) < 0.05


@pytest.mark.parametrize("size", [64, 129])
def test_tomography_matches_skimage_radon(size):
    """Same geometry as skimage when the padded size G = ceil(sqrt(2) n) is odd (64 -> 91, 129 -> 183).

    (For even G, skimage rotates about pixel G // 2 and deepinv's grids about (G - 1) / 2: half a pixel apart.)
    """
    from liftinv.datasets import shepp_logan
    from skimage.transform import radon

    x = shepp_logan(size).double()
    op = Tomography(size, angles=30)
    assert op.detector_count % 2 == 1
    ours = (op.A(x) / op.pixel_size)[0, 0].numpy()  # layout [detectors, angles], as skimage
    reference = radon(x[0, 0].numpy(), theta=op.angles.double().numpy(), circle=False)
    assert ours.shape == reference.shape
    correlation = np.corrcoef(ours.ravel(), reference.ravel())[0, 1]
    assert correlation >= 0.999
    assert float((ours * reference).sum() / (reference * reference).sum()) == pytest.approx(1.0, rel=0.01)


def test_tomography_scaling_is_physical():
    # The image covers [-1, 1]^2: a centred disk of radius 0.5 has a central projection of 1 (its diameter).
    from liftinv.datasets import ellipse_phantom

    disk = ellipse_phantom([(1.0, 0.5, 0.5, 0.0, 0.0, 0.0)], 128, oversample=4).double()
    y = Tomography(128, angles=4).A(disk)
    assert float(y.max()) == pytest.approx(1.0, rel=0.02)


def test_blur_circular_fft_matches_deepinv_convolution():
    from deepinv.physics.functional import conv2d

    for kernel in (gaussian_kernel(1.3), motion_kernel(5, angle=20)):
        op = Blur(20, kernel=kernel, boundary="circular")
        x = _random((2, 1, 20, 20))
        torch.testing.assert_close(
            op.A(x), conv2d(x, kernel[None, None], padding="circular"), rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_blur_output_has_input_size(boundary):
    op = Blur((1, 17, 20), sigma=1.5, boundary=boundary)
    assert op.A(_random((2, 1, 17, 20))).shape == (2, 1, 17, 20)


def test_kernels():
    horizontal, vertical = motion_kernel(7, angle=0.0), motion_kernel(7, angle=90.0)
    assert horizontal.shape == (9, 9) and float(horizontal.sum()) == pytest.approx(1.0)
    assert float(horizontal[4].sum()) > 0.99  # all the mass on the centre row
    assert float(vertical[:, 4].sum()) > 0.99
    g = gaussian_kernel(2.0)
    torch.testing.assert_close(g, g.flip(0).flip(1))
    assert int(g.argmax()) == g.numel() // 2


# ------------------------------------------------------------------------------------------------ noise
def test_gaussian_noise_is_seeded_and_has_the_right_level():
    y = torch.zeros(1, 1, 128, 128)
    noise = GaussianNoise(0.1)
    torch.testing.assert_close(noise(y, seed=3), noise(y, seed=3))
    assert not torch.equal(noise(y, seed=3), noise(y, seed=4))
    first, second = GaussianNoise(0.1, seed=9), GaussianNoise(0.1, seed=9)
    torch.testing.assert_close(first(y), second(y))
    torch.testing.assert_close(first(y), second(y))  # the sequences agree draw by draw
    assert float(noise(y, seed=0).std()) == pytest.approx(0.1, rel=0.03)


def test_poisson_noise_statistics():
    y = torch.full((1, 1, 200, 200), 0.5, dtype=torch.float64)
    noisy = PoissonNoise(gain=0.01, seed=0)(y)
    assert float(noisy.mean()) == pytest.approx(0.5, rel=0.01)
    assert float(noisy.var()) == pytest.approx(0.01 * 0.5, rel=0.05)
    torch.testing.assert_close(PoissonNoise(0.01)(y, seed=1), PoissonNoise(0.01)(y, seed=1))
    with pytest.raises(ValueError, match="must be non-negative"):
        PoissonNoise(0.01, clip_negative=False)(-y)


def test_noise_is_the_same_on_every_device(device):
    y = torch.zeros(2, 1, 8, 8)
    torch.testing.assert_close(GaussianNoise(0.2)(y.to(device), seed=5).cpu(), GaussianNoise(0.2)(y, seed=5))


def test_inpainting_measurements_keep_missing_pixels_at_zero():
    op = Inpainting(32, keep_rate=0.5, seed=0)
    y = op.measure(torch.rand(2, 1, 32, 32), GaussianNoise(0.1), seed=0)
    assert bool((y[:, :, op.mask[0, 0] == 0] == 0).all())
    assert bool((y[:, :, op.mask[0, 0] == 1] != 0).all())


def test_forward_uses_the_noise_model():
    op = Blur(16, sigma=1.0, noise_model=GaussianNoise(0.5, seed=0))
    x = torch.zeros(1, 1, 16, 16)
    assert float(op(x).std()) > 0.3
    torch.testing.assert_close(op.measure(x, seed=1), op.measure(x, seed=1))


# -------------------------------------------------------------------------------------------------- ODL
def test_from_odl_rescales_weighted_adjoints():
    import odl

    space = _odl_space(12)  # cell volume (2/12)^2 != 1: ODL's adjoint is not the Euclidean one
    coarse = odl.uniform_discr([-1, -1], [1, 1], (12, 12), dtype="float64")
    op = from_odl(odl.ScalingOperator(space, 2.0) * odl.IdentityOperator(coarse))
    assert op.adjoint_scale == pytest.approx(1.0)
    ray = odl_ray_transform(16, angles=10)
    wrapped = from_odl(ray, pseudo_inverse=None)
    assert wrapped.adjoint_scale != pytest.approx(1.0)  # the ray transform's range weighting differs
    assert wrapped.measurement_size == (1, 10, ray.range.shape[1])
    # The skimage back-projection is only approximately adjoint, but the scaling makes it close.
    assert _adjoint_error(wrapped, torch.float64) < 0.05


def test_from_odl_pseudo_inverse():
    from liftinv.datasets import shepp_logan
    from odl.applications import tomo

    ray = odl_ray_transform(32, angles=60)
    fbp = tomo.fbp_op(ray)
    op = from_odl(ray, pseudo_inverse=fbp)
    x = shepp_logan(32).double()
    y = op.A(x)
    direct = fbp(fbp.domain.element(y[0, 0].numpy())).asarray()
    np.testing.assert_allclose(op.A_dagger(y)[0, 0].numpy(), direct, rtol=1e-10, atol=1e-12)
    assert float((op.A_dagger(y) - x).norm() / x.norm()) < 0.5


def test_fan_beam_needs_astra():
    from odl.applications import tomo

    if tomo.ASTRA_AVAILABLE:
        pytest.skip("astra-toolbox is installed: the missing-astra error cannot be triggered")
    with pytest.raises(ImportError, match="astra-toolbox"):
        odl_ray_transform(16, 8, geometry="fan")


def test_fan_beam_adjoint_with_astra():
    from odl.applications import tomo

    if not tomo.ASTRA_AVAILABLE:
        pytest.skip("astra-toolbox is not installed (optional extra liftinv[astra]); fan beam needs it")
    op = from_odl(odl_ray_transform(16, 8, geometry="fan"))
    assert _adjoint_error(op, torch.float64) < 1e-3


# ------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("name", list(OPERATORS))
def test_wrong_rank_shape_channels_and_dtype(name):
    op = make_operator(name, 16)
    with pytest.raises(ValueError, match=r"expected image x of shape \[B, 1, 16, 16\].*got \[1, 16, 16\]"):
        op.A(torch.zeros(1, 16, 16))
    with pytest.raises(ValueError, match=r"expected image x of shape \[B, 1, 16, 16\].*got \[2, 3, 16, 16\]"):
        op.A(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"expected .*y of shape"):
        op.A_adjoint(torch.zeros(2, 1, 5, 5))
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got ndarray"):
        op.A(np.zeros((1, 1, 16, 16)))
    with pytest.raises(TypeError, match="floating-point tensor, got dtype torch.int64"):
        op.A(torch.zeros(1, 1, 16, 16, dtype=torch.int64))


def test_tomography_bad_arguments():
    with pytest.raises(ValueError, match="number of angles must be positive, got angles=0"):
        Tomography(16, angles=0)
    with pytest.raises(ValueError, match="number of angles must be positive, got angles=-3"):
        Tomography(16, angles=-3)
    with pytest.raises(ValueError, match="empty sequence"):
        Tomography(16, angles=[])
    with pytest.raises(ValueError, match="non-finite"):
        Tomography(16, angles=[0.0, math.nan])
    with pytest.raises(ValueError, match=r"must be square, got image_size \[1, 16, 20\]"):
        Tomography((16, 20))
    with pytest.raises(ValueError, match="pixel_size must be a number > 0"):
        Tomography(16, pixel_size=0.0)


def test_inpainting_bad_masks():
    with pytest.raises(
        ValueError, match=r"mask of shape \[8, 8\] does not match the image: expected \[16, 16\]"
    ):
        Inpainting(16, mask=torch.ones(8, 8))
    with pytest.raises(ValueError, match="only 0 and 1"):
        Inpainting(4, mask=torch.full((4, 4), 0.5))
    with pytest.raises(ValueError, match=r"keep_rate must be in \[0, 1\], got 1.5"):
        Inpainting(16, keep_rate=1.5)
    with pytest.raises(ValueError, match="mask must be one of"):
        Inpainting(16, mask="stripes")
    with pytest.raises(ValueError, match="must lie inside the image"):
        Inpainting(16, mask="box", box=(10, 10, 8, 8))


def test_blur_bad_arguments():
    with pytest.raises(ValueError, match="boundary must be one of"):
        Blur(16, boundary="valid")
    with pytest.raises(ValueError, match="kernel must be 'gaussian', 'motion' or a 2-D array"):
        Blur(16, kernel="box")
    with pytest.raises(ValueError, match=r"kernel of shape \[9, 9\] is larger than the image \[8, 8\]"):
        Blur(8, kernel=torch.ones(9, 9))
    with pytest.raises(ValueError, match="non-finite"):
        Blur(8, kernel=[[1.0, math.inf]])
    with pytest.raises(ValueError, match="non-empty 2-D array"):
        Blur(8, kernel=[1.0, 2.0])
    with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
        Blur(8, sigma=0.0)
    with pytest.raises(ValueError, match="length must be a finite number >= 1"):
        Blur(8, kernel="motion", length=0.5)


def test_make_operator_and_image_size_errors():
    with pytest.raises(ValueError, match="unknown operator 'mri'; expected one of blur, tomography"):
        make_operator("mri", 16)
    with pytest.raises(TypeError, match=r"make_operator\('blur'\).*unexpected keyword argument 'angles'"):
        make_operator("blur", 16, angles=3)
    with pytest.raises(ValueError, match="cannot be rebuilt from its description"):
        make_operator("odl", 16)
    with pytest.raises(ValueError, match="image_size: expected a positive int"):
        normalize_image_size(0)
    with pytest.raises(ValueError, match="image_size: expected a positive int"):
        normalize_image_size((1, 2, 3, 4))
    with pytest.raises(TypeError, match="image_size: expected an int or a tuple"):
        normalize_image_size("abc")


def test_noise_bad_arguments():
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        GaussianNoise(-0.1)
    with pytest.raises(ValueError, match="sigma must be a finite number"):
        GaussianNoise(math.nan)
    with pytest.raises(ValueError, match="gain must be a finite number > 0"):
        PoissonNoise(0.0)
    with pytest.raises(TypeError, match="seed must be an int"):
        GaussianNoise(0.1, seed=1.5)
    with pytest.raises(TypeError, match="noise must be a NoiseModel, a float"):
        Blur(8, sigma=1.0).measure(torch.zeros(1, 1, 8, 8), noise="loud")


def test_from_odl_bad_arguments():
    import odl

    with pytest.raises(TypeError, match="expected an odl.Operator, got ndarray"):
        from_odl(np.eye(3))
    space = _odl_space(8)
    with pytest.raises(ValueError, match="must be linear"):
        from_odl(odl.PowerOperator(space, 2))
    with pytest.raises(ValueError, match=r"domain must be 2-D \(an image\), got shape \[5\]"):
        from_odl(odl.IdentityOperator(odl.rn(5)))


@pytest.mark.parametrize("name", [n for n in CASES if not n.startswith("odl")])
def test_operators_pickle_and_deepcopy(name):
    import copy
    import pickle

    op = CASES[name]()
    op.noise_model = GaussianNoise(0.1, seed=0)
    x = _random((2, *op.image_size), torch.float32)
    for clone in (pickle.loads(pickle.dumps(op)), copy.deepcopy(op)):
        torch.testing.assert_close(clone.A(x), op.A(x))
        assert clone.describe() == op.describe()
