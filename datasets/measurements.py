"""Measurements: simulated pairs, files in and out, operators from JSON, parameter choice without truth.

:class:`MeasurementDataset` (deterministic ``(x, y)`` pairs); :func:`save_measurements` /
:func:`load_measurements` (``.npy``, ``.npz``, TIFF, PNG files, or a folder as a batch); :func:`save_operator_config`
/ :func:`load_operator` (``describe()`` as JSON and back); :func:`estimate_noise` and :func:`discrepancy_alpha`
(noise level and regularisation weight from the measurements alone). Files are written to a temporary file in
the target folder and renamed into place (as :func:`liftinv.files.save_text_file`).
"""

from __future__ import annotations

import inspect
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from liftinv.files import save_bytes_file, save_text_file

from .images import _first_line

__all__ = [
    "MeasurementDataset",
    "MEASUREMENT_EXTENSIONS",
    "save_measurements",
    "load_measurements",
    "save_operator_config",
    "load_operator",
    "estimate_noise",
    "discrepancy_alpha",
]

#: file extensions read by :func:`load_measurements` and written by :func:`save_measurements`
MEASUREMENT_EXTENSIONS: tuple[str, ...] = (".npy", ".npz", ".tif", ".tiff", ".png")


class MeasurementDataset(Dataset):
    """Pairs ``(x_i, y_i)`` with ``y_i = N(A x_i)``, the noise of sample ``i`` fixed by ``(seed, i)``.

    The measurements are ``operator.measure(x_i, noise, seed=sample_seed(i))`` (the operator's own
    simulation, so inpainting keeps missing pixels at 0), or ``A x_i`` without noise.

    The same index always gives the same noise, in any order, in any worker process and on any device
    (noise is drawn on the CPU with a generator seeded from ``(seed, i)`` through
    :class:`numpy.random.SeedSequence`), so a dataset is reproducible and a training/validation split
    never sees new noise.

    Parameters
    ----------
    images : Tensor or Dataset
        ``[N, C, H, W]`` tensor, or a dataset whose items are ``[C, H, W]`` tensors (or tuples whose first
        entry is one, e.g. :class:`ImageFolder` with labels).
    operator : liftinv.operators.LinearOperator
        Forward operator ``A``.
    noise : NoiseModel or float, optional
        Noise model called as ``noise(y, seed=...)`` (e.g. :class:`liftinv.operators.GaussianNoise`);
        a float ``s`` means Gaussian noise of standard deviation ``s``; ``None`` means no noise.
    seed : int, default 0
        Base seed.

    Examples
    --------
    >>> from liftinv.operators import Blur
    >>> data = MeasurementDataset(torch.rand(4, 1, 16, 16), Blur(16, sigma=1.0), noise=0.05, seed=0)
    >>> x, y = data[2]
    >>> torch.equal(y, data[2][1]), tuple(y.shape)
    (True, (1, 16, 16))
    """

    def __init__(self, images: Tensor | Dataset, operator: Any, noise: Any = None, seed: int = 0) -> None:
        from liftinv.operators import GaussianNoise, LinearOperator

        if not isinstance(operator, LinearOperator):
            raise TypeError(
                f"MeasurementDataset: operator must be a liftinv LinearOperator, got {type(operator).__name__}"
            )
        if isinstance(noise, (int, float)) and not isinstance(noise, bool):
            if not math.isfinite(noise) or noise < 0:
                raise ValueError(
                    f"MeasurementDataset: noise level must be a finite number >= 0, got {noise!r}"
                )
            noise = GaussianNoise(float(noise))
        elif noise is not None and not callable(noise):
            raise TypeError(f"MeasurementDataset: noise must be a NoiseModel, a float or None, got {noise!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"MeasurementDataset: seed must be an int, got {seed!r}")
        if isinstance(images, Tensor):
            if images.dim() != 4 or tuple(images.shape[1:]) != tuple(operator.image_size):
                c, h, w = operator.image_size
                raise ValueError(
                    f"MeasurementDataset: expected images of shape [N, {c}, {h}, {w}] for the operator, "
                    f"got {list(images.shape)}"
                )
            if not images.is_floating_point():
                raise TypeError(f"MeasurementDataset: images must be floating point, got {images.dtype}")
            if not bool(torch.isfinite(images).all()):
                raise ValueError("MeasurementDataset: images contain non-finite values (nan or inf)")
        elif not isinstance(images, Dataset):
            raise TypeError(
                f"MeasurementDataset: images must be a Tensor [N, C, H, W] or a Dataset, got {type(images).__name__}"
            )
        self.images = images
        self.operator = operator
        self.noise = noise
        self.seed = seed

    def __len__(self) -> int:
        return len(self.images)

    def sample_seed(self, index: int) -> int:
        """Seed of the noise of sample ``index`` (a hash of ``(seed, index)``)."""
        return int(np.random.SeedSequence([self.seed, int(index)]).generate_state(1, dtype=np.uint64)[0] >> 1)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"MeasurementDataset: index {index} out of range for {len(self)} samples")
        item = self.images[index]
        x = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(x, Tensor) or tuple(x.shape) != tuple(self.operator.image_size):
            raise ValueError(
                f"MeasurementDataset: item {index} should be an image of shape {list(self.operator.image_size)}, "
                f"got {list(x.shape) if isinstance(x, Tensor) else type(x).__name__}"
            )
        with torch.no_grad():
            if self.noise is None:
                y = self.operator.A(x[None])
            else:
                y = self.operator.measure(x[None], self.noise, seed=self.sample_seed(index))
        return x, y[0]


# ------------------------------------------------------------------------------------ measurement files
_EXPECTED_FILES = ".npy, .npz, .tif, .tiff or .png"


def _check_array(array: np.ndarray, where: str) -> None:
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{where}: expected real numbers, got dtype {array.dtype}")
    if not 2 <= array.ndim <= 4 or array.size == 0:
        raise ValueError(
            f"{where}: expected a non-empty array [H, W], [C, H, W] or [B, C, H, W], got shape {list(array.shape)}"
        )


def _png_bytes(array: np.ndarray, where: str) -> bytes:
    from PIL import Image

    if any(s != 1 for s in array.shape[:-2]):
        raise ValueError(
            f"{where}: a PNG holds one grayscale image [H, W], got shape {list(array.shape)}; write .npy, "
            ".npz or .tif for batches and channels"
        )
    values = array.reshape(array.shape[-2:]).astype(np.float64)
    if not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
        raise ValueError(
            f"{where}: a PNG holds values in [0, 1], but the values range over [{values.min():.4g}, "
            f"{values.max():.4g}]; write .npy, .npz or .tif to keep them (or clip them first)"
        )
    buffer = io.BytesIO()
    Image.fromarray(np.round(values * 65535).astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def save_measurements(path: str | os.PathLike, y: Tensor | np.ndarray) -> Path:
    """Write measurements (or images) to a ``.npy``, ``.npz``, ``.tif``/``.tiff`` or ``.png`` file, atomically.

    ``.npy``, ``.npz`` (one array named ``y``) and TIFF (needs tifffile) keep the array as it is (shape and
    dtype). A PNG holds one 16-bit grayscale image ``[H, W]`` (leading dimensions of size 1 are dropped)
    with values in ``[0, 1]`` stored as ``round(v * 65535)``: PNG quantises, to steps of ``1 / 65535``;
    values outside ``[0, 1]`` (e.g. noisy measurements) are refused rather than clipped.

    Parameters
    ----------
    path : path
        The file; its extension picks the format (:data:`MEASUREMENT_EXTENSIONS`). Written to a temporary
        file in the same folder (created if needed), then renamed over ``path``.
    y : Tensor or numpy.ndarray
        Real array ``[H, W]``, ``[C, H, W]`` or ``[B, C, H, W]``.

    Returns
    -------
    pathlib.Path
        ``Path(path)``.

    Raises
    ------
    ValueError
        For another extension, a bad shape or dtype, or (PNG) several images or values outside ``[0, 1]``.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> y = torch.rand(2, 1, 8, 8)
    >>> torch.equal(load_measurements(save_measurements(f"{folder}/y.npz", y)), y)
    True
    >>> png = load_measurements(save_measurements(f"{folder}/y.png", y[0, 0]))  # quantised to 1/65535
    >>> png.shape, bool((png - y[:1]).abs().max() <= 0.5 / 65535 + 1e-7)
    (torch.Size([1, 1, 8, 8]), True)
    """
    path, where = Path(path), "save_measurements: y"
    suffix = path.suffix.lower()
    if suffix not in MEASUREMENT_EXTENSIONS:
        raise ValueError(
            f"save_measurements: path {str(path)!r} has the extension {suffix or '(none)'!r}; expected "
            f"{_EXPECTED_FILES}"
        )
    if isinstance(y, Tensor):
        y = y.detach().cpu()
        y = (y.float() if y.dtype == torch.bfloat16 else y).numpy()
    if not isinstance(y, np.ndarray):
        raise TypeError(f"{where}: expected a torch.Tensor or a numpy array, got {type(y).__name__}")
    _check_array(y, where)
    buffer = io.BytesIO()
    if suffix == ".png":
        return save_bytes_file(_png_bytes(y, where), path)
    if suffix == ".npy":
        np.save(buffer, y, allow_pickle=False)
    elif suffix == ".npz":
        np.savez(buffer, y=y)
    else:
        try:
            import tifffile
        except ImportError:
            raise ValueError(f"{where}: writing TIFF files needs tifffile (pip install tifffile)") from None
        tifffile.imwrite(buffer, np.ascontiguousarray(y))
    return save_bytes_file(buffer.getvalue(), path)


def _read_arrays(path: Path) -> tuple[dict[str, np.ndarray], str | None]:
    """The arrays of a file (an ``.npz`` may hold several), and a PNG's mode."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}, None
    if suffix == ".png":
        from PIL import Image

        with Image.open(path) as image:
            return {"y": np.asarray(image)}, image.mode
    if suffix == ".npy":
        return {"y": np.load(path, allow_pickle=False)}, None
    try:
        import tifffile

        return {"y": tifffile.imread(path)}, None
    except ImportError:
        from skimage import io as skimage_io

        return {"y": skimage_io.imread(path)}, None


#: PNG mode -> the value of 1.0 (8- and 16-bit grayscale)
_PNG_SCALES = {"1": 1, "L": 255, "I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I": 65535}


def _read_file(path: Path, what: str) -> np.ndarray:
    """One measurement file as a ``[B, C, H, W]`` float32 array (errors name ``what`` and the file)."""
    where, suffix = f"{what} {str(path)!r}", path.suffix.lower()
    if suffix not in MEASUREMENT_EXTENSIONS:
        raise ValueError(
            f"{where} has the extension {suffix or '(none)'!r}; expected {_EXPECTED_FILES} (or a folder of them)"
        )
    try:
        arrays, mode = _read_arrays(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes one line naming the file
        raise ValueError(f"{where}: cannot read it as a {suffix} file ({_first_line(exc)})") from None
    if "y" not in arrays and len(arrays) != 1:
        raise ValueError(f"{where} holds the arrays {list(arrays)}; expected one named 'y' or a single array")
    array = arrays["y"] if "y" in arrays else next(iter(arrays.values()))
    if suffix == ".png":
        if mode not in _PNG_SCALES:
            raise ValueError(f"{where} is a PNG of mode {mode}; expected an 8- or 16-bit grayscale PNG")
        array = array.astype(np.float64) / _PNG_SCALES[mode]
    _check_array(array, where)
    array = array.reshape((1,) * (4 - array.ndim) + array.shape).astype(np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"{where}: contains non-finite values (nan or inf)")
    return array


def load_measurements(path: str | os.PathLike, *, what: str = "load_measurements: path") -> Tensor:
    """Read measurements from a file, or a folder of files stacked as a batch.

    Parameters
    ----------
    path : path
        A ``.npy``, ``.npz`` (the array named ``y``, or its only array), ``.tif``/``.tiff`` (tifffile, else
        scikit-image) or ``.png`` (8- or 16-bit grayscale, scaled to ``[0, 1]``: ``v / 255`` or
        ``v / 65535``) file; or a folder: all its files with those extensions (not hidden ones, nor those of
        sub-folders), sorted by name and stacked along the batch dimension (all of one shape ``[C, H, W]``).
        Arrays are ``[H, W]``, ``[C, H, W]`` or ``[B, C, H, W]`` (channels first); files other than PNG
        keep their values (integers are not scaled).
    what : str
        How error messages name ``path`` (e.g. ``"--measurements"``).

    Returns
    -------
    Tensor
        float32 ``[B, C, H, W]``: a 2-D array gives ``[1, 1, H, W]``, a 3-D array ``[1, C, H, W]``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        In one line: another extension, an unreadable file, a bad shape or dtype, non-finite values, a
        folder without measurement files or with files of different shapes.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> _ = save_measurements(f"{folder}/a.npy", torch.zeros(16, 16))
    >>> _ = save_measurements(f"{folder}/b.npy", torch.ones(1, 1, 16, 16))
    >>> load_measurements(f"{folder}/a.npy").shape, load_measurements(folder)[:, 0, 0, 0].tolist()
    (torch.Size([1, 1, 16, 16]), [0.0, 1.0])
    >>> load_measurements(f"{folder}/c.npy")
    Traceback (most recent call last):
    ...
    FileNotFoundError: load_measurements: path '.../c.npy' does not exist
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what}: expected a file or folder path, got {type(path).__name__}")
    path = Path(path)
    if not path.is_dir():
        if not path.exists():
            raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
        return torch.from_numpy(_read_file(path, what))
    files = sorted(
        (
            p
            for p in path.iterdir()
            if p.suffix.lower() in MEASUREMENT_EXTENSIONS and not p.name.startswith(".")
        ),
        key=lambda p: p.name,
    )
    files = [p for p in files if p.is_file()]
    if not files:
        raise ValueError(f"{what} {str(path)!r} is a folder without files ending in {_EXPECTED_FILES}")
    arrays = [_read_file(p, what) for p in files]
    for file, array in zip(files[1:], arrays[1:]):
        if array.shape[1:] != arrays[0].shape[1:]:
            raise ValueError(
                f"{what} {str(path)!r}: the files differ in shape: {files[0].name} is {list(arrays[0].shape)}, "
                f"{file.name} is {list(array.shape)}; expected files of one shape [C, H, W]"
            )
    return torch.from_numpy(np.concatenate(arrays))


# ---------------------------------------------------------------------------------- operator configs
_NOT_PARAMETERS = ("image_size", "noise_model")
_CONFIG_EXAMPLE = '{"name": "blur", "image_size": [1, 64, 64], "sigma": 2.0}'


def save_operator_config(path: str | os.PathLike, operator: Any) -> Path:
    """Write ``operator.describe()`` as JSON (one key a line), atomically; :func:`load_operator` rebuilds it.

    The description is complete for every operator of :data:`liftinv.operators.OPERATORS` (a user blur
    kernel or inpainting mask is stored as nested lists), so the rebuilt operator is the same.

    Parameters
    ----------
    path : path
        The JSON file (its folder is created if needed).
    operator : LinearOperator
        An operator of the registry.

    Returns
    -------
    pathlib.Path
        ``Path(path)``.

    Raises
    ------
    ValueError
        For an operator that :func:`liftinv.operators.make_operator` cannot rebuild (e.g. an ODL operator).

    Examples
    --------
    >>> import tempfile
    >>> from liftinv.operators import make_operator
    >>> op = make_operator("inpainting", 16, keep_rate=0.3, seed=4)
    >>> path = save_operator_config(f"{tempfile.mkdtemp()}/operator.json", op)
    >>> print(path.read_text().strip())
    {
      "name": "inpainting",
      "image_size": [1, 16, 16],
      "mask": "random",
      "keep_rate": 0.3,
      "seed": 4
    }
    >>> torch.equal(load_operator(path).mask, op.mask)
    True
    """
    from liftinv.operators import ALIASES, OPERATORS

    if not callable(getattr(operator, "describe", None)):
        raise TypeError(f"save_operator_config: expected a liftinv operator, got {type(operator).__name__}")
    description = dict(operator.describe())
    if ALIASES.get(description["name"], description["name"]) not in OPERATORS:
        raise ValueError(
            f"save_operator_config: a {description['name']!r} operator cannot be rebuilt from a config; "
            f"expected one of {', '.join(OPERATORS)}"
        )
    lines = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in description.items()]
    return save_text_file("{\n" + ",\n".join(lines) + "\n}\n", path)


def _read_config(config: Any, what: str) -> tuple[dict[str, Any], str]:
    """The description, and how errors name it."""
    if isinstance(config, dict):
        return dict(config), what
    if not isinstance(config, (str, os.PathLike)):
        raise TypeError(f"{what}: expected a JSON file path or a dict, got {type(config).__name__}")
    path = Path(config)
    where = f"{what} {str(path)!r}"
    if not path.is_file():
        raise FileNotFoundError(f"{where} does not exist or is not a file")
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"{where} is not a JSON file ({_first_line(exc)}); expected an object such as {_CONFIG_EXAMPLE}"
        ) from None
    if not isinstance(description, dict):
        raise ValueError(f"{where}: expected a JSON object such as {_CONFIG_EXAMPLE}")
    return description, where


def load_operator(config: str | os.PathLike | dict, *, what: str = "load_operator: config") -> Any:
    """Rebuild an operator from a JSON file or dict written by :func:`save_operator_config` (``describe()``).

    The config holds ``"name"`` (one of :data:`liftinv.operators.OPERATORS`, or an alias), ``"image_size"``
    and the operator's parameters (a user blur kernel or inpainting mask as nested lists, e.g. the mask of
    real measurements); ``liftinv.operators.make_operator(**config)`` builds it.

    Parameters
    ----------
    config : path or dict
        The JSON file, or the description itself.
    what : str
        How error messages name ``config`` (e.g. ``"--operator-config"``).

    Returns
    -------
    LinearOperator

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        In one line: not JSON, not an object, a missing ``"name"`` or ``"image_size"``, an unknown operator
        or parameter, or a parameter the operator refuses.

    Examples
    --------
    >>> load_operator({"name": "tomography", "image_size": [1, 32, 32], "angles": 12}).measurement_size
    (1, 46, 12)
    >>> load_operator({"name": "blur", "image_size": [1, 32, 32], "width": 2})
    Traceback (most recent call last):
    ...
    ValueError: load_operator: config: unknown parameter 'width' of operator blur; expected some of kernel, sigma, length, angle, boundary, rcond
    """
    from liftinv.operators import ALIASES, OPERATORS, make_operator

    description, where = _read_config(config, what)
    missing = " and ".join(repr(key) for key in ("name", "image_size") if key not in description)
    if missing:
        raise ValueError(f"{where}: missing {missing}; expected e.g. {_CONFIG_EXAMPLE}")
    name = description.pop("name")
    key = ALIASES.get(name, name) if isinstance(name, str) else None
    if key not in OPERATORS:
        raise ValueError(f"{where}: unknown operator {name!r}; expected one of {', '.join(OPERATORS)}")
    accepted = [p for p in inspect.signature(OPERATORS[key]).parameters if p not in _NOT_PARAMETERS]
    unknown = sorted(set(description) - {"image_size", *accepted})
    if unknown:
        expected = "some of " + ", ".join(accepted) if accepted else "no parameters"
        raise ValueError(
            f"{where}: unknown parameter{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))} of operator "
            f"{key}; expected {expected}"
        )
    try:
        return make_operator(key, **description)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {_first_line(exc)}") from None


# -------------------------------------------------------------------------- parameter choice without truth
def _measured(operator: Any, shape: Sequence[int]) -> np.ndarray:
    """Boolean ``[1, *shape]``: the entries the operator measures (all but the zeros of a mask)."""
    support = getattr(operator, "support", None)
    if isinstance(support, Tensor):
        return np.broadcast_to(support.detach().cpu().numpy(), (1, *shape))
    return np.ones((1, *shape), dtype=bool)


def estimate_noise(y: Tensor, operator: Any = None) -> Tensor:
    """Noise standard deviation of each measurement, from the measurement alone (no ground truth).

    For white noise of standard deviation ``sigma``, the normalised second differences
    ``d_i = (y_(i-1) - 2 y_i + y_(i+1)) / sqrt(6)`` have standard deviation ``sigma``, while a smooth signal
    (a blurred image, a sinogram along its detectors) adds little; the estimate is their median absolute
    deviation, ``sigma ~ median(|d|) / 0.6745`` (Donoho & Johnstone 1994; 0.6745 is the median of
    ``|N(0, 1)|``). Differences run along both axes of image-shaped measurements (blur, inpainting,
    denoising), along the detectors of a sinogram (tomography; its angles are sampled coarsely), and only
    over triples of measured entries (inpainting: observed pixels). Edges and texture bias it upwards, in
    an unblurred image (inpainting, denoising) more than in a blurred one.

    Parameters
    ----------
    y : Tensor
        Measurements ``[B, C, M, N]`` (``[B, *operator.measurement_size]``).
    operator : LinearOperator, optional
        The forward operator: the measured entries and the axes. Default: every entry, both axes.

    Returns
    -------
    Tensor
        float64 ``[B]``: one estimate per measurement.

    Raises
    ------
    ValueError
        For another shape, or a measurement without three neighbouring measured entries.

    Examples
    --------
    >>> from liftinv.operators import make_operator
    >>> op = make_operator("inpainting", 64, keep_rate=0.7)
    >>> y = op.measure(torch.full((2, 1, 64, 64), 0.5), 0.05, seed=0)
    >>> [round(s, 2) for s in estimate_noise(y, op).tolist()]
    [0.05, 0.05]
    """
    if not isinstance(y, Tensor) or not y.is_floating_point():
        raise TypeError(f"estimate_noise: y must be a floating-point torch.Tensor, got {type(y).__name__}")
    expected = list(operator.measurement_size) if operator is not None else ["C", "M", "N"]
    if y.dim() != 4 or (operator is not None and list(y.shape[1:]) != expected):
        raise ValueError(
            f"estimate_noise: expected y of shape [B, {', '.join(map(str, expected))}], got {list(y.shape)}"
        )
    values, measured = y.detach().to("cpu", torch.float64).numpy(), _measured(operator, y.shape[1:])
    axes = (2,) if getattr(operator, "name", None) == "tomography" else (2, 3)
    estimates = []
    for i in range(values.shape[0]):
        found = []
        for axis in (a for a in axes if values.shape[a] >= 3):
            n = values.shape[axis]
            v, m = (
                [np.take(t, range(k, n - 2 + k), axis=axis) for k in range(3)]
                for t in (values[i : i + 1], measured)
            )
            found.append(np.abs(v[0] - 2 * v[1] + v[2])[m[0] & m[1] & m[2]] / math.sqrt(6.0))
        found = np.concatenate(found) if found else np.empty(0)
        if found.size == 0:
            raise ValueError(f"estimate_noise: measurement {i} has no 3 neighbouring measured entries")
        estimates.append(float(np.median(found)) / 0.6745)
    return torch.tensor(estimates, dtype=torch.float64)


_RULE = "largest alpha of the grid with ||A x_alpha - y|| <= tau * sigma * sqrt(m)"


def discrepancy_alpha(
    y: Tensor,
    operator: Any,
    method: str = "tv",
    sigma: float | Sequence[float] | Tensor | None = None,
    *,
    tau: float = 1.0,
    grid: Sequence[float] | None = None,
    max_iter: int | None = None,
    tol: float | None = None,
    bounds: Sequence[float | None] | None = None,
    progress: bool = False,
) -> tuple[list[float], dict[str, Any]]:
    """Regularisation weight of each measurement by Morozov's discrepancy principle (no ground truth).

    Rule: for a measurement ``y`` with ``m`` measured entries and noise level ``sigma``, ``alpha`` is the
    largest weight of a geometric grid whose reconstruction ``x_alpha`` (:func:`liftinv.operators.reconstruct`
    from zeros) fits the data to the noise level, ``||A x_alpha - y|| <= tau * sigma * sqrt(m)`` (for white
    noise ``E ||noise||^2 = sigma^2 m``). The grid is scanned from its largest weight down and the scan
    stops at the first that meets the bound. If none does (``sigma`` under-estimated, or 0), the smallest
    weight is taken and ``record["met"]`` says so. Each measurement of a batch gets its own ``alpha``.

    Parameters
    ----------
    y : Tensor
        Measurements ``[B, *operator.measurement_size]``.
    operator : LinearOperator
        The forward operator ``A``.
    method : {"tv", "tikhonov"}
        Regulariser (``"pinv"`` has no weight).
    sigma : float, sequence of B floats or Tensor, optional
        Noise standard deviation; default :func:`estimate_noise` of each measurement.
    tau : float, default 1.0
        Safety factor of the bound (larger values give larger weights).
    grid : sequence of float, optional
        The weights to try (scanned from the largest). Default, per measurement:
        ``default_alpha(operator, method, sigma) * 2^k`` for ``k = 4, 3, ..., -8``
        (:func:`liftinv.operators.default_alpha`).
    max_iter, tol, bounds, progress
        Passed to :func:`liftinv.operators.reconstruct`.

    Returns
    -------
    alphas : list of float
        The weight of each measurement.
    record : dict
        ``"rule"`` (in words) and ``"tau"``; per measurement ``"sigma"``, ``"m"``, ``"target"``
        (``tau sigma sqrt(m)``), ``"grid"`` (descending), ``"residuals"`` (``||A x_alpha - y||`` of the
        weights tried, in grid order) and ``"met"``; ``"x"``: the reconstructions ``[B, C, H, W]`` at the
        chosen weights.

    Examples
    --------
    >>> from liftinv.datasets import load_image
    >>> from liftinv.operators import make_operator
    >>> op = make_operator("blur", 32, sigma=1.0)
    >>> y = op.measure(load_image("camera", 32), 0.05, seed=0)
    >>> alphas, record = discrepancy_alpha(y, op, "tv", max_iter=100)
    >>> bool(record["residuals"][0][-1] <= record["target"][0]), len(record["residuals"][0]) > 1
    (True, True)

    References
    ----------
    Morozov, On the solution of functional equations by the method of regularization, Soviet Math. Dokl. 7,
    1966. Engl, Hanke & Neubauer, *Regularization of Inverse Problems*, Kluwer 1996, section 4.3.
    """
    from liftinv.operators import default_alpha, reconstruct

    if method not in ("tv", "tikhonov"):
        raise ValueError(f"discrepancy_alpha: method must be 'tv' or 'tikhonov', got {method!r}")
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau <= 0:
        raise ValueError(f"discrepancy_alpha: tau must be a finite number > 0, got {tau!r}")
    if grid is not None:
        grid = sorted((float(a) for a in grid), reverse=True)
        if not grid or not all(math.isfinite(a) and a >= 0 for a in grid):
            raise ValueError(f"discrepancy_alpha: grid must hold finite weights >= 0, got {grid}")
    sigma = estimate_noise(y, operator) if sigma is None else sigma  # (it and reconstruct check y)
    try:
        levels = [float(s) for s in np.ravel(sigma.detach().cpu() if isinstance(sigma, Tensor) else sigma)]
    except (TypeError, ValueError):
        levels = []
    levels = levels * y.shape[0] if len(levels) == 1 else levels
    if len(levels) != y.shape[0] or not all(math.isfinite(s) and s >= 0 for s in levels):
        raise ValueError(f"discrepancy_alpha: sigma must be one or {y.shape[0]} numbers >= 0, got {sigma!r}")
    measured = int(_measured(operator, operator.measurement_size).sum())
    keys = ("sigma", "m", "target", "grid", "residuals", "met")
    record: dict[str, Any] = {"rule": _RULE, "tau": float(tau), **{key: [] for key in keys}}
    alphas, images = [], []
    for i, level in enumerate(levels):
        weights = grid or [default_alpha(operator, method, level) * 2.0**k for k in range(4, -9, -1)]
        target, residuals = tau * level * math.sqrt(measured), []
        for alpha in weights:
            kwargs = {"max_iter": max_iter, "tol": tol, "bounds": bounds, "progress": progress}
            x = reconstruct(y[i : i + 1], operator, method, alpha=alpha, **kwargs).x
            with torch.no_grad():
                residuals.append(float((operator.A(x) - y[i : i + 1]).norm()))
            if residuals[-1] <= target:
                break
        alphas.append(alpha)
        images.append(x)
        for key, value in zip(
            keys, (level, measured, target, list(weights), residuals, residuals[-1] <= target)
        ):
            record[key].append(value)
    record["x"] = torch.cat(images)
    return alphas, record
