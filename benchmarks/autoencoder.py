"""Sparse denoising autoencoder on noisy 8x8 digits: lifted Bregman (ISGM, BCD) against Adam.

After Wang & Benning, *Lifted Bregman Training of Neural Networks*, JMLR 24(232), 2023 (P1), sparse denoising
autoencoder experiment: an encoder layer with ReLU, a code layer with the soft-threshold activation
S_theta (the prox of theta|.|, so its lifted Bregman penalty promotes sparse codes) and a linear (identity)
output layer::

    x -> ReLU(W1 x + b1) -> S_theta(W2 h + b2) = code -> W3 code + b3

trained to map noisy digits (pixels / 16 plus Gaussian noise of standard deviation ``--sigma``, fixed seeded
noise) to the clean ones with the squared loss. Every method starts from the same seeded network. Reported:
test PSNR (mean over images, peak 1; mean +- std over seeds), the PSNR of the noisy input, the fraction of
zero code entries on the test set, and the training CPU time.

Usage::

    .venv/bin/python benchmarks/autoencoder.py            # 3 seeds (~2-4 min on 2 CPU cores)
    .venv/bin/python benchmarks/autoencoder.py --quick    # 1 seed, a quarter of the epochs
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
RESULTS = Path(__file__).resolve().parent / "results"

#: (label, method, epochs, options)
METHODS = [
    ("backprop-Adam", "backprop-adam", 60, {"batch_size": 64, "lr": 1e-3}),
    ("Bregman-ISGM", "bregman-isgm", 60, {"batch_size": 64}),
    ("Bregman-BCD", "bregman-bcd", 150, {}),
]


def autoencoder(seed: int, hidden: int = 128, code: int = 128, theta: float = 0.1) -> nn.Sequential:
    """64 -> hidden (ReLU) -> code (soft-threshold theta) -> 64 (identity), initialised from ``seed``."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, code), nn.Softshrink(theta), nn.Linear(code, 64)
    )


def noisy_digits(sigma: float, noise_seed: int = 123, split_seed: int = 0):
    """``(noisy_train, clean_train, noisy_test, clean_test)``: digits / 16, 30% held out, fixed noise."""
    from liftinv.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X = load_digits()[0].reshape(-1, 64)
    tr, te = train_test_split(torch.arange(X.shape[0]).numpy(), test_size=0.3, random_state=split_seed)
    Xtr, Xte = X[torch.as_tensor(tr)], X[torch.as_tensor(te)]
    g = torch.Generator().manual_seed(noise_seed)
    return (
        Xtr + sigma * torch.randn(Xtr.shape, generator=g),
        Xtr,
        Xte + sigma * torch.randn(Xte.shape, generator=g),
        Xte,
    )


def psnr(estimate, clean) -> float:
    """Mean over images of :func:`liftinv.metrics.psnr` (peak value 1, no clipping)."""
    from liftinv.metrics import psnr as psnr_per_image

    return float(psnr_per_image(estimate, clean).mean())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3, --quick: 1)")
    p.add_argument("--quick", action="store_true", help="1 seed and a quarter of the epochs")
    p.add_argument("--sigma", type=float, default=0.2, help="noise standard deviation (default 0.2)")
    p.add_argument("--theta", type=float, default=0.1, help="soft threshold of the code layer (default 0.1)")
    p.add_argument("--json", metavar="PATH", default=None)
    p.add_argument(
        "--out",
        metavar="PATH",
        default=str(RESULTS / "autoencoder.md"),
        help="markdown table (default benchmarks/results/autoencoder.md; '' to skip)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from liftinv.training import fit

    n_seeds = args.seeds or (1 if args.quick else 3)
    Ntr, Xtr, Nte, Xte = noisy_digits(args.sigma)
    base = psnr(Nte, Xte)
    print(
        f"noisy digits sigma={args.sigma}: {len(Xtr)} train / {len(Xte)} test, input PSNR {base:.2f} dB",
        file=sys.stderr,
    )
    records = []
    for seed in range(n_seeds):
        for label, method, epochs, opts in METHODS:
            epochs = max(2, epochs // 4) if args.quick else epochs
            model = autoencoder(seed, theta=args.theta)
            c0 = time.process_time()
            h = fit(
                model,
                (Ntr, Xtr),
                method=method,
                epochs=epochs,
                test=(Nte, Xte),
                metric="psnr",
                seed=seed,
                progress=False,
                **opts,
            )
            cpu = time.process_time() - c0
            with torch.no_grad():
                out = model(Nte)
                code = model[:4](Nte)
            rec = {
                "label": label,
                "method": method,
                "seed": seed,
                "epochs": epochs,
                "options": opts,
                "psnr": psnr(out, Xte),
                "sparsity": float((code == 0).float().mean()),
                "cpu": cpu,
                "wall": h.last["wall"],
                "curve": h["test_psnr"],
            }
            records.append(rec)
            print(
                f"  seed {seed} {label:14s} PSNR {rec['psnr']:.2f} dB  zero code {100 * rec['sparsity']:.1f}%  "
                f"cpu {cpu:.1f}s",
                file=sys.stderr,
                flush=True,
            )
    lines = [
        "| method | epochs | test PSNR (dB) | gain over noisy input (dB) | zero code entries (%) | training CPU (s) |",
        "|---|---:|---:|---:|---:|---:|",
        f"| noisy input | - | {base:.2f} | 0.00 | - | - |",
    ]
    for label, _method, _, _ in METHODS:
        rs = [r for r in records if r["label"] == label]
        ps = [r["psnr"] for r in rs]
        sd = statistics.stdev(ps) if len(ps) > 1 else 0.0
        lines.append(
            f"| {label} | {rs[0]['epochs']} | {statistics.mean(ps):.2f} ± {sd:.2f} | {statistics.mean(ps) - base:.2f} "
            f"| {100 * statistics.mean(r['sparsity'] for r in rs):.1f} | {statistics.mean(r['cpu'] for r in rs):.1f} |"
        )
    title = (
        f"### Sparse denoising autoencoder, 8x8 digits, sigma={args.sigma}, theta={args.theta}, {n_seeds} seeds, "
        f"{'quick' if args.quick else 'default'} settings"
    )
    table = title + "\n\n" + "\n".join(lines) + "\n"
    print(table)
    if args.out:
        given = list(argv if argv is not None else sys.argv[1:])
        if "--json" in given:  # the command line without the (local) JSON path
            i = given.index("--json")
            del given[i : i + 2]
        cmd = "python benchmarks/autoencoder.py " + " ".join(given)
        settings = "\n".join(
            f"- {label}: `method={method!r}`, options {opts or '{}'}" for label, method, _, opts in METHODS
        )
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            "# Sparse denoising autoencoder: lifted Bregman vs Adam\n\n"
            f"Generated by `{cmd.strip()}` on {time.strftime('%Y-%m-%d')} (torch {torch.__version__}, 1 thread, CPU)."
            "\n\nNetwork 64 -> 128 (ReLU) -> 128 (soft-threshold code) -> 64 (identity), squared loss from noisy "
            "to clean digits (pixels / 16, 30% held out, fixed Gaussian noise), after Wang & Benning, JMLR 2023. "
            "PSNR: mean over test images with peak 1; zero code entries: fraction of exact zeros of the code "
            "layer on the test set.\n\n" + table + "\nSettings:\n\n" + settings + "\n"
        )
        print(f"wrote {args.out}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps({"input_psnr": base, "records": records}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
