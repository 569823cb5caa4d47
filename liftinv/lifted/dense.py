"""Closed-form block steps for dense layers with a convex (Bregman / Fenchel) penalty.

For ``z = W P(x_{l-1}) + b`` with P parameter-free the weight gradient is (sigma(z) - x)[x_prev; 1]^T and
the state gradient W^T(sigma(z) - x): no derivative of sigma, and the steps 1/L with L = lambda ||[X; 1]||^2
/ N and lambda ||W||^2 are exact Lipschitz constants, so no line search is needed (Wang & Benning, JMLR
24(232), 2023, Sec. 4). Every other layer goes through :mod:`liftinv.lifted.steps`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liftinv.lifted.network import LiftedNetwork
from liftinv.lifted.norms import exact_sq_norm
from liftinv.lifted.penalties import BregmanPenalty

__all__ = ["DenseWeightBlock", "dense_state_step", "state_block_objective", "dense_parts", "fast_state_ok"]


_RESHAPE_ONLY = (nn.Identity, nn.Flatten)
_PARAM_FREE = (nn.Flatten, nn.Unflatten, nn.AvgPool1d, nn.AvgPool2d, nn.Identity)


def dense_parts(net: LiftedNetwork, l: int):
    """``(prefix, linear)`` when layer l is z = Linear(P(x_{l-1})), P parameter-free, with a convex penalty.

    Those layers get the closed-form weight step of :class:`DenseWeightBlock`; every other layer uses
    :func:`liftinv.lifted.weight_step`.
    """
    layer = net.layers[l - 1]
    if (
        len(layer.inputs) != 1
        or not layer.affine_in_params
        or not isinstance(net.penalties[l - 1], BregmanPenalty)
    ):
        return None
    mods = list(layer.linear) if isinstance(layer.linear, nn.Sequential) else [layer.linear]
    lin = mods[-1]
    if not isinstance(lin, nn.Linear) or not all(isinstance(m, _PARAM_FREE) for m in mods[:-1]):
        return None
    if not lin.weight.requires_grad or (lin.bias is not None and not lin.bias.requires_grad):
        return None
    return nn.Sequential(*mods[:-1]), lin


def fast_state_ok(net: LiftedNetwork, l: int) -> bool:
    """Whether state l (hidden) gets :func:`dense_state_step`: one dense consumer that only flattens x_l."""
    if not 0 < l < net.depth or net.consumers[l] != [l + 1] or not net.penalties[l - 1].convex_in_state:
        return False
    parts = dense_parts(net, l + 1)
    if parts is None:
        return False
    prefix, _ = parts
    return all(
        isinstance(m, _RESHAPE_ONLY)
        and (not isinstance(m, nn.Flatten) or (m.start_dim, m.end_dim) == (1, -1))
        for m in prefix
    )


def _lam(net: LiftedNetwork, l: int) -> float:
    """Weight of layer l's term (1 for the data term of a fixed last layer)."""
    return 1.0 if (l == net.depth and net.last == "fixed") else net.penalties[l - 1].weight


# ---------------------------------------------------------------------------------------------------------
# closed-form blocks for dense layers
# ---------------------------------------------------------------------------------------------------------
class DenseWeightBlock:
    """The weight block of a dense layer with a Bregman/Fenchel penalty, for fixed states.

    For z = W m + b (m = P(x_{l-1}) per sample, P parameter-free) the block objective
    f(W, b) = lambda/N sum_i B(x_l^i, W m_i + b) has the gradient lambda/N (sigma(Z) - X_l)^T [M, 1] and the
    Lipschitz constant L = lambda ||[M, 1]||_2^2 / N (sigma = grad Phi^* is monotone and 1-Lipschitz), so the
    safe step eta = 1/L is a closed form without line search::

        [W, b] <- [W, b] - (sigma(Z) - X_l)^T [M, 1] / ||[M, 1]||_2^2

    and f(new) <= f(old) - eta/2 ||grad f||^2 (Wang & Benning, JMLR 2023, Sec. 4). A step costs two matrix
    products (the gradient and the update of Z) and no evaluation of the penalty; it equals
    :func:`liftinv.lifted.weight_step` (autograd and backtracking) up to rounding.

    Parameters
    ----------
    net : LiftedNetwork
    states : list of Tensor
        The shard's states (read, not changed).
    y : Tensor
        Targets (x_L of a fixed last layer).
    l : int
        Layer index (1..L); layer l must be dense (see ``dense_parts``).
    norm_sq : float, optional
        ||[M, 1]||_2^2 (or an upper estimate); computed exactly when omitted.

    Attributes
    ----------
    eta : float
        The step size N / (lambda ||[M, 1]||^2).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from liftinv.lifted import lift
    >>> net = lift(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    >>> x, y = torch.randn(8, 3), torch.randn(8, 2)
    >>> st = net.init_states(x, y)
    >>> blk = DenseWeightBlock(net, st, y, 2)
    >>> f0 = blk.value(); blk.step(); bool(blk.value() <= f0)
    True
    """

    def __init__(self, net: LiftedNetwork, states, y, l: int, norm_sq: float | None = None):
        parts = dense_parts(net, l)
        if parts is None:
            raise ValueError(f"layer {l} is not a dense layer with a Bregman/Fenchel penalty")
        prefix, lin = parts
        self.lin, self.pen, self.lam = lin, net.penalties[l - 1], _lam(net, l)
        with torch.no_grad():
            M = prefix(states[l - 1]) if len(prefix) else states[l - 1]
            self.M = M.reshape(M.shape[0], -1)
            self.x = y if (l == net.depth and net.last == "fixed") else states[l]
            self.norm_sq = exact_sq_norm(self.M, lin.bias is not None) if norm_sq is None else float(norm_sq)
            self.z = F.linear(self.M, lin.weight, lin.bias)
        self.n = self.M.shape[0]
        self.eta = self.n / max(self.lam * self.norm_sq, 1e-30)

    def params(self) -> list[Tensor]:
        """The block's parameters (weight, then bias)."""
        return [self.lin.weight] + ([self.lin.bias] if self.lin.bias is not None else [])

    def value(self) -> float:
        """Block objective lambda/N sum_i B(x_l^i, z^i) at the current weights."""
        with torch.no_grad():
            return float(self.lam * self.pen.value(self.x, self.z).mean())

    def gradient(self) -> list[Tensor]:
        """Gradient lambda/N (sigma(Z) - X)^T [M, 1] as ``[dW, db]``."""
        with torch.no_grad():
            R = self.pen.grad_z(self.x, self.z).reshape(self.n, -1) * (self.lam / self.n)
            g = [R.T @ self.M]
            if self.lin.bias is not None:
                g.append(R.sum(0))
        return g

    def step(self, gradient: list[Tensor] | None = None) -> None:
        """One safe gradient step in place (weights and the cached pre-activation).

        ``gradient`` (optional): :meth:`gradient`, when the caller has already computed it (data-parallel
        training sums the gradients of every block in one all-reduce).
        """
        with torch.no_grad():
            g = self.gradient() if gradient is None else gradient
            dW = g[0] * self.eta
            db = g[1] * self.eta if len(g) > 1 else None
            self.lin.weight.sub_(dW)
            if db is not None:
                self.lin.bias.sub_(db)
            self.z = self.z - F.linear(self.M, dW, db)

    def refresh(self) -> None:
        """Recompute the cached pre-activation after the weights were changed from outside."""
        with torch.no_grad():
            self.z = F.linear(self.M, self.lin.weight, self.lin.bias)


def dense_state_step(net: LiftedNetwork, states: list[Tensor], l: int, y: Tensor | None, lip: float) -> None:
    """Closed-form forward-backward step on hidden state l whose only consumer is a dense layer m = l + 1.

    With g = lambda_m W_m^T (sigma_m(W_m x_l + b_m) - x_m) - lambda_l z_l (z_l the pre-activation of layer l;
    for a fixed last layer x_m = y and sigma_m is the identity or softmax of the loss)::

        x_l <- prox_{mu lambda_l Phi_l}(x_l - mu g),   mu = 1 / lip,   lip >= lambda_m ||W_m||_2^2

    (Wang & Benning, JMLR 2023, Sec. 4). This is :func:`liftinv.lifted.state_step` without autograd and
    without backtracking (the step is safe when ``lip`` bounds the Lipschitz constant); in place.

    Parameters
    ----------
    net : LiftedNetwork
    states : list of Tensor
        States of a shard (``states[l]`` is replaced).
    l : int
        A hidden state with a dense consumer (``0 < l < L``).
    y : Tensor or None
        Targets (used when m is the fixed last layer).
    lip : float
        lambda_m ||W_m||^2 (or an upper estimate). 0 means the consumer has weight 0: x_l = sigma_l(z_l).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from liftinv.lifted import lift
    >>> net = lift(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    >>> x, y = torch.randn(8, 3), torch.randn(8, 2)
    >>> st = net.init_states(x, y)
    >>> f0 = state_block_objective(net, st, 1, y)
    >>> W = net.layers[1].linear.weight.detach()
    >>> dense_state_step(net, st, 1, y, lip=float(torch.linalg.matrix_norm(W, 2)) ** 2)
    >>> state_block_objective(net, st, 1, y) <= f0
    True
    """
    m = l + 1
    _, lin = dense_parts(net, m)
    pen_l, pen_m = net.penalties[l - 1], net.penalties[m - 1]
    lam_l, lam_m = pen_l.weight, _lam(net, m)
    with torch.no_grad():
        x = states[l]
        z_l = net.preactivation(l, states)
        if lip <= 0 or lam_m == 0:
            states[l] = pen_l.activation(z_l)
            return
        n = x.shape[0]
        target = y if (m == net.depth and net.last == "fixed") else states[m]
        z_m = F.linear(x.reshape(n, -1), lin.weight, lin.bias)
        R = pen_m.grad_z(target, z_m).reshape(n, -1)
        g = (lam_m * (R @ lin.weight)).reshape(x.shape) - lam_l * z_l
        mu = 1.0 / lip
        states[l] = pen_l.prox_state(x - mu * g, mu * lam_l)


def state_block_objective(
    net: LiftedNetwork, states: Sequence[Tensor], l: int, y: Tensor | None = None
) -> float:
    """Every term of the lifted objective that depends on state ``l`` (mean over samples).

    lambda_l P_l(x_l, z_l) + sum over the layers m that consume x_l of lambda_m P_m(x_m, z_m) (the data term
    for the last layer): the block objective whose rise triggers a restart in :class:`BregmanAccelerated`.

    Parameters
    ----------
    net : LiftedNetwork
    states : list of Tensor
        States ``[x_0, ..., x_L]``.
    l : int
        A free state (1 <= l <= L).
    y : Tensor, optional
        Targets (for the data term).

    Returns
    -------
    float

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from liftinv.lifted import lift
    >>> net = lift(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    >>> x, y = torch.randn(8, 3), torch.randn(8, 2)
    >>> st = net.init_states(x, y)  # forward states: the hidden penalty is 0, the data term remains
    >>> abs(state_block_objective(net, st, 1, y) - net.nested_loss(x, y).item()) < 1e-6
    True
    """
    with torch.no_grad():
        total = net.layer_terms(l, states, y).mean()
        for m in net.consumers[l]:
            total = total + net.layer_terms(m, states, y).mean()
    return float(total)
