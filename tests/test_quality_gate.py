"""The quality gate (README, "Developing") as part of the suite: `ruff check .`, `ruff format --check .` and
`pyright`, each from the virtual environment running the tests, must pass on the whole tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # pyright alone takes 20 s or more here

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GATE = {
    "ruff-check": ["ruff", "check", "."],
    "ruff-format": ["ruff", "format", "--check", "."],
    "pyright": ["pyright", "-p", "pyproject.toml"],  # this project's config, whatever a parent folder holds
}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", GATE)
def test_the_gate_passes(name):
    program, *args = GATE[name]
    command = [str(BIN / program), *args]
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=840)
    assert out.returncode == 0, f"`{' '.join(GATE[name])}` exited {out.returncode}:\n{out.stdout[-20000:]}{out.stderr}"
