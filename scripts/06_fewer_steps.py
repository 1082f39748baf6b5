"""Chapter 6: fewer steps. README section "6. Fewer steps: DDIM and respaced chains".

Chapter 5's eps-network, trained once on the 40 steps, is asked to sample in fewer: along a
decreasing sub-sequence tau of the steps (T = tau_S > ... > tau_1 = 1, spread evenly in log
signal-to-noise ratio by default), with no retraining. Four samplers, one network:
- ddim_eta0  DDIM with eta = 0: deterministic, x_T alone fixes the sample
- ddim_eta1  DDIM with eta = 1: the respaced ancestral chain with the posterior variance
- analytic   the respaced ancestral chain with Analytic-DPM's variance, recomputed for the
             respaced steps from E||eps_theta||^2 at the network's own steps
- ddim_heun  eta = 0 with Heun's second-order step: about twice the network calls per step
It prints the steps each sub-sequence keeps, then one table, a row per sampler and number of
steps: the share of samples off the curve, W1(u) (how far the mass along the curve is from
uniform) and its KS p-value (roll.score_samples), and, for the two stochastic chains, K in bits
of the respaced model on held-out points with its standard error; then the band W1(u) has for
real roll samples of the same size. The README's chapter 6 reads these rows.

Writes outputs/fewer_steps/<sampler>_<steps>.npy (N x 2, the data's standardised coordinates)
and, into images/:
- 06_respacing.png  the steps each respaced chain keeps, against t, the log SNR and the noise
- 06_samples.png   a grid of samples, sampler by number of steps
- 06_ddim_paths.png  deterministic DDIM paths from noise to the roll: the map eta = 0 follows
- 06_quality.png   off-curve share, W1(u) and K against the number of steps, per sampler

Where the samplers' errors come from (network, start or step): docs/whose_error.py (docs/claims.md).
"""
import argparse
import math
import pathlib

import matplotlib.pyplot as plt
import torch

import common
import ddpm
import ddim
import checkpoints
import cli
import figures
import roll

STEPS = (40, 20, 10, 5, 2)  # lengths of the sub-sequence, the fixed last step included
SAMPLERS = ("ddim_eta0", "ddim_eta1", "analytic", "ddim_heun")
STOCHASTIC = ("ddim_eta1", "analytic")   # the samplers that are Markov chains with a bound K
N_SAMPLES = 5000          # samples per run: W1(u) of real roll samples is 0.002-0.008 at this size
K_POINTS = 4000           # held-out points for K (standard error about 0.03 bits)
MOMENT_POINTS = 20_000    # roll points per step for E||eps_theta||^2 (Analytic-DPM's statistic)
PATHS = 400               # deterministic paths drawn in 06_ddim_paths.png
PATH_STEPS = 10           # ... with this many steps
K_LINEAR = 4.0            # 06_quality.png's K axis is linear within this many bits of 0, log beyond


def make_parser():
    """The chapter's options: the network, the numbers of steps and their spacing, the run's sizes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=pathlib.Path, default=checkpoints.DDPM_CHECKPOINT,
                        help="chapter 5's eps-network (default: outputs/ddpm.pt, from scripts/05_ddpm.py)")
    parser.add_argument("--steps", type=cli.steps_list(2, common.T), default=list(STEPS),
                        help=f"comma-separated numbers of steps, each from 2 to T = {common.T} "
                             f"(default: {','.join(map(str, STEPS))})")
    parser.add_argument("--spacing", choices=ddim.SPACINGS, default="log_snr",
                        help="spread the steps evenly in t or in log signal-to-noise ratio (default: %(default)s)")
    parser.add_argument("--n-samples", type=cli.positive_int, default=N_SAMPLES,
                        help="samples per run (default: %(default)s)")
    parser.add_argument("--k-points", type=cli.whole_number(0), default=K_POINTS,
                        help="held-out points for K, 0 to skip K (default: %(default)s)")
    parser.add_argument("--moment-points", type=cli.positive_int, default=MOMENT_POINTS,
                        help="roll points per step for E||eps_theta||^2 (default: %(default)s)")
    parser.add_argument("--out-dir", type=pathlib.Path, default=cli.OUTPUTS / "fewer_steps",
                        help="folder for the samples (default: outputs/fewer_steps)")
    cli.add_standard_args(parser)
    return parser


def load_network(parser, args, device):
    """Chapter 5's eps-network and its schedule; a missing or foreign file exits in one line."""
    try:
        network, schedule, _ = checkpoints.load_eps_network(args.checkpoint, device)
    except checkpoints.CheckpointError as error:
        parser.exit(1, f"error: {error}\n")
    return network, schedule


def kept_steps(schedule, args, start, eps_from):
    """README 6, "Where to put the steps": the sub-sequence tau for each number of steps, printed
    after a line saying where the chains start (start) and who gives eps (eps_from)."""
    print(f"{args.n_samples} samples per run, the same x_T ~ {start} for every run; K in bits on "
          f"{args.k_points} held-out points; eps from {eps_from}")
    tau = {steps: ddim.sub_sequence(schedule, steps, args.spacing) for steps in args.steps}
    print(f"the steps kept, spread evenly in {args.spacing}:")
    for steps in args.steps:
        print(f"  {steps:2d} steps: t = {', '.join(map(str, tau[steps]))}")
    return tau


def four_samplers(network, respaced, t_of, mean_sq_eps):
    """README 6, "Four samplers, one network": each a reverse process on the respaced schedule.
    Analytic-DPM's statistic is a property of the network at its own steps; each respaced chain
    reads it at the steps it keeps and puts it into its own variance formula."""
    net = ddim.on_respaced_steps(network, t_of)
    analytic_var = ddim.respaced_analytic_variance(respaced, t_of, mean_sq_eps, roll.half_range())
    return {"ddim_eta0": ddim.ddim_reverse(net, respaced, 0.0),
            "ddim_eta1": ddim.ddim_reverse(net, respaced, 1.0),
            "analytic": ddpm.reverse_with_variance(net, respaced, analytic_var),
            "ddim_heun": ddim.ddim_reverse(net, respaced, 0.0, second_order=True)}


def sample_and_score(network, schedule, tau, mean_sq_eps, args, device, draw_x_T=None):
    """README 6, the table: every sampler at every number of steps, from the same x_T (N(0, I), or
    draw_x_T(generator) if given), its samples saved and scored, K for the stochastic ones; one
    row printed per run. Returns {(sampler, steps): (scores, K)}, the samples and the paths drawn."""
    print(f"{'sampler':<10} {'steps':>5} {'off_curve_%':>11} {'W1_u':>7} {'KS_p':>8} {'K_bits':>7} {'K_se':>6}")
    results, samples, paths = {}, {}, None
    for steps in args.steps:
        respaced, t_of = ddim.respace(schedule, tau[steps])
        for name, reverse in four_samplers(network, respaced, t_of, mean_sq_eps).items():
            # a generator seeded afresh for each run: every run starts from the same x_T
            run_generator = torch.Generator().manual_seed(args.seed)
            x_T = None if draw_x_T is None else draw_x_T(run_generator)
            trajectory = common.sample_chain(reverse, args.n_samples, steps, run_generator, device, x_T=x_T)
            x0 = trajectory[0].cpu()
            checkpoints.save_array(args.out_dir / f"{name}_{steps}.npy", x0)
            scores = roll.score_samples(x0)
            K = None
            if name in STOCHASTIC and args.k_points:
                K = roll.mean_and_se_bits(roll.heldout_K(reverse, respaced, args.k_points, args.seed, device))
            results[name, steps] = (scores, K)
            samples[name, steps] = x0
            if name == "ddim_eta0" and steps == PATH_STEPS:
                paths = [x[:PATHS].cpu() for x in trajectory]
            print(f"{name:<10} {steps:>5} {100 * scores['off_curve']:>11.2f} {scores['w1_u']:>7.4f} "
                  f"{scores['ks_p']:>8.2g} {'-' if K is None else f'{K[0]:.3f}':>7} "
                  f"{'-' if K is None else f'{K[1]:.3f}':>6}", flush=True)
    return results, samples, paths


def real_roll_band(args):
    """W1(u)'s 5-95% band for real roll samples of this size, printed: the table's yardstick."""
    lo, hi = roll.w1_band(args.n_samples)
    print(f"real roll samples of this size: W1(u) {lo:.4f}-{hi:.4f} (5-95%); samples in {args.out_dir}/")
    return lo, hi


def main():
    parser = make_parser()
    args, device, generator = cli.parse_and_prepare(parser)
    cli.writable_dir_or_exit(parser, args.out_dir, "the samples")
    network, schedule = load_network(parser, args, device)

    # Analytic-DPM's statistic, E||eps_theta||^2 at each of the network's own steps.
    mean_sq_eps, _ = roll.eps_moments(network, schedule, args.moment_points, generator, device)
    tau = kept_steps(schedule, args, "N(0, I)", args.checkpoint)
    results, samples, paths = sample_and_score(network, schedule, tau, mean_sq_eps, args, device)
    band = real_roll_band(args)

    draw_respacing(args.images / "06_respacing.png", schedule, tau, args.spacing)
    draw_samples(args.images / "06_samples.png", samples, args.steps)
    if paths is not None:
        draw_paths(args.images / "06_ddim_paths.png", paths)
    draw_quality(args.images / "06_quality.png", results, args.steps, band)
    print(f"figures written to {args.images}/: 06_respacing.png, 06_samples.png, "
          f"{'06_ddim_paths.png, ' if paths is not None else ''}06_quality.png")


def draw_respacing(path, schedule, tau, spacing):
    """README 6, "Respacing": 06_respacing.png, the steps each sub-sequence tau keeps, one row per
    number of steps, over ticks at all T steps of the full chain, against t, against the log SNR
    lambda_t and against the noise std sqrt(1 - alpha_bar_t); a line joins the kept steps, the jumps
    the shorter chain makes. On our schedule lambda_t is a straight line in t, so the first two
    panels agree; the third shows where those steps fall in noise."""
    level, noise = common.log_snr(schedule), (1.0 - schedule.alpha_bar).sqrt()
    rows = sorted(tau, reverse=True)
    fig, axes = plt.subplots(1, 3, figsize=(16, 1.3 + 0.6 * len(rows)), sharey=True)
    panels = ((axes[0], lambda t: torch.as_tensor(t, dtype=torch.float64), "step t"),
              (axes[1], lambda t: level[torch.as_tensor(t)], "log SNR lambda_t"),
              (axes[2], lambda t: noise[torch.as_tensor(t)], "noise std sqrt(1 - alpha_bar_t)"))
    for ax, position, label in panels:
        every = position(torch.arange(1, schedule.T + 1))
        for row, steps in enumerate(rows):
            ax.plot(every, [row] * schedule.T, "|", ms=10, color="lightgray")
            ax.plot(position(tau[steps]), [row] * steps, "o-", ms=5, lw=1, color=plt.cm.tab10(row))
        ax.set(xlabel=label, title=f"against the {label}")
        ax.grid(axis="x", alpha=0.3)
    for row, steps in enumerate(rows):   # the kept t, written out where there is room
        if steps <= 10:
            for t in tau[steps]:
                axes[0].annotate(str(t), (t, row), xytext=(0, 6), textcoords="offset points",
                                 ha="center", fontsize=7)
    axes[1].invert_xaxis()   # all panels: the noise grows to the right, and the sampler walks leftwards
    axes[0].set_yticks(range(len(rows)), [f"{S} steps ({S - 1} network call{'s' if S > 2 else ''})" for S in rows])
    axes[0].invert_yaxis()
    fig.suptitle(f"the steps a respaced chain keeps: S of the T = {schedule.T} steps (grey ticks), "
                 f"spread evenly in {spacing}; the sampler walks from t = T (right) to t = 1 (left)")
    fig.tight_layout()
    figures.save_figure(fig, path)


def draw_samples(path, samples, steps):
    """06_samples.png: one panel per sampler (rows) and number of steps (columns)."""
    fig, axes = plt.subplots(len(SAMPLERS), len(steps), figsize=(2.6 * len(steps), 2.7 * len(SAMPLERS)),
                             squeeze=False)
    for row, name in enumerate(SAMPLERS):
        for col, S in enumerate(steps):
            figures.plot_points(axes[row, col], samples[name, S], f"{name}, {S} steps")
            axes[row, col].set(xticks=[], yticks=[])
    fig.tight_layout()
    figures.save_figure(fig, path)


def draw_paths(path, paths):
    """06_ddim_paths.png: each point's deterministic path from x_T to x_0, coloured by where on the
    roll it ends (u of its nearest curve point)."""
    fig, ax = plt.subplots(figsize=(6, 6))
    lines = torch.stack(paths).numpy()          # (steps + 1, n, 2), index 0 = the sample
    u = roll.nearest_on_curve(paths[0])[1].numpy()
    colors = plt.cm.viridis(u)
    for i in range(lines.shape[1]):
        ax.plot(lines[:, i, 0], lines[:, i, 1], color=colors[i], lw=0.5, alpha=0.6)
    ax.scatter(lines[-1, :, 0], lines[-1, :, 1], s=3, color="gray", label="x_T (noise)")
    ax.scatter(lines[0, :, 0], lines[0, :, 1], s=3, c=colors, label="x_0 (colour: position u along the roll)")
    ax.set(xlim=(-figures.AXIS_LIMIT, figures.AXIS_LIMIT), ylim=(-figures.AXIS_LIMIT, figures.AXIS_LIMIT),
           aspect="equal", title=f"DDIM, eta = 0, {len(paths) - 1} steps: each noise point's one path")
    ax.legend(loc="lower left", fontsize=8)
    figures.save_figure(fig, path)


def draw_quality(path, results, steps, band):
    """06_quality.png: off-curve share, W1(u) (beside real samples' band) and K against the steps.
    K falls by thousands of bits at 2 steps for some samplers, so its axis is linear within
    K_LINEAR bits of 0, where the samplers compete, and logarithmic beyond: every value has its
    place, none is cut off."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for name, color in zip(SAMPLERS, plt.cm.tab10.colors):   # one colour per sampler
        axes[0].plot(steps, [100 * results[name, S][0]["off_curve"] for S in steps], "o-", color=color, label=name)
        axes[1].plot(steps, [results[name, S][0]["w1_u"] for S in steps], "o-", color=color)
        if results[name, steps[0]][1] is not None:
            axes[2].plot(steps, [results[name, S][1][0] for S in steps], "o-", color=color)
    axes[1].axhspan(*band, color="gray", alpha=0.3, label="real roll samples, 5-95%")
    titles = ["the share of samples off the curve", "W1(u): how unevenly they spread along it",
              "K of the two stochastic chains (held-out)"]
    labels = ["off the curve (%)", "W1(u)", "K (bits)"]
    for ax, title, label in zip(axes, titles, labels):
        ax.set(xscale="log", xlabel="steps (fewer to the left)", ylabel=label, title=title)
        ax.set_xticks(steps, [str(S) for S in steps])
        ax.set_xticks([], minor=True)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("symlog", linthresh=0.1)   # 0% has a place on it, and so has 90%
    axes[0].set_ylim(0, 100)
    axes[0].set_yticks([0, 0.1, 1, 10, 100], ["0", "0.1", "1", "10", "100"])
    axes[1].set_yscale("log")
    axes[1].set_yticks([0.003, 0.01, 0.03, 0.1, 0.3], ["0.003", "0.01", "0.03", "0.1", "0.3"])
    axes[1].set_yticks([], minor=True)
    axes[2].set_yscale("symlog", linthresh=K_LINEAR, linscale=2.0)
    low = min((results[name, S][1][0] for name in STOCHASTIC for S in steps
               if results[name, S][1] is not None), default=-K_LINEAR)
    ticks = [-(10 ** k) for k in range(int(math.log10(max(-low, 10.0))), 0, -1)] + [-K_LINEAR, -K_LINEAR / 2, 0, K_LINEAR / 2]
    axes[2].set_yticks(ticks, [f"{v:g}" for v in ticks])
    axes[2].set_yticks([], minor=True)
    axes[2].set_ylim(min(3.0 * low, -K_LINEAR), K_LINEAR)
    axes[2].axhspan(-K_LINEAR, K_LINEAR, color="gray", alpha=0.08)
    axes[2].set_title(f"{titles[2]}\naxis linear within +-{K_LINEAR:g} bits (shaded), logarithmic below",
                      fontsize=10)
    handles = [h for ax in axes[:2] for h in ax.get_legend_handles_labels()[0]]
    fig.legend(handles, [h.get_label() for h in handles], loc="upper center", ncol=len(handles), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    figures.save_figure(fig, path)


if __name__ == "__main__":
    main()
