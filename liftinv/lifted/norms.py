"""Operator norms and Lipschitz bounds for the lifted engine: the one home of power iterations.

Step sizes of every lifted solver are 1/L with L a squared operator norm: of a state map
``x_l -> z_m(x_l)`` (:func:`lipschitz_state`), of a layer's map in its parameters
(:func:`param_map_norm_sq`), of a data matrix ``[X; 1]`` (:func:`exact_sq_norm`, :func:`power_sq_norm`) or of
a whole network's Jacobian (:func:`jacobian_norm_sq`, used by inversion). Every estimate runs the single loop
:func:`power_iteration` (also behind :func:`liftinv.operators.power_method` and ``LinearOperator.norm()``);
the functions here only say which Gram map ``A^T A`` it is applied to, how it is started (cold, or warm from
a cached vector) and which safety factor multiplies the estimate.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from liftinv.lifted.network import _PARAM_FREE_LINEAR, LiftedLayer, LiftedNetwork

__all__ = [
    "power_iteration",
    "lipschitz_state",
    "state_map_norms",
    "param_map_norm_sq",
    "exact_sq_norm",
    "exact_sq_norms",
    "power_sq_norm",
    "power_sq_norms",
    "linear_part_norm",
    "network_lipschitz_sq",
    "jacobian_norm_sq",
]


#: a vector of the power iteration: one tensor, or a dict of tensors (e.g. a layer's parameters)
Vector = Tensor | dict[str, Tensor]


def _norm(v: Vector, batched: bool) -> Tensor:
    """Euclidean norm of ``v`` (per sample, broadcastable against ``v``, when ``batched``)."""
    if isinstance(v, dict):
        return torch.sqrt(sum((t * t).sum() for t in v.values()))
    if batched:
        return v.reshape(v.shape[0], -1).norm(dim=1).reshape(-1, *([1] * (v.dim() - 1)))
    return v.norm()


def _dot(v: Vector, w: Vector, batched: bool) -> Tensor:
    """``<v, w>`` (per sample, shape ``[B]``, when ``batched``)."""
    if isinstance(v, dict):
        return sum((w[n] * t).sum() for n, t in v.items())
    if batched:
        return (w * v).reshape(v.shape[0], -1).sum(1)
    return (w * v).sum()


def _zero_mask(v: Vector, batched: bool) -> Tensor:
    """Where ``v`` is zero: one flag (a flag per sample, broadcastable against ``v``, when ``batched``)."""
    return _norm(v, batched) == 0


def _reseed_zero(v: Vector, batched: bool) -> Vector:
    """``v``, with a zero vector (or zero samples when ``batched``) replaced by a fixed-seed random one."""
    zero = _zero_mask(v, batched)
    if not bool(zero.any()):
        return v
    gen = torch.Generator().manual_seed(20240611)

    def draw(t: Tensor) -> Tensor:
        return torch.randn(t.shape, generator=gen, dtype=t.dtype).to(t.device)

    if isinstance(v, dict):
        return {n: draw(t) for n, t in v.items()}
    return torch.where(zero, draw(v), v)


def _keep_if_zero(w: Vector, v: Vector, batched: bool) -> Vector:
    """``w = M v``, except where it is zero: there the (normalised) ``v``, so no warm start is ever zero."""
    if isinstance(w, dict):
        return v if bool(_zero_mask(w, batched)) else w
    return torch.where(_zero_mask(w, batched), v, w)  # (no host sync: GPU-friendly)


def power_iteration(
    apply_gram: Callable[[Any], Any],
    v0: Vector,
    iters: int,
    *,
    tol: float | None = None,
    batched: bool = False,
) -> tuple[float | Tensor, Vector]:
    """Power iteration for the largest eigenvalue of a symmetric positive semi-definite map ``M = A^T A``.

    The one power-iteration loop of the code base. Each iteration normalises, applies ``M`` and takes the
    Rayleigh quotient::

        v <- v / max(||v||, 1e-30);   w = M v;   lambda = <v, w>;   v <- w

    ``lambda`` increases towards ``lambda_max(M) = ||A||^2`` (linearly, with the ratio of the two largest
    eigenvalues), so every estimate is a lower bound: callers multiply it by a safety factor (``1.05``
    for the lifted step sizes) or iterate to a tolerance (:func:`liftinv.operators.power_method`).

    Parameters
    ----------
    apply_gram : callable
        ``v -> M v``; or ``v -> (M v, q)`` when the caller has the quotient ``q = <v, M v>`` in a better form
        (e.g. ``||A v||^2``, never negative). ``M`` must be linear, symmetric and positive semi-definite.
    v0 : Tensor or dict of Tensor
        Start vector (any scale; a random one, or the ``v`` returned by an earlier call to warm-start). A
        dict is one vector made of several blocks (e.g. a layer's weight and bias).
    iters : int
        Maximum number of iterations (``>= 1``).
    tol : float, optional
        Stop early once ``|lambda_k - lambda_{k-1}| <= tol |lambda_k|`` (with ``lambda_0 = 0``; batched: for
        every sample), or when ``lambda_k`` is not finite. Default: run all ``iters`` iterations.
    batched : bool, default False
        ``v0`` is a batch ``[B, ...]`` of independent problems (dimension 0): norms and quotients are per
        sample and ``lambda`` is a tensor ``[B]``.

    Returns
    -------
    estimate : float or Tensor
        The last Rayleigh quotient ``<v, M v>`` with ``||v|| = 1``; a tensor ``[B]`` when ``batched``.
    v : Tensor or dict of Tensor
        The last ``M v`` (not normalised): the warm start of the next call. Never zero: where ``M v = 0``
        (a map of norm 0, e.g. a residual ``(1 - tau) I`` at ``tau = 1``) it is the last normalised ``v``,
        so the map can still be estimated once it changes; a zero start vector ``v0`` is re-seeded with a
        fixed-seed random vector (per sample when ``batched``).

    Examples
    --------
    >>> d = torch.tensor([1.0, 3.0, 2.0], dtype=torch.float64)
    >>> est, v = power_iteration(lambda v: d * v, torch.ones(3, dtype=torch.float64), 60)
    >>> round(est, 8), int(v.abs().argmax())
    (3.0, 1)
    >>> D = torch.tensor([[1.0, 2.0], [4.0, 0.5]], dtype=torch.float64)  # two samples, two problems
    >>> est, _ = power_iteration(lambda v: D * v, torch.ones(2, 2, dtype=torch.float64), 200, batched=True)
    >>> [round(float(e), 6) for e in est]
    [2.0, 4.0]

    References
    ----------
    Golub & Van Loan, *Matrix Computations*, 4th ed., 2013, section 8.2.1 (the power method); Kuczynski &
    Wozniakowski, Estimating the largest eigenvalue by the power and Lanczos algorithms with a random
    start, SIAM J. Matrix Anal. Appl. 13(4), 1992 (random starts).
    """
    if iters < 1:
        raise ValueError(f"power_iteration: iters must be >= 1, got {iters}")
    v = _reseed_zero(v0, batched)
    estimate, previous = None, 0.0
    for _ in range(iters):
        nrm = _norm(v, batched).clamp(min=1e-30)
        v = {n: t / nrm for n, t in v.items()} if isinstance(v, dict) else v / nrm
        out = apply_gram(v)
        w, estimate = out if isinstance(out, tuple) else (out, _dot(v, out, batched))
        w = _keep_if_zero(w, v, batched)
        if tol is not None:
            current = estimate if batched else float(estimate)
            if batched:
                stop = not bool(torch.isfinite(current).all()) or bool(
                    ((current - previous).abs() <= tol * current.abs()).all()
                )
            else:
                stop = not math.isfinite(current) or abs(current - previous) <= tol * abs(current)
            if stop:
                return (estimate if batched else float(estimate)), w
            previous = current
        v = w
    return (estimate if batched else float(estimate)), v


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

            def gram(v, base_inputs=base_inputs, pos=pos, layer=layer):
                """``K^T K v`` by autograd, ``K v = layer(.., v, ..) - layer(.., 0, ..)`` the linear part."""
                vv = v.detach().requires_grad_(True)
                ins = list(base_inputs)
                ins[pos] = vv
                kv = layer(*ins) - layer(*base_inputs)
                (w,) = torch.autograd.grad(kv, vv, grad_outputs=kv.detach())
                return w.detach()

            v = cache.get(key) if cache is not None else None
            if v is None or v.shape != x1.shape or not bool(v.abs().max() > 0):
                v = torch.randn_like(x1)  # cold start (a zero vector cannot warm-start)
            else:
                # warm start: the previous vector is already close (backtracking keeps it safe); as before,
                # the remaining consumers of this call also get 3 iterations
                iters = 3
            with torch.enable_grad():
                norm_sq, v = power_iteration(gram, v, iters)
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


def state_map_norms(
    net: LiftedNetwork,
    shapes: Sequence[Sequence[int]],
    cache: dict | None,
    *,
    layers: Sequence[int] | None = None,
    iters: int = 12,
    warm_iters: int = 3,
    seed: int = 0,
    like: Tensor | None = None,
) -> dict[tuple[int, int], float]:
    """``1.05 ||K_{m,l}||^2`` for every layer m and every hidden state l (``l >= 1``) that it reads.

    ``K_{m,l}`` is the linear part of layer m's affine pre-activation in state l. The state step of lifted
    training on state l needs ``L_l = sum_m lambda_m ||K_{m,l}||^2`` over the layers m reading l (the
    Lipschitz constant of the smooth part's gradient in x_l, for any lambdas). One power iteration per
    layer estimates all of its inputs at once: a batch whose sample 0 is all zeros (the affine offset) and
    whose sample i carries the i-th input's vector, the others zero (so a layer with three inputs costs one
    forward and one backward on 4 samples of size 1, whatever the mini-batch).

    Parameters
    ----------
    net : LiftedNetwork
        Its layers must be affine in their inputs (every lifted layer is).
    shapes : sequence of shapes
        ``shapes[j]``: the shape of one sample of state j (e.g. ``states[j].shape[1:]``).
    cache : dict, optional
        Warm starts, keyed ``("state-maps", m)``: a cold start (seeded random vectors, ``iters`` iterations)
        when absent or of another shape, else ``warm_iters`` iterations from the cached vectors (Rayleigh
        quotients approach the norm from below; the 1.05 factor covers the lag of a warm start while the
        weights move slowly, and a forward-backward state step still descends with up to twice the safe
        step ``1/L``).
    layers : sequence of int, optional
        Only these layers (default: all).
    iters, warm_iters : int
        Power iterations of a cold and a warm start.
    seed : int
        Seed of the cold starts (a private generator: the global random state is left alone).
    like : Tensor, optional
        Device and dtype of the vectors (default: the first parameter of ``net``, else float32 on the CPU).

    Returns
    -------
    dict
        ``{(m, l): 1.05 ||K_{m,l}||^2}``.

    Examples
    --------
    >>> from torch import nn
    >>> from liftinv.lifted.network import LiftedLayer
    >>> class TwoInputs(nn.Module):  # z = 2 a + 3 b
    ...     def forward(self, a, b):
    ...         return 2 * a + 3 * b
    >>> net = LiftedNetwork([LiftedLayer(nn.Identity(), nn.ReLU(), inputs=(0,)),
    ...                      LiftedLayer(nn.Identity(), nn.ReLU(), inputs=(1,)),
    ...                      LiftedLayer(TwoInputs(), nn.Identity(), inputs=(1, 2))])
    >>> norms = state_map_norms(net, [(4,)] * 4, {})
    >>> {k: round(v / 1.05, 6) for k, v in sorted(norms.items())}
    {(2, 1): 1.0, (3, 1): 4.0, (3, 2): 9.0}
    """
    if like is None:
        like = next(iter(net.parameters()), torch.zeros(()))
    opts = {"device": like.device, "dtype": like.dtype}
    out: dict[tuple[int, int], float] = {}
    for m in layers if layers is not None else range(1, net.depth + 1):
        layer = net.layers[m - 1]
        free = [p for p, j in enumerate(layer.inputs) if j >= 1]
        if not free:
            continue
        shape = [tuple(shapes[j]) for j in layer.inputs]
        sizes = [math.prod(shape[p]) for p in free]
        n = max(sizes)
        v = cache.get(("state-maps", m)) if cache is not None else None
        its = warm_iters
        if v is None or v.shape != (len(free), n) or v.dtype != opts["dtype"] or v.device != opts["device"]:
            gen = torch.Generator().manual_seed(int(seed) * 1009 + m)
            v = torch.randn(len(free), n, generator=gen, dtype=opts["dtype"]).to(opts["device"])
            its = iters
        mask = torch.zeros(len(free), n, **opts)
        for i, size in enumerate(sizes):
            mask[i, :size] = 1.0  # padding of the smaller inputs stays zero
        v = v * mask

        def gram(v, layer=layer, free=free, shape=shape, sizes=sizes):
            """Per input i: ``(K_i^T K_i v_i, ||K_i v_i||^2)``, all inputs in one batch."""
            vv = v.detach().requires_grad_(True)
            B = len(free) + 1
            ins = []
            for p, s in enumerate(shape):
                rows = [torch.zeros(1, *s, **opts) for _ in range(B)]
                if p in free:
                    i = free.index(p)
                    rows[i + 1] = vv[i, : sizes[i]].reshape(1, *s)
                ins.append(torch.cat(rows))
            z = layer(*ins)
            kv = z[1:] - z[:1]
            (w,) = torch.autograd.grad(kv, vv, grad_outputs=kv.detach())
            return w.detach(), kv.detach().reshape(len(free), -1).pow(2).sum(1)

        with torch.enable_grad():
            est, v = power_iteration(gram, v, its, batched=True)
        if cache is not None:
            cache[("state-maps", m)] = v
        for i, p in enumerate(free):
            out[(m, layer.inputs[p])] = 1.05 * float(est[i])
    return out


def param_map_norm_sq(
    layer: LiftedLayer, xs: list[Tensor], cache: dict | None, key, iters: int = 12, reduce=None
) -> float:
    """||M_X||^2 for the map theta -> z = K_theta(X), linear in theta for affine layers.

    ``reduce`` (optional) sums a list of tensors over the samples held elsewhere (an all-reduce), so the
    norm is that of the map over every sample (:mod:`liftinv.training.distributed`).
    """
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
        if reduce is not None:
            return exact_sq_norm(X, mods[-1].bias is not None, reduce)
        X = X.reshape(X.shape[0], -1)
        if mods[-1].bias is not None:
            X = torch.cat([X, torch.ones_like(X[:, :1])], 1)
        return float(torch.linalg.matrix_norm(X, ord=2)) ** 2
    names = [n for n, p in lin.named_parameters() if p.requires_grad]
    params = dict(lin.named_parameters())

    def gram(v: dict[str, Tensor]) -> dict[str, Tensor]:
        """``M_X^T M_X theta`` by autograd (``z = K_theta(X)`` is linear in ``theta``)."""
        vv = {n: t.detach().requires_grad_(True) for n, t in v.items()}
        z = functional_call(lin, vv, tuple(xs))
        grads = [g.detach() for g in torch.autograd.grad(z, list(vv.values()), grad_outputs=z.detach())]
        return dict(zip(vv, grads if reduce is None else reduce(grads)))

    v = cache.get(key) if cache is not None else None
    if v is None:
        v = {n: torch.randn_like(params[n]) for n in names}
    else:
        iters = 3  # warm start (DESIGN §4: a warm-started power iteration x1.05 is as good as exact)
    with torch.enable_grad():
        norm_sq, v = power_iteration(gram, v, iters)
    if cache is not None:
        cache[key] = v
    return 1.05 * norm_sq


def _data_rows(A: Tensor, augment: bool) -> Tensor:
    """``A`` as a matrix (one row per sample), with a column of ones appended when ``augment``."""
    A = A.reshape(A.shape[0], -1)
    return torch.cat([A, torch.ones_like(A[:, :1])], 1) if augment else A


def _largest_eigenvalue(G: Tensor) -> float:
    """The largest eigenvalue of the symmetric matrix ``G`` (float64), times ``1 + 1e-6`` (a safe bound)."""
    return float(torch.linalg.eigvalsh(G)[-1]) * (1 + 1e-6) + 1e-30


def exact_sq_norms(As: Sequence[Tensor], augments: Sequence[bool], reduce=None, share=None) -> list[float]:
    """||A_k||_2^2 (or ||[A_k, 1]||_2^2) of several data matrices, in float64: :func:`exact_sq_norm` of each.

    ``reduce`` (optional) sums a list of tensors over the row blocks held elsewhere (an all-reduce:
    :mod:`liftinv.training.distributed`); the column Gram matrices ``[A_k, 1]^T [A_k, 1]`` of every matrix go
    in one call, so the norms of all the layers of a network cost one collective. ``share`` (optional, with
    ``reduce``) runs a list of zero-argument tasks returning floats, each on one process, and gives every
    process all the results (the eigenvalue problems, the same on every process, are then solved once).

    Examples
    --------
    >>> A = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    >>> [round(v, 4) for v in exact_sq_norms([A, 2 * A], [False, False])]
    [9.0, 36.0]
    """
    if reduce is None:
        return [exact_sq_norm(A, augment) for A, augment in zip(As, augments)]
    grams = reduce([(B.T @ B) for B in (_data_rows(A.double(), augment) for A, augment in zip(As, augments))])
    if share is None:
        return [_largest_eigenvalue(G) for G in grams]
    return share([functools.partial(_largest_eigenvalue, G) for G in grams])


def exact_sq_norm(A: Tensor, augment: bool = False, reduce=None) -> float:
    """||A||_2^2 (or ||[A, 1]||_2^2), the largest eigenvalue of the smaller Gram matrix, in float64.

    ``reduce`` (optional) sums a list of tensors over the row blocks of ``A`` held elsewhere (an all-reduce:
    :mod:`liftinv.training.distributed`): then the column Gram matrix ``[A, 1]^T [A, 1]`` of the stacked rows
    is formed from the summed blocks.
    """
    A = A.reshape(A.shape[0], -1).double()
    if reduce is not None:
        return exact_sq_norms([A], [augment], reduce)[0]
    if A.shape[0] <= A.shape[1] + int(augment):
        G = A @ A.T + (1.0 if augment else 0.0)
    else:
        G = A.T @ A
        if augment:
            s = A.sum(0, keepdim=True)
            corner = A.new_full((1, 1), float(A.shape[0]))
            G = torch.cat([torch.cat([G, s.T], 1), torch.cat([s, corner], 1)], 0)
    return _largest_eigenvalue(G)


def power_sq_norms(
    As: Sequence[Tensor],
    augments: Sequence[bool],
    cache: dict,
    keys: Sequence,
    iters: int = 3,
    cold_iters: int = 30,
    reduce=None,
) -> list[float]:
    """Warm-started power-iteration estimates of ||A_k||_2^2 (or ||[A_k, 1]||_2^2), times 1.05, in lockstep.

    The power iterations of the matrices run side by side (:func:`power_iteration` with ``batched=True`` on
    the vectors zero-padded to one length; a padded entry stays 0, so each estimate is that of its own
    matrix). The vector of ``A_k`` is kept in ``cache[keys[k]]``; when any of them is missing (a cold start,
    seeded and deterministic) all run ``cold_iters`` iterations, otherwise ``iters``. ``reduce`` (optional)
    sums a list of tensors over the row blocks held elsewhere (an all-reduce: :mod:`liftinv.training.
    distributed`), so each estimate is that of the stacked rows: one call per iteration carries
    ``[A_k, 1]^T [A_k, 1] v_k`` and ``||[A_k, 1] v_k||^2`` of every matrix (sum of (n_k + 1) numbers), instead
    of one call per matrix and iteration.

    Examples
    --------
    >>> A = torch.tensor([[3.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    >>> est = power_sq_norms([A, 2 * A], [False, False], {}, ["a", "b"], cold_iters=60)
    >>> [round(e / 1.05, 6) for e in est]
    [9.0, 36.0]
    """
    mats = [A.reshape(A.shape[0], -1) for A in As]
    dims = [M.shape[1] + int(augment) for M, augment in zip(mats, augments)]
    ref = mats[0]
    starts = []
    for M, n, key in zip(mats, dims, keys):
        v = cache.get(key)
        if v is None or v.shape != (n,) or v.device != M.device or v.dtype != M.dtype:
            v = None
        starts.append(v)
    if any(v is None for v in starts):
        iters = cold_iters
        starts = [
            torch.randn(n, generator=torch.Generator().manual_seed(12345)).to(ref.device, ref.dtype)
            if v is None
            else v
            for v, n in zip(starts, dims)
        ]
    width = max(dims)
    V = torch.stack([torch.nn.functional.pad(v, (0, width - v.numel())) for v in starts])

    def gram(V: Tensor) -> tuple[Tensor, Tensor]:
        """Row k: ``[A_k, 1]^T [A_k, 1] v_k`` (zero-padded); and ``||[A_k, 1] v_k||^2`` for every k."""
        rows, quotients = [], []
        for M, augment, n, v in zip(mats, augments, dims, V):
            u = M @ v[: n - 1] + v[n - 1] if augment else M @ v[:n]
            w = torch.cat([M.T @ u, u.sum().reshape(1)]) if augment else M.T @ u
            rows.append(torch.nn.functional.pad(w, (0, width - n)))
            quotients.append(u @ u)
        W, q = torch.stack(rows), torch.stack(quotients)
        if reduce is None:
            return W, q
        (both,) = reduce([torch.cat([W.reshape(-1), q])])
        return both[: -len(q)].reshape(W.shape), both[-len(q) :]

    est, V = power_iteration(gram, V, iters, batched=True)
    for key, n, v in zip(keys, dims, V):
        cache[key] = v[:n].clone()
    return [1.05 * float(e) + 1e-30 for e in est]


def power_sq_norm(
    A: Tensor, augment: bool, cache: dict, key, iters: int = 3, cold_iters: int = 30, reduce=None
) -> float:
    """Warm-started power-iteration estimate of ||A||_2^2 (or ||[A, 1]||_2^2), times 1.05.

    The vector is kept in ``cache[key]``; a cold start (seeded, deterministic) runs ``cold_iters`` iterations,
    a warm start ``iters``. ``reduce`` (optional) sums a list of tensors over the row blocks of ``A`` held
    elsewhere (an all-reduce: :mod:`liftinv.training.distributed`), so the estimate is that of the stacked
    rows: it gets ``[[A, 1]^T [A, 1] v, ||[A, 1] v||^2]`` (n + 1 numbers) once per iteration. One matrix of
    :func:`power_sq_norms`.
    """
    return power_sq_norms([A], [augment], cache, [key], iters, cold_iters, reduce)[0]


def linear_part_norm(layer, inputs: list[Tensor], pos: int, iters: int, gen: torch.Generator) -> float:
    """||K_{m,j}||: operator norm of the linear part of a lifted layer in its ``pos``-th input (power it.)."""
    base = [torch.zeros_like(t[:1]) for t in inputs]
    with torch.enable_grad():
        v = torch.randn(base[pos].shape, generator=gen, dtype=base[pos].dtype).to(base[pos].device)
        z0 = layer(*base).detach()

        def gram(v: Tensor) -> Tensor:
            """``K^T K v`` by autograd, ``K v = layer(.., v, ..) - layer(.., 0, ..)``."""
            vv = v.detach().requires_grad_(True)
            ins = list(base)
            ins[pos] = vv
            kv = layer(*ins) - z0
            (w,) = torch.autograd.grad(kv, vv, grad_outputs=kv.detach())
            return w.detach()

        norm_sq, _ = power_iteration(gram, v, iters)
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

        def gram(v: Tensor) -> Tensor:
            """``J^T J v`` per sample (``J v`` by the double-backward trick, then ``J^T``)."""
            (jv,) = torch.autograd.grad(jtw, w, grad_outputs=v, retain_graph=True)
            (z,) = torch.autograd.grad(out, x, grad_outputs=jv.detach(), retain_graph=True)
            return z.detach()

        est, _ = power_iteration(gram, v, iters, batched=True)
    return max(float(est.max()), 1e-12)
