"""The project's setup files agree with each other: pixi.toml and requirements.txt pin the same
versions, every pixi task names a script that exists, CI runs the tests and fails when there
are none, and run outputs are git-ignored."""
import os
import re
import shutil
import subprocess
import textwrap
import tomllib

import pytest

from conftest import ROOT


def pixi():
    with open(ROOT / "pixi.toml", "rb") as handle:
        return tomllib.load(handle)


def requirements():
    """requirements.txt as {name: '==version'}; comments and blank lines skipped."""
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)\s*(==\s*\S+)", line)
            assert match, f"requirements.txt line {line!r} is not a `name==version` pin"
            pins[match.group(1).lower()] = match.group(2).replace(" ", "")
    return pins


def test_pixi_and_requirements_pin_the_same_versions():
    """[pypi-dependencies] in pixi.toml and requirements.txt list the same packages at the same
    exact (==) versions, torch at 2.13.0."""
    pypi = {name.lower(): spec.replace(" ", "") for name, spec in pixi()["pypi-dependencies"].items()}
    reqs = requirements()
    assert pypi == reqs, (f"only in pixi.toml: {sorted(set(pypi.items()) - set(reqs.items()))}; "
                          f"only in requirements.txt: {sorted(set(reqs.items()) - set(pypi.items()))}")
    assert all(spec.startswith("==") for spec in reqs.values()), f"unpinned: {reqs}"
    assert reqs.get("torch") == "==2.13.0", f"torch pinned to {reqs.get('torch')}, expected ==2.13.0"


def test_pixi_python_is_3_11():
    """The conda python in pixi.toml is 3.11.*, the version the pins were chosen for."""
    python = pixi()["dependencies"].get("python")
    assert python == "3.11.*", f"pixi.toml python = {python!r}, expected '3.11.*'"


def test_every_pixi_task_names_an_existing_script():
    """Every `python scripts/X.py` in [tasks] names a file that exists, and every `depends-on`
    names a task. (Strict on purpose: fails until 04_sample.py and benchmark.py land.)"""
    tasks = pixi()["tasks"]
    missing, commands = [], 0
    for name, task in tasks.items():
        command = task if isinstance(task, str) else task.get("cmd", "")
        for script in re.findall(r"python\s+(scripts/\S+\.py)", command):
            commands += 1
            if not (ROOT / script).is_file():
                missing.append(f"{name}: {script}")
        if isinstance(task, dict):
            for dependency in task.get("depends-on", []):
                dependency = dependency if isinstance(dependency, str) else dependency.get("task")
                assert dependency in tasks, f"task {name} depends on unknown task {dependency!r}"
    assert commands > 0, "no task runs `python scripts/...`"
    assert not missing, f"tasks naming missing scripts: {missing}"
    assert "python -m pytest" in str(tasks.get("test")), f"pixi task test = {tasks.get('test')!r}, expected `python -m pytest`"


def test_ci_script_creates_venv_installs_requirements_and_runs_pytest():
    """.ci/run makes a fresh venv, installs requirements.txt and runs `python -m pytest` (the
    README's test command), treating exit code 5 (no tests collected) as a failure."""
    text = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"-m\s+venv\b", text), ".ci/run does not create a virtual environment (python -m venv)"
    assert re.search(r"pip\s+install\b.*-r\s+requirements\.txt", text), ".ci/run does not install requirements.txt"
    assert "python -m pytest" in text, ".ci/run does not run `python -m pytest`"
    assert re.search(r"\b5\b", text), ".ci/run does not mention exit code 5"
    assert os.access(ROOT / ".ci" / "run", os.X_OK), ".ci/run is not executable"


FAKE_PYTHON3 = """\
#!/usr/bin/env bash
# stands in for python3: `python3 -m venv DIR` makes a venv whose python is the fake below
echo "python3 $*" >> "$CI_LOG"
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  mkdir -p "$3/bin"
  echo "export PATH=\\"$PWD/$3/bin:\\$PATH\\"" > "$3/bin/activate"
  cp "$FAKE_VENV_PYTHON" "$3/bin/python"
  exit 0
fi
exit 1
"""

FAKE_VENV_PYTHON = """\
#!/usr/bin/env bash
# stands in for the venv's python: pip succeeds, pytest exits with $FAKE_PYTEST_STATUS
echo "python $*" >> "$CI_LOG"
if [ "$1 $2" = "-m pytest" ]; then exit "$FAKE_PYTEST_STATUS"; fi
exit 0
"""


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("pytest_status, want", [(0, 0), (1, 1), (5, 1)])
def test_ci_script_fails_when_pytest_fails_or_collects_nothing(tmp_path, pytest_status, want):
    """Run a copy of .ci/run with stand-ins for python3 and the venv's python (no real venv or
    download): pytest's exit 0 passes, 1 fails, and 5 (no tests collected) fails too."""
    (tmp_path / ".ci").mkdir()
    shutil.copy(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    shutil.copy(ROOT / "requirements.txt", tmp_path / "requirements.txt")
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    for name, body in (("python3", FAKE_PYTHON3), ("venv-python", FAKE_VENV_PYTHON)):
        (bin_dir / name).write_text(textwrap.dedent(body))
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "ci.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CI_LOG": str(log),
           "FAKE_VENV_PYTHON": str(bin_dir / "venv-python"), "FAKE_PYTEST_STATUS": str(pytest_status)}
    result = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    calls = log.read_text() if log.exists() else ""
    assert result.returncode == want, (f"pytest exit {pytest_status}: .ci/run exited {result.returncode}, expected {want}\n"
                                       f"calls:\n{calls}stderr:\n{result.stderr}")
    assert re.search(r"python -m pip install .*-r requirements\.txt", calls), f"no pip install -r requirements.txt in:\n{calls}"
    assert "python -m pytest" in calls, f"pytest was not run by the venv's python:\n{calls}"


def test_gitignore_ignores_outputs():
    """outputs/ (weights, samples) is git-ignored; asked of git itself when it is installed."""
    lines = [line.strip() for line in (ROOT / ".gitignore").read_text().splitlines()]
    assert any(line in ("outputs/", "outputs", "/outputs/", "/outputs") for line in lines), (
        f".gitignore has no outputs/ entry: {lines}")
    if shutil.which("git") and (ROOT / ".git").exists():
        result = subprocess.run(["git", "check-ignore", "--no-index", "-q", "outputs/model.pt"],
                                cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, f"git does not ignore outputs/model.pt (git check-ignore exit {result.returncode}, {result.stderr.strip()})"
