"""The documentation's measured tables (README.md, docs/measured.md) come from the result records under
benchmarks/results/ (benchmarks/readme_tables.py): a figure in a marked block that differs from its record fails
here. The README is for users: short, and its Python example imports what the library has."""

import importlib.util
import json
import re
from pathlib import Path

import pytest

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
    """The README's Python block imports the API and calls only what its __all__ offers, with arguments the
    functions take (nothing is run)."""
    import ast
    import inspect

    import pneumocam.api as api

    text = (ROOT / "README.md").read_text()
    code = text[text.index("```python\n") + len("```python\n") :]
    tree = ast.parse(code[: code.index("```")])
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
    used = [c for c in calls if isinstance(c.func.value, ast.Name) and c.func.value.id == "pc"]
    assert len(used) >= 4
    for call in used:
        assert call.func.attr in api.__all__, call.func.attr
        signature = inspect.signature(getattr(api, call.func.attr))
        kwargs = {k.arg: None for k in call.keywords if k.arg}
        has_var_kw = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        assert has_var_kw or set(kwargs) <= set(signature.parameters), call.func.attr
        signature.bind_partial(*[None] * len(call.args), **({} if has_var_kw else kwargs))


def test_the_api_declares_what_it_offers():
    import pneumocam.api as api

    for name in api.__all__:
        assert getattr(api, name).__doc__, name


# Every number the README's prose may state without a record: definitions, settings and facts about the data, each
# with what it is. A measured figure belongs in a record table (docs/measured.md), not here.
README_DEFINITIONS = {
    "10": "the original protocol's epochs", "32": "batch size; results.json's depth cap; its MB cap",
    "224": "input size, px", "30": "films per class in the original test", "0.5": "the fixed threshold",
    "0.85": "the specificity of the reported sensitivity", "2": "exit status; two decodes at once; epochs",
    "1,000": "resampled draws", "128": "px in the size schedule; the table cap, MB", "6": "epochs at 128 px",
    "5": "epochs at 224 px", "8": "finetune epochs", "3": "epochs (the earlier schedule)", "4": "RGBA planes",
    "16": "Kermany's val films", "100": "the val size below which validation is carved", "20": "% carved",
    "15": "% held out", "1": "the penalty's weight", "0": "mask background", "255": "mask region",
    "127": "mask ignore; loopback address", "127.0": "loopback address", "256": "px, the largest stored map side",
    "512": "MB, heatmaps.npz in memory", "50": "MB, the upload limit", "64": "MP, the pixel budget",
    "400": "status", "403": "status", "413": "status", "422": "status", "500": "status", "503": "status",
    "3.11": "Python", "4.0": "CC BY 4.0", "2018": "the dataset's year", "5,856": "the dataset's films",
    "10.17632": "the dataset's DOI", "172": "Cell volume", "1122": "pages", "1131": "pages", "19": "COVID-19",
}  # fmt: skip


def prose_numbers(text: str) -> list[str]:
    """The numbers of a Markdown text outside code blocks, inline code and record-table blocks."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"<!-- record-table: [\w-]+ -->.*?<!-- /record-table -->", "", text, flags=re.S)
    text = re.sub(r"`[^`]*`", "", text)
    return [n.rstrip(",") for n in re.findall(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?![\w])", text)]


def test_the_number_finder_skips_code_and_record_tables():
    text = "batch 32 and 0.956 AUC\n```\n7.5 s\n```\n`--seed 3`\n<!-- record-table: x -->\n0.99\n<!-- /record-table -->"
    assert prose_numbers(text) == ["32", "0.956"]


def test_every_number_in_the_readme_prose_is_a_definition():
    stated = set(prose_numbers((ROOT / "README.md").read_text()))
    unexplained = sorted(stated - set(README_DEFINITIONS))
    assert not unexplained, f"numbers in the README's prose with no record: {unexplained} (see README_DEFINITIONS)"


def test_no_record_names_a_commit_made_after_it_was_measured():
    """A record's commit must exist before the record's date (records are stamped when measuring starts)."""
    import datetime
    import subprocess

    shallow = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT, capture_output=True, text=True)
    if shallow.returncode or shallow.stdout.strip() != "false":
        pytest.skip("not a whole git history here: the records' commits cannot be dated")
    checked = 0
    for path in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        record = json.loads(path.read_text())
        commit = record.get("commit", "").split("+")[0]
        dated = subprocess.run(["git", "log", "-1", "--format=%cI", commit], cwd=ROOT, capture_output=True, text=True)
        if len(commit) < 7 or dated.returncode:
            continue  # a commit of a checkout elsewhere (the device tool's copy) or none recorded
        checked += 1
        made = datetime.datetime.fromisoformat(dated.stdout.strip())
        measured = datetime.datetime.strptime(record["date"], "%Y-%m-%dT%H:%M:%S%z")
        assert made <= measured, f"{path.name}: commit {commit[:7]} ({made}) is newer than the record ({measured})"
    assert checked >= 10
