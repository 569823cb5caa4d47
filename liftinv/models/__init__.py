"""Plain ``torch.nn`` modules (no trainers): builders, blocks, hard-threshold units, transforms, unrolled nets.

* :mod:`~liftinv.models.builders` -- ``mlp``, ``convnet``, ``convnet4``, ``paper_convnet4``, ``mlp_bn`` and
  activations by name;
* :mod:`~liftinv.models.blocks` -- :class:`ResidualBlock`, :class:`ConvResidualBlock`, :class:`ProximalBlock` (each gives its lifted
  form through ``lifted_layers``);
* :mod:`~liftinv.models.hard_threshold` -- :class:`Sign`, :class:`Staircase` and the FTPROP surrogates;
* :mod:`~liftinv.models.transforms` -- circular and Parseval convolutions;
* :mod:`~liftinv.models.operator_adapter`, :mod:`~liftinv.models.unrolled` -- the forward operator seen by
  a network, and the unrolled proximal networks;
* :mod:`~liftinv.models.learned` -- learned unrolled networks with CNN proximal steps
  (:class:`LearnedPrimalDual`, :class:`UnrolledProxGradCNN`), registered in :data:`ARCHITECTURES` as
  ``"lpd"`` and ``"proxgrad-cnn"``.
"""

from liftinv.models.blocks import ConvResidualBlock, ProximalBlock, ResidualBlock
from liftinv.models.builders import (
    HARD_THRESHOLDS,
    activation_module,
    convnet,
    convnet4,
    mlp,
    mlp_bn,
    paper_convnet4,
)
from liftinv.models.hard_threshold import (
    SURROGATES,
    Sign,
    Staircase,
    Surrogate,
    hard_threshold_modules,
    set_surrogate,
    sign,
    staircase,
    staircase_thresholds,
)
from liftinv.models.learned import (
    LEARNED_ARCHITECTURES,
    LEARNED_INITS,
    LearnedPrimalDual,
    UnrolledProxGradCNN,
)
from liftinv.models.operator_adapter import OperatorAdapter, OperatorNetwork
from liftinv.models.transforms import CircularConv, ParsevalConv, PositiveSoftThreshold, dct_filters
from liftinv.models.unrolled import ARCHITECTURES, INITS, UnrolledDualFB, UnrolledProxGrad, build_model

ARCHITECTURES.update(LEARNED_ARCHITECTURES)  # build_model("lpd" | "proxgrad-cnn", ...) and load_model

__all__ = [
    "ConvResidualBlock",
    "ProximalBlock",
    "ResidualBlock",
    "HARD_THRESHOLDS",
    "activation_module",
    "convnet",
    "convnet4",
    "mlp",
    "mlp_bn",
    "paper_convnet4",
    "SURROGATES",
    "Sign",
    "Staircase",
    "Surrogate",
    "hard_threshold_modules",
    "set_surrogate",
    "sign",
    "staircase",
    "staircase_thresholds",
    "OperatorAdapter",
    "OperatorNetwork",
    "CircularConv",
    "ParsevalConv",
    "PositiveSoftThreshold",
    "dct_filters",
    "ARCHITECTURES",
    "INITS",
    "UnrolledDualFB",
    "UnrolledProxGrad",
    "build_model",
    "LEARNED_ARCHITECTURES",
    "LEARNED_INITS",
    "LearnedPrimalDual",
    "UnrolledProxGradCNN",
]
