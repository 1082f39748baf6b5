"""The autoencoder of latent diffusion, small enough to train on a CPU in a minute (README chapter 12,
"The autoencoder").

Stable Diffusion does not diffuse pixels: an autoencoder first squeezes each image into a latent,
a smaller image of a few channels, and the diffusion model learns the latents; its samples are
decoded back to pixels. Here a 28 x 28 digit (784 numbers) becomes a latent of C channels at
7 x 7 (196 numbers for C = 4):
- the encoder halves the image twice with strided 3 x 3 convolutions (28 -> 14 -> 7) and gives,
  for every latent number, a mean and a log-variance: q(z | x) = N(mean, exp(log_var));
- z is drawn from it by the reparameterisation z = mean + exp(log_var / 2) eps, eps ~ N(0, I),
  so the loss's gradient flows through the draw into the encoder;
- the decoder mirrors the encoder (7 -> 14 -> 28, nearest-neighbour doubling then a convolution).

The loss (Rombach et al. 2022, the "KL-reg" autoencoder), per image:
    ||x - decode(z)||^2 + KL_WEIGHT * KL(q(z | x) || N(0, I)).
The weight is small on purpose: the code should be nearly deterministic (a large weight would
make z noisy and the reconstructions blurry, a VAE's trade-off), and the KL only keeps the
latents from drifting to any scale. Their scale is then measured (`latent_scale`) and divided out
before diffusion: Stable Diffusion's 0.18215 is this factor for its autoencoder.
"""
import pathlib

import torch
from torch import nn
from tqdm import tqdm

import checkpoints

KL_WEIGHT = 1e-4     # the KL term's weight: small, a nearly deterministic code (see above)
WIDTH = 32           # channels at 28 x 28; twice as many at 14 x 14 and 7 x 7
CHECKPOINT_FORMAT = "diffusion-walkthrough autoencoder v1"


def block(channels_in, channels_out, stride=1):
    """A 3 x 3 convolution (stride 2 halves the image), then SiLU."""
    return [nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1), nn.SiLU()]


class Autoencoder(nn.Module):
    """encode: x (n, 1, 28, 28) -> (mean, log_var), each (n, C, 7, 7); decode: z -> (n, 1, 28, 28)."""

    def __init__(self, latent_channels=4, width=WIDTH):
        super().__init__()
        self.config = {"latent_channels": latent_channels, "width": width}
        w = width
        self.encoder = nn.Sequential(
            *block(1, w), *block(w, 2 * w, stride=2),          # (n, w, 28, 28) -> (n, 2w, 14, 14)
            *block(2 * w, 2 * w), *block(2 * w, 2 * w, stride=2),  # -> (n, 2w, 7, 7)
            nn.Conv2d(2 * w, 2 * latent_channels, 3, padding=1))   # -> (n, 2C, 7, 7): mean, log_var
        self.decoder = nn.Sequential(
            *block(latent_channels, 2 * w), *block(2 * w, 2 * w),  # (n, C, 7, 7) -> (n, 2w, 7, 7)
            nn.Upsample(scale_factor=2), *block(2 * w, w),         # -> (n, w, 14, 14)
            nn.Upsample(scale_factor=2), *block(w, w),             # -> (n, w, 28, 28)
            nn.Conv2d(w, 1, 3, padding=1))                         # -> (n, 1, 28, 28) pixels

    def encode(self, x):
        """q(z | x) as (mean, log_var); log_var is clamped to [-30, 20] so exp() stays finite."""
        mean, log_var = self.encoder(x).chunk(2, dim=1)
        return mean, log_var.clamp(-30.0, 20.0)

    def decode(self, z):
        return self.decoder(z)


def draw(mean, log_var, generator=None):
    """The reparameterised draw z = mean + exp(log_var / 2) eps, eps ~ N(0, I)."""
    eps = torch.randn(mean.shape, generator=generator).to(mean)
    return mean + torch.exp(0.5 * log_var) * eps


def kl_to_standard_normal(mean, log_var):
    """KL(N(mean, exp(log_var)) || N(0, I)) per image, summed over its latent numbers:
    1/2 sum (mean^2 + exp(log_var) - 1 - log_var)."""
    return 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var).flatten(1).sum(1)


def loss_terms(model, x, generator=None):
    """(reconstruction, kl), each per image: ||x - decode(z)||^2 with z drawn from q(z | x), and
    the KL of q(z | x) to N(0, I)."""
    mean, log_var = model.encode(x)
    reconstruction = model.decode(draw(mean, log_var, generator))
    return (x - reconstruction).square().flatten(1).sum(1), kl_to_standard_normal(mean, log_var)


def train(model, pixels, iters, batch_size, lr, generator, device="cpu", kl_weight=KL_WEIGHT):
    """Adam on reconstruction + kl_weight * KL over random batches of `pixels` (n, 1, 28, 28),
    the step size decayed along a cosine to 0. Returns the last 50 batches' mean (reconstruction, kl)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, iters)
    model.train()
    history = []
    for _ in tqdm(range(iters), desc="autoencoder"):
        x = pixels[torch.randint(len(pixels), (batch_size,), generator=generator)].to(device)
        reconstruction, kl = loss_terms(model, x, generator)
        loss = (reconstruction + kl_weight * kl).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the autoencoder's loss became {loss.item()}: try a smaller learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        history.append((reconstruction.mean().item(), kl.mean().item()))
    model.eval()
    last = torch.tensor(history[-50:])
    return tuple(last.mean(0).tolist())


@torch.no_grad()
def encode_all(model, pixels, generator=None, device="cpu", batch_size=500):
    """Latents z drawn from q(z | x) for every image of `pixels`, on the CPU, in batches."""
    return torch.cat([draw(*model.encode(pixels[k:k + batch_size].to(device)), generator).cpu()
                      for k in range(0, len(pixels), batch_size)])


@torch.no_grad()
def decode_all(model, z, device="cpu", batch_size=500):
    """Pixels decode(z) for every latent, on the CPU, in batches."""
    return torch.cat([model.decode(z[k:k + batch_size].to(device)).cpu() for k in range(0, len(z), batch_size)])


def latent_scale(latents):
    """The scale factor 1 / std(z), the standard deviation taken over every number of the
    training digits' latents: multiplied by it, the latents have unit variance, as the
    diffusion's x_T ~ N(0, I) assumes (Stable Diffusion's 0.18215 is this number for its own)."""
    return 1.0 / float(latents.double().std())


def save(path, model, scale, **extra):
    """The autoencoder, its scale factor and any plain `extra` data, written atomically."""
    checkpoint = {"format": CHECKPOINT_FORMAT, "config": dict(model.config), "state": model.state_dict(),
                  "scale": scale, **extra}
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    checkpoints.replace_atomically(path, lambda temporary: torch.save(checkpoint, temporary))


def load(path, made_by, device="cpu"):
    """(model, scale, checkpoint) from a file `save` wrote; CheckpointError in one line, naming the
    command `made_by` that makes a good one, for a missing, unreadable or foreign file."""
    retrain = f"run `{made_by}` to make one"
    checkpoint = checkpoints.read_checkpoint_file(pathlib.Path(path), retrain)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise checkpoints.CheckpointError(f"{path} is a torch file but not an autoencoder of this walkthrough: {retrain}")
    try:
        model = Autoencoder(**checkpoint["config"])
        model.load_state_dict(checkpoint["state"])
    except (KeyError, TypeError, RuntimeError) as error:
        raise checkpoints.CheckpointError(f"{path} holds an autoencoder of another shape than this code "
                                          f"builds ({type(error).__name__}): {retrain} again")
    return model.to(device).eval(), float(checkpoint["scale"]), checkpoint
