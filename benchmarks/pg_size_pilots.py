"""Validation-only pilots of UnrolledProxGradCNN sizes on the learned benchmark's natural-image data (issue 12).

Trains one PG-CNN by back-propagation (Adam, constant step size) for a fixed number of epochs on the data of
``benchmarks/learned.py`` (default mode: fresh 40x40 Train400 patches, batch 16, 16 steps per epoch) and prints
its validation PSNR after every epoch. No test image is read: this chooses a network size on validation data
before any benchmark row uses it. One JSON per pilot (``--out-dir``): sizes, parameters, time per step and the
validation curve.

Usage::

    .venv/bin/python benchmarks/pg_size_pilots.py A --iterations 5 --depth 4 --width 32
    .venv/bin/python benchmarks/pg_size_pilots.py F --depth 7 --dilations 1,2,3,4,3,2,1
    .venv/bin/python benchmarks/pg_size_pilots.py G --circular     # circular padding in every conv
    .venv/bin/python benchmarks/pg_size_pilots.py U16 --prox unet --width 16   # pilot-only proximal steps
    .venv/bin/python benchmarks/pg_size_pilots.py M5 --prox memory --memory 5  # (pilot_architectures.py)

Figures of 2026-11-27 (deblurring, 50 epochs, lr 1e-3): README, "Learned reconstruction";
``benchmarks/results/pg_size_pilots.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from liftinv.commands.train import int_list

sys.path.insert(0, str(Path(__file__).resolve().parent))
import learned as bench  # noqa: E402
from pilot_architectures import PILOT_PROX  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", help="pilot name (its JSON file and checkpoint folder)")
    p.add_argument("--task", default="deblur", choices=("deblur", "inpaint", "denoise"))
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--dilations", type=int_list, default=None, help="one per conv, e.g. 1,2,4,1")
    p.add_argument("--circular", action="store_true", help="circular instead of zero padding in the CNNs")
    p.add_argument(
        "--prox",
        default="dncnn",
        choices=("dncnn", *PILOT_PROX),
        help="proximal step: the library's DnCNN-like CNN, or a pilot-only U-Net / memory CNN (backprop only)",
    )
    p.add_argument("--levels", type=int, default=2, help="--prox unet: downsamplings")
    p.add_argument("--convs", type=int, default=2, help="--prox unet: convs per level")
    p.add_argument("--memory", type=int, default=5, help="--prox memory: memory channels")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--minutes", type=float, default=None, help="training wall-time budget (default: none)")
    p.add_argument(
        "--method", default="backprop-adam", help="backprop-adam or a lifted method (bregman-isgm)"
    )
    p.add_argument("--frozen", action="store_true", help="lifted: frozen_preactivations=True")
    p.add_argument(
        "--inner", type=int, default=None, help="lifted: rounds per mini-batch (trainer default 1)"
    )
    p.add_argument("--sweeps", type=int, default=None, help="lifted: state sweeps per round (default 1)")
    p.add_argument("--patience", type=int, default=None, help="rollbacks as benchmarks/learned.py --patience")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out-dir", default="/tmp/pg_size_pilots")
    args = p.parse_args(argv)
    if args.prox != "dncnn" and (args.method != "backprop-adam" or args.dilations or args.circular):
        p.error(f"--prox {args.prox} is a backprop-only pilot without --dilations / --circular")
    if args.method != "backprop-adam":
        try:
            bench._lifted_variant(args.method + (f"+sweeps={args.sweeps}" if args.sweeps is not None else ""))
        except ValueError as err:
            p.error(f"--method / --sweeps: {err}")
    torch.set_num_threads(args.threads)
    from liftinv.models import UnrolledProxGradCNN

    cfg = dict(bench.IMAGE_MODES["default"])
    cfg["pg"] = dict(iterations=args.iterations, depth=args.depth, width=args.width)
    setup = bench.image_setup(args.task, cfg, args.seed, bench.parse_args(["--tasks", args.task]))
    setup.device = torch.device("cpu")

    def make():
        common = dict(iterations=args.iterations, init=bench.PG_INIT[args.task], seed=args.seed)
        if args.prox == "unet":
            return PILOT_PROX["unet"](
                setup.operator, width=args.width, levels=args.levels, convs=args.convs, **common
            )
        if args.prox == "memory":
            return PILOT_PROX["memory"](
                setup.operator, memory=args.memory, depth=args.depth, width=args.width, **common
            )
        net = UnrolledProxGradCNN(
            setup.operator,
            **cfg["pg"],
            init=bench.PG_INIT[args.task],
            seed=args.seed,
            dilations=args.dilations,
        )
        if args.circular:
            for m in net.modules():
                if isinstance(m, torch.nn.Conv2d):
                    m.padding_mode = "circular"
        return net

    out = Path(args.out_dir)
    ckpt = out / args.name
    ckpt.mkdir(parents=True, exist_ok=True)
    budget = float("inf") if args.minutes is None else 60 * args.minutes
    ctx = bench.Ctx(
        torch.device("cpu"), args.seed, ckpt, budget, args.epochs, (1.0,), 0.1, patience=args.patience
    )
    if args.method == "backprop-adam":
        spec = bench.RowSpec(
            args.name, args.method, make, args.lr, {"batch_size": cfg["batch"]}, reference=True
        )
    else:
        # the flags say every option: the benchmark's default-mode options (DEFAULT_LIFTED_OPTIONS, chosen by
        # these pilots) are not added, so a pilot's command line reproduces it
        variant = args.method + ("+frozen" if args.frozen else "")
        variant += f"+sweeps={args.sweeps}" if args.sweeps is not None else ""
        (spec,) = bench.lifted_specs(
            setup, [variant], make, "PG-CNN", bench.parse_args([]), lambda m: args.lr, mode_defaults=False
        )
        if args.inner is not None:
            spec.options["inner"] = args.inner
    model, info = bench.train_row(spec, setup, ctx)
    record = {
        "name": args.name,
        "task": args.task,
        "iterations": args.iterations,
        "depth": args.depth,
        "width": args.width,
        "dilations": args.dilations,
        "circular": args.circular,
        "prox": args.prox,
        **({"levels": args.levels, "convs": args.convs} if args.prox == "unet" else {}),
        **({"memory": args.memory} if args.prox == "memory" else {}),
        "method": args.method,
        "frozen": args.frozen,
        "inner": args.inner,
        "sweeps": args.sweeps,
        "minutes": args.minutes,
        "patience": args.patience,
        "rollbacks": info.get("rollbacks"),
        "params": sum(q.numel() for q in model.parameters()),
        "lr": args.lr,
        "val_best": info["val_psnr"],
        "best_epoch": info["best_epoch"],
        "train_s": info["train_s"],
        "s_per_step": info["s_per_step"],
        "curve": [[c["epoch"], round(c["seconds"], 1), round(c["val_psnr"], 3)] for c in info["curve"]],
    }
    (out / f"{args.name}.json").write_text(json.dumps(record))
    print(json.dumps({k: v for k, v in record.items() if k != "curve"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
