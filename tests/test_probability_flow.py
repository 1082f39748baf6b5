"""The probability-flow velocity of continuous.py against Song et al.'s form, written apart.

Song et al. (2021) write the variance-preserving diffusion as dx = -1/2 beta(t) x dt + sqrt(beta(t)) dW
and its probability-flow ODE as dx/dt = -1/2 beta(t) (x + grad log q_t(x)), with
alpha_bar(t) = exp(-integral_0^t beta). continuous.probability_flow_velocity gives dx/dlam in the log
SNR lam; by the chain rule the two must agree as dx/dt = v(x, lam(t)) dlam/dt. Everything on the
Song side is computed its own way: beta(t) linear as in their paper, lam(t) and dlam/dt by autograd
of log(alpha_bar / (1 - alpha_bar)), and the score by autograd of the exact Gaussian log-density
of q_t for Gaussian data; the code's side is fed the exact eps = E[eps | x_lam] of the same data.
A velocity of (sigma^2 / 2)(x + sigma^2 grad log q), as the README once displayed it, fails here.
"""
import pytest
import torch

import continuous

MEAN = torch.tensor([0.7, -0.4, 1.2], dtype=torch.float64)
COV = torch.tensor([[1.0, 0.5, 0.1], [0.5, 0.8, -0.3], [0.1, -0.3, 0.6]], dtype=torch.float64)
EYE = torch.eye(3, dtype=torch.float64)
BETA_MIN, BETA_MAX = 0.1, 20.0   # Song et al.'s VP schedule, t in [0, 1]


def song_beta(t):
    return BETA_MIN + t * (BETA_MAX - BETA_MIN)


def song_alpha_bar(t):
    """exp(-integral_0^t beta(s) ds) for the linear beta."""
    return torch.exp(-(BETA_MIN * t + 0.5 * (BETA_MAX - BETA_MIN) * t ** 2))


def song_score(x, t):
    """grad_x log q_t(x) by autograd of log N(x; sqrt(alpha_bar) MEAN, alpha_bar COV + (1 - alpha_bar) I)."""
    alpha_bar = song_alpha_bar(torch.tensor(t, dtype=torch.float64))
    q_t = torch.distributions.MultivariateNormal(alpha_bar.sqrt() * MEAN, alpha_bar * COV + (1 - alpha_bar) * EYE)
    x = x.detach().requires_grad_(True)
    (score,) = torch.autograd.grad(q_t.log_prob(x).sum(), x)
    return score


def lam_and_rate(t):
    """lam(t) = log(alpha_bar / (1 - alpha_bar)) and dlam/dt, by autograd."""
    t = torch.tensor(t, dtype=torch.float64, requires_grad=True)
    alpha_bar = song_alpha_bar(t)
    lam = torch.log(alpha_bar) - torch.log1p(-alpha_bar)
    (rate,) = torch.autograd.grad(lam, t)
    return float(lam.detach()), float(rate)


def exact_eps(x, lam):
    """E[eps | x_lam = x] for x0 ~ N(MEAN, COV), x_lam = a x0 + sigma eps: by Gaussian conditioning,
    Cov(eps, x_lam) = sigma I, so E[eps | x] = sigma (a^2 COV + sigma^2 I)^-1 (x - a MEAN)."""
    lam = torch.tensor(lam, dtype=torch.float64)
    a, sigma = torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()
    marginal = a ** 2 * COV + sigma ** 2 * EYE
    return sigma * torch.linalg.solve(marginal, (x - a * MEAN).T).T


@pytest.mark.parametrize("t", [0.02, 0.1, 0.3, 0.6, 0.95])
def test_probability_flow_velocity_is_song_et_als_ode_in_the_log_snr(t):
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.5
    song = -0.5 * song_beta(t) * (x + song_score(x, t))
    lam, rate = lam_and_rate(t)
    ours = continuous.probability_flow_velocity(exact_eps)(x, lam) * rate
    error = ((ours - song).abs().max() / song.abs().max()).item()
    assert error < 1e-9, f"at t = {t} (lam = {lam:.2f}) dx/dt differs from Song et al.'s by {error:.2e} (relative)"


def test_the_score_of_exact_eps_is_minus_eps_over_sigma():
    """continuous.score_from_eps of the exact eps is the autograd score of the exact density."""
    x = torch.randn(20, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for t in (0.05, 0.5):
        lam, _ = lam_and_rate(t)
        _, sigma = continuous.signal_and_noise(lam)
        score = continuous.score_from_eps(exact_eps(x, lam), sigma)
        assert torch.allclose(score, song_score(x, t), rtol=1e-10, atol=1e-10), (score - song_score(x, t)).abs().max()
