"""A training run's plumbing, shared by chapters 3, 5, 8, 9 and 10: process settings, Ctrl-C that
finishes the step under way, --resume that continues the very run that stopped, a loss gone NaN
stopped in one line with nothing saved, one optimizer step, and the step-size schedules.
"""
import contextlib
import math
import os
import signal

import torch

from checkpoints import CheckpointError, load_checkpoint


def prepare_training():
    """The process settings a training run wants, set once before it builds its model."""
    # Products of tiny numbers (beta_1 = 1e-5, squared, times small gradients) can reach denormal
    # floats, which CPUs handle slowly; flushing them to zero measured about 6% faster for
    # chapter 3, with the same K to every printed digit.
    torch.set_flush_denormal(True)
    # Two CPU threads may add up the per-step biases' gradients in either order, which changes
    # the last bits of the weights from run to run; deterministic kernels cost nothing here.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what cuda needs for them
    torch.use_deterministic_algorithms(True, warn_only=True)


@contextlib.contextmanager
def stop_on_ctrl_c():
    """`with stop_on_ctrl_c() as interrupted:` inside the block, Ctrl-C only makes the list
    `interrupted` non-empty, so the loop can finish the iteration under way and stop: what is
    saved is a completed state, never weights caught half-way through an optimizer step. After
    the block Ctrl-C stops at once again (saving is atomic, so that is safe)."""
    interrupted = []
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def resume(parser, args, settings, model, optimizer, generator, load=None):
    """Continue the run saved in args.checkpoint in place: load it (with `load`, load_checkpoint
    by default), refuse in one line a checkpoint trained with other `settings` (names in args),
    then put its weights into `model`, its state into `optimizer` and the data generator's state
    into `generator`. Returns the checkpoint; checkpoint["iteration"] is where the run goes on.
    A resumed run must be the run that stopped, so that it ends where that run would have."""
    try:
        saved_model, _, checkpoint = (load or load_checkpoint)(args.checkpoint)
        for name in settings:
            saved, given = checkpoint["args"].get(name), getattr(args, name)
            if saved != given:
                option = "--" + name.replace("_", "-")
                raise CheckpointError(f"{args.checkpoint} was trained with {option} {saved}, not {given}; "
                                      f"resume with {option} {saved}, or start afresh without --resume")
        try:
            model.load_state_dict(saved_model.state_dict())
            optimizer.load_state_dict(checkpoint["optimizer_state"])
        except (KeyError, ValueError, RuntimeError) as error:
            raise CheckpointError(f"{args.checkpoint} holds a model or optimizer of another shape than this "
                                  f"run builds ({type(error).__name__}): start afresh without --resume")
    except CheckpointError as error:
        parser.exit(1, f"error: cannot resume: {error}\n")
    generator.set_state(checkpoint["generator_state"])
    print(f"resuming from {args.checkpoint} at iteration {checkpoint['iteration']}")
    return checkpoint


def exit_if_not_finite(parser, loss, iteration, lr, default_lr, bar=None):
    """Stop the run in one line if the loss is NaN or infinite: nothing is saved, so the last good
    checkpoint stays. `iteration` counts from 1; `bar` (a tqdm bar) is closed first."""
    if torch.isfinite(loss):
        return
    if bar is not None:
        bar.close()
    parser.exit(1, f"error: the loss became {loss.item()} at iteration {iteration}, so training "
                   f"stopped and no checkpoint was written; the learning rate {lr:g} is "
                   f"probably too high: try a smaller --lr, such as the default {default_lr:g}\n")


def resume_command(parser, args, script):
    """The command that continues this run of `script` (e.g. "scripts/03_train.py"): --resume
    plus every option not at its default."""
    words = ["python", script, "--resume"]
    for name, value in vars(args).items():
        if name != "resume" and value != parser.get_default(name):
            words += ["--" + name.replace("_", "-"), str(value)]
    return " ".join(words)


def exit_interrupted(parser, args, done, script):
    """After Ctrl-C, once the state after iteration `done` is saved in args.checkpoint: say so and
    how to continue, and exit with 130 (128 + SIGINT, the shell's convention)."""
    print(f"interrupted: saved the state after iteration {done} of {args.iters} to "
          f"{args.checkpoint}; continue with: {resume_command(parser, args, script)}")
    raise SystemExit(130)


def adam_with_average(model, lr, iters, ema_decay):
    """Chapter 5's optimiser: Adam, its step size warmed up over 2% of the run then decayed on a
    cosine (OneCycleLR), and a moving average of the weights, the model that is scored. The
    average's decay grows towards ema_decay, (1 + n) / (10 + n) after n updates, so a short run
    is not an average of untrained weights. Returns (average, optimizer, step-size schedule)."""
    average = torch.optim.swa_utils.AveragedModel(
        model, avg_fn=lambda mean, new, n: mean + (new - mean) * average_rate(ema_decay, n.item()))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    learning_rate = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=iters,
                                                        pct_start=0.02, cycle_momentum=False)
    return average, optimizer, learning_rate


def average_rate(decay, updates):
    """How far a moving average moves towards the new weights after `updates` updates: 1 - decay,
    with the decay growing to `decay` as (1 + n) / (10 + n), so that a short run is not an average
    of untrained weights."""
    return max(1.0 - decay, 9.0 / (10.0 + updates))


def update_average(average, model, updates, decay):
    """One step of a moving average of model's weights into `average` (a copy of it), at
    average_rate, as adam_with_average's."""
    rate = average_rate(decay, updates)
    with torch.no_grad():
        for mean, new in zip(average.parameters(), model.parameters()):
            mean.lerp_(new, rate)


def take_step(optimizer, loss, lr=None):
    """One optimizer step on loss: clear the old gradients, backpropagate, set the step size
    (if given: the scripts' own schedules), step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    optimizer.step()


def cosine_decay(i, iters, peak):
    """Iteration i's step size, for i = 0..iters-1: a cosine from peak down towards 0."""
    return peak * 0.5 * (1.0 + math.cos(math.pi * i / iters))


def first_and_last(losses, n=50):
    """The mean loss of the first n iterations and of the last n: how far training brought it,
    without one batch's luck."""
    return sum(losses[:n]) / len(losses[:n]), sum(losses[-n:]) / len(losses[-n:])
