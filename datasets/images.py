"""Single images: scikit-image's bundled images, generated phantoms, or image files; folders of images.

The one image-file list (:data:`IMAGE_EXTENSIONS`, :func:`list_images`) and the one grayscale image loader
(:func:`load_image`) of liftinv.

Only the scikit-image images that ship with the package are listed in :data:`BUNDLED_IMAGES` (checked
with scikit-image 0.26: they load offline). ``brain``, ``cells3d``, ``eagle``, ``human_mitosis``,
``kidney``, ``lily``, ``nickel_solidification``, ``palisades_of_vogt``, ``protein_transport``, ``skin``
and ``vortex`` need a download and are deliberately absent; ``binary_blobs`` is random and ``lfw_subset``
is a stack, so they are absent too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .phantoms import _size_pair, random_phantoms, shepp_logan

__all__ = [
    "BUNDLED_IMAGES",
    "GENERATED_IMAGES",
    "IMAGE_EXTENSIONS",
    "list_images",
    "load_image",
    "ImageFolder",
    "to_gray_float",
]

#: scikit-image images (``skimage.data.<name>()``) that load without a download
BUNDLED_IMAGES: tuple[str, ...] = (
    "astronaut",
    "brick",
    "camera",
    "cat",
    "cell",
    "checkerboard",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "colorwheel",
    "grass",
    "gravel",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "logo",
    "microaneurysms",
    "moon",
    "page",
    "retina",
    "rocket",
    "shepp_logan_phantom",
    "text",
)

#: images generated at the requested size (see :mod:`liftinv.datasets.phantoms`): the analytic Shepp-Logan
#: phantom, and a 2 x 2 mosaic of random-ellipse phantoms (``random_phantoms(4, seed=0)``)
GENERATED_IMAGES: tuple[str, ...] = ("shepp_logan", "phantoms")

#: file extensions read by :func:`load_image` and :class:`ImageFolder`
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".npy")

_FORMAT_HINT = "a PNG, JPEG, TIFF, BMP or GIF image, or a .npy array of shape [H, W] or [H, W, 3|4]"


def to_gray_float(image: np.ndarray, source: str = "image") -> np.ndarray:
    """Convert an image array to a float64 grayscale image in ``[0, 1]``.

    Integer images are divided by their dtype's maximum (uint8 by 255, uint16 by 65535), booleans become
    0/1, RGB(A) is converted to luminance (:func:`skimage.color.rgb2gray`, alpha blended on white), and
    floating images are clipped to ``[0, 1]``.

    Parameters
    ----------
    image : numpy.ndarray
        ``[H, W]``, ``[H, W, 3]`` or ``[H, W, 4]``.
    source : str
        Name used in error messages.

    Returns
    -------
    numpy.ndarray
        float64 ``[H, W]``.

    Examples
    --------
    >>> to_gray_float(np.array([[0, 255]], dtype=np.uint8)).tolist()
    [[0.0, 1.0]]
    """
    from skimage.color import rgb2gray, rgba2rgb

    array = np.asarray(image)
    if array.dtype == bool:
        array = array.astype(np.float64)
    elif np.issubdtype(array.dtype, np.integer):
        array = array.astype(np.float64) / float(np.iinfo(array.dtype).max)
    elif np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    else:
        raise ValueError(f"{source}: unsupported pixel type {array.dtype}; expected {_FORMAT_HINT}")
    if array.ndim == 3 and array.shape[-1] == 4:
        array = rgba2rgb(array)
    if array.ndim == 3 and array.shape[-1] == 3:
        array = rgb2gray(array)
    if array.ndim != 2:
        raise ValueError(f"{source}: expected a 2-D grayscale or RGB(A) image, got shape {list(array.shape)}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{source}: the image contains non-finite values (nan or inf)")
    return np.clip(array, 0.0, 1.0)


def list_images(folder: str | os.PathLike, *, recursive: bool = True) -> list[Path]:
    """The image files of a folder: extension in :data:`IMAGE_EXTENSIONS` (any case), sorted by path.

    Parameters
    ----------
    folder : str or path-like
        The folder.
    recursive : bool, default True
        Also list the files of its sub-folders (at any depth).

    Returns
    -------
    list of pathlib.Path
        Possibly empty.

    Raises
    ------
    FileNotFoundError
        If ``folder`` is not a directory.

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("b.PNG", "a.npy", "notes.txt"):
    ...     _ = (root / name).write_bytes(b"")
    >>> [p.name for p in list_images(root)]
    ['a.npy', 'b.PNG']
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(root)!r}: no such directory")
    files = root.rglob("*") if recursive else root.iterdir()
    return sorted(p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _phantom_mosaic(size: int | Sequence[int]) -> Tensor:
    # Four random-ellipse phantoms (seed 0) of half the size, in a 2 x 2 mosaic; odd sides are cropped.
    height, width = _size_pair(size)
    tiles = random_phantoms(4, (-(-height // 2), -(-width // 2)), seed=0)[:, 0]
    mosaic = torch.cat([torch.cat([tiles[0], tiles[1]], 1), torch.cat([tiles[2], tiles[3]], 1)], 0)
    return mosaic[:height, :width][None, None]


def _resize(image: np.ndarray, size: int | Sequence[int] | None) -> np.ndarray:
    from skimage.transform import resize

    if size is None:
        return image
    if isinstance(size, bool):
        raise TypeError(f"size must be None, an int or (H, W), got {size!r}")
    if isinstance(size, int):
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        # An int asks for a square: centre-crop to a square first so the aspect ratio is kept.
        height, width = image.shape
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        image = image[top : top + side, left : left + side]
        target = (size, size)
    else:
        try:
            target = tuple(int(s) for s in size)
        except (TypeError, ValueError):
            raise TypeError(f"size must be None, an int or (H, W), got {size!r}") from None
        if len(target) != 2 or min(target) <= 0:
            raise ValueError(f"size must be a positive int or (H, W) of positive ints, got {size!r}")
    if image.shape == target:
        return image
    # Shrink by integer factors with block means first (area averaging, O(pixels)); anti-aliased resizing
    # of a large image straight to a small one blurs with a huge Gaussian and takes seconds.
    fy, fx = max(1, image.shape[0] // target[0]), max(1, image.shape[1] // target[1])
    if fy > 1 or fx > 1:
        height, width = (image.shape[0] // fy) * fy, (image.shape[1] // fx) * fx
        top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
        image = image[top : top + height, left : left + width]
        image = image.reshape(height // fy, fy, width // fx, fx).mean(axis=(1, 3))
    if image.shape == target:
        return image
    return np.clip(resize(image, target, order=1, anti_aliasing=True, preserve_range=True), 0.0, 1.0)


def _read_file(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except Exception as exc:
            raise ValueError(
                f"load_image: cannot read {path} as a .npy array ({_first_line(exc)}); expected {_FORMAT_HINT}"
            ) from None
    from skimage import io

    try:
        return io.imread(path)
    except Exception as exc:
        raise ValueError(
            f"load_image: cannot read {path} as an image ({_first_line(exc)}); expected {_FORMAT_HINT}"
        ) from None


def _first_line(exc: Exception) -> str:
    # Reader errors can span many lines (imageio lists plugins); the CLI reports errors on one line.
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def load_image(
    name_or_path: str | os.PathLike,
    size: int | Sequence[int] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Load a grayscale image in ``[0, 1]`` as a ``[1, 1, H, W]`` tensor, by bundled name or from a file.

    Parameters
    ----------
    name_or_path : str or path-like
        A name from :data:`BUNDLED_IMAGES` (e.g. ``"camera"``), a generated image (:data:`GENERATED_IMAGES`,
        made at ``size``): ``"shepp_logan"`` (analytic, :func:`~liftinv.datasets.shepp_logan`) or
        ``"phantoms"`` (a 2 x 2 mosaic of the random-ellipse phantoms ``random_phantoms(4, seed=0)``, each
        of half the size; odd sides are cropped), or the path of an image file (PNG, JPEG, TIFF, BMP,
        GIF) or ``.npy`` array. An existing file takes precedence over a bundled name.
    size : int or (H, W), optional
        Output size. An int centre-crops to a square and resizes (keeping the aspect ratio); a pair resizes
        to exactly ``(H, W)``. Shrinking averages blocks of pixels by the integer part of the scale, then
        resizes bilinearly with anti-aliasing. Default: the native size
        (generated images: 128).
    dtype : torch.dtype, default torch.float32
        Floating dtype of the result.

    Returns
    -------
    Tensor
        ``[1, 1, H, W]`` in ``[0, 1]``.

    Raises
    ------
    FileNotFoundError
        If ``name_or_path`` is neither a bundled name nor an existing file (the message lists the names).
    ValueError
        If the file cannot be read as an image, or has non-finite values or an unsupported shape.

    Examples
    --------
    >>> load_image("camera", 64).shape
    torch.Size([1, 1, 64, 64])
    >>> float(load_image("shepp_logan", 32).max()) <= 1.0
    True
    """
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"load_image: dtype must be a floating torch.dtype, got {dtype!r}")
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(
            f"load_image: expected a bundled image name or a file path, got {type(name_or_path).__name__}"
        )
    path = Path(name_or_path)
    if path.is_file():
        image = to_gray_float(_read_file(path), f"load_image: {path}")
    elif str(name_or_path) == "shepp_logan":
        return shepp_logan(128 if size is None else size).to(dtype)
    elif str(name_or_path) == "phantoms":
        return _phantom_mosaic(128 if size is None else size).to(dtype)
    elif str(name_or_path) in BUNDLED_IMAGES:
        from skimage import data

        image = to_gray_float(getattr(data, str(name_or_path))(), str(name_or_path))
    else:
        raise FileNotFoundError(
            f"load_image: {str(name_or_path)!r} is neither an existing image file nor a bundled image; bundled "
            f"names: {', '.join(GENERATED_IMAGES + BUNDLED_IMAGES)}; files: {_FORMAT_HINT}"
        )
    image = _resize(image, size)
    return torch.from_numpy(np.ascontiguousarray(image)).to(dtype)[None, None]


class ImageFolder(Dataset):
    """Grayscale images from a user folder, resized, as a torch ``Dataset`` of ``[1, H, W]`` tensors.

    Files with an extension in :data:`IMAGE_EXTENSIONS` are collected (recursively, :func:`list_images`) and
    sorted by path.
    If the images sit in sub-folders, each top-level sub-folder is a class (as torchvision's
    ``ImageFolder``): ``classes`` lists them and ``targets`` gives each image's class index.

    Parameters
    ----------
    root : str or path-like
        The folder.
    size : int or (H, W), optional
        Resize every image (see :func:`load_image`); needed to batch images of different sizes.
    return_labels : bool, default False
        Return ``(image, label)`` instead of ``image``.
    dtype : torch.dtype, default torch.float32
        Floating dtype of the images.

    Raises
    ------
    FileNotFoundError
        If ``root`` is not a directory.
    ValueError
        If it holds no image files (``__getitem__`` raises ``ValueError`` naming a file it cannot read).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> root = tempfile.mkdtemp()
    >>> np.save(os.path.join(root, "a.npy"), np.zeros((10, 12)))
    >>> folder = ImageFolder(root, size=8)
    >>> len(folder), tuple(folder[0].shape)
    (1, (1, 8, 8))
    """

    def __init__(
        self,
        root: str | os.PathLike,
        size: int | Sequence[int] | None = None,
        *,
        return_labels: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"ImageFolder: no such directory: {self.root}")
        self.paths = list_images(self.root)
        if not self.paths:
            raise ValueError(
                f"ImageFolder: no image files in {self.root} (expected extensions {', '.join(IMAGE_EXTENSIONS)})"
            )
        parents = [p.relative_to(self.root).parts for p in self.paths]
        self.classes = sorted({parts[0] for parts in parents if len(parts) > 1})
        index = {name: i for i, name in enumerate(self.classes)}
        self.targets = [index[parts[0]] if len(parts) > 1 else -1 for parts in parents]
        self.size = size
        self.return_labels = bool(return_labels)
        self.dtype = dtype

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Tensor | tuple[Tensor, int]:
        image = load_image(self.paths[index], self.size, self.dtype)[0]
        return (image, self.targets[index]) if self.return_labels else image
