"""What 28 x 28 samples are worth (README chapter 12, "Scoring 28 x 28 samples"), all on grey levels 0..255.

- A small CNN digit classifier, trained on the training digits only (the held-out ones are the
  yardstick it never saw). A classifier trained on digits alone calls anything something, so
  every batch also holds images that are no digit, taught to the uniform answer 1/10 each:
  noise of random levels and blends (pixel averages) of two training digits of different
  labels. The script prints the share of fresh noise and fresh blends of held-out digits it calls
  confidently, so a reader sees that a confident call means a drawn digit.
- The confident share: samples called one digit with probability above CONFIDENT.
- The Frechet distance (Heusel et al. 2017's FID, in this classifier's features): each set's
  penultimate features as a Gaussian, ||m1 - m2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)); printed with the
  band that real digits reach: draws of training digits of the samples' size against the held-out.
- The classifier two-sample test of scripts/two_sample.py on the pixels (0.5: cannot tell).
- Memorisation: each sample's nearest training digit (RMS distance per pixel, in levels); a
  sample nearer its training digit than any held-out digit is to its own counts as a near copy.
"""
import numpy as np
import scipy.linalg
import torch
from torch import nn
from tqdm import tqdm

import mnist
import two_sample

CONFIDENT = 0.9        # a probability above which a digit counts as clearly drawn
FEATURES = 64          # the classifier's penultimate features, where the Frechet distance is taken
CLASSIFIER_ITERS = 600 # Adam steps of 64 digits and 32 non-digits
BAND_DRAWS = 5         # draws of real digits for the Frechet band


class DigitClassifier(nn.Module):
    """Two 3 x 3 convolutions, each followed by 2 x 2 max-pooling (28 -> 14 -> 7), a layer of
    FEATURES numbers, and 10 logits."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.SiLU(), nn.MaxPool2d(2),     # (n, 16, 14, 14)
            nn.Conv2d(16, 32, 3, padding=1), nn.SiLU(), nn.MaxPool2d(2),    # (n, 32, 7, 7)
            nn.Flatten(), nn.Linear(32 * 49, FEATURES), nn.SiLU())          # (n, FEATURES)
        self.head = nn.Linear(FEATURES, 10)

    def forward(self, x):
        return self.head(self.body(x))


def non_digits(train_pixels, train_labels, n, generator):
    """n / 2 images of uniformly random levels and n / 2 pixel averages of two training digits
    with different labels, as pixels in [-1, 1]."""
    noise = mnist.to_unit(torch.randint(0, mnist.TOP + 1, (n // 2, mnist.SIDE, mnist.SIDE), generator=generator))
    a, b = torch.randint(len(train_pixels), (2, 4 * n), generator=generator)
    a, b = a[train_labels[a] != train_labels[b]][:n - n // 2], b[train_labels[a] != train_labels[b]][:n - n // 2]
    return torch.cat([noise, 0.5 * (train_pixels[a] + train_pixels[b])])


def fit_classifier(train_levels, train_labels, generator, iters=CLASSIFIER_ITERS, device="cpu"):
    """The classifier, trained with cross-entropy: the digits to their labels, the non-digits to 1/10 each."""
    pixels, labels = mnist.to_unit(train_levels), torch.as_tensor(train_labels)
    model = DigitClassifier().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in tqdm(range(iters), desc="digit classifier"):
        pick = torch.randint(len(pixels), (64,), generator=generator)
        x = torch.cat([pixels[pick], non_digits(pixels, labels, 32, generator)]).to(device)
        target = torch.cat([nn.functional.one_hot(labels[pick], 10).float(), torch.full((32, 10), 0.1)]).to(device)
        loss = nn.functional.cross_entropy(model(x), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.no_grad()
def classify(classifier, levels, device="cpu"):
    """(probabilities (n, 10), penultimate features (n, FEATURES)) as float64 numpy arrays."""
    x = mnist.to_unit(levels)
    features = torch.cat([classifier.body(x[k:k + 1000].to(device)).cpu() for k in range(0, len(x), 1000)])
    probabilities = torch.softmax(classifier.head(features.to(device)), dim=1).cpu()
    return probabilities.double().numpy(), features.double().numpy()


def confident_share(probabilities, threshold=CONFIDENT):
    """The share of images whose most likely digit has probability above threshold."""
    return float((probabilities.max(axis=1) > threshold).mean())


def gaussian_frechet(mean_a, cov_a, mean_b, cov_b):
    """The Frechet (2-Wasserstein) distance squared between two Gaussians:
    ||m_a - m_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))."""
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b - 2.0 * root))


def frechet_distance(features_a, features_b):
    """gaussian_frechet between the Gaussians fitted to two sets of features (n, FEATURES)."""
    return gaussian_frechet(features_a.mean(0), np.cov(features_a, rowvar=False),
                            features_b.mean(0), np.cov(features_b, rowvar=False))


def real_band(classifier, train_levels, heldout_features, n, seed=0, draws=BAND_DRAWS):
    """(lowest, highest) Frechet distance of `draws` random sets of n training digits against the
    held-out digits: how far real digits of the samples' number are from the yardstick."""
    rng = np.random.default_rng(seed)
    values = [frechet_distance(classify(classifier, train_levels[rng.choice(len(train_levels), n, replace=False)])[1],
                               heldout_features) for _ in range(draws)]
    return min(values), max(values)


def nearest_training(levels, train_levels):
    """(index, distance): each image's nearest training digit and the RMS distance per pixel, in levels."""
    x = torch.as_tensor(np.asarray(levels, dtype=np.float64).reshape(len(levels), -1))
    train = torch.as_tensor(np.asarray(train_levels, dtype=np.float64).reshape(len(train_levels), -1))
    distance, index = torch.cdist(x, train).min(dim=1)
    return index.numpy(), distance.numpy() / np.sqrt(x.shape[1])


def score(levels, classifier, split, copy_distance, seed=0, two_sample_test=True):
    """Every score of a set of images (n, 28, 28) of levels, as a dict: confident, frechet (against
    the held-out digits), two_sample (accuracy against the held-out digits, if asked),
    nearest (median distance to the nearest training digit) and copies (share nearer than
    copy_distance). `split` is mnist.load_split()'s tuple."""
    train_x, _, heldout_x, _ = split
    probabilities, features = classify(classifier, levels)
    _, distance = nearest_training(levels, train_x)
    return {"confident": confident_share(probabilities),
            "frechet": frechet_distance(features, classify(classifier, heldout_x)[1]),
            "two_sample": (two_sample.two_sample_accuracy(levels, heldout_x, top=mnist.TOP, seed=seed)
                           if two_sample_test else float("nan")),
            "nearest": float(np.median(distance)), "copies": float((distance < copy_distance).mean())}
