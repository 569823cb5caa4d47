"""Hard-threshold networks trained as a mixed convex-combinatorial problem (FTPROP) and STE baselines.

Friesen & Domingos, *Deep Learning as a Mixed Convex-Combinatorial Optimization Problem*, ICLR 2018
(FTPROP below). A hard-threshold unit ``h = sign(z)`` (or a staircase, "qReLU") has zero derivative almost
everywhere, so back-propagation gives no signal. FTPROP instead chooses a *discrete target* for every
hidden unit and trains each layer to hit the targets of its units, which, once the targets are fixed, is
a convex (perceptron-like) problem per unit. Two variants are implemented:

**ftprop-mb** (mini-batch, one backward sweep). For a hidden unit with downstream gradient
``g = dL/dh`` the target is ``t = sign(-g)`` (``t = 0`` when ``g = 0``: the unit is left alone) and the
unit's layer loss is ``|g| * l(t * z)`` on its pre-activation ``z``. Its gradient with respect to ``z`` is::

    dz = d/dz [|g| l(t z)] = |g| t l'(t z) = g * phi(z, t),   phi(z, t) = -l'(t z)   (as -|g| t = g)

with ``phi`` fixed by the per-unit loss ``l`` (the *surrogate*):

=================== ====================================== ===================================
surrogate           l(u), u = t z                          phi(z, t) for a sign unit
=================== ====================================== ===================================
``soft_hinge``      tanh(-u) + 1   (the paper's choice)    1 - tanh(z)^2
``hinge``           max(0, 1 - u)                          1{t z < 1}
``truncated_hinge`` min(2, max(0, 1 - u))                  1{|z| <= 1}   (= saturated STE)
``linear``          -u                                     1             (= STE)
=================== ====================================== ===================================

The targets, weights and per-unit losses are all computed inside the ``backward`` of one
``torch.autograd.Function`` (:class:`Sign`, :class:`Staircase`), so a single ``loss.backward()`` trains
every layer, exactly like back-propagation, and the methods ``ftprop-softhinge``, ``ftprop-hinge``,
``sste`` and ``ste`` are Adam on these gradients (:class:`FTPropTrainer`).

**ftprop-exact** (small networks). The non-gradient formulation: a flip-based local search over the
hidden targets (it greedily lowers the loss of the layer above, refit to each candidate, plus a
feasibility term that measures how well the units can produce the targets) followed by convex per-unit
fits (each unit an L2-SVM / hinge problem), layer by layer (:class:`ExactFTPropTrainer`).

Staircases
----------
``Staircase(bits)`` has ``K = 2**bits`` levels ``0, 1/(K-1), ..., 1`` and ``K - 1`` thresholds::

    tau_k = (k - 1) / (K - 2),  k = 1..K-1   (bits >= 2;  bits = 1: the single threshold 0)
    h(z)  = (1/(K-1)) * #{k : z > tau_k} = clamp(ceil((K - 2) z), 0, K - 1) / (K - 1)

so 2 bits is exactly ``clamp(ceil(2z), 0, 3) / 3`` (thresholds 0, 1/2, 1; levels 0, 1/3, 2/3, 1) and the
steps span ``[0, 1]`` for every ``bits`` (a quantised clipped ReLU). A staircase is a sum of ``K - 1`` steps
``(delta/2) (sign(u_k) + 1)``, ``delta = 1/(K-1)``, and FTPROP is applied *per step* with the
threshold-centred, rescaled pre-activation ``u_k = (z - tau_k) / w``: every step gets the target
``t = sign(-g)`` and weight ``|g| delta / 2``. Summing the per-step derivatives gives::

    dz = g * (1/(K-1)) * sum_k phi(u_k, t),     u_k = 2 (z - tau_k)     (w = 1/2)

The width ``w = 1/2`` (choice) is the one for which the linear loss gives the plain STE ``dz = g``, as for
sign units (there ``delta = 2``, ``w = 1``); then the soft-hinge and truncated-hinge derivatives
integrate over ``z`` to the staircase's total rise, 1 (for sign units: to 2). For 2 bits: soft hinge
``g * mean_k (1 - tanh(2(z - tau_k))^2)``, saturated STE ``g * mean_k 1{|z - tau_k| <= 1/2}``.
"""

from __future__ import annotations

import enum
import functools
import math

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = [
    "SURROGATES",
    "Surrogate",
    "sign",
    "staircase",
    "Sign",
    "Staircase",
    "staircase_thresholds",
    "hard_threshold_modules",
    "set_surrogate",
]


SURROGATES = ("soft_hinge", "hinge", "truncated_hinge", "linear")


class Surrogate(enum.IntEnum):
    """The per-unit loss of the FTPROP backward pass (see the module docstring's table).

    An ``IntEnum`` because it travels through ``torch.autograd.Function.apply`` as a plain argument.
    """

    SOFT_HINGE = 0
    HINGE = 1
    TRUNCATED_HINGE = 2  # saturated STE
    LINEAR = 3  # STE

    @property
    def label(self) -> str:
        """The surrogate's name as used by :func:`set_surrogate` (``"soft_hinge"``, ...)."""
        return SURROGATES[self.value]


_MAX_BITS = 8


def _surrogate_code(surrogate: str) -> Surrogate:
    if surrogate not in SURROGATES:
        raise ValueError(f"surrogate must be one of {', '.join(map(repr, SURROGATES))}, got {surrogate!r}")
    return Surrogate(SURROGATES.index(surrogate))


def _check_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= _MAX_BITS:
        raise ValueError(f"bits must be an int in [1, {_MAX_BITS}] (2**bits levels), got {bits!r}")
    return bits


@functools.lru_cache(maxsize=16, typed=True)
def staircase_thresholds(bits: int) -> tuple[float, ...]:
    """Thresholds of the ``bits``-bit staircase: ``tau_k = (k - 1)/(K - 2)``, ``k = 1..K-1``, ``K = 2**bits``.

    For ``bits = 1`` (a 0/1 step) the single threshold is 0.

    Parameters
    ----------
    bits : int
        Number of bits, 1 to 8.

    Returns
    -------
    tuple of float
        The ``2**bits - 1`` thresholds in increasing order, from 0 to 1.

    Examples
    --------
    >>> staircase_thresholds(2)
    (0.0, 0.5, 1.0)
    >>> staircase_thresholds(1)
    (0.0,)
    """
    K = 2 ** _check_bits(bits)
    if K == 2:
        return (0.0,)
    return tuple((k - 1) / (K - 2) for k in range(1, K))


# ---------------------------------------------------------------------------------------------------------
# the autograd Function: hard threshold forward, FTPROP-mb backward
# ---------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _closed_window(lo: float, hi: float, dtype: torch.dtype) -> tuple[float, float]:
    """Open bounds ``(lo-, hi+)`` in ``dtype`` such that ``lo- < z < hi+``  <=>  ``lo <= z <= hi``."""
    inf = torch.tensor(math.inf, dtype=dtype)
    lo_t, hi_t = torch.tensor(lo, dtype=dtype), torch.tensor(hi, dtype=dtype)
    return float(torch.nextafter(lo_t, -inf)), float(torch.nextafter(hi_t, inf))


@functools.lru_cache(maxsize=64)
def _shifts(bits: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``4 tau_k`` for the staircase thresholds, as a tensor (cached per dtype and device)."""
    return torch.tensor([4.0 * t for t in staircase_thresholds(bits)], dtype=dtype, device=device)


_STACK_LIMIT = 32768  # elements x thresholds below which the staircase soft hinge is computed stacked
_sigmoid_backward = torch.ops.aten.sigmoid_backward  # g * s * (1 - s), fused
_hardtanh_backward = torch.ops.aten.hardtanh_backward  # g * 1{lo < z < hi}, fused


class _HardThresholdFn(torch.autograd.Function):
    """Forward: sign (``bits = 0``) or a ``bits``-bit staircase. Backward: the FTPROP-mb gradient.

    Implementation notes (the per-threshold loop runs over the K - 1 thresholds, never over units):
    ``1 - tanh(u)^2 = 4 s (1 - s)`` with ``s = sigmoid(2u)`` (fused ``sigmoid_backward``; much cheaper
    than ``tanh`` on CPU); ``1{|u| <= 1}`` is a fused ``hardtanh_backward`` on the closed window.
    """

    @staticmethod
    def forward(ctx, z: Tensor, bits: int, code: int) -> Tensor:
        ctx.bits, ctx.code = bits, code
        if code != Surrogate.LINEAR:  # the linear loss (STE) needs nothing from the forward pass
            ctx.save_for_backward(z)
        if bits == 0:  # sign with sign(0) = -1: sign(sign(z) - 1/2)
            return torch.sign(z).sub_(0.5).sign_()
        K = 2**bits
        if K == 2:
            return torch.sign(z).clamp_(min=0)
        return torch.ceil(z * (K - 2)).clamp_(0, K - 1).div_(K - 1)

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor):
        code, bits = ctx.code, ctx.bits
        if code == Surrogate.LINEAR:  # linear loss -t z weighted by |g|: dz = g (STE)
            return g, None, None
        (z,) = ctx.saved_tensors
        if bits == 0:  # sign unit: one step at 0 (u = z)
            if code == Surrogate.SOFT_HINGE:  # g (1 - tanh(z)^2) = 4 g s (1 - s), s = sigmoid(2z)
                return _sigmoid_backward(g, torch.mul(z, 2.0).sigmoid_()).mul_(4.0), None, None
            if code == Surrogate.HINGE:  # g 1{t z < 1}, t = -sign(g)  <=>  sign(g) z > -1
                return torch.where(torch.sign(g).mul_(z) > -1.0, g, 0.0), None, None
            lo, hi = _closed_window(-1.0, 1.0, z.dtype)  # g 1{|z| <= 1}
            return _hardtanh_backward(g, z, lo, hi), None, None
        taus = staircase_thresholds(bits)
        acc = None
        if (
            code == Surrogate.SOFT_HINGE
        ):  # sum_k g (1 - tanh(u_k)^2), u_k = 2 (z - tau_k); sigmoid of 2 u_k = 4 z - 4 tau_k
            if z.numel() * len(taus) <= _STACK_LIMIT:  # small tensors: all thresholds in one pass
                c = _shifts(bits, z.dtype, z.device).view(-1, *([1] * z.dim()))
                s = torch.sub(z.mul(4.0).unsqueeze(0), c).sigmoid_()
                return torch.addcmul(s, s, s, value=-1.0).sum(0).mul_(g).mul_(4.0 / len(taus)), None, None
            z4 = z * 4.0  # three buffers, all other operations in place (large CPU allocations are slow)
            s = torch.empty_like(z4)
            acc = torch.zeros_like(z4)
            for tau in taus:
                torch.sub(z4, 4.0 * tau, out=s).sigmoid_()
                acc.add_(s).addcmul_(s, s, value=-1.0)  # s (1 - s) = (1 - tanh(u_k)^2) / 4
            return acc.mul_(g).mul_(4.0 / len(taus)), None, None
        if code == Surrogate.TRUNCATED_HINGE:  # sum_k g 1{|u_k| <= 1} = g 1{|z - tau_k| <= 1/2}
            for tau in taus:
                lo, hi = _closed_window(tau - 0.5, tau + 0.5, z.dtype)
                d = _hardtanh_backward(g, z, lo, hi)
                acc = d if acc is None else acc.add_(d)
            return acc.mul_(1.0 / len(taus)), None, None
        sg = torch.sign(g)  # hinge: sum_k g 1{t u_k < 1}  <=>  sign(g) (z - tau_k) > -1/2
        for tau in taus:
            d = (torch.sub(z, tau).mul_(sg) > -0.5).to(g.dtype)
            acc = d if acc is None else acc.add_(d)
        return acc.mul_(g).mul_(1.0 / len(taus)), None, None


def sign(z: Tensor, surrogate: str = "soft_hinge") -> Tensor:
    """Hard sign ``h = sign(z)`` in {-1, +1} (``sign(0) = -1``) with the FTPROP-mb backward.

    Backward (``g`` the gradient of the loss with respect to ``h``, target ``t = sign(-g)``):
    ``soft_hinge`` -> ``g (1 - tanh(z)^2)``; ``hinge`` -> ``g 1{t z < 1}``; ``truncated_hinge`` ->
    ``g 1{|z| <= 1}`` (saturated STE); ``linear`` -> ``g`` (STE). Friesen & Domingos, ICLR 2018.

    Parameters
    ----------
    z : Tensor
        Pre-activations, any shape.
    surrogate : {"soft_hinge", "hinge", "truncated_hinge", "linear"}
        Per-unit layer loss that defines the backward pass.

    Returns
    -------
    Tensor
        ``+1`` where ``z > 0``, ``-1`` elsewhere, same shape and dtype as ``z``.

    Examples
    --------
    >>> import torch
    >>> z = torch.tensor([-0.5, 0.0, 2.0], requires_grad=True)
    >>> sign(z)
    tensor([-1., -1.,  1.], grad_fn=<_HardThresholdFnBackward>)
    >>> sign(z, "truncated_hinge").backward(torch.ones(3))
    >>> z.grad
    tensor([1., 1., 0.])
    """
    return _HardThresholdFn.apply(z, 0, _surrogate_code(surrogate))


def staircase(z: Tensor, bits: int = 2, surrogate: str = "soft_hinge") -> Tensor:
    """``bits``-bit staircase ("qReLU") ``clamp(ceil((K-2) z), 0, K-1)/(K-1)``, ``K = 2**bits``, with FTPROP-mb.

    Levels ``0, 1/(K-1), ..., 1``; thresholds ``tau_k = (k-1)/(K-2)`` (:func:`staircase_thresholds`;
    ``bits = 1`` is the 0/1 step at 0). 2 bits is ``clamp(ceil(2z), 0, 3)/3``. The backward applies the
    surrogate per step with ``u_k = 2 (z - tau_k)`` and averages over the ``K - 1`` steps::

        dz = g * (1/(K-1)) * sum_k phi(u_k, t),   t = sign(-g)

    with ``phi`` as for :func:`sign` (soft hinge ``1 - tanh(u)^2``, hinge ``1{t u < 1}``, truncated
    hinge ``1{|u| <= 1}``, linear ``1``, so ``linear`` is the STE ``dz = g``). See the module docstring for
    the derivation. Friesen & Domingos, ICLR 2018.

    Parameters
    ----------
    z : Tensor
        Pre-activations, any shape.
    bits : int
        1 to 8 (``2**bits`` levels).
    surrogate : {"soft_hinge", "hinge", "truncated_hinge", "linear"}
        Per-step layer loss that defines the backward pass.

    Returns
    -------
    Tensor
        Values in ``{0, 1/(K-1), ..., 1}``.

    Examples
    --------
    >>> import torch
    >>> staircase(torch.tensor([-1.0, 0.0, 0.2, 0.5, 0.7, 1.0, 3.0]), bits=2)
    tensor([0.0000, 0.0000, 0.3333, 0.3333, 0.6667, 0.6667, 1.0000])
    """
    return _HardThresholdFn.apply(z, _check_bits(bits), _surrogate_code(surrogate))


class _HardThreshold(nn.Module):
    """Common part of :class:`Sign` and :class:`Staircase` (a settable ``surrogate``)."""

    def __init__(self, surrogate: str = "soft_hinge"):
        super().__init__()
        self.surrogate = surrogate

    @property
    def surrogate(self) -> str:
        """Per-unit layer loss used by the backward pass (one of :data:`SURROGATES`)."""
        return SURROGATES[self._code]

    @surrogate.setter
    def surrogate(self, value: str) -> None:
        self._code = _surrogate_code(value)


class Sign(_HardThreshold):
    """Hard-threshold unit ``h = sign(z)`` in {-1, +1} (``sign(0) = -1``), trained by FTPROP-mb.

    The forward pass is the hard threshold; the backward pass is the FTPROP-mb gradient of the per-unit
    loss named by :attr:`surrogate` (target ``t = sign(-g)``, weight ``|g|``, ``g = dL/dh``)::

        soft_hinge       dz = g (1 - tanh(z)^2)
        hinge            dz = g 1{t z < 1}
        truncated_hinge  dz = g 1{|z| <= 1}     (saturated straight-through estimator)
        linear           dz = g                 (straight-through estimator)

    A unit whose downstream gradient is 0 gets the target 0 and no gradient. Works inside any module
    (MLPs, convolutional nets with batch-norm and pooling). Not a proximal map: lifted trainers reject
    it (:func:`liftinv.lifted.activations.from_module` raises ``NotProximalError``). Friesen & Domingos,
    *Deep Learning as a Mixed Convex-Combinatorial Optimization Problem*, ICLR 2018.

    Parameters
    ----------
    surrogate : {"soft_hinge", "hinge", "truncated_hinge", "linear"}
        Default ``"soft_hinge"``; the FTPROP/STE trainers set it from the method name.

    Examples
    --------
    >>> import torch
    >>> act = Sign()
    >>> z = torch.zeros(2, requires_grad=True)
    >>> act(z).sum().backward()
    >>> act(z), z.grad
    (tensor([-1., -1.], grad_fn=<_HardThresholdFnBackward>), tensor([1., 1.]))
    """

    def forward(self, z: Tensor) -> Tensor:
        return _HardThresholdFn.apply(z, 0, self._code)

    def extra_repr(self) -> str:
        return f"surrogate={self.surrogate!r}"


class Staircase(_HardThreshold):
    """``bits``-bit staircase ("qReLU"): ``2**bits`` levels in [0, 1], trained by FTPROP-mb per step.

    ``h(z) = clamp(ceil((K-2) z), 0, K-1) / (K-1)`` with ``K = 2**bits`` (thresholds
    ``tau_k = (k-1)/(K-2)``; ``bits = 1``: the 0/1 step at 0); 2 bits is ``clamp(ceil(2z), 0, 3)/3``.
    Backward: the surrogate applied per step around each threshold, ``u_k = 2 (z - tau_k)``::

        dz = g * (1/(K-1)) * sum_k phi(u_k, t),   t = sign(-g)

    (``phi`` as for :class:`Sign`; ``linear`` gives the STE ``dz = g``, ``truncated_hinge`` the
    saturated STE ``g * mean_k 1{|z - tau_k| <= 1/2}``). See :func:`staircase`. Friesen & Domingos,
    ICLR 2018.

    Parameters
    ----------
    bits : int
        1 to 8; default 2.
    surrogate : {"soft_hinge", "hinge", "truncated_hinge", "linear"}
        Default ``"soft_hinge"``.

    Attributes
    ----------
    thresholds : tuple of float
        The ``K - 1`` thresholds.
    levels : tuple of float
        The ``K`` output values.

    Examples
    --------
    >>> import torch
    >>> q = Staircase(2)
    >>> q.levels
    (0.0, 0.3333333333333333, 0.6666666666666666, 1.0)
    >>> z = torch.tensor([0.3, 0.8])
    >>> bool((q(z) == torch.clamp(torch.ceil(2 * z), 0, 3) / 3).all())
    True
    """

    def __init__(self, bits: int = 2, surrogate: str = "soft_hinge"):
        super().__init__(surrogate)
        self.bits = _check_bits(bits)

    @property
    def thresholds(self) -> tuple[float, ...]:
        return staircase_thresholds(self.bits)

    @property
    def levels(self) -> tuple[float, ...]:
        K = 2**self.bits
        return tuple(k / (K - 1) for k in range(K))

    def forward(self, z: Tensor) -> Tensor:
        return _HardThresholdFn.apply(z, self.bits, self._code)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, surrogate={self.surrogate!r}"


def hard_threshold_modules(model: nn.Module) -> list[nn.Module]:
    """All :class:`Sign` and :class:`Staircase` modules of ``model`` (in ``model.modules()`` order).

    Parameters
    ----------
    model : nn.Module

    Returns
    -------
    list of nn.Module

    Examples
    --------
    >>> from torch import nn
    >>> len(hard_threshold_modules(nn.Sequential(nn.Linear(2, 3), Sign(), nn.Linear(3, 1))))
    1
    """
    return [m for m in model.modules() if isinstance(m, _HardThreshold)]


def set_surrogate(model: nn.Module, surrogate: str) -> int:
    """Set the backward surrogate of every hard-threshold unit in ``model``; return how many were set.

    Parameters
    ----------
    model : nn.Module
    surrogate : {"soft_hinge", "hinge", "truncated_hinge", "linear"}

    Returns
    -------
    int
        Number of :class:`Sign` / :class:`Staircase` modules found.

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(2, 3), Sign(), nn.Linear(3, 1))
    >>> set_surrogate(net, "linear"), net[1].surrogate
    (1, 'linear')
    """
    code = _surrogate_code(surrogate)
    mods = hard_threshold_modules(model)
    for m in mods:
        m._code = code
    return len(mods)
