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
from torch.func import functional_call

from liftinv.activations import Identity, ProximalActivation, Softmax, from_module
from liftinv.penalties import Penalty, make_penalty

__all__ = [
    "LiftedLayer",
    "LiftedNetwork",
    "lift",
    "LiftingError",
    "state_gradient",
    "state_step",
    "state_sweep",
    "weight_step",
    "layer_objective",
    "weight_blocks",
    "block_objective",
    "free_states",
    "layer_parameters",
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


class _Synthesis(nn.Module):
    """h -> T^T h for a ProximalBlock (a linear map folded into the next layer)."""

    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self, h):
        return self.block.synthesis(h)


class _Analysis(nn.Module):
    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self, x):
        return self.block.analysis(x)


class _ResidualOutput(nn.Module):
    """(x, h) -> x + V h + c, the second lifted layer of a ResidualBlock."""

    def __init__(self, outer: nn.Linear):
        super().__init__()
        self.outer = outer

    def forward(self, x, h):
        return x + self.outer(h)


class _Chain(nn.Sequential):
    """A Sequential whose first module may take several inputs."""

    def forward(self, *xs):
        out = self[0](*xs)
        for m in list(self)[1:]:
            out = m(out)
        return out


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
        Penalty weights lambda_1..lambda_L (>= 0). With ``last="fixed"`` the last entry is ignored (the
        data term has weight 1).
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
        if isinstance(lambdas, int | float):
            lambdas = [float(lambdas)] * L
        lambdas = [float(v) for v in lambdas]
        if len(lambdas) != L:
            raise ValueError(f"lambdas has {len(lambdas)} entries but the lifted network has {L} layers")
        if any(not v >= 0 for v in lambdas):
            raise ValueError(f"lambdas must be >= 0, got {lambdas}")
        if last == "fixed":
            lambdas[-1] = 1.0
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
    from liftinv.models import ProximalBlock, ResidualBlock

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if hasattr(model, "lifted_layers") and not isinstance(model, nn.Sequential):
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
        elif isinstance(m, ResidualBlock):
            if pending:
                flush(Identity())
            i = len(layers)  # index of the state feeding the block
            layers.append(LiftedLayer(m.inner, from_module(m.act), inputs=(i,)))
            layers.append(LiftedLayer(_ResidualOutput(m.outer), Identity(), inputs=(i, i + 1)))
        elif isinstance(m, ProximalBlock):
            pending.append(_Analysis(m))
            flush(from_module(m.act))
            pending.append(_Synthesis(m))
        elif hasattr(m, "lifted_layers"):
            if pending:
                flush(Identity())
            layers.extend(m.lifted_layers(len(layers)))
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


# -------------------------------------------------------------------------------------------------------
# block primitives
# -------------------------------------------------------------------------------------------------------
def layer_objective(net: LiftedNetwork, states, l: int, y=None) -> Tensor:
    """Mean over samples of layer l's term (its penalty, or the data term when l = L)."""
    return net.layer_terms(l, states, y).mean()


def _smooth_in_state(net: LiftedNetwork, states, l: int, x: Tensor, y) -> Tensor:
    """Part of N*J that depends on state l, minus lambda_l Phi_l(x) when the penalty is prox-friendly.

    Bregman/Fenchel: sum_{m consumes l} lambda_m P_m(x_m, z_m(x)) - lambda_l <x, z_l> (+ fit term);
    MAC: every term containing x (all smooth).
    """
    st = list(states)
    st[l] = x
    total = x.new_zeros(())
    for m in net.consumers[l]:
        total = total + net.layer_terms(m, st, y).sum()
    if l >= 1:
        pen = net.penalties[l - 1]
        z = net.preactivation(l, st).detach()
        if l == net.depth:  # free last state
            total = total + 0.5 * (x - y).pow(2).sum() if y is not None else total
        if pen.convex_in_state:
            total = total - pen.weight * (x * z).sum()
        else:
            total = total + pen.weight * pen.value(x, z).sum()
    return total


def state_gradient(net: LiftedNetwork, states, l: int, y=None) -> Tensor:
    """Gradient in state l of the smooth part of N*J (see :func:`_smooth_in_state`).

    For l = 0 (the input) this is sum_m lambda_m K_m^T (sigma_m(z_m) - x_m) for Bregman penalties:
    it needs no derivative of any activation and no backward pass through the nested network.
    """
    with torch.enable_grad():
        x = states[l].detach().requires_grad_(True)
        (g,) = torch.autograd.grad(_smooth_in_state(net, states, l, x, y), x)
    return g


def _lipschitz_state(net: LiftedNetwork, states, l: int, cache: dict | None, iters: int = 12) -> float:
    """Upper estimate of the Lipschitz constant of grad_x of the smooth part: sum_m lambda_m ||K_{m,l}||^2."""
    total = 0.0
    for m in net.consumers[l]:
        layer = net.layers[m - 1]
        pen = net.penalties[m - 1]
        lam = 1.0 if (m == net.depth and net.last == "fixed") else pen.weight
        key = ("state", l, m)
        lin = layer.linear
        if isinstance(lin, nn.Linear) and layer.inputs == (l,):
            norm_sq = float(torch.linalg.matrix_norm(lin.weight.detach(), ord=2)) ** 2
        else:
            x1 = states[l][:1].detach()
            base_inputs = [torch.zeros_like(states[j][:1]) for j in layer.inputs]
            pos = layer.inputs.index(l)

            def K(v, base_inputs=base_inputs, pos=pos, layer=layer):
                ins = list(base_inputs)
                ins[pos] = v
                return layer(*ins) - layer(*base_inputs)

            v = cache.get(key) if cache is not None else None
            if v is None or v.shape != x1.shape:
                v = torch.randn_like(x1)
            else:
                iters = 3  # warm start: the previous vector is already close (backtracking keeps it safe)
            norm_sq = 0.0
            with torch.enable_grad():
                for _ in range(iters):
                    v = v / v.norm().clamp(min=1e-30)
                    vv = v.detach().requires_grad_(True)
                    kv = K(vv)
                    (w,) = torch.autograd.grad(kv, vv, grad_outputs=kv.detach())
                    norm_sq = float((w * v).sum())
                    v = w.detach()
            if cache is not None:
                cache[key] = v
            norm_sq *= 1.05
        total += lam * norm_sq
    if l == net.depth:  # fit term of a free last state
        total += 1.0
    pen = net.penalties[l - 1] if l >= 1 else None
    if pen is not None and not pen.convex_in_state:
        total += pen.weight
    return max(total, 1e-12)


def state_step(
    net: LiftedNetwork,
    states: list[Tensor],
    l: int,
    y=None,
    cache: dict | None = None,
    max_backtracks: int = 30,
) -> float:
    """One forward-backward step on state block l (all samples at once), in place; returns the step mu.

    Bregman/Fenchel: ``x_l <- prox_{mu lambda_l Phi_l}(x_l - mu g)``, g the gradient of the smooth part;
    MAC: a gradient step. mu = 1/L from a power-iteration estimate, halved until the standard sufficient-
    decrease test of forward-backward holds, so the objective never increases.
    A free last state with a squared fit term and a prox-friendly penalty is minimised exactly:
    ``x_L = prox_{lambda Phi}(y + lambda z_L)``.
    """
    if l <= 0 or (l == net.depth and net.last == "fixed"):
        raise ValueError(f"state {l} is not a free state (states 1..{net.depth - (net.last == 'fixed')})")
    pen = net.penalties[l - 1]
    lam = pen.weight
    with torch.no_grad():
        if l == net.depth and not net.consumers[l] and y is not None:
            z = net.preactivation(l, states)
            if pen.convex_in_state:
                states[l] = pen.prox_state(y + lam * z, lam) if lam > 0 else y.clone()
            else:
                states[l] = (y + lam * pen.activation(z)) / (1 + lam)
            return 1.0
    x = states[l].detach()
    g = state_gradient(net, states, l, y)
    mu = 1.0 / _lipschitz_state(net, states, l, cache)
    with torch.no_grad():
        f0 = _smooth_in_state(net, states, l, x, y)
        for _ in range(max_backtracks):
            v = x - mu * g
            xn = pen.prox_state(v, mu * lam) if pen.convex_in_state else v
            d = xn - x
            f1 = _smooth_in_state(net, states, l, xn, y)
            if f1 <= f0 + (g * d).sum() + (d * d).sum() / (2 * mu) + 1e-10 * abs(float(f0)):
                break
            mu *= 0.5
        else:
            return 0.0  # no acceptable step: keep the state
        states[l] = xn
    return mu


def free_states(net: LiftedNetwork) -> list[int]:
    """Indices of the states a solver updates (hidden states, plus the last one when it is free)."""
    top = net.depth if net.last == "free" else net.depth - 1
    return list(range(1, top + 1))


def state_sweep(
    net: LiftedNetwork, states: list[Tensor], y=None, order: str = "top-down", cache: dict | None = None
) -> None:
    """Update every free state block once, in place.

    ``order="top-down"`` (last hidden layer first, so the targets reach the states in the first sweep;
    a bottom-up sweep from forward states is a fixed point) or ``"parity"`` (the states of one parity,
    which do not interact in a chain, then the other parity; each group top-down).
    """
    idx = free_states(net)[::-1]
    if order == "parity":
        top = idx[0] if idx else 0
        idx = [l for l in idx if (top - l) % 2 == 0] + [l for l in idx if (top - l) % 2 == 1]
    elif order != "top-down":
        raise ValueError(f"order must be 'top-down' or 'parity', got {order!r}")
    for l in idx:
        state_step(net, states, l, y, cache=cache)


def _param_map_norm_sq(
    layer: LiftedLayer, xs: list[Tensor], cache: dict | None, key, iters: int = 12
) -> float:
    """||M_X||^2 for the map theta -> z = K_theta(X), linear in theta for affine layers."""
    lin = layer.linear
    mods = list(lin) if isinstance(lin, nn.Sequential) else [lin]
    if (
        isinstance(mods[-1], nn.Linear)
        and len(xs) == 1
        and all(isinstance(m, _PARAM_FREE_LINEAR) for m in mods[:-1])
    ):
        # Dense layer, possibly after parameter-free linear maps P (Flatten, AvgPool): ||[P(X); 1]||_2^2 exactly.
        X = xs[0]
        for m in mods[:-1]:
            X = m(X)
        X = X.reshape(X.shape[0], -1)
        if mods[-1].bias is not None:
            X = torch.cat([X, torch.ones_like(X[:, :1])], 1)
        return float(torch.linalg.matrix_norm(X, ord=2)) ** 2
    names = [n for n, p in lin.named_parameters() if p.requires_grad]
    params = dict(lin.named_parameters())
    v = cache.get(key) if cache is not None else None
    if v is None:
        v = {n: torch.randn_like(params[n]) for n in names}
    else:
        iters = 3  # warm start (DESIGN §4: a warm-started power iteration x1.05 is as good as exact)
    norm_sq = 0.0
    with torch.enable_grad():
        for _ in range(iters):
            nrm = torch.sqrt(sum((t * t).sum() for t in v.values())).clamp(min=1e-30)
            vv = {n: (t / nrm).detach().requires_grad_(True) for n, t in v.items()}
            z = functional_call(lin, vv, tuple(xs))
            grads = torch.autograd.grad(z, list(vv.values()), grad_outputs=z.detach())
            norm_sq = float(sum((g * vv[n].detach()).sum() for g, n in zip(grads, vv)))
            v = {n: g.detach() for n, g in zip(vv, grads)}
    if cache is not None:
        cache[key] = v
    return 1.05 * norm_sq


def layer_parameters(layer: LiftedLayer) -> list[nn.Parameter]:
    """Trainable parameters of a lifted layer (its linear map and a learnable activation)."""
    return [p for p in layer.parameters() if p.requires_grad]


def weight_blocks(net: LiftedNetwork) -> list[tuple[list[int], list[nn.Parameter]]]:
    """Weight blocks: groups of layers that share parameters, with the union of their parameters.

    For fixed states the objective separates over these blocks. Dense and convolutional chains give one
    block per layer; a ProximalBlock's T (used by its analysis layer and, transposed, by the next layer) or
    an unrolled net's shared transforms join the layers that use them.
    """
    L = net.depth
    owner: dict[int, int] = {}
    parent = list(range(L + 1))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for l in range(1, L + 1):
        for p in layer_parameters(net.layers[l - 1]):
            if id(p) in owner:
                parent[find(l)] = find(owner[id(p)])
            else:
                owner[id(p)] = l
    groups: dict[int, list[int]] = {}
    for l in range(1, L + 1):
        groups.setdefault(find(l), []).append(l)
    blocks = []
    for layers in groups.values():
        seen, params = set(), []
        for l in layers:
            for p in layer_parameters(net.layers[l - 1]):
                if id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        if params:
            blocks.append((layers, params))
    return blocks


def block_objective(net: LiftedNetwork, states, layers: Sequence[int], y=None) -> Tensor:
    """Sum over ``layers`` of their mean terms (the weight-block objective for fixed states)."""
    return sum(layer_objective(net, states, l, y) for l in layers)


def weight_step(
    net: LiftedNetwork,
    states: list[Tensor],
    y=None,
    layers: Sequence[int] | None = None,
    cache: dict | None = None,
    max_backtracks: int = 30,
) -> dict[int, float]:
    """A gradient step on every weight block (blocks decouple for fixed states), in place.

    For a block made of one layer affine in its parameters the step is 1 / (lambda_l ||M_X||^2 / N) with
    ||M_X||^2 = ||[X_{l-1}; 1]||_2^2 for dense layers (Wang & Benning 2023: the weight objective is convex
    and smooth with that Lipschitz constant); otherwise the last accepted step (from ``cache``), doubled, is
    tried first. In both cases the step is halved until the block objective decreases sufficiently
    (Armijo), so the lifted objective never increases.

    Parameters
    ----------
    layers : sequence of int, optional
        Restrict to the blocks containing these layers (default: all).

    Returns
    -------
    dict
        The step used, keyed by the first layer of each block.
    """
    steps = {}
    N = states[0].shape[0]
    wanted = set(layers) if layers is not None else None
    # Recomputed per call (cheap): the cache holds only tensors and floats, so it can be checkpointed.
    for block_layers, params in weight_blocks(net):
        if wanted is not None and not wanted.intersection(block_layers):
            continue
        l = block_layers[0]
        lams = [
            1.0 if (m == net.depth and net.last == "fixed") else net.penalties[m - 1].weight
            for m in block_layers
        ]
        if max(lams) == 0:
            continue
        with torch.enable_grad():
            f0 = block_objective(net, states, block_layers, y)
            grads = torch.autograd.grad(f0, params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
        layer = net.layers[l - 1]
        if len(block_layers) == 1 and layer.affine_in_params:
            xs = [states[j].detach() for j in layer.inputs]
            step = 1.0 / max(lams[0] * _param_map_norm_sq(layer, xs, cache, ("weight", l)) / N, 1e-12)
        else:
            step = 2.0 * (cache.get(("wstep", l), 1.0) if cache is not None else 1.0)
        gg = float(sum((g * g).sum() for g in grads))
        old = [p.detach().clone() for p in params]
        with torch.no_grad():
            for _ in range(max_backtracks):
                for p, o, g in zip(params, old, grads):
                    p.copy_(o - step * g)
                f1 = block_objective(net, states, block_layers, y)
                if f1 <= f0 - 0.5 * step * gg + 1e-12 * abs(float(f0.detach())):
                    break
                step *= 0.5
            else:
                for p, o in zip(params, old):
                    p.copy_(o)
                step = 0.0
        if cache is not None and step > 0:
            cache[("wstep", l)] = step
        steps[l] = step
    return steps
