"""Chapter 14: one step. README section "14. One step: distilling the sampler".

Below about ten jumps every ODE solver falls apart: one straight jump from noise cannot follow a
curved path. Progressive distillation (Salimans & Ho 2022) trains a student, a copy of its
teacher, so that one of its DDIM jumps lands where two of the teacher's do; the student then
teaches the next round, and each round halves the network calls. This script
- draws the teacher's ODE paths on the roll beside the straight line a single jump takes;
- distils chapter 5's eps-network from 32 calls down to 1, every round printed beside DDIM with
  the teacher at the same calls (steps, seconds, off the curve, W1(u): chapter 4's scores);
- on the digits, teaches chapter 8's network to output v = alpha_t eps - sigma_t x0 instead of eps
  (the rounds of an eps-teacher lose the digits below 8 calls: `--digits-teacher eps
  --digits-student rounds` shows it), then distils it by the other route, consistency distillation
  (Song et al. 2023): one student that maps any point of the teacher's path to its end, sampled at
  8, 4, 2 and 1 calls beside DDIM at the same calls, each chain ending as chapter 8's on the
  discrete decoder's most likely level and scored with chapter 8's sample scores
  (`--digits-student rounds`: the rounds instead, which fall behind DDIM at 20 calls from 4 calls
  down).

Writes images/14_paths.png, 14_roll.png and 14_digits.png, and the students' samples to
outputs/one_step/: roll_{calls}.npy ((N, 2) points) and digits_{calls}.npy ((N, 8, 8) levels).
"""
import argparse
import copy
import pathlib
import time

import torch
from tqdm import tqdm

import checkpoints
import cli
import common
import digits
import distill
import distill_figures
import pictures
import roll
import runs

TEACHER_CALLS = 32      # the teacher's DDIM jumps, spread evenly in log SNR; each round halves them
ROLL_ITERS = 800        # iterations per round on the roll
ROLL_BATCH = 1024       # roll points per iteration
ROLL_LR = 1e-3          # Adam's step size, decayed on a cosine within each round
DIGITS_STUDENT = "consistency"                     # the digits' student: consistency or rounds
DIGITS_ITERS = {"consistency": 1000, "rounds": 300}  # consistency's iterations in all; the rounds' per round
DIGITS_LR = {"consistency": 1e-3, "rounds": 2e-4}    # Adam's peak step size, cosine-decayed
DIGITS_BATCH = 128      # digits per iteration (chapter 8's batch, for the v-teacher too)
TARGET_DECAY = 0.95     # consistency's target network: a moving average of the student at this rate
DIGITS_TEACHER = "v"    # what the digits' teacher outputs: v (taught here) or eps (chapter 8's own network)
TEACHER_ITERS = 750     # the v-teacher's iterations from chapter 8's eps-network, half of chapter 8's training
TEACHER_EMA = 0.999     # the v-teacher's moving average, chapter 8's
N_SAMPLES = 5000        # roll samples per sampler
N_DIGITS = 1000         # digit samples per sampler (as chapter 8)
DDIM_REFERENCE = 20     # chapter 8's DDIM comparison: the digits' DDIM at this many calls too
SHOWN_CALLS = (8, 4, 2, 1)
N_PATHS = 14            # paths in the figure


def parse_arguments():
    """The command line, checked before any work; the two teachers loaded, or one line naming the
    command that makes a missing one."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher-calls", type=cli.whole_number(2), default=TEACHER_CALLS,
                        help="the first teacher's DDIM calls, a power of two (default: %(default)s)")
    parser.add_argument("--roll-iters", type=cli.positive_int, default=ROLL_ITERS,
                        help="iterations per round on the roll (default: %(default)s)")
    parser.add_argument("--roll-lr", type=cli.positive_float, default=ROLL_LR,
                        help="peak Adam step size of each round on the roll (default: %(default)s)")
    parser.add_argument("--digits-student", choices=("consistency", "rounds"), default=DIGITS_STUDENT,
                        help="consistency: one consistency student; rounds: progressive rounds as on the roll "
                             "(default: %(default)s)")
    parser.add_argument("--digits-iters", type=cli.whole_number(0),
                        help="the digits' iterations, in all for consistency, per round for the rounds; 0 skips "
                             f"the digits (default: {DIGITS_ITERS['consistency']} for consistency, "
                             f"{DIGITS_ITERS['rounds']} a round)")
    parser.add_argument("--digits-teacher", choices=("v", "eps"), default=DIGITS_TEACHER,
                        help="v: chapter 8's network taught to output v; eps: chapter 8's network itself "
                             "(default: %(default)s)")
    parser.add_argument("--teacher-iters", type=cli.positive_int, default=TEACHER_ITERS,
                        help="the v-teacher's iterations from chapter 8's weights (default: %(default)s)")
    parser.add_argument("--n-samples", type=cli.whole_number(20), default=N_SAMPLES,
                        help="roll samples per sampler (default: %(default)s)")
    parser.add_argument("--n-digits", type=cli.whole_number(20), default=N_DIGITS,
                        help="digit samples per sampler (default: %(default)s)")
    parser.add_argument("--roll-checkpoint", type=pathlib.Path, default=checkpoints.DDPM_CHECKPOINT,
                        help="chapter 5's eps-network (default: outputs/ddpm.pt)")
    parser.add_argument("--digits-checkpoint", type=pathlib.Path, default=checkpoints.PICTURES_CHECKPOINT,
                        help="chapter 8's UNet (default: outputs/pictures/unet.pt)")
    parser.add_argument("--out-dir", type=pathlib.Path, default=cli.OUTPUTS / "one_step",
                        help="folder for the students' samples (default: outputs/one_step)")
    cli.add_standard_args(parser)
    args, device, generator = cli.parse_and_prepare(parser)
    if args.digits_iters is None:
        args.digits_iters = DIGITS_ITERS[args.digits_student]
    if args.teacher_calls & (args.teacher_calls - 1):
        parser.error(f"--teacher-calls must be a power of two, so that rounds can halve it, got {args.teacher_calls}")
    cli.writable_dir_or_exit(parser, args.out_dir, "the samples")
    try:
        roll_teacher, roll_schedule, _ = checkpoints.load_eps_network(args.roll_checkpoint, device)
        unet = (checkpoints.load_unet_checkpoint(args.digits_checkpoint, device, conditional=False)
                if args.digits_iters else None)
    except checkpoints.CheckpointError as error:
        parser.exit(1, f"error: {error}\n")
    if args.teacher_calls >= roll_schedule.T or (unet and args.teacher_calls >= unet[1].T):
        parser.error(f"--teacher-calls must be below the schedules' T, got {args.teacher_calls}")
    if unet and args.digits_teacher == "v" and not {"batch_size", "lr"} <= unet[2]["args"].keys():
        parser.exit(1, f"error: {args.digits_checkpoint} does not say how it was trained (batch_size, lr), "
                       f"which the v-teacher is taught with: run `{checkpoints.PICTURES_COMMAND}` to make one, or give "
                       f"--digits-teacher eps\n")
    return args, device, generator, (roll_teacher, roll_schedule), unet


def progressive_distillation(teacher, schedule, calls, draw_x0, iters, lr, generator, score, z_T, name):
    """Rounds from `calls` down to 1, each printed beside DDIM at the same calls (README "Rounds on
    the roll"). Returns {calls: (student samples, DDIM samples)} and the last student."""
    grid = distill.log_snr_grid(schedule, calls)
    ddim_samples = distill.sample(teacher, grid, z_T, schedule)
    print(f"{name}: teacher, DDIM at {calls} calls: {score(ddim_samples)}")
    samples, student = {calls: (ddim_samples, ddim_samples)}, teacher
    while len(grid) > 2:
        began = time.perf_counter()
        student, grid, losses = distill.distill_round(student, grid, draw_x0, iters, lr, generator, schedule)
        seconds = time.perf_counter() - began
        calls = len(grid) - 1
        ddim_samples = distill.sample(teacher, distill.log_snr_grid(schedule, calls), z_T, schedule)
        samples[calls] = (distill.sample(student, grid, z_T, schedule), ddim_samples)
        print(f"{name}: {calls_and_scores(calls, samples[calls], score)}   [round: {iters} iterations, {seconds:.0f} s, "
              f"loss {head_and_tail(losses)}]", flush=True)
    return samples, student


def calls_and_scores(calls, student_and_ddim, score):
    """One printed line's middle: the calls, then the student's scores and DDIM's at those calls."""
    student, ddim_samples = student_and_ddim
    return f"{calls:2d} call{'s' * (calls > 1)}{' ' * (calls == 1)}  student {score(student)}   DDIM {score(ddim_samples)}"


def head_and_tail(losses):
    """The mean loss of the first and of the last 50 iterations, as 'first -> last'."""
    return "{:.4f} -> {:.4f}".format(*runs.first_and_last(losses))


def roll_score(x):
    """Chapter 4's scores in one short line: off the curve and W1(u) against the data's law."""
    scores = roll.score_samples(x.cpu())
    return f"off the curve {100 * scores['off_curve']:5.2f}%  W1(u) {scores['w1_u']:.4f}"


def distil_roll(args, teacher, schedule, generator, device):
    """README "Rounds on the roll": chapter 5's eps-network from --teacher-calls to 1 call."""
    lo, hi = roll.w1_band(args.n_samples)
    print(f"real roll samples of this size: W1(u) {lo:.4f}-{hi:.4f} (5-95%)")
    z_T = torch.randn(args.n_samples, 2, generator=generator).to(device)
    return progressive_distillation(teacher, schedule, args.teacher_calls,
                                    lambda: roll.swiss_roll(ROLL_BATCH, generator).to(device),
                                    args.roll_iters, args.roll_lr, generator, roll_score, z_T, "roll")


def draw_paths(teacher, student, schedule, calls, generator, device, path):
    """README "Why solvers stop at about ten steps": the teacher's paths (DDIM at --teacher-calls,
    close to its ODE), where one teacher jump lands, and where the one-call student lands."""
    z_T = torch.randn(N_PATHS, 2, generator=generator).to(device)
    grid = distill.log_snr_grid(schedule, calls)
    points = [z_T]
    for t, s in zip(grid, grid[1:]):
        points.append(distill.sample(teacher, [t, s], points[-1], schedule))
    paths = torch.stack(points).cpu()
    one_teacher = distill.sample(teacher, [grid[0], 0], z_T, schedule).cpu()
    one_student = distill.sample(student, [grid[0], 0], z_T, schedule).cpu()
    distill_figures.paths_and_jumps(z_T.cpu(), paths, one_teacher, one_student, calls, path)


def train_v_teacher(eps_unet, iters, settings, schedule, draw_x0, generator, device):
    """README "On the digits": chapter 8's eps-network taught to output v = alpha_t eps - sigma_t x0
    instead: `iters` iterations from its weights on ||v - v_theta(z_t, t)||^2, as chapter 8 trains
    (its data, batch, step size and moving average, t from 1); returned as an eps-network
    (distill.VAsEps). Its features stay; where SNR is high v is nearly eps, so mostly the output
    at low SNR, v near -x0, is learned anew."""
    model = copy.deepcopy(eps_unet).train()
    network, average = distill.OnPoints(model), copy.deepcopy(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings["lr"])
    began = time.perf_counter()
    for i in tqdm(range(iters), desc="v-teacher"):
        x0 = draw_x0(settings["batch_size"])
        t = torch.randint(1, schedule.T + 1, (len(x0),), generator=generator).to(device)
        eps = torch.randn(x0.shape, generator=generator).to(device)
        v_hat = network(common.x_t_from_eps(x0, eps, t, schedule), t)[0]
        loss = (distill.v_target(x0, eps, t, schedule) - v_hat).square().sum(1).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the v-teacher's loss became {loss.item()} at iteration {i + 1}")
        runs.take_step(optimizer, loss, runs.cosine_decay(i, iters, settings["lr"]))
        runs.update_average(average, model, i, TEACHER_EMA)
    print(f"digits: v-teacher trained, {iters} iterations of {settings['batch_size']} in "
          f"{time.perf_counter() - began:.0f} s; last batch ||v - v_theta||^2 = {loss.item():.2f}")
    return distill.VAsEps(distill.OnPoints(average.eval()), schedule)


def distil_digits(args, unet, schedule, settings, generator, device):
    """README "On the digits": the teacher (chapter 8's UNet, or the v-teacher taught from it)
    distilled by --digits-student from --teacher-calls, scored with chapter 8's sample scores.
    Returns {calls: (student samples, DDIM samples)}, each pixel at its level's centre."""
    split = digits.load_split()
    classifier = digits.fit_digit_classifier(split[0], split[1])
    train = torch.as_tensor(split[0])
    x0_form = settings.get("x0_form", "dequantised")

    def score(z):   # the chain ended as chapter 8's: the most likely level of the decoder N(x0_hat, beta_1)
        scores = digits.score_samples(digits.to_levels(pictures.end_on_levels(z, schedule, x0_form)), split,
                                      classifier, args.seed)
        return f"confident {scores['confident']:.3f}  two-sample accuracy {scores['two_sample']:.3f}"

    def draw_x0(n=DIGITS_BATCH):   # the teacher's own training pixels: chapter 8's levels' centres (or an older run's dequantised)
        pick = train[torch.randint(len(train), (n,), generator=generator)]
        return pictures.flat(pictures.training_pixels(pick, x0_form, generator)).to(device)

    real = digits.real_digit_scores(split, classifier, args.seed)
    print(f"held-out digits: confident {real['confident']:.3f}  two-sample accuracy against training "
          f"digits {real['two_sample']:.3f}")
    teacher = distill.OnPoints(unet).eval()
    z_T = torch.randn(args.n_digits, digits.PIXELS, generator=generator).to(device)
    reference = distill.sample(teacher, distill.log_snr_grid(schedule, DDIM_REFERENCE), z_T, schedule)
    print(f"digits: chapter 8's eps-network, DDIM at {DDIM_REFERENCE} calls: {score(reference)}")
    if args.digits_teacher == "v":
        teacher = train_v_teacher(unet, args.teacher_iters, settings, schedule, draw_x0, generator, device)
        reference = distill.sample(teacher, distill.log_snr_grid(schedule, DDIM_REFERENCE), z_T, schedule)
        print(f"digits: the v-teacher, DDIM at {DDIM_REFERENCE} calls: {score(reference)}")
    if args.digits_student == "rounds":
        samples = progressive_distillation(teacher, schedule, args.teacher_calls, draw_x0, args.digits_iters,
                                           DIGITS_LR["rounds"], generator, score, z_T, "digits")[0]
    else:
        samples = consistency_student(teacher, schedule, args.teacher_calls, draw_x0, args.digits_iters, generator,
                                      score, z_T)
    return {calls: tuple(pictures.end_on_levels(z, schedule, x0_form) for z in pair)
            for calls, pair in samples.items()}


def consistency_student(teacher, schedule, teacher_calls, draw_x0, iters, generator, score, z_T):
    """README "On the digits": one run of consistency distillation on the teacher's DDIM grid of
    `teacher_calls` calls (distill.consistency_distillation), then the student's samples at 8, 4, 2
    and 1 calls (distill.renoise_times) beside DDIM with the teacher at the same calls. Returns
    {calls: (student samples, DDIM samples)}."""
    began = time.perf_counter()
    student, losses = distill.consistency_distillation(teacher, distill.log_snr_grid(schedule, teacher_calls),
                                                       draw_x0, iters, DIGITS_LR["consistency"], generator,
                                                       schedule, TARGET_DECAY)
    print(f"digits: consistency student trained on the teacher's {teacher_calls}-call grid, {iters} iterations of "
          f"{DIGITS_BATCH} in {time.perf_counter() - began:.0f} s, loss {head_and_tail(losses)}")
    samples = {}
    for shown in SHOWN_CALLS:
        times = distill.renoise_times(schedule, shown)
        samples[shown] = (distill.consistency_sample(student, times, z_T, schedule, generator),
                          distill.sample(teacher, distill.log_snr_grid(schedule, shown), z_T, schedule))
        print(f"digits: {calls_and_scores(shown, samples[shown], score)}   [student's times {times}]", flush=True)
    return samples


def draw_samples(roll_samples, digit_samples, images):
    """README "What the rounds bought": student above DDIM at 8, 4, 2 and 1 calls."""
    distill_figures.student_above_ddim(roll_samples, digit_samples,
                                       [calls for calls in SHOWN_CALLS if calls in roll_samples], images)


def write_samples(out_dir, roll_samples, digit_samples):
    """The students' samples for tools: roll_{calls}.npy (N, 2) and digits_{calls}.npy (N, 8, 8)."""
    for calls, (student, _) in roll_samples.items():
        checkpoints.save_array(out_dir / f"roll_{calls}.npy", student.cpu().numpy())
    for calls, (student, _) in (digit_samples or {}).items():
        checkpoints.save_array(out_dir / f"digits_{calls}.npy", digits.to_levels(student))


def main():
    """The chapter's steps in the README's order: the rounds on the roll, then on the digits; the
    figures (paths and jumps, samples) and the samples for tools once every round is done, so that
    a round whose loss stops being a number leaves no file half-written."""
    args, device, generator, (roll_teacher, roll_schedule), unet = parse_arguments()
    try:
        roll_samples, roll_student = distil_roll(args, roll_teacher, roll_schedule, generator, device)
        digit_samples = None
        if unet is not None:   # a generator of its own: the digits' numbers do not depend on the roll's settings
            digit_samples = distil_digits(args, unet[0], unet[1], unet[2]["args"],
                                          torch.Generator().manual_seed(args.seed), device)
    except FloatingPointError as error:
        raise SystemExit(f"error: {error}; nothing was written: try another --seed (or, on the roll, a smaller --roll-lr)")
    draw_paths(roll_teacher, roll_student, roll_schedule, args.teacher_calls, generator, device,
               args.images / "14_paths.png")
    draw_samples(roll_samples, digit_samples, args.images)
    write_samples(args.out_dir, roll_samples, digit_samples)
    print(f"wrote {args.images}/14_paths.png, 14_roll.png{', 14_digits.png' if unet else ''} and the "
          f"students' samples to {args.out_dir}")


if __name__ == "__main__":
    main()
