"""Command line of ``benchmarks/learned.py`` (issue 12): the PG-CNN size flags override the mode's network, enter
the checkpoint key (so a resized network never resumes another size's checkpoint), and reject bad values."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def learned(load_script):
    return load_script("liftinv_bench_learned_args", ROOT / "benchmarks" / "learned.py")


def test_pg_size_flags_override_only_what_is_given(learned):
    args = learned.parse_args(["--tasks", "deblur", "--pg-depth", "8", "--pg-width", "48"])
    assert learned._pg_overrides(args) == {"depth": 8, "width": 48}
    assert learned._pg_overrides(learned.parse_args([])) == {}
    args = learned.parse_args(["--pg-dilations", "1,2,4,1"])
    assert learned._pg_overrides(args) == {"dilations": [1, 2, 4, 1]}
    with pytest.raises(SystemExit):
        learned.parse_args(["--pg-dilations", "1,two"])


def test_pg_size_enters_the_checkpoint_folder_name(learned, tmp_path):
    def folder(*flags):
        args = learned.parse_args(["--checkpoint-dir", str(tmp_path), *flags])
        cfg = dict(learned.IMAGE_MODES["default"])
        cfg["pg"] = {**cfg["pg"], **learned._pg_overrides(args)}
        return learned._ctx(args, "deblur", cfg, torch.device("cpu")).ckpt_dir.name

    assert folder() == folder()
    assert folder("--pg-depth", "8") != folder()
    assert folder("--pg-depth", "8") != folder("--pg-width", "8")
    assert folder("--pg-dilations", "1,2,4,1") != folder()


@pytest.mark.parametrize("flag", ["--pg-iterations", "--pg-depth", "--pg-width"])
def test_pg_size_flags_reject_non_positive_values(learned, flag, capsys):
    with pytest.raises(SystemExit):
        learned.parse_args([flag, "0"])
    assert flag in capsys.readouterr().err


def test_default_mode_gives_denoising_its_own_row_budget(learned):
    args = learned.parse_args([])
    assert learned.image_config(args, "denoise", "default")["row_minutes"] == 5.0
    assert learned.image_config(args, "deblur", "default")["row_minutes"] == 2.0
    assert "task_row_minutes" not in learned.image_config(args, "denoise", "default")
    assert learned.image_config(args, "denoise", "quick")["row_minutes"] == 0.75
    args = learned.parse_args(["--row-minutes", "3"])
    assert learned.image_config(args, "denoise", "default")["row_minutes"] == 3.0


def test_default_mode_rates_come_per_task_and_row_and_yield_to_the_command_line(learned):
    args = learned.parse_args([])
    assert learned.LR_GRID["default"] == (1.0,)  # no search: the rates below are used as they are
    assert learned._lr(args, "backprop-adam", "denoise", "dncnn") == learned.DEFAULT_RATES["denoise"]["dncnn"]
    assert learned._lr(args, "backprop-adam", "deblur") == 1e-3
    assert learned._lr(args, "backprop-adam", "ct", "deepinv") == 3e-3
    assert learned._lr(args, "backprop-adam", "ct") == 1e-3
    for task, rates in learned.DEFAULT_RATES.items():
        assert all(0 < v < 0.1 for v in rates.values()), task
    args = learned.parse_args(["--lr", "backprop-adam=5e-4"])
    assert learned._lr(args, "backprop-adam", "denoise", "dncnn") == 5e-4
    quick = learned.parse_args(["--quick"])
    assert learned._lr(quick, "backprop-adam", "deblur") == learned.BASE_LR["image"]["backprop-adam"]


def test_row_rollbacks_default_per_mode(learned, capsys):
    assert learned.parse_args([]).patience == 10
    assert learned.parse_args(["--quick"]).patience is None
    assert learned.parse_args(["--patience", "0"]).patience is None
    assert learned.parse_args(["--patience", "20"]).patience == 20
    assert learned.parse_args(["--long-ct"]).patience is None  # --long-ct's own default (40) applies
    with pytest.raises(SystemExit):
        learned.parse_args(["--patience", "-1"])
    assert "--patience" in capsys.readouterr().err


def test_default_mode_lifted_denoising_row_freezes_its_pre_activations_and_sweeps_twice(learned):
    from types import SimpleNamespace

    def spec(task, *flags, mode_defaults=True):
        setup = SimpleNamespace(task=task, cfg={"batch": 16}, notes=[])
        args = learned.parse_args(list(flags))
        (s,) = learned.lifted_specs(
            setup, ["bregman-isgm"], None, "PG-CNN", args, lambda m: 1e-3, mode_defaults=mode_defaults
        )
        return s

    assert spec("denoise").options["frozen_preactivations"] is True
    assert spec("denoise").options["sweeps"] == 2
    assert spec("denoise").label.endswith("frozen pre-activations, 2 sweeps")
    assert "frozen_preactivations" not in spec("deblur").options
    assert "frozen_preactivations" not in spec("denoise", "--quick").options
    # the pilots (pg_size_pilots.py) ask for every option themselves
    assert "frozen_preactivations" not in spec("denoise", mode_defaults=False).options
    assert spec("denoise", mode_defaults=False).label == "PG-CNN, lifted Bregman ISGM"


def test_lifted_variant_suffixes_set_trainer_options_and_bad_ones_are_refused(learned, capsys):
    assert learned._lifted_variant("bregman-isgm") == ("bregman-isgm", {})
    assert learned._lifted_variant("bregman-isgm+frozen+sweeps=2") == (
        "bregman-isgm",
        {"frozen_preactivations": True, "sweeps": 2},
    )
    for bad in ("bregman-isgm+fast", "bregman-isgm+sweeps=0", "adam+frozen"):
        with pytest.raises(ValueError, match="got"):
            learned._lifted_variant(bad)
    with pytest.raises(SystemExit):
        learned.parse_args(["--ct-lifted", "bregman-isgm+sweeps=x"])
    assert "--ct-lifted" in capsys.readouterr().err
    args = learned.parse_args(["--tasks", "ct", "--ct-lifted", "bregman-isgm+frozen"])
    from types import SimpleNamespace

    setup = SimpleNamespace(task="ct", cfg={"batch": 8}, notes=[])
    (spec,) = learned.lifted_specs(
        setup, args.ct_lifted, None, "LPD", args, lambda m: {"bregman-isgm": 1e-3}[m]
    )
    assert spec.method == "bregman-isgm" and spec.options["frozen_preactivations"] is True
    assert spec.label == "LPD, lifted Bregman ISGM, frozen pre-activations"


def test_batch_flag_sets_the_natural_image_batch_and_enters_the_checkpoint_key(learned, tmp_path):
    args = learned.parse_args(["--tasks", "deblur", "--batch", "64"])
    assert learned.image_config(args, "deblur", "default")["batch"] == 64
    default = learned.image_config(learned.parse_args([]), "deblur", "default")["batch"]
    assert default == learned.IMAGE_MODES["default"]["batch"]

    def folder(*flags):
        a = learned.parse_args(["--checkpoint-dir", str(tmp_path), *flags])
        return learned._ctx(a, "deblur", learned.image_config(a, "deblur", "default"), torch.device("cpu"))

    assert folder("--batch", "64").ckpt_dir != folder().ckpt_dir
    with pytest.raises(SystemExit):
        learned.parse_args(["--batch", "0"])
