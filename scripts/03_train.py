"""Chapter 3: training the reverse model on the bound K. README section "3. Training on the bound K".

The loss is -K, the paper's lower bound on the log-likelihood (eq. 14): for each roll point we
draw one step t in 2..T and x_t ~ q(x_t | x0), and pay KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t));
(T - 1) times that KL is an unbiased estimate of the sum over t. The entropy terms of K do not
depend on the network, so they only shift the curve. The script shows K in bits as it trains,
then measures K on a held-out set with every t summed exactly, and prints it next to the paper's
Table 1 and next to the ceiling set by beta_1. --covariance diagonal trains the paper's
class of reverse steps instead of the full 2x2 covariance (README, chapter 2).

Writes outputs/model.pt (atomically: the weights, and what --resume needs) and
images/03_training_curve.png. Ctrl-C saves the last completed state;
--resume continues from it and ends where a run that never stopped would have, bit for bit.
The per-step figure of chapter 3 (images/03_kl_per_step.png) is drawn by scripts/benchmark.py,
which pays for the Bayes-optimal reverse processes it is compared with.
"""
import argparse
import math
import pathlib
import time

import matplotlib.pyplot as plt
import torch
from tqdm import tqdm

import common
import checkpoints
import cli
import figures
import runs
import roll
from model import COVARIANCES, ReverseModel

ITERS = 3000              # default training length: about a minute on a quiet 2-core CPU (README, chapter 3)
BATCH_SIZE = 4096         # (x0, t) pairs per iteration
LR = 1e-2                 # Adam's peak step size: a short warm-up to it, then a cosine decay to 0
                          # (1e-2 beat 5e-3 by 0.02 bits in as many steps; docs/schedule.md)
WARMUP = 0.02             # fraction of --iters spent warming up
LOG_EVERY = 50            # iterations between points of the training curve
RESUMED_SETTINGS = ("iters", "lr", "batch_size", "covariance")  # a resume must match the run


def learning_rate(i, iters, peak):
    """The step size of iteration i = 0..iters-1: a linear warm-up over the first WARMUP of the
    run, from peak / warm-up length (never 0: every iteration moves the weights) up to peak,
    then a cosine decay from peak towards 0."""
    warmup = max(1, round(WARMUP * iters))
    if i < warmup:
        return peak * (i + 1) / warmup
    return peak * 0.5 * (1.0 + math.cos(math.pi * (i - warmup) / (iters - warmup)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_training_args(parser, ITERS, BATCH_SIZE, LR, "the bound K")
    parser.add_argument("--covariance", choices=COVARIANCES[:2], default="full",
                        help="the reverse steps' covariance: a full 2x2 matrix, or diagonal as in "
                             "the paper (default: %(default)s)")
    parser.add_argument("--checkpoint", type=pathlib.Path, default=checkpoints.DEFAULT_CHECKPOINT,
                        help="where to save the model (default: outputs/model.pt)")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint instead of starting afresh")
    parser.add_argument("--n-heldout", type=cli.whole_number(2, roll.N_HELDOUT), default=roll.N_HELDOUT, help="held-out points for K")
    cli.add_standard_args(parser)
    args, device, generator = cli.parse_and_prepare(parser)
    cli.output_file_or_exit(parser, args.checkpoint, "the checkpoint")
    runs.prepare_training()

    schedule = common.make_schedule()
    T = schedule.T
    model = ReverseModel(covariance=args.covariance).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    start = 0
    if args.resume:
        start = runs.resume(parser, args, RESUMED_SETTINGS, model, optimizer, generator)["iteration"]
    model.train()
    reverse = common.reverse_of(model, schedule)
    entropy = common.entropy_part(schedule)

    # The loop (README, chapter 3): -K = (T - 1) E_t[KL_t] - entropy terms.
    curve, done = [], start
    began = time.perf_counter()
    bar = tqdm(range(start, args.iters), initial=start, total=args.iters, desc="training")
    with runs.stop_on_ctrl_c() as interrupted:
        for i in bar:
            if interrupted:
                break
            x0 = roll.swiss_roll(args.batch_size, generator).to(device)
            t = torch.randint(2, T + 1, (args.batch_size,), generator=generator).to(device)
            kl = common.kl_one_step(reverse, x0, t, schedule, generator)
            loss = (T - 1) * kl.mean() - entropy
            runs.exit_if_not_finite(parser, loss, i + 1, args.lr, LR, bar)
            runs.take_step(optimizer, loss, learning_rate(i, args.iters, args.lr))
            done = i + 1
            curve.append(-loss.item())
            if done % LOG_EVERY == 0:
                bar.set_postfix(K_bits=f"{common.nats_to_bits(sum(curve[-LOG_EVERY:]) / LOG_EVERY):.2f}")
    bar.close()
    seconds = time.perf_counter() - began
    checkpoints.save_checkpoint(args.checkpoint, model, schedule, args, done,
                             optimizer_state=optimizer.state_dict(), generator_state=generator.get_state())
    if interrupted:
        runs.exit_interrupted(parser, args, done, "scripts/03_train.py")

    model.eval()
    print(f"trained {done - start} iterations in {seconds:.1f} s ({(done - start) / seconds:.1f} it/s) on {device}")
    K_bits, ceiling_of_K_bits = heldout_K(reverse, schedule, args, device)
    print(f"checkpoint written to {args.checkpoint}")
    if len(curve) >= LOG_EVERY:
        draw_training_curve(curve, start, K_bits, ceiling_of_K_bits, args.images)


def heldout_K(reverse, schedule, args, device):
    """README 3, "The training loop" and "How high can K go?": K on the held-out points (fresh
    points from their own seed, every t summed exactly, not sampled) against the paper's Table 1
    and the ceilings; printed."""
    K_bits, stderr_bits = roll.mean_and_se_bits(roll.heldout_K(reverse, schedule, n=args.n_heldout, seed=args.seed,
                                                                 device=device))
    null_bits = common.nats_to_bits(common.null_log_likelihood())
    beta_1 = float(schedule.beta[1])
    ceiling_bits = common.nats_to_bits(roll.log_likelihood_ceiling(beta_1))
    ceiling_of_K_bits = common.nats_to_bits(roll.K_ceiling(beta_1))
    print(f"K = {K_bits:.3f} bits  (K - L_null = {K_bits - null_bits:.3f} bits; "
          f"paper Table 1: {roll.PAPER_K_BITS} / {roll.PAPER_K_MINUS_NULL_BITS})")
    print(f"  held-out: {args.n_heldout} points, every t from 2 to {schedule.T}; standard error {stderr_bits:.3f} bits")
    print(f"  ceiling for beta_1 = {beta_1:.0e}: no model's log-likelihood passes "
          f"{ceiling_bits:.3f} bits, and K, whose last step is fixed, no more than {ceiling_of_K_bits:.3f} bits")
    return K_bits, ceiling_of_K_bits


def draw_training_curve(curve, start, K_bits, ceiling_of_K_bits, images):
    """README 3, "The training loop": 03_training_curve.png, K of the training batches smoothed over
    LOG_EVERY iterations, with the held-out K, the paper's line and the ceiling."""
    smooth = torch.tensor(curve).unfold(0, LOG_EVERY, LOG_EVERY).mean(1)
    iteration = start + LOG_EVERY * torch.arange(1, len(smooth) + 1)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(iteration, common.nats_to_bits(smooth), label="training batches (mean of each block)")
    ax.axhline(K_bits, color="tab:green", ls="--", label=f"held-out K = {K_bits:.2f} bits")
    ax.axhline(roll.PAPER_K_BITS, color="tab:red", ls=":", label=f"paper, Table 1: {roll.PAPER_K_BITS} bits")
    ax.axhline(ceiling_of_K_bits, color="gray", ls="-.", label=f"ceiling of K for beta_1: {ceiling_of_K_bits:.2f} bits")
    ax.set(xlabel="iteration", ylabel="K (bits per point)", ylim=(-4.0, ceiling_of_K_bits + 0.5),
           title="the bound K while training")
    ax.legend(loc="lower right")
    fig.tight_layout()
    figures.save_figure(fig, images / "03_training_curve.png")
    print(f"figure written to {images}/03_training_curve.png")


if __name__ == "__main__":
    main()
