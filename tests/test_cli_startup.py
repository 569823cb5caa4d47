"""``liftinv --help``, ``liftinv <command> --help`` and bad arguments answer at once (issue 14, build item 7):
building any parser and reporting an argument error imports neither torch nor deepinv.

Each check runs in a fresh interpreter (the test process has torch loaded already). The imported modules are
the deterministic evidence; the wall time is checked with a generous bound (a shared CPU).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from liftinv.cli import COMMANDS

#: modules that take seconds to import; none may be loaded to build a parser or report a bad argument
HEAVY_MODULES = ("torch", "deepinv", "numpy", "scipy", "matplotlib", "sklearn")
#: seconds; ``liftinv <command> --bogus`` takes about 0.1 s here, importing torch 3 to 5 s
WALL_LIMIT_S = 2.0

_PROBE = """
import json, sys
from liftinv.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as exc:
    status = exc.code
print(json.dumps({"status": status, "modules": sorted({name.split(".")[0] for name in sys.modules})}))
"""


def _probe(argv: list[str]) -> dict:
    """Run ``liftinv argv`` through :func:`liftinv.cli.main` in a fresh interpreter: its exit status, its
    stderr and the heavy modules it imported."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, timeout=120, check=False
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    heavy = [name for name in HEAVY_MODULES if name in result["modules"]]
    return {"status": result["status"], "heavy": heavy, "stderr": done.stderr}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_bad_argument_is_reported_without_importing_torch(command):
    result = _probe([command, "--bogus"])
    assert result["status"] == 1
    assert result["stderr"].startswith(f"liftinv {command}: error: ") and result["stderr"].count("\n") == 1
    assert result["heavy"] == [], f"liftinv {command} --bogus imported {result['heavy']}"


@pytest.mark.parametrize("argv", [["--help"], *([c, "--help"] for c in sorted(COMMANDS))], ids=str)
def test_help_does_not_import_torch(argv):
    result = _probe(argv)
    assert result["status"] == 0
    assert result["heavy"] == [], f"liftinv {' '.join(argv)} imported {result['heavy']}"


def test_a_bad_argument_is_reported_within_a_second_or_two():
    executable = Path(sys.executable).with_name("liftinv")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "liftinv"]
    for name in ("train", "train-classifier", "demo"):
        start = time.perf_counter()
        done = subprocess.run([*command, name, "--bogus"], capture_output=True, text=True, timeout=60)
        seconds = time.perf_counter() - start
        assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
        assert seconds < WALL_LIMIT_S, f"liftinv {name} --bogus took {seconds:.1f} s"


def test_the_torch_free_name_tables_are_the_runtime_ones():
    from liftinv.commands.train import HELP_ARCH_NAMES, arch_names
    from liftinv.models import ARCHITECTURES
    from liftinv.training import registry
    from liftinv.unrolled import METHOD_ALIASES, resolve_method

    assert list(HELP_ARCH_NAMES) == list(ARCHITECTURES) == arch_names()
    assert METHOD_ALIASES is registry.METHOD_ALIASES  # one table, re-exported by liftinv.unrolled
    assert all(resolve_method(alias) in registry.methods_for("unrolled") for alias in METHOD_ALIASES)
    # every registered method has a description and at least one trainer module
    assert set(registry.DESCRIPTIONS) == set(registry.METHOD_MODULES)
