#!/usr/bin/env python3
"""Set up liftinv in a local virtual environment and run its demo or its tests.

Usage (only ``python3`` is needed on a fresh machine)::

    python3 tasks.py demo           # create .venv, install liftinv, run the main demo
    python3 tasks.py test           # create .venv, install liftinv[test], run the test suite
    python3 tasks.py setup          # create / update .venv only
    python3 tasks.py device-bundle  # download the wheels the GPU machine lacks into .whl/ (no .venv needed)

The first three are idempotent: the environment is created once and reinstalled only when
``pyproject.toml`` or ``constraints.txt`` changed. torch/torchvision are pinned as a matching pair in
``constraints.txt`` (the library's own requirements stay loose).

``device-bundle`` prepares the one-call GPU check (``bash benchmarks/device_check.sh`` on a machine with
Python 3.12, torch and no internet): it downloads, with pip from PyPI, the pinned wheels of
:data:`DEVICE_WHEELS` for CPython 3.12 on manylinux x86_64 into the ignored folder ``.whl/``, removes
wheels that are not pinned there (two versions of one package stop an offline install), and prints the
bundle's size next to the size of the working tree that travels with it (64 MiB together at most).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
STAMP = VENV / ".liftinv-installed"

#: Wheels the GPU machine lacks, pinned to the versions tested in ``.venv``: deepinv and ODL and those of
#: their requirements that the machine does not have (it has torch 2.11, torchvision, numpy, scipy,
#: scikit-image, scikit-learn, matplotlib, tqdm, torchmetrics, einops, h5py, requests, packaging,
#: setuptools and pytest). All five are pure Python (``py3-none-any``).
DEVICE_WHEELS: dict[str, str] = {
    "deepinv": "0.5.0",
    "natsort": "8.4.0",  # required by deepinv
    "odl": "1.0.0",
    "array-api-compat": "1.16.0",  # required by odl
    "future": "1.0.0",  # required by odl
}
#: Distributions the GPU machine already has, of those that deepinv, ODL and liftinv require (its image holds
#: many more): they are not bundled
DEVICE_HAS = frozenset(
    {
        "torch",
        "torchvision",
        "torchmetrics",
        "numpy",
        "scipy",
        "matplotlib",
        "tqdm",
        "einops",
        "requests",
        "h5py",
        "packaging",
        "setuptools",
        "pytest",
        "scikit-image",
        "scikit-learn",
    }
)
#: Folder of the bundle (ignored by git; carried to the GPU machine)
WHEEL_DIR = ROOT / ".whl"
#: Interpreter and platforms of the GPU machine, for ``pip download``
DEVICE_PYTHON = "3.12"
DEVICE_PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
#: Limit of the working tree that travels to the GPU machine (bundle included), MiB
TREE_LIMIT_MIB = 64


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


def canonical_name(name: str) -> str:
    """Normalise a distribution name as PEP 503 does (``Array_API.compat`` -> ``array-api-compat``).

    Parameters
    ----------
    name : str
        Distribution name as written in a requirement or a wheel's file name.

    Returns
    -------
    str
        Lower case, runs of ``-``, ``_`` and ``.`` replaced by one ``-``.
    """
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_wheel_filename(filename: str) -> tuple[str, str]:
    """Distribution name (canonical) and version of a wheel file name (PEP 427).

    Parameters
    ----------
    filename : str
        E.g. ``"array_api_compat-1.16.0-py3-none-any.whl"``.

    Returns
    -------
    (str, str)
        ``("array-api-compat", "1.16.0")``.

    Raises
    ------
    ValueError
        If ``filename`` is not a wheel file name.
    """
    base = Path(filename).name
    if not base.endswith(".whl"):
        raise ValueError(f"not a wheel file name: {filename!r}")
    parts = base[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):  # name-version[-build]-python-abi-platform
        raise ValueError(f"not a wheel file name: {filename!r}")
    return canonical_name(parts[0]), parts[1]


def bundle_plan(folder: Path, pins: dict[str, str]) -> tuple[dict[str, str], list[Path]]:
    """Compare the wheels in ``folder`` with the pins.

    Parameters
    ----------
    folder : Path
        The bundle folder (may not exist yet).
    pins : dict
        Distribution name -> pinned version.

    Returns
    -------
    missing : dict
        The pins that have no wheel in ``folder`` (name -> version), in the order of ``pins``.
    extra : list of Path
        Files in ``folder`` that are not a wheel of a pinned version (other versions, other packages,
        partial downloads): an offline ``pip install .whl/*.whl`` fails on two versions of one package.
    """
    wanted = {canonical_name(n): v for n, v in pins.items()}
    present: set[str] = set()
    extra: list[Path] = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        try:
            name, version = parse_wheel_filename(path.name)
        except ValueError:
            extra.append(path)
            continue
        if wanted.get(name) == version and path.is_file():
            present.add(name)
        else:
            extra.append(path)
    missing = {n: v for n, v in pins.items() if canonical_name(n) not in present}
    return missing, extra


def pip_download_command(python: str, folder: Path, pins: dict[str, str]) -> list[str]:
    """The ``pip download`` command line that fetches ``pins`` as wheels for the GPU machine.

    Binary wheels only, no dependencies (every needed one is pinned), for CPython :data:`DEVICE_PYTHON`
    on the manylinux x86_64 tags of :data:`DEVICE_PLATFORMS` (pure-Python wheels match any platform).

    Parameters
    ----------
    python : str
        Interpreter whose pip runs the download.
    folder : Path
        Destination folder.
    pins : dict
        Distribution name -> version.

    Returns
    -------
    list of str
    """
    cmd = [python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", DEVICE_PYTHON, "--implementation", "cp"]
    for tag in DEVICE_PLATFORMS:
        cmd += ["--platform", tag]
    cmd += ["-d", str(folder)]
    cmd += [f"{name}=={version}" for name, version in pins.items()]
    return cmd


def _size(paths) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file() and not p.is_symlink())


def _tree_size() -> int | None:
    """Bytes of the working tree that travels to the GPU machine (tracked + untracked, not ignored)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return _size(ROOT / name for name in out.decode().split("\0") if name)


def device_bundle(folder: Path = WHEEL_DIR, pins: dict[str, str] = DEVICE_WHEELS) -> int:
    """Download the GPU machine's missing wheels into ``folder`` and print the bundle's size.

    Idempotent: wheels already present are kept, files that are not a pinned wheel are removed, and pip
    runs only for what is missing. Needs network access to PyPI; not the virtual environment.

    Returns
    -------
    int
        0 on success, 1 if a pinned wheel is still missing or the tree would exceed the limit.
    """
    folder.mkdir(parents=True, exist_ok=True)
    missing, extra = bundle_plan(folder, pins)
    for path in extra:
        print(f"removing {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} (not pinned)")
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    if missing:
        python = sys.executable
        if importlib.util.find_spec("pip") is None:  # a python3 without pip: use the project's venv
            ensure_env()
            python = str(PY)
        _run(pip_download_command(python, folder, missing))
    missing, extra = bundle_plan(folder, pins)
    if missing or extra:
        print(f"device-bundle: error: missing {missing or '-'}, unexpected {[p.name for p in extra] or '-'}")
        return 1
    wheels = sorted(folder.glob("*.whl"))
    mib = 1024 * 1024
    for w in wheels:
        print(f"  {w.name:60s} {w.stat().st_size / mib:6.2f} MiB")
    bundle = _size(wheels)
    tree = _tree_size()
    total = None if tree is None else tree + bundle
    print(
        f"bundle {folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder}: {len(wheels)} wheels, "
        f"{bundle / mib:.2f} MiB"
        + (
            ""
            if total is None
            else f"; with the working tree {total / mib:.2f} MiB (limit {TREE_LIMIT_MIB} MiB)"
        )
    )
    if total is not None and total > TREE_LIMIT_MIB * mib:
        print("device-bundle: error: the tree and the bundle exceed the transfer limit")
        return 1
    print("carry '.whl' and run: bash benchmarks/device_check.sh")
    return 0


def main(argv: list[str]) -> int:
    if argv and argv[0] == "device-bundle":
        return device_bundle()
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
