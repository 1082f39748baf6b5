"""Lab note (docs/chapter12.md, "The decoder's floor"): how good can a latent sample be with a
given autoencoder? A perfect latent diffusion model would sample the training latents themselves;
decoded, they are the best any latent sample can score. This trains chapter 12's autoencoder at
one budget and prints the held-out reconstruction error and the scores of 500 decoded training
latents beside real digits' (the Frechet distance's band of real against real).

    PYTHONPATH=scripts python docs/autoencoder_floor.py --ae-batch 8 --ae-iters 6400
    PYTHONPATH=scripts python docs/autoencoder_floor.py --reconstruction l1+squared

--reconstruction swaps the squared error of autoencoder.loss_terms for another per-image error:
Stable Diffusion's autoencoder is trained on an L1 error (with perceptual and adversarial terms).
--ae-batch and --width move the chapter's batch (16 digits a step) and the autoencoder's width.
"""
import argparse
import time

import torch

import autoencoder
import cli
import mnist
import mnist_scores

chapter12 = cli.load_chapter("12_latent_space.py")
ERRORS = {"squared": lambda d: d.square(), "l1": lambda d: d.abs(), "l1+squared": lambda d: d.abs() + d.square()}


def loss_terms_with(error):
    """autoencoder.loss_terms with `error` (of x - decode(z), per pixel) summed in place of the squared error."""
    def loss_terms(model, x, generator=None):
        mean, log_var = model.encode(x)
        reconstruction = model.decode(autoencoder.draw(mean, log_var, generator))
        return error(x - reconstruction).flatten(1).sum(1), autoencoder.kl_to_standard_normal(mean, log_var)
    return loss_terms


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ae-iters", type=cli.positive_int, default=chapter12.AE_ITERS)
    parser.add_argument("--ae-lr", type=cli.positive_float, default=chapter12.AE_LR)
    parser.add_argument("--latent-channels", type=cli.positive_int, default=chapter12.LATENT_CHANNELS)
    parser.add_argument("--n", type=cli.positive_int, default=chapter12.N_SAMPLES, help="decoded latents scored")
    parser.add_argument("--reconstruction", choices=sorted(ERRORS), default="squared")
    parser.add_argument("--ae-batch", type=cli.positive_int, default=chapter12.AE_BATCH, help="digits per step")
    parser.add_argument("--width", type=cli.positive_int, default=autoencoder.WIDTH,
                        help="the autoencoder's channels at 28 x 28 (twice as many at 14 x 14 and 7 x 7)")
    parser.add_argument("--seed", type=cli.seed_int, default=0)
    args = parser.parse_args()
    autoencoder.loss_terms = loss_terms_with(ERRORS[args.reconstruction])   # what autoencoder.train calls
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    split = mnist.load_split(None)
    classifier = mnist_scores.fit_classifier(split[0], split[1], torch.Generator().manual_seed(args.seed + 1))
    _, heldout_features = mnist_scores.classify(classifier, split[2])
    _, heldout_nearest = mnist_scores.nearest_training(split[2], split[0])
    began = time.process_time()
    ae = autoencoder.Autoencoder(args.latent_channels, args.width)
    autoencoder.train(ae, mnist.to_unit(split[0]), args.ae_iters, args.ae_batch, args.ae_lr, generator)
    seconds = time.process_time() - began
    with torch.no_grad():
        rebuilt = mnist.to_levels(ae.decode(ae.encode(mnist.to_unit(split[2]))[0]))
        latents = autoencoder.encode_all(ae, mnist.to_unit(split[0][:args.n]), generator)
        decoded = mnist.to_levels(autoencoder.decode_all(ae, latents))
    rmse = float(((rebuilt.astype(float) - split[2]) ** 2).mean() ** 0.5)
    floor = mnist_scores.score(decoded, classifier, split, float(heldout_nearest.min()), args.seed)
    band = mnist_scores.real_band(classifier, split[0], heldout_features, args.n, args.seed)
    print(f"| {args.latent_channels} | {args.ae_iters} | {args.ae_lr:g} | {args.ae_batch} | {args.width} | "
          f"{seconds:.0f} | {rmse:.1f} | "
          f"{floor['confident']:.3f} | {floor['frechet']:.1f} (real {band[0]:.1f}-{band[1]:.1f}) | {floor['two_sample']:.3f} |")


if __name__ == "__main__":
    main()
