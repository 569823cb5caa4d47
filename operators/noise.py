"""Seeded noise models: additive Gaussian and Poisson (photon counting).

Both subclass :class:`deepinv.physics.NoiseModel`, so they can be set as any deepinv or liftinv
operator's ``noise_model`` (then ``op(x)`` returns noisy measurements).

Reproducibility: the noise is drawn on the CPU, in the input's dtype, and then moved to the input's
device, so the same seed gives the same noise on every device. For each call, the generator used is

1. a fresh generator seeded with ``seed`` if the call passes one: ``noise(y, seed=3)`` is the same every time;
2. otherwise the model's own generator, seeded once at construction (``GaussianNoise(0.1, seed=0)``): two
   models built with the same seed produce the same sequence of draws;
3. otherwise torch's global generator.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from deepinv.physics.noise import NoiseModel
from torch import Tensor

__all__ = ["GaussianNoise", "PoissonNoise"]


def _identity(x: Tensor) -> Tensor:
    return x


def _check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or None, got {seed!r}")
    return seed


def _choose_generator(seed: int | None, *fallbacks: torch.Generator | None) -> torch.Generator | None:
    """The CPU generator to draw from (see the module notes on reproducibility).

    A fresh generator seeded with ``seed`` when one is given, else the first of ``fallbacks`` that is not
    None (a call's ``generator``, then the model's own), else None (torch's global generator).
    """
    if seed is not None:
        return torch.Generator().manual_seed(_check_seed(seed))
    return next((g for g in fallbacks if g is not None), None)


class GaussianNoise(NoiseModel):
    """Additive white Gaussian noise ``y_noisy = y + sigma * n`` with ``n ~ N(0, I)``.

    Parameters
    ----------
    sigma : float, default 0.01
        Standard deviation (in the units of the measurements), ``>= 0``.
    seed : int, optional
        Seed of the model's own generator (see the module notes on reproducibility).

    Examples
    --------
    >>> noise = GaussianNoise(0.1)
    >>> y = torch.zeros(1, 1, 4, 4)
    >>> torch.equal(noise(y, seed=0), noise(y, seed=0))
    True
    >>> torch.equal(GaussianNoise(0.1, seed=5)(y), GaussianNoise(0.1, seed=5)(y))
    True
    """

    def __init__(self, sigma: float = 0.01, seed: int | None = None) -> None:
        super().__init__(rng=None)
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma):
            raise ValueError(f"GaussianNoise: sigma must be a finite number >= 0, got {sigma!r}")
        if sigma < 0:
            raise ValueError(f"GaussianNoise: sigma must be >= 0, got {sigma!r}")
        self.noise_model = _identity  # replaces deepinv's default lambda (unpicklable); forward is overridden
        self.sigma = float(sigma)
        self.seed = _check_seed(seed)
        self._generator = _choose_generator(self.seed)

    def forward(
        self, y: Tensor, seed: int | None = None, generator: torch.Generator | None = None, **kwargs: Any
    ) -> Tensor:
        """Return ``y + sigma * n``.

        Parameters
        ----------
        y : Tensor
            Clean measurements (any shape, floating point).
        seed : int, optional
            Draw with a fresh generator seeded with this value.
        generator : torch.Generator, optional
            A CPU generator to draw from (ignored if ``seed`` is given).

        Returns
        -------
        Tensor
            Noisy measurements, same shape, dtype and device as ``y``.
        """
        if self.sigma == 0.0:
            return y.clone()
        gen = _choose_generator(seed, generator, self._generator)
        n = torch.randn(y.shape, generator=gen, dtype=y.dtype)
        return y + self.sigma * n.to(y.device)

    def describe(self) -> dict[str, Any]:
        """JSON-able description ``{"name": "gaussian", "sigma": ..., "seed": ...}``."""
        return {"name": "gaussian", "sigma": self.sigma, "seed": self.seed}

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, seed={self.seed}"


class PoissonNoise(NoiseModel):
    """Poisson (shot) noise ``y_noisy = gain * Poisson(y / gain)``.

    The mean is ``y`` and the variance ``gain * y``: a smaller ``gain`` means more photons and less noise.

    Parameters
    ----------
    gain : float, default 0.01
        Gain ``> 0`` (intensity per photon count).
    seed : int, optional
        Seed of the model's own generator (see the module notes on reproducibility).
    clip_negative : bool, default True
        Clip negative intensities (e.g. FFT round-off after a blur) to 0 before drawing. If ``False``,
        negative inputs raise a ``ValueError``.

    Examples
    --------
    >>> y = torch.full((1, 1, 64, 64), 0.5)
    >>> noisy = PoissonNoise(gain=0.01, seed=0)(y)
    >>> abs(noisy.mean().item() - 0.5) < 0.01
    True
    """

    def __init__(self, gain: float = 0.01, seed: int | None = None, clip_negative: bool = True) -> None:
        super().__init__(rng=None)
        if (
            isinstance(gain, bool)
            or not isinstance(gain, (int, float))
            or not math.isfinite(gain)
            or gain <= 0
        ):
            raise ValueError(f"PoissonNoise: gain must be a finite number > 0, got {gain!r}")
        self.noise_model = _identity  # replaces deepinv's default lambda (unpicklable); forward is overridden
        self.gain = float(gain)
        self.seed = _check_seed(seed)
        self.clip_negative = bool(clip_negative)
        self._generator = _choose_generator(self.seed)

    def forward(
        self, y: Tensor, seed: int | None = None, generator: torch.Generator | None = None, **kwargs: Any
    ) -> Tensor:
        """Return ``gain * Poisson(y / gain)`` (drawn on the CPU, returned on ``y``'s device).

        Parameters
        ----------
        y : Tensor
            Clean non-negative intensities.
        seed : int, optional
            Draw with a fresh generator seeded with this value.
        generator : torch.Generator, optional
            A CPU generator to draw from (ignored if ``seed`` is given).

        Returns
        -------
        Tensor
            Noisy measurements, same shape, dtype and device as ``y``.
        """
        rates = y.detach().to("cpu") / self.gain
        if self.clip_negative:
            rates = rates.clamp_min(0.0)
        elif bool((rates < 0).any()):
            raise ValueError("PoissonNoise: y must be non-negative (or pass clip_negative=True)")
        gen = _choose_generator(seed, generator, self._generator)
        counts = torch.poisson(rates, generator=gen)
        return (counts * self.gain).to(device=y.device, dtype=y.dtype)

    def describe(self) -> dict[str, Any]:
        """JSON-able description ``{"name": "poisson", "gain": ..., "seed": ...}``."""
        return {"name": "poisson", "gain": self.gain, "seed": self.seed, "clip_negative": self.clip_negative}

    def extra_repr(self) -> str:
        return f"gain={self.gain}, seed={self.seed}"
