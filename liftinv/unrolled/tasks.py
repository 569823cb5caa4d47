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
folder of image files (sorted by name; the last quarter, at least one image, is the test set). Images are
loaded by :func:`liftinv.datasets.load_image`, cut by :func:`liftinv.datasets.extract_patches`, and measured
by the operator's ``measure``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "Task",
    "TASKS",
    "get_task",
    "TRAIN_IMAGES",
    "TEST_IMAGES",
    "TaskData",
    "make_task_data",
]

#: bundled images used for training patches ("phantoms": a mosaic of random-ellipse phantoms, see
#: :func:`liftinv.datasets.load_image`)
TRAIN_IMAGES = ("camera", "moon", "coins", "text", "page", "clock", "brick", "gravel", "phantoms")
#: disjoint bundled images used for the test crops (natural images and the Shepp-Logan phantom)
TEST_IMAGES = ("astronaut", "chelsea", "coffee", "shepp_logan")


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
        Use the images of this folder instead of the bundled ones (its files with an extension in
        :data:`liftinv.datasets.IMAGE_EXTENSIONS`, not its sub-folders, sorted by name; the last quarter, at
        least one image, are the test images).
    train_images, test_images : sequence of str, optional
        Bundled image names (``liftinv.datasets`` names, ``"phantoms"`` for random-ellipse phantoms) or image
        paths replacing :data:`TRAIN_IMAGES` / :data:`TEST_IMAGES` (not with ``image_folder``); the two sets
        must be disjoint.
    train_side, test_side : int
        Images are centre-cropped to a square and resized to this side before cropping
        (:func:`liftinv.datasets.load_image`).

    Returns
    -------
    TaskData

    Notes
    -----
    Training patches: ``extract_patches(train, image_size, n=n_train, seed=seed, augment=True)`` (patch ``i``
    from training image ``i mod len(train)``, random position, rotation and flip); test crops:
    ``extract_patches(test, image_size, per_image=test_crops)``; measurements:
    ``operator.measure(x, task.noise, generator=...)`` with generators seeded ``seed + 1`` (training) and
    ``10000 + seed`` (test), so training and test noise never coincide.
    """
    from liftinv.datasets import IMAGE_EXTENSIONS, extract_patches, list_images, load_image

    task = get_task(task)
    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
    if not isinstance(n_train, int) or n_train < 1:
        raise ValueError(f"n_train must be a positive int, got {n_train!r}")
    train_side, test_side = max(train_side, image_size), max(test_side, image_size)
    if image_folder is not None:
        if train_images is not None or test_images is not None:
            raise ValueError("give either image_folder or train_images/test_images, not both")
        files = list_images(image_folder, recursive=False)
        if len(files) < 2:
            raise ValueError(
                f"image folder {str(image_folder)!r} must contain at least 2 images ({', '.join(IMAGE_EXTENSIONS)}) "
                f"so that train and test images are disjoint; found {len(files)}"
            )
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
    train = [load_image(name, train_side)[0] for name in train_names]
    x_train = extract_patches(train, image_size, n=n_train, seed=int(seed), augment=True)
    test = [load_image(name, test_side)[0] for name in test_names]
    x_test = extract_patches(test, image_size, per_image=test_crops)
    names = [f"{Path(name).stem}#{i}" for name in test_names for i in range(test_crops)]
    op = task.make_operator(image_size)
    with torch.no_grad():
        y_train = op.measure(x_train, task.noise, generator=torch.Generator().manual_seed(int(seed) + 1))
        y_test = op.measure(x_test, task.noise, generator=torch.Generator().manual_seed(10_000 + int(seed)))
    return TaskData(task, op, (y_train, x_train), (y_test, x_test), names, image_size)
