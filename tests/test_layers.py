"""The house rule, checked from the code's own imports: layers are folders and imports point
down only (docs/architecture.md); commands import library code, never another command."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dereverb"
# Lower number = lower layer. A module may import its own layer or any lower one.
LAYERS = {
    "atomic": 0, "cli_errors": 0,
    "signals": 1,
    "representations": 2,
    "models": 3, "data": 3,
    "training": 4, "inference": 4,
    "evaluation": 5,
    "experiment": 6,
    "train": 7, "predict": 7, "evaluate": 7, "study": 7, "export": 7, "demo": 7,
}
COMMANDS = {name for name, layer in LAYERS.items() if layer == 7}
# The inference side: what python -m dereverb.predict imports.
LEAN = {"inference", "models", "representations", "signals"}  # must never import Lightning


def _modules() -> list[tuple[str, Path]]:
    return [(p.relative_to(PACKAGE).parts[0].removesuffix(".py"), p) for p in PACKAGE.rglob("*.py")
            if p.name != "__init__.py" or p.parent != PACKAGE]


def _imports(path: Path) -> list[str]:
    """Absolute module names imported anywhere in the file (top level and inside functions)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import"
            if node.module == "dereverb":
                names += [f"dereverb.{a.name}" for a in node.names]
            else:
                names.append(node.module)
    return names


def test_every_module_belongs_to_a_known_layer() -> None:
    unknown = sorted({top for top, _ in _modules()} - set(LAYERS))
    assert not unknown, f"add {unknown} to LAYERS in tests/test_layers.py and docs/architecture.md"


def test_imports_point_down_only_and_commands_import_no_command() -> None:
    bad = []
    for top, path in _modules():
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] != "dereverb" or len(parts) < 2:
                continue
            target = parts[1]
            if target == top:
                continue
            if LAYERS[target] > LAYERS[top] or (top in COMMANDS and target in COMMANDS):
                bad.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert not bad, "\n".join(bad)


def test_inference_side_never_imports_lightning_or_tensorboard() -> None:
    bad = [f"{path.relative_to(PACKAGE.parent)} imports {name}"
           for top, path in _modules() if top in LEAN
           for name in _imports(path) if name.split(".")[0] in ("lightning", "pytorch_lightning", "tensorboard")]
    assert not bad, "\n".join(bad)


def test_no_dunder_import_or_import_fallbacks_for_own_modules() -> None:
    bad = []
    for _, path in _modules():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
                bad.append(f"{path}: __import__")
            if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers
            ):
                own = [n for stmt in node.body for n in ast.walk(stmt)
                       if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("dereverb")]
                if own:
                    bad.append(f"{path}:{node.lineno}: import fallback for the package's own module")
    assert not bad, "\n".join(bad)


def test_no_folder_shadows_a_standard_library_module() -> None:
    """A package named like a stdlib module (``signal``, ``io``, ...) replaces it for any process
    whose ``sys.path`` holds its parent folder (a script run from ``dereverb/`` or ``tests/``)."""
    import sys

    folders = [p for root in (PACKAGE, PACKAGE.parent / "tests") for p in root.rglob("*") if p.is_dir()]
    clashes = sorted(str(p) for p in folders if p.name in sys.stdlib_module_names)
    assert not clashes, clashes
