"""Small network builders shared by the trainers, benchmarks and CLI (ordinary ``torch.nn`` modules).

Activations are given by name: the proximal ones (``relu``, ``leaky_relu``, ``tanh``, ``sigmoid``,
``hardtanh``/``clip``, ``clipped_relu`` = clip to [0, 1], ``soft_threshold``, ``identity``) map to standard
``torch.nn`` modules, so ``lift()`` accepts the result; hard thresholds (``sign``, ``qrelu2`` = 2-bit
staircase) come from :mod:`liftinv.ftprop` and are trained with FTPROP.
"""

from __future__ import annotations

import importlib

from torch import nn

__all__ = ["activation_module", "mlp", "convnet", "HARD_THRESHOLDS"]

#: names of hard-threshold activations (trained by FTPROP / STE, not by lifted methods)
HARD_THRESHOLDS = ("sign", "qrelu1", "qrelu2", "qrelu3", "qrelu4")


def activation_module(name: str) -> nn.Module:
    """A fresh ``nn.Module`` for an activation name (see the module docstring for the names)."""
    key = name.lower().replace("-", "_")
    simple = {
        "relu": nn.ReLU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "identity": nn.Identity,
        "hardtanh": nn.Hardtanh,
        "clip": nn.Hardtanh,
        "leaky_relu": lambda: nn.LeakyReLU(0.1),
        "clipped_relu": lambda: nn.Hardtanh(0.0, 1.0),
        "soft_threshold": lambda: nn.Softshrink(0.1),
    }
    if key in simple:
        return simple[key]()
    if key in HARD_THRESHOLDS:
        ftprop = importlib.import_module("liftinv.ftprop")
        return ftprop.Sign() if key == "sign" else ftprop.Staircase(int(key[-1]))
    raise ValueError(
        f"unknown activation {name!r}; expected one of {', '.join(list(simple) + list(HARD_THRESHOLDS))}"
    )


def mlp(sizes: list[int] | tuple[int, ...], activation: str = "relu", flatten: bool = True) -> nn.Sequential:
    """Multi-layer perceptron ``Linear -> act -> ... -> Linear`` (no activation after the last layer).

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first, e.g. ``(64, 128, 128, 10)``.
    activation : str
        Hidden activation name.
    flatten : bool
        Start with ``nn.Flatten()`` so image tensors ``[N, C, H, W]`` can be fed directly.
    """
    if len(sizes) < 2 or any(int(s) <= 0 for s in sizes):
        raise ValueError(f"sizes must list at least two positive widths, got {sizes}")
    layers: list[nn.Module] = [nn.Flatten()] if flatten else []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(int(sizes[i]), int(sizes[i + 1])))
        if i < len(sizes) - 2:
            layers.append(activation_module(activation))
    return nn.Sequential(*layers)


def convnet(
    in_channels: int = 1,
    n_classes: int = 10,
    image_size: int = 8,
    widths: tuple[int, ...] = (16, 32),
    activation: str = "relu",
    hidden: int = 64,
) -> nn.Sequential:
    """Convolutional classifier: [Conv3x3 -> act -> AvgPool2] per width, then Linear -> act -> Linear.

    Average pooling (not max pooling) keeps every map linear between activations, so ``lift()`` folds
    each pooling into the next linear map.
    """
    layers: list[nn.Module] = []
    c, s = in_channels, image_size
    for w in widths:
        layers += [nn.Conv2d(c, w, 3, padding=1), activation_module(activation), nn.AvgPool2d(2)]
        c, s = w, s // 2
        if s < 1:
            raise ValueError(f"image_size={image_size} is too small for {len(widths)} pooling stages")
    layers += [
        nn.Flatten(),
        nn.Linear(c * s * s, hidden),
        activation_module(activation),
        nn.Linear(hidden, n_classes),
    ]
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
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


class ProximalBlock(nn.Module):
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
