"""Layer-parallel lifted BCD on ``torch.distributed``: ranks own consecutive layers (weights and states).

``fit(model, data, method=..., distributed="layers")`` on every rank of an initialised process group
(torchrun, or :func:`liftinv.training.distributed.launch`) trains one chain network (an MLP: a
``nn.Sequential`` of Linear layers and proximal activations, as :func:`liftinv.lifted.lift` accepts) with
its L layers split over the R <= L ranks. Supported methods: ``bregman-bcd``, ``mac-bcd`` and
``fenchel-bcd`` (BCD with persistent states, :class:`~liftinv.training.bcd.BCDTrainer`).

Ownership. Layers 1..L are cut into R contiguous, near-equal parts (``torch.tensor_split``): rank r owns
layers a_r..b_r, i.e. their weights (W_l, b_l) and their states x_l for every sample of every shard. It
also keeps a copy of its two boundary states x_{a_r - 1} and x_{b_r + 1} and of the neighbour's weights
W_{b_r + 1}, b_{b_r + 1}; every other hidden state is dropped (the state memory per rank falls with R;
the input x_0 = X stays, as every rank holds the data).

Why the parity schedule decouples the layers. In the lifted objective (a mean over samples)::

    J(Theta, X) = 1/N sum_i [ loss(y_i, z_L^i) + sum_{l<L} lambda_l P_l(x_l^i, W_l x_{l-1}^i + b_l) ]

the state x_l appears in the terms of layers l and l + 1 only, so its block step reads x_{l-1}, x_{l+1},
W_l and W_{l+1}; states of one parity never share a term and can be updated at the same time (Jacobi in
blocks; :func:`liftinv.lifted.steps.independent_groups`). For fixed states the weight blocks decouple
completely: W_l's step reads x_{l-1} and x_l. One shard visit is therefore::

    repeat `sweeps` times:
        half-sweep 1: every rank updates its states of the top state's parity   (in parallel)
                      exchange the updated boundary states with the neighbours
        half-sweep 2: every rank updates its states of the other parity         (in parallel)
                      exchange the updated boundary states with the neighbours
    `weight_steps` weight steps on every rank's own layers                      (in parallel)
    rank r + 1 sends its first layer's weights W_{a_{r+1}}, b_{a_{r+1}} to rank r

This is the arithmetic of the single-process :class:`~liftinv.training.bcd.BCDTrainer` with
``order="parity"`` (``sweep_levels(..., "parity")``: the top state's parity, then the other, each
top-down; then ``weight_steps`` steps on all layers), block by block and with the same step sizes, so the
single-process reference is the existing BCD trainer run with ``order="parity"`` -- no emulation is needed.
The lifted objective is the sum of per-layer means all-reduced in float64 (each rank contributes its own
layers, zeros elsewhere: the sum is exact), then added in the single-process order. The layer-parallel run
thus repeats the single-process arithmetic (bitwise equal in our runs with one thread per process; only a
different thread count of the matrix products can change the last bits; tested: objective per epoch to
1e-6 relative, weights to 1e-5). ``order`` defaults to ``"parity"`` here; other
orders are refused (a top-down sweep is sequential across the ranks).

The point-to-point messages (``torch.distributed.send`` / ``recv``) are issued boundary by boundary in
increasing order on every rank, each boundary carrying at most one message per phase in one direction:
rank r's operation on boundary r waits only for rank r + 1's operation on boundary r, which is that rank's
first, so no cycle of waits (deadlock) can form, with gloo or NCCL.

Bytes per sweep. For a shard of N samples, float32 (4 bytes), and the boundary between rank r's last layer
b = b_r (state width n_b) and rank r + 1's first layer b + 1 (width n_{b+1})::

    states, per sweep and boundary      4 N n_b        (x_b, r -> r + 1, in the half-sweep of b's parity)
                                      + 4 N n_{b+1}    (x_{b+1}, r + 1 -> r, in the other half-sweep;
                                                        0 when b + 1 = L is the output layer, whose state
                                                        is the target)
    weights, per shard visit & boundary 4 (n_{b+1} n_b + n_{b+1})   (W_{b+1} and b_{b+1}, r + 1 -> r)
    per epoch                           every layer's weights broadcast from its owner,
                                        4 sum_l (n_l n_{l-1} + n_l) (evaluation, nested loss, checkpoint),
                                        and 8 L bytes per shard (all-reduced per-layer objective terms)

So each half-sweep moves one N x width state tensor per boundary, the direction alternating between the
half-sweeps: per sweep, 4 N (n_b + n_{b+1}) bytes per boundary, both directions, for R - 1 boundaries
(16-12-12-12-10 on 2 ranks, N = 64: 4 x 64 x (12 + 12) = 6,144 bytes per sweep). The state traffic grows
with N (the states move); the weight traffic is one boundary layer per shard visit and the whole model once
per epoch -- the opposite of data parallelism (:mod:`liftinv.training.distributed`), which moves
weight-sized sums at every weight step and never the states. Rank-local
counters: ``trainer.bytes_sent`` (``"states"``, ``"weights"``, ``"gather"``).

Related: ParMAC (Carreira-Perpinan & Alizadeh, *ParMAC: distributed optimisation of nested functions, with
application to learning binary autoencoders*, MLSys 2019) distributes the samples' auxiliary coordinates
and circulates the layer models; pdADMM (Wang, Chai, Cheng & Zhao, *Toward model parallelism for deep
neural network based on gradient-free ADMM framework*, ICDM 2020; pdADMM-G, Wang et al. 2021) splits the layers over workers with extra copies of the boundary
activations so all layers update at once; here the parity schedule gives the same decoupling without extra
variables, at the price of two synchronisations per sweep.

Failure, agreement and checkpoints reuse :mod:`liftinv.training.distributed`: a lost rank raises
:class:`~liftinv.training.distributed.RankLostError` within the process group's timeout; ``fit`` first checks
that every rank has the same configuration (:func:`~liftinv.training.distributed.check_agreement`). Every
rank ends each epoch with the full model (the weights are broadcast from their owners), so rank 0 writes it;
``state_dict`` gathers the states and caches into the single-process layout of
:class:`~liftinv.training.bcd.BCDTrainer`, so a checkpoint resumes on 1 rank (``distributed="layers"`` or
plain ``fit(..., order="parity")``) or on any R <= L.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from liftinv.lifted.steps import layer_parameters
from liftinv.training.bcd import BCDTrainer, BregmanAccelerated
from liftinv.training.distributed import Communicator, check_agreement
from liftinv.training.lifted_base import _clean_cache, _to_device

__all__ = ["LayerParallelBCD", "layer_parallel_class", "layer_ranges"]


def layer_ranges(n_layers: int, world_size: int) -> list[tuple[int, int]]:
    """The layers ``(first, last)`` (1-based, inclusive) of each rank: contiguous, near-equal parts.

    Raises
    ------
    ValueError
        When ``world_size`` exceeds ``n_layers`` (a rank would own no layer).

    Examples
    --------
    >>> layer_ranges(4, 2), layer_ranges(5, 3)
    ([(1, 2), (3, 4)], [(1, 2), (3, 4), (5, 5)])
    """
    if world_size > n_layers:
        raise ValueError(
            f"distributed='layers': world size {world_size} exceeds the {n_layers} layers of the network "
            f"(each rank owns at least one layer): use at most {n_layers} ranks"
        )
    parts = torch.tensor_split(torch.arange(1, n_layers + 1), world_size)
    return [(int(p[0]), int(p[-1])) for p in parts]


class LayerParallelBCD(BCDTrainer):
    """BCD with the layers split over the ranks, parity schedule (see the module docstring).

    Parameters
    ----------
    model, X, Y, **options
        As :class:`~liftinv.training.bcd.BCDTrainer`; ``order`` must be ``"parity"`` (the default here).

    Raises
    ------
    ValueError
        Without an initialised process group, for more ranks than layers, for a network that is not a
        chain of layers with their own parameters, or for another ``order``.
    """

    check_agreement = staticmethod(check_agreement)

    def __init__(self, model, X, Y, *, order: str = "parity", **options):
        if order != "parity":
            raise ValueError(
                f"distributed='layers' runs the parity schedule (order='parity'); got order={order!r}"
            )
        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError(
                "distributed='layers' needs an initialised torch.distributed process group (torchrun, "
                "torch.distributed.init_process_group, or liftinv.training.distributed.launch)"
            )
        self.comm = Communicator()
        self.comm.broadcast_module(model)  # every rank starts from rank 0's weights
        self.rank, self.world = self.comm.rank, self.comm.world_size
        #: bytes this rank has sent: boundary states, boundary weights, weights broadcast per epoch
        self.bytes_sent = {"states": 0, "weights": 0, "gather": 0}
        self.ranges: list[tuple[int, int]] | None = None
        super().__init__(model, X, Y, order=order, **options)
        net = self.net
        for l, layer in enumerate(net.layers, start=1):
            if tuple(layer.inputs) != (l - 1,):
                raise ValueError(
                    f"distributed='layers' needs a chain of layers (an MLP); layer {l} reads states "
                    f"{tuple(layer.inputs)}"
                )
        if any(len(layers) != 1 for layers, _ in self.blocks.values()):
            raise ValueError("distributed='layers' needs layers with their own parameters (none shared)")
        self.ranges = layer_ranges(net.depth, self.world)
        self.first, self.last = self.ranges[self.rank]
        self.owner = {l: r for r, (a, b) in enumerate(self.ranges) for l in range(a, b + 1)}
        self.blocks = {l: v for l, v in self.blocks.items() if self.owns(l)}
        top = self.sweep_order[0] if self.sweep_order else 0
        #: the two half-sweeps (global state indices): the top state's parity, then the other
        self.halves = [
            [l for l in self.sweep_order if (top - l) % 2 == 0],
            [l for l in self.sweep_order if (top - l) % 2 == 1],
        ]
        self.states = [self._trim(st) for st in self.states]

    # --- ownership -------------------------------------------------------------------------------------
    def owns(self, l: int) -> bool:
        """Whether this rank owns layer l (its weights and its state x_l)."""
        return self.first <= l <= self.last

    def _trim(self, states: list[Tensor]) -> list[Tensor]:
        """Keep the states this rank reads (its own and the two boundary copies) and the input x_0 (a view
        of the data every rank holds; the generic weight step reads the batch size from it); drop the others."""
        keep = range(self.first - 1, self.last + 2)
        return [x if l in keep or l == 0 else x.new_empty(0) for l, x in enumerate(states)]

    def _init_shard(self, s: int) -> list[Tensor]:
        states = super()._init_shard(s)  # a forward pass with the full (replicated) weights
        return states if self.ranges is None else self._trim(states)

    # --- point-to-point exchanges ----------------------------------------------------------------------
    def _p2p(self, tensor: Tensor, src: int, dst: int, kind: str) -> Tensor | None:
        """Send ``tensor`` from ``src`` to ``dst`` (this rank is one of them); the receiver gets a copy."""
        dev = self.comm.device
        with self.comm.guard(f"point-to-point {kind} exchange"):
            if self.rank == src:
                buf = tensor.detach().to(dev).contiguous()
                dist.send(buf, dst)
                self.bytes_sent[kind] += buf.numel() * buf.element_size()
                return None
            buf = torch.empty(tensor.shape, dtype=tensor.dtype, device=dev)
            dist.recv(buf, src)
            return buf.to(tensor.device)

    def _exchange_states(self, states: list[Tensor], updated: set[int]) -> None:
        """After a half-sweep: boundary by boundary (in increasing order), the updated boundary state moves
        to the neighbour that reads it (x_b to rank r + 1, or x_{b+1} to rank r)."""
        for k in range(self.world - 1):
            if self.rank not in (k, k + 1):
                continue
            b = self.ranges[k][1]
            for l, src, dst in ((b, k, k + 1), (b + 1, k + 1, k)):
                if l in updated:
                    got = self._p2p(states[l], src, dst, "states")
                    if got is not None:
                        states[l] = got

    def _exchange_weights(self) -> None:
        """After the weight steps: rank r + 1 sends its first layer's parameters to rank r."""
        for k in range(self.world - 1):
            if self.rank not in (k, k + 1):
                continue
            for p in layer_parameters(self.net.layers[self.ranges[k + 1][0] - 1]):
                got = self._p2p(p, k + 1, k, "weights")
                if got is not None:
                    with torch.no_grad():
                        p.copy_(got)

    def gather_weights(self) -> None:
        """Broadcast every layer's parameters from its owner: every rank then holds the full model."""
        if self.world == 1:
            return
        with self.comm.guard("weight broadcast"), torch.no_grad():
            for l, layer in enumerate(self.net.layers, start=1):
                for p in layer_parameters(layer):
                    buf = p.detach().to(self.comm.device).clone()
                    dist.broadcast(buf, src=self.owner[l])
                    if self.owner[l] == self.rank:
                        self.bytes_sent["gather"] += buf.numel() * buf.element_size()
                    else:
                        p.copy_(buf.to(p.device))

    # --- the schedule ----------------------------------------------------------------------------------
    def sweep(self, states: list[Tensor], y: Tensor, cache: dict) -> None:
        """One parity sweep: each half-sweep updates the rank's states of one parity, then exchanges."""
        for half in self.halves:
            for l in half:
                if self.owns(l):
                    self.state_update(states, l, y, cache)
            self._exchange_states(states, set(half))

    def update_weights(self, s: int) -> None:
        """``weight_steps`` steps on the rank's own layers (``self.blocks``), then the boundary weights."""
        super().update_weights(s)
        self._exchange_weights()

    def objective_parts(self, states, y) -> dict[str, float]:
        """Objective, data term and penalty: per-layer means from their owners, added as in one process."""
        L = self.net.depth
        dtype = self.X.dtype
        terms = torch.zeros(L, dtype=torch.float64)
        with torch.no_grad():
            for l in range(self.first, self.last + 1):
                terms[l - 1] = float(self.net.layer_terms(l, states, y).mean())
        (terms,) = self.comm.sum([terms])
        parts = [terms[l].to(dtype) for l in range(L)]
        data = parts[L - 1]
        penalty = sum(parts[: L - 1], torch.zeros_like(data))
        return {"objective": float(data + penalty), "data": float(data), "penalty": float(penalty)}

    def _after_sweeps(self) -> None:
        """:meth:`BCDTrainer.run_epoch` ends with the full model on every rank (so evaluation, the nested
        loss and ``reinit`` need no communication)."""
        self.gather_weights()

    # --- checkpoints: the single-process layout --------------------------------------------------------
    def state_dict(self) -> dict:
        """The single-process :meth:`BCDTrainer.state_dict` (a collective: every rank calls it)."""
        local = {
            "states": [{l: st[l].detach().cpu() for l in self.free if self.owns(l)} for st in self.states],
            "caches": [_to_device(_clean_cache(c), "cpu") for c in self.caches],
        }
        everyone = self.comm.gather_objects(local)
        states = [
            dict(sorted((l, v) for r in everyone for l, v in r["states"][s].items()))
            for s in range(len(self.states))
        ]
        caches = [
            {k: v for r in everyone for k, v in r["caches"][s].items()} for s in range(len(self.states))
        ]
        return {"shards": [s.cpu() for s in self.shards], "states": states, "caches": caches}

    def load_state_dict(self, d: dict) -> None:
        """Restore a single-process (or any world size's) checkpoint, keeping this rank's states."""
        super().load_state_dict(d)
        self.states = [self._trim(st) for st in self.states]


def layer_parallel_class(base: type) -> type:
    """The layer-parallel version of the trainer class ``base`` (``fit(..., distributed="layers")``).

    Raises
    ------
    ValueError
        For trainers other than plain BCD (``bregman-bcd``, ``mac-bcd``, ``fenchel-bcd``).
    """
    if not issubclass(base, BCDTrainer) or issubclass(base, BregmanAccelerated):
        raise ValueError(
            "distributed='layers' supports bregman-bcd, mac-bcd and fenchel-bcd on chain networks (MLPs); "
            f"not {getattr(base, 'method', '')!r} ({base.__name__})"
        )
    if issubclass(base, LayerParallelBCD):
        return base
    return type(
        f"LayerParallel{base.__name__}", (LayerParallelBCD, base), {"__doc__": LayerParallelBCD.__doc__}
    )
