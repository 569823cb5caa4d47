"""Every failure of ``liftinv <command>`` is one line ``liftinv <command>: error: ...``, exit status 1, and
changes no file that existed before (issue 14).

One parametrised matrix of bad inputs through :func:`liftinv.cli.main`: each case gives the command line, the
files that must be unchanged afterwards (bytes equal), the paths that must not exist afterwards, and a
fragment of the expected message. Exceptions that no bad input reaches on this machine (a full disk, running
out of memory, divergence, an internal bug) are raised by a stand-in ``run`` to test the handler.
"""

from __future__ import annotations

import errno
import inspect
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from liftinv.cli import main

#: a tiny, fast ``liftinv train`` run
TRAIN_TINY = ["--image-size", "16", "--n-train", "16", "--iterations", "2", "--no-progress", "--threads", "1"]
#: a tiny, fast ``liftinv train-classifier`` run
CLASSIFIER_TINY = ["--hidden", "8", "--no-progress", "--threads", "1"]
#: a tiny ``liftinv invert`` run (it never gets to run in these tests)
INVERT_TINY = ["--image-size", "8", "--features", "4", "--iters", "1", "--no-progress"]


@dataclass
class BadInput:
    """One row of the matrix: the command line, what must be left alone, and the expected message."""

    argv: list[str]
    message: str
    unchanged: list[Path] = field(default_factory=list)
    absent: list[Path] = field(default_factory=list)


@pytest.fixture(scope="module")
def trained_unrolled(tmp_path_factory) -> Path:
    """A folder with ``m.pt``, its checkpoint ``m.pt.ckpt`` and settings: one epoch of a tiny denoising run."""
    folder = tmp_path_factory.mktemp("unrolled")
    argv = ["train", "--task", "denoise", "--epochs", "1", "--out", str(folder / "m.pt"), *TRAIN_TINY]
    assert main(argv) == 0
    return folder


@pytest.fixture(scope="module")
def trained_classifier(tmp_path_factory) -> Path:
    """A ``train-classifier`` output folder after one epoch (its ``checkpoint.pt`` included)."""
    folder = tmp_path_factory.mktemp("classifier") / "run"
    assert main(["train-classifier", "--epochs", "1", "--out", str(folder), *CLASSIFIER_TINY]) == 0
    return folder


def _copy(source: Path, target: Path) -> Path:
    """A copy of the folder ``source`` at ``target`` (each case may damage its own copy only)."""
    shutil.copytree(source, target)
    return target


def _a_file(tmp_path: Path) -> Path:
    """A regular file in ``tmp_path``: a path under it cannot be created (``NotADirectoryError``; tests run as
    root here, so a read-only folder would not stop a write)."""
    path = tmp_path / "file.txt"
    path.write_text("keep me\n")
    return path


def _out_under_a_file(command: str, extra: list[str], name: str) -> Callable[..., BadInput]:
    def case(tmp_path: Path, **_) -> BadInput:
        blocker = _a_file(tmp_path)
        out = blocker / name
        return BadInput([command, *extra, "--out", str(out)], "file", unchanged=[blocker], absent=[out])

    return case


def _out_is_a_folder(command: str, extra: list[str]) -> Callable[..., BadInput]:
    def case(tmp_path: Path, **_) -> BadInput:
        folder = tmp_path / "results"
        folder.mkdir()
        kept = folder / "old.png"
        kept.write_bytes(b"an earlier result")
        return BadInput([command, *extra, "--out", str(folder)], "is a folder", unchanged=[kept])

    return case


def _train_resumes_another_run(flags: list[str], message: str) -> Callable[..., BadInput]:
    def case(tmp_path: Path, trained_unrolled: Path, **_) -> BadInput:
        folder = _copy(trained_unrolled, tmp_path / "unrolled")
        files = [folder / "m.pt", folder / "m.pt.ckpt", folder / "m.pt.ckpt.json"]
        argv = ["train", "--epochs", "2", "--out", str(folder / "m.pt"), *TRAIN_TINY, *flags]  # flags win
        return BadInput(argv, message, unchanged=files)

    return case


def _classifier_fresh_with(flags: list[str], message: str) -> Callable[..., BadInput]:
    def case(tmp_path: Path, trained_classifier: Path, **_) -> BadInput:
        folder = _copy(trained_classifier, tmp_path / "run")
        argv = [
            "train-classifier",
            "--fresh",
            "--epochs",
            "2",
            *flags,
            "--out",
            str(folder),
            *CLASSIFIER_TINY,
        ]
        return BadInput(argv, message, unchanged=sorted(p for p in folder.iterdir() if p.is_file()))

    return case


def _classifier_refuses(flags: list[str], message: str) -> Callable[..., BadInput]:
    def case(tmp_path: Path, **_) -> BadInput:
        out = tmp_path / "never"
        argv = ["train-classifier", *flags, "--epochs", "1", "--out", str(out), *CLASSIFIER_TINY]
        return BadInput(argv, message, absent=[out])

    return case


def _raising(command: str, module: str, error: BaseException | Callable[[Path], None], message: str):
    """A case whose command's ``run`` raises ``error`` (or calls it with ``tmp_path``)."""

    def case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **_) -> BadInput:
        def run(args) -> int:
            if isinstance(error, BaseException):
                raise error
            error(tmp_path)
            return 0

        monkeypatch.setattr(f"liftinv.commands.{module}.run", run)
        return BadInput([command], message)

    return case


def _write_under_a_file(tmp_path: Path) -> None:
    """What a command would do without checking ``--out``: open a file under a regular file."""
    with open(_a_file(tmp_path) / "out.png", "wb"):
        pass


def _unrolled_only_method(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **_) -> BadInput:
    """A registered method with an implementation for unrolled networks only: refused by train-classifier."""
    from liftinv.training import registry

    monkeypatch.setitem(registry.METHOD_MODULES, "toy-unrolled", ("liftinv.training.unrolled",))
    out = tmp_path / "never"
    argv = ["train-classifier", "--method", "toy-unrolled", "--out", str(out), *CLASSIFIER_TINY]
    return BadInput(argv, "it trains unrolled networks", absent=[out])


class _Payload:
    """A pickle that creates a marker file when unpickled (what a crafted model or checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _crafted(path: Path) -> Path:
    """Write a crafted torch file at ``path``; returns the marker file its payload would create."""
    import torch

    marker = path.parent / "PAYLOAD_RAN"
    torch.save({"method": "backprop-adam", "epoch": 1, "model": _Payload(marker), "trainer": {}}, path)
    return marker


def _crafted_model(command: str, extra: list[str], flag: str) -> Callable[..., BadInput]:
    """``command ... flag CRAFTED``: refused before any of its code runs, the output not written."""

    def case(tmp_path: Path, **_) -> BadInput:
        path = tmp_path / "crafted.pt"
        marker = _crafted(path)
        out = tmp_path / "out.png"
        argv = [command, *extra, flag, str(path), "--out", str(out)]
        return BadInput(argv, "needs code to load", unchanged=[path], absent=[marker, out])

    return case


def _train_resumes_a_crafted_checkpoint(tmp_path: Path, trained_unrolled: Path, **_) -> BadInput:
    folder = _copy(trained_unrolled, tmp_path / "unrolled")
    marker = _crafted(folder / "m.pt.ckpt")  # the settings beside it are those of this run
    argv = ["train", "--task", "denoise", "--epochs", "2", "--out", str(folder / "m.pt"), *TRAIN_TINY]
    return BadInput(
        argv, "needs code to load", unchanged=[folder / "m.pt", folder / "m.pt.ckpt"], absent=[marker]
    )


def _train_restart_with(flags: list[str], message: str) -> Callable[..., BadInput]:
    """``train --restart`` with a bad argument deletes nothing."""

    def case(tmp_path: Path, trained_unrolled: Path, **_) -> BadInput:
        folder = _copy(trained_unrolled, tmp_path / "unrolled")
        files = [folder / "m.pt", folder / "m.pt.ckpt", folder / "m.pt.ckpt.json"]
        argv = ["train", "--task", "denoise", "--restart", "--out", str(folder / "m.pt"), *TRAIN_TINY, *flags]
        return BadInput(argv, message, unchanged=files)

    return case


def _reconstruct_with_model(flags: list[str], message: str) -> Callable[..., BadInput]:
    """``reconstruct --model`` (an untrained denoiser saved for the denoising task, noise 0.1) with ``flags``."""

    def case(tmp_path: Path, **_) -> BadInput:
        import torch
        from liftinv.operators import make_operator

        from liftinv.models import build_model
        from liftinv.unrolled import get_task, save_model

        torch.manual_seed(0)
        model = tmp_path / "denoise.pt"
        save_model(
            model,
            build_model("proxgrad", make_operator("denoising", 16), iterations=1),
            task=get_task("denoise"),
        )
        out = tmp_path / "r.png"
        argv = [
            "reconstruct",
            "--model",
            str(model),
            "--size",
            "16",
            *flags,
            "--out",
            str(out),
            "--no-progress",
        ]
        return BadInput(argv, message, unchanged=[model], absent=[out])

    return case


def _existing_file_as(command: str, extra: list[str], flag: str, message: str) -> Callable[..., BadInput]:
    """``flag`` naming an existing file where a folder (or a file of another kind) is expected: left as it
    was, and the other outputs not written."""

    def case(tmp_path: Path, **_) -> BadInput:
        existing = _a_file(tmp_path)
        return BadInput([command, *extra, flag, str(existing)], message, unchanged=[existing])

    return case


def _empty_model_file(tmp_path: Path, **_) -> BadInput:
    """An empty model file: its message says so (it once ended after a colon)."""
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    out = tmp_path / "r.png"
    argv = ["reconstruct", "--model", str(empty), "--out", str(out)]
    return BadInput(argv, f"--model: model file '{empty}' is refused: the file is empty", absent=[out])


def _unknown_argument(tmp_path: Path, **_) -> BadInput:
    return BadInput(["train", "--bogus", "--out", str(tmp_path / "m.pt")], "unrecognized arguments: --bogus")


CASES: dict[str, Callable[..., BadInput]] = {
    # --out that cannot be written: under a regular file (NotADirectoryError), or an existing folder
    "invert --out under a file": _out_under_a_file("invert", INVERT_TINY, "out.png"),
    "train --out under a file": _out_under_a_file("train", TRAIN_TINY, "m.pt"),
    "train-classifier --out under a file": _out_under_a_file("train-classifier", CLASSIFIER_TINY, "run"),
    "invert --out is a folder": _out_is_a_folder("invert", INVERT_TINY),
    "train --out is a folder": _out_is_a_folder("train", TRAIN_TINY),
    "an OSError from the system": _raising("invert", "invert", _write_under_a_file, "Not a directory"),
    "a read-only folder": _raising(
        "train", "train", PermissionError(errno.EACCES, "Permission denied", "/data/m.pt"), "not writable"
    ),
    "a full disk": _raising(
        "train", "train", OSError(errno.ENOSPC, "No space left on device", "/data/m.pt"), "disk is full"
    ),
    # sizes whose tensors would not fit
    "reconstruct huge --angles": lambda tmp_path, **_: BadInput(
        [
            "reconstruct",
            "--operator",
            "tomography",
            "--size",
            "64",
            "--angles",
            "100000000",
            "--no-progress",
            "--out",
            str(tmp_path / "r.png"),
        ],
        "angles=100000000",
        absent=[tmp_path / "r.png"],
    ),
    "train huge --image-size": lambda tmp_path, **_: BadInput(
        ["train", "--image-size", "100000", "--out", str(tmp_path / "m.pt")],
        "--image-size",
        absent=[tmp_path / "m.pt"],
    ),
    "train huge --n-train": lambda tmp_path, **_: BadInput(
        ["train", "--image-size", "8000", "--n-train", "1000000", "--out", str(tmp_path / "m.pt")],
        "would need at least",
        absent=[tmp_path / "m.pt"],
    ),
    "invert huge --image-size": lambda tmp_path, **_: BadInput(
        ["invert", "--image-size", "1000000", "--out", str(tmp_path / "i.png")], "perceptron's weights"
    ),
    "out of memory": _raising("train", "train", MemoryError(), "out of memory"),
    "CUDA out of memory": _raising(
        "train",
        "train",
        type("OutOfMemoryError", (RuntimeError,), {})(
            "CUDA out of memory. Tried to allocate 20.00 GiB\nmore"
        ),
        "asked for 20.00 GiB",
    ),
    "reconstruct huge --size": lambda tmp_path, **_: BadInput(
        ["reconstruct", "--size", "100000", "--no-progress", "--out", str(tmp_path / "r.png")],
        "image_size=100000 would need about",
        absent=[tmp_path / "r.png"],
    ),
    # outputs that are not what they must be, checked before any work: nothing written
    "reconstruct --out is a folder": _out_is_a_folder("reconstruct", ["--size", "16", "--no-progress"]),
    "reconstruct --json is a folder": lambda tmp_path, **_: BadInput(
        ["reconstruct", "--size", "16", "--json", str(tmp_path), "--out", str(tmp_path / "r.png")],
        "--json",
        absent=[tmp_path / "r.png"],
    ),
    "train-classifier --out is a file": _existing_file_as(
        "train-classifier", CLASSIFIER_TINY, "--out", "is a file"
    ),
    "simulate --out is a file": _existing_file_as("simulate", ["--size", "16"], "--out", "is a file"),
    # crafted files: refused before any of their code runs (every loading path of the command line)
    "reconstruct --model a crafted file": _crafted_model("reconstruct", ["--size", "16"], "--model"),
    "invert --model a crafted file": _crafted_model("invert", INVERT_TINY, "--model"),
    "invert --cache a crafted file": _crafted_model(
        "invert", ["--model", "autoencoder", "--iters", "1"], "--cache"
    ),
    "train resumes a crafted checkpoint": _train_resumes_a_crafted_checkpoint,
    "reconstruct --model an empty file": _empty_model_file,
    # a model applied to data it was not trained for (both values named)
    "reconstruct --model at another noise level": _reconstruct_with_model(
        ["--noise", "0.5"], "noise 0.5, but the model was trained for noise 0.1"
    ),
    "reconstruct --model of another operator": _reconstruct_with_model(
        ["--operator", "blur"], "trained for denoising, but --operator blur"
    ),
    # a checkpoint of another run is refused, and left as it was
    "train resumes another task": _train_resumes_another_run(["--task", "deblur"], "task: 'denoise'"),
    "train resumes another seed": _train_resumes_another_run(["--task", "denoise", "--seed", "1"], "seed: 0"),
    "train resumes another image size": _train_resumes_another_run(
        ["--task", "denoise", "--image-size", "24"], "image_size"
    ),
    # --restart and --fresh delete nothing when an argument is bad
    "train --restart, bad kernel size": _train_restart_with(["--kernel-size", "4"], "--kernel-size"),
    "train --restart, bad device": _train_restart_with(["--device", "gpu0"], "--device"),
    "train-classifier --fresh, bad option": _classifier_fresh_with(["--option", "bogus=1"], "bogus"),
    "train-classifier --fresh, bad device": _classifier_fresh_with(["--device", "gpu0"], "--device"),
    # a method that cannot train a classifier: refused before --out is created
    "train-classifier --method mac": _classifier_refuses(["--method", "mac"], "liftinv train"),
    "train-classifier method for unrolled networks only": _unrolled_only_method,
    "train-classifier sign with a lifted method": _classifier_refuses(
        ["--method", "bregman-bcd", "--activation", "sign"], "not admissible"
    ),
    # what the handler does with any exception
    "divergence": _raising(
        "train",
        "train",
        FloatingPointError("bregman-isgm: non-finite values at epoch 3"),
        "smaller learning rate",
    ),
    "a multi-line message": _raising(
        "invert",
        "invert",
        RuntimeError("Error(s) in loading:\n\tsize mismatch for w\n\tand more"),
        "size mismatch",
    ),
    "an internal error": _raising("invert", "invert", AttributeError("no attribute 'x'"), "internal error"),
    # bad arguments (argparse)
    "an unknown argument": _unknown_argument,
    "a bad value": lambda tmp_path, **_: BadInput(["invert", "--iters", "many"], "invalid int value"),
}


def _exit_status(argv: list[str]) -> int:
    """``main(argv)``'s exit status, whether it returns it or raises ``SystemExit`` (bad arguments)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.mark.parametrize("name", list(CASES))
def test_every_failure_is_one_line_and_changes_nothing(name, tmp_path, monkeypatch, capsys, request):
    needs = {"trained_unrolled", "trained_classifier"} & set(inspect.signature(CASES[name]).parameters)
    fixtures = {n: request.getfixturevalue(n) for n in needs}
    case = CASES[name](tmp_path=tmp_path, monkeypatch=monkeypatch, **fixtures)
    before = {path: path.read_bytes() for path in case.unchanged}
    capsys.readouterr()
    status = _exit_status(case.argv)
    err = capsys.readouterr().err
    command = case.argv[0]
    assert status == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"liftinv {command}: error: "), err
    assert "Traceback" not in err
    assert case.message in lines[0], lines[0]
    assert {path: path.read_bytes() for path in case.unchanged} == before
    assert [path for path in case.absent if path.exists()] == []


def test_a_checkpoint_of_the_same_run_resumes(tmp_path, trained_unrolled, capsys):
    folder = _copy(trained_unrolled, tmp_path / "unrolled")
    argv = ["train", "--task", "denoise", "--epochs", "2", "--out", str(folder / "m.pt"), *TRAIN_TINY]
    assert main(argv) == 0
    assert "resumed from" in capsys.readouterr().out


def test_operator_sizes_are_refused_quickly():
    import time

    from liftinv.operators import make_operator

    for name, size, parameters, argument in (
        ("tomography", 64, {"angles": 100_000_000}, "angles=100000000"),
        ("blur", 100_000, {}, "image_size=100000"),
    ):
        start = time.perf_counter()
        with pytest.raises(ValueError, match=argument) as info:
            make_operator(name, size, **parameters)
        assert time.perf_counter() - start < 1.0
        assert len(str(info.value).splitlines()) == 1
    assert make_operator("tomography", 64, angles=60).n_angles == 60  # normal sizes are unaffected
