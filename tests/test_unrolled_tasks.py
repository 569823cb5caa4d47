"""Task data of the unrolled benchmarks: choice of bundled training / test images."""

import pytest
import torch

from liftinv.unrolled import make_task_data


def test_custom_bundled_images_are_used_and_disjoint():
    data = make_task_data(
        "denoise", image_size=16, n_train=4, test_crops=2, train_images=["phantoms"], test_images=["camera"]
    )
    assert data.test_names == ["camera#0", "camera#1"]
    # the default training set draws from natural images too, so its patches differ from phantom-only ones
    default = make_task_data("denoise", image_size=16, n_train=4, test_crops=2)
    assert not torch.equal(data.train[1], default.train[1])
    assert data.train[1].shape == (4, 1, 16, 16)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"train_images": ["camera"], "test_images": ["camera"]}, "disjoint"),
        ({"train_images": []}, "train_images must be a non-empty"),
        ({"test_images": [3]}, "test_images must be a non-empty"),
        ({"image_folder": ".", "train_images": ["camera"]}, "either image_folder"),
    ],
)
def test_bad_image_choices_are_reported(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_task_data("denoise", image_size=16, n_train=2, **kwargs)
