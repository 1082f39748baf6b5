"""Lab note (docs/claims.md): is the trained eps-network's error uncorrelated with its output, step
by step, and how far apart are Analytic-DPM's variance and the best isotropic one?

For each t = 2..T, on fresh roll points: E[(eps - eps_theta) . eps_theta] and its correlation,
the ratio of the two variances of chapter 5, and what a relative variance error delta costs in K
(about d delta^2 / 4 nats for the step, since K is flat at its optimum variance).

    PYTHONPATH=scripts python docs/eps_error_per_t.py [--checkpoint outputs/ddpm.pt] [--n 20000]
"""
import argparse
import math
import pathlib

import torch

import common
import ddpm
import checkpoints
import cli
import roll


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=pathlib.Path, default=checkpoints.DDPM_CHECKPOINT)
    parser.add_argument("--n", type=cli.positive_int, default=20_000, help="fresh points per step")
    parser.add_argument("--seed", type=cli.seed_int, default=1)
    args = parser.parse_args()
    network, schedule, _ = checkpoints.load_eps_network(args.checkpoint)
    network.eval()
    generator = torch.Generator().manual_seed(args.seed)
    mean_sq_eps, mean_sq_x0_error = roll.eps_moments(network, schedule, args.n, generator)
    steps = torch.arange(2, schedule.T + 1)
    analytic = ddpm.analytic_variance(steps, schedule, mean_sq_eps[steps].unsqueeze(1), roll.half_range()).flatten()
    best = ddpm.best_isotropic_variance(steps, schedule, mean_sq_x0_error[steps].unsqueeze(1)).flatten()
    print(f"{'t':>3} {'E[(eps-eps_th).eps_th]':>23} {'se':>7} {'corr':>7} {'analytic/best':>13} {'cost_bits':>10}")
    inner_means, cost = [], 0.0
    with torch.no_grad():
        for i, t in enumerate(steps.tolist()):
            _, eps, x_t = roll.noised_roll(args.n, t, schedule, generator)
            eps_theta = network(x_t, torch.full((args.n,), t))[0].double()
            error = eps.double() - eps_theta
            inner = (error * eps_theta).sum(1)
            corr = inner.mean() / math.sqrt(error.square().sum(1).mean() * eps_theta.square().sum(1).mean())
            delta = float(analytic[i] / best[i]) - 1.0
            step_cost = common.nats_to_bits(common.D * delta ** 2 / 4)
            cost += step_cost
            inner_means.append(inner.mean().item())
            print(f"{t:>3} {inner.mean().item():>23.4f} {inner.std().item() / math.sqrt(args.n):>7.4f} "
                  f"{corr.item():>7.3f} {float(analytic[i] / best[i]):>13.4f} {step_cost:>10.2e}")
    print(f"mean over t of E[(eps - eps_theta) . eps_theta]: {sum(inner_means) / len(inner_means):.4f}; "
          f"largest |analytic / best - 1|: {float((analytic / best - 1).abs().max()):.4f}; "
          f"d delta^2 / 4 summed over t: {cost:.5f} bits")


if __name__ == "__main__":
    main()
