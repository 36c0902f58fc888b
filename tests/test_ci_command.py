"""CI runs what the README tells a developer to run: the quickstart's second command's pytest invocation is
`.ci/run`'s, options included (workers, distribution)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTEST = re.compile(r"\.venv/bin/pytest(?: +(?!\d*>)[^\s|&>]+)*")  # the command and its options, not `2>&1 | tee`


def quickstart_test_command() -> str:
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    found = PYTEST.search(blocks[1])  # the quickstart's second command
    assert found, blocks[1]
    return found.group(0)


def test_ci_runs_the_readme_test_command():
    ci = [m.group(0) for m in PYTEST.finditer((REPO / ".ci" / "run").read_text())]
    assert ci == [quickstart_test_command()]
    assert quickstart_test_command().startswith(".venv/bin/pytest -n ")  # the parallel run the README documents
