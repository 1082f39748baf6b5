"""Chapters 9 and 10 (scripts/guidance.py): label dropout, classifier-free guidance in its two conventions,
and inpainting by replacement, RePaint's resampling and reconstruction guidance, each checked
against an independent computation (Monte Carlo, closed forms, finite differences, brute force)
with a tiny stand-in for the conditional UNet."""
import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist
from scipy.stats import norm

import common
import ddim
import guidance

N_CLASSES, NULL = 10, 10


class StandIn(torch.nn.Module):
    """A small conditional eps-network with the UNet's interface: forward(x_t, t, label=None),
    label 10 (or None) meaning "no label"."""
    null_label = NULL

    def __init__(self, T):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.out = torch.nn.Conv2d(4, 1, 3, padding=1)
        self.label_embedding = torch.nn.Embedding(N_CLASSES + 1, 4)
        self.time = torch.nn.Embedding(T + 1, 4)

    def forward(self, x_t, t, label=None):
        if label is None:
            label = torch.full((x_t.shape[0],), NULL, dtype=torch.long)
        h = self.conv(x_t) + (self.label_embedding(label) + self.time(t))[:, :, None, None]
        return 0.5 * self.out(torch.tanh(h))


@pytest.fixture(scope="module")
def schedule():
    # steps with large enough noise that sqrt(alpha_bar_t) x0 and x0 are far apart in the middle
    return common.make_schedule(T=12, beta_1=0.01, log_snr_T=-1.84)


@pytest.fixture(scope="module")
def net(schedule):
    return StandIn(schedule.T).eval()


def a_digit(n=1):
    """A fixed image in [-1, 1] with structure (a ramp), repeated n times."""
    x = torch.linspace(-0.9, 0.9, 64).reshape(1, 1, 8, 8)
    return x.expand(n, -1, -1, -1).clone()


# --- label dropout and guidance ------------------------------------------------------------------

def test_label_dropout_replaces_the_share_p_by_the_null_label_and_keeps_the_rest():
    """Of 40,000 labels, the share turned into the null label is p within 4 binomial standard
    errors, every other label is unchanged, and p = 0 / p = 1 drop none / all."""
    generator = torch.Generator().manual_seed(1)
    label = torch.randint(0, N_CLASSES, (40_000,), generator=generator)
    for p in (0.0, 0.15, 1.0):
        dropped = guidance.drop_labels(label, p, NULL, generator)
        share = float((dropped == NULL).double().mean())
        tolerance = 4.0 * math.sqrt(p * (1 - p) / len(label))
        assert abs(share - p) <= tolerance, (p, share, tolerance)
        kept = dropped != NULL
        assert torch.equal(dropped[kept], label[kept])


def test_guidance_with_w_zero_is_the_conditional_sampler_bit_for_bit(net, schedule):
    """Sampling with the guided eps at w = 0 gives exactly the samples of the conditional network
    alone (same seed), on a respaced chain."""
    label = torch.arange(10)
    short, t_of = ddim.respace(schedule, ddim.sub_sequence(schedule, 5))
    guided = guidance.sample(ddim.on_respaced_steps(guidance.guided(net, label, 0.0), t_of), 10, short,
                             torch.Generator().manual_seed(3))
    conditional = guidance.sample(ddim.on_respaced_steps(lambda x, t: net(x, t, label), t_of), 10, short,
                                  torch.Generator().manual_seed(3))
    assert torch.equal(guided, conditional)


def test_guided_eps_is_the_formula_of_two_separate_calls_and_the_conventions_agree(net):
    """guided() at w = 2 (one batched forward pass of 2n) equals (1 + w) eps(x, c) - w eps(x, null)
    from two separate calls; the scale convention with s = 1 + w gives the same eps~, w_from_scale
    inverts scale_from_w, s = 1 is the conditional eps and w = -1 the unconditional one."""
    generator = torch.Generator().manual_seed(2)
    x, t, label = torch.randn(6, 1, 8, 8, generator=generator), torch.full((6,), 5), torch.arange(6)
    with torch.no_grad():
        eps_c, eps_u = net(x, t, label), net(x, t, None)
        for w in (0.5, 2.0, 4.0):
            by_hand = (1 + w) * eps_c - w * eps_u
            assert torch.allclose(guidance.guided(net, label, w)(x, t), by_hand, atol=1e-6), w
            assert torch.allclose(guidance.guided_eps_scale(eps_c, eps_u, guidance.scale_from_w(w)),
                                  by_hand, atol=1e-6), w
            assert guidance.w_from_scale(guidance.scale_from_w(w)) == w
    assert torch.allclose(guidance.guided_eps_scale(eps_c, eps_u, 1.0), eps_c)
    assert torch.allclose(guidance.guided_eps(eps_c, eps_u, -1.0), eps_u)
    assert (eps_c - eps_u).abs().max() > 1e-3   # the label changes eps, or the checks above prove nothing


# --- inpainting ------------------------------------------------------------------------------------

def renoised_the_classic_wrong_way(x0, schedule, generator):
    """The mistake the issue names: known pixels carried down the chain by adding sqrt(beta_t) z
    with no sqrt(1 - beta_t) shrink. Returns {t: x_t}, to show the Monte Carlo test rejects it."""
    x, out = x0.clone(), {}
    for t in range(1, schedule.T + 1):
        x = x + math.sqrt(float(schedule.beta[t])) * torch.randn(x.shape, generator=generator)
        out[t] = x
    return out


def forward_chain_mismatch(trajectory, x0, mask, schedule, steps):
    """The largest deviation, in standard errors, of the known pixels' Monte Carlo mean from
    sqrt(alpha_bar_t) x0 and of their variance from 1 - alpha_bar_t, over the given steps."""
    n, worst = x0.shape[0], 0.0
    known = mask[0].bool().expand(1, 8, 8)
    for t in steps:
        values = trajectory[t][:, known].double()
        alpha_bar = float(schedule.alpha_bar[t])
        mean_error = (values.mean(0) - math.sqrt(alpha_bar) * x0[0][known].double()).abs()
        var_error = (values.var(0) - (1 - alpha_bar)).abs()
        worst = max(worst, float((mean_error / math.sqrt((1 - alpha_bar) / n)).max()),
                    float((var_error / ((1 - alpha_bar) * math.sqrt(2.0 / n))).max()))
    return worst


@pytest.mark.parametrize("method", ["replacement", "repaint"])
def test_known_pixels_carry_the_forward_chains_mean_and_variance(net, schedule, method):
    """At steps t = 2, 5, 8, 11 the known pixels of 4,000 inpainting runs of one digit have mean
    sqrt(alpha_bar_t) x0 and variance 1 - alpha_bar_t (within 5 standard errors of 32 pixels), with
    RePaint's jumps too; the classic re-noising (sqrt(beta_t) z added, no shrink) is off by far more."""
    n = 4000
    x0, mask = a_digit(n), guidance.make_mask("lower", n)
    trajectory = {}
    guidance.inpaint(lambda x, t: net(x, t, None), x0, mask, schedule, method, resample=3, jump=2,
                     generator=torch.Generator().manual_seed(4), trajectory=trajectory)
    steps = (2, 5, 8, 11)
    assert forward_chain_mismatch(trajectory, x0, mask, schedule, steps) < 5.0
    wrong = renoised_the_classic_wrong_way(x0, schedule, torch.Generator().manual_seed(4))
    assert forward_chain_mismatch(wrong, x0, mask, schedule, steps) > 20.0


@pytest.mark.parametrize("method", guidance.INPAINTERS)
def test_with_nothing_hidden_inpainting_returns_the_digit(net, schedule, method):
    x0 = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(5)) * 2 - 1
    out = guidance.inpaint(lambda x, t: net(x, t, None), x0, torch.ones(5, 1, 8, 8), schedule, method,
                           resample=2, jump=3, generator=torch.Generator().manual_seed(6))
    assert torch.equal(out, x0)


@pytest.mark.parametrize("last_step_noise", [False, True])
@pytest.mark.parametrize("method", ["replacement", "reconstruction"])
def test_with_everything_hidden_inpainting_is_the_unconditional_sampler(net, schedule, method, last_step_noise):
    """Same seed, same samples, bit for bit: the known pixels' draws take no noise of their own."""
    eps_at = lambda x, t: net(x, t, None)  # noqa: E731
    x0 = a_digit(7)
    out = guidance.inpaint(eps_at, x0, torch.zeros(7, 1, 8, 8), schedule, method,
                           generator=torch.Generator().manual_seed(7), last_step_noise=last_step_noise)
    assert torch.equal(out, guidance.sample(eps_at, 7, schedule, torch.Generator().manual_seed(7),
                                            last_step_noise=last_step_noise))


def test_jump_forward_has_the_composed_forward_chains_moments(schedule):
    """From a fixed x at step 3 to step 7: mean sqrt(alpha_bar_7 / alpha_bar_3) x and variance
    1 - alpha_bar_7 / alpha_bar_3 (Monte Carlo, 20,000 draws, 5 standard errors)."""
    n = 20_000
    x = a_digit(n)
    out = guidance.jump_forward(x, 3, 7, schedule, torch.Generator().manual_seed(8)).double()
    ratio = float(schedule.alpha_bar[7] / schedule.alpha_bar[3])
    mean_error = (out.mean(0) - math.sqrt(ratio) * x[0].double()).abs().max()
    var_error = (out.var(0) - (1 - ratio)).abs().max()
    assert mean_error < 5 * math.sqrt((1 - ratio) / n), (float(mean_error), ratio)
    assert var_error < 5 * (1 - ratio) * math.sqrt(2.0 / n), (float(var_error), ratio)


def test_reconstruction_gradient_matches_finite_differences(net, schedule):
    """The gradient of ||m (x0_hat(x_t) - x0)||^2 through the network, at 6 random pixels of a
    float64 copy of the network, against central differences (step 1e-6); the error per image
    against its direct computation."""
    net64 = StandIn(schedule.T).double().eval()
    net64.load_state_dict(net.state_dict())
    eps_at = lambda x, t: net64(x, t, None)  # noqa: E731
    generator = torch.Generator().manual_seed(9)
    x_t = torch.randn(2, 1, 8, 8, generator=generator, dtype=torch.float64)
    x0 = a_digit(2).double()
    mask = guidance.make_mask("lower", 2).double()
    _, gradient, error = guidance.reconstruction_gradient(eps_at, x_t, 6, schedule, x0, mask)

    def loss(x):
        with torch.no_grad():
            x0_hat = common.x0_from_eps(x, eps_at(x, torch.full((2,), 6)), 6, schedule)
        return (mask * (x0_hat - x0)).pow(2).flatten(1).sum(1)

    assert torch.allclose(error, loss(x_t).sqrt())
    for image, row, col in [(0, 0, 0), (0, 3, 5), (0, 7, 7), (1, 2, 2), (1, 5, 1), (1, 6, 6)]:
        bump = torch.zeros_like(x_t)
        bump[image, 0, row, col] = 1e-6
        numeric = float((loss(x_t + bump) - loss(x_t - bump))[image] / 2e-6)
        assert abs(float(gradient[image, 0, row, col]) - numeric) < 1e-5 * max(1.0, abs(numeric)), (
            image, row, col, float(gradient[image, 0, row, col]), numeric)


# --- masks, baselines, scores ----------------------------------------------------------------------

def test_masks_hide_the_pixels_they_name():
    generator = torch.Generator().manual_seed(10)
    lower, left, centre, random = (guidance.make_mask(name, 3, generator) for name in guidance.MASKS)
    assert lower[0, 0, 4:].sum() == 0 and lower[0, 0, :4].sum() == 32
    assert left[0, 0, :, :4].sum() == 0 and left[0, 0, :, 4:].sum() == 32
    assert centre[0, 0, 2:6, 2:6].sum() == 0 and centre.sum() == 3 * 48
    assert torch.all(random.flatten(1).sum(1) == 32) and not torch.equal(random[0], random[1])
    with pytest.raises(ValueError, match="mask must be one of"):
        guidance.make_mask("top", 1)


def test_the_mask_outline_runs_exactly_along_the_known_pixels_border():
    """figures.outline_mask draws one unit segment per edge between a known and a hidden pixel (or
    the image's border): 2 x 8 + 2 x 4 = 24 around the lower mask's known top half, 4 x 4 around
    the one known pixel, whether the images sit in one column or one row."""
    import matplotlib.pyplot as plt

    import figures
    lower = guidance.make_mask("lower", 1).numpy().reshape(1, 8, 8)
    single = np.zeros((1, 8, 8))
    single[0, 3, 5] = 1
    for columns in (1, 2):
        fig, ax = plt.subplots()
        figures.outline_mask(ax, np.concatenate([lower, single]), columns)
        assert len(ax.lines) == 24 + 4, len(ax.lines)
        plt.close(fig)


def test_nearest_fill_copies_the_brute_force_nearest_training_digit_on_the_visible_pixels():
    generator = torch.Generator().manual_seed(11)
    train = torch.rand(50, 1, 8, 8, generator=generator)
    x0 = torch.rand(6, 1, 8, 8, generator=generator)
    mask = guidance.make_mask("random", 6, generator)
    filled = guidance.nearest_fill(x0, mask, train)
    for i in range(6):
        distances = [float(((mask[i] * (x0[i] - b)) ** 2).sum()) for b in train]
        best = train[int(np.argmin(distances))]
        expected = torch.where(mask[i].bool(), x0[i], best)
        assert torch.allclose(filled[i], expected), i
    mean = guidance.mean_fill(x0, mask, train)
    assert torch.allclose(mean[~mask.bool()], train.mean(0).expand_as(x0)[~mask.bool()])
    assert torch.equal(mean[mask.bool()], x0[mask.bool()])


def test_within_class_spread_is_the_mean_pairwise_distance_per_class():
    generator = torch.Generator().manual_seed(12)
    images = torch.rand(30, 1, 8, 8, generator=generator)
    labels = torch.arange(30) % 3
    expected = np.mean([pdist(images[labels == c].reshape(-1, 64).numpy()).mean() for c in range(3)])
    assert abs(guidance.within_class_spread(images, labels) - expected) < 1e-5, expected


def test_the_reverse_step_is_ddims_eta_one_step_with_the_posterior_variance_and_wider_with_beta(schedule):
    """On a respaced chain, variance="posterior" is chapter 6's DDIM step with eta = 1 (mean and
    sigma from ddim.py, an independent formula), and variance="beta" is the same mean with noise
    sqrt(beta_t) z, larger than sigma_tilde_t; t = 1 is chapter 8's last step, without noise, or without eps
    eq. 44's kernel sqrt(1 - beta_1) x_1 + sqrt(beta_1) z."""
    short, _ = ddim.respace(schedule, ddim.sub_sequence(schedule, 6))
    generator = torch.Generator().manual_seed(13)
    x_t, eps, z = (torch.randn(3, 1, 8, 8, generator=generator) for _ in range(3))
    for t in (2, 4, 6):
        mean, _ = ddim.ddim_step(x_t, eps, t, short, 1.0)
        sigma = float(ddim.ddim_sigma(t, short, 1.0))
        posterior = guidance.reverse_step(x_t, eps, t, short, z, "posterior")
        assert torch.allclose(posterior, mean + sigma * z, atol=1e-5), t
        beta = guidance.reverse_step(x_t, eps, t, short, z, "beta")
        assert math.sqrt(float(short.beta[t])) > sigma * 1.01, t
        assert torch.allclose(beta - posterior, (math.sqrt(float(short.beta[t])) - sigma) * z, atol=1e-5), t
    beta_1 = float(short.beta[1])
    assert torch.allclose(guidance.reverse_step(x_t, None, 1, short, z),
                          math.sqrt(1 - beta_1) * x_t + math.sqrt(beta_1) * z)


def test_the_last_step_lands_on_the_decoders_most_likely_level(schedule):
    """At t = 1 with eps, each pixel goes to the centre of the level whose bin holds the most mass of
    the decoder N(x0_hat(x_1), beta_1), the bins' masses taken here from scipy's normal CDF. Pixels
    whose x0_hat sits just below the edge of an end bin pin the decoder's std: with std 0 (the
    bin of the mean) they would stay one level short of the end."""
    short, _ = ddim.respace(schedule, ddim.sub_sequence(schedule, 6))
    std = math.sqrt(float(short.beta[1]))
    edges = 2.0 * np.arange(1, 17) / 17 - 1                       # the 16 inner edges
    x0_hat = torch.tensor([-1.3, -0.87, -0.5, 0.0, 0.33, 0.86, 0.87, 0.9, 1.4], dtype=torch.float64)
    masses = np.diff(norm.cdf((edges[None] - x0_hat.numpy()[:, None]) / std), prepend=0.0, append=1.0, axis=1)
    level = masses.argmax(1)
    assert level[6] == 16 and level[5] == 15 and level[1] == 0, level      # std 0.1: a sixth of a bin
    alpha_bar_1 = float(short.alpha_bar[1])
    eps = torch.randn(9, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x_t = math.sqrt(alpha_bar_1) * x0_hat + math.sqrt(1 - alpha_bar_1) * eps
    out = guidance.reverse_step(x_t, eps, 1, short, torch.zeros(9))
    assert np.allclose(out.numpy(), 2 * (level + 0.5) / 17 - 1), (out, level)


# --- the chapter's script ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chapter8_checkpoint(tmp_path_factory):
    """A stand-in for chapter 8's checkpoint: an untrained unconditional UNet on a 20-step schedule."""
    import argparse

    import likelihood
    import checkpoints
    from unet import UNet

    path = tmp_path_factory.mktemp("pictures") / "unet.pt"
    schedule = likelihood.schedule_between_ends(20, "linear", common.make_schedule(20, 1e-4, -1.0))
    torch.manual_seed(0)
    checkpoints.save_unet_checkpoint(path, UNet(8), schedule, argparse.Namespace(seed=0), 0)
    return path


@pytest.fixture(scope="module")
def chapter9_run(chapter8_checkpoint, tmp_path_factory):
    """Chapter 9 run with tiny settings, in this process (conftest.run_main): (its CompletedProcess,
    its folder with conditional.pt)."""
    import conftest
    folder = tmp_path_factory.mktemp("chapter9")
    result = conftest.run_main("09_guidance.py", "--pictures", chapter8_checkpoint, "--iters", 4, "--batch-size", 64,
                               "--samples-per-class", 2, "--w", "0,1", "--digits", "3,7", "--steps", 4,
                               "--n-bound", 6, "--n-moments", 20, "--images", folder,
                               "--checkpoint", folder / "conditional.pt", "--out-dir", folder)
    assert result.returncode == 0, result.stderr[-2000:]
    return result, folder


def test_chapter9_runs_end_to_end_with_tiny_settings(chapter9_run):
    """Every part prints its lines, writes guided.npz with the promised keys and shapes and its three
    figures into the temporary --images folder; the label's cap is -log2 p(c), not log2 10."""
    result, folder = chapter9_run
    out = result.stdout
    for w in ("w = 0 ", "w = 1 "):
        assert w in out, out
    assert "the exact difference is at most -log2 p(c) = 3.29-" in out, out
    guided = np.load(folder / "guided.npz")
    assert guided["samples"].shape == (8, 8, 8) and set(guided["labels"]) == {3, 7}
    assert sorted(set(guided["w"])) == [0.0, 1.0] and guided["samples"].max() <= 16
    for name in ("09_two_eps.png", "09_guidance.png", "09_precision_diversity.png"):
        assert (folder / name).stat().st_size > 0, name


def test_chapter10_inpaints_with_chapter9s_network_end_to_end_with_tiny_settings(chapter9_run, tmp_path):
    """Every mask and method prints its line, inpainted.npz has the promised keys and shapes, and
    both figures are written into the temporary --images folder (in this process: conftest.run_main)."""
    import conftest
    _, folder = chapter9_run
    result = conftest.run_main("10_inpainting.py", "--conditional", folder / "conditional.pt", "--completions", 2,
                               "--held-out", 12, "--steps", 4, "--images", tmp_path, "--out-dir", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("accuracy") >= 4 * 5, result.stdout
    inpainted = np.load(tmp_path / "inpainted.npz")
    assert all(inpainted[key].shape == (12, 8, 8) for key in ("completed", "truth", "mask"))
    assert inpainted["labels"].shape == (12,)
    assert (tmp_path / "10_inpainting.png").stat().st_size > 0 and (tmp_path / "10_along_the_chain.png").stat().st_size > 0


def run_study(name, monkeypatch, capsys, *args):
    """A lab-note script of docs/ in this process: its printout."""
    import importlib.util

    from conftest import ROOT
    spec = importlib.util.spec_from_file_location(f"study_{name[:-3]}", ROOT / "docs" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr("sys.argv", [name, *map(str, args)])
    module.main()
    return capsys.readouterr().out


def test_the_lab_notes_studies_of_chapters_9_and_10_run_on_chapter9s_network(chapter9_run, chapter8_checkpoint,
                                                                             monkeypatch, capsys, tmp_path):
    """docs/guidance_variance.py prints chapter 9's guidance lines for both variances;
    docs/mixture_bound.py the two bounds and the mixture's; docs/inpaint_with_chapter8.py chapter
    10's lines for chapter 8's network."""
    _, folder = chapter9_run
    out = run_study("guidance_variance.py", monkeypatch, capsys, "--conditional", folder / "conditional.pt",
                    "--w", "0", "--digits", "3", "--samples-per-class", 2, "--steps", 4, "--images", tmp_path)
    assert out.count("w = 0 ") == 2 and "variance = posterior" in out, out
    out = run_study("mixture_bound.py", monkeypatch, capsys, "--conditional", folder / "conditional.pt",
                    "--n-bound", 4, "--n-moments", 20, "--n", 3, "--images", tmp_path)
    assert "difference" in out and "by the mixture over the ten labels" in out, out
    out = run_study("inpaint_with_chapter8.py", monkeypatch, capsys, "--pictures", chapter8_checkpoint,
                    "--completions", 2, "--held-out", 6, "--steps", 4, "--images", tmp_path)
    assert "with chapter8's network" in out and out.count("mask = lower") == 5 and "along the chain" in out, out


def run_main(load_script, monkeypatch, capsys, *args, script="09_guidance.py"):
    """The script's main() in this process (no second import of torch): (exit status, stderr)."""
    monkeypatch.setattr("sys.argv", [script, *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        load_script(script).main()
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (("--w", "-1.5"), "each w must be a finite number >= -1"),
    (("--w", "nan"), "each w must be a finite number >= -1"),
    (("--digits", "3,11"), "from 0 to 9"),
    (("--masks", "top"), "each must be one of"),
])
def test_a_bad_argument_gets_one_line_and_a_nonzero_exit(load_script, monkeypatch, capsys, args, message, tmp_path):
    """argparse's usage, then one line saying what is wrong; exit status 2, before any work."""
    script = "10_inpainting.py" if args[0] == "--masks" else "09_guidance.py"
    code, err = run_main(load_script, monkeypatch, capsys, *args, "--images", tmp_path, script=script)
    last = err.strip().splitlines()[-1]
    assert code == 2 and message in last and err.count("error") == 1, err


def test_chapter8s_checkpoint_where_a_conditional_one_is_needed_gets_one_line(load_script, monkeypatch, capsys,
                                                                               chapter8_checkpoint, tmp_path):
    code, err = run_main(load_script, monkeypatch, capsys, "--conditional", chapter8_checkpoint,
                         "--steps", 4, "--images", tmp_path, "--out-dir", tmp_path, script="10_inpainting.py")
    assert code == 1 and "unconditional UNet, and a conditional one" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.glob("*.npz")) and not list(tmp_path.glob("*.png"))


def test_a_missing_chapter8_checkpoint_says_which_script_to_run(load_script, monkeypatch, capsys, tmp_path):
    code, err = run_main(load_script, monkeypatch, capsys, "--pictures", tmp_path / "none.pt", "--images", tmp_path,
                         "--out-dir", tmp_path)
    assert code == 1 and "08_pictures.py" in err and len(err.strip().splitlines()) == 1, err


def test_a_missing_chapter9_checkpoint_says_which_script_to_run(load_script, monkeypatch, capsys, tmp_path):
    code, err = run_main(load_script, monkeypatch, capsys, "--conditional", tmp_path / "none.pt", "--images", tmp_path,
                         "--out-dir", tmp_path, script="10_inpainting.py")
    assert code == 1 and "09_guidance.py" in err and len(err.strip().splitlines()) == 1, err
