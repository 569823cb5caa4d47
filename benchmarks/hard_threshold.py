"""Hard-threshold networks: FTPROP-mb (soft hinge) against saturated STE, STE and full-precision ReLU.

Friesen & Domingos, *Deep Learning as a Mixed Convex-Combinatorial Optimization Problem*, ICLR 2018.
Networks (same shapes for every row, only the hidden activation and the training method change):

* ``mlp``: 64-128-128-10 (784-... on MNIST, 3072-256-256-10 on CIFAR-10), ``Linear -> act`` per hidden
  layer (:func:`liftinv.models.mlp`);
* ``mlp-bn`` (not in the default run, ``--archs mlp-bn``): the same widths with batch-norm before every
  hidden activation, ``Linear -> BN -> act`` (:func:`liftinv.models.mlp_bn`; how BinaryNet-style sign MLPs
  and the paper's deeper networks normalise the pre-activations before the threshold);
* ``convnet4``: four 3x3 convolutions, each followed by batch-norm and the activation, with 2x2
  max-pooling of the pre-activations of every second one, then a linear classifier
  (:func:`liftinv.models.convnet4`; widths 16/32 on 8x8 digits, 32/64 on MNIST and CIFAR-10), the paper's
  4-layer CIFAR convnet style scaled to small images;
* ``convnet4-paper``: the authors' ConvNet4 layer for layer (:func:`liftinv.models.paper_convnet4`):
  ``conv5x5-maxpool2-act, conv5x5-maxpool2-act, linear-act, linear``, no batch-norm (their default); widths
  16/32 and 512 hidden units on 8x8 digits (half of theirs), 32/64 and 1024 on MNIST and CIFAR-10.

Rows: sign units and the 2-bit staircase (qReLU, ``clamp(ceil(2z), 0, 3)/3``), each trained by FTPROP-mb
with the soft hinge (``ftprop-softhinge``), the saturated STE (``sste``) and the STE (``ste``); plus the
same network with ReLU and clipped ReLU trained by back-propagation (``backprop-adam``). Adam, mini-batches
of 64, a fixed number of epochs; every row of a seed starts from the same initial-weight draw.

Optimiser schedule (``--schedule``, the same for every row): ``paper`` (the default) is the paper's recipe
scaled to our epoch counts (they use Adam with weight decay 5e-4 for 300 epochs and multiply the step by
0.1 after 200 and 250 epochs): weight decay 5e-4 and the step multiplied by 0.1 after 2/3 and after 5/6
of the epochs (after 20 and 25 of 30 for the MLPs, after 10 and 12 of 15 for the convnets). ``constant`` is a
constant step without weight decay (the protocol before 2026-11-22; with it the accuracy after the last
epoch varies more between seeds, up to 4.6 points between two rows of one seed).

Selection protocol (the default; the same for every row, the test set is never looked at): 20% of the
*training* images are held out as a validation split (stratified, ``random_state=0``); every row is trained
on the other 80% for each setting of a small grid, Adam step size in {1e-3, 3e-3, 1e-2} x last-layer loss
in {MSE to one-hot, cross-entropy} (``--lrs``, ``--losses``), with ``--select-seeds`` seeds (default 2;
seeds 1000, 1001, ..., distinct from the reported seeds), and the setting with the best mean validation
accuracy after the last epoch is kept (ties: the first in grid order). Each row is then retrained with its
setting on the full training set for the reported seeds 0..4 and evaluated once on the test set: per-method
tuning on held-out training data, as in the paper's experiments (the authors' code carves its validation
set out of the training data). ``--no-select`` gives every row the single setting ``--lr`` / ``--loss``
instead (the previous protocol: lr 3e-3, MSE).

Data: scikit-learn's 8x8 digits (pixels / 16, 30% held out, stratified split with ``random_state=0``);
MNIST (``--mnist DIR``, IDX files) and CIFAR-10 (``--cifar10 DIR``, python batches) when given, read by
:func:`liftinv.datasets.load_mnist` / :func:`liftinv.datasets.load_cifar10` (``--subset`` training images,
default 10000, and the full test set).

Columns: the selected setting and its validation accuracy, test accuracy after the last epoch (mean +- std
over seeds), median wall time per training epoch (from :class:`liftinv.training.History`, evaluation
excluded), its ratio to the ReLU row's epoch time and to the STE row of the same activation (per seed, then
averaged; rows may use different step sizes, which does not change the cost of an epoch). Timing: one torch
thread; for every seed the rows are interleaved epoch by epoch (each run continues from its checkpoint;
``fit`` resumes exactly), so every row sees the same machine load. A second table per network gives the
soft hinge minus the saturated STE seed by seed (the two runs of a seed share the initial weights and the
mini-batch order), with its mean, standard deviation and paired t statistic; a third lists the mean
validation accuracy of every row for every grid setting.

Last table: exact FTPROP (``ftprop-exact``: target search + convex per-unit fits) on n-bit parity, which no
single perceptron can fit (``--no-exact`` skips it).

Usage::

    .venv/bin/python benchmarks/hard_threshold.py             # 5 seeds, digits (~8 min on 2 CPU cores)
    .venv/bin/python benchmarks/hard_threshold.py --quick     # 2 seeds, few epochs, 1 selection seed (~1 min)
    .venv/bin/python benchmarks/hard_threshold.py --no-select --lr 3e-3 --loss mse   # one shared setting
    .venv/bin/python benchmarks/hard_threshold.py --schedule constant                # constant step
    .venv/bin/python benchmarks/hard_threshold.py --archs mlp-bn --no-exact          # batch-norm MLP
    .venv/bin/python benchmarks/hard_threshold.py --mnist ~/data/mnist --cifar10 ~/data/cifar-10-batches-py
    .venv/bin/python benchmarks/hard_threshold.py --json results.json

The full run writes its table to ``benchmarks/results/hard_threshold.md`` (``--md PATH`` to change,
``--md ''`` to skip; ``--quick`` writes no Markdown unless ``--md`` is given).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
RESULTS = Path(__file__).resolve().parent / "results"

#: (label, hidden activation, method)
ROWS = [
    ("sign / FTPROP soft hinge", "sign", "ftprop-softhinge"),
    ("sign / saturated STE", "sign", "sste"),
    ("sign / STE", "sign", "ste"),
    ("qReLU 2-bit / FTPROP soft hinge", "qrelu2", "ftprop-softhinge"),
    ("qReLU 2-bit / saturated STE", "qrelu2", "sste"),
    ("qReLU 2-bit / STE", "qrelu2", "ste"),
    ("ReLU / backprop (full precision)", "relu", "backprop-adam"),
    ("clipped ReLU / backprop (full precision)", "clipped_relu", "backprop-adam"),
]
ARCHS = ("mlp", "mlp-bn", "convnet4", "convnet4-paper")
DEFAULT_ARCHS = ("mlp", "convnet4", "convnet4-paper")
LR, BATCH = 3e-3, 64
#: the optimiser schedules (``--schedule``), described once for the help, the header and the tables
SCHEDULES = {
    "paper": "weight decay 5e-4, step x0.1 after 2/3 and 5/6 of the epochs (the paper's schedule, scaled)",
    "constant": "constant step, no weight decay",
}
PAPER_WEIGHT_DECAY = 5e-4  # Friesen & Domingos (2018): Adam, weight decay 5e-4, step decayed 0.1x twice
LRS, LOSSES = (1e-3, 3e-3, 1e-2), ("mse", "ce")  # the selection grid
VAL_FRACTION = 0.2  # of the training images, for the selection
SELECT_SEED0 = 1000  # selection seeds are 1000, 1001, ... (the reported seeds are 0, 1, ...)


# ---------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------
def load_digits_split():
    """8x8 digits as ``[N, 1, 8, 8]`` floats in [0, 1]; 30% held out (stratified, ``random_state=0``)."""
    from liftinv.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits()
    tr, te = train_test_split(np.arange(len(y)), test_size=0.3, random_state=0, stratify=y.numpy())
    return (X[tr], y[tr]), (X[te], y[te])


def validation_split(train, fraction: float = VAL_FRACTION):
    """Carve a stratified validation split (``random_state=0``) out of the *training* data."""
    from sklearn.model_selection import train_test_split

    X, y = train
    fit_idx, val_idx = train_test_split(
        np.arange(len(y)), test_size=fraction, random_state=0, stratify=y.numpy()
    )
    return (X[fit_idx], y[fit_idx]), (X[val_idx], y[val_idx])


def _subset(X, y, n, seed=0):
    if n is None or n >= X.shape[0]:
        return X, y
    idx = torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return X[idx], y[idx]


def load_local(name: str, directory: str, subset: int | None):
    """MNIST or CIFAR-10 from local files (readers imported lazily)."""
    from liftinv import datasets

    reader = datasets.load_mnist if name == "mnist" else datasets.load_cifar10
    Xtr, ytr = reader(directory, "train")
    Xte, yte = reader(directory, "test")
    return _subset(Xtr.float(), ytr.long(), subset), (Xte.float(), yte.long())


def build(arch: str, activation: str, shape: tuple[int, int, int]):
    """The benchmark network for an input ``shape = (C, H, W)``."""
    from liftinv.models import convnet4, mlp, mlp_bn, paper_convnet4

    c, h, w = shape
    if arch in ("mlp", "mlp-bn"):
        hidden = 128 if c == 1 else 256
        sizes = (c * h * w, hidden, hidden, 10)
        return mlp(sizes, activation=activation) if arch == "mlp" else mlp_bn(sizes, activation=activation)
    widths = (16, 32) if h <= 8 else (32, 64)
    if arch == "convnet4-paper":  # the authors' layout; halved on 8x8 digits like the other networks
        hidden = 512 if h <= 8 else 1024
        return paper_convnet4(
            activation, in_channels=c, image_size=h, n_classes=10, widths=widths, hidden=hidden
        )
    return convnet4(activation, in_channels=c, image_size=h, n_classes=10, widths=widths)


def schedule_options(schedule: str, epochs: int) -> dict:
    """Optimiser options of a training schedule, passed to :func:`liftinv.training.fit`.

    ``"paper"``: the paper's recipe scaled to ``epochs`` (they train 300 epochs with Adam and weight decay
    5e-4 and multiply the step by 0.1 after 200 and 250): weight decay 5e-4, step x0.1 after 2/3 and after
    5/6 of the epochs. ``"constant"``: a constant step and no weight decay (the protocol before 2026-11-22).
    """
    if schedule == "constant":
        return {}
    if schedule != "paper":
        raise ValueError(f"schedule must be one of {tuple(SCHEDULES)}, got {schedule!r}")
    milestones = tuple(sorted({m for m in (epochs * 2 // 3, epochs * 5 // 6) if 0 < m < epochs}))
    return {"weight_decay": PAPER_WEIGHT_DECAY, "lr_decay_epochs": milestones, "lr_decay": 0.1}


def _setting(loss: str, lr: float) -> str:
    return f"{loss} {lr:g}"


def _no_eval(model, X, Y) -> float:
    """Per-epoch metric that skips the evaluation (the runs are scored once, after their last epoch)."""
    return 0.0


# ---------------------------------------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------------------------------------
def select_settings(
    dataset: str,
    train,
    arch: str,
    epochs: int,
    seeds: list[int],
    *,
    lrs=LRS,
    losses=LOSSES,
    val_fraction: float = VAL_FRACTION,
    schedule: str = "paper",
    rows_spec=ROWS,
    log=print,
) -> dict[str, dict]:
    """Per-row choice of (loss, Adam step size) by validation accuracy on a split of the training data.

    Every row is trained on ``1 - val_fraction`` of ``train`` for every grid setting and every seed in
    ``seeds`` (same initial draw for every row of a seed), for ``epochs`` epochs, and scored once on the
    validation split after the last epoch, with the optimiser options of ``schedule``
    (:func:`schedule_options`). The best mean validation accuracy wins; ties go to the first setting in grid
    order (``losses`` outer, ``lrs`` inner). The test data are not used.
    """
    from liftinv.training import accuracy, fit

    fit_data, (Xv, yv) = validation_split(train, val_fraction)
    shape = tuple(train[0].shape[1:])
    grid = [(loss, lr) for loss in losses for lr in lrs]
    opts = schedule_options(schedule, epochs)
    out = {}
    for label, act, method in rows_spec:
        scores = {}
        for loss, lr in grid:
            accs = []
            for seed in seeds:
                torch.manual_seed(seed)
                net = build(arch, act, shape)
                fit(
                    net,
                    fit_data,
                    method=method,
                    epochs=epochs,
                    loss=loss,
                    seed=seed,
                    progress=False,
                    metric=_no_eval,
                    lr=lr,
                    batch_size=BATCH,
                    **opts,
                )
                accs.append(accuracy(net.eval(), Xv, yv))
            scores[_setting(loss, lr)] = (float(np.mean(accs)), float(np.std(accs)))
        best_loss, best_lr = max(grid, key=lambda g: scores[_setting(*g)][0])  # max keeps the first of ties
        key = _setting(best_loss, best_lr)
        out[label] = {
            "loss": best_loss,
            "lr": best_lr,
            "val_acc": scores[key][0],
            "val_std": scores[key][1],
            "grid": {k: v[0] for k, v in scores.items()},
        }
        log(
            f"  {dataset:7s} {arch:8s} select {label:42s} -> {best_loss} lr {best_lr:g} "
            f"(validation {100 * scores[key][0]:.2f}%)"
        )
    return out


def run_table(
    dataset: str,
    train,
    test,
    arch: str,
    epochs: int,
    seeds: list[int],
    *,
    lr: float = LR,
    loss: str = "mse",
    settings: dict[str, dict] | None = None,
    schedule: str = "paper",
    rows_spec=ROWS,
    log=print,
) -> list[dict]:
    """Train every row for every seed; return one result dict per row.

    Each row uses its entry of ``settings`` (``{"loss", "lr", ...}`` from :func:`select_settings`) or,
    without one, the shared ``loss`` and ``lr``; every row uses the optimiser options of ``schedule``
    (:func:`schedule_options`). For each seed the rows are interleaved epoch by epoch
    (every row's run is continued from its checkpoint with :func:`liftinv.training.fit`, which resumes
    exactly), so all rows see the same machine load; the epoch times are those recorded by ``fit``
    (training only).
    """
    import tempfile

    from liftinv.training import fit

    settings = settings or {}
    chosen = {
        r[0]: (settings[r[0]]["loss"], settings[r[0]]["lr"]) if r[0] in settings else (loss, lr)
        for r in rows_spec
    }
    shape = tuple(train[0].shape[1:])
    opts = schedule_options(schedule, epochs)
    acc = {r[0]: [] for r in rows_spec}
    ep_time = {r[0]: [] for r in rows_spec}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            nets, hists = {}, {}
            for label, act, _ in rows_spec:
                torch.manual_seed(seed)  # same initial draw for every row of a seed
                nets[label] = build(arch, act, shape)
            for epoch in range(1, epochs + 1):
                for i, (label, _, method) in enumerate(rows_spec):
                    row_loss, row_lr = chosen[label]
                    hists[label] = fit(
                        nets[label],
                        train,
                        test=test if epoch == epochs else None,
                        method=method,
                        epochs=epoch,
                        loss=row_loss,
                        seed=seed,
                        progress=False,
                        checkpoint=Path(tmp) / f"{dataset}-{arch}-{seed}-{i}.pt",
                        metric=None if epoch == epochs else _no_eval,
                        lr=row_lr,
                        batch_size=BATCH,
                        **opts,
                    )
            for label, _, _ in rows_spec:
                h = hists[label]
                acc[label].append(h.last["test_accuracy"])
                ep_time[label].append(statistics.median(h["time"]))
                log(
                    f"  {dataset:7s} {arch:8s} seed {seed}  {label:42s} test {100 * acc[label][-1]:6.2f}%  "
                    f"{ep_time[label][-1]:.3f} s/epoch"
                )
    relu = next((r[0] for r in rows_spec if r[1] == "relu"), None)
    rows = []
    for label, act, method in rows_spec:
        ste = next((r[0] for r in rows_spec if r[1] == act and r[2] == "ste"), None)

        def ratio(ref, label=label):
            return float(np.mean([a / b for a, b in zip(ep_time[label], ep_time[ref])])) if ref else None

        sel = settings.get(label)
        rows.append(
            {
                "dataset": dataset,
                "arch": arch,
                "row": label,
                "activation": act,
                "method": method,
                "epochs": epochs,
                "schedule": schedule,
                "seeds": len(seeds),
                "lr": chosen[label][1],
                "loss": chosen[label][0],
                "selected": sel is not None,
                "val_acc": sel["val_acc"] if sel else None,
                "val_grid": sel["grid"] if sel else None,
                "test_acc_mean": float(np.mean(acc[label])),
                "test_acc_std": float(np.std(acc[label])),
                "test_acc": acc[label],
                "epoch_time": float(np.mean(ep_time[label])),
                "ratio_relu": ratio(relu),
                "ratio_ste": ratio(ste),
            }
        )
    return rows


def parity(n: int):
    X = torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)))
    return X, (X.sum(1) % 2).long()


def run_exact(seeds: list[int], log=print) -> list[dict]:
    """Exact FTPROP on n-bit parity (one hidden layer of 2n sign units) against a linear classifier."""
    from torch import nn

    from liftinv.models import Sign
    from liftinv.training import fit

    out = []
    for n in (2, 3, 4):
        X, y = parity(n)
        for label, hidden in (
            ("linear classifier (no hidden layer)", None),
            (f"{n}-{2 * n}-2 sign net", 2 * n),
        ):
            accs, epochs_needed, times = [], [], []
            for seed in seeds:
                torch.manual_seed(seed)
                net = (
                    nn.Sequential(nn.Linear(n, 2))
                    if hidden is None
                    else nn.Sequential(nn.Linear(n, hidden), Sign(), nn.Linear(hidden, 2))
                )
                t0 = time.perf_counter()
                hist = fit(net, (X, y), method="ftprop-exact", epochs=30, seed=seed, progress=False)
                times.append(time.perf_counter() - t0)
                tr = hist["train_accuracy"]
                accs.append(max(tr))
                epochs_needed.append(next((i + 1 for i, a in enumerate(tr) if a == 1.0), None))
            solved = [e for e in epochs_needed if e is not None]
            out.append(
                {
                    "problem": f"{n}-bit parity ({2**n} points)",
                    "network": label,
                    "solved": len(solved),
                    "seeds": len(seeds),
                    "best_train_acc_mean": float(np.mean(accs)),
                    "median_epochs_to_100": float(np.median(solved)) if solved else None,
                    "time_per_run": float(np.mean(times)),
                }
            )
            log(f"  exact FTPROP  {out[-1]['problem']:22s} {label:38s} solved {len(solved)}/{len(seeds)}")
    return out


# ---------------------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------------------
def paired_differences(group: list[dict]) -> list[dict]:
    """Soft hinge minus saturated STE, seed by seed, for every activation of one network's rows.

    The two rows of a seed share the initial weights and the mini-batch order, so the per-seed difference
    removes most of the seed-to-seed variation. Returns, per activation, the differences (in accuracy
    points), their mean, sample standard deviation and the paired t statistic ``mean / (sd / sqrt(n))``
    (``None`` with one seed or zero spread).
    """
    out = []
    for act in dict.fromkeys(r["activation"] for r in group):
        sh = next((r for r in group if r["activation"] == act and r["method"] == "ftprop-softhinge"), None)
        ss = next((r for r in group if r["activation"] == act and r["method"] == "sste"), None)
        if sh is None or ss is None:
            continue
        d = 100 * (np.asarray(sh["test_acc"]) - np.asarray(ss["test_acc"]))
        sd = float(np.std(d, ddof=1)) if len(d) > 1 else None
        t = float(d.mean() / (sd / np.sqrt(len(d)))) if sd else None
        out.append({"activation": act, "diffs": d.tolist(), "mean": float(d.mean()), "sd": sd, "t": t})
    return out


def format_tables(rows: list[dict], exact: list[dict]) -> str:
    """Markdown tables of the results."""
    lines = []
    names = {
        "mlp": "MLP",
        "mlp-bn": "MLP with batch-norm before the activations",
        "convnet4": "convnet4",
        "convnet4-paper": "convnet4-paper (the authors' ConvNet4 layout)",
    }
    for (dataset, arch), group in itertools.groupby(rows, key=lambda r: (r["dataset"], r["arch"])):
        group = list(group)
        g0 = group[0]
        selected = all(r["selected"] for r in group)
        if selected:
            how = "per-row (loss, Adam lr) selected on the validation split"
        else:
            loss = "MSE to one-hot" if g0["loss"] == "mse" else "cross-entropy"
            how = f"Adam lr {g0['lr']:g}, {loss} for every row"
        sched = schedule_options(g0.get("schedule", "constant"), g0["epochs"])
        if sched:
            after = " and ".join(str(m) for m in sched["lr_decay_epochs"])
            how += (
                f"; weight decay {sched['weight_decay']:g}, step x{sched['lr_decay']:g} after epochs {after}"
            )
        else:
            how += f"; {SCHEDULES['constant']}"
        lines += [
            f"**{dataset}, {names.get(arch, arch)}** ({g0['epochs']} epochs, {g0['seeds']} seeds; batch {BATCH}; "
            f"{how})",
            "",
            "| activation / training | selected loss, lr | validation (%) | test accuracy (%) | s / epoch | "
            "× ReLU | × STE |"
            if selected
            else "| activation / training | test accuracy (%) | s / epoch | × ReLU | × STE |",
            "|---|---|---|---|---|---|---|" if selected else "|---|---|---|---|---|",
        ]
        for r in group:
            ste = f"{r['ratio_ste']:.2f}" if r["ratio_ste"] is not None else "–"
            relu = f"{r['ratio_relu']:.2f}" if r["ratio_relu"] is not None else "–"
            sel = f"{r['loss']}, {r['lr']:g} | {100 * r['val_acc']:.2f} | " if selected else ""
            lines.append(
                f"| {r['row']} | {sel}{100 * r['test_acc_mean']:.2f} ± {100 * r['test_acc_std']:.2f} | "
                f"{r['epoch_time']:.3f} | {relu} | {ste} |"
            )
        lines.append("")
        paired = paired_differences(group)
        if paired:
            lines += [
                "Soft hinge minus saturated STE, per seed (same initial weights and batch order; accuracy points):",
                "",
                "| activation | per seed | mean | sd | paired t |",
                "|---|---|---|---|---|",
            ]
            for d in paired:
                sd = f"{d['sd']:.2f}" if d["sd"] is not None else "–"
                t = f"{d['t']:+.2f}" if d["t"] is not None else "–"
                per_seed = ", ".join(f"{v:+.2f}" for v in d["diffs"])
                lines.append(f"| {d['activation']} | {per_seed} | {d['mean']:+.2f} | {sd} | {t} |")
            lines.append("")
        if selected:
            settings = list(g0["val_grid"])
            lines += [
                f"Validation accuracy (%) of every grid setting (mean over the selection seeds; "
                f"{dataset}, {names.get(arch, arch)}; **bold** = selected):",
                "",
                "| activation / training | " + " | ".join(settings) + " |",
                "|---|" + "---|" * len(settings),
            ]
            for r in group:
                pick = f"{r['loss']} {r['lr']:g}"
                cells = [
                    f"**{100 * v:.2f}**" if k == pick else f"{100 * v:.2f}" for k, v in r["val_grid"].items()
                ]
                lines.append(f"| {r['row']} | " + " | ".join(cells) + " |")
            lines.append("")
    if exact:
        lines += [
            "**Exact FTPROP** (`ftprop-exact`: flip search on the hidden targets + convex per-unit fits; "
            "30 epochs max; full training set)",
            "",
            "| problem | network | runs reaching 100% train accuracy | mean best train accuracy (%) | "
            "median epochs to 100% | s / run |",
            "|---|---|---|---|---|---|",
        ]
        for r in exact:
            med = f"{r['median_epochs_to_100']:.0f}" if r["median_epochs_to_100"] is not None else "–"
            lines.append(
                f"| {r['problem']} | {r['network']} | {r['solved']}/{r['seeds']} | "
                f"{100 * r['best_train_acc_mean']:.1f} | {med} | {r['time_per_run']:.2f} |"
            )
        lines.append("")
    return "\n".join(lines)


def _floats(text: str, name: str, parser) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        parser.error(f"{name}: expected comma-separated numbers, got {text!r}")
    if not values or any(not v > 0 for v in values):
        parser.error(f"{name}: expected positive numbers, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point (see the module docstring)."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="2 seeds and a few epochs (smoke run, ~1 min)")
    p.add_argument("--seeds", type=int, default=None, help="number of reported seeds (default 5, quick 2)")
    p.add_argument(
        "--archs",
        default=",".join(DEFAULT_ARCHS),
        help=f"comma-separated, from {', '.join(ARCHS)} (default {','.join(DEFAULT_ARCHS)})",
    )
    p.add_argument("--epochs-mlp", type=int, default=None, help="default 30 (quick 6; MNIST/CIFAR 10)")
    p.add_argument("--epochs-conv", type=int, default=None, help="default 15 (quick 3; MNIST/CIFAR 5)")
    p.add_argument(
        "--no-select",
        action="store_true",
        help="no validation selection: every row uses --lr and --loss",
    )
    p.add_argument(
        "--select-seeds",
        type=int,
        default=None,
        help="seeds per grid setting in the selection (default 2, quick 1)",
    )
    p.add_argument("--lrs", default=",".join(f"{v:g}" for v in LRS), help="selection grid of Adam step sizes")
    p.add_argument("--losses", default=",".join(LOSSES), help="selection grid of losses (mse, ce)")
    p.add_argument(
        "--val-fraction", type=float, default=VAL_FRACTION, help="validation share of the training data"
    )
    p.add_argument("--lr", type=float, default=LR, help=f"Adam step size with --no-select (default {LR:g})")
    p.add_argument(
        "--loss", choices=LOSSES, default="mse", help="last-layer loss with --no-select (default mse)"
    )
    p.add_argument(
        "--schedule",
        choices=tuple(SCHEDULES),
        default="paper",
        help="; ".join(f"{k}: {v}" for k, v in SCHEDULES.items()) + " (default paper)",
    )
    p.add_argument("--mnist", metavar="DIR", help="MNIST IDX files (liftinv.datasets.load_mnist)")
    p.add_argument("--cifar10", metavar="DIR", help="CIFAR-10 python batches (liftinv.datasets.load_cifar10)")
    p.add_argument("--subset", type=int, default=10000, help="training images used from MNIST/CIFAR-10")
    p.add_argument("--no-digits", action="store_true", help="skip the 8x8 digits tables")
    p.add_argument("--no-exact", action="store_true", help="skip the exact-FTPROP parity table")
    p.add_argument("--json", metavar="PATH", help="write all results as JSON")
    p.add_argument(
        "--md",
        metavar="PATH",
        default=None,
        help="Markdown output (default benchmarks/results/hard_threshold.md; none with --quick)",
    )
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    n_seeds = args.seeds or (2 if args.quick else 5)
    if n_seeds < 1:
        p.error(f"--seeds must be >= 1, got {n_seeds}")
    n_select = args.select_seeds or (1 if args.quick else 2)
    if n_select < 1:
        p.error(f"--select-seeds must be >= 1, got {n_select}")
    if not args.lr > 0:
        p.error(f"--lr must be positive, got {args.lr}")
    if not 0 < args.val_fraction < 1:
        p.error(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    lrs = _floats(args.lrs, "--lrs", p)
    losses = tuple(v.strip() for v in args.losses.split(",") if v.strip())
    if not losses or any(v not in LOSSES for v in losses):
        p.error(f"--losses: expected a comma-separated subset of mse, ce, got {args.losses!r}")
    seeds = list(range(n_seeds))
    select_seeds = [SELECT_SEED0 + i for i in range(n_select)]
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    for a in archs:
        if a not in ARCHS:
            p.error(f"--archs: unknown architecture {a!r} (expected {', '.join(ARCHS)})")

    def epochs_for(arch, big):
        conv = arch.startswith("convnet")
        given = args.epochs_conv if conv else args.epochs_mlp
        if given is not None:
            return given
        if args.quick:
            return 3 if conv else 6
        if big:
            return 5 if conv else 10
        return 15 if conv else 30

    data = []
    if not args.no_digits:
        data.append(("digits", *load_digits_split(), False))
    for name in ("mnist", "cifar10"):
        directory = getattr(args, name)
        if directory:
            train, test = load_local(name, directory, args.subset)
            data.append((name, train, test, True))

    def log(s):
        print(s, flush=True)

    t_start = time.perf_counter()
    rows, timings = [], {}
    for name, train, test, big in data:
        for arch in archs:
            epochs = epochs_for(arch, big)
            log(f"{name} / {arch}: {len(train[0])} train, {len(test[0])} test images, {epochs} epochs")
            t0 = time.perf_counter()
            settings = None
            if not args.no_select:
                settings = select_settings(
                    name,
                    train,
                    arch,
                    epochs,
                    select_seeds,
                    lrs=lrs,
                    losses=losses,
                    val_fraction=args.val_fraction,
                    schedule=args.schedule,
                    log=log,
                )
            t1 = time.perf_counter()
            rows += run_table(
                name,
                train,
                test,
                arch,
                epochs,
                seeds,
                lr=args.lr,
                loss=args.loss,
                settings=settings,
                schedule=args.schedule,
                log=log,
            )
            timings[f"{name}/{arch}"] = {"selection": t1 - t0, "final": time.perf_counter() - t1}
    exact = (
        [] if args.no_exact else run_exact([0, 1] if args.quick else list(range(max(n_seeds, 5))), log=log)
    )
    total = time.perf_counter() - t_start

    table = format_tables(rows, exact)
    command = " ".join(argv if argv is not None else sys.argv[1:])
    if args.no_select:
        protocol = f"one shared setting for every row (Adam lr {args.lr:g}, {args.loss})"
    else:
        protocol = (
            f"per-row selection of (loss, Adam lr) over losses {{{', '.join(losses)}}} x lr "
            f"{{{', '.join(f'{v:g}' for v in lrs)}}} by mean validation accuracy "
            f"({len(select_seeds)} selection seeds {', '.join(map(str, select_seeds))}) on a stratified "
            f"{100 * args.val_fraction:g}% validation split of the training images (random_state=0), "
            f"trained on the other {100 * (1 - args.val_fraction):g}%; ties to the first setting in grid "
            "order; then every row is retrained with its setting on the full training set for the "
            f"reported seeds {', '.join(map(str, seeds))} and evaluated once on the test set (the test set "
            "is used for nothing else)"
        )
    header = (
        "Hard-threshold networks (FTPROP, Friesen & Domingos 2018). "
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, 1 thread; "
        f"total {total / 60:.1f} min. Command: `python benchmarks/hard_threshold.py {command}`".rstrip()
        + "\n\n"
        + f"Protocol: {protocol}. Optimiser: Adam, batch {BATCH}, {SCHEDULES[args.schedule]}.\n"
    )
    print()
    print(header)
    print(table)
    result = {
        "rows": rows,
        "exact": exact,
        "protocol": {
            "select": not args.no_select,
            "schedule": args.schedule,
            "lrs": list(lrs),
            "losses": list(losses),
            "select_seeds": select_seeds,
            "val_fraction": args.val_fraction,
            "seeds": seeds,
        },
        "seconds": timings,
        "total_seconds": total,
        "batch_size": BATCH,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "command": command,
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    md = args.md if args.md is not None else (None if args.quick else str(RESULTS / "hard_threshold.md"))
    if md:
        Path(md).parent.mkdir(parents=True, exist_ok=True)
        Path(md).write_text(header + "\n" + table)
        print(f"wrote {md}")
    return result


if __name__ == "__main__":
    main()
