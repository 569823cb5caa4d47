"""Measurements from files (issue 14): file formats, operator configs, noise and alpha without ground truth,
``liftinv simulate`` and ``liftinv reconstruct --measurements``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from liftinv.datasets import (
    discrepancy_alpha,
    estimate_noise,
    load_image,
    load_measurements,
    load_operator,
    save_measurements,
    save_operator_config,
)
from liftinv.operators import GaussianNoise, make_operator, reconstruct

from liftinv.cli import main
from liftinv.metrics import psnr

# The one-torch-thread fixture of tests/conftest.py applies (small tensors on a shared 2-core machine).


def _error(capsys, command: str) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"liftinv {command}: error: ")
    return lines[0]


def _simulate(folder, operator: str, *extra: str) -> dict[str, str]:
    args = ["simulate", "--operator", operator, "--image", "camera", "--size", "32", "--seed", "3"]
    assert main([*args, "--noise", "0.03", "--out", str(folder), *extra]) == 0
    return {
        name: str(folder / f"{name}.{ext}")
        for name, ext in (("measurements", "npy"), ("operator", "json"), ("truth", "npy"))
    }


# ---------------------------------------------------------------------------------------- file formats
def test_array_files_round_trip(tmp_path):
    y = torch.randn(2, 3, 5, 7)
    for name in ("y.npy", "y.npz", "y.tif", "y.TIFF"):
        assert torch.equal(load_measurements(save_measurements(tmp_path / name, y)), y)
    # fewer dimensions become a batch of one, with one channel for a 2-D array
    assert load_measurements(save_measurements(tmp_path / "a.npy", y[0, 0])).shape == (1, 1, 5, 7)
    assert load_measurements(save_measurements(tmp_path / "b.npy", y[0])).shape == (1, 3, 5, 7)
    # integers and float64 come back as float32; an .npz whose only array is not named y is read too
    np.savez(tmp_path / "c.npz", sinogram=np.arange(12, dtype=np.int64).reshape(3, 4))
    loaded = load_measurements(tmp_path / "c.npz")
    assert loaded.dtype == torch.float32 and loaded[0, 0, 2, 3] == 11
    # the write is atomic: no temporary file is left behind
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_png_round_trip_quantises(tmp_path):
    from PIL import Image

    y = torch.rand(1, 1, 6, 9, generator=torch.Generator().manual_seed(0))
    loaded = load_measurements(save_measurements(tmp_path / "y.png", y))
    assert loaded.shape == y.shape and 0 < (loaded - y).abs().max() <= 0.5 / 65535 + 1e-7
    Image.fromarray(np.array([[0, 51, 255]], dtype=np.uint8)).save(tmp_path / "eight.png")
    assert load_measurements(tmp_path / "eight.png").flatten().tolist() == pytest.approx([0.0, 0.2, 1.0])
    with pytest.raises(ValueError, match=r"a PNG holds values in \[0, 1\]"):
        save_measurements(tmp_path / "noisy.png", y - 0.5)
    with pytest.raises(ValueError, match="a PNG holds one grayscale image"):
        save_measurements(tmp_path / "batch.png", torch.rand(2, 1, 4, 4))
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="expected an 8- or 16-bit grayscale PNG"):
        load_measurements(tmp_path / "rgb.png")


def test_folder_loads_a_batch_sorted_by_name(tmp_path):
    images = [torch.full((8, 8), float(v)) for v in (0.1, 0.2, 0.3)]
    save_measurements(tmp_path / "b.npz", images[1])
    save_measurements(tmp_path / "a.npy", images[0][None, None])
    save_measurements(tmp_path / "c.png", images[2])
    (tmp_path / "notes.txt").write_text("not a measurement")
    batch = load_measurements(tmp_path)
    assert batch.shape == (3, 1, 8, 8)
    assert batch[:, 0, 0, 0].tolist() == pytest.approx([0.1, 0.2, 0.3], abs=1e-5)
    save_measurements(tmp_path / "d.npy", torch.zeros(8, 9))
    with pytest.raises(ValueError, match=r"the files differ in shape: a.npy is \[1, 1, 8, 8\], d.npy is"):
        load_measurements(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is a folder without files ending in .npy"):
        load_measurements(tmp_path / "empty")


def test_bad_files_are_one_line_errors(tmp_path):
    (tmp_path / "y.jpg").write_bytes(b"\xff\xd8")
    (tmp_path / "broken.npy").write_bytes(b"not numpy")
    np.savez(tmp_path / "two.npz", a=np.zeros(3), b=np.ones(3))
    np.save(tmp_path / "nan.npy", np.full((4, 4), np.nan))
    cases = [
        ("y.jpg", ValueError, "has the extension '.jpg'; expected .npy, .npz, .tif, .tiff or .png"),
        ("broken.npy", ValueError, "cannot read it as a .npy file"),
        ("two.npz", ValueError, "holds the arrays ['a', 'b']; expected one named 'y'"),
        ("nan.npy", ValueError, "contains non-finite values"),
        ("missing.npy", FileNotFoundError, "does not exist"),
    ]
    for name, kind, message in cases:
        with pytest.raises(kind) as info:
            load_measurements(tmp_path / name, what="--measurements")
        text = str(info.value)
        assert message in text and text.startswith("--measurements ") and "\n" not in text


# ---------------------------------------------------------------------------------------- operator configs
def test_operator_configs_rebuild_the_operator(tmp_path):
    mask = (torch.rand(16, 16, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    operators = [
        make_operator("blur", 16, sigma=1.3, boundary="reflect"),
        make_operator("blur", 16, kernel=[[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]]),
        make_operator("tomography", 16, angles=[0.0, 45.0, 90.0]),
        make_operator("inpainting", 16, mask="blocks", keep_rate=0.6, block_size=4, seed=2),
        make_operator("inpainting", 16, mask=mask),
        make_operator("denoising", (1, 12, 16)),
    ]
    x = torch.rand(2, 1, 16, 16)
    for i, operator in enumerate(operators):
        rebuilt = load_operator(save_operator_config(tmp_path / f"op{i}.json", operator))
        assert rebuilt.describe() == operator.describe()
        if operator.image_size == (1, 16, 16):
            assert torch.equal(rebuilt.A(x), operator.A(x))
    bad = [
        (
            {"name": "mri", "image_size": [1, 8, 8]},
            "unknown operator 'mri'; expected one of blur, tomography,",
        ),
        ({"name": "blur"}, "missing 'image_size'; expected e.g."),
        ({"name": "blur", "image_size": 8, "angles": 3}, "unknown parameter 'angles' of operator blur"),
        ({"name": "blur", "image_size": 8, "boundary": "torus"}, "Blur: boundary must be one of"),
    ]
    for config, message in bad:
        (tmp_path / "bad.json").write_text(json.dumps(config))
        with pytest.raises(ValueError, match=message):
            load_operator(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not a JSON file"):
        load_operator(tmp_path / "bad.json")


# ---------------------------------------------------------------------------- noise and alpha without truth
def test_estimate_noise_per_image():
    """Within 10% on smooth measurements (blur, sinograms); edges of an unblurred image bias it upwards."""
    x = torch.cat([load_image("camera", 48), load_image("shepp_logan", 48)])
    for name, tolerance in (("blur", 0.1), ("tomography", 0.1), ("inpainting", 0.35)):
        operator = make_operator(name, 48)
        estimates = estimate_noise(operator.measure(x, 0.05, seed=0), operator)
        assert estimates.shape == (2,), name
        assert all(0.05 * 0.97 <= s <= 0.05 * (1 + tolerance) for s in estimates.tolist()), (name, estimates)
    # every image its own estimate
    operator = make_operator("blur", 48)
    y = torch.cat([operator.measure(x[:1], 0.02, seed=0), operator.measure(x[:1], 0.08, seed=0)])
    assert estimate_noise(y, operator).tolist() == pytest.approx([0.02, 0.08], rel=0.1)


def test_discrepancy_alpha_is_close_to_the_oracle():
    """Without the truth, alpha within a factor 10 of the best alpha of the grid, PSNR within 1 dB."""
    x = load_image("camera", 32)
    operator = make_operator("blur", 32, sigma=1.5)
    y = operator.measure(x, 0.03, seed=0)
    alphas, record = discrepancy_alpha(y, operator, "tv", max_iter=100)
    grid = record["grid"][0]
    assert abs(record["sigma"][0] - 0.03) < 0.003 and record["met"] == [True]
    assert record["residuals"][0][-1] <= record["target"][0] < min(record["residuals"][0][:-1])
    scores = [
        float(psnr(reconstruct(y, operator, "tv", alpha=a, max_iter=100, progress=False).x.clamp(0, 1), x))
        for a in grid
    ]
    best = int(np.argmax(scores))
    chosen = float(psnr(record["x"].clamp(0, 1), x))
    assert chosen == pytest.approx(scores[grid.index(alphas[0])], abs=1e-4)
    assert grid[best] / 10 <= alphas[0] <= grid[best] * 10
    assert chosen >= scores[best] - 1.0
    # not trivially true: the ends of the grid are more than 1 dB worse than the best weight
    assert scores[0] < scores[best] - 1 and scores[-1] < scores[best] - 1
    # each image of a batch gets its own alpha (here: its own noise level)
    noisier = operator.measure(x, 0.1, seed=1)
    batch_alphas, _ = discrepancy_alpha(torch.cat([y, noisier]), operator, "tv", max_iter=20)
    assert batch_alphas[1] > batch_alphas[0]


# ------------------------------------------------------------------------------------ through the CLI
@pytest.mark.parametrize(
    "operator, flags, alpha",
    [
        ("blur", ["--sigma", "1.5"], "0.005"),
        ("tomography", ["--angles", "20"], "0.005"),
        ("inpainting", [], "0.02"),
    ],
)
def test_simulate_then_reconstruct_from_files_matches_memory(tmp_path, capsys, operator, flags, alpha):
    files = _simulate(tmp_path / "sim", operator, *flags)
    out, metrics = tmp_path / "x.npy", tmp_path / "metrics.json"
    argv = ["reconstruct", "--measurements", files["measurements"], "--operator-config", files["operator"]]
    argv += ["--truth", files["truth"], "--alpha", alpha, "--max-iter", "40", "--out", str(out)]
    assert main([*argv, "--json", str(metrics), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "PSNR:" in printed and "alpha:      0.0" in printed and "(given (--alpha))" in printed
    # the in-memory path with the same image, operator, noise, seed and alpha
    x = load_image("camera", 32)
    parameters = {"sigma": 1.5} if operator == "blur" else {"angles": 20} if operator == "tomography" else {}
    op = make_operator(operator, 32, **parameters)
    y = op.measure(x, GaussianNoise(0.03), seed=3)
    x_memory = reconstruct(y, op, "tv", alpha=float(alpha), max_iter=40, progress=False).x
    expected = float(psnr(x_memory.clamp(0, 1), x))
    assert json.loads(metrics.read_text())["psnr"] == pytest.approx(expected, abs=1e-4)
    assert torch.allclose(load_measurements(out), x_memory, atol=1e-6)
    assert torch.equal(load_measurements(files["measurements"]), y)


def test_reconstruct_without_truth_chooses_alpha_by_discrepancy(tmp_path, capsys):
    files = _simulate(tmp_path / "sim", "blur", "--sigma", "1.5")
    figure = tmp_path / "r.png"
    argv = ["reconstruct", "--measurements", files["measurements"], "--operator-config", files["operator"]]
    assert main([*argv, "--max-iter", "60", "--out", str(figure), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "PSNR" not in printed and "residual:   ||A x - y|| / ||y|| = " in printed
    assert "discrepancy principle" in printed and "estimated from the measurements" in printed
    assert figure.read_bytes()[:4] == b"\x89PNG"
    # without a config the operator comes from the flags, at the size of the (image-shaped) measurements
    flags = ["--operator", "blur", "--sigma", "1.5", "--method", "pinv", "--out", str(tmp_path / "x.tif")]
    assert main(["reconstruct", "--measurements", files["measurements"], *flags]) == 0
    y = load_measurements(files["measurements"])
    expected = make_operator("blur", 32, sigma=1.5).A_dagger(y)
    assert torch.allclose(load_measurements(tmp_path / "x.tif"), expected, atol=1e-6)


def test_model_with_measurements_checks_the_operator(tmp_path, capsys, monkeypatch):
    files = _simulate(tmp_path / "sim", "blur")
    operator = make_operator("blur", 32)

    class PinvModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.operator = operator

        def forward(self, y):
            return self.operator.A_dagger(y)

    monkeypatch.setattr("liftinv.unrolled.load_model", lambda path: PinvModel())
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    argv = [
        "reconstruct",
        "--measurements",
        files["measurements"],
        "--model",
        str(model),
        "--out",
        str(tmp_path / "r.npy"),
    ]
    assert main([*argv, "--operator-config", files["operator"], "--truth", files["truth"]]) == 0
    assert "method:     model model.pt" in capsys.readouterr().out
    assert main(argv) == 0  # without a config: the model's operator, at the size of the measurements
    assert "blur (kernel=gaussian, sigma=2.0" in capsys.readouterr().out
    save_operator_config(tmp_path / "ct.json", make_operator("tomography", 32))
    assert main([*argv, "--operator-config", str(tmp_path / "ct.json")]) == 1
    assert "--model: the model was trained for another operator" in _error(capsys, "reconstruct")


def test_bad_inputs_are_one_line_errors_before_any_computation(tmp_path, capsys, monkeypatch):
    files = _simulate(tmp_path / "sim", "blur")
    capsys.readouterr()
    (tmp_path / "y.jpg").write_bytes(b"\xff\xd8")
    (tmp_path / "mri.json").write_text(json.dumps({"name": "mri", "image_size": [1, 32, 32]}))
    (tmp_path / "mixed").mkdir()
    save_measurements(tmp_path / "mixed" / "a.npy", torch.zeros(32, 32))
    save_measurements(tmp_path / "mixed" / "b.npy", torch.zeros(16, 16))
    measured, config = ["--measurements", files["measurements"]], ["--operator-config", files["operator"]]
    early = [  # refused before anything is read
        (["--measurements", str(tmp_path / "none.npy")], "--measurements: no such file or folder"),
        (
            ["--measurements", str(tmp_path / "y.jpg")],
            "--measurements: expected a .npy, .npz, .tif, .tiff, .png",
        ),
        ([*measured, "--truth", str(tmp_path / "none.npy")], "--truth: no such file or folder"),
        ([*measured, "--operator-config", str(tmp_path / "none.json")], "--operator-config: no such file"),
        ([*measured, "--out", str(tmp_path)], "is a folder; expected a file path"),
        ([*measured, "--out", str(tmp_path / "no" / "x.npy")], "--out: the folder"),
        ([*measured, "--out", str(tmp_path / "x.xyz")], "--out: expected a file ending in .npy, .npz, .tif"),
        ([*measured, *config, "--sigma", "2"], "--sigma: the operator comes from --operator-config"),
        ([*measured, "--image", "camera"], "--image: not used with --measurements"),
        (["--truth", files["truth"]], "--truth: only with --measurements"),
    ]
    monkeypatch.setattr("liftinv.datasets.load_measurements", lambda *a, **k: pytest.fail("read too early"))
    for args, message in early:
        assert main(["reconstruct", *args, "--no-progress"]) == 1, args
        assert message in _error(capsys, "reconstruct"), args
    monkeypatch.undo()
    late = [  # refused after reading the files, before reconstructing
        (["--measurements", str(tmp_path / "mixed")], "the files differ in shape: a.npy is [1, 1, 32, 32]"),
        ([*measured, "--operator-config", str(tmp_path / "mri.json")], "unknown operator 'mri'"),
        (
            [*measured, "--operator", "tomography"],
            "holds measurements of shape [1, 1, 32, 32], but the operator",
        ),
        (
            [*measured, *config, "--truth", str(tmp_path / "mixed" / "b.npy")],
            "expected [1, 1, 32, 32] (one image",
        ),
    ]
    monkeypatch.setattr("liftinv.operators.reconstruct", lambda *a, **k: pytest.fail("computed"))
    for args, message in late:
        assert main(["reconstruct", *args, "--out", str(tmp_path / "r.npy"), "--no-progress"]) == 1, args
        assert message in _error(capsys, "reconstruct"), args
    # liftinv simulate: --out must be a folder whose parent exists
    (tmp_path / "file").write_text("")
    for out, message in (
        (tmp_path / "file", "is a file; expected a folder"),
        (tmp_path / "a" / "b", "does not exist"),
    ):
        assert main(["simulate", "--size", "16", "--out", str(out)]) == 1
        assert message in _error(capsys, "simulate")
