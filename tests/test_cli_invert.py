"""Tests of ``liftinv invert`` (liftinv/commands/invert.py) through liftinv.cli.main."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from liftinv.cli import main
from liftinv.inversion.recipes import perceptron


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


def test_invert_train_classifier_model_file(tmp_path, capsys):
    """``model.pt`` as ``liftinv train-classifier`` writes it (weights + plain configuration) is rebuilt and
    inverted (its input shape comes from the configuration)."""
    from liftinv.commands.train_classifier import build_model

    torch.manual_seed(2)
    net = build_model("mlp", "relu", "96", (1, 16, 16), 10)
    config = {
        "arch": "mlp",
        "activation": "relu",
        "hidden": "96",
        "input_shape": [1, 16, 16],
        "n_classes": 10,
    }
    path = tmp_path / "model.pt"
    torch.save({"state_dict": net.state_dict(), "config": config}, path)
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
        (["--model", "unrolled", "--image", "7"], "--image must be in [0, 1]"),
        (["--model", "unrolled", "--image", "two"], "--image must be an index"),
        (["--images", "/tmp"], "--images is the training folder of natural-encoder / autoencoder128"),
        (["--model", "natural-encoder", "--images", "/no/such/folder"], "no such folder"),
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


def test_invert_refuses_pickled_modules_and_state_dict_files(tmp_path, capsys):
    """A whole pickled nn.Module needs code to load: refused in one line, without torch's advice to unpickle
    (the unliftable-layer error of the Python API is tested in test_inversion.py)."""
    gelu = tmp_path / "gelu.pt"
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(256, 32), nn.GELU()), gelu)
    rc = main(["invert", "--model", str(gelu), "--iters", "2", "--out", "", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and len(err.strip().splitlines()) == 1, err
    assert "needs code to load" in err and "weights_only=False" not in err
    sd = tmp_path / "sd.pt"
    torch.save({"model": perceptron(16, 8).state_dict(), "epoch": 3}, sd)
    rc = main(["invert", "--model", str(sd), "--iters", "2", "--out", "", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "state_dict" in err


def test_cli_defaults_are_the_api_defaults():
    """``liftinv invert`` states its defaults without importing torch; they must stay the API's."""
    import inspect

    from liftinv.cli import build_parser
    from liftinv.inversion import invert

    parser = build_parser(["invert"])
    sub = next(a for a in parser._actions if a.dest == "command").choices["invert"]
    defaults = {a.dest: a.default for a in sub._actions}
    api = inspect.signature(invert).parameters
    assert defaults["coupling"] == api["coupling"].default
    assert defaults["lambdas"] == api["lambdas"].default
    assert defaults["inertia"] == api["inertia"].default
    assert defaults["iters"] == api["max_iter"].default


def test_invert_recipe_models_use_the_recipe_inputs_and_alpha(capsys):
    """The issue-15 recipes run from the command line: ``unrolled`` (invert an unrolled deblurring network to
    recover its blurred input) with the recipe's test input and TV weight; a quality floor on a fixed seed
    (measured 39.09 dB)."""
    rc = main(
        ["invert", "--model", "unrolled", "--iters", "60", "--out", "", "--no-progress", "--threads", "1"]
    )
    text = capsys.readouterr().out
    assert rc == 0
    assert "model unrolled: lifted" in text and "alpha 0.001" in text
    m = re.search(r"PSNR (\d+\.\d+) dB", text)
    assert m and float(m.group(1)) > 35, text


def test_invert_gradient_stuck_at_a_dead_start_says_so(capsys):
    """Soft thresholds are flat around 0: gradient inversion from zeros cannot move. The CLI prints one warning
    line instead of reporting the start as an answer silently; the API warns and records it."""
    import warnings

    from liftinv.inversion import invert, recipes

    rc = main(
        [
            "invert",
            "--model",
            "unrolled",
            "--method",
            "gradient",
            "--iters",
            "20",
            "--out",
            "",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 0 and err.startswith("liftinv invert: warning: gradient inversion (adam) did not move")
    assert len(err.splitlines()) == 1
    prob = recipes.get_recipe("unrolled", seed=0)
    f = prob.model(prob.inputs[:1])
    kw = dict(regulariser="tv", alpha=1e-3, method="gradient", max_iter=30, input_shape=prob.input_shape)
    with pytest.warns(RuntimeWarning, match="did not move from its initial u"):
        res = invert(prob.model, f, progress=False, **kw)
    assert res.info["stuck_at_start"] and float(res.residual[0]) > 0.99
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # from a live start it moves, without the warning
        res = invert(prob.model, f, progress=False, init=torch.full((1, 1, 16, 16), 0.5), **kw)
    assert "stuck_at_start" not in res.info and float(res.residual[0]) < 0.5
