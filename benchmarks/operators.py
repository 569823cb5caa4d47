"""Wrapper overhead of liftinv's operators against deepinv (and ODL) called directly.

For each operator at ``--size`` x ``--size``, batch ``--batch``, float32 on the CPU with one torch thread,
``A`` and ``A^T`` are timed through liftinv and through the equivalent deepinv physics (and, for the ODL
ray transform, through ODL itself in a Python loop over the batch). Both paths get the same input; they
are warmed up, then timed alternately in the same process (ABBA order, each sample a block of calls
lasting at least ``--block-ms``), and the median time per call is reported. The ratio is
liftinv / reference; done-when: ratio <= 1.05. The outputs of both paths are also compared (liftinv's
tomography is deepinv's times the pixel size 2/n, which the check divides out).

Usage::

    python benchmarks/operators.py                       # print the table
    python benchmarks/operators.py --json out.json --csv out.csv --markdown benchmarks/results/operators.md
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

warnings.filterwarnings("ignore")  # deepinv deprecation chatter


@dataclass
class Row:
    operator: str
    direction: str
    reference: str
    liftinv_ms: float
    reference_ms: float
    ratio: float
    max_relative_difference: float


def _block_time(fn: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def time_pair(
    lift: Callable[[], object], ref: Callable[[], object], repeats: int, block_ms: float
) -> tuple[float, float, float]:
    """Median seconds per call of ``lift`` and ``ref``, timed alternately (ABBA) in blocks, and the median
    of the per-repeat ratios (each ratio compares two blocks timed back to back, so load drift cancels)."""
    for _ in range(3):  # warm-up (lazy initialisation, allocator, caches)
        lift()
        ref()
    single = max(_block_time(ref, 1), _block_time(lift, 1), 1e-7)
    number = max(1, int(block_ms / 1e3 / single))
    lift_times, ref_times = [], []
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeats):
            order = ((lift, lift_times), (ref, ref_times))
            for fn, sink in order if r % 2 == 0 else order[::-1]:
                sink.append(_block_time(fn, number))
    finally:
        if gc_was_enabled:
            gc.enable()
    ratios = [a / b for a, b in zip(lift_times, ref_times)]
    return statistics.median(lift_times), statistics.median(ref_times), statistics.median(ratios)


def _relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def build_cases(size: int, batch: int, with_odl: bool):
    """(name, liftinv operator, reference A, reference A^T, output scale of liftinv vs reference, reference name)."""
    import deepinv as dinv
    from liftinv.operators import Blur, Denoising, Inpainting, Tomography, from_odl, odl_ray_transform

    cases = []
    blur = Blur(size, kernel="gaussian", sigma=2.0, boundary="circular")
    ref = dinv.physics.BlurFFT(img_size=(1, size, size), filter=blur.kernel.clone())
    cases.append(("blur (gaussian 2, circular/FFT)", blur, ref.A, ref.A_adjoint, 1.0, "deepinv BlurFFT"))
    blur_r = Blur(size, kernel="gaussian", sigma=2.0, boundary="reflect")
    ref = dinv.physics.Blur(filter=blur_r.kernel.clone(), padding="reflect")
    cases.append(("blur (gaussian 2, reflect)", blur_r, ref.A, ref.A_adjoint, 1.0, "deepinv Blur"))
    tomo = Tomography(size, angles=30)
    ref = dinv.physics.Tomography(angles=30, img_width=size, normalize=False, adjoint_via_backprop=True)
    cases.append(
        ("tomography (30 angles)", tomo, ref.A, ref.A_adjoint, tomo.pixel_size, "deepinv Tomography")
    )
    inpaint = Inpainting(size, keep_rate=0.5, seed=0)
    ref = dinv.physics.Inpainting(img_size=(1, size, size), mask=inpaint.mask[0].clone())
    cases.append(("inpainting (keep 0.5)", inpaint, ref.A, ref.A_adjoint, 1.0, "deepinv Inpainting"))
    denoise = Denoising(size)
    ref = dinv.physics.Denoising()
    cases.append(("denoising (identity)", denoise, ref.A, ref.A_adjoint, 1.0, "deepinv Denoising"))
    if with_odl:
        ray = odl_ray_transform(size, 30, impl="skimage")
        wrapped = from_odl(ray)
        scale = wrapped.adjoint_scale

        def odl_forward(x: torch.Tensor):
            arrays = x.detach().numpy().astype("float64")
            return torch.stack(
                [torch.from_numpy(ray(ray.domain.element(a[0])).asarray())[None] for a in arrays]
            ).to(x.dtype)

        def odl_adjoint(y: torch.Tensor):
            arrays = y.detach().numpy().astype("float64")
            adj = ray.adjoint
            return torch.stack(
                [torch.from_numpy(adj(adj.domain.element(a[0])).asarray() * scale)[None] for a in arrays]
            ).to(y.dtype)

        cases.append(
            ("tomography via from_odl (ODL skimage)", wrapped, odl_forward, odl_adjoint, 1.0, "ODL loop")
        )
    return cases


def run(size: int, batch: int, repeats: int, block_ms: float, with_odl: bool) -> list[Row]:
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    rows = []
    for name, op, ref_a, ref_at, scale, ref_name in build_cases(size, batch, with_odl):
        x = torch.rand((batch, *op.image_size), generator=generator)
        y = torch.rand((batch, *op.measurement_size), generator=generator)
        reps = repeats
        with torch.no_grad():
            for direction, lift_fn, ref_fn, arg in (("A", op.A, ref_a, x), ("A^T", op.A_adjoint, ref_at, y)):
                diff = _relative_difference(lift_fn(arg) / scale, ref_fn(arg))
                t_lift, t_ref, ratio = time_pair(
                    lambda f=lift_fn, a=arg: f(a), lambda f=ref_fn, a=arg: f(a), reps, block_ms
                )
                rows.append(Row(name, direction, ref_name, t_lift * 1e3, t_ref * 1e3, ratio, diff))
                print(f"  {name:40s} {direction:4s} done", file=sys.stderr, flush=True)
    return rows


def format_table(rows: list[Row], size: int, batch: int) -> str:
    lines = [
        f"Operator timings, {size}x{size}, batch {batch}, float32, CPU, torch.set_num_threads(1); times are "
        "medians of alternating (ABBA) timed blocks; ratio = median over repeats of liftinv / reference for "
        "blocks timed back to back (done-when: <= 1.05).",
        "",
        "| operator | op | reference | liftinv ms | reference ms | ratio | max rel. diff |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.operator} | {r.direction} | {r.reference} | {r.liftinv_ms:.4f} | {r.reference_ms:.4f} | "
            f"{r.ratio:.3f} | {r.max_relative_difference:.1e} |"
        )
    worst = max(rows, key=lambda r: r.ratio)
    lines += ["", f"max ratio: {worst.ratio:.3f} ({worst.operator}, {worst.direction})"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=21, help="timed blocks per path (median)")
    parser.add_argument("--block-ms", type=float, default=50.0, help="minimum duration of one timed block")
    parser.add_argument("--no-odl", action="store_true", help="skip the ODL ray-transform row")
    parser.add_argument("--json", metavar="PATH", help="write the rows as JSON")
    parser.add_argument("--csv", metavar="PATH", help="write the rows as CSV")
    parser.add_argument("--markdown", metavar="PATH", help="write the table as Markdown")
    args = parser.parse_args(argv)
    rows = run(args.size, args.batch, args.repeats, args.block_ms, not args.no_odl)
    table = format_table(rows, args.size, args.batch)
    print(table)
    meta = {
        "size": args.size,
        "batch": args.batch,
        "threads": 1,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": [asdict(r) for r in rows]}, f, indent=2)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
            writer.writeheader()
            writer.writerows(asdict(r) for r in rows)
    if args.markdown:
        os.makedirs(os.path.dirname(os.path.abspath(args.markdown)), exist_ok=True)
        with open(args.markdown, "w") as f:
            f.write("# Operator wrapper overhead\n\n" + table + "\n\n")
            f.write("Machine: " + ", ".join(f"{k}={v}" for k, v in meta.items()) + "\n")
            f.write(
                "\nTimes come from a shared machine with other jobs running, so absolute milliseconds are noisy; "
                "the ratio pairs blocks timed back to back, which cancels most of the load drift.\n"
            )
            f.write(
                "\nCommand: `python benchmarks/operators.py --markdown benchmarks/results/operators.md`\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
