"""``liftinv train`` (in-process through ``liftinv.cli.main``): save, resume, reload, reconstruct."""

from __future__ import annotations

import pytest
import torch

from liftinv.cli import main

TINY = ["--image-size", "16", "--n-train", "16", "--iterations", "2", "--no-progress", "--threads", "1"]


def test_train_saves_a_model_that_reloads_and_reconstructs_identically(tmp_path, capsys):
    from liftinv.operators import make_operator

    from liftinv.training import load_checkpoint
    from liftinv.unrolled import build_model, load_model, make_task_data

    out = tmp_path / "deblur.pt"
    args = [
        "train",
        "--task",
        "deblur",
        "--arch",
        "proxgrad",
        "--method",
        "bregman-isgm",
        "--epochs",
        "1",
        "--seed",
        "0",
        "--device",
        "cpu",
        "--out",
        str(out),
        *TINY,
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "test PSNR:" in printed and out.exists() and (tmp_path / "deblur.pt.ckpt").exists()

    model = load_model(out, expected_operator=make_operator("blur", 16, sigma=2.0), image_size=16)
    assert model.metadata["method"] == "bregman-isgm" and model.metadata["epochs"] == 1
    # the weights in the file are those of the training run (the epoch checkpoint holds the same weights)
    ck = load_checkpoint(tmp_path / "deblur.pt.ckpt")
    same = build_model(
        "proxgrad",
        make_operator("blur", 16, sigma=2.0),
        **{k: v for k, v in model.config().items() if k != "arch"},
    )
    same.load_state_dict(ck["model"])
    y = make_task_data("deblur", image_size=16, n_train=4, seed=3).test[0]
    assert torch.equal(model.reconstruct(y), same.reconstruct(y))
    psnr = float(printed.split("test PSNR:")[1].split("dB")[0])
    assert abs(psnr - model.metadata["test_psnr"]) < 0.01

    # a rerun with more epochs resumes from the checkpoint
    assert main([*args[:8], "2", *args[9:]]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert load_model(out).metadata["epochs"] == 2

    # the reconstruct command uses the trained model end to end, at its size and at another one (the blur is
    # shift-invariant: the same weights apply), and refuses another blur
    fig = tmp_path / "r.png"
    base = ["reconstruct", "--model", str(out), "--image", "camera", "--out", str(fig), "--no-progress"]
    assert main([*base, "--operator", "blur", "--size", "16"]) == 0
    assert "PSNR:" in capsys.readouterr().out and fig.exists()
    assert main([*base, "--size", "24"]) == 0
    assert "image camera 24x24" in capsys.readouterr().out
    assert main([*base, "--size", "24", "--sigma", "1.0"]) == 1
    assert (
        "--sigma: the model was trained for blur with sigma=2.0, but --sigma 1.0" in capsys.readouterr().err
    )


def test_loading_a_model_for_another_operator_fails_clearly(tmp_path, capsys):
    from liftinv.operators import make_operator

    from liftinv.unrolled import ModelMismatchError, load_model

    out = tmp_path / "inpaint.pt"
    assert (
        main(
            [
                "train",
                "--task",
                "inpaint",
                "--arch",
                "dualfb",
                "--method",
                "mac",
                "--epochs",
                "1",
                "--out",
                str(out),
                *TINY,
            ]
        )
        == 0
    )
    with pytest.raises(ModelMismatchError, match="another operator"):
        load_model(out, expected_operator=make_operator("blur", 16))
    assert load_model(out, image_size=32).image_size == (1, 32, 32)  # inpainting: any size, same weights
    with pytest.raises(ModelMismatchError, match="seed"):
        load_model(out, expected_operator=make_operator("inpainting", 16, seed=1))


def test_methods_come_from_the_registry(tmp_path, capsys):
    from liftinv.training.registry import methods_for
    from liftinv.unrolled import METHOD_ALIASES

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = "".join(capsys.readouterr().out.split())  # argparse wraps lines, possibly at hyphens
    accepted = [*METHOD_ALIASES, *methods_for("unrolled")]
    assert all(name in out for name in accepted)
    # a method without an implementation for unrolled networks is refused, with the accepted names
    assert main(["train", "--method", "fenchel-bcd", "--out", str(tmp_path / "m.pt")]) == 1
    assert f"expected one of {', '.join(accepted)}" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert main(["train", "--task", "superres", "--out", str(tmp_path / "m.pt")]) == 1
    assert "--task: expected one of deblur, ct, inpaint, denoise" in capsys.readouterr().err
    assert main(["train", "--method", "sgd", "--out", str(tmp_path / "m.pt")]) == 1
    assert "--method" in capsys.readouterr().err
    assert main(["train", "--kernel-size", "4", "--out", str(tmp_path / "m.pt")]) == 1
    assert "--kernel-size" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "missing" / "m.pt")]) == 1
    assert "does not exist" in capsys.readouterr().err
