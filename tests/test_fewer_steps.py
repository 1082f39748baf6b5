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
import plumbing
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
    sigma2 = float(ddim.ddim_sigma(t, respaced, eta)) ** 2
    assert abs(c - math.sqrt(1 - alpha_bar_s - sigma2)) < 5 * math.sqrt((1 - alpha_bar_s) / (2 * n)), \
        f"eta = {eta}: eps's coefficient {c:.5f}, sqrt(1 - alpha_bar_s - sigma^2) = {math.sqrt(1 - alpha_bar_s - sigma2):.5f}"
    if eta == 1.0:  # and sigma at eta = 1 is the respaced posterior's own spread
        sigma_tilde2 = float(common.posterior_coefficients(t, respaced, x_t)[2])
        assert math.isclose(sigma2, sigma_tilde2, rel_tol=1e-9), f"sigma^2 = {sigma2:.6g}, beta_tilde = {sigma_tilde2:.6g}"


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


@pytest.mark.parametrize("variance", ["posterior", "analytic"])
def test_respaced_chain_of_all_T_steps_has_chapter_3s_K(eps_network, variance):
    respaced, t_of = ddim.respace(SCHEDULE, ddim.sub_sequence(SCHEDULE, T, "t"))
    network = ddim.on_respaced_steps(eps_network, t_of)
    var = torch.zeros(T + 1, dtype=torch.float64)
    for t in range(2, T + 1):
        var[t] = (common.posterior_coefficients(t, SCHEDULE, var)[2] if variance == "posterior"
                  else ddpm.analytic_variance(t, SCHEDULE, torch.tensor(1.5, dtype=torch.float64), 2.2))
    if variance == "posterior":
        respaced_reverse = ddim.ddim_reverse(network, respaced, 1.0)
    else:
        respaced_reverse = ddpm.reverse_with_variance(network, respaced, var)
    # roll.heldout_K's sum in float64 (its points are float32, where the last digits would differ)
    x0 = roll.heldout_roll(1000).double()

    def K(reverse, schedule):
        return common.bound_K(common.kl_all_steps(reverse, x0, schedule, torch.Generator().manual_seed(5)), schedule)

    K_respaced = K(respaced_reverse, respaced)
    K_chapter_3 = K(ddpm.reverse_with_variance(eps_network, SCHEDULE, var), SCHEDULE)
    gap = (K_respaced - K_chapter_3).abs().max().item()
    assert gap < 1e-8, f"{variance}: K of the respaced chain of all T steps differs from chapter 3's by {gap:.3g} nats"


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
    plumbing.save_checkpoint(path, ReverseModel(covariance="none"), SCHEDULE, argparse.Namespace(seed=0), 0)
    return path


def test_missing_checkpoint_is_one_line_naming_chapter_5(tmp_path, monkeypatch, capsys):
    code, _, err = call_main(SCRIPT, ["--checkpoint", tmp_path / "none.pt", "--images", tmp_path,
                                      "--out-dir", tmp_path / "out"], monkeypatch, capsys)
    assert code not in (0, None), f"exit status {code}"
    line = the_error_line(err, "missing checkpoint")
    assert "05_ddpm.py" in line, f"the message does not say to run chapter 5: {line}"


def test_checkpoint_with_a_covariance_output_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    path = tmp_path / "model.pt"
    plumbing.save_checkpoint(path, ReverseModel(covariance="full"), SCHEDULE, argparse.Namespace(seed=0), 0)
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


def test_script_prints_one_line_per_run_and_saves_each_runs_samples(eps_checkpoint, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    code, stdout, err = call_main(SCRIPT, ["--checkpoint", eps_checkpoint, "--images", tmp_path, "--out-dir", out,
                                           "--steps", "3,2", "--n-samples", 200, "--k-points", 50, "--moment-points", 500,
                                           "--device", "cpu"],
                                  monkeypatch, capsys)
    assert code == 0, err
    lines = [line for line in stdout.splitlines() if line.startswith("sampler=")]
    script = __import__("conftest").load_script(SCRIPT)
    assert len(lines) == 2 * len(script.SAMPLERS), stdout
    for line in lines:
        name = line.split()[0].removeprefix("sampler=")
        assert (name in script.STOCHASTIC) == ("K = n/a" not in line), f"K shown for the wrong samplers: {line}"
        saved = np.load(out / f"{name}_{line.split()[1].removeprefix('steps=')}.npy")
        assert saved.shape == (200, 2) and np.isfinite(saved).all(), f"{line}: saved {saved.shape}"
