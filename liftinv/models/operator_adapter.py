"""The forward operator as seen by a network: batched, differentiable, with its norm and adjoint."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["OperatorAdapter", "OperatorNetwork"]


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


class OperatorNetwork(nn.Module):
    """Base of the networks built around a forward operator (``self.op``, an :class:`OperatorAdapter`): the
    unrolled convex-prior networks (:mod:`liftinv.models.unrolled`) and the learned CNN ones
    (:mod:`liftinv.models.learned`). Subclasses set ``arch``, ``self.op`` and ``self._config`` (their
    constructor arguments without the operator)."""

    arch = "unrolled"

    @property
    def operator(self):
        """The forward operator the network was built for."""
        return self.op.operator

    @property
    def measurement_size(self) -> tuple[int, ...]:
        """Shape of one measurement at the build size."""
        return self.op.measurement_size

    def config(self) -> dict[str, Any]:
        """Constructor arguments (without the operator): ``build_model(arch, operator, **config)`` rebuilds it."""
        return {"arch": self.arch, **self._config}

    def _copy_for(self, operator, image_size=None) -> OperatorNetwork:
        """The same network (configuration, a copy of the weights, device, dtype) built for ``operator``."""
        cfg = {k: v for k, v in self.config().items() if k != "arch"}
        other = type(self)(operator, image_size=image_size, **cfg)
        other.load_state_dict(self.state_dict())
        p = next(self.parameters())
        return other.to(p.device, p.dtype)

    @torch.no_grad()
    def reconstruct(self, y: Tensor) -> Tensor:
        """``forward(y)`` without gradients, in eval mode."""
        was = self.training
        try:
            return self.eval()(y)
        finally:
            self.train(was)
