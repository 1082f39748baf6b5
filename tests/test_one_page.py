"""Chapter 0, diffusion on one page: its Algorithm 1 noises as common's forward closed form does,
its Algorithm 2 takes the chapters' reverse step for the same z (and DDPM's mean, with no noise,
at t = 1), its sampler with the exact eps of Gaussian pixels reaches their law, and the page runs
end to end with tiny settings."""
import math
import re
import sys

import pytest
import torch

import cli
import common
import ddpm
import guidance
from conftest import ROOT

SCRIPT = "00_one_page.py"


@pytest.fixture(scope="module")
def page(load_script):
    return load_script(SCRIPT)


@pytest.fixture(scope="module")
def schedule(page):
    """The page's beta_t as the chapters' Schedule, alpha_bar computed there in float64."""
    return common.schedule_from_beta(page.BETA.double())


def a_stand_in_network(x_t, t):
    """Some eps that depends on x_t and t, for comparing steps (the UNet starts at eps = 0)."""
    return torch.tanh(x_t) * (t.float() / 200.0).reshape(-1, 1, 1, 1) + 0.1


def test_the_page_has_the_chapters_alpha_bar_and_linear_beta(page, schedule):
    assert page.BETA[0] == 0 and len(page.BETA) == page.T + 1
    assert torch.allclose(page.ALPHA_BAR.double(), schedule.alpha_bar, rtol=1e-5, atol=0)
    assert float(schedule.alpha_bar[page.T]) < 1e-3, "x_T is not noise"


def test_algorithm_1_makes_the_x_t_of_the_forward_closed_form(page, schedule):
    generator = torch.Generator().manual_seed(0)
    x0 = torch.rand(64, 1, 8, 8, generator=generator) * 2 - 1
    eps = torch.randn(64, 1, 8, 8, generator=generator)
    t = torch.randint(1, page.T + 1, (64,), generator=generator)
    expected = common.x_t_from_eps(x0.reshape(64, 64).double(), eps.reshape(64, 64).double(), t, schedule)
    assert torch.allclose(page.x_t_from_eps(x0, eps, t).reshape(64, 64).double(), expected, atol=2e-6)


@pytest.mark.parametrize("t", [2, 3, 50, 199, 200])
def test_algorithm_2_takes_the_chapters_reverse_step_for_the_same_z(page, schedule, t):
    generator = torch.Generator().manual_seed(t)
    x_t, z = torch.randn(16, 1, 8, 8, generator=generator), torch.randn(16, 1, 8, 8, generator=generator)
    eps = a_stand_in_network(x_t, torch.full((16,), t))
    expected = guidance.reverse_step(x_t, eps, t, schedule, z, variance="beta")
    assert torch.allclose(page.reverse_step(a_stand_in_network, x_t, t, z), expected, atol=1e-5)


def test_algorithm_2_ends_at_t_1_with_ddpms_mean_and_no_noise(page, schedule):
    x_1 = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    eps = a_stand_in_network(x_1, torch.ones(16))
    expected = ddpm.ddpm_mean(x_1, eps, 1, schedule)
    for z in (torch.zeros_like(x_1), torch.ones_like(x_1)):
        assert torch.allclose(page.reverse_step(a_stand_in_network, x_1, 1, z), expected, atol=1e-5)


def test_the_pages_sampler_with_the_exact_eps_of_gaussian_pixels_reaches_their_law(page):
    """Pixels independent N(M, S^2): E[eps | x_t] = sqrt(1 - ab) (x_t - sqrt(ab) M) / (ab S^2 + 1 - ab).
    Algorithm 2 with it must end with mean M and variance S^2 per pixel (4,000 x 64 values)."""
    M, S = 0.3, 0.5

    def exact_eps(x_t, t):
        ab = page.ALPHA_BAR[t].reshape(-1, 1, 1, 1).double()
        return (torch.sqrt(1 - ab) * (x_t - torch.sqrt(ab) * M) / (ab * S ** 2 + 1 - ab)).float()

    torch.manual_seed(0)
    x = page.sample(exact_eps, 4000, "cpu").double()
    n = x.numel()
    assert abs(float(x.mean()) - M) < 5 * S / math.sqrt(n) + 2e-3, float(x.mean())
    assert abs(float(x.var()) / S ** 2 - 1) < 0.02, float(x.var())


def test_the_page_runs_end_to_end_with_tiny_settings(page, tmp_path, monkeypatch, capsys, keep_process_settings):
    monkeypatch.setattr(page, "ITERS", 3)
    monkeypatch.setattr(page, "T", 20)   # a short chain: what runs, not what it draws, is tested here
    monkeypatch.setattr(page, "N_SAMPLES", 12)
    monkeypatch.setattr(cli, "IMAGES", tmp_path)
    monkeypatch.setattr(sys, "argv", [SCRIPT, "--device", "cpu", "--seed", "3"])
    page.main()
    printed = capsys.readouterr().out
    assert "samples 0." in printed and "held-out digits 0.8" in printed, printed
    assert {p.name for p in tmp_path.iterdir()} == {"00_eps_prediction.png", "00_samples.png"}


def test_the_readme_shows_algorithm_1_and_2_as_the_script_has_them():
    """Each python block of README section 0 is a verbatim piece of the script, and together
    they hold x_t_from_eps, train, reverse_step and sample."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## 0. Diffusion on one page"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    script = (ROOT / "scripts" / SCRIPT).read_text()
    assert all(block in script for block in blocks), [block[:60] for block in blocks if block not in script]
    shown = "".join(blocks)
    assert all(f"def {name}(" in shown for name in ("x_t_from_eps", "train", "reverse_step", "sample")), shown
