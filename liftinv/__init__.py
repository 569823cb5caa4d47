"""liftinv: imaging inverse problems with lifted training.

Rooms, in import order (a room imports only the rooms before it; see ``ARCHITECTURE.md``):

* ``liftinv.operators``, ``liftinv.datasets``: forward operators (blur, tomography, inpainting, denoising,
  ODL wrapper) with classical reconstruction, and offline data;
* ``liftinv.lifted``: the lifted engine (activations, penalties, ``lift``, block steps, norms);
* ``liftinv.models``: plain ``nn.Module`` s (builders, blocks, hard-threshold units, unrolled networks);
* ``liftinv.training``: ``fit`` and every method it dispatches to (back-propagation, lifted BCD / ISGM,
  FTPROP, unrolled);
* ``liftinv.unrolled`` (tasks, one-call training, save/load, learned ``reconstruct``) and
  ``liftinv.inversion`` (``invert`` and the recipes of networks to invert);
* ``liftinv.cli``: the command line.

Everything is imported lazily, so ``import liftinv`` is cheap and deepinv is only loaded when operators or
datasets are used. Shortcuts: ``liftinv.lift``, ``liftinv.fit``, ``liftinv.reconstruct`` (learned, with
classical fallback), ``liftinv.invert``, ``liftinv.get_recipe``.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_MODULES = {
    "operators",
    "datasets",
    "lifted",
    "models",
    "training",
    "unrolled",
    "inversion",
    "cli",
}
# public name -> module that defines it (resolved on first access)
_ATTRIBUTES = {
    "get_activation": "liftinv.lifted.activations",
    "BregmanPenalty": "liftinv.lifted.penalties",
    "QuadraticPenalty": "liftinv.lifted.penalties",
    "FenchelPenalty": "liftinv.lifted.penalties",
    "lift": "liftinv.lifted.network",
    "LiftedNetwork": "liftinv.lifted.network",
    "fit": "liftinv.training.loop",
    "History": "liftinv.training.loop",
    "available_methods": "liftinv.training.registry",
    "reconstruct": "liftinv.unrolled.reconstruct",
    "invert": "liftinv.inversion.api",
    "InversionResult": "liftinv.inversion.api",
    "get_recipe": "liftinv.inversion.recipes",
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
