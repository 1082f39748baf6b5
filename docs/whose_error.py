"""Lab note (README chapter 6, "Whose error is it?"; docs/claims.md): where the fewer-step
samplers' errors come from. Chapter 6's run, with two levers the chapter does not need:

- --bayes-eps replaces the network by the best possible one, E[eps | x_t] by brute-force Bayes
  over the curve (roll.bayes_optimal_eps): what is left of the samplers' errors is the steps' own.
  Slow: 2,000 samples at 40 and 10 steps with --k-points 0 --moment-points 2000 took about 4 min
  of CPU.
- --start data starts every chain from q(x_T), fresh roll points pushed forward to step T, instead
  of N(0, I): the deterministic samplers carry any mismatch of their start to the end, and this
  removes it.

It prints chapter 6's table and draws no figures; the samples go to outputs/fewer_steps_bayes/,
outputs/fewer_steps_from_data/ or outputs/fewer_steps_bayes_from_data/ unless --out-dir is given.

    python docs/whose_error.py --bayes-eps --start data --steps 40,10 --n-samples 2000 --k-points 0 --moment-points 2000
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "scripts"))

import common  # noqa: E402 (after the path to scripts/)
import cli  # noqa: E402
import roll  # noqa: E402

chapter6 = cli.load_chapter("06_fewer_steps.py")


def main():
    parser = chapter6.make_parser()
    parser.description = __doc__.split("\n\n")[0]
    parser.set_defaults(out_dir=None)
    parser.add_argument("--start", choices=("noise", "data"), default="noise",
                        help="where every chain starts: noise, x_T ~ N(0, I) as a sampler must; data, "
                             "x_T ~ q(x_T), fresh roll points pushed forward to step T, to measure what "
                             "the start's mismatch costs (default: %(default)s)")
    parser.add_argument("--bayes-eps", action="store_true",
                        help="sample with the best possible eps, E[eps | x_t] by brute-force Bayes over the "
                             "curve, instead of the network: what the samplers do with no network error")
    args, device, generator = cli.parse_and_prepare(parser)
    if args.out_dir is None:
        args.out_dir = cli.OUTPUTS / ("fewer_steps" + ("_bayes" if args.bayes_eps else "")
                                      + ("_from_data" if args.start == "data" else ""))
    cli.writable_dir_or_exit(parser, args.out_dir, "the samples")
    if args.bayes_eps:
        schedule = common.make_schedule()
        network = roll.bayes_optimal_eps(schedule)
    else:
        network, schedule = chapter6.load_network(parser, args, device)

    mean_sq_eps, _ = roll.eps_moments(network, schedule, args.moment_points, generator, device)
    tau = chapter6.kept_steps(schedule, args, "N(0, I)" if args.start == "noise" else "q(x_T)",
                              "brute-force Bayes (no network)" if args.bayes_eps else args.checkpoint)
    # x_T ~ q(x_T): the seed's roll points pushed forward to step T with fresh noise
    draw_x_T = None if args.start == "noise" else (
        lambda generator: roll.noised_roll(args.n_samples, schedule.T, schedule, generator)[2])
    chapter6.sample_and_score(network, schedule, tau, mean_sq_eps, args, device, draw_x_T)
    chapter6.real_roll_band(args)


if __name__ == "__main__":
    main()
