#!/usr/bin/env python3
"""Set up liftinv in a local virtual environment and run its demo or its tests.

Usage (only ``python3`` is needed on a fresh machine)::

    python3 tasks.py demo     # create .venv, install liftinv, run the main demo
    python3 tasks.py test     # create .venv, install liftinv[test], run the test suite

Both commands are idempotent: the environment is created once and reinstalled only when
``pyproject.toml`` or ``constraints.txt`` changed. torch/torchvision are pinned as a matching pair in
``constraints.txt`` (the library's own requirements stay loose).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
STAMP = VENV / ".liftinv-installed"


def _run(cmd: list[str], **kw) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kw)


def _fingerprint() -> str:
    h = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def ensure_env() -> None:
    """Create ``.venv`` and install ``liftinv[test]`` unless already up to date."""
    if not PY.exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    fp = _fingerprint()
    if STAMP.exists() and STAMP.read_text() == fp:
        return
    _run([PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    _run([PY, "-m", "pip", "install", "-c", ROOT / "constraints.txt", "-e", f"{ROOT}[test]"])
    STAMP.write_text(fp)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Keep deepinv's caches inside the project; nothing is downloaded at run time.
    env.setdefault("DEEPINV_CACHE_DIR", str(ROOT / ".cache" / "deepinv"))
    env.setdefault("MPLBACKEND", "Agg")
    return env


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "setup"}:
        print(__doc__)
        return 2
    ensure_env()
    cmd, rest = argv[0], argv[1:]
    if cmd == "setup":
        return 0
    if cmd == "demo":
        return subprocess.call([str(BIN / "liftinv"), "demo", *rest], cwd=ROOT, env=_env())
    return subprocess.call([str(PY), "-m", "pytest", *rest], cwd=ROOT, env=_env())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
