"""Lifted Bregman inversion (P2): PDHG or Adam on the input, block steps on the states."""

from __future__ import annotations

import time

import torch
from torch import Tensor

from liftinv.inversion._common import (
    _PATIENCE,
    InversionResult,
    _active_mask,
    _adam_step,
    _clamp,
    _Context,
    _end_iteration,
    _half_sq_dist,
    _InputStep,
    _project_domain,
    _record,
    _rel_change,
    _start_clock,
    _stop_clock,
)
from liftinv.lifted.network import LiftedNetwork, lift
from liftinv.lifted.norms import lipschitz_state
from liftinv.metrics import History


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


#: (names in the error, advice) for layers that lift() rejects; the first match applies
_SUGGESTIONS = (
    (
        ("MaxPool", "AdaptiveMaxPool"),
        "max pooling is not affine: replace it by average pooling (nn.AvgPool2d, linear) or a strided "
        "convolution and retrain, or use method='gradient'",
    ),
    (
        ("BatchNorm",),
        "batch norm in eval mode is affine: fold it into the preceding convolution / linear layer "
        "(liftinv.inversion.recipes.fold_batchnorm) before inverting, or use method='gradient'",
    ),
    (
        ("GELU", "SiLU", "Mish", "Hardswish", "ELU", "sign", "threshold"),
        "the activation is not a proximal map: replace it by a proximal one (ReLU, LeakyReLU, Softshrink, "
        "Tanh, Sigmoid) and retrain, or use method='gradient'",
    ),
    (
        ("Attention", "Transformer"),
        "attention multiplies activations with each other, so it is not 'affine map then proximal "
        "activation' and has no lifted form: use method='gradient'",
    ),
    (("Dropout",), "call model.eval() and remove nn.Dropout (the identity in eval mode)"),
)


def _lift_for_inversion(model, lambdas) -> LiftedNetwork:
    """lift() with the advice that applies added to the error of a layer that cannot be lifted."""
    from liftinv.lifted import LiftingError
    from liftinv.lifted.activations import NotProximalError

    try:
        return lift(model, last="free", penalty="bregman", lambdas=lambdas)
    except (LiftingError, NotProximalError) as exc:
        msg = str(exc)
        head = msg.split(". Supported:")[0].rstrip(". ")
        inner = [type(m).__name__ for m in model.modules() if "attention" in type(m).__name__.lower()]
        inner = [n for n in inner if n not in head]
        if inner:
            head = f"{head} (it contains {inner[0]})"
        for names, advice in _SUGGESTIONS:
            if any(n.lower() in head.lower() for n in names):
                raise type(exc)(f"{head}. Lifted inversion cannot use this layer; {advice}.") from None
        raise type(exc)(f"{msg} -- or use method='gradient'") from None


def _restarted(prev: Tensor | None, cur: Tensor, new: Tensor, inertia: float) -> Tensor:
    """The point the next heavy-ball term starts from: ``cur`` (momentum ``cur - prev`` kept), or ``new`` for
    the samples whose proximal-gradient step from the extrapolated point ``y = cur + beta (cur - prev)``
    turned against the momentum, ``<new - y, cur - prev> < 0`` (momentum zero next time: the gradient
    restart of O'Donoghue & Candes, *Adaptive restart for accelerated gradient schemes*, Found. Comput.
    Math. 15, 2015)."""
    if prev is None:
        return cur
    n = cur.shape[0]
    mom = cur - prev
    dot = ((new - cur - inertia * mom).reshape(n, -1) * mom.reshape(n, -1)).sum(1)
    return torch.where((dot < 0).reshape((n,) + (1,) * (cur.dim() - 1)), new, cur)


def _invert_lifted(
    ctx: _Context,
    u: Tensor,
    lambdas,
    coupling: str,
    solver: str,
    lr: float,
    tv_eps: float,
    inertia: float = 0.0,
) -> InversionResult:
    net = _lift_for_inversion(ctx.model, lambdas)
    L = net.depth
    if any(lam <= 0 for lam in net.lambdas):
        raise ValueError(f"lambdas must be > 0 for inversion, got {net.lambdas}")
    f = ctx.f
    clipped = 0
    target = f
    # whether the last state ends fixed to the data (x_L = f), and from which iteration on: hard from the
    # start, continuation from the second half of the budget, relaxed and active never ("auto" never gets
    # here: the API resolves it to "active")
    ends_hard = coupling in ("hard", "continuation")
    mask = None  # "active": entries of x_L fixed to f (the others relaxed)
    if ends_hard or coupling == "active":
        target, clipped = _project_domain(net.layers[-1].activation, f)
    if coupling == "active":
        mask, noise_estimate = _active_mask(net.layers[-1].activation, f)
    switch = 0 if coupling == "hard" else (ctx.max_iter // 2 if ends_hard else None)
    hard_now = switch == 0
    states = net.init_states(u)
    if hard_now:
        states[L] = target.clone()
    elif mask is not None:
        states[L] = torch.where(mask, target, states[L])
    data_target = torch.where(mask, target, f) if mask is not None else f
    cache: dict = {}
    # the weights are fixed: safe steps 1/L_l with L_l = sum_m lambda_m ||K_m||^2 are computed once
    # (power iterations from the global RNG: seeded here, without touching the caller's RNG state)
    with torch.random.fork_rng(devices=[ctx.dev] if ctx.dev.type == "cuda" else []):
        torch.manual_seed(ctx.seed)
        lip_u = lipschitz_state(net, states, 0, cache, iters=30)
        steps = {l: 1.0 / lipschitz_state(net, states, l, cache, iters=30) for l in range(1, L)}
    lip_step = lip_u
    if L == 1 and not ends_hard and mask is None and net.layers[0].inputs == (0,):
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
        if not hard_now:
            z, _ = zs.get(L)
            with torch.no_grad():
                states[L] = pen_L.prox_state(f + lam_L * z.detach(), lam_L)
                if mask is not None:
                    states[L] = torch.where(mask, target, states[L])
        for l in range(L - 1, 0, -1):
            z, _ = zs.get(l)
            g = zs.input_gradient(l) - net.penalties[l - 1].weight * z.detach()
            pen = net.penalties[l - 1]
            mu = steps[l]
            with torch.no_grad():
                x = states[l] - mu * g
                if inertia and prev[l] is not None:  # heavy-ball term of the inertial BCD
                    x = x + inertia * (states[l] - prev[l])
                new = pen.prox_state(x, mu * pen.weight)
                prev[l] = _restarted(prev[l], states[l], new, inertia) if inertia else states[l]
                states[l] = new

    def record(it, t):
        with torch.no_grad():
            parts = _lifted_parts(net, states, target if hard_now else data_target)
        return _record(ctx, hist, it, t, states[0], parts["data"], penalty=parts["penalty"])

    prev = [None] * (L + 1)  # the previous value of every block (heavy-ball term)
    u_inertia = inertia if solver == "pdhg" else 0.0  # Adam carries its own momentum on the input
    hist = History(method="lifted")
    converged = False
    it = 0
    record(0, 0.0)
    bar, t0 = _start_clock(ctx, f"lifted ({coupling})")
    calm = 0
    for it in range(1, ctx.max_iter + 1):
        if switch and it == switch + 1:
            # continuation: fix x_L = f (projected) from here on
            hard_now = True
            states[L] = target.clone()
            calm = 0
            prev = [None] * (L + 1)  # the inertia restarts with the new problem
        before = list(states)  # state updates replace tensors, so these references keep the old values
        sweep()
        g = zs.input_gradient(0)
        with torch.no_grad():
            u_cur = states[0]
            if u_inertia and prev[0] is not None:
                u_cur = _clamp(u_cur + u_inertia * (states[0] - prev[0]), ctx.box)
            un = stepper.step(u_cur, g)
            prev[0] = _restarted(prev[0], states[0], un, u_inertia) if u_inertia else states[0]
            states[0] = un
            change = _rel_change([(states[l], before[l]) for l in range(L + 1)]) if ctx.tol > 0 else 1.0
        logged = it % ctx.log_every == 0 and it < ctx.max_iter
        if logged:
            record(it, time.perf_counter() - t0)
        diverged = f"lifted inversion diverged at iteration {it} (non-finite input)"
        calm = _end_iteration(ctx, bar, hist, logged, change, calm, diverged)
        if calm >= _PATIENCE and (not switch or it > switch):
            converged = True
            break
    elapsed = _stop_clock(ctx, bar, t0)
    sweep()  # states consistent with the final input
    objective, residual = record(it, elapsed)
    zs.cache.clear()
    info = {
        "coupling": coupling,
        "switch": switch,
        "ends_hard": ends_hard,
        "solver": solver,
        "inertia": inertia,
        "lambdas": net.lambdas,
        "depth": L,
        "step": 1.0 / lip_step,
        "lipschitz": lip_u,
        "state_steps": steps,
        "clipped": clipped,
        "hard_fraction": None if mask is None else mask.float().mean().item(),
        "noise_estimate": None if mask is None else noise_estimate.detach().cpu(),
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
