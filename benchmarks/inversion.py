"""Stability of network inversion: lifted Bregman vs gradient-based inversion as the noise grows.

Models (``--models``, recipes of :mod:`liftinv.inversion.recipes`; the trained ones are cached in
``--cache-dir``):

(a) ``perceptron``: the P2 ReLU perceptron (64 x 64 image -> 512 features, unit-variance Gaussian W), test
    images Shepp-Logan and a random piecewise-constant phantom;
(b) ``autoencoder``: the encoder of a small convolutional autoencoder trained on 16 x 16 digits (32-dim code);
(c) ``natural-encoder``: the fully convolutional encoder (5 convolutions, 64 x 64 -> 16 x 8 x 8) of an
    autoencoder trained on 64 x 64 patches of Train400 (``../shared/data``; bundled images without it);
(d) ``autoencoder128``: the encoder of a convolutional autoencoder with a 128-dim code (32 x 32 patches);
(e) ``resnet-features``: a ResNet-style digit classifier (residual blocks, batch norm folded, average
    pooling) inverted at the output of its second stage (7 lifted layers).

At relative noise levels ``delta`` in {0, 0.5, 1, 2, 5, 10}% (``f = N(u) + delta ||N(u)|| e / ||e||``, one
Gaussian draw ``e`` per image, the same for every method) every method inverts every output with TV for every
``alpha`` of a per-model grid (the same grid for all methods; alpha = 0 included). **Alpha rule**: on the
validation split the alpha with the best mean PSNR per method and noise level (oracle on that split); on the
test split (``--alphas-from VALIDATION_JSON``) each method runs once at its validation alpha.

Methods (same iteration budget, ``--iters``, default 1000; one outer BCD iteration = one gradient iteration):

* ``lifted-default``     :func:`liftinv.inversion.invert`'s defaults exactly (``coupling="auto"``, PDHG, inertia)
* ``lifted-pdhg``        relaxed coupling (free last state, lambda = 1), PDHG input step, plain BCD
* ``lifted-pdhg-hard``   hard coupling x_L = f (P2's direct form; f clipped to >= 0)
* ``lifted-pdhg-cont``   continuation: relaxed for the first half of the budget, hard for the second
* ``lifted-pdhg-active`` hard on the outputs > 3 estimated noise deviations inside the range, relaxed elsewhere
* ``lifted-*-inertial``  the same with the inertial BCD (heavy ball 0.9 with restart)
* ``lifted-adam*``       Adam on the input block (TV smoothed, eps = 1e-2), lr 3e-2
* ``gradient-pdhg``      min 1/2||N(u) - f||^2 + alpha TV(u) by PDHG with the autograd gradient (P2's baseline)
* ``gradient-adam``      the gradient baseline with Adam (same smoothing and lr)

The validation markdown ends with the rule that picks the default (largest worst-case PSNR margin over the
best gradient inversion at noise >= 1 % across the models, ties by the mean margin); the test markdown with
the relative error against the noise level (``inversion_stability.png``) and the default's margins.

Metrics: PSNR (``deepinv.loss.metric.PSNR(max_pixel=1)``), SSIM (``deepinv.loss.metric.SSIM()``), the
relative error ``||u - u_true|| / ||u_true||``, the relative residual ``||N(u) - f|| / ||f||``, wall time of each
batched run. For the autoencoders the decoder's output ``D(f)`` is listed as a learned reference inverse.
``--extras`` measures the spread over random initialisations and the time of 256 outputs per model.

Protocol of issue 15 (two processes in parallel, then one table)::

    python benchmarks/inversion.py --split validation --no-timing --models natural-encoder,autoencoder128 \
        --methods lifted-pdhg-inertial,lifted-pdhg-active-inertial,lifted-pdhg-cont-inertial,gradient-adam,gradient-pdhg \
        --json /tmp/val_b.json --out-dir /tmp/val_b
    python benchmarks/inversion.py --split validation --no-timing --models perceptron,autoencoder,resnet-features \
        --methods (the same) --json /tmp/val_c.json --out-dir /tmp/val_c
    python benchmarks/inversion.py --from-json /tmp/val_c.json,/tmp/val_b.json \
        --json benchmarks/results/inversion_validation.json            # -> inversion_validation.md
    python benchmarks/inversion.py --split test --no-timing --methods lifted-default,gradient-adam,gradient-pdhg \
        --alphas-from benchmarks/results/inversion_validation.json --json ...   # -> inversion.md (+ png)
    python benchmarks/inversion.py --extras --alphas-from benchmarks/results/inversion_validation.json

Usage::

    python benchmarks/inversion.py --quick         # smaller sizes, 300 iterations, tiny trained nets
    python benchmarks/inversion.py --device cuda --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
NOISE_LEVELS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.10)

#: name -> invert() keyword arguments
METHODS = {
    "lifted-pdhg": dict(method="lifted", solver="pdhg", coupling="relaxed"),
    "lifted-pdhg-hard": dict(method="lifted", solver="pdhg", coupling="hard"),
    "gradient-pdhg": dict(method="gradient", solver="pdhg"),
    "lifted-adam": dict(method="lifted", solver="adam", coupling="relaxed"),
    "lifted-adam-hard": dict(method="lifted", solver="adam", coupling="hard"),
    "gradient-adam": dict(method="gradient", solver="adam"),
    "lifted-pdhg-cont": dict(method="lifted", solver="pdhg", coupling="continuation"),
    "lifted-adam-cont": dict(method="lifted", solver="adam", coupling="continuation"),
    "lifted-pdhg-active": dict(method="lifted", solver="pdhg", coupling="active"),
    "lifted-pdhg-inertial": dict(method="lifted", solver="pdhg", coupling="relaxed", inertia=0.9),
    "lifted-pdhg-active-inertial": dict(method="lifted", solver="pdhg", coupling="active", inertia=0.9),
    "lifted-pdhg-cont-inertial": dict(method="lifted", solver="pdhg", coupling="continuation", inertia=0.9),
}
# the methods without "inertial" in their name are plain BCD (inertia 0), as before the inertia option
for _name, _kw in METHODS.items():
    if _kw["method"] == "lifted":
        _kw.setdefault("inertia", 0.0)
#: invert()'s defaults exactly (coupling="auto", PDHG, its default inertia): the default the issue asks about
METHODS["lifted-default"] = dict(method="lifted")
#: the method of METHODS that invert()'s default (coupling="auto", PDHG) runs at alpha > 0
DEFAULT_METHOD = "lifted-default"
#: lifted method -> gradient method with the same input solver (for the time ratio and the comparison)
PAIRS = {
    "lifted-pdhg": "gradient-pdhg",
    "lifted-pdhg-hard": "gradient-pdhg",
    "lifted-adam": "gradient-adam",
    "lifted-adam-hard": "gradient-adam",
    "lifted-pdhg-cont": "gradient-pdhg",
    "lifted-adam-cont": "gradient-adam",
    "lifted-pdhg-active": "gradient-pdhg",
    "lifted-pdhg-inertial": "gradient-pdhg",
    "lifted-pdhg-active-inertial": "gradient-pdhg",
    "lifted-pdhg-cont-inertial": "gradient-pdhg",
    "lifted-default": "gradient-pdhg",
}


#: models of the study, in order (``--models``); see :func:`build_problem`
MODEL_NAMES = ("perceptron", "autoencoder", "natural-encoder", "autoencoder128", "resnet-features")
#: shared image folder of the natural-image recipes (used when present; bundled images otherwise)
TRAIN400 = ROOT.parent.parent / "shared" / "data" / "Train400"


def _check_models(text: str) -> list[str]:
    names = [m for m in text.split(",") if m]
    bad = [m for m in names if m not in MODEL_NAMES]
    if bad or not names:
        raise SystemExit(f"--models: unknown {bad or text!r}; choose from {', '.join(MODEL_NAMES)}")
    return names


def build_problem(name: str, args):
    """The recipe of a model of the study (its split, cache and quick sizes) and its table settings."""
    from liftinv.inversion.recipes import get_recipe

    split = getattr(args, "split", "test")
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    images = TRAIN400 if TRAIN400.is_dir() and not args.quick else None
    source = (
        "Train400 (`../shared/data`, last 40 files held out)" if images else "bundled scikit-image images"
    )
    if name == "perceptron":
        size, feats = (32, 256) if args.quick else (64, 512)
        prob = get_recipe("perceptron", image_size=size, features=feats, n_images=2, split=split)
        scale = (size / 64) ** 2
        return prob, {
            "alphas": [0.0] + [scale * a for a in (1.0, 3.0, 10.0, 30.0)],
            "title": f"(a) ReLU perceptron {size}x{size} -> {feats}",
            "description": f"`liftinv.inversion.recipes.perceptron({size}, {feats})`: W ~ N(0,1), b ~ N(0,1); test "
            "images Shepp-Logan and one random piecewise-constant phantom (validation: two phantoms of another "
            "seed).",
        }
    if name == "autoencoder":
        epochs = 20 if args.quick else 60
        prob = get_recipe(
            "autoencoder", n_images=3 if args.quick else 6, path=args.ae_cache, epochs=epochs, split=split
        )
        info = prob.extras["autoencoder"].train_info
        return prob, {
            "alphas": [0.0, 1e-3, 3e-3, 1e-2, 3e-2],
            "title": "(b) conv encoder, 16x16 digits -> 32-dim code",
            "description": f"`liftinv.inversion.recipes.autoencoder(seed=0, epochs={epochs})` trained (when first "
            f"built; cached afterwards) in {info['train_time']:.0f} s (held-out autoencoder PSNR "
            f"{info['test_psnr']:.1f} dB); invert the encoder (ReLU code); test images: held-out digits "
            "(validation: other held-out digits). 'decoder D(f)' = the decoder applied to the noisy code.",
        }
    if name in ("natural-encoder", "autoencoder128"):
        kw = dict(n_train=512, epochs=2) if args.quick else {}
        prob = get_recipe(name, n_images=2 if args.quick else 3, path=cache, images=images, split=split, **kw)
        info = prob.extras["autoencoder"].train_info
        ae = prob.extras["autoencoder"]
        side = ae.image_size // 2 ** len(ae.channels)
        arch = (
            f"5 convolutions (3x3, then three 4x4 stride 2, then 3x3) with ReLU, feature map "
            f"{ae.features}x{side}x{side} = {ae.features * side * side} values"
            if ae.code is None
            else f"4 convolutions (3x3, then three 4x4 stride 2) and Linear -> {ae.code}-dim ReLU code"
        )
        letter = "c" if name == "natural-encoder" else "d"
        return prob, {
            "alphas": [0.0, 3e-3, 1e-2, 3e-2, 1e-1],
            "title": f"({letter}) {name}: encoder of a conv autoencoder, {ae.image_size}x{ae.image_size} natural "
            f"patches",
            "description": f"`get_recipe({name!r})`: {arch}; autoencoder trained by Adam on "
            f"{info['n_train']} random patches of {source} ({info['epochs']} epochs, {info['train_time']:.0f} s "
            f"when first built, cached afterwards; validation-patch PSNR {info['validation_psnr']:.1f} dB). "
            f"Test / validation inputs: evenly spread patches of the held-out test / validation images. "
            "'decoder D(f)' = the decoder applied to the noisy code.",
        }
    if name == "resnet-features":
        kw = dict(epochs=2) if args.quick else {}
        prob = get_recipe("resnet-features", n_images=3 if args.quick else 6, path=cache, split=split, **kw)
        info = prob.extras["classifier"].train_info
        return prob, {
            "alphas": [0.0, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
            "title": "(e) ResNet-style digit classifier, feature map after stage 2 (16x4x4)",
            "description": "`get_recipe('resnet-features')`: stem conv + BN, three residual blocks (conv-BN-ReLU-"
            "conv-BN, skip, ReLU) with average pooling between them, trained by Adam with cross-entropy on 1500 "
            f"16x16 digits ({info['epochs']} epochs, held-out accuracy {100 * info['test_accuracy']:.1f} %); batch "
            "norms folded into the convolutions (eval mode); inverted at the output of stage 2 after its "
            "pooling (7 lifted layers); test images: held-out digits (validation: other held-out digits).",
        }
    raise SystemExit(f"unknown model {name!r}")


def noisy(f0: torch.Tensor, delta: float, seed: int) -> torch.Tensor:
    """f0 + delta ||f0|| e / ||e|| per sample, e Gaussian from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(f0.shape, generator=g, dtype=f0.dtype).to(f0.device)
    n = f0.shape[0]
    scale = delta * f0.reshape(n, -1).norm(dim=1) / e.reshape(n, -1).norm(dim=1).clamp(min=1e-30)
    return f0 + scale.reshape((-1,) + (1,) * (f0.dim() - 1)) * e


def metrics(x: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    from liftinv.metrics import psnr, ssim

    x = x.detach().cpu().float().clamp(0, 1)
    truth = truth.detach().cpu().float()
    return psnr(x, truth), ssim(x, truth)


def study(
    name, model, inputs, alphas, iters, device, methods, seed=0, reference=None, progress=False, chosen=None
):
    """Run every method on the batch (noise x alpha x images); pick alpha per noise by oracle PSNR.

    ``chosen`` (method -> one alpha per noise level, read from a validation run) replaces the oracle: the
    reported row is the one at the alpha chosen on the validation split.
    """
    from liftinv.inversion import invert

    K = inputs.shape[0]
    nn_, na = len(NOISE_LEVELS), len(alphas)
    model = model.to(device)
    truth = inputs.to(device)
    with torch.no_grad():
        f0 = model(truth)
    fs = torch.cat([noisy(f0, d, seed + 1) for d in NOISE_LEVELS])  # [noise*K]
    f = fs.reshape(nn_, 1, K, *f0.shape[1:]).expand(nn_, na, K, *f0.shape[1:]).reshape(-1, *f0.shape[1:])
    u_true = truth.reshape(1, 1, K, *truth.shape[1:]).expand(nn_, na, K, *truth.shape[1:])
    u_true = u_true.reshape(-1, *truth.shape[1:])
    alpha = torch.tensor(alphas, dtype=torch.float32).reshape(1, na, 1).expand(nn_, na, K).reshape(-1)
    out = {
        "model": name,
        "alphas": list(alphas),
        "images": K,
        "noise_levels": list(NOISE_LEVELS),
        "iterations": iters,
        "methods": {},
    }
    for mname in methods:
        kw = METHODS[mname]
        picked = chosen is not None and mname in chosen
        # every (noise, alpha, image) of the grid; with validation alphas only the chosen alpha per noise
        # level and (noise 0, alpha 0) for the exact-fit residual: samples are independent, so the rows are
        # those of the full grid
        run = torch.ones(nn_, na, K, dtype=torch.bool)
        if picked:
            run[:] = False
            for i in range(nn_):
                run[i, alphas.index(chosen[mname][i])] = True
            if 0.0 in alphas:
                run[0, alphas.index(0.0)] = True
        sel = run.reshape(-1)
        res = invert(
            model,
            f[sel.to(f.device)],
            regulariser="tv",
            alpha=alpha[sel],
            max_iter=iters,
            tol=0.0,
            device=device,
            progress=progress,
            seed=seed,
            log_every=max(iters // 10, 1),
            **kw,
        )

        def spread(values, sel=sel):
            """Values of the run samples on the (noise, alpha, image) grid, NaN where not run."""
            out_ = torch.full((nn_ * na * K,), float("nan"))
            out_[sel] = values.detach().cpu().float().reshape(-1)
            return out_.reshape(nn_, na, K)

        truth_sel = u_true[sel.to(u_true.device)]
        psnr, ssim = metrics(res.u, truth_sel)
        err = (res.u.detach().cpu() - truth_sel.cpu()).reshape(int(sel.sum()), -1).norm(dim=1)
        rel_err = spread(err / truth_sel.cpu().reshape(int(sel.sum()), -1).norm(dim=1))
        psnr, ssim, resid = spread(psnr), spread(ssim), spread(res.residual)
        rows = []
        for i, delta in enumerate(NOISE_LEVELS):
            mean_psnr = psnr[i].mean(1)
            j = alphas.index(chosen[mname][i]) if picked else int(mean_psnr.argmax())
            a0 = alphas.index(0.0) if 0.0 in alphas else None
            rows.append(
                {
                    "noise": delta,
                    "alpha": alphas[j],
                    "psnr": float(mean_psnr[j]),
                    "ssim": float(ssim[i, j].mean()),
                    "rel_error": float(rel_err[i, j].mean()),
                    "residual": float(resid[i, j].mean()),
                    "residual_alpha0": None
                    if a0 is None or bool(resid[i, a0].isnan().any())
                    else float(resid[i, a0].mean()),
                    "psnr_per_alpha": None if picked else [float(v) for v in mean_psnr],
                }
            )
        out["methods"][mname] = {
            "rows": rows,
            "time": res.time,
            "iterations": res.iterations,
            "batch": int(sel.sum()),
            "clipped": res.info.get("clipped", 0),
        }
        print(
            f"  {name:12s} {mname:17s} {res.time:7.1f} s  " + "  ".join(f"{r['psnr']:.2f}" for r in rows),
            flush=True,
        )
    if reference is not None:
        with torch.no_grad():
            rec = reference.to(device)(fs).clamp(0, 1)
        p, s = metrics(rec, truth.repeat(nn_, 1, 1, 1))
        out["reference"] = [
            {
                "noise": d,
                "psnr": float(p.reshape(nn_, K)[i].mean()),
                "ssim": float(s.reshape(nn_, K)[i].mean()),
            }
            for i, d in enumerate(NOISE_LEVELS)
        ]
    return out


def timing_64(iters: int, device, threads_list=(1, 2), repeats: int = 1, size: int = 64, features: int = 512):
    """Wall time of inverting 64 outputs of the perceptron at invert()'s defaults, methods alternating."""
    from liftinv.datasets import random_phantoms, shepp_logan

    from liftinv.inversion import invert
    from liftinv.inversion.recipes import perceptron

    net = perceptron(size, features).to(device)
    imgs = torch.cat([shepp_logan(size, source="skimage"), random_phantoms(63, size, seed=5, kind="mixed")])
    imgs = imgs.to(device)
    with torch.no_grad():
        f = noisy(net(imgs), 0.02, 7)
    rows = []
    old = torch.get_num_threads()
    for threads in threads_list:
        torch.set_num_threads(threads)
        for _ in range(repeats):
            for method in ("lifted", "gradient"):
                res = invert(
                    net,
                    f,
                    alpha=10.0 * (size / 64) ** 2,
                    method=method,
                    max_iter=iters,
                    device=device,
                    progress=False,
                )
                rows.append(
                    {
                        "threads": threads,
                        "method": method,
                        "solver": res.info.get("solver"),
                        "time": res.time,
                        "iterations": res.iterations,
                    }
                )
                print(
                    f"  batch 64, {threads} thread(s), {method:8s}: {res.time:.1f} s ({res.iterations} it)",
                    flush=True,
                )
    torch.set_num_threads(old)
    return rows


def init_spread(problem, alpha_l, alpha_g, iters, starts=5, delta=0.02, seed=0):
    """PSNR over ``starts`` random initialisations (uniform in the box), default lifted vs gradient-adam.

    Returns per method the mean over images of the std over starts of the PSNR, and the mean PSNR.
    """
    from liftinv.inversion import invert

    x = problem.inputs
    K = x.shape[0]
    with torch.no_grad():
        f0 = problem.model(x)
    f = noisy(f0, delta, seed + 1).repeat(starts, *([1] * (f0.dim() - 1)))  # [starts*K]
    g = torch.Generator().manual_seed(seed + 7)
    init = torch.rand((starts * K, *x.shape[1:]), generator=g)
    truth = x.repeat(starts, 1, 1, 1)
    out = {}
    for name, kw, a in (
        ("lifted (default)", dict(method="lifted"), alpha_l),
        ("gradient-adam", dict(method="gradient", solver="adam"), alpha_g),
    ):
        res = invert(problem.model, f, alpha=a, init=init, max_iter=iters, tol=0.0, progress=False, **kw)
        p, _ = metrics(res.u.reshape(truth.shape), truth)
        p = p.reshape(starts, K)
        out[name] = {"std": float(p.std(0).mean()), "mean": float(p.mean()), "min": float(p.min())}
    return out


def timing_256(problem, alpha, iters, warmup=20):
    """Wall time of inverting 256 outputs at once (defaults; gradient-adam), after a short warm-up run."""
    from liftinv.inversion import invert

    x = problem.inputs
    reps = -(-256 // x.shape[0])
    with torch.no_grad():
        f = noisy(problem.model(x), 0.02, 1)
    f = f.repeat(reps, *([1] * (f.dim() - 1)))[:256]
    rows = []
    for name, kw in (("lifted (default)", dict(method="lifted")), ("gradient-adam", dict(method="gradient"))):
        invert(problem.model, f, alpha=alpha, max_iter=warmup, tol=0.0, progress=False, **kw)
        res = invert(problem.model, f, alpha=alpha, max_iter=iters, tol=0.0, progress=False, **kw)
        rows.append({"method": name, "time": res.time, "iterations": res.iterations})
    rows[0]["ratio"] = rows[0]["time"] / rows[1]["time"]
    return rows


def validation_alphas(path) -> dict[str, dict[str, list[float]]]:
    """model -> method -> the alpha chosen per noise level on the validation split (a JSON of ``--json``).

    :data:`DEFAULT_METHOD` (invert()'s defaults, not itself a validation candidate) gets the alphas of the
    candidate that :func:`choose_default` picks on that split.
    """
    val = json.loads(Path(path).read_text())["results"]
    winner, _ = choose_default(val)
    print(f"validation rule's choice: {winner} (alphas of {DEFAULT_METHOD})", flush=True)
    chosen = {}
    for r in val:
        chosen[r["model"]] = {m: [row["alpha"] for row in d["rows"]] for m, d in r["methods"].items()}
        chosen[r["model"]].setdefault(DEFAULT_METHOD, chosen[r["model"]][winner])
    return chosen


def extras_main(args) -> int:
    """--extras: initialisation spread and the 256-output timing per model -> a JSON (``--json``).

    alpha of each method: its validation choice at 2 % noise (``--alphas-from``, required).
    """
    if not args.alphas_from:
        raise SystemExit(
            "--extras needs --alphas-from VALIDATION_JSON (the alphas chosen on the validation split)"
        )
    torch.set_num_threads(args.threads)
    iters = args.iters or 1000
    at = NOISE_LEVELS.index(0.02)
    chosen = {
        model: {m: alphas[at] for m, alphas in per_method.items()}
        for model, per_method in validation_alphas(args.alphas_from).items()
    }
    data = {
        "meta": {
            "threads": args.threads,
            "iters": iters,
            "timing_iters": args.timing_iters,
            "default": DEFAULT_METHOD,
        },
        "spread": {},
        "timing": {},
    }
    for name in _check_models(args.models):
        prob, _ = build_problem(name, args)
        a_l, a_g = chosen[name][DEFAULT_METHOD], chosen[name]["gradient-adam"]
        data["spread"][name] = init_spread(prob, a_l, a_g, iters)
        data["timing"][name] = timing_256(prob, a_l, args.timing_iters)
        data["spread"][name]["alphas"] = {"lifted": a_l, "gradient-adam": a_g}
        print(name, data["spread"][name], data["timing"][name], flush=True)
    out = Path(args.json or ROOT / "results" / "inversion_extras.json")
    out.write_text(json.dumps(data, indent=1))
    return 0


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    styles = {
        "lifted-pdhg": ("C0", "-"),
        "lifted-pdhg-hard": ("C0", ":"),
        "gradient-pdhg": ("C1", "-"),
        "lifted-adam": ("C2", "--"),
        "lifted-adam-hard": ("C2", ":"),
        "gradient-adam": ("C3", "--"),
        "lifted-pdhg-cont": ("C4", "-"),
        "lifted-adam-cont": ("C4", "--"),
        "lifted-pdhg-active": ("C5", "-"),
    }
    for ax, res in zip(axes[0], results):
        x = [100 * d for d in NOISE_LEVELS]
        for m, d in res["methods"].items():
            c, ls = styles.get(m, ("k", "-"))
            ax.plot(x, [r["psnr"] for r in d["rows"]], color=c, ls=ls, marker="o", ms=3, label=m)
        title = res["title"]
        if "reference" in res:  # the learned inverse is far above the variational ones: give its range only
            ref = [r["psnr"] for r in res["reference"]]
            title += f"\n(decoder D(f), off scale: {min(ref):.1f}-{max(ref):.1f} dB)"
        ax.set_xscale("symlog", linthresh=0.5)
        ax.set_xticks(x)
        ax.set_xticklabels([f"{v:g}" for v in x])
        ax.set_xlabel("noise level (% of ||f||)")
        ax.set_ylabel("PSNR (dB), alpha: " + ("validation split" if res.get("chosen") else "oracle"))
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def margins_over_gradient(res, method):
    """PSNR of ``method`` minus the best gradient method's, per noise level >= 1 % (one model's result)."""
    grads = [m for m in res["methods"] if m.startswith("gradient")]
    return [
        res["methods"][method]["rows"][i]["psnr"] - max(res["methods"][g]["rows"][i]["psnr"] for g in grads)
        for i, d in enumerate(NOISE_LEVELS)
        if d >= 0.01
    ]


def choose_default(results):
    """The rule that picks invert()'s default on the validation split (fixed before any test run).

    Per lifted candidate: its margins over the best gradient inversion at every noise level >= 1 % of every
    model (each method at its own best alpha of the split). The candidate with the largest worst-case
    margin wins; candidates within 0.05 dB of that worst case are ranked by their mean margin.
    """
    cands = [
        m for m in results[0]["methods"] if m.startswith("lifted") and all(m in r["methods"] for r in results)
    ]
    table = {}
    for m in cands:
        diffs = [v for r in results for v in margins_over_gradient(r, m)]
        table[m] = {"worst": min(diffs), "mean": sum(diffs) / len(diffs)}
    top = max(v["worst"] for v in table.values())
    near = [m for m in cands if table[m]["worst"] >= top - 0.05]
    return max(near, key=lambda m: table[m]["mean"]), table


def plot_stability(results, path, lifted="lifted-pdhg-active"):
    """Relative error ||u - u_true|| / ||u_true|| against the noise level, lifted default vs gradient."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(3.6 * len(results), 3.4), squeeze=False)
    for ax, res in zip(axes[0], results):
        x = [100 * d for d in NOISE_LEVELS]
        for m, c, ls in ((lifted, "C0", "-"), ("gradient-pdhg", "C1", "--"), ("gradient-adam", "C3", ":")):
            if m in res["methods"]:
                ax.plot(
                    x,
                    [r["rel_error"] for r in res["methods"][m]["rows"]],
                    color=c,
                    ls=ls,
                    marker="o",
                    ms=3,
                    label=m,
                )
        ax.set_xlabel("noise (% of ||f||)")
        ax.set_title(res["model"], fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("relative error of u")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results, timing, meta) -> str:
    L = ["# Inversion of pre-trained networks: lifted Bregman vs gradient-based inversion", ""]
    L.append(
        f"Split: **{meta.get('split', 'test')}**. "
        f"Generated by `{meta['command']}` on {meta['device']} ({meta['threads']} torch thread(s) for the "
        f"study), torch {meta['torch']}, {meta['date']}. Total run time {meta['total_time']:.0f} s."
    )
    L.append("")
    L.append(
        "Setting: TV regulariser, box [0, 1], zero initialisation, "
        f"{meta['iters']} iterations for every method (no early stop), relative noise "
        "`f = N(u) + delta ||N(u)|| e/||e||`. "
        + (
            "**alpha rule: validation split** -- for each method and noise level the alpha of the grid "
            "with the best mean PSNR on the *validation* outputs (disjoint images, `split='validation'` of "
            "the recipes); the test outputs below are evaluated once at that alpha. "
            if meta.get("split") == "test" and meta.get("alphas_from")
            else "**alpha rule: oracle** on this split (" + meta.get("split", "test") + ") -- for each "
            "method and noise level the alpha of the grid with the best mean PSNR. "
        )
        + "Same alpha grid for every method (alpha = 0 included). "
        "PSNR = `deepinv.loss.metric.PSNR(max_pixel=1)`, SSIM = `deepinv.loss.metric.SSIM()` "
        "(torchmetrics Gaussian-window SSIM). Cells: PSNR dB / SSIM (alpha)."
    )
    L.append("")
    for res in results:
        L.append(f"## {res['title']}")
        L.append("")
        L.append(
            f"{res['description']} alpha grid: {res['alphas']}; {res['images']} test image(s); batch "
            f"{next(iter(res['methods'].values()))['batch']} outputs per run."
        )
        L.append("")
        names = list(res["methods"])
        head = "| noise | " + " | ".join(names) + (" | decoder D(f) |" if "reference" in res else " |")
        L.append(head)
        L.append("|" + "---|" * (len(names) + 1 + ("reference" in res)))
        for i, d in enumerate(NOISE_LEVELS):
            cells = []
            best = max(res["methods"][m]["rows"][i]["psnr"] for m in names)
            for m in names:
                r = res["methods"][m]["rows"][i]
                txt = f"{r['psnr']:.2f} / {r['ssim']:.3f} ({r['alpha']:g})"
                cells.append(f"**{txt}**" if r["psnr"] >= best - 1e-9 else txt)
            ref = ""
            if "reference" in res:
                rr = res["reference"][i]
                ref = f" {rr['psnr']:.2f} / {rr['ssim']:.3f} |"
            L.append(f"| {100 * d:g}% | " + " | ".join(cells) + " |" + ref)
        L.append("")
        L.append("Lifted minus gradient PSNR (dB) with the same input solver (positive: lifted ahead):")
        L.append("")
        pairs = [(a, b) for a, b in PAIRS.items() if a in res["methods"] and b in res["methods"]]
        L.append("| noise | " + " | ".join(f"{a} - {b}" for a, b in pairs) + " |")
        L.append("|" + "---|" * (len(pairs) + 1))
        for i, d in enumerate(NOISE_LEVELS):
            L.append(
                f"| {100 * d:g}% | "
                + " | ".join(
                    f"{res['methods'][a]['rows'][i]['psnr'] - res['methods'][b]['rows'][i]['psnr']:+.2f}"
                    for a, b in pairs
                )
                + " |"
            )
        L.append("")
        L.append("Summary at noise >= 1% (lifted ahead or equal = within 0.05 dB or better):")
        L.append("")
        for a, b in pairs:
            diffs = [
                res["methods"][a]["rows"][i]["psnr"] - res["methods"][b]["rows"][i]["psnr"]
                for i, d in enumerate(NOISE_LEVELS)
                if d >= 0.01
            ]
            ok = sum(v >= -0.05 for v in diffs)
            L.append(
                f"- {a} vs {b}: ahead or equal at {ok}/{len(diffs)} levels; differences "
                f"{', '.join(f'{v:+.2f}' for v in diffs)} dB."
            )
        grads = [m for m in names if m.startswith("gradient")]
        if grads:
            L.append("")
            L.append(
                "Against the *best* gradient inversion at each noise level (max over "
                + ", ".join(grads)
                + "), noise >= 1%:"
            )
            L.append("")
            for a in (m for m in names if m.startswith("lifted")):
                diffs = [
                    res["methods"][a]["rows"][i]["psnr"]
                    - max(res["methods"][b]["rows"][i]["psnr"] for b in grads)
                    for i, d in enumerate(NOISE_LEVELS)
                    if d >= 0.01
                ]
                ok = sum(v >= -0.05 for v in diffs)
                L.append(
                    f"- {a}: ahead or equal at {ok}/{len(diffs)} levels; differences "
                    f"{', '.join(f'{v:+.2f}' for v in diffs)} dB (worst {min(diffs):+.2f}, mean "
                    f"{sum(diffs) / len(diffs):+.2f})."
                )
        L.append("")
        L.append(
            "Exact fit (noise 0, alpha = 0): relative residual ||N(u) - f|| / ||f|| after the budget: "
            + ", ".join(
                f"{m} {res['methods'][m]['rows'][0]['residual_alpha0']:.1e}"
                for m in names
                if res["methods"][m]["rows"][0]["residual_alpha0"] is not None
            )
            + "."
        )
        L.append("")
        L.append(
            "Wall time of the batched run (all noise levels x alphas x images), and lifted / gradient ratio "
            "(same solver, same process):"
        )
        L.append("")
        L.append("| method | time (s) | iterations | ratio to its gradient pair |")
        L.append("|---|---|---|---|")
        for m in names:
            t = res["methods"][m]["time"]
            pair = PAIRS.get(m)
            ratio = f"{t / res['methods'][pair]['time']:.2f}" if pair in res["methods"] else "-"
            L.append(f"| {m} | {t:.1f} | {res['methods'][m]['iterations']} | {ratio} |")
        L.append("")
    has_grad = results and all(any(m.startswith("gradient") for m in r["methods"]) for r in results)
    if has_grad and meta.get("split") == "validation":
        best, table = choose_default(results)
        L.append("## Default chosen on this split")
        L.append("")
        L.append(
            "Rule (fixed before the test split was run): per lifted candidate, the PSNR margins over the best "
            "gradient inversion at every noise level >= 1 % of every model; the largest worst-case margin wins, "
            "ties (within 0.05 dB) broken by the mean margin."
        )
        L.append("")
        L.append("| candidate | worst margin (dB) | mean margin (dB) |")
        L.append("|---|---|---|")
        for m, v in sorted(table.items(), key=lambda kv: -kv[1]["worst"]):
            L.append(f"| {'**' + m + '**' if m == best else m} | {v['worst']:+.2f} | {v['mean']:+.2f} |")
        L.append("")
        L.append(f"Chosen: **{best}**.")
        L.append("")
    default = meta.get("default")
    if has_grad and default and all(default in r["methods"] for r in results):
        L.append(f"## Stability: relative error against the noise level ({default} vs gradient inversion)")
        L.append("")
        L.append(
            "Relative error ||u - u_true|| / ||u_true|| (mean over the images, each method at its alpha) per "
            "noise level; P2 bounds the lifted error linearly in the noise. Figure: `inversion_stability.png`."
        )
        L.append("")
        grads = [g for g in ("gradient-pdhg", "gradient-adam") if g in results[0]["methods"]]
        L.append("| model | method | " + " | ".join(f"{100 * d:g}%" for d in NOISE_LEVELS) + " |")
        L.append("|---|---|" + "---|" * len(NOISE_LEVELS))
        for r in results:
            for m in [default] + grads:
                rows = r["methods"][m]["rows"]
                L.append(
                    f"| {r['model']} | {m} | " + " | ".join(f"{row['rel_error']:.3f}" for row in rows) + " |"
                )
        L.append("")
        L.append(
            f"Margin of {default} over the best gradient inversion (PSNR, dB) at noise 1 / 2 / 5 / 10 %:"
        )
        L.append("")
        for r in results:
            diffs = margins_over_gradient(r, default)
            ok = sum(v >= -0.05 for v in diffs)
            L.append(
                f"- {r['model']}: {', '.join(f'{v:+.2f}' for v in diffs)} (ahead or equal at {ok}/{len(diffs)})"
            )
        L.append("")
    L.append("## Notes")
    L.append("")
    L.append(
        "- Same input solver, different gradient: `lifted-adam` vs `gradient-adam` and `lifted-pdhg*` vs "
        "`gradient-pdhg` differ only in the formulation (lifted states and the activation-derivative-free input "
        "gradient vs back-propagation through N); the iteration budget and alpha grid are shared."
    )
    L.append(
        "- Relaxed vs hard coupling: the relaxed form (free last state, lambda = 1) has *saturated* units -- for "
        "a ReLU unit with f > 0 the cost is flat once z <= -f/lambda -- so its exact-fit residual stalls "
        "(see 'Exact fit' above) while the hard form (convex for one layer) fits exactly. Under noise the hard "
        "form penalises positive noise on inactive units linearly; compare the hard columns of (a) and (b)."
    )
    L.append(
        "- lambda interpolates: lambda -> 0 gives the hard form, lambda -> infinity the nested least-squares "
        "problem of gradient inversion (with slower BCD steps)."
    )
    L.append(
        "- Timings come from a shared 2-core machine with other jobs running: compare the ratios, not the "
        "absolute seconds; with 2 torch threads and other processes on both cores, OpenMP oversubscription "
        "can make runs several times slower than with 1 thread."
    )
    L.append("")
    if timing:
        L.append("## Batch of 64 outputs of model (a), invert() defaults")
        L.append("")
        if meta.get("loadavg_timing"):
            L.append(
                f"Machine load (1-min load average of the shared 2-core CPU) during these runs: "
                f"{meta['loadavg_timing']}."
            )
            L.append("")
        L.append(
            "lifted = PDHG input step, relaxed coupling; gradient = Adam; 1000 iterations, alpha = 10, "
            "2% noise; methods alternate in the same process."
        )
        L.append("")
        L.append("| threads | method | solver | time (s) | iterations |")
        L.append("|---|---|---|---|---|")
        for r in timing:
            L.append(
                f"| {r['threads']} | {r['method']} | {r['solver']} | {r['time']:.1f} | {r['iterations']} |"
            )
        L.append("")
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes and 300 iterations (1-2 min)")
    ap.add_argument("--iters", type=int, default=None, help="iterations per method (default 1000, quick 300)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the study (default 1)")
    ap.add_argument("--json", default=None, help="also write the results as JSON to this path")
    ap.add_argument(
        "--out-dir",
        default=None,
        help="where inversion.md and inversion.png go (default benchmarks/results; --quick: a temp dir)",
    )
    ap.add_argument(
        "--ae-cache",
        default=os.path.join(tempfile.gettempdir(), "liftinv-autoencoder-seed0.pt"),
        help="cache file of the trained autoencoder",
    )
    ap.add_argument("--no-timing", action="store_true", help="skip the 64-batch timing")
    ap.add_argument(
        "--split",
        choices=("validation", "test"),
        default="test",
        help="outputs to invert: validation (choose defaults and alpha) or test (report once)",
    )
    ap.add_argument(
        "--methods", default=None, help="comma-separated subset of the methods (default: all of METHODS)"
    )
    ap.add_argument(
        "--models",
        default=",".join(MODEL_NAMES),
        help=f"comma-separated models to run (default all: {', '.join(MODEL_NAMES)})",
    )
    ap.add_argument(
        "--cache-dir",
        default=os.path.join(tempfile.gettempdir(), "liftinv-inversion-cache"),
        help="folder of the trained recipe networks (built once, reused)",
    )
    ap.add_argument(
        "--alphas-from",
        default=None,
        metavar="JSON",
        help="validation JSON (--split validation --json ...): report each method at its validation alpha",
    )
    ap.add_argument("--progress", action="store_true", help="show progress bars")
    ap.add_argument(
        "--from-json",
        default=None,
        metavar="PATH",
        help="re-render inversion.md and the PNG from a JSON written by --json (no computation)",
    )
    ap.add_argument("--extras", action="store_true", help="initialisation spread + 256-output timing only")
    ap.add_argument("--timing-iters", type=int, default=100, help="iterations of the 256-output timing")
    args = ap.parse_args(argv)
    if args.extras:
        return extras_main(args)
    if args.from_json:
        paths = args.from_json.split(",")
        data = json.loads(Path(paths[0]).read_text())
        for extra in paths[1:]:  # runs of other models (e.g. parallel processes): one table
            more = json.loads(Path(extra).read_text())
            data["results"] += more["results"]
            data["meta"]["command"] += " ; " + more["meta"]["command"]
            data["meta"]["total_time"] += more["meta"]["total_time"]
        order = {m: i for i, m in enumerate(MODEL_NAMES)}
        data["results"].sort(key=lambda r: order.get(r["model"], len(order)))
        data["meta"]["default"] = DEFAULT_METHOD
        out_dir = Path(args.out_dir or ROOT / "results")
        write_outputs(data["results"], data["timing"], data["meta"], out_dir, json_path=args.json)
        return 0

    from liftinv.training import resolve_device

    t_start = time.perf_counter()
    dev = resolve_device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.set_num_threads(args.threads)
    iters = args.iters or (300 if args.quick else 1000)
    dev_name = (
        torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else f"CPU ({platform.processor() or 'cpu'}, {os.cpu_count()} cores)"
    )
    print(f"device: {dev_name}; iterations {iters}", flush=True)

    methods = args.methods.split(",") if args.methods else list(METHODS)
    models = _check_models(args.models)
    chosen = validation_alphas(args.alphas_from) if args.alphas_from else {}
    missing = [m for m in models if args.alphas_from and m not in chosen]
    if missing:  # never fall back to the oracle alpha on a split that should use the validation alphas
        raise SystemExit(f"--alphas-from {args.alphas_from} has no validation run of {', '.join(missing)}")
    results = []
    for name in models:
        prob, spec = build_problem(name, args)
        absent = [m for m in methods if chosen and m not in chosen[name]]
        if absent:
            raise SystemExit(
                f"--alphas-from {args.alphas_from} has no alphas of {', '.join(absent)} for {name}"
            )
        res = study(
            name,
            prob.model,
            prob.inputs,
            spec["alphas"],
            iters,
            dev,
            methods,
            reference=prob.extras.get("decoder"),
            progress=args.progress,
            chosen=chosen.get(name),
        )
        res["chosen"] = bool(chosen)
        res["title"] = spec["title"]
        res["description"] = spec["description"]
        results.append(res)
    timing = [] if (args.no_timing or args.quick) else timing_64(1000, dev)
    load = f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    total = time.perf_counter() - t_start
    meta = {
        "command": "python benchmarks/inversion.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "split": args.split,
        "alphas_from": args.alphas_from,
        "device": dev_name,
        "threads": args.threads,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "iters": iters,
        "total_time": total,
        "loadavg_timing": load,
        "default": DEFAULT_METHOD,
    }
    out_dir = Path(
        args.out_dir
        or (Path(tempfile.gettempdir()) / "liftinv-inversion-quick" if args.quick else ROOT / "results")
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    print(write_outputs(results, timing, meta, out_dir, json_path=args.json))
    return 0


def write_outputs(results, timing, meta, out_dir, json_path=None) -> str:
    """inversion{,_validation}.md, the PSNR and stability figures, and the JSON; returns the markdown."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "inversion" if meta.get("split", "test") == "test" else "inversion_validation"
    plot(results, out_dir / f"{stem}.png")
    if meta.get("default") and all(meta["default"] in r["methods"] for r in results):
        plot_stability(results, out_dir / f"{stem}_stability.png", meta["default"])
    md = markdown(results, timing, meta)
    (out_dir / f"{stem}.md").write_text(md)
    if json_path:
        Path(json_path).write_text(json.dumps({"meta": meta, "results": results, "timing": timing}, indent=1))
    print(f"wrote {out_dir / (stem + '.md')} and {out_dir / (stem + '.png')}", file=sys.stderr)
    return md


if __name__ == "__main__":
    sys.exit(main())
