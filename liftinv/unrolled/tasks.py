"""Reconstruction tasks for unrolled networks: operators, noise, and disjoint train/test images (offline).

``TASKS`` holds the four tasks of the benchmark and the CLI:

=========  ===============================================  =========
task       operator                                         noise std
=========  ===============================================  =========
deblur     Gaussian blur, sigma = 2 px, circular boundary   0.01
ct         parallel-beam tomography, 30 angles in [0, 180)  0.01
inpaint    50 % random pixels kept (mask seed 0)            0.01
denoise    identity                                         0.1
=========  ===============================================  =========

Images come from :mod:`liftinv.datasets` (bundled scikit-image images and generated phantoms; nothing is
downloaded): training patches from ``TRAIN_IMAGES`` (natural images and random-ellipse phantoms), test
crops from the disjoint ``TEST_IMAGES`` (other natural images and the Shepp-Logan phantom), or from a user
folder of image files (sorted by name; the last quarter, at least one image, is the test set).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "Task",
    "TASKS",
    "get_task",
    "TRAIN_IMAGES",
    "TEST_IMAGES",
    "load_gray",
    "random_patches",
    "fixed_crops",
    "TaskData",
    "make_task_data",
    "simulate",
]

#: bundled images used for training patches ("phantoms": random-ellipse phantoms)
TRAIN_IMAGES = ("camera", "moon", "coins", "text", "page", "clock", "brick", "gravel", "phantoms")
#: disjoint bundled images used for the test crops (natural images and the Shepp-Logan phantom)
TEST_IMAGES = ("astronaut", "chelsea", "coffee", "shepp_logan")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".npy")


@dataclass(frozen=True)
class Task:
    """A reconstruction task: operator name and parameters, Gaussian noise level, default network.

    Attributes
    ----------
    name : str
        Task name (``"deblur"``, ``"ct"``, ``"inpaint"``, ``"denoise"``).
    operator : str
        Name for :func:`liftinv.operators.make_operator`.
    operator_kwargs : dict
        Operator parameters.
    noise : float
        Standard deviation of the additive Gaussian noise on the measurements.
    description : str
        One line for tables.
    arch_kwargs : dict
        Per architecture, default constructor arguments. Chosen on the *training* patches (never on the test
        crops): ``init_alpha`` of the gradient-regularised initial image by its training PSNR, the
        preconditioner ``beta`` of :class:`~liftinv.unrolled.UnrolledProxGrad` (deblur, CT) by the training
        PSNR after 12 epochs of back-propagation among {0.01, 0.1}; ``theta = 0.05`` for denoising (about half
        the noise level; 0.01 elsewhere).
    """

    name: str
    operator: str
    operator_kwargs: dict[str, Any]
    noise: float
    description: str
    arch_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def make_operator(self, image_size: int | tuple[int, ...] = 32):
        """The task's forward operator for ``image_size`` images (``liftinv.operators.make_operator``)."""
        from liftinv.operators.registry import make_operator

        return make_operator(self.operator, image_size, **self.operator_kwargs)


#: task name -> :class:`Task`
TASKS: dict[str, Task] = {
    "deblur": Task(
        "deblur",
        "blur",
        {"kernel": "gaussian", "sigma": 2.0},
        0.01,
        "Gaussian deblurring (sigma=2 px), noise 0.01",
        {
            "proxgrad": {"init": "smooth", "init_alpha": 0.03, "precondition": 0.01},
            "dualfb": {"init": "smooth", "init_alpha": 0.03},
        },
    ),
    "ct": Task(
        "ct",
        "tomography",
        {"angles": 30},
        0.01,
        "sparse-view parallel-beam CT (30 angles), noise 0.01",
        {
            "proxgrad": {"init": "smooth", "init_alpha": 0.03, "precondition": 0.1},
            "dualfb": {"init": "smooth", "init_alpha": 0.03},
        },
    ),
    "inpaint": Task(
        "inpaint",
        "inpainting",
        {"mask": "random", "keep_rate": 0.5, "seed": 0},
        0.01,
        "inpainting (50% random pixels), noise 0.01",
        {
            "proxgrad": {"init": "smooth", "init_alpha": 0.001},
            "dualfb": {"init": "smooth", "init_alpha": 0.001},
        },
    ),
    "denoise": Task(
        "denoise",
        "denoising",
        {},
        0.1,
        "Gaussian denoising, noise 0.1",
        {"proxgrad": {"init": "adjoint", "theta": 0.05}, "dualfb": {"init": "adjoint"}},
    ),
}


def get_task(name: str | Task) -> Task:
    """Look up a task by name.

    Parameters
    ----------
    name : str or Task
        ``"deblur"``, ``"ct"``, ``"inpaint"`` or ``"denoise"`` (a :class:`Task` is returned unchanged).

    Returns
    -------
    Task

    Raises
    ------
    ValueError
        For an unknown name (the message lists the tasks).

    Examples
    --------
    >>> get_task("ct").operator_kwargs
    {'angles': 30}
    """
    if isinstance(name, Task):
        return name
    if name not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {name!r}")
    return TASKS[name]


# ---------------------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------------------
def load_gray(name_or_path: str | os.PathLike, side: int | None = None) -> Tensor:
    """A bundled image (by name, see ``liftinv.datasets.BUNDLED_IMAGES``; ``"shepp_logan"`` or
    ``"phantoms"`` for generated phantoms) or an image file, as grayscale ``[H, W]`` in [0, 1].

    Uses :func:`liftinv.datasets.load_image` (centre square crop resized to ``side``). ``"phantoms"`` gives
    one ``side x side`` mosaic of four random-ellipse phantoms (:func:`liftinv.datasets.random_ellipses`).

    Examples
    --------
    >>> load_gray("camera", 64).shape
    torch.Size([64, 64])
    """
    from liftinv.datasets import load_image, random_ellipses

    if str(name_or_path) == "phantoms":
        side = side or 128
        half = side // 2
        tiles = random_ellipses(4, half, seed=0)[:, 0]
        top = torch.cat([tiles[0], tiles[1]], 1)
        bottom = torch.cat([tiles[2], tiles[3]], 1)
        return torch.cat([top, bottom], 0).float()
    return load_image(name_or_path, side)[0, 0].float()


def random_patches(
    images: list[Tensor], n: int, size: int, generator: torch.Generator, augment: bool = True
) -> Tensor:
    """``n`` random ``size x size`` patches (about the same number per image), ``[n, 1, size, size]``.

    Parameters
    ----------
    images : list of Tensor
        Grayscale images ``[H, W]`` (at least ``size`` on each side).
    n : int
        Number of patches; patch ``i`` comes from image ``i mod len(images)``.
    size : int
        Patch side.
    generator : torch.Generator
        Source of the positions (and augmentations): same generator state, same patches.
    augment : bool
        Flip and rotate each patch by a random multiple of 90 degrees.

    Returns
    -------
    Tensor
        ``[n, 1, size, size]``.

    Examples
    --------
    >>> random_patches([torch.rand(20, 20)], 3, 8, torch.Generator().manual_seed(0)).shape
    torch.Size([3, 1, 8, 8])
    """
    out = []
    for i in range(n):
        img = images[i % len(images)]
        h, w = img.shape
        if h < size or w < size:
            raise ValueError(f"image of size {h}x{w} is smaller than the patch size {size}")
        r = int(torch.randint(0, h - size + 1, (1,), generator=generator))
        c = int(torch.randint(0, w - size + 1, (1,), generator=generator))
        p = img[r : r + size, c : c + size]
        if augment:
            p = torch.rot90(p, int(torch.randint(0, 4, (1,), generator=generator)))
            if int(torch.randint(0, 2, (1,), generator=generator)):
                p = p.flip(-1)
        out.append(p)
    return torch.stack(out)[:, None].contiguous()


def fixed_crops(image: Tensor, size: int, count: int) -> Tensor:
    """``count`` deterministic ``size x size`` crops spread over the image, ``[count, 1, size, size]``.

    The crop corners lie on a regular interior grid of ``ceil(sqrt(count))^2`` positions, ``count`` of them
    taken evenly along the grid.

    Examples
    --------
    >>> fixed_crops(torch.rand(64, 64), 16, 3).shape
    torch.Size([3, 1, 16, 16])
    """
    h, w = image.shape
    if h < size or w < size:
        raise ValueError(f"image of size {h}x{w} is smaller than the crop size {size}")
    g = max(1, math.ceil(math.sqrt(count)))
    rows = np.linspace(0, h - size, g + 2)[1:-1].round().astype(int)
    cols = np.linspace(0, w - size, g + 2)[1:-1].round().astype(int)
    pos = [(r, c) for r in rows for c in cols]
    order = np.linspace(0, len(pos) - 1, count).round().astype(int) if count < len(pos) else range(len(pos))
    return torch.stack([image[pos[i][0] : pos[i][0] + size, pos[i][1] : pos[i][1] + size] for i in order])[
        :, None
    ]


def simulate(operator, x: Tensor, noise: float, generator: torch.Generator) -> Tensor:
    """Noisy measurements ``y = A x + noise * n``, ``n ~ N(0, I)`` (for masks, noise on kept pixels only).

    Parameters
    ----------
    operator : LinearOperator
        Forward operator.
    x : Tensor
        Images ``[B, C, H, W]``.
    noise : float
        Standard deviation.
    generator : torch.Generator
        Source of the noise (deterministic measurements for a seeded generator).

    Returns
    -------
    Tensor
        ``[B, *measurement_size]``.
    """
    with torch.no_grad():
        y = operator.A(x)
        n = torch.randn(y.shape, generator=generator, dtype=y.dtype).to(y.device)
        mask = getattr(operator, "mask", None)
        if isinstance(mask, Tensor) and mask.shape[-2:] == y.shape[-2:]:
            n = n * mask
        return y + noise * n


@dataclass
class TaskData:
    """Training and test pairs of a task (output of :func:`make_task_data`).

    Attributes
    ----------
    task : Task
    operator : LinearOperator
        The task's operator for ``image_size`` images.
    train, test : (Tensor, Tensor)
        ``(y, x)``: noisy measurements and clean images.
    test_names : list of str
        ``"<image>#<crop>"`` per test sample.
    image_size : int
    """

    task: Task
    operator: Any
    train: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]
    test_names: list[str]
    image_size: int

    def describe(self) -> dict[str, Any]:
        return {
            "task": self.task.name,
            "image_size": self.image_size,
            "n_train": len(self.train[1]),
            "n_test": len(self.test[1]),
            "noise": self.task.noise,
        }


def _folder_images(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {str(folder)!r} does not exist or is not a directory")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 2:
        raise ValueError(
            f"image folder {str(folder)!r} must contain at least 2 images ({', '.join(IMAGE_SUFFIXES)}) so that "
            f"train and test images are disjoint; found {len(files)}"
        )
    return files


def make_task_data(
    task: str | Task,
    *,
    image_size: int = 32,
    n_train: int = 256,
    test_crops: int = 3,
    seed: int = 0,
    image_folder: str | os.PathLike | None = None,
    train_images: tuple[str, ...] | list[str] | None = None,
    test_images: tuple[str, ...] | list[str] | None = None,
    train_side: int = 128,
    test_side: int = 96,
) -> TaskData:
    """Training patches and test crops with simulated noisy measurements (deterministic given ``seed``).

    Parameters
    ----------
    task : str or Task
        Task name or object.
    image_size : int
        Side of the (square) training patches and test crops; the operator is built for this size.
    n_train : int
        Number of training patches.
    test_crops : int
        Crops per test image.
    seed : int
        Seeds patch positions and the noise.
    image_folder : path, optional
        Use the images of this folder instead of the bundled ones (sorted by name; the last quarter, at
        least one image, are the test images).
    train_images, test_images : sequence of str, optional
        Bundled image names (``liftinv.datasets`` names, ``"phantoms"`` for random-ellipse phantoms) or image
        paths replacing :data:`TRAIN_IMAGES` / :data:`TEST_IMAGES` (not with ``image_folder``); the two sets
        must be disjoint.
    train_side, test_side : int
        Images are resized so that their shorter side has this many pixels before cropping.

    Returns
    -------
    TaskData
    """
    task = get_task(task)
    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
    if not isinstance(n_train, int) or n_train < 1:
        raise ValueError(f"n_train must be a positive int, got {n_train!r}")
    train_side, test_side = max(train_side, image_size), max(test_side, image_size)
    if image_folder is not None:
        if train_images is not None or test_images is not None:
            raise ValueError("give either image_folder or train_images/test_images, not both")
        files = _folder_images(image_folder)
        n_test = max(1, len(files) // 4)
        train_names, test_names = [str(p) for p in files[:-n_test]], [str(p) for p in files[-n_test:]]
    else:
        train_names = list(TRAIN_IMAGES if train_images is None else train_images)
        test_names = list(TEST_IMAGES if test_images is None else test_images)
        for arg, names in (("train_images", train_names), ("test_images", test_names)):
            if not names or not all(isinstance(n, str) for n in names):
                raise ValueError(f"{arg} must be a non-empty sequence of image names, got {names!r}")
        common = sorted(set(train_names) & set(test_names))
        if common:
            raise ValueError(f"train_images and test_images must be disjoint; both contain {common}")
    g = torch.Generator().manual_seed(int(seed))
    train_imgs = [load_gray(n, train_side) for n in train_names]
    x_train = random_patches(train_imgs, n_train, image_size, g)
    crops, names = [], []
    for n in test_names:
        c = fixed_crops(load_gray(n, test_side), image_size, test_crops)
        crops.append(c)
        names += [f"{Path(n).stem}#{i}" for i in range(len(c))]
    x_test = torch.cat(crops)
    op = task.make_operator(image_size)
    gn = torch.Generator().manual_seed(int(seed) + 1)
    y_train = simulate(op, x_train, task.noise, gn)
    y_test = simulate(op, x_test, task.noise, torch.Generator().manual_seed(10_000 + int(seed)))
    return TaskData(task, op, (y_train, x_train), (y_test, x_test), names, image_size)
