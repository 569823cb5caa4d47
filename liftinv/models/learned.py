"""Learned unrolled networks whose proximal steps are CNNs, in lifted form (states = every conv layer).

* :class:`LearnedPrimalDual` -- Learned Primal-Dual (Adler & Oktem, IEEE TMI 37(6), 2018);
* :class:`UnrolledProxGradCNN` -- proximal gradient with a DnCNN-like residual CNN as proximal step.

Plain ``nn.Module`` s mapping measurements ``y`` to images whose lifted form comes from
``lifted_layers(offset)``: every layer is ``x_l = sigma_l(M_l(earlier states))`` with ``M_l`` affine and
``sigma_l`` proximal (leaky ReLU with a fixed slope in (0, 1], ReLU, identity), so :func:`liftinv.lift` and the
lifted trainers (:mod:`liftinv.training.unrolled`) apply unchanged. Skip connections, ``A`` and ``A^T`` are
parameter-free linear terms of the affine maps; the input state (index ``offset``) is ``y``, and initial
iterates linear in ``y`` (0, ``A^T y``, FBP) are folded into the first layers. The networks use ``A / ||A||``
and ``y / ||A||`` (as the reference LPD code), so the filters do not depend on the operator's scale.

Fully convolutional: for shift-invariant operators (blur, inpainting, denoising) a network built at 32x32
reconstructs any size (the operator is rebuilt from its ``describe()``, cached per size, with the build
size's ``||A||``); for tomography another geometry raises a ``ValueError`` naming both. ``.to(device)`` and
``.double()`` move the operator too.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from liftinv.lifted.activations import Identity, LeakyReLU, ReLU
from liftinv.lifted.network import LiftedLayer
from liftinv.models.learned_base import (
    LEARNED_INITS,
    _check_dilations,
    _check_int,
    _check_number,
    _cnn,
    _LearnedUnrolled,
    _partial_conv,
)

__all__ = ["LearnedPrimalDual", "UnrolledProxGradCNN", "LEARNED_ARCHITECTURES", "LEARNED_INITS", "DATA_STEPS"]

#: data steps of :class:`UnrolledProxGradCNN`: a gradient step on the data term, or its proximal map
DATA_STEPS = ("gradient", "prox")


class _Layer(nn.Module):
    """A lifted layer's affine map: owns the parameters it uses, refers back to the network (not a submodule)."""

    def __init__(self, net: _LearnedUnrolled, k: int):
        super().__init__()
        object.__setattr__(self, "net", net)
        self.k = k


# -- Learned Primal-Dual
class _DualIn(_Layer):
    """``conv1_Gamma_k([d, A_n p^(1), y_n])``; inputs ``(y,)`` at k = 0 (d = 0, p = p_0(y)), else ``(d, p, y)``."""

    def __init__(self, net, k):
        super().__init__(net, k)
        self.conv = net.dual_nets[k][0]

    def forward(self, *xs: Tensor) -> Tensor:
        d, p, y = (None, self.net._p0(xs[0]), xs[0]) if self.k == 0 else xs
        return self.conv(self.net._dual_input(d, p, y))


class _PrimalIn(_Layer):
    """``conv1_Lambda_k([p, A_n^T d^(1)])``; inputs ``(d,)`` or ``(y, d)`` at k = 0 (p = p_0(y)), else ``(p, d)``."""

    def __init__(self, net, k):
        super().__init__(net, k)
        self.conv = net.primal_nets[k][0]

    def forward(self, *xs: Tensor) -> Tensor:
        if self.k > 0:
            p, d = xs
        else:  # inputs (y, d), or (d,) when p_0 = 0
            p, d = (self.net._p0(xs[0]), xs[1]) if len(xs) == 2 else (None, xs[0])
        return self.conv(self.net._primal_input(p, d))


class _Update(_Layer):
    """Residual update ``prev + conv3(h)``: inputs ``(prev, h)``; at k = 0 the previous value is 0 (input
    ``(h,)``) or ``p_0(y)`` (input ``(y, h)``). ``channels``: keep only the first channels (output layer)."""

    def __init__(self, net, k, conv: nn.Conv2d, first: str | None, channels: int | None = None):
        super().__init__(net, k)
        self.conv = conv
        self.first = first  # at k = 0: None (prev = 0) or "p0" (prev = p_0(y), y is the first input)
        self.channels = channels

    def forward(self, *xs: Tensor) -> Tensor:
        if self.k == 0:
            prev, h = (None, xs[0]) if self.first is None else (self.net._p0(xs[0]), xs[1])
        else:
            prev, h = xs
        c = self.channels
        out = self.conv(h) if c is None else _partial_conv(self.conv, h, c)
        return out if prev is None else out + (prev if c is None else prev[:, :c])


class LearnedPrimalDual(_LearnedUnrolled):
    """Learned Primal-Dual reconstruction (Adler & Oktem 2018) in lifted form.

    With ``A_n = A/||A||``, ``y_n = y/||A||``, a primal ``p`` (``primal_channels`` image channels) and a
    dual ``d`` (``dual_channels`` channels shaped like the measurement: sinograms ``[detectors, angles]``
    for tomography, images otherwise), ``d_0 = 0`` and ``p_0`` = 0, ``A_n^T y_n`` or FBP (in every
    channel), for k = 1..K::

        d_k = d_{k-1} + Gamma_k([d_{k-1}, A_n p_{k-1}^(1), y_n])
        p_k = p_{k-1} + Lambda_k([p_{k-1}, A_n^T d_k^(1)])

    output ``p_K^(1)`` (the first channel(s)). ``Gamma_k``, ``Lambda_k`` are 3-layer CNNs
    ``conv - sigma - conv - sigma - conv`` (``width`` channels, ``kernel_size`` filters, zero padding) with
    ``sigma`` the leaky ReLU of fixed slope ``slope`` (the paper uses PReLU; a learned slope could exceed 1,
    and a slope in (0, 1] is what makes ``sigma`` a proximal map).

    Lifted form (``lifted_layers``), 6 states per iteration, the last state of the last iteration being the
    output (6K layers; ``offset`` = the measurement state)::

        h1 = sigma(conv1_G([d_{k-1}, A_n p_{k-1}^(1), y_n]))   inputs (d_{k-1}, p_{k-1}, y)
        h2 = sigma(conv2_G(h1))                               inputs (h1,)
        d_k = d_{k-1} + conv3_G(h2)          (identity)       inputs (d_{k-1}, h2)
        g1 = sigma(conv1_L([p_{k-1}, A_n^T d_k^(1)]))         inputs (p_{k-1}, d_k)
        g2 = sigma(conv2_L(g1))                               inputs (g1,)
        p_k = p_{k-1} + conv3_L(g2)          (identity)       inputs (p_{k-1}, g2)

    At k = 1, ``d_0 = 0`` and ``p_0(y)`` (linear in ``y``) are folded into the maps (inputs ``(y,)``,
    ``(h2,)``, ``(y, d_1)``, ``(y, h2)``; no ``y`` when ``p_0 = 0``). The output layer is
    ``p_{K-1}^(1) + conv3_L(g2)^(1)`` (the unused channels of ``p_K`` are not states).

    Parameters
    ----------
    operator : liftinv.operators.LinearOperator or deepinv LinearPhysics
        The forward operator ``A``.
    iterations : int, default 10
        Number K of primal-dual iterations.
    primal_channels, dual_channels : int, default 5
        Memory channels ``N_p``, ``N_d`` (at least the number of image / measurement channels).
    width, kernel_size : int, default 32, 3
        Channels of the hidden conv layers; odd filter size.
    init : {"zero", "fbp", "adjoint", "tikhonov", "smooth"}, default "zero"
        ``p_0``: 0 (the paper), ``A^dagger y`` (FBP for tomography, the pseudo-inverse otherwise),
        ``A_n^T y_n = A^T y / ||A||^2``, or a regularised least-squares image (:data:`LEARNED_INITS`).
    init_alpha : float, default 0.01
        Regularisation ``a = init_alpha ||A||^2`` of ``init="tikhonov"`` / ``"smooth"``.
    slope : float, default 0.1
        Negative slope of the leaky ReLU, in (0, 1]. Choice: 0.1 keeps negative pre-activations alive (no dead
        units, unlike ReLU) while the curvature ``1/slope - 1 = 9`` of ``psi`` keeps the lifted state prox
        well conditioned (0.01 would give 99, nearly the ReLU's indicator).
    seed : int, default 0
        Seed of the initialisation: Xavier-uniform filters and zero biases (as the reference code).
    last_gain : float, default 0.1
        Xavier gain of the last conv of every CNN (the paper: 1). Choice, measured 0.1 vs 1.0 (4 seeds unless
        said): lifted ISGM, denoising 16x16, K = 2, width 8, 3 epochs: +2.6..+3.6 dB vs -4.2..+5.3 dB (1.0 is
        unstable); Adam there: 26.9 vs 26.2 dB after 15 epochs; but Adam on CT 24x24, 12 angles, K = 3,
        width 16, 20 epochs (2 seeds): 29.5 vs 30.7 dB. Set 1.0 for the paper's initialisation.
    image_size, dense
        Image size (when the operator does not define it); tabulation (:class:`~liftinv.models.OperatorAdapter`).

    References
    ----------
    Adler & Oktem, *Learned Primal-Dual Reconstruction*, IEEE Trans. Med. Imaging 37(6), 1322-1332, 2018;
    Wang & Benning, *Lifted Bregman Training of Neural Networks*, JMLR 24(232), 2023.

    Examples
    --------
    >>> from liftinv.operators import make_operator
    >>> net = LearnedPrimalDual(make_operator("tomography", 16, angles=6), iterations=2, width=8)
    >>> y = torch.rand(2, *net.measurement_size)
    >>> net(y).shape
    torch.Size([2, 1, 16, 16])
    >>> len(net.lifted_layers(0))  # 6 states per iteration, the last one is the output
    12
    """

    arch = "lpd"

    def __init__(
        self,
        operator,
        iterations: int = 10,
        primal_channels: int = 5,
        dual_channels: int = 5,
        width: int = 32,
        kernel_size: int = 3,
        init: str = "zero",
        init_alpha: float = 0.01,
        slope: float = 0.1,
        seed: int = 0,
        last_gain: float = 0.1,
        image_size=None,
        dense: bool | str = "auto",
    ):
        super().__init__(operator, iterations, init, image_size, dense, seed, init_alpha)
        last_gain = _check_number("last_gain", last_gain)
        c, cm = self.image_size[0], self.measurement_size[0]
        if len(self.measurement_size) != 3:
            raise ValueError(
                f"LearnedPrimalDual needs measurements [C, H, W], got {list(self.measurement_size)}"
            )
        self.primal_channels = _check_int("primal_channels", primal_channels, c)
        self.dual_channels = _check_int("dual_channels", dual_channels, cm)
        self.width = _check_int("width", width)
        if _check_int("kernel_size", kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.activation = LeakyReLU(slope)
        g = torch.Generator().manual_seed(seed)
        dual = [dual_channels + 2 * cm, width, width, dual_channels]
        primal = [primal_channels + c, width, width, primal_channels]
        self.dual_nets = nn.ModuleList(_cnn(dual, kernel_size, g, last_gain) for _ in range(iterations))
        self.primal_nets = nn.ModuleList(_cnn(primal, kernel_size, g, last_gain) for _ in range(iterations))
        cfg = dict(iterations=iterations, primal_channels=primal_channels, dual_channels=dual_channels)
        cfg.update(width=width, kernel_size=kernel_size, init=init, init_alpha=self.init_alpha)
        cfg.update(slope=float(slope), seed=seed)
        self._config = {**cfg, "last_gain": last_gain}

    # -- the maps of the algorithm (shared by forward and lifted_layers) -------------------------------------
    def _p0(self, y: Tensor) -> Tensor | None:
        x0 = self._x0(y)
        if x0 is None:
            return None
        reps = -(-self.primal_channels // x0.shape[1])
        return x0.repeat(1, reps, 1, 1)[:, : self.primal_channels]

    def _dual_input(self, d: Tensor | None, p: Tensor | None, y: Tensor) -> Tensor:
        """``[d, A_n p^(1), y_n]`` (d = 0 / p = 0 when None)."""
        yn = y * self.op_scale
        c = self.image_size[0]
        Ap = torch.zeros_like(yn) if p is None else self._A(p[:, :c])
        if d is None:
            d = yn.new_zeros(yn.shape[0], self.dual_channels, *yn.shape[2:])
        return torch.cat([d, Ap, yn], 1)

    def _primal_input(self, p: Tensor | None, d: Tensor) -> Tensor:
        """``[p, A_n^T d^(1)]`` (p = 0 when None)."""
        Atd = self._At(d[:, : self.measurement_size[0]])
        if p is None:
            p = Atd.new_zeros(Atd.shape[0], self.primal_channels, *Atd.shape[2:])
        return torch.cat([p, Atd], 1)

    def forward(self, y: Tensor) -> Tensor:
        """The nested forward pass ``y -> p_K^(1)`` (the same maps as :meth:`lifted_layers`)."""
        self.check_measurement(y)
        act, c = self.activation, self.image_size[0]
        d, p = None, self._p0(y)
        for k in range(self.iterations):
            G, L = self.dual_nets[k], self.primal_nets[k]
            h = act(G[1](act(G[0](self._dual_input(d, p, y)))))
            d = G[2](h) if d is None else d + G[2](h)
            g = act(L[1](act(L[0](self._primal_input(p, d)))))
            if k == self.iterations - 1:
                out = _partial_conv(L[2], g, c)
                return out if p is None else p[:, :c] + out
            p = L[2](g) if p is None else p + L[2](g)
        raise AssertionError("unreachable")  # pragma: no cover

    def lifted_layers(self, offset: int = 0) -> list[LiftedLayer]:
        """The 6K lifted layers (see the class docstring); ``offset`` is the index of the measurement state."""
        o, act, ident = offset, self.activation, Identity()
        with_y = self.init != "zero"
        layers = []
        for k in range(self.iterations):
            b = o + 6 * k  # h1 = b+1, h2 = b+2, d = b+3, g1 = b+4, g2 = b+5, p = b+6
            G, L = self.dual_nets[k], self.primal_nets[k]
            last = k == self.iterations - 1
            if k == 0:
                d_in, up_d = (o,), (b + 2,)
                p_in = (o, b + 3) if with_y else (b + 3,)
                up_p = (o, b + 5) if with_y else (b + 5,)
            else:
                d_in, up_d = (b - 3, b, o), (b - 3, b + 2)
                p_in, up_p = (b, b + 3), (b, b + 5)
            layers += [
                LiftedLayer(_DualIn(self, k), act, inputs=d_in, affine_in_params=True),
                LiftedLayer(G[1], act, inputs=(b + 1,), affine_in_params=True),
                LiftedLayer(_Update(self, k, G[2], None), ident, inputs=up_d, affine_in_params=False),
                LiftedLayer(_PrimalIn(self, k), act, inputs=p_in, affine_in_params=True),
                LiftedLayer(L[1], act, inputs=(b + 4,), affine_in_params=True),
                LiftedLayer(
                    _Update(self, k, L[2], "p0" if with_y else None, self.image_size[0] if last else None),
                    ident,
                    inputs=up_p,
                    affine_in_params=False,
                ),
            ]
        return layers


# -- proximal gradient with a residual CNN as proximal step
class _GradIn(_Layer):
    """``conv1_k(z_k)``, ``z_k`` the data step from ``x_k``: inputs ``(y,)`` at k = 0, else ``(x_k, y)``."""

    def __init__(self, net, k):
        super().__init__(net, k)
        self.conv = net.cnn(k)[0]
        self.step = net.steps[k]

    def forward(self, *xs: Tensor) -> Tensor:
        x, y = (None, xs[0]) if self.k == 0 else xs
        return self.conv(self.net._data_step(self.k, x, y))


class _GradOut(_Layer):
    """``z_k + conv_D(h)``: inputs ``(y, h)`` at k = 0, else ``(x_k, h, y)``."""

    def __init__(self, net, k):
        super().__init__(net, k)
        self.conv = net.cnn(k)[-1]
        self.step = net.steps[k]

    def forward(self, *xs: Tensor) -> Tensor:
        x, h, y = (None, xs[1], xs[0]) if self.k == 0 else xs
        return self.net._data_step(self.k, x, y) + self.conv(h)


class UnrolledProxGradCNN(_LearnedUnrolled):
    """Unrolled proximal gradient whose proximal step is a residual CNN (DnCNN-like), in lifted form.

    With ``A_n = A/||A||``, ``y_n = y/||A||`` and ``x_0`` = 0, ``A_n^T y_n`` or ``A^dagger y``, for k < K::

        z_k     = x_k - tau_k A_n^T (A_n x_k - y_n)        (a gradient step on 1/2||A_n x - y_n||^2)
        x_{k+1} = z_k + CNN_k(z_k)

    output ``x_K``; ``tau_k`` learned per iteration (``step = 1``: ``1/||A||^2`` for ``A``). With
    ``data_step="prox"`` the data step is the proximal map of that term instead (half-quadratic splitting, as
    in DPIR / USRNet)::

        z_k     = argmin_z tau_k/2 ||A_n z - y_n||^2 + 1/2 ||z - x_k||^2
                = (tau_k A_n^T A_n + I)^{-1} (x_k + tau_k A_n^T y_n)

    which resolves in one step the frequencies that a gradient step on an ill-conditioned ``A`` barely moves
    (blur). For denoising and inpainting both steps span the same maps (``tau -> tau / (1 + tau)``). ``CNN_k`` is
    ``conv(C->width) - sigma - [conv(width->width) - sigma] x (depth-2) - conv(width->C)``, ``sigma`` leaky
    ReLU (fixed slope) or ReLU, no batch norm (not a fixed affine map); per iteration or ``shared``.

    Lifted form (``lifted_layers``), ``depth`` states per iteration (``depth - 1`` hidden conv outputs and
    the iterate), the last iterate being the output (K * depth layers)::

        h_1     = sigma(conv_1(x_k - tau_k A_n^T(A_n x_k - y_n)))    inputs (x_k, y)
        h_j     = sigma(conv_j(h_{j-1}))                            inputs (h_{j-1},)
        x_{k+1} = x_k - tau_k A_n^T(A_n x_k - y_n) + conv_D(h_{D-1})  (identity)  inputs (x_k, h_{D-1}, y)

    The data step (gradient or proximal) is linear in ``(x_k, y)``: a term of the first conv's and of the
    residual output layer's affine maps (``x_0(y)`` is folded into iteration 1: inputs ``(y,)`` and
    ``(y, h_{D-1})``); it depends on ``tau_k`` nonlinearly for ``"prox"``, which the lifted trainers allow
    (``affine_in_params=False``).

    Parameters
    ----------
    operator : liftinv.operators.LinearOperator or deepinv LinearPhysics
        The forward operator ``A``.
    iterations : int, default 5
        Number K of proximal-gradient iterations.
    depth : int, default 4
        Convs per CNN (>= 2).
    width, kernel_size : int, default 32, 3
        Channels of the hidden convs; odd filter size.
    shared : bool, default False
        One CNN for every iteration.
    step : float, default 1.0
        Initial ``tau_k ||A||^2`` (1: the step ``1/||A||^2``).
    dilations : sequence of int, optional
        Dilation of each of the ``depth`` convs of every CNN (default all 1), as in IRCNN's denoiser prior for
        deblurring (1, 2, 3, 4, 3, 2, 1): a larger receptive field at the same cost. Every conv stays linear,
        so the lifted form is unchanged.
    data_step : {"gradient", "prox"}, default "gradient"
        The data step of every iteration (see above). ``"prox"`` uses the operator's ``prox_l2``: closed
        forms for circular blur (one FFT pair), inpainting and denoising; conjugate gradients, differentiated
        through, for other operators (slow). Choice for deblurring in ``benchmarks/learned.py``: by
        validation PSNR (see there).
    init : {"zero", "adjoint", "fbp", "tikhonov", "smooth"}, default "adjoint"
        ``x_0``: 0, ``A^T y / ||A||^2``, ``A^dagger y`` (FBP for tomography),
        ``(A^T A + a I)^{-1} A^T y`` or ``(A^T A + a grad^T grad)^{-1} A^T y`` (harmonic interpolation of the
        missing pixels for inpainting, a smoothness-regularised deconvolution for blur).
    init_alpha : float, default 0.01
        Regularisation ``a = init_alpha ||A||^2`` of ``init="tikhonov"`` / ``"smooth"``.
    activation, slope : {"leaky_relu", "relu"}, float, default "leaky_relu", 0.1
        The CNN nonlinearity (both proximal); leaky ReLU slope in (0, 1] (see :class:`LearnedPrimalDual`).
    seed : int, default 0
        Seed of the initialisation: Xavier-uniform filters and zero biases.
    last_gain : float, default 0.1
        Xavier gain of the last conv of every CNN. Choice: the network starts near K gradient steps and every
        weight gets a gradient at once. Measured (CT 24x24, 12 angles, K = 3, depth 3, width 16, 64 phantoms,
        6 epochs), 0.1 vs 1.0: Adam 30.4 vs 30.6 dB, lifted ISGM 29.7 vs 28.5 dB.
    image_size, dense
        As for :class:`LearnedPrimalDual`.

    References
    ----------
    Zhang et al., *Beyond a Gaussian Denoiser: Residual Learning of Deep CNN for Image Denoising* (DnCNN),
    IEEE TIP 26(7), 2017; Zhang, Zuo, Gu & Zhang, *Learning Deep CNN Denoiser Prior for Image Restoration*
    (IRCNN, dilated convs), CVPR 2017; Zhang, Van Gool & Timofte, *Deep Unfolding Network for Image
    Super-Resolution* (USRNet), CVPR 2020, and Zhang et al., *Plug-and-Play Image Restoration with Deep Denoiser Prior* (DPIR),
    IEEE TPAMI 44(10), 2022 (the proximal data step); Wang, Benning & Repetti, MLSP 2024 (arXiv 2408.08742);
    Wang & Benning, JMLR 2023.

    Examples
    --------
    >>> from liftinv.operators import make_operator
    >>> net = UnrolledProxGradCNN(make_operator("blur", 16, sigma=1.0), iterations=2, depth=3, width=8)
    >>> net(torch.rand(2, 1, 16, 16)).shape
    torch.Size([2, 1, 16, 16])
    >>> net(torch.rand(1, 1, 24, 20)).shape  # fully convolutional: the blur is rebuilt at 24x20
    torch.Size([1, 1, 24, 20])
    >>> len(net.lifted_layers(0))  # depth states per iteration
    6
    """

    arch = "proxgrad-cnn"

    def __init__(
        self,
        operator,
        iterations: int = 5,
        depth: int = 4,
        width: int = 32,
        kernel_size: int = 3,
        shared: bool = False,
        step: float = 1.0,
        init: str = "adjoint",
        init_alpha: float = 0.01,
        activation: str = "leaky_relu",
        slope: float = 0.1,
        seed: int = 0,
        last_gain: float = 0.1,
        data_step: str = "gradient",
        dilations=None,
        image_size=None,
        dense: bool | str = "auto",
    ):
        super().__init__(operator, iterations, init, image_size, dense, seed, init_alpha)
        last_gain = _check_number("last_gain", last_gain)
        self.depth = _check_int("depth", depth, 2)
        dilations = _check_dilations(dilations, self.depth)
        self.width = _check_int("width", width)
        if _check_int("kernel_size", kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if not isinstance(shared, bool):
            raise ValueError(f"shared must be a bool, got {shared!r}")
        step = _check_number("step", step, 1e-12)
        if data_step not in DATA_STEPS:
            raise ValueError(
                f"data_step must be one of {', '.join(map(repr, DATA_STEPS))}, got {data_step!r}"
            )
        self.data_step = data_step
        if activation not in ("leaky_relu", "relu"):
            raise ValueError(f"activation must be 'leaky_relu' or 'relu', got {activation!r}")
        self.activation = LeakyReLU(slope) if activation == "leaky_relu" else ReLU()
        self.shared = shared
        c = self.image_size[0]
        g = torch.Generator().manual_seed(seed)
        self.cnns = nn.ModuleList()
        for _ in range(1 if shared else iterations):
            self.cnns.append(_cnn([c] + [width] * (depth - 1) + [c], kernel_size, g, last_gain, dilations))
        self.steps = nn.ParameterList(nn.Parameter(torch.tensor(float(step))) for _ in range(iterations))
        self._config = dict(iterations=iterations, depth=depth, width=width, kernel_size=kernel_size)
        self._config.update(shared=shared, step=step, init=init, init_alpha=self.init_alpha)
        self._config.update(activation=activation, slope=float(slope))
        self._config.update(seed=seed, last_gain=last_gain, data_step=data_step, dilations=list(dilations))

    def cnn(self, k: int) -> nn.ModuleList:
        """The convs of iteration k's CNN (the same for every k when ``shared``)."""
        return self.cnns[0 if self.shared else k]

    def _data_step(self, k: int, x: Tensor | None, y: Tensor) -> Tensor:
        """``z_k = x - tau_k A_n^T(A_n x - y_n) = x - tau_k (A^T A x - A^T y) / ||A||^2``, or for
        ``data_step="prox"`` ``argmin_z tau_k/2 ||A_n z - y_n||^2 + 1/2||z - x||^2`` (x = x_0(y) at k = 0)."""
        if k == 0:
            x = self._x0(y)
        ad = self._adapter_for_measurement(y.shape[-2:])
        tau = self.steps[k].to(y.dtype) * self.op_scale**2
        if self.data_step == "prox":
            # ||A_n z - y_n||^2 = ||A z - y||^2 / ||A||^2: prox_l2 of A with gamma = tau_k / ||A||^2
            z = torch.zeros(y.shape[0], *ad.image_size, dtype=y.dtype, device=y.device) if x is None else x
            return ad.operator.prox_l2(z, y, tau)
        Aty = ad.At(y)
        if x is None:
            return tau * Aty
        return x - tau * (ad.AtA(x) - Aty)

    def forward(self, y: Tensor) -> Tensor:
        """The nested forward pass ``y -> x_K`` (the same maps as :meth:`lifted_layers`)."""
        self.check_measurement(y)
        act, x = self.activation, None
        for k in range(self.iterations):
            convs = self.cnn(k)
            z = self._data_step(k, x, y)
            h = z
            for conv in convs[:-1]:
                h = act(conv(h))
            x = z + convs[-1](h)
        return x

    def lifted_layers(self, offset: int = 0) -> list[LiftedLayer]:
        """The K * depth lifted layers (see the class docstring); ``offset`` is the measurement state."""
        o, D, act = offset, self.depth, self.activation
        layers = []
        for k in range(self.iterations):
            b = o + D * k  # x_k = b (k >= 1), h_j = b + j, x_{k+1} = b + D
            convs = self.cnn(k)
            layers.append(
                LiftedLayer(_GradIn(self, k), act, inputs=(o,) if k == 0 else (b, o), affine_in_params=False)
            )
            for j in range(2, D):
                layers.append(LiftedLayer(convs[j - 1], act, inputs=(b + j - 1,), affine_in_params=True))
            out_in = (o, b + D - 1) if k == 0 else (b, b + D - 1, o)
            layers.append(LiftedLayer(_GradOut(self, k), Identity(), inputs=out_in, affine_in_params=False))
        return layers


#: architecture name -> class (merged into :data:`liftinv.models.ARCHITECTURES`)
LEARNED_ARCHITECTURES: dict[str, type] = {"lpd": LearnedPrimalDual, "proxgrad-cnn": UnrolledProxGradCNN}
