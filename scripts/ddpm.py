"""What DDPM changed (README, chapter 5): Algorithm 2's mean, the weights L_simple drops, and the
reverse variances an eps-network can be given (fixed, Analytic-DPM's, the best isotropic one).

Every function here reads the steps only through the Schedule (beta_t, alpha_bar_t), so it serves
a respaced schedule (ddim.respace, chapter 6) as well as ours. Tables of variances have T + 1
entries, indexed by t like beta.
"""
import torch

import common
from common import D


def ddpm_mean(x_t, eps, t, schedule):
    """Algorithm 2's mean, mu = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t).
    It is the posterior mean mu_tilde(x_t, x0_hat) at x0_hat = common.x0_from_eps(x_t, eps): the same
    formula with x0_hat substituted and simplified (README, chapter 5)."""
    beta_t, alpha_bar_t = common.at(schedule.beta, t), common.at(schedule.alpha_bar, t)
    return ((x_t - (beta_t / torch.sqrt(1.0 - alpha_bar_t)).to(x_t) * eps)
            / torch.sqrt(1.0 - beta_t).to(x_t))


def eps_weight(t, schedule, var):
    """The bound's weight on ||eps - eps_theta||^2 at step t when p(x_{t-1} | x_t) has the mean
    ddpm_mean and the fixed isotropic variance var: KL_t = w_t ||eps - eps_theta||^2 + (a term
    free of eps_theta), w_t = beta_t^2 / (2 var alpha_t (1 - alpha_bar_t)). L_simple sets w_t = 1."""
    beta_t, alpha_bar_t = common.at(schedule.beta, t), common.at(schedule.alpha_bar, t)
    return beta_t ** 2 / (2.0 * var * (1.0 - beta_t) * (1.0 - alpha_bar_t))


def best_isotropic_variance(t, schedule, mean_sq_x0_error, d=D):
    """The variance s^2 of p(x_{t-1} | x_t) = N(mu_theta, s^2 I) that maximises the bound's term t
    for a fixed mean mu_theta = mu_tilde(x_t, x0_hat): sigma_tilde_t^2 + c_t^2 E||x0 - x0_hat||^2 / d,
    the posterior's own variance plus the mean's error spread over the d directions."""
    c_t, _, sigma_tilde2 = common.posterior_coefficients(t, schedule, torch.zeros((), dtype=torch.float64))
    return sigma_tilde2 + c_t ** 2 * mean_sq_x0_error / d


def analytic_variance(t, schedule, mean_sq_eps, x0_half_range=None):
    """Analytic-DPM's variance from E||eps_theta(x_t, t)||^2 alone:
    sigma_tilde_t^2 + c_t^2 (1 - alpha_bar_t) / alpha_bar_t (1 - E||eps_theta||^2 / d).
    For the exact network eps* = E[eps | x_t], E||eps - eps*||^2 = d - E||eps*||^2, so this is
    best_isotropic_variance with E||x0 - x0_hat||^2 = (1 - alpha_bar_t) / alpha_bar_t (d - E||eps*||^2).
    Clipped as the paper does: from below at sigma_tilde_t^2 (Var(x0 | x_t) >= 0), and, given the
    data's half-range r per coordinate, from above at sigma_tilde_t^2 + c_t^2 r^2."""
    alpha_bar_t = common.at(schedule.alpha_bar, t)
    x0_var = ((1.0 - alpha_bar_t) / alpha_bar_t * (1.0 - mean_sq_eps / D)).clamp_min(0.0)
    if x0_half_range is not None:
        x0_var = x0_var.clamp_max(x0_half_range ** 2)
    return best_isotropic_variance(t, schedule, D * x0_var)


def reverse_with_variance(network, schedule, var):
    """The reverse process of an eps-network with a variance chosen outside it, as in DDPM:
    p(x_{t-1} | x_t) = N(ddpm_mean(x_t, eps_theta, t), var_t I) for t >= 2, the fixed kernel at
    t = 1. `network(x_t, t)` returns (eps, anything); var is a table indexed by t. A function
    (x_t, t) -> (mean, covariance), for kl_all_steps, sample_chain and roll.heldout_K. On a
    respaced schedule, give a network that maps the chain's t to the step it was trained on."""
    def reverse(x_t, t):
        if not torch.is_tensor(t) and t == 1:
            return common.q_step(x_t, 1, schedule)
        t = common.learned_steps(t, x_t)
        eps, _ = network(x_t, t)
        return ddpm_mean(x_t, eps, t, schedule), common.identity_times(common.at(var, t), x_t)

    return reverse
