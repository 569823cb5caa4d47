"""Classification benchmark: lifted solvers against back-propagation on the same network and loss.

MLP 64-128-128-10 with ReLU on scikit-learn's 8x8 digits (pixels / 16, 30% held out, stratified split with a
fixed seed), and on MNIST (MLP 784-128-128-10) when ``--mnist DIR`` points to the IDX files. Every method
trains the same initial network (seeded per run) with MSE to one-hot targets (``--loss ce`` for
cross-entropy; DESIGN sec. 4: MSE was better for every method). Rows:

backprop-SGD, backprop-Adam (mini-batch 64), MAC-BCD (Carreira-Perpinan & Wang 2014), Fenchel-BCD (Gu, Askari &
El Ghaoui 2020), Bregman-BCD, Bregman-accelerated, Bregman-adaptive and Bregman-ISGM (Wang & Benning, JMLR 2023;
Wang et al., arXiv 2510.09796).

Columns: test accuracy (mean +- std over seeds), final training objective (the method's own: lifted
objective for lifted methods, mean mini-batch loss for back-propagation), nested training loss (the same
quantity for every method), wall time of the training epochs, epoch-time ratio to backprop-Adam, time to
reach 95% test accuracy, and peak memory.

Timing: one torch thread; the runs of one seed are interleaved epoch by epoch (the run that is least far
along goes next), so every method sees the same machine load; the epoch-time ratio is the median epoch time
of the method over the median Adam epoch time in the same seed (then averaged over seeds). Back-propagation
epochs are mini-batch epochs (20 Adam steps on digits); a full-batch BCD epoch is one state sweep plus
``weight_steps`` weight steps over all samples, so compare time-to-accuracy too.

Peak memory: on CPU, the increase of the peak resident set size (VmHWM, reset just before the trainer is
built) over 2 training epochs in a fresh process (tracemalloc does not see torch's CPU allocator); on CUDA,
``torch.cuda.max_memory_allocated``.

Usage::

    .venv/bin/python benchmarks/classification.py            # 5 seeds (~6-10 min on 2 CPU cores)
    .venv/bin/python benchmarks/classification.py --quick    # 2 seeds, a quarter of the epochs
    .venv/bin/python benchmarks/classification.py --mnist ~/data/mnist --json results.json
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak_memory import reset_peak_rss, status_mb  # noqa: E402

warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Spec:
    """One row of the table: a method of :func:`liftinv.training.fit` with its options and epoch budgets."""

    label: str
    method: str
    epochs: int
    epochs_mnist: int
    options: dict = field(default_factory=dict)
    options_mnist: dict = field(default_factory=dict)


#: the benchmark's rows (digits settings; MNIST uses mini-batch shards for the BCD variants)
SPECS = [
    Spec("backprop-SGD", "backprop-sgd", 40, 10, {"lr": 0.1, "batch_size": 64}),
    Spec("backprop-Adam", "backprop-adam", 40, 10, {"lr": 1e-3, "batch_size": 64}),
    Spec("MAC-BCD", "mac-bcd", 100, 10, {}, {"batch_size": 1000}),
    Spec("Fenchel-BCD", "fenchel-bcd", 150, 10, {}, {"batch_size": 1000}),
    Spec("Bregman-BCD", "bregman-bcd", 150, 10, {}, {"batch_size": 1000}),
    Spec("Bregman-accelerated", "bregman-accel", 80, 10, {}, {"batch_size": 1000}),
    Spec("Bregman-adaptive", "bregman-adaptive", 40, 10, {"batch_size": 64}),
    Spec("Bregman-ISGM", "bregman-isgm", 20, 5, {"batch_size": 64}),
]
THRESHOLD = 0.95

NOTES = """Notes:

- Fenchel-BCD and Bregman-BCD give identical numbers: for ReLU the Fenchel lifted penalty *is* the Bregman
  penalty (DESIGN §3); the row is a consistency check of the two code paths.
- Bregman-adaptive (Adam on the lifted weight gradient after one top-down sweep from forward states) is by
  construction close to back-propagation with Adam; BCD, accelerated BCD and ISGM are the lifted references.
- Full-batch BCD epochs are cheap (1 sweep + 10 weight steps on all samples) but need more epochs; compare the
  time-to-95% column. MAC-BCD goes through the engine's generic autograd/backtracking block steps (its
  penalty is not convex in the weights), hence its higher epoch cost.
- Peak memory on CPU is coarse (resident-set increase, allocator slack included); the full-batch methods hold
  the states of all samples (here 1257 x 266 floats, ~1.3 MB) plus full-batch temporaries.
"""


# ---------------------------------------------------------------------------------------------------------
# data and models
# ---------------------------------------------------------------------------------------------------------
def load_data(mnist: str | None, split_seed: int = 0):
    """``(Xtr, Ytr, Xte, Yte, sizes)``: digits (30% held out, stratified, fixed seed) or MNIST's own split."""
    if mnist:
        from liftinv.datasets import load_mnist  # lazy: only with --mnist

        Xtr, Ytr = load_mnist(mnist, "train")
        Xte, Yte = load_mnist(mnist, "test")
        Xtr, Xte = Xtr.reshape(Xtr.shape[0], -1).float(), Xte.reshape(Xte.shape[0], -1).float()
        return Xtr, Ytr.long(), Xte, Yte.long(), (784, 128, 128, 10)
    from liftinv.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, Y = load_digits()
    X = X.reshape(len(X), -1)
    Xtr, Xte, Ytr, Yte = train_test_split(X, Y, test_size=0.3, random_state=split_seed, stratify=Y)
    return Xtr, Ytr, Xte, Yte, (64, 128, 128, 10)


def build(sizes, seed: int):
    """The benchmark network, initialised from ``seed`` (identical for every method of a seed)."""
    from liftinv.models import mlp
    from liftinv.training import seed_everything

    seed_everything(seed)
    return mlp(list(sizes), "relu", flatten=False)


# ---------------------------------------------------------------------------------------------------------
# one seed: all methods interleaved epoch by epoch
# ---------------------------------------------------------------------------------------------------------
def run_seed(specs, data, seed: int, loss: str, device: torch.device, mnist: bool, progress: bool = True):
    """Train every spec from the same initial network; return one record per spec."""
    from liftinv.training import (
        accuracy,
        epoch_generator,
        get_trainer,
        nested_loss,
        seed_everything,
        targets_for_loss,
    )

    Xtr, Ytr, Xte, Yte, sizes = data
    Xtr, Ytr, Xte, Yte = Xtr.to(device), Ytr.to(device), Xte.to(device), Yte.to(device)
    runs = []
    for spec in specs:
        model = build(sizes, seed).to(device)
        seed_everything(seed)
        opts = {**spec.options, **(spec.options_mnist if mnist else {})}
        trainer = get_trainer(spec.method)(model, Xtr, Ytr, loss=loss, seed=seed, **opts)
        runs.append(
            {
                "spec": spec,
                "model": model,
                "trainer": trainer,
                "epochs": spec.epochs_mnist if mnist else spec.epochs,
                "done": 0,
                "times": [],
                "cpu": [],
                "acc": [],
                "objective": None,
                "options": opts,
            }
        )
    total = sum(r["epochs"] for r in runs)
    count = 0
    while True:
        todo = [r for r in runs if r["done"] < r["epochs"]]
        if not todo:
            break
        r = min(todo, key=lambda r: (r["done"] + 1) / r["epochs"])
        e = r["done"]
        r["model"].train()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        parts = r["trainer"].run_epoch(e, epoch_generator(seed, e))
        if device.type == "cuda":
            torch.cuda.synchronize()
        r["times"].append(time.perf_counter() - t0)
        r["cpu"].append(time.process_time() - c0)
        r["model"].eval()
        r["acc"].append(accuracy(r["model"], Xte, Yte))
        r["objective"] = float(parts["objective"])
        r["done"] += 1
        count += 1
        if progress and count % 50 == 0:
            print(f"  seed {seed}: {count}/{total} epochs", file=sys.stderr, flush=True)
    out = []
    for r in runs:
        model = r["model"]
        with torch.no_grad():
            out_tr = model(Xtr)
            nested = float(
                nested_loss(out_tr, targets_for_loss(Ytr, out_tr.shape[1], loss, out_tr.dtype), loss)
            )
        wall = list(itertools_accumulate(r["times"]))
        clock = wall if device.type == "cuda" else list(itertools_accumulate(r["cpu"]))
        reach = next((clock[i] for i, a in enumerate(r["acc"]) if a >= THRESHOLD), None)
        out.append(
            {
                "label": r["spec"].label,
                "method": r["spec"].method,
                "options": r["options"],
                "seed": seed,
                "epochs": r["epochs"],
                "test_accuracy": r["acc"][-1],
                "best_test_accuracy": max(r["acc"]),
                "objective": r["objective"],
                "nested_train_loss": nested,
                "wall": wall[-1],
                "epoch_time": statistics.median(r["times"]),
                "time_to_threshold": reach,
                "epoch_cpu": statistics.median(r["cpu"]),
                "cpu": sum(r["cpu"]),
                "accuracy_curve": r["acc"],
            }
        )
    adam = next((o for o in out if o["method"] == "backprop-adam"), None)
    key = "epoch_time" if device.type == "cuda" else "epoch_cpu"
    for o in out:
        o["epoch_ratio"] = o[key] / adam[key] if adam else float("nan")
    if progress:
        for o in out:
            print(
                f"  seed {seed} {o['label']:20s} acc {100 * o['test_accuracy']:.2f}%  wall {o['wall']:.1f}s  "
                f"cpu {o['cpu']:.1f}s  epoch/Adam {o['epoch_ratio']:.2f}",
                file=sys.stderr,
                flush=True,
            )
    return out


def itertools_accumulate(xs):
    total = 0.0
    for x in xs:
        total += x
        yield total


# ---------------------------------------------------------------------------------------------------------
# peak memory (fresh process per method on CPU; CUDA allocator statistics on GPU)
# ---------------------------------------------------------------------------------------------------------
def _memory_child(spec: Spec, loss: str, mnist: str | None, device: str, epochs: int = 2) -> float:
    torch.set_num_threads(1)
    from liftinv.training import epoch_generator, get_trainer

    dev = torch.device(device)
    Xtr, Ytr, _, _, sizes = load_data(mnist)
    Xtr, Ytr = Xtr.to(dev), Ytr.to(dev)
    opts = {**spec.options, **(spec.options_mnist if mnist else {})}
    # Warm up (imports, kernels, optimiser and solver code paths) on a small copy before the baseline.
    warm = build(sizes, 1).to(dev)
    get_trainer(spec.method)(warm, Xtr[:128], Ytr[:128], loss=loss, seed=0, **opts).run_epoch(
        0, epoch_generator(0, 0)
    )
    del warm
    model = build(sizes, 0).to(dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        reset = reset_peak_rss()
        base = status_mb("VmRSS")
        if base is None:
            raise RuntimeError("VmRSS not in /proc/self/status")
    trainer = get_trainer(spec.method)(model, Xtr, Ytr, loss=loss, seed=0, **opts)
    for e in range(epochs):
        trainer.run_epoch(e, epoch_generator(0, e))
    if dev.type == "cuda":
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    peak = status_mb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return max(peak - base, 0.0)


def peak_memory(specs, loss: str, mnist: str | None, device: str) -> dict[str, float]:
    """Peak memory (MiB) of 2 training epochs per method."""
    if device.startswith("cuda"):
        return {s.label: _memory_child(s, loss, mnist, device) for s in specs}
    ctx = mp.get_context("spawn")
    out = {}
    for s in specs:
        with ctx.Pool(1) as pool:
            out[s.label] = pool.apply(_memory_child, (s, loss, mnist, device))
    return out


# ---------------------------------------------------------------------------------------------------------
# table
# ---------------------------------------------------------------------------------------------------------
def summarise(records, specs, memory):
    rows = []
    for spec in specs:
        rs = [r for r in records if r["label"] == spec.label]
        acc = [100 * r["test_accuracy"] for r in rs]
        reach = [r["time_to_threshold"] for r in rs]
        rows.append(
            {
                "label": spec.label,
                "method": spec.method,
                "epochs": rs[0]["epochs"],
                "options": rs[0]["options"],
                "acc_mean": statistics.mean(acc),
                "acc_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
                "objective": statistics.mean(r["objective"] for r in rs),
                "nested": statistics.mean(r["nested_train_loss"] for r in rs),
                "wall": statistics.mean(r["wall"] for r in rs),
                "cpu": statistics.mean(r["cpu"] for r in rs),
                "epoch_ms": 1e3 * statistics.mean(r["epoch_time"] for r in rs),
                "ratio": statistics.mean(r["epoch_ratio"] for r in rs),
                "reach": statistics.mean(reach) if all(t is not None for t in reach) else None,
                "reached": sum(t is not None for t in reach),
                "n": len(rs),
                "memory": memory.get(spec.label),
            }
        )
    return rows


def markdown(rows, title: str) -> str:
    head = (
        f"| method | epochs | test acc. (%) | train objective | nested train loss | wall (s) | CPU (s) "
        f"| epoch (ms) | epoch / Adam epoch | time to {100 * THRESHOLD:.0f}% (s) | peak mem. (MiB) |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for r in rows:
        reach = f"{r['reach']:.2f}" if r["reach"] is not None else f"- ({r['reached']}/{r['n']} runs)"
        mem = f"{r['memory']:.1f}" if r["memory"] is not None else "n/a"
        lines.append(
            f"| {r['label']} | {r['epochs']} | {r['acc_mean']:.2f} ± {r['acc_std']:.2f} | {r['objective']:.4f} "
            f"| {r['nested']:.4f} | {r['wall']:.2f} | {r['cpu']:.2f} | {r['epoch_ms']:.1f} | {r['ratio']:.2f} "
            f"| {reach} | {mem} |"
        )
    return f"### {title}\n\n" + head + "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5, --quick: 2)")
    p.add_argument("--quick", action="store_true", help="2 seeds and a quarter of the epochs")
    p.add_argument("--mnist", metavar="DIR", default=None, help="folder with the MNIST IDX files")
    p.add_argument("--loss", choices=("mse", "ce"), default="mse")
    p.add_argument("--device", default="cpu")
    p.add_argument("--methods", default=None, help="comma-separated subset of method names or labels")
    p.add_argument("--json", metavar="PATH", default=None, help="write all per-seed records as JSON")
    p.add_argument(
        "--out",
        metavar="PATH",
        default=str(RESULTS / "classification.md"),
        help="markdown table (default benchmarks/results/classification.md; '' to skip)",
    )
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    from liftinv.training import resolve_device

    device = resolve_device(args.device)
    specs = list(SPECS)
    if args.methods:
        wanted = {w.strip().lower() for w in args.methods.split(",")}
        specs = [s for s in specs if s.method in wanted or s.label.lower() in wanted]
        if not specs:
            p.error(f"--methods {args.methods!r} matches none of {[s.method for s in SPECS]}")
    if args.quick:
        specs = [
            Spec(
                s.label,
                s.method,
                max(2, s.epochs // 4),
                max(1, s.epochs_mnist // 4),
                s.options,
                s.options_mnist,
            )
            for s in specs
        ]
    n_seeds = args.seeds or (2 if args.quick else 5)
    data = load_data(args.mnist)
    name = "MNIST" if args.mnist else "8x8 digits"
    print(
        f"{name}: {len(data[0])} train / {len(data[2])} test samples, MLP {'-'.join(map(str, data[4]))} ReLU, "
        f"loss={args.loss}, {n_seeds} seeds, device={device}",
        file=sys.stderr,
    )
    t_start = time.perf_counter()
    records = []
    for seed in range(n_seeds):
        records += run_seed(specs, data, seed, args.loss, device, bool(args.mnist))
    memory = {} if args.no_memory else peak_memory(specs, args.loss, args.mnist, str(device))
    rows = summarise(records, specs, memory)
    elapsed = time.perf_counter() - t_start
    title = (
        f"{name}, MLP {'-'.join(map(str, data[4]))} ReLU, loss={args.loss}, {n_seeds} seeds, "
        f"{'quick' if args.quick else 'default'} settings"
    )
    table = markdown(rows, title)
    print(table)
    adam = next((r for r in rows if r["method"] == "backprop-adam"), None)
    summary = []
    for name, pool in (
        ("best lifted Bregman variant", [r for r in rows if r["method"].startswith("bregman")]),
        (
            "best lifted Bregman variant without Adam steps (BCD/accelerated/ISGM)",
            [r for r in rows if r["method"] in ("bregman-bcd", "bregman-accel", "bregman-isgm")],
        ),
    ):
        best = max(pool, key=lambda r: r["acc_mean"], default=None)
        if adam and best:
            summary.append(
                f"{name}: {best['label']} {best['acc_mean']:.2f}% vs backprop-Adam "
                f"{adam['acc_mean']:.2f}% (gap {adam['acc_mean'] - best['acc_mean']:.2f} points)"
            )
    bcd = next((r for r in rows if r["method"] == "bregman-bcd"), None)
    if adam and bcd:
        summary.append(f"Bregman-BCD epoch time / backprop-Adam epoch time: {bcd['ratio']:.2f}")
    summary.append(f"total benchmark time {elapsed:.0f} s")
    print("\n".join(summary))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        given = list(argv if argv is not None else sys.argv[1:])
        if "--json" in given:  # the command line without the (local) JSON path
            i = given.index("--json")
            del given[i : i + 2]
        cmd = "python benchmarks/classification.py " + " ".join(given)
        settings = "\n".join(
            f"- {r['label']}: `method={r['method']!r}`, {r['epochs']} epochs, options {r['options'] or '{}'}"
            for r in rows
        )
        out.write_text(
            f"# Classification benchmark: lifted training vs back-propagation\n\n"
            f"Generated by `{cmd.strip()}` on {time.strftime('%Y-%m-%d')} (torch {torch.__version__}, "
            f"{platform.machine()}, {os.cpu_count()} cores, 1 torch thread, device {device}).\n\n"
            + table
            + "\n"
            + "\n".join(f"- {s}" for s in summary)
            + "\n\n"
            "Columns: test accuracy mean ± std over seeds (final epoch); train objective = the method's own "
            "objective after the last epoch (lifted objective for lifted methods, mean mini-batch loss for "
            "back-propagation); nested train loss = the ordinary network's loss on the whole training set "
            "(same quantity for all methods); wall / CPU = sum of the training epochs' wall-clock / process CPU "
            "times (evaluation excluded; the machine is shared, so CPU time is the stable measure); epoch = "
            "median wall-clock epoch time; epoch / Adam epoch = ratio of median epoch CPU times (wall on CUDA) "
            "in the same seed, the runs of a seed interleaved epoch by epoch (back-propagation epochs are "
            "mini-batch epochs of batch 64; a full-batch BCD epoch is one state sweep plus its weight steps); "
            f"time to {100 * THRESHOLD:.0f}% = training CPU time (wall on CUDA) until the test accuracy first "
            "reaches it; peak memory = increase of the peak "
            "resident set size over 2 training epochs in a fresh process (CPU; includes allocator slack) or "
            "CUDA max allocated memory.\n\nSettings:\n\n" + settings + "\n\n" + NOTES
        )
        print(f"wrote {out}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"rows": rows, "records": records, "loss": args.loss, "dataset": name, "seeds": n_seeds},
                indent=1,
                default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o),
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
