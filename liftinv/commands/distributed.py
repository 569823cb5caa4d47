"""``--distributed`` and ``--dist-timeout``: training commands on the ranks of ``torchrun``.

``torchrun --nproc-per-node N -m liftinv train-classifier|train ... --distributed data`` starts N processes
with torchrun's environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ...); each initialises the default
process group from it (gloo on CPU, NCCL on CUDA: :func:`init_distributed`) and trains with
``fit(..., distributed=...)`` (:mod:`liftinv.training.distributed`). Outside torchrun the option is refused
in one line that says how to launch (:func:`check_distributed`), before anything is written.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

__all__ = [
    "TORCHRUN_VARIABLES",
    "add_distributed_arguments",
    "check_distributed",
    "init_distributed",
    "run_on_ranks",
]

#: the environment variables torchrun sets in every rank (init_process_group's env:// rendezvous)
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def add_distributed_arguments(parser: argparse.ArgumentParser, modes: tuple[str, ...], what: str) -> None:
    """Add ``--distributed MODE`` (one of ``modes``; ``what`` says what each does) and ``--dist-timeout``."""
    command = parser.prog.split()[-1]
    parser.add_argument(
        "--distributed",
        choices=modes,
        default=None,
        help=f"train on the ranks of torchrun (torchrun --nproc-per-node N -m liftinv {command} ... "
        f"--distributed {modes[0]}): {what}",
    )
    parser.add_argument(
        "--dist-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="with --distributed: how long a rank waits for the others before failing (default 300)",
    )


def check_distributed(args: argparse.Namespace) -> None:
    """Refuse ``--distributed`` outside torchrun (one line saying how to launch) and a bad timeout.

    Raises
    ------
    ValueError
        When torchrun's environment is missing, or ``--dist-timeout`` is not positive.
    """
    if args.distributed is None:
        return
    missing = [v for v in TORCHRUN_VARIABLES if v not in os.environ]
    if missing:
        raise ValueError(
            f"--distributed {args.distributed} needs torchrun's environment ({', '.join(missing)} not set): "
            f"launch with torchrun --nproc-per-node N -m liftinv {getattr(args, 'command', None) or 'COMMAND'} ... "
            f"--distributed "
            f"{args.distributed} (or python -m torch.distributed.run --nproc-per-node N -m liftinv ...)"
        )
    if not args.dist_timeout > 0:
        raise ValueError(f"--dist-timeout must be > 0 seconds, got {args.dist_timeout}")


def init_distributed(args: argparse.Namespace) -> tuple[int, bool]:
    """Initialise the process group from torchrun's environment (gloo on CPU, NCCL on CUDA).

    Returns this process's rank and whether the group was created here (to be destroyed at the end). On
    CUDA, rank r uses GPU ``LOCAL_RANK`` (``args.device`` becomes ``cuda:LOCAL_RANK``).
    """
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return dist.get_rank(), False
    cuda = str(args.device).startswith("cuda")
    if cuda:
        local = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(local)
        args.device = f"cuda:{local}"
    dist.init_process_group(
        backend="nccl" if cuda else "gloo", timeout=timedelta(seconds=float(args.dist_timeout))
    )
    return dist.get_rank(), True


def run_on_ranks(args: argparse.Namespace, work: Callable[[int], int]) -> int:
    """``work(rank)``: rank 0 alone without ``--distributed``; else this process's rank of torchrun's process
    group, created here (:func:`init_distributed`) and destroyed at the end, also on failure. Returns what
    ``work`` returns."""
    if args.distributed is None:
        return work(0)
    import torch.distributed as dist

    rank, created = init_distributed(args)
    try:
        return work(rank)
    finally:
        if created:
            dist.destroy_process_group()
