"""The command line of every chapter: the options all chapters share, the argparse types that
refuse a bad value in one line, the device (cuda, then mps, then cpu) and the seed, and the
checks that a folder or file can be written before any work starts. Where the repository keeps
its figures (images/, committed) and its weights and samples (outputs/, git-ignored) is said here.
README section "Troubleshooting" says what a reader sees when an argument is wrong.
"""
import argparse
import importlib.util
import math
import pathlib
import tempfile

import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
IMAGES = ROOT / "images"     # figures the README shows (committed)
OUTPUTS = ROOT / "outputs"   # weights and samples (git-ignored, regenerated)
MAX_SEED = 2 ** 63 - 1       # torch's generators take any whole number from 0 to this


def load_chapter(name):
    """A chapter script (e.g. "06_fewer_steps.py") imported as a module, its main() not run: how the
    lab notes' scripts in docs/ run a chapter's steps without copying them."""
    path = ROOT / "scripts" / name
    spec = importlib.util.spec_from_file_location("chapter_" + path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def steps_list(minimum, maximum):
    """An argparse type: comma-separated whole numbers of steps, each from minimum to maximum and
    each once, returned from the largest down."""
    def parse(text):
        values = [whole_number(minimum, maximum)(part) for part in text.split(",")]
        if len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"each number of steps once, got '{text}'")
        return sorted(values, reverse=True)

    return parse


def positive_float(text):
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got '{text}'")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def share(text):
    """argparse type: a number from 0 to below 1 (a share of each batch, say)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to below 1, got '{text}'")
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be from 0 to below 1, got {text}")
    return value


def guidance_weights(text):
    """argparse type: comma-separated guidance weights w, finite and >= -1 (w = -1 is the model
    without its label or prompt, w = 0 the model with it; guidance.guided_eps)."""
    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers >= -1, got '{part}'")
        if not (math.isfinite(value) and value >= -1):
            raise argparse.ArgumentTypeError(f"each w must be a finite number >= -1, got '{part}'")
        values.append(value)
    return values


def distinct_whole_numbers(minimum, maximum=None):
    """argparse type: comma-separated whole numbers in whole_number's range, each once, sorted."""
    def parse(text):
        values = [whole_number(minimum, maximum)(part) for part in text.split(",")]
        if len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"each number once, got '{text}'")
        return sorted(values)

    return parse


def names_from(allowed):
    """argparse type: comma-separated names, each one of `allowed`."""
    def parse(text):
        names = text.split(",")
        for name in names:
            if name not in allowed:
                raise argparse.ArgumentTypeError(f"each must be one of {', '.join(allowed)}, got '{name}'")
        return names

    return parse


def add_standard_args(parser, seed=0):
    """The options every chapter has: --seed, --device and --images (where figures go)."""
    parser.add_argument("--seed", type=seed_int, default=seed, help="random seed (default: %(default)s)")
    parser.add_argument("--device", default="auto",
                        help="auto (cuda, then mps, then cpu), cpu, cuda or mps (default: auto)")
    parser.add_argument("--images", type=pathlib.Path, default=IMAGES,
                        help="folder for the figures (default: the repository's images/)")


def add_training_args(parser, iters, batch_size, lr, loss, examples="roll points"):
    """The options of a training run: --iters, --batch-size (of `examples`) and --lr, with these defaults."""
    parser.add_argument("--iters", type=positive_int, default=iters,
                        help=f"training iterations on {loss} (default: %(default)s)")
    parser.add_argument("--batch-size", type=positive_int, default=batch_size,
                        help=f"{examples} per iteration (default: %(default)s)")
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
