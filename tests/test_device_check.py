"""The one-call GPU check: ``benchmarks/device_check.py`` in its CPU smoke mode, and ``tasks.py device-bundle``.

The smoke runs use the current interpreter and the installed liftinv (the wheel bundle is not needed); the
bundle's logic is tested without downloading anything.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "benchmarks" / "device_check.py"
STEPS = ["cuda_tests", "inversion", "reconstruction", "training", "gpu_info"]


@pytest.fixture(scope="module")
def tasks(load_script):
    return load_script("liftinv_tasks_under_test", ROOT / "tasks.py")


@pytest.fixture(scope="module")
def driver(load_script):
    return load_script("liftinv_device_check_under_test", DRIVER)


def _smoke(out: Path, *extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    proc = subprocess.run(
        [sys.executable, str(DRIVER), "--cpu-smoke", "--threads", "1", "--out", str(out), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert (out / "device_check.md").is_file() and (out / "device_check.log").is_file()
    return json.loads((out / "device_check.json").read_text())


@pytest.mark.slow
def test_cpu_smoke_run_passes_or_skips_without_gpu(tmp_path):
    # (no 'cuda' in this test's name: the GPU check selects tests with -k cuda)
    data = _smoke(tmp_path)
    steps = {s["name"]: s for s in data["steps"]}
    assert list(steps) == STEPS
    for s in data["steps"]:
        ok = s["status"] == "passed" or (s["status"] == "skipped" and "no CUDA" in (s["reason"] or ""))
        assert ok, (s["name"], s["status"], s["reason"], s["error"])
    assert data["meta"]["mode"] == "cpu-smoke" and data["meta"]["cuda_used"] is False
    assert data["meta"]["torch_threads"] == 1
    # the CUDA selection is collected even without CUDA, so that it cannot rot
    assert steps["cuda_tests"]["results"]["collected"] >= 1
    inv = steps["inversion"]["results"]["cases"]
    assert {(c["model"], c["method"]) for c in inv} == {
        (m, k) for m in ("perceptron", "autoencoder") for k in ("lifted", "gradient")
    }
    assert all(c["gpu"] is None and math.isfinite(c["cpu"]["psnr"]) for c in inv)
    rec = steps["reconstruction"]["results"]["cases"]
    assert [c["operator"] for c in rec] == ["tomography", "blur"]
    assert all(c["cpu"]["seconds_per_1000"] > 0 for c in rec)
    rows = steps["training"]["results"]["rows"]
    assert len(rows) == 6 and all(r["cpu"]["ratio_to_backprop"] > 0 for r in rows)
    md = (tmp_path / "device_check.md").read_text()
    assert "| step | status |" in md and "no CUDA" in md


@pytest.mark.slow
def test_gpu_phases_run_on_a_cpu_accelerator(tmp_path):
    """``--accelerator cpu`` runs the GPU phases' code here: both devices must agree exactly."""
    data = _smoke(tmp_path, "--accelerator", "cpu", "--steps", "inversion,reconstruction,training")
    steps = {s["name"]: s for s in data["steps"]}
    assert list(steps) == ["inversion", "reconstruction", "training"]
    assert all(s["status"] == "passed" for s in data["steps"]), [
        (s["name"], s["reason"]) for s in data["steps"]
    ]
    for c in steps["inversion"]["results"]["cases"]:
        assert c["psnr_match"] and abs(c["psnr_diff"]) < 1e-6 and c["speedup"] > 0
    for c in steps["reconstruction"]["results"]["cases"]:
        assert c["objective_match"] and c["speedup"] > 0
    for r in steps["training"]["results"]["rows"]:
        assert r["speedup"] > 0 and r["gpu"]["ratio_to_backprop"] > 0


def test_driver_helpers(driver, tmp_path):
    assert driver.plan_iterations(0.01, 1000, 60.0, 5) == 1000
    assert driver.plan_iterations(1.0, 1000, 30.0, 5) == 30
    assert driver.plan_iterations(1.0, 1000, 1.0, 5) == 5
    xml = tmp_path / "junit.xml"
    xml.write_text(
        '<testsuites><testsuite tests="4" failures="1" errors="0" skipped="1" time="2.5">'
        '<testcase classname="tests.test_a" name="test_ok"/>'
        '<testcase classname="tests.test_a" name="test_bad[cuda]"><failure message="assert 1 == 2">x</failure></testcase>'
        '<testcase classname="tests.test_a" name="test_skip"><skipped message="no"/></testcase>'
        '<testcase classname="tests.test_b" name="test_ok2"/></testsuite></testsuites>'
    )
    r = driver.parse_junit(xml)
    assert (r["tests"], r["passed"], r["failed"], r["errors"], r["skipped"]) == (4, 2, 1, 0, 1)
    assert r["failures"] == [{"test": "tests.test_a::test_bad[cuda]", "message": "assert 1 == 2"}]
    rows = [
        {
            "model": "m",
            "method": "backprop-adam",
            "gpu": {"epoch_seconds_full": 1.0},
            "cpu": {"epoch_seconds_full": 4.0},
        },
        {"model": "m", "method": "bregman-bcd", "gpu": {"epoch_seconds_full": 1.5}, "cpu": None},
    ]
    driver.training_ratios(rows)
    assert (
        rows[0]["speedup"] == 4.0 and rows[1]["gpu"]["ratio_to_backprop"] == 1.5 and "speedup" not in rows[1]
    )
    files = driver.test_files()
    names = [f.name for f in files]
    assert (
        "test_inversion.py" in names and "test_unrolled.py" in names and "test_device_check.py" not in names
    )
    cmd = driver.pytest_command(tmp_path / "j.xml", collect_only=True, files=files)
    assert (
        cmd[1:3] == ["-m", "pytest"]
        and "--collect-only" in cmd
        and cmd[-len(files) :] == [str(f) for f in files]
    )


def test_shell_script_syntax():
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    subprocess.run([bash, "-n", str(ROOT / "benchmarks" / "device_check.sh")], check=True)


# ------------------------------------------------------------------------------------------ device bundle
def test_wheel_names(tasks):
    assert tasks.canonical_name("Array_API.compat") == "array-api-compat"
    assert tasks.parse_wheel_filename("array_api_compat-1.16.0-py3-none-any.whl") == (
        "array-api-compat",
        "1.16.0",
    )
    assert tasks.parse_wheel_filename("/x/Foo-2.0-1-cp312-cp312-manylinux_2_28_x86_64.whl") == ("foo", "2.0")
    for bad in ("foo-1.0.tar.gz", "foo-1.0.whl"):
        with pytest.raises(ValueError):
            tasks.parse_wheel_filename(bad)


def test_bundle_plan_finds_missing_and_stale_wheels(tasks, tmp_path):
    pins = {"deepinv": "0.5.0", "array-api-compat": "1.16.0", "odl": "1.0.0"}
    assert tasks.bundle_plan(tmp_path / "absent", pins) == (pins, [])
    (tmp_path / "deepinv-0.5.0-py3-none-any.whl").write_bytes(b"x")
    (tmp_path / "array_api_compat-1.15.0-py3-none-any.whl").write_bytes(b"x")  # another version
    (tmp_path / "odl-1.0.0-py3-none-any.whl.part").write_bytes(b"x")  # partial download
    missing, extra = tasks.bundle_plan(tmp_path, pins)
    assert missing == {"array-api-compat": "1.16.0", "odl": "1.0.0"}
    assert sorted(p.name for p in extra) == [
        "array_api_compat-1.15.0-py3-none-any.whl",
        "odl-1.0.0-py3-none-any.whl.part",
    ]


def test_pip_download_command(tasks, tmp_path):
    cmd = tasks.pip_download_command("python3", tmp_path, {"deepinv": "0.5.0", "odl": "1.0.0"})
    assert cmd[:4] == ["python3", "-m", "pip", "download"]
    assert "--no-deps" in cmd and "--only-binary=:all:" in cmd
    assert cmd[cmd.index("--python-version") + 1] == "3.12" and cmd[cmd.index("--implementation") + 1] == "cp"
    platforms = [cmd[i + 1] for i, c in enumerate(cmd) if c == "--platform"]
    assert "manylinux_2_28_x86_64" in platforms and "manylinux2014_x86_64" in platforms
    assert cmd[cmd.index("-d") + 1] == str(tmp_path)
    assert cmd[-2:] == ["deepinv==0.5.0", "odl==1.0.0"]


def test_complete_bundle_is_kept_without_download(tasks, tmp_path, monkeypatch, capsys):
    pins = {"deepinv": "0.5.0", "natsort": "8.4.0"}
    (tmp_path / "deepinv-0.5.0-py3-none-any.whl").write_bytes(b"x" * 10)
    (tmp_path / "natsort-8.4.0-py3-none-any.whl").write_bytes(b"x" * 10)
    (tmp_path / "natsort-8.3.0-py3-none-any.whl").write_bytes(b"x")

    def no_download(cmd, **kw):
        raise AssertionError(f"unexpected download: {cmd}")

    monkeypatch.setattr(tasks, "_run", no_download)
    assert tasks.device_bundle(tmp_path, pins) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "deepinv-0.5.0-py3-none-any.whl",
        "natsort-8.4.0-py3-none-any.whl",
    ]
    assert "2 wheels" in capsys.readouterr().out


def test_pins_cover_the_requirements_the_device_lacks(tasks):
    """The pins are the tested versions, and every requirement of a pinned package is pinned or on the device."""
    assert "/.whl/" in (ROOT / ".gitignore").read_text().split()
    pinned = {tasks.canonical_name(n) for n in tasks.DEVICE_WHEELS}
    for name in ("deepinv", "odl"):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            pytest.skip(f"{name} is not installed here")
        assert tasks.DEVICE_WHEELS[name] == installed
    for name in tasks.DEVICE_WHEELS:
        for req in metadata.requires(name) or []:
            if "extra ==" in req:
                continue
            dep = tasks.canonical_name(re.match(r"[A-Za-z0-9._-]+", req).group(0))
            assert dep in pinned or dep in tasks.DEVICE_HAS, (
                f"{name} requires {dep}: neither bundled nor on the device"
            )
