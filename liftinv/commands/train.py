"""``liftinv train``: train an unrolled network for deblur | ct | inpaint | denoise.

Example::

    liftinv train --task denoise --arch proxgrad-cnn --method bregman-isgm --epochs 20 --seed 0 \\
        --images ../shared/data/Train400 --test-images ../shared/data/BSD68 --device cuda --out denoise.pt

Architectures come from :data:`liftinv.models.ARCHITECTURES`: the convex-prior networks ``proxgrad`` and
``dualfb``, and the learned CNN networks ``lpd`` (Learned Primal-Dual) and ``proxgrad-cnn``. Training data:
random patches (flips, 90 degree rotations) of the images of ``--images DIR`` (its last quarter held out for
testing unless ``--test-images DIR`` is given); for ``--task ct --arch lpd`` the random-ellipse phantoms of
Learned Primal-Dual (test: a fixed seeded ellipse set); otherwise the bundled images (the command says so).
Prints the test PSNR and writes one model file (weights + configuration + operator description) for
``liftinv reconstruct --model denoise.pt`` / :func:`liftinv.unrolled.load_model`; networks of blur,
inpainting and denoising reconstruct images of any size. A checkpoint ``<out>.ckpt`` is written after every
epoch, with the settings of the run next to it (``<out>.ckpt.json``); rerunning the same command resumes from
it, and a checkpoint of another run (task, operator, network, sizes, data, seed or method) is refused in one
line naming the differences (``--restart`` deletes it, once the arguments are checked, and starts over).
"""

from __future__ import annotations

import argparse
import inspect
import os
import time
from typing import Any

from liftinv.commands.distributed import add_distributed_arguments, check_distributed, run_on_ranks
from liftinv.commands.help_format import DefaultsOnceHelpFormatter
from liftinv.commands.threads import add_threads_argument, use_threads

TASK_NAMES = ("deblur", "ct", "inpaint", "denoise")

#: network flags: argparse dest -> (flag, constructor parameters it sets: the first alternative that the
#: architecture takes; ``--channels`` is the transform channels of proxgrad / dualfb and the primal and dual
#: memory channels of lpd)
NETWORK_FLAGS: dict[str, tuple[str, tuple[tuple[str, ...], ...]]] = {
    "iterations": ("--iterations", (("iterations",),)),
    "channels": ("--channels", (("channels",), ("primal_channels", "dual_channels"))),
    "width": ("--width", (("width",),)),
    "depth": ("--depth", (("depth",),)),
    "kernel_size": ("--kernel-size", (("kernel_size",),)),
    "data_step": ("--data-step", (("data_step",),)),
    "dilations": ("--dilations", (("dilations",),)),
}


def int_list(text: str) -> list[int]:
    """``"1,2,4,1"`` -> ``[1, 2, 4, 1]``: the argparse type of ``--dilations`` (here and in the benchmarks)."""
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated ints such as 1,2,4,1, got {text!r}"
        ) from None


#: the ``--arch`` names that ``--help`` lists: the keys of :data:`liftinv.models.ARCHITECTURES`, spelled out
#: here so that building the parser imports no torch (a test checks that they are the same);
#: :func:`arch_names` is the list that arguments are checked against
HELP_ARCH_NAMES = ("proxgrad", "dualfb", "lpd", "proxgrad-cnn")


def arch_names() -> list[str]:
    """Every ``--arch`` value: the names of :data:`liftinv.models.ARCHITECTURES` (imports torch).

    See Also
    --------
    HELP_ARCH_NAMES : the same names, without importing torch (for ``--help``).
    """
    from liftinv.models import ARCHITECTURES

    return list(ARCHITECTURES)


def method_names() -> list[str]:
    """Every ``--method`` value: the short aliases, then the registered methods for unrolled networks."""
    from liftinv.training.registry import METHOD_ALIASES, methods_for

    return [*METHOD_ALIASES, *methods_for("unrolled")]


def method_help() -> str:
    """``--method`` help: the aliases and the registry's descriptions of the methods for unrolled networks."""
    from liftinv.training.registry import DESCRIPTIONS, METHOD_ALIASES, methods_for

    aliases = [f"{a} (= {m})" for a, m in METHOD_ALIASES.items()]
    names = [f"{n} ({DESCRIPTIONS[n]})" for n in methods_for("unrolled")]
    return "training method: " + "; ".join(aliases + names)


def network_flags(arch: str) -> list[str]:
    """The network flags (:data:`NETWORK_FLAGS`) that apply to ``arch``."""
    from liftinv.models import ARCHITECTURES

    params = inspect.signature(ARCHITECTURES[arch]).parameters
    return [
        flag
        for flag, alternatives in NETWORK_FLAGS.values()
        if any(all(n in params for n in alt) for alt in alternatives)
    ]


def network_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Constructor arguments of ``--arch`` from the network flags given.

    Raises ``ValueError`` for a flag that does not apply to the architecture (the message lists those that
    do).
    """
    from liftinv.models import ARCHITECTURES

    params = inspect.signature(ARCHITECTURES[args.arch]).parameters
    kwargs: dict[str, Any] = {}
    for dest, (flag, alternatives) in NETWORK_FLAGS.items():
        value = getattr(args, dest)
        if value is None:
            continue
        names = next((alt for alt in alternatives if all(n in params for n in alt)), None)
        if names is None:
            raise ValueError(
                f"{flag}: does not apply to --arch {args.arch} (its network options: "
                f"{', '.join(network_flags(args.arch))})"
            )
        kwargs.update(dict.fromkeys(names, value))
    return kwargs


def add_parser(subparsers: Any, name: str, help_: str) -> argparse.ArgumentParser:
    """Register the ``train`` sub-command (``subparsers.add_parser(name, help=help_)``)."""
    p = subparsers.add_parser(
        name,
        help=help_,
        description="Train an unrolled network (convex-prior proxgrad / dualfb, or learned CNN lpd / "
        "proxgrad-cnn) by back-propagation, MAC or lifted Bregman (BCD / ISGM) on image patches (bundled, "
        "--images DIR) or random-ellipse phantoms (ct with lpd), and save it.",
        formatter_class=DefaultsOnceHelpFormatter,
    )
    p.add_argument("--task", default="deblur", help=f"task: {' | '.join(TASK_NAMES)}")
    p.add_argument("--arch", default="proxgrad", help=f"architecture: {' | '.join(HELP_ARCH_NAMES)}")
    p.add_argument("--method", default="bregman-isgm", help=method_help())
    p.add_argument("--epochs", type=int, default=20, help="training epochs")
    p.add_argument("--seed", type=int, default=0, help="seed (patches, phantoms, noise, mini-batches)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:K")
    p.add_argument("--out", default="model.pt", help="output model file (checkpoint: <out>.ckpt)")
    p.add_argument("--image-size", type=int, default=32, help="side of the training patches / test crops")
    p.add_argument("--n-train", type=int, default=256, help="number of training patches (or phantoms)")
    p.add_argument(
        "--images",
        default=None,
        metavar="DIR",
        help="train on random patches (flips, 90-degree rotations) of the images of this folder, at their "
        "size; without --test-images its last quarter is held out for testing (default: bundled images; "
        "ct with lpd: random-ellipse phantoms)",
    )
    p.add_argument(
        "--test-images",
        default=None,
        metavar="DIR",
        help="test on crops of the images of this folder (default: bundled images; ct with lpd: a fixed "
        "seeded set of ellipse phantoms)",
    )
    p.add_argument("--iterations", type=int, default=None, help="unrolled iterations (all architectures)")
    p.add_argument(
        "--channels",
        type=int,
        default=None,
        help="proxgrad, dualfb: channels of the transforms; lpd: primal and dual memory channels",
    )
    p.add_argument("--width", type=int, default=None, help="lpd, proxgrad-cnn: channels of the hidden convs")
    p.add_argument("--depth", type=int, default=None, help="proxgrad-cnn: convs per proximal CNN (>= 2)")
    p.add_argument("--kernel-size", type=int, default=None, help="filter size (odd)")
    p.add_argument(
        "--data-step",
        choices=("gradient", "prox"),
        default=None,
        help="proxgrad-cnn: a gradient step on the data term, or its proximal map (half-quadratic splitting; "
        "better for deblurring); default gradient",
    )
    p.add_argument(
        "--dilations",
        type=int_list,
        default=None,
        metavar="D1,D2,...",
        help="proxgrad-cnn: dilation of each conv of the proximal CNNs, one per conv (IRCNN's deblurring prior "
        "with --depth 7: 1,2,3,4,3,2,1); default all 1",
    )
    p.add_argument("--batch-size", type=int, default=None, help="mini-batch size")
    p.add_argument("--lr", type=float, default=None, help="learning rate / initial weight step")
    add_threads_argument(p)
    add_distributed_arguments(
        p,
        ("data",),
        "every rank builds the same data and network from --seed and trains on its part of each mini-batch "
        "(lifted ISGM / BCD / MAC, back-propagation through DistributedDataParallel); rank 0 prints and "
        "writes --out",
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="start over: delete an existing checkpoint <out>.ckpt (once the arguments are checked)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def _check_folder(flag: str, folder: str, minimum: int) -> None:
    from liftinv.datasets import IMAGE_EXTENSIONS, list_images

    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{flag}: {folder} is not a folder")
    found = len(list_images(folder, recursive=False))
    if found < minimum:
        need = "an image" if minimum == 1 else f"at least {minimum} images (train and held-out test)"
        raise ValueError(
            f"{flag}: expected {need} ({', '.join(IMAGE_EXTENSIONS)}, sub-folders are not read) in {folder}, "
            f"found {found}"
        )


#: bytes per pixel of the training pairs (float32 image and measurement)
_PAIR_BYTES_PER_PIXEL = 8


def _check_sizes(args: argparse.Namespace) -> None:
    """Refuse an ``--image-size`` above the operators' limit, or an ``--image-size`` / ``--n-train`` whose
    training pairs and operator would not fit in the memory available now (before any image is read)."""
    from liftinv.operators.registry import ALIASES, MAX_SIDE, available_memory, estimate_bytes, format_bytes
    from liftinv.unrolled.tasks import get_task

    side = args.image_size
    if side > MAX_SIDE:
        raise ValueError(f"--image-size: expected an int <= {MAX_SIDE}, got {side}")
    task = get_task(args.task)
    key = ALIASES.get(task.operator, task.operator)
    operator_bytes, what = estimate_bytes(key, (1, side, side), task.operator_kwargs)
    needed = operator_bytes + _PAIR_BYTES_PER_PIXEL * args.n_train * side * side
    free = available_memory()
    if free is not None and needed > free:
        raise ValueError(
            f"--image-size {side} with --n-train {args.n_train} would need at least {format_bytes(needed)} (the "
            f"training pairs; the operator: {what}); this machine has {format_bytes(free)} available"
        )


def _validate(args: argparse.Namespace) -> dict[str, Any]:
    """Check the arguments (before anything is read or written); returns the network flags' constructor
    arguments (the network checks their values when it is built: :func:`_model`)."""
    if args.task not in TASK_NAMES:
        raise ValueError(f"--task: expected one of {', '.join(TASK_NAMES)}, got {args.task!r}")
    if args.method not in method_names():  # the registry's names: no torch import yet
        raise ValueError(f"--method: expected one of {', '.join(method_names())}, got {args.method!r}")
    if args.arch not in arch_names():
        raise ValueError(f"--arch: expected one of {', '.join(arch_names())}, got {args.arch!r}")
    if args.epochs < 0:
        raise ValueError(f"--epochs: expected an int >= 0, got {args.epochs}")
    if args.image_size < 8:
        raise ValueError(f"--image-size: expected an int >= 8, got {args.image_size}")
    if args.n_train < 1:
        raise ValueError(f"--n-train: expected a positive int, got {args.n_train}")
    _check_sizes(args)
    for flag, v in (
        ("--iterations", args.iterations),
        ("--channels", args.channels),
        ("--width", args.width),
        ("--batch-size", args.batch_size),
    ):
        if v is not None and v < 1:
            raise ValueError(f"{flag}: expected a positive int, got {v}")
    if args.depth is not None and args.depth < 2:
        raise ValueError(f"--depth: expected an int >= 2, got {args.depth}")
    if args.kernel_size is not None and (args.kernel_size < 1 or args.kernel_size % 2 == 0):
        raise ValueError(f"--kernel-size: expected an odd positive int, got {args.kernel_size}")
    if args.lr is not None and not args.lr > 0:
        raise ValueError(f"--lr: expected a number > 0, got {args.lr}")
    if os.path.isdir(args.out):
        raise ValueError(f"--out: {args.out} is a folder; expected a model file name (e.g. model.pt)")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        what = "is a file, not a folder" if os.path.exists(out_dir) else "does not exist"
        raise FileNotFoundError(f"--out: the folder {out_dir} {what}")
    if args.images is not None:
        _check_folder("--images", args.images, 1 if args.test_images is not None else 2)
    if args.test_images is not None:
        _check_folder("--test-images", args.test_images, 1)
        if args.images is not None and os.path.samefile(args.images, args.test_images):
            raise ValueError(
                f"--test-images: expected another folder than --images ({args.images}): the test images must "
                "not be training images"
            )
    kwargs = network_kwargs(args)
    from liftinv.training import resolve_device

    try:
        resolve_device(args.device)
    except ValueError as exc:
        raise ValueError(f"--device: {exc}") from None
    return kwargs


def _model(args: argparse.Namespace, data, kwargs: dict[str, Any]):
    """The network for the task's operator: the task's defaults and the network flags (errors name them)."""
    from liftinv.unrolled import build_model

    try:  # the network's own checks, e.g. proxgrad's --channels >= kernel_size**2
        return build_model(args.arch, data.operator, **{**data.task.arch_kwargs.get(args.arch, {}), **kwargs})
    except ValueError as exc:
        given = [
            f"{f} {getattr(args, d)}" for d, (f, _) in NETWORK_FLAGS.items() if getattr(args, d) is not None
        ]
        raise ValueError(f"--arch {' '.join([args.arch, *given])}: {exc}") from None


_DATA_ARGS = {"train_images": "--images", "image_folder": "--images", "test_images": "--test-images"}


def _data(args: argparse.Namespace):
    """The task data of the command line (errors name the flags)."""
    from liftinv.unrolled import make_task_data
    from liftinv.unrolled.train import data_sources

    split = (
        args.images is not None and args.test_images is None
    )  # one folder: its last quarter is the test set
    sources = data_sources(
        args.task,
        args.arch,
        image_folder=args.images if split else None,
        train_images=None if split else args.images,
        test_images=args.test_images,
    )
    try:
        return make_task_data(
            args.task, image_size=args.image_size, n_train=args.n_train, seed=args.seed, **sources
        )
    except ValueError as exc:
        text = str(exc).replace("(image_size)", "(--image-size)")
        for name, flag in _DATA_ARGS.items():
            if text.startswith(f"{name}: "):
                text = f"{flag}: {text[len(name) + 2 :]}"
        raise ValueError(text) from None


def _data_line(data, args: argparse.Namespace) -> str:
    """One line saying where the training and test images come from (and when it is the bundled fallback)."""
    train = data.train_source + (" (no --images DIR given)" if data.train_bundled else "")
    test = data.test_source
    if args.images is not None and args.test_images is None:
        test += " held out (no --test-images DIR given)"
    elif data.test_bundled:
        test += " (no --test-images DIR given)"
    return f"data:       train on {train}; test on {test}"


def run(args: argparse.Namespace) -> int:
    """Run ``liftinv train``; returns 0 on success."""
    model_kwargs = _validate(args)
    check_distributed(args)
    use_threads(args)
    return run_on_ranks(args, lambda rank: _train_and_save(args, model_kwargs, rank=rank))


def _train_and_save(args: argparse.Namespace, model_kwargs: dict[str, Any], *, rank: int) -> int:
    """Build the data and the network, train (on this rank's part when distributed) and, on rank 0, report
    and write --out."""
    import torch

    from liftinv.metrics import psnr as psnr_per_image
    from liftinv.unrolled import resolve_method, save_model, train
    from liftinv.unrolled.train import CheckpointMismatchError

    checkpoint = args.out + ".ckpt"
    options = {k: v for k, v in (("batch_size", args.batch_size), ("lr", args.lr)) if v is not None}
    data = _data(args)
    model = _model(args, data, model_kwargs)  # nothing is written before the network is built
    if rank == 0:
        print(_data_line(data, args), flush=True)
    resumed = os.path.exists(checkpoint) and not args.restart
    start = time.perf_counter()
    try:
        model, history, data = train(
            args.task,
            args.arch,
            args.method,
            epochs=args.epochs,
            seed=args.seed,
            device=args.device,
            data=data,
            checkpoint=checkpoint,
            resume=not args.restart,
            progress=not args.no_progress and rank == 0,
            model=model,
            distributed=args.distributed,
            **options,
        )
    except CheckpointMismatchError as exc:
        raise ValueError(
            f"--out {args.out}: its checkpoint {exc.checkpoint} belongs to another run ({exc.differences}); "
            "pass another --out, or --restart to delete the checkpoint and start over"
        ) from None
    seconds = time.perf_counter() - start
    if rank != 0:  # every rank holds the trained network; rank 0 alone evaluates, prints and writes
        return 0
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
            "test_images": args.test_images,
            "train_data": data.train_source,
            "test_data": data.test_source,
            "device": str(dev),
        },
    )
    print(
        f"task:       {data.task.description}, {data.image_size}x{data.image_size}, "
        f"{len(data.train[1])} training images, {len(x_test)} test images"
    )
    print(f"model:      {args.arch} {model.config()}")
    print(
        f"training:   {args.method} ({resolve_method(args.method)}), {len(history)} epochs, "
        f"{wall:.1f} s on {dev}{' (resumed from ' + checkpoint + ')' if resumed else ''}"
    )
    print(f"test PSNR:  {psnr:.2f} dB  (mean over the test images, reconstruction clipped to [0, 1])")
    print(f"wrote {args.out}")
    return 0
