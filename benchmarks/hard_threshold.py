"""Hard-threshold networks: FTPROP-mb (soft hinge) against saturated STE, STE and full-precision ReLU.

Friesen & Domingos, *Deep Learning as a Mixed Convex-Combinatorial Optimization Problem*, ICLR 2018.
Networks (same shapes for every row, only the hidden activation and the training method change):

* ``mlp``: 64-128-128-10 (784-... on MNIST, 3072-256-256-10 on CIFAR-10);
* ``convnet4``: four 3x3 convolutions, each followed by batch-norm and the activation, with 2x2
  max-pooling of the pre-activations of every second one, then a linear classifier
  (:func:`liftinv.ftprop.convnet4`; widths 16/32 on 8x8 digits, 32/64 on MNIST and CIFAR-10), the paper's
  4-layer CIFAR convnet style scaled to small images.

Rows: sign units and the 2-bit staircase (qReLU, ``clamp(ceil(2z), 0, 3)/3``), each trained by FTPROP-mb
with the soft hinge (``ftprop-softhinge``), the saturated STE (``sste``) and the STE (``ste``); plus the
same network with ReLU and clipped ReLU trained by back-propagation (``backprop-adam``). Every row uses
Adam (lr 3e-3, mini-batches of 64) on MSE to one-hot targets, the same seeds and initial-weight draws
(lr 3e-3 is the best of 1e-3, 3e-3, 1e-2 for the ReLU reference on both networks; ``--lr``, ``--loss``).

Data: scikit-learn's 8x8 digits (pixels / 16, 30% held out, stratified split with ``random_state=0``);
MNIST (``--mnist DIR``, IDX files) and CIFAR-10 (``--cifar10 DIR``, python batches) when given, read by
:func:`liftinv.datasets.load_mnist` / :func:`liftinv.datasets.load_cifar10` (``--subset`` training images,
default 10000, and the full test set).

Columns: test accuracy after the last epoch (mean +- std over seeds), median wall time per training epoch
(from :class:`liftinv.training.History`, evaluation excluded), its ratio to the ReLU row's epoch time and
to the STE row of the same activation (per seed, then averaged). Timing: one torch thread; for every seed
the rows are interleaved epoch by epoch (each run continues from its checkpoint; ``fit`` resumes exactly),
so every row sees the same machine load.

Two small extra tables: the sensitivity of sign units to the step size and the loss (soft hinge vs
saturated STE, MLP; ``--no-sweep`` skips it), and exact FTPROP (``ftprop-exact``: target search + convex
per-unit fits) on n-bit parity, which no single perceptron can fit (``--no-exact`` skips it).

Usage::

    .venv/bin/python benchmarks/hard_threshold.py             # 5 seeds, digits (~5-8 min on 2 CPU cores)
    .venv/bin/python benchmarks/hard_threshold.py --quick     # 2 seeds, few epochs (~1 min)
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
LR, BATCH = 3e-3, 64


# ---------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------
def load_digits_split():
    """8x8 digits as ``[N, 1, 8, 8]`` floats in [0, 1]; 30% held out (stratified, ``random_state=0``)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    X = torch.tensor(d.data / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(d.target, dtype=torch.long)
    tr, te = train_test_split(np.arange(len(y)), test_size=0.3, random_state=0, stratify=d.target)
    return (X[tr], y[tr]), (X[te], y[te])


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
    from liftinv.ftprop import convnet4
    from liftinv.models import mlp

    c, h, w = shape
    if arch == "mlp":
        hidden = 128 if c == 1 else 256
        return mlp((c * h * w, hidden, hidden, 10), activation=activation)
    widths = (16, 32) if h <= 8 else (32, 64)
    return convnet4(activation, in_channels=c, image_size=h, n_classes=10, widths=widths)


# ---------------------------------------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------------------------------------
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
    rows_spec=ROWS,
    log=print,
) -> list[dict]:
    """Train every row for every seed; return one result dict per row.

    For each seed the rows are interleaved epoch by epoch (every row's run is continued from its
    checkpoint with :func:`liftinv.training.fit`, which resumes exactly), so all rows see the same machine
    load; the epoch times are those recorded by ``fit`` (training only).
    """
    import tempfile

    from liftinv.training import fit

    shape = tuple(train[0].shape[1:])
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
                    hists[label] = fit(
                        nets[label],
                        train,
                        test=test if epoch == epochs else None,
                        method=method,
                        epochs=epoch,
                        loss=loss,
                        seed=seed,
                        progress=False,
                        checkpoint=Path(tmp) / f"{dataset}-{arch}-{seed}-{i}.pt",
                        lr=lr,
                        batch_size=BATCH,
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

        rows.append(
            {
                "dataset": dataset,
                "arch": arch,
                "row": label,
                "activation": act,
                "method": method,
                "epochs": epochs,
                "seeds": len(seeds),
                "lr": lr,
                "loss": loss,
                "test_acc_mean": float(np.mean(acc[label])),
                "test_acc_std": float(np.std(acc[label])),
                "test_acc": acc[label],
                "epoch_time": float(np.mean(ep_time[label])),
                "ratio_relu": ratio(relu),
                "ratio_ste": ratio(ste),
            }
        )
    return rows


def run_sweep(train, test, seeds, epochs, log=print) -> list[dict]:
    """Sensitivity of sign units: soft hinge vs saturated STE over Adam step sizes and the two losses (MLP)."""
    rows_spec = [r for r in ROWS if r[1] == "sign" and r[2] in ("ftprop-softhinge", "sste")]
    out = []
    for loss in ("mse", "ce"):
        for lr in (1e-3, 3e-3, 1e-2):
            rows = run_table(
                "digits",
                train,
                test,
                "mlp",
                epochs,
                seeds,
                lr=lr,
                loss=loss,
                rows_spec=rows_spec,
                log=lambda s: None,
            )
            sh, ss = rows
            out.append(
                {
                    "loss": loss,
                    "lr": lr,
                    "softhinge": sh["test_acc_mean"],
                    "softhinge_std": sh["test_acc_std"],
                    "sste": ss["test_acc_mean"],
                    "sste_std": ss["test_acc_std"],
                    "epochs": epochs,
                    "seeds": len(seeds),
                }
            )
            log(
                f"  sweep mlp sign loss={loss} lr={lr:g}: soft hinge {100 * sh['test_acc_mean']:.2f}, "
                f"SSTE {100 * ss['test_acc_mean']:.2f}"
            )
    return out


def parity(n: int):
    X = torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)))
    return X, (X.sum(1) % 2).long()


def run_exact(seeds: list[int], log=print) -> list[dict]:
    """Exact FTPROP on n-bit parity (one hidden layer of 2n sign units) against a linear classifier."""
    from torch import nn

    from liftinv.ftprop import Sign
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
def format_tables(rows: list[dict], exact: list[dict], sweep: list[dict] | None = None) -> str:
    """Markdown tables of the results."""
    lines = []
    for (dataset, arch), group in itertools.groupby(rows, key=lambda r: (r["dataset"], r["arch"])):
        group = list(group)
        g0 = group[0]
        loss = "MSE to one-hot" if g0["loss"] == "mse" else "cross-entropy"
        lines += [
            f"**{dataset}, {arch}** ({g0['epochs']} epochs, {g0['seeds']} seeds; Adam lr {g0['lr']:g}, "
            f"batch {BATCH}, {loss})",
            "",
            "| activation / training | test accuracy (%) | s / epoch | × ReLU | × STE |",
            "|---|---|---|---|---|",
        ]
        for r in group:
            ste = f"{r['ratio_ste']:.2f}" if r["ratio_ste"] is not None else "–"
            relu = f"{r['ratio_relu']:.2f}" if r["ratio_relu"] is not None else "–"
            lines.append(
                f"| {r['row']} | {100 * r['test_acc_mean']:.2f} ± {100 * r['test_acc_std']:.2f} | "
                f"{r['epoch_time']:.3f} | {relu} | {ste} |"
            )
        lines.append("")
    if sweep:
        s0 = sweep[0]
        lines += [
            f"**Sensitivity, digits MLP with sign units** ({s0['epochs']} epochs, {s0['seeds']} seeds): test "
            "accuracy (%) of the soft hinge and the saturated STE for other Adam step sizes and losses",
            "",
            "| loss | lr | FTPROP soft hinge | saturated STE | difference |",
            "|---|---|---|---|---|",
        ]
        for r in sweep:
            lines.append(
                f"| {r['loss']} | {r['lr']:g} | {100 * r['softhinge']:.2f} ± {100 * r['softhinge_std']:.2f} | "
                f"{100 * r['sste']:.2f} ± {100 * r['sste_std']:.2f} | {100 * (r['softhinge'] - r['sste']):+.2f} |"
            )
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


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point (see the module docstring)."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="2 seeds and a few epochs (smoke run, ~1 min)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5, quick 2)")
    p.add_argument("--archs", default="mlp,convnet4", help="comma-separated: mlp, convnet4")
    p.add_argument("--epochs-mlp", type=int, default=None, help="default 30 (quick 6; MNIST/CIFAR 10)")
    p.add_argument("--epochs-conv", type=int, default=None, help="default 15 (quick 3; MNIST/CIFAR 5)")
    p.add_argument("--lr", type=float, default=LR, help=f"Adam step size of every row (default {LR:g})")
    p.add_argument("--loss", choices=("mse", "ce"), default="mse", help="last-layer loss (default mse)")
    p.add_argument("--mnist", metavar="DIR", help="MNIST IDX files (liftinv.datasets.load_mnist)")
    p.add_argument("--cifar10", metavar="DIR", help="CIFAR-10 python batches (liftinv.datasets.load_cifar10)")
    p.add_argument("--subset", type=int, default=10000, help="training images used from MNIST/CIFAR-10")
    p.add_argument("--no-digits", action="store_true", help="skip the 8x8 digits tables")
    p.add_argument("--no-exact", action="store_true", help="skip the exact-FTPROP parity table")
    p.add_argument(
        "--no-sweep", action="store_true", help="skip the sign soft-hinge vs SSTE sensitivity table (MLP)"
    )
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
    if not args.lr > 0:
        p.error(f"--lr must be positive, got {args.lr}")
    seeds = list(range(n_seeds))
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    for a in archs:
        if a not in ("mlp", "convnet4"):
            p.error(f"--archs: unknown architecture {a!r} (expected mlp, convnet4)")

    def epochs_for(arch, big):
        given = args.epochs_mlp if arch == "mlp" else args.epochs_conv
        if given is not None:
            return given
        if args.quick:
            return 6 if arch == "mlp" else 3
        if big:
            return 10 if arch == "mlp" else 5
        return 30 if arch == "mlp" else 15

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
    rows = []
    for name, train, test, big in data:
        for arch in archs:
            log(f"{name} / {arch}: {len(train[0])} train, {len(test[0])} test images")
            rows += run_table(
                name, train, test, arch, epochs_for(arch, big), seeds, lr=args.lr, loss=args.loss, log=log
            )
    sweep = []
    if not (args.no_sweep or args.quick or args.no_digits or "mlp" not in archs):
        train, test = load_digits_split()
        sweep = run_sweep(train, test, seeds, epochs_for("mlp", False), log=log)
    exact = (
        [] if args.no_exact else run_exact([0, 1] if args.quick else list(range(max(n_seeds, 5))), log=log)
    )
    total = time.perf_counter() - t_start

    table = format_tables(rows, exact, sweep)
    command = " ".join(argv if argv is not None else sys.argv[1:])
    header = (
        "Hard-threshold networks (FTPROP, Friesen & Domingos 2018). "
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, 1 thread; "
        f"total {total / 60:.1f} min. Command: `python benchmarks/hard_threshold.py {command}`".rstrip()
        + "\n"
    )
    print()
    print(header)
    print(table)
    result = {
        "rows": rows,
        "sweep": sweep,
        "exact": exact,
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
