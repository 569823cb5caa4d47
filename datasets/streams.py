"""Endless seeded streams of random-ellipse phantoms (training) and fixed seeded sets (validation / test).

The phantoms are those of :func:`liftinv.datasets.random_phantoms` with ``kind="lpd"`` (the one generator of
random phantoms); this module only arranges them into streams and sets. The distribution follows the reference code of Learned Primal-Dual (Adler & Oktem, IEEE TMI 37(6),
2018): a Poisson number of ellipses (mean ``n_mean``), each with an intensity ``(U - 1/2) * E``
(``U ~ U[0, 1]``, ``E`` exponential with mean ``value_scale``; positive and negative, values add up),
semi-axes ``0.2 * E_1``, ``0.2 * E_2`` (``E_i`` exponential with mean 1), a centre uniform in ``[-1, 1]^2``
(``[-1/2, 1/2]^2`` with ``interior=True``) and a uniform angle; the image covers ``[-1, 1]^2``. Choice: the
sum is clipped to ``[0, 1]`` (attenuation is non-negative, and every image of the project lies in
``[0, 1]``); the reference code keeps the signed sum. Ellipses are rasterised by
:func:`liftinv.datasets.phantoms.ellipse_phantom` (pixel centres by default, as ODL's ``ellipsoid_phantom``).

Determinism: image ``i`` of a stream with seed ``s`` is drawn from its own generator,
``numpy.random.SeedSequence(s, spawn_key=(0, i))``; image ``i`` of :func:`ellipse_set` with seed ``s`` from
``SeedSequence(s, spawn_key=(1, i))``. So a stream is the same sequence on every pass and in every
DataLoader worker split, and validation / test sets never coincide with training images, whatever the seeds
(use e.g. ``ellipse_set(n, size, seed=0)`` for validation and ``seed=1`` for test).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import IterableDataset, get_worker_info

from .phantoms import _lpd_ellipses, _size_pair

__all__ = ["EllipseStream", "ellipse_set"]

_STREAM, _SET = 0, 1  # spawn-key domains: training streams and fixed sets never share a generator


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return seed


class EllipseStream(IterableDataset):
    """An endless, seeded stream of random-ellipse phantoms ``[1, H, W]`` in ``[0, 1]`` (training data).

    Iterating starts again from image 0 on every pass (same seed, same sequence). In a
    ``torch.utils.data.DataLoader`` with several workers, worker ``w`` of ``W`` yields images
    ``w, w + W, w + 2W, ...``, so the workers together produce the stream without repeats. ``stream[i]``
    and :meth:`batch` give random access.

    Parameters
    ----------
    size : int or (H, W), default 128
        Image size (LPD's ellipse setting: 128).
    seed : int, default 0
        Seed of the stream.
    n_mean, value_scale, interior, oversample
        See :func:`liftinv.datasets.random_phantoms` (``kind="lpd"``).

    References
    ----------
    Adler & Oktem, *Learned Primal-Dual Reconstruction*, IEEE Trans. Med. Imaging 37(6), 2018.

    Examples
    --------
    >>> stream = EllipseStream(32, seed=3)
    >>> first = next(iter(stream))
    >>> tuple(first.shape), torch.equal(first, next(iter(EllipseStream(32, seed=3))))
    ((1, 32, 32), True)
    >>> stream.batch(4, start=10).shape
    torch.Size([4, 1, 32, 32])
    """

    def __init__(
        self,
        size: int | Sequence[int] = 128,
        seed: int = 0,
        *,
        n_mean: float = 50.0,
        value_scale: float = 0.4,
        interior: bool = False,
        oversample: int = 1,
    ):
        super().__init__()
        self.size = _size_pair(size)
        self.seed = _check_seed(seed)
        if not n_mean > 0:
            raise ValueError(f"n_mean must be > 0, got {n_mean!r}")
        if not value_scale > 0:
            raise ValueError(f"value_scale must be > 0, got {value_scale!r}")
        self.n_mean, self.value_scale = float(n_mean), float(value_scale)
        self.interior, self.oversample = bool(interior), oversample
        self._domain = _STREAM

    def __getitem__(self, index: int) -> Tensor:
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise IndexError(f"index must be a non-negative int, got {index!r}")
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(self._domain, index)))
        return _lpd_ellipses(
            rng,
            self.size,
            n_mean=self.n_mean,
            value_scale=self.value_scale,
            interior=self.interior,
            oversample=self.oversample,
        )

    def __iter__(self) -> Iterator[Tensor]:
        info = get_worker_info()
        index, step = (0, 1) if info is None else (info.id, info.num_workers)
        while True:
            yield self[index]
            index += step

    def batch(self, n: int, start: int = 0) -> Tensor:
        """Images ``start .. start + n - 1`` as one tensor ``[n, 1, H, W]``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        if not n:
            return torch.zeros(0, 1, *self.size)
        return torch.stack([self[start + i] for i in range(n)])

    def batches(self, batch_size: int, start: int = 0) -> Iterator[Tensor]:
        """Endless consecutive mini-batches ``[batch_size, 1, H, W]`` from image ``start`` on."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        while True:
            yield self.batch(batch_size, start)
            start += batch_size

    def __repr__(self) -> str:
        return (
            f"EllipseStream(size={list(self.size)}, seed={self.seed}, n_mean={self.n_mean}, "
            f"value_scale={self.value_scale}, interior={self.interior}, oversample={self.oversample})"
        )


def ellipse_set(
    n: int,
    size: int | Sequence[int] = 128,
    seed: int = 0,
    *,
    n_mean: float = 50.0,
    value_scale: float = 0.4,
    interior: bool = False,
    oversample: int = 1,
) -> Tensor:
    """A fixed set of ``n`` random-ellipse phantoms, disjoint from every :class:`EllipseStream`.

    Same distribution as the stream, drawn from a separate seed domain (see the module docstring), so
    validation and test phantoms are never training images; ``ellipse_set(m, ...)`` is a prefix of
    ``ellipse_set(n, ...)`` for ``m <= n``.

    Parameters
    ----------
    n : int
        Number of images.
    size : int or (H, W), default 128
        Image size.
    seed : int, default 0
        Seed of the set (e.g. 0 for validation, 1 for test).
    n_mean, value_scale, interior, oversample
        See :func:`liftinv.datasets.random_phantoms` (``kind="lpd"``).

    Returns
    -------
    Tensor
        float32 ``[n, 1, H, W]`` in ``[0, 1]``.

    Examples
    --------
    >>> val, test = ellipse_set(3, 32, seed=0), ellipse_set(3, 32, seed=1)
    >>> tuple(val.shape), torch.equal(val, ellipse_set(3, 32, seed=0)), torch.equal(val, test)
    ((3, 1, 32, 32), True, False)
    """
    stream = EllipseStream(
        size, seed, n_mean=n_mean, value_scale=value_scale, interior=interior, oversample=oversample
    )
    stream._domain = _SET
    return stream.batch(n)
