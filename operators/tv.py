"""Total variation: the one home of its gradient, divergence, value, dual projection and PDHG step.

Discretisation of Chambolle (2004): ``grad2d`` uses forward differences with a Neumann boundary (the
difference across the last row/column is 0); ``div2d`` uses the matching backward differences so that
``div = -grad^T`` exactly: ``<grad2d(x), p> = -<x, div2d(p)>``. Shapes (the one axis convention of the
package): ``x`` is ``[..., H, W]`` and ``p`` is ``[..., 2, H, W]`` (component 0 along rows/height, 1 along
columns/width). ``||grad2d||^2 <= 8``.

:func:`total_variation` is isotropic TV (optionally smoothed), :func:`project_l2_ball` the dual projection
and :func:`tv_pdhg_step` one primal-dual iteration for ``min_x h(x) + alpha TV(x)`` over a box, shared by
the classical TV reconstruction (:func:`liftinv.operators.reconstruct`) and the PDHG input step of
:func:`liftinv.invert`.

References
----------
Chambolle, An algorithm for total variation minimization and applications, J. Math. Imaging Vis. 20, 2004.
Chambolle & Pock, A first-order primal-dual algorithm for convex problems with applications to imaging,
J. Math. Imaging Vis. 40, 2011.
Condat, A primal-dual splitting method for convex optimization involving Lipschitzian, proximable and
linear composite terms, J. Optim. Theory Appl. 158, 2013.
Rudin, Osher & Fatemi, Nonlinear total variation based noise removal algorithms, Physica D 60, 1992.
Vu, A splitting algorithm for dual monotone inclusions involving cocoercive operators, Adv. Comput. Math.
38, 2013.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "grad2d",
    "div2d",
    "gradient_magnitude",
    "total_variation",
    "project_l2_ball",
    "tv_pdhg_step",
    "GRAD2D_NORM_BOUND",
]

#: upper bound of ``||grad2d||`` (the norm, not its square): ``sqrt(8)``
GRAD2D_NORM_BOUND = 8.0**0.5


def grad2d(x: Tensor) -> Tensor:
    """Forward-difference gradient with Neumann boundary, ``[..., H, W] -> [..., 2, H, W]``.

    ``(grad x)_0[i, j] = x[i+1, j] - x[i, j]`` (0 on the last row) and
    ``(grad x)_1[i, j] = x[i, j+1] - x[i, j]`` (0 on the last column).

    Parameters
    ----------
    x : Tensor
        Images ``[..., H, W]`` (e.g. ``[B, C, H, W]``).

    Returns
    -------
    Tensor
        ``[..., 2, H, W]``.

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(6.0).reshape(1, 1, 2, 3)
    >>> grad2d(x)[0, 0].tolist()
    [[[3.0, 3.0, 3.0], [0.0, 0.0, 0.0]], [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]]]
    """
    rows = F.pad(torch.diff(x, dim=-2), (0, 0, 0, 1))
    cols = F.pad(torch.diff(x, dim=-1), (0, 1))
    return torch.stack((rows, cols), dim=-3)


def div2d(p: Tensor) -> Tensor:
    """Discrete divergence, the negative adjoint of :func:`grad2d`: ``[..., 2, H, W] -> [..., H, W]``.

    Satisfies ``sum(grad2d(x) * p) == -sum(x * div2d(p))`` for all ``x``, ``p`` (up to rounding).

    Parameters
    ----------
    p : Tensor
        Vector fields ``[..., 2, H, W]``.

    Returns
    -------
    Tensor
        ``[..., H, W]``.

    Examples
    --------
    >>> import torch
    >>> x, p = torch.randn(2, 1, 5, 4, dtype=torch.float64), torch.randn(2, 1, 2, 5, 4, dtype=torch.float64)
    >>> bool(torch.isclose((grad2d(x) * p).sum(), -(x * div2d(p)).sum()))
    True
    """
    if p.dim() < 3 or p.shape[-3] != 2:
        raise ValueError(f"div2d: expected p of shape [..., 2, H, W], got {list(p.shape)}")
    rows = F.pad(p[..., 0, :-1, :], (0, 0, 1, 1))
    cols = F.pad(p[..., 1, :, :-1], (1, 1))
    return torch.diff(rows, dim=-2) + torch.diff(cols, dim=-1)


def gradient_magnitude(p: Tensor, eps: float = 0.0) -> Tensor:
    """Pixelwise Euclidean norm of a vector field, ``[..., 2, H, W] -> [..., H, W]``: ``|p_ij|_2``.

    With ``eps > 0`` the smoothed ``sqrt(|p_ij|_2^2 + eps^2) - eps``. Summed over the pixels of
    ``grad2d(x)`` it is the (smoothed) total variation of ``x``.

    Parameters
    ----------
    p : Tensor
        ``[..., 2, H, W]`` (e.g. ``grad2d(x)``).
    eps : float, default 0.0
        Smoothing ``>= 0``.

    Returns
    -------
    Tensor
        ``[..., H, W]``.

    Examples
    --------
    >>> import torch
    >>> gradient_magnitude(torch.tensor([[[3.0]], [[4.0]]])).tolist()
    [[5.0]]
    """
    squared = p.square().sum(dim=-3)
    return (squared + eps * eps).sqrt() - eps if eps > 0 else squared.sqrt()


def total_variation(x: Tensor, eps: float = 0.0) -> Tensor:
    """Isotropic total variation per sample: ``TV(x) = sum_{c,i,j} |(grad x)_{c,i,j}|_2``.

    With ``eps > 0`` the smoothed ``TV_eps(x) = sum_{c,i,j} (sqrt(|(grad x)_{c,i,j}|_2^2 + eps^2) - eps)``:
    differentiable everywhere, 0 for constant images, ``TV_eps <= TV <= TV_eps + eps * (number of
    pixels)`` (used by the Adam / L-BFGS solvers of :func:`liftinv.invert`).

    Parameters
    ----------
    x : Tensor
        Images ``[B, ..., H, W]`` (TV is summed over channels).
    eps : float, default 0.0
        Smoothing ``>= 0`` (0: exact TV).

    Returns
    -------
    Tensor
        ``[B]``.

    Examples
    --------
    >>> import torch
    >>> x = torch.zeros(1, 1, 4, 4); x[..., 2:, :] = 1.0
    >>> total_variation(x).tolist()  # one unit jump across 4 columns
    [4.0]
    >>> round(float(total_variation(x, eps=0.75)[0]), 6)  # 4 (sqrt(1 + 0.75^2) - 0.75)
    2.0
    """
    if eps < 0:
        raise ValueError(f"total_variation: eps must be >= 0, got {eps}")
    magnitude = gradient_magnitude(grad2d(x), eps)
    return magnitude.reshape(magnitude.shape[0], -1).sum(dim=1)


def project_l2_ball(p: Tensor, radius: float | Tensor = 1.0) -> Tensor:
    """Pixelwise projection of a vector field onto ``{|p_ij|_2 <= radius}``: ``p / max(1, |p| / radius)``.

    This is the prox of the conjugate of ``radius * ||.||_{2,1}`` (the dual step of TV in PDHG).

    Parameters
    ----------
    p : Tensor
        ``[..., 2, H, W]``.
    radius : float or Tensor, default 1.0
        Ball radius ``> 0`` (a tensor broadcastable to ``[..., 1, H, W]`` for per-sample radii).

    Returns
    -------
    Tensor
        Same shape as ``p``.

    Examples
    --------
    >>> import torch
    >>> project_l2_ball(torch.tensor([[[3.0]], [[4.0]]]), 1.0).flatten().tolist()
    [0.6000000238418579, 0.800000011920929]
    """
    magnitude = gradient_magnitude(p).unsqueeze(-3)
    return p / torch.clamp(magnitude / radius, min=1.0)


def tv_pdhg_step(
    x: Tensor,
    p: Tensor,
    g: Tensor,
    tau: float,
    sigma: float | Tensor,
    grad_bar: Tensor | None,
    *,
    radius: float | Tensor = 1.0,
    weight: float | Tensor | None = None,
    bounds: tuple[float | None, float | None] | None = None,
) -> tuple[Tensor, Tensor]:
    r"""One primal-dual (PDHG) iteration for ``min_x h(x) + alpha TV(x) + i_C(x)``, dual step first.

    TV is dualised, ``alpha TV(x) = max_{|p_ij|_2 <= r} <w grad x, p>`` with ``r w = alpha``: either
    ``r = alpha, w = 1`` (the dual variable carries ``alpha``) or ``r = 1, w = alpha`` (dual steps that do
    not scale with ``alpha``; per-sample ``alpha`` then only enters through ``w``). One iteration is::

        p <- proj_{|p_ij|_2 <= r}(p + sigma grad x_bar)        (skipped when grad_bar is None)
        x <- proj_C(x - tau (g - w div p))

    with ``x_bar = 2 x_k - x_{k-1}`` the extrapolation of the previous iteration (the caller passes
    ``grad x_bar``, which it may form from cached gradients by linearity), ``C = {lo <= x <= hi}`` and
    ``g`` one of:

    * ``g = grad h(x)``, ``h`` smooth with an ``L``-Lipschitz gradient: the explicit-gradient primal-dual
      method of Condat (2013) and Vu (2013), which converges for
      ``1/tau - (sigma / w) w^2 ||grad||^2 >= L / 2`` (``||grad||^2 <= 8``);
    * ``g = A^T q`` with ``q`` the dual variable of a data term ``F(A x)`` that the caller updates with
      ``prox_{sigma F*}``: Chambolle & Pock (2011, Algorithm 1) on ``K = [A; grad]``, which converges for
      ``tau sigma ||K||^2 < 1`` (``||K||^2 <= ||A||^2 + 8``, ``w = 1``).

    Parameters
    ----------
    x : Tensor
        Current primal iterate ``x_k``, images ``[B, ..., H, W]``.
    p : Tensor
        Current dual variable ``[B, ..., 2, H, W]`` (the layout of :func:`grad2d`; zeros to start).
    g : Tensor
        ``grad h(x_k)`` or ``A^T q_{k+1}``, shaped like ``x``.
    tau : float
        Primal step.
    sigma : float or Tensor
        Dual step on ``grad x_bar`` (``s w`` for a dual step ``s`` on ``w grad``); a tensor broadcastable
        against ``p`` (e.g. ``[B, 1, 1, 1, 1]``) for per-sample steps.
    grad_bar : Tensor or None
        ``grad2d(x_bar)``, shaped like ``p``; None skips the dual update (e.g. a first iteration that
        starts from the given ``p``).
    radius : float or Tensor, default 1.0
        ``r``: radius of the dual ball (``> 0``; the number 0 switches TV off and returns ``p = 0``).
    weight : float or Tensor, optional
        ``w`` (broadcastable against ``x``); default 1.
    bounds : (lo, hi), optional
        Box ``C`` (either side may be None); default no constraint.

    Returns
    -------
    x : Tensor
        ``x_{k+1}``.
    p : Tensor
        The dual variable used for it, ``p_{k+1}``.

    Examples
    --------
    TV denoising, ``min_x 1/2 ||x - y||^2 + alpha TV(x)`` (``h = 1/2 ||. - y||^2``, ``L = 1``):

    >>> import torch
    >>> y = torch.zeros(1, 1, 8, 8); y[..., 4:] = 1.0
    >>> y = y + 0.1 * torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> x, p, x_old = y.clone(), torch.zeros(1, 1, 2, 8, 8), y.clone()
    >>> tau, sigma = 1.0, 1.0 / 16  # 1/tau - 8 sigma = 1/2 = L/2
    >>> for k in range(300):
    ...     grad_bar = grad2d(2 * x - x_old) if k else None
    ...     x_old, (x, p) = x, tv_pdhg_step(x, p, x - y, tau, sigma, grad_bar, radius=0.1)
    >>> objective = lambda v: 0.5 * (v - y).square().sum() + 0.1 * total_variation(v)
    >>> bool(objective(x) < objective(y))
    True
    >>> float(p.square().sum(dim=-3).sqrt().max()) <= 0.1 + 1e-6  # p stays in its ball
    True
    """
    if grad_bar is not None:
        if isinstance(radius, int | float) and radius == 0:
            p = torch.zeros_like(p)
        else:
            p = project_l2_ball(p + sigma * grad_bar, radius)
    div_p = div2d(p) if weight is None else div2d(p) * weight
    x = x - tau * (g - div_p)
    if bounds is not None:
        x = x.clamp(min=bounds[0], max=bounds[1])
    return x, p
