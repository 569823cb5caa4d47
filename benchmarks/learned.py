"""Learned unrolled networks with CNN proximal steps against tuned TV: back-propagation vs lifted training.

Tasks (``--tasks``, default all four):

* ``ct``: Learned Primal-Dual's ellipse setting (Adler & Oktem 2018): parallel-beam CT, 30 angles, additive
  Gaussian noise of 5% of the mean absolute sinogram value (per phantom), training on LPD-style random
  ellipses (:class:`liftinv.datasets.EllipseStream`: fresh phantoms for every epoch), fixed seeded
  validation and test ellipse sets (:func:`liftinv.datasets.ellipse_set`, disjoint seeds and seed domains),
  the Shepp-Logan phantom reported separately. Rows: FBP (pinv), TV (alpha tuned on the validation
  phantoms), deepinv's unfolded PGD with a small DnCNN prior (``benchmarks/unrolled.py``; off in --quick
  unless ``--deepinv``), :class:`liftinv.models.LearnedPrimalDual` (init FBP) trained by back-propagation
  (Adam), lifted Bregman ISGM, lifted Bregman BCD, MAC (ISGM).
* ``denoise``: Gaussian denoising sigma = 25/255, training on random patches (flips / 90-degree rotations) of
  Train400 (``--images``), testing on BSD68 (``--test-images``). Rows: noisy input, TV, BM3D (only if the
  ``bm3d`` package is importable), deepinv's ``DnCNN`` (no pretrained weights, about as many parameters as
  ours) trained here by back-propagation with the same budget, :class:`liftinv.models.UnrolledProxGradCNN`
  by back-propagation and by lifted training (``--lifted``, default lifted Bregman ISGM).
* ``deblur`` (Gaussian blur sigma 2 px, circular, noise 0.01) and ``inpaint`` (50% random pixels, noise
  0.01): training on Train400 patches, testing on Set12 (``--restore-test-images``). Rows: pinv, TV,
  ``UnrolledProxGradCNN`` by back-propagation and by lifted training.

Without the shared image folders (``../shared/data`` from the repository root) the natural-image tasks fall
back to the bundled scikit-image images (``liftinv.unrolled.tasks.TRAIN_IMAGES`` / ``TEST_IMAGES``) and the
report says so.

Protocol (nothing is chosen on the test set, which is evaluated once per row at the end):

* TV alpha: a decade walk until the validation PSNR peaks inside the bracket, then half- and quarter-decade
  refinement (warm-started PDHG), on the validation images only.
* Every trained row gets the same *training wall-time budget* (``--row-minutes``; fit's per-epoch ``wall``,
  evaluation excluded) and at most ``--max-epochs`` epochs; an epoch is one chunk of fresh training samples
  (``steps_per_epoch`` mini-batches; the BCD row, whose lifted states live per sample, cycles over a fixed
  pool: the first chunks of the same stream, capped by ``--bcd-max-mb`` of state memory).
* Learning rate: chosen on the validation set among ``base * m`` for ``m`` in ``--lr-grid`` by pilot runs of
  ``--pilot`` times the budget; the chosen pilot continues to the full budget (its checkpoint is resumed), the
  other pilots' time is reported as ``lr search s`` (the full mode). Without a search (``--lr-grid 1``) the
  rates are set a priori, never tuned on test data: the default mode's :data:`DEFAULT_RATES` (per task and
  row, from the longest validation pilots of each task), --quick's :data:`BASE_LR`.
* Epochs: the weights with the best validation PSNR (evaluated after every epoch) are the ones tested.
* Step-size decay by rollback (``--patience N``; N = 10 for the rows of the default and full modes, off for
  the --quick rows and with ``--patience 0``, N = 40 for ``--long-ct``): when the validation PSNR has not
  improved for N epochs, or falls ``--rollback-db`` below the best,
  a row returns to its best-validation weights with a fresh trainer state (Adam moments; the lifted
  trainers' states and step constants) and a step size multiplied by ``--lr-decay`` (training ends when the
  step would fall below 1e-3 of the base rate). The decision uses validation data only; the rollbacks are
  recorded in the row's JSON (``--long-ct``: its log).

Columns: test PSNR / SSIM (mean over the test images; reconstructions clipped to [0, 1]; PSNR peak 1, SSIM
from scikit-image, 7x7 window), Shepp-Logan PSNR (CT), learned parameters, training wall time, time per
step divided by the back-propagation row's (the task's reference network), steps (epochs), learning rate,
lr-search time, peak memory, device. Curves of validation PSNR against training time (after every epoch)
are in the JSON and the figure, beside the TV validation line.

Modes: ``--quick`` a CPU smoke run (<= 20 min on a 2-core machine: small images, short budgets, a-priori
learning rates); the default CPU run (<= 60 min: CT at 64x64, 30 angles: TV at 128x128 costs about 21 s per
phantom and alpha on one CPU thread, and LPD about 4.5 s per step there; ``--ct-size 128`` to override);
``--device cuda --full`` the paper-scale run (CT 128x128, LPD K = 10, 32 channels, long budgets).
``--long-ct`` trains LPD by back-propagation on 128x128 ellipses for ``--budget-minutes`` of elapsed time,
resuming from its checkpoint, logging validation PSNR against cumulative training time (JSON and PNG beside the
checkpoint) and printing the current test PSNR against tuned TV (cached after the first time).

Timing: one torch thread by default (``--threads``), rows one after the other in one process; other jobs
make absolute times noisy. Checkpoints (``--checkpoint-dir``, one folder per task and configuration) make an
interrupted run resume: ``fit`` saves every epoch, finished rows are skipped (best weights + a JSON record).

Usage::

    .venv/bin/python benchmarks/learned.py --quick --out-dir /tmp/learned_quick      # smoke run, CPU
    .venv/bin/python benchmarks/learned.py --tasks denoise,deblur                     # default CPU budgets
    .venv/bin/python benchmarks/learned.py --device cuda --full                       # paper scale
    .venv/bin/python benchmarks/learned.py --long-ct --budget-minutes 120 --threads 2 # resumable long run
    .venv/bin/python benchmarks/learned.py --long-ct --tv-only    # its TV figures (tv.json), beside a sitting
    # a long deblurring row (backprop only, the validation-chosen rate of the 10-minute run, rollbacks):
    .venv/bin/python benchmarks/learned.py --tasks deblur --row-minutes 40 --lr backprop-adam=1e-3
        --lr-grid 1 --lifted '' --patience 20 --out-dir /tmp/deblur40                 # (one command line)
    # another PG-CNN size or training patch (both enter the checkpoint folder's key):
    .venv/bin/python benchmarks/learned.py --tasks deblur --pg-iterations 8 --pg-depth 4 --pg-width 32
        --patch 64 --row-minutes 60 --lr backprop-adam=1e-3 --lr-grid 1 --lifted '' --patience 20
    # lifted variants side by side (suffixes +frozen, +sweeps=N; the default mode's own: DEFAULT_LIFTED_OPTIONS):
    .venv/bin/python benchmarks/learned.py --tasks ct --no-deepinv
        --ct-lifted bregman-isgm,bregman-isgm+frozen,bregman-isgm+frozen+sweeps=2

Writes ``learned.md``, ``learned.json`` and ``learned.png`` into ``--out-dir`` (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import copy
import functools
import hashlib
import json
import math
import os
import re
import shlex
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak_memory import PeakMemory  # noqa: E402
from unrolled import RESULTS, DeepinvUnfoldedPGD, _fmt, _n_params, psnr_per_image, ssim_mean  # noqa: E402

warnings.filterwarnings("ignore", category=UserWarning)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CHECKPOINTS = ROOT / ".cache" / "learned_checkpoints"
LONG_CT_DIR = ROOT / ".cache" / "learned_long_ct"
TASKS = ("ct", "denoise", "deblur", "inpaint")

#: noise / operator settings of the tasks
CT_ANGLES, CT_NOISE = 30, 0.05  # relative to the mean absolute sinogram value, per phantom
DENOISE_SIGMA = 25 / 255
RESTORE_NOISE = 0.01
OPERATORS = {
    "denoise": ("denoising", {}),
    "deblur": ("blur", {"kernel": "gaussian", "sigma": 2.0, "boundary": "circular"}),
    "inpaint": ("inpainting", {"mask": "random", "keep_rate": 0.5, "seed": 0}),
}
DESCRIPTIONS = {
    "ct": "parallel-beam CT, 30 angles, Gaussian noise 5% of the mean |sinogram| (LPD ellipse setting)",
    "denoise": "Gaussian denoising, sigma = 25/255",
    "deblur": "Gaussian deblurring (sigma = 2 px, circular), noise 0.01",
    "inpaint": "inpainting (50% random pixels), noise 0.01",
}

#: base learning rates (Adam steps; the lifted trainers take Adam-preconditioned steps on the lifted
#: gradient), per task family. Chosen on VALIDATION data by this script's lr search (--lr-grid 1,3,10
#: --pilot 1, --quick sizes, 45 s (CT) / 36 s (denoising) pilots, 2026-11-26): CT backprop 1e-3 (36.06 dB vs
#: 35.93 at 3e-3, 30.50 at 1e-2), ISGM 3e-3 (33.98 vs 33.84 / 32.01), MAC 1e-3 (34.63 vs 34.33 / 28.44);
#: denoising backprop 3e-3 (DnCNN 26.31 vs 25.94 / 26.25; PG-CNN 26.57 vs 26.09 / 26.49), ISGM 3e-3 (25.61 vs
#: 25.49 / 24.75). BCD (not in that search) takes the ISGM rate. The full mode searches base x --lr-grid again
#: on its own validation sets; --quick uses these rates as they are; the default mode has its own
#: (:data:`DEFAULT_RATES`).
BASE_LR = {
    "ct": {
        "backprop-adam": 1e-3,
        "bregman-isgm": 3e-3,
        "bregman-bcd": 3e-3,
        "mac-isgm": 1e-3,
        "mac-bcd": 1e-3,
    },
    "image": {
        "backprop-adam": 3e-3,
        "bregman-isgm": 3e-3,
        "bregman-bcd": 3e-3,
        "mac-isgm": 3e-3,
        "mac-bcd": 3e-3,
    },
}
LIFTED_LABELS = {
    "bregman-isgm": "lifted Bregman ISGM",
    "bregman-bcd": "lifted Bregman BCD",
    "mac-isgm": "MAC (ISGM)",
    "mac-bcd": "MAC (BCD)",
}

#: per-mode settings. CT: image side, validation / test phantoms, batch, mini-batches per epoch (chunk of
#: fresh phantoms), phantom pool (cycled when exhausted), BCD pool, networks, training budget per row.
CT_MODES: dict[str, dict[str, Any]] = {
    "quick": dict(
        size=32,
        n_val=8,
        n_test=16,
        batch=8,
        steps_per_epoch=4,
        pool=4096,
        bcd_pool=64,
        lpd=dict(iterations=4, width=16),
        deepinv=dict(iterations=4, depth=4, features=16),
        row_minutes=1.0,
        tv_iter=300,
    ),
    "default": dict(
        size=64,
        n_val=8,
        n_test=16,
        batch=8,
        steps_per_epoch=4,
        pool=4096,
        bcd_pool=64,
        lpd=dict(iterations=5, width=16),
        deepinv=dict(iterations=5, depth=5, features=16),
        row_minutes=3.0,
        tv_iter=300,
    ),
    "full": dict(
        size=128,
        n_val=32,
        n_test=64,
        batch=8,
        steps_per_epoch=100,
        pool=16384,
        bcd_pool=256,
        lpd=dict(iterations=10, width=32),
        deepinv=dict(iterations=10, depth=8, features=32),
        row_minutes=60.0,
        tv_iter=1000,
    ),
}
#: natural-image tasks: patch side, validation images held out of the training folder and their crops,
#: test images (None: all) and centre-crop side (None: full size), networks (DnCNN about as many parameters
#: and convolutions as UnrolledProxGradCNN), training budget per row
IMAGE_MODES: dict[str, dict[str, Any]] = {
    "quick": dict(
        patch=32,
        n_val_images=8,
        val_crop=64,
        n_test=6,
        test_crop=96,
        batch=16,
        steps_per_epoch=4,
        bcd_pool=128,
        pg=dict(iterations=3, depth=4, width=16),
        dncnn=dict(depth=8, nf=16),
        row_minutes=0.75,
        tv_iter=300,
    ),
    "default": dict(
        patch=40,
        n_val_images=16,
        val_crop=96,
        n_test=None,
        test_crop=None,
        batch=16,
        steps_per_epoch=16,
        bcd_pool=256,
        pg=dict(iterations=5, depth=4, width=32),
        dncnn=dict(depth=12, nf=32),
        row_minutes=2.0,
        # denoising rows were still gaining 0.2 dB of validation PSNR per minute at 2 minutes (the 12-minute
        # run's curves); the time comes from the lr search this mode no longer runs
        task_row_minutes={"denoise": 5.0},
        tv_iter=300,
    ),
    "full": dict(
        patch=48,
        n_val_images=20,
        val_crop=128,
        n_test=None,
        test_crop=None,
        batch=32,
        steps_per_epoch=100,
        bcd_pool=1024,
        pg=dict(iterations=5, depth=5, width=64),
        dncnn=dict(depth=17, nf=64),
        row_minutes=20.0,
        tv_iter=1000,
    ),
}
#: initial image of UnrolledProxGradCNN per task. Chosen on a development set disjoint from every test set of
#: this script (bundled chelsea 64x64, astronaut 128x128, coffee 96x96; PG-CNN K = 5, depth 4, width 32, Adam
#: 3e-3, 10 epochs of 256 32x32 patches of the bundled training images, 2026-11-26; PSNR minus TV with its
#: best alpha per image): deblurring A^T y -1.40 / -1.95 / -2.80 dB, Tikhonov -0.27 / -0.34 / -0.50,
#: gradient-regularised ("smooth") +0.07 / -0.33 / -0.49; inpainting A^T y -1.35 / -1.15 / -1.66, smooth
#: +1.39 / +0.78 / +0.93. Denoising keeps A^T y = y.
PG_INIT = {"denoise": "adjoint", "deblur": "smooth", "inpaint": "smooth"}
#: data step of UnrolledProxGradCNN per task (--pg-data-step overrides). For denoising and inpainting the
#: gradient and proximal steps span the same maps; for deblurring see the 40-minute rows in the README.
PG_DATA_STEP = {"denoise": "gradient", "deblur": "gradient", "inpaint": "gradient"}


def _pg_data_step(args, task: str) -> str:
    """The PG-CNN data step of ``task``: ``--pg-data-step``, or :data:`PG_DATA_STEP` for ``auto``."""
    return PG_DATA_STEP[task] if args.pg_data_step == "auto" else args.pg_data_step


#: the default mode's rates per task and row (it searches no rate: at 2-minute rows its 10 % pilots decided on
#: one or two epochs, 20 s of training, and cost 7 of its 60 minutes). All chosen on VALIDATION data by the
#: longest pilots this script ran for that task: CT, the default run's pilots of 2026-11-26 (learned.json at
#: 79d5af3: deepinv 3e-3, every LPD row 1e-3); denoising, the 12-minute run's 72-second pilots
#: (learned_denoise_12min.json: DnCNN and PG-CNN 3e-3) and the lifted pilots of 2026-11-27
#: (``pg_size_pilots.py --task denoise``, 5 minutes, ``benchmarks/results/denoise_lifted_pilots.json``);
#: deblurring, the 10-minute run's pilots (1e-3; ISGM 1e-3 in the default run); inpainting, the default run's
#: pilots (1e-3 both). ``--lr`` and ``--lr-grid`` override them.
DEFAULT_RATES: dict[str, dict[str, float]] = {
    "ct": {
        "deepinv": 3e-3,
        "backprop-adam": 1e-3,
        "bregman-isgm": 1e-3,
        "bregman-bcd": 1e-3,
        "mac-isgm": 1e-3,
    },
    "denoise": {"dncnn": 3e-3, "backprop-adam": 3e-3, "bregman-isgm": 3e-3},
    "deblur": {"backprop-adam": 1e-3, "bregman-isgm": 1e-3},
    "inpaint": {"backprop-adam": 1e-3, "bregman-isgm": 1e-3},
}
#: the default mode's lifted-trainer options per task (beyond the trainers' defaults), chosen with the rates
#: above: denoising ISGM with frozen pre-activations and two state sweeps per round (5-minute validation pilots,
#: denoise_lifted_pilots.json: 26.55 dB; one sweep 26.47, plain 26.42 at 3e-3 and 26.30 at 1e-3;
#: back-propagation 26.91; 1.56x backprop's time per step)
DEFAULT_LIFTED_OPTIONS: dict[str, dict[str, dict]] = {
    "denoise": {"bregman-isgm": {"frozen_preactivations": True, "sweeps": 2}},
}
LR_GRID = {"quick": (1.0,), "default": (1.0,), "full": (1 / 3, 1.0, 3.0)}
#: rollback patience of the trained rows per mode (``--patience``; 0 turns rollbacks off): the default and full
#: rows roll back on a validation collapse or a 10-epoch plateau (the lifted denoising rows collapsed at their
#: chosen rate without it: learned_denoise_12min.md against learned_denoise_12min_rollbacks.md)
ROW_PATIENCE = {"quick": None, "default": 10, "full": 10}
PILOT = {"quick": 0.2, "default": 0.1, "full": 0.1}


def log(msg: str) -> None:
    print(msg, flush=True)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def provenance() -> str:
    """The liftinv commit and its uncommitted changes (read-only git queries), for the report."""
    import subprocess

    def git(*cmd):
        try:
            out = subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=20)
            return out.stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    head = git("rev-parse", "--short", "HEAD").strip() or "unknown commit"
    dirty = [
        line[3:]
        for line in git(
            "status", "--porcelain", "--", "liftinv", "operators", "datasets", "benchmarks/*.py"
        ).splitlines()
    ]
    return head + (f" with uncommitted changes in {', '.join(dirty)}" if dirty else "")


def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


# ---------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------
@dataclass
class TestGroup:
    """Test images of one size and one operator (CT: the ellipse set, or the Shepp-Logan phantom)."""

    names: list[str]
    y: Tensor
    x: Tensor
    op: Any
    extra: bool = False  # reported separately (Shepp-Logan), not in the mean


@dataclass
class Setup:
    """Everything a task needs: operator, training stream, validation set, test groups, notes."""

    task: str
    operator: Any
    chunk: Callable[[int], tuple[Tensor, Tensor]]  # epoch -> (Y, X): fresh training samples
    chunk_size: int
    val: tuple[Tensor, Tensor]
    test: list[TestGroup]
    cfg: dict
    notes: list[str] = field(default_factory=list)
    example: int = 0  # test group shown in the figure
    device: torch.device = torch.device("cpu")  # where TV runs (the networks run on theirs)
    val_op: Any = None  # the operator at the validation images' size (default: ``operator``)

    def pool(self, n: int) -> tuple[Tensor, Tensor]:
        """The first ``n`` samples of the training stream (the fixed pool of the BCD rows)."""
        chunks = [self.chunk(e) for e in range(-(-n // self.chunk_size))]
        return torch.cat([c[0] for c in chunks])[:n], torch.cat([c[1] for c in chunks])[:n]


def ct_measure(op, x: Tensor, generator: torch.Generator) -> Tensor:
    """``op.measure`` with Gaussian noise of ``CT_NOISE`` times each phantom's mean absolute sinogram value."""
    out = []
    for i in range(x.shape[0]):
        level = CT_NOISE * float(op.A(x[i : i + 1]).abs().mean())
        out.append(op.measure(x[i : i + 1], level, generator=generator))
    return torch.cat(out)


def ct_setup(cfg: dict, seed: int, cache: bool = True) -> Setup:
    """The CT task; ``cache=False`` keeps only the latest training chunk (an endless stream)."""
    from liftinv.datasets import EllipseStream, ellipse_set, shepp_logan
    from liftinv.operators import make_operator

    n = cfg["size"]
    op = make_operator("tomography", n, angles=CT_ANGLES)
    stream = EllipseStream(n, seed=seed)
    chunk_size = cfg["batch"] * cfg["steps_per_epoch"]
    n_chunks = max(1, cfg["pool"] // chunk_size)
    chunks: dict[int, tuple[Tensor, Tensor]] = {}

    def chunk(epoch: int) -> tuple[Tensor, Tensor]:
        e = epoch % n_chunks  # the pool is cycled once exhausted
        if e not in chunks:
            if not cache:
                chunks.clear()
            x = stream.batch(chunk_size, start=e * chunk_size)
            g = torch.Generator().manual_seed(1_000_003 * (seed + 1) + e)
            chunks[e] = (ct_measure(op, x, g), x)
        return chunks[e]

    x_val = ellipse_set(cfg["n_val"], n, seed=1000 + seed)
    x_test = ellipse_set(cfg["n_test"], n, seed=2000 + seed)
    x_sl = shepp_logan(n)
    y_val = ct_measure(op, x_val, torch.Generator().manual_seed(10_000 + seed))
    y_test = ct_measure(op, x_test, torch.Generator().manual_seed(20_000 + seed))
    y_sl = ct_measure(op, x_sl, torch.Generator().manual_seed(30_000 + seed))
    test = [
        TestGroup([f"ellipses-{i}" for i in range(len(x_test))], y_test, x_test, op),
        TestGroup(["shepp_logan"], y_sl, x_sl, op, extra=True),
    ]
    notes = [
        f"{n}x{n} images, {CT_ANGLES} angles (sinograms {list(op.measurement_size[1:])}); training: "
        f"EllipseStream(seed {seed}), {chunk_size} fresh phantoms per epoch (pool of {n_chunks * chunk_size}, "
        f"cycled); validation: ellipse_set({cfg['n_val']}, seed {1000 + seed}); test: "
        f"ellipse_set({cfg['n_test']}, seed {2000 + seed}) and Shepp-Logan (separate column)."
    ]
    return Setup("ct", op, chunk, chunk_size, (y_val, x_val), test, cfg, notes, example=1)


def _load_folder(folder: Path | None, fallback: tuple[str, ...], what: str, notes: list[str]):
    """``[(name, image [1, H, W])]`` from an image folder, or the bundled fallback (said in ``notes``)."""
    from liftinv.datasets import list_images, load_image

    if folder is not None and folder.is_dir() and list_images(folder):
        files = list_images(folder)
        notes.append(f"{what}: {len(files)} images from {folder}")
        return [(p.stem, load_image(p)[0]) for p in files]
    where = f"{folder} not found" if folder is not None else "no folder given"
    notes.append(f"{what}: {where}; FALLBACK to the bundled scikit-image images {', '.join(fallback)}")
    return [(name, load_image(name)[0]) for name in fallback]


def _centre_crop(img: Tensor, side: int | None) -> Tensor:
    if side is None:
        return img
    h, w = img.shape[-2:]
    s = min(side, h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return img[..., top : top + s, left : left + s]


def _operator_at(op, h: int, w: int):
    """The task operator rebuilt for ``h x w`` images from its description (as the networks do)."""
    from liftinv.operators import make_operator

    if tuple(op.image_size[1:]) == (h, w):
        return op
    return make_operator(**{**dict(op.describe()), "image_size": [op.image_size[0], h, w]})


def image_setup(task: str, cfg: dict, seed: int, args) -> Setup:
    from liftinv.datasets import extract_patches
    from liftinv.operators import make_operator

    from liftinv.unrolled.tasks import TEST_IMAGES, TRAIN_IMAGES

    notes: list[str] = []
    train_dir = Path(args.images) if args.images else SHARED / "Train400"
    if task == "denoise":
        test_dir = Path(args.test_images) if args.test_images else SHARED / "BSD68"
    else:
        test_dir = Path(args.restore_test_images) if args.restore_test_images else SHARED / "Set12"
    natural_train = tuple(n for n in TRAIN_IMAGES if n != "phantoms")
    natural_test = tuple(n for n in TEST_IMAGES if n != "shepp_logan")
    train = _load_folder(train_dir, natural_train, "training images", notes)
    tests = _load_folder(test_dir, natural_test, "test images", notes)
    n_val = min(cfg["n_val_images"], max(1, len(train) // 4))
    train_imgs = [im for _, im in train[: len(train) - n_val]]
    val_imgs = [im for _, im in train[len(train) - n_val :]]
    notes.append(
        f"validation: the last {n_val} training images (sorted by name), held out of the training patches"
    )
    if cfg["n_test"] is not None and len(tests) > cfg["n_test"]:
        tests = tests[: cfg["n_test"]]
    if cfg["test_crop"] is not None:
        tests = [(n, _centre_crop(im, cfg["test_crop"])) for n, im in tests]
        notes.append(
            f"SMOKE-SIZE TEST: the first {len(tests)} test images, centre-cropped to {cfg['test_crop']}x"
            f"{cfg['test_crop']}"
        )
    else:
        notes.append(f"test: all {len(tests)} test images at full size")
    name, kw = OPERATORS[task]
    P = cfg["patch"]
    op = make_operator(name, P, **kw)
    noise = DENOISE_SIGMA if task == "denoise" else RESTORE_NOISE
    chunk_size = cfg["batch"] * cfg["steps_per_epoch"]
    cache: dict[int, tuple[Tensor, Tensor]] = {}

    def chunk(epoch: int) -> tuple[Tensor, Tensor]:
        if epoch not in cache:
            s = 1_000_003 * (seed + 1) + epoch
            x = extract_patches(train_imgs, P, n=chunk_size, seed=s, augment=True)
            cache[epoch] = (op.measure(x, noise, generator=torch.Generator().manual_seed(s)), x)
        return cache[epoch]

    side = min(cfg["val_crop"], *(min(im.shape[-2:]) for im in val_imgs))
    x_val = extract_patches(val_imgs, side, per_image=1)
    op_val = _operator_at(op, side, side)
    y_val = op_val.measure(x_val, noise, generator=torch.Generator().manual_seed(10_000 + seed))
    groups = []
    for i, (n, im) in enumerate(tests):
        x = im[None]
        op_i = _operator_at(op, *x.shape[-2:])
        y = op_i.measure(x, noise, generator=torch.Generator().manual_seed(20_000 + 97 * seed + i))
        groups.append(TestGroup([n], y, x, op_i))
    notes.append(
        f"training: {chunk_size} fresh random {P}x{P} patches per epoch (flips / 90-degree rotations) from "
        f"{len(train_imgs)} images; validation: {len(x_val)} centre crops {side}x{side}"
    )
    return Setup(task, op, chunk, chunk_size, (y_val, x_val), groups, cfg, notes, example=0, val_op=op_val)


# ---------------------------------------------------------------------------------------------------------
# evaluation and classical rows
# ---------------------------------------------------------------------------------------------------------
def evaluate(recon: Callable[[Tensor, Any], Tensor], setup: Setup) -> tuple[dict, Tensor]:
    """Run ``recon(y, op)`` on every test group once; mean PSNR / SSIM over the main groups, Shepp-Logan
    separately; returns the summary and the reconstruction of the figure's example group."""
    p_main, s_main, extra, example = [], [], {}, None
    for gi, g in enumerate(setup.test):
        x_hat = recon(g.y, g.op).detach().cpu()
        p = psnr_per_image(x_hat, g.x)
        s = [ssim_mean(x_hat[i : i + 1], g.x[i : i + 1]) for i in range(len(g.x))]
        if g.extra:
            extra["psnr_shepp"] = float(p.mean())
            extra["ssim_shepp"] = sum(s) / len(s)
        else:
            p_main += p.tolist()
            s_main += s
        if gi == setup.example:
            example = x_hat[:1].clamp(0, 1)
    out = {"psnr": sum(p_main) / len(p_main), "ssim": sum(s_main) / len(s_main), **extra}
    return out, example


_DEVICE_OPS: dict[int, tuple[Any, Any]] = {}


def _on_device(op, device: torch.device):
    """A copy of ``op`` on ``device`` (cached; the original stays where it is)."""
    if device.type == "cpu":
        return op
    if id(op) not in _DEVICE_OPS:
        _DEVICE_OPS[id(op)] = (
            op,
            copy.deepcopy(op).to(device),
        )  # the original is kept alive: ids stay unique
    return _DEVICE_OPS[id(op)][1]


def _tv(y, op, alpha, iters, device: torch.device):
    """TV-PDHG (``liftinv.operators.reconstruct``) from zero, on ``device``; the result on the CPU."""
    from liftinv.operators import reconstruct

    out = reconstruct(y.to(device), _on_device(op, device), "tv", alpha=alpha, max_iter=iters, progress=False)
    return out.x.cpu()


def tune_tv(y: Tensor, x: Tensor, op, iters: int, device: torch.device) -> dict:
    """alpha maximising the mean validation PSNR of TV: a walk over decades of alpha (from 1e-2) until the
    peak is bracketed, then half- and quarter-decade refinement. Every solve starts from zero, as on the test
    set (a warm start from another alpha's solution, with PDHG's stopping tolerance, favours small alphas
    that have not converged)."""
    scores: dict[float, float] = {}

    def score(e: float) -> float:
        e = round(e * 4) / 4
        if e not in scores:
            scores[e] = float(psnr_per_image(_tv(y, op, 10.0**e, iters, device), x).mean())
        return scores[e]

    e = -2.0
    score(e)
    for _ in range(8):  # walk by decades until the best is inside the bracket
        for d in (-1.0, 1.0):
            score(e + d)
        best = max(scores, key=scores.get)
        if best == e:
            break
        e = best
    for step in (0.5, 0.25):
        best = max(scores, key=scores.get)
        score(best - step)
        score(best + step)
    best = max(scores, key=scores.get)
    tried = {f"{10.0**k:.3g}": v for k, v in sorted(scores.items())}
    return {"alpha": 10.0**best, "val_psnr": scores[best], "tried": tried}


def classical_rows(setup: Setup, args) -> tuple[list[dict], dict, dict]:
    """The input / pinv row, tuned TV, BM3D (denoising, if importable); returns rows, examples, TV info."""
    from liftinv.operators import reconstruct

    rows, examples = [], {}
    first = {"ct": "FBP (pinv)", "denoise": "noisy input", "deblur": "pinv", "inpaint": "pinv (masked input)"}
    label = first[setup.task]
    summary, ex = evaluate(lambda y, op: reconstruct(y, op, "pinv", progress=False).x, setup)
    rows.append({"method": label, **summary})
    examples[label] = ex
    log(f"  {setup.task:8s} {label:34s} PSNR {summary['psnr']:6.2f}  SSIM {summary['ssim']:.3f}")
    t0 = time.perf_counter()
    y_val, x_val = setup.val
    val_op = setup.val_op if setup.val_op is not None else setup.operator
    tv = tune_tv(y_val, x_val, val_op, setup.cfg["tv_iter"], setup.device)
    tune_s = time.perf_counter() - t0
    summary, ex = evaluate(lambda y, op: _tv(y, op, tv["alpha"], setup.cfg["tv_iter"], setup.device), setup)
    tv.update(tune_seconds=tune_s, test_seconds=time.perf_counter() - t0 - tune_s)
    rows.append({"method": "TV (alpha tuned on validation)", **summary, "alpha": tv["alpha"]})
    examples["TV (alpha tuned on validation)"] = ex
    log(
        f"  {setup.task:8s} {'TV':34s} PSNR {summary['psnr']:6.2f}  SSIM {summary['ssim']:.3f}  alpha "
        f"{tv['alpha']:.3g} (val {tv['val_psnr']:.2f} dB; tuning {tune_s:.0f} s)"
    )
    if setup.task == "denoise":
        try:
            import bm3d  # type: ignore[import-not-found]
        except ImportError:
            setup.notes.append("BM3D: the `bm3d` package is not importable here; row skipped")
        else:

            def run_bm3d(y, op):
                out = [
                    torch.as_tensor(bm3d.bm3d(im[0].double().numpy(), sigma_psd=DENOISE_SIGMA)) for im in y
                ]
                return torch.stack(out)[:, None].float()

            summary, ex = evaluate(run_bm3d, setup)
            rows.append({"method": "BM3D", **summary})
            examples["BM3D"] = ex
    return rows, examples, tv


# ---------------------------------------------------------------------------------------------------------
# trained rows: wall-time budget, per-epoch validation, best-validation weights, lr chosen on validation
# ---------------------------------------------------------------------------------------------------------
@torch.no_grad()
def _predict(model: nn.Module, y: Tensor, batch: int = 8) -> Tensor:
    dev = next(model.parameters()).device
    model.eval()
    return torch.cat([model(y[i : i + batch].to(dev)).cpu() for i in range(0, len(y), batch)])


class ValTracker:
    """``fit``'s metric: validation PSNR when called on the validation set (it keeps the best weights, saved
    to ``best_path``), PSNR on 4 training samples otherwise (fit's ``train_custom``, cheap)."""

    def __init__(self, val: tuple[Tensor, Tensor], best_path: Path):
        self.y, self.x = val
        self.best_path = best_path
        self.best, self.best_epoch, self.epoch = -math.inf, 0, 0
        if best_path.is_file():
            d = torch.load(best_path, map_location="cpu", weights_only=True)
            self.best, self.best_epoch = float(d["val_psnr"]), int(d["epoch"])

    def psnr(self, model: nn.Module) -> float:
        return min(float(psnr_per_image(_predict(model, self.y), self.x).mean()), 99.0)

    @torch.no_grad()
    def __call__(self, model: nn.Module, X: Tensor, Y: Tensor) -> float:
        if X.shape[0] == self.y.shape[0] and torch.equal(X[:1].detach().cpu(), self.y[:1]):
            p = self.psnr(model)
            if p > self.best:
                self.best, self.best_epoch = p, self.epoch
                state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                tmp = self.best_path.with_name(self.best_path.name + ".tmp")
                torch.save({"epoch": self.epoch, "val_psnr": p, "state": state}, tmp)
                os.replace(tmp, self.best_path)
            return p
        model.eval()
        return min(float(psnr_per_image(model(X[:4]), Y[:4].cpu()).mean()), 99.0)


@dataclass
class RowSpec:
    label: str
    method: str
    make: Callable[[], nn.Module]
    lr: float
    options: dict = field(default_factory=dict)
    pool: int | None = None  # BCD: train on a fixed pool of this many samples instead of fresh chunks
    reference: bool = False  # the back-propagation row whose time per step the ratios divide by


@dataclass
class Ctx:
    device: torch.device
    seed: int
    ckpt_dir: Path
    row_seconds: float
    max_epochs: int
    lr_grid: tuple[float, ...]
    pilot: float
    progress_every: float = 15.0
    patience: int | None = None  # None: a constant step size; else roll back on plateaus (_train_rolling)
    rollback_db: float = 5.0
    lr_decay: float = 0.3


def _train_until(
    model,
    spec: RowSpec,
    setup: Setup,
    lr: float,
    ckpt: Path,
    seconds: float,
    ctx: Ctx,
    tracker,
    deadline: float | None = None,
    stop: Callable | None = None,
):
    """Train epoch by epoch (``fit`` resumes its checkpoint) until ``seconds`` of training wall time,
    ``ctx.max_epochs`` or (``deadline``, a ``time.perf_counter()`` value) the end of the session's elapsed
    time budget, or until ``stop(history)`` returns a reason; returns ``(History or None, why it stopped
    early or None)`` (why: divergence, or ``stop``'s reason)."""
    from liftinv.metrics import History
    from liftinv.training import fit, load_checkpoint

    hist, epoch, wall = None, 0, 0.0
    if ckpt.is_file():
        ck = load_checkpoint(ckpt)
        hist = History.from_dict(ck["history"])
        epoch, wall = int(ck["epoch"]), float(hist.last.get("wall", 0.0))
    pool = setup.pool(spec.pool) if spec.pool else None
    last_print, elapsed = time.perf_counter(), 0.0
    # start another epoch only while that ends nearer the budget than stopping now (epochs are coarse)
    while epoch < ctx.max_epochs and seconds - wall > 0.5 * (hist.last["time"] if hist is not None else 0.0):
        if deadline is not None and deadline - time.perf_counter() < 0.5 * elapsed:
            break
        t0 = time.perf_counter()
        train = pool if pool is not None else setup.chunk(epoch)
        tracker.epoch = epoch + 1
        try:
            hist = fit(
                model,
                train,
                method=spec.method,
                epochs=epoch + 1,
                test=setup.val,
                metric=tracker,
                seed=ctx.seed,
                device=ctx.device,
                checkpoint=ckpt,
                progress=False,
                lr=lr,
                **spec.options,
            )
        except FloatingPointError as exc:
            return hist, f"diverged at epoch {epoch + 1} ({str(exc)[:80]})"
        epoch, wall = len(hist), float(hist.last["wall"])
        elapsed = time.perf_counter() - t0  # data, fit, validation
        if stop is not None and (why := stop(hist)):
            return hist, why
        if time.perf_counter() - last_print > ctx.progress_every or wall >= seconds:
            last_print = time.perf_counter()
            log(
                f"    {spec.label} lr {lr:.2g}: epoch {epoch}, {wall:6.1f} s, val {hist.last['test_custom']:.2f}"
                f" dB (best {tracker.best:.2f} @ {tracker.best_epoch})"
            )
    return hist, None


#: rollbacks stop decaying the step size below this fraction of the base rate (training ends there)
LR_FLOOR = 1e-3


def _train_rolling(
    model,
    spec: RowSpec,
    setup: Setup,
    lr: float,
    ckpt: Path,
    seconds: float,
    ctx: Ctx,
    tracker: ValTracker,
    rollbacks: list[dict],
    save_rollbacks: Callable[[], None],
    deadline: float | None = None,
):
    """:func:`_train_until` with rollbacks: when ``ctx.patience`` is set, a validation collapse or plateau
    (:func:`_plateau_stop`) rewrites the checkpoint with the best-validation weights and a fresh trainer state
    (:func:`_roll_back`), multiplies the step size by ``ctx.lr_decay`` and trains on. ``rollbacks`` (the
    caller's persisted list, appended to and saved through ``save_rollbacks``) carries the schedule across
    resumed sessions: the step size is ``lr`` times every earlier rollback's factor. Returns ``(History or
    None, why training stopped early or None)``."""
    while True:
        lr_now = lr * math.prod(r["lr_factor"] for r in rollbacks)
        since = rollbacks[-1]["epoch"] if rollbacks else 0
        stop = (
            functools.partial(_plateau_stop, tracker=tracker, since=since, ctx=ctx) if ctx.patience else None
        )
        # a resumed run may end on a collapse or plateau already (the checkpoint is read only when rolling:
        # a BCD row's holds every sample's states, and _train_until reads it anyway)
        hist = _checkpoint_history(ckpt) if stop is not None and ckpt.is_file() else None
        why = stop(hist) if stop is not None else None
        if why is None:
            hist, why = _train_until(model, spec, setup, lr_now, ckpt, seconds, ctx, tracker, deadline, stop)
        if why is None or stop is None or not ckpt.is_file() or tracker.best_epoch == 0:
            return hist, why
        if lr_now * ctx.lr_decay < LR_FLOOR * lr:
            return (
                hist,
                f"{why}; the step size is at its floor ({LR_FLOOR:g} x the base rate): training ended",
            )
        epoch = _roll_back(ckpt, tracker.best_path, spec.make)
        rollbacks.append(
            {"epoch": epoch, "to_best_epoch": tracker.best_epoch, "reason": why, "lr_factor": ctx.lr_decay}
        )
        save_rollbacks()
        log(
            f"    {why}: rolled back to the best weights (epoch {tracker.best_epoch}, val {tracker.best:.2f} dB)"
            f", fresh trainer state, step size {lr_now:g} -> {lr_now * ctx.lr_decay:g}"
        )  # past the deadline or the budget, the next _train_until returns at once


def _checkpoint_history(ckpt: Path):
    from liftinv.metrics import History
    from liftinv.training import load_checkpoint

    return History.from_dict(load_checkpoint(ckpt)["history"])


def _plateau_stop(hist, *, tracker: ValTracker, since: int, ctx: Ctx) -> str | None:
    """Why training should roll back now, or None: the last validation PSNR is more than ``ctx.rollback_db``
    below the best (Adam at a constant step size can blow up: the long CT run did at epoch ~430 of its
    first 531), or no better validation PSNR came for ``ctx.patience`` epochs since the best or the last
    rollback (a plateau: the step size is too large to go lower)."""
    if hist is None or not len(hist):
        return None
    epoch, val = len(hist), float(hist.last["test_custom"])
    if epoch <= since:  # the checkpoint right after a rollback still ends with the epoch that caused it
        return None
    if val < tracker.best - ctx.rollback_db:
        return f"validation collapsed at epoch {epoch} ({val:.2f} dB, best {tracker.best:.2f} dB)"
    if epoch - max(tracker.best_epoch, since) >= ctx.patience:
        return f"no better validation PSNR for {ctx.patience} epochs (epoch {epoch})"
    return None


def _roll_back(ckpt: Path, best_path: Path, make: Callable[[], nn.Module]) -> int:
    """Rewrite a training checkpoint with the best-validation weights and a fresh trainer state, keeping its
    epoch count and history; returns that epoch.

    The trainer state belongs to the collapsed or plateaued weights: for back-propagation a fresh Adam, for
    the lifted trainers of unrolled networks (``liftinv.training.unrolled``: bregman-isgm / -bcd, mac-isgm /
    -bcd) an empty state, which their ``load_state_dict`` reads as a new trainer: zero Adam moments, (BCD) the
    per-sample states from a forward pass of the best weights, the state-step constants estimated again.
    Other checkpoints raise ``ValueError``."""
    from liftinv.training import load_checkpoint, save_checkpoint

    ck = load_checkpoint(ckpt)
    method, trainer = ck.get("method"), ck.get("trainer")
    model = make()
    model.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True)["state"])
    if method == "backprop-adam":
        fresh = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=1e-3)
        ck["trainer"] = {"optimizer": fresh.state_dict()}  # its lr is reset from fit's lr every epoch
    elif isinstance(trainer, dict) and "adam" in trainer and "lipschitz" in trainer:
        ck["trainer"] = {}
    else:
        raise ValueError(
            f"rollbacks are implemented for backprop-adam and the unrolled lifted trainers' checkpoints, not "
            f"{method!r}"
        )
    ck["model"] = model.state_dict()
    save_checkpoint(ckpt, ck)
    return int(ck["epoch"])


def _steps_per_epoch(spec: RowSpec, setup: Setup) -> int:
    n = spec.pool or setup.chunk_size
    return -(-n // spec.options.get("batch_size", setup.cfg["batch"]))


def train_row(spec: RowSpec, setup: Setup, ctx: Ctx) -> tuple[nn.Module, dict]:
    """Train one row (lr search by pilots when the grid has several values), load its best-validation
    weights; resumes from / skips to ``ctx.ckpt_dir``."""
    slug = _slug(spec.label)
    done = ctx.ckpt_dir / f"{slug}.done.json"
    if done.is_file():
        info = json.loads(done.read_text())
        model = spec.make()
        best = torch.load(ctx.ckpt_dir / info["best_file"], map_location="cpu", weights_only=True)
        model.load_state_dict(best["state"])
        log(f"    {spec.label}: finished earlier (checkpoint {done}), skipping training")
        return model.to(ctx.device), info
    lrs = [spec.lr * m for m in ctx.lr_grid]
    paths = {lr: ctx.ckpt_dir / f"{slug}-lr{lr:.3g}.pt" for lr in lrs}
    search, search_s, mem = {}, 0.0, None
    with PeakMemory(ctx.device) as pm:
        if len(lrs) > 1:
            for lr in lrs:
                model = spec.make()
                tracker = ValTracker(setup.val, paths[lr].with_suffix(".best.pt"))
                hist, _ = _train_until(
                    model, spec, setup, lr, paths[lr], ctx.pilot * ctx.row_seconds, ctx, tracker
                )
                search[lr] = (tracker.best, float(hist.last["wall"]) if hist is not None else 0.0)
            chosen = max(lrs, key=lambda lr: search[lr][0])
            search_s = sum(w for lr, (_, w) in search.items() if lr != chosen)
            log(
                "    lr search (val PSNR after the pilot): "
                + ", ".join(f"{lr:.2g}: {p:.2f}" for lr, (p, _) in search.items())
                + f" -> {chosen:.2g}"
            )
        else:
            chosen = lrs[0]
        model = spec.make()
        best_path = paths[chosen].with_suffix(".best.pt")
        tracker = ValTracker(setup.val, best_path)
        init_psnr = tracker.psnr(model.to(ctx.device))
        # rollbacks with step-size decay (--patience); their record sits beside the checkpoint so a resumed
        # row keeps it
        rb_path = paths[chosen].with_suffix(".rollbacks.json")
        rollbacks = json.loads(rb_path.read_text()) if rb_path.is_file() else []
        hist, diverged = _train_rolling(
            model,
            spec,
            setup,
            chosen,
            paths[chosen],
            ctx.row_seconds,
            ctx,
            tracker,
            rollbacks,
            lambda: rb_path.write_text(json.dumps(rollbacks)),
        )
    mem = pm.value
    spe = _steps_per_epoch(spec, setup)
    curve = [{"epoch": 0, "steps": 0, "seconds": 0.0, "val_psnr": init_psnr}]
    if hist is not None:
        curve += [
            {
                "epoch": r["epoch"],
                "steps": r["epoch"] * spe,
                "seconds": r["wall"],
                "val_psnr": r["test_custom"],
            }
            for r in hist
        ]
    if best_path.is_file():
        best = torch.load(best_path, map_location="cpu", weights_only=True)
        model.load_state_dict(best["state"])
    epochs = curve[-1]["epoch"]
    info = {
        "method_name": spec.method,
        "lr": chosen,
        "lr_search": {f"{lr:.3g}": p for lr, (p, _) in search.items()} or None,
        "search_s": search_s if len(lrs) > 1 else None,
        "train_s": curve[-1]["seconds"],
        "epochs": epochs,
        "steps": epochs * spe,
        "s_per_step": curve[-1]["seconds"] / max(epochs * spe, 1),
        "best_epoch": tracker.best_epoch,
        "val_psnr": tracker.best,
        "memory_mb": mem,
        "curve": curve,
        "diverged": diverged,
        "pool": spec.pool,
        "best_file": best_path.name,
        "options": {k: v for k, v in spec.options.items()},
        "rollbacks": rollbacks or None,
    }
    done.write_text(json.dumps(info, indent=1))
    rb_path.unlink(missing_ok=True)
    for lr, path in paths.items():  # fit's checkpoints (BCD: with every sample's states) are no longer needed
        path.unlink(missing_ok=True)
        if lr != chosen:
            path.with_suffix(".best.pt").unlink(missing_ok=True)
    return model.to(ctx.device), info


def run_trained(specs: list[RowSpec], setup: Setup, ctx: Ctx) -> tuple[list[dict], dict]:
    rows, examples = [], {}
    for spec in specs:
        log(f"  {setup.task}: training {spec.label} ({spec.method}, budget {ctx.row_seconds / 60:.2f} min)")
        model, info = train_row(spec, setup, ctx)
        summary, ex = evaluate(lambda y, op, m=model: _predict(m, y), setup)  # noqa: B023
        row = {
            "method": spec.label,
            **summary,
            "params": _n_params(model),
            **info,
            "reference": spec.reference,
        }
        rows.append(row)
        examples[spec.label] = ex
        log(
            f"  {setup.task:8s} {spec.label:34s} PSNR {row['psnr']:6.2f}  SSIM {row['ssim']:.3f}  "
            f"{row['train_s']:6.1f} s, {row['steps']} steps, lr {row['lr']:.2g}, best val epoch "
            f"{row['best_epoch']}" + (f"  [{row['diverged']}]" if row["diverged"] else "")
        )
        del model
    ref = next((r for r in rows if r["reference"]), None)
    for r in rows:
        r["time_ratio"] = r["s_per_step"] / ref["s_per_step"] if ref and ref["s_per_step"] else None
    return rows, examples


# ---------------------------------------------------------------------------------------------------------
# the tasks
# ---------------------------------------------------------------------------------------------------------
class _FBPInit(nn.Module):
    """``A^dagger y`` (FBP): the initial image of deepinv's unfolded PGD baseline."""

    def __init__(self, op):
        super().__init__()
        object.__setattr__(self, "op", op)

    def forward(self, y):
        return self.op.A_dagger(y)


def _bcd_pool(setup: Setup, make: Callable[[], nn.Module], want: int, max_mb: float) -> tuple[int, float]:
    """BCD pool size: ``want`` samples, fewer if their lifted states exceed ``max_mb``; returns (n, MiB/sample)."""
    from liftinv.lifted import lift

    net = lift(make(), last="fixed")
    with torch.no_grad():
        states = net.forward_states(setup.chunk(0)[0][:1])
    per = sum(s.numel() for s in states[1:-1]) * 4 / 2**20
    return max(setup.cfg["batch"], min(want, int(max_mb // max(per, 1e-9)))), per


def _lifted_variant(text: str) -> tuple[str, dict]:
    """``"bregman-isgm+frozen+sweeps=2"`` -> ``("bregman-isgm", {"frozen_preactivations": True, "sweeps": 2})``:
    a lifted method of ``--lifted`` / ``--ct-lifted`` with trainer options beyond the mode's."""
    method, *parts = text.split("+")
    if method not in LIFTED_LABELS:
        raise ValueError(
            f"lifted method must be one of {', '.join(LIFTED_LABELS)}, got {method!r} in {text!r}"
        )
    extra: dict = {}
    for part in parts:
        if part == "frozen":
            extra["frozen_preactivations"] = True
        elif part.startswith("sweeps=") and part[7:].isdigit() and int(part[7:]) >= 1:
            extra["sweeps"] = int(part[7:])
        else:
            raise ValueError(
                f"lifted variant suffixes are +frozen and +sweeps=N (N >= 1), got {part!r} in {text!r}"
            )
    return method, extra


def lifted_specs(
    setup: Setup, methods: list[str], make, label: str, args, lr_of, mode_defaults: bool = True
) -> list[RowSpec]:
    """One row per lifted method (``"method+suffix..."``, :func:`_lifted_variant`): the trainer's
    ``DEFAULT_OPTIONS``, then (``mode_defaults``) the default mode's :data:`DEFAULT_LIFTED_OPTIONS`, then the
    suffixes."""
    from liftinv.unrolled.train import DEFAULT_OPTIONS

    specs = []
    for variant in methods:
        m, extra = _lifted_variant(variant)
        opts = {k: v for k, v in DEFAULT_OPTIONS.get(m, {}).items() if k not in ("lr", "batch_size")}
        opts["batch_size"] = setup.cfg["batch"]
        if mode_defaults and args.mode == "default":
            opts.update(DEFAULT_LIFTED_OPTIONS.get(setup.task, {}).get(m, {}))
        opts.update(extra)
        pool = None
        if m.endswith("-bcd"):
            pool, per = _bcd_pool(setup, make, setup.cfg["bcd_pool"], args.bcd_max_mb)
            setup.notes.append(
                f"{label} {LIFTED_LABELS[m]}: per-sample lifted states ({per:.2f} MiB each) are kept across "
                f"epochs, so it trains on a fixed pool of the first {pool} training samples of the stream "
                f"(cap {args.bcd_max_mb:g} MiB) instead of fresh samples"
            )
        name = (
            f"{label}, {LIFTED_LABELS[m]}"
            + (", frozen pre-activations" if opts.get("frozen_preactivations") else "")
            + (f", {opts['sweeps']} sweeps" if opts.get("sweeps", 1) > 1 else "")
        )
        specs.append(RowSpec(name, m, make, lr_of(m), opts, pool))
    return specs


def _lr(args, method: str, task: str, row: str | None = None) -> float:
    """Base rate of ``method`` (``row``: a baseline with its own rate, ``"dncnn"`` / ``"deepinv"``) on ``task``:
    ``--lr``, else :data:`DEFAULT_RATES` in the default mode, else :data:`BASE_LR` of the task's family."""
    if method in args.lr:
        return args.lr[method]
    if args.mode == "default":
        rates = DEFAULT_RATES[task]
        return rates.get(row or method, rates.get(method, 1e-3))
    return BASE_LR["ct" if task == "ct" else "image"].get(method, 1e-3)


def run_ct(args, mode: str, device) -> dict:
    from liftinv.models import LearnedPrimalDual

    cfg = dict(CT_MODES[mode])
    if args.ct_size:
        cfg["size"] = args.ct_size
    cfg.update(_budget(args, cfg))
    setup = ct_setup(cfg, args.seed)
    setup.device = device
    ctx = _ctx(args, "ct", cfg, device)
    rows, examples, tv = classical_rows(setup, args)
    op = setup.operator
    lpd_kw = {**cfg["lpd"], "init": "fbp", "seed": args.seed}

    def make_lpd():
        return LearnedPrimalDual(op, **lpd_kw)

    specs = []
    if args.deepinv if args.deepinv is not None else mode != "quick":
        di = cfg["deepinv"]

        def make_deepinv():
            torch.manual_seed(args.seed)
            return DeepinvUnfoldedPGD(
                op, _FBPInit(op), iterations=di["iterations"], depth=di["depth"], features=di["features"]
            )

        specs.append(
            RowSpec(
                "deepinv unfolded PGD (backprop)",
                "backprop-adam",
                make_deepinv,
                _lr(args, "backprop-adam", "ct", "deepinv"),
                {"batch_size": cfg["batch"]},
            )
        )
    else:
        setup.notes.append("deepinv's unfolded PGD: skipped (off in --quick; --deepinv to add it)")
    specs.append(
        RowSpec(
            "LPD, backprop (Adam)",
            "backprop-adam",
            make_lpd,
            _lr(args, "backprop-adam", "ct"),
            {"batch_size": cfg["batch"]},
            reference=True,
        )
    )
    specs += lifted_specs(setup, args.ct_lifted, make_lpd, "LPD", args, lambda m: _lr(args, m, "ct"))
    trained, ex = run_trained(specs, setup, ctx)
    examples.update(ex)
    net_desc = (
        f"LearnedPrimalDual K = {cfg['lpd']['iterations']}, {cfg['lpd']['width']} channels, 5 primal / 5 dual "
        "memory channels, init FBP, leaky ReLU 0.1"
    )
    return _result(setup, rows + trained, examples, tv, ctx, cfg, net_desc)


def image_config(args, task: str, mode: str) -> dict:
    """The settings of natural-image ``task`` in ``mode``: :data:`IMAGE_MODES` with the task's own row budget
    (``task_row_minutes``), then the command line (``--row-minutes``, PG-CNN sizes, ``--patch``, ``--batch``)."""
    cfg = dict(IMAGE_MODES[mode])
    cfg["row_minutes"] = cfg.pop("task_row_minutes", {}).get(task, cfg["row_minutes"])
    cfg.update(_budget(args, cfg))
    cfg["pg"] = {**cfg["pg"], **_pg_overrides(args)}
    if args.patch is not None:
        cfg["patch"] = args.patch
    if args.batch is not None:
        cfg["batch"] = args.batch
    return cfg


def run_image_task(task: str, args, mode: str, device) -> dict:
    import deepinv as dinv

    from liftinv.models import UnrolledProxGradCNN

    cfg = image_config(args, task, mode)
    setup = image_setup(task, cfg, args.seed, args)
    setup.device = device
    ctx = _ctx(args, task, cfg, device)
    rows, examples, tv = classical_rows(setup, args)
    op = setup.operator
    data_step = _pg_data_step(args, task)
    pg_kw = {**cfg["pg"], "init": PG_INIT[task], "seed": args.seed, "data_step": data_step}

    def make_pg():
        return UnrolledProxGradCNN(op, **pg_kw)

    specs = []
    if task == "denoise":
        dn = cfg["dncnn"]

        def make_dncnn():
            torch.manual_seed(args.seed)
            return dinv.models.DnCNN(
                in_channels=1, out_channels=1, depth=dn["depth"], nf=dn["nf"], pretrained=None
            )

        specs.append(
            RowSpec(
                f"DnCNN (deepinv, depth {dn['depth']}, {dn['nf']} ch), backprop",
                "backprop-adam",
                make_dncnn,
                _lr(args, "backprop-adam", task, "dncnn"),
                {"batch_size": cfg["batch"]},
            )
        )
    specs.append(
        RowSpec(
            "PG-CNN, backprop (Adam)",
            "backprop-adam",
            make_pg,
            _lr(args, "backprop-adam", task),
            {"batch_size": cfg["batch"]},
            reference=True,
        )
    )
    specs += lifted_specs(setup, args.lifted, make_pg, "PG-CNN", args, lambda m: _lr(args, m, task))
    trained, ex = run_trained(specs, setup, ctx)
    examples.update(ex)
    net_desc = (
        f"UnrolledProxGradCNN (PG-CNN) K = {cfg['pg']['iterations']}, CNN depth {cfg['pg']['depth']}, "
        f"{cfg['pg']['width']} channels, per-iteration weights, init {PG_INIT[task]}, {data_step} data steps"
    )
    return _result(setup, rows + trained, examples, tv, ctx, cfg, net_desc)


def _budget(args, cfg: dict) -> dict:
    out = {}
    if args.row_minutes is not None:
        out["row_minutes"] = args.row_minutes
    return out


def _pg_overrides(args) -> dict:
    """``--pg-iterations`` / ``--pg-depth`` / ``--pg-width`` / ``--pg-dilations``: the PG-CNN sizes given on the
    command line."""
    sizes = {
        "iterations": args.pg_iterations,
        "depth": args.pg_depth,
        "width": args.pg_width,
        "dilations": args.pg_dilations,
    }
    return {k: v for k, v in sizes.items() if v is not None}


def _ctx(args, task: str, cfg: dict, device) -> Ctx:
    mode = args.mode
    grid = tuple(args.lr_grid) if args.lr_grid else LR_GRID[mode]
    key = {
        "task": task,
        "cfg": cfg,
        "pg_init": PG_INIT.get(task),
        "seed": args.seed,
        "grid": grid,
        "pilot": args.pilot or PILOT[mode],
        "max_epochs": args.max_epochs,
        "lr": args.lr,
        "lifted": args.lifted if task != "ct" else args.ct_lifted,
        "bcd_max_mb": args.bcd_max_mb,
        "images": [args.images, args.test_images, args.restore_test_images],
        "device": str(device),
    }
    data_step = None if task == "ct" else _pg_data_step(args, task)
    if data_step not in (None, "gradient"):  # only then, so the earlier folders keep their names
        key["pg_data_step"] = data_step
    if args.patience is not None:  # only then, so the folders of runs without rollbacks keep their names
        key["rollbacks"] = [args.patience, args.rollback_db, args.lr_decay]
    d = Path(args.checkpoint_dir) / f"{task}-{mode}-{_digest(key)}"
    d.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        for f in d.iterdir():
            if f.is_file() and f.suffix in (".pt", ".json", ".tmp"):
                f.unlink()
    (d / "config.json").write_text(json.dumps(key, indent=1, default=str))
    log(f"  checkpoints: {d}")
    return Ctx(
        device,
        args.seed,
        d,
        cfg["row_minutes"] * 60,
        args.max_epochs,
        grid,
        args.pilot or PILOT[mode],
        progress_every=args.progress_every,
        patience=args.patience,
        rollback_db=args.rollback_db,
        lr_decay=args.lr_decay,
    )


def _result(setup: Setup, rows, examples, tv, ctx: Ctx, cfg, net_desc) -> dict:
    g = setup.test[setup.example]
    return {
        "task": setup.task,
        "description": DESCRIPTIONS[setup.task],
        "network": net_desc,
        "tv": tv,
        "rows": rows,
        "notes": setup.notes,
        "config": {k: v for k, v in cfg.items()},
        "row_minutes": ctx.row_seconds / 60,
        "lr_grid": list(ctx.lr_grid),
        "pilot": ctx.pilot,
        "examples": examples,
        "example_truth": g.x[:1],
        "example_name": g.names[0],
    }


# ---------------------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------------------
def table(res: dict, device) -> str:
    ct = res["task"] == "ct"
    head = "| method | PSNR (dB) | SSIM |" + (" Shepp-Logan PSNR |" if ct else "")
    head += " params | train time (s) | s/step / backprop | steps (epochs) | lr | lr search (s) | peak mem (MiB) | device |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in res["rows"]:
        trained = "steps" in r
        cells = [
            r["method"] + (f" [{r['diverged']}]" if r.get("diverged") else ""),
            _fmt(r["psnr"], ".2f"),
            _fmt(r["ssim"], ".3f"),
        ]
        if ct:
            cells.append(_fmt(r.get("psnr_shepp"), ".2f"))
        cells += [
            str(r["params"]) if trained else "-",
            _fmt(r.get("train_s"), ".1f"),
            _fmt(r.get("time_ratio"), ".2f"),
            f"{r['steps']} ({r['epochs']})" if trained else "-",
            _fmt(r.get("lr"), ".2g"),
            _fmt(r.get("search_s"), ".0f"),
            _fmt(r.get("memory_mb"), ".0f"),
            str(device) if trained else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _val_at(curve: list[dict], key: str, value: float) -> float | None:
    """Best validation PSNR of a curve up to ``curve[key] <= value`` (None if the curve starts later)."""
    pts = [c["val_psnr"] for c in curve if c[key] <= value + 1e-9]
    return max(pts) if pts else None


def verdict(res: dict) -> str:
    """Learned vs TV; best lifted Bregman (ISGM / BCD) vs backprop at equal training time; each lifted row
    against backprop after as many steps, and its time per step."""
    rows = res["rows"]
    tv = next(r for r in rows if r["method"].startswith("TV"))
    ref = next((r for r in rows if r.get("reference")), None)
    lifted = [r for r in rows if r.get("method_name", "").startswith(("bregman", "mac"))]
    bregman = [r for r in lifted if r["method_name"].startswith("bregman")]
    parts = []
    learned = [r for r in rows if "steps" in r]
    if learned:
        best = max(learned, key=lambda r: r["psnr"])
        parts.append(f"best learned ({best['method']}) - TV = {best['psnr'] - tv['psnr']:+.2f} dB")
    if ref and bregman:
        bl = max(bregman, key=lambda r: r["psnr"])
        gap = bl["psnr"] - ref["psnr"]
        parts.append(
            f"best lifted Bregman ({bl['method']}) - backprop = {gap:+.2f} dB at equal training time "
            f"({'within' if gap >= -0.5 else 'NOT within'} 0.5 dB)"
        )
    if ref:
        for r in lifted:
            same = _val_at(ref["curve"], "steps", r["steps"])
            if same is not None:
                parts.append(
                    f"{r['method'].split(', ')[-1]}: {r['steps']} steps reach val {r['val_psnr']:.2f} dB, backprop "
                    f"{same:.2f} dB after as many; {_fmt(r['time_ratio'], '.1f')}x backprop's time per step "
                    "(target <= 2x)"
                )
    return "; ".join(parts)


def figure(results: list[dict], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def pick(res):
        rows = res["rows"]
        cols = [rows[0]["method"], rows[1]["method"]]
        ref = next((r for r in rows if r.get("reference")), None)
        lifted = [r for r in rows if r.get("method_name", "").startswith(("bregman", "mac"))]
        if ref:
            cols.append(ref["method"])
        if lifted:
            cols.append(max(lifted, key=lambda r: r["psnr"])["method"])
        others = [r["method"] for r in rows if "steps" in r and r["method"] not in cols]
        return cols + others[:1]

    ncol = 1 + max(len(pick(r)) for r in results) + 1
    fig = Figure(figsize=(2.3 * ncol + 1.5, 2.6 * len(results)), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(len(results), ncol, width_ratios=[1] * (ncol - 1) + [1.8])
    for r, res in enumerate(results):
        truth = res["example_truth"]
        by = {row["method"]: row for row in res["rows"]}
        cols = ["truth"] + pick(res)
        for c, col in enumerate(cols):
            ax = fig.add_subplot(grid[r, c])
            img = truth if col == "truth" else res["examples"][col]
            ax.imshow(img[0, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == "truth":
                ax.set_ylabel(res["task"], fontsize=10)
                ax.set_title(f"truth ({res['example_name']})", fontsize=7)
            else:
                p = float(psnr_per_image(img, truth))
                ax.set_title(f"{col[:42]}\n{p:.2f} dB (test mean {by[col]['psnr']:.2f})", fontsize=6.5)
        ax = fig.add_subplot(grid[r, ncol - 1])
        for row in res["rows"]:
            if "curve" in row:
                xs = [c["seconds"] for c in row["curve"]]
                ys = [c["val_psnr"] for c in row["curve"]]
                ax.plot(xs, ys, label=row["method"][:30], lw=1.2, marker="." if len(xs) < 30 else None)
        ax.axhline(res["tv"]["val_psnr"], color="k", ls="--", lw=1, label="TV (tuned)")
        ax.set_xlabel("training time (s)", fontsize=7)
        ax.set_ylabel("validation PSNR (dB)", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5, loc="lower right")
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)


def markdown(results: list[dict], args, device, seconds: float, fig_path: Path | None) -> str:
    smoke = args.mode == "quick"
    title = (
        "# Learned unrolled networks (CNN proximal steps) vs tuned TV: back-propagation vs lifted training"
    )
    out = [title + (" -- SMOKE RUN (--quick: tiny images and budgets, not a result)" if smoke else ""), ""]
    flag = "".join(" " + shlex.quote(a) for a in getattr(args, "argv", []))  # the command, as typed
    grid = args.lr_grid or LR_GRID[args.mode]
    pilot = args.pilot or PILOT[args.mode]
    out += [
        f"Generated by `benchmarks/learned.py{flag}` ({time.strftime('%Y-%m-%d')}; device {device}, "
        f"{args.threads} torch thread(s), seed {args.seed}; total {seconds / 60:.1f} min wall; absolute "
        f"times depend on what else the machine runs, time ratios less so). liftinv: {args.provenance}.",
        "",
        "Protocol: every hyper-parameter is chosen on validation data, never on the test set, which is "
        "evaluated once per row at the end: TV alpha by a decade walk and half / quarter-decade refinement; the "
        "epoch by the best validation PSNR (checked after every epoch); the learning rate "
        + (
            "= the rates of `DEFAULT_RATES` in the script, per task and row (chosen on validation data by the "
            "longest lr pilots this script ran for the task; no search in this run). "
            if len(grid) == 1 and args.mode == "default"
            else "= the base rates of `BASE_LR` in the script (chosen on validation data by a preliminary lr "
            "search of this script; no search in this run). "
            if len(grid) == 1
            else f"among base x {{{', '.join(f'{m:.3g}' for m in grid)}}} (`BASE_LR`) by pilot runs of "
            f"{pilot:.0%} of the budget on validation data (the chosen pilot continues). "
        )
        + (
            "Base rates set on the command line (`--lr`): "
            + ", ".join(f"{k} {v:g}" for k, v in args.lr.items())
            + ". "
            if args.lr
            else ""
        )
        + (
            f"Step-size decay by rollback (`--patience {args.patience}`, every trained row): after "
            f"{args.patience} epochs without a better validation PSNR (or a fall of {args.rollback_db:g} dB "
            f"below the best) the row returns to its best weights with a fresh trainer state (Adam moments; "
            f"the lifted trainers' states) and the step size "
            f"times {args.lr_decay:g}; the rollbacks are listed in the JSON. "
            if args.patience
            else ""
        )
        + "Every trained row gets the same training wall-time budget (fit's per-epoch wall time, validation "
        "excluded); an epoch is one chunk of fresh training samples (BCD: one pass over its fixed pool). "
        "'s/step / backprop' divides the row's training time per mini-batch step by that of the task's "
        "reference back-propagation row (LPD for CT, PG-CNN otherwise). "
        "PSNR/SSIM: mean over the test images, reconstructions clipped to [0, 1], SSIM from scikit-image "
        "(7x7). Lifted trainers: liftinv's unrolled-network implementations (`fit` methods bregman-isgm, "
        "bregman-bcd, mac-isgm) with the options of `liftinv.unrolled.train.DEFAULT_OPTIONS` (inner rounds) "
        "and the batch size of the task.",
        "",
    ]
    for res in results:
        out += [
            f"## {res['task']}: {res['description']}",
            "",
            f"Network: {res['network']}. Budget {res['row_minutes']:.2f} min of training per trained row"
            + (f"; lr pilots {res['pilot']:.0%} of it" if len(res["lr_grid"]) > 1 else "")
            + f". TV alpha = {res['tv']['alpha']:.3g} (validation {res['tv']['val_psnr']:.2f} dB, "
            f"{res['config']['tv_iter']} PDHG iterations).",
            "",
            *[f"- {n}" for n in res["notes"]],
            "",
            table(res, device),
            "",
            f"**Verdict:** {verdict(res)}.",
            "",
        ]
    if fig_path is not None:
        out += [
            f"![example reconstructions and validation PSNR against training time]({fig_path.name})",
            "",
        ]
    return "\n".join(out)


def _json_safe(res: dict) -> dict:
    return {k: v for k, v in res.items() if k not in ("examples", "example_truth")}


# ---------------------------------------------------------------------------------------------------------
# --long-ct: resumable LPD training on 128x128 ellipses
# ---------------------------------------------------------------------------------------------------------
LONG_CT = dict(size=128, n_val=8, n_test=16, batch=4, steps_per_epoch=8, pool=2**40, tv_iter=300)


def long_ct(args, device) -> int:
    """Train LPD by backprop on the endless ellipse stream for ``--budget-minutes`` of elapsed time (data,
    validation and checkpoints included; the final test and, the first time, TV come after it), resuming
    from and appending to the log and checkpoint in the checkpoint folder."""
    from liftinv.models import LearnedPrimalDual

    session_start = time.perf_counter()
    cfg = dict(LONG_CT)
    cfg["size"] = args.ct_size or cfg["size"]
    cfg["batch"] = args.batch or cfg["batch"]
    cfg["lpd"] = dict(iterations=args.lpd_iterations or 10, width=args.lpd_width or 32)
    lr = _lr(args, "backprop-adam", "ct")
    d = Path(args.checkpoint_dir) if args.checkpoint_dir else LONG_CT_DIR
    d.mkdir(parents=True, exist_ok=True)
    key = {"cfg": cfg, "lr": lr, "seed": args.seed, "noise": CT_NOISE, "angles": CT_ANGLES}
    cfg_file = d / "config.json"
    if cfg_file.is_file() and json.loads(cfg_file.read_text()) != json.loads(json.dumps(key)):
        log(f"{cfg_file} holds another configuration:\n{cfg_file.read_text()}\nuse another --checkpoint-dir")
        return 2
    cfg_file.write_text(json.dumps(key, indent=1))
    setup = ct_setup(cfg, args.seed, cache=False)
    setup.device = device
    op = setup.operator

    def make():
        return LearnedPrimalDual(op, **cfg["lpd"], init="fbp", seed=args.seed)

    spec = RowSpec("LPD long run, backprop (Adam)", "backprop-adam", make, lr, {"batch_size": cfg["batch"]})
    ckpt, best_path, log_path = d / "lpd_backprop.pt", d / "lpd_backprop.best.pt", d / "lpd_backprop_log.json"
    record = json.loads(log_path.read_text()) if log_path.is_file() else {"config": key, "sessions": []}
    tracker = ValTracker(setup.val, best_path)
    model = make().to(device)
    if "init_val_psnr" not in record:
        record["init_val_psnr"] = tracker.psnr(model)
    before = {"epoch": 0, "seconds": 0.0}
    if ckpt.is_file():  # the checkpoint, not the log, says how far training got (one history row per epoch)
        done = _checkpoint_history(ckpt)
        before = {"epoch": len(done), "seconds": float(done.last["wall"])}
    ctx = Ctx(
        device,
        args.seed,
        d,
        math.inf,
        10**9,
        (1.0,),
        0.0,
        progress_every=args.progress_every,
        patience=args.patience or 40,
        rollback_db=args.rollback_db,
        lr_decay=args.lr_decay,
    )
    log(
        f"long CT run: {cfg['size']}x{cfg['size']}, LPD K = {cfg['lpd']['iterations']}, width "
        f"{cfg['lpd']['width']}, batch {cfg['batch']}, lr {lr:g} (rollbacks so far: "
        f"{len(record.get('rollbacks', []))}); {before['seconds'] / 60:.1f} min trained so "
        f"far; this session trains for {args.budget_minutes:g} min of elapsed time (checkpoint {ckpt})"
    )
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    deadline = session_start + args.budget_minutes * 60
    record.setdefault("rollbacks", [])
    hist, diverged = _train_rolling(
        model,
        spec,
        setup,
        lr,
        ckpt,
        math.inf,
        ctx,
        tracker,
        record["rollbacks"],
        lambda: log_path.write_text(json.dumps(record, indent=1)),
        deadline,
    )
    spe = cfg["steps_per_epoch"]
    if hist is not None:
        record["curve"] = [
            {
                "epoch": r["epoch"],
                "steps": r["epoch"] * spe,
                "seconds": r["wall"],
                "val_psnr": r["test_custom"],
            }
            for r in hist
        ]
    last = record["curve"][-1] if record.get("curve") else before
    record["sessions"].append(
        {
            "started": started,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            "budget_minutes": args.budget_minutes,
            "epochs": [before["epoch"], last["epoch"]],
            "train_seconds": [before["seconds"], last["seconds"]],
            "device": str(device),
            "threads": args.threads,
            "diverged": diverged,
        }
    )
    record["best"] = {"epoch": tracker.best_epoch, "val_psnr": tracker.best}
    log_path.write_text(json.dumps(record, indent=1))
    if best_path.is_file():
        model.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True)["state"])
    summary, _ = evaluate(lambda y, op_: _predict(model, y), setup)
    tv = _long_ct_tv(setup, args, d)
    record["test"] = {
        "after_seconds": last["seconds"],
        "best_epoch": tracker.best_epoch,
        **summary,
        "tv": tv["tv"],
        "fbp": tv["fbp"],
    }
    log_path.write_text(json.dumps(record, indent=1))
    _long_ct_figure(record, tv, d / "lpd_backprop_curve.png")
    log(
        f"\nafter {last['seconds'] / 60:.1f} min of training ({last['epoch'] * spe} steps, best validation epoch "
        f"{tracker.best_epoch}): LPD test PSNR {summary['psnr']:.2f} dB (Shepp-Logan {summary['psnr_shepp']:.2f})"
        f" vs tuned TV {tv['tv']['psnr']:.2f} dB (Shepp-Logan {tv['tv']['psnr_shepp']:.2f}; alpha "
        f"{tv['info']['alpha']:.3g}), FBP {tv['fbp']['psnr']:.2f} dB: LPD - TV = "
        f"{summary['psnr'] - tv['tv']['psnr']:+.2f} dB"
    )
    log(f"log {log_path}; checkpoint {ckpt}; curve {d / 'lpd_backprop_curve.png'}")
    return 0


def _long_ct_tv(setup: Setup, args, d: Path) -> dict:
    """FBP and TV (alpha tuned on the validation phantoms) on the long run's test set, computed once and
    cached in ``tv.json`` of the checkpoint folder (written atomically)."""
    tv_path = d / "tv.json"
    if tv_path.is_file():
        return json.loads(tv_path.read_text())
    log("tuning TV on the validation phantoms and testing it (once; cached in tv.json) ...")
    rows, _, tv_info = classical_rows(setup, args)
    tv = {"info": tv_info, "fbp": rows[0], "tv": rows[1]}
    tmp = tv_path.with_name(tv_path.name + ".tmp")
    tmp.write_text(json.dumps(tv, indent=1))
    os.replace(tmp, tv_path)
    return tv


def long_ct_tv_only(args, device) -> int:
    """``--long-ct --tv-only``: compute (or read) the long run's FBP / tuned-TV figures into ``tv.json`` without
    training or touching the training log (so it can run beside a training sitting)."""
    cfg = dict(LONG_CT)
    cfg["size"] = args.ct_size or cfg["size"]
    d = Path(args.checkpoint_dir) if args.checkpoint_dir else LONG_CT_DIR
    setup = ct_setup(cfg, args.seed, cache=False)
    setup.device = device
    tv = _long_ct_tv(setup, args, d)
    log(
        f"tuned TV {tv['tv']['psnr']:.2f} dB (Shepp-Logan {tv['tv']['psnr_shepp']:.2f}; alpha "
        f"{tv['info']['alpha']:.3g}), FBP {tv['fbp']['psnr']:.2f} dB on the long run's test phantoms ({d / 'tv.json'})"
    )
    return 0


def _long_ct_figure(record: dict, tv: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    curve = [{"seconds": 0.0, "val_psnr": record["init_val_psnr"]}] + record.get("curve", [])
    ax.plot(
        [c["seconds"] / 3600 for c in curve], [c["val_psnr"] for c in curve], label="LPD, backprop (Adam)"
    )
    seconds = {c["epoch"]: c["seconds"] for c in record.get("curve", [])}
    for i, r in enumerate(record.get("rollbacks", [])):
        if r["epoch"] in seconds:
            ax.axvline(
                seconds[r["epoch"]] / 3600,
                color="tab:red",
                lw=0.8,
                alpha=0.6,
                label=f"rollback, step x {r['lr_factor']:g}" if i == 0 else None,
            )
    ax.axhline(tv["info"]["val_psnr"], color="k", ls="--", label="TV (alpha tuned)")
    ax.axhline(tv["info"]["val_psnr"] + 3, color="gray", ls=":", label="TV + 3 dB")
    cfg = record["config"]["cfg"]
    ax.set_title(
        f"CT {cfg['size']}x{cfg['size']}, {CT_ANGLES} angles, 5% noise; LPD K={cfg['lpd']['iterations']}, "
        f"{cfg['lpd']['width']} ch, batch {cfg['batch']}",
        fontsize=8,
    )
    ax.set_xlabel("training time (h)")
    ax.set_ylabel("validation PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)


# ---------------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------------
def _lr_pairs(text: str) -> dict[str, float]:
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, _, value = item.partition("=")
        out[name.strip()] = float(value)
    return out


def parse_args(argv):
    from liftinv.commands.train import int_list

    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="CPU smoke run (<= 20 min on 2 cores)")
    mode.add_argument("--full", action="store_true", help="paper-scale run (for --device cuda)")
    mode.add_argument("--long-ct", action="store_true", help="resumable long LPD backprop run on CT ellipses")
    p.add_argument(
        "--tv-only",
        action="store_true",
        help="with --long-ct: only compute the FBP / tuned-TV figures of its test set (tv.json), no training",
    )
    p.add_argument(
        "--tasks", default=",".join(TASKS), help="comma-separated subset of ct,denoise,deblur,inpaint"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 for timing)")
    p.add_argument("--images", default=None, help="training image folder (default ../shared/data/Train400)")
    p.add_argument("--test-images", default=None, help="denoising test folder (default ../shared/data/BSD68)")
    p.add_argument(
        "--restore-test-images",
        default=None,
        help="deblurring / inpainting test folder (default ../shared/data/Set12)",
    )
    p.add_argument("--out-dir", default=str(RESULTS), help="where learned.{md,json,png} go")
    p.add_argument(
        "--checkpoint-dir",
        default=None,
        help=f"checkpoints (default {CHECKPOINTS}; --long-ct: {LONG_CT_DIR})",
    )
    p.add_argument("--fresh", action="store_true", help="ignore (delete) this configuration's checkpoints")
    p.add_argument("--row-minutes", type=float, default=None, help="training budget per trained row")
    p.add_argument("--max-epochs", type=int, default=10**6, help="at most this many epochs per row")
    p.add_argument(
        "--lr-grid", default=None, help="learning-rate multipliers searched on validation, e.g. 0.33,1,3"
    )
    p.add_argument(
        "--pilot", type=float, default=None, help="pilot budget of the lr search (fraction of a row)"
    )
    p.add_argument("--lr", default="", help="base rates, e.g. backprop-adam=1e-3,bregman-isgm=3e-3")
    p.add_argument(
        "--lifted",
        default="bregman-isgm",
        help="lifted methods of the natural-image tasks; suffixes +frozen (frozen pre-activations) and "
        "+sweeps=N (state sweeps per round), e.g. bregman-isgm+frozen+sweeps=2",
    )
    p.add_argument(
        "--ct-lifted", default="bregman-isgm,bregman-bcd,mac-isgm", help="lifted methods of the CT task"
    )
    p.add_argument(
        "--ct-size", type=int, default=None, help="CT image side (default: quick 32, default 64, full 128)"
    )
    p.add_argument(
        "--deepinv", action=argparse.BooleanOptionalAction, default=None, help="deepinv unfolded row (CT)"
    )
    p.add_argument(
        "--bcd-max-mb", type=float, default=1024.0, help="cap on the BCD rows' per-sample state memory"
    )
    p.add_argument(
        "--budget-minutes",
        type=float,
        default=30.0,
        help="--long-ct: elapsed minutes of training this session (then test, TV once)",
    )
    p.add_argument("--lpd-iterations", type=int, default=None, help="--long-ct: LPD iterations (default 10)")
    p.add_argument("--lpd-width", type=int, default=None, help="--long-ct: LPD channels (default 32)")
    p.add_argument(
        "--batch",
        type=int,
        default=None,
        help="batch size: --long-ct (default 4) and the natural-image tasks (default per mode); not the CT rows",
    )
    p.add_argument(
        "--rollback-db",
        type=float,
        default=5.0,
        help="with --patience / --long-ct: also roll back when validation falls this far below the best",
    )
    p.add_argument(
        "--patience",
        type=int,
        default=None,
        help="roll back to the best weights and decay the step size after this many epochs without a better "
        "validation PSNR (trained rows and --long-ct; default: --long-ct 40, rows 10, --quick rows never; 0: "
        "rows never)",
    )
    p.add_argument(
        "--pg-data-step",
        choices=("auto", "gradient", "prox"),
        default="auto",
        help="data step of the PG-CNN rows: gradient or proximal (half-quadratic splitting); auto: per task",
    )
    p.add_argument(
        "--patch", type=int, default=None, help="training patch side of the natural-image tasks (per mode)"
    )
    p.add_argument("--pg-iterations", type=int, default=None, help="PG-CNN unrolled iterations K (per mode)")
    p.add_argument(
        "--pg-depth", type=int, default=None, help="PG-CNN convolutions per proximal CNN (per mode)"
    )
    p.add_argument(
        "--pg-width", type=int, default=None, help="PG-CNN channels of the proximal CNNs (per mode)"
    )
    p.add_argument(
        "--pg-dilations",
        type=int_list,
        default=None,
        help="PG-CNN dilation of each conv, e.g. 1,2,4,1 (one per conv; default 1)",
    )
    p.add_argument("--lr-decay", type=float, default=0.3, help="step-size factor applied at every rollback")
    p.add_argument("--progress-every", type=float, default=15.0, help="seconds between progress lines")
    p.add_argument("--no-figure", action="store_true")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.mode = "quick" if args.quick else "full" if args.full else "default"
    args.lr = _lr_pairs(args.lr)
    args.lr_grid = tuple(float(v) for v in args.lr_grid.split(",")) if args.lr_grid else None
    args.lifted = [m.strip() for m in args.lifted.split(",") if m.strip()]
    args.ct_lifted = [m.strip() for m in args.ct_lifted.split(",") if m.strip()]
    for flag, methods in (("--lifted", args.lifted), ("--ct-lifted", args.ct_lifted)):
        for m in methods:
            try:
                _lifted_variant(m)
            except ValueError as err:
                p.error(f"{flag}: {err}")
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    bad = [t for t in args.tasks if t not in TASKS]
    if bad:
        p.error(f"unknown task(s) {', '.join(bad)}; choose from {', '.join(TASKS)}")
    for flag in ("pg_iterations", "pg_depth", "pg_width", "batch"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if args.patch is not None and args.patch < 8:
        p.error(f"--patch must be >= 8 pixels, got {args.patch}")
    if not 0 < args.lr_decay <= 1:
        p.error(f"--lr-decay must be in (0, 1], got {args.lr_decay}")
    if (args.patience is not None and args.patience < 0) or args.rollback_db <= 0:
        p.error(f"--patience must be >= 0 and --rollback-db > 0, got {args.patience} and {args.rollback_db}")
    if args.patience is None and not args.long_ct:
        args.patience = ROW_PATIENCE[args.mode]
    args.patience = args.patience or None  # 0: no rollbacks
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("DEEPINV_CACHE_DIR", "/tmp/liftinv-deepinv-cache")
    from liftinv.training import resolve_device

    device = resolve_device(args.device)
    if args.long_ct:
        return long_ct_tv_only(args, device) if args.tv_only else long_ct(args, device)
    if args.full and device.type != "cuda":
        log("warning: --full is sized for a GPU (--device cuda); on this CPU it will take many hours")
    args.checkpoint_dir = args.checkpoint_dir or str(CHECKPOINTS)
    if args.fresh:
        log("--fresh: this run's checkpoint folders are emptied as they are opened")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    args.provenance = provenance()
    log(f"liftinv: {args.provenance}")
    start = time.perf_counter()
    results = []
    for task in args.tasks:
        t0 = time.perf_counter()
        log(f"== {task} ({args.mode} mode)")
        res = (
            run_ct(args, args.mode, device) if task == "ct" else run_image_task(task, args, args.mode, device)
        )
        res["seconds"] = time.perf_counter() - t0
        results.append(res)
        log(f"== {task}: {res['seconds'] / 60:.1f} min")
    seconds = time.perf_counter() - start
    for res in results:
        log(f"\n## {res['task']}: {res['description']}")
        log(table(res, device))
        log("verdict: " + verdict(res))
    fig_path = None if args.no_figure else out_dir / "learned.png"
    if fig_path is not None:
        figure(results, fig_path)
        log(f"wrote {fig_path}")
    md = out_dir / "learned.md"
    md.write_text(markdown(results, args, device, seconds, fig_path))
    payload = {
        "args": {k: v for k, v in vars(args).items()},
        "device": str(device),
        "seconds": seconds,
        "results": [_json_safe(r) for r in results],
    }
    (out_dir / "learned.json").write_text(json.dumps(payload, indent=1, default=str))
    log(f"wrote {md} and {out_dir / 'learned.json'}")
    log(f"total {seconds / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
