"""The data: the standardised noiseless Swiss roll and its held-out set.

The roll's constants are checked by Simpson quadrature over the angle (not by the
closed forms quoted next to them), the sampler by its sample moments, and the geometry by
recovering each point's angle from its radius."""
import math

import numpy as np
import torch

import roll

N_SE = 5.0  # statistical tolerance, in standard errors


def gen(seed):
    return torch.Generator().manual_seed(seed)


def unstandardise(x):
    """Back to the raw roll (a cos a, a sin a)."""
    x = x.double()
    return (x[:, 0] * roll.ROLL_STD[0] + roll.ROLL_MEAN[0],
            x[:, 1] * roll.ROLL_STD[1] + roll.ROLL_MEAN[1])


def test_roll_constants_match_quadrature():
    """ROLL_MEAN and ROLL_STD are the mean and standard deviation of (a cos a, a sin a) for a
    uniform on ROLL_ANGLE. Independent route: Simpson quadrature over a, at two resolutions that
    must agree (the closed forms 2 and 2 / (3 pi) quoted beside the constants are not used)."""
    lo, hi = roll.ROLL_ANGLE
    assert (lo, hi) == (1.5 * math.pi, 4.5 * math.pi), f"ROLL_ANGLE {roll.ROLL_ANGLE}, expected (1.5 pi, 4.5 pi)"

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
        for what, got, want in (("mean", roll.ROLL_MEAN[i], quad[i][0]), ("std", roll.ROLL_STD[i], quad[i][1])):
            assert abs(got - want) < 1e-9 * max(1.0, abs(want)), (
                f"coordinate {i} {what}: constant {got!r}, quadrature {want!r} (tolerance 1e-9)")


def test_swiss_roll_is_standardised():
    """400k roll points have per-coordinate mean 0 and variance 1, within N_SE standard errors
    (SE of the variance from the spread of the squared deviations)."""
    n = 400_000
    x = roll.swiss_roll(n, gen(12)).double()
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
    for name, x in (("swiss_roll", roll.swiss_roll(n, gen(13))), ("heldout_roll", roll.heldout_roll(n))):
        X, Y = unstandardise(x)
        r = torch.hypot(X, Y)
        off = torch.hypot(X - r * torch.cos(r), Y - r * torch.sin(r))
        worst = int(off.argmax())
        # float32 points: ~1e-6 of position error, times dr/d(position) ~ r ~ 14 at most
        assert off.max().item() < 2e-4, (f"{name}: point {worst} ({X[worst]:.5f}, {Y[worst]:.5f}) is "
                                         f"{off.max().item():.3g} from the curve point at angle r = {r[worst]:.5f}")
        lo, hi = roll.ROLL_ANGLE
        assert lo - 1e-4 < r.min().item() and r.max().item() < hi + 1e-4, (
            f"{name}: angles span [{r.min().item():.5f}, {r.max().item():.5f}], expected inside [{lo:.5f}, {hi:.5f}]")
        u = (r - lo) / (hi - lo)
        mean, var = u.mean().item(), u.var().item()
        se_mean, se_var = math.sqrt(1 / 12 / n), math.sqrt(1 / 180 / n)  # Var[(u - 1/2)^2] = 1/80 - 1/144 = 1/180
        assert abs(mean - 0.5) < N_SE * se_mean, f"{name}: angle fraction mean {mean:.5f}, expected 0.5 (SE {se_mean:.2g})"
        assert abs(var - 1 / 12) < N_SE * se_var, f"{name}: angle fraction variance {var:.5f}, expected {1 / 12:.5f} (SE {se_var:.2g})"


def test_same_seed_gives_identical_points():
    """The same generator seed gives the same points; another seed gives other points."""
    a = roll.swiss_roll(1000, gen(3))
    b = roll.swiss_roll(1000, gen(3))
    c = roll.swiss_roll(1000, gen(4))
    assert torch.equal(a, b), f"seed 3 twice: max difference {(a - b).abs().max().item():.3g}, expected 0"
    assert not torch.isclose(a, c).all(dim=1).any(), "seeds 3 and 4 share a point"


def test_heldout_is_deterministic_and_not_the_training_stream():
    """heldout_roll is the same every call, and none of its points is one of the first 20k points
    of the seed-0 training stream (an exact match would mean the two share a random stream)."""
    held = roll.heldout_roll(1000)
    again = roll.heldout_roll(1000)
    assert torch.equal(held, again), f"heldout_roll twice: max difference {(held - again).abs().max().item():.3g}"
    assert held.dtype == torch.float32 and held.shape == (1000, 2), f"heldout {held.dtype} {tuple(held.shape)}"
    train = roll.swiss_roll(20_000, gen(0))
    nearest = torch.cdist(held.double(), train.double()).min().item()
    assert nearest > 0.0, f"a held-out point equals a training point of seed 0 (distance {nearest})"
    torch.manual_seed(0)   # scripts also draw from the global generator after seed_everything(0)
    seeded = roll.swiss_roll(20_000)
    nearest = torch.cdist(held.double(), seeded.double()).min().item()
    assert nearest > 0.0, f"a held-out point equals a point of the torch.manual_seed(0) stream (distance {nearest})"


# --- scoring samples against the roll's law (roll.score_samples) -------------------------------

def test_nearest_on_curve_recovers_a_known_offset_and_position():
    """Points pushed off the curve along its normal by a known distance 0.02 are found at that
    distance, and at the u they were pushed from. Independent route: the normal from the
    derivative of the curve written out by hand."""
    u = torch.linspace(0.05, 0.95, 200, dtype=torch.float64)
    a = roll.ROLL_ANGLE[0] + (roll.ROLL_ANGLE[1] - roll.ROLL_ANGLE[0]) * u
    tangent = torch.stack([(torch.cos(a) - a * torch.sin(a)) / roll.ROLL_STD[0],
                           (torch.sin(a) + a * torch.cos(a)) / roll.ROLL_STD[1]], dim=1)
    normal = torch.stack([-tangent[:, 1], tangent[:, 0]], dim=1)
    normal = normal / normal.norm(dim=1, keepdim=True)
    distance, found_u = roll.nearest_on_curve(roll.point_at(u) + 0.02 * normal)
    assert (distance - 0.02).abs().max().item() < 2e-4, f"distances {distance.min().item():.5f}..{distance.max().item():.5f}, expected 0.02"
    assert (found_u - u).abs().max().item() < 2e-3, f"u off by up to {(found_u - u).abs().max().item():.4g}"


def test_ks_uniform_p_value_matches_simulated_null():
    """Under the uniform law, ks_uniform's p-value is itself uniform: P(p <= 0.05) = 0.05 and
    P(p <= 0.2) = 0.2. Independent route: 4,000 simulated uniform samples of n = 100, counted;
    and the statistic against a brute-force sup over a fine grid for one of them."""
    rng = np.random.default_rng(0)
    draws = [rng.random(100) for _ in range(4000)]
    p = np.array([roll.ks_uniform(u)[1] for u in draws])
    for level in (0.05, 0.2):
        share, se = (p <= level).mean(), math.sqrt(level * (1 - level) / len(p))
        assert abs(share - level) < N_SE * se, f"P(p <= {level}) = {share:.4f} under the null, expected {level} +- {se:.4f}"
    grid = np.linspace(0, 1, 2_000_001)
    empirical = np.searchsorted(np.sort(draws[0]), grid, side="right") / 100
    left = np.searchsorted(np.sort(draws[0]), grid, side="left") / 100
    brute = max(np.abs(empirical - grid).max(), np.abs(left - grid).max())
    assert abs(roll.ks_uniform(draws[0])[0] - brute) < 1e-5, f"KS statistic {roll.ks_uniform(draws[0])[0]}, brute force {brute}"


def test_w1_uniform_matches_numeric_integration():
    """w1_uniform = integral of |F_n(s) - s| ds, here by a midpoint rule on a million cells."""
    u = np.random.default_rng(1).random(50) ** 1.5
    s = (np.arange(1_000_000) + 0.5) / 1_000_000
    brute = np.abs(np.searchsorted(np.sort(u), s, side="right") / 50 - s).mean()
    assert abs(roll.w1_uniform(u) - brute) < 1e-6, f"w1_uniform {roll.w1_uniform(u):.7f}, integral {brute:.7f}"


def test_real_roll_samples_pass_and_a_thinned_roll_fails():
    """20,000 real roll points score as the data should: none off the curve, KS p above 0.01 and
    W1(u) inside the band of real samples. A roll with a tenth of its length thinned out (half
    its points dropped for u in 0.45..0.55) and a blurred roll (noise of std 0.05) both fail.
    The thinned roll needs its 20,000 points (its KS distance, about 0.024, gives p near 1e-9
    there and only near 1e-2 at 5,000); the blurred one is off the curve about a third of the
    time (0.30-0.34 over 8 seeds at 2,000 points), 11 standard errors above 0.2 at 2,000."""
    g = gen(21)
    real = roll.score_samples(roll.swiss_roll(20_000, g))
    lo, hi = real["w1_band"]
    assert real["off_curve"] == 0.0 and real["median_distance"] < 1e-3, roll.describe_scores(real)
    assert real["ks_p"] > 0.01 and lo <= real["w1_u"] <= hi, roll.describe_scores(real)

    u = torch.rand(24_000, generator=g, dtype=torch.float64)
    keep = ~((u > 0.45) & (u < 0.55) & (torch.rand(24_000, generator=g) < 0.5))
    thinned = roll.score_samples(roll.point_at(u[keep][:20_000]))
    assert thinned["ks_p"] < 1e-3 and thinned["w1_u"] > hi, "thinned roll: " + roll.describe_scores(thinned)

    blurred = roll.score_samples(roll.swiss_roll(2_000, g) + 0.05 * torch.randn(2_000, 2, generator=g))
    assert blurred["off_curve"] > 0.2, "blurred roll: " + roll.describe_scores(blurred)
