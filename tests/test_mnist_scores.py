"""The 28 x 28 sample scores of chapters 12-13 (scripts/mnist_scores.py): the Frechet distance
against closed forms, the two-sample test tells apart sets that differ, the nearest training
digit is found, and the classifier learns digits while refusing noise and blends."""
import numpy as np
import torch

import mnist
import mnist_scores
import two_sample


def test_frechet_distance_matches_closed_forms_for_two_gaussians():
    """Diagonal covariances: ||m1 - m2||^2 + sum (s1 - s2)^2; rotating both Gaussians alike keeps
    it; and on 200,000 draws the sample version is within 1% of the exact one."""
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=4), rng.normal(size=4)
    s1, s2 = rng.uniform(0.5, 2, 4), rng.uniform(0.5, 2, 4)
    exact = np.sum((m1 - m2) ** 2) + np.sum((s1 - s2) ** 2)
    value = mnist_scores.gaussian_frechet(m1, np.diag(s1 ** 2), m2, np.diag(s2 ** 2))
    assert abs(value - exact) < 1e-8, (value, exact)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    rotated = mnist_scores.gaussian_frechet(q @ m1, q @ np.diag(s1 ** 2) @ q.T, q @ m2, q @ np.diag(s2 ** 2) @ q.T)
    assert abs(rotated - exact) < 1e-6, (rotated, exact)
    a = m1 + s1 * rng.normal(size=(200_000, 4))
    b = m2 + s2 * rng.normal(size=(200_000, 4))
    assert abs(mnist_scores.frechet_distance(a, b) - exact) < 0.01 * exact


def test_two_sample_test_tells_apart_digits_with_a_faint_haze_from_real_ones():
    """100 held-out digits against 100 others: near chance (within 4 spreads of 0.5); the same
    digits with a haze of level 40 on 10% of their paper pixels: far above chance. (Measured on
    three disjoint draws of 100 + 100: 0.46-0.56 and 1.0 for the haze, against limits 0.36-0.64
    and 0.78; 150 + 150 gave 0.46-0.51 and 1.0.)"""
    _, _, heldout_x, _ = mnist.load_split()
    a, b = heldout_x[:100], heldout_x[100:200].copy()
    same = two_sample.two_sample_accuracy(a, b, top=255)
    rng = np.random.default_rng(0)
    hazy = b.copy()
    hazy[(hazy == 0) & (rng.random(hazy.shape) < 0.1)] = 40
    differ = two_sample.two_sample_accuracy(a, hazy, top=255)
    spread = two_sample.chance_spread(100)
    assert abs(same - 0.5) < 4 * spread and differ > 0.5 + 8 * spread, (same, differ, spread)


def test_nearest_training_digit_is_found_with_its_rms_distance():
    train = np.random.default_rng(0).integers(0, 256, (50, 28, 28)).astype(np.uint8)
    shifted = np.clip(train[[7, 30]].astype(int) + 3, 0, 255)
    index, distance = mnist_scores.nearest_training(shifted, train)
    assert list(index) == [7, 30]
    expected = np.sqrt(((shifted - train[[7, 30]].astype(int)) ** 2).reshape(2, -1).mean(1))
    assert np.allclose(distance, expected), (distance, expected)


def test_a_short_trained_classifier_calls_digits_and_not_noise_or_blends():
    """100 steps: held-out accuracy above 0.8, and fewer than 10% of noise or blends called a
    digit with confidence above 0.9 (a classifier trained on digits alone calls most of them).
    (Measured with seeds 0, 1, 2: accuracy 0.91-0.93, none of the non-digits called.)"""
    torch.manual_seed(0)
    train_x, train_y, heldout_x, heldout_y = mnist.load_split()
    generator = torch.Generator().manual_seed(0)
    classifier = mnist_scores.fit_classifier(train_x, train_y, generator, iters=100)
    probabilities, features = mnist_scores.classify(classifier, heldout_x[:300])
    assert features.shape == (300, mnist_scores.FEATURES)
    accuracy = (probabilities.argmax(1) == heldout_y[:300]).mean()
    fakes = mnist.to_levels(mnist_scores.non_digits(mnist.to_unit(heldout_x), torch.as_tensor(heldout_y), 200, generator))
    fooled = mnist_scores.confident_share(mnist_scores.classify(classifier, fakes)[0])
    assert accuracy > 0.8 and fooled < 0.1, (accuracy, fooled)
