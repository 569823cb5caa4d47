"""Block steps on a lifted network: state (forward-backward) and weight (gradient) steps.

Used by every lifted solver (BCD, ISGM, inversion, unrolled training); see :mod:`liftinv.lifted.network`
for the lifted objective. State steps are ``x_l <- prox_{mu lambda_l Phi_l}(x_l - mu grad_l)`` with
backtracking (the objective never rises); weight steps are gradient steps with step 1/L,
L = lambda_l ||M_X||^2 / N (||[X_{l-1}; 1]||_2^2 for dense layers), and a backtracking safeguard. The
gradient of the smooth part in a state, :func:`state_gradient`, needs no derivative of sigma and no
backward pass through the nested network (Wang & Benning, JMLR 24(232), 2023; Wang et al., arXiv
2510.09796).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from liftinv.lifted.network import LiftedLayer, LiftedNetwork
from liftinv.lifted.norms import lipschitz_state, param_map_norm_sq

__all__ = [
    "state_gradient",
    "state_step",
    "state_sweep",
    "weight_step",
    "layer_objective",
    "weight_blocks",
    "block_objective",
    "free_states",
    "independent_groups",
    "layer_parameters",
]


# block primitives
# -------------------------------------------------------------------------------------------------------
def layer_objective(net: LiftedNetwork, states, l: int, y=None) -> Tensor:
    """Mean over samples of layer l's term (its penalty, or the data term when l = L)."""
    return net.layer_terms(l, states, y).mean()


def _smooth_in_state(net: LiftedNetwork, states, l: int, x: Tensor, y) -> Tensor:
    """Part of N*J that depends on state l, minus lambda_l Phi_l(x) when the penalty is prox-friendly.

    Bregman/Fenchel: sum_{m consumes l} lambda_m P_m(x_m, z_m(x)) - lambda_l <x, z_l> (+ fit term);
    MAC: every term containing x (all smooth).
    """
    st = list(states)
    st[l] = x
    total = x.new_zeros(())
    for m in net.consumers[l]:
        total = total + net.layer_terms(m, st, y).sum()
    if l >= 1:
        pen = net.penalties[l - 1]
        z = net.preactivation(l, st).detach()
        if l == net.depth:  # free last state
            total = total + 0.5 * (x - y).pow(2).sum() if y is not None else total
        if pen.convex_in_state:
            total = total - pen.weight * (x * z).sum()
        else:
            total = total + pen.weight * pen.value(x, z).sum()
    return total


def state_gradient(net: LiftedNetwork, states, l: int, y=None) -> Tensor:
    """Gradient in state l of the smooth part of N*J (see :func:`_smooth_in_state`).

    For l = 0 (the input) this is sum_m lambda_m K_m^T (sigma_m(z_m) - x_m) for Bregman penalties:
    it needs no derivative of any activation and no backward pass through the nested network.
    """
    with torch.enable_grad():
        x = states[l].detach().requires_grad_(True)
        (g,) = torch.autograd.grad(_smooth_in_state(net, states, l, x, y), x)
    return g


def state_step(
    net: LiftedNetwork,
    states: list[Tensor],
    l: int,
    y=None,
    cache: dict | None = None,
    max_backtracks: int = 30,
) -> float:
    """One forward-backward step on state block l (all samples at once), in place; returns the step mu.

    Bregman/Fenchel: ``x_l <- prox_{mu lambda_l Phi_l}(x_l - mu g)``, g the gradient of the smooth part;
    MAC: a gradient step. mu = 1/L from a power-iteration estimate, halved until the standard sufficient-
    decrease test of forward-backward holds, so the objective never increases.
    A free last state with a squared fit term and a prox-friendly penalty is minimised exactly:
    ``x_L = prox_{lambda Phi}(y + lambda z_L)``.
    """
    if l <= 0 or (l == net.depth and net.last == "fixed"):
        raise ValueError(f"state {l} is not a free state (states 1..{net.depth - (net.last == 'fixed')})")
    pen = net.penalties[l - 1]
    lam = pen.weight
    with torch.no_grad():
        if l == net.depth and not net.consumers[l] and y is not None:
            z = net.preactivation(l, states)
            if pen.convex_in_state:
                states[l] = pen.prox_state(y + lam * z, lam) if lam > 0 else y.clone()
            else:
                states[l] = (y + lam * pen.activation(z)) / (1 + lam)
            return 1.0
    x = states[l].detach()
    g = state_gradient(net, states, l, y)
    mu = 1.0 / lipschitz_state(net, states, l, cache)
    with torch.no_grad():
        f0 = _smooth_in_state(net, states, l, x, y)
        for _ in range(max_backtracks):
            v = x - mu * g
            xn = pen.prox_state(v, mu * lam) if pen.convex_in_state else v
            d = xn - x
            f1 = _smooth_in_state(net, states, l, xn, y)
            if f1 <= f0 + (g * d).sum() + (d * d).sum() / (2 * mu) + 1e-10 * abs(float(f0)):
                break
            mu *= 0.5
        else:
            return 0.0  # no acceptable step: keep the state
        states[l] = xn
    return mu


def free_states(net: LiftedNetwork) -> list[int]:
    """Indices of the states a solver updates (hidden states, plus the last one when it is free)."""
    top = net.depth if net.last == "free" else net.depth - 1
    return list(range(1, top + 1))


def independent_groups(net: LiftedNetwork, levels: Sequence[int]) -> list[list[int]]:
    """The state blocks ``levels`` split into groups of blocks that do not interact (a graph colouring).

    Two states interact when one term of the lifted objective contains both: layer m's penalty couples
    ``x_m`` with every state it reads, and the states read by one layer with each other (also through the
    data term of a fixed last layer). States of one group can be updated in any order, or in parallel,
    with the same result. Greedy colouring in the order of ``levels`` (each block gets the first group
    holding none of its neighbours): for a chain read top-down these are the two parities.

    Examples
    --------
    >>> from torch import nn
    >>> from liftinv.lifted.network import lift
    >>> chain = lift(nn.Sequential(*[nn.Linear(2, 2), nn.ReLU()] * 4, nn.Linear(2, 2)))
    >>> independent_groups(chain, [4, 3, 2, 1])
    [[4, 2], [3, 1]]
    """
    levels = list(levels)
    wanted = set(levels)
    near: dict[int, set[int]] = {l: set() for l in levels}
    for m, layer in enumerate(net.layers, start=1):
        term = [j for j in layer.inputs if j in wanted] + ([m] if m in wanted else [])
        for a in term:
            near[a].update(b for b in term if b != a)
    groups: list[list[int]] = []
    for l in levels:
        for g in groups:
            if not near[l].intersection(g):
                g.append(l)
                break
        else:
            groups.append([l])
    return groups


def state_sweep(
    net: LiftedNetwork, states: list[Tensor], y=None, order: str = "top-down", cache: dict | None = None
) -> None:
    """Update every free state block once, in place.

    ``order="top-down"`` (last hidden layer first, so the targets reach the states in the first sweep;
    a bottom-up sweep from forward states is a fixed point) or ``"parity"`` (groups of states that do not
    interact, :func:`independent_groups`, one after the other, each top-down: the two parities for a
    chain; for networks with skip connections, e.g. residual blocks, more groups).
    """
    idx = free_states(net)[::-1]
    if order == "parity":
        idx = [l for group in independent_groups(net, idx) for l in group]
    elif order != "top-down":
        raise ValueError(f"order must be 'top-down' or 'parity', got {order!r}")
    for l in idx:
        state_step(net, states, l, y, cache=cache)


def layer_parameters(layer: LiftedLayer) -> list[nn.Parameter]:
    """Trainable parameters of a lifted layer (its linear map and a learnable activation)."""
    return [p for p in layer.parameters() if p.requires_grad]


def weight_blocks(net: LiftedNetwork) -> list[tuple[list[int], list[nn.Parameter]]]:
    """Weight blocks: groups of layers that share parameters, with the union of their parameters.

    For fixed states the objective separates over these blocks. Dense and convolutional chains give one
    block per layer; a ProximalBlock's T (used by its analysis layer and, transposed, by the next layer) or
    an unrolled net's shared transforms join the layers that use them.
    """
    L = net.depth
    owner: dict[int, int] = {}
    parent = list(range(L + 1))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for l in range(1, L + 1):
        for p in layer_parameters(net.layers[l - 1]):
            if id(p) in owner:
                parent[find(l)] = find(owner[id(p)])
            else:
                owner[id(p)] = l
    groups: dict[int, list[int]] = {}
    for l in range(1, L + 1):
        groups.setdefault(find(l), []).append(l)
    blocks = []
    for layers in groups.values():
        seen, params = set(), []
        for l in layers:
            for p in layer_parameters(net.layers[l - 1]):
                if id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        if params:
            blocks.append((layers, params))
    return blocks


def block_objective(net: LiftedNetwork, states, layers: Sequence[int], y=None) -> Tensor:
    """Sum over ``layers`` of their mean terms (the weight-block objective for fixed states)."""
    return sum(layer_objective(net, states, l, y) for l in layers)


def weight_step(
    net: LiftedNetwork,
    states: list[Tensor],
    y=None,
    layers: Sequence[int] | None = None,
    cache: dict | None = None,
    max_backtracks: int = 30,
    reduce=None,
    total: int | None = None,
) -> dict[int, float]:
    """A gradient step on every weight block (blocks decouple for fixed states), in place.

    For a block made of one layer affine in its parameters the step is 1 / (lambda_l ||M_X||^2 / N) with
    ||M_X||^2 = ||[X_{l-1}; 1]||_2^2 for dense layers (Wang & Benning 2023: the weight objective is convex
    and smooth with that Lipschitz constant); otherwise the last accepted step (from ``cache``), doubled, is
    tried first. In both cases the step is halved until the block objective decreases sufficiently
    (Armijo), so the lifted objective never increases.

    Parameters
    ----------
    layers : sequence of int, optional
        Restrict to the blocks containing these layers (default: all).
    reduce, total : optional
        Data-parallel training (:mod:`liftinv.training.distributed`): ``states`` hold this process's samples,
        ``total`` is the number of samples over every process and ``reduce`` sums a list of tensors over them
        (an all-reduce). The gradient, the Lipschitz constant and the Armijo test then use the summed block
        objective ``sum_i terms_i / total``, so every process takes the step of the stacked samples.

    Returns
    -------
    dict
        The step used, keyed by the first layer of each block.
    """
    steps = {}
    N = states[0].shape[0] if total is None else total

    def block_sum(block_layers) -> Tensor:
        """This process's sum over its samples of the block's layer terms."""
        return sum(net.layer_terms(m, states, y).sum() for m in block_layers)

    def reduced_mean(local) -> float:
        """``local`` (a :func:`block_sum`) summed over every process (``reduce``), divided by ``total``."""
        return float(reduce([torch.tensor([float(local)], dtype=torch.float64)])[0]) / total

    wanted = set(layers) if layers is not None else None
    # Recomputed per call (cheap): the cache holds only tensors and floats, so it can be checkpointed.
    for block_layers, params in weight_blocks(net):
        if wanted is not None and not wanted.intersection(block_layers):
            continue
        l = block_layers[0]
        lams = [
            1.0 if (m == net.depth and net.last == "fixed") else net.penalties[m - 1].weight
            for m in block_layers
        ]
        if max(lams) == 0:
            continue
        with torch.enable_grad():
            if reduce is None:
                f0 = block_objective(net, states, block_layers, y)
                grads = torch.autograd.grad(f0, params, allow_unused=True)
            else:  # this process's share of the summed objective; f0 itself is the reduced value
                local = block_sum(block_layers)
                grads = torch.autograd.grad(local / total, params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
        if reduce is not None:
            grads = reduce(grads)
            f0 = reduced_mean(local.detach())
        layer = net.layers[l - 1]
        if len(block_layers) == 1 and layer.affine_in_params:
            xs = [states[j].detach() for j in layer.inputs]
            norm_sq = param_map_norm_sq(layer, xs, cache, ("weight", l), reduce=reduce)
            step = 1.0 / max(lams[0] * norm_sq / N, 1e-12)
        else:
            step = 2.0 * (cache.get(("wstep", l), 1.0) if cache is not None else 1.0)
        gg = float(sum((g * g).sum() for g in grads))
        old = [p.detach().clone() for p in params]
        with torch.no_grad():
            for _ in range(max_backtracks):
                for p, o, g in zip(params, old, grads):
                    p.copy_(o - step * g)
                f1 = (
                    block_objective(net, states, block_layers, y)
                    if reduce is None
                    else reduced_mean(block_sum(block_layers))
                )
                if f1 <= f0 - 0.5 * step * gg + 1e-12 * abs(float(f0)):
                    break
                step *= 0.5
            else:
                for p, o in zip(params, old):
                    p.copy_(o)
                step = 0.0
        if cache is not None and step > 0:
            cache[("wstep", l)] = step
        steps[l] = step
    return steps
