"""Denoising operator: the identity, ``y = x + noise`` (a :class:`~liftinv.operators.DiagonalOperator`, ``m = 1``)."""

from __future__ import annotations

from typing import Any

from deepinv.physics.noise import NoiseModel
from torch import Tensor

from .base import DiagonalOperator

__all__ = ["Denoising"]


class Denoising(DiagonalOperator):
    """Identity operator ``A x = x`` (denoising: ``y = x + noise``): the diagonal operator with ``m = 1``.

    ``A``, ``A_adjoint`` and ``A_dagger`` return their input itself (no copy), as :class:`torch.nn.Identity`.
    Every pixel is measured, so noise is never restricted. The mask is the number 1 (not in the
    ``state_dict``).

    Parameters
    ----------
    image_size : int or tuple
        ``n``, ``(H, W)`` or ``(C, H, W)``.
    noise_model : deepinv.physics.NoiseModel, optional
        Noise added by ``op(x)``.

    Examples
    --------
    >>> import torch
    >>> op = Denoising(8)
    >>> x = torch.rand(1, 1, 8, 8)
    >>> op.A(x) is x, op.norm()
    (True, 1.0)
    """

    name = "denoising"

    def __init__(self, image_size: int | tuple[int, ...], *, noise_model: NoiseModel | None = None) -> None:
        super().__init__(image_size, 1.0, noise_model=noise_model)

    def _config(self) -> dict[str, Any]:
        return {}

    def A(self, x: Tensor, **kwargs: Any) -> Tensor:
        """Identity."""
        self._check_image(x)
        return x

    def A_adjoint(self, y: Tensor, **kwargs: Any) -> Tensor:
        """Identity."""
        self._check_image(y, "y")
        return y

    A_adjoint_A = A_adjoint
    A_A_adjoint = A_adjoint

    def A_dagger(self, y: Tensor, **kwargs: Any) -> Tensor:
        """Identity."""
        return self.A_adjoint(y)

    def prox_l2(self, z: Tensor, y: Tensor, gamma: float | Tensor, **kwargs: Any) -> Tensor:
        """``(gamma y + z) / (gamma + 1)``."""
        if isinstance(gamma, Tensor) and gamma.dim() > 0:
            gamma = gamma.reshape(-1, *([1] * (z.dim() - 1)))
        return (gamma * y + z) / (gamma + 1)

    def _restrict_noise(self, y: Tensor) -> Tensor:
        return y

    def _compute_norm(self, *, max_iter: int, tol: float) -> float:
        return 1.0
