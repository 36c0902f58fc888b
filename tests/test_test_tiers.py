"""The fast tier (`pytest -m "not slow"`) leaves out whole folders whose every test starts Dagster processes or
builds wheels: a new test file there must say so with a module-level `pytestmark` carrying `pytest.mark.slow`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SLOW_FOLDERS = ("definitions", "packaging")


def module_marks(path: Path) -> str:
    """The source of the module's `pytestmark` value ('' when it has none)."""
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            return ast.unparse(node.value)
    return ""


@pytest.mark.parametrize("folder", SLOW_FOLDERS)
def test_every_file_in_the_slow_folders_is_marked_slow(folder):
    files = sorted((TESTS / folder).glob("**/test_*.py"))
    assert files, f"no test files under tests/{folder}"
    unmarked = [str(f.relative_to(TESTS.parent)) for f in files if "mark.slow" not in module_marks(f)]
    assert unmarked == [], f"add `pytestmark = pytest.mark.slow` to: {unmarked}"


def test_module_marks_reads_the_assignment(tmp_path):
    marked = tmp_path / "test_a.py"
    marked.write_text("import pytest\n\npytestmark = [pytest.mark.slow, pytest.mark.timeout(5)]\n")
    unmarked = tmp_path / "test_b.py"
    unmarked.write_text("import pytest\n\n\n@pytest.mark.slow\ndef test_x():\n    pass\n")
    assert "mark.slow" in module_marks(marked) and module_marks(unmarked) == ""
