"""The method registry: every name ``fit(method=...)`` accepts, and the training module that implements it.

A method name means one algorithm whatever the entry point (``fit``, ``liftinv train``,
``liftinv train-classifier``). Some algorithms have an implementation specialised to a kind of network
(the lifted Bregman / MAC trainers of unrolled networks, whose weights are shared between layers): those
register with a predicate ``applies_to(model)`` and :func:`get_trainer` picks them for the models they fit.

Trainer modules register their classes with :func:`register_method` when imported; :data:`METHOD_MODULES`
lets :func:`get_trainer` import them lazily. Only modules of :mod:`liftinv.training` appear here.

This module does not import torch (nor any trainer until :func:`get_trainer` asks for one), so the CLI builds
its parsers and reports bad arguments from these tables in a fraction of a second.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: importing the registry must not import torch
    from torch import nn

__all__ = [
    "METHOD_MODULES",
    "DESCRIPTIONS",
    "METHOD_ALIASES",
    "register_method",
    "available_methods",
    "methods_for",
    "get_trainer",
    "describe_methods",
    "get_data_parallel_trainer",
    "get_layer_parallel_trainer",
]

_BCD = "liftinv.training.bcd"
_MINIBATCH = "liftinv.training.minibatch"
_FTPROP = "liftinv.training.ftprop"
_UNROLLED = "liftinv.training.unrolled"
_BACKPROP = "liftinv.training.backprop"
#: the data-parallel versions of the trainers (``fit(..., distributed="data")``)
_DATA_PARALLEL = "liftinv.training.distributed"
#: the layer-parallel versions of the BCD trainers (``fit(..., distributed="layers")``)
_LAYER_PARALLEL = "liftinv.training.layer_parallel"
#: modules whose trainers train any ``nn.Module`` (the rest need a network ``lift`` accepts, hard-threshold
#: units, or an unrolled network)
_ANY_NETWORK = (_BACKPROP,)

#: method name -> the training modules that register an implementation of it (imported on first use)
METHOD_MODULES: dict[str, tuple[str, ...]] = {
    "backprop-sgd": (_BACKPROP,),
    "backprop-adam": (_BACKPROP,),
    "mac-bcd": (_BCD, _UNROLLED),
    "fenchel-bcd": (_BCD,),
    "bregman-bcd": (_BCD, _UNROLLED),
    "bregman-accel": (_BCD,),
    "bregman-adaptive": (_MINIBATCH,),
    "bregman-isgm": (_MINIBATCH, _UNROLLED),
    "mac-isgm": (_MINIBATCH, _UNROLLED),
    "ftprop-softhinge": (_FTPROP,),
    "ftprop-hinge": (_FTPROP,),
    "sste": (_FTPROP,),
    "ste": (_FTPROP,),
    "ftprop-exact": (_FTPROP,),
}

#: method name -> one-line description (CLI help, error messages)
DESCRIPTIONS: dict[str, str] = {
    "backprop-sgd": "back-propagation, SGD with momentum 0.9",
    "backprop-adam": "back-propagation, Adam",
    "mac-bcd": "block-coordinate descent on the quadratic (MAC) penalty",
    "fenchel-bcd": "block-coordinate descent on the Fenchel lifted penalty (ReLU)",
    "bregman-bcd": "block-coordinate descent on the lifted Bregman penalty",
    "bregman-accel": "lifted Bregman BCD with Nesterov extrapolation and restarts",
    "bregman-adaptive": "Adam on the lifted Bregman weight gradient after a top-down state sweep",
    "bregman-isgm": "lifted Bregman implicit SGD (proximal mini-batch steps)",
    "mac-isgm": "implicit SGD on the quadratic (MAC) penalty",
    "ftprop-softhinge": "FTPROP-mb with the soft hinge (hard-threshold units)",
    "ftprop-hinge": "FTPROP-mb with the hinge (hard-threshold units)",
    "sste": "saturated straight-through estimator (hard-threshold units)",
    "ste": "straight-through estimator (hard-threshold units)",
    "ftprop-exact": "exact FTPROP: target search and convex per-unit fits (small networks)",
}

#: short method names accepted by ``liftinv train`` and :func:`liftinv.unrolled.train` (and the benchmarks) ->
#: registered methods (:func:`liftinv.unrolled.train.resolve_method`)
METHOD_ALIASES: dict[str, str] = {
    "backprop": "backprop-adam",
    "mac": "mac-isgm",
}

# name -> list of (applies_to or None, trainer class); specialised implementations first
_METHODS: dict[str, list[tuple[Callable[[nn.Module], bool] | None, type]]] = {}


def register_method(name: str, trainer_cls: type | None = None, *, applies_to=None):
    """Register a trainer class under ``name`` (usable as a decorator).

    Parameters
    ----------
    name : str
        A key of :data:`METHOD_MODULES`.
    trainer_cls : type, optional
        The trainer; omitted when used as a decorator.
    applies_to : callable(model) -> bool, optional
        Marks a specialised implementation of the same algorithm, used for the models it accepts; the
        implementation registered without a predicate is the general one.
    """
    if name not in METHOD_MODULES:
        raise ValueError(f"method {name!r} is not listed in liftinv.training.registry.METHOD_MODULES")

    def deco(cls):
        entries = [e for e in _METHODS.setdefault(name, []) if e[1] is not cls]
        entries.append((applies_to, cls))
        entries.sort(key=lambda e: e[0] is None)  # specialised implementations are tried first
        _METHODS[name] = entries
        return cls

    return deco(trainer_cls) if trainer_cls is not None else deco


def available_methods() -> list[str]:
    """Every registered method name, sorted."""
    return sorted(METHOD_MODULES)


def methods_for(network: str) -> list[str]:
    """The method names that train a kind of network, sorted.

    Parameters
    ----------
    network : {"classifier", "unrolled"}
        ``"classifier"``: feed-forward networks (MLPs, convnets, hard-threshold networks): every method with a
        general implementation. ``"unrolled"``: unrolled proximal networks
        (:class:`liftinv.models.UnrolledProxGrad`, :class:`~liftinv.models.UnrolledDualFB`): back-propagation
        and the methods with an implementation specialised to them.

    Examples
    --------
    >>> methods_for("unrolled")
    ['backprop-adam', 'backprop-sgd', 'bregman-bcd', 'bregman-isgm', 'mac-bcd', 'mac-isgm']
    """
    if network == "classifier":
        return [n for n in available_methods() if any(m != _UNROLLED for m in METHOD_MODULES[n])]
    if network == "unrolled":
        return [
            n
            for n in available_methods()
            if any(m == _UNROLLED or m in _ANY_NETWORK for m in METHOD_MODULES[n])
        ]
    raise ValueError(f"network must be 'classifier' or 'unrolled', got {network!r}")


def describe_methods(names: list[str] | None = None) -> str:
    """``name: description`` lines for ``names`` (default: every method), for help texts."""
    return "\n".join(f"{name}: {DESCRIPTIONS[name]}" for name in (names or available_methods()))


def get_trainer(method: str, model: nn.Module | None = None) -> type:
    """The trainer class of ``method`` for ``model`` (the specialised implementation when one applies).

    Raises
    ------
    ValueError
        For an unknown method name, listing the available ones.
    """
    if method not in METHOD_MODULES:
        raise ValueError(f"unknown method {method!r}; available: {', '.join(available_methods())}")
    for module in METHOD_MODULES[method]:
        importlib.import_module(module)
    for applies_to, cls in _METHODS.get(method, []):
        if applies_to is None or (model is not None and applies_to(model)):
            return cls
    raise ValueError(f"method {method!r} has no implementation for {type(model).__name__}")


def get_data_parallel_trainer(method: str, model: nn.Module | None = None) -> type:
    """The data-parallel trainer class of ``method`` for ``model`` (``fit(..., distributed="data")``).

    Raises
    ------
    ValueError
        For an unknown method, or one without a data-parallel version (see
        :mod:`liftinv.training.distributed`).
    """
    base = get_trainer(method, model)
    return importlib.import_module(_DATA_PARALLEL).data_parallel_class(base)


def get_layer_parallel_trainer(method: str, model: nn.Module | None = None) -> type:
    """The layer-parallel trainer class of ``method`` for ``model`` (``fit(..., distributed="layers")``).

    Raises
    ------
    ValueError
        For an unknown method, or one without a layer-parallel version (see
        :mod:`liftinv.training.layer_parallel`).
    """
    base = get_trainer(method, model)
    return importlib.import_module(_LAYER_PARALLEL).layer_parallel_class(base)
