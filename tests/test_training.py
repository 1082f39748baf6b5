"""Chapter 3: training raises the bound, and the step index means the same thing in the loss and
in the sampler (the scripts this project grew from trained head t-2 and sampled with head t-1)."""
import math
import re

import pytest
import torch

import common
import plumbing
import roll
from model import ReverseModel
from conftest import run_script

K_LINE = re.compile(r"^K = (-?[\d.]+) bits  \(K - L_null = (-?[\d.]+) bits; paper Table 1: 2\.35 / 6\.45\)$",
                    re.MULTILINE)
ITERS, BATCH = 200, 1024   # a few seconds of training: enough to see K rise and steps specialise


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """03_train.py run for real, briefly: its stdout and the model it saved."""
    folder = tmp_path_factory.mktemp("train")
    run = run_script("03_train.py", "--iters", ITERS, "--batch-size", BATCH, "--seed", 0,
                     "--checkpoint", folder / "model.pt", "--images", folder)
    assert run.returncode == 0, f"03_train.py failed:\n{run.stderr[-2000:]}"
    model, schedule, checkpoint = plumbing.load_checkpoint(folder / "model.pt")
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
