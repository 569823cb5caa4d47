"""``liftinv demo``: train a learned unrolled network with lifted Bregman, then beat TV on a held-out image.

Example::

    liftinv demo --seed 0 --out demo.png

1. Builds the task (default: inpainting of 50 % random pixels, noise 0.01; ``--task deblur`` for Gaussian
   deblurring sigma = 2 px, ``--task denoise`` for Gaussian denoising 0.1) on 32x32 patches of bundled images
   (camera, moon, coins, text, page, clock, brick, gravel, random-ellipse phantoms);
2. trains an :class:`liftinv.models.UnrolledProxGradCNN` (K = 5 proximal-gradient iterations whose proximal
   step is a residual 4-layer CNN of width 32, starting from the gradient-regularised least-squares image)
   with lifted Bregman ISGM (states = every conv layer of every iteration for the current mini-batch);
3. reconstructs a held-out image (default ``chelsea``, 64x64, not used for training) with the trained
   network, the pseudo-inverse, the network's initial image and TV (alpha: the best of a grid *on this
   image*, an oracle advantage the network does not have), prints the PSNRs and writes the comparison figure.

About 1.5 minutes on one CPU core; deterministic for a given ``--seed``.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from liftinv.commands.help_format import DefaultsOnceHelpFormatter
from liftinv.commands.threads import add_threads_argument, use_threads

TV_ALPHAS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3)
DEMO_TASKS = ("inpaint", "deblur", "denoise")
#: the network of the demo (UnrolledProxGradCNN; the task adds its initial image, :data:`liftinv.unrolled.TASKS`)
DEMO_NETWORK = {"iterations": 5, "depth": 4, "width": 32}


def add_parser(subparsers: Any, name: str, help_: str) -> argparse.ArgumentParser:
    """Register the ``demo`` sub-command (``subparsers.add_parser(name, help=help_)``)."""
    p = subparsers.add_parser(
        name,
        help=help_,
        description="Train an unrolled proximal-gradient network with CNN proximal steps by lifted Bregman "
        "(ISGM) on patches of bundled images, then reconstruct a held-out image and compare with TV (best "
        "alpha on that image) and the pseudo-inverse.",
        formatter_class=DefaultsOnceHelpFormatter,
    )
    p.add_argument("--task", default="inpaint", choices=DEMO_TASKS, help="reconstruction task")
    p.add_argument("--seed", type=int, default=0, help="seed (patches, noise, weights, mini-batches)")
    p.add_argument("--out", default="demo.png", help="comparison figure (png, pdf, svg)")
    p.add_argument("--epochs", type=int, default=10, help="training epochs")
    p.add_argument("--n-train", type=int, default=256, help="number of 32x32 training patches")
    p.add_argument("--image", default="chelsea", help="held-out image (bundled name or file)")
    p.add_argument("--size", type=int, default=64, help="side of the held-out image")
    from liftinv.commands.train import method_help

    p.add_argument("--method", default="bregman-isgm", help=method_help())
    add_threads_argument(
        p,
        default=1,
        why="the README's figures and timings; more threads are faster but may change the last digits",
    )
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
    if args.task not in DEMO_TASKS:
        raise ValueError(f"--task: expected one of {', '.join(DEMO_TASKS)}, got {args.task!r}")
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

    # the held-out image is read before training, so a bad --image fails at once
    x = load_image(args.image, args.size)
    use_threads(args)
    start = time.perf_counter()
    task = TASKS[args.task]
    name = os.path.basename(str(args.image))
    if name in TRAIN_IMAGES:
        print(f"warning: {args.image!r} is one of the training images; the comparison is not held out")
    print(
        f"liftinv demo: {task.description}; training an unrolled proximal-gradient network with CNN proximal "
        f"steps (K = {DEMO_NETWORK['iterations']}, CNN depth {DEMO_NETWORK['depth']}, width "
        f"{DEMO_NETWORK['width']}) with {args.method} ({resolve_method(args.method)}) on {args.n_train} "
        f"patches 32x32, {args.epochs} epochs, seed {args.seed}"
    )
    seed_everything(args.seed)
    data = make_task_data(args.task, image_size=32, n_train=args.n_train, seed=args.seed)
    model, history, _ = train(
        args.task,
        "proxgrad-cnn",
        args.method,
        epochs=args.epochs,
        seed=args.seed,
        device=args.device,
        data=data,
        progress=not args.no_progress,
        model_kwargs={**DEMO_NETWORK, "seed": args.seed},
    )
    train_s = history.last["wall"]
    print(
        f"trained in {train_s:.1f} s; test PSNR on 32x32 crops of held-out images: "
        f"{history.last['test_psnr']:.2f} dB"
    )

    # held-out image at a larger size: the same operator rebuilt there, the same (convolutional) weights
    op = task.make_operator(args.size)
    y = op.measure(x, task.noise, generator=torch.Generator().manual_seed(10_000 + args.seed))
    net = model.with_operator(op).cpu()
    with torch.no_grad():
        x_net = net.reconstruct(y)
        x_init = net.initial_image(y)
        x_pinv = classical(y, op, "pinv").x
    tv = {a: classical(y, op, "tv", alpha=a, max_iter=300, progress=False).x for a in TV_ALPHAS}
    best_alpha = max(tv, key=lambda a: _psnr(tv[a], x))
    p_net, p_tv, p_pinv, p_init = (
        _psnr(x_net, x),
        _psnr(tv[best_alpha], x),
        _psnr(x_pinv, x),
        _psnr(x_init, x),
    )
    label = {
        "bregman-isgm": "lifted Bregman ISGM",
        "bregman-bcd": "lifted Bregman BCD",
        "mac": "MAC",
        "backprop": "backprop",
    }.get(args.method, args.method)
    init = {"smooth": "gradient-regularised LS", "adjoint": "A^T y"}.get(net.init, net.init)
    print(f"held-out image {args.image!r} {args.size}x{args.size} ({task.description}):")
    rows = [
        ("pseudo-inverse", p_pinv),
        (f"network's initial image ({init})", p_init),
        (f"TV (best alpha on this image: {best_alpha:g})", p_tv),
        (f"learned network ({label})", p_net),
    ]
    for text, value in rows:
        print(f"  {text:48s} PSNR {value:6.2f} dB")
    print(f"  learned network - TV: {p_net - p_tv:+.2f} dB")
    _figure(
        args.out,
        [x, y, x_init, tv[best_alpha], x_net],
        [
            f"truth ({args.image})",
            "measurement",
            f"initial image {p_init:.2f} dB",
            f"TV (alpha {best_alpha:g}) {p_tv:.2f} dB",
            f"learned, {label}\n{p_net:.2f} dB",
        ],
    )
    print(f"wrote {args.out}  (total {time.perf_counter() - start:.0f} s)")
    return 0
