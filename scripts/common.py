"""The math of the walkthrough, one function for each formula the README names: the schedule,
the Gaussian formulas, the reverse step, sampling, and the bound K.

Conventions, kept in every script and test:
- x0 is a data point; x_t is the point after t forward (noising) steps.
- t is 1-indexed as in the paper: t = 1..T. Tables over steps have T + 1 entries and are
  indexed by t itself; entry 0 holds the t = 0 convention (beta_0 = 0, alpha_bar_0 = 1).
- Points are tensors of shape (n, D). A Gaussian is a mean (n, D) and a covariance (n, D, D):
  the forward steps are isotropic (variance times I), the reverse steps may be full.
- Everything in nats; divide by ln 2 for bits (`nats_to_bits`).

The math of the later chapters builds on this: ddpm.py (chapter 5), ddim.py (chapter 6),
likelihood.py (chapter 7), pictures.py (8), guidance.py (9) and continuous.py (10). The data
(roll.py, digits.py), the networks (model.py, unet.py), the matrix algebra of the Gaussians
(linalg.py) and files and arguments (cli.py, checkpoints.py) live elsewhere.
"""
import math
from typing import NamedTuple

import torch

import linalg

T = 40          # number of diffusion steps the paper used for the Swiss roll
BETA_1 = 1e-5   # first step's variance, fixed; it sets the ceiling on K (README, chapter 3)
LOG_SNR_T = -3.0  # log signal-to-noise ratio at t = T: x_T is noise (README, chapter 1: the schedule)
D = 2           # dimension of a data point


# --- the schedule (README, chapter 1) -------------------------------------------------------

class Schedule(NamedTuple):
    """beta_t and alpha_bar_t = prod_{s <= t} (1 - beta_s) for t = 0..T, float64 on the CPU."""
    beta: torch.Tensor
    alpha_bar: torch.Tensor

    @property
    def T(self):
        return len(self.beta) - 1


def schedule_from_beta(beta):
    """The Schedule of a table beta_0..beta_T (beta_0 = 0): alpha_bar_t by a running product."""
    beta = torch.as_tensor(beta, dtype=torch.float64).cpu()
    return Schedule(beta, torch.cumprod(1.0 - beta, dim=0))


def make_schedule(T=T, beta_1=BETA_1, log_snr_T=LOG_SNR_T):
    """Our schedule: the log signal-to-noise ratio log(alpha_bar_t / (1 - alpha_bar_t)) falls in
    equal steps, from log((1 - beta_1) / beta_1) at t = 1 to log_snr_T at t = T. Then
    alpha_bar_t = sigmoid(log SNR_t) and beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}, t >= 2."""
    if T < 2:
        raise ValueError(f"a schedule needs T >= 2 steps, got {T}")
    first = math.log((1.0 - beta_1) / beta_1)
    alpha_bar = torch.sigmoid(first + (log_snr_T - first) * torch.arange(T, dtype=torch.float64) / (T - 1))
    return schedule_from_beta(torch.cat([torch.tensor([0.0, beta_1], dtype=torch.float64),
                                         1.0 - alpha_bar[1:] / alpha_bar[:-1]]))


def log_snr(schedule):
    """The log signal-to-noise ratio of every step, log(alpha_bar_t / (1 - alpha_bar_t)), t = 1..T
    (entry 0, where there is no noise, is +inf)."""
    return torch.log(schedule.alpha_bar) - torch.log1p(-schedule.alpha_bar)


def at(table, t):
    """Entry t of a per-step table; for a tensor of steps (one per point), a column of entries.

    Tables stay float64 on the CPU: 1 - alpha_bar_1 is 1e-5, and float32 would lose a percent
    of it, so each coefficient is computed in float64 and only its value is cast to the points'
    dtype and device (`.to(x)`)."""
    if torch.is_tensor(t):
        return table[t.cpu()].unsqueeze(-1)
    return table[t]


def identity_times(var, like):
    """var * I as a covariance (n, D, D) for points shaped like `like`; var a number or a column."""
    eye = torch.eye(like.shape[-1], dtype=like.dtype, device=like.device)
    # straight to the points' dtype: as_tensor of a Python float would round it to float32 first
    var = torch.as_tensor(var, dtype=like.dtype, device=like.device)
    return var.reshape(-1, 1, 1) * eye.expand(like.shape[0], -1, -1)


# --- the forward process and its posterior (README, chapters 1 and 2) -----------------------

def q_step(x_prev, t, schedule):
    """q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I): returns (mean, covariance)."""
    beta_t = at(schedule.beta, t)
    return torch.sqrt(1.0 - beta_t).to(x_prev) * x_prev, identity_times(beta_t, x_prev)


def q_closed_form(x0, t, schedule):
    """q(x_t | x0) = N(sqrt(alpha_bar_t) x0, (1 - alpha_bar_t) I): returns (mean, covariance)."""
    alpha_bar_t = at(schedule.alpha_bar, t)
    return torch.sqrt(alpha_bar_t).to(x0) * x0, identity_times(1.0 - alpha_bar_t, x0)


def posterior_coefficients(t, schedule, like):
    """The three numbers of q(x_{t-1} | x_t, x0) = N(c_t x0 + k_t x_t, sigma_tilde_t^2 I):
    c_t = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t)            (x0's weight),
    k_t = sqrt(1 - beta_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)  (x_t's weight),
    sigma_tilde_t^2 = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t), computed in float64."""
    beta_t, alpha_bar_t, alpha_bar_prev = at(schedule.beta, t), at(schedule.alpha_bar, t), at(schedule.alpha_bar, t - 1)
    c_t = torch.sqrt(alpha_bar_prev) * beta_t / (1.0 - alpha_bar_t)
    k_t = torch.sqrt(1.0 - beta_t) * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t)
    sigma_tilde2 = beta_t * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t)
    return c_t.to(like), k_t.to(like), sigma_tilde2.to(like)


def q_posterior(x0, x_t, t, schedule):
    """q(x_{t-1} | x_t, x0) = N(mu_tilde, sigma_tilde_t^2 I), the forward chain run backwards,
    mu_tilde = c_t x0 + k_t x_t (posterior_coefficients). Returns (mean, covariance)."""
    c_t, k_t, sigma_tilde2 = posterior_coefficients(t, schedule, x_t)
    return c_t * x0 + k_t * x_t, identity_times(sigma_tilde2, x_t)


def reverse_from_x0_moments(x0_mean, x0_cov, x_t, t, schedule):
    """q(x_{t-1} | x_t) when x0 is known only through its mean and covariance given x_t (README,
    chapter 2): the posterior averaged over x0, N(mu_tilde(x_t, E[x0 | x_t]),
    sigma_tilde_t^2 I + c_t^2 Cov(x0 | x_t)). A diagonal x0_cov gives the diagonal step.
    Returns (mean, covariance)."""
    c_t, k_t, sigma_tilde2 = posterior_coefficients(t, schedule, x_t)
    return (c_t * x0_mean + k_t * x_t,
            identity_times(sigma_tilde2, x_t) + (c_t ** 2).reshape(-1, 1, 1) * x0_cov)


def x_t_from_eps(x0, eps, t, schedule):
    """q(x_t | x0) written as a draw: x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, eps ~ N(0, I)."""
    alpha_bar_t = at(schedule.alpha_bar, t)
    return torch.sqrt(alpha_bar_t).to(x0) * x0 + torch.sqrt(1.0 - alpha_bar_t).to(x0) * eps


def x0_from_eps(x_t, eps, t, schedule):
    """The x0 that noise eps would have come from: x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps."""
    alpha_bar_t = at(schedule.alpha_bar, t)
    return (x_t - torch.sqrt(1.0 - alpha_bar_t).to(x_t) * eps) / torch.sqrt(alpha_bar_t).to(x_t)


# --- Gaussians ---------------------------------------------------------------------------------
#
# The factor, inverse and determinant of a covariance are in linalg.py: written out for the
# roll's 2x2 matrices, a shortcut for the images' diagonal ones.

def sample_gaussian(mean, cov, generator=None):
    """One draw from N(mean, cov) per row: mean + L z with cov = L L^T and z ~ N(0, I).
    z is drawn on the CPU, where seeded generators live, so a seed means the same noise on
    every device."""
    z = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
    return mean + (linalg.cholesky(cov) @ z.unsqueeze(-1)).squeeze(-1)


def kl_gaussian(mean_q, cov_q, mean_p, cov_p):
    """KL(N(mean_q, cov_q) || N(mean_p, cov_p)) per row:
    1/2 [ tr(cov_p^-1 cov_q) + (mean_p - mean_q)^T cov_p^-1 (mean_p - mean_q) - d
          + log det cov_p - log det cov_q ]."""
    precision_p, logdet_p = linalg.inverse_and_logdet(cov_p)
    _, logdet_q = linalg.inverse_and_logdet(cov_q)
    diff = (mean_p - mean_q).unsqueeze(-1)
    trace = (precision_p * cov_q.transpose(-1, -2)).sum(dim=(-2, -1))
    mahalanobis = (diff.transpose(-1, -2) @ precision_p @ diff)[..., 0, 0]
    return 0.5 * (trace + mahalanobis - mean_q.shape[-1] + logdet_p - logdet_q)


def log_gaussian(x, mean, cov):
    """log N(x; mean, cov) per row:
    -1/2 [ (x - mean)^T cov^-1 (x - mean) + log det cov + d log(2 pi) ]."""
    precision, logdet = linalg.inverse_and_logdet(cov)
    diff = (x - mean).unsqueeze(-1)
    mahalanobis = (diff.transpose(-1, -2) @ precision @ diff)[..., 0, 0]
    return -0.5 * (mahalanobis + logdet + x.shape[-1] * math.log(2.0 * math.pi))


def gaussian_entropy(var, d=D):
    """Entropy of N(m, var I) in d dimensions: d/2 log(2 pi e var)."""
    return 0.5 * d * math.log(2.0 * math.pi * math.e * float(var))


def nats_to_bits(nats):
    """Convert nats to bits: divide by ln 2."""
    return nats / math.log(2.0)


def null_log_likelihood(d=D):
    """L_null: mean log-likelihood of unit-variance data under N(0, I), -d/2 log(2 pi e) nats."""
    return -0.5 * d * math.log(2.0 * math.pi * math.e)


# --- the reverse process p(x_{t-1} | x_t) (README, chapter 2) ---------------------------------

def p_reverse(network, x_t, t, schedule):
    """p(x_{t-1} | x_t) = N(mean, covariance), for one step t or a tensor of steps (one per point).

    For t >= 2 it is the posterior averaged over x0 (reverse_from_x0_moments) with the network's
    guesses: the network returns a noise estimate eps and a lower-triangular factor L, and
      E[x0 | x_t] ~ x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t),
      Cov(x0 | x_t) ~ (1 - alpha_bar_t) L L^T    (L diagonal for the paper's diagonal steps).
    For t = 1 it is the fixed kernel N(sqrt(1 - beta_1) x_1, beta_1 I) (paper eq. 44)."""
    if not torch.is_tensor(t) and t == 1:
        return q_step(x_t, 1, schedule)  # the fixed last step, never learned (eq. 44)
    t = learned_steps(t, x_t)
    eps, factor = network(x_t, t)
    noise_var = (1.0 - at(schedule.alpha_bar, t)).to(x_t).unsqueeze(-1)   # (n, 1, 1)
    x0_cov = noise_var * (factor @ factor.transpose(-1, -2))
    return reverse_from_x0_moments(x0_from_eps(x_t, eps, t, schedule), x0_cov, x_t, t, schedule)


def learned_steps(t, x_t):
    """t as one step per point (a tensor on x_t's device), refused unless every t >= 2: the
    networks model the learned steps only, t = 1 being the fixed kernel."""
    t = torch.as_tensor(t, device=x_t.device).expand(x_t.shape[0])
    if bool((t < 2).any()):
        raise ValueError("the network only models steps t >= 2; t = 1 is the fixed kernel")
    return t


def reverse_of(network, schedule):
    """The reverse process of a network, as a function (x_t, t) -> (mean, covariance)."""
    return lambda x_t, t: p_reverse(network, x_t, t, schedule)


@torch.no_grad()
def sample_chain(reverse, n, T=T, generator=None, device="cpu", d=D, x_T=None):
    """Ancestral sampling: x_T ~ N(0, I) (or the x_T given), then x_{t-1} ~ p(x_{t-1} | x_t), t = T..1.

    Returns the whole trajectory, a list of T + 1 tensors (n, d) indexed by t (d = 2 for the roll,
    64 for images): trajectory[0] is x0, the samples; every step applied, the fixed last one too."""
    trajectory = [None] * (T + 1)
    trajectory[T] = (torch.randn(n, d, generator=generator) if x_T is None else x_T).to(device)
    for t in range(T, 0, -1):
        trajectory[t - 1] = sample_gaussian(*reverse(trajectory[t], t), generator)
    return trajectory


# --- the bound K (paper eq. 14; README, chapter 3) -------------------------------------------

def entropy_part(schedule, d=D):
    """H_q(X_T | X_0) - H_q(X_1 | X_0) - H_p(X_T): the one number in K that no network changes
    (points of dimension d)."""
    return (gaussian_entropy(1.0 - schedule.alpha_bar[schedule.T], d) - gaussian_entropy(schedule.beta[1], d)
            - gaussian_entropy(1.0, d))


def kl_one_step(reverse, x0, t, schedule, generator=None):
    """KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t)) for each point at its own step t, with
    x_t ~ q(x_t | x0). `reverse(x_t, t)` returns p's (mean, covariance): the trained network
    (see `reverse_of`), the Bayes-optimal one (roll.bayes_optimal_reverse) or, in the tests, one
    known in closed form."""
    x_t = sample_gaussian(*q_closed_form(x0, t, schedule), generator)
    return kl_gaussian(*q_posterior(x0, x_t, t, schedule), *reverse(x_t, t))


@torch.no_grad()
def kl_all_steps(reverse, x0, schedule, generator=None):
    """Every KL term of K for each point: a float64 tensor (n, T + 1) on the CPU whose column t
    is step t's KL; columns 0 and 1 are zero (no KL at t = 0; t = 1 is eq. 44's fixed kernel)."""
    kl = torch.zeros(x0.shape[0], schedule.T + 1, dtype=torch.float64)
    for t in range(2, schedule.T + 1):
        steps = torch.full((x0.shape[0],), t, dtype=torch.long, device=x0.device)
        kl[:, t] = kl_one_step(reverse, x0, steps, schedule, generator).cpu().double()
    return kl


def bound_K(kl, schedule, d=D):
    """K = - sum_{t=2..T} KL_t + H_q(X_T | X_0) - H_q(X_1 | X_0) - H_p(X_T), per point (nats),
    from the table of kl_all_steps (points of dimension d)."""
    return entropy_part(schedule, d) - kl.sum(dim=1)
