"""The benchmarks judge themselves: a missed target or a failed timed run is a non-zero exit, and a record is stamped
when measuring starts and refused when the tree changed while it ran."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _module(name: str):
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_missed_targets_and_a_failed_run_are_named():
    run = _module("run")
    results = {
        "forward_and_gradcam_224": {"forward_share_of_fp32_ceiling": 0.6, "gradcam_vs_forward": 0.5,
                                    "gradcam_vs_library": 3.0},
        "frozen_training": {"frozen_total_vs_feature_pass": 1.2, "frozen_speedup_vs_naive": 8.0},
        "data_path": {"kermany": {"per_core_vs_model_forward": 2.0}},
        "end_to_end": {"exit_code": 1, "wall_s": 700.0, "peak_rss_mb": 100.0},
    }  # fmt: skip
    missed = run.missed_targets(results)
    assert len(missed) == 4  # by hand: Grad-CAM vs forward, the data path, the wall time, the failed run
    assert any(m.startswith("gradcam_vs_forward") for m in missed) and any("exit code 1" in m for m in missed)
    met = json.loads(json.dumps(results))
    met["forward_and_gradcam_224"]["gradcam_vs_forward"] = 0.9
    met["data_path"]["kermany"]["per_core_vs_model_forward"] = 3.5
    met["end_to_end"] = {"exit_code": 0, "wall_s": 500.0, "peak_rss_mb": 100.0}
    assert run.missed_targets(met) == []


def test_a_record_is_stamped_at_the_start_and_refused_when_the_tree_changed(tmp_path, monkeypatch):
    record = _module("record")
    monkeypatch.setattr(record, "machine", lambda: {"cores": 2, "cpu": "test"})
    tree = {"now": "abc\n"}
    monkeypatch.setattr(record, "tree_state", lambda: tree["now"])
    stamped = record.stamp()
    written = json.loads(record.write_record("t", {"x": 1}, out=tmp_path, stamped=stamped).read_text())
    assert written["date"] == stamped["date"] and written["stamped"] == "when the measurement started"
    assert written["commit"] == "abc"
    stamped = record.stamp()
    tree["now"] = "abc\n M src/x.py\n"  # a file changed while measuring
    with pytest.raises(SystemExit, match="tree changed"):
        record.write_record("t2", {"x": 1}, out=tmp_path, stamped=stamped)
    assert not (tmp_path / "t2.json").exists()


def _diff(before: str, after: str) -> str:
    return f"--- a.py\n+++ a.py\n@@ -1 +1 @@\n-{before}\n+{after}\n"


def test_mutation_testing_marks_only_message_text_changes_equivalent():
    """mutmut's own mutant kinds, by hand: text inside a message (a literal with a space) is equivalent; a key, a
    label without a space, an f-string's expression, code, or a change over two lines is not."""
    text_only = _module("mutation").text_only
    message = '        raise ValueError("no PNEUMONIA films: a target is undefined")'
    assert text_only(_diff(message, message.replace('"no', '"XXno').replace('undefined"', 'undefinedXX"')))
    assert text_only(_diff(message, message.replace("no PNEUMONIA", "no pneumonia")))
    joined = "        f\"First examples: {', '.join(self.examples[:3])}\""
    assert not text_only(_diff(joined, joined.replace("', '", "'XX, XX'")))  # inside {...}: not placed, not marked
    assert not text_only(_diff(joined, joined.replace("[:3]", "[:4]")))  # the expression inside the f-string
    key = '        "rules": {'
    assert not text_only(_diff(key, key.replace('"rules"', '"XXrulesXX"')))  # a key: no space
    code = "        if len(x) < n_per_class:"
    assert not text_only(_diff(code, code.replace("<", "<=")))
    value = '        "test": "student",'
    assert not text_only(_diff(value, value.replace('"student"', '"XXstudentXX"')))  # a label without a space
    two = "--- a.py\n+++ a.py\n@@ -1,2 +1,2 @@\n-    a = 'x y'\n-    b = 1\n+    a = 'x yXX'\n+    b = 2\n"
    assert not text_only(two)


def test_a_mutant_is_applied_only_where_its_removed_lines_occur_once():
    apply_mutant = _module("mutation").apply_mutant
    source = "def f(x):\n    y = x + 1\n    return y\n"
    assert apply_mutant(source, _diff("    y = x + 1", "    y = x - 1")) == "def f(x):\n    y = x - 1\n    return y\n"
    assert apply_mutant(source + source, _diff("    y = x + 1", "    y = x - 1")) is None  # twice: not guessed
    assert apply_mutant(source, _diff("    y = x + 2", "    y = x - 1")) is None  # absent
