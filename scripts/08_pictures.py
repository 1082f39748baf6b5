"""Chapter 8: from points to pictures. README section "8. Pictures: a UNet draws handwritten digits".

The same diffusion as chapters 1-7, on real images: scikit-learn's 8 x 8 handwritten digits
(17 grey levels, shipped inside scikit-learn), each image a point in 64 dimensions. A small UNet
(scripts/unet.py) learns eps with Algorithm 1 and L_simple (or, with --loss bound, the bound's
own weights); then the script measures
- the bound in bits per pixel of the discrete digits (uniform dequantisation, chapter 5's best
  isotropic reverse variance), on the held-out digits and on as many training digits, beside
  four baselines fitted to the same training digits;
- 1,000 samples of Algorithm 2 (written to outputs/pictures/samples.npy, levels 0..16): the
  share a digit classifier calls confidently, the class counts, a classifier two-sample test
  against the held-out digits, and how close each sample is to its nearest training digit;
- chapter 6's DDIM sampler, unchanged, at 10, 20 and 50 steps, with the same scores.
One line per figure of merit, e.g.  bits/pixel held-out = 2.018 (se 0.016)  train = 1.929 (se 0.014)

Writes outputs/pictures/unet.pt (atomically; Ctrl-C saves the last completed state and --resume
continues it) and, into images/: 08_samples.png, 08_forward.png, 08_reverse.gif, 08_bits.png,
08_nearest.png.
"""
import argparse
import copy
import pathlib
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.animation import FuncAnimation, PillowWriter
from tqdm import tqdm

import common
import ddim
import ddpm
import digits
import pictures
import checkpoints
import cli
import figures
import runs
from unet import UNet, n_parameters

# The schedule (README chapter 8, "The schedule"; measured in docs/chapter8.md).
T = 200                   # steps: more than the roll's 40, as 64 pixels have more to undo
BETA_1 = 1e-4             # first step's noise, std 0.01: a tenth of a bin (2/17 wide)
LOG_SNR_T = -8.3          # x_T keeps alpha_bar_T = 2.5e-4 of the signal: 64 pixels make x_T noise later than 2 coordinates
SCHEDULE_SHAPE = "cosine"  # improved DDPM's path between the two ends: better samples than log SNR
                          # linear in t, on which the bound weighs every step alike (docs/chapter8.md)
# Training (Algorithm 1).
ITERS = 1500              # about 90 s of CPU time (measured under load; README chapter 8)
BATCH_SIZE = 128          # images per iteration
LR = 2e-3                 # Adam's step size, decayed along a cosine to 0
PIXEL_SCALE = {"low": -1.0, "high": 1.0}  # figures show pixels on their [-1, 1] scale
EMA_DECAY = 0.999         # the scored weights are a moving average, as in chapter 5
BASE_CHANNELS = 32        # channels at 8 x 8; twice as many at 4 x 4 and 2 x 2
DROPOUT = 0.0             # inside the residual blocks (DDPM used 0.1 on CIFAR-10)
LOSSES = ("simple", "bound")
RESUMED_SETTINGS = ("iters", "batch_size", "lr", "loss", "base_channels", "attention", "dropout", "T", "beta_1",
                    "schedule_shape")
# Measuring.
N_MOMENTS = 500           # training digits per step for E||x0 - x0_hat||^2 (the best variance)
N_SAMPLES = 1000          # samples of Algorithm 2
FEWER_STEPS = (10, 20, 50)
GIF_FRAMES = 40           # frames of the reverse-process animation
SCRIPT = "scripts/08_pictures.py"


def loss_weights(schedule, loss):
    """The weight of ||eps - eps_theta||^2 at each step t (a table indexed by t): 1 for L_simple;
    for the bound, eps_weight with the posterior's variance sigma_tilde_t^2, times T - 1, so that
    the loss is the sum of the KL terms of -K up to constants (chapter 5's weights)."""
    if loss == "simple":
        return torch.ones(schedule.T + 1, dtype=torch.float64)
    steps = torch.arange(2, schedule.T + 1)
    _, _, sigma_tilde2 = common.posterior_coefficients(steps, schedule, torch.zeros((), dtype=torch.float64))
    weight = (schedule.T - 1) * ddpm.eps_weight(steps, schedule, sigma_tilde2)   # a column, t = 2..T
    return torch.cat([torch.zeros(2, dtype=torch.float64), weight.flatten()])


def update_average(average, model, updates):
    """One step of the weights' moving average; its decay grows to EMA_DECAY as (1 + n) / (10 + n)
    after n updates, so that a short run is not an average of untrained weights (chapter 5)."""
    rate = max(1.0 - EMA_DECAY, 9.0 / (10.0 + updates))
    with torch.no_grad():
        for mean, new in zip(average.parameters(), model.parameters()):
            mean.lerp_(new, rate)


def centres(levels):
    """Levels shown on the pixel scale: each level at its bin's centre."""
    return digits.to_unit(levels).reshape(-1, digits.SIDE, digits.SIDE).numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_training_args(parser, ITERS, BATCH_SIZE, LR, "the eps loss")
    parser.add_argument("--loss", choices=LOSSES, default="simple",
                        help="L_simple (every step weighted 1) or the bound's weights (default: %(default)s)")
    parser.add_argument("--T", type=cli.whole_number(2), default=T,
                        help="diffusion steps of a new run, its ends kept (default: %(default)s)")
    parser.add_argument("--schedule-shape", choices=("cosine", "linear"), default=SCHEDULE_SHAPE,
                        help="the path of log SNR between the two ends, for a new run (default: %(default)s)")
    parser.add_argument("--beta-1", type=cli.positive_float, default=BETA_1,
                        help="the first step's noise variance of a new run (default: %(default)s)")
    parser.add_argument("--base-channels", type=cli.whole_number(8), default=BASE_CHANNELS,
                        help="UNet channels at 8 x 8, a multiple of 8 (default: %(default)s)")
    parser.add_argument("--attention", action="store_true", help="self-attention at 2 x 2")
    parser.add_argument("--dropout", type=float, default=DROPOUT,
                        help="dropout inside each residual block while training (default: %(default)s)")
    parser.add_argument("--n-samples", type=cli.whole_number(20), default=N_SAMPLES,
                        help="samples drawn and scored per sampler (default: %(default)s)")
    parser.add_argument("--n-moments", type=cli.whole_number(2), default=N_MOMENTS,
                        help="training digits per step for the best reverse variance (default: %(default)s)")
    parser.add_argument("--n-bound", type=cli.whole_number(2, digits.N_HELDOUT), default=digits.N_HELDOUT,
                        help="held-out digits (and as many training digits) the bound is measured "
                             "on (default: all %(default)s)")
    parser.add_argument("--checkpoint", type=pathlib.Path, default=checkpoints.PICTURES_CHECKPOINT,
                        help="where to save the UNet (default: outputs/pictures/unet.pt)")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --checkpoint")
    parser.add_argument("--reuse", action="store_true",
                        help="score the UNet already in --checkpoint instead of training one")
    parser.add_argument("--samples", type=pathlib.Path, default=cli.OUTPUTS / "pictures" / "samples.npy",
                        help="where to write the samples, (N, 8, 8) levels (default: outputs/pictures/samples.npy)")
    cli.add_standard_args(parser)
    args, device, generator = cli.parse_and_prepare(parser)
    if args.base_channels % 8:
        parser.error(f"--base-channels must be a multiple of 8 (GroupNorm's groups), got {args.base_channels}")
    if not 0.0 <= args.dropout < 1.0:
        parser.error(f"--dropout must be a fraction from 0 up to 1 (not included), got {args.dropout}")
    if not args.beta_1 < 0.5:
        parser.error(f"--beta-1 must be below 0.5 (the first step's noise is small), got {args.beta_1}")
    if args.resume and args.reuse:
        parser.error("--resume continues training and --reuse skips it: give one of them")
    if not args.reuse:
        cli.output_file_or_exit(parser, args.checkpoint, "the checkpoint", example="unet.pt")
    cli.output_file_or_exit(parser, args.samples, "the samples", example="samples.npy")
    runs.prepare_training()

    # 1. The data: 1,500 training and 297 held-out digits, levels 0..16, pixels in [-1, 1).
    split = digits.load_split()
    train_x, train_y, heldout_x, heldout_y = split
    print(f"digits: {len(train_x)} training, {len(heldout_x)} held-out, {digits.SIDE}x{digits.SIDE} pixels, "
          f"{digits.LEVELS} levels; pixel values in [-1, 1), bins of width 2/{digits.LEVELS}")

    # 2. The network, and the schedule it is trained with.
    schedule = pictures.image_schedule(args.T, args.beta_1, LOG_SNR_T, args.schedule_shape)
    model = UNet(base_channels=args.base_channels, attention=args.attention, dropout=args.dropout).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    average = copy.deepcopy(model)
    start, saved = 0, None
    try:
        if args.reuse:
            average, schedule, saved = checkpoints.load_unet_checkpoint(args.checkpoint, device, conditional=False)
            model = average
        elif args.resume:
            saved = runs.resume(parser, args, RESUMED_SETTINGS, model, optimizer, generator,
                                    load=lambda path: checkpoints.load_unet_checkpoint(
                                        path, device, conditional=False, weights="training_state"))
            average.load_state_dict(saved["model_state"])
            start = saved["iteration"]
    except checkpoints.CheckpointError as error:
        parser.exit(1, f"error: {error}\n")
    stages = []
    model(torch.zeros(1, 1, digits.SIDE, digits.SIDE, device=device), schedule.T, record=stages)
    print(f"UNet: {n_parameters(model):,} parameters, attention {'on' if model.config['attention'] else 'off'}; "
          f"T = {schedule.T}, alpha_bar_T = {float(schedule.alpha_bar[-1]):.1e}; the shapes, once:")
    for stage, shape in stages:
        print(f"  {stage:24s} {shape}")
    network = pictures.eps_network(average)
    bound_weight = loss_weights(schedule, "bound")[2:] / (schedule.T - 1)
    print(f"the bound's weight on ||eps - eps_theta||^2 (sigma_t^2 = sigma_tilde_t^2) runs from "
          f"{float(bound_weight.min()):.3g} to {float(bound_weight.max()):.3g} over t = 2..{schedule.T}; "
          f"L_simple weighs every t 1")

    # 3. Algorithm 1: x0 a dequantised training digit, t uniform in 2..T (t = 1 is eq. 44's fixed
    # kernel, as in chapters 3-7), x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps.
    if args.reuse:
        print(f"reusing the UNet in {args.checkpoint} ({saved['iteration']} iterations, loss {saved['args']['loss']})")
    else:
        weights = loss_weights(schedule, args.loss).float().to(device)
        train_levels = torch.as_tensor(train_x)
        model.train()
        losses, began = [], time.perf_counter()
        bar = tqdm(range(start, args.iters), initial=start, total=args.iters, desc=f"training ({args.loss})")
        done = start
        with runs.stop_on_ctrl_c() as interrupted:
            for i in bar:
                if interrupted:
                    break
                pick = torch.randint(len(train_levels), (args.batch_size,), generator=generator)
                x0 = pictures.flat(digits.dequantise(train_levels[pick], generator)).to(device)
                t = torch.randint(2, schedule.T + 1, (args.batch_size,), generator=generator).to(device)
                eps = torch.randn(x0.shape, generator=generator).to(device)
                x_t = common.x_t_from_eps(x0, eps, t, schedule)
                error = (eps - pictures.flat(model(pictures.as_images(x_t), t))).square().sum(1)
                loss = (weights[t] * error).mean()
                runs.exit_if_not_finite(parser, loss, i + 1, args.lr, LR, bar)
                runs.take_step(optimizer, loss, runs.cosine_decay(i, args.iters, args.lr))
                update_average(average, model, i)
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
        print(f"trained {done - start} iterations in {seconds:.1f} s ({(done - start) / seconds:.1f} it/s) on "
              f"{device}; ||eps - eps_theta||^2 over the last 50 batches {np.mean(losses[-50:]):.2f} "
              f"(of 64 at the start)")
        print(f"checkpoint written to {args.checkpoint}")
    average.eval()

    # 4. Bits per pixel: the bound with chapter 5's best isotropic variance, whose statistic
    # E||x0 - x0_hat||^2 is measured on training digits, every step t summed exactly.
    began = time.perf_counter()
    var = pictures.best_variance_table(schedule, pictures.x0_error_per_step(
        network, train_x[:args.n_moments], schedule, torch.Generator().manual_seed(args.seed + 1), device))
    reverse = ddpm.reverse_with_variance(network, schedule, var)
    bits = {}
    for name, levels in (("held-out", heldout_x[:args.n_bound]), ("train", train_x[:args.n_bound])):
        bound_generator = torch.Generator().manual_seed(args.seed + 2)
        x0 = pictures.flat(digits.dequantise(levels, bound_generator)).to(device)
        K, _ = pictures.image_bound(reverse, x0, schedule, bound_generator)
        bits[name] = pictures.mean_and_se(pictures.bits_per_pixel(-K).numpy())
    print(f"bits/pixel held-out = {bits['held-out'][0]:.3f} (se {bits['held-out'][1]:.3f})  "
          f"train = {bits['train'][0]:.3f} (se {bits['train'][1]:.3f})   "
          f"[{args.n_bound} digits each, {time.perf_counter() - began:.0f} s]")
    baseline_generator = torch.Generator().manual_seed(args.seed + 3)
    baselines = {
        "uniform": pictures.uniform_bits(heldout_x),
        "per-pixel histogram": pictures.histogram_bits(train_x, heldout_x),
        "full Gaussian": pictures.gaussian_bits(train_x, heldout_x, baseline_generator),
        f"{pictures.MIXTURE_COMPONENTS}-Gaussian mixture": pictures.mixture_bits(train_x, heldout_x, baseline_generator,
                                                                                 seed=args.seed),
    }
    for name, values in baselines.items():
        mean, se = pictures.mean_and_se(values)
        print(f"baseline {name:22s} bits/pixel held-out = {mean:.3f} (se {se:.3f})")

    # 5. Samples of Algorithm 2 (sigma_t^2 = beta_t), and what they are worth.
    began = time.perf_counter()
    sampler = ddpm.reverse_with_variance(network, schedule, schedule.beta)
    trajectory = common.sample_chain(sampler, args.n_samples, schedule.T, torch.Generator().manual_seed(args.seed),
                                     device, d=digits.PIXELS)
    samples = digits.to_levels(trajectory[0])
    checkpoints.save_array(args.samples, samples)
    print(f"{args.n_samples} samples of Algorithm 2 in {time.perf_counter() - began:.0f} s, written to {args.samples}")
    classifier = digits.fit_digit_classifier(train_x, train_y)
    accuracy = float((classifier.predict(digits.features(heldout_x)) == heldout_y).mean())
    real = digits.real_digit_scores(split, classifier, args.seed)
    scores = {f"ddpm {schedule.T}": digits.score_samples(samples, split, classifier, args.seed)}
    print(f"digit classifier (SVC, training digits only): held-out accuracy {accuracy:.3f}")
    print(f"confident (p > {digits.CONFIDENT}) samples = {scores[f'ddpm {schedule.T}']['confident']:.3f}  "
          f"held-out digits = {real['confident']:.3f}")

    # 6. Fewer steps: chapter 6's DDIM (eta = 0) along sub-sequences spread evenly in log SNR.
    fewer = {}
    for steps in [steps for steps in FEWER_STEPS if steps < schedule.T]:
        respaced, t_of = ddim.respace(schedule, ddim.sub_sequence(schedule, steps, "log_snr"))
        chain = common.sample_chain(ddim.ddim_reverse(ddim.on_respaced_steps(network, t_of), respaced, 0.0),
                                    args.n_samples, steps, torch.Generator().manual_seed(args.seed), device,
                                    d=digits.PIXELS)
        fewer[steps] = digits.to_levels(chain[0])
        scores[f"ddim {steps}"] = digits.score_samples(fewer[steps], split, classifier, args.seed)
    print("sampler     confident  class counts p  two-sample acc  copies  nearest-train distance (median)")
    for name, score in [("held-out", real)] + list(scores.items()):
        print(f"{name:10s}  {score['confident']:9.3f}  {score['counts_p']:14.3g}  {score['two_sample']:14.3f}  "
              f"{score['copies']:6.3f}  {score['nearest_distance']:8.2f}")
    print("  (held-out's two-sample test is training digits against held-out ones; 0.5 = indistinguishable)")
    best = scores[f"ddpm {schedule.T}"]
    print(f"two-sample accuracy = {best['two_sample']:.3f} (training digits: {real['two_sample']:.3f})  "
          f"copies = {best['copies']:.3f}  class counts p = {best['counts_p']:.3g}")

    # 7. Figures.
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.4))
    figures.show_digits(axes[0], centres(samples[:100]), 10, f"samples (Algorithm 2, T = {schedule.T})", **PIXEL_SCALE)
    figures.show_digits(axes[1], centres(heldout_x[:100]), 10, "held-out digits", **PIXEL_SCALE)
    fig.tight_layout()
    figures.save_figure(fig, args.images / "08_samples.png")

    shown_t = [round(schedule.T * f) for f in (0, 0.05, 0.125, 0.25, 0.5, 0.75, 1)]
    forward_generator = torch.Generator().manual_seed(args.seed)
    x0 = pictures.flat(digits.dequantise(heldout_x[:6], forward_generator))
    eps = torch.randn(x0.shape, generator=forward_generator)
    fig, axes = plt.subplots(1, len(shown_t), figsize=(1.6 * len(shown_t), 6))
    for ax, t in zip(axes, shown_t):
        x_t = x0 if t == 0 else common.x_t_from_eps(x0, eps, t, schedule)
        figures.show_digits(ax, x_t.numpy(), 1, f"t = {t}", **PIXEL_SCALE)
    fig.suptitle("the forward process q(x_t | x0) on six held-out digits")
    fig.tight_layout()
    figures.save_figure(fig, args.images / "08_forward.png")

    frame_t = sorted({round(schedule.T * (1 - k / (GIF_FRAMES - 1)) ** 2) for k in range(GIF_FRAMES)}, reverse=True)
    fig, ax = plt.subplots(figsize=(3.6, 3.9))

    def draw(k):
        ax.clear()
        figures.show_digits(ax, trajectory[frame_t[k]][:16].cpu().numpy(), 4, f"reverse process, t = {frame_t[k]}", **PIXEL_SCALE)

    animation = FuncAnimation(fig, draw, frames=len(frame_t))
    checkpoints.replace_atomically(args.images / "08_reverse.gif",
                                lambda temporary: animation.save(temporary, writer=PillowWriter(fps=8), dpi=60))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.6))
    names = list(baselines) + ["UNet, held-out", "UNet, training digits"]
    values = [pictures.mean_and_se(v)[0] for v in baselines.values()] + [bits["held-out"][0], bits["train"][0]]
    ax.barh(names, values, color=["gray"] * len(baselines) + ["tab:blue", "tab:cyan"])
    for k, value in enumerate(values):
        ax.text(value + 0.03, k, f"{value:.2f}", va="center")
    ax.set(xlabel="bits per pixel (lower is better); the baselines on the held-out digits", xlim=(0, 4.7),
           title="the bound against the baselines")
    ax.invert_yaxis()
    fig.tight_layout()
    figures.save_figure(fig, args.images / "08_bits.png")

    index, distance, _ = digits.nearest_training(samples[:12], train_x)
    fig, axes = plt.subplots(2, 12, figsize=(12, 2.6))
    for k in range(12):
        figures.show_digits(axes[0, k], centres(samples[k:k + 1]), 1, f"{distance[k]:.1f}", **PIXEL_SCALE)
        figures.show_digits(axes[1, k], centres(train_x[index[k]:index[k] + 1]), 1, **PIXEL_SCALE)
    axes[0, 0].set_ylabel("sample")
    axes[1, 0].set_ylabel("nearest\ntraining")
    fig.suptitle("samples (top, with the distance in levels) and their nearest training digit (bottom)")
    fig.tight_layout()
    figures.save_figure(fig, args.images / "08_nearest.png")
    print(f"figures written to {args.images}/: 08_samples.png, 08_forward.png, 08_reverse.gif, 08_bits.png, "
          f"08_nearest.png")


if __name__ == "__main__":
    main()
