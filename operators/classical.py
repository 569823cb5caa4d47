"""Classical reconstructions: pseudo-inverse, Tikhonov (CG) and total variation (PDHG / Chambolle-Pock).

All three solve (approximately) ``min_x 1/2 ||A x - y||^2 + alpha R(x)`` for a batch of measurements:

* ``"pinv"``: ``x = A^+ y`` (the operator's ``A_dagger``: truncated inverse filter, FBP, masking, ...);
* ``"tikhonov"``: ``R(x) = 1/2 ||x||^2``, i.e. ``(A^T A + alpha I) x = A^T y``, solved by conjugate gradients;
* ``"tv"``: ``R(x) = TV(x)`` (isotropic), optionally with a box constraint ``lo <= x <= hi``, solved by the
  primal-dual hybrid gradient method of Chambolle & Pock (2011) on ``K = [A; grad]`` with steps
  ``tau sigma ||K||^2 = 0.98``, ``||K||^2 <= ||A||^2 + 8`` (``||A||`` from the operator's ``norm()``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from liftinv.metrics import History

from .base import LinearOperator
from .linalg import batch_dot
from .noise import GaussianNoise
from .tv import GRAD2D_NORM_BOUND, grad2d, gradient_magnitude, tv_pdhg_step

__all__ = ["METHODS", "ReconstructionResult", "reconstruct", "default_alpha", "estimate_noise_level"]

#: reconstruction methods accepted by :func:`reconstruct`
METHODS = ("pinv", "tikhonov", "tv")

# Regularisation weight = factor * noise level (see default_alpha). Grid search on camera 128x128, noise levels
# 0.005-0.05 (`python benchmarks/reconstruction.py --tune`): each factor is within 0.5 dB of the best one
# of its grid at every level. Tikhonov cannot fill in missing pixels, so its inpainting factor is nominal.
_ALPHA_FACTORS: dict[str, dict[str, float]] = {
    "tikhonov": {"blur": 1.0, "tomography": 0.5, "inpainting": 1.0, "denoising": 0.1, "default": 0.5},
    "tv": {"blur": 0.1, "tomography": 0.1, "inpainting": 0.5, "denoising": 0.5, "default": 0.2},
}
# Ratio tau / sigma of the PDHG steps (see _tv).
_STEP_RATIO = 10.0
_DEFAULT_MAX_ITER = {"tikhonov": 200, "tv": 300}
_DEFAULT_TOL = {"tikhonov": 1e-6, "tv": 1e-4}


@dataclass
class ReconstructionResult:
    """Output of :func:`reconstruct`.

    Attributes
    ----------
    x : Tensor
        Reconstruction ``[B, C, H, W]``.
    history : liftinv.metrics.History
        One record per iteration, with floats for the whole batch (norms over all samples):
        ``"iteration"``, ``"objective"`` (``1/2 ||A x - y||^2 + alpha R(x)``, summed over samples),
        ``"residual"`` (``||A x - y|| / ||y||``), ``"change"`` (``||x_k - x_{k-1}|| / ||x_k||``), and for
        Tikhonov ``"normal_residual"`` (``||A^T y - (A^T A + alpha I) x_k|| / ||A^T y||``). "pinv" has a
        single record (iteration 0, objective and residual only). ``history[k]`` is record ``k`` and
        ``history["objective"]`` a column (the same shape as :func:`liftinv.fit` and
        :func:`liftinv.invert`); a list of dicts given to the constructor is converted.
    method : str
        ``"pinv"``, ``"tikhonov"`` or ``"tv"``.
    alpha : float or None
        Regularisation weight used (None for "pinv").
    iterations : int
        Number of iterations run (0 for "pinv").
    converged : bool
        Whether the tolerance was met before ``max_iter`` (always True for "pinv").
    seconds : float
        Wall-clock time.
    """

    x: Tensor
    history: History = field(default_factory=History)
    method: str = "pinv"
    alpha: float | None = None
    iterations: int = 0
    converged: bool = True
    seconds: float = 0.0

    def __post_init__(self):
        if not isinstance(self.history, History):
            self.history = History(method=self.method, records=[dict(r) for r in self.history])
        if not self.history.method:
            self.history.method = self.method


def estimate_noise_level(y: Tensor) -> float:
    """Estimate the standard deviation of additive white noise in measurements ``y``.

    Uses second differences along the rows (image rows, or detector positions of a sinogram),
    ``d_i = y_{i-1} - 2 y_i + y_{i+1}``, whose standard deviation is ``sqrt(6) sigma`` for white noise, and
    the robust scale ``1.4826 * median|d|`` (Donoho & Johnstone 1994). Triples containing an exact 0 are
    ignored (missing pixels of an inpainting measurement). Texture and edges bias the estimate upwards.

    Parameters
    ----------
    y : Tensor
        Measurements ``[B, C, M, N]`` (``M >= 3``).

    Returns
    -------
    float
        The estimated noise level (over the whole batch).

    Examples
    --------
    >>> import torch
    >>> y = 0.5 + 0.1 * torch.randn(1, 1, 128, 128, generator=torch.Generator().manual_seed(0))
    >>> abs(estimate_noise_level(y) - 0.1) < 0.01
    True
    """
    if y.dim() < 2 or y.shape[-2] < 3:
        raise ValueError(f"estimate_noise_level: expected y of shape [..., M >= 3, N], got {list(y.shape)}")
    y = y.detach().to(torch.float64)
    second = y[..., :-2, :] - 2 * y[..., 1:-1, :] + y[..., 2:, :]
    observed = (y[..., :-2, :] != 0) & (y[..., 1:-1, :] != 0) & (y[..., 2:, :] != 0)
    values = second[observed].abs()
    if values.numel() == 0:
        return 0.0
    return float(1.4826 * values.median() / math.sqrt(6.0))


def default_alpha(operator: LinearOperator, method: str, noise_level: float) -> float:
    """Default regularisation weight: ``alpha = factor(operator, method) * max(noise_level, 1e-3)``.

    The factors were tuned by grid search on camera (128x128, values in [0, 1]) at noise levels
    0.005-0.05 for each operator (``benchmarks/reconstruction.py --tune``; within 0.5 dB of the grid's
    best at every level); they are a starting point, not an oracle. Factors (Tikhonov / TV): blur 1 / 0.1,
    tomography 0.5 / 0.1, inpainting 1 / 0.5, denoising 0.1 / 0.5, other operators 0.5 / 0.2. The floor keeps a little regularisation on noiseless data.

    Parameters
    ----------
    operator : LinearOperator
        The forward operator (its ``name`` selects the factor).
    method : {"tikhonov", "tv"}
        Regulariser.
    noise_level : float
        Standard deviation of the measurement noise.

    Returns
    -------
    float
    """
    if method not in _ALPHA_FACTORS:
        raise ValueError(f"default_alpha: method must be 'tikhonov' or 'tv', got {method!r}")
    factors = _ALPHA_FACTORS[method]
    factor = factors.get(getattr(operator, "name", "default"), factors["default"])
    return factor * max(float(noise_level), 1e-3)


def _check_bounds(bounds: Any) -> tuple[float | None, float | None] | None:
    if bounds is None:
        return None
    try:
        lo, hi = bounds
    except (TypeError, ValueError):
        raise ValueError(
            f"bounds: expected None or a pair (lo, hi) (either may be None), got {bounds!r}"
        ) from None
    for value in (lo, hi):
        if value is not None and (not isinstance(value, (int, float)) or math.isnan(value)):
            raise ValueError(f"bounds: expected numbers or None, got {bounds!r}")
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"bounds: lower bound {lo} is larger than upper bound {hi}")
    return (None if lo is None else float(lo), None if hi is None else float(hi))


def _clip(x: Tensor, bounds: tuple[float | None, float | None] | None) -> Tensor:
    if bounds is None:
        return x
    return x.clamp(min=bounds[0], max=bounds[1])


def _total(t: Tensor) -> float:
    return float(t.sum())


def reconstruct(
    y: Tensor,
    operator: LinearOperator,
    method: str = "tv",
    alpha: float | None = None,
    *,
    noise_level: float | None = None,
    tol: float | None = None,
    max_iter: int | None = None,
    bounds: Sequence[float | None] | None = None,
    x0: Tensor | None = None,
    progress: bool = True,
) -> ReconstructionResult:
    """Reconstruct images from measurements with a classical method.

    Solves ``min_x 1/2 ||A x - y||^2 + alpha R(x)`` (see the module docstring for the three methods).
    Runs under ``torch.no_grad()``: a baseline, not a differentiable layer.

    Parameters
    ----------
    y : Tensor
        Measurements ``[B, *operator.measurement_size]``, finite.
    operator : LinearOperator
        The forward operator ``A``.
    method : {"pinv", "tikhonov", "tv"}, default "tv"
        Reconstruction method.
    alpha : float, optional
        Regularisation weight ``>= 0``; default :func:`default_alpha` for the operator and noise level.
    noise_level : float, optional
        Noise standard deviation used for the default ``alpha``; default the operator's
        ``noise_model.sigma`` if it is a :class:`GaussianNoise`, else :func:`estimate_noise_level` of ``y``.
    tol : float, optional
        Tikhonov: relative residual of the normal equations (default 1e-6). TV: relative change
        ``||x_k - x_{k-1}|| / ||x_k||`` (default 1e-4).
    max_iter : int, optional
        Maximum iterations (default 200 for Tikhonov, 300 for TV).
    bounds : (lo, hi), optional
        Box constraint (either side may be None, e.g. ``(0, None)`` for non-negativity). TV enforces it
        in every iteration; "pinv" and "tikhonov" clip their result.
    x0 : Tensor, optional
        Initial image for the iterative methods (default: zeros).
    progress : bool, default True
        Show a tqdm progress bar.

    Returns
    -------
    ReconstructionResult
        ``.x`` and ``.history`` (a :class:`liftinv.metrics.History`; plus method, alpha, iterations,
        converged, seconds).

    Raises
    ------
    TypeError
        If ``y`` is not a floating tensor or ``operator`` not a :class:`LinearOperator`.
    ValueError
        Unknown method; wrong measurement shape; non-finite values; negative alpha; bad tol, max_iter or
        bounds.

    See Also
    --------
    liftinv.reconstruct : the learned level -- reconstruct with a trained unrolled network
        (``liftinv.unrolled.reconstruct``), falling back to this function when no model is given.
    liftinv.operators.tv_pdhg_step : the TV-PDHG iteration used by ``method="tv"``.

    Examples
    --------
    >>> import torch
    >>> from liftinv.operators import Blur, reconstruct
    >>> op = Blur(32, sigma=1.0)
    >>> x = torch.zeros(1, 1, 32, 32); x[..., 8:24, 8:24] = 1.0
    >>> result = reconstruct(op.A(x), op, "tv", alpha=1e-3, progress=False)
    >>> result.x.shape, result.history[-1]["objective"] < result.history[0]["objective"]
    (torch.Size([1, 1, 32, 32]), True)

    References
    ----------
    Chambolle & Pock, A first-order primal-dual algorithm for convex problems with applications to
    imaging, J. Math. Imaging Vis. 40, 2011. Tikhonov & Arsenin, *Solutions of Ill-Posed Problems*, 1977.
    """
    if not isinstance(operator, LinearOperator):
        raise TypeError(
            f"reconstruct: operator must be a liftinv LinearOperator, got {type(operator).__name__}"
        )
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"reconstruct: method must be one of {', '.join(METHODS)}, got {method!r}")
    if not isinstance(y, Tensor):
        raise TypeError(f"reconstruct: y must be a torch.Tensor, got {type(y).__name__}")
    operator._check_measurement(y)
    if not bool(torch.isfinite(y).all()):
        raise ValueError("reconstruct: y contains non-finite values (nan or inf)")
    bounds_ = _check_bounds(bounds)
    if x0 is not None:
        operator._check_image(x0, "x0")
        if x0.shape[0] != y.shape[0]:
            raise ValueError(f"reconstruct: x0 has batch size {x0.shape[0]}, y has {y.shape[0]}")
    if tol is not None and (not isinstance(tol, (int, float)) or not tol > 0 or not math.isfinite(tol)):
        raise ValueError(f"reconstruct: tol must be a finite number > 0, got {tol!r}")
    if max_iter is not None and (
        isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter <= 0
    ):
        raise ValueError(f"reconstruct: max_iter must be a positive int, got {max_iter!r}")
    if alpha is not None:
        if (
            isinstance(alpha, bool)
            or not isinstance(alpha, (int, float))
            or not math.isfinite(alpha)
            or alpha < 0
        ):
            raise ValueError(f"reconstruct: alpha must be a finite number >= 0, got {alpha!r}")
        alpha = float(alpha)

    start = time.perf_counter()
    if method == "pinv":
        with torch.no_grad():
            x = _clip(operator.A_dagger(y), bounds_)
            residual = operator.A(x) - y
            data = 0.5 * _total(residual.square())
            entry = {"iteration": 0, "objective": data, "residual": _relative(residual, y)}
        history = History(method="pinv", records=[entry])
        return ReconstructionResult(x, history, "pinv", None, 0, True, time.perf_counter() - start)

    if alpha is None:
        if noise_level is None:
            model = getattr(operator, "noise_model", None)
            noise_level = model.sigma if isinstance(model, GaussianNoise) else estimate_noise_level(y)
        alpha = default_alpha(operator, method, noise_level)
    tol = _DEFAULT_TOL[method] if tol is None else float(tol)
    max_iter = _DEFAULT_MAX_ITER[method] if max_iter is None else max_iter
    solver = _tikhonov if method == "tikhonov" else _tv
    with torch.no_grad():
        x, history, converged = solver(y, operator, alpha, tol, max_iter, bounds_, x0, progress)
    if method == "tikhonov":
        x = _clip(x, bounds_)
    return ReconstructionResult(
        x, history, method, alpha, len(history), converged, time.perf_counter() - start
    )


def _relative(residual: Tensor, y: Tensor) -> float:
    reference = float(y.norm())
    return float(residual.norm()) / reference if reference > 0 else float(residual.norm())


def _progress_bar(method: str, max_iter: int, enabled: bool):
    return tqdm(
        total=max_iter, desc=f"reconstruct[{method}]", disable=not enabled, leave=False, dynamic_ncols=True
    )


def _tikhonov(
    y: Tensor,
    operator: LinearOperator,
    alpha: float,
    tol: float,
    max_iter: int,
    bounds: Any,
    x0: Tensor | None,
    progress: bool,
) -> tuple[Tensor, History, bool]:
    """CG on ``(A^T A + alpha I) x = A^T y``, tracking ``A x`` to report the objective for free."""
    rhs = operator.A_adjoint(y)
    if x0 is None:
        x = torch.zeros_like(rhs)
        ax = torch.zeros_like(y)
        r = rhs.clone()
    else:
        x = x0.to(rhs).clone()
        ax = operator.A(x)
        r = rhs - operator.A_adjoint(ax) - alpha * x
    p = r.clone()
    ap = operator.A(p)
    rs_old = batch_dot(r, r)
    threshold = tol**2 * batch_dot(rhs, rhs)
    rhs_norm = max(float(rhs.norm()), torch.finfo(rhs.dtype).tiny)
    history = History(method="tikhonov")
    converged = bool((rs_old <= threshold).all())
    tiny = torch.finfo(rhs.dtype).tiny
    with _progress_bar("tikhonov", max_iter, progress) as bar:
        for k in range(1, max_iter + 1):
            if converged:
                break
            mp = operator.A_adjoint(ap) + alpha * p
            curvature = batch_dot(p, mp)
            step = torch.where(curvature > 0, rs_old / curvature.clamp_min(tiny), 0.0)
            x_new = x + step * p
            ax = ax + step * ap
            r = r - step * mp
            rs_new = batch_dot(r, r)
            data = 0.5 * _total((ax - y).square())
            history.append(
                iteration=k,
                objective=data + 0.5 * alpha * _total(x_new.square()),
                residual=_relative(ax - y, y),
                normal_residual=float(rs_new.sum().sqrt()) / rhs_norm,
                change=float((x_new - x).norm()) / max(float(x_new.norm()), tiny),
            )
            x = x_new
            converged = bool((rs_new <= threshold).all())
            bar.update(1)
            if converged:
                break
            beta = torch.where(rs_old > 0, rs_new / rs_old.clamp_min(tiny), 0.0)
            p = r + beta * p
            ap = operator.A(p)
            rs_old = rs_new
    return x, history, converged


def _tv(
    y: Tensor,
    operator: LinearOperator,
    alpha: float,
    tol: float,
    max_iter: int,
    bounds: Any,
    x0: Tensor | None,
    progress: bool,
) -> tuple[Tensor, History, bool]:
    """Chambolle-Pock for ``min 1/2||A x - y||^2 + alpha TV(x) + i_box(x)``, dual variables for both terms.

    Iteration (``K = [A; grad]``, dual ``u = (q, p)``, ``x_bar = 2 x_k - x_{k-1}``)::

        q <- (q + sigma (A x_bar - y)) / (1 + sigma)           prox of sigma F*, F = 1/2 ||. - y||^2
        p <- proj_{|p_ij| <= alpha}(p + sigma grad x_bar)      prox of sigma (alpha ||.||_{2,1})*
        x <- proj_box(x - tau (A^T q - div p))

    The ``p`` and ``x`` updates are :func:`~liftinv.operators.tv.tv_pdhg_step` (``g = A^T q``, radius ``alpha``).
    ``A x_bar`` and ``grad x_bar`` come from ``A x`` and ``grad x`` by linearity, so an iteration costs one
    ``A``, one ``A^T``, one grad and one div, and the objective of every iterate is free. Steps:
    ``tau = 0.99 r / ||K||``, ``sigma = 0.99 / (r ||K||)`` (so ``tau sigma ||K||^2 < 1``) with ``r = 10``
    (choice: fastest of r in {1, 3, 10, 30} on blur, CT and inpainting at 128x128; the iteration is
    equivariant under rescaling x, y and alpha together, so r does not depend on the intensity range;
    Goldstein et al.'s residual balancing was slower here).
    """
    norm_k = math.sqrt(operator.norm() ** 2 + GRAD2D_NORM_BOUND**2)
    tau = 0.99 * _STEP_RATIO / norm_k
    sigma = 0.99 / (_STEP_RATIO * norm_k)
    x = (
        torch.zeros((y.shape[0], *operator.image_size), dtype=y.dtype, device=y.device)
        if x0 is None
        else x0.to(y)
    )
    x = _clip(x, bounds)
    ax = operator.A(x)
    gx = grad2d(x)
    ax_bar, gx_bar = ax, gx
    q = torch.zeros_like(y)
    p = torch.zeros_like(gx)
    history = History(method="tv")
    converged = False
    tiny = torch.finfo(y.dtype).tiny
    with _progress_bar("tv", max_iter, progress) as bar:
        for k in range(1, max_iter + 1):
            q = (q + sigma * (ax_bar - y)) / (1.0 + sigma)
            x_new, p = tv_pdhg_step(
                x, p, operator.A_adjoint(q), tau, sigma, gx_bar, radius=alpha, bounds=bounds
            )
            ax_new = operator.A(x_new)
            gx_new = grad2d(x_new)
            ax_bar = 2 * ax_new - ax
            gx_bar = 2 * gx_new - gx
            residual = ax_new - y
            tv_value = _total(gradient_magnitude(gx_new))
            change = float((x_new - x).norm()) / max(float(x_new.norm()), tiny)
            history.append(
                iteration=k,
                objective=0.5 * _total(residual.square()) + alpha * tv_value,
                residual=_relative(residual, y),
                change=change,
            )
            x, ax, gx = x_new, ax_new, gx_new
            bar.update(1)
            if k % 25 == 0:
                bar.set_postfix(objective=f"{history[-1]['objective']:.4g}", change=f"{change:.2e}")
            if k > 1 and change < tol:
                converged = True
                break
    return x, history, converged
