"""Shared fixtures: seeded generator, device list (CPU, plus CUDA when present), offline caches."""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile

import pytest

# Nothing may download or write to ~ during tests.
os.environ.setdefault("DEEPINV_CACHE_DIR", os.path.join(tempfile.gettempdir(), "liftinv-deepinv-cache"))
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

# One torch thread: the tests work on small tensors, and on a shared 2-core machine hand-offs between two
# OpenMP threads made them 10-30x slower (measured: 4.9 s vs 0.17 s for a 32x32 CT TV solve).
torch.set_num_threads(1)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Every test starts on one torch thread (see above), also after a command that set its own count."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


@pytest.fixture
def generator():
    """A torch generator with a fixed seed (tests are reproducible)."""
    return torch.Generator().manual_seed(0)


@pytest.fixture(params=DEVICES)
def device(request):
    """Every available device: CPU always, CUDA when present."""
    return torch.device(request.param)


def requires_cuda(reason: str = "needs a CUDA device; none is available on this machine"):
    return pytest.mark.skipif(not torch.cuda.is_available(), reason=reason)


def _load_script(name: str, path):
    """Import the script at ``path`` as module ``name`` (registered in ``sys.modules`` while it runs, because
    dataclasses look their module up while the class is built; removed again if the import fails)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


@pytest.fixture(scope="session")
def load_script():
    """``load_script(name, path)``: import a script that is not part of the package (benchmarks, tasks.py)."""
    return _load_script
