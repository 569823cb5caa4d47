"""Offline datasets: bundled images, phantoms, local-file readers, patches, splits, measurement pairs."""

from __future__ import annotations

import gzip
import math
import os
import pickle

import numpy as np
import pytest
import torch
from liftinv.datasets import (
    BUNDLED_IMAGES,
    ImageFolder,
    MeasurementDataset,
    ellipse_phantom,
    extract_patches,
    list_images,
    load_cifar10,
    load_digits,
    load_idx,
    load_image,
    load_mnist,
    random_phantoms,
    shepp_logan,
    train_test_split,
)


# --------------------------------------------------------------------------------------------- images
def test_every_bundled_image_loads_offline():
    for name in BUNDLED_IMAGES:
        image = load_image(name, 16)
        assert image.shape == (1, 1, 16, 16), name
        assert image.dtype == torch.float32
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0, name
        assert float(image.std()) > 0, name


def test_load_image_sizes_and_dtype():
    native = load_image("camera")
    assert native.shape == (1, 1, 512, 512)
    assert load_image("cat", (20, 30)).shape == (1, 1, 20, 30)  # exact (H, W)
    assert load_image("cat", 24).shape == (1, 1, 24, 24)  # centre crop, then resize
    assert load_image("shepp_logan", 40, dtype=torch.float64).dtype == torch.float64


def test_generated_phantom_mosaic():
    mosaic = load_image("phantoms", 64)[0, 0]
    tiles = random_phantoms(4, 32, seed=0)[:, 0]  # the 2 x 2 mosaic of four seeded phantoms
    assert torch.equal(mosaic[:32, :32], tiles[0]) and torch.equal(mosaic[:32, 32:], tiles[1])
    assert torch.equal(mosaic[32:, :32], tiles[2]) and torch.equal(mosaic[32:, 32:], tiles[3])
    assert load_image("phantoms").shape == (1, 1, 128, 128)
    assert load_image("phantoms", (21, 30)).shape == (1, 1, 21, 30)  # odd sides: cropped, exact size


def test_shepp_logan_matches_scikit_image():
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    ours = shepp_logan(100)[0, 0].numpy()
    reference = resize(shepp_logan_phantom(), (100, 100), anti_aliasing=True)
    assert ours.min() >= 0.0 and ours.max() <= 1.0
    assert np.corrcoef(ours.ravel(), reference.ravel())[0, 1] > 0.97


def test_ellipse_phantom_geometry():
    # a disk of radius 0.5 on [-1, 1]^2 covers pi/16 of the image; an off-centre ellipse lands where expected
    disk = ellipse_phantom([(1.0, 0.5, 0.5, 0.0, 0.0, 0.0)], 64, oversample=4)
    assert float(disk.mean()) == pytest.approx(math.pi / 16, rel=0.02)
    blob = ellipse_phantom([(1.0, 0.2, 0.2, 0.5, 0.5, 0.0)], 64)[0, 0]  # x = 0.5 (right), y = 0.5 (up)
    rows, cols = torch.nonzero(blob > 0.5, as_tuple=True)
    assert float(rows.float().mean()) < 32 and float(cols.float().mean()) > 32


def test_shepp_logan_sources():
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    raster = shepp_logan(48, source="skimage")
    reference = resize(shepp_logan_phantom(), (48, 48), anti_aliasing=True, order=1)
    assert raster.shape == (1, 1, 48, 48) and raster.dtype == torch.float32
    assert torch.equal(raster[0, 0], torch.tensor(np.clip(reference, 0, 1), dtype=torch.float32))
    assert shepp_logan((20, 30), source="skimage").shape == (1, 1, 20, 30)
    with pytest.raises(ValueError, match="source must be one of"):
        shepp_logan(16, source="odl")


@pytest.mark.parametrize("kind", ["ellipses", "mixed"])
def test_random_phantoms_are_seeded(kind):
    a, b = random_phantoms(5, 32, seed=3, kind=kind), random_phantoms(5, 32, seed=3, kind=kind)
    assert torch.equal(a, b)
    assert not torch.equal(a, random_phantoms(5, 32, seed=4, kind=kind))
    assert a.shape == (5, 1, 32, 32) and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert all(float(img.std()) > 0.01 for img in a)
    # image i does not depend on how many come after it (one stream, drawn image by image)
    assert torch.equal(random_phantoms(2, 32, seed=3, kind=kind), a[:2])
    assert random_phantoms(0, 8, kind=kind).shape == (0, 1, 8, 8)
    assert random_phantoms(2, (12, 20), kind=kind).shape == (2, 1, 12, 20)


def test_random_phantoms_kinds_and_errors():
    ellipses, mixed = random_phantoms(3, 32, seed=0), random_phantoms(3, 32, seed=0, kind="mixed")
    assert not torch.equal(ellipses, mixed)
    # "ellipses" are anti-aliased (intermediate values on edges); "mixed" is sampled at one point per pixel
    assert len(torch.unique(mixed[0])) <= 7 < len(torch.unique(ellipses[0]))
    assert torch.equal(random_phantoms(2, 16, n_shapes=4), random_phantoms(2, 16, n_shapes=(4, 4)))
    with pytest.raises(ValueError, match="n_shapes must be"):
        random_phantoms(2, 16, n_shapes=(5, 2))
    with pytest.raises(ValueError, match="kind 'mixed' takes n_shapes as an int"):
        random_phantoms(2, 16, kind="mixed", n_shapes=(1, 3))
    with pytest.raises(ValueError, match="kind must be one of"):
        random_phantoms(2, 16, kind="squares")
    with pytest.raises(ValueError, match="n must be a non-negative int"):
        random_phantoms(-1, 16)


def test_load_image_from_files(tmp_path):
    from skimage import io

    rgb = np.zeros((12, 10, 3), dtype=np.uint8)
    rgb[..., 0] = 255  # pure red -> luminance 0.2125
    io.imsave(tmp_path / "red.png", rgb, check_contrast=False)
    image = load_image(tmp_path / "red.png")
    assert image.shape == (1, 1, 12, 10)
    assert float(image.mean()) == pytest.approx(0.2125, abs=0.01)
    np.save(tmp_path / "ramp.npy", np.linspace(0, 1, 64).reshape(8, 8))
    ramp = load_image(str(tmp_path / "ramp.npy"), dtype=torch.float64)
    torch.testing.assert_close(ramp[0, 0], torch.linspace(0, 1, 64, dtype=torch.float64).reshape(8, 8))


def test_load_image_errors(tmp_path):
    missing = tmp_path / "missing.png"
    with pytest.raises(
        FileNotFoundError, match=r"missing\.png.*neither an existing image file nor a bundled image"
    ):
        load_image(missing)
    garbage = tmp_path / "broken.png"
    garbage.write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match=r"cannot read .*broken\.png as an image .*expected a PNG, JPEG"):
        load_image(garbage)
    bad_npy = tmp_path / "nan.npy"
    np.save(bad_npy, np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="non-finite"):
        load_image(bad_npy)
    cube = tmp_path / "cube.npy"
    np.save(cube, np.zeros((2, 3, 4, 5)))
    with pytest.raises(
        ValueError, match=r"expected a 2-D grayscale or RGB\(A\) image, got shape \[2, 3, 4, 5\]"
    ):
        load_image(cube)
    with pytest.raises(TypeError, match="dtype must be a floating torch.dtype"):
        load_image("camera", 8, dtype=torch.int32)
    with pytest.raises(ValueError, match="size must be positive"):
        load_image("camera", 0)


def folder_files(folder, root):
    return [p.relative_to(root).as_posix() for p in folder.paths]


def test_image_folder(tmp_path):
    from skimage import io

    for cls, count in (("cats", 2), ("dogs", 1)):
        (tmp_path / cls).mkdir()
        for i in range(count):
            io.imsave(
                tmp_path / cls / f"{i}.png",
                np.full((10 + i, 14, 3), 40 * (i + 1), np.uint8),
                check_contrast=False,
            )
    (tmp_path / "notes.txt").write_text("not an image")
    folder = ImageFolder(tmp_path, size=8, return_labels=True)
    assert len(folder) == 3
    assert folder.classes == ["cats", "dogs"] and folder.targets == [0, 0, 1]
    image, label = folder[2]
    assert image.shape == (1, 8, 8) and label == 1
    batch = next(iter(torch.utils.data.DataLoader(ImageFolder(tmp_path, size=8), batch_size=3)))
    assert batch.shape == (3, 1, 8, 8)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        ImageFolder(tmp_path / "nowhere")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == folder_files(
        folder, tmp_path
    )
    assert list_images(tmp_path, recursive=False) == []  # the images are in sub-folders
    with pytest.raises(FileNotFoundError, match="no such directory"):
        list_images(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files in .*empty"):
        ImageFolder(tmp_path / "empty")


# ------------------------------------------------------------------------------------------ IDX files
def _write_idx(path, array: np.ndarray, type_code: int, compress: bool = False) -> None:
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)


@pytest.mark.parametrize("compress", [False, True])
def test_load_idx_round_trip(tmp_path, compress):
    rng = np.random.default_rng(0)
    cases = [
        (rng.integers(0, 256, (3, 4, 5)).astype(np.uint8), 0x08),
        (rng.integers(-1000, 1000, (7,)).astype(np.int32), 0x0C),
        (rng.standard_normal((2, 3)).astype(np.float32), 0x0D),
        (rng.standard_normal((2, 2)), 0x0E),
    ]
    for i, (array, code) in enumerate(cases):
        path = tmp_path / f"a{i}.idx"
        _write_idx(path, array, code, compress)
        np.testing.assert_array_equal(load_idx(path), array)


def test_load_idx_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such file: .*nothing\.idx \(expected an IDX file"):
        load_idx(tmp_path / "nothing.idx")
    bad_magic = tmp_path / "magic.idx"
    bad_magic.write_bytes(b"\x01\x02\x08\x01" + bytes(8))
    with pytest.raises(ValueError, match=r"magic\.idx is not an IDX file .*bad magic number"):
        load_idx(bad_magic)
    unknown = tmp_path / "type.idx"
    unknown.write_bytes(bytes([0, 0, 0x07, 1]) + (2).to_bytes(4, "big") + bytes(2))
    with pytest.raises(ValueError, match="unknown IDX type code 0x07"):
        load_idx(unknown)
    truncated = tmp_path / "short.idx"
    _write_idx(truncated, np.zeros((4, 4), np.uint8), 0x08)
    truncated.write_bytes(truncated.read_bytes()[:-3])
    with pytest.raises(
        ValueError, match=r"short\.idx has 13 data bytes, but its header announces shape \[4, 4\]"
    ):
        load_idx(truncated)
    broken_gz = tmp_path / "broken.idx.gz"
    broken_gz.write_bytes(b"\x1f\x8b" + b"garbage")
    with pytest.raises(ValueError, match="gzip-compressed but cannot be decompressed"):
        load_idx(broken_gz)


def _write_mnist(folder, split: str, n: int, labels_n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    prefix = "train" if split == "train" else "t10k"
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, (labels_n or n,)).astype(np.uint8)
    _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images, 0x08, compress=True)
    _write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, 0x08)
    return images, labels


def test_load_mnist(tmp_path):
    images, labels = _write_mnist(tmp_path / "FashionMNIST" / "raw", "test", 5)
    x, y = load_mnist(tmp_path, "test")
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    torch.testing.assert_close(x[:, 0] * 255, torch.from_numpy(images).float())
    assert y.tolist() == labels.tolist()
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path, "train")
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_mnist(tmp_path, "validation")
    _write_mnist(tmp_path / "other", "train", 4, labels_n=3)
    with pytest.raises(ValueError, match="should hold 4 labels"):
        load_mnist(tmp_path / "other", "train")


# ------------------------------------------------------------------------------------------- CIFAR-10
def _write_cifar(folder, names, n=4, protocol=2):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    for name in names:
        batch = {
            b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
            b"labels": list(rng.integers(0, 10, n)),
        }
        batch[b"labels"] = [int(v) for v in batch[b"labels"]]
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 5])
def test_load_cifar10(tmp_path, protocol):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(folder, [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], protocol=protocol)
    x, y = load_cifar10(tmp_path, "train")
    assert x.shape == (20, 3, 32, 32) and y.shape == (20,)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    with open(folder / "data_batch_1", "rb") as f:
        first = pickle.load(f)
    expected = first[b"data"][0].reshape(3, 32, 32).astype(np.float32) / 255
    np.testing.assert_allclose(x[0].numpy(), expected)  # channel-major layout
    gray, _ = load_cifar10(tmp_path, "test", grayscale=True)
    assert gray.shape == (4, 1, 32, 32)


def test_load_cifar10_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        load_cifar10(tmp_path / "none")
    _write_cifar(tmp_path, ["data_batch_1"])
    with pytest.raises(FileNotFoundError, match=r"data_batch_2 \(expected a CIFAR-10 python batch"):
        load_cifar10(tmp_path, "train")
    (tmp_path / "test_batch").write_bytes(pickle.dumps(os.getcwd))  # a pickle that references a function
    with pytest.raises(
        ValueError, match=r"test_batch is not a CIFAR-10 python batch.*refusing to load posix.getcwd"
    ):
        load_cifar10(tmp_path, "test")
    (tmp_path / "test_batch").write_bytes(
        pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]})
    )
    with pytest.raises(ValueError, match=r"data uint8 \[2, 10\]"):
        load_cifar10(tmp_path, "test")
    (tmp_path / "test_batch").write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match=r"test_batch is not a CIFAR-10 python batch.*UnpicklingError"):
        load_cifar10(tmp_path, "test")


def test_load_digits():
    images, labels = load_digits()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.float32
    assert float(images.min()) == 0.0 and float(images.max()) == 1.0
    assert labels.dtype == torch.int64 and set(labels.tolist()) == set(range(10))
    large, same_labels = load_digits(size=16)
    assert large.shape == (1797, 1, 16, 16) and torch.equal(same_labels, labels)
    assert float(large.min()) >= 0.0 and float(large.max()) <= 1.0
    # bilinear x2 with align_corners=False: an interior output pixel mixes its 2 x 2 source pixels 9:3:3:1
    src = images[0, 0]
    expected = (9 * src[2, 2] + 3 * src[2, 3] + 3 * src[3, 2] + src[3, 3]) / 16
    assert float(large[0, 0, 5, 5]) == pytest.approx(float(expected), abs=1e-6)
    with pytest.raises(ValueError, match="size must be a positive int"):
        load_digits(size=0)


# -------------------------------------------------------------------------------- patches and splits
def test_extract_patches_grid_and_random():
    images = torch.arange(2 * 36, dtype=torch.float32).reshape(2, 1, 6, 6)
    grid = extract_patches(images, 3, stride=3)
    assert grid.shape == (8, 1, 3, 3)
    torch.testing.assert_close(grid[5], images[1, :, 0:3, 3:6])  # image-major, then row-major
    overlapping = extract_patches(images, 4, stride=1)
    assert overlapping.shape == (2 * 9, 1, 4, 4)
    random = extract_patches(images, 2, n=10, seed=0)
    assert torch.equal(random, extract_patches(images, 2, n=10, seed=0))
    for patch in random:  # every patch is a genuine window: values are consecutive along rows
        top_left = int(patch[0, 0, 0])
        image, offset = divmod(top_left, 36)
        row, col = divmod(offset, 6)
        torch.testing.assert_close(patch, images[image, :, row : row + 2, col : col + 2])
    with pytest.raises(ValueError, match=r"size must be an int in \[1, 6\], got 7"):
        extract_patches(images, 7)
    with pytest.raises(ValueError, match=r"expected shape \[N, C, H, W\], got \[6, 6\]"):
        extract_patches(images[0, 0], 2)
    with pytest.raises(ValueError, match="stride must be a positive int"):
        extract_patches(images, 2, stride=0)


def test_extract_patches_from_a_list_random_augmented_and_spread():
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(20, 24, generator=generator), torch.rand(1, 30, 16, generator=generator)]
    random = extract_patches(images, 8, n=7, seed=1)
    assert random.shape == (7, 1, 8, 8) and torch.equal(random, extract_patches(images, 8, n=7, seed=1))
    for i, patch in enumerate(random):  # patch i is a window of image i mod 2
        windows = images[i % 2].reshape(1, 1, *images[i % 2].shape[-2:]).unfold(2, 8, 1).unfold(3, 8, 1)
        assert bool((windows.reshape(-1, 8, 8) == patch[0]).all(-1).all(-1).any())
    augmented = extract_patches(images, 8, n=40, seed=2, augment=True)
    plain_sums = {round(float(p.sum()), 4) for p in extract_patches(images, 8, stride=1)}
    assert all(round(float(p.sum()), 4) in plain_sums for p in augmented)  # rotations/flips keep the pixels
    assert not torch.equal(augmented, extract_patches(images, 8, n=40, seed=2))
    spread = extract_patches(images, 8, per_image=3)
    assert spread.shape == (6, 1, 8, 8)
    assert torch.equal(spread[0, 0], images[0][4:12, 5:13])  # interior grid of 2 x 2 corners, first one
    assert extract_patches(images, 8).shape == (2 * 3 + 3 * 2, 1, 8, 8)  # a grid per image
    assert extract_patches(images, 8, n=0).shape == (0, 1, 8, 8)
    with pytest.raises(ValueError, match="size must be an int in \\[1, 16\\], got 20"):
        extract_patches(images, 20, n=3)
    with pytest.raises(ValueError, match="not both"):
        extract_patches(images, 8, n=3, per_image=2)
    with pytest.raises(ValueError, match="per_image must be an int >= 1"):
        extract_patches(images, 8, per_image=0)
    with pytest.raises(ValueError, match="different channel counts"):
        extract_patches([torch.rand(3, 10, 10), torch.rand(10, 10)], 4)


def test_train_test_split():
    x = torch.arange(20.0)[:, None]
    y = torch.arange(20)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_fraction=0.25, seed=1)
    assert len(x_train) == 15 and len(x_test) == 5
    assert torch.equal(x_train[:, 0].long(), y_train) and torch.equal(x_test[:, 0].long(), y_test)
    assert sorted(torch.cat([y_train, y_test]).tolist()) == list(range(20))
    again = train_test_split(x, y, test_fraction=0.25, seed=1)
    assert torch.equal(again[1], x_test)
    assert not torch.equal(train_test_split(x, y, test_fraction=0.25, seed=2)[1], x_test)
    with pytest.raises(ValueError, match=r"test_fraction must be in \(0, 1\), got 1.0"):
        train_test_split(x, test_fraction=1.0)
    with pytest.raises(ValueError, match=r"different lengths \[20, 3\]"):
        train_test_split(x, y[:3])


# --------------------------------------------------------------------------------- measurement pairs
def test_measurement_dataset_is_deterministic():
    from liftinv.operators import Blur, GaussianNoise

    images = random_phantoms(6, 16, seed=0)
    op = Blur(16, sigma=1.0)
    data = MeasurementDataset(images, op, GaussianNoise(0.1), seed=5)
    x2, y2 = data[2]
    assert torch.equal(x2, images[2])
    for _ in range(2):  # same index, same noise, whatever was read in between
        _ = data[4]
        assert torch.equal(data[2][1], y2)
    noise2 = y2 - op.A(images[2:3])[0]
    noise3 = data[3][1] - op.A(images[3:4])[0]
    assert not torch.allclose(noise2, noise3)
    assert float(noise2.std()) == pytest.approx(0.1, rel=0.2)
    other_seed = MeasurementDataset(images, op, 0.1, seed=6)
    assert not torch.equal(other_seed[2][1], y2)
    xs, ys = next(iter(torch.utils.data.DataLoader(data, batch_size=6)))
    assert xs.shape == (6, 1, 16, 16) and torch.equal(ys[2], y2)
    assert torch.equal(data[-1][1], data[5][1])


def test_measurement_dataset_with_inpainting_and_a_dataset(tmp_path):
    from liftinv.operators import Inpainting, Tomography

    op = Inpainting(16, keep_rate=0.5, seed=0)
    data = MeasurementDataset(random_phantoms(2, 16, seed=1), op, 0.05, seed=0)
    _, y = data[0]
    assert bool((y[op.mask[0] == 0] == 0).all())
    np.save(tmp_path / "a.npy", np.random.default_rng(0).random((20, 20)))
    folder = ImageFolder(tmp_path, size=12, return_labels=True)
    pairs = MeasurementDataset(folder, Tomography(12, angles=5))
    x, y = pairs[0]
    assert x.shape == (1, 12, 12) and y.shape == (1, 17, 5)


def test_measurement_dataset_errors():
    from liftinv.operators import Blur

    op = Blur(16, sigma=1.0)
    with pytest.raises(
        ValueError, match=r"expected images of shape \[N, 1, 16, 16\] for the operator, got \[2, 1, 8, 8\]"
    ):
        MeasurementDataset(torch.zeros(2, 1, 8, 8), op)
    bad = torch.zeros(2, 1, 16, 16)
    bad[1, 0, 0, 0] = math.inf
    with pytest.raises(ValueError, match="non-finite"):
        MeasurementDataset(bad, op)
    with pytest.raises(TypeError, match="operator must be a liftinv LinearOperator"):
        MeasurementDataset(torch.zeros(2, 1, 16, 16), "blur")
    with pytest.raises(ValueError, match="noise level must be a finite number >= 0"):
        MeasurementDataset(torch.zeros(2, 1, 16, 16), op, noise=-0.1)
    with pytest.raises(IndexError, match="index 2 out of range"):
        MeasurementDataset(torch.zeros(2, 1, 16, 16), op)[2]


def test_lpd_phantoms_are_seeded_signed_sums_clipped_to_unit_range():
    from liftinv.datasets import EllipseStream, random_phantoms

    x = random_phantoms(3, 24, seed=5, kind="lpd")
    assert x.shape == (3, 1, 24, 24) and torch.equal(x, random_phantoms(3, 24, seed=5, kind="lpd"))
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0 and float(x.std()) > 0
    assert not torch.equal(x, random_phantoms(3, 24, seed=6, kind="lpd"))
    # the stream draws the same distribution, one generator per image
    assert EllipseStream(24, seed=5)[2].shape == (1, 24, 24)
