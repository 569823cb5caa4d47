"""Registry of forward operators by name, and a factory that builds them (also from ``describe()``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import LinearOperator
from .blur import Blur
from .denoising import Denoising
from .inpainting import Inpainting
from .tomography import Tomography

__all__ = ["OPERATORS", "ALIASES", "make_operator"]

#: operator name -> factory ``(image_size, **parameters) -> LinearOperator``
OPERATORS: dict[str, Callable[..., LinearOperator]] = {
    "blur": Blur,
    "tomography": Tomography,
    "inpainting": Inpainting,
    "denoising": Denoising,
}

#: alternative names accepted by :func:`make_operator` (task names used elsewhere in liftinv)
ALIASES: dict[str, str] = {
    "deblur": "blur",
    "ct": "tomography",
    "inpaint": "inpainting",
    "denoise": "denoising",
}


def make_operator(name: str, image_size: int | tuple[int, ...], **kwargs: Any) -> LinearOperator:
    """Build a forward operator by name.

    Defaults: ``"blur"`` Gaussian with sigma 2 and circular boundary, ``"tomography"`` 30 angles over
    [0, 180) degrees, ``"inpainting"`` random pixel mask with keep rate 0.5 (seed 0), ``"denoising"`` the
    identity. ``make_operator(**op.describe())`` rebuilds ``op``.

    Parameters
    ----------
    name : str
        One of ``OPERATORS`` (``"blur"``, ``"tomography"``, ``"inpainting"``, ``"denoising"``) or an alias
        (``"deblur"``, ``"ct"``, ``"inpaint"``, ``"denoise"``).
    image_size : int or tuple
        ``n``, ``(H, W)`` or ``(C, H, W)``.
    **kwargs
        Parameters of the operator's class (e.g. ``sigma=1.5``, ``angles=60``, ``keep_rate=0.3``).

    Returns
    -------
    LinearOperator

    Raises
    ------
    ValueError
        For an unknown name, or ``"odl"`` (an ODL-wrapped operator is rebuilt with ``from_odl``).
    TypeError
        For a parameter the operator does not take.

    Examples
    --------
    >>> op = make_operator("tomography", 32, angles=10)
    >>> make_operator(**op.describe()).describe() == op.describe()
    True
    """
    if not isinstance(name, str):
        raise TypeError(f"make_operator: name must be a str, got {type(name).__name__}")
    key = ALIASES.get(name, name)
    if key == "odl":
        raise ValueError(
            "make_operator: an ODL-wrapped operator cannot be rebuilt from its description; "
            "wrap the ODL operator again with liftinv.operators.from_odl(op)"
        )
    if key not in OPERATORS:
        raise ValueError(f"make_operator: unknown operator {name!r}; expected one of {', '.join(OPERATORS)}")
    try:
        return OPERATORS[key](image_size, **kwargs)
    except TypeError as exc:
        if "unexpected keyword argument" in str(exc) or "positional argument" in str(exc):
            raise TypeError(f"make_operator({key!r}): {exc}") from None
        raise
