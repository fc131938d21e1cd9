"""ARCHITECTURE.md is true: every module is listed with the truecount modules it imports, and the
imports respect the layers (lower layers never import higher ones)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "truecount"
#: Lowest first; a module may import from its own layer and the ones before it.
LAYERS = (("errors", "quantities"), ("inputs",), ("model",), ("inference",), ("outputs",),
          ("workflows",), ("cli", "truecount"))


def _module(path: Path) -> str:
    """``model.build`` for ``src/truecount/model/build.py``; ``truecount`` for the package."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or "truecount"


def _imports(path: Path) -> set[str]:
    """The truecount modules ``path`` imports, anywhere in it (function-local imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and (node.module == "truecount" or node.module.startswith("truecount.")):
            base = node.module.removeprefix("truecount").lstrip(".")
            for alias in node.names:
                candidate = f"{base}.{alias.name}" if base else alias.name
                is_module = (PACKAGE / (candidate.replace(".", "/") + ".py")).exists()
                found.add(candidate if is_module else (base or "truecount"))
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("truecount.") for a in node.names
                      if a.name.startswith("truecount.")}
    found.discard(_module(path))
    return found


def _listed() -> dict[str, set[str]]:
    """Module -> the backticked truecount modules of its "depends on" cell in ARCHITECTURE.md."""
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    rows = {}
    for match in re.finditer(r"^\| `([\w/]+\.py)` \| .* \| (.*) \|$", text, flags=re.M):
        path = PACKAGE / match.group(1)
        rows[_module(path)] = set(re.findall(r"`([\w.]+)`", match.group(2).split(";")[0]))
    return rows


def _layer(module: str) -> int:
    top = module.split(".")[0]
    return next(i for i, names in enumerate(LAYERS) if top in names)


def test_every_module_is_listed_with_exactly_its_imports():
    listed = _listed()
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    subpackage_inits = {m for m, p in modules.items() if p.name == "__init__.py" and m != "truecount"}
    missing = sorted(set(modules) - set(listed) - subpackage_inits)
    assert missing == [], f"modules missing from ARCHITECTURE.md: {missing}"
    stale = sorted(set(listed) - set(modules))
    assert stale == [], f"ARCHITECTURE.md lists modules that do not exist: {stale}"
    wrong = {m: (sorted(listed[m]), sorted(_imports(modules[m]))) for m in listed
             if listed[m] != _imports(modules[m])}
    assert wrong == {}, "depends-on column (listed, imported) differs: " + repr(wrong)


def test_subpackage_inits_import_nothing():
    for init in PACKAGE.glob("*/__init__.py"):
        tree = ast.parse(init.read_text(encoding="utf-8"))
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)], init


def test_no_module_imports_a_higher_layer():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        module = _module(path)
        for imported in _imports(path):
            if _layer(imported) > _layer(module):
                upward.append(f"{module} imports {imported}")
    assert upward == []


def test_every_third_party_import_is_a_declared_dependency():
    """An installed truecount needs nothing pyproject.toml does not ask for (dev tools included)."""
    import sys
    import tomllib
    from importlib.metadata import packages_distributions

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {Requirement(r).name.lower().replace("_", "-") for r in project["dependencies"]}
    providers = packages_distributions()
    undeclared = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top == "truecount" or top in sys.stdlib_module_names:
                    continue
                dists = {d.lower().replace("_", "-") for d in providers.get(top, [top])}
                if not dists & declared:
                    undeclared.add(f"{top} ({path.relative_to(PACKAGE)})")
    assert sorted(undeclared) == []
