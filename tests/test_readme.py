"""The documentation's measured tables (README.md, docs/measured.md) come from the result records under
benchmarks/results/ (benchmarks/readme_tables.py): a figure in a marked block that differs from its record fails
here. The README is for users: short, and its Python example imports what the library has."""

import importlib.util
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tables():
    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "benchmarks" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _documents() -> str:
    return "".join(path.read_text() for path in _tables().DOCUMENTS)


def test_every_record_table_in_the_documents_equals_its_records():
    tables = _tables()
    names = [m.group("name") for m in tables.BLOCK.finditer(_documents())]
    assert set(names) == set(tables.TABLES), names  # every table is in the documents, once each
    assert len(names) == len(set(names))
    for path in tables.DOCUMENTS:
        assert tables.render(path.read_text()) == path.read_text(), "run: python benchmarks/readme_tables.py"


def test_the_check_fails_when_a_figure_is_changed_by_hand():
    tables = _tables()
    text = (ROOT / "docs" / "measured.md").read_text()
    block = next(tables.BLOCK.finditer(text))
    body = block.group("body")
    digit = re.search(r"\d", body)
    changed = body[: digit.start()] + str((int(digit.group()) + 1) % 10) + body[digit.end() :]
    edited = text.replace(body, changed, 1)
    assert tables.render(edited) != edited


def test_every_record_the_documents_name_exists_and_says_how_it_was_made():
    named = set(re.findall(r"benchmarks/results/([\w.-]+\.json)", _documents()))
    assert named, "the documents name no result record"
    for name in named:
        record = json.loads((ROOT / "benchmarks" / "results" / name).read_text())
        assert {"figures", "command", "commit", "machine", "date"} <= set(record), name
        assert record["command"].startswith(("python ", "bash ")) and record["machine"]["cores"], name


def test_the_readme_is_for_users():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 250
    for start in ("## Two commands", "## A 10-minute tour", "## Commands", "## Where to read more"):
        assert start in text, start
    for doc in ("docs/architecture.md", "docs/measured.md", "docs/results.md"):
        assert doc in text and (ROOT / doc).is_file(), doc


def test_the_readmes_python_example_uses_what_the_library_has():
    """Every name the README's Python block imports exists, and the config it builds is valid (nothing is run)."""
    import ast

    text = (ROOT / "README.md").read_text()
    code = text[text.index("```python\n") + len("```python\n") :]
    code = code[: code.index("```")]
    tree = ast.parse(code)
    imported = [n for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert len(imported) >= 2
    setup = ast.Module(body=[n for n in tree.body if "run_experiment(" not in ast.unparse(n)], type_ignores=[])
    scope: dict = {}
    exec(compile(setup, "README.md", "exec"), scope)  # imports and the config, not the run
    assert scope["config"].train.recipe == "scratch" and scope["config"].eval_split == "heldout"
