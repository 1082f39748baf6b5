"""Chapter 3: training the reverse model on the bound K. README section "3. Training on the bound K".

The loss is -K, the paper's lower bound on the log-likelihood (eq. 14): for each roll point we
draw one step t in 2..T and x_t ~ q(x_t | x0), and pay KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t));
(T - 1) times that KL is an unbiased estimate of the sum over t. The entropy terms of K do not
depend on the network, so they only shift the curve. The script shows K in bits as it trains,
then measures K on a held-out set with every t summed exactly, and prints it next to the paper's
Table 1 and next to the ceiling set by beta_1.

Writes outputs/model.pt (atomically) and images/03_training_curve.png.
Ctrl-C saves the last completed state; --resume continues from it.
"""
import argparse
import math
import os
import pathlib
import signal
import time

import matplotlib.pyplot as plt
import torch
from tqdm import tqdm

import common

ITERS = 1000              # default training length: about a minute on a 2-core CPU (README, chapter 3)
BATCH_SIZE = 4096         # (x0, t) pairs per iteration
LR = 3e-3                 # Adam's peak step size: a short warm-up to it, then a cosine decay to 0
WARMUP = 0.02             # fraction of --iters spent warming up
N_HELDOUT = 20_000        # held-out points for the final K; its standard error is printed
LOG_EVERY = 50            # iterations between points of the training curve
PAPER_K_BITS = 2.35       # Table 1 of the paper, Swiss roll: K and K - L_null, bits
PAPER_K_MINUS_NULL_BITS = 6.45


def learning_rate(i, iters, peak):
    """Linear warm-up over the first WARMUP of the run, then a cosine decay from peak to 0."""
    progress = i / iters
    if progress < WARMUP:
        return peak * progress / WARMUP
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def resume_command(parser, args):
    """The command that continues this run: --resume plus every option not at its default."""
    words = ["python", "scripts/03_train.py", "--resume"]
    for name, value in vars(args).items():
        if name != "resume" and value != parser.get_default(name):
            words += ["--" + name.replace("_", "-"), str(value)]
    return " ".join(words)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=common.positive_int, default=ITERS,
                        help="training iterations (default: %(default)s)")
    parser.add_argument("--batch-size", type=common.positive_int, default=BATCH_SIZE,
                        help="roll points per iteration (default: %(default)s)")
    parser.add_argument("--lr", type=common.positive_float, default=LR,
                        help="peak Adam learning rate (default: %(default)s)")
    parser.add_argument("--checkpoint", type=pathlib.Path, default=common.DEFAULT_CHECKPOINT,
                        help="where to save the model (default: outputs/model.pt)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from --checkpoint instead of starting afresh")
    common.add_standard_args(parser)
    args, device, generator = common.parse_and_prepare(parser)
    common.output_file_or_exit(parser, args.checkpoint, "the checkpoint")
    # Products of tiny numbers (beta_1 = 1e-5, squared, times small gradients) can reach denormal
    # floats, which CPUs handle slowly; flushing them to zero measured about 6% faster here,
    # with the same K to every printed digit.
    torch.set_flush_denormal(True)
    # Two CPU threads may add up the per-step biases' gradients in either order, which changes
    # the last bits of the weights from run to run; deterministic kernels cost nothing here.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what cuda needs for them
    torch.use_deterministic_algorithms(True, warn_only=True)

    beta = common.make_beta()
    alpha_bar = common.alpha_bar_from_beta(beta)
    T = common.T
    model = common.ReverseModel().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    start = 0
    if args.resume:
        try:
            model, _, checkpoint = common.load_checkpoint(args.checkpoint, device)
        except common.CheckpointError as error:
            parser.exit(1, f"error: cannot resume: {error}\n")
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
        if checkpoint["optimizer_state"] is not None:
            optimizer.load_state_dict(checkpoint["optimizer_state"])
        start = checkpoint["iteration"]
        print(f"resuming from {args.checkpoint} at iteration {start}")
    reverse = common.reverse_of(model, beta, alpha_bar)
    entropy = common.entropy_terms(beta, alpha_bar)

    # Ctrl-C only raises a flag: the iteration under way finishes, so what is saved is a
    # completed state, never weights caught half-way through an optimizer step.
    interrupted = []
    signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))

    # The loop (README, chapter 3): -K = (T - 1) E_t[KL_t] - entropy terms.
    curve, done = [], start
    began = time.perf_counter()
    bar = tqdm(range(start, args.iters), initial=start, total=args.iters, desc="training")
    for i in bar:
        if interrupted:
            break
        x0 = common.swiss_roll(args.batch_size, generator).to(device)
        t = torch.randint(2, T + 1, (args.batch_size,), generator=generator).to(device)
        kl = common.kl_terms(reverse, x0, t, beta, alpha_bar, generator)
        loss = (T - 1) * kl.mean() - entropy
        if not torch.isfinite(loss):
            bar.close()
            parser.exit(1, f"error: the loss became {loss.item()} at iteration {i + 1}, so training "
                           f"stopped and no checkpoint was written; the learning rate {args.lr:g} is "
                           f"probably too high: try a smaller --lr, such as the default {LR:g}\n")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(i, args.iters, args.lr)
        optimizer.step()
        done = i + 1
        curve.append(-loss.item())
        if done % LOG_EVERY == 0:
            bar.set_postfix(K_bits=f"{common.nats_to_bits(sum(curve[-LOG_EVERY:]) / LOG_EVERY):.2f}")
    bar.close()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C stops the rest at once
    if interrupted:
        common.save_checkpoint(args.checkpoint, model, beta, args, done, optimizer)
        print(f"interrupted: saved the state after iteration {done} of {args.iters} to "
              f"{args.checkpoint}; continue with: {resume_command(parser, args)}")
        raise SystemExit(130)
    seconds = time.perf_counter() - began
    common.save_checkpoint(args.checkpoint, model, beta, args, done, optimizer)

    # Held-out K: fresh points from their own seed, every t summed exactly (not sampled).
    model.eval()
    x0 = common.heldout_roll(N_HELDOUT).to(device)
    kl = common.bound_per_step(reverse, x0, beta, alpha_bar, torch.Generator().manual_seed(args.seed))
    K = common.bound_K(kl, beta, alpha_bar)
    K_bits = common.nats_to_bits(K.mean().item())
    stderr_bits = common.nats_to_bits(K.std().item() / math.sqrt(N_HELDOUT))
    null_bits = common.nats_to_bits(common.null_log_likelihood())
    ceiling_bits = common.nats_to_bits(common.ceiling(float(beta[1])))
    ceiling_of_K_bits = common.nats_to_bits(common.ceiling_of_K(float(beta[1])))
    print(f"trained {done - start} iterations in {seconds:.1f} s ({(done - start) / seconds:.1f} it/s) on {device}")
    print(f"K = {K_bits:.3f} bits  (K - L_null = {K_bits - null_bits:.3f} bits; "
          f"paper Table 1: {PAPER_K_BITS} / {PAPER_K_MINUS_NULL_BITS})")
    print(f"  held-out: {N_HELDOUT} points, every t from 2 to {T}; standard error {stderr_bits:.3f} bits")
    print(f"  ceiling for beta_1 = {float(beta[1]):.0e}: no model's log-likelihood passes "
          f"{ceiling_bits:.3f} bits, and K, whose last step is fixed, no more than {ceiling_of_K_bits:.3f} bits")
    print(f"checkpoint written to {args.checkpoint}")

    # Figure: the training curve, smoothed over LOG_EVERY iterations, with the paper's line.
    if len(curve) >= LOG_EVERY:
        smooth = torch.tensor(curve).unfold(0, LOG_EVERY, LOG_EVERY).mean(1)
        iteration = start + LOG_EVERY * torch.arange(1, len(smooth) + 1)
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(iteration, common.nats_to_bits(smooth), label="training batches (mean of each block)")
        ax.axhline(K_bits, color="tab:green", ls="--", label=f"held-out K = {K_bits:.2f} bits")
        ax.axhline(PAPER_K_BITS, color="tab:red", ls=":", label=f"paper, Table 1: {PAPER_K_BITS} bits")
        ax.axhline(ceiling_of_K_bits, color="gray", ls="-.", label=f"ceiling of K for beta_1: {ceiling_of_K_bits:.2f} bits")
        ax.set(xlabel="iteration", ylabel="K (bits per point)", ylim=(-4.0, ceiling_of_K_bits + 0.5),
               title="the bound K while training")
        ax.legend(loc="lower right")
        fig.tight_layout()
        common.save_figure(fig, args.images / "03_training_curve.png")
        print(f"figure written to {args.images}/03_training_curve.png")


if __name__ == "__main__":
    main()
