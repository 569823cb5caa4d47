"""Execute every notebook in notebooks/ at small size (LIFTINV_SMALL=1); a failing cell fails the test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("LIFTINV_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors, errors


def test_every_issue_notebook_is_present():
    names = {p.name for p in NOTEBOOKS}
    # one worked example per part of the toolkit (reconstruction, lifted training, FTPROP, unrolled, inversion)
    expected = {
        "01_reconstruction.ipynb",
        "02_lifted_training.ipynb",
        "03_hard_threshold.ipynb",
        "04_unrolled_lifted.ipynb",
        "05_inversion.ipynb",
    }
    missing = expected - names
    assert not missing, f"missing notebooks: {sorted(missing)}"
