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
from model import ReverseModel
from conftest import ROOT, SCRIPTS, load_script

README = (ROOT / "README.md").read_text()
SECTION = README[README.index("## Stepping through with ipdb"):]
SECTION = SECTION[:SECTION.index("\n## ", 1)]
STOP = re.compile(r"^\| `(\w+\.py):(\d+)` \| `([^`]+)` \| `python scripts/(\d\d_\w+\.py)[^`]*` \| `([^`]+)` \|",
                  re.MULTILINE)
STOPS = STOP.findall(SECTION)
TINY = {  # each chapter on settings that reach every stop in a second or two
    "01_forward_process.py": ["--n-points", "200"],
    "02_reverse_model.py": [],
    "03_train.py": ["--iters", "2", "--batch-size", "64"],
    "04_sample.py": ["--n-samples", "50"],
    "08_pictures.py": ["--iters", "2", "--batch-size", "16", "--base-channels", "8", "--T", "12", "--n-samples", "20",
                       "--n-moments", "10", "--n-bound", "5"],
}


class Stopped(BaseException):
    """Raised by the tracer once the stop has been reached and its expression evaluated."""


def run_to_stop(script, path, line, expression, tmp_path, monkeypatch):
    """Run scripts/<script> up to `path`:`line` and evaluate `expression` in that frame."""
    args = [*TINY[script], "--device", "cpu", "--images", str(tmp_path / "images")]
    if script == "03_train.py":
        args += ["--checkpoint", str(tmp_path / "model.pt")]
    if script == "04_sample.py":
        torch.manual_seed(0)
        checkpoints.save_checkpoint(tmp_path / "model.pt", ReverseModel(), common.make_schedule(),
                                 argparse.Namespace(iters=1), 1)
        args += ["--checkpoint", str(tmp_path / "model.pt"), "--out", str(tmp_path / "samples.npy")]
    if script == "08_pictures.py":
        args += ["--checkpoint", str(tmp_path / "unet.pt"), "--samples", str(tmp_path / "samples.npy")]
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


def test_readme_lists_stops_in_every_place_it_promises():
    files = {stop[0] for stop in STOPS}
    assert len(STOPS) >= 5 and {"common.py", "03_train.py", "01_forward_process.py"} <= files, (
        f"the README's ipdb table lists {len(STOPS)} stops in {sorted(files)}")


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
