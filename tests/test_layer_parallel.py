"""Layer-parallel lifted BCD (``fit(..., distributed="layers")``) on 2 gloo ranks, and the CLI's torchrun mode.

One :func:`~liftinv.training.distributed.launch` (spawned processes, one torch thread each) runs every 2-rank
scenario; the tests compare with the single-process BCD trainer run with ``order="parity"`` (the schedule the
ranks reproduce, see :mod:`liftinv.training.layer_parallel`): (a) the objective per epoch (1e-6 relative) and
the final weights (1e-5) of a 16-12-12-12-10 MLP on 64 samples, and the bytes of the boundary exchanges;
(b) more ranks than layers is one clear ``ValueError``; (c) a 2-rank checkpoint resumes on 1 rank to the
uninterrupted weights; (d) ``liftinv train-classifier --distributed`` outside torchrun is one error line,
and under ``python -m torch.distributed.run`` it trains and rank 0 alone writes and prints.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from liftinv.models import mlp
from liftinv.training import fit
from liftinv.training.distributed import launch
from liftinv.training.registry import get_layer_parallel_trainer

#: process-group timeout of the 2-rank runs
LAUNCH_TIMEOUT_S = 20.0
EPOCHS = 2
SIZES = [16, 12, 12, 12, 10]
#: option sets compared with one process: full-batch BCD, and 2 sample shards with 2 sweeps each
CONFIGS = {
    "bregman-full": ("bregman-bcd", {}),
    "bregman-shards": ("bregman-bcd", {"batch_size": 32, "sweeps": 2}),
    "mac-full": ("mac-bcd", {}),
}


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(64, 16, generator=g), torch.randint(0, 10, (64,), generator=g)


def _train(method, *, epochs=EPOCHS, distributed=None, checkpoint=None, sizes=SIZES, **extra):
    """(objective per epoch, weights) of an MLP after ``fit`` with the parity order (same init everywhere)."""
    torch.manual_seed(1)
    model = mlp(sizes)
    h = fit(
        model,
        _data(),
        method=method,
        epochs=epochs,
        progress=False,
        distributed=distributed,
        checkpoint=checkpoint,
        order="parity",
        **extra,
    )
    return list(h["objective"]), {k: v.detach().clone() for k, v in model.state_dict().items()}


def _error_of(call):
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the test reads the message
        return f"{type(exc).__name__}: {exc}"
    return None


def _two_rank_scenarios(folder):
    """Everything the 2 ranks do, in order; returns rank-local results."""
    out = {name: _train(m, distributed="layers", **opts) for name, (m, opts) in CONFIGS.items()}
    # bytes of one epoch with 2 sweeps on the whole set (rank-local counters)
    torch.manual_seed(1)
    X, Y = _data()
    trainer = get_layer_parallel_trainer("bregman-bcd")(mlp(SIZES), X, Y, sweeps=2)
    trainer.run_epoch(0, torch.Generator().manual_seed(0))
    out["bytes"] = dict(trainer.bytes_sent)
    # (b) 2 ranks, 1 layer
    out["too_many"] = _error_of(lambda: _train("bregman-bcd", distributed="layers", sizes=[16, 10]))
    # (c) 2 ranks write a checkpoint after epoch 1 (rank 0 writes)
    _train("bregman-bcd", epochs=1, distributed="layers", checkpoint=os.path.join(folder, "two.pt"))
    return out


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("layer_parallel"))
    results = launch(_two_rank_scenarios, 2, folder, timeout_s=LAUNCH_TIMEOUT_S, num_threads=1)
    return folder, results


@pytest.mark.parametrize("name", list(CONFIGS))
def test_layer_parallel_follows_the_single_process_parity_schedule(two_ranks, name):
    method, opts = CONFIGS[name]
    ref_obj, ref_w = _train(method, **opts)
    for rank, res in enumerate(two_ranks[1]):
        obj, weights = res[name]
        assert len(obj) == len(ref_obj) == EPOCHS
        for a, b in zip(obj, ref_obj):
            assert abs(a - b) <= 1e-6 * abs(b), (rank, obj, ref_obj)
        for k, v in ref_w.items():
            err = float((weights[k] - v).abs().max() / v.abs().max())
            assert err <= 1e-5, f"rank {rank}, {name}, {k}: relative error {err:.2e}"


def test_boundary_traffic_is_the_documented_formula(two_ranks):
    """Per sweep 4 N n_b bytes each way across the one boundary (b = 2, n_b = n_3 = 12, N = 64); the
    boundary weights W_3, b_3 (4 (12 x 12 + 12) bytes) once per shard visit, from rank 1 to rank 0."""
    n, sweeps = 64, 2
    r0, r1 = (res["bytes"] for res in two_ranks[1])
    assert r0["states"] == sweeps * 4 * n * SIZES[2]
    assert r1["states"] == sweeps * 4 * n * SIZES[3]
    assert (r0["weights"], r1["weights"]) == (0, 4 * (12 * 12 + 12))


def test_more_ranks_than_layers_is_a_clear_error(two_ranks):
    for res in two_ranks[1]:
        msg = res["too_many"]
        assert msg is not None and msg.startswith("ValueError")
        assert "world size 2" in msg and "1 layers" in msg


def test_two_rank_checkpoint_resumes_on_one_rank(two_ranks):
    folder, _ = two_ranks
    obj, weights = _train("bregman-bcd", checkpoint=os.path.join(folder, "two.pt"))
    ref_obj, ref_w = _train("bregman-bcd")
    assert abs(obj[-1] - ref_obj[-1]) <= 1e-6 * abs(ref_obj[-1])
    for k, v in ref_w.items():
        assert torch.allclose(weights[k], v, rtol=1e-5, atol=1e-6), k


def test_distributed_outside_torchrun_is_one_error_line(tmp_path, monkeypatch, capsys):
    from liftinv.cli import main

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    status = main(["train-classifier", "--distributed", "data", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert len(err) == 1 and "torchrun" in err[0] and "--distributed data" in err[0], err
    assert not (tmp_path / "run").exists()


def test_torchrun_trains_and_rank_zero_writes(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "liftinv", "train-classifier", "--data", "digits", "--epochs", "1"]
    cmd += ["--method", "bregman-isgm", "--distributed", "data", "--hidden", "16", "--threads", "1"]
    cmd += ["--no-progress", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "model.pt").is_file() and (out / "checkpoint.pt").is_file()
    assert proc.stdout.count("test accuracy:") == 1, proc.stdout  # rank 0 alone prints
