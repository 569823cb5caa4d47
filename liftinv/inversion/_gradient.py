"""Gradient-based inversion (the baseline): Adam, L-BFGS or PDHG through autograd."""

from __future__ import annotations

import time
import warnings
from typing import Any

import torch
from torch import Tensor

from liftinv.inversion._common import (
    _PATIENCE,
    InversionResult,
    StuckAtStartWarning,
    _adam_step,
    _clamp,
    _Context,
    _end_iteration,
    _half_sq_dist,
    _InputStep,
    _record,
    _rel_change,
    _start_clock,
    _stop_clock,
)
from liftinv.lifted.network import lift
from liftinv.lifted.norms import jacobian_norm_sq, network_lipschitz_sq
from liftinv.metrics import History


# gradient-based inversion (baseline)
# ---------------------------------------------------------------------------------------------------------
def _invert_gradient(ctx: _Context, u: Tensor, solver: str, lr: float, tv_eps: float) -> InversionResult:
    model, f = ctx.model, ctx.f
    hist = History(method="gradient")
    info: dict[str, Any] = {"solver": solver, "regulariser": ctx.regulariser}

    eps = tv_eps if solver in ("adam", "lbfgs") else 0.0
    if solver == "pdhg":
        # step 1/L: one layer -> L = ||K||^2 (exact bound); deeper -> a power-iteration estimate of
        # ||J_N(u_0)||^2, doubled whenever the descent-lemma test of the last step fails
        net = lift(model, last="free")
        with torch.no_grad():
            states = net.init_states(u)
        if net.depth == 1:
            lip = network_lipschitz_sq(net, states, ctx.gen)
            adaptive = False
        else:
            lip = 1.5 * jacobian_norm_sq(model, u, ctx.gen)
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
    start = u
    u = x.detach()
    if torch.equal(u, start):
        # a zero gradient at the start (every ReLU / soft-threshold unit inactive, e.g. at init="zeros" for a
        # network with a dead zone around 0) is a stationary point the solver cannot leave: say so instead of
        # returning the start as a converged answer silently
        info["stuck_at_start"] = True
        warnings.warn(
            f"gradient inversion ({solver}) did not move from its initial u in {it} iterations: the gradient of "
            "the objective is zero there (e.g. every ReLU / soft-threshold unit inactive at init='zeros'). "
            "Start from another init or use method='lifted', whose states are not tied to the network's gradient",
            StuckAtStartWarning,
            stacklevel=3,
        )
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
