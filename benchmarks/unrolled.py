"""Unrolled proximal networks for deblurring, CT, inpainting and denoising: lifted training vs back-propagation.

Per task (``liftinv.unrolled.TASKS``; 32x32 training patches of bundled images and random-ellipse phantoms,
test crops of *other* images: astronaut, chelsea, coffee and the Shepp-Logan phantom) the rows are

* ``pinv``: the operator's pseudo-inverse (truncated inverse filter, FBP, masking, identity);
* ``TV``: total-variation reconstruction (PDHG, 300 iterations), alpha tuned on 32 *training* patches over a
  grid, evaluated on the test crops;
* ``deepinv unfolded PGD``: ``deepinv.optim.PGD(unfold=True)`` with a small learned DnCNN prior (depth 5,
  16 features, ``pretrained=None``), trainable step and denoiser level, started from the same linear
  initial image as our networks, trained by back-propagation (Adam);
* ``ours``: the *same* :class:`liftinv.unrolled.UnrolledProxGrad` network (K = 8 iterations, 3x3 Parseval
  frames, learned steps and thresholds; task settings from ``TASKS``) trained from the same initialisation
  by back-propagation (Adam), by
  MAC (quadratic penalty, ISGM scheme), by lifted Bregman BCD (per-sample states kept across epochs) and by
  lifted Bregman ISGM (states from the forward pass per mini-batch, proximal term on the weights); lifted
  weight steps are Adam-preconditioned steps on the lifted (no sigma', one-layer-deep) gradient.

Columns: test PSNR and SSIM (mean over test crops; reconstruction clipped to [0, 1]; PSNR peak 1; SSIM from
``skimage.metrics.structural_similarity``, 7x7 window, data_range 1), PSNR on the natural-image and the
phantom crops separately, learned parameters, training wall time (training epochs only), ratio to the
back-propagation time of the same run, and peak memory (CPU: increase of the process' peak resident set
during training, after ``malloc_trim`` and a reset with /proc/self/clear_refs before each run; coarse: it
includes allocator slack; CUDA: ``max_memory_allocated``).

Timing: one torch thread (``--threads``), methods run one after the other in the same process; other jobs on
the machine make absolute times noisy, ratios are more stable.

Usage::

    .venv/bin/python benchmarks/unrolled.py              # all tasks, default sizes (< 20 min on this CPU)
    .venv/bin/python benchmarks/unrolled.py --quick      # smaller/faster (~4 min)
    .venv/bin/python benchmarks/unrolled.py --tasks deblur,ct --json out.json

Writes ``benchmarks/results/unrolled.md`` and ``benchmarks/results/unrolled.png`` (example reconstructions).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak_memory import PeakMemory  # noqa: E402

warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
warnings.filterwarnings("ignore", category=UserWarning, module="torch")
RESULTS = Path(__file__).resolve().parent / "results"

#: (row label, method for liftinv.unrolled.train)
OUR_METHODS = [
    ("ours, backprop (Adam)", "backprop"),
    ("ours, MAC (ISGM)", "mac"),
    ("ours, lifted Bregman BCD", "bregman-bcd"),
    ("ours, lifted Bregman ISGM", "bregman-isgm"),
]
TV_ALPHAS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.2)


# ---------------------------------------------------------------------------------------------------------
# metrics and memory
# ---------------------------------------------------------------------------------------------------------
def psnr_per_image(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """:func:`liftinv.metrics.psnr` of ``x`` clipped to [0, 1] (the image range), per image."""
    from liftinv.metrics import psnr

    return psnr(x.detach().cpu().clamp(0, 1), ref)


def psnr_summary(x_hat: torch.Tensor, data) -> dict:
    """Mean test PSNR over all crops, over the natural-image crops and over the phantom crops (None when a
    group is empty) of a :class:`liftinv.unrolled.TaskData`."""
    phantom = torch.tensor(["shepp" in n or "phantom" in n for n in data.test_names])
    p = psnr_per_image(x_hat, data.test[1])
    return {
        "psnr": float(p.mean()),
        "psnr_natural": float(p[~phantom].mean()) if (~phantom).any() else None,
        "psnr_phantom": float(p[phantom].mean()) if phantom.any() else None,
    }


def ssim_mean(x: torch.Tensor, ref: torch.Tensor) -> float:
    from skimage.metrics import structural_similarity

    xs = x.detach().cpu().clamp(0, 1).double().numpy()
    rs = ref.double().numpy()
    return float(
        sum(structural_similarity(a[0], b[0], data_range=1.0, win_size=7) for a, b in zip(xs, rs)) / len(xs)
    )


# ---------------------------------------------------------------------------------------------------------
# deepinv's unfolded PGD (baseline)
# ---------------------------------------------------------------------------------------------------------
class DeepinvUnfoldedPGD(nn.Module):
    """``deepinv.optim.PGD(unfold=True)`` with a small DnCNN prior, called as ``model(y)``.

    K proximal-gradient iterations ``x <- D(x - gamma A^T(Ax - y), sigma)`` with one learned DnCNN
    (weights shared by the iterations), learned ``gamma`` and ``sigma``; started from the same linear image
    ``x_0`` as the liftinv networks (``init_fn``).
    """

    def __init__(
        self, operator, init_fn, iterations: int = 5, depth: int = 5, features: int = 16, sigma: float = 0.02
    ):
        super().__init__()
        import deepinv as dinv
        from deepinv.optim import PGD
        from deepinv.optim.data_fidelity import L2
        from deepinv.optim.prior import PnP

        denoiser = dinv.models.DnCNN(in_channels=1, out_channels=1, depth=depth, nf=features, pretrained=None)
        step = 1.0 / max(float(operator.norm()) ** 2, 1e-12)
        self.pgd = PGD(
            data_fidelity=L2(),
            prior=PnP(denoiser=denoiser),
            stepsize=step,
            sigma_denoiser=sigma,
            max_iter=iterations,
            unfold=True,
            trainable_params=["stepsize", "g_param"],
        )
        self.init_fn = init_fn  # a module (OperatorAdapter-based), moved with the model
        object.__setattr__(self, "physics", operator)

    def forward(self, y):
        x0 = self.init_fn(y)
        return self.pgd(y, self.physics, init=x0)


class _InitImage(nn.Module):
    """The linear initial image of an unrolled network (shared with the deepinv baseline)."""

    def __init__(self, net):
        super().__init__()
        self.op = net.op
        object.__setattr__(self, "_net", net)

    def forward(self, y):
        return self._net._z(y).detach()


# ---------------------------------------------------------------------------------------------------------
# one task
# ---------------------------------------------------------------------------------------------------------
def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def tuned_tv(data, tv_iter: int = 300) -> tuple[float, torch.Tensor]:
    """TV reconstruction of the test measurements with alpha chosen on 32 *training* patches over
    :data:`TV_ALPHAS` (never on the test crops); returns ``(alpha, x_tv)``."""
    from liftinv.operators import reconstruct as classical

    def tv(y, a):
        return classical(y, data.operator, "tv", alpha=a, max_iter=tv_iter, progress=False).x

    y_val, x_val = data.train[0][:32], data.train[1][:32]
    best = max(TV_ALPHAS, key=lambda a: float(psnr_per_image(tv(y_val, a), x_val).mean()))
    return best, tv(data.test[0], best)


def run_task(task: str, args, device: torch.device) -> dict:
    from liftinv.operators import reconstruct as classical

    from liftinv.training import fit
    from liftinv.unrolled import build_model, get_task, make_task_data, train

    tk = get_task(task)
    data = make_task_data(task, image_size=args.size, n_train=args.n_train, seed=args.seed)
    y_test, x_test = data.test
    rows, examples = [], {}

    def add(label, x_hat, seconds=None, params=0, memory=None, extra=None):
        rows.append(
            {
                "method": label,
                **psnr_summary(x_hat, data),
                "ssim": ssim_mean(x_hat, x_test),
                "params": params,
                "train_s": seconds,
                "memory_mb": memory,
                **(extra or {}),
            }
        )
        examples[label] = x_hat.detach().cpu()
        print(
            f"  {task:8s} {label:28s} PSNR {rows[-1]['psnr']:6.2f}  SSIM {rows[-1]['ssim']:.3f}"
            + (f"  {seconds:6.1f} s" if seconds is not None else ""),
            flush=True,
        )

    with torch.no_grad():
        add("pinv", classical(y_test, data.operator, "pinv").x)
    best, x_tv = tuned_tv(data, args.tv_iter)
    add("TV", x_tv, extra={"alpha": best})

    arch_kw = dict(tk.arch_kwargs["proxgrad"])
    arch_kw.update(iterations=args.iterations)
    # deepinv's unfolded PGD with a small learned denoiser, back-propagation
    torch.manual_seed(args.seed)
    ref = build_model("proxgrad", data.operator, **arch_kw)
    baseline = DeepinvUnfoldedPGD(data.operator, _InitImage(ref), iterations=args.deepinv_iterations)
    with PeakMemory(device) as mem:
        h = fit(
            baseline,
            data.train,
            method="backprop-adam",
            epochs=args.epochs,
            test=None,
            seed=args.seed,
            device=device,
            progress=not args.no_progress,
            lr=3e-3,
            batch_size=32,
        )
    with torch.no_grad():
        baseline.eval()
        out = torch.cat([baseline(y_test[i : i + 64].to(device)).cpu() for i in range(0, len(y_test), 64)])
    add("deepinv unfolded PGD (backprop)", out, h.last["wall"], _n_params(baseline), mem.value)

    backprop_time = None
    for label, method in OUR_METHODS:
        with PeakMemory(device) as mem:
            model, h, _ = train(
                task,
                "proxgrad",
                method,
                epochs=args.epochs,
                seed=args.seed,
                device=device,
                data=data,
                progress=not args.no_progress,
                model_kwargs=arch_kw,
            )
        with torch.no_grad():
            out = model.reconstruct(y_test.to(device)).cpu()
        extra = {"parseval_error": model.parseval_error(), "fit_method": h.method}
        add(label, out, h.last["wall"], _n_params(model), mem.value, extra)
        if method == "backprop":
            backprop_time = h.last["wall"]
    init_net = build_model("proxgrad", data.operator, **arch_kw)
    with torch.no_grad():
        add("ours, untrained (initialisation)", init_net.reconstruct(y_test), None, _n_params(init_net))
    for r in rows:
        r["time_ratio"] = (r["train_s"] / backprop_time) if (r["train_s"] and backprop_time) else None
    return {
        "task": task,
        "description": tk.description,
        "alpha_tv": best,
        "rows": rows,
        "examples": examples,
        "data": data,
    }


# ---------------------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------------------
def _fmt(v, spec):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def table(result: dict) -> str:
    lines = [
        "| method | PSNR (dB) | SSIM | PSNR natural | PSNR phantom | params | train time (s) | time / backprop | peak mem (MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['method']} | {_fmt(r['psnr'], '.2f')} | {_fmt(r['ssim'], '.3f')} | {_fmt(r['psnr_natural'], '.2f')} "
            f"| {_fmt(r['psnr_phantom'], '.2f')} | {r['params'] or '-'} | {_fmt(r['train_s'], '.1f')} "
            f"| {_fmt(r['time_ratio'], '.2f')} | {_fmt(r['memory_mb'], '.0f')} |"
        )
    return "\n".join(lines)


def verdict(result: dict) -> str:
    by = {r["method"]: r for r in result["rows"]}
    bp, tv = by["ours, backprop (Adam)"], by["TV"]
    parts = []
    for name in ("ISGM", "BCD"):
        r = by[f"ours, lifted Bregman {name}"]
        gap = r["psnr"] - bp["psnr"]
        parts.append(
            f"lifted Bregman {name} - backprop = {gap:+.2f} dB ({'within' if gap >= -0.3 else 'NOT within'} "
            f"0.3 dB)"
        )
    best = max(by["ours, lifted Bregman ISGM"]["psnr"], by["ours, lifted Bregman BCD"]["psnr"])
    over_tv = best - tv["psnr"]
    parts.append(f"best lifted - TV = {over_tv:+.2f} dB ({'>=' if over_tv >= 1.0 else 'NOT >='} 1 dB)")
    return "; ".join(parts)


def figure(results: list[dict], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = [
        "truth",
        "pinv",
        "TV",
        "deepinv unfolded PGD (backprop)",
        "ours, backprop (Adam)",
        "ours, lifted Bregman ISGM",
    ]
    fig = Figure(figsize=(2.0 * len(cols), 2.2 * len(results)), layout="constrained")
    FigureCanvasAgg(fig)
    for r, res in enumerate(results):
        data = res["data"]
        names = data.test_names
        i = next((j for j, n in enumerate(names) if n.startswith("chelsea")), 0)
        truth = data.test[1]
        by = {row["method"]: row for row in res["rows"]}
        for c, col in enumerate(cols):
            ax = fig.add_subplot(len(results), len(cols), r * len(cols) + c + 1)
            img = truth[i] if col == "truth" else res["examples"][col][i]
            ax.imshow(img[0].clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == "truth":
                ax.set_ylabel(res["task"], fontsize=10)
                title = f"truth ({names[i]})"
            else:
                p = float(psnr_per_image(img[None], truth[i : i + 1]))
                title = f"{col.replace('ours, ', '').replace(' (backprop)', '')}\n{p:.2f} dB (mean {by[col]['psnr']:.2f})"
            ax.set_title(title, fontsize=7)
    fig.savefig(path, dpi=110)


def markdown(results: list[dict], args, device, seconds: float, figure_path: Path | None) -> str:
    out = [
        "# Unrolled proximal networks: lifted training vs back-propagation",
        "",
        f"Generated by `benchmarks/unrolled.py{' --quick' if args.quick else ''}` "
        f"(tasks {', '.join(r['task'] for r in results)}; {time.strftime('%Y-%m-%d')}; device {device}, "
        f"{args.threads} torch thread(s); total {seconds / 60:.1f} min).",
        "",
        f"Setup: {args.size}x{args.size} images; {args.n_train} training patches (camera, moon, coins, text, page, "
        "clock, brick, gravel, random-ellipse phantoms) and 12 test crops of other images (astronaut, chelsea, "
        "coffee: 'natural'; Shepp-Logan: 'phantom'). Network: `UnrolledProxGrad`, "
        f"K = {args.iterations} iterations, 3x3 Parseval frames (9 channels), learned steps and per-channel "
        f"thresholds, same linear initial image x_0 for every learned method; {args.epochs} epochs for every "
        "learned method, mini-batches of 32, seed "
        f"{args.seed}. Task-specific settings (`liftinv.unrolled.TASKS`: initial image x_0 = "
        "(A^T A + a grad^T grad)^-1 A^T y, preconditioned steps for deblur/CT) were chosen on training patches, "
        "TV alpha on 32 training patches; nothing was tuned on the test crops. "
        "Lifted methods (same network, same Adam-preconditioned weight steps on the lifted gradient, which needs "
        "no sigma' and no backward pass through the depth): ISGM = per mini-batch, states from the forward pass, "
        "1 top-down sweep of exact state steps, 1 weight step (with 1 inner round the proximal term on the "
        "weights vanishes at its anchor; 2-3 inner rounds measured worse: inpainting 28.92 / 27.92 dB vs 29.30); "
        "BCD = per-sample states kept across epochs, 3 rounds (sweep + weight step) per mini-batch; MAC = ISGM "
        "with the quadratic penalty 1/2||u - sigma(z)||^2. PSNR/SSIM: mean over test crops, reconstruction "
        "clipped to [0, 1], SSIM = skimage (7x7 window). Peak memory: increase of the process' peak resident "
        "set during training (coarse).",
        "",
    ]
    for res in results:
        out += [
            f"## {res['task']}: {res['description']}",
            "",
            f"TV alpha = {res['alpha_tv']:g}.",
            "",
            table(res),
            "",
            f"**Verdict:** {verdict(res)}.",
            "",
        ]
    if figure_path is not None:
        out += [f"![example reconstructions]({figure_path.name})", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="deblur,ct,inpaint,denoise", help="comma-separated tasks")
    p.add_argument("--quick", action="store_true", help="fewer patches and epochs (~4 min)")
    p.add_argument(
        "--epochs", type=int, default=None, help="epochs of every learned method (default 12, quick 4)"
    )
    p.add_argument("--n-train", type=int, default=None, help="training patches (default 256, quick 128)")
    p.add_argument("--size", type=int, default=32, help="patch / crop side")
    p.add_argument("--iterations", type=int, default=8, help="unrolled iterations K")
    p.add_argument("--deepinv-iterations", type=int, default=5, help="iterations of deepinv's unfolded PGD")
    p.add_argument("--tv-iter", type=int, default=300, help="PDHG iterations of TV")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None, metavar="PATH", help="write the results as JSON")
    p.add_argument("--out", default=str(RESULTS / "unrolled.md"), help="markdown output")
    p.add_argument("--figure", default=str(RESULTS / "unrolled.png"), help="PNG of example reconstructions")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    args.epochs = args.epochs or (4 if args.quick else 12)
    args.n_train = args.n_train or (128 if args.quick else 256)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("DEEPINV_CACHE_DIR", "/tmp/liftinv-deepinv-cache")
    from liftinv.training import resolve_device

    device = resolve_device(args.device)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    start = time.perf_counter()
    results = []
    for task in tasks:
        print(f"== {task}", flush=True)
        results.append(run_task(task, args, device))
    seconds = time.perf_counter() - start
    for res in results:
        print(f"\n## {res['task']}: {res['description']} (TV alpha {res['alpha_tv']:g})")
        print(table(res))
        print("verdict:", verdict(res))
    fig_path = Path(args.figure) if args.figure else None
    if fig_path is not None:
        fig_path.parent.mkdir(parents=True, exist_ok=True)
        figure(results, fig_path)
        print(f"wrote {fig_path}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(markdown(results, args, device, seconds, fig_path))
        print(f"wrote {args.out}")
    if args.json:
        payload = {
            "args": vars(args),
            "seconds": seconds,
            "results": [{k: v for k, v in r.items() if k not in ("examples", "data")} for r in results],
        }
        Path(args.json).write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.json}")
    print(f"total {seconds / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
