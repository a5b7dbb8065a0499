"""edgebnn.data: IDX / CIFAR-binary parsing (including corrupt files) and source resolution."""

import gzip
import struct

import numpy as np
import pytest

from edgebnn import data


def _idx(array):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_idx_dataset(root, name, n=20, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    folder = root / name
    folder.mkdir(parents=True)
    for split, (image_file, label_file) in data._IDX_FILES.items():
        (folder / image_file).write_bytes(gzip.compress(_idx(images)))
        (folder / label_file).write_bytes(gzip.compress(_idx(labels)))
    return images, labels


def test_idx_round_trip_scales_to_unit_range(tmp_path):
    images, labels = _write_idx_dataset(tmp_path, "fashion_mnist")
    x, y = data.load("fashion_mnist", "train", data_dir=tmp_path, use_tfds=False)
    assert x.shape == (20, 28, 28, 1) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(x[..., 0], images.astype(np.float32) / 255.0)
    np.testing.assert_array_equal(y, labels)


def test_uncompressed_idx_is_read(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 2, 2)
    (tmp_path / "plain").write_bytes(_idx(array))
    np.testing.assert_array_equal(data.read_idx(tmp_path / "plain", expected_ndim=3), array)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda raw: b"\x00\x00\x0d\x03" + raw[4:], "bad IDX magic"),  # float32 element type
        (lambda raw: raw[:-5], "announces dims"),  # truncated payload
        (lambda raw: raw + b"\x00", "announces dims"),  # trailing garbage
        (lambda raw: raw[:6], "truncated IDX header"),
        (lambda raw: b"", "too short"),
    ],
)
def test_corrupt_idx_gives_clear_error(tmp_path, mutate, message):
    raw = _idx(np.zeros((2, 28, 28), np.uint8))
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(mutate(raw)))
    with pytest.raises(data.CorruptDataError, match=message):
        data.read_idx(path, expected_ndim=3)


def test_truncated_gzip_gives_clear_error(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(_idx(np.zeros((2, 28, 28), np.uint8)))[:-10])
    with pytest.raises(data.CorruptDataError, match="corrupt or truncated gzip"):
        data.read_idx(path, expected_ndim=3)


def test_label_count_mismatch(tmp_path):
    _write_idx_dataset(tmp_path, "mnist")
    labels_path = tmp_path / "mnist" / data._IDX_FILES["test"][1]
    labels_path.write_bytes(gzip.compress(_idx(np.zeros(7, np.uint8))))
    with pytest.raises(data.CorruptDataError, match="20 images but 7 labels"):
        data.load("mnist", "test", data_dir=tmp_path, use_tfds=False)


def test_labels_outside_the_classes_name_the_file(tmp_path):
    _write_idx_dataset(tmp_path, "fashion_mnist")
    labels_path = tmp_path / "fashion_mnist" / data._IDX_FILES["test"][1]
    labels = np.zeros(20, np.uint8)
    labels[7] = 12
    labels_path.write_bytes(gzip.compress(_idx(labels)))
    with pytest.raises(data.CorruptDataError) as info:
        data.load("fashion_mnist", "test", data_dir=tmp_path, use_tfds=False)
    assert str(info.value) == (f"{labels_path}: label 12 at index 7 is out of range for the 10 classes of "
                               f"fashion_mnist (expected 0..9).")


def test_wrong_image_size_rejected(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    images_file, labels_file = data._IDX_FILES["test"]
    (folder / images_file).write_bytes(gzip.compress(_idx(np.zeros((2, 32, 32), np.uint8))))
    (folder / labels_file).write_bytes(gzip.compress(_idx(np.zeros(2, np.uint8))))
    with pytest.raises(data.CorruptDataError, match=r"\(32, 32\), expected \(28, 28\)"):
        data.load("mnist", "test", data_dir=tmp_path, use_tfds=False)


@pytest.mark.parametrize("name, label_bytes, classes", [("cifar10", 1, 10), ("cifar100", 2, 100)])
def test_cifar_binary_records(tmp_path, name, label_bytes, classes):
    rng = np.random.default_rng(0)
    info = data.get_info(name)
    folder = tmp_path / name
    folder.mkdir()
    expected = {}
    for split, files in info.files.items():
        images, labels = [], []
        for file_name in files:
            img = rng.integers(0, 256, size=(3, 3, 32, 32), dtype=np.uint8)  # N, C, H, W
            lab = rng.integers(0, classes, size=3, dtype=np.uint8)
            coarse = rng.integers(0, 20, size=(3, label_bytes - 1), dtype=np.uint8)
            rows = np.concatenate([coarse, lab[:, None], img.reshape(3, -1)], axis=1)
            (folder / file_name).write_bytes(rows.tobytes())
            images.append(img.transpose(0, 2, 3, 1))
            labels.append(lab)
        expected[split] = (np.concatenate(images), np.concatenate(labels))
    for split in ("train", "test"):
        x, y = data.load(name, split, data_dir=tmp_path, use_tfds=False)
        assert x.shape[1:] == (32, 32, 3)
        np.testing.assert_array_equal(x, expected[split][0].astype(np.float32) / 255.0)
        np.testing.assert_array_equal(y, expected[split][1])


def test_cifar_partial_record_rejected(tmp_path):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    (folder / "test_batch.bin").write_bytes(b"\x01" * 3000)
    with pytest.raises(data.CorruptDataError, match="not a whole number"):
        data.load("cifar10", "test", data_dir=tmp_path, use_tfds=False)


def test_limit_is_a_seeded_subset(tmp_path):
    _write_idx_dataset(tmp_path, "mnist")
    full_x, full_y = data.load("mnist", "test", data_dir=tmp_path, use_tfds=False)
    x1, y1 = data.load("mnist", "test", data_dir=tmp_path, limit=5, seed=3, use_tfds=False)
    x2, _ = data.load("mnist", "test", data_dir=tmp_path, limit=5, seed=3, use_tfds=False)
    x3, _ = data.load("mnist", "test", data_dir=tmp_path, limit=5, seed=4, use_tfds=False)
    assert len(x1) == 5 and np.array_equal(x1, x2) and not np.array_equal(x1, x3)
    rows = [int(np.flatnonzero((full_x == xi).all(axis=(1, 2, 3)))[0]) for xi in x1]
    np.testing.assert_array_equal(full_y[rows], y1)


def test_missing_split_names_places_and_fix(tmp_path):
    _write_idx_dataset(tmp_path, "mnist")
    (tmp_path / "mnist" / data._IDX_FILES["train"][0]).unlink()
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load("mnist", "train", data_dir=tmp_path, use_tfds=False)
    message = str(info.value)
    assert "'mnist' split 'train' not found" in message
    assert str(tmp_path / "mnist") in message and "EDGEBNN_DATA_DIR" in message


def test_env_var_is_used(tmp_path, monkeypatch):
    images, _ = _write_idx_dataset(tmp_path, "mnist")
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    x, _ = data.load("mnist", "test", use_tfds=False)
    np.testing.assert_array_equal(x[..., 0], images / np.float32(255.0))


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(name="svhn", split="train"), "valid names"),
        (dict(name="mnist", split="validation"), "valid splits"),
        (dict(name="mnist", split="test", limit=0), "`limit`"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, error):
    _write_idx_dataset(tmp_path, "mnist")
    with pytest.raises(ValueError, match=error):
        data.load(data_dir=tmp_path, use_tfds=False, **kwargs)


def test_real_fashion_mnist(data_dir):
    x, y = data.load("fashion_mnist", "test", data_dir=data_dir)
    assert x.shape == (10000, 28, 28, 1) and 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_array_equal(np.bincount(y), np.full(10, 1000))  # 1,000 per class (README)


def test_real_mnist_train_offline_fails_clearly(data_dir, monkeypatch):
    monkeypatch.setattr(data, "_host_reachable", lambda address: False)  # as offline, even if online
    monkeypatch.setenv("TFDS_DATA_DIR", str(data_dir / "no-tfds-here"))
    with pytest.raises(data.DatasetNotFoundError, match="unreachable"):
        data.load("mnist", "train", data_dir=data_dir)


def test_pipeline_batches_and_shuffles(rng):
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    batches = list(data.pipeline(x, np.arange(10), batch_size=4, seed=0))
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    seen = np.concatenate([b[1].numpy() for b in batches])
    assert sorted(seen) == list(range(10)) and list(seen) != list(range(10))
    with pytest.raises(ValueError, match="batch_size"):
        data.pipeline(x, np.arange(10), batch_size=0)


def test_carve_is_seeded_disjoint_and_stratified(data_dir):
    x_tr, y_tr, x_te, y_te, description = data.carve(
        "mnist", "test", train_size=8000, test_size=2000, seed=0, data_dir=data_dir
    )
    assert x_tr.shape == (8000, 28, 28, 1) and x_te.shape == (2000, 28, 28, 1)
    _, y_full = data.load("mnist", "test", data_dir=data_dir)
    # class proportions of the source split are kept (within one image per class)
    for part, size in ((y_tr, 8000), (y_te, 2000)):
        expected = np.bincount(y_full, minlength=10) * size / len(y_full)
        assert np.all(np.abs(np.bincount(part, minlength=10) - expected) <= 1)
    # disjoint: no test image is also a train image
    train_rows = {row.tobytes() for row in (x_tr * 255).astype(np.uint8)}
    assert sum(row.tobytes() in train_rows for row in (x_te * 255).astype(np.uint8)) <= 5  # MNIST has rare duplicates
    again = data.carve("mnist", "test", train_size=8000, test_size=2000, seed=0, data_dir=data_dir)
    np.testing.assert_array_equal(again[3], y_te)
    other = data.carve("mnist", "test", train_size=8000, test_size=2000, seed=1, data_dir=data_dir)
    assert not np.array_equal(other[3], y_te)
    assert "official test split (10,000 images)" in description and "seed 0" in description
    with pytest.raises(ValueError, match="exceeds the 10000 images"):
        data.carve("mnist", "test", train_size=9000, test_size=2000, data_dir=data_dir)


# --- ImageNet through tensorflow-datasets' manual-download path -----------------------------


def test_imagenet_needs_a_limit_and_names_the_manual_archives(tmp_path):
    with pytest.raises(ValueError, match="limit"):
        data.load("imagenet2012", "test", data_dir=tmp_path)
    with pytest.raises(ValueError, match="limit=N"):
        data.load_uint8("imagenet2012", "test", data_dir=tmp_path)
    with pytest.raises(data.DatasetNotFoundError, match=r"ILSVRC2012_img_val\.tar is missing.*manual download"):
        data.load("imagenet2012", "test", data_dir=tmp_path, limit=4)
    assert data.get_info("imagenet2012").num_classes == 1000


@pytest.mark.parametrize("height,width", [(256, 300), (256, 256), (310, 256)])
def test_center_crop_of_an_image_whose_shorter_side_is_256(height, width):
    """No resize when the shorter side is already 256: exactly the centre 224x224 pixels
    (torchvision's Resize(256) + CenterCrop(224))."""
    image = np.random.default_rng(0).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    ours = data.resize_and_center_crop(image).numpy()
    top, left = (height - 224) // 2, (width - 224) // 2
    np.testing.assert_array_equal(ours, image[top : top + 224, left : left + 224])


@pytest.mark.parametrize("height,width", [(500, 375), (100, 90), (224, 1000)])
def test_resize_and_center_crop_shape_and_scale(height, width):
    """Other sizes come out 224x224 uint8; a smooth ramp along the width keeps its centre value."""
    ramp = np.broadcast_to(np.linspace(0, 255, width)[None, :, None], (height, width, 3)).round().astype(np.uint8)
    ours = data.resize_and_center_crop(ramp).numpy()
    assert ours.shape == (224, 224, 3) and ours.dtype == np.uint8
    assert abs(int(ours[112, 112, 0]) - 128) <= 3
    assert (np.diff(ours[112, :, 0].astype(int)) >= 0).all()  # still increasing left to right
