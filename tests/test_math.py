"""The Gaussian algebra of common.py, each formula checked by a different route than its own:
a simulated chain, Bayes' rule in precision form, regression on samples, Monte Carlo, numeric
integration, or a plain Python loop. Statistical checks allow N_SE standard errors; seeds are fixed.
"""
import math

import numpy as np
import pytest
import torch

import common
import linalg
import cli
import roll

N_SE = 5.0  # statistical tolerance, in standard errors

SCHEDULE = common.make_schedule()
BETA, ALPHA_BAR = SCHEDULE
T = common.T


def gen(seed):
    return torch.Generator().manual_seed(seed)


def alpha_bar_by_loop(beta):
    """prod_{s<=t} (1 - beta_s) with Python floats: the independent route to alpha_bar."""
    out, running = [1.0], 1.0
    for b in [float(b) for b in beta[1:]]:
        running *= 1.0 - b
        out.append(running)
    return out


ABAR = alpha_bar_by_loop(BETA)   # Python floats, float64


def diagonal(cov):
    """The per-coordinate variances of covariances (n, D, D): shape (n, D)."""
    return torch.diagonal(cov, dim1=-2, dim2=-1)


def assert_isotropic(cov, label):
    """cov is var * I: its off-diagonal entries are zero and its diagonal entries equal."""
    off = (cov[..., 0, 1].abs().max().item(), cov[..., 1, 0].abs().max().item())
    assert max(off) == 0.0, f"{label}: off-diagonal covariance {off}, expected 0"
    assert torch.equal(cov[..., 0, 0], cov[..., 1, 1]), f"{label}: unequal variances along the two axes"


def worst_gap(rows):
    """rows of (label, got, expected, se): the one with the largest |got - expected| / se."""
    return max(rows, key=lambda r: abs(r[1] - r[2]) / r[3])


def gap_message(row):
    label, got, expected, se = row
    return (f"{label}: got {got:.6g}, expected {expected:.6g}, gap {abs(got - expected) / se:.2f} SE "
            f"(SE {se:.3g}, tolerance {N_SE} SE)")


# --- forward process --------------------------------------------------------------------

def test_closed_form_matches_chain():
    """x_t reached by t calls of q_step has the moments q_closed_form predicts, for every t.

    Independent routes: the chain only uses q_step; the expected moments use q_closed_form for
    the mean and the variance (law of total variance over the roll's x0) and the formula
    Cov[x_t, x0] = sqrt(alpha_bar_t) Var[x0] with alpha_bar_t from a Python loop. Standard errors
    are conditional on the fixed x0 sample, so even t = 1 (noise std 3e-3) is tested sharply."""
    n = 20_000
    g = gen(11)
    x0 = roll.swiss_roll(n, g).double()
    x = x0
    rows = []
    for t in range(1, T + 1):
        x = common.sample_gaussian(*common.q_step(x, t, SCHEDULE), g)
        m, cov = common.q_closed_form(x0, t, SCHEDULE)   # per point mean and covariance
        assert_isotropic(cov, f"q_closed_form at t={t}")
        v = diagonal(cov)
        # mean: E[mean of x_t] = mean of m; its variance given x0 is sum(v) / n^2
        se_mean = (v.sum(0).sqrt() / n)
        # variance: x_t = m + r, Var_s(x_t) = Var_s(m) + 2 Cov_s(m, r) + Var_s(r)
        mc = m - m.mean(0)
        expected_var = (mc ** 2).mean(0) + v.mean(0)
        se_var = (4 * (mc ** 2 * v).sum(0) + 2 * (v ** 2).sum(0)).sqrt() / n
        # covariance with x0: sqrt(alpha_bar_t) Var_s(x0)
        x0c = x0 - x0.mean(0)
        expected_cov = math.sqrt(ABAR[t]) * (x0c ** 2).mean(0)
        se_cov = ((x0c ** 2).sum(0) * (1.0 - ABAR[t])).sqrt() / n
        got_mean, got_var = x.mean(0), ((x - x.mean(0)) ** 2).mean(0)
        got_cov = ((x - x.mean(0)) * x0c).mean(0)
        for i in range(common.D):
            rows += [(f"t={t} coord {i} mean", got_mean[i].item(), m.mean(0)[i].item(), se_mean[i].item()),
                     (f"t={t} coord {i} variance", got_var[i].item(), expected_var[i].item(), se_var[i].item()),
                     (f"t={t} coord {i} cov with x0", got_cov[i].item(), expected_cov[i].item(), se_cov[i].item())]
    worst = worst_gap(rows)
    assert abs(worst[1] - worst[2]) < N_SE * worst[3], "chain vs closed form, worst of all t: " + gap_message(worst)


# --- the forward posterior q(x_{t-1} | x_t, x0) ------------------------------------------

@pytest.mark.parametrize("t", [2, 3, 10, 25, T])
def test_q_posterior_is_product_of_gaussians(t):
    """q_posterior equals Bayes' rule done in precision form, to float64 precision.

    Independent route: prior q(x_{t-1} | x0) = N(sqrt(abar_{t-1}) x0, 1 - abar_{t-1}) times the
    likelihood q(x_t | x_{t-1}), which as a function of x_{t-1} is a Gaussian of precision
    alpha_t / beta_t centred at x_t / sqrt(alpha_t): precisions add, means are precision-weighted.
    No coefficient of the closed form (DDPM eq. 7) appears here."""
    g = gen(t)
    x0 = roll.swiss_roll(64, g).double()
    x_t = torch.randn(64, 2, generator=g, dtype=torch.float64) * 1.3
    beta_t, alpha_t = float(BETA[t]), 1.0 - float(BETA[t])
    prior_mean, prior_var = math.sqrt(ABAR[t - 1]) * x0, 1.0 - ABAR[t - 1]
    precision = 1.0 / prior_var + alpha_t / beta_t
    want_var = 1.0 / precision
    want_mean = want_var * (prior_mean / prior_var + alpha_t / beta_t * (x_t / math.sqrt(alpha_t)))
    for steps in (t, torch.full((64,), t)):   # a single int t and a tensor of t's
        mean, cov = common.q_posterior(x0, x_t, steps, SCHEDULE)
        assert_isotropic(cov, f"q_posterior at t={t}")
        var = diagonal(cov)
        mean_err = ((mean - want_mean).abs() / want_mean.abs().clamp_min(1e-3)).max().item()
        var_err = ((var - want_var).abs() / want_var).max().item()
        assert mean_err < 1e-9, f"t={t} ({type(steps).__name__}): posterior mean relative error {mean_err:.3g} > 1e-9"
        assert var_err < 1e-9, (f"t={t}: posterior variance got {var.flatten()[0].item():.12g}, "
                                f"expected {want_var:.12g} (relative error {var_err:.3g} > 1e-9)")


def test_q_posterior_at_t1_is_point_mass_at_x0():
    """At t = 1, x_{t-1} = x0 is known: variance 0 and mean x0 (abar_0 = 1 convention)."""
    x0 = roll.swiss_roll(16, gen(2)).double()
    x1 = x0 + 0.01
    mean, cov = common.q_posterior(x0, x1, 1, SCHEDULE)
    var = cov
    assert var.abs().max().item() < 1e-12, f"variance at t=1: got {var.abs().max().item():.3g}, expected 0"
    err = (mean - x0).abs().max().item()
    assert err < 1e-9, f"mean at t=1: max |mean - x0| = {err:.3g}, expected 0 (tolerance 1e-9)"


@pytest.mark.parametrize("t", [2, 10, 25, T])
def test_q_posterior_matches_monte_carlo_regression(t):
    """q_posterior is the conditional of x_{t-1} given x_t (x0 fixed) seen in simulated pairs.

    Independent route: x_{t-1} from t-1 calls of q_step from one roll point x0, x_t from one more;
    the pair is jointly Gaussian, so the least-squares regression of x_{t-1} on x_t recovers the
    conditional's slope, its mean, and (from the residuals) its variance."""
    n = 200_000
    g = gen(100 + t)
    x0 = roll.swiss_roll(1, g).double()
    x = x0.expand(n, 2)
    for s in range(1, t):
        x = common.sample_gaussian(*common.q_step(x, s, SCHEDULE), g)
    x_prev = x
    x_t = common.sample_gaussian(*common.q_step(x_prev, t, SCHEDULE), g)

    # What q_posterior says: mean = intercept + slope * x_t (per coordinate), variance var_q.
    probe = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    means, cov_q = common.q_posterior(x0.expand(2, 2), probe, t, SCHEDULE)
    intercept, slope, var_q = means[0], means[1] - means[0], diagonal(cov_q)[0]

    rows = []
    for i in range(2):
        xp, xt = x_prev[:, i], x_t[:, i]
        xpc, xtc = xp - xp.mean(), xt - xt.mean()
        var_t = (xtc ** 2).mean()
        slope_hat = (xpc * xtc).mean() / var_t
        resid_var = ((xpc - slope_hat * xtc) ** 2).mean()
        rows += [(f"t={t} coord {i} slope", slope_hat.item(), slope[i].item(),
                  (resid_var / (n * var_t)).sqrt().item()),
                 (f"t={t} coord {i} mean at mean x_t", xp.mean().item(),
                  (intercept[i] + slope[i] * xt.mean()).item(), (resid_var / n).sqrt().item()),
                 (f"t={t} coord {i} residual variance", resid_var.item(), var_q[i].item(),
                  var_q[i].item() * math.sqrt(2.0 / n))]
    worst = worst_gap(rows)
    assert abs(worst[1] - worst[2]) < N_SE * worst[3], gap_message(worst)


# --- Gaussian helpers ---------------------------------------------------------------------

def log_normal(x, mean, var):
    """log N(x; mean, diag var), written out from the density."""
    return (-0.5 * torch.log(2 * math.pi * var) - (x - mean) ** 2 / (2 * var)).sum(-1)


def log_normal_full(x, mean, cov):
    """log N(x; mean, cov) for one full covariance, through torch.linalg (not common's 2x2 algebra)."""
    diff = x - mean
    quadratic = (diff @ torch.linalg.inv(cov) * diff).sum(-1)
    return -0.5 * (quadratic + torch.logdet(cov) + x.shape[-1] * math.log(2 * math.pi))


def test_reverse_from_x0_moments_matches_the_sampled_mixture():
    """Averaging q(x_{t-1} | x_t, x0) over an uncertain x0 gives the mean and the full covariance
    that reverse_from_x0_moments claims. Independent route: draw x0 from a lopsided three-point
    distribution (given x_t) whose coordinates are correlated, then x_{t-1} from the posterior
    of each draw, and take the sample mean and covariance of x_{t-1}; tolerance 5 standard errors."""
    g = torch.Generator().manual_seed(11)
    t, n = 30, 400_000
    x_t = torch.tensor([[0.3, -0.7]], dtype=torch.float64)
    support = torch.tensor([[1.0, 0.5], [-0.8, 0.2], [0.1, -1.5]], dtype=torch.float64)
    weights = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    pick = torch.multinomial(weights, n, replacement=True, generator=g)
    x0 = support[pick]
    mean_q, cov_q = common.q_posterior(x0, x_t.expand(n, 2), t, SCHEDULE)
    x_prev = mean_q + diagonal(cov_q).sqrt() * torch.randn(n, 2, generator=g, dtype=torch.float64)
    x0_mean = (weights[:, None] * support).sum(0, keepdim=True)
    centred = support - x0_mean
    x0_cov = (weights[:, None, None] * centred[:, :, None] * centred[:, None, :]).sum(0, keepdim=True)
    mean, cov = common.reverse_from_x0_moments(x0_mean, x0_cov, x_t, t, SCHEDULE)
    sample_mean = x_prev.mean(0)
    sample_cov = torch.cov(x_prev.T)
    se_mean = (torch.diagonal(sample_cov) / n).sqrt()
    # SE of a sample covariance entry: sqrt((var_i var_j + cov_ij^2) / n), widened twice: not Gaussian
    var = torch.diagonal(sample_cov)
    se_cov = 2 * ((var[:, None] * var[None, :] + sample_cov ** 2) / n).sqrt()
    assert ((sample_mean - mean[0]).abs() < 5 * se_mean).all(), (
        f"mixture mean {sample_mean.tolist()}, formula {mean[0].tolist()}, 5 SE = {(5 * se_mean).tolist()}")
    assert ((sample_cov - cov[0]).abs() < 5 * se_cov).all(), (
        f"mixture covariance {sample_cov.tolist()}, formula {cov[0].tolist()}, 5 SE = {(5 * se_cov).tolist()}")
    assert abs(cov[0, 0, 1].item()) > 10 * se_cov[0, 1].item(), "the test case should have correlated coordinates"


def true_eps_network(x0, schedule, factor):
    """A stand-in for the network that knows x0: it returns the noise that turned x0 into x_t,
    eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t), with abar_t from a Python loop, and the
    given factor L for every point."""
    abar = torch.tensor(alpha_bar_by_loop(schedule.beta), dtype=torch.float64)

    def network(x_t, t):
        a = abar[t].unsqueeze(-1)
        return (x_t - a.sqrt() * x0) / (1.0 - a).sqrt(), factor.expand(len(x_t), 2, 2)
    return network


def test_p_reverse_with_the_true_noise_and_no_doubt_is_the_posterior_at_every_step():
    """For every t = 2..T: a network that returns the true eps (so x0_hat = x0) and a vanishing
    factor L (no doubt about x0) must make p(x_{t-1} | x_t) the posterior q(x_{t-1} | x_t, x0),
    mean and covariance, to float64 precision. Catches a wrong x0_hat, wrong coefficients or a
    step read from the wrong row of the tables."""
    g = gen(21)
    x0 = roll.swiss_roll(32, g).double()
    network = true_eps_network(x0, SCHEDULE, torch.zeros(2, 2, dtype=torch.float64))
    for t in range(2, T + 1):
        steps = torch.full((32,), t)
        x_t = common.sample_gaussian(*common.q_closed_form(x0, steps, SCHEDULE), g)
        mean, cov = common.p_reverse(network, x_t, steps, SCHEDULE)
        want_mean, want_cov = common.q_posterior(x0, x_t, t, SCHEDULE)
        mean_gap = (mean - want_mean).abs().max().item()
        cov_gap = ((cov - want_cov).abs().max() / want_cov[0, 0, 0]).item()
        assert mean_gap < 1e-9 and cov_gap < 1e-9, (
            f"t={t}: p_reverse with the true eps and L = 0 differs from the posterior: mean by {mean_gap:.3g}, "
            f"covariance by {cov_gap:.3g} of the posterior variance")


@pytest.mark.parametrize("t", [2, 20, T])
def test_p_reverse_adds_the_networks_doubt_about_x0_scaled_by_c_t_squared(t):
    """With a factor L, the reverse covariance is sigma_tilde_t^2 I + c_t^2 (1 - abar_t) L L^T,
    c_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t) (README, chapter 2), here computed from Python
    floats and written out entry by entry for L = [[0.5, 0], [0.3, 0.2]]."""
    x0 = roll.swiss_roll(4, gen(22)).double()
    L = torch.tensor([[0.5, 0.0], [0.3, 0.2]], dtype=torch.float64)
    x_t = torch.randn(4, 2, generator=gen(23), dtype=torch.float64)
    _, cov = common.p_reverse(true_eps_network(x0, SCHEDULE, L), x_t, torch.full((4,), t), SCHEDULE)
    beta_t = float(BETA[t])
    c_t = math.sqrt(ABAR[t - 1]) * beta_t / (1 - ABAR[t])
    floor = beta_t * (1 - ABAR[t - 1]) / (1 - ABAR[t])
    doubt = c_t ** 2 * (1 - ABAR[t])
    want = [[floor + doubt * 0.25, doubt * 0.15], [doubt * 0.15, floor + doubt * (0.09 + 0.04)]]
    gap = (cov - torch.tensor(want, dtype=torch.float64)).abs().max().item() / floor
    assert gap < 1e-9, f"t={t}: reverse covariance {cov[0].tolist()}, expected {want} (gap {gap:.3g} of the floor)"


def test_kl_gaussian_matches_monte_carlo():
    """kl_gaussian equals E_q[log q(x) - log p(x)] estimated from samples of q.

    Independent route: the definition of KL, with log densities written out, averaged over
    200k draws. Cases include unequal variances per coordinate; all cases go through one
    batched call, so summing over the wrong axis would also fail."""
    f64 = lambda *rows: torch.tensor(rows, dtype=torch.float64)  # noqa: E731
    mean_q = f64([0.3, -1.0], [1.0, 1.0], [0.0, 0.0], [2.0, -0.5])
    var_q = f64([0.5, 2.0], [1.0, 1.0], [1e-2, 4.0], [0.3, 0.3])
    mean_p = f64([0.0, 0.5], [1.0, 1.0], [0.1, -0.2], [0.0, 0.0])
    var_p = f64([1.0, 0.7], [3.0, 0.2], [2e-2, 1.0], [1.0, 1.0])
    cov_q, cov_p = torch.diag_embed(var_q), torch.diag_embed(var_p)
    got = common.kl_gaussian(mean_q, cov_q, mean_p, cov_p)
    assert got.shape == (4,), f"one KL per Gaussian expected, got shape {tuple(got.shape)}"
    # exact special cases: KL(q || q) = 0, and for equal variances |m_q - m_p|^2 / (2 v)
    same = common.kl_gaussian(mean_q, cov_q, mean_q, cov_q)
    assert same.abs().max().item() < 1e-12, f"KL(q || q) = {same.tolist()}, expected 0"
    shift = common.kl_gaussian(mean_q, cov_q, mean_q + 0.3, cov_q)
    want_shift = (0.09 / (2 * var_q)).sum(-1)
    assert torch.allclose(shift, want_shift, rtol=1e-12, atol=0), f"equal-variance KL {shift.tolist()}, expected {want_shift.tolist()}"
    n = 200_000
    g = gen(5)
    for k in range(4):
        x = mean_q[k] + var_q[k].sqrt() * torch.randn(n, 2, generator=g, dtype=torch.float64)
        terms = log_normal(x, mean_q[k], var_q[k]) - log_normal(x, mean_p[k], var_p[k])
        mc, se = terms.mean().item(), terms.std().item() / math.sqrt(n)
        assert abs(got[k].item() - mc) < N_SE * se, (
            f"case {k}: kl_gaussian {got[k].item():.5f}, Monte Carlo {mc:.5f} +- {se:.5f} "
            f"(tolerance {N_SE} SE)")


def test_full_covariance_kl_matches_monte_carlo():
    """kl_gaussian with correlated covariances on both sides (the full-covariance reverse steps)
    equals E_q[log q(x) - log p(x)], with log densities through torch.linalg, over 200k draws of q
    made with torch.linalg.cholesky; and it matches the same formula evaluated by torch.linalg
    to float64 precision, including a covariance as thin as the first reverse steps'."""
    f64 = lambda *rows: torch.tensor(rows, dtype=torch.float64)  # noqa: E731
    mean_q, mean_p = f64([0.3, -1.0], [0.0, 0.0], [1.0, 2.0]), f64([0.0, 0.5], [0.1, -0.2], [1.0, 2.001])
    cov_q = f64([[1.0, 0.6], [0.6, 0.5]], [[2e-2, 0.0], [0.0, 2e-2]], [[5e-6, 0.0], [0.0, 5e-6]])
    cov_p = f64([[0.7, -0.3], [-0.3, 1.2]], [[1e-2, 9e-3], [9e-3, 1e-2]], [[4e-4, 5e-5], [5e-5, 1.1e-5]])
    got = common.kl_gaussian(mean_q, cov_q, mean_p, cov_p)
    n = 200_000
    g = gen(6)
    for k in range(3):
        precision_p = torch.linalg.inv(cov_p[k])
        diff = mean_p[k] - mean_q[k]
        exact = 0.5 * (torch.trace(precision_p @ cov_q[k]) + diff @ precision_p @ diff - 2
                       + torch.logdet(cov_p[k]) - torch.logdet(cov_q[k])).item()
        assert abs(got[k].item() - exact) < 1e-9 * max(1.0, abs(exact)), (
            f"case {k}: kl_gaussian {got[k].item():.10g}, torch.linalg formula {exact:.10g}")
        x = mean_q[k] + torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov_q[k]).T
        terms = log_normal_full(x, mean_q[k], cov_q[k]) - log_normal_full(x, mean_p[k], cov_p[k])
        mc, se = terms.mean().item(), terms.std().item() / math.sqrt(n)
        assert abs(got[k].item() - mc) < N_SE * se, (
            f"case {k}: kl_gaussian {got[k].item():.5f}, Monte Carlo {mc:.5f} +- {se:.5f} (tolerance {N_SE} SE)")


@pytest.mark.parametrize("var", [1e-5, 0.01, 1.0, 7.3])
def test_gaussian_entropy_matches_numeric_integration(var):
    """gaussian_entropy(var, d) equals d times the integral of -p log p of a 1-D N(0, var).

    Independent route: trapezoid rule on +-12 standard deviations (200k intervals)."""
    sd = math.sqrt(var)
    x = np.linspace(-12 * sd, 12 * sd, 200_001)
    p = np.exp(-x ** 2 / (2 * var)) / math.sqrt(2 * math.pi * var)
    h1 = float(np.trapezoid(-p * np.log(p), x))
    for d in (1, 2, 3):
        got = common.gaussian_entropy(var, d)
        assert abs(got - d * h1) < 1e-8, f"var={var}, d={d}: got {got:.12f}, integral {d * h1:.12f} (tolerance 1e-8)"


def test_nats_to_bits_and_null_log_likelihood():
    """nats_to_bits agrees with log2; L_null is -log2(2 pi e) = -4.094 bits for 2-D unit data
    (paper, Table 1: 2.35 - 6.45), and equals a Monte Carlo average of log N(x; 0, I)."""
    for value in (1.0, 8.0, 1e5):
        got = common.nats_to_bits(math.log(value))
        assert abs(got - math.log2(value)) < 1e-12, f"nats_to_bits(ln {value}) = {got}, expected {math.log2(value)}"
    bits = common.nats_to_bits(common.null_log_likelihood())
    assert abs(bits - (-math.log2(2 * math.pi * math.e))) < 1e-12, f"L_null {bits} bits, expected {-math.log2(2 * math.pi * math.e)}"
    assert abs(bits - (-4.094)) < 5e-4, f"L_null {bits:.5f} bits, paper-facts -4.094 (tolerance 5e-4)"
    # Table 1 gives K = 2.35 and K - L_null = 6.45 bits, each rounded to +-0.005
    assert abs(bits - (2.35 - 6.45)) < 0.01, f"L_null {bits:.4f} bits, paper's 2.35 - 6.45 = -4.10 (tolerance 0.01)"
    n = 200_000
    for d in (2, 3):
        x = torch.randn(n, d, generator=gen(d), dtype=torch.float64)
        terms = log_normal(x, torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64))
        mc, se = terms.mean().item(), terms.std().item() / math.sqrt(n)
        got = common.null_log_likelihood(d)
        assert abs(got - mc) < N_SE * se, f"d={d}: null_log_likelihood {got:.5f}, Monte Carlo {mc:.5f} +- {se:.5f}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("want_cov", [[[0.25, 0.0], [0.0, 4.0]], [[1.0, -0.8], [-0.8, 1.0]], [[1e-4, 5e-5], [5e-5, 2e-4]]])
def test_sample_gaussian_has_requested_covariance(dtype, want_cov):
    """sample_gaussian(mean, cov) draws have that mean and that covariance, correlations
    included (the Cholesky factor is right), keep the dtype, and the same generator seed gives
    the same draws. A zero covariance gives the mean itself."""
    n = 100_000
    want_mean = torch.tensor([1.5, -2.0], dtype=dtype)
    want_cov = torch.tensor(want_cov, dtype=dtype)
    x = common.sample_gaussian(want_mean.expand(n, 2), want_cov.expand(n, 2, 2), gen(8))
    assert x.dtype == dtype, f"dtype {x.dtype}, expected {dtype}"
    x = x.double()
    cov = want_cov.double()
    got_cov = torch.cov(x.T)
    for i in range(2):
        se_m = math.sqrt(cov[i, i] / n)
        assert abs(x[:, i].mean().item() - want_mean[i].item()) < N_SE * se_m, (
            f"coord {i}: mean {x[:, i].mean().item():.5g}, expected {want_mean[i].item()} (SE {se_m:.3g})")
        for j in range(2):
            se = math.sqrt((cov[i, i] * cov[j, j] + cov[i, j] ** 2) / n)
            assert abs(got_cov[i, j].item() - cov[i, j].item()) < N_SE * se, (
                f"covariance [{i}, {j}]: {got_cov[i, j].item():.5g}, expected {cov[i, j].item():.5g} (SE {se:.3g})")
    again = common.sample_gaussian(want_mean.expand(n, 2), want_cov.expand(n, 2, 2), gen(8)).double()
    assert torch.equal(x, again), "same generator seed gave different draws"
    point = common.sample_gaussian(want_mean.expand(3, 2), torch.zeros(3, 2, 2, dtype=dtype), gen(8))
    assert torch.equal(point, want_mean.expand(3, 2)), f"zero covariance gave {point.tolist()}"


def test_two_by_two_algebra_matches_torch_linalg():
    """cholesky_2x2 and inverse_and_logdet_2x2, written out for speed, agree with torch.linalg
    on random covariances, thin ones included."""
    g = gen(12)
    a = torch.randn(500, 2, 2, generator=g, dtype=torch.float64)
    cov = a @ a.transpose(-1, -2) * torch.logspace(-6, 1, 500, dtype=torch.float64)[:, None, None] + 1e-9 * torch.eye(2)
    factor = linalg.cholesky_2x2(cov)
    err = ((factor - torch.linalg.cholesky(cov)).abs() / cov.diagonal(dim1=-2, dim2=-1).sqrt().amax(-1)[:, None, None]).max().item()
    assert err < 1e-6, f"cholesky_2x2 differs from torch.linalg.cholesky by {err:.3g} (relative)"
    inverse, logdet = linalg.inverse_and_logdet_2x2(cov)
    err_inv = ((inverse @ cov - torch.eye(2, dtype=torch.float64)).abs()).max().item()
    err_det = (logdet - torch.logdet(cov)).abs().max().item()
    assert err_inv < 1e-6 and err_det < 1e-6, f"inverse off by {err_inv:.3g}, log det off by {err_det:.3g}"


# --- the schedule ---------------------------------------------------------------------------

def test_schedule_shape_and_first_step():
    """T = 40 steps (paper, section 3.1), a table indexed by t (T + 1 entries), beta_0 = 0 and
    beta_1 = BETA_1 = 1e-5."""
    assert common.T == 40, f"T = {common.T}, expected 40"
    assert len(BETA) == T + 1, f"len(beta) = {len(BETA)}, expected T + 1 = {T + 1}"
    assert BETA.dtype == torch.float64, f"beta dtype {BETA.dtype}, expected float64"
    assert BETA[0].item() == 0.0, f"beta_0 = {BETA[0].item()}, expected 0"
    assert common.BETA_1 == 1e-5, f"BETA_1 = {common.BETA_1}, expected 1e-5"
    assert BETA[1].item() == common.BETA_1, f"beta_1 = {BETA[1].item()!r}, expected {common.BETA_1!r}"
    other = common.make_schedule(T=10, beta_1=1e-3).beta
    assert len(other) == 11 and other[1].item() == 1e-3, f"make_schedule(T=10, beta_1=1e-3) gave {other.tolist()}"
    assert common.make_schedule().T == T, "Schedule.T should be the number of steps"


@pytest.mark.parametrize("T_steps,log_snr_T", [(40, common.LOG_SNR_T), (10, 0.5)])
def test_schedule_log_snr_falls_in_equal_steps_to_log_snr_T(T_steps, log_snr_T):
    """alpha_bar_t, multiplied out from the betas in a Python loop, has the log SNR of the README's
    line: log(alpha_bar_t / (1 - alpha_bar_t)) = log((1 - beta_1) / beta_1)
    + (t - 1) / (T - 1) (log_snr_T - log((1 - beta_1) / beta_1)), so log_snr_T is reached at t = T."""
    beta = common.make_schedule(T=T_steps, log_snr_T=log_snr_T).beta
    alpha_bar = alpha_bar_by_loop(beta)
    first = math.log((1 - common.BETA_1) / common.BETA_1)
    for t in range(1, T_steps + 1):
        want = first + (t - 1) / (T_steps - 1) * (log_snr_T - first)
        got = math.log(alpha_bar[t] / (1 - alpha_bar[t]))
        assert abs(got - want) < 1e-9, f"T={T_steps}: log SNR_{t} = {got!r}, the line gives {want!r}"


def test_schedule_alpha_bar_falls_and_every_beta_is_a_variance_step():
    """alpha_bar_t strictly decreases from t = 0 to T, and every beta_t (t >= 1) is in (0, 1).
    (beta_t itself need not rise: on this line beta_2 < beta_1.)"""
    falls = ALPHA_BAR[1:] - ALPHA_BAR[:-1]
    worst = int(falls.argmax()) + 1
    assert (falls < 0).all(), f"alpha_bar_{worst} - alpha_bar_{worst - 1} = {falls.max().item():.3g}, expected < 0"
    assert ((BETA[1:] > 0) & (BETA[1:] < 1)).all(), f"beta outside (0, 1): {BETA.tolist()}"


def test_alpha_bar_matches_python_loop():
    """the schedule's alpha_bar equals prod_{s<=t} (1 - beta_s) multiplied out in a Python loop."""
    got = ALPHA_BAR.tolist()
    assert len(got) == T + 1, f"len(alpha_bar) = {len(got)}, expected {T + 1}"
    err = max(abs(a - b) / b for a, b in zip(got, ABAR))
    assert err < 1e-13, f"max relative error {err:.3g} (tolerance 1e-13); alpha_bar_T got {got[-1]}, loop {ABAR[-1]}"
    assert got[0] == 1.0, f"alpha_bar_0 = {got[0]}, expected 1"


def test_final_marginal_is_close_to_standard_normal():
    """q(x_T), the roll after all T steps, is within 0.01 nats of p(x_T) = N(0, I), where
    sampling starts. q(x_T) is the roll scaled by sqrt(alpha_bar_T) and blurred by a Gaussian
    of variance 1 - alpha_bar_T; its density on a grid (a sum over a dense set of roll points,
    not the code's formulas) gives KL(q(x_T) || N(0, I)) by a Riemann sum.

    alpha_bar_T itself need not be small: the per-point KL(q(x_T | x0) || N(0, I)), which K
    pays as -(d/2) log(1 - alpha_bar_T), is checked against kl_gaussian by hand below."""
    a = ABAR[T]
    angle = torch.linspace(*roll.ROLL_ANGLE, 2000, dtype=torch.float64)
    raw = torch.stack([angle * torch.cos(angle), angle * torch.sin(angle)], dim=1)
    scaled = math.sqrt(a) * (raw - torch.tensor(roll.ROLL_MEAN)) / torch.tensor(roll.ROLL_STD)
    grid = torch.linspace(-5.0, 5.0, 141, dtype=torch.float64)
    points = torch.cartesian_prod(grid, grid)
    q = torch.exp(-torch.cdist(points, scaled) ** 2 / (2 * (1 - a))).mean(1) / (2 * math.pi * (1 - a))
    normal = torch.exp(-(points ** 2).sum(1) / 2) / (2 * math.pi)
    cell = (grid[1] - grid[0]).item() ** 2
    mass = q.sum().item() * cell
    kl = (q * torch.log(q.clamp_min(1e-300) / normal)).sum().item() * cell
    assert abs(mass - 1) < 1e-4, f"q(x_T) integrates to {mass:.6f} on the grid, expected 1"
    assert kl < 0.01, f"KL(q(x_T) || N(0, I)) = {kl:.4f} nats (alpha_bar_T = {a:.3f}), expected < 0.01"

    x0 = roll.heldout_roll(20_000).double()
    mean, cov = common.q_closed_form(x0, T, SCHEDULE)
    per_point = common.kl_gaussian(mean, cov, torch.zeros_like(x0), torch.eye(2, dtype=x0.dtype).expand_as(cov)).mean().item()
    sq = (x0 ** 2).sum(1).mean().item()
    by_hand = -(common.D / 2) * math.log(1.0 - a) - common.D * a / 2 + a * sq / 2
    assert abs(per_point - by_hand) < 1e-10, f"mean KL {per_point:.10f}, by hand {by_hand:.10f}"


# --- indexing and precision -------------------------------------------------------------------

def test_at_int_and_tensor_agree():
    """at(table, t) for an int and at(table, tensor of t's) give the same entries; the tensor
    form is a column (n, 1) so it broadcasts over the two coordinates."""
    steps = torch.randperm(T + 1, generator=gen(3))
    for name, table in (("beta", BETA), ("alpha_bar", ALPHA_BAR)):
        col = common.at(table, steps)
        assert col.shape == (T + 1, 1), f"at({name}, tensor) shape {tuple(col.shape)}, expected ({T + 1}, 1)"
        for row, t in enumerate(steps.tolist()):
            one = common.at(table, t)
            assert col[row, 0].item() == float(one), f"{name}[{t}]: tensor form {col[row, 0].item()!r}, int form {float(one)!r}"
        assert col.dtype == torch.float64, f"at({name}, tensor) dtype {col.dtype}, expected float64"


@pytest.mark.parametrize("steps", ["int", "tensor"])
def test_formulas_are_evaluated_in_float64(steps):
    """For float32 points, the posterior variance at t = 2 and the closed-form variance at t = 1
    match their float64 values to 1e-6 relative. In float32, 1 - alpha_bar_2 (2e-5) would be off
    by ~1e-3 relative, so this fails if the tables are cast before the formula."""
    x0 = roll.swiss_roll(8, gen(4))
    assert x0.dtype == torch.float32
    x_t = x0 + 0.001
    t2 = 2 if steps == "int" else torch.full((8,), 2)
    t1 = 1 if steps == "int" else torch.full((8,), 1)
    var = diagonal(common.q_posterior(x0, x_t, t2, SCHEDULE)[1])
    want = float(BETA[2]) * (1.0 - ABAR[1]) / (1.0 - ABAR[2])
    assert var.dtype == torch.float32, f"posterior variance dtype {var.dtype}, expected the points' float32"
    err = (var.double() - want).abs().max().item() / want
    assert err < 1e-6, f"posterior variance at t=2: got {var[0, 0].item():.9g}, float64 {want:.9g}, relative error {err:.2g} > 1e-6"
    var1 = diagonal(common.q_closed_form(x0, t1, SCHEDULE)[1])
    want1 = 1.0 - ABAR[1]
    err1 = (var1.double() - want1).abs().max().item() / want1
    assert err1 < 1e-6, f"closed-form variance at t=1: got {var1[0, 0].item():.9g}, float64 {want1:.9g}, relative error {err1:.2g} > 1e-6"


@pytest.mark.parametrize("t", [2, 3, 10, T])
def test_posterior_weights_c_t_and_k_t_are_computed_in_float64_then_cast(t):
    """For float32 points, c_t and k_t (the weights of x0 and x_t in the posterior mean) match their
    values from Python floats (ABAR by a loop) to 1e-6 relative, and so the float32 posterior mean
    at t is within 1e-3 posterior standard deviations of the float64 one. Computed from tables
    cast to float32 first, 1 - alpha_bar_2 = 2e-5 loses ~1e-3 of itself and the t = 2 mean moves
    by about half a posterior standard deviation."""
    beta_t = float(BETA[t])
    want_c = math.sqrt(ABAR[t - 1]) * beta_t / (1.0 - ABAR[t])
    want_k = math.sqrt(1.0 - beta_t) * (1.0 - ABAR[t - 1]) / (1.0 - ABAR[t])
    x0 = roll.swiss_roll(64, gen(t))
    x_t = common.x_t_from_eps(x0.double(), torch.randn(64, 2, generator=gen(100 + t), dtype=torch.float64),
                              t, SCHEDULE)
    c_t, k_t, _ = common.posterior_coefficients(t, SCHEDULE, x0)
    assert c_t.dtype == k_t.dtype == torch.float32, f"weights in {c_t.dtype}, expected the points' float32"
    for name, got, want in (("c_t", c_t.item(), want_c), ("k_t", k_t.item(), want_k)):
        assert abs(got - want) <= 1e-6 * abs(want), f"t = {t}: {name} = {got:.9g} in float32, {want:.9g} in float64"
    mean32, cov = common.q_posterior(x0, x_t.float(), t, SCHEDULE)
    mean64, _ = common.q_posterior(x0.double(), x_t, t, SCHEDULE)
    shift = ((mean32.double() - mean64).abs().max() / cov[0, 0, 0].double().sqrt()).item()
    assert shift < 1e-3, f"t = {t}: the float32 posterior mean is {shift:.3g} posterior standard deviations off"


# --- device -------------------------------------------------------------------------------------

def test_pick_device_auto_returns_a_working_device():
    """pick_device('auto') names a device this machine has, and a tensor can be made on it."""
    device = cli.pick_device("auto")
    assert device.type in cli.available_devices(), f"auto picked {device}, available {cli.available_devices()}"
    assert torch.ones(2, device=device).sum().item() == 2.0, f"could not compute on {device}"
    assert cli.pick_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has cuda")
def test_pick_device_unavailable_cuda_names_the_alternatives():
    """Asking for cuda where there is none is a ValueError that lists what is available."""
    with pytest.raises(ValueError) as raised:
        cli.pick_device("cuda")
    message = str(raised.value)
    for device in cli.available_devices():
        assert device in message, f"error message {message!r} does not name available device {device!r}"
    assert "cuda" in message, f"error message {message!r} does not name the device asked for"
