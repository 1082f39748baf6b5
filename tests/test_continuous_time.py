"""Chapter 11: continuous time. The probability-flow ODE with the exact 2 x 2 trace gives the
closed-form log-density of Gaussian data, for the diffusion and for flow matching's straight path,
and Hutchinson's trace agrees on average; the score from eps is the gradient of the log-density
(brute-force Bayes on the roll); flow matching's conversions between v, eps and x0 are exact, the
straight path is a diffusion at the same log SNR, and the exact velocity of a one-point data set
takes one Euler step to the point; the samplers spend exactly their budget of calls; the script
runs end to end with tiny settings and refuses bad input in one line."""
import argparse
import math
import re

import pytest
import torch

import common
import ddim
import continuous
import checkpoints
import roll
from conftest import load_script
from model import ContinuousTimeModel, ReverseModel
from test_robustness import call_main, the_error_line

SCRIPT = "11_continuous_time.py"
MEAN = torch.tensor([0.5, -1.0], dtype=torch.float64)
COV = torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=torch.float64)   # correlated: J has off-diagonals
EYE = torch.eye(2, dtype=torch.float64)
LAM_MAX, LAM_MIN = 3.0, -5.0   # a^2 = sigmoid(3) = 0.95 at the data end: the 2 log a term is 0.05 nats


def gaussian_log_density(x, mean, cov):
    """log N(x; mean, cov) by torch.distributions, independent of common.log_gaussian."""
    return torch.distributions.MultivariateNormal(mean, cov).log_prob(x)


def gaussian_eps(x, lam):
    """E[eps | x_lam = x] for x0 ~ N(MEAN, COV): sigma (a^2 COV + sigma^2 I)^-1 (x - a MEAN)."""
    a, sigma = (float(v) for v in continuous.signal_and_noise(float(lam)))
    marginal = a ** 2 * COV + sigma ** 2 * EYE
    return sigma * torch.linalg.solve(marginal, (x - a * MEAN).T).T


def gaussian_flow_velocity(x, s):
    """E[eps - x0 | x_s = x] for x0 ~ N(MEAN, COV) on the straight path, by Gaussian conditioning
    in the path's own terms: Cov(x0, x_s) = (1 - s) COV, Cov(eps, x_s) = s I."""
    s = float(s)
    marginal = (1 - s) ** 2 * COV + s ** 2 * EYE
    white = torch.linalg.solve(marginal, (x - (1 - s) * MEAN).T).T
    return s * white - (MEAN + (1 - s) * white @ COV)


def points(n, seed=0):
    return MEAN + torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) @ \
        torch.linalg.cholesky(COV).T


def test_diffusion_ode_gives_the_closed_form_log_density_of_gaussian_data():
    x0 = points(20)
    a_min, sigma_min = (float(v) for v in continuous.signal_and_noise(LAM_MIN))
    a_max = float(continuous.signal_and_noise(LAM_MAX)[0])
    prior = lambda x: gaussian_log_density(x, a_min * MEAN, a_min ** 2 * COV + sigma_min ** 2 * EYE)  # noqa: E731
    log_p, _ = continuous.ode_log_likelihood(continuous.probability_flow_velocity(gaussian_eps), x0,
                                             LAM_MAX, LAM_MIN, a_max, prior, rtol=1e-8, atol=1e-8)
    # x / a at lam_max is x0 plus noise of variance sigma^2 / a^2 = exp(-lam_max)
    expected = gaussian_log_density(x0, MEAN, COV + math.exp(-LAM_MAX) * EYE)
    error = (log_p - expected).abs().max().item()
    assert error < 1e-5, f"ODE log-density off the closed form by up to {error:.2e} nats"


def test_flow_matching_ode_gives_the_closed_form_log_density_of_gaussian_data():
    x0 = points(20, seed=1)
    s_min = float(continuous.flow_time_of_log_snr(LAM_MAX))
    log_p, _ = continuous.ode_log_likelihood(gaussian_flow_velocity, x0, s_min, 1.0, 1.0 - s_min,
                                             rtol=1e-8, atol=1e-8)
    expected = gaussian_log_density(x0, MEAN, COV + math.exp(-LAM_MAX) * EYE)   # (s / (1 - s))^2 = e^-lam
    error = (log_p - expected).abs().max().item()
    assert error < 1e-5, f"flow ODE log-density off the closed form by up to {error:.2e} nats"


def test_hutchinson_trace_agrees_with_the_exact_one_on_average_and_is_noisy_per_probe():
    n = 40_000
    x0 = points(1, seed=2).expand(n, 2).clone()   # one point, a different probe in every row
    s_min = float(continuous.flow_time_of_log_snr(LAM_MAX))
    exact, _ = continuous.ode_log_likelihood(gaussian_flow_velocity, x0[:1], s_min, 1.0, 1.0 - s_min)
    probe = continuous.rademacher(x0.shape, torch.Generator().manual_seed(0))
    estimate, _ = continuous.ode_log_likelihood(gaussian_flow_velocity, x0, s_min, 1.0, 1.0 - s_min, probe=probe)
    spread = estimate.std().item()
    se = spread / math.sqrt(n)
    gap = estimate.mean().item() - exact.item()
    assert spread > 0.05, f"Hutchinson's estimates barely vary ({spread:.3g} nats): are the probes used?"
    assert abs(gap) < 4 * se, f"Hutchinson's mean is {gap:+.4f} nats from the exact trace's (se {se:.4f})"
    assert 4 * se < 0.05, f"se {se:.4f} too large for the test to see a wrong trace"


def test_score_from_eps_is_the_gradient_of_the_log_density_on_the_roll():
    schedule, t = common.make_schedule(), 20
    _, _, x_t = roll.noised_roll(50, t, schedule, torch.Generator().manual_seed(0))
    x_t = x_t.double()
    sigma = math.sqrt(1.0 - float(schedule.alpha_bar[t]))
    score = continuous.score_from_eps(roll.bayes_optimal_eps(schedule)(x_t, t)[0], sigma)
    # independently: autograd through log q_t(x) = log mean_i N(x; sqrt(alpha_bar_t) c_i, sigma^2 I)
    _, curve = roll.curve_grid()
    x = x_t.clone().requires_grad_(True)
    log_q = torch.logsumexp(-((x.unsqueeze(1) - math.sqrt(float(schedule.alpha_bar[t])) * curve) ** 2).sum(2)
                            / (2 * sigma ** 2), dim=1)
    (gradient,) = torch.autograd.grad(log_q.sum(), x)
    error = ((score - gradient).norm(dim=1) / gradient.norm(dim=1)).max().item()
    assert error < 1e-6, f"score from eps differs from grad log q_t by up to {error:.2e} (relative)"


def test_log_snr_of_time_is_the_schedule_at_its_steps_and_linear_between():
    schedule = common.make_schedule()
    table = common.log_snr(schedule)
    steps = torch.arange(1, schedule.T + 1, dtype=torch.float64)
    assert torch.allclose(continuous.log_snr_of_time(steps, schedule), table[1:]), "off the table at whole t"
    middle = continuous.log_snr_of_time(steps[:-1] + 0.5, schedule)
    assert torch.allclose(middle, 0.5 * (table[1:-1] + table[2:])), "not the average halfway between steps"
    assert continuous.log_snr_range(schedule) == (float(table[schedule.T]), float(table[1]))


def test_flow_conversions_between_velocity_eps_and_x0_are_exact():
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(100, 2, generator=generator, dtype=torch.float64)
    eps = torch.randn(100, 2, generator=generator, dtype=torch.float64)
    s = torch.rand(100, 1, generator=generator, dtype=torch.float64) * 0.98 + 0.01
    x_s, v = continuous.flow_path(x0, eps, s), continuous.flow_target(x0, eps)
    assert torch.allclose(continuous.x0_from_velocity(x_s, v, s), x0, atol=1e-12), "x0 from v"
    assert torch.allclose(continuous.eps_from_velocity(x_s, v, s), eps, atol=1e-12), "eps from v"
    assert torch.allclose(continuous.velocity_from_eps(x_s, eps, s), v, atol=1e-10), "v from eps"
    # the path is the variance-preserving diffusion at the same log SNR, made of the same x0 and eps
    x_lam, lam = continuous.diffusion_point_of_flow(x_s, s)
    a, sigma = continuous.signal_and_noise(lam)
    assert torch.allclose(x_lam, a * x0 + sigma * eps, atol=1e-12), "not the diffusion's point"
    assert torch.allclose(continuous.flow_time_of_log_snr(lam), s, atol=1e-12), "s from log SNR"


def test_the_diffusions_eps_gives_the_flows_exact_velocity_for_gaussian_data():
    x_s = points(50, seed=3)
    for s in (0.05, 0.3, 0.7, 0.95):
        x_lam, lam = continuous.diffusion_point_of_flow(x_s, s)
        converted = continuous.velocity_from_eps(x_s, gaussian_eps(x_lam, float(lam)), s)
        error = (converted - gaussian_flow_velocity(x_s, s)).abs().max().item()
        assert error < 1e-10, f"s = {s}: velocity from the diffusion's eps off by {error:.2e}"


@pytest.mark.parametrize("power", [1.0, 2.0])
@pytest.mark.parametrize("calls", [1, 5])
def test_euler_on_the_exact_velocity_of_a_one_point_data_set_lands_on_the_point(calls, power):
    point = torch.tensor([[0.3, -0.7]], dtype=torch.float64)
    x1 = torch.randn(10, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def velocity(x, s):   # E[eps - x0 | x_s = x] with x0 = point: eps = (x - (1 - s) point) / s
        return (x - point) / s

    x = continuous.flow_sample(velocity, x1, continuous.flow_time_grid(calls, power))
    error = (x - point).abs().max().item()
    assert error < 1e-12, f"{calls} Euler steps end {error:.2e} from the data point"


@pytest.mark.parametrize("calls", range(1, 11))
@pytest.mark.parametrize("heun", [False, True])
def test_flow_samplers_spend_exactly_their_budget_of_calls(calls, heun):
    asked = []

    def velocity(x, s):
        asked.append(s)
        return -x

    if heun:
        steps, heun_steps = continuous.flow_heun_steps(calls)
        assert heun_steps < steps, f"budget {calls}: every step is Heun's, the one into s = 0 too"
        continuous.flow_sample(velocity, torch.ones(3, 2), continuous.flow_time_grid(steps), heun_steps)
    else:
        continuous.flow_sample(velocity, torch.ones(3, 2), continuous.flow_time_grid(calls))
    assert len(asked) == calls, f"{'Heun' if heun else 'Euler'} with a budget of {calls} made {len(asked)} calls"
    assert asked[0] == 1.0, f"the first call is at s = {asked[0]}, not at the noise, s = 1"
    assert 0.0 not in asked, "the velocity was asked at s = 0, where it is no slope of the path"


def test_heun_is_second_order_on_a_smooth_flow():
    """dx/ds = -x solved from s = 1 to 0 is x(0) = e x(1): Heun's error falls ~4x per halving."""
    errors = []
    for steps in (4, 8, 16):
        x = continuous.flow_sample(lambda x, s: -x, torch.ones(1, 1, dtype=torch.float64),
                                   continuous.flow_time_grid(steps, 1.0), heun_steps=steps)
        errors.append(abs(x.item() - math.e))
    ratios = [a / b for a, b in zip(errors, errors[1:])]
    assert all(3.5 < r < 4.5 for r in ratios), f"Heun's error ratios per halving {ratios}, not ~4"


def test_the_network_answers_at_any_real_time():
    torch.manual_seed(0)
    network = ContinuousTimeModel(time_scale=50.0)
    with torch.no_grad():
        network.output.weight.normal_(0.0, 0.3)
    x = torch.zeros(3, 2)
    out = network(x, torch.tensor([0.0, 0.01, 7.3]))
    assert out.shape == (3, 2)
    assert (out[0] - out[1]).abs().max() > 0, "two different times gave the same output"
    assert torch.allclose(network(x[:1], 7.3), out[2:], atol=1e-6), "a time given as a number differs from a tensor's"


@pytest.fixture(scope="module")
def checkpoint_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    schedule = common.make_schedule()
    torch.manual_seed(0)
    for name, covariance in (("model.pt", "full"), ("ddpm.pt", "none")):
        checkpoints.save_checkpoint(folder / name, ReverseModel(covariance=covariance), schedule,
                                 argparse.Namespace(seed=0), 0)
    return folder


TINY = ["--iters", "20", "--batch-size", "256", "--calls", "1,2", "--n-samples", "100", "--heldout", "20",
        "--iw-trajectories", "2", "--score-points", "50",
        "--moment-points", "500", "--exact-points", "5"]


def test_the_script_runs_end_to_end_with_tiny_settings(checkpoint_folder, tmp_path, monkeypatch, capsys,
                                                       keep_process_settings):
    """Every line and file of the chapter; the paths figure drawn from 20 ODE paths instead of 300."""
    monkeypatch.setattr(load_script(SCRIPT), "PATHS", 20)
    code, out, err = call_main(SCRIPT, [*TINY, "--chapter3", checkpoint_folder / "model.pt", "--chapter5",
                                        checkpoint_folder / "ddpm.pt", "--images", tmp_path / "images",
                                        "--out-dir", tmp_path / "out", "--device", "cpu"], monkeypatch, capsys)
    assert code == 0, f"exit {code}:\n{err[-2000:]}"
    for model in ("diffusion", "flow"):
        for trace in ("exact", "hutchinson"):
            assert re.search(rf"likelihood=ode  model={model}  points=curve  trace={trace}  bits = -?\d", out), \
                f"no {model} {trace} likelihood line:\n{out}"
    assert re.search(r"likelihood=bound  model=chapter3  points=curve  K  bits", out), out
    for model in ("diffusion", "flow", "exact_roll_flow"):
        assert re.search(rf"likelihood=ode  model={model}  points=blurred  trace=exact  bits", out), out
    for sampler in ("flow_euler", "flow_heun", "flow_euler_uniform", "ddim_eta0", "analytic", "ddim_heun"):
        assert re.search(rf"sampler={sampler}  calls=1  off-curve", out), f"no {sampler} line:\n{out}"
        assert (tmp_path / "out" / f"{sampler}_1.npy").is_file(), f"no samples of {sampler}"
    for figure in ("11_score_fields", "11_ode_paths", "11_quality", "11_likelihoods"):
        assert (tmp_path / "images" / f"{figure}.png").is_file(), f"no {figure}.png"


@pytest.mark.parametrize("bad, says", [
    (["--calls", "0"], "whole number"), (["--calls", "2,2"], "once"), (["--heldout", "1"], "whole number"),
    (["--iters", "-3"], "whole number"), (["--device", "tpu"], "not available"),
    (["--heldout", "10", "--exact-points", "20"], "at most --heldout")])
def test_bad_arguments_get_one_line_and_a_nonzero_exit(bad, says, tmp_path, monkeypatch, capsys, keep_process_settings):
    code, _, err = call_main(SCRIPT, [*bad, "--images", tmp_path], monkeypatch, capsys)
    assert code != 0, f"{bad}: exit status 0"
    assert says in the_error_line(err, str(bad)), err


def test_a_missing_checkpoint_gets_one_line_naming_the_command(tmp_path, monkeypatch, capsys, keep_process_settings):
    code, _, err = call_main(SCRIPT, ["--chapter3", tmp_path / "none.pt", "--images", tmp_path], monkeypatch, capsys)
    assert code == 1, f"exit status {code}"
    assert "03_train.py" in the_error_line(err, "missing checkpoint"), err


def test_an_eps_network_given_as_chapter_3s_model_is_refused(checkpoint_folder, tmp_path, monkeypatch, capsys,
                                                            keep_process_settings):
    code, _, err = call_main(SCRIPT, ["--chapter3", checkpoint_folder / "ddpm.pt", "--images", tmp_path], monkeypatch, capsys)
    assert code == 1, f"exit status {code}"
    assert "eps-network" in the_error_line(err, "eps-network as chapter 3's"), err


def test_a_loss_gone_non_finite_stops_the_run_in_one_line(checkpoint_folder, tmp_path, monkeypatch, capsys,
                                                         keep_process_settings):
    code, _, err = call_main(SCRIPT, [*TINY, "--lr", "1e30", "--chapter3", checkpoint_folder / "model.pt", "--chapter5",
                                      checkpoint_folder / "ddpm.pt", "--images", tmp_path, "--out-dir", tmp_path / "out"],
                             monkeypatch, capsys)
    assert code == 1, f"exit status {code}"
    err = "\n".join(line for line in re.split(r"[\r\n]", err) if not line.startswith("training the"))  # the bar
    assert "smaller --lr" in the_error_line(err, "--lr 1e30"), err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()), "samples written anyway"


def test_the_roll_flows_divergence_matches_finite_differences_of_its_velocity():
    flow, lam, h = continuous.exact_roll_flow(n_curve=4000), 4.0, 1e-5
    a = float(continuous.signal_and_noise(lam)[0])
    x = a * roll.swiss_roll(10, torch.Generator().manual_seed(0)).double() + 0.05 * torch.randn(
        10, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    _, divergence = flow(x, lam)
    differences = sum((flow(x + h * EYE[i], lam)[0][:, i] - flow(x - h * EYE[i], lam)[0][:, i]) / (2 * h)
                      for i in range(2))
    error = (divergence - differences).abs().max().item()
    assert error < 1e-4 * differences.abs().max().item(), \
        f"the closed-form divergence is off the finite differences by {error:.3g} " \
        f"(largest {differences.abs().max():.3g})"


@pytest.mark.parametrize("name", ["ddim_eta0", "ddim_heun"])
def test_chapter_6_samplers_make_the_number_of_calls_the_table_says(name):
    schedule = common.make_schedule()
    torch.manual_seed(0)
    network, asked = ReverseModel(covariance="none").eval(), []

    def counting(x, t):
        asked.append(1)
        return network(x, t)

    for steps in ddim.steps_for_calls(name, [1, 2, 5, 10], schedule.T):
        asked.clear()
        respaced, t_of = ddim.respace(schedule, ddim.sub_sequence(schedule, steps, "log_snr"))
        reverse = ddim.ddim_reverse(ddim.on_respaced_steps(counting, t_of), respaced, 0.0, name == "ddim_heun")
        common.sample_chain(reverse, 4, steps)
        assert len(asked) == ddim.network_calls(name, steps), \
            f"{name}, {steps} steps: {len(asked)} network calls, the table says {ddim.network_calls(name, steps)}"
