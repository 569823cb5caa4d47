"""``liftinv demo``: train a small unrolled network with lifted Bregman for deblurring, compare with TV and pinv.

Example::

    liftinv demo --seed 0 --out demo.png

1. Builds the deblurring task (Gaussian blur sigma = 2 px, noise 0.01) on 32x32 patches of bundled images
   (camera, moon, coins, text, page, clock, brick, gravel, random-ellipse phantoms);
2. trains an :class:`liftinv.unrolled.UnrolledProxGrad` network (K = 8 iterations in learned Parseval
   frames) with lifted Bregman ISGM (states = the iterates of every training patch);
3. reconstructs a held-out image (default ``chelsea``, 64x64, not used for training) with the trained
   network, the pseudo-inverse and TV (alpha: the best of a grid *on this image*, i.e. an optimistic TV),
   prints the three PSNRs and writes the comparison figure.

About 1-2 minutes on one CPU core; deterministic for a given ``--seed``.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

TV_ALPHAS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)


def add_parser(subparsers: Any, name: str, help_: str) -> argparse.ArgumentParser:
    """Register the ``demo`` sub-command (``subparsers.add_parser(name, help=help_)``)."""
    p = subparsers.add_parser(
        name,
        help=help_,
        description="Train a small unrolled proximal network with lifted Bregman (ISGM) for Gaussian deblurring "
        "on patches of bundled images, then reconstruct a held-out image and compare with TV and pinv.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--seed", type=int, default=0, help="seed (patches, noise, mini-batches)")
    p.add_argument("--out", default="demo.png", help="comparison figure (png, pdf, svg)")
    p.add_argument("--epochs", type=int, default=10, help="training epochs")
    p.add_argument("--n-train", type=int, default=256, help="number of 32x32 training patches")
    p.add_argument("--image", default="chelsea", help="held-out image (bundled name or file)")
    p.add_argument("--size", type=int, default=64, help="side of the held-out image")
    from liftinv.commands.train import method_help

    p.add_argument("--method", default="bregman-isgm", help=method_help())
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def _psnr(x, ref) -> float:
    """PSNR of one image clipped to [0, 1] (:func:`liftinv.metrics.psnr`)."""
    from liftinv.metrics import psnr

    return float(psnr(x.detach().cpu().clamp(0, 1), ref.cpu())[0])


def _figure(path: str, panels: list, titles: list[str]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.0 * len(panels), 3.9), layout="constrained")
    FigureCanvasAgg(fig)
    for i, (img, title) in enumerate(zip(panels, titles)):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.imshow(img[0, 0].detach().cpu().clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.savefig(path, dpi=120)


def run(args: argparse.Namespace) -> int:
    """Run ``liftinv demo``; returns 0 on success."""
    if args.epochs < 1:
        raise ValueError(f"--epochs: expected a positive int, got {args.epochs}")
    if args.n_train < 1:
        raise ValueError(f"--n-train: expected a positive int, got {args.n_train}")
    if args.size < 16:
        raise ValueError(f"--size: expected an image side >= 16, got {args.size}")
    from liftinv.commands.train import method_names

    if args.method not in method_names():
        raise ValueError(f"--method: expected one of {', '.join(method_names())}, got {args.method!r}")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise FileNotFoundError(f"--out: the folder {out_dir} does not exist")
    import torch

    from liftinv.datasets import load_image
    from liftinv.operators import reconstruct as classical
    from liftinv.training import seed_everything
    from liftinv.unrolled import TASKS, make_task_data, resolve_method, train
    from liftinv.unrolled.tasks import TRAIN_IMAGES

    torch.set_num_threads(max(1, args.threads))
    start = time.perf_counter()
    task = TASKS["deblur"]
    name = os.path.basename(str(args.image))
    if name in TRAIN_IMAGES:
        print(f"warning: {args.image!r} is one of the training images; the comparison is not held out")
    print(
        f"liftinv demo: {task.description}; training an unrolled proximal-gradient network "
        f"(8 iterations, learned Parseval frames) with {args.method} ({resolve_method(args.method)}) on "
        f"{args.n_train} patches 32x32, {args.epochs} epochs, seed {args.seed}"
    )
    seed_everything(args.seed)
    data = make_task_data("deblur", image_size=32, n_train=args.n_train, seed=args.seed)
    model, history, _ = train(
        "deblur",
        "proxgrad",
        args.method,
        epochs=args.epochs,
        seed=args.seed,
        device=args.device,
        data=data,
        progress=not args.no_progress,
    )
    train_s = history.last["wall"]
    print(
        f"trained in {train_s:.1f} s; test PSNR on 32x32 crops of held-out images: "
        f"{history.last['test_psnr']:.2f} dB"
    )

    # held-out image at a larger size: same blur, same network weights (convolutional)
    x = load_image(args.image, args.size)
    op = task.make_operator(args.size)
    y = op.measure(x, task.noise, generator=torch.Generator().manual_seed(10_000 + args.seed))
    net = model.with_operator(op).cpu()
    with torch.no_grad():
        x_net = net.reconstruct(y)
        x_pinv = classical(y, op, "pinv").x
    tv = {a: classical(y, op, "tv", alpha=a, max_iter=300, progress=False).x for a in TV_ALPHAS}
    best_alpha = max(tv, key=lambda a: _psnr(tv[a], x))
    p_net, p_tv, p_pinv = _psnr(x_net, x), _psnr(tv[best_alpha], x), _psnr(x_pinv, x)
    label = {
        "bregman-isgm": "lifted Bregman ISGM",
        "bregman-bcd": "lifted Bregman BCD",
        "mac": "MAC",
        "backprop": "backprop",
    }.get(args.method, args.method)
    print(f"held-out image {args.image!r} {args.size}x{args.size} (blur sigma 2, noise {task.noise}):")
    rows = [
        ("pinv (truncated inverse filter)", p_pinv),
        (f"TV (best alpha on this image: {best_alpha:g})", p_tv),
        (f"unrolled network ({label})", p_net),
    ]
    for text, value in rows:
        print(f"  {text:44s} PSNR {value:6.2f} dB")
    _figure(
        args.out,
        [x, y, x_pinv, tv[best_alpha], x_net],
        [
            f"truth ({args.image})",
            "blurred + noise",
            f"pinv {p_pinv:.2f} dB",
            f"TV (alpha {best_alpha:g}) {p_tv:.2f} dB",
            f"unrolled, {label}\n{p_net:.2f} dB",
        ],
    )
    print(f"wrote {args.out}  (total {time.perf_counter() - start:.0f} s)")
    return 0
