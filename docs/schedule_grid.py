"""Lab note (docs/schedule.md; README chapters 1 and 7): the measurement that chose our schedule.
For each noisy end log SNR_T, from the first schedule's -0.47 to -6, and each of the three paths
between it and our first step: the best K of both classes at T = 40 on the same held-out points
(chapter 7's brute-force Bayes, paired against the linear path at the first end), and how close
x_T is to the noise the sampler starts from, KL(q(x_T) || N(0, I)) and I(x0; x_T). No model is
needed and no figure drawn.

    python docs/schedule_grid.py --bayes-points 2000
"""
import argparse
import math
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "scripts"))

import torch  # noqa: E402 (after the path to scripts/)

import common  # noqa: E402
import cli  # noqa: E402
import likelihood  # noqa: E402
import roll  # noqa: E402

chapter7 = cli.load_chapter("07_bound.py")
GRID_ENDS = (-0.4658, -2.0, -3.0, -4.5, -6.0)  # log SNR_T: from the old schedule's end to noise


def schedule_grid(n, seed, ends=GRID_ENDS, T=common.T):
    """For each noisy end log SNR_T and each path between it and our first step, the best K of
    both classes at T steps on the same n held-out points, and how far x_T is from the noise the
    sampler starts from, KL(q(x_T) || N(0, I)); printed as a table.
    Returns {(end, shape): {class: K per point, nats}}."""
    _, curve = roll.curve_grid()
    best, reference = {}, (ends[0], chapter7.SWEEP_SHAPE)
    print(f"the grid: T={T}, beta_1 = {common.BETA_1:.0e} kept, Bayes-optimal K by brute-force Bayes on {n} held-out "
          f"points (paired with the {chapter7.SWEEP_SHAPE} path at log SNR_T = {ends[0]:g}):")
    for end in ends:
        schedule = likelihood.schedule_between_ends(T, chapter7.SWEEP_SHAPE, last_log_snr=end)
        kl, kl_se = likelihood.prior_kl(schedule, curve, generator=torch.Generator().manual_seed(seed))
        alpha_bar_T = float(schedule.alpha_bar[T])
        # I(x0; x_T) = E_x0 KL(q(x_T | x0) || N(0, I)) - KL(q(x_T) || N(0, I)), the first in closed form
        conditional = 0.5 * (common.D * (-alpha_bar_T - math.log1p(-alpha_bar_T))
                             + alpha_bar_T * float((curve ** 2).sum(1).mean()))
        print(f"log SNR_T = {end:g}: alpha_bar_T = {alpha_bar_T:.4f}, x_T correlates {math.sqrt(alpha_bar_T):.2f} "
              f"with x0 per coordinate and keeps I(x0; x_T) = {common.nats_to_bits(conditional - kl):.3f} bits of it; "
              f"KL(q(x_T) || N(0, I)) = {kl:.1e} nats (se {kl_se:.0e})", flush=True)
        for shape in likelihood.SCHEDULE_SHAPES:
            schedule = likelihood.schedule_between_ends(T, shape, last_log_snr=end)
            best[end, shape] = likelihood.best_K_both_classes(schedule, n, seed)
            line = f"  log_snr_T={end:g}  shape={shape}"
            for covariance in ("diagonal", "full"):
                value, se = roll.mean_and_se_bits(best[end, shape][covariance])
                gap, gap_se = roll.mean_and_se_bits(best[end, shape][covariance] - best[reference][covariance])
                line += f"  {covariance} {value:.3f} (se {se:.3f}, {gap:+.3f} se {gap_se:.3f} paired)"
            print(line, flush=True)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bayes-points", type=cli.whole_number(2, roll.N_HELDOUT), default=chapter7.BAYES_POINTS,
                        help="held-out points for the best K of each end and path (default: %(default)s)")
    parser.add_argument("--seed", type=cli.seed_int, default=0, help="random seed (default: %(default)s)")
    args = parser.parse_args()
    began = time.perf_counter()
    schedule_grid(args.bayes_points, args.seed)
    print(f"({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
