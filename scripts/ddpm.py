"""What DDPM changed (README, chapter 5): the bound in DDPM's form, Algorithm 2's mean, the weights
L_simple drops, and the reverse variances an eps-network can be given (fixed, Analytic-DPM's, the
best isotropic one, one learned per point).

Every function here reads the steps only through the Schedule (beta_t, alpha_bar_t), so it serves
a respaced schedule (ddim.respace, chapter 6) as well as ours. Tables of variances have T + 1
entries, indexed by t like beta.
"""
from typing import NamedTuple

import torch

import common
from common import D
from model import ReverseModel


class ELBOTerms(NamedTuple):
    """DDPM's terms of the bound, nats per point (float64 on the CPU): L_T (n,), L_mid (n, T + 1)
    whose column t (t = 2..T) is L_{t-1}, and L_0 (n,)."""
    L_T: torch.Tensor
    L_mid: torch.Tensor
    L_0: torch.Tensor

    def total(self):
        """L_T + sum_{t=2..T} L_{t-1} + L_0 per point: minus the bound on log p(x0)."""
        return self.L_T + self.L_mid.sum(dim=1) + self.L_0


@torch.no_grad()
def elbo_terms(reverse, x0, schedule, generator=None):
    """The bound as DDPM writes it (Ho et al. 2020, eq. 5), -log p(x0) <= L_T + sum_{t=2..T} L_{t-1} + L_0:
    L_T = KL(q(x_T | x0) || N(0, I)), L_{t-1} = KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t)) with
    x_t ~ q(x_t | x0), and L_0 = -log p(x0 | x1) with x1 ~ q(x1 | x0); each term per point.

    It is eq. 14's K (common.bound_K) written otherwise: the L_{t-1} are K's KL terms, and for
    p(x0 | x1) = eq. 44's fixed kernel, averaging over x1 gives L_0 = H_q(X_1 | X_0) + beta_1 (|x0|^2 - d) / 2
    while L_T = H_p(X_T) - H_q(X_T | X_0) + alpha_bar_T (|x0|^2 - d) / 2, so the sum is
    -K + (alpha_bar_T + beta_1)(|x0|^2 - d) / 2: the same number as -K on average over data with
    E|x0|^2 = d, as our standardised roll has (tests/test_bound.py)."""
    L_mid = common.kl_all_steps(reverse, x0, schedule, generator)
    mean_T, cov_T = common.q_closed_form(x0, schedule.T, schedule)
    L_T = common.kl_gaussian(mean_T, cov_T, torch.zeros_like(mean_T), common.identity_times(1.0, x0))
    x1 = common.sample_gaussian(*common.q_closed_form(x0, 1, schedule), generator)
    L_0 = -common.log_gaussian(x0, *reverse(x1, 1))
    return ELBOTerms(L_T.cpu().double(), L_mid, L_0.cpu().double())


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


def variance_table(schedule, per_step):
    """A table indexed by t from the values for t = 2..T; t = 1 holds the fixed kernel's beta_1."""
    return torch.cat([torch.tensor([0.0, float(schedule.beta[1])], dtype=torch.float64),
                      torch.as_tensor(per_step, dtype=torch.float64).flatten()])


def fit_variance_outputs(eps_network, schedule, draw_x0, batch_size, generator, device, iters, lr):
    """The "learned" variance: chapter 3's model with diagonal covariance, its body and eps outputs
    copied from the eps-network and frozen, and only the outputs of L trained, on the bound -K, for
    `iters` Adam steps on batches of draw_x0(batch_size, generator). Frozen, the mean is DDPM's;
    only the variance of each point's step is learned."""
    model = ReverseModel(**{**eps_network.config, "covariance": "diagonal"}).to(device)
    state = eps_network.state_dict()
    for name in ("output.weight", "output.bias"):   # rows 0..D-1: eps; the new rows start at L = I
        state[name] = torch.cat([state[name], model.state_dict()[name][D:]])
    model.load_state_dict(state)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    head = [model.output.weight, model.output.bias]
    variance_rows = torch.arange(len(model.output.bias), device=device) >= D
    for parameter in head:
        parameter.requires_grad_(True)
        parameter.register_hook(lambda grad: grad * variance_rows.reshape(-1, *[1] * (grad.dim() - 1)))
    optimizer = torch.optim.Adam(head, lr=lr)
    reverse = common.reverse_of(model, schedule)
    for _ in range(iters):
        x0 = draw_x0(batch_size, generator).to(device)
        t = torch.randint(2, schedule.T + 1, (batch_size,), generator=generator).to(device)
        loss = common.kl_one_step(reverse, x0, t, schedule, generator).mean()  # -K up to constants
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()
