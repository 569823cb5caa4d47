"""``liftinv train-classifier``: outputs, resume, pass-through of every method family, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from liftinv.cli import main


def _cli(capsys, *args):
    rc = main(["train-classifier", "--threads", "1", "--no-progress", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def _accuracy(out: str) -> float:
    line = next(line for line in out.splitlines() if line.startswith("test accuracy:"))
    return float(line.split()[2].rstrip("%"))


def test_lifted_run_writes_outputs_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    rc, stdout, err = _cli(capsys, "--method", "bregman-bcd", "--epochs", 3, "--out", out)
    assert rc == 0, err
    assert _accuracy(stdout) > 50
    for name in ("checkpoint.pt", "model.pt", "config.json", "history.json", "loss.png"):
        assert (out / name).is_file(), name
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    saved = torch.load(out / "model.pt", weights_only=False)
    cfg = saved["config"]
    assert cfg["method"] == "bregman-bcd" and cfg["input_shape"] == [1, 8, 8] and cfg["n_classes"] == 10
    from liftinv.commands.train_classifier import build_model

    model = build_model(
        cfg["arch"], cfg["activation"], cfg["hidden"], tuple(cfg["input_shape"]), cfg["n_classes"]
    )
    model.load_state_dict(saved["state_dict"])
    first = json.loads((out / "history.json").read_text())["records"]
    assert [r["epoch"] for r in first] == [1, 2, 3]

    # re-running with more epochs resumes from the checkpoint (3 -> 5), keeping the first records
    rc, stdout, err = _cli(capsys, "--method", "bregman-bcd", "--epochs", 5, "--out", out)
    assert rc == 0, err
    records = json.loads((out / "history.json").read_text())["records"]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5]
    assert records[:3] == first

    # same as an uninterrupted 5-epoch run
    rc, _, err = _cli(capsys, "--method", "bregman-bcd", "--epochs", 5, "--out", tmp_path / "straight")
    assert rc == 0, err
    a = torch.load(out / "model.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "straight" / "model.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "args",
    [
        ("--method", "backprop-adam", "--epochs", 2),
        ("--method", "bregman-isgm", "--epochs", 1, "--option", "inner=2", "--option", "tau=5.0"),
        ("--method", "bregman-accel", "--arch", "conv", "--epochs", 1, "--hidden", "4,8"),
        ("--method", "ftprop-softhinge", "--activation", "sign", "--epochs", 1),
        ("--method", "ste", "--activation", "qrelu2", "--epochs", 1),
        ("--method", "mac-bcd", "--epochs", 1, "--loss", "ce", "--lambdas", "0.5,2"),
        # the paper's recipe: weight decay and a step schedule, through --option
        (
            *("--method", "sste", "--activation", "sign", "--epochs", 2, "--loss", "ce"),
            *("--option", "weight_decay=5e-4", "--option", "lr_decay_epochs=[1]"),
        ),
    ],
    ids=[
        "adam",
        "isgm-options",
        "accel-conv",
        "ftprop-sign",
        "ste-qrelu2",
        "mac-ce-lambdas",
        "sste-schedule",
    ],
)
def test_method_families(tmp_path, capsys, args):
    rc, stdout, err = _cli(capsys, *args, "--out", tmp_path / "run")
    assert rc == 0, err
    assert 0 <= _accuracy(stdout) <= 100
    assert (tmp_path / "run" / "model.pt").is_file()


def _write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_from_idx_files(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 50, size=(n, 28, 28))
        images[np.arange(n), 2 + 2 * labels, 5:20] = 255  # a learnable stroke per class
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", labels)
    rc, stdout, err = _cli(
        capsys,
        "--method",
        "bregman-bcd",
        "--data",
        f"mnist:{tmp_path}",
        "--epochs",
        2,
        "--hidden",
        "16",
        "--out",
        tmp_path / "run",
    )
    assert rc == 0, err
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["input_shape"] == [1, 28, 28]


@pytest.mark.parametrize(
    "args,match",
    [
        (("--method", "nope"), "--method must be one of"),
        (("--method", "bregman-bcd", "--activation", "sign"), "not admissible for lifted training.*FTPROP"),
        (("--method", "bregman-bcd", "--activation", "gelu"), "unknown activation 'gelu'"),
        (("--method", "fenchel-bcd", "--activation", "tanh"), "Fenchel.*ReLU"),
        (("--method", "bregman-bcd", "--lambdas", "-1"), r"lambdas must be a float >= 0 or a sequence of 2"),
        (("--method", "bregman-bcd", "--lambdas", "1,1,1"), r"sequence of 2 floats >= 0 \(one per penalised"),
        (("--method", "bregman-bcd", "--lambdas", "a,b"), "--lambdas must be a float"),
        (("--data", "cifar"), "--data must be 'digits' or 'mnist:DIR'"),
        (("--data", "mnist:/nonexistent/mnist"), "no such directory"),
        (("--arch", "transformer"), "--arch must be 'mlp' or 'conv'"),
        (("--loss", "hinge"), "--loss must be 'mse' or 'ce'"),
        (("--epochs", "-2"), "--epochs must be >= 0"),
        (("--option", "weight_steps"), "--option must be KEY=VALUE"),
        (("--method", "bregman-bcd", "--option", "bogus=1"), "unexpected keyword argument 'bogus'"),
        (("--method", "bregman-bcd", "--option", "weight_steps=0"), "weight_steps must be an int >= 1"),
        (("--hidden", "12,x"), "--hidden must be comma-separated positive ints"),
        (("--method", "ftprop-softhinge", "--activation", "relu"), "no hard-threshold units"),
        (
            ("--activation", "sign", "--method", "sste", "--option", "lr_decay=3"),
            r"lr_decay must be a factor",
        ),
    ],
)
def test_bad_input_is_one_line_error(tmp_path, capsys, args, match):
    import re

    extra = () if "--epochs" in args else ("--epochs", 1)
    rc, stdout, err = _cli(capsys, *args, *extra, "--out", tmp_path / "run")
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("liftinv train-classifier: error: ")
    assert re.search(match, lines[0]), lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ("--method", "nope"),
        ("--method", "bregman-bcd", "--lambdas", "a,b"),
        ("--data", "cifar"),
        ("--activation", "gelu"),
        ("--hidden", "12,x"),
        ("--loss", "hinge"),
        ("--option", "weight_steps"),
    ],
)
def test_bad_input_writes_nothing(tmp_path, capsys, args):
    rc, _, err = _cli(capsys, *args, "--epochs", 1, "--out", tmp_path / "run")
    assert rc == 1, err
    assert not (tmp_path / "run").exists()


def test_methods_come_from_the_registry(tmp_path, capsys):
    from liftinv.training.registry import DESCRIPTIONS, methods_for

    with pytest.raises(SystemExit):
        main(["train-classifier", "--help"])
    out = capsys.readouterr().out
    for name in methods_for("classifier"):
        assert f"{name}: {DESCRIPTIONS[name]}" in out
    rc, _, err = _cli(capsys, "--method", "nope", "--epochs", 1, "--out", tmp_path / "run")
    assert rc == 1 and ", ".join(methods_for("classifier")) in err


def test_out_is_required(capsys):
    rc, _, err = _cli(capsys, "--epochs", 1)
    assert rc == 1 and err.strip() == (
        "liftinv train-classifier: error: --out DIR is required (the checkpoint, model, history and loss plot go there)"
    )


def test_cuda_request_without_cuda(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    rc, _, err = _cli(capsys, "--device", "cuda", "--epochs", 1, "--out", tmp_path / "run")
    assert rc == 1 and "CUDA is not available" in err


def test_other_settings_in_the_same_out_are_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert _cli(capsys, "--method", "backprop-sgd", "--epochs", 1, "--out", out)[0] == 0
    rc, _, err = _cli(capsys, "--method", "backprop-sgd", "--epochs", 1, "--seed", 3, "--out", out)
    assert rc == 1 and "different settings (seed" in err
    rc, _, err = _cli(capsys, "--method", "backprop-sgd", "--epochs", 1, "--seed", 3, "--out", out, "--fresh")
    assert rc == 0, err
