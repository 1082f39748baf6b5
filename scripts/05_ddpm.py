"""Chapter 5: what DDPM changed. README section "5. What DDPM changed: the noise, the simple loss
and the reverse variance".

Ho et al. (2020) kept the chain and changed three things: the network predicts the noise eps,
the loss drops the bound's weights (L_simple, their Algorithm 1), and the reverse variance is no
longer learned but fixed. This script trains an eps-network with L_simple on the same roll, the
same schedule and the same network body as chapter 3, then gives that one network five reverse
variances and scores each one with chapter 3's bound K on held-out points and with its samples:

- beta           sigma_t^2 = beta_t (DDPM)
- beta_tilde     sigma_t^2 = beta_tilde_t, the posterior's own variance (DDPM)
- analytic       Analytic-DPM's formula from E||eps_theta||^2, estimated per t on fresh points
- isotropic_best the isotropic variance that maximises K for this network's mean
- learned        a per-point variance, fitted on the bound with the mean frozen (as in the
                 hybrid loss of Improved DDPM), with chapter 3's variance outputs

Writes outputs/ddpm.pt (atomically) and, into images/: 05_weights.png (the weights L_simple
drops), 05_kl_per_step.png (the variances and where each loses its bits) and 05_samples.png.
"""
import argparse
import math
import pathlib
import time

import matplotlib.pyplot as plt
import torch
from tqdm import tqdm

import common
import ddpm
import checkpoints
import cli
import figures
import runs
import roll
from model import ReverseModel

ITERS = 6000              # L_simple iterations: about a minute on a 2-core CPU
BATCH_SIZE = 1024         # (x0, t, eps) triples per iteration: for this loss, more and smaller
                          # batches beat chapter 3's 4,096 at the same cost (README, chapter 5)
LR = 3e-3                 # Adam's peak step size: a 2% warm-up, then a cosine decay
EMA_DECAY = 0.999         # the weights scored are an exponential moving average, as in DDPM
N_MOMENTS = 20_000        # fresh roll points per step for E||eps_theta||^2 and E||x0 - x0_hat||^2
LEARNED_ITERS = 150       # steps fitting the variance outputs alone: a few seconds
LEARNED_LR = 3e-2         # the fit is convex in those outputs, so a large step is safe
N_SAMPLES = 20_000        # samples drawn and scored per variance
VARIANCES = ("beta", "beta_tilde", "analytic", "isotropic_best", "learned")
SHOWN_STEPS = (2, 3, 5, 10, 20, 30, 40)   # steps printed in the table of weights
U_BINS = 20               # bins of the position along the curve in the samples figure


def train_l_simple(model, schedule, args, generator, device):
    """Algorithm 1 with t uniform in 2..T: minimise ||eps - eps_theta(x_t, t)||^2. Returns the
    moving average of the weights (a ReverseModel), the loss of every iteration and the seconds."""
    average, optimizer, learning_rate = runs.adam_with_average(model, args.lr, args.iters, EMA_DECAY)
    losses, began = [], time.perf_counter()
    for i in tqdm(range(args.iters), desc="training with L_simple"):
        t = torch.randint(2, schedule.T + 1, (args.batch_size,), generator=generator).to(device)
        _, eps, x_t = roll.noised_roll(args.batch_size, t, schedule, generator, device)
        loss = (eps - model(x_t, t)[0]).square().sum(1).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()} at iteration {i + 1}")
        runs.take_step(optimizer, loss)
        learning_rate.step()
        average.update_parameters(model)
        losses.append(loss.item())
    return average.module, losses, time.perf_counter() - began


def make_parser():
    """The chapter's options: the training run, how many samples and held-out points score it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_training_args(parser, ITERS, BATCH_SIZE, LR, "L_simple")
    parser.add_argument("--n-samples", type=cli.positive_int, default=N_SAMPLES,
                        help="samples drawn and scored for each variance (default: %(default)s)")
    parser.add_argument("--n-heldout", type=cli.whole_number(2, roll.N_HELDOUT), default=roll.N_HELDOUT,
                        help="held-out points for K (default: %(default)s)")
    parser.add_argument("--checkpoint", type=pathlib.Path, default=checkpoints.DDPM_CHECKPOINT,
                        help="where to save the eps-network (default: outputs/ddpm.pt)")
    parser.add_argument("--reuse", action="store_true",
                        help="score the eps-network already in --checkpoint instead of training one")
    parser.add_argument("--chapter3", type=pathlib.Path, default=checkpoints.DEFAULT_CHECKPOINT,
                        help="chapter 3's model, whose K is shown for comparison when the file "
                             "exists (default: outputs/model.pt)")
    cli.add_standard_args(parser)
    return parser


def load_checkpoints(parser, args, device):
    """Chapter 3's model for the comparison (None without its file) and, with --reuse, the saved
    eps-network as (network, schedule, checkpoint); a bad file exits in one line."""
    try:
        chapter3 = checkpoints.load_trained_on_K(args.chapter3, device)[0] if args.chapter3.exists() else None
        reused = checkpoints.load_eps_network(args.checkpoint, device) if args.reuse else None
    except checkpoints.CheckpointError as error:
        parser.exit(1, f"error: {error}\n")
    return chapter3, reused


def train(parser, args, eps_network, generator, device):
    """README 5, "Training": Algorithm 1 on our schedule, the moving average saved to --checkpoint.
    t is uniform in 2..T (t = 1 stays the fixed kernel of eq. 44, so K compares with chapter 3's)."""
    schedule = common.make_schedule()
    try:
        eps_network, losses, seconds = train_l_simple(eps_network, schedule, args, generator, device)
    except FloatingPointError as error:
        parser.exit(1, f"error: {error}, so training stopped and no checkpoint was written; try a "
                       f"smaller --lr, such as the default {LR:g}\n")
    checkpoints.save_checkpoint(args.checkpoint, eps_network, schedule, args, args.iters,
                                generator_state=generator.get_state())
    first, last = runs.first_and_last(losses)
    print(f"trained {args.iters} iterations in {seconds:.1f} s ({args.iters / seconds:.1f} it/s) on {device}; "
          f"||eps - eps_theta||^2 from {first:.3f} to {last:.3f} (means of the first and last 50 batches)")
    print(f"checkpoint written to {args.checkpoint}")
    return eps_network, schedule


def the_weights(schedule):
    """README 5, "What the simple loss drops": KL_t = w_t E||eps - eps_theta||^2 + C_t for a fixed
    variance; the tables of beta_t and beta_tilde_t and the weights each gives, printed at SHOWN_STEPS."""
    steps = torch.arange(2, schedule.T + 1)
    _, _, beta_tilde = common.posterior_coefficients(steps, schedule, torch.zeros((), dtype=torch.float64))
    beta = ddpm.variance_table(schedule, common.at(schedule.beta, steps))
    beta_tilde = ddpm.variance_table(schedule, beta_tilde)
    weight = {name: ddpm.variance_table(schedule, ddpm.eps_weight(steps, schedule, common.at(var, steps)))
              for name, var in (("beta", beta), ("beta_tilde", beta_tilde))}
    print("the bound's weight w_t on ||eps - eps_theta||^2 (L_simple uses 1 for every t):")
    print("   t     beta_t   w_t (sigma^2 = beta_t)   w_t (sigma^2 = beta_tilde_t)")
    for t in SHOWN_STEPS:
        print(f"  {t:2d}   {float(schedule.beta[t]):.2e}   {float(weight['beta'][t]):20.4f}   "
              f"{float(weight['beta_tilde'][t]):26.4f}")
    return beta, beta_tilde, weight


def five_variances(eps_network, schedule, beta, beta_tilde, args, generator, device):
    """README 5, "Five variances for one network": each a reverse process of the one eps-network.
    Returns the isotropic tables, the reverse processes and E||x0 - x0_hat||^2 per t."""
    steps = torch.arange(2, schedule.T + 1)
    began = time.perf_counter()
    # Both statistics are per-t averages over fresh training points.
    mean_sq_eps, mean_sq_x0_error = roll.eps_moments(eps_network, schedule, N_MOMENTS, generator, device)
    half_range = roll.half_range()   # Analytic-DPM's clip
    variance = {
        "beta": beta,
        "beta_tilde": beta_tilde,
        "analytic": ddpm.variance_table(schedule, ddpm.analytic_variance(
            steps, schedule, mean_sq_eps[steps].unsqueeze(1), half_range)),
        "isotropic_best": ddpm.variance_table(schedule, ddpm.best_isotropic_variance(
            steps, schedule, mean_sq_x0_error[steps].unsqueeze(1))),
    }
    reverse = {name: ddpm.reverse_with_variance(eps_network, schedule, var) for name, var in variance.items()}
    learned = ddpm.fit_variance_outputs(eps_network, schedule, roll.swiss_roll, args.batch_size, generator,
                                        device, LEARNED_ITERS, LEARNED_LR)
    reverse["learned"] = common.reverse_of(learned, schedule)
    print(f"variances ready in {time.perf_counter() - began:.1f} s (statistics on {N_MOMENTS} fresh points "
          f"per t; {LEARNED_ITERS} steps fitting the learned variance)")
    return variance, reverse, mean_sq_x0_error


def score_variances(reverse, chapter3, schedule, args, device):
    """README 5, "Five variances for one network" (the printout): K on the same held-out points and
    noise (paired) and the samples of each variance, scored, then chapter 3's K on those points."""
    print(f"K on {args.n_heldout} held-out points, every t from 2 to {schedule.T}; {args.n_samples} samples each:")
    kl, K, scores, samples = {}, {}, {}, {}
    for name in VARIANCES:
        kl[name] = roll.heldout_kl(reverse[name], schedule, args.n_heldout, args.seed, device)
        K[name] = roll.mean_and_se_bits(common.bound_K(kl[name], schedule))
        chain = common.sample_chain(reverse[name], args.n_samples, schedule.T,
                                    torch.Generator().manual_seed(args.seed), device)
        samples[name] = chain[0].cpu()
        scores[name] = roll.score_samples(samples[name])
        print(f"variance={name}  K = {K[name][0]:.3f} bits  (se {K[name][1]:.3f})  "
              f"off-curve {100 * scores[name]['off_curve']:.2f}%  along-curve KS p = {scores[name]['ks_p']:.2g}")
    gap = roll.mean_and_se_bits(common.bound_K(kl["isotropic_best"], schedule) - common.bound_K(kl["analytic"], schedule))
    print(f"isotropic_best - analytic = {gap[0]:.3f} bits (paired se {gap[1]:.3f}): "
          f"what the network's distance from E[eps | x_t] costs")
    if chapter3 is None:
        print(f"no chapter-3 model at {args.chapter3}: run python scripts/03_train.py to compare")
        return kl, K, scores, samples
    kl["chapter 3"] = roll.heldout_kl(common.reverse_of(chapter3, schedule), schedule, args.n_heldout,
                                      args.seed, device)
    K3 = roll.mean_and_se_bits(common.bound_K(kl["chapter 3"], schedule))
    print(f"chapter 3's model ({args.chapter3}, {chapter3.config['covariance']} covariance, trained on K): "
          f"K = {K3[0]:.3f} bits  (se {K3[1]:.3f})")
    return kl, K, scores, samples


def draw_weights_and_variances(weight, mean_sq_x0_error, variance, kl, schedule, images):
    """README 5, "What the simple loss drops" and "What each variance costs": 05_weights.png, the
    weights and the network's error per step; 05_kl_per_step.png, the variances and where each
    loses its bits against isotropic_best's, the best a single number per step can do (every
    variance shares the eps-network's mean, so the KL terms differ little)."""
    t_axis = torch.arange(2, schedule.T + 1).numpy()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, var in (("beta", "beta_t"), ("beta_tilde", "beta_tilde_t")):
        axes[0].semilogy(t_axis, weight[name][2:], marker=".", label=f"bound, sigma_t^2 = {var}")
    axes[0].axhline(1.0, color="gray", ls="--", label="L_simple: 1 for every t")
    axes[0].set(xlabel="step t", ylabel="weight on ||eps - eps_theta||^2", title="what the bound weighs, per step")
    axes[0].legend()
    mean_sq_eps_error = mean_sq_x0_error * schedule.alpha_bar / (1.0 - schedule.alpha_bar)
    axes[1].plot(t_axis, mean_sq_eps_error[2:], marker=".", color="tab:green")
    axes[1].set(xlabel="step t", ylabel="E||eps - eps_theta||^2 (fresh points)",
                title="the trained eps-network's error, per step")
    fig.tight_layout()
    figures.save_figure(fig, images / "05_weights.png")

    # One colour per variance in both panels, and one legend beside them, off the curves.
    colours = dict(zip([*VARIANCES, "chapter 3"], plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.2))
    for name, var in variance.items():
        axes[0].plot(t_axis, (var / variance["beta_tilde"])[2:], marker=".", color=colours[name])
    axes[0].set(xlabel="step t", ylabel="sigma_t^2 / beta_tilde_t", title="the isotropic variances, against beta_tilde_t")
    for name, table in kl.items():
        axes[1].plot(t_axis, common.nats_to_bits((table - kl["isotropic_best"])[:, 2:].mean(0)), marker=".",
                     color=colours[name], label=name)
    axes[1].axhline(0.0, color="gray", lw=0.8)
    axes[1].set(xlabel="step t", ylabel="KL_t - KL_t(isotropic_best), bits",
                title="where each variance loses its bits (above 0: worse)")
    fig.legend(*axes[1].get_legend_handles_labels(), loc="center right", title="variance")
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    figures.save_figure(fig, images / "05_kl_per_step.png")


def draw_samples(samples, K, scores, n_samples, images):
    """README 5, "What it does to the samples": 05_samples.png. The five rolls of samples look
    alike, so one is drawn (learned's), coloured by where along the curve each point fell (u of
    the nearest curve point, uniform for the data); then for each variance the histogram of u, in
    U_BINS bins, against the band chance gives at this size: the tilt the KS test sees."""
    fig = plt.figure(figsize=(17, 4.4), layout="constrained")
    grid = fig.add_gridspec(1, 1 + len(VARIANCES), width_ratios=[1.1] + [1] * len(VARIANCES))
    shown = VARIANCES[-1]
    ax = fig.add_subplot(grid[0])
    _, u = roll.nearest_on_curve(samples[shown])
    ax.scatter(*samples[shown].T, c=u, cmap="viridis", s=1, rasterized=True)
    for end, label, offset in ((0.0, "u = 0\ninner end", (-5, -32)), (1.0, "u = 1, outer end", (-40, 8))):
        point = roll.point_at(torch.tensor([end], dtype=torch.float64))[0]
        ax.annotate(label, point.tolist(), xytext=offset, textcoords="offset points", fontsize=9)
    ax.set(xlim=(-figures.AXIS_LIMIT, figures.AXIS_LIMIT), ylim=(-figures.AXIS_LIMIT, figures.AXIS_LIMIT),
           aspect="equal", xticks=[], yticks=[],
           title=f"samples ({shown}; all five look alike),\ncoloured by the position u")
    ax.title.set_fontsize(10)
    expected = n_samples / U_BINS
    band = 2.0 * math.sqrt(expected * (1.0 - 1.0 / U_BINS)) / expected
    first = None
    for k, name in enumerate(VARIANCES):
        ax = fig.add_subplot(grid[1 + k], sharey=first)
        first = first or ax
        _, u = roll.nearest_on_curve(samples[name])
        counts = torch.bincount((u * U_BINS).long().clamp_max(U_BINS - 1), minlength=U_BINS)
        ax.axhspan(1.0 - band, 1.0 + band, color="gray", alpha=0.3, label="data: 95% of bins")
        ax.stairs(counts / expected, torch.linspace(0.0, 1.0, U_BINS + 1), baseline=None, color="tab:blue", lw=2)
        ax.set(xlabel="position along the curve u", ylim=(0.7, 1.3),
               title=f"{name}\nK = {K[name][0]:.2f} bits, KS p = {scores[name]['ks_p']:.2g}")
        if k:
            ax.tick_params(labelleft=False)
    first.set_ylabel("samples per bin / uniform")
    first.legend(loc="lower left", fontsize=9)
    figures.save_figure(fig, images / "05_samples.png")


def main():
    parser = make_parser()
    args, device, generator = cli.parse_and_prepare(parser)
    if not args.reuse:
        cli.output_file_or_exit(parser, args.checkpoint, "the checkpoint", example="ddpm.pt")
    runs.prepare_training()
    # Built before any other model, so its initial weights depend on --seed alone.
    eps_network = ReverseModel(covariance="none").to(device)
    chapter3, reused = load_checkpoints(parser, args, device)

    # 1. Algorithm 1 on the same body as chapter 3, eps outputs only (or the network saved before).
    if reused:
        eps_network, schedule, saved = reused
        # where training left the random numbers, so that --reuse prints what the full run printed
        generator.set_state(saved["generator_state"])
        print(f"reusing the eps-network in {args.checkpoint} ({saved['iteration']} iterations of L_simple)")
    else:
        eps_network, schedule = train(parser, args, eps_network, generator, device)
    eps_network.eval()

    # 2. The weights L_simple drops. 3. Five variances for the one network. 4. Each one scored.
    beta, beta_tilde, weight = the_weights(schedule)
    variance, reverse, mean_sq_x0_error = five_variances(eps_network, schedule, beta, beta_tilde,
                                                         args, generator, device)
    kl, K, scores, samples = score_variances(reverse, chapter3, schedule, args, device)

    # 5. Figures: the weights; the variances and where each loses its bits; the samples.
    draw_weights_and_variances(weight, mean_sq_x0_error, variance, kl, schedule, args.images)
    draw_samples(samples, K, scores, args.n_samples, args.images)
    print(f"figures written to {args.images}/: 05_weights.png, 05_kl_per_step.png, 05_samples.png")


if __name__ == "__main__":
    main()
