"""Files that are never half-written, and the checkpoints of every chapter: saving a model with
everything needed to check it later (schedule, data constants, arguments), and loading it back
with one clear line (CheckpointError) for a file that is missing, unreadable, not ours, or made
with other settings, naming the command that makes a good one.
README sections "Troubleshooting" and "Reproducibility" say what it guarantees.
"""
import os
import pathlib
import tempfile

import numpy as np
import torch

import common
import roll
from cli import OUTPUTS
from model import ReverseModel


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



def load_trained_on_K(path, device="cpu"):
    """Load chapter 3's model like load_checkpoint, refusing in one line chapter 5's eps-network,
    whose outputs mean other things, when it is given for the model trained on K (--chapter3)."""
    model, schedule, checkpoint = load_checkpoint(path, device)
    if checkpoint["model_config"].get("covariance") == "none":
        raise CheckpointError(f"{path} holds an eps-network, not a model trained on K: give --chapter3 "
                              f"the checkpoint of scripts/03_train.py")
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


def load_unet_or_exit(parser, path, device="cpu", needed_first=None, **options):
    """load_unet_checkpoint for a command line: a CheckpointError becomes its one line and exit 1,
    after `needed_first` (say, "chapter 8's network is needed first") when a chapter reads another's."""
    try:
        return load_unet_checkpoint(path, device, **options)
    except CheckpointError as error:
        parser.exit(1, f"error: {needed_first + ': ' if needed_first else ''}{error}\n")
