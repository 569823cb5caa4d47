"""Blur (convolution) operators: Gaussian, linear motion or user kernels; circular or padded boundaries.

``A x = k * x`` (a true convolution, kernel centred at index ``(h // 2, w // 2)``), applied to every channel.
The output always has the size of the input: unlike :class:`deepinv.physics.Blur`, there is no
``padding="valid"`` default that shrinks the image.

* ``boundary="circular"``: periodic boundary, computed with FFTs (the fast path). The operator is diagonal
  in the Fourier basis, so ``A_dagger`` (truncated inverse filter), ``prox_l2`` and ``norm`` are closed forms.
* ``boundary="reflect" | "replicate" | "zeros"``: the image is padded before a direct convolution
  (deepinv's :func:`deepinv.physics.functional.conv2d`); the adjoint folds the padding back
  (:func:`deepinv.physics.functional.conv_transpose2d`), so it is exact.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from deepinv.physics import functional as dF
from deepinv.physics.noise import NoiseModel
from torch import Tensor

from .base import LinearOperator

__all__ = ["Blur", "gaussian_kernel", "motion_kernel", "BOUNDARIES"]

#: boundary conditions accepted by :class:`Blur`
BOUNDARIES = ("circular", "reflect", "replicate", "zeros")


def gaussian_kernel(sigma: float, size: int | None = None) -> Tensor:
    """Isotropic Gaussian kernel ``k(i, j) ~ exp(-(i^2 + j^2) / (2 sigma^2))``, normalised to sum 1.

    Parameters
    ----------
    sigma : float
        Standard deviation in pixels, ``> 0``.
    size : int, optional
        Odd side length; default ``2 * int(sigma / 0.3 + 1) + 1`` (deepinv's rule, about ``7 sigma``).

    Returns
    -------
    Tensor
        float64 kernel of shape ``[size, size]``.

    Examples
    --------
    >>> k = gaussian_kernel(2.0)
    >>> tuple(k.shape), round(float(k.sum()), 12)
    ((15, 15), 1.0)
    """
    if (
        isinstance(sigma, bool)
        or not isinstance(sigma, (int, float))
        or not math.isfinite(sigma)
        or sigma <= 0
    ):
        raise ValueError(f"gaussian_kernel: sigma must be a finite number > 0, got {sigma!r}")
    psf_size = None if size is None else (int(size), int(size))
    kernel = dF.gaussian_blur(psf_size=psf_size, sigma=(float(sigma), float(sigma)), dtype=torch.float64)[
        0, 0
    ]
    return kernel / kernel.sum()


def motion_kernel(length: float, angle: float = 0.0, size: int | None = None) -> Tensor:
    """Linear motion-blur kernel: a segment of ``length`` pixels at ``angle`` degrees, normalised to sum 1.

    The segment is centred on the kernel centre and rasterised by bilinear splatting of many points
    along it (anti-aliased). ``angle`` is counter-clockwise from the horizontal (image x) axis.

    Parameters
    ----------
    length : float
        Length of the motion in pixels, ``>= 1``.
    angle : float, default 0.0
        Direction in degrees.
    size : int, optional
        Odd side length, default the smallest odd integer ``>= length + 2``.

    Returns
    -------
    Tensor
        float64 kernel of shape ``[size, size]``.

    Examples
    --------
    >>> k = motion_kernel(5, angle=0.0)
    >>> tuple(k.shape), k.sum(dim=1).argmax().item(), round(float(k.sum()), 12)
    ((7, 7), 3, 1.0)
    """
    if (
        isinstance(length, bool)
        or not isinstance(length, (int, float))
        or not math.isfinite(length)
        or length < 1
    ):
        raise ValueError(f"motion_kernel: length must be a finite number >= 1 (pixels), got {length!r}")
    if not isinstance(angle, (int, float)) or not math.isfinite(angle):
        raise ValueError(f"motion_kernel: angle must be a finite number (degrees), got {angle!r}")
    if size is None:
        size = int(math.ceil(length)) + 2
        size += 1 - size % 2
    if size % 2 == 0 or size < 1:
        raise ValueError(f"motion_kernel: size must be a positive odd integer, got {size!r}")
    centre = size // 2
    theta = math.radians(angle)
    t = np.linspace(-(length - 1) / 2, (length - 1) / 2, max(2, int(16 * length)))
    cols = centre + t * math.cos(theta)
    rows = centre - t * math.sin(theta)  # image rows grow downwards
    kernel = np.zeros((size, size))
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    fr, fc = rows - r0, cols - c0
    for dr, dc, w in (
        (0, 0, (1 - fr) * (1 - fc)),
        (1, 0, fr * (1 - fc)),
        (0, 1, (1 - fr) * fc),
        (1, 1, fr * fc),
    ):
        rr, cc = r0 + dr, c0 + dc
        inside = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size)
        np.add.at(kernel, (rr[inside], cc[inside]), w[inside])
    return torch.from_numpy(kernel / kernel.sum())


class Blur(LinearOperator):
    """Convolution with a blur kernel, ``A x = k * x``, same-size output.

    Parameters
    ----------
    image_size : int or tuple
        ``n``, ``(H, W)`` or ``(C, H, W)``.
    kernel : {"gaussian", "motion"} or array-like, default "gaussian"
        Kernel family, or a user kernel (2-D tensor/array/nested list; used as given, not normalised).
    sigma : float, default 2.0
        Gaussian standard deviation in pixels (``kernel="gaussian"``). The kernel is cropped to the image
        size (odd side) and renormalised if it is larger.
    length : float, default 9.0
        Motion length in pixels (``kernel="motion"``).
    angle : float, default 0.0
        Motion direction in degrees (``kernel="motion"``).
    boundary : {"circular", "reflect", "replicate", "zeros"}, default "circular"
        Boundary condition; "circular" uses FFTs.
    rcond : float, default 1e-3
        ``A_dagger`` for circular boundaries is the truncated inverse filter: frequencies where
        ``|K(f)| <= rcond * max|K|`` are set to 0 (an exact pseudo-inverse needs ``rcond -> 0``, which
        amplifies noise by up to ``1 / rcond``).
    noise_model : deepinv.physics.NoiseModel, optional
        Noise added by ``op(x)``.

    Examples
    --------
    >>> op = Blur(32, kernel="gaussian", sigma=1.0)
    >>> x = torch.rand(2, 1, 32, 32)
    >>> op.A(x).shape
    torch.Size([2, 1, 32, 32])
    >>> round(op.norm(), 6)  # a normalised kernel has unit gain at frequency 0
    1.0

    References
    ----------
    Hansen, Nagy & O'Leary, *Deblurring Images: Matrices, Spectra, and Filtering*, SIAM 2006.
    Built on deepinv (Tachella et al., DeepInverse, JOSS 2025): ``functional.conv2d`` and ``filter_fft``.
    """

    name = "blur"

    def __init__(
        self,
        image_size: int | tuple[int, ...],
        kernel: str | Tensor | np.ndarray | list = "gaussian",
        *,
        sigma: float = 2.0,
        length: float = 9.0,
        angle: float = 0.0,
        boundary: str = "circular",
        rcond: float = 1e-3,
        noise_model: NoiseModel | None = None,
    ) -> None:
        super().__init__(image_size, noise_model=noise_model)
        _, height, width = self.image_size
        if not isinstance(boundary, str) or boundary not in BOUNDARIES:
            raise ValueError(f"Blur: boundary must be one of {BOUNDARIES}, got {boundary!r}")
        if not isinstance(rcond, (int, float)) or not math.isfinite(rcond) or not 0 <= rcond < 1:
            raise ValueError(f"Blur: rcond must be a number in [0, 1), got {rcond!r}")
        self.boundary = boundary
        self.rcond = float(rcond)
        self._params: dict[str, Any]
        if isinstance(kernel, str):
            if kernel == "gaussian":
                side = gaussian_kernel(sigma).shape[0]
                limit = min(height, width) - (1 - min(height, width) % 2)  # largest odd size that fits
                weights = gaussian_kernel(sigma, size=min(side, limit))
                self._params = {"kernel": "gaussian", "sigma": float(sigma)}
            elif kernel == "motion":
                weights = motion_kernel(length, angle)
                self._params = {"kernel": "motion", "length": float(length), "angle": float(angle)}
            else:
                raise ValueError(f"Blur: kernel must be 'gaussian', 'motion' or a 2-D array, got {kernel!r}")
        else:
            weights = torch.as_tensor(
                np.asarray(kernel, dtype=np.float64) if not isinstance(kernel, Tensor) else kernel
            )
            weights = weights.detach().to("cpu", torch.float64)
            if weights.dim() != 2 or weights.numel() == 0:
                raise ValueError(
                    f"Blur: a user kernel must be a non-empty 2-D array, got shape {list(weights.shape)}"
                )
            if not bool(torch.isfinite(weights).all()):
                raise ValueError("Blur: the user kernel contains non-finite values (nan or inf)")
            self._params = {"kernel": weights.tolist()}
        kh, kw = weights.shape
        if kh > height or kw > width:
            raise ValueError(
                f"Blur: kernel of shape [{kh}, {kw}] is larger than the image [{height}, {width}]; "
                "use a smaller kernel (or sigma/length) or a larger image"
            )
        if boundary == "reflect" and (kh // 2 >= height or kw // 2 >= width):
            raise ValueError(
                "Blur: boundary='reflect' needs half the kernel size to be smaller than the image"
            )
        dtype = torch.get_default_dtype()
        self.register_buffer("kernel", weights[None, None].to(dtype))
        # Transfer function (half spectrum) as a real view [1, 1, H, W//2+1, 2], so that .to(dtype)
        # converts it correctly (Module.to would drop the imaginary part of a complex buffer).
        transfer = dF.filter_fft(weights[None, None], (1, height, width), real_fft=True, dims=(-2, -1))
        self.register_buffer(
            "transfer", torch.view_as_real(transfer).to(dtype).contiguous(), persistent=False
        )

    # ------------------------------------------------------------------------------------------
    @property
    def measurement_size(self) -> tuple[int, ...]:
        return self.image_size

    def _config(self) -> dict[str, Any]:
        return {**self._params, "boundary": self.boundary, "rcond": self.rcond}

    def _kernel_for(self, x: Tensor) -> Tensor:
        k = self.kernel
        return k if k.dtype == x.dtype else k.to(x.dtype)

    def _spectrum(self) -> Tensor:
        return torch.view_as_complex(self.transfer)

    def A(self, x: Tensor, **kwargs: Any) -> Tensor:
        """Blur: ``k * x`` with the chosen boundary, ``[B, C, H, W] -> [B, C, H, W]``."""
        self._check_image(x)
        if self.boundary == "circular":
            return torch.fft.irfft2(torch.fft.rfft2(x) * self._spectrum(), s=x.shape[-2:])
        return dF.conv2d(x, self._kernel_for(x), padding=self.boundary)

    def A_adjoint(self, y: Tensor, **kwargs: Any) -> Tensor:
        """Adjoint: correlation with ``k`` (conjugate transfer function / transposed padded convolution)."""
        self._check_image(y, "y")
        if self.boundary == "circular":
            return torch.fft.irfft2(torch.fft.rfft2(y) * self._spectrum().conj(), s=y.shape[-2:])
        return dF.conv_transpose2d(y, self._kernel_for(y), padding=self.boundary)

    def A_adjoint_A(self, x: Tensor, **kwargs: Any) -> Tensor:
        """``A^T A x``; one FFT pair with ``|K|^2`` for circular boundaries."""
        if self.boundary != "circular":
            return self.A_adjoint(self.A(x))
        self._check_image(x)
        power = self._spectrum().abs().square()
        return torch.fft.irfft2(torch.fft.rfft2(x) * power, s=x.shape[-2:])

    def A_dagger(self, y: Tensor, **kwargs: Any) -> Tensor:
        """Pseudo-inverse: truncated inverse filter (circular) or minimum-norm least squares by CG (padded).

        For circular boundaries ``A^+ y = F^{-1}[ conj(K) / |K|^2 * F y ]`` on frequencies with
        ``|K| > rcond * max|K|`` and 0 elsewhere.
        """
        if self.boundary != "circular":
            return super().A_dagger(y, **kwargs)
        self._check_image(y, "y")
        spectrum = self._spectrum()
        magnitude = spectrum.abs()
        keep = magnitude > self.rcond * magnitude.max()
        inverse = torch.where(
            keep, spectrum.conj() / magnitude.square().clamp_min(torch.finfo(magnitude.dtype).tiny), 0
        )
        return torch.fft.irfft2(torch.fft.rfft2(y) * inverse, s=y.shape[-2:])

    def prox_l2(self, z: Tensor, y: Tensor, gamma: float | Tensor, **kwargs: Any) -> Tensor:
        """``argmin_x gamma/2 ||k * x - y||^2 + 1/2 ||x - z||^2`` (closed form in Fourier for circular)."""
        if self.boundary != "circular":
            return super().prox_l2(z, y, gamma, **kwargs)
        spectrum = self._spectrum()
        if isinstance(gamma, Tensor) and gamma.dim() > 0:
            gamma = gamma.reshape(-1, *([1] * (z.dim() - 1)))
        numerator = gamma * spectrum.conj() * torch.fft.rfft2(y) + torch.fft.rfft2(z)
        return torch.fft.irfft2(numerator / (gamma * spectrum.abs().square() + 1), s=z.shape[-2:])

    def _compute_norm(self, *, max_iter: int, tol: float) -> float:
        if self.boundary == "circular":
            return float(self._spectrum().abs().max())
        return super()._compute_norm(max_iter=max_iter, tol=tol)
