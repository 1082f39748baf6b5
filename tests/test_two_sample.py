"""The strong two-sample test: at chance on two draws of one distribution, far above it when the
sets differ in nothing but how often one value appears (the haze of chapter 8: a few points of
one grey level's share)."""
import numpy as np
import pytest

import two_sample


def levels(n, share_of_one, rng):
    """n images of 64 pixels, each pixel 0 with probability 0.5 - share_of_one, 1 with
    share_of_one, and otherwise uniform on 2..16."""
    p = np.full(17, 0.5 / 15)
    p[0], p[1] = 0.5 - share_of_one, share_of_one
    p[2:] = (1 - p[0] - p[1]) / 15
    return rng.choice(17, size=(n, 8, 8), p=p)


def test_two_draws_of_one_distribution_score_chance():
    rng = np.random.default_rng(0)
    n = 400
    accuracy = two_sample.two_sample_accuracy(levels(n, 0.04, rng), levels(n, 0.04, rng), top=16, seed=0)
    spread = two_sample.chance_spread(n)
    assert abs(accuracy - 0.5) < 3 * spread, f"accuracy {accuracy:.3f} on one distribution, chance 0.5 +- {spread:.3f}"


def test_a_five_point_shift_in_one_levels_share_is_found():
    rng = np.random.default_rng(1)
    n = 400
    accuracy = two_sample.two_sample_accuracy(levels(n, 0.04, rng), levels(n, 0.09, rng), top=16, seed=0)
    assert accuracy > 0.5 + 6 * two_sample.chance_spread(n), f"accuracy {accuracy:.3f}: the test missed a 5-point shift"


def test_sets_are_cut_to_the_same_size_and_must_have_the_same_shape():
    rng = np.random.default_rng(2)
    small, large = levels(60, 0.04, rng), levels(500, 0.04, rng)
    assert 0.0 <= two_sample.two_sample_accuracy(small, large, top=16) <= 1.0
    with pytest.raises(ValueError, match="like with like"):
        two_sample.two_sample_accuracy(small, np.zeros((60, 28, 28)), top=16)
