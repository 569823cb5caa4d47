"""``liftinv reconstruct``: in-process runs, output files, one-line errors and the ``--model`` hook."""

from __future__ import annotations

import json

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
