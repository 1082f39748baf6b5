"""The digits of chapters 8-9 (scripts/digits.py): the split is fixed, stratified and disjoint,
and the map between levels and pixels is the one the README states."""
import numpy as np
import torch

import digits
from model import sinusoidal_embedding


def test_split_is_fixed_stratified_and_disjoint():
    """1,500 train and 297 held-out digits, the same on every call, no image in both parts by
    index (the two sets' sizes add up to the 1,797 of the data set), each label's share within
    one digit of its share in the whole set."""
    train_x, train_y, held_x, held_y = digits.load_split()
    again = digits.load_split()
    assert train_x.shape == (1500, 8, 8) and held_x.shape == (297, 8, 8), (train_x.shape, held_x.shape)
    assert all(np.array_equal(a, b) for a, b in zip((train_x, train_y, held_x, held_y), again))
    assert train_x.min() == 0 and train_x.max() == 16, (train_x.min(), train_x.max())
    counts_train, counts_held = np.bincount(train_y, minlength=10), np.bincount(held_y, minlength=10)
    whole = counts_train + counts_held
    expected = whole * 297 / 1797
    assert np.all(np.abs(counts_held - expected) <= 1.0), (counts_held, expected)


def test_levels_own_bins_of_width_two_over_17_that_tile_minus_one_to_one():
    """Every dequantised pixel lies in its level's bin [2k/17 - 1, 2(k+1)/17 - 1) and maps back to
    k, for u at the bin's two ends and in between; the centres sit at 2(k + 1/2)/17 - 1."""
    k = torch.arange(17).repeat(3)                       # 51 levels, each its own image
    images = k.reshape(-1, 1, 1).expand(-1, 8, 8)
    low = (2.0 * k.float() / 17 - 1).reshape(-1, 1, 1, 1)
    for u in (0.0, 0.5, 0.999):
        z = digits.to_unit(images, torch.full(images.shape, u))
        assert torch.all(z >= low - 1e-7) and torch.all(z < low + 2.0 / 17), u
        assert np.array_equal(digits.to_levels(z), images.numpy()), u
    centres = digits.to_unit(images)[:17, 0, 0, 0]
    assert torch.allclose(centres, (torch.arange(17) + 0.5) * 2 / 17 - 1)
    assert digits.to_levels(torch.full((1, 8, 8), -5.0)).min() == 0
    assert digits.to_levels(torch.full((1, 8, 8), 5.0)).max() == 16


def test_sinusoidal_codes_have_inner_products_that_depend_only_on_the_gap():
    """<e(t), e(s)> = sum_i cos(w_i (t - s)) with w_i = max_period^(-i / half): checked against
    that sum for pairs of times with the same gap, and e(t) != e(t + 1)."""
    dim, half = 64, 32
    w = 10_000.0 ** (-np.arange(half) / half)
    t = torch.tensor([1.0, 50.0, 123.5])
    e_t, e_s = sinusoidal_embedding(t, dim), sinusoidal_embedding(t + 7.0, dim)
    inner = (e_t * e_s).sum(dim=1).numpy()
    assert np.allclose(inner, np.cos(w * 7.0).sum(), atol=1e-3), (inner, np.cos(w * 7.0).sum())
    assert (sinusoidal_embedding(t, dim) - sinusoidal_embedding(t + 1, dim)).abs().max() > 0.1
