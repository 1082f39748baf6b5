"""Continuous time (README, chapter 11): the score, the probability-flow ODE and its exact
likelihood, and flow matching's straight path.

Time is the log signal-to-noise ratio lam = log(alpha_bar / (1 - alpha_bar)) for the diffusion:
x_lam = a x0 + sigma eps with a^2 = sigmoid(lam) and sigma^2 = sigmoid(-lam) (variance
preserving, a^2 + sigma^2 = 1). Chapter 1's steps t = 1..T are points on this line
(common.log_snr); between them lam is interpolated linearly in t. Flow matching's time is
s in [0, 1], x_s = (1 - s) x0 + s eps: a = 1 - s, sigma = s, not variance preserving.

Every function works on points (n, D) in any float dtype; the ODE is solved in float64 on the
CPU by scipy's Dormand-Prince 5(4) (solve_ivp, method "RK45").
"""
import math

import numpy as np
import torch
from scipy.integrate import solve_ivp

import common
import roll

RTOL = 1e-5   # the ODE solver's tolerances: docs/chapter11.md shows the likelihood settled at them
ATOL = 1e-5


# --- the diffusion in continuous time ---------------------------------------------------------

def log_snr_range(schedule):
    """(lam_min, lam_max): the log SNR of step T (the noisy end) and of step 1 (next to the data)."""
    level = common.log_snr(schedule)
    return float(level[schedule.T]), float(level[1])


def log_snr_of_time(t, schedule):
    """lam at a continuous time t in [1, T] (a tensor): common.log_snr's table, linear between steps."""
    level = common.log_snr(schedule)
    t = torch.as_tensor(t, dtype=torch.float64).cpu().clamp(1.0, float(schedule.T))
    left = t.floor().long().clamp(max=schedule.T - 1)
    weight = t - left
    return (1.0 - weight) * level[left] + weight * level[left + 1]


def signal_and_noise(lam):
    """a = sqrt(sigmoid(lam)) and sigma = sqrt(sigmoid(-lam)): x_lam = a x0 + sigma eps. A number
    is taken as float64 (as_tensor would round it to float32: a to 1e-7 only)."""
    lam = lam if torch.is_tensor(lam) else torch.tensor(lam, dtype=torch.float64)
    return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()


def score_from_eps(eps, sigma):
    """grad_x log q_lam(x) = -E[eps | x_lam = x] / sigma (Tweedie; sigma = sqrt(1 - alpha_bar))."""
    return -eps / sigma


def probability_flow_velocity(eps_at):
    """The probability-flow ODE of the diffusion in lam, dx/dlam = v(x, lam) with
    v = (sigma^2 / 2) x - (sigma / 2) eps(x, lam) = (sigma^2 / 2) (x + grad log q_lam), since
    grad log q_lam = -eps / sigma; from d log a / dlam = sigma^2 / 2 and d log(sigma / a) / dlam = -1/2
    (README, chapter 11).
    eps_at(x, lam) is the noise estimate, lam one number; returns v as a function (x, lam)."""
    def velocity(x, lam):
        _, sigma = signal_and_noise(float(lam))
        sigma = float(sigma)
        return 0.5 * sigma ** 2 * x - 0.5 * sigma * eps_at(x, lam)

    return velocity


def exact_roll_flow(n_curve=roll.CURVE_POINTS):
    """The roll's own probability-flow ODE, no network: (x, lam) -> (v, div v), from brute-force
    Bayes over the curve (roll.x0_posterior_moments at a one-step schedule with alpha_bar =
    sigmoid(lam)). With m = E[x0 | x] and C = Cov(x0 | x), eps = (x - a m) / sigma and
    dm/dx = (a / sigma^2) C (the derivative of a posterior mean under Gaussian noise), so
    div v = (sigma^2 / 2) D - (1/2) (D - (a^2 / sigma^2) tr C): no autograd needed."""
    def flow(x, lam):
        a, sigma = (float(value) for value in signal_and_noise(float(lam)))
        at_lam = common.Schedule(beta=torch.zeros(1, dtype=torch.float64),
                                 alpha_bar=torch.tensor([a ** 2], dtype=torch.float64))
        mean, cov = roll.x0_posterior_moments(x, 0, at_lam, n_curve)
        eps = (x - a * mean) / sigma
        d = x.shape[1]
        trace_cov = cov.diagonal(dim1=-2, dim2=-1).sum(-1)
        return (0.5 * sigma ** 2 * x - 0.5 * sigma * eps,
                0.5 * sigma ** 2 * d - 0.5 * (d - a ** 2 / sigma ** 2 * trace_cov))

    return flow


# --- the divergence: exact 2 x 2 trace, or Hutchinson's estimate ------------------------------

def velocity_and_divergence(velocity, x, time, probe=None):
    """v(x, time) and div v = tr(dv/dx) per point. With probe None, the exact trace: one
    backward pass per dimension, each giving the diagonal entry dv_i / dx_i of every point at
    once (the points do not interact). With a probe e (n, D), E[e e^T] = I, Hutchinson's
    estimate e^T (dv/dx) e from a single vector-Jacobian product."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        v = velocity(x, time)
        if probe is not None:
            (vjp,) = torch.autograd.grad(v, x, grad_outputs=probe)
            return v.detach(), (vjp * probe).sum(1)
        diagonal = [torch.autograd.grad(v[:, i].sum(), x, retain_graph=i < x.shape[1] - 1)[0][:, i]
                    for i in range(x.shape[1])]
    return v.detach(), torch.stack(diagonal, 1).sum(1)


def rademacher(shape, generator=None):
    """Probes of random signs, +-1: E[e e^T] = I, and the least variance for Hutchinson's trace."""
    return 2.0 * torch.randint(0, 2, shape, generator=generator, dtype=torch.float64) - 1.0


def standard_normal_log_density(x):
    """log N(x; 0, I) per row."""
    return -0.5 * (x ** 2).sum(1) - 0.5 * x.shape[1] * math.log(2.0 * math.pi)


def ode_log_likelihood(velocity, x0, start, end, scale=1.0, log_prior=standard_normal_log_density,
                       probe=None, rtol=RTOL, atol=ATOL, with_divergence=False):
    """log p(x0) (nats, float64, per row) under the flow dx/dtime = velocity(x, time) that carries
    the prior at time `end` to time `start` (instantaneous change of variables):
      log p_start(x) = log_prior(x_end) + integral from start to end of div v dtime,
    along the path from x(start) = scale * x0, and log p(x0) = log p_start(scale * x0) + D log(scale)
    for the density of x(start) / scale, the data's own scale. Solved for all points at once by
    Dormand-Prince 5(4) with tolerances rtol, atol; probe (n, D) switches to Hutchinson's trace;
    with_divergence says that velocity(x, time) returns (v, div v) itself (exact_roll_flow).
    Returns (log p, number of velocity evaluations)."""
    x0 = x0.detach().cpu().double()
    n, d = x0.shape

    def rhs(time, state):
        x = torch.from_numpy(state[:n * d].reshape(n, d))
        v, div = velocity(x, time) if with_divergence else velocity_and_divergence(velocity, x, time, probe)
        return np.concatenate([v.numpy().ravel(), div.numpy()])

    state = np.concatenate([(scale * x0).numpy().ravel(), np.zeros(n)])
    solution = solve_ivp(rhs, (start, end), state, method="RK45", rtol=rtol, atol=atol)
    if not solution.success:
        raise RuntimeError(f"the ODE solver failed: {solution.message}")
    final = torch.from_numpy(solution.y[:, -1])
    x_end, integral = final[:n * d].reshape(n, d), final[n * d:]
    return log_prior(x_end) + integral + d * math.log(scale), solution.nfev


@torch.no_grad()
def ode_paths(velocity, x_start, start, end, n_times=60, rtol=RTOL, atol=ATOL):
    """The solution of dx/dtime = velocity(x, time) from x(start) = x_start, at n_times times
    evenly spaced from start to end: a tensor (n_times, n, D), float64."""
    x_start = x_start.detach().cpu().double()
    shape = x_start.shape

    def rhs(time, state):
        return velocity(torch.from_numpy(state.reshape(shape)), time).numpy().ravel()

    times = np.linspace(start, end, n_times)
    solution = solve_ivp(rhs, (start, end), x_start.numpy().ravel(), method="RK45", t_eval=times,
                         rtol=rtol, atol=atol)
    if not solution.success:
        raise RuntimeError(f"the ODE solver failed: {solution.message}")
    return torch.from_numpy(solution.y.T.copy()).reshape(n_times, *shape)


# --- flow matching: the straight path (Lipman et al. 2023; Liu et al. 2023) --------------------

def flow_path(x0, eps, s):
    """x_s = (1 - s) x0 + s eps, s in [0, 1] (a number or a column (n, 1)): data at 0, noise at 1."""
    return (1.0 - s) * x0 + s * eps


def flow_target(x0, eps):
    """The path's velocity, d x_s / ds = eps - x0: what the network is trained to predict."""
    return eps - x0


def x0_from_velocity(x_s, v, s):
    """x0 = x_s - s v: from x_s = (1 - s) x0 + s eps and v = eps - x0."""
    return x_s - s * v


def eps_from_velocity(x_s, v, s):
    """eps = x_s + (1 - s) v."""
    return x_s + (1.0 - s) * v


def velocity_from_eps(x_s, eps, s):
    """v = (eps - x_s) / (1 - s), the inverse of eps_from_velocity (s < 1)."""
    return (eps - x_s) / (1.0 - s)


def flow_log_snr(s):
    """The straight path's log SNR, log((1 - s)^2 / s^2) = 2 log((1 - s) / s)."""
    s = torch.as_tensor(s, dtype=torch.float64)
    return 2.0 * (torch.log1p(-s) - torch.log(s))


def flow_time_of_log_snr(lam):
    """The s at which the straight path has log SNR lam: s = sigmoid(-lam / 2)."""
    return torch.sigmoid(-0.5 * torch.as_tensor(lam, dtype=torch.float64))


def diffusion_point_of_flow(x_s, s):
    """The straight path is a diffusion with a = 1 - s and sigma = s. Divided by
    sqrt(a^2 + sigma^2), x_s is the variance-preserving diffusion's point x_lam at the same log SNR
    lam = flow_log_snr(s), made of the same x0 and eps: returns (x_lam, lam). So an eps-network
    of the diffusion gives the flow's velocity, velocity_from_eps(x_s, eps(x_lam, lam), s)."""
    return x_s / ((1.0 - s) ** 2 + s ** 2) ** 0.5, flow_log_snr(s)


def flow_time_grid(calls, power=2.0):
    """The times a sampler visits, from s = 1 (noise) down to 0: s_k = (k / N)^power, k = N..0.
    Power 1 is the uniform grid; power 2 puts the steps near the data, where the roll's detail is."""
    return torch.linspace(1.0, 0.0, calls + 1, dtype=torch.float64) ** power


def flow_heun_steps(calls):
    """How Heun's method spends a budget of network calls: Heun's steps cost two calls, and the
    step that ends at s = 0 is Euler's, since the velocity at s = 0 is no slope of the path
    (there x_s = x0 and E[eps - x0 | x0] = -x0, while near 0 the flow's velocity is eps - x0;
    Karras et al. 2022 end the same way). An even budget ends with two Euler steps.
    Returns (steps, heun_steps): the first heun_steps of the steps are Heun's."""
    heun_steps = (calls - 1) // 2
    return heun_steps + (calls - 2 * heun_steps), heun_steps


@torch.no_grad()
def flow_sample(velocity_at, x1, grid, heun_steps=0):
    """Solve dx/ds = velocity_at(x, s) from x(1) = x1 (noise) along the decreasing grid of s: the
    first heun_steps steps by Heun's method (Euler's step, the velocity again at its end, a step
    with the average of the two slopes), the rest by Euler's. Returns the samples at grid[-1]."""
    x = x1
    for k, (s, s_next) in enumerate(zip(grid[:-1].tolist(), grid[1:].tolist())):
        v = velocity_at(x, s)
        x_euler = x + (s_next - s) * v
        x = x + (s_next - s) * 0.5 * (v + velocity_at(x_euler, s_next)) if k < heun_steps else x_euler
    return x
