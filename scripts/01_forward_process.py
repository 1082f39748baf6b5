"""Chapter 1: the forward process. README section "1. The forward process".

We take the Swiss roll x0 and destroy it with T small Gaussian steps q(x_t | x_{t-1}), then draw
x_t in one jump from the closed form q(x_t | x0), and check that both roads arrive at the same
distribution: the script prints, for every few t, the mean, the variance and the covariance
with x0 of the chain's points and of the closed form's points next to the theory, then the
largest gap in standard errors.

Figures (into images/):
- 01_markov_chain.png          the chain x_0 -> x_1 -> ... -> x_T: q forward, p backward
- 01_chain_vs_closed_form.png  the roll at t = 0, where it dissolves, and T: chain and closed form
- 01_schedule.png              beta_t and alpha_bar_t against t
- 01_forward_process.gif       the roll dissolving into noise, step by step
"""
import argparse

import matplotlib.pyplot as plt
import torch

import common
import cli
import figures
import roll

N_POINTS = 10_000     # points in the roll; the moments below have standard errors ~ 1/sqrt(N)
MIN_POINTS = 100      # fewer, and the standard errors themselves are too rough to compare with
GIF_POINTS = 2000     # points in the animation (a light file)
PRINT_EVERY = 5       # print one row of the table every PRINT_EVERY steps (all steps are checked)


def moment_terms(x_t, x0):
    """Per point, the terms whose averages are the mean, the variance and the covariance with x0
    (each averaged over the two coordinates): shape (n, 3). Their spread gives standard errors."""
    centred = x_t - x_t.mean(0)
    return torch.stack([x_t.mean(1), (centred ** 2).mean(1),
                        (centred * (x0 - x0.mean(0))).mean(1)], dim=1).cpu().double()


def gap_in_standard_errors(terms, reference):
    """Largest |mean of terms - reference| over the three moments, in standard errors."""
    stderr = terms.std(0) / terms.shape[0] ** 0.5
    return ((terms.mean(0) - reference).abs() / stderr.clamp_min(1e-12)).max().item()


def draw_markov_chain(x0, x_T, path):
    """The diagram of the two Markov chains over x_0, ..., x_T: q adds noise going right, p (to be
    learned) removes it going left; the clouds under the ends are the chain's own points."""
    nodes = [("$x_0$", 0.0), ("$x_1$", 1.3), ("$\\cdots$", 2.5), ("$x_{t-1}$", 3.7), ("$x_t$", 5.3),
             ("$\\cdots$", 6.5), ("$x_T$", 7.7)]
    fig, ax = plt.subplots(figsize=(11, 2.9))
    for label, x in nodes:
        if "cdots" in label:
            ax.text(x, 0, label, ha="center", va="center", fontsize=18)
        else:
            ax.add_patch(plt.Circle((x, 0), 0.36, facecolor="white", edgecolor="black", lw=1.5))
            ax.text(x, 0, label, ha="center", va="center", fontsize=16)
    for (_, left), (_, right) in zip(nodes, nodes[1:]):   # q forward above, p backward below
        ax.annotate("", xy=(right - 0.3, 0.25), xytext=(left + 0.3, 0.25),
                    arrowprops=dict(arrowstyle="-|>", color="tab:blue", lw=1.5, connectionstyle="arc3,rad=-0.4"))
        ax.annotate("", xy=(left + 0.3, -0.25), xytext=(right - 0.3, -0.25),
                    arrowprops=dict(arrowstyle="-|>", color="tab:red", lw=1.5, connectionstyle="arc3,rad=-0.4"))
    ax.text(4.5, 0.95, "$q(x_t \\mid x_{t-1}) = \\mathcal{N}(\\sqrt{1-\\beta_t}\\,x_{t-1},\\ \\beta_t I)$: "
            "adds noise (fixed)", ha="center", color="tab:blue", fontsize=12)
    ax.text(4.5, -1.05, "$p(x_{t-1} \\mid x_t)$: removes it (learned, chapters 2-3)",
            ha="center", color="tab:red", fontsize=12)
    for points, left, caption in ((x0, -1.65, "$x_0$: data"), (x_T, 8.35, "$x_T$: noise")):
        inset = ax.inset_axes([left, -0.6, 1.2, 1.2], transform=ax.transData)
        inset.scatter(*points[:GIF_POINTS].cpu().T, s=0.5, color="gray", rasterized=True)
        inset.set(xlim=(-figures.AXIS_LIMIT, figures.AXIS_LIMIT), ylim=(-figures.AXIS_LIMIT, figures.AXIS_LIMIT),
                  xticks=[], yticks=[], aspect="equal", title=caption)
    ax.set(xlim=(-1.75, 9.65), ylim=(-1.25, 1.2), aspect="equal")
    ax.axis("off")
    fig.tight_layout()
    figures.save_figure(fig, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-points", type=cli.whole_number(MIN_POINTS), default=N_POINTS,
                        help=f"number of roll points, at least {MIN_POINTS} (default: %(default)s)")
    cli.add_standard_args(parser)
    args, device, generator = cli.parse_and_prepare(parser)

    schedule = common.make_schedule()
    beta, alpha_bar, T = schedule.beta, schedule.alpha_bar, schedule.T
    x0 = roll.swiss_roll(args.n_points, generator).to(device)

    # Two roads to x_t: T small steps of q(x_t | x_{t-1}), or one jump with q(x_t | x0).
    chain = [x0]
    for t in range(1, T + 1):
        chain.append(common.sample_gaussian(*common.q_step(chain[-1], t, schedule), generator))
    jump = [x0] + [common.sample_gaussian(*common.q_closed_form(x0, t, schedule), generator)
                   for t in range(1, T + 1)]

    # Theory for the closed form (README eq. for q(x_t | x0)), with the sample's own x0 moments:
    # E[x_t] = sqrt(alpha_bar_t) E[x0], Var[x_t] = alpha_bar_t Var[x0] + 1 - alpha_bar_t,
    # Cov[x_t, x0] = sqrt(alpha_bar_t) Var[x0]: the signal fades, the total variance stays ~1.
    m0, v0 = x0.mean(0).mean().item(), x0.var(0).mean().item()
    n = args.n_points
    print(f"forward process on {n} roll points, T = {T}, beta_1 = {beta[1].item():.0e}, "
          f"beta_T = {beta[T].item():.3f}, alpha_bar_T = {alpha_bar[T].item():.2e}; log SNR falls in equal "
          f"steps from {common.log_snr(schedule)[1].item():.2f} at t = 1 to {common.log_snr(schedule)[T].item():.2f} at t = T")
    print("            mean                    variance                cov(x_t, x0)")
    print("  t   chain  closed  theory   chain  closed  theory   chain  closed  theory")
    chain_vs_jump, jump_vs_theory = 0.0, 0.0
    for t in range(1, T + 1):
        a = alpha_bar[t].item()
        theory = torch.tensor([a ** 0.5 * m0, a * v0 + 1 - a, a ** 0.5 * v0], dtype=torch.float64)
        by_chain, by_jump = moment_terms(chain[t], x0), moment_terms(jump[t], x0)
        chain_vs_jump = max(chain_vs_jump, gap_in_standard_errors(by_chain - by_jump, 0.0))
        jump_vs_theory = max(jump_vs_theory, gap_in_standard_errors(by_jump, theory))
        if t == 1 or t % PRINT_EVERY == 0:
            cells = [f"{v:7.3f}" for triple in zip(by_chain.mean(0), by_jump.mean(0), theory)
                     for v in triple]
            print(f"{t:3d} " + " ".join(cells))
    # With n points, the largest of 3 T gaps of pure chance is usually below 3.5 standard errors.
    print(f"largest gap over all t: chain vs closed form {chain_vs_jump:.2f}, "
          f"closed form vs theory {jump_vs_theory:.2f} standard errors")

    # Figure: the chain itself, with our symbols (README, "The chain").
    draw_markov_chain(x0, chain[T], args.images / "01_markov_chain.png")

    # Figures: both roads side by side where the roll dissolves; the schedule.
    draw_chain_vs_closed_form(chain, jump, schedule, args.images / "01_chain_vs_closed_form.png")
    draw_schedule(schedule, args.images / "01_schedule.png")

    # Animation: the chain, one frame per step.
    figures.save_points_gif(args.images / "01_forward_process.gif",
                             [x_t[:GIF_POINTS] for x_t in chain],
                             [f"forward process, t = {t}" for t in range(T + 1)])
    print(f"figures written to {args.images}/: 01_markov_chain.png, 01_chain_vs_closed_form.png, "
          f"01_schedule.png, 01_forward_process.gif")


def draw_chain_vs_closed_form(chain, jump, schedule, path):
    """README 1, "The closed form": 01_chain_vs_closed_form.png, both roads side by side at
    t = 0, T and the steps where the roll dissolves."""
    shown = dissolving_steps(schedule)
    alpha_bar = schedule.alpha_bar
    fig, axes = plt.subplots(2, len(shown), figsize=(2.6 * len(shown), 6.2))
    for col, t in enumerate(shown):
        spread = ((1.0 - alpha_bar[t]) / alpha_bar[t]).sqrt().item()
        figures.plot_points(axes[0, col], chain[t], f"chain, t = {t}\nnoise / signal {spread:.2f}")
        figures.plot_points(axes[1, col], jump[t], f"closed form, t = {t}")
        for row in (0, 1):
            axes[row, col].set(xticks=[], yticks=[])
    fig.suptitle("q(x_t | x_{t-1}) applied t times (top) and q(x_t | x_0) in one jump (bottom)")
    fig.tight_layout()
    figures.save_figure(fig, path)


def draw_schedule(schedule, path):
    """README 1, "The schedule": 01_schedule.png, log SNR_t, beta_t and alpha_bar_t against t."""
    beta, alpha_bar, T = schedule.beta, schedule.alpha_bar, schedule.T
    steps = torch.arange(1, T + 1)
    fig, (snr, left, right) = plt.subplots(1, 3, figsize=(14, 3.6))
    snr.plot(steps, common.log_snr(schedule)[1:], "o-", ms=3, color="tab:green")
    snr.axhline(0.0, color="gray", lw=0.8)
    snr.set(xlabel="t", ylabel="log SNR_t = log(alpha_bar_t / (1 - alpha_bar_t))",
            title="the schedule: log SNR falls in equal steps")
    # beta_1 is set by hand; every later beta_t follows from the log SNR's equal steps, so it is
    # drawn apart: the dip to beta_2 is the change of rule, not a kink in the schedule.
    snr.plot(1, common.log_snr(schedule)[1], "*", ms=13, color="tab:red")
    snr.annotate("t = 1: from beta_1,\nset by hand", (1, common.log_snr(schedule)[1].item()),
                 xytext=(8, 9), textcoords="data", color="tab:red",
                 arrowprops=dict(arrowstyle="->", color="tab:red"))
    left.semilogy(steps[1:], beta[2:], "o-", ms=3, label="t >= 2: from the log SNR's equal steps")
    left.semilogy(1, beta[1], "*", ms=13, color="tab:red", label=f"beta_1 = {beta[1].item():.0e}, set by hand")
    fall = (common.log_snr(schedule)[1] - common.log_snr(schedule)[T]).item() / (T - 1)
    left.annotate(f"beta_2 < beta_1: beta_1 is all of x_1's noise,\n"
                  f"each later step multiplies the noise by e^{fall:.2f},\n"
                  f"so beta_2 ~ (e^{fall:.2f} - 1) beta_1, about half",
                  (2, beta[2].item()), xytext=(7, 4e-7), textcoords="data", fontsize=8.5,
                  arrowprops=dict(arrowstyle="->", color="gray"))
    left.set(xlabel="t", ylabel="beta_t (log scale)", title="variance added at step t",
             ylim=(1e-7, 1.0))
    left.legend(loc="upper left", fontsize=8.5)
    right.plot(steps, alpha_bar[1:], "o-", ms=3, label="alpha_bar_t (signal kept)")
    right.plot(steps, 1 - alpha_bar[1:], "o-", ms=3, label="1 - alpha_bar_t (noise)")
    right.set(xlabel="t", title="what is left of x0 after t steps")
    right.legend()
    fig.tight_layout()
    figures.save_figure(fig, path)


def dissolving_steps(schedule, levels=(0.1, 0.2, 0.35, 0.6)):
    """t = 0, the first step at which sqrt((1 - alpha_bar_t) / alpha_bar_t) reaches each of the
    levels, and t = T: the steps drawn in 01_chain_vs_closed_form.png. The roll dissolves while
    the noise's spread relative to the signal's grows from a tenth of the arms' spacing (about
    0.3 in standardised units) to more than it: these levels span that."""
    spread = ((1.0 - schedule.alpha_bar) / schedule.alpha_bar).sqrt()
    reached = [int(torch.nonzero(spread >= level)[0]) for level in levels if bool((spread >= level).any())]
    return sorted({0, *reached, schedule.T})


if __name__ == "__main__":
    main()
