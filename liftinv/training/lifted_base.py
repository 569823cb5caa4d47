"""Lifted training solvers: block-coordinate descent (plain, accelerated, adaptive) and implicit SGD.

Every solver minimises the lifted objective of :func:`liftinv.lifted.lift` (mean over samples i)::

    J(Theta, X) = 1/N sum_i [ loss(y_i, z_L^i) + sum_{l<L} lambda_l P_l(x_l^i, W_l x_{l-1}^i + b_l) ]

with P the lifted Bregman penalty B(x, z) = Phi(x) + Phi^*(z) - <x, z> (Wang & Benning, *Lifted Bregman
Training of Neural Networks*, JMLR 24(232), 2023, "P1"), the quadratic MAC penalty 1/2||x - sigma(z)||^2
(Carreira-Perpinan & Wang, *Distributed optimization of deeply nested systems*, AISTATS 2014) or the Fenchel
lifted penalty (Gu, Askari & El Ghaoui, *Fenchel Lifted Networks*, AISTATS 2020), in the unified form of
Wang et al., *A Unified Framework for Lifted Training and Inversion Approaches*, arXiv 2510.09796 ("P4").

Methods registered for :func:`liftinv.training.fit` (``fit(model, data, method=name, **options)``):

====================  ===================================================================================
name                  what one epoch does
====================  ===================================================================================
``bregman-bcd``       BCD on the lifted Bregman objective: ``sweeps`` state sweeps (``order``), then
                      ``weight_steps`` safe weight steps, on every sample shard (states kept across epochs)
``fenchel-bcd``       the same with the Fenchel lifted penalty (ReLU networks only)
``mac-bcd``           the same with the quadratic MAC penalty
``bregman-accel``     BCD with Nesterov extrapolation per block (weights of a layer, states of a layer),
                      restarted when the block objective rises (so it stays monotone)
``bregman-adaptive``  per mini-batch: forward states, ``sweeps`` state sweeps, then an Adam step on the
                      lifted weight gradient (close to back-propagation, see :class:`BregmanAdaptive`)
``bregman-isgm``      implicit SGD: per mini-batch, a few proximal-gradient sweeps on the batch's lifted
                      objective plus 1/(2 tau)||Theta - Theta^k||^2 (P1, Sec. 4)
``mac-isgm``          the same with the MAC penalty
====================  ===================================================================================

One vocabulary for every lifted trainer (these and the unrolled-network ones of
:mod:`liftinv.training.unrolled`): ``lambdas`` is a float or one penalty weight per penalised layer
(:func:`liftinv.lifted.network.check_lambdas`); ``order`` is the state sweep order, one of :data:`SWEEP_ORDERS`
(:func:`sweep_levels`); ``tau`` is the proximal parameter of implicit SGD, 1/(2 tau)||Theta - Theta^k||^2
(:func:`check_tau`); ``sweeps`` counts state sweeps, ``weight_steps`` weight steps and ``inner`` rounds of
both per mini-batch.

Design: no global state. A trainer owns the lifted view of the model (sharing its parameters), the states
of every *sample shard* (``trainer.states[s][l]``: shard s, layer l), the solver's per-block memory
(momenta, Adam moments) and a per-shard cache of step-size estimates. Shards are fixed, seeded partitions of
the training set, so a data-parallel version can give each worker its shards; for fixed states the layers
decouple in the weight step, and odd/even layers in the state step (``order="parity"``), for a
layer-parallel one. Tensors live on the model's device; everything is deterministic given the seed (the
mini-batch order comes from the epoch generator of :func:`~liftinv.training.fit`), and ``state_dict()``
holds all of it, so an interrupted run resumes to the same weights.

Block steps. Dense layers (``nn.Linear``, possibly after ``nn.Flatten``) with a Bregman/Fenchel penalty use
closed-form safe steps (:class:`DenseWeightBlock`, :func:`dense_state_step`): the gradients
(sigma(z) - x)[x_prev; 1]^T and W^T(sigma(z) - x) need no derivative of sigma, and the step sizes 1/L with
L = lambda ||[X; 1]||^2 / N and lambda ||W||^2 are exact Lipschitz constants, so no line search is needed.
Full-batch BCD computes those norms exactly (monotone descent); the mini-batch methods use a warm-started
power iteration times 1.05 (as good, and cheap next to a 64-sample batch). Every other layer (convolutions,
residual and proximal blocks, MAC penalties) goes through :func:`liftinv.lifted.state_step` and
:func:`liftinv.lifted.weight_step` (autograd gradients, power-iteration steps, backtracking).

Measured on 8x8 digits (MLP 64-128-128-10 ReLU, MSE to one-hot; ``benchmarks/classification.py``): several
weight steps per sweep matter most (full-batch BCD, 200 epochs: 5 / 10 / 20 weight steps gave 95.9 / 97.0 /
97.4% test accuracy), the first sweep must go top-down, and keeping the states across epochs
(``reinit=False``, the default) was as good as re-initialising them from a forward pass after every epoch
(95.9 / 95.9% vs 96.1 / 94.6% over two seeds) while keeping the objective monotone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from liftinv.lifted.activations import NotProximalError
from liftinv.lifted.dense import (
    DenseWeightBlock,
    _lam,
    dense_parts,
    dense_state_step,
    fast_state_ok,
)
from liftinv.lifted.network import LiftingError, lift
from liftinv.lifted.norms import exact_sq_norm, exact_sq_norms, power_sq_norm, power_sq_norms
from liftinv.lifted.steps import (
    free_states,
    layer_parameters,
    state_step,
    weight_blocks,
    weight_step,
)
from liftinv.training.loop import targets_for_loss

__all__ = [
    "LiftedTrainer",
    "make_shards",
    "SWEEP_ORDERS",
    "sweep_levels",
    "check_order",
    "check_tau",
]


# ---------------------------------------------------------------------------------------------------------
# option checks and small helpers
# ---------------------------------------------------------------------------------------------------------
#: state sweep orders of every lifted trainer (``order=``), see :func:`sweep_levels`
SWEEP_ORDERS = ("top-down", "parity", "symmetric")


def check_order(order) -> str:
    """Check a sweep ``order`` option (one of :data:`SWEEP_ORDERS`)."""
    if order not in SWEEP_ORDERS:
        raise ValueError(f"order must be one of {', '.join(map(repr, SWEEP_ORDERS))}; got {order!r}")
    return order


def sweep_levels(levels: Sequence[int], order: str) -> list[int]:
    """The state blocks of one sweep, in the order they are updated.

    Parameters
    ----------
    levels : sequence of int
        The free state blocks, last hidden layer first (top-down).
    order : {"top-down", "parity", "symmetric"}
        ``"top-down"``: last hidden layer first (a bottom-up sweep from forward states does nothing: they are
        a fixed point of the state steps; the target reaches every state in one top-down sweep);
        ``"parity"``: the layers of the top layer's parity, then the others, each top-down (states of one
        parity do not interact in a chain: their steps can run in parallel); ``"symmetric"``: bottom-up then
        top-down (propagates weight changes up through stale states, then the target down).

    Examples
    --------
    >>> sweep_levels([4, 3, 2, 1], "top-down"), sweep_levels([4, 3, 2, 1], "parity")
    ([4, 3, 2, 1], [4, 2, 3, 1])
    >>> sweep_levels([3, 2, 1], "symmetric")
    [1, 2, 3, 3, 2, 1]
    """
    levels = list(levels)
    check_order(order)
    if order == "parity" and levels:
        top = levels[0]
        return [l for l in levels if (top - l) % 2 == 0] + [l for l in levels if (top - l) % 2 == 1]
    if order == "symmetric":
        return levels[::-1] + levels
    return levels


def check_tau(tau) -> float:
    """The proximal parameter ``tau`` of implicit SGD: > 0, ``float("inf")`` for no proximal term."""
    if isinstance(tau, bool) or not (isinstance(tau, int | float) and tau > 0):
        raise ValueError(f"tau must be a positive float (or inf: no proximal term), got {tau!r}")
    return float(tau)


def _to_device(obj, device):
    """Move every tensor inside nested dicts/lists/tuples to ``device``."""
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_device(v, device) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_device(v, device) for v in obj)
    return obj


def _clean_cache(cache: dict) -> dict:
    """The cache entries worth saving: step sizes and power-iteration vectors.

    Entries that refer to the model (``"blocks"``: the weight blocks with their parameters) are dropped;
    :func:`liftinv.lifted.weight_step` rebuilds them.
    """

    def has_parameter(v) -> bool:
        if isinstance(v, nn.Parameter):
            return True
        if isinstance(v, dict):
            return any(has_parameter(u) for u in v.values())
        if isinstance(v, list | tuple):
            return any(has_parameter(u) for u in v)
        return False

    return {k: v for k, v in cache.items() if k != "blocks" and not has_parameter(v)}


def make_shards(n: int, batch_size: int | None, seed: int, device=None) -> list[Tensor]:
    """Fixed, seeded partition of ``range(n)`` into shards of at most ``batch_size`` samples.

    Parameters
    ----------
    n : int
        Number of samples.
    batch_size : int or None
        Shard size; ``None`` gives one shard with every sample (full-batch BCD).
    seed : int
        Seeds the permutation (shards do not change over epochs: their states persist).
    device : torch.device, optional
        Device of the index tensors.

    Returns
    -------
    list of Tensor
        Sorted index tensors, one per shard.

    Examples
    --------
    >>> [s.tolist() for s in make_shards(5, None, 0)]
    [[0, 1, 2, 3, 4]]
    >>> sorted(sum((s.tolist() for s in make_shards(5, 2, 0)), []))
    [0, 1, 2, 3, 4]
    """
    if batch_size is None or batch_size >= n:
        return [torch.arange(n, device=device)]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed) + 7919))
    return [torch.sort(p).values.to(device) for p in perm.split(batch_size)]


# ---------------------------------------------------------------------------------------------------------
# base class
# ---------------------------------------------------------------------------------------------------------
class LiftedTrainer:
    """Common part of the lifted trainers: lifting, targets, block updates, objective.

    Parameters
    ----------
    model : nn.Module
        The network (trained in place: the lifted network shares its parameters).
    X, Y : Tensor
        Training inputs and targets (class labels or float targets), on the model's device.
    loss : {"mse", "ce"}
        Last-layer loss (MSE to one-hot targets, or cross-entropy with a softmax last activation).
    seed : int
        Seeds the shard partition.
    lambdas : float or sequence of float
        Penalty weights lambda_l >= 0: a float, or one value per penalised layer (see :func:`liftinv.lifted.network.check_lambdas`).
    penalty : {"bregman", "fenchel", "quadratic"}, optional
        Layer penalty (default: the class's).
    order : {"top-down", "parity", "symmetric"}
        State sweep order (see :func:`sweep_levels`).

    Raises
    ------
    ValueError
        For invalid lambdas (see :func:`liftinv.lifted.network.check_lambdas`) and other invalid options.
    LiftingError
        For layers ``lift`` cannot handle (BatchNorm, MaxPool, Dropout, unknown modules, ...).
    NotProximalError
        For activations that are not proximal maps (GELU, SiLU, sign, ...); hard thresholds are trained with
        FTPROP (``method="ftprop-softhinge"``).
    """

    #: registry name (set by subclasses)
    method = "lifted"
    #: default penalty
    default_penalty = "bregman"
    #: exact step-size norms (eigenvalues) or warm-started power iteration
    exact_norms = True

    def __init__(
        self,
        model: nn.Module,
        X: Tensor,
        Y: Tensor,
        *,
        loss: str = "mse",
        seed: int = 0,
        lambdas=1.0,
        penalty: str | None = None,
        order: str = "top-down",
    ):
        check_order(order)
        penalty = penalty or self.default_penalty
        try:
            self.net = lift(model, loss=loss, penalty=penalty, lambdas=lambdas)
        except NotProximalError as exc:
            raise NotProximalError(f"{self.method}: {exc}") from None
        except LiftingError as exc:
            raise LiftingError(f"{self.method}: {exc}") from None
        self.model, self.loss, self.seed, self.order = model, loss, int(seed), order
        self.X = X
        self.device = X.device
        with torch.no_grad():
            n_out = model(X[:1]).shape[1]
        self.T = targets_for_loss(Y, n_out, loss, X.dtype).to(self.device)
        net = self.net
        self.free = free_states(net)
        #: weight blocks (layers sharing parameters, their parameters), keyed by their first layer
        self.blocks = {layers[0]: (layers, params) for layers, params in weight_blocks(net)}
        #: single-layer blocks with the closed-form dense step
        self._dense = {
            l: len(layers) == 1 and dense_parts(net, l) is not None for l, (layers, _) in self.blocks.items()
        }
        self._fast_state = {l: fast_state_ok(net, l) for l in self.free}
        #: the state blocks of one sweep, in update order
        self.sweep_order = sweep_levels(self.free[::-1], order)

    # --- block updates ---------------------------------------------------------------------------------
    def _sq_norm(self, A: Tensor, augment: bool, cache: dict, key) -> float:
        if self.exact_norms:
            return exact_sq_norm(A, augment)
        return power_sq_norm(A, augment, cache, key)

    def state_update(
        self, states: list[Tensor], l: int, y: Tensor, cache: dict, lip: float | None = None
    ) -> None:
        """One safe forward-backward step on state block l (closed form for dense consumers), in place.

        ``lip``: the closed-form step's constant lambda_{l+1} ||W_{l+1}||^2 when already known
        (:meth:`state_lipschitz`).
        """
        if self._fast_state[l]:
            if lip is None:
                lip = self.state_lipschitz(cache, [l])[l]
            dense_state_step(self.net, states, l, y, lip)
        else:
            state_step(self.net, states, l, y, cache=cache)

    def state_lipschitz(self, cache: dict, levels=None) -> dict[int, float]:
        """lambda_{l+1} ||W_{l+1}||^2 of every state with a closed-form step (of ``levels``; default: those of a
        sweep): the constants of a sweep, all at once (the weights do not change during a sweep;
        :meth:`_weight_sq_norms`)."""
        levels = self.sweep_order if levels is None else levels
        fast = [l for l in dict.fromkeys(levels) if self._fast_state[l]]
        weights = [dense_parts(self.net, l + 1)[1].weight.detach() for l in fast]
        norms = self._weight_sq_norms(weights, cache, [("pw", l + 1) for l in fast])
        return {l: _lam(self.net, l + 1) * v for l, v in zip(fast, norms)}

    def sweep(self, states: list[Tensor], y: Tensor, cache: dict) -> None:
        """One sweep over the free state blocks in ``order`` (in place)."""
        lips = self.state_lipschitz(cache)
        for l in self.sweep_order:
            self.state_update(states, l, y, cache, lips.get(l))

    def dense_weight_blocks(self, states: list[Tensor], y: Tensor, cache: dict) -> tuple[dict, list[int]]:
        """Closed-form blocks ``{l: DenseWeightBlock}`` of dense layers, and the first layers of the other blocks.

        The other blocks (convolutions, shared parameters, MAC penalties) are updated by
        :func:`liftinv.lifted.weight_step`; blocks whose penalty weights are all 0 are left out. The step
        sizes ||[M_l, 1]||^2 of all the dense blocks are computed together (:meth:`_data_sq_norms`).
        """
        dense, others, norms, pending = [], [], {}, {}
        for l, (layers, _) in self.blocks.items():
            if max(_lam(self.net, m) for m in layers) == 0:
                continue
            if not self._dense[l]:
                others.append(l)
                continue
            dense.append(l)
            if self.exact_norms and self.net.layers[l - 1].inputs == (0,) and ("xnorm", l) in cache:
                norms[l] = cache[("xnorm", l)]  # the input state never changes (full-batch / shard BCD)
                continue
            prefix, lin = dense_parts(self.net, l)
            M = prefix(states[l - 1]) if len(prefix) else states[l - 1]
            pending[l] = (M.detach(), lin.bias is not None)
        if pending:
            values = self._data_sq_norms(
                [M for M, _ in pending.values()],
                [b for _, b in pending.values()],
                cache,
                [("pm", l) for l in pending],
            )
            for l, value in zip(pending, values):
                norms[l] = value
                if self.exact_norms and self.net.layers[l - 1].inputs == (0,):
                    cache[("xnorm", l)] = value
        return {l: self._dense_block(states, y, l, norms[l]) for l in dense}, others

    # --- hooks of the data-parallel trainers (liftinv.training.distributed): the sums over samples -------
    def _data_sq_norms(self, Ms: list[Tensor], augments: list[bool], cache: dict, keys: list) -> list[float]:
        """||[M_l, 1]||_2^2 of the batch's input states of the dense layers (the step sizes of their weight
        blocks), all at once (:func:`~liftinv.lifted.norms.exact_sq_norms`, or the power iterations in
        lockstep: :func:`~liftinv.lifted.norms.power_sq_norms`).

        A hook: the data-parallel trainers sum the Gram maps over the ranks' samples, in one collective per
        power iteration for every layer.
        """
        if self.exact_norms:
            return exact_sq_norms(Ms, augments)
        return power_sq_norms(Ms, augments, cache, keys)

    def _weight_sq_norms(self, weights: list[Tensor], cache: dict, keys: list) -> list[float]:
        """||W||_2^2 of the weight matrices ``weights`` (the state step sizes; a hook: data-parallel ranks share
        the exact eigenvalue problems instead of each solving all of them)."""
        return [self._sq_norm(W, False, cache, key) for W, key in zip(weights, keys)]

    def _dense_block(self, states: list[Tensor], y: Tensor, l: int, norm_sq: float) -> DenseWeightBlock:
        """The closed-form weight block of dense layer l (a hook: data-parallel blocks sum the gradient)."""
        return DenseWeightBlock(self.net, states, y, l, norm_sq=norm_sq)

    def _step_dense_blocks(self, blocks: dict[int, DenseWeightBlock]) -> None:
        """One safe gradient step on every dense block (they decouple for fixed states, so the order is free).

        A hook: the data-parallel trainers all-reduce the gradients of every block in one collective.
        """
        for blk in blocks.values():
            blk.step()

    def _weight_step(
        self, states: list[Tensor], y: Tensor, layers: list[int], cache: dict
    ) -> dict[int, float]:
        """One :func:`liftinv.lifted.weight_step` on the blocks of ``layers`` (a hook, as above)."""
        return weight_step(self.net, states, y, layers=layers, cache=cache)

    # --- shared quantities ---------------------------------------------------------------------------
    def objective_parts(self, states: Sequence[Tensor], y: Tensor) -> dict[str, float]:
        """Lifted objective, data term and penalty (means over the samples of ``states``)."""
        with torch.no_grad():
            parts = self.net.objective(states, y)
        return {k: float(parts[k]) for k in ("objective", "data", "penalty")}

    def nested_loss(self) -> float:
        """Nested loss of the ordinary forward pass on the whole training set, at the current weights."""
        with torch.no_grad():
            return float(self.net.nested_loss(self.X, self.T))

    def parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of every lifted layer (shared with the model)."""
        out, seen = [], set()
        for layer in self.net.layers:
            for p in layer_parameters(layer):
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
        return out

    def run_epoch(self, epoch: int, generator: torch.Generator) -> dict[str, float]:  # pragma: no cover
        raise NotImplementedError

    def state_dict(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def load_state_dict(self, d: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError
