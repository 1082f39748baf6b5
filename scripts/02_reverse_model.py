"""Chapter 2: the reverse model. README section "2. The reverse process".

To turn noise back into a roll we need p(x_{t-1} | x_t) for every t: a Gaussian whose mean and
covariance come from a small network (model.ReverseModel, read through common.p_reverse).
Before training, that network knows nothing. This script builds it, prints its size, and puts
its guess for one step t next to the answer it will be trained to match, the forward posterior
q(x_{t-1} | x_t, x0), which is known in closed form because x0 is known during training.

Figure (into images/):
- 02_posterior_vs_untrained.png  for one t: the noisy points x_t, the posterior's pull towards x0,
                                 and the untrained model's pull, with the KL between them
"""
import argparse

import matplotlib.pyplot as plt
import torch

import common
import plumbing
import roll
from model import ReverseModel

N_POINTS = 150        # arrows drawn per panel: enough to see the roll, few enough to read
ARROW_LENGTH = 0.3    # the posterior's median arrow is drawn this long (one step moves much less)
NOISE_SHOWN = 0.2     # show the first step t whose noise std sqrt(1 - alpha_bar_t) exceeds this


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    plumbing.add_standard_args(parser)
    args, device, generator = plumbing.parse_and_prepare(parser)

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

    # One step moves a point very little, so both panels stretch their arrows by the same factor.
    scale = ARROW_LENGTH / (mean_q - x_t).norm(dim=1).median().item()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.6))
    plumbing.plot_points(axes[0], x0, "")
    axes[0].scatter(*x_t.cpu().T, s=4, color="tab:orange")
    axes[0].set_title(f"x0 (blue) and x_t at t = {t} (orange)")
    panels = [(axes[1], mean_q, f"posterior q(x_{{t-1}} | x_t, x0): mean - x_t\n(arrows x{scale:.0f})"),
              (axes[2], mean_p, f"untrained p(x_{{t-1}} | x_t): mean - x_t\n(arrows x{scale:.0f}, KL = {kl.mean().item():.1f} nats)")]
    for ax, mean, title in panels:
        plumbing.plot_points(ax, x0, title)
        drift = (mean - x_t).cpu()
        ax.quiver(*x_t.cpu().T, *(drift.T * scale), angles="xy", scale_units="xy", scale=1,
                  width=0.003, color="tab:red")
    fig.tight_layout()
    plumbing.save_figure(fig, args.images / "02_posterior_vs_untrained.png")
    print(f"figure written to {args.images}/02_posterior_vs_untrained.png")


if __name__ == "__main__":
    main()
