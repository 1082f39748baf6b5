"""The math of chapter 8 (README, "8. Pictures"): an image is a point in D = 64 dimensions, so
chapters 1-7's functions apply to it flattened; what is new is the schedule for images, the bound
in bits per pixel of the discrete digits, and the baselines it is measured against.

Bits per pixel. The model has a density p on dequantised pixels z in [-1, 1)^64, and level k of
a pixel owns a bin of width 2/17 (digits.py). For the discrete image,
    P(k) = integral over its bins of p(z) dz = (2/17)^64 E_u[p(z)] >= (2/17)^64 exp(E_u[log p(z)])
(Jensen's inequality, z = 2 (k + u)/17 - 1, u ~ U(0, 1)^64), so
    -log2 P(k) / 64 <= E_u[-log2 p(z)] / 64 + log2(17/2),
and with K(z) <= log p(z), -K(z) / (64 ln 2) + log2(17/2) bounds the discrete bits per pixel from
above: lower is better, log2 17 = 4.087 is a uniform guess, and the data's own entropy is the floor.
"""
import math

import numpy as np
import torch
from sklearn.mixture import GaussianMixture

import common
import ddpm
import digits
import likelihood
from digits import LEVELS, PIXELS, SIDE

DEQUANTISATION_BITS = math.log2(LEVELS / 2)   # log2(17/2) = 3.087 bits per pixel: the bin's width
MIXTURE_COMPONENTS = 10                       # the Gaussian-mixture baseline
BIN_VARIANCE = (2.0 / LEVELS) ** 2 / 12       # a pixel's variance inside its bin, uniform over 2/17


def bits_per_pixel(negative_bound_nats):
    """An upper bound -K(z) on -log p(z) of a dequantised image (nats, one per image) as bits per
    pixel of the discrete image: -K / (64 ln 2) + log2(17/2)."""
    return common.nats_to_bits(negative_bound_nats) / PIXELS + DEQUANTISATION_BITS


# --- images as points ---------------------------------------------------------------------------

def flat(images):
    """Images (n, 1, 8, 8) as the points (n, 64) that chapters 1-7's functions take."""
    return images.reshape(-1, PIXELS)


def as_images(x):
    """Points (n, 64) back to images (n, 1, 8, 8)."""
    return x.reshape(-1, 1, SIDE, SIDE)


def eps_network(unet, label=None):
    """A UNet as chapters 5-6's functions call an eps-network: on points (n, 64), returning
    (eps (n, 64), None)."""
    return lambda x_t, t: (flat(unet(as_images(x_t), t, label)), None)


def image_schedule(T, beta_1, log_snr_T, shape):
    """The schedule of the images: T steps whose log SNR runs between the ends of
    common.make_schedule(T, beta_1, log_snr_T) along `shape` (likelihood.schedule_between_ends):
    beta_1 sets how finely the bound looks (its noise against the bins' width), log_snr_T how
    close to N(0, I) x_T is."""
    return likelihood.schedule_between_ends(T, shape, common.make_schedule(T, beta_1, log_snr_T))


# --- the bound on images ------------------------------------------------------------------------

def ends_correction(x0, schedule):
    """K's entropy terms are exact for points of unit variance; for an image x0 the two ends of
    the chain differ from them, and this is what they add, per image (nats):
    - the prior: E[log N(x_T; 0, I) | x0] = -H_p(X_T) - alpha_bar_T (||x0||^2 - d) / 2, since
      E||x_T||^2 = alpha_bar_T ||x0||^2 + (1 - alpha_bar_T) d;
    - the fixed last step: E[log N(x0; sqrt(1 - beta_1) x_1, beta_1 I) | x0] = -H_q(X_1 | X_0)
      - beta_1 (||x0||^2 - d) / 2, since x0 - sqrt(1 - beta_1) x_1 = beta_1 x0 - sqrt((1 - beta_1) beta_1) eps.
    Together -(alpha_bar_T + beta_1) (||x0||^2 - d) / 2."""
    d = x0.shape[-1]
    ends = float(schedule.alpha_bar[schedule.T]) + float(schedule.beta[1])
    return -0.5 * ends * (x0.cpu().double().square().sum(-1) - d)


def image_bound(reverse, x0, schedule, generator=None):
    """K per dequantised image x0 (n, 64): every step t = 2..T (common.kl_all_steps, x_t drawn
    with `generator`), the entropy terms in 64 dimensions and the two ends made exact
    (ends_correction): the expected log weight of chapter 7, log p(x_0:T) - log q(x_1:T | x0).
    Nats, float64; also returns the (n, T + 1) table of KL terms."""
    kl = common.kl_all_steps(reverse, x0, schedule, generator)
    return common.bound_K(kl, schedule, x0.shape[-1]) + ends_correction(x0, schedule), kl


@torch.no_grad()
def x0_error_per_step(network, levels, schedule, generator=None, device="cpu"):
    """E||x0 - x0_hat||^2 for each step t (a float64 table indexed by t, NaN at t = 0 and 1), on
    freshly dequantised copies of `levels` with fresh noise: what best_isotropic_variance needs."""
    table = torch.full((schedule.T + 1,), math.nan, dtype=torch.float64)
    for t in range(2, schedule.T + 1):
        x0 = flat(digits.dequantise(levels, generator)).to(device)
        x_t = common.x_t_from_eps(x0, torch.randn(x0.shape, generator=generator).to(device), t, schedule)
        eps, _ = network(x_t, torch.full((len(x0),), t, device=device))
        table[t] = (x0 - common.x0_from_eps(x_t, eps, t, schedule)).double().square().sum(1).mean().item()
    return table


def best_variance_table(schedule, mean_sq_x0_error):
    """Chapter 5's best isotropic reverse variance for 64 pixels, a table indexed by t; t = 1 holds
    the fixed kernel's beta_1 (it is not used: step 1 is eq. 44's kernel)."""
    steps = torch.arange(2, schedule.T + 1)
    best = ddpm.best_isotropic_variance(steps, schedule, mean_sq_x0_error[steps].unsqueeze(1), PIXELS)
    return torch.cat([torch.tensor([0.0, float(schedule.beta[1])], dtype=torch.float64), best.flatten()])


# --- baselines, in bits per pixel of the held-out digits ----------------------------------------

def uniform_bits(heldout_levels):
    """Every level equally likely, 1/17: log2 17 = 4.087 bits per pixel for every image."""
    return np.full(len(heldout_levels), math.log2(LEVELS))


def histogram_bits(train_levels, heldout_levels, smoothing=0.5):
    """Independent pixels, each with its own histogram of the 17 levels over the training digits
    (add-`smoothing` counts, so no level has probability 0): -log2 of the held-out image's
    probability, per pixel. Exact discrete bits, no dequantisation."""
    train = np.asarray(train_levels).reshape(-1, PIXELS)
    counts = np.stack([np.bincount(train[:, j], minlength=LEVELS) for j in range(PIXELS)]) + smoothing
    log2_p = np.log2(counts / counts.sum(axis=1, keepdims=True))      # (64 pixels, 17 levels)
    held = np.asarray(heldout_levels).reshape(-1, PIXELS)
    return -log2_p[np.arange(PIXELS), held].sum(axis=1) / PIXELS


def gaussian_bits(train_levels, heldout_levels, generator=None):
    """One Gaussian with a full 64 x 64 covariance, fitted to dequantised training digits and
    scored on dequantised held-out digits: bits_per_pixel(-log N(z; mean, cov))."""
    train = flat(digits.dequantise(train_levels, generator)).double()
    held = flat(digits.dequantise(heldout_levels, generator)).double()
    mean = train.mean(0)
    cov = torch.cov(train.T, correction=0)
    log_p = common.log_gaussian(held, mean.expand_as(held), cov.expand(len(held), -1, -1))
    return bits_per_pixel(-log_p).numpy()


def mixture_bits(train_levels, heldout_levels, generator=None, components=MIXTURE_COMPONENTS, seed=0):
    """A mixture of `components` full-covariance Gaussians (scikit-learn's EM, seeded), fitted and
    scored like gaussian_bits. Each covariance gets BIN_VARIANCE added to its diagonal: with about
    150 digits per component, EM otherwise shrinks components onto the training digits (measured:
    2.94 bits per pixel held-out with scikit-learn's default 1e-6, 2.69 with this)."""
    train = flat(digits.dequantise(train_levels, generator)).double().numpy()
    held = flat(digits.dequantise(heldout_levels, generator)).double().numpy()
    mixture = GaussianMixture(components, covariance_type="full", reg_covar=BIN_VARIANCE,
                              random_state=seed).fit(train)
    return bits_per_pixel(torch.as_tensor(-mixture.score_samples(held))).numpy()


def mean_and_se(values):
    """The mean of per-image values and its standard error."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))
