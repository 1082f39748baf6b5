"""Chapter 9's inpainting samplers held to the law they should reach (issue 27, item 6).

For Gaussian data x0 ~ N(MU, SIGMA) the exact noise estimate is known at every step,
E[eps | x_t] = sqrt(1 - alpha_bar_t) (alpha_bar_t SIGMA + (1 - alpha_bar_t) I)^-1 (x_t - sqrt(alpha_bar_t) MU),
and so is what inpainting should produce: the hidden pixels h given the visible ones v are
N(MU_h + SIGMA_hv SIGMA_vv^-1 (v - MU_v), SIGMA_hh - SIGMA_hv SIGMA_vv^-1 SIGMA_vh) (Gaussian
conditioning, computed here apart from the code). Each method of guidance.inpaint completes the
same visible pixels N times with the exact eps; the completions' mean and covariance are held
against that law by the KL divergence of their fitted Gaussian from it. The "images" are 1 x 4:
two visible pixels, two hidden, correlated with them, so a sampler that ignores the visible
pixels is far off. The data are continuous, so the chains end on eq. 44's kernel (last_step_noise),
not on the discrete decoder's levels of the digits. Measured (N = 3,000, T = 50): replacement 1.8
nats, RePaint with 3 and 10 passes 0.34 and 0.03, reconstruction guidance 0.08 (zeta = 1), the
unguided chain 14.
"""
import math

import pytest
import torch

import common
import guidance

T = 50
SCHEDULE = common.make_schedule(T, 1e-4, -8.0)
N = 3000
FACTOR = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.8, 0.6, 0.0, 0.0], [0.7, 0.3, 0.4, 0.0], [0.5, -0.6, 0.2, 0.3]],
                      dtype=torch.float64)
SIGMA = FACTOR @ FACTOR.T
MU = torch.tensor([0.3, -0.2, 0.1, 0.4], dtype=torch.float64)
VISIBLE, HIDDEN = [0, 1], [2, 3]
V = torch.tensor([1.2, 1.5], dtype=torch.float64)      # the visible pixels' values, far from their mean
MASK = torch.tensor([1.0, 1.0, 0.0, 0.0]).reshape(1, 1, 1, 4)


def exact_eps(x_t, t):
    """E[eps | x_t] of the Gaussian data, as guidance.inpaint calls an eps-network (t one step per image)."""
    alpha_bar = float(SCHEDULE.alpha_bar[int(t.reshape(-1)[0])])
    marginal = alpha_bar * SIGMA + (1.0 - alpha_bar) * torch.eye(4, dtype=torch.float64)
    x = x_t.reshape(len(x_t), 4).double()
    eps = math.sqrt(1.0 - alpha_bar) * torch.linalg.solve(marginal, (x - math.sqrt(alpha_bar) * MU).T).T
    return eps.reshape(x_t.shape).to(x_t.dtype)


def conditional_law():
    """Mean and covariance of the hidden pixels given the visible ones equal V."""
    s_vv, s_hv, s_hh = SIGMA[VISIBLE][:, VISIBLE], SIGMA[HIDDEN][:, VISIBLE], SIGMA[HIDDEN][:, HIDDEN]
    return (MU[HIDDEN] + s_hv @ torch.linalg.solve(s_vv, V - MU[VISIBLE]),
            s_hh - s_hv @ torch.linalg.solve(s_vv, s_hv.T))


def the_digit():
    x0 = torch.zeros(N, 1, 1, 4)
    x0[..., VISIBLE] = V.float()
    return x0


def inpaint(method, resample=1, zeta=1.0, trajectory=None, seed=0):
    return guidance.inpaint(exact_eps, the_digit(), MASK, SCHEDULE, method, resample=resample, jump=1, zeta=zeta,
                            generator=torch.Generator().manual_seed(seed), trajectory=trajectory, last_step_noise=True)


def kl_from_the_law(completed):
    """KL(N(fitted to the completions' hidden pixels) || the conditional law), nats."""
    hidden = completed.reshape(N, 4)[:, HIDDEN].double()
    mean, cov = hidden.mean(0), torch.cov(hidden.T)
    law_mean, law_cov = conditional_law()
    return float(common.kl_gaussian(mean[None], cov[None], law_mean[None], law_cov[None]))


@pytest.fixture(scope="module")
def kl():
    """The KL of each sampler's completions, computed once for the tests below."""
    return {"replacement": kl_from_the_law(inpaint("replacement")),
            "repaint 3": kl_from_the_law(inpaint("repaint", resample=3)),
            "repaint 10": kl_from_the_law(inpaint("repaint", resample=10)),
            "reconstruction": kl_from_the_law(inpaint("reconstruction", zeta=1.0)),
            "unguided": kl_from_the_law(inpaint("reconstruction", zeta=0.0))}


def test_the_exact_eps_with_nothing_known_reaches_the_data_law():
    """The yardstick first: with nothing visible the sampler reaches N(MU, SIGMA) itself (KL < 0.02)."""
    x = guidance.inpaint(exact_eps, the_digit(), torch.zeros_like(MASK), SCHEDULE, "replacement",
                         generator=torch.Generator().manual_seed(1), last_step_noise=True).reshape(N, 4).double()
    divergence = float(common.kl_gaussian(x.mean(0)[None], torch.cov(x.T)[None], MU[None], SIGMA[None]))
    assert divergence < 0.02, f"the exact eps's chain is {divergence:.3f} nats from the data's law"


def test_repaint_comes_closer_to_the_conditional_law_the_more_it_resamples(kl):
    """Replacement (one pass) is 1.8 nats off; RePaint's passes bring it down, to under 0.06 at ten.
    A jump back up the chain one step short, or none, leaves it near 0.17 (measured)."""
    assert kl["replacement"] > kl["repaint 3"] > kl["repaint 10"], kl
    assert kl["replacement"] > 1.0, f"replacement is only {kl['replacement']:.3f} nats off: the test lost its power"
    assert kl["repaint 10"] < 0.06, f"RePaint with 10 passes is {kl['repaint 10']:.3f} nats from the conditional law"


def test_reconstruction_guidance_reaches_near_the_conditional_law(kl):
    """zeta = 1: 0.08 nats (measured), against 14 without guidance; stepping up the gradient, or
    by zeta / ||r||^2, is hundreds of nats off."""
    assert kl["unguided"] > 5.0, kl
    assert kl["reconstruction"] < 0.15, f"reconstruction guidance is {kl['reconstruction']:.3f} nats from the conditional law"


def test_reconstruction_guidance_lowers_the_visible_pixels_error_of_x0_hat_along_the_chain():
    """The mean squared error of x0_hat (exact eps) on the visible pixels at each step t < T - 1 is
    lower with guidance than without (same noise), and on average a third of it or less."""
    errors = {}
    for zeta in (0.0, 1.0):
        trajectory = {}
        inpaint("reconstruction", zeta=zeta, trajectory=trajectory)
        errors[zeta] = torch.tensor([
            float((common.x0_from_eps(trajectory[t], exact_eps(trajectory[t], torch.tensor([t])), t, SCHEDULE)
                   .reshape(N, 4)[:, VISIBLE] - V.float()).square().sum(1).mean())
            for t in range(2, T - 1)])
    assert (errors[1.0] < errors[0.0]).all(), (errors[1.0] - errors[0.0]).max()
    ratio = float(errors[1.0].mean() / errors[0.0].mean())
    assert ratio < 1 / 3, f"guidance leaves {ratio:.2f} of the unguided error of x0_hat on the visible pixels"
