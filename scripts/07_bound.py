"""Chapter 7: how tight is K? README section "7. How tight is K".

K is a lower bound on the log-likelihood. This chapter measures how far below it sits, and what
would lift it, in three parts:
1. The trained model's log-likelihood, bounded more tightly: the importance-weighted bound over
   M forward trajectories per held-out point (likelihood.log_weight, likelihood.importance_weighted_bound)
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

--grid prints instead the measurement that chose our schedule (docs/schedule.md): the three paths
times noisy ends log SNR_T from -0.47 (the first schedule's) to -6, the best K of both classes for
each, and how close each end's x_T is to noise, KL(q(x_T) || N(0, I)) and I(x0; x_T).

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
import math
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
GRID_ENDS = (-0.4658, -2.0, -3.0, -4.5, -6.0)  # log SNR_T of --grid: from the old schedule's end to noise


def importance_weighted_bounds(log_weights, m_values):
    """For each M, the importance-weighted bound per point (nats): the (n, M_max) table of log
    weights is cut into M_max // M disjoint groups of M trajectories, and a point's value is the
    mean of its groups' bounds, an unbiased estimate of the M-trajectory bound with less noise."""
    n, m_max = log_weights.shape
    bounds = {}
    for m in m_values:
        groups = m_max // m
        grouped = log_weights[:, :groups * m].reshape(n * groups, m)
        bounds[m] = likelihood.importance_weighted_bound(grouped).reshape(n, groups).mean(dim=1)
    return bounds


def best_K_both_classes(schedule, n, seed, n_curve=roll.CURVE_POINTS):
    """K per held-out point (nats) of the best Gaussian reverse process with full and with
    diagonal covariance, on the same points and noise (roll.heldout_K, so paired).

    The diagonal class's step is the full one with Cov(x0 | x_t)'s off-diagonal cut, and the
    forward posterior's part sigma_tilde^2 I is diagonal already, so its covariance is the full
    step's covariance cut to its diagonal: the brute-force posterior moments, the slow part, are
    computed once and replayed for the diagonal class at the very same x_t."""
    full = roll.bayes_optimal_reverse(schedule, "full", n_curve)
    steps = {}

    def full_recorded(x_t, t):
        steps[int(t[0])] = (x_t, *full(x_t, t))
        return steps[int(t[0])][1:]

    def diagonal_replayed(x_t, t):
        x_seen, mean, cov = steps[int(t[0])]
        if not torch.equal(x_seen, x_t):
            raise RuntimeError("the diagonal class was asked about other points than the full one")
        return mean, torch.diag_embed(torch.diagonal(cov, dim1=-2, dim2=-1))

    K_full = roll.heldout_K(full_recorded, schedule, n, seed)
    return {"full": K_full, "diagonal": roll.heldout_K(diagonal_replayed, schedule, n, seed)}


def schedule_grid(n, seed, ends=GRID_ENDS, T=common.T):
    """--grid (README, chapters 1 and 7): for each noisy end log SNR_T and each path between it and
    our first step, the best K of both classes at T steps on the same n held-out points, and how
    far x_T is from the noise the sampler starts from, KL(q(x_T) || N(0, I)); printed as a table.
    Returns {(end, shape): {class: K per point, nats}}."""
    _, curve = roll.curve_grid()
    best, reference = {}, (ends[0], SWEEP_SHAPE)
    print(f"the grid: T={T}, beta_1 = {common.BETA_1:.0e} kept, Bayes-optimal K by brute-force Bayes on {n} held-out "
          f"points (paired with the {SWEEP_SHAPE} path at log SNR_T = {ends[0]:g}):")
    for end in ends:
        schedule = likelihood.schedule_between_ends(T, SWEEP_SHAPE, last_log_snr=end)
        kl, kl_se = likelihood.prior_kl(schedule, curve, generator=torch.Generator().manual_seed(seed))
        alpha_bar_T = float(schedule.alpha_bar[T])
        # I(x0; x_T) = E_x0 KL(q(x_T | x0) || N(0, I)) - KL(q(x_T) || N(0, I)), the first in closed form
        conditional = 0.5 * (common.D * (-alpha_bar_T - math.log1p(-alpha_bar_T))
                             + alpha_bar_T * float((curve ** 2).sum(1).mean()))
        print(f"log SNR_T = {end:g}: alpha_bar_T = {alpha_bar_T:.4f}, x_T correlates {math.sqrt(alpha_bar_T):.2f} "
              f"with x0 per coordinate and keeps I(x0; x_T) = {common.nats_to_bits(conditional - kl):.3f} bits of it; "
              f"KL(q(x_T) || N(0, I)) = {kl:.1e} nats (se {kl_se:.0e})", flush=True)
        for shape in likelihood.SCHEDULE_SHAPES:
            best[end, shape] = best_K_both_classes(likelihood.schedule_between_ends(T, shape, last_log_snr=end), n, seed)
            line = f"  log_snr_T={end:g}  shape={shape}"
            for covariance in ("diagonal", "full"):
                value, se = roll.mean_and_se_bits(best[end, shape][covariance])
                gap, gap_se = roll.mean_and_se_bits(best[end, shape][covariance] - best[reference][covariance])
                line += f"  {covariance} {value:.3f} (se {se:.3f}, {gap:+.3f} se {gap_se:.3f} paired)"
            print(line, flush=True)
    return best


def main():
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
    parser.add_argument("--grid", action="store_true",
                        help="only print the grid of schedules (paths x noisy ends, best K of both classes "
                             "on --bayes-points points and KL(q(x_T) || N(0, I))), which chose ours; "
                             "no model needed, no figure")
    cli.add_standard_args(parser)
    args, device, generator = cli.parse_and_prepare(parser)
    if args.grid:
        began = time.perf_counter()
        schedule_grid(args.bayes_points, args.seed)
        print(f"({time.perf_counter() - began:.0f} s)")
        return
    try:
        model, schedule, _ = checkpoints.load_checkpoint(args.checkpoint, device)
    except checkpoints.CheckpointError as error:
        parser.exit(1, f"error: {error}\n")
    m_values, m_max = sorted(set(args.M)), max(args.M)
    n = args.points
    K_ceiling = common.nats_to_bits(roll.K_ceiling())
    ll_ceiling = common.nats_to_bits(roll.log_likelihood_ceiling())

    # --- 1. the importance-weighted bound on the trained model ----------------------------------
    # log p(x0) >= E log (1/M) sum_m p(x0, x^m_{1:T}) / q(x^m_{1:T} | x0), x^m ~ q(. | x0).
    began = time.perf_counter()
    reverse = common.reverse_of(model, schedule)
    x0 = roll.heldout_roll(n).to(device)
    K_model = roll.heldout_K(reverse, schedule, n, args.seed, device)
    K_bits, K_se = roll.mean_and_se_bits(K_model)
    trajectories = x0.repeat_interleave(m_max, dim=0)
    log_weights = torch.cat([likelihood.log_weight(reverse, part, schedule, generator)
                             for part in trajectories.split(TRAJECTORIES_PER_BATCH)]).reshape(n, m_max)
    bounds = importance_weighted_bounds(log_weights, m_values)
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
    print(f"  ceilings: K {K_ceiling:.3f} bits, log-likelihood {ll_ceiling:.3f} bits")

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
    figures.save_figure(fig, args.images / "07_iw_bound.png")

    # --- 2. and 3. the best K against T, and the path between the fixed ends ---------------------
    began = time.perf_counter()
    n_best = args.bayes_points
    best = {}   # (shape, T) -> {class: K per point, nats}; the same points and seed throughout

    def measure(shape, T, label):
        """The best K of both classes for one schedule, printed and kept in best[shape, T]."""
        if (shape, T) not in best:
            best[shape, T] = best_K_both_classes(likelihood.schedule_between_ends(T, shape), n_best, args.seed)
        for covariance in ("diagonal", "full"):
            value, se = roll.mean_and_se_bits(best[shape, T][covariance])
            print(f"T={T}  {label}class={covariance}  Bayes-optimal K = {value:.3f} bits  (se {se:.3f})", flush=True)

    def paired(a, b):
        """'+0.123 (se 0.012)': the mean of a - b per point in bits; on the same points, the
        point-to-point spread that dominates each se largely cancels."""
        return "{:+.3f} (se {:.3f})".format(*roll.mean_and_se_bits(a - b))

    print(f"the Bayes-optimal Gaussian reverse process (brute-force Bayes over {roll.CURVE_POINTS} curve points), "
          f"{n_best} held-out points, the ends of our schedule held, log SNR {SWEEP_SHAPE} in between:")
    steps = sorted(set(args.steps))
    for previous, T in zip([None] + steps, steps):
        measure(SWEEP_SHAPE, T, "")
        now = best[SWEEP_SHAPE, T]
        line = f"  full minus diagonal {paired(now['full'], now['diagonal'])}"
        if previous is not None:
            before = best[SWEEP_SHAPE, previous]
            line += (f";  T={T} minus T={previous}: diagonal {paired(now['diagonal'], before['diagonal'])}, "
                     f"full {paired(now['full'], before['full'])}")
        print(line + " bits, paired")
    shape_steps = sorted(set(args.shape_steps))
    for T in shape_steps:
        print(f"three paths between the same ends, T={T}:")
        for shape in likelihood.SCHEDULE_SHAPES:
            measure(shape, T, f"shape={shape}  ")
        for shape in [other for other in likelihood.SCHEDULE_SHAPES if other != SWEEP_SHAPE]:
            print(f"  {shape} minus {SWEEP_SHAPE}: " + ", ".join(
                f"{covariance} {paired(best[shape, T][covariance], best[SWEEP_SHAPE, T][covariance])}"
                for covariance in ("diagonal", "full")) + " bits, paired")
    seconds_best = time.perf_counter() - began
    print(f"({len(best)} schedules, both classes, in {seconds_best:.0f} s)")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for covariance, color in (("diagonal", "tab:blue"), ("full", "tab:orange")):
        values = [roll.mean_and_se_bits(best[SWEEP_SHAPE, T][covariance]) for T in steps]
        ax.errorbar(steps, [v for v, _ in values], yerr=[2 * se for _, se in values], marker="o",
                    capsize=3, color=color, label=f"Bayes-optimal K, {covariance} covariance steps (2 se)")
    ax.axhline(K_ceiling, color="gray", ls="-.", label=f"ceiling of K = {K_ceiling:.2f} bits")
    ax.plot([common.T], [roll.PAPER_K_BITS], "r*", markersize=12, label=f"paper, T = 40: {roll.PAPER_K_BITS} bits")
    ax.plot([common.T], [K_bits], "gs", markersize=8,
            label=f"our trained model ({model.config['covariance']}, our schedule): {K_bits:.2f} bits")
    ax.set_xscale("log")
    ax.set_xticks(steps, [str(T) for T in steps])
    ax.set_xticks([], minor=True)
    ax.set(xlabel="T, number of steps (ends of the schedule fixed)", ylabel="K (bits per point)",
           title="more steps, a better bound")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    figures.save_figure(fig, args.images / "07_bound_vs_T.png")

    # One colour per path in all three panels; one panel per class, so each shows three lines.
    fig, (paths, *panels) = plt.subplots(1, 3, figsize=(13, 4.3))
    colors = dict(zip(likelihood.SCHEDULE_SHAPES, ("tab:green", "tab:blue", "tab:purple")))
    for shape, color in colors.items():
        snr = common.log_snr(likelihood.schedule_between_ends(common.T, shape))[1:]
        paths.plot(torch.arange(common.T) / (common.T - 1), snr, marker=".", color=color,
                   label=shape + (" (ours)" if shape == SWEEP_SHAPE else ""))
        for panel, covariance in zip(panels, ("full", "diagonal")):
            values = [roll.mean_and_se_bits(best[shape, T][covariance]) for T in shape_steps]
            panel.errorbar(shape_steps, [v for v, _ in values], yerr=[2 * se for _, se in values],
                           marker="o", capsize=3, color=color)
    paths.set(xlabel="(t - 1) / (T - 1)", ylabel="log SNR_t = log(alpha_bar_t / (1 - alpha_bar_t))",
              title=f"three paths between the same ends (T = {common.T})")
    paths.legend(fontsize=10)
    for panel, covariance in zip(panels, ("full", "diagonal")):
        panel.axhline(K_ceiling, color="gray", ls="-.", label=f"ceiling of K = {K_ceiling:.2f} bits")
        panel.set_xscale("log")
        panel.set_xticks(shape_steps, [str(T) for T in shape_steps])
        panel.set_xticks([], minor=True)
        panel.set(xlabel="T, number of steps", ylabel="Bayes-optimal K (bits per point, 2 se)",
                  title=f"Bayes-optimal K, {covariance} covariance steps")
        panel.legend(fontsize=9, loc="lower right")
    fig.tight_layout()
    figures.save_figure(fig, args.images / "07_schedules.png")
    print(f"figures written to {args.images}/: 07_iw_bound.png, 07_bound_vs_T.png, 07_schedules.png")


if __name__ == "__main__":
    main()
