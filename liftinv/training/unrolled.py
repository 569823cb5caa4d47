"""Lifted trainers specialised to unrolled proximal networks (registered with :func:`liftinv.training.fit`).

Method names: ``"bregman-isgm"``, ``"bregman-bcd"``, ``"mac-isgm"``, ``"mac-bcd"`` -- the same algorithms as
for any other network (:mod:`liftinv.training.registry` picks these implementations for models with
``lifted_layers`` and ``state_lipschitz``). They minimise the lifted objective of an unrolled network whose
states are the iterates ``u_k`` (or every layer of every iteration) of every training sample (Wang & Benning, JMLR 2023; Wang, Benning & Repetti, MLSP 2024;
Wang et al., arXiv 2510.09796)::

    J(Theta, U) = 1/N sum_i [ 1/2 ||M_{K+1}(u_K^i, y^i) - x_true^i||^2 + sum_{k<=K} lambda_k P_k(u_k^i, z_k^i) ],
    z_k^i = M_k(u_{k-1}^i, y^i)  (affine in u_{k-1} and in the measurement y),

with P the lifted Bregman penalty ``B(u, z) = Phi(u) + Phi^*(z) - <u, z>`` (or MAC's ``1/2||u - sigma(z)||^2``)
and the last state fixed to the clean image, so the data term is the nested MSE loss of the last layer.

Why specialised trainers (and not the generic ``bregman-*`` solvers of :mod:`liftinv.training.bcd` and :mod:`liftinv.training.minibatch`)?

* Parameters are shared between consecutive layers (``D_k`` is the analysis of layer k and the synthesis
  in layer k+1), so per-layer weight steps do not decouple; here the weights form one block whose gradient
  is ``sum_k dP_k/dTheta`` at fixed states (for Bregman: ``(sigma_k(z_k) - u_k) dz_k/dTheta``, no
  ``sigma'`` and no backward pass through the depth: every layer's graph is one iteration deep).
* The state steps are exact forward-backward steps ``u_l <- prox_{mu lambda_l Phi_l}(u_l - mu grad)`` with
  ``mu = 1 / L_l``, ``L_l = sum_m lambda_m ||K_{m,l}||^2`` over the layers m that read state l (``K_{m,l}``
  the linear part of layer m in state l; the data term has weight 1): safe for any lambdas, also for
  states read by several layers (the learned CNN networks: LPD's primal and dual states feed three
  layers, the proximal-gradient CNN's iterates two). The convex-prior networks' maps have known norms
  (``||D_k|| = 1``, ``||I - tau_k A^T A|| <= 1``, ``tau_k ||L_k||^2 < 2``, ``tau_k`` the network's step
  sizes, not the ISGM parameter ``tau`` below; :meth:`state_lipschitz` of the networks, one reader per
  state); the learned networks' are estimated (``state_map_norms``: one warm-started power iteration per
  layer, refreshed every ``lipschitz_every`` weight steps).

Two schemes:

* **ISGM** (implicit stochastic gradient): per mini-batch S, states start at the forward pass, and
  ``inner`` times: ``sweeps`` state sweeps (in ``order``), then ``weight_steps`` steps on
  ``J_S(Theta, U_S) + 1/(2 tau) ||Theta - Theta^S||^2`` (the proximal term anchors the weights at the
  values they had when the batch arrived; ``tau`` as in :class:`liftinv.training.minibatch.ISGMTrainer`).
* **BCD** (block-coordinate descent): states are kept per sample across epochs (initialised once by a
  forward pass) and updated only by state sweeps; each mini-batch does ``inner`` rounds of state sweep +
  weight steps on ``J_S`` (no proximal term).

Sweep orders (``order``): ``"top-down"`` (the default: the target reaches every state in one sweep),
``"symmetric"`` (bottom-up then top-down) and ``"parity"``: groups of states that do not interact
(:func:`liftinv.lifted.steps.independent_groups`), one group after the other, each top-down: the odd and
even layers of a chain, and for the DAG-shaped learned networks (skip connections, states read by several
layers) the groups of a colouring of their interaction graph (3 for LPD), not the index parities.

Weight steps (``weight_update``):

* ``"gd"``: a gradient step per parameter tensor with its own step size, found by backtracking on the
  lifted objective (steps grow by 2 after an accepted step): plain lifted block-coordinate descent.
* ``"adam"``: Adam-preconditioned steps on the same lifted gradient (the "adaptive" variant of the
  design notes: a diagonal preconditioner for the badly scaled blocks: filters, thresholds, step logits),
  optionally (``backtrack=True``) shortened until the lifted mini-batch objective decreases.

Where the weight gradient is taken (``weight_point``): ``"final"``: at the states the sweeps end with, the
gradient of ``J_S`` (the block step of BCD; the one ``"gd"`` and ``backtrack`` use, since they test a
decrease of ``J_S``). ``"sweep"`` (plain Adam's default): layer m's term ``lambda_m P_m(u_m, z_m)`` at its
state after the sweep and its pre-activation as the sweep saw it when it updated ``u_m`` (for a top-down
sweep from the forward pass: the forward-pass inputs), the gradient DESIGN §4 describes as
back-propagation's scaled per layer; it needs no new pre-activation (a forward pass less per round).
At the final states a layer also sees how far its inputs moved after its own state was updated: in a
network with skips a memory state such as LPD's ``p_k`` moves by many times its size, and the layers
reading it get gradients that undo the motion. With ``frozen_preactivations`` no state step sees that
motion either. Measured on LPD (K = 5, width 16, 32x32 denoising, one batch at the initialisation),
cosine with the back-propagation gradient, mean (min) over the weight tensors: final 0.38 (-0.60), sweep
0.62 (-0.34), sweep + frozen 0.96 (+0.55). Training (width 32, 64 images, 8 epochs, 3 seeds, PSNR after
the last epoch): back-propagation 26.32 +- 0.12 dB, final 25.24 +- 1.02, sweep 25.05 +- 0.74, frozen
25.77 +- 0.08 (the exact lifted steps oscillate by 1-3 dB between epochs; ``benchmarks/lifted_cost.py``).

Cost per mini-batch (ISGM, one round): a forward pass (states and their one-layer graphs,
:class:`Preactivations`), a state sweep (one vector-Jacobian product per (layer, state it reads), a layer
recomputed when one of its inputs moved and it is needed again), one backward pass for the weights
(no ``sigma'``), an Adam step; measured by ``benchmarks/lifted_cost.py``.

What each epoch records (``record``): ISGM the objective at each mini-batch's forward-pass states (equal
to the nested loss there, and free), BCD the lifted objective at the final states of each mini-batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from liftinv.lifted import LeakyReLU, LiftedNetwork, Penalty, lift
from liftinv.lifted.network import check_lambdas
from liftinv.lifted.preactivations import Preactivations
from liftinv.lifted.steps import independent_groups
from liftinv.training.lifted_base import check_order, check_tau, sweep_levels
from liftinv.training.loop import _check_int, minibatches
from liftinv.training.registry import register_method

__all__ = ["UnrolledLiftedTrainer", "UNROLLED_METHODS"]

#: registered method name -> (penalty, scheme)
UNROLLED_METHODS = {
    "bregman-isgm": ("bregman", "isgm"),
    "bregman-bcd": ("bregman", "bcd"),
    "mac-isgm": ("quadratic", "isgm"),
    "mac-bcd": ("quadratic", "bcd"),
}


def is_unrolled(model) -> bool:
    """Whether ``model`` is an unrolled network (lifted form and known state Lipschitz constants)."""
    return hasattr(model, "lifted_layers") and hasattr(model, "state_lipschitz")


def _prox_state(pen: Penalty, v: Tensor, mu: float) -> Tensor:
    """``pen.prox_state(v, mu)`` (``prox_{mu Phi}(v)``; ``v`` may be overwritten).

    For the leaky ReLU, ``prox_{mu Phi}(v) = leaky_relu(v / (1 + mu), 1 / (1 + gamma c))`` with
    ``gamma = mu / (1 + mu)`` and ``c = 1/a - 1``: the same map as :meth:`LeakyReLU.prox_psi` (a
    ``torch.where``, measured 15x slower than ``leaky_relu`` on this CPU, and as slow as a 16-channel
    convolution of the same tensor), in two elementwise passes.
    """
    act = pen.activation
    if type(act) is LeakyReLU and type(pen).prox_state is Penalty.prox_state:
        gamma = mu / (1 + mu)
        return F.leaky_relu_(v.mul_(1 / (1 + mu)), 1 / (1 + gamma * (1 / act.negative_slope - 1)))
    return pen.prox_state(v, mu)


class UnrolledLiftedTrainer:
    """Lifted Bregman / MAC training of an unrolled network by ISGM or BCD (see the module docstring).

    Examples
    --------
    >>> from liftinv.operators import make_operator
    >>> from liftinv.unrolled import build_model
    >>> from liftinv.training import fit
    >>> op = make_operator("denoising", 8)
    >>> x = torch.rand(16, 1, 8, 8); y = x + 0.1 * torch.randn(16, 1, 8, 8)
    >>> net = build_model("proxgrad", op, iterations=2, init="adjoint")
    >>> h = fit(net, (y, x), method="bregman-isgm", epochs=2, progress=False, batch_size=8)
    >>> len(h), h.last["objective"] > 0
    (2, True)

    Parameters
    ----------
    model : UnrolledProxGrad, UnrolledDualFB, LearnedPrimalDual or UnrolledProxGradCNN
        Any module with ``lifted_layers`` and ``state_lipschitz(k)`` (and, for estimated norms,
        ``state_map_norms``).
    X, Y : Tensor
        Measurements ``[N, *measurement_size]`` and clean images ``[N, C, H, W]``.
    loss : "mse"
        Only the squared loss (the fixed last state is the clean image).
    seed : int
        Unused (mini-batch order comes from :func:`liftinv.training.fit`); accepted for the common API.
    penalty : {"bregman", "quadratic"}
        Lifted Bregman or MAC.
    scheme : {"isgm", "bcd"}
        Implicit stochastic gradient with a proximal term, or block-coordinate descent with per-sample
        states kept across epochs.
    batch_size : int
        Mini-batch size.
    inner : int
        Rounds (state sweep + weight steps) per mini-batch.
    weight_steps : int
        Weight steps per round.
    sweeps : int
        State sweeps per round.
    order : {"top-down", "parity", "symmetric"}
        State sweep order (module docstring; ``"parity"``: groups of non-interacting states).
    lambdas : float or sequence
        Penalty weights: a float, or one value per penalised layer, i.e. per hidden layer (K values;
        :func:`liftinv.lifted.network.check_lambdas`).
    lr : float
        Adam learning rate (``weight_update="adam"``) or initial step (``"gd"``).
    tau : float
        ISGM proximal parameter: the weights are anchored by ``1/(2 tau) ||Theta - Theta^S||^2`` (> 0;
        ``float("inf")``: no anchor). Unused by BCD.
    weight_update : {"adam", "gd"}
        Weight step rule (see the module docstring).
    backtrack : bool
        With ``"adam"``: shorten each step until the lifted mini-batch objective decreases (monotone, but
        slower on well-conditioned problems; plain Adam steps otherwise).
    lipschitz_every : int
        For networks whose state maps have estimated norms (``state_map_norms``: the learned CNN networks),
        refresh the state step constants every this many weight steps (one warm-started power iteration
        per layer, about the cost of a forward pass at batch size 1 per layer; :meth:`lipschitz_constants`).
        Between refreshes the weights move little (Adam steps of size ``lr``), and a forward-backward step
        still decreases the objective with up to twice the safe step. Networks with known constants
        (``UnrolledProxGrad``, ``UnrolledDualFB``) recompute them before every sweep.
    record : {"forward", "final"}, optional
        Where each mini-batch's objective (the epoch's record) is taken. ``"forward"`` (ISGM's default): at
        the forward-pass states the batch starts from, where the lifted objective equals the nested loss
        (free: the value back-propagation records, before the batch's step). ``"final"`` (BCD's default and
        only choice): at the batch's final states, before its last weight step (the lifted objective the
        solver drives down, whose penalties show how far the states moved from the forward pass; it costs
        the penalties' values, about a dozen elementwise passes per layer).
    weight_point : {"sweep", "final"}, optional
        Where the weight gradient is taken (module docstring): ``"sweep"`` (default with plain Adam steps)
        or ``"final"`` (the gradient of ``J_S`` at the final states; the default, and the only choice, with
        ``weight_update="gd"`` or ``backtrack``).
    frozen_preactivations : bool, default False
        Every state step of a round sees the pre-activations of the states the round started from (the
        forward pass, for ISGM), as if the other states had not moved: a proximal backward propagation of
        targets (as ProxProp, Frerix et al., ICLR 2018) instead of block-coordinate descent on ``J_S`` (not a
        descent method for ``J_S``; plain Adam steps only). Cheaper (no pre-activation is recomputed) and,
        on networks with skips, its weight gradient is closer to back-propagation's (module docstring).
    """

    def __init__(
        self,
        model,
        X: Tensor,
        Y: Tensor,
        *,
        loss: str = "mse",
        seed: int = 0,
        penalty: str = "bregman",
        scheme: str = "isgm",
        batch_size: int = 32,
        inner: int = 3,
        weight_steps: int = 1,
        sweeps: int = 1,
        order: str = "top-down",
        lambdas=1.0,
        lr: float = 5e-3,
        tau: float = 1.0,
        weight_update: str = "adam",
        backtrack: bool = False,
        lipschitz_every: int = 4,
        record: str | None = None,
        weight_point: str | None = None,
        frozen_preactivations: bool = False,
    ):
        if loss != "mse":
            raise ValueError(
                f"unrolled lifted training uses the squared loss (loss='mse'), got loss={loss!r}"
            )
        if not hasattr(model, "lifted_layers") or not hasattr(model, "state_lipschitz"):
            raise TypeError(
                f"the unrolled lifted trainers need an unrolled network (UnrolledProxGrad/UnrolledDualFB), got "
                f"{type(model).__name__}; use the generic 'bregman-*' methods for other models"
            )
        if scheme not in ("isgm", "bcd"):
            raise ValueError(f"scheme must be 'isgm' or 'bcd', got {scheme!r}")
        if weight_update not in ("adam", "gd"):
            raise ValueError(f"weight_update must be 'adam' or 'gd', got {weight_update!r}")
        check_order(order)
        record = record or ("forward" if scheme == "isgm" else "final")
        if record not in ("forward", "final") or (record == "forward" and scheme == "bcd"):
            raise ValueError(
                f"record must be 'final' or (ISGM only) 'forward', got {record!r} for scheme {scheme!r}"
            )
        self.record = record
        step_tests = weight_update == "gd" or backtrack  # the value at the final states must decrease
        weight_point = weight_point or ("final" if step_tests else "sweep")
        if weight_point not in ("sweep", "final") or (weight_point == "sweep" and step_tests):
            raise ValueError(
                f"weight_point must be 'final' or (with plain Adam steps) 'sweep', got {weight_point!r}"
            )
        self.weight_point = weight_point
        if not isinstance(frozen_preactivations, bool):
            raise ValueError(f"frozen_preactivations must be a bool, got {frozen_preactivations!r}")
        if frozen_preactivations and step_tests:
            raise ValueError("frozen_preactivations needs plain Adam steps (no 'gd', no backtrack)")
        self.frozen_preactivations = frozen_preactivations
        for name, v in (
            ("batch_size", batch_size),
            ("inner", inner),
            ("weight_steps", weight_steps),
            ("sweeps", sweeps),
            ("lipschitz_every", lipschitz_every),
        ):
            _check_int(name, v, 1)
        self.tau = check_tau(tau)
        self.model, self.X, self.Y = model, X, Y
        self.K = len(model.lifted_layers(0)) - 1
        hidden = check_lambdas(lambdas, self.K)
        self.net: LiftedNetwork = lift(model, last="fixed", penalty=penalty, lambdas=hidden)
        self.penalty, self.scheme = penalty, scheme
        self.batch_size, self.inner, self.weight_steps = batch_size, inner, weight_steps
        self.sweeps, self.order = sweeps, order
        #: the hidden states of one sweep, in update order
        levels = range(self.K, 0, -1)
        if order == "parity":  # groups of states that do not interact (the parities of a chain)
            self.sweep_order = [l for g in independent_groups(self.net, levels) for l in g]
        else:
            self.sweep_order = sweep_levels(levels, order)
        self.weight_update, self.lr = weight_update, float(lr)
        self.backtrack = bool(backtrack)
        self.params = [p for p in model.parameters() if p.requires_grad]
        # Adam moments (our own, so that a step can be shortened by backtracking)
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0
        self.scale = 1.0  # backtracking factor of the Adam step, in (0, 1]
        self.gd_steps = [self.lr] * len(self.params)
        self.states: list[Tensor] | None = None  # per-sample states (BCD)
        self._lipschitz: dict[int, float] | None = None  # state step constants (see lipschitz_constants)
        # estimated norms are refreshed every lipschitz_every weight steps; known ones at every step
        self.lipschitz_every = lipschitz_every if hasattr(model, "state_map_norms") else 1
        self._since_lipschitz = 0
        self._power_cache: dict = {}  # warm starts of the power iterations (checkpointed)
        # the weights enter the objective only through the pre-activations (no learnable activation)
        self._through_z = not any(
            p.requires_grad for la in self.net.layers for p in la.activation.parameters()
        )

    # -- states --------------------------------------------------------------------------------------------
    def _forward_states(self, y: Tensor, t: Tensor) -> tuple[list[Tensor], Preactivations]:
        """Forward-pass states ``[y, x_1, ..., x_K, t]`` and their pre-activations (with graphs)."""
        states: list[Tensor] = [y, *([y] * self.K), t.detach()]
        pre = Preactivations(self.net, states)
        with torch.no_grad():
            for m in range(1, self.K + 1):
                states[m] = self.net.layers[m - 1].activation(pre.get(m)).detach()
        return states, pre

    def _all_states(self) -> list[Tensor]:
        """BCD's per-sample hidden states ``[N, ...]`` per layer, from a forward pass on first use (in chunks
        of 256 samples); only the rows of :meth:`_stored_rows` are computed, the others stay zero."""
        if self.states is None:
            rows = self._stored_rows()
            states: list[Tensor] = []
            for i in range(0, len(rows), 256):
                chunk = rows[i : i + 256]
                part = self.net.init_states(self.X[chunk], self.Y[chunk])[1 : self.K + 1]
                if not states:
                    states = [s.new_zeros((len(self.X), *s.shape[1:])) for s in part]
                for stored, s in zip(states, part):
                    stored[chunk] = s
            self.states = states
        return self.states

    def lipschitz_constants(self) -> dict[int, float]:
        """``L_l = sum_m lambda_m ||K_{m,l}||^2`` over the layers m reading hidden state l, for every l.

        The Lipschitz constant of the smooth part's gradient in x_l, for any lambdas (the data term of the
        last layer has weight 1). Networks with ``state_map_norms()`` (the learned CNN networks) give every
        ``||K_{m,l}||^2`` (power iterations, warm-started: one iteration per call after the first); the
        others give ``state_lipschitz(l)``, a bound on ``sum_m ||K_{m,l}||^2`` (exact constants for the
        convex-prior networks, whose states each feed one layer), used as ``max_m lambda_m`` times it.
        Cached until the next refresh (``lipschitz_every``).
        """
        if self._lipschitz is None:
            net, model = self.net, self.model
            lam = [1.0] + [p.weight for p in net.penalties]  # lam[m] (lam[depth] = 1: the data term)
            if hasattr(model, "state_map_norms"):
                norms = model.state_map_norms(warm_iters=1, cache=self._power_cache)
                L = {l: sum(lam[m] * norms[(m, l)] for m in net.consumers[l]) for l in range(1, self.K + 1)}
            else:
                L = {
                    l: max(lam[m] for m in net.consumers[l]) * float(model.state_lipschitz(l))
                    for l in range(1, self.K + 1)
                }
            self._lipschitz = {l: max(v, 1e-12) for l, v in L.items()}
        return self._lipschitz

    def _grad_z(self, m: int, states: list[Tensor], z: Tensor) -> Tensor:
        """Gradient in ``z_m`` of layer m's term: ``lambda_m dP/dz`` (Bregman: ``lambda_m (sigma(z) - x)``),
        or ``z - t`` for the data term of the last layer."""
        if m == self.K + 1:
            return z - states[m]
        pen = self.net.penalties[m - 1]
        d = pen.grad_z(states[m], z)
        return d if pen.weight == 1.0 else d.mul_(pen.weight)

    @torch.no_grad()
    def state_sweep(
        self, states: list[Tensor], t: Tensor, pre: Preactivations | None = None
    ) -> Preactivations:
        """One sweep of exact forward-backward steps on the hidden states (in place), in ``order``.

        For state l: ``g = sum_m K_{m,l}^T d_m - lambda_l z_l`` (Bregman; ``d_m`` = :meth:`_grad_z`: no
        ``sigma'``), ``x_l <- prox_{mu lambda_l Phi_l}(x_l - mu g)`` with ``mu = 1/L_l``
        (:meth:`lipschitz_constants`); MAC: ``x_l <- x_l - g / (L_l + lambda_l)``. ``pre`` (the pre-activations
        of ``states`` for the current weights, e.g. from the forward pass) is updated and returned.
        """
        net = self.net
        pre = Preactivations(net, states) if pre is None else pre
        lips = self.lipschitz_constants()
        pre.remember(self.K + 1)  # the data term, before any input moves
        for l in self.sweep_order:
            g = None
            for m in net.consumers[l]:
                r = pre.vjp(m, l, self._grad_z(m, states, pre.get(m)))
                g = r if g is None else g.add_(r)
            pen = net.penalties[l - 1]
            lam = pen.weight
            if pen.convex_in_state:
                mu = 1.0 / lips[l]
                v = torch.add(states[l], g, alpha=-mu).add_(pre.remember(l), alpha=mu * lam)
                states[l] = _prox_state(pen, v, mu * lam)
            else:
                g = g + lam * (states[l] - pen.activation(pre.remember(l)))
                states[l] = states[l] - g / (lips[l] + lam)
            if not self.frozen_preactivations:
                pre.changed(l)
        return pre

    # -- hooks of the data-parallel trainer (liftinv.training.distributed) ------------------------------------
    def _local_indices(self, idx: Tensor) -> Tensor:
        """The samples of the mini-batch ``idx`` this process handles (a hook: a data-parallel rank's part)."""
        return idx

    def _stored_rows(self) -> Tensor:
        """The samples whose BCD states this process keeps (a hook: a data-parallel rank's own); here all."""
        return torch.arange(len(self.X), device=self.X.device)

    def _sum_over_ranks(self, tensors: list[Tensor]) -> list[Tensor]:
        """Per-process sums over samples, summed over the processes (a hook: one all-reduce; here as is)."""
        return tensors

    def _batch_count(self, n: int) -> int:
        """Samples in the mini-batch of every process, this one holding ``n`` (a hook; here ``n``)."""
        return n

    def _batch_means(self, sums: Tensor, n: int) -> Tensor:
        """Means over the mini-batch of every process from this process's sums over its ``n`` samples."""
        (sums,) = self._sum_over_ranks([sums])
        return sums / self._batch_count(n)

    def _parts(self, sums: Tensor, n: int) -> dict[str, Tensor]:
        """Objective, penalty and data term (means over the mini-batch of every process) from this process's
        sums ``[K + 1]`` of the layer terms over its ``n`` samples (the last one: the data term)."""
        means = self._batch_means(sums, n)
        penalty = means[:-1].sum()
        return {"objective": penalty + means[-1], "penalty": penalty, "data": means[-1]}

    # -- weights -------------------------------------------------------------------------------------------
    def _objective_parts(self, states, t, pre: Preactivations | None = None) -> dict[str, Tensor]:
        """The lifted mini-batch objective and its parts (``pre``: reuse those pre-activations)."""
        sums = [
            self.net.layer_terms(m, states, t, z=None if pre is None else pre.get(m)).sum()
            for m in range(1, self.K + 2)
        ]
        return self._parts(torch.stack(sums), states[0].shape[0])

    def _prox_term(self, anchor) -> Tensor | float:
        """The ISGM proximal term ``1/(2 tau) ||Theta - Theta^S||^2`` (0 without an anchor)."""
        if anchor is None or math.isinf(self.tau):
            return 0.0
        return sum(((p - a) ** 2).sum() for p, a in zip(self.params, anchor)) / (2 * self.tau)

    def _weight_objective(self, states, t, anchor) -> Tensor:
        return self._objective_parts(states, t)["objective"] + self._prox_term(anchor)

    def _weight_gradient(self, states, t, anchor, pre: Preactivations | None, value: bool = True):
        """Objective parts (before the step), the value with the proximal term, and the weight gradient.

        The gradient is that of ``sum_m lambda_m P_m(x_m, z_m)`` (plus the proximal term) at the current
        states x_m, with ``z_m`` at the final states (``weight_point="final"``) or as the sweep saw it when it
        updated x_m (``"sweep"``: :attr:`Preactivations.at_update`). When no activation has weights (the
        learned CNN networks) the weights enter only through the pre-activations, and the gradient is one
        vector-Jacobian product of every ``z_m`` with ``dJ/dz_m`` (:meth:`_grad_z`, no ``sigma'``): no
        backward pass through the penalties' values, which are evaluated (at the final states, without a
        graph) only when needed (``value``: for the record or a backtracking test; otherwise the parts and the
        value are None). Otherwise (learnable thresholds, clips), autograd through the objective.
        """
        pre = Preactivations(self.net, states) if pre is None else pre
        at = pre.at_update if self.weight_point == "sweep" else {}
        zs = {m: at[m] if m in at else pre.get(m) for m in range(1, self.K + 2)}
        value = value or self.weight_update == "gd" or self.backtrack
        parts = f0 = None
        if value and (self._through_z or at):
            with torch.no_grad():
                parts = self._objective_parts(states, t, pre)
                f0 = parts["objective"] + self._prox_term(anchor)
        if self._through_z:
            pairs = [(z, self._grad_z(m, states, z.detach())) for m, z in zs.items() if z.requires_grad]
            grads = torch.autograd.grad(
                [z for z, _ in pairs], self.params, [d for _, d in pairs], allow_unused=True
            )
            # (the mean over the samples: divide the small gradients, not the large dJ/dz)
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads)]
            torch._foreach_div_(grads, self._batch_count(states[0].shape[0]))
        else:
            with torch.enable_grad():
                terms = [self.net.layer_terms(m, states, t, z=z).sum() for m, z in zs.items()]
                local = sum(terms, torch.zeros_like(terms[0])) / self._batch_count(states[0].shape[0])
                grads = torch.autograd.grad(local, self.params, allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads)]
            if value and parts is None:  # final point: the objective the gradient was taken of
                parts = self._parts(torch.stack([v.detach() for v in terms]), states[0].shape[0])
                f0 = parts["objective"] + self._prox_term(anchor)
        grads = self._sum_over_ranks(grads)
        # the proximal term's gradient (Theta - Theta^S) / tau, once (not summed over the processes)
        if anchor is not None and not math.isinf(self.tau):
            grads = [g + (p.detach() - a) / self.tau for g, p, a in zip(grads, self.params, anchor)]
        if not value:
            return None, None, grads
        return {k: float(v.detach()) for k, v in parts.items()}, f0.detach(), grads

    def weight_step(
        self, states, t, anchor, pre: Preactivations | None = None, record: bool = True
    ) -> dict[str, float] | None:
        """One step on all the weights for fixed states; returns the objective and its parts before the step
        (None when not ``record`` and the step rule does not need them).

        The gradient of ``J_S`` (plus the ISGM proximal term) in the weights is computed layer by layer at the
        fixed states (each layer's graph is one iteration deep; ``pre``: the pre-activations of the states,
        whose graphs are reused; :meth:`_weight_gradient`). ``"adam"``: see :meth:`_adam_step`; ``"gd"``: a
        gradient step per parameter tensor with its own backtracked step size.
        """
        self._since_lipschitz += 1
        if (
            self._since_lipschitz >= self.lipschitz_every
        ):  # the weights move: refresh the state step constants
            self._lipschitz, self._since_lipschitz = None, 0
        parts, f0, grads = self._weight_gradient(states, t, anchor, pre, record)
        if self.weight_update == "adam":
            self._adam_step(states, t, anchor, f0, grads)
            return parts
        # plain gradient steps, one step size per tensor, backtracking tensor by tensor (Gauss-Seidel)
        with torch.no_grad():
            fcur = float(f0.detach())
            for i, (p, g) in enumerate(zip(self.params, grads)):
                gg = float((g * g).sum())
                if gg == 0:
                    continue
                old = p.detach().clone()
                step = 2.0 * self.gd_steps[i]
                for _ in range(30):
                    p.copy_(old - step * g)
                    f1 = float(self._weight_objective(states, t, anchor))
                    if f1 <= fcur - 0.5 * step * gg:
                        break
                    step *= 0.5
                else:
                    p.copy_(old)
                    f1, step = fcur, self.gd_steps[i] * 0.5
                self.gd_steps[i] = step
                fcur = f1
        return parts

    @torch.no_grad()
    def _adam_step(self, states, t, anchor, f0, grads, beta1=0.9, beta2=0.999, eps=1e-8) -> float:
        """Adam direction ``d = m_hat / (sqrt(v_hat) + eps)``, step ``lr * s * d``.

        Without ``backtrack`` ``s = 1`` (Adam on the lifted gradient). With ``backtrack`` the step is halved until the (mini-batch, proximal) lifted objective decreases by the Armijo amount
        ``1e-4 s lr <g, d>``; ``s`` starts from the last accepted value times 2 (at most 1), so the step never
        exceeds Adam's and the objective never increases. Lifted objectives of unrolled networks can be far
        stiffer in the weights than the nested loss (a dual-FB layer has pre-activations scaled by
        ``tau_k ~ 1/||L_k||^2``), where a plain Adam step would blow the penalties up.
        """
        self.t += 1
        b1, b2 = 1 - beta1**self.t, 1 - beta2**self.t
        # (multi-tensor "foreach" kernels, as torch.optim.Adam: one call per operation for all the tensors)
        torch._foreach_mul_(self.m, beta1)
        torch._foreach_add_(self.m, grads, alpha=1 - beta1)
        torch._foreach_mul_(self.v, beta2)
        torch._foreach_addcmul_(self.v, grads, grads, value=1 - beta2)
        denom = torch._foreach_sqrt(torch._foreach_div(self.v, b2))
        torch._foreach_add_(denom, eps)
        dirs = torch._foreach_div(torch._foreach_div(self.m, b1), denom)

        def dot(a, b) -> float:
            return float(torch.stack([(x * y).sum() for x, y in zip(a, b)]).sum())

        slope = dot(grads, dirs)
        fval = float(f0) if f0 is not None else math.nan
        if slope <= 0:  # not a descent direction for this batch (stale moments): plain normalised gradient
            dirs = torch._foreach_div(grads, denom)
            slope = dot(grads, dirs)
        if not self.backtrack:
            torch._foreach_add_(self.params, dirs, alpha=-self.lr)
            return fval
        old = [p.detach().clone() for p in self.params]
        s = min(1.0, 2.0 * self.scale)
        for _ in range(12):
            for p, o, d in zip(self.params, old, dirs):
                p.copy_(o - s * self.lr * d)
            f1 = float(self._weight_objective(states, t, anchor))
            if f1 <= fval - 1e-4 * s * self.lr * slope:
                self.scale = s
                return fval
            s *= 0.5
        for p, o in zip(self.params, old):
            p.copy_(o)
        self.scale = s
        return fval

    # -- epoch ---------------------------------------------------------------------------------------------
    def run_epoch(self, epoch: int, generator: torch.Generator) -> dict[str, float]:
        """One pass over the mini-batches (order from ``generator``); returns the lifted objective and its parts
        (``objective``, ``penalty``, ``data``), averaged over the samples of the mini-batches, each taken where
        it costs no extra forward pass (``record``)."""
        N = self.X.shape[0]
        tot = {"objective": 0.0, "penalty": 0.0, "data": 0.0}
        stored = self._all_states() if self.scheme == "bcd" else None
        for idx in minibatches(N, self.batch_size, generator):
            idx = idx.to(self.X.device)
            count = idx.numel()  # over every process
            idx = self._local_indices(idx)
            y, t = self.X[idx], self.Y[idx]
            if stored is None:
                states, pre = self._forward_states(y, t)
                if self.record == "forward":  # the lifted objective at the forward states: the nested loss
                    with torch.no_grad():
                        terms = self.net.layer_terms(self.K + 1, states, t, z=pre.get(self.K + 1))
                        data = float(self._batch_means(terms.sum().reshape(1), len(idx))[0])
                    parts = {"objective": data, "penalty": 0.0, "data": data}
            else:
                states, pre = [y] + [s[idx].clone() for s in stored] + [t], None
            anchor = [p.detach().clone() for p in self.params] if self.scheme == "isgm" else None
            for i in range(self.inner):
                for _ in range(self.sweeps):
                    pre = self.state_sweep(states, t, pre)
                for j in range(self.weight_steps):
                    last = i == self.inner - 1 and j == self.weight_steps - 1
                    final = self.weight_step(states, t, anchor, pre, record=last and self.record == "final")
                    pre = None  # the weights moved
            if self.record == "final":
                parts = final
            if stored is not None:
                for l in range(1, self.K + 1):
                    stored[l - 1][idx] = states[l]
            for k in tot:
                tot[k] += parts[k] * count
        return {k: v / N for k, v in tot.items()}

    def state_dict(self) -> dict:
        """Adam moments, step sizes, (BCD) the per-sample states and the power-iteration warm starts."""
        return {
            "adam": {
                "m": [m.cpu() for m in self.m],
                "v": [v.cpu() for v in self.v],
                "t": self.t,
                "scale": self.scale,
            },
            "gd_steps": list(self.gd_steps),
            "states": [s.cpu() for s in self.states] if self.states is not None else None,
            "lipschitz": {
                "since": self._since_lipschitz,
                "constants": self._lipschitz,
                "vectors": [(k, v.cpu()) for k, v in self._power_cache.items()],
            },
        }

    def load_state_dict(self, d: dict) -> None:
        """Restore what :meth:`state_dict` saved (resuming gives the same weights as an uninterrupted run)."""
        if d.get("adam") is not None:
            a = d["adam"]
            self.m = [m.to(p.device, p.dtype) for m, p in zip(a["m"], self.params)]
            self.v = [v.to(p.device, p.dtype) for v, p in zip(a["v"], self.params)]
            self.t, self.scale = int(a["t"]), float(a["scale"])
        self.gd_steps = list(d.get("gd_steps", self.gd_steps))
        if d.get("states") is not None:
            self.states = [s.to(self.X.device, self.X.dtype) for s in d["states"]]
        if d.get("lipschitz") is not None:
            lip = d["lipschitz"]
            self._since_lipschitz, self._lipschitz = int(lip["since"]), lip["constants"]
            self._power_cache = {k: v.to(self.X.device, self.X.dtype) for k, v in lip["vectors"]}


def _make(name: str, penalty: str, scheme: str):
    cls = type(
        "Trainer_" + name.replace("-", "_"),
        (UnrolledLiftedTrainer,),
        {
            "__doc__": f"``{name}``: {UnrolledLiftedTrainer.__doc__}",
            "__init__": lambda self, model, X, Y, **kw: UnrolledLiftedTrainer.__init__(
                self, model, X, Y, **{"penalty": penalty, "scheme": scheme, **kw}
            ),
        },
    )
    register_method(name, cls, applies_to=is_unrolled)
    return cls


for _name, (_pen, _scheme) in UNROLLED_METHODS.items():
    _make(_name, _pen, _scheme)
