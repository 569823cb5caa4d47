"""One-call GPU check of liftinv: CUDA tests, batch inversion, TV reconstruction and training, timed.

Prepared here and run on a GPU machine (by ``bash benchmarks/device_check.sh``, which first installs the
``.whl`` bundle of ``python3 tasks.py device-bundle`` and liftinv itself into a temporary site). Steps, in
this order, each timed, logged and stopped at its share of a total time budget (later steps are skipped
with a note once the budget is spent):

1. ``cuda_tests`` -- the CUDA tests and every test parametrised over devices (``pytest -k cuda``: the
   ``cuda`` marker, ``test_cuda_*`` and the ``[cuda]`` parameters of the ``device`` fixture), with their
   pass / fail counts. Without CUDA the selection is only collected (so that it cannot rot).
2. ``inversion`` -- lifted (PDHG) vs gradient (Adam) inversion with TV of a batch of 256 noisy outputs
   (2 % relative noise) of the P2 perceptron (64 x 64 -> 512) and of the convolutional encoder of the
   autoencoder recipe, 1000 iterations: images per second on the GPU and on the CPU cores, and the mean
   PSNR of both. The CPU inverts the first ``--cpu-batch`` outputs of the same batch (the samples are
   independent, so their results must match the GPU's within ``PSNR_TOL`` dB).
3. ``reconstruction`` -- TV reconstruction (PDHG) of ``camera`` with CT at 256 x 256 and 512 x 512 (30 and
   180 angles) and Gaussian deblurring at both sizes: seconds per 1000 iterations on the GPU and the CPU.
   The operator norm is computed once, on the GPU when there is one, and is not timed; where 1000
   iterations do not fit the time left (the CPU at 512 x 512), fewer are run and the time is scaled (the
   table says how many ran). The objectives of both devices are compared at the CPU's last iteration.
4. ``training`` -- one epoch of lifted Bregman ISGM and BCD vs back-propagation (Adam) for the MLP
   64-128-128-10 on the 8 x 8 digits and for the unrolled proximal-gradient network on 64 x 64 deblurring
   patches (256 patches): time ratio lifted / back-propagation and GPU vs CPU speed-up. On the GPU a warm-up
   epoch on a small subset comes first; on the CPU the unrolled epoch runs on the first
   ``--cpu-patches`` patches and its time is scaled to the full epoch.
5. ``gpu_info`` -- ``nvidia-smi``, ``torch.cuda.get_device_name()`` and the peak GPU memory
   (``torch.cuda.max_memory_allocated``, reset at the start of every step) of each step.

Outputs (in ``--out``, default ``$OUT`` or ``./device_out``): ``device_check.json`` (everything),
``device_check.md`` (the tables) and ``device_check.log`` (progress, pytest output, tracebacks); the JSON
and the markdown are rewritten after every step, so a run cut short still leaves its figures. A failing
step is logged with its traceback and the next step runs; the exit status is 1 if any step failed (a
failing test, a failed check or an exception), else 0 (steps stopped or skipped by the budget included).

Only liftinv's public API is used: ``liftinv.get_recipe``, ``liftinv.invert``, ``liftinv.fit``,
``liftinv.models.mlp``, ``liftinv.datasets``, ``liftinv.operators`` and ``liftinv.unrolled``.

Usage::

    bash benchmarks/device_check.sh                         # on the GPU machine, budget 480 s
    python benchmarks/device_check.py --cpu-smoke           # CPU only, tiny sizes, well under 60 s
    python benchmarks/device_check.py --steps inversion,reconstruction --budget 200 --out /tmp/dc
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]

#: steps in their order, with their titles
STEPS: dict[str, str] = {
    "cuda_tests": "CUDA and device-parametrised tests",
    "inversion": "Batch inversion: lifted vs gradient",
    "reconstruction": "TV reconstruction (PDHG)",
    "training": "One training epoch: lifted Bregman vs back-propagation",
    "gpu_info": "GPU, driver and peak memory",
}
#: share of the time budget of each step (the time a step leaves unused goes to the later ones)
WEIGHTS: dict[str, float] = {
    "cuda_tests": 1.0,
    "inversion": 1.0,
    "reconstruction": 1.2,
    "training": 1.3,
    "gpu_info": 0.05,
}
#: largest |PSNR_gpu - PSNR_cpu| (dB, mean over the CPU's images) accepted for the inversion
PSNR_TOL = 0.1
#: largest relative difference of the TV objectives of GPU and CPU at the same iteration
OBJECTIVE_RTOL = 1e-3
#: the pytest selection of step 1
TEST_SELECTION = ("-k", "cuda")
#: lifted and back-propagation methods of the MLP epoch (``liftinv.fit`` names, options as in
#: benchmarks/classification.py)
MLP_METHODS: dict[str, dict[str, Any]] = {
    "backprop-adam": {"lr": 1e-3, "batch_size": 64},
    "bregman-isgm": {"batch_size": 64},
    "bregman-bcd": {},
}
#: methods of the unrolled epoch (``liftinv.unrolled.train`` names; their default options)
UNROLLED_METHODS = ("backprop", "bregman-isgm", "bregman-bcd")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Problem sizes of a run (:data:`FULL` on the GPU machine, :data:`SMOKE` for ``--cpu-smoke``)."""

    inv_batch: int
    inv_cpu_batch: int
    inv_iters: int
    perceptron: tuple[int, int]
    ae_epochs: int
    noise: float
    ct_cases: tuple[tuple[int, int], ...]
    blur_sizes: tuple[int, ...]
    tv_iters: int
    mlp_samples: int | None
    unrolled_size: int
    unrolled_train: int
    unrolled_cpu_train: int
    unrolled_sides: tuple[int, int]
    unrolled_model: dict[str, Any]


FULL = Sizes(
    inv_batch=256,
    inv_cpu_batch=64,
    inv_iters=1000,
    perceptron=(64, 512),
    ae_epochs=10,
    noise=0.02,
    ct_cases=((256, 30), (256, 180), (512, 30), (512, 180)),
    blur_sizes=(256, 512),
    tv_iters=1000,
    mlp_samples=None,
    unrolled_size=64,
    unrolled_train=256,
    unrolled_cpu_train=32,
    unrolled_sides=(128, 96),
    unrolled_model={},
)
SMOKE = Sizes(
    inv_batch=6,
    inv_cpu_batch=6,
    inv_iters=15,
    perceptron=(16, 64),
    ae_epochs=1,
    noise=0.02,
    ct_cases=((32, 10),),
    blur_sizes=(32,),
    tv_iters=15,
    mlp_samples=256,
    unrolled_size=16,
    unrolled_train=8,
    unrolled_cpu_train=8,
    unrolled_sides=(32, 32),
    unrolled_model={"iterations": 2},
)

log = logging.getLogger("device_check")


class StepTimeout(BaseException):
    """Raised by the alarm when a step reaches its time cap (a BaseException: library code that catches
    ``Exception`` does not swallow it)."""


class Skip(Exception):
    """Raised by a step that cannot run here (no CUDA, ...): the step is recorded as skipped."""


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------
def sync(device: torch.device | str) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def psnr(x: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB, peak 1) of ``x`` clipped to [0, 1] against ``truth`` (computed on the CPU).

    Parameters
    ----------
    x, truth : Tensor
        ``[B, ...]`` images.

    Returns
    -------
    Tensor
        ``[B]`` float64.
    """
    from liftinv.metrics import psnr

    return psnr(x.detach().cpu().double().clamp(0, 1), truth.detach().cpu().double())


def relative_noise(f0: torch.Tensor, level: float, seed: int) -> torch.Tensor:
    """``f0 + level ||f0|| e / ||e||`` per sample, ``e`` Gaussian from a seeded CPU generator."""
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(f0.shape, generator=g, dtype=f0.dtype)
    n = f0.shape[0]
    scale = level * f0.reshape(n, -1).norm(dim=1) / e.reshape(n, -1).norm(dim=1).clamp(min=1e-30)
    return f0 + scale.reshape((-1,) + (1,) * (f0.dim() - 1)) * e


def plan_iterations(per_iteration: float, target: int, seconds: float, minimum: int) -> int:
    """Iterations to run: ``target`` if they fit in ``seconds``, else as many as fit (at least ``minimum``).

    Parameters
    ----------
    per_iteration : float
        Measured seconds per iteration (> 0).
    target : int
        Wanted number of iterations.
    seconds : float
        Time available.
    minimum : int
        Fewest iterations to run.

    Returns
    -------
    int

    Examples
    --------
    >>> plan_iterations(0.01, 1000, 60.0, 5), plan_iterations(1.0, 1000, 30.0, 5), plan_iterations(1.0, 1000, 1.0, 5)
    (1000, 30, 5)
    """
    if per_iteration <= 0:
        return target
    return int(max(minimum, min(target, math.floor(seconds / per_iteration))))


def _fmt(v: Any, spec: str = ".2f", none: str = "-") -> str:
    if v is None:
        return none
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return format(v, spec)


class Run:
    """State of one check: options, sizes, devices, clock, output files and the step records."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.smoke = bool(args.cpu_smoke)
        self.sizes = SMOKE if self.smoke else FULL
        if args.cpu_batch is not None:
            self.sizes = dataclasses.replace(self.sizes, inv_cpu_batch=args.cpu_batch)
        if args.iters is not None:
            self.sizes = dataclasses.replace(self.sizes, inv_iters=args.iters, tv_iters=args.iters)
        self.cuda_available = torch.cuda.is_available()
        if args.accelerator is None:
            use = self.cuda_available and not self.smoke
            self.gpu: torch.device | None = torch.device("cuda") if use else None
        else:  # an explicit device for the GPU phases (``cpu`` exercises their code without a GPU)
            self.gpu = torch.device(args.accelerator)
        #: CUDA in use: GPU memory statistics, the CUDA tests and nvidia-smi
        self.cuda = self.gpu is not None and self.gpu.type == "cuda"
        self.cpu = torch.device("cpu")
        self.out = Path(args.out)
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + float(args.budget)
        self.step_deadline = self.deadline
        self.step_peak = 0.0
        self.records: list[dict[str, Any]] = []
        self.meta: dict[str, Any] = {}
        self.tmp = Path(tempfile.mkdtemp(prefix="liftinv-device-check-"))

    @property
    def label(self) -> str:
        """Name of the accelerator in the log: ``GPU``, or e.g. ``accelerator cpu``."""
        return "GPU" if self.cuda or self.gpu is None else f"accelerator {self.gpu}"

    @property
    def no_cuda_reason(self) -> str:
        if self.cuda_available:
            return "no CUDA device in use (" + ("--cpu-smoke" if self.smoke else "--accelerator") + ")"
        return "no CUDA device available"

    def left(self) -> float:
        """Seconds left of the total budget."""
        return self.deadline - time.perf_counter()

    def step_left(self) -> float:
        """Seconds left of the running step's cap."""
        return min(self.step_deadline, self.deadline) - time.perf_counter()

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def peak_mib(self) -> float | None:
        if not self.cuda:
            return None
        return torch.cuda.max_memory_allocated() / 2**20

    def reset_case_peak(self) -> None:
        """Start the peak-memory count of one case (the step's peak is the maximum over its cases)."""
        if self.cuda:
            self.step_peak = max(self.step_peak, self.peak_mib() or 0.0)
            self.reset_peak()

    def case_peak(self) -> float | None:
        """Peak GPU memory (MiB) since :meth:`reset_case_peak`; ``None`` without CUDA."""
        if not self.cuda:
            return None
        p = self.peak_mib() or 0.0
        self.step_peak = max(self.step_peak, p)
        return p


# ---------------------------------------------------------------------------------------------------------
# step 1: CUDA tests
# ---------------------------------------------------------------------------------------------------------
def test_files(folder: Path = ROOT / "tests") -> list[Path]:
    """The test modules that can hold a selected test: those that mention ``cuda`` or ``device``.

    Only these are collected, so that a module that cannot be imported on the GPU machine (a missing
    optional package) does not stop the CUDA tests; this check's own test module is left out.
    """
    pattern = re.compile(r"cuda|device", re.IGNORECASE)
    return [
        path
        for path in sorted(folder.glob("test_*.py"))
        if path.name != "test_device_check.py" and pattern.search(path.read_text(errors="replace"))
    ]


def pytest_command(junit: Path, collect_only: bool, files: list[Path] | None = None) -> list[str]:
    """The pytest command line of step 1.

    Run it from a scratch folder, so that the installed liftinv and not the source folder ``liftinv/`` of
    the repository root is imported. Collection errors do not stop the other modules' tests (they are
    counted as errors).
    """
    cmd = [sys.executable, "-m", "pytest", *TEST_SELECTION, "-q", "-rfE", "--continue-on-collection-errors"]
    cmd += ["--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"), f"--junitxml={junit}"]
    if collect_only:
        cmd.append("--collect-only")
    return [*cmd, *(str(f) for f in (test_files() if files is None else files))]


def parse_junit(path: Path) -> dict[str, Any]:
    """Counts and failing tests of a pytest JUnit XML report.

    Returns
    -------
    dict
        ``tests``, ``passed``, ``failed``, ``errors``, ``skipped``, ``seconds`` and ``failures`` (a list of
        ``{"test", "message"}``).
    """
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {"tests": 0, "failed": 0, "errors": 0, "skipped": 0}
    seconds = 0.0
    failures = []
    for s in suites:
        counts["tests"] += int(s.get("tests", 0))
        counts["failed"] += int(s.get("failures", 0))
        counts["errors"] += int(s.get("errors", 0))
        counts["skipped"] += int(s.get("skipped", 0))
        seconds += float(s.get("time", 0.0))
        for case in s.iter("testcase"):
            for bad in list(case.findall("failure")) + list(case.findall("error")):
                msg = (bad.get("message") or bad.text or "").strip().splitlines()
                failures.append(
                    {
                        "test": f"{case.get('classname', '')}::{case.get('name', '')}",
                        "message": msg[0][:300] if msg else "",
                    }
                )
    passed = counts["tests"] - counts["failed"] - counts["errors"] - counts["skipped"]
    return {**counts, "passed": passed, "seconds": seconds, "failures": failures}


def step_cuda_tests(run: Run, res: dict[str, Any]) -> None:
    """Run (with CUDA) or collect (without) the CUDA / device-parametrised tests in a pytest subprocess."""
    junit = run.tmp / "junit.xml"
    collect_only = not run.cuda
    files = test_files()
    cmd = pytest_command(junit, collect_only, files)
    res["command"] = " ".join(cmd[1:])
    res["test_files"] = [f.name for f in files]
    scratch = run.tmp / "pytest-cwd"
    scratch.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("DEEPINV_CACHE_DIR", str(run.tmp / "deepinv-cache"))
    timeout = max(run.step_left() - 2.0, 5.0)
    log.info("  $ %s", res["command"])
    out_file = run.tmp / "pytest.out"
    try:
        with open(out_file, "w") as fh:  # a file, so that the output of a stopped run is kept too
            proc = subprocess.run(
                cmd, cwd=scratch, env=env, stdout=fh, stderr=subprocess.STDOUT, text=True, timeout=timeout
            )
    finally:
        output = out_file.read_text(errors="replace") if out_file.is_file() else ""
        log.info("  pytest output:\n%s", output.rstrip())
    res["returncode"] = proc.returncode
    log.info("  pytest exit status %d", proc.returncode)
    if collect_only:
        m = re.search(r"(\d+)(?:/(\d+))? tests? collected", output)
        res["collected"] = int(m.group(1)) if m else None
        if proc.returncode != 0 or not m:
            errors = re.findall(r"ERROR collecting (\S+)", output)
            raise RuntimeError(
                f"pytest could not collect the selection (exit status {proc.returncode})"
                + (f"; collection errors in {', '.join(errors)}" if errors else "")
            )
        raise Skip(f"{run.no_cuda_reason}: {res['collected']} selected tests collected, not run")
    if not junit.is_file():
        raise RuntimeError(f"pytest wrote no report (exit status {proc.returncode})")
    res.update(parse_junit(junit))
    if res["tests"] == 0:
        raise RuntimeError("no test selected")
    if res["failed"] or res["errors"]:
        names = ", ".join(f["test"] for f in res["failures"][:5])
        res["check_failed"] = f"{res['failed']} failed, {res['errors']} errors: {names}"


# ---------------------------------------------------------------------------------------------------------
# step 2: batch inversion
# ---------------------------------------------------------------------------------------------------------
def _invert(run: Run, model, f, alpha: float, method: str, device, iters: int):
    import liftinv

    sync(device)
    t = time.perf_counter()
    out = liftinv.invert(
        model,
        f,
        regulariser="tv",
        alpha=alpha,
        method=method,
        max_iter=iters,
        tol=0.0,
        device=device,
        progress=False,
        seed=0,
        log_every=max(iters // 10, 1),
    )
    sync(device)
    return out, time.perf_counter() - t


def _inversion_problems(run: Run, res: dict[str, Any]) -> list[dict[str, Any]]:
    import liftinv

    S = run.sizes
    n, feats = S.perceptron
    problems = []
    p = liftinv.get_recipe("perceptron", image_size=n, features=feats, n_images=S.inv_batch, seed=0)
    problems.append({"name": "perceptron", "label": f"P2 perceptron {n}x{n} -> {feats}", "problem": p})
    t = time.perf_counter()
    a = liftinv.get_recipe(
        "autoencoder",
        n_images=S.inv_batch,
        epochs=S.ae_epochs,
        seed=0,
        path=str(run.tmp / "autoencoder.pt"),
    )
    info = getattr(a.extras.get("autoencoder"), "train_info", {})
    res["autoencoder"] = {
        "epochs": S.ae_epochs,
        "build_seconds": time.perf_counter() - t,
        "test_psnr": info.get("test_psnr"),
    }
    problems.append(
        {"name": "autoencoder", "label": "conv encoder 16x16 -> 32 (autoencoder recipe)", "problem": a}
    )
    for i, pr in enumerate(problems):
        prob = pr["problem"]
        with torch.no_grad():
            f0 = prob.model(prob.inputs)
        pr["f"] = relative_noise(f0, S.noise, seed=100 + i)
        pr["alpha"] = float(prob.alpha)
    return problems


def step_inversion(run: Run, res: dict[str, Any]) -> None:
    """Lifted vs gradient inversion of a batch of noisy network outputs, GPU then CPU."""
    S = run.sizes
    problems = _inversion_problems(run, res)
    res["settings"] = {
        "batch": S.inv_batch,
        "cpu_batch": min(S.inv_cpu_batch, S.inv_batch),
        "iterations": S.inv_iters,
        "noise": S.noise,
        "regulariser": "tv",
        "tol": 0.0,
    }
    cases: list[dict[str, Any]] = []
    res["cases"] = cases
    for pr in problems:
        for method in ("lifted", "gradient"):
            cases.append(
                {
                    "model": pr["name"],
                    "label": pr["label"],
                    "method": method,
                    "alpha": pr["alpha"],
                    "gpu": None,
                    "cpu": None,
                }
            )
    by_key = {(c["model"], c["method"]): c for c in cases}
    cb = min(S.inv_cpu_batch, S.inv_batch)

    gpu_psnr: dict[tuple[str, str], torch.Tensor] = {}

    def record(out, wall, truth, batch):
        p = psnr(out.u, truth)
        return p, {
            "batch": batch,
            "seconds": float(out.time),
            "wall_seconds": wall,
            "images_per_second": batch / max(float(out.time), 1e-12),
            "iterations": int(out.iterations),
            "solver": out.info.get("solver"),
            "psnr": float(p.mean()),
            "residual": float(out.residual.detach().cpu().mean()),
        }

    if run.gpu is not None:
        for pr in problems:
            model, f, alpha = pr["problem"].model, pr["f"], pr["alpha"]
            for method in ("lifted", "gradient"):
                case = by_key[(pr["name"], method)]
                _invert(run, model, f, alpha, method, run.gpu, 3)  # warm-up
                run.reset_case_peak()
                out, wall = _invert(run, model, f, alpha, method, run.gpu, S.inv_iters)
                gpu_psnr[(pr["name"], method)], case["gpu"] = record(
                    out, wall, pr["problem"].inputs, S.inv_batch
                )
                case["gpu"]["peak_gpu_mib"] = run.case_peak()
                log.info(
                    "  %s %-11s %-8s %9.1f images/s  PSNR %.2f dB (%.2f s)",
                    run.label,
                    pr["name"],
                    method,
                    case["gpu"]["images_per_second"],
                    case["gpu"]["psnr"],
                    out.time,
                )
    else:
        res["gpu_skipped"] = run.no_cuda_reason
    skipped: list[str] = res.setdefault("skipped_parts", [])
    todo = [(pr, method) for pr in problems for method in ("lifted", "gradient")]
    for k, (pr, method) in enumerate(todo):
        case = by_key[(pr["name"], method)]
        model, f, alpha = pr["problem"].model, pr["f"], pr["alpha"]
        # probe (also the warm-up): its iteration time sets how many images fit in this case's share
        probe = min(3, S.inv_iters)
        out, _ = _invert(run, model, f[:cb], alpha, method, run.cpu, probe)
        per_image_iteration = float(out.time) / (probe * cb)
        share = 0.9 * run.step_left() / (len(todo) - k)
        batch = min(cb, int(share / max(per_image_iteration * S.inv_iters, 1e-12)))
        if batch < 1:
            skipped.append(
                f"CPU {pr['name']}/{method}: one image would take "
                f"{per_image_iteration * S.inv_iters:.0f} s, {share:.0f} s left for it"
            )
            continue
        out, wall = _invert(run, model, f[:batch], alpha, method, run.cpu, S.inv_iters)
        p, case["cpu"] = record(out, wall, pr["problem"].inputs[:batch], batch)
        log.info(
            "  CPU %-11s %-8s %9.1f images/s  PSNR %.2f dB (%.2f s, %d images)",
            pr["name"],
            method,
            case["cpu"]["images_per_second"],
            case["cpu"]["psnr"],
            out.time,
            batch,
        )
        if case["gpu"] is not None:
            g = gpu_psnr[(pr["name"], method)][:batch]
            case["gpu"]["psnr_cpu_images"] = float(g.mean())
            case["speedup"] = case["gpu"]["images_per_second"] / case["cpu"]["images_per_second"]
            case["psnr_diff"] = float((g - p).mean())
            case["psnr_max_abs_diff"] = float((g - p).abs().max())
            case["psnr_match"] = abs(case["psnr_diff"]) <= PSNR_TOL
    bad = [
        f"{c['model']}/{c['method']} {c['psnr_diff']:+.3f} dB" for c in cases if c.get("psnr_match") is False
    ]
    if bad:
        res["check_failed"] = f"GPU and CPU PSNR differ by more than {PSNR_TOL} dB: " + ", ".join(bad)


# ---------------------------------------------------------------------------------------------------------
# step 3: TV reconstruction
# ---------------------------------------------------------------------------------------------------------
def _reconstruct(op, y, iters: int, device):
    from liftinv.operators import reconstruct

    sync(device)
    t = time.perf_counter()
    out = reconstruct(y, op, method="tv", noise_level=0.01, max_iter=iters, tol=1e-30, progress=False)
    sync(device)
    return out, time.perf_counter() - t


def _timed_tv(run: Run, op, y, device, target: int, seconds: float) -> dict[str, Any]:
    """Probe a few iterations, then run as many of ``target`` as fit in ``seconds``; seconds per 1000."""
    probe = 2 if device.type == "cpu" else 10
    _reconstruct(op, y, 1, device)  # warm-up (and the first call's one-time costs)
    _, t_probe = _reconstruct(op, y, probe, device)
    iters = plan_iterations(t_probe / probe, target, seconds, min(probe, target))
    out, wall = _reconstruct(op, y, iters, device)
    return {
        "iterations": iters,
        "seconds": wall,
        "seconds_per_1000": wall / iters * 1000,
        "scaled": iters < 1000,
        "objectives": [h["objective"] for h in out.history],
        "x": out.x.detach().cpu(),
    }


def step_reconstruction(run: Run, res: dict[str, Any]) -> None:
    """TV-PDHG on CT and deblurring: seconds per 1000 iterations, GPU then CPU."""
    from liftinv.datasets import load_image
    from liftinv.operators import GaussianNoise, make_operator

    S = run.sizes
    specs = [("tomography", n, {"angles": a}, f"CT {n}x{n}, {a} angles") for n, a in S.ct_cases]
    specs += [("blur", n, {"sigma": 2.0}, f"Gaussian blur {n}x{n}, sigma 2") for n in S.blur_sizes]
    res["settings"] = {"image": "camera", "noise": 0.01, "target_iterations": S.tv_iters, "tol": "none"}
    cases: list[dict[str, Any]] = []
    res["cases"] = cases
    built: dict[int, tuple[Any, torch.Tensor, torch.Tensor]] = {}

    def build(i):
        if i not in built:
            name, n, kw, _ = specs[i]
            t = time.perf_counter()
            op = make_operator(name, n, **kw)
            x = load_image("camera", size=n)
            y = GaussianNoise(0.01, seed=0)(op.A(x))
            cases[i]["build_seconds"] = time.perf_counter() - t
            built[i] = (op, x, y)
        return built[i]

    for name, n, kw, label in specs:
        cases.append({"operator": name, "size": n, **kw, "label": label, "gpu": None, "cpu": None})
    gpu_objectives: dict[int, list[float]] = {}
    skipped: list[str] = res.setdefault("skipped_parts", [])
    if run.gpu is not None:
        for i in range(len(specs)):
            if run.step_left() < 10:
                skipped.append(f"GPU {specs[i][3]}: step time cap")
                continue
            op, x, y = build(i)
            op.to(run.gpu)
            run.reset_case_peak()
            sync(run.gpu)
            t = time.perf_counter()
            op.norm()  # computed once per operator; kept when the operator moves back to the CPU
            sync(run.gpu)
            cases[i]["norm_seconds_gpu"] = time.perf_counter() - t
            share = 0.5 * run.step_left() / (len(specs) - i)
            r = _timed_tv(run, op, y.to(run.gpu), run.gpu, S.tv_iters, share)
            gpu_objectives[i] = r.pop("objectives")
            r["psnr"] = float(psnr(r.pop("x"), x)[0])
            r["peak_gpu_mib"] = run.case_peak()
            cases[i]["gpu"] = r
            op.to(run.cpu)
            log.info(
                "  %s %-28s %7.2f s / 1000 it (%d it run)",
                run.label,
                specs[i][3],
                r["seconds_per_1000"],
                r["iterations"],
            )
    else:
        res["gpu_skipped"] = run.no_cuda_reason
    for i in range(len(specs)):
        remaining = len(specs) - i
        if run.step_left() < 8:
            skipped.append(f"CPU {specs[i][3]}: step time cap")
            continue
        if run.gpu is not None and cases[i]["gpu"] is None:
            # no GPU figure to compare with, and the CPU would first have to compute the operator norm
            # (minutes for CT 512 x 512 / 180 angles)
            skipped.append(f"CPU {specs[i][3]}: not run on the GPU")
            continue
        op, x, y = build(i)
        op.to(run.cpu)
        t = time.perf_counter()
        op.norm()  # cached when the GPU computed it
        cases[i]["norm_seconds_cpu"] = time.perf_counter() - t
        share = 0.7 * run.step_left() / remaining
        r = _timed_tv(run, op, y, run.cpu, S.tv_iters, share)
        cpu_objectives = r.pop("objectives")
        r["psnr"] = float(psnr(r.pop("x"), x)[0])
        cases[i]["cpu"] = r
        log.info(
            "  CPU %-28s %7.2f s / 1000 it (%d it run)", specs[i][3], r["seconds_per_1000"], r["iterations"]
        )
        if cases[i]["gpu"] is not None:
            cases[i]["speedup"] = r["seconds_per_1000"] / cases[i]["gpu"]["seconds_per_1000"]
            k = min(len(cpu_objectives), len(gpu_objectives[i]))
            a, b = gpu_objectives[i][k - 1], cpu_objectives[k - 1]
            rel = abs(a - b) / max(abs(b), 1e-30)
            cases[i]["objective_rel_diff"] = rel
            cases[i]["objective_iteration"] = k
            cases[i]["objective_match"] = rel <= OBJECTIVE_RTOL
        built.pop(i, None)  # free the 512 x 512 CT grids as soon as both devices are done
    bad = [f"{c['label']} {c['objective_rel_diff']:.1e}" for c in cases if c.get("objective_match") is False]
    if bad:
        res["check_failed"] = f"GPU and CPU TV objectives differ by more than {OBJECTIVE_RTOL}: " + ", ".join(
            bad
        )


# ---------------------------------------------------------------------------------------------------------
# step 4: training epochs
# ---------------------------------------------------------------------------------------------------------
def _mlp_epoch(run: Run, X, Y, method: str, device) -> dict[str, Any]:
    import liftinv
    from liftinv.models import mlp

    torch.manual_seed(0)
    net = mlp((64, 128, 128, 10), activation="relu")
    opts = MLP_METHODS[method]
    hist = liftinv.fit(net, (X, Y), method=method, epochs=1, seed=0, device=device, progress=False, **opts)
    rec = hist.last
    return {
        "epoch_seconds": float(rec["time"]),
        "train_accuracy": rec.get("train_accuracy"),
        "samples": len(X),
    }


def _unrolled_epoch(run: Run, data, method: str, device) -> dict[str, Any]:
    from liftinv.unrolled import train

    _, hist, _ = train(
        data.task,
        "proxgrad",
        method,
        epochs=1,
        seed=0,
        device=device,
        data=data,
        progress=False,
        model_kwargs=dict(run.sizes.unrolled_model),
    )
    rec = hist.last
    return {
        "epoch_seconds": float(rec["time"]),
        "train_psnr": rec.get("train_psnr"),
        "samples": len(data.train[1]),
    }


def _subset(data, n: int, n_test: int | None = None):
    y, x = data.train
    out = dataclasses.replace(data, train=(y[:n], x[:n]))
    if n_test is not None:
        yt, xt = data.test
        out = dataclasses.replace(out, test=(yt[:n_test], xt[:n_test]), test_names=data.test_names[:n_test])
    return out


def step_training(run: Run, res: dict[str, Any]) -> None:
    """One epoch of lifted Bregman (ISGM, BCD) and back-propagation: MLP on digits, unrolled on patches."""
    from liftinv.datasets import load_digits

    from liftinv.unrolled import make_task_data

    S = run.sizes
    X, Y = load_digits()
    if S.mlp_samples is not None:
        X, Y = X[: S.mlp_samples], Y[: S.mlp_samples]
    t = time.perf_counter()
    side_train, side_test = S.unrolled_sides
    data = make_task_data(
        "deblur",
        image_size=S.unrolled_size,
        n_train=S.unrolled_train,
        seed=0,
        train_side=side_train,
        test_side=side_test,
        test_crops=1,
    )
    res["unrolled_data_seconds"] = time.perf_counter() - t
    cpu_patches = min(S.unrolled_cpu_train, S.unrolled_train)
    res["settings"] = {
        "mlp": f"MLP 64-128-128-10 ReLU, MSE, {len(X)} digits",
        "mlp_methods": MLP_METHODS,
        "unrolled": f"proxgrad deblur {S.unrolled_size}x{S.unrolled_size}, {S.unrolled_train} patches",
        "unrolled_cpu_patches": cpu_patches,
        "unrolled_model": S.unrolled_model,
    }
    rows: list[dict[str, Any]] = []
    res["rows"] = rows
    for m in MLP_METHODS:
        rows.append({"model": "mlp-digits", "method": m, "gpu": None, "cpu": None})
    for m in UNROLLED_METHODS:
        rows.append({"model": "unrolled-deblur", "method": m, "gpu": None, "cpu": None})
    skipped: list[str] = res.setdefault("skipped_parts", [])
    try:
        warm = _subset(data, min(32, S.unrolled_train), 2)
        if run.gpu is not None:
            for row in rows:
                if run.step_left() < 5:
                    skipped.append(f"GPU {row['model']}/{row['method']}: step time cap")
                    continue
                if row["model"] == "mlp-digits":
                    _mlp_epoch(run, X[:128], Y[:128], row["method"], run.gpu)  # warm-up
                    run.reset_case_peak()
                    row["gpu"] = _mlp_epoch(run, X, Y, row["method"], run.gpu)
                else:
                    _unrolled_epoch(run, warm, row["method"], run.gpu)  # warm-up
                    run.reset_case_peak()
                    row["gpu"] = _unrolled_epoch(run, data, row["method"], run.gpu)
                row["gpu"]["peak_gpu_mib"] = run.case_peak()
                row["gpu"]["epoch_seconds_full"] = row["gpu"]["epoch_seconds"]
                log.info(
                    "  %s %-16s %-14s epoch %.3f s",
                    run.label,
                    row["model"],
                    row["method"],
                    row["gpu"]["epoch_seconds"],
                )
        else:
            res["gpu_skipped"] = run.no_cuda_reason
        cpu_data = _subset(data, cpu_patches)
        for row in rows:
            if run.step_left() < 5:
                skipped.append(f"CPU {row['model']}/{row['method']}: step time cap")
                continue
            if row["model"] == "mlp-digits":
                row["cpu"] = _mlp_epoch(run, X, Y, row["method"], run.cpu)
                row["cpu"]["epoch_seconds_full"] = row["cpu"]["epoch_seconds"]
            else:
                row["cpu"] = _unrolled_epoch(run, cpu_data, row["method"], run.cpu)
                scale = S.unrolled_train / cpu_patches
                row["cpu"]["epoch_seconds_full"] = row["cpu"]["epoch_seconds"] * scale
            log.info(
                "  CPU %-16s %-14s epoch %.3f s (full epoch %.3f s)",
                row["model"],
                row["method"],
                row["cpu"]["epoch_seconds"],
                row["cpu"]["epoch_seconds_full"],
            )
    finally:  # also when the step is stopped at its time cap: the ratios of what ran
        training_ratios(rows)


def training_ratios(rows: list[dict[str, Any]]) -> None:
    """Add ``ratio_to_backprop`` (per device) and the GPU/CPU ``speedup`` to the rows of step 4 in place.

    Parameters
    ----------
    rows : list of dict
        ``{"model", "method", "gpu", "cpu"}``; ``gpu`` / ``cpu`` are ``None`` or hold
        ``epoch_seconds_full`` (the full epoch's time, scaled where a subset ran).
    """
    backprop = {r["model"]: r for r in rows if r["method"].startswith("backprop")}
    for row in rows:
        base = backprop.get(row["model"])
        for dev in ("gpu", "cpu"):
            if row[dev] is not None and base is not None and base[dev] is not None:
                row[dev]["ratio_to_backprop"] = (
                    row[dev]["epoch_seconds_full"] / base[dev]["epoch_seconds_full"]
                )
        if row["gpu"] is not None and row["cpu"] is not None:
            row["speedup"] = row["cpu"]["epoch_seconds_full"] / row["gpu"]["epoch_seconds_full"]


# ---------------------------------------------------------------------------------------------------------
# step 5: GPU information
# ---------------------------------------------------------------------------------------------------------
def step_gpu_info(run: Run, res: dict[str, Any]) -> None:
    """nvidia-smi, the device's name and properties, and the peak GPU memory of every step."""
    if not run.cuda:
        raise Skip(run.no_cuda_reason)
    props = torch.cuda.get_device_properties(0)
    res["device_name"] = torch.cuda.get_device_name(0)
    res["total_memory_mib"] = props.total_memory / 2**20
    res["multiprocessors"] = props.multi_processor_count
    res["capability"] = f"{props.major}.{props.minor}"
    smi = shutil.which("nvidia-smi")
    if smi:
        proc = subprocess.run([smi], capture_output=True, text=True, timeout=30)
        res["nvidia_smi"] = proc.stdout.strip()
        log.info("  nvidia-smi:\n%s", res["nvidia_smi"])
    else:
        res["nvidia_smi"] = None
    res["peak_gpu_mib"] = {r["name"]: r["peak_gpu_mib"] for r in run.records}


STEP_FUNCTIONS: dict[str, Callable[[Run, dict[str, Any]], None]] = {
    "cuda_tests": step_cuda_tests,
    "inversion": step_inversion,
    "reconstruction": step_reconstruction,
    "training": step_training,
    "gpu_info": step_gpu_info,
}


# ---------------------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------------------
def _alarm(signum, frame):
    raise StepTimeout()


def run_step(run: Run, name: str, cap: float) -> dict[str, Any]:
    """Run one step within ``cap`` seconds; return its record (status passed/failed/skipped/stopped)."""
    rec: dict[str, Any] = {
        "name": name,
        "title": STEPS[name],
        "status": "passed",
        "reason": None,
        "seconds": 0.0,
        "cap_seconds": cap,
        "peak_gpu_mib": None,
        "results": {},
        "error": None,
    }
    log.info("step %s: %s (cap %.0f s, %.0f s of the budget left)", name, STEPS[name], cap, run.left())
    run.step_deadline = time.perf_counter() + cap
    run.step_peak = 0.0
    run.reset_peak()
    use_alarm = hasattr(signal, "setitimer")
    if use_alarm:
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, max(cap, 0.1))
    t0 = time.perf_counter()
    try:
        try:
            STEP_FUNCTIONS[name](run, rec["results"])
        finally:
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)
        failed = rec["results"].pop("check_failed", None)
        if failed:
            rec["status"], rec["reason"] = "failed", failed
    except Skip as exc:
        rec["status"], rec["reason"] = "skipped", str(exc)
    except StepTimeout:
        rec["status"], rec["reason"] = "stopped", f"time cap of {cap:.0f} s reached; results are partial"
        log.warning("  step %s stopped at its time cap", name)
    except subprocess.TimeoutExpired:
        rec["status"], rec["reason"] = "stopped", f"time cap of {cap:.0f} s reached (subprocess killed)"
    except Exception as exc:  # noqa: BLE001 - every failure is logged and the next step runs
        rec["status"], rec["reason"] = "failed", f"{type(exc).__name__}: {exc}"
        rec["error"] = traceback.format_exc()
        log.error("  step %s failed:\n%s", name, rec["error"])
    rec["seconds"] = time.perf_counter() - t0
    if run.cuda:
        rec["peak_gpu_mib"] = max(run.step_peak, run.peak_mib() or 0.0)
    log.info(
        "step %s: %s in %.1f s%s",
        name,
        rec["status"],
        rec["seconds"],
        f" ({rec['reason']})" if rec["reason"] else "",
    )
    return rec


def _origins() -> dict[str, str | None]:
    """Where liftinv, deepinv and odl are imported from (the temporary site on the GPU machine)."""
    import importlib.util

    out = {}
    for name in ("liftinv", "deepinv", "odl"):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        out[name] = None if spec is None else spec.origin
    return out


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    out = {}
    for name in ("liftinv", "deepinv", "odl", "numpy", "scipy", "scikit-image", "scikit-learn"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def collect_meta(run: Run) -> dict[str, Any]:
    """Machine, versions and settings of the run."""
    meta: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "mode": "cpu-smoke" if run.smoke else "full",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "budget_seconds": float(run.args.budget),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cuda_available": run.cuda_available,
        "cuda_used": run.cuda,
        "accelerator": None if run.gpu is None else str(run.gpu),
        "versions": _versions(),
        "imported_from": _origins(),
        "sizes": dataclasses.asdict(run.sizes),
    }
    if run.cuda:
        meta["cuda"] = torch.version.cuda
        meta["device_name"] = torch.cuda.get_device_name(0)
        meta["tf32"] = {
            "matmul": torch.backends.cuda.matmul.allow_tf32,
            "cudnn": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        }
    else:
        meta["device_name"] = None
    return meta


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def markdown(meta: dict[str, Any], records: list[dict[str, Any]], total: float | None) -> str:
    """The markdown report of a run (summary table, then one table per step)."""
    dev = meta.get("device_name") or "no GPU"
    L = ["# liftinv GPU check", ""]
    L.append(
        f"`{meta['command']}` ({meta['mode']}) on **{dev}**, {meta['cpu_count']} CPU cores "
        f"({meta['torch_threads']} torch threads), torch {meta['torch']}"
        + (f" (CUDA {meta['cuda']})" if meta.get("cuda") else "")
        + f", Python {meta['python']}, {meta['date']}; budget {meta['budget_seconds']:.0f} s"
        + (f", total {total:.0f} s." if total is not None else " (running).")
    )
    L.append("")
    L += _table(
        ["step", "status", "seconds", "peak GPU MiB", "note"],
        [
            [r["name"], r["status"], f"{r['seconds']:.1f}", _fmt(r["peak_gpu_mib"], ".0f"), r["reason"] or ""]
            for r in records
        ],
    )
    L.append("")
    for r in records:
        res = r["results"]
        L += [f"## {r['title']}", ""]
        if r["name"] == "cuda_tests":
            if "tests" in res:
                L += _table(
                    ["tests", "passed", "failed", "errors", "skipped", "seconds"],
                    [
                        [str(res[k]) for k in ("tests", "passed", "failed", "errors", "skipped")]
                        + [f"{res['seconds']:.1f}"]
                    ],
                )
                for f in res.get("failures", []):
                    L.append(f"- FAILED `{f['test']}`: {f['message']}")
            if res.get("command"):
                L += ["", f"`{res['command']}`"]
        elif r["name"] == "inversion" and res.get("cases"):
            s = res["settings"]
            L.append(
                f"TV, {s['iterations']} iterations (no early stop), {100 * s['noise']:g}% noise; GPU batch "
                f"{s['batch']}, CPU batch {s['cpu_batch']} (the first images of the same batch; PSNR "
                f"compared on those). lifted = PDHG input step, gradient = Adam."
            )
            L.append("")
            rows = []
            for c in res["cases"]:
                g, cp = c["gpu"] or {}, c["cpu"] or {}
                rows.append(
                    [
                        c["label"],
                        c["method"],
                        _fmt(g.get("images_per_second"), ".1f"),
                        _fmt(cp.get("images_per_second"), ".1f"),
                        _fmt(c.get("speedup"), ".1f"),
                        _fmt(g.get("psnr")),
                        _fmt(cp.get("psnr")),
                        _fmt(c.get("psnr_diff"), "+.3f"),
                        _fmt(g.get("peak_gpu_mib"), ".0f"),
                    ]
                )
            L += _table(
                [
                    "model",
                    "method",
                    "GPU images/s",
                    "CPU images/s",
                    "GPU/CPU",
                    "GPU PSNR",
                    "CPU PSNR",
                    "PSNR diff (same images)",
                    "peak GPU MiB",
                ],
                rows,
            )
        elif r["name"] == "reconstruction" and res.get("cases"):
            L.append(
                "TV-PDHG on `camera`, noise 0.01, default alpha; seconds per 1000 iterations (iterations "
                "actually run in brackets, scaled when fewer); operator norm not timed."
            )
            L.append("")
            rows = []
            for c in res["cases"]:
                g, cp = c["gpu"] or {}, c["cpu"] or {}
                rows.append(
                    [
                        c["label"],
                        f"{_fmt(g.get('seconds_per_1000'))} ({g.get('iterations', '-')})",
                        f"{_fmt(cp.get('seconds_per_1000'))} ({cp.get('iterations', '-')})",
                        _fmt(c.get("speedup"), ".1f"),
                        _fmt(g.get("psnr") if g else cp.get("psnr")),
                        _fmt(c.get("objective_rel_diff"), ".1e"),
                        _fmt(g.get("peak_gpu_mib"), ".0f"),
                    ]
                )
            L += _table(
                [
                    "problem",
                    "GPU s/1000 it",
                    "CPU s/1000 it",
                    "GPU/CPU",
                    "PSNR",
                    "objective rel. diff",
                    "peak GPU MiB",
                ],
                rows,
            )
        elif r["name"] == "training" and res.get("rows"):
            s = res["settings"]
            L.append(
                f"{s['mlp']}; {s['unrolled']} (CPU: first {s['unrolled_cpu_patches']} patches, time scaled "
                "to the full epoch). Epoch time without evaluation; GPU after a warm-up epoch."
            )
            L.append("")
            rows = []
            for row in res["rows"]:
                g, cp = row["gpu"] or {}, row["cpu"] or {}
                rows.append(
                    [
                        row["model"],
                        row["method"],
                        _fmt(g.get("epoch_seconds"), ".3f"),
                        _fmt(cp.get("epoch_seconds_full"), ".3f"),
                        _fmt(row.get("speedup"), ".1f"),
                        _fmt(g.get("ratio_to_backprop")),
                        _fmt(cp.get("ratio_to_backprop")),
                        _fmt(g.get("peak_gpu_mib"), ".0f"),
                    ]
                )
            L += _table(
                [
                    "model",
                    "method",
                    "GPU epoch s",
                    "CPU epoch s",
                    "GPU/CPU",
                    "lifted/backprop GPU",
                    "lifted/backprop CPU",
                    "peak GPU MiB",
                ],
                rows,
            )
        elif r["name"] == "gpu_info" and res.get("device_name"):
            L.append(
                f"{res['device_name']}, compute capability {res['capability']}, {res['multiprocessors']} "
                f"multiprocessors, {res['total_memory_mib']:.0f} MiB."
            )
            if res.get("nvidia_smi"):
                L += ["", "```text", res["nvidia_smi"], "```"]
        notes = [f"- skipped: {part}" for part in res.get("skipped_parts", [])]
        if res.get("gpu_skipped"):
            notes.append(f"- GPU part skipped: {res['gpu_skipped']}")
        if notes:
            L += ["", *notes]
        if r["status"] != "passed" and r["reason"]:
            L += ["", f"**{r['status']}**: {r['reason']}"]
        L.append("")
    return "\n".join(L).rstrip() + "\n"


def _write(run: Run, total: float | None) -> None:
    payload = {"meta": run.meta, "steps": run.records, "total_seconds": total}
    (run.out / "device_check.json").write_text(json.dumps(payload, indent=1, default=str))
    (run.out / "device_check.md").write_text(markdown(run.meta, run.records, total))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="CPU only, tiny sizes (well under 60 s)")
    ap.add_argument("--budget", type=float, default=480.0, help="total time budget in seconds (default 480)")
    ap.add_argument(
        "--out",
        default=os.environ.get("OUT") or "device_out",
        help="output folder (default $OUT, else ./device_out)",
    )
    ap.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's default, all cores)"
    )
    ap.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    ap.add_argument("--cpu-batch", type=int, default=None, help="CPU batch of the inversion (default 64)")
    ap.add_argument("--iters", type=int, default=None, help="inversion and TV iterations (default 1000)")
    ap.add_argument(
        "--accelerator",
        default=None,
        help="device of the GPU phases (default: cuda when available, none with --cpu-smoke); 'cpu' runs "
        "their code on the CPU, to test it on a machine without a GPU",
    )
    args = ap.parse_args(argv)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        ap.error(f"unknown step(s) {unknown}; choose from {', '.join(STEPS)}")
    args.steps = steps
    if args.accelerator is not None:
        try:
            dev = torch.device(args.accelerator)
        except RuntimeError as exc:
            ap.error(f"--accelerator: {exc}")
        if dev.type == "cuda" and not torch.cuda.is_available():
            ap.error("--accelerator cuda: no CUDA device is available")
    if args.budget <= 0:
        ap.error("--budget must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threads = args.threads if args.threads is not None else torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    os.environ.setdefault("MPLBACKEND", "Agg")
    run = Run(args)
    run.out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run.out / "device_check.log", mode="w")
    stream = logging.StreamHandler(sys.stdout)
    for h in (handler, stream):
        h.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(h)
    log.setLevel(logging.INFO)
    os.environ.setdefault("DEEPINV_CACHE_DIR", str(run.tmp / "deepinv-cache"))
    try:
        run.meta = collect_meta(run)
        log.info(
            "liftinv device check (%s): %s, torch %s, %d torch threads, budget %.0f s, output %s",
            run.meta["mode"],
            run.meta["device_name"] or "no GPU in use",
            torch.__version__,
            torch.get_num_threads(),
            args.budget,
            run.out,
        )
        names = [n for n in STEPS if n in args.steps]
        for i, name in enumerate(names):
            left = run.left()
            if left < 2:
                rec = {
                    "name": name,
                    "title": STEPS[name],
                    "status": "skipped",
                    "reason": "time budget spent",
                    "seconds": 0.0,
                    "peak_gpu_mib": None,
                    "results": {},
                    "error": None,
                }
                log.info("step %s: skipped (time budget spent)", name)
            else:
                rest = sum(WEIGHTS[n] for n in names[i:])
                cap = left * WEIGHTS[name] / rest if i < len(names) - 1 else left
                rec = run_step(run, name, cap)
            run.records.append(rec)
            _write(run, None)
        total = time.perf_counter() - run.t0
        _write(run, total)
        failed = [r["name"] for r in run.records if r["status"] == "failed"]
        log.info(
            "done in %.0f s: %s; wrote %s and %s",
            total,
            ", ".join(f"{r['name']} {r['status']}" for r in run.records),
            run.out / "device_check.json",
            run.out / "device_check.md",
        )
        return 1 if failed else 0
    finally:
        shutil.rmtree(run.tmp, ignore_errors=True)
        for h in (handler, stream):
            log.removeHandler(h)
            h.close()


if __name__ == "__main__":
    sys.exit(main())
