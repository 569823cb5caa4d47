"""Trusted files only (issue 14): weights-only loading everywhere, crafted files fail cleanly, atomic writes."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from liftinv.cli import main
from liftinv.files import UnsafeFileError, load_torch_file, save_text_file, save_torch_file


class _Payload:
    """A pickle that creates a marker file when unpickled (what a crafted checkpoint would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def crafted(tmp_path):
    marker = tmp_path / "PAYLOAD_RAN"
    path = tmp_path / "crafted.pt"
    torch.save({"method": "backprop-adam", "epoch": 1, "model": _Payload(marker), "trainer": {}}, path)
    return path, marker


def test_load_torch_file_refuses_code_in_one_line(crafted):
    path, marker = crafted
    with pytest.raises(UnsafeFileError) as info:
        load_torch_file(path, "checkpoint")
    message = str(info.value)
    assert not marker.exists()
    assert len(message.splitlines()) == 1 and "needs code to load" in message and str(path) in message
    assert "weights_only=False" not in message


@pytest.mark.parametrize(
    "content, reason", [(b"", "the file is empty"), (b"not a torch file", "not a torch file of weights")]
)
def test_load_torch_file_names_what_is_wrong(tmp_path, content, reason):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(UnsafeFileError, match=reason) as info:
        load_torch_file(path, "--model")
    assert len(str(info.value).splitlines()) == 1 and str(info.value).startswith("--model ")


def test_fit_and_train_classifier_refuse_a_crafted_checkpoint(crafted, tmp_path, capsys):
    from liftinv.models import mlp
    from liftinv.training import fit

    path, marker = crafted
    X, Y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    with pytest.raises(UnsafeFileError):
        fit(mlp([4, 3, 2]), (X, Y), epochs=1, checkpoint=path, progress=False)
    out = tmp_path / "run"
    out.mkdir()
    os.replace(path, out / "checkpoint.pt")
    rc = main(["train-classifier", "--out", str(out), "--epochs", "1", "--method", "backprop-adam"])
    err = capsys.readouterr().err
    assert rc != 0 and "needs code to load" in err and len(err.strip().splitlines()) == 1, err
    assert not marker.exists()


def test_invert_refuses_a_crafted_model(crafted, capsys):
    path, marker = crafted
    rc = main(["invert", "--model", str(path), "--iters", "2", "--out", "", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "needs code to load" in err and len(err.strip().splitlines()) == 1, err
    assert not marker.exists()


def test_every_fit_checkpoint_is_weights_only(tmp_path):
    """Checkpoints of back-propagation, lifted (BCD, ISGM, MAC) and FTPROP trainers load with weights_only."""
    from liftinv.models import mlp, mlp_bn
    from liftinv.training import fit, load_checkpoint

    X, Y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    for method in ("backprop-adam", "bregman-bcd", "bregman-isgm", "mac-bcd", "ftprop-softhinge"):
        net = mlp_bn([6, 5, 3], activation="sign") if method.startswith("ftprop") else mlp([6, 5, 3])
        path = tmp_path / f"{method}.pt"
        fit(net, (X, Y), method=method, epochs=1, checkpoint=path, progress=False)
        assert load_checkpoint(path)["epoch"] == 1


def test_autoencoder_cache_never_overwrites_another_file(tmp_path):
    from liftinv.inversion.recipes import autoencoder

    precious = tmp_path / "classifier.pt"
    save_torch_file({"state_dict": {"w": torch.ones(3)}, "config": {"arch": "mlp"}}, precious)
    before = precious.read_bytes()
    with pytest.raises(ValueError, match="left untouched"):
        autoencoder(epochs=1, n_train=64, path=precious)
    assert precious.read_bytes() == before


def test_atomic_writes_keep_the_old_file_on_failure(tmp_path):
    path = tmp_path / "m.pt"
    save_torch_file({"w": torch.zeros(2)}, path)
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        save_torch_file({"w": lambda: None}, path)  # lambdas cannot be pickled: fails mid-write
    assert torch.equal(load_torch_file(path)["w"], torch.zeros(2))
    text = tmp_path / "h.json"
    save_text_file("{}", text)
    assert text.read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.json", "m.pt"]  # no temporary files left


def test_invert_accepts_torchscript_for_gradient_inversion_only(tmp_path, capsys):
    from torch import nn

    net = nn.Sequential(nn.Flatten(), nn.Linear(256, 48), nn.ReLU(), nn.Linear(48, 32))
    path = tmp_path / "net.ts"
    torch.jit.save(torch.jit.script(net), path)
    common = ["invert", "--model", str(path), "--input-shape", "1,16,16", "--iters", "5", "--out", ""]
    assert main([*common, "--method", "gradient", "--no-progress"]) == 0
    assert "PSNR" in capsys.readouterr().out
    assert main([*common, "--method", "lifted", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "TorchScript" in err and "--method gradient" in err and len(err.strip().splitlines()) == 1


def test_autoencoder_cache_folder_is_keyed_by_every_setting(tmp_path):
    from liftinv.inversion.recipes import autoencoder

    a = autoencoder(seed=0, code=4, channels=2, epochs=1, n_train=64, path=tmp_path)
    b = autoencoder(seed=1, code=4, channels=2, epochs=1, n_train=64, path=tmp_path)
    files = sorted(tmp_path.glob("autoencoder-*.pt"))
    assert len(files) == 2  # one file per setting: seed 1 did not replace seed 0
    again = autoencoder(seed=0, code=4, channels=2, epochs=1, n_train=64, path=tmp_path)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), again.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_write_removes_the_stale_temporaries_of_a_killed_writer(tmp_path):
    from liftinv.files import remove_stale_temporaries, save_text_file

    target = tmp_path / "history.json"
    stale = tmp_path / ".history.json.k1ll3d.tmp"  # what kill -9 during save_bytes_file leaves
    fresh = tmp_path / ".history.json.writing.tmp"  # a concurrent writer's, still being written
    other = tmp_path / ".model.pt.k1ll3d.tmp"  # another file's: not this write's business
    for f in (stale, fresh, other):
        f.write_bytes(b"partial")
    os.utime(stale, (0, 0))
    os.utime(other, (0, 0))
    save_text_file("{}", target)
    assert target.read_text() == "{}"
    assert not stale.exists() and fresh.exists() and other.exists()
    assert remove_stale_temporaries(tmp_path / "model.pt") == [other]
    assert not other.exists() and fresh.exists()
