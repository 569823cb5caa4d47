"""One training API for every method: back-propagation, lifted solvers and FTPROP.

``fit(model, train, method=...)`` runs an epoch loop shared by all methods: it seeds everything, shows a
tqdm bar over the epochs and one over the steps of the current epoch (mini-batches, sample shards:
:func:`epoch_progress`), evaluates train/test metrics, records a :class:`History` (objective and its parts,
metrics, wall time per epoch), writes a checkpoint after every epoch (atomically) and resumes from it.

A *method* is a trainer class registered under a name (see :data:`METHOD_MODULES`). A trainer is built as
``Trainer(model, X, Y, loss=..., **options)`` and offers

* ``run_epoch(epoch, generator) -> dict[str, float]``: one epoch; returns the objective and its parts;
* ``state_dict()`` / ``load_state_dict(d)``: everything besides the model's own parameters needed to resume
  (lifted states, momenta, optimiser state).

Mini-batch order is drawn from a generator seeded by ``(seed, epoch)``, so an interrupted and resumed run
gives the same weights as an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liftinv.files import load_torch_file, save_torch_file
from liftinv.metrics import History, psnr
from liftinv.training.registry import get_data_parallel_trainer, get_layer_parallel_trainer, get_trainer

__all__ = [
    "History",
    "seed_everything",
    "resolve_device",
    "as_tensors",
    "check_data",
    "targets_for_loss",
    "nested_loss",
    "accuracy",
    "evaluate",
    "epoch_generator",
    "minibatches",
    "epoch_progress",
    "epoch_ticker",
    "fit",
    "save_checkpoint",
    "load_checkpoint",
]


# ---------------------------------------------------------------------------------------------------------
# seeds, devices, data
# ---------------------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a torch generator seeded with ``seed``."""
    if not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(int(seed))


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A generator that depends only on ``(seed, epoch)`` (resume-safe mini-batch order)."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Turn ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``None`` (-> CPU) into a ``torch.device``.

    Raises
    ------
    ValueError
        If CUDA is asked for and not available, or the string is not a device.
    """
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a valid torch device (expected 'cpu' or 'cuda[:k]')"
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: CUDA is not available on this machine (use device='cpu')")
    return dev


def as_tensors(data, name: str = "train") -> tuple[Tensor, Tensor]:
    """Materialise ``(X, Y)`` from a tuple of tensors/arrays, a ``Dataset`` or a ``DataLoader``."""
    if data is None:
        raise ValueError(f"{name} data is None")
    if isinstance(data, tuple | list) and len(data) == 2 and not isinstance(data[0], tuple | list):
        X, Y = data
        X = torch.as_tensor(X)
        Y = torch.as_tensor(Y)
    else:
        if isinstance(data, torch.utils.data.DataLoader):
            pairs = [(x, y) for x, y in data]
            X = torch.cat([p[0] for p in pairs])
            Y = torch.cat([torch.as_tensor(p[1]) for p in pairs])
        elif isinstance(data, torch.utils.data.Dataset):
            items = [data[i] for i in range(len(data))]
            X = torch.stack([torch.as_tensor(it[0]) for it in items])
            Y = torch.stack([torch.as_tensor(it[1]) for it in items])
        else:
            raise TypeError(
                f"{name} must be a pair (X, Y) of tensors, a torch Dataset or a DataLoader, got "
                f"{type(data).__name__}"
            )
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"{name}: X has {X.shape[0]} samples but Y has {Y.shape[0]}")
    if X.shape[0] == 0:
        raise ValueError(f"{name}: no samples")
    if not X.is_floating_point():
        X = X.float()
    return X, Y


def check_data(model: nn.Module, X: Tensor, Y: Tensor, loss: str, name: str = "train") -> None:
    """Check data against the model: finite inputs, matching shapes, labels in range.

    Raises ``ValueError`` naming the argument and what was expected.
    """
    if not torch.isfinite(X).all():
        raise ValueError(
            f"{name} inputs X contain NaN or inf values (found {(~torch.isfinite(X)).sum()} entries)"
        )
    if Y.is_floating_point() and not torch.isfinite(Y).all():
        raise ValueError(f"{name} targets Y contain NaN or inf values")
    was_training = model.training
    model.eval()  # a shape probe must not update batch-norm statistics
    try:
        with torch.no_grad():
            out = model(X[:2].to(next(iter(model.parameters()), X).device))
    except RuntimeError as exc:
        model.train(was_training)
        raise ValueError(
            f"{name} inputs of shape {tuple(X.shape[1:])} (per sample) do not fit the model: {exc}"
        ) from None
    model.train(was_training)
    if not Y.is_floating_point():
        n_classes = out.shape[1]
        if Y.dim() != 1:
            raise ValueError(f"{name} class labels must be a 1-D tensor, got shape {tuple(Y.shape)}")
        if Y.min() < 0 or Y.max() >= n_classes:
            raise ValueError(
                f"{name} labels must lie in [0, {n_classes - 1}] for a model with {n_classes} outputs, "
                f"got range [{int(Y.min())}, {int(Y.max())}]"
            )
    elif tuple(out.shape[1:]) != tuple(Y.shape[1:]):
        raise ValueError(
            f"{name} targets have shape {tuple(Y.shape[1:])} per sample but the model outputs "
            f"{tuple(out.shape[1:])}"
        )
    if loss not in ("mse", "ce"):
        raise ValueError(f"loss must be 'mse' or 'ce', got {loss!r}")
    if loss == "ce" and Y.is_floating_point() and Y.dim() != 2:
        raise ValueError("loss='ce' needs class labels or class-probability targets of shape [N, classes]")


def targets_for_loss(Y: Tensor, n_out: int, loss: str, dtype=torch.float32) -> Tensor:
    """Float targets for the last layer: one-hot vectors for class labels, else ``Y`` itself."""
    if Y.is_floating_point():
        return Y.to(dtype)
    return F.one_hot(Y.long(), n_out).to(dtype)


def nested_loss(out: Tensor, target: Tensor, loss: str) -> Tensor:
    """Mean over samples of the per-sample loss.

    ``"mse"``: 1/2 ||out - target||^2 summed over components; ``"ce"``: cross-entropy
    -sum_k target_k log softmax(out)_k (target one-hot or a probability vector).
    """
    n = out.shape[0]
    if loss == "mse":
        return 0.5 * (out - target).pow(2).reshape(n, -1).sum(1).mean()
    if loss == "ce":
        return -(target * torch.log_softmax(out, dim=1)).reshape(n, -1).sum(1).mean()
    raise ValueError(f"loss must be 'mse' or 'ce', got {loss!r}")


@torch.no_grad()
def accuracy(model: nn.Module, X: Tensor, Y: Tensor, batch_size: int = 4096) -> float:
    """Top-1 accuracy (fraction in [0, 1]) of ``model`` on labelled data."""
    dev = next(iter(model.parameters()), X).device
    correct = 0
    for i in range(0, X.shape[0], batch_size):
        pred = model(X[i : i + batch_size].to(dev)).argmax(dim=1).cpu()
        correct += int((pred == Y[i : i + batch_size].cpu()).sum())
    return correct / X.shape[0]


@torch.no_grad()
def _mean_psnr(model: nn.Module, X: Tensor, Y: Tensor) -> float:
    """Mean over samples of :func:`liftinv.metrics.psnr` of ``model(X)`` against ``Y`` (no clipping).

    The peak is 1 when every target lies in [-1, 1], else each sample's largest absolute target value.
    """
    dev = next(iter(model.parameters()), X).device
    n = X.shape[0]
    out = model(X.to(dev)).cpu().reshape(n, -1)
    ref = Y.cpu().reshape(n, -1)
    values = psnr(out, ref)  # peak 1
    peak = ref.abs().amax(1).clamp(min=1e-12)
    if peak.max() > 1 + 1e-6:
        values = values + 20 * torch.log10(peak)  # 10 log10(peak^2 / mse)
    return float(values.mean())


def evaluate(model: nn.Module, X: Tensor, Y: Tensor, metric: str | Callable | None = None) -> float:
    """Evaluate ``metric`` ("accuracy" for labels, "psnr" for image targets by default, or a callable)."""
    if callable(metric):
        return float(metric(model, X, Y))
    metric = metric or ("psnr" if Y.is_floating_point() else "accuracy")
    if metric == "accuracy":
        return accuracy(model, X, Y)
    if metric == "psnr":
        return _mean_psnr(model, X, Y)
    raise ValueError(f"metric must be 'accuracy', 'psnr' or a callable, got {metric!r}")


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_batch_size(batch_size, allow_none: bool = True):
    """Shared by every trainer: a positive int, or ``None`` (one batch / shard with every sample)."""
    if batch_size is None and allow_none:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(
            f"batch_size must be a positive int{' or None' if allow_none else ''}, got {batch_size!r}"
        )
    return batch_size


def minibatches(n: int, batch_size: int | None, generator: torch.Generator | None, shuffle: bool = True):
    """Index tensors of the mini-batches of an epoch (the whole set when ``batch_size`` is None).

    Inside an epoch of ``fit(progress=True)`` each mini-batch ticks the epoch's progress bar once it has been
    processed (:func:`epoch_progress`), so every trainer that iterates over these batches shows its progress
    within the epoch.

    Examples
    --------
    >>> [idx.tolist() for idx in minibatches(5, 2, None, shuffle=False)]
    [[0, 1], [2, 3], [4]]
    """
    if batch_size is None or batch_size >= n:
        batches = [torch.arange(n)]
    elif batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    else:
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    yield from epoch_progress(batches, unit="batch")


#: the progress bar of the steps of the current epoch; set by ``fit(progress=True)`` while a trainer runs an
#: epoch, None otherwise
_EPOCH_BAR: ContextVar[Any] = ContextVar("liftinv_epoch_bar", default=None)

_Step = TypeVar("_Step")


def _no_tick() -> None:
    """The ticker outside an epoch of ``fit(progress=True)``: does nothing."""


def epoch_ticker(total: int | None, unit: str = "step") -> Callable[[], None]:
    """Start counting the steps of the current epoch on the progress bar of ``fit(progress=True)``.

    Parameters
    ----------
    total : int or None
        Steps in this epoch (None: unknown).
    unit : str
        What a step is (``"batch"``, ``"shard"``, ``"layer"``, ...), shown by the bar.

    Returns
    -------
    callable
        ``tick()``: one more step done. Outside an epoch of ``fit(progress=True)`` (no bar) it does nothing.

    See Also
    --------
    epoch_progress : the same for the steps of an iterable.
    """
    bar = _EPOCH_BAR.get()
    if bar is None:
        return _no_tick
    bar.unit = unit
    bar.reset(total=total)

    def tick() -> None:
        bar.update(1)

    return tick


def epoch_progress(steps: Iterable[_Step], unit: str = "step") -> Iterator[_Step]:
    """The items of ``steps``, each counted on the epoch's progress bar once the caller is done with it.

    A trainer's ``run_epoch`` iterates over its steps (mini-batches, sample shards) through this function
    (:func:`minibatches` does), so ``fit(progress=True)`` shows the progress within an epoch; outside such an
    epoch it only yields the items.

    Parameters
    ----------
    steps : iterable
        The steps of one epoch (a sized iterable gives the bar its total).
    unit : str
        What a step is, shown by the bar.

    Examples
    --------
    >>> list(epoch_progress([3, 1, 2], unit="shard"))  # no bar outside fit(progress=True)
    [3, 1, 2]
    """
    tick = epoch_ticker(len(steps) if hasattr(steps, "__len__") else None, unit)
    for step in steps:
        yield step
        tick()


# ---------------------------------------------------------------------------------------------------------
# history and checkpoints
# ---------------------------------------------------------------------------------------------------------
def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` with ``torch.save`` atomically (a crash never leaves a half-written file;
    :func:`liftinv.files.save_torch_file`). The payload must be weights-only: tensors, numbers, strings,
    lists, tuples and dicts."""
    save_torch_file(payload, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: a file that would need code
    to load is refused in one line, :class:`liftinv.files.UnsafeFileError`, before any of it runs)."""
    payload = load_torch_file(path, "checkpoint")
    if not isinstance(payload, dict) or not {"method", "epoch", "model", "trainer"} <= set(payload):
        raise ValueError(f"checkpoint {str(path)!r} is not a liftinv training checkpoint")
    return payload


# ---------------------------------------------------------------------------------------------------------
# the shared epoch loop
# ---------------------------------------------------------------------------------------------------------
def fit(
    model: nn.Module,
    train,
    *,
    method: str = "backprop-adam",
    epochs: int = 10,
    loss: str = "mse",
    test=None,
    metric: str | Callable | None = None,
    seed: int = 0,
    device: str | torch.device | None = "cpu",
    checkpoint: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool = True,
    distributed: str | None = None,
    **options,
) -> History:
    """Train ``model`` in place with ``method`` and return the :class:`History`.

    Parameters
    ----------
    model : nn.Module
        The network; the trained weights are written into it (lifted methods do not copy the weights).
    train, test : (X, Y) tensors, Dataset or DataLoader
        Inputs and targets (class labels -> one-hot for ``loss="mse"``; float targets for regression).
    method : str
        One of :func:`available_methods` (``backprop-sgd``, ``backprop-adam``, ``mac-bcd``, ``fenchel-bcd``,
        ``bregman-bcd``, ``bregman-accel``, ``bregman-adaptive``, ``bregman-isgm``, ``ftprop-*``, ``ste``,
        ``sste``).
    epochs : int
        Number of epochs (full passes over ``train``).
    loss : {"mse", "ce"}
        Last-layer loss: squared error to one-hot targets or cross-entropy. Which is better depends on the
        network and the trainer (the sign networks of ``benchmarks/hard_threshold.py`` chose cross-entropy on
        a validation split, the ReLU ones MSE for the MLP and cross-entropy for the convnet); choose it on
        validation data.
    metric : "accuracy", "psnr" or callable(model, X, Y)
        Metric recorded per epoch on train and test data.
    seed : int
        Seeds the initialisation-independent randomness (mini-batch order, noise) of the run.
    device : "cpu", "cuda" or torch.device
    checkpoint : path, optional
        Written after every epoch; when ``resume`` and the file exists, training continues from it.
    progress : bool
        Show a tqdm bar.
    distributed : {None, "data", "layers"}
        ``"data"``: data-parallel training (:mod:`liftinv.training.distributed`) on the ranks of an
        initialised ``torch.distributed`` process group (torchrun, or
        :func:`liftinv.training.distributed.launch`); every rank calls ``fit`` with the same arguments and
        data (checked: a mismatch raises the same ``ValueError`` on every rank), owns a contiguous part of
        each mini-batch (at least one sample each) and ends with the same weights; rank 0 writes the
        checkpoint, which resumes on any number of ranks. A lost rank raises ``RuntimeError`` ("rank N
        lost: ...") on the others within the process group's timeout. ``"layers"``: layer-parallel BCD
        (:mod:`liftinv.training.layer_parallel`; ``bregman-bcd``, ``mac-bcd``, ``fenchel-bcd`` on MLPs,
        at most one rank per layer, parity schedule): each rank owns consecutive layers (weights and
        states) and ends every epoch with the full model; rank 0 writes the checkpoint, which resumes on
        1 rank.
    **options
        Passed to the method's trainer (``lr``, ``batch_size``, ``lambdas``, ...).

    Returns
    -------
    History
        One record per epoch: ``epoch``, ``objective`` (and parts), ``train_<metric>``, ``test_<metric>``,
        ``time`` (seconds of that epoch) and ``wall`` (cumulative).
    """
    from tqdm.auto import tqdm

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
    if distributed not in (None, "data", "layers"):
        raise ValueError(f"distributed must be None, 'data' or 'layers', got {distributed!r}")
    if distributed is not None:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError(
                f"distributed={distributed!r} needs an initialised torch.distributed process group "
                "(torchrun, torch.distributed.init_process_group, or liftinv.training.distributed.launch)"
            )
        lookup = get_data_parallel_trainer if distributed == "data" else get_layer_parallel_trainer
        trainer_cls = lookup(method, model)
    else:
        trainer_cls = get_trainer(method, model)
    dev = resolve_device(device)
    seed_everything(seed)
    X, Y = as_tensors(train, "train")
    model.to(dev)
    check_data(model, X, Y, loss, "train")
    Xt = Yt = None
    if test is not None:
        Xt, Yt = as_tensors(test, "test")
        check_data(model, Xt, Yt, loss, "test")
    dtype = next(iter(model.parameters())).dtype
    X = X.to(dev, dtype)
    Y = Y.to(dev) if not Y.is_floating_point() else Y.to(dev, dtype)
    writer = True  # this process writes the checkpoint (rank 0 when distributed)
    if distributed is not None:
        from torch.distributed import get_rank

        config = {"method": method, "epochs": epochs, "loss": loss, "seed": seed, "options": options}
        trainer_cls.check_agreement({**config, "X": X, "Y": Y, "dtype": str(dtype)})
        writer = get_rank() == 0
    trainer = trainer_cls(model, X, Y, loss=loss, seed=seed, **options)
    history = History(method=method)
    start = 0
    if checkpoint is not None and resume and Path(checkpoint).is_file():
        ck = load_checkpoint(checkpoint)
        if ck.get("method") != method:
            raise ValueError(
                f"checkpoint {str(checkpoint)!r} was written by method {ck.get('method')!r}, not {method!r}"
            )
        model.load_state_dict(ck["model"])
        trainer.load_state_dict(ck["trainer"])
        history = History.from_dict(ck["history"])
        start = int(ck["epoch"])
    if distributed is not None:
        trainer_cls.check_agreement({"resume_epoch": start})
    metric_name = metric if isinstance(metric, str) else ("custom" if callable(metric) else None)
    metric_name = metric_name or ("psnr" if Y.is_floating_point() else "accuracy")
    wall = history.last.get("wall", 0.0)
    bar = tqdm(
        range(start, epochs), desc=method, disable=not progress, leave=False, initial=start, total=epochs
    )
    # the steps of the current epoch (mini-batches, shards), ticked through epoch_progress / epoch_ticker
    steps_bar = tqdm(total=None, disable=not progress, leave=False, unit="step")
    try:
        for epoch in bar:
            t0 = time.perf_counter()
            model.train()
            parts = _run_epoch(trainer, epoch, seed, steps_bar if progress else None)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            wall += dt
            model.eval()
            rec = {"epoch": epoch + 1, **{k: float(v) for k, v in parts.items()}, "time": dt, "wall": wall}
            rec[f"train_{metric_name}"] = evaluate(model, X, Y, metric)
            if Xt is not None:
                rec[f"test_{metric_name}"] = evaluate(model, Xt.to(dev, dtype), Yt.to(dev), metric)
            if not all(math.isfinite(v) for v in rec.values() if isinstance(v, float)):
                raise FloatingPointError(f"{method}: non-finite values at epoch {epoch + 1}: {rec}")
            history.append(**rec)
            bar.set_postfix(
                {k: f"{v:.4g}" for k, v in rec.items() if k in ("objective", f"test_{metric_name}")}
            )
            if checkpoint is not None:
                trainer_state = trainer.state_dict()  # every rank: BCD gathers its states to rank 0's layout
                if writer:
                    save_checkpoint(
                        checkpoint,
                        {
                            "method": method,
                            "epoch": epoch + 1,
                            "model": model.state_dict(),
                            "trainer": trainer_state,
                            "history": history.to_dict(),
                        },
                    )
    finally:
        steps_bar.close()
        bar.close()
    return history


def _run_epoch(trainer, epoch: int, seed: int, steps_bar) -> dict[str, float]:
    """``trainer.run_epoch`` with ``steps_bar`` (None: no progress) as the bar of :func:`epoch_progress`."""
    if steps_bar is not None:
        steps_bar.set_description(f"epoch {epoch + 1}", refresh=False)
        steps_bar.reset(total=None)
    token = _EPOCH_BAR.set(steps_bar)
    try:
        return trainer.run_epoch(epoch, epoch_generator(seed, epoch))
    finally:
        _EPOCH_BAR.reset(token)
