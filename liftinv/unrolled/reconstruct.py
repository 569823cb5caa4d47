"""Reconstruct with a trained unrolled network, or fall back to a classical method."""

from __future__ import annotations

import os
import time

from torch import Tensor, nn

from liftinv.unrolled.io import ModelMismatchError, is_resizable, load_model, model_for_operator

__all__ = ["reconstruct"]


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
        model was trained for (:func:`liftinv.unrolled.io.model_for_operator`): another image size is fine for
        networks of blur, inpainting and denoising, other parameters or another CT geometry raise
        :class:`ModelMismatchError`. Without it, measurements of another image size are reconstructed by
        such networks with their operator rebuilt at that size.
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
        ``.x`` the reconstruction, ``.method`` (``"unrolled-<arch>"``: ``unrolled-proxgrad``,
        ``unrolled-lpd``, ... or the classical method), ``.seconds``.

    Raises
    ------
    ModelMismatchError
        ``y`` or ``operator`` do not match the model (other operator or parameters, another CT geometry).

    Examples
    --------
    >>> import torch
    >>> from liftinv.models import build_model
    >>> from liftinv.operators import make_operator
    >>> op = make_operator("blur", 16)
    >>> y = op.A(torch.rand(1, 1, 16, 16))
    >>> reconstruct(y, op, method="pinv").x.shape
    torch.Size([1, 1, 16, 16])
    >>> net = build_model("proxgrad", op, iterations=2)
    >>> reconstruct(y, op, model=net).method
    'unrolled-proxgrad'
    >>> big = make_operator("blur", 24)  # the same blur at another size: the same weights apply
    >>> reconstruct(big.A(torch.rand(1, 1, 24, 24)), big, model=net).x.shape
    torch.Size([1, 1, 24, 24])
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
        model = load_model(model)
    if not hasattr(model, "lifted_layers") or not hasattr(model, "op"):
        raise TypeError(f"model must be an unrolled network or a model file, got {type(model).__name__}")
    if not isinstance(y, Tensor):
        raise TypeError(f"reconstruct: y must be a torch.Tensor, got {type(y).__name__}")
    if operator is not None:
        model = model_for_operator(model, operator, name="reconstruct: the model")
    elif _other_image_size(model, y):  # a convex-prior network of a resizable operator: rebuilt at y's size
        desc = {**dict(model.operator.describe()), "image_size": list(y.shape[1:])}
        model = model_for_operator(model, desc, name="reconstruct: the model")
    check = getattr(model, "check_measurement", None) or model.op.check_measurement
    try:
        check(y)
    except ValueError as exc:
        raise ModelMismatchError(f"reconstruct: {exc}") from None
    start = time.perf_counter()
    dev = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    x = model.reconstruct(y.to(dev, dtype)).to(y.device)
    return ReconstructionResult(
        x, [], f"unrolled-{model.arch}", None, model.iterations, True, time.perf_counter() - start
    )


def _other_image_size(model: nn.Module, y: Tensor) -> bool:
    """Whether ``y`` is a batch of images of another size for a resizable network without its own check."""
    return (
        not hasattr(model, "check_measurement")
        and is_resizable(model)
        and y.dim() == 4
        and y.shape[1] == model.measurement_size[0]
        and tuple(y.shape[1:]) != tuple(model.measurement_size)
    )
