"""Reproducible networks to invert (built or trained locally, no downloads) and their test inputs.

Recipes (Wang & Benning, *A lifted Bregman formulation for the inversion of deep neural networks*,
Front. Appl. Math. Stat. 9, 2023, inverts the same two kinds of network):

* :func:`perceptron` -- the one-layer ReLU perceptron ``f = max(W u + b, 0)``, image ``n x n`` ->
  ``features`` outputs, with Gaussian ``W`` of **unit variance** (as P2: scaling by ``1/sqrt(n^2)`` makes
  the bias dominate, so few units are active and every method stays near the all-zero image) and a bias
  ``b ~ N(0, bias_std^2)``, ``bias_std = 1`` by default: small next to ``W u`` (whose entries have standard
  deviation ``||u||``, about 14 for the 64 x 64 Shepp-Logan phantom), so about half of the units are active.
* :func:`autoencoder` -- a small convolutional autoencoder (Conv2d / AvgPool2d / Linear / ConvTranspose2d with
  ReLU, all liftable) trained by back-propagation with Adam on the scikit-learn 8 x 8 digits upsampled to
  16 x 16 (``liftinv.datasets.load_digits(size=16)``). **The network to invert is its encoder** (as in P2): given a (noisy) code ``f = E(u)``, recover the
  image ``u`` with TV. This is an under-determined problem of the same kind as the perceptron
  (256 pixels -> a 32-dimensional code) whose answers can be scored by PSNR/SSIM on images; the decoder
  gives a learned reference reconstruction ``D(f)``. (Inverting the decoder -- recovering a code from an
  image -- is over-determined and insensitive to the regulariser; ``target="decoder"`` builds it too.)
* :func:`unrolled_recipe` -- an unrolled proximal-gradient deblurring network from
  :mod:`liftinv.models`: invert it to recover the blurred
  measurement from the reconstruction.
* larger trained networks (:mod:`liftinv.inversion.networks`, cached after the first build):
  ``"natural-encoder"`` -- the fully convolutional encoder (5 convolutions, 64 x 64 -> 16 x 8 x 8) of an
  autoencoder trained on 64 x 64 natural-image patches (a folder such as Train400 via ``images=``, else
  bundled scikit-image images); ``"autoencoder128"`` -- the encoder of a convolutional autoencoder with a
  128-dimensional ReLU code on 32 x 32 patches; ``"resnet-features"`` -- a ResNet-style digit classifier
  (residual blocks, batch norm folded into the convolutions, average pooling) cut after its second stage
  (1 x 16 x 16 -> 16 x 4 x 4).

:func:`get_recipe` returns an :class:`InversionProblem` (the network, ground-truth test inputs, shapes and
suggested settings); :data:`RECIPES` lists the recipes by name. Test images come from :mod:`liftinv.datasets`:
``shepp_logan(size, source="skimage")`` and ``random_phantoms(n, size, seed=..., kind="mixed")``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from liftinv.datasets import load_digits, random_phantoms
from liftinv.datasets import shepp_logan as _shepp_logan
from liftinv.inversion.networks import (
    _train_adam,
    cached_training,
    fold_batchnorm,
    natural_autoencoder,
    natural_patches,
    resnet,
    resnet_features,
)
from liftinv.metrics import psnr

__all__ = [
    "InversionProblem",
    "perceptron",
    "Autoencoder",
    "autoencoder",
    "is_autoencoder_cache",
    "get_recipe",
    "RECIPES",
    "fold_batchnorm",
    "unrolled_recipe",
]


# ---------------------------------------------------------------------------------------------------------
# (a) the P2 perceptron
# ---------------------------------------------------------------------------------------------------------
def perceptron(
    image_size: int = 64, features: int = 512, seed: int = 0, bias_std: float = 1.0
) -> nn.Sequential:
    """The one-layer ReLU perceptron of P2: ``u -> max(W vec(u) + b, 0)`` with Gaussian weights.

    ``W`` (``features x image_size^2``) has i.i.d. N(0, 1) entries (unit variance, as in P2) and
    ``b ~ N(0, bias_std^2)``, both drawn from a generator seeded with ``seed``. The model takes images
    ``[B, 1, n, n]`` (an ``nn.Flatten`` comes first) and records ``input_shape = (1, n, n)``.

    Parameters
    ----------
    image_size : int
        Side ``n`` of the input image.
    features : int
        Number of outputs.
    seed : int
        Seed of the weights.
    bias_std : float
        Standard deviation of the bias (0 for no bias).

    Returns
    -------
    nn.Sequential
        ``Flatten -> Linear(n^2, features) -> ReLU`` (liftable; parameters do not require grad).

    Examples
    --------
    >>> net = perceptron(16, 64)
    >>> net(torch.rand(2, 1, 16, 16)).shape
    torch.Size([2, 64])
    """
    if image_size < 2 or features < 1:
        raise ValueError(f"perceptron needs image_size >= 2 and features >= 1, got {image_size}, {features}")
    if bias_std < 0:
        raise ValueError(f"bias_std must be >= 0, got {bias_std}")
    g = torch.Generator().manual_seed(int(seed))
    n = image_size * image_size
    lin = nn.Linear(n, features)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(features, n, generator=g))
        lin.bias.copy_(bias_std * torch.randn(features, generator=g))
    net = nn.Sequential(nn.Flatten(), lin, nn.ReLU())
    net.requires_grad_(False)
    net.input_shape = (1, image_size, image_size)
    return net


# ---------------------------------------------------------------------------------------------------------
# (b) convolutional autoencoder
# ---------------------------------------------------------------------------------------------------------
class Autoencoder(nn.Module):
    """Convolutional autoencoder for 1 x 16 x 16 images with a ``code``-dimensional non-negative code.

    Encoder: Conv3x3(1->c) ReLU AvgPool2 -> Conv3x3(c->2c) ReLU AvgPool2 -> Flatten -> Linear(2c*16, code) ReLU.
    Decoder: Linear(code, 2c*16) ReLU -> Unflatten -> ConvT4x4/2(2c->c) ReLU -> ConvT4x4/2(c->1) -> Hardtanh(0, 1).
    Every layer is liftable (average pooling, not max pooling; clip to [0, 1] is proximal).

    Parameters
    ----------
    code : int
        Code dimension.
    channels : int
        Channels of the first convolution (the second has twice as many).

    Examples
    --------
    >>> ae = Autoencoder(code=8, channels=4)
    >>> ae.encoder(torch.rand(2, 1, 16, 16)).shape, ae(torch.rand(2, 1, 16, 16)).shape
    (torch.Size([2, 8]), torch.Size([2, 1, 16, 16]))
    """

    def __init__(self, code: int = 32, channels: int = 8):
        super().__init__()
        c = channels
        self.code, self.channels = code, channels
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Conv2d(c, 2 * c, 3, padding=1),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * c * 16, code),
            nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.Linear(code, 2 * c * 16),
            nn.ReLU(),
            nn.Unflatten(1, (2 * c, 4, 4)),
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1),
            nn.Hardtanh(0.0, 1.0),
        )
        self.encoder.input_shape = (1, 16, 16)
        self.decoder.input_shape = (code,)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


def is_autoencoder_cache(obj: Any) -> bool:
    """Whether ``obj`` (a loaded file) is a cache written by :func:`autoencoder`: a dict with the weights under
    ``"state_dict"`` and the settings (``code``, ``channels``, ...) under ``"config"``."""
    cfg = obj.get("config") if isinstance(obj, dict) else None
    return (
        isinstance(cfg, dict) and {"code", "channels"} <= set(cfg) and isinstance(obj.get("state_dict"), dict)
    )


def autoencoder(
    seed: int = 0,
    code: int = 32,
    channels: int = 8,
    epochs: int = 60,
    lr: float = 3e-3,
    n_train: int = 1500,
    path: str | os.PathLike | None = None,
    progress: bool = False,
    device: str | torch.device | None = "cpu",
) -> Autoencoder:
    """Train (or load) the convolutional autoencoder on 16 x 16 digits by back-propagation with Adam.

    Training: the first ``n_train`` of the 1,797 digits upsampled to 16 x 16 (``load_digits(size=16)``), MSE loss
    ``1/2 ||D(E(u)) - u||^2``, Adam (``lr``), mini-batches of 64, ``epochs`` epochs, seeded with ``seed``
    (about 20-40 s on one CPU core at the defaults). The remaining digits are the held-out test images.

    Parameters
    ----------
    seed : int
        Seed of the initialisation and the mini-batch order.
    code : int
        Code dimension (the encoder's output size).
    channels : int
        Channels of the first convolution.
    epochs, lr, n_train : int, float, int
        Training settings.
    path : path, optional
        Cache file, or a folder (the file ``autoencoder-<digest of every setting>.pt`` in it). A cache holds
        weights + plain configuration, read with ``weights_only=True``; it is loaded when it matches
        the settings, replaced (atomically) when it is an autoencoder cache of other settings; any other
        existing file is left untouched (``ValueError``), so a wrong path never destroys a file.
    progress : bool
        Show the training progress bar.
    device : str or torch.device
        Training device; the returned model is on the CPU.

    Returns
    -------
    Autoencoder
        Trained, in eval mode, parameters frozen; ``.encoder`` and ``.decoder`` carry ``input_shape`` and
        ``.train_info`` holds ``{"test_psnr", "train_time", "epochs", ...}``.
    """
    from liftinv.training import seed_everything

    config = {
        "seed": int(seed),
        "code": int(code),
        "channels": int(channels),
        "epochs": int(epochs),
        "lr": float(lr),
        "n_train": int(n_train),
        "version": 1,
    }

    def train() -> tuple[Autoencoder, dict[str, Any]]:
        X, _ = load_digits(size=16)
        if not 0 < n_train < X.shape[0]:
            raise ValueError(f"n_train must be in (0, {X.shape[0]}), got {n_train}")
        seed_everything(seed)
        ae = Autoencoder(code, channels)
        t0 = time.perf_counter()
        _train_adam(ae, (X[:n_train], X[:n_train]), "mse", seed, epochs, lr, device, progress)
        train_time = time.perf_counter() - t0
        with torch.no_grad():
            Xt = X[n_train:]
            test_psnr = float(psnr(ae(Xt), Xt).mean())
        return ae, {"test_psnr": test_psnr, "train_time": train_time}

    return cached_training(
        path, config, "autoencoder", lambda: Autoencoder(code, channels), train, is_autoencoder_cache
    )


# ---------------------------------------------------------------------------------------------------------
# (c) unrolled network (optional)
# ---------------------------------------------------------------------------------------------------------
def unrolled_recipe(
    image_size: int = 16, iterations: int = 3, sigma: float = 1.0, seed: int = 0, **kwargs: Any
) -> nn.Module:
    """An unrolled proximal-gradient deblurring network (:class:`liftinv.models.UnrolledProxGrad`).

    Built with the unrolled-networks module (another part of liftinv) for a Gaussian blur of width
    ``sigma`` on ``image_size x image_size`` images, ``iterations`` unrolled iterations, at its seeded
    initialisation (``kwargs`` go to the constructor). Its input is the blurred image ``y``, its output a
    reconstruction; inverting it recovers the measurement from the reconstruction. Every iteration is a
    lifted layer (``lifted_layers``), and ``y`` feeds every layer.
    """
    from liftinv.models import UnrolledProxGrad
    from liftinv.operators import Blur

    torch.manual_seed(int(seed))
    net = UnrolledProxGrad(Blur(image_size, sigma=sigma), iterations=iterations, **kwargs)
    net.requires_grad_(False)
    net.input_shape = (1, image_size, image_size)
    return net


# ---------------------------------------------------------------------------------------------------------
# problems and the registry
# ---------------------------------------------------------------------------------------------------------
@dataclass
class InversionProblem:
    """A network to invert with ground-truth test inputs and suggested settings.

    Attributes
    ----------
    name : str
    model : nn.Module
        The network ``N`` to invert (frozen).
    inputs : Tensor
        Ground-truth test inputs ``[K, *input_shape]`` (values in [0, 1]).
    input_shape : tuple of int
    regulariser : str or None
        Suggested regulariser (``"tv"``).
    alpha : float
        Suggested regularisation weight for moderate noise (see the benchmark for per-noise choices).
    box : (lo, hi) or None
    extras : dict
        E.g. the full autoencoder and its decoder (a learned reference inverse).
    """

    name: str
    model: nn.Module
    inputs: Tensor
    input_shape: tuple[int, ...]
    regulariser: str | None = "tv"
    alpha: float = 1.0
    box: tuple[float, float] | None = (0.0, 1.0)
    extras: dict[str, Any] = field(default_factory=dict)


def _perceptron_problem(
    image_size: int = 64,
    features: int = 512,
    seed: int = 0,
    n_images: int = 2,
    split: str = "test",
    **_: Any,
) -> InversionProblem:
    net = perceptron(image_size, features, seed)
    _check_split(split)
    if split == "validation":  # phantoms from another seed, disjoint from the test images
        imgs = [random_phantoms(n_images, image_size, seed=seed + 101, kind="mixed")]
    else:
        imgs = [_shepp_logan(image_size, source="skimage")]
        if n_images > 1:
            imgs.append(random_phantoms(n_images - 1, image_size, seed=seed + 1, kind="mixed"))
    return InversionProblem(
        "perceptron",
        net,
        torch.cat(imgs)[:n_images],
        (1, image_size, image_size),
        "tv",
        10.0 * (image_size / 64) ** 2,
    )


def _autoencoder_problem(
    seed: int = 0,
    n_images: int = 4,
    path: str | os.PathLike | None = None,
    target: str = "encoder",
    epochs: int = 60,
    split: str = "test",
    **kw: Any,
) -> InversionProblem:
    _check_split(split)
    ae = autoencoder(seed=seed, path=path, epochs=epochs, **kw)
    X, _ = load_digits(size=16)
    imgs = X[_digit_split(X.shape[0], ae.train_info.get("n_train", 1500), n_images, split)]
    if target == "encoder":
        return InversionProblem(
            "autoencoder",
            ae.encoder,
            imgs,
            (1, 16, 16),
            "tv",
            0.1,
            extras={"autoencoder": ae, "decoder": ae.decoder},
        )
    if target == "decoder":
        with torch.no_grad():
            codes = ae.encoder(imgs)
        return InversionProblem(
            "autoencoder-decoder",
            ae.decoder,
            codes,
            (ae.code,),
            "tikhonov",
            1e-3,
            box=None,
            extras={"autoencoder": ae, "images": imgs},
        )
    raise ValueError(f"target must be 'encoder' or 'decoder', got {target!r}")


def _digit_split(n_digits: int, n_train: int, n_images: int, split: str) -> Tensor:
    """Indices of the held-out digits ``n_train..`` used as test (evenly spread) or validation (half-way
    between the test ones, disjoint from them) inputs."""
    _check_split(split)
    held_out = n_digits - n_train
    if split == "validation":
        idx = torch.linspace(0, held_out - 1, 2 * n_images + 1)[1::2].round().long()[:n_images] + 1
    else:
        idx = torch.linspace(0, held_out - 1, n_images).round().long()
    return n_train + idx


def _natural_problem(
    name: str,
    image_size: int,
    code: int | None,
    training: dict[str, Any],
    alpha: float,
    seed: int = 0,
    n_images: int = 4,
    path: str | os.PathLike | None = None,
    images: str | os.PathLike | None = None,
    split: str = "test",
    **kw: Any,
) -> InversionProblem:
    _check_split(split)
    kw = {**training, **kw}  # the recipe's training settings, overridable
    ae = natural_autoencoder(image_size, code=code, seed=seed, images=images, path=path, **kw)
    x, source = natural_patches(split, image_size, n_images, images)
    return InversionProblem(
        name,
        ae.encoder,
        x,
        (1, image_size, image_size),
        "tv",
        alpha,
        extras={"autoencoder": ae, "decoder": ae.decoder, "source": source},
    )


def _natural_encoder_problem(**kw: Any) -> InversionProblem:
    return _natural_problem("natural-encoder", 64, None, {"n_train": 4096, "epochs": 8}, 3e-3, **kw)


def _autoencoder128_problem(**kw: Any) -> InversionProblem:
    return _natural_problem("autoencoder128", 32, 128, {"n_train": 8192, "epochs": 15}, 3e-3, **kw)


def _resnet_problem(
    seed: int = 0,
    n_images: int = 6,
    path: str | os.PathLike | None = None,
    stage: str = "pool2",
    split: str = "test",
    **kw: Any,
) -> InversionProblem:
    _check_split(split)
    net = resnet(seed=seed, path=path, **kw)
    X, _ = load_digits(size=16)
    idx = _digit_split(X.shape[0], net.train_info.get("n_train", 1500), n_images, split)
    return InversionProblem(
        "resnet-features",
        resnet_features(net, stage),
        X[idx],
        (1, 16, 16),
        "tv",
        1e-3,
        extras={"classifier": net, "stage": stage},
    )


def _unrolled_problem(image_size: int = 16, seed: int = 0, n_images: int = 2, **kw: Any) -> InversionProblem:
    net = unrolled_recipe(image_size=image_size, seed=seed, **kw)
    x = random_phantoms(n_images, image_size, seed=seed + 1, kind="mixed")
    from liftinv.operators import Blur

    with torch.no_grad():
        y = Blur(image_size, sigma=kw.get("sigma", 1.0))(x)
    return InversionProblem(
        "unrolled", net, y.clamp(0, 1), (1, image_size, image_size), "tv", 1e-3, extras={"images": x}
    )


#: output splits of the recipes: "validation" (choose alpha and the defaults) and "test" (report once)
SPLITS = ("validation", "test")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


#: recipe name -> builder of an :class:`InversionProblem` ("unrolled" needs liftinv.models)
RECIPES: dict[str, Callable[..., InversionProblem]] = {
    "perceptron": _perceptron_problem,
    "autoencoder": _autoencoder_problem,
    "unrolled": _unrolled_problem,
    "natural-encoder": _natural_encoder_problem,
    "autoencoder128": _autoencoder128_problem,
    "resnet-features": _resnet_problem,
}


def get_recipe(name: str, **kwargs: Any) -> InversionProblem:
    """Build the :class:`InversionProblem` of a recipe by name (a key of :data:`RECIPES`).

    Parameters
    ----------
    name : str
        ``"perceptron"``, ``"autoencoder"``, ``"unrolled"``, ``"natural-encoder"``, ``"autoencoder128"`` or
        ``"resnet-features"``.
    **kwargs
        Recipe options: every recipe but unrolled takes ``split`` (``"test"`` or ``"validation"``: disjoint
        inputs, for choosing settings) and ``n_images``; perceptron ``image_size``, ``features``, ``seed``;
        autoencoder ``seed``, ``path`` (cache file), ``target`` (``"encoder"``/``"decoder"``), ``epochs``;
        natural-encoder / autoencoder128 ``seed``, ``path`` (cache file or folder), ``images`` (training
        folder; None: bundled images), ``n_train``, ``epochs``; resnet-features ``seed``, ``path``,
        ``stage``, ``epochs``; unrolled ``image_size``, ``iterations``, ``sigma``, ``seed``.

    See Also
    --------
    liftinv.inversion.networks : the trained networks and their caches.

    Examples
    --------
    >>> prob = get_recipe("perceptron", image_size=16, features=64)
    >>> prob.model(prob.inputs).shape
    torch.Size([2, 64])
    """
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; available: {', '.join(sorted(RECIPES))}")
    return RECIPES[name](**kwargs)
