"""Lab note (docs/chapter14.md, "A v-teacher"): Salimans and Ho's recipe for the digits. Chapter 8's
UNet is trained again, at chapter 8's settings, to output v = alpha_t eps - sigma_t x0 instead of
eps; chapter 14's rounds then distil it, with every function of distill.py unchanged.

Why it could help: the students of chapter 14 output eps, and x0_hat = (z_t - sigma_t eps_hat) /
alpha_t multiplies an eps error by sigma_t / alpha_t (63 at the digits' t = T). A v-network's
x0_hat = alpha_t z_t - sigma_t v_hat multiplies a v error by sigma_t <= 1. The wrapper below
presents the v-network as an eps-network, eps_hat = alpha_t v_hat + sigma_t z_t (the same x0_hat,
exactly), so that distill.py's DDIM jumps, targets and loss need no change.

    PYTHONPATH=scripts python docs/v_teacher.py                      # 1,500 iterations, then the rounds
    PYTHONPATH=scripts python docs/v_teacher.py --reuse --checkpoint /tmp/v/unet.pt
"""
import copy
import time

import torch

import cli
import distill
import digits
import pictures
import runs

chapter8 = cli.load_chapter("08_pictures.py")
chapter14 = cli.load_chapter("14_one_step.py")


class VAsEps(torch.nn.Module):
    """A v-network on points (n, 64) answering as an eps-network: (alpha_t v_hat + sigma_t z, None)."""

    def __init__(self, unet, schedule):
        super().__init__()
        self.net, self.schedule = distill.OnPoints(unet), schedule

    def forward(self, z, t):
        alpha, sigma = distill.signal_and_noise(t, self.schedule, z)
        return alpha * self.net(z, t)[0] + sigma * z, None


def train_v(args, model, schedule, train_levels, generator, device):
    """Chapter 8's Algorithm 1 with the v target: ||v - v_theta(z_t, t)||^2, t from 1 (the decoder's
    step is learned too), the same Adam, cosine decay and moving average as chapter8.train."""
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    average, net = copy.deepcopy(model), distill.OnPoints(model)
    levels, began = torch.as_tensor(train_levels), time.perf_counter()
    for i in range(args.iters):
        pick = torch.randint(len(levels), (args.batch_size,), generator=generator)
        x0 = pictures.flat(pictures.training_pixels(levels[pick], "centres", generator)).to(device)
        t = torch.randint(1, schedule.T + 1, (args.batch_size,), generator=generator).to(device)
        eps = torch.randn(x0.shape, generator=generator).to(device)
        alpha, sigma = distill.signal_and_noise(t, schedule, x0)
        loss = (alpha * eps - sigma * x0 - net(alpha * x0 + sigma * eps, t)[0]).square().sum(1).mean()
        runs.take_step(optimizer, loss, runs.cosine_decay(i, args.iters, args.lr))
        chapter8.update_average(average, model, i)
    print(f"v-teacher: {args.iters} iterations in {time.perf_counter() - began:.0f} s; last batch "
          f"||v - v_theta||^2 = {loss.item():.2f}")
    torch.save(average.state_dict(), args.checkpoint)
    return average.eval()


def main():
    parser = chapter8.make_parser()
    parser.add_argument("--digits-iters", type=cli.positive_int, default=chapter14.DIGITS_ITERS)
    parser.add_argument("--digits-lr", type=cli.positive_float, default=chapter14.DIGITS_LR)
    parser.add_argument("--teacher-calls", type=cli.positive_int, default=chapter14.TEACHER_CALLS)
    parser.set_defaults(checkpoint=cli.OUTPUTS / "v_teacher.pt")   # never chapter 8's own checkpoint
    args, device, generator = chapter8.prepare(parser)
    split = digits.load_split()
    model, schedule, _ = chapter8.network_and_schedule(args, device)
    if args.reuse:
        model.load_state_dict(torch.load(args.checkpoint, map_location=device))
        unet = model.eval()
    else:
        unet = train_v(args, model, schedule, split[0], generator, device)
    classifier = digits.fit_digit_classifier(split[0], split[1])
    train = torch.as_tensor(split[0])
    rounds = torch.Generator().manual_seed(args.seed)   # as chapter 14's digits: a generator of their own

    def score(z):
        scores = digits.score_samples(digits.to_levels(z), split, classifier, args.seed)
        return f"confident {scores['confident']:.3f}  two-sample accuracy {scores['two_sample']:.3f}"

    def draw_x0():
        pick = train[torch.randint(len(train), (chapter14.DIGITS_BATCH,), generator=rounds)]
        return pictures.flat(pictures.training_pixels(pick, "centres", rounds)).to(device)

    teacher = VAsEps(unet, schedule).eval()
    z_T = torch.randn(1000, digits.PIXELS, generator=rounds).to(device)
    reference = distill.sample(teacher, distill.log_snr_grid(schedule, chapter14.DDIM_REFERENCE), z_T, schedule)
    print(f"digits (v-teacher): DDIM at {chapter14.DDIM_REFERENCE} calls: {score(reference)}")
    chapter14.progressive_distillation(teacher, schedule, args.teacher_calls, draw_x0, args.digits_iters,
                                       args.digits_lr, rounds, score, z_T, "digits (v)")


if __name__ == "__main__":
    main()
