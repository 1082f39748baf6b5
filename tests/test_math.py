"""The Gaussian algebra of common.py, each formula checked by a different route than its own:
a simulated chain, Bayes' rule in precision form, regression on samples, Monte Carlo, numeric
integration, or a plain Python loop. Statistical checks allow N_SE standard errors; seeds are fixed.
"""
import math

import numpy as np
import pytest
import torch

import common

N_SE = 5.0  # statistical tolerance, in standard errors

BETA = common.make_beta()
ALPHA_BAR = common.alpha_bar_from_beta(BETA)
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
    x0 = common.swiss_roll(n, g).double()
    x = x0
    rows = []
    for t in range(1, T + 1):
        x = common.sample_gaussian(*common.q_step(x, t, BETA), g)
        m, v = common.q_closed_form(x0, t, ALPHA_BAR)   # per point mean and variance
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
    x0 = common.swiss_roll(64, g).double()
    x_t = torch.randn(64, 2, generator=g, dtype=torch.float64) * 1.3
    beta_t, alpha_t = float(BETA[t]), 1.0 - float(BETA[t])
    prior_mean, prior_var = math.sqrt(ABAR[t - 1]) * x0, 1.0 - ABAR[t - 1]
    precision = 1.0 / prior_var + alpha_t / beta_t
    want_var = 1.0 / precision
    want_mean = want_var * (prior_mean / prior_var + alpha_t / beta_t * (x_t / math.sqrt(alpha_t)))
    for steps in (t, torch.full((64,), t)):   # a single int t and a tensor of t's
        mean, var = common.q_posterior(x0, x_t, steps, BETA, ALPHA_BAR)
        mean_err = ((mean - want_mean).abs() / want_mean.abs().clamp_min(1e-3)).max().item()
        var_err = ((var - want_var).abs() / want_var).max().item()
        assert mean_err < 1e-9, f"t={t} ({type(steps).__name__}): posterior mean relative error {mean_err:.3g} > 1e-9"
        assert var_err < 1e-9, (f"t={t}: posterior variance got {var.flatten()[0].item():.12g}, "
                                f"expected {want_var:.12g} (relative error {var_err:.3g} > 1e-9)")


def test_q_posterior_at_t1_is_point_mass_at_x0():
    """At t = 1, x_{t-1} = x0 is known: variance 0 and mean x0 (abar_0 = 1 convention)."""
    x0 = common.swiss_roll(16, gen(2)).double()
    x1 = x0 + 0.01
    mean, var = common.q_posterior(x0, x1, 1, BETA, ALPHA_BAR)
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
    x0 = common.swiss_roll(1, g).double()
    x = x0.expand(n, 2)
    for s in range(1, t):
        x = common.sample_gaussian(*common.q_step(x, s, BETA), g)
    x_prev = x
    x_t = common.sample_gaussian(*common.q_step(x_prev, t, BETA), g)

    # What q_posterior says: mean = intercept + slope * x_t (per coordinate), variance var_q.
    probe = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    means, var_q = common.q_posterior(x0.expand(2, 2), probe, t, BETA, ALPHA_BAR)
    intercept, slope, var_q = means[0], means[1] - means[0], var_q[0]

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


def test_reverse_from_x0_moments_matches_the_sampled_mixture():
    """Averaging q(x_{t-1} | x_t, x0) over an uncertain x0 gives the mean and variance that
    reverse_from_x0_moments claims. Independent route: draw x0 from a lopsided three-point
    distribution (given x_t), then x_{t-1} from the posterior of each draw, and take the sample
    mean and variance of x_{t-1}; tolerance 5 standard errors."""
    g = torch.Generator().manual_seed(11)
    t, n = 30, 400_000
    x_t = torch.tensor([[0.3, -0.7]], dtype=torch.float64)
    support = torch.tensor([[1.0, 0.5], [-0.8, 0.2], [0.1, -1.5]], dtype=torch.float64)
    weights = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    pick = torch.multinomial(weights, n, replacement=True, generator=g)
    x0 = support[pick]
    mean_q, var_q = common.q_posterior(x0, x_t.expand(n, 2), t, BETA, ALPHA_BAR)
    x_prev = mean_q + var_q.sqrt() * torch.randn(n, 2, generator=g, dtype=torch.float64)
    x0_mean = (weights[:, None] * support).sum(0, keepdim=True)
    x0_var = (weights[:, None] * support ** 2).sum(0, keepdim=True) - x0_mean ** 2
    mean, var = common.reverse_from_x0_moments(x0_mean, x0_var, x_t, t, BETA, ALPHA_BAR)
    sample_mean, sample_var = x_prev.mean(0), x_prev.var(0)
    se_mean = (sample_var / n).sqrt()
    se_var = sample_var * math.sqrt(2.0 / n) * 2  # widened: the mixture is not Gaussian
    assert ((sample_mean - mean[0]).abs() < 5 * se_mean).all(), (
        f"mixture mean {sample_mean.tolist()}, formula {mean[0].tolist()}, 5 SE = {(5 * se_mean).tolist()}")
    assert ((sample_var - var[0]).abs() < 5 * se_var).all(), (
        f"mixture variance {sample_var.tolist()}, formula {var[0].tolist()}, 5 SE = {(5 * se_var).tolist()}")


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
    got = common.kl_gaussian(mean_q, var_q, mean_p, var_p)
    assert got.shape == (4,), f"one KL per Gaussian expected, got shape {tuple(got.shape)}"
    # exact special cases: KL(q || q) = 0, and for equal variances |m_q - m_p|^2 / (2 v)
    same = common.kl_gaussian(mean_q, var_q, mean_q, var_q)
    assert same.abs().max().item() < 1e-12, f"KL(q || q) = {same.tolist()}, expected 0"
    shift = common.kl_gaussian(mean_q, var_q, mean_q + 0.3, var_q)
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
def test_sample_gaussian_has_requested_moments(dtype):
    """sample_gaussian(mean, var) draws have that mean and variance per coordinate, keep the
    dtype, and the same generator seed gives the same draws."""
    n = 100_000
    want_mean = torch.tensor([1.5, -2.0, 0.0], dtype=dtype)
    want_var = torch.tensor([0.25, 4.0, 1e-4], dtype=dtype)
    x = common.sample_gaussian(want_mean.expand(n, 3), want_var.expand(n, 3), gen(8))
    assert x.dtype == dtype, f"dtype {x.dtype}, expected {dtype}"
    x = x.double()
    for i in range(3):
        m, v = want_mean[i].item(), want_var[i].item()
        got_m, got_v = x[:, i].mean().item(), x[:, i].var().item()
        se_m, se_v = math.sqrt(v / n), v * math.sqrt(2.0 / n)
        assert abs(got_m - m) < N_SE * se_m, f"coord {i}: mean {got_m:.5g}, expected {m} (SE {se_m:.3g})"
        assert abs(got_v - v) < N_SE * se_v, f"coord {i}: variance {got_v:.5g}, expected {v} (SE {se_v:.3g})"
    again = common.sample_gaussian(want_mean.expand(n, 3), want_var.expand(n, 3), gen(8)).double()
    assert torch.equal(x, again), "same generator seed gave different draws"


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
    other = common.make_beta(T=10, beta_1=1e-3)
    assert len(other) == 11 and other[1].item() == 1e-3, f"make_beta(T=10, beta_1=1e-3) gave {other.tolist()}"


def test_schedule_increases_and_stays_below_one():
    """beta_t strictly increases from t = 1 to T and every beta_t < 1 (a valid variance step)."""
    steps = BETA[2:] - BETA[1:-1]
    worst = int(steps.argmin()) + 2
    assert (steps > 0).all(), f"beta_{worst} - beta_{worst - 1} = {steps.min().item():.3g}, expected > 0"
    assert BETA.max().item() < 1.0, f"max beta_t = {BETA.max().item()}, expected < 1"


def test_alpha_bar_matches_python_loop():
    """alpha_bar_from_beta equals prod_{s<=t} (1 - beta_s) multiplied out in a Python loop."""
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
    angle = torch.linspace(*common.ROLL_ANGLE, 2000, dtype=torch.float64)
    raw = torch.stack([angle * torch.cos(angle), angle * torch.sin(angle)], dim=1)
    scaled = math.sqrt(a) * (raw - torch.tensor(common.ROLL_MEAN)) / torch.tensor(common.ROLL_STD)
    grid = torch.linspace(-5.0, 5.0, 141, dtype=torch.float64)
    points = torch.cartesian_prod(grid, grid)
    q = torch.exp(-torch.cdist(points, scaled) ** 2 / (2 * (1 - a))).mean(1) / (2 * math.pi * (1 - a))
    normal = torch.exp(-(points ** 2).sum(1) / 2) / (2 * math.pi)
    cell = (grid[1] - grid[0]).item() ** 2
    mass = q.sum().item() * cell
    kl = (q * torch.log(q.clamp_min(1e-300) / normal)).sum().item() * cell
    assert abs(mass - 1) < 1e-4, f"q(x_T) integrates to {mass:.6f} on the grid, expected 1"
    assert kl < 0.01, f"KL(q(x_T) || N(0, I)) = {kl:.4f} nats (alpha_bar_T = {a:.3f}), expected < 0.01"

    x0 = common.heldout_roll(20_000).double()
    mean, var = common.q_closed_form(x0, T, ALPHA_BAR)
    per_point = common.kl_gaussian(mean, var, torch.zeros_like(x0), torch.ones_like(x0)).mean().item()
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
    x0 = common.swiss_roll(8, gen(4))
    assert x0.dtype == torch.float32
    x_t = x0 + 0.001
    t2 = 2 if steps == "int" else torch.full((8,), 2)
    t1 = 1 if steps == "int" else torch.full((8,), 1)
    _, var = common.q_posterior(x0, x_t, t2, BETA, ALPHA_BAR)
    want = float(BETA[2]) * (1.0 - ABAR[1]) / (1.0 - ABAR[2])
    assert var.dtype == torch.float32, f"posterior variance dtype {var.dtype}, expected the points' float32"
    err = (var.double() - want).abs().max().item() / want
    assert err < 1e-6, f"posterior variance at t=2: got {var[0, 0].item():.9g}, float64 {want:.9g}, relative error {err:.2g} > 1e-6"
    _, var1 = common.q_closed_form(x0, t1, ALPHA_BAR)
    want1 = 1.0 - ABAR[1]
    err1 = (var1.double() - want1).abs().max().item() / want1
    assert err1 < 1e-6, f"closed-form variance at t=1: got {var1[0, 0].item():.9g}, float64 {want1:.9g}, relative error {err1:.2g} > 1e-6"


# --- device -------------------------------------------------------------------------------------

def test_pick_device_auto_returns_a_working_device():
    """pick_device('auto') names a device this machine has, and a tensor can be made on it."""
    device = common.pick_device("auto")
    assert device.type in common.available_devices(), f"auto picked {device}, available {common.available_devices()}"
    assert torch.ones(2, device=device).sum().item() == 2.0, f"could not compute on {device}"
    assert common.pick_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has cuda")
def test_pick_device_unavailable_cuda_names_the_alternatives():
    """Asking for cuda where there is none is a ValueError that lists what is available."""
    with pytest.raises(ValueError) as raised:
        common.pick_device("cuda")
    message = str(raised.value)
    for device in common.available_devices():
        assert device in message, f"error message {message!r} does not name available device {device!r}"
    assert "cuda" in message, f"error message {message!r} does not name the device asked for"
