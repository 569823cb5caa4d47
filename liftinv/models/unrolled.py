"""Unrolled proximal networks whose iterations are lifted layers (states = iterates).

Two architectures, both ``nn.Module`` s that map measurements ``y`` to images and expose each iteration as a
:class:`~liftinv.lifted.LiftedLayer` ``x_{k} = sigma_k(K_k x_{k-1} + b_k(y))`` through
``lifted_layers(offset)``, so :func:`liftinv.lift` turns them into lifted networks whose states are the
iterates (one per sample) and whose input state is the measurement ``y`` (the measurement-dependent
biases ``tau A^T y`` or ``tau L z(y)`` enter through that input state):

* :class:`UnrolledProxGrad` -- unrolled proximal gradient (ISTA / LISTA-type, Gregor & LeCun 2010) in a
  learned Parseval convolutional transform (Hasannasab et al. 2020)::

      u_k = S_{theta_k}( D_k( x_{k-1} - tau_k A^T (A x_{k-1} - y) ) ),   x_k = D_k^T u_k,

  with ``D_k^T D_k = I``; states ``u_k`` (transform coefficients), output ``x_K = D_K^T u_K``.

* :class:`UnrolledDualFB` -- the unfolded dual forward-backward proximal network of Le, Repetti &
  Pustelnik (2023), trained with lifted Bregman losses by Wang, Benning & Repetti (MLSP 2024)::

      u_k = clip_nu( u_{k-1} - tau_k L_k (L_k^T u_{k-1} - z) ),   u_0 = 0,   output  z - L_K^T u_K,

  with ``z = A^dagger y`` (or ``A^T y``): K dual iterations for ``min_x 1/2||x - z||^2 + nu ||L x||_1``.

Both are CUDA-ready (``model.to(device)`` moves the operator too) and double-precision ready.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from liftinv.lifted.activations import Clip, Identity
from liftinv.lifted.network import LiftedLayer
from liftinv.models.operator_adapter import OperatorAdapter, OperatorNetwork
from liftinv.models.transforms import CircularConv, ParsevalConv, PositiveSoftThreshold

__all__ = ["UnrolledProxGrad", "UnrolledDualFB", "ARCHITECTURES", "INITS", "build_model"]


# shared base
# ---------------------------------------------------------------------------------------------------------
class _Unrolled(OperatorNetwork):
    arch = "unrolled"

    def __init__(self, operator, iterations: int, image_size, dense, init: str, init_alpha: float = 0.01):
        super().__init__()
        if not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be a positive int, got {iterations!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        if not init_alpha > 0:
            raise ValueError(f"init_alpha must be > 0, got {init_alpha!r}")
        self.init_alpha = float(init_alpha)
        self.op = OperatorAdapter(operator, image_size=image_size, dense=dense)
        self.iterations = iterations
        self.init = init
        self.image_size = self.op.image_size
        self._config: dict[str, Any] = {}

    def _z(self, y: Tensor) -> Tensor:
        if self.init == "smooth":
            return self.op.smooth(y, self.init_alpha)
        if self.init == "tikhonov":
            return self.op.tikhonov(y, self.init_alpha)
        if self.init == "dagger":
            return self.op.dagger(y)
        if self.init == "adjoint":
            return self.op.At(y)
        return torch.zeros(y.shape[0], *self.image_size, dtype=y.dtype, device=y.device)

    def forward(self, y: Tensor) -> Tensor:
        """The nested forward pass ``y -> x_K`` (same layers as :meth:`lifted_layers`)."""
        self.op.check_measurement(y)
        with parametrize.cached():
            layers = self.lifted_layers(0)
            states = [y]
            for layer in layers[:-1]:
                states.append(layer.activation(layer(*[states[j] for j in layer.inputs])))
            last = layers[-1]
            return last(*[states[j] for j in last.inputs])

    def with_operator(self, operator, image_size=None) -> _Unrolled:
        """The same network (same configuration, a copy of the weights) for another operator.

        Meant for the same kind of operator at another image size (e.g. a blur trained on 32x32 patches
        applied to a 64x64 image): the transforms are convolutions and the steps are relative to
        ``||A||``, so the weights carry over. The caller is responsible for the operator being comparable.

        Examples
        --------
        >>> from liftinv.operators import make_operator
        >>> net = UnrolledProxGrad(make_operator("blur", 16), iterations=2)
        >>> big = net.with_operator(make_operator("blur", 24))
        >>> big(torch.rand(1, 1, 24, 24)).shape
        torch.Size([1, 1, 24, 24])
        """
        return self._copy_for(operator, image_size)

    def state_lipschitz(self, k: int) -> float:
        """Bound on ``||d z_{k+1} / d u_k||^2`` (the state step of lifted training uses ``1/(lambda L)``)."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------------------
# unrolled proximal gradient in a Parseval transform
# ---------------------------------------------------------------------------------------------------------
class _ProxGradStep(nn.Module):
    """Pre-activation of iteration k: ``D_k (x - tau_k A^T (A x - y))`` with ``x = D_{k-1}^T u`` (or x_0(y))."""

    def __init__(self, net: UnrolledProxGrad, k: int):
        super().__init__()
        object.__setattr__(self, "net", net)  # a back-reference, not a submodule
        self.k = k
        self.transform = net.transforms[k]  # registered so the lifted layer owns D_k (and D_{k-1} below)
        self.previous = net.transforms[k - 1] if k > 0 else None
        self.rho = net.rho[k]

    def forward(self, *xs: Tensor) -> Tensor:
        net = self.net
        if self.k == 0:
            (y,) = xs
            x = net._z(y)
        else:
            u, y = xs
            x = self.previous.synthesis(u)
        tau = net.step(self.k).to(y.dtype)
        if self.k == 0 and net.init == "zero":
            g = -net.op.At(y)  # x_0 = 0: no A^T A x_0 to compute
        else:
            g = net.op.AtA(x) - net.op.At(y)
        if net.precondition is not None:  # P g with P = (A^T A + beta I)^{-1}
            g = net.op.inverse_shifted_gram(g, net.precondition) / net.precondition
        return self.transform.analysis(x - tau * g)


class _Synthesis(nn.Module):
    def __init__(self, transform: nn.Module):
        super().__init__()
        self.transform = transform

    def forward(self, u: Tensor) -> Tensor:
        return self.transform.synthesis(u)


class UnrolledProxGrad(_Unrolled):
    """Unrolled proximal gradient in learned Parseval transforms (LISTA-type network, lifted per iteration).

    For k = 1..K (``x_0 = 0``, ``A^dagger y`` or ``A^T y``)::

        u_k = S_{theta_k}( D_k( x_{k-1} - tau_k A^T (A x_{k-1} - y) ) ),   x_k = D_k^T u_k,

    output ``x_K``. ``D_k`` is a Parseval convolutional frame (``D_k^T D_k = I``, :class:`ParsevalConv`),
    ``theta_k > 0`` a learned threshold per channel (softplus-parametrised, :class:`PositiveSoftThreshold`) and ``tau_k = (2 / ||A||^2) sigmoid(rho_k)`` a learned
    step in ``(0, 2/||A||^2)``, so each iteration is a proximal-gradient step for
    ``1/2||Ax - y||^2 + sum_c theta_{k,c} ||(D_k x)_c||_1`` and ``D_k^T S(D_k .)`` is a proximity operator.

    Lifted form (``lifted_layers``): state ``u_k`` (transform coefficients) per iteration, layer k's
    pre-activation ``z_k = D_k (I - tau_k A^T A) D_{k-1}^T u_{k-1} + tau_k D_k A^T y`` is affine in
    ``u_{k-1}`` and in the input state ``y``, activation ``S_{theta_k}`` (the prox of ``theta_k|.|``); the
    last layer is ``x_K = D_K^T u_K`` (identity activation). Since ``||D_k|| = 1`` and
    ``||I - tau_k A^T A|| <= 1``, every state map has norm <= 1 (safe lifted state steps).

    Parameters
    ----------
    operator : liftinv.operators.LinearOperator or deepinv LinearPhysics
        The forward operator ``A``.
    iterations : int
        Number K of unrolled iterations (layers).
    channels : int, optional
        Channels of each transform (default ``kernel_size**2``, an orthogonal transform; more gives an
        overcomplete Parseval frame).
    kernel_size : int
        Odd filter size.
    theta : float
        Initial threshold of the non-mean channels (the mean channel starts at 0).
    step : float
        Initial steps as a fraction of the largest stable one: ``tau_k = step * 2/||A||^2`` (0.5: ``1/||A||^2``).
    init : {"zero", "adjoint", "dagger", "tikhonov", "smooth"}
        ``x_0``: 0, ``A^T y``, the operator's pseudo-inverse (FBP for tomography), the Tikhonov
        reconstruction ``(A^T A + init_alpha I)^{-1} A^T y`` or the gradient-regularised one
        ``(A^T A + init_alpha grad^T grad)^{-1} A^T y`` (all linear in ``y``, so layer 1 stays affine in the
        input state).
    init_alpha : float
        Regularisation of ``init="tikhonov"`` / ``"smooth"``.
    precondition : float, optional
        ``beta``: use preconditioned gradient steps ``x - tau_k P A^T (A x - y)`` with
        ``P = (A^T A + beta I)^{-1}`` and ``tau_k in (0, 2 / ||P A^T A||)`` (a variable-metric step that
        converges in few iterations on ill-conditioned blurs); still affine in the state and in ``y``.
    image_size : int or tuple, optional
        Needed when the operator does not define ``image_size``.
    dense : bool or "auto"
        Tabulate the operator for small images (see :class:`OperatorAdapter`).

    References
    ----------
    Gregor & LeCun, *Learning fast approximations of sparse coding*, ICML 2010 (LISTA);
    Hasannasab et al., *Parseval proximal neural networks*, J. Fourier Anal. Appl. 2020;
    Wang, Benning & Repetti, *A lifted Bregman strategy for training unfolded proximal neural network
    Gaussian denoisers*, MLSP 2024 (arXiv 2408.08742).

    Examples
    --------
    >>> from liftinv.operators import Blur
    >>> net = UnrolledProxGrad(Blur(16, sigma=1.0), iterations=3)
    >>> y = torch.rand(2, 1, 16, 16)
    >>> net(y).shape
    torch.Size([2, 1, 16, 16])
    >>> len(net.lifted_layers(0))  # K thresholding layers + the synthesis layer
    4
    """

    arch = "proxgrad"

    def __init__(
        self,
        operator,
        iterations: int = 8,
        channels: int | None = None,
        kernel_size: int = 3,
        theta: float = 0.01,
        step: float = 0.5,
        init: str = "zero",
        init_alpha: float = 0.01,
        precondition: float | None = None,
        image_size=None,
        dense: bool | str = "auto",
    ):
        super().__init__(operator, iterations, image_size, dense, init, init_alpha)
        if precondition is not None and not precondition > 0:
            raise ValueError(f"precondition must be None or > 0, got {precondition!r}")
        self.precondition = None if precondition is None else float(precondition)
        c = self.image_size[0]
        channels = c * kernel_size * kernel_size if channels is None else int(channels)
        self.transforms = nn.ModuleList([ParsevalConv(channels, kernel_size, c) for _ in range(iterations)])
        theta0 = torch.full((channels, 1, 1), float(theta))
        theta0[0] = 0.0  # the DCT mean channel is (almost) not thresholded at initialisation
        if not theta >= 0:
            raise ValueError(f"theta must be >= 0, got {theta}")
        self.thresholds = nn.ModuleList([PositiveSoftThreshold(theta0.clone()) for _ in range(iterations)])
        if not 0 < step < 1:
            raise ValueError(f"step must be in (0, 1) (a fraction of the largest stable step), got {step!r}")
        rho0 = math.log(step / (1 - step))
        self.rho = nn.ParameterList([nn.Parameter(torch.full((), rho0)) for _ in range(iterations)])
        self._config = {
            "iterations": iterations,
            "channels": channels,
            "kernel_size": kernel_size,
            "theta": float(theta),
            "step": float(step),
            "init": init,
            "init_alpha": self.init_alpha,
            "precondition": self.precondition,
        }

    def step(self, k: int) -> Tensor:
        """The step size ``tau_k = (2/||P A^T A||) sigmoid(rho_k)`` (in ``(0, 2/||A||^2)`` without preconditioner)."""
        L = self.op.norm_sq
        if self.precondition is not None:
            L = L / (L + self.precondition)
        return (2.0 / max(L, 1e-12)) * torch.sigmoid(self.rho[k])

    def lifted_layers(self, offset: int = 0) -> list[LiftedLayer]:
        """One :class:`LiftedLayer` per iteration plus the synthesis layer (see the class docstring).

        Parameters
        ----------
        offset : int
            Index of the state holding the measurement ``y`` (0 for a whole model).
        """
        layers = []
        for k in range(self.iterations):
            inputs = (offset,) if k == 0 else (offset + k, offset)
            layers.append(
                LiftedLayer(_ProxGradStep(self, k), self.thresholds[k], inputs=inputs, affine_in_params=False)
            )
        layers.append(
            LiftedLayer(
                _Synthesis(self.transforms[-1]),
                Identity(),
                inputs=(offset + self.iterations,),
                affine_in_params=False,
            )
        )
        return layers

    def state_lipschitz(self, k: int) -> float:
        return 1.0  # ||D_{k+1}|| = ||D_k^T|| = 1 and ||I - tau A^T A|| <= 1

    def parseval_error(self) -> float:
        """``max_k ||D_k^T D_k - I||_2`` (see :meth:`ParsevalConv.parseval_error`)."""
        return max(D.parseval_error() for D in self.transforms)


# ---------------------------------------------------------------------------------------------------------
# unfolded dual forward-backward (P3)
# ---------------------------------------------------------------------------------------------------------
class _DualFBStep(nn.Module):
    """Pre-activation of dual iteration k: ``u - tau_k L_k (L_k^T u - z(y))`` (``u = 0`` for k = 0)."""

    def __init__(self, net: UnrolledDualFB, k: int):
        super().__init__()
        object.__setattr__(self, "net", net)
        self.k = k
        self.conv = net.convs[k]
        self.rho = net.rho[k]

    def forward(self, *xs: Tensor) -> Tensor:
        net = self.net
        tau = net.step(self.k).to(xs[-1].dtype)
        if self.k == 0:
            (y,) = xs
            return tau * self.conv.analysis(net._z(y))
        u, y = xs
        return u - tau * self.conv.analysis(self.conv.synthesis(u) - net._z(y))


class _DualFBOutput(nn.Module):
    """Output layer ``(u_K, y) -> z(y) - L_K^T u_K``."""

    def __init__(self, net: UnrolledDualFB):
        super().__init__()
        object.__setattr__(self, "net", net)
        self.conv = net.convs[-1]

    def forward(self, u: Tensor, y: Tensor) -> Tensor:
        return self.net._z(y) - self.conv.synthesis(u)


class UnrolledDualFB(_Unrolled):
    """Unfolded dual forward-backward proximal network (Le, Repetti & Pustelnik 2023; P3).

    With ``z = A^dagger y`` (or ``A^T y``) and ``u_0 = 0``, for k = 1..K::

        u_k = clip_nu( u_{k-1} - tau_k L_k (L_k^T u_{k-1} - z) ),      output  x = z - L_K^T u_K,

    i.e. K dual forward-backward iterations for the denoising problem
    ``min_x 1/2 ||x - z||^2 + nu ||L x||_1`` with a different learned convolution ``L_k`` per layer
    (``clip_nu`` is the prox of the conjugate of ``nu||.||_1``; its Bregman penalty is the clip/Huber one).
    ``tau_k = 1.99 sigmoid(rho_k) / ||L_k||^2`` (``||L_k||`` exact by FFT), so the linear part of every
    layer, ``I - tau_k L_k L_k^T``, has norm <= 1. Initialised as K iterations of anisotropic TV denoising
    (``L_k = nu_0 [D_h; D_v]`` plus small random filters).

    Lifted form: states ``u_k`` (one per iteration and sample), pre-activation affine in ``u_{k-1}`` and in
    the input state ``y`` (through ``tau_k L_k z(y)``), last layer ``z(y) - L_K^T u_K`` (identity).

    Parameters
    ----------
    operator : LinearOperator
        The forward operator.
    iterations : int
        Number K of dual iterations.
    channels : int
        Number of channels of each ``L_k``.
    kernel_size : int
        Odd filter size.
    nu : float
        Clip level (fixed; the scale of ``L_k`` is learned, which is equivalent).
    reg : float
        Initial regularisation weight ``nu_0`` (scale of the initial finite-difference filters).
    init : {"dagger", "adjoint", "tikhonov", "smooth"}
        ``z = A^dagger y``, ``A^T y``, ``(A^T A + init_alpha I)^{-1} A^T y`` or
        ``(A^T A + init_alpha grad^T grad)^{-1} A^T y``.
    init_alpha : float
        Regularisation of ``init="tikhonov"`` / ``"smooth"``.
    seed : int
        Seed of the small random initial filters.
    image_size, dense
        As for :class:`UnrolledProxGrad`.

    References
    ----------
    Le, Repetti & Pustelnik, *Unfolded proximal neural networks for robust image Gaussian denoising*,
    IEEE TIP 2024 (arXiv 2023); Wang, Benning & Repetti, MLSP 2024 (arXiv 2408.08742).

    Examples
    --------
    >>> from liftinv.operators import Denoising
    >>> net = UnrolledDualFB(Denoising(16), iterations=4)
    >>> net(torch.rand(2, 1, 16, 16)).shape
    torch.Size([2, 1, 16, 16])
    """

    arch = "dualfb"

    def __init__(
        self,
        operator,
        iterations: int = 8,
        channels: int = 16,
        kernel_size: int = 3,
        nu: float = 1.0,
        reg: float = 0.05,
        init: str = "dagger",
        init_alpha: float = 0.01,
        seed: int = 0,
        image_size=None,
        dense: bool | str = "auto",
    ):
        super().__init__(operator, iterations, image_size, dense, init, init_alpha)
        if init == "zero":
            raise ValueError("UnrolledDualFB needs init='dagger' or 'adjoint' (z is the image to denoise)")
        if not nu > 0:
            raise ValueError(f"nu must be > 0, got {nu}")
        if channels < 2:
            raise ValueError(
                f"channels must be >= 2 (the initial filters are the two finite differences), got {channels}"
            )
        c = self.image_size[0]
        g = torch.Generator().manual_seed(int(seed))
        self.convs = nn.ModuleList()
        for _ in range(iterations):
            conv = CircularConv(channels, kernel_size, c)
            with torch.no_grad():
                w = 0.1 * float(reg) * torch.randn(conv.weight.shape, generator=g)
                mid = kernel_size // 2
                for ch in range(c):
                    w[2 * ch % channels, ch].zero_()
                    w[(2 * ch + 1) % channels, ch].zero_()
                    if kernel_size > 1:
                        w[2 * ch % channels, ch, mid, mid] = -reg
                        w[2 * ch % channels, ch, mid, mid + 1] = reg
                        w[(2 * ch + 1) % channels, ch, mid, mid] = -reg
                        w[(2 * ch + 1) % channels, ch, mid + 1, mid] = reg
                    else:
                        w[2 * ch % channels, ch, 0, 0] = reg
                conv.weight.copy_(w)
            self.convs.append(conv)
        self.rho = nn.ParameterList([nn.Parameter(torch.zeros(())) for _ in range(iterations)])
        self.activation_fn = Clip(nu)
        self._config = {
            "iterations": iterations,
            "channels": channels,
            "kernel_size": kernel_size,
            "nu": float(nu),
            "reg": float(reg),
            "init": init,
            "init_alpha": self.init_alpha,
            "seed": int(seed),
        }

    def step(self, k: int) -> Tensor:
        """``tau_k = 1.99 sigmoid(rho_k) / ||L_k||^2``."""
        _, h, w = self.image_size
        return 1.99 * torch.sigmoid(self.rho[k]) / self.convs[k].norm_sq(h, w).clamp(min=1e-12)

    def lifted_layers(self, offset: int = 0) -> list[LiftedLayer]:
        """K clip layers (states ``u_k``) and the output layer ``z - L_K^T u_K`` (see the class docstring)."""
        layers = []
        for k in range(self.iterations):
            inputs = (offset,) if k == 0 else (offset + k, offset)
            layers.append(
                LiftedLayer(_DualFBStep(self, k), self.activation_fn, inputs=inputs, affine_in_params=False)
            )
        layers.append(
            LiftedLayer(
                _DualFBOutput(self),
                Identity(),
                inputs=(offset + self.iterations, offset),
                affine_in_params=False,
            )
        )
        return layers

    def state_lipschitz(self, k: int) -> float:
        if k < self.iterations:
            return 1.0  # ||I - tau L L^T|| <= 1 since tau ||L||^2 < 2
        _, h, w = self.image_size
        return float(self.convs[-1].norm_sq(h, w).detach())


#: initialisations x_0 (proxgrad) / z (dualfb) of the networks
INITS = ("zero", "adjoint", "dagger", "tikhonov", "smooth")

#: architecture name -> class
ARCHITECTURES: dict[str, type[_Unrolled]] = {"proxgrad": UnrolledProxGrad, "dualfb": UnrolledDualFB}


def build_model(arch: str, operator, **kwargs) -> nn.Module:
    """Build an unrolled network by architecture name.

    Parameters
    ----------
    arch : {"proxgrad", "dualfb"}
        :class:`UnrolledProxGrad` or :class:`UnrolledDualFB`.
    operator : LinearOperator
        The forward operator.
    **kwargs
        Constructor arguments (``iterations``, ``channels``, ``kernel_size``, ``init``, ...).

    Returns
    -------
    nn.Module

    Examples
    --------
    >>> from liftinv.operators import make_operator
    >>> net = build_model("proxgrad", make_operator("blur", 16), iterations=2)
    >>> net.config()["arch"], net.config()["iterations"]
    ('proxgrad', 2)
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}, got {arch!r}")
    return ARCHITECTURES[arch](operator, **kwargs)
