"""Lab note (docs/chapter9.md, "Inpainting: reconstruction guidance's step and the number of
steps"): chapter 10's inpainting with chapter 8's unconditional network in place of chapter 9's
conditional one with the label null; the same methods, masks, chain and seeds.

    python docs/inpaint_with_chapter8.py [--masks lower]     # reads outputs/pictures/unet.pt

Prints chapter 10's lines for chapter 8's network: the table's first column.
"""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "scripts"))
import checkpoints  # noqa: E402
import cli  # noqa: E402
import ddim  # noqa: E402
import digits  # noqa: E402
import guidance  # noqa: E402

chapter10 = cli.load_chapter("10_inpainting.py")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pictures", type=pathlib.Path, default=checkpoints.PICTURES_CHECKPOINT,
                        help="chapter 8's network (default: outputs/pictures/unet.pt)")
    parser.add_argument("--masks", type=cli.names_from(guidance.MASKS), default=["lower"])
    parser.add_argument("--steps", type=cli.whole_number(2), default=chapter10.STEPS)
    parser.add_argument("--resample", type=cli.positive_int, default=chapter10.RESAMPLE)
    parser.add_argument("--jump", type=cli.positive_int, default=chapter10.JUMP)
    parser.add_argument("--zeta", type=cli.positive_float, default=chapter10.ZETA)
    parser.add_argument("--completions", type=cli.whole_number(2), default=chapter10.COMPLETIONS)
    parser.add_argument("--held-out", type=cli.whole_number(2, digits.N_HELDOUT), default=digits.N_HELDOUT)
    cli.add_standard_args(parser)
    args, device, _ = cli.parse_and_prepare(parser)
    network, schedule, _ = checkpoints.load_unet_or_exit(parser, args.pictures, device, conditional=False)
    if args.steps > schedule.T:
        parser.error(f"--steps must be at most chapter 8's T = {schedule.T}, got {args.steps}")
    network.eval()
    chain, chain_t_of = ddim.respace(schedule, ddim.sub_sequence(schedule, args.steps, "log_snr"))
    eps_uncond = ddim.on_respaced_steps(lambda x, t: network(x, t, None), chain_t_of)
    _, _, along = chapter10.inpaint_every_mask(eps_uncond, chain, digits.load_split(), args, device, "chapter8")
    chapter10.along_the_chain(along, chain, chain_t_of, args.masks[0])


if __name__ == "__main__":
    main()
