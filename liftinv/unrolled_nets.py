"""Unrolled proximal networks whose iterations are lifted layers (states = iterates).

Two architectures, both ``nn.Module`` s that map measurements ``y`` to images and expose each iteration as a
:class:`~liftinv.lifting.LiftedLayer` ``x_{k} = sigma_k(K_k x_{k-1} + b_k(y))`` through
``lifted_layers(offset)``, so :func:`liftinv.lift` turns them into lifted networks whose states are the
iterates (one per sample) and whose input state is the measurement ``y`` (the measurement-dependent
biases ``tau A^T y`` or ``tau L z(y)`` enter through that input state):

* :class:`UnrolledProxGrad` -- unrolled proximal gradient (ISTA / LISTA-type, Gregor & LeCun 2010) in a
  learned Parseval convolutional transform (Hasannasab et al. 2020)::

      u_k = S_{theta_k}( D_k( x_{k-1} - tau_k A^T (A x_{k-1} - y) ) ),   x_k = D_k^T u_k,

  with ``D_k^T D_k = I``; states ``u_k`` (transform coefficients), output ``x_K = D_K^T u_K``.

* :class:`UnrolledDualFB` -- the unfolded dual forward-backward proximal network of Le, Repetti &
  Pustelnik (2023), trained with lifted Bregman losses by Wang, Benning & Repetti (MLSP 2024)::

      u_k = clip_nu( u_{k-1} - tau_k L_k (L_k^T u_{k-1} - z) ),   u_0 = 0,   output  z - L_K^T u_K,

  with ``z = A^dagger y`` (or ``A^T y``): K dual iterations for ``min_x 1/2||x - z||^2 + nu ||L x||_1``.

Both are CUDA-ready (``model.to(device)`` moves the operator too) and double-precision ready.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from liftinv.activations import Clip, Identity, ProximalActivation, SoftThreshold
from liftinv.lifting import LiftedLayer

__all__ = [
    "OperatorAdapter",
    "ParsevalConv",
    "PositiveSoftThreshold",
    "CircularConv",
    "UnrolledProxGrad",
    "UnrolledDualFB",
    "ARCHITECTURES",
    "dct_filters",
]


# ---------------------------------------------------------------------------------------------------------
# the forward operator seen by a network
# ---------------------------------------------------------------------------------------------------------
def _image_size_of(operator, image_size) -> tuple[int, int, int]:
    if image_size is None:
        image_size = getattr(operator, "image_size", None)
        if image_size is None:
            image_size = getattr(operator, "img_size", None)
    if image_size is None:
        raise ValueError(
            "image_size is required for an operator that does not define image_size (e.g. a raw "
            "deepinv.physics object): pass image_size=(C, H, W) or n"
        )
    if isinstance(image_size, int):
        return (1, int(image_size), int(image_size))
    size = tuple(int(s) for s in image_size)
    if len(size) == 2:
        size = (1, *size)
    if len(size) != 3 or any(s <= 0 for s in size):
        raise ValueError(f"image_size must be n, (H, W) or (C, H, W) with positive sizes, got {image_size!r}")
    return size


#: tabulated operators, keyed by the operator's description (rebuilding a model does not re-tabulate)
_DENSE_CACHE: dict = {}


class OperatorAdapter(nn.Module):
    """The forward operator ``A`` as used inside an unrolled network (optionally as dense matrices).

    For small images (``n = C*H*W <= dense_limit``) an operator without a cheap closed form (tomography,
    ODL operators, padded blurs) is tabulated once as a dense matrix ``A`` (``m x n``) and its Gram matrix
    ``A^T A``: every unrolled iteration then costs two small matrix products instead of an operator call
    (tomography at 32x32: ~20x faster), and the adjoint is exact by construction. Circular blurs (FFT),
    masks and the identity stay matrix-free (they are cheaper than a dense product). The matrices are non-persistent buffers: they are not saved with the weights and are
    rebuilt from the operator. The adapter keeps a private copy of the operator, moved and cast with the
    network (``net.to(device)``, ``net.double()``) without touching the caller's operator.

    Parameters
    ----------
    operator : liftinv.operators.LinearOperator or deepinv.physics.LinearPhysics
        Anything with ``A(x)`` and ``A_adjoint(y)`` (``A_dagger`` for ``init="dagger"``).
    image_size : int or tuple, optional
        ``(C, H, W)``; read from ``operator.image_size`` when omitted.
    dense : bool or "auto"
        Tabulate the operator (``"auto"``: when ``n <= dense_limit`` and the operator has no cheap closed
        form, see above).
    dense_limit : int
        Largest image dimension tabulated by ``dense="auto"``.

    Examples
    --------
    >>> from liftinv.operators import Blur
    >>> op = OperatorAdapter(Blur(8, sigma=1.0))
    >>> x = torch.rand(2, 1, 8, 8)
    >>> bool(torch.allclose(op.AtA(x), op.operator.A_adjoint(op.operator.A(x)), atol=1e-5))
    True
    """

    #: largest image (pixels) whose gradient-regularised initialisation is a tabulated inverse
    smooth_dense_limit = 2304

    def __init__(self, operator, image_size=None, dense: bool | str = "auto", dense_limit: int = 4096):
        super().__init__()
        if not (hasattr(operator, "A") and hasattr(operator, "A_adjoint")):
            raise TypeError(
                f"operator must have A(x) and A_adjoint(y) (a liftinv.operators or deepinv.physics linear "
                f"operator), got {type(operator).__name__}"
            )
        if isinstance(operator, nn.Module):
            # a private copy: .to()/.double() of the network must not change the caller's operator
            operator = copy.deepcopy(operator)
        object.__setattr__(self, "operator", operator)  # not a submodule: its buffers are not our weights
        self.image_size = _image_size_of(operator, image_size)
        self.n = int(math.prod(self.image_size))
        with torch.no_grad():
            probe = operator.A(
                torch.zeros(1, *self.image_size, dtype=self._op_dtype(), device=self._op_device())
            )
        self.measurement_size = tuple(probe.shape[1:])
        self.m = int(math.prod(self.measurement_size))
        if dense not in (True, False, "auto"):
            raise ValueError(f"dense must be True, False or 'auto', got {dense!r}")
        cheap = getattr(operator, "name", None) in ("inpainting", "denoising") or (
            getattr(operator, "name", None) == "blur" and getattr(operator, "boundary", None) == "circular"
        )
        self.dense = bool(dense is True or (dense == "auto" and self.n <= dense_limit and not cheap))
        self._dense_limit = int(dense_limit)
        self._dagger_dense = False
        self.register_buffer("A_mat", None, persistent=False)
        self.register_buffer("G_mat", None, persistent=False)
        self.register_buffer("P_mat", None, persistent=False)
        self._norm_sq: float | None = None
        self._tik: dict = {}
        if self.dense:
            self._tabulate()

    # -- helpers ---------------------------------------------------------------------------------------
    def _op_dtype(self):
        for t in list(self.operator.buffers()) if isinstance(self.operator, nn.Module) else []:
            if t.is_floating_point():
                return t.dtype
        return torch.get_default_dtype()

    def _op_device(self):
        for t in list(self.operator.buffers()) if isinstance(self.operator, nn.Module) else []:
            return t.device
        return torch.device("cpu")

    def _apply(self, fn, *args, **kwargs):  # move the (unregistered) operator with the network
        super()._apply(fn, *args, **kwargs)
        if isinstance(self.operator, nn.Module):
            self.operator._apply(fn, *args, **kwargs)
        return self

    def _cache_key(self, what: str):
        if not hasattr(self.operator, "describe"):
            return None
        import json

        try:
            desc = json.dumps(self.operator.describe(), sort_keys=True, default=str)
        except (TypeError, ValueError):
            return None
        return (what, type(self.operator).__name__, desc, str(self._op_device()))

    @torch.no_grad()
    def _tabulate(self, chunk: int = 64):
        key = self._cache_key("A")
        if key is not None and key in _DENSE_CACHE:
            A, G, self._norm_sq = _DENSE_CACHE[key]
            dtype = torch.get_default_dtype()
            self.A_mat, self.G_mat = A.to(dtype), G.to(dtype)
            return
        dev, dt = self._op_device(), self._op_dtype()
        cols = []
        eye = torch.eye(self.n, dtype=dt, device=dev)
        for i in range(0, self.n, chunk):
            basis = eye[i : i + chunk].reshape(-1, *self.image_size)
            cols.append(self.operator.A(basis).reshape(basis.shape[0], self.m))
        At = torch.cat(cols).double()  # [n, m] = A^T
        A = At.T.contiguous()
        G = At @ A
        G = 0.5 * (G + G.T)
        self._norm_sq = float(torch.linalg.eigvalsh(G).max())
        if key is not None:
            _DENSE_CACHE[key] = (A, G, self._norm_sq)
        dtype = torch.get_default_dtype()
        self.A_mat = A.to(dtype)
        self.G_mat = G.to(dtype)

    @torch.no_grad()
    def _tabulate_dagger(self, chunk: int = 64):
        key = self._cache_key("dagger")
        if key is not None and key in _DENSE_CACHE:
            P = _DENSE_CACHE[key]
        else:
            dev, dt = self._op_device(), self._op_dtype()
            rows = []
            eye = torch.eye(self.m, dtype=dt, device=dev)
            for i in range(0, self.m, chunk):
                basis = eye[i : i + chunk].reshape(-1, *self.measurement_size)
                rows.append(self.operator.A_dagger(basis).reshape(basis.shape[0], self.n))
            P = torch.cat(rows)  # [m, n]: x = y @ P
            if key is not None:
                _DENSE_CACHE[key] = P
        self.P_mat = P.to(self.A_mat.device, self.A_mat.dtype)
        self._dagger_dense = True

    # -- the operator ------------------------------------------------------------------------------------
    @property
    def norm_sq(self) -> float:
        """``||A||^2`` (largest eigenvalue of ``A^T A``)."""
        if self._norm_sq is None:
            if hasattr(self.operator, "norm"):
                self._norm_sq = float(self.operator.norm()) ** 2
            elif hasattr(self.operator, "compute_sqnorm"):
                g = torch.Generator().manual_seed(0)
                x0 = torch.randn(1, *self.image_size, generator=g).to(self._op_device())
                self._norm_sq = float(self.operator.compute_sqnorm(x0, verbose=False))
            else:  # pragma: no cover - every supported operator has one of the above
                raise TypeError("operator has neither norm() nor compute_sqnorm()")
        return self._norm_sq

    def check_measurement(self, y: Tensor, name: str = "y") -> None:
        """Raise ``ValueError`` if ``y`` is not a batch ``[B, *measurement_size]``."""
        if not isinstance(y, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of measurements, got {type(y).__name__}")
        if y.dim() != len(self.measurement_size) + 1 or tuple(y.shape[1:]) != self.measurement_size:
            desc = self.describe_operator()
            raise ValueError(
                f"{name} of shape {list(y.shape)} does not match this network's operator "
                f"({desc}): expected measurements of shape [B, {', '.join(map(str, self.measurement_size))}] "
                f"for images of size {list(self.image_size)}"
            )

    def describe_operator(self) -> str:
        """One line naming the operator (from its ``describe()``) for error messages."""
        if hasattr(self.operator, "describe"):
            d = dict(self.operator.describe())
            return ", ".join(f"{k}={v}" for k, v in d.items() if not isinstance(v, list) or len(v) <= 3)
        return type(self.operator).__name__

    def At(self, y: Tensor) -> Tensor:
        """``A^T y``."""
        if self.dense:
            return (y.reshape(y.shape[0], self.m) @ self.A_mat).reshape(y.shape[0], *self.image_size)
        return self.operator.A_adjoint(y)

    def A(self, x: Tensor) -> Tensor:
        """``A x``."""
        if self.dense:
            return (x.reshape(x.shape[0], self.n) @ self.A_mat.T).reshape(x.shape[0], *self.measurement_size)
        return self.operator.A(x)

    def AtA(self, x: Tensor) -> Tensor:
        """``A^T A x``."""
        if self.dense:
            return (x.reshape(x.shape[0], self.n) @ self.G_mat).reshape(x.shape)
        if hasattr(self.operator, "A_adjoint_A"):
            return self.operator.A_adjoint_A(x)
        return self.operator.A_adjoint(self.operator.A(x))

    def _matrix(self, key, build, like: Tensor) -> Tensor:
        """A cached float64-built matrix, converted to ``like``'s dtype and device on first use there."""
        M = self._tik.get(key)
        if M is None:
            gkey = self._cache_key(repr(key))
            if gkey is not None and gkey in _DENSE_CACHE:
                M = _DENSE_CACHE[gkey]
            else:
                M = build()
                if gkey is not None:
                    _DENSE_CACHE[gkey] = M
        if M.device != like.device or M.dtype != like.dtype:
            M = M.to(like.device, like.dtype)
        self._tik[key] = M
        return M

    @torch.no_grad()
    def gram_matrix(self) -> Tensor:
        """``A^T A`` as an ``n x n`` float64 matrix (tabulated with ``A_adjoint_A`` if not dense)."""
        if self.G_mat is not None:
            return self.G_mat.double()
        if self.n > self._dense_limit:
            raise ValueError(f"the Gram matrix of a {self.n}-pixel image is too large to tabulate")
        key = self._cache_key("G")
        if key is not None and key in _DENSE_CACHE:
            return _DENSE_CACHE[key]
        dev, dt = self._op_device(), self._op_dtype()
        eye = torch.eye(self.n, dtype=dt, device=dev)
        rows = [
            self.AtA(eye[i : i + 64].reshape(-1, *self.image_size)).reshape(-1, self.n)
            for i in range(0, self.n, 64)
        ]
        G = torch.cat(rows).double()
        G = 0.5 * (G + G.T)
        if key is not None:
            _DENSE_CACHE[key] = G
        return G

    def tikhonov(self, y: Tensor, alpha: float) -> Tensor:
        """``(A^T A + alpha I)^{-1} A^T y`` (linear in ``y``; dense solve or the operator's ``prox_l2``)."""
        if self.dense:

            def build():
                G = self.gram_matrix()
                return torch.linalg.inv(G + alpha * torch.eye(self.n, dtype=G.dtype, device=G.device))

            S = self._matrix(("tik", float(alpha)), build, y)
            return (self.At(y).reshape(y.shape[0], self.n) @ S).reshape(y.shape[0], *self.image_size)
        if not hasattr(self.operator, "prox_l2"):
            raise TypeError("init='tikhonov' needs an operator with prox_l2 (or dense tabulation)")
        z = torch.zeros(y.shape[0], *self.image_size, dtype=y.dtype, device=y.device)
        return self.operator.prox_l2(z, y, 1.0 / alpha)

    def smooth(self, y: Tensor, alpha: float, max_iter: int = 1000, tol: float = 1e-7) -> Tensor:
        """Gradient-regularised least squares ``(A^T A + alpha grad^T grad)^{-1} A^T y`` (linear in ``y``).

        ``grad`` is the forward-difference gradient with Neumann boundary (:func:`liftinv.operators.tv.grad2d`).
        Exact (tabulated inverse) for ``n <= smooth_dense_limit`` (2304 pixels, 48x48: the matrices of
        larger images take hundreds of MB); otherwise solved by conjugate gradients to relative residual
        ``tol`` (linear in ``y`` up to that tolerance). For inpainting this is harmonic
        interpolation of the missing pixels, for blur a smoothness-regularised deconvolution.
        """
        from liftinv.operators.tv import div2d, grad2d

        def lap(x):
            return -div2d(grad2d(x))

        if self.n <= self.smooth_dense_limit:

            def build():
                G = self.gram_matrix()
                eye = torch.eye(self.n, dtype=torch.float64, device=G.device).reshape(
                    self.n, *self.image_size
                )
                Lap = lap(eye).reshape(self.n, self.n)
                return torch.linalg.inv(G + alpha * 0.5 * (Lap + Lap.T))

            S = self._matrix(("smooth", float(alpha)), build, y)
            return (self.At(y).reshape(y.shape[0], self.n) @ S).reshape(y.shape[0], *self.image_size)
        from liftinv.operators.linalg import conjugate_gradient

        x, _, _ = conjugate_gradient(
            lambda v: self.AtA(v) + alpha * lap(v), self.At(y), max_iter=max_iter, tol=tol
        )
        return x

    def inverse_shifted_gram(self, v: Tensor, beta: float) -> Tensor:
        """``beta (A^T A + beta I)^{-1} v`` (dense solve, or the operator's ``prox_l2`` with ``y = 0``)."""
        if self.dense:

            def build():
                G = self.gram_matrix()
                M = beta * torch.linalg.inv(G + beta * torch.eye(self.n, dtype=G.dtype, device=G.device))
                return 0.5 * (M + M.T)

            M = self._matrix(("pre", float(beta)), build, v)
            return (v.reshape(v.shape[0], self.n) @ M).reshape(v.shape)
        if not hasattr(self.operator, "prox_l2"):
            raise TypeError("precondition needs an operator with prox_l2 (or dense tabulation)")
        # prox_l2(v, 0, 1/beta) = argmin 1/(2 beta)||A x||^2 + 1/2||x - v||^2 = beta (A^T A + beta I)^{-1} v
        return self.operator.prox_l2(
            v, torch.zeros(v.shape[0], *self.measurement_size, dtype=v.dtype, device=v.device), 1.0 / beta
        )

    def dagger(self, y: Tensor) -> Tensor:
        """``A^dagger y`` (the operator's pseudo-inverse / FBP; tabulated when dense)."""
        if self.dense:
            if not self._dagger_dense:
                self._tabulate_dagger()
            return (y.reshape(y.shape[0], self.m) @ self.P_mat).reshape(y.shape[0], *self.image_size)
        return self.operator.A_dagger(y)

    def extra_repr(self) -> str:
        return f"image_size={list(self.image_size)}, measurement_size={list(self.measurement_size)}, dense={self.dense}"


# ---------------------------------------------------------------------------------------------------------
# convolutional transforms with circular boundaries (exact adjoints)
# ---------------------------------------------------------------------------------------------------------
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

    Same proximal activation as :class:`liftinv.activations.SoftThreshold` (``psi = theta |.|``,
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
# shared base
# ---------------------------------------------------------------------------------------------------------
class _Unrolled(nn.Module):
    arch = "unrolled"

    def __init__(self, operator, iterations: int, image_size, dense, init: str, init_alpha: float = 0.01):
        super().__init__()
        if not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be a positive int, got {iterations!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        if not init_alpha > 0:
            raise ValueError(f"init_alpha must be > 0, got {init_alpha!r}")
        self.init_alpha = float(init_alpha)
        self.op = OperatorAdapter(operator, image_size=image_size, dense=dense)
        self.iterations = iterations
        self.init = init
        self.image_size = self.op.image_size
        self._config: dict[str, Any] = {}

    @property
    def operator(self):
        """The forward operator the network was built for."""
        return self.op.operator

    @property
    def measurement_size(self) -> tuple[int, ...]:
        return self.op.measurement_size

    def config(self) -> dict[str, Any]:
        """Constructor arguments (without the operator): ``build_model(arch, operator, **config)`` rebuilds it."""
        return {"arch": self.arch, **self._config}

    def _z(self, y: Tensor) -> Tensor:
        if self.init == "smooth":
            return self.op.smooth(y, self.init_alpha)
        if self.init == "tikhonov":
            return self.op.tikhonov(y, self.init_alpha)
        if self.init == "dagger":
            return self.op.dagger(y)
        if self.init == "adjoint":
            return self.op.At(y)
        return torch.zeros(y.shape[0], *self.image_size, dtype=y.dtype, device=y.device)

    def forward(self, y: Tensor) -> Tensor:
        """The nested forward pass ``y -> x_K`` (same layers as :meth:`lifted_layers`)."""
        self.op.check_measurement(y)
        with parametrize.cached():
            layers = self.lifted_layers(0)
            states = [y]
            for layer in layers[:-1]:
                states.append(layer.activation(layer(*[states[j] for j in layer.inputs])))
            last = layers[-1]
            return last(*[states[j] for j in last.inputs])

    def iterates(self, y: Tensor) -> list[Tensor]:
        """Images ``x_1, ..., x_K`` along the unrolled iterations (for plots); ``iterates(y)[-1] == net(y)``."""
        raise NotImplementedError

    def with_operator(self, operator, image_size=None) -> _Unrolled:
        """The same network (same configuration, a copy of the weights) for another operator.

        Meant for the same kind of operator at another image size (e.g. a blur trained on 32x32 patches
        applied to a 64x64 image): the transforms are convolutions and the steps are relative to
        ``||A||``, so the weights carry over. The caller is responsible for the operator being comparable.

        Examples
        --------
        >>> from liftinv.operators import make_operator
        >>> net = UnrolledProxGrad(make_operator("blur", 16), iterations=2)
        >>> big = net.with_operator(make_operator("blur", 24))
        >>> big(torch.rand(1, 1, 24, 24)).shape
        torch.Size([1, 1, 24, 24])
        """
        cfg = {k: v for k, v in self.config().items() if k != "arch"}
        other = type(self)(operator, image_size=image_size, **cfg)
        other.load_state_dict(self.state_dict())
        p = next(self.parameters())
        return other.to(p.device, p.dtype)

    @torch.no_grad()
    def reconstruct(self, y: Tensor) -> Tensor:
        """``forward(y)`` without gradients, in eval mode."""
        was = self.training
        self.eval()
        try:
            return self(y)
        finally:
            self.train(was)

    def state_lipschitz(self, k: int) -> float:
        """Bound on ``||d z_{k+1} / d u_k||^2`` (the state step of lifted training uses ``1/(lambda L)``)."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------------------
# unrolled proximal gradient in a Parseval transform
# ---------------------------------------------------------------------------------------------------------
class _ProxGradStep(nn.Module):
    """Pre-activation of iteration k: ``D_k (x - tau_k A^T (A x - y))`` with ``x = D_{k-1}^T u`` (or x_0(y))."""

    def __init__(self, net: UnrolledProxGrad, k: int):
        super().__init__()
        object.__setattr__(self, "net", net)  # a back-reference, not a submodule
        self.k = k
        self.transform = net.transforms[k]  # registered so the lifted layer owns D_k (and D_{k-1} below)
        self.previous = net.transforms[k - 1] if k > 0 else None
        self.rho = net.rho[k]

    def forward(self, *xs: Tensor) -> Tensor:
        net = self.net
        if self.k == 0:
            (y,) = xs
            x = net._z(y)
        else:
            u, y = xs
            x = self.previous.synthesis(u)
        tau = net.step(self.k).to(y.dtype)
        if self.k == 0 and net.init == "zero":
            g = -net.op.At(y)  # x_0 = 0: no A^T A x_0 to compute
        else:
            g = net.op.AtA(x) - net.op.At(y)
        if net.precondition is not None:  # P g with P = (A^T A + beta I)^{-1}
            g = net.op.inverse_shifted_gram(g, net.precondition) / net.precondition
        return self.transform.analysis(x - tau * g)


class _Synthesis(nn.Module):
    def __init__(self, transform: nn.Module):
        super().__init__()
        self.transform = transform

    def forward(self, u: Tensor) -> Tensor:
        return self.transform.synthesis(u)


class UnrolledProxGrad(_Unrolled):
    """Unrolled proximal gradient in learned Parseval transforms (LISTA-type network, lifted per iteration).

    For k = 1..K (``x_0 = 0``, ``A^dagger y`` or ``A^T y``)::

        u_k = S_{theta_k}( D_k( x_{k-1} - tau_k A^T (A x_{k-1} - y) ) ),   x_k = D_k^T u_k,

    output ``x_K``. ``D_k`` is a Parseval convolutional frame (``D_k^T D_k = I``, :class:`ParsevalConv`),
    ``theta_k > 0`` a learned threshold per channel (softplus-parametrised, :class:`PositiveSoftThreshold`) and ``tau_k = (2 / ||A||^2) sigmoid(rho_k)`` a learned
    step in ``(0, 2/||A||^2)``, so each iteration is a proximal-gradient step for
    ``1/2||Ax - y||^2 + sum_c theta_{k,c} ||(D_k x)_c||_1`` and ``D_k^T S(D_k .)`` is a proximity operator.

    Lifted form (``lifted_layers``): state ``u_k`` (transform coefficients) per iteration, layer k's
    pre-activation ``z_k = D_k (I - tau_k A^T A) D_{k-1}^T u_{k-1} + tau_k D_k A^T y`` is affine in
    ``u_{k-1}`` and in the input state ``y``, activation ``S_{theta_k}`` (the prox of ``theta_k|.|``); the
    last layer is ``x_K = D_K^T u_K`` (identity activation). Since ``||D_k|| = 1`` and
    ``||I - tau_k A^T A|| <= 1``, every state map has norm <= 1 (safe lifted state steps).

    Parameters
    ----------
    operator : liftinv.operators.LinearOperator or deepinv LinearPhysics
        The forward operator ``A``.
    iterations : int
        Number K of unrolled iterations (layers).
    channels : int, optional
        Channels of each transform (default ``kernel_size**2``, an orthogonal transform; more gives an
        overcomplete Parseval frame).
    kernel_size : int
        Odd filter size.
    theta : float
        Initial threshold of the non-mean channels (the mean channel starts at 0).
    step : float
        Initial steps as a fraction of the largest stable one: ``tau_k = step * 2/||A||^2`` (0.5: ``1/||A||^2``).
    init : {"zero", "adjoint", "dagger", "tikhonov", "smooth"}
        ``x_0``: 0, ``A^T y``, the operator's pseudo-inverse (FBP for tomography), the Tikhonov
        reconstruction ``(A^T A + init_alpha I)^{-1} A^T y`` or the gradient-regularised one
        ``(A^T A + init_alpha grad^T grad)^{-1} A^T y`` (all linear in ``y``, so layer 1 stays affine in the
        input state).
    init_alpha : float
        Regularisation of ``init="tikhonov"`` / ``"smooth"``.
    precondition : float, optional
        ``beta``: use preconditioned gradient steps ``x - tau_k P A^T (A x - y)`` with
        ``P = (A^T A + beta I)^{-1}`` and ``tau_k in (0, 2 / ||P A^T A||)`` (a variable-metric step that
        converges in few iterations on ill-conditioned blurs); still affine in the state and in ``y``.
    image_size : int or tuple, optional
        Needed when the operator does not define ``image_size``.
    dense : bool or "auto"
        Tabulate the operator for small images (see :class:`OperatorAdapter`).

    References
    ----------
    Gregor & LeCun, *Learning fast approximations of sparse coding*, ICML 2010 (LISTA);
    Hasannasab et al., *Parseval proximal neural networks*, J. Fourier Anal. Appl. 2020;
    Wang, Benning & Repetti, *A lifted Bregman strategy for training unfolded proximal neural network
    Gaussian denoisers*, MLSP 2024 (arXiv 2408.08742).

    Examples
    --------
    >>> from liftinv.operators import Blur
    >>> net = UnrolledProxGrad(Blur(16, sigma=1.0), iterations=3)
    >>> y = torch.rand(2, 1, 16, 16)
    >>> net(y).shape
    torch.Size([2, 1, 16, 16])
    >>> len(net.lifted_layers(0))  # K thresholding layers + the synthesis layer
    4
    """

    arch = "proxgrad"

    def __init__(
        self,
        operator,
        iterations: int = 8,
        channels: int | None = None,
        kernel_size: int = 3,
        theta: float = 0.01,
        step: float = 0.5,
        init: str = "zero",
        init_alpha: float = 0.01,
        precondition: float | None = None,
        image_size=None,
        dense: bool | str = "auto",
    ):
        super().__init__(operator, iterations, image_size, dense, init, init_alpha)
        if precondition is not None and not precondition > 0:
            raise ValueError(f"precondition must be None or > 0, got {precondition!r}")
        self.precondition = None if precondition is None else float(precondition)
        c = self.image_size[0]
        channels = c * kernel_size * kernel_size if channels is None else int(channels)
        self.transforms = nn.ModuleList([ParsevalConv(channels, kernel_size, c) for _ in range(iterations)])
        theta0 = torch.full((channels, 1, 1), float(theta))
        theta0[0] = 0.0  # the DCT mean channel is (almost) not thresholded at initialisation
        if not theta >= 0:
            raise ValueError(f"theta must be >= 0, got {theta}")
        self.thresholds = nn.ModuleList([PositiveSoftThreshold(theta0.clone()) for _ in range(iterations)])
        if not 0 < step < 1:
            raise ValueError(f"step must be in (0, 1) (a fraction of the largest stable step), got {step!r}")
        rho0 = math.log(step / (1 - step))
        self.rho = nn.ParameterList([nn.Parameter(torch.full((), rho0)) for _ in range(iterations)])
        self._config = {
            "iterations": iterations,
            "channels": channels,
            "kernel_size": kernel_size,
            "theta": float(theta),
            "step": float(step),
            "init": init,
            "init_alpha": self.init_alpha,
            "precondition": self.precondition,
        }

    def step(self, k: int) -> Tensor:
        """The step size ``tau_k = (2/||P A^T A||) sigmoid(rho_k)`` (in ``(0, 2/||A||^2)`` without preconditioner)."""
        L = self.op.norm_sq
        if self.precondition is not None:
            L = L / (L + self.precondition)
        return (2.0 / max(L, 1e-12)) * torch.sigmoid(self.rho[k])

    def steps(self) -> Tensor:
        """All step sizes ``[tau_1, ..., tau_K]``."""
        return torch.stack([self.step(k) for k in range(self.iterations)])

    def lifted_layers(self, offset: int = 0) -> list[LiftedLayer]:
        """One :class:`LiftedLayer` per iteration plus the synthesis layer (see the class docstring).

        Parameters
        ----------
        offset : int
            Index of the state holding the measurement ``y`` (0 for a whole model).
        """
        layers = []
        for k in range(self.iterations):
            inputs = (offset,) if k == 0 else (offset + k, offset)
            layers.append(
                LiftedLayer(_ProxGradStep(self, k), self.thresholds[k], inputs=inputs, affine_in_params=False)
            )
        layers.append(
            LiftedLayer(
                _Synthesis(self.transforms[-1]),
                Identity(),
                inputs=(offset + self.iterations,),
                affine_in_params=False,
            )
        )
        return layers

    def iterates(self, y: Tensor) -> list[Tensor]:
        layers = self.lifted_layers(0)
        states, out = [y], []
        for k, layer in enumerate(layers[:-1]):
            states.append(layer.activation(layer(*[states[j] for j in layer.inputs])))
            out.append(self.transforms[k].synthesis(states[-1]))
        return out

    def state_lipschitz(self, k: int) -> float:
        return 1.0  # ||D_{k+1}|| = ||D_k^T|| = 1 and ||I - tau A^T A|| <= 1

    def parseval_error(self) -> float:
        """``max_k ||D_k^T D_k - I||_2`` (see :meth:`ParsevalConv.parseval_error`)."""
        return max(D.parseval_error() for D in self.transforms)


# ---------------------------------------------------------------------------------------------------------
# unfolded dual forward-backward (P3)
# ---------------------------------------------------------------------------------------------------------
class _DualFBStep(nn.Module):
    """Pre-activation of dual iteration k: ``u - tau_k L_k (L_k^T u - z(y))`` (``u = 0`` for k = 0)."""

    def __init__(self, net: UnrolledDualFB, k: int):
        super().__init__()
        object.__setattr__(self, "net", net)
        self.k = k
        self.conv = net.convs[k]
        self.rho = net.rho[k]

    def forward(self, *xs: Tensor) -> Tensor:
        net = self.net
        tau = net.step(self.k).to(xs[-1].dtype)
        if self.k == 0:
            (y,) = xs
            return tau * self.conv.analysis(net._z(y))
        u, y = xs
        return u - tau * self.conv.analysis(self.conv.synthesis(u) - net._z(y))


class _DualFBOutput(nn.Module):
    """Output layer ``(u_K, y) -> z(y) - L_K^T u_K``."""

    def __init__(self, net: UnrolledDualFB):
        super().__init__()
        object.__setattr__(self, "net", net)
        self.conv = net.convs[-1]

    def forward(self, u: Tensor, y: Tensor) -> Tensor:
        return self.net._z(y) - self.conv.synthesis(u)


class UnrolledDualFB(_Unrolled):
    """Unfolded dual forward-backward proximal network (Le, Repetti & Pustelnik 2023; P3).

    With ``z = A^dagger y`` (or ``A^T y``) and ``u_0 = 0``, for k = 1..K::

        u_k = clip_nu( u_{k-1} - tau_k L_k (L_k^T u_{k-1} - z) ),      output  x = z - L_K^T u_K,

    i.e. K dual forward-backward iterations for the denoising problem
    ``min_x 1/2 ||x - z||^2 + nu ||L x||_1`` with a different learned convolution ``L_k`` per layer
    (``clip_nu`` is the prox of the conjugate of ``nu||.||_1``; its Bregman penalty is the clip/Huber one).
    ``tau_k = 1.99 sigmoid(rho_k) / ||L_k||^2`` (``||L_k||`` exact by FFT), so the linear part of every
    layer, ``I - tau_k L_k L_k^T``, has norm <= 1. Initialised as K iterations of anisotropic TV denoising
    (``L_k = nu_0 [D_h; D_v]`` plus small random filters).

    Lifted form: states ``u_k`` (one per iteration and sample), pre-activation affine in ``u_{k-1}`` and in
    the input state ``y`` (through ``tau_k L_k z(y)``), last layer ``z(y) - L_K^T u_K`` (identity).

    Parameters
    ----------
    operator : LinearOperator
        The forward operator.
    iterations : int
        Number K of dual iterations.
    channels : int
        Number of channels of each ``L_k``.
    kernel_size : int
        Odd filter size.
    nu : float
        Clip level (fixed; the scale of ``L_k`` is learned, which is equivalent).
    reg : float
        Initial regularisation weight ``nu_0`` (scale of the initial finite-difference filters).
    init : {"dagger", "adjoint", "tikhonov", "smooth"}
        ``z = A^dagger y``, ``A^T y``, ``(A^T A + init_alpha I)^{-1} A^T y`` or
        ``(A^T A + init_alpha grad^T grad)^{-1} A^T y``.
    init_alpha : float
        Regularisation of ``init="tikhonov"`` / ``"smooth"``.
    seed : int
        Seed of the small random initial filters.
    image_size, dense
        As for :class:`UnrolledProxGrad`.

    References
    ----------
    Le, Repetti & Pustelnik, *Unfolded proximal neural networks for robust image Gaussian denoising*,
    IEEE TIP 2024 (arXiv 2023); Wang, Benning & Repetti, MLSP 2024 (arXiv 2408.08742).

    Examples
    --------
    >>> from liftinv.operators import Denoising
    >>> net = UnrolledDualFB(Denoising(16), iterations=4)
    >>> net(torch.rand(2, 1, 16, 16)).shape
    torch.Size([2, 1, 16, 16])
    """

    arch = "dualfb"

    def __init__(
        self,
        operator,
        iterations: int = 8,
        channels: int = 16,
        kernel_size: int = 3,
        nu: float = 1.0,
        reg: float = 0.05,
        init: str = "dagger",
        init_alpha: float = 0.01,
        seed: int = 0,
        image_size=None,
        dense: bool | str = "auto",
    ):
        super().__init__(operator, iterations, image_size, dense, init, init_alpha)
        if init == "zero":
            raise ValueError("UnrolledDualFB needs init='dagger' or 'adjoint' (z is the image to denoise)")
        if not nu > 0:
            raise ValueError(f"nu must be > 0, got {nu}")
        if channels < 2:
            raise ValueError(
                f"channels must be >= 2 (the initial filters are the two finite differences), got {channels}"
            )
        c = self.image_size[0]
        g = torch.Generator().manual_seed(int(seed))
        self.convs = nn.ModuleList()
        for _ in range(iterations):
            conv = CircularConv(channels, kernel_size, c)
            with torch.no_grad():
                w = 0.1 * float(reg) * torch.randn(conv.weight.shape, generator=g)
                mid = kernel_size // 2
                for ch in range(c):
                    w[2 * ch % channels, ch].zero_()
                    w[(2 * ch + 1) % channels, ch].zero_()
                    if kernel_size > 1:
                        w[2 * ch % channels, ch, mid, mid] = -reg
                        w[2 * ch % channels, ch, mid, mid + 1] = reg
                        w[(2 * ch + 1) % channels, ch, mid, mid] = -reg
                        w[(2 * ch + 1) % channels, ch, mid + 1, mid] = reg
                    else:
                        w[2 * ch % channels, ch, 0, 0] = reg
                conv.weight.copy_(w)
            self.convs.append(conv)
        self.rho = nn.ParameterList([nn.Parameter(torch.zeros(())) for _ in range(iterations)])
        self.activation_fn = Clip(nu)
        self._config = {
            "iterations": iterations,
            "channels": channels,
            "kernel_size": kernel_size,
            "nu": float(nu),
            "reg": float(reg),
            "init": init,
            "init_alpha": self.init_alpha,
            "seed": int(seed),
        }

    def step(self, k: int) -> Tensor:
        """``tau_k = 1.99 sigmoid(rho_k) / ||L_k||^2``."""
        _, h, w = self.image_size
        return 1.99 * torch.sigmoid(self.rho[k]) / self.convs[k].norm_sq(h, w).clamp(min=1e-12)

    def lifted_layers(self, offset: int = 0) -> list[LiftedLayer]:
        """K clip layers (states ``u_k``) and the output layer ``z - L_K^T u_K`` (see the class docstring)."""
        layers = []
        for k in range(self.iterations):
            inputs = (offset,) if k == 0 else (offset + k, offset)
            layers.append(
                LiftedLayer(_DualFBStep(self, k), self.activation_fn, inputs=inputs, affine_in_params=False)
            )
        layers.append(
            LiftedLayer(
                _DualFBOutput(self),
                Identity(),
                inputs=(offset + self.iterations, offset),
                affine_in_params=False,
            )
        )
        return layers

    def iterates(self, y: Tensor) -> list[Tensor]:
        layers = self.lifted_layers(0)
        states, out = [y], []
        z = self._z(y)
        for k, layer in enumerate(layers[:-1]):
            states.append(layer.activation(layer(*[states[j] for j in layer.inputs])))
            out.append(z - self.convs[k].synthesis(states[-1]))
        return out

    def state_lipschitz(self, k: int) -> float:
        if k < self.iterations:
            return 1.0  # ||I - tau L L^T|| <= 1 since tau ||L||^2 < 2
        _, h, w = self.image_size
        return float(self.convs[-1].norm_sq(h, w).detach())


#: initialisations x_0 (proxgrad) / z (dualfb) of the networks
INITS = ("zero", "adjoint", "dagger", "tikhonov", "smooth")

#: architecture name -> class
ARCHITECTURES: dict[str, type[_Unrolled]] = {"proxgrad": UnrolledProxGrad, "dualfb": UnrolledDualFB}
