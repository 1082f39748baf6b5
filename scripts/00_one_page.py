"""Diffusion on one page (README, "0. Diffusion on one page"): DDPM (Ho et al. 2020) and nothing else.
Algorithm 1 teaches a UNet eps_theta to find the noise in a noised 8 x 8 digit; Algorithm 2 starts from
pure noise and takes the network's estimate of it away, one step at a time. Prints how often a digit
classifier calls the samples confidently, beside the held-out digits; draws images/00_eps_prediction.png
(x0, eps, x_t, eps_hat, x0_hat at a few t) and images/00_samples.png."""
import argparse

import matplotlib.pyplot as plt
import torch
from tqdm import tqdm

import cli
import digits
from figures import show_digits
from unet import UNet

T = 200                                                  # steps; t = 1..T as in the paper
BETA = torch.cat([torch.zeros(1), torch.linspace(1e-4, 0.1, T)])  # beta_t, linear in t; beta_0 = 0
ALPHA_BAR = torch.cumprod(1.0 - BETA, dim=0)             # alpha_bar_t = prod_{s <= t} (1 - beta_s)
ITERS, BATCH_SIZE, LR = 1500, 128, 2e-3                  # Adam, its step size decayed to 0 along a cosine
N_SAMPLES = 300                                          # samples drawn and scored
SHOWN_T = (10, 40, 80, 140)                              # the steps of the eps-prediction figure


def x_t_from_eps(x0, eps, t):
    """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps: q(x_t | x0) in one draw."""
    alpha_bar_t = ALPHA_BAR[t.cpu()].reshape(-1, 1, 1, 1).to(x0.device)
    return alpha_bar_t.sqrt() * x0 + (1.0 - alpha_bar_t).sqrt() * eps


def train(eps_model, data):
    """Algorithm 1: x0 from the data, t ~ U{1..T}, eps ~ N(0, I), a step on ||eps - eps_theta(x_t, t)||^2."""
    optimizer = torch.optim.Adam(eps_model.parameters(), lr=LR)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, ITERS)
    for _ in tqdm(range(ITERS), desc="Algorithm 1"):
        x0 = data[torch.randint(len(data), (BATCH_SIZE,))]
        t = torch.randint(1, T + 1, (BATCH_SIZE,), device=data.device)
        eps = torch.randn_like(x0)
        x_t = x_t_from_eps(x0, eps, t)
        loss = (eps - eps_model(x_t, t)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        decay.step()


def reverse_step(eps_model, x_t, t, z):
    """One step of Algorithm 2: x_{t-1} from x_t, the network's eps and fresh noise z (none at t = 1)."""
    beta_t, alpha_bar_t = float(BETA[t]), float(ALPHA_BAR[t])
    eps = eps_model(x_t, torch.full((len(x_t),), t, device=x_t.device))
    mean = (x_t - beta_t / (1.0 - alpha_bar_t) ** 0.5 * eps) / (1.0 - beta_t) ** 0.5
    return mean + beta_t ** 0.5 * z if t > 1 else mean


@torch.no_grad()
def sample(eps_model, n, device):
    """Algorithm 2: x_T ~ N(0, I), then reverse_step for t = T, ..., 1; returns x_0."""
    x = torch.randn(n, 1, 8, 8, device=device)
    for t in range(T, 0, -1):
        x = reverse_step(eps_model, x, t, torch.randn_like(x))
    return x


@torch.no_grad()
def draw_eps_prediction(eps_model, x0, path):
    """One digit x0 and one eps; at each t of SHOWN_T, x_t, the network's eps_hat and the x0_hat it implies."""
    eps, (fig, axes) = torch.randn_like(x0), plt.subplots(len(SHOWN_T), 5, figsize=(7, 1.6 * len(SHOWN_T)))
    for row, t in zip(axes, SHOWN_T):
        x_t = x_t_from_eps(x0, eps, torch.tensor([t]))
        eps_hat = eps_model(x_t, torch.tensor([t], device=x0.device))
        x0_hat = (x_t - (1.0 - ALPHA_BAR[t]).sqrt() * eps_hat) / ALPHA_BAR[t].sqrt()
        names = ("x0", "eps", f"x_t, t = {t}", "eps_hat", "x0_hat")
        for ax, image, name in zip(row, (x0, eps, x_t, eps_hat, x0_hat), names):
            show_digits(ax, image.cpu(), 1, name, low=-1.0, high=1.0)
    fig.savefig(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=cli.seed_int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--device", choices=("auto", *cli.available_devices()), default="auto")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    device, (train_x, train_y, heldout_x, _) = cli.pick_device(args.device), digits.load_split()
    eps_model = UNet().to(device)
    train(eps_model, digits.to_unit(train_x).to(device))
    samples = digits.to_levels(sample(eps_model, N_SAMPLES, device))
    classifier = digits.fit_digit_classifier(train_x, train_y)
    share, heldout_share = (digits.confident_share(classifier, x)[0] for x in (samples, heldout_x))
    print(f"called a digit with confidence > {digits.CONFIDENT}: samples {share:.2f}, held-out digits {heldout_share:.2f}")
    draw_eps_prediction(eps_model, digits.to_unit(heldout_x[:1]).to(device), cli.IMAGES / "00_eps_prediction.png")
    fig, ax = plt.subplots(figsize=(6, 6))
    show_digits(ax, samples[:100], 10, f"the first 100 of {N_SAMPLES} samples of Algorithm 2")
    fig.savefig(cli.IMAGES / "00_samples.png")


if __name__ == "__main__":
    main()
