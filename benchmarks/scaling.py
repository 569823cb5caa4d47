"""Strong scaling of data-parallel and layer-parallel lifted training on CPU ranks (issue 16, item 4).

Wall time per epoch and speed-up on 1 and 2 processes (``--ranks``; gloo on localhost, one torch thread per
process) of a deep MLP (``--layers`` Linear layers of width ``--width``, ReLU) on synthetic data
(``--samples`` Gaussian inputs of dimension ``--dim``, ``--classes`` random labels, MSE loss):

* data-parallel (:mod:`liftinv.training.distributed`): ``bregman-isgm`` (mini-batches of ``--batch-size``,
  and of 4 x ``--batch-size``: the same traffic per step for 4 times the compute) and ``bregman-bcd`` (sample
  shards of ``--shard-size``, and one shard of all the samples: full-batch BCD, as in Wang & Benning's
  experiments);
* layer-parallel (:mod:`liftinv.training.layer_parallel`): ``bregman-bcd`` (parity schedule, shards of
  ``--shard-size``; at most one rank per layer);
* the reference, in the same run and on the same ranks: back-propagation (``backprop-adam``, mini-batches of
  ``--batch-size``) through :class:`torch.nn.parallel.DistributedDataParallel`;

and of an unrolled network (``proxgrad-cnn``: ``--unrolled-iterations`` proximal-gradient iterations whose
proximal steps are residual CNNs of ``--unrolled-depth`` layers and ``--unrolled-width`` channels) denoising
``--unrolled-samples`` smooth random images of ``--unrolled-size`` squared: data-parallel ``bregman-isgm``
(the unrolled trainer of :mod:`liftinv.training.unrolled`, mini-batches of ``--unrolled-batch``) beside DDP
back-propagation.

Protocol. One :func:`~liftinv.training.distributed.launch` per world size; inside it every method builds its
trainer on the same initial weights, runs one warm-up epoch, then ``--epochs`` timed epochs in rounds, the
order of the methods alternating between rounds (A B C D, D C B A, ...) so that background load hits them
equally. An epoch is timed on rank 0 between two barriers; the table gives the median. Speed-ups are to the
1-rank time of the same method and mode, and to DDP back-propagation on the same number of ranks (> 1 =
faster than back-propagation). Different world sizes run one after the other, not interleaved.

Measured model and prediction. Each rank counts its collective traffic (the ``Communicator``'s all-reduced
bytes and calls; the layer-parallel trainer's point-to-point bytes and messages; DDP: the gradient,
4 x #parameters bytes per step in 25 MB buckets) -- the formulas of the module docstrings, counted. The
1-rank epoch time, divided by the steps per epoch, is the local compute of one step on this CPU. The
prediction for 8, 64 and 512 GPUs then assumes (all written to the output):

* compute: the 1-rank CPU epoch is matrix-product bound; on a GPU it runs at ``--gpu-tflops`` (default
  20 TFLOP/s, a conservative float32 rate for an H100) instead of this core's measured one-thread GEMM rate
  at the layer shape, and divides evenly over the P ranks (layer-parallel: over min(P, L) ranks);
* communication: not overlapped with compute; a ring all-reduce of B bytes on P ranks costs
  2 (P - 1) alpha + 2 (P - 1) / P * B / beta; a point-to-point message alpha + B / beta; the boundaries of the
  layer-parallel chain run concurrently (one boundary's traffic per epoch is on the critical path);
  beta = ``--bandwidth-gbps`` (default 100 Gb/s), alpha = ``--latency-us`` (default 10 us);
* the bytes and calls per epoch are those measured on the largest world size run (data-parallel traffic
  does not depend on P; layer-parallel traffic per boundary does not either).

The prediction ignores that the per-rank work (``samples / P`` rows) becomes too small to use a GPU well at
large P (at 512 ranks and 4096 samples: 8 rows), so it is an upper bound for the compute part.

Caveat. On a loaded 2-core machine the 2-rank processes compete with each other and with the background
load for the cores, and gloo moves the data through localhost TCP: the measured speed-ups are a lower bound
on what the same code reaches on idle, separate devices.

Usage::

    python benchmarks/scaling.py                              # 8 x 512 MLP, 4096 x 512 samples, ranks 1,2
    python benchmarks/scaling.py --ranks 1,2,4 --epochs 5
    python benchmarks/scaling.py --bandwidth-gbps 400 --gpu-tflops 40 --out-dir /tmp/scaling
    python benchmarks/scaling.py --smoke                      # 3 x 32 MLP, 256 samples, 2 epochs (< 60 s)

Writes ``scaling.md`` and ``scaling.json`` to ``--out-dir`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from liftinv.operators import make_operator

from liftinv.files import save_text_file
from liftinv.models import build_model, mlp
from liftinv.training.distributed import launch
from liftinv.training.loop import epoch_generator
from liftinv.training.registry import get_data_parallel_trainer, get_layer_parallel_trainer

#: (network, label, method, mode); network "mlp" or "unrolled"; mode "data" or "layers"; the DDP
#: back-propagation reference of each network is BASELINE
METHODS = [
    ("mlp", "bregman-isgm", "bregman-isgm", "data"),
    ("mlp", "bregman-isgm, 4x batch", "bregman-isgm", "data"),
    ("mlp", "bregman-bcd", "bregman-bcd", "data"),
    ("mlp", "bregman-bcd, full batch", "bregman-bcd", "data"),
    ("mlp", "bregman-bcd", "bregman-bcd", "layers"),
    ("mlp", "backprop-adam (DDP)", "backprop-adam", "data"),
    ("unrolled", "bregman-isgm", "bregman-isgm", "data"),
    ("unrolled", "backprop-adam (DDP)", "backprop-adam", "data"),
]
BASELINE = "backprop-adam (DDP)"
DDP_BUCKET_BYTES = 25 * 1024 * 1024
PREDICT_GPUS = (8, 64, 512)


def make_data(network: str, args):
    """MLP: Gaussian inputs and random labels. Unrolled: random smooth images and their noisy copies."""
    g = torch.Generator().manual_seed(args.seed)
    if network == "unrolled":
        n, size = args.unrolled_samples, args.unrolled_size
        coarse = torch.rand(n, 1, size // 4, size // 4, generator=g)
        x = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
        return x + 0.1 * torch.randn(x.shape, generator=g), x
    X = torch.randn(args.samples, args.dim, generator=g)
    Y = torch.randint(0, args.classes, (args.samples,), generator=g)
    return X, Y


def make_model(network: str, args):
    """The network, initialised from ``args.seed + 1`` (the same on every rank)."""
    torch.manual_seed(args.seed + 1)
    if network == "unrolled":
        return build_model(
            "proxgrad-cnn",
            make_operator("denoising", args.unrolled_size),
            iterations=args.unrolled_iterations,
            depth=args.unrolled_depth,
            width=args.unrolled_width,
        )
    return mlp(sizes_of(args), flatten=False)


def sizes_of(args) -> list[int]:
    return [args.dim] + [args.width] * (args.layers - 1) + [args.classes]


def options_of(network: str, label: str, method: str, args) -> dict:
    """Trainer options of a row of :data:`METHODS` (``"..., 4x batch"``: ISGM on 4 x ``--batch-size``)."""
    if network == "unrolled":
        return {"batch_size": args.unrolled_batch, **({"lr": 1e-3} if method == "backprop-adam" else {})}
    if label.endswith("4x batch"):
        return {"batch_size": 4 * args.batch_size}
    if label.endswith("full batch"):  # one shard: the whole data set (one weight-step round per epoch)
        return {"batch_size": args.samples}
    if method == "bregman-isgm":
        return {"batch_size": args.batch_size}
    if method == "bregman-bcd":
        return {"batch_size": args.shard_size}
    return {"batch_size": args.batch_size, "lr": 1e-3}


def steps_per_epoch(network: str, label: str, method: str, args) -> int:
    """Mini-batches (ISGM, back-propagation) or shard visits (BCD) per epoch."""
    n = args.unrolled_samples if network == "unrolled" else args.samples
    return math.ceil(n / min(options_of(network, label, method, args)["batch_size"], n))


class _Counter:
    """Counts the calls and bytes of ``torch.distributed`` collectives in this process (wraps the functions)."""

    def __init__(self):
        self.calls = {"all_reduce": 0, "send": 0}
        self.bytes = {"all_reduce": 0, "send": 0}
        for name in self.calls:
            original = getattr(dist, name)

            def wrapped(tensor, *a, _name=name, _original=original, **k):
                self.calls[_name] += 1
                self.bytes[_name] += tensor.numel() * tensor.element_size()
                return _original(tensor, *a, **k)

            setattr(dist, name, wrapped)

    def snapshot(self) -> dict:
        return {"calls": dict(self.calls), "bytes": dict(self.bytes)}


def _rank_worker(args, methods):
    """On every rank: all methods, warm-up, then timed epochs in alternating rounds. Returns rank-local data."""
    counter = _Counter()
    rank = dist.get_rank()
    data = {network: make_data(network, args) for network in {m[0] for m in methods}}
    trainers, models = {}, {}
    for key in methods:
        network, label, method, mode = key
        model = make_model(network, args)
        lookup = get_layer_parallel_trainer if mode == "layers" else get_data_parallel_trainer
        models[key] = model
        X, Y = data[network]
        trainers[key] = lookup(method, model)(
            model, X, Y, loss="mse", seed=args.seed, **options_of(network, label, method, args)
        )
    times = {k: [] for k in methods}
    traffic = {}
    objectives = {k: [] for k in methods}
    for e in range(args.epochs + 1):  # epoch 0: warm-up
        order = methods if e % 2 == 0 else methods[::-1]
        for key in order:
            before = counter.snapshot()
            dist.barrier()
            t0 = time.perf_counter()
            rec = trainers[key].run_epoch(e, epoch_generator(args.seed, e))
            dist.barrier()
            dt = time.perf_counter() - t0
            after = counter.snapshot()
            if e == 0:
                continue
            times[key].append(dt)
            objectives[key].append(float(rec["objective"]))
            if e == 1:  # traffic of one (non-warm-up) epoch, this rank
                traffic[key] = {
                    kind: {c: after[kind][c] - before[kind][c] for c in after[kind]} for kind in after
                }
    return {
        "rank": rank,
        "times": {"|".join(k): v for k, v in times.items()},
        "objectives": {"|".join(k): v for k, v in objectives.items()},
        "traffic": {"|".join(k): v for k, v in traffic.items()},
    }


def gemm_gflops(args) -> float:
    """One-thread float32 GEMM rate (GFLOP/s) of this machine at the layer shape (batch x width x width)."""
    rows = min(args.batch_size, args.samples)
    a, b = torch.randn(rows, args.width), torch.randn(args.width, args.width)
    for _ in range(3):
        a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 0.3:
        a @ b
        reps += 1
    return 2 * rows * args.width * args.width * reps / (time.perf_counter() - t0) / 1e9


def allreduce_time(calls: int, nbytes: int, p: int, alpha: float, beta: float) -> float:
    return calls * 2 * (p - 1) * alpha + 2 * (p - 1) / p * nbytes / beta if p > 1 else 0.0


def predict(rows: list[dict], args, cpu_gflops: float) -> dict:
    """Per method: measured compute per step and bytes per epoch; predicted speed-ups on 8, 64, 512 GPUs."""
    alpha, beta = args.latency_us * 1e-6, args.bandwidth_gbps * 1e9 / 8
    n_params = sum(p.numel() for p in mlp(sizes_of(args), flatten=False).parameters())
    scale = cpu_gflops / (args.gpu_tflops * 1e3)
    out = {}
    for network, label, method, mode in METHODS:
        if network != "mlp":  # the compute model below is the MLP's (matrix products)
            continue
        mine = [r for r in rows if (r["network"], r["method"], r["mode"]) == (network, label, mode)]
        one = [r for r in mine if r["ranks"] == 1]
        multi = [r for r in mine if r["ranks"] > 1]
        if not one:
            continue
        steps = steps_per_epoch(network, label, method, args)
        t1_cpu = one[0]["epoch_s"]
        t1_gpu = t1_cpu * scale
        entry = {
            "steps_per_epoch": steps,
            "compute_per_step_cpu_s": t1_cpu / steps,
            "compute_per_epoch_gpu_s": t1_gpu,
        }
        if method == "backprop-adam":  # DDP: gradient buckets, per step (formula)
            grad = 4 * n_params
            calls, nbytes, src = (
                steps * math.ceil(grad / DDP_BUCKET_BYTES),
                steps * grad,
                "formula 4 x #params",
            )
        elif multi:
            tr = max(multi, key=lambda r: r["ranks"])["traffic_rank0"]
            src = f"measured on {max(r['ranks'] for r in multi)} ranks, rank 0"
            if mode == "data":
                calls, nbytes = tr["calls"]["all_reduce"], tr["bytes"]["all_reduce"]
            else:  # rank 0 owns boundary 0: both directions of its messages, plus the per-epoch gather
                calls = tr["calls"]["send"] + tr["calls"]["all_reduce"]
                nbytes = tr["bytes"]["send"] + tr["bytes"]["all_reduce"]
        else:
            entry["predicted_speedup"] = None
            out[f"{label}|{mode}"] = entry
            continue
        entry.update({"comm_calls_per_epoch": calls, "comm_bytes_per_epoch": nbytes, "traffic_source": src})
        pred = {}
        for p in PREDICT_GPUS:
            if mode == "layers":
                q = min(p, args.layers)
                # rank 0's sends are one direction of boundary 0; the other direction is as large (x2)
                comm = 2 * (calls * alpha + nbytes / beta) if q > 1 else 0.0
                pred[p] = {"ranks_used": q, "speedup": t1_gpu / (t1_gpu / q + comm)}
            else:
                comm = allreduce_time(calls, nbytes, p, alpha, beta)
                pred[p] = {"ranks_used": p, "speedup": t1_gpu / (t1_gpu / p + comm), "comm_s": comm}
        entry["predicted_speedup"] = pred
        out[f"{label}|{mode}"] = entry
    return out


def table(rows: list[dict]) -> str:
    lines = [
        "| network | method | mode | ranks | s/epoch | speed-up vs 1 rank | vs DDP backprop (same ranks) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        base = "" if r["vs_1_rank"] is None else f"{r['vs_1_rank']:.2f}"
        ddp = "" if r["vs_ddp"] is None else f"{r['vs_ddp']:.2f}"
        lines.append(
            f"| {r['network']} | {r['method']} | {r['mode']} | {r['ranks']} | {r['epoch_s']:.3f} | {base} | {ddp} |"
        )
    return "\n".join(lines)


def prediction_table(model: dict) -> str:
    head = "| method | mode | compute/step CPU (ms) | comm bytes/epoch | " + " | ".join(
        f"speed-up {p} GPUs" for p in PREDICT_GPUS
    )
    lines = [head + " |", "|---|---|---:|---:|" + "---:|" * len(PREDICT_GPUS)]
    for key, e in model.items():
        label, mode = key.split("|")
        pred = e.get("predicted_speedup")
        cells = [
            f"{pred[p]['speedup']:.1f}"
            + (f" ({pred[p]['ranks_used']} used)" if pred[p]["ranks_used"] != p else "")
            if pred
            else "n/a"
            for p in PREDICT_GPUS
        ]
        nbytes = f"{e['comm_bytes_per_epoch'] / 1e6:.3f} MB" if "comm_bytes_per_epoch" in e else "n/a"
        lines.append(
            f"| {label} | {mode} | {1e3 * e['compute_per_step_cpu_s']:.2f} | {nbytes} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", default="1,2", help="comma-separated world sizes (1 is always added)")
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--samples", type=int, default=4096)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256, help="mini-batch of ISGM and back-propagation")
    p.add_argument("--shard-size", type=int, default=1024, help="sample shard of BCD")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up epoch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bandwidth-gbps", type=float, default=100.0, help="link bandwidth of the prediction")
    p.add_argument("--latency-us", type=float, default=10.0, help="per-message latency of the prediction")
    p.add_argument(
        "--gpu-tflops", type=float, default=20.0, help="effective GPU float32 rate of the prediction"
    )
    p.add_argument("--unrolled-size", type=int, default=32, help="image side of the unrolled network's data")
    p.add_argument("--unrolled-samples", type=int, default=128)
    p.add_argument("--unrolled-batch", type=int, default=32)
    p.add_argument("--unrolled-iterations", type=int, default=5, help="unrolled iterations K of proxgrad-cnn")
    p.add_argument("--unrolled-depth", type=int, default=4, help="CNN depth of each proximal step")
    p.add_argument("--unrolled-width", type=int, default=16, help="CNN width of each proximal step")
    p.add_argument("--timeout-s", type=float, default=600.0, help="process-group timeout")
    p.add_argument("--smoke", action="store_true", help="3 x 32 MLP, 256 samples of dimension 32, 2 epochs")
    p.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args(argv)
    if args.smoke:
        args.layers, args.width, args.samples, args.dim = 3, 32, 256, 32
        args.batch_size, args.shard_size, args.epochs = 64, 128, 2
        args.unrolled_size, args.unrolled_samples, args.unrolled_batch = 8, 16, 8
        args.unrolled_iterations, args.unrolled_depth, args.unrolled_width = 2, 2, 4
    ranks = sorted({1, *(int(r) for r in args.ranks.split(","))})
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    results = {}
    for world in ranks:
        methods = [m for m in METHODS if not (m[3] == "layers" and world > args.layers)]
        t0 = time.perf_counter()
        results[world] = launch(_rank_worker, world, args, methods, timeout_s=args.timeout_s, num_threads=1)
        print(f"{world} rank(s): {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    rows = []
    for world in ranks:
        r0 = results[world][0]
        for network, label, method, mode in METHODS:
            key = f"{network}|{label}|{method}|{mode}"
            if key not in r0["times"]:
                continue
            rows.append(
                {
                    "network": network,
                    "method": label,
                    "mode": mode,
                    "ranks": world,
                    "epoch_s": statistics.median(r0["times"][key]),
                    "epoch_times": r0["times"][key],
                    "objectives": r0["objectives"][key],
                    "traffic_rank0": r0["traffic"][key],
                    "options": options_of(network, label, method, args),
                }
            )
    for r in rows:
        same = [s for s in rows if s["network"] == r["network"]]
        one = next(
            (s for s in same if (s["method"], s["mode"], s["ranks"]) == (r["method"], r["mode"], 1)), None
        )
        ddp = next((s for s in same if s["method"] == BASELINE and s["ranks"] == r["ranks"]), None)
        r["vs_1_rank"] = one["epoch_s"] / r["epoch_s"] if one else None
        r["vs_ddp"] = ddp["epoch_s"] / r["epoch_s"] if ddp else None
    cpu_gflops = gemm_gflops(args)
    model = predict(rows, args, cpu_gflops)
    assumptions = [
        f"compute: 1-rank CPU epoch scaled by this core's one-thread GEMM rate ({cpu_gflops:.1f} GFLOP/s at "
        f"{min(args.batch_size, args.samples)}x{args.width}x{args.width}) -> {args.gpu_tflops:g} TFLOP/s per GPU, "
        "divided evenly over the ranks (layer-parallel: over min(P, layers) ranks)",
        f"communication not overlapped; ring all-reduce 2(P-1) alpha + 2(P-1)/P B/beta; point-to-point alpha + B/beta; "
        f"beta = {args.bandwidth_gbps:g} Gb/s, alpha = {args.latency_us:g} us",
        "bytes/calls per epoch: measured on the largest world size (rank 0); DDP: 4 x #params per step, 25 MB buckets",
        "per-rank work of samples/P rows assumed GPU-efficient at every P (optimistic at large P)",
    ]
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    header = (
        f"MLP {args.layers} layers of width {args.width}, {args.samples} samples of dimension {args.dim}, "
        f"{args.classes} classes; batch {args.batch_size} (ISGM, backprop), shard {args.shard_size} (BCD). "
        f"Unrolled: proxgrad-cnn (K = {args.unrolled_iterations}, CNN depth {args.unrolled_depth}, width "
        f"{args.unrolled_width}) denoising {args.unrolled_samples} images of {args.unrolled_size}x"
        f"{args.unrolled_size}, batch {args.unrolled_batch}. "
        f"gloo, 1 torch thread per rank; median of {args.epochs} epochs after a warm-up epoch, methods "
        "alternated in rounds; speed-ups > 1 = faster. On a loaded 2-core machine these are lower bounds."
    )
    md = "\n".join(
        [
            "# Scaling of data- and layer-parallel lifted training",
            "",
            header,
            "",
            table(rows),
            "",
            "## Measured model and predicted speed-up",
            "",
            prediction_table(model),
            "",
            "Assumptions:",
            "",
            *[f"- {a}" for a in assumptions],
            "",
        ]
    )
    print(md)
    save_text_file(md, args.out_dir / "scaling.md")  # (creates the folder)
    payload = {
        "config": config,
        "torch": torch.__version__,
        "rows": rows,
        "model": model,
        "cpu_gemm_gflops": cpu_gflops,
        "assumptions": assumptions,
        "total_s": time.perf_counter() - t_start,
    }
    save_text_file(json.dumps(payload, indent=2, default=str), args.out_dir / "scaling.json")
    print(
        f"wrote {args.out_dir / 'scaling.md'} and scaling.json ({payload['total_s']:.0f} s)", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
