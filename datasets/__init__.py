"""Offline datasets (imported as ``liftinv.datasets``); nothing here downloads anything.

The one home of liftinv's data (every other package calls these):

* :func:`load_image` -- one grayscale image ``[1, 1, H, W]`` in ``[0, 1]`` by bundled name
  (:data:`BUNDLED_IMAGES`, generated :data:`GENERATED_IMAGES` ``"shepp_logan"`` and ``"phantoms"``) or from
  a file; :func:`list_images` lists the image files of a folder; :class:`ImageFolder` loads them;
* phantoms: :func:`shepp_logan`, :func:`random_phantoms` (random ellipses, or ellipses and rectangles),
  the rasteriser :func:`ellipse_phantom`;
* local files: :func:`load_idx`, :func:`load_mnist` (MNIST / Fashion-MNIST IDX), :func:`load_cifar10`;
* :func:`load_digits` -- scikit-learn's 8x8 digits (optionally resized, e.g. 16x16);
* :func:`extract_patches` (grid, random or evenly spread patches), :func:`train_test_split`;
* :class:`MeasurementDataset` -- deterministic ``(x, y)`` pairs for an operator and a noise model (the
  measurements come from the operator's ``measure``).
"""

from .digits import load_digits
from .files import IDX_DTYPES, load_cifar10, load_idx, load_mnist
from .images import (
    BUNDLED_IMAGES,
    GENERATED_IMAGES,
    IMAGE_EXTENSIONS,
    ImageFolder,
    list_images,
    load_image,
    to_gray_float,
)
from .measurements import (
    MEASUREMENT_EXTENSIONS,
    MeasurementDataset,
    discrepancy_alpha,
    estimate_noise,
    load_measurements,
    load_operator,
    save_measurements,
    save_operator_config,
)
from .phantoms import PHANTOM_KINDS, SHEPP_LOGAN_ELLIPSES, ellipse_phantom, random_phantoms, shepp_logan
from .preprocessing import extract_patches, train_test_split
from .streams import EllipseStream, ellipse_set

__all__ = [
    "BUNDLED_IMAGES",
    "GENERATED_IMAGES",
    "IMAGE_EXTENSIONS",
    "list_images",
    "load_image",
    "to_gray_float",
    "ImageFolder",
    "SHEPP_LOGAN_ELLIPSES",
    "PHANTOM_KINDS",
    "ellipse_phantom",
    "shepp_logan",
    "random_phantoms",
    "IDX_DTYPES",
    "load_idx",
    "load_mnist",
    "load_cifar10",
    "load_digits",
    "extract_patches",
    "train_test_split",
    "MeasurementDataset",
    "MEASUREMENT_EXTENSIONS",
    "save_measurements",
    "load_measurements",
    "save_operator_config",
    "load_operator",
    "estimate_noise",
    "discrepancy_alpha",
    "EllipseStream",
    "ellipse_set",
]
