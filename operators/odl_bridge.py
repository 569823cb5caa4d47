"""Wrap linear ODL operators as batched, differentiable torch operators.

:func:`from_odl` turns any linear :class:`odl.Operator` whose domain is a 2-D space into a
:class:`~liftinv.operators.LinearOperator`: ``A`` and ``A_adjoint`` loop over the batch and channels,
call ODL on NumPy arrays, and are custom :class:`torch.autograd.Function` s whose backward is the other
one, so gradients of any order flow through them (ODL's own ``odl.contrib.torch.OperatorModule`` does the
same for ``A`` only).

Adjoint convention: ODL's ``op.adjoint`` is the adjoint for the *weighted* inner products of its spaces
(e.g. ``uniform_discr`` weights sums by the cell volume). liftinv's adjoint is Euclidean
(``sum(A(x) * y) = sum(x * A_adjoint(y))``), so the wrapper rescales ODL's adjoint by
``w_domain / w_range`` (constant weightings only; measured once, numerically).

ODL is imported lazily (``import odl`` sets ``SCIPY_ARRAY_API=1`` for the whole process). Note ODL 1.0's
tomography lives in ``odl.applications.tomo``; its scikit-image backend (parallel 2-D only) has an
adjoint about 5% off, astra (``pip install "liftinv[astra]"``) has an exact one and fan beams.

Dtypes: ODL computes in its spaces' dtype; :func:`odl_ray_transform` builds float32 spaces for astra (ASTRA's
CPU projectors link only float32 buffers: astra-toolbox 2.5 refuses float64 with "Failed to link dlpack
array: Data must be float32"), float64 ones otherwise. The wrapper casts its input to the domain's dtype and
its result back to the input's dtype and device, so ``A`` and ``A_adjoint`` accept any float tensor.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from deepinv.physics.noise import NoiseModel
from torch import Tensor

from .base import LinearOperator

__all__ = ["OdlOperator", "from_odl", "odl_ray_transform"]


def _import_odl():
    try:
        import odl
    except ImportError as exc:  # pragma: no cover - odl is a dependency
        raise ImportError("from_odl needs ODL: pip install odl") from exc
    return odl


def _to_numpy(element: Any) -> np.ndarray:
    # ODL 1.0 forbids np.asarray(element); product-space and tensor elements both offer asarray().
    return np.asarray(element.asarray())


def _space_weight(space: Any, name: str) -> float:
    """Constant ``w`` with ``space.inner(a, b) = w * sum(a * b)``; raise if the weighting is not constant."""
    rng = np.random.default_rng(0)
    shape = _space_shape(space)
    first = rng.standard_normal(shape)
    second = rng.standard_normal(shape) ** 2 + 0.5
    weights = []
    for array in (first, second):
        element = space.element(array)
        stored = _to_numpy(element).astype(np.float64)  # the values after ODL's dtype cast
        weights.append(float(space.inner(element, element)) / float(np.sum(stored * stored)))
    if not math.isclose(weights[0], weights[1], rel_tol=1e-5):
        raise ValueError(
            f"from_odl: the {name} of the ODL operator has a non-constant weighting; the Euclidean adjoint "
            "is not a multiple of ODL's adjoint"
        )
    return weights[0]


def _space_shape(space: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in space.zero().asarray().shape)


def _space_dtype(space: Any) -> torch.dtype:
    """The torch dtype of the arrays of ``space`` (what ODL computes in; float32 for astra)."""
    return torch.from_numpy(np.zeros(1, dtype=space.zero().asarray().dtype)).dtype


class _OdlMap:
    """A linear ODL map with NumPy in/out and its Euclidean adjoint (rescaled ODL adjoint)."""

    def __init__(self, operator: Any, *, need_adjoint: bool = True) -> None:
        self.operator = operator
        self.in_shape = _space_shape(operator.domain)
        self.out_shape = _space_shape(operator.range)
        self.in_dtype = _space_dtype(operator.domain)
        self.out_dtype = _space_dtype(operator.range)
        self._adjoint: Any = None
        self._adjoint_scale = 1.0
        if need_adjoint:
            self._init_adjoint()

    def _init_adjoint(self) -> None:
        self._adjoint = self.operator.adjoint
        w_in = _space_weight(self.operator.domain, "domain")
        w_out = _space_weight(self.operator.range, "range")
        self._adjoint_scale = w_in / w_out

    def apply(self, array: np.ndarray, adjoint: bool) -> np.ndarray:
        if adjoint:
            if self._adjoint is None:
                self._init_adjoint()
            result = self._adjoint(self._adjoint.domain.element(array))
            return _to_numpy(result) * self._adjoint_scale
        return _to_numpy(self.operator(self.operator.domain.element(array)))

    def apply_batch(self, x: Tensor, adjoint: bool) -> Tensor:
        in_shape, out_shape = (self.out_shape, self.in_shape) if adjoint else (self.in_shape, self.out_shape)
        in_dtype = self.out_dtype if adjoint else self.in_dtype
        lead = x.shape[: x.dim() - len(in_shape)]
        # in the space's own dtype, so that ODL does not copy (and astra links float32 buffers)
        flat = x.detach().to("cpu", in_dtype).contiguous().reshape(-1, *in_shape).numpy()
        outputs = [self.apply(sample, adjoint) for sample in flat]
        stacked = np.stack(outputs) if outputs else np.zeros((0, *out_shape))
        return torch.from_numpy(stacked).to(device=x.device, dtype=x.dtype).reshape(*lead, *out_shape)


class _OdlApply(torch.autograd.Function):
    """``x -> M x`` (or ``M^T x``) through ODL; the backward applies the other one."""

    @staticmethod
    def forward(ctx, x: Tensor, odl_map: _OdlMap, adjoint: bool) -> Tensor:
        ctx.odl_map = odl_map
        ctx.adjoint = adjoint
        return odl_map.apply_batch(x, adjoint)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        return _OdlApply.apply(grad, ctx.odl_map, not ctx.adjoint), None, None


class OdlOperator(LinearOperator):
    """A linear ODL operator as a batched torch operator (see :func:`from_odl`).

    Images have shape ``[B, C, *domain.shape]`` (the domain must be 2-D) and measurements
    ``[B, C, *range.shape]`` (ODL's layout, e.g. ``(angles, detectors)`` for a ray transform, or
    ``(k, H, W)`` for a product-space range such as a gradient).

    Parameters
    ----------
    odl_operator : odl.Operator
        A linear operator.
    channels : int, default 1
        Number of channels ``C`` (each channel is transformed independently).
    pseudo_inverse : odl.Operator, optional
        An ODL map from the range to the domain used as ``A_dagger`` (e.g. ``odl.applications.tomo.fbp_op``).
        Default: minimum-norm least squares by CG.
    noise_model : deepinv.physics.NoiseModel, optional
        Noise added by ``op(x)``.
    """

    name = "odl"

    def __init__(
        self,
        odl_operator: Any,
        *,
        channels: int = 1,
        pseudo_inverse: Any = None,
        noise_model: NoiseModel | None = None,
    ) -> None:
        odl = _import_odl()
        if not isinstance(odl_operator, odl.Operator):
            raise TypeError(f"from_odl: expected an odl.Operator, got {type(odl_operator).__name__}")
        if not odl_operator.is_linear:
            raise ValueError(f"from_odl: the ODL operator must be linear, got {odl_operator!r}")
        odl_map = _OdlMap(odl_operator)
        if len(odl_map.in_shape) != 2:
            raise ValueError(
                f"from_odl: the ODL operator's domain must be 2-D (an image), got shape {list(odl_map.in_shape)}"
            )
        if isinstance(channels, bool) or not isinstance(channels, int) or channels <= 0:
            raise ValueError(f"from_odl: channels must be a positive int, got {channels!r}")
        super().__init__((channels, *odl_map.in_shape), noise_model=noise_model)
        self.odl_operator = odl_operator
        self._map = odl_map
        self._pinv: _OdlMap | None = None
        if pseudo_inverse is not None:
            if not isinstance(pseudo_inverse, odl.Operator):
                raise TypeError(
                    f"from_odl: pseudo_inverse must be an odl.Operator, got {type(pseudo_inverse).__name__}"
                )
            if pseudo_inverse.domain != odl_operator.range or pseudo_inverse.range != odl_operator.domain:
                raise ValueError("from_odl: pseudo_inverse must map the operator's range to its domain")
            self._pinv = _OdlMap(pseudo_inverse, need_adjoint=False)

    @property
    def measurement_size(self) -> tuple[int, ...]:
        return (self.image_size[0], *self._map.out_shape)

    @property
    def adjoint_scale(self) -> float:
        """Factor ``w_domain / w_range`` turning ODL's weighted adjoint into the Euclidean one."""
        return self._map._adjoint_scale

    def _config(self) -> dict[str, Any]:
        text = " ".join(repr(self.odl_operator).split())
        return {"odl_operator": text if len(text) <= 200 else text[:197] + "..."}

    def A(self, x: Tensor, **kwargs: Any) -> Tensor:
        """Apply the ODL operator to every image of the batch (differentiable)."""
        self._check_image(x)
        return _OdlApply.apply(x, self._map, False)

    def A_adjoint(self, y: Tensor, **kwargs: Any) -> Tensor:
        """Euclidean adjoint: ODL's adjoint times ``w_domain / w_range`` (differentiable)."""
        self._check_measurement(y)
        return _OdlApply.apply(y, self._map, True)

    def A_dagger(self, y: Tensor, **kwargs: Any) -> Tensor:
        """``pseudo_inverse`` if one was given, else minimum-norm least squares by CG."""
        if self._pinv is None:
            return super().A_dagger(y, **kwargs)
        self._check_measurement(y)
        return _OdlApply.apply(y, self._pinv, False)


def from_odl(
    odl_operator: Any,
    *,
    channels: int = 1,
    pseudo_inverse: Any = None,
    noise_model: NoiseModel | None = None,
) -> OdlOperator:
    """Wrap a linear ODL operator as a batched, differentiable liftinv operator.

    Parameters
    ----------
    odl_operator : odl.Operator
        Linear operator with a 2-D domain (e.g. a ray transform, a gradient, a matrix operator).
    channels : int, default 1
        Number of image channels (each is transformed independently).
    pseudo_inverse : odl.Operator, optional
        Range-to-domain map used as ``A_dagger`` (e.g. ``odl.applications.tomo.fbp_op(ray_transform)``).
    noise_model : deepinv.physics.NoiseModel, optional
        Noise added by ``op(x)``.

    Returns
    -------
    OdlOperator
        ``A``/``A_adjoint`` accept ``[B, C, H, W]`` / ``[B, C, *range_shape]`` of any float dtype and
        device (ODL runs on the CPU in its spaces' dtype; results come back in the input's dtype/device).
        ``describe()`` records the ODL operator's repr but cannot rebuild it (``make_operator`` refuses).

    Raises
    ------
    TypeError
        If ``odl_operator`` is not an ODL operator.
    ValueError
        If it is not linear, its domain is not 2-D, or a space has a non-constant weighting.

    Examples
    --------
    >>> import odl, numpy as np, torch
    >>> space = odl.uniform_discr([-1, -1], [1, 1], (8, 8))
    >>> op = from_odl(odl.MatrixOperator(np.eye(8)[:5], domain=space, axis=0))
    >>> op.A(torch.ones(2, 1, 8, 8)).shape
    torch.Size([2, 1, 5, 8])

    References
    ----------
    Adler, Kohr & Öktem, ODL: Operator Discretization Library, 2017 (https://odlgroup.github.io/odl).
    """
    return OdlOperator(
        odl_operator, channels=channels, pseudo_inverse=pseudo_inverse, noise_model=noise_model
    )


def odl_ray_transform(
    image_size: int,
    angles: int = 30,
    *,
    geometry: str = "parallel",
    impl: str | None = None,
) -> Any:
    """Build an ODL ray transform on ``[-1, 1]^2`` (for :func:`from_odl`): parallel or fan beam.

    Parameters
    ----------
    image_size : int
        Side ``n`` of the square image (``uniform_discr([-1, -1], [1, 1], (n, n))``; float32 for an astra
        ``impl``, whose CPU projectors take only float32 buffers, float64 otherwise).
    angles : int, default 30
        Number of angles (ODL's default spread over the geometry's angle range).
    geometry : {"parallel", "fan"}, default "parallel"
        "fan" uses a fan-beam geometry (source radius 2, detector radius 2) and needs astra-toolbox.
    impl : {"skimage", "astra_cpu", "astra_cuda"}, optional
        Backend; default "astra_cpu" when astra is installed, else "skimage" (parallel only).

    Returns
    -------
    odl.Operator
        The ray transform (sinogram layout ``(angles, detectors)``).

    Raises
    ------
    ImportError
        If ``geometry="fan"`` (or an astra ``impl``) is asked for without astra-toolbox installed.
    ValueError
        For an unknown geometry or a non-positive number of angles.
    """
    odl = _import_odl()
    from odl.applications import tomo

    if geometry not in ("parallel", "fan"):
        raise ValueError(f"odl_ray_transform: geometry must be 'parallel' or 'fan', got {geometry!r}")
    if isinstance(angles, bool) or not isinstance(angles, int) or angles <= 0:
        raise ValueError(f"odl_ray_transform: the number of angles must be a positive int, got {angles!r}")
    if impl is None:
        impl = "astra_cpu" if tomo.ASTRA_AVAILABLE else "skimage"
    if (geometry == "fan" or impl.startswith("astra")) and not tomo.ASTRA_AVAILABLE:
        raise ImportError(
            f"odl_ray_transform: geometry={geometry!r} with impl={impl!r} needs astra-toolbox, which is not "
            'installed: pip install "liftinv[astra]"'
        )
    dtype = "float32" if impl.startswith("astra") else "float64"
    space = odl.uniform_discr([-1, -1], [1, 1], (image_size, image_size), dtype=dtype)
    if geometry == "parallel":
        geom = tomo.parallel_beam_geometry(space, num_angles=angles)
    else:
        geom = tomo.cone_beam_geometry(space, src_radius=2.0, det_radius=2.0, num_angles=angles)
    return tomo.RayTransform(space, geom, impl=impl)
