"""The README and the repository agree: every image it shows exists and every image exists to be
shown, every numbered script is introduced, the quickstart runs every chapter in order, and its
test command is the one CI runs."""
import re

from conftest import ROOT

README = (ROOT / "README.md").read_text()
SCRIPTS = sorted(p.name for p in (ROOT / "scripts").glob("[0-9][0-9]_*.py"))


def code_blocks():
    return re.findall(r"```bash\n(.*?)```", README, re.DOTALL)


def test_every_image_shown_exists():
    shown = re.findall(r"!\[[^\]]*\]\((images/[^)]+)\)", README)
    assert shown, "the README shows no images"
    missing = [path for path in shown if not (ROOT / path).is_file()]
    assert not missing, f"the README shows images that do not exist: {missing}"


def test_every_image_is_shown():
    shown = set(re.findall(r"\((images/[^)]+)\)", README))
    orphans = [f"images/{p.name}" for p in (ROOT / "images").iterdir() if f"images/{p.name}" not in shown]
    assert not orphans, f"images committed but never shown in the README: {orphans}"


def test_every_numbered_script_is_introduced():
    assert SCRIPTS, "no numbered scripts found"
    for name in SCRIPTS:
        assert name in README, f"the README never mentions {name}"
        chapter = int(name[:2])
        assert re.search(rf"^## {chapter}\. ", README, re.MULTILINE), f"no README section '## {chapter}. ...' for {name}"


def test_quickstart_runs_every_chapter_in_order_then_the_tests():
    first, second = code_blocks()[:2]
    commands = first.strip()
    assert "venv" in commands and "pip install -r requirements.txt" in commands, commands
    ran = re.findall(r"python scripts/(\d\d_\w+\.py)", commands)
    assert ran == SCRIPTS, f"the quickstart runs {ran}, the chapters are {SCRIPTS}"
    assert second.strip() == "python -m pytest", f"the quickstart's test command is {second.strip()!r}"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    command = code_blocks()[1].strip()
    assert re.search(rf"^{re.escape(command)}$", ci, re.MULTILINE), f".ci/run does not run {command!r}"


def test_readme_has_no_unfilled_placeholders():
    leftovers = re.findall(r"\b[A-Z][A-Z0-9]*_(?:TIME|OUT|TABLE|TEXT)\b", README)
    assert not leftovers, f"placeholders left in the README: {leftovers}"


def test_every_function_the_readme_names_exists():
    """Each `module.x` in the README, for every module of scripts/ (common, roll, model, cli, checkpoints, runs, figures,
    ddpm, ddim, likelihood, linalg, digits, unet, pictures, guidance, continuous, distill, mnist, …: every
    module of scripts/ that is not a chapter), names something that module defines, so a reader who looks a
    formula's function up finds it."""
    import importlib
    modules = "|".join(sorted((p.stem for p in (ROOT / "scripts").glob("*.py") if not p.stem[0].isdigit()), key=len, reverse=True))
    named = {(module, name) for module, name in re.findall(rf"`({modules})\.(\w+)", README)
             if name != "py"}   # `common.py:195` is a file, not a name
    assert len(named) > 20, f"the README names only {len(named)} functions"
    missing = sorted(f"{module}.{name}" for module, name in named
                     if not hasattr(importlib.import_module(module), name))
    assert not missing, f"the README names what the code does not define: {missing}"


def test_every_function_the_cheat_sheet_names_exists():
    """docs/cheatsheet.md names a function on every line; each `module.name` must be defined there."""
    import importlib
    sheet = (ROOT / "docs" / "cheatsheet.md").read_text()
    named = set(re.findall(r"`(\w+)\.(\w+)`", sheet))
    assert len(named) > 30, f"the cheat sheet names only {len(named)} functions"
    missing = sorted(f"{module}.{name}" for module, name in named
                     if not (ROOT / "scripts" / f"{module}.py").is_file()
                     or not hasattr(importlib.import_module(module), name))
    assert not missing, f"the cheat sheet names what the code does not define: {missing}"
