"""Residual and proximal blocks; each describes its own lifted form through ``lifted_layers(offset)``.

:func:`liftinv.lift` asks a block for its layers instead of knowing its type, so the lifted engine imports
no model (Wang & Benning, JMLR 24(232), 2023, Sec. 5; Hasannasab et al., Parseval proximal neural networks,
2020).
"""

from __future__ import annotations

from torch import nn

from liftinv.lifted.activations import Identity, from_module
from liftinv.lifted.network import LiftedBlock, LiftedLayer, LiftingError
from liftinv.models.builders import activation_module

__all__ = ["ResidualBlock", "ConvResidualBlock", "ProximalBlock"]


class _Synthesis(nn.Module):
    """h -> T^T h for a ProximalBlock (a linear map folded into the next layer)."""

    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self, h):
        return self.block.synthesis(h)


class _Analysis(nn.Module):
    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self, x):
        return self.block.analysis(x)


class _ResidualOutput(nn.Module):
    """(x, h) -> x + V h + c, the second lifted layer of a ResidualBlock or ConvResidualBlock."""

    def __init__(self, outer: nn.Module):
        super().__init__()
        self.outer = outer

    def forward(self, x, h):
        return x + self.outer(h)


class ResidualBlock(LiftedBlock):
    """Residual block ``x + V sigma(W x + b)`` (+ ``c``), lifted as two layers by :func:`liftinv.lift`.

    Lifted form (Wang & Benning, JMLR 2023, Sec. 5): a hidden state ``h = sigma(W x + b)`` and the block
    output ``x + V h + c`` with identity activation, whose pre-activation depends on both ``x`` and ``h``.

    Parameters
    ----------
    dim : int
        Width of the block input/output.
    hidden : int, optional
        Width of the inner layer (default ``dim``).
    activation : str
        A proximal activation name.
    """

    def __init__(self, dim: int, hidden: int | None = None, activation: str = "relu"):
        super().__init__()
        hidden = hidden or dim
        self.inner = nn.Linear(dim, hidden)
        self.act = activation_module(activation)
        self.outer = nn.Linear(hidden, dim)

    def forward(self, x):
        return x + self.outer(self.act(self.inner(x)))

    def lifted_layers(self, offset: int) -> list[LiftedLayer]:
        """Hidden state ``h = sigma(W x + b)`` and output ``x + V h + c`` (identity activation)."""
        return [
            LiftedLayer(self.inner, from_module(self.act), inputs=(offset,)),
            LiftedLayer(_ResidualOutput(self.outer), Identity(), inputs=(offset, offset + 1)),
        ]


class ConvResidualBlock(LiftedBlock):
    """Convolutional residual block ``sigma(x + V sigma(W x + b) + c)`` (3 x 3 convolutions), lifted as two layers.

    The basic block of a ResNet (He, Zhang, Ren & Sun, *Deep residual learning for image recognition*, CVPR
    2016) with the activation after the sum. Lifted form (Wang & Benning, JMLR 2023, Sec. 5): a hidden state
    ``h = sigma(W x + b)`` and the block output ``sigma(x + V h + c)``, whose pre-activation is affine in both
    ``x`` (the skip) and ``h``.

    With ``batchnorm=True`` each convolution is followed by a batch norm (``nn.Sequential(conv, bn)``), for
    training; batch norm in eval mode is affine and :func:`liftinv.inversion.recipes.fold_batchnorm` folds it
    into the convolution, after which the block lifts. :meth:`lifted_layers` refuses unfolded batch norms.

    Parameters
    ----------
    channels : int
        Channels of the block input and output.
    hidden : int, optional
        Channels of the inner state (default ``channels``).
    activation : str
        Proximal activation of the inner state and of the output (``"relu"``, ``"leaky_relu"``, ...).
    batchnorm : bool
        Batch norm after each convolution (fold it before lifting).

    Examples
    --------
    >>> import torch
    >>> from liftinv import lift
    >>> block = ConvResidualBlock(4)
    >>> x = torch.rand(2, 4, 8, 8)
    >>> net = lift(block, last="free")
    >>> [layer.inputs for layer in net.layers]
    [(0,), (0, 1)]
    >>> bool(torch.allclose(net.init_states(x)[-1], block(x)))
    True
    """

    def __init__(
        self, channels: int, hidden: int | None = None, activation: str = "relu", batchnorm: bool = False
    ):
        super().__init__()
        hidden = hidden or channels
        self.inner = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1), *([nn.BatchNorm2d(hidden)] if batchnorm else [])
        )
        self.act = activation_module(activation)
        self.outer = nn.Sequential(
            nn.Conv2d(hidden, channels, 3, padding=1), *([nn.BatchNorm2d(channels)] if batchnorm else [])
        )
        self.out_act = activation_module(activation)

    def forward(self, x):
        return self.out_act(x + self.outer(self.act(self.inner(x))))

    def lifted_layers(self, offset: int) -> list[LiftedLayer]:
        """Hidden state ``h = sigma(W x + b)`` and output ``sigma(x + V h + c)``."""
        if any(isinstance(m, nn.BatchNorm2d) for m in self.modules()):
            raise LiftingError(
                "ConvResidualBlock contains BatchNorm2d, which lift() cannot use while it is a separate layer: "
                "fold it into the convolutions first (eval mode)"
            )
        return [
            LiftedLayer(self.inner, from_module(self.act), inputs=(offset,)),
            LiftedLayer(_ResidualOutput(self.outer), from_module(self.out_act), inputs=(offset, offset + 1)),
        ]


class ProximalBlock(LiftedBlock):
    """Proximal neural network layer ``T^T sigma(T x + b)`` with ``T`` having orthonormal columns.

    Hasannasab, Hertrich, Neumayer, Plonka, Setzer & Steidl, *Parseval proximal neural networks*, 2020.
    ``T`` (``hidden x dim``, ``hidden >= dim``) is kept on the Stiefel manifold by
    ``torch.nn.utils.parametrizations.orthogonal``. Lifted with the state ``h = sigma(T x + b)``; the
    linear map ``T^T`` is folded into the next layer.
    """

    def __init__(self, dim: int, hidden: int | None = None, activation: str = "relu"):
        super().__init__()
        hidden = hidden or dim
        if hidden < dim:
            raise ValueError(
                f"ProximalBlock needs hidden >= dim for orthonormal columns, got {hidden} < {dim}"
            )
        self.T = nn.utils.parametrizations.orthogonal(nn.Linear(dim, hidden))
        self.act = activation_module(activation)

    def analysis(self, x):
        return self.T(x)

    def synthesis(self, h):
        return h @ self.T.weight

    def forward(self, x):
        return self.synthesis(self.act(self.analysis(x)))

    def lifted_layers(self, offset: int) -> list:
        """State ``h = sigma(T x + b)``; the synthesis ``T^T h`` is folded into the next layer."""
        return [LiftedLayer(_Analysis(self), from_module(self.act)), _Synthesis(self)]
