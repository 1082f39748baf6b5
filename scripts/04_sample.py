"""Chapter 4: sampling, and the paper's Figure 1. README section "4. Sampling and Figure 1".

The trained reverse process turns noise into the Swiss roll: draw x_T ~ N(0, I), then
x_{t-1} ~ p(x_{t-1} | x_t) for t = T, ..., 1, every step included, the fixed last one
p(x0 | x1) too (paper eq. 44). The script saves the samples x0 and prints how far they are from
held-out roll points by the sliced Wasserstein distance, next to the distance of a fresh real
sample (the floor that finitely many points allow) and of pure noise N(0, I) (where sampling
starts).

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
from matplotlib.animation import FuncAnimation, PillowWriter

import common

N_SAMPLES = 5000          # samples drawn and compared with as many held-out points
N_PROJECTIONS = 256       # random directions of the sliced Wasserstein distance
PROJECTION_SEED = 1503    # the same directions for every run, so distances compare across seeds
GRID_POINTS = 17          # drift arrows per side of the grid over -GRID_LIMIT..GRID_LIMIT
GRID_LIMIT = 2.0
ARROW_LENGTH = 0.22       # each drift panel stretches its longest arrows (90th percentile) to this
GIF_POINTS = 2000         # points in the animation: enough to see the roll, small enough a file
GIF_HOLD = 10             # extra frames on the finished roll before the animation loops


def sample(model, beta, alpha_bar, n, generator, device):
    """Ancestral sampling through all T steps of p(x_{t-1} | x_t): the trajectory, indexed by t
    (trajectory[T] is the noise x_T, trajectory[0] the samples x0)."""
    reverse = common.reverse_of(model, beta, alpha_bar)
    return common.sample_chain(reverse, n, len(beta) - 1, generator, device)


def sliced_wasserstein(a, b, n_projections=N_PROJECTIONS, seed=PROJECTION_SEED):
    """Sliced 1-Wasserstein distance between two point sets of the same size (n, 2).

    For a unit direction u, W1 between the 1-D projections a u and b u is the mean absolute
    difference of their sorted values; averaged over random directions it is a distance between
    the 2-D distributions that needs no density and no bandwidth."""
    directions = np.random.default_rng(seed).standard_normal((n_projections, common.D))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    projected_a = np.sort(directions @ a.detach().cpu().double().numpy().T, axis=1)
    projected_b = np.sort(directions @ b.detach().cpu().double().numpy().T, axis=1)
    return float(np.abs(projected_a - projected_b).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=pathlib.Path, default=common.DEFAULT_CHECKPOINT,
                        help="the trained model (default: outputs/model.pt, from scripts/03_train.py)")
    parser.add_argument("--out", type=pathlib.Path, default=common.OUTPUTS / "samples.npy",
                        help="where to save the samples, an (N, 2) array (default: outputs/samples.npy)")
    parser.add_argument("--n-samples", type=common.positive_int, default=N_SAMPLES,
                        help="number of samples (default: %(default)s)")
    common.add_standard_args(parser)
    args, device, generator = common.parse_and_prepare(parser)
    common.output_file_or_exit(parser, args.out, "the samples")
    try:
        model, beta, _ = common.load_checkpoint(args.checkpoint, device)
    except common.CheckpointError as error:
        parser.exit(1, f"error: {error}\n")

    alpha_bar = common.alpha_bar_from_beta(beta)
    T = len(beta) - 1
    n = args.n_samples

    # From x_T ~ N(0, I) down to x0: T draws of p(x_{t-1} | x_t), the last one p(x0 | x1) included.
    trajectory = sample(model, beta, alpha_bar, n, generator, device)
    x0_sampled = trajectory[0].cpu()

    def write_samples(temporary):
        with open(temporary, "wb") as file:  # a file object: np.save would add .npy to a name
            np.save(file, x0_sampled.numpy())

    common.replace_atomically(args.out, write_samples)
    print(f"{n} samples drawn with all {T} reverse steps, t = {T} down to 1; saved to {args.out}")

    # How close to the roll? Held-out points are the target; a fresh real sample of the same size
    # shows how far apart two honest samples of n points are by chance, and noise N(0, I) is
    # where the chain started.
    heldout = common.heldout_roll(n)
    x0_real = common.swiss_roll(n, generator)
    noise = torch.randn(n, common.D, generator=generator)
    print(f"sliced Wasserstein to held-out data: samples {sliced_wasserstein(x0_sampled, heldout):.4f} | "
          f"fresh real sample {sliced_wasserstein(x0_real, heldout):.4f} | "
          f"noise N(0, I) {sliced_wasserstein(noise, heldout):.4f}")
    print(f"  ({N_PROJECTIONS} random directions, 1-D W1 averaged; the fresh real sample is the "
          f"floor for {n} points, lower is closer)")

    # Figure 1 of the paper. Top: the forward trajectory, drawn with q(x_t | x0) at each t.
    shown = [0, T // 2, T]
    forward = {t: common.sample_gaussian(*common.q_closed_form(x0_real, t, alpha_bar), generator)
               for t in shown}
    # Bottom: the drift f_mu(x_t, t) - x_t, how far p(x_{t-1} | x_t) moves a point on average.
    # No reverse step starts at t = 0, and the one at t = 1 is the fixed kernel of eq. 44, whose
    # drift -(1 - sqrt(1 - beta_1)) x_1 is the same tiny shrink for every model. So the first
    # column shows t = 2, the first step the network learned: the pull onto the roll.
    drift_steps = [max(t, 2) for t in shown]
    side = torch.linspace(-GRID_LIMIT, GRID_LIMIT, GRID_POINTS)
    grid = torch.cartesian_prod(side, side)
    with torch.no_grad():
        drift = {t: (common.p_reverse(model, grid.to(device), t, beta, alpha_bar)[0].cpu() - grid)
                 for t in drift_steps}

    fig, axes = plt.subplots(3, 3, figsize=(10.5, 11))
    for col, (t, t_drift) in enumerate(zip(shown, drift_steps)):
        common.plot_points(axes[0, col], forward[t], f"q: t = {t}")
        common.plot_points(axes[1, col], trajectory[t], f"p: t = {t}")
        # Each panel has its own arrow scale, or the tiny drift near t = 0 would be invisible.
        scale = ARROW_LENGTH / drift[t_drift].norm(dim=1).quantile(0.9).clamp_min(1e-12).item()
        step = f"t = {t_drift}" + (" (first learned step)" if t_drift != t else "")
        common.plot_points(axes[2, col], x0_real, f"drift: {step}, arrows x{scale:.3g}")
        axes[2, col].quiver(*grid.T, *(drift[t_drift].T * scale), angles="xy", scale_units="xy",
                            scale=1, width=0.004, color="tab:red")
    rows = ["forward q(x_t | x_0)\ndata to noise", "reverse p(x_{t-1} | x_t)\nnoise to data",
            "drift f_mu(x_t, t) - x_t\nover the roll x_0"]
    for ax, label in zip(axes[:, 0], rows):
        ax.set_ylabel(label, fontsize=11)
    fig.suptitle(f"Figure 1 of Sohl-Dickstein et al. (2015), redrawn: columns t = 0, T/2 = {T // 2}, "
                 f"T = {T}", fontsize=12)
    fig.tight_layout()
    common.save_figure(fig, args.images / "04_figure1.png")

    # Animation: the reverse trajectory, one frame per step from t = T to 0, then a pause.
    # Each frame only moves the points of one scatter; drawing the axes' ticks again for every
    # frame would take most of the script's time, and the fixed square frame shows the scale.
    fig, ax = plt.subplots(figsize=(4, 4))
    common.plot_points(ax, trajectory[T][:GIF_POINTS], "")
    ax.set(xticks=[], yticks=[])
    points = ax.collections[0]

    def draw(t):
        points.set_offsets(trajectory[t][:GIF_POINTS].cpu().numpy())
        ax.set_title(f"reverse process, t = {t}")

    animation = FuncAnimation(fig, draw, frames=list(range(T, -1, -1)) + [0] * GIF_HOLD)
    common.replace_atomically(args.images / "04_reverse_process.gif",
                              lambda temporary: animation.save(temporary, writer=PillowWriter(fps=8), dpi=60))
    plt.close(fig)
    print(f"figures written to {args.images}/: 04_figure1.png, 04_reverse_process.gif")


if __name__ == "__main__":
    main()
