"""The 8x8 handwritten digits shipped with scikit-learn (1,797 images; offline)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["load_digits"]


def load_digits(size: int = 8) -> tuple[Tensor, Tensor]:
    """Load scikit-learn's 8x8 digits as float images in ``[0, 1]`` and integer labels.

    The pixel values (integers 0-16) are divided by 16. The one digits loader of liftinv: flatten the
    images with ``images.reshape(len(images), -1)`` for fully connected networks.

    Parameters
    ----------
    size : int, default 8
        Side of the returned images. Other than 8, the images are resized by bilinear interpolation
        (:func:`torch.nn.functional.interpolate`, ``align_corners=False``, no anti-aliasing) and clipped
        to ``[0, 1]``; ``size=16`` gives the 16x16 digits of the autoencoder recipe of
        :mod:`liftinv.inversion.recipes`.

    Returns
    -------
    images : Tensor
        float32 ``[1797, 1, size, size]`` in ``[0, 1]``.
    labels : Tensor
        int64 ``[1797]`` with values 0-9.

    Examples
    --------
    >>> images, labels = load_digits()
    >>> tuple(images.shape), int(labels.max()), float(images.max())
    ((1797, 1, 8, 8), 9, 1.0)
    >>> tuple(load_digits(size=16)[0].shape)
    (1797, 1, 16, 16)

    References
    ----------
    Alpaydin & Kaynak, Optical recognition of handwritten digits, UCI ML repository, 1998; loaded with
    :func:`sklearn.datasets.load_digits` (Pedregosa et al., JMLR 12, 2011).
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"load_digits: size must be a positive int, got {size!r}")
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = torch.from_numpy((bunch.images / 16.0).astype(np.float32))[:, None]
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return images, torch.from_numpy(bunch.target.astype(np.int64))
