"""Chapter 1 (scripts/01_forward_process.py) run as a user runs it.

The script takes ~10 s (mostly drawing the GIF), so the four runs these tests need are made
together once: three real processes side by side and one in this process meanwhile; each test
waits for the one it reads."""
import math
import re
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

import common
import roll
from conftest import run_main, start_script

SCRIPT = "01_forward_process.py"
ARGS = ("--n-points", "2000", "--seed", "1")
FIGURES = ("01_markov_chain.png", "01_chain_vs_closed_form.png", "01_schedule.png", "01_forward_process.gif")
ROW = re.compile(r"^\s*(\d+)((?:\s+-?\d+\.\d+){9})\s*$")
GAPS = re.compile(r"chain vs closed form (\d+\.\d+), closed form vs theory (\d+\.\d+) standard errors")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every run of the script this module needs: three real processes started side by side (the
    second run of the seed, --help, a bad number: exit status and stderr as a reader sees them)
    and, meanwhile, the first run in this process (conftest.run_main); values are (handle or
    CompletedProcess, images folder)."""
    folders = {key: tmp_path_factory.mktemp(key) for key in ("first", "second", "help", "bad")}
    started = {
        "second": start_script(SCRIPT, *ARGS, "--images", folders["second"]),
        "help": start_script(SCRIPT, "--help"),
        "bad": start_script(SCRIPT, "--n-points", "0", "--images", folders["bad"]),
    }
    started["first"] = run_main(SCRIPT, *ARGS, "--images", folders["first"])
    return {key: (handle, folders[key]) for key, handle in started.items()}


def finished(runs, key):
    handle, folder = runs[key]
    return handle if isinstance(handle, subprocess.CompletedProcess) else handle.wait(), folder


def table(stdout):
    """The printed rows {t: [chain, closed, theory] x (mean, variance, cov)}."""
    rows = {}
    for line in stdout.splitlines():
        match = ROW.match(line)
        if match:
            rows[int(match.group(1))] = [float(v) for v in match.group(2).split()]
    return rows


def test_chapter1_runs_and_writes_its_figures(runs):
    """Exit 0 and four non-empty figures: three PNGs and a GIF with one frame per t = 0..T."""
    result, folder = finished(runs, "first")
    assert result.returncode == 0, f"exit {result.returncode}\nstderr:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    for name in FIGURES:
        path = folder / name
        assert path.is_file() and path.stat().st_size > 1000, (
            f"{name}: {'missing' if not path.exists() else f'{path.stat().st_size} bytes'} in {folder}")
    for name in FIGURES[:3]:
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{name} is not a PNG"
    with Image.open(folder / FIGURES[3]) as gif:
        assert gif.format == "GIF" and gif.n_frames == common.T + 1, (
            f"{FIGURES[3]}: format {gif.format}, {gif.n_frames} frames, expected GIF with {common.T + 1}")
    leftovers = [p.name for p in folder.iterdir() if p.name not in FIGURES]
    assert not leftovers, f"unexpected files left in the figures folder: {leftovers}"


def test_chapter1_table_follows_the_theory(runs):
    """The table has a row for t = 1 and every 5th t, and its theory columns are the closed form's
    moments: Cov[x_t, x0] = sqrt(abar_t) v0 and Var[x_t] = abar_t v0 + 1 - abar_t, with v0 read
    from the t = 1 row and abar_t from a Python loop over make_schedule (3-decimal rounding allowed)."""
    result, _ = finished(runs, "first")
    rows = table(result.stdout)
    want = [1] + list(range(5, common.T + 1, 5))
    assert sorted(rows) == want, f"table rows for t = {sorted(rows)}, expected {want}\nstdout:\n{result.stdout}"
    abar, running = [1.0], 1.0
    for b in common.make_schedule().beta[1:].tolist():
        running *= 1 - b
        abar.append(running)
    v0 = rows[1][8] / math.sqrt(abar[1])
    for t, row in rows.items():
        mean_th, var_th, cov_th = row[2], row[5], row[8]
        assert abs(cov_th - math.sqrt(abar[t]) * v0) < 2e-3, f"t={t}: theory cov {cov_th}, expected {math.sqrt(abar[t]) * v0:.4f}"
        assert abs(var_th - (abar[t] * v0 + 1 - abar[t])) < 2e-3, (
            f"t={t}: theory variance {var_th}, expected {abar[t] * v0 + 1 - abar[t]:.4f}")
        assert abs(mean_th) < 0.1, f"t={t}: theory mean {mean_th}, expected near 0 for standardised data"


def test_chapter1_table_agrees_with_the_theory_within_standard_errors_computed_here(runs):
    """Every printed chain and closed-form moment is within 5 standard errors (plus 0.001 for the
    rounding of two printed numbers) of the printed theory. The standard errors are derived here,
    not read from the script: given x0, x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) z with z ~ N(0, I)
    whichever road made it, so for n points, averaged over the two coordinates,
      mean:       sqrt((1 - abar) / (2 n)),
      variance:   sqrt((4 abar (1 - abar) v0 + 2 (1 - abar)^2) / (2 n)),
      cov with x0: sqrt((1 - abar) v0 / (2 n))."""
    result, _ = finished(runs, "first")
    rows = table(result.stdout)
    assert rows, f"no table in stdout:\n{result.stdout}"
    n = int(ARGS[ARGS.index("--n-points") + 1])
    abar = common.make_schedule().alpha_bar.tolist()
    v0 = rows[1][8] / math.sqrt(abar[1])
    worst = (0.0, "")
    for t, row in rows.items():
        a = abar[t]
        se = {"mean": math.sqrt((1 - a) / (2 * n)),
              "variance": math.sqrt((4 * a * (1 - a) * v0 + 2 * (1 - a) ** 2) / (2 * n)),
              "cov": math.sqrt((1 - a) * v0 / (2 * n))}
        for k, moment in enumerate(se):
            theory = row[3 * k + 2]
            for road, value in (("chain", row[3 * k]), ("closed form", row[3 * k + 1])):
                gap = (abs(value - theory) - 0.001) / se[moment]
                worst = max(worst, (gap, f"t={t} {moment}: {road} {value}, theory {theory}, SE {se[moment]:.2g}"))
    assert worst[0] < 5, f"a printed moment is {worst[0]:.1f} standard errors from the theory: {worst[1]}"
    assert GAPS.search(result.stdout), f"no 'largest gap' line in stdout:\n{result.stdout}"


def test_chapter1_gap_in_standard_errors_counts_standard_errors(load_script):
    """The script's own yardstick, checked on a case with a known answer: for 40,000 draws of
    N(0, s^2) per column, a reference 4 s / sqrt(n) below the sample mean is 4 standard errors
    away (up to the sample's s, ~0.4% off), and a difference of equal columns is 0 apart."""
    chapter1 = load_script(SCRIPT)
    n, scales = 40_000, torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    terms = torch.randn(n, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * scales
    reference = terms.mean(0) - 4 * scales / math.sqrt(n)
    got = chapter1.gap_in_standard_errors(terms, reference)
    assert abs(got - 4) < 0.1, f"gap_in_standard_errors gave {got:.3f} for a gap of 4 standard errors"
    assert chapter1.gap_in_standard_errors(terms - terms, 0.0) == 0.0


def test_chapter1_same_seed_prints_the_same_and_draws_the_same_bytes(runs):
    """Two runs with the same --seed print the same stdout (the figures folder aside) and write
    byte-identical figures, every one of them."""
    first, first_folder = finished(runs, "first")
    second, second_folder = finished(runs, "second")
    assert second.returncode == 0, f"second run exit {second.returncode}\n{second.stderr[-3000:]}"
    a = first.stdout.replace(str(first_folder), "<images>")
    b = second.stdout.replace(str(second_folder), "<images>")
    differing = [(x, y) for x, y in zip(a.splitlines(), b.splitlines()) if x != y]
    assert a == b, f"same seed, different output; first differing lines: {differing[:3]}"
    different = [name for name in FIGURES if (first_folder / name).read_bytes() != (second_folder / name).read_bytes()]
    assert not different, f"same seed, figures that differ byte for byte: {different}"


def test_chapter1_moment_terms_average_to_sample_moments(load_script):
    """The script's per-point moment terms average to the sample mean, variance and covariance
    with x0 (each averaged over the two coordinates). Independent route: numpy's mean, var and
    cov (bias=True, i.e. divided by n like the script's averages)."""
    chapter1 = load_script(SCRIPT)
    g = torch.Generator().manual_seed(9)
    x0 = roll.swiss_roll(500, g).double()
    x_t = 0.8 * x0 + 0.6 * torch.randn(500, 2, generator=g, dtype=torch.float64)
    got = chapter1.moment_terms(x_t, x0).mean(0).tolist()
    a, b = x_t.numpy(), x0.numpy()
    want = [a.mean(), a.var(axis=0).mean(),
            np.mean([np.cov(a[:, i], b[:, i], bias=True)[0, 1] for i in range(2)])]
    for name, value, expected in zip(("mean", "variance", "covariance"), got, want):
        assert abs(value - expected) < 1e-12, f"{name}: moment_terms average {value:.12f}, numpy {expected:.12f}"


def test_chapter1_help_works(runs):
    """--help exits 0 and documents --n-points, --seed, --device and --images."""
    result, _ = finished(runs, "help")
    assert result.returncode == 0, f"--help exit {result.returncode}\n{result.stderr}"
    for option in ("--n-points", "--seed", "--device", "--images"):
        assert option in result.stdout, f"--help does not mention {option}:\n{result.stdout}"


def test_chapter1_rejects_zero_points_in_one_line(runs):
    """--n-points 0 exits with status 2 (a usage error) and one error line naming --n-points,
    with no traceback and no figures written."""
    result, folder = finished(runs, "bad")
    assert result.returncode == 2, f"exit {result.returncode}, expected 2\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr, f"traceback in stderr:\n{result.stderr}"
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "--n-points" in errors[0], f"expected one error line naming --n-points, got {errors}"
    assert not any(folder.iterdir()), f"files written despite the error: {[p.name for p in folder.iterdir()]}"
