"""Fewer steps (README, chapter 6): a shorter chain along a sub-sequence of the steps, DDIM's
step, deterministic (eta = 0) or not, and Heun's second-order step, all with the same trained
eps-network; and DPM-Solver++(2M) (README, chapter 12), the multistep sampler Stable Diffusion's
users pick, with a deterministic chain for images of any shape.
"""
import torch

import common
import ddpm

SPACINGS = ("t", "log_snr")   # what a shorter sub-sequence of steps is spread evenly in


def sub_sequence(schedule, steps, spacing="t"):
    """`steps` of the steps 1..T, in the order a sampler visits them: decreasing from T to 1, spread
    evenly in t or in log-SNR (`spacing`). Each is the step nearest its even target, moved up
    just enough to keep the sequence strictly decreasing where targets crowd together."""
    T = schedule.T
    if not 2 <= steps <= T:
        raise ValueError(f"steps must be from 2 to T = {T}, got {steps}")
    if spacing == "t":
        targets = torch.linspace(1.0, float(T), steps, dtype=torch.float64)
    elif spacing == "log_snr":
        # log-SNR falls with t; interpolate t at evenly spaced log-SNR values between step 1 and T
        level = common.log_snr(schedule)[1:]
        wanted = torch.linspace(float(level[0]), float(level[-1]), steps, dtype=torch.float64)
        targets = torch.tensor([float(torch.argmin((level - w).abs())) + 1.0 for w in wanted])
    else:
        raise ValueError(f"spacing must be one of {', '.join(SPACINGS)}, got {spacing!r}")
    tau = []
    for k, target in enumerate(targets.round().long().tolist()):   # k = 0 is step 1, the last is T
        tau.append(min(max(target, tau[-1] + 1 if tau else 1), T - (steps - 1 - k)))
    return tau[::-1]


def respace(schedule, steps):
    """The chain that jumps along a decreasing sub-sequence `steps` = (tau_S = T, ..., tau_1 = 1):
    returns (respaced, t_of). `respaced` is a Schedule with S steps,
    beta'_k = 1 - alpha_bar_{tau_k} / alpha_bar_{tau_{k-1}} (tau_0 = 0, alpha_bar_0 = 1), so its
    alpha_bar'_k is alpha_bar_{tau_k}: the same marginals q(x_t | x0) at the steps it keeps.
    t_of[k] = tau_k is the original step of respaced step k (t_of[0] = 0), the t to ask the
    network about. Ending at tau_1 = 1 keeps beta'_1 = beta_1: the last step is still eq. 44's."""
    tau = torch.as_tensor(list(steps), dtype=torch.long)
    if len(tau) < 1 or int(tau[0]) != schedule.T or int(tau[-1]) != 1 or bool((tau[1:] >= tau[:-1]).any()):
        raise ValueError(f"a sub-sequence must decrease strictly from T = {schedule.T} to 1, got {tau.tolist()}")
    t_of = torch.cat([torch.zeros(1, dtype=torch.long), tau.flip(0)])
    alpha_bar = schedule.alpha_bar[t_of]
    beta = torch.cat([torch.zeros(1, dtype=torch.float64), 1.0 - alpha_bar[1:] / alpha_bar[:-1]])
    return common.schedule_from_beta(beta), t_of


def ddim_sigma(t, schedule, eta):
    """DDIM's noise level from step t to s = t - 1 of `schedule` (a respaced one for fewer steps):
    sigma = eta sqrt((1 - alpha_bar_s) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_s).
    eta = 0: no noise; eta = 1: sigma^2 is the posterior variance sigma_tilde_t^2."""
    alpha_bar_t, alpha_bar_s = common.at(schedule.alpha_bar, t), common.at(schedule.alpha_bar, t - 1)
    return eta * torch.sqrt((1.0 - alpha_bar_s) / (1.0 - alpha_bar_t) * (1.0 - alpha_bar_t / alpha_bar_s))


def ddim_mean(x_t, eps, t, schedule, eta=0.0):
    """The mean of DDIM's step from t to s = t - 1 given the noise estimate eps:
    sqrt(alpha_bar_s) x0_hat + sqrt(1 - alpha_bar_s - sigma^2) eps, x0_hat = common.x0_from_eps(x_t, eps, t),
    sigma = ddim_sigma(t, schedule, eta). For points (n, d), or for images of any shape when t is a number."""
    alpha_bar_s = common.at(schedule.alpha_bar, t - 1)
    direction = torch.sqrt((1.0 - alpha_bar_s - ddim_sigma(t, schedule, eta) ** 2).clamp_min(0.0))
    return torch.sqrt(alpha_bar_s).to(x_t) * common.x0_from_eps(x_t, eps, t, schedule) + direction.to(x_t) * eps


def ddim_step(x_t, eps, t, schedule, eta):
    """DDIM's step from t to s = t - 1 given the noise estimate eps, as a Gaussian (mean, covariance):
    x_s = ddim_mean(x_t, eps, t) + sigma z, sigma = ddim_sigma(t, schedule, eta)."""
    return ddim_mean(x_t, eps, t, schedule, eta), common.identity_times(ddim_sigma(t, schedule, eta) ** 2, x_t)


def heun_step(x_t, eps_at, t, schedule):
    """A second-order deterministic step from t to s = t - 1 (Heun's method, as in Karras et al. 2022).
    DDIM with eta = 0 is Euler's method for dy/dr = eps(x) in y = x / sqrt(alpha_bar) and
    r = sqrt((1 - alpha_bar) / alpha_bar); Heun takes that Euler step, asks eps_at(x, step) again
    at its end point, and steps with the average of the two slopes. Returns (mean, zero covariance)."""
    eps_t = eps_at(x_t, t)
    x_euler, zero = ddim_step(x_t, eps_t, t, schedule, 0.0)
    return ddim_step(x_t, 0.5 * (eps_t + eps_at(x_euler, t - 1)), t, schedule, 0.0)[0], zero


def respaced_analytic_variance(respaced, t_of, mean_sq_eps, x0_half_range=None):
    """Analytic-DPM's variance for every step of a respaced chain, a table indexed by its steps k:
    the formula (ddpm.analytic_variance) on the respaced schedule, with the network's statistic
    E||eps_theta||^2 read at the original step t_of[k] the network answers for. `mean_sq_eps` is
    indexed by the original steps (roll.eps_moments). Entry 1 holds the fixed last step's beta_1."""
    learned = torch.arange(2, respaced.T + 1)
    var = torch.zeros(respaced.T + 1, dtype=torch.float64)
    var[1] = respaced.beta[1]
    var[2:] = ddpm.analytic_variance(learned, respaced, mean_sq_eps[t_of[learned]].unsqueeze(1),
                                     x0_half_range).flatten()
    return var


def on_respaced_steps(network, t_of):
    """The network as a respaced chain sees it: asked about respaced step k, it answers for the
    original step t_of[k] it was trained on (respace gives t_of)."""
    return lambda x_t, k: network(x_t, t_of[torch.as_tensor(k).cpu()].to(x_t.device))


def ddim_reverse(network, schedule, eta, second_order=False):
    """DDIM as a reverse process (x_t, t) -> (mean, covariance), for sample_chain and kl_all_steps:
    ddim_step with the network's eps for t >= 2 (Heun's heun_step instead when second_order, except
    into step 1, where the network has no slope to give), and eq. 44's fixed kernel at t = 1, of
    which eta = 0 keeps the mean alone, so that the whole chain is deterministic."""
    if second_order and eta != 0:
        raise ValueError("Heun's steps are deterministic: second_order needs eta = 0")

    def eps_at(x, t):
        return network(x, common.learned_steps(t, x))[0]

    def reverse(x_t, t):
        if not torch.is_tensor(t) and t == 1:
            mean, cov = common.q_step(x_t, 1, schedule)
            return mean, (cov if eta > 0 else torch.zeros_like(cov))
        if second_order and int(torch.as_tensor(t).min()) > 2:
            return heun_step(x_t, eps_at, t, schedule)
        return ddim_step(x_t, eps_at(x_t, t), t, schedule, eta)

    return reverse


def network_calls(name, steps):
    """Network calls of a sampler of chapter 6 ("ddim_heun" or another) for `steps` steps: one
    per step but the fixed last; Heun's two, except its step into t = 1 (one)."""
    return 2 * steps - 3 if name == "ddim_heun" and steps > 2 else steps - 1


def steps_for_calls(name, calls, T):
    """For each wanted number of calls, the number of steps (2..T) whose calls come nearest."""
    possible = range(2, T + 1)
    chosen = [min(possible, key=lambda steps: (abs(network_calls(name, steps) - c), steps)) for c in calls]
    return sorted(set(chosen), key=chosen.index)


SOLVERS = ("ddim", "dpm++2m")   # the deterministic chains of images (chapter 12)


def dpm_solver_step(x_t, x0_hat, t, schedule, previous=None):
    """DPM-Solver++(2M)'s step from t to s = t - 1 (Lu et al. 2022, Algorithm 2), in the half
    log-SNR lambda = log(alpha / sigma), alpha = sqrt(alpha_bar), sigma = sqrt(1 - alpha_bar):
        x_s = (sigma_s / sigma_t) x_t + alpha_s (1 - e^{-h}) D,   h = lambda_s - lambda_t,
    the probability-flow ODE solved exactly for an x0-prediction held at D over the step. D is
    x0_hat at the first step (which makes it DDIM's step); after it, `previous` = the x0_hat of
    step t + 1, and D = (1 + 1/(2r)) x0_hat - 1/(2r) previous, r = (lambda_t - lambda_{t+1}) / h,
    the line through the last two predictions evaluated half-way: second order, one network call."""
    half_log_snr = 0.5 * common.log_snr(schedule)
    h = half_log_snr[t - 1] - half_log_snr[t]
    if previous is None:
        D = x0_hat
    else:
        r = float((half_log_snr[t] - half_log_snr[t + 1]) / h)
        D = (1.0 + 0.5 / r) * x0_hat - (0.5 / r) * previous
    alpha_bar_t, alpha_bar_s = schedule.alpha_bar[t], schedule.alpha_bar[t - 1]
    ratio = float(torch.sqrt((1.0 - alpha_bar_s) / (1.0 - alpha_bar_t)))
    return ratio * x_t + float(torch.sqrt(alpha_bar_s) * -torch.expm1(-h)) * D


@torch.no_grad()
def deterministic_chain(eps_at, x_T, schedule, steps, solver="ddim", record=None):
    """x0 from x_T along `steps` steps spread evenly in log SNR (sub_sequence, respace), without
    noise: DDIM's step (eta = 0) or DPM-Solver++(2M)'s for t >= 2, eq. 44's kernel's mean into
    t = 0, as ddim_reverse does. For images of any shape: eps_at(x, t) answers for original step t
    (a number). `record`, a list, receives x after every step."""
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    respaced, t_of = respace(schedule, sub_sequence(schedule, steps, "log_snr"))
    x, previous = x_T, None
    for k in range(respaced.T, 1, -1):
        eps = eps_at(x, int(t_of[k]))
        if solver == "ddim":
            x = ddim_mean(x, eps, k, respaced)
        else:
            x0_hat = common.x0_from_eps(x, eps, k, respaced)
            x, previous = dpm_solver_step(x, x0_hat, k, respaced, previous), x0_hat
        if record is not None:
            record.append(x)
    x = common.q_step(x, 1, respaced)[0]
    if record is not None:
        record.append(x)
    return x
