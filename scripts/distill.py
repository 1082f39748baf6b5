"""One step (README, chapter 14): progressive distillation (Salimans & Ho 2022). A student, a
copy of its teacher, learns to make in one deterministic DDIM jump the way the teacher makes in
two; each round halves the jumps, so five rounds take 32 network calls down to 1. Beside it, the
velocity v that the digits' teacher outputs (v_target, VAsEps) and consistency distillation
(Song et al. 2023), the chapter's route for the digits: one student that maps any point of the
teacher's path to its end, sampled with noise put back at renoise_times.

Everything is written with the signal and noise levels of a step t of the schedule,
alpha_t = sqrt(alpha_bar_t) and sigma_t = sqrt(1 - alpha_bar_t), with t = 0 the data itself
(alpha_bar_0 = 1): z_t = alpha_t x0 + sigma_t eps (common.x_t_from_eps). Points are (n, D):
D = 2 for the roll, 64 for a digit flattened (pictures.flat).
"""
import copy

import torch

import common
import ddim
import pictures
import runs


def log_snr_grid(schedule, calls):
    """The times a sampler with `calls` network calls visits: calls steps from T down, spread
    evenly in log SNR (ddim.sub_sequence), then 0, the data, where the last jump lands."""
    return ddim.sub_sequence(schedule, calls + 1, "log_snr")[:-1] + [0]


def signal_and_noise(t, schedule, like):
    """(alpha_t, sigma_t) = (sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)) in like's dtype and device,
    computed in float64; t one step or a tensor of steps (then columns (n, 1))."""
    alpha_bar = common.at(schedule.alpha_bar, t)
    return torch.sqrt(alpha_bar).to(like), torch.sqrt(1.0 - alpha_bar).to(like)


def ddim_jump(z_t, x0_hat, t, s, schedule):
    """DDIM's deterministic jump (eta = 0) from t to s < t, given a guess x0_hat of the data:
    keep the noise direction eps_hat = (z_t - alpha_t x0_hat) / sigma_t and put z_s together again,
    z_s = alpha_s x0_hat + sigma_s eps_hat. At s = 0 this is x0_hat itself."""
    alpha_t, sigma_t = signal_and_noise(t, schedule, z_t)
    alpha_s, sigma_s = signal_and_noise(s, schedule, z_t)
    return alpha_s * x0_hat + sigma_s * (z_t - alpha_t * x0_hat) / sigma_t


def distillation_target(z_t, z_end, t, end, schedule):
    """The x0_hat that makes one DDIM jump from z_t at t land on z_end at `end` (the teacher's
    end after two jumps): solve z_end = alpha_e x + (sigma_e / sigma_t)(z_t - alpha_t x) for x,
        x_tilde = (z_end - (sigma_e / sigma_t) z_t) / (alpha_e - (sigma_e / sigma_t) alpha_t).
    At end = 0 (sigma_e = 0, alpha_e = 1) it is z_end itself."""
    alpha_t, sigma_t = signal_and_noise(t, schedule, z_t)
    alpha_e, sigma_e = signal_and_noise(end, schedule, z_t)
    ratio = sigma_e / sigma_t
    return (z_end - ratio * z_t) / (alpha_e - ratio * alpha_t)


def truncated_snr_weight(t, schedule):
    """The loss's weight at step t: max(SNR_t, 1), SNR_t = alpha_bar_t / (1 - alpha_bar_t). Where
    SNR >= 1 this makes the x0 loss the eps loss (||eps error||^2 = SNR ||x0 error||^2); below,
    where an eps error is an x0 error times sigma / alpha, it keeps x0's error at weight 1."""
    alpha_bar = common.at(schedule.alpha_bar, t)
    return torch.clamp(alpha_bar / (1.0 - alpha_bar), min=1.0)


def predict_x0(network, z_t, t, schedule):
    """The network's guess of the data, x0_hat = (z_t - sigma_t eps_theta) / alpha_t
    (common.x0_from_eps); t one step or a tensor of steps, one per point."""
    steps = torch.as_tensor(t, device=z_t.device).expand(z_t.shape[0])
    return common.x0_from_eps(z_t, network(z_t, steps)[0], t, schedule)


class OnPoints(torch.nn.Module):
    """Chapter 8's UNet as the roll's eps-networks are called: on points (n, 64), returning
    (eps (n, 64), None) (pictures.eps_network), but a module, so a round can copy and train it."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, z, t):
        return pictures.eps_network(self.unet)(z, t)


def v_target(x0, eps, t, schedule):
    """The velocity v = alpha_t eps - sigma_t x0 (Salimans & Ho 2022, section 4) of z_t =
    alpha_t x0 + sigma_t eps: what a v-network learns to output in place of eps."""
    alpha, sigma = signal_and_noise(t, schedule, x0)
    return alpha * eps - sigma * x0


class VAsEps(torch.nn.Module):
    """A v-network (called as network(z, t) -> (v_hat, None)) answering as an eps-network, so that
    every jump, target and loss above takes it unchanged: eps_hat = alpha_t v_hat + sigma_t z_t,
    whose x0_hat = (z_t - sigma_t eps_hat) / alpha_t is alpha_t z_t - sigma_t v_hat. That x0_hat
    multiplies an error of v_hat by sigma_t <= 1, where an eps-network's multiplies an error of
    eps_hat by sigma_t / alpha_t (63 at the digits' t = T): why the digits need a v-teacher."""

    def __init__(self, network, schedule):
        super().__init__()
        self.network, self.schedule = network, schedule

    def forward(self, z, t):
        alpha, sigma = signal_and_noise(t, self.schedule, z)
        return alpha * self.network(z, t)[0] + sigma * z, None


@torch.no_grad()
def sample(network, grid, z_T, schedule):
    """Deterministic DDIM along a grid of times from T down to 0: one network call per jump.
    For the teacher on a coarse grid this is chapter 6's DDIM; for a student, its own sampler."""
    z = z_T
    for t, s in zip(grid, grid[1:]):
        z = ddim_jump(z, predict_x0(network, z, t, schedule), t, s, schedule)
    return z


def distillation_loss(student, teacher, x0, grid, generator, schedule):
    """One batch of the student's loss: a data point x0 noised to a time t of the student's grid
    (every other time of the teacher's `grid`), the teacher's two jumps t -> t' -> t'' from it, the
    target x_tilde of one jump t -> t'', and max(SNR_t, 1) ||x0_hat_student - x_tilde||^2."""
    k = torch.randint(0, (len(grid) - 1) // 2, (x0.shape[0],), generator=generator)
    grid = torch.as_tensor(grid)
    t, middle, end = grid[2 * k], grid[2 * k + 1], grid[2 * k + 2]
    z_t = common.x_t_from_eps(x0, torch.randn(x0.shape, generator=generator).to(x0), t, schedule)
    with torch.no_grad():
        z_middle = ddim_jump(z_t, predict_x0(teacher, z_t, t.to(x0.device), schedule), t, middle, schedule)
        z_end = ddim_jump(z_middle, predict_x0(teacher, z_middle, middle.to(x0.device), schedule), middle, end, schedule)
        target = distillation_target(z_t, z_end, t, end, schedule)
    error = (predict_x0(student, z_t, t.to(x0.device), schedule) - target).square().sum(1)
    return (truncated_snr_weight(t, schedule).to(x0).squeeze(-1) * error).mean()


def distill_round(teacher, grid, draw_x0, iters, lr, generator, schedule):
    """One round: a student copied from the teacher learns, by Adam with a cosine-decayed step size,
    to make each pair of the teacher's jumps on `grid` in one. draw_x0() gives a batch of data
    (n, D) on the networks' device. Returns (student, its grid, the loss of every iteration)."""
    if (len(grid) - 1) % 2:
        raise ValueError(f"a round halves the jumps: the grid needs an even number of them, got {len(grid) - 1}")
    student = copy.deepcopy(teacher).train()
    teacher = teacher.eval()
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    losses = []
    for i in range(iters):
        loss = distillation_loss(student, teacher, draw_x0(), grid, generator, schedule)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the distillation loss became {loss.item()} at iteration {i + 1}")
        runs.take_step(optimizer, loss, runs.cosine_decay(i, iters, lr))
        losses.append(loss.item())
    return student.eval(), grid[::2], losses


def consistency_end(network, z, t, schedule):
    """A consistency model's f(z_t, t), the end of the teacher's path through z_t (Song et al.
    2023): the network's x0_hat at t >= 1, and z itself at t = 0, the boundary f(x0, 0) = x0;
    t a tensor of steps, one per point."""
    x0_hat = predict_x0(network, z, t.clamp(min=1), schedule)
    return torch.where((t == 0).to(z.device).unsqueeze(-1), z, x0_hat)


def consistency_loss(student, target_network, teacher, x0, grid, generator, schedule):
    """One batch of consistency distillation (Song et al. 2023, Algorithm 2) on a grid T = grid[0]
    > ... > grid[-1] = 0: a data point x0 noised to a time t of the grid, the teacher's one DDIM jump
    from it to the next time s, and max(SNR_t, 1) ||f_student(z_t, t) - f_target(z_s, s)||^2: two
    points of one path must be sent to the same end. f_target is a moving average of the student."""
    k = torch.randint(0, len(grid) - 1, (x0.shape[0],), generator=generator)
    grid = torch.as_tensor(grid)
    t, s = grid[k].to(x0.device), grid[k + 1].to(x0.device)
    z_t = common.x_t_from_eps(x0, torch.randn(x0.shape, generator=generator).to(x0), t, schedule)
    with torch.no_grad():
        z_s = ddim_jump(z_t, predict_x0(teacher, z_t, t, schedule), t, s, schedule)
        target = consistency_end(target_network, z_s, s, schedule)
    error = (consistency_end(student, z_t, t, schedule) - target).square().sum(1)
    return (truncated_snr_weight(t, schedule).to(x0).squeeze(-1) * error).mean()


def consistency_distillation(teacher, grid, draw_x0, iters, lr, generator, schedule, target_decay):
    """One training run: a student copied from the teacher, Adam with a cosine-decayed step size on
    consistency_loss, its target network a moving average of it (decay growing to target_decay,
    runs.update_average). Returns (student, the loss of every iteration)."""
    student, target_network = copy.deepcopy(teacher).train(), copy.deepcopy(teacher).eval()
    teacher = teacher.eval()
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    losses = []
    for i in range(iters):
        loss = consistency_loss(student, target_network, teacher, draw_x0(), grid, generator, schedule)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the consistency loss became {loss.item()} at iteration {i + 1}")
        runs.take_step(optimizer, loss, runs.cosine_decay(i, iters, lr))
        runs.update_average(target_network, student, i, target_decay)
        losses.append(loss.item())
    return student.eval(), losses


def renoise_times(schedule, calls, grid_calls=8):
    """The times of a consistency student's `calls` calls: T, where the first call draws the sample
    whole, then the calls - 1 lowest-noise times of the log-SNR grid with `grid_calls` calls, where
    putting noise back redraws the details and keeps the digit (at high-noise times it redraws the
    digit). For the digits' 200 steps and 4 calls: T, 103, 51, 18."""
    if not 1 <= calls <= grid_calls:
        raise ValueError(f"calls must be from 1 to {grid_calls}, got {calls}")
    grid = log_snr_grid(schedule, grid_calls)[:-1]
    return grid[:1] + grid[grid_calls - calls + 1:]


@torch.no_grad()
def consistency_sample(network, times, z_T, schedule, generator):
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1), one network call per time:
    the end f(z_T, T) at times[0] = T, then, at each further time t, that end noised again to t,
    z_t = alpha_t x + sigma_t eps, and its end taken anew."""
    steps = lambda t: torch.full((z_T.shape[0],), t, device=z_T.device)  # noqa: E731
    x = consistency_end(network, z_T, steps(times[0]), schedule)
    for t in times[1:]:
        eps = torch.randn(x.shape, generator=generator).to(x)
        x = consistency_end(network, common.x_t_from_eps(x, eps, t, schedule), steps(t), schedule)
    return x
