"""Analytic phantoms: the modified Shepp-Logan head phantom and random ellipses (seeded).

Ellipses are rasterised exactly at any resolution (no resampling of a fixed bitmap), averaging
``oversample x oversample`` sub-pixel samples per pixel to anti-alias the edges. Coordinates: the image
covers ``[-1, 1]^2``, ``x`` to the right, ``y`` up (row 0 is the top), as in Shepp & Logan (1974).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["SHEPP_LOGAN_ELLIPSES", "ellipse_phantom", "shepp_logan", "random_ellipses"]

#: Modified Shepp-Logan (Toft 1996): (value, semi-axis a, semi-axis b, centre x, centre y, angle in degrees).
#: Values add up; the result lies in [0, 1] (the same phantom as ``skimage.data.shepp_logan_phantom``).
SHEPP_LOGAN_ELLIPSES: tuple[tuple[float, float, float, float, float, float], ...] = (
    (1.0, 0.69, 0.92, 0.0, 0.0, 0.0),
    (-0.8, 0.6624, 0.8740, 0.0, -0.0184, 0.0),
    (-0.2, 0.1100, 0.3100, 0.22, 0.0, -18.0),
    (-0.2, 0.1600, 0.4100, -0.22, 0.0, 18.0),
    (0.1, 0.2100, 0.2500, 0.0, 0.35, 0.0),
    (0.1, 0.0460, 0.0460, 0.0, 0.1, 0.0),
    (0.1, 0.0460, 0.0460, 0.0, -0.1, 0.0),
    (0.1, 0.0460, 0.0230, -0.08, -0.605, 0.0),
    (0.1, 0.0230, 0.0230, 0.0, -0.606, 0.0),
    (0.1, 0.0230, 0.0460, 0.06, -0.605, 0.0),
)


def _size_pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, bool):
        raise TypeError(f"size must be an int or (H, W), got {size!r}")
    if isinstance(size, int):
        pair = (size, size)
    else:
        try:
            pair = tuple(int(s) for s in size)
        except (TypeError, ValueError):
            raise TypeError(f"size must be an int or (H, W), got {size!r}") from None
    if len(pair) != 2 or min(pair) <= 0:
        raise ValueError(f"size must be a positive int or a pair (H, W) of positive ints, got {size!r}")
    return pair  # type: ignore[return-value]


def _sample_grid(height: int, width: int, oversample: int) -> tuple[np.ndarray, np.ndarray]:
    # Sub-pixel sample centres in [-1, 1]^2; x grows with the column, y decreases with the row.
    xs = -1 + (np.arange(width * oversample) + 0.5) * (2.0 / (width * oversample))
    ys = 1 - (np.arange(height * oversample) + 0.5) * (2.0 / (height * oversample))
    return np.meshgrid(xs, ys)


def ellipse_phantom(
    ellipses: Sequence[Sequence[float]],
    size: int | Sequence[int] = 128,
    *,
    oversample: int = 2,
    mode: str = "add",
) -> Tensor:
    """Rasterise ellipses ``(value, a, b, x0, y0, angle_deg)`` on ``[-1, 1]^2``.

    A point ``(x, y)`` is inside an ellipse if ``(u / a)^2 + (v / b)^2 <= 1`` with ``(u, v)`` its
    coordinates relative to ``(x0, y0)`` rotated by ``-angle``.

    Parameters
    ----------
    ellipses : sequence of 6-tuples
        ``(value, a, b, x0, y0, angle_deg)``.
    size : int or (H, W), default 128
        Output size.
    oversample : int, default 2
        Sub-pixel samples per axis (anti-aliasing); 1 samples pixel centres only.
    mode : {"add", "paint"}, default "add"
        "add": values add up (Shepp-Logan); "paint": each ellipse overwrites what is below it.

    Returns
    -------
    Tensor
        float32 ``[1, 1, H, W]``.

    Examples
    --------
    >>> disk = ellipse_phantom([(1.0, 0.5, 0.5, 0.0, 0.0, 0.0)], 64)
    >>> abs(float(disk.mean()) - math.pi * 0.25 / 4) < 0.01  # area pi r^2 over the area 4 of the square
    True
    """
    height, width = _size_pair(size)
    if isinstance(oversample, bool) or not isinstance(oversample, int) or oversample < 1:
        raise ValueError(f"ellipse_phantom: oversample must be a positive int, got {oversample!r}")
    if mode not in ("add", "paint"):
        raise ValueError(f"ellipse_phantom: mode must be 'add' or 'paint', got {mode!r}")
    xx, yy = _sample_grid(height, width, oversample)
    image = np.zeros_like(xx)
    for ellipse in ellipses:
        if len(ellipse) != 6:
            raise ValueError(
                f"ellipse_phantom: each ellipse is (value, a, b, x0, y0, angle_deg), got {ellipse!r}"
            )
        value, a, b, x0, y0, angle = (float(v) for v in ellipse)
        if a <= 0 or b <= 0:
            raise ValueError(f"ellipse_phantom: semi-axes must be positive, got a={a}, b={b}")
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        u = (xx - x0) * c + (yy - y0) * s
        v = -(xx - x0) * s + (yy - y0) * c
        inside = (u / a) ** 2 + (v / b) ** 2 <= 1.0
        if mode == "add":
            image[inside] += value
        else:
            image[inside] = value
    image = image.reshape(height, oversample, width, oversample).mean(axis=(1, 3))
    return torch.from_numpy(image).to(torch.float32)[None, None]


def shepp_logan(size: int | Sequence[int] = 128, *, oversample: int = 2) -> Tensor:
    """Modified Shepp-Logan head phantom at any resolution, values in ``[0, 1]``.

    Parameters
    ----------
    size : int or (H, W), default 128
        Output size.
    oversample : int, default 2
        Sub-pixel samples per axis.

    Returns
    -------
    Tensor
        float32 ``[1, 1, H, W]`` in ``[0, 1]``.

    Examples
    --------
    >>> x = shepp_logan(64)
    >>> tuple(x.shape), 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    ((1, 1, 64, 64), True)

    References
    ----------
    Shepp & Logan, The Fourier reconstruction of a head section, IEEE Trans. Nucl. Sci. 21, 1974;
    Toft, The Radon transform: theory and implementation, PhD thesis, DTU, 1996 (modified contrast).
    """
    return ellipse_phantom(SHEPP_LOGAN_ELLIPSES, size, oversample=oversample).clamp_(0.0, 1.0)


def random_ellipses(
    n: int,
    size: int | Sequence[int] = 64,
    *,
    n_ellipses: tuple[int, int] = (3, 8),
    seed: int = 0,
    oversample: int = 2,
) -> Tensor:
    """Random piecewise-constant phantoms: painted ellipses inside a random body ellipse (seeded).

    Each image has a body ellipse (value in [0.2, 0.5]) and ``k ~ U{n_ellipses}`` smaller ellipses
    (semi-axes in [0.05, 0.35], value in [0, 1], random centre and angle) painted over it in turn, so
    values stay in ``[0, 1]`` and the images are piecewise constant (good test images for TV).

    Parameters
    ----------
    n : int
        Number of images.
    size : int or (H, W), default 64
        Image size.
    n_ellipses : (int, int), default (3, 8)
        Inclusive range of the number of inner ellipses.
    seed : int, default 0
        Seed (same seed, same images).
    oversample : int, default 2
        Sub-pixel samples per axis.

    Returns
    -------
    Tensor
        float32 ``[n, 1, H, W]`` in ``[0, 1]``.

    Examples
    --------
    >>> x = random_ellipses(4, 32, seed=1)
    >>> tuple(x.shape), torch.equal(x, random_ellipses(4, 32, seed=1))
    ((4, 1, 32, 32), True)
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"random_ellipses: n must be a non-negative int, got {n!r}")
    low, high = (int(v) for v in n_ellipses)
    if low < 0 or high < low:
        raise ValueError(
            f"random_ellipses: n_ellipses must be (min, max) with 0 <= min <= max, got {n_ellipses!r}"
        )
    height, width = _size_pair(size)
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        body = (
            rng.uniform(0.2, 0.5),
            rng.uniform(0.6, 0.9),
            rng.uniform(0.6, 0.9),
            0.0,
            0.0,
            rng.uniform(0, 180),
        )
        shapes = [body]
        for _ in range(int(rng.integers(low, high + 1))):
            shapes.append(
                (
                    rng.uniform(0.0, 1.0),
                    rng.uniform(0.05, 0.35),
                    rng.uniform(0.05, 0.35),
                    rng.uniform(-0.5, 0.5),
                    rng.uniform(-0.5, 0.5),
                    rng.uniform(0.0, 180.0),
                )
            )
        images.append(ellipse_phantom(shapes, (height, width), oversample=oversample, mode="paint"))
    if not images:
        return torch.zeros(0, 1, height, width)
    return torch.cat(images)
