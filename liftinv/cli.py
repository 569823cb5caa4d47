"""Command-line interface: ``liftinv <command> ...``.

Each sub-command lives in its own module under :mod:`liftinv.commands` and exposes
``add_parser(subparsers)`` and ``run(args) -> int``. Modules are imported lazily so that
``liftinv --help`` stays fast (importing deepinv costs seconds).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from liftinv import __version__

#: sub-command name -> (module under liftinv.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "demo",
        "train a small unrolled net with lifted Bregman for deblurring and compare with TV/pinv",
    ),
    "reconstruct": (
        "reconstruct",
        "reconstruct an image from simulated measurements (classical or trained model)",
    ),
    "train": ("train", "train an unrolled proximal network for deblur|ct|inpaint|denoise"),
    "train-classifier": (
        "train_classifier",
        "train a classifier by back-propagation, lifted solvers or FTPROP",
    ),
    "invert": ("invert", "invert a pre-trained network from a (noisy) output"),
}


def _one_line_errors(parser: argparse.ArgumentParser, name: str) -> None:
    """Make argparse report bad arguments of a sub-command as one line (no usage block), exit status 2."""

    def error(message: str) -> None:
        print(f"liftinv {name}: error: {message}", file=sys.stderr)
        raise SystemExit(2)

    parser.error = error  # type: ignore[method-assign]


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="liftinv",
        description="liftinv: imaging inverse problems with lifted training.",
    )
    parser.add_argument("--version", action="version", version=f"liftinv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only import the module of the command actually asked for; list the others by name.
    wanted = next((a for a in (argv or []) if not a.startswith("-")), None)
    for name, (module, help_) in COMMANDS.items():
        if name == wanted:
            mod = importlib.import_module(f"liftinv.commands.{module}")
            _one_line_errors(mod.add_parser(sub, name, help_), name)
        else:
            sub.add_parser(name, help=help_, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(f"liftinv.commands.{COMMANDS[args.command][0]}")
    try:
        return int(module.run(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, KeyError, RuntimeError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"liftinv {args.command}: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"liftinv {args.command}: interrupted (checkpoints, if any, are kept)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
