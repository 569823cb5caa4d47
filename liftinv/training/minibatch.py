"""Mini-batch lifted trainers: adaptive (Adam on lifted gradients) and implicit SGD (ISGM).

See :mod:`liftinv.training.lifted_base` for the objective and the block steps.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from liftinv.lifted.steps import block_objective
from liftinv.training.bcd import MACBCD, BregmanAccelerated, BregmanBCD, FenchelBCD
from liftinv.training.lifted_base import LiftedTrainer, _clean_cache, _to_device, check_tau
from liftinv.training.loop import _check_batch_size, _check_int, minibatches
from liftinv.training.registry import register_method

__all__ = ["BregmanAdaptive", "ISGMTrainer", "BregmanISGM", "MACISGM", "SOLVERS"]


# mini-batch methods: adaptive (Adam on lifted gradients) and implicit SGD
# ---------------------------------------------------------------------------------------------------------
class _MiniBatchLifted(LiftedTrainer):
    """Shared loop of the mini-batch lifted methods: states exist only for the current batch."""

    exact_norms = False

    def __init__(self, model, X, Y, *, batch_size: int | None = 64, **options):
        super().__init__(model, X, Y, **options)
        self.batch_size = _check_batch_size(batch_size, allow_none=True)
        self.cache: dict = {}

    def batch_update(self, idx: Tensor) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def run_epoch(self, epoch: int, generator: torch.Generator) -> dict[str, float]:
        """One pass over the mini-batches (seeded order).

        Returns
        -------
        dict
            ``objective``, ``data``, ``penalty``: sample-weighted means over the batches of the batch's lifted
            objective after its state sweeps; ``nested``: the nested loss on the training set after the epoch.
        """
        n = self.X.shape[0]
        parts = {"objective": 0.0, "data": 0.0, "penalty": 0.0}
        for idx in minibatches(n, self.batch_size, generator):
            idx = idx.to(self.device)
            p = self.batch_update(idx)
            for k in parts:
                parts[k] += p[k] * idx.numel() / n
        parts["nested"] = self.nested_loss()
        return parts

    def state_dict(self) -> dict:
        return {"cache": _to_device(_clean_cache(self.cache), "cpu")}

    def load_state_dict(self, d: dict) -> None:
        self.cache = _to_device(d["cache"], self.device)


@register_method("bregman-adaptive")
class BregmanAdaptive(_MiniBatchLifted):
    """Adaptive lifted Bregman training: Adam's diagonal preconditioning of the lifted weight gradient.

    For each mini-batch S: states from a forward pass, ``sweeps`` state sweeps (safe forward-backward
    steps, in ``order``: top-down by default), then one Adam step on the gradient of the lifted objective in
    the weights, sum_l lambda_l (sigma_l(W_l x_{l-1} + b_l) - x_l)[x_{l-1}; 1]^T / |S| (no derivative of sigma, no backward
    pass through the network).

    Note (measured, DESIGN sec. 4): after one top-down sweep from forward states this gradient is the
    back-propagation gradient scaled per layer by mu lambda / (1 + mu lambda) (except on inactive units), and
    Adam is nearly invariant to per-layer scaling, so the method behaves like back-propagation with Adam.
    It is kept as the "adaptive" variant of P1/P4; pure BCD and ISGM are the lifted references.

    Parameters
    ----------
    model, X, Y, loss, seed, lambdas, penalty, order
        See :class:`LiftedTrainer`.
    batch_size : int
        Mini-batch size (default 64).
    sweeps : int
        State sweeps per batch (default 1).
    lr : float
        Adam learning rate (default 1e-3).
    weight_decay : float
        Adam's L2 weight decay (default 0), as for ``backprop-adam``.

    Examples
    --------
    >>> import torch
    >>> from liftinv.models import mlp
    >>> from liftinv.training import fit
    >>> X, Y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    >>> h = fit(mlp([4, 16, 3]), (X, Y), method="bregman-adaptive", epochs=2, progress=False)
    >>> sorted(k for k in h.last if k in ("objective", "nested"))
    ['nested', 'objective']
    """

    method = "bregman-adaptive"
    default_penalty = "bregman"

    def __init__(
        self,
        model,
        X,
        Y,
        *,
        sweeps: int = 1,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        **options,
    ):
        super().__init__(model, X, Y, **options)
        self.sweeps = _check_int("sweeps", sweeps, 1)
        if not (isinstance(lr, int | float) and lr > 0):
            raise ValueError(f"lr must be a positive float, got {lr!r}")
        if not (isinstance(weight_decay, int | float) and weight_decay >= 0):
            raise ValueError(f"weight_decay must be a non-negative number, got {weight_decay!r}")
        self.opt = torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay)

    def batch_update(self, idx: Tensor) -> dict[str, float]:
        net, cache = self.net, self.cache
        y = self.T[idx]
        st = net.init_states(self.X[idx], y)
        for _ in range(self.sweeps):
            self.sweep(st, y, cache)
        parts = self.objective_parts(st, y)
        self.opt.zero_grad(set_to_none=True)
        blocks, others = self.dense_weight_blocks(st, y, cache)
        for blk in blocks.values():
            for p, g in zip(blk.params(), blk.gradient()):
                p.grad = g if p.grad is None else p.grad + g
        if others:
            with torch.enable_grad():
                sum(block_objective(net, st, self.blocks[l][0], y) for l in others).backward()
        self.opt.step()
        return parts

    def state_dict(self) -> dict:
        return {**super().state_dict(), "optimizer": self.opt.state_dict()}

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        self.opt.load_state_dict(d["optimizer"])


class ISGMTrainer(_MiniBatchLifted):
    """Implicit stochastic gradient method for lifted training (Wang & Benning, JMLR 2023, Sec. 4).

    For each mini-batch S (seeded order) the step from Theta^k approximately solves::

        min_{Theta, X_S}  1/|S| sum_{i in S} sum_l lambda_l P_l(x_l^i, W_l x_{l-1}^i + b_l)
                          + sum_l 1/(2 tau) ||Theta_l - Theta_l^k||^2

    by ``inner`` proximal-gradient sweeps, starting from the batch's forward states: a state sweep (in
    ``order``, top-down by default), then for each layer the proximal-gradient weight step with the safe
    step eta_l = 1/L_l::

        Theta_l <- ( Theta_l - eta_l grad_l + (eta_l / tau) Theta_l^k ) / (1 + eta_l / tau)

    (the exact prox of the proximal term). tau -> infinity gives plain mini-batch BCD; a small tau keeps each
    batch's update close to Theta^k (an implicit, unconditionally stable SGD step). States exist only for
    the current batch.

    Parameters
    ----------
    model, X, Y, loss, seed, lambdas, penalty, order
        See :class:`LiftedTrainer`.
    batch_size : int
        Mini-batch size (default 64).
    tau : float
        Proximal parameter (> 0; ``float("inf")`` drops the proximal term; default 10). The same name and
        meaning in the implicit SGD of unrolled networks (:mod:`liftinv.training.unrolled`).
    inner : int
        Inner proximal-gradient sweeps per batch (default 3).

    Examples
    --------
    >>> import torch
    >>> from liftinv.models import mlp
    >>> from liftinv.training import fit
    >>> X, Y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    >>> h = fit(mlp([4, 16, 3]), (X, Y), method="bregman-isgm", epochs=2, batch_size=16, progress=False)
    >>> len(h)
    2
    """

    method = "isgm"

    def __init__(self, model, X, Y, *, tau: float = 10.0, inner: int = 3, **options):
        super().__init__(model, X, Y, **options)
        self.tau = check_tau(tau)
        self.inner = _check_int("inner", inner, 1)

    def _prox(self, params, anchors, eta: float) -> None:
        if math.isinf(self.tau) or eta <= 0:
            return
        r = eta / self.tau
        with torch.no_grad():
            for p, a in zip(params, anchors):
                p.mul_(1.0 / (1.0 + r)).add_(a, alpha=r / (1.0 + r))

    def batch_update(self, idx: Tensor) -> dict[str, float]:
        net, cache = self.net, self.cache
        y = self.T[idx]
        st = net.init_states(self.X[idx], y)
        anchors = {l: [p.detach().clone() for p in params] for l, (_, params) in self.blocks.items()}
        for _ in range(self.inner):
            self.sweep(st, y, cache)
            blocks, others = self.dense_weight_blocks(st, y, cache)
            self._step_dense_blocks(blocks)
            for l, blk in blocks.items():
                self._prox(blk.params(), anchors[l], blk.eta)
            if others:
                steps = self._weight_step(st, y, others, cache)
                for l, eta in steps.items():
                    self._prox(self.blocks[l][1], anchors[l], eta)
        return self.objective_parts(st, y)


@register_method("bregman-isgm")
class BregmanISGM(ISGMTrainer):
    __doc__ = "Lifted Bregman implicit SGD. " + ISGMTrainer.__doc__
    method = "bregman-isgm"
    default_penalty = "bregman"


@register_method("mac-isgm")
class MACISGM(ISGMTrainer):
    __doc__ = (
        "Implicit SGD on the MAC quadratic penalty (Carreira-Perpinan & Wang 2014). " + ISGMTrainer.__doc__
    )
    method = "mac-isgm"
    default_penalty = "quadratic"


#: method name -> trainer class of this module
SOLVERS: dict[str, type[LiftedTrainer]] = {
    cls.method: cls
    for cls in (BregmanBCD, FenchelBCD, MACBCD, BregmanAccelerated, BregmanAdaptive, BregmanISGM, MACISGM)
}
