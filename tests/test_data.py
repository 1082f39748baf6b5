"""The data: the standardised noiseless Swiss roll and its held-out set.

The roll's constants are checked by Simpson quadrature over the angle (not by the
closed forms quoted next to them), the sampler by its sample moments, and the geometry by
recovering each point's angle from its radius."""
import math

import numpy as np
import torch

import common

N_SE = 5.0  # statistical tolerance, in standard errors


def gen(seed):
    return torch.Generator().manual_seed(seed)


def unstandardise(x):
    """Back to the raw roll (a cos a, a sin a)."""
    x = x.double()
    return (x[:, 0] * common.ROLL_STD[0] + common.ROLL_MEAN[0],
            x[:, 1] * common.ROLL_STD[1] + common.ROLL_MEAN[1])


def test_roll_constants_match_quadrature():
    """ROLL_MEAN and ROLL_STD are the mean and standard deviation of (a cos a, a sin a) for a
    uniform on ROLL_ANGLE. Independent route: Simpson quadrature over a, at two resolutions that
    must agree (the closed forms 2 and 2 / (3 pi) quoted beside the constants are not used)."""
    lo, hi = common.ROLL_ANGLE
    assert (lo, hi) == (1.5 * math.pi, 4.5 * math.pi), f"ROLL_ANGLE {common.ROLL_ANGLE}, expected (1.5 pi, 4.5 pi)"

    def moments(intervals):
        """Composite Simpson rule over a (weights 1, 4, 2, ..., 4, 1): error ~ h^4, below 1e-12."""
        a = np.linspace(lo, hi, intervals + 1)
        w = np.ones(intervals + 1)
        w[1:-1:2], w[2:-1:2] = 4.0, 2.0
        w *= (hi - lo) / intervals / 3 / (hi - lo)   # times the uniform density 1 / (hi - lo)
        out = []
        for f in (a * np.cos(a), a * np.sin(a)):
            mean = float((w * f).sum())
            out.append((mean, math.sqrt(float((w * (f - mean) ** 2).sum()))))
        return out

    quad, check = moments(200_000), moments(100_000)
    for i in range(2):
        assert abs(quad[i][1] - check[i][1]) < 1e-10, f"quadrature not converged: {quad[i]} vs {check[i]}"
        for what, got, want in (("mean", common.ROLL_MEAN[i], quad[i][0]), ("std", common.ROLL_STD[i], quad[i][1])):
            assert abs(got - want) < 1e-9 * max(1.0, abs(want)), (
                f"coordinate {i} {what}: constant {got!r}, quadrature {want!r} (tolerance 1e-9)")


def test_swiss_roll_is_standardised():
    """400k roll points have per-coordinate mean 0 and variance 1, within N_SE standard errors
    (SE of the variance from the spread of the squared deviations)."""
    n = 400_000
    x = common.swiss_roll(n, gen(12)).double()
    assert x.shape == (n, 2), f"shape {tuple(x.shape)}, expected ({n}, 2)"
    for i in range(2):
        c = x[:, i]
        mean, se_mean = c.mean().item(), c.std().item() / math.sqrt(n)
        dev2 = (c - c.mean()) ** 2
        var, se_var = dev2.mean().item(), dev2.std().item() / math.sqrt(n)
        assert abs(mean) < N_SE * se_mean, f"coordinate {i}: mean {mean:.5f}, expected 0 (SE {se_mean:.2g}, tolerance {N_SE} SE)"
        assert abs(var - 1) < N_SE * se_var, f"coordinate {i}: variance {var:.5f}, expected 1 (SE {se_var:.2g}, tolerance {N_SE} SE)"


def test_points_lie_on_the_curve_with_uniform_angle():
    """Every point, un-standardised, is r (cos r, sin r) with r = its radius in [1.5 pi, 4.5 pi]:
    on the roll the radius *is* the angle, so this needs no branch of atan2. The recovered angles
    are uniform: u = (r - 1.5 pi) / 3 pi has mean 1/2 and variance 1/12 within N_SE SE."""
    n = 20_000
    for name, x in (("swiss_roll", common.swiss_roll(n, gen(13))), ("heldout_roll", common.heldout_roll(n))):
        X, Y = unstandardise(x)
        r = torch.hypot(X, Y)
        off = torch.hypot(X - r * torch.cos(r), Y - r * torch.sin(r))
        worst = int(off.argmax())
        # float32 points: ~1e-6 of position error, times dr/d(position) ~ r ~ 14 at most
        assert off.max().item() < 2e-4, (f"{name}: point {worst} ({X[worst]:.5f}, {Y[worst]:.5f}) is "
                                         f"{off.max().item():.3g} from the curve point at angle r = {r[worst]:.5f}")
        lo, hi = common.ROLL_ANGLE
        assert lo - 1e-4 < r.min().item() and r.max().item() < hi + 1e-4, (
            f"{name}: angles span [{r.min().item():.5f}, {r.max().item():.5f}], expected inside [{lo:.5f}, {hi:.5f}]")
        u = (r - lo) / (hi - lo)
        mean, var = u.mean().item(), u.var().item()
        se_mean, se_var = math.sqrt(1 / 12 / n), math.sqrt(1 / 180 / n)  # Var[(u - 1/2)^2] = 1/80 - 1/144 = 1/180
        assert abs(mean - 0.5) < N_SE * se_mean, f"{name}: angle fraction mean {mean:.5f}, expected 0.5 (SE {se_mean:.2g})"
        assert abs(var - 1 / 12) < N_SE * se_var, f"{name}: angle fraction variance {var:.5f}, expected {1 / 12:.5f} (SE {se_var:.2g})"


def test_same_seed_gives_identical_points():
    """The same generator seed gives the same points; another seed gives other points."""
    a = common.swiss_roll(1000, gen(3))
    b = common.swiss_roll(1000, gen(3))
    c = common.swiss_roll(1000, gen(4))
    assert torch.equal(a, b), f"seed 3 twice: max difference {(a - b).abs().max().item():.3g}, expected 0"
    assert not torch.isclose(a, c).all(dim=1).any(), "seeds 3 and 4 share a point"


def test_heldout_is_deterministic_and_not_the_training_stream():
    """heldout_roll is the same every call, and none of its points is one of the first 20k points
    of the seed-0 training stream (an exact match would mean the two share a random stream)."""
    held = common.heldout_roll(1000)
    again = common.heldout_roll(1000)
    assert torch.equal(held, again), f"heldout_roll twice: max difference {(held - again).abs().max().item():.3g}"
    assert held.dtype == torch.float32 and held.shape == (1000, 2), f"heldout {held.dtype} {tuple(held.shape)}"
    train = common.swiss_roll(20_000, gen(0))
    nearest = torch.cdist(held.double(), train.double()).min().item()
    assert nearest > 0.0, f"a held-out point equals a training point of seed 0 (distance {nearest})"
    torch.manual_seed(0)   # scripts also draw from the global generator after seed_everything(0)
    seeded = common.swiss_roll(20_000)
    nearest = torch.cdist(held.double(), seeded.double()).min().item()
    assert nearest > 0.0, f"a held-out point equals a point of the torch.manual_seed(0) stream (distance {nearest})"
