"""The handwritten digits of chapters 8 and 9: real 8 x 8 images that ship inside scikit-learn,
so nothing is downloaded. README chapter 8, "The data".

`sklearn.datasets.load_digits()` holds 1,797 digits, the test part of the UCI optical
recognition set, written by 13 people: each pixel counts the set pixels of a 4 x 4 block of a 32 x 32 bitmap, so it
takes one of LEVELS = 17 grey levels 0..16. The split below is fixed once (stratified by label,
its seed named here), so every chapter and test scores on the same held-out digits.

Levels and the continuous pixels a diffusion model sees:
- level k in 0..16 owns the bin [2k / 17 - 1, 2(k + 1) / 17 - 1) of [-1, 1): every bin has
  width 2 / 17, and the 17 bins tile [-1, 1) exactly;
- training draws a point uniformly inside each pixel's bin (uniform dequantisation: u ~ U(0, 1),
  z = 2 (k + u) / 17 - 1), so the model learns a density on [-1, 1)^64, not 17 spikes, and its
  bound becomes a bound on the discrete digits (README chapter 8, "Bits per pixel");
- a sample z goes back to the level whose bin holds it (`to_levels`).

What samples are worth (README chapter 8, "Samples and what they are worth"), all on levels:
- a digit classifier fitted to the training split alone: the share of samples it calls with
  confidence above CONFIDENT, beside the held-out digits' own share, and its predicted-class
  counts against uniform (a chi-square test: the data are about 10% of each digit);
- a classifier two-sample test (Lopez-Paz & Oquab, 2017; two_sample.py): the cross-validated
  accuracy of gradient boosting asked to tell the samples from as many real digits, 0.5 when it
  cannot, calibrated by real against real and a known-defective set against real;
- the level histogram: the share of all pixels at each of the 17 levels, against the real
  digits', and its largest gap in percentage points (a haze or pale strokes show here first);
- memorisation: each sample's nearest training digit; a sample whose every pixel is within
  COPY_LEVELS of a training digit's is a copy (held-out digits are 3 levels or more from every
  training digit somewhere, so no real digit is called a copy).
"""
import warnings

import numpy as np
import scipy.stats
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC

import two_sample

LEVELS = 17          # grey levels 0..16
SIDE = 8             # images are SIDE x SIDE
PIXELS = SIDE * SIDE
N_HELDOUT = 297      # held-out digits (the rest, 1,500, train)
SPLIT_SEED = 0       # the split's own seed: change it and every number of chapters 8-9 moves
CONFIDENT = 0.9      # a classifier's probability above which a digit counts as clearly drawn
COPY_LEVELS = 1      # a copy: every pixel within this many levels of one training digit


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


# --- what samples are worth ---------------------------------------------------------------------

def features(levels):
    """Images of levels (n, 8, 8) as the classifiers' inputs: (n, 64) floats in [0, 1]."""
    return np.asarray(levels, dtype=np.float64).reshape(-1, PIXELS) / (LEVELS - 1)


def make_classifier():
    """An RBF support-vector classifier with libsvm's probabilities (Platt scaling on internal
    folds, then pairwise coupling of the 45 one-against-one pairs). scikit-learn 1.9 deprecates
    probability=True in favour of CalibratedClassifierCV(SVC(), ensemble=False), but that one,
    measured here, calls 68% of images of random levels and 70% of blends of two different
    digits a digit with confidence above 0.9 (this one: 0% and 4%), which would make any sampler
    look good; scikit-learn is pinned at 1.9, where probability=True still works."""
    return SVC(probability=True, random_state=0)


def fit_digit_classifier(train_levels, train_labels):
    """The digit classifier of the sample scores, fitted to the training split only (about 99%
    held-out accuracy): the held-out digits are never seen, so their scores are a fair yardstick."""
    with warnings.catch_warnings():   # the deprecation of probability=True (make_classifier)
        warnings.simplefilter("ignore", FutureWarning)
        return make_classifier().fit(features(train_levels), train_labels)


def confident_share(classifier, levels, threshold=CONFIDENT):
    """(share, predicted): the share of images the classifier calls with probability above
    threshold, and its predicted digit for each."""
    probability = classifier.predict_proba(features(levels))
    return float((probability.max(axis=1) > threshold).mean()), classifier.classes_[probability.argmax(axis=1)]


def class_counts(predicted, n_classes=10):
    """(counts, p): how many images were called each digit, and the chi-square test's p-value of
    those counts against the uniform 1/10 (small p: some digits are drawn too often)."""
    counts = np.bincount(np.asarray(predicted), minlength=n_classes)
    return counts, float(scipy.stats.chisquare(counts).pvalue)


def real_digits(split):
    """All 1,797 real digits, training and held-out: the two-sample test's reference set."""
    return np.concatenate([split[0], split[2]])


def two_sample_accuracy(levels, real, seed=0):
    """The strong two-sample test (two_sample.py) of images of levels against real digits, on as
    many of each as the smaller set holds: 0.5 when it cannot tell them apart."""
    return two_sample.two_sample_accuracy(levels, real, top=LEVELS - 1, seed=seed)


def level_shares(levels):
    """The share of all pixels at each level 0..16: a (17,) array summing to 1."""
    return np.bincount(np.asarray(levels).ravel(), minlength=LEVELS) / np.asarray(levels).size


def level_gap(levels, real):
    """(gap, level): the largest difference between the level histograms of `levels` and `real`,
    in percentage points, and the level where it is (positive: too many pixels there)."""
    difference = 100.0 * (level_shares(levels) - level_shares(real))
    level = int(np.abs(difference).argmax())
    return float(difference[level]), level


def defective(levels, seed=0):
    """A known-worse set for calibrating the test: every pixel moved one level up or down at
    random (clipped to 0..16), a defect an eye barely sees on an 8 x 8 digit."""
    rng = np.random.default_rng(seed)
    return np.clip(np.asarray(levels) + rng.choice([-1, 1], size=np.shape(levels)), 0, LEVELS - 1)


def nearest_training(levels, train_levels):
    """For each image, its nearest training digit in Euclidean distance on levels: (index,
    distance, largest pixel gap in levels to that digit), numpy arrays of length n."""
    x = torch.as_tensor(np.asarray(levels, dtype=np.float64).reshape(-1, PIXELS))
    train = torch.as_tensor(np.asarray(train_levels, dtype=np.float64).reshape(-1, PIXELS))
    distance, index = torch.cdist(x, train).min(dim=1)
    gap = (x - train[index]).abs().amax(dim=1)
    return index.numpy(), distance.numpy(), gap.numpy()


def score_samples(levels, split, classifier, seed=0, against=None):
    """Every sample score of chapters 8-9 for images of levels (n, 8, 8), as a dict: confident
    (share above CONFIDENT), counts and counts_p (against uniform), two_sample and level_gap
    (against `against`, by default all real digits, real_digits), copies (share within
    COPY_LEVELS of a training digit) and nearest_distance (median distance to the nearest training
    digit). `split` is load_split()'s tuple, classifier fit_digit_classifier's."""
    train_x, _, heldout_x, _ = split
    real = real_digits(split) if against is None else against
    confident, predicted = confident_share(classifier, levels)
    counts, counts_p = class_counts(predicted)
    _, distance, gap = nearest_training(levels, train_x)
    return {"confident": confident, "counts": counts, "counts_p": counts_p,
            "two_sample": two_sample_accuracy(levels, real, seed), "level_gap": level_gap(levels, real),
            "copies": float((gap <= COPY_LEVELS).mean()), "nearest_distance": float(np.median(distance))}


def real_digit_scores(split, classifier, seed=0):
    """The yardsticks printed beside a model's scores: the held-out digits' confident share,
    counts and distance to their nearest training digit; and the two-sample test's calibration
    on all real digits cut in two random halves: real against real (two_sample, near 0.5) and
    one half against the other made defective (two_sample_defective, near 1)."""
    scores = score_samples(split[2], split, classifier, seed)
    real = real_digits(split)
    half = np.random.default_rng(seed).permutation(len(real))
    a, b = real[half[:len(real) // 2]], real[half[len(real) // 2:]]
    scores.update(two_sample=two_sample_accuracy(a, b, seed), level_gap=level_gap(a, b),
                  two_sample_defective=two_sample_accuracy(defective(a, seed), b, seed))
    return scores
