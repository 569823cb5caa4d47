"""Phantoms: the modified Shepp-Logan head phantom and seeded random piecewise-constant phantoms.

The one home of liftinv's phantoms: :func:`shepp_logan` (analytic, or scikit-image's raster resized) and
:func:`random_phantoms` (random ellipses, or random ellipses and rectangles), both on :func:`ellipse_phantom`
or a pixel grid.

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

__all__ = ["SHEPP_LOGAN_ELLIPSES", "PHANTOM_KINDS", "ellipse_phantom", "shepp_logan", "random_phantoms"]

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


#: kinds of :func:`random_phantoms`
PHANTOM_KINDS: tuple[str, ...] = ("ellipses", "mixed", "lpd")

#: sources of :func:`shepp_logan`
_SHEPP_LOGAN_SOURCES = ("analytic", "skimage")


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


def shepp_logan(size: int | Sequence[int] = 128, *, oversample: int = 2, source: str = "analytic") -> Tensor:
    """Modified Shepp-Logan head phantom at any resolution, values in ``[0, 1]``.

    Parameters
    ----------
    size : int or (H, W), default 128
        Output size.
    oversample : int, default 2
        Sub-pixel samples per axis (``source="analytic"`` only).
    source : {"analytic", "skimage"}, default "analytic"
        "analytic": the ellipses of :data:`SHEPP_LOGAN_ELLIPSES` rasterised at ``size`` (sharp edges);
        "skimage": scikit-image's bundled 400 x 400 raster (``skimage.data.shepp_logan_phantom``) resized
        to ``size`` (bilinear, anti-aliased, so edges are slightly smoothed) -- the test image of the
        inversion recipes and ``liftinv invert``.

    Returns
    -------
    Tensor
        float32 ``[1, 1, H, W]`` in ``[0, 1]``.

    Examples
    --------
    >>> x = shepp_logan(64)
    >>> tuple(x.shape), 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    ((1, 1, 64, 64), True)
    >>> float((shepp_logan(64, source="skimage") - x).abs().mean()) < 0.02
    True

    References
    ----------
    Shepp & Logan, The Fourier reconstruction of a head section, IEEE Trans. Nucl. Sci. 21, 1974;
    Toft, The Radon transform: theory and implementation, PhD thesis, DTU, 1996 (modified contrast).
    """
    if source == "analytic":
        return ellipse_phantom(SHEPP_LOGAN_ELLIPSES, size, oversample=oversample).clamp_(0.0, 1.0)
    if source != "skimage":
        raise ValueError(f"shepp_logan: source must be one of {_SHEPP_LOGAN_SOURCES}, got {source!r}")
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    height, width = _size_pair(size)
    image = resize(shepp_logan_phantom(), (height, width), anti_aliasing=True, order=1)
    return torch.tensor(np.clip(image, 0, 1), dtype=torch.float32).reshape(1, 1, height, width)


def random_phantoms(
    n: int,
    size: int | Sequence[int] = 64,
    *,
    seed: int = 0,
    kind: str = "ellipses",
    n_shapes: int | tuple[int, int] | None = None,
    oversample: int | None = None,
) -> Tensor:
    """Random piecewise-constant phantoms in ``[0, 1]``: shapes painted over a body ellipse (seeded).

    The one random-phantom generator of liftinv (training images of the unrolled tasks, test inputs of
    the inversion recipes). Each image is a body ellipse with shapes painted over it in turn (each
    overwrites what is below it), so values stay in ``[0, 1]`` and the images are piecewise constant
    (good test images for TV).

    * ``kind="ellipses"`` (NumPy generator ``default_rng(seed)``): a body of value in [0.2, 0.5], semi-axes
      in [0.6, 0.9] and random angle, then ``k ~ U{n_shapes}`` ellipses (default ``(3, 8)``; semi-axes in
      [0.05, 0.35], value in [0, 1], centre in [-0.5, 0.5]^2, random angle), anti-aliased with
      ``oversample^2`` samples per pixel (:func:`ellipse_phantom`).
    * ``kind="mixed"`` (torch generator seeded with ``seed``): an axis-aligned body of semi-axes in
      [0.75, 0.9] and value in [0.2, 0.4], then ``n_shapes`` shapes (default 5), each a rectangle or an
      ellipse with probability 1/2 (half-sides / semi-axes in [0.1, 0.4], centre in [-0.5, 0.5]^2, value in
      [0, 1]), sampled at one point per pixel on a grid from -1 to 1 (edges included; no anti-aliasing).
    * ``kind="lpd"`` (NumPy generator ``default_rng(seed)``): the random-ellipse phantoms of Learned
      Primal-Dual (Adler & Oktem, IEEE TMI 37(6), 2018): a Poisson number of ellipses (mean 50) with signed
      intensities ``(U - 1/2) E``, ``E`` exponential of mean 0.4, that add up; semi-axes ``0.2 E_1``,
      ``0.2 E_2`` (mean-1 exponentials), centres uniform in ``[-1, 1]^2``, uniform angles; pixel centres
      (``oversample`` 1 unless given); the sum clipped to ``[0, 1]`` (choice: the reference keeps the signed
      sum). :class:`liftinv.datasets.EllipseStream` streams them, one generator per image.

    Parameters
    ----------
    n : int
        Number of images (0 gives an empty batch).
    size : int or (H, W), default 64
        Image size.
    seed : int, default 0
        Seed (same seed and arguments, same images).
    kind : {"ellipses", "mixed", "lpd"}, default "ellipses"
        Shape family and random stream (see above).
    n_shapes : int or (int, int), optional
        Shapes painted over the body: "ellipses" takes an inclusive range ``(min, max)`` (an int ``k`` is
        ``(k, k)``; default ``(3, 8)``); "mixed" a fixed number (default 5).
    oversample : int, optional
        Sub-pixel samples per axis ("ellipses": default 2, "lpd": default 1; "mixed" samples one point).

    Returns
    -------
    Tensor
        float32 ``[n, 1, H, W]`` in ``[0, 1]``.

    Examples
    --------
    >>> x = random_phantoms(4, 32, seed=1)
    >>> tuple(x.shape), torch.equal(x, random_phantoms(4, 32, seed=1))
    ((4, 1, 32, 32), True)
    >>> y = random_phantoms(3, 16, seed=1, kind="mixed")
    >>> tuple(y.shape), 0.0 <= float(y.min()) and float(y.max()) <= 1.0
    ((3, 1, 16, 16), True)
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"random_phantoms: n must be a non-negative int, got {n!r}")
    height, width = _size_pair(size)
    if kind == "ellipses":
        if n_shapes is None:
            n_shapes = (3, 8)
        elif isinstance(n_shapes, int) and not isinstance(n_shapes, bool):
            n_shapes = (n_shapes, n_shapes)
        low, high = (int(v) for v in n_shapes)
        if low < 0 or high < low:
            raise ValueError(
                f"random_phantoms: n_shapes must be (min, max) with 0 <= min <= max, got {n_shapes!r}"
            )
        rng = np.random.default_rng(seed)
        images = [_ellipses(rng, low, high, (height, width), oversample or 2) for _ in range(n)]
    elif kind == "lpd":
        rng = np.random.default_rng(seed)
        images = [_lpd_ellipses(rng, (height, width), oversample=oversample or 1)[None] for _ in range(n)]
    elif kind == "mixed":
        count = 5 if n_shapes is None else n_shapes
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"random_phantoms: kind 'mixed' takes n_shapes as an int >= 0, got {n_shapes!r}")
        images = _mixed(n, height, width, count, seed)
    else:
        raise ValueError(f"random_phantoms: kind must be one of {PHANTOM_KINDS}, got {kind!r}")
    if not images:
        return torch.zeros(0, 1, height, width)
    return torch.cat(images)


def _ellipses(
    rng: np.random.Generator, low: int, high: int, size: tuple[int, int], oversample: int
) -> Tensor:
    # One "ellipses" phantom; the order of the draws is the random stream (do not reorder).
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
    return ellipse_phantom(shapes, size, oversample=oversample, mode="paint")


def _mixed(n: int, height: int, width: int, count: int, seed: int) -> list[Tensor]:
    # "mixed" phantoms; the order of the draws is the random stream (do not reorder).
    g = torch.Generator().manual_seed(int(seed))
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    images = []
    for _ in range(n):
        img = torch.zeros(height, width)
        a, b = 0.75 + 0.15 * torch.rand(2, generator=g)
        img[(xx / a) ** 2 + (yy / b) ** 2 <= 1] = 0.2 + 0.2 * float(torch.rand(1, generator=g))
        for _ in range(count):
            c = (torch.rand(2, generator=g) - 0.5) * 1.0
            r = 0.1 + 0.3 * torch.rand(2, generator=g)
            val = float(torch.rand(1, generator=g))
            if float(torch.rand(1, generator=g)) < 0.5:
                mask = ((xx - c[0]).abs() <= r[0]) & ((yy - c[1]).abs() <= r[1])
            else:
                mask = ((xx - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 <= 1
            img[mask] = val
        images.append(img[None, None])
    return images


def _lpd_ellipses(
    rng: np.random.Generator,
    size: int | Sequence[int] = 128,
    *,
    n_mean: float = 50.0,
    value_scale: float = 0.4,
    interior: bool = False,
    oversample: int = 1,
) -> Tensor:
    """One ``kind="lpd"`` phantom ``[1, H, W]`` drawn from ``rng`` (the order of the draws is the stream)."""
    half = 0.5 if interior else 1.0
    ellipses = []
    for _ in range(int(rng.poisson(n_mean))):
        value = (rng.random() - 0.5) * rng.exponential(value_scale)
        a = max(0.2 * rng.exponential(), 1e-3)
        b = max(0.2 * rng.exponential(), 1e-3)
        x0, y0 = half * (2 * rng.random() - 1), half * (2 * rng.random() - 1)
        ellipses.append((value, a, b, x0, y0, 360.0 * rng.random()))
    image = ellipse_phantom(ellipses, size, oversample=oversample, mode="add")
    return image[0].clamp_(0.0, 1.0)
