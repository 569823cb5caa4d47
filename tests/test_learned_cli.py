"""``liftinv train`` / ``reconstruct`` with the learned CNN networks (issue 12): any image size, data options."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from liftinv.cli import main

#: a tiny network and data set: seconds per run on one thread
TINY = ["--epochs", "1", "--image-size", "16", "--n-train", "8", "--iterations", "2", "--no-progress"]


def _error(capsys, command: str) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"liftinv {command}: error: ")
    return lines[0]


def _reconstruct(tmp_path, model, *extra: str) -> int:
    out = tmp_path / "r.png"
    return main(["reconstruct", "--model", str(model), "--out", str(out), "--no-progress", *extra])


@pytest.fixture(scope="module")
def denoiser(tmp_path_factory):
    """A proxgrad-cnn denoiser trained for one epoch on 16x16 patches through the CLI."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("denoise") / "denoise.pt"
    args = ["train", "--task", "denoise", "--arch", "proxgrad-cnn", "--method", "backprop", *TINY]
    assert main([*args, "--width", "4", "--depth", "3", "--out", str(out)]) == 0
    return out


def test_proxgrad_cnn_denoiser_reconstructs_other_sizes(denoiser, tmp_path, capsys):
    from liftinv.unrolled import load_model

    model = load_model(denoiser)
    assert model.arch == "proxgrad-cnn" and model.image_size == (1, 16, 16)
    assert model.config()["width"] == 4 and model.config()["depth"] == 3
    for size in (48, 97):
        metrics = tmp_path / f"{size}.json"
        code = _reconstruct(
            tmp_path, denoiser, "--image", "camera", "--size", str(size), "--json", str(metrics)
        )
        assert code == 0, capsys.readouterr().err
        printed = capsys.readouterr().out
        record = json.loads(metrics.read_text())
        # the model's operator and training noise are the defaults; the size is the one asked for
        assert record["operator"] == {"name": "denoising", "image_size": [1, size, size]}
        assert record["noise"] == 0.1 and record["size"] == size and 10 < record["psnr"] < 40
        assert "(proxgrad-cnn, trained on 16x16)" in printed
    # the library path: load_model at another size, reconstruct with an operator of that size
    from liftinv.operators import make_operator

    from liftinv.unrolled import reconstruct

    op = make_operator("denoising", 97)
    y = op.A(torch.rand(2, 1, 97, 97))
    x = reconstruct(y, op, model=denoiser).x
    assert x.shape == (2, 1, 97, 97)
    assert torch.equal(x, load_model(denoiser, image_size=97).reconstruct(y))
    # another operator is refused, with both operators named
    assert _reconstruct(tmp_path, denoiser, "--operator", "blur") == 1
    assert "the model was trained for denoising, but --operator blur was asked for" in _error(
        capsys, "reconstruct"
    )


def test_lpd_ct_trains_on_ellipses_and_refuses_another_geometry(tmp_path, capsys):
    from liftinv.unrolled import ModelMismatchError, load_model, reconstruct

    out = tmp_path / "ct.pt"
    args = ["train", "--task", "ct", "--arch", "lpd", "--method", "bregman-isgm", *TINY]
    assert main([*args, "--width", "4", "--channels", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "train on random-ellipse phantoms" in printed and "fixed set of 16 (seed 1)" in printed
    model = load_model(out)
    assert model.arch == "lpd" and model.config()["primal_channels"] == 2 and model.config()["width"] == 4
    assert model.metadata["train_data"].startswith("random-ellipse phantoms")
    # the model's geometry is the default (its image size, 30 angles); another one is refused clearly
    assert _reconstruct(tmp_path, out, "--image", "shepp_logan") == 0
    assert "image shepp_logan 16x16" in capsys.readouterr().out
    assert _reconstruct(tmp_path, out, "--size", "32") == 1
    message = _error(capsys, "reconstruct")
    assert "--size: the model was trained for tomography (angles=30) on images [1, 16, 16]" in message
    assert "[1, 32, 32], another geometry" in message
    assert _reconstruct(tmp_path, out, "--angles", "20") == 1
    assert "--angles: the model was trained for tomography with angles=30, but --angles 20" in _error(
        capsys, "reconstruct"
    )
    with pytest.raises(ModelMismatchError, match=r"images of size \[1, 16, 16\].*not \[1, 24, 24\]"):
        load_model(out, image_size=24)
    from liftinv.operators import make_operator

    op = make_operator("tomography", 24)
    with pytest.raises(ModelMismatchError, match="works only at the geometry it was trained for"):
        reconstruct(op.A(torch.rand(1, 1, 24, 24)), op, model=out)


def test_another_blur_sigma_is_refused_and_old_archs_resize(tmp_path, capsys):
    from liftinv.operators import make_operator

    from liftinv.unrolled import ModelMismatchError, load_model
    from liftinv.unrolled.io import model_for_operator

    out = tmp_path / "deblur.pt"
    args = ["train", "--task", "deblur", "--arch", "proxgrad", "--method", "mac", *TINY]
    assert main([*args, "--out", str(out)]) == 0
    capsys.readouterr()
    assert _reconstruct(tmp_path, out, "--sigma", "1.5", "--size", "24") == 1
    message = _error(capsys, "reconstruct")
    assert "--sigma: the model was trained for blur with sigma=2.0, but --sigma 1.5 was asked for" in message
    with pytest.raises(ModelMismatchError, match=r"another operator \(sigma: model 2.0 vs requested 1.5\)"):
        load_model(out, expected_operator=make_operator("blur", 24, sigma=1.5))
    # the convex-prior network applies at another size through with_operator (same weights)
    assert _reconstruct(tmp_path, out, "--size", "24", "--image", "camera") == 0
    big = model_for_operator(load_model(out), make_operator("blur", 24))
    assert big.image_size == (1, 24, 24)


def test_images_folders_train_and_test(tmp_path, capsys):
    from skimage import io

    rng = np.random.default_rng(0)
    train_dir, test_dir = tmp_path / "train", tmp_path / "test"
    train_dir.mkdir()
    test_dir.mkdir()
    for i in range(3):
        io.imsave(
            train_dir / f"a{i}.png", (rng.random((24, 20)) * 255).astype(np.uint8), check_contrast=False
        )
    io.imsave(test_dir / "t.png", (rng.random((20, 30)) * 255).astype(np.uint8), check_contrast=False)
    out = tmp_path / "m.pt"
    base = ["train", "--task", "inpaint", "--arch", "proxgrad-cnn", "--method", "backprop", "--width", "4"]
    args = [*base, *TINY]
    assert main([*args, "--images", str(train_dir), "--test-images", str(test_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (
        f"train on folder {train_dir} (3 images, native size); test on folder {test_dir} (1 image" in printed
    )
    assert "3 test images" in printed  # 3 crops of the one test image
    # one folder alone: its last quarter (at least one image) is held out
    assert main([*args, "--images", str(train_dir), "--out", str(out), "--restart"]) == 0
    assert "(first 2 images, native size); test on folder" in capsys.readouterr().out
    # bad folders: one line, nothing written
    bad = tmp_path / "bad.pt"
    assert main([*args, "--images", str(train_dir), "--test-images", str(train_dir), "--out", str(bad)]) == 1
    assert "--test-images: expected another folder than --images" in _error(capsys, "train")
    assert main([*args, "--test-images", str(tmp_path / "nowhere"), "--out", str(bad)]) == 1
    assert "--test-images:" in _error(capsys, "train")
    assert main([*args, "--images", str(test_dir), "--out", str(bad)]) == 1  # 1 image: nothing to hold out
    assert "--images: expected at least 2 images" in _error(capsys, "train")
    assert main([*base, "--image-size", "24", "--test-images", str(test_dir), "--out", str(bad)]) == 1
    assert "--test-images: the image" in _error(capsys, "train") and not bad.exists()


def test_arch_names_and_network_options_come_from_the_registry(tmp_path, capsys, monkeypatch):
    from liftinv.commands.train import arch_names, network_flags
    from liftinv.models import ARCHITECTURES, UnrolledProxGrad

    assert arch_names() == list(ARCHITECTURES)
    assert {"proxgrad", "dualfb", "lpd", "proxgrad-cnn"} <= set(arch_names())
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    helped = "".join(capsys.readouterr().out.split())
    assert [name for name in ARCHITECTURES if name not in helped] == [], helped
    assert main(["train", "--arch", "unet", "--out", str(tmp_path / "m.pt")]) == 1
    assert f"--arch: expected one of {', '.join(ARCHITECTURES)}, got 'unet'" in _error(capsys, "train")
    monkeypatch.setitem(ARCHITECTURES, "toy", UnrolledProxGrad)  # a newly registered architecture is accepted
    assert "toy" in arch_names() and network_flags("toy") == ["--iterations", "--channels", "--kernel-size"]
    assert network_flags("lpd") == ["--iterations", "--channels", "--width", "--kernel-size"]
    assert network_flags("proxgrad-cnn") == [
        "--iterations",
        "--width",
        "--depth",
        "--kernel-size",
        "--data-step",
        "--dilations",
    ]
    # a flag that does not apply, or a value the network refuses: one line, before anything is written
    out = tmp_path / "m.pt"
    assert main(["train", "--arch", "proxgrad", "--width", "8", "--out", str(out)]) == 1
    assert "--width: does not apply to --arch proxgrad (its network options: --iterations" in _error(
        capsys, "train"
    )
    assert main(["train", "--arch", "lpd", "--data-step", "prox", "--out", str(out)]) == 1
    assert "--data-step: does not apply to --arch lpd" in _error(capsys, "train")
    assert main(["train", "--arch", "proxgrad-cnn", "--depth", "1", "--out", str(out)]) == 1
    assert "--depth: expected an int >= 2, got 1" in _error(capsys, "train")
    assert main(["train", "--arch", "proxgrad-cnn", "--dilations", "1,2", "--out", str(out)]) == 1
    assert "dilations must be a sequence of 4 ints >= 1 (one per conv), got [1, 2]" in _error(capsys, "train")
    assert main(["train", "--arch", "proxgrad", "--channels", "4", "--out", str(out)]) == 1
    assert "--arch proxgrad --channels 4: ParsevalConv: channels must be >=" in _error(capsys, "train")
    if not torch.cuda.is_available():
        assert main(["train", "--device", "cuda", "--out", str(out)]) == 1
        assert "--device: device='cuda': CUDA is not available" in _error(capsys, "train")
    assert not out.exists() and not (tmp_path / "m.pt.ckpt").exists()


def test_default_options_for_the_learned_networks():
    from liftinv.unrolled import ARCH_OPTIONS, LIFTED_ARCH_OPTIONS

    assert ARCH_OPTIONS["lpd"]["lr"] == 1e-3 and LIFTED_ARCH_OPTIONS["lpd"]["lr"] == 3e-3
    assert ARCH_OPTIONS["proxgrad-cnn"]["lr"] == LIFTED_ARCH_OPTIONS["proxgrad-cnn"]["lr"] == 3e-3


def test_proxgrad_cnn_with_proximal_data_steps_trains_saves_and_reconstructs_another_size(tmp_path, capsys):
    from liftinv.unrolled import load_model

    out = tmp_path / "deblur.pt"
    args = ["train", "--task", "deblur", "--arch", "proxgrad-cnn", "--method", "backprop", *TINY]
    flags = ["--width", "4", "--depth", "2", "--data-step", "prox", "--dilations", "1,2"]
    assert main([*args, *flags, "--out", str(out)]) == 0
    model = load_model(out)
    assert model.config()["data_step"] == "prox" and model.data_step == "prox"
    assert model.config()["dilations"] == [1, 2] and model.cnns[0][1].dilation == (2, 2)
    assert _reconstruct(tmp_path, out, "--image", "camera", "--size", "40") == 0, capsys.readouterr().err
