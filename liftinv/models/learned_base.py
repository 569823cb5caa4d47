"""Shared base of the learned unrolled networks (:mod:`liftinv.models.learned`): the operator at any image
size, the normalised operator ``A / ||A||``, the initial iterate, geometry errors, the Lipschitz constants of
the lifted state maps, and the CNN helpers.

Fully convolutional: for shift-invariant operators (blur, inpainting, denoising) a network built at 32x32
reconstructs any size (the operator is rebuilt from its ``describe()``, cached per size, with the build
size's ``||A||``); for tomography another geometry raises a ``ValueError`` naming both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liftinv.lifted.network import lift
from liftinv.lifted.norms import state_map_norms
from liftinv.models.operator_adapter import OperatorAdapter, OperatorNetwork

__all__ = ["LEARNED_INITS"]

#: initial primal iterate / image of the learned networks, all linear in y: 0, A^T y (normalised operator),
#: A^dagger y (FBP for tomography), Tikhonov (A^T A + a I)^{-1} A^T y or gradient-regularised
#: (A^T A + a grad^T grad)^{-1} A^T y, with a = init_alpha ||A||^2
LEARNED_INITS = ("zero", "adjoint", "fbp", "tikhonov", "smooth")

#: operators whose measurements are images of the same size, rebuilt at any size from ``describe()``
_RESIZABLE = ("blur", "inpainting", "denoising")


def _check_int(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def _init_cnn(convs, generator: torch.Generator, last_gain: float) -> None:
    """Xavier-uniform filters (the last conv's with gain ``last_gain``) and zero biases, as the LPD code."""
    with torch.no_grad():
        for i, conv in enumerate(convs):
            gain = last_gain if i == len(convs) - 1 else 1.0
            nn.init.xavier_uniform_(conv.weight, gain=gain, generator=generator)
            conv.bias.zero_()


def _check_dilations(dilations, depth: int) -> tuple[int, ...]:
    """``dilations``: None (all 1) or one int >= 1 per conv of a ``depth``-conv CNN."""
    if dilations is None:
        return (1,) * depth
    if isinstance(dilations, str | bytes) or not isinstance(dilations, Sequence) or len(dilations) != depth:
        raise ValueError(
            f"dilations must be a sequence of {depth} ints >= 1 (one per conv), got {dilations!r}"
        )
    return tuple(_check_int(f"dilations[{i}]", d) for i, d in enumerate(dilations))


def _check_number(name: str, value, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value < math.inf:
        raise ValueError(f"{name} must be a finite number >= {low}, got {value!r}")
    return float(value)


def _cnn(
    channels: list[int],
    kernel_size: int,
    generator: torch.Generator,
    last_gain: float,
    dilations: Sequence[int] | None = None,
) -> nn.ModuleList:
    """Convs ``channels[0] -> channels[1] -> ...`` with zero "same" padding (``dilations``: one per conv,
    default 1), initialised by :func:`_init_cnn`."""
    pairs = list(zip(channels[:-1], channels[1:]))
    dilations = [1] * len(pairs) if dilations is None else list(dilations)
    convs = nn.ModuleList(
        nn.Conv2d(cin, cout, kernel_size, padding=d * (kernel_size // 2), dilation=d)
        for (cin, cout), d in zip(pairs, dilations, strict=True)
    )
    _init_cnn(convs, generator, last_gain)
    return convs


def _partial_conv(conv: nn.Conv2d, h: Tensor, channels: int) -> Tensor:
    """The first ``channels`` output channels of ``conv(h)`` (only those are computed)."""
    return F.conv2d(
        h, conv.weight[:channels], conv.bias[:channels], padding=conv.padding, dilation=conv.dilation
    )


# -- shared base: operator, other image sizes, geometry errors, Lipschitz constants of the state maps
class _LearnedUnrolled(OperatorNetwork):
    arch = "learned"

    def __init__(
        self, operator, iterations: int, init: str, image_size, dense, seed: int, init_alpha: float = 0.01
    ):
        super().__init__()
        self.iterations = _check_int("iterations", iterations)
        if init not in LEARNED_INITS:
            raise ValueError(f"init must be one of {', '.join(LEARNED_INITS)}, got {init!r}")
        self.init_alpha = _check_number("init_alpha", init_alpha)
        if self.init_alpha == 0 and init in ("tikhonov", "smooth"):
            raise ValueError(f"init_alpha must be > 0 for init={init!r}, got {init_alpha!r}")
        self.init, self.seed = init, _check_int("seed", seed, 0)
        self.op = OperatorAdapter(operator, image_size=image_size, dense=dense)
        self.image_size = self.op.image_size
        self._config: dict[str, Any] = {}
        self._adapters: dict[tuple[int, int], OperatorAdapter] = {}  # the operator at other image sizes
        self._lipschitz: tuple | None = None  # (lifted network, state shapes, power-iteration cache)
        self._scale: float | None = None

    # -- description ----------------------------------------------------------------------------------------
    @property
    def resizable(self) -> bool:
        """Whether the network applies to measurements of any size (blur, inpainting, denoising)."""
        return (
            getattr(self.operator, "name", None) in _RESIZABLE
            and hasattr(self.operator, "describe")
            and tuple(self.measurement_size) == tuple(self.image_size)
        )

    @property
    def op_scale(self) -> float:
        """``1 / ||A||`` at the build size: the networks use ``A / ||A||`` and ``y / ||A||``."""
        if self._scale is None:
            self._scale = 1.0 / math.sqrt(max(self.op.norm_sq, 1e-24))
        return self._scale

    def _geometry(self) -> str:
        return (
            f"{self.op.describe_operator()}; images {list(self.image_size)}, measurements "
            f"{list(self.measurement_size)}"
        )

    def check_measurement(self, y: Tensor) -> None:
        """Raise ``ValueError`` unless ``y`` is a batch of measurements of the build size (any image size with
        the right channels for :attr:`resizable` operators); for tomography the message names both geometries."""
        if not isinstance(y, Tensor):
            raise TypeError(f"y must be a torch.Tensor of measurements, got {type(y).__name__}")
        ms = tuple(self.measurement_size)
        if y.dim() == len(ms) + 1 and tuple(y.shape[1:]) == ms:
            return
        if self.resizable and y.dim() == 4 and y.shape[1] == ms[0] and min(y.shape[2:]) >= 1:
            return
        if self.resizable:
            raise ValueError(
                f"y of shape {list(y.shape)} is not a batch of {ms[0]}-channel images [B, {ms[0]}, H, W] "
                f"(this {type(self).__name__} reconstructs any image size for {self._geometry()})"
            )
        tomo = getattr(self.operator, "name", None) == "tomography" and y.dim() == 4
        extra = f" ({y.shape[-2]} detectors x {y.shape[-1]} angles)" if tomo else ""
        raise ValueError(
            f"this {type(self).__name__} was built for the geometry {self._geometry()}; got measurements of "
            f"shape {list(y.shape)}{extra}, another geometry. Its dual CNNs act on sinograms ([channels, "
            "detectors, angles]) of one geometry: build and train a network for the new geometry"
        )

    def _rebuild(self, spatial: tuple[int, int]) -> OperatorAdapter:
        """The operator at image size ``spatial`` (from its description), on the network's device/dtype."""
        from liftinv.operators import make_operator

        size = [self.image_size[0], *spatial]
        desc = {**dict(self.operator.describe()), "image_size": size}
        try:
            operator = make_operator(**desc)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"cannot rebuild the operator ({self.op.describe_operator()}) for images of size {size}: {exc}"
            ) from None
        p = next(self.parameters())
        return OperatorAdapter(operator, dense=False).to(p.device, p.dtype)

    def adapter(self, spatial) -> OperatorAdapter:
        """The operator for images of size ``(H, W)``: the build one, or one rebuilt (``ValueError`` for
        another size when the operator is not shift-invariant)."""
        spatial = tuple(int(s) for s in spatial)
        if spatial == tuple(self.image_size[1:]):
            return self.op
        if not self.resizable:
            raise ValueError(
                f"this {type(self).__name__} was built for the geometry {self._geometry()}; images of size "
                f"{list(spatial)} need another geometry: build and train a network for it"
            )
        ad = self._adapters.get(spatial)
        if ad is None:
            ad = self._adapters[spatial] = self._rebuild(spatial)
        return ad

    def _adapter_for_measurement(self, spatial) -> OperatorAdapter:
        spatial = tuple(int(s) for s in spatial)
        if spatial == tuple(self.measurement_size[1:]):
            return self.op
        return self.adapter(spatial)  # resizable operators: measurements are images of the same size

    def _apply(self, fn, *args, **kwargs):  # device / dtype change: rebuilt operators and caches are stale
        self._adapters = {}
        self._lipschitz = None
        return super()._apply(fn, *args, **kwargs)

    # -- normalised operator ---------------------------------------------------------------------------
    def _A(self, x: Tensor) -> Tensor:
        """``A_n x = A x / ||A||`` (at the size of ``x``)."""
        return self.adapter(x.shape[-2:]).A(x) * self.op_scale

    def _At(self, d: Tensor) -> Tensor:
        """``A_n^T d = A^T d / ||A||`` (at the size of ``d``)."""
        return self._adapter_for_measurement(d.shape[-2:]).At(d) * self.op_scale

    def _x0(self, y: Tensor) -> Tensor | None:
        """The initial image, linear in y (:data:`LEARNED_INITS`): None for 0, ``A_n^T y_n = A^T y / ||A||^2``,
        ``A^dagger y``, ``(A^T A + a I)^{-1} A^T y`` or ``(A^T A + a grad^T grad)^{-1} A^T y`` with
        ``a = init_alpha ||A||^2`` (``||A||`` at the build size, so the same map at every image size)."""
        if self.init == "zero":
            return None
        ad = self._adapter_for_measurement(y.shape[-2:])
        if self.init == "adjoint":
            return ad.At(y) * self.op_scale**2
        if self.init == "fbp":
            return ad.dagger(y)
        alpha = self.init_alpha / self.op_scale**2
        return ad.tikhonov(y, alpha) if self.init == "tikhonov" else ad.smooth(y, alpha)

    @torch.no_grad()
    def initial_image(self, y: Tensor) -> Tensor:
        """The image the network starts from (``init``; zeros for ``"zero"``), at the size of ``y``.

        Examples
        --------
        >>> from liftinv.models import UnrolledProxGradCNN
        >>> from liftinv.operators import make_operator
        >>> net = UnrolledProxGradCNN(make_operator("inpainting", 16), iterations=1, depth=2, width=4,
        ...                           init="smooth")
        >>> net.initial_image(torch.rand(1, 1, 20, 20)).shape
        torch.Size([1, 1, 20, 20])
        """
        self.check_measurement(y)
        x0 = self._x0(y)
        if x0 is None:
            size = self._adapter_for_measurement(y.shape[-2:]).image_size
            return torch.zeros(y.shape[0], *size, dtype=y.dtype, device=y.device)
        return x0

    # -- API shared with the convex-prior networks ----------------------------------------------------------
    def with_operator(self, operator, image_size=None):
        """The same network (configuration, a copy of the weights) for another operator: any size for
        shift-invariant operators; for tomography only the same geometry (``ValueError`` naming both)."""
        if not self.resizable and hasattr(operator, "describe") and hasattr(self.operator, "describe"):
            mine, other = dict(self.operator.describe()), dict(operator.describe())
            if mine != other:
                raise ValueError(
                    f"this {type(self).__name__} was built for the geometry {mine}; the requested operator has "
                    f"the geometry {other}. Its dual CNNs act on sinograms of one geometry: build and train a "
                    "network for the new geometry"
                )
        return self._copy_for(operator, image_size)

    def state_map_norms(self, warm_iters: int = 3, layers=None, cache=None) -> dict[tuple[int, int], float]:
        """``{(m, k): 1.05 ||K_{m,k}||^2}``: ``K_{m,k}`` the linear part of lifted layer m in hidden state k.

        (Filters, ``A_n``, ``A_n^T``, identity skips.) Estimated at the build size by
        :func:`liftinv.lifted.norms.state_map_norms` (power iteration: 12 steps cold, then ``warm_iters``
        warm-started steps per call; private seeded random starts; ``cache``: a dict of warm starts, default
        the network's own). The lifted trainers take the state step of state k from
        ``sum_m lambda_m ||K_{m,k}||^2`` (:mod:`liftinv.training.unrolled`).
        """
        if self._lipschitz is None:
            net = lift(self, last="fixed", lambdas=1.0)
            p = next(self.parameters())
            y0 = torch.zeros(1, *self.measurement_size, device=p.device, dtype=p.dtype)
            with torch.no_grad():
                shapes = [s.shape[1:] for s in net.forward_states(y0)]
            self._lipschitz = (net, shapes, {})
        net, shapes, own = self._lipschitz
        cache = own if cache is None else cache
        return state_map_norms(net, shapes, cache, layers=layers, warm_iters=warm_iters, seed=self.seed)

    def state_lipschitz(self, k: int) -> float:
        """``sum_m ||K_{m,k}||^2`` over the layers m reading hidden state k (``1 <= k < len(lifted_layers(0))``),
        from :meth:`state_map_norms`: the Lipschitz constant of the state gradient when every lambda is 1."""
        depth = len(self.lifted_layers(0))
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < depth:
            raise ValueError(f"k must be a hidden state index in 1..{depth - 1}, got {k!r}")
        readers = [m for m, layer in enumerate(self.lifted_layers(0), start=1) if k in layer.inputs]
        return sum(v for (m, j), v in self.state_map_norms(layers=readers).items() if j == k)
