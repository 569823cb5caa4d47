"""``liftinv train``: train an unrolled proximal network for deblur | ct | inpaint | denoise.

Example::

    liftinv train --task deblur --arch proxgrad --method bregman-isgm --epochs 20 --seed 0 \\
        --device cpu --out deblur.pt

Trains on patches of bundled images (or ``--images FOLDER``), prints the test PSNR of the network next to
its initialisation, and writes one model file (weights + configuration + operator description) for
``liftinv reconstruct --model deblur.pt`` / :func:`liftinv.unrolled.load_model`. A checkpoint
``<out>.ckpt`` is written after every epoch; rerunning the same command resumes from it (``--restart``
ignores it).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

TASK_NAMES = ("deblur", "ct", "inpaint", "denoise")
ARCH_NAMES = ("proxgrad", "dualfb")


def method_names() -> list[str]:
    """Every ``--method`` value: the short aliases, then the registered methods for unrolled networks."""
    from liftinv.training.registry import methods_for
    from liftinv.unrolled.train import METHOD_ALIASES

    return [*METHOD_ALIASES, *methods_for("unrolled")]


def method_help() -> str:
    """``--method`` help: the aliases and the registry's descriptions of the methods for unrolled networks."""
    from liftinv.training.registry import DESCRIPTIONS, methods_for
    from liftinv.unrolled.train import METHOD_ALIASES

    aliases = [f"{a} (= {m})" for a, m in METHOD_ALIASES.items()]
    names = [f"{n} ({DESCRIPTIONS[n]})" for n in methods_for("unrolled")]
    return "training method: " + "; ".join(aliases + names)


def add_parser(subparsers: Any, name: str, help_: str) -> argparse.ArgumentParser:
    """Register the ``train`` sub-command (``subparsers.add_parser(name, help=help_)``)."""
    p = subparsers.add_parser(
        name,
        help=help_,
        description="Train an unrolled proximal network (UnrolledProxGrad / UnrolledDualFB) by back-propagation, "
        "MAC or lifted Bregman (BCD / ISGM) on patches of bundled images, and save it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--task", default="deblur", help=f"task: {' | '.join(TASK_NAMES)}")
    p.add_argument("--arch", default="proxgrad", help=f"architecture: {' | '.join(ARCH_NAMES)}")
    p.add_argument("--method", default="bregman-isgm", help=method_help())
    p.add_argument("--epochs", type=int, default=20, help="training epochs")
    p.add_argument("--seed", type=int, default=0, help="seed (patches, noise, mini-batches)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:K")
    p.add_argument("--out", default="model.pt", help="output model file (checkpoint: <out>.ckpt)")
    p.add_argument("--image-size", type=int, default=32, help="side of the training patches / test crops")
    p.add_argument("--n-train", type=int, default=256, help="number of training patches")
    p.add_argument("--images", default=None, metavar="FOLDER", help="train/test on the images of this folder")
    p.add_argument("--iterations", type=int, default=None, help="unrolled iterations (layers)")
    p.add_argument("--channels", type=int, default=None, help="channels of the transforms")
    p.add_argument("--kernel-size", type=int, default=None, help="filter size (odd)")
    p.add_argument("--batch-size", type=int, default=None, help="mini-batch size")
    p.add_argument("--lr", type=float, default=None, help="learning rate / initial weight step")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def _validate(args: argparse.Namespace) -> None:
    if args.task not in TASK_NAMES:
        raise ValueError(f"--task: expected one of {', '.join(TASK_NAMES)}, got {args.task!r}")
    if args.arch not in ARCH_NAMES:
        raise ValueError(f"--arch: expected one of {', '.join(ARCH_NAMES)}, got {args.arch!r}")
    if args.method not in method_names():
        raise ValueError(f"--method: expected one of {', '.join(method_names())}, got {args.method!r}")
    if args.epochs < 0:
        raise ValueError(f"--epochs: expected an int >= 0, got {args.epochs}")
    if args.image_size < 8:
        raise ValueError(f"--image-size: expected an int >= 8, got {args.image_size}")
    if args.n_train < 1:
        raise ValueError(f"--n-train: expected a positive int, got {args.n_train}")
    for flag, v in (
        ("--iterations", args.iterations),
        ("--channels", args.channels),
        ("--batch-size", args.batch_size),
        ("--threads", args.threads),
    ):
        if v is not None and v < 1:
            raise ValueError(f"{flag}: expected a positive int, got {v}")
    if args.kernel_size is not None and (args.kernel_size < 1 or args.kernel_size % 2 == 0):
        raise ValueError(f"--kernel-size: expected an odd positive int, got {args.kernel_size}")
    if args.lr is not None and not args.lr > 0:
        raise ValueError(f"--lr: expected a number > 0, got {args.lr}")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise FileNotFoundError(f"--out: the folder {out_dir} does not exist")
    if args.images is not None and not os.path.isdir(args.images):
        raise FileNotFoundError(f"--images: {args.images} is not a folder")


def run(args: argparse.Namespace) -> int:
    """Run ``liftinv train``; returns 0 on success."""
    _validate(args)
    import torch

    from liftinv.metrics import psnr as psnr_per_image
    from liftinv.unrolled import make_task_data, resolve_method, save_model, train

    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoint = args.out + ".ckpt"
    if args.restart and os.path.exists(checkpoint):
        os.remove(checkpoint)
    model_kwargs = {
        k: v
        for k, v in (
            ("iterations", args.iterations),
            ("channels", args.channels),
            ("kernel_size", args.kernel_size),
        )
        if v is not None
    }
    options = {k: v for k, v in (("batch_size", args.batch_size), ("lr", args.lr)) if v is not None}
    data = make_task_data(
        args.task, image_size=args.image_size, n_train=args.n_train, seed=args.seed, image_folder=args.images
    )
    resumed = os.path.exists(checkpoint)
    start = time.perf_counter()
    model, history, data = train(
        args.task,
        args.arch,
        args.method,
        epochs=args.epochs,
        seed=args.seed,
        device=args.device,
        data=data,
        checkpoint=checkpoint,
        progress=not args.no_progress,
        model_kwargs=model_kwargs,
        **options,
    )
    seconds = time.perf_counter() - start
    y_test, x_test = data.test
    with torch.no_grad():
        dev = next(model.parameters()).device
        out = model.reconstruct(y_test.to(dev)).cpu()
    psnr = float(psnr_per_image(out.clamp(0, 1), x_test).mean())
    wall = history.last.get("wall", seconds) if len(history) else 0.0
    save_model(
        args.out,
        model,
        task=data.task,
        metadata={
            "method": resolve_method(args.method),
            "epochs": args.epochs,
            "seed": args.seed,
            "test_psnr": psnr,
            "train_seconds": wall,
            "n_train": args.n_train,
            "images": args.images,
        },
    )
    print(
        f"task:       {data.task.description}, {data.image_size}x{data.image_size}, "
        f"{len(data.train[1])} training patches, {len(x_test)} test crops"
    )
    print(f"model:      {args.arch} {model.config()}")
    print(
        f"training:   {args.method} ({resolve_method(args.method)}), {len(history)} epochs, "
        f"{wall:.1f} s{' (resumed from ' + checkpoint + ')' if resumed else ''}"
    )
    print(f"test PSNR:  {psnr:.2f} dB  (mean over test crops, reconstruction clipped to [0, 1])")
    print(f"wrote {args.out}")
    return 0
