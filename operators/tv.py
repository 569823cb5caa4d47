"""Discrete gradient, divergence and isotropic total variation (Chambolle 2004 discretisation).

``grad2d`` uses forward differences with a Neumann boundary (the difference across the last row/column
is 0); ``div2d`` uses the matching backward differences so that ``div = -grad^T`` exactly:
``<grad2d(x), p> = -<x, div2d(p)>``. Shapes: ``x`` is ``[..., H, W]`` and ``p`` is ``[..., 2, H, W]``
(component 0 along rows/height, 1 along columns/width). ``||grad2d||^2 <= 8``.

References
----------
Chambolle, An algorithm for total variation minimization and applications, J. Math. Imaging Vis. 20, 2004.
Rudin, Osher & Fatemi, Nonlinear total variation based noise removal algorithms, Physica D 60, 1992.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["grad2d", "div2d", "total_variation", "project_l2_ball", "GRAD2D_NORM_BOUND"]

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


def total_variation(x: Tensor) -> Tensor:
    """Isotropic total variation per sample: ``TV(x) = sum_{c,i,j} |(grad x)_{c,i,j}|_2``.

    Parameters
    ----------
    x : Tensor
        Images ``[B, ..., H, W]``.

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
    """
    magnitude = grad2d(x).square().sum(dim=-3).sqrt()
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
    magnitude = p.square().sum(dim=-3, keepdim=True).sqrt()
    return p / torch.clamp(magnitude / radius, min=1.0)
