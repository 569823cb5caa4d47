"""Plumbing shared by the inversion solvers: options, the result, argument checks, the run context, logging.

Total variation (value, gradient, the PDHG step) lives in :mod:`liftinv.operators.tv`; it is imported where
it is used, so that importing :mod:`liftinv.inversion` does not load the operators (and deepinv).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from liftinv.lifted.activations import Clip, Identity, LeakyReLU, ReLU, Sigmoid, SoftThreshold, Tanh
from liftinv.metrics import History

REGULARISERS = ("tv", "tikhonov", None)
METHODS = ("lifted", "gradient")
COUPLINGS = ("auto", "relaxed", "hard", "continuation", "active")
GRADIENT_SOLVERS = ("adam", "lbfgs", "pdhg")
LIFTED_SOLVERS = ("pdhg", "adam")


# ---------------------------------------------------------------------------------------------------------
# result
# ---------------------------------------------------------------------------------------------------------
class StuckAtStartWarning(RuntimeWarning):
    """Gradient inversion ended where it started: the objective's gradient is zero at ``init`` (every ReLU /
    soft-threshold unit inactive, e.g. at ``init="zeros"`` for a network flat around 0), a stationary point the
    solver cannot leave. Filter or catch it by this class (``liftinv invert`` prints it as one line)."""


@dataclass
class InversionResult:
    """Result of :func:`invert`.

    Attributes
    ----------
    u : Tensor
        Recovered inputs, batched ``[B, *input_shape]`` (on the device used for the inversion).
    history : liftinv.metrics.History
        One record per logged iteration (every ``log_every``): ``iteration``, ``objective`` (batch mean of
        the minimised objective; for ``gradient`` the un-smoothed one), ``data``, ``penalty`` (lifted only),
        ``regulariser`` (``alpha J(u)``), ``residual`` (batch mean of ``||N(u) - f|| / ||f||``), ``time``.
        ``history["objective"]`` is a column, ``history[-1]`` the last record (the same shape as
        :func:`liftinv.fit` and :func:`liftinv.operators.reconstruct`).
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
    history: History
    iterations: int
    time: float
    residual: Tensor
    objective: Tensor
    method: str
    converged: bool = False
    info: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------------


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


#: outputs further than this many estimated noise deviations inside the activation's range are coupled hard
_ACTIVE_MARGIN = 3.0


def _active_mask(activation, f: Tensor) -> tuple[Tensor, Tensor]:
    """Entries of ``f`` coupled hard by ``coupling="active"``, and the per-sample noise estimate.

    A ReLU (clip) output lies in ``[0, inf)`` (``[lo, hi]``), so entries outside come from noise alone. For
    zero-mean Gaussian noise on an entry whose clean value is at the bound, ``E[e^2 | e < 0] = s^2``, so
    ``s = sqrt(mean of the squared excursions outside the range)`` estimates the noise deviation per sample
    (0 when no entry leaves the range, e.g. exact data). The entries more than ``3 s`` inside the range are
    confidently active: they are coupled hard (``x_L = f``, no saturation), the others relaxed (noise on an
    inactive unit cannot pull its pre-activation up). Other activations (identity, leaky ReLU, tanh, ...)
    have no dead zone to protect: every entry is coupled hard.
    """
    n = f.shape[0]
    flat = f.reshape(n, -1)
    if isinstance(activation, ReLU | Clip):
        lo = 0.0 if isinstance(activation, ReLU) else activation.lo
        hi = math.inf if isinstance(activation, ReLU) else activation.hi
        out = (lo - flat).clamp(min=0) + (flat - hi).clamp(min=0)
        count = (out > 0).sum(1).clamp(min=1)
        s = (out.square().sum(1) / count).sqrt()
        m = _ACTIVE_MARGIN * s.unsqueeze(1)
        mask = (flat > lo + m) & (flat < hi - m)
        return mask.reshape(f.shape), s
    return torch.ones_like(f, dtype=torch.bool), torch.zeros(n, device=f.device, dtype=f.dtype)


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
    dev: torch.device
    seed: int = 0

    def img(self, u: Tensor) -> Tensor:
        return u.reshape(u.shape[0], *self.image_shape)

    def reg_value(self, u: Tensor, eps: float = 0.0) -> Tensor:
        """alpha J(u) per sample."""
        if self.regulariser == "tv":
            from liftinv.operators.tv import total_variation

            return self.alpha * total_variation(self.img(u), eps)
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

    ``step(u, g)`` takes the gradient ``g`` of the smooth part at ``u`` and returns the new ``u``. The TV
    step is :func:`liftinv.operators.tv.tv_pdhg_step` with the dual variable in the unit ball and the
    weight ``alpha`` (per sample) on ``grad``. Its dual update needs the extrapolation ``2 u_new - u`` of
    the previous step, kept here with that step's dual step size, so that the sequence is the one of
    Condat-Vu's iteration ``u <- proj_box(u - tau (g - alpha div p))``,
    ``p <- proj_{|p_ij| <= 1}(p + s alpha grad(2 u_new - u))``.
    """

    def __init__(self, ctx: _Context, lip: float, u: Tensor):
        self.ctx = ctx
        self.p = None
        self._extrapolated = None  # (grad(2 u_new - u), dual step) of the previous step
        if ctx.regulariser == "tv":
            img = ctx.img(u)
            shape = (*img.shape[:-2], 2, *img.shape[-2:])
            self.p = torch.zeros(shape, device=u.device, dtype=u.dtype)
        self.set_lipschitz(lip)

    def set_lipschitz(self, lip: float) -> None:
        """tau = 1/L; dual step s = L / (16 alpha^2), so that s alpha^2 ||grad||^2 <= L/2 (||grad||^2 <= 8)."""
        self.lip = float(lip)
        self.tau = 1.0 / self.lip
        a = self.ctx.alpha
        self.dual = torch.where(a > 0, self.lip / (16 * a.clamp(min=1e-30) ** 2), torch.zeros_like(a))

    def step(self, u: Tensor, g: Tensor) -> Tensor:
        ctx, tau, a = self.ctx, self.tau, self.ctx.alpha
        if ctx.regulariser == "tv":
            from liftinv.operators.tv import grad2d, tv_pdhg_step

            img_u = ctx.img(u)
            grad_bar, sigma = self._extrapolated or (None, 0.0)
            un, self.p = tv_pdhg_step(
                img_u, self.p, ctx.img(g), tau, sigma, grad_bar, weight=_bshape(a, img_u), bounds=ctx.box
            )
            self._extrapolated = (grad2d(2 * un - img_u), _bshape(self.dual * a, self.p))
            return un.reshape(u.shape)
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


def _log(hist: History, **vals):
    hist.append(**{k: float(v) for k, v in vals.items()})
    if not math.isfinite(hist[-1]["objective"]):
        raise FloatingPointError(
            f"inversion diverged: non-finite objective at iteration {vals.get('iteration')}"
        )


def _record(
    ctx: _Context,
    hist: History,
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
    ctx: _Context, bar, hist: History, logged: bool, change: float, calm: int, diverged: str
) -> int:
    """Close one iteration: progress display, divergence check and the count of the stopping rule.

    Returns the number of consecutive iterations whose relative change is below ``ctx.tol`` (the caller
    stops once it reaches ``_PATIENCE``); raises ``FloatingPointError(diverged)`` for a non-finite change.
    """
    if logged and ctx.progress:
        bar.set_postfix(objective=f"{hist[-1]['objective']:.4g}", residual=f"{hist[-1]['residual']:.2e}")
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
