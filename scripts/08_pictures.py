"""Chapter 8: from points to pictures. README section "8. Pictures: a UNet draws handwritten digits".

The same diffusion as chapters 1-7 on scikit-learn's 8 x 8 handwritten digits (17 grey levels),
each image a point in 64 dimensions. A small UNet (scripts/unet.py) learns eps with Algorithm 1 and
L_simple on the levels' centres; then the script prints the bound in bits per pixel of the discrete
digits (DDPM's discrete decoder at the last step) beside four baselines, and scores 1,000 samples of
Algorithm 2 and of chapter 6's DDIM: a digit classifier's confident share, a two-sample test with
power against the real digits (calibrated), the level histogram's largest gap, and copies.

Writes outputs/pictures/unet.pt (Ctrl-C saves the last completed state; --resume continues it),
outputs/pictures/samples.npy (levels 0..16) and, into images/, 08_unet.png, 08_forward.png,
08_samples.png, 08_reverse.gif, 08_bits.png, 08_nearest.png. The lever studies: docs/haze_levers.py.
"""
import argparse
import copy
import pathlib
import time

import numpy as np
import torch
from tqdm import tqdm

import checkpoints
import cli
import common
import digits
import pictures
import pictures_figures
import runs
import two_sample
from unet import UNet, n_parameters

# The schedule (README chapter 8, "The schedule"; measured in docs/chapter8.md).
T = 200                   # steps: more than the roll's 40, as 64 pixels have more to undo
BETA_1 = 1e-2             # first step's noise, std 0.1: most of a bin (2/17 wide), the decoder's to resolve (docs/chapter8.md)
LOG_SNR_T = -8.3          # x_T keeps alpha_bar_T = 2.5e-4 of the signal: 64 pixels make x_T noise later than 2 coordinates
SCHEDULE_SHAPE = "cosine"  # improved DDPM's path between the two ends (docs/chapter8.md)
# Training (Algorithm 1).
ITERS = 1500              # about 3 minutes on a quiet 2-core CPU (docs/chapter8.md)
BATCH_SIZE = 128          # images per iteration
LR = 2e-3                 # Adam's step size, decayed along a cosine to 0
X0_FORM = "centres"       # train on the levels' centres, scored by DDPM's discrete decoder (docs/chapter8.md)
EMA_DECAY = 0.999         # the scored weights are a moving average, as in chapter 5
BASE_CHANNELS = 32        # channels at 8 x 8; twice as many at 4 x 4 and 2 x 2
RESUMED_SETTINGS = ("iters", "batch_size", "lr", "loss", "base_channels", "attention", "dropout", "T", "beta_1",
                    "schedule_shape", "x0_form")
# Measuring.
N_MOMENTS = 500           # training digits per step for E||x0 - x0_hat||^2 (the best variance)
N_SAMPLES = 1000          # samples of Algorithm 2
FEWER_STEPS = (10, 20, 50)
SCRIPT = "scripts/08_pictures.py"


def make_parser():
    """The reader's options; the lever studies' settings (docs/haze_levers.py adds options for them)
    are defaults here, so every step function reads them from args."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_training_args(parser, ITERS, BATCH_SIZE, LR, "L_simple", "digits")
    parser.add_argument("--T", type=cli.whole_number(2), default=T, help="diffusion steps (default: %(default)s)")
    parser.add_argument("--base-channels", type=cli.whole_number(8), default=BASE_CHANNELS,
                        help="UNet channels at 8 x 8, a multiple of 8 (default: %(default)s)")
    parser.add_argument("--n-samples", type=cli.whole_number(20), default=N_SAMPLES,
                        help="samples drawn and scored per sampler (default: %(default)s)")
    parser.add_argument("--n-moments", type=cli.whole_number(2), default=N_MOMENTS,
                        help="training digits per step for the best reverse variance (default: %(default)s)")
    parser.add_argument("--n-bound", type=cli.whole_number(2, digits.N_HELDOUT), default=digits.N_HELDOUT,
                        help="held-out (and as many training) digits for the bound (default: all %(default)s)")
    parser.add_argument("--checkpoint", type=pathlib.Path, default=checkpoints.PICTURES_CHECKPOINT,
                        help="where to save the UNet (default: outputs/pictures/unet.pt)")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --checkpoint")
    parser.add_argument("--reuse", action="store_true", help="score the UNet in --checkpoint instead of training")
    parser.add_argument("--samples", type=pathlib.Path, default=cli.OUTPUTS / "pictures" / "samples.npy",
                        help="where to write the samples, (N, 8, 8) levels (default: outputs/pictures/samples.npy)")
    cli.add_standard_args(parser)
    parser.set_defaults(x0_form=X0_FORM, loss="simple", beta_1=BETA_1, schedule_shape=SCHEDULE_SHAPE,
                        attention=False, dropout=0.0, last_step_noise=False, sampler="beta")
    return parser


def prepare(parser):
    """Parse and check every option before any work: one line and exit status 2 for a bad one."""
    args, device, generator = cli.parse_and_prepare(parser)
    if args.base_channels % 8:
        parser.error(f"--base-channels must be a multiple of 8 (GroupNorm's groups), got {args.base_channels}")
    if args.resume and args.reuse:
        parser.error("--resume continues training and --reuse skips it: give one of them")
    if not args.reuse:
        cli.output_file_or_exit(parser, args.checkpoint, "the checkpoint", example="unet.pt")
    cli.output_file_or_exit(parser, args.samples, "the samples", example="samples.npy")
    runs.prepare_training()
    return args, device, generator


def data():
    """README "The data": 1,500 training and 297 held-out digits of levels 0..16."""
    split = digits.load_split()
    print(f"digits: {len(split[0])} training, {len(split[2])} held-out, {digits.SIDE}x{digits.SIDE} pixels, "
          f"{digits.LEVELS} levels; Algorithm 1 sees each level at its bin's centre, 2 (k + 1/2) / 17 - 1")
    return split


def network_and_schedule(args, device):
    """README "What changes from points to pictures": the UNet, its shapes once, the schedule."""
    schedule = pictures.image_schedule(args.T, args.beta_1, LOG_SNR_T, args.schedule_shape)
    model = UNet(base_channels=args.base_channels, attention=args.attention, dropout=args.dropout).to(device)
    stages = []
    model(torch.zeros(1, 1, digits.SIDE, digits.SIDE, device=device), schedule.T, record=stages)
    print(f"UNet: {n_parameters(model):,} parameters, attention {'on' if args.attention else 'off'}; "
          f"T = {schedule.T}, alpha_bar_T = {float(schedule.alpha_bar[-1]):.1e}; the shapes, once:")
    for stage, shape in stages:
        print(f"  {stage:24s} {shape}")
    return model, schedule, stages


def train(parser, args, model, schedule, train_x, generator, device):
    """README "Algorithm 1 on pictures": x0 a training digit, t uniform, eps ~ N(0, I), L_simple.
    Returns the moving average of the weights, the model that is scored."""
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    average, start = copy.deepcopy(model), 0
    if args.resume:
        saved = runs.resume(parser, args, RESUMED_SETTINGS, model, optimizer, generator, load=lambda path:
                            checkpoints.load_unet_checkpoint(path, device, conditional=False, weights="training_state"))
        average.load_state_dict(saved["model_state"])
        start = saved["iteration"]
    first = 1 if args.x0_form == "centres" else 2   # with the decoder, step 1 is learned too (eq. 13)
    weights = pictures.loss_weights(schedule, args.loss, first).float().to(device)
    levels, losses, began, done = torch.as_tensor(train_x), [], time.perf_counter(), start
    bar = tqdm(range(start, args.iters), initial=start, total=args.iters, desc="training")
    with runs.stop_on_ctrl_c() as interrupted:
        for i in bar:
            if interrupted:
                break
            pick = torch.randint(len(levels), (args.batch_size,), generator=generator)
            x0 = pictures.flat(pictures.training_pixels(levels[pick], args.x0_form, generator)).to(device)
            t = torch.randint(first, schedule.T + 1, (args.batch_size,), generator=generator).to(device)
            eps = torch.randn(x0.shape, generator=generator).to(device)
            x_t = common.x_t_from_eps(x0, eps, t, schedule)
            error = (eps - pictures.flat(model(pictures.as_images(x_t), t))).square().sum(1)
            loss = (weights[t] * error).mean()
            runs.exit_if_not_finite(parser, loss, i + 1, args.lr, LR, bar)
            runs.take_step(optimizer, loss, runs.cosine_decay(i, args.iters, args.lr))
            runs.update_average(average, model, i, EMA_DECAY)
            done = i + 1
            losses.append(error.mean().item())
            if done % 50 == 0:
                bar.set_postfix(eps_error=f"{np.mean(losses[-50:]):.2f}")
    bar.close()
    seconds = time.perf_counter() - began
    checkpoints.save_unet_checkpoint(args.checkpoint, average, schedule, args, done,
                                     training_state=model.state_dict(), optimizer_state=optimizer.state_dict(),
                                     generator_state=generator.get_state())
    if interrupted:
        runs.exit_interrupted(parser, args, done, SCRIPT)
    print(f"trained {done - start} iterations in {seconds:.1f} s ({(done - start) / seconds:.1f} it/s) on {device}; "
          f"||eps - eps_theta||^2 over the last 50 batches {np.mean(losses[-50:]):.2f} (of 64 at the start)")
    return average.eval()


def reuse(parser, args, device):
    """--reuse: the UNet, schedule and training form of the checkpoint, instead of training."""
    try:
        average, schedule, saved = checkpoints.load_unet_checkpoint(args.checkpoint, device, conditional=False)
    except checkpoints.CheckpointError as error:
        parser.exit(1, f"error: {error}\n")
    args.x0_form = saved["args"].get("x0_form", "dequantised")
    print(f"reusing the UNet in {args.checkpoint} ({saved['iteration']} iterations, x0 {args.x0_form})")
    return average.eval(), schedule


def bits_per_pixel(args, network, schedule, split, device):
    """README "Bits per pixel": the bound on held-out and training digits, then the baselines.
    Returns the variance table the bound used and the bits of each."""
    began, (train_x, _, heldout_x, _) = time.perf_counter(), split
    var = pictures.best_variance_table(schedule, pictures.x0_error_per_step(
        network, train_x[:args.n_moments], schedule, torch.Generator().manual_seed(args.seed + 1), device,
        args.x0_form), args.x0_form)
    bits = {}
    for name, levels in (("held-out", heldout_x[:args.n_bound]), ("train", train_x[:args.n_bound])):
        bits[name] = pictures.bits_on_levels(network, levels, schedule, var, args.x0_form,
                                             torch.Generator().manual_seed(args.seed + 2), device).numpy()
    (held, held_se), (trained, trained_se) = pictures.mean_and_se(bits["held-out"]), pictures.mean_and_se(bits["train"])
    print(f"bits/pixel held-out = {held:.3f} (se {held_se:.3f})  train = {trained:.3f} (se {trained_se:.3f})   "
          f"[{args.n_bound} digits each, {time.perf_counter() - began:.0f} s]")
    generator = torch.Generator().manual_seed(args.seed + 3)
    for name, values in {"uniform": pictures.uniform_bits(heldout_x),
                         "per-pixel histogram": pictures.histogram_bits(train_x, heldout_x),
                         "full Gaussian": pictures.gaussian_bits(train_x, heldout_x, generator),
                         f"{pictures.MIXTURE_COMPONENTS}-Gaussian mixture":
                             pictures.mixture_bits(train_x, heldout_x, generator, seed=args.seed)}.items():
        bits[name] = values
        print(f"baseline {name:22s} bits/pixel held-out = {values.mean():.3f} (se {pictures.mean_and_se(values)[1]:.3f})")
    return var, bits


def samples_and_scores(args, network, schedule, var, split, device):
    """README "Samples and what they are worth": Algorithm 2, then the classifier, the two-sample
    test with its calibration, the level histogram and the nearest training digits."""
    began = time.perf_counter()
    sampler_var = var if args.sampler == "best" else schedule.beta
    samples, trajectory = pictures.sample_levels(network, schedule, sampler_var, args.n_samples,
                                                 torch.Generator().manual_seed(args.seed), device, args.last_step_noise)
    checkpoints.save_array(args.samples, samples)
    print(f"{args.n_samples} samples of Algorithm 2 in {time.perf_counter() - began:.0f} s, written to {args.samples}")
    classifier = digits.fit_digit_classifier(split[0], split[1])
    real = digits.real_digit_scores(split, classifier, args.seed)
    score = digits.score_samples(samples, split, classifier, args.seed)
    print(f"two-sample test calibration: real against real {real['two_sample']:.3f}, defective digits against real "
          f"{real['two_sample_defective']:.3f}; chance scatters by {two_sample.chance_spread(args.n_samples):.3f}")
    print(f"confident (p > {digits.CONFIDENT}) samples = {score['confident']:.3f}  held-out digits = {real['confident']:.3f}")
    shares = 100 * digits.level_shares(samples), 100 * digits.level_shares(digits.real_digits(split))
    print("level shares (%), samples / real:  " + "  ".join(
        f"{k}: {shares[0][k]:.1f}/{shares[1][k]:.1f}" for k in (0, 1, 2, 15, 16)))
    print(f"two-sample accuracy = {score['two_sample']:.3f}  level gap = {score['level_gap'][0]:+.1f} points "
          f"at level {score['level_gap'][1]}  copies = {score['copies']:.3f}  class counts p = {score['counts_p']:.3g}")
    return samples, trajectory, classifier, real, score


def fewer_steps(args, network, schedule, split, classifier, scores, device):
    """README "Fewer steps on pictures": chapter 6's DDIM (eta = 0), log-SNR spacing, the same last
    step as Algorithm 2 (the decoder's most likely level), the same scores."""
    for steps in [steps for steps in FEWER_STEPS if steps < schedule.T]:
        samples = pictures.ddim_levels(network, schedule, steps, args.n_samples,
                                       torch.Generator().manual_seed(args.seed), device)
        scores[f"ddim {steps}"] = digits.score_samples(samples, split, classifier, args.seed)
    print("sampler     confident  class counts p  two-sample acc  level gap  copies  nearest-train distance (median)")
    for name, score in scores.items():
        print(f"{name:10s}  {score['confident']:9.3f}  {score['counts_p']:14.3g}  {score['two_sample']:14.3f}  "
              f"{score['level_gap'][0]:+9.1f}  {score['copies']:6.3f}  {score['nearest_distance']:8.2f}")
    print("  (held-out's two-sample accuracy is real against real; 0.5 = indistinguishable)")


def main():
    parser = make_parser()
    args, device, generator = prepare(parser)
    split = data()
    model, schedule, stages = network_and_schedule(args, device)
    pictures_figures.unet_diagram(stages, args.images / "08_unet.png")
    if args.reuse:
        average, schedule = reuse(parser, args, device)
    else:
        average = train(parser, args, model, schedule, split[0], generator, device)
        print(f"checkpoint written to {args.checkpoint}")
    network = pictures.eps_network(average)
    var, bits = bits_per_pixel(args, network, schedule, split, device)
    samples, trajectory, classifier, real, score = samples_and_scores(args, network, schedule, var, split, device)
    fewer_steps(args, network, schedule, split, classifier, {"held-out": real, f"ddpm {schedule.T}": score}, device)
    pictures_figures.forward(schedule, split[2], args.seed, args.images / "08_forward.png")
    pictures_figures.samples(samples, split[2], schedule.T, args.images / "08_samples.png")
    pictures_figures.reverse_gif(trajectory, args.images / "08_reverse.gif")
    pictures_figures.bits(bits, args.images / "08_bits.png")
    pictures_figures.nearest(samples, split[0], args.images / "08_nearest.png")
    print(f"figures written to {args.images}/: 08_unet.png, 08_forward.png, 08_samples.png, 08_reverse.gif, "
          f"08_bits.png, 08_nearest.png")


if __name__ == "__main__":
    main()
