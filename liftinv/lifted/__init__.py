"""The lifted engine (maths only): proximal activations, layer penalties, lifted networks, block steps, norms.

A nested network ``x_l = sigma_l(W_l x_{l-1} + b_l)`` becomes a :class:`LiftedNetwork` with one state per
layer and the layer constraints as penalties (Wang & Benning, JMLR 24(232), 2023; Wang et al., arXiv
2510.09796). Modules, in import order:

* :mod:`~liftinv.lifted.activations` -- proximal activations ``sigma = prox_psi`` with ``psi``, ``Phi*`` and
  ``prox_{mu Phi}``;
* :mod:`~liftinv.lifted.penalties` -- lifted Bregman, Fenchel and MAC (quadratic) penalties;
* :mod:`~liftinv.lifted.norms` -- power iterations and Lipschitz bounds (step sizes);
* :mod:`~liftinv.lifted.network` -- :class:`LiftedLayer`, :class:`LiftedNetwork`, :func:`lift`;
* :mod:`~liftinv.lifted.steps` -- state and weight block steps;
* :mod:`~liftinv.lifted.dense` -- closed-form block steps for dense layers.

Nothing here imports a model, a trainer or an application.
"""

from liftinv.lifted.activations import (
    Clip,
    Identity,
    LeakyReLU,
    NotProximalError,
    ProximalActivation,
    ReLU,
    Sigmoid,
    Softmax,
    SoftThreshold,
    Tanh,
    from_module,
    get_activation,
)
from liftinv.lifted.network import SUPPORTED_MODULES, LiftedLayer, LiftedNetwork, LiftingError, lift
from liftinv.lifted.penalties import BregmanPenalty, FenchelPenalty, Penalty, QuadraticPenalty, make_penalty
from liftinv.lifted.steps import (
    block_objective,
    free_states,
    layer_objective,
    layer_parameters,
    state_gradient,
    state_step,
    state_sweep,
    weight_blocks,
    weight_step,
)

__all__ = [
    "Clip",
    "Identity",
    "LeakyReLU",
    "NotProximalError",
    "ProximalActivation",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "SoftThreshold",
    "Tanh",
    "from_module",
    "get_activation",
    "SUPPORTED_MODULES",
    "LiftedLayer",
    "LiftedNetwork",
    "LiftingError",
    "lift",
    "BregmanPenalty",
    "FenchelPenalty",
    "Penalty",
    "QuadraticPenalty",
    "make_penalty",
    "block_objective",
    "free_states",
    "layer_objective",
    "layer_parameters",
    "state_gradient",
    "state_step",
    "state_sweep",
    "weight_blocks",
    "weight_step",
]
