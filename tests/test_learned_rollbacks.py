"""Rollbacks of ``benchmarks/learned.py`` (issue 12): a collapsed or plateaued run (back-propagation or a lifted
trainer) returns to its best-validation weights with a fresh trainer state and a decayed step size, and the
schedule survives resume."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from liftinv.metrics import History
from liftinv.training import fit, load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def learned(load_script):
    return load_script("liftinv_bench_learned", ROOT / "benchmarks" / "learned.py")


def _make():
    torch.manual_seed(0)
    return nn.Conv2d(1, 1, 3, padding=1)


def _data(seed: int, n: int = 16):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 6, 6, generator=g)
    return x + 0.1 * torch.randn(x.shape, generator=g), x  # (noisy input, clean target)


def _ctx(learned, d: Path, **kw):
    return learned.Ctx(torch.device("cpu"), 0, d, math.inf, kw.pop("max_epochs", 40), (1.0,), 0.0, 1e9, **kw)


def _history(values):
    h = History(method="backprop-adam")
    for i, v in enumerate(values):
        h.append(epoch=i + 1, test_custom=v, wall=float(i), time=1.0)
    return h


def test_plateau_stop_reasons(learned, tmp_path):
    ctx = _ctx(learned, tmp_path, patience=3, rollback_db=5.0)
    tracker = SimpleNamespace(best=30.0, best_epoch=2)
    stop = learned._plateau_stop
    assert stop(_history([20, 30, 29, 29]), tracker=tracker, since=0, ctx=ctx) is None
    assert "collapsed" in stop(_history([20, 30, 24.9]), tracker=tracker, since=0, ctx=ctx)
    assert "3 epochs" in stop(_history([20, 30, 29, 29, 29]), tracker=tracker, since=0, ctx=ctx)
    # counted from the last rollback, and the epoch that caused that rollback does not trigger another
    assert stop(_history([20, 30, 29, 29, 29]), tracker=tracker, since=4, ctx=ctx) is None
    assert stop(_history([20, 30, 29, 29, 1.0]), tracker=tracker, since=5, ctx=ctx) is None


def test_roll_back_restores_best_weights_and_a_fresh_adam_state(learned, tmp_path):
    model, ckpt, best = _make(), tmp_path / "run.pt", tmp_path / "run.best.pt"
    fit(model, _data(0), epochs=3, checkpoint=ckpt, progress=False, lr=1e-2, batch_size=4)
    before = load_checkpoint(ckpt)
    assert before["trainer"]["optimizer"]["state"]  # Adam moments exist after training
    best_state = {k: torch.full_like(v, 0.25) for k, v in model.state_dict().items()}
    torch.save({"epoch": 2, "val_psnr": 20.0, "state": best_state}, best)

    assert learned._roll_back(ckpt, best, _make) == 3
    after = load_checkpoint(ckpt)
    assert after["epoch"] == 3 and after["history"] == before["history"]
    assert all(torch.equal(after["model"][k], best_state[k]) for k in best_state)
    assert after["trainer"]["optimizer"]["state"] == {}
    # fit resumes from the rewritten checkpoint: it starts at the best weights and trains on
    resumed = _make()
    hist = fit(resumed, _data(0), epochs=4, checkpoint=ckpt, progress=False, lr=1e-2, batch_size=4)
    assert len(hist) == 4

    save_checkpoint(ckpt, {**after, "method": "bregman-adaptive", "trainer": {"cache": {}}})
    with pytest.raises(ValueError, match="backprop-adam and the unrolled lifted trainers"):
        learned._roll_back(ckpt, best, _make)


@pytest.mark.parametrize("method", ["bregman-isgm", "bregman-bcd"])
def test_roll_back_of_a_lifted_run_restarts_its_trainer_at_the_best_weights(learned, tmp_path, method):
    """The lifted trainers' checkpoint gets the best weights and an empty trainer state: zero Adam moments,
    (BCD) per-sample states from a forward pass of the best weights; fit resumes from it at the same epoch."""
    from liftinv.operators import make_operator

    from liftinv.models import UnrolledProxGradCNN

    def make():
        return UnrolledProxGradCNN(make_operator("denoising", 6), iterations=1, depth=2, width=3, seed=0)

    ckpt, best = tmp_path / "lifted.pt", tmp_path / "lifted.best.pt"
    opts = dict(method=method, checkpoint=ckpt, progress=False, lr=1e-2, batch_size=8)
    model = make()
    fit(model, _data(0), epochs=2, **opts)
    before = load_checkpoint(ckpt)
    assert before["trainer"]["adam"]["t"] > 0 and (method == "bregman-isgm") == (
        before["trainer"]["states"] is None
    )
    best_state = {k: v + 0.01 for k, v in make().state_dict().items()}
    torch.save({"epoch": 1, "val_psnr": 20.0, "state": best_state}, best)

    assert learned._roll_back(ckpt, best, make) == 2
    after = load_checkpoint(ckpt)
    assert after["epoch"] == 2 and after["history"] == before["history"] and after["trainer"] == {}
    assert all(torch.equal(after["model"][k], best_state[k]) for k in best_state)
    # an empty state restores a new trainer: zero Adam moments, no stored states, step constants to estimate
    from liftinv.training.registry import get_trainer

    X, Y = _data(0)
    trainer = get_trainer(method, make())(make(), X, Y, lr=1e-2, batch_size=8)
    trainer.load_state_dict(after["trainer"])  # what fit does on resume: a new trainer, then its state
    assert trainer.t == 0 and trainer.scale == 1.0 and trainer._lipschitz is None
    assert all(float(m.abs().max()) == 0 for m in trainer.m) and trainer.states is None
    # fit resumes from the rewritten checkpoint at the best weights and trains on
    resumed = make()
    hist = fit(resumed, _data(0), epochs=3, **opts)
    assert len(hist) == 3 and math.isfinite(hist.last["objective"])
    assert any(not torch.equal(v, best_state[k]) for k, v in resumed.state_dict().items())


def test_train_rolling_decays_the_step_and_keeps_the_schedule(learned, tmp_path):
    train, val = _data(1), _data(2)
    setup = SimpleNamespace(chunk=lambda epoch: train, val=val, pool=None)
    spec = learned.RowSpec("tiny", "backprop-adam", _make, 1e-2, {"batch_size": 4})
    ckpt = tmp_path / "tiny.pt"
    tracker = learned.ValTracker(val, tmp_path / "tiny.best.pt")
    ctx = _ctx(learned, tmp_path, max_epochs=60, patience=2, lr_decay=0.1)
    rollbacks, saved = [], []

    def save():
        saved.append(json.dumps(rollbacks))

    hist, why = learned._train_rolling(
        _make(), spec, setup, 1.0, ckpt, math.inf, ctx, tracker, rollbacks, save
    )
    # a step size of 1.0 is far too large for this model: it plateaus, rolls back with decays of 0.1 down to
    # the floor (1e-3 of the base rate) and ends there
    assert [r["lr_factor"] for r in rollbacks] == [0.1] * len(rollbacks) and len(rollbacks) >= 1
    assert "floor" in why or len(hist) == 60
    assert saved and json.loads(saved[-1]) == rollbacks
    assert all(a["epoch"] < b["epoch"] for a, b in zip(rollbacks, rollbacks[1:], strict=False))
    assert tracker.best >= max(float(r["test_custom"]) for r in hist) - 1e-9
    # the checkpoint holds the last epoch trained; the best weights are what the tracker saved
    assert load_checkpoint(ckpt)["epoch"] == len(hist)
