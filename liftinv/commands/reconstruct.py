"""``liftinv reconstruct``: reconstruct an image from simulated measurements, or from measurement files.

Example::

    liftinv reconstruct --operator tomography --image camera --size 128 --method tv --noise 0.01 \\
        --seed 0 --out result.png

Prints PSNR and SSIM of the reconstruction (:func:`liftinv.metrics.psnr` and :func:`~liftinv.metrics.ssim`:
deepinv's ``PSNR(max_pixel=1)`` and ``SSIM()``, the latter being torchmetrics' Gaussian-window SSIM, 11x11,
sigma 1.5; both on the reconstruction clipped to ``[0, 1]``, the image range) and writes a figure:
truth | measurement | reconstruction. An ``--out`` ending in ``.npy``, ``.npz``, ``.tif`` or ``.tiff`` writes the
reconstructed array instead (:func:`liftinv.datasets.save_measurements`).

With ``--measurements FILE|DIR`` the measurements come from a file (or a folder of files: a batch;
:func:`liftinv.datasets.load_measurements`) instead of a simulation, and the operator from
``--operator-config JSON`` (:func:`liftinv.datasets.load_operator`, e.g. written by ``liftinv simulate``) or
else from ``--operator`` and its flags. Without ``--alpha`` the weight of each measurement is chosen by the
discrepancy principle (:func:`liftinv.datasets.discrepancy_alpha`: the largest alpha of a geometric grid with
``||A x - y|| <= sigma sqrt(m)``, ``sigma`` from ``--noise`` or else :func:`liftinv.datasets.estimate_noise`).
PSNR and SSIM need ``--truth FILE|DIR``; the relative data residual ``||A x - y|| / ||y||`` is always printed.

With ``--model PATH`` the reconstruction comes from a trained network loaded by
``liftinv.unrolled.load_model(PATH)``. The operator, its parameters and the noise level default to those the
model was trained for; networks of blur, inpainting and denoising apply at any ``--size`` (the operator is
rebuilt at that size, :func:`liftinv.unrolled.io.model_for_operator`), a CT network only at its geometry;
other operator parameters (``--sigma``, ``--angles``, ``--keep-rate``, a kernel or mask) than the model's are
refused with both values, and so is a noise level (``--noise``, or else the level estimated from
``--measurements``) more than a factor 2 from the model's training noise (an estimate may be up to 4 times
above: it errs upwards; :func:`liftinv.unrolled.io.noise_mismatch`). ``--force`` applies the model anyway (its
weights on the asked operator), with a warning on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any

from liftinv.commands.help_format import DefaultsOnceHelpFormatter
from liftinv.commands.threads import add_threads_argument, use_threads

OPERATOR_NAMES = ("blur", "tomography", "inpainting", "denoising")
METHOD_NAMES = ("pinv", "tikhonov", "tv")
#: --out extensions that write the reconstructed array (any other is a figure format of matplotlib)
ARRAY_EXTENSIONS = (".npy", ".npz", ".tif", ".tiff")


def add_operator_parameters(parser: argparse.ArgumentParser) -> None:
    """The operator-parameter flags shared by ``reconstruct`` and ``simulate`` (``--sigma``, ``--angles``,
    ``--backend``, ``--geometry``, ``--keep-rate``; None: the operator's default)."""
    parser.add_argument(
        "--sigma", type=float, default=None, help="blur: Gaussian kernel width in pixels (default 2)"
    )
    parser.add_argument("--angles", type=int, default=None, help="tomography: number of angles (default 30)")
    parser.add_argument(
        "--backend",
        default=None,
        help='tomography: projector backend, torch | astra (default torch; astra needs pip install "liftinv[astra]")',
    )
    parser.add_argument(
        "--geometry",
        default=None,
        help="tomography: beam geometry, parallel | fan (default parallel; fan: astra)",
    )
    parser.add_argument(
        "--keep-rate", type=float, default=None, help="inpainting: fraction of kept pixels (default 0.5)"
    )


def check_operator_parameters(args: argparse.Namespace) -> None:
    """One ``ValueError`` naming the flag for a bad ``--sigma`` / ``--angles`` / ``--keep-rate`` /
    ``--backend`` / ``--geometry``."""
    if args.sigma is not None and (not math.isfinite(args.sigma) or args.sigma <= 0):
        raise ValueError(f"--sigma: expected a blur width > 0, got {args.sigma}")
    if args.angles is not None and args.angles <= 0:
        raise ValueError(f"--angles: expected a positive number of angles, got {args.angles}")
    if args.keep_rate is not None and not 0 <= args.keep_rate <= 1:
        raise ValueError(f"--keep-rate: expected a fraction in [0, 1], got {args.keep_rate}")
    from liftinv.operators import astra

    if args.backend is not None and args.backend not in astra.TOMOGRAPHY_BACKENDS:
        raise ValueError(
            f"--backend: expected one of {' | '.join(astra.TOMOGRAPHY_BACKENDS)}, got {args.backend!r}"
        )
    if args.geometry is not None and args.geometry not in astra.GEOMETRIES:
        raise ValueError(f"--geometry: expected one of {' | '.join(astra.GEOMETRIES)}, got {args.geometry!r}")
    # for another --operator, operator_parameters reports that these flags are tomography's
    tomography = getattr(args, "operator", None) in (None, "tomography")
    if tomography and args.geometry == "fan" and args.backend != "astra":
        raise ValueError("--geometry fan: needs --backend astra (the torch backend is parallel beam only)")
    if tomography and args.backend == "astra" and not astra.ASTRA_AVAILABLE:
        raise ValueError(
            f"--backend astra: needs astra-toolbox, which is not installed: {astra.ASTRA_INSTALL}"
        )


def add_parser(subparsers: Any, name: str, help_: str) -> argparse.ArgumentParser:
    """Register the ``reconstruct`` sub-command on ``subparsers`` (argparse sub-parsers action)."""
    parser = subparsers.add_parser(
        name,
        help=help_,
        description="Reconstruct an image from simulated noisy measurements, or from measurement files "
        "(--measurements), classically or with a trained model."
        + " Metrics: deepinv PSNR(max_pixel=1) and SSIM() (torchmetrics Gaussian SSIM) on the "
        "reconstruction clipped to [0, 1].",
        formatter_class=DefaultsOnceHelpFormatter,
    )
    parser.add_argument(
        "--operator",
        default=None,
        help=f"forward operator: {' | '.join(OPERATOR_NAMES)} (default: the model's, else blur)",
    )
    parser.add_argument(
        "--image",
        default=None,
        help="bundled image name (camera, shepp_logan, ...) or a file path (default camera)",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="image side in pixels (square; default 128, a CT model's training size, or the size of "
        "image-shaped --measurements)",
    )
    parser.add_argument("--method", default="tv", help=f"reconstruction method: {' | '.join(METHOD_NAMES)}")
    parser.add_argument(
        "--noise",
        type=float,
        default=None,
        help="standard deviation of Gaussian measurement noise (default: the model's training noise, else "
        "0.01); with --measurements the known noise level for the discrepancy principle (default: estimated)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated noise")
    parser.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="regularisation weight (default: by operator and noise; with --measurements by the "
        "discrepancy principle)",
    )
    parser.add_argument(
        "--max-iter", type=int, default=None, help="iterations of tikhonov/tv (default 200/300)"
    )
    add_operator_parameters(parser)
    parser.add_argument(
        "--measurements",
        default=None,
        metavar="FILE|DIR",
        help="reconstruct from these measurements (.npy, .npz, .tif, .png, or a folder of them: a batch) "
        "instead of simulating",
    )
    parser.add_argument(
        "--operator-config",
        default=None,
        metavar="JSON",
        help="the operator of --measurements (liftinv simulate writes one; default: --operator and its flags)",
    )
    parser.add_argument(
        "--truth", default=None, metavar="FILE|DIR", help="ground truth of --measurements (for PSNR and SSIM)"
    )
    parser.add_argument(
        "--out",
        default="reconstruction.png",
        help="output: a figure (.png, .pdf, .svg) or the reconstructed array (.npy, .npz, .tif, .tiff)",
    )
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the metrics as JSON")
    parser.add_argument(
        "--model",
        default=None,
        metavar="PATH",
        help="trained model (liftinv train --out PATH); blur, inpainting, denoising models apply at any --size",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="apply --model even to another operator parameter (--sigma, --angles, --keep-rate, kernel, mask) or "
        "a noise level more than 2x from its training noise (refused otherwise)",
    )
    add_threads_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


#: operator parameter -> the flag that sets it
PARAMETER_FLAGS = {
    "sigma": "--sigma",
    "angles": "--angles",
    "backend": "--backend",
    "geometry": "--geometry",
    "keep_rate": "--keep-rate",
}


def _check_output(flag: str, path: str, extensions: tuple[str, ...] | None = None) -> None:
    """An output file: its folder exists, it is not a folder, and (if given) it has one of ``extensions``."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{flag}: the folder {folder} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"{flag}: {path} is a folder; expected a file path")
    if extensions is not None and os.path.splitext(path)[1].lower() not in extensions:
        raise ValueError(
            f"{flag}: expected a file ending in {', '.join(extensions)}, got {os.path.basename(path)!r}"
        )


def _check_input(flag: str, path: str | None, *, folder: bool) -> None:
    """An input file (or, for ``folder=True``, a measurement file or folder) that exists."""
    from liftinv.datasets import MEASUREMENT_EXTENSIONS

    if path is None:
        return
    if not os.path.exists(path):
        raise FileNotFoundError(f"{flag}: no such file{' or folder' * folder}: {path}")
    if os.path.isdir(path) and not folder:
        raise ValueError(f"{flag}: {path} is a folder; expected a file")
    if folder and os.path.isfile(path) and os.path.splitext(path)[1].lower() not in MEASUREMENT_EXTENSIONS:
        raise ValueError(
            f"{flag}: expected a {', '.join(MEASUREMENT_EXTENSIONS)} file or a folder of them, got "
            f"{os.path.basename(path)!r}"
        )


def _validate_paths(args: argparse.Namespace) -> None:
    """Every path argument, before any computation."""
    from matplotlib.backend_bases import FigureCanvasBase

    figures = tuple(f".{ext}" for ext in FigureCanvasBase.get_supported_filetypes())
    _check_output("--out", args.out, tuple(dict.fromkeys(ARRAY_EXTENSIONS + figures)))
    if args.json is not None:
        _check_output("--json", args.json)
    if args.model is not None and not os.path.isfile(args.model):
        raise FileNotFoundError(f"--model: no such file: {args.model}")
    if args.force and args.model is None:
        raise ValueError("--force: only with --model (it applies a model to data it was not trained for)")
    for flag, value in (("--operator-config", args.operator_config), ("--truth", args.truth)):
        if value is not None and args.measurements is None:
            raise ValueError(f"{flag}: only with --measurements (the measurements it belongs to)")
    _check_input("--measurements", args.measurements, folder=True)
    _check_input("--operator-config", args.operator_config, folder=False)
    _check_input("--truth", args.truth, folder=True)
    if args.measurements is None:
        return
    if args.image is not None:
        raise ValueError("--image: not used with --measurements (give the ground truth with --truth)")
    if args.operator_config is not None:
        operator_flags = {"--operator": args.operator, "--size": args.size}
        operator_flags.update({flag: getattr(args, key) for key, flag in PARAMETER_FLAGS.items()})
        for flag, value in operator_flags.items():
            if value is not None:
                raise ValueError(f"{flag}: the operator comes from --operator-config; leave {flag} out")


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
    check_operator_parameters(args)
    _validate_paths(args)


def operator_parameters(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """The operator parameters given on the command line (each flag only for its operator)."""
    given = {key: getattr(args, key) for key in PARAMETER_FLAGS}
    owner = {"sigma": "blur", "angles": "tomography", "keep_rate": "inpainting"}
    owner.update(backend="tomography", geometry="tomography")
    for key, value in given.items():
        if value is not None and owner[key] != name:
            raise ValueError(f"{PARAMETER_FLAGS[key]} only applies to --operator {owner[key]}")
    return {k: v for k, v in given.items() if v is not None}


def operator_settings(description: dict[str, Any]) -> str:
    """``"key=value, ..."`` of an operator description, without name and size (arrays as their shape)."""
    import numpy as np

    def short(value: Any) -> str:
        if isinstance(value, list) and value and isinstance(value[0], list):
            return f"<{'x'.join(map(str, np.shape(value)))} array>"
        return str(value)

    return ", ".join(f"{k}={short(v)}" for k, v in description.items() if k not in ("name", "image_size"))


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
    from liftinv.unrolled.io import is_resizable, operator_differences

    trained = getattr(getattr(model, "operator", None), "describe", None)
    if trained is None:  # a model that does not describe its operator: the command line's, unchecked
        name = args.operator or "blur"
        operator = make_operator(name, args.size or 128, **operator_parameters(args, name))
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
    kwargs.update(operator_parameters(args, name))
    operator = make_operator(name, size, **kwargs)
    for key, mine, asked in operator_differences(trained, dict(operator.describe())):
        if key in PARAMETER_FLAGS and not args.force:
            raise ValueError(
                f"{PARAMETER_FLAGS[key]}: the model was trained for {name} with {key}={mine}, but "
                f"{PARAMETER_FLAGS[key]} {asked} was asked for; train a model for {key}={asked} (or pass --force "
                "to apply this one anyway)"
            )
        if key == "image_size" and not resizable:
            raise ValueError(
                f"--size: the model was trained for {_trained_for(trained)} on images {mine} (C, H, W); "
                f"--size {size} asks for images {asked}, another geometry: a {name} network works only at the "
                f"geometry it was trained for (train a model for this size, or leave --size out)"
            )
    return operator, _model_for(args, model, operator)


def _model_for(args: argparse.Namespace, model: Any, operator: Any):
    """The model for the measurements of ``operator`` (:func:`liftinv.unrolled.io.model_for_operator`); with
    ``--force`` a mismatch is a warning and the model's weights are applied to ``operator``."""
    from liftinv.unrolled.io import ModelMismatchError, model_for_operator

    try:
        return model_for_operator(model, operator, name="--model: the model")
    except ModelMismatchError as exc:
        if not args.force:
            raise ModelMismatchError(f"{exc} (or pass --force to apply it anyway)") from None
        if not hasattr(model, "with_operator"):
            raise
        _warn(f"--force: {exc}; applying it anyway")
        forced = model.with_operator(operator).eval()
        forced.metadata = getattr(model, "metadata", None)
        return forced


def _warn(text: str) -> None:
    """One line ``liftinv reconstruct: warning: ...`` on stderr."""
    print(f"liftinv reconstruct: warning: {text}", file=sys.stderr)


def _training_noise(model: Any) -> float | None:
    """The noise level the model was trained at (its saved task), None when the file does not say."""
    task = (getattr(model, "metadata", None) or {}).get("task")
    noise = task.get("noise") if isinstance(task, dict) else None
    return float(noise) if isinstance(noise, int | float) else None


def _check_noise(
    args: argparse.Namespace, trained: float | None, levels: list[float], estimated: bool
) -> None:
    """Refuse (unless ``--force``: warn) noise levels out of reach of a model trained at ``trained``
    (:func:`liftinv.unrolled.io.noise_mismatch`)."""
    from liftinv.unrolled.io import noise_mismatch

    for index, level in enumerate(levels):
        problem = noise_mismatch(trained, level, estimated=estimated)
        if problem is None:
            continue
        if estimated:
            where = (
                f"--measurements: image {index} of {args.measurements}"
                if len(levels) > 1
                else "--measurements"
            )
            what = f"{where} has an estimated {problem}"
            advice = "give the known level with --noise, train a model for this noise level"
        else:
            what, advice = f"--noise: the data has {problem}", "train a model for this noise level"
        if not args.force:
            raise ValueError(f"{what}; {advice}, or pass --force to apply it anyway")
        _warn(f"--force: {what}; applying it anyway")
        return


def _figure(path: str, truth, measurement, reconstruction, titles: list[str]) -> None:
    """truth | measurement | reconstruction (the first image of a batch); no truth panel for ``truth=None``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [p for p in (truth, measurement, reconstruction) if p is not None]
    figure = Figure(figsize=(4 * len(panels), 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    for i, (panel, title) in enumerate(zip(panels, titles)):
        axis = figure.add_subplot(1, len(panels), i + 1)
        image = panel[0, 0].detach().cpu().numpy()
        is_image = panel.shape[-2:] == reconstruction.shape[-2:]
        limits = {"vmin": 0.0, "vmax": 1.0} if is_image else {}
        axis.imshow(image, cmap="gray", aspect="equal" if is_image else "auto", **limits)
        axis.set_title(title, fontsize=10)
        axis.set_xticks([])
        axis.set_yticks([])
        if not is_image:
            axis.set_xlabel("angle")
            axis.set_ylabel("detector")
    figure.savefig(path, dpi=120)


def _write_output(args: argparse.Namespace, x_hat, figure: Any) -> None:
    """The reconstructed array (``--out`` .npy/.npz/.tif/.tiff) or the figure (``figure()``)."""
    if os.path.splitext(args.out)[1].lower() in ARRAY_EXTENSIONS:
        from liftinv.datasets import save_measurements

        save_measurements(args.out, x_hat)
    else:
        figure()
    print(f"wrote {args.out}")


def _write_json(path: str | None, record: dict[str, Any]) -> None:
    if path:
        from liftinv.files import save_text_file

        save_text_file(json.dumps(record, indent=2) + "\n", path)


def run(args: argparse.Namespace) -> int:
    """Run ``liftinv reconstruct``; returns 0 on success (bad input raises, and the CLI prints one line)."""
    _validate(args)
    use_threads(args)
    if args.measurements is not None:
        return _run_measurements(args)
    import torch

    from liftinv.datasets import load_image
    from liftinv.metrics import psnr as psnr_of
    from liftinv.metrics import ssim as ssim_of
    from liftinv.operators import GaussianNoise, make_operator, reconstruct

    if args.model:
        model = _load_model(args.model)
        trained_size = "x".join(map(str, getattr(model, "image_size", (0, 0, 0))[1:]))
        trained_noise = _training_noise(model)
        if args.noise is not None:  # before any work
            _check_noise(args, trained_noise, [args.noise], estimated=False)
        operator, model = _model_operator(args, model)
        noise = (
            args.noise if args.noise is not None else (trained_noise if trained_noise is not None else 0.01)
        )
    else:
        name = args.operator or "blur"
        operator = make_operator(name, args.size or 128, **operator_parameters(args, name))
        noise = 0.01 if args.noise is None else args.noise
    args.size, args.noise = operator.image_size[-1], noise  # the values used (printed, JSON)
    args.image = args.image or "camera"
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
    print(
        f"operator:   {operator.name} ({operator_settings(description)}), image {args.image} "
        f"{args.size}x{args.size}, noise {args.noise}"
    )
    print(f"method:     {label}{detail}, {seconds:.2f} s")
    print(f"PSNR:       {psnr:.2f} dB   (deepinv PSNR(max_pixel=1), reconstruction clipped to [0, 1])")
    print(f"SSIM:       {ssim:.4f}     (deepinv SSIM(): torchmetrics Gaussian window 11x11, sigma 1.5)")
    measurement_title = f"measurement ({operator.name}, noise {args.noise:g})"
    if y.shape == x.shape:
        measurement_title += f"\nPSNR {float(psnr_of(y.clamp(0, 1), x)):.2f} dB"
    titles = [f"truth ({args.image})", measurement_title, f"{label}\nPSNR {psnr:.2f} dB, SSIM {ssim:.3f}"]
    _write_output(args, x_hat, lambda: _figure(args.out, x, y, clipped, titles))
    _write_json(
        args.json,
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
    )
    return 0


# ------------------------------------------------------------------------------ from measurement files
def _measured_operator(args: argparse.Namespace, y: Any, model: Any):
    """The operator of ``--measurements`` (from ``--operator-config``, the model or the flags) and the model."""
    from liftinv.datasets import load_operator
    from liftinv.operators import make_operator

    if args.operator_config is not None:
        operator = load_operator(args.operator_config, what="--operator-config")
        if model is not None:
            model = _model_for(args, model, operator)
        return operator, model
    image_shaped = y.shape[-1] == y.shape[-2] and (args.operator or "blur") != "tomography"
    if model is not None:
        trained = getattr(getattr(model, "operator", None), "name", None)
        if args.size is None and image_shaped and trained != "tomography":
            args.size = y.shape[-1]
        return _model_operator(args, model)
    name = args.operator or "blur"
    size = args.size or (tuple(y.shape[1:]) if name != "tomography" else 128)
    return make_operator(name, size, **operator_parameters(args, name)), None


def _noise_levels(args: argparse.Namespace, y: Any, operator: Any) -> tuple[list[float], bool]:
    """The noise level of each measurement of ``y``: ``--noise`` when given, else estimated from ``y``
    (:func:`liftinv.datasets.estimate_noise`); and whether they are estimates."""
    from liftinv.datasets import estimate_noise

    if args.noise is not None:
        return [args.noise] * y.shape[0], False
    return estimate_noise(y, operator).tolist(), True


def _per_image(values: list[float], digits: str = ".3g") -> str:
    return ", ".join(format(v, digits) for v in values)


def _run_measurements(args: argparse.Namespace) -> int:
    """``liftinv reconstruct --measurements``: the operator from a config (or flags), alpha by discrepancy."""
    import torch

    from liftinv.datasets import discrepancy_alpha, load_measurements
    from liftinv.metrics import psnr as psnr_of
    from liftinv.metrics import ssim as ssim_of
    from liftinv.operators import reconstruct

    y = load_measurements(args.measurements, what="--measurements")
    model = _load_model(args.model) if args.model else None
    trained_noise = _training_noise(model)
    operator, model = _measured_operator(args, y, model)
    source = f"from {args.operator_config}" if args.operator_config else "from the command line"
    if tuple(y.shape[1:]) != tuple(operator.measurement_size):
        raise ValueError(
            f"--measurements: {args.measurements} holds measurements of shape {list(y.shape)}, but the operator "
            f"({operator.name} of images {list(operator.image_size)}, {source}) measures "
            f"[B, {', '.join(map(str, operator.measurement_size))}]"
        )
    batch = y.shape[0]
    truth = load_measurements(args.truth, what="--truth") if args.truth else None
    if truth is not None and tuple(truth.shape) != (batch, *operator.image_size):
        raise ValueError(
            f"--truth: {args.truth} holds images of shape {list(truth.shape)}; expected "
            f"[{batch}, {', '.join(map(str, operator.image_size))}] (one image per measurement)"
        )
    alphas: list[float] | None = None
    sigmas: list[float] | None = None
    start = time.perf_counter()
    if model is not None:
        levels, estimated = _noise_levels(args, y, operator)
        _check_noise(args, trained_noise, levels, estimated=estimated)
        with torch.no_grad():
            x_hat = model.reconstruct(y) if hasattr(model, "reconstruct") else model(y)
        label, how = f"model {os.path.basename(args.model)}", "a trained network (no weight)"
    elif args.method == "pinv":
        x_hat, label, how = reconstruct(y, operator, "pinv").x, "pinv", "no weight"
    elif args.alpha is not None:
        kwargs = {"max_iter": args.max_iter, "progress": not args.no_progress}
        x_hat = reconstruct(y, operator, args.method, alpha=args.alpha, **kwargs).x
        label, how, alphas = args.method, "given (--alpha)", [args.alpha] * batch
    else:
        sigmas, estimated = _noise_levels(args, y, operator)
        progress = not args.no_progress
        alphas, record = discrepancy_alpha(
            y, operator, args.method, sigmas, max_iter=args.max_iter, progress=progress
        )
        x_hat, label = record["x"], args.method
        origin = "estimated from the measurements" if estimated else "--noise"
        how = (
            f"discrepancy principle: the largest alpha of a x2 grid with ||A x - y|| <= sigma * sqrt(m), "
            f"sigma {_per_image(sigmas)} ({origin})"
        )
        if not all(record["met"]):
            how += (
                "; not met on the grid by image(s) "
                + _per_image([i for i, met in enumerate(record["met"]) if not met], "d")
                + " (the smallest alpha used)"
            )
    seconds = time.perf_counter() - start
    expected = (batch, *operator.image_size)
    if not isinstance(x_hat, torch.Tensor) or tuple(x_hat.shape) != expected:
        raise RuntimeError(
            f"the reconstruction has shape {getattr(x_hat, 'shape', None)}, expected {list(expected)}"
        )
    with torch.no_grad():
        residuals = [
            float((operator.A(x_hat[i : i + 1]) - y[i : i + 1]).norm() / y[i].norm().clamp_min(1e-30))
            for i in range(batch)
        ]
    description = operator.describe()
    shape = "x".join(map(str, operator.image_size[1:]))
    print(f"measurements: {args.measurements} ({batch} measurement{'s' * (batch > 1)} {list(y.shape[1:])})")
    print(f"operator:   {operator.name} ({operator_settings(description)}), images {shape}, {source}")
    print(f"method:     {label}, {seconds:.2f} s")
    if alphas is not None:
        print(f"alpha:      {_per_image(alphas)} ({how})")
    print(f"residual:   ||A x - y|| / ||y|| = {_per_image(residuals, '.4g')}")
    record_json: dict[str, Any] = {
        "measurements": args.measurements,
        "operator": {k: v for k, v in description.items() if k != "mask" or isinstance(v, str)},
        "operator_config": args.operator_config,
        "method": label,
        "alpha": alphas,
        "alpha_choice": how,
        "noise": sigmas,
        "residual": residuals,
        "seconds": seconds,
    }
    clipped = x_hat.clamp(0.0, 1.0)
    weight = "" if alphas is None else f", alpha {alphas[0]:.3g}"
    titles = [f"measurement ({operator.name})", f"{label}{weight}\nresidual {residuals[0]:.3g}"]
    if truth is not None:
        psnrs, ssims = psnr_of(clipped, truth).tolist(), ssim_of(clipped, truth).tolist()
        psnr, ssim = sum(psnrs) / batch, sum(ssims) / batch
        print(f"PSNR:       {psnr:.2f} dB   (deepinv PSNR(max_pixel=1), reconstruction clipped to [0, 1])")
        print(f"SSIM:       {ssim:.4f}     (deepinv SSIM(): torchmetrics Gaussian window 11x11, sigma 1.5)")
        if batch > 1:
            print(f"per image:  PSNR {_per_image(psnrs, '.2f')} dB; SSIM {_per_image(ssims, '.4f')}")
        record_json.update(truth=args.truth, psnr=psnr, ssim=ssim, psnr_per_image=psnrs, ssim_per_image=ssims)
        titles = [
            f"truth ({os.path.basename(args.truth)})",
            titles[0],
            f"{label}{weight}\nPSNR {psnrs[0]:.2f} dB, SSIM {ssims[0]:.3f}",
        ]
    if batch > 1 and os.path.splitext(args.out)[1].lower() not in ARRAY_EXTENSIONS:
        print(f"figure:     the first of the {batch} images")
    _write_output(args, x_hat, lambda: _figure(args.out, truth, y, clipped, titles))
    _write_json(args.json, record_json)
    return 0
