"""Datasets: IDX / CIFAR-binary folders offline, tensorflow-datasets when online.

:func:`load` returns NumPy arrays (float32 pixels in ``[0, 1]``, NHWC; int64 labels).
Where the files come from, in order:

1. ``data_dir`` (or the ``EDGEBNN_DATA_DIR`` environment variable) holding a folder
   ``<name>/`` with the canonical distribution files: the IDX ``.gz`` files for
   MNIST and Fashion-MNIST (``train-images-idx3-ubyte.gz``, ...), the binary
   version for CIFAR (``data_batch_1.bin`` ... ``test_batch.bin`` for CIFAR-10,
   ``train.bin`` / ``test.bin`` for CIFAR-100, optionally gzipped);
2. Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``);
3. tensorflow-datasets, which downloads when the machine is online.

ImageNet (``"imagenet2012"``, ILSVRC 2012) cannot be downloaded by tensorflow-datasets:
it reads the archives ``ILSVRC2012_img_train.tar`` and ``ILSVRC2012_img_val.tar`` that
you download yourself (tfds' *manual download* path) from ``<data_dir>/imagenet2012/``
(or ``$EDGEBNN_DATA_DIR/imagenet2012/``), prepares them once, and :func:`load` returns a
``limit``-image prefix of a split, each image resized (shorter side 256) and centre-cropped
to 224x224, the evaluation transform of BinaryNet.pytorch's AlexNet. Its ``"test"`` split is
ILSVRC's labelled validation set (the official test set has no labels).

When none of them has the split, :class:`DatasetNotFoundError` says which places
were looked in and how to provide the files.
"""

import gzip
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgebnn import EdgebnnError, _validate

DATA_DIR_ENV = "EDGEBNN_DATA_DIR"
SPLITS = ("train", "test")

#: IDX magic numbers: two zero bytes, the element type (0x08 = unsigned byte), ndim.
_IDX_UBYTE = 0x08
_IDX_IMAGES_NDIM = 3
_IDX_LABELS_NDIM = 1


@dataclass(frozen=True)
class DatasetInfo:
    """What :func:`load` knows about a dataset."""

    name: str
    image_shape: tuple
    num_classes: int
    files: dict  # split -> file names inside <data_dir>/<name>/
    file_format: str  # "idx", "cifar10" / "cifar100" binary records, or "tfds_manual"
    debian_dir: str | None = None


_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

DATASETS = {
    "mnist": DatasetInfo("mnist", (28, 28, 1), 10, _IDX_FILES, "idx"),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", (28, 28, 1), 10, _IDX_FILES, "idx",
        debian_dir="/usr/share/datasets/fashion-mnist",
    ),
    "cifar10": DatasetInfo(
        "cifar10", (32, 32, 3), 10,
        {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)},
        "cifar10",
    ),
    "cifar100": DatasetInfo(
        "cifar100", (32, 32, 3), 100,
        {"train": ("train.bin",), "test": ("test.bin",)},
        "cifar100",
    ),
    # The archives tfds' imagenet2012 builder reads from its manual directory.
    "imagenet2012": DatasetInfo(
        "imagenet2012", (224, 224, 3), 1000,
        {"train": ("ILSVRC2012_img_train.tar",), "test": ("ILSVRC2012_img_val.tar",)},
        "tfds_manual",
    ),
}

#: Our split names -> tensorflow-datasets' for datasets read through a manual download.
_TFDS_MANUAL_SPLITS = {"train": "train", "test": "validation"}
#: ImageNet evaluation transform (BinaryNet.pytorch, torchvision): shorter side to 256, centre crop 224.
IMAGENET_RESIZE = 256
IMAGENET_CROP = 224


class DatasetNotFoundError(EdgebnnError):
    """No source could provide the requested dataset split."""


class CorruptDataError(EdgebnnError):
    """A dataset file exists but is not a valid file of its format."""


def get_info(name):
    """Return the :class:`DatasetInfo` of ``name`` or raise listing the valid names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"Unknown dataset {name!r}; valid names: {sorted(DATASETS)}.") from None


def _read_bytes(path):
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise CorruptDataError(f"{path}: corrupt or truncated gzip data ({e}).") from e
    return raw


def read_idx(path, *, expected_ndim):
    """Parse an IDX file of unsigned bytes (``.gz`` or plain) into a uint8 array.

    Validates the magic number (element type ubyte and ``expected_ndim`` dimensions)
    and that the payload length equals the product of the header's dimensions.

    Raises:
        CorruptDataError: on a bad magic number, header or payload length.
    """
    data = _read_bytes(path)
    if len(data) < 4:
        raise CorruptDataError(f"{path}: too short for an IDX header ({len(data)} bytes).")
    zero0, zero1, dtype_code, ndim = data[:4]
    if zero0 != 0 or zero1 != 0 or dtype_code != _IDX_UBYTE or ndim != expected_ndim:
        raise CorruptDataError(
            f"{path}: bad IDX magic number 0x{data[:4].hex()} "
            f"(expected 0x0000{_IDX_UBYTE:02x}{expected_ndim:02x}: unsigned bytes, {expected_ndim} dims)."
        )
    header_end = 4 + 4 * ndim
    if len(data) < header_end:
        raise CorruptDataError(f"{path}: truncated IDX header.")
    dims = struct.unpack(f">{ndim}I", data[4:header_end])
    expected = int(np.prod(dims, dtype=np.int64))
    payload = len(data) - header_end
    if payload != expected:
        raise CorruptDataError(
            f"{path}: IDX header announces dims {dims} = {expected} bytes but the file holds {payload}."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_end).reshape(dims)


def _read_idx_split(folder, files, info):
    images_file, labels_file = files
    images = read_idx(folder / images_file, expected_ndim=_IDX_IMAGES_NDIM)
    labels = read_idx(folder / labels_file, expected_ndim=_IDX_LABELS_NDIM)
    if images.shape[1:] != info.image_shape[:2]:
        raise CorruptDataError(
            f"{folder / images_file}: images are {images.shape[1:]}, expected {info.image_shape[:2]} for {info.name}."
        )
    if len(images) != len(labels):
        raise CorruptDataError(
            f"{folder}: {len(images)} images but {len(labels)} labels in {images_file} / {labels_file}."
        )
    if labels.max(initial=0) >= info.num_classes:
        bad = int(np.argmax(labels >= info.num_classes))
        raise CorruptDataError(
            f"{folder / labels_file}: label {int(labels[bad])} at index {bad} is out of range for the "
            f"{info.num_classes} classes of {info.name} (expected 0..{info.num_classes - 1})."
        )
    return images[..., np.newaxis], labels


def _read_cifar_split(folder, files, info):
    label_bytes = 1 if info.file_format == "cifar10" else 2  # CIFAR-100: coarse, fine
    pixels = int(np.prod(info.image_shape))
    record = label_bytes + pixels
    images, labels = [], []
    for name in files:
        data = _read_bytes(folder / name)
        if not data or len(data) % record:
            raise CorruptDataError(
                f"{folder / name}: {len(data)} bytes is not a whole number of {record}-byte CIFAR records."
            )
        rows = np.frombuffer(data, dtype=np.uint8).reshape(-1, record)
        labels.append(rows[:, label_bytes - 1])  # CIFAR-100: the fine label
        channels_first = rows[:, label_bytes:].reshape(-1, info.image_shape[2], *info.image_shape[:2])
        images.append(channels_first.transpose(0, 2, 3, 1))
    labels = np.concatenate(labels)
    if labels.max(initial=0) >= info.num_classes:
        raise CorruptDataError(f"{folder}: label {labels.max()} out of range for {info.num_classes} classes.")
    return np.concatenate(images), labels


def _read_folder(folder, split, info):
    files = info.files[split]
    if not all((folder / name).is_file() for name in files):
        return None
    reader = _read_idx_split if info.file_format == "idx" else _read_cifar_split
    return reader(folder, files, info)


#: Where tensorflow-datasets downloads MNIST-family and CIFAR files from.
_TFDS_DOWNLOAD_HOST = ("storage.googleapis.com", 443)
_REACHABILITY_TIMEOUT_S = 5.0


def _host_reachable(address):
    try:
        socket.create_connection(address, timeout=_REACHABILITY_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def _read_tfds(name, split):
    """Load through tensorflow-datasets; fail fast when it would have to download offline.

    tfds retries unreachable downloads for minutes before giving up, so when the
    dataset is not prepared locally we first check that its download host answers.
    """
    import tensorflow_datasets as tfds  # noqa: PLC0415 (heavy, only when needed)

    builder = tfds.builder(name)
    if not builder.is_prepared() and not _host_reachable(_TFDS_DOWNLOAD_HOST):
        raise DatasetNotFoundError(
            f"not prepared in {builder.data_dir} and {_TFDS_DOWNLOAD_HOST[0]} is unreachable (offline)"
        )
    data = tfds.as_numpy(tfds.load(name, split=split, as_supervised=True, batch_size=-1))
    return data[0], data[1]


def resize_and_center_crop(image, *, resize=IMAGENET_RESIZE, crop=IMAGENET_CROP):
    """One ``uint8`` HWC image with its shorter side scaled to ``resize`` (bilinear), centre-cropped to ``crop``."""
    import tensorflow as tf  # noqa: PLC0415

    image = tf.convert_to_tensor(image)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    scale = resize / tf.cast(tf.minimum(height, width), tf.float32)
    size = tf.cast(tf.round(tf.cast(tf.stack([height, width]), tf.float32) * scale), tf.int32)
    resized = tf.image.resize(image, tf.maximum(size, crop), method="bilinear")
    top = (tf.shape(resized)[0] - crop) // 2
    left = (tf.shape(resized)[1] - crop) // 2
    cropped = resized[top : top + crop, left : left + crop]
    return tf.cast(tf.clip_by_value(tf.round(cropped), 0, 255), tf.uint8)


def _manual_dir(info, data_dir):
    root = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    return None if root is None else Path(root) / info.name


def _read_tfds_manual(info, split, *, limit, data_dir):
    """The first ``limit`` images of ``split`` through tfds' manual-download path, preprocessed."""
    import tensorflow_datasets as tfds  # noqa: PLC0415 (heavy, only when needed)

    manual_dir = _manual_dir(info, data_dir)
    builder = tfds.builder(info.name)
    if not builder.is_prepared():
        archive = None if manual_dir is None else manual_dir / info.files[split][0]
        if archive is None or not archive.is_file():
            where = "no data_dir / $" + DATA_DIR_ENV + " given" if manual_dir is None else f"{archive} is missing"
            raise DatasetNotFoundError(
                f"Dataset {info.name!r} split {split!r}: not prepared in {builder.data_dir} and {where}. "
                f"Download {', '.join(f for fs in info.files.values() for f in fs)} from image-net.org into "
                f"<DIR>/{info.name}/ and pass data_dir=<DIR> or set {DATA_DIR_ENV}=<DIR> "
                f"(tensorflow-datasets' manual download)."
            )
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    dataset = builder.as_dataset(split=f"{_TFDS_MANUAL_SPLITS[split]}[:{limit}]", as_supervised=True)
    images, labels = [], []
    for image, label in dataset:
        images.append(resize_and_center_crop(image).numpy())
        labels.append(int(label))
    return np.stack(images), np.asarray(labels, np.int64)


def _local_candidates(info, data_dir):
    roots = []
    if data_dir is not None:
        roots.append(Path(data_dir) / info.name)
    elif os.environ.get(DATA_DIR_ENV):
        roots.append(Path(os.environ[DATA_DIR_ENV]) / info.name)
    if info.debian_dir:
        roots.append(Path(info.debian_dir))
    return roots


def load_uint8(name, split, *, data_dir=None, use_tfds=True):
    """Load a whole split as raw ``uint8`` images (NHWC) and ``int64`` labels.

    Args:
        name: one of :data:`DATASETS`.
        split: ``"train"`` or ``"test"``.
        data_dir: folder holding ``<name>/`` (default: ``$EDGEBNN_DATA_DIR``).
        use_tfds: fall back to tensorflow-datasets when no local folder has the split.

    Raises:
        ValueError: unknown name or split.
        DatasetNotFoundError: no source has the split.
        CorruptDataError: a local file is invalid.
    """
    info = get_info(name)
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r} for {name}; valid splits: {list(SPLITS)}.")
    if info.file_format == "tfds_manual":
        raise ValueError(f"{name} does not fit in memory as a whole split; load a prefix with "
                         f"edgebnn.data.load({name!r}, {split!r}, limit=N).")
    looked = []
    for folder in _local_candidates(info, data_dir):
        result = _read_folder(folder, split, info)
        if result is not None:
            return result[0], result[1].astype(np.int64)
        looked.append(f"{folder}/{{{','.join(info.files[split])}}}")
    if use_tfds:
        try:
            images, labels = _read_tfds(name, split)
            return images.astype(np.uint8), labels.astype(np.int64)
        except Exception as e:  # tfds raises many unrelated types; reported, never swallowed
            first_line = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            looked.append(f"tensorflow-datasets ({first_line})")
            cause = e
    else:
        cause = None
    raise DatasetNotFoundError(
        f"Dataset {name!r} split {split!r} not found; looked in: {'; '.join(looked) or 'nowhere'}. "
        f"Put the canonical files in <DIR>/{name}/ and pass data_dir=<DIR> or set {DATA_DIR_ENV}=<DIR>, "
        f"or go online so tensorflow-datasets can download it."
    ) from cause


def load(name, split, *, data_dir=None, limit=None, seed=0, use_tfds=True):
    """Load a dataset split as float32 pixels in ``[0, 1]`` (NHWC) and int64 labels.

    Args:
        name: ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``, ``"cifar100"`` or ``"imagenet2012"``.
        split: ``"train"`` or ``"test"``.
        data_dir: folder holding ``<name>/`` (default: ``$EDGEBNN_DATA_DIR``).
        limit: keep a seeded random subset of this many examples (``None``: all);
            required for ``"imagenet2012"``, which keeps the first ``limit`` examples of
            tfds' (shuffled at preparation) split.
        seed: seed of that subset.
        use_tfds: fall back to tensorflow-datasets when no local folder has the split.

    Returns:
        ``(x, y)``: ``x`` float32 of shape ``(n, *image_shape)``, ``y`` int64 of shape ``(n,)``.

    Raises:
        ValueError: unknown name or split, or a bad ``limit``.
        DatasetNotFoundError: no source has the split.
        CorruptDataError: a local file is invalid.
    """
    _validate.positive_int(limit, "limit", allow_none=True)
    info = get_info(name)
    if info.file_format == "tfds_manual":
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r} for {name}; valid splits: {list(SPLITS)}.")
        if limit is None:
            raise ValueError(f"`limit` is required for {name}: its splits do not fit in memory as arrays.")
        images, labels = _read_tfds_manual(info, split, limit=limit, data_dir=data_dir)
        return images.astype(np.float32) / 255.0, labels
    images, labels = load_uint8(name, split, data_dir=data_dir, use_tfds=use_tfds)
    if limit is not None and limit < len(images):
        keep = np.sort(np.random.default_rng(seed).permutation(len(images))[:limit])
        images, labels = images[keep], labels[keep]
    return images.astype(np.float32) / 255.0, labels


def carve(name, source, *, train_size, test_size, seed=0, data_dir=None, use_tfds=True):
    """A seeded, class-stratified train/test split carved out of one official split.

    For machines that hold only one split of a dataset (offline MNIST: its 10,000 test
    images). The two parts are disjoint and each keeps the class proportions of
    ``source`` (scikit-learn's ``train_test_split`` with ``stratify``); the same
    arguments always give the same images.

    Args:
        name: one of :data:`DATASETS`.
        source: the official split to carve, ``"train"`` or ``"test"``.
        train_size, test_size: images in the two parts (together at most the split's size).
        seed: seed of the carve.
        data_dir, use_tfds: as for :func:`load`.

    Returns:
        ``(x_train, y_train, x_test, y_test, description)``: float32 pixels in ``[0, 1]``,
        int64 labels, and a sentence saying exactly which images each part holds.

    Raises:
        ValueError: bad sizes, or more images asked than the split holds.
        DatasetNotFoundError, CorruptDataError: as for :func:`load`.
    """
    from sklearn.model_selection import train_test_split  # noqa: PLC0415 (only for carved splits)

    _validate.positive_int(train_size, "train_size")
    _validate.positive_int(test_size, "test_size")
    images, labels = load_uint8(name, source, data_dir=data_dir, use_tfds=use_tfds)
    if train_size + test_size > len(images):
        raise ValueError(
            f"`train_size` + `test_size` = {train_size + test_size} exceeds the {len(images)} images "
            f"of {name} split {source!r}."
        )
    index = np.arange(len(images))
    train_index, test_index = train_test_split(
        index, train_size=train_size, test_size=test_size, stratify=labels, random_state=seed, shuffle=True
    )
    train_index, test_index = np.sort(train_index), np.sort(test_index)
    description = (
        f"{name} official {source} split ({len(images):,} images), carved with seed {seed} into a "
        f"class-stratified {train_size:,}-image train part and a disjoint {test_size:,}-image test part "
        f"(scikit-learn train_test_split)"
    )
    return (
        images[train_index].astype(np.float32) / 255.0, labels[train_index],
        images[test_index].astype(np.float32) / 255.0, labels[test_index], description,
    )


def pipeline(x, y, *, batch_size, shuffle=True, seed=0):
    """A ``tf.data`` pipeline over arrays: seeded shuffle each epoch, batch, prefetch."""
    import tensorflow as tf  # noqa: PLC0415 (keeps `edgebnn.data` importable without TF)

    _validate.positive_int(batch_size, "batch_size")
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# --- your own data: an .npz file, or any tensorflow-datasets image classification set ---

#: Arrays an ``.npz`` data file must hold (:func:`load_npz`).
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
#: Fewest classes a classification data set can have.
MIN_CLASSES = 2
#: Largest value of a uint8 pixel, the divisor that maps it to ``[0, 1]``.
_UINT8_MAX = 255


def _npz_pixels(x, key, path):
    """``x`` as float32 in ``[0, 1]`` with a channel axis; one-line errors naming the array."""
    if x.ndim == 3:  # (n, height, width): one channel
        x = x[..., np.newaxis]
    if x.ndim != 4 or len(x) == 0 or min(x.shape[1:]) < 1:
        raise CorruptDataError(f"{path}: `{key}` must be images of shape (n, height, width[, channels]) "
                               f"with n >= 1, got shape {x.shape}.")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / _UINT8_MAX
    if not np.issubdtype(x.dtype, np.floating):
        raise CorruptDataError(f"{path}: `{key}` must hold uint8 pixels or floats in [0, 1], got dtype {x.dtype}.")
    if not np.all(np.isfinite(x)):
        raise CorruptDataError(f"{path}: `{key}` holds NaN or infinite pixels.")
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 1:
        raise CorruptDataError(f"{path}: `{key}` float pixels must lie in [0, 1], got [{low:g}, {high:g}] "
                               f"(divide uint8 images by 255, or save them as uint8).")
    return x.astype(np.float32)


def _npz_labels(y, key, path, n):
    if y.ndim == 2 and y.shape[1] == 1:  # (n, 1) column of labels
        y = y[:, 0]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise CorruptDataError(f"{path}: `{key}` must be integer class labels of shape (n,), got dtype "
                               f"{y.dtype} and shape {y.shape} (one-hot labels: take their argmax).")
    if len(y) != n:
        raise CorruptDataError(f"{path}: `{key}` has {len(y)} labels for {n} images.")
    if len(y) and y.min() < 0:
        raise CorruptDataError(f"{path}: `{key}` holds the negative label {int(y.min())}; labels are 0..classes-1.")
    return y.astype(np.int64)


def load_npz(path):
    """Your own images from an ``.npz`` file, checked.

    The file holds ``x_train``, ``y_train``, ``x_test``, ``y_test`` (``numpy.savez``):
    images of any size as ``(n, height, width)`` or ``(n, height, width, channels)``,
    either ``uint8`` pixels (divided by 255 here) or floats in ``[0, 1]``, and integer
    labels ``0..classes-1``. The number of classes is the largest label plus one; every
    class must have training images, and the test images must share the training
    images' shape.

    Args:
        path: the ``.npz`` file.

    Returns:
        ``(x_train, y_train, x_test, y_test, num_classes)``: float32 NHWC pixels in
        ``[0, 1]``, int64 labels, and the class count.

    Raises:
        FileNotFoundError: no file at ``path``.
        CorruptDataError: not an ``.npz`` file, a missing array, or bad shapes, pixel
            values, labels or classes (naming the array).
    """
    import zipfile  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`path`: no data file at {str(path)!r}.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in NPZ_KEYS if k not in npz.files]
            if missing:
                raise CorruptDataError(f"{path}: missing array(s) {missing}; an .npz data file holds "
                                       f"{list(NPZ_KEYS)} (found {sorted(npz.files)}).")
            arrays = {k: npz[k] for k in NPZ_KEYS}
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise CorruptDataError(f"{path}: not a readable .npz file ({e}).") from e
    x_train = _npz_pixels(arrays["x_train"], "x_train", path)
    x_test = _npz_pixels(arrays["x_test"], "x_test", path)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise CorruptDataError(f"{path}: `x_test` images are {x_test.shape[1:]}, `x_train` images "
                               f"{x_train.shape[1:]}; they must match.")
    y_train = _npz_labels(arrays["y_train"], "y_train", path, len(x_train))
    y_test = _npz_labels(arrays["y_test"], "y_test", path, len(x_test))
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    if num_classes < MIN_CLASSES:
        raise CorruptDataError(f"{path}: the labels name {num_classes} class; classification needs at least "
                               f"{MIN_CLASSES}.")
    absent = sorted(set(range(num_classes)) - set(np.unique(y_train).tolist()))
    if absent:
        raise CorruptDataError(f"{path}: class(es) {absent[:5]} of 0..{num_classes - 1} have no training "
                               f"images in `y_train` (labels must be 0..classes-1 with every class present).")
    return x_train, y_train, x_test, y_test, num_classes


def tfds_info(name):
    """``(image_shape, num_classes)`` of the tensorflow-datasets image classification set ``name``.

    Reads the dataset's description only (offline too); nothing is downloaded.

    Raises:
        ValueError: ``name`` is not a tensorflow-datasets name, or not an image
            classification set of fixed-size images with class labels.
    """
    import tensorflow_datasets as tfds  # noqa: PLC0415 (heavy, only when needed)

    try:
        builder = tfds.builder(name)
    except Exception as e:  # tfds raises DatasetNotFoundError and others; reported, never swallowed
        first_line = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise ValueError(f"{name!r} is not a tensorflow-datasets name ({first_line.rstrip('.')}).") from None
    info = builder.info
    keys = info.supervised_keys
    features = info.features
    if not keys or len(keys) != 2 or not isinstance(features[keys[0]], tfds.features.Image) \
            or not isinstance(features[keys[1]], tfds.features.ClassLabel):
        raise ValueError(f"tensorflow-datasets {name!r} is not an image classification set "
                         f"(supervised keys {keys}); use data.files with your own arrays.")
    shape = tuple(features[keys[0]].shape)
    if any(d is None for d in shape):
        raise ValueError(f"tensorflow-datasets {name!r} has images of varying size {shape}; resize them "
                         f"and save them as an .npz for data.files.")
    return shape, int(features[keys[1]].num_classes)


def load_tfds(name, split, *, limit=None, seed=0):
    """A split of the tensorflow-datasets image classification set ``name`` as float32
    pixels in ``[0, 1]`` and int64 labels (a seeded subset of ``limit`` images when given).

    Raises:
        DatasetNotFoundError: the set is not prepared locally and cannot be downloaded
            (offline); the message says how to provide it.
    """
    _validate.positive_int(limit, "limit", allow_none=True)
    import tensorflow_datasets as tfds  # noqa: PLC0415 (heavy, only when needed)

    try:
        images, labels = _read_tfds(name, split)
    except DatasetNotFoundError as e:
        raise DatasetNotFoundError(
            f"Dataset {name!r} split {split!r} is not available: {e}. Run once online (tensorflow-datasets "
            f"downloads and prepares it into {tfds.builder(name).data_dir}), or save its images as an .npz "
            f"({', '.join(NPZ_KEYS)}) and set data.files.") from None
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise CorruptDataError(f"tensorflow-datasets {name!r}: expected uint8 images, got {images.dtype}.")
    labels = np.asarray(labels).astype(np.int64)
    if limit is not None and limit < len(images):
        keep = np.sort(np.random.default_rng(seed).permutation(len(images))[:limit])
        images, labels = images[keep], labels[keep]
    return images.astype(np.float32) / _UINT8_MAX, labels
