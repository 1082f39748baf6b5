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
3. The path between the fixed ends: our schedule's shape, the linear one and a cosine one, at
   T = 10, 40 and 100. Variational diffusion models (Kingma et al. 2021) show that as T grows
   the bound depends on the ends alone; with few steps the path matters.

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
import plumbing
import roll

M_VALUES = (1, 4, 16, 64, 256)   # trajectories per point in the importance-weighted bound
IW_POINTS = 1000                 # held-out points for it (se about 0.02 bits at M = 256)
STEPS = (10, 20, 40, 100)        # T for the best K against T
SHAPE_STEPS = (10, 40, 100)      # T for the comparison of paths between the ends
BAYES_POINTS = 1000              # held-out points for the brute-force Bayes best K
TRAJECTORIES_PER_BATCH = 16_384  # forward trajectories pushed through the network at once
SWEEP_SHAPE = "linear"           # the path of part 2: log SNR linear in t between the ends


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=pathlib.Path, default=plumbing.DEFAULT_CHECKPOINT,
                        help="the trained model (default: outputs/model.pt, from scripts/03_train.py)")
    parser.add_argument("--points", type=plumbing.whole_number(2, roll.N_HELDOUT), default=IW_POINTS,
                        help="held-out points for the importance-weighted bound (default: %(default)s)")
    parser.add_argument("--M", type=plumbing.positive_int, nargs="+", default=list(M_VALUES),
                        help="trajectories per point; the largest is drawn, smaller M reuse it in "
                             "groups (default: %(default)s)")
    parser.add_argument("--bayes-points", type=plumbing.whole_number(2, roll.N_HELDOUT),
                        default=BAYES_POINTS,
                        help="held-out points for the best K of each T and path (default: %(default)s)")
    parser.add_argument("--steps", type=plumbing.whole_number(2), nargs="+", default=list(STEPS),
                        help="the T of the best K against T (default: %(default)s)")
    parser.add_argument("--shape-steps", type=plumbing.whole_number(2), nargs="+", default=list(SHAPE_STEPS),
                        help="the T at which the paths between the ends are compared (default: %(default)s)")
    plumbing.add_standard_args(parser)
    args, device, generator = plumbing.parse_and_prepare(parser)
    try:
        model, schedule, _ = plumbing.load_checkpoint(args.checkpoint, device)
    except plumbing.CheckpointError as error:
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
    plumbing.save_figure(fig, args.images / "07_iw_bound.png")

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
    plumbing.save_figure(fig, args.images / "07_bound_vs_T.png")

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for shape, color in zip(likelihood.SCHEDULE_SHAPES, ("tab:green", "tab:blue", "tab:purple")):
        snr = common.log_snr(likelihood.schedule_between_ends(common.T, shape))[1:]
        left.plot(torch.arange(common.T) / (common.T - 1), snr, marker=".", color=color, label=shape)
        for covariance, style in (("diagonal", "-"), ("full", "--")):
            values = [roll.mean_and_se_bits(best[shape, T][covariance]) for T in shape_steps]
            right.errorbar(shape_steps, [v for v, _ in values], yerr=[2 * se for _, se in values],
                           ls=style, marker="o", capsize=3, color=color, label=f"{shape}, {covariance}")
    left.set(xlabel="(t - 1) / (T - 1)", ylabel="log SNR_t = log(alpha_bar_t / (1 - alpha_bar_t))",
             title=f"three paths between the same ends (T = {common.T})")
    left.legend()
    right.axhline(K_ceiling, color="gray", ls="-.", label="ceiling of K")
    right.set_xscale("log")
    right.set_xticks(shape_steps, [str(T) for T in shape_steps])
    right.set_xticks([], minor=True)
    right.set(xlabel="T", ylabel="Bayes-optimal K (bits per point)", title="the path matters less as T grows")
    right.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    plumbing.save_figure(fig, args.images / "07_schedules.png")
    print(f"figures written to {args.images}/: 07_iw_bound.png, 07_bound_vs_T.png, 07_schedules.png")


if __name__ == "__main__":
    main()
