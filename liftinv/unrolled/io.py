"""Save and load a trained unrolled network: one file with weights, configuration and operator description."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from liftinv.models.unrolled import build_model
from liftinv.unrolled.tasks import Task

__all__ = ["FORMAT", "ModelMismatchError", "save_model", "load_model"]


#: file format tag of :func:`save_model`
FORMAT = "liftinv-unrolled-v1"


class ModelMismatchError(ValueError):
    """A saved model does not fit the operator, image size or measurements it is used with."""


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
            "are not model files: use a file written by save_model"
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
            "image size they were trained for; train a model for this size"
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
                "for this operator"
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
