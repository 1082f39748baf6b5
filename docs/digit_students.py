"""Lab note (docs/chapter14.md, "The digits' 4-call student"): chapter 14's students of the
digits' v-teacher, one lever at a time, scored with chapter 8's sample scores (confident share,
two-sample accuracy) on the same 1,000 draws of z_T, each chain ended as chapter 14 ends it, on
the decoder's most likely level (pictures.end_on_levels; until December 2026, on the bin of x0_hat).

The rounds (this script's default; the chapter's with --digits-student rounds): chapter 14's
progressive rounds from 32 calls, each student sampled three ways: ddim, the chapter's
deterministic jumps; twice-back, a deterministic jump two of the student's times ahead and the
forward chain's noise back to the next time; ancestral, the posterior q(z_s | z_t, x0 = x0_hat)
with the student's x0_hat. Levers: --iters, --batch, --lr,
--student-ema (a moving average of each student), --first-jumps (the first round makes that many
teacher jumps in one: 8 goes from 32 calls to 4 in one round).

--consistency N: N iterations of consistency distillation (distill.consistency_distillation) in
place of the rounds, sampled at several sets of re-noise times (Song et al. 2023 choose theirs by
search too).

The v-teacher is taught as the chapter teaches it and, with --teacher-cache, saved with the
generator's state, so that every lever starts where the rounds start; --student-cache does the same
for a consistency student (another --seed then scores it on other noise). The lab notes' tables
before the chapter's v-teacher started from chapter 8's weights ran at commit 1baff10, where this
script trained it from fresh weights for chapter 8's 1,500 iterations.

    PYTHONPATH=scripts python docs/digit_students.py --teacher-cache outputs/one_step/v_teacher_taught.pt
    PYTHONPATH=scripts python docs/digit_students.py --teacher-cache outputs/one_step/v_teacher_taught.pt \
        --consistency 1500 --lr 1e-3 --student-cache outputs/one_step/consistency_taught.pt
"""
import argparse
import copy
import pathlib
import time

import torch

import checkpoints
import cli
import common
import digits
import distill
import pictures
import runs

chapter14 = cli.load_chapter("14_one_step.py")
SAMPLERS = ("ddim", "twice-back", "ancestral")
CONSISTENCY_TIMES = ([200, 151], [200, 103], [200, 51], [200, 18], [200, 191, 151, 51], [200, 151, 103, 51],
                     [200, 151, 76, 24], [200, 103, 51, 18], [200, 129, 63, 18])  # re-noise times to try


def forward_noise(z_from, s_from, s_to, schedule, generator):
    """The forward chain from s_from back up to s_to > s_from: q(z_to | z_from) =
    N((alpha_to / alpha_from) z_from, sigma_to^2 - (alpha_to / alpha_from)^2 sigma_from^2)."""
    alpha_f, sigma_f = distill.signal_and_noise(s_from, schedule, z_from)
    alpha_t, sigma_t = distill.signal_and_noise(s_to, schedule, z_from)
    ratio = alpha_t / alpha_f
    noise = torch.randn(z_from.shape, generator=generator).to(z_from)
    return ratio * z_from + torch.sqrt(sigma_t ** 2 - ratio ** 2 * sigma_f ** 2) * noise


def posterior_draw(z_t, x0_hat, t, s, schedule, generator):
    """q(z_s | z_t, x0 = x0_hat) for any s < t: chapter 1's posterior between two times that need not be neighbours."""
    alpha_t, sigma_t = distill.signal_and_noise(t, schedule, z_t)
    alpha_s, sigma_s = distill.signal_and_noise(s, schedule, z_t)
    alpha_ts = alpha_t / alpha_s
    var_ts = sigma_t ** 2 - alpha_ts ** 2 * sigma_s ** 2
    mean = alpha_ts * sigma_s ** 2 / sigma_t ** 2 * z_t + alpha_s * var_ts / sigma_t ** 2 * x0_hat
    noise = torch.randn(z_t.shape, generator=generator).to(z_t)
    return mean + torch.sqrt(var_ts * sigma_s ** 2 / sigma_t ** 2) * noise


@torch.no_grad()
def stochastic_sample(network, grid, z_T, schedule, generator, kind):
    """A student's grid sampled with noise put back at each time (kind twice-back or ancestral)."""
    z = z_T
    for k, (t, s) in enumerate(zip(grid, grid[1:])):
        x0_hat = distill.predict_x0(network, z, t, schedule)
        if s == 0:
            return x0_hat
        if kind == "ancestral":
            z = posterior_draw(z, x0_hat, t, s, schedule, generator)
        else:
            ahead = grid[k + 2]
            z = forward_noise(distill.ddim_jump(z, x0_hat, t, ahead, schedule), ahead, s, schedule, generator)
    return z


def many_jumps_loss(student, teacher, x0, grid, jumps, generator, schedule):
    """distill.distillation_loss with `jumps` teacher jumps per student jump (2 there)."""
    k = torch.randint(0, (len(grid) - 1) // jumps, (x0.shape[0],), generator=generator)
    grid = torch.as_tensor(grid)
    t, end = grid[jumps * k], grid[jumps * k + jumps]
    z_t = common.x_t_from_eps(x0, torch.randn(x0.shape, generator=generator), t, schedule)
    with torch.no_grad():
        z = z_t
        for j in range(jumps):
            now, after = grid[jumps * k + j], grid[jumps * k + j + 1]
            z = distill.ddim_jump(z, distill.predict_x0(teacher, z, now, schedule), now, after, schedule)
        target = distill.distillation_target(z_t, z, t, end, schedule)
    error = (distill.predict_x0(student, z_t, t, schedule) - target).square().sum(1)
    return (distill.truncated_snr_weight(t, schedule).to(x0).squeeze(-1) * error).mean()


def many_jumps_round(teacher, grid, draw_x0, iters, lr, generator, schedule, jumps):
    """distill.distill_round with many_jumps_loss: the grid divided by `jumps`."""
    student = copy.deepcopy(teacher).train()
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    losses = []
    for i in range(iters):
        loss = many_jumps_loss(student, teacher.eval(), draw_x0(), grid, jumps, generator, schedule)
        runs.take_step(optimizer, loss, runs.cosine_decay(i, iters, lr))
        losses.append(loss.item())
    return student.eval(), grid[::jumps], losses


def distil_round_with_average(teacher, grid, draw_x0, iters, lr, generator, schedule, decay):
    """distill.distill_round, the student's moving average returned in its place."""
    student = copy.deepcopy(teacher).train()
    average = copy.deepcopy(teacher).eval()
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    losses = []
    for i in range(iters):
        loss = distill.distillation_loss(student, teacher.eval(), draw_x0(), grid, generator, schedule)
        runs.take_step(optimizer, loss, runs.cosine_decay(i, iters, lr))
        runs.update_average(average, student, i, decay)
        losses.append(loss.item())
    return average, grid[::2], losses


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=cli.positive_int, default=chapter14.DIGITS_ITERS["rounds"], help="iterations a round")
    parser.add_argument("--batch", type=cli.positive_int, default=chapter14.DIGITS_BATCH,
                        help="digits per iteration of the rounds or of consistency (the v-teacher keeps chapter 8's)")
    parser.add_argument("--lr", type=cli.positive_float, default=chapter14.DIGITS_LR["rounds"])
    parser.add_argument("--student-ema", type=cli.share, default=0.0, help="0: no moving average")
    parser.add_argument("--first-jumps", type=cli.whole_number(2), default=2,
                        help="the first round's teacher jumps per student jump")
    parser.add_argument("--first-iters", type=cli.positive_int, help="the first round's iterations (default: --iters)")
    parser.add_argument("--down-to", type=cli.whole_number(1), default=1, help="the last round's calls")
    parser.add_argument("--consistency", type=cli.whole_number(0), default=0,
                        help="iterations of consistency distillation in place of the rounds (0: the rounds)")
    parser.add_argument("--target-decay", type=cli.share, default=chapter14.TARGET_DECAY, help="consistency's target network")
    parser.add_argument("--grid-calls", type=cli.whole_number(2), default=chapter14.TEACHER_CALLS,
                        help="consistency's teacher grid")
    parser.add_argument("--teacher-iters", type=cli.positive_int, default=chapter14.TEACHER_ITERS,
                        help="the v-teacher's iterations from chapter 8's weights")
    parser.add_argument("--teacher-cache", type=pathlib.Path, help="the v-teacher, saved or loaded")
    parser.add_argument("--student-cache", type=pathlib.Path, help="the consistency student, saved or loaded")
    parser.add_argument("--seed", type=cli.seed_int, default=0)
    return parser.parse_args()


def v_teacher(args, unet, schedule, settings, draw_x0, generator):
    """Chapter 14's v-teacher, trained (and saved with the generator's state) or loaded."""
    if args.teacher_cache and args.teacher_cache.exists():
        cached = torch.load(args.teacher_cache)
        if cached.get("teacher_iters") != args.teacher_iters:
            raise SystemExit(f"error: {args.teacher_cache} holds another v-teacher than --teacher-iters "
                             f"{args.teacher_iters} from chapter 8's weights makes: give another --teacher-cache")
        model = copy.deepcopy(unet)
        model.load_state_dict(cached["unet"])
        generator.set_state(cached["generator"])
        return distill.VAsEps(distill.OnPoints(model.eval()), schedule)
    teacher = chapter14.train_v_teacher(unet, args.teacher_iters, settings, schedule, draw_x0, generator, "cpu")
    if args.teacher_cache:
        torch.save({"unet": teacher.network.unet.state_dict(), "generator": generator.get_state(),
                    "teacher_iters": args.teacher_iters}, args.teacher_cache)
    return teacher


def rounds(args, teacher, schedule, draw_x0, generator, z_T, score):
    """Chapter 14's rounds with the levers; each student scored with the three samplers."""
    grid, student = distill.log_snr_grid(schedule, chapter14.TEACHER_CALLS), teacher
    while len(grid) - 1 > args.down_to:
        began = time.perf_counter()
        if args.first_jumps > 2 and student is teacher:
            student, grid, losses = many_jumps_round(student, grid, draw_x0, args.first_iters or args.iters,
                                                     args.lr, generator, schedule, args.first_jumps)
        elif args.student_ema:
            student, grid, losses = distil_round_with_average(student, grid, draw_x0, args.iters, args.lr,
                                                              generator, schedule, args.student_ema)
        else:
            student, grid, losses = distill.distill_round(student, grid, draw_x0, args.iters, args.lr,
                                                          generator, schedule)
        line = [f"{len(grid) - 1:2d} calls ({time.perf_counter() - began:.0f} s):"]
        for kind in SAMPLERS:
            z = (distill.sample(student, grid, z_T, schedule) if kind == "ddim" else
                 stochastic_sample(student, grid, z_T, schedule, torch.Generator().manual_seed(args.seed + 1), kind))
            line.append(f"{kind} {score(z)}")
        print("   ".join(line), flush=True)


def consistency(args, teacher, schedule, draw_x0, generator, z_T, score):
    """Consistency distillation from the v-teacher, sampled at log-SNR times and at CONSISTENCY_TIMES."""
    made_by = {"teacher_iters": args.teacher_iters, "iters": args.consistency, "lr": args.lr, "batch": args.batch}
    if args.student_cache and args.student_cache.exists():
        cached = torch.load(args.student_cache)
        if cached.get("made_by") != made_by:
            raise SystemExit(f"error: {args.student_cache} holds another student than {made_by}: give another "
                             f"--student-cache")
        student = copy.deepcopy(teacher)
        student.load_state_dict(cached["student"])
    else:
        began = time.perf_counter()
        student, losses = distill.consistency_distillation(
            teacher, distill.log_snr_grid(schedule, args.grid_calls), draw_x0, args.consistency, args.lr,
            generator, schedule, args.target_decay)
        print(f"consistency: {args.consistency} iterations, grid {args.grid_calls}, decay {args.target_decay}, "
              f"{time.perf_counter() - began:.0f} s, loss {chapter14.head_and_tail(losses)}")
        if args.student_cache:
            torch.save({"student": student.state_dict(), "made_by": made_by}, args.student_cache)
    for times in [distill.log_snr_grid(schedule, calls)[:-1] for calls in (1, 2, 4, 8)] + list(CONSISTENCY_TIMES):
        z = distill.consistency_sample(student, times, z_T, schedule, torch.Generator().manual_seed(args.seed + 1))
        print(f"consistency {len(times)} calls at {times}: {score(z)}", flush=True)


def main():
    args = parse_arguments()
    unet, schedule, saved = checkpoints.load_unet_checkpoint(checkpoints.PICTURES_CHECKPOINT, "cpu", conditional=False)
    settings = saved["args"]
    generator = torch.Generator().manual_seed(args.seed)
    split = digits.load_split()
    classifier = digits.fit_digit_classifier(split[0], split[1])
    train = torch.as_tensor(split[0])

    def score(z):   # chapter 14's: the chain ended on the decoder's most likely level
        scores = digits.score_samples(digits.to_levels(pictures.end_on_levels(z, schedule, settings["x0_form"])),
                                      split, classifier, args.seed)
        return f"{scores['confident']:.3f} {scores['two_sample']:.3f}"

    def draw_x0(n=chapter14.DIGITS_BATCH):   # chapter 14's draw: the teacher's own training pixels
        pick = train[torch.randint(len(train), (n,), generator=generator)]
        return pictures.flat(pictures.training_pixels(pick, settings["x0_form"], generator))

    z_T = torch.randn(chapter14.N_DIGITS, digits.PIXELS, generator=generator)
    teacher = v_teacher(args, unet, schedule, settings, draw_x0, generator)
    print(f"levers: iters {args.iters}, batch {args.batch}, lr {args.lr}, student-ema {args.student_ema}, first round "
          f"{args.first_jumps} jumps in one, {args.first_iters or args.iters} iterations")
    for calls in (20, 32, 64, schedule.T - 1):
        print(f"teacher DDIM {calls}: {score(distill.sample(teacher, distill.log_snr_grid(schedule, calls), z_T, schedule))}")
    method = consistency if args.consistency else rounds
    method(args, teacher, schedule, lambda: draw_x0(args.batch), generator, z_T, score)


if __name__ == "__main__":
    main()
