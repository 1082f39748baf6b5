"""Fewer steps (README, chapter 6): a shorter chain along a sub-sequence of the steps, DDIM's
step, deterministic (eta = 0) or not, and Heun's second-order step, all with the same trained
eps-network.
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


def ddim_step(x_t, eps, t, schedule, eta):
    """DDIM's step from t to s = t - 1 given the noise estimate eps, as a Gaussian (mean, covariance):
    x_s = sqrt(alpha_bar_s) x0_hat + sqrt(1 - alpha_bar_s - sigma^2) eps + sigma z,
    x0_hat = common.x0_from_eps(x_t, eps, t), sigma = ddim_sigma(t, schedule, eta)."""
    alpha_bar_s = common.at(schedule.alpha_bar, t - 1)
    sigma = ddim_sigma(t, schedule, eta)
    direction = torch.sqrt((1.0 - alpha_bar_s - sigma ** 2).clamp_min(0.0))
    mean = torch.sqrt(alpha_bar_s).to(x_t) * common.x0_from_eps(x_t, eps, t, schedule) + direction.to(x_t) * eps
    return mean, common.identity_times(sigma ** 2, x_t)


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
