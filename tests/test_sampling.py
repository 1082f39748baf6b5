"""Chapter 4, scripts/04_sample.py: ancestral sampling through every step, reproducible samples,
their distance to the roll, Figure 1 and the animation, and one clear line for a bad checkpoint.

The trained model comes from a short training run inside this file, so these tests do not wait
for (or depend on) scripts/03_train.py.
"""
import argparse
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

import common
import checkpoints
import roll
from model import ReverseModel
from conftest import run_main, start_script

TRAIN_ITERS = 200      # samples' median distance to the curve 8-10x under noise's (measured, 1,000 samples;
TRAIN_BATCH = 256      # 19x after 400 steps, 3.5-4.5x after 100): clearly closer, in ~1.5 s
TRAIN_LR = 1e-2
N_SAMPLES = 1000       # per script run: small keeps the runs quick, large enough to measure
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # three runs side by side on 2 cores: one thread each
SCORES = re.compile(r"^ *(samples|real roll|noise N\(0, I\)): off-curve ([\d.]+)%  along-curve KS p = (\S+)  "
                    r"W1\(u\) = ([\d.]+) \(real roll: ([\d.]+)-([\d.]+)\)  median distance ([\d.]+)$", re.MULTILINE)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """A checkpoint of a briefly trained model, trained as chapter 3 does: loss (T - 1) times
    the mean over the batch of KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t)), t uniform in 2..T."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small network on a shared 2-core machine: one thread is faster
    try:
        torch.manual_seed(0)
        generator = torch.Generator().manual_seed(0)
        schedule = common.make_schedule()
        model = ReverseModel()
        optimizer = torch.optim.Adam(model.parameters(), lr=TRAIN_LR)
        reverse = common.reverse_of(model, schedule)
        for _ in range(TRAIN_ITERS):
            x0 = roll.swiss_roll(TRAIN_BATCH, generator)
            t = torch.randint(2, common.T + 1, (TRAIN_BATCH,), generator=generator)
            loss = (common.T - 1) * common.kl_one_step(reverse, x0, t, schedule, generator).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    path = tmp_path_factory.mktemp("checkpoint") / "model.pt"
    checkpoints.save_checkpoint(path, model.eval(), schedule, argparse.Namespace(iters=TRAIN_ITERS), TRAIN_ITERS)
    return path


@pytest.fixture(scope="module")
def runs(checkpoint, tmp_path_factory):
    """The script run as a reader runs it, side by side: twice with the same seed ("first" a real
    process, "second" meanwhile in this process, conftest.run_main) and once without a checkpoint
    ("missing", a real process): name -> (folder, CompletedProcess)."""
    folders = {name: tmp_path_factory.mktemp(name) for name in ("first", "second", "missing")}

    def arguments(name):
        model = checkpoint if name != "missing" else folders[name] / "model.pt"
        return ["--checkpoint", model, "--out", folders[name] / "samples.npy", "--images", folders[name] / "images",
                "--n-samples", N_SAMPLES, "--seed", 7, "--device", "cpu"]

    started = {name: start_script("04_sample.py", *arguments(name), env=ONE_THREAD) for name in ("first", "missing")}
    done = {"second": run_main("04_sample.py", *arguments("second"))}
    done.update({name: handle.wait() for name, handle in started.items()})
    return {name: (folders[name], done[name]) for name in folders}


@pytest.fixture(scope="module")
def two_runs(runs):
    """The two runs with a good checkpoint and the same seed, both checked to have succeeded."""
    for name in ("first", "second"):
        result = runs[name][1]
        assert result.returncode == 0, f"04_sample.py failed:\n{result.stdout}\n{result.stderr}"
    return [runs["first"], runs["second"]]


def test_samples_are_finite_points_of_shape_n_by_2(two_runs):
    folder, _ = two_runs[0]
    samples = np.load(folder / "samples.npy")
    assert samples.shape == (N_SAMPLES, 2), f"samples.npy has shape {samples.shape}, not ({N_SAMPLES}, 2)"
    assert np.issubdtype(samples.dtype, np.floating), f"samples.npy holds {samples.dtype}, not floats"
    assert np.isfinite(samples).all(), f"{(~np.isfinite(samples)).sum()} non-finite numbers in the samples"


def test_same_seed_gives_bit_identical_samples(two_runs):
    (first, _), (second, _) = two_runs
    a, b = np.load(first / "samples.npy"), np.load(second / "samples.npy")
    differing = int((a != b).sum())
    assert a.tobytes() == b.tobytes(), f"two runs with --seed 7 differ in {differing} of {a.size} numbers"


def test_saved_samples_are_x0_of_the_chain_drawn_from_the_seed(two_runs, checkpoint):
    # The script's samples are trajectory[0] of sample_chain, driven by a generator seeded
    # with --seed: so --seed chooses the samples, and what is saved is the end of the chain.
    folder, _ = two_runs[0]
    model, schedule, _ = checkpoints.load_checkpoint(checkpoint)
    x0 = common.sample_chain(common.reverse_of(model, schedule), N_SAMPLES, schedule.T,
                             torch.Generator().manual_seed(7))[0]
    gap = np.abs(np.load(folder / "samples.npy") - x0.numpy()).max()
    assert gap < 1e-4, f"saved samples differ from the seed's chain by up to {gap:.2e}"


def test_sampling_applies_all_T_reverse_steps_ending_at_x0(checkpoint):
    # Record every t the sampler asks the reverse process about. A public version of this
    # experiment stopped at t = 2 and never applied p(x0 | x1).
    model, schedule, _ = checkpoints.load_checkpoint(checkpoint)
    asked = []
    reverse = common.reverse_of(model, schedule)

    def recorded(x_t, t):
        asked.append(int(t))
        return reverse(x_t, t)

    trajectory = common.sample_chain(recorded, 100, schedule.T, torch.Generator().manual_seed(0))
    T = common.T
    assert asked == list(range(T, 0, -1)), f"reverse steps applied: {asked}, expected {T}, {T - 1}, ..., 1"
    assert len(trajectory) == T + 1, f"trajectory has {len(trajectory)} entries, expected T + 1 = {T + 1}"
    moved = (trajectory[0] - trajectory[1]).abs().max().item()
    assert moved > 0, "x0 equals x1: the last step p(x0 | x1) was not applied"


def test_last_sampling_step_draws_x0_with_variance_beta_1_around_x1():
    """p(x0 | x1) is a Gaussian of variance beta_1 (paper eq. 44), and the sampler draws from
    it: with every earlier step a point mass at one x1, the n samples x0 spread around
    sqrt(1 - beta_1) x1 with variance beta_1 per coordinate (within 5 standard errors,
    SE = beta_1 sqrt(2 / n)). A last step that returns the mean without noise gives variance 0."""
    schedule, n = common.make_schedule(), 20_000
    x1 = torch.tensor([0.7, -1.2], dtype=torch.float64)
    model = ReverseModel().double()   # asked nothing: t = 1 is the fixed kernel

    def reverse(x_t, t):
        if t >= 2:   # every sample reaches the same x1
            return x1.expand(len(x_t), 2), torch.zeros(len(x_t), 2, 2, dtype=torch.float64)
        return common.p_reverse(model, x_t, t, schedule)

    trajectory = common.sample_chain(reverse, n, schedule.T, torch.Generator().manual_seed(4))
    x0 = trajectory[0].double()
    assert torch.equal(trajectory[1].double(), x1.expand(n, 2)), "the stand-in did not put every sample at x1"
    beta_1 = float(schedule.beta[1])
    var, se = x0.var(0), beta_1 * math.sqrt(2 / n)
    assert ((var - beta_1).abs() < 5 * se).all(), (
        f"x0 given x1 has variance {var.tolist()} per coordinate, expected beta_1 = {beta_1} (5 SE = {5 * se:.2g})")
    centre = math.sqrt(1 - beta_1) * x1
    mean_gap = ((x0.mean(0) - centre).abs() / math.sqrt(beta_1 / n)).max().item()
    assert mean_gap < 5, f"x0 given x1 has mean {x0.mean(0).tolist()}, expected {centre.tolist()} ({mean_gap:.1f} SE)"


def test_exact_reverse_kernel_keeps_standard_normal_data_standard_normal():
    # The exact reverse kernel. For data x0 ~ N(0, I), every x_t is N(0, I) too: if x_{t-1} ~ N(0, I) and
    # x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps, then (x_{t-1}, x_t) is jointly Gaussian with
    # Var x_t = alpha_t + beta_t = 1 and Cov(x_{t-1}, x_t) = sqrt(alpha_t), so
    # x_{t-1} | x_t ~ N(sqrt(alpha_t) x_t, (1 - alpha_t) I) = N(sqrt(1 - beta_t) x_t, beta_t I).
    # With that exact reverse kernel at every t, sample_chain must end at N(0, I).
    beta = common.make_schedule().beta
    n = 20_000

    def exact_reverse(x_t, t):
        return torch.sqrt(1.0 - beta[t]).float() * x_t, beta[t].float() * torch.eye(2).expand(len(x_t), 2, 2)

    x0 = common.sample_chain(exact_reverse, n, common.T, torch.Generator().manual_seed(0))[0].double()
    mean, cov = x0.mean(0), torch.cov(x0.T)
    # Standard errors for N(0, I): a mean 1/sqrt(n), a variance sqrt(2/n), a covariance 1/sqrt(n).
    mean_se, var_se, cov_se = n ** -0.5, (2 / n) ** 0.5, n ** -0.5
    gaps = [mean[0] / mean_se, mean[1] / mean_se, (cov[0, 0] - 1) / var_se,
            (cov[1, 1] - 1) / var_se, cov[0, 1] / cov_se]
    largest = max(abs(g.item()) for g in gaps)
    assert largest < 4.5, (f"samples are not N(0, I): mean {mean.tolist()}, cov {cov.tolist()}; "
                           f"largest gap {largest:.2f} standard errors (limit 4.5)")


def test_trained_samples_score_far_nearer_the_roll_than_noise(two_runs):
    """The script prints one score line each for its samples, a real roll sample and noise. Even
    a briefly trained model puts most samples near the curve: its median distance to the curve
    is under a third of noise's, the real sample is on the curve, and noise is mostly off it."""
    _, result = two_runs[0]
    scores = {m[1]: {"off": float(m[2]), "median": float(m[7])} for m in SCORES.finditer(result.stdout)}
    assert set(scores) == {"samples", "real roll", "noise N(0, I)"}, f"score lines missing in:\n{result.stdout}"
    samples, real, noise = scores["samples"], scores["real roll"], scores["noise N(0, I)"]
    assert real["off"] == 0.0 and real["median"] < 1e-3, f"a real roll sample scored {real}"
    assert noise["off"] > 50.0, f"noise scored {noise}: the measure cannot tell noise from the roll"
    assert samples["median"] < noise["median"] / 3, (
        f"after {TRAIN_ITERS} training steps the samples' median distance to the curve is {samples['median']}, "
        f"noise's {noise['median']}: expected under a third")


def test_script_writes_figure1_and_an_animation_under_2_mib(two_runs):
    folder, _ = two_runs[0]
    figure, animation = folder / "images" / "04_figure1.png", folder / "images" / "04_reverse_process.gif"
    for path in (figure, animation):
        assert path.is_file() and path.stat().st_size > 0, f"{path.name} missing or empty"
    size = animation.stat().st_size
    assert size < 2 * 2 ** 20, f"{animation.name} is {size} bytes, over 2 MiB"
    with Image.open(animation) as gif:
        frames = gif.n_frames
    assert frames >= common.T + 1, f"the animation has {frames} frames, fewer than T + 1 = {common.T + 1}"


# --- checkpoints the script cannot use ------------------------------------------------------
# Every kind of bad checkpoint, for this script and for 03_train.py --resume, is in
# test_robustness.py; here, the one a new reader meets first, as a real process.

def test_missing_checkpoint_exits_without_traceback_and_points_to_training(runs):
    # The same error as a reader sees it: a real process, its exit status and its stderr.
    _, result = runs["missing"]
    assert result.returncode == 1, f"exit status {result.returncode}; stderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr, f"a traceback instead of a message:\n{result.stderr}"
    message = result.stderr
    assert message.count("\n") == 1 and "no checkpoint" in message, f"not one clear line:\n{message}"
    assert "scripts/03_train.py" in message, f"the message does not say to run 03_train.py: {message}"
