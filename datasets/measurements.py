"""Deterministic (image, measurement) pairs for training and evaluation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["MeasurementDataset"]


class MeasurementDataset(Dataset):
    """Pairs ``(x_i, y_i)`` with ``y_i = N(A x_i)``, the noise of sample ``i`` fixed by ``(seed, i)``.

    The measurements are ``operator.measure(x_i, noise, seed=sample_seed(i))`` (the operator's own
    simulation, so inpainting keeps missing pixels at 0), or ``A x_i`` without noise.

    The same index always gives the same noise, in any order, in any worker process and on any device
    (noise is drawn on the CPU with a generator seeded from ``(seed, i)`` through
    :class:`numpy.random.SeedSequence`), so a dataset is reproducible and a training/validation split
    never sees new noise.

    Parameters
    ----------
    images : Tensor or Dataset
        ``[N, C, H, W]`` tensor, or a dataset whose items are ``[C, H, W]`` tensors (or tuples whose first
        entry is one, e.g. :class:`ImageFolder` with labels).
    operator : liftinv.operators.LinearOperator
        Forward operator ``A``.
    noise : NoiseModel or float, optional
        Noise model called as ``noise(y, seed=...)`` (e.g. :class:`liftinv.operators.GaussianNoise`);
        a float ``s`` means Gaussian noise of standard deviation ``s``; ``None`` means no noise.
    seed : int, default 0
        Base seed.

    Examples
    --------
    >>> from liftinv.operators import Blur
    >>> data = MeasurementDataset(torch.rand(4, 1, 16, 16), Blur(16, sigma=1.0), noise=0.05, seed=0)
    >>> x, y = data[2]
    >>> torch.equal(y, data[2][1]), tuple(y.shape)
    (True, (1, 16, 16))
    """

    def __init__(self, images: Tensor | Dataset, operator: Any, noise: Any = None, seed: int = 0) -> None:
        from liftinv.operators import GaussianNoise, LinearOperator

        if not isinstance(operator, LinearOperator):
            raise TypeError(
                f"MeasurementDataset: operator must be a liftinv LinearOperator, got {type(operator).__name__}"
            )
        if isinstance(noise, (int, float)) and not isinstance(noise, bool):
            if not math.isfinite(noise) or noise < 0:
                raise ValueError(
                    f"MeasurementDataset: noise level must be a finite number >= 0, got {noise!r}"
                )
            noise = GaussianNoise(float(noise))
        elif noise is not None and not callable(noise):
            raise TypeError(f"MeasurementDataset: noise must be a NoiseModel, a float or None, got {noise!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"MeasurementDataset: seed must be an int, got {seed!r}")
        if isinstance(images, Tensor):
            if images.dim() != 4 or tuple(images.shape[1:]) != tuple(operator.image_size):
                c, h, w = operator.image_size
                raise ValueError(
                    f"MeasurementDataset: expected images of shape [N, {c}, {h}, {w}] for the operator, "
                    f"got {list(images.shape)}"
                )
            if not images.is_floating_point():
                raise TypeError(f"MeasurementDataset: images must be floating point, got {images.dtype}")
            if not bool(torch.isfinite(images).all()):
                raise ValueError("MeasurementDataset: images contain non-finite values (nan or inf)")
        elif not isinstance(images, Dataset):
            raise TypeError(
                f"MeasurementDataset: images must be a Tensor [N, C, H, W] or a Dataset, got {type(images).__name__}"
            )
        self.images = images
        self.operator = operator
        self.noise = noise
        self.seed = seed

    def __len__(self) -> int:
        return len(self.images)

    def sample_seed(self, index: int) -> int:
        """Seed of the noise of sample ``index`` (a hash of ``(seed, index)``)."""
        return int(np.random.SeedSequence([self.seed, int(index)]).generate_state(1, dtype=np.uint64)[0] >> 1)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"MeasurementDataset: index {index} out of range for {len(self)} samples")
        item = self.images[index]
        x = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(x, Tensor) or tuple(x.shape) != tuple(self.operator.image_size):
            raise ValueError(
                f"MeasurementDataset: item {index} should be an image of shape {list(self.operator.image_size)}, "
                f"got {list(x.shape) if isinstance(x, Tensor) else type(x).__name__}"
            )
        with torch.no_grad():
            if self.noise is None:
                y = self.operator.A(x[None])
            else:
                y = self.operator.measure(x[None], self.noise, seed=self.sample_seed(index))
        return x, y[0]
