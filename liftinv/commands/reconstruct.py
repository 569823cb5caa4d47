"""``liftinv reconstruct``: simulate measurements of an image and reconstruct it.

Example::

    liftinv reconstruct --operator tomography --image camera --size 128 --method tv --noise 0.01 \\
        --seed 0 --out result.png

Prints PSNR and SSIM of the reconstruction (:func:`liftinv.metrics.psnr` and :func:`~liftinv.metrics.ssim`:
deepinv's ``PSNR(max_pixel=1)`` and ``SSIM()``, the latter being torchmetrics' Gaussian-window SSIM, 11x11,
sigma 1.5; both on the reconstruction clipped to ``[0, 1]``, the image range) and writes a figure:
truth | measurement | reconstruction.

With ``--model PATH`` the reconstruction comes from a trained network loaded by
``liftinv.unrolled.load_model(PATH)``. The operator, its parameters and the noise level default to those the
model was trained for; networks of blur, inpainting and denoising apply at any ``--size`` (the operator is
rebuilt at that size, :func:`liftinv.unrolled.io.model_for_operator`), a CT network only at its geometry;
other operator parameters (``--sigma``, ``--angles``, ``--keep-rate``) than the model's are refused.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Any

OPERATOR_NAMES = ("blur", "tomography", "inpainting", "denoising")
METHOD_NAMES = ("pinv", "tikhonov", "tv")


def add_parser(subparsers: Any, name: str, help_: str) -> argparse.ArgumentParser:
    """Register the ``reconstruct`` sub-command on ``subparsers`` (argparse sub-parsers action)."""
    parser = subparsers.add_parser(
        name,
        help=help_,
        description="Simulate noisy measurements of an image and reconstruct it (classically or with a trained model)."
        + " Metrics: deepinv PSNR(max_pixel=1) and SSIM() (torchmetrics Gaussian SSIM) on the "
        "reconstruction clipped to [0, 1].",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--operator",
        default=None,
        help=f"forward operator: {' | '.join(OPERATOR_NAMES)} (default: the model's, else blur)",
    )
    parser.add_argument(
        "--image", default="camera", help="bundled image name (camera, shepp_logan, ...) or a file path"
    )
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="image side in pixels (square; default 128, a CT model's training size)",
    )
    parser.add_argument("--method", default="tv", help=f"reconstruction method: {' | '.join(METHOD_NAMES)}")
    parser.add_argument(
        "--noise",
        type=float,
        default=None,
        help="standard deviation of Gaussian measurement noise (default: the model's training noise, else 0.01)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise")
    parser.add_argument(
        "--alpha", type=float, default=None, help="regularisation weight (default: by operator and noise)"
    )
    parser.add_argument(
        "--max-iter", type=int, default=None, help="iterations of tikhonov/tv (default 200/300)"
    )
    parser.add_argument(
        "--sigma", type=float, default=None, help="blur: Gaussian kernel width in pixels (default 2)"
    )
    parser.add_argument("--angles", type=int, default=None, help="tomography: number of angles (default 30)")
    parser.add_argument(
        "--keep-rate", type=float, default=None, help="inpainting: fraction of kept pixels (default 0.5)"
    )
    parser.add_argument("--out", default="reconstruction.png", help="output figure (png, pdf, svg)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the metrics as JSON")
    parser.add_argument(
        "--model",
        default=None,
        metavar="PATH",
        help="trained model (liftinv train --out PATH); blur, inpainting, denoising models apply at any --size",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


#: operator parameter -> the flag that sets it
PARAMETER_FLAGS = {"sigma": "--sigma", "angles": "--angles", "keep_rate": "--keep-rate"}


def _validate(args: argparse.Namespace) -> None:
    if args.operator is not None and args.operator not in OPERATOR_NAMES:
        raise ValueError(f"--operator: expected one of {', '.join(OPERATOR_NAMES)}, got {args.operator!r}")
    if args.method not in METHOD_NAMES:
        raise ValueError(f"--method: expected one of {', '.join(METHOD_NAMES)}, got {args.method!r}")
    if args.size is not None and args.size < 3:
        raise ValueError(f"--size: expected an image side >= 3 pixels, got {args.size}")
    if args.noise is not None and (not math.isfinite(args.noise) or args.noise < 0):
        raise ValueError(f"--noise: expected a finite standard deviation >= 0, got {args.noise}")
    if args.alpha is not None and (not math.isfinite(args.alpha) or args.alpha < 0):
        raise ValueError(f"--alpha: expected a finite number >= 0, got {args.alpha}")
    if args.max_iter is not None and args.max_iter <= 0:
        raise ValueError(f"--max-iter: expected a positive number of iterations, got {args.max_iter}")
    if args.sigma is not None and (not math.isfinite(args.sigma) or args.sigma <= 0):
        raise ValueError(f"--sigma: expected a blur width > 0, got {args.sigma}")
    if args.angles is not None and args.angles <= 0:
        raise ValueError(f"--angles: expected a positive number of angles, got {args.angles}")
    if args.keep_rate is not None and not 0 <= args.keep_rate <= 1:
        raise ValueError(f"--keep-rate: expected a fraction in [0, 1], got {args.keep_rate}")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise FileNotFoundError(f"--out: the folder {out_dir} does not exist")
    if args.model is not None and not os.path.isfile(args.model):
        raise FileNotFoundError(f"--model: no such file: {args.model}")


def _operator_parameters(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """The operator parameters given on the command line (each flag only for its operator)."""
    given = {"sigma": args.sigma, "angles": args.angles, "keep_rate": args.keep_rate}
    owner = {"sigma": "blur", "angles": "tomography", "keep_rate": "inpainting"}
    for key, value in given.items():
        if value is not None and owner[key] != name:
            raise ValueError(f"{PARAMETER_FLAGS[key]} only applies to --operator {owner[key]}")
    return {k: v for k, v in given.items() if v is not None}


def _load_model(path: str):
    from liftinv.unrolled import load_model

    try:
        return load_model(path)
    except ValueError as exc:
        # the library's message, with the command-line advice
        raise ValueError(
            f"--model: {exc} (`liftinv train --out FILE` writes a model file; FILE.ckpt is its training "
            "checkpoint)"
        ) from None


def _trained_for(description: dict[str, Any]) -> str:
    params = ", ".join(
        f"{k}={v}" for k, v in description.items() if k not in ("name", "image_size") and v is not None
    )
    return f"{description.get('name')} ({params})" if params else str(description.get("name"))


def _model_operator(args: argparse.Namespace, model: Any):
    """The operator of the command line for a model: the model's unless flags say otherwise (checked)."""
    from liftinv.operators import make_operator
    from liftinv.unrolled.io import is_resizable, model_for_operator, operator_differences

    trained = getattr(getattr(model, "operator", None), "describe", None)
    if trained is None:  # a model that does not describe its operator: the command line's, unchecked
        name = args.operator or "blur"
        operator = make_operator(name, args.size or 128, **_operator_parameters(args, name))
        return operator, model
    trained = dict(trained())
    saved_size = list(trained.get("image_size", []))
    if args.operator is not None and args.operator != trained.get("name"):
        raise ValueError(
            f"--operator: the model was trained for {_trained_for(trained)}, but --operator {args.operator} was "
            "asked for; train a model for this operator"
        )
    name = trained["name"]
    resizable = is_resizable(model)
    size = args.size or (128 if resizable or not saved_size else saved_size[-1])
    kwargs = {k: v for k, v in trained.items() if k not in ("name", "image_size")}
    kwargs.update(_operator_parameters(args, name))
    operator = make_operator(name, size, **kwargs)
    for key, mine, asked in operator_differences(trained, dict(operator.describe())):
        if key in PARAMETER_FLAGS:
            raise ValueError(
                f"{PARAMETER_FLAGS[key]}: the model was trained for {name} with {key}={mine}, but "
                f"{PARAMETER_FLAGS[key]} {asked} was asked for; train a model for {key}={asked}"
            )
        if key == "image_size" and not resizable:
            raise ValueError(
                f"--size: the model was trained for {_trained_for(trained)} on images {mine} (C, H, W); "
                f"--size {size} asks for images {asked}, another geometry: a {name} network works only at the "
                f"geometry it was trained for (train a model for this size, or leave --size out)"
            )
    return operator, model_for_operator(model, operator, name="--model: the model")


def _figure(path: str, truth, measurement, reconstruction, titles: list[str]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    panels = (truth, measurement, reconstruction)
    for i, (panel, title) in enumerate(zip(panels, titles)):
        axis = figure.add_subplot(1, 3, i + 1)
        image = panel[0, 0].detach().cpu().numpy()
        is_image = panel.shape[-2:] == truth.shape[-2:]
        limits = {"vmin": 0.0, "vmax": 1.0} if is_image else {}
        axis.imshow(image, cmap="gray", aspect="equal" if is_image else "auto", **limits)
        axis.set_title(title, fontsize=10)
        axis.set_xticks([])
        axis.set_yticks([])
        if not is_image:
            axis.set_xlabel("angle")
            axis.set_ylabel("detector")
    figure.savefig(path, dpi=120)


def run(args: argparse.Namespace) -> int:
    """Run ``liftinv reconstruct``; returns 0 on success (bad input raises, and the CLI prints one line)."""
    _validate(args)
    import torch

    from liftinv.datasets import load_image
    from liftinv.metrics import psnr as psnr_of
    from liftinv.metrics import ssim as ssim_of
    from liftinv.operators import GaussianNoise, make_operator, reconstruct

    if args.model:
        model = _load_model(args.model)
        trained_size = "x".join(map(str, getattr(model, "image_size", (0, 0, 0))[1:]))
        operator, model = _model_operator(args, model)
        task = (getattr(model, "metadata", None) or {}).get("task")
        trained_noise = task.get("noise") if isinstance(task, dict) else None
        noise = (
            args.noise if args.noise is not None else (trained_noise if trained_noise is not None else 0.01)
        )
    else:
        name = args.operator or "blur"
        operator = make_operator(name, args.size or 128, **_operator_parameters(args, name))
        noise = 0.01 if args.noise is None else args.noise
    args.size, args.noise = operator.image_size[-1], noise  # the values used (printed, JSON)
    x = load_image(args.image, args.size)
    y = operator.measure(x, GaussianNoise(args.noise), seed=args.seed)
    start = time.perf_counter()
    if args.model:
        with torch.no_grad():
            x_hat = model.reconstruct(y) if hasattr(model, "reconstruct") else model(y)
        label = f"model {os.path.basename(args.model)}"
        arch = getattr(model, "arch", None)
        detail = f" ({arch}, trained on {trained_size})" if arch else ""
    else:
        result = reconstruct(
            y,
            operator,
            args.method,
            alpha=args.alpha,
            noise_level=args.noise,
            max_iter=args.max_iter,
            progress=not args.no_progress,
        )
        x_hat = result.x
        label = args.method
        detail = "" if result.alpha is None else f", alpha={result.alpha:.3g}, {result.iterations} iterations"
    seconds = time.perf_counter() - start
    if not isinstance(x_hat, torch.Tensor) or x_hat.shape != x.shape:
        raise RuntimeError(
            f"the reconstruction has shape {getattr(x_hat, 'shape', None)}, expected {list(x.shape)}"
        )
    clipped = x_hat.clamp(0.0, 1.0)
    psnr = float(psnr_of(clipped, x))
    ssim = float(ssim_of(clipped, x))
    description = operator.describe()
    settings = ", ".join(
        f"{k}={v}" for k, v in description.items() if k not in ("name", "image_size", "mask")
    )
    print(
        f"operator:   {operator.name} ({settings}), image {args.image} {args.size}x{args.size}, noise {args.noise}"
    )
    print(f"method:     {label}{detail}, {seconds:.2f} s")
    print(f"PSNR:       {psnr:.2f} dB   (deepinv PSNR(max_pixel=1), reconstruction clipped to [0, 1])")
    print(f"SSIM:       {ssim:.4f}     (deepinv SSIM(): torchmetrics Gaussian window 11x11, sigma 1.5)")
    measurement_title = f"measurement ({operator.name}, noise {args.noise:g})"
    if y.shape == x.shape:
        measurement_title += f"\nPSNR {float(psnr_of(y.clamp(0, 1), x)):.2f} dB"
    titles = [f"truth ({args.image})", measurement_title, f"{label}\nPSNR {psnr:.2f} dB, SSIM {ssim:.3f}"]
    _figure(args.out, x, y, x_hat.clamp(0.0, 1.0), titles)
    print(f"wrote {args.out}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "operator": {k: v for k, v in description.items() if k != "mask" or isinstance(v, str)},
                    "image": args.image,
                    "size": args.size,
                    "noise": args.noise,
                    "seed": args.seed,
                    "method": label,
                    "psnr": psnr,
                    "ssim": ssim,
                    "seconds": seconds,
                },
                f,
                indent=2,
            )
    return 0
