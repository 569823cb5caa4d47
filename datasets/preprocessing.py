"""Patches and train/test splits of image tensors (seeded): the one patch extractor of liftinv."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["extract_patches", "train_test_split"]


def _check_images(images: Tensor, name: str = "images") -> None:
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [N, C, H, W], got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"{name}: expected shape [N, C, H, W], got {list(images.shape)}")


def _image_list(images: Tensor | Sequence[Tensor]) -> list[Tensor]:
    # [N, C, H, W] tensor or a sequence of [H, W] / [C, H, W] tensors -> list of [C, H, W] tensors.
    if isinstance(images, Tensor):
        _check_images(images)
        return list(images.unbind(0))
    if not isinstance(images, Sequence) or isinstance(images, str):
        raise TypeError(
            "extract_patches: images must be a tensor [N, C, H, W] or a sequence of [H, W] or [C, H, W] "
            f"tensors, got {type(images).__name__}"
        )
    items = []
    for i, image in enumerate(images):
        if not isinstance(image, Tensor) or image.dim() not in (2, 3):
            shape = list(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise ValueError(f"extract_patches: image {i} must be a tensor [H, W] or [C, H, W], got {shape}")
        items.append(image[None] if image.dim() == 2 else image)
    if len({image.shape[0] for image in items}) > 1:
        raise ValueError(
            f"extract_patches: images have different channel counts {[image.shape[0] for image in items]}"
        )
    return items


def _check_count(value: int | None, name: str, minimum: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise ValueError(f"extract_patches: {name} must be an int >= {minimum}, got {value!r}")


def extract_patches(
    images: Tensor | Sequence[Tensor],
    size: int,
    *,
    stride: int | None = None,
    n: int | None = None,
    per_image: int | None = None,
    seed: int = 0,
    augment: bool = False,
) -> Tensor:
    """Extract square patches from images: on a regular grid, at random positions, or spread evenly.

    The one patch extractor of liftinv (the unrolled tasks take their training patches with ``n`` and
    ``augment`` and their test crops with ``per_image``).

    Parameters
    ----------
    images : Tensor or sequence of Tensor
        ``[N, C, H, W]``, or a sequence of ``[H, W]`` or ``[C, H, W]`` images of possibly different sizes
        (same channel count).
    size : int
        Patch side (at most the smallest image side).
    stride : int, optional
        Grid step (default ``size``: non-overlapping patches). Used when neither ``n`` nor ``per_image``
        is given.
    n : int, optional
        Number of random patches: patch ``i`` comes from image ``i mod N`` (about as many per image), its
        top-left corner uniform over the image (row, then column, drawn from a torch generator seeded
        with ``seed``).
    per_image : int, optional
        Deterministic patches per image, spread evenly: the corners lie on an interior grid of
        ``ceil(sqrt(per_image))^2`` positions (``linspace`` over the valid range without its ends), and
        ``per_image`` of them are taken evenly along the row-major grid.
    seed : int, default 0
        Seed of the random patches (same seed, same patches).
    augment : bool, default False
        With ``n``: rotate each patch by a random multiple of 90 degrees, then flip it left-right with
        probability 1/2 (drawn after its position).

    Returns
    -------
    Tensor
        ``[M, C, size, size]``, image-major: on a grid ``M = sum over images of
        floor((H - size) / stride + 1) * floor((W - size) / stride + 1)`` (then row-major), ``M = n``
        random patches, or ``M = N * per_image``.

    Raises
    ------
    ValueError
        For a bad size, stride, count, or images of different channel counts; ``n`` and ``per_image``
        together.

    Examples
    --------
    >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> extract_patches(x, 2).shape, extract_patches(x, 2)[1, 0].tolist()
    (torch.Size([4, 1, 2, 2]), [[2.0, 3.0], [6.0, 7.0]])
    >>> extract_patches(x, 3, n=5, seed=0, augment=True).shape
    torch.Size([5, 1, 3, 3])
    >>> extract_patches([torch.rand(20, 24), torch.rand(30, 16)], 8, per_image=3).shape
    torch.Size([6, 1, 8, 8])
    """
    items = _image_list(images)
    if isinstance(images, Tensor):
        smallest, channels = min(images.shape[-2:]), images.shape[1]
    else:
        smallest = min((min(image.shape[-2:]) for image in items), default=0)
        channels = items[0].shape[0] if items else 0
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0 or size > smallest:
        raise ValueError(f"extract_patches: size must be an int in [1, {smallest}], got {size!r}")
    if n is not None and per_image is not None:
        raise ValueError("extract_patches: give n (random patches) or per_image (spread patches), not both")
    _check_count(n, "n", 0)
    _check_count(per_image, "per_image", 1)
    if not items and (n or per_image):
        raise ValueError("extract_patches: cannot draw patches from an empty batch")
    if n is not None:
        generator = torch.Generator().manual_seed(int(seed))
        patches = []
        for i in range(n):  # the order of the draws is the random stream (do not reorder)
            image = items[i % len(items)]
            height, width = image.shape[-2:]
            row = int(torch.randint(0, height - size + 1, (1,), generator=generator))
            col = int(torch.randint(0, width - size + 1, (1,), generator=generator))
            patch = image[:, row : row + size, col : col + size]
            if augment:
                patch = torch.rot90(patch, int(torch.randint(0, 4, (1,), generator=generator)), dims=(-2, -1))
                if int(torch.randint(0, 2, (1,), generator=generator)):
                    patch = patch.flip(-1)
            patches.append(patch)
        if not patches:
            return torch.zeros(0, channels, size, size, dtype=items[0].dtype if items else None)
        return torch.stack(patches).contiguous()
    if per_image is not None:
        side = max(1, math.ceil(math.sqrt(per_image)))
        patches = []
        for image in items:
            height, width = image.shape[-2:]
            rows = np.linspace(0, height - size, side + 2)[1:-1].round().astype(int)
            cols = np.linspace(0, width - size, side + 2)[1:-1].round().astype(int)
            corners = [(r, c) for r in rows for c in cols]
            order = np.linspace(0, len(corners) - 1, per_image).round().astype(int)
            for k in order if per_image < len(corners) else range(len(corners)):
                r, c = corners[k]
                patches.append(image[:, r : r + size, c : c + size])
        return torch.stack(patches).contiguous()
    step = size if stride is None else stride
    if isinstance(step, bool) or not isinstance(step, int) or step <= 0:
        raise ValueError(f"extract_patches: stride must be a positive int, got {stride!r}")
    if isinstance(images, Tensor):
        patches = images.unfold(2, size, step).unfold(3, size, step)  # [N, C, nh, nw, size, size]
        return patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, channels, size, size)
    return torch.cat([extract_patches(image[None], size, stride=step) for image in items])


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
