"""Lifting: a nested network as layers ``x_l = sigma_l(K_l(x_prev))`` with one state per layer.

``lift(model)`` turns an ``nn.Sequential`` (Linear / Conv2d / ConvTranspose2d / AvgPool2d / Flatten /
Unflatten and proximal activations, :class:`~liftinv.models.ResidualBlock`,
:class:`~liftinv.models.ProximalBlock`, or any module with a ``lifted_layers(offset)`` method) into a
:class:`LiftedNetwork` that *shares* the model's parameters: training the lifted network trains the user's
module, which is then used in its ordinary nested forward pass.

Lifted objective (mean over samples i; Wang & Benning, JMLR 2023; Wang et al., arXiv 2510.09796)::

    J(Theta, X) = 1/N sum_i [ data_i + sum_{l<L} lambda_l P_l(x_l^i, z_l^i) ],  z_l = K_l(x_{inputs(l)})

* ``last="fixed"`` (the default for models ending in a linear map): x_L = y and
  ``data_i = loss(z_L^i, y_i)`` with ``loss`` = 1/2||z - y||^2 ("mse") or cross-entropy ("ce");
* ``last="free"`` (models ending with an activation): x_L is a state and
  ``data_i = 1/2||x_L^i - y_i||^2 + lambda_L P_L(x_L^i, z_L^i)``.

At the forward states (x_l = sigma_l(z_l)) every penalty is 0 and J equals the nested loss.

Block primitives used by every solver (BCD, ISGM, inversion, unrolled training):

* :func:`state_step` / :func:`state_sweep`: forward-backward steps on state blocks,
  ``x_l <- prox_{mu lambda_l Phi_l}(x_l - mu grad_l)`` with backtracking (so the objective never rises);
* :func:`weight_step`: a gradient step on each layer's weights, step 1/L with L = lambda_l ||M_X||^2 / N
  (||[X_{l-1}; 1]||_2^2 for dense layers) and a backtracking safeguard;
* :func:`state_gradient`: the gradient of the smooth part of J in any state, including the input x_0
  (sum over downstream layers of lambda_m K_m^T (sigma_m(z_m) - x_m)): no sigma' and no backward pass
  through the nested network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from liftinv.lifted.activations import Identity, ProximalActivation, Softmax, from_module
from liftinv.lifted.penalties import Penalty, make_penalty

__all__ = [
    "check_lambdas",
    "LiftedBlock",
    "LiftedLayer",
    "LiftedNetwork",
    "lift",
    "LiftingError",
    "SUPPORTED_MODULES",
]


_PARAM_FREE_LINEAR = (nn.Flatten, nn.Unflatten, nn.AvgPool1d, nn.AvgPool2d, nn.Identity)
_AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d)
SUPPORTED_MODULES = (
    "nn.Sequential, nn.Linear, nn.Conv1d/2d, nn.ConvTranspose1d/2d, nn.AvgPool1d/2d, nn.Flatten, nn.Unflatten, "
    "nn.Identity, proximal activations (nn.ReLU, nn.LeakyReLU(slope<=1), nn.Tanh, nn.Sigmoid, nn.Hardtanh, "
    "nn.Softshrink, liftinv activations), liftinv.models.ResidualBlock, liftinv.models.ProximalBlock, "
    "and modules with a lifted_layers(offset) method (unrolled networks)"
)


class LiftingError(TypeError):
    """The model contains a layer that cannot be lifted."""


class LiftedLayer(nn.Module):
    """One lifted layer: pre-activation ``z = linear(*[x_j for j in inputs])`` and proximal activation.

    Parameters
    ----------
    linear : nn.Module
        An affine map of its inputs (parameters shared with the user's model, not copied).
    activation : ProximalActivation or nn.Module
        The layer's proximal activation.
    inputs : tuple of int, optional
        Absolute indices of the states feeding this layer (state 0 is the network input); filled in by
        :class:`LiftedNetwork` as ``(l - 1,)`` when omitted.
    affine_in_params : bool, optional
        Whether z is affine-linear in the layer's parameters (dense / convolutional layers after
        parameter-free maps); then the weight step uses the safe step 1/||M_X||^2. Detected when omitted.
    """

    def __init__(
        self,
        linear: nn.Module,
        activation,
        inputs: Sequence[int] | None = None,
        affine_in_params: bool | None = None,
    ):
        super().__init__()
        self.linear = linear
        self.activation = (
            activation if isinstance(activation, ProximalActivation) else from_module(activation)
        )
        self.inputs = tuple(inputs) if inputs is not None else None
        if affine_in_params is None:
            affine_in_params = _detect_affine(linear) and not any(True for _ in self.activation.parameters())
        self.affine_in_params = affine_in_params

    def forward(self, *xs: Tensor) -> Tensor:
        return self.linear(*xs)


def _detect_affine(linear: nn.Module) -> bool:
    mods = list(linear) if isinstance(linear, nn.Sequential) else [linear]
    n_affine = 0
    for m in mods:
        if isinstance(m, _AFFINE) and not nn.utils.parametrize.is_parametrized(m):
            n_affine += 1
        elif not isinstance(m, _PARAM_FREE_LINEAR):
            return False
    return n_affine == 1


def check_lambdas(lambdas, n_penalised: int) -> list[float]:
    """The ``lambdas`` option of :func:`lift` and of every lifted trainer, as one weight per penalised layer.

    ``lambdas`` is a float (the same penalty weight for every penalised layer) or one value per penalised
    layer, in network order; every value is >= 0. The penalised layers are the lifted layers whose state
    is free (every hidden layer, and the last layer too when it ends with an activation and its state is
    free); the last layer of a classifier or of an unrolled network has the data term instead (weight 1).

    Raises
    ------
    ValueError
        For a value < 0 or NaN, a non-number, or a sequence of another length.

    Examples
    --------
    >>> check_lambdas(0.5, 3)
    [0.5, 0.5, 0.5]
    >>> check_lambdas([1, 2], 3)
    Traceback (most recent call last):
    ...
    ValueError: lambdas must be a float >= 0 or a sequence of 3 floats >= 0 (one per penalised layer); got [1, 2]
    """
    if isinstance(lambdas, int | float) and not isinstance(lambdas, bool):
        vals = [lambdas] * n_penalised
    elif isinstance(lambdas, Sequence) and not isinstance(lambdas, str):
        vals = list(lambdas)
    else:
        vals = None
    if (
        vals is None
        or len(vals) != n_penalised
        or any(isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0 for v in vals)
    ):
        raise ValueError(
            f"lambdas must be a float >= 0 or a sequence of {n_penalised} floats >= 0 (one per penalised "
            f"layer); got {lambdas!r}"
        )
    return [float(v) for v in vals]


class LiftedBlock(nn.Module):
    """Base class of blocks that describe their own lifted form (residual, proximal blocks).

    A subclass implements ``lifted_layers(offset)`` returning its layers for :func:`lift`: a list of
    :class:`LiftedLayer` whose ``inputs`` are absolute state indices (``offset`` is the index of the state
    that feeds the block). The first layer may leave ``inputs=None`` to mean "fed by the previous state",
    and then linear maps just before the block are composed into it; the list may end with a plain linear
    ``nn.Module`` that is folded into the next layer. Unlike a whole network with ``lifted_layers`` (an
    unrolled network, lifted on its own), a block lifted alone gets the usual ``last`` default.
    """

    def lifted_layers(self, offset: int) -> list:
        raise NotImplementedError


class LiftedNetwork(nn.Module):
    """A network in lifted form: layers, penalties and the data term (see the module docstring).

    Parameters
    ----------
    layers : list of LiftedLayer
        Layers 1..L (the last one produces the output).
    loss : {"mse", "ce"}
        Data term. ``"ce"`` needs ``last="fixed"``.
    last : {"fixed", "free"}
        Whether the last state is fixed to the target or a free state with a squared data term.
    penalty : {"bregman", "quadratic", "fenchel"} or Penalty class name
        Layer penalty (lifted Bregman, MAC or Fenchel lifted networks).
    lambdas : float or sequence of float
        Penalty weights (>= 0): a float, or one value per penalised layer (layers 1..L-1 with
        ``last="fixed"``, whose last layer carries the data term with weight 1; layers 1..L with
        ``last="free"``). See :func:`check_lambdas`.
    """

    def __init__(
        self,
        layers: Sequence[LiftedLayer],
        loss: str = "mse",
        last: str = "fixed",
        penalty: str = "bregman",
        lambdas=1.0,
    ):
        super().__init__()
        if loss not in ("mse", "ce"):
            raise ValueError(f"loss must be 'mse' or 'ce', got {loss!r}")
        if last not in ("fixed", "free"):
            raise ValueError(f"last must be 'fixed' or 'free', got {last!r}")
        if loss == "ce" and last == "free":
            raise ValueError(
                "loss='ce' needs last='fixed' (the cross-entropy acts on the last pre-activation)"
            )
        if len(layers) == 0:
            raise LiftingError("the model has no layer to lift")
        self.layers = nn.ModuleList(layers)
        for l, layer in enumerate(self.layers, start=1):
            if layer.inputs is None:
                layer.inputs = (l - 1,)
            if any(j < 0 or j >= l for j in layer.inputs):
                raise LiftingError(f"layer {l} takes states {layer.inputs}; only states 0..{l - 1} exist")
        self.loss, self.last = loss, last
        L = len(self.layers)
        lambdas = check_lambdas(lambdas, L - (last == "fixed"))
        if last == "fixed":
            lambdas.append(1.0)  # the data term replaces the last penalty
        self.penalty_name = penalty if isinstance(penalty, str) else penalty.name
        penalties = []
        for l, layer in enumerate(self.layers, start=1):
            if l == L and last == "fixed":
                # The data term replaces the last penalty; any activation is fine there.
                penalties.append(make_penalty("bregman", layer.activation, 1.0))
            else:
                penalties.append(make_penalty(penalty, layer.activation, lambdas[l - 1]))
        self.penalties: list[Penalty] = penalties
        self.consumers: list[list[int]] = [[] for _ in range(L + 1)]
        for l, layer in enumerate(self.layers, start=1):
            for j in layer.inputs:
                self.consumers[j].append(l)

    # --- basic quantities --------------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def lambdas(self) -> list[float]:
        return [p.weight for p in self.penalties]

    def preactivation(self, l: int, states: Sequence[Tensor]) -> Tensor:
        """z_l = K_l(states[inputs(l)]) for 1 <= l <= L."""
        layer = self.layers[l - 1]
        return layer(*[states[j] for j in layer.inputs])

    def forward_states(self, x0: Tensor) -> list[Tensor]:
        """States of the nested forward pass ``[x_0, sigma_1(z_1), ..., x_L]``.

        With ``last="fixed"`` the last entry is the model output z_L (logits), as in the user's model.
        """
        states = [x0]
        for l in range(1, self.depth + 1):
            z = self.preactivation(l, states)
            is_out = l == self.depth and self.last == "fixed"
            states.append(z if is_out else self.layers[l - 1].activation(z))
        return states

    def forward(self, x0: Tensor) -> Tensor:
        """The nested network's output (same as the lifted model's)."""
        return self.forward_states(x0)[-1]

    def init_states(self, x0: Tensor, y: Tensor | None = None) -> list[Tensor]:
        """Detached forward states (the standard initialisation); with ``last="fixed"`` x_L = y."""
        with torch.no_grad():
            states = [s.detach() for s in self.forward_states(x0)]
        if self.last == "fixed":
            if y is None:
                raise ValueError("init_states needs the targets y when last='fixed'")
            states[-1] = y.detach().to(states[-1].dtype)
        return states

    def _data_fixed(self, z: Tensor, y: Tensor) -> Tensor:
        n = z.shape[0]
        if self.loss == "mse":
            return 0.5 * (z - y).pow(2).reshape(n, -1).sum(1)
        return -(y * torch.log_softmax(z, dim=1)).reshape(n, -1).sum(1)

    def layer_terms(self, l: int, states: Sequence[Tensor], y: Tensor | None = None, z: Tensor | None = None):
        """Per-sample value of layer l's term (lambda-weighted penalty, or the data term for the last layer)."""
        z = self.preactivation(l, states) if z is None else z
        if l == self.depth:
            if self.last == "fixed":
                return self._data_fixed(z, states[l] if y is None else y)
            x = states[l]
            fit = 0.5 * (x - y).pow(2).reshape(x.shape[0], -1).sum(1) if y is not None else 0.0
            return fit + self.penalties[l - 1].weight * self.penalties[l - 1].value(x, z)
        pen = self.penalties[l - 1]
        return pen.weight * pen.value(states[l], z)

    def objective(self, states: Sequence[Tensor], y: Tensor | None = None) -> dict[str, Tensor]:
        """Lifted objective (mean over samples) and its parts ``layer_1 .. layer_L``, ``penalty``, ``data``."""
        parts = {f"layer_{l}": self.layer_terms(l, states, y).mean() for l in range(1, self.depth + 1)}
        data = parts[f"layer_{self.depth}"]
        penalty = sum((parts[f"layer_{l}"] for l in range(1, self.depth)), torch.zeros_like(data))
        return {"objective": data + penalty, "data": data, "penalty": penalty, **parts}

    def nested_loss(self, x0: Tensor, y: Tensor) -> Tensor:
        """Mean nested loss of the ordinary forward pass (equals the objective at forward states)."""
        states = self.forward_states(x0)
        z = self.preactivation(self.depth, states)
        if self.last == "fixed":
            return self._data_fixed(z, y).mean()
        out = states[-1]
        return (0.5 * (out - y).pow(2).reshape(out.shape[0], -1).sum(1)).mean()


# -------------------------------------------------------------------------------------------------------
# lift(): from an nn.Module to a LiftedNetwork
# -------------------------------------------------------------------------------------------------------
def _flatten(model: nn.Module) -> list[nn.Module]:
    if isinstance(model, nn.Sequential):
        out = []
        for m in model:
            out += _flatten(m)
        return out
    return [model]


def _is_activation(m: nn.Module) -> bool:
    if isinstance(m, ProximalActivation):
        return True
    if isinstance(m, _AFFINE + _PARAM_FREE_LINEAR) or isinstance(m, nn.Sequential):
        return False
    return not any(True for _ in m.parameters()) and type(m).__module__.startswith(("torch.nn", "liftinv"))


def lift(
    model: nn.Module, loss: str = "mse", last: str | None = None, penalty: str = "bregman", lambdas=1.0
) -> LiftedNetwork:
    """Lift a network: one state per activation, parameters shared with ``model`` (no copy).

    Parameters
    ----------
    model : nn.Module
        An ``nn.Sequential`` of supported modules (see :data:`SUPPORTED_MODULES`), a single such module,
        or a module with ``lifted_layers(offset)`` (returns a list of :class:`LiftedLayer` whose ``inputs``
        are absolute state indices, ``offset`` being the index of the state that feeds the module).
        Consecutive linear maps (e.g. AvgPool2d -> Flatten -> Linear) are folded into one layer.
    loss : {"mse", "ce"}
        The data term; for classifiers the model outputs logits (no final activation).
    last : {"fixed", "free"}, optional
        Default: ``"fixed"`` when the model ends with a linear map, ``"free"`` when it ends with an activation.
    penalty : {"bregman", "quadratic", "fenchel"}
        Lifted Bregman (Wang & Benning 2023), MAC (Carreira-Perpinan & Wang 2014) or Fenchel lifted
        networks (Gu et al. 2020, ReLU only).
    lambdas : float or sequence
        Penalty weights per layer.

    Raises
    ------
    LiftingError
        For unsupported layers, with the list of supported ones.
    NotProximalError
        For activations that are not proximal maps (GELU, SiLU, sign, ...), pointing hard thresholds to
        FTPROP.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> lifted = lift(net)
    >>> x, y = torch.randn(5, 4), torch.randn(5, 2)
    >>> states = lifted.init_states(x, y)
    >>> bool(torch.isclose(lifted.objective(states, y)["objective"], lifted.nested_loss(x, y)))
    True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if hasattr(model, "lifted_layers") and not isinstance(model, nn.Sequential | LiftedBlock):
        layers = list(model.lifted_layers(0))
        return LiftedNetwork(layers, loss=loss, last=last or "free", penalty=penalty, lambdas=lambdas)

    layers: list[LiftedLayer] = []
    pending: list[nn.Module] = []
    ended_with_activation = False

    def flush(act, inputs=None):
        nonlocal pending
        if not pending:
            pending = [nn.Identity()]
        lin = pending[0] if len(pending) == 1 else nn.Sequential(*pending)
        layers.append(LiftedLayer(lin, act, inputs=inputs))
        pending = []

    for pos, m in enumerate(_flatten(model)):
        ended_with_activation = False
        if isinstance(m, _AFFINE + _PARAM_FREE_LINEAR):
            pending.append(m)
        elif hasattr(m, "lifted_layers"):
            parts = list(m.lifted_layers(len(layers)))
            first = parts[0] if parts else None
            if isinstance(first, LiftedLayer) and first.inputs is None:
                # fed by the previous state: pending linear maps are composed in front of its linear map
                pending.append(first.linear)
                flush(first.activation)
                parts = parts[1:]
            elif pending:
                # the block reads the state feeding it (e.g. a residual skip): the pending linear maps
                # become their own identity-activation state first, and the block's absolute indices are
                # asked again for the new offset
                flush(Identity())
                parts = list(m.lifted_layers(len(layers)))
            for k, part in enumerate(parts):
                if isinstance(part, LiftedLayer):
                    layers.append(part)
                elif k == len(parts) - 1 and isinstance(part, nn.Module):
                    pending.append(part)  # a trailing linear map, folded into the next layer
                else:
                    raise LiftingError(
                        f"layer {pos} ({type(m).__name__}).lifted_layers returned {type(part).__name__}; "
                        "expected LiftedLayer items, optionally ending with one linear nn.Module"
                    )
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d | nn.Dropout | nn.MaxPool2d | nn.MaxPool1d):
            raise LiftingError(
                f"layer {pos} ({type(m).__name__}) is not supported by lift(): it is not an affine map with "
                f"fixed parameters. Supported: {SUPPORTED_MODULES}"
            )
        elif _is_activation(m):
            flush(from_module(m))
            ended_with_activation = True
        else:
            raise LiftingError(
                f"layer {pos} ({type(m).__name__}) is not supported by lift(). Supported: {SUPPORTED_MODULES}"
            )
    if last is None:
        last = "free" if ended_with_activation else "fixed"
    if pending:
        flush(Softmax() if loss == "ce" else Identity())
    elif last == "fixed" and not isinstance(layers[-1].activation, Identity | Softmax):
        raise LiftingError(
            "last='fixed' needs a model that ends with a linear map (the data term acts on its output); "
            "this model ends with an activation: use last='free'"
        )
    return LiftedNetwork(layers, loss=loss, last=last, penalty=penalty, lambdas=lambdas)
