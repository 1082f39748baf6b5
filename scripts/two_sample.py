"""A two-sample test with power: can a strong classifier tell generated images from real ones?

The classifier two-sample test (Lopez-Paz & Oquab, 2017): put n images of each set together,
label each by its set, and measure by cross-validation how often a classifier trained on the
rest names the set of an image it did not see. If the two sets come from one distribution no
classifier can do better than 0.5 on average, and the accuracy of n + n images scatters around
0.5 with a standard deviation of about 0.5 / sqrt(2 n) (`chance_spread`). The further above 0.5,
the more surely the sets differ.

The test is only as strong as its classifier: a weak one calls different sets the same. This one
is gradient boosting (scikit-learn's HistGradientBoostingClassifier: shallow trees, each fitted
to the mistakes of the ones before) on each image's pixels and on its histogram of grey values.
The pixels show it the strokes; the histogram shows it at once what a tree on single pixels would
have to add up over many of them: a faint haze, a stroke that never reaches full black. A chapter that prints the test also prints its calibration: real against real (near 0.5)
and a known-worse set against real (near 1), so a reader sees that the test can fail.
"""
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_score

FOLDS = 5   # cross-validation folds: each image is judged once, by a classifier that never saw it
BINS = 17   # histogram bins of grey values: the 8 x 8 digits' 17 levels, one bin each


def make_classifier(seed=0):
    """Gradient-boosted trees with scikit-learn's defaults (100 rounds, early stopping off)."""
    return HistGradientBoostingClassifier(random_state=seed)


def features(images, top, bins=BINS):
    """Images (n, ...) of grey values 0..top as the classifier's input: the flat pixels, then the
    share of each image's pixels in each of `bins` equal bins of [0, top]."""
    x = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    which = np.minimum((x / top * bins).astype(np.int64), bins - 1)
    shares = np.stack([(which == k).mean(axis=1) for k in range(bins)], axis=1)
    return np.concatenate([x, shares], axis=1)


def two_sample_accuracy(a, b, top, seed=0, folds=FOLDS):
    """The cross-validated accuracy of a classifier telling set a from set b. Each set is an
    array of images of grey values 0..top, of any shape; both sets are cut to the smaller one's
    size by a random draw, so chance is exactly 0.5."""
    rng = np.random.default_rng(seed)
    a, b = features(a, top), features(b, top)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the two sets hold images of {a.shape[1] - BINS} and {b.shape[1] - BINS} pixels: compare like with like")
    n = min(len(a), len(b))
    x = np.concatenate([a[rng.permutation(len(a))[:n]], b[rng.permutation(len(b))[:n]]])
    y = np.repeat([0, 1], n)
    split = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return float(cross_val_score(make_classifier(seed), x, y, cv=split).mean())


def chance_spread(n):
    """The standard deviation of the accuracy on n + n images when the sets do not differ."""
    return 0.5 / np.sqrt(2 * n)
