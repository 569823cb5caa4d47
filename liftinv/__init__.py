"""liftinv: imaging inverse problems with lifted training.

Sub-packages and modules are imported lazily (``import liftinv`` is cheap; deepinv is only imported
when operators or datasets are used).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it (resolved on first attribute access)
_LAZY = {
    # modules
    "operators": "liftinv.operators",
    "datasets": "liftinv.datasets",
    "activations": "liftinv.activations",
    "penalties": "liftinv.penalties",
    "lifting": "liftinv.lifting",
    "training": "liftinv.training",
    # engine
    "get_activation": "liftinv.activations",
    "BregmanPenalty": "liftinv.penalties",
    "QuadraticPenalty": "liftinv.penalties",
    "FenchelPenalty": "liftinv.penalties",
    "lift": "liftinv.lifting",
    "LiftedNetwork": "liftinv.lifting",
}


def __getattr__(name: str):
    if name in _LAZY:
        mod = importlib.import_module(_LAZY[name])
        return mod if _LAZY[name].endswith(name) and name in _LAZY[name].split(".") else getattr(mod, name)
    raise AttributeError(f"module 'liftinv' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
