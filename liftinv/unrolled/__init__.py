"""Unrolled proximal networks for imaging inverse problems, trained by back-propagation or lifted losses.

* :mod:`~liftinv.unrolled.tasks` -- the tasks (``TASKS``: deblur, ct, inpaint, denoise) and their disjoint
  train/test images;
* :mod:`~liftinv.unrolled.train` -- :func:`build_model`, :func:`train` (one call from a task name to a
  trained network, with checkpoints), method names and defaults;
* :mod:`~liftinv.unrolled.io` -- :func:`save_model` / :func:`load_model` (weights, configuration, operator
  description);
* :mod:`~liftinv.unrolled.reconstruct` -- :func:`reconstruct` with a trained network.

The networks themselves are plain modules in :mod:`liftinv.models.unrolled`; their lifted trainers are in
:mod:`liftinv.training.unrolled`.

See Also
--------
liftinv.operators.reconstruct : classical reconstruction (pseudo-inverse, Tikhonov, TV).

References: P3 Wang, Benning & Repetti, MLSP 2024 (arXiv 2408.08742); P4 Wang et al., arXiv 2510.09796; P1
Wang & Benning, JMLR 24(232), 2023.
"""

from liftinv.models.unrolled import ARCHITECTURES, INITS, UnrolledDualFB, UnrolledProxGrad
from liftinv.unrolled.io import (
    FORMAT,
    ModelMismatchError,
    is_resizable,
    load_model,
    model_for_operator,
    save_model,
)
from liftinv.unrolled.reconstruct import reconstruct
from liftinv.unrolled.tasks import ELLIPSES, TASKS, Task, TaskData, get_task, make_task_data
from liftinv.unrolled.train import (
    ARCH_OPTIONS,
    DEFAULT_OPTIONS,
    LIFTED_ARCH_OPTIONS,
    METHOD_ALIASES,
    build_model,
    data_sources,
    resolve_method,
    train,
)

__all__ = [
    "ARCHITECTURES",
    "INITS",
    "UnrolledDualFB",
    "UnrolledProxGrad",
    "FORMAT",
    "load_model",
    "is_resizable",
    "model_for_operator",
    "ELLIPSES",
    "data_sources",
    "save_model",
    "reconstruct",
    "TASKS",
    "Task",
    "TaskData",
    "get_task",
    "make_task_data",
    "ARCH_OPTIONS",
    "DEFAULT_OPTIONS",
    "LIFTED_ARCH_OPTIONS",
    "METHOD_ALIASES",
    "ModelMismatchError",
    "build_model",
    "resolve_method",
    "train",
]
