"""Tests of ``liftinv invert`` (liftinv/commands/invert.py) through liftinv.cli.main."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from liftinv.cli import main
from liftinv.inversion.recipes import perceptron


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These problems are small: one torch thread is faster, and immune to oversubscription on shared CPUs."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_invert_perceptron_prints_metrics_and_writes_figure(tmp_path, capsys):
    out = tmp_path / "fig.png"
    rc = main(
        [
            "invert",
            "--model",
            "perceptron",
            "--image-size",
            "16",
            "--features",
            "96",
            "--noise",
            "0.02",
            "--method",
            "lifted",
            "--iters",
            "60",
            "--seed",
            "0",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0
    m = re.search(r"PSNR (\d+\.\d+) dB\s+SSIM (\d\.\d+)", text)
    assert m, text
    assert float(m.group(1)) > 10 and 0 < float(m.group(2)) <= 1
    assert out.is_file() and out.stat().st_size > 1000


def test_invert_saved_module_path(tmp_path, capsys):
    net = perceptron(16, 96, seed=2)
    path = tmp_path / "net.pt"
    torch.save(net, path)
    rc = main(
        [
            "invert",
            "--model",
            str(path),
            "--method",
            "gradient",
            "--iters",
            "20",
            "--out",
            "",
            "--alpha",
            "0.5",
            "--no-progress",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0 and "PSNR" in text and "gradient" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "/nonexistent/net.pt"], "no such file"),
        (["--method", "newton"], "--method must be lifted or gradient"),
        (["--noise", "-1"], "--noise must be a number >= 0"),
        (["--alpha", "-0.1"], "--alpha must be >= 0"),
        (["--device", "cuda:7"], "cuda"),
    ],
)
def test_invert_errors_are_one_line(argv, message, capsys):
    if argv[:2] == ["--device", "cuda:7"] and torch.cuda.device_count() > 7:
        pytest.skip("a machine with 8 GPUs accepts cuda:7")
    rc = main(
        [
            "invert",
            "--image-size",
            "16",
            "--features",
            "32",
            "--iters",
            "2",
            "--out",
            "",
            "--no-progress",
            *argv,
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert len(err.splitlines()) == 1 and err.startswith("liftinv invert: error:")
    assert message.lower() in err.lower()


def test_invert_rejects_unliftable_and_state_dict_files(tmp_path, capsys):
    gelu = tmp_path / "gelu.pt"
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(256, 32), nn.GELU()), gelu)
    rc = main(["invert", "--model", str(gelu), "--iters", "2", "--out", "", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "GELU" in err and len(err.strip().splitlines()) == 1
    sd = tmp_path / "sd.pt"
    torch.save({"model": perceptron(16, 8).state_dict(), "epoch": 3}, sd)
    rc = main(["invert", "--model", str(sd), "--iters", "2", "--out", "", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "state_dict" in err
