"""Chapter 2: the reverse model. README section "2. The reverse process".

To turn noise back into a roll we need p(x_{t-1} | x_t) for every t: a Gaussian whose mean and
covariance come from a small network (model.ReverseModel, read through common.p_reverse).
Before training, that network knows nothing. This script builds it, prints its size, and puts
its guess for one step t next to the answer it will be trained to match, the forward posterior
q(x_{t-1} | x_t, x0), which is known in closed form because x0 is known during training.

Then it shows why the reverse steps need a full 2x2 covariance, not the paper's diagonal one:
at a small t, the x0 that a noisy point x_t may have come from lies on a short piece of the
curve, so Cov(x0 | x_t) (brute-force Bayes, roll.x0_posterior_moments) is a thin ellipse along
the curve's tangent, and on a spiral the tangent is oblique. Cut to its diagonal, the ellipse
becomes an axis-aligned one that spreads across the curve, where x0 never is.

Figures (into images/):
- 02_posterior_vs_untrained.png  for one t: the noisy points x_t, the posterior's pull towards x0,
                                 and the untrained model's pull, with the KL between them
- 02_x0_covariance.png           at a small t, along the roll: the ellipses of Cov(x0 | x_t) and
                                 of their diagonal (axis-aligned) cuts, and three of them enlarged
"""
import argparse

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Ellipse

import common
import cli
import figures
import roll
from model import ReverseModel

N_POINTS = 150        # points x0 and x_t at the step shown
ARROWS_SHOWN = 30     # of which the steps of so many are drawn: few enough that none cross
NOISE_SHOWN = 0.2     # show the first step t whose noise std sqrt(1 - alpha_bar_t) exceeds this
NOISE_ELLIPSES = 0.05  # the ellipses' step: the first t whose noise std exceeds this (a small t)
N_ELLIPSES = 24        # ellipses drawn along the roll, at equal steps of the curve parameter u


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_standard_args(parser)
    args, device, generator = cli.parse_and_prepare(parser)

    schedule = common.make_schedule()
    alpha_bar = schedule.alpha_bar
    model = ReverseModel().to(device)
    n_parameters = sum(p.numel() for p in model.parameters())
    print(f"reverse model: {model.config}, {n_parameters:,} parameters")
    print(model)

    # A step in the middle of the chain: the roll is blurred but still there.
    t = int(torch.nonzero(torch.sqrt(1.0 - alpha_bar) > NOISE_SHOWN)[0])
    x0 = roll.swiss_roll(N_POINTS, generator).to(device)
    steps = torch.full((N_POINTS,), t, dtype=torch.long, device=device)
    x_t = common.sample_gaussian(*common.q_closed_form(x0, steps, schedule), generator)

    # The target (README, posterior q(x_{t-1} | x_t, x0)) and the untrained guess p(x_{t-1} | x_t).
    mean_q, cov_q = common.q_posterior(x0, x_t, steps, schedule)
    with torch.no_grad():
        mean_p, cov_p = common.p_reverse(model, x_t, steps, schedule)
    kl = common.kl_gaussian(mean_q, cov_q, mean_p, cov_p)
    std_q = torch.diagonal(cov_q, dim1=-2, dim2=-1).sqrt()   # per coordinate
    std_p = torch.diagonal(cov_p, dim1=-2, dim2=-1).sqrt()
    print(f"step t = {t}: noise std sqrt(1 - alpha_bar_t) = {torch.sqrt(1 - alpha_bar[t]).item():.3f}")
    print(f"  posterior q(x_{{t-1}} | x_t, x0): std {std_q[0, 0].item():.4f} (the same for every point)")
    print(f"  untrained p(x_{{t-1}} | x_t):      std {std_p.mean().item():.4f} on average")
    print(f"  mean distance between their means: {(mean_q - mean_p).norm(dim=1).mean().item():.4f}")
    print(f"  KL(q || p) = {kl.mean().item():.2f} nats per point: training drives this down (chapter 3)")

    draw_posterior_vs_untrained(x0, x_t, mean_q, mean_p, kl, t, args.images / "02_posterior_vs_untrained.png")
    print(f"figure written to {args.images}/02_posterior_vs_untrained.png")

    # Why diagonal falls short: Cov(x0 | x_t) at a small t, by brute-force Bayes over the curve.
    t = int(torch.nonzero(torch.sqrt(1.0 - alpha_bar) > NOISE_ELLIPSES)[0])
    x0 = roll.point_at((torch.arange(N_ELLIPSES, dtype=torch.float64) + 0.5) / N_ELLIPSES)
    x_t = common.sample_gaussian(*common.q_closed_form(x0, t, schedule), generator)
    x0_mean, x0_cov = roll.x0_posterior_moments(x_t, t, schedule)
    x0_diagonal = torch.diag_embed(torch.diagonal(x0_cov, dim1=-2, dim2=-1))
    # The price of the cut, for this step: the KL from the full reverse step (README, chapter 2:
    # sigma_tilde^2 I + c_t^2 Cov(x0 | x_t)) to the diagonal one with the same mean.
    mean_full, cov_full = common.reverse_from_x0_moments(x0_mean, x0_cov, x_t, t, schedule)
    _, cov_diagonal = common.reverse_from_x0_moments(x0_mean, x0_diagonal, x_t, t, schedule)
    lost = common.kl_gaussian(mean_full, cov_full, mean_full, cov_diagonal)
    variances = torch.linalg.eigvalsh(x0_cov)       # ascending: the long axis is the last
    correlation = x0_cov[:, 0, 1] / (x0_cov[:, 0, 0] * x0_cov[:, 1, 1]).sqrt()
    print(f"step t = {t}: noise std sqrt(1 - alpha_bar_t) = {torch.sqrt(1 - alpha_bar[t]).item():.3f}; "
          f"Cov(x0 | x_t) at {N_ELLIPSES} points along the roll (brute-force Bayes):")
    print(f"  long axis std {variances[:, 1].sqrt().median().item():.4f}, short axis std "
          f"{variances[:, 0].clamp_min(0).sqrt().median().item():.5f} (medians): a thin ellipse along the curve")
    print(f"  correlation of its two coordinates: median |r| = {correlation.abs().median().item():.2f}, "
          f"which a diagonal covariance sets to 0")
    print(f"  the diagonal reverse step loses KL = {lost.mean().item():.3f} nats per point at this step "
          f"(the full step against its diagonal cut)")

    draw_x0_covariance(args.images / "02_x0_covariance.png", x0_mean, x0_cov, x0_diagonal,
                       roll.swiss_roll(2000, generator), t)
    print(f"figure written to {args.images}/02_x0_covariance.png")


def draw_posterior_vs_untrained(x0, x_t, mean_q, mean_p, kl, t, path):
    """README 2, "The target: the posterior": 02_posterior_vs_untrained.png, the data and x_t (left),
    then for a few of the points the posterior's step (middle) and the untrained model's (right),
    each an arrow from x_t to its mean, beside a dashed line to the x0 that x_t came from."""
    x0, x_t, mean_q, mean_p = (v.detach().cpu() for v in (x0, x_t, mean_q, mean_p))
    shown = slice(0, ARROWS_SHOWN)   # the points are drawn at random: the first few are a fair pick
    step_q, step_p = (mean_q - x_t).norm(dim=1).median().item(), (mean_p - x_t).norm(dim=1).median().item()
    # The posterior's step is drawn to scale; the untrained one is too short to see, so it is
    # stretched until its median matches, and the title says by how much.
    stretch = step_q / step_p
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.8))
    figures.plot_points(axes[0], x0, "")
    axes[0].scatter(*x_t.T, s=4, color="tab:orange")
    axes[0].set_title(f"x0 (blue) and x_t at t = {t} (orange)")
    panels = [(axes[1], mean_q, 1.0, f"posterior q(x_{{t-1}} | x_t, x0)\nits step x_t -> mean, to scale (median {step_q:.3f}):\n"
                                      f"towards the x0 that x_t came from (dashed)"),
              (axes[2], mean_p, stretch, f"untrained p(x_{{t-1}} | x_t), KL = {kl.mean().item():.1f} nats\n"
                                         f"its step x_t -> mean, drawn x{stretch:.0f} (median {step_p:.3f}):\n"
                                         f"away from the origin (eps_theta = 0), blind to x0")]
    for ax, mean, scale, title in panels:
        ax.scatter(*x0.T, s=1, alpha=0.3, color="tab:blue", rasterized=True)
        for start, end in zip(x_t[shown], x0[shown]):
            ax.plot(*torch.stack([start, end]).T, ls="--", lw=0.8, color="gray")
        ax.scatter(*x0[shown].T, s=14, color="tab:blue", zorder=3, label="x0")
        ax.scatter(*x_t[shown].T, s=14, color="tab:orange", zorder=3, label="x_t")
        ax.quiver(*x_t[shown].T, *((mean - x_t)[shown].T * scale), angles="xy", scale_units="xy",
                  scale=1, width=0.005, headlength=3.5, headaxislength=3, color="tab:red", zorder=4,
                  label="mean - x_t")
        ax.set(xlim=(-figures.AXIS_LIMIT, figures.AXIS_LIMIT), ylim=(-figures.AXIS_LIMIT, figures.AXIS_LIMIT),
               aspect="equal", title=title)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    figures.save_figure(fig, path)


def add_ellipses(ax, centres, covariances, color, label=None):
    """The 2-standard-deviation ellipse of each covariance around its centre, filled lightly."""
    values, vectors = torch.linalg.eigh(covariances)
    for i, (centre, value, vector) in enumerate(zip(centres, values, vectors)):
        angle = torch.rad2deg(torch.atan2(vector[1, 1], vector[0, 1])).item()
        width, height = (4.0 * value.clamp_min(0).sqrt()).flip(0).tolist()
        ax.add_patch(Ellipse(centre.tolist(), width, height, angle=angle, facecolor=color, alpha=0.35,
                             edgecolor=color, lw=1.5, label=label if i == 0 else None))


def draw_x0_covariance(path, x0_mean, x0_cov, x0_diagonal, background, t):
    """02_x0_covariance.png. Top: the roll with, at points along it, the ellipse of Cov(x0 | x_t)
    (red) and of its diagonal cut (purple). At this scale the red ones are slivers: all their
    spread is along the curve. Bottom: three of them enlarged, where the shapes can be read: the
    full covariance lies along the curve, the diagonal one spreads across it."""
    fig, axes = plt.subplot_mosaic([["full"] * 3 + ["diagonal"] * 3, ["z0"] * 2 + ["z1"] * 2 + ["z2"] * 2],
                                   figsize=(12, 10), gridspec_kw={"height_ratios": [3, 2]})
    zoomed = [len(x0_mean) // 8, len(x0_mean) // 2, (7 * len(x0_mean)) // 8]
    for name, title, shown in (("full", "Cov(x0 | x_t), brute-force Bayes (red)", [(x0_cov, "tab:red")]),
                               ("diagonal", "its diagonal (purple): the paper's class",
                                [(x0_diagonal, "tab:purple"), (x0_cov, "tab:red")])):
        ax = axes[name]
        ax.scatter(*background.T, s=1, color="0.75")
        for covariances, color in shown:
            add_ellipses(ax, x0_mean, covariances, color)
        for k, i in enumerate(zoomed):
            ax.annotate(str(k + 1), x0_mean[i].tolist(), xytext=(6, 6), textcoords="offset points", fontsize=10)
        ax.set(xlim=(-figures.AXIS_LIMIT, figures.AXIS_LIMIT), ylim=(-figures.AXIS_LIMIT, figures.AXIS_LIMIT),
               aspect="equal", title=f"{title}\nt = {t}: ellipses of 2 standard deviations")
    for k, i in enumerate(zoomed):
        ax = axes[f"z{k}"]
        half = 1.3 * 2.0 * x0_diagonal[i].diagonal().max().sqrt().item()
        ax.scatter(*background.T, s=2, color="0.6")
        add_ellipses(ax, x0_mean[i:i + 1], x0_diagonal[i:i + 1], "tab:purple", "diagonal cut")
        add_ellipses(ax, x0_mean[i:i + 1], x0_cov[i:i + 1], "tab:red", "Cov(x0 | x_t)")
        centre = x0_mean[i].tolist()
        ax.set(xlim=(centre[0] - half, centre[0] + half), ylim=(centre[1] - half, centre[1] + half),
               aspect="equal", xticks=[], yticks=[], title=f"point {k + 1}, enlarged")
    axes["z0"].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    figures.save_figure(fig, path)


if __name__ == "__main__":
    main()
