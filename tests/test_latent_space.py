"""Chapter 12's script (scripts/12_latent_space.py): the pixel and latent paths call the same
diffusion functions, and a tiny run goes through every step, writes its samples for tools and
its figures, and --reuse scores what it saved or refuses a missing file in one line."""
import numpy as np
import torch

import common
import pictures
from conftest import load_script, start_script
from test_mnist import write_fewer_digits
from test_robustness import call_main

TINY = ["--ae-iters", "2", "--latent-iters", "2", "--pixel-iters", "2", "--classifier-iters", "2",
        "--n-samples", "20", "--device", "cpu"]


def test_the_pixel_and_latent_paths_draw_the_same_x_t_from_the_same_x0_eps_and_t():
    """noised() on images (n, 1, 28, 28) and latents (n, 2, 7, 7) is chapter 5's
    common.x_t_from_eps on the flat points, and sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps
    computed here in float64."""
    chapter = load_script("12_latent_space.py")
    schedule = pictures.image_schedule(1000, 1e-4, -8.3, "cosine")
    generator = torch.Generator().manual_seed(0)
    t = torch.tensor([2, 500, 1000])
    for shape in [(3, 1, 28, 28), (3, 2, 7, 7)]:
        x0, eps = torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
        x_t = chapter.noised(x0, eps, t, schedule)
        flat = common.x_t_from_eps(x0.reshape(3, -1), eps.reshape(3, -1), t, schedule).reshape(shape)
        alpha_bar = schedule.alpha_bar[t].reshape(3, 1, 1, 1)
        by_hand = alpha_bar.sqrt() * x0.double() + (1 - alpha_bar).sqrt() * eps.double()
        assert torch.equal(x_t, flat) and torch.allclose(x_t.double(), by_hand, atol=1e-6)


def test_a_tiny_run_writes_samples_and_figures_and_reuse_refuses_a_missing_file(tmp_path, monkeypatch, capsys,
                                                                               keep_process_settings):
    """On a tenth of the digits, given as IDX files with --mnist-dir (every step's cost grows with
    the digits it encodes and scores). The refusal is a real process (its exit status and its one
    line are what a reader sees), started first so that it runs beside the tiny run; the tiny run
    runs in this process (an interpreter and its imports fewer) and samples with fewer steps (the
    same code): 4 DDIM steps for the comparison of spaces instead of 20, 2, 3 and 4 steps for the
    comparison of samplers instead of 10, 20 and 50, 5 for the reverse process's GIF instead of 50."""
    out, images = tmp_path / "out", tmp_path / "images"
    digits = write_fewer_digits(tmp_path / "mnist", 400, 100)
    missing = start_script("12_latent_space.py", *TINY, "--mnist-dir", digits, "--reuse", "--out", tmp_path / "empty",
                           "--images", tmp_path / "refused", timeout=900)
    for constant, value in (("STEPS", 4), ("SAMPLER_STEPS", (2, 3, 4)), ("GIF_STEPS", 5)):
        monkeypatch.setattr(load_script("12_latent_space.py"), constant, value)
    code, stdout, stderr = call_main("12_latent_space.py", [*TINY, "--mnist-dir", digits, "--out", out,
                                                            "--images", images], monkeypatch, capsys)
    assert code == 0, stderr[-2000:]
    for name in ("samples.npy", "pixel_samples.npy"):
        samples = np.load(out / name)
        assert samples.shape == (20, 28, 28) and samples.dtype == np.uint8, (name, samples.shape, samples.dtype)
    for name in ("12_reconstructions.png", "12_latent_channels.png", "12_reverse.gif", "12_samples.png", "12_samplers.png"):
        assert (images / name).stat().st_size > 0, name
    for line in ("at equal training time", "Frechet distance", "dpm++2m", "scale factor"):
        assert line in stdout, (line, stdout)
    # --reuse draws the latents from the generator state the training run saved: the same scale and scores
    code, reused_out, stderr = call_main("12_latent_space.py", [*TINY, "--mnist-dir", digits, "--out", out, "--reuse",
                                                                "--images", tmp_path / "reused"], monkeypatch, capsys)
    assert code == 0, stderr[-2000:]
    for key in ("scale factor", "confident share", "Frechet distance"):
        first, again = ([line for line in text.splitlines() if key in line] for text in (stdout, reused_out))
        assert first and first == again, (key, first, again)
    missing = missing.wait()
    last = missing.stderr.strip().splitlines()[-1]
    assert missing.returncode == 1 and last.startswith("error: no checkpoint") and "--reuse" in last, missing.stderr[-500:]
    assert not (tmp_path / "empty" / "samples.npy").exists()
