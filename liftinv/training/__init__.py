"""``fit`` and every training method it dispatches to, one algorithm family per module.

* :mod:`~liftinv.training.loop` -- :func:`fit`, :class:`History`, seeds, devices, checkpoints;
* :mod:`~liftinv.training.registry` -- method names and the module that implements each;
* :mod:`~liftinv.training.backprop` -- back-propagation baselines (SGD, Adam);
* :mod:`~liftinv.training.lifted_base`, :mod:`~liftinv.training.bcd`, :mod:`~liftinv.training.minibatch`
  -- lifted BCD (plain, accelerated), adaptive and implicit SGD;
* :mod:`~liftinv.training.ftprop` -- FTPROP and straight-through baselines for hard-threshold networks;
* :mod:`~liftinv.training.unrolled` -- lifted trainers specialised to unrolled networks.

Trainer modules are imported on first use of their method name (see :func:`get_trainer`).
"""

from liftinv.training.loop import (
    History,
    accuracy,
    as_tensors,
    check_data,
    epoch_generator,
    evaluate,
    fit,
    load_checkpoint,
    minibatches,
    nested_loss,
    resolve_device,
    save_checkpoint,
    seed_everything,
    targets_for_loss,
)
from liftinv.training.registry import METHOD_MODULES, available_methods, get_trainer, register_method

__all__ = [
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
    "METHOD_MODULES",
    "available_methods",
    "get_trainer",
    "register_method",
]
