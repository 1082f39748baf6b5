"""The Swiss roll: the data, its exact constants, the best any model can do on it, and how to
score samples against the data's own law. README sections 1 (the data), 3 (the ceilings and the
Bayes-optimal reverse process) and 4 (scoring samples).

The roll is a curve with no width: angle a = 1.5 pi (1 + 2u), u ~ U(0, 1), point (a cos a, a sin a),
each coordinate standardised with exact constants. Since the law of the data is known exactly,
samples are scored by what is wrong with them: their distance to the curve, and where along the
curve they fall (the curve parameter u of the nearest curve point, uniform for the data).
"""
import math

import numpy as np
import torch

import common

# Exact mean and standard deviation of the roll's two coordinates (README, chapter 1).
# The means are closed-form integrals over the angle: 2 and 2 / (3 pi); the standard deviations
# come from numerical quadrature. tests/test_data.py recomputes them by Simpson's rule.
ROLL_MEAN = (2.0, 2.0 / (3.0 * math.pi))
ROLL_STD = (6.623014529298816, 6.9512077956377105)
ROLL_ANGLE = (1.5 * math.pi, 4.5 * math.pi)   # the roll's angle a runs over this interval
HELDOUT_SEED = 150303585                       # the held-out set's own seed (the arXiv number)
N_HELDOUT = 20_000                             # held-out points for K (standard error ~0.014 bits)

PAPER_K_BITS = 2.35                 # the paper's Table 1, Swiss roll: K and K - L_null, bits
PAPER_K_MINUS_NULL_BITS = 6.45

OFF_CURVE = 0.05        # a sample farther than this from the curve is "off the curve"
CURVE_POINTS = 20_000   # the grid of curve points for nearest-point search and Bayes' rule
BAND_DRAWS = 400        # draws of real roll samples behind the 5-95% band of W1(u)


# --- the data ------------------------------------------------------------------------------------

def point_at(u):
    """The standardised roll point at curve parameter u in [0, 1] (a float64 tensor):
    angle a = 1.5 pi (1 + 2u), point ((a cos a, a sin a) - ROLL_MEAN) / ROLL_STD."""
    a = ROLL_ANGLE[0] + (ROLL_ANGLE[1] - ROLL_ANGLE[0]) * u
    return torch.stack([(a * torch.cos(a) - ROLL_MEAN[0]) / ROLL_STD[0],
                        (a * torch.sin(a) - ROLL_MEAN[1]) / ROLL_STD[1]], dim=-1)


def swiss_roll(n, generator=None):
    """n points of the noiseless Swiss roll, u ~ U(0, 1) (float32)."""
    return point_at(torch.rand(n, generator=generator, dtype=torch.float64)).float()


def heldout_roll(n=N_HELDOUT):
    """The held-out set: n roll points drawn from their own seed, never seen in training."""
    return swiss_roll(n, torch.Generator().manual_seed(HELDOUT_SEED))


def curve_grid(m=CURVE_POINTS):
    """m curve points at equal steps of u (midpoints), float64: (u, points)."""
    u = (torch.arange(m, dtype=torch.float64) + 0.5) / m
    return u, point_at(u)


def half_range():
    """The larger half-range of the roll's two standardised coordinates, (max - min) / 2 over the
    curve: no x0 is farther than this from the middle, so Var(x0 | x_t) per coordinate is at most
    its square (Analytic-DPM's upper clip, README chapter 5)."""
    _, curve = curve_grid()
    return ((curve.max(0).values - curve.min(0).values) / 2).max().item()


# --- the best possible (README, chapter 3) -------------------------------------------------------

def log_likelihood_ceiling(beta_1=common.BETA_1, n_angles=100_000):
    """No model's log-likelihood of held-out points passes this (nats): the roll blurred across by
    the fixed last step's Gaussian of variance beta_1, E[log p_arc(x0)] - 1/2 log(2 pi beta_1).
    p_arc(a) = p(a) / |d x0 / d a|, p(a) = 1 / (3 pi); the expectation over a is a midpoint rule."""
    a = ROLL_ANGLE[0] + (ROLL_ANGLE[1] - ROLL_ANGLE[0]) * (torch.arange(n_angles, dtype=torch.float64) + 0.5) / n_angles
    speed = torch.hypot((torch.cos(a) - a * torch.sin(a)) / ROLL_STD[0],
                        (torch.sin(a) + a * torch.cos(a)) / ROLL_STD[1])
    log_p_arc = -math.log(ROLL_ANGLE[1] - ROLL_ANGLE[0]) - torch.log(speed)
    return log_p_arc.mean().item() - 0.5 * math.log(2.0 * math.pi * beta_1)


def K_ceiling(beta_1=common.BETA_1):
    """The best K itself can reach (nats): log_likelihood_ceiling(beta_1) - (d - 1) / 2. With
    p(x0 | x1) fixed to a Gaussian of variance beta_1, K pays E|x0 - sqrt(1 - beta_1) x1|^2 / (2 beta_1)
    = 1/2 nat per direction across the curve that the log-likelihood does not: the best K is
    -H(X_1) = E[log p_arc] - 1/2 log(2 pi e beta_1) in the limit of many small steps."""
    return log_likelihood_ceiling(beta_1) - 0.5 * (common.D - 1)


@torch.no_grad()
def x0_posterior_moments(x_t, t, schedule, n_curve=CURVE_POINTS, chunk=25):
    """E[x0 | x_t] (n, 2) and Cov(x0 | x_t) (n, 2, 2) for the roll, by brute-force Bayes over
    n_curve curve points at equal steps of u (so equal prior weights), each weighted by its
    likelihood q(x_t | x0) = N(sqrt(alpha_bar_t) x0, (1 - alpha_bar_t) I); float64 on the CPU,
    for one step t shared by all points."""
    _, curve = curve_grid(n_curve)
    outer = (curve.unsqueeze(-1) * curve.unsqueeze(-2)).reshape(n_curve, -1)  # x0 x0^T, flattened
    alpha_bar_t = float(schedule.alpha_bar[t])
    mean_x0, cov_x0 = [], []
    # Small chunks keep each (chunk, n_curve) table at 4 MB, which the allocator reuses: chunks
    # of 500 (80 MB) went back to the system each time and page faults doubled the cost.
    for part in x_t.cpu().double().split(chunk):
        weight = torch.softmax(-torch.cdist(part, math.sqrt(alpha_bar_t) * curve) ** 2
                               / (2.0 * (1.0 - alpha_bar_t)), dim=1)
        mean = weight @ curve
        second = (weight @ outer).reshape(-1, common.D, common.D)   # E[x0 x0^T | x_t]
        mean_x0.append(mean)
        cov_x0.append(second - mean.unsqueeze(-1) * mean.unsqueeze(-2))
    return torch.cat(mean_x0), torch.cat(cov_x0)


def bayes_optimal_reverse(schedule, covariance="diagonal", n_curve=CURVE_POINTS):
    """The Bayes-optimal Gaussian reverse process for the roll: p(x_{t-1} | x_t) = N(mu_tilde(x_t, E[x0 | x_t]),
    sigma_tilde^2 I + c_t^2 Cov(x0 | x_t)), the true reverse step's mean and covariance (README,
    chapter 2), with x0's moments from brute-force Bayes (x0_posterior_moments) and Cov(x0 | x_t)
    kept whole ("full") or cut to its diagonal ("diagonal", the paper's class): what no network of
    the class can beat, far too slow to sample with. A function (x_t, t) -> (mean, covariance) for
    one t shared by all points."""
    if covariance not in ("diagonal", "full"):
        raise ValueError(f"covariance must be 'diagonal' or 'full', got {covariance!r}")

    def reverse(x_t, t):
        t = int(torch.as_tensor(t).flatten()[0])
        if t == 1:
            return common.q_step(x_t, 1, schedule)
        mean_x0, cov_x0 = x0_posterior_moments(x_t, t, schedule, n_curve)
        if covariance == "diagonal":
            cov_x0 = torch.diag_embed(torch.diagonal(cov_x0, dim1=-2, dim2=-1).clamp_min(0.0))
        mean, cov = common.reverse_from_x0_moments(mean_x0, cov_x0, x_t.cpu().double(), t, schedule)
        return mean.to(x_t), cov.to(x_t)

    return reverse


def bayes_optimal_eps(schedule, n_curve=CURVE_POINTS):
    """The best possible eps-network, E[eps | x_t] = (x_t - sqrt(alpha_bar_t) E[x0 | x_t]) / sqrt(1 - alpha_bar_t),
    as a network (x_t, t) -> (eps, None) for one t >= 2 shared by all points, E[x0 | x_t] by
    brute-force Bayes (x0_posterior_moments). It shows what a sampler does when the network makes
    no error (README, chapter 6)."""
    def network(x_t, t):
        t = int(torch.as_tensor(t).flatten()[0])
        x0_mean = x0_posterior_moments(x_t, t, schedule, n_curve)[0].to(x_t)
        alpha_bar_t = common.at(schedule.alpha_bar, t)
        return (x_t - torch.sqrt(alpha_bar_t).to(x_t) * x0_mean) / torch.sqrt(1.0 - alpha_bar_t).to(x_t), None

    return network


def heldout_kl(reverse, schedule, n=N_HELDOUT, seed=0, device="cpu"):
    """Every KL term of K (nats, common.kl_all_steps's (n, T + 1) table) on the first n held-out
    points, x_t drawn from a generator seeded with `seed`. The same n and seed give every reverse
    process the same points and the same noise, so differences between two of them are paired."""
    x0 = heldout_roll(n).to(device)
    return common.kl_all_steps(reverse, x0, schedule, torch.Generator().manual_seed(seed))


def heldout_K(reverse, schedule, n=N_HELDOUT, seed=0, device="cpu"):
    """K per held-out point (nats, float64): the first n held-out points, every t summed exactly
    (heldout_kl: the same n and seed pair the points and the noise across reverse processes)."""
    return common.bound_K(heldout_kl(reverse, schedule, n, seed, device), schedule)


def noised_roll(n, t, schedule, generator=None, device="cpu"):
    """n fresh roll points x0, noise eps ~ N(0, I) and x_t = common.x_t_from_eps(x0, eps, t): the
    triples DDPM's loss and statistics are made of (README, chapter 5)."""
    x0 = swiss_roll(n, generator).to(device)
    eps = torch.randn(x0.shape, generator=generator).to(device)
    return x0, eps, common.x_t_from_eps(x0, eps, t, schedule)


@torch.no_grad()
def eps_moments(network, schedule, n, generator=None, device="cpu"):
    """What the variances of chapter 5 need to know of an eps-network, estimated per step t on n
    fresh roll points (noised_roll): E||eps_theta(x_t, t)||^2 (Analytic-DPM's statistic, which
    needs no x0) and E||x0 - x0_hat||^2 (the mean's own error). `network(x_t, t)` returns
    (eps, anything). Two float64 tables indexed by t, NaN at t = 0 and 1 (no network there)."""
    mean_sq_eps = torch.full((schedule.T + 1,), math.nan, dtype=torch.float64)
    mean_sq_x0_error = mean_sq_eps.clone()
    for t in range(2, schedule.T + 1):
        x0, _, x_t = noised_roll(n, t, schedule, generator, device)
        eps_theta, _ = network(x_t, torch.full((n,), t, device=device))
        mean_sq_eps[t] = eps_theta.cpu().double().square().sum(1).mean().item()
        x0_error = x0 - common.x0_from_eps(x_t, eps_theta, t, schedule)
        mean_sq_x0_error[t] = x0_error.cpu().double().square().sum(1).mean().item()
    return mean_sq_eps, mean_sq_x0_error


def mean_and_se_bits(values_nats):
    """The mean of per-point values and its standard error, both in bits."""
    values = common.nats_to_bits(values_nats.cpu().double())
    return values.mean().item(), values.std().item() / math.sqrt(len(values))


# --- scoring samples against the data's law (README, chapter 4) -----------------------------------

def nearest_on_curve(x, n_curve=CURVE_POINTS, chunk=2000):
    """For each point, the distance to the nearest of n_curve curve points and that point's u."""
    u_grid, curve = curve_grid(n_curve)
    distance, u = [], []
    for part in torch.as_tensor(x).cpu().double().split(chunk):
        d, index = torch.cdist(part, curve).min(dim=1)
        distance.append(d)
        u.append(u_grid[index])
    return torch.cat(distance), torch.cat(u)


def ks_uniform(u):
    """Kolmogorov-Smirnov test of u against U(0, 1): (statistic D_n, p-value).
    D_n = sup |F_n(u) - u|; p from the Kolmogorov distribution, P(D > d) =
    2 sum_k (-1)^(k-1) exp(-2 k^2 lambda^2), with Stephens' small-sample correction
    lambda = (sqrt(n) + 0.12 + 0.11 / sqrt(n)) d."""
    u = np.sort(np.asarray(u, dtype=np.float64))
    n = len(u)
    i = np.arange(1, n + 1)
    statistic = max(np.max(i / n - u), np.max(u - (i - 1) / n))
    lam = (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * statistic
    k = np.arange(1, 101)
    p = 2.0 * np.sum((-1.0) ** (k - 1) * np.exp(-2.0 * k ** 2 * lam ** 2))
    return float(statistic), float(min(max(p, 0.0), 1.0))


def w1_uniform(u):
    """W1 between the empirical law of u and U(0, 1): the integral of |F_n(s) - s| over [0, 1],
    exact for a step function (each piece between sorted values integrated in closed form)."""
    u = np.sort(np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0))
    n = len(u)
    edges = np.concatenate([[0.0], u, [1.0]])
    level = np.arange(n + 1) / n             # F_n on [edges[k], edges[k+1])
    lo, hi = edges[:-1], edges[1:]

    def integral(a, b, c):                  # integral of |c - s| over [a, b]
        below = np.clip(c, a, b)
        return ((below - a) * c - (below ** 2 - a ** 2) / 2) + ((b ** 2 - below ** 2) / 2 - (b - below) * c)

    return float(np.sum(integral(lo, hi, level)))


def w1_band(n, draws=BAND_DRAWS, seed=0):
    """The 5-95% range of W1(u) for n samples of the roll itself: for the data u is exactly U(0, 1),
    so this is the spread that chance alone gives at this size."""
    rng = np.random.default_rng(seed)
    values = [w1_uniform(rng.random(n)) for _ in range(draws)]
    return float(np.quantile(values, 0.05)), float(np.quantile(values, 0.95))


def score_samples(x):
    """What is wrong with samples x (n, 2): a dict with the median distance to the curve, the
    share off the curve (farther than OFF_CURVE), the KS statistic and p-value of their position
    u along the curve against the data's uniform law, W1(u), and the band W1(u) has for real roll
    samples of the same size."""
    distance, u = nearest_on_curve(x)
    ks, p = ks_uniform(u.numpy())
    return {"n": len(u), "median_distance": distance.median().item(),
            "off_curve": (distance > OFF_CURVE).double().mean().item(),
            "ks": ks, "ks_p": p, "w1_u": w1_uniform(u.numpy()), "w1_band": w1_band(len(u))}


def describe_scores(scores):
    """One line for a score_samples dict, e.g. `off-curve 0.40%  along-curve KS p = 0.03 ...`."""
    lo, hi = scores["w1_band"]
    return (f"off-curve {100 * scores['off_curve']:.2f}%  along-curve KS p = {scores['ks_p']:.2g}  "
            f"W1(u) = {scores['w1_u']:.4f} (real roll: {lo:.4f}-{hi:.4f})  "
            f"median distance {scores['median_distance']:.4f}")
