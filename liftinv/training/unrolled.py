"""Lifted trainers specialised to unrolled proximal networks (registered with :func:`liftinv.training.fit`).

Method names: ``"bregman-isgm"``, ``"bregman-bcd"``, ``"mac-isgm"``, ``"mac-bcd"`` -- the same algorithms as
for any other network (:mod:`liftinv.training.registry` picks these implementations for models with
``lifted_layers`` and ``state_lipschitz``). They minimise the lifted objective of an unrolled network whose states are the
iterates ``u_k`` of every training sample (Wang & Benning, JMLR 2023; Wang, Benning & Repetti, MLSP 2024;
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
* The state steps need no power iteration: the state maps have known norms (``||D_k|| = 1``,
  ``||I - tau_k A^T A|| <= 1``, ``tau_k ||L_k||^2 < 2`` with ``tau_k`` the network's step sizes, not the
  ISGM parameter ``tau`` below; :meth:`state_lipschitz` of the networks), so every
  state step is an exact forward-backward step ``u_k <- prox_{mu lambda_k Phi_k}(u_k - mu grad)`` with
  ``mu = 1/(lambda_{k+1} ||dz_{k+1}/du_k||^2)``.

Two schemes:

* **ISGM** (implicit stochastic gradient): per mini-batch S, states start at the forward pass, and
  ``inner`` times: ``sweeps`` state sweeps (in ``order``), then ``weight_steps`` steps on
  ``J_S(Theta, U_S) + 1/(2 tau) ||Theta - Theta^S||^2`` (the proximal term anchors the weights at the
  values they had when the batch arrived; ``tau`` as in :class:`liftinv.training.minibatch.ISGMTrainer`).
* **BCD** (block-coordinate descent): states are kept per sample across epochs (initialised once by a
  forward pass) and updated only by state sweeps; each mini-batch does ``inner`` rounds of state sweep +
  weight steps on ``J_S`` (no proximal term).

Weight steps (``weight_update``):

* ``"gd"``: a gradient step per parameter tensor with its own step size, found by backtracking on the
  lifted objective (steps grow by 2 after an accepted step): plain lifted block-coordinate descent.
* ``"adam"``: Adam-preconditioned steps on the same lifted gradient (the "adaptive" variant of the
  design notes: a diagonal preconditioner for the badly scaled blocks: filters, thresholds, step logits),
  optionally (``backtrack=True``) shortened until the lifted mini-batch objective decreases.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from liftinv.lifted import LiftedNetwork, lift, state_gradient
from liftinv.lifted.network import check_lambdas
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
    model : UnrolledProxGrad or UnrolledDualFB
        Any module with ``lifted_layers`` and ``state_lipschitz(k)``.
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
        State sweep order (:func:`liftinv.training.lifted_base.sweep_levels`).
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
        for name, v in (
            ("batch_size", batch_size),
            ("inner", inner),
            ("weight_steps", weight_steps),
            ("sweeps", sweeps),
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
        self.sweep_order = sweep_levels(range(self.K, 0, -1), order)
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

    # -- states --------------------------------------------------------------------------------------------
    def _forward_states(self, y: Tensor, t: Tensor) -> list[Tensor]:
        return self.net.init_states(y, t)

    def _all_states(self) -> list[Tensor]:
        if self.states is None:
            chunks = [
                self._forward_states(self.X[i : i + 256], self.Y[i : i + 256])
                for i in range(0, len(self.X), 256)
            ]
            self.states = [torch.cat([c[l] for c in chunks]) for l in range(1, self.K + 1)]
        return self.states

    @torch.no_grad()
    def state_sweep(self, states: list[Tensor], t: Tensor) -> None:
        """One sweep of exact forward-backward steps on the hidden states (in place), in ``order``
        (:func:`liftinv.training.lifted_base.sweep_levels`)."""
        net = self.net
        for l in self.sweep_order:
            lam_next = net.penalties[l].weight if l < self.K else 1.0
            lam = net.penalties[l - 1].weight
            L = max(lam_next * float(self.model.state_lipschitz(l)), 1e-12)
            g = state_gradient(net, states, l, t)
            pen = net.penalties[l - 1]
            if pen.convex_in_state:
                mu = 1.0 / L
                states[l] = pen.prox_state(states[l] - mu * g, mu * lam)
            else:
                mu = 1.0 / (L + lam)
                states[l] = states[l] - mu * g

    # -- weights -------------------------------------------------------------------------------------------
    def _weight_objective(self, states, t, anchor) -> Tensor:
        total = self.net.objective(states, t)["objective"]
        if anchor is not None and not math.isinf(self.tau):
            prox = sum(((p - a) ** 2).sum() for p, a in zip(self.params, anchor))
            total = total + prox / (2 * self.tau)
        return total

    def weight_step(self, states, t, anchor) -> float:
        """One step on all the weights for fixed states; returns the objective before the step.

        The gradient of ``J_S`` (plus the ISGM proximal term) in the weights is computed layer by layer at the
        fixed states (each layer's graph is one iteration deep). ``"adam"``: see :meth:`_adam_step`;
        ``"gd"``: a gradient step per parameter tensor with its own backtracked step size.
        """
        with torch.enable_grad():
            f0 = self._weight_objective(states, t, anchor)
            grads = torch.autograd.grad(f0, self.params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads)]
        if self.weight_update == "adam":
            return self._adam_step(states, t, anchor, f0, grads)
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
        return float(f0.detach())

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
        dirs = []
        for m, v, g in zip(self.m, self.v, grads):
            m.mul_(beta1).add_(g, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            dirs.append((m / b1) / ((v / b2).sqrt() + eps))
        slope = float(sum((g * d).sum() for g, d in zip(grads, dirs)))
        fval = float(f0.detach())
        if slope <= 0:  # not a descent direction for this batch (stale moments): plain normalised gradient
            dirs = [g / ((v / b2).sqrt() + eps) for g, v in zip(grads, self.v)]
            slope = float(sum((g * d).sum() for g, d in zip(grads, dirs)))
        if not self.backtrack:
            for p, d in zip(self.params, dirs):
                p.sub_(self.lr * d)
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
        (``objective``, ``penalty``, ``data``), averaged over the samples at the end of their mini-batch."""
        N = self.X.shape[0]
        tot = {"objective": 0.0, "penalty": 0.0, "data": 0.0}
        stored = self._all_states() if self.scheme == "bcd" else None
        for idx in minibatches(N, self.batch_size, generator):
            idx = idx.to(self.X.device)
            y, t = self.X[idx], self.Y[idx]
            if stored is None:
                states = self._forward_states(y, t)
            else:
                states = [y] + [s[idx].clone() for s in stored] + [t]
            anchor = [p.detach().clone() for p in self.params] if self.scheme == "isgm" else None
            for _ in range(self.inner):
                for _ in range(self.sweeps):
                    self.state_sweep(states, t)
                for _ in range(self.weight_steps):
                    self.weight_step(states, t, anchor)
            if stored is not None:
                for l in range(1, self.K + 1):
                    stored[l - 1][idx] = states[l]
            with torch.no_grad():
                parts = self.net.objective(states, t)
            for k in tot:
                tot[k] += float(parts[k]) * idx.numel()
        return {k: v / N for k, v in tot.items()}

    def state_dict(self) -> dict:
        """Adam moments, step sizes and (BCD) the per-sample states, for checkpoints."""
        return {
            "adam": {
                "m": [m.cpu() for m in self.m],
                "v": [v.cpu() for v in self.v],
                "t": self.t,
                "scale": self.scale,
            },
            "gd_steps": list(self.gd_steps),
            "states": [s.cpu() for s in self.states] if self.states is not None else None,
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
