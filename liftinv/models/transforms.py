"""Convolutional transforms with circular boundaries (exact adjoints) and learned Parseval frames.

:class:`CircularConv` is a convolution whose adjoint is exact; :class:`ParsevalConv` keeps its filters a
Parseval frame (``D^T D = I``; Hasannasab et al., *Parseval proximal neural networks*, 2020), started from
the DCT basis (:func:`dct_filters`). :class:`PositiveSoftThreshold` is the soft threshold with a learned,
positive threshold per channel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from liftinv.lifted.activations import ProximalActivation, SoftThreshold

__all__ = ["dct_filters", "CircularConv", "ParsevalConv", "PositiveSoftThreshold"]


def dct_filters(kernel_size: int) -> Tensor:
    """Orthonormal 2-D DCT-II basis as a ``(k*k, k*k)`` matrix (row r = filter r, row 0 = the mean).

    Examples
    --------
    >>> Q = dct_filters(3)
    >>> bool(torch.allclose(Q @ Q.T, torch.eye(9, dtype=Q.dtype), atol=1e-12))
    True
    """
    k = int(kernel_size)
    i = torch.arange(k, dtype=torch.float64)
    C = torch.cos(math.pi * (2 * i[None, :] + 1) * i[:, None] / (2 * k))
    C[0] *= math.sqrt(1.0 / k)
    C[1:] *= math.sqrt(2.0 / k)
    return torch.kron(C, C)


_INDEX_CACHE: dict = {}


def _patch_index(height: int, width: int, k: int, device) -> Tensor:
    """``idx[p, i W + j] = ((i + a - r) mod H) W + (j + b - r) mod W`` for ``p = a k + b``, ``r = k // 2``."""
    key = (height, width, k, str(device))
    if key not in _INDEX_CACHE:
        r = k // 2
        i = torch.arange(height)[:, None]
        j = torch.arange(width)[None, :]
        rows = [((i + a - r) % height) * width + (j + b - r) % width for a in range(k) for b in range(k)]
        _INDEX_CACHE[key] = torch.stack([t.reshape(-1) for t in rows]).to(device)
    return _INDEX_CACHE[key]


class CircularConv(nn.Module):
    """Convolution ``L: R^{c x H x W} -> R^{C x H x W}`` with circular boundaries and its exact adjoint.

    ``analysis(x) = L x``, ``(L x)_o[i, j] = sum_{c,a,b} l_{o,c}[a, b] x_c[i + a - r, j + b - r]`` (indices
    modulo the image size, ``r = k // 2``), computed as a gather of the ``k x k`` periodic patches followed
    by a matrix product; ``synthesis(u) = L^T u`` is the exact adjoint (matrix product, then scatter-add).
    ``norm_sq(H, W)`` is the exact ``||L||^2`` (largest singular value over frequencies) by FFT,
    differentiable.

    Parameters
    ----------
    channels : int
        Number of output channels ``C``.
    kernel_size : int
        Odd filter size ``k``.
    image_channels : int
        Input channels ``c``.

    Examples
    --------
    >>> L = CircularConv(4, 3)
    >>> _ = torch.nn.init.normal_(L.weight)
    >>> x, u = torch.randn(2, 1, 8, 8), torch.randn(2, 4, 8, 8)
    >>> bool(torch.isclose((L.analysis(x) * u).sum(), (x * L.synthesis(u)).sum(), rtol=1e-4))
    True
    """

    def __init__(self, channels: int, kernel_size: int = 3, image_channels: int = 1):
        super().__init__()
        _check_kernel(kernel_size)
        if int(channels) < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.channels, self.kernel_size, self.image_channels = (
            int(channels),
            int(kernel_size),
            int(image_channels),
        )
        self.weight = nn.Parameter(
            torch.zeros(self.channels, self.image_channels, self.kernel_size, self.kernel_size)
        )

    def filters(self) -> Tensor:
        """Filters ``[C, c, k, k]``."""
        return self.weight

    def _matrix(self, dtype) -> Tensor:
        return self.filters().reshape(self.channels, -1).to(dtype)

    def analysis(self, x: Tensor) -> Tensor:
        """``L x``: ``[B, c, H, W] -> [B, C, H, W]``."""
        B, c, H, W = x.shape
        idx = _patch_index(H, W, self.kernel_size, x.device)
        patches = x.reshape(B * c, H * W).index_select(1, idx.reshape(-1)).reshape(B, c * idx.shape[0], H * W)
        return (self._matrix(x.dtype) @ patches).reshape(B, self.channels, H, W)

    def synthesis(self, u: Tensor) -> Tensor:
        """``L^T u``: ``[B, C, H, W] -> [B, c, H, W]`` (exact adjoint of :meth:`analysis`)."""
        B, C, H, W = u.shape
        c = self.image_channels
        idx = _patch_index(H, W, self.kernel_size, u.device)
        kk = idx.shape[0]
        patches = (self._matrix(u.dtype).T @ u.reshape(B, C, H * W)).reshape(B * c, kk * H * W)
        out = torch.zeros(B * c, H * W, dtype=u.dtype, device=u.device)
        out = out.index_add(1, idx.reshape(-1), patches)
        return out.reshape(B, c, H, W)

    def norm_sq(self, height: int, width: int) -> Tensor:
        """``||L||^2`` on ``H x W`` images with circular boundaries (exact, by FFT; differentiable)."""
        w = self.filters()
        spec = torch.fft.fft2(w, s=(height, width))  # [C, c, H, W]
        if w.shape[1] == 1:
            return spec.abs().square().sum(0).amax()
        # several input channels: largest singular value of the C x c matrix per frequency
        mats = spec.permute(2, 3, 0, 1)
        return torch.linalg.matrix_norm(mats, ord=2).square().amax()

    def extra_repr(self) -> str:
        return f"{self.image_channels} -> {self.channels}, kernel_size={self.kernel_size}, circular"


def _check_kernel(kernel_size):
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd positive int, got {kernel_size!r}")


def _overcomplete_init(basis: Tensor, channels: int, spread: float = 0.5) -> Tensor:
    """A ``channels x n`` matrix with orthonormal columns whose first ``n`` rows stay close to ``basis``.

    ``Q = M (M^T M)^{-1/2}`` (the polar factor: the nearest matrix with orthonormal columns) of
    ``M = [basis; spread * G]``, ``G`` a fixed-seed Gaussian ``(channels - n) x n`` block with entries of
    variance ``1/n``. Why not zero rows: a zero filter ``h_c`` is a stationary point of training (its channel
    carries ``S(0) = 0`` and every gradient with respect to it vanishes, and so does the Riemannian gradient of
    the orthogonal parametrisation), so padding an orthogonal basis with zero rows leaves the extra channels of
    an overcomplete frame dead forever. A local generator keeps the global random stream untouched.
    """
    n = basis.shape[1]
    g = torch.Generator().manual_seed(0)
    G = torch.randn(channels - n, n, generator=g, dtype=torch.float64) / math.sqrt(n)
    M = torch.cat([basis, spread * G])
    U, _, Vh = torch.linalg.svd(M, full_matrices=False)
    return U @ Vh


class ParsevalConv(CircularConv):
    """Parseval convolutional frame ``D`` (``D^T D = I``) from a matrix with orthonormal columns.

    The ``C`` filters (``C >= c*k*k``) are the rows of a ``C x (c k^2)`` matrix ``Q`` with ``Q^T Q = I``,
    scaled by ``1/k``. With circular boundaries every pixel lies in exactly ``k^2`` patches, so
    ``||D x||^2 = sum_p ||Q patch_p(x)||^2 / k^2 = ||x||^2``: ``D`` is a tight (Parseval) frame and
    ``D^T S_theta(D .)`` is a proximity operator (Hasannasab, Hertrich, Neumayer, Plonka, Setzer & Steidl,
    *Parseval proximal neural networks*, 2020; Combettes & Pesquet 2018). ``Q`` is kept on the Stiefel
    manifold by ``torch.nn.utils.parametrizations.orthogonal`` (feasible by parametrisation, whatever the
    optimiser does to the underlying parameter). Initialised with the 2-D DCT basis (channel 0 = mean); an
    overcomplete frame (``C > c k^2``) starts from the nearest orthonormal-column matrix to the DCT basis
    stacked on a fixed random block (:func:`_overcomplete_init`), so that every channel can learn.

    Parameters
    ----------
    channels : int, optional
        ``C >= c*k*k`` (default ``c*k*k``, an orthogonal transform).
    kernel_size : int
        Odd filter size ``k``.
    image_channels : int
        ``c``.

    Examples
    --------
    >>> D = ParsevalConv(kernel_size=3)
    >>> x = torch.randn(2, 1, 8, 8)
    >>> bool(torch.allclose(D.synthesis(D.analysis(x)), x, atol=1e-5))
    True
    """

    def __init__(self, channels: int | None = None, kernel_size: int = 3, image_channels: int = 1):
        _check_kernel(kernel_size)
        n = int(image_channels) * kernel_size * kernel_size
        channels = n if channels is None else int(channels)
        if channels < n:
            raise ValueError(
                f"ParsevalConv: channels must be >= image_channels*kernel_size**2 = {n} for a Parseval frame, "
                f"got channels={channels}"
            )
        super().__init__(channels, kernel_size, image_channels)
        del self.weight
        self.bank = nn.Linear(n, channels, bias=False)
        Q0 = torch.kron(torch.eye(int(image_channels), dtype=torch.float64), dct_filters(kernel_size))
        if channels > n:
            Q0 = _overcomplete_init(Q0, channels)
        nn.utils.parametrizations.orthogonal(self.bank, orthogonal_map="cayley")
        with torch.no_grad():
            self.bank.weight = Q0.to(torch.get_default_dtype())

    def filters(self) -> Tensor:
        Q = self.bank.weight  # [C, c k^2], Q^T Q = I
        return (
            Q.reshape(self.channels, self.image_channels, self.kernel_size, self.kernel_size)
            / self.kernel_size
        )

    def parseval_error(self, size: int | None = None) -> float:
        """``||D^T D - I||_2`` measured on the full matrix of ``D^T D`` for ``size x size`` images (float64).

        Independent of the parametrisation: it applies :meth:`synthesis` and :meth:`analysis` to the
        canonical basis (default ``size = max(k + 2, 8)``).
        """
        size = int(size or max(self.kernel_size + 2, 8))
        n = self.image_channels * size * size
        with torch.no_grad(), parametrize.cached():
            dev = self.filters().device
            eye = torch.eye(n, dtype=torch.float64, device=dev).reshape(n, self.image_channels, size, size)
            M = self.synthesis(self.analysis(eye)).reshape(n, n)
            return float(torch.linalg.matrix_norm(M - torch.eye(n, dtype=torch.float64, device=dev), ord=2))


class PositiveSoftThreshold(SoftThreshold):
    """Soft-thresholding ``S_theta`` with learned per-channel thresholds ``theta = softplus(r) > 0``.

    Same proximal activation as :class:`liftinv.lifted.activations.SoftThreshold` (``psi = theta |.|``,
    ``Phi^* = 1/2 S_theta^2``), but the threshold is parametrised through a softplus: a learnable
    ``theta`` that is merely clamped at 0 dies (zero gradient) once an optimiser step makes it negative,
    which turns the unrolled network into a linear one.

    Parameters
    ----------
    theta : Tensor or float
        Initial thresholds (> 0; values below ``min_theta`` are raised to it), broadcastable to the
        pre-activation, e.g. ``[C, 1, 1]``.
    min_theta : float
        Smallest initial threshold.

    Examples
    --------
    >>> act = PositiveSoftThreshold(torch.full((2, 1, 1), 0.5))
    >>> act(torch.tensor([[[[1.0]], [[-0.2]]]])).flatten().tolist()
    [0.5, -0.0]
    """

    def __init__(self, theta=0.1, min_theta: float = 1e-4):
        ProximalActivation.__init__(self)
        t = torch.as_tensor(theta, dtype=torch.get_default_dtype()).clamp(min=float(min_theta))
        self.raw = nn.Parameter(t + torch.log(-torch.expm1(-t)))  # softplus^{-1}(t)

    @property
    def theta(self) -> Tensor:
        return F.softplus(self.raw)

    def _t(self, like):
        return F.softplus(self.raw.to(like.dtype))


# ---------------------------------------------------------------------------------------------------------
