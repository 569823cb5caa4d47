"""Stable inversion of pre-trained networks: the lifted Bregman inversion problem and a gradient baseline.

Given a trained network ``N`` and an observed output ``f ~ N(u_true)`` (possibly noisy), recover ``u_true``.

Lifted (Bregman) inversion (Wang & Benning, *A lifted Bregman formulation for the inversion of deep neural
networks*, Front. Appl. Math. Stat. 9, 2023; Wang et al., *A Unified Framework for Lifted Training and
Inversion Approaches*, arXiv 2510.09796, 2025) lifts every layer ``x_l = sigma_l(K_l x_{l-1})`` into a
state ``x_l`` coupled to its pre-activation by the Bregman penalty
``B_l(x, z) = Phi_l(x) + Phi_l^*(z) - <x, z>`` (zero iff ``x = sigma_l(z)``) and solves::

    relaxed:            min_{u, x_1..x_L}  1/2 ||x_L - f||^2 + sum_l lambda_l B_l(x_l, K_l x_{l-1}) + alpha J(u)
    hard coupling:      min_{u, x_1..x_{L-1}}  sum_{l<L} lambda_l B_l(x_l, K_l x_{l-1})
                                               + lambda_L B_L(f, K_L x_{L-1}) + alpha J(u)

with ``x_0 = u``, ``J`` = total variation (TV), Tikhonov ``1/2||u||^2`` or nothing, and optionally a box
constraint ``u in [lo, hi]``. The hard form is the direct formulation of P2; for a one-layer network it is
*convex* in ``u``. It needs ``f`` in the domain of the last activation's ``psi`` (``f >= 0`` for ReLU,
else the objective is unbounded below), so noisy ``f`` is projected onto that domain (clipped) first;
the number of clipped entries is reported in ``InversionResult.info["clipped"]``.
``coupling="continuation"`` solves the relaxed form for the first half of the budget and the hard form
(from the relaxed iterate) for the second half. ``coupling="active"`` couples hard only the outputs that are
confidently inside the last activation's range and relaxes the others: for a ReLU (clip) output, entries
below 0 (outside ``[lo, hi]``) come from noise alone, so ``s = sqrt(mean of their squared excursions)``
estimates the noise deviation of each sample, and the entries more than ``3 s`` inside the range are fixed
(``x_L = f``: no saturated units), the rest stay free (noise on an inactive unit cannot pull its
pre-activation up, the failure of the hard form under noise); other last activations are coupled hard
everywhere. With exact data (``s = 0``) it is the hard form on the active units. The default
``coupling="auto"`` is the active coupling with the inertial BCD (``inertia=0.9``), chosen on a validation
split of outputs of five networks (``benchmarks/results/inversion_validation.md``); it also fits exact data
(``alpha = 0``) of injective one-layer networks to a relative residual below 1e-4.

Solver (block-coordinate descent, one outer iteration):

1. the free states, top-down: ``x_L`` exactly, ``x_L = prox_{lambda_L Phi_L}(f + lambda_L z_L)``
   (relaxed form only; the exact block update of :func:`liftinv.lifted.state_step`), then
   ``x_{L-1}, ..., x_1`` by forward-backward steps
   ``x_l <- prox_{mu_l lambda_l Phi_l}(x_l - mu_l [sum_m lambda_m K_m^T(sigma_m(z_m) - x_m) - lambda_l z_l])``
   with the safe step ``mu_l = 1 / sum_m lambda_m ||K_m||^2`` (power iteration, computed once: the weights
   do not change), so no line search is needed;
2. the input block ``u``: one primal-dual (PDHG, Condat-Vu) step for TV, or one forward-backward step for
   Tikhonov / no regulariser, using the gradient of the smooth part in ``u``::

       g = sum_m lambda_m K_m^T (sigma_m(K_m u + b_m) - x_m)     (m: the layers fed by u)

   (the quantity :func:`liftinv.lifted.state_gradient` returns for state 0): no derivative of any
   activation and no backward pass through the nested network. The TV step is::

       u   <- proj_box(u - tau (g - alpha div p))
       p   <- proj_{|p_ij| <= 1}(p + s alpha grad(2 u_new - u_old))

   with ``tau = 1/L_u``, ``L_u = sum_m lambda_m ||K_m||^2`` and ``s = L_u / (16 alpha^2)``, which satisfies
   Condat-Vu's condition ``1/tau - s alpha^2 ||grad||^2 >= L_u / 2`` (``||grad||^2 <= 8``); the step is
   :func:`liftinv.operators.tv.tv_pdhg_step`, the one classical TV reconstruction uses.
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
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from liftinv.inversion._common import (
    COUPLINGS,
    GRADIENT_SOLVERS,
    LIFTED_SOLVERS,
    METHODS,
    REGULARISERS,
    InversionResult,
    StuckAtStartWarning,
    _box,
    _check_alpha,
    _clamp,
    _Context,
    _model_param,
)
from liftinv.inversion._gradient import _invert_gradient
from liftinv.inversion._lifted import _invert_lifted

__all__ = [
    "InversionResult",
    "StuckAtStartWarning",
    "invert",
    "input_shape_of",
    "REGULARISERS",
    "METHODS",
    "COUPLINGS",
    "GRADIENT_SOLVERS",
    "LIFTED_SOLVERS",
]


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
        Its ``input_shape`` attribute (set by :mod:`liftinv.inversion.recipes`), else ``(in_features,)`` when its first
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
    coupling: str = "auto",
    *,
    init: str | Tensor = "zeros",
    solver: str | None = None,
    lr: float = 3e-2,
    tv_eps: float = 1e-2,
    image_shape: Sequence[int] | None = None,
    log_every: int = 10,
    inertia: float = 0.9,
) -> InversionResult:
    """Invert a pre-trained network: recover inputs ``u`` with ``N(u) ~ f`` (batched).

    Lifted inversion (Wang & Benning, Front. Appl. Math. Stat. 9, 2023; Wang et al., arXiv 2510.09796)::

        min_{u, x_1..x_L} 1/2 ||x_L - f||^2 + sum_l lambda_l B_l(x_l, K_l x_{l-1}) + alpha J(u),  x_0 = u

    (``coupling="relaxed"``; ``"hard"`` fixes ``x_L = f`` and gives P2's direct form
    ``lambda_L B_L(f, K_L x_{L-1}) + ...``; ``"continuation"`` is relaxed then hard; ``"active"`` is hard on
    the confidently active outputs and relaxed on the others; the default ``"auto"`` is ``"active"``) by
    inertial block-coordinate descent: exact / forward-backward steps on
    the states, then one PDHG (TV) or proximal-gradient (Tikhonov, none) step on ``u`` with the gradient
    ``sum_m lambda_m K_m^T (sigma_m(K_m u) - x_m)`` -- no activation derivative and no backward pass through
    ``N``. Gradient inversion: ``min_u 1/2 ||N(u) - f||^2 + alpha J(u)`` through autograd. See the module
    docstring for the iterations and step sizes.

    Parameters
    ----------
    model : nn.Module
        The trained network ``N`` (not modified; a copy is moved when ``device``/``dtype`` differ). For
        ``method="lifted"`` anything :func:`liftinv.lifted.lift` accepts (MLP, conv, ResNet blocks, PNN
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
        Seeds the power iterations (step sizes).
    input_shape : sequence of int, optional
        Per-sample input shape of ``model``, e.g. ``(1, 64, 64)``. Needed unless the model starts with an
        ``nn.Linear`` (then ``(in_features,)``) or has an ``input_shape`` attribute.
    box : (lo, hi) or None
        Box constraint on ``u`` (default ``(0, 1)`` for images); ``None`` for no constraint.
    coupling : {"auto", "relaxed", "hard", "continuation", "active"}
        Lifted form: ``"relaxed"`` (free last state), ``"hard"`` (``x_L = f``, f projected onto dom psi_L,
        e.g. clipped to ``>= 0`` for ReLU; the count is in ``info["clipped"]``), ``"continuation"``
        (relaxed for the first half of ``max_iter``, hard for the second: relaxed early, hard late),
        ``"active"`` (hard on the outputs more than 3 estimated noise deviations inside the last
        activation's range, relaxed on the others; ``info["hard_fraction"]`` and ``info["noise_estimate"]``
        report the split) or
        ``"auto"`` (default): the active coupling, chosen on a validation split of outputs of five networks
        (``benchmarks/results/inversion_validation.md``: of relaxed / active / continuation with the
        inertial BCD, the largest worst-case PSNR margin over gradient inversion at noise >= 1 %). It fits
        exact data of an injective one-layer network (``alpha = 0``) to a relative residual below 1e-4.
    init : "zeros" or Tensor
        Initial ``u``: zeros, or a given tensor (``input_shape`` or ``[B, *input_shape]``); projected onto
        the box.
    solver : {"pdhg", "adam", "lbfgs"}, optional
        Input-block solver. Lifted: ``"pdhg"`` (default; P2's algorithm, exact TV) or ``"adam"`` (Adam on the
        lifted input gradient, TV smoothed with ``tv_eps``). Gradient: ``"adam"`` (default), ``"lbfgs"``
        (TV smoothed; box by projection after each step) or ``"pdhg"`` (exact TV, the same PDHG as lifted).
    lr : float
        Adam learning rate (units of ``u`` per step; ``lbfgs`` uses ``lr=1`` with a strong-Wolfe search).
    tv_eps : float
        TV smoothing of the Adam / L-BFGS solvers (``eps`` of :func:`liftinv.operators.total_variation`).
    image_shape : sequence of int, optional
        Shape ``(..., H, W)`` on which TV acts when the model takes flat inputs (e.g. ``(1, 64, 64)`` for
        ``input_shape=(4096,)``). Default: ``input_shape`` (which must then have >= 2 dimensions for TV).
    log_every : int
        Record the history every ``log_every`` iterations (the objective of deep lifted networks costs one
        extra forward pass).
    inertia : float
        Lifted only: heavy-ball weight ``beta`` in [0, 1) of the inertial block-coordinate descent
        (Pock & Sabach, *Inertial proximal alternating linearized minimization (iPALM) for nonconvex and
        nonsmooth problems*, SIAM J. Imaging Sci. 9(4), 2016): each state step is
        ``x_l <- prox(x_l - mu_l grad_l + beta (x_l - x_l^prev))`` and the PDHG input step starts from
        ``proj_box(u + beta (u - u^prev))``, with the gradient restart of O'Donoghue & Candes (Found.
        Comput. Math. 15, 2015): a sample's momentum in a block is dropped for one step when its step from
        the extrapolated point turns against it. 0 gives plain BCD (monotone with Tikhonov). Without
        inertia a deep network's states pass the data term down one small safe step per layer and sweep,
        so inverting a 5-7-layer encoder needs several times more iterations: on the 128-d code
        autoencoder, 1000 plain iterations reach 17.8 dB where the inertial ones reach 23.3 dB.

    Returns
    -------
    InversionResult
        ``u``, ``history``, ``iterations``, ``time``, ``residual``, ``objective``, ``converged``, ``info``.

    Raises
    ------
    ValueError
        For an ``f`` of the wrong shape or with NaN/inf, ``alpha < 0``, unknown options, an ``input_shape``
        that does not fit the model, or a device that is not available.
    liftinv.lifted.LiftingError, liftinv.lifted.activations.NotProximalError
        ``method="lifted"`` on a network with a layer that cannot be lifted (max pooling, batch norm, GELU...).

    Warns
    -----
    StuckAtStartWarning
        (a ``RuntimeWarning``) ``method="gradient"`` when ``u`` never moved from ``init``: the objective's gradient is zero there (every
        ReLU / soft-threshold unit inactive, e.g. at ``init="zeros"`` for a network flat around 0), a stationary
        point the solver cannot leave; ``info["stuck_at_start"]`` is then True. The lifted method does not share
        this trap (its states are variables of their own).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.ReLU())
    >>> u_true = torch.rand(2, 1, 8, 8)
    >>> f = net(u_true).detach()
    >>> res = invert(net, f, regulariser=None, max_iter=2000, progress=False)
    >>> bool(res.residual.max() < 1e-4)  # exact data, no regulariser: "auto" fits the output exactly
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
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if not tv_eps >= 0:
        raise ValueError(f"tv_eps must be >= 0, got {tv_eps}")
    try:
        inertia = float(inertia)
    except (TypeError, ValueError):
        raise ValueError(f"inertia must be a number in [0, 1), got {inertia!r}") from None
    if not 0 <= inertia < 1:
        raise ValueError(f"inertia must be in [0, 1), got {inertia}")
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
    elif isinstance(init, str) and init == "zeros":
        u0 = torch.zeros((B, *input_shape), device=dev, dtype=dtype)
    else:
        raise ValueError(f"init must be 'zeros' or a tensor, got {init!r}")
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
        dev=dev,
    )
    if method == "lifted":
        if coupling != "auto":
            return _invert_lifted(ctx, u0, lambdas, coupling, solver, lr, tv_eps, inertia)
        return _invert_auto(ctx, u0, lambdas, solver, lr, tv_eps, inertia)
    return _invert_gradient(ctx, u0, solver, lr, tv_eps)


def _invert_auto(
    ctx: _Context, u0: Tensor, lambdas, solver: str, lr: float, tv_eps: float, inertia: float
) -> InversionResult:
    """``coupling="auto"``: the ``"active"`` coupling for every sample (chosen on a validation split).

    Of the candidates relaxed / active / continuation (inertial BCD, PDHG), the active coupling had the
    largest worst-case PSNR margin over gradient inversion at noise >= 1 % across the five models of
    ``benchmarks/inversion.py`` (``benchmarks/results/inversion_validation.md``). It fits exact data of an
    injective one-layer network (noise estimate 0: hard coupling on the active units), so it also serves
    ``alpha = 0``.
    """
    res = _invert_lifted(ctx, u0, lambdas, "active", solver, lr, tv_eps, inertia)
    res.info["coupling_option"] = "auto"
    return res
