"""The figures of chapter 11 (README "11. Continuous time: scores, the probability-flow ODE and
flow matching"): the score fields, the likelihoods against the bounds, sample quality against
network calls, and the two ODEs' paths. Each takes what the chapter's step computed and draws it.
"""
import math

import matplotlib.pyplot as plt
import torch

import continuous
import figures
import roll

FIELD_POINTS = 400             # points of q(x_t) with an arrow in 11_score_fields.png


def score_arrows(eps_at, exact_eps, x_t, t, lam, sigma, n=FIELD_POINTS):
    """The learned and the exact score at the first n points of q(x_t): (points, learned, exact)."""
    x = x_t[:n]
    with torch.no_grad():
        learned = continuous.score_from_eps(eps_at(x, lam).cpu().double(), sigma)
    return x.cpu().double(), learned, continuous.score_from_eps(exact_eps(x.cpu().double(), t)[0], sigma)


def draw_score_fields(path, fields, schedule):
    """11_score_fields.png: the exact score (top) and the learned one (bottom) at points of q(x_t),
    each step t a column. The score grows like 1 / sigma near the data, so the arrows show
    sigma times it, -eps, on one scale for every panel."""
    fig, axes = plt.subplots(2, len(fields), figsize=(4.2 * len(fields), 8.4), squeeze=False)
    _, curve = roll.curve_grid(2000)
    for col, (t, (x, learned, exact, sigma)) in enumerate(fields.items()):
        a = math.sqrt(float(schedule.alpha_bar[t]))
        for row, (field, what) in enumerate(((exact, "exact (brute-force Bayes)"), (learned, "learned"))):
            ax = axes[row, col]
            ax.plot(a * curve[:, 0], a * curve[:, 1], color="lightgray", lw=1)
            ax.quiver(x[:, 0], x[:, 1], sigma * field[:, 0], sigma * field[:, 1], angles="xy", scale_units="xy",
                      scale=8.0, width=0.004, color="tab:blue" if row == 0 else "tab:orange")
            ax.set(xlim=(-figures.AXIS_LIMIT, figures.AXIS_LIMIT), ylim=(-figures.AXIS_LIMIT, figures.AXIS_LIMIT),
                   aspect="equal", xticks=[], yticks=[], title=f"t = {t}, sigma = {sigma:.3f}: {what}")
    fig.suptitle("the score times sigma (= -eps) at points of q(x_t); grey: the roll scaled by sqrt(alpha_bar_t)")
    fig.tight_layout()
    figures.save_figure(fig, path)


def draw_likelihoods(path, results, ceilings, trajectories):
    """11_likelihoods.png: each likelihood and bound in bits with two standard errors, on the
    held-out points (left) and on the same points blurred (right), with each panel's ceiling."""
    labels = {"K": "chapter 3: K", "IW": f"chapter 3: IW bound, M = {trajectories}", "diffusion": "diffusion ODE",
              "flow": "flow matching ODE", "exact_roll_flow": "the roll's exact flow"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharey=True)
    rows = list(dict.fromkeys((model, trace) for model, _, trace in results))
    for ax, points in zip(axes, ("curve", "blurred")):
        for y, (model, trace) in enumerate(rows):
            if (model, points, trace) in results:
                bits, se = roll.mean_and_se_bits(results[model, points, trace])
                ax.errorbar(bits, y, xerr=2 * se, fmt="o", color="tab:blue" if model in ("K", "IW") else "tab:orange")
        ax.axvline(ceilings[points], color="gray", ls="--", label=f"ceiling {ceilings[points]:.2f} bits")
        ax.set(xlabel="bits per point (error bars: 2 se)",
               title=("held-out points (on the curve)" if points == "curve"
                      else "the same points, blurred as q at t = 1"))
        ax.legend(loc="lower left", fontsize=8)
    axes[0].set_yticks(range(len(rows)),
                       [labels[model] + (f", {trace} trace" if trace else "") for model, trace in rows])
    axes[0].invert_yaxis()
    fig.tight_layout()
    figures.save_figure(fig, path)


def draw_quality(path, scored, band):
    """11_quality.png: off-curve share and W1(u) against network calls, for every sampler."""
    names = list(dict.fromkeys(name for name, _ in scored))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for name, color in zip(names, plt.cm.tab10.colors):
        calls = sorted(c for n, c in scored if n == name)
        style = "o-" if name.startswith("flow") else "s--"
        axes[0].plot(calls, [100 * scored[name, c]["off_curve"] for c in calls], style, color=color, label=name)
        axes[1].plot(calls, [scored[name, c]["w1_u"] for c in calls], style, color=color, label=name)
    axes[1].axhspan(*band, color="gray", alpha=0.3, label="real roll, 5-95%")
    for ax, label in zip(axes, ["off the curve (%)", "W1(u): mass along the curve"]):
        ax.set(xscale="log", xlabel="network calls per sample", ylabel=label)
        ax.legend(fontsize=7, ncol=2)
    axes[0].set_yscale("symlog", linthresh=0.1)
    axes[0].set_ylim(0, 100)
    axes[1].set_yscale("log")
    fig.tight_layout()
    figures.save_figure(fig, path)


def draw_paths(path, paths):
    """11_ode_paths.png: the two ODEs' paths from the same x_T, coloured by where on the roll they end."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.5))
    titles = {"diffusion": "probability-flow ODE of the diffusion", "flow": "flow matching, straight path"}
    for ax, (what, lines) in zip(axes, paths.items()):
        lines = lines.numpy()
        colors = plt.cm.viridis(roll.nearest_on_curve(torch.from_numpy(lines[-1]))[1].numpy())
        for i in range(lines.shape[1]):
            ax.plot(lines[:, i, 0], lines[:, i, 1], color=colors[i], lw=0.5, alpha=0.6)
        ax.scatter(lines[0, :, 0], lines[0, :, 1], s=3, color="gray", label="x_T (noise)")
        ax.scatter(lines[-1, :, 0], lines[-1, :, 1], s=3, c=colors, label="x_0")
        ax.set(xlim=(-3, 3), ylim=(-3, 3), aspect="equal", title=titles[what])
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    figures.save_figure(fig, path)
