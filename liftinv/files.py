"""Trusted file input and output: weights-only ``torch`` files, written atomically.

Every ``torch`` file liftinv reads (training checkpoints, saved models, the inversion autoencoder cache,
``liftinv invert --model``) goes through :func:`load_torch_file`, which uses ``torch.load(...,
weights_only=True)``: tensors, numbers, strings, lists, tuples and dicts load; a pickled Python object (a whole
``nn.Module``, a crafted payload) is refused before any of its code runs. Models travel as weights plus a plain
configuration. Every file liftinv writes goes through :func:`save_torch_file`: written to a temporary file in
the same folder, then renamed over the target, so a crash or a full disk never leaves a half-written file and
never destroys the previous one.

See Also
--------
liftinv.training.save_checkpoint, liftinv.training.load_checkpoint : training checkpoints (these functions).
liftinv.unrolled.save_model, liftinv.unrolled.load_model : unrolled networks (weights + configuration).
"""

from __future__ import annotations

import glob
import io
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "load_torch_file",
    "save_bytes_file",
    "remove_stale_temporaries",
    "save_torch_file",
    "save_text_file",
    "user_cache_dir",
    "UnsafeFileError",
]


class UnsafeFileError(ValueError):
    """A file that is not a weights-only ``torch`` file (it would need code to load, or is not a torch file)."""


def _reason(path: Path, exc: BaseException) -> str:
    """One line saying why ``torch.load(weights_only=True)`` failed, without torch's advice to unpickle."""
    if path.stat().st_size == 0:
        return "the file is empty"
    text = str(exc)
    found = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    detail = (
        found.group(1).strip() if found else next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    )
    if "Unsupported global" in detail:
        name = re.search(r"GLOBAL (\S+)", detail)
        return (
            f"it needs code to load (it refers to the Python object {name.group(1) if name else '?'}: a pickled "
            "object, e.g. a whole nn.Module); liftinv reads only weights-only files (tensors, numbers, strings, "
            "lists, dicts) and never runs code from a file"
        )
    return f"not a torch file of weights ({type(exc).__name__}{': ' + detail if detail else ''})"


def load_torch_file(path: str | os.PathLike, what: str = "file") -> Any:
    """Read a ``torch.save`` file with ``weights_only=True`` onto the CPU.

    Parameters
    ----------
    path : path
        The file.
    what : str
        How error messages name it (e.g. ``"checkpoint"``, ``"--model"``).

    Returns
    -------
    object
        The stored tensors / containers.

    Raises
    ------
    FileNotFoundError
        When ``path`` is not a file.
    UnsafeFileError
        (a ``ValueError``) in one line, when the file is empty, not a torch file, or would need code to load.

    Examples
    --------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> _ = save_torch_file({"w": torch.ones(2)}, os.path.join(d, "a.pt"))
    >>> load_torch_file(os.path.join(d, "a.pt"))["w"]
    tensor([1., 1.])
    >>> class Payload:
    ...     def __reduce__(self):
    ...         return (print, ("this never runs",))
    >>> torch.save(Payload(), os.path.join(d, "b.pt"))
    >>> load_torch_file(os.path.join(d, "b.pt"), "model")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    liftinv.files.UnsafeFileError: model '...b.pt' is refused: it needs code to load ...
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist or is not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure becomes one line naming the file
        raise UnsafeFileError(f"{what} {str(path)!r} is refused: {_reason(path, exc)}") from None


def save_bytes_file(payload: bytes, path: str | os.PathLike) -> Path:
    """Write ``payload`` to ``path`` atomically: a temporary file in the same folder (created if needed), then
    renamed over ``path``; on any failure the temporary file is removed and ``path`` is untouched.

    The one atomic writer of liftinv: :func:`save_torch_file`, :func:`save_text_file` and the measurement
    writers of :mod:`liftinv.datasets.measurements` go through it. Returns ``Path(path)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        _default_permissions(tmp)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    remove_stale_temporaries(path)
    return path


#: a temporary file of :func:`save_bytes_file` older than this (seconds) belongs to a writer that was killed
#: (``kill -9``, power loss): a live writer holds one only while it writes bytes it already has in memory
STALE_TEMPORARY_S = 600.0


def remove_stale_temporaries(path: str | os.PathLike, older_than_s: float = STALE_TEMPORARY_S) -> list[Path]:
    """Delete the temporary files that :func:`save_bytes_file` left next to ``path`` when its writer was killed.

    They are named ``.<name>.<random>.tmp`` in the folder of ``path``; only those not modified for
    ``older_than_s`` seconds are removed (a concurrent writer's fresh one is left alone). Called after every
    successful write, so a run that was killed mid-write leaves nothing behind once it writes again.

    Returns
    -------
    list of Path
        The files removed.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> stale = folder / ".model.pt.abc123.tmp"
    >>> _ = stale.write_bytes(b"half-written")
    >>> os.utime(stale, (0, 0))  # as if written long ago by a killed process
    >>> _ = save_text_file("{}", folder / "model.pt")
    >>> stale.exists()
    False
    """
    path = Path(path)
    now = time.time()
    removed = []
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if now - candidate.stat().st_mtime > older_than_s:
                candidate.unlink()
                removed.append(candidate)
        except OSError:  # gone meanwhile, or not ours to delete: leave it
            continue
    return removed


def save_torch_file(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` atomically (:func:`save_bytes_file`); ``path`` is untouched when ``obj``
    cannot be saved. Returns ``Path(path)``."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return save_bytes_file(buffer.getvalue(), path)


def save_text_file(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`save_bytes_file`). Returns ``Path(path)``."""
    return save_bytes_file(text.encode("utf-8"), path)


def user_cache_dir() -> Path:
    """liftinv's per-user cache folder, ``$XDG_CACHE_HOME/liftinv`` or ``~/.cache/liftinv`` (created, mode 0700:
    not the shared temporary folder, where another user could plant a file for liftinv to read)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    folder = Path(base) / "liftinv"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def _default_permissions(path: str) -> None:
    """mkstemp's 0600 -> the permissions ``open()`` would give (0666 minus the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
