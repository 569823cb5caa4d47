"""Cost of a lifted training epoch against a back-propagation epoch on the learned CNN networks (issue 12).

Same network (same initial weights), same data, same batch size and the same mini-batch order for both
methods; one torch thread; a warm-up epoch of every method on throwaway copies first; the methods'
epochs alternate (A B, B A, ...) so that both see the same machine load; times are the median over the
epochs, ratios are to the back-propagation (Adam) epoch measured in the same run. PSNR is measured on
held-out images after the last epoch (and after every epoch in the JSON).

Cases (``--cases``): ``lpd-denoise``, ``lpd-ct``, ``proxgrad-cnn-denoise``, ``proxgrad-cnn-ct``: 32x32
random-ellipse phantoms; denoising with Gaussian noise sigma = 0.1; parallel-beam CT with 30 angles and
Gaussian noise of 5 % of the mean absolute sinogram value (LPD's setting, smaller). Networks:
``LearnedPrimalDual(iterations=5, width=32)`` and ``UnrolledProxGradCNN(iterations=5, depth=4, width=32)``
(``--width``, ``--iterations``).

Usage::

    python benchmarks/lifted_cost.py                       # 4 cases, 8 epochs (about 5 minutes)
    python benchmarks/lifted_cost.py --quick               # 2 cases, 3 epochs, fewer images
    python benchmarks/lifted_cost.py --lifted bregman-isgm bregman-isgm+frozen bregman-bcd --json out.json
    python benchmarks/lifted_cost.py --cases lpd-denoise --profile 25   # + the top hot spots per method
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from liftinv.datasets.streams import ellipse_set
from liftinv.operators import make_operator

import liftinv
from liftinv.models import build_model
from liftinv.training import get_trainer
from liftinv.training.loop import epoch_generator

CASES = {
    "lpd-denoise": ("lpd", "denoise"),
    "lpd-ct": ("lpd", "ct"),
    "proxgrad-cnn-denoise": ("proxgrad-cnn", "denoise"),
    "proxgrad-cnn-ct": ("proxgrad-cnn", "ct"),
}
BASELINE = "backprop-adam"


def make_data(task: str, n: int, size: int, seed: int):
    """Operator, measurements and clean phantoms (``n`` random-ellipse images, noise seeded by ``seed``)."""
    x = ellipse_set(n, size, seed=seed)
    gen = torch.Generator().manual_seed(1000 + seed)
    if task == "denoise":
        op = make_operator("denoising", size)
        y = x + 0.1 * torch.randn(x.shape, generator=gen)
    else:
        op = make_operator("tomography", size, angles=30)
        clean = op.A(x)
        y = clean + 0.05 * clean.abs().mean() * torch.randn(clean.shape, generator=gen)
    return op, y, x


def psnr(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Mean PSNR (dB) of images in [0, 1] (outputs clipped to [0, 1])."""
    return float(liftinv.metrics.psnr(out.clamp(0, 1), ref).mean())


def method_options(method: str, args) -> dict:
    """Trainer options: the baseline's lr and batch size; the lifted trainers' (``inner`` rounds; a
    ``+frozen`` suffix: ``frozen_preactivations=True``)."""
    if method == BASELINE:
        return {"lr": args.lr, "batch_size": args.batch_size}
    opts = {"lr": args.lifted_lr, "batch_size": args.batch_size, "inner": args.inner}
    if args.lambdas is not None:
        opts["lambdas"] = args.lambdas
    if method.endswith("+frozen"):
        opts["frozen_preactivations"] = True
    return opts


def make_trainer(method: str, net, Y, X, args):
    """The registered trainer of ``method`` (without its ``+frozen`` suffix) for ``net``."""
    return get_trainer(method.split("+")[0], net)(net, Y, X, **method_options(method, args))


def build(arch: str, op, args):
    kw = {"iterations": args.iterations, "width": args.width, "seed": args.seed}
    if arch == "proxgrad-cnn":
        kw["depth"] = 4
    return build_model(arch, op, **kw)


def profile_epoch(trainer, epoch: int, seed: int, rows: int) -> str:
    """torch.profiler table (self CPU time) of one epoch of ``trainer``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.run_epoch(epoch, epoch_generator(seed, epoch))
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def run_case(name: str, args, methods: list[str]) -> dict:
    arch, task = CASES[name]
    op, Y, X = make_data(task, args.train, args.size, args.seed)
    _, Yt, Xt = make_data(task, args.test, args.size, args.seed + 1)
    init_net = build(arch, op, args)
    nets = {m: copy.deepcopy(init_net) for m in methods}
    trainers = {m: make_trainer(m, nets[m], Y, X, args) for m in methods}
    # warm-up: one epoch of every method on two mini-batches, with throwaway copies
    for m in methods:
        n = copy.deepcopy(init_net)
        k = 2 * args.batch_size
        make_trainer(m, n, Y[:k], X[:k], args).run_epoch(0, epoch_generator(99, 0))
    times: dict[str, list[float]] = {m: [] for m in methods}
    curves: dict[str, list[float]] = {m: [] for m in methods}
    objectives: dict[str, list[float]] = {m: [] for m in methods}
    for e in range(args.epochs):
        for m in methods if e % 2 == 0 else methods[::-1]:  # alternate who goes first
            t0 = time.perf_counter()
            rec = trainers[m].run_epoch(e, epoch_generator(args.seed, e))
            times[m].append(time.perf_counter() - t0)
            objectives[m].append(float(rec["objective"]))
            curves[m].append(psnr(nets[m].reconstruct(Yt), Xt))
    base = statistics.median(times[BASELINE])
    rows = []
    for m in methods:
        med = statistics.median(times[m])
        paired = statistics.median(a / b for a, b in zip(times[m], times[BASELINE]))
        rows.append(
            {
                "network": arch,
                "task": task,
                "method": m,
                "epoch_s": med,
                "ratio": med / base,
                "ratio_paired_median": paired,
                "psnr": curves[m][-1],
                "psnr_curve": curves[m],
                "objective_curve": objectives[m],
                "epoch_times": times[m],
                "options": method_options(m, args),
            }
        )
    result = {
        "case": name,
        "init_psnr": psnr(init_net.reconstruct(Yt), Xt),
        "input_psnr": psnr(Yt, Xt) if task == "denoise" else None,
        "rows": rows,
    }
    if args.profile:
        result["profiles"] = {
            m: profile_epoch(trainers[m], args.epochs, args.seed, args.profile) for m in methods
        }
    return result


def table(results: list[dict], lifted: list[str]) -> str:
    head = "| network | task | method | backprop epoch (s) | lifted epoch (s) | ratio | PSNR backprop | PSNR lifted | diff |"
    lines = [head, "|" + "---|" * 9]
    for res in results:
        rows = {r["method"]: r for r in res["rows"]}
        b = rows[BASELINE]
        for m in lifted:
            r = rows[m]
            lines.append(
                f"| {r['network']} | {r['task']} | {m} | {b['epoch_s']:.2f} | {r['epoch_s']:.2f} | "
                f"{r['ratio']:.2f} | {b['psnr']:.2f} | {r['psnr']:.2f} | {r['psnr'] - b['psnr']:+.2f} |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    p.add_argument(
        "--lifted",
        nargs="+",
        default=["bregman-isgm"],
        help="lifted methods to time; a '+frozen' suffix sets frozen_preactivations=True",
    )
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--train", type=int, default=64, help="training images")
    p.add_argument("--test", type=int, default=16, help="held-out images")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of back-propagation")
    p.add_argument("--lifted-lr", type=float, default=1e-3, help="Adam learning rate of the lifted trainers")
    p.add_argument("--inner", type=int, default=1, help="rounds (sweep + weight step) per mini-batch")
    p.add_argument("--lambdas", type=float, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="2 cases, 3 epochs, 32 training images")
    p.add_argument(
        "--profile", type=int, default=0, metavar="ROWS", help="print the top hot spots per method"
    )
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.cases = args.cases if len(args.cases) < len(CASES) else ["lpd-denoise", "proxgrad-cnn-denoise"]
        args.epochs, args.train = 3, 32
    torch.set_num_threads(args.threads)
    methods = [BASELINE, *args.lifted]
    results = []
    t0 = time.perf_counter()
    for name in args.cases:
        res = run_case(name, args, methods)
        results.append(res)
        for r in res["rows"]:
            print(
                f"{name:22s} {r['method']:14s} epoch {r['epoch_s']:6.2f} s  x{r['ratio']:.2f}  "
                f"PSNR {r['psnr']:.2f} dB (init {res['init_psnr']:.2f})",
                flush=True,
            )
        for m, prof in res.get("profiles", {}).items():
            print(f"\n-- {name}, {m}: one epoch, top hot spots (self CPU)\n{prof}")
    print()
    print(
        f"{args.epochs} epochs, {args.train} training / {args.test} test images {args.size}x{args.size}, batch "
        f"{args.batch_size}, {args.threads} thread(s); median epoch times, ratio = lifted / backprop "
        "(same run, alternating epochs); PSNR after the last epoch"
    )
    print(table(results, args.lifted))
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.json is not None:
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        payload = {"config": config, "torch": torch.__version__, "results": results}
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
