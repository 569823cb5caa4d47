"""Operator norms and Lipschitz bounds for the lifted engine: the one home of power iterations.

Step sizes of every lifted solver are 1/L with L a squared operator norm: of a state map
``x_l -> z_m(x_l)`` (:func:`lipschitz_state`), of a layer's map in its parameters
(:func:`param_map_norm_sq`), of a data matrix ``[X; 1]`` (:func:`exact_sq_norm`, :func:`power_sq_norm`) or of
a whole network's Jacobian (:func:`jacobian_norm_sq`, used by inversion).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from liftinv.lifted.network import _PARAM_FREE_LINEAR, LiftedLayer, LiftedNetwork

__all__ = [
    "lipschitz_state",
    "param_map_norm_sq",
    "exact_sq_norm",
    "power_sq_norm",
    "linear_part_norm",
    "network_lipschitz_sq",
    "jacobian_norm_sq",
]


def lipschitz_state(net: LiftedNetwork, states, l: int, cache: dict | None, iters: int = 12) -> float:
    """Upper estimate of the Lipschitz constant of grad_x of the smooth part: sum_m lambda_m ||K_{m,l}||^2."""
    total = 0.0
    for m in net.consumers[l]:
        layer = net.layers[m - 1]
        pen = net.penalties[m - 1]
        lam = 1.0 if (m == net.depth and net.last == "fixed") else pen.weight
        key = ("state", l, m)
        lin = layer.linear
        if isinstance(lin, nn.Linear) and layer.inputs == (l,):
            norm_sq = float(torch.linalg.matrix_norm(lin.weight.detach(), ord=2)) ** 2
        else:
            x1 = states[l][:1].detach()
            base_inputs = [torch.zeros_like(states[j][:1]) for j in layer.inputs]
            pos = layer.inputs.index(l)

            def K(v, base_inputs=base_inputs, pos=pos, layer=layer):
                ins = list(base_inputs)
                ins[pos] = v
                return layer(*ins) - layer(*base_inputs)

            v = cache.get(key) if cache is not None else None
            if v is None or v.shape != x1.shape:
                v = torch.randn_like(x1)
            else:
                iters = 3  # warm start: the previous vector is already close (backtracking keeps it safe)
            norm_sq = 0.0
            with torch.enable_grad():
                for _ in range(iters):
                    v = v / v.norm().clamp(min=1e-30)
                    vv = v.detach().requires_grad_(True)
                    kv = K(vv)
                    (w,) = torch.autograd.grad(kv, vv, grad_outputs=kv.detach())
                    norm_sq = float((w * v).sum())
                    v = w.detach()
            if cache is not None:
                cache[key] = v
            norm_sq *= 1.05
        total += lam * norm_sq
    if l == net.depth:  # fit term of a free last state
        total += 1.0
    pen = net.penalties[l - 1] if l >= 1 else None
    if pen is not None and not pen.convex_in_state:
        total += pen.weight
    return max(total, 1e-12)


def param_map_norm_sq(
    layer: LiftedLayer, xs: list[Tensor], cache: dict | None, key, iters: int = 12
) -> float:
    """||M_X||^2 for the map theta -> z = K_theta(X), linear in theta for affine layers."""
    lin = layer.linear
    mods = list(lin) if isinstance(lin, nn.Sequential) else [lin]
    if (
        isinstance(mods[-1], nn.Linear)
        and len(xs) == 1
        and all(isinstance(m, _PARAM_FREE_LINEAR) for m in mods[:-1])
    ):
        # Dense layer, possibly after parameter-free linear maps P (Flatten, AvgPool): ||[P(X); 1]||_2^2 exactly.
        X = xs[0]
        for m in mods[:-1]:
            X = m(X)
        X = X.reshape(X.shape[0], -1)
        if mods[-1].bias is not None:
            X = torch.cat([X, torch.ones_like(X[:, :1])], 1)
        return float(torch.linalg.matrix_norm(X, ord=2)) ** 2
    names = [n for n, p in lin.named_parameters() if p.requires_grad]
    params = dict(lin.named_parameters())
    v = cache.get(key) if cache is not None else None
    if v is None:
        v = {n: torch.randn_like(params[n]) for n in names}
    else:
        iters = 3  # warm start (DESIGN §4: a warm-started power iteration x1.05 is as good as exact)
    norm_sq = 0.0
    with torch.enable_grad():
        for _ in range(iters):
            nrm = torch.sqrt(sum((t * t).sum() for t in v.values())).clamp(min=1e-30)
            vv = {n: (t / nrm).detach().requires_grad_(True) for n, t in v.items()}
            z = functional_call(lin, vv, tuple(xs))
            grads = torch.autograd.grad(z, list(vv.values()), grad_outputs=z.detach())
            norm_sq = float(sum((g * vv[n].detach()).sum() for g, n in zip(grads, vv)))
            v = {n: g.detach() for n, g in zip(vv, grads)}
    if cache is not None:
        cache[key] = v
    return 1.05 * norm_sq


def exact_sq_norm(A: Tensor, augment: bool = False) -> float:
    """||A||_2^2 (or ||[A, 1]||_2^2), the largest eigenvalue of the smaller Gram matrix, in float64."""
    A = A.reshape(A.shape[0], -1).double()
    if A.shape[0] <= A.shape[1] + int(augment):
        G = A @ A.T + (1.0 if augment else 0.0)
    else:
        G = A.T @ A
        if augment:
            s = A.sum(0, keepdim=True)
            corner = A.new_full((1, 1), float(A.shape[0]))
            G = torch.cat([torch.cat([G, s.T], 1), torch.cat([s, corner], 1)], 0)
    return float(torch.linalg.eigvalsh(G)[-1]) * (1 + 1e-6) + 1e-30


def power_sq_norm(A: Tensor, augment: bool, cache: dict, key, iters: int = 3, cold_iters: int = 30) -> float:
    """Warm-started power-iteration estimate of ||A||_2^2 (or ||[A, 1]||_2^2), times 1.05.

    The vector is kept in ``cache[key]``; a cold start (seeded, deterministic) runs ``cold_iters`` iterations,
    a warm start ``iters``.
    """
    A = A.reshape(A.shape[0], -1)
    n = A.shape[1] + int(augment)
    v = cache.get(key)
    if v is None or v.shape != (n,) or v.device != A.device or v.dtype != A.dtype:
        v = torch.randn(n, generator=torch.Generator().manual_seed(12345)).to(A.device, A.dtype)
        iters = cold_iters
    est = 0.0
    for _ in range(iters):
        v = v / v.norm().clamp(min=1e-30)
        if augment:
            u = A @ v[:-1] + v[-1]
            w = torch.cat([A.T @ u, u.sum().reshape(1)])
        else:
            u = A @ v
            w = A.T @ u
        est = float(u @ u)
        v = w
    cache[key] = v
    return 1.05 * est + 1e-30


def linear_part_norm(layer, inputs: list[Tensor], pos: int, iters: int, gen: torch.Generator) -> float:
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


def network_lipschitz_sq(
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
            total += linear_part_norm(layer, ins, pos, iters, gen) * lip[j]
        lip.append(total)
    return max(lip[-1] ** 2, 1e-12)


def jacobian_norm_sq(model: nn.Module, u: Tensor, gen: torch.Generator, iters: int = 20) -> float:
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
            v = v / v.reshape(x.shape[0], -1).norm(dim=1).clamp(min=1e-30).reshape(-1, *([1] * (v.dim() - 1)))
            (jv,) = torch.autograd.grad(jtw, w, grad_outputs=v, retain_graph=True)
            (z,) = torch.autograd.grad(out, x, grad_outputs=jv.detach(), retain_graph=True)
            est = (z * v).reshape(x.shape[0], -1).sum(1)
            v = z.detach()
    return max(float(est.max()), 1e-12)
