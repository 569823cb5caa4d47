"""``liftinv reconstruct``: in-process runs, output files, one-line errors and the ``--model`` hook."""

from __future__ import annotations

import json
import re

import pytest
import torch

from liftinv.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _run(tmp_path, *extra: str) -> tuple[int, str]:
    out = tmp_path / "result.png"
    argv = [
        "reconstruct",
        "--image",
        "shepp_logan",
        "--size",
        "32",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]
    return main(argv), str(out)


@pytest.mark.parametrize(
    "operator, method",
    [("blur", "tv"), ("tomography", "tv"), ("inpainting", "tv"), ("denoising", "tikhonov"), ("blur", "pinv")],
)
def test_reconstruct_writes_figure_and_metrics(tmp_path, capsys, operator, method):
    metrics = tmp_path / "metrics.json"
    code, out = _run(
        tmp_path,
        "--operator",
        operator,
        "--method",
        method,
        "--noise",
        "0.01",
        "--seed",
        "0",
        "--max-iter",
        "60",
        "--json",
        str(metrics),
    )
    assert code == 0
    with open(out, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    printed = capsys.readouterr().out
    assert "PSNR:" in printed and "SSIM:" in printed and f"wrote {out}" in printed
    record = json.loads(metrics.read_text())
    assert record["operator"]["name"] == operator and record["method"] == method
    assert f"{record['psnr']:.2f} dB" in printed
    assert (method == "pinv" or 10 < record["psnr"] < 60) and 0 < record["ssim"] <= 1


def test_tv_is_better_than_pinv_through_the_cli(tmp_path):
    scores = {}
    for method in ("pinv", "tv"):
        metrics = tmp_path / f"{method}.json"
        code, _ = _run(tmp_path, "--operator", "inpainting", "--method", method, "--json", str(metrics))
        assert code == 0
        scores[method] = json.loads(metrics.read_text())["psnr"]
    assert scores["tv"] > scores["pinv"] + 1


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("liftinv reconstruct: error: ")
    return lines[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--operator", "mri"],
            "--operator: expected one of blur, tomography, inpainting, denoising, got 'mri'",
        ),
        (["--method", "admm"], "--method: expected one of pinv, tikhonov, tv, got 'admm'"),
        (["--noise", "-0.1"], "--noise: expected a finite standard deviation >= 0, got -0.1"),
        (["--size", "2"], "--size: expected an image side >= 3 pixels, got 2"),
        (["--operator", "blur", "--angles", "10"], "--angles only applies to --operator tomography"),
        (
            ["--operator", "tomography", "--angles", "0"],
            "--angles: expected a positive number of angles, got 0",
        ),
        (
            ["--image", "no_such_image.png"],
            "'no_such_image.png' is neither an existing image file nor a bundled",
        ),
        (["--model", "missing.pt"], "--model: no such file: missing.pt"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, args, message):
    code, _ = _run(tmp_path, *args)
    assert code == 1
    assert message in _one_error_line(capsys)


def test_malformed_image_file_is_one_line(tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    code, _ = _run(tmp_path, "--image", str(broken))
    assert code == 1
    assert f"cannot read {broken} as an image" in _one_error_line(capsys)


def test_argparse_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        _run(tmp_path, "--size", "big")
    assert info.value.code == 1
    assert "argument --size: invalid int value: 'big'" in _one_error_line(capsys)


def test_missing_output_folder(tmp_path, capsys):
    code = main(["reconstruct", "--size", "16", "--out", str(tmp_path / "nope" / "r.png"), "--no-progress"])
    assert code == 1
    assert "--out: the folder" in _one_error_line(capsys)


def test_model_hook_calls_load_model(tmp_path, capsys, monkeypatch):
    from liftinv.operators import make_operator

    model_file = tmp_path / "model.pt"
    model_file.write_bytes(b"weights")
    operator = make_operator("blur", 32)
    loaded = []

    class PinvModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.operator = operator

        def forward(self, y):
            return self.operator.A_dagger(y)

    def load_model(path):
        loaded.append(path)
        return PinvModel()

    monkeypatch.setattr("liftinv.unrolled.load_model", load_model)
    code, _ = _run(tmp_path, "--operator", "blur", "--model", str(model_file))
    assert code == 0 and loaded == [str(model_file)]
    assert "method:     model model.pt" in capsys.readouterr().out
    code, _ = _run(tmp_path, "--operator", "tomography", "--model", str(model_file))
    assert code == 1
    assert "the model was trained for blur" in _one_error_line(capsys)


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """Untrained (fast) convex-prior networks saved as ``liftinv train`` saves them: a denoiser of the
    denoising task (training noise 0.1) and a deblurrer (sigma 2, noise 0.01)."""
    from liftinv.operators import make_operator

    from liftinv.models import build_model
    from liftinv.unrolled import get_task, save_model

    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    for task, operator in (
        ("denoise", make_operator("denoising", 16)),
        ("deblur", make_operator("blur", 16)),
    ):
        save_model(
            folder / f"{task}.pt", build_model("proxgrad", operator, iterations=1), task=get_task(task)
        )
    return folder


def _lines(capsys) -> tuple[str, list[str]]:
    captured = capsys.readouterr()
    return captured.out, [line for line in captured.err.splitlines() if line.strip()]


def test_a_noise_level_far_from_the_training_noise_is_refused(tmp_path, saved_models, capsys):
    model = str(saved_models / "denoise.pt")
    code, out = _run(tmp_path, "--model", model, "--noise", "0.5")
    assert code == 1 and not (tmp_path / "result.png").exists()
    message = _one_error_line(capsys)
    assert (
        "--noise: the data has noise 0.5, but the model was trained for noise 0.1 (it applies from 0.05 to 0.2: "
        "a factor 2)" in message
    )
    assert "--force" in message
    assert _run(tmp_path, "--model", model, "--noise", "0.03")[0] == 1  # cleaner data: over-smoothed
    assert "noise 0.03, but the model was trained for noise 0.1" in _one_error_line(capsys)
    assert _run(tmp_path, "--model", model, "--noise", "0.15")[0] == 0  # within the factor
    capsys.readouterr()
    code, out = _run(tmp_path, "--model", model, "--noise", "0.5", "--force")
    printed, errors = _lines(capsys)
    assert code == 0 and (tmp_path / "result.png").exists() and "noise 0.5" in printed
    assert errors == [
        "liftinv reconstruct: warning: --force: --noise: the data has noise 0.5, but the model was trained for "
        "noise 0.1 (it applies from 0.05 to 0.2: a factor 2); applying it anyway"
    ]


def test_the_estimated_noise_of_measurements_is_checked(tmp_path, saved_models, capsys):
    model = str(saved_models / "denoise.pt")
    for noise in ("0.01", "0.1"):
        argv = ["simulate", "--operator", "denoising", "--image", "camera", "--size", "32", "--noise", noise]
        assert main([*argv, "--out", str(tmp_path / noise)]) == 0
    capsys.readouterr()

    def reconstruct(noise: str, *extra: str) -> int:
        folder = tmp_path / noise
        out = tmp_path / f"x{noise}{len(extra)}.npy"
        argv = ["reconstruct", "--measurements", str(folder / "measurements.npy"), "--model", model]
        return main([*argv, "--operator-config", str(folder / "operator.json"), "--out", str(out), *extra])

    assert reconstruct("0.1") == 0  # the estimate (about 0.1) is within reach
    capsys.readouterr()
    assert reconstruct("0.01") == 1
    message = _one_error_line(capsys)
    # the estimate errs upwards (camera's edges at 32x32: about 0.02), still below 0.1 / 2
    assert re.search(r"--measurements has an estimated noise 0\.0[1-4]\d*, but", message), message
    assert (
        "but the model was trained for noise 0.1 (it applies from 0.05 to 0.4: a factor 2 below, 4 above)"
        in (message)
    )
    assert "--noise" in message and "--force" in message
    assert not list(tmp_path.glob("x0.01*"))
    assert reconstruct("0.01", "--noise", "0.1") == 0  # a known level is taken as given
    capsys.readouterr()
    assert reconstruct("0.01", "--force") == 0
    assert _lines(capsys)[1][0].startswith(
        "liftinv reconstruct: warning: --force: --measurements has an estimated"
    )


def test_another_operator_parameter_is_refused_unless_forced(tmp_path, saved_models, capsys):
    model = str(saved_models / "deblur.pt")
    assert _run(tmp_path, "--model", model, "--sigma", "1.0")[0] == 1
    message = _one_error_line(capsys)
    assert "--sigma: the model was trained for blur with sigma=2.0, but --sigma 1.0 was asked for" in message
    assert "--force" in message
    code, _ = _run(tmp_path, "--model", model, "--sigma", "1.0", "--force")
    printed, errors = _lines(capsys)
    assert code == 0 and "sigma=1.0" in printed
    assert len(errors) == 1 and errors[0].startswith("liftinv reconstruct: warning: --force: ")
    assert "sigma: model 2.0 vs requested 1.0" in errors[0]
    # an operator config of another blur: refused with both values, applied with --force
    assert (
        main(
            ["simulate", "--operator", "blur", "--sigma", "1.0", "--size", "16", "--out", str(tmp_path / "s")]
        )
        == 0
    )
    capsys.readouterr()
    argv = ["reconstruct", "--measurements", str(tmp_path / "s" / "measurements.npy"), "--model", model]
    argv += ["--operator-config", str(tmp_path / "s" / "operator.json"), "--out", str(tmp_path / "x.npy")]
    assert main(argv) == 1
    message = _one_error_line(capsys)
    assert "(sigma: model 2.0 vs requested 1.0)" in message and "--force" in message
    assert main([*argv, "--force"]) == 0 and (tmp_path / "x.npy").exists()
    assert "sigma: model 2.0 vs requested 1.0" in _lines(capsys)[1][0]
    # --force means nothing without a model
    assert _run(tmp_path, "--force")[0] == 1
    assert "--force: only with --model" in _one_error_line(capsys)
