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
