"""Unrolled proximal networks for imaging inverse problems, trained by back-propagation or lifted losses.

This module is the public entry point; the implementation is split into

* :mod:`liftinv.unrolled_nets` -- the networks :class:`UnrolledProxGrad` (unrolled proximal gradient in
  learned Parseval convolutional frames, LISTA-type) and :class:`UnrolledDualFB` (the unfolded dual
  forward-backward network of P3), whose iterations are lifted layers (``lifted_layers(offset)``);
* :mod:`liftinv.unrolled_train` -- lifted Bregman / MAC trainers (ISGM and BCD) registered with
  :func:`liftinv.training.fit` as ``"unrolled-bregman-isgm"``, ``"unrolled-bregman-bcd"``,
  ``"unrolled-mac-isgm"``, ``"unrolled-mac-bcd"``;
* :mod:`liftinv.unrolled_tasks` -- the tasks (``TASKS``: deblur, ct, inpaint, denoise) and their
  disjoint train/test images.

Here: :func:`build_model`, :func:`train` (one call from a task name to a trained network, with
checkpoints), :func:`save_model` / :func:`load_model` (one file: weights, configuration, operator
description) and :func:`reconstruct` (trained network, or the classical fallback of
:func:`liftinv.operators.reconstruct`).

References: P3 Wang, Benning & Repetti, *A lifted Bregman strategy for training unfolded proximal neural
network Gaussian denoisers*, MLSP 2024 (arXiv 2408.08742); P4 Wang et al., *A Unified Framework for Lifted
Training and Inversion Approaches*, arXiv 2510.09796; P1 Wang & Benning, JMLR 24(232), 2023; Le, Repetti &
Pustelnik 2023; Hasannasab et al. 2020; Gregor & LeCun 2010.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from liftinv import unrolled_train as _unrolled_train  # noqa: F401  (registers the lifted trainers)
from liftinv.unrolled_nets import (
    ARCHITECTURES,
    INITS,
    CircularConv,
    OperatorAdapter,
    ParsevalConv,
    PositiveSoftThreshold,
    UnrolledDualFB,
    UnrolledProxGrad,
    dct_filters,
)
from liftinv.unrolled_tasks import TASKS, Task, TaskData, get_task, make_task_data
from liftinv.unrolled_train import UNROLLED_METHODS, UnrolledLiftedTrainer

__all__ = [
    "UnrolledProxGrad",
    "UnrolledDualFB",
    "ParsevalConv",
    "CircularConv",
    "PositiveSoftThreshold",
    "OperatorAdapter",
    "dct_filters",
    "ARCHITECTURES",
    "INITS",
    "TASKS",
    "Task",
    "TaskData",
    "get_task",
    "make_task_data",
    "UnrolledLiftedTrainer",
    "UNROLLED_METHODS",
    "METHOD_ALIASES",
    "DEFAULT_OPTIONS",
    "ARCH_OPTIONS",
    "LIFTED_ARCH_OPTIONS",
    "resolve_method",
    "build_model",
    "train",
    "save_model",
    "load_model",
    "reconstruct",
    "ModelMismatchError",
    "FORMAT",
]

#: file format tag of :func:`save_model`
FORMAT = "liftinv-unrolled-v1"

#: short method names (CLI, benchmark) -> registered ``fit`` methods
METHOD_ALIASES: dict[str, str] = {
    "backprop": "backprop-adam",
    "mac": "unrolled-mac-isgm",
    "bregman-bcd": "unrolled-bregman-bcd",
    "bregman-isgm": "unrolled-bregman-isgm",
}

#: default options per registered method (tuned on the deblurring task, 32x32 patches)
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "backprop-adam": {"lr": 1e-2, "batch_size": 32},
    "unrolled-bregman-isgm": {"lr": 1e-2, "batch_size": 32, "inner": 1},
    "unrolled-bregman-bcd": {"lr": 1e-2, "batch_size": 32, "inner": 3},
    "unrolled-mac-isgm": {"lr": 1e-2, "batch_size": 32, "inner": 1},
    "unrolled-mac-bcd": {"lr": 1e-2, "batch_size": 32, "inner": 3},
}


#: per-architecture option overrides for every method (the dual-FB convolutions are unconstrained: a smaller
#: learning rate)
ARCH_OPTIONS: dict[str, dict[str, Any]] = {"dualfb": {"lr": 1e-3}}
#: per-architecture overrides for the lifted methods: the dual-FB pre-activations are scaled by
#: ``tau_k ~ 1/||L_k||^2`` (about 40 at initialisation), which makes lambda = 1 penalties very stiff in the
#: weights; lambda ~ ||L_k||^2 balances them
LIFTED_ARCH_OPTIONS: dict[str, dict[str, Any]] = {"dualfb": {"lambdas": 0.02, "backtrack": True}}


class ModelMismatchError(ValueError):
    """A saved model does not fit the operator, image size or measurements it is used with."""


def resolve_method(method: str) -> str:
    """Map a short name (``backprop``, ``mac``, ``bregman-bcd``, ``bregman-isgm``) to a ``fit`` method.

    Registered names (``backprop-adam``, ``unrolled-bregman-isgm``, ...) are returned unchanged.
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, got {type(method).__name__}")
    return METHOD_ALIASES.get(method, method)


def build_model(arch: str, operator, **kwargs) -> nn.Module:
    """Build an unrolled network by architecture name.

    Parameters
    ----------
    arch : {"proxgrad", "dualfb"}
        :class:`UnrolledProxGrad` or :class:`UnrolledDualFB`.
    operator : LinearOperator
        The forward operator.
    **kwargs
        Constructor arguments (``iterations``, ``channels``, ``kernel_size``, ``init``, ...).

    Returns
    -------
    nn.Module

    Examples
    --------
    >>> from liftinv.operators import make_operator
    >>> net = build_model("proxgrad", make_operator("blur", 16), iterations=2)
    >>> net.config()["arch"], net.config()["iterations"]
    ('proxgrad', 2)
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}, got {arch!r}")
    return ARCHITECTURES[arch](operator, **kwargs)


def _operator_description(operator) -> dict[str, Any]:
    if not hasattr(operator, "describe"):
        raise TypeError(
            f"the operator ({type(operator).__name__}) has no describe(): save_model needs a liftinv.operators "
            "operator (or pass operator_description=make_operator keyword dict)"
        )
    return dict(operator.describe())


def _normalize_size(size) -> list[int]:
    if isinstance(size, int):
        return [1, size, size]
    size = [int(s) for s in size]
    return [1, *size] if len(size) == 2 else size


def save_model(
    path: str | os.PathLike,
    model: nn.Module,
    task: str | Task | dict | None = None,
    config: dict[str, Any] | None = None,
    operator_description: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Save a trained unrolled network to one file: weights, architecture configuration, operator description.

    Parameters
    ----------
    path : path
        Output file (written atomically, ``torch.save`` format; readable with ``weights_only=True``).
    model : UnrolledProxGrad or UnrolledDualFB
        The network.
    task : str, Task or dict, optional
        The task it was trained for (stored for information).
    config : dict, optional
        Architecture configuration; default ``model.config()``.
    operator_description : dict, optional
        ``make_operator`` keywords; default ``model.operator.describe()``.
    metadata : dict, optional
        Anything JSON-like (training method, epochs, test PSNR, ...).

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile
    >>> from liftinv.operators import make_operator
    >>> net = build_model("proxgrad", make_operator("blur", 16), iterations=2)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = save_model(os.path.join(d, "m.pt"), net, task="deblur")
    ...     load_model(p).config() == net.config()
    True
    """
    from liftinv.training import save_checkpoint

    if not hasattr(model, "config") or not hasattr(model, "arch"):
        raise TypeError(
            f"model must be an unrolled network (UnrolledProxGrad/UnrolledDualFB), got {type(model).__name__}"
        )
    cfg = dict(config if config is not None else model.config())
    cfg.setdefault("arch", model.arch)
    if isinstance(task, Task):
        task_info: Any = {"name": task.name, "noise": task.noise, "description": task.description}
    else:
        task_info = task
    payload = {
        "format": FORMAT,
        "config": cfg,
        "operator": operator_description
        if operator_description is not None
        else _operator_description(model.operator),
        "image_size": list(model.image_size),
        "measurement_size": list(model.measurement_size),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "task": task_info,
        "metadata": dict(metadata or {}),
        "saved": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    save_checkpoint(path, payload)
    return Path(path)


def _read(path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report any unpickling failure with the path
        raise ValueError(f"{str(path)!r} is not a liftinv unrolled model file: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(
            f"{str(path)!r} is not a liftinv unrolled model file (format {FORMAT!r}); training checkpoints "
            "(*.ckpt) are not model files: use the file given to --out / save_model"
        )
    return payload


def _operator_differences(saved: dict[str, Any], other: dict[str, Any]) -> list[str]:
    keys = sorted(set(saved) | set(other))
    diffs = []
    for k in keys:
        a, b = saved.get(k), other.get(k)
        if k == "image_size":
            a, b = _normalize_size(a) if a is not None else a, _normalize_size(b) if b is not None else b
        if a != b:
            short = lambda v: repr(v) if len(repr(v)) < 40 else repr(v)[:37] + "..."  # noqa: E731
            diffs.append(f"{k}: model {short(a)} vs requested {short(b)}")
    return diffs


def load_model(
    path: str | os.PathLike,
    *,
    expected_operator=None,
    image_size=None,
    device: str | torch.device | None = "cpu",
) -> nn.Module:
    """Load a network written by :func:`save_model` (rebuilding its operator from the stored description).

    Parameters
    ----------
    path : path
        The model file.
    expected_operator : LinearOperator or dict, optional
        Fail unless the model was trained for this operator (compared through ``describe()``).
    image_size : int or tuple, optional
        Fail unless the model was trained for this image size.
    device : str or torch.device
        Where to put the network.

    Returns
    -------
    nn.Module
        The network in eval mode; ``model.metadata`` holds the stored task and metadata.

    Raises
    ------
    FileNotFoundError
        No such file.
    ModelMismatchError
        (a ``ValueError``) the model was trained for another operator or image size; the message names the
        differences.
    ValueError
        Not a model file.
    """
    from liftinv.operators import make_operator
    from liftinv.training import resolve_device

    payload = _read(path)
    saved_size = _normalize_size(payload["image_size"])
    if image_size is not None and _normalize_size(image_size) != saved_size:
        raise ModelMismatchError(
            f"model file {str(path)!r} was trained for images of size {saved_size} (C, H, W), not "
            f"{_normalize_size(image_size)}: unrolled networks embed their operator and only work at the "
            "image size they were trained for; train a model for this size (liftinv train --image-size ...)"
        )
    if expected_operator is not None:
        other = (
            expected_operator
            if isinstance(expected_operator, dict)
            else _operator_description(expected_operator)
        )
        diffs = _operator_differences(payload["operator"], other)
        if diffs:
            raise ModelMismatchError(
                f"model file {str(path)!r} was trained for another operator ({'; '.join(diffs)}); train a model "
                "for this operator (liftinv train ...)"
            )
    desc = dict(payload["operator"])
    operator = make_operator(**desc)
    cfg = dict(payload["config"])
    arch = cfg.pop("arch")
    model = build_model(arch, operator, **cfg)
    missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
    if missing or unexpected:
        raise ValueError(
            f"model file {str(path)!r} does not match its architecture {arch!r}: missing {missing}, unexpected "
            f"{unexpected}"
        )
    model.metadata = {"task": payload.get("task"), **payload.get("metadata", {}), "path": str(path)}
    return model.to(resolve_device(device)).eval()


def reconstruct(
    y: Tensor,
    operator=None,
    model: nn.Module | str | os.PathLike | None = None,
    method: str | None = None,
    **kwargs,
):
    """Reconstruct images from measurements with a trained unrolled network, or classically.

    Parameters
    ----------
    y : Tensor
        Measurements ``[B, *measurement_size]``.
    operator : LinearOperator, optional
        The forward operator. Required without a model; with a model it is checked against the operator the
        model was trained for (a mismatch raises :class:`ModelMismatchError`).
    model : nn.Module or path, optional
        A trained unrolled network (or a file for :func:`load_model`). When None, fall back to the classical
        :func:`liftinv.operators.reconstruct`.
    method : str, optional
        Without a model: ``"pinv"``, ``"tikhonov"`` or ``"tv"`` (default ``"tv"``). With a model: None or
        ``"unrolled"``.
    **kwargs
        Passed to :func:`liftinv.operators.reconstruct` (``alpha``, ``max_iter``, ``progress``, ...).

    Returns
    -------
    liftinv.operators.ReconstructionResult
        ``.x`` the reconstruction, ``.method`` (``"unrolled-proxgrad"`` / ``"unrolled-dualfb"`` or the
        classical method), ``.seconds``.

    Raises
    ------
    ModelMismatchError
        ``y`` or ``operator`` do not match the model (other operator, other image size).

    Examples
    --------
    >>> from liftinv.operators import make_operator
    >>> op = make_operator("blur", 16)
    >>> y = op.A(torch.rand(1, 1, 16, 16))
    >>> reconstruct(y, op, method="pinv").x.shape
    torch.Size([1, 1, 16, 16])
    >>> net = build_model("proxgrad", op, iterations=2)
    >>> reconstruct(y, op, model=net).method
    'unrolled-proxgrad'
    """
    from liftinv.operators import ReconstructionResult
    from liftinv.operators import reconstruct as classical

    if model is None:
        if operator is None:
            raise ValueError(
                "reconstruct: pass operator= (classical reconstruction) or model= (trained network)"
            )
        return classical(y, operator, method or "tv", **kwargs)
    if method not in (None, "unrolled"):
        raise ValueError(
            f"reconstruct: method={method!r} is a classical method but a model was given; pass model=None for "
            "classical reconstructions"
        )
    if kwargs:
        raise TypeError(f"reconstruct: unexpected keyword arguments for a model: {sorted(kwargs)}")
    if isinstance(model, str | os.PathLike):
        model = load_model(model, expected_operator=operator)
    if not hasattr(model, "lifted_layers") or not hasattr(model, "op"):
        raise TypeError(f"model must be an unrolled network or a model file, got {type(model).__name__}")
    if operator is not None and hasattr(operator, "describe") and hasattr(model.operator, "describe"):
        diffs = _operator_differences(dict(model.operator.describe()), dict(operator.describe()))
        if diffs:
            raise ModelMismatchError(
                f"reconstruct: the model was trained for another operator ({'; '.join(diffs)})"
            )
    if not isinstance(y, Tensor):
        raise TypeError(f"reconstruct: y must be a torch.Tensor, got {type(y).__name__}")
    try:
        model.op.check_measurement(y)
    except ValueError as exc:
        raise ModelMismatchError(f"reconstruct: {exc}") from None
    start = time.perf_counter()
    dev = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    x = model.reconstruct(y.to(dev, dtype)).to(y.device)
    return ReconstructionResult(
        x, [], f"unrolled-{model.arch}", None, model.iterations, True, time.perf_counter() - start
    )


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
        ``backprop``, ``mac``, ``bregman-bcd``, ``bregman-isgm`` (see :data:`METHOD_ALIASES`) or any
        registered ``fit`` method.
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
