"""FTPROP trainers for hard-threshold networks: ftprop-mb (soft hinge, hinge), saturated STE, STE, exact.

The units and their surrogate backward passes live in :mod:`liftinv.models.hard_threshold` (its docstring
has the mathematics); here are the trainers registered with :func:`liftinv.fit` (Friesen & Domingos, ICLR
2018).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liftinv.models.hard_threshold import (
    Sign,
    Staircase,
    set_surrogate,
)
from liftinv.training.backprop import BackpropTrainer
from liftinv.training.loop import epoch_ticker, nested_loss, targets_for_loss
from liftinv.training.registry import register_method

__all__ = ["FTPropTrainer", "FTPropSoftHinge", "FTPropHinge", "SaturatedSTE", "STE", "ExactFTPropTrainer"]


# ---------------------------------------------------------------------------------------------------------
# ftprop-mb trainers (and the STE baselines): Adam on the surrogate gradients
# ---------------------------------------------------------------------------------------------------------
class FTPropTrainer(BackpropTrainer):
    """FTPROP-mb: mini-batch Adam on the FTPROP surrogate gradients (one backward pass per batch).

    Before training, every :class:`Sign` / :class:`Staircase` module of the model gets the method's
    per-unit loss (``surrogate``); then each mini-batch does one forward pass (hard thresholds), one
    ``backward()`` that sets the targets ``t = sign(-dL/dh)`` with weights ``|dL/dh|`` and differentiates
    every layer's loss, and one Adam step. Methods: ``ftprop-softhinge`` (soft hinge, the paper's
    FTP-SH), ``ftprop-hinge``, ``sste`` (truncated hinge = saturated STE) and ``ste`` (linear loss).
    Friesen & Domingos, ICLR 2018.

    Parameters
    ----------
    model : nn.Module
        A network with at least one :class:`Sign` or :class:`Staircase` unit.
    X, Y : Tensor
        Training inputs and targets (class labels or float targets).
    loss : {"mse", "ce"}
        Last-layer loss.
    seed : int
        Unused (mini-batch order comes from the epoch generator); kept for the trainer API.
    lr : float, optional
        Adam step size; default 1e-3.
    batch_size : int
        Default 64.
    weight_decay : float
        Adam weight decay; default 0 (the paper: 5e-4).
    lr_decay_epochs, lr_decay : tuple of int, float
        Step schedule: the step size is multiplied by ``lr_decay`` (default 0.1) after each epoch count in
        ``lr_decay_epochs`` (default none); see :class:`liftinv.training.backprop.BackpropTrainer`.

    Examples
    --------
    >>> import torch
    >>> from liftinv.models import mlp
    >>> from liftinv.training import fit
    >>> X = torch.randn(64, 4); y = (X[:, 0] > 0).long()
    >>> net = mlp((4, 16, 2), activation="sign")
    >>> h = fit(net, (X, y), method="sste", epochs=2, progress=False)
    >>> len(h), net[2].surrogate
    (2, 'truncated_hinge')
    """

    surrogate = "soft_hinge"
    optimizer_name = "adam"

    def __init__(self, model, X, Y, **options):
        if set_surrogate(model, self.surrogate) == 0:
            raise ValueError(
                "model has no hard-threshold units (liftinv.models.Sign / Staircase); the FTPROP and STE "
                "methods train hard-threshold networks. Use activation='sign' or 'qrelu2' "
                "(liftinv.models), or method='backprop-adam' for a differentiable network."
            )
        # With the surrogates set, one epoch is exactly the Adam back-propagation epoch of the parent class
        # (same options, same checks): each hard-threshold unit's backward computes its FTPROP-mb target and
        # per-layer loss gradient.
        super().__init__(model, X, Y, **options)


@register_method("ftprop-softhinge")
class FTPropSoftHinge(FTPropTrainer):
    """FTPROP-mb with the soft hinge ``tanh(-t z) + 1`` (FTP-SH); sign backward ``g (1 - tanh(z)^2)``.

    See :class:`FTPropTrainer` for the options. Friesen & Domingos, ICLR 2018.
    """

    surrogate = "soft_hinge"


@register_method("ftprop-hinge")
class FTPropHinge(FTPropTrainer):
    """FTPROP-mb with the hinge ``max(0, 1 - t z)``; sign backward ``g 1{t z < 1}``, ``t = sign(-g)``.

    See :class:`FTPropTrainer` for the options. Friesen & Domingos, ICLR 2018.
    """

    surrogate = "hinge"


@register_method("sste")
class SaturatedSTE(FTPropTrainer):
    """Saturated straight-through estimator = FTPROP-mb with ``min(2, max(0, 1 - t z))``: ``g 1{|z| <= 1}``.

    See :class:`FTPropTrainer` for the options. Friesen & Domingos, ICLR 2018 (Hubara et al. 2016).
    """

    surrogate = "truncated_hinge"


@register_method("ste")
class STE(FTPropTrainer):
    """Straight-through estimator = FTPROP-mb with the linear loss ``-t z``: backward ``g``.

    See :class:`FTPropTrainer` for the options. Friesen & Domingos, ICLR 2018 (Bengio et al. 2013).
    """

    surrogate = "linear"


# ---------------------------------------------------------------------------------------------------------
# exact FTPROP for small networks: discrete target search + convex per-unit fits
# ---------------------------------------------------------------------------------------------------------
def _hinge(u: Tensor) -> Tensor:
    return (1.0 - u).clamp_min(0.0)


def _unit_loss(out: Tensor, target: Tensor, kind: str) -> Tensor:
    """Per-sample sum over units of the hinge or squared hinge of ``target * out`` (targets in {-1, 1})."""
    if kind == "hinge":
        return _hinge(target * out).sum(-1)
    return _hinge(target * out).pow(2).sum(-1)


@register_method("ftprop-exact")
class ExactFTPropTrainer:
    """Exact (non-gradient) FTPROP for small hard-threshold networks: target search + convex unit fits.

    The network must be ``[Flatten] Linear (Sign Linear)*`` (hidden layers of :class:`Sign` units; meant
    for one or two, a few dozen units and up to a few thousand samples). Given discrete targets
    ``T_d`` in {-1, +1} for every hidden unit, training decomposes into independent convex problems, one
    per unit (and one for the output layer); the hard, combinatorial part is the choice of the targets
    (Friesen & Domingos, ICLR 2018, Algorithm 1). One epoch is one sweep:

    1. Forward pass: outputs ``A_d = sign(Z_d)`` of every hidden layer (``A_0`` = inputs).
    2. Target search, top-down (last hidden layer first). Starting from the actual outputs ``T = A_d``
       (feasible by construction), minimise over ``T`` in {-1, 1}^(N x m)::

           S(T) = LS(Y_above | T) + feasibility * LS(T | A_{d-1})
           LS(Y | A) = min_beta 1/(2N) ||Y - [A, 1] beta||^2 + ridge/2 ||beta_w||^2   (closed form)

       where ``Y_above`` is the task target (one-hot labels) for the last hidden layer and the targets
       ``T_{d+1}`` just chosen for the layer above otherwise. The first term is the loss of the layer
       above *refit* to the candidate targets (the closed-form least-squares refit is used whatever the
       task loss: with ``loss="ce"`` it is a surrogate of the output fit); the second measures how far
       each unit's targets are from being producible from its inputs (a least-squares/Adaline proxy of
       the unit's convex problem; it keeps the search away from infeasible targets such as XOR for one
       unit). The search is greedy:
       every single flip ``T[i, j] -> -T[i, j]`` is evaluated exactly (a rank-2 update of the refit, all
       flips in one batched solve; the ``max_candidates`` best by first-order estimate on larger problems),
       the best flip (or the best flip of every sample together when that is better) is taken, until no
       flip lowers ``S`` or ``search_rounds`` is reached.
    3. Convex fits, bottom-up: every hidden unit ``j`` of layer d solves
       ``min_{w, b} (1/N) sum_i l(T_d[i, j] (w . a_i + b)) + (ridge/2) ||w||^2`` on the actual outputs
       ``a_i`` of the layer below, with ``l`` the squared hinge ``max(0, 1 - u)^2`` (an L2-SVM, solved by
       L-BFGS) or the hinge ``max(0, 1 - u)`` (a perceptron-type problem, solved by subgradient
       descent); all units of a layer are solved together (their problems are separable). Then the output
       layer is fit to the task loss (ridge least squares for ``"mse"``, L-BFGS logistic regression for
       ``"ce"``): convex.

    The trainer keeps the best network seen (fewest training errors, then lowest task loss): an epoch that
    ends with a worse network is undone. When an epoch brings no improvement and some training sample is
    still misclassified (a local minimum of the greedy search), the next epoch starts its search from the
    actual outputs with a random fraction ``perturb`` of the targets flipped (drawn from the epoch's
    generator, so runs are reproducible and resumable): a stochastic local search whose objective never
    increases. Reported per epoch: ``objective`` (task loss of the kept network), ``flips`` (targets
    changed by the search), ``missed_targets`` (fraction of hidden targets the convex fits did not reach;
    0 means the targets were feasible), ``perturbed`` and ``reverted`` (1 when the epoch was undone). This is the small-scale, principled
    variant; use ``ftprop-softhinge`` (one backward pass per mini-batch) for larger networks.

    Parameters
    ----------
    model : nn.Sequential
        ``[Flatten] Linear (Sign Linear)*``; no hidden layer is allowed (a linear classifier).
    X, Y : Tensor
        Training data (the whole set is used every epoch).
    loss : {"mse", "ce"}
        Task loss of the output layer.
    seed : int
        Unused (randomness comes from the epoch generator).
    search_rounds : int
        Maximum number of greedy flip steps per hidden layer per epoch (default 100).
    feasibility : float
        Weight of the feasibility term ``LS(T | A_{d-1})`` in the search (default 0.3).
    unit_loss : {"squared_hinge", "hinge"}
        Per-unit convex loss (default ``"squared_hinge"``).
    unit_steps : int
        L-BFGS iterations (squared hinge) or subgradient steps (hinge) per layer fit (default 200).
    ridge : float
        L2 weight (> 0) of every convex fit and least-squares refit (default 1e-4); it also keeps the
        least-squares systems of the search solvable (+-1 targets make their Gram matrices singular).
    max_candidates : int
        Flips evaluated exactly per step; above ``N * m`` all are (default 4096).
    perturb : float
        Fraction of targets flipped at random after an epoch that made no progress (default 0.1).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from liftinv.training import fit, accuracy
    >>> X = torch.tensor([[0., 0.], [0., 1.], [1., 0.], [1., 1.]]); y = torch.tensor([0, 1, 1, 0])
    >>> torch.manual_seed(0) and None
    >>> net = nn.Sequential(nn.Linear(2, 4), Sign(), nn.Linear(4, 2))
    >>> h = fit(net, (X, y), method="ftprop-exact", epochs=10, progress=False)
    >>> accuracy(net, X, y)
    1.0
    """

    def __init__(
        self,
        model,
        X,
        Y,
        *,
        loss="mse",
        seed=0,
        search_rounds=100,
        feasibility=0.3,
        unit_loss="squared_hinge",
        unit_steps=200,
        ridge=1e-4,
        max_candidates=4096,
        perturb=0.1,
    ):
        self.linears = self._parse(model)
        if unit_loss not in ("squared_hinge", "hinge"):
            raise ValueError(f"unit_loss must be 'squared_hinge' or 'hinge', got {unit_loss!r}")
        for name, v in (
            ("search_rounds", search_rounds),
            ("unit_steps", unit_steps),
            ("max_candidates", max_candidates),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be a non-negative int, got {v!r}")
        if not (isinstance(feasibility, int | float) and feasibility >= 0):
            raise ValueError(f"feasibility must be a non-negative number, got {feasibility!r}")
        if not (isinstance(ridge, int | float) and ridge > 0):
            raise ValueError(f"ridge must be a positive number, got {ridge!r}")
        self.model, self.loss = model, loss
        self.X = X.reshape(X.shape[0], -1)
        if self.X.shape[1] != self.linears[0].in_features:
            raise ValueError(
                f"inputs have {self.X.shape[1]} features but the first Linear layer expects "
                f"{self.linears[0].in_features}"
            )
        self.T = targets_for_loss(Y, self.linears[-1].out_features, loss, self.X.dtype)
        self.search_rounds, self.feasibility = search_rounds, float(feasibility)
        self.unit_loss, self.unit_steps, self.ridge = unit_loss, unit_steps, float(ridge)
        self.max_candidates = max(1, max_candidates)
        if not (isinstance(perturb, int | float) and 0 <= perturb <= 1):
            raise ValueError(f"perturb must be a fraction in [0, 1], got {perturb!r}")
        self.perturb = float(perturb)
        self.labels = None if Y.is_floating_point() else Y.to(self.X.device)
        self._best: tuple[int, float] = (self.X.shape[0] + 1, math.inf)  # (training errors, task loss)
        self._best_params: list[Tensor] | None = None
        self._stuck = False

    @staticmethod
    def _parse(model: nn.Module) -> list[nn.Linear]:
        what = (
            "ftprop-exact needs an nn.Sequential of the form [Flatten] Linear (Sign Linear)* "
            "(hidden layers of liftinv.models.Sign units)"
        )
        if not isinstance(model, nn.Sequential):
            raise ValueError(f"{what}; got {type(model).__name__}")
        mods = list(model)
        if mods and isinstance(mods[0], nn.Flatten):
            mods = mods[1:]
        ok = len(mods) % 2 == 1 and all(
            isinstance(m, nn.Linear) if i % 2 == 0 else isinstance(m, Sign) for i, m in enumerate(mods)
        )
        if not ok:
            names = ", ".join(type(m).__name__ for m in model)
            hint = (
                " (Staircase units are trained by ftprop-softhinge)"
                if any(isinstance(m, Staircase) for m in model)
                else ""
            )
            raise ValueError(f"{what}; got [{names}]{hint}")
        linears = [m for m in mods if isinstance(m, nn.Linear)]
        if any(m.bias is None for m in linears):
            raise ValueError("ftprop-exact needs Linear layers with a bias (bias=True)")
        return linears

    # -- helpers ------------------------------------------------------------------------------------------
    @staticmethod
    def _affine(layer: nn.Linear, a: Tensor) -> Tensor:
        return F.linear(a, layer.weight, layer.bias)

    def _fit_output(self, A: Tensor) -> None:
        """Convex fit of the output layer on inputs ``A`` to the task targets (in place)."""
        layer = self.linears[-1]
        if self.loss == "mse":  # ridge least squares (bias unpenalised), closed form
            beta = torch.linalg.solve(*self._ls_gram(A, self.T))
            layer.weight.copy_(beta[:-1].T)
            layer.bias.copy_(beta[-1])
            return
        W = layer.weight.detach().clone().requires_grad_(True)
        b = layer.bias.detach().clone().requires_grad_(True)

        def objective():
            return nested_loss(F.linear(A, W, b), self.T, "ce") + 0.5 * self.ridge * W.pow(2).sum()

        self._lbfgs([W, b], objective, max(self.unit_steps, 20))
        layer.weight.copy_(W.detach())
        layer.bias.copy_(b.detach())

    @staticmethod
    def _lbfgs(params, objective, steps: int) -> None:
        opt = torch.optim.LBFGS(
            params,
            lr=1,
            max_iter=steps,
            tolerance_grad=1e-9,
            tolerance_change=1e-12,
            history_size=20,
            line_search_fn="strong_wolfe",
        )

        def closure():
            opt.zero_grad()
            value = objective()
            value.backward()
            return value

        with torch.enable_grad():
            opt.step(closure)

    def _fit_units(self, layer: nn.Linear, A: Tensor, T: Tensor) -> None:
        """Per-unit convex fits of a hidden layer: unit j fits targets ``T[:, j]`` from inputs ``A``."""
        W = layer.weight.detach().clone().requires_grad_(True)
        b = layer.bias.detach().clone().requires_grad_(True)
        kind = self.unit_loss

        def objective():
            return _unit_loss(F.linear(A, W, b), T, kind).mean() + 0.5 * self.ridge * W.pow(2).sum()

        if kind == "squared_hinge":
            self._lbfgs([W, b], objective, self.unit_steps)
        else:  # hinge: subgradient descent with steps 1/sqrt(k), keep the best iterate (per layer)
            best = (float(objective()), W.detach().clone(), b.detach().clone())
            scale = 1.0 / max(1.0, float(A.pow(2).sum(1).mean()))
            for k in range(1, self.unit_steps + 1):
                with torch.enable_grad():
                    W.grad = b.grad = None
                    value = objective()
                    value.backward()
                with torch.no_grad():
                    step = scale / math.sqrt(k)
                    W -= step * W.grad
                    b -= step * b.grad
                    if float(value) < best[0]:
                        best = (float(value), W.detach().clone(), b.detach().clone())
            value = float(objective())
            if value < best[0]:
                best = (value, W.detach().clone(), b.detach().clone())
            W, b = best[1], best[2]
        layer.weight.copy_(W.detach())
        layer.bias.copy_(b.detach())

    def _ls_gram(self, A: Tensor, Y: Tensor) -> tuple[Tensor, Tensor]:
        """Gram matrix (ridge on the weights, not the bias) and right-hand side of a least-squares refit."""
        N, p = A.shape[0], A.shape[1] + 1
        A1 = torch.cat([A, torch.ones(N, 1, dtype=A.dtype, device=A.device)], 1)
        reg = torch.full((p,), self.ridge, dtype=A.dtype, device=A.device)
        reg[-1] = 0.0
        G = A1.T @ A1 / N + torch.diag(reg + 1e-8)
        return G, A1.T @ Y / N

    def _ls_value(self, A: Tensor, Y: Tensor) -> Tensor:
        """``min_beta 1/(2N) ||Y - [A, 1] beta||^2 + ridge/2 ||beta_w||^2`` (closed form)."""
        G, B = self._ls_gram(A, Y)
        return 0.5 * Y.pow(2).sum() / A.shape[0] - 0.5 * (B * torch.linalg.solve(G, B)).sum()

    def _flip_values(self, T: Tensor, Y: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
        """Exact refit value ``_ls_value`` after flipping each single target ``T[rows[c], cols[c]]``.

        The flip changes the Gram matrix by a rank-2 and the right-hand side by a rank-1 term; all
        candidates are solved as one batch (chunks of 2048).
        """
        N, m = T.shape
        G, B = self._ls_gram(T, Y)
        A1 = torch.cat([T, torch.ones(N, 1, dtype=T.dtype, device=T.device)], 1)
        out = []
        for s in range(0, rows.numel(), 2048):
            ii, jj = rows[s : s + 2048], cols[s : s + 2048]
            c = torch.arange(ii.numel(), device=T.device)
            delta = (-2.0 * T[ii, jj] / N)[:, None]
            Gc = G.expand(ii.numel(), -1, -1).clone()
            Gc[c, jj, :] += delta * A1[ii]
            Gc[c, :, jj] += delta * A1[ii]
            Gc[c, jj, jj] += 4.0 / N
            Bc = B.expand(ii.numel(), -1, -1).clone()
            Bc[c, jj, :] += delta * Y[ii]
            out.append(0.5 * Y.pow(2).sum() / N - 0.5 * (Bc * torch.linalg.solve(Gc, Bc)).sum((1, 2)))
        return torch.cat(out)

    def _search(self, T: Tensor, A_below: Tensor, Y: Tensor) -> tuple[Tensor, int]:
        """Flip search for the targets ``T`` (start value) of a hidden layer whose inputs are ``A_below``.

        Minimises ``S(T) = LS(Y | T) + feasibility * LS(T | A_below)`` over ``T`` in {-1, 1}^(N x m), where
        ``LS(Y | A)`` is the closed-form ridge least-squares refit value of targets ``Y`` from ``[A, 1]``
        (per sample): the first term scores how well the layer above can fit its targets from ``T``, the
        second how well the units can produce ``T`` from their inputs (an Adaline proxy of the per-unit
        convex fit). Greedy single flips, all evaluated exactly (or the best flip of every sample at once
        when that is better), until no flip lowers ``S``.
        """
        T = T.clone()
        N, m = T.shape
        lam = self.feasibility
        dev = T.device
        # feasibility: LS(t_j | A_below) per column; a flip of T[i, j] changes it by
        # (2 T_ij / N) (A1 beta_j)_i - (2 / N^2) a_i^T K a_i, with K = G^-1 and beta = K A1^T T / N
        Gb, _ = self._ls_gram(A_below, T)
        K = torch.linalg.inv(Gb)
        A1b = torch.cat([A_below, torch.ones(N, 1, dtype=T.dtype, device=dev)], 1)
        lev = ((A1b @ K) * A1b).sum(1)  # a_i^T K a_i
        rows_all = torch.arange(N, device=dev).repeat_interleave(m)
        cols_all = torch.arange(m, device=dev).repeat(N)

        def score(T_):
            return self._ls_value(T_, Y) + lam * self._ls_value(A_below, T_)

        current = score(T)
        flips = 0
        for _ in range(self.search_rounds):
            fit_below = A1b @ (K @ (A1b.T @ T)) / N  # [N, m]
            dfeas = lam * (2.0 * T * fit_below / N - 2.0 * lev[:, None] / N**2)  # exact, [N, m]
            if N * m > self.max_candidates:  # preselect by the first-order change of the refit value
                G, B = self._ls_gram(T, Y)
                beta = torch.linalg.solve(G, B)
                A1 = torch.cat([T, torch.ones(N, 1, dtype=T.dtype, device=dev)], 1)
                grad = (A1 @ beta - Y) @ beta[:-1].T / N  # dLS/dT at fixed beta
                approx = (-2.0 * T * grad + dfeas).reshape(-1)
                pick = torch.topk(-approx, self.max_candidates).indices
                rows, cols = rows_all[pick], cols_all[pick]
            else:
                rows, cols = rows_all, cols_all
            values = (
                self._flip_values(T, Y, rows, cols) + lam * self._ls_value(A_below, T) + dfeas[rows, cols]
            )
            gain = current - values
            if not bool((gain > 1e-10 * (1.0 + current.abs())).any()):
                break
            # try the best improving flip of every sample at once; fall back to the single best flip
            order = torch.argsort(gain, descending=True)
            best = order[0]
            good = order[gain[order] > 0]
            _, group = torch.unique(rows[good], return_inverse=True)
            first = torch.full((int(group.max()) + 1,), good.numel(), dtype=torch.long, device=dev)
            first = first.scatter_reduce(0, group, torch.arange(good.numel(), device=dev), "amin")
            batch = good[first]
            if batch.numel() > 1:
                Tb = T.clone()
                Tb[rows[batch], cols[batch]] *= -1.0
                value_b = score(Tb)
                if value_b < values[best]:
                    T, current, flips = Tb, value_b, flips + batch.numel()
                    continue
            T[rows[best], cols[best]] *= -1.0
            current, flips = values[best], flips + 1
        return T, flips

    # -- trainer API --------------------------------------------------------------------------------------
    @torch.no_grad()
    def run_epoch(self, epoch: int, generator: torch.Generator) -> dict[str, float]:
        L = len(self.linears)
        # fit's progress bar: one step per hidden layer's target search and per layer's fit
        tick = epoch_ticker(2 * (L - 1) + 1, unit="layer step")
        # 1. forward pass
        acts, pres = [self.X], []
        for layer in self.linears[:-1]:
            z = self._affine(layer, acts[-1])
            pres.append(z)
            acts.append(torch.where(z > 0, 1.0, -1.0).to(z.dtype))
        # 2. top-down target search (from the actual outputs; perturbed when the last epoch was stuck)
        targets: list[Tensor | None] = [None] * (L - 1)
        above, flips = self.T, 0
        kick = self._stuck and self.perturb > 0
        for d in range(L - 2, -1, -1):
            start = acts[d + 1].clone()
            if kick:
                mask = torch.rand(start.shape, generator=generator) < self.perturb
                start[mask.to(start.device)] *= -1.0
            targets[d], n = self._search(start, acts[d], above)
            above, flips = targets[d], flips + n
            tick()
        # 3. bottom-up convex fits on the actual inputs of every layer
        a, missed, total = self.X, 0, 0
        for d in range(L - 1):
            self._fit_units(self.linears[d], a, targets[d])
            z = self._affine(self.linears[d], a)
            a = torch.where(z > 0, 1.0, -1.0).to(z.dtype)
            missed += int((a != targets[d]).sum())
            total += a.numel()
            tick()
        self._fit_output(a)
        tick()
        out = self._affine(self.linears[-1], a)
        objective = float(nested_loss(out, self.T, self.loss))
        errors = 0 if self.labels is None else int((out.argmax(1) != self.labels).sum())
        # keep the best network so far: fewer training errors first, then a lower task loss
        score, best = (errors, objective), self._best
        tol = 1e-9 * (1.0 + abs(best[1]))
        improved = score[0] < best[0] or (score[0] == best[0] and score[1] < best[1] - tol)
        worse = score[0] > best[0] or (score[0] == best[0] and score[1] > best[1] + tol)
        reverted = False
        if improved:
            self._best = score
            self._best_params = [p.detach().clone() for lin in self.linears for p in (lin.weight, lin.bias)]
        elif worse and self._best_params is not None:
            for p, saved in zip(
                (p for lin in self.linears for p in (lin.weight, lin.bias)), self._best_params
            ):
                p.copy_(saved)
            errors, objective, reverted = best[0], best[1], True
        solved = self.labels is not None and errors == 0
        self._stuck = not improved and not solved
        return {
            "objective": objective,
            "flips": float(flips),
            "missed_targets": missed / max(total, 1),
            "perturbed": float(kick),
            "reverted": float(reverted),
        }

    def state_dict(self) -> dict:
        return {"best": self._best, "stuck": self._stuck, "best_params": self._best_params}

    def load_state_dict(self, d: dict) -> None:
        self._best = (int(d["best"][0]), float(d["best"][1]))
        self._stuck = bool(d["stuck"])
        self._best_params = d["best_params"]
