"""Data-parallel training (``fit(..., distributed="data")``) on 2 gloo ranks on localhost.

One :func:`~liftinv.training.distributed.launch` (spawned processes, one torch thread each) runs every
2-rank scenario in sequence and returns the weights; the tests compare them with single-process runs:
(a) each data-parallel method ends with the single-process weights (1e-5 relative), (b) a rank that dies
after epoch 1 makes rank 0 raise a clear ``RuntimeError`` within the process group's timeout, (c) checkpoints
move between 2 ranks and 1 rank. The launch is bounded by ``LAUNCH_TIMEOUT_S`` (collectives) and by the
wall-clock guard of the fixture.
"""

from __future__ import annotations

import os
import time

import pytest
import torch

from liftinv.models import mlp
from liftinv.training import fit
from liftinv.training.distributed import check_split, launch, rank_part

#: the methods with a data-parallel version (backprop-adam runs through DistributedDataParallel)
METHODS = ["bregman-isgm", "mac-isgm", "bregman-bcd", "mac-bcd", "fenchel-bcd", "backprop-adam"]
#: methods whose checkpoints are moved between world sizes (ISGM: replicated state; BCD: gathered states)
CHECKPOINTED = ["bregman-isgm", "bregman-bcd"]
#: unrolled networks (liftinv.training.unrolled): (architecture, method); ISGM splits each mini-batch, BCD
#: keeps each sample's states on one rank (sample i on rank i mod 2)
UNROLLED = [
    ("proxgrad", "bregman-isgm"),
    ("proxgrad", "mac-bcd"),
    ("proxgrad-cnn", "bregman-isgm"),
    ("proxgrad-cnn", "bregman-bcd"),
]
#: timeout of the process group in the 2-rank runs: a lost rank must be reported within it
LAUNCH_TIMEOUT_S = 10.0
EPOCHS, BATCH = 2, 16


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(64, 16, generator=g), torch.randint(0, 10, (64,), generator=g)


def _train(method, *, epochs=EPOCHS, batch_size=BATCH, distributed=None, checkpoint=None, **extra):
    """Weights of a 16-12-10 MLP after ``fit`` (the same initialisation in every process)."""
    torch.manual_seed(1)
    model = mlp([16, 12, 10])
    fit(
        model,
        _data(),
        method=method,
        epochs=epochs,
        batch_size=batch_size,
        progress=False,
        distributed=distributed,
        checkpoint=checkpoint,
        **extra,
    )
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _train_unrolled(arch, method, *, epochs=EPOCHS, distributed=None, checkpoint=None):
    """Weights of a small unrolled denoiser (8x8 images) after ``fit`` (the same initialisation everywhere).

    In float64: Adam divides by the root of tiny second moments, which turns float32 rounding of the sums
    (the only difference between one and two processes) into 1e-5 weight differences after a few steps;
    in float64 the same maths agrees to about 1e-9 (one step: 1e-15; Adam and the inner rounds amplify the
    rounding), checked to 1e-7, 100 times tighter than the 1e-5 of float32.
    """
    from liftinv.operators import make_operator

    from liftinv.unrolled import build_model

    g = torch.Generator().manual_seed(2)
    x = torch.rand(24, 1, 8, 8, generator=g, dtype=torch.float64)
    y = x + 0.1 * torch.randn(24, 1, 8, 8, generator=g, dtype=torch.float64)
    torch.manual_seed(3)
    extra = {"depth": 2, "width": 4} if arch == "proxgrad-cnn" else {}
    model = build_model(arch, make_operator("denoising", 8), iterations=2, **extra).double()
    fit(
        model,
        (y, x),
        method=method,
        epochs=epochs,
        batch_size=8,
        progress=False,
        distributed=distributed,
        checkpoint=checkpoint,
    )
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class _DieAfterFirstEpoch:
    """A metric (called by ``fit`` after each epoch) that kills rank 1 after the first epoch."""

    def __call__(self, model, X, Y):
        if torch.distributed.get_rank() == 1:
            os._exit(0)  # abrupt: no clean-up, its sockets close (exit code 0 so launch() keeps rank 0)
        return 0.0


def _error_of(call):
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the test reads the message
        return f"{type(exc).__name__}: {exc}"
    return None


def _two_rank_scenarios(folder):
    """Everything the 2 ranks do, in order; returns rank-local results (rank 1 dies at the end)."""
    rank = torch.distributed.get_rank()
    out = {"weights": {m: _train(m, distributed="data") for m in METHODS}}
    out["unrolled"] = {case: _train_unrolled(*case, distributed="data") for case in UNROLLED}
    # an unrolled BCD run: 2 ranks write after epoch 1 (each rank's states gathered), 1 rank resumes below
    _train_unrolled(
        *UNROLLED[-1], epochs=1, distributed="data", checkpoint=os.path.join(folder, "unrolled.pt")
    )
    for m in CHECKPOINTED:
        # (c) 2 ranks write after epoch 1 (rank 0 writes) ...
        _train(m, epochs=1, distributed="data", checkpoint=os.path.join(folder, f"{m}.two.pt"))
        # ... and 2 ranks resume a 1-rank checkpoint for epoch 2
        out[f"resumed:{m}"] = _train(m, distributed="data", checkpoint=os.path.join(folder, f"{m}.one.pt"))
    out["mismatch"] = _error_of(lambda: _train("bregman-isgm", epochs=1 + rank, distributed="data"))
    out["small_batch"] = _error_of(lambda: _train("bregman-isgm", distributed="data", batch_size=63))
    torch.save(out, os.path.join(folder, f"rank{rank}.pt"))  # rank 1 dies below: its results go to a file
    # (b) rank 1 dies after epoch 1; rank 0 must raise within the timeout
    start = time.perf_counter()
    out["lost"] = _error_of(lambda: _train("bregman-isgm", distributed="data", metric=_DieAfterFirstEpoch()))
    out["lost_after_s"] = time.perf_counter() - start
    return out


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("ddp"))
    for m in CHECKPOINTED:  # 1-rank checkpoints after epoch 1, for the 2-rank resume
        _train(m, epochs=1, checkpoint=os.path.join(folder, f"{m}.one.pt"))
    start = time.perf_counter()
    results = launch(_two_rank_scenarios, 2, folder, timeout_s=LAUNCH_TIMEOUT_S, num_threads=1)
    return {"folder": folder, "ranks": results, "wall": time.perf_counter() - start}


@pytest.fixture(scope="module")
def single_process():
    return {m: _train(m) for m in METHODS}


@pytest.fixture(scope="module")
def single_process_unrolled():
    return {case: _train_unrolled(*case) for case in UNROLLED}


def _assert_close(got, ref, what, tol=1e-5):
    for k in ref:
        rel = float((got[k] - ref[k]).norm() / ref[k].norm().clamp(min=1e-12))
        assert rel <= tol, f"{what}: {k} differs from the single-process run by {rel:.2e} (relative)"


@pytest.mark.parametrize("method", METHODS)
def test_data_parallel_weights_equal_single_process(two_ranks, single_process, method):
    rank0 = two_ranks["ranks"][0]["weights"][method]
    _assert_close(rank0, single_process[method], method)


@pytest.mark.parametrize("case", UNROLLED, ids=["-".join(c) for c in UNROLLED])
def test_data_parallel_unrolled_weights_equal_single_process(two_ranks, single_process_unrolled, case):
    got = two_ranks["ranks"][0]["unrolled"][case]
    _assert_close(got, single_process_unrolled[case], "-".join(case), tol=1e-7)


def test_two_rank_unrolled_bcd_checkpoint_resumes_on_one_rank(two_ranks, single_process_unrolled):
    resumed = _train_unrolled(*UNROLLED[-1], checkpoint=os.path.join(two_ranks["folder"], "unrolled.pt"))
    what = "unrolled BCD (2-rank checkpoint, 1 rank)"
    _assert_close(resumed, single_process_unrolled[UNROLLED[-1]], what, tol=1e-7)


def test_ranks_end_with_bitwise_equal_weights(two_ranks):
    assert two_ranks["ranks"][1] is None  # rank 1 died in the last scenario: its results are in a file
    rank0, rank1 = (torch.load(os.path.join(two_ranks["folder"], f"rank{r}.pt")) for r in (0, 1))
    for method in METHODS:
        for k, v in rank0["weights"][method].items():
            assert torch.equal(v, rank1["weights"][method][k]), f"{method}: {k} differs between the ranks"
    for case, weights in rank0["unrolled"].items():
        for k, v in weights.items():
            assert torch.equal(v, rank1["unrolled"][case][k]), f"{case}: {k} differs between the ranks"


@pytest.mark.parametrize("method", CHECKPOINTED)
def test_two_rank_checkpoint_resumes_on_one_rank(two_ranks, single_process, method):
    resumed = _train(method, checkpoint=os.path.join(two_ranks["folder"], f"{method}.two.pt"))
    _assert_close(resumed, single_process[method], f"{method} (2-rank checkpoint, resumed on 1 rank)")


@pytest.mark.parametrize("method", CHECKPOINTED)
def test_one_rank_checkpoint_resumes_on_two_ranks(two_ranks, single_process, method):
    _assert_close(
        two_ranks["ranks"][0][f"resumed:{method}"],
        single_process[method],
        f"{method} (1-rank checkpoint, resumed on 2 ranks)",
    )


def test_lost_rank_raises_within_the_timeout(two_ranks):
    rank0 = two_ranks["ranks"][0]
    assert rank0["lost"] is not None and rank0["lost"].startswith("RankLostError: rank 1 lost:"), rank0[
        "lost"
    ]
    assert rank0["lost_after_s"] < LAUNCH_TIMEOUT_S + 5.0


def test_mismatched_configuration_raises_on_every_rank(two_ranks):
    message = two_ranks["ranks"][0]["mismatch"]
    assert message is not None and "disagree on the configuration" in message and "epochs" in message


def test_a_rank_without_samples_is_refused(two_ranks):
    # batch_size=63: the last mini-batch has 1 sample for 2 ranks
    for r in (0, 1):
        message = torch.load(os.path.join(two_ranks["folder"], f"rank{r}.pt"))["small_batch"]
        assert message.startswith("ValueError: batch_size=63") and "world size 2" in message, message
    with pytest.raises(ValueError, match="batch_size=63.*world size 2"):
        check_split(64, 63, 2)
    check_split(64, 16, 4)


def test_rank_parts_cover_the_batch_in_order():
    idx = torch.randperm(13)
    assert torch.equal(torch.cat([rank_part(idx, r, 3) for r in range(3)]), idx)


def test_fit_refuses_data_parallel_without_a_process_group():
    with pytest.raises(ValueError, match="initialised torch.distributed process group"):
        _train("bregman-isgm", distributed="data")
    with pytest.raises(ValueError, match="distributed must be None, 'data' or 'layers'"):
        _train("bregman-isgm", distributed="model")


def test_train_distributed_outside_torchrun_is_one_error_line(tmp_path, monkeypatch, capsys):
    from liftinv.cli import main

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "model.pt"
    status = main(["train", "--task", "denoise", "--distributed", "data", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert len(err) == 1 and "torchrun" in err[0] and "liftinv train" in err[0], err
    assert not any(tmp_path.iterdir())


def test_torchrun_trains_an_unrolled_network_like_one_process(tmp_path):
    """``torchrun ... liftinv train --distributed data`` on 2 ranks: rank 0 alone prints and writes, and the
    trained network reconstructs the test images as the one-process run does."""
    import subprocess
    import sys

    args = ["-m", "liftinv", "train", "--task", "denoise", "--arch", "proxgrad", "--epochs", "2"]
    args += ["--image-size", "16", "--n-train", "16", "--batch-size", "8", "--threads", "1", "--no-progress"]
    one = subprocess.run(
        [sys.executable, *args, "--out", str(tmp_path / "one.pt")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-2000:]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    two = subprocess.run(
        [*cmd, *args, "--distributed", "data", "--out", str(tmp_path / "two.pt")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-2000:]
    assert (tmp_path / "two.pt").is_file() and (tmp_path / "two.pt.ckpt").is_file()
    assert two.stdout.count("test PSNR:") == 1, two.stdout  # rank 0 alone prints

    def psnr(text):
        line = next(line for line in text.splitlines() if line.startswith("test PSNR:"))
        return float(line.split()[2])

    assert abs(psnr(two.stdout) - psnr(one.stdout)) < 0.01, (one.stdout, two.stdout)
