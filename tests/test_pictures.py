"""Chapter 8's math (scripts/pictures.py) and script (scripts/08_pictures.py): the bound in bits
per pixel against a data set whose entropy is known exactly, the bound against chapter 7's
sampled log weights, the baselines against direct computations, chapters 1-7's Gaussians in 64
dimensions, and the script end to end with tiny settings and its one-line refusals."""
import argparse
import math

import numpy as np
import pytest
import scipy.stats
import torch

import common
import linalg
import ddpm
import digits
import likelihood
import pictures
import checkpoints
from model import ReverseModel
from test_robustness import call_main, the_error_line
from unet import UNet

# Independent pixels, every pixel with these level probabilities (a made-up digit-like law:
# mostly background, some ink): entropy known exactly.
LEVEL_P = np.array([0.55, 0.05, 0.03, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.03,
                    0.03, 0.04, 0.05, 0.04])


def independent_levels(n, seed):
    return np.random.default_rng(seed).choice(17, size=(n, 8, 8), p=LEVEL_P)


def bayes_eps_for_independent_pixels(schedule):
    """E[eps | x_t] for dequantised independent pixels, in closed form: given x_t = a x0 + s eps,
    x0's likelihood is N(x0; m, r^2) with m = x_t / a, r = s / a, and its prior LEVEL_P[k] / (2/17)
    on bin k = [l_k, u_k), so the posterior is a mixture of normals truncated to the bins, with
    weights LEVEL_P[k] (Phi(beta_k) - Phi(alpha_k)) and means m - r (phi(beta_k) - phi(alpha_k)) /
    (Phi(beta_k) - Phi(alpha_k)), alpha_k = (l_k - m) / r, beta_k = (u_k - m) / r.
    Then eps = (x_t - a E[x0 | x_t]) / s."""
    edges = torch.linspace(-1.0, 1.0, 18, dtype=torch.float64)
    prior = torch.as_tensor(LEVEL_P)

    def network(x_t, t):
        a = torch.sqrt(common.at(schedule.alpha_bar, t.cpu()))          # (n, 1)
        s = torch.sqrt(1.0 - common.at(schedule.alpha_bar, t.cpu()))
        x = x_t.double()
        m, r = (x / a)[..., None], (s / a)[..., None]
        alpha, beta = (edges[:-1] - m) / r, (edges[1:] - m) / r
        # Phi(beta) - Phi(alpha), computed on the side of the bin where it does not cancel
        mass = torch.where(alpha > 0, torch.special.ndtr(-alpha) - torch.special.ndtr(-beta),
                           torch.special.ndtr(beta) - torch.special.ndtr(alpha))
        density = torch.exp(-0.5 * beta ** 2) - torch.exp(-0.5 * alpha ** 2)   # (phi(beta) - phi(alpha)) sqrt(2 pi)
        weight = prior * mass
        first = weight * m - prior * r * density / math.sqrt(2 * math.pi)
        x0_mean = first.sum(-1) / weight.sum(-1)
        return ((x - a * x0_mean) / s).to(x_t), None

    return network


def test_the_bound_in_bits_per_pixel_is_at_or_above_the_exact_entropy_of_independent_pixels():
    """With the Bayes-optimal eps and the best isotropic variance, the dequantised bound on data of
    independent pixels is at or above their exact discrete entropy H = -sum p log2 p (the Jensen
    step is exact here, as the density is flat inside each bin), and within 0.35 bits of it at
    T = 40 (measured 0.23: what an isotropic Gaussian step pays at the bins' sharp edges; 0.09
    at T = 200). Wrong ln 2, log2 17 for log2(17/2), or entropy terms in 2 dimensions miss by
    a bit or more."""
    entropy = -(LEVEL_P * np.log2(LEVEL_P)).sum()
    schedule = pictures.image_schedule(40, 1e-5, -1.15, "linear")
    network = bayes_eps_for_independent_pixels(schedule)
    generator = torch.Generator().manual_seed(0)
    var = pictures.best_variance_table(schedule, pictures.x0_error_per_step(
        network, independent_levels(100, 1), schedule, generator))
    x0 = pictures.flat(digits.dequantise(independent_levels(100, 2), generator))
    K, _ = pictures.image_bound(ddpm.reverse_with_variance(network, schedule, var), x0, schedule, generator)
    bits, se = pictures.mean_and_se(pictures.bits_per_pixel(-K).numpy())
    assert entropy - 3 * se <= bits <= entropy + 0.35, (bits, se, entropy)


CENTRES = (torch.arange(17, dtype=torch.float64) + 0.5) * 2 / 17 - 1


def bayes_eps_for_independent_centres(schedule):
    """E[eps | x_t] for independent pixels at the levels' centres c_k (point masses), in closed
    form: the posterior of x0 given x_t = a x0 + s eps puts weight LEVEL_P[k] N(x_t; a c_k, s^2)
    on c_k, so E[x0 | x_t] is the weighted mean of the centres; eps = (x_t - a E[x0 | x_t]) / s.
    Every t >= 1, as the discrete decoder asks for t = 1 too."""
    log_prior = torch.log(torch.as_tensor(LEVEL_P))

    def network(x_t, t):
        a = torch.sqrt(common.at(schedule.alpha_bar, t.cpu()))
        s = torch.sqrt(1.0 - common.at(schedule.alpha_bar, t.cpu()))
        x = x_t.double()
        log_w = log_prior - 0.5 * ((x[..., None] - a[..., None] * CENTRES) / s[..., None]) ** 2
        x0_mean = (torch.softmax(log_w, dim=-1) * CENTRES).sum(-1)
        return ((x - a * x0_mean) / s).to(x_t), None

    return network


def test_the_decoders_17_level_probabilities_sum_to_one_and_are_normal_masses_over_the_bins():
    """For means far inside, at and far outside [-1, 1] and stds from 1e-3 to 3, the 17 masses sum
    to 1 (the end bins reach to -inf and +inf); each equals scipy's normal CDF difference over the
    bin, and a mean at a centre with a small std puts almost all its mass on that level."""
    mean = torch.linspace(-4.0, 4.0, 101, dtype=torch.float64)
    edges = np.linspace(-1.0, 1.0, 18)
    edges[0], edges[-1] = -np.inf, np.inf
    for std in (1e-3, 0.01, 0.3, 3.0):
        log_p = pictures.level_log_probabilities(mean, std)
        assert log_p.shape == (101, 17)
        assert torch.allclose(log_p.exp().sum(-1), torch.ones(101, dtype=torch.float64), atol=1e-12), std
        cdf = scipy.stats.norm.cdf((edges[None, :] - mean.numpy()[:, None]) / std)
        assert np.allclose(log_p.exp().numpy(), np.diff(cdf, axis=1), atol=1e-12), std
    at_centres = pictures.level_log_probabilities(CENTRES, 0.01).exp()
    assert torch.all(at_centres.diagonal() > 1 - 1e-6), at_centres.diagonal()


def test_the_discrete_decoders_bound_is_at_or_above_the_exact_entropy_of_independent_pixels():
    """DDPM's bound with eq. 13's decoder (pictures.bits_on_levels, "centres"), for the
    Bayes-optimal eps of independent pixels at the levels' centres and the best isotropic
    variances, against their exact discrete entropy H = -sum p log2 p: at or above it, and within
    0.6 bits (measured 0.39 at T = 40 on the log-SNR-linear path, 0.30 at T = 200 on the cosine
    one: one isotropic Gaussian per step cannot follow a posterior split between two levels). A
    decoder whose masses did not sum to 1, a dropped L_T, or bits in nats would miss."""
    entropy = -(LEVEL_P * np.log2(LEVEL_P)).sum()
    schedule = pictures.image_schedule(40, 1e-4, -8.3, "linear")
    network = bayes_eps_for_independent_centres(schedule)
    generator = torch.Generator().manual_seed(0)
    var = pictures.best_variance_table(schedule, pictures.x0_error_per_step(
        network, independent_levels(100, 1), schedule, generator, x0_form="centres"), "centres")
    bits = pictures.bits_on_levels(network, independent_levels(200, 2), schedule, var, "centres", generator)
    mean, se = pictures.mean_and_se(bits.numpy())
    assert entropy - 3 * se <= mean <= entropy + 0.6, (mean, se, entropy)


def test_the_dequantised_bound_is_scored_on_dequantised_pixels_never_on_the_centres():
    """A model that puts all its mass on the levels' centres (the Bayes eps of centres) has a huge
    density there: the dequantised bound (pictures.bits_on_levels, "dequantised") must average
    over pixels drawn inside the bins, where that density is tiny, so it stays above the data's
    entropy. Scored at the centres instead, the same formula falls about a bit below the entropy
    (about 1.6 against 2.75), which no upper bound may do."""
    entropy = -(LEVEL_P * np.log2(LEVEL_P)).sum()
    schedule = pictures.image_schedule(40, 1e-4, -8.3, "linear")
    network = bayes_eps_for_independent_centres(schedule)
    generator = torch.Generator().manual_seed(0)
    var = pictures.best_variance_table(schedule, pictures.x0_error_per_step(
        network, independent_levels(50, 1), schedule, generator, x0_form="centres"))
    bits = pictures.bits_on_levels(network, independent_levels(50, 2), schedule, var, "dequantised", generator)
    assert bits.mean() >= entropy, (float(bits.mean()), entropy)


def test_the_image_bound_is_the_mean_of_chapter_7s_log_weights():
    """image_bound (KL terms in closed form, entropy terms, ends_correction) against
    likelihood.log_weight (every density of both chains, sampled), for one fixed arbitrary
    network, on a short chain whose ends are far from the unit-variance case (alpha_bar_T = 0.4,
    beta_1 = 0.05, ||x0||^2 about 16 instead of 64), so that a missing end term shows."""
    schedule = common.schedule_from_beta(torch.tensor([0.0, 0.05, 0.1, 0.2, 0.3], dtype=torch.float64))
    network = lambda x_t, t: (0.3 * x_t + 0.1, None)  # noqa: E731
    reverse = ddpm.reverse_with_variance(network, schedule, torch.tensor([0.0, 0.05, 0.06, 0.15, 0.25]).double())
    x0 = torch.full((1000, 64), 0.5)
    generator = torch.Generator().manual_seed(0)
    K, _ = pictures.image_bound(reverse, x0.double(), schedule, generator)
    log_w = likelihood.log_weight(reverse, x0.double(), schedule, generator)
    gap, se = float(K.mean() - log_w.mean()), float(log_w.std() / math.sqrt(len(log_w)))
    missing_ends = float(pictures.ends_correction(x0[:1], schedule))
    assert abs(gap) < 4 * se and abs(missing_ends) > 10 * se, (gap, se, missing_ends)


def test_chapters_gaussians_in_64_dimensions_match_scipy():
    """common.kl_gaussian, log_gaussian and sample_gaussian, written for 2 x 2 covariances, in 64
    dimensions: log densities against scipy, the KL against Monte Carlo of log q - log p, and a
    zero covariance samples its mean (as DDIM with eta = 0 needs)."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(64, 64))
    cov_q, cov_p = torch.as_tensor(a @ a.T / 64 + 0.5 * np.eye(64)), torch.as_tensor(0.8 * np.eye(64))
    mean_q, mean_p = torch.as_tensor(rng.normal(size=64)), torch.zeros(64, dtype=torch.float64)
    x = torch.as_tensor(rng.normal(size=(3, 64)))
    ours = common.log_gaussian(x, mean_q.expand(3, -1), cov_q.expand(3, -1, -1))
    assert np.allclose(ours.numpy(), scipy.stats.multivariate_normal(mean_q.numpy(), cov_q.numpy()).logpdf(x.numpy()))
    n = 2000
    draws = common.sample_gaussian(mean_q.expand(n, -1), cov_q.expand(n, -1, -1), torch.Generator().manual_seed(0))
    log_ratio = (common.log_gaussian(draws, mean_q.expand_as(draws), cov_q.expand(n, -1, -1))
                 - common.log_gaussian(draws, mean_p.expand_as(draws), cov_p.expand(n, -1, -1)))
    kl = float(common.kl_gaussian(mean_q[None], cov_q[None], mean_p[None], cov_p[None]))
    assert abs(kl - float(log_ratio.mean())) < 4 * float(log_ratio.std()) / math.sqrt(n), (kl, log_ratio.mean())
    # the diagonal shortcut against the general path: an isotropic covariance, one entry nudged off it
    iso = torch.as_tensor(0.3 * np.eye(64))[None]
    nudged = iso.clone()
    nudged[0, 0, 1] = nudged[0, 1, 0] = 1e-9
    for ours, general in zip(linalg.inverse_and_logdet(iso), linalg.inverse_and_logdet(nudged)):
        assert torch.allclose(ours, general, atol=1e-6)
    assert torch.allclose(linalg.cholesky(iso), linalg.cholesky(nudged), atol=1e-6)
    zero = torch.zeros(2, 64, 64, dtype=torch.float64)
    assert torch.equal(common.sample_gaussian(mean_q.expand(2, -1), zero), mean_q.expand(2, -1))


def test_the_uniform_density_on_the_cube_is_the_uniform_guess():
    """The density 2^-64 on [-1, 1)^64 gives every discrete image (2/17)^64 / 2^-64... that is,
    probability 17^-64: bits_per_pixel(64 ln 2) = log2 17 exactly, uniform_bits' value."""
    assert pictures.bits_per_pixel(torch.tensor(64 * math.log(2.0))).item() == pytest.approx(math.log2(17))
    assert np.allclose(pictures.uniform_bits(np.zeros((3, 8, 8))), math.log2(17))


def test_the_baselines_match_direct_computations():
    """The histogram baseline against counting with loops; the Gaussian against scipy's density
    with numpy's covariance; a one-component mixture against scipy with BIN_VARIANCE added."""
    rng = np.random.default_rng(0)
    train, held = rng.integers(0, 17, (40, 8, 8)), rng.integers(0, 17, (5, 8, 8))
    expected = []
    for image in held:
        total = 0.0
        for r in range(8):
            for c in range(8):
                count = sum(1 for other in train if other[r, c] == image[r, c])
                total -= math.log2((count + 0.5) / (len(train) + 0.5 * 17))
        expected.append(total / 64)
    assert np.allclose(pictures.histogram_bits(train, held), expected)

    train_x, _, held_x, _ = digits.load_split()
    train_x, held_x = train_x[:600], held_x[:50]
    for components, extra in ((None, 0.0), (1, pictures.BIN_VARIANCE)):
        g = torch.Generator().manual_seed(3)
        tr = pictures.flat(digits.dequantise(train_x, g)).double().numpy()
        he = pictures.flat(digits.dequantise(held_x, g)).double().numpy()
        density = scipy.stats.multivariate_normal(tr.mean(0), np.cov(tr.T, bias=True) + extra * np.eye(64))
        direct = -density.logpdf(he) / (64 * math.log(2)) + math.log2(17 / 2)
        g = torch.Generator().manual_seed(3)
        ours = (pictures.gaussian_bits(train_x, held_x, g) if components is None
                else pictures.mixture_bits(train_x, held_x, g, components=1))
        assert np.allclose(ours, direct, atol=1e-4), (components, ours[:3], direct[:3])


# --- the script --------------------------------------------------------------------------------

TINY = ("--iters", "30", "--batch-size", "32", "--base-channels", "8", "--T", "12", "--n-samples", "40",
        "--n-moments", "20", "--n-bound", "10")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny run in this process (run_main: what it prints and writes, without a new interpreter)."""
    from conftest import run_main
    folder = tmp_path_factory.mktemp("pictures")
    result = run_main("08_pictures.py", *TINY, "--images", str(folder), "--checkpoint", str(folder / "unet.pt"),
                      "--samples", str(folder / "samples.npy"))
    return result, folder


def test_the_script_runs_end_to_end_with_tiny_settings(tiny_run):
    """One line per figure of merit, the shapes 8 -> 4 -> 2 -> 8, samples (N, 8, 8) of levels,
    five figures, and a checkpoint the loader accepts."""
    result, folder = tiny_run
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    for words in ("bits/pixel held-out = ", "baseline per-pixel histogram", "two-sample accuracy = ",
                  "confident (p > 0.9) samples = ", "ddim 10", "(1, 16, 2, 2)", "real against real",
                  "level gap = "):
        assert words in out, (words, out)
    samples = np.load(folder / "samples.npy")
    assert samples.shape == (40, 8, 8) and samples.min() >= 0 and samples.max() <= 16
    for name in ("08_unet.png", "08_samples.png", "08_forward.png", "08_reverse.gif", "08_bits.png", "08_nearest.png"):
        assert (folder / name).stat().st_size > 1000, name
    checkpoints.load_unet_checkpoint(folder / "unet.pt", conditional=False)


@pytest.mark.parametrize("arguments, words", [
    (("--iters", "0"), "--iters"),
    (("--base-channels", "12"), "multiple of 8"),
    (("--T", "1"), "--T"),
    (("--reuse", "--resume"), "give one of them"),
])
def test_bad_arguments_get_one_line(monkeypatch, capsys, keep_process_settings, tmp_path, arguments, words):
    """Each refused with exit status 2 and one error line naming the option, before any work."""
    code, _, err = call_main("08_pictures.py", [*arguments, "--images", tmp_path], monkeypatch, capsys)
    assert code == 2 and words in the_error_line(err, arguments), err


def test_a_missing_or_foreign_checkpoint_gets_one_line(monkeypatch, capsys, keep_process_settings, tmp_path):
    """--reuse of no file, of a Swiss-roll checkpoint, and of a conditional UNet: exit 1, one line."""
    roll_model, labelled = tmp_path / "roll.pt", tmp_path / "labelled.pt"
    checkpoints.save_checkpoint(roll_model, ReverseModel(), common.make_schedule(), argparse.Namespace(), 1)
    checkpoints.save_unet_checkpoint(labelled, UNet(base_channels=8, n_classes=10), common.make_schedule(),
                                  argparse.Namespace(), 1)
    for path, words in ((tmp_path / "none.pt", "no checkpoint"), (roll_model, "Swiss-roll"),
                        (labelled, "conditioned on 10 labels")):
        code, _, err = call_main("08_pictures.py", ["--reuse", "--checkpoint", path, "--images", tmp_path],
                                 monkeypatch, capsys)
        assert code == 1 and words in the_error_line(err, path), err


def test_the_bound_weighted_loss_is_the_sum_of_kl_terms_and_flat_on_a_linear_log_snr_schedule():
    """--loss bound weighs ||eps - eps_theta||^2 at step t so that swapping one noise guess for
    another changes the loss as it changes (T - 1) KL_t with sigma_t^2 = sigma_tilde_t^2
    (common.kl_gaussian on 64 pixels, on the cosine path where the weights vary 100-fold); on the
    log-SNR-linear path every weight is (T - 1) (SNR_{t-1} / SNR_t - 1) / 2, the same for all t."""
    cosine = pictures.image_schedule(30, 1e-4, -1.08, "cosine")
    weights = pictures.loss_weights(cosine, "bound")
    assert weights.shape == (31,) and weights[:2].abs().max() == 0
    assert weights[2:].max() / weights[2:].min() > 100
    generator = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(3, 64, generator=generator).double() * 2 - 1, torch.randn(3, 64, generator=generator).double()
    guesses = [eps + 0.3 * torch.randn(3, 64, generator=generator).double() for _ in range(2)]
    for t in (2, 10, 30):
        x_t = common.x_t_from_eps(x0, eps, t, cosine)
        _, _, sigma_tilde2 = common.posterior_coefficients(t, cosine, x_t)
        kl = [common.kl_gaussian(*common.q_posterior(x0, x_t, t, cosine), ddpm.ddpm_mean(x_t, guess, t, cosine),
                                 common.identity_times(sigma_tilde2, x_t)) for guess in guesses]
        errors = [(eps - guess).square().sum(1) for guess in guesses]
        assert torch.allclose((29 * (kl[0] - kl[1])), weights[t] * (errors[0] - errors[1]), rtol=1e-6), t
    linear = pictures.image_schedule(30, 1e-4, -1.08, "linear")
    snr = torch.exp(common.log_snr(linear))
    expected = 29 * (snr[1:-1] / snr[2:] - 1) / 2
    assert torch.allclose(pictures.loss_weights(linear, "bound")[2:], expected)
    assert torch.allclose(expected, expected[0].expand_as(expected))
    simple = torch.ones(31, dtype=torch.float64)
    simple[:2] = 0.0   # no step below the first one trained: 2 for eq. 44's fixed kernel, 1 with the decoder
    assert torch.equal(pictures.loss_weights(linear, "simple"), simple)
    simple[1] = 1.0
    assert torch.equal(pictures.loss_weights(linear, "simple", first=1), simple)


def test_a_chain_ending_on_x0_hat_ends_on_the_decoders_most_likely_level():
    """pictures.end_on_levels (chapter 14's chains): with beta_1 = 1e-2 (std 0.1) an x0_hat of 0.87,
    a tenth of a bin below level 16's edge 2 * 16/17 - 1 = 0.882, goes to level 16 (the bin of the
    mean would say 15), 0.86 stays at 15, -0.87 goes to 0, 0.5 stays in its bin (12); for a network
    trained on dequantised pixels x0_hat is left as it is."""
    schedule = pictures.image_schedule(20, 1e-2, -8.3, "cosine")
    x0_hat = torch.tensor([[0.87, 0.86, -0.87, 0.5]])
    levels = ((pictures.end_on_levels(x0_hat, schedule) + 1) * 17 / 2 - 0.5).reshape(-1)   # centre 2 (k + 1/2) / 17 - 1
    assert torch.allclose(levels, torch.tensor([16.0, 15, 0, 12], dtype=levels.dtype)), levels
    assert torch.equal(pictures.end_on_levels(x0_hat, schedule, "dequantised"), x0_hat)


def test_the_last_step_std_study_ends_the_chapters_own_chain(tiny_run):
    """docs/last_step_std.py runs chapter 8's chain once to x_1 and ends it with several decoders:
    with std sqrt(beta_1) its samples are the chapter's own (the same two-sample accuracy, level
    gap and confident share as the tiny run printed), and std 0 is another ending."""
    import re

    from conftest import run_main
    result, folder = tiny_run
    study = run_main("docs/last_step_std.py", "--checkpoint", folder / "unet.pt", "--n-samples", 40,
                     "--n-moments", 20, "--stds", "0,beta", "--images", folder)
    assert study.returncode == 0, study.stderr[-2000:]
    chapter = re.search(r"confident \(p > 0.9\) samples = ([\d.]+).*two-sample accuracy = ([\d.]+)  level gap = "
                        r"([-+\d.]+) points at level (\d+)", result.stdout, re.S).groups()
    row = re.search(r"\(beta\) +([\d.]+) +([-+\d.]+) \( ?(\d+)\) +([\d.]+)", study.stdout).groups()
    assert (row[3], row[0], row[1], row[2]) == chapter, (study.stdout, chapter)
    assert re.search(r"^0\.000 ", study.stdout, re.M), study.stdout


def test_a_resume_with_other_settings_is_refused_in_one_line(tiny_run, monkeypatch, capsys, keep_process_settings):
    """The tiny run's checkpoint, resumed with another --iters: exit 1, one line naming the option."""
    _, folder = tiny_run
    arguments = [*TINY[:1], "31", *TINY[2:], "--resume", "--checkpoint", folder / "unet.pt", "--images", folder,
                 "--samples", folder / "again.npy"]
    code, _, err = call_main("08_pictures.py", arguments, monkeypatch, capsys)
    assert code == 1 and "--iters 30" in the_error_line(err, "resume"), err


@pytest.mark.parametrize("steps", [10, 50])
def test_ddim_on_digits_lands_on_the_levels_of_a_point_mass(steps):
    """With the exact eps of data that is one image of levels, eps(x_t, t) = (x_t - sqrt(abar_t) x0*)
    / sqrt(1 - abar_t), DDIM's deterministic chain reaches x0* from any x_T: every pixel of every
    sample is x0*'s level. Ending on eq. 44's kernel instead leaves x_1's noise of std 0.1 (chapter
    8's beta_1 = 1e-2), which moves some pixels by a level."""
    schedule = pictures.image_schedule(200, 1e-2, -8.3, "cosine")
    target = torch.as_tensor(independent_levels(1, seed=3))
    x0_star = digits.to_unit(target).reshape(1, -1)

    def exact(x_t, t):
        alpha_bar = common.at(schedule.alpha_bar, t).to(x_t).reshape(-1, 1)
        return (x_t - alpha_bar.sqrt() * x0_star) / (1.0 - alpha_bar).sqrt(), None

    samples = pictures.ddim_levels(exact, schedule, steps, 200, torch.Generator().manual_seed(0))
    wrong = (torch.as_tensor(samples) != target).float().mean().item()
    assert wrong == 0.0, f"{wrong:.3%} of the pixels of DDIM's samples miss the point mass's levels"


def test_the_last_step_names_the_decoders_most_likely_level_even_next_to_the_end_bins():
    """most_likely_level against a Monte Carlo count: draw N(mean, std^2) many times per pixel, bin
    each draw, and take the most frequent level. Inside, that is the bin of the mean; a mean just
    inside level 15 (or 1) names level 16 (or 0), whose bin reaches to +inf (-inf), which rounding
    the mean would miss; and means half a bin's width inside stay where they are."""
    std, edge = 0.1, 1.0 - 2.0 / digits.LEVELS           # level 16's lower edge
    means = torch.tensor([edge - 0.01, -(edge - 0.01), edge - 0.05, -(edge - 0.05), 0.05, -0.3, 0.95, -0.99]
                         * 8, dtype=torch.float64)
    draws = means + std * torch.randn(20000, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    counted = torch.as_tensor(digits.to_levels(draws)).reshape(-1, 64)
    frequent = torch.stack([torch.bincount(counted[:, j], minlength=digits.LEVELS).argmax() for j in range(64)])
    named = torch.as_tensor(digits.to_levels(pictures.most_likely_level(means, std))).flatten()
    assert torch.equal(named, frequent), f"most likely {named[:8].tolist()}, Monte Carlo {frequent[:8].tolist()}"
    rounded = torch.as_tensor(digits.to_levels(means)).flatten()
    assert named[:2].tolist() == [16, 0] and rounded[:2].tolist() == [15, 1], (named[:2], rounded[:2])
    assert torch.equal(named[2:8], rounded[2:8]), (named[2:8], rounded[2:8])
