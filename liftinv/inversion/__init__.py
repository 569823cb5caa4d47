"""Stable inversion of pre-trained networks: :func:`invert` over private lifted and gradient solvers.

* :mod:`~liftinv.inversion.api` -- :func:`invert`, :class:`InversionResult` and the option lists;
* ``_lifted``, ``_gradient``, ``_common`` -- the solvers and their shared plumbing (private);
* :mod:`~liftinv.inversion.recipes` -- reproducible networks to invert and their test inputs;
* :mod:`~liftinv.inversion.networks` -- the larger trained ones (natural-image autoencoders, ResNet features).

Wang & Benning, *A lifted Bregman formulation for the inversion of deep neural networks*, Front. Appl.
Math. Stat. 9, 2023 (P2).
"""

from liftinv.inversion.api import (
    COUPLINGS,
    GRADIENT_SOLVERS,
    LIFTED_SOLVERS,
    METHODS,
    REGULARISERS,
    InversionResult,
    StuckAtStartWarning,
    input_shape_of,
    invert,
)

__all__ = [
    "COUPLINGS",
    "GRADIENT_SOLVERS",
    "LIFTED_SOLVERS",
    "METHODS",
    "REGULARISERS",
    "InversionResult",
    "StuckAtStartWarning",
    "input_shape_of",
    "invert",
]
