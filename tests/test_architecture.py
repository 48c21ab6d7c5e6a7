"""The house rules of docs/architecture.md, checked on the source with `ast`: no import circle (function-local imports
counted, TYPE_CHECKING blocks not), packages import only packages below them, no module over 400 lines and no
function over 80, no function-local import of the project's own modules, each other local import marked
`# deferred: why`, and no private name imported from another module."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

ROOT = Path(__file__).resolve().parents[1] / "src" / "pneumocam"
# Low to high: a module may import from its own package and from packages before it (the root module is below all).
LAYERS = ("core", "data", "anatomy", "model", "evaluation", "train", "explain", "analysis", "report", "serve")
LAYERS += ("pipeline", "api", "cli")
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 80


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _outside_type_checking(tree: ast.AST):
    """Every node, with whether it sits inside a function, skipping `if TYPE_CHECKING:` blocks."""
    stack = [(tree, False)]
    while stack:
        node, local = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        yield node, local
        inner = local or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        stack.extend((child, inner) for child in ast.iter_child_nodes(node))


def imports(path: Path, root: Path, modules: set[str]):
    """(imported project module, line, is function-local, imported names) for each import of the package's own modules;
    `from pkg import module` counts as importing that module."""
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = []
    for node, local in _outside_type_checking(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno, local, []) for a in node.names if a.name in modules]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            if base not in modules:
                continue
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.append(
                    (child, node.lineno, local, []) if child in modules else (base, node.lineno, local, [alias.name])
                )
    return found


def package_graph(root: Path):
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    return files, {name: imports(path, root, set(files)) for name, path in files.items()}


def circles(edges: dict[str, list]) -> list[list[str]]:
    """Strongly connected components of more than one module (scipy's, on the import graph)."""
    names = sorted(edges)
    index = {n: i for i, n in enumerate(names)}
    pairs = {(index[a], index[b]) for a, found in edges.items() for b, *_ in found if b != a}
    rows, cols = zip(*pairs) if pairs else ((), ())
    graph = csr_matrix((np.ones(len(pairs)), (rows, cols)), shape=(len(names), len(names)))
    _, labels = connected_components(graph, directed=True, connection="strong")
    groups = [[names[i] for i in np.flatnonzero(labels == label)] for label in np.unique(labels)]
    return [g for g in groups if len(g) > 1]


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return -1 if len(parts) == 1 else len(LAYERS)
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else -2  # -2: a flat module outside every package


FILES, EDGES = package_graph(ROOT)


def test_the_circle_detector_finds_a_planted_circle(tmp_path):
    """A package where a -> b at the top and b -> a inside a function (the kind of circle local imports hide), and a
    third module c -> a that is on no circle: the detector must report exactly {a, b}."""
    package = tmp_path / "toy"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from toy import b\n")
    (package / "b.py").write_text("def f():\n    from toy.a import thing\n")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\nimport toy.a\nif TYPE_CHECKING:\n    import toy.b\n"
    )
    _, edges = package_graph(package)
    assert circles(edges) == [["toy.a", "toy.b"]]
    assert [m for m, *_ in edges["toy.c"]] == ["toy.a"]  # the TYPE_CHECKING import is not an edge


def test_every_module_sits_in_a_listed_package():
    assert len(FILES) > 40
    outside = sorted(m for m in FILES if layer(m) == -2)
    assert not outside, f"modules outside the packages of docs/architecture.md: {outside}"


def test_no_import_circle():
    assert not circles(EDGES)


@pytest.mark.parametrize("module", sorted(FILES))
def test_imports_only_from_below(module):
    upward = [f"line {line}: {target}" for target, line, *_ in EDGES[module] if layer(target) > layer(module)]
    assert not upward, f"{module} imports from a package above its own: {upward}"


def test_local_imports_are_deferred_heavy_dependencies_only():
    problems = []
    for module, path in FILES.items():
        lines = path.read_text().splitlines()
        problems += [
            f"{module} line {line}: local import of {target}" for target, line, local, _ in EDGES[module] if local
        ]
        for node, local in _outside_type_checking(ast.parse(path.read_text())):
            if local and isinstance(node, (ast.Import, ast.ImportFrom)):
                marked = any("# deferred:" in text for text in lines[node.lineno - 2 : node.end_lineno])
                if not marked:
                    problems.append(f"{module} line {node.lineno}: local import without '# deferred: why'")
    assert not problems, "\n".join(problems)


def test_no_private_name_from_another_module():
    found = [
        f"{module} line {line}: {target}.{name}"
        for module, edges in EDGES.items()
        for target, line, _, names in edges
        for name in names
        if name.startswith("_") and not (name.startswith("__") and name.endswith("__")) and target != module
    ]  # dunders such as __version__ are public by convention
    assert not found


def test_module_and_function_sizes():
    too_long = []
    for module, path in FILES.items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{module}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{module}.{node.name}: {length} lines")
    assert not too_long, "\n".join(too_long)


# ------------------------------------------------------------------------------------------- one home for each fact
SCHEMA = "pneumocam.core.schema"
# Comparisons with a literal 0.5 that are not decisions, each with why.
NOT_DECISIONS = {
    ("pneumocam.analysis.stats", "size < 0.5"): "Cohen's bound between a small and a medium effect",
    ("pneumocam.anatomy.lungs", "inside > 0.5"): "a smoothed 0/1 mask cut back to a mask",
    ("pneumocam.anatomy.lungs", "cv2.resize(prob, (gray.shape[1], side), interpolation=cv2.INTER_LINEAR) > 0.5"): (
        "the lung model's per-pixel mask"
    ),
    ("pneumocam.evaluation.metrics", "auc < 0.5"): "an AUC below chance",
}
# Where device and precision may be resolved: the edges a user or a program enters by. Everything below receives
# them resolved (train's loop, guard fit and checkpoint record; the run folder's provenance).
ENTRY_POINTS = (
    "pneumocam.cli",
    "pneumocam.pipeline.experiment",
    "pneumocam.pipeline.predict",
    "pneumocam.pipeline.evaluation",
)
ENTRY_POINTS += ("pneumocam.serve.service", "pneumocam.train.fit")


def half_comparisons(tree: ast.AST) -> list[str]:
    """The source of every comparison with a literal 0.5 on either side."""
    return [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        and any(isinstance(o, ast.Constant) and o.value == 0.5 for o in (node.left, *node.comparators))
    ]


def test_the_half_detector_finds_a_decision_and_leaves_other_numbers():
    tree = ast.parse("a = p >= 0.5\nb = 0.5 < q\nc = x * 0.5\nd = p >= 0.25\nf(t=0.5)\n")
    assert half_comparisons(tree) == ["p >= 0.5", "0.5 < q"]


def test_one_definition_of_the_threshold_rule():
    """The metrics keys of the two thresholds are written only in core/schema.py (so the rule choosing between them,
    decision_key, has one home), and no module decides at a literal 0.5 (core.schema.decide does, with
    FIXED_THRESHOLD)."""
    keys, decisions = [], []
    for module, path in FILES.items():
        if module == SCHEMA:
            continue
        tree = ast.parse(path.read_text())
        keys += [
            f"{module} line {n.lineno}: {n.value!r}"
            for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and n.value in ("threshold_0.5", "threshold_youden_val")
        ]
        decisions += [f"{module}: {s}" for s in half_comparisons(tree) if (module, s) not in NOT_DECISIONS]
    assert not keys, "threshold keys outside core/schema.py:\n" + "\n".join(keys)
    assert not decisions, "decisions at a literal 0.5 (use core.schema.decide):\n" + "\n".join(decisions)
    rule = [n.name for n in ast.walk(ast.parse(FILES[SCHEMA].read_text())) if isinstance(n, ast.FunctionDef)]
    assert "decision_key" in rule and "decide" in rule


def test_device_and_precision_are_resolved_only_at_the_entry_points():
    calls = []
    for module, path in FILES.items():
        if module.startswith(ENTRY_POINTS) or module in ("pneumocam.core.precision", "pneumocam.model.network"):
            continue  # the entry points, and the two functions' own homes
        calls += [
            f"{module} line {n.lineno}: {n.func.id if isinstance(n.func, ast.Name) else n.func.attr}"
            for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.Call)
            and (n.func.id if isinstance(n.func, ast.Name) else getattr(n.func, "attr", ""))
            in ("resolve_precision", "resolve_device")
        ]
    assert not calls, "resolved below the entry points:\n" + "\n".join(calls)


# ------------------------------------------------------------------------------------------- what imports torch
HEAVY = ("torch", "torchvision", "cv2", "sklearn", "matplotlib", "fastapi")


def imported_after(code: str) -> dict:
    """The heavy libraries in sys.modules after running `code` in a fresh interpreter, and what it printed."""
    import json
    import subprocess
    import sys

    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True)
    *printed, loaded = done.stdout.strip().splitlines()
    return {"loaded": json.loads(loaded), "printed": "\n".join(printed)}


def test_the_import_probe_sees_a_heavy_library_when_it_is_imported():
    assert imported_after("import sklearn.metrics")["loaded"] == ["sklearn"]


@pytest.mark.parametrize("argv", [["--version"], ["--help"], []])
def test_version_and_help_import_no_torch(argv):
    found = imported_after(f"from pneumocam.cli.entry import main\nmain({argv!r})")
    assert found["loaded"] == []
    assert ("pneumocam 0." in found["printed"]) if argv == ["--version"] else ("Commands" in found["printed"])


def test_the_help_lists_every_command_the_app_has():
    import typer

    from pneumocam.cli.app import app
    from pneumocam.cli.entry import SUMMARIES

    group = typer.main.get_command(app)
    assert sorted(group.commands) == sorted(SUMMARIES)
    assert {n: c.short_help for n, c in group.commands.items()} == SUMMARIES


def test_a_report_is_rendered_without_torch(tiny_run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    (copy / "report.html").unlink()
    found = imported_after(f"from pneumocam.report import render\nrender({str(copy)!r})")
    assert (copy / "report.html").is_file()
    assert "torch" not in found["loaded"] and "torchvision" not in found["loaded"]


# ------------------------------------------------------------------------------------------- defaults declared once
def literal_defaults(tree: ast.AST, names) -> list[str]:
    """Every parameter (or TrainConfig / ExperimentConfig-style dataclass field) of a name in `names` whose default is
    a literal number rather than a name pointing at its home."""
    found = []
    for node in ast.walk(tree):
        pairs = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            positional = a.posonlyargs + a.args
            pairs = list(zip(positional[len(positional) - len(a.defaults) :], a.defaults))
            pairs += [(k, d) for k, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]
            pairs = [(arg.arg, default) for arg, default in pairs]
        elif isinstance(node, ast.ClassDef):
            pairs = [(s.target.id, s.value) for s in node.body if isinstance(s, ast.AnnAssign) and s.value is not None]
            pairs = [(n, v) for n, v in pairs if isinstance(v, ast.Constant)]
        for name, default in pairs:
            literal = isinstance(default, ast.Constant) and type(default.value) in (int, float)
            if name in names and literal:
                found.append(f"line {default.lineno}: {name} = {default.value!r}")
    return found


def test_the_defaults_detector_finds_a_literal_and_passes_a_name():
    tree = ast.parse("def f(a, batch_size=32, seed=SEED):\n    pass\nclass C:\n    image_size: int = 224\n")
    assert literal_defaults(tree, {"batch_size", "seed", "image_size"}) == [
        "line 1: batch_size = 32",
        "line 4: image_size = 224",
    ]


def test_every_shared_default_is_declared_once():
    from pneumocam.core.defaults import SHARED

    found = []
    for module, path in FILES.items():
        if module != "pneumocam.core.defaults":
            found += [f"{module} {where}" for where in literal_defaults(ast.parse(path.read_text()), set(SHARED))]
    assert not found, "literal defaults of a shared name (take it from core/defaults.py):\n" + "\n".join(found)


def test_every_command_line_default_of_a_shared_name_is_its_home():
    """Each option of every command whose parameter has a shared name defaults to core/defaults.py's value, or to the
    command's own declared home where the option means something else under the same name."""
    import click
    import typer

    from pneumocam.cli.app import app
    from pneumocam.cli.lungs import DICE_SEED
    from pneumocam.core.defaults import PAIRED_RESAMPLES, SHARED
    from pneumocam.pipeline.demo import DEMO_IMAGE_SIZE

    own = {
        ("compare", "bootstrap"): PAIRED_RESAMPLES,  # a paired bootstrap over two runs
        ("lungs dice", "seed"): DICE_SEED,
        ("demo", "image_size"): DEMO_IMAGE_SIZE,
    }
    group = typer.main.get_command(app)
    checked, differ = 0, []
    stack = list(group.commands.items())
    while stack:
        name, command = stack.pop()
        if isinstance(command, click.Group) or hasattr(command, "commands"):
            stack += [(f"{name} {n}", c) for n, c in command.commands.items()]
            continue
        for param in command.params:
            if param.name in SHARED:
                checked += 1
                home = own.get((name, param.name), SHARED[param.name])
                default = param.default
                if isinstance(default, str):  # an option that also takes a word ('all'): its number as text
                    home = str(home)
                if default != home:
                    differ.append(f"{name} --{param.name}: {default!r} (home {home!r})")
    assert checked >= 10  # the commands do take shared options: this test reaches them
    assert not differ, differ


def test_the_gradcam_kernel_is_written_once():
    """The class sign, the explained score and the Grad-CAM formula live in model/gradcam.py; the explanation and the
    attention penalty both take them from there and write neither themselves."""
    users = ("pneumocam.explain.cam", "pneumocam.train.attention")
    for module in users:
        text = FILES[module].read_text()
        imported = {
            name for target, _, _, names in EDGES[module] if target == "pneumocam.model.gradcam" for name in names
        }
        assert {"explained_score", "grad_cam"} <= imported, module
        assert "* 2 - 1" not in text and ".mean(dim=(2, 3), keepdim=True) * activations" not in text, module


def test_a_wrong_layer_is_one_line_naming_the_valid_ones():
    from torchvision.models import resnet18

    from pneumocam.core.errors import SettingError
    from pneumocam.explain.cam import make_cam

    with pytest.raises(SettingError) as error:
        make_cam(resnet18(num_classes=1), "gradcam", layer="layer9")
    message = str(error.value)
    assert "\n" not in message and "'layer9'" in message and "layer4" in message and "layer3.1" in message


def test_the_library_speaks_through_one_channel():
    """No library module prints, opens a console or writes to stderr itself: notes and warnings go through
    core/messages.py (the command line, the progress bars and the server's own startup lines excepted)."""
    allowed = ("pneumocam.cli", "pneumocam.core.messages", "pneumocam.core.progress")
    found = []
    for module, path in FILES.items():
        if module.startswith(allowed):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = getattr(node.func, "id", getattr(node.func, "attr", "")) if isinstance(node, ast.Call) else ""
            if name in ("print", "Console") or (isinstance(node, ast.Attribute) and node.attr == "stderr"):
                found.append(f"{module} line {node.lineno}: {name or 'sys.stderr'}")
    assert not found, "\n".join(found)
