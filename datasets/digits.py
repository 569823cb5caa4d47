"""The 8x8 handwritten digits shipped with scikit-learn (1,797 images; offline)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["load_digits"]


def load_digits() -> tuple[Tensor, Tensor]:
    """Load scikit-learn's 8x8 digits as float images in ``[0, 1]`` and integer labels.

    The pixel values (integers 0-16) are divided by 16.

    Returns
    -------
    images : Tensor
        float32 ``[1797, 1, 8, 8]`` in ``[0, 1]``.
    labels : Tensor
        int64 ``[1797]`` with values 0-9.

    Examples
    --------
    >>> images, labels = load_digits()
    >>> tuple(images.shape), int(labels.max()), float(images.max())
    ((1797, 1, 8, 8), 9, 1.0)

    References
    ----------
    Alpaydin & Kaynak, Optical recognition of handwritten digits, UCI ML repository, 1998; loaded with
    :func:`sklearn.datasets.load_digits` (Pedregosa et al., JMLR 12, 2011).
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = torch.from_numpy((bunch.images / 16.0).astype(np.float32))[:, None]
    return images, torch.from_numpy(bunch.target.astype(np.int64))
