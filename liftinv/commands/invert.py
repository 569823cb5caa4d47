"""``liftinv invert``: invert a pre-trained network from a (noisy) output.

Example::

    liftinv invert --model perceptron --noise 0.02 --method lifted --alpha 10 --iters 1000 --seed 0 \\
        --device cpu --out inversion.png

Simulates ``f = N(u) + noise ||N(u)|| e / ||e||`` (relative Gaussian noise, ``e`` seeded by ``--seed``) for a
test image ``u``, inverts ``N`` with :func:`liftinv.inversion.invert` (TV regulariser, box [0, 1]), prints
PSNR and SSIM of the recovered input (:func:`liftinv.metrics.psnr` / :func:`~liftinv.metrics.ssim`:
deepinv's ``PSNR(max_pixel=1)`` and ``SSIM()``, the latter being torchmetrics' Gaussian-window SSIM, 11 x 11,
sigma 1.5) and the relative residual ``||N(u) - f|| / ||f||``,
and writes a figure: truth | output f | reconstruction.

``--model`` is

* ``perceptron``: the P2 ReLU perceptron (:func:`liftinv.inversion.recipes.perceptron`, ``--image-size`` x
  ``--image-size`` -> ``--features``), test image Shepp-Logan (``--image``: ``shepp-logan``, ``phantom``);
* ``autoencoder``: the encoder of the convolutional autoencoder of :func:`liftinv.inversion.recipes.autoencoder`
  (trained on first use, ~30 s, cached in ``--cache``), test image a held-out digit (``--image`` = its index);
* ``natural-encoder``, ``autoencoder128``, ``resnet-features``, ``unrolled``: the other recipes of
  :data:`liftinv.inversion.recipes.RECIPES` (:func:`~liftinv.inversion.recipes.get_recipe`; the trained ones are
  built on first use and cached in ``--cache``; the natural-image encoders train on ``--images DIR``, default
  bundled scikit-image images), test input ``--image`` = an index into the recipe's held-out test inputs, TV
  weight the recipe's ``alpha``;
* ``PATH``: a TorchScript archive (``torch.jit.save(torch.jit.script(model))``; gradient inversion, and lifted
  inversion when the scripted module is a liftable ``nn.Sequential``), or weights plus a plain configuration, read
  with ``torch.load(weights_only=True)``: the ``model.pt``
  of ``liftinv train-classifier`` (the classifier is rebuilt from its configuration), a model file of
  ``liftinv train`` (an unrolled network), or an autoencoder cache written by
  ``liftinv.inversion.recipes.autoencoder(path=...)`` (its encoder is inverted). A pickled ``nn.Module``
  (``torch.save(model)``) needs code to load and is refused in one line before any of it runs. The per-sample
  input shape comes from the file's configuration, a first ``nn.Linear`` layer, or ``--input-shape C,H,W``;
  the test image is Shepp-Logan resized to it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import warnings
from typing import Any

from liftinv.commands.help_format import DefaultsOnceHelpFormatter
from liftinv.commands.threads import add_threads_argument, use_threads

#: recipes of :data:`liftinv.inversion.recipes.RECIPES` run through their ``InversionProblem`` (test inputs,
#: alpha); "perceptron" and "autoencoder" keep their own options (--image-size / --features, digit index)
RECIPE_MODELS = ("natural-encoder", "autoencoder128", "resnet-features", "unrolled")
#: recipes whose encoder trains on natural images (``--images``)
_NATURAL = ("natural-encoder", "autoencoder128")
#: recipes that train a network on first use and cache it (``path=``)
_CACHED = (*_NATURAL, "resnet-features")
MODELS = ("perceptron", "autoencoder", *RECIPE_MODELS)


def add_parser(subparsers: Any, name: str, help_: str) -> argparse.ArgumentParser:
    """Register the ``invert`` sub-command on ``subparsers`` (an argparse sub-parsers action).

    Parameters
    ----------
    subparsers : argparse sub-parsers action
        From ``ArgumentParser.add_subparsers``.
    name : str
        The command name (``"invert"``).
    help_ : str
        One-line help shown by ``liftinv --help``.

    Returns
    -------
    argparse.ArgumentParser
        The sub-command's parser (errors are reported in one line, exit status 1).
    """
    parser = subparsers.add_parser(
        name,
        help=help_,
        description="Invert a pre-trained network from a noisy output by lifted Bregman inversion "
        "(Wang & Benning 2023) or gradient-based inversion, with TV. Prints PSNR / SSIM (deepinv PSNR(max_pixel=1), "
        "SSIM() = torchmetrics Gaussian SSIM) and writes truth | output | reconstruction.",
        formatter_class=DefaultsOnceHelpFormatter,
    )
    parser.add_argument(
        "--model",
        default="perceptron",
        help="perceptron | autoencoder | natural-encoder | autoencoder128 | resnet-features | unrolled | PATH "
        "(model.pt of train-classifier, model file of train, autoencoder cache)",
    )
    parser.add_argument(
        "--noise", type=float, default=0.02, help="relative noise level delta (f += delta ||f|| e/||e||)"
    )
    parser.add_argument("--method", default="lifted", help="lifted | gradient")
    parser.add_argument(
        "--solver",
        default=None,
        help="input-block solver: pdhg | adam (| lbfgs for gradient); "
        "default pdhg for lifted, adam for gradient",
    )
    parser.add_argument(
        "--coupling",
        default="auto",  # the API's default (tests/test_cli_invert.py ties them; no torch import here)
        help="lifted: auto (the API default: active) | relaxed (free last state) | hard (x_L = f) | continuation "
        "(relaxed, then hard for the second half) | active (hard on the outputs clearly above the noise, relaxed "
        "on the others)",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="TV weight (default: the recipe's, 10 for the "
        "64x64 perceptron, 3e-3 for the autoencoder, 1 for a PATH model)",
    )
    parser.add_argument(
        "--lambdas", type=float, default=1.0, help="lifted penalty weight lambda (all layers)"
    )
    parser.add_argument(
        "--inertia",
        type=float,
        default=0.9,  # the API's default (tests/test_cli_invert.py ties them)
        help="lifted: heavy-ball weight in [0, 1) of the inertial BCD, with restart (0: plain BCD)",
    )
    parser.add_argument("--iters", type=int, default=1000, help="iterations (same budget for both methods)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise and the model recipe")
    parser.add_argument("--device", default="cpu", help="cpu | cuda[:k]")
    parser.add_argument("--double", action="store_true", help="float64 instead of float32")
    parser.add_argument(
        "--image",
        default=None,
        help="test image: shepp-logan | phantom (perceptron, PATH), or an index into the held-out test inputs "
        "(autoencoder and the other recipes; default 0)",
    )
    parser.add_argument(
        "--images",
        default=None,
        help="natural-encoder / autoencoder128: folder of training images (e.g. ../shared/data/Train400; "
        "default bundled scikit-image images)",
    )
    parser.add_argument("--image-size", type=int, default=64, help="perceptron: image side")
    parser.add_argument("--features", type=int, default=512, help="perceptron: number of outputs")
    parser.add_argument(
        "--input-shape", default=None, help="PATH model: per-sample input shape, e.g. 1,64,64"
    )
    parser.add_argument(
        "--cache",
        default=None,
        help="cache file or folder of the trained recipes (autoencoder, natural-encoder, autoencoder128, "
        "resnet-features; default: the user cache folder, $XDG_CACHE_HOME/liftinv or ~/.cache/liftinv, one file "
        "per setting)",
    )
    parser.add_argument("--out", default="inversion.png", help="output figure (png, pdf, svg); '' for none")
    add_threads_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


class InvertError(ValueError):
    """Bad input for ``liftinv invert`` (reported as one line)."""


#: bytes per weight of the perceptron (float32; float64 with --double is checked at 8)
_WEIGHT_BYTES = 4


def _check_out(out: str) -> None:
    """Refuse an ``--out`` figure that could not be written, before any work: an existing folder, a folder
    that does not exist (or is a file), or a file type matplotlib cannot write."""
    from matplotlib.backend_bases import FigureCanvasBase

    if os.path.isdir(out):
        raise InvertError(f"--out {out!r} is a folder; expected a figure file name (e.g. inversion.png)")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        what = "is a file, not a folder" if os.path.exists(folder) else "does not exist"
        raise InvertError(f"--out {out!r}: the folder {folder} {what}")
    suffix = os.path.splitext(out)[1].lower().lstrip(".")
    types = FigureCanvasBase.get_supported_filetypes()
    if suffix and suffix not in types:
        raise InvertError(
            f"--out {out!r}: cannot write a .{suffix} figure; expected one of {', '.join(types)}"
        )


def _check_perceptron_size(image_size: int, features: int, double: bool) -> None:
    """Refuse a perceptron whose weights (``features x image_size^2``) would not fit in the memory available
    now, before it is built."""
    from liftinv.operators.registry import available_memory, format_bytes

    needed = features * image_size**2 * (2 * _WEIGHT_BYTES if double else _WEIGHT_BYTES)
    free = available_memory()
    if free is not None and needed > free:
        raise InvertError(
            f"--image-size {image_size} with --features {features} would need about {format_bytes(needed)} "
            f"for the perceptron's weights; this machine has {format_bytes(free)} available"
        )


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        raise InvertError(f"--input-shape must look like 1,64,64, got {text!r}") from None
    if not shape or any(s <= 0 for s in shape):
        raise InvertError(f"--input-shape must list positive sizes, got {text!r}")
    return shape


def _is_torchscript(path: str) -> bool:
    """Whether ``path`` is a TorchScript archive (``torch.jit.save``: a zip with ``code/`` and constants)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names)


#: configuration keys of a ``liftinv train-classifier`` model file (``model.pt``)
CLASSIFIER_KEYS = {"arch", "activation", "hidden", "input_shape", "n_classes"}


def load_model(path: str):
    """Load a network to invert from ``path``: weights plus a plain configuration, never pickled code.

    Parameters
    ----------
    path : str
        A TorchScript archive (``torch.jit.save``), ``model.pt`` written by ``liftinv train-classifier`` (``{"state_dict", "config"}``; the classifier is
        rebuilt from its configuration), an autoencoder cache written by
        :func:`liftinv.inversion.recipes.autoencoder` (its encoder is inverted), or a model file written by
        ``liftinv train`` / :func:`liftinv.unrolled.save_model` (an unrolled network; its input is the
        measurement).

    Returns
    -------
    model : nn.Module
        The network to invert.
    extras : dict
        May hold a ``decoder`` (autoencoder cache).

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    liftinv.files.UnsafeFileError
        (a ``ValueError``, one line) when the file is not a weights-only torch file: a pickled ``nn.Module``
        or any other object that needs code to load is refused before any of it runs.
    InvertError
        When the file holds none of the accepted formats (e.g. a bare ``state_dict``).
    """
    import torch

    from liftinv.files import load_torch_file
    from liftinv.inversion.recipes import Autoencoder, is_autoencoder_cache
    from liftinv.unrolled.io import FORMAT

    if not os.path.isfile(path):
        raise FileNotFoundError(f"--model {path!r}: no such file (and not one of {', '.join(MODELS)})")
    if _is_torchscript(path):  # TorchScript runs in torch's interpreter; no Python object is unpickled
        try:
            net = torch.jit.load(path, map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - one line, whatever torch raises
            first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
            raise InvertError(
                f"--model {path!r} is a TorchScript archive that does not load: {first}"
            ) from None
        return net.eval(), {}
    obj = load_torch_file(path, "--model")
    cfg = obj.get("config") if isinstance(obj, dict) else None
    if is_autoencoder_cache(obj):
        ae = Autoencoder(cfg["code"], cfg["channels"])
        ae.load_state_dict(obj["state_dict"])
        ae.eval().requires_grad_(False)
        return ae.encoder, {"decoder": ae.decoder}
    if isinstance(cfg, dict) and CLASSIFIER_KEYS <= set(cfg) and isinstance(obj.get("state_dict"), dict):
        from liftinv.commands.train_classifier import build_model

        net = build_model(
            cfg["arch"], cfg["activation"], cfg["hidden"], tuple(cfg["input_shape"]), cfg["n_classes"]
        )
        net.load_state_dict(obj["state_dict"])
        net.input_shape = tuple(cfg["input_shape"])
        return net.eval().requires_grad_(False), {}
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        from liftinv.unrolled.io import load_model as load_unrolled

        net = load_unrolled(path)
        net.input_shape = tuple(net.measurement_size)
        return net.eval().requires_grad_(False), {}
    raise InvertError(
        f"--model {path!r} holds no network liftinv can rebuild (weights plus a plain configuration): give the "
        "model.pt of `liftinv train-classifier`, a model file of `liftinv train`, or an autoencoder cache; a "
        "bare state_dict lacks the architecture"
    )


def _input_index(image: str | None, n: int) -> int:
    """``--image`` as an index into a recipe's ``n`` held-out test inputs (default 0)."""
    try:
        k = int(image or 0)
    except ValueError:
        raise InvertError(f"--image must be an index of a held-out test input, got {image!r}") from None
    if not 0 <= k < n:
        raise InvertError(f"--image must be in [0, {n - 1}], got {k}")
    return k


def _problem(args) -> dict[str, Any]:
    """Model, truth image, input shape and default alpha for ``args.model``."""
    import torch

    from liftinv.datasets import random_phantoms, shepp_logan
    from liftinv.files import user_cache_dir
    from liftinv.inversion import input_shape_of, recipes

    if args.model == "perceptron":
        n = args.image_size
        net = recipes.perceptron(n, args.features, seed=args.seed)
        img = args.image or "shepp-logan"
        if img in ("shepp-logan", "shepp_logan"):
            u = shepp_logan(n, source="skimage")
        elif img == "phantom":
            u = random_phantoms(1, n, seed=args.seed, kind="mixed")
        else:
            raise InvertError(f"--image must be shepp-logan or phantom for the perceptron, got {img!r}")
        return {"model": net, "u": u, "input_shape": (1, n, n), "alpha": 10.0 * (n / 64) ** 2, "extras": {}}
    if args.model == "autoencoder":
        cache = args.cache or user_cache_dir()  # a folder: one file per setting (seed included)
        prob = recipes.get_recipe("autoencoder", path=cache, seed=args.seed, n_images=297)
        k = _input_index(args.image, prob.inputs.shape[0])
        return {
            "model": prob.model,
            "u": prob.inputs[k : k + 1],
            "input_shape": (1, 16, 16),
            "alpha": 3e-3,
            "extras": {"decoder": prob.extras["decoder"]},
        }
    if args.model in RECIPE_MODELS:
        kw: dict[str, Any] = {"seed": args.seed}
        if args.model in _CACHED:
            kw["path"] = args.cache or user_cache_dir()
        if args.images is not None:
            kw["images"] = args.images
        prob = recipes.get_recipe(args.model, **kw)
        k = _input_index(args.image, prob.inputs.shape[0])
        return {
            "model": prob.model,
            "u": prob.inputs[k : k + 1],
            "input_shape": tuple(prob.input_shape),
            "alpha": prob.alpha,
            "extras": prob.extras,
        }
    model, extras = load_model(args.model)
    if isinstance(model, torch.jit.ScriptModule) and args.method == "lifted":
        raise InvertError(
            f"--model {args.model!r} is TorchScript: lifted inversion needs the layers as Python modules (a "
            "model.pt of train-classifier or a model file of train); use --method gradient for TorchScript"
        )
    shape = _parse_shape(args.input_shape) if args.input_shape else input_shape_of(model)
    if shape is None:
        raise InvertError(
            f"--model {args.model!r}: the input shape cannot be read off the model; pass --input-shape C,H,W"
        )
    if len(shape) == 1 and math.isqrt(shape[0]) ** 2 == shape[0]:
        s = math.isqrt(shape[0])
        image_shape = (1, s, s)
    elif len(shape) >= 2:
        image_shape = shape
    else:
        raise InvertError(
            f"--model {args.model!r}: TV needs image inputs, but the input shape is {shape}; "
            "pass --input-shape C,H,W"
        )
    H, W = image_shape[-2:]
    import torch.nn.functional as F

    u = (
        shepp_logan(max(H, W), source="skimage")
        if (args.image or "shepp-logan") != "phantom"
        else random_phantoms(1, max(H, W), seed=args.seed, kind="mixed")
    )
    u = F.interpolate(u, size=(H, W), mode="bilinear", align_corners=False).clamp(0, 1)
    u = u.expand(1, *((math.prod(image_shape[:-2]),) if len(image_shape) > 2 else (1,)), H, W)
    u = u.reshape(1, *shape).contiguous().to(torch.float32)
    return {
        "model": model,
        "u": u,
        "input_shape": shape,
        "image_shape": image_shape,
        "alpha": 1.0,
        "extras": extras,
    }


def _show(ax, t, title):
    import numpy as np

    a = t.detach().cpu().float().numpy()
    a = a.reshape(a.shape[-2:]) if a.ndim >= 2 and np.prod(a.shape[:-2]) == 1 else a
    if a.ndim == 2:
        ax.imshow(a, cmap="gray", vmin=0, vmax=1)
        ax.axis("off")
    else:
        a = a.reshape(-1)
        ax.plot(a, lw=0.8)
        ax.set_xlabel("output index")
    ax.set_title(title, fontsize=9)


def _figure(path, u, f, rec, out_shape, titles):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
    _show(axes[0], u.reshape(-1, *u.shape[-2:])[0] if u.dim() >= 3 else u, titles[0])
    if len(out_shape) >= 2:
        _show(axes[1], f.reshape(-1, *f.shape[-2:])[0], titles[1])
    else:
        _show(axes[1], f.reshape(-1), titles[1])
    _show(axes[2], rec.reshape(-1, *rec.shape[-2:])[0] if rec.dim() >= 3 else rec, titles[2])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """Run ``liftinv invert``: simulate a noisy output, invert, print PSNR / SSIM / residual, write the figure.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments of :func:`add_parser`.

    Returns
    -------
    int
        0 on success; bad input raises (``ValueError``, ``FileNotFoundError``, ``TypeError``), which
        :func:`liftinv.cli.main` reports as one line with exit status 1.
    """
    if args.method not in ("lifted", "gradient"):
        raise InvertError(f"--method must be lifted or gradient, got {args.method!r}")
    if not (math.isfinite(args.noise) and args.noise >= 0):
        raise InvertError(f"--noise must be a number >= 0, got {args.noise}")
    if args.iters < 1:
        raise InvertError(f"--iters must be >= 1, got {args.iters}")
    if args.alpha is not None and not (math.isfinite(args.alpha) and args.alpha >= 0):
        raise InvertError(f"--alpha must be >= 0, got {args.alpha}")
    if args.image_size < 4 or args.features < 1:
        raise InvertError("--image-size must be >= 4 and --features >= 1")
    if args.model == "perceptron":
        _check_perceptron_size(args.image_size, args.features, args.double)
    if args.images is not None:
        if args.model not in _NATURAL:
            raise InvertError(
                f"--images is the training folder of natural-encoder / autoencoder128, not of --model {args.model}"
            )
        if not os.path.isdir(args.images):
            raise InvertError(f"--images {args.images!r}: no such folder")
    if args.out:
        _check_out(args.out)

    import torch

    from liftinv.inversion import StuckAtStartWarning, invert
    from liftinv.training import resolve_device

    use_threads(args)
    dev = resolve_device(args.device)
    dtype = torch.float64 if args.double else torch.float32
    prob = _problem(args)
    model = prob["model"].to(dev, dtype)
    u = prob["u"].to(dev, dtype)
    with torch.no_grad():
        try:
            f0 = model(u)
        except RuntimeError as exc:
            raise InvertError(
                f"the model does not accept inputs of shape {tuple(u.shape[1:])}: "
                f"{str(exc).splitlines()[0]} (pass --input-shape)"
            ) from None
    g = torch.Generator().manual_seed(args.seed + 1)
    e = torch.randn(f0.shape, generator=g, dtype=dtype).to(dev)
    f = f0 + args.noise * f0.norm() * e / e.norm().clamp(min=1e-30)
    alpha = prob["alpha"] if args.alpha is None else args.alpha
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        res = invert(
            model,
            f,
            regulariser="tv",
            alpha=alpha,
            method=args.method,
            solver=args.solver,
            coupling=args.coupling,
            lambdas=args.lambdas,
            inertia=args.inertia,
            max_iter=args.iters,
            device=dev,
            dtype=dtype,
            progress=not args.no_progress,
            seed=args.seed,
            input_shape=prob["input_shape"],
            image_shape=prob.get("image_shape"),
        )
    for w in caught:  # the API's own warning as one plain line; others as Python shows them
        if issubclass(w.category, StuckAtStartWarning):
            print(f"liftinv invert: warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    from liftinv.metrics import psnr as psnr_of
    from liftinv.metrics import ssim as ssim_of

    img_shape = prob.get("image_shape", prob["input_shape"])
    rec = res.u.detach().cpu().float().clamp(0, 1).reshape(1, *img_shape)
    truth = prob["u"].detach().cpu().float().reshape(1, *img_shape)
    if rec.dim() == 3:
        rec, truth = rec.unsqueeze(1), truth.unsqueeze(1)
    psnr = float(psnr_of(rec, truth)[0])
    ssim = float(ssim_of(rec, truth)[0])
    name = args.method + (f" ({args.coupling})" if args.method == "lifted" else "")
    print(
        f"model {args.model}: {name}, solver {res.info.get('solver')}, alpha {alpha:g}, noise {args.noise:g}, "
        f"{res.iterations} iterations in {res.time:.1f} s on {dev}"
    )
    print(f"PSNR {psnr:.2f} dB  SSIM {ssim:.4f}  residual {float(res.residual[0]):.3e}")
    if args.out:
        out_shape = tuple(f.shape[1:])
        _figure(
            args.out,
            truth[0],
            f[0].detach().cpu(),
            rec[0],
            out_shape,
            ["truth", f"output f ({args.noise:g} noise)", f"{name}: {psnr:.2f} dB, SSIM {ssim:.3f}"],
        )
        print(f"wrote {args.out}")
    return 0
