"""Capacity study of the unrolled networks: how far above tuned TV can the issue's architectures get?

Companion to ``benchmarks/unrolled.py``. For one or more tasks it trains, by back-propagation (Adam, the
quality reference of the lifted trainers), the default :class:`liftinv.unrolled.UnrolledProxGrad` (K = 8,
3x3 Parseval frames, 9 channels, 12 epochs) and variants that each enlarge one budget:

* larger filters (5x5 and 7x7 orthogonal transforms: 25 / 49 channels),
* overcomplete Parseval frames (3x3 with 27 channels, 5x5 with 50 channels),
* more iterations (K = 16),
* more training (40 epochs),
* the dual forward-backward architecture (:class:`liftinv.unrolled.UnrolledDualFB`, 16 and 64 channels),

and prints test PSNR (all crops, natural crops, phantom crops), training-patch PSNR (first 64 patches: to
tell under-fitting from over-fitting), parameters, training time and its ratio to the first network row's
time in the same run (the default network unless ``--variants`` drops it), beside TV with alpha tuned on
training patches (``benchmarks.unrolled.tuned_tv``). Data, seeds and test crops are those of ``benchmarks/unrolled.py``; nothing is tuned on the test crops.

Usage::

    .venv/bin/python benchmarks/unrolled_capacity.py                      # deblur (~6 min on this CPU)
    .venv/bin/python benchmarks/unrolled_capacity.py --tasks deblur,denoise --json out.json
    .venv/bin/python benchmarks/unrolled_capacity.py --quick              # 3 rows, 4 epochs (smoke run)
    .venv/bin/python benchmarks/unrolled_capacity.py --train-images phantoms --out phantoms.md

Writes ``benchmarks/results/unrolled_capacity.md`` (and the JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from unrolled import RESULTS, _n_params, psnr_per_image, tuned_tv  # noqa: E402

warnings.filterwarnings("ignore", category=UserWarning)

#: (label, architecture, model overrides, epochs multiplier); the first row is the reference
VARIANTS = [
    ("proxgrad K=8, 3x3, 9 ch (default)", "proxgrad", {}, 1),
    ("proxgrad 5x5, 25 ch", "proxgrad", {"kernel_size": 5}, 1),
    ("proxgrad 7x7, 49 ch", "proxgrad", {"kernel_size": 7}, 1),
    ("proxgrad 3x3, 27 ch (3x overcomplete)", "proxgrad", {"channels": 27}, 1),
    ("proxgrad 5x5, 50 ch (2x overcomplete)", "proxgrad", {"kernel_size": 5, "channels": 50}, 1),
    ("proxgrad K=16", "proxgrad", {"iterations": 16}, 1),
    ("proxgrad, 40 epochs", "proxgrad", {}, 40 / 12),
    ("dualfb K=8, 16 ch", "dualfb", {}, 1),
    ("dualfb K=8, 64 ch", "dualfb", {"channels": 64}, 1),
]
QUICK = [0, 1, 7]


def run_task(task: str, args) -> dict:
    from liftinv.unrolled import make_task_data, train

    train_images = args.train_images.split(",") if args.train_images else None
    data = make_task_data(
        task, image_size=args.size, n_train=args.n_train, seed=args.seed, train_images=train_images
    )
    y_test, x_test = data.test
    phantom = torch.tensor(["shepp" in n or "phantom" in n for n in data.test_names])
    y_fit, x_fit = data.train[0][:64], data.train[1][:64]
    rows = []

    def add(label, x_hat, train_psnr=None, params=None, seconds=None):
        p = psnr_per_image(x_hat, x_test)
        rows.append(
            {
                "variant": label,
                "psnr": float(p.mean()),
                "psnr_natural": float(p[~phantom].mean()),
                "psnr_phantom": float(p[phantom].mean()) if phantom.any() else None,
                "train_psnr": train_psnr,
                "params": params,
                "train_s": seconds,
            }
        )
        print(f"  {task:8s} {label:40s} PSNR {rows[-1]['psnr']:6.2f}", flush=True)

    alpha, x_tv = tuned_tv(data, args.tv_iter)
    add(f"TV (alpha {alpha:g}, tuned on training patches)", x_tv)
    if args.variants:
        chosen = [int(i) for i in args.variants.split(",")]
    else:
        chosen = QUICK if args.quick else range(len(VARIANTS))
    variants = [VARIANTS[i] for i in chosen]
    for label, arch, overrides, mult in variants:
        model, h, _ = train(
            task,
            arch,
            "backprop",
            epochs=max(1, round(args.epochs * mult)),
            seed=args.seed,
            data=data,
            progress=not args.no_progress,
            model_kwargs=overrides,
        )
        with torch.no_grad():
            out = model.reconstruct(y_test)
            fit_psnr = float(psnr_per_image(model.reconstruct(y_fit), x_fit).mean())
        add(label, out, fit_psnr, _n_params(model), h.last["wall"])
    ref = rows[1]["train_s"]
    for r in rows:
        r["time_ratio"] = r["train_s"] / ref if r["train_s"] else None
        r["minus_tv"] = r["psnr"] - rows[0]["psnr"]
    return {"task": task, "alpha_tv": alpha, "rows": rows}


def _f(v, spec):
    return "-" if v is None else format(v, spec)


def markdown(results, args, seconds) -> str:
    out = [
        "# Unrolled networks: capacity study against tuned TV",
        "",
        f"Generated by `benchmarks/unrolled_capacity.py --tasks {','.join(r['task'] for r in results)}"
        f"{' --quick' if args.quick else ''}"
        f"{' --train-images ' + args.train_images if args.train_images else ''}"
        f"{' --variants ' + args.variants if args.variants else ''}` (1 torch thread, CPU, total {seconds / 60:.1f} min). Every "
        f"network trained by back-propagation (Adam, lr 1e-2, batch 32, {args.epochs} epochs unless stated), "
        f"{args.n_train} training patches of {args.size}x{args.size}, same data and test crops as "
        "`benchmarks/unrolled.py` (9 natural crops of astronaut/chelsea/coffee, 3 Shepp-Logan crops). "
        "'train PSNR' is measured on the first 64 training patches."
        + (f" Training patches from {args.train_images} only." if args.train_images else ""),
        "",
    ]
    for res in results:
        out += [
            f"## {res['task']}",
            "",
            "| variant | PSNR (dB) | − TV | natural | phantom | train PSNR | params | time (s) | × first net |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in res["rows"]:
            out.append(
                f"| {r['variant']} | {r['psnr']:.2f} | {r['minus_tv']:+.2f} | {r['psnr_natural']:.2f} | "
                f"{_f(r['psnr_phantom'], '.2f')} | {_f(r['train_psnr'], '.2f')} | {_f(r['params'], 'd')} | "
                f"{_f(r['train_s'], '.1f')} | {_f(r['time_ratio'], '.2f')} |"
            )
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="deblur", help="comma-separated tasks (deblur, ct, inpaint, denoise)")
    p.add_argument("--quick", action="store_true", help="3 variants, 4 epochs, 64 patches (smoke run)")
    p.add_argument(
        "--variants", default=None, help="comma-separated indices into VARIANTS (default all; quick 0,1,7)"
    )
    p.add_argument("--epochs", type=int, default=None, help="reference epochs (default 12, quick 4)")
    p.add_argument("--n-train", type=int, default=None, help="training patches (default 256, quick 64)")
    p.add_argument("--size", type=int, default=32)
    p.add_argument(
        "--train-images",
        default=None,
        help="comma-separated bundled training images (default liftinv.unrolled.TRAIN_IMAGES); e.g. "
        "'phantoms' asks whether the network can match TV on the Shepp-Logan crops when trained on phantoms only",
    )
    p.add_argument("--tv-iter", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, metavar="PATH")
    p.add_argument("--out", default=str(RESULTS / "unrolled_capacity.md"))
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    args.epochs = args.epochs or (4 if args.quick else 12)
    args.n_train = args.n_train or (64 if args.quick else 256)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("DEEPINV_CACHE_DIR", "/tmp/liftinv-deepinv-cache")
    start = time.perf_counter()
    results = []
    for task in [t.strip() for t in args.tasks.split(",") if t.strip()]:
        print(f"== {task}", flush=True)
        results.append(run_task(task, args))
    seconds = time.perf_counter() - start
    md = markdown(results, args, seconds)
    print(md)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(md + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
