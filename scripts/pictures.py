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

The discrete decoder (Ho et al. 2020, eq. 13), chapter 8's default. Train on the levels' centres
themselves, x0 = 2 (k + 1/2)/17 - 1, and let the last step name a level: p(k | x_1) is the mass of
N(mu_theta(x_1, 1), sigma_1^2) over level k's bin, the end bins reaching out to -inf and +inf, so the
17 probabilities sum to 1 for any mean. Then -log2 P(k) <= L_T + sum_{t=2..T} L_{t-1} + L_0 holds for
the discrete image directly, with L_0 = -log p(k | x_1): no dequantisation, no Jensen gap.
"""
import math

import numpy as np
import torch
from sklearn.mixture import GaussianMixture

import common
import ddim
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


def training_pixels(levels, x0_form, generator=None):
    """Algorithm 1's x0 for a batch of levels: the levels' centres (DDPM's way, scored with the
    discrete decoder) or a fresh uniform dequantisation (scored with Jensen's inequality)."""
    return digits.to_unit(levels) if x0_form == "centres" else digits.dequantise(levels, generator)


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
def x0_error_per_step(network, levels, schedule, generator=None, device="cpu", x0_form="dequantised"):
    """E||x0 - x0_hat||^2 for each step t (a float64 table indexed by t, NaN where not measured), on copies
    of `levels` with fresh noise, x0 freshly dequantised or at the centres (`x0_form`, as the model
    was trained): what best_isotropic_variance needs, from t = 2 (and from t = 1 for the centres,
where the discrete decoder needs it too)."""
    table = torch.full((schedule.T + 1,), math.nan, dtype=torch.float64)
    for t in range(1 if x0_form == "centres" else 2, schedule.T + 1):
        x0 = flat(training_pixels(levels, x0_form, generator)).to(device)
        x_t = common.x_t_from_eps(x0, torch.randn(x0.shape, generator=generator).to(device), t, schedule)
        eps, _ = network(x_t, torch.full((len(x0),), t, device=device))
        table[t] = (x0 - common.x0_from_eps(x_t, eps, t, schedule)).double().square().sum(1).mean().item()
    return table


def best_variance_table(schedule, mean_sq_x0_error, x0_form="dequantised"):
    """Chapter 5's best isotropic reverse variance for 64 pixels, a table indexed by t. At t = 1:
    for "dequantised", eq. 44's fixed kernel's beta_1 (not used: step 1 is that kernel); for
    "centres", the discrete decoder's variance, the network's mean squared error of x0_hat per
    pixel there (the same formula at t = 1), kept above a hundredth of a bin's own variance."""
    steps = torch.arange(2, schedule.T + 1)
    best = ddpm.best_isotropic_variance(steps, schedule, mean_sq_x0_error[steps].unsqueeze(1), PIXELS)
    first = float(schedule.beta[1])
    if x0_form == "centres":   # c_1 = 1 and sigma_tilde_1^2 = 0: the error of x0_hat alone
        first = max(float(mean_sq_x0_error[1]) / PIXELS, BIN_VARIANCE / 100)
    return torch.cat([torch.tensor([0.0, first], dtype=torch.float64), best.flatten()])


@torch.no_grad()
def sample_levels(network, schedule, var, n, generator=None, device="cpu", last_step_noise=False):
    """Samples of levels (n, 8, 8) and the chain's trajectory: Algorithm 2 with the variances `var`
    (a table indexed by t) down to x_1, then DDPM's last step without noise: the most likely level
    of the discrete decoder N(mu_theta(x_1, 1), var[1]). With last_step_noise, eq. 44's fixed
    kernel N(sqrt(1 - beta_1) x_1, beta_1 I) instead, as chapters 3-7 end."""
    reverse = ddpm.reverse_with_variance(network, schedule, var)
    decoder_std = math.sqrt(float(var[1]))
    step = reverse if last_step_noise else ending_on_the_decoder(reverse, network, schedule, decoder_std)
    trajectory = common.sample_chain(step, n, schedule.T, generator, device, d=PIXELS)
    return digits.to_levels(trajectory[0]), trajectory


@torch.no_grad()
def ddim_levels(network, schedule, steps, n, generator=None, device="cpu"):
    """Samples of levels (n, 8, 8) by chapter 6's DDIM (eta = 0) on `steps` steps spread evenly in
    log SNR, ending as sample_levels does: the most likely level of the decoder, with Algorithm 2's
    variance beta_1 (DDIM has none of its own). Eq. 44's kernel at t = 1 would keep what DDIM put
    into x_1, sqrt(1 - alpha_bar_1) eps_hat: with beta_1 = 1e-2 a noise of std 0.1, most of a
    level's width (0.125), a haze on every sample."""
    respaced, t_of = ddim.respace(schedule, ddim.sub_sequence(schedule, steps, "log_snr"))
    reverse = ddim.ddim_reverse(ddim.on_respaced_steps(network, t_of), respaced, 0.0)
    # respaced step 1 is the original step 1 (sub_sequence always ends there): the same decoder
    step = ending_on_the_decoder(reverse, network, schedule, math.sqrt(float(schedule.beta[1])))
    return digits.to_levels(common.sample_chain(step, n, steps, generator, device, d=PIXELS)[0])


def ending_on_the_decoder(reverse, network, schedule, decoder_std):
    """A reverse process (x_t, t) -> (mean, covariance) whose last step, t = 1, is DDPM's without
    noise: each pixel at the centre of the discrete decoder's most likely level."""
    def step(x_t, t):
        if t == 1:
            mean = decoder_mean(network, x_t, schedule).cpu()
            return most_likely_level(mean, decoder_std).to(x_t), common.identity_times(0.0, x_t)
        return reverse(x_t, t)

    return step


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


# --- the discrete decoder (Ho et al. 2020, eq. 13) ------------------------------------------------

def level_log_probabilities(mean, std):
    """log p(k | mean) for every level k = 0..16 of each pixel: the mass of N(mean, std^2) over
    level k's bin [2k/17 - 1, 2(k + 1)/17 - 1), the first bin extended to -inf and the last to +inf,
    so the 17 masses telescope to exactly 1. Float64, shape mean.shape + (17,). Each difference of
    normal CDFs is taken on the side of the bin's far tail, where it does not cancel."""
    mean, std = torch.as_tensor(mean, dtype=torch.float64), torch.as_tensor(std, dtype=torch.float64)
    edges = torch.linspace(-1.0, 1.0, LEVELS + 1, dtype=torch.float64)
    edges[0], edges[-1] = -math.inf, math.inf
    a = (edges[:-1] - mean[..., None]) / std[..., None]        # standardised lower edges
    b = (edges[1:] - mean[..., None]) / std[..., None]         # and upper edges
    right = a + b > 0                                          # the bin lies right of the mean: mirror it
    low, high = torch.where(right, -b, a), torch.where(right, -a, b)
    log_high = torch.special.log_ndtr(high)
    return log_high + torch.log1p(-torch.exp(torch.special.log_ndtr(low) - log_high))


def most_likely_level(mean, std):
    """The centre 2 (k + 1/2) / 17 - 1 of each pixel's most likely level k under the decoder
    N(mean, std^2). Inside, that is the bin holding the mean; but the end bins reach to -inf and
    +inf, so a mean just inside a neighbour of an end bin can still name the end level (with std
    0.1, level 16 wins from a sixth of a bin's width below its edge): rounding the mean would
    leave such strokes one level short of black, and the background one level above white."""
    k = level_log_probabilities(mean, std).argmax(-1)
    return 2.0 * (k.double() + 0.5) / LEVELS - 1.0


def end_on_levels(x0_hat, schedule, x0_form="centres"):
    """A chain that ends on x0_hat (chapter 14's jumps, its students) ended as Algorithm 2's last
    step ends here: each pixel at the centre of the most likely level of the decoder
    N(x0_hat, beta_1), on the CPU. For a network trained on dequantised pixels, x0_hat itself (its
    bin names the level)."""
    x0_hat = x0_hat.detach().cpu()
    return most_likely_level(x0_hat, math.sqrt(float(schedule.beta[1]))) if x0_form == "centres" else x0_hat


def decoder_mean(network, x1, schedule):
    """mu_theta(x_1, 1): Algorithm 2's mean at t = 1, which is the network's x0_hat there."""
    eps, _ = network(x1, torch.ones(len(x1), dtype=torch.long, device=x1.device))
    return ddpm.ddpm_mean(x1, eps, 1, schedule)


@torch.no_grad()
def discrete_bound(network, levels, schedule, var, generator=None, device="cpu"):
    """DDPM's bound on -log P(levels) per image (nats, float64), Ho et al. eq. 5 with eq. 13's
    decoder: L_T = KL(q(x_T | x0) || N(0, I)), L_{t-1} = KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t))
    for t = 2..T with the variances `var` (a table indexed by t), and L_0 = -log p(levels | x_1),
    the decoder's std sqrt(var[1]); x0 the levels' centres, x_t drawn with `generator`."""
    x0 = flat(digits.to_unit(levels)).to(device)
    reverse = ddpm.reverse_with_variance(network, schedule, var)
    L_mid = common.kl_all_steps(reverse, x0, schedule, generator)
    mean_T, cov_T = common.q_closed_form(x0, schedule.T, schedule)
    L_T = common.kl_gaussian(mean_T, cov_T, torch.zeros_like(mean_T), common.identity_times(1.0, x0)).cpu().double()
    x1 = common.sample_gaussian(*common.q_closed_form(x0, 1, schedule), generator)
    log_p = level_log_probabilities(decoder_mean(network, x1, schedule).cpu(), math.sqrt(float(var[1])))
    k = torch.as_tensor(np.asarray(levels)).reshape(-1, PIXELS, 1)
    L_0 = -log_p.gather(-1, k).squeeze(-1).sum(-1)
    return L_T + L_mid.sum(1) + L_0


def bits_on_levels(network, levels, schedule, var, x0_form, generator=None, device="cpu"):
    """The chapter's bound in bits per pixel of discrete images of levels (n, 8, 8), one number
    per image: for a model trained on "centres", discrete_bound; for one trained on "dequantised"
    pixels, bits_per_pixel of image_bound on a fresh uniform dequantisation (Jensen's inequality
    needs the bound averaged over u inside the bins, never taken at the centres)."""
    if x0_form == "centres":
        return common.nats_to_bits(discrete_bound(network, levels, schedule, var, generator, device)) / PIXELS
    x0 = flat(digits.dequantise(levels, generator)).to(device)
    K, _ = image_bound(ddpm.reverse_with_variance(network, schedule, var), x0, schedule, generator)
    return bits_per_pixel(-K)


def loss_weights(schedule, loss, first=2):
    """The weight of ||eps - eps_theta||^2 at each step t (a table indexed by t, 0 below `first`):
    1 for L_simple; for the bound, eps_weight with the posterior's variance sigma_tilde_t^2, times
    T - 1, so that the loss is the sum of the KL terms of -K up to constants (chapter 5's weights)."""
    weight = torch.ones(schedule.T + 1, dtype=torch.float64)
    if loss == "bound":
        steps = torch.arange(2, schedule.T + 1)
        _, _, sigma_tilde2 = common.posterior_coefficients(steps, schedule, torch.zeros((), dtype=torch.float64))
        weight[2:] = (schedule.T - 1) * ddpm.eps_weight(steps, schedule, sigma_tilde2).flatten()
    weight[:first] = 0.0
    return weight


def mean_and_se(values):
    """The mean of per-image values and its standard error."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))
