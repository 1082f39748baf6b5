"""Chapter 7: the importance-weighted bound, the schedules between fixed ends, and the best K
against T, each checked by a route that does not use its formula: a closed-form likelihood that
the weights must reproduce exactly, K from its KL terms and entropies, the schedules' own
definitions inverted, and brute-force Bayes run directly."""
import argparse
import math
import re

import pytest
import torch

import common
import likelihood
import checkpoints
import roll
from conftest import run_main, start_script
from model import ReverseModel

D = common.D


def gen(seed):
    return torch.Generator().manual_seed(seed)


def log_weights(reverse, x0, schedule, m, seed):
    """An (n, m) table of log weights: m forward trajectories for each point of x0."""
    return likelihood.log_weight(reverse, x0.repeat_interleave(m, dim=0), schedule, gen(seed)).reshape(-1, m)


def standard_normal_reverse(schedule, var_scale=1.0):
    """The exact reverse step of N(0, I) data, N(sqrt(1 - beta_t) x_t, beta_t I) (test_bound.py
    derives it), its variance optionally scaled to make it wrong."""
    def reverse(x_t, t):
        beta_t = float(schedule.beta[t])
        return math.sqrt(1.0 - beta_t) * x_t, common.identity_times(var_scale * beta_t, x_t)
    return reverse


# --- the importance-weighted bound ---------------------------------------------------------------

@pytest.mark.parametrize("shape, T", [("power", 40), ("cosine", 10)])
def test_iw_bound_is_the_exact_log_likelihood_for_gaussian_data_and_exact_reverse_steps(shape, T):
    """For x0 ~ N(0, I) and the exact reverse steps, p(x_{0:T}) = q(x_{0:T}) as joint laws, so
    p(x0, x_{1:T}) / q(x_{1:T} | x0) = p(x0) = N(x0; 0, I) for every trajectory: every log weight
    of a point is the same number, and the bound equals -|x0|^2 / 2 - log(2 pi) for every M.
    A factor left out or taken at the wrong step would make the weights vary with the trajectory."""
    schedule = likelihood.schedule_between_ends(T, shape)
    x0 = torch.randn(100, D, generator=gen(0), dtype=torch.float64)
    exact = -0.5 * (x0 ** 2).sum(dim=1) - math.log(2.0 * math.pi)
    table = log_weights(standard_normal_reverse(schedule), x0, schedule, 16, seed=1)
    spread = (table.max(dim=1).values - table.min(dim=1).values).max().item()
    assert spread < 1e-8, f"log weights of one point differ by up to {spread:.2e} nats across trajectories"
    for m in (1, 4, 16):
        gap = (likelihood.importance_weighted_bound(table[:, :m]) - exact).abs().max().item()
        assert gap < 1e-8, f"M={m}: the bound is {gap:.2e} nats from log N(x0; 0, I) (tolerance 1e-8)"


def test_iw_bound_of_a_wrong_reverse_process_is_below_the_likelihood_and_rises_with_M():
    """The same data with reverse variances doubled: the weights now vary, the bound sits below
    the exact log-likelihood, and it rises with M (paired over points, by more than 4 se)."""
    schedule = common.make_schedule()
    x0 = torch.randn(400, D, generator=gen(2), dtype=torch.float64)
    exact = -0.5 * (x0 ** 2).sum(dim=1) - math.log(2.0 * math.pi)
    table = log_weights(standard_normal_reverse(schedule, var_scale=2.0), x0, schedule, 16, seed=3)
    one, sixteen = likelihood.importance_weighted_bound(table[:, :1]), likelihood.importance_weighted_bound(table)
    below, below_se = (exact - sixteen).mean().item(), (exact - sixteen).std().item() / math.sqrt(len(x0))
    rise, rise_se = (sixteen - one).mean().item(), (sixteen - one).std().item() / math.sqrt(len(x0))
    assert below > 4 * below_se, f"M=16 bound {below:.3f} +- {below_se:.3f} nats below log p(x0): expected > 4 se"
    assert rise > 4 * rise_se, f"M=16 minus M=1: {rise:.3f} +- {rise_se:.3f} nats, expected a rise > 4 se"


@pytest.fixture(scope="module")
def small_model():
    """A small full-covariance network trained for a few seconds on the bound, as in chapter 3."""
    torch.manual_seed(0)
    generator, schedule = gen(0), common.make_schedule()
    model = ReverseModel(hidden=32, depth=2, n_frequencies=8, covariance="full")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    reverse = common.reverse_of(model, schedule)
    for _ in range(150):
        x0 = roll.swiss_roll(512, generator)
        t = torch.randint(2, common.T + 1, (512,), generator=generator)
        loss = (common.T - 1) * common.kl_one_step(reverse, x0, t, schedule, generator).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), schedule


def test_one_trajectory_bound_matches_K_of_a_small_trained_model(small_model):
    """M = 1 is the bound E_q[log p(x_{0:T}) - log q(x_{1:T} | x0)] itself, computed from the
    densities of both chains; K (chapter 3) is the same expectation written as KL terms and
    entropies. On the same held-out points their means agree within 4 se of the difference;
    and the bound over M = 8 is above M = 1 (paired, > 4 se)."""
    model, schedule = small_model
    reverse = common.reverse_of(model, schedule)
    n = 2000
    K = roll.heldout_K(reverse, schedule, n, seed=1)
    table = log_weights(reverse, roll.heldout_roll(n), schedule, 8, seed=2)
    difference = table.mean(dim=1) - K
    mean, se = difference.mean().item(), difference.std().item() / math.sqrt(n)
    print(f"small model: K = {K.mean().item():.3f} nats, one-trajectory bound {table.mean().item():.3f}, "
          f"difference {mean:+.4f} +- {se:.4f}")
    assert se < 0.05, f"se of the difference {se:.3f} nats: too noisy to check anything"
    assert abs(mean) < 4 * se, f"one-trajectory bound minus K = {mean:+.4f} +- {se:.4f} nats, expected 0 within 4 se"
    rise = likelihood.importance_weighted_bounds(table, [1, 8])
    gain = rise[8] - rise[1]
    gain_mean, gain_se = gain.mean().item(), gain.std().item() / math.sqrt(n)
    assert gain_mean > 4 * gain_se, f"M=8 minus M=1: {gain_mean:+.4f} +- {gain_se:.4f} nats, expected a rise > 4 se"


# --- schedules between fixed ends ----------------------------------------------------------------

@pytest.mark.parametrize("shape", likelihood.SCHEDULE_SHAPES)
def test_schedules_between_ends_keep_both_ends_and_a_decreasing_alpha_bar(shape):
    """alpha_bar_1 and alpha_bar_T are those of our schedule (so beta_1, and with it the ceiling
    of K, is kept) for every T; alpha_bar falls strictly and every beta_t is in (0, 1)."""
    ours = common.make_schedule()
    for T in (2, 10, 40, 100):
        schedule = likelihood.schedule_between_ends(T, shape)
        assert schedule.T == T, f"{shape}: asked for T={T}, got {schedule.T}"
        for ours_t, t in ((1, 1), (common.T, T)):
            want, got = float(ours.alpha_bar[ours_t]), float(schedule.alpha_bar[t])
            assert abs(got - want) < 1e-12, f"{shape}, T={T}: alpha_bar_{t} = {got!r}, ours {want!r}"
        alpha_bar, beta = schedule.alpha_bar, schedule.beta[1:]
        assert (alpha_bar[1:] < alpha_bar[:-1]).all(), f"{shape}, T={T}: alpha_bar does not fall at every step"
        assert ((beta > 0) & (beta < 1)).all(), f"{shape}, T={T}: beta outside (0, 1): {beta.tolist()}"


def test_each_shape_follows_its_definition():
    """Inverted from alpha_bar by hand: "linear" has a log SNR with equal steps (and at T = 40 is
    our schedule itself), "cosine" an angle arccos(sqrt(alpha_bar_t)) with equal steps, and
    "power" between the old schedule's ends is that schedule, beta_t on its curve
    log beta_t = log beta_1 + ((t - 1) / (T - 1))^1.7 log(0.3 / beta_1), computed in a loop."""
    def second_differences(values):
        return max(abs(a - 2 * b + c) for a, b, c in zip(values, values[1:], values[2:]))

    abar = likelihood.schedule_between_ends(25, "linear").alpha_bar[1:].tolist()
    assert second_differences([math.log(a / (1 - a)) for a in abar]) < 1e-9, "linear: log SNR is not linear in t"
    abar = likelihood.schedule_between_ends(25, "cosine").alpha_bar[1:].tolist()
    assert second_differences([math.acos(math.sqrt(a)) for a in abar]) < 1e-9, "cosine: the angle is not linear in t"
    gap = (likelihood.schedule_between_ends(common.T, "linear").beta - common.make_schedule().beta).abs().max().item()
    assert gap < 1e-12, f"'linear' at T = 40 differs from our schedule by {gap:.2e} in beta"
    old_beta = [1e-5 * (0.3 / 1e-5) ** ((t - 1) / 39) ** 1.7 for t in range(1, 41)]
    old_alpha_bar = [math.prod(1.0 - b for b in old_beta[:t]) for t in range(1, 41)]
    old_end = math.log(old_alpha_bar[-1] / (1.0 - old_alpha_bar[-1]))
    beta = likelihood.schedule_between_ends(40, "power", last_log_snr=old_end).beta[1:].tolist()
    worst = max(abs(b - want) / want for b, want in zip(beta, old_beta))
    assert worst < 1e-9, f"'power' between the old ends differs from the old schedule's beta by {worst:.2e} (relative)"
    for bad in ({"T": 1}, {"T": 10, "shape": "square"}):
        with pytest.raises(ValueError):
            likelihood.schedule_between_ends(**bad)


# --- the best K against T ------------------------------------------------------------------------

def small_case(T):
    """A schedule of T steps between the ends of ours with beta_1 = 1e-4: coarse enough that a
    2,000-point curve grid resolves its first steps (about a second per schedule)."""
    return likelihood.schedule_between_ends(T, "linear", common.make_schedule(beta_1=1e-4))


def test_both_classes_at_once_equal_brute_force_bayes_run_per_class():
    """best_K_both_classes's shortcut (posterior moments computed once, the diagonal class cut
    from the full one) gives, point by point, the K of roll.bayes_optimal_reverse run for each class."""
    best_K_both_classes = likelihood.best_K_both_classes
    schedule = small_case(10)
    both = best_K_both_classes(schedule, 100, seed=4, n_curve=2000)
    for covariance in ("diagonal", "full"):
        direct = roll.heldout_K(roll.bayes_optimal_reverse(schedule, covariance, 2000), schedule, 100, seed=4)
        gap = (both[covariance] - direct).abs().max().item()
        assert gap < 1e-3, f"{covariance}: the shortcut's K differs from the direct one by up to {gap:.2e} nats"


def test_best_K_grows_from_10_to_40_steps():
    """With the ends held, more steps give a better best K (brute-force Bayes, 1,000 held-out
    points): the diagonal class by more than 4 se of the paired difference (about 0.5 nats here),
    the full class, closer to its best already at T = 10, by more than 2 se (about 0.16 nats);
    and at each T full covariance does no worse than diagonal."""
    best_K_both_classes = likelihood.best_K_both_classes
    n = 1000
    few, many = (best_K_both_classes(small_case(T), n, seed=5, n_curve=2000) for T in (10, 40))
    for covariance, margin in (("diagonal", 4), ("full", 2)):
        gain = many[covariance] - few[covariance]
        mean, se = gain.mean().item(), gain.std().item() / math.sqrt(n)
        print(f"{covariance}: best K at T=40 minus T=10: {mean:+.3f} +- {se:.3f} nats")
        assert mean > margin * se, (f"{covariance}: best K at T=40 minus T=10 = {mean:+.3f} +- {se:.3f} nats, "
                                    f"expected > {margin} se")
    for T, case in ((10, few), (40, many)):
        gain = case["full"] - case["diagonal"]
        mean, se = gain.mean().item(), gain.std().item() / math.sqrt(n)
        assert mean > -3 * se, f"T={T}: full minus diagonal = {mean:+.3f} +- {se:.3f} nats: full scored below diagonal"


# --- the script ----------------------------------------------------------------------------------

LINES = {
    "iw": re.compile(r"^M=(\d+)  K_IW = (-?[\d.]+) bits  \(se ([\d.]+)\)$", re.MULTILINE),
    "best": re.compile(r"^T=(\d+)  class=(diagonal|full)  Bayes-optimal K = (-?[\d.]+) bits  \(se ([\d.]+)\)$", re.MULTILINE),
    "shape": re.compile(r"^T=(\d+)  shape=(\w+)  class=(diagonal|full)  Bayes-optimal K = (-?[\d.]+) bits  \(se ([\d.]+)\)$",
                        re.MULTILINE),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The script run side by side: a run without a checkpoint and one with a bad number as real
    processes (their exit status and stderr), and meanwhile a tiny run on an untrained model's
    checkpoint in this process (conftest.run_main): name -> (folder, CompletedProcess)."""
    folder = tmp_path_factory.mktemp("chapter7")
    torch.manual_seed(0)
    checkpoints.save_checkpoint(folder / "model.pt", ReverseModel(hidden=16, depth=1, n_frequencies=4),
                             common.make_schedule(), argparse.Namespace(), 0)
    tiny = ["--points", 6, "--M", 1, 2, 4, "--bayes-points", 4, "--steps", 2, 3, "--shape-steps", 3]
    started = {
        "missing": start_script("07_bound.py", "--checkpoint", folder / "absent.pt", "--images", folder),
        "one step": start_script("07_bound.py", "--steps", 10, 1, "--images", folder),
    }
    tiny = run_main("07_bound.py", "--checkpoint", folder / "model.pt", "--images", folder, *tiny)
    return folder, {"tiny": tiny, **{name: run.wait() for name, run in started.items()}}


def test_script_prints_every_number_in_its_documented_line(runs):
    """The tiny run prints one K_IW line per M, one best-K line per T and class, and one line per
    T, path and class for the paths, and writes the three figures."""
    folder, results = runs
    result = results["tiny"]
    assert result.returncode == 0, f"07_bound.py failed:\n{result.stderr[-2000:]}"
    assert [int(m) for m, *_ in LINES["iw"].findall(result.stdout)] == [1, 2, 4], result.stdout
    assert [(int(T), c) for T, c, *_ in LINES["best"].findall(result.stdout)] == [
        (2, "diagonal"), (2, "full"), (3, "diagonal"), (3, "full")], result.stdout
    assert [(s, c) for _, s, c, *_ in LINES["shape"].findall(result.stdout)] == [
        (s, c) for s in likelihood.SCHEDULE_SHAPES for c in ("diagonal", "full")], result.stdout
    for name in ("07_iw_bound.png", "07_bound_vs_T.png", "07_schedules.png"):
        assert (folder / name).stat().st_size > 0, f"{name} missing or empty"


@pytest.mark.parametrize("case, status, words", [
    ("missing", 1, ["no checkpoint", "scripts/03_train.py"]),
    ("one step", 2, ["--steps", "at least 2"]),
])
def test_bad_input_is_refused_in_one_line(runs, case, status, words):
    """A missing checkpoint or an out-of-range number: one line on stderr naming the problem,
    exit status != 0, no traceback."""
    result = runs[1][case]
    message = result.stderr.strip().splitlines()[-1]
    assert result.returncode == status, f"{case}: exit {result.returncode}, expected {status}:\n{result.stderr}"
    assert "Traceback" not in result.stderr, f"{case}: a traceback instead of a message:\n{result.stderr}"
    assert all(word in message for word in words), f"{case}: {message!r} does not say {words}"
