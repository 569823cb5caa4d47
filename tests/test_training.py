"""The shared fit() loop: history, checkpoints/resume, data checks, devices; and the top-level CLI."""

from __future__ import annotations

import re

import pytest
import torch

from liftinv import cli
from liftinv.models import mlp
from liftinv.training import fit, resolve_device


def _blobs(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centers = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0]])
    X = centers[y] + 0.5 * torch.randn(n, 2, generator=g)
    return X.double(), y


def test_backprop_adam_learns_and_records_history():
    X, y = _blobs()
    torch.manual_seed(0)
    model = mlp((2, 16, 3)).double()
    hist = fit(
        model,
        (X, y),
        method="backprop-adam",
        epochs=15,
        lr=0.05,
        batch_size=32,
        test=_blobs(60, 1),
        progress=False,
    )
    assert len(hist) == 15
    assert hist["objective"][-1] < hist["objective"][0]
    assert hist.last["test_accuracy"] >= 0.95
    assert all(t > 0 for t in hist["time"])


@pytest.mark.parametrize("method", ["backprop-adam", "backprop-sgd"])
def test_resume_gives_identical_weights(tmp_path, method):
    X, y = _blobs()
    torch.manual_seed(0)
    ref = mlp((2, 16, 3)).double()
    init = {k: v.clone() for k, v in ref.state_dict().items()}
    fit(ref, (X, y), method=method, epochs=4, batch_size=16, progress=False, seed=3)

    model = mlp((2, 16, 3)).double()
    model.load_state_dict(init)
    ck = tmp_path / "run.pt"
    fit(model, (X, y), method=method, epochs=2, batch_size=16, progress=False, seed=3, checkpoint=ck)
    model2 = mlp((2, 16, 3)).double()  # a fresh process would rebuild the model; weights come from the file
    hist = fit(model2, (X, y), method=method, epochs=4, batch_size=16, progress=False, seed=3, checkpoint=ck)
    assert [r["epoch"] for r in hist.records] == [1, 2, 3, 4]
    for k, v in ref.state_dict().items():
        assert torch.equal(v, model2.state_dict()[k]), k


@pytest.mark.parametrize("method", ["backprop-adam", "backprop-sgd", "sste"])
def test_step_schedule_follows_the_epoch_and_survives_resume(tmp_path, method):
    # lr_decay_epochs=(2, 3): step lr for epochs 1-2, lr/10 for epoch 3, lr/100 for epochs 4-5 (1-based).
    from liftinv.training import get_trainer

    X, y = _blobs()
    act = "sign" if method == "sste" else "relu"
    opts = dict(method=method, batch_size=16, progress=False, seed=3, lr=0.02, weight_decay=5e-4)
    sched = dict(lr_decay_epochs=(2, 3), lr_decay=0.1)
    torch.manual_seed(0)
    model = mlp((2, 16, 3), activation=act).double()
    trainer = get_trainer(method)(model, X, y, lr=0.02, **sched)
    assert [trainer.lr_at(e) for e in range(5)] == pytest.approx([0.02, 0.02, 2e-3, 2e-4, 2e-4])

    torch.manual_seed(0)
    ref = mlp((2, 16, 3), activation=act).double()
    init = {k: v.clone() for k, v in ref.state_dict().items()}
    fit(ref, (X, y), epochs=5, **opts, **sched)
    ck = tmp_path / "run.pt"
    part = mlp((2, 16, 3), activation=act).double()
    part.load_state_dict(init)
    fit(part, (X, y), epochs=3, checkpoint=ck, **opts, **sched)
    resumed = mlp((2, 16, 3), activation=act).double()
    fit(resumed, (X, y), epochs=5, checkpoint=ck, **opts, **sched)
    for k, v in ref.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k

    # the schedule changes the run: without it the weights differ
    const = mlp((2, 16, 3), activation=act).double()
    const.load_state_dict(init)
    fit(const, (X, y), epochs=5, **opts)
    assert not torch.equal(const[1].weight, ref[1].weight)


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(lr_decay_epochs=(0,)), "lr_decay_epochs must be positive"),
        (dict(lr_decay_epochs=(2.5,)), "lr_decay_epochs must be positive"),
        (dict(lr_decay=0.0), r"lr_decay must be a factor in \(0, 1\]"),
        (dict(lr_decay=2.0), r"lr_decay must be a factor in \(0, 1\]"),
        (dict(weight_decay=-1e-4), "weight_decay must be a non-negative number"),
        (dict(batch_size=0), "batch_size must be a positive int"),
        (dict(lr=-0.1), "lr must be positive"),
    ],
)
@pytest.mark.parametrize("method", ["backprop-adam", "backprop-sgd", "ftprop-softhinge"])
def test_trainer_option_errors(options, match, method):
    X, y = _blobs()
    act = "sign" if method.startswith("ftprop") else "relu"
    with pytest.raises(ValueError, match=match):
        fit(
            mlp((2, 8, 3), activation=act).double(),
            (X, y),
            method=method,
            epochs=1,
            progress=False,
            **options,
        )


def test_checkpoint_from_another_method_is_refused(tmp_path):
    X, y = _blobs()
    ck = tmp_path / "run.pt"
    fit(mlp((2, 8, 3)).double(), (X, y), method="backprop-adam", epochs=1, progress=False, checkpoint=ck)
    with pytest.raises(ValueError, match="written by method 'backprop-adam'"):
        fit(mlp((2, 8, 3)).double(), (X, y), method="backprop-sgd", epochs=2, progress=False, checkpoint=ck)


def test_data_errors():
    X, y = _blobs()
    model = mlp((2, 8, 3)).double()
    bad = X.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        fit(model, (bad, y), epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"do not fit the model"):
        fit(model, (torch.randn(10, 5).double(), y[:10]), epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
        fit(model, (X, y + 5), epochs=1, progress=False)
    with pytest.raises(ValueError, match="has 120 samples but Y has 10"):
        fit(model, (X, y[:10]), epochs=1, progress=False)
    with pytest.raises(ValueError, match="unknown method 'magic'"):
        fit(model, (X, y), method="magic", epochs=1, progress=False)
    with pytest.raises(ValueError, match="loss must be 'mse' or 'ce'"):
        fit(model, (X, y), loss="hinge", epochs=1, progress=False)
    with pytest.raises(TypeError, match="must be a pair"):
        fit(model, "data", epochs=1, progress=False)


def test_device_resolution():
    assert resolve_device(None).type == "cpu"
    with pytest.raises(ValueError, match="not a valid torch device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_cli_help_version_and_unknown_command(capsys):
    assert cli.main([]) == 0
    assert "train-classifier" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert "liftinv 0.1.0" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        cli.main(["fly"])
    assert exc.value.code == 1  # bad arguments exit with status 1, as every other failure


def test_every_registered_method_resolves_without_prior_import():
    """Each name in METHOD_MODULES is registered by the module it points to (lazy import through fit)."""
    from liftinv.training import METHOD_MODULES, get_trainer

    for name in METHOD_MODULES:
        assert hasattr(get_trainer(name), "run_epoch"), name


class _RecordingBar:
    """A stand-in for tqdm that records, per bar, the steps counted since its last ``reset``."""

    bars: list[_RecordingBar] = []

    def __init__(self, iterable=None, *, total=None, desc=None, unit="it", disable=False, **_):
        self.iterable, self.total, self.desc, self.unit, self.disable = iterable, total, desc, unit, disable
        self.n, self.epochs = 0, []  # epochs: (description, unit, total, steps counted) per reset
        _RecordingBar.bars.append(self)

    def __iter__(self):
        return iter(self.iterable)

    def set_description(self, desc, refresh=True):
        self.desc = desc

    def reset(self, total=None):
        self.total, self.n = total, 0
        self.epochs.append([self.desc, self.unit, total, 0])

    def update(self, n=1):
        self.n += n
        self.epochs[-1][3] += n

    def set_postfix(self, *args, **kwargs):
        pass

    def close(self):
        pass


@pytest.mark.parametrize(
    ("method", "options", "unit", "steps"),
    [
        ("backprop-adam", {"batch_size": 32}, "batch", 4),  # 120 samples: 4 mini-batches
        ("bregman-isgm", {"batch_size": 50}, "batch", 3),
        ("bregman-bcd", {"batch_size": 40}, "shard", 3),  # the BCD shard loop
    ],
)
def test_progress_counts_the_steps_of_every_epoch(monkeypatch, method, options, unit, steps):
    import tqdm.auto

    monkeypatch.setattr(tqdm.auto, "tqdm", _RecordingBar)
    monkeypatch.setattr(_RecordingBar, "bars", [])
    X, y = _blobs()
    torch.manual_seed(0)
    fit(mlp((2, 8, 3)).double(), (X, y), method=method, epochs=2, progress=True, **options)
    epochs_bar, steps_bar = _RecordingBar.bars
    assert epochs_bar.iterable is not None and steps_bar.iterable is None
    counted = [(d, u, t, n) for d, u, t, n in steps_bar.epochs if t is not None]  # the trainer's own reset
    assert counted == [(f"epoch {e}", unit, steps, steps) for e in (1, 2)]


def test_exact_ftprop_counts_its_layer_steps(monkeypatch):
    import tqdm.auto

    from liftinv.models import Sign

    monkeypatch.setattr(tqdm.auto, "tqdm", _RecordingBar)
    monkeypatch.setattr(_RecordingBar, "bars", [])
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(2, 4), Sign(), torch.nn.Linear(4, 4), Sign(), torch.nn.Linear(4, 3)
    )
    X, y = _blobs(30)
    fit(net, (X.float(), y), method="ftprop-exact", epochs=1, progress=True)
    counted = [e for e in _RecordingBar.bars[1].epochs if e[2] is not None]
    assert counted == [["epoch 1", "layer step", 5, 5]]  # 2 target searches, 2 hidden fits, the output fit


def test_progress_moves_within_an_epoch_on_stderr(monkeypatch, capsys):
    import tqdm.auto

    class EveryUpdateDrawn(tqdm.auto.tqdm):  # tiny epochs take milliseconds: draw every update
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "mininterval": 0, "miniters": 1})

    monkeypatch.setattr(tqdm.auto, "tqdm", EveryUpdateDrawn)
    X, y = _blobs()
    torch.manual_seed(0)
    fit(mlp((2, 8, 3)).double(), (X, y), method="backprop-adam", epochs=2, batch_size=16, progress=True)
    err = capsys.readouterr().err
    # 120 samples in mini-batches of 16: 8 steps per epoch, each drawn as it is done
    for epoch in (1, 2):
        drawn = {
            int(found.group(1))
            for line in re.split(r"[\r\n]", err)
            if (found := re.search(rf"epoch {epoch}: .*?(\d+)/8 \[.*batch/s", line))
        }
        assert drawn == set(range(9)), err[-2000:]  # 0 when the epoch starts
    assert "epoch 1: " in err and "batch" in err
    fit(mlp((2, 8, 3)).double(), (X, y), method="backprop-adam", epochs=2, batch_size=16, progress=False)
    assert capsys.readouterr().err == ""
