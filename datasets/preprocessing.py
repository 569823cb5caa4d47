"""Patches and train/test splits of image tensors (seeded)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["extract_patches", "train_test_split"]


def _check_images(images: Tensor, name: str = "images") -> None:
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [N, C, H, W], got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"{name}: expected shape [N, C, H, W], got {list(images.shape)}")


def extract_patches(
    images: Tensor,
    size: int,
    *,
    stride: int | None = None,
    n: int | None = None,
    seed: int = 0,
) -> Tensor:
    """Extract square patches from a batch of images, on a regular grid or at random positions.

    Parameters
    ----------
    images : Tensor
        ``[N, C, H, W]``.
    size : int
        Patch side (``<= H, W``).
    stride : int, optional
        Grid step (default ``size``: non-overlapping patches). Ignored when ``n`` is given.
    n : int, optional
        Number of patches drawn uniformly at random over images and positions (seeded), instead of a grid.
    seed : int, default 0
        Seed of the random positions.

    Returns
    -------
    Tensor
        ``[M, C, size, size]``: ``M = N * floor((H - size) / stride + 1) * floor((W - size) / stride + 1)``
        on a grid (image-major, then row-major), or ``M = n``.

    Examples
    --------
    >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> extract_patches(x, 2).shape, extract_patches(x, 2)[1, 0].tolist()
    (torch.Size([4, 1, 2, 2]), [[2.0, 3.0], [6.0, 7.0]])
    >>> extract_patches(x, 3, n=5, seed=0).shape
    torch.Size([5, 1, 3, 3])
    """
    _check_images(images)
    _, channels, height, width = images.shape
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0 or size > min(height, width):
        raise ValueError(f"extract_patches: size must be an int in [1, {min(height, width)}], got {size!r}")
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"extract_patches: n must be a non-negative int, got {n!r}")
        if images.shape[0] == 0:
            raise ValueError("extract_patches: cannot draw random patches from an empty batch")
        generator = torch.Generator().manual_seed(int(seed))
        which = torch.randint(images.shape[0], (n,), generator=generator)
        rows = torch.randint(height - size + 1, (n,), generator=generator)
        cols = torch.randint(width - size + 1, (n,), generator=generator)
        offsets = torch.arange(size)
        row_index = (rows[:, None] + offsets)[:, :, None].expand(n, size, size)
        col_index = (cols[:, None] + offsets)[:, None, :].expand(n, size, size)
        gathered = images[which.to(images.device)]  # [n, C, H, W]
        batch_index = torch.arange(n)[:, None, None]
        return (
            gathered.permute(0, 2, 3, 1)[batch_index, row_index, col_index].permute(0, 3, 1, 2).contiguous()
        )
    step = size if stride is None else stride
    if isinstance(step, bool) or not isinstance(step, int) or step <= 0:
        raise ValueError(f"extract_patches: stride must be a positive int, got {stride!r}")
    patches = images.unfold(2, size, step).unfold(3, size, step)  # [N, C, nh, nw, size, size]
    return patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, channels, size, size)


def train_test_split(*tensors: Tensor, test_fraction: float = 0.25, seed: int = 0) -> list[Tensor]:
    """Split tensors along dimension 0 into random train and test parts (seeded, same permutation for all).

    Parameters
    ----------
    *tensors : Tensor
        One or more tensors with the same first dimension ``N`` (e.g. images and labels).
    test_fraction : float, default 0.25
        Fraction in ``(0, 1)`` of samples in the test part (``round(test_fraction * N)``, at least 1 and at
        most ``N - 1``).
    seed : int, default 0
        Seed of the permutation.

    Returns
    -------
    list of Tensor
        ``[a_train, a_test, b_train, b_test, ...]`` (scikit-learn's order).

    Examples
    --------
    >>> x, y = torch.arange(10.0)[:, None], torch.arange(10)
    >>> x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_fraction=0.3, seed=0)
    >>> len(x_tr), len(x_te), torch.equal(x_te[:, 0].long(), y_te)
    (7, 3, True)
    """
    if not tensors:
        raise ValueError("train_test_split: give at least one tensor")
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor) or t.dim() == 0:
            raise TypeError(
                f"train_test_split: argument {i} must be a tensor with a first dimension, got {type(t).__name__}"
            )
    count = tensors[0].shape[0]
    if any(t.shape[0] != count for t in tensors):
        raise ValueError(f"train_test_split: tensors have different lengths {[t.shape[0] for t in tensors]}")
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, (int, float))
        or not 0 < test_fraction < 1
    ):
        raise ValueError(f"train_test_split: test_fraction must be in (0, 1), got {test_fraction!r}")
    if count < 2:
        raise ValueError(f"train_test_split: need at least 2 samples, got {count}")
    n_test = min(max(1, int(math.floor(test_fraction * count + 0.5))), count - 1)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(int(seed)))
    test_index, train_index = order[:n_test], order[n_test:]
    out: list[Tensor] = []
    for t in tensors:
        index = train_index.to(t.device)
        out.extend([t[index], t[test_index.to(t.device)]])
    return out
