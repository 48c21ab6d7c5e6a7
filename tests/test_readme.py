"""The README's measured tables come from the result records under benchmarks/results/ (benchmarks/readme_tables.py):
a figure in a marked block that differs from its record fails here."""

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


def test_every_record_table_in_the_readme_equals_its_records():
    tables = _tables()
    text = (ROOT / "README.md").read_text()
    names = [m.group("name") for m in tables.BLOCK.finditer(text)]
    assert set(names) == set(tables.TABLES), names  # every table is in the README, once each
    assert len(names) == len(set(names))
    assert tables.render(text) == text, "run: python benchmarks/readme_tables.py"


def test_the_check_fails_when_a_figure_is_changed_by_hand():
    tables = _tables()
    text = (ROOT / "README.md").read_text()
    block = next(tables.BLOCK.finditer(text))
    body = block.group("body")
    digit = re.search(r"\d", body)
    changed = body[: digit.start()] + str((int(digit.group()) + 1) % 10) + body[digit.end() :]
    edited = text.replace(body, changed, 1)
    assert tables.render(edited) != edited


def test_every_record_the_readme_names_exists_and_says_how_it_was_made():
    text = (ROOT / "README.md").read_text()
    named = set(re.findall(r"benchmarks/results/([\w.-]+\.json)", text))
    assert named, "the README names no result record"
    for name in named:
        record = json.loads((ROOT / "benchmarks" / "results" / name).read_text())
        assert {"figures", "command", "commit", "machine", "date"} <= set(record), name
        assert record["command"].startswith(("python ", "bash ")) and record["machine"]["cores"], name
