"""Lab note (docs/chapter14.md, "Consistency distillation on the roll"): the other route to one
step (Song, Dhariwal, Chen and Sutskever 2023). One training run instead of rounds: a student f,
a copy of chapter 5's eps-network read as x0_hat, learns to send two neighbouring points of a
teacher's path, z_t and the teacher's one DDIM jump from it, to the same end (distill.consistency_loss,
its target a moving average of the student). It is then sampled with 1, 2 and 4 calls (multistep
consistency sampling: the end, noised again to a later time, its end again) and scored as chapter
14's rounds are, at the same student training: 5 rounds x 800 iterations = 4,000 iterations of
1,024 points.

    PYTHONPATH=scripts python docs/consistency.py
    PYTHONPATH=scripts python docs/consistency.py --target-decay 0.99
"""
import argparse
import pathlib
import time

import torch

import checkpoints
import cli
import distill
import roll

chapter14 = cli.load_chapter("14_one_step.py")
ITERS = 5 * chapter14.ROLL_ITERS   # the progressive rounds' iterations, all five
TARGET_DECAY = 0.95                # the target network's moving average (Song et al.'s mu for CIFAR-10)
CALLS = (1, 2, 4)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=cli.positive_int, default=ITERS)
    parser.add_argument("--lr", type=cli.positive_float, default=chapter14.ROLL_LR)
    parser.add_argument("--target-decay", type=cli.share, default=TARGET_DECAY)
    parser.add_argument("--grid-calls", type=cli.whole_number(2), default=chapter14.TEACHER_CALLS,
                        help="the teacher's grid: its DDIM jumps, as chapter 14's first teacher")
    parser.add_argument("--roll-checkpoint", type=pathlib.Path, default=checkpoints.DDPM_CHECKPOINT)
    parser.add_argument("--seed", type=cli.seed_int, default=0)
    args = parser.parse_args()
    try:
        teacher, schedule, _ = checkpoints.load_eps_network(args.roll_checkpoint)
    except checkpoints.CheckpointError as error:
        parser.exit(1, f"error: {error}\n")
    generator = torch.Generator().manual_seed(args.seed)
    grid = distill.log_snr_grid(schedule, args.grid_calls)
    began = time.perf_counter()
    student, losses = distill.consistency_distillation(
        teacher, grid, lambda: roll.swiss_roll(chapter14.ROLL_BATCH, generator), args.iters, args.lr, generator,
        schedule, args.target_decay)
    print(f"consistency distillation: {args.iters} iterations of {chapter14.ROLL_BATCH} points on the teacher's "
          f"{args.grid_calls}-jump grid, target decay {args.target_decay}, {time.perf_counter() - began:.0f} s, "
          f"loss {chapter14.head_and_tail(losses)}")
    z_T = torch.randn(chapter14.N_SAMPLES, 2, generator=torch.Generator().manual_seed(args.seed))
    for calls in CALLS:
        times = distill.log_snr_grid(schedule, calls)[:-1]   # T, then later times spread evenly in log SNR
        x = distill.consistency_sample(student, times, z_T, schedule, torch.Generator().manual_seed(args.seed + 1))
        print(f"consistency: {calls} call{'s' * (calls > 1)}{' ' * (calls == 1)}  {chapter14.roll_score(x)}   "
              f"(times {times})")


if __name__ == "__main__":
    main()
