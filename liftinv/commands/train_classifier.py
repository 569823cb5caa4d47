"""``liftinv train-classifier``: train a classifier by back-propagation, lifted solvers or FTPROP.

Every method goes through :func:`liftinv.training.fit` (same network, data, loss and epoch loop)::

    liftinv train-classifier --method bregman-bcd --activation relu --arch mlp --data digits \\
        --epochs 100 --seed 0 --loss mse --out runs/bcd

writes to ``--out``: ``checkpoint.pt`` (after every epoch; re-running the command resumes from it, and a
larger ``--epochs`` continues training), ``model.pt`` (``{"state_dict", "config"}``), ``config.json``,
``history.json`` and ``loss.png`` (objective and test accuracy per epoch), and prints the test accuracy.

Methods: every method of :func:`liftinv.training.registry.methods_for` ``("classifier")`` (listed by
``--help``): back-propagation, lifted solvers (Wang & Benning, JMLR 2023; Carreira-Perpinan & Wang,
AISTATS 2014; Gu, Askari & El Ghaoui, AISTATS 2020), and hard-threshold training (FTPROP and
straight-through estimators; Friesen & Domingos, ICLR 2018) for ``--activation sign`` / ``qrelu2``.

Data: ``digits`` (scikit-learn's 8x8 digits, 30% held out, stratified, fixed split) or ``mnist:DIR`` (local
MNIST IDX files, its own train/test split).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import textwrap
import time
from pathlib import Path

from liftinv.commands.distributed import add_distributed_arguments, check_distributed, run_on_ranks
from liftinv.commands.threads import add_threads_argument, use_threads

#: settings that define a run; a different value in an existing --out is an error (epochs may change)
_RUN_KEYS = ("method", "activation", "arch", "data", "seed", "loss", "hidden", "options", "test_fraction")


def add_parser(subparsers, name: str, help_: str) -> argparse.ArgumentParser:
    """Register the ``train-classifier`` sub-command on ``subparsers``.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The CLI's sub-parsers.
    name, help_ : str
        Command name and one-line help (from :data:`liftinv.cli.COMMANDS`).

    Returns
    -------
    argparse.ArgumentParser
    """
    from liftinv.training.registry import describe_methods, methods_for

    p = subparsers.add_parser(
        name,
        help=help_,
        description=textwrap.fill(
            "Train a classifier by back-propagation, lifted solvers or FTPROP through liftinv.training.fit; "
            "writes the model, history, loss plot and a resumable checkpoint to --out and prints the test "
            "accuracy.",
            width=88,
        ),
        epilog="methods:\n  " + describe_methods(methods_for("classifier")).replace("\n", "\n  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps one line per method in the epilog
    )
    p.add_argument(
        "--method",
        default="backprop-adam",
        help="training method (see the list below); default backprop-adam",
    )
    p.add_argument(
        "--activation",
        default="relu",
        help="hidden activation: relu|leaky_relu|tanh|sigmoid|hardtanh|clipped_relu|soft_threshold "
        "(lifted and back-propagation) or sign|qrelu2 (FTPROP/STE); default relu",
    )
    p.add_argument("--arch", default="mlp", help="mlp (default) or conv")
    p.add_argument(
        "--hidden",
        default="128,128",
        help="hidden widths of the MLP, comma-separated (default 128,128); conv: the conv widths",
    )
    p.add_argument("--data", default="digits", help="digits (default) or mnist:DIR (local IDX files)")
    p.add_argument(
        "--test-fraction", type=float, default=0.3, help="held-out fraction for digits (default 0.3)"
    )
    p.add_argument("--epochs", type=int, default=20, help="number of epochs (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and mini-batch order")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:k]")
    p.add_argument("--loss", default="mse", help="mse (to one-hot targets; default) or ce")
    p.add_argument(
        "--batch-size", type=int, default=None, help="mini-batch / shard size (method default if omitted)"
    )
    p.add_argument(
        "--lr", type=float, default=None, help="learning rate (back-propagation, adaptive, FTPROP)"
    )
    p.add_argument(
        "--lambdas",
        default=None,
        help="penalty weights of lifted methods: a float, or a comma list with one value per hidden layer",
    )
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other option of the method, e.g. --option weight_steps=10 --option tau=5 (repeatable)",
    )
    p.add_argument(
        "--out", default=None, help="output folder (checkpoint, model, history, loss plot); required"
    )
    p.add_argument(
        "--fresh", action="store_true", help="discard an existing checkpoint in --out and start over"
    )
    add_threads_argument(p)
    add_distributed_arguments(
        p,
        ("data", "layers"),
        "'data' splits the samples, 'layers' the layers (bregman-bcd, mac-bcd, fenchel-bcd on MLPs); rank 0 "
        "prints and writes --out",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="tqdm progress bar (default: when stderr is a terminal)",
    )
    return p


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _options(args) -> dict:
    opts = {}
    for item in args.option:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise ValueError(f"--option must be KEY=VALUE (e.g. weight_steps=10), got {item!r}")
        key, value = item.split("=", 1)
        opts[key.strip()] = _parse_value(value.strip())
    if args.batch_size is not None:
        opts["batch_size"] = args.batch_size
    if args.lr is not None:
        opts["lr"] = args.lr
    if args.lambdas is not None:
        try:
            vals = [float(v) for v in str(args.lambdas).split(",")]
        except ValueError:
            raise ValueError(
                f"--lambdas must be a float or a comma-separated list of floats, got {args.lambdas!r}"
            ) from None
        opts["lambdas"] = vals[0] if len(vals) == 1 else vals
    return opts


def load_data(spec: str, test_fraction: float = 0.3, split_seed: int = 0):
    """Training and test images ``[N, 1, H, W]`` in [0, 1] with integer labels, for ``--data``.

    Parameters
    ----------
    spec : str
        ``"digits"`` (scikit-learn's 8x8 digits / 16, stratified split) or ``"mnist:DIR"`` (local IDX
        files, MNIST's own train/test split).
    test_fraction : float
        Held-out fraction for digits.
    split_seed : int
        Seed of the digits split (fixed: every method sees the same split).

    Returns
    -------
    tuple of Tensor
        ``(Xtr, Ytr, Xte, Yte)``.
    """
    import torch

    if spec == "digits":
        if not 0 < test_fraction < 1:
            raise ValueError(f"--test-fraction must be in (0, 1), got {test_fraction}")
        import numpy as np
        from sklearn.model_selection import train_test_split

        from liftinv.datasets import load_digits

        X, Y = load_digits()
        tr, te = train_test_split(
            np.arange(len(Y)), test_size=test_fraction, random_state=split_seed, stratify=Y.numpy()
        )
        tr, te = torch.as_tensor(tr), torch.as_tensor(te)
        return X[tr], Y[tr], X[te], Y[te]
    if spec.startswith("mnist:"):
        directory = spec.split(":", 1)[1]
        if not directory:
            raise ValueError("--data mnist:DIR needs a folder, e.g. --data mnist:~/data/mnist")
        from liftinv.datasets import load_mnist

        directory = str(Path(directory).expanduser())
        Xtr, Ytr = load_mnist(directory, "train")
        Xte, Yte = load_mnist(directory, "test")
        return Xtr, Ytr, Xte, Yte
    raise ValueError(f"--data must be 'digits' or 'mnist:DIR', got {spec!r}")


def build_model(arch: str, activation: str, hidden: str, image_shape, n_classes: int):
    """The network for ``--arch`` with the given hidden activation (see :mod:`liftinv.models`).

    Parameters
    ----------
    arch : {"mlp", "conv"}
        MLP ``in -> hidden... -> n_classes`` (with ``nn.Flatten``), or the convolutional classifier
        :func:`liftinv.models.convnet` (conv widths from ``hidden``, default 16,32).
    activation : str
        Hidden activation name (proximal ones, or ``sign`` / ``qrelu2`` for FTPROP).
    hidden : str
        Comma-separated widths.
    image_shape : tuple of int
        ``(C, H, W)`` of one input.
    n_classes : int

    Returns
    -------
    nn.Sequential

    Examples
    --------
    >>> build_model("mlp", "relu", "16", (1, 8, 8), 10)
    Sequential(
      (0): Flatten(start_dim=1, end_dim=-1)
      (1): Linear(in_features=64, out_features=16, bias=True)
      (2): ReLU()
      (3): Linear(in_features=16, out_features=10, bias=True)
    )
    """
    from liftinv.models import convnet, mlp

    try:
        widths = tuple(int(w) for w in str(hidden).split(",") if w.strip())
    except ValueError:
        raise ValueError(f"--hidden must be comma-separated positive ints, got {hidden!r}") from None
    if not widths or min(widths) <= 0:
        raise ValueError(f"--hidden must be comma-separated positive ints, got {hidden!r}")
    c, h, w = image_shape
    if arch == "mlp":
        return mlp([c * h * w, *widths, n_classes], activation)
    if arch == "conv":
        if h != w:
            raise ValueError(f"--arch conv needs square images, got {h}x{w}")
        conv_widths = widths if hidden != "128,128" else (16, 32)
        return convnet(c, n_classes, image_size=h, widths=conv_widths, activation=activation)
    raise ValueError(f"--arch must be 'mlp' or 'conv', got {arch!r}")


def _check_method(method: str) -> None:
    """Refuse a ``--method`` that cannot train a classifier (before anything is read or written); a method of
    ``liftinv train`` only (unrolled networks) is named as such."""
    from liftinv.training.registry import METHOD_ALIASES, methods_for

    accepted = methods_for("classifier")
    if method in accepted:
        return

    hint = (
        " (it trains unrolled networks: liftinv train --method ...)"
        if method in (*METHOD_ALIASES, *methods_for("unrolled"))
        else ""
    )
    raise ValueError(
        f"--method must be one of {', '.join(accepted)} (the methods that train classifiers); got "
        f"{method!r}{hint}"
    )


def _check_out(out: Path) -> None:
    """Refuse an ``--out`` that cannot be the output folder (an existing file, or a path through a file)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; expected a folder (it is created if needed)")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"--out {str(out)!r}: {parent} is a file, not a folder")


def _check_training(args, model, images, labels, options: dict) -> None:
    """Check what :func:`liftinv.training.fit` would refuse (the device, the method for this network and
    activation, the method's options) before anything is written or deleted: the trainer is built once on a
    copy of the network, as ``fit`` builds it."""
    import copy

    from liftinv.training import resolve_device
    from liftinv.training.registry import get_trainer

    try:
        resolve_device(args.device)
    except ValueError as exc:
        raise ValueError(f"--device: {exc}") from None
    trainer_class = get_trainer(args.method, model)
    if args.distributed is not None:  # the method has a data- / layer-parallel version (a lookup only)
        from liftinv.training.registry import get_data_parallel_trainer, get_layer_parallel_trainer

        lookup = get_data_parallel_trainer if args.distributed == "data" else get_layer_parallel_trainer
        lookup(args.method, model)
        if args.distributed == "layers":
            options = {"order": "parity", **options}  # the layer-parallel schedule
    try:
        trainer_class(copy.deepcopy(model), images, labels, loss=args.loss, seed=args.seed, **options)
    except TypeError as exc:
        if "unexpected keyword argument" not in str(exc):
            raise
        given = ", ".join(f"{k}={v!r}" for k, v in options.items())
        raise ValueError(f"--method {args.method} does not take the options {given}: {exc}") from None


def _plot(history, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = history["epoch"]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    ax[0].semilogy(epochs, history["objective"], label="training objective")
    nested = history["nested"]
    if any(v is not None for v in nested):
        ax[0].semilogy(epochs, nested, "--", label="nested training loss")
    ax[0].set_xlabel("epoch")
    ax[0].set_title("loss")
    ax[0].legend()
    ax[1].plot(epochs, [100 * a for a in history["train_accuracy"]], label="train")
    if any(v is not None for v in history["test_accuracy"]):
        ax[1].plot(epochs, [100 * a for a in history["test_accuracy"]], label="test")
    ax[1].set_xlabel("epoch")
    ax[1].set_title("accuracy (%)")
    ax[1].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args) -> int:
    """Train, evaluate and save (see the module docstring); returns the exit status.

    Raises
    ------
    ValueError, TypeError, FileNotFoundError, RuntimeError
        For bad input (reported by :func:`liftinv.cli.main` as one line, exit status 1).
    """
    import torch

    from liftinv.training import load_checkpoint

    # every check of the input comes before anything is written to (or deleted from) --out
    if not args.out:
        raise ValueError("--out DIR is required (the checkpoint, model, history and loss plot go there)")
    _check_method(args.method)
    if args.loss not in ("mse", "ce"):
        raise ValueError(f"--loss must be 'mse' or 'ce', got {args.loss!r}")
    if args.epochs < 0:
        raise ValueError(f"--epochs must be >= 0, got {args.epochs}")
    check_distributed(args)
    options = _options(args)
    out = Path(args.out).expanduser()
    _check_out(out)
    config = {
        "method": args.method,
        "activation": args.activation,
        "arch": args.arch,
        "data": args.data,
        "seed": args.seed,
        "loss": args.loss,
        "hidden": args.hidden,
        "options": options,
        "test_fraction": args.test_fraction,
        "epochs": args.epochs,
    }
    checkpoint = out / "checkpoint.pt"
    cfg_path = out / "config.json"
    if not args.fresh and checkpoint.is_file() and cfg_path.is_file():
        old = json.loads(cfg_path.read_text())
        diff = [k for k in _RUN_KEYS if old.get(k) != json.loads(json.dumps(config[k]))]
        if diff:
            raise ValueError(
                f"--out {str(out)!r} holds a run with different settings ({', '.join(diff)}: "
                f"{', '.join(f'{old.get(k)!r}' for k in diff)}); use another --out or --fresh"
            )
        if load_checkpoint(checkpoint).get("epoch", 0) > args.epochs:
            raise ValueError(
                f"--out {str(out)!r} already holds {load_checkpoint(checkpoint)['epoch']} epochs, more than "
                f"--epochs {args.epochs}; use a larger --epochs or --fresh"
            )
    use_threads(args)

    Xtr, Ytr, Xte, Yte = load_data(args.data, args.test_fraction)
    n_classes = int(max(Ytr.max(), Yte.max())) + 1
    torch.manual_seed(args.seed)
    model = build_model(args.arch, args.activation, args.hidden, tuple(Xtr.shape[1:]), n_classes)
    config["n_classes"] = n_classes
    config["input_shape"] = list(Xtr.shape[1:])
    _check_training(args, model, Xtr, Ytr, options)
    data = (Xtr, Ytr, Xte, Yte)
    return run_on_ranks(
        args, lambda rank: _train_and_save(args, model, data, options, config, out, rank=rank)
    )


def _train_and_save(args, model, data, options: dict, config: dict, out: Path, *, rank: int) -> int:
    """Train with :func:`liftinv.training.fit` and write --out (rank 0 only when distributed)."""
    from liftinv.files import save_text_file, save_torch_file
    from liftinv.training import accuracy, fit

    Xtr, Ytr, Xte, Yte = data
    checkpoint, cfg_path = out / "checkpoint.pt", out / "config.json"
    # all checks passed: from here on --out is written (and with --fresh its checkpoint deleted)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if args.fresh:
            checkpoint.unlink(missing_ok=True)
        save_text_file(json.dumps(config, indent=1), cfg_path)
    if args.distributed is not None:
        import torch.distributed as dist

        dist.barrier()  # the other ranks read --out (the checkpoint to resume) once rank 0 has prepared it
        if args.distributed == "layers":
            options = {"order": "parity", **options}
    progress = (sys.stderr.isatty() if args.progress is None else args.progress) and rank == 0
    t0 = time.perf_counter()
    history = fit(
        model,
        (Xtr, Ytr),
        method=args.method,
        epochs=args.epochs,
        loss=args.loss,
        test=(Xte, Yte),
        seed=args.seed,
        device=args.device,
        checkpoint=checkpoint,
        progress=progress,
        distributed=args.distributed,
        **options,
    )
    elapsed = time.perf_counter() - t0
    if rank != 0:  # every rank holds the trained model; rank 0 alone prints and writes
        return 0
    model.eval()
    acc = accuracy(model, Xte, Yte)
    model_cpu = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_torch_file({"state_dict": model_cpu, "config": config}, out / "model.pt")
    save_text_file(json.dumps(history.to_dict(), indent=1), out / "history.json")
    if len(history):
        _plot(history, out / "loss.png", f"{args.method}, {args.arch} {args.activation}, {args.data}")
    total = history.last.get("wall", 0.0)
    print(
        f"test accuracy: {100 * acc:.2f}% ({args.method}, {args.arch} {args.activation}, {args.data}, "
        f"{len(history)} epochs, training time {total:.1f} s, this call {elapsed:.1f} s)"
    )
    print(f"saved model, history, loss plot and checkpoint in {out}")
    return 0
