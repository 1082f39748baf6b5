"""Chapter 6: sampling in fewer steps. The respaced schedule keeps q's marginals at the steps it
keeps; DDIM's step is DDPM's ancestral step at eta = 1 and keeps q's marginals at every eta;
eta = 0 is deterministic; Heun's step is second order; the respaced chain of all T steps has the
K of chapter 3's bound; and the script refuses bad input in one line."""
import argparse
import math

import numpy as np
import pytest
import torch

import common
import ddpm
import ddim
import checkpoints
import roll
from model import ReverseModel
from test_robustness import call_main, the_error_line

SCHEDULE = common.make_schedule()
T = SCHEDULE.T
SCRIPT = "06_fewer_steps.py"


@pytest.fixture(scope="module")
def eps_network():
    """An untrained eps-network with random output weights: eps varies with x_t and with t, which
    is all the identities below need (they hold for any network)."""
    torch.manual_seed(0)
    network = ReverseModel(covariance="none").double().eval()
    with torch.no_grad():
        network.output.weight.normal_(0.0, 0.3)
        network.output.bias.normal_(0.0, 0.3)
    return network


def eps_of(network):
    return lambda x, t: network(x, torch.as_tensor(t).expand(x.shape[0]))[0]


@pytest.mark.parametrize("spacing", ddim.SPACINGS)
@pytest.mark.parametrize("steps", [2, 3, 5, 10, 20, 39, 40])
def test_sub_sequence_decreases_strictly_from_T_to_1(steps, spacing):
    tau = ddim.sub_sequence(SCHEDULE, steps, spacing)
    assert len(tau) == steps, f"{steps} steps asked, {len(tau)} given: {tau}"
    assert tau[0] == T and tau[-1] == 1, f"{spacing}: the sub-sequence runs {tau[0]}..{tau[-1]}, not {T}..1"
    assert all(a > b for a, b in zip(tau, tau[1:])), f"{spacing}: not strictly decreasing: {tau}"


def test_sub_sequence_in_t_is_the_step_nearest_each_evenly_spaced_target():
    """Spread evenly in t, the i-th step from the end aims at 1 + (T - 1) i / (S - 1): for every S
    the step kept is within half a step of it (one step apart, targets never crowd). An off-by-one
    in the spacing (targets from 0 to T, or from 1 to T - 1, then clamped) moves a step by a whole one."""
    for steps in range(2, T + 1):
        tau = ddim.sub_sequence(SCHEDULE, steps, "t")[::-1]
        targets = [1 + (T - 1) * i / (steps - 1) for i in range(steps)]
        worst = max(range(steps), key=lambda i: abs(tau[i] - targets[i]))
        assert abs(tau[worst] - targets[worst]) <= 0.5, (
            f"{steps} steps: step {tau[worst]} kept for the target {targets[worst]:.3f}; all kept: {tau}")


def test_sub_sequence_in_log_snr_is_the_step_nearest_each_evenly_spaced_log_snr():
    """Spread evenly in log SNR: the step kept for each of S log-SNR values evenly spaced from step
    1's to step T's is the step whose log SNR is nearest (found here by numpy, over every step),
    for every S at which those nearest steps are all different (where they crowd, the sequence
    must move some apart, which the strict-decrease test covers)."""
    alpha_bar = SCHEDULE.alpha_bar.numpy()[1:]
    level = np.log(alpha_bar) - np.log1p(-alpha_bar)
    checked = 0
    for steps in range(2, T + 1):
        nearest = [int(np.argmin(np.abs(level - w))) + 1 for w in np.linspace(level[0], level[-1], steps)]
        if len(set(nearest)) == steps:
            tau = ddim.sub_sequence(SCHEDULE, steps, "log_snr")[::-1]
            assert tau == nearest, f"{steps} steps: kept {tau}, nearest to the evenly spaced log SNR {nearest}"
            checked += 1
    assert checked >= 5, f"only {checked} numbers of steps had distinct nearest steps: the test checked little"


def test_respaced_last_step_goes_to_alpha_bar_0_equal_1_with_the_fixed_beta_1():
    respaced, t_of = ddim.respace(SCHEDULE, ddim.sub_sequence(SCHEDULE, 5, "t"))
    assert respaced.T == 5 and t_of[0] == 0 and t_of[1] == 1, f"t_of = {t_of.tolist()}"
    assert respaced.alpha_bar[0] == 1.0, f"alpha_bar'_0 = {respaced.alpha_bar[0]}"
    assert math.isclose(respaced.beta[1], SCHEDULE.beta[1], rel_tol=1e-9), \
        f"beta'_1 = {respaced.beta[1]:.6g}, the fixed last step has beta_1 = {SCHEDULE.beta[1]:.6g}"


@pytest.mark.parametrize("bad", [[40, 20, 20, 1], [39, 20, 1], [40, 20, 2], [1, 20, 40]])
def test_respace_refuses_a_sequence_that_does_not_decrease_from_T_to_1(bad):
    with pytest.raises(ValueError, match="decrease strictly"):
        ddim.respace(SCHEDULE, bad)


@pytest.mark.parametrize("spacing", ddim.SPACINGS)
def test_respaced_betas_reproduce_alpha_bar_on_the_sub_sequence(spacing):
    tau = ddim.sub_sequence(SCHEDULE, 7, spacing)
    respaced, t_of = ddim.respace(SCHEDULE, tau)
    # alpha_bar'_k is a running product of the new betas; it must land on the old alpha_bar at tau_k,
    # and 1 - beta'_k must be the product of the old alphas that the jump from tau_{k-1} to tau_k skips.
    running = torch.cumprod(1.0 - respaced.beta, 0)
    assert torch.allclose(running, SCHEDULE.alpha_bar[t_of], rtol=1e-12, atol=0), \
        f"prod(1 - beta') = {running.tolist()}, alpha_bar at tau = {SCHEDULE.alpha_bar[t_of].tolist()}"
    for k in range(1, respaced.T + 1):
        skipped = torch.prod(1.0 - SCHEDULE.beta[int(t_of[k - 1]) + 1:int(t_of[k]) + 1])
        assert math.isclose(1.0 - respaced.beta[k], skipped, rel_tol=1e-12), \
            f"step {k} (t {int(t_of[k - 1])} -> {int(t_of[k])}): 1 - beta' = {1 - respaced.beta[k]:.12g}, product {skipped:.12g}"


def test_ddim_with_eta_1_over_all_steps_is_ddpms_ancestral_step_with_the_posterior_variance(eps_network):
    respaced, t_of = ddim.respace(SCHEDULE, range(T, 0, -1))
    x_t = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for t in range(2, T + 1):
        eps = eps_of(eps_network)(x_t, t)
        mean, cov = ddim.ddim_step(x_t, eps, t, respaced, 1.0)
        algorithm_2 = ddpm.ddpm_mean(x_t, eps, t, SCHEDULE)     # Algorithm 2's mean, another formula
        _, _, sigma_tilde2 = common.posterior_coefficients(t, SCHEDULE, x_t)
        assert torch.allclose(mean, algorithm_2, rtol=0, atol=1e-9), f"t = {t}: means differ by {(mean - algorithm_2).abs().max():.3g}"
        assert torch.allclose(cov, common.identity_times(sigma_tilde2, x_t), rtol=1e-9, atol=0), \
            f"t = {t}: variance {cov[0, 0, 0]:.6g}, beta_tilde_t = {float(sigma_tilde2):.6g}"


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_direction_coefficient_keeps_q_marginal_of_x_s(eta):
    # Given x0 and the true noise, DDIM's x_s must be distributed as q(x_s | x0): by construction,
    # x_s - sqrt(alpha_bar_s) x0 = c eps + sigma z with c^2 + sigma^2 = 1 - alpha_bar_s, and c is the
    # regression of x_s on eps. Monte Carlo, 200,000 draws, over a jump of ten steps.
    respaced, _ = ddim.respace(SCHEDULE, [T, 30, 20, 10, 1])
    g = torch.Generator().manual_seed(2)
    n, t = 200_000, 3                                  # respaced step 3 jumps from t = 20 to 10
    alpha_bar_t, alpha_bar_s = float(respaced.alpha_bar[t]), float(respaced.alpha_bar[t - 1])
    x0 = roll.swiss_roll(n, g).double()
    eps = torch.randn(n, 2, generator=g, dtype=torch.float64)
    x_t = math.sqrt(alpha_bar_t) * x0 + math.sqrt(1 - alpha_bar_t) * eps
    x_s = common.sample_gaussian(*ddim.ddim_step(x_t, eps, t, respaced, eta), g)
    residual = x_s - math.sqrt(alpha_bar_s) * x0
    var, c = residual.var().item(), (residual * eps).mean().item()
    se = math.sqrt(2.0 / (2 * n)) * (1 - alpha_bar_s)
    assert abs(var - (1 - alpha_bar_s)) < 5 * se, f"eta = {eta}: Var(x_s | x0) = {var:.6f}, q says {1 - alpha_bar_s:.6f}"
    # DDIM's sigma^2 is eta^2 times the posterior variance of the jump: from Bayes' rule here, not ddim_sigma
    sigma2 = eta ** 2 * posterior_variance_by_bayes(alpha_bar_t, alpha_bar_s)
    assert abs(c - math.sqrt(1 - alpha_bar_s - sigma2)) < 5 * math.sqrt((1 - alpha_bar_s) / (2 * n)), \
        f"eta = {eta}: eps's coefficient {c:.5f}, sqrt(1 - alpha_bar_s - eta^2 beta_tilde) = {math.sqrt(1 - alpha_bar_s - sigma2):.5f}"


def posterior_variance_by_bayes(alpha_bar_t, alpha_bar_s):
    """Var(x_s | x_t, x0) for a jump from s to t > s, by Bayes' rule in precision form: the prior
    q(x_s | x0) has variance 1 - alpha_bar_s, and q(x_t | x_s) = N(sqrt(a) x_s, (1 - a) I) with
    a = alpha_bar_t / alpha_bar_s adds a precision a / (1 - a)."""
    a = alpha_bar_t / alpha_bar_s
    return 1.0 / (1.0 / (1.0 - alpha_bar_s) + a / (1.0 - a))


@pytest.mark.parametrize("eta", [0.0, 0.25, 0.5, 0.8, 1.0])
def test_ddim_sigma_squared_is_eta_squared_times_the_posterior_variance_of_each_jump(eta):
    """Song et al.'s sigma_eta: sigma^2 = eta^2 Var(x_s | x_t, x0), the variance found here by Bayes'
    rule, for every jump of a respaced chain. A sigma wrong only strictly between eta = 0 and 1
    (eta^2 for eta, sqrt(eta), ...) fails here."""
    respaced, _ = ddim.respace(SCHEDULE, ddim.sub_sequence(SCHEDULE, 7, "log_snr"))
    for k in range(2, respaced.T + 1):
        alpha_bar_t, alpha_bar_s = float(respaced.alpha_bar[k]), float(respaced.alpha_bar[k - 1])
        want = eta ** 2 * posterior_variance_by_bayes(alpha_bar_t, alpha_bar_s)
        got = float(ddim.ddim_sigma(k, respaced, eta)) ** 2
        assert abs(got - want) <= 1e-9 * want, f"eta = {eta}, step {k}: sigma^2 = {got:.9g}, eta^2 beta_tilde = {want:.9g}"


def gaussian_data_eps(schedule):
    """E[eps | x_t] for data x0 ~ N(0, I) on `schedule`: x_t ~ N(0, I), so it is sqrt(1 - alpha_bar_t) x_t,
    as a network (x_t, t) -> (eps, None) answering for the step t it is asked about."""
    return lambda x_t, t: (torch.sqrt(1.0 - common.at(schedule.alpha_bar, t)).to(x_t) * x_t, None)


@pytest.mark.parametrize("sampler", ["ddim_eta1", "analytic"])
def test_respaced_chain_with_the_exact_network_of_gaussian_data_takes_the_exact_reverse_step(sampler):
    """For x0 ~ N(0, I) every x_t is N(0, I), and the exact reverse of a jump from s to t is
    N(sqrt(alpha_bar_t / alpha_bar_s) x_t, (1 - alpha_bar_t / alpha_bar_s) I), written here from the
    original alpha_bar at the kept steps. A respaced chain given the exact eps-network of the
    original steps must take that step at every k: its mean is wrong if the network is asked at
    its own step k instead of tau_k, and the analytic variance is wrong if computed on the
    original schedule or from E||eps||^2 read at the wrong step."""
    tau = [T, 27, 14, 6, 1]
    respaced, t_of = ddim.respace(SCHEDULE, tau)
    network = ddim.on_respaced_steps(gaussian_data_eps(SCHEDULE), t_of)
    mean_sq_eps = torch.full((T + 1,), math.nan, dtype=torch.float64)
    mean_sq_eps[2:] = common.D * (1.0 - SCHEDULE.alpha_bar[2:])      # E||E[eps | x_t]||^2, Gaussian data
    if sampler == "ddim_eta1":
        reverse = ddim.ddim_reverse(network, respaced, 1.0)
    else:
        reverse = ddpm.reverse_with_variance(network, respaced,
                                             ddim.respaced_analytic_variance(respaced, t_of, mean_sq_eps))
    x_t = torch.randn(64, 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    for k in range(2, len(tau)):
        t, s = tau[len(tau) - k], tau[len(tau) - k + 1]
        ratio = float(SCHEDULE.alpha_bar[t] / SCHEDULE.alpha_bar[s])
        mean, cov = reverse(x_t, torch.full((64,), k))
        mean_gap = (mean - math.sqrt(ratio) * x_t).abs().max().item()
        assert mean_gap < 1e-9, f"{sampler}, jump {t} -> {s}: the mean is {mean_gap:.3g} from the exact reverse mean"
        if sampler == "ddim_eta1":
            continue   # its variance is the posterior's given x0, beta_tilde, by design
        variance = cov[0, 0, 0].item()
        assert abs(variance - (1.0 - ratio)) < 1e-9 * (1.0 - ratio), (
            f"{sampler}, jump {t} -> {s}: variance {variance:.9g}, exact reverse variance {1.0 - ratio:.9g}")


def run_with_other_noise(reverse, x_T, steps, seed):
    """The chain from a given x_T, every step's noise drawn from a generator seeded with `seed`."""
    g, x = torch.Generator().manual_seed(seed), x_T
    for k in range(steps, 0, -1):
        x = common.sample_gaussian(*reverse(x, k), g)
    return x


def test_eta_0_is_deterministic_the_same_x_T_gives_the_same_sample_bit_for_bit(eps_network):
    respaced, t_of = ddim.respace(SCHEDULE, ddim.sub_sequence(SCHEDULE, 10, "log_snr"))
    network = ddim.on_respaced_steps(eps_network, t_of)
    x_T = torch.randn(500, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for second_order in (False, True):
        reverse = ddim.ddim_reverse(network, respaced, 0.0, second_order)
        a, b = run_with_other_noise(reverse, x_T, 10, 1), run_with_other_noise(reverse, x_T, 10, 2)
        assert torch.equal(a, b), f"second_order={second_order}: eta = 0 samples differ by {(a - b).abs().max():.3g}"
    eta1 = ddim.ddim_reverse(network, respaced, 1.0)
    assert not torch.equal(run_with_other_noise(eta1, x_T, 10, 1), run_with_other_noise(eta1, x_T, 10, 2)), \
        "eta = 1 gave the same samples with other noise: the check above could not fail"


def test_heun_step_is_second_order_on_gaussian_data_where_the_exact_flow_is_the_identity():
    # For x0 ~ N(0, I), x_t ~ N(0, I) at every t, E[eps | x_t] = sqrt(1 - alpha_bar_t) x_t, and the
    # probability flow leaves every point where it is. One big step from t = 40 to 20: Euler's
    # (DDIM's) error is first order in the step, Heun's second order, so far smaller.
    respaced, _ = ddim.respace(SCHEDULE, [T, 20, 1])
    exact_eps = lambda x, k: torch.sqrt(1.0 - common.at(respaced.alpha_bar, k)).to(x) * x  # noqa: E731
    x_t = torch.randn(100, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    euler = ddim.ddim_step(x_t, exact_eps(x_t, 2), 2, respaced, 0.0)[0]
    heun = ddim.heun_step(x_t, exact_eps, 2, respaced)[0]
    euler_error, heun_error = (euler - x_t).norm(dim=1).max().item(), (heun - x_t).norm(dim=1).max().item()
    assert heun_error < euler_error / 5, f"one step 40 -> 20: Euler's error {euler_error:.4f}, Heun's {heun_error:.4f}"


def test_ddim_eta_1_chain_of_all_T_steps_has_the_K_of_ddpms_chain_with_the_posterior_variance(eps_network):
    """DDIM's step (eta = 1) on the respaced chain of all T steps, scored by K, against DDPM's
    Algorithm 2 mean with the posterior variance (another formula) on the original chain. With
    the identity respacing t_of[k] = k, it cannot see which step the network is asked about:
    test_respaced_chain_with_the_exact_network_of_gaussian_data_takes_the_exact_reverse_step does."""
    respaced, t_of = ddim.respace(SCHEDULE, ddim.sub_sequence(SCHEDULE, T, "t"))
    network = ddim.on_respaced_steps(eps_network, t_of)
    var = torch.zeros(T + 1, dtype=torch.float64)
    for t in range(2, T + 1):
        var[t] = common.posterior_coefficients(t, SCHEDULE, var)[2]
    respaced_reverse = ddim.ddim_reverse(network, respaced, 1.0)
    # roll.heldout_K's sum in float64 (its points are float32, where the last digits would differ)
    x0 = roll.heldout_roll(1000).double()

    def K(reverse, schedule):
        return common.bound_K(common.kl_all_steps(reverse, x0, schedule, torch.Generator().manual_seed(5)), schedule)

    K_respaced = K(respaced_reverse, respaced)
    K_chapter_3 = K(ddpm.reverse_with_variance(eps_network, SCHEDULE, var), SCHEDULE)
    gap = (K_respaced - K_chapter_3).abs().max().item()
    assert gap < 1e-8, f"K of the respaced DDIM chain of all T steps differs from DDPM's by {gap:.3g} nats"


def test_bayes_optimal_eps_is_the_conditional_mean_of_the_noise(t=15):
    # E[eps | x_t] is the projection of eps on functions of x_t: the residual eps - E[eps | x_t] is
    # uncorrelated with it, E[(eps - eps*) . eps*] = 0, and no rescaled eps* does better. Monte Carlo.
    g = torch.Generator().manual_seed(6)
    x0 = roll.swiss_roll(3000, g).double()
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    alpha_bar_t = float(SCHEDULE.alpha_bar[t])
    x_t = math.sqrt(alpha_bar_t) * x0 + math.sqrt(1 - alpha_bar_t) * eps
    eps_star, _ = roll.bayes_optimal_eps(SCHEDULE, n_curve=4000)(x_t, t)
    inner = ((eps - eps_star) * eps_star).sum(1)
    assert abs(inner.mean()) < 4 * inner.std() / math.sqrt(len(inner)) + 1e-3, \
        f"t = {t}: E[(eps - eps*) . eps*] = {inner.mean():.4f} +- {inner.std() / math.sqrt(len(inner)):.4f}"
    scale = ((eps * eps_star).sum() / eps_star.square().sum()).item()  # the best multiple of eps*
    assert abs(scale - 1.0) < 0.03, f"t = {t}: the best multiple of E[eps | x_t] is {scale:.3f}, not 1"


# --- the script ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def eps_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ddpm") / "ddpm.pt"
    checkpoints.save_checkpoint(path, ReverseModel(covariance="none"), SCHEDULE, argparse.Namespace(seed=0), 0)
    return path


def test_missing_checkpoint_is_one_line_naming_chapter_5(tmp_path, monkeypatch, capsys):
    code, _, err = call_main(SCRIPT, ["--checkpoint", tmp_path / "none.pt", "--images", tmp_path,
                                      "--out-dir", tmp_path / "out"], monkeypatch, capsys)
    assert code not in (0, None), f"exit status {code}"
    line = the_error_line(err, "missing checkpoint")
    assert "05_ddpm.py" in line, f"the message does not say to run chapter 5: {line}"


def test_checkpoint_with_a_covariance_output_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    path = tmp_path / "model.pt"
    checkpoints.save_checkpoint(path, ReverseModel(covariance="full"), SCHEDULE, argparse.Namespace(seed=0), 0)
    code, _, err = call_main(SCRIPT, ["--checkpoint", path, "--images", tmp_path, "--out-dir", tmp_path / "out"],
                             monkeypatch, capsys)
    assert code not in (0, None), f"exit status {code}"
    assert "05_ddpm.py" in the_error_line(err, "covariance checkpoint")


@pytest.mark.parametrize("steps", ["1", "41", "0", "ten", "10,10", "10,,5", "2.5"])
def test_bad_steps_is_one_argparse_line(steps, eps_checkpoint, tmp_path, monkeypatch, capsys):
    code, _, err = call_main(SCRIPT, ["--checkpoint", eps_checkpoint, "--images", tmp_path,
                                      "--out-dir", tmp_path / "out", "--steps", steps], monkeypatch, capsys)
    assert code == 2, f"--steps {steps}: exit status {code}, expected argparse's 2"
    assert "argument --steps" in the_error_line(err, f"--steps {steps}")


def test_script_prints_one_row_per_run_asks_the_network_only_at_the_kept_steps_and_saves_samples(
        eps_checkpoint, tmp_path, monkeypatch, capsys):
    """A short run of main() with --spacing t and 4 and 2 steps, whose kept steps are known exactly
    (1 + 13 i: 40, 27, 14, 1; and 40, 1). The network, wrapped to record what it is asked, must be
    asked during sampling at those original steps t = tau_k and at no other (not at the respaced
    chain's own k = 2, 3, 4, nor at t = 1, the fixed kernel); the table has a header and one row
    per sampler and number of steps, K only for the stochastic samplers; each run's samples saved."""
    model, schedule, _ = checkpoints.load_eps_network(eps_checkpoint)
    n_samples, asked = 200, set()

    def recording(x_t, t):
        if x_t.shape[0] == n_samples:     # sampling; E||eps||^2 (300 points) and K (50) ask elsewhere
            asked.update(torch.as_tensor(t).flatten().tolist())
        return model(x_t, t)

    monkeypatch.setattr(checkpoints, "load_eps_network", lambda path, device="cpu": (recording, schedule, {}))
    out = tmp_path / "out"
    code, stdout, err = call_main(SCRIPT, ["--checkpoint", eps_checkpoint, "--images", tmp_path, "--out-dir", out,
                                           "--steps", "4,2", "--spacing", "t", "--n-samples", n_samples,
                                           "--k-points", 50, "--moment-points", 300, "--device", "cpu"],
                                  monkeypatch, capsys)
    assert code == 0, err
    assert asked == {40, 27, 14}, f"during sampling the network was asked at t = {sorted(asked)}, expected 14, 27, 40"
    script = __import__("conftest").load_script(SCRIPT)
    lines = stdout.splitlines()
    header = [i for i, line in enumerate(lines) if line.split()[:2] == ["sampler", "steps"]]
    assert len(header) == 1, f"the table's header should be printed once:\n{stdout}"
    columns = lines[header[0]].split()
    rows = [dict(zip(columns, line.split())) for line in lines[header[0] + 1:] if line.split()[:1] and
            line.split()[0] in script.SAMPLERS]
    assert [(row["sampler"], row["steps"]) for row in rows] == [(name, steps) for steps in ("4", "2")
                                                                 for name in script.SAMPLERS], stdout
    for row in rows:
        assert (row["sampler"] in script.STOCHASTIC) == (row["K_bits"] != "-"), f"K shown for the wrong samplers: {row}"
        saved = np.load(out / f"{row['sampler']}_{row['steps']}.npy")
        assert saved.shape == (n_samples, 2) and np.isfinite(saved).all(), f"{row}: saved {saved.shape}"
        assert 0.0 <= float(row["off_curve_%"]) <= 100.0 and float(row["W1_u"]) >= 0.0, row


def test_start_data_begins_every_run_at_the_same_draw_from_q_x_T_and_draws_no_figures(
        eps_checkpoint, tmp_path, monkeypatch, capsys):
    """docs/whose_error.py --start data: every chain starts from the same draw of q(x_T), the seed's
    roll points pushed forward to step T with fresh N(0, I) noise; no figure is drawn. (q(x_T) is
    close to N(0, I) in KL, about 0.003 nats here, so this is checked through the noise that x_T
    implies, which N(0, I) points, the default start, fail.)"""
    n, starts = 1000, []
    real_sample_chain = common.sample_chain

    def recording(*args, **kwargs):  # the real signature, so a call that misplaces x_T fails here too
        trajectory = real_sample_chain(*args, **kwargs)
        starts.append(trajectory[-1].clone())
        return trajectory

    monkeypatch.setattr(common, "sample_chain", recording)
    code, _, err = call_main("docs/whose_error.py", ["--checkpoint", eps_checkpoint, "--images", tmp_path / "images",
                                                     "--out-dir", tmp_path / "out", "--steps", "2", "--n-samples", n,
                                                     "--k-points", 0, "--moment-points", 100, "--device", "cpu",
                                                     "--start", "data"], monkeypatch, capsys)
    assert code == 0, err
    assert len(starts) == 4 and all(torch.equal(starts[0], x_T) for x_T in starts), "the samplers started apart"
    assert not (tmp_path / "images").exists() or not any((tmp_path / "images").iterdir()), "figures drawn"
    # x_T = sqrt(alpha_bar_T) x0 + sqrt(1 - alpha_bar_T) eps, x0 the roll points the seed draws
    # first: the eps this implies is N(0, I); for N(0, I) points it would have variance
    # (1 + alpha_bar_T) / (1 - alpha_bar_T) per coordinate.
    alpha_bar_T = float(SCHEDULE.alpha_bar[T])
    x0 = roll.swiss_roll(n, torch.Generator().manual_seed(0))
    normal = torch.randn(n, 2, generator=torch.Generator().manual_seed(1))
    for name, x_T, want in (("--start data", starts[0], 1.0), ("N(0, I)", normal, (1 + alpha_bar_T) / (1 - alpha_bar_T))):
        eps = (x_T - math.sqrt(alpha_bar_T) * x0) / math.sqrt(1 - alpha_bar_T)
        var = eps.var(0)
        assert ((var - want).abs() < 0.15 * want).all(), (
            f"{name}: the noise x_T implies has variances {var.tolist()}, expected {want:.3f}")
        assert eps.mean(0).abs().max() < 0.1 * math.sqrt(want), f"{name}: its mean {eps.mean(0).tolist()}"
