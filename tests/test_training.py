"""Chapter 3: training raises the bound, every step t = 2..T is trained, the learning rate follows
its warm-up and cosine, and the step index means the same thing in the loss and in the sampler
(the scripts this project grew from trained head t-2 and sampled with head t-1)."""
import re
import sys

import numpy as np
import pytest
import torch

import common
import checkpoints
import roll
from model import ReverseModel
from conftest import load_script, run_main

K_LINE = re.compile(r"^K = (-?[\d.]+) bits  \(K - L_null = (-?[\d.]+) bits; paper Table 1: 2\.35 / 6\.45\)$",
                    re.MULTILINE)
ITERS, BATCH = 200, 1024   # a few seconds of training: enough to see K rise and steps specialise


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """03_train.py run briefly, its main() in this process (conftest.run_main): its stdout and the
    model it saved."""
    folder = tmp_path_factory.mktemp("train")
    run = run_main("03_train.py", "--iters", ITERS, "--batch-size", BATCH, "--seed", 0, "--n-heldout", 1000,
                   "--checkpoint", folder / "model.pt", "--images", folder)
    assert run.returncode == 0, f"03_train.py failed:\n{run.stderr[-2000:]}"
    model, schedule, checkpoint = checkpoints.load_checkpoint(folder / "model.pt")
    return run.stdout, model, schedule, folder


def held_out_K_bits(model, schedule, n=4000):
    """Mean K over held-out points, every t summed, and its standard error, in bits."""
    return roll.mean_and_se_bits(roll.heldout_K(common.reverse_of(model, schedule), schedule, n, seed=1))


def test_short_training_raises_K_by_a_clear_margin(trained):
    """The K line is printed in its documented form, and a few seconds of training lift K far
    above the untrained network's (same architecture and seed, before any step)."""
    stdout, model, schedule, folder = trained
    match = K_LINE.search(stdout)
    assert match, f"no K line of the documented form in:\n{stdout}"
    printed, printed_minus_null = float(match[1]), float(match[2])
    null = common.nats_to_bits(common.null_log_likelihood())
    assert abs(printed_minus_null - (printed - null)) < 2e-3, (
        f"K - L_null printed {printed_minus_null}, K {printed} - L_null {null:.3f} = {printed - null:.3f}")
    torch.manual_seed(0)
    before, before_se = held_out_K_bits(ReverseModel(), schedule)
    after, after_se = held_out_K_bits(model, schedule)
    assert after > before + 3.0, (f"K before training {before:.2f} +- {before_se:.2f} bits, after {ITERS} "
                                  f"iterations {after:.2f} +- {after_se:.2f}: expected a rise of > 3 bits")
    assert after < common.nats_to_bits(roll.K_ceiling()), f"K = {after:.2f} bits above the ceiling of K"
    assert (folder / "03_training_curve.png").stat().st_size > 0


def test_sampler_asks_the_network_about_the_same_step_as_the_loss(trained):
    """sample_chain turns x_t into x_{t-1} with the network at index t, for t = T..2, then the
    fixed kernel at t = 1, exactly as the loss scores p(x_{t-1} | x_t) at index t: every index
    is checked, and the x_t the network sees is the chain's own x_t. (A behavioural check, that
    index t fits step t better than its neighbours, is too weak to rely on: neighbouring steps
    differ little, which is how the off-by-one of the earlier scripts went unnoticed.)"""
    _, model, schedule, _ = trained
    seen = []

    def network(x_t, steps):
        seen.append((int(steps[0]), x_t.clone()))
        return model(x_t, steps)

    reverse = common.reverse_of(network, schedule)
    trajectory = common.sample_chain(reverse, 50, generator=torch.Generator().manual_seed(3))
    assert [t for t, _ in seen] == list(range(common.T, 1, -1)), f"network called at {[t for t, _ in seen]}"
    for t, x_t in seen:
        assert torch.equal(x_t, trajectory[t]), f"the network at index {t} was not given x_{t}"
    loss_steps = []
    common.kl_one_step(lambda x_t, t: (loss_steps.append(int(t[0])), common.p_reverse(model, x_t, t, schedule))[1],
                       roll.heldout_roll(10), torch.full((10,), 7), schedule)
    assert loss_steps == [7], f"the loss for the KL of step 7 asked the reverse process about {loss_steps}"


# --- what the training loop draws and how fast it steps (in-process) ------------------------------

class StopTraining(BaseException):
    """Raised from inside the training loop once the test has seen what it needs."""


def test_training_draws_every_step_from_2_to_T_uniformly(tmp_path, monkeypatch, keep_process_settings):
    """The steps t of one batch of 20,000 pairs, as 03_train.py draws them: every t from 2 to T
    appears (torch.randint(2, T) would never draw T) and none outside, with counts uniform by a
    chi-square test (38 degrees of freedom; 80 is passed by chance with probability ~1e-4)."""
    drawn = []

    def kl_one_step(reverse, x0, t, schedule, generator=None):
        drawn.append(t.cpu())
        raise StopTraining

    monkeypatch.setattr(common, "kl_one_step", kl_one_step)
    monkeypatch.setattr(sys, "argv", ["03_train.py", "--iters", "1", "--batch-size", "20000", "--device", "cpu",
                                      "--checkpoint", str(tmp_path / "model.pt"), "--images", str(tmp_path)])
    with pytest.raises(StopTraining):
        load_script("03_train.py").main()
    t = drawn[0]
    T = common.T
    counts = torch.bincount(t, minlength=T + 1)
    assert t.shape == (20000,) and counts[:2].sum() == 0 and len(counts) == T + 1, (
        f"steps drawn outside 2..{T}: min {t.min().item()}, max {t.max().item()}")
    missing = [s for s in range(2, T + 1) if counts[s] == 0]
    assert not missing, f"steps never drawn in 20,000 draws: {missing}"
    expected = len(t) / (T - 1)
    chi2 = ((counts[2:].double() - expected) ** 2 / expected).sum().item()
    assert chi2 < 80, f"step counts are not uniform over 2..{T}: chi-square {chi2:.1f} on 38 dof; counts {counts[2:].tolist()}"


def warmup_then_cosine(iters, peak):
    """The schedule the README states, written out independently: over the first 2% of the run
    (at least one iteration) the rate climbs in equal steps from peak / length to peak, then
    falls as peak cos^2(pi / 2 * fraction of the remaining run done), which is the cosine decay
    peak (1 + cos(pi x)) / 2 in another form."""
    length = max(1, round(iters / 50))
    ramp = np.linspace(peak / length, peak, length)
    x = np.arange(iters - length) / (iters - length)
    return np.concatenate([ramp, peak * np.cos(np.pi / 2 * x) ** 2])


@pytest.mark.parametrize("iters", [1, 2, 3, 49, 1000, 4321])
def test_learning_rate_warms_up_then_decays_on_a_cosine_and_is_never_0(iters):
    train = load_script("03_train.py")
    peak = 3e-3
    got = np.array([train.learning_rate(i, iters, peak) for i in range(iters)])
    want = warmup_then_cosine(iters, peak)
    gap = np.abs(got - want).max() / peak
    assert gap < 1e-12, f"--iters {iters}: learning rates differ from warm-up + cosine by {gap:.3g} of the peak; " \
                        f"first {got[:3].tolist()}, expected {want[:3].tolist()}"
    assert got.min() > 0, f"--iters {iters}: the learning rate is 0 at iteration {int(got.argmin())}: a wasted step"
    assert abs(got.max() - peak) < 1e-15, f"--iters {iters}: the rate peaks at {got.max()}, not {peak}"


def test_every_optimizer_step_uses_the_scheduled_learning_rate(tmp_path, monkeypatch, keep_process_settings):
    """03_train.py sets the rate before each Adam step: the rates of the 5 steps of a 5-iteration
    run are the schedule's for i = 0..4, the first one included (not 0, not the peak)."""
    used, real_step = [], torch.optim.Adam.step

    def step(self, *args, **kwargs):
        used.append(self.param_groups[0]["lr"])
        if len(used) == 5:
            raise StopTraining
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    monkeypatch.setattr(sys, "argv", ["03_train.py", "--iters", "5", "--batch-size", "16", "--lr", "0.002",
                                      "--device", "cpu", "--checkpoint", str(tmp_path / "model.pt"),
                                      "--images", str(tmp_path)])
    with pytest.raises(StopTraining):
        load_script("03_train.py").main()
    want = warmup_then_cosine(5, 0.002).tolist()
    assert np.allclose(used, want, rtol=1e-12, atol=0), f"Adam stepped with learning rates {used}, expected {want}"


@pytest.fixture(scope="module")
def trained_diagonal(tmp_path_factory):
    """03_train.py --covariance diagonal, a tiny run in this process (conftest.run_main): the model it saved."""
    folder = tmp_path_factory.mktemp("train_diagonal")
    run = run_main("03_train.py", "--covariance", "diagonal", "--iters", 30, "--batch-size", 256, "--n-heldout", 200,
                   "--seed", 0, "--checkpoint", folder / "model.pt", "--images", folder)
    assert run.returncode == 0, f"03_train.py --covariance diagonal failed:\n{run.stderr[-2000:]}"
    return checkpoints.load_checkpoint(folder / "model.pt")


@pytest.mark.parametrize("covariance", ["full", "diagonal"])
def test_both_covariance_classes_train_save_load_and_sample(covariance, trained, trained_diagonal):
    """Each class comes back from its checkpoint as the class it was trained as: the diagonal
    model's factor L has a zero below its diagonal, the full model's does not (training moved it
    off its zero start), and both sample finite points through every step."""
    if covariance == "full":
        _, model, schedule, _ = trained
    else:
        model, schedule, checkpoint = trained_diagonal
        assert checkpoint["args"]["covariance"] == "diagonal"
    assert model.config["covariance"] == covariance, f"saved as {covariance}, loaded as {model.config['covariance']}"
    x_t = roll.heldout_roll(500)
    with torch.no_grad():
        _, factor = model(x_t, torch.full((500,), 5))
    below = factor[:, 1, 0].abs().max().item()
    if covariance == "diagonal":
        assert below == 0, f"a diagonal model's L has {below:.2e} below its diagonal"
    else:
        assert below > 1e-3, f"the full model's L stayed diagonal after training (largest entry below it {below:.2e})"
    samples = common.sample_chain(common.reverse_of(model, schedule), 500, schedule.T,
                                  torch.Generator().manual_seed(4))[0]
    assert samples.shape == (500, 2) and torch.isfinite(samples).all(), f"{covariance}: samples not finite"


def test_bad_covariance_is_refused_in_one_line(load_script, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sys, "argv", ["03_train.py", "--covariance", "spherical", "--checkpoint",
                                      str(tmp_path / "model.pt"), "--images", str(tmp_path)])
    with pytest.raises(SystemExit) as exit:
        load_script("03_train.py").main()
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert exit.value.code == 2 and len(errors) == 1, f"exit {exit.value.code}, stderr:\n{err}"
    assert "--covariance" in errors[0] and "full" in errors[0] and "diagonal" in errors[0], (
        f"the message should name --covariance and its choices: {errors[0]}")
    assert "Traceback" not in err and not list(tmp_path.iterdir()), "files written or a traceback"
