"""Benchmark: how fast and how well chapter 3 trains on this machine. README section "Results".

Runs scripts/03_train.py with its defaults (or the --iters given) as a separate process, as a
reader would, and reads what it prints: wall seconds of the whole run, iterations per second,
held-out K and K - L_null in bits. It then puts the result next to the paper's Table 1, the
ceilings for beta_1, and the yardstick no network can beat with this schedule: the
Bayes-optimal Gaussian reverse process (common.bayes_optimal_reverse), evaluated on held-out
points. A benchmark, not a test: it asserts nothing. The checkpoint goes to
outputs/benchmark.pt and the figure to a temporary folder, so the walkthrough's files stay
untouched.

    python scripts/benchmark.py                   # the defaults: about a minute, then the yardstick
    python scripts/benchmark.py --iters 1000 2000 4000   # how far longer training gets
"""
import argparse
import math
import re
import subprocess
import sys
import tempfile
import time

import torch

import common

N_YARDSTICK = 1000   # held-out points for the Bayes-optimal K (about 30 s; standard error ~0.06 bits)
K_LINE = re.compile(r"^K = (-?[\d.]+) bits  \(K - L_null = (-?[\d.]+) bits")
SPEED_LINE = re.compile(r"^trained (\d+) iterations in ([\d.]+) s \(([\d.]+) it/s\) on (\S+)")


def train(iters, seed, device):
    """Run 03_train.py once; returns (wall seconds, its printed numbers)."""
    command = [sys.executable, str(common.ROOT / "scripts" / "03_train.py"), "--seed", str(seed),
               "--device", device, "--checkpoint", str(common.OUTPUTS / "benchmark.pt")]
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
    parser.add_argument("--iters", type=common.positive_int, nargs="+", default=[None],
                        help="training lengths to run (default: 03_train.py's own default)")
    parser.add_argument("--seed", type=common.seed_int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="as for 03_train.py (default: auto)")
    parser.add_argument("--yardstick-points", type=int, default=N_YARDSTICK,
                        help="held-out points for the Bayes-optimal K; 0 skips it (default: %(default)s)")
    args = parser.parse_args()
    common.device_or_exit(parser, args.device)
    common.writable_dir_or_exit(parser, common.OUTPUTS, "the benchmark checkpoint")

    print(f"machine: {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(f"{'iters':>6} {'wall s':>7} {'train s':>8} {'it/s':>6} {'K bits':>7} {'K - L_null':>10}")
    for iters in args.iters:
        wall, numbers = train(iters, args.seed, args.device)
        print(f"{numbers['iters']:>6} {wall:>7.1f} {numbers['train_s']:>8.1f} {numbers['it_per_s']:>6.1f} "
              f"{numbers['K']:>7.3f} {numbers['K_minus_null']:>10.3f}", flush=True)

    null = common.nats_to_bits(common.null_log_likelihood())
    print("paper, Table 1:                    K = 2.35 bits, K - L_null = 6.45 bits")
    ceiling_of_K = common.nats_to_bits(common.ceiling_of_K())
    print(f"ceiling of K for beta_1 = {common.BETA_1:.0e}:      K = {ceiling_of_K:.3f} bits, "
          f"K - L_null = {ceiling_of_K - null:.3f} bits")
    ceiling = common.nats_to_bits(common.ceiling())
    print(f"ceiling of the log-likelihood:     {ceiling:.3f} bits")
    if args.yardstick_points > 0:
        # The same points and the same noise for the yardstick and for the last trained model,
        # so their difference is measured far more precisely than either K alone.
        beta = common.make_beta()
        alpha_bar = common.alpha_bar_from_beta(beta)
        x0 = common.heldout_roll(args.yardstick_points).double()
        model, _, _ = common.load_checkpoint(common.OUTPUTS / "benchmark.pt")
        model.double()
        K = {}
        for name, reverse in [("Bayes-optimal", common.bayes_optimal_reverse(beta, alpha_bar)),
                              ("trained", common.reverse_of(model, beta, alpha_bar))]:
            kl = common.bound_per_step(reverse, x0, beta, alpha_bar, torch.Generator().manual_seed(args.seed))
            K[name] = common.nats_to_bits(common.bound_K(kl, beta, alpha_bar))
        n = args.yardstick_points
        gap = K["Bayes-optimal"] - K["trained"]
        print(f"Bayes-optimal Gaussian reverse process, this schedule ({n} held-out points): "
              f"K = {K['Bayes-optimal'].mean():.3f} +- {K['Bayes-optimal'].std() / math.sqrt(n):.3f} bits, "
              f"{gap.mean():.3f} +- {gap.std() / math.sqrt(n):.3f} bits above the last trained model")

if __name__ == "__main__":
    main()
