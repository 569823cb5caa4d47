"""Reconstruct with a trained unrolled network, or fall back to a classical method."""

from __future__ import annotations

import os
import time

from torch import Tensor, nn

from liftinv.unrolled.io import ModelMismatchError, _operator_differences, load_model

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
