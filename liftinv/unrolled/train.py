"""One call from a task name to a trained unrolled network: architectures, method names, defaults, ``train``.

References: P3 Wang, Benning & Repetti, MLSP 2024 (arXiv 2408.08742); P4 Wang et al., arXiv 2510.09796; P1
Wang & Benning, JMLR 24(232), 2023.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from liftinv.models import ARCHITECTURES, build_model
from liftinv.training.unrolled import UNROLLED_METHODS
from liftinv.unrolled.tasks import Task, TaskData, get_task, make_task_data

__all__ = [
    "METHOD_ALIASES",
    "DEFAULT_OPTIONS",
    "ARCH_OPTIONS",
    "LIFTED_ARCH_OPTIONS",
    "resolve_method",
    "data_sources",
    "build_model",
    "train",
]


#: short method names (CLI, benchmark) -> registered ``fit`` methods
METHOD_ALIASES: dict[str, str] = {
    "backprop": "backprop-adam",
    "mac": "mac-isgm",
}

#: default options per registered method (tuned on the deblurring task, 32x32 patches)
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "backprop-adam": {"lr": 1e-2, "batch_size": 32},
    "bregman-isgm": {"lr": 1e-2, "batch_size": 32, "inner": 1},
    "bregman-bcd": {"lr": 1e-2, "batch_size": 32, "inner": 3},
    "mac-isgm": {"lr": 1e-2, "batch_size": 32, "inner": 1},
    "mac-bcd": {"lr": 1e-2, "batch_size": 32, "inner": 3},
}


#: per-architecture option overrides for every method: the dual-FB convolutions are unconstrained (a smaller
#: learning rate); Learned Primal-Dual takes Adam's usual 1e-3 (Adler & Oktem 2018); proxgrad-cnn 3e-3, measured
#: (denoising 0.1, 256 patches 32x32, K = 3, depth 4, width 16, batch 32, 8 epochs, seed 0; test PSNR): Adam
#: 1e-3 / 3e-3 / 1e-2: 25.79 / 26.31 / 26.13 dB
ARCH_OPTIONS: dict[str, dict[str, Any]] = {
    "dualfb": {"lr": 1e-3},
    "lpd": {"lr": 1e-3},
    "proxgrad-cnn": {"lr": 3e-3},
}
#: per-architecture overrides for the lifted methods: the dual-FB pre-activations are scaled by
#: ``tau_k ~ 1/||L_k||^2`` (about 40 at initialisation), which makes lambda = 1 penalties very stiff in the
#: weights; lambda ~ ||L_k||^2 balances them. The learned CNN networks (last-layer gain 0.1): lifted LPD was
#: measured stable at lr 1e-2 and 3e-3 is safer; proxgrad-cnn, same setting as above, bregman-isgm 1e-3 / 3e-3
#: / 1e-2: 25.65 / 25.67 dB / unstable (18-25 dB from epoch to epoch)
LIFTED_ARCH_OPTIONS: dict[str, dict[str, Any]] = {
    "dualfb": {"lambdas": 0.02, "backtrack": True},
    # frozen pre-activations: the best lifted variant measured on LPD (benchmarks/lifted_cost.py: -0.57 dB
    # vs backprop on 32x32 denoising, -2.5 dB on CT; the plain sweep oscillates on its skip connections)
    "lpd": {"lr": 3e-3, "frozen_preactivations": True},
    "proxgrad-cnn": {"lr": 3e-3},
}


def resolve_method(method: str) -> str:
    """Map a short name (``backprop``, ``mac``: :data:`METHOD_ALIASES`) to a ``fit`` method.

    Registered names (``backprop-adam``, ``bregman-isgm``, ...) are returned unchanged.
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, got {type(method).__name__}")
    return METHOD_ALIASES.get(method, method)


def data_sources(
    task: str | Task,
    arch: str,
    image_folder: str | os.PathLike | None = None,
    train_images=None,
    test_images=None,
) -> dict[str, Any]:
    """The ``image_folder`` / ``train_images`` / ``test_images`` keywords of :func:`make_task_data` for an arch.

    Parameters
    ----------
    task : str or Task
        The task.
    arch : str
        The architecture.
    image_folder, train_images, test_images : optional
        As for :func:`make_task_data`.

    Returns
    -------
    dict
        The keywords given; without ``image_folder``, the task's default for the architecture
        (:attr:`Task.arch_images`, e.g. random-ellipse phantoms for ``lpd`` on CT) in place of a missing
        ``train_images`` / ``test_images``. An empty dict means the bundled images.

    Examples
    --------
    >>> data_sources("ct", "lpd")
    {'train_images': 'ellipses', 'test_images': 'ellipses'}
    >>> data_sources("ct", "lpd", test_images="BSD68")
    {'train_images': 'ellipses', 'test_images': 'BSD68'}
    >>> data_sources("deblur", "lpd")
    {}
    """
    if image_folder is not None:  # make_task_data refuses it together with train_images / test_images
        kw = {"image_folder": image_folder, "train_images": train_images, "test_images": test_images}
        return {k: v for k, v in kw.items() if v is not None}
    default = get_task(task).arch_images.get(arch)
    kw = {"train_images": default if train_images is None else train_images}
    kw["test_images"] = default if test_images is None else test_images
    return {k: v for k, v in kw.items() if v is not None}


def train(
    task: str | Task = "deblur",
    arch: str = "proxgrad",
    method: str = "bregman-isgm",
    *,
    epochs: int = 20,
    seed: int = 0,
    device: str | torch.device | None = "cpu",
    data: TaskData | None = None,
    image_size: int = 32,
    n_train: int = 256,
    image_folder: str | os.PathLike | None = None,
    train_images: str | os.PathLike | tuple[str, ...] | list[str] | None = None,
    test_images: str | os.PathLike | tuple[str, ...] | list[str] | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool = True,
    model_kwargs: dict[str, Any] | None = None,
    model: nn.Module | None = None,
    **options,
):
    """Train an unrolled network on a task (one call: data, network, :func:`liftinv.training.fit`).

    Parameters
    ----------
    task : str or Task
        ``"deblur"``, ``"ct"``, ``"inpaint"`` or ``"denoise"``.
    arch : str
        A name of :data:`liftinv.models.ARCHITECTURES`: ``"proxgrad"``, ``"dualfb"`` (convex-prior
        networks), ``"lpd"``, ``"proxgrad-cnn"`` (learned CNN proximal steps).
    method : str
        A short alias (``backprop``, ``mac``: :data:`METHOD_ALIASES`) or a registered ``fit`` method that
        trains unrolled networks (:func:`liftinv.training.registry.methods_for` ``("unrolled")``).
    epochs, seed, device, checkpoint, resume, progress
        As for :func:`liftinv.training.fit`.
    data : TaskData, optional
        Pre-built data (default :func:`make_task_data` with ``image_size``, ``n_train``, ``image_folder``,
        ``train_images``, ``test_images`` and ``seed``).
    image_size, n_train, image_folder, train_images, test_images
        As for :func:`make_task_data`. Without ``image_folder``, ``train_images`` and ``test_images``, the
        task's default for the architecture (:attr:`Task.arch_images`: random-ellipse phantoms for ``lpd``
        on CT), else the bundled images.
    model_kwargs : dict, optional
        Architecture arguments overriding the task's defaults.
    model : nn.Module, optional
        A network of architecture ``arch`` built for ``data.operator`` (trained in place), instead of
        ``build_model(arch, data.operator, **task_defaults, **model_kwargs)``.
    **options
        Trainer options overriding :data:`DEFAULT_OPTIONS`, :data:`ARCH_OPTIONS` and
        :data:`LIFTED_ARCH_OPTIONS` (``lr``, ``batch_size``, ``inner``, ``lambdas``, ...).

    Returns
    -------
    (model, history, data)
    """
    from liftinv.training import fit

    task = get_task(task)
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}, got {arch!r}")
    fit_method = resolve_method(method)
    if data is None:
        data = make_task_data(
            task,
            image_size=image_size,
            n_train=n_train,
            seed=seed,
            **data_sources(task, arch, image_folder, train_images, test_images),
        )
    if model is None:
        model = build_model(arch, data.operator, **{**task.arch_kwargs.get(arch, {}), **(model_kwargs or {})})
    elif getattr(model, "arch", None) != arch:
        raise ValueError(f"model is a {getattr(model, 'arch', type(model).__name__)!r} network, not {arch!r}")
    opts = dict(DEFAULT_OPTIONS.get(fit_method, {}))
    if fit_method in DEFAULT_OPTIONS:
        opts.update(ARCH_OPTIONS.get(arch, {}))
    if fit_method in UNROLLED_METHODS:
        opts.update(LIFTED_ARCH_OPTIONS.get(arch, {}))
    opts.update(options)
    history = fit(
        model,
        data.train,
        method=fit_method,
        epochs=epochs,
        test=data.test,
        metric="psnr",
        seed=seed,
        device=device,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        **opts,
    )
    return model, history, data
