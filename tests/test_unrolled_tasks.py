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


def test_folders_are_used_at_native_size_and_must_be_disjoint(tmp_path):
    rng = np.random.default_rng(1)
    train_dir, test_dir = tmp_path / "train", tmp_path / "test"
    train_dir.mkdir()
    test_dir.mkdir()
    images = [rng.random((20, 18)), rng.random((17, 25))]
    for i, image in enumerate(images):
        np.save(train_dir / f"a{i}.npy", image)
    np.save(test_dir / "t.npy", rng.random((16, 30)))
    data = make_task_data(
        "deblur", image_size=16, n_train=6, test_crops=2, seed=2, train_images=train_dir, test_images=test_dir
    )
    # no resizing: the patches are those of the images as they are (with flips and rotations)
    native = [torch.from_numpy(image).float()[None] for image in images]
    assert torch.equal(data.train[1], extract_patches(native, 16, n=6, seed=2, augment=True))
    assert data.test_names == ["t#0", "t#1"] and data.test[1].shape == (2, 1, 16, 16)
    assert data.train_source == f"folder {train_dir} (2 images, native size)" and not data.train_bundled
    assert make_task_data("denoise", image_size=16, n_train=2, test_images=test_dir).train_bundled
    with pytest.raises(ValueError, match="disjoint; both contain"):
        make_task_data("denoise", image_size=16, n_train=2, train_images=train_dir, test_images=train_dir)
    with pytest.raises(ValueError, match=r"test_images: the image .*t.npy is 16x30, smaller than the 17x17"):
        make_task_data("denoise", image_size=17, n_train=2, train_images=train_dir, test_images=test_dir)
    with pytest.raises(FileNotFoundError, match="train_images: .* is not a folder"):
        make_task_data("denoise", image_size=16, n_train=2, train_images=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no image files"):
        make_task_data("denoise", image_size=16, n_train=2, test_images=tmp_path / "empty")


def test_ellipse_phantoms_stream_for_training_and_a_fixed_test_set():
    from liftinv.datasets import EllipseStream, ellipse_set

    from liftinv.unrolled.tasks import ELLIPSE_TEST_SEED, ELLIPSES
    from liftinv.unrolled.train import data_sources

    kw = dict(image_size=16, n_train=3, test_phantoms=2, train_images=ELLIPSES, test_images=ELLIPSES)
    a, b = make_task_data("ct", seed=0, **kw), make_task_data("ct", seed=5, **kw)
    assert torch.equal(a.train[1], EllipseStream(16, seed=0).batch(3))
    assert not torch.equal(a.train[1], b.train[1])  # the training phantoms follow the run's seed ...
    assert torch.equal(a.test[1], b.test[1])  # ... the test set does not
    assert torch.equal(a.test[1], ellipse_set(2, 16, seed=ELLIPSE_TEST_SEED))
    assert a.test_names == ["ellipse#0", "ellipse#1"] and a.train[0].shape[1:] == a.operator.measurement_size
    # lpd on CT defaults to them (as in the Learned Primal-Dual paper); folders given take their place
    assert data_sources("ct", "lpd") == {"train_images": ELLIPSES, "test_images": ELLIPSES}
    assert data_sources("ct", "lpd", test_images="BSD68") == {
        "train_images": ELLIPSES,
        "test_images": "BSD68",
    }
    assert data_sources("ct", "proxgrad") == {} and data_sources("denoise", "lpd") == {}
    assert data_sources("ct", "lpd", image_folder="d") == {"image_folder": "d"}
