"""``--threads N``: the CPU threads of torch in a command (every sub-command has the option).

Without ``--threads`` a command uses :func:`default_threads`: ``OMP_NUM_THREADS`` when it is set (the usual way
to tell a program its share of a machine: batch schedulers and torchrun set it), else the number of cores this
process may run on (:func:`available_cores`: its CPU affinity, and the CPU quota of its control group when one
is set), divided among the processes torchrun started on this machine. torch's own default is the machine's
physical cores, which over-subscribes a container or a ``taskset`` share. :func:`use_threads` applies the value
with ``torch.set_num_threads`` once the arguments are checked, before the work.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

__all__ = ["available_cores", "default_threads", "positive_int", "add_threads_argument", "use_threads"]

#: cgroup v2 file with the CPU quota of this process's group: ``"max 100000"`` (none) or ``"200000 100000"``
_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def _quota_cores() -> int | None:
    """Cores allowed by the CPU quota of the control group (cgroup v2), rounded up; None without a quota."""
    try:
        quota, period = _CPU_MAX.read_text().split()[:2]
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):  # no cgroup v2 file, or "max" (no quota)
        return None


def available_cores() -> int:
    """The number of CPU cores this process may use.

    Returns
    -------
    int
        The cores of its CPU affinity (``os.sched_getaffinity``; ``os.cpu_count()`` where that does not
        exist), at most the CPU quota of its control group; at least 1.

    Examples
    --------
    >>> available_cores() >= 1
    True
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = _quota_cores()
    return max(1, min(cores, quota) if quota is not None else cores)


def positive_int(text: str) -> int:
    """argparse ``type`` of ``--threads``: a positive int (argparse reports anything else in one line).

    Examples
    --------
    >>> positive_int("4")
    4
    >>> positive_int("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a positive int, got '0'
    """
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    return value


def add_threads_argument(parser: argparse.ArgumentParser, default: int | None = None, why: str = "") -> None:
    """Add ``--threads N`` to a sub-command's parser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The sub-command's parser.
    default : int, optional
        A fixed default number of threads. None (the usual): the option is absent from the parsed arguments
        unless given, and :func:`use_threads` takes :func:`default_threads`.
    why : str
        Why a fixed default was chosen, for ``--help``.
    """
    if default is None:
        parser.add_argument(
            "--threads",
            type=positive_int,
            default=argparse.SUPPRESS,  # not given: use_threads decides (the help says how)
            metavar="N",
            help=f"torch CPU threads (default: $OMP_NUM_THREADS if set, else the cores available to this "
            f"process, shared among torchrun's processes on this machine: {default_threads()} here)",
        )
        return
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=default,
        metavar="N",
        help=f"torch CPU threads (default %(default)s{': ' + why if why else ''})",
    )


def default_threads() -> int:
    """The number of torch threads of a command run without ``--threads``.

    Returns
    -------
    int
        ``OMP_NUM_THREADS`` when it holds a positive int; else :func:`available_cores` divided by
        ``LOCAL_WORLD_SIZE`` (the processes that torchrun started on this machine; 1 without torchrun); at
        least 1.

    Examples
    --------
    >>> default_threads() >= 1
    True
    """
    told = os.environ.get("OMP_NUM_THREADS", "").strip()
    if told.isdigit() and int(told) > 0:
        return int(told)
    processes = os.environ.get("LOCAL_WORLD_SIZE", "1").strip()
    return max(1, available_cores() // max(1, int(processes) if processes.isdigit() else 1))


def use_threads(args: argparse.Namespace) -> int:
    """Apply ``--threads`` (not given: :func:`default_threads`) with ``torch.set_num_threads``.

    Parameters
    ----------
    args : argparse.Namespace
        A command's parsed arguments.

    Returns
    -------
    int
        The number of threads set.

    See Also
    --------
    add_threads_argument : the option.
    """
    import torch

    threads = getattr(args, "threads", None) or default_threads()
    torch.set_num_threads(threads)
    return threads
