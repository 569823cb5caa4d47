"""Base class of liftinv's forward operators, built on :class:`deepinv.physics.LinearPhysics`.

Every operator maps images ``x`` of shape ``[B, C, H, W]`` to measurements ``y = A x`` of shape
``[B, *measurement_size]`` and offers:

* ``A(x)``, ``A_adjoint(y)`` (the exact Euclidean adjoint: ``<A x, y> = <x, A^T y>``), ``A_adjoint_A(x)``;
* ``A_dagger(y)``: a pseudo-inverse (closed form where one exists, otherwise minimum-norm least squares by
  conjugate gradients on ``A^T A x = A^T y``);
* ``prox_l2(z, y, gamma)``: ``argmin_x gamma/2 ||A x - y||^2 + 1/2 ||x - z||^2``;
* ``norm()``: the operator norm ``||A||`` (not its square), by power iteration, cached;
* ``describe()``: a small JSON-able dict such that ``make_operator(**op.describe())`` rebuilds ``op``;
* ``forward(x)`` (i.e. ``op(x)``): ``A x`` followed by the operator's ``noise_model`` (deepinv convention).

Operators follow the dtype and device of their input: a float64 input gives a float64 output even if the
operator's buffers are float32 (``op.double()`` or ``op.to(device)`` move the buffers, as for any
:class:`torch.nn.Module`). ``A``, ``A_dagger`` and friends never change the operator's state (unlike
deepinv's ``A_dagger``/``prox_l2``, which store solver settings); only ``norm()`` memoises its result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from deepinv.physics import LinearPhysics
from deepinv.physics.noise import NoiseModel, ZeroNoise
from torch import Tensor

from .linalg import conjugate_gradient, power_method

__all__ = ["LinearOperator", "normalize_image_size"]


def _identity(x: Any, *args: Any, **kwargs: Any) -> Any:
    return x


class _NoNoise(ZeroNoise):
    """deepinv's ZeroNoise without its lambda, so that operators can be pickled (torch.save, spawn workers)."""

    def __init__(self) -> None:
        super().__init__()
        self.noise_model = _identity


def normalize_image_size(image_size: int | Sequence[int], name: str = "image_size") -> tuple[int, int, int]:
    """Return ``(C, H, W)`` from an int ``n`` (-> ``(1, n, n)``), ``(H, W)`` or ``(C, H, W)``.

    Parameters
    ----------
    image_size : int or sequence of int
        The image size.
    name : str
        Name used in error messages.

    Returns
    -------
    tuple of int
        ``(channels, height, width)``.

    Raises
    ------
    ValueError
        If the size is not one, two or three positive integers.

    Examples
    --------
    >>> normalize_image_size(32), normalize_image_size((3, 16, 8))
    ((1, 32, 32), (3, 16, 8))
    """
    if isinstance(image_size, bool):
        raise TypeError(f"{name}: expected an int or a tuple (C, H, W), got {image_size!r}")
    if isinstance(image_size, int):
        size: tuple[int, ...] = (1, image_size, image_size)
    else:
        try:
            size = tuple(int(s) for s in image_size)
        except (TypeError, ValueError):
            raise TypeError(f"{name}: expected an int or a tuple (C, H, W), got {image_size!r}") from None
        if any(float(s) != int(s) for s in image_size):
            raise ValueError(f"{name}: expected integer sizes, got {tuple(image_size)!r}")
        if len(size) == 2:
            size = (1, *size)
    if len(size) != 3 or any(s <= 0 for s in size):
        raise ValueError(
            f"{name}: expected a positive int n, (H, W) or (C, H, W) of positive ints, got {image_size!r}"
        )
    return size  # type: ignore[return-value]


class LinearOperator(LinearPhysics):
    """Batched linear forward operator ``A`` with exact adjoint, pseudo-inverse and norm.

    Subclasses implement :meth:`A`, :meth:`A_adjoint`, :attr:`measurement_size` and
    :meth:`_config` (the constructor arguments, JSON-able), and may override :meth:`A_dagger`,
    :meth:`prox_l2` and :meth:`_compute_norm` with closed forms.

    Parameters
    ----------
    image_size : int or tuple
        ``n``, ``(H, W)`` or ``(C, H, W)``; inputs must have shape ``[B, C, H, W]``.
    noise_model : deepinv.physics.NoiseModel, optional
        Noise applied by ``forward`` (``op(x)``); default none. See :class:`liftinv.operators.GaussianNoise`.

    Notes
    -----
    The adjoint is the Euclidean one, ``sum(A(x) * y) == sum(x * A_adjoint(y))`` up to rounding, for
    every operator (deepinv's tomography adjoint and ODL's weighted adjoints are not; see the subclasses).
    """

    #: registry name used by :func:`liftinv.operators.make_operator`
    name: ClassVar[str] = "operator"

    def __init__(self, image_size: int | Sequence[int], *, noise_model: NoiseModel | None = None) -> None:
        size = normalize_image_size(image_size)
        # Module-level identities instead of deepinv's default lambdas keep operators picklable.
        super().__init__(
            A=_identity,
            img_size=size,
            noise_model=noise_model if noise_model is not None else _NoNoise(),
            sensor_model=_identity,
        )
        self.image_size: tuple[int, int, int] = size
        self._norm_cache: dict[tuple[int, float], float] = {}

    # ----------------------------------------------------------------------------------- shapes
    @property
    def measurement_size(self) -> tuple[int, ...]:
        """Shape of one measurement (without the batch dimension)."""
        raise NotImplementedError

    def _check_image(self, x: Tensor, name: str = "x") -> None:
        # Hot path: one shape comparison and one dtype flag (about a microsecond); no finiteness scan.
        # A 3-D or 5-D tensor fails the comparison too, since shape[1:] then has 2 or 4 entries.
        try:
            if x.shape[1:] == self.image_size and x.is_floating_point():
                return
        except AttributeError:
            pass
        self._raise_bad_input(x, name, self.image_size, "image")

    def _check_measurement(self, y: Tensor, name: str = "y") -> None:
        try:
            if y.shape[1:] == self.measurement_size and y.is_floating_point():
                return
        except AttributeError:
            pass
        self._raise_bad_input(y, name, self.measurement_size, "measurement")

    def _raise_bad_input(self, t: Any, name: str, size: tuple[int, ...], kind: str) -> None:
        owner = type(self).__name__
        if not isinstance(t, Tensor):
            raise TypeError(f"{owner}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.shape[1:] != size:
            expected = ", ".join(str(s) for s in size)
            layout = " (batch, channels, height, width)" if kind == "image" else ""
            raise ValueError(
                f"{owner}: expected {kind} {name} of shape [B, {expected}]{layout}, got {list(t.shape)}"
            )
        raise TypeError(f"{owner}: {name} must be a floating-point tensor, got dtype {t.dtype}")

    # ------------------------------------------------------------------------------- operators
    def A(self, x: Tensor, **kwargs: Any) -> Tensor:
        """Apply the forward operator: ``y = A x``."""
        raise NotImplementedError

    def A_adjoint(self, y: Tensor, **kwargs: Any) -> Tensor:
        """Apply the adjoint: ``x = A^T y``."""
        raise NotImplementedError

    def A_adjoint_A(self, x: Tensor, **kwargs: Any) -> Tensor:
        """Apply the normal operator ``A^T A x``."""
        return self.A_adjoint(self.A(x))

    def A_A_adjoint(self, y: Tensor, **kwargs: Any) -> Tensor:
        """Apply ``A A^T y``."""
        return self.A(self.A_adjoint(y))

    def A_dagger(self, y: Tensor, *, max_iter: int = 100, tol: float = 1e-6, **kwargs: Any) -> Tensor:
        """Pseudo-inverse ``A^+ y``: minimum-norm least squares by CG on ``A^T A x = A^T y`` from ``x = 0``.

        Subclasses override this with closed forms (truncated inverse filter, FBP, masking).

        Parameters
        ----------
        y : Tensor
            Measurements ``[B, *measurement_size]``.
        max_iter : int, default 100
            Maximum number of CG iterations.
        tol : float, default 1e-6
            Relative residual tolerance of the normal equations.

        Returns
        -------
        Tensor
            ``[B, C, H, W]``.
        """
        self._check_measurement(y)
        x, _, _ = conjugate_gradient(self.A_adjoint_A, self.A_adjoint(y), max_iter=max_iter, tol=tol)
        return x

    def prox_l2(self, z: Tensor, y: Tensor, gamma: float | Tensor, **kwargs: Any) -> Tensor:
        """Proximal map of the data term: ``argmin_x gamma/2 ||A x - y||^2 + 1/2 ||x - z||^2``.

        Solves ``(gamma A^T A + I) x = gamma A^T y + z`` by conjugate gradients (warm start ``z``,
        ``max_iter=100``, ``tol=1e-6`` unless given as keywords); subclasses use closed forms. Unlike
        deepinv's, this never stores the solver settings on the operator. Other keywords are ignored,
        so deepinv's data-fidelity terms can call it.

        Parameters
        ----------
        z : Tensor
            Point at which the prox is evaluated, ``[B, C, H, W]``.
        y : Tensor
            Measurements.
        gamma : float or Tensor
            Step size (a tensor broadcastable to ``[B, 1, 1, 1]`` for per-sample steps).

        Returns
        -------
        Tensor
            ``[B, C, H, W]``.
        """
        max_iter = int(kwargs.get("max_iter") or 100)
        tol = float(kwargs.get("tol") or 1e-6)
        rhs = gamma * self.A_adjoint(y) + z
        x, _, _ = conjugate_gradient(
            lambda v: gamma * self.A_adjoint_A(v) + v, rhs, z, max_iter=max_iter, tol=tol
        )
        return x

    def measure(
        self, x: Tensor, noise: NoiseModel | float | None = None, *, seed: int | None = None
    ) -> Tensor:
        """Simulate measurements ``y = N(A x)``.

        Parameters
        ----------
        x : Tensor
            Images ``[B, C, H, W]``.
        noise : NoiseModel or float, optional
            Noise model (a float ``s`` means ``GaussianNoise(s)``); default the operator's ``noise_model``.
        seed : int, optional
            Passed to the noise model: the same seed gives the same noise.

        Returns
        -------
        Tensor
            ``[B, *measurement_size]``. Operators whose measurements have structural zeros keep them
            (inpainting: missing pixels stay 0).

        Examples
        --------
        >>> import torch
        >>> from liftinv.operators import Blur
        >>> op, x = Blur(16, sigma=1.0), torch.rand(1, 1, 16, 16)
        >>> torch.equal(op.measure(x, 0.05, seed=1), op.measure(x, 0.05, seed=1))
        True
        """
        y = self.A(x)
        if noise is None:
            noise = self.noise_model
        elif isinstance(noise, (int, float)) and not isinstance(noise, bool):
            from .noise import GaussianNoise

            noise = GaussianNoise(float(noise))
        elif not callable(noise):
            raise TypeError(
                f"measure: noise must be a NoiseModel, a float (Gaussian sigma) or None, got {noise!r}"
            )
        noisy = noise(y) if seed is None else noise(y, seed=seed)
        return self._restrict_noise(noisy)

    def _restrict_noise(self, y: Tensor) -> Tensor:
        """Hook: re-impose structural zeros of the measurement after noise (identity by default)."""
        return y

    # ------------------------------------------------------------------------------------ norm
    def norm(self, *, max_iter: int = 500, tol: float = 1e-7) -> float:
        """Operator norm ``||A|| = sqrt(lambda_max(A^T A))`` -- the norm itself, NOT its square.

        (deepinv's ``compute_norm`` returns the square by default; this does not.) Computed once by power
        iteration in float64 from a seeded random start (or in closed form where the operator has one)
        and memoised per ``(max_iter, tol)``.

        Parameters
        ----------
        max_iter : int, default 500
            Maximum power iterations.
        tol : float, default 1e-7
            Relative tolerance on the eigenvalue of ``A^T A``.

        Returns
        -------
        float
            ``||A||``. Step sizes of gradient methods are ``1 / ||A||**2``.

        Examples
        --------
        >>> from liftinv.operators import Inpainting
        >>> Inpainting(8, keep_rate=0.5, seed=0).norm()
        1.0
        """
        key = (int(max_iter), float(tol))
        if key not in self._norm_cache:
            self._norm_cache[key] = float(self._compute_norm(max_iter=max_iter, tol=tol))
        return self._norm_cache[key]

    def _compute_norm(self, *, max_iter: int, tol: float) -> float:
        device = self._device_holder.device
        generator = torch.Generator().manual_seed(0)
        x0 = torch.randn((1, *self.image_size), generator=generator, dtype=torch.float64).to(device)
        return power_method(self.A_adjoint_A, x0, max_iter=max_iter, tol=tol) ** 0.5

    # -------------------------------------------------------------------------------- describe
    def _config(self) -> dict[str, Any]:
        """Constructor arguments other than ``image_size`` (JSON-able)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """Small JSON-able description: ``{"name", "image_size", **parameters}``.

        ``liftinv.operators.make_operator(**op.describe())`` rebuilds an equivalent operator (used to
        save trained models together with their forward operator).

        Returns
        -------
        dict
            E.g. ``{"name": "blur", "image_size": [1, 64, 64], "kernel": "gaussian", "sigma": 2.0, ...}``.
        """
        return {"name": self.name, "image_size": list(self.image_size), **self._config()}

    def extra_repr(self) -> str:
        items = []
        for key, value in self.describe().items():
            text = repr(value)
            items.append(f"{key}={text if len(text) < 60 else text[:57] + '...'}")
        return ", ".join(items)
