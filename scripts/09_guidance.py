"""Chapter 9: asking for a digit. README section "9. Asking for a digit: classifier-free guidance".

Run after chapter 8 (scripts/08_pictures.py): its checkpoint gives the schedule. This chapter
trains one more UNet of the same size, conditional: eps(x_t, t, c) for the digits with their
labels, the label replaced by "no label" for a share --p-uncond of each batch, so that it is also
eps(x_t, t, null). Then, on the held-out digits:
1. classifier-free guidance, eps~ = (1 + w) eps(x, c) - w eps(x, null), first on one x_t (the
   two eps and their combination, a figure), then for every --w (w = -1: no label): whether
   chapter 8's classifier calls the samples the digit that was asked for, how varied the
   samples of one digit are over how varied the held-out digits of that digit are, the
   confident share and the distance to the nearest training digit. One line per w;
2. what the label is worth in bits: the bound on -log p(x | c) and on -log p(x) (label null) of
   the same held-out digits, and their difference.
The lab notes' studies (the sampler's variance, the mixture over the ten labels) are scripts in
docs/ that import this one's steps (docs/chapter9.md).

Writes outputs/pictures/conditional.pt (the network, which chapter 10 inpaints with) and
outputs/pictures/guided.npz (samples, labels, w on the 0..16 scale), and
images/09_two_eps.png, images/09_guidance.png and images/09_precision_diversity.png.
"""
import argparse
import math
import pathlib
import time

import numpy as np
import torch
from tqdm import tqdm

import checkpoints
import cli
import common
import ddim
import digits
import guidance
import guidance_figures
import pictures
import runs
from unet import UNet

# Training the conditional UNet (Algorithm 1 with labels).
ITERS = 3000                  # about 7 minutes on a quiet 2-core CPU (docs/chapter9.md)
BATCH_SIZE = 128
LR = 2e-3                     # Adam's peak step size, decayed along a cosine to 0
BASE_CHANNELS = 32            # chapter 8's size
P_UNCOND = 0.15               # share of each batch trained with no label (Ho & Salimans: 0.1-0.2)
X0_FORM = "centres"           # chapter 8's recipe: the levels' centres, the discrete decoder at the last step
RESUMED_SETTINGS = ("iters", "batch_size", "lr", "p_uncond", "x0_form")
# Guidance.
W_VALUES = (-1.0, 0.0, 0.5, 1.0, 2.0, 4.0)   # w = -1: eps(x, null) alone, the model without its label
SAMPLES_PER_CLASS = 100
STEPS = 25                    # guided sampling: a respaced chain (chapter 6), evenly spaced in log SNR
N_MOMENTS = 500               # training digits per step for the bound's best variance, as chapter 8
CONDITIONAL_CHECKPOINT = cli.OUTPUTS / "pictures" / "conditional.pt"
SCRIPT = "scripts/09_guidance.py"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_training_args(parser, ITERS, BATCH_SIZE, LR, "L_simple with labels", "digits")
    parser.add_argument("--p-uncond", type=cli.share, default=P_UNCOND,
                        help="share of each batch trained with no label (default: %(default)s)")
    parser.add_argument("--w", type=cli.guidance_weights, default=list(W_VALUES),
                        help="comma-separated guidance weights w >= -1 of eps~ = (1 + w) eps(x, c) - w eps(x, null); "
                             "w = -1 is the network without a label; the scale s = 1 + w of the other convention "
                             "(default: -1,0,0.5,1,2,4)")
    parser.add_argument("--digits", type=cli.distinct_whole_numbers(0, 9), default=list(range(10)),
                        help="comma-separated digits 0..9 to ask for (default: all ten)")
    parser.add_argument("--samples-per-class", type=cli.positive_int, default=SAMPLES_PER_CLASS,
                        help="guided samples per digit and w (default: %(default)s)")
    parser.add_argument("--steps", type=cli.whole_number(2), default=STEPS,
                        help="steps of the respaced sampling chain, at most chapter 8's T (default: %(default)s)")
    parser.add_argument("--n-bound", type=cli.whole_number(0, digits.N_HELDOUT), default=digits.N_HELDOUT,
                        help="held-out digits for the label's worth in bits, 0 to skip (default: all %(default)s)")
    parser.add_argument("--n-moments", type=cli.positive_int, default=N_MOMENTS,
                        help="training digits per step for the bound's best variance (default: %(default)s)")
    parser.add_argument("--pictures", type=pathlib.Path, default=checkpoints.PICTURES_CHECKPOINT,
                        help="chapter 8's checkpoint (default: outputs/pictures/unet.pt)")
    parser.add_argument("--checkpoint", type=pathlib.Path, default=CONDITIONAL_CHECKPOINT,
                        help="where to save the conditional network (default: outputs/pictures/conditional.pt)")
    parser.add_argument("--resume", action="store_true", help="continue the training saved in --checkpoint")
    parser.add_argument("--out-dir", type=pathlib.Path, default=CONDITIONAL_CHECKPOINT.parent,
                        help="folder for guided.npz (default: outputs/pictures)")
    cli.add_standard_args(parser)
    parser.set_defaults(x0_form=X0_FORM)   # saved with the checkpoint: chapter 10 samples as it was trained
    args, device, generator = cli.parse_and_prepare(parser)
    cli.output_file_or_exit(parser, args.checkpoint, "the checkpoint", "conditional.pt")
    cli.writable_dir_or_exit(parser, args.out_dir, "the samples")
    schedule = chapter8_schedule(parser, args, device)
    split = digits.load_split()

    model = train_with_label_dropout(parser, args, schedule, split, device, generator)
    guidance_figures.draw_two_eps(model, schedule, split, device, args.images / "09_two_eps.png")
    curve, guided_levels, label = classifier_free_guidance(model, schedule, split, args, device)
    np.savez(args.out_dir / "guided.npz", samples=np.concatenate(guided_levels),
             labels=np.tile(label.numpy(), len(args.w)), w=np.repeat(args.w, len(label)))
    guidance_figures.draw_guidance(args.images, curve, guided_levels, args.digits, args.samples_per_class)
    if args.n_bound:
        labels_worth_in_bits(model, schedule, split, args, device)


def chapter8_schedule(parser, args, device):
    """Chapter 8's schedule ("It needs chapter 8's checkpoint"), with the steps checked against its T."""
    _, schedule, _ = checkpoints.load_unet_or_exit(parser, args.pictures, device, "chapter 8's network is needed first",
                                                   conditional=False)
    if args.steps > schedule.T:
        parser.error(f"--steps must be at most chapter 8's T = {schedule.T}, got {args.steps}")
    return schedule


def load_conditional(path, schedule, device, pictures_path):
    """This chapter's network from its checkpoint, refused if its schedule is not chapter 8's."""
    model, saved_schedule, checkpoint = checkpoints.load_unet_checkpoint(path, device, made_by=f"python {SCRIPT}",
                                                                      conditional=True)
    if not torch.allclose(saved_schedule.beta, schedule.beta):
        raise checkpoints.CheckpointError(f"{path} was trained with another schedule than chapter 8's "
                                          f"network in {pictures_path}: run `python {SCRIPT}` again")
    return model, saved_schedule, checkpoint


def train_with_label_dropout(parser, args, schedule, split, device, generator):
    """"One network, with and without a label": Algorithm 1 with labels, each dropped with p_uncond."""
    train_x, train_y, _, _ = split
    runs.prepare_training()
    model = UNet(BASE_CHANNELS, n_classes=10).to(device)   # chapter 8's UNet, a label row added to its time code
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    start = 0
    if args.resume:
        start = runs.resume(parser, args, RESUMED_SETTINGS, model, optimizer, generator,
                            load=lambda path: load_conditional(path, schedule, device, args.pictures))["iteration"]
    model.train()
    first = 1 if args.x0_form == "centres" else 2   # with the decoder, step 1 is learned too (chapter 8)
    dropped, seen, losses, done = 0, 0, [], start
    began = time.perf_counter()
    bar = tqdm(range(start, args.iters), initial=start, total=args.iters, desc="training (with labels)")
    with runs.stop_on_ctrl_c() as interrupted:
        for i in bar:
            if interrupted:
                break
            pick = torch.randint(len(train_x), (args.batch_size,), generator=generator)
            x0 = pictures.training_pixels(train_x[pick], args.x0_form, generator).to(device)
            label = guidance.drop_labels(torch.as_tensor(train_y[pick]), args.p_uncond, model.null_label,
                                         generator).to(device)
            t = torch.randint(first, schedule.T + 1, (args.batch_size,), generator=generator)
            eps = torch.randn(x0.shape, generator=generator).to(device)
            # x_t of common's forward chain, on the flattened image (its tables index rows by t)
            x_t = common.x_t_from_eps(x0.flatten(1), eps.flatten(1), t, schedule).reshape(x0.shape)
            loss = (model(x_t, t.to(device), label) - eps).square().flatten(1).sum(1).mean()
            runs.exit_if_not_finite(parser, loss, i + 1, args.lr, LR, bar)
            runs.take_step(optimizer, loss, runs.cosine_decay(i, args.iters, args.lr))
            dropped += int((label == model.null_label).sum())
            seen += args.batch_size
            losses.append(loss.item())
            done = i + 1
            if done % 50 == 0:
                bar.set_postfix(eps_error=f"{np.mean(losses[-50:]):.2f}")
    bar.close()
    seconds = time.perf_counter() - began
    checkpoints.save_unet_checkpoint(args.checkpoint, model, schedule, args, done,
                                     optimizer_state=optimizer.state_dict(), generator_state=generator.get_state())
    if interrupted:
        runs.exit_interrupted(parser, args, done, SCRIPT)
    print(f"trained {done - start} iterations in {seconds:.0f} s on {device}; labels dropped in "
          f"{dropped / max(seen, 1):.3f} of the batches' digits (p_uncond = {args.p_uncond}); "
          f"checkpoint written to {args.checkpoint}")
    return model.eval()


def classifier_free_guidance(model, schedule, split, args, device, variance="beta", x0_form=X0_FORM):
    """"Classifier-free guidance": samples for every w, scored on accuracy, diversity, confidence, copies.
    The chain ends for a network trained on x0_form: the decoder's most likely level for "centres"."""
    train_x, train_y, held_x, held_y = split
    classifier = digits.fit_digit_classifier(train_x, train_y)
    short, t_of = ddim.respace(schedule, ddim.sub_sequence(schedule, args.steps, "log_snr"))
    asked = torch.as_tensor(held_y)
    asked_for = np.isin(held_y, args.digits)
    held_spread = guidance.within_class_spread(torch.as_tensor(held_x[asked_for]).double(), asked[asked_for])
    _, held_distance, _ = digits.nearest_training(held_x, train_x)
    real_confident, _ = digits.confident_share(classifier, held_x)
    print(f"guidance: {args.samples_per_class} samples per digit and w, {args.steps} respaced steps; "
          f"held-out digits: confident {real_confident:.3f}, nearest training digit at {np.median(held_distance):.1f}")
    label = torch.as_tensor(args.digits).repeat_interleave(args.samples_per_class)
    curve, guided_levels = [], []
    for w in args.w:
        began = time.perf_counter()
        eps_at = ddim.on_respaced_steps(guidance.guided(model, label.to(device), w), t_of)
        levels = digits.to_levels(guidance.sample(eps_at, len(label), short,
                                                  torch.Generator().manual_seed(args.seed), device, variance,
                                                  last_step_noise=x0_form != "centres"))
        confident, predicted = digits.confident_share(classifier, levels)
        accuracy = float((predicted == label.numpy()).mean())
        diversity = guidance.within_class_spread(torch.as_tensor(levels).double(), label) / held_spread
        _, distance, _ = digits.nearest_training(levels, train_x)
        curve.append((w, accuracy, diversity, confident, float(np.median(distance))))
        guided_levels.append(levels)
        print(f"w = {w:<4g} (s = {guidance.scale_from_w(w):<4g})  accuracy {accuracy:.3f}  diversity {diversity:.3f}  "
              f"confident {confident:.3f}  nearest training digit {np.median(distance):.1f}  "
              f"[{time.perf_counter() - began:.0f} s]", flush=True)
    return curve, guided_levels, label


def labels_worth_in_bits(model, schedule, split, args, device, x0_form=X0_FORM):
    """"What the label is worth, in bits": chapter 8's bound on -log2 P(x | c) and on -log2 P(x)
    (pictures.bits_on_levels: for "centres", DDPM's discrete bound, exact on the levels).

    Each with its own best isotropic variance, and the same noise (and dequantisation) for both,
    so that their difference is measured per digit. Returns (bits per image, variance tables)."""
    train_x, train_y, held_x, held_y = split
    began = time.perf_counter()
    bits, variance = {}, {}
    for name, labels_of in (("-log2 P(x | c)", lambda y: torch.as_tensor(y).to(device)),
                            ("-log2 P(x)", lambda y: None)):
        m = min(args.n_moments, len(train_x))
        x0_error = pictures.x0_error_per_step(pictures.eps_network(model, labels_of(train_y[:m])), train_x[:m],
                                              schedule, torch.Generator().manual_seed(args.seed + 1), device, x0_form)
        variance[name] = pictures.best_variance_table(schedule, x0_error, x0_form)
        bits[name] = digits.PIXELS * pictures.bits_on_levels(
            pictures.eps_network(model, labels_of(held_y[:args.n_bound])), held_x[:args.n_bound], schedule,
            variance[name], x0_form, torch.Generator().manual_seed(args.seed + 2), device).numpy()   # bits per image
    print(f"the label's worth on {args.n_bound} held-out digits, bits per image (bound, standard error) "
          f"[{time.perf_counter() - began:.0f} s]:")
    for name, values in bits.items():
        mean, se = pictures.mean_and_se(values)
        print(f"  {name:<16} {mean:7.2f}  ({se:.2f})   = {mean / digits.PIXELS:.3f} bits per pixel")
    # Exactly, log p(x | c) - log p(x) = log p(c | x) - log p(c) <= -log p(c), p(c) the training share
    cap = -np.log2(np.bincount(train_y, minlength=10) / len(train_y))[held_y[:args.n_bound]]
    mean, se = pictures.mean_and_se(bits["-log2 P(x)"] - bits["-log2 P(x | c)"])
    print(f"  difference       {mean:7.2f}  ({se:.2f})   the exact difference is at most -log2 p(c) = "
          f"{cap.min():.2f}-{cap.max():.2f} (mean {cap.mean():.2f}; log2 10 = {math.log2(10):.2f}): "
          f"more means the bound with the label null is the looser one")
    return bits, variance


if __name__ == "__main__":
    main()
