"""Chapter 9: asking for a picture. README section "9. Asking for a picture: guidance and inpainting".

Run after chapter 8 (scripts/08_pictures.py): its checkpoint gives the schedule (and, with
--inpaint-with chapter8, the network that fills in hidden pixels). This chapter trains one more
UNet of the same size, conditional: eps(x_t, t, c) for the digits with their labels, the label replaced by
"no label" for a share --p-uncond of each batch, so that it is also eps(x_t, t, null). Then,
each part scored on the held-out digits:
1. classifier-free guidance, eps~ = (1 + w) eps(x, c) - w eps(x, null), for every --w: whether
   chapter 8's classifier calls the samples the digit that was asked for, how varied the
   samples of one digit are over how varied the held-out digits of that digit are, the
   confident share and the distance to the nearest training digit. One line per w;
2. what the label is worth in bits: the bound on -log p(x | c) and on -log p(x) (label null) of
   the same held-out digits, and their difference;
3. inpainting with an unconditional model (this network with the label null, by default): the
   replacement method, RePaint's resampling and
   reconstruction guidance, on four masks, beside two baselines that need no diffusion model
   (the training mean filled in; the nearest training digit by the visible pixels). One line per
   mask and method, and what the network was drawing along the chain.
--parts runs some of the three (with --load, no training); --mixture-bound adds the bound of the
mixture over the ten labels (docs/chapter9.md).

Writes outputs/pictures/conditional.pt (the network), outputs/pictures/guided.npz (samples,
labels, w on the 0..16 scale) and outputs/pictures/inpainted.npz (the best method's completions),
and images/09_guidance.png, images/09_precision_diversity.png, images/09_inpainting.png.
"""
import argparse
import math
import pathlib
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm import tqdm

import common
import ddim
import ddpm
import digits
import guidance
import pictures
import checkpoints
import cli
import figures
import runs
from unet import UNet

# Training the conditional UNet (Algorithm 1 with labels).
ITERS = 3000                  # about 2.5 minutes on a quiet 2-core CPU (docs/chapter9.md)
BATCH_SIZE = 128
LR = 2e-3                     # Adam's peak step size, decayed along a cosine to 0
BASE_CHANNELS = 32            # chapter 8's size
P_UNCOND = 0.15               # share of each batch trained with no label (Ho & Salimans: 0.1-0.2)
RESUMED_SETTINGS = ("iters", "batch_size", "lr", "p_uncond")
# Guidance.
W_VALUES = (0.0, 0.5, 1.0, 2.0, 4.0)
SAMPLES_PER_CLASS = 100
STEPS = 25                    # guided sampling: a respaced chain (chapter 6), evenly spaced in log SNR
INPAINT_STEPS = 50            # inpainting: reconstruction guidance needs the finer steps (docs/chapter9.md)
# Inpainting.
PARTS = ("guidance", "bits", "inpainting")
INPAINTERS = ("replacement", "repaint", "reconstruction")
RESAMPLE = 4                  # RePaint: passes over each stretch of JUMP steps
JUMP = 1
ZETA = 3.0                    # reconstruction guidance's step, zeta / ||error|| (Chung et al.)
COMPLETIONS = 3               # completions of every held-out digit, per mask and method
SHOWN = 6                     # held-out digits in the inpainting figure
CONDITIONAL_CHECKPOINT = cli.OUTPUTS / "pictures" / "conditional.pt"
GUIDED = cli.OUTPUTS / "pictures" / "guided.npz"
INPAINTED = cli.OUTPUTS / "pictures" / "inpainted.npz"
N_MOMENTS = 500              # training digits per step for the best variance, as chapter 8
SCRIPT = "scripts/09_guidance.py"


def w_list(text):
    """argparse type for --w: comma-separated guidance weights, each a finite number >= 0."""
    values = []
    for part in text.split(","):
        try:
            w = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers >= 0, got '{part}'")
        if not (math.isfinite(w) and w >= 0):
            raise argparse.ArgumentTypeError(f"each w must be a finite number >= 0, got '{part}'")
        values.append(w)
    return values


def label_list(text):
    """argparse type for --digits: comma-separated digits 0..9 to ask for, each once."""
    values = [cli.whole_number(0, 9)(part) for part in text.split(",")]
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"each digit once, got '{text}'")
    return sorted(values)


def names_list(allowed):
    """argparse type: comma-separated names, each one of `allowed`."""
    def parse(text):
        names = text.split(",")
        for name in names:
            if name not in allowed:
                raise argparse.ArgumentTypeError(f"each must be one of {', '.join(allowed)}, got '{name}'")
        return names
    return parse


def share(text):
    """argparse type for --p-uncond: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to below 1, got '{text}'")
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be from 0 to below 1, got {text}")
    return value


@torch.no_grad()
def x0_hat_along_the_chain(eps_at, trajectory, x0, mask, schedule, steps):
    """What an inpainting run was drawing on its way: for each of `steps`, the RMS error, in
    levels, of the network's x0_hat(x_t) on the visible pixels, and x0_hat as levels."""
    errors, drawn = [], []
    for t in steps:
        x_t = trajectory[t]
        x0_hat = common.x0_from_eps(x_t, eps_at(x_t, torch.full((len(x_t),), t, device=x_t.device)), t, schedule)
        squared = (mask * (x0_hat.clamp(-1, 1) - x0)).square().sum() / mask.sum()
        errors.append(float(squared.sqrt()) * digits.LEVELS / 2)
        drawn.append(digits.to_levels(x0_hat))
    return errors, drawn


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_training_args(parser, ITERS, BATCH_SIZE, LR, "L_simple with labels")
    parser.add_argument("--p-uncond", type=share, default=P_UNCOND,
                        help="share of each batch trained with no label (default: %(default)s)")
    parser.add_argument("--w", type=w_list, default=list(W_VALUES),
                        help="comma-separated guidance weights w >= 0 of eps~ = (1 + w) eps(x, c) - w eps(x, null); "
                             "the scale s = 1 + w of the other convention (default: 0,0.5,1,2,4)")
    parser.add_argument("--digits", type=label_list, default=list(range(10)),
                        help="comma-separated digits 0..9 to ask for (default: all ten)")
    parser.add_argument("--samples-per-class", type=cli.positive_int, default=SAMPLES_PER_CLASS,
                        help="guided samples per digit and w (default: %(default)s)")
    parser.add_argument("--steps", type=cli.whole_number(2), default=STEPS,
                        help="steps of the respaced sampling chain, at most chapter 8's T (default: %(default)s)")
    parser.add_argument("--inpaint-steps", type=cli.whole_number(2), default=INPAINT_STEPS,
                        help="steps of the respaced chain for inpainting (default: %(default)s)")
    parser.add_argument("--variance", choices=guidance.VARIANCES, default="beta",
                        help="the reverse steps' variance: beta_t (Algorithm 2, as chapter 8) or the posterior's "
                             "sigma_tilde_t^2 (default: %(default)s)")
    parser.add_argument("--masks", type=names_list(guidance.MASKS), default=list(guidance.MASKS),
                        help=f"comma-separated masks to inpaint (default: {','.join(guidance.MASKS)})")
    parser.add_argument("--resample", type=cli.positive_int, default=RESAMPLE,
                        help="RePaint's passes over each stretch of --jump steps (default: %(default)s)")
    parser.add_argument("--jump", type=cli.positive_int, default=JUMP,
                        help="RePaint's jump length in steps (default: %(default)s)")
    parser.add_argument("--zeta", type=cli.positive_float, default=ZETA,
                        help="reconstruction guidance's step length (default: %(default)s)")
    parser.add_argument("--completions", type=cli.whole_number(2), default=COMPLETIONS,
                        help="completions of each held-out digit per mask and method (default: %(default)s)")
    parser.add_argument("--held-out", type=cli.whole_number(2, digits.N_HELDOUT), default=digits.N_HELDOUT,
                        help="held-out digits to inpaint (default: all %(default)s)")
    parser.add_argument("--n-bound", type=cli.whole_number(0, digits.N_HELDOUT), default=digits.N_HELDOUT,
                        help="held-out digits for the label's worth in bits, 0 to skip (default: all %(default)s)")
    parser.add_argument("--mixture-bound", type=cli.whole_number(0, digits.N_HELDOUT), default=0,
                        help="held-out digits for the bound of the mixture over the ten labels, ten bounds each "
                             "(default: 0, skipped; docs/chapter9.md)")
    parser.add_argument("--parts", type=names_list(PARTS), default=list(PARTS),
                        help=f"comma-separated parts to run (default: {','.join(PARTS)})")
    parser.add_argument("--n-moments", type=cli.positive_int, default=N_MOMENTS,
                        help="training digits per step for the bound's best variance (default: %(default)s)")
    parser.add_argument("--inpaint-with", choices=("chapter8", "conditional"), default="conditional",
                        help="the unconditional network of inpainting: this chapter's with the label null, "
                             "or chapter 8's (default: %(default)s; docs/chapter9.md)")
    parser.add_argument("--pictures", type=pathlib.Path, default=checkpoints.PICTURES_CHECKPOINT,
                        help="chapter 8's checkpoint (default: outputs/pictures/unet.pt)")
    parser.add_argument("--checkpoint", type=pathlib.Path, default=CONDITIONAL_CHECKPOINT,
                        help="where to save the conditional network (default: outputs/pictures/conditional.pt)")
    parser.add_argument("--load", type=pathlib.Path, default=None,
                        help="use this conditional checkpoint instead of training one")
    parser.add_argument("--resume", action="store_true", help="continue the training saved in --checkpoint")
    parser.add_argument("--out-dir", type=pathlib.Path, default=GUIDED.parent,
                        help="folder for guided.npz and inpainted.npz (default: outputs/pictures)")
    cli.add_standard_args(parser)
    args, device, generator = cli.parse_and_prepare(parser)
    cli.output_file_or_exit(parser, args.checkpoint, "the checkpoint", "conditional.pt")
    cli.writable_dir_or_exit(parser, args.out_dir, "the samples")

    try:
        chapter8, schedule, _ = checkpoints.load_unet_checkpoint(args.pictures, device, conditional=False)
    except checkpoints.CheckpointError as error:
        parser.exit(1, f"error: chapter 8's network is needed first: {error}\n")
    for option, steps in (("--steps", args.steps), ("--inpaint-steps", args.inpaint_steps)):
        if steps > schedule.T:
            parser.error(f"{option} must be at most chapter 8's T = {schedule.T}, got {steps}")
    split = digits.load_split()
    train_x, train_y, held_x, held_y = split

    # 1. The conditional network: chapter 8's UNet with a label row added to its time code, the
    # label dropped for a share p_uncond of each batch (guidance.drop_labels).
    def load_conditional(path):
        model, saved_schedule, checkpoint = checkpoints.load_unet_checkpoint(path, device, made_by=f"python {SCRIPT}",
                                                                          conditional=True)
        if not torch.allclose(saved_schedule.beta, schedule.beta):
            raise checkpoints.CheckpointError(f"{path} was trained with another schedule than chapter 8's "
                                           f"network in {args.pictures}: run `python {SCRIPT}` again")
        return model, saved_schedule, checkpoint

    if args.load is not None:
        try:
            model, _, _ = load_conditional(args.load)
        except checkpoints.CheckpointError as error:
            parser.exit(1, f"error: {error}\n")
        print(f"conditional network loaded from {args.load}")
    else:
        runs.prepare_training()
        model = UNet(BASE_CHANNELS, n_classes=10).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
        start = 0
        if args.resume:
            start = runs.resume(parser, args, RESUMED_SETTINGS, model, optimizer, generator,
                                    load=load_conditional)["iteration"]
        model.train()
        dropped, seen, losses, done = 0, 0, [], start
        began = time.perf_counter()
        bar = tqdm(range(start, args.iters), initial=start, total=args.iters, desc="training (with labels)")
        with runs.stop_on_ctrl_c() as interrupted:
            for i in bar:
                if interrupted:
                    break
                pick = torch.randint(len(train_x), (args.batch_size,), generator=generator)
                x0 = digits.dequantise(train_x[pick], generator).to(device)
                label = guidance.drop_labels(torch.as_tensor(train_y[pick]), args.p_uncond, model.null_label,
                                             generator).to(device)
                t = torch.randint(2, schedule.T + 1, (args.batch_size,), generator=generator)
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
    model.eval()

    classifier = digits.fit_digit_classifier(train_x, train_y)
    short, t_of = ddim.respace(schedule, ddim.sub_sequence(schedule, args.steps, "log_snr"))
    asked = torch.as_tensor(held_y)
    asked_for = np.isin(held_y, args.digits)
    held_spread = guidance.within_class_spread(torch.as_tensor(held_x[asked_for]).double(), asked[asked_for])
    _, held_distance, _ = digits.nearest_training(held_x, train_x)
    real_confident, _ = digits.confident_share(classifier, held_x)

    if "guidance" in args.parts:
        # 2. Classifier-free guidance: one line per w.
        print(f"guidance: {args.samples_per_class} samples per digit and w, {args.steps} respaced steps; "
              f"held-out digits: confident {real_confident:.3f}, nearest training digit at {np.median(held_distance):.1f}")
        label = torch.as_tensor(args.digits).repeat_interleave(args.samples_per_class)
        curve, guided_levels = [], []
        for w in args.w:
            began = time.perf_counter()
            eps_at = ddim.on_respaced_steps(guidance.guided(model, label.to(device), w), t_of)
            levels = digits.to_levels(guidance.sample(eps_at, len(label), short,
                                                      torch.Generator().manual_seed(args.seed), device, args.variance))
            confident, predicted = digits.confident_share(classifier, levels)
            accuracy = float((predicted == label.numpy()).mean())
            diversity = guidance.within_class_spread(torch.as_tensor(levels).double(), label) / held_spread
            _, distance, _ = digits.nearest_training(levels, train_x)
            curve.append((w, accuracy, diversity, confident, float(np.median(distance))))
            guided_levels.append(levels)
            print(f"w = {w:<4g} (s = {guidance.scale_from_w(w):<4g})  accuracy {accuracy:.3f}  diversity {diversity:.3f}  "
                  f"confident {confident:.3f}  nearest training digit {np.median(distance):.1f}  "
                  f"[{time.perf_counter() - began:.0f} s]", flush=True)
        np.savez(args.out_dir / "guided.npz", samples=np.concatenate(guided_levels),
                 labels=np.tile(label.numpy(), len(args.w)), w=np.repeat(args.w, len(label)))

        # Figures: one row per digit and a column per w; the precision-diversity curve.
        columns = min(4, args.samples_per_class)
        fig, axes = plt.subplots(1, len(args.w), figsize=(1.6 * len(args.w) * columns / 4 + 0.5, 0.45 * len(args.digits) + 1))
        axes = np.atleast_1d(axes)
        for ax, (w, *_), levels in zip(axes, curve, guided_levels):
            rows = levels.reshape(len(args.digits), args.samples_per_class, 8, 8)[:, :columns]
            figures.show_digits(ax, rows.reshape(-1, 8, 8), columns, f"w = {w:g}")
        fig.tight_layout()
        figures.save_figure(fig, args.images / "09_guidance.png")

        w_values, accuracy, diversity = (np.array([row[k] for row in curve]) for k in range(3))
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.plot(diversity, accuracy, "o-")
        for k, (w, d, a) in enumerate(zip(w_values, diversity, accuracy)):   # labels alternate below and above
            ax.annotate(f"w = {w:g}", (d, a), textcoords="offset points", xytext=(-8, -14 if k % 2 else 8), fontsize=8)
        ax.axhline(0.99, color="gray", ls=":")
        ax.axvline(0.85, color="gray", ls=":")
        ax.set(xlabel="diversity (within-digit distance / held-out digits')", ylabel="accuracy on the requested digit",
               title="classifier-free guidance: precision against diversity")
        fig.tight_layout()
        figures.save_figure(fig, args.images / "09_precision_diversity.png")
        print(f"figures written to {args.images}/09_guidance.png and 09_precision_diversity.png")

    # 3. What the label is worth: the bound on -log2 P(x | c) and on -log2 P(x) of the same
    # held-out digits (chapter 8's bound, each with its own best isotropic variance), with the
    # same dequantisation and noise for both, so that their difference is measured per digit.
    if "bits" in args.parts and args.n_bound:
        began = time.perf_counter()
        bits, variance = {}, {}
        for name, labels_of in (("-log2 P(x | c)", lambda y: torch.as_tensor(y).to(device)),
                                ("-log2 P(x)", lambda y: None)):
            m = min(args.n_moments, len(train_x))
            x0_error = pictures.x0_error_per_step(pictures.eps_network(model, labels_of(train_y[:m])), train_x[:m],
                                                  schedule, torch.Generator().manual_seed(args.seed + 1), device)
            variance[name] = pictures.best_variance_table(schedule, x0_error)
            reverse = ddpm.reverse_with_variance(pictures.eps_network(model, labels_of(held_y[:args.n_bound])),
                                                 schedule, variance[name])
            bound_generator = torch.Generator().manual_seed(args.seed + 2)
            x0 = pictures.flat(digits.dequantise(held_x[:args.n_bound], bound_generator)).to(device)
            K, _ = pictures.image_bound(reverse, x0, schedule, bound_generator)
            bits[name] = digits.PIXELS * pictures.bits_per_pixel(-K).numpy()    # bits per image
        print(f"the label's worth on {args.n_bound} held-out digits, bits per image (bound, standard error) "
              f"[{time.perf_counter() - began:.0f} s]:")
        for name, values in bits.items():
            mean, se = pictures.mean_and_se(values)
            print(f"  {name:<16} {mean:7.2f}  ({se:.2f})   = {mean / digits.PIXELS:.3f} bits per pixel")
        mean, se = pictures.mean_and_se(bits["-log2 P(x)"] - bits["-log2 P(x | c)"])
        print(f"  difference       {mean:7.2f}  ({se:.2f})   the exact difference is at most log2 10 = "
              f"{math.log2(10):.2f}: more means the bound with the label null is the looser one")
        if args.mixture_bound:
            # The conditional network also defines p(x) = (1/10) sum_c p(x | c), and since
            # p(x | c) >= exp(K_c), log p(x) >= logsumexp_c K_c - log 10: a bound on the same
            # digits from the ten conditional bounds, never more than log2 10 above the best one.
            began = time.perf_counter()
            m = args.mixture_bound
            x0 = pictures.flat(digits.dequantise(held_x[:m], torch.Generator().manual_seed(args.seed + 2))).to(device)
            K = torch.stack([pictures.image_bound(
                ddpm.reverse_with_variance(pictures.eps_network(model, torch.full((m,), c, device=device)), schedule,
                                           variance["-log2 P(x | c)"]),
                x0, schedule, torch.Generator().manual_seed(args.seed + 3))[0] for c in range(10)])
            mixture = digits.PIXELS * pictures.bits_per_pixel(-(torch.logsumexp(K, 0) - math.log(10))).numpy()
            given = digits.PIXELS * pictures.bits_per_pixel(-K[held_y[:m], torch.arange(m)]).numpy()
            print(f"  on the first {m}: -log2 P(x | c) {given.mean():.2f}, -log2 P(x) by the mixture over the ten "
                  f"labels {mixture.mean():.2f}; difference {pictures.mean_and_se(mixture - given)[0]:.2f} "
                  f"({pictures.mean_and_se(mixture - given)[1]:.2f}) [{time.perf_counter() - began:.0f} s]")

    if "inpainting" in args.parts:
        # 4. Inpainting with an unconditional network.
        n = args.held_out
        x0 = digits.to_unit(held_x[:n]).to(device)
        truth = held_x[:n]
        train_unit = digits.to_unit(train_x).to(device)
        network = chapter8 if args.inpaint_with == "chapter8" else model
        chain, chain_t_of = ddim.respace(schedule, ddim.sub_sequence(schedule, args.inpaint_steps, "log_snr"))
        eps_uncond = ddim.on_respaced_steps(lambda x, t: network(x, t, None), chain_t_of)
        print(f"inpainting {n} held-out digits with {args.inpaint_with}'s network, {args.inpaint_steps} respaced steps, "
              f"{args.completions} completions each; "
              f"accuracy = chapter 8's classifier against the true digit, MSE = hidden pixels, levels 0..16")
        table, shown, along = {}, {}, {}
        watched = sorted({chain.T, (3 * chain.T) // 4, chain.T // 2, max(chain.T // 4, 2), 2}, reverse=True)
        for mask_name in args.masks:
            mask = guidance.make_mask(mask_name, n, torch.Generator().manual_seed(args.seed)).to(device)
            hidden = (mask == 0).cpu().numpy().reshape(n, 8, 8)

            def score(completed):
                _, predicted = digits.confident_share(classifier, completed)
                return (float((predicted == held_y[:n]).mean()),
                        float(((completed - truth) ** 2 * hidden).sum() / hidden.sum()))

            for name, fill in (("mean fill", guidance.mean_fill), ("nearest fill", guidance.nearest_fill)):
                accuracy, mse = score(digits.to_levels(fill(x0, mask, train_unit)))
                table[mask_name, name] = (accuracy, mse)
                print(f"mask = {mask_name:<7} {name:<15} accuracy {accuracy:.3f}  MSE {mse:5.1f}")
            for method in INPAINTERS:
                began = time.perf_counter()
                k, trajectory = args.completions, {}
                out = guidance.inpaint(eps_uncond, x0.repeat(k, 1, 1, 1), mask.repeat(k, 1, 1, 1), chain, method,
                                       args.resample, args.jump, args.zeta, torch.Generator().manual_seed(args.seed),
                                       trajectory, args.variance)
                levels = digits.to_levels(out).reshape(k, n, 8, 8)
                scores = [score(levels[j]) for j in range(k)]
                accuracy, mse = np.mean(scores, axis=0)
                mean_accuracy, mean_mse = score(digits.to_levels(out.reshape(k, n, 1, 8, 8).mean(0)))
                spread = float((levels.std(axis=0) * hidden).sum() / hidden.sum())
                table[mask_name, method] = (accuracy, mse)
                shown[mask_name, method] = levels
                print(f"mask = {mask_name:<7} {method:<15} accuracy {accuracy:.3f}  MSE {mse:5.1f}  "
                      f"mean of {k}: {mean_accuracy:.3f} / {mean_mse:5.1f}  spread {spread:.2f} levels  "
                      f"[{time.perf_counter() - began:.0f} s]", flush=True)
                if mask_name == args.masks[0]:
                    errors, drawn = x0_hat_along_the_chain(eps_uncond, trajectory, x0.repeat(k, 1, 1, 1),
                                                           mask.repeat(k, 1, 1, 1), chain, watched)
                    _, final = digits.confident_share(classifier, levels.reshape(-1, 8, 8))
                    decided = [float((digits.confident_share(classifier, d)[1] == final).mean()) for d in drawn]
                    along[method] = errors, decided

        # Why replacement alone can fail: when the digit is chosen (x0_hat(x_t) already called the
        # digit the completion ends as) against how far x0_hat still is from the visible pixels.
        print(f"along the chain ({args.masks[0]} mask): x0_hat's RMS error on the visible pixels (levels) / "
              f"share already called the final digit, at t = " + ", ".join(str(int(chain_t_of[k])) for k in watched))
        for method, (errors, decided) in along.items():
            print(f"  {method:<15} " + "   ".join(f"{e:4.1f} / {d:.2f}" for e, d in zip(errors, decided)))

        first = args.masks[0]
        best = max(INPAINTERS, key=lambda method: table[first, method][0])
        best_mask = guidance.make_mask(first, n, torch.Generator().manual_seed(args.seed)).numpy().reshape(n, 8, 8)
        np.savez(args.out_dir / "inpainted.npz", completed=shown[first, best][0], truth=truth,
                 mask=best_mask.astype(np.int64), labels=held_y[:n], method=best)
        print(f"best on the {first} mask: {best}; its completions written to {args.out_dir / 'inpainted.npz'}")

        # Figure: the visible pixels, two completions per method, the nearest fill, the truth.
        shown_k = min(2, args.completions)
        examples = min(SHOWN, n)
        masked = np.where(best_mask[:examples] == 1, truth[:examples], np.nan)
        panels = [masked] + [shown[first, method][j, :examples] for method in INPAINTERS for j in range(shown_k)]
        panels += [digits.to_levels(guidance.nearest_fill(x0, torch.as_tensor(best_mask).reshape(n, 1, 8, 8).to(x0),
                                                          train_unit))[:examples], truth[:examples]]
        titles = ["visible"] + [f"{method} {j + 1}" for method in INPAINTERS for j in range(shown_k)] + ["nearest", "truth"]
        fig, axes = plt.subplots(1, len(panels), figsize=(1.1 * len(panels), 1.1 * examples))
        for ax, panel, title in zip(axes, panels, titles):
            figures.show_digits(ax, panel, 1, title)
            ax.title.set_fontsize(7)
        fig.tight_layout()
        figures.save_figure(fig, args.images / "09_inpainting.png")
        print(f"figure written to {args.images}/09_inpainting.png")


if __name__ == "__main__":
    main()
