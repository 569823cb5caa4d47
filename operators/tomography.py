"""2-D parallel-beam tomography (Radon transform) with an exact adjoint and FBP as pseudo-inverse.

Geometry (as :class:`deepinv.physics.Tomography`, whose sampling grids are reused): a square ``n x n``
image, zero-padded to ``G = ceil(sqrt(2) n)`` so that every line through the image is seen, is rotated
by each angle (bilinear interpolation, :func:`torch.nn.functional.grid_sample`) and summed along columns.
Sinograms have the layout ``[B, C, G, n_angles]`` (detectors x angles, the layout of
:func:`skimage.transform.radon`; ODL's is angles x detectors).

Rotation centre: deepinv's grids rotate about the centre of the padded square, ``(G - 1) / 2`` in pixel
units; scikit-image's ``radon`` rotates about pixel ``G // 2``. The two agree (sinograms identical up to
round-off) when ``G`` is odd, e.g. ``n = 64`` (``G = 91``), and differ by half a pixel when ``G`` is even,
e.g. ``n = 128`` (``G = 182``, correlation 0.989). ``A``, its adjoint and FBP share one grid, so
reconstructions are consistent either way.

Scaling (choice): the image covers ``[-1, 1]^2`` as in ODL's default geometry, so a line integral is the
pixel sum times the pixel size ``2 / n`` and sinogram values do not grow with the resolution (a unit disk
has a central projection of 2, its diameter).

The adjoint is the exact transpose of the discrete forward map: it is the backward pass of
``grid_sample`` with respect to its input, called directly (``aten.grid_sampler_2d_backward``) for any
batch size and dtype. (deepinv's default adjoint, an interpolating back-projection, is 4-9% off;
``adjoint_via_backprop=True`` is exact but fixes batch size and dtype when first called.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from deepinv.physics.functional.radon import Radon, RampFilter
from deepinv.physics.noise import NoiseModel
from torch import Tensor

from .base import LinearOperator

__all__ = ["Tomography"]


class _Project(torch.autograd.Function):
    """``x -> A x``; its backward is the exact adjoint (so gradients of any order are exact)."""

    @staticmethod
    def forward(ctx, x: Tensor, op: Tomography) -> Tensor:
        ctx.op = op
        return op._project(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return _Backproject.apply(grad, ctx.op), None


class _Backproject(torch.autograd.Function):
    """``y -> A^T y``; its backward is the forward projection."""

    @staticmethod
    def forward(ctx, y: Tensor, op: Tomography) -> Tensor:
        ctx.op = op
        return op._backproject(y)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return _Project.apply(grad, ctx.op), None


class Tomography(LinearOperator):
    """2-D parallel-beam X-ray transform ``A = pixel_size * R`` with exact adjoint; ``A_dagger`` is FBP.

    Parameters
    ----------
    image_size : int or tuple
        ``n``, ``(n, n)`` or ``(C, n, n)``; the image must be square.
    angles : int or sequence of float, default 30
        Number of angles spread uniformly over ``[0, 180)`` degrees, or the angles in degrees.
    pixel_size : float, optional
        Scale of the line integrals; default ``2 / n`` (the image covers ``[-1, 1]^2``).
    noise_model : deepinv.physics.NoiseModel, optional
        Noise added by ``op(x)``.

    Notes
    -----
    ``A_dagger`` is filtered back-projection with the Ram-Lak (ramp) filter (deepinv's ``RampFilter``),
    ``x = pi / (2 n_angles) * R^T ramp(y / pixel_size)``: an approximate inverse, not the Moore-Penrose
    pseudo-inverse, and the classical baseline (Kak & Slaney 1988, ch. 3).

    Examples
    --------
    >>> op = Tomography(32, angles=10)
    >>> y = op.A(torch.rand(2, 1, 32, 32))
    >>> tuple(y.shape)  # [B, C, detectors, angles]
    (2, 1, 46, 10)
    >>> op.A_dagger(y).shape
    torch.Size([2, 1, 32, 32])

    References
    ----------
    Kak & Slaney, *Principles of Computerized Tomographic Imaging*, IEEE Press 1988.
    Built on deepinv's Radon sampling grids (Tachella et al., DeepInverse, JOSS 2025).
    """

    name = "tomography"

    def __init__(
        self,
        image_size: int | tuple[int, ...],
        angles: int | Sequence[float] = 30,
        *,
        pixel_size: float | None = None,
        noise_model: NoiseModel | None = None,
    ) -> None:
        super().__init__(image_size, noise_model=noise_model)
        _, height, width = self.image_size
        if height != width:
            raise ValueError(f"Tomography: the image must be square, got image_size {list(self.image_size)}")
        if isinstance(angles, bool):
            raise TypeError(
                f"Tomography: angles must be a positive int or a sequence of degrees, got {angles!r}"
            )
        if isinstance(angles, int):
            if angles <= 0:
                raise ValueError(f"Tomography: the number of angles must be positive, got angles={angles}")
            degrees = torch.linspace(0.0, 180.0, angles + 1, dtype=torch.float64)[:-1]
            self._angles_arg: int | list[float] = angles
        else:
            try:
                degrees = torch.as_tensor([float(a) for a in angles], dtype=torch.float64)
            except (TypeError, ValueError):
                raise TypeError(
                    f"Tomography: angles must be a positive int or a sequence of degrees, got {angles!r}"
                ) from None
            if degrees.numel() == 0:
                raise ValueError("Tomography: the number of angles must be positive, got an empty sequence")
            if not bool(torch.isfinite(degrees).all()):
                raise ValueError("Tomography: angles contain non-finite values")
            self._angles_arg = degrees.tolist()
        if pixel_size is None:
            pixel_size = 2.0 / width
        if isinstance(pixel_size, bool) or not isinstance(pixel_size, (int, float)) or not pixel_size > 0:
            raise ValueError(f"Tomography: pixel_size must be a number > 0, got {pixel_size!r}")
        if not math.isfinite(pixel_size):
            raise ValueError(f"Tomography: pixel_size must be finite, got {pixel_size!r}")
        self.pixel_size = float(pixel_size)
        self._default_pixel_size = math.isclose(self.pixel_size, 2.0 / width)
        self.n_angles = int(degrees.numel())
        # deepinv builds one rotated sampling grid per angle, concatenated along the width: [1, G, G*A, 2].
        grids = Radon(width, degrees, circle=False, parallel_computation=True, dtype=torch.float64).all_grids
        self.detector_count = int(grids.shape[1])
        pad = self.detector_count - width
        before = self.detector_count // 2 - width // 2  # same centring as deepinv's Radon.forward
        self._pad = (before, pad - before, before, pad - before)
        self._crop = slice(before, before + width)
        dtype = torch.get_default_dtype()
        self.register_buffer("angles", degrees.to(dtype))
        # Derived from the geometry (rebuilt by the constructor), so kept out of state_dict: 8 MB at 128x128.
        self.register_buffer("grid", grids.to(dtype).contiguous(), persistent=False)
        self._ramp = RampFilter(dtype=torch.float64)

    # ------------------------------------------------------------------------------------------
    @property
    def measurement_size(self) -> tuple[int, ...]:
        return (self.image_size[0], self.detector_count, self.n_angles)

    def _config(self) -> dict[str, Any]:
        params: dict[str, Any] = {"angles": self._angles_arg}
        params["pixel_size"] = None if self._default_pixel_size else self.pixel_size
        return params

    def _grid_for(self, t: Tensor) -> Tensor:
        grid = self.grid
        return grid if grid.dtype == t.dtype and grid.device == t.device else grid.to(t)

    def _project(self, x: Tensor) -> Tensor:
        batch, channels = x.shape[:2]
        grid = self._grid_for(x).expand(batch, -1, -1, -1)
        rotated = F.grid_sample(
            F.pad(x, self._pad), grid, mode="bilinear", padding_mode="zeros", align_corners=True
        )
        sums = rotated.sum(2).reshape(batch, channels, self.n_angles, self.detector_count)
        return sums.transpose(-2, -1) * self.pixel_size

    def _backproject(self, y: Tensor) -> Tensor:
        batch, channels = y.shape[:2]
        size = self.detector_count
        # Adjoint of "sum over rows, reshape, transpose, scale": spread each sinogram value along its ray.
        spread = (y * self.pixel_size).transpose(-2, -1).reshape(batch, channels, 1, self.n_angles * size)
        spread = spread.expand(batch, channels, size, self.n_angles * size)
        shape_only = y.new_zeros(()).expand(batch, channels, size, size)  # the input's values are not read
        grid = self._grid_for(y).expand(batch, -1, -1, -1)
        # interpolation 0 = bilinear, padding 0 = zeros, align_corners=True; only the input gradient.
        padded, _ = torch.ops.aten.grid_sampler_2d_backward(
            spread, shape_only, grid, 0, 0, True, [True, False]
        )
        return padded[..., self._crop, self._crop]

    def A(self, x: Tensor, **kwargs: Any) -> Tensor:
        """Forward projection ``[B, C, n, n] -> [B, C, detectors, angles]``."""
        self._check_image(x)
        return _Project.apply(x, self)

    def A_adjoint(self, y: Tensor, **kwargs: Any) -> Tensor:
        """Exact adjoint (unfiltered back-projection) ``[B, C, detectors, angles] -> [B, C, n, n]``."""
        self._check_measurement(y)
        return _Backproject.apply(y, self)

    def A_dagger(self, y: Tensor, **kwargs: Any) -> Tensor:
        """Filtered back-projection (Ram-Lak filter): ``pi / (2 n_angles) * A^T ramp(y) / pixel_size^2``."""
        self._check_measurement(y)
        filtered = self._ramp(y, dim=-2)
        return self.A_adjoint(filtered) * (math.pi / (2 * self.n_angles) / self.pixel_size**2)

    fbp = A_dagger
