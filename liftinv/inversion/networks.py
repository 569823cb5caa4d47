"""Trained networks to invert, built offline from fixed seeds and cached as weights + plain configuration.

The larger recipes of :mod:`liftinv.inversion.recipes` (issue: inverting the networks people want to invert):

* :class:`ConvAutoencoder` -- a convolutional autoencoder on natural-image patches: strided 4 x 4
  convolutions with ReLU, either fully convolutional (the code is a feature map) or ending in a linear
  layer with a ``code``-dimensional ReLU code. :func:`natural_autoencoder` trains it on random patches of a
  folder of images (e.g. Train400) or, without one, of bundled scikit-image images.
* :func:`resnet` -- a small ResNet-style digit classifier (:class:`~liftinv.models.ConvResidualBlock` with
  batch norm, average pooling) trained on the scikit-learn digits; :func:`resnet_features` folds its batch
  norms into the convolutions (eval mode) and cuts it at an intermediate stage, the feature map to invert.

Every layer is liftable (convolutions and linear maps followed by ReLU, average pooling, residual blocks),
so :func:`liftinv.inversion.invert` applies with ``method="lifted"``. Training uses
:func:`liftinv.training.fit` (back-propagation, Adam) seeded with ``seed``; the same settings give the same
weights on the same machine. :func:`cached_training` stores the result with ``weights_only``-safe
contents and reloads it when the settings match.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from liftinv.files import load_torch_file, save_torch_file

__all__ = [
    "ConvAutoencoder",
    "natural_autoencoder",
    "natural_patches",
    "NATURAL_SPLITS",
    "resnet",
    "resnet_features",
    "cached_training",
    "fold_batchnorm",
]

#: bundled scikit-image images of each split when no image folder is given (disjoint)
NATURAL_SPLITS: dict[str, tuple[str, ...]] = {
    "train": (
        "astronaut",
        "brick",
        "cat",
        "clock",
        "grass",
        "gravel",
        "hubble_deep_field",
        "immunohistochemistry",
        "retina",
        "rocket",
        "page",
        "text",
    ),
    "validation": ("chelsea", "coffee"),
    "test": ("camera", "moon", "coins"),
}
#: images held out at the end of a sorted folder (validation, then test)
_FOLDER_HELD_OUT = 20


def cached_training(
    path: str | os.PathLike | None,
    config: dict[str, Any],
    stem: str,
    build: Callable[[], nn.Module],
    train: Callable[[], tuple[nn.Module, dict[str, Any]]],
    is_cache: Callable[[Any], bool] | None = None,
) -> nn.Module:
    """Load a trained network from its cache, or train and cache it.

    A cache file holds ``{"config": config, "state_dict": ..., "train_info": ...}`` (plain types and
    tensors, read with ``weights_only=True``). It is used when its ``config`` equals ``config``, replaced
    atomically when it is a cache of this kind with other settings, and any other existing file is left
    untouched (``ValueError``), so a wrong path never destroys a file.

    Parameters
    ----------
    path : path or None
        Cache file, or a folder (then the file ``<stem>-<digest of config>.pt`` in it), or None (no cache).
    config : dict
        Every setting that changes the weights (plain JSON types).
    stem : str
        Name of the network kind (file name stem and error messages).
    build : callable
        ``build()`` returns the untrained architecture the cached weights are loaded into.
    train : callable
        ``train()`` builds and trains the network and returns it with its ``train_info`` (plain types).
    is_cache : callable, optional
        Whether a loaded file is a cache of this kind. Default: its ``config["recipe"]`` equals ``stem``
        (callers put ``"recipe": stem`` in ``config``).

    Returns
    -------
    nn.Module
        In eval mode, parameters frozen, with ``.train_info``.
    """
    if is_cache is None:

        def is_cache(obj: Any) -> bool:
            cfg = obj.get("config") if isinstance(obj, dict) else None
            return (
                isinstance(cfg, dict)
                and cfg.get("recipe") == stem
                and isinstance(obj.get("state_dict"), dict)
            )

    if path is not None and Path(path).is_dir():
        digest = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
        path = Path(path) / f"{stem}-{digest}.pt"
    if path is not None and Path(path).exists():
        ck = load_torch_file(path, f"{stem} cache")
        if not is_cache(ck):
            article = "an" if stem[0] in "aeiou" else "a"
            raise ValueError(
                f"{stem} cache {str(path)!r} exists and is not {article} {stem} cache; it is left untouched: "
                "give another path"
            )
        if ck.get("config") == config:
            model = build()
            model.load_state_dict(ck["state_dict"])
            model.train_info = ck.get("train_info", {})
            return model.eval().requires_grad_(False)
    model, info = train()
    model = model.cpu().eval().requires_grad_(False)
    model.train_info = {**info, **config}
    if path is not None:  # a missing file or a cache of this kind with other settings (replaced atomically)
        payload = {"config": config, "state_dict": model.state_dict(), "train_info": model.train_info}
        save_torch_file(payload, path)
    return model


# ---------------------------------------------------------------------------------------------------------
# natural-image patches
# ---------------------------------------------------------------------------------------------------------
def _train_adam(
    model: nn.Module, data, loss: str, seed: int, epochs: int, lr: float, device, progress
) -> None:
    """Back-propagation with Adam, batches of 64, seeded; leaves the model on the CPU in eval mode."""
    from liftinv.training import fit, seed_everything

    seed_everything(seed)
    fit(
        model,
        data,
        method="backprop-adam",
        loss=loss,
        epochs=epochs,
        lr=lr,
        batch_size=64,
        seed=seed,
        device=device,
        progress=progress,
    )
    model.cpu().eval()


def natural_patches(
    split: str,
    size: int,
    n: int,
    images: str | os.PathLike | None = None,
    seed: int = 0,
    augment: bool = False,
) -> tuple[Tensor, str]:
    """Grayscale patches ``[n, 1, size, size]`` in [0, 1] of one split of a folder or of bundled images.

    With ``images`` (a folder, e.g. ``../shared/data/Train400``) the sorted image files are split into
    training (all but the last 40), validation (the next 20) and test (the last 20) images, read at native
    size. Without it the bundled scikit-image images of :data:`NATURAL_SPLITS` are used, each loaded as a
    256 x 256 centre crop. Training patches are random (``seed``; ``augment`` adds flips and 90-degree
    rotations); validation and test patches are spread evenly over their images, so they are the same for
    every seed.

    Parameters
    ----------
    split : {"train", "validation", "test"}
    size : int
        Patch side.
    n : int
        Number of patches.
    images : path, optional
        Image folder; None: the bundled images.
    seed : int
        Seed of the training patches.
    augment : bool
        Random flips and rotations of the training patches.

    Returns
    -------
    (Tensor, str)
        The patches and their source in words.
    """
    from liftinv.datasets import extract_patches, list_images, load_image

    if split not in NATURAL_SPLITS:
        raise ValueError(f"split must be one of {tuple(NATURAL_SPLITS)}, got {split!r}")
    if images is not None:
        files = list_images(images, recursive=False)
        if len(files) <= 2 * _FOLDER_HELD_OUT:
            raise ValueError(
                f"images: the folder {str(images)!r} has {len(files)} image files; more than "
                f"{2 * _FOLDER_HELD_OUT} are needed (the last {2 * _FOLDER_HELD_OUT} are held out)"
            )
        parts = {
            "train": files[: -2 * _FOLDER_HELD_OUT],
            "validation": files[-2 * _FOLDER_HELD_OUT : -_FOLDER_HELD_OUT],
            "test": files[-_FOLDER_HELD_OUT:],
        }
        chosen = parts[split]
        imgs = [load_image(p)[0] for p in chosen]
        source = f"folder {Path(images).name} ({split}: {len(chosen)} images)"
    else:
        chosen = NATURAL_SPLITS[split]
        imgs = [load_image(name, size=256)[0] for name in chosen]
        source = f"bundled images {', '.join(chosen)}"
    if split == "train":
        return extract_patches(imgs, size, n=n, seed=seed, augment=augment), source
    per_image = -(-n // len(imgs))
    return extract_patches(imgs, size, per_image=per_image)[:n], source


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder for ``1 x n x n`` images, every layer liftable.

    Encoder: ``Conv3x3(1 -> c_0) ReLU``, then per entry ``c`` of ``channels`` a strided
    ``Conv4x4/2(. -> c) ReLU`` (halving the side), then either ``Conv3x3(. -> features) ReLU`` (a feature map
    ``features x n/2^k x n/2^k``; ``code=None``) or ``Flatten, Linear(., code) ReLU`` (a ``code``-vector).
    Decoder: the mirror image with ``ConvTranspose4x4/2``, ending linear (clip its output to [0, 1] for use;
    a final clip layer can die in training: outputs stuck below 0 have zero gradient).

    Parameters
    ----------
    image_size : int
        Side ``n`` (divisible by ``2^len(channels)``).
    channels : sequence of int
        Channels of the strided convolutions (``channels[0]`` is also the first convolution's).
    code : int, optional
        Code dimension of a linear bottleneck; None: a convolutional feature map.
    features : int
        Channels of the feature map when ``code`` is None.

    Examples
    --------
    >>> ae = ConvAutoencoder(32, channels=(4, 8), code=16)
    >>> ae.encoder(torch.rand(2, 1, 32, 32)).shape, ae(torch.rand(2, 1, 32, 32)).shape
    (torch.Size([2, 16]), torch.Size([2, 1, 32, 32]))
    """

    def __init__(
        self,
        image_size: int = 64,
        channels: Sequence[int] = (16, 32, 32),
        code: int | None = None,
        features: int = 16,
    ):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        k = len(channels)
        if k < 1 or image_size % (2**k):
            raise ValueError(f"image_size must be divisible by 2^len(channels) = {2**k}, got {image_size}")
        side = image_size // 2**k
        enc: list[nn.Module] = [nn.Conv2d(1, channels[0], 3, padding=1), nn.ReLU()]
        prev = channels[0]
        for c in channels:
            enc += [nn.Conv2d(prev, c, 4, stride=2, padding=1), nn.ReLU()]
            prev = c
        dec: list[nn.Module] = []
        if code is None:
            enc += [nn.Conv2d(prev, features, 3, padding=1), nn.ReLU()]
            dec += [nn.Conv2d(features, prev, 3, padding=1), nn.ReLU()]
        else:
            enc += [nn.Flatten(), nn.Linear(prev * side * side, code), nn.ReLU()]
            dec += [nn.Linear(code, prev * side * side), nn.ReLU(), nn.Unflatten(1, (prev, side, side))]
        outs = list(reversed(channels[:-1])) + [1]
        for j, c in enumerate(outs):
            dec.append(nn.ConvTranspose2d(prev, c, 4, stride=2, padding=1))
            if j < len(outs) - 1:  # the last layer is linear: a final clip can die (zero output, no gradient)
                dec.append(nn.ReLU())
            prev = c
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)
        self.image_size, self.channels, self.code, self.features = image_size, channels, code, features
        self.encoder.input_shape = (1, image_size, image_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


def natural_autoencoder(
    image_size: int = 64,
    channels: Sequence[int] = (16, 32, 32),
    code: int | None = None,
    features: int = 16,
    seed: int = 0,
    images: str | os.PathLike | None = None,
    n_train: int = 4096,
    epochs: int = 12,
    lr: float = 2e-3,
    path: str | os.PathLike | None = None,
    progress: bool = False,
    device: str | torch.device | None = "cpu",
) -> ConvAutoencoder:
    """Train (or load) a :class:`ConvAutoencoder` on natural-image patches by back-propagation with Adam.

    Training: ``n_train`` random ``image_size`` patches (flips and rotations) of the training split of
    :func:`natural_patches` (``images`` folder, else bundled images), MSE loss, Adam (``lr``), batches of 64,
    ``epochs`` epochs, seeded with ``seed``. ``train_info`` records the held-out PSNR on the validation
    patches and the training time.

    Parameters
    ----------
    image_size, channels, code, features
        The architecture (:class:`ConvAutoencoder`).
    seed : int
        Seed of the initialisation, the patches and the batch order.
    images : path, optional
        Training image folder (its last 40 files are held out); None: bundled images.
    n_train, epochs, lr
        Training settings.
    path : path, optional
        Cache file or folder (:func:`cached_training`).
    progress : bool
        Show the training progress bar.
    device : str or torch.device
        Training device; the returned model is on the CPU.

    Returns
    -------
    ConvAutoencoder
        Trained, eval mode, frozen; ``.encoder`` carries ``input_shape``.
    """
    from liftinv.metrics import psnr

    config = {
        "image_size": int(image_size),
        "channels": [int(c) for c in channels],
        "code": None if code is None else int(code),
        "features": int(features),
        "seed": int(seed),
        "images": None if images is None else str(Path(images).resolve()),
        "n_train": int(n_train),
        "epochs": int(epochs),
        "lr": float(lr),
        "version": 2,
        "recipe": "natural-autoencoder",
    }

    def build() -> ConvAutoencoder:
        torch.manual_seed(int(seed))
        return ConvAutoencoder(image_size, channels, code, features)

    def train() -> tuple[ConvAutoencoder, dict[str, Any]]:
        model = build()
        X, source = natural_patches("train", image_size, n_train, images, seed=seed, augment=True)
        t0 = time.perf_counter()
        _train_adam(model, (X, X), "mse", seed, epochs, lr, device, progress)
        V, _ = natural_patches("validation", image_size, 16, images)
        with torch.no_grad():
            val = float(psnr(model(V).clamp(0, 1), V).mean())
        return model, {"train_time": time.perf_counter() - t0, "validation_psnr": val, "source": source}

    model = cached_training(path, config, "natural-autoencoder", build, train)
    model.encoder.input_shape = (1, image_size, image_size)
    return model


# ---------------------------------------------------------------------------------------------------------
# a ResNet-style digit classifier
# ---------------------------------------------------------------------------------------------------------
#: stages of :func:`resnet` in order (the feature map after a stage can be inverted)
RESNET_STAGES = ("stem", "stage1", "pool1", "stage2", "pool2", "stage3", "head")


def resnet(
    channels: int = 16,
    seed: int = 0,
    epochs: int = 15,
    lr: float = 3e-3,
    n_train: int = 1500,
    path: str | os.PathLike | None = None,
    progress: bool = False,
    device: str | torch.device | None = "cpu",
) -> nn.Sequential:
    """Train (or load) a ResNet-style classifier of 16 x 16 digits (with batch norm) by back-propagation.

    Architecture (He et al., CVPR 2016, scaled down): ``stem`` = Conv3x3(1 -> c) BN ReLU; ``stage1`` =
    :class:`~liftinv.models.ConvResidualBlock` (BN); ``pool1`` = AvgPool2d(2) (8 x 8); ``stage2`` = residual
    block; ``pool2`` = AvgPool2d(2) (4 x 4); ``stage3`` = residual block; ``head`` = global average pooling,
    Flatten, Linear(c, 10). Trained with cross-entropy on the first ``n_train`` digits of
    ``load_digits(size=16)`` (Adam, batches of 64, seeded); ``train_info["test_accuracy"]`` is measured on the
    remaining digits.

    Parameters
    ----------
    channels : int
        Channels of every stage.
    seed : int
        Seed of the initialisation and the batch order.
    epochs, lr, n_train : int, float, int
        Training settings.
    path : path, optional
        Cache file or folder (:func:`cached_training`).
    progress : bool
        Show the training progress bar.
    device : str or torch.device
        Training device; the returned model is on the CPU.

    Returns
    -------
    nn.Sequential
        The classifier in eval mode (batch norms unfolded; :func:`resnet_features` folds them).
    """
    from liftinv.datasets import load_digits
    from liftinv.models import ConvResidualBlock

    config = {
        "channels": int(channels),
        "seed": int(seed),
        "epochs": int(epochs),
        "lr": float(lr),
        "n_train": int(n_train),
        "version": 1,
        "recipe": "resnet-digits",
    }
    c = int(channels)

    def build() -> nn.Sequential:
        torch.manual_seed(int(seed))
        return nn.Sequential(
            OrderedDict(
                stem=nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU()),
                stage1=ConvResidualBlock(c, batchnorm=True),
                pool1=nn.AvgPool2d(2),
                stage2=ConvResidualBlock(c, batchnorm=True),
                pool2=nn.AvgPool2d(2),
                stage3=ConvResidualBlock(c, batchnorm=True),
                head=nn.Sequential(nn.AvgPool2d(4), nn.Flatten(), nn.Linear(c, 10)),
            )
        )

    def train() -> tuple[nn.Sequential, dict[str, Any]]:
        model = build()
        X, labels = load_digits(size=16)
        if not 0 < n_train < X.shape[0]:
            raise ValueError(f"n_train must be in (0, {X.shape[0]}), got {n_train}")
        t0 = time.perf_counter()
        _train_adam(model, (X[:n_train], labels[:n_train]), "ce", seed, epochs, lr, device, progress)
        with torch.no_grad():
            acc = float((model(X[n_train:]).argmax(1) == labels[n_train:]).float().mean())
        return model, {"train_time": time.perf_counter() - t0, "test_accuracy": acc}

    return cached_training(path, config, "resnet-digits", build, train)


def resnet_features(model: nn.Sequential, stage: str = "pool2") -> nn.Sequential:
    """The feature extractor of a :func:`resnet` up to and including ``stage``, batch norms folded.

    Folding (eval mode, :func:`liftinv.inversion.recipes.fold_batchnorm`) makes every layer "affine map then
    proximal activation", so the result lifts. The default cut, after ``pool2``, maps a 1 x 16 x 16 digit to a
    ``c x 4 x 4`` feature map.

    Parameters
    ----------
    model : nn.Sequential
        A classifier from :func:`resnet`.
    stage : str
        The last stage kept (one of :data:`RESNET_STAGES`).

    Returns
    -------
    nn.Sequential
        A folded copy, eval mode, frozen, with ``input_shape = (1, 16, 16)``.

    See Also
    --------
    liftinv.inversion.recipes.get_recipe : ``"resnet-features"`` builds and cuts it.

    Examples
    --------
    >>> from liftinv.models import ConvResidualBlock
    >>> net = nn.Sequential(OrderedDict(stem=nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2),
    ...     nn.ReLU()), stage1=ConvResidualBlock(2, batchnorm=True), pool1=nn.AvgPool2d(2))).eval()
    >>> resnet_features(net, "pool1")(torch.rand(1, 1, 8, 8)).shape
    torch.Size([1, 2, 4, 4])
    """
    names = list(model._modules)
    if stage not in names:
        raise ValueError(f"stage must be one of {names}, got {stage!r}")
    cut = nn.Sequential(OrderedDict((k, model._modules[k]) for k in names[: names.index(stage) + 1]))
    features = fold_batchnorm(cut).requires_grad_(False)
    side = 16
    features.input_shape = (1, side, side)
    return features


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Copy of ``model`` with every eval-mode batch norm folded into the affine layer before it.

    In eval mode ``BN(y) = gamma (y - mean) / sqrt(var + eps) + beta`` is affine, so ``BN(W x + b)`` is
    the affine map ``W' x + b'`` with ``W' = s W`` (per output channel), ``b' = s (b - mean) + beta``,
    ``s = gamma / sqrt(var + eps)`` (Ioffe & Szegedy, *Batch normalization*, ICML 2015; the standard
    inference-time fusion). A lifted network needs affine layers followed by proximal activations, so
    folding makes an eval-mode network with batch norm liftable (:func:`liftinv.lifted.lift`).

    Parameters
    ----------
    model : nn.Module
        A network whose ``nn.Sequential`` parts hold ``nn.Conv1d/2d`` or ``nn.Linear`` followed directly by
        ``nn.BatchNorm1d/2d``.

    Returns
    -------
    nn.Module
        A copy in eval mode with each such pair replaced by one layer (same outputs in eval mode).

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU()).eval()
    >>> folded = fold_batchnorm(net)
    >>> x = torch.rand(1, 1, 5, 5)
    >>> bool(torch.allclose(folded(x), net(x), atol=1e-6)), len(folded)
    (True, 2)
    """
    import copy

    model = copy.deepcopy(model).eval()

    def fold(seq: nn.Module) -> None:
        for child in list(seq.children()):
            fold(child)
        if not isinstance(seq, nn.Sequential):
            return
        mods = list(seq)
        out: list[nn.Module] = []
        for m in mods:
            if (
                isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)
                and out
                and isinstance(out[-1], nn.Conv1d | nn.Conv2d | nn.Linear)
            ):
                lay = out[-1]
                s = m.weight.detach() / torch.sqrt(m.running_var + m.eps)
                shape = (-1,) + (1,) * (lay.weight.dim() - 1)
                bias = lay.bias.detach() if lay.bias is not None else torch.zeros_like(m.running_mean)
                new_b = s * (bias - m.running_mean) + m.bias.detach()
                with torch.no_grad():
                    lay.weight.mul_(s.reshape(shape))
                    if lay.bias is None:
                        lay.bias = nn.Parameter(new_b)
                    else:
                        lay.bias.copy_(new_b)
                continue
            out.append(m)
        for k in list(seq._modules):
            del seq._modules[k]
        for k, m in enumerate(out):
            seq.add_module(str(k), m)

    fold(model)
    return model
