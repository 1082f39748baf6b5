"""Chapter 5: DDPM's mean, the bound's weights, the variances and the L_simple training, each
against an independent computation; the script end to end, briefly; its bad inputs refused."""
import argparse
import math
import re

import pytest
import torch

import common
import ddpm
import checkpoints
import roll
from model import ReverseModel
from conftest import load_script
from test_robustness import (_keep_process_settings, call_main, no_work_allowed,  # noqa: F401 (fixtures)
                             save_fresh_checkpoint, the_error_line)

VARIANCE_LINE = re.compile(r"^variance=(\w+)  K = (-?[\d.]+) bits  \(se ([\d.]+)\)  "
                           r"off-curve ([\d.]+)%  along-curve KS p = ([\d.e+-]+)$", re.MULTILINE)
SHORT_RUN = ("--iters", 30, "--batch-size", 256, "--n-samples", 500, "--n-heldout", 500, "--device", "cpu")


def respaced(schedule, steps):
    """The schedule of the chain that visits only `steps` (increasing, from 1): beta'_k =
    1 - alpha_bar_{tau_k} / alpha_bar_{tau_(k-1)}, the same alpha_bar at the steps kept."""
    alpha_bar = schedule.alpha_bar[[0, *steps]]
    return common.schedule_from_beta(torch.cat([torch.zeros(1, dtype=torch.float64),
                                                1.0 - alpha_bar[1:] / alpha_bar[:-1]]))


N_SE = 5.0  # statistical tolerance, in standard errors
SCHEDULES = {"ours": common.make_schedule(), "respaced": respaced(common.make_schedule(), [1, 2, 5, 12, 25, 40])}


def noised(schedule, t, n=2000, seed=0):
    """Roll points x0, noise eps and x_t at step t, in float64."""
    generator = torch.Generator().manual_seed(seed)
    x0 = roll.swiss_roll(n, generator).double()
    eps = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    return x0, eps, common.x_t_from_eps(x0, eps, t, schedule)


@pytest.mark.parametrize("name", SCHEDULES)
def test_algorithm2_mean_is_the_posterior_mean_at_x0_hat_for_every_t(name):
    """(x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t) = c_t x0_hat + k_t x_t, with x0_hat
    the x0 that eps implies, for any eps (here not the true noise) and every t, also on a
    respaced schedule."""
    schedule = SCHEDULES[name]
    for t in range(1, schedule.T + 1):
        _, _, x_t = noised(schedule, t, n=200, seed=t)
        eps = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(100 + t), dtype=torch.float64)
        posterior_mean, _ = common.q_posterior(common.x0_from_eps(x_t, eps, t, schedule), x_t, t, schedule)
        gap = (ddpm.ddpm_mean(x_t, eps, t, schedule) - posterior_mean).abs().max().item()
        # 1 - alpha_bar_1 = 1e-5 is known to ~1e-11 relative in float64: that is float precision here
        assert gap < 1e-10, f"{name} schedule, t = {t}: Algorithm 2's mean is {gap:.2e} from the posterior mean"


@pytest.mark.parametrize("variance", ["beta", "beta_tilde", "other"])
def test_eps_weight_is_the_kl_difference_between_two_eps_predictions(variance):
    """KL(q(x_{t-1} | x_t, x0) || N(mean(eps_1), s^2 I)) - KL(... || N(mean(eps_2), s^2 I)), computed
    by kl_gaussian with the means from the posterior at each prediction's x0_hat, equals
    w_t (||eps - eps_1||^2 - ||eps - eps_2||^2) point by point, at every t."""
    schedule = SCHEDULES["ours"]
    for t in range(2, schedule.T + 1):
        x0, eps, x_t = noised(schedule, t, n=500, seed=t)
        _, _, sigma_tilde2 = common.posterior_coefficients(t, schedule, x_t)
        var = {"beta": float(schedule.beta[t]), "beta_tilde": float(sigma_tilde2), "other": 0.37}[variance]
        posterior = common.q_posterior(x0, x_t, t, schedule)
        kl, error = [], []
        for k in (1, 2):
            guess = eps + 0.3 * k * torch.randn(eps.shape, generator=torch.Generator().manual_seed(k), dtype=torch.float64)
            mean, _ = common.q_posterior(common.x0_from_eps(x_t, guess, t, schedule), x_t, t, schedule)
            kl.append(common.kl_gaussian(*posterior, mean, common.identity_times(var, x_t)))
            error.append((eps - guess).square().sum(1))
        weighted = ddpm.eps_weight(t, schedule, var) * (error[0] - error[1])
        gap = ((kl[0] - kl[1]) - weighted).abs().max().item()
        scale = (kl[0] - kl[1]).abs().max().item()
        # float64, but x0_hat at t = 2 divides the eps error by sqrt(1 - alpha_bar_2) ~ 0.0045
        assert gap < 1e-6 * max(1.0, scale), (f"t = {t}, sigma^2 = {variance}: the KL difference and "
                                              f"w_t times the eps errors differ by {gap:.2e} (scale {scale:.2e})")


@pytest.mark.parametrize("name", SCHEDULES)
def test_analytic_variance_for_gaussian_data_is_the_exact_reverse_variance(name):
    """For x0 ~ N(0, I), (x_{t-1}, x_t) is Gaussian with unit variances and correlation sqrt(alpha_t),
    so the exact reverse step has variance 1 - alpha_t = beta_t; E[eps | x_t] = sqrt(1 - alpha_bar_t) x_t
    gives E||eps*||^2 = d (1 - alpha_bar_t), and Analytic-DPM's formula must return beta_t. Also with
    E||eps*||^2 estimated by Monte Carlo, to within its sampling error."""
    schedule = SCHEDULES[name]
    generator = torch.Generator().manual_seed(0)
    for t in range(2, schedule.T + 1):
        beta_t = float(schedule.beta[t])
        exact = ddpm.analytic_variance(t, schedule, torch.tensor(common.D * (1.0 - float(schedule.alpha_bar[t])),
                                                                    dtype=torch.float64))
        assert abs(exact.item() - beta_t) < 1e-12 * max(1.0, beta_t / 1e-5), (
            f"{name} schedule, t = {t}: analytic variance {exact.item():.6e}, exact reverse variance {beta_t:.6e}")
        x_t = torch.randn(50_000, common.D, generator=generator, dtype=torch.float64)   # q(x_t) = N(0, I)
        eps_star = math.sqrt(1.0 - float(schedule.alpha_bar[t])) * x_t
        squares = eps_star.square().sum(1)
        estimate = ddpm.analytic_variance(t, schedule, squares.mean())
        # The formula is linear in E||eps*||^2 with slope -c_t^2 (1 - alpha_bar_t) / (alpha_bar_t d),
        # which near x_T (alpha_bar_T = 0.05) multiplies the sampling error by ~20: allow N_SE of its se.
        c_t = float(common.posterior_coefficients(t, schedule, torch.zeros((), dtype=torch.float64))[0])
        alpha_bar_t = float(schedule.alpha_bar[t])
        se = c_t ** 2 * (1.0 - alpha_bar_t) / (alpha_bar_t * common.D) * squares.std().item() / math.sqrt(len(squares))
        assert abs(estimate.item() - beta_t) < N_SE * se, (
            f"{name} schedule, t = {t}: analytic variance from Monte Carlo {estimate.item():.4e}, exact {beta_t:.4e}, "
            f"se {se:.1e}")


def test_analytic_variance_is_clipped_to_the_range_the_paper_allows():
    """E||eps_theta||^2 above d would mean a negative Var(x0 | x_t): clipped to beta_tilde_t. A tiny
    E||eps_theta||^2 would claim more spread in x0 than the data's half-range r allows: clipped to
    beta_tilde_t + c_t^2 r^2."""
    schedule, t, r = SCHEDULES["ours"], 30, 0.05
    c_t, _, sigma_tilde2 = common.posterior_coefficients(t, schedule, torch.zeros((), dtype=torch.float64))
    low = ddpm.analytic_variance(t, schedule, torch.tensor(3.0, dtype=torch.float64), r)
    high = ddpm.analytic_variance(t, schedule, torch.tensor(0.0, dtype=torch.float64), r)
    assert abs(low.item() - sigma_tilde2.item()) < 1e-15, f"not clipped below: {low.item()} vs {sigma_tilde2.item()}"
    assert abs(high.item() - (sigma_tilde2 + c_t ** 2 * r ** 2).item()) < 1e-15, f"not clipped above: {high.item()}"


def test_best_isotropic_variance_minimises_the_kl_found_by_search():
    """For a deliberately wrong eps-network on roll data, the mean KL over points (kl_gaussian) as
    a function of the variance s^2 is smallest at best_isotropic_variance: a search over 81 values
    of s^2 around it lands on it, at several t."""
    schedule = SCHEDULES["ours"]
    for t in (3, 15, 30, 40):
        x0, eps, x_t = noised(schedule, t, n=4000, seed=t)
        guess = 0.8 * eps + 0.1                            # any imperfect prediction
        x0_hat = common.x0_from_eps(x_t, guess, t, schedule)
        best = ddpm.best_isotropic_variance(t, schedule, (x0 - x0_hat).square().sum(1).mean())
        posterior = common.q_posterior(x0, x_t, t, schedule)
        mean = ddpm.ddpm_mean(x_t, guess, t, schedule)
        factors = torch.exp(torch.linspace(-0.4, 0.4, 81, dtype=torch.float64))
        kl = [common.kl_gaussian(*posterior, mean, common.identity_times(best * f, x_t)).mean() for f in factors]
        found = factors[int(torch.stack(kl).argmin())].item()
        assert abs(found - 1.0) < 0.011, f"t = {t}: the KL is smallest at {found:.3f} x best_isotropic_variance"


def test_reverse_with_variance_of_the_exact_network_of_gaussian_data_is_the_exact_reverse_kernel():
    """For x0 ~ N(0, I), E[eps | x_t] = sqrt(1 - alpha_bar_t) x_t and the exact reverse kernel is
    N(sqrt(1 - beta_t) x_t, beta_t I). Given that network and the table var_t = beta_t,
    reverse_with_variance must return it at every t >= 2, its variance read at entry t of the
    table; at t = 1 the fixed kernel, N(sqrt(1 - beta_1) x_1, beta_1 I), whatever the table says."""
    schedule = SCHEDULES["ours"]
    var = schedule.beta.clone()
    var[1] = 0.123                                        # never read: t = 1 is the fixed kernel
    exact_eps = lambda x_t, t: (torch.sqrt(1.0 - common.at(schedule.alpha_bar, t)).to(x_t) * x_t, None)  # noqa: E731
    reverse = ddpm.reverse_with_variance(exact_eps, schedule, var)
    x_t = torch.randn(50, common.D, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for t in range(1, schedule.T + 1):
        beta_t = float(schedule.beta[t])
        mean, cov = reverse(x_t, t if t == 1 else torch.full((50,), t))
        gap = (mean - math.sqrt(1.0 - beta_t) * x_t).abs().max().item()
        assert gap < 1e-9, f"t = {t}: the mean is {gap:.3g} from the exact reverse mean sqrt(1 - beta_t) x_t"
        assert torch.allclose(cov, beta_t * torch.eye(2, dtype=torch.float64).expand(50, 2, 2), rtol=1e-12, atol=0), (
            f"t = {t}: variance {cov[0, 0, 0].item():.6g}, beta_t = {beta_t:.6g}")


def test_l_simple_training_lowers_the_eps_error_by_a_clear_margin():
    """A few seconds of the chapter's training loop (its moving average of the weights included)
    take E||eps - eps_theta||^2 on fresh points from d = 2 (the untrained network's eps_theta is 0)
    clearly down."""
    chapter = load_script("05_ddpm.py")
    schedule = SCHEDULES["ours"]
    torch.manual_seed(0)
    model = ReverseModel(covariance="none")
    t = torch.randint(2, schedule.T + 1, (20_000,), generator=torch.Generator().manual_seed(1))
    _, eps, x_t = roll.noised_roll(20_000, t, schedule, torch.Generator().manual_seed(2))

    def eps_error(network):
        with torch.no_grad():
            return (eps - network(x_t, t)[0]).square().sum(1).mean().item()

    before = eps_error(model)
    args = argparse.Namespace(iters=150, batch_size=512, lr=3e-3)
    average, losses, _ = chapter.train_l_simple(model, schedule, args, torch.Generator().manual_seed(3), "cpu")
    after = eps_error(average)
    assert abs(before - common.D) < 0.05, f"untrained error {before:.3f}, expected about d = 2"
    # Even E[eps | x_t] leaves about 1 (the default run's loss ends there), so a drop of 0.2, twenty
    # times the Monte Carlo error of these paired estimates, is a clear share of what can be learned.
    assert after < before - 0.2, f"E||eps - eps_theta||^2 {before:.3f} before and {after:.3f} after 150 iterations"
    assert all(math.isfinite(loss) for loss in losses)


WEIGHT_ROW = re.compile(r"^\s+(\d+)\s+([\d.e+-]+)\s+([\d.]+)\s+([\d.]+)$", re.MULTILINE)


def check_weights_table(out, schedule):
    """The printed table of the bound's weights on ||eps - eps_theta||^2, row by row, against the
    weights written in their simplest forms: sigma^2 = beta_t gives beta_t / (2 alpha_t (1 - alpha_bar_t)),
    sigma^2 = beta_tilde_t gives beta_t / (2 alpha_t (1 - alpha_bar_{t-1})), the larger, since
    beta_tilde_t < beta_t; alpha_bar by a Python loop. A table with beta and beta_tilde swapped fails."""
    alpha_bar = [1.0]
    for b in schedule.beta[1:].tolist():
        alpha_bar.append(alpha_bar[-1] * (1.0 - b))
    rows = WEIGHT_ROW.findall(out)
    assert len(rows) >= 5, f"the table of weights is missing:\n{out}"
    for t, beta_t, w_beta, w_beta_tilde in rows:
        t, beta = int(t), float(schedule.beta[int(t)])
        want = {"beta": beta / (2 * (1 - beta) * (1 - alpha_bar[t])),
                "beta_tilde": beta / (2 * (1 - beta) * (1 - alpha_bar[t - 1]))}
        assert abs(float(beta_t) - beta) <= 0.006 * beta, f"t = {t}: beta_t printed {beta_t}, is {beta:.3e}"
        for name, printed in (("beta", w_beta), ("beta_tilde", w_beta_tilde)):
            assert abs(float(printed) - want[name]) <= 5e-5 + 1e-4 * want[name], (
                f"t = {t}: w_t (sigma^2 = {name}) printed {printed}, is {want[name]:.4f}")


def check_fixed_variance_rows(lines, checkpoint, n_heldout, seed=0):
    """The printed rows of the two fixed variances, K entry by entry, against K computed apart: the
    saved eps-network's mean written out from DDPM's Algorithm 2, the variances from their own
    definitions (beta_t; beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t, alpha_bar
    by a Python loop), on the script's held-out points and noise. Rows with beta and beta_tilde
    swapped, or either variance taken from the other's table, fail."""
    network, schedule, _ = checkpoints.load_eps_network(checkpoint)
    alpha_bar = [1.0]
    for b in schedule.beta[1:].tolist():
        alpha_bar.append(alpha_bar[-1] * (1.0 - b))
    variances = {"beta": [float(b) for b in schedule.beta],
                 "beta_tilde": [0.0, 0.0] + [float(schedule.beta[t]) * (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t])
                                             for t in range(2, schedule.T + 1)]}
    printed = {name: (float(k), float(se)) for name, k, se, _, _ in lines}
    apart = {}
    for name, var in variances.items():
        def reverse(x_t, t, var=var):
            t = int(torch.as_tensor(t).flatten()[0])
            beta_t = float(schedule.beta[t])
            with torch.no_grad():
                eps = network(x_t, torch.full((len(x_t),), t))[0]
            mean = (x_t - beta_t / math.sqrt(1 - alpha_bar[t]) * eps) / math.sqrt(1 - beta_t)
            return mean, var[t] * torch.eye(2, dtype=x_t.dtype).expand(len(x_t), 2, 2)
        apart[name] = roll.mean_and_se_bits(roll.heldout_K(reverse, schedule, n_heldout, seed))
        assert abs(printed[name][0] - apart[name][0]) <= 0.0015, (
            f"variance={name}: K printed {printed[name][0]:.3f} bits, computed apart {apart[name][0]:.4f}")
    assert abs(apart["beta"][0] - apart["beta_tilde"][0]) > 0.01, f"the two fixed variances score alike: {apart}"


def test_script_prints_the_five_variance_lines_and_best_isotropic_beats_both_fixed(tmp_path, monkeypatch, capsys):
    """A very short run of main(), in this process: the five lines, in the documented form and
    order; the best isotropic variance scores at least as well as beta_t and beta_tilde_t (it
    maximises each KL term; allowed 3 standard errors of Monte Carlo, since it was fitted on other
    points); the rows of beta_t and beta_tilde_t against their K computed apart; chapter 3's K; the
    checkpoint and the figures written."""
    folder = tmp_path
    chapter = load_script("05_ddpm.py")
    monkeypatch.setattr(chapter, "N_MOMENTS", 2000)
    monkeypatch.setattr(chapter, "LEARNED_ITERS", 20)
    chapter3 = save_fresh_checkpoint(folder / "model.pt")
    code, out, err = call_main("05_ddpm.py", [*SHORT_RUN, "--checkpoint", folder / "ddpm.pt",
                                              "--chapter3", chapter3, "--images", folder], monkeypatch, capsys)
    assert code == 0, f"05_ddpm.py failed ({code}):\n{err[-2000:]}"
    lines = VARIANCE_LINE.findall(out)
    assert [line[0] for line in lines] == ["beta", "beta_tilde", "analytic", "isotropic_best", "learned"], out
    K = {name: (float(k), float(se)) for name, k, se, _, _ in lines}
    for fixed in ("beta", "beta_tilde"):
        assert K["isotropic_best"][0] >= K[fixed][0] - 3 * K[fixed][1], f"isotropic_best below {fixed}: {K}"
    assert re.search(r"^chapter 3's model .*: K = -?[\d.]+ bits  \(se [\d.]+\)$", out, re.MULTILINE), out
    check_weights_table(out, SCHEDULES["ours"])
    check_fixed_variance_rows(lines, folder / "ddpm.pt", n_heldout=500)
    model, _, _ = checkpoints.load_eps_network(folder / "ddpm.pt")
    assert model.config["covariance"] == "none"
    for figure in ("05_weights.png", "05_kl_per_step.png", "05_samples.png"):
        assert (folder / figure).stat().st_size > 0, figure
    # --reuse carries on from the checkpoint's random numbers: the same five lines, digit for digit
    code, reused_out, err = call_main("05_ddpm.py", [*SHORT_RUN, "--reuse", "--checkpoint", folder / "ddpm.pt",
                                                     "--chapter3", chapter3, "--images", folder], monkeypatch, capsys)
    assert code == 0, f"05_ddpm.py --reuse failed ({code}):\n{err[-2000:]}"
    assert VARIANCE_LINE.findall(reused_out) == lines, (lines, VARIANCE_LINE.findall(reused_out))


def test_missing_or_foreign_checkpoint_is_refused_in_one_line(tmp_path, no_work_allowed, monkeypatch, capsys):
    """--reuse without a checkpoint, --reuse of chapter 3's model, and --chapter3 given an
    eps-network: exit status 1, one line naming the file and the command that makes a good one."""
    chapter3 = save_fresh_checkpoint(tmp_path / "model.pt")
    eps_network = save_fresh_checkpoint(tmp_path / "ddpm.pt", model=ReverseModel(covariance="none"))
    cases = [(["--reuse", "--checkpoint", tmp_path / "none.pt"], "no checkpoint at", "python scripts/05_ddpm.py"),
             (["--reuse", "--checkpoint", chapter3], "not an eps-network", "python scripts/05_ddpm.py"),
             (["--chapter3", eps_network], "holds an eps-network", "scripts/03_train.py")]
    for args, problem, command in cases:
        code, _, err = call_main("05_ddpm.py", [*args, "--images", tmp_path / "images"], monkeypatch, capsys)
        line = the_error_line(err, f"05_ddpm.py {args}")
        assert code == 1 and problem in line and command in line, f"{args}: exit {code}, {line!r}"


@pytest.mark.parametrize("args, option", [(["--iters", "0"], "--iters"), (["--lr", "nan"], "--lr"),
                                          (["--n-samples", "-3"], "--n-samples"), (["--n-heldout", "1"], "--n-heldout"),
                                          (["--batch-size", "2.5"], "--batch-size")])
def test_bad_number_is_refused_by_argparse_naming_the_option(args, option, tmp_path, no_work_allowed, monkeypatch, capsys):
    code, _, err = call_main("05_ddpm.py", [*args, "--checkpoint", tmp_path / "ddpm.pt", "--images", tmp_path],
                             monkeypatch, capsys)
    line = the_error_line(err, f"05_ddpm.py {args}")
    assert code == 2 and option in line, f"{args}: exit {code}, {line!r}"


def test_non_finite_loss_stops_without_writing_a_checkpoint(tmp_path, monkeypatch, capsys):
    code, _, err = call_main("05_ddpm.py", ["--iters", 5, "--batch-size", 64, "--lr", "1e30", "--device", "cpu",
                                            "--checkpoint", tmp_path / "ddpm.pt", "--images", tmp_path,
                                            "--chapter3", tmp_path / "none.pt"], monkeypatch, capsys)
    assert "Traceback" not in err, err
    line = err.strip().splitlines()[-1]   # after the progress bar's last state
    assert code == 1 and line.startswith("error:") and "--lr" in line and not (tmp_path / "ddpm.pt").exists(), f"exit {code}, {line!r}"
