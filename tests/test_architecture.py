"""The layout is the architecture: every module imports only from its own layer or the layers below
(docs/architecture.md), and nothing outside a learner asks what kind of learner it has."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import purelearn

ROOT = Path(purelearn.__file__).parent

#: Layers from the bottom up; a module may import from its own layer and the layers below.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("primitives", ("tree", "validate", "surrogate", "random", "scan", "distributed")),
    ("model", ("layer", "neurons", "nn", "interop")),
    ("optimisation", ("optim", "schedules")),
    ("learners", ("online",)),
    ("transforms and files", ("compile", "sweep", "checkpoint", "data", "models")),
    ("application", ("app", "__main__")),
]
RANK = {name: rank for rank, (_, names) in enumerate(LAYERS) for name in names}


def top_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return rel.parts[0]


def imported_purelearn_modules(path: Path, root: Path = ROOT) -> set[str]:
    """The top-level purelearn modules ``path`` (a file under ``root``) imports, relatively or not."""
    tree = ast.parse(path.read_text())
    package = path.relative_to(root).parent.parts
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = list(package[: len(package) - (node.level - 1)]) if node.level > 1 else list(package)
                parts = base + (node.module.split(".") if node.module else [])
                if parts:
                    found.add(parts[0])
                else:  # "from . import x" at the top level
                    found.update(alias.name for alias in node.names)
            elif node.module and node.module.split(".")[0] == "purelearn":
                parts = node.module.split(".")[1:]
                found.update([parts[0]] if parts else [alias.name for alias in node.names])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "purelearn" and len(parts) > 1:
                    found.add(parts[1])
    return found


def test_every_module_has_a_layer():
    names = {top_name(p) for p in ROOT.rglob("*.py") if p.name != "__init__.py" or p.parent != ROOT}
    assert names <= set(RANK), f"modules without a layer: {sorted(names - set(RANK))}"


def test_imports_point_down_the_layers():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        if path == ROOT / "__init__.py":
            continue
        here = top_name(path)
        for name in imported_purelearn_modules(path):
            if name in RANK and RANK[name] > RANK[here]:
                wrong.append(f"{path.relative_to(ROOT)} ({LAYERS[RANK[here]][0]}) imports {name} "
                             f"({LAYERS[RANK[name]][0]})")
    assert not wrong, "imports that point up the layers:\n" + "\n".join(wrong)


def test_the_import_reader_resolves_relative_and_absolute_imports(tmp_path):
    (tmp_path / "online").mkdir()
    (tmp_path / "tree.py").write_text("import torch\nfrom .online import fptt\nfrom . import scan\n")
    (tmp_path / "online" / "x.py").write_text("from ..nn import Sequential\nfrom . import driver\n"
                                               "from purelearn.optim import sgd\nimport purelearn.data\n")
    assert imported_purelearn_modules(tmp_path / "tree.py", tmp_path) == {"online", "scan"}
    assert imported_purelearn_modules(tmp_path / "online" / "x.py", tmp_path) == {"nn", "online", "optim", "data"}


#: Learner types named outside ``purelearn.online``: only where a learner is built (the registry).
LEARNER_TYPES = re.compile(r"isinstance\([^)]*\b(online\.)?(FPTT|FPTTDual|OTTT|SLTT|BPTT|Forward)\b|"
                           r"getattr\([^)]*[\"'](window|k|selected_steps)[\"']")


def test_nothing_outside_the_learners_asks_what_kind_of_learner_it_has():
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        if path.relative_to(ROOT).parts[0] == "online":
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), start=1):
            if LEARNER_TYPES.search(line.split("#")[0]):
                found.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not found, "\n".join(found)
