"""CT backends: liftinv's torch tomography against the ASTRA backend (parallel and fan beam).

At ``--size`` x ``--size`` with ``--angles`` angles, batch 1, float32 on the CPU with one thread (torch and
OpenMP), for each backend/geometry (torch parallel, astra parallel, astra fan):

- time per ``A`` and per ``A^T``: warm-up, then ``--repeats`` samples per backend, the backends alternated
  within each repeat (load drift hits all alike), each sample the mean of a block of calls lasting at least
  ``--block-ms``; the median is reported, and its ratio to the torch backend's median of the same run;
- time per 1000 TV-PDHG iterations: ``liftinv.operators.reconstruct(..., "tv")`` runs ``--tv-timed``
  iterations (no early stop; the operator norm is memoised by a warm-up run first), ``--tv-repeats`` times
  alternated, median scaled to 1000 iterations;
- quality: TV (same ``--alpha``, ``--tv-iterations`` at most, default stopping rule) on the same phantom
  (Shepp-Logan) with the same noise level and seed; each backend simulates its own sinogram (the
  discretisations differ: detector count, angles, projector), so the PSNRs compare the pipelines, not one
  sinogram.

Usage::

    python benchmarks/astra_backend.py                     # JSON and markdown into benchmarks/results/
    python benchmarks/astra_backend.py --repeats 3 --tv-repeats 1   # quicker
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/astra load OpenMP

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from liftinv.files import save_text_file  # noqa: E402

warnings.filterwarnings("ignore")

RESULTS = Path(__file__).resolve().parent / "results"
#: (backend, geometry) in table order; the first is the reference of the ratios
CONFIGS = (("torch", "parallel"), ("astra", "parallel"), ("astra", "fan"))


def _block_seconds(fn: Callable[[], object], block_s: float) -> float:
    """Mean seconds per call of ``fn`` over a block of calls lasting at least ``block_s``."""
    count, start = 0, time.perf_counter()
    while True:
        fn()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= block_s:
            return elapsed / count


def time_alternated(fns: dict[str, Callable[[], object]], repeats: int, block_s: float) -> dict[str, float]:
    """Median seconds per call of each function; the functions alternate within every repeat."""
    for fn in fns.values():  # warm-up
        fn()
        fn()
    samples: dict[str, list[float]] = {key: [] for key in fns}
    keys = list(fns)
    for repeat in range(repeats):
        order = keys if repeat % 2 == 0 else keys[::-1]  # ABC CBA ...
        for key in order:
            samples[key].append(_block_seconds(fns[key], block_s))
    return {key: statistics.median(values) for key, values in samples.items()}


def run(args: argparse.Namespace) -> dict:
    from liftinv.datasets import load_image
    from liftinv.operators import GaussianNoise, make_operator, reconstruct

    from liftinv.metrics import psnr

    load_at_start = os.getloadavg()[0]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    truth = load_image("shepp_logan", args.size)
    ops, sinograms = {}, {}
    for backend, geometry in CONFIGS:
        key = f"{backend}/{geometry}"
        op = make_operator("tomography", args.size, angles=args.angles, backend=backend, geometry=geometry)
        ops[key] = op
        sinograms[key] = op.measure(truth, GaussianNoise(args.noise), seed=args.seed)
    x = torch.rand(1, 1, args.size, args.size)
    a_times = time_alternated(
        {k: (lambda op=op: op.A(x)) for k, op in ops.items()}, args.repeats, args.block_ms / 1e3
    )
    y_random = {k: torch.rand(1, *op.measurement_size) for k, op in ops.items()}
    at_times = time_alternated(
        {k: (lambda op=op, y=y_random[k]: op.A_adjoint(y)) for k, op in ops.items()},
        args.repeats,
        args.block_ms / 1e3,
    )

    def tv(key: str, iterations: int, tol: float | None = 1e-30):
        return reconstruct(
            sinograms[key], ops[key], "tv", alpha=args.alpha, max_iter=iterations, tol=tol, progress=False
        )

    for key in ops:  # warm-up: memoises the operator norm (power method) used for the step sizes
        tv(key, 2)
    tv_samples: dict[str, list[float]] = {key: [] for key in ops}
    for repeat in range(args.tv_repeats):
        for key in list(ops) if repeat % 2 == 0 else list(ops)[::-1]:
            start = time.perf_counter()
            result = tv(key, args.tv_timed)
            tv_samples[key].append(time.perf_counter() - start)
            assert result.iterations == args.tv_timed, (key, result.iterations)
    rows = []
    reference = "torch/parallel"
    for key, op in ops.items():
        backend, geometry = key.split("/")
        result = tv(key, args.tv_iterations, tol=None)
        quality = float(psnr(result.x.clamp(0, 1), truth))
        tv_1000 = statistics.median(tv_samples[key]) * 1000 / args.tv_timed
        rows.append(
            {
                "backend": backend,
                "geometry": geometry,
                "measurement_size": list(op.measurement_size),
                "A_ms": a_times[key] * 1e3,
                "A_adjoint_ms": at_times[key] * 1e3,
                "A_ratio_to_torch": a_times[key] / a_times[reference],
                "A_adjoint_ratio_to_torch": at_times[key] / at_times[reference],
                "tv_seconds_per_1000_iterations": tv_1000,
                "tv_ratio_to_torch": tv_1000
                / (statistics.median(tv_samples[reference]) * 1000 / args.tv_timed),
                "tv_psnr_db": quality,
                "tv_iterations_run": result.iterations,
            }
        )
    return {
        "settings": {**vars(args), "image": "shepp_logan", "dtype": "float32", "batch": 1, "threads": 1},
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1min_at_start": load_at_start,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "processor": platform.machine(),
        },
        "rows": rows,
    }


def markdown(record: dict) -> str:
    s, m = record["settings"], record["machine"]
    lines = [
        f"CT backends at {s['size']}x{s['size']}, {s['angles']} angles, float32, batch 1, one thread (CPU). "
        f"Times: median of {s['repeats']} alternated samples (A, A^T) and of {s['tv_repeats']} alternated runs "
        f"of {s['tv_timed']} TV-PDHG iterations scaled to 1000; ratio = backend / torch in the same run. PSNR: "
        f"TV with alpha {s['alpha']} (at most {s['tv_iterations']} iterations, default stopping rule) on Shepp-Logan "
        f"with noise {s['noise']} (seed {s['seed']}), each backend on its own simulated sinogram. Machine: "
        f"{m['cpus']} CPUs, load average {m['load_average_1min_at_start']:.1f} at the start (other jobs running); "
        f"run time {record.get('seconds', 0):.0f} s.",
        "",
        "| backend | geometry | sinogram (det x angles) | A (ms) | A^T (ms) | TV s / 1000 it | TV PSNR (dB) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in record["rows"]:
        det, angles = r["measurement_size"][1:]
        ratio = r["backend"] != "torch" or r["geometry"] != "parallel"

        def cell(value: float, rel: float, fmt: str, ratio: bool = ratio) -> str:
            return f"{value:{fmt}} ({rel:.2f}x)" if ratio else f"{value:{fmt}}"

        lines.append(
            f"| {r['backend']} | {r['geometry']} | {det} x {angles} | {cell(r['A_ms'], r['A_ratio_to_torch'], '.2f')} "
            f"| {cell(r['A_adjoint_ms'], r['A_adjoint_ratio_to_torch'], '.2f')} "
            f"| {cell(r['tv_seconds_per_1000_iterations'], r['tv_ratio_to_torch'], '.1f')} | {r['tv_psnr_db']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--angles", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=7, help="alternated timing samples of A and A^T")
    parser.add_argument("--block-ms", type=float, default=200.0, help="least duration of one timing sample")
    parser.add_argument(
        "--tv-timed", type=int, default=100, help="TV iterations per timed run (scaled to 1000)"
    )
    parser.add_argument("--tv-repeats", type=int, default=3, help="alternated timed TV runs per backend")
    parser.add_argument("--tv-iterations", type=int, default=300, help="most TV iterations for the PSNR")
    parser.add_argument("--alpha", type=float, default=0.002)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=str(RESULTS / "astra_backend.json"))
    parser.add_argument("--markdown", default=str(RESULTS / "astra_backend.md"))
    args = parser.parse_args()
    start = time.perf_counter()
    record = run(args)
    record["seconds"] = time.perf_counter() - start
    save_text_file(json.dumps(record, indent=2) + "\n", args.json)  # atomic: an old result is never lost
    table = markdown(record)
    save_text_file(table, args.markdown)
    print(table)
    print(f"({record['seconds']:.0f} s) wrote {args.json} and {args.markdown}")


if __name__ == "__main__":
    main()
