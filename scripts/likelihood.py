"""How tight is K (README, chapter 7): the importance-weighted bound on the log-likelihood, and
schedules of any length T that keep both ends of ours, with the best K each allows.
"""
import math

import torch

import common
import roll

SCHEDULE_SHAPES = ("linear", "power", "cosine")
POWER, POWER_BETA_T = 1.7, 0.3   # the "power" path: the schedule of this walkthrough's first versions


def schedule_between_ends(T, shape="linear", reference=None, last_log_snr=None):
    """A schedule of T >= 2 steps with the same log SNR as `reference` (default: ours) at t = 1
    and at t = T (or `last_log_snr` at t = T, if given), and a chosen path in between, as a
    function of s = (t - 1) / (T - 1):
    - "linear": log SNR linear in s (our schedule's path: between its ends, it is ours);
    - "power":  log beta_t = log beta_1 + s^POWER log(POWER_BETA_T / beta_1), beta_t geometric
      in s^1.7, the path of our earlier schedule, its log SNR stretched linearly to the ends;
    - "cosine": alpha_bar_t = cos^2(theta), theta linear in s between the two ends' angles
      (the cosine schedule of improved DDPM, its ends moved to ours).
    alpha_bar_t = sigmoid(log SNR_t), so alpha_bar_1 = 1 - beta_1 and alpha_bar_T are kept,
    and beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}."""
    if T < 2:
        raise ValueError(f"a schedule between two ends needs T >= 2, got {T}")
    reference_snr = common.log_snr(common.make_schedule() if reference is None else reference)[1:]
    first, last = reference_snr[0], reference_snr[-1]
    if last_log_snr is not None:
        last = torch.tensor(float(last_log_snr), dtype=torch.float64)
    s = torch.arange(T, dtype=torch.float64) / (T - 1)
    if shape == "linear":
        snr = first + (last - first) * s
    elif shape == "power":
        beta_1 = float(torch.sigmoid(-first))
        alpha_bar = torch.cumprod(1.0 - beta_1 * (POWER_BETA_T / beta_1) ** (s ** POWER), dim=0)
        snr = torch.log(alpha_bar) - torch.log1p(-alpha_bar)
        snr = first + (snr - snr[0]) * (last - first) / (snr[-1] - snr[0])
    elif shape == "cosine":
        # SNR = cot^2(theta): theta = arctan(exp(-log SNR / 2)) at each end
        theta = torch.atan(torch.exp(-0.5 * torch.stack([first, last])))
        snr = -2.0 * torch.log(torch.tan(theta[0] + (theta[1] - theta[0]) * s))
    else:
        raise ValueError(f"shape must be one of {', '.join(SCHEDULE_SHAPES)}, got {shape!r}")
    alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), torch.sigmoid(snr)])
    return common.schedule_from_beta(torch.cat([torch.zeros(1, dtype=torch.float64),
                                         1.0 - alpha_bar[1:] / alpha_bar[:-1]]))


@torch.no_grad()
def prior_kl(schedule, x0, n=20_000, generator=None):
    """KL(q(x_T) || N(0, I)) in nats: how far the forward process's last marginal is from the
    noise the sampler starts from. q(x_T) is the mixture over data points x0 (rows, equally
    weighted) of N(sqrt(alpha_bar_T) x0, (1 - alpha_bar_T) I); the KL is the Monte Carlo mean of
    log q(x_T) - log N(x_T; 0, I) over n draws x_T ~ q(x_T), log q(x_T) by log-sum-exp over x0.
    Returns (KL, its standard error)."""
    x0 = x0.cpu().double()
    alpha_bar_T = float(schedule.alpha_bar[-1])
    pick = torch.randint(len(x0), (n,), generator=generator)
    x_T = math.sqrt(alpha_bar_T) * x0[pick] + math.sqrt(1.0 - alpha_bar_T) * torch.randn(
        n, x0.shape[1], generator=generator, dtype=torch.float64)
    log_q = torch.cat([torch.logsumexp(-torch.cdist(part, math.sqrt(alpha_bar_T) * x0) ** 2
                                       / (2.0 * (1.0 - alpha_bar_T)), dim=1)
                       for part in x_T.split(500)])
    log_q += -math.log(len(x0)) - 0.5 * x0.shape[1] * math.log(2.0 * math.pi * (1.0 - alpha_bar_T))
    log_noise = -0.5 * (x_T ** 2).sum(1) - 0.5 * x0.shape[1] * math.log(2.0 * math.pi)
    difference = log_q - log_noise
    return difference.mean().item(), difference.std().item() / math.sqrt(n)


@torch.no_grad()
def log_weight(reverse, x0, schedule, generator=None):
    """log p(x0, x_{1:T}) - log q(x_{1:T} | x0) for one forward trajectory x_{1:T} ~ q(. | x0)
    per point (nats, float64 on the CPU, one per row of x0). Every factor of both chains:
    q(x_t | x_{t-1}) for t = 1..T, p(x_T) = N(0, I) and p(x_{t-1} | x_t) for t = T..1, the fixed
    last step included. Its mean over trajectories is K; its spread is what the
    importance-weighted bound uses."""
    x_prev = x0
    log_w = torch.zeros(x0.shape[0], dtype=torch.float64)
    for t in range(1, schedule.T + 1):
        mean, cov = common.q_step(x_prev, t, schedule)
        x_t = common.sample_gaussian(mean, cov, generator)
        log_w -= common.log_gaussian(x_t, mean, cov).cpu().double()
        log_w += common.log_gaussian(x_prev, *reverse(x_t, t)).cpu().double()
        x_prev = x_t
    return log_w + common.log_gaussian(x_prev, torch.zeros_like(x_prev), common.identity_times(1.0, x_prev)).cpu().double()


def importance_weighted_bound(log_weights):
    """log (1/M) sum_m w_m for each row of an (n, M) table of log weights, by log-sum-exp: a
    lower bound on log p(x0) that rises with M (Burda et al. 2016); M = 1 is the ordinary bound."""
    return torch.logsumexp(log_weights, dim=1) - math.log(log_weights.shape[1])


@torch.no_grad()
def iw_log_weights(model, schedule, x0, trajectories, generator=None, trajectories_per_batch=16_384):
    """An (n, M) table of log_weight for M forward trajectories per point of x0 (chapter 7),
    the trajectories run trajectories_per_batch at a time."""
    reverse = common.reverse_of(model, schedule)
    per_batch = max(1, trajectories_per_batch // len(x0))
    columns = []
    for first in range(0, trajectories, per_batch):
        m = min(per_batch, trajectories - first)
        log_w = log_weight(reverse, x0.repeat(m, 1), schedule, generator)
        columns.append(log_w.reshape(m, len(x0)).T)
    return torch.cat(columns, dim=1)
def importance_weighted_bounds(log_weights, m_values):
    """For each M, the importance-weighted bound per point (nats): the (n, M_max) table of log
    weights is cut into M_max // M disjoint groups of M trajectories, and a point's value is the
    mean of its groups' bounds, an unbiased estimate of the M-trajectory bound with less noise."""
    n, m_max = log_weights.shape
    bounds = {}
    for m in m_values:
        groups = m_max // m
        grouped = log_weights[:, :groups * m].reshape(n * groups, m)
        bounds[m] = importance_weighted_bound(grouped).reshape(n, groups).mean(dim=1)
    return bounds


def best_K_both_classes(schedule, n, seed, n_curve=roll.CURVE_POINTS):
    """K per held-out point (nats) of the best Gaussian reverse process with full and with
    diagonal covariance, on the same points and noise (roll.heldout_K, so paired).

    The diagonal class's step is the full one with Cov(x0 | x_t)'s off-diagonal cut, and the
    forward posterior's part sigma_tilde^2 I is diagonal already, so its covariance is the full
    step's covariance cut to its diagonal: the brute-force posterior moments, the slow part, are
    computed once and replayed for the diagonal class at the very same x_t."""
    full = roll.bayes_optimal_reverse(schedule, "full", n_curve)
    steps = {}

    def full_recorded(x_t, t):
        steps[int(t[0])] = (x_t, *full(x_t, t))
        return steps[int(t[0])][1:]

    def diagonal_replayed(x_t, t):
        x_seen, mean, cov = steps[int(t[0])]
        if not torch.equal(x_seen, x_t):
            raise RuntimeError("the diagonal class was asked about other points than the full one")
        return mean, torch.diag_embed(torch.diagonal(cov, dim1=-2, dim2=-1))

    K_full = roll.heldout_K(full_recorded, schedule, n, seed)
    return {"full": K_full, "diagonal": roll.heldout_K(diagonal_replayed, schedule, n, seed)}
