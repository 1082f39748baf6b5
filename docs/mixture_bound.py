"""Lab note (docs/chapter9.md, "The label's worth: the mixture over the ten labels"): chapter 9's
bounds on -log2 P(x | c) and -log2 P(x), then -log2 P(x) by the mixture p(x) = (1/10) sum_c p(x | c)
of the conditional network, from the ten conditional bounds K_c of each digit:
log p(x) >= log sum_c exp(E K_c) - log 10.

Two caveats, both in the lab notes: the mixture's difference from the true label's bound is
log2 10 - log2(1 + sum_{c != y} 2^(K_c - K_y)), below log2 10 by construction; and the logsumexp
of single-draw estimates of K_c is biased upwards (logsumexp is convex), so it is not a
guaranteed bound. --draws averages each K_c over several draws of the noise, which shrinks the bias.

    python docs/mixture_bound.py [--n 100] [--draws 1]     # reads outputs/pictures/conditional.pt
"""
import argparse
import math
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "scripts"))
import torch  # noqa: E402

import checkpoints  # noqa: E402
import cli  # noqa: E402
import digits  # noqa: E402
import pictures  # noqa: E402

chapter9 = cli.load_chapter("09_guidance.py")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conditional", type=pathlib.Path, default=chapter9.CONDITIONAL_CHECKPOINT,
                        help="chapter 9's network (default: outputs/pictures/conditional.pt)")
    parser.add_argument("--n-bound", type=cli.whole_number(1, digits.N_HELDOUT), default=digits.N_HELDOUT,
                        help="held-out digits for chapter 9's two bounds (default: all %(default)s)")
    parser.add_argument("--n-moments", type=cli.positive_int, default=chapter9.N_MOMENTS)
    parser.add_argument("--n", type=cli.whole_number(1, digits.N_HELDOUT), default=100,
                        help="held-out digits for the mixture, ten bounds each (default: %(default)s)")
    parser.add_argument("--draws", type=cli.positive_int, default=1,
                        help="draws of the noise per label, averaged into K_c (default: %(default)s)")
    cli.add_standard_args(parser)
    args, device, _ = cli.parse_and_prepare(parser)
    model, schedule, saved = checkpoints.load_unet_or_exit(parser, args.conditional, device, conditional=True,
                                                           made_by=f"python {chapter9.SCRIPT}")
    model.eval()
    split = digits.load_split()
    x0_form = saved["args"].get("x0_form", "dequantised")   # the bound chapter 9 trained the network for
    _, variance = chapter9.labels_worth_in_bits(model, schedule, split, args, device, x0_form)
    _, _, held_x, held_y = split
    began, m = time.perf_counter(), args.n
    # -log2 P(x | c) per label and digit, bits per image (10, m); the same noise for every label
    bits = torch.stack([torch.stack([digits.PIXELS * pictures.bits_on_levels(
        pictures.eps_network(model, torch.full((m,), c, device=device)), held_x[:m], schedule,
        variance["-log2 P(x | c)"], x0_form, torch.Generator().manual_seed(args.seed + 3 + draw), device)
        for c in range(10)]) for draw in range(args.draws)]).mean(0)
    K = -math.log(2) * bits                                   # the bounds K_c on log p(x | c), nats
    mixture = (-(torch.logsumexp(K, 0) - math.log(10)) / math.log(2)).numpy()
    given = bits[held_y[:m], torch.arange(m)].numpy()
    mean, se = pictures.mean_and_se(mixture - given)
    print(f"  on the first {m}: -log2 P(x | c) {given.mean():.2f}, -log2 P(x) by the mixture over the ten "
          f"labels {mixture.mean():.2f}; difference {mean:.2f} ({se:.2f}) [{time.perf_counter() - began:.0f} s]"
          + (f" ({args.draws} draws per label)" if args.draws > 1 else ""))


if __name__ == "__main__":
    main()
