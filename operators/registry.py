"""Registry of forward operators by name, and a factory that builds them (also from ``describe()``)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sized
from typing import Any

from .astra import make_tomography
from .base import LinearOperator, normalize_image_size
from .blur import Blur
from .denoising import Denoising
from .inpainting import Inpainting

__all__ = [
    "OPERATORS",
    "ALIASES",
    "MAX_SIDE",
    "MAX_ANGLES",
    "make_operator",
    "available_memory",
    "estimate_bytes",
    "format_bytes",
]

#: operator name -> factory ``(image_size, **parameters) -> LinearOperator``
OPERATORS: dict[str, Callable[..., LinearOperator]] = {
    "blur": Blur,
    "tomography": make_tomography,  # backend="torch" (Tomography, default) or "astra" (AstraTomography)
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

#: largest image side (height or width) any operator accepts, whatever the memory: a sanity cap that also
#: holds where the available memory cannot be read
MAX_SIDE = 16384
#: largest number of tomography angles (clinical scanners use a few thousand)
MAX_ANGLES = 100_000

#: bytes per pixel of the working tensors of any operator: an image, its measurement and a few working copies
#: (float32)
_IMAGE_BYTES_PER_PIXEL = 16
#: bytes per pixel of the blur's transfer function (complex128 half spectrum, its float copy, the padded
#: kernel), measured as the peak of the construction (24.5 at 4096 x 4096)
_BLUR_BYTES_PER_PIXEL = 24
#: bytes per detector x detector x angle of tomography: deepinv's float64 sampling grids, their float copy and
#: one projection of one image (measured peak of the construction 32.6 at 128 x 128 with 400 angles, + 4)
_TOMOGRAPHY_BYTES_PER_SAMPLE = 36


def available_memory() -> int | None:
    """Bytes of memory available now, or ``None`` where unknown.

    The larger of the free pages (``os.sysconf``: ``SC_PAGE_SIZE * SC_AVPHYS_PAGES``) and, when ``psutil`` is
    installed, its ``available`` (which also counts the page cache the system can reclaim).
    """
    found: list[int] = []
    try:
        found.append(int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")))
    except (AttributeError, ValueError, OSError):
        pass
    try:
        import psutil
    except ImportError:
        pass
    else:
        found.append(int(psutil.virtual_memory().available))
    return max(found) if found else None


def _angle_count(angles: Any) -> int | None:
    """The number of tomography angles of an ``angles`` argument (``None`` when it is not one: the
    constructor reports it)."""
    if isinstance(angles, bool):
        return None
    if isinstance(angles, int):
        return angles
    return len(angles) if isinstance(angles, Sized) and not isinstance(angles, str) else None


def estimate_bytes(key: str, image_size: tuple[int, int, int], parameters: dict[str, Any]) -> tuple[int, str]:
    """Memory the operator ``key`` needs for ``image_size`` images: ``(bytes, what it is)``, an estimate of the
    peak of its construction plus one image and its measurement.

    Examples
    --------
    >>> estimate_bytes("tomography", (1, 64, 64), {"angles": 30})
    (9009016, 'the sampling grids (91 x 91 detector samples per angle) and a sinogram')
    """
    channels, height, width = image_size
    images = _IMAGE_BYTES_PER_PIXEL * channels * height * width
    if key == "tomography":
        count = _angle_count(parameters.get("angles", 30)) or 1
        detectors = math.ceil(math.sqrt(2) * width)
        what = f"the sampling grids ({detectors} x {detectors} detector samples per angle) and a sinogram"
        return images + _TOMOGRAPHY_BYTES_PER_SAMPLE * detectors * detectors * max(count, 1), what
    if key == "blur":
        return images + _BLUR_BYTES_PER_PIXEL * height * width, "the transfer function and the images"
    return images, "the images and measurements"


def format_bytes(count: float) -> str:
    """``count`` bytes in words: ``"24.0 GB"`` or ``"1.3 TB"``."""
    return f"{count / 1e12:.1f} TB" if count >= 1e12 else f"{count / 1e9:.1f} GB"


def _check_sizes(key: str, image_size: Any, parameters: dict[str, Any]) -> None:
    """Refuse, before anything is allocated, sizes above :data:`MAX_SIDE` / :data:`MAX_ANGLES` or whose
    tensors would not fit in the memory available now (:func:`available_memory`).

    Raises
    ------
    ValueError
        One line naming the argument, its value and the estimate.
    """
    size = normalize_image_size(image_size)
    count = _angle_count(parameters.get("angles", 30)) if key == "tomography" else None
    # the argument to blame: the angles when there are more of them than pixels along a side
    blamed = (
        f"angles={count} (image_size {size[-1]})"
        if count is not None and count > size[-1]
        else f"image_size={image_size!r}" + (f" (angles={count})" if count is not None else "")
    )
    needed, what = estimate_bytes(key, size, parameters)
    free = available_memory()
    if free is not None and needed > free:
        raise ValueError(
            f"make_operator({key!r}): {blamed} would need about {format_bytes(needed)} for {what}; this machine "
            f"has {format_bytes(free)} available"
        )
    if max(size[1:]) > MAX_SIDE:
        raise ValueError(
            f"make_operator({key!r}): image_size={image_size!r} is larger than the limit of {MAX_SIDE} pixels "
            "per side"
        )
    if count is not None and count > MAX_ANGLES:
        raise ValueError(f"make_operator({key!r}): angles={count} is more than the limit of {MAX_ANGLES}")


def make_operator(name: str, image_size: int | tuple[int, ...], **kwargs: Any) -> LinearOperator:
    """Build a forward operator by name.

    Defaults: ``"blur"`` Gaussian with sigma 2 and circular boundary, ``"tomography"`` 30 angles over
    [0, 180) degrees, parallel beam on the torch backend (``backend="astra"``, ``geometry="fan"``: ASTRA's
    CPU projectors, :func:`liftinv.operators.astra.make_tomography`), ``"inpainting"`` random pixel mask
    with keep rate 0.5 (seed 0), ``"denoising"`` the identity. ``make_operator(**op.describe())`` rebuilds ``op``.

    Parameters
    ----------
    name : str
        One of ``OPERATORS`` (``"blur"``, ``"tomography"``, ``"inpainting"``, ``"denoising"``) or an alias
        (``"deblur"``, ``"ct"``, ``"inpaint"``, ``"denoise"``).
    image_size : int or tuple
        ``n``, ``(H, W)`` or ``(C, H, W)``.
    **kwargs
        Parameters of the operator's class (e.g. ``sigma=1.5``, ``angles=60``, ``keep_rate=0.3``;
        tomography also ``backend="torch" | "astra"`` and ``geometry="parallel" | "fan"``).

    Returns
    -------
    LinearOperator

    Raises
    ------
    ValueError
        For an unknown name, or ``"odl"`` (an ODL-wrapped operator is rebuilt with ``from_odl``); for an image
        side above :data:`MAX_SIDE`, more angles than :data:`MAX_ANGLES`, or sizes whose tensors would not
        fit in the memory available now (checked before anything is allocated).
    TypeError
        For a parameter the operator does not take.
    ImportError
        For ``backend="astra"`` without astra-toolbox (``pip install "liftinv[astra]"``).

    Examples
    --------
    >>> op = make_operator("tomography", 32, angles=10)
    >>> make_operator(**op.describe()).describe() == op.describe()
    True
    >>> make_operator("blur", 100_000)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: make_operator('blur'): image_size=100000 ...
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
    _check_sizes(key, image_size, kwargs)
    try:
        return OPERATORS[key](image_size, **kwargs)
    except TypeError as exc:
        if "unexpected keyword argument" in str(exc) or "positional argument" in str(exc):
            raise TypeError(f"make_operator({key!r}): {exc}") from None
        raise
