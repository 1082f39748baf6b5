"""runs.py's training helpers, as chapters 3, 5, 8, 9 and 10 use them: Ctrl-C inside
stop_on_ctrl_c is a flag and the handler before it comes back after; a non-finite loss exits
in one line naming the iteration; the suggested resume command names every changed option."""
import argparse
import signal

import pytest
import torch

import runs


def test_ctrl_c_inside_the_block_only_raises_the_flag_and_the_old_handler_comes_back():
    before = signal.getsignal(signal.SIGINT)
    with runs.stop_on_ctrl_c() as interrupted:
        assert not interrupted, "the flag is raised before any Ctrl-C"
        signal.raise_signal(signal.SIGINT)   # would raise KeyboardInterrupt under the default handler
        assert interrupted, "Ctrl-C inside the block did not raise the flag"
    assert signal.getsignal(signal.SIGINT) is before, "the SIGINT handler was not put back after the block"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_loss_exits_with_one_line_naming_iteration_and_learning_rate(value, capsys):
    parser = argparse.ArgumentParser(prog="train")
    runs.exit_if_not_finite(parser, torch.tensor(1.5), 7, 1.0, 5e-3)   # finite: nothing happens
    with pytest.raises(SystemExit) as exit:
        runs.exit_if_not_finite(parser, torch.tensor(value), 7, 1.0, 5e-3)
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit.value.code == 1 and len(lines) == 1, f"exit {exit.value.code}, stderr {lines}"
    assert "iteration 7" in lines[0] and "--lr" in lines[0] and "0.005" in lines[0], lines[0]


def test_resume_command_names_resume_and_only_the_options_not_at_their_default():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(["--batch-size", "3"])
    command = runs.resume_command(parser, args, "scripts/03_train.py")
    assert command == "python scripts/03_train.py --resume --batch-size 3", command
