"""The shared math of the walkthrough: the data, the schedule, the Gaussian formulas, the reverse
model, the bound K and its ceilings, sampling, checkpoints, and the command-line helpers.

Conventions, kept in every script and test:
- x0 is a data point; x_t is the point after t forward (noising) steps.
- t is 1-indexed as in the paper: t = 1..T. Arrays over steps have T + 1 entries and are
  indexed by t itself; entry 0 holds the t = 0 convention (beta_0 = 0, alpha_bar_0 = 1).
- Points are tensors of shape (n, 2); variances are per coordinate (diagonal Gaussians).
- Everything in nats; divide by ln 2 for bits (`nats_to_bits`).
"""
import argparse
import math
import os
import pathlib
import tempfile

import matplotlib

matplotlib.use("Agg")  # figures are written to files, never shown: no screen needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

T = 40          # number of diffusion steps the paper used for the Swiss roll
BETA_1 = 1e-5   # first step's variance, fixed; it sets the ceiling on K (README, chapter 3)
BETA_T = 0.3    # last step's variance (README, chapter 1: the schedule)
SCHEDULE_POWER = 1.7  # > 1 keeps beta_t small for longer: more steps where the roll's detail is
D = 2           # dimension of a data point

# Exact mean and standard deviation of the roll's two coordinates (README, chapter 1).
# The means are closed-form integrals over the angle: 2 and 2 / (3 pi); the standard deviations
# come from numerical quadrature. tests/test_data.py recomputes them by Simpson's rule.
ROLL_MEAN = (2.0, 2.0 / (3.0 * math.pi))
ROLL_STD = (6.623014529298816, 6.9512077956377105)
ROLL_ANGLE = (1.5 * math.pi, 4.5 * math.pi)   # the roll's angle a runs over this interval
HELDOUT_SEED = 150303585                       # the held-out set's own seed (the arXiv number)


# --- data -------------------------------------------------------------------------------

def roll_angle_to_point(a):
    """Standardised point of the roll at angle a: ((a cos a, a sin a) - ROLL_MEAN) / ROLL_STD."""
    x = (a * torch.cos(a) - ROLL_MEAN[0]) / ROLL_STD[0]
    y = (a * torch.sin(a) - ROLL_MEAN[1]) / ROLL_STD[1]
    return torch.stack([x, y], dim=-1)


def swiss_roll(n, generator=None):
    """n points of the noiseless Swiss roll, angle a = 1.5 pi (1 + 2u) with u ~ U(0, 1)."""
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    a = ROLL_ANGLE[0] + (ROLL_ANGLE[1] - ROLL_ANGLE[0]) * u
    return roll_angle_to_point(a).float()


def heldout_roll(n):
    """The held-out set: n roll points drawn from their own seed, never seen in training."""
    return swiss_roll(n, torch.Generator().manual_seed(HELDOUT_SEED))


# --- schedule ---------------------------------------------------------------------------

def make_beta(T=T, beta_1=BETA_1, beta_T=BETA_T, power=SCHEDULE_POWER):
    """beta_t for t = 0..T (beta_0 = 0), rising from beta_1 to beta_T on a log scale:
    log beta_t = log beta_1 + ((t - 1) / (T - 1))^power * log(beta_T / beta_1)."""
    s = (torch.arange(T, dtype=torch.float64) / (T - 1)) ** power
    beta = beta_1 * (beta_T / beta_1) ** s
    return torch.cat([torch.zeros(1, dtype=torch.float64), beta])


def alpha_bar_from_beta(beta):
    """alpha_bar_t = prod_{s <= t} (1 - beta_s), with alpha_bar_0 = 1."""
    return torch.cumprod(1.0 - beta, dim=0)


# --- Gaussians --------------------------------------------------------------------------

def at(table, t):
    """Entry t of a per-step table; for a tensor of t's (one per point), a column of entries.

    Tables stay float64 on the CPU: 1 - alpha_bar_1 is 1e-5, and float32 would lose a percent
    of it, so each formula is evaluated in float64 and only its result is cast to the points'
    dtype and device (`.to(x)`).
    """
    if torch.is_tensor(t):
        return table[t.cpu()].unsqueeze(-1)
    return table[t]


def q_step(x_prev, t, beta):
    """q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I): returns (mean, variance)."""
    beta_t = at(beta, t)
    return (torch.sqrt(1.0 - beta_t).to(x_prev) * x_prev,
            beta_t.to(x_prev) * torch.ones_like(x_prev))


def q_closed_form(x0, t, alpha_bar):
    """q(x_t | x0) = N(sqrt(alpha_bar_t) x0, (1 - alpha_bar_t) I): returns (mean, variance)."""
    alpha_bar_t = at(alpha_bar, t)
    return (torch.sqrt(alpha_bar_t).to(x0) * x0,
            (1.0 - alpha_bar_t).to(x0) * torch.ones_like(x0))


def q_posterior(x0, x_t, t, beta, alpha_bar):
    """q(x_{t-1} | x_t, x0) = N(mu_tilde, sigma_tilde^2 I), the forward chain run backwards:
    mu_tilde = (sqrt(alpha_bar_{t-1}) beta_t x0 + sqrt(alpha_t) (1 - alpha_bar_{t-1}) x_t) / (1 - alpha_bar_t),
    sigma_tilde^2 = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t). Returns (mean, variance)."""
    beta_t, alpha_bar_t, alpha_bar_prev = at(beta, t), at(alpha_bar, t), at(alpha_bar, t - 1)
    coef_x0 = torch.sqrt(alpha_bar_prev) * beta_t / (1.0 - alpha_bar_t)
    coef_xt = torch.sqrt(1.0 - beta_t) * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t)
    var = beta_t * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t)
    mean = coef_x0.to(x0) * x0 + coef_xt.to(x0) * x_t
    return mean, var.to(x0) * torch.ones_like(x0)


def reverse_from_x0_moments(x0_mean, x0_var, x_t, t, beta, alpha_bar):
    """q(x_{t-1} | x_t) when x0 is known only through its mean and variance given x_t (README,
    chapter 2): the posterior averaged over x0, with mean mu_tilde(x_t, E[x0 | x_t]) and variance
    sigma_tilde_t^2 + c_t^2 Var(x0 | x_t), where c_t = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t)
    is x0's weight in mu_tilde. Returns (mean, variance)."""
    mean, posterior_var = q_posterior(x0_mean, x_t, t, beta, alpha_bar)
    c_t = torch.sqrt(at(alpha_bar, t - 1)) * at(beta, t) / (1.0 - at(alpha_bar, t))
    return mean, posterior_var + (c_t ** 2).to(x_t) * x0_var


def sample_gaussian(mean, var, generator=None):
    """One draw from N(mean, diag var). The noise is drawn on the CPU, where seeded generators
    live, so the same seed gives the same noise on every device."""
    noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
    return mean + torch.sqrt(var) * noise


def kl_gaussian(mean_q, var_q, mean_p, var_p):
    """KL(N(mean_q, var_q) || N(mean_p, var_p)) of diagonal Gaussians, summed over coordinates:
    sum_i [ 1/2 log(var_p / var_q) + (var_q + (mean_q - mean_p)^2) / (2 var_p) - 1/2 ]."""
    per_coordinate = 0.5 * (torch.log(var_p / var_q) + (var_q + (mean_q - mean_p) ** 2) / var_p - 1.0)
    return per_coordinate.sum(dim=-1)


def gaussian_entropy(var, d=D):
    """Entropy of N(m, var I) in d dimensions: d/2 log(2 pi e var)."""
    return 0.5 * d * math.log(2.0 * math.pi * math.e * float(var))


def nats_to_bits(nats):
    """Convert nats to bits: divide by ln 2."""
    return nats / math.log(2.0)


# --- device and seed --------------------------------------------------------------------

def available_devices():
    """The devices this machine can run on, best first."""
    devices = []
    if torch.cuda.is_available():
        devices.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return devices + ["cpu"]


def pick_device(name="auto"):
    """`auto` picks cuda, then mps, then cpu; a named device must be available here."""
    devices = available_devices()
    if name == "auto":
        return torch.device(devices[0])
    if name.split(":")[0] not in devices:
        raise ValueError(f"device '{name}' is not available here; available: {', '.join(devices)}")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ValueError(f"device '{name}' is not a device name; available: {', '.join(devices)}")


def seed_everything(seed):
    """Seed torch and numpy so the same --seed gives the same numbers and figures."""
    torch.manual_seed(seed)
    np.random.seed(seed)


# --- command line, files and figures ------------------------------------------------------

ROOT = pathlib.Path(__file__).resolve().parent.parent
IMAGES = ROOT / "images"     # figures the README shows (committed)
OUTPUTS = ROOT / "outputs"   # weights and samples (git-ignored, regenerated)
AXIS_LIMIT = 2.5             # the paper's Figure 1 shows about -2..2; the roll reaches +-2.1


def whole_number(minimum, maximum=None):
    """An argparse type: a whole number from minimum (to maximum, if given)."""
    allowed = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number {allowed}, got '{text}'")
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be a whole number {allowed}, got {value}")
        return value

    return parse


positive_int = whole_number(1)
seed_int = whole_number(0, 2 ** 32 - 1)  # the range numpy's seed accepts


def positive_float(text):
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got '{text}'")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def add_standard_args(parser, seed=0):
    """The options every chapter has: --seed, --device and --images (where figures go)."""
    parser.add_argument("--seed", type=seed_int, default=seed, help="random seed (default: %(default)s)")
    parser.add_argument("--device", default="auto",
                        help="auto (cuda, then mps, then cpu), cpu, cuda or mps (default: auto)")
    parser.add_argument("--images", type=pathlib.Path, default=IMAGES,
                        help="folder for the figures (default: the repository's images/)")


def parse_and_prepare(parser):
    """The start of every chapter: parse the command line, check --device and the --images
    folder before any work, and seed everything. Returns (args, device, generator), the
    generator seeded with --seed for the random draws the chapter makes on the CPU."""
    args = parser.parse_args()
    device = device_or_exit(parser, args.device)
    writable_dir_or_exit(parser, args.images, "figures")
    seed_everything(args.seed)
    return args, device, torch.Generator().manual_seed(args.seed)


def device_or_exit(parser, name):
    """pick_device, turning an unavailable device into one clear argparse error."""
    try:
        return pick_device(name)
    except ValueError as error:
        parser.error(str(error))


def output_file_or_exit(parser, path, what):
    """Check, before any work, that a file can be written at path (its folder is writable and
    path is not a folder), so a long run is never lost at the moment of saving."""
    writable_dir_or_exit(parser, path.parent, what)
    if path.is_dir():
        parser.error(f"cannot write {what} to {path}: it is a folder; give a file name, "
                     f"e.g. {path / ('model.pt' if path.suffix != '.npy' else 'samples.npy')}")


def writable_dir_or_exit(parser, folder, what):
    """Create `folder` if needed and check it can be written, before any work is done."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        parser.error(f"cannot write {what} to {folder}: {error.strerror or error}")


def replace_atomically(path, write):
    """Call write(temporary_path) in path's folder, then rename over path: never half a file."""
    path = pathlib.Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(temporary)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes files private; give the usual mode
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def save_figure(fig, path):
    """Save a matplotlib figure atomically and close it."""
    replace_atomically(path, lambda temporary: fig.savefig(temporary, dpi=110))
    plt.close(fig)


def plot_points(ax, x, title):
    """Scatter (n, 2) points on the walkthrough's fixed square axes."""
    x = x.detach().cpu().numpy()
    ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.5, color="tab:blue", rasterized=True)
    ax.set_xlim(-AXIS_LIMIT, AXIS_LIMIT)
    ax.set_ylim(-AXIS_LIMIT, AXIS_LIMIT)
    ax.set_aspect("equal")
    ax.set_title(title)


# --- the reverse model p(x_{t-1} | x_t) ---------------------------------------------------

class ReverseModel(torch.nn.Module):
    """The network behind p(x_{t-1} | x_t) (README, chapter 2): x_t and t in, four numbers out,
    two for the noise estimate eps and two for the log of a variance scale.

    One MLP serves every step, as in the paper; what is particular to step t is a learned bias
    added to each hidden layer (rows indexed by t itself; rows 0 and 1 are never used)."""

    def __init__(self, T=T, hidden=128, depth=3, n_frequencies=32):
        super().__init__()
        self.config = {"T": T, "hidden": hidden, "depth": depth, "n_frequencies": n_frequencies}
        # Random Fourier features sin(x B), cos(x B), B ~ N(0, (2 pi)^2): they help a small MLP
        # draw sharp shapes, and the roll's arms must be located to within the noise of t = 2,
        # sqrt(2e-5) = 0.005 wide. Stored with the weights, so a checkpoint carries its B.
        self.register_buffer("frequencies", 2.0 * math.pi * torch.randn(D, n_frequencies))
        sizes = [D + 2 * n_frequencies] + [hidden] * depth
        self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.step_bias = torch.nn.Parameter(torch.zeros(depth, T + 1, hidden))
        with torch.no_grad():
            self.step_bias[0].normal_(0.0, 0.5)  # different steps start from different features
        self.output = torch.nn.Linear(hidden, 2 * D)
        torch.nn.init.zeros_(self.output.weight)  # start at eps = 0 and the Gaussian-data variance
        torch.nn.init.zeros_(self.output.bias)

    def forward(self, x_t, t):
        angles = x_t @ self.frequencies
        h = torch.cat([x_t, torch.sin(angles), torch.cos(angles)], dim=1)
        for layer, bias in zip(self.layers, self.step_bias):
            h = torch.nn.functional.silu(layer(h) + bias[t])
        return self.output(h)


def p_reverse(model, x_t, t, beta, alpha_bar):
    """p(x_{t-1} | x_t) = N(mean, diag var), for one step t or a tensor of steps t >= 2 (one per point).

    For t >= 2 it is the posterior q(x_{t-1} | x_t, x0) with x0 replaced by the network's guess,
    which is what the true reverse step is when x0 is uncertain given x_t (README, chapter 2):
      x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t),
      mean = mu_tilde(x_t, x0_hat),  var = sigma_tilde_t^2 + c_t^2 (1 - alpha_bar_t) exp(v),
    where c_t = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) is x0's weight in mu_tilde and
    (1 - alpha_bar_t) exp(v) the network's variance of x0 given x_t. For t = 1 it is the fixed
    kernel N(sqrt(1 - beta_1) x_1, beta_1 I) (paper eq. 44).
    """
    if not torch.is_tensor(t) and t == 1:
        return q_step(x_t, 1, beta)  # the fixed last step, never learned (eq. 44)
    t = torch.as_tensor(t, device=x_t.device).expand(x_t.shape[0])
    if bool((t < 2).any()):
        raise ValueError("the network only models steps t >= 2; t = 1 is the fixed kernel")
    out = model(x_t, t)
    eps, v = out[:, :D], out[:, D:]
    alpha_bar_t = at(alpha_bar, t)
    x0_hat = (x_t - torch.sqrt(1.0 - alpha_bar_t).to(x_t) * eps) / torch.sqrt(alpha_bar_t).to(x_t)
    x0_var = (1.0 - alpha_bar_t).to(x_t) * torch.exp(v)
    return reverse_from_x0_moments(x0_hat, x0_var, x_t, t, beta, alpha_bar)


def reverse_of(model, beta, alpha_bar):
    """The reverse process of a trained network, as a function (x_t, t) -> (mean, variance)."""
    return lambda x_t, t: p_reverse(model, x_t, t, beta, alpha_bar)


@torch.no_grad()
def sample_chain(reverse, n, T=T, generator=None, device="cpu"):
    """Ancestral sampling: x_T ~ N(0, I), then x_{t-1} ~ p(x_{t-1} | x_t) for t = T, ..., 1.

    Returns the whole trajectory, a list of T + 1 tensors (n, 2) indexed by t: trajectory[0] is
    x0, the samples. Every step is applied, the fixed last one p(x0 | x1) included."""
    trajectory = [None] * (T + 1)
    trajectory[T] = torch.randn(n, D, generator=generator).to(device)
    for t in range(T, 0, -1):
        mean, var = reverse(trajectory[t], t)
        noise = torch.randn(n, D, generator=generator).to(device)
        trajectory[t - 1] = mean + torch.sqrt(var) * noise
    return trajectory


# --- the bound K (paper eq. 14) -----------------------------------------------------------

def entropy_terms(beta, alpha_bar):
    """H_q(X_T | X_0) - H_q(X_1 | X_0) - H_p(X_T): the part of K the reverse model cannot change."""
    T = len(beta) - 1
    return (gaussian_entropy(1.0 - alpha_bar[T]) - gaussian_entropy(beta[1])
            - gaussian_entropy(1.0))


def kl_terms(reverse, x0, t, beta, alpha_bar, generator=None):
    """KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t)) per point, with x_t ~ q(x_t | x0).

    `reverse(x_t, t)` returns the (mean, variance) of p(x_{t-1} | x_t): any reverse process,
    the trained network (see `reverse_of`) or, in the tests, one known in closed form."""
    x_t = sample_gaussian(*q_closed_form(x0, t, alpha_bar), generator)
    mean_q, var_q = q_posterior(x0, x_t, t, beta, alpha_bar)
    mean_p, var_p = reverse(x_t, t)
    return kl_gaussian(mean_q, var_q, mean_p, var_p)


@torch.no_grad()
def bound_per_step(reverse, x0, beta, alpha_bar, generator=None):
    """Every KL term of K for each point, t = 2..T summed exactly: a tensor (n, T + 1) whose
    columns 0 and 1 are zero (no KL at t = 0; t = 1 is the fixed kernel of eq. 44)."""
    T = len(beta) - 1
    kl = torch.zeros(x0.shape[0], T + 1, dtype=torch.float64)
    for t in range(2, T + 1):
        steps = torch.full((x0.shape[0],), t, dtype=torch.long, device=x0.device)
        kl[:, t] = kl_terms(reverse, x0, steps, beta, alpha_bar, generator).double().cpu()
    return kl


def bound_K(kl, beta, alpha_bar):
    """K = - sum_{t=2..T} KL_t + H_q(X_T | X_0) - H_q(X_1 | X_0) - H_p(X_T), per point (nats)."""
    return entropy_terms(beta, alpha_bar) - kl.sum(dim=1)


def null_log_likelihood(d=D):
    """L_null: mean log-likelihood of unit-variance data under N(0, I), -d/2 log(2 pi e) nats."""
    return -0.5 * d * math.log(2.0 * math.pi * math.e)


def ceiling(beta_1=BETA_1, n_angles=100_000):
    """The best K any model can reach on the noiseless roll (README, chapter 3), in nats:
    E[log p_arc(x0)] - 1/2 log(2 pi beta_1), the density along the curve times a Gaussian of
    variance beta_1 across it. p_arc(a) = p(a) / |d x0 / d a| with p(a) = 1 / (3 pi); the
    expectation over a is a midpoint rule."""
    a = ROLL_ANGLE[0] + (ROLL_ANGLE[1] - ROLL_ANGLE[0]) * (torch.arange(n_angles, dtype=torch.float64) + 0.5) / n_angles
    speed = torch.hypot((torch.cos(a) - a * torch.sin(a)) / ROLL_STD[0],
                        (torch.sin(a) + a * torch.cos(a)) / ROLL_STD[1])
    log_p_arc = -math.log(ROLL_ANGLE[1] - ROLL_ANGLE[0]) - torch.log(speed)
    return log_p_arc.mean().item() - 0.5 * math.log(2.0 * math.pi * beta_1)


def ceiling_of_K(beta_1=BETA_1):
    """The best K itself can reach (README, chapter 3), in nats: ceiling(beta_1) - (d - 1) / 2.
    With p(x0 | x1) fixed to a Gaussian of variance beta_1, K pays E[|x0 - sqrt(1 - beta_1) x1|^2]
    / (2 beta_1) = 1/2 nat per direction across the curve that the ceiling does not: the best K
    is -H(X_1) = E[log p_arc] - 1/2 log(2 pi e beta_1) in the limit of many small steps."""
    return ceiling(beta_1) - 0.5 * (D - 1)


@torch.no_grad()
def bayes_optimal_reverse(beta, alpha_bar, n_curve=20_000, chunk=500):
    """The best Gaussian reverse process for the roll, by brute-force Bayes over n_curve points
    of the curve (equal steps in angle, so equal prior weights): p(x_{t-1} | x_t) =
    N(mu_tilde(x_t, E[x0 | x_t]), sigma_tilde^2 + c_t^2 Var(x0 | x_t)), the true reverse step's
    mean and variance (README, chapter 2). A yardstick for training: far too slow to sample with.
    Returns a function (x_t, t) -> (mean, variance) with one t for all points."""
    a = ROLL_ANGLE[0] + (ROLL_ANGLE[1] - ROLL_ANGLE[0]) * (torch.arange(n_curve, dtype=torch.float64) + 0.5) / n_curve
    curve = roll_angle_to_point(a)

    def reverse(x_t, t):
        t = int(torch.as_tensor(t).flatten()[0])
        if t == 1:
            return q_step(x_t, 1, beta)
        alpha_bar_t = float(alpha_bar[t])
        x_t64 = x_t.double().cpu()
        mean_x0, var_x0 = [], []
        for part in x_t64.split(chunk):
            # q(x0 | x_t) over the curve points: prior weights equal, likelihood q(x_t | x0)
            weight = torch.softmax(-torch.cdist(part, math.sqrt(alpha_bar_t) * curve) ** 2
                                   / (2.0 * (1.0 - alpha_bar_t)), dim=1)
            mean_x0.append(weight @ curve)
            var_x0.append((weight @ curve ** 2 - mean_x0[-1] ** 2).clamp_min(0.0))
        mean_x0, var_x0 = torch.cat(mean_x0), torch.cat(var_x0)
        mean, var = reverse_from_x0_moments(mean_x0, var_x0, x_t64, t, beta, alpha_bar)
        return mean.to(x_t), var.to(x_t)

    return reverse


# --- checkpoints ----------------------------------------------------------------------------

CHECKPOINT_FORMAT = "diffusion-walkthrough checkpoint v1"
DEFAULT_CHECKPOINT = OUTPUTS / "model.pt"


class CheckpointError(Exception):
    """A checkpoint that is missing, unreadable, not ours, or made for other settings."""


def save_checkpoint(path, model, beta, args, iteration, optimizer=None):
    """Write the weights, the schedule, the data constants and the run's arguments atomically.

    Everything is plain tensors, numbers and strings, so it loads with weights_only=True."""
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "model_config": dict(model.config),
        "model_state": model.state_dict(),
        "beta": beta.detach().cpu().double(),
        "T": len(beta) - 1,
        "beta_1": float(beta[1]),
        "roll_mean": list(ROLL_MEAN),
        "roll_std": list(ROLL_STD),
        "args": {key: (str(value) if isinstance(value, pathlib.Path) else value)
                 for key, value in vars(args).items()},
        "iteration": iteration,
        "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
    }
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(path, lambda temporary: torch.save(checkpoint, temporary))


def load_checkpoint(path, device="cpu"):
    """Load a checkpoint written by save_checkpoint: returns (model, beta, checkpoint).

    Raises CheckpointError with one line that names the problem and what to run instead."""
    path = pathlib.Path(path)
    retrain = "run `python scripts/03_train.py` to make one"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: {retrain}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated file, random bytes, pickled code: all unreadable
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated, corrupt or not a "
                              f"torch file: {type(error).__name__}): {retrain}")
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is a torch file but not a checkpoint of this walkthrough: {retrain}")
    expected = {"T": T, "beta_1": BETA_1, "roll_mean": list(ROLL_MEAN), "roll_std": list(ROLL_STD),
                "beta": make_beta()}
    for key, value in expected.items():
        saved = checkpoint.get(key)
        same = (torch.is_tensor(saved) and saved.shape == value.shape and torch.allclose(saved, value)
                if torch.is_tensor(value) else saved == value)
        if not same:
            raise CheckpointError(f"{path} was made with another {key} than this code uses: {retrain} again")
    try:
        model = ReverseModel(**checkpoint["model_config"])
        model.load_state_dict(checkpoint["model_state"])
    except (KeyError, TypeError, RuntimeError) as error:
        raise CheckpointError(f"{path} holds a model of another shape than this code builds "
                              f"({type(error).__name__}): {retrain} again")
    return model.to(device).eval(), checkpoint["beta"], checkpoint
