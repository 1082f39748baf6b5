"""Benchmark: how fast and how well chapter 3 trains on this machine. README section "Results".

Runs scripts/03_train.py with its defaults (or the --iters given) as a separate process, as a
reader would, and reads what it prints: wall seconds of the whole run, iterations per second,
held-out K and K - L_null in bits. It then puts the result next to the paper's Table 1, the
ceilings for beta_1, and what no network of each class can beat with this schedule: the
Bayes-optimal Gaussian reverse process with diagonal and with full covariance
(roll.bayes_optimal_reverse), evaluated on the same held-out points and the same noise as the
trained model, so that each difference is paired. From the same KL terms it draws where the bits
go (README, chapter 3): images/03_kl_per_step.png, each step's KL for the trained model and both
Bayes-optimal processes. A benchmark, not a test: it asserts nothing. The checkpoint goes to
outputs/benchmark.pt and the training curve to a temporary folder, so the walkthrough's other
files stay untouched.

    python scripts/benchmark.py                   # the defaults: a minute of training, then minutes of Bayes-optimal K
    python scripts/benchmark.py --iters 1000 2000 4000   # how far longer training gets
    python scripts/benchmark.py --covariance diagonal    # the paper's class against its Bayes-optimal process
"""
import argparse
import math
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import matplotlib.pyplot as plt
import torch

import common
import checkpoints
import cli
import figures
import roll
from model import COVARIANCES

N_BAYES = 5000       # held-out points for the Bayes-optimal K (minutes per class)
K_LINE = re.compile(r"^K = (-?[\d.]+) bits  \(K - L_null = (-?[\d.]+) bits")
SPEED_LINE = re.compile(r"^trained (\d+) iterations in ([\d.]+) s \(([\d.]+) it/s\) on (\S+)")


def train(iters, covariance, seed, device):
    """Run 03_train.py once; returns (wall seconds, its printed numbers)."""
    command = [sys.executable, str(cli.ROOT / "scripts" / "03_train.py"), "--seed", str(seed),
               "--covariance", covariance, "--device", device,
               "--checkpoint", str(cli.OUTPUTS / "benchmark.pt")]
    if iters is not None:
        command += ["--iters", str(iters)]
    with tempfile.TemporaryDirectory() as images:
        began = time.perf_counter()
        run = subprocess.run(command + ["--images", images], capture_output=True, text=True)
        wall = time.perf_counter() - began
    if run.returncode != 0:
        raise SystemExit(f"error: 03_train.py failed: {run.stderr.strip().splitlines()[-1]}")
    numbers = {}
    for line in run.stdout.splitlines():
        if match := SPEED_LINE.match(line):
            numbers.update(iters=int(match[1]), train_s=float(match[2]), it_per_s=float(match[3]),
                           device=match[4])
        if match := K_LINE.match(line):
            numbers.update(K=float(match[1]), K_minus_null=float(match[2]))
    return wall, numbers


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=cli.positive_int, nargs="+", default=[None],
                        help="training lengths to run (default: 03_train.py's own default)")
    parser.add_argument("--covariance", choices=COVARIANCES[:2], default="full",
                        help="the reverse steps' covariance to train, as for 03_train.py (default: %(default)s)")
    parser.add_argument("--seed", type=cli.seed_int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="as for 03_train.py (default: auto)")
    parser.add_argument("--bayes-points", type=cli.whole_number(0, roll.N_HELDOUT), default=N_BAYES,
                        help="held-out points for the Bayes-optimal K and the per-step figure; 0 skips "
                             "them (default: %(default)s)")
    parser.add_argument("--images", type=pathlib.Path, default=cli.IMAGES,
                        help="folder for the per-step KL figure (default: the repository's images/)")
    args = parser.parse_args()
    cli.device_or_exit(parser, args.device)
    cli.writable_dir_or_exit(parser, cli.OUTPUTS, "the benchmark checkpoint")
    cli.writable_dir_or_exit(parser, args.images, "figures")

    print(f"machine: {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(f"{'iters':>6} {'wall s':>7} {'train s':>8} {'it/s':>6} {'K bits':>7} {'K - L_null':>10}")
    for iters in args.iters:
        wall, numbers = train(iters, args.covariance, args.seed, args.device)
        print(f"{numbers['iters']:>6} {wall:>7.1f} {numbers['train_s']:>8.1f} {numbers['it_per_s']:>6.1f} "
              f"{numbers['K']:>7.3f} {numbers['K_minus_null']:>10.3f}", flush=True)

    null = common.nats_to_bits(common.null_log_likelihood())
    print(f"paper, Table 1:                    K = {roll.PAPER_K_BITS} bits, K - L_null = {roll.PAPER_K_MINUS_NULL_BITS} bits")
    K_ceiling = common.nats_to_bits(roll.K_ceiling())
    print(f"ceiling of K for beta_1 = {common.BETA_1:.0e}:      K = {K_ceiling:.3f} bits, "
          f"K - L_null = {K_ceiling - null:.3f} bits")
    print(f"ceiling of the log-likelihood:     {common.nats_to_bits(roll.log_likelihood_ceiling()):.3f} bits")
    if args.bayes_points > 0:
        # The same points and the same noise for the Bayes-optimal processes and the last trained model,
        # so their differences are measured far more precisely than any K alone.
        n = args.bayes_points
        model, schedule, _ = checkpoints.load_checkpoint(cli.OUTPUTS / "benchmark.pt")
        name = f"trained ({model.config['covariance']})"
        kl = {name: roll.heldout_kl(common.reverse_of(model, schedule), schedule, n, args.seed)}
        trained = common.bound_K(kl[name], schedule)
        print(f"{name}: K = {roll.mean_and_se_bits(trained)[0]:.3f} bits on {n} held-out points")
        for covariance in ("diagonal", "full"):
            name = f"Bayes-optimal {covariance}"
            kl[name] = roll.heldout_kl(roll.bayes_optimal_reverse(schedule, covariance), schedule, n, args.seed)
            bayes = common.bound_K(kl[name], schedule)
            K, se = roll.mean_and_se_bits(bayes)
            gap, gap_se = roll.mean_and_se_bits(bayes - trained)
            print(f"{name}: K = {K:.3f} bits  (se {se:.3f}); {gap:+.3f} bits (se {gap_se:.3f}) "
                  f"from the trained model, paired", flush=True)
        draw_kl_per_step(kl, schedule, args.images / "03_kl_per_step.png")
        print(f"figure written to {args.images}/03_kl_per_step.png")


def draw_kl_per_step(kl, schedule, path):
    """Where the bits go (README, chapter 3). Left: each step's mean KL in bits for t = 2..T, split
    into what even the Bayes-optimal full-covariance step pays (the price of a Gaussian step of
    that size, grey) and what the trained model pays on top of it (colour; paired on the same
    points and noise). Right: that excess for every reverse process, step by step, with 2
    standard errors: the trained model against the best of its class and the best of all."""
    t = torch.arange(2, schedule.T + 1).numpy()
    best = kl["Bayes-optimal full"][:, 2:]
    trained = next(name for name in kl if name.startswith("trained"))
    colors = {trained: "tab:blue", "Bayes-optimal diagonal": "tab:purple"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    floor = common.nats_to_bits(best.mean(0)).numpy()
    excess = common.nats_to_bits((kl[trained][:, 2:] - best).mean(0)).numpy()
    axes[0].bar(t, floor, color="0.7",
                label=f"Bayes-optimal full: {common.nats_to_bits(best.sum(1).mean()):.3f} bits in all")
    axes[0].bar(t, excess, bottom=floor, color=colors[trained],
                label=f"{trained}, on top: {common.nats_to_bits((kl[trained][:, 2:] - best).sum(1).mean()):+.3f} bits in all")
    axes[0].set(xlabel="step t", ylabel="mean KL of step t (bits per point)",
                title=f"the KL terms of K, on {len(best)} held-out points")
    for name, color in colors.items():
        lost = common.nats_to_bits(kl[name][:, 2:] - best).numpy()
        axes[1].errorbar(t, lost.mean(0), yerr=2 * lost.std(0, ddof=1) / math.sqrt(len(lost)), fmt="o-",
                         ms=3, capsize=2, color=color, label=f"{name} - Bayes-optimal full")
    axes[1].axhline(0.0, color="gray", lw=0.8)
    axes[1].set(xlabel="step t", ylabel="KL minus the Bayes-optimal full's (bits per point, +-2 SE)",
                title="what each step loses against the best full-covariance step")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    figures.save_figure(fig, path)


if __name__ == "__main__":
    main()
