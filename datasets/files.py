"""Readers for local dataset files (nothing is downloaded): IDX (MNIST, Fashion-MNIST) and CIFAR-10 batches.

* IDX (LeCun et al.): a 4-byte magic number ``0x00 0x00 <type> <ndim>``, ``ndim`` big-endian uint32 sizes,
  then the data big-endian; raw or gzip-compressed (detected from the content, not the file name).
* CIFAR-10 "python version" (Krizhevsky 2009): pickled dicts with ``b"data"`` (``N x 3072`` uint8, channel-
  major) and ``b"labels"``. Pickles can run code, so they are read with an unpickler that only allows the
  few NumPy constructors these files need.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["load_idx", "load_mnist", "load_cifar10", "IDX_DTYPES"]

#: IDX type code -> NumPy dtype (big-endian)
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_IDX_FORMAT = (
    "an IDX file (magic 0x00 0x00 <type> <ndim>, big-endian uint32 sizes, then the data), raw or .gz"
)


def _read_bytes(path: str | os.PathLike, what: str, expected: str) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no such file: {path} (expected {expected})")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(
                f"{what}: {path} looks gzip-compressed but cannot be decompressed ({exc})"
            ) from None
    return raw


def load_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed) into a NumPy array.

    Parameters
    ----------
    path : str or path-like
        File name, e.g. ``train-images-idx3-ubyte`` or ``train-images-idx3-ubyte.gz``.

    Returns
    -------
    numpy.ndarray
        Array with the file's shape and native-endian dtype (uint8 for MNIST).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not a valid IDX file (bad magic number, unknown type, truncated or too long data).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> header = bytes([0, 0, 0x08, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    >>> with tempfile.NamedTemporaryFile(suffix=".idx", delete=False) as f:
    ...     _ = f.write(header + bytes(range(6)))
    >>> load_idx(f.name).tolist()
    [[0, 1, 2], [3, 4, 5]]

    References
    ----------
    LeCun, Cortes & Burges, The MNIST database of handwritten digits (file format section).
    """
    raw = _read_bytes(path, "load_idx", _IDX_FORMAT)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"load_idx: {path} is not {_IDX_FORMAT}: bad magic number {raw[:4]!r}")
    type_code, ndim = raw[2], raw[3]
    if type_code not in IDX_DTYPES:
        raise ValueError(
            f"load_idx: {path} has unknown IDX type code 0x{type_code:02x} (expected one of "
            f"{', '.join(f'0x{c:02x}' for c in IDX_DTYPES)})"
        )
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise ValueError(f"load_idx: {path} is truncated: the header announces {ndim} dimensions")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header_end != expected:
        raise ValueError(
            f"load_idx: {path} has {len(raw) - header_end} data bytes, but its header announces shape "
            f"{list(shape)} of {dtype.name} ({expected} bytes)"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header_end).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory: Path, names: list[str], what: str) -> Path:
    candidates = []
    for folder in (
        directory,
        directory / "raw",
        directory / "MNIST" / "raw",
        directory / "FashionMNIST" / "raw",
    ):
        for name in names:
            candidate = folder / name
            candidates.append(candidate)
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"{what}: none of these files exists: {', '.join(str(c) for c in candidates[:4])} (also looked in "
        f"raw/, MNIST/raw/, FashionMNIST/raw/); expected the IDX files of MNIST or Fashion-MNIST"
    )


def load_mnist(directory: str | os.PathLike, split: str = "train") -> tuple[Tensor, Tensor]:
    """Load MNIST or Fashion-MNIST from local IDX files (both use the same file names).

    Looks in ``directory``, ``directory/raw``, ``directory/MNIST/raw`` and ``directory/FashionMNIST/raw``
    for ``{train,t10k}-images-idx3-ubyte`` and ``{train,t10k}-labels-idx1-ubyte`` (optionally ``.gz``).

    Parameters
    ----------
    directory : str or path-like
        Folder holding the files.
    split : {"train", "test"}, default "train"
        Which split.

    Returns
    -------
    images : Tensor
        float32 ``[N, 1, 28, 28]`` in ``[0, 1]``.
    labels : Tensor
        int64 ``[N]``.

    Raises
    ------
    FileNotFoundError
        If the files are missing.
    ValueError
        For a bad split, malformed files, or images and labels of different lengths.

    References
    ----------
    LeCun et al., Gradient-based learning applied to document recognition, Proc. IEEE 86, 1998;
    Xiao, Rasul & Vollgraf, Fashion-MNIST, arXiv 1708.07747, 2017.
    """
    if split not in ("train", "test"):
        raise ValueError(f"load_mnist: split must be 'train' or 'test', got {split!r}")
    prefix = "train" if split == "train" else "t10k"
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"load_mnist: no such directory: {directory} (expected a folder with MNIST IDX files)"
        )
    image_path = _find(
        directory, [f"{prefix}-images-idx3-ubyte", f"{prefix}-images-idx3-ubyte.gz"], "load_mnist"
    )
    label_path = _find(
        directory, [f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels-idx1-ubyte.gz"], "load_mnist"
    )
    images, labels = load_idx(image_path), load_idx(label_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"load_mnist: {image_path} should hold uint8 images [N, H, W], got {images.dtype} {list(images.shape)}"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(
            f"load_mnist: {label_path} should hold {len(images)} labels (one per image), got shape {list(labels.shape)}"
        )
    x = torch.from_numpy(images.astype(np.float32) / 255.0)[:, None]
    return x, torch.from_numpy(labels.astype(np.int64))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the NumPy constructors CIFAR batches need (no arbitrary code)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


_CIFAR_FORMAT = "a CIFAR-10 python batch: a pickled dict with b'data' (N x 3072 uint8) and b'labels' (N ints)"


def _load_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = _read_bytes(path, "load_cifar10", _CIFAR_FORMAT)
    try:
        batch = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # any unpickling failure means a malformed file
        raise ValueError(
            f"load_cifar10: {path} is not {_CIFAR_FORMAT} ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(batch, dict):
        raise ValueError(f"load_cifar10: {path} is not {_CIFAR_FORMAT} (got a {type(batch).__name__})")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise ValueError(f"load_cifar10: {path} is not {_CIFAR_FORMAT} (keys: {sorted(map(str, batch))})")
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8 or labels.shape != (data.shape[0],):
        raise ValueError(
            f"load_cifar10: {path} is not {_CIFAR_FORMAT} (data {data.dtype} {list(data.shape)}, "
            f"labels {list(labels.shape)})"
        )
    return data, labels


def load_cifar10(
    directory: str | os.PathLike, split: str = "train", *, grayscale: bool = False
) -> tuple[Tensor, Tensor]:
    """Load CIFAR-10 from the local "python version" batches.

    Looks for ``data_batch_1`` ... ``data_batch_5`` (train) or ``test_batch`` (test) in ``directory`` or
    ``directory/cifar-10-batches-py``.

    Parameters
    ----------
    directory : str or path-like
        Folder holding the batch files.
    split : {"train", "test"}, default "train"
        Which split. A partial training set (only some of the five batches) is an error.
    grayscale : bool, default False
        Convert to luminance ``0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601), giving one channel.

    Returns
    -------
    images : Tensor
        float32 ``[N, 3, 32, 32]`` (or ``[N, 1, 32, 32]``) in ``[0, 1]``.
    labels : Tensor
        int64 ``[N]``.

    Raises
    ------
    FileNotFoundError
        If a batch file is missing.
    ValueError
        For a bad split or a malformed batch file.

    References
    ----------
    Krizhevsky, Learning multiple layers of features from tiny images, tech. report, 2009.
    """
    if split not in ("train", "test"):
        raise ValueError(f"load_cifar10: split must be 'train' or 'test', got {split!r}")
    directory = Path(directory)
    if (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"
    if not directory.is_dir():
        raise FileNotFoundError(
            f"load_cifar10: no such directory: {directory} (expected the CIFAR-10 python batches)"
        )
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    datas, labels = [], []
    for name in names:
        data, label = _load_cifar_batch(directory / name)
        datas.append(data)
        labels.append(label)
    images = np.concatenate(datas).reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    x = torch.from_numpy(images)
    if grayscale:
        weights = torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)
        x = (x * weights).sum(dim=1, keepdim=True)
    return x, torch.from_numpy(np.concatenate(labels).astype(np.int64))
