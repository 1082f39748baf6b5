"""Chapter 10: filling in. README section "10. Filling in: inpainting".

Run after chapter 9 (scripts/09_guidance.py): its conditional network, with the label null, is
the unconditional model that fills in the hidden pixels of the held-out digits, and its
checkpoint carries chapter 8's schedule. On four masks, three methods that change only the
sampling loop (guidance.inpaint) beside two baselines that need no diffusion model:
1. the training mean filled in, and the training digit nearest on the visible pixels;
2. replacement, RePaint's resampling and reconstruction guidance, each --completions times per
   held-out digit, scored by chapter 8's classifier against the true digit and by the error
   on the hidden pixels. One line per mask and method;
3. what the network was drawing along the chain (x0_hat on the visible pixels, and whether it
   already shows the digit the completion ends as), on the first mask.
The lab notes' study with chapter 8's network in place of this one is docs/inpaint_with_chapter8.py.

Writes outputs/pictures/inpainted.npz (the best method's completions on the first mask) and
images/10_inpainting.png and images/10_along_the_chain.png (x0_hat along the chain, the mask outlined).
"""
import argparse
import pathlib
import time

import numpy as np
import torch

import checkpoints
import cli
import common
import ddim
import digits
import guidance
import guidance_figures

STEPS = 50                    # reconstruction guidance needs finer steps than guided sampling's 25 (docs/chapter9.md)
RESAMPLE = 4                  # RePaint: passes over each stretch of JUMP steps
JUMP = 1
ZETA = 3.0                    # reconstruction guidance's step, zeta / ||error|| (Chung et al.)
COMPLETIONS = 3               # completions of every held-out digit, per mask and method
CONDITIONAL_CHECKPOINT = cli.OUTPUTS / "pictures" / "conditional.pt"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=cli.whole_number(2), default=STEPS,
                        help="steps of the respaced chain, at most chapter 8's T (default: %(default)s)")
    parser.add_argument("--masks", type=cli.names_from(guidance.MASKS), default=list(guidance.MASKS),
                        help=f"comma-separated masks to inpaint (default: {','.join(guidance.MASKS)})")
    parser.add_argument("--resample", type=cli.positive_int, default=RESAMPLE,
                        help="RePaint's passes over each stretch of --jump steps (default: %(default)s)")
    parser.add_argument("--jump", type=cli.positive_int, default=JUMP,
                        help="RePaint's jump length in steps (default: %(default)s)")
    parser.add_argument("--zeta", type=cli.positive_float, default=ZETA,
                        help="reconstruction guidance's step length (default: %(default)s)")
    parser.add_argument("--completions", type=cli.whole_number(2), default=COMPLETIONS,
                        help="completions of each held-out digit per mask and method (default: %(default)s)")
    parser.add_argument("--held-out", type=cli.whole_number(2, digits.N_HELDOUT), default=digits.N_HELDOUT,
                        help="held-out digits to inpaint (default: all %(default)s)")
    parser.add_argument("--conditional", type=pathlib.Path, default=CONDITIONAL_CHECKPOINT,
                        help="chapter 9's network (default: outputs/pictures/conditional.pt)")
    parser.add_argument("--out-dir", type=pathlib.Path, default=CONDITIONAL_CHECKPOINT.parent,
                        help="folder for inpainted.npz (default: outputs/pictures)")
    cli.add_standard_args(parser)
    args, device, _ = cli.parse_and_prepare(parser)
    cli.writable_dir_or_exit(parser, args.out_dir, "the completions")
    model, schedule, saved = checkpoints.load_unet_or_exit(parser, args.conditional, device,
                                                           "chapter 9's network is needed first", conditional=True,
                                                           made_by="python scripts/09_guidance.py")
    if args.steps > schedule.T:
        parser.error(f"--steps must be at most chapter 8's T = {schedule.T}, got {args.steps}")
    split = digits.load_split()

    chain, chain_t_of = ddim.respace(schedule, ddim.sub_sequence(schedule, args.steps, "log_snr"))
    model.eval()
    eps_uncond = ddim.on_respaced_steps(lambda x, t: model(x, t, None), chain_t_of)
    # the chain ends as the network was trained: the discrete decoder's most likely level for the levels' centres
    last_step_noise = saved["args"].get("x0_form", "dequantised") != "centres"
    table, shown, along = inpaint_every_mask(eps_uncond, chain, split, args, device, "conditional", last_step_noise)
    along_the_chain(along, chain, chain_t_of, args.masks[0])
    guidance_figures.draw_along_the_chain(args.images, along, chain_t_of, split, args)
    best = best_completions(table, shown, split, args)
    guidance_figures.draw_inpainting(args.images, shown, best, split, args, device)


def inpaint_every_mask(eps_uncond, chain, split, args, device, network_name, last_step_noise=False):
    """"Filling in": both baselines and the three methods on every mask, one line each."""
    train_x, train_y, held_x, held_y = split
    n = args.held_out
    x0, truth = digits.to_unit(held_x[:n]).to(device), held_x[:n]
    train_unit = digits.to_unit(train_x).to(device)
    classifier = digits.fit_digit_classifier(train_x, train_y)
    print(f"inpainting {n} held-out digits with {network_name}'s network, {args.steps} respaced steps, "
          f"{args.completions} completions each; "
          f"accuracy = chapter 8's classifier against the true digit, MSE = hidden pixels, levels 0..16")
    table, shown, along = {}, {}, {}
    watched = sorted({chain.T, (3 * chain.T) // 4, chain.T // 2, max(chain.T // 4, 2), 2}, reverse=True)
    for mask_name in args.masks:
        mask = guidance.make_mask(mask_name, n, torch.Generator().manual_seed(args.seed)).to(device)
        hidden = (mask == 0).cpu().numpy().reshape(n, 8, 8)

        def score(completed):
            _, predicted = digits.confident_share(classifier, completed)
            return (float((predicted == held_y[:n]).mean()),
                    float(((completed - truth) ** 2 * hidden).sum() / hidden.sum()))

        for name, fill in (("mean fill", guidance.mean_fill), ("nearest fill", guidance.nearest_fill)):
            accuracy, mse = score(digits.to_levels(fill(x0, mask, train_unit)))
            table[mask_name, name] = (accuracy, mse)
            print(f"mask = {mask_name:<7} {name:<15} accuracy {accuracy:.3f}  MSE {mse:5.1f}")
        for method in guidance.INPAINTERS:
            began = time.perf_counter()
            k, trajectory = args.completions, {}
            out = guidance.inpaint(eps_uncond, x0.repeat(k, 1, 1, 1), mask.repeat(k, 1, 1, 1), chain, method,
                                   args.resample, args.jump, args.zeta, torch.Generator().manual_seed(args.seed),
                                   trajectory, last_step_noise=last_step_noise)
            levels = digits.to_levels(out).reshape(k, n, 8, 8)
            scores = [score(levels[j]) for j in range(k)]
            accuracy, mse = np.mean(scores, axis=0)
            mean_accuracy, mean_mse = score(digits.to_levels(out.reshape(k, n, 1, 8, 8).mean(0)))
            spread = float((levels.std(axis=0) * hidden).sum() / hidden.sum())
            table[mask_name, method] = (accuracy, mse)
            shown[mask_name, method] = levels
            print(f"mask = {mask_name:<7} {method:<15} accuracy {accuracy:.3f}  MSE {mse:5.1f}  "
                  f"mean of {k}: {mean_accuracy:.3f} / {mean_mse:5.1f}  spread {spread:.2f} levels  "
                  f"[{time.perf_counter() - began:.0f} s]", flush=True)
            if mask_name == args.masks[0]:
                errors, drawn = x0_hat_along_the_chain(eps_uncond, trajectory, x0.repeat(k, 1, 1, 1),
                                                       mask.repeat(k, 1, 1, 1), chain, watched)
                _, final = digits.confident_share(classifier, levels.reshape(-1, 8, 8))
                decided = [float((digits.confident_share(classifier, d)[1] == final).mean()) for d in drawn]
                along[method] = watched, errors, decided, [d[0] for d in drawn]   # x0_hat of the first digit
    return table, shown, along


@torch.no_grad()
def x0_hat_along_the_chain(eps_at, trajectory, x0, mask, schedule, steps):
    """What an inpainting run was drawing on its way: for each of `steps`, the RMS error, in
    levels, of the network's x0_hat(x_t) on the visible pixels, and x0_hat as levels."""
    errors, drawn = [], []
    for t in steps:
        x_t = trajectory[t]
        x0_hat = common.x0_from_eps(x_t, eps_at(x_t, torch.full((len(x_t),), t, device=x_t.device)), t, schedule)
        squared = (mask * (x0_hat.clamp(-1, 1) - x0)).square().sum() / mask.sum()
        errors.append(float(squared.sqrt()) * digits.LEVELS / 2)
        drawn.append(digits.to_levels(x0_hat))
    return errors, drawn


def along_the_chain(along, chain, chain_t_of, mask_name):
    """"Why replacement alone fails here": when the digit is chosen, against how far x0_hat is
    from the visible pixels (x0_hat(x_t) already calls the digit the completion ends as)."""
    watched = next(iter(along.values()))[0]
    print(f"along the chain ({mask_name} mask): x0_hat's RMS error on the visible pixels (levels) / "
          f"share already called the final digit, at t = " + ", ".join(str(int(chain_t_of[k])) for k in watched))
    for method, (_, errors, decided, _) in along.items():
        print(f"  {method:<15} " + "   ".join(f"{e:4.1f} / {d:.2f}" for e, d in zip(errors, decided)))


def best_completions(table, shown, split, args):
    """The most accurate method on the first mask; its completions saved for other tools."""
    _, _, held_x, held_y = split
    n, first = args.held_out, args.masks[0]
    best = max(guidance.INPAINTERS, key=lambda method: table[first, method][0])
    mask = guidance.make_mask(first, n, torch.Generator().manual_seed(args.seed)).numpy().reshape(n, 8, 8)
    np.savez(args.out_dir / "inpainted.npz", completed=shown[first, best][0], truth=held_x[:n],
             mask=mask.astype(np.int64), labels=held_y[:n], method=best)
    print(f"best on the {first} mask: {best}; its completions written to {args.out_dir / 'inpainted.npz'}")
    return best


if __name__ == "__main__":
    main()
