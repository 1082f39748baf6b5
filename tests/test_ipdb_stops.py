"""The README's ipdb stops are true of the code: each `file:line` names the line the README
quotes, the run it names reaches it, and every `p` expression it suggests evaluates there.

The stops are read from the README's table (section "Stepping through with ipdb"). Each script
runs in this process, on tiny settings, under a line tracer for that one file: the mechanism a
debugger uses, so the expression sees the frame exactly as `p` at that stop would."""
import argparse
import re
import sys

import pytest
import torch

import common
import checkpoints
import cli
import likelihood
from model import ReverseModel
from unet import UNet
from conftest import ROOT, SCRIPTS, load_script
from test_mnist import write_fewer_digits

README = (ROOT / "README.md").read_text()
SECTION = README[README.index("## Stepping through with ipdb"):]
SECTION = SECTION[:SECTION.index("\n## ", 1)]
STOP = re.compile(r"^\| `(\w+\.py):(\d+)` \| `([^`]+)` \| `python scripts/(\d\d_\w+\.py)[^`]*` \| `([^`]+)` \|",
                  re.MULTILINE)
STOPS = STOP.findall(SECTION)
TINY = {  # each chapter on settings that reach every stop in a second or two
    "00_one_page.py": [],   # no options but --seed and --device: its constants are patched below
    "01_forward_process.py": ["--n-points", "200"],
    "02_reverse_model.py": [],
    "03_train.py": ["--iters", "2", "--batch-size", "64"],
    "04_sample.py": ["--n-samples", "50"],
    "05_ddpm.py": ["--iters", "2", "--batch-size", "64", "--n-samples", "50", "--n-heldout", "10"],
    "06_fewer_steps.py": ["--steps", "10,2", "--n-samples", "50", "--k-points", "0", "--moment-points", "50"],
    "07_bound.py": ["--points", "20", "--M", "1", "4", "--bayes-points", "10", "--steps", "10", "--shape-steps", "10"],
    "08_pictures.py": ["--iters", "2", "--batch-size", "16", "--base-channels", "8", "--T", "12", "--n-samples", "20",
                       "--n-moments", "10", "--n-bound", "5"],
    "09_guidance.py": ["--iters", "2", "--batch-size", "16", "--samples-per-class", "1", "--w", "0", "--digits", "3",
                       "--steps", "2", "--n-bound", "0"],
    "10_inpainting.py": ["--held-out", "4", "--steps", "2", "--completions", "2", "--masks", "lower"],
    "11_continuous_time.py": ["--iters", "2", "--batch-size", "64", "--score-points", "20", "--heldout", "10",
                              "--exact-points", "2", "--iw-trajectories", "2", "--calls", "1", "--n-samples", "50",
                              "--moment-points", "100"],
    "12_latent_space.py": ["--classifier-iters", "2", "--ae-iters", "2", "--latent-iters", "2"],
    "13_text_to_image.py": ["--iters", "2", "--batch-size", "8"],
    "14_one_step.py": ["--teacher-calls", "4", "--roll-iters", "2", "--n-samples", "50", "--digits-iters", "0"],
}
NEEDS = {  # the model each chapter reads, made here untrained: chapter 3's, or chapter 5's eps-network
    "04_sample.py": {},
    "06_fewer_steps.py": {"covariance": "none"},
    "07_bound.py": {},
}


class Stopped(BaseException):
    """Raised by the tracer once the stop has been reached and its expression evaluated."""


def run_to_stop(script, path, line, expression, tmp_path, monkeypatch):
    """Run scripts/<script> up to `path`:`line` and evaluate `expression` in that frame."""
    args = [*TINY[script], "--device", "cpu", "--images", str(tmp_path / "images")]
    if script == "00_one_page.py":
        args = ["--device", "cpu"]
        monkeypatch.setattr(load_script(script), "ITERS", 2)
        monkeypatch.setattr(load_script(script), "N_SAMPLES", 4)
        monkeypatch.setattr(cli, "IMAGES", tmp_path)
    if script in ("03_train.py", "05_ddpm.py"):   # what they write stays in tmp_path
        args += ["--checkpoint", str(tmp_path / "written.pt")]
    if script == "05_ddpm.py":
        args += ["--chapter3", str(tmp_path / "none.pt")]
    if script in NEEDS:
        torch.manual_seed(0)
        checkpoints.save_checkpoint(tmp_path / "model.pt", ReverseModel(**NEEDS[script]),
                                    common.make_schedule(), argparse.Namespace(iters=1), 1)
        args += ["--checkpoint", str(tmp_path / "model.pt")]
    if script == "04_sample.py":
        args += ["--out", str(tmp_path / "samples.npy")]
    if script in ("09_guidance.py", "10_inpainting.py"):   # chapter 8's network, or chapter 9's, untrained
        schedule = likelihood.schedule_between_ends(20, "linear", common.make_schedule(20, 1e-4, -1.0))
        torch.manual_seed(0)
        checkpoints.save_unet_checkpoint(tmp_path / "unet.pt", UNet(8, n_classes=10 if script == "10_inpainting.py"
                                                                    else None), schedule, argparse.Namespace(seed=0), 0)
        args += ["--out-dir", str(tmp_path)]
        args += (["--pictures", str(tmp_path / "unet.pt"), "--checkpoint", str(tmp_path / "conditional.pt")]
                 if script == "09_guidance.py" else ["--conditional", str(tmp_path / "unet.pt")])
    if script == "11_continuous_time.py":   # chapter 3's model and chapter 5's eps-network, untrained
        torch.manual_seed(0)
        for name, covariance in (("model.pt", "full"), ("ddpm.pt", "none")):
            checkpoints.save_checkpoint(tmp_path / name, ReverseModel(covariance=covariance), common.make_schedule(),
                                        argparse.Namespace(seed=0), 0)
        args += ["--chapter3", str(tmp_path / "model.pt"), "--chapter5", str(tmp_path / "ddpm.pt"),
                 "--out-dir", str(tmp_path / "out")]
    if script == "14_one_step.py":   # an untrained eps-network of chapter 5's kind as the teacher
        torch.manual_seed(0)
        checkpoints.save_checkpoint(tmp_path / "ddpm.pt", ReverseModel(covariance="none"), common.make_schedule(),
                                    argparse.Namespace(iters=1), 1)
        args += ["--roll-checkpoint", str(tmp_path / "ddpm.pt"), "--out-dir", str(tmp_path / "one_step")]
    if script == "12_latent_space.py":   # its steps up to the stop encode and score every digit: 500 of them here
        args += ["--out", str(tmp_path / "latent"), "--mnist-dir", str(write_fewer_digits(tmp_path / "mnist", 400, 100))]
    if script == "13_text_to_image.py":   # a tiny untrained autoencoder in place of chapter 12's
        import autoencoder
        torch.manual_seed(0)
        autoencoder.save(tmp_path / "autoencoder.pt", autoencoder.Autoencoder(width=8), 1.0)
        args += ["--autoencoder", str(tmp_path / "autoencoder.pt"), "--checkpoint", str(tmp_path / "text_unet.pt"),
                 "--out", str(tmp_path / "prompted.npz")]
    if script == "08_pictures.py":
        args += ["--checkpoint", str(tmp_path / "unet.pt"), "--samples", str(tmp_path / "samples.npy")]
    if script == "06_fewer_steps.py":
        args += ["--out-dir", str(tmp_path / "samples")]
    if script == "05_ddpm.py":   # E||eps_theta||^2 per step on fewer fresh points than 20,000
        monkeypatch.setattr(load_script(script), "N_MOMENTS", 500)
    monkeypatch.setattr(sys, "argv", [script, *args])
    seen = {}

    def on_line(frame, event, arg):
        if event == "line" and frame.f_lineno == line:
            try:
                seen["value"] = eval(expression, frame.f_globals, frame.f_locals)
            except Exception as error:
                seen["error"] = f"{type(error).__name__}: {error}"
            raise Stopped
        return on_line

    def on_call(frame, event, arg):
        return on_line if frame.f_code.co_filename == str(path) else None

    sys.settrace(on_call)
    try:
        load_script(script).main()
    except Stopped:
        pass
    finally:
        sys.settrace(None)
    return seen


def test_readme_lists_a_stop_in_every_chapter_it_promises():
    files = {stop[0] for stop in STOPS}
    chapters = {stop[3] for stop in STOPS}
    assert set(TINY) <= chapters and {"common.py", *TINY} - {"04_sample.py"} <= files, (
        f"the README's ipdb table lists {len(STOPS)} stops in {sorted(files)}, run by {sorted(chapters)}")


def test_every_file_line_reference_in_the_readme_and_lab_notes_is_a_tested_stop():
    """A `file.py:NN` outside the table (e.g. `b common.py:205` in the prose, a timing in the lab
    notes) names one of the table's stops, so the test below holds it to the line it means."""
    stops = {(file, int(line)) for file, line, *_ in STOPS}
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for file, line in re.findall(r"\b(\w+\.py):(\d+)\b", path.read_text()):
            assert (file, int(line)) in stops, (
                f"{path.name} refers to {file}:{line}, which is none of the README's ipdb stops "
                f"{sorted(stops)}: point it at one, or add that stop to the table")


@pytest.mark.parametrize("file, line, quoted, script, expression", STOPS,
                         ids=[f"{f}:{n}" for f, n, *_ in STOPS])
def test_readme_stop_names_the_quoted_line_and_its_p_expression_evaluates_there(
        file, line, quoted, script, expression, tmp_path, monkeypatch, keep_process_settings):
    path = SCRIPTS / file
    source = path.read_text().splitlines()
    at = source[int(line) - 1].strip()
    where = [n + 1 for n, text in enumerate(source) if text.strip().startswith(quoted)]
    assert at.startswith(quoted), (f"README: stop at {file}:{line}, `{quoted}`; that line is now `{at}`; "
                                   f"the quoted line is at {where or 'no line'}")
    seen = run_to_stop(script, path, int(line), expression, tmp_path, monkeypatch)
    assert seen, f"python scripts/{script} never reached {file}:{line}"
    assert "error" not in seen, f"at {file}:{line}, `p {expression}` fails: {seen['error']}"
