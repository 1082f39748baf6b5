"""The plumbing every chapter shares, none of it math: command-line arguments, devices and seeds,
files written atomically, checkpoints, training runs (Ctrl-C, --resume, a loss gone non-finite)
and figures. README sections "Troubleshooting" and
"Reproducibility" say what it guarantees.
"""
import argparse
import contextlib
import math
import os
import pathlib
import signal
import tempfile

import matplotlib

matplotlib.use("Agg")  # figures are written to files, never shown: no screen needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.animation import FuncAnimation, PillowWriter  # noqa: E402

import common  # noqa: E402
import roll  # noqa: E402
from model import ReverseModel  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
IMAGES = ROOT / "images"     # figures the README shows (committed)
OUTPUTS = ROOT / "outputs"   # weights and samples (git-ignored, regenerated)
AXIS_LIMIT = 2.5             # the paper's Figure 1 shows about -2..2; the roll reaches +-2.1
MAX_SEED = 2 ** 63 - 1       # torch's generators take any whole number from 0 to this


# --- command line ------------------------------------------------------------------------------

def whole_number(minimum, maximum=None):
    """An argparse type: a whole number from minimum (to maximum, if given)."""
    allowed = f"at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number {allowed}, got '{text}'")
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be a whole number {allowed}, got {value}")
        return value

    return parse


positive_int = whole_number(1)
seed_int = whole_number(0, MAX_SEED)


def positive_float(text):
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got '{text}'")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def add_standard_args(parser, seed=0):
    """The options every chapter has: --seed, --device and --images (where figures go)."""
    parser.add_argument("--seed", type=seed_int, default=seed, help="random seed (default: %(default)s)")
    parser.add_argument("--device", default="auto",
                        help="auto (cuda, then mps, then cpu), cpu, cuda or mps (default: auto)")
    parser.add_argument("--images", type=pathlib.Path, default=IMAGES,
                        help="folder for the figures (default: the repository's images/)")


def add_training_args(parser, iters, batch_size, lr, loss):
    """The options of a training run: --iters, --batch-size and --lr, with these defaults."""
    parser.add_argument("--iters", type=positive_int, default=iters,
                        help=f"training iterations on {loss} (default: %(default)s)")
    parser.add_argument("--batch-size", type=positive_int, default=batch_size,
                        help="roll points per iteration (default: %(default)s)")
    parser.add_argument("--lr", type=positive_float, default=lr,
                        help="peak Adam learning rate (default: %(default)s)")


def parse_and_prepare(parser):
    """The start of every chapter: parse the command line, check --device and the --images
    folder before any work, and seed torch. Returns (args, device, generator), the generator
    seeded with --seed for the random draws the chapter makes on the CPU."""
    args = parser.parse_args()
    device = device_or_exit(parser, args.device)
    writable_dir_or_exit(parser, args.images, "figures")
    torch.manual_seed(args.seed)  # for what torch draws without a generator: a network's initial weights
    return args, device, torch.Generator().manual_seed(args.seed)


# --- devices -----------------------------------------------------------------------------------

def available_devices():
    """The devices this machine can run on, best first."""
    devices = []
    if torch.cuda.is_available():
        devices.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return devices + ["cpu"]


def pick_device(name="auto"):
    """`auto` picks cuda, then mps, then cpu; a named device must be available here."""
    devices = available_devices()
    if name == "auto":
        return torch.device(devices[0])
    if name.split(":")[0] not in devices:
        raise ValueError(f"device '{name}' is not available here; available: {', '.join(devices)}")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ValueError(f"device '{name}' is not a device name; available: {', '.join(devices)}")


def device_or_exit(parser, name):
    """pick_device, turning an unavailable device into one clear argparse error."""
    try:
        return pick_device(name)
    except ValueError as error:
        parser.error(str(error))


# --- files -------------------------------------------------------------------------------------

def output_file_or_exit(parser, path, what, example="model.pt"):
    """Check, before any work, that a file can be written at path (its folder is writable and
    path is not a folder), so a long run is never lost at the moment of saving."""
    writable_dir_or_exit(parser, path.parent, what)
    if path.is_dir():
        parser.error(f"cannot write {what} to {path}: it is a folder; give a file name, "
                     f"e.g. {path / example}")


def writable_dir_or_exit(parser, folder, what):
    """Create `folder` if needed and check it can be written, before any work is done."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        parser.error(f"cannot write {what} to {folder}: {error.strerror or error}")


def replace_atomically(path, write):
    """Call write(temporary_path) in path's folder, flush it to the disk, then rename it over
    path and flush the folder: after a crash or a power cut, path holds the old file or the
    whole new one, never a part."""
    path = pathlib.Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(temporary)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes files private; give the usual mode
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())        # the data on the disk before the name points at it
        os.replace(temporary, path)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)                  # and the rename itself
        finally:
            os.close(folder)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def save_array(path, array):
    """A numpy array to path (.npy), atomically."""
    def write(temporary):
        with open(temporary, "wb") as file:  # a file object: np.save would add .npy to a name
            np.save(file, np.asarray(array))

    replace_atomically(path, write)


# --- checkpoints -------------------------------------------------------------------------------

CHECKPOINT_FORMAT = "diffusion-walkthrough checkpoint v2"
DEFAULT_CHECKPOINT = OUTPUTS / "model.pt"
TRAIN_COMMAND = "python scripts/03_train.py"


class CheckpointError(Exception):
    """A checkpoint that is missing, unreadable, not ours, or made for other settings."""


def save_checkpoint(path, model, schedule, args, iteration, **state):
    """Write the weights, the schedule, the data constants, the run's arguments and any further
    `state` (optimizer, generator, averaged weights: tensors, numbers, strings and dicts of them)
    atomically. Everything is plain data, so it loads with weights_only=True."""
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "model_config": dict(model.config),
        "model_state": model.state_dict(),
        "beta": schedule.beta.detach().cpu().double(),
        "T": schedule.T,
        "beta_1": float(schedule.beta[1]),
        "roll_mean": list(roll.ROLL_MEAN),
        "roll_std": list(roll.ROLL_STD),
        "args": {key: (str(value) if isinstance(value, pathlib.Path) else value)
                 for key, value in vars(args).items()},
        "iteration": iteration,
        **state,
    }
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(path, lambda temporary: torch.save(checkpoint, temporary))


def read_checkpoint_file(path, retrain):
    """The dict torch saved at path, weights only (no pickled code runs). A missing or unreadable
    file raises CheckpointError in one line ending with `retrain`, the advice."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: {retrain}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated file, random bytes, pickled code: all unreadable
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated, corrupt or not a "
                              f"torch file: {type(error).__name__}): {retrain}")


def load_checkpoint(path, device="cpu", made_by=TRAIN_COMMAND, weights="model_state"):
    """Load a checkpoint written by save_checkpoint: returns (model, schedule, checkpoint), the
    model built from the checkpoint's `weights` entry. Raises CheckpointError with one line that
    names the problem and the command (`made_by`) that makes a good one."""
    path = pathlib.Path(path)
    retrain = f"run `{made_by}` to make one"
    checkpoint = read_checkpoint_file(path, retrain)
    if not isinstance(checkpoint, dict) or not str(checkpoint.get("format", "")).startswith("diffusion-walkthrough"):
        raise CheckpointError(f"{path} is a torch file but not a checkpoint of this walkthrough: {retrain}")
    if checkpoint["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} was written by an older version of this code "
                              f"({checkpoint['format']}): {retrain} again")
    expected = {"T": common.T, "beta_1": common.BETA_1, "roll_mean": list(roll.ROLL_MEAN),
                "roll_std": list(roll.ROLL_STD), "beta": common.make_schedule().beta}
    for key, value in expected.items():
        saved = checkpoint.get(key)
        same = (torch.is_tensor(saved) and saved.shape == value.shape and torch.allclose(saved, value)
                if torch.is_tensor(value) else saved == value)
        if not same:
            raise CheckpointError(f"{path} was made with another {key} than this code uses: {retrain} again")
    try:
        model = ReverseModel(**checkpoint["model_config"])
        model.load_state_dict(checkpoint[weights])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path} holds a model of another shape than this code builds "
                              f"({type(error).__name__}): {retrain} again")
    return model.to(device).eval(), common.schedule_from_beta(checkpoint["beta"]), checkpoint


DDPM_CHECKPOINT = OUTPUTS / "ddpm.pt"
DDPM_COMMAND = "python scripts/05_ddpm.py"


def load_eps_network(path, device="cpu"):
    """Load chapter 5's eps-network (a ReverseModel with covariance "none") like load_checkpoint,
    refusing in one line any other model, such as chapter 3's, whose outputs mean other things."""
    model, schedule, checkpoint = load_checkpoint(path, device, made_by=DDPM_COMMAND)
    if checkpoint["model_config"].get("covariance") != "none":
        raise CheckpointError(f"{path} holds a model with covariance "
                              f"{checkpoint['model_config'].get('covariance')!r}, not an eps-network "
                              f"(covariance 'none'): run `{DDPM_COMMAND}` to make one")
    return model, schedule, checkpoint


UNET_CHECKPOINT_FORMAT = "diffusion-walkthrough unet checkpoint v1"
PICTURES_CHECKPOINT = OUTPUTS / "pictures" / "unet.pt"
PICTURES_COMMAND = "python scripts/08_pictures.py"


def save_unet_checkpoint(path, model, schedule, args, iteration, **state):
    """Write a UNet of chapters 8-9 atomically: its config and weights, the schedule it was
    trained with (a UNet's schedule is its own, not chapter 1's), the digits' constants, the run's
    arguments and any further `state`, all plain data (loads with weights_only=True)."""
    import digits  # here, not at the top: the roll's chapters need no scikit-learn

    checkpoint = {
        "format": UNET_CHECKPOINT_FORMAT,
        "model_config": dict(model.config),
        "model_state": model.state_dict(),
        "beta": schedule.beta.detach().cpu().double(),
        "data": {"levels": digits.LEVELS, "side": digits.SIDE, "split_seed": digits.SPLIT_SEED},
        "args": {key: (str(value) if isinstance(value, pathlib.Path) else value)
                 for key, value in vars(args).items()},
        "iteration": iteration,
        **state,
    }
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(path, lambda temporary: torch.save(checkpoint, temporary))


def load_unet_checkpoint(path, device="cpu", made_by=PICTURES_COMMAND, conditional=None, weights="model_state"):
    """Load a checkpoint written by save_unet_checkpoint: returns (model, schedule, checkpoint).
    conditional=True demands a UNet with labels (n_classes set), False one without, None either.
    Raises CheckpointError with one line naming the problem and the command that makes a good one:
    a missing or unreadable file, a roll checkpoint, another data set, the wrong kind of UNet."""
    import digits
    from unet import UNet

    path = pathlib.Path(path)
    retrain = f"run `{made_by}` to make one"
    checkpoint = read_checkpoint_file(path, retrain)
    kind = checkpoint.get("format", "") if isinstance(checkpoint, dict) else ""
    if kind == CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} holds a Swiss-roll model of chapters 3-7, not a UNet on digits: {retrain}")
    if kind != UNET_CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is a torch file but not a UNet checkpoint of this walkthrough: {retrain}")
    expected = {"levels": digits.LEVELS, "side": digits.SIDE, "split_seed": digits.SPLIT_SEED}
    if checkpoint.get("data") != expected:
        raise CheckpointError(f"{path} was trained on other data ({checkpoint.get('data')}, this code "
                              f"uses {expected}): {retrain} again")
    labels = checkpoint["model_config"].get("n_classes")
    if conditional is True and labels is None:
        raise CheckpointError(f"{path} holds an unconditional UNet, and a conditional one (with labels) "
                              f"is needed here: {retrain}")
    if conditional is False and labels is not None:
        raise CheckpointError(f"{path} holds a UNet conditioned on {labels} labels, and an unconditional "
                              f"one is needed here: {retrain}")
    try:
        model = UNet(**checkpoint["model_config"])
        model.load_state_dict(checkpoint[weights])
        schedule = common.schedule_from_beta(checkpoint["beta"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path} holds a UNet of another shape than this code builds "
                              f"({type(error).__name__}): {retrain} again")
    return model.to(device).eval(), schedule, checkpoint


# --- training runs -----------------------------------------------------------------------------

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
        model, avg_fn=lambda mean, new, n: mean + (new - mean) * max(1.0 - ema_decay, 9.0 / (10.0 + n.item())))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    learning_rate = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=iters,
                                                        pct_start=0.02, cycle_momentum=False)
    return average, optimizer, learning_rate


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


# --- figures -----------------------------------------------------------------------------------

def save_figure(fig, path):
    """Save a matplotlib figure atomically and close it."""
    replace_atomically(path, lambda temporary: fig.savefig(temporary, dpi=110))
    plt.close(fig)


def plot_points(ax, x, title):
    """Scatter (n, 2) points on the walkthrough's fixed square axes."""
    x = x.detach().cpu().numpy()
    ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.5, color="tab:blue", rasterized=True)
    ax.set_xlim(-AXIS_LIMIT, AXIS_LIMIT)
    ax.set_ylim(-AXIS_LIMIT, AXIS_LIMIT)
    ax.set_aspect("equal")
    ax.set_title(title)


def show_digits(ax, images, columns, title="", low=0.0, high=16.0):
    """8 x 8 images (n, 8, 8), grey from low (white) to high (black), as one grid with a white
    line between them; an entry np.nan is drawn blank."""
    images = np.asarray(images, dtype=np.float64).reshape(-1, 8, 8)
    rows = math.ceil(len(images) / columns)
    grid = np.full((rows * 9 + 1, columns * 9 + 1), np.nan)
    for k, image in enumerate(images):
        r, c = divmod(k, columns)
        grid[1 + r * 9:(r + 1) * 9, 1 + c * 9:(c + 1) * 9] = image
    cmap = plt.get_cmap("gray_r").copy()
    cmap.set_bad("white")
    ax.imshow(grid, cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
    ax.set(xticks=[], yticks=[], title=title)


def save_points_gif(path, frames, titles, fps=8):
    """An animation of point clouds, one frame per (n, 2) tensor, written atomically.
    Each frame only moves the points of one scatter on bare square axes: drawing ticks again
    for every frame would take most of the time, and the fixed frame shows the scale."""
    fig, ax = plt.subplots(figsize=(4, 4))
    plot_points(ax, frames[0], titles[0])
    ax.set(xticks=[], yticks=[])
    points = ax.collections[0]

    def draw(k):
        points.set_offsets(frames[k].detach().cpu().numpy())
        ax.set_title(titles[k])

    animation = FuncAnimation(fig, draw, frames=len(frames))
    replace_atomically(path, lambda temporary: animation.save(temporary, writer=PillowWriter(fps=fps), dpi=60))
    plt.close(fig)
