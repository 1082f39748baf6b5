"""The handwritten digits of chapters 8 and 9: real 8 x 8 images that ship inside scikit-learn,
so nothing is downloaded. README chapter 8, "The data".

`sklearn.datasets.load_digits()` holds 1,797 digits written by 43 people (the UCI optical
recognition set): each pixel counts the set pixels of a 4 x 4 block of a 32 x 32 bitmap, so it
takes one of LEVELS = 17 grey levels 0..16. The split below is fixed once (stratified by label,
its seed named here), so every chapter and test scores on the same held-out digits.

Levels and the continuous pixels a diffusion model sees:
- level k in 0..16 owns the bin [2k / 17 - 1, 2(k + 1) / 17 - 1) of [-1, 1): every bin has
  width 2 / 17, and the 17 bins tile [-1, 1) exactly;
- training draws a point uniformly inside each pixel's bin (uniform dequantisation: u ~ U(0, 1),
  z = 2 (k + u) / 17 - 1), so the model learns a density on [-1, 1)^64, not 17 spikes, and its
  bound becomes a bound on the discrete digits (README chapter 8, "Bits per pixel");
- a sample z goes back to the level whose bin holds it (`to_levels`).
"""
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

LEVELS = 17          # grey levels 0..16
SIDE = 8             # images are SIDE x SIDE
PIXELS = SIDE * SIDE
N_HELDOUT = 297      # held-out digits (the rest, 1,500, train)
SPLIT_SEED = 0       # the split's own seed: change it and every number of chapters 8-9 moves


def load_split():
    """The fixed split: (train_levels, train_labels, heldout_levels, heldout_labels), images as
    int64 arrays (n, 8, 8) of levels 0..16, labels int64 0..9; stratified, so each digit has
    the same share in both parts."""
    data = load_digits()
    images, labels = data.images.astype(np.int64), data.target.astype(np.int64)
    train_x, heldout_x, train_y, heldout_y = train_test_split(
        images, labels, test_size=N_HELDOUT, stratify=labels, random_state=SPLIT_SEED)
    return train_x, train_y, heldout_x, heldout_y


def to_unit(levels, u=None):
    """Levels 0..16 to pixels in [-1, 1): z = 2 (k + u) / 17 - 1. With u a tensor of U(0, 1)
    draws (the shape of levels) this is uniform dequantisation; without, u = 1/2, the bin's centre.
    Returns float32 (n, 1, 8, 8) for (n, 8, 8) input: one grey channel, as the UNet expects."""
    k = torch.as_tensor(levels, dtype=torch.float32)
    u = 0.5 if u is None else u
    z = 2.0 * (k + u) / LEVELS - 1.0
    return z.reshape(-1, 1, SIDE, SIDE)


def to_levels(z):
    """Pixels back to levels: the bin of [-1, 1) that holds each value, values outside clipped
    to the end bins. Returns int64 numpy (n, 8, 8). A value within float32 rounding below a
    bin's lower edge (where to_unit(k, u=0) can land) counts as inside that bin."""
    z = torch.as_tensor(z).detach().cpu().double().reshape(-1, SIDE, SIDE)
    k = torch.floor((z + 1.0) * LEVELS / 2.0 + 1e-5).clamp(0, LEVELS - 1)
    return k.long().numpy()


def dequantise(levels, generator=None):
    """A fresh uniformly dequantised copy of a batch of levels (float32 (n, 1, 8, 8))."""
    k = torch.as_tensor(levels)
    return to_unit(k, torch.rand(k.shape, generator=generator))
