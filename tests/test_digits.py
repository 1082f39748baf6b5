"""The digits of chapters 8-9 (scripts/digits.py): the split is fixed, stratified and disjoint,
the map between levels and pixels is the one the README states, and the sample scores measure
what they claim (confidence, class balance, the two-sample test, copies)."""
import numpy as np
import pytest
import scipy.stats
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


# --- the sample scores -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def split_and_classifier():
    """The fixed split and the digit classifier fitted to its training part (a fraction of a second)."""
    split = digits.load_split()
    return split, digits.fit_digit_classifier(split[0], split[1])


def test_the_digit_classifier_knows_real_digits_and_doubts_noise(split_and_classifier):
    """Fitted to the training split, it names >= 97% of held-out digits right and calls most of
    them confidently; images of random levels, and blends of two different digits, it calls
    confidently at most 10% of the time (a classifier confident about everything would make any
    sampler look good: scikit-learn's suggested CalibratedClassifierCV(SVC()) fails this)."""
    (train_x, train_y, held_x, held_y), classifier = split_and_classifier
    share, predicted = digits.confident_share(classifier, held_x)
    accuracy = (predicted == held_y).mean()
    assert accuracy >= 0.97 and share >= 0.8, (accuracy, share)
    noise = np.random.default_rng(0).integers(0, 17, (300, 8, 8))
    assert digits.confident_share(classifier, noise)[0] <= 0.1
    first, second = np.arange(0, 300), np.arange(300, 600)
    different = train_y[first] != train_y[second]
    blends = (train_x[first][different] + train_x[second][different]) // 2
    assert digits.confident_share(classifier, blends)[0] <= 0.1


def test_class_counts_test_is_pearsons_chi_square_against_uniform():
    """p-values checked against sum (o - e)^2 / e and the chi-square tail with 9 degrees of
    freedom: a balanced set is not rejected, a set missing one digit is (p < 0.01)."""
    for counts in ([100] * 10, [100] * 9 + [40], [111] * 9 + [0]):
        predicted = np.repeat(np.arange(10), counts)
        got, p = digits.class_counts(predicted)
        expected = np.full(10, sum(counts) / 10)
        statistic = ((np.array(counts) - expected) ** 2 / expected).sum()
        assert np.array_equal(got, counts) and np.isclose(p, scipy.stats.chi2.sf(statistic, 9)), (p, statistic)
    assert digits.class_counts(np.repeat(np.arange(10), [100] * 10))[1] > 0.99
    assert digits.class_counts(np.repeat(np.arange(10), [111] * 9 + [0]))[1] < 0.01


def test_the_two_sample_test_scores_one_half_on_real_digits_and_sees_a_shift(split_and_classifier):
    """Two random halves of the training digits: accuracy within 3 chance standard deviations of
    0.5. The same digits against copies moved one pixel to the right: well above 0.5."""
    (train_x, _, _, _), _ = split_and_classifier
    order = np.random.default_rng(1).permutation(len(train_x))
    a, b = train_x[order[:750]], train_x[order[750:]]
    accuracy = digits.two_sample_accuracy(a, b, seed=0)
    assert abs(accuracy - 0.5) < 3 * 0.5 / np.sqrt(1500), accuracy
    moved = np.roll(b, 1, axis=2)
    assert digits.two_sample_accuracy(a, moved, seed=0) > 0.8


def test_memorisation_flags_a_planted_copy_and_passes_held_out_digits(split_and_classifier):
    """Training digits with one level added or taken at random pixels are copies, found at their
    own index; no held-out digit is a copy; the distances are the brute-force ones."""
    (train_x, _, held_x, _), _ = split_and_classifier
    rng = np.random.default_rng(0)
    source = rng.choice(len(train_x), 20, replace=False)
    planted = np.clip(train_x[source] + rng.integers(-1, 2, (20, 8, 8)), 0, 16)
    index, distance, gap = digits.nearest_training(planted, train_x)
    assert np.array_equal(index, source) and np.all(gap <= digits.COPY_LEVELS)
    _, held_distance, held_gap = digits.nearest_training(held_x, train_x)
    assert np.all(held_gap > digits.COPY_LEVELS), held_gap.min()
    brute = np.sqrt(((held_x[:5, None].astype(float) - train_x[None].astype(float)) ** 2).sum(axis=(2, 3))).min(1)
    assert np.allclose(held_distance[:5], brute)
    mixed = np.concatenate([planted, held_x[:80]])
    split = (train_x, None, held_x, None)
    assert digits.score_samples(mixed, split, split_and_classifier[1])["copies"] == pytest.approx(0.2)


def test_the_level_gap_is_zero_on_one_set_and_finds_a_planted_haze(split_and_classifier):
    """level_gap of a set against itself is 0; lifting 5% of all pixels from level 0 to level 1 (a
    haze) is found as a 5-point gap at level 0 or 1, the shares counted by hand."""
    (train_x, _, _, _), _ = split_and_classifier
    assert digits.level_gap(train_x, train_x) == (0.0, 0)
    hazy = train_x.copy().ravel()
    background = np.flatnonzero(hazy == 0)
    lifted = np.random.default_rng(0).choice(background, round(0.05 * hazy.size), replace=False)
    hazy[lifted] = 1
    gap, level = digits.level_gap(hazy.reshape(train_x.shape), train_x)
    assert level in (0, 1) and abs(abs(gap) - 100 * len(lifted) / hazy.size) < 1e-9, (gap, level)
    assert np.isclose(digits.level_shares(hazy)[1], (train_x == 1).mean() + len(lifted) / hazy.size)
    assert np.abs(digits.defective(train_x) - train_x).max() == 1
