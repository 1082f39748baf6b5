"""Chapter 7: how tight is K? README section "7. How tight is K".

K is a lower bound on the log-likelihood. This chapter measures how far below it sits, and what
would lift it, in three parts:
1. The trained model's log-likelihood, bounded more tightly: the importance-weighted bound over
   M forward trajectories per held-out point (likelihood.log_weight, likelihood.importance_weighted_bounds)
   for M = 1, 4, ..., 256. M = 1 is K itself, computed from the raw definition of the bound with
   no KL formula and no entropy terms, so it checks chapter 3 as well.
2. The bound against the number of steps T, no training: the Bayes-optimal Gaussian reverse process
   (brute-force Bayes, roll.bayes_optimal_reverse) with diagonal and with full covariance, for
   T = 10, 20, 40, 100, with the two ends of our schedule held fixed (likelihood.schedule_between_ends,
   log signal-to-noise ratio linear in between).
3. The path between the fixed ends: ours (log SNR linear in t), the "power" path of this
   walkthrough's first schedule and a cosine one, at T = 10, 40 and 100. Variational diffusion
   models (Kingma et al. 2021) show that as T grows the bound depends on the ends alone; with few
   steps the path matters.

The measurement that chose our schedule, the three paths times five noisy ends, is
docs/schedule_grid.py, with these functions (docs/schedule.md).

Every number is printed in one line that tools can read, of the forms
    M=<M>  K_IW = <bits> bits  (se <bits>)
    T=<T>  class=<diagonal|full>  Bayes-optimal K = <bits> bits  (se <bits>)
    T=<T>  shape=<shape>  class=<diagonal|full>  Bayes-optimal K = <bits> bits  (se <bits>)
The README's chapter 7 shows a default run's lines.

Writes into images/:
- 07_iw_bound.png      the importance-weighted bound against M, with K and the two ceilings
- 07_bound_vs_T.png    the best K against T for both classes, the paper's 2.35 and our trained K
- 07_schedules.png     the three paths between the ends, and the best K each allows against T
"""
import argparse
import pathlib
import time

import matplotlib.pyplot as plt
import torch

import common
import likelihood
import checkpoints
import cli
import figures
import roll

M_VALUES = (1, 4, 16, 64, 256)   # trajectories per point in the importance-weighted bound
IW_POINTS = 1000                 # held-out points for it (se about 0.02 bits at M = 256)
STEPS = (10, 20, 40, 100)        # T for the best K against T
SHAPE_STEPS = (10, 40, 100)      # T for the comparison of paths between the ends
BAYES_POINTS = 1000              # held-out points for the brute-force Bayes best K
TRAJECTORIES_PER_BATCH = 16_384  # forward trajectories pushed through the network at once
SWEEP_SHAPE = "linear"           # the path of part 2: log SNR linear in t between the ends


def make_parser():
    """The chapter's options: the model, and how many points, trajectories and steps to measure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=pathlib.Path, default=checkpoints.DEFAULT_CHECKPOINT,
                        help="the trained model (default: outputs/model.pt, from scripts/03_train.py)")
    parser.add_argument("--points", type=cli.whole_number(2, roll.N_HELDOUT), default=IW_POINTS,
                        help="held-out points for the importance-weighted bound (default: %(default)s)")
    parser.add_argument("--M", type=cli.positive_int, nargs="+", default=list(M_VALUES),
                        help="trajectories per point; the largest is drawn, smaller M reuse it in "
                             "groups (default: %(default)s)")
    parser.add_argument("--bayes-points", type=cli.whole_number(2, roll.N_HELDOUT),
                        default=BAYES_POINTS,
                        help="held-out points for the best K of each T and path (default: %(default)s)")
    parser.add_argument("--steps", type=cli.whole_number(2), nargs="+", default=list(STEPS),
                        help="the T of the best K against T (default: %(default)s)")
    parser.add_argument("--shape-steps", type=cli.whole_number(2), nargs="+", default=list(SHAPE_STEPS),
                        help="the T at which the paths between the ends are compared (default: %(default)s)")
    cli.add_standard_args(parser)
    return parser


def iw_bound(model, schedule, args, generator, device):
    """README 7, "A tighter bound from more trajectories": K and K_IW(M) on the same held-out
    points, printed. log p(x0) >= E log (1/M) sum_m p(x0, x^m_{1:T}) / q(x^m_{1:T} | x0), x^m ~ q(. | x0).
    Returns K in bits and {M: (K_IW, se) in bits}."""
    m_values, m_max, n = sorted(set(args.M)), max(args.M), args.points
    began = time.perf_counter()
    reverse = common.reverse_of(model, schedule)
    x0 = roll.heldout_roll(n).to(device)
    K_model = roll.heldout_K(reverse, schedule, n, args.seed, device)
    K_bits, K_se = roll.mean_and_se_bits(K_model)
    trajectories = x0.repeat_interleave(m_max, dim=0)
    log_weights = torch.cat([likelihood.log_weight(reverse, part, schedule, generator)
                             for part in trajectories.split(TRAJECTORIES_PER_BATCH)]).reshape(n, m_max)
    bounds = likelihood.importance_weighted_bounds(log_weights, m_values)
    seconds_iw = time.perf_counter() - began
    print(f"the trained model ({model.config['covariance']} covariance), {n} held-out points, "
          f"{m_max} forward trajectories each ({seconds_iw:.0f} s):")
    print(f"K = {K_bits:.3f} bits  (se {K_se:.3f})  from the KL terms and entropies, as in chapter 3")
    iw_bits = {}
    for m in m_values:
        iw_bits[m] = roll.mean_and_se_bits(bounds[m])
        print(f"M={m}  K_IW = {iw_bits[m][0]:.3f} bits  (se {iw_bits[m][1]:.3f})")
    gap_1, gap_1_se = roll.mean_and_se_bits(bounds[m_values[0]] - K_model)
    gap, gap_se = roll.mean_and_se_bits(bounds[m_max] - K_model)
    print(f"  M={m_values[0]} minus K: {gap_1:+.3f} bits (se {gap_1_se:.3f}, paired)   "
          f"M={m_max} minus K: {gap:+.3f} bits (se {gap_se:.3f}, paired)")
    print(f"  ceilings: K {common.nats_to_bits(roll.K_ceiling()):.3f} bits, "
          f"log-likelihood {common.nats_to_bits(roll.log_likelihood_ceiling()):.3f} bits")
    return K_bits, iw_bits


def paired(a, b):
    """'+0.123 (se 0.012)': the mean of a - b per point in bits; on the same points, the
    point-to-point spread that dominates each se largely cancels."""
    return "{:+.3f} (se {:.3f})".format(*roll.mean_and_se_bits(a - b))


def measure(best, shape, T, label, args):
    """The best K of both classes for one schedule between our ends, printed and kept in best[shape, T]."""
    if (shape, T) not in best:
        best[shape, T] = likelihood.best_K_both_classes(likelihood.schedule_between_ends(T, shape), args.bayes_points,
                                                          args.seed)
    for covariance in ("diagonal", "full"):
        value, se = roll.mean_and_se_bits(best[shape, T][covariance])
        print(f"T={T}  {label}class={covariance}  Bayes-optimal K = {value:.3f} bits  (se {se:.3f})", flush=True)


def bound_against_T(best, args):
    """README 7, "The bound against the number of steps, without training": the best K of both
    classes for each T of --steps, our path between the fixed ends, with paired differences."""
    print(f"the Bayes-optimal Gaussian reverse process (brute-force Bayes over {roll.CURVE_POINTS} curve points), "
          f"{args.bayes_points} held-out points, the ends of our schedule held, log SNR {SWEEP_SHAPE} in between:")
    steps = sorted(set(args.steps))
    for previous, T in zip([None] + steps, steps):
        measure(best, SWEEP_SHAPE, T, "", args)
        now = best[SWEEP_SHAPE, T]
        line = f"  full minus diagonal {paired(now['full'], now['diagonal'])}"
        if previous is not None:
            before = best[SWEEP_SHAPE, previous]
            line += (f";  T={T} minus T={previous}: diagonal {paired(now['diagonal'], before['diagonal'])}, "
                     f"full {paired(now['full'], before['full'])}")
        print(line + " bits, paired")


def paths_between_ends(best, args):
    """README 7, "The path between the ends": the three paths at each T of --shape-steps, each
    against ours, paired."""
    for T in sorted(set(args.shape_steps)):
        print(f"three paths between the same ends, T={T}:")
        for shape in likelihood.SCHEDULE_SHAPES:
            measure(best, shape, T, f"shape={shape}  ", args)
        for shape in [other for other in likelihood.SCHEDULE_SHAPES if other != SWEEP_SHAPE]:
            print(f"  {shape} minus {SWEEP_SHAPE}: " + ", ".join(
                f"{covariance} {paired(best[shape, T][covariance], best[SWEEP_SHAPE, T][covariance])}"
                for covariance in ("diagonal", "full")) + " bits, paired")


def draw_iw_bound(iw_bits, K_bits, images):
    """README 7, "A tighter bound from more trajectories": 07_iw_bound.png, K_IW against M."""
    K_ceiling = common.nats_to_bits(roll.K_ceiling())
    ll_ceiling = common.nats_to_bits(roll.log_likelihood_ceiling())
    m_values = sorted(iw_bits)
    fig, ax = plt.subplots(figsize=(7, 5.2))
    ax.errorbar(m_values, [iw_bits[m][0] for m in m_values], yerr=[2 * iw_bits[m][1] for m in m_values],
                marker="o", capsize=3, label="importance-weighted bound (2 se)")
    ax.axhline(K_bits, color="tab:green", ls="--", label=f"K of this model = {K_bits:.2f} bits")
    ax.axhline(K_ceiling, color="gray", ls="-.", label=f"ceiling of K = {K_ceiling:.2f} bits")
    ax.axhline(ll_ceiling, color="black", ls=":", label=f"ceiling of the log-likelihood = {ll_ceiling:.2f} bits")
    ax.set_xscale("log", base=2)
    ax.set_xticks(m_values, [str(m) for m in m_values])
    ax.set_xticks([], minor=True)
    ax.set(xlabel="M, forward trajectories per point", ylabel="bits per point",
           title="the model's log-likelihood is at least this")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8)
    fig.tight_layout()
    figures.save_figure(fig, images / "07_iw_bound.png")


def draw_bound_vs_T(best, steps, K_bits, covariance_trained, images):
    """README 7, "The bound against the number of steps": 07_bound_vs_T.png, with the paper's K
    and our trained model's."""
    K_ceiling = common.nats_to_bits(roll.K_ceiling())
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for covariance, color in (("diagonal", "tab:blue"), ("full", "tab:orange")):
        values = [roll.mean_and_se_bits(best[SWEEP_SHAPE, T][covariance]) for T in steps]
        ax.errorbar(steps, [v for v, _ in values], yerr=[2 * se for _, se in values], marker="o",
                    capsize=3, color=color, label=f"Bayes-optimal K, {covariance} covariance steps (2 se)")
    ax.axhline(K_ceiling, color="gray", ls="-.", label=f"ceiling of K = {K_ceiling:.2f} bits")
    ax.plot([common.T], [roll.PAPER_K_BITS], "r*", markersize=12, label=f"paper, T = 40: {roll.PAPER_K_BITS} bits")
    ax.plot([common.T], [K_bits], "gs", markersize=8,
            label=f"our trained model ({covariance_trained}, our schedule): {K_bits:.2f} bits")
    ax.set_xscale("log")
    ax.set_xticks(steps, [str(T) for T in steps])
    ax.set_xticks([], minor=True)
    ax.set(xlabel="T, number of steps (ends of the schedule fixed)", ylabel="K (bits per point)",
           title="more steps, a better bound")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    figures.save_figure(fig, images / "07_bound_vs_T.png")


def draw_schedules(best, shape_steps, images):
    """README 7, "The path between the ends": 07_schedules.png, the three paths and the best K
    each allows against T; one colour per path in all three panels, one panel per class, diagonal
    then full as in the lab notes' table."""
    K_ceiling = common.nats_to_bits(roll.K_ceiling())
    fig, (paths, *panels) = plt.subplots(1, 3, figsize=(13, 4.3))
    colors = dict(zip(likelihood.SCHEDULE_SHAPES, ("tab:green", "tab:blue", "tab:purple")))
    for shape, color in colors.items():
        snr = common.log_snr(likelihood.schedule_between_ends(common.T, shape))[1:]
        paths.plot(torch.arange(common.T) / (common.T - 1), snr, marker=".", color=color,
                   label=shape + (" (ours)" if shape == SWEEP_SHAPE else ""))
        for panel, covariance in zip(panels, ("diagonal", "full")):
            values = [roll.mean_and_se_bits(best[shape, T][covariance]) for T in shape_steps]
            panel.errorbar(shape_steps, [v for v, _ in values], yerr=[2 * se for _, se in values],
                           marker="o", capsize=3, color=color)
    paths.set(xlabel="(t - 1) / (T - 1)", ylabel="log SNR_t = log(alpha_bar_t / (1 - alpha_bar_t))",
              title=f"three paths between the same ends (T = {common.T})")
    paths.legend(fontsize=10)
    for panel, covariance in zip(panels, ("diagonal", "full")):
        panel.axhline(K_ceiling, color="gray", ls="-.", label=f"ceiling of K = {K_ceiling:.2f} bits")
        panel.set_xscale("log")
        panel.set_xticks(shape_steps, [str(T) for T in shape_steps])
        panel.set_xticks([], minor=True)
        panel.set(xlabel="T, number of steps", ylabel="Bayes-optimal K (bits per point, 2 se)",
                  title=f"Bayes-optimal K, {covariance} covariance steps")
        panel.legend(fontsize=9, loc="lower right")
    fig.tight_layout()
    figures.save_figure(fig, images / "07_schedules.png")


def main():
    parser = make_parser()
    args, device, generator = cli.parse_and_prepare(parser)
    try:
        model, schedule, _ = checkpoints.load_checkpoint(args.checkpoint, device)
    except checkpoints.CheckpointError as error:
        parser.exit(1, f"error: {error}\n")

    # 1. The importance-weighted bound on the trained model.
    K_bits, iw_bits = iw_bound(model, schedule, args, generator, device)
    draw_iw_bound(iw_bits, K_bits, args.images)

    # 2. and 3. The best K against T, and the path between the fixed ends: no network, brute-force
    # Bayes on the same points and seed throughout; best[shape, T] = {class: K per point, nats}.
    began, best = time.perf_counter(), {}
    bound_against_T(best, args)
    paths_between_ends(best, args)
    print(f"({len(best)} schedules, both classes, in {time.perf_counter() - began:.0f} s)")
    draw_bound_vs_T(best, sorted(set(args.steps)), K_bits, model.config["covariance"], args.images)
    draw_schedules(best, sorted(set(args.shape_steps)), args.images)
    print(f"figures written to {args.images}/: 07_iw_bound.png, 07_bound_vs_T.png, 07_schedules.png")


if __name__ == "__main__":
    main()
