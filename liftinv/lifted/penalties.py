"""Layer penalties P(x, z) of lifted training (x: a layer's state, z: its pre-activation W x_prev + b).

Unified lifted objective (Wang, Valavanis, Mahmood, Mang, Benning & Repetti, arXiv 2510.09796, 2025)::

    min_{Theta, X}  sum_i [ l(y_i, x_L^i) + sum_l lambda_l P_l(x_l^i, W_l x_{l-1}^i + b_l) ]

=================  =========================================  ==========================================
penalty            P(x, z)                                    source
=================  =========================================  ==========================================
QuadraticPenalty   1/2 ||x - sigma(z)||^2                     MAC, Carreira-Perpinan & Wang, AISTATS 2014
FenchelPenalty     1/2||x||^2 + 1/2||max(z,0)||^2 - <x,z>,    Fenchel lifted networks, Gu, Askari &
                   x >= 0 (ReLU only)                         El Ghaoui, AISTATS 2020
BregmanPenalty     Phi(x) + Phi^*(z) - <x, z>                 lifted Bregman, Wang & Benning, JMLR 2023
=================  =========================================  ==========================================

Facts (tested): B >= 1/2||x - sigma(z)||^2 >= 0, B = 0 iff x = sigma(z); grad_z B = sigma(z) - x, so the
weight gradient (sigma(z) - x) x_prev^T needs no derivative of sigma.

Every penalty works per sample: ``value(x, z)`` has shape ``[B]``; ``weight`` is the layer's lambda >= 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from liftinv.lifted.activations import ProximalActivation, ReLU, get_activation

__all__ = ["Penalty", "BregmanPenalty", "QuadraticPenalty", "FenchelPenalty", "PENALTIES", "make_penalty"]


def _check_weight(weight) -> float:
    w = float(weight)
    if not w >= 0 or w != w:
        raise ValueError(f"penalty weight lambda must be >= 0, got {weight}")
    return w


class Penalty:
    """Base class: a layer penalty attached to a proximal activation, with weight ``lambda`` >= 0.

    Subclasses define ``value(x, z)`` (per sample) and ``grad_z(x, z)``. The state update of a layer uses
    ``prox_state(v, mu)`` when the penalty is prox-friendly in x (Bregman, Fenchel) and a gradient step
    otherwise (``convex_in_state = False``, MAC).
    """

    name = "penalty"
    #: True when P(x, z) = Phi(x) - <x, z> + (terms in z only), so the x-update is a prox of mu*Phi
    convex_in_state = True

    def __init__(self, activation: ProximalActivation | str = "relu", weight: float = 1.0):
        self.activation = get_activation(activation)
        self.weight = _check_weight(weight)

    def value(self, x: Tensor, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def grad_z(self, x: Tensor, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def prox_state(self, v: Tensor, mu) -> Tensor:
        """prox_{mu Phi}(v): the state update's proximal step."""
        return self.activation.prox(v, mu)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.activation.__class__.__name__}, weight={self.weight})"


class BregmanPenalty(Penalty):
    """Lifted Bregman penalty B(x, z) = Phi(x) + Phi^*(z) - <x, z> for any proximal activation.

    With Phi = 1/2||.||^2 + psi and sigma = prox_psi, B is convex in x, in (W, b) and in x_prev separately,
    B >= 1/2 ||x - sigma(z)||^2, and grad_z B = sigma(z) - x (Wang & Benning, JMLR 24(232), 2023, Thm. 3).

    Examples
    --------
    >>> import torch
    >>> p = BregmanPenalty("relu")
    >>> z = torch.tensor([[1.0, -2.0]])
    >>> float(p.value(torch.relu(z), z)[0])
    0.0
    """

    name = "bregman"

    def value(self, x, z):
        return self.activation.bregman(x, z)

    def grad_z(self, x, z):
        return self.activation(z) - x


class FenchelPenalty(BregmanPenalty):
    """Fenchel lifted network penalty for ReLU: 1/2||x||^2 + 1/2||max(z, 0)||^2 - <x, z>, with x >= 0.

    Gu, Askari & El Ghaoui, *Fenchel Lifted Networks*, AISTATS 2020. It coincides with the Bregman penalty
    of ReLU; the minimum over the states lower-bounds the nested loss (FLN lower bound). Any other
    activation raises ``TypeError``.
    """

    name = "fenchel"

    def __init__(self, activation: ProximalActivation | str = "relu", weight: float = 1.0):
        act = get_activation(activation)
        if not isinstance(act, ReLU):
            raise TypeError(
                f"FenchelPenalty is defined for ReLU layers only, got activation {act.name!r}; use "
                "BregmanPenalty for other proximal activations"
            )
        super().__init__(act, weight)

    def value(self, x, z):
        bad = (x < 0).reshape(x.shape[0], -1).any(1)
        v = (0.5 * x * x + 0.5 * torch.relu(z) ** 2 - x * z).reshape(x.shape[0], -1).sum(1)
        return torch.where(bad, torch.full_like(v, float("inf")), v)


class QuadraticPenalty(Penalty):
    """MAC quadratic penalty 1/2 ||x - sigma(z)||^2 (method of auxiliary coordinates).

    Carreira-Perpinan & Wang, *Distributed optimization of deeply nested systems*, AISTATS 2014. Its
    gradient in z needs sigma'(z) (computed by autograd); it is non-convex in (W, b) and in x_prev.
    """

    name = "quadratic"
    convex_in_state = False

    def value(self, x, z):
        r = x - self.activation(z)
        return 0.5 * r.reshape(r.shape[0], -1).pow(2).sum(1)

    def grad_z(self, x, z):
        with torch.enable_grad():
            zz = z.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.value(x.detach(), zz).sum(), zz)
        return g


PENALTIES: dict[str, type[Penalty]] = {
    "bregman": BregmanPenalty,
    "fenchel": FenchelPenalty,
    "quadratic": QuadraticPenalty,
    "mac": QuadraticPenalty,
}


def make_penalty(name: str | Penalty, activation, weight: float = 1.0) -> Penalty:
    """Build a penalty by name (``"bregman"``, ``"fenchel"``, ``"quadratic"``/``"mac"``)."""
    if isinstance(name, Penalty):
        return name
    if name not in PENALTIES:
        raise ValueError(f"penalty must be one of {sorted(PENALTIES)}, got {name!r}")
    return PENALTIES[name](activation, weight)
