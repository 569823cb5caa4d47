"""2-D tomography on ASTRA's CPU projectors (parallel and fan beam), and the tomography backend factory.

:class:`AstraTomography` is the ray transform of astra-toolbox (``astra_cpu``, reached through ODL's
``RayTransform``, :func:`~liftinv.operators.odl_ray_transform`, and the batched, differentiable ODL bridge
:mod:`liftinv.operators.odl_bridge`); no projector is re-implemented here. deepinv's
``TomographyWithAstra`` is not used: it runs on CUDA tensors only (it asserts "Data must be on a CUDA
device" on the CPU), and its back-projector is only approximately the adjoint of its projector.

Geometry (ODL's defaults for the square ``[-1, 1]^2``, the same image domain and line-integral scaling as
the torch backend :class:`~liftinv.operators.Tomography`, so sinogram values and regularisation weights are
comparable):

- ``"parallel"``: ``angles`` angles at the midpoints of ``[0, pi)``, ``(i + 1/2) pi / angles``, and a
  detector sampled by ODL's Nyquist rule (``93`` cells at ``n = 64``);
- ``"fan"``: a flat detector, source and detector at distance 2 from the rotation centre (the image's
  circumscribed circle has radius ``sqrt(2)``), ``angles`` angles at the midpoints of ``[0, 2 pi)``.

Sinograms use the torch backend's layout ``[B, C, detectors, angles]`` (ODL's own is angles x detectors).
ASTRA's CPU line projectors (``"linear"`` for parallel, ``"line_fanflat"`` for fan beam) compute the same
weights forwards and backwards, so ``A_adjoint`` is the transpose of ``A`` up to float32 round-off.
ASTRA computes in float32; inputs of any float dtype and device are cast and results come back in the
input's dtype and device.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from typing import Any

from deepinv.physics.noise import NoiseModel
from torch import Tensor

from .base import LinearOperator, normalize_image_size
from .odl_bridge import _OdlApply, _OdlMap, odl_ray_transform
from .tomography import Tomography

__all__ = [
    "ASTRA_AVAILABLE",
    "AstraNotInstalledError",
    "AstraTomography",
    "make_tomography",
    "TOMOGRAPHY_BACKENDS",
    "GEOMETRIES",
    "PROJECTORS",
]

#: whether astra-toolbox is importable (read when an ASTRA operator is built, so tests can patch it)
ASTRA_AVAILABLE: bool = importlib.util.find_spec("astra") is not None
#: the tomography backends of :func:`make_tomography`
TOMOGRAPHY_BACKENDS = ("torch", "astra")
#: the beam geometries of :func:`make_tomography`
GEOMETRIES = ("parallel", "fan")
#: projectors of the astra backend: ASTRA's CPU line projectors, or its CUDA ones
PROJECTORS = ("cpu", "cuda")
#: how to install the ASTRA backend
ASTRA_INSTALL = 'pip install "liftinv[astra]"'


class AstraNotInstalledError(ImportError, RuntimeError):
    """astra-toolbox is not installed: an ``ImportError`` that the CLI reports as one line (a user error)."""


def _require_astra(what: str) -> None:
    """Raise :class:`AstraNotInstalledError` naming the extra when astra-toolbox is not installed."""
    if not ASTRA_AVAILABLE:
        raise AstraNotInstalledError(f"{what} needs astra-toolbox, which is not installed: {ASTRA_INSTALL}")


class AstraTomography(LinearOperator):
    """2-D X-ray transform on ASTRA's CPU projectors, parallel or fan beam; ``A_dagger`` is FBP.

    ``A x`` holds the line integrals of the image ``x`` (on ``[-1, 1]^2``) along the rays of the geometry;
    ``A_adjoint`` is its Euclidean transpose (``sum(A(x) * y) = sum(x * A_adjoint(y))``, float32
    round-off); ``A_dagger`` is ODL's filtered back-projection (Ram-Lak filter), an approximate inverse.

    Parameters
    ----------
    image_size : int or tuple
        ``n``, ``(n, n)`` or ``(C, n, n)``; the image must be square.
    angles : int, default 30
        Number of angles (midpoints of ``[0, pi)`` for parallel beam, of ``[0, 2 pi)`` for fan beam).
    geometry : {"parallel", "fan"}, default "parallel"
        Beam geometry (see the module notes).
    noise_model : deepinv.physics.NoiseModel, optional
        Noise added by ``op(x)``.

    Raises
    ------
    AstraNotInstalledError
        An ``ImportError``, without astra-toolbox (``pip install "liftinv[astra]"``).
    ValueError
        For a non-square image, a bad number of angles or an unknown geometry.

    Examples
    --------
    Needs astra-toolbox, so the examples are not run by the doctests (tests/test_astra.py runs them):

    >>> import torch
    >>> op = AstraTomography(32, angles=10, geometry="fan")  # doctest: +SKIP
    >>> tuple(op.A(torch.rand(2, 1, 32, 32)).shape)  # doctest: +SKIP
    (2, 1, 75, 10)

    References
    ----------
    van Aarle et al., Fast and flexible X-ray tomography using the ASTRA toolbox, Optics Express 2016.
    Adler, Kohr & Öktem, ODL: Operator Discretization Library, 2017.
    """

    name = "tomography"

    def __init__(
        self,
        image_size: int | tuple[int, ...],
        angles: int = 30,
        *,
        geometry: str = "parallel",
        projector: str = "cpu",
        noise_model: NoiseModel | None = None,
    ) -> None:
        _require_astra("the astra tomography backend")
        if projector not in PROJECTORS:
            raise ValueError(
                f"AstraTomography: projector must be one of {', '.join(PROJECTORS)}, got {projector!r}"
            )
        if projector == "cuda":
            import astra

            if not astra.use_cuda():
                raise ValueError(
                    "AstraTomography: projector='cuda' needs ASTRA's CUDA projectors and a CUDA device, and "
                    "astra.use_cuda() is False here; use projector='cpu'"
                )
        super().__init__(image_size, noise_model=noise_model)
        _, height, width = self.image_size
        if height != width:
            raise ValueError(
                f"AstraTomography: the image must be square, got image_size {list(self.image_size)}"
            )
        if isinstance(angles, bool) or not isinstance(angles, int):
            raise TypeError(
                f"AstraTomography: angles must be a positive int (a number of angles), got {angles!r}"
            )
        if angles <= 0:
            raise ValueError(f"AstraTomography: the number of angles must be positive, got angles={angles}")
        if geometry not in GEOMETRIES:
            raise ValueError(
                f"AstraTomography: geometry must be one of {', '.join(GEOMETRIES)}, got {geometry!r}"
            )
        from odl.applications import tomo

        self.geometry, self.projector = geometry, projector
        self.n_angles = angles
        ray_transform = odl_ray_transform(width, angles, geometry=geometry, impl=f"astra_{projector}")
        self.ray_transform = ray_transform
        self._map = _OdlMap(ray_transform)
        self._fbp = _OdlMap(tomo.fbp_op(ray_transform), need_adjoint=False)
        self.detector_count = int(self._map.out_shape[1])
        #: angles of the geometry in degrees
        self.angle_degrees = [math.degrees(float(a)) for a in ray_transform.geometry.angles]

    @property
    def measurement_size(self) -> tuple[int, ...]:
        return (self.image_size[0], self.detector_count, self.n_angles)

    def _config(self) -> dict[str, Any]:
        config = {"angles": self.n_angles, "backend": "astra", "geometry": self.geometry}
        if self.projector != "cpu":  # (the CPU projectors: descriptions written before this option)
            config["projector"] = self.projector
        return config

    def A(self, x: Tensor, **kwargs: Any) -> Tensor:
        """Forward projection ``[B, C, n, n] -> [B, C, detectors, angles]`` (differentiable)."""
        self._check_image(x)
        return _OdlApply.apply(x, self._map, False).transpose(-2, -1)

    def A_adjoint(self, y: Tensor, **kwargs: Any) -> Tensor:
        """Transpose (unfiltered back-projection) ``[B, C, detectors, angles] -> [B, C, n, n]``."""
        self._check_measurement(y)
        return _OdlApply.apply(y.transpose(-2, -1), self._map, True)

    def A_dagger(self, y: Tensor, **kwargs: Any) -> Tensor:
        """Filtered back-projection (ODL's ``fbp_op``, Ram-Lak filter) ``[B, C, detectors, angles] -> image``."""
        self._check_measurement(y)
        return _OdlApply.apply(y.transpose(-2, -1), self._fbp, False)

    fbp = A_dagger


def make_tomography(
    image_size: int | tuple[int, ...],
    angles: int | Sequence[float] = 30,
    *,
    pixel_size: float | None = None,
    backend: str = "torch",
    geometry: str = "parallel",
    projector: str = "cpu",
    noise_model: NoiseModel | None = None,
) -> LinearOperator:
    """Build a 2-D tomography operator on the chosen backend (``make_operator("tomography", ...)``).

    Parameters
    ----------
    image_size : int or tuple
        ``n``, ``(n, n)`` or ``(C, n, n)``; square images.
    angles : int or sequence of float, default 30
        Number of angles; the torch backend also takes the angles in degrees.
    pixel_size : float, optional
        Torch backend only: scale of the line integrals (default ``2 / n``, which is the astra backend's).
    backend : {"torch", "astra"}, default "torch"
        ``"torch"``: :class:`~liftinv.operators.Tomography` (parallel beam, bilinear-interpolation
        projector, runs on any torch device); ``"astra"``: :class:`AstraTomography` (ASTRA's CPU line
        projectors, parallel or fan beam, needs ``pip install "liftinv[astra]"``).
    geometry : {"parallel", "fan"}, default "parallel"
        Beam geometry; fan beam needs the astra backend.
    projector : {"cpu", "cuda"}, default "cpu"
        Astra backend: ASTRA's CPU projectors (``astra_cpu``) or its GPU ones (``astra_cuda``, through ODL;
        needs ``astra.use_cuda()``, i.e. astra-toolbox's CUDA build and a CUDA device). The GPU projectors
        are ray-driven, so their back-projection is only approximately the adjoint of the projection.
    noise_model : deepinv.physics.NoiseModel, optional
        Noise added by ``op(x)``.

    Returns
    -------
    LinearOperator
        Sinograms ``[B, C, detectors, angles]``; ``describe()`` rebuilds it (the torch backend's description
        names no backend).

    Raises
    ------
    ValueError
        For an unknown backend or geometry, fan beam on the torch backend, or ``pixel_size`` with astra.
    AstraNotInstalledError
        An ``ImportError``, for the astra backend without astra-toolbox (``pip install "liftinv[astra]"``).

    Examples
    --------
    >>> make_tomography(32, 10).describe()
    {'name': 'tomography', 'image_size': [1, 32, 32], 'angles': 10, 'pixel_size': None}
    >>> make_tomography(32, 10, geometry="fan")
    Traceback (most recent call last):
    ...
    ValueError: tomography: geometry='fan' needs backend='astra' (the torch backend is parallel beam only)
    """
    size = normalize_image_size(image_size)
    if backend not in TOMOGRAPHY_BACKENDS:
        raise ValueError(
            f"tomography: backend must be one of {', '.join(TOMOGRAPHY_BACKENDS)}, got {backend!r}"
        )
    if geometry not in GEOMETRIES:
        raise ValueError(f"tomography: geometry must be one of {', '.join(GEOMETRIES)}, got {geometry!r}")
    if backend == "torch":
        if projector != "cpu":
            raise ValueError(
                "tomography: projector is an astra-backend parameter (the torch backend runs on the device of "
                "its input)"
            )
        if geometry != "parallel":
            raise ValueError(
                f"tomography: geometry={geometry!r} needs backend='astra' (the torch backend is parallel beam "
                "only)"
            )
        return Tomography(size, angles, pixel_size=pixel_size, noise_model=noise_model)
    _require_astra("tomography: backend='astra'")
    if pixel_size is not None:
        raise ValueError(
            "tomography: pixel_size is a torch-backend parameter; the astra backend's image covers [-1, 1]^2 "
            "(pixel size 2 / n)"
        )
    return AstraTomography(size, angles, geometry=geometry, projector=projector, noise_model=noise_model)
