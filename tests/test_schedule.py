"""The schedule chosen by measurement (README, chapters 1 and 7; docs/schedule.md): its two ends,
and likelihood.prior_kl, the KL(q(x_T) || N(0, I)) that says how close x_T is to noise, checked
against closed forms for data whose q(x_T) is known."""
import math

import pytest
import torch

import common
import likelihood
import roll

N_SE = 5.0


def gaussian_kl_to_standard(mean, var, d=2):
    """KL(N(mean, var I) || N(0, I)) in closed form."""
    return 0.5 * (d * var + float((mean ** 2).sum()) - d - d * math.log(var))


def test_chosen_schedule_keeps_beta_1_and_ends_at_log_snr_T_with_alpha_bar_falling():
    schedule = common.make_schedule()
    assert float(schedule.beta[1]) == 1e-5 == common.BETA_1, f"beta_1 = {float(schedule.beta[1])!r}"
    alpha_bar_T = float(schedule.alpha_bar[common.T])
    end = math.log(alpha_bar_T / (1.0 - alpha_bar_T))
    assert abs(end - common.LOG_SNR_T) < 1e-9, f"log SNR_T = {end!r}, expected {common.LOG_SNR_T}"
    assert (schedule.alpha_bar[1:] < schedule.alpha_bar[:-1]).all(), "alpha_bar does not fall at every step"


def test_chosen_end_makes_x_T_noise_to_within_a_thousandth_of_a_nat():
    """The issue's requirement: x_T is noise to within a small KL (the old end: 2.7e-3 nats)."""
    _, curve = roll.curve_grid(4000)
    kl, se = likelihood.prior_kl(common.make_schedule(), curve, 20_000, torch.Generator().manual_seed(0))
    assert kl + N_SE * se < 1e-3, f"KL(q(x_T) || N(0, I)) = {kl:.2e} +- {se:.1e} nats at log SNR_T = {common.LOG_SNR_T}"


@pytest.mark.parametrize("alpha_bar_T", [0.39, 0.05])
def test_prior_kl_of_one_point_is_the_gaussian_kl(alpha_bar_T):
    """With one data point q(x_T) is N(sqrt(alpha_bar_T) x0, (1 - alpha_bar_T) I): the Monte Carlo
    KL must match the closed form within N_SE standard errors."""
    schedule = common.schedule_from_beta(torch.tensor([0.0, 1.0 - alpha_bar_T], dtype=torch.float64))
    x0 = torch.tensor([[0.8, -1.1]], dtype=torch.float64)
    kl, se = likelihood.prior_kl(schedule, x0, 40_000, torch.Generator().manual_seed(1))
    want = gaussian_kl_to_standard(math.sqrt(alpha_bar_T) * x0, 1.0 - alpha_bar_T)
    assert abs(kl - want) < N_SE * se + 1e-12, f"alpha_bar_T={alpha_bar_T}: KL {kl:.5f} +- {se:.5f}, closed form {want:.5f}"


def test_prior_kl_of_two_far_apart_points_pays_their_mean_kl_minus_log_2():
    """Two data points so far apart that their Gaussians do not overlap: q(x_T) is an equal mixture
    of two separate Gaussians, whose KL to N(0, I) is the mean of the two KLs minus log 2 (the
    mixture's weights, which a missing 1/n would get wrong)."""
    alpha_bar_T = 0.9
    schedule = common.schedule_from_beta(torch.tensor([0.0, 1.0 - alpha_bar_T], dtype=torch.float64))
    x0 = torch.tensor([[4.0, 0.0], [-4.0, 1.0]], dtype=torch.float64)
    kl, se = likelihood.prior_kl(schedule, x0, 40_000, torch.Generator().manual_seed(2))
    want = sum(gaussian_kl_to_standard(math.sqrt(alpha_bar_T) * point, 1.0 - alpha_bar_T) for point in x0) / 2 - math.log(2)
    assert abs(kl - want) < N_SE * se + 1e-9, f"KL {kl:.5f} +- {se:.5f}, closed form {want:.5f}"
