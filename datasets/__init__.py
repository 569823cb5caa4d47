"""Offline datasets (imported as ``liftinv.datasets``); nothing here downloads anything.

* :func:`load_image` -- one grayscale image ``[1, 1, H, W]`` in ``[0, 1]`` by bundled name
  (:data:`BUNDLED_IMAGES`, ``"shepp_logan"``) or from a file; :class:`ImageFolder` for a user folder;
* phantoms: :func:`shepp_logan`, :func:`random_ellipses`, :func:`ellipse_phantom`;
* local files: :func:`load_idx`, :func:`load_mnist` (MNIST / Fashion-MNIST IDX), :func:`load_cifar10`;
* :func:`load_digits` -- scikit-learn's 8x8 digits;
* :func:`extract_patches`, :func:`train_test_split`;
* :class:`MeasurementDataset` -- deterministic ``(x, y)`` pairs for an operator and a noise model.
"""

from .digits import load_digits
from .files import IDX_DTYPES, load_cifar10, load_idx, load_mnist
from .images import BUNDLED_IMAGES, GENERATED_IMAGES, IMAGE_EXTENSIONS, ImageFolder, load_image, to_gray_float
from .measurements import MeasurementDataset
from .phantoms import SHEPP_LOGAN_ELLIPSES, ellipse_phantom, random_ellipses, shepp_logan
from .preprocessing import extract_patches, train_test_split

__all__ = [
    "BUNDLED_IMAGES",
    "GENERATED_IMAGES",
    "IMAGE_EXTENSIONS",
    "load_image",
    "to_gray_float",
    "ImageFolder",
    "SHEPP_LOGAN_ELLIPSES",
    "ellipse_phantom",
    "shepp_logan",
    "random_ellipses",
    "IDX_DTYPES",
    "load_idx",
    "load_mnist",
    "load_cifar10",
    "load_digits",
    "extract_patches",
    "train_test_split",
    "MeasurementDataset",
]
