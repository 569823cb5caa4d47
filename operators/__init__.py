"""Forward operators and classical reconstruction (imported as ``liftinv.operators``).

Operators (all :class:`LinearOperator`, a :class:`deepinv.physics.LinearPhysics`; images ``[B, C, H, W]``):

* :class:`Blur` -- Gaussian, motion or user kernel; circular (FFT) or padded boundaries, same-size output;
* :class:`Tomography` -- 2-D parallel beam, exact adjoint, FBP as ``A_dagger``;
* :class:`Inpainting` -- random pixels, random blocks, a box or a user mask;
* :class:`Denoising` -- the identity;
* :class:`DiagonalOperator` -- base of the pixel-wise operators (inpainting, denoising): ``A = diag(m)``,
  noise kept off unmeasured pixels (deepinv's ``DecomposablePhysics`` with ``U = V = I``);
* :func:`from_odl` -- any linear ODL operator (e.g. :func:`odl_ray_transform`, fan beam with astra).

Build them by name with :func:`make_operator` (registry :data:`OPERATORS`); ``op.measure(x, noise,
seed=...)`` simulates noisy measurements with the seeded noise models :class:`GaussianNoise` and
:class:`PoissonNoise`. :func:`reconstruct` runs "pinv", "tikhonov" or "tv"; :func:`grad2d`/:func:`div2d`
are the TV gradient/divergence pair (``div = -grad^T``) and :func:`tv_pdhg_step` the one primal-dual TV step
(classical TV and :func:`liftinv.invert`).
"""

from .base import DiagonalOperator, LinearOperator, normalize_image_size
from .blur import BOUNDARIES, Blur, gaussian_kernel, motion_kernel
from .classical import METHODS, ReconstructionResult, default_alpha, estimate_noise_level, reconstruct
from .denoising import Denoising
from .inpainting import MASKS, Inpainting, block_mask, box_mask, random_mask
from .linalg import batch_dot, conjugate_gradient, power_method
from .noise import GaussianNoise, PoissonNoise
from .odl_bridge import OdlOperator, from_odl, odl_ray_transform
from .registry import ALIASES, OPERATORS, make_operator
from .tomography import Tomography
from .tv import (
    GRAD2D_NORM_BOUND,
    div2d,
    grad2d,
    gradient_magnitude,
    project_l2_ball,
    total_variation,
    tv_pdhg_step,
)

__all__ = [
    # operators
    "LinearOperator",
    "DiagonalOperator",
    "Blur",
    "Tomography",
    "Inpainting",
    "Denoising",
    "OdlOperator",
    "from_odl",
    "odl_ray_transform",
    "OPERATORS",
    "ALIASES",
    "make_operator",
    "normalize_image_size",
    # kernels and masks
    "BOUNDARIES",
    "gaussian_kernel",
    "motion_kernel",
    "MASKS",
    "random_mask",
    "block_mask",
    "box_mask",
    # noise
    "GaussianNoise",
    "PoissonNoise",
    # reconstruction
    "METHODS",
    "ReconstructionResult",
    "reconstruct",
    "default_alpha",
    "estimate_noise_level",
    # TV building blocks
    "grad2d",
    "div2d",
    "gradient_magnitude",
    "total_variation",
    "project_l2_ball",
    "tv_pdhg_step",
    "GRAD2D_NORM_BOUND",
    # linear algebra
    "batch_dot",
    "power_method",
    "conjugate_gradient",
]
