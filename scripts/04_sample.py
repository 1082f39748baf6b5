"""Chapter 4: sampling, and the paper's Figure 1. README section "4. Sampling and Figure 1".

The trained reverse process turns noise into the Swiss roll: draw x_T ~ N(0, I), then
x_{t-1} ~ p(x_{t-1} | x_t) for t = T, ..., 1, every step included, the fixed last one
p(x0 | x1) too (paper eq. 44). The script saves the samples x0 and scores them against the
roll's own law (roll.score_samples): how far they fall from the curve, and whether their
position along it is uniform, as the data's is; a real sample of the roll and pure noise
N(0, I) are scored beside them.

Writes outputs/samples.npy (N x 2, standardised data coordinates) and, into images/:
- 04_figure1.png          the paper's Figure 1: the forward trajectory q (top), the reverse
                          trajectory p (middle) and the drift f_mu(x_t, t) - x_t (bottom),
                          at t = 0, T/2, T (the drift's first column: t = 2, the first step
                          the network learned)
- 04_reverse_process.gif  noise becoming the roll, one frame per reverse step
"""
import argparse
import pathlib

import matplotlib.pyplot as plt
import numpy as np
import torch

import common
import checkpoints
import cli
import figures
import roll

N_SAMPLES = 5000          # samples drawn and scored
GRID_POINTS = 17          # drift arrows per side of the grid over -GRID_LIMIT..GRID_LIMIT
GRID_LIMIT = 2.0
ARROW_LENGTH = 0.22       # each drift panel stretches its longest arrows (90th percentile) to this
GIF_POINTS = 2000         # points in the animation: enough to see the roll, small enough a file
GIF_HOLD = 10             # extra frames on the finished roll before the animation loops


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=pathlib.Path, default=checkpoints.DEFAULT_CHECKPOINT,
                        help="the trained model (default: outputs/model.pt, from scripts/03_train.py)")
    parser.add_argument("--out", type=pathlib.Path, default=cli.OUTPUTS / "samples.npy",
                        help="where to save the samples, an (N, 2) array (default: outputs/samples.npy)")
    parser.add_argument("--n-samples", type=cli.positive_int, default=N_SAMPLES,
                        help="number of samples (default: %(default)s)")
    cli.add_standard_args(parser)
    args, device, generator = cli.parse_and_prepare(parser)
    cli.output_file_or_exit(parser, args.out, "the samples", example="samples.npy")
    try:
        model, schedule, _ = checkpoints.load_checkpoint(args.checkpoint, device)
    except checkpoints.CheckpointError as error:
        parser.exit(1, f"error: {error}\n")

    T = schedule.T
    n = args.n_samples

    # From x_T ~ N(0, I) down to x0: T draws of p(x_{t-1} | x_t), the last one p(x0 | x1) included.
    trajectory = common.sample_chain(common.reverse_of(model, schedule), n, T, generator, device)
    x0_sampled = trajectory[0].cpu()

    def write_samples(temporary):
        with open(temporary, "wb") as file:  # a file object: np.save would add .npy to a name
            np.save(file, x0_sampled.numpy())

    checkpoints.replace_atomically(args.out, write_samples)
    print(f"{n} samples drawn with all {T} reverse steps, t = {T} down to 1; saved to {args.out}")

    # How close to the roll? The data's law is known: on the curve, uniform along it. A real
    # sample of the roll shows what chance alone gives at this size; noise is where we started.
    x0_real = roll.swiss_roll(n, generator)
    noise = torch.randn(n, common.D, generator=generator)
    for name, points in [("samples", x0_sampled), ("real roll", x0_real), ("noise N(0, I)", noise)]:
        print(f"{name:>13}: {roll.describe_scores(roll.score_samples(points))}")

    draw_figure1(model, schedule, trajectory, x0_real, generator, device, args.images / "04_figure1.png")

    # Animation: the reverse trajectory, one frame per step from t = T to 0, then a pause.
    steps = list(range(T, -1, -1)) + [0] * GIF_HOLD
    figures.save_points_gif(args.images / "04_reverse_process.gif",
                             [trajectory[t][:GIF_POINTS] for t in steps],
                             [f"reverse process, t = {t}" for t in steps])
    print(f"figures written to {args.images}/: 04_figure1.png, 04_reverse_process.gif")


def draw_figure1(model, schedule, trajectory, x0_real, generator, device, path):
    """README 4, "Figure 1": the paper's Figure 1 redrawn, the forward trajectory (q), the reverse
    one (p) and the drift of p's steps, at t = 0, T/2 and T."""
    T = schedule.T
    # Top: the forward trajectory, drawn with q(x_t | x0) at each t.
    shown = [0, T // 2, T]
    forward = {t: common.sample_gaussian(*common.q_closed_form(x0_real, t, schedule), generator)
               for t in shown}
    # Bottom: the drift f_mu(x_t, t) - x_t, how far p(x_{t-1} | x_t) moves a point on average.
    # No reverse step starts at t = 0, and the one at t = 1 is the fixed kernel of eq. 44, whose
    # drift -(1 - sqrt(1 - beta_1)) x_1 is the same tiny shrink for every model. So the first
    # column shows t = 2, the first step the network learned: the pull onto the roll.
    drift_steps = [max(t, 2) for t in shown]
    side = torch.linspace(-GRID_LIMIT, GRID_LIMIT, GRID_POINTS)
    grid = torch.cartesian_prod(side, side)
    with torch.no_grad():
        drift = {t: (common.p_reverse(model, grid.to(device), t, schedule)[0].cpu() - grid)
                 for t in drift_steps}

    fig, axes = plt.subplots(3, 3, figsize=(10.5, 11))
    for col, (t, t_drift) in enumerate(zip(shown, drift_steps)):
        figures.plot_points(axes[0, col], forward[t], f"q: t = {t}")
        figures.plot_points(axes[1, col], trajectory[t], f"p: t = {t}")
        # Each panel has its own arrow scale, or the tiny drift near t = 0 would be invisible.
        scale = ARROW_LENGTH / drift[t_drift].norm(dim=1).quantile(0.9).clamp_min(1e-12).item()
        step = f"t = {t_drift}" + (" (first learned step)" if t_drift != t else "")
        figures.plot_points(axes[2, col], x0_real, f"drift: {step}, arrows x{scale:.3g}")
        axes[2, col].quiver(*grid.T, *(drift[t_drift].T * scale), angles="xy", scale_units="xy",
                            scale=1, width=0.004, color="tab:red")
    rows = ["forward q(x_t | x_0)\ndata to noise", "reverse p(x_{t-1} | x_t)\nnoise to data",
            "drift f_mu(x_t, t) - x_t\nover the roll x_0"]
    for ax, label in zip(axes[:, 0], rows):
        ax.set_ylabel(label, fontsize=11)
    fig.suptitle(f"Figure 1 of Sohl-Dickstein et al. (2015), redrawn: columns t = 0, T/2 = {T // 2}, "
                 f"T = {T}", fontsize=12)
    fig.tight_layout()
    figures.save_figure(fig, path)


if __name__ == "__main__":
    main()
