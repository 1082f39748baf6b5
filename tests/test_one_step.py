"""Chapter 14: one step. The distillation target is exact where the teacher's jumps are known in
closed form (Gaussian data with its exact eps): one DDIM jump at the target lands where two of the
teacher's do; a student that predicts the target samples in half the calls what the teacher does;
one round of training halves the grid and lowers the student's loss; the truncated-SNR weight
turns the x0 loss into the eps loss where SNR >= 1; and the script refuses a missing checkpoint."""
import argparse
import copy

import numpy as np
import pytest
import torch

import checkpoints
import common
import ddim
import distill
import pictures
import roll
from model import ReverseModel

SCHEDULE = common.make_schedule()
T = SCHEDULE.T
DATA_STD = 0.5   # Gaussian data x0 ~ N(0, DATA_STD^2 I): E[eps | z_t] is known exactly


def levels(t):
    """alpha_t, sigma_t and Var(z_t) = alpha_t^2 DATA_STD^2 + sigma_t^2 per coordinate, as floats."""
    alpha_bar = float(SCHEDULE.alpha_bar[t])
    alpha, sigma = alpha_bar ** 0.5, (1.0 - alpha_bar) ** 0.5
    return alpha, sigma, alpha ** 2 * DATA_STD ** 2 + sigma ** 2


def gaussian_eps(z, t):
    """The exact eps-network of Gaussian data: E[eps | z_t] = sigma_t z_t / Var(z_t)."""
    alpha_bar = common.at(SCHEDULE.alpha_bar, t).to(z)
    return (1.0 - alpha_bar).sqrt() * z / (alpha_bar * DATA_STD ** 2 + 1.0 - alpha_bar), None


def random_eps_network(**size):
    """An eps-network with random output weights: eps varies with z_t and with t."""
    torch.manual_seed(0)
    network = ReverseModel(covariance="none", **size).double().eval()
    with torch.no_grad():
        network.output.weight.normal_(0.0, 0.3)
        network.output.bias.normal_(0.0, 0.3)
    return network


@pytest.mark.parametrize("t, middle, end", [(40, 30, 20), (25, 12, 3), (9, 4, 0)])
def test_target_makes_one_ddim_jump_land_where_two_exact_teacher_jumps_land(t, middle, end):
    z_t = torch.randn(500, 2, generator=torch.Generator().manual_seed(t), dtype=torch.float64)
    # the teacher's two DDIM jumps with the exact eps, by hand: x0_hat = alpha DATA_STD^2 z / Var and
    # eps_hat = sigma z / Var, so a jump t -> s multiplies z by (alpha_s alpha_t DATA_STD^2 + sigma_s sigma_t) / Var_t
    (a_t, s_t, v_t), (a_m, s_m, v_m), (a_e, s_e, _) = levels(t), levels(middle), levels(end)
    by_hand = (a_e * a_m * DATA_STD ** 2 + s_e * s_m) / v_m * (a_m * a_t * DATA_STD ** 2 + s_m * s_t) / v_t * z_t
    z_end = distill.sample(gaussian_eps, [t, middle, end], z_t, SCHEDULE)
    assert torch.allclose(z_end, by_hand, rtol=0, atol=1e-12), (z_end - by_hand).abs().max()

    target = distill.distillation_target(z_t, z_end, t, end, SCHEDULE)
    # one jump at the target, by chapter 6's DDIM step on the chain respaced to T -> t -> end
    # (its eps-form, not distill.ddim_jump); a jump to 0 is the target itself
    if end == 0:
        one_jump = target
    else:
        respaced, t_of = ddim.respace(SCHEDULE, sorted({T, t, end, 1}, reverse=True))
        k = int((t_of == t).nonzero())
        eps_hat = (z_t - a_t * target) / s_t
        one_jump = ddim.ddim_step(z_t, eps_hat, k, respaced, 0.0)[0]
        assert int(t_of[k - 1]) == end
    assert torch.allclose(one_jump, z_end, rtol=0, atol=1e-12), (one_jump - z_end).abs().max()

    # and the target is the root of the jump's affine map x -> jump(x), found without its formula
    at_zero = distill.ddim_jump(z_t, torch.zeros_like(z_t), t, end, SCHEDULE)
    slope = distill.ddim_jump(z_t, torch.ones_like(z_t), t, end, SCHEDULE) - at_zero
    assert torch.allclose(target, (z_end - at_zero) / slope, rtol=0, atol=1e-10)


def test_a_student_that_predicts_the_target_samples_in_half_the_calls_what_the_teacher_does():
    teacher = random_eps_network()
    grid = distill.log_snr_grid(SCHEDULE, 8)
    assert len(grid) == 9 and grid[0] == T and grid[-1] == 0
    after = {grid[2 * k]: (grid[2 * k + 1], grid[2 * k + 2]) for k in range(4)}

    def oracle_student(z, steps):
        """eps whose x0_hat is the distillation target built from two teacher jumps."""
        t = int(steps[0])
        middle, end = after[t]
        z_end = distill.sample(teacher, [t, middle, end], z, SCHEDULE)
        target = distill.distillation_target(z, z_end, t, end, SCHEDULE)
        alpha, sigma = distill.signal_and_noise(t, SCHEDULE, z)
        return (z - alpha * target) / sigma, None

    z_T = torch.randn(300, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    teacher_end = distill.sample(teacher, grid, z_T, SCHEDULE)
    student_end = distill.sample(oracle_student, grid[::2], z_T, SCHEDULE)
    assert torch.allclose(student_end, teacher_end, rtol=0, atol=1e-9), (student_end - teacher_end).abs().max()
    # and one jump short of the grid would not do it
    assert not torch.allclose(distill.sample(teacher, grid[:-1], z_T, SCHEDULE), teacher_end, atol=1e-3)


def test_one_round_halves_the_jumps_and_lowers_the_students_loss():
    small = {"hidden": 32, "depth": 2, "n_frequencies": 8}
    teacher = random_eps_network(**small).float()
    grid = distill.log_snr_grid(SCHEDULE, 8)
    generator = torch.Generator().manual_seed(0)

    def loss_of(student):
        fixed = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return distill.distillation_loss(student, teacher, roll.swiss_roll(4096, fixed), grid, fixed,
                                             SCHEDULE).item()

    before = loss_of(copy.deepcopy(teacher))
    student, student_grid, losses = distill.distill_round(
        teacher, grid, lambda: roll.swiss_roll(128, generator), iters=80, lr=1e-3,
        generator=generator, schedule=SCHEDULE)
    after = loss_of(student)
    assert student_grid == grid[::2] and len(student_grid) - 1 == (len(grid) - 1) // 2
    assert len(losses) == 80
    assert after < 0.5 * before, f"the student's loss went from {before:.4f} to {after:.4f}"
    # the teacher is left as it was
    assert torch.equal(teacher.output.weight, random_eps_network(**small).float().output.weight)


def test_truncated_snr_weight_makes_the_x0_loss_the_eps_loss_where_snr_is_above_one():
    generator = torch.Generator().manual_seed(2)
    x0, eps, error = (torch.randn(200, 2, generator=generator, dtype=torch.float64) for _ in range(3))
    snr = torch.exp(common.log_snr(SCHEDULE))
    for t in (2, 10, 20, 30, 40):
        z_t = common.x_t_from_eps(x0, eps, t, SCHEDULE)
        x0_error = (common.x0_from_eps(z_t, eps + error, t, SCHEDULE) - x0).square().sum(1)
        weight = float(distill.truncated_snr_weight(t, SCHEDULE))
        if snr[t] >= 1:
            assert torch.allclose(weight * x0_error, error.square().sum(1), rtol=1e-9)
        else:
            assert weight == 1.0


def test_log_snr_grid_halves_into_itself_and_spreads_evenly():
    grid = distill.log_snr_grid(SCHEDULE, 32)
    assert len(grid) == 33 and grid[0] == T and grid[-1] == 0 and min(grid[:-1]) >= 2
    assert all(a > b for a, b in zip(grid, grid[1:]))
    level = common.log_snr(SCHEDULE)[torch.tensor(grid[:-1])]
    gaps = (level[:-1] - level[1:]).abs()   # one or two of the schedule's equal steps: as even as whole steps allow
    one_step = float(common.log_snr(SCHEDULE)[1] - common.log_snr(SCHEDULE)[2])
    assert float(gaps.max() - gaps.min()) <= one_step + 1e-9, gaps


@pytest.mark.parametrize("which, command", [("--roll-checkpoint", "python scripts/05_ddpm.py"),
                                            ("--digits-checkpoint", "python scripts/08_pictures.py")])
def test_script_refuses_a_missing_checkpoint_in_one_line_naming_the_command(which, command, tmp_path, monkeypatch,
                                                                             capsys, keep_process_settings):
    from test_robustness import call_main, the_error_line
    torch.manual_seed(0)
    checkpoints.save_checkpoint(tmp_path / "ddpm.pt", ReverseModel(covariance="none"), SCHEDULE,
                                argparse.Namespace(iters=1), 1)
    paths = {"--roll-checkpoint": tmp_path / "ddpm.pt", "--digits-checkpoint": tmp_path / "unet.pt"}
    paths[which] = tmp_path / "missing.pt"
    code, _, err = call_main("14_one_step.py", ["--roll-checkpoint", paths["--roll-checkpoint"],
                                                "--digits-checkpoint", paths["--digits-checkpoint"],
                                                "--images", tmp_path, "--out-dir", tmp_path / "out"],
                             monkeypatch, capsys)
    line = the_error_line(err, which)
    assert code != 0 and command in line and "missing.pt" in line, line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_v_target_and_z_give_back_x0_and_eps():
    """v = alpha eps - sigma x0 (distill.v_target) with z = alpha x0 + sigma eps: the rotation back,
    x0 = alpha z - sigma v and eps = sigma z + alpha v, computed here in float64 from alpha_bar alone.
    A flipped sign or swapped alpha and sigma in v_target fails it."""
    generator = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(5, 3, generator=generator).double(), torch.randn(5, 3, generator=generator).double()
    for t in (1, 7, 25, T):
        steps = torch.full((5,), t)
        v = distill.v_target(x0, eps, steps, SCHEDULE)
        alpha, sigma = float(SCHEDULE.alpha_bar[t]) ** 0.5, (1 - float(SCHEDULE.alpha_bar[t])) ** 0.5
        z = alpha * x0 + sigma * eps
        for name, back, truth in (("x0", alpha * z - sigma * v, x0), ("eps", sigma * z + alpha * v, eps)):
            gap = (back - truth).abs().max().item()
            assert gap < 1e-6, f"t = {t}: {name} from (z, v) misses by {gap:.2e}"


def test_the_exact_v_of_gaussian_data_presented_as_eps_is_the_exact_eps():
    """distill.VAsEps on the exact v-network of Gaussian data, E[v | z_t] = alpha E[eps | z_t] - sigma
    E[x0 | z_t] with E[x0 | z_t] = alpha DATA_STD^2 z_t / Var(z_t) (the known conditional), answers
    the exact eps, gaussian_eps, at every t; and the x0_hat its jumps take is alpha z - sigma v."""
    def exact_v(z, t):
        alpha_bar = common.at(SCHEDULE.alpha_bar, t).to(z)
        alpha, sigma, var = alpha_bar.sqrt(), (1 - alpha_bar).sqrt(), alpha_bar * DATA_STD ** 2 + 1 - alpha_bar
        return alpha * sigma * z / var - sigma * alpha * DATA_STD ** 2 * z / var, None

    network = distill.VAsEps(exact_v, SCHEDULE)
    z = torch.randn(6, 2, generator=torch.Generator().manual_seed(1)).double()
    for t in (1, 2, 20, T):
        steps = torch.full((6,), t)
        gap = (network(z, steps)[0] - gaussian_eps(z, steps)[0]).abs().max().item()
        assert gap < 1e-9, f"t = {t}: VAsEps(exact v) misses the exact eps by {gap:.2e}"
        alpha_bar = float(SCHEDULE.alpha_bar[t])
        x0_hat = alpha_bar ** 0.5 * z - (1 - alpha_bar) ** 0.5 * exact_v(z, steps)[0]
        gap = (distill.predict_x0(network, z, steps, SCHEDULE) - x0_hat).abs().max().item()
        assert gap < 1e-9, f"t = {t}: the jumps' x0_hat misses alpha z - sigma v by {gap:.2e}"


def test_the_v_teacher_learns_a_point_mass_whose_x0_hat_it_then_recovers():
    """The chapter's train_v_teacher on data that is one image c: taught for 150 iterations from a
    fresh UNet's weights on ||v - v_theta||^2 and read through distill.VAsEps, its
    x0_hat = alpha z - sigma v_hat lands within 0.2 of c at every t (untrained: 0.19 to 0.46). A loop
    that trained on eps, or on -v, and then read its output as v would miss c by about alpha_t |z|."""
    from conftest import load_script
    from unet import UNet
    chapter14 = load_script("14_one_step.py")
    schedule = pictures.image_schedule(40, 1e-2, -8.3, "cosine")
    c = torch.linspace(-0.8, 0.8, 64)
    torch.manual_seed(0)
    teacher = chapter14.train_v_teacher(UNet(8), 150, {"batch_size": 32, "lr": 3e-3}, schedule,
                                        lambda n: c.expand(n, 64).clone(), torch.Generator().manual_seed(0), "cpu")
    z = torch.randn(200, 64, generator=torch.Generator().manual_seed(1))
    for t in (5, 15, 25, 40):
        alpha, sigma = distill.signal_and_noise(t, schedule, z)
        with torch.no_grad():
            x0_hat = distill.predict_x0(teacher, alpha * c + sigma * z, torch.full((200,), t), schedule)
        miss = (x0_hat - c).abs().mean().item()
        assert miss < 0.2, f"t = {t}: the v-teacher's x0_hat misses the point mass by {miss:.3f} on average"


def test_the_v_teacher_starts_from_the_eps_networks_weights_and_leaves_them_untouched():
    """train_v_teacher is taught from chapter 8's weights, not from a fresh network: after one step
    of a vanishing step size its weights are the eps-network's (a fresh UNet's differ by 0.7); and
    the eps-network it was handed, which the chapter still scores, is not changed by a real step."""
    from conftest import load_script
    from unet import UNet
    chapter14 = load_script("14_one_step.py")
    schedule = pictures.image_schedule(40, 1e-2, -8.3, "cosine")
    torch.manual_seed(0)
    eps_unet = UNet(8)
    with torch.no_grad():   # an eps-network whose output layer is not the fresh one's zero
        for parameter in eps_unet.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape))
    before = {name: value.clone() for name, value in eps_unet.state_dict().items()}
    draw = lambda n: torch.rand(n, 64) * 2 - 1  # noqa: E731
    for lr, tolerance in ((1e-12, 1e-6), (1e-2, None)):
        teacher = chapter14.train_v_teacher(eps_unet, 1, {"batch_size": 4, "lr": lr}, schedule, draw,
                                            torch.Generator().manual_seed(0), "cpu")
        if tolerance:
            taught = teacher.network.unet.state_dict()
            gap = max((taught[name] - value).abs().max().item() for name, value in before.items())
            assert gap < tolerance, f"the v-teacher does not start from the eps-network's weights: off by {gap:.2e}"
    moved = max((eps_unet.state_dict()[name] - value).abs().max().item() for name, value in before.items())
    assert moved == 0, f"teaching the v-teacher changed the eps-network it was given by {moved:.2e}"


@pytest.mark.parametrize("student, written", [("consistency", (8, 4, 2, 1)), ("rounds", (4, 2, 1))])
def test_the_digits_students_learn_from_a_v_teacher_taught_from_chapter_8s_network(student, written, tmp_path,
                                                                                   monkeypatch, capsys,
                                                                                   keep_process_settings):
    """The script's digits part on tiny settings: a v-teacher taught for --teacher-iters (not the
    checkpoint's 3 iterations) with the batch the chapter 8 checkpoint names, then either student
    down to 1 call, every student's samples written. The sample scores (tested in test_two_sample.py
    and test_digits.py) are stubbed: seconds each."""
    from test_robustness import call_main
    from unet import UNet
    import digits
    scores = {"confident": 0.5, "two_sample": 0.5}
    monkeypatch.setattr(digits, "real_digit_scores", lambda *args: scores)
    monkeypatch.setattr(digits, "score_samples", lambda *args: scores)
    torch.manual_seed(0)
    checkpoints.save_checkpoint(tmp_path / "ddpm.pt", ReverseModel(covariance="none"), SCHEDULE,
                                argparse.Namespace(iters=1), 1)
    settings = argparse.Namespace(iters=3, batch_size=16, lr=1e-3, x0_form="centres")
    checkpoints.save_unet_checkpoint(tmp_path / "unet.pt", UNet(8), pictures.image_schedule(40, 1e-2, -8.3, "cosine"),
                                     settings, 3)
    code, out, err = call_main("14_one_step.py", [
        "--roll-checkpoint", tmp_path / "ddpm.pt", "--digits-checkpoint", tmp_path / "unet.pt", "--teacher-calls", 4,
        "--roll-iters", 2, "--n-samples", 50, "--digits-iters", 2, "--teacher-iters", 2, "--n-digits", 20, "--images", tmp_path,
        "--out-dir", tmp_path / "out", "--digits-student", student], monkeypatch, capsys)
    assert code == 0, err
    assert "v-teacher trained, 2 iterations of 16" in out and "digits:  1 call" in out, out
    for calls in written:
        assert np.load(tmp_path / "out" / f"digits_{calls}.npy").shape == (20, 8, 8)


def path_end_network(teacher, grid):
    """An eps-network whose x0_hat at a time t of the grid is the end of the teacher's DDIM path from
    z_t along the rest of the grid: the exact consistency function of that teacher on that grid."""
    def network(z, steps):
        ends = z.clone()   # off the grid (the clamped t = 0 of consistency_end, discarded): anything
        for t in set(steps.unique().tolist()) & set(grid):
            rows = steps == t
            ends[rows] = distill.sample(teacher, grid[grid.index(t):], z[rows], SCHEDULE)
        alpha, sigma = distill.signal_and_noise(steps, SCHEDULE, z)
        return (z - alpha * ends) / sigma, None
    return network


def test_renoise_times_start_at_T_and_end_on_the_lowest_noise_times_of_the_8_call_grid():
    schedule = pictures.image_schedule(200, 1e-2, -8.3, "cosine")   # chapter 8's digits
    grid = distill.log_snr_grid(schedule, 8)
    assert distill.renoise_times(schedule, 4) == [200, 103, 51, 18], distill.renoise_times(schedule, 4)
    assert distill.renoise_times(schedule, 1) == [200] and distill.renoise_times(schedule, 8) == grid[:-1]
    for calls in range(2, 9):
        times = distill.renoise_times(schedule, calls)
        assert len(times) == calls and times[-1] == grid[-2] and times == sorted(set(times), reverse=True), times
    with pytest.raises(ValueError, match="from 1 to 8"):
        distill.renoise_times(schedule, 9)


def test_consistency_end_is_z_at_t_0_and_x0_hat_after():
    teacher = random_eps_network()
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    steps = torch.tensor([0, 1, 0, 17])
    end = distill.consistency_end(teacher, z, steps, SCHEDULE)
    assert torch.equal(end[steps == 0], z[steps == 0])
    x0_hat = distill.predict_x0(teacher, z, steps.clamp(min=1), SCHEDULE)
    assert torch.allclose(end[steps > 0], x0_hat[steps > 0], rtol=0, atol=1e-12)


def test_the_teachers_own_path_end_has_zero_consistency_loss_and_the_teacher_does_not():
    """The consistency loss is zero for the exact consistency function of the teacher's DDIM steps
    on the grid, and well above zero for the teacher itself (one jump from t is not the path's end).
    A target taken one time too far along the grid, or a teacher jump to the wrong time, breaks it."""
    teacher = random_eps_network()
    grid = distill.log_snr_grid(SCHEDULE, 8)
    oracle = path_end_network(teacher, grid)

    def loss_of(student):
        fixed = torch.Generator().manual_seed(5)
        return distill.consistency_loss(student, student, teacher, roll.swiss_roll(2000, fixed).double(), grid,
                                        fixed, SCHEDULE).item()

    assert loss_of(oracle) < 1e-18, loss_of(oracle)
    assert loss_of(teacher) > 1e-3, loss_of(teacher)


def test_the_exact_consistency_function_samples_in_one_call_what_the_teacher_does_on_the_whole_grid():
    teacher = random_eps_network()
    grid = distill.log_snr_grid(SCHEDULE, 8)
    z_T = torch.randn(300, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    one_call = distill.consistency_sample(path_end_network(teacher, grid), [T], z_T, SCHEDULE, None)
    whole_grid = distill.sample(teacher, grid, z_T, SCHEDULE)
    assert torch.allclose(one_call, whole_grid, rtol=0, atol=1e-9), (one_call - whole_grid).abs().max()


def test_consistency_distillation_brings_the_one_call_sample_towards_the_teachers_path_end():
    small = {"hidden": 32, "depth": 2, "n_frequencies": 8}
    teacher = random_eps_network(**small).float()
    grid = distill.log_snr_grid(SCHEDULE, 8)
    generator = torch.Generator().manual_seed(0)
    z_T = torch.randn(2000, 2, generator=torch.Generator().manual_seed(6))
    path_end = distill.sample(teacher, grid, z_T, SCHEDULE)

    def gap(network):
        return (distill.consistency_sample(network, [T], z_T, SCHEDULE, None) - path_end).square().sum(1).mean().item()

    student, losses = distill.consistency_distillation(teacher, grid, lambda: roll.swiss_roll(128, generator),
                                                       iters=150, lr=1e-3, generator=generator, schedule=SCHEDULE,
                                                       target_decay=0.95)
    assert len(losses) == 150
    assert gap(student) < 0.5 * gap(teacher), f"one call's distance to the path's end: {gap(teacher):.4f} -> {gap(student):.4f}"


def test_a_loss_that_is_not_a_number_stops_the_script_in_one_line_with_nothing_written(tmp_path, monkeypatch, capsys,
                                                                                      keep_process_settings):
    from test_robustness import call_main, the_error_line
    torch.manual_seed(0)
    checkpoints.save_checkpoint(tmp_path / "ddpm.pt", ReverseModel(covariance="none"), SCHEDULE,
                                argparse.Namespace(iters=1), 1)
    monkeypatch.setattr(distill, "distillation_loss", lambda *args: torch.tensor(float("nan"), requires_grad=True))
    code, _, err = call_main("14_one_step.py", ["--roll-checkpoint", tmp_path / "ddpm.pt", "--teacher-calls", 4,
                                                "--roll-iters", 2, "--n-samples", 50, "--digits-iters", 0,
                                                "--images", tmp_path / "images", "--out-dir", tmp_path / "out"],
                             monkeypatch, capsys)
    line = the_error_line(err, "nan")
    assert code != 0 and "nothing was written" in line, line
    for folder in ("images", "out"):
        assert not (tmp_path / folder).exists() or not any((tmp_path / folder).iterdir()), folder
