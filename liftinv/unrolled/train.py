"""One call from a task name to a trained unrolled network: architectures, method names, defaults, ``train``.

References: P3 Wang, Benning & Repetti, MLSP 2024 (arXiv 2408.08742); P4 Wang et al., arXiv 2510.09796; P1
Wang & Benning, JMLR 24(232), 2023.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from liftinv.files import save_text_file
from liftinv.models import ARCHITECTURES, build_model
from liftinv.training.registry import METHOD_ALIASES  # short names -> registered methods
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
    "CheckpointMismatchError",
    "run_settings",
    "settings_path",
    "check_checkpoint",
]


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


class CheckpointMismatchError(ValueError):
    """A training checkpoint written by a run with other settings (task, operator, network, sizes, data, seed
    or method) than the run that would resume it.

    Attributes
    ----------
    checkpoint : str
        The checkpoint file.
    differences : str
        The differing settings in words, e.g. ``"seed: 0 in the checkpoint, 1 now"``.
    """

    def __init__(self, checkpoint: str, differences: str, remedy: str) -> None:
        self.checkpoint = checkpoint
        self.differences = differences
        super().__init__(f"checkpoint {checkpoint!r} belongs to another run ({differences}); {remedy}")


def settings_path(checkpoint: str | os.PathLike) -> Path:
    """The file next to a checkpoint that holds the settings of its run: ``<checkpoint>.json``."""
    return Path(f"{os.fspath(checkpoint)}.json")


def run_settings(task: Task, arch: str, method: str, seed: int, data: TaskData, model: nn.Module) -> dict:
    """The settings a checkpoint must share with the run that resumes it (JSON-ready).

    Task, operator description, architecture and network configuration, image size, number of training
    samples, where the training and test images come from, seed and (registered) training method. Training
    options (learning rate, batch size) and the number of epochs may change between runs.
    """
    config = model.config() if hasattr(model, "config") else {}
    settings = {
        "task": task.name,
        "operator": data.operator.describe(),
        "arch": arch,
        "network": config,
        "image_size": data.image_size,
        "n_train": len(data.train[1]),
        "train_data": data.train_source,
        "test_data": data.test_source,
        "seed": seed,
        "method": resolve_method(method),
    }
    return json.loads(json.dumps(settings, default=str))


#: settings chosen directly by the user; when one of them differs, the settings derived from it (operator,
#: network configuration, data sources) are not listed as well
_PRIMARY_SETTINGS = ("task", "arch", "image_size", "n_train", "seed", "method")


def _differences(stored: dict, current: dict, prefix: str = "") -> list[str]:
    """``"<setting>: <stored> in the checkpoint, <current> now"`` for each differing setting: only the
    :data:`_PRIMARY_SETTINGS` when one of them differs; the keys of a nested dict (the operator description,
    the network configuration) one by one when its ``name`` / ``arch`` is the same."""
    keys = list(dict.fromkeys([*stored, *current]))
    if not prefix and any(stored.get(k) != current.get(k) for k in _PRIMARY_SETTINGS):
        keys = [k for k in keys if k in _PRIMARY_SETTINGS]
    found = []
    for key in keys:
        old, new = stored.get(key), current.get(key)
        same_kind = isinstance(old, dict) and isinstance(new, dict)
        if same_kind and all(old.get(k) == new.get(k) for k in ("name", "arch")):
            found += _differences(old, new, f"{prefix}{key} ")
        elif old != new:
            found.append(f"{prefix}{key}: {old!r} in the checkpoint, {new!r} now")
    return found


def _network_differences(stored_weights: dict, model: nn.Module) -> list[str]:
    """The weights whose names or shapes differ between a checkpoint's network and ``model``."""
    current = model.state_dict()
    found = [f"weights {k} missing" for k in current if k not in stored_weights]
    found += [f"unexpected weights {k}" for k in stored_weights if k not in current]
    found += [
        f"weights {k}: shape {list(stored_weights[k].shape)} in the checkpoint, {list(v.shape)} now"
        for k, v in current.items()
        if k in stored_weights
        and hasattr(stored_weights[k], "shape")
        and tuple(stored_weights[k].shape) != tuple(v.shape)
    ]
    return found


def check_checkpoint(
    checkpoint: str | os.PathLike,
    settings: dict,
    model: nn.Module,
    remedy: str = "pass another checkpoint path, or resume=False to start over",
) -> None:
    """Refuse to resume a checkpoint of another run (before anything is trained or written).

    Parameters
    ----------
    checkpoint : path
        The checkpoint; nothing is checked when it does not exist.
    settings : dict
        :func:`run_settings` of the run that would resume it.
    model : nn.Module
        The network that would load its weights.
    remedy : str
        What the message tells the user to do.

    Raises
    ------
    CheckpointMismatchError
        When the settings stored next to the checkpoint (:func:`settings_path`) differ, naming each
        difference; for a checkpoint without stored settings (written before they were stored, or by
        :func:`liftinv.training.fit` directly), when its network's weights differ in names or shapes.
    """
    from liftinv.training import load_checkpoint

    path = Path(checkpoint)
    if not path.is_file():
        return
    stored_path = settings_path(path)
    if stored_path.is_file():
        try:
            stored = json.loads(stored_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise CheckpointMismatchError(
                str(path), f"its settings file {stored_path} is not readable JSON", remedy
            ) from None
        found = _differences(stored, settings) if isinstance(stored, dict) else ["unreadable settings"]
    else:
        found = _network_differences(load_checkpoint(path)["model"], model)
    if found:
        raise CheckpointMismatchError(str(path), "; ".join(found), remedy)


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
    distributed: str | None = None,
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
        As for :func:`liftinv.training.fit`. A checkpoint resumes only a run with the same settings
        (:func:`run_settings`, stored next to it in ``<checkpoint>.json``); with ``resume=False`` an existing
        checkpoint is deleted once the arguments are checked, just before training starts.
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
    distributed : {None, "data"}
        ``"data"``: data-parallel training on the ranks of an initialised ``torch.distributed`` process group
        (torchrun; :func:`liftinv.training.fit`), every rank calling ``train`` with the same arguments (the
        data and the network are built from the seed, so they agree; checked); rank 0 alone writes the
        checkpoint and its settings file.
    **options
        Trainer options overriding :data:`DEFAULT_OPTIONS`, :data:`ARCH_OPTIONS` and
        :data:`LIFTED_ARCH_OPTIONS` (``lr``, ``batch_size``, ``inner``, ``lambdas``, ...).

    Returns
    -------
    (model, history, data)

    Raises
    ------
    CheckpointMismatchError
        When ``resume`` and ``checkpoint`` belongs to a run with other settings (nothing is changed).
    """
    from liftinv.training import fit
    from liftinv.training.registry import get_trainer

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
    writer = True  # this process writes the checkpoint's settings (rank 0 when distributed)
    if distributed is not None:
        import torch.distributed as dist

        writer = not dist.is_initialized() or dist.get_rank() == 0
    if checkpoint is not None:
        get_trainer(fit_method, model)  # a method without an implementation for this network: refused first
        settings = run_settings(task, arch, fit_method, seed, data, model)
        if resume:
            check_checkpoint(checkpoint, settings, model)
        elif writer:
            Path(checkpoint).unlink(missing_ok=True)
        if epochs > 0 and writer:
            save_text_file(json.dumps(settings, indent=1), settings_path(checkpoint))
    try:
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
            distributed=distributed,
            **opts,
        )
    except BaseException:
        # no epoch ended: leave no settings file
        if writer and checkpoint is not None and not Path(checkpoint).exists():
            settings_path(checkpoint).unlink(missing_ok=True)
        raise
    return model, history, data
