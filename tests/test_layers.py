"""The package's layers, read from its source with ast: each subpackage
imports only the layers below it (docs/architecture.md draws them), and
every import of atelier's own modules sits at the top of a module, where a
reader sees what the module stands on."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "atelier"

# What each layer may import of atelier, besides itself.
ALLOWED = {
    "core": set(),
    "render": {"core"},
    "tmux": {"core"},
    "engine": {"core", "render"},
    "ssh": {"core", "render", "engine"},
    "pg": {"core", "render", "ssh"},
    "dba": {"core", "render", "engine", "ssh", "pg"},
    "tasks": {"core", "render", "tmux", "engine", "ssh", "pg", "dba"},
    "cli": {"tasks"},
}


def layer_of(package: Path, path: Path) -> str:
    """The subpackage a module is in (a top-level module is its own layer)."""
    return path.relative_to(package).with_suffix("").parts[0]


def atelier_imports(package: Path, path: Path):
    """(line, module, at module level?) for each import of atelier's own modules."""
    tree = ast.parse(path.read_text(), str(path))
    here = ["atelier", *path.relative_to(package).parent.parts]
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            if not module.startswith("atelier"):
                continue
            if module.count(".") < 1 or not node.module:  # `from atelier import x`, `from . import x`
                for alias in node.names:
                    yield node.lineno, f"{module}.{alias.name}", id(node) in top
            else:
                yield node.lineno, module, id(node) in top
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("atelier"):
                    yield node.lineno, alias.name, id(node) in top


def modules(package: Path) -> list[Path]:
    return sorted(p for p in package.rglob("*.py") if p != package / "__init__.py")


def back_arrows(package: Path) -> list[str]:
    wrong = []
    for path in modules(package):
        mine = layer_of(package, path)
        for line, name, _ in atelier_imports(package, path):
            parts = name.split(".")
            target = parts[1] if len(parts) > 1 else ""
            if target != mine and target not in ALLOWED.get(mine, set()):
                wrong.append(f"{path.relative_to(package)}:{line} ({mine}) imports {name}")
    return wrong


def hidden_imports(package: Path) -> list[str]:
    return [f"{path.relative_to(package)}:{line} imports {name} inside a function"
            for path in modules(package) for line, name, at_top in atelier_imports(package, path) if not at_top]


def test_every_module_is_in_a_known_layer():
    layers = {layer_of(PACKAGE, p) for p in modules(PACKAGE)}
    assert layers <= set(ALLOWED), layers - set(ALLOWED)


def test_each_layer_imports_only_the_layers_below_it():
    assert back_arrows(PACKAGE) == []


def test_atelier_modules_are_imported_at_the_top_of_a_module_only():
    assert hidden_imports(PACKAGE) == []


def test_the_walk_sees_a_back_arrow_and_a_hidden_import(tmp_path):
    """The checks above can fail: a pure module importing the engine, a
    relative import inside a function, and `from atelier import x`."""
    fake = tmp_path / "atelier"
    (fake / "render").mkdir(parents=True)
    (fake / "render" / "bad.py").write_text(
        "from atelier.engine.up import up\nfrom atelier import dba\n\n"
        "def f():\n    from ..core import errors\n")
    assert back_arrows(fake) == ["render/bad.py:1 (render) imports atelier.engine.up",
                                 "render/bad.py:2 (render) imports atelier.dba"]
    assert hidden_imports(fake) == ["render/bad.py:5 imports atelier.core inside a function"]
