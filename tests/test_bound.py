"""The bound K (paper eq. 14) and its ceiling, checked by routes that do not use their formulas:
a Monte Carlo of the blurred roll's density, the exact reverse process of Gaussian data, whose K is known
exactly, entropies written out by hand, and the Bayes-optimal Gaussian reverse of the roll."""
import math

import pytest
import torch

import common
import ddpm
import roll
from model import ReverseModel

D = common.D


def gen(seed):
    return torch.Generator().manual_seed(seed)


def schedule(beta_1=common.BETA_1):
    return common.make_schedule(beta_1=beta_1)


# --- the ceiling ------------------------------------------------------------------------------

def test_ceiling_matches_monte_carlo_of_blurred_roll():
    """ceiling(beta_1) = E_x0[log p_blur(x0)], the held-out log density of the roll blurred by
    N(0, beta_1 I) (the fixed last step p(x0 | x1) can do no better).

    Independent route at beta_1 = 1e-3 (blur std 0.03, arms ~0.9 apart): p_blur(x0) is the
    average over 4000 curve points, equal steps in angle (spacing 0.003 << 0.03), of
    N(x0; x', beta_1 I), computed with logsumexp; averaged over 4000 held-out points. The
    ceiling instead uses the arc-length density and the speed of the curve. Tolerance 0.02 nats:
    about 4 Monte Carlo SE (0.005) plus the ends and curvature of the roll (< 0.005)."""
    beta_1, m = 1e-3, 4000
    x0 = roll.heldout_roll(4000).double()
    _, grid = roll.curve_grid(m)
    log_p = torch.cat([
        torch.logsumexp(-torch.cdist(chunk, grid) ** 2 / (2 * beta_1), dim=1)
        - math.log(m) - (D / 2) * math.log(2 * math.pi * beta_1)
        for chunk in x0.split(500)])
    mc, se = log_p.mean().item(), log_p.std().item() / math.sqrt(len(log_p))
    got = roll.log_likelihood_ceiling(beta_1)
    assert se < 0.006, f"Monte Carlo SE {se:.4f} too large for a 0.02 nats test"
    assert abs(got - mc) < 0.02, (f"ceiling({beta_1}) = {got:.4f} nats, Monte Carlo E[log p_blur] = "
                                  f"{mc:.4f} +- {se:.4f} (tolerance 0.02 nats)")


def test_ceiling_depends_on_beta_1_as_half_log():
    """Only the across-curve Gaussian depends on beta_1: ceiling(1e-5) - ceiling(1e-3) =
    1/2 log(1e-3 / 1e-5). Prints the default ceiling in bits (about 3.32)."""
    diff = roll.log_likelihood_ceiling(1e-5) - roll.log_likelihood_ceiling(1e-3)
    want = 0.5 * math.log(1e-3 / 1e-5)
    assert abs(diff - want) < 1e-9, f"ceiling(1e-5) - ceiling(1e-3) = {diff:.12f}, expected {want:.12f}"
    bits = common.nats_to_bits(roll.log_likelihood_ceiling())
    print(f"ceiling(beta_1 = {common.BETA_1}) = {roll.log_likelihood_ceiling():.4f} nats = {bits:.4f} bits per point")
    assert 3.0 < bits < 3.6, f"ceiling {bits:.3f} bits, expected about 3.32"


# --- the bound K with the exact reverse process of Gaussian data ---------------------------------------------------
#
# For data x0 ~ N(0, I), every marginal of the forward chain is N(0, I): if x_{t-1} ~ N(0, I) then
# x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps has variance alpha_t + beta_t = 1. So (x_{t-1}, x_t)
# is a zero-mean Gaussian pair, unit variances, covariance sqrt(alpha_t), and
#     q(x_{t-1} | x_t) = N(sqrt(alpha_t) x_t, (1 - alpha_t) I) = N(sqrt(alpha_t) x_t, beta_t I).
# With this reverse process p equals q as a joint distribution, p(x0) = N(x0; 0, I), and the bound
# is tight: K = E[log p(x0)] = -(d/2) log(2 pi e) = L_null. At t = 1 the exact reverse kernel is
# N(sqrt(1 - beta_1) x_1, beta_1 I), the fixed last step of eq. 44 the entropy terms assume.
# Route to the exact value: sum_t E KL_t = sum_t I(x0; x_{t-1} | x_t) = I(x0; x_1) - I(x0; x_T)
# = (d/2) log((1 - abar_T) / beta_1), which the entropy terms cancel, leaving -(d/2) log(2 pi e).

def exact_reverse(beta, mean_scale=1.0, var_scale=1.0):
    """The true reverse kernel of standard-normal data, optionally perturbed."""
    def reverse(x_t, t):
        b = beta[torch.as_tensor(t)].reshape(-1, 1).to(x_t)   # beta_t per point (or one for an int t)
        eye = torch.eye(D, dtype=x_t.dtype).expand(x_t.shape[0], D, D)
        return mean_scale * torch.sqrt(1.0 - b) * x_t, var_scale * b.unsqueeze(-1) * eye
    return reverse


def exact_reverse_K(n, seed, **perturbation):
    s = schedule()
    x0 = torch.randn(n, D, generator=gen(seed), dtype=torch.float64)
    kl = common.kl_all_steps(exact_reverse(s.beta, **perturbation), x0, s, gen(seed + 1))
    return kl, common.bound_K(kl, s)


def test_exact_reverse_of_gaussian_data_attains_null_likelihood():
    """With the exact reverse kernel of N(0, I) data, mean K = L_null = -(d/2) log(2 pi e)
    within 4 Monte Carlo SE, and its t = 1 kernel is common's fixed last step."""
    s = schedule()
    x1 = torch.randn(8, D, generator=gen(2), dtype=torch.float64)
    model = ReverseModel().double()   # the network is ignored at t = 1
    with torch.no_grad():
        fixed_mean, fixed_var = common.p_reverse(model, x1, 1, s)
    o_mean, o_var = exact_reverse(s.beta)(x1, torch.ones(8, dtype=torch.long))
    assert (torch.allclose(fixed_mean, o_mean, rtol=1e-12, atol=0)
            and torch.allclose(fixed_var, o_var, rtol=1e-12, atol=0)), (
        f"p(x0|x1): common's fixed kernel mean {fixed_mean[0].tolist()} var {fixed_var[0].tolist()}, "
        f"exact reverse mean {o_mean[0].tolist()} var {o_var[0].tolist()}")

    n = 20_000
    kl, K = exact_reverse_K(n, seed=20)
    assert kl.shape == (n, common.T + 1), f"kl_all_steps shape {tuple(kl.shape)}, expected ({n}, {common.T + 1})"
    mean, se = K.mean().item(), K.std().item() / math.sqrt(n)
    want = -(D / 2) * math.log(2 * math.pi * math.e)
    assert abs(common.null_log_likelihood() - want) < 1e-12
    assert abs(mean - want) < 4 * se, (f"exact reverse K = {mean:.4f} +- {se:.4f} nats, expected L_null = {want:.4f} "
                                       f"(tolerance 4 SE = {4 * se:.4f})")


def test_exact_reverse_kl_per_step_is_conditional_mutual_information():
    """Every column t = 2..T of kl_all_steps holds that step's KL: for the exact reverse its mean is
    I(x0; x_{t-1} | x_t) = I(x0; x_{t-1}) - I(x0; x_t) = (d/2) log((1 - abar_t) / (1 - abar_{t-1}))
    (Gaussian channel, I(x0; x_t) = -(d/2) log(1 - abar_t), abar by a loop), within 5 SE per
    column. Catches a skipped or shifted step that the total alone (SE ~0.02 nats) would miss:
    the last step's share is only ~0.003 nats."""
    n = 20_000
    kl, _ = exact_reverse_K(n, seed=40)
    beta = schedule().beta
    abar = [1.0]
    for b in beta[1:].tolist():
        abar.append(abar[-1] * (1.0 - b))
    for t in range(2, common.T + 1):
        want = (D / 2) * math.log((1.0 - abar[t]) / (1.0 - abar[t - 1]))
        got, se = kl[:, t].mean().item(), kl[:, t].std().item() / math.sqrt(n)
        assert abs(got - want) < 5 * se, f"t={t}: mean KL {got:.6f} +- {se:.2g}, expected I = {want:.6f} (tolerance 5 SE)"
    assert (kl[:, :2] == 0).all(), "columns t = 0, 1 must be zero (no KL term)"


@pytest.mark.parametrize("perturbation", [{"mean_scale": 1.05}, {"var_scale": 2.0}])
def test_perturbed_exact_reverse_scores_lower(perturbation):
    """Any other reverse kernel scores below the exact one: K drops by more than 4 SE of the
    paired difference (same x0 and x_t draws for both)."""
    n = 5_000
    _, K_exact = exact_reverse_K(n, seed=30)
    _, K_other = exact_reverse_K(n, seed=30, **perturbation)
    diff = K_exact - K_other
    mean, se = diff.mean().item(), diff.std().item() / math.sqrt(n)
    assert mean > 4 * se, (f"{perturbation}: K(exact) - K(perturbed) = {mean:.4f} +- {se:.4f} nats, "
                           f"expected > 4 SE = {4 * se:.4f}")


# --- the decomposition of K -------------------------------------------------------------------

def test_entropy_part_matches_hand_computation():
    """entropy_part = H_q(X_T|X_0) - H_q(X_1|X_0) - H_p(X_T), written out with math.log:
    d/2 log(2 pi e (1 - abar_T)) - d/2 log(2 pi e beta_1) - d/2 log(2 pi e), abar_T by a loop."""
    for beta_1 in (common.BETA_1, 1e-3):
        s = schedule(beta_1)
        abar_T = 1.0
        for b in s.beta[1:].tolist():
            abar_T *= 1.0 - b
        two_pi_e = 2 * math.pi * math.e
        want = (D / 2) * (math.log(two_pi_e * (1 - abar_T)) - math.log(two_pi_e * beta_1) - math.log(two_pi_e))
        got = float(common.entropy_part(s))
        assert abs(got - want) < 1e-10, f"beta_1={beta_1}: entropy_part {got:.12f}, by hand {want:.12f}"


@pytest.mark.parametrize("scale", [1.0, 1.5])
def test_ddpm_elbo_terms_add_up_to_minus_K_on_average_over_data_with_mean_square_d(scale):
    """DDPM's L_T + sum L_{t-1} + L_0 (ddpm.elbo_terms: a KL to N(0, I) and a log-density of the
    fixed last step, sampled) against eq. 14's K (bound_K: three entropies), on 10,000 held-out
    roll points and the same forward draws. The algebra: their sum is -K + (alpha_bar_T + beta_1)
    (|x0|^2 - d) / 2 on average over x1. The roll is standardised, E|x0|^2 = d = 2: the two are the
    same number, within 4 standard errors of the paired Monte Carlo. Scaled by 1.5, E|x0|^2 = 4.5,
    and the two differ by exactly what the algebra says, also within 4 SE."""
    s = schedule()
    x0 = scale * roll.heldout_roll(10_000).double()
    reverse = exact_reverse(s.beta)        # any reverse process with eq. 44's fixed last step will do
    K = common.bound_K(common.kl_all_steps(reverse, x0, s, gen(60)), s)
    terms = ddpm.elbo_terms(reverse, x0, s, gen(60))
    assert K.shape == terms.L_T.shape == terms.L_0.shape == (len(x0),), f"shapes {K.shape}, {terms.L_T.shape}"
    assert (terms.L_T > 0).all() and (terms.L_mid[:, :2] == 0).all(), "L_T is a KL; columns t = 0, 1 hold no term"
    gap = -terms.total() - K
    mean, se = gap.mean().item(), gap.std().item() / math.sqrt(len(gap))
    want = -(float(s.alpha_bar[s.T]) + float(s.beta[1])) * (scale ** 2 * D - D) / 2   # E|x0|^2 = scale^2 d
    assert abs(mean - want) < 4 * se, (
        f"scale {scale}: -(L_T + sum L_(t-1) + L_0) - K = {mean:.4f} +- {se:.4f} nats, the algebra says "
        f"{want:.4f} (tolerance 4 SE); mean L_T {terms.L_T.mean():.4f}, L_0 {terms.L_0.mean():.4f}, K {K.mean():.4f}")


class OnTheDevice:
    """Stands for a KL tensor on Apple's mps, which has no float64: `.double()` there fails, so
    it must come back to the CPU (`.cpu()`, which returns the real tensor) first."""

    def __init__(self, value):
        self.value = value

    def cpu(self):
        return self.value

    def double(self):
        raise TypeError("mps has no float64: convert on the CPU")


def test_kl_all_steps_moves_each_kl_to_the_cpu_before_float64(monkeypatch):
    """The held-out K's table is float64 on the CPU, made without asking the device for float64
    (on mps, training crashed there, after saving)."""
    real = common.kl_one_step
    monkeypatch.setattr(common, "kl_one_step", lambda *args, **kwargs: OnTheDevice(real(*args, **kwargs)))
    s = schedule()
    kl = common.kl_all_steps(exact_reverse(s.beta), torch.zeros(3, D), s, gen(1))
    assert kl.dtype == torch.float64 and kl.device.type == "cpu" and kl.shape == (3, common.T + 1)


# --- K stays below the ceiling ------------------------------------------------------------------

def test_untrained_model_K_is_below_ceiling():
    """An untrained ReverseModel scores K < ceiling on held-out points; its KL terms are >= 0
    and the columns t = 0, 1 (no KL) are zero."""
    torch.manual_seed(0)
    model = ReverseModel().eval()
    s = schedule()
    x0 = roll.heldout_roll(500)
    kl = common.kl_all_steps(common.reverse_of(model, s), x0, s, gen(5))
    assert (kl[:, :2] == 0).all(), f"columns t=0,1 should be zero, max {kl[:, :2].abs().max().item()}"
    assert (kl[:, 2:] >= 0).all(), f"negative KL {kl.min().item():.3g}"
    K = common.bound_K(kl, s)
    mean, se = K.mean().item(), K.std().item() / math.sqrt(len(K))
    ceiling = roll.log_likelihood_ceiling()
    assert mean + 4 * se < ceiling, f"untrained K = {mean:.3f} +- {se:.3f} nats, ceiling {ceiling:.3f}"


EXPECTED_GAP = 0.12       # nats: ceiling of K minus the Bayes-optimal K at beta_1 = 1e-3 (see below)
EXPECTED_GAP_SLACK = 0.03 # nats: how well EXPECTED_GAP itself is known


def test_bayes_optimal_reverse_K_sits_the_price_of_finite_steps_below_ceiling_of_K():
    """The best Gaussian reverse process (brute-force Bayes over the curve,
    roll.bayes_optimal_reverse) stays below K_ceiling by the price of 39 finite Gaussian
    steps, at beta_1 = 1e-3 where a 2500-point grid resolves the first steps. Two independent
    routes: a sum of 39 KL terms of posterior moments over grid points, against the arc-length
    integral. The price was measured with larger runs of this same computation: 0.105 +- 0.015
    nats (4000 points, 2500-point grid) and 0.131 +- 0.021 (2000 points, 5000-point grid), so
    EXPECTED_GAP = 0.12 +- 0.03. Here, 500 points: the gap must be within 4 standard errors
    (~0.18 nats) plus that 0.03 of it; the old bound, K within 0.5 nats, let a K 0.3 nats too
    low pass."""
    beta_1 = 1e-3
    s = schedule(beta_1)
    x0 = roll.heldout_roll(500).double()
    reverse = roll.bayes_optimal_reverse(s, n_curve=2500)
    kl = common.kl_all_steps(reverse, x0, s, gen(6))
    K = common.bound_K(kl, s)
    mean, se = K.mean().item(), K.std().item() / math.sqrt(len(K))
    best = roll.K_ceiling(beta_1)
    print(f"beta_1 = {beta_1}: Bayes-optimal Gaussian K = {mean:.3f} +- {se:.3f} nats, "
          f"ceiling of K {best:.3f}, ceiling {roll.log_likelihood_ceiling(beta_1):.3f}")
    tolerance = 4 * se + EXPECTED_GAP_SLACK
    assert abs(best - mean - EXPECTED_GAP) < tolerance, (
        f"Bayes-optimal K = {mean:.3f} +- {se:.3f} nats sits {best - mean:.3f} below the ceiling of K {best:.3f}; "
        f"expected {EXPECTED_GAP} (tolerance {tolerance:.3f})")
def test_x0_posterior_at_a_small_t_is_a_thin_ellipse_along_the_tangent():
    """roll.x0_posterior_moments (brute-force Bayes over the curve) at small t, against the picture
    a straight piece of curve gives: near x_t the curve is x0 = p + s tau (tau the unit tangent),
    s has a flat prior (u is uniform, and so is arc length over a short piece), and the
    likelihood N(x_t; sqrt(abar_t) x0, (1 - abar_t) I) makes s Gaussian with variance
    (1 - abar_t) / abar_t. So E[x0 | x_t] is the curve point nearest x_t / sqrt(abar_t)
    (roll.nearest_on_curve), Cov(x0 | x_t) has its long axis along tau (by finite differences
    of roll.point_at) with that variance, and almost nothing across. Tolerances cover the
    curvature and the slow change of the prior along the curve, a few percent at these t (noise
    std 0.007 to 0.019, about 1% of the radius); points near the roll's two ends,
    where the flat prior is cut off, are left out."""
    s = schedule()
    u = torch.linspace(0.1, 0.9, 40, dtype=torch.float64)
    x0 = roll.point_at(u)
    # the steps whose noise std is nearest 0.007, 0.012 and 0.019, whatever the schedule
    noise_std = torch.sqrt(1.0 - s.alpha_bar)
    for t in [int((noise_std - std).abs().argmin()) for std in (0.007, 0.012, 0.019)]:
        abar = float(s.alpha_bar[t])
        x_t = common.sample_gaussian(*common.q_closed_form(x0, t, s), gen(t))
        mean, cov = roll.x0_posterior_moments(x_t, t, s)
        distance, u_near = roll.nearest_on_curve(x_t / math.sqrt(abar))
        nearest = roll.point_at(u_near)
        gap = (mean - nearest).norm(dim=1).max().item()
        assert gap < 0.05 * math.sqrt((1 - abar) / abar) + 1e-3, (
            f"t={t}: E[x0 | x_t] is {gap:.2e} from the nearest curve point (noise std {math.sqrt(1 - abar):.3f})")
        h = 1e-6
        tangent = roll.point_at(u_near + h) - roll.point_at(u_near - h)
        tangent = tangent / tangent.norm(dim=1, keepdim=True)
        normal = torch.stack([-tangent[:, 1], tangent[:, 0]], dim=1)
        along = torch.einsum("ni,nij,nj->n", tangent, cov, tangent)
        across = torch.einsum("ni,nij,nj->n", normal, cov, normal)
        want = (1 - abar) / abar
        ratio = along / want
        assert ((ratio - 1).abs() < 0.05).all(), (
            f"t={t}: variance along the tangent / (1 - abar) / abar ranges {ratio.min():.3f}..{ratio.max():.3f}, expected 1 +- 0.05")
        assert (across < 0.02 * want).all(), (
            f"t={t}: variance across the curve up to {across.max():.2e}, against {want:.2e} along it")


# --- the exact reverse of Gaussian data with correlated coordinates: the full-covariance class ------------------------------
#
# Data x0 ~ N(0, S), S = [[1, rho], [rho, 1]]: unit variances, so the paper's end terms are exact
# (E|x_T|^2 = d, and the fixed last step's error has E|.|^2 = d beta_1, as for N(0, I) data).
# Every marginal is Gaussian, Sigma_t = abar_t S + (1 - abar_t) I, and Cov(x_{t-1}, x_t) =
# sqrt(alpha_t) Sigma_{t-1}, so the true reverse step is the Gaussian conditional
#     q(x_{t-1} | x_t) = N(A_t x_t, C_t),  A_t = sqrt(alpha_t) Sigma_{t-1} Sigma_t^-1,
#     C_t = Sigma_{t-1} - alpha_t Sigma_{t-1} Sigma_t^-1 Sigma_{t-1},
# with correlated coordinates: a diagonal covariance cannot hold it.

RHO = 0.8


def correlated_marginals(s):
    """Sigma_t for t = 0..T, float64 (T + 1, 2, 2)."""
    S = torch.tensor([[1.0, RHO], [RHO, 1.0]], dtype=torch.float64)
    abar = s.alpha_bar.reshape(-1, 1, 1)
    return abar * S + (1.0 - abar) * torch.eye(D, dtype=torch.float64)


def correlated_reverse(s, diagonal=False):
    """The true reverse step of N(0, S) data, or the best diagonal one: the same mean with C_t cut
    to its diagonal (for a diagonal Gaussian the expected KL separates by coordinate, and each
    variance is best at the true one)."""
    sigma = correlated_marginals(s)

    def reverse(x_t, t):
        t = int(torch.as_tensor(t).flatten()[0])
        alpha = 1.0 - s.beta[t]
        gain = sigma[t - 1] @ torch.linalg.inv(sigma[t])
        C = sigma[t - 1] - alpha * gain @ sigma[t - 1]
        if diagonal:
            C = torch.diag(torch.diagonal(C))
        return x_t @ (torch.sqrt(alpha) * gain).T.to(x_t), C.to(x_t).expand(x_t.shape[0], D, D)

    return reverse


def test_exact_reverse_of_correlated_gaussian_data_attains_the_closed_form_K_and_diagonal_steps_lose_what_theory_says():
    """With the true (full-covariance) reverse steps of N(0, S) data, mean K equals its closed
    form, and the best diagonal steps score lower by exactly what their lost correlation costs.

    Closed form of K, by information theory rather than the KL formula: the expected KL of step t
    is I(x0; x_{t-1} | x_t) = I(x0; x_{t-1}) - I(x0; x_t) (Markov chain), with
    I(x0; x_t) = 1/2 log det Sigma_t - d/2 log(1 - abar_t); the sum telescopes to
    I(x0; x_1) - I(x0; x_T), and with entropy_part's three entropies
        K = -d/2 log(2 pi e) - 1/2 log det Sigma_1 + 1/2 log det Sigma_T,
    which is the data's exact log-likelihood E[log N(x0; 0, S)] = -1/2 log det(2 pi e S), less
    KL(q(x_T) || N(0, I)) = -1/2 log det Sigma_T (the model starts from N(0, I), not from q(x_T))
    and 1/2 log(det Sigma_1 / det S) (the fixed last step's blur), both in closed form.
    The diagonal steps lose, at each t, KL(N(m, C_t) || N(m, diag C_t)) = -1/2 log(1 - r_t^2), r_t
    the correlation in C_t: summed over t = 2..T, checked on the paired difference."""
    s = schedule()
    n = 20_000
    x0 = torch.randn(n, D, generator=gen(50), dtype=torch.float64) @ torch.linalg.cholesky(
        torch.tensor([[1.0, RHO], [RHO, 1.0]], dtype=torch.float64)).T
    K_full = common.bound_K(common.kl_all_steps(correlated_reverse(s), x0, s, gen(51)), s)
    K_diag = common.bound_K(common.kl_all_steps(correlated_reverse(s, diagonal=True), x0, s, gen(51)), s)

    sigma = correlated_marginals(s)
    S_det = 1.0 - RHO ** 2
    want = (-(D / 2) * math.log(2 * math.pi * math.e) - 0.5 * math.log(torch.det(sigma[1]).item())
            + 0.5 * math.log(torch.det(sigma[s.T]).item()))
    log_likelihood = -0.5 * (D * math.log(2 * math.pi * math.e) + math.log(S_det))
    prior_price = -0.5 * math.log(torch.det(sigma[s.T]).item())
    blur_price = 0.5 * math.log(torch.det(sigma[1]).item() / S_det)
    assert abs(want - (log_likelihood - prior_price - blur_price)) < 1e-12
    mean, se = K_full.mean().item(), K_full.std().item() / math.sqrt(n)
    assert abs(mean - want) < 4 * se, (f"K with the true steps = {mean:.4f} +- {se:.4f} nats, closed form "
                                       f"{want:.4f} (exact log-likelihood {log_likelihood:.4f} less the prior's "
                                       f"{prior_price:.4f} and the last step's {blur_price:.2e}; tolerance 4 SE)")

    lost = 0.0
    for t in range(2, s.T + 1):
        alpha = 1.0 - s.beta[t]
        C = sigma[t - 1] - alpha * sigma[t - 1] @ torch.linalg.inv(sigma[t]) @ sigma[t - 1]
        r = (C[0, 1] / torch.sqrt(C[0, 0] * C[1, 1])).item()
        lost += -0.5 * math.log(1.0 - r ** 2)
    gap = K_full - K_diag
    gap_mean, gap_se = gap.mean().item(), gap.std().item() / math.sqrt(n)
    assert lost > 20 * gap_se, f"the predicted loss {lost:.4f} nats should dwarf the SE {gap_se:.4f}"
    assert abs(gap_mean - lost) < 4 * gap_se, (
        f"K(full) - K(diagonal) = {gap_mean:.4f} +- {gap_se:.4f} nats, predicted sum of -1/2 log(1 - r_t^2) = "
        f"{lost:.4f} (tolerance 4 SE)")
