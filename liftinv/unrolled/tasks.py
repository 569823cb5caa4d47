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

Images come from :mod:`liftinv.datasets` (nothing is downloaded): by default training patches from
``TRAIN_IMAGES`` (bundled scikit-image images and random-ellipse phantoms) and test crops from the disjoint
``TEST_IMAGES`` (other bundled images and the Shepp-Logan phantom); or from user folders of image files
(e.g. ``Train400`` for training, ``BSD68`` / ``Set12`` for testing, used at their native resolution; one
folder alone is split, its last quarter being the test set); or, :data:`ELLIPSES`, the random-ellipse
phantoms of Learned Primal-Dual (:class:`liftinv.datasets.EllipseStream` for training, the fixed
:func:`liftinv.datasets.ellipse_set` of seed :data:`ELLIPSE_TEST_SEED` for testing: the default of the CT
task for ``lpd``, :attr:`Task.arch_images`). Images are loaded by :func:`liftinv.datasets.load_image`, cut
by :func:`liftinv.datasets.extract_patches` (random training patches with flips and 90 degree rotations),
and measured by the operator's ``measure``.
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
    "ELLIPSES",
    "ELLIPSE_TEST_SEED",
    "TaskData",
    "make_task_data",
]

#: bundled images used for training patches ("phantoms": a mosaic of random-ellipse phantoms, see
#: :func:`liftinv.datasets.load_image`)
TRAIN_IMAGES = ("camera", "moon", "coins", "text", "page", "clock", "brick", "gravel", "phantoms")
#: disjoint bundled images used for the test crops (natural images and the Shepp-Logan phantom)
TEST_IMAGES = ("astronaut", "chelsea", "coffee", "shepp_logan")
#: data-source name of the random-ellipse phantoms of Learned Primal-Dual (``train_images=ELLIPSES``: the
#: stream :class:`liftinv.datasets.EllipseStream` of the run's seed; ``test_images=ELLIPSES``: the fixed set
#: ``ellipse_set(test_phantoms, seed=ELLIPSE_TEST_SEED)``, never a training image)
ELLIPSES = "ellipses"
#: seed of the ellipse test set (the same whatever the run's seed; seed 0 is left to validation sets)
ELLIPSE_TEST_SEED = 1


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
        the noise level; 0.01 elsewhere). ``proxgrad-cnn`` starts deblurring and inpainting from the
        gradient-regularised image (``init_alpha`` 0.01), chosen on bundled development images disjoint from
        the test sets (see ``PG_INIT`` in ``benchmarks/learned.py``: +1.5 to +2.7 dB over ``A^T y``);
        otherwise the learned CNN networks (``lpd``, ``proxgrad-cnn``) use their class defaults.
    arch_images : dict
        Per architecture, the default data source of training and test images when none is given
        (:data:`ELLIPSES` for ``lpd`` on CT, as in the Learned Primal-Dual paper; otherwise the bundled
        ``TRAIN_IMAGES`` / ``TEST_IMAGES``).
    """

    name: str
    operator: str
    operator_kwargs: dict[str, Any]
    noise: float
    description: str
    arch_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    arch_images: dict[str, str] = field(default_factory=dict)

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
            "proxgrad-cnn": {"init": "smooth"},
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
        {"lpd": ELLIPSES},
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
            "proxgrad-cnn": {"init": "smooth"},
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
    train_source, test_source : str
        Where the training and test images come from, in words (for logs: ``"bundled images camera, ..."``,
        ``"folder Train400 (400 images, native size)"``, ``"random-ellipse phantoms ..."``).
    train_bundled, test_bundled : bool
        Whether the training / test images are the bundled ones (no folder or names given).
    """

    task: Task
    operator: Any
    train: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]
    test_names: list[str]
    image_size: int
    train_source: str = ""
    test_source: str = ""
    train_bundled: bool = False
    test_bundled: bool = False


@dataclass
class _Source:
    """Resolved ``train_images`` / ``test_images``: kind (bundled, names, folder, ellipses), items, words."""

    kind: str
    items: list[str]
    label: str


def _folder_images(arg: str, folder, part: slice = slice(None), what: str = "") -> _Source:
    from liftinv.datasets import IMAGE_EXTENSIONS, list_images

    files = list_images(folder, recursive=False)
    if not files:
        raise ValueError(
            f"{arg}: the folder {str(folder)!r} has no image files ({', '.join(IMAGE_EXTENSIONS)}; "
            "sub-folders are not read)"
        )
    chosen = [str(p) for p in files[part]]
    count = f"{len(chosen)} image{'s' if len(chosen) != 1 else ''}"
    return _Source("folder", chosen, f"folder {folder} ({what}{count}, native size)")


def _resolve_images(arg: str, value, default: tuple[str, ...]) -> _Source:
    """``train_images`` / ``test_images``: None (bundled), :data:`ELLIPSES`, a folder, or names / paths."""
    if value is None:
        return _Source("bundled", list(default), f"bundled images {', '.join(default)}")
    if isinstance(value, str) and value == ELLIPSES:
        return _Source("ellipses", [], "random-ellipse phantoms (Learned Primal-Dual)")
    if isinstance(value, str | os.PathLike):
        if Path(value).is_dir():
            return _folder_images(arg, value)
        raise FileNotFoundError(
            f"{arg}: {str(value)!r} is not a folder (expected a folder of images, a sequence of image names or "
            f"paths, or {ELLIPSES!r})"
        )
    names = list(value) if isinstance(value, list | tuple) else None
    if not names or not all(isinstance(n, str | os.PathLike) for n in names):
        raise ValueError(f"{arg} must be a non-empty sequence of image names, got {value!r}")
    names = [str(n) for n in names]
    return _Source("names", names, f"images {', '.join(Path(n).name for n in names)}")


def _identity(name: str) -> str:
    """What makes two image names the same image: the resolved path of a file, else the name."""
    path = Path(name)
    return str(path.resolve()) if path.is_file() else name


def _load(source: _Source, side: int, image_size: int, arg: str) -> list[Tensor]:
    """The images ``[C, H, W]`` of a source: folders at native size, names resized to ``side``."""
    from liftinv.datasets import load_image

    images = []
    for name in source.items:
        image = load_image(name, None if source.kind == "folder" else side)[0]
        if min(image.shape[-2:]) < image_size:
            raise ValueError(
                f"{arg}: the image {name} is {image.shape[-2]}x{image.shape[-1]}, smaller than the "
                f"{image_size}x{image_size} patches (image_size)"
            )
        images.append(image)
    return images


def make_task_data(
    task: str | Task,
    *,
    image_size: int = 32,
    n_train: int = 256,
    test_crops: int = 3,
    seed: int = 0,
    image_folder: str | os.PathLike | None = None,
    train_images: str | os.PathLike | tuple[str, ...] | list[str] | None = None,
    test_images: str | os.PathLike | tuple[str, ...] | list[str] | None = None,
    train_side: int = 128,
    test_side: int = 96,
    test_phantoms: int = 16,
) -> TaskData:
    """Training patches and test crops with simulated noisy measurements (deterministic given ``seed``).

    Parameters
    ----------
    task : str or Task
        Task name or object.
    image_size : int
        Side of the (square) training patches and test crops; the operator is built for this size.
    n_train : int
        Number of training patches (training phantoms for :data:`ELLIPSES`).
    test_crops : int
        Crops per test image.
    seed : int
        Seeds patch positions, the training phantoms and the noise.
    image_folder : path, optional
        Train and test on the images of this folder (its files with an extension in
        :data:`liftinv.datasets.IMAGE_EXTENSIONS`, not its sub-folders, sorted by name; the last quarter, at
        least one image, are the test images). Not with ``train_images`` / ``test_images``.
    train_images, test_images : path, str or sequence of str, optional
        The training / test images (default :data:`TRAIN_IMAGES` / :data:`TEST_IMAGES`, bundled): a folder
        (all its image files, sorted, not its sub-folders), :data:`ELLIPSES` (random-ellipse phantoms: the
        :class:`~liftinv.datasets.EllipseStream` of seed ``seed`` for training, the fixed
        ``ellipse_set(test_phantoms, seed=ELLIPSE_TEST_SEED)`` for testing), or a sequence of bundled image
        names (``liftinv.datasets`` names, ``"phantoms"`` for a mosaic of random-ellipse phantoms) or image
        paths. The two sets must be disjoint.
    train_side, test_side : int
        Bundled images and images given by name are centre-cropped to a square and resized to this side
        before cropping (:func:`liftinv.datasets.load_image`); folder images keep their native size (each
        side at least ``image_size``).
    test_phantoms : int
        Number of test phantoms of :data:`ELLIPSES`.

    Returns
    -------
    TaskData

    Raises
    ------
    ValueError
        Bad sizes or counts, train and test sets that share an image (or the same folder), a folder without
        images, an image smaller than ``image_size``.
    FileNotFoundError
        A folder or image that does not exist.

    Notes
    -----
    Training patches: ``extract_patches(train, image_size, n=n_train, seed=seed, augment=True)`` (patch ``i``
    from training image ``i mod len(train)``, random position, rotation by a multiple of 90 degrees and
    flip); test crops: ``extract_patches(test, image_size, per_image=test_crops)``; measurements:
    ``operator.measure(x, task.noise, generator=...)`` with generators seeded ``seed + 1`` (training) and
    ``10000 + seed`` (test), so training and test noise never coincide.

    Examples
    --------
    >>> data = make_task_data("ct", image_size=16, n_train=4, train_images=ELLIPSES, test_images=ELLIPSES,
    ...                       test_phantoms=2)
    >>> data.train[1].shape, data.test_names
    (torch.Size([4, 1, 16, 16]), ['ellipse#0', 'ellipse#1'])
    """
    from liftinv.datasets import EllipseStream, ellipse_set, extract_patches

    task = get_task(task)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
    if isinstance(n_train, bool) or not isinstance(n_train, int) or n_train < 1:
        raise ValueError(f"n_train must be a positive int, got {n_train!r}")
    if isinstance(test_phantoms, bool) or not isinstance(test_phantoms, int) or test_phantoms < 1:
        raise ValueError(f"test_phantoms must be a positive int, got {test_phantoms!r}")
    train_side, test_side = max(train_side, image_size), max(test_side, image_size)
    if image_folder is not None:
        if train_images is not None or test_images is not None:
            raise ValueError("give either image_folder or train_images/test_images, not both")
        from liftinv.datasets import IMAGE_EXTENSIONS, list_images

        files = list_images(image_folder, recursive=False)
        if len(files) < 2:
            raise ValueError(
                f"image folder {str(image_folder)!r} must contain at least 2 images ({', '.join(IMAGE_EXTENSIONS)}) "
                f"so that train and test images are disjoint; found {len(files)}"
            )
        n_test = max(1, len(files) // 4)
        train_src = _folder_images("image_folder", image_folder, slice(None, -n_test), "first ")
        test_src = _folder_images("image_folder", image_folder, slice(-n_test, None), "last ")
    else:
        train_src = _resolve_images("train_images", train_images, TRAIN_IMAGES)
        test_src = _resolve_images("test_images", test_images, TEST_IMAGES)
        common = sorted({_identity(n) for n in train_src.items} & {_identity(n) for n in test_src.items})
        if common:
            shown = ", ".join(common[:3]) + (f" and {len(common) - 3} more" if len(common) > 3 else "")
            raise ValueError(f"train_images and test_images must be disjoint; both contain {shown}")
    if train_src.kind == "ellipses":
        x_train = EllipseStream(image_size, seed=int(seed)).batch(n_train)
        train_src.label += f", stream seed {seed}"
    else:
        train = _load(train_src, train_side, image_size, "train_images")
        x_train = extract_patches(train, image_size, n=n_train, seed=int(seed), augment=True)
    if test_src.kind == "ellipses":
        x_test = ellipse_set(test_phantoms, image_size, seed=ELLIPSE_TEST_SEED)
        names = [f"ellipse#{i}" for i in range(test_phantoms)]
        test_src.label += f", fixed set of {test_phantoms} (seed {ELLIPSE_TEST_SEED})"
    else:
        test = _load(test_src, test_side, image_size, "test_images")
        x_test = extract_patches(test, image_size, per_image=test_crops)
        names = [f"{Path(name).stem}#{i}" for name in test_src.items for i in range(test_crops)]
    op = task.make_operator(image_size)
    with torch.no_grad():
        y_train = op.measure(x_train, task.noise, generator=torch.Generator().manual_seed(int(seed) + 1))
        y_test = op.measure(x_test, task.noise, generator=torch.Generator().manual_seed(10_000 + int(seed)))
    return TaskData(
        task,
        op,
        (y_train, x_train),
        (y_test, x_test),
        names,
        image_size,
        train_source=train_src.label,
        test_source=test_src.label,
        train_bundled=train_src.kind == "bundled",
        test_bundled=test_src.kind == "bundled",
    )
