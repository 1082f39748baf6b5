"""Chapter 13: text to image. README section "13. Text to image: prompts through cross-attention".

Run after chapter 12 (`python scripts/12_latent_space.py`): its autoencoder, saved in
outputs/latent/autoencoder.pt, turns 28 x 28 digits into C x 7 x 7 latents (C = 2 by default) and back. This
chapter writes a prompt for every training digit from its label and its measured thickness and
slant ("a thin seven slanted to the left"), trains the latent UNet with a text encoder and
cross-attention on those prompts (each dropped a tenth of the time, for guidance), then measures:
1. guidance over w: whether the samples are the digit, thickness and slant their prompt asked for,
   the Frechet distance to the held-out digits and the diversity within a prompt, one line per w;
2. negative prompts ("a seven", negative "a thick seven"): whether the attribute moves away;
3. image to image (SDEdit): held-out digits noised to a strength and redrawn with a new prompt,
   the distance to the source against obedience, one line per strength;
and prints our numbers beside Stable Diffusion's for each part.

Writes outputs/latent/prompted.npz (the guided samples and what they asked for, for tools),
images/13_prompts.png, images/13_attention.png and images/13_image_to_image.png.
"""
import argparse
import functools
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
import prompts
import runs
import text_to_image
from prompts import NOT_ASKED
from unet import UNet, n_parameters

AUTOENCODER = cli.OUTPUTS / "latent" / "autoencoder.pt"     # chapter 12's
AUTOENCODER_COMMAND = "python scripts/12_latent_space.py"
PROMPTED = cli.OUTPUTS / "latent" / "prompted.npz"
CHECKPOINT = cli.OUTPUTS / "latent" / "text_unet.pt"         # the UNet with text this chapter trains
CHECKPOINT_FORMAT = "diffusion-walkthrough text unet v1"
SCRIPT = "scripts/13_text_to_image.py"
# The denoiser: chapter 12's latent UNet and schedule, with a text encoder and cross-attention.
T, BETA_1, LOG_SNR_T, SHAPE = 1000, 1e-4, -10.0, "cosine"
BASE_CHANNELS = 32
TEXT = {"vocabulary_size": len(prompts.VOCABULARY), "max_tokens": prompts.MAX_TOKENS, "dim": 48, "layers": 1}
ITERS = 1500                  # about 4 minutes on 2 cores (900: digit asked for 0.90 at best, 1,500: 0.97)
BATCH_SIZE = 128
LR = 2e-3
EMA_DECAY = 0.999
# Sampling and measuring.
W_VALUES = (0.0, 1.0, 2.0, 4.0)
REPEATS = 2                   # samples of each of the 160 prompts, per w (320 per w)
STEPS, SOLVER = 25, "ddim"
W_SHOWN = 2.0                 # the w of the negative prompts, image to image and the figures
SOURCES = 100                 # noises for the negative prompts (a tenth per digit); digits redrawn
STRENGTHS = (0.2, 0.4, 0.6, 0.8, 1.0)
SEEN_BLOCK = 5                # the cross-attention block whose maps are drawn: 7 x 7, on the way up


def prompts_from_the_data(split):
    """Sentences from pixels: thickness and slant, their terciles per class (README "Sentences from pixels")."""
    train_x, train_y = split[0], split[1]
    cuts = {"thickness": prompts.tercile_cuts(prompts.thickness(train_x), train_y),
            "slant": prompts.tercile_cuts(prompts.slant(train_x), train_y)}
    thirds = {name: prompts.tercile(getattr(prompts, name)(train_x), train_y, cuts[name]) for name in cuts}
    for name, words in (("thickness", prompts.THICKNESS_WORDS), ("slant", prompts.SLANT_WORDS)):
        values = getattr(prompts, name)(train_x)
        print(f"{name} of the training digits, mean per tercile: " + ", ".join(
            f"{word} {values[thirds[name] == k].mean():.2f}" for k, word in enumerate(words)))
    g = torch.Generator().manual_seed(0)
    asked = prompts.draw_asked(torch.as_tensor(train_y[:6]), *(torch.as_tensor(thirds[n][:6]) for n in cuts), g)
    print("training prompts: " + " | ".join(f"'{prompts.sentence(*map(int, a))}'" for a in zip(*asked)))
    return cuts, {name: torch.as_tensor(third) for name, third in thirds.items()}


def load_autoencoder(parser, path, device):
    """Chapter 12's autoencoder and scale factor, or one line naming the command that makes them."""
    try:
        return autoencoder.load(path, AUTOENCODER_COMMAND, device)[:2]
    except checkpoints.CheckpointError as error:
        parser.exit(1, f"error: {error}\n")


def train_with_prompts(parser, args, latents, labels, thirds, schedule, device, generator):
    """Algorithm 1 on the scaled latents, each batch with its prompts (README "Training with prompts")."""
    model = UNet(BASE_CHANNELS, channels=latents.shape[1], size=latents.shape[-1], text=TEXT).to(device)
    print(f"UNet with text: {n_parameters(model):,} parameters, of which the text encoder "
          f"{n_parameters(model.text_encoder):,} and cross-attention {n_parameters(model.cross):,}")
    average, optimizer, learning_rate = runs.adam_with_average(model, args.lr, args.iters, EMA_DECAY)
    flat, losses, began = latents.flatten(1), [], time.perf_counter()
    for i in (bar := tqdm(range(args.iters), desc="training with prompts")):
        pick = torch.randint(len(flat), (args.batch_size,), generator=generator)
        tokens = prompts.tokens_for(*prompts.draw_asked(labels[pick], thirds["thickness"][pick],
                                                        thirds["slant"][pick], generator)).to(device)
        t = torch.randint(2, schedule.T + 1, (args.batch_size,), generator=generator).to(device)
        eps = torch.randn(flat[pick].shape, generator=generator).to(device)
        x_t = common.x_t_from_eps(flat[pick].to(device), eps, t, schedule).reshape(-1, *latents.shape[1:])
        loss = (eps - model(x_t, t, tokens=tokens).flatten(1)).square().mean()
        runs.exit_if_not_finite(parser, loss, i + 1, args.lr, LR, bar)
        runs.take_step(optimizer, loss)
        learning_rate.step()
        average.update_parameters(model)
        losses.append(loss.item())
    print(f"trained {args.iters} iterations in {time.perf_counter() - began:.0f} s on {device}; "
          f"||eps - eps_theta||^2 per number over the last 100 batches {np.mean(losses[-100:]):.3f}")
    return average.module.eval()


def save_model(path, model, args):
    """The trained UNet with text, its config and the run's settings, written atomically."""
    state = {"format": CHECKPOINT_FORMAT, "config": dict(model.config), "state": model.state_dict(),
             "iters": args.iters, "seed": args.seed}
    checkpoints.replace_atomically(path, lambda temporary: torch.save(state, temporary))


def load_model(parser, path, device):
    """The UNet a run of this chapter saved, or one line saying how to make one."""
    retrain = f"run `python {SCRIPT}` without --reuse to make one"
    try:
        saved = checkpoints.read_checkpoint_file(path, retrain)
        if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
            raise checkpoints.CheckpointError(f"{path} is not a UNet with text of this chapter: {retrain}")
        model = UNet(**saved["config"])
        model.load_state_dict(saved["state"])
    except (KeyError, TypeError, RuntimeError) as error:
        parser.exit(1, f"error: {path} holds a UNet of another shape ({type(error).__name__}): {retrain}\n")
    except checkpoints.CheckpointError as error:
        parser.exit(1, f"error: {error}\n")
    print(f"reusing the UNet with text in {path} ({saved['iters']} iterations)")
    return model.to(device).eval()


def draw(args, model, latents, tokens, w, schedule, negative=None, maps=None):
    """Samples of prompts `tokens` guided with weight w (and a negative prompt), decoded to levels."""
    device = next(model.parameters()).device
    eps_at = text_to_image.prompted(functools.partial(model, maps=maps), tokens.to(device), w,
                                    None if negative is None else negative.to(device))
    shape = (len(tokens), model.config["channels"], model.config["size"], model.config["size"])
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(args.seed)).to(device)
    z = ddim.deterministic_chain(lambda x, t: eps_at(x, torch.full((len(x),), t, device=device)),
                                 x_T, schedule, args.steps, SOLVER)
    return mnist.to_levels(autoencoder.decode_all(latents[0], z / latents[1], device))


def guidance_sweep(args, model, latents, z0, cuts, split, classifier, schedule):
    """One line per w: obedience, Frechet distance, diversity (README "Guidance with prompts")."""
    asked = tuple(a.repeat(args.repeats) for a in prompts.every_prompt())
    tokens = prompts.tokens_for(*asked)
    held_features = mnist_scores.classify(classifier, split[2])[1]
    band = mnist_scores.real_band(classifier, split[0], held_features, len(tokens), args.seed)
    # A perfect latent model would draw the training latents: decoded, the best any sample can score.
    decoded = mnist.to_levels(autoencoder.decode_all(latents[0], z0[:len(tokens)] / latents[1],
                                                     next(model.parameters()).device))
    floor = mnist_scores.frechet_distance(mnist_scores.classify(classifier, decoded)[1], held_features)
    print(f"{len(tokens)} samples per w ({args.repeats} of each of the 160 prompts), {SOLVER} {args.steps} steps; "
          f"Frechet distance of real digits: {band[0]:.1f}-{band[1]:.1f}, of decoded training latents: {floor:.1f}")
    print("   w      s  digit  thickness  slant   both  Frechet  diversity")
    rows, samples = [], []
    for w in args.w:
        levels = draw(args, model, latents, tokens, w, schedule)
        probabilities, features = mnist_scores.classify(classifier, levels)
        score = text_to_image.obedience(levels, asked, probabilities.argmax(1), cuts["thickness"], cuts["slant"])
        score["frechet"] = mnist_scores.frechet_distance(features, held_features)
        score["diversity"] = text_to_image.within_prompt_diversity(levels, asked)
        print(f"{w:4g} {1 + w:6g} {score['digit']:6.3f} {score['thickness']:10.3f} {score['slant']:6.3f} "
              f"{score['both']:6.3f} {score['frechet']:8.1f} {score['diversity']:10.0f}", flush=True)
        rows.append(score)
        samples.append(levels)
    n = len(tokens)
    checkpoints.replace_atomically(args.out, lambda temporary: np.savez(
        open(temporary, "wb"), images=np.concatenate(samples), labels=np.tile(asked[0].numpy(), len(args.w)),
        thickness=np.tile(asked[1].numpy(), len(args.w)), slant=np.tile(asked[2].numpy(), len(args.w)),
        w=np.repeat(np.asarray(args.w, dtype=np.float64), n)))
    print(f"samples and their prompts written to {args.out}")
    return dict(zip(args.w, samples)), max(zip(args.w, rows), key=lambda pair: pair[1]["both"])[0]


def negative_prompts(args, model, latents, schedule):
    """"a seven" with and without a negative prompt, the same noise: which way did it move? (README "Negative prompts")"""
    digit = torch.arange(10).repeat_interleave(args.sources // 10)
    none = torch.full_like(digit, NOT_ASKED)
    before = draw(args, model, latents, prompts.tokens_for(digit, none, none), W_SHOWN, schedule)
    print(f"negative prompts, w = {W_SHOWN:g}, {len(digit)} pairs each (the same noise with and without):")
    for name, third, away in (("thickness", 2, -1), ("thickness", 0, 1), ("slant", 2, -1), ("slant", 0, 1)):
        said = torch.full_like(digit, third)
        negative = prompts.tokens_for(digit, *((said, none) if name == "thickness" else (none, said)))
        after = draw(args, model, latents, prompts.tokens_for(digit, none, none), W_SHOWN, schedule, negative)
        a, b = getattr(prompts, name)(before), getattr(prompts, name)(after)
        print(f"  'a seven', negative '{prompts.sentence(7, *((third, NOT_ASKED) if name == 'thickness' else (NOT_ASKED, third)))}': "
              f"{name} {'down' if away < 0 else 'up'} in {np.mean(np.sign(b - a) == away):.2f} of pairs, "
              f"mean {a.mean():.2f} -> {b.mean():.2f}")


def image_to_image(args, model, latents, cuts, split, classifier, schedule, device):
    """SDEdit: held-out digits redrawn with another digit's prompt, per strength (README "Image to image")."""
    latent_model, scale = latents
    source, g = split[2][:args.sources], torch.Generator().manual_seed(args.seed)
    asked = ((torch.as_tensor(split[3][:args.sources]) + torch.randint(1, 10, (args.sources,), generator=g)) % 10,
             torch.randint(0, 3, (args.sources,), generator=g), torch.randint(0, 3, (args.sources,), generator=g))
    eps_at = text_to_image.prompted(model, prompts.tokens_for(*asked).to(device), W_SHOWN)
    with torch.no_grad():
        x0 = latent_model.encode(mnist.to_unit(source).to(device))[0] * scale
    print(f"image to image, w = {W_SHOWN:g}: {args.sources} held-out digits, each asked to become another digit")
    print("strength  steps  distance to source  digit  both")
    edited = []
    for s in STRENGTHS:
        z = text_to_image.sdedit(lambda x, t: eps_at(x, torch.full((len(x),), t, device=device)), x0, s,
                                 schedule, args.steps, torch.Generator().manual_seed(args.seed), SOLVER)
        levels = mnist.to_levels(autoencoder.decode_all(latent_model, z / scale, device))
        score = text_to_image.obedience(levels, asked, mnist_scores.classify(classifier, levels)[0].argmax(1),
                                        cuts["thickness"], cuts["slant"])
        distance = np.sqrt(((levels.astype(float) - source) ** 2).mean(axis=(1, 2)))
        print(f"{s:8g} {max(2, round(s * args.steps)):6d} {np.median(distance):19.1f} {score['digit']:6.3f} {score['both']:5.3f}")
        edited.append(levels)
    return source, asked, edited


def from_here_to_stable_diffusion(args, model, latents, best_w):
    """Our number beside Stable Diffusion v1's for each part (README "From here to Stable Diffusion")."""
    rows = [("autoencoder", "8x down, 4 channels, scale 0.18215", f"4x down, {latents[0].config['latent_channels']} channels, scale {latents[1]:.3f}"),
            ("denoiser", "UNet, 860M parameters, cross-attention", f"UNet, {n_parameters(model):,} parameters, "
                                                                 f"cross-attention after {len(model.cross)} blocks"),
            ("text encoder", "CLIP ViT-L/14, frozen, 123M; 77 tokens x 768",
             f"trained here, {n_parameters(model.text_encoder):,}; {prompts.MAX_TOKENS} tokens x {TEXT['dim']}"),
            ("vocabulary", "49,408 byte-pair tokens", f"{len(prompts.VOCABULARY) - 2} words"),
            ("chain", "T = 1000, scaled linear beta", f"T = {T}, {SHAPE} path"),
            ("guidance", "s = 7.5, 50 PNDM/DDIM steps", f"s = {1 + best_w:g} (the most prompts obeyed), {args.steps} {SOLVER.upper()} steps")]
    print("from here to Stable Diffusion v1:")
    for part, theirs, ours in rows:
        print(f"  {part:12s}  {theirs:42s}  here: {ours}")


SHOWN_PROMPTS = ((7, NOT_ASKED, NOT_ASKED), (7, 0, 0), (7, 2, 2), (2, 0, 1), (2, 2, 0), (8, 1, NOT_ASKED))
ATTENTION_PROMPTS = ("a thick seven slanted to the left", "a thin upright two", "an eight slanted to the right")


def draw_attention_figure(args, model, latents, schedule):
    """Where the pixels of one block look, word by word, averaged over the chain's steps."""
    maps = []
    tokens = prompts.tokenize(ATTENTION_PROMPTS)
    levels = draw(args, model, latents, tokens, W_SHOWN, schedule, maps=maps)
    seen = torch.stack([m[:len(tokens)] for m in maps[SEEN_BLOCK::len(model.cross)]]).mean(0).cpu().numpy()  # (n, 7, 7, L)
    latent_figures.attention(tokens, levels, seen, args.images / "13_attention.png")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_training_args(parser, ITERS, BATCH_SIZE, LR, "L_simple with prompts", "latents of digits")
    parser.add_argument("--autoencoder", type=pathlib.Path, default=AUTOENCODER,
                        help="chapter 12's autoencoder checkpoint (default: outputs/latent/autoencoder.pt)")
    parser.add_argument("--repeats", type=cli.positive_int, default=REPEATS,
                        help="samples of each of the 160 prompts, per w (default: %(default)s)")
    parser.add_argument("--sources", type=cli.whole_number(10), default=SOURCES,
                        help="noises for the negative prompts and held-out digits redrawn per strength "
                             "(default: %(default)s)")
    parser.add_argument("--steps", type=cli.whole_number(2, T), default=STEPS,
                        help="steps of the sampling chain (default: %(default)s)")
    parser.add_argument("--checkpoint", type=pathlib.Path, default=CHECKPOINT,
                        help="where the trained UNet with text goes (default: outputs/latent/text_unet.pt)")
    parser.add_argument("--reuse", action="store_true",
                        help="load the UNet of --checkpoint instead of training one")
    parser.add_argument("--out", type=pathlib.Path, default=PROMPTED,
                        help="where the prompted samples go (default: outputs/latent/prompted.npz)")
    parser.add_argument("--w", type=cli.guidance_weights, default=list(W_VALUES),
                        help="comma-separated guidance weights w >= -1 (s = 1 + w; -1 is the model without a prompt) (default: 0,1,2,4)")
    cli.add_standard_args(parser)
    args, device, generator = cli.parse_and_prepare(parser)
    cli.output_file_or_exit(parser, args.out, "the prompted samples", "prompted.npz")
    cli.output_file_or_exit(parser, args.checkpoint, "the UNet with text", "text_unet.pt")
    runs.prepare_training()
    began = time.perf_counter()
    latents = load_autoencoder(parser, args.autoencoder, device)
    model = load_model(parser, args.checkpoint, device) if args.reuse else None   # refused before any data is read
    split = mnist.load_split()
    cuts, thirds = prompts_from_the_data(split)

    # The latents of the training digits (the encoder's means), scaled to unit variance (chapter 12).
    latent_model, scale = latents
    with torch.no_grad():
        z0 = torch.cat([latent_model.encode(x.to(device))[0].cpu() for x in mnist.to_unit(split[0]).split(500)]) * scale
    schedule = pictures.image_schedule(T, BETA_1, LOG_SNR_T, SHAPE)
    if model is None:
        model = train_with_prompts(parser, args, z0, torch.as_tensor(split[1]), thirds, schedule, device, generator)
        save_model(args.checkpoint, model, args)
    torch.manual_seed(args.seed)   # the classifier starts from the same weights, trained here or --reuse
    classifier = mnist_scores.fit_classifier(split[0], split[1], torch.Generator().manual_seed(args.seed), device=device)

    swept, best_w = guidance_sweep(args, model, latents, z0, cuts, split, classifier, schedule)
    negative_prompts(args, model, latents, schedule)
    source, asked, edited = image_to_image(args, model, latents, cuts, split, classifier, schedule, device)
    latent_figures.prompts_by_w(swept, args.repeats, SHOWN_PROMPTS, args.images / "13_prompts.png")
    latent_figures.image_to_image(source, asked, edited, STRENGTHS, args.images / "13_image_to_image.png")
    draw_attention_figure(args, model, latents, schedule)
    from_here_to_stable_diffusion(args, model, latents, best_w)
    print(f"figures written to {args.images}; {time.perf_counter() - began:.0f} s in all")


if __name__ == "__main__":
    main()
