"""Command-line interface: ``liftinv <command> ...``.

Each sub-command lives in its own module under :mod:`liftinv.commands` and exposes
``add_parser(subparsers)`` and ``run(args) -> int``. Modules are imported lazily so that
``liftinv --help`` stays fast (importing deepinv costs seconds).

Every failure is one line ``liftinv <command>: error: ...`` on stderr and exit status 1: bad arguments
(argparse's errors, without the usage block), and any exception a command raises (:func:`error_line` turns it
into one line; ``LIFTINV_TRACEBACK=1`` in the environment prints the full traceback as well). Ctrl-C prints
one line and exits with status 130.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import re
import sys
import traceback

from liftinv import __version__

#: sub-command name -> (module under liftinv.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "demo",
        "train a small unrolled net with lifted Bregman for deblurring and compare with TV/pinv",
    ),
    "reconstruct": (
        "reconstruct",
        "reconstruct an image from simulated or measured data (classical or trained model)",
    ),
    "simulate": ("simulate", "simulate noisy measurements of an image and write them to files"),
    "train": ("train", "train an unrolled proximal network for deblur|ct|inpaint|denoise"),
    "train-classifier": (
        "train_classifier",
        "train a classifier by back-propagation, lifted solvers or FTPROP",
    ),
    "invert": ("invert", "invert a pre-trained network from a (noisy) output"),
}


#: exit status of every failure (bad arguments included), and of an interrupted command (Ctrl-C)
ERROR_STATUS = 1
INTERRUPTED_STATUS = 130

#: exception classes that carry a message meant for the user; any other class is a bug of liftinv (or of a
#: library it calls), reported with its class name and a hint to get the traceback
_USER_ERRORS = (ValueError, TypeError, KeyError, RuntimeError, OSError, FloatingPointError, MemoryError)

_TRACEBACK_VARIABLE = "LIFTINV_TRACEBACK"


def _one_line_errors(parser: argparse.ArgumentParser, name: str) -> None:
    """Make argparse report bad arguments as one line ``liftinv <name>: error: ...`` (no usage block), exit
    status :data:`ERROR_STATUS`; ``name`` is ``""`` for the top-level parser."""
    prefix = f"liftinv {name}" if name else "liftinv"

    def error(message: str) -> None:
        print(f"{prefix}: error: {message}", file=sys.stderr)
        raise SystemExit(ERROR_STATUS)

    parser.error = error  # type: ignore[method-assign]


def _first_meaningful_line(text: str) -> str:
    """The first non-blank line of ``text``, joined with the next one when it only introduces it (ends with
    ``:``), as in torch's ``Error(s) in loading state_dict for Net:\\n\\tsize mismatch for ...``."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    if lines[0].endswith(":") and len(lines) > 1:
        return f"{lines[0]} {lines[1]}"
    return lines[0]


def _gigabytes(count: int) -> str:
    """``count`` bytes in GB, e.g. ``"24.0 GB"``."""
    return f"{count / 1e9:.1f} GB"


def _memory_line(exc: BaseException, text: str) -> str:
    """One line for an allocation that failed (``MemoryError``, torch's CPU or CUDA out-of-memory)."""
    asked = re.search(r"[Tt]ried to allocate ([0-9.]+ ?[KMGT]?i?B)", text)
    asked_bytes = re.search(r"[Tt]ried to allocate (\d+) bytes", text)
    amount = (
        f" (it asked for {_gigabytes(int(asked_bytes.group(1)))})"
        if asked_bytes
        else f" (it asked for {asked.group(1)})"
        if asked
        else ""
    )
    where = "GPU memory" if type(exc).__name__ == "OutOfMemoryError" or "CUDA" in text else "memory"
    return (
        f"out of {where}{amount}; use smaller sizes (--image-size, --size, --angles, --n-train) or a smaller "
        "--batch-size"
    )


def _os_error_line(exc: OSError) -> str:
    """One line for an ``OSError`` raised by the system (it has an errno): what failed, on which path, and
    what to do; an ``OSError`` raised by liftinv with its own message keeps it."""
    if exc.errno is None or not exc.strerror:
        return _first_meaningful_line(str(exc)) or type(exc).__name__
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    line = f"{paths}: {exc.strerror}" if paths else exc.strerror
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        line += " (the folder is not writable by you: choose another --out or change its permissions)"
    elif exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        line += " (the disk is full: free some space or choose another --out)"
    elif exc.errno == errno.ENOTDIR:
        line += " (a part of this path is a file, not a folder)"
    elif exc.errno == errno.EISDIR:
        line += " (expected a file, got a folder)"
    return line


def error_line(exc: BaseException) -> str:
    """The one-line message ``liftinv <command>: error: <this>`` for an exception raised by a command.

    Parameters
    ----------
    exc : BaseException
        What the command raised.

    Returns
    -------
    str
        A single line: the message of a user error (``ValueError``, ``KeyError``'s key, ...) or its first
        meaningful line when it has several (torch's often do); for an ``OSError`` the path, the system's
        reason and a hint; for running out of memory how much was asked (when known) and which sizes to
        reduce; for a ``FloatingPointError`` (divergence) a hint to reduce the step; for any other class
        (a bug) the class name and how to get the traceback.

    Examples
    --------
    >>> error_line(ValueError("--size: expected a positive int\\n(more detail)"))
    '--size: expected a positive int'
    >>> error_line(PermissionError(13, "Permission denied", "/data/out.png"))  # doctest: +ELLIPSIS
    '/data/out.png: Permission denied (the folder is not writable by you: ...)'
    >>> error_line(AttributeError("'NoneType' object has no attribute 'shape'"))  # doctest: +ELLIPSIS
    "AttributeError: 'NoneType' object has no attribute 'shape' (an internal error: ..."
    """
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return _memory_line(exc, text)
    if isinstance(exc, RuntimeError) and re.search(
        r"can.t allocate memory|not enough memory|out of memory", text
    ):
        return _memory_line(exc, text)
    if isinstance(exc, OSError):
        return _os_error_line(exc)
    line = _first_meaningful_line(text)
    if not isinstance(exc, _USER_ERRORS):
        return (
            f"{type(exc).__name__}{': ' + line if line else ''} (an internal error: rerun with "
            f"{_TRACEBACK_VARIABLE}=1 for the traceback, and please report it)"
        )
    line = line or type(exc).__name__
    if isinstance(exc, FloatingPointError):
        return f"{line} (the iteration diverged: try a smaller learning rate --lr or step size)"
    return line


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="liftinv",
        description="liftinv: imaging inverse problems with lifted training.",
    )
    parser.add_argument("--version", action="version", version=f"liftinv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only import the module of the command actually asked for; list the others by name.
    wanted = next((a for a in (argv or []) if not a.startswith("-")), None)
    # the top-level parser reports unknown arguments of a command too: name the command then
    _one_line_errors(parser, wanted if wanted in COMMANDS else "")
    for name, (module, help_) in COMMANDS.items():
        if name == wanted:
            mod = importlib.import_module(f"liftinv.commands.{module}")
            _one_line_errors(mod.add_parser(sub, name, help_), name)
        else:
            sub.add_parser(name, help=help_, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``liftinv <command> ...`` (``argv`` default: ``sys.argv[1:]``); returns the exit status.

    Bad arguments raise ``SystemExit(1)`` after one line on stderr (``--help`` and ``--version`` raise
    ``SystemExit(0)``, as argparse does); an exception raised by the command is reported by :func:`error_line`
    and gives 1; Ctrl-C gives 130.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(f"liftinv.commands.{COMMANDS[args.command][0]}")
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print(f"liftinv {args.command}: interrupted (checkpoints, if any, are kept)", file=sys.stderr)
        return INTERRUPTED_STATUS
    except Exception as exc:  # noqa: BLE001 - every failure is one line (the traceback on request)
        if os.environ.get(_TRACEBACK_VARIABLE, "") not in ("", "0"):
            traceback.print_exc()
        print(f"liftinv {args.command}: error: {error_line(exc)}", file=sys.stderr)
        return ERROR_STATUS


if __name__ == "__main__":
    sys.exit(main())
