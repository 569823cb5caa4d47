"""Base class of liftinv's forward operators, built on :class:`deepinv.physics.LinearPhysics`.

Every operator maps images ``x`` of shape ``[B, C, H, W]`` to measurements ``y = A x`` of shape
``[B, *measurement_size]`` and offers:

* ``A(x)``, ``A_adjoint(y)`` (the exact Euclidean adjoint: ``<A x, y> = <x, A^T y>``), ``A_adjoint_A(x)``;
* ``A_dagger(y)``: a pseudo-inverse (closed form where one exists, otherwise minimum-norm least squares by
  conjugate gradients on ``A^T A x = A^T y``);
* ``prox_l2(z, y, gamma)``: ``argmin_x gamma/2 ||A x - y||^2 + 1/2 ||x - z||^2``;
* ``norm()``: the operator norm ``||A||`` (not its square), by power iteration, cached;
* ``describe()``: a small JSON-able dict such that ``make_operator(**op.describe())`` rebuilds ``op``;
* ``forward(x)`` (i.e. ``op(x)``): ``A x`` followed by the operator's ``noise_model`` (deepinv convention);
* ``measure(x, noise, seed=... | generator=...)``: simulated noisy measurements (the one simulation in liftinv).

:class:`DiagonalOperator` is the base of the pixel-wise operators (``A = diag(m)``: inpainting, denoising),
like deepinv's :class:`~deepinv.physics.DecomposablePhysics` with ``U = V = I``: closed-form adjoint,
pseudo-inverse, proximal map and norm, and noise kept off the unmeasured pixels.

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

__all__ = ["LinearOperator", "DiagonalOperator", "normalize_image_size"]


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
        self,
        x: Tensor,
        noise: NoiseModel | float | None = None,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Simulate measurements ``y = N(A x)``: the one measurement simulation of liftinv.

        The noise is drawn by the noise model (liftinv's :class:`~liftinv.operators.GaussianNoise` and
        :class:`~liftinv.operators.PoissonNoise` draw on the CPU and move the draw to ``x``'s device, so a
        seed or a seeded generator gives the same measurements on every device). Operators with
        unmeasured entries (:class:`DiagonalOperator` with zeros on its diagonal, e.g. inpainting) keep
        them at exactly 0.

        Parameters
        ----------
        x : Tensor
            Images ``[B, C, H, W]``.
        noise : NoiseModel or float, optional
            Noise model (a float ``s`` means ``GaussianNoise(s)``: ``y = A x + s n``, ``n ~ N(0, I)``);
            default the operator's ``noise_model`` (none unless one was given).
        seed : int, optional
            Draw the noise from a fresh generator seeded with ``seed``: the same seed gives the same noise.
        generator : torch.Generator, optional
            Draw the noise from this CPU generator (which advances), e.g. to simulate several batches from
            one seeded stream. Not with ``seed``; the noise model must accept a ``generator`` keyword (the
            liftinv noise models do).

        Returns
        -------
        Tensor
            ``[B, *measurement_size]``.

        Raises
        ------
        TypeError
            If ``noise`` is neither a noise model, a number nor None.
        ValueError
            If both ``seed`` and ``generator`` are given.

        Examples
        --------
        >>> import torch
        >>> from liftinv.operators import Blur
        >>> op, x = Blur(16, sigma=1.0), torch.rand(1, 1, 16, 16)
        >>> torch.equal(op.measure(x, 0.05, seed=1), op.measure(x, 0.05, seed=1))
        True
        >>> y = op.measure(x, 0.05, generator=torch.Generator().manual_seed(1))
        >>> torch.equal(y, op.measure(x, 0.05, seed=1))  # a fresh generator with the same seed
        True
        """
        if seed is not None and generator is not None:
            raise ValueError("measure: give either seed or generator, not both")
        if noise is None:
            noise = self.noise_model
        elif isinstance(noise, (int, float)) and not isinstance(noise, bool):
            from .noise import GaussianNoise

            noise = GaussianNoise(float(noise))
        elif not callable(noise):
            raise TypeError(
                f"measure: noise must be a NoiseModel, a float (Gaussian sigma) or None, got {noise!r}"
            )
        options: dict[str, Any] = {}
        if seed is not None:
            options["seed"] = seed
        if generator is not None:
            options["generator"] = generator
        return self._restrict_noise(noise(self.A(x), **options))

    def _restrict_noise(self, y: Tensor) -> Tensor:
        """Re-impose structural zeros of the measurements after noise (identity; see DiagonalOperator)."""
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


class DiagonalOperator(LinearOperator):
    """Pixel-wise operator ``A x = m * x`` (a diagonal matrix ``diag(m)``); measurements have the image's shape.

    deepinv's :class:`~deepinv.physics.DecomposablePhysics` with ``U = V = I`` and singular values
    ``|m|``: everything has a closed form. Entries where ``m = 0`` are not measured (its :attr:`support`
    is ``m != 0``): :meth:`measure` and ``op(x)`` keep them at exactly 0 after noise, so simulated
    measurements carry no noise where nothing was observed (e.g. the missing pixels of inpainting).

    Parameters
    ----------
    image_size : int or tuple
        ``n``, ``(H, W)`` or ``(C, H, W)``.
    mask : float or Tensor, default 1.0
        The diagonal ``m``, real and finite: a number, or a tensor broadcastable to ``[1, C, H, W]``
        (``[H, W]``, ``[C, H, W]`` or ``[1, C, H, W]``), stored as the buffer ``mask`` (in the
        ``state_dict`` for a tensor; a number is rebuilt by the constructor, so it is not).
    noise_model : deepinv.physics.NoiseModel, optional
        Noise added by ``op(x)`` (kept off the unmeasured entries).

    Notes
    -----
    ``A^T = A``, ``A^T A = diag(m^2)``, ``A^+ y = y / m`` on the support and 0 elsewhere,
    ``prox_l2(z, y, gamma) = (gamma m y + z) / (gamma m^2 + 1)`` and ``||A|| = max |m|``.
    Subclasses (:class:`~liftinv.operators.Inpainting`, :class:`~liftinv.operators.Denoising`) set the
    mask and may override these with cheaper special cases; a plain ``DiagonalOperator`` is not in the
    :func:`~liftinv.operators.make_operator` registry.

    Examples
    --------
    >>> import torch
    >>> op = DiagonalOperator(4, torch.tensor([[1.0, 0.5, 0.0, 2.0]] * 4))
    >>> x = torch.ones(1, 1, 4, 4)
    >>> op.A(x)[0, 0, 0].tolist(), op.A_dagger(op.A(x))[0, 0, 0].tolist(), op.norm()
    ([1.0, 0.5, 0.0, 2.0], [1.0, 1.0, 0.0, 1.0], 2.0)
    >>> bool((op.measure(x, 0.1, seed=0)[..., 2] == 0).all())  # unmeasured column: no noise
    True
    """

    name = "diagonal"

    def __init__(
        self,
        image_size: int | Sequence[int],
        mask: float | Tensor = 1.0,
        *,
        noise_model: NoiseModel | None = None,
    ) -> None:
        super().__init__(image_size, noise_model=noise_model)
        owner = type(self).__name__
        if isinstance(mask, Tensor) and mask.dim() == 0:
            mask = float(mask)
        if isinstance(mask, Tensor):
            values = mask.detach().to("cpu", torch.get_default_dtype())
            if values.dim() in (2, 3):
                values = values.reshape(1, *([1] * (3 - values.dim())), *values.shape)
            try:
                shape = torch.broadcast_shapes(values.shape, (1, *self.image_size))
            except RuntimeError:
                shape = None
            if values.dim() != 4 or shape != (1, *self.image_size):
                raise ValueError(
                    f"{owner}: mask of shape {list(mask.shape)} does not broadcast to the image "
                    f"[1, {', '.join(str(s) for s in self.image_size)}]"
                )
            persistent = True
        elif isinstance(mask, (int, float)) and not isinstance(mask, bool):
            values = torch.tensor(float(mask), dtype=torch.get_default_dtype())
            persistent = False
        else:
            raise TypeError(f"{owner}: mask must be a number or a tensor, got {type(mask).__name__}")
        if values.is_complex() or not bool(torch.isfinite(values).all()):
            raise ValueError(f"{owner}: mask must be real and finite")
        self.register_buffer("mask", values.contiguous(), persistent=persistent)

    @property
    def measurement_size(self) -> tuple[int, ...]:
        return self.image_size

    @property
    def support(self) -> Tensor:
        """Measured entries, ``mask != 0`` (bool, broadcastable to ``[1, C, H, W]``)."""
        return self.mask != 0

    def _config(self) -> dict[str, Any]:
        return {"mask": self.mask.tolist()}

    def A(self, x: Tensor, **kwargs: Any) -> Tensor:
        """Apply the diagonal: ``m * x``."""
        self._check_image(x)
        return x * self.mask

    def A_adjoint(self, y: Tensor, **kwargs: Any) -> Tensor:
        """Adjoint (= A for a real diagonal): ``m * y``."""
        self._check_image(y, "y")
        return y * self.mask

    def A_adjoint_A(self, x: Tensor, **kwargs: Any) -> Tensor:
        """``A^T A x = m^2 * x``."""
        self._check_image(x)
        return x * self.mask.square()

    A_A_adjoint = A_adjoint_A

    def A_dagger(self, y: Tensor, **kwargs: Any) -> Tensor:
        """Pseudo-inverse: ``y / m`` on the support, 0 elsewhere."""
        self._check_image(y, "y")
        inverse = torch.where(self.support, 1 / self.mask, torch.zeros_like(self.mask))
        return y * inverse

    def prox_l2(self, z: Tensor, y: Tensor, gamma: float | Tensor, **kwargs: Any) -> Tensor:
        """``argmin_x gamma/2 ||m x - y||^2 + 1/2 ||x - z||^2 = (gamma m y + z) / (gamma m^2 + 1)``."""
        if isinstance(gamma, Tensor) and gamma.dim() > 0:
            gamma = gamma.reshape(-1, *([1] * (z.dim() - 1)))
        return (gamma * self.mask * y + z) / (gamma * self.mask.square() + 1)

    def noise(self, y: Tensor, **kwargs: Any) -> Tensor:
        """The operator's noise model on the measured entries only (unmeasured ones stay exactly 0)."""
        return self._restrict_noise(self.noise_model(y, **kwargs))

    def _restrict_noise(self, y: Tensor) -> Tensor:
        # torch.where, not a product with the mask: unmeasured entries are +0.0 (never -0.0 from -noise * 0).
        return torch.where(self.support, y, 0.0)

    def _compute_norm(self, *, max_iter: int, tol: float) -> float:
        return float(self.mask.abs().max()) if self.mask.numel() else 0.0
