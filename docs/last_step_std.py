"""Lab note (docs/chapter8.md, "The haze and its levers"): the std of the decoder whose most likely
level the last step names. Chapter 8's chain runs once down to x_1 on its checkpoint's network
(Algorithm 2 with sigma_t^2 = beta_t, the chapter's noise); then each std ends it on the most likely
level of N(mu_theta(x_1, 1), std^2) (pictures.most_likely_level), and the same samples are scored
as the chapter scores them. std 0 is the bin of the mean; "beta" is sqrt(beta_1), the chapter's
ending; "best" is the bound's decoder, the network's own error of x0_hat at t = 1.

    PYTHONPATH=scripts python docs/last_step_std.py
    PYTHONPATH=scripts python docs/last_step_std.py --stds 0.12,0.13,0.14
"""
import argparse
import math
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "scripts"))

import checkpoints  # noqa: E402 (after the path to scripts/)
import cli  # noqa: E402
import digits  # noqa: E402
import pictures  # noqa: E402

chapter8 = cli.load_chapter("08_pictures.py")


def std_list(text):
    """Comma-separated stds: numbers >= 0, or the names "beta" and "best"."""
    stds = []
    for item in text.split(","):
        if item in ("beta", "best"):
            stds.append(item)
            continue
        try:
            value = float(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected numbers >= 0, 'beta' or 'best', got {item!r}") from None
        if not value >= 0:
            raise argparse.ArgumentTypeError(f"a std must be at least 0, got {item!r}")
        stds.append(value)
    return stds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=pathlib.Path, default=checkpoints.PICTURES_CHECKPOINT,
                        help="chapter 8's network (default: outputs/pictures/unet.pt)")
    parser.add_argument("--stds", type=std_list, default=std_list("0,best,beta,0.13,0.16,0.2"),
                        help="the decoder's stds at the last step (default: 0,best,beta,0.13,0.16,0.2)")
    parser.add_argument("--n-samples", type=cli.whole_number(20), default=chapter8.N_SAMPLES,
                        help="samples (default: %(default)s)")
    parser.add_argument("--n-moments", type=cli.whole_number(2), default=chapter8.N_MOMENTS,
                        help="training digits for the best variance (default: %(default)s)")
    cli.add_standard_args(parser)
    args, device, _ = cli.parse_and_prepare(parser)
    try:
        average, schedule, _ = checkpoints.load_unet_checkpoint(args.checkpoint, device, conditional=False)
    except checkpoints.CheckpointError as error:
        parser.exit(1, f"error: {error}\n")
    network = pictures.eps_network(average.eval())
    split = digits.load_split()
    best = pictures.best_variance_table(schedule, pictures.x0_error_per_step(
        network, split[0][:args.n_moments], schedule, torch.Generator().manual_seed(args.seed + 1), device,
        "centres"), "centres")[1]
    named = {"beta": math.sqrt(float(schedule.beta[1])), "best": math.sqrt(float(best))}

    # The chapter's own chain and noise (pictures.sample_levels, the same seed); its x_1 is kept in the trajectory.
    with torch.no_grad():
        _, trajectory = pictures.sample_levels(network, schedule, schedule.beta, args.n_samples,
                                               torch.Generator().manual_seed(args.seed), device)
        mean = pictures.decoder_mean(network, trajectory[1], schedule).cpu()
    classifier = digits.fit_digit_classifier(split[0], split[1])
    real = 100 * digits.level_shares(digits.real_digits(split))
    print(f"{args.n_samples} samples of chapter 8's chain, ended on the decoder's most likely level; "
          f"level shares 0/1/15/16 of real digits: {real[0]:.1f}/{real[1]:.1f}/{real[15]:.1f}/{real[16]:.1f}%")
    print("decoder std            two-sample  level gap (level)  confident  level shares 0/1/15/16 (%)")
    for std in args.stds:
        value = named.get(std, std)
        levels = digits.to_levels(mean if value == 0 else pictures.most_likely_level(mean, value))
        score, shares = digits.score_samples(levels, split, classifier, args.seed), 100 * digits.level_shares(levels)
        name = f"{value:.3f}" + (f" ({std})" if std in named else "")
        print(f"{name:22s} {score['two_sample']:10.3f}  {score['level_gap'][0]:+9.1f} ({score['level_gap'][1]:2d})  "
              f"{score['confident']:10.3f}  {shares[0]:.1f}/{shares[1]:.1f}/{shares[15]:.1f}/{shares[16]:.1f}")


if __name__ == "__main__":
    main()
