"""Lab note (docs/chapter8.md, "The haze and its levers"): one lever of chapter 8 per run, scored as
the chapter scores it, printed as one row of the lever table.

Trains chapter 8's UNet with scripts/08_pictures.py's own steps (its make_parser, train and
functions of pictures.py), at the chapter's settings unless an option below moves a lever, then
prints the two-sample accuracy of the samples against all real digits, the level histogram's
largest gap (percentage points), the held-out bound in bits per pixel and the seconds taken.

    PYTHONPATH=scripts python docs/haze_levers.py --x0-form dequantised --last-step-noise \
        --iters 800 --n-samples 500 --n-bound 100 --n-moments 200 --checkpoint /tmp/levers/a.pt
"""
import importlib.util
import time

import torch

import cli
import digits
import pictures
from cli import ROOT

spec = importlib.util.spec_from_file_location("chapter8", ROOT / "scripts" / "08_pictures.py")
chapter8 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(chapter8)


def main():
    parser = chapter8.make_parser()
    parser.add_argument("--x0-form", choices=("centres", "dequantised"), default=chapter8.X0_FORM,
                        help="Algorithm 1's x0: the levels' centres (scored by the discrete decoder) or "
                             "uniformly dequantised pixels (scored by Jensen's inequality)")
    parser.add_argument("--last-step-noise", action="store_true",
                        help="end sampling with eq. 44's fixed kernel (noise of std sqrt(beta_1)), not the mean")
    parser.add_argument("--beta-1", type=cli.positive_float, default=chapter8.BETA_1, help="the clean end beta_1")
    parser.add_argument("--sampler", choices=("beta", "best"), default="beta",
                        help="Algorithm 2's sigma_t^2 = beta_t, or the best isotropic variance of the bound")
    parser.add_argument("--loss", choices=("simple", "bound"), default="simple")
    parser.add_argument("--schedule-shape", choices=("cosine", "linear"), default=chapter8.SCHEDULE_SHAPE)
    parser.add_argument("--attention", action="store_true")
    parser.add_argument("--dropout", type=float, default=0.0)
    args, device, generator = chapter8.prepare(parser)
    began = time.perf_counter()
    split = digits.load_split()
    model, schedule, _ = chapter8.network_and_schedule(args, device)
    if args.reuse:   # a sampling lever on a trained UNet: the seconds are the scoring's alone
        average, schedule = chapter8.reuse(parser, args, device)
    else:
        average = chapter8.train(parser, args, model, schedule, split[0], generator, device)
    network = pictures.eps_network(average)
    var = pictures.best_variance_table(schedule, pictures.x0_error_per_step(
        network, split[0][:args.n_moments], schedule, torch.Generator().manual_seed(args.seed + 1), device,
        args.x0_form), args.x0_form)
    bits = pictures.bits_on_levels(network, split[2][:args.n_bound], schedule, var, args.x0_form,
                                   torch.Generator().manual_seed(args.seed + 2), device).numpy()
    samples, _ = pictures.sample_levels(network, schedule, var if args.sampler == "best" else schedule.beta,
                                        args.n_samples, torch.Generator().manual_seed(args.seed), device,
                                        args.last_step_noise)
    real = digits.real_digits(split)
    accuracy = digits.two_sample_accuracy(samples, real, args.seed)
    gap, level = digits.level_gap(samples, real)
    mean, se = pictures.mean_and_se(bits)
    print(f"lever row | {accuracy:.3f} | {gap:+.1f} (level {level}) | {mean:.3f} (se {se:.3f}) | "
          f"{time.perf_counter() - began:.0f} s |")


if __name__ == "__main__":
    main()
