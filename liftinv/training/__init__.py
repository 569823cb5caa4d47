"""``fit`` and every training method it dispatches to, one algorithm family per module.

* :mod:`~liftinv.training.loop` -- :func:`fit`, :class:`History`, seeds, devices, checkpoints;
* :mod:`~liftinv.training.registry` -- method names and the module that implements each;
* :mod:`~liftinv.training.backprop` -- back-propagation baselines (SGD, Adam);
* :mod:`~liftinv.training.lifted_base`, :mod:`~liftinv.training.bcd`, :mod:`~liftinv.training.minibatch`
  -- lifted BCD (plain, accelerated), adaptive and implicit SGD;
* :mod:`~liftinv.training.ftprop` -- FTPROP and straight-through baselines for hard-threshold networks;
* :mod:`~liftinv.training.unrolled` -- lifted trainers specialised to unrolled networks.

Trainer modules are imported on first use of their method name (see :func:`get_trainer`); the names above
are imported on first access, so ``import liftinv.training`` is cheap.
"""

from __future__ import annotations

# the public names, imported from their module on first access (PEP 562), so that importing
# liftinv.training.registry (the method names, for the CLI's parsers) does not import torch
_LOOP_NAMES = (
    "History",
    "accuracy",
    "as_tensors",
    "check_data",
    "epoch_generator",
    "evaluate",
    "fit",
    "load_checkpoint",
    "minibatches",
    "nested_loss",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
    "targets_for_loss",
)
_REGISTRY_NAMES = ("METHOD_MODULES", "available_methods", "get_trainer", "register_method")

__all__ = [*_LOOP_NAMES, *_REGISTRY_NAMES]


def __getattr__(name: str):
    if name in _LOOP_NAMES:
        from liftinv.training import loop

        return getattr(loop, name)
    if name in _REGISTRY_NAMES:
        from liftinv.training import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
