"""Data-parallel lifted training on ``torch.distributed`` (gloo on CPU, NCCL on GPU).

``fit(model, data, method=..., distributed="data")`` on every rank of an initialised process group (torchrun,
or :func:`launch`) trains one model with the samples split over the ranks. Supported methods:
``bregman-isgm``, ``mac-isgm`` (mini-batch implicit SGD), ``bregman-bcd``, ``mac-bcd``, ``fenchel-bcd``
(block coordinate descent with persistent states) and ``backprop-sgd`` / ``backprop-adam`` (through
:class:`torch.nn.parallel.DistributedDataParallel`, the reference); for unrolled networks
(:mod:`liftinv.training.unrolled`: ``bregman-isgm``, ``mac-isgm``, ``bregman-bcd``, ``mac-bcd``, also through
``liftinv.unrolled.train(..., distributed="data")``) see :class:`DataParallelUnrolled`.

Why splitting the samples gives the single-process step. The lifted objective is a mean over samples::

    J(Theta, X) = 1/N sum_i [ loss(y_i, z_L^i) + sum_l lambda_l P_l(x_l^i, W_l x_{l-1}^i + b_l) ]

For fixed weights the states of different samples do not interact: a state step on sample i reads only
sample i's states and the (replicated) weights, so rank r updates the states of its samples S_r alone, and
they never leave the rank. Everything the weight step needs is a sum over samples, so it is the sum over
ranks of the ranks' partial sums (one all-reduce, SUM)::

    grad_{W_l} J    = lambda_l / N  sum_r sum_{i in S_r} (sigma(z_l^i) - x_l^i) [x_{l-1}^i; 1]^T
    ||[X_{l-1}; 1]||^2 = lambda_max( sum_r [X_{l-1}^{S_r}; 1]^T [X_{l-1}^{S_r}; 1] )   (Lipschitz constant)
    objective, data, penalty = 1/N sum_r (sums over S_r);  Armijo tests: sums of f, <g, d>, ||d||^2

The power iteration of ``*-isgm`` all-reduces the Gram map [X; 1]^T [X; 1] v = sum_r [X_r; 1]^T [X_r; 1] v
at every iteration; BCD all-reduces the (n+1) x (n+1) Gram matrix and takes its largest eigenvalue. The
dense layers' weight blocks decouple for fixed states, so their step sizes and gradients travel together:
one all-reduce per power iteration for the norms of every layer (the iterations run in lockstep,
:func:`liftinv.lifted.norms.power_sq_norms`), one for all the Gram matrices
(:func:`~liftinv.lifted.norms.exact_sq_norms`) and one for all the gradients of a weight step: the number
of collectives per step does not grow with the depth (on localhost gloo a small all-reduce costs about
0.5-1.5 ms, so it is the count, not the bytes, that dominates for a deep network). The maths is the
single-process sum, split; results agree up
to the rounding of the sums (about 1e-7 relative in float32, tested to 1e-5). Every rank ends each step
with bitwise the same weights (an all-reduce returns the same bits on every rank), so the weights and the
trainer state (Adam moments, power-iteration vectors, step-size caches) are replicated: rank 0 alone writes
the checkpoints, and a checkpoint resumes on any number of ranks. ISGM states live for one mini-batch, so
nothing per-rank is saved; BCD states persist, so ``state_dict`` gathers them to a single-process layout
(every rank takes part; rank 0 writes) and ``load_state_dict`` takes each rank's part back.

Sharding. The mini-batch order is the single-process one (:func:`liftinv.training.epoch_generator`); rank r
of R owns the r-th of R contiguous parts of each mini-batch (``torch.tensor_split``; BCD: of each sample
shard), so each part needs >= 1 sample. Every rank holds the data set and indexes its parts.

Communication per weight step, for a dense layer of shape m x n (with bias), in float32 (4 bytes),
all-reduced (each rank sends and receives about twice this in a ring all-reduce)::

    gradient                    4 (m n + m) bytes        per weight step (ISGM: ``inner`` per batch;
                                                         BCD: ``weight_steps`` per shard)
    step size, ISGM             4 k (n + 2) bytes        k power iterations (3 warm, 30 on a cold start),
                                                         once per inner sweep (all layers: k calls)
    step size, BCD              8 (n + 1)^2 bytes        the Gram matrix in float64, once per shard visit
                                                         (0 for the first layer after the first visit)
    objective parts             32 bytes                 per mini-batch / shard (4 float64)

For a 784-256 layer, ISGM with ``inner=3``: 3 x (4 x 200,960 + 4 x 3 x 786) = 2.44 MB per mini-batch, the
size of the gradient all-reduce of data-parallel back-propagation times ``inner``. MAC layers (autograd
weight steps with an Armijo search) all-reduce per weight step the gradient, the Gram matrix (8 (n + 1)^2
bytes: their step size is exact) and 8 bytes per Armijo trial; MAC state steps 8 + 24 bytes per trial.
States are never communicated: the traffic does not grow with the batch size (ParMAC: Carreira-Perpinan &
Alizadeh, MLSys 2019, distributes the samples' auxiliary coordinates and moves the models around a ring;
here the models are replicated and only sums move).

Failure. Every collective runs under the process group's ``timeout`` (``init_process_group(...,
timeout=timedelta(seconds=...))``; :func:`launch` and :func:`init_local_group` take ``timeout_s``): a rank
that dies makes the others raise :class:`RankLostError` (a ``RuntimeError``, "rank N lost: ...") as soon as
the backend notices (gloo: at once when the peer's socket closes, at the latest after the timeout) instead
of hanging. ``fit`` first all-gathers a hash of the configuration (method, options, seed, epochs, loss,
data shapes and checksums, resume epoch) and raises the same ``ValueError`` on every rank on a mismatch.
"""

from __future__ import annotations

import functools
import hashlib
import pickle
import socket
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor, nn

from liftinv.lifted.dense import DenseWeightBlock
from liftinv.lifted.network import LiftedNetwork
from liftinv.lifted.norms import exact_sq_norm, exact_sq_norms, power_sq_norms
from liftinv.lifted.steps import _smooth_in_state, lipschitz_state, state_gradient, weight_step
from liftinv.training.backprop import BackpropTrainer
from liftinv.training.bcd import BCDTrainer, BregmanAccelerated
from liftinv.training.lifted_base import LiftedTrainer, _clean_cache, _to_device
from liftinv.training.loop import minibatches, nested_loss
from liftinv.training.minibatch import ISGMTrainer
from liftinv.training.unrolled import UnrolledLiftedTrainer

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "RankLostError",
    "Communicator",
    "rank_part",
    "check_split",
    "check_agreement",
    "data_parallel_class",
    "launch",
    "init_local_group",
    "free_port",
]

#: default timeout of :func:`launch` / :func:`init_local_group`: how long a collective waits for a peer
DEFAULT_TIMEOUT_S = 300.0


class RankLostError(RuntimeError):
    """A collective failed or timed out: a peer rank died or stopped answering."""


# ---------------------------------------------------------------------------------------------------------
# collectives
# ---------------------------------------------------------------------------------------------------------
class Communicator:
    """The collectives of the data-parallel trainers on the default process group.

    Sums are done in one all-reduce per call (the tensors are flattened into one buffer); a failure
    becomes :class:`RankLostError`. On NCCL the buffer lives on the current CUDA device. ``ValueError``
    when ``torch.distributed`` is not initialised.
    """

    def __init__(self):
        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError(
                "distributed='data' needs an initialised torch.distributed process group (torchrun, "
                "torch.distributed.init_process_group, or liftinv.training.distributed.launch)"
            )
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.backend = str(dist.get_backend())
        nccl = self.backend == "nccl"
        self.device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
        #: bytes all-reduced so far (payload, not counting the ring's factor 2)
        self.bytes_reduced = 0

    @contextmanager
    def guard(self, what: str):
        """Turn a failed collective into :class:`RankLostError` naming the lost rank."""
        try:
            yield
        except RuntimeError as exc:  # DistBackendError and gloo/NCCL errors are RuntimeErrors
            if isinstance(exc, RankLostError):
                raise
            peer = str(1 - self.rank) if self.world_size == 2 else "(one of the peers)"
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RankLostError(
                f"rank {peer} lost: {what} on rank {self.rank} of {self.world_size} failed or timed out "
                f"(the process group's timeout bounds the wait): {detail}"
            ) from exc

    def sum(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        """All-reduce (SUM) of ``tensors`` (one dtype) in one call; returns new tensors of the same shapes."""
        tensors = list(tensors)
        if self.world_size == 1:
            return [t.clone() for t in tensors]
        flat = torch.cat([t.reshape(-1) for t in tensors]).to(self.device)
        with self.guard("all-reduce"):
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        self.bytes_reduced += flat.numel() * flat.element_size()
        parts = flat.split([t.numel() for t in tensors])
        return [p.reshape(t.shape).to(t.device) for p, t in zip(parts, tensors)]

    def share(self, tasks: Sequence[Callable[[], float]]) -> list[float]:
        """Run task i on rank ``i mod R`` only, and give every rank every result (one all-reduce of the floats:
        each is one rank's value plus zeros, so exact). For work that would otherwise be repeated on every
        rank (the eigenvalue problems of BCD's step sizes)."""
        if self.world_size == 1:
            return [float(task()) for task in tasks]
        mine = [float(task()) if i % self.world_size == self.rank else 0.0 for i, task in enumerate(tasks)]
        return self.sum_floats(mine)

    def sum_floats(self, values: Sequence[float]) -> list[float]:
        """All-reduce (SUM) of Python floats (in float64)."""
        return self.sum([torch.tensor([float(v) for v in values], dtype=torch.float64)])[0].tolist()

    def gather_objects(self, obj) -> list:
        """``obj`` of every rank, in rank order (picklable objects; tensors should be on the CPU)."""
        out = [None] * self.world_size
        with self.guard("all-gather"):
            dist.all_gather_object(out, obj)
        return out

    def broadcast_module(self, model: nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank (the replicas start equal)."""
        with self.guard("broadcast"), torch.no_grad():
            for t in list(model.parameters()) + list(model.buffers()):
                buf = t.detach().to(self.device).clone()
                dist.broadcast(buf, src=0)
                t.copy_(buf.to(t.device))


def rank_part(idx: Tensor, rank: int, world_size: int) -> Tensor:
    """Rank ``rank``'s contiguous part of the index tensor ``idx`` (``torch.tensor_split`` into near-equal
    parts; their concatenation in rank order is ``idx``).

    Examples
    --------
    >>> [rank_part(torch.arange(5), r, 2).tolist() for r in range(2)]
    [[0, 1, 2], [3, 4]]
    """
    return torch.tensor_split(idx, world_size)[rank]


def check_split(n: int, batch_size: int | None, world_size: int, what: str = "mini-batch") -> None:
    """Raise ``ValueError`` unless every rank gets >= 1 sample of every mini-batch (shard) of ``n`` samples."""
    size = n if batch_size is None else min(batch_size, n)
    smallest = min(size, n % size or size)
    if smallest < world_size:
        raise ValueError(
            f"batch_size={batch_size} with {n} samples gives a {what} of {smallest} samples, fewer than the "
            f"world size {world_size}: every rank needs at least one sample of each {what} (use a larger "
            "batch_size or fewer ranks)"
        )


def _stable_repr(value) -> str:
    """A repr that is the same in every process (callables by qualified name, tensors by content)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_stable_repr(value[k])}" for k in sorted(value, key=str)) + "}"
    if isinstance(value, list | tuple):
        return type(value).__name__ + "(" + ", ".join(_stable_repr(v) for v in value) + ")"
    if isinstance(value, Tensor):
        t = value.detach().double().cpu()
        return f"Tensor{tuple(t.shape)}[{float(t.sum()):.10e},{float(t.pow(2).sum()):.10e}]"
    if callable(value):
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', type(value).__name__)}"
    return repr(value)


def check_agreement(config: dict, comm: Communicator | None = None) -> None:
    """All-gather a hash of ``config``; raise the same ``ValueError`` on every rank if the ranks differ.

    Parameters
    ----------
    config : dict
        What must be equal on every rank (method, options, seed, data shapes, ...); tensors are compared by
        shape, sum and sum of squares.
    """
    comm = comm or Communicator()
    digests = {str(k): hashlib.sha256(_stable_repr(v).encode()).hexdigest()[:16] for k, v in config.items()}
    everyone = comm.gather_objects(digests)
    differ = [r for r, d in enumerate(everyone) if d != everyone[0]]
    if differ:
        keys = sorted({k for d in everyone for k in d if d.get(k) != everyone[0].get(k)})
        raise ValueError(
            f"distributed training: the ranks disagree on the configuration (ranks {differ} differ from rank 0 "
            f"in {', '.join(keys)}); every rank must call fit with the same method, options, seed, epochs, "
            "loss and data"
        )


# ---------------------------------------------------------------------------------------------------------
# data-parallel block steps (sums over every rank's samples)
# ---------------------------------------------------------------------------------------------------------
class DataParallelDenseBlock(DenseWeightBlock):
    """:class:`~liftinv.lifted.dense.DenseWeightBlock` on the rank's samples, with the all-reduced gradient.

    The step eta = N / (lambda ||[M; 1]||^2) uses the global batch size N and the global norm, the gradient
    lambda / N sum_r (sigma(Z_r) - X_r)^T [M_r, 1] one all-reduce of m n + m numbers.
    """

    def __init__(self, net, states, y, l, *, norm_sq: float, total: int, comm: Communicator):
        super().__init__(net, states, y, l, norm_sq=norm_sq)
        self.comm, self.total = comm, int(total)
        self.eta = self.total / max(self.lam * self.norm_sq, 1e-30)

    def value(self) -> float:
        with torch.no_grad():
            local = float(self.lam * self.pen.value(self.x, self.z).sum())
        return self.comm.sum_floats([local])[0] / self.total

    def local_gradient(self) -> list[Tensor]:
        """This rank's share lambda / N sum_{i in S_r} (sigma(z_i) - x_i) [m_i; 1]^T of the gradient."""
        with torch.no_grad():
            R = self.pen.grad_z(self.x, self.z).reshape(self.n, -1) * (self.lam / self.total)
            return [R.T @ self.M] + ([R.sum(0)] if self.lin.bias is not None else [])

    def gradient(self) -> list[Tensor]:
        return self.comm.sum(self.local_gradient())


def state_step_dp(
    net: LiftedNetwork, states: list[Tensor], l: int, y, cache: dict | None, comm: Communicator
) -> float:
    """:func:`liftinv.lifted.state_step` on the rank's samples with an all-reduced sufficient-decrease test
    (the step mu is shared by the batch, as in one process)."""
    pen = net.penalties[l - 1]
    lam = pen.weight
    with torch.no_grad():
        if l == net.depth and not net.consumers[l] and y is not None:  # per-sample closed form
            z = net.preactivation(l, states)
            if pen.convex_in_state:
                states[l] = pen.prox_state(y + lam * z, lam) if lam > 0 else y.clone()
            else:
                states[l] = (y + lam * pen.activation(z)) / (1 + lam)
            return 1.0
    x = states[l].detach()
    g = state_gradient(net, states, l, y)
    mu = 1.0 / lipschitz_state(net, states, l, cache)
    with torch.no_grad():
        (f0,) = comm.sum_floats([float(_smooth_in_state(net, states, l, x, y))])
        for _ in range(30):
            v = x - mu * g
            xn = pen.prox_state(v, mu * lam) if pen.convex_in_state else v
            d = xn - x
            f1, gd, dd = comm.sum_floats(
                [float(_smooth_in_state(net, states, l, xn, y)), float((g * d).sum()), float((d * d).sum())]
            )
            if f1 <= f0 + gd + dd / (2 * mu) + 1e-10 * abs(f0):
                break
            mu *= 0.5
        else:
            return 0.0
        states[l] = xn
    return mu


# ---------------------------------------------------------------------------------------------------------
# data-parallel trainers
# ---------------------------------------------------------------------------------------------------------
class DataParallelLifted(LiftedTrainer):
    """Mixin: the sums over samples of a lifted trainer's weight step, all-reduced over the ranks.

    Overrides the hooks of :class:`~liftinv.training.lifted_base.LiftedTrainer` (``_data_sq_norm``,
    ``_dense_block``, ``_weight_step``), the MAC state steps and ``objective_parts``; ``self.total`` is the
    global number of samples of the batch (shard) being processed.
    """

    check_agreement = staticmethod(check_agreement)

    def __init__(self, model, X, Y, **options):
        self.comm = Communicator()
        self.comm.broadcast_module(model)
        self.total = X.shape[0]
        super().__init__(model, X, Y, **options)

    def _data_sq_norms(self, Ms, augments, cache, keys) -> list[float]:
        if self.exact_norms:
            return exact_sq_norms(Ms, augments, reduce=self.comm.sum, share=self.comm.share)
        return power_sq_norms(Ms, augments, cache, keys, reduce=self.comm.sum)

    def _step_dense_blocks(self, blocks) -> None:
        """Every block's step with the gradients of all the blocks summed in one all-reduce."""
        local = [blk.local_gradient() for blk in blocks.values()]
        summed = iter(self.comm.sum([g for gs in local for g in gs]))
        for blk, gs in zip(blocks.values(), local):
            blk.step([next(summed) for _ in gs])

    def _dense_block(self, states, y, l, norm_sq) -> DenseWeightBlock:
        return DataParallelDenseBlock(
            self.net, states, y, l, norm_sq=norm_sq, total=self.total, comm=self.comm
        )

    def _weight_step(self, states, y, layers, cache) -> dict[int, float]:
        return weight_step(self.net, states, y, layers, cache, reduce=self.comm.sum, total=self.total)

    def state_update(self, states, l, y, cache, lip=None) -> None:
        if self._fast_state[l]:  # per sample, the step size from the replicated weights
            super().state_update(states, l, y, cache, lip)
        else:
            state_step_dp(self.net, states, l, y, cache, self.comm)

    def _weight_sq_norms(self, weights, cache, keys) -> list[float]:
        if self.exact_norms:  # the same eigenvalue problems on every rank: each solves its share
            return self.comm.share([functools.partial(exact_sq_norm, W) for W in weights])
        # (power iterations: their warm starts must stay the same on every rank, so each rank runs them all)
        return super()._weight_sq_norms(weights, cache, keys)

    def objective_parts(self, states, y) -> dict[str, float]:
        """Objective, data term and penalty: means over every rank's samples of the batch."""
        with torch.no_grad():
            parts = self.net.objective(states, y)
        n = states[0].shape[0]
        keys = ("objective", "data", "penalty")
        *sums, count = self.comm.sum_floats([float(parts[k]) * n for k in keys] + [n])
        return {k: s / count for k, s in zip(keys, sums)}


class DataParallelISGM(DataParallelLifted, ISGMTrainer):
    """Implicit SGD on each rank's contiguous part of every global mini-batch (see the module docstring)."""

    def __init__(self, model, X, Y, **options):
        super().__init__(model, X, Y, **options)
        check_split(X.shape[0], self.batch_size, self.comm.world_size)

    def batch_update(self, idx: Tensor) -> dict[str, float]:
        self.total = idx.numel()
        return super().batch_update(rank_part(idx, self.comm.rank, self.comm.world_size))


class DataParallelBCD(DataParallelLifted, BCDTrainer):
    """BCD with each sample shard split over the ranks; a rank keeps the states of its samples only.

    ``state_dict`` gathers the states into the single-process layout (a collective: every rank calls it)
    and ``load_state_dict`` takes the rank's part, so checkpoints move between world sizes.
    """

    def _sample_shards(self, n: int, seed: int) -> list[Tensor]:
        self.global_shards = super()._sample_shards(n, seed)
        check_split(n, self.batch_size, self.comm.world_size, "sample shard")
        return [rank_part(s, self.comm.rank, self.comm.world_size) for s in self.global_shards]

    def update_states(self, s: int) -> None:
        self.total = self.global_shards[s].numel()
        super().update_states(s)

    def update_weights(self, s: int) -> None:
        self.total = self.global_shards[s].numel()
        super().update_weights(s)

    def _shard_size(self, s: int) -> int:
        return self.global_shards[s].numel()

    def state_dict(self) -> dict:
        local = [{l: st[l].detach().cpu() for l in self.free} for st in self.states]
        everyone = self.comm.gather_objects(local)
        states = [{l: torch.cat([r[s][l] for r in everyone]) for l in self.free} for s in range(len(local))]
        return {
            "shards": [s.cpu() for s in self.global_shards],
            "states": states,
            "caches": [_to_device(_clean_cache(c), "cpu") for c in self.caches],
        }

    def load_state_dict(self, d: dict) -> None:
        if len(d["shards"]) != len(self.global_shards) or any(
            not torch.equal(a.cpu(), b.cpu()) for a, b in zip(d["shards"], self.global_shards)
        ):
            raise ValueError(
                f"{self.method}: the checkpoint's sample shards differ from this run's (different data, "
                "batch_size or seed)"
            )
        rank, world = self.comm.rank, self.comm.world_size
        for st, saved in zip(self.states, d["states"]):
            for l, v in saved.items():
                st[int(l)] = rank_part(v, rank, world).to(self.device, self.X.dtype)
        self.caches = [_to_device(c, self.device) for c in d["caches"]]


class DataParallelUnrolled(UnrolledLiftedTrainer):
    """The lifted trainers of unrolled networks (:mod:`liftinv.training.unrolled`) on every rank's samples.

    The weights form one block whose gradient, the objective and its parts are means over the mini-batch:
    each rank sums over its samples and one all-reduce sums over the ranks (the gradient of every parameter
    tensor in one call; the K + 1 layer terms in another), then the replicated Adam / gradient step follows.
    The state sweeps are per sample and their step sizes come from the (replicated) weights, so they need no
    communication. ISGM: rank r takes the r-th contiguous part of each mini-batch. BCD: the states of sample
    i live on rank ``i mod R`` across epochs (they never move), so a rank takes the samples of each
    mini-batch it owns (possibly none); ``state_dict`` assembles every rank's states (an all-reduce of the
    rows each rank owns, zeros elsewhere: exact) and ``load_state_dict`` keeps them all, so checkpoints move
    between world sizes.
    """

    check_agreement = staticmethod(check_agreement)

    def __init__(self, model, X, Y, **options):
        self.comm = Communicator()
        self.comm.broadcast_module(model)
        super().__init__(model, X, Y, **options)
        if self.scheme == "isgm":
            check_split(X.shape[0], self.batch_size, self.comm.world_size)
        else:  # every rank owns at least one sample's states
            check_split(X.shape[0], None, self.comm.world_size, "data set")

    def _owned(self, idx: Tensor) -> Tensor:
        """Which samples of ``idx`` this rank owns (BCD: sample i on rank i mod R)."""
        return idx % self.comm.world_size == self.comm.rank

    def _local_indices(self, idx: Tensor) -> Tensor:
        self._batch_n = idx.numel()  # the mini-batch over every rank
        if self.scheme == "bcd":
            return idx[self._owned(idx)]
        return rank_part(idx, self.comm.rank, self.comm.world_size)

    def _sum_over_ranks(self, tensors: list[Tensor]) -> list[Tensor]:
        return self.comm.sum(tensors)

    def _batch_count(self, n: int) -> int:
        return self._batch_n

    def _stored_rows(self) -> Tensor:
        return torch.nonzero(self._owned(torch.arange(len(self.X), device=self.X.device))).flatten()

    def state_dict(self) -> dict:
        d = super().state_dict()
        if self.states is not None:  # every rank's rows (the others hold zeros there): exact sums
            mask = self._owned(torch.arange(len(self.X), device=self.X.device))
            mine = [s * mask.reshape(-1, *([1] * (s.dim() - 1))).to(s.dtype) for s in self.states]
            d["states"] = [s.cpu() for s in self.comm.sum(mine)]
        return d


class DataParallelBackprop(BackpropTrainer):
    """Back-propagation through :class:`~torch.nn.parallel.DistributedDataParallel` (the reference).

    Rank r's loss is its part's mean times n_r R / N, so DDP's average over the R ranks is the gradient of
    the global mini-batch mean even when the parts differ in size.
    """

    check_agreement = staticmethod(check_agreement)

    def __init__(self, model, X, Y, **options):
        self.comm = Communicator()
        super().__init__(model, X, Y, **options)
        check_split(X.shape[0], self.batch_size, self.comm.world_size)
        ids = [X.device] if X.device.type == "cuda" else None
        with self.comm.guard("DistributedDataParallel setup"):
            self.ddp = nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def run_epoch(self, epoch: int, generator: torch.Generator) -> dict[str, float]:
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(epoch)
        total, world = 0.0, self.comm.world_size
        for idx in minibatches(self.X.shape[0], self.batch_size, generator):
            part = rank_part(idx.to(self.X.device), self.comm.rank, world)
            self.opt.zero_grad(set_to_none=True)
            value = nested_loss(self.ddp(self.X[part]), self.T[part], self.loss)
            with self.comm.guard("gradient all-reduce (DDP)"):
                (value * (part.numel() * world / idx.numel())).backward()
            self.opt.step()
            total += float(value.detach()) * part.numel()
        (total,) = self.comm.sum_floats([total])
        return {"objective": total / self.X.shape[0]}


def data_parallel_class(base: type) -> type:
    """The data-parallel version of the trainer class ``base`` (a subclass combining it with a mixin).

    Raises
    ------
    ValueError
        For trainers without a data-parallel version (adaptive, accelerated, FTPROP).
    """
    if issubclass(base, UnrolledLiftedTrainer):
        mixin = DataParallelUnrolled
    elif issubclass(base, ISGMTrainer):
        mixin = DataParallelISGM
    elif issubclass(base, BCDTrainer) and not issubclass(base, BregmanAccelerated):
        mixin = DataParallelBCD
    elif issubclass(base, BackpropTrainer):
        mixin = DataParallelBackprop
    else:
        raise ValueError(
            f"distributed='data' supports bregman-isgm, mac-isgm, bregman-bcd, mac-bcd, fenchel-bcd, "
            f"backprop-sgd and backprop-adam on networks lift() accepts; not {getattr(base, 'method', '')!r} "
            f"({base.__name__})"
        )
    if issubclass(base, mixin):
        return base
    return type(f"DataParallel{base.__name__}", (mixin, base), {"__doc__": mixin.__doc__})


# ---------------------------------------------------------------------------------------------------------
# launching ranks on this machine
# ---------------------------------------------------------------------------------------------------------
def free_port() -> int:
    """A free TCP port on localhost (for the rendezvous of :func:`launch`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init_local_group(
    rank: int, world_size: int, port: int, *, backend: str = "gloo", timeout_s: float = DEFAULT_TIMEOUT_S
) -> None:
    """``torch.distributed.init_process_group`` with a TCP rendezvous on ``127.0.0.1:port``.

    Parameters
    ----------
    timeout_s : float
        How long any collective (and the rendezvous) waits for a peer before it fails: a dead rank makes
        the others raise :class:`RankLostError` within this time (gloo usually at once).
    """
    if backend == "nccl":
        torch.cuda.set_device(rank % torch.cuda.device_count())
    dist.init_process_group(
        backend,
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=float(timeout_s)),
    )


def _launched(rank, fn, world_size, port, backend, timeout_s, num_threads, results, args):
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    init_local_group(rank, world_size, port, backend=backend, timeout_s=timeout_s)
    try:
        # plain pickle bytes: torch's queue pickler would share tensors through file descriptors that die
        # with this process
        results.put((rank, pickle.dumps(fn(*args))))
    finally:
        dist.destroy_process_group()


def launch(
    fn: Callable,
    world_size: int,
    *args,
    backend: str = "gloo",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    num_threads: int | None = None,
) -> list:
    """Run ``fn(*args)`` on ``world_size`` ranks of a fresh process group on this machine.

    Each rank is a process started by ``torch.multiprocessing`` (spawn) with the process group initialised
    (:func:`init_local_group`, a free localhost port); inside ``fn``, ``torch.distributed.get_rank()`` says
    which rank it is and ``fit(..., distributed="data")`` trains data-parallel. torchrun users need none
    of this: they initialise the group themselves.

    Parameters
    ----------
    fn : callable
        Importable by name (a module-level function); its arguments and return value are pickled.
    world_size : int
        Number of ranks (>= 1).
    backend, timeout_s
        "gloo" (CPU) or "nccl" (one GPU per rank); the timeout of :func:`init_local_group`.
    num_threads : int, optional
        ``torch.set_num_threads`` in each rank.

    Returns
    -------
    list
        ``fn``'s return value on each rank, in rank order.

    Raises
    ------
    torch.multiprocessing.ProcessRaisedException, ProcessExitedException
        When a rank fails (the others are stopped); the message holds the rank's traceback.
    """
    import torch.multiprocessing as mp

    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
    results = mp.get_context("spawn").SimpleQueue()
    context = mp.start_processes(
        _launched,
        args=(fn, world_size, free_port(), backend, timeout_s, num_threads, results, args),
        nprocs=world_size,
        join=False,
        start_method="spawn",
    )
    out: list = [None] * world_size

    def drain():
        while not results.empty():
            rank, value = results.get()
            out[rank] = pickle.loads(value)

    while not context.join(timeout=0.1):
        drain()
    drain()
    return out
