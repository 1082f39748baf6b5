"""How tight is K (README, chapter 7): the importance-weighted bound on the log-likelihood, and
schedules of any length T that keep both ends of ours.
"""
import math

import torch

import common

SCHEDULE_SHAPES = ("ours", "linear", "cosine")


def schedule_between_ends(T, shape="linear", reference=None):
    """A schedule of T >= 2 steps with the same log SNR as `reference` (default: ours) at t = 1
    and at t = T, and a chosen path in between, as a function of s = (t - 1) / (T - 1):
    - "linear": log SNR linear in s;
    - "cosine": alpha_bar_t = cos^2(theta), theta linear in s between the two ends' angles
      (the cosine schedule of improved DDPM, its ends moved to ours);
    - "ours":   the reference's own log SNR curve, linearly interpolated between its T steps.
    alpha_bar_t = sigmoid(log SNR_t), so alpha_bar_1 = 1 - beta_1 and alpha_bar_T are kept,
    and beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}."""
    if T < 2:
        raise ValueError(f"a schedule between two ends needs T >= 2, got {T}")
    reference_snr = common.log_snr(common.make_schedule() if reference is None else reference)[1:]
    first, last = reference_snr[0], reference_snr[-1]
    s = torch.arange(T, dtype=torch.float64) / (T - 1)
    if shape == "linear":
        snr = first + (last - first) * s
    elif shape == "cosine":
        # SNR = cot^2(theta): theta = arctan(exp(-log SNR / 2)) at each end
        theta = torch.atan(torch.exp(-0.5 * torch.stack([first, last])))
        snr = -2.0 * torch.log(torch.tan(theta[0] + (theta[1] - theta[0]) * s))
    elif shape == "ours":
        position = s * (len(reference_snr) - 1)
        left = position.floor().long().clamp(max=len(reference_snr) - 2)
        weight = position - left
        snr = (1.0 - weight) * reference_snr[left] + weight * reference_snr[left + 1]
    else:
        raise ValueError(f"shape must be one of {', '.join(SCHEDULE_SHAPES)}, got {shape!r}")
    alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), torch.sigmoid(snr)])
    return common.schedule_from_beta(torch.cat([torch.zeros(1, dtype=torch.float64),
                                         1.0 - alpha_bar[1:] / alpha_bar[:-1]]))


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
