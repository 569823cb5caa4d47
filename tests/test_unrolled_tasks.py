"""Task data of the unrolled benchmarks: choice of bundled training / test images."""

import numpy as np
import pytest
import torch
from liftinv.datasets import extract_patches, load_image

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


@pytest.mark.parametrize("task", ["inpaint", "ct"])
def test_task_data_comes_from_the_shared_data_functions(task):
    data = make_task_data(
        task,
        image_size=16,
        n_train=5,
        test_crops=2,
        seed=4,
        train_images=["camera", "phantoms"],
        test_images=["chelsea", "coins"],
    )
    x_train = extract_patches(
        [load_image("camera", 128)[0], load_image("phantoms", 128)[0]], 16, n=5, seed=4, augment=True
    )
    x_test = extract_patches([load_image("chelsea", 96)[0], load_image("coins", 96)[0]], 16, per_image=2)
    assert torch.equal(data.train[1], x_train) and torch.equal(data.test[1], x_test)
    assert data.test_names == ["chelsea#0", "chelsea#1", "coins#0", "coins#1"]
    op = data.operator
    assert torch.equal(data.train[0], op.measure(x_train, 0.01, generator=torch.Generator().manual_seed(5)))
    assert torch.equal(
        data.test[0], op.measure(x_test, 0.01, generator=torch.Generator().manual_seed(10_004))
    )


def test_image_folder_lists_its_own_images_only(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(5):
        np.save(tmp_path / f"img{i}.npy", rng.random((24, 20)))
    (tmp_path / "sub").mkdir()
    np.save(tmp_path / "sub" / "deep.npy", rng.random((24, 24)))  # sub-folders are not read
    (tmp_path / "notes.txt").write_text("not an image")
    data = make_task_data("denoise", image_size=16, n_train=4, test_crops=1, image_folder=tmp_path)
    assert data.test_names == ["img4#0"]  # the last quarter (at least one) of the sorted names
    with pytest.raises(FileNotFoundError, match="no such directory"):
        make_task_data("denoise", image_size=16, n_train=2, image_folder=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="at least 2 images"):
        make_task_data("denoise", image_size=16, n_train=2, image_folder=tmp_path / "sub")
