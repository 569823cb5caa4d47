"""Inpainting (pixel masking) operator and its masks: random pixels, random blocks, one box, or a user mask.

Inpainting keeps a subset of pixels: ``A = diag(m)`` with a binary mask ``m`` (a
:class:`~liftinv.operators.DiagonalOperator`); missing pixels are 0 in the measurement (deepinv's
convention, so ``y`` has the image's shape) and stay 0 after noise. It is its own adjoint and its own
pseudo-inverse.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from deepinv.physics.noise import NoiseModel
from torch import Tensor

from .base import DiagonalOperator, normalize_image_size

__all__ = ["Inpainting", "random_mask", "block_mask", "box_mask", "MASKS"]

#: mask kinds accepted by :class:`Inpainting`
MASKS = ("random", "blocks", "box")


def _check_rate(keep_rate: float) -> float:
    if isinstance(keep_rate, bool) or not isinstance(keep_rate, (int, float)) or not math.isfinite(keep_rate):
        raise ValueError(f"Inpainting: keep_rate must be a number in [0, 1], got {keep_rate!r}")
    if not 0.0 <= keep_rate <= 1.0:
        raise ValueError(f"Inpainting: keep_rate must be in [0, 1], got {keep_rate!r}")
    return float(keep_rate)


def random_mask(height: int, width: int, keep_rate: float = 0.5, seed: int = 0) -> Tensor:
    """Random pixel mask: each pixel kept independently with probability ``keep_rate`` (seeded).

    Parameters
    ----------
    height, width : int
        Mask size.
    keep_rate : float, default 0.5
        Probability of keeping a pixel.
    seed : int, default 0
        Seed (same seed, same mask, on every device).

    Returns
    -------
    Tensor
        float ``[height, width]`` of 0/1.

    Examples
    --------
    >>> m = random_mask(64, 64, 0.5, seed=0)
    >>> torch.equal(m, random_mask(64, 64, 0.5, seed=0)), abs(float(m.mean()) - 0.5) < 0.05
    (True, True)
    """
    keep_rate = _check_rate(keep_rate)
    generator = torch.Generator().manual_seed(int(seed))
    return (torch.rand(height, width, generator=generator, dtype=torch.float64) < keep_rate).to(torch.float32)


def block_mask(height: int, width: int, keep_rate: float = 0.5, block_size: int = 8, seed: int = 0) -> Tensor:
    """Random missing square blocks of side ``block_size`` until at most ``keep_rate`` of pixels remain.

    Blocks are placed uniformly at random (they may overlap) until the kept fraction is ``<= keep_rate``.

    Parameters
    ----------
    height, width : int
        Mask size.
    keep_rate : float, default 0.5
        Target fraction of kept pixels.
    block_size : int, default 8
        Side of the missing blocks.
    seed : int, default 0
        Seed.

    Returns
    -------
    Tensor
        float ``[height, width]`` of 0/1.

    Examples
    --------
    >>> m = block_mask(32, 32, keep_rate=0.7, block_size=4, seed=1)
    >>> 0.6 < float(m.mean()) <= 0.7
    True
    """
    keep_rate = _check_rate(keep_rate)
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size <= 0:
        raise ValueError(f"Inpainting: block_size must be a positive int, got {block_size!r}")
    rng = np.random.default_rng(seed)
    mask = np.ones((height, width), dtype=np.float32)
    while mask.mean() > keep_rate:
        top = rng.integers(0, max(1, height - block_size + 1))
        left = rng.integers(0, max(1, width - block_size + 1))
        mask[top : top + block_size, left : left + block_size] = 0.0
    return torch.from_numpy(mask)


def box_mask(height: int, width: int, box: tuple[int, int, int, int]) -> Tensor:
    """Mask with one missing rectangle ``box = (top, left, box_height, box_width)``.

    Parameters
    ----------
    height, width : int
        Mask size.
    box : tuple of 4 int
        The missing rectangle; it must lie inside the image.

    Returns
    -------
    Tensor
        float ``[height, width]`` of 0/1.

    Examples
    --------
    >>> int(box_mask(8, 8, (2, 2, 4, 4)).sum())
    48
    """
    try:
        top, left, bh, bw = (int(v) for v in box)
    except (TypeError, ValueError):
        raise ValueError(f"Inpainting: box must be (top, left, height, width), got {box!r}") from None
    if top < 0 or left < 0 or bh <= 0 or bw <= 0 or top + bh > height or left + bw > width:
        raise ValueError(
            f"Inpainting: box (top, left, height, width) = {box!r} must lie inside the image of size "
            f"[{height}, {width}] and have positive size"
        )
    mask = torch.ones(height, width)
    mask[top : top + bh, left : left + bw] = 0.0
    return mask


class Inpainting(DiagonalOperator):
    """Pixel masking ``A x = m * x`` with a 0/1 mask ``m`` (missing pixels set to 0).

    Parameters
    ----------
    image_size : int or tuple
        ``n``, ``(H, W)`` or ``(C, H, W)``.
    mask : {"random", "blocks", "box"} or array-like, default "random"
        Mask kind, or a user mask of 0/1 of shape ``[H, W]`` (same for every channel) or ``[C, H, W]``.
    keep_rate : float, default 0.5
        Fraction of kept pixels ("random": probability per pixel; "blocks": target fraction).
    seed : int, default 0
        Seed of the random masks.
    block_size : int, default 8
        Side of the missing blocks ("blocks").
    box : tuple of 4 int, optional
        ``(top, left, height, width)`` of the missing rectangle ("box"); default the central quarter
        (half the height and half the width).
    noise_model : deepinv.physics.NoiseModel, optional
        Noise added by ``op(x)`` (on kept pixels only; missing pixels stay 0).

    Examples
    --------
    >>> op = Inpainting(16, keep_rate=0.5, seed=0)
    >>> x = torch.rand(2, 1, 16, 16)
    >>> torch.equal(op.A_dagger(op.A(x)), op.A(x))
    True
    """

    name = "inpainting"

    def __init__(
        self,
        image_size: int | tuple[int, ...],
        mask: str | Tensor | np.ndarray | list = "random",
        *,
        keep_rate: float = 0.5,
        seed: int = 0,
        block_size: int = 8,
        box: tuple[int, int, int, int] | None = None,
        noise_model: NoiseModel | None = None,
    ) -> None:
        channels, height, width = normalize_image_size(image_size)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"Inpainting: seed must be an int, got {seed!r}")
        params: dict[str, Any]
        if isinstance(mask, str):
            if mask == "random":
                values = random_mask(height, width, keep_rate, seed)
                params = {"mask": "random", "keep_rate": float(keep_rate), "seed": seed}
            elif mask == "blocks":
                values = block_mask(height, width, keep_rate, block_size, seed)
                params = {
                    "mask": "blocks",
                    "keep_rate": float(keep_rate),
                    "block_size": block_size,
                    "seed": seed,
                }
            elif mask == "box":
                if box is None:
                    box = (height // 4, width // 4, max(1, height // 2), max(1, width // 2))
                values = box_mask(height, width, box)
                params = {"mask": "box", "box": [int(v) for v in box]}
            else:
                raise ValueError(f"Inpainting: mask must be one of {MASKS} or a 0/1 array, got {mask!r}")
        else:
            values = torch.as_tensor(mask if isinstance(mask, Tensor) else np.asarray(mask, dtype=np.float32))
            values = values.detach().to("cpu", torch.float32)
            if tuple(values.shape) not in ((height, width), (channels, height, width)):
                raise ValueError(
                    f"Inpainting: mask of shape {list(values.shape)} does not match the image: expected "
                    f"[{height}, {width}] or [{channels}, {height}, {width}]"
                )
            if not bool(((values == 0) | (values == 1)).all()):
                raise ValueError("Inpainting: a user mask must contain only 0 and 1")
            params = {"mask": values.to(torch.int64).tolist()}
        if values.dim() == 2:
            values = values[None]
        super().__init__(image_size, values[None], noise_model=noise_model)
        self._params = params

    def _config(self) -> dict[str, Any]:
        return dict(self._params)

    # For a 0/1 mask, m^2 = m and 1/m = m on the support: the adjoint serves as all three.
    A_adjoint_A = DiagonalOperator.A_adjoint
    A_A_adjoint = DiagonalOperator.A_adjoint

    def A_dagger(self, y: Tensor, **kwargs: Any) -> Tensor:
        """Pseudo-inverse (= A for a 0/1 mask): ``m * y``."""
        return self.A_adjoint(y)

    def prox_l2(self, z: Tensor, y: Tensor, gamma: float | Tensor, **kwargs: Any) -> Tensor:
        """``argmin_x gamma/2 ||m x - y||^2 + 1/2 ||x - z||^2 = (gamma m y + z) / (gamma m + 1)``."""
        if isinstance(gamma, Tensor) and gamma.dim() > 0:
            gamma = gamma.reshape(-1, *([1] * (z.dim() - 1)))
        return (gamma * self.mask * y + z) / (gamma * self.mask + 1)
