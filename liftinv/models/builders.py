"""Small network builders shared by the trainers, benchmarks and CLI (ordinary ``torch.nn`` modules).

Activations are given by name: the proximal ones (``relu``, ``leaky_relu``, ``tanh``, ``sigmoid``,
``hardtanh``/``clip``, ``clipped_relu`` = clip to [0, 1], ``soft_threshold``, ``identity``) map to standard
``torch.nn`` modules, so ``lift()`` accepts the result; hard thresholds (``sign``, ``qrelu2`` = 2-bit
staircase) come from :mod:`liftinv.models.hard_threshold` and are trained with FTPROP.
"""

from __future__ import annotations

from torch import nn

from liftinv.models.hard_threshold import Sign, Staircase

__all__ = ["activation_module", "mlp", "convnet", "convnet4", "paper_convnet4", "mlp_bn", "HARD_THRESHOLDS"]


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
        return Sign() if key == "sign" else Staircase(int(key[-1]))
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
