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

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from liftinv.training import (
    BackpropTrainer,
    nested_loss,
    register_method,
    targets_for_loss,
)

__all__ = [
    "SURROGATES",
    "Sign",
    "Staircase",
    "sign",
    "staircase",
    "staircase_thresholds",
    "hard_threshold_modules",
    "set_surrogate",
    "convnet4",
    "paper_convnet4",
    "mlp_bn",
    "FTPropTrainer",
    "FTPropSoftHinge",
    "FTPropHinge",
    "SaturatedSTE",
    "STE",
    "ExactFTPropTrainer",
]

#: per-unit layer losses of ftprop-mb, by name (index = code used inside the autograd Function)
SURROGATES = ("soft_hinge", "hinge", "truncated_hinge", "linear")
_MAX_BITS = 8


def _surrogate_code(surrogate: str) -> int:
    if surrogate not in SURROGATES:
        raise ValueError(f"surrogate must be one of {', '.join(map(repr, SURROGATES))}, got {surrogate!r}")
    return SURROGATES.index(surrogate)


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
        if code != 3:  # the linear loss (STE) needs nothing from the forward pass
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
        if code == 3:  # linear loss -t z weighted by |g|: dz = g (STE)
            return g, None, None
        (z,) = ctx.saved_tensors
        if bits == 0:  # sign unit: one step at 0 (u = z)
            if code == 0:  # g (1 - tanh(z)^2) = 4 g s (1 - s), s = sigmoid(2z)
                return _sigmoid_backward(g, torch.mul(z, 2.0).sigmoid_()).mul_(4.0), None, None
            if code == 1:  # g 1{t z < 1}, t = -sign(g)  <=>  sign(g) z > -1
                return torch.where(torch.sign(g).mul_(z) > -1.0, g, 0.0), None, None
            lo, hi = _closed_window(-1.0, 1.0, z.dtype)  # g 1{|z| <= 1}
            return _hardtanh_backward(g, z, lo, hi), None, None
        taus = staircase_thresholds(bits)
        acc = None
        if code == 0:  # sum_k g (1 - tanh(u_k)^2), u_k = 2 (z - tau_k); sigmoid of 2 u_k = 4 z - 4 tau_k
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
        if code == 2:  # sum_k g 1{|u_k| <= 1} = g 1{|z - tau_k| <= 1/2}
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
    it (:func:`liftinv.activations.from_module` raises ``NotProximalError``). Friesen & Domingos,
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


def convnet4(
    activation: str = "sign",
    in_channels: int = 1,
    image_size: int = 8,
    n_classes: int = 10,
    widths: tuple[int, int] = (32, 64),
    batch_norm: bool = True,
) -> nn.Sequential:
    """Four-conv-layer network in the style of FTPROP's CIFAR experiments, scaled to small images.

    ``conv3x3(w1)-BN-act, conv3x3(w1)-BN-maxpool2-act, conv3x3(w2)-BN-act, conv3x3(w2)-BN-maxpool2-act,
    linear``. Batch-norm before each activation centres the pre-activations on the thresholds (sign: 0).
    Max-pooling is applied to the pre-activations, before the activation, as in the paper's ConvNet4: for
    a non-decreasing activation this is the same function as pooling after it, but the backward pass then
    reaches the unit with the largest pre-activation instead of the first of the many tied +1 outputs of
    a hard threshold. With ``activation="relu"`` / ``"clipped_relu"`` it is the full-precision reference
    of the same shape. (Friesen & Domingos, ICLR 2018, used 4- and 8-layer convnets with hard-threshold
    units on CIFAR-10.)

    Parameters
    ----------
    activation : str
        Any name accepted by :func:`liftinv.models.activation_module` (``"sign"``, ``"qrelu2"``,
        ``"relu"``, ``"clipped_relu"``, ...).
    in_channels, image_size, n_classes : int
        Input channels, input height/width (divisible by 4) and number of classes.
    widths : (int, int)
        Channels of the first and the second pair of convolutions.
    batch_norm : bool
        Use ``BatchNorm2d`` after every convolution.

    Returns
    -------
    nn.Sequential

    Examples
    --------
    >>> import torch
    >>> net = convnet4("sign", widths=(4, 8))
    >>> net(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """
    from liftinv.models import activation_module

    if image_size % 4 or image_size < 4:
        raise ValueError(f"image_size must be a positive multiple of 4, got {image_size}")
    if len(widths) != 2 or any(int(w) <= 0 for w in widths):
        raise ValueError(f"widths must be two positive channel counts, got {widths}")
    layers: list[nn.Module] = []
    c = in_channels
    for w in widths:
        for i in range(2):
            layers.append(nn.Conv2d(c, w, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(w))
            if i == 1:  # pool the pre-activations (see the docstring)
                layers.append(nn.MaxPool2d(2))
            layers.append(activation_module(activation))
            c = w
    layers += [nn.Flatten(), nn.Linear(c * (image_size // 4) ** 2, n_classes)]
    return nn.Sequential(*layers)


def paper_convnet4(
    activation: str = "sign",
    in_channels: int = 1,
    image_size: int = 8,
    n_classes: int = 10,
    widths: tuple[int, int] = (32, 64),
    hidden: int = 1024,
    batch_norm: bool = False,
) -> nn.Sequential:
    """The 4-layer convnet of FTPROP's CIFAR-10 experiments, layer for layer: two convolutions, two linear.

    ``conv5x5(w1, pad 3)-maxpool2-act, conv5x5(w2, pad 2)-maxpool2-act, [BN2d], linear(hidden)-act, [BN1d],
    linear(n_classes)``: the ``ConvNet4`` of the authors' code (github.com/afriesen/ftprop), where
    batch-norm is optional (``--use-bn``, off by default) and, when on, normalises the *outputs* of the
    second and third activations. With ``widths=(32, 64)``, ``hidden=1024`` and 32x32 RGB input it is
    their network; ``benchmarks/hard_threshold.py`` halves the widths on 8x8 digits. Pooling acts on the
    pre-activations, as there (see :func:`convnet4`). Unlike :func:`convnet4` (four 3x3 convolutions,
    batch-norm before every threshold), nothing normalises the pre-activations, so the width of the
    surrogate windows relative to them is set by the weights. (Friesen & Domingos, ICLR 2018.)

    Parameters
    ----------
    activation : str
        Any name accepted by :func:`liftinv.models.activation_module` (``"sign"``, ``"qrelu2"``,
        ``"relu"``, ``"clipped_relu"``, ...).
    in_channels, image_size, n_classes : int
        Input channels, input height/width (at least 4) and number of classes.
    widths : (int, int)
        Channels of the two convolutions.
    hidden : int
        Width of the hidden linear layer.
    batch_norm : bool
        Batch-norm after the second and third activations (the authors' ``--use-bn``).

    Returns
    -------
    nn.Sequential

    Examples
    --------
    >>> import torch
    >>> net = paper_convnet4("sign", widths=(4, 8), hidden=16)
    >>> net(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    >>> [type(m).__name__ for m in net][:4]
    ['Conv2d', 'MaxPool2d', 'Sign', 'Conv2d']
    """
    from liftinv.models import activation_module

    if not (isinstance(image_size, int) and image_size >= 4):
        raise ValueError(f"image_size must be an int >= 4, got {image_size!r}")
    if len(widths) != 2 or any(int(w) <= 0 for w in widths):
        raise ValueError(f"widths must be two positive channel counts, got {widths}")
    if not (isinstance(hidden, int) and hidden > 0):
        raise ValueError(f"hidden must be a positive int, got {hidden!r}")
    w1, w2 = int(widths[0]), int(widths[1])
    side = ((image_size + 2) // 2) // 2  # conv 5x5 pad 3: +2, pool; conv 5x5 pad 2: same size, pool
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, w1, 5, padding=3),
        nn.MaxPool2d(2),
        activation_module(activation),
        nn.Conv2d(w1, w2, 5, padding=2),
        nn.MaxPool2d(2),
        activation_module(activation),
    ]
    if batch_norm:
        layers.append(nn.BatchNorm2d(w2))
    layers += [nn.Flatten(), nn.Linear(w2 * side * side, hidden), activation_module(activation)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(hidden))
    layers.append(nn.Linear(hidden, n_classes))
    return nn.Sequential(*layers)


def mlp_bn(
    sizes: list[int] | tuple[int, ...], activation: str = "sign", flatten: bool = True
) -> nn.Sequential:
    """MLP with batch-norm before every hidden activation: ``(Linear-BN-act)* Linear``.

    ``Linear(bias=False) -> BatchNorm1d -> act`` per hidden layer, then a plain ``Linear`` output layer.
    This is how hard-threshold MLPs are usually built (Hubara et al. 2016, BinaryNet, where the saturated
    STE comes from), and how Friesen & Domingos (ICLR 2018) place batch-norm in their deeper networks (the
    ConvNet8 and AlexNet of their code: ``Conv/Linear(bias=False) -> BN -> [pool] -> threshold``, the
    fully-connected layers included). The reason is the same for every surrogate: ``sign(z)`` does not
    depend on the scale of ``z`` but the backward windows do (soft hinge ``1 - tanh(z)^2``, saturated STE
    ``1{|z| <= 1}``), so without normalisation the width of the window relative to the pre-activations is
    set by weight norms that training is free to change. With ``activation="relu"`` it is the
    full-precision reference of the same shape.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first, e.g. ``(64, 128, 128, 10)``.
    activation : str
        Hidden activation name (:func:`liftinv.models.activation_module`: ``"sign"``, ``"qrelu2"``,
        ``"relu"``, ...).
    flatten : bool
        Start with ``nn.Flatten()`` so image tensors can be fed directly.

    Returns
    -------
    nn.Sequential

    Examples
    --------
    >>> import torch
    >>> net = mlp_bn((64, 32, 10))
    >>> [type(m).__name__ for m in net]
    ['Flatten', 'Linear', 'BatchNorm1d', 'Sign', 'Linear']
    >>> net(torch.zeros(3, 1, 8, 8)).shape
    torch.Size([3, 10])
    """
    from liftinv.models import activation_module

    if len(sizes) < 2 or any(int(s) <= 0 for s in sizes):
        raise ValueError(f"sizes must list at least two positive widths, got {sizes}")
    layers: list[nn.Module] = [nn.Flatten()] if flatten else []
    for i in range(len(sizes) - 2):
        layers += [
            nn.Linear(int(sizes[i]), int(sizes[i + 1]), bias=False),
            nn.BatchNorm1d(int(sizes[i + 1])),
            activation_module(activation),
        ]
    layers.append(nn.Linear(int(sizes[-2]), int(sizes[-1])))
    return nn.Sequential(*layers)


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
        ``lr_decay_epochs`` (default none); see :class:`liftinv.training.BackpropTrainer`.

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
                "model has no hard-threshold units (liftinv.ftprop.Sign / Staircase); the FTPROP and STE "
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
        L2 weight of every convex fit and least-squares refit (default 1e-4).
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
        for name, v in (("feasibility", feasibility), ("ridge", ridge)):
            if not (isinstance(v, int | float) and v >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {v!r}")
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
            "(hidden layers of liftinv.ftprop.Sign units)"
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
        # 3. bottom-up convex fits on the actual inputs of every layer
        a, missed, total = self.X, 0, 0
        for d in range(L - 1):
            self._fit_units(self.linears[d], a, targets[d])
            z = self._affine(self.linears[d], a)
            a = torch.where(z > 0, 1.0, -1.0).to(z.dtype)
            missed += int((a != targets[d]).sum())
            total += a.numel()
        self._fit_output(a)
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
