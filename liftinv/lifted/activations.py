"""Proximal activations: sigma = prox_psi for a proper convex lsc psi.

An elementwise activation is admissible for lifted Bregman training iff it is a proximal map, i.e.
non-decreasing and 1-Lipschitz. With ``Phi = 1/2 ||.||^2 + psi`` one has ``grad Phi^* = sigma``, and the
lifted Bregman penalty of a layer is ``B(x, z) = Phi(x) + Phi^*(z) - <x, z>`` (Wang & Benning, *Lifted
Bregman Training of Neural Networks*, JMLR 24(232), 2023).

Every activation here offers

* ``forward(z)``          sigma(z)
* ``psi(u)``              psi(u), summed per sample -> shape ``[B]`` (``+inf`` outside its domain)
* ``phi(u)``              Phi(u) = 1/2||u||^2 + psi(u), per sample
* ``phi_conj(z)``         Phi^*(z), per sample, numerically stable (softplus, logcosh, logsumexp)
* ``prox(v, mu)``         prox_{mu Phi}(v) = prox_{(mu/(1+mu)) psi}(v / (1 + mu))  (the state update)
* ``bregman(x, z)``       B(x, z) per sample

``mu`` may be a float or a tensor broadcastable to ``v``. Per-sample sums reduce every dimension but the
first (the batch); :class:`Softmax` acts on ``dim=1`` (classes / channels).

Non-admissible maps (GELU, SiLU, sign, hard thresholds, leaky slope > 1) raise
:class:`NotProximalError`; hard thresholds are trained by FTPROP instead (:mod:`liftinv.training.ftprop`, units in :mod:`liftinv.models.hard_threshold`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "NotProximalError",
    "ProximalActivation",
    "Identity",
    "ReLU",
    "LeakyReLU",
    "SoftThreshold",
    "Clip",
    "Tanh",
    "Sigmoid",
    "Softmax",
    "ACTIVATIONS",
    "get_activation",
    "from_module",
]


class NotProximalError(TypeError):
    """An activation that is not a proximal map (lifted Bregman training does not apply)."""


def _per_sample(t: Tensor) -> Tensor:
    """Sum over every dimension but the batch dimension."""
    return t.reshape(t.shape[0], -1).sum(dim=1) if t.dim() > 1 else t


def _inf_where(mask: Tensor, value: Tensor) -> Tensor:
    return torch.where(mask, torch.full_like(value, math.inf), value)


def _solve_monotone(f, lo: Tensor, hi: Tensor, df, iters: int = 100, tol: float | None = None) -> Tensor:
    """Root of an increasing elementwise function ``f`` bracketed in ``[lo, hi]``: safeguarded Newton.

    Each step takes the Newton point when it stays strictly inside the current bracket and the midpoint
    otherwise, then shrinks the bracket by the sign of ``f``; it stops when every residual is below ``tol``
    (default: a few ulps of the dtype, relative). Vectorised over all entries; used for the proxes of
    tanh, sigmoid and softmax, which have no closed form.
    """
    lo, hi = torch.broadcast_tensors(lo, hi)
    lo, hi = lo.clone(), hi.clone()
    tol = tol if tol is not None else 64 * torch.finfo(lo.dtype).eps
    s = 0.5 * (lo + hi)
    dx_old = hi - lo
    dx = dx_old.clone()
    for _ in range(iters):
        fs, dfs = f(s), df(s)
        pos = fs > 0
        hi = torch.where(pos, s, hi)
        lo = torch.where(pos, lo, s)
        if bool((fs.abs() <= tol * (1 + s.abs())).all()):
            break
        # rtsafe (Numerical Recipes): bisect when Newton would leave the bracket or is not halving the step,
        # so the bracket shrinks geometrically and Newton's quadratic convergence takes over near the root.
        outside = ((s - hi) * dfs - fs) * ((s - lo) * dfs - fs) >= 0
        slow = (2 * fs).abs() > (dx_old * dfs).abs()
        bisect = outside | slow | ~torch.isfinite(fs / dfs)
        dx_old = dx
        dx = torch.where(bisect, 0.5 * (hi - lo), fs / dfs)
        s = torch.where(bisect, lo + 0.5 * (hi - lo), s - dx)
    return s


def _newton_from_inflection(f, df, s0: Tensor, iters: int = 60) -> Tensor:
    """Root of f(s) = sigma(s) + mu s - v for a sigmoid-shaped sigma (tanh, logistic), by plain Newton.

    sigma is convex left of its inflection point s0 and concave right of it, and the root lies on the side
    given by the sign of f(s0). Started at s0, Newton's iterates then move monotonically towards the root
    without overshooting (the tangent of a concave increasing function lies above it), so no safeguard
    is needed; it stops once every residual is at rounding level.
    """
    s = s0.clone()
    tol = 16 * torch.finfo(s.dtype).eps
    for _ in range(iters):
        fs = f(s)
        if bool((fs.abs() <= tol * (1 + s.abs())).all()):
            break
        s = s - fs / df(s)
    return s


class ProximalActivation(nn.Module):
    """Base class of proximal activations sigma = prox_psi (Wang & Benning 2023, Table 1).

    Subclasses implement ``forward``, ``psi_elem`` (elementwise psi, ``+inf`` outside the domain),
    ``phi_conj_elem`` (elementwise Phi^*) and ``prox_psi(w, gamma)`` (prox of gamma*psi).
    """

    #: registry name
    name: str = "proximal"
    #: whether the map acts elementwise (softmax does not)
    elementwise: bool = True

    def psi_elem(self, u: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def phi_conj_elem(self, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def prox_psi(self, w: Tensor, gamma) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # --- per-sample quantities -------------------------------------------------------------------------
    def psi(self, u: Tensor) -> Tensor:
        """psi(u) summed per sample (shape ``[B]``)."""
        return _per_sample(self.psi_elem(u))

    def phi(self, u: Tensor) -> Tensor:
        """Phi(u) = 1/2 ||u||^2 + psi(u), per sample."""
        return _per_sample(0.5 * u * u + self.psi_elem(u))

    def phi_conj(self, z: Tensor) -> Tensor:
        """Phi^*(z), the convex conjugate of Phi, per sample; its gradient is sigma(z)."""
        return _per_sample(self.phi_conj_elem(z))

    def bregman_elem(self, x: Tensor, z: Tensor) -> Tensor:
        """Elementwise Bregman penalty Phi(x) + Phi^*(z) - x z (elementwise activations only)."""
        return 0.5 * x * x + self.psi_elem(x) + self.phi_conj_elem(z) - x * z

    def bregman(self, x: Tensor, z: Tensor) -> Tensor:
        """B(x, z) = Phi(x) + Phi^*(z) - <x, z> >= 1/2 ||x - sigma(z)||^2, per sample."""
        return _per_sample(self.bregman_elem(x, z))

    def prox(self, v: Tensor, mu) -> Tensor:
        """prox_{mu Phi}(v) = argmin_u mu Phi(u) + 1/2 ||u - v||^2 = prox_{(mu/(1+mu)) psi}(v / (1+mu))."""
        return self.prox_psi(v / (1 + mu), mu / (1 + mu))

    def in_domain(self, u: Tensor) -> Tensor:
        """Boolean mask of entries inside dom psi."""
        return torch.isfinite(self.psi_elem(u))

    def extra_repr(self) -> str:
        return ""


class Identity(ProximalActivation):
    """sigma(z) = z; psi = 0; Phi^*(z) = z^2/2. The Bregman penalty is the squared error 1/2 (x - z)^2."""

    name = "identity"

    def forward(self, z):
        return z

    def psi_elem(self, u):
        return torch.zeros_like(u)

    def phi_conj_elem(self, z):
        return 0.5 * z * z

    def prox_psi(self, w, gamma):
        return w


class ReLU(ProximalActivation):
    """sigma(z) = max(z, 0); psi = indicator of u >= 0; Phi^*(z) = 1/2 max(z, 0)^2.

    With this activation the Bregman penalty equals the Fenchel lifted penalty of Gu, Askari & El Ghaoui
    (AISTATS 2020): 1/2 x^2 + 1/2 max(z,0)^2 - x z for x >= 0.
    """

    name = "relu"

    def forward(self, z):
        return torch.relu(z)

    def psi_elem(self, u):
        return _inf_where(u < 0, torch.zeros_like(u))

    def phi_conj_elem(self, z):
        return 0.5 * torch.relu(z) ** 2

    def prox_psi(self, w, gamma):
        return torch.relu(w)


class LeakyReLU(ProximalActivation):
    """sigma(z) = max(z, a z), 0 < a <= 1; psi(u) = (1/a - 1) min(u,0)^2 / 2.

    Phi^*(z) = 1/2 max(z,0)^2 + a/2 min(z,0)^2.
    """

    name = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        a = float(negative_slope)
        if not 0 < a <= 1:
            raise NotProximalError(
                f"LeakyReLU with negative_slope={a} is not a proximal map: the slope must be in (0, 1] "
                "(a proximal activation is non-decreasing and 1-Lipschitz)"
            )
        self.negative_slope = a

    def forward(self, z):
        return F.leaky_relu(z, self.negative_slope)

    def psi_elem(self, u):
        return 0.5 * (1 / self.negative_slope - 1) * torch.clamp(u, max=0) ** 2

    def phi_conj_elem(self, z):
        return 0.5 * torch.relu(z) ** 2 + 0.5 * self.negative_slope * torch.clamp(z, max=0) ** 2

    def prox_psi(self, w, gamma):
        c = 1 / self.negative_slope - 1
        return torch.where(w >= 0, w, w / (1 + gamma * c))

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class SoftThreshold(ProximalActivation):
    """sigma(z) = S_theta(z) = sign(z) max(|z| - theta, 0); psi(u) = theta |u|; Phi^*(z) = 1/2 S_theta(z)^2.

    ``theta`` may be a float or a tensor broadcastable to the pre-activation (per-channel thresholds);
    pass ``learnable=True`` to make it a parameter (unrolled ISTA / LISTA networks).
    """

    name = "soft_threshold"

    def __init__(self, theta=0.1, learnable: bool = False):
        super().__init__()
        theta = torch.as_tensor(theta, dtype=torch.get_default_dtype())
        if torch.any(theta < 0):
            raise ValueError(f"SoftThreshold: theta must be >= 0, got {theta}")
        if learnable:
            self.theta = nn.Parameter(theta.clone())
        else:
            self.register_buffer("theta", theta.clone())

    def _t(self, like):
        return self.theta.to(like.dtype).clamp(min=0)

    def forward(self, z):
        t = self._t(z)
        return torch.sign(z) * torch.relu(z.abs() - t)

    def psi_elem(self, u):
        return self._t(u) * u.abs()

    def phi_conj_elem(self, z):
        return 0.5 * torch.relu(z.abs() - self._t(z)) ** 2

    def prox_psi(self, w, gamma):
        t = self._t(w) * gamma
        return torch.sign(w) * torch.relu(w.abs() - t)

    def extra_repr(self):
        return f"theta={self.theta.detach().cpu().numpy().round(4).tolist()}"


class Clip(ProximalActivation):
    """Clip / hard-tanh to [lo, hi] (default [-c, c]); psi = indicator of [lo, hi]; Phi^* is Huber-like.

    Phi^*(z) = z^2/2 on [lo, hi], hi z - hi^2/2 above, lo z - lo^2/2 below (the Huber function for
    [-c, c]). Clip to [-nu, nu] is the prox of the conjugate of nu||.||_1, the activation of the dual
    forward-backward PNN denoisers (Wang, Benning & Repetti, MLSP 2024); clip to [0, 1] is the clipped ReLU.
    """

    name = "clip"

    def __init__(self, c: float = 1.0, min_val: float | None = None, max_val: float | None = None):
        super().__init__()
        lo = float(-c if min_val is None else min_val)
        hi = float(c if max_val is None else max_val)
        if not lo < hi:
            raise ValueError(f"Clip: need min_val < max_val, got [{lo}, {hi}] (c={c})")
        self.lo, self.hi = lo, hi

    @property
    def c(self) -> float:
        return self.hi

    def forward(self, z):
        return z.clamp(self.lo, self.hi)

    def psi_elem(self, u):
        return _inf_where((u < self.lo) | (u > self.hi), torch.zeros_like(u))

    def phi_conj_elem(self, z):
        return torch.where(
            z > self.hi,
            self.hi * z - 0.5 * self.hi**2,
            torch.where(z < self.lo, self.lo * z - 0.5 * self.lo**2, 0.5 * z * z),
        )

    def prox_psi(self, w, gamma):
        return w.clamp(self.lo, self.hi)

    def extra_repr(self):
        return f"min_val={self.lo}, max_val={self.hi}"


def _logcosh(z: Tensor) -> Tensor:
    a = z.abs()
    return a + torch.log1p(torch.exp(-2 * a)) - math.log(2.0)


class Tanh(ProximalActivation):
    """sigma = tanh; psi(u) = u atanh u + 1/2 log(1 - u^2) - u^2/2 on |u| < 1; Phi^*(z) = log cosh z.

    Phi(u) = u atanh(u) + 1/2 log(1-u^2) and Phi'(u) = atanh(u), so prox_{mu Phi}(v) solves
    u + mu atanh(u) = v; with u = tanh(s) this is tanh(s) + mu s = v, solved by Newton from the inflection point.
    """

    name = "tanh"

    def forward(self, z):
        return torch.tanh(z)

    def psi_elem(self, u):
        # Phi(u) = u atanh u + 1/2 log(1 - u^2) = 1/2 [(1+u) log(1+u) + (1-u) log(1-u)], written with xlogy:
        # exact up to |u| = 1 (where Phi = log 2), no clamping inside the domain.
        inside = u.abs() <= 1
        uc = u.clamp(-1, 1)
        phi = 0.5 * (torch.special.xlogy(1 + uc, 1 + uc) + torch.special.xlogy(1 - uc, 1 - uc))
        return _inf_where(~inside, phi - 0.5 * uc * uc)

    def phi_conj_elem(self, z):
        return _logcosh(z)

    def prox(self, v, mu):
        mu = torch.as_tensor(mu, dtype=v.dtype, device=v.device)
        s = _newton_from_inflection(
            lambda s: torch.tanh(s) + mu * s - v, lambda s: 1 - torch.tanh(s) ** 2 + mu, torch.zeros_like(v)
        )
        return torch.tanh(s)

    def prox_psi(self, w, gamma):
        # prox_{gamma psi}(w) = prox_{mu Phi}(w (1+mu)) with gamma = mu/(1+mu) (gamma < 1).
        g = torch.as_tensor(gamma, dtype=w.dtype, device=w.device)
        mu = g / (1 - g)
        return self.prox(w * (1 + mu), mu)


class Sigmoid(ProximalActivation):
    """sigma = sigmoid; psi(u) = u log u + (1-u) log(1-u) - u^2/2 on [0,1]; Phi^*(z) = softplus(z).

    Phi'(u) = logit(u), so prox_{mu Phi}(v) solves u + mu logit(u) = v; with u = sigmoid(s):
    sigmoid(s) + mu s = v.
    """

    name = "sigmoid"

    def forward(self, z):
        return torch.sigmoid(z)

    def psi_elem(self, u):
        inside = (u >= 0) & (u <= 1)
        uc = u.clamp(0, 1)
        val = torch.special.xlogy(uc, uc) + torch.special.xlogy(1 - uc, 1 - uc) - 0.5 * uc * uc
        return _inf_where(~inside, val)

    def phi_conj_elem(self, z):
        return F.softplus(z)

    def prox(self, v, mu):
        mu = torch.as_tensor(mu, dtype=v.dtype, device=v.device)
        s = _newton_from_inflection(
            lambda s: torch.sigmoid(s) + mu * s - v,
            lambda s: torch.sigmoid(s) * (1 - torch.sigmoid(s)) + mu,
            torch.zeros_like(v),
        )
        return torch.sigmoid(s)

    def prox_psi(self, w, gamma):
        g = torch.as_tensor(gamma, dtype=w.dtype, device=w.device)
        mu = g / (1 - g)
        return self.prox(w * (1 + mu), mu)


class Softmax(ProximalActivation):
    """sigma = softmax over ``dim=1``; psi(u) = sum u log u - 1/2||u||^2 on the simplex; Phi^* = logsumexp.

    Meant for the last layer: with a one-hot target y the Bregman penalty B(y, z) is the cross-entropy
    -log softmax(z)_y (in general it is the KL divergence KL(y || softmax(z))).
    """

    name = "softmax"
    elementwise = False

    def forward(self, z):
        return torch.softmax(z, dim=1)

    def psi(self, u):
        on_simplex = (u >= -1e-7).all(dim=1) & ((u.sum(dim=1) - 1).abs() < 1e-4)
        uc = u.clamp(min=0)
        val = _per_sample(torch.special.xlogy(uc, uc) - 0.5 * uc * uc)
        return torch.where(_per_sample(on_simplex.float()) == on_simplex[0].numel(), val, torch.inf)

    def phi(self, u):
        return self.psi(u) + _per_sample(0.5 * u * u)

    def phi_conj(self, z):
        return _per_sample(torch.logsumexp(z, dim=1))

    def bregman(self, x, z):
        return self.phi(x) + self.phi_conj(z) - _per_sample(x * z)

    def bregman_elem(self, x, z):
        raise TypeError("Softmax is not elementwise; use bregman(x, z) (per sample)")

    def psi_elem(self, u):
        raise TypeError("Softmax is not elementwise; use psi(u) (per sample)")

    def phi_conj_elem(self, z):
        raise TypeError("Softmax is not elementwise; use phi_conj(z) (per sample)")

    def in_domain(self, u):
        return ((u >= -1e-7) & ((u.sum(dim=1, keepdim=True) - 1).abs() < 1e-4)).expand_as(u)

    def prox(self, v, mu):
        """prox_{mu Phi}(v) on the simplex: u_i = w(v_i - c) with w(a) solving u + mu log u = a - mu ... .

        Optimality: u + mu(log u + 1) + nu = v with nu chosen so that sum u = 1. Each u_i = exp(s_i) with
        exp(s) + mu s = v_i - mu - nu (monotone in s); nu is found by bisection.
        """
        mu = torch.as_tensor(mu, dtype=v.dtype, device=v.device)
        while mu.dim() and mu.dim() < v.dim():
            mu = mu.unsqueeze(-1)

        def u_of(a):
            # exp(s) + mu s = a is increasing in s. f(a/mu) = exp(a/mu) > 0, and for s <= min(0, (a-1)/mu)
            # f(s) <= 1 + mu s - a <= 0: a valid bracket.
            lo = torch.clamp((a - 1) / mu, max=0)
            hi = torch.maximum(a / mu, lo)
            s = _solve_monotone(lambda s: torch.exp(s) + mu * s - a, lo, hi, df=lambda s: torch.exp(s) + mu)
            return torch.exp(s)

        # Shift c = mu + nu: total(c) = sum_i u(v_i - c) decreases in c. u(a) >= 1 iff a >= 1, and
        # u(a) <= 1/n iff a <= 1/n - mu log n, which brackets c.
        n = v.shape[1]
        lo = v.amin(dim=1, keepdim=True) - 1
        hi = v.amax(dim=1, keepdim=True) - 1.0 / n + mu * math.log(n)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            big = u_of(v - mid).sum(dim=1, keepdim=True) > 1
            lo = torch.where(big, mid, lo)
            hi = torch.where(big, hi, mid)
        u = u_of(v - 0.5 * (lo + hi))
        return u / u.sum(dim=1, keepdim=True)

    def prox_psi(self, w, gamma):
        g = torch.as_tensor(gamma, dtype=w.dtype, device=w.device)
        mu = g / (1 - g)
        return self.prox(w * (1 + mu), mu)


#: every admissible activation by name
ACTIVATIONS: dict[str, type[ProximalActivation]] = {
    cls.name: cls for cls in (Identity, ReLU, LeakyReLU, SoftThreshold, Clip, Tanh, Sigmoid, Softmax)
}

_NOT_PROXIMAL = {
    "gelu": "GELU is not monotone (it dips below 0 for negative inputs), so it is not a proximal map",
    "silu": "SiLU/Swish is not monotone, so it is not a proximal map",
    "swish": "SiLU/Swish is not monotone, so it is not a proximal map",
    "mish": "Mish is not monotone, so it is not a proximal map",
    "elu": "ELU is 1-Lipschitz only for alpha <= 1 and is not supported as a proximal activation here",
    "softplus": "Softplus is not a proximal map of a convex function with the identity metric (it is never 0)",
    "sign": "sign is a hard threshold (the prox of a non-convex l0 penalty)",
    "hardthreshold": "a hard threshold is the prox of a non-convex l0 penalty",
    "staircase": "a staircase/quantised activation is a hard threshold",
    "hardshrink": "hard shrinkage is the prox of a non-convex l0 penalty",
}

_FTPROP_HINT = (
    " Hard-threshold networks are trained with FTPROP instead: units liftinv.models.Sign / Staircase, "
    "fit(..., method='ftprop-softhinge')."
)


def _reject(name: str, detail: str) -> None:
    hard = any(k in name.lower() for k in ("sign", "threshold", "staircase", "hardshrink", "qrelu", "step"))
    raise NotProximalError(
        f"activation {name!r} is not admissible for lifted training: {detail}. A lifted activation must be a "
        "proximal map (non-decreasing and 1-Lipschitz), e.g. "
        + ", ".join(ACTIVATIONS)
        + "."
        + (_FTPROP_HINT if hard else "")
    )


def get_activation(name: str | ProximalActivation | nn.Module, **kwargs) -> ProximalActivation:
    """Return a proximal activation from its name, a ``ProximalActivation`` or a ``torch.nn`` module.

    Parameters
    ----------
    name : str or nn.Module
        One of ``ACTIVATIONS`` (``"identity"``, ``"relu"``, ``"leaky_relu"``, ``"soft_threshold"``,
        ``"clip"``, ``"tanh"``, ``"sigmoid"``, ``"softmax"``), or a module accepted by :func:`from_module`.
    **kwargs
        Passed to the activation's constructor (e.g. ``negative_slope``, ``theta``, ``c``).

    Raises
    ------
    NotProximalError
        For maps that are not proximal (GELU, SiLU, sign, ...), with the reason.

    Examples
    --------
    >>> import torch
    >>> act = get_activation("relu")
    >>> float(act.bregman(act(torch.tensor([[0.5, -1.0]])), torch.tensor([[0.5, -1.0]]))[0])
    0.0
    """
    if isinstance(name, ProximalActivation):
        return name
    if isinstance(name, nn.Module):
        return from_module(name)
    if not isinstance(name, str):
        raise TypeError(f"activation must be a name or an nn.Module, got {type(name).__name__}")
    key = name.lower().replace("-", "_")
    aliases = {
        "hardtanh": "clip",
        "softshrink": "soft_threshold",
        "leakyrelu": "leaky_relu",
        "linear": "identity",
        "none": "identity",
        "id": "identity",
        "soft_thresholding": "soft_threshold",
    }
    key = aliases.get(key, key)
    if key in ACTIVATIONS:
        return ACTIVATIONS[key](**kwargs)
    if key.replace("_", "") in _NOT_PROXIMAL or key in _NOT_PROXIMAL:
        _reject(name, _NOT_PROXIMAL.get(key, _NOT_PROXIMAL.get(key.replace("_", ""), "")))
    _reject(name, "unknown activation")


def from_module(module: nn.Module) -> ProximalActivation:
    """Map a ``torch.nn`` activation module to its proximal activation.

    Supported: ``nn.Identity``, ``nn.ReLU``, ``nn.LeakyReLU`` (slope in (0, 1]), ``nn.Tanh``,
    ``nn.Sigmoid``, ``nn.Hardtanh`` (any interval), ``nn.ReLU6``, ``nn.Softshrink``, ``nn.Softmax(dim=1)`` / ``dim=-1`` on
    2-D inputs, and any :class:`ProximalActivation`. Everything else raises :class:`NotProximalError`.
    """
    if isinstance(module, ProximalActivation):
        return module
    if isinstance(module, nn.Identity):
        return Identity()
    if isinstance(module, nn.ReLU):
        return ReLU()
    if isinstance(module, nn.LeakyReLU):
        return LeakyReLU(module.negative_slope)
    if isinstance(module, nn.Tanh):
        return Tanh()
    if isinstance(module, nn.Sigmoid):
        return Sigmoid()
    if isinstance(module, nn.Hardtanh):  # includes nn.ReLU6 (clip to [0, 6])
        return Clip(min_val=module.min_val, max_val=module.max_val)
    if isinstance(module, nn.Softshrink):
        return SoftThreshold(module.lambd)
    if isinstance(module, nn.Softmax):
        if module.dim not in (1, -1, None):
            raise NotProximalError(f"nn.Softmax(dim={module.dim}) is supported only over dim=1 (classes)")
        return Softmax()
    cls = type(module).__name__
    detail = _NOT_PROXIMAL.get(cls.lower(), f"{cls} is not a known proximal map")
    _reject(cls, detail)
