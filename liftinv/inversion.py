"""Stable inversion of pre-trained networks: the lifted Bregman inversion problem and a gradient baseline.

Given a trained network ``N`` and an observed output ``f ~ N(u_true)`` (possibly noisy), recover ``u_true``.

Lifted (Bregman) inversion (Wang & Benning, *A lifted Bregman formulation for the inversion of deep neural
networks*, Front. Appl. Math. Stat. 9, 2023; Wang et al., *A Unified Framework for Lifted Training and
Inversion Approaches*, arXiv 2510.09796, 2025) lifts every layer ``x_l = sigma_l(K_l x_{l-1})`` into a
state ``x_l`` coupled to its pre-activation by the Bregman penalty
``B_l(x, z) = Phi_l(x) + Phi_l^*(z) - <x, z>`` (zero iff ``x = sigma_l(z)``) and solves::

    relaxed (default):  min_{u, x_1..x_L}  1/2 ||x_L - f||^2 + sum_l lambda_l B_l(x_l, K_l x_{l-1}) + alpha J(u)
    hard coupling:      min_{u, x_1..x_{L-1}}  sum_{l<L} lambda_l B_l(x_l, K_l x_{l-1})
                                               + lambda_L B_L(f, K_L x_{L-1}) + alpha J(u)

with ``x_0 = u``, ``J`` = total variation (TV), Tikhonov ``1/2||u||^2`` or nothing, and optionally a box
constraint ``u in [lo, hi]``. The hard form is the direct formulation of P2; for a one-layer network it is
*convex* in ``u``. It needs ``f`` in the domain of the last activation's ``psi`` (``f >= 0`` for ReLU,
else the objective is unbounded below), so noisy ``f`` is projected onto that domain (clipped) first;
the number of clipped entries is reported in ``InversionResult.info["clipped"]``.

Solver (block-coordinate descent, one outer iteration):

1. the free states, top-down: ``x_L`` exactly, ``x_L = prox_{lambda_L Phi_L}(f + lambda_L z_L)``
   (relaxed form only; the exact block update of :func:`liftinv.lifting.state_step`), then
   ``x_{L-1}, ..., x_1`` by forward-backward steps
   ``x_l <- prox_{mu_l lambda_l Phi_l}(x_l - mu_l [sum_m lambda_m K_m^T(sigma_m(z_m) - x_m) - lambda_l z_l])``
   with the safe step ``mu_l = 1 / sum_m lambda_m ||K_m||^2`` (power iteration, computed once: the weights
   do not change), so no line search is needed;
2. the input block ``u``: one primal-dual (PDHG, Condat-Vu) step for TV, or one forward-backward step for
   Tikhonov / no regulariser, using the gradient of the smooth part in ``u``::

       g = sum_m lambda_m K_m^T (sigma_m(K_m u + b_m) - x_m)     (m: the layers fed by u)

   (the quantity :func:`liftinv.lifting.state_gradient` returns for state 0): no derivative of any
   activation and no backward pass through the nested network. The TV step is::

       u   <- proj_box(u - tau (g - alpha div p))
       p   <- proj_{|p_ij| <= 1}(p + s alpha grad(2 u_new - u_old))

   with ``tau = 1/L_u``, ``L_u = sum_m lambda_m ||K_m||^2`` and ``s = r L_u / (16 alpha^2)`` (``r`` =
   ``pdhg_ratio`` <= 1), which satisfies Condat-Vu's condition ``1/tau - s alpha^2 ||grad||^2 >= L_u / 2``.
   ``solver="adam"`` replaces this step by an Adam step on ``g + alpha grad J_eps(u)`` (TV smoothed as for
   the Adam baseline), then the projection onto the box.

Gradient baseline (``method="gradient"``)::

    min_u 1/2 ||N(u) - f||^2 + alpha J(u)

through autograd, by Adam (default; TV smoothed as ``sum sqrt(|grad u|^2 + eps^2)``, box by projection
after every step), L-BFGS (same smoothing), or the same PDHG iteration as above with
``g = J_N(u)^T (N(u) - f)`` (P2's baseline; step ``1/L`` with ``L = ||K||^2`` for one layer, and for deeper
networks 1.5 times a power-iteration estimate of ``||J_N(u_0)||^2``, doubled whenever the descent-lemma
test of the previous step fails). The iteration budget is the same for both methods (one outer BCD iteration = one gradient
iteration; both cost about one forward and one backward/transposed application of every layer).

Each layer's pre-activation is computed once per outer iteration and its autograd graph serves both the
prox centre of its state and the product ``K^T r`` for the state feeding it, so an outer iteration costs
about one forward and one vector-Jacobian product per layer, like a gradient iteration.

Known limitation of the relaxed form (measured, see ``benchmarks/results/inversion.md``): eliminating
``x_L`` gives, per ReLU unit, a cost that is *flat* for ``z <= -f/lambda_L``; a unit with ``f > 0`` whose
pre-activation falls there is "saturated" and no longer pulled up, so with ``alpha = 0`` and exact data the
relaxed form can stop at a residual of a few 1e-2 (lambda = 1) where the hard form (convex for one layer)
reaches 1e-6. Smaller ``lambda_L`` moves the relaxed form towards the hard one (lambda -> 0) and larger
towards the nested least-squares problem of the gradient method (lambda -> infinity).

Both methods work on batches of outputs (samples are independent), on CPU or CUDA, in float32 or float64.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from liftinv.activations import Clip, Identity, LeakyReLU, ReLU, Sigmoid, SoftThreshold, Tanh
from liftinv.lifting import LiftedNetwork, _lipschitz_state, lift

__all__ = [
    "InversionResult",
    "invert",
    "tv",
    "tv_grad",
    "tv_div",
    "input_shape_of",
    "REGULARISERS",
    "METHODS",
    "COUPLINGS",
    "GRADIENT_SOLVERS",
    "LIFTED_SOLVERS",
]

REGULARISERS = ("tv", "tikhonov", None)
METHODS = ("lifted", "gradient")
COUPLINGS = ("relaxed", "hard")
GRADIENT_SOLVERS = ("adam", "lbfgs", "pdhg")
LIFTED_SOLVERS = ("pdhg", "adam")


# ---------------------------------------------------------------------------------------------------------
# result
# ---------------------------------------------------------------------------------------------------------
@dataclass
class InversionResult:
    """Result of :func:`invert`.

    Attributes
    ----------
    u : Tensor
        Recovered inputs, batched ``[B, *input_shape]`` (on the device used for the inversion).
    history : dict of list of float
        Per logged iteration (every ``log_every``): ``iteration``, ``objective`` (batch mean of the
        minimised objective; for ``gradient`` the un-smoothed one), ``data``, ``penalty`` (lifted only),
        ``regulariser`` (``alpha J(u)``), ``residual`` (batch mean of ``||N(u) - f|| / ||f||``), ``time``.
    iterations : int
        Outer iterations performed.
    time : float
        Wall time of the iterations in seconds (set-up and lifting excluded; CUDA synchronised).
    residual : Tensor
        ``||N(u) - f|| / ||f||`` per sample, shape ``[B]`` (``f`` the observed output, before any clipping).
    objective : Tensor
        Final objective per sample, shape ``[B]``.
    method : str
        ``"lifted"`` or ``"gradient"``.
    converged : bool
        Whether the relative change of ``u`` fell below ``tol`` before ``max_iter``.
    info : dict
        Settings and diagnostics: ``coupling``, ``lambdas``, step sizes, ``clipped`` (hard coupling), ...
    """

    u: Tensor
    history: dict[str, list[float]]
    iterations: int
    time: float
    residual: Tensor
    objective: Tensor
    method: str
    converged: bool = False
    info: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------
# total variation
# ---------------------------------------------------------------------------------------------------------
def tv_grad(x: Tensor) -> Tensor:
    """Forward-difference image gradient with Neumann boundary (the operator of discrete TV).

    ``(grad x)_ij = (x_{i,j+1} - x_ij, x_{i+1,j} - x_ij)``, 0 across the last column / row.

    Parameters
    ----------
    x : Tensor
        Shape ``[B, ..., H, W]``.

    Returns
    -------
    Tensor
        Shape ``[B, 2, ..., H, W]`` (horizontal, vertical differences).

    Examples
    --------
    >>> tv_grad(torch.arange(4.0).reshape(1, 1, 2, 2))[0, :, 0]
    tensor([[[1., 0.],
             [1., 0.]],
    <BLANKLINE>
            [[2., 2.],
             [0., 0.]]])
    """
    dx = torch.zeros_like(x)
    dy = torch.zeros_like(x)
    dx[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    dy[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    return torch.stack((dx, dy), dim=1)


def tv_div(p: Tensor) -> Tensor:
    """Discrete divergence, the negative adjoint of :func:`tv_grad`: ``<grad x, p> = -<x, div p>``.

    Parameters
    ----------
    p : Tensor
        Shape ``[B, 2, ..., H, W]`` (a dual field, as returned by :func:`tv_grad`).

    Returns
    -------
    Tensor
        Shape ``[B, ..., H, W]``.
    """
    px, py = p[:, 0], p[:, 1]
    d = torch.zeros_like(px)
    d[..., :, :-1] += px[..., :, :-1]
    d[..., :, 1:] -= px[..., :, :-1]
    d[..., :-1, :] += py[..., :-1, :]
    d[..., 1:, :] -= py[..., :-1, :]
    return d


def tv(x: Tensor, eps: float = 0.0) -> Tensor:
    """Isotropic total variation per sample: ``TV(x) = sum_ij |(grad x)_ij|_2``.

    With ``eps > 0`` the smoothed ``sum_ij (sqrt(|(grad x)_ij|^2 + eps^2) - eps)`` used by the Adam /
    L-BFGS solvers (0 for constant images, differentiable everywhere).

    Parameters
    ----------
    x : Tensor
        Images ``[B, ..., H, W]`` (TV is summed over channels).
    eps : float
        Smoothing (0: exact TV).

    Returns
    -------
    Tensor
        Shape ``[B]``.

    Examples
    --------
    >>> step = torch.zeros(1, 1, 4, 4); step[..., 2:] = 1.0
    >>> float(tv(step)[0])  # a unit jump along an edge of length 4
    4.0
    """
    g = tv_grad(x)
    mag = (g.pow(2).sum(1) + eps * eps).sqrt() - eps if eps > 0 else g.pow(2).sum(1).sqrt()
    return mag.reshape(x.shape[0], -1).sum(1)


def _project_dual(p: Tensor) -> Tensor:
    return p / p.pow(2).sum(1, keepdim=True).sqrt().clamp(min=1.0)


# ---------------------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------------------
def input_shape_of(model: nn.Module) -> tuple[int, ...] | None:
    """Per-sample input shape of ``model``, when it can be told from the model alone.

    Parameters
    ----------
    model : nn.Module
        A network.

    Returns
    -------
    tuple of int or None
        Its ``input_shape`` attribute (set by :mod:`liftinv.recipes`), else ``(in_features,)`` when its first
        layer (after ``nn.Flatten``) is an ``nn.Linear``, else None (convolutional inputs need the caller's
        ``input_shape``).

    Examples
    --------
    >>> input_shape_of(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)))
    (16,)
    """
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, tuple | list) and all(isinstance(s, int) for s in shape):
        return tuple(shape)
    mods = list(model) if isinstance(model, nn.Sequential) else [model]
    while mods:
        m = mods.pop(0)
        if isinstance(m, nn.Sequential):
            mods = list(m) + mods
        elif not isinstance(m, nn.Flatten | nn.Identity):
            return (m.in_features,) if isinstance(m, nn.Linear) else None
    return None


def _model_param(model: nn.Module) -> Tensor | None:
    return next(iter(model.parameters()), None) if isinstance(model, nn.Module) else None


def _check_alpha(alpha, batch: int, device, dtype) -> Tensor:
    """alpha as a [batch] tensor (a number, or one value per sample); finite and >= 0."""
    try:
        a = torch.as_tensor(alpha, dtype=dtype).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(
            f"alpha must be a number or a 1-D tensor of per-sample values, got {alpha!r}"
        ) from None
    if a.dim() > 1 or (a.dim() == 1 and a.numel() not in (1, batch)):
        raise ValueError(
            f"alpha must be a number or a 1-D tensor of {batch} per-sample values, got shape {tuple(a.shape)}"
        )
    if not torch.isfinite(a).all() or (a < 0).any():
        raise ValueError(f"alpha must be finite and >= 0, got {alpha}")
    return a.reshape(-1).expand(batch).clone().to(device)


def _bshape(v: Tensor, like: Tensor) -> Tensor:
    """Per-sample values [B] broadcast against ``like`` [B, ...]."""
    return v.reshape((-1,) + (1,) * (like.dim() - 1))


def _project_domain(activation, f: Tensor) -> tuple[Tensor, int]:
    """Project ``f`` onto the closure of dom(psi) of the last activation (hard coupling); count changes."""
    if isinstance(activation, ReLU):
        g = f.clamp(min=0)
    elif isinstance(activation, Clip):
        g = f.clamp(activation.lo, activation.hi)
    elif isinstance(activation, Sigmoid):
        eps = 1e-6 if f.dtype == torch.float64 else 1e-5
        g = f.clamp(eps, 1 - eps)
    elif isinstance(activation, Tanh):
        eps = 1e-6 if f.dtype == torch.float64 else 1e-5
        g = f.clamp(-1 + eps, 1 - eps)
    elif isinstance(activation, Identity | LeakyReLU | SoftThreshold):
        g = f
    else:
        raise ValueError(
            f"coupling='hard' is not available for a last activation {type(activation).__name__}: use "
            "coupling='relaxed'"
        )
    return g, int((g != f).sum())


def _box(box) -> tuple[float, float] | None:
    if box is None:
        return None
    try:
        lo, hi = (float(v) for v in box)
    except (TypeError, ValueError):
        raise ValueError(f"box must be None or a pair (lo, hi), got {box!r}") from None
    if not lo < hi:
        raise ValueError(f"box must satisfy lo < hi, got {box!r}")
    return lo, hi


def _clamp(x: Tensor, box) -> Tensor:
    return x if box is None else x.clamp(box[0], box[1])


# ---------------------------------------------------------------------------------------------------------
# Lipschitz estimates
# ---------------------------------------------------------------------------------------------------------
def _linear_part_norm(layer, inputs: list[Tensor], pos: int, iters: int, gen: torch.Generator) -> float:
    """||K_{m,j}||: operator norm of the linear part of a lifted layer in its ``pos``-th input (power it.)."""
    base = [torch.zeros_like(t[:1]) for t in inputs]
    with torch.enable_grad():
        v = torch.randn(base[pos].shape, generator=gen, dtype=base[pos].dtype).to(base[pos].device)
        z0 = layer(*base).detach()
        norm_sq = 0.0
        for _ in range(iters):
            v = v / v.norm().clamp(min=1e-30)
            vv = v.detach().requires_grad_(True)
            ins = list(base)
            ins[pos] = vv
            kv = layer(*ins) - z0
            (w,) = torch.autograd.grad(kv, vv, grad_outputs=kv.detach())
            norm_sq = float((w * v).sum())
            v = w.detach()
    return math.sqrt(max(norm_sq, 0.0) * 1.05)


def _network_lipschitz_sq(
    net: LiftedNetwork, states: Sequence[Tensor], gen: torch.Generator, iters: int = 30
) -> float:
    """Upper bound on Lip(N)^2 from the layer norms: Lip_l <= sum_{j in inputs(l)} ||K_{l,j}|| Lip_j.

    Proximal activations are 1-Lipschitz, so this bounds the Lipschitz constant of the nested network;
    its square is the step-size constant of the gradient baseline's PDHG (exact for one layer).
    """
    lip = [1.0]
    for layer in net.layers:
        ins = [states[j] for j in layer.inputs]
        total = 0.0
        for pos, j in enumerate(layer.inputs):
            total += _linear_part_norm(layer, ins, pos, iters, gen) * lip[j]
        lip.append(total)
    return max(lip[-1] ** 2, 1e-12)


def _jacobian_norm_sq(model: nn.Module, u: Tensor, gen: torch.Generator, iters: int = 20) -> float:
    """Power-iteration estimate of max over the batch of ||J_N(u_b)||^2 (spectral norm of the Jacobian).

    ``J v`` is obtained by the double-backward trick (the derivative in ``w`` of ``<J^T w, v>``).
    """
    with torch.enable_grad():
        x = u.detach().requires_grad_(True)
        out = model(x)
        w = torch.zeros_like(out).requires_grad_(True)
        (jtw,) = torch.autograd.grad(out, x, grad_outputs=w, create_graph=True)
        v = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
        est = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for _ in range(iters):
            v = v / _bshape(v.reshape(x.shape[0], -1).norm(dim=1).clamp(min=1e-30), v)
            (jv,) = torch.autograd.grad(jtw, w, grad_outputs=v, retain_graph=True)
            (z,) = torch.autograd.grad(out, x, grad_outputs=jv.detach(), retain_graph=True)
            est = (z * v).reshape(x.shape[0], -1).sum(1)
            v = z.detach()
    return max(float(est.max()), 1e-12)


# ---------------------------------------------------------------------------------------------------------
# the public entry point
# ---------------------------------------------------------------------------------------------------------
def invert(
    model: nn.Module,
    f: Tensor,
    regulariser: str | None = "tv",
    alpha=0.0,
    method: str = "lifted",
    lambdas=1.0,
    max_iter: int = 1000,
    tol: float = 1e-6,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = True,
    seed: int = 0,
    input_shape: Sequence[int] | None = None,
    box: tuple[float, float] | None = (0.0, 1.0),
    coupling: str = "relaxed",
    *,
    init: str | Tensor = "zeros",
    solver: str | None = None,
    lr: float = 3e-2,
    tv_eps: float = 1e-2,
    pdhg_ratio: float = 1.0,
    image_shape: Sequence[int] | None = None,
    log_every: int = 10,
) -> InversionResult:
    """Invert a pre-trained network: recover inputs ``u`` with ``N(u) ~ f`` (batched).

    Lifted inversion (Wang & Benning, Front. Appl. Math. Stat. 9, 2023; Wang et al., arXiv 2510.09796)::

        min_{u, x_1..x_L} 1/2 ||x_L - f||^2 + sum_l lambda_l B_l(x_l, K_l x_{l-1}) + alpha J(u),  x_0 = u

    (``coupling="relaxed"``; ``"hard"`` fixes ``x_L = f`` and gives P2's direct form
    ``lambda_L B_L(f, K_L x_{L-1}) + ...``) by block-coordinate descent: exact / forward-backward steps on
    the states, then one PDHG (TV) or proximal-gradient (Tikhonov, none) step on ``u`` with the gradient
    ``sum_m lambda_m K_m^T (sigma_m(K_m u) - x_m)`` -- no activation derivative and no backward pass through
    ``N``. Gradient inversion: ``min_u 1/2 ||N(u) - f||^2 + alpha J(u)`` through autograd. See the module
    docstring for the iterations and step sizes.

    Parameters
    ----------
    model : nn.Module
        The trained network ``N`` (not modified; a copy is moved when ``device``/``dtype`` differ). For
        ``method="lifted"`` anything :func:`liftinv.lifting.lift` accepts (MLP, conv, ResNet blocks, PNN
        blocks, unrolled nets with ``lifted_layers``); ``method="gradient"`` with ``solver="adam"|"lbfgs"``
        accepts any differentiable module.
    f : Tensor
        Observed outputs ``[B, *output_shape]`` (or one output ``output_shape``). Must be finite.
    regulariser : {"tv", "tikhonov", None}
        ``J(u)``: isotropic TV over the last two dimensions of the input (see ``image_shape``),
        ``1/2 ||u||^2``, or none (``alpha`` is then ignored).
    alpha : float or Tensor
        Regularisation weight >= 0, or one weight per sample (shape ``[B]``; handy for parameter sweeps).
    method : {"lifted", "gradient"}
        Lifted Bregman inversion or the gradient-based baseline.
    lambdas : float or sequence of float
        Penalty weights lambda_1..lambda_L of the lifted form (> 0).
    max_iter : int
        Iteration limit (outer BCD iterations / gradient iterations; the same budget for both).
    tol : float
        Stop when the relative change ``max_b ||v_b^{k+1} - v_b^k|| / max(||v_b^k||, 1e-12)`` stays below
        ``tol`` for 5 consecutive iterations, ``v`` the input ``u`` and (lifted) every state; 0 disables it.
    device : str or torch.device, optional
        ``"cpu"``, ``"cuda"``, ... Default: the model's device.
    dtype : torch.dtype, optional
        ``torch.float32`` or ``torch.float64``. Default: the model's dtype.
    progress : bool
        Show a tqdm progress bar.
    seed : int
        Seeds the power iterations (step sizes) and ``init="random"``.
    input_shape : sequence of int, optional
        Per-sample input shape of ``model``, e.g. ``(1, 64, 64)``. Needed unless the model starts with an
        ``nn.Linear`` (then ``(in_features,)``) or has an ``input_shape`` attribute.
    box : (lo, hi) or None
        Box constraint on ``u`` (default ``(0, 1)`` for images); ``None`` for no constraint.
    coupling : {"relaxed", "hard"}
        Lifted form: free last state (default) or ``x_L = f`` (f projected onto dom psi_L, e.g. clipped to
        ``>= 0`` for ReLU; the count is in ``info["clipped"]``).
    init : {"zeros", "box-mid", "random"} or Tensor
        Initial ``u``: zeros, the middle of the box, uniform noise in the box, or a given tensor.
    solver : {"pdhg", "adam", "lbfgs"}, optional
        Input-block solver. Lifted: ``"pdhg"`` (default; P2's algorithm, exact TV) or ``"adam"`` (Adam on the
        lifted input gradient, TV smoothed with ``tv_eps``). Gradient: ``"adam"`` (default), ``"lbfgs"``
        (TV smoothed; box by projection after each step) or ``"pdhg"`` (exact TV, the same PDHG as lifted).
    lr : float
        Adam learning rate (units of ``u`` per step; ``lbfgs`` uses ``lr=1`` with a strong-Wolfe search).
    tv_eps : float
        TV smoothing of the Adam / L-BFGS solvers.
    pdhg_ratio : float
        ``r`` in (0, 1]: the dual step relative to the largest one Condat-Vu's condition allows.
    image_shape : sequence of int, optional
        Shape ``(..., H, W)`` on which TV acts when the model takes flat inputs (e.g. ``(1, 64, 64)`` for
        ``input_shape=(4096,)``). Default: ``input_shape`` (which must then have >= 2 dimensions for TV).
    log_every : int
        Record the history every ``log_every`` iterations (the objective of deep lifted networks costs one
        extra forward pass).

    Returns
    -------
    InversionResult
        ``u``, ``history``, ``iterations``, ``time``, ``residual``, ``objective``, ``converged``, ``info``.

    Raises
    ------
    ValueError
        For an ``f`` of the wrong shape or with NaN/inf, ``alpha < 0``, unknown options, an ``input_shape``
        that does not fit the model, or a device that is not available.
    liftinv.lifting.LiftingError, liftinv.activations.NotProximalError
        ``method="lifted"`` on a network with a layer that cannot be lifted (max pooling, batch norm, GELU...).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.ReLU())
    >>> u_true = torch.rand(2, 1, 8, 8)
    >>> f = net(u_true).detach()
    >>> res = invert(net, f, regulariser=None, coupling="hard", max_iter=2000, progress=False)
    >>> bool(res.residual.max() < 1e-3)  # exact data, no regulariser: the output is fitted
    True
    >>> res.u.shape  # input_shape (64,) read off the first Linear layer
    torch.Size([2, 64])
    """
    from liftinv.training import resolve_device

    # ----- options -------------------------------------------------------------------------------------
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if regulariser not in REGULARISERS:
        raise ValueError(f"regulariser must be one of {REGULARISERS}, got {regulariser!r}")
    if coupling not in COUPLINGS:
        raise ValueError(f"coupling must be one of {COUPLINGS}, got {coupling!r}")
    if solver is None:
        solver = "pdhg" if method == "lifted" else "adam"
    allowed = LIFTED_SOLVERS if method == "lifted" else GRADIENT_SOLVERS
    if solver not in allowed:
        raise ValueError(f"solver must be one of {allowed} for method={method!r}, got {solver!r}")
    if not isinstance(max_iter, int) or isinstance(max_iter, bool) or max_iter < 0:
        raise ValueError(f"max_iter must be a non-negative int, got {max_iter!r}")
    try:
        tol = float(tol)
    except (TypeError, ValueError):
        raise ValueError(f"tol must be a number >= 0, got {tol!r}") from None
    if not tol >= 0:
        raise ValueError(f"tol must be a number >= 0, got {tol!r}")
    if not 0 < pdhg_ratio <= 1:
        raise ValueError(f"pdhg_ratio must be in (0, 1], got {pdhg_ratio}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if not tv_eps >= 0:
        raise ValueError(f"tv_eps must be >= 0, got {tv_eps}")
    if not isinstance(log_every, int) or log_every < 1:
        raise ValueError(f"log_every must be a positive int, got {log_every!r}")
    box = _box(box)
    if not isinstance(f, Tensor):
        try:
            f = torch.as_tensor(f)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"f must be a tensor, got {type(f).__name__}") from None
    if not f.is_floating_point():
        f = f.float()

    # ----- device, dtype, model copy --------------------------------------------------------------------
    p0 = _model_param(model)
    dev = (
        resolve_device(device)
        if device is not None
        else (p0.device if p0 is not None else torch.device("cpu"))
    )
    if dtype is None:
        dtype = p0.dtype if p0 is not None else torch.get_default_dtype()
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if p0 is not None and (p0.device != dev or p0.dtype != dtype):
        model = copy.deepcopy(model).to(device=dev, dtype=dtype)

    # ----- shapes and f ---------------------------------------------------------------------------------
    if input_shape is None:
        input_shape = input_shape_of(model)
        if input_shape is None:
            raise ValueError(
                "input_shape is needed: the model's per-sample input shape cannot be read off its first "
                "layer (pass e.g. input_shape=(1, 64, 64))"
            )
    input_shape = tuple(int(s) for s in input_shape)
    try:
        with torch.no_grad():
            out_shape = tuple(model(torch.zeros((1, *input_shape), device=dev, dtype=dtype)).shape[1:])
    except RuntimeError as exc:
        raise ValueError(
            f"input_shape={input_shape} does not fit the model: {str(exc).splitlines()[0]}"
        ) from None
    f = f.to(device=dev, dtype=dtype)
    if tuple(f.shape) == out_shape:
        f = f.unsqueeze(0)
    if tuple(f.shape[1:]) != out_shape or f.dim() < 1 or f.shape[0] == 0:
        raise ValueError(
            f"f has shape {tuple(f.shape)}, but the model maps inputs of shape {input_shape} to outputs of "
            f"shape {out_shape}: pass f as [batch, *{out_shape}]"
        )
    if not torch.isfinite(f).all():
        raise ValueError(f"f contains NaN or inf values ({int((~torch.isfinite(f)).sum())} entries)")
    B = f.shape[0]
    alpha_t = _check_alpha(alpha, B, dev, dtype)
    if regulariser is None:
        alpha_t = torch.zeros_like(alpha_t)
    if image_shape is not None:
        image_shape = tuple(int(s) for s in image_shape)
        if math.prod(image_shape) != math.prod(input_shape):
            raise ValueError(
                f"image_shape={image_shape} has {math.prod(image_shape)} entries but the input has "
                f"{math.prod(input_shape)} (input_shape={input_shape})"
            )
    else:
        image_shape = input_shape
    if regulariser == "tv" and len(image_shape) < 2:
        raise ValueError(
            f"regulariser='tv' needs image-shaped inputs, but the input shape is {input_shape}; pass "
            "image_shape=(H, W) or (C, H, W) to say how TV should view the input"
        )

    gen = torch.Generator().manual_seed(int(seed))
    if isinstance(init, Tensor):
        u0 = init.to(device=dev, dtype=dtype)
        if tuple(u0.shape) == input_shape:
            u0 = u0.unsqueeze(0).expand(B, *input_shape)
        if tuple(u0.shape) != (B, *input_shape):
            raise ValueError(f"init has shape {tuple(init.shape)}, expected {(B, *input_shape)}")
        u0 = u0.clone()
    elif init == "zeros":
        u0 = torch.zeros((B, *input_shape), device=dev, dtype=dtype)
    elif init == "box-mid":
        mid = 0.0 if box is None else 0.5 * (box[0] + box[1])
        u0 = torch.full((B, *input_shape), mid, device=dev, dtype=dtype)
    elif init == "random":
        lo, hi = box if box is not None else (0.0, 1.0)
        u0 = (lo + (hi - lo) * torch.rand((B, *input_shape), generator=gen, dtype=dtype)).to(dev)
    else:
        raise ValueError(f"init must be 'zeros', 'box-mid', 'random' or a tensor, got {init!r}")
    u0 = _clamp(u0, box)

    ctx = _Context(
        seed=int(seed),
        model=model,
        f=f,
        alpha=alpha_t,
        regulariser=regulariser,
        box=box,
        tol=float(tol),
        max_iter=max_iter,
        image_shape=image_shape,
        input_shape=input_shape,
        gen=gen,
        progress=progress,
        log_every=log_every,
        pdhg_ratio=float(pdhg_ratio),
        dev=dev,
    )
    if method == "lifted":
        return _invert_lifted(ctx, u0, lambdas, coupling, solver, lr, tv_eps)
    return _invert_gradient(ctx, u0, solver, lr, tv_eps)


@dataclass
class _Context:
    model: nn.Module
    f: Tensor
    alpha: Tensor
    regulariser: str | None
    box: tuple[float, float] | None
    tol: float
    max_iter: int
    image_shape: tuple[int, ...]
    input_shape: tuple[int, ...]
    gen: torch.Generator
    progress: bool
    log_every: int
    pdhg_ratio: float
    dev: torch.device
    seed: int = 0

    def img(self, u: Tensor) -> Tensor:
        return u.reshape(u.shape[0], *self.image_shape)

    def reg_value(self, u: Tensor, eps: float = 0.0) -> Tensor:
        """alpha J(u) per sample."""
        if self.regulariser == "tv":
            return self.alpha * tv(self.img(u), eps)
        if self.regulariser == "tikhonov":
            return self.alpha * 0.5 * u.reshape(u.shape[0], -1).pow(2).sum(1)
        return torch.zeros_like(self.alpha)

    def fnorm(self) -> Tensor:
        return self.f.reshape(self.f.shape[0], -1).norm(dim=1).clamp(min=1e-30)

    def residual(self, u: Tensor, out: Tensor | None = None) -> Tensor:
        if out is None:
            with torch.no_grad():
                out = self.model(u)
        return (out - self.f).reshape(u.shape[0], -1).norm(dim=1) / self.fnorm()

    def sync(self):
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)

    def bar(self, desc: str):
        if not self.progress:
            return _NoBar()
        from tqdm.auto import tqdm

        return tqdm(total=self.max_iter, desc=desc, leave=False)


class _NoBar:
    """Stand-in for a disabled tqdm bar (avoids importing tqdm.auto, which warns in bare Jupyter)."""

    def update(self, n=1):
        pass

    def set_postfix(self, **kw):
        pass

    def close(self):
        pass


class _InputStep:
    """One step on the input block: PDHG for TV, proximal gradient for Tikhonov / no regulariser.

    ``step(u, g)`` takes the gradient ``g`` of the smooth part at ``u`` and returns the new ``u``.
    """

    def __init__(self, ctx: _Context, lip: float, u: Tensor):
        self.ctx = ctx
        self.p = None
        if ctx.regulariser == "tv":
            img = ctx.img(u)
            self.p = torch.zeros((u.shape[0], 2, *img.shape[1:]), device=u.device, dtype=u.dtype)
        self.set_lipschitz(lip)

    def set_lipschitz(self, lip: float) -> None:
        """tau = 1/L; dual step s = r L / (16 alpha^2), so that s alpha^2 ||grad||^2 <= L/2 (||grad||^2 <= 8)."""
        self.lip = float(lip)
        self.tau = 1.0 / self.lip
        a = self.ctx.alpha
        self.dual = torch.where(
            a > 0, self.ctx.pdhg_ratio * self.lip / (16 * a.clamp(min=1e-30) ** 2), torch.zeros_like(a)
        )

    def step(self, u: Tensor, g: Tensor) -> Tensor:
        ctx, tau, a = self.ctx, self.tau, self.ctx.alpha
        if ctx.regulariser == "tv":
            img_u = ctx.img(u)
            div_p = tv_div(self.p) * _bshape(a, img_u)
            un = _clamp(u - tau * (g - div_p.reshape(u.shape)), ctx.box)
            bar = ctx.img(2 * un - u)
            self.p = _project_dual(self.p + _bshape(self.dual * a, self.p) * tv_grad(bar))
            return un
        if ctx.regulariser == "tikhonov":
            return _clamp((u - tau * g) / (1 + tau * _bshape(a, u)), ctx.box)
        return _clamp(u - tau * g, ctx.box)


#: consecutive iterations with a relative change below ``tol`` before stopping
_PATIENCE = 5


def _half_sq_dist(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample data term ``1/2 ||a - b||^2`` (batched ``[B, ...]``), shape ``[B]``."""
    return 0.5 * (a - b).reshape(a.shape[0], -1).pow(2).sum(1)


def _rel_change(pairs: Sequence[tuple[Tensor, Tensor]]) -> float:
    """max over pairs and samples of ||new - old|| / max(||old||, 1e-12) (one host synchronisation)."""
    vals = []
    for new, old in pairs:
        if new is old:
            continue
        n = new.shape[0]
        d = (new - old).reshape(n, -1).norm(dim=1)
        vals.append((d / old.reshape(n, -1).norm(dim=1).clamp(min=1e-12)).max())
    return float(torch.stack(vals).max()) if vals else 0.0


def _log(hist: dict[str, list[float]], **vals):
    for k, v in vals.items():
        hist.setdefault(k, []).append(float(v))
    if not math.isfinite(hist["objective"][-1]):
        raise FloatingPointError(
            f"inversion diverged: non-finite objective at iteration {vals.get('iteration')}"
        )


def _record(
    ctx: _Context,
    hist: dict[str, list[float]],
    it: int,
    t: float,
    u: Tensor,
    data: Tensor,
    out: Tensor | None = None,
    penalty: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Log the batch means of one iterate's terms; return its per-sample objective and residual.

    ``data`` is the per-sample data term at ``u`` (``out = N(u)`` when already known), ``penalty`` the
    lifted Bregman penalties (lifted method only); the objective is ``data (+ penalty) + alpha J(u)``.
    """
    with torch.no_grad():
        reg = ctx.reg_value(u)
        res = ctx.residual(u, out)
        obj = data + reg if penalty is None else data + penalty + reg
    terms = {"data": data.mean()}
    if penalty is not None:
        terms["penalty"] = penalty.mean()
    _log(
        hist, iteration=it, objective=obj.mean(), **terms, regulariser=reg.mean(), residual=res.mean(), time=t
    )
    return obj, res


def _start_clock(ctx: _Context, desc: str):
    """Progress bar and start time of the iterations (after a CUDA synchronisation)."""
    bar = ctx.bar(desc)
    ctx.sync()
    return bar, time.perf_counter()


def _stop_clock(ctx: _Context, bar, t0: float) -> float:
    """Wall time since ``t0`` (CUDA synchronised); closes the progress bar."""
    ctx.sync()
    elapsed = time.perf_counter() - t0
    bar.close()
    return elapsed


def _end_iteration(
    ctx: _Context, bar, hist: dict[str, list[float]], logged: bool, change: float, calm: int, diverged: str
) -> int:
    """Close one iteration: progress display, divergence check and the count of the stopping rule.

    Returns the number of consecutive iterations whose relative change is below ``ctx.tol`` (the caller
    stops once it reaches ``_PATIENCE``); raises ``FloatingPointError(diverged)`` for a non-finite change.
    """
    if logged and ctx.progress:
        bar.set_postfix(objective=f"{hist['objective'][-1]:.4g}", residual=f"{hist['residual'][-1]:.2e}")
    bar.update(1)
    if not math.isfinite(change):
        bar.close()
        raise FloatingPointError(diverged)
    return calm + 1 if change < ctx.tol else 0


def _adam_step(opt: torch.optim.Adam, x: Tensor, grad: Tensor, box) -> None:
    """One Adam step on the leaf ``x`` with the gradient ``grad``, then the projection onto the box."""
    with torch.no_grad():
        x.grad = grad
        opt.step()
        x.copy_(_clamp(x, box))


# ---------------------------------------------------------------------------------------------------------
# lifted inversion
# ---------------------------------------------------------------------------------------------------------
class _Preactivations:
    """Pre-activations ``z_m = K_m(x_{inputs(m)})`` with their autograd graphs, recomputed only when stale.

    An entry is valid while every input state is the same tensor object (state updates replace tensors),
    so in a top-down sweep each layer is applied once per outer iteration and its graph serves both the
    prox centre of state m and the gradient ``K_m^T r`` of the states feeding it (one forward and one
    vector-Jacobian product per layer, as in back-propagation).
    """

    def __init__(self, net: LiftedNetwork, states: list[Tensor]):
        self.net, self.states = net, states
        self.cache: dict[int, tuple[tuple[Tensor, ...], list[Tensor], Tensor]] = {}

    def get(self, m: int) -> tuple[Tensor, list[Tensor]]:
        layer = self.net.layers[m - 1]
        current = tuple(self.states[j] for j in layer.inputs)
        hit = self.cache.get(m)
        if hit is not None and all(a is b for a, b in zip(hit[0], current)):
            return hit[2], hit[1]
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(True) for t in current]
            z = layer(*leaves)
        self.cache[m] = (current, leaves, z)
        return z, leaves

    def input_gradient(self, l: int) -> Tensor:
        """sum_{m consumes l} lambda_m K_{m,l}^T (sigma_m(z_m) - x_m): gradient of the penalties in x_l."""
        net = self.net
        g = None
        for m in net.consumers[l]:
            z, leaves = self.get(m)
            with torch.no_grad():
                r = net.penalties[m - 1].weight * (net.layers[m - 1].activation(z.detach()) - self.states[m])
            pos = net.layers[m - 1].inputs.index(l)
            (gm,) = torch.autograd.grad(z, leaves[pos], grad_outputs=r, retain_graph=True)
            g = gm if g is None else g + gm
        return g


class _AdamInputStep:
    """Adam on the input block: gradient ``g`` of the smooth part plus that of the smoothed ``alpha J``."""

    def __init__(self, ctx: _Context, u: Tensor, lr: float, eps: float):
        self.ctx, self.eps = ctx, eps
        self.x = u.detach().clone().requires_grad_(True)
        self.opt = torch.optim.Adam([self.x], lr=lr)

    def step(self, u: Tensor, g: Tensor) -> Tensor:
        with torch.enable_grad():
            r = self.ctx.reg_value(self.x, self.eps).sum()
            gr = torch.autograd.grad(r, self.x)[0] if r.requires_grad else torch.zeros_like(g)
        _adam_step(self.opt, self.x, g + gr, self.ctx.box)
        return self.x.detach().clone()


def _invert_lifted(
    ctx: _Context, u: Tensor, lambdas, coupling: str, solver: str, lr: float, tv_eps: float
) -> InversionResult:
    net = lift(ctx.model, last="free", penalty="bregman", lambdas=lambdas)
    L = net.depth
    if any(lam <= 0 for lam in net.lambdas):
        raise ValueError(f"lambdas must be > 0 for inversion, got {net.lambdas}")
    f = ctx.f
    clipped = 0
    target = f
    if coupling == "hard":
        target, clipped = _project_domain(net.layers[-1].activation, f)
    states = net.init_states(u)
    if coupling == "hard":
        states[L] = target.clone()
    cache: dict = {}
    # the weights are fixed: safe steps 1/L_l with L_l = sum_m lambda_m ||K_m||^2 are computed once
    # (power iterations from the global RNG: seeded here, without touching the caller's RNG state)
    with torch.random.fork_rng(devices=[ctx.dev] if ctx.dev.type == "cuda" else []):
        torch.manual_seed(ctx.seed)
        lip_u = _lipschitz_state(net, states, 0, cache, iters=30)
        steps = {l: 1.0 / _lipschitz_state(net, states, l, cache, iters=30) for l in range(1, L)}
    lip_step = lip_u
    if L == 1 and coupling == "relaxed" and net.layers[0].inputs == (0,):
        # x_1 is minimised exactly right before every input step, so the input step is a (proximal)
        # gradient step on the marginal e(u) = min_{x_1} [...], whose per-unit curvature in z is at most
        # lambda max(1, lambda) / (1 + lambda) (instead of lambda): a larger safe step, kept 5% inside.
        lam = net.lambdas[0]
        lip_step = lip_u / max(1.0, min(1.9, 0.95 * (1 + lam) / max(1.0, lam)))
    if solver == "pdhg":
        stepper = _InputStep(ctx, lip_step, u)
    else:
        stepper = _AdamInputStep(ctx, u, lr, tv_eps)
    pen_L = net.penalties[-1]
    lam_L = pen_L.weight
    zs = _Preactivations(net, states)

    def sweep():
        """States top-down: x_L exactly (relaxed), then x_{L-1}..x_1 by forward-backward steps."""
        if coupling == "relaxed":
            z, _ = zs.get(L)
            with torch.no_grad():
                states[L] = pen_L.prox_state(f + lam_L * z.detach(), lam_L)
        for l in range(L - 1, 0, -1):
            z, _ = zs.get(l)
            g = zs.input_gradient(l) - net.penalties[l - 1].weight * z.detach()
            pen = net.penalties[l - 1]
            mu = steps[l]
            with torch.no_grad():
                states[l] = pen.prox_state(states[l] - mu * g, mu * pen.weight)

    def record(it, t):
        with torch.no_grad():
            parts = _lifted_parts(net, states, target)
        return _record(ctx, hist, it, t, states[0], parts["data"], penalty=parts["penalty"])

    hist: dict[str, list[float]] = {}
    converged = False
    it = 0
    record(0, 0.0)
    bar, t0 = _start_clock(ctx, f"lifted ({coupling})")
    calm = 0
    for it in range(1, ctx.max_iter + 1):
        before = list(states)  # state updates replace tensors, so these references keep the old values
        sweep()
        g = zs.input_gradient(0)
        with torch.no_grad():
            un = stepper.step(states[0], g)
            states[0] = un
            change = _rel_change([(states[l], before[l]) for l in range(L + 1)]) if ctx.tol > 0 else 1.0
        logged = it % ctx.log_every == 0 and it < ctx.max_iter
        if logged:
            record(it, time.perf_counter() - t0)
        diverged = f"lifted inversion diverged at iteration {it} (non-finite input)"
        calm = _end_iteration(ctx, bar, hist, logged, change, calm, diverged)
        if calm >= _PATIENCE:
            converged = True
            break
    elapsed = _stop_clock(ctx, bar, t0)
    sweep()  # states consistent with the final input
    objective, residual = record(it, elapsed)
    zs.cache.clear()
    info = {
        "coupling": coupling,
        "solver": solver,
        "lambdas": net.lambdas,
        "depth": L,
        "step": 1.0 / lip_step,
        "lipschitz": lip_u,
        "state_steps": steps,
        "clipped": clipped,
        "regulariser": ctx.regulariser,
        "states": [s.detach() for s in states[1:]],
    }
    return InversionResult(
        u=states[0].detach(),
        history=hist,
        iterations=it,
        time=elapsed,
        residual=residual,
        objective=objective,
        method="lifted",
        converged=converged,
        info=info,
    )


def _lifted_parts(net: LiftedNetwork, states, y) -> dict[str, Tensor]:
    """Per-sample data term 1/2||x_L - y||^2 and the lambda-weighted Bregman penalties (all layers)."""
    L = net.depth
    n = states[0].shape[0]
    pen = torch.zeros(n, device=states[0].device, dtype=states[0].dtype)
    for l in range(1, L + 1):
        z = net.preactivation(l, states)
        p = net.penalties[l - 1]
        pen = pen + p.weight * p.value(states[l], z)
    return {"data": _half_sq_dist(states[L], y), "penalty": pen}


# ---------------------------------------------------------------------------------------------------------
# gradient-based inversion (baseline)
# ---------------------------------------------------------------------------------------------------------
def _invert_gradient(ctx: _Context, u: Tensor, solver: str, lr: float, tv_eps: float) -> InversionResult:
    model, f = ctx.model, ctx.f
    hist: dict[str, list[float]] = {}
    info: dict[str, Any] = {"solver": solver, "regulariser": ctx.regulariser}

    eps = tv_eps if solver in ("adam", "lbfgs") else 0.0
    if solver == "pdhg":
        # step 1/L: one layer -> L = ||K||^2 (exact bound); deeper -> a power-iteration estimate of
        # ||J_N(u_0)||^2, doubled whenever the descent-lemma test of the last step fails
        net = lift(model, last="free")
        with torch.no_grad():
            states = net.init_states(u)
        if net.depth == 1:
            lip = _network_lipschitz_sq(net, states, ctx.gen)
            adaptive = False
        else:
            lip = 1.5 * _jacobian_norm_sq(model, u, ctx.gen)
            adaptive = True
        stepper = _InputStep(ctx, lip, u)
        info.update(lipschitz_initial=lip, adaptive_step=adaptive)
        prev = None
    x = u.detach().clone().requires_grad_(True)
    opt = None
    if solver == "adam":
        opt = torch.optim.Adam([x], lr=lr)
        info["lr"] = lr
    elif solver == "lbfgs":
        opt = torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=10, line_search_fn="strong_wolfe")

    def smooth_loss():
        out = model(x)
        d = _half_sq_dist(out, f)
        r = ctx.reg_value(x, eps) if solver != "pdhg" else torch.zeros_like(d)
        return out, d, r

    converged = False
    it = 0
    bar, t0 = _start_clock(ctx, f"gradient ({solver})")
    calm = 0
    for it in range(1, ctx.max_iter + 1):
        logged = it % ctx.log_every == 0 or it == ctx.max_iter
        old = x.detach().clone()
        with torch.enable_grad():
            if solver == "lbfgs":

                def closure():
                    opt.zero_grad(set_to_none=True)
                    _, d, r = smooth_loss()
                    total = (d + r).sum()
                    (g,) = torch.autograd.grad(total, x)
                    x.grad = g
                    return total

                out, d, _ = smooth_loss()
                opt.step(closure)
            else:
                out, d, r = smooth_loss()
                (g,) = torch.autograd.grad((d + r).sum(), x)
        if solver == "pdhg" and adaptive:
            with torch.no_grad():
                dsum = float(d.detach().sum())
                if prev is not None:
                    d0, g0, step_vec = prev
                    bound = d0 + float((g0 * step_vec).sum()) + 0.5 * lip * float(step_vec.pow(2).sum())
                    if dsum > bound + 1e-9 * abs(d0):
                        lip *= 2.0
                        stepper.set_lipschitz(lip)
        if logged:
            _record(ctx, hist, it - 1, time.perf_counter() - t0, old, d.detach(), out.detach())
        with torch.no_grad():
            if solver == "adam":
                _adam_step(opt, x, g, ctx.box)
            elif solver == "lbfgs":
                x.copy_(_clamp(x, ctx.box))
            else:
                x.copy_(stepper.step(x.detach(), g))
                if adaptive:
                    prev = (dsum, g, x.detach() - old)
            change = _rel_change([(x.detach(), old)]) if ctx.tol > 0 else 1.0
        diverged = f"gradient inversion ({solver}) diverged at iteration {it}"
        calm = _end_iteration(ctx, bar, hist, logged, change, calm, diverged)
        if calm >= _PATIENCE:
            converged = True
            break
    elapsed = _stop_clock(ctx, bar, t0)
    u = x.detach()
    if solver == "pdhg":
        info.update(lipschitz=stepper.lip, step=1.0 / stepper.lip)
    with torch.no_grad():
        out = model(u)
        d = _half_sq_dist(out, f)
    objective, residual = _record(ctx, hist, it, elapsed, u, d, out)
    return InversionResult(
        u=u,
        history=hist,
        iterations=it,
        time=elapsed,
        residual=residual,
        objective=objective,
        method="gradient",
        converged=converged,
        info=info,
    )
