"""Save and load a trained unrolled network: one file with weights, configuration and operator description.

Also the one place that decides whether a trained network applies to another operator
(:func:`model_for_operator`): the same operator at another image size is fine for networks of
shift-invariant operators (blur, inpainting, denoising: :func:`is_resizable`); any other parameter, or another
CT geometry, is refused with a :class:`ModelMismatchError` that names both values. :func:`noise_mismatch` says
whether measurements are too much noisier or cleaner than the training data.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from liftinv.models.unrolled import build_model
from liftinv.unrolled.tasks import Task

__all__ = [
    "FORMAT",
    "RESIZABLE_OPERATORS",
    "ModelMismatchError",
    "is_resizable",
    "operator_differences",
    "model_for_operator",
    "NOISE_FACTOR",
    "ESTIMATED_NOISE_FACTOR",
    "noise_mismatch",
    "save_model",
    "load_model",
]


#: file format tag of :func:`save_model`
FORMAT = "liftinv-unrolled-v1"


#: operators whose measurements are images of the image's size and whose parameters do not depend on it: a
#: network trained on patches for them applies to images of any size (the operator rebuilt at that size)
RESIZABLE_OPERATORS = ("blur", "inpainting", "denoising")


class ModelMismatchError(ValueError):
    """A saved model does not fit the operator, image size or measurements it is used with."""


#: a network applies to measurements whose noise level is within this factor of its training noise (a network
#: trained at one noise level under-smooths noisier data and over-smooths cleaner data)
NOISE_FACTOR = 2.0
#: the upper factor for a noise level estimated from the measurements (:func:`liftinv.datasets.estimate_noise`),
#: which errs upwards on edges and texture: measured on bundled images at the tasks' noise levels, up to 1.8x
#: the true level for CT and 3.2x for inpainting at 64x64; the lower factor stays :data:`NOISE_FACTOR`
ESTIMATED_NOISE_FACTOR = 4.0


def noise_mismatch(trained: float | None, noise: float, *, estimated: bool = False) -> str | None:
    """Whether measurements of noise level ``noise`` are out of reach of a network trained at ``trained``.

    Parameters
    ----------
    trained : float or None
        The training noise level of the network (None: unknown, never a mismatch).
    noise : float
        The noise level of the measurements: known (given, or simulated), or estimated from them.
    estimated : bool
        Whether ``noise`` is an estimate: its upper limit is :data:`ESTIMATED_NOISE_FACTOR` times the training
        noise instead of :data:`NOISE_FACTOR`; an estimate for a network trained without noise is not judged
        (an estimate is never exactly 0).

    Returns
    -------
    str or None
        None when ``noise`` is within ``[trained / NOISE_FACTOR, trained * factor]``; else a phrase naming both
        levels and the allowed range.

    Examples
    --------
    >>> noise_mismatch(0.01, 0.015) is None
    True
    >>> noise_mismatch(0.01, 0.05)
    'noise 0.05, but the model was trained for noise 0.01 (it applies from 0.005 to 0.02: a factor 2)'
    >>> noise_mismatch(0.01, 0.03, estimated=True) is None  # an estimate may exceed the true level
    True
    """
    if trained is None or (estimated and trained == 0):
        return None
    upper = ESTIMATED_NOISE_FACTOR if estimated else NOISE_FACTOR
    low, high = trained / NOISE_FACTOR, trained * upper
    if low <= noise <= high:
        return None
    factor = f"{NOISE_FACTOR:g}" if upper == NOISE_FACTOR else f"{NOISE_FACTOR:g} below, {upper:g} above"
    return (
        f"noise {noise:.3g}, but the model was trained for noise {trained:.3g} (it applies from {low:.3g} to "
        f"{high:.3g}: a factor {factor})"
    )


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
    model : nn.Module
        The network: a :data:`liftinv.models.ARCHITECTURES` network (``UnrolledProxGrad``, ``UnrolledDualFB``,
        ``LearnedPrimalDual``, ``UnrolledProxGradCNN``).
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
            f"model must be an unrolled network (liftinv.models.ARCHITECTURES), got {type(model).__name__}"
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
    from liftinv.files import load_torch_file

    path = Path(path)
    payload = load_torch_file(path, "model file")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(
            f"{str(path)!r} is not a liftinv unrolled model file (format {FORMAT!r}); training checkpoints "
            "are not model files: use a file written by save_model"
        )
    return payload


def operator_differences(saved: dict[str, Any], other: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """The parameters in which two operator descriptions (``describe()`` dicts) differ.

    Parameters
    ----------
    saved, other : dict
        The model's operator description and the requested one.

    Returns
    -------
    list of (str, object, object)
        ``(key, model value, requested value)`` in key order (image sizes compared as ``[C, H, W]``).

    Examples
    --------
    >>> operator_differences({"name": "blur", "image_size": [1, 16, 16], "sigma": 2.0},
    ...                      {"name": "blur", "image_size": 16, "sigma": 1.5})
    [('sigma', 2.0, 1.5)]
    """
    diffs = []
    for k in sorted(set(saved) | set(other)):
        a, b = saved.get(k), other.get(k)
        if k == "image_size":
            a, b = _normalize_size(a) if a is not None else a, _normalize_size(b) if b is not None else b
        if a != b:
            diffs.append((k, a, b))
    return diffs


def _short(value) -> str:
    text = repr(value)
    return text if len(text) < 40 else text[:37] + "..."


def _operator_differences(saved: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """``"key: model A vs requested B"`` per differing parameter (:func:`operator_differences`)."""
    return [
        f"{k}: model {_short(a)} vs requested {_short(b)}" for k, a, b in operator_differences(saved, other)
    ]


def is_resizable(model: nn.Module) -> bool:
    """Whether a trained network reconstructs images of any size (its operator rebuilt at that size).

    True for networks of the shift-invariant operators of :data:`RESIZABLE_OPERATORS` (measurements are
    images of the same size): the learned CNN networks say so themselves (``model.resizable``); the
    convex-prior networks (convolutional transforms, steps relative to ``||A||``) apply through
    ``model.with_operator``. False for tomography (another image size is another geometry).

    Parameters
    ----------
    model : nn.Module
        An unrolled network.

    Returns
    -------
    bool

    Examples
    --------
    >>> from liftinv.operators import make_operator
    >>> is_resizable(build_model("proxgrad", make_operator("blur", 16), iterations=1))
    True
    >>> is_resizable(build_model("lpd", make_operator("tomography", 16, angles=4), iterations=1, width=4))
    False
    """
    flag = getattr(model, "resizable", None)
    if isinstance(flag, bool):
        return flag
    operator = getattr(model, "operator", None)
    return bool(
        getattr(operator, "name", None) in RESIZABLE_OPERATORS
        and hasattr(operator, "describe")
        and hasattr(model, "with_operator")
        and tuple(getattr(model, "measurement_size", ())) == tuple(getattr(model, "image_size", (None,)))
    )


def _size_message(name: str, model: nn.Module, saved: list[int], requested: list[int]) -> str:
    desc = dict(model.operator.describe()) if hasattr(model.operator, "describe") else {}
    params = ", ".join(f"{k}={_short(v)}" for k, v in desc.items() if k not in ("name", "image_size"))
    kind = desc.get("name", type(model.operator).__name__)
    return (
        f"{name} was trained for images of size {saved} (C, H, W), not {requested}: a {kind} network "
        f"({params}) works only at the geometry it was trained for; train a model for this image size"
    )


def model_for_operator(model: nn.Module, operator, *, name: str = "the model") -> nn.Module:
    """The network to apply to the measurements of ``operator``: ``model`` itself, or its copy at another size.

    Parameters
    ----------
    model : nn.Module
        A trained unrolled network.
    operator : LinearOperator or dict
        The operator of the measurements (or its ``describe()`` dict).
    name : str
        How error messages name the model (e.g. ``"model file 'm.pt'"``).

    Returns
    -------
    nn.Module
        ``model`` when the operator is the model's, or another size of it for a network that reconstructs
        any size (the learned CNN networks); ``model.with_operator(operator)`` (same weights) for a
        convex-prior network at another image size.

    Raises
    ------
    ModelMismatchError
        Another operator or other operator parameters (the message names both values of each), or another
        image size for a network that is not :func:`is_resizable` (tomography: another geometry).

    Examples
    --------
    >>> from liftinv.operators import make_operator
    >>> net = build_model("proxgrad", make_operator("blur", 16), iterations=1)
    >>> model_for_operator(net, make_operator("blur", 24)).image_size
    (1, 24, 24)
    >>> model_for_operator(net, make_operator("blur", 16, sigma=1.5))
    Traceback (most recent call last):
    ...
    liftinv.unrolled.io.ModelMismatchError: the model was trained for another operator (sigma: model 2.0 vs requested 1.5); train a model for this operator
    """
    mine = getattr(model, "operator", None)
    if not hasattr(mine, "describe"):
        return model
    if isinstance(operator, dict):
        other = dict(operator)
    elif hasattr(operator, "describe"):
        other = dict(operator.describe())
    else:
        return model
    diffs = operator_differences(dict(mine.describe()), other)
    if not diffs:
        return model
    resizable = is_resizable(model)
    if [k for k, _, _ in diffs] == ["image_size"]:
        _, saved, requested = diffs[0]
        if not resizable:
            raise ModelMismatchError(_size_message(name, model, saved, requested))
        if isinstance(getattr(model, "resizable", None), bool):
            return model  # rebuilds its operator at the size of each input
        from liftinv.operators import make_operator

        other_op = make_operator(**other) if isinstance(operator, dict) else operator
        resized = model.with_operator(other_op).train(model.training)
        if hasattr(model, "metadata"):
            resized.metadata = model.metadata
        return resized
    shown = [d for d in diffs if not (resizable and d[0] == "image_size")]
    text = "; ".join(f"{k}: model {_short(a)} vs requested {_short(b)}" for k, a, b in shown)
    raise ModelMismatchError(
        f"{name} was trained for another operator ({text}); train a model for this operator"
    )


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
        Fail unless the model was trained for this operator (compared through ``describe()``; another image
        size as for ``image_size``); the returned network applies to its measurements.
    image_size : int or tuple, optional
        The image size the model will be used at: another size than the training one is fine for
        :func:`is_resizable` networks (blur, inpainting, denoising; :func:`model_for_operator`), refused
        otherwise (tomography: another geometry).
    device : str or torch.device
        Where to put the network.

    Returns
    -------
    nn.Module
        The network in eval mode (at ``image_size`` / for ``expected_operator``); ``model.metadata`` holds
        the stored task and metadata.

    Raises
    ------
    FileNotFoundError
        No such file.
    ModelMismatchError
        (a ``ValueError``) the model was trained for another operator, or for another image size and is not
        resizable; the message names the differences.
    ValueError
        Not a model file.
    """
    from liftinv.operators import make_operator
    from liftinv.training import resolve_device

    payload = _read(path)
    name = f"model file {str(path)!r}"
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
    model.eval()
    if image_size is not None:
        model = model_for_operator(model, {**desc, "image_size": _normalize_size(image_size)}, name=name)
    if expected_operator is not None:
        if isinstance(expected_operator, dict):
            other = dict(expected_operator)
        else:
            other = _operator_description(expected_operator)
        model = model_for_operator(model, other, name=name)
    return model.to(resolve_device(device)).eval()
