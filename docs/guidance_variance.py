"""Lab note (docs/chapter9.md, "The sampler's variance decides diversity at 25 steps"): chapter 9's
guided samples with the reverse steps' variance beta'_t (Algorithm 2, the chapter's choice) and
with the posterior's sigma_tilde_t^2 (DDIM eta = 1), from the network chapter 9 trained.

    python docs/guidance_variance.py        # reads outputs/pictures/conditional.pt

Prints chapter 9's guidance lines once per variance: the table's two columns.
"""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "scripts"))
import checkpoints  # noqa: E402
import cli  # noqa: E402
import digits  # noqa: E402
import guidance  # noqa: E402

chapter9 = cli.load_chapter("09_guidance.py")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conditional", type=pathlib.Path, default=chapter9.CONDITIONAL_CHECKPOINT,
                        help="chapter 9's network (default: outputs/pictures/conditional.pt)")
    parser.add_argument("--variances", type=cli.names_from(guidance.VARIANCES), default=list(guidance.VARIANCES),
                        help="comma-separated reverse variances (default: beta,posterior)")
    parser.add_argument("--w", type=cli.guidance_weights, default=list(chapter9.W_VALUES))
    parser.add_argument("--digits", type=cli.distinct_whole_numbers(0, 9), default=list(range(10)))
    parser.add_argument("--samples-per-class", type=cli.positive_int, default=chapter9.SAMPLES_PER_CLASS)
    parser.add_argument("--steps", type=cli.whole_number(2), default=chapter9.STEPS)
    cli.add_standard_args(parser)
    args, device, _ = cli.parse_and_prepare(parser)
    model, schedule, saved = checkpoints.load_unet_or_exit(parser, args.conditional, device, conditional=True,
                                                           made_by=f"python {chapter9.SCRIPT}")
    split = digits.load_split()
    for variance in args.variances:
        print(f"variance = {variance}")
        chapter9.classifier_free_guidance(model.eval(), schedule, split, args, device, variance,
                                          saved["args"].get("x0_form", "dequantised"))


if __name__ == "__main__":
    main()
