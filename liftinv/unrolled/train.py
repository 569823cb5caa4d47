"""One call from a task name to a trained unrolled network: architectures, method names, defaults, ``train``.

References: P3 Wang, Benning & Repetti, MLSP 2024 (arXiv 2408.08742); P4 Wang et al., arXiv 2510.09796; P1
Wang & Benning, JMLR 24(232), 2023.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from liftinv.models.unrolled import build_model
from liftinv.training.unrolled import UNROLLED_METHODS
from liftinv.unrolled.tasks import Task, TaskData, get_task, make_task_data

__all__ = [
    "METHOD_ALIASES",
    "DEFAULT_OPTIONS",
    "ARCH_OPTIONS",
    "LIFTED_ARCH_OPTIONS",
    "resolve_method",
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


#: per-architecture option overrides for every method (the dual-FB convolutions are unconstrained: a smaller
#: learning rate)
ARCH_OPTIONS: dict[str, dict[str, Any]] = {"dualfb": {"lr": 1e-3}}
#: per-architecture overrides for the lifted methods: the dual-FB pre-activations are scaled by
#: ``tau_k ~ 1/||L_k||^2`` (about 40 at initialisation), which makes lambda = 1 penalties very stiff in the
#: weights; lambda ~ ||L_k||^2 balances them
LIFTED_ARCH_OPTIONS: dict[str, dict[str, Any]] = {"dualfb": {"lambdas": 0.02, "backtrack": True}}


def resolve_method(method: str) -> str:
    """Map a short name (``backprop``, ``mac``: :data:`METHOD_ALIASES`) to a ``fit`` method.

    Registered names (``backprop-adam``, ``bregman-isgm``, ...) are returned unchanged.
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, got {type(method).__name__}")
    return METHOD_ALIASES.get(method, method)


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
    checkpoint: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool = True,
    model_kwargs: dict[str, Any] | None = None,
    **options,
):
    """Train an unrolled network on a task (one call: data, network, :func:`liftinv.training.fit`).

    Parameters
    ----------
    task : str or Task
        ``"deblur"``, ``"ct"``, ``"inpaint"`` or ``"denoise"``.
    arch : {"proxgrad", "dualfb"}
        Architecture.
    method : str
        A short alias (``backprop``, ``mac``: :data:`METHOD_ALIASES`) or a registered ``fit`` method that
        trains unrolled networks (:func:`liftinv.training.registry.methods_for` ``("unrolled")``).
    epochs, seed, device, checkpoint, resume, progress
        As for :func:`liftinv.training.fit`.
    data : TaskData, optional
        Pre-built data (default :func:`make_task_data` with ``image_size``, ``n_train``, ``image_folder``
        and ``seed``).
    model_kwargs : dict, optional
        Architecture arguments overriding the task's defaults.
    **options
        Trainer options overriding :data:`DEFAULT_OPTIONS`, :data:`ARCH_OPTIONS` and
        :data:`LIFTED_ARCH_OPTIONS` (``lr``, ``batch_size``, ``inner``, ``lambdas``, ...).

    Returns
    -------
    (model, history, data)
    """
    from liftinv.training import fit

    task = get_task(task)
    fit_method = resolve_method(method)
    if data is None:
        data = make_task_data(
            task, image_size=image_size, n_train=n_train, seed=seed, image_folder=image_folder
        )
    kw = dict(task.arch_kwargs.get(arch, {}))
    kw.update(model_kwargs or {})
    model = build_model(arch, data.operator, **kw)
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
