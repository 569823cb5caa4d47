"""Pre-activations of a lifted network's current states with their one-layer autograd graphs.

The lifted solvers of unrolled networks (:mod:`liftinv.training.unrolled`) sweep the states of a mini-batch
with forward-backward steps; each step needs the pre-activation ``z_m`` of the layers around the state and
the transposed linear maps ``K_{m,l}^T``. :class:`Preactivations` computes each ``z_m`` once per change of its
inputs and reuses its graph for every vector-Jacobian product (Wang & Benning, JMLR 24(232), 2023, Sec. 4,
for the lifted state steps).
"""

from __future__ import annotations

import torch
from torch import Tensor

from liftinv.lifted.network import LiftedNetwork

__all__ = ["Preactivations"]


class Preactivations:
    """The pre-activations ``z_m`` of a mini-batch's current states, each with its one-layer autograd graph.

    Every lifted layer is affine in its inputs, so the graph of ``z_m`` built at any inputs gives the
    vector-Jacobian product ``K_{m,l}^T r`` (:meth:`vjp`) at the current ones, and ``z_m`` itself is
    recomputed (:meth:`get`) only after one of its inputs changed (:meth:`changed`). A state sweep thus
    computes each layer about once per state input it reads (not once per state step that needs it), and
    the weight step reuses the recorded graphs (:attr:`at_update`). Valid for fixed weights: build a new
    one after a weight step.

    Parameters
    ----------
    net : LiftedNetwork
    states : list of Tensor
        The states, updated by the caller (the same list object: entries are replaced, never modified in
        place).

    See Also
    --------
    liftinv.lifted.state_step : the generic state step (autograd through the penalties).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from liftinv.lifted import lift
    >>> net = lift(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    >>> pre = Preactivations(net, net.init_states(torch.randn(5, 3), torch.randn(5, 2)))
    >>> r = torch.randn(5, 2)
    >>> torch.allclose(pre.vjp(2, 1, r), r @ net.layers[1].linear.weight)  # K_{2,1}^T r = W_2^T r
    True
    """

    def __init__(self, net: LiftedNetwork, states: list[Tensor]):
        self.net, self.states = net, states
        self.z: dict[int, Tensor] = {}
        self.graphs: dict[int, tuple[Tensor, list[Tensor]]] = {}
        #: ``z_m`` (with its graph) as the sweep last saw it when it updated state m (see ``weight_point``)
        self.at_update: dict[int, Tensor] = {}

    def get(self, m: int) -> Tensor:
        """``z_m`` at the current states (recorded with its graph: inputs and the weights)."""
        z = self.z.get(m)
        if z is None:
            layer = self.net.layers[m - 1]
            with torch.enable_grad():
                leaves = [self.states[j].detach().requires_grad_(j >= 1) for j in layer.inputs]
                z = layer(*leaves)
            self.z[m], self.graphs[m] = z, (z, leaves)
        return z

    def vjp(self, m: int, l: int, r: Tensor) -> Tensor:
        """``K_{m,l}^T r``: the transpose of layer m's linear part in its input state l, applied to r."""
        if m not in self.graphs:
            self.get(m)
        z, leaves = self.graphs[m]
        pos = self.net.layers[m - 1].inputs.index(l)
        (g,) = torch.autograd.grad(z, leaves[pos], grad_outputs=r, retain_graph=True)
        return g

    def remember(self, m: int) -> Tensor:
        """``z_m`` now, kept (with its graph) in :attr:`at_update` for the weight step."""
        z = self.at_update[m] = self.get(m)
        return z

    def changed(self, l: int) -> None:
        """State l was updated: the layers reading it have stale pre-activations (their graphs stay valid)."""
        for m in self.net.consumers[l]:
            self.z.pop(m, None)
