"""Every exo tag and metadata key is written once, in exo_dagster/keys.py: no `exo/...` string elsewhere."""

from __future__ import annotations

import ast
from pathlib import Path

from exo_dagster import keys

ROOT = Path(__file__).resolve().parents[2]


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants, docstrings left out (they may name a key to explain it)."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_no_exo_key_is_spelled_outside_the_keys_module():
    written = []
    for path in sorted([*(ROOT / "exo_dagster").rglob("*.py"), *(ROOT / "satellites").rglob("*.py")]):
        if path == ROOT / "exo_dagster" / "keys.py":
            continue
        for line, text in _strings(ast.parse(path.read_text(), str(path))):
            if text.startswith(keys.EXO_PREFIX):
                written.append(f"{path.relative_to(ROOT)}:{line}: {text!r}")
    assert not written, "use a constant of exo_dagster/keys.py:\n" + "\n".join(written)


def test_the_keys_module_is_a_leaf_and_no_two_keys_share_a_spelling_by_accident():
    tree = ast.parse((ROOT / "exo_dagster" / "keys.py").read_text())
    imported = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [ast.unparse(n) for n in imported] == ["from __future__ import annotations"]
    values = {name: value for name, value in vars(keys).items() if name.isupper() and isinstance(value, str)}
    # a run tag and a materialization key never share a spelling by accident: only these pairs are one key
    same = {}
    for name, value in values.items():
        same.setdefault(value, []).append(name)
    shared = sorted(tuple(sorted(names)) for names in same.values() if len(names) > 1)
    assert shared == [("GPU", "GPU_TAG"), ("SATELLITE", "SATELLITE_TAG")]
