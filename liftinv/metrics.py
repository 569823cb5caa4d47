"""Image metrics and the run history shared by ``fit``, ``reconstruct`` and ``invert``.

* :func:`psnr`, :func:`ssim` -- deepinv's ``PSNR(max_pixel=...)`` and ``SSIM()`` per image (one home, so
  every table in the project measures the same way; deepinv's PSNR matches scikit-image's, its SSIM is
  torchmetrics' Gaussian-window SSIM and differs from scikit-image's by about 0.02);
* :class:`History` -- one record (a dict) per epoch or logged iteration; ``history["key"]`` is a column
  over the records and ``history[i]`` the i-th record.

This module imports nothing else from liftinv; every room may use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

__all__ = ["History", "psnr", "ssim"]


def psnr(estimate: Tensor, reference: Tensor, max_pixel: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio per image, ``10 log10(max_pixel^2 / mean((x - x_ref)^2))`` in dB.

    deepinv's ``PSNR(max_pixel=max_pixel)`` (equal to ``skimage.metrics.peak_signal_noise_ratio`` with
    ``data_range=max_pixel``).

    Parameters
    ----------
    estimate, reference : Tensor
        Images ``[B, C, H, W]`` (or ``[C, H, W]``, treated as a batch of one).
    max_pixel : float, default 1.0
        The peak value.

    Returns
    -------
    Tensor
        ``[B]`` PSNR values.

    See Also
    --------
    ssim : structural similarity, same conventions.

    Examples
    --------
    >>> import torch
    >>> x = torch.zeros(1, 1, 4, 4)
    >>> round(float(psnr(x + 0.1, x)[0]), 2)
    20.0
    """
    from deepinv.loss.metric import PSNR

    if estimate.dim() == 3:
        estimate, reference = estimate[None], reference[None]
    return PSNR(max_pixel=max_pixel)(estimate, reference)


def ssim(estimate: Tensor, reference: Tensor, max_pixel: float = 1.0) -> Tensor:
    """Structural similarity per image: deepinv's ``SSIM(max_pixel=max_pixel)`` (Gaussian window).

    Wang, Bovik, Sheikh & Simoncelli, *Image quality assessment: from error visibility to structural
    similarity*, IEEE TIP 13(4), 2004.

    Parameters
    ----------
    estimate, reference : Tensor
        Images ``[B, C, H, W]`` (or ``[C, H, W]``).
    max_pixel : float, default 1.0

    Returns
    -------
    Tensor
        ``[B]`` SSIM values in [-1, 1].

    See Also
    --------
    psnr

    Examples
    --------
    >>> import torch
    >>> x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    >>> float(ssim(x, x)[0]) > 0.999
    True
    """
    from deepinv.loss.metric import SSIM

    if estimate.dim() == 3:
        estimate, reference = estimate[None], reference[None]
    return SSIM(max_pixel=max_pixel)(estimate, reference)


@dataclass
class History:
    """Run history: ``records[i]`` is a dict for epoch / logged iteration i (objective parts, metrics, time).

    ``history["objective"]`` is the column ``[r.get("objective") for r in records]``; ``history[-1]`` is the
    last record. The same shape for :func:`liftinv.fit` (one record per epoch),
    :func:`liftinv.operators.reconstruct` and :func:`liftinv.invert` (one record per logged iteration).

    Examples
    --------
    >>> h = History(method="demo")
    >>> h.append(iteration=1, objective=2.0); h.append(iteration=2, objective=1.5)
    >>> h["objective"], h[-1]["iteration"], len(h)
    ([2.0, 1.5], 2, 2)
    """

    method: str = ""
    records: list[dict[str, Any]] = field(default_factory=list)

    def append(self, **record) -> None:
        """Add one record."""
        self.records.append(dict(record))

    def __getitem__(self, key):
        """A column (``str`` key, ``None`` where a record lacks it) or a record (``int`` / slice)."""
        if isinstance(key, str):
            return [r.get(key) for r in self.records]
        return self.records[key]

    def __contains__(self, key: str) -> bool:
        return any(key in r for r in self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def keys(self) -> list[str]:
        """Every key that some record has, in first-seen order."""
        seen: dict[str, None] = {}
        for r in self.records:
            seen.update(dict.fromkeys(r))
        return list(seen)

    @property
    def last(self) -> dict[str, Any]:
        """The last record (``{}`` when empty)."""
        return self.records[-1] if self.records else {}

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready form (see :meth:`from_dict`)."""
        return {"method": self.method, "records": self.records}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        """Inverse of :meth:`to_dict`."""
        return cls(method=d.get("method", ""), records=list(d.get("records", [])))
