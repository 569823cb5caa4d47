"""liftinv: imaging inverse problems with lifted training.

Main entry points (imported lazily, so ``import liftinv`` is cheap and deepinv is only loaded when
operators or datasets are used):

* ``liftinv.operators``: forward operators (blur, tomography, inpainting, denoising, ODL wrapper) and
  classical reconstruction;
* ``liftinv.datasets``: offline images, phantoms, digits, MNIST/CIFAR readers, measurement pairs;
* ``liftinv.lift``, ``liftinv.fit``: lifted training (MAC, Fenchel lifted networks, lifted Bregman BCD/ISGM)
  and back-propagation baselines through one API; ``liftinv.ftprop`` for hard-threshold networks;
* ``liftinv.reconstruct``: reconstruction with a trained unrolled network or a classical method;
* ``liftinv.invert``: stable inversion of pre-trained networks (lifted Bregman inversion).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_MODULES = {
    "operators",
    "datasets",
    "activations",
    "penalties",
    "lifting",
    "training",
    "solvers",
    "models",
    "ftprop",
    "unrolled",
    "inversion",
    "recipes",
    "cli",
}
# public name -> module that defines it (resolved on first access)
_ATTRIBUTES = {
    "get_activation": "liftinv.activations",
    "BregmanPenalty": "liftinv.penalties",
    "QuadraticPenalty": "liftinv.penalties",
    "FenchelPenalty": "liftinv.penalties",
    "lift": "liftinv.lifting",
    "LiftedNetwork": "liftinv.lifting",
    "fit": "liftinv.training",
    "History": "liftinv.training",
    "reconstruct": "liftinv.unrolled",
    "invert": "liftinv.inversion",
    "get_recipe": "liftinv.recipes",
}

__all__ = sorted(_MODULES | set(_ATTRIBUTES))


def __getattr__(name: str):
    if name in _MODULES:
        return importlib.import_module(f"liftinv.{name}")
    if name in _ATTRIBUTES:
        return getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    raise AttributeError(f"module 'liftinv' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _MODULES | set(_ATTRIBUTES))
