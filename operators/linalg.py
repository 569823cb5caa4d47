"""Matrix-free linear algebra used by the operators and the classical reconstructions.

:func:`batch_dot` and :func:`conjugate_gradient` act on batches: every sample of the batch (dimension 0) is
its own problem, with its own step sizes, and nothing is mixed across samples. :func:`power_method`
(behind ``LinearOperator.norm()``) estimates one largest eigenvalue with the package's single power
iteration, :func:`liftinv.lifted.norms.power_iteration`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from liftinv.lifted.norms import power_iteration

__all__ = ["batch_dot", "power_method", "conjugate_gradient"]


def batch_dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample Euclidean inner product, keeping broadcastable dimensions.

    Computes ``<a_i, b_i> = sum_j a_ij b_ij`` for every sample ``i`` of the batch (dimension 0).

    Parameters
    ----------
    a, b : Tensor
        Tensors of the same shape ``[B, ...]``.

    Returns
    -------
    Tensor
        Shape ``[B, 1, ..., 1]`` (same number of dimensions as ``a``), so that it broadcasts against ``a``.

    Examples
    --------
    >>> a = torch.ones(2, 1, 3, 3)
    >>> batch_dot(a, 2 * a).flatten().tolist()
    [18.0, 18.0]
    """
    return (a * b).sum(dim=tuple(range(1, a.dim())), keepdim=True)


def power_method(
    normal_operator: Callable[[Tensor], Tensor],
    x0: Tensor,
    *,
    max_iter: int = 500,
    tol: float = 1e-7,
) -> float:
    """Largest eigenvalue of a symmetric positive semi-definite operator by power iteration.

    Iterates ``x <- M x / ||M x||`` and returns the Rayleigh quotient ``<x, M x>`` (with ``||x|| = 1``)
    once its relative change is below ``tol``. Applied to ``M = A^T A`` it returns ``||A||^2``: the
    caller takes the square root (see :meth:`liftinv.operators.LinearOperator.norm`). The loop is
    :func:`liftinv.lifted.norms.power_iteration`, the one power iteration of the package, run here
    without autograd and with a stopping tolerance.

    Parameters
    ----------
    normal_operator : callable
        ``x -> M x``, e.g. ``lambda x: A_adjoint(A(x))``.
    x0 : Tensor
        Starting vector (any shape ``M`` accepts, usually one sample ``[1, C, H, W]``); random is best.
    max_iter : int, default 500
        Maximum number of iterations.
    tol : float, default 1e-7
        Stop when ``|lambda_k - lambda_{k-1}| <= tol * lambda_k``.

    Returns
    -------
    float
        The estimate of the largest eigenvalue (``0.0`` for the zero operator).

    Examples
    --------
    >>> d = torch.tensor([1.0, 3.0, 2.0], dtype=torch.float64)
    >>> round(power_method(lambda x: d * x, torch.ones(3, dtype=torch.float64)), 6)
    3.0
    >>> power_method(lambda x: 0 * x, torch.ones(3))
    0.0

    References
    ----------
    Golub & Van Loan, *Matrix Computations*, 4th ed., 2013, section 8.2.1.
    """
    with torch.no_grad():
        eigenvalue, _ = power_iteration(normal_operator, x0, max_iter, tol=tol)
    # <x, M x> = ||A x||^2 = 0 means M x = 0 (M positive semi-definite): report +0.0, not -0.0
    return 0.0 if eigenvalue == 0 else eigenvalue


def conjugate_gradient(
    operator: Callable[[Tensor], Tensor],
    rhs: Tensor,
    x0: Tensor | None = None,
    *,
    max_iter: int = 100,
    tol: float = 1e-6,
    callback: Callable[[int, Tensor, Tensor], bool | None] | None = None,
) -> tuple[Tensor, int, bool]:
    """Solve ``M x = b`` for a symmetric positive (semi-)definite ``M``, batched, by conjugate gradients.

    Every sample of the batch runs its own CG recursion (own step ``a_k`` and ``b_k``). Started from
    ``x0 = 0`` on a consistent semi-definite system (e.g. the normal equations ``A^T A x = A^T y``) the
    iterates stay in the range of ``M``, so CG converges to the minimum-norm solution.

    Parameters
    ----------
    operator : callable
        ``x -> M x`` on tensors shaped like ``rhs``.
    rhs : Tensor
        Right-hand side ``b``, shape ``[B, ...]``.
    x0 : Tensor, optional
        Initial guess (default zeros).
    max_iter : int, default 100
        Maximum number of iterations.
    tol : float, default 1e-6
        Stop when ``||b - M x_k|| <= tol * ||b||`` for every sample.
    callback : callable, optional
        Called as ``callback(k, x_k, r_k)`` after iteration ``k`` (1-based); returning ``True`` stops early.

    Returns
    -------
    x : Tensor
        The approximate solution.
    iterations : int
        Number of iterations run.
    converged : bool
        Whether the residual tolerance was reached for every sample.

    Examples
    --------
    >>> d = torch.tensor([[1.0, 4.0]], dtype=torch.float64)
    >>> x, k, ok = conjugate_gradient(lambda v: d * v, torch.tensor([[2.0, 2.0]], dtype=torch.float64))
    >>> x.tolist(), ok
    ([[2.0, 0.5]], True)

    References
    ----------
    Hestenes & Stiefel, Methods of conjugate gradients for solving linear systems, J. Res. NBS 49, 1952.
    """
    x = torch.zeros_like(rhs) if x0 is None else x0.clone()
    r = rhs - operator(x) if x0 is not None else rhs.clone()
    p = r.clone()
    rs_old = batch_dot(r, r)
    threshold = (tol**2) * batch_dot(rhs, rhs)
    converged = bool((rs_old <= threshold).all())
    iterations = 0
    while not converged and iterations < max_iter:
        mp = operator(p)
        curvature = batch_dot(p, mp)
        # A converged (or zero) sample has p = 0: take no step rather than divide by zero.
        step = torch.where(curvature > 0, rs_old / curvature.clamp_min(torch.finfo(rhs.dtype).tiny), 0.0)
        x = x + step * p
        r = r - step * mp
        rs_new = batch_dot(r, r)
        iterations += 1
        converged = bool((rs_new <= threshold).all())
        if callback is not None and callback(iterations, x, r):
            break
        beta = torch.where(rs_old > 0, rs_new / rs_old.clamp_min(torch.finfo(rhs.dtype).tiny), 0.0)
        p = r + beta * p
        rs_old = rs_new
    return x, iterations, converged
