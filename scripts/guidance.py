"""The math of chapters 9 and 10 (README, "Asking for a digit" and "Filling in"): a label dropped
from part of each batch, classifier-free guidance in both of its conventions, and three ways to fill in the
hidden pixels of a digit with a diffusion model: replacement, RePaint's resampling and
reconstruction guidance. Also the baselines and scores the chapter measures them against.

Images are tensors (n, 1, 8, 8) of pixels in [-1, 1] (digits.to_unit). A mask has the same
shape (or broadcasts to it) and is 1 on the known pixels, 0 on the hidden ones. Networks are
eps-networks: `network(x_t, t, label)` for the conditional UNet, and for the samplers below a
function `eps_at(x_t, t)` of the (respaced) chain's step t, e.g.
`ddim.on_respaced_steps(guided(unet, label, w), t_of)`.
"""
import math

import torch

import common
import ddpm
import pictures

MASKS = ("lower", "left", "centre", "random")   # which pixels inpainting must fill in
INPAINTERS = ("replacement", "repaint", "reconstruction")


# --- one network for p(x | c) and p(x) (README, chapter 9, "One network, with and without a label")

def drop_labels(label, p_uncond, null_label, generator=None):
    """The labels a training batch sees: each replaced by `null_label` ("no label") with
    probability p_uncond, independently, so one network learns eps(x, c) and eps(x, null)."""
    drop = torch.rand(label.shape, generator=generator) < p_uncond
    return torch.where(drop.to(label.device), torch.full_like(label, null_label), label)


# --- classifier-free guidance (Ho & Salimans 2021) --------------------------------------------

def guided_eps(eps_cond, eps_uncond, w):
    """Classifier-free guidance: eps~ = (1 + w) eps(x, c) - w eps(x, null). w = 0 is the
    conditional network, w = -1 the unconditional one; w > 0 pushes past the conditional."""
    return (1.0 + w) * eps_cond - w * eps_uncond


def guided_eps_scale(eps_cond, eps_uncond, s):
    """The other convention (as in many libraries' "guidance scale"):
    eps~ = eps(x, null) + s (eps(x, c) - eps(x, null)). It is guided_eps with w = s - 1."""
    return eps_uncond + s * (eps_cond - eps_uncond)


def scale_from_w(w):
    """s = 1 + w: the scale of guided_eps_scale that gives the same eps~ as guided_eps's w."""
    return 1.0 + w


def w_from_scale(s):
    """w = s - 1, the inverse of scale_from_w (s = 1, "no guidance" there, is w = 0 here)."""
    return s - 1.0


def guided(network, label, w, null_label=None, negative=None):
    """The conditional network guided with weight w, as an eps-function (x_t, t) -> eps~ for a
    batch asking for `label` (n,). The conditional and unconditional calls share one forward
    pass on a batch of 2n; w = 0 needs only the conditional one, so it is exactly that network.
    `negative`, a batch like `label`, takes the place of "no label" in the second call: chapter
    13's negative prompt (its prompts are token ids (n, L) where labels are (n,))."""
    if negative is None:
        negative = torch.full_like(label, network.null_label if null_label is None else null_label)

    def eps_at(x_t, t):
        if w == 0:
            return network(x_t, t, label)
        both = network(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([label, negative]))
        eps_cond, eps_uncond = both.chunk(2)
        return guided_eps(eps_cond, eps_uncond, w)

    return eps_at


# --- the reverse step every sampler here takes -------------------------------------------------

VARIANCES = ("beta", "posterior")   # the reverse step's variance sigma_t^2 (README, chapter 5)


def reverse_step(x_t, eps, t, schedule, z, variance="beta"):
    """x_{t-1} from x_t, DDPM's Algorithm 2 on `schedule` (a respaced one for fewer steps):
    mean mu_tilde(x_t, x0_hat) (ddpm.ddpm_mean), plus sigma_t z with sigma_t^2 = beta_t
    (variance="beta", the larger of DDPM's two choices) or sigma_tilde_t^2 (the posterior's, which
    on a respaced chain is DDIM with eta = 1). For t = 1, chapter 8's last step without noise: each
    pixel at the centre of the most likely level of the discrete decoder N(mu_theta(x_1, 1), beta_1)
    (pictures.most_likely_level; a respaced chain's step 1 is the original one, with its beta_1);
    or, with eps None, eq. 44's fixed kernel N(sqrt(1 - beta_1) x_1, beta_1 I), as chapters 3-7 end."""
    if t == 1:
        if eps is not None:
            mean = ddpm.ddpm_mean(x_t, eps, 1, schedule).cpu()
            return pictures.most_likely_level(mean, math.sqrt(float(schedule.beta[1]))).to(x_t)
        mean, _ = common.q_step(x_t, 1, schedule)
        return mean + math.sqrt(float(schedule.beta[1])) * z
    if variance == "beta":
        var = schedule.beta[t]
    elif variance == "posterior":
        var = common.posterior_coefficients(t, schedule, schedule.beta)[2]
    else:
        raise ValueError(f"variance must be one of {', '.join(VARIANCES)}, got {variance!r}")
    return ddpm.ddpm_mean(x_t, eps, t, schedule) + math.sqrt(float(var)) * z


def eps_or_none(eps_at, x_t, t, last_step_noise=False):
    """The network's eps at step t for the whole batch; None at t = 1 with last_step_noise (the
    fixed kernel, for a network trained on dequantised pixels), else the decoder needs it for its mean."""
    return None if t == 1 and last_step_noise else eps_at(x_t, _steps(t, x_t.shape[0], x_t.device))


def _noise(shape, generator, device):
    """N(0, I) draws made on the CPU, where seeded generators live: the same seed, the same
    noise on every device."""
    return torch.randn(shape, generator=generator).to(device)


@torch.no_grad()
def sample(eps_at, n, schedule, generator=None, device="cpu", variance="beta", last_step_noise=False):
    """Ancestral sampling of n images: x_T ~ N(0, I), then reverse_step for t = T..1, one noise
    draw z per step; the last step the decoder's most likely level, or with last_step_noise the fixed kernel."""
    shape = (n, 1, 8, 8)
    x = _noise(shape, generator, device)
    for t in range(schedule.T, 0, -1):
        x = reverse_step(x, eps_or_none(eps_at, x, t, last_step_noise), t, schedule,
                         _noise(shape, generator, device), variance)
    return x


def _steps(t, n, device):
    return torch.full((n,), t, dtype=torch.long, device=device)


# --- inpainting (README, chapter 10, "Filling in") -------------------------------------------

def make_mask(name, n, generator=None):
    """The known pixels (1) of n digits for a named mask: "lower" hides the lower half (rows
    4-7), "left" the left half, "centre" the centre 4 x 4, "random" 32 of the 64 pixels chosen
    afresh for each digit. Float (n, 1, 8, 8)."""
    mask = torch.ones(n, 1, 8, 8)
    if name == "lower":
        mask[..., 4:, :] = 0.0
    elif name == "left":
        mask[..., :, :4] = 0.0
    elif name == "centre":
        mask[..., 2:6, 2:6] = 0.0
    elif name == "random":
        order = torch.rand(n, 64, generator=generator).argsort(dim=1)
        mask = mask.reshape(n, 64).scatter(1, order[:, :32], 0.0).reshape(n, 1, 8, 8)
    else:
        raise ValueError(f"mask must be one of {', '.join(MASKS)}, got {name!r}")
    return mask


def known_pixels(x0, t, schedule, z):
    """The known pixels at step t as the replacement method draws them: from the forward chain,
    q(x_t | x0) = N(sqrt(alpha_bar_t) x0, (1 - alpha_bar_t) I), i.e. common.x_t_from_eps with
    eps = z. (Adding sqrt(beta_t) z to the previous step's known pixels without shrinking them
    by sqrt(1 - beta_t) would leave their mean at x0 and their variance too large.)"""
    return common.x_t_from_eps(x0, z, t, schedule)


def join(known, unknown, mask):
    """The known pixels where mask is 1, the model's elsewhere."""
    return mask * known + (1.0 - mask) * unknown


def jump_forward(x_prev, t_from, t_to, schedule, generator=None):
    """RePaint's jump: from step t_from back up to t_to > t_from along the forward chain, one
    q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I) at a time (common.q_step)."""
    x = x_prev
    for t in range(t_from + 1, t_to + 1):
        mean, _ = common.q_step(x, t, schedule)
        x = mean + torch.sqrt(common.at(schedule.beta, t)).to(x) * _noise(x.shape, generator, x.device)
    return x


def reconstruction_gradient(eps_at, x_t, t, schedule, x0, mask):
    """Reconstruction guidance's gradient (Chung et al. 2023, diffusion posterior sampling): the
    network's eps at x_t, and the gradient with respect to x_t, through the network, of
    ||mask * (x0_hat(x_t) - x0)||^2 per image, x0_hat = common.x0_from_eps. Returns
    (eps, gradient, the error ||.|| per image). t is one step (a number) for the whole batch."""
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        eps = eps_at(x, _steps(t, x.shape[0], x.device))
        error2 = (mask * (common.x0_from_eps(x, eps, t, schedule) - x0)).pow(2).flatten(1).sum(dim=1)
        gradient, = torch.autograd.grad(error2.sum(), x)
    return eps.detach(), gradient, error2.detach().sqrt()


def inpaint(eps_at, x0, mask, schedule, method="replacement", resample=1, jump=1, zeta=1.0,
            generator=None, trajectory=None, variance="beta", last_step_noise=False):
    """Complete the hidden pixels (mask 0) of the digits x0 (n, 1, 8, 8), sampling from T to 0.

    - "replacement": after each reverse step the known pixels are replaced by a draw of
      q(x_{t-1} | x0) (known_pixels), the model's pixels kept elsewhere (join);
    - "repaint": replacement, and every `jump` steps the chain jumps forward `jump` steps
      (jump_forward) and redoes them, `resample` passes in all (RePaint, Lugmayr et al. 2022);
    - "reconstruction": no replacement; after each reverse step, a step down the gradient of the
      known pixels' error of x0_hat (reconstruction_gradient), of length zeta / error per image
      (Chung et al.'s normalisation), the known pixels put in at the very end only.
    One noise draw z per step serves both the model's pixels and the known ones (they are
    different pixels), so with nothing known this is `sample` with the same seed (and the same
    last step, `last_step_noise`). `trajectory`, a dict, receives x_t for every t (after the last pass)."""
    if method not in INPAINTERS:
        raise ValueError(f"method must be one of {', '.join(INPAINTERS)}, got {method!r}")
    device = x0.device
    mask = mask.to(x0).expand_as(x0)
    passes, jump = (resample, jump) if method == "repaint" else (1, 1)
    x = _noise(x0.shape, generator, device)
    if trajectory is not None:
        trajectory[schedule.T] = x.clone()
    t_hi = schedule.T
    while t_hi > 0:
        t_lo = max(t_hi - jump, 0)
        for k in range(passes):
            if k > 0:
                x = jump_forward(x, t_lo, t_hi, schedule, generator)
            for t in range(t_hi, t_lo, -1):
                x = _step(eps_at, x, t, schedule, x0, mask, method, zeta, generator, variance, last_step_noise)
                if trajectory is not None:
                    trajectory[t - 1] = x.detach().clone()
        t_hi = t_lo
    return join(x0, x, mask) if method == "reconstruction" else x


def _step(eps_at, x_t, t, schedule, x0, mask, method, zeta, generator, variance, last_step_noise):
    """One step of `inpaint` from t to t - 1."""
    z = _noise(x_t.shape, generator, x_t.device)
    if method == "reconstruction" and t > 1:
        eps, gradient, error = reconstruction_gradient(eps_at, x_t, t, schedule, x0, mask)
        x_prev = reverse_step(x_t, eps, t, schedule, z, variance)
        return x_prev - (zeta / error.clamp_min(1e-8)).reshape(-1, 1, 1, 1) * gradient
    with torch.no_grad():
        x_prev = reverse_step(x_t, eps_or_none(eps_at, x_t, t, last_step_noise), t, schedule, z, variance)
    if method == "reconstruction":
        return x_prev
    return join(known_pixels(x0, t - 1, schedule, z), x_prev, mask)


# --- baselines and scores ---------------------------------------------------------------------

def mean_fill(x0, mask, train):
    """Baseline: the hidden pixels set to the training digits' mean pixel by pixel."""
    return join(x0, train.mean(dim=0, keepdim=True), mask)


def nearest_fill(x0, mask, train):
    """Baseline: the hidden pixels copied from the training digit nearest on the visible ones
    (squared distance over the known pixels of each digit's own mask)."""
    m = mask.expand_as(x0).flatten(1)
    a, b = x0.flatten(1), train.flatten(1)
    # ||m (a - b)||^2 = sum m a^2 - 2 (m a) . b + m . b^2, for every pair at once
    distance = (m * a ** 2).sum(1, keepdim=True) - 2.0 * (m * a) @ b.T + m @ (b ** 2).T
    return join(x0, train[distance.argmin(dim=1)], mask)


def within_class_spread(images, labels):
    """Mean Euclidean distance between two different images of the same label, averaged over the
    labels present: how varied the pictures of one digit are (diversity, README chapter 9)."""
    flat = images.reshape(images.shape[0], -1).double()
    spreads = []
    for c in torch.unique(torch.as_tensor(labels)):
        group = flat[torch.as_tensor(labels) == c]
        n = group.shape[0]
        if n > 1:
            spreads.append(torch.cdist(group, group).sum() / (n * (n - 1)))
    return float(torch.stack(spreads).mean())
