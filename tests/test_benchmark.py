"""scripts/benchmark.py: bad numbers are refused in one line before any training, and its whole
path on tiny settings (one 3-iteration training run read back from 03_train.py's output, then
the Bayes-optimal reverse processes on 20 held-out points) prints a row and three paired K lines."""
import re
import sys

import pytest

import cli
import roll
from conftest import load_script

ROW = re.compile(r"^\s*(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(-?[\d.]+)\s+(-?[\d.]+)$", re.MULTILINE)
TRAINED = re.compile(r"^trained \((\w+)\): K = (-?[\d.]+) bits on (\d+) held-out points$", re.MULTILINE)
BAYES = re.compile(r"^Bayes-optimal (diagonal|full): K = (-?[\d.]+) bits  \(se ([\d.]+)\); ([+-][\d.]+) bits "
                    r"\(se ([\d.]+)\) from the trained model, paired$", re.MULTILINE)


def run_benchmark(args, tmp_path, monkeypatch, capsys):
    """benchmark.py's main() in this process, its checkpoint in tmp_path: (exit status, out, err)."""
    monkeypatch.setattr(cli, "OUTPUTS", tmp_path)   # never touch the repository's outputs/
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(sys, "argv", ["benchmark.py", *map(str, args)])
    try:
        load_script("benchmark.py").main()
        code = 0
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("args, option", [(["--bayes-points", "-5"], "--bayes-points"),
                                          (["--bayes-points", str(roll.N_HELDOUT + 1)], "--bayes-points"),
                                          (["--bayes-points", "ten"], "--bayes-points"),
                                          (["--iters", "0"], "--iters"),
                                          (["--seed", "-1"], "--seed")])
def test_bad_number_is_refused_in_one_line_before_training(args, option, tmp_path, monkeypatch, capsys):
    def no_training(*args, **kwargs):
        raise AssertionError("benchmark.py started training despite a bad number")

    monkeypatch.setattr(load_script("benchmark.py"), "train", no_training)
    code, out, err = run_benchmark(args, tmp_path, monkeypatch, capsys)
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and len(errors) == 1, f"{' '.join(args)}: exit {code}, error lines {errors}\n{err}"
    assert f"argument {option}" in errors[0] and "Traceback" not in err, errors[0]
    if option == "--bayes-points":
        assert f"from 0 to {roll.N_HELDOUT}" in errors[0], f"the message does not give the range: {errors[0]}"
    assert not any(tmp_path.iterdir()), f"files written: {list(tmp_path.iterdir())}"


def test_tiny_benchmark_reads_the_training_run_and_measures_the_bayes_optimal_K(tmp_path, monkeypatch, capsys):
    # One real 03_train.py run of 3 iterations, then both Bayes-optimal processes on 20 points (~20 s on 2 cores).
    # --images: a tiny run's figure must never replace the README's (images/ is committed)
    images = tmp_path / "images"
    before = {path: path.read_bytes() for path in cli.IMAGES.iterdir()}
    code, out, err = run_benchmark(["--iters", 3, "--bayes-points", 20, "--device", "cpu",
                                    "--images", images], tmp_path, monkeypatch, capsys)
    assert code == 0, f"benchmark.py exited {code}:\n{out}\n{err[-2000:]}"
    rows = ROW.findall(out)
    assert len(rows) == 1 and rows[0][0] == "3", f"expected one row for 3 iterations:\n{out}"
    trained = TRAINED.search(out)
    assert trained and trained[1] == "full" and trained[3] == "20", f"no 'trained' line for 20 points:\n{out}"
    bayes = {m[1]: m for m in BAYES.finditer(out)}
    assert set(bayes) == {"diagonal", "full"}, f"Bayes-optimal lines missing:\n{out}"
    for covariance, m in bayes.items():
        gap = float(m[2]) - float(trained[2])
        assert abs(gap - float(m[4])) < 2e-3, f"{covariance}: the paired gap {m[4]} is not K {m[2]} - trained {trained[2]}"
        assert float(m[4]) > 0, f"the Bayes-optimal {covariance} K {m[2]} is not above a 3-iteration model's {trained[2]}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["benchmark.pt", "images"], f"left behind: {list(tmp_path.iterdir())}"
    assert [p.name for p in images.iterdir()] == ["03_kl_per_step.png"], f"figures: {list(images.iterdir())}"
    after = {path: path.read_bytes() for path in cli.IMAGES.iterdir()}
    assert after == before, "the benchmark test changed the repository's images/"
