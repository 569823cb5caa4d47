"""``--threads N`` of every ``liftinv`` command: checked at parse time (one line), applied before the work,
and by default the cores this process may use (or ``OMP_NUM_THREADS``) instead of torch's machine-wide
default (issue 14, build item 7)."""

from __future__ import annotations

import pytest
import torch

from liftinv.cli import COMMANDS, main
from liftinv.commands import threads


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_a_bad_thread_count_is_one_line(command, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--threads", value])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err == f"liftinv {command}: error: argument --threads: expected a positive int, got {value!r}\n"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_documents_its_thread_default(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    helped = " ".join(capsys.readouterr().out.split())
    assert "--threads N torch CPU threads (default" in helped
    if command != "demo":  # the demo keeps one thread: the README's numbers
        assert (
            "the cores available to this process, shared among torchrun's processes on this machine: "
            in helped
        )


def test_the_default_is_omp_num_threads_else_the_available_cores(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 6)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert threads.default_threads() == 6
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun's processes on this machine share the cores
    assert threads.default_threads() == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert threads.default_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert threads.default_threads() == 5
    monkeypatch.setenv("OMP_NUM_THREADS", "")  # empty or not a positive int: ignored
    assert threads.default_threads() == 3


def test_available_cores_is_the_affinity_at_most_the_cgroup_quota(monkeypatch, tmp_path):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    cpu_max = tmp_path / "cpu.max"
    monkeypatch.setattr(threads, "_CPU_MAX", cpu_max)
    assert threads.available_cores() == 4  # no cgroup file
    cpu_max.write_text("max 100000\n")
    assert threads.available_cores() == 4  # no quota
    cpu_max.write_text("150000 100000\n")
    assert threads.available_cores() == 2  # 1.5 cores, rounded up
    cpu_max.write_text("800000 100000\n")
    assert threads.available_cores() == 4


@pytest.mark.parametrize(("given", "expected"), [(["--threads", "3"], 3), ([], 2)])
def test_the_thread_count_is_applied_before_the_work(given, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    seen = []
    from liftinv.operators import registry

    make = registry.make_operator

    def recording_make_operator(*args, **kwargs):  # the work starts with the operator
        seen.append(torch.get_num_threads())
        return make(*args, **kwargs)

    monkeypatch.setattr(registry, "make_operator", recording_make_operator)
    monkeypatch.setattr("liftinv.operators.make_operator", recording_make_operator)
    argv = ["simulate", "--operator", "denoising", "--size", "8", "--out", str(tmp_path / "sim"), *given]
    assert main(argv) == 0, capsys.readouterr().err
    assert seen == [expected]
    assert (
        main(
            [
                "reconstruct",
                "--operator",
                "denoising",
                "--size",
                "8",
                "--method",
                "pinv",
                "--no-progress",
                "--out",
                str(tmp_path / "x.npy"),
                *given,
            ]
        )
        == 0
    )
    assert seen == [expected, expected]


def test_the_demo_keeps_one_thread_by_default():
    from liftinv.cli import build_parser

    assert build_parser(["demo"]).parse_args(["demo"]).threads == 1
    assert not hasattr(build_parser(["train"]).parse_args(["train"]), "threads")  # default_threads decides
