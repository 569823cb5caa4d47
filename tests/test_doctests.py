"""Run the docstring examples of every liftinv module (``liftinv``, ``liftinv.operators``, ``liftinv.datasets``).

Modules are found by walking the installed package, so a new module's examples run without being listed
here; each module is one test, named after it.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest


def _modules() -> list[str]:
    # operators/ and datasets/ are separate folders installed under the liftinv namespace, so each
    # package is walked from its own path
    names = set()
    for package in ("liftinv", "liftinv.operators", "liftinv.datasets"):
        pkg = importlib.import_module(package)
        names.add(package)
        names.update(info.name for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{package}."))
    return sorted(names)


MODULES = _modules()


def test_every_room_is_walked():
    # guards against the walk silently finding nothing (e.g. a broken package path)
    for room in ("lifted", "models", "training", "unrolled", "inversion", "operators", "datasets"):
        assert any(name.startswith(f"liftinv.{room}.") for name in MODULES), room


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples failed in {name}"
