"""``liftinv simulate``: simulate noisy measurements of an image and write them to files.

Example::

    liftinv simulate --operator tomography --image shepp_logan --size 64 --angles 30 --noise 0.01 \\
        --seed 0 --out sim
    liftinv reconstruct --measurements sim/measurements.npy --operator-config sim/operator.json \\
        --truth sim/truth.npy --out sim/reconstruction.png

writes ``DIR/measurements.npy`` (``y = A x + noise``, ``[1, *measurement_size]``, float32),
``DIR/operator.json`` (the operator's ``describe()``, :func:`liftinv.datasets.save_operator_config`) and
``DIR/truth.npy`` (the image ``x``, ``[1, 1, H, W]`` in ``[0, 1]``). The measurements are exactly those that
``liftinv reconstruct`` simulates from the same ``--operator``, ``--image``, ``--size``, ``--noise``,
``--seed`` and operator parameters (``operator.measure(x, GaussianNoise(noise), seed=seed)``).
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

from liftinv.commands.help_format import DefaultsOnceHelpFormatter
from liftinv.commands.reconstruct import (
    OPERATOR_NAMES,
    add_operator_parameters,
    check_operator_parameters,
    operator_parameters,
)
from liftinv.commands.threads import add_threads_argument, use_threads

#: the files written into --out
FILES = {"measurements": "measurements.npy", "operator": "operator.json", "truth": "truth.npy"}


def add_parser(subparsers: Any, name: str, help_: str) -> argparse.ArgumentParser:
    """Register the ``simulate`` sub-command on ``subparsers`` (argparse sub-parsers action)."""
    parser = subparsers.add_parser(
        name,
        help=help_,
        description="Simulate noisy measurements y = A x + noise of an image and write "
        f"DIR/{FILES['measurements']}, DIR/{FILES['operator']} and DIR/{FILES['truth']} "
        "(for liftinv reconstruct --measurements).",
        formatter_class=DefaultsOnceHelpFormatter,
    )
    parser.add_argument("--operator", default="blur", help=f"forward operator: {' | '.join(OPERATOR_NAMES)}")
    parser.add_argument(
        "--image", default="camera", help="bundled image name (camera, shepp_logan, ...) or a file path"
    )
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (square)")
    parser.add_argument(
        "--noise", type=float, default=0.01, help="standard deviation of the Gaussian measurement noise"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise")
    add_operator_parameters(parser)
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="output folder (created if its parent exists)"
    )
    add_threads_argument(parser)
    return parser


def _validate(args: argparse.Namespace) -> None:
    if args.operator not in OPERATOR_NAMES:
        raise ValueError(f"--operator: expected one of {', '.join(OPERATOR_NAMES)}, got {args.operator!r}")
    if args.size < 3:
        raise ValueError(f"--size: expected an image side >= 3 pixels, got {args.size}")
    if not math.isfinite(args.noise) or args.noise < 0:
        raise ValueError(f"--noise: expected a finite standard deviation >= 0, got {args.noise}")
    check_operator_parameters(args)
    out = os.path.abspath(args.out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(
            f"--out: {args.out} is a file; expected a folder (it holds {', '.join(FILES.values())})"
        )
    if not os.path.isdir(os.path.dirname(out)):
        raise FileNotFoundError(f"--out: the folder {os.path.dirname(out)} does not exist")


def run(args: argparse.Namespace) -> int:
    """Run ``liftinv simulate``; returns 0 on success (bad input raises, and the CLI prints one line)."""
    _validate(args)
    use_threads(args)
    from liftinv.datasets import load_image, save_measurements, save_operator_config
    from liftinv.operators import GaussianNoise, make_operator

    operator = make_operator(args.operator, args.size, **operator_parameters(args, args.operator))
    x = load_image(args.image, args.size)
    y = operator.measure(x, GaussianNoise(args.noise), seed=args.seed)
    os.makedirs(args.out, exist_ok=True)
    paths = {key: os.path.join(args.out, name) for key, name in FILES.items()}
    save_measurements(paths["measurements"], y)
    save_operator_config(paths["operator"], operator)
    save_measurements(paths["truth"], x)
    settings = ", ".join(
        f"{k}={v}" for k, v in operator.describe().items() if k not in ("name", "image_size", "mask")
    )
    print(
        f"simulated:  {operator.name} ({settings}) of image {args.image} {args.size}x{args.size}, "
        f"Gaussian noise {args.noise:g}, seed {args.seed}"
    )
    print(f"wrote {paths['measurements']}  (measurements y, {list(y.shape)})")
    print(f"wrote {paths['operator']}  (the operator)")
    print(f"wrote {paths['truth']}  (the image x, {list(x.shape)})")
    print(
        f"next:       liftinv reconstruct --measurements {paths['measurements']} --operator-config "
        f"{paths['operator']} --truth {paths['truth']}"
    )
    return 0
