"""exo-dagster resolves beside the newest releases its ranges allow, and beside a Dagster project's own pins.

The ranges live in pyproject.toml; constraints.txt holds the versions CI runs on (every lower bound). pip's
resolver answers from the package index (metadata only, `--dry-run`), so this needs the index: without it the
test is skipped, saying so. It takes about two minutes, so `.ci/newest` runs it (with the fast tests, against the
newest releases), not the default suite.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# What a Dagster project of today pins next to exo (the releases issue 23 names), and the extras it takes.
PROJECT_PINS = ["dagster==1.13.28", "dagster-webserver==1.13.28", "polars==2.2.0", "duckdb==2.0.1", "pydantic==2.14.4"]


def _index_reachable() -> bool:
    try:
        urllib.request.urlopen("https://pypi.org/simple/dagster/", timeout=10).close()
        return True
    except OSError:
        return False


def _resolve(*requirements: str, tmp_path: Path) -> dict[str, str]:
    report = tmp_path / "report.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "-q",
            "--report",
            str(report),
            *requirements,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    installs = json.loads(report.read_text())["install"]
    return {re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower(): item["metadata"]["version"] for item in installs}


pytestmark = [
    pytest.mark.slow,  # resolves against the package index
    pytest.mark.skipif(
        not os.environ.get("EXO_TEST_NEWEST"),
        reason="asks the package index for about two minutes: `.ci/newest` runs it (EXO_TEST_NEWEST=1)",
    ),
    pytest.mark.skipif(not _index_reachable(), reason="the package index (pypi.org) is not reachable"),
]


def test_resolves_beside_a_project_pinned_to_the_newest_releases(tmp_path):
    """One resolution (about a minute): the project's pins are kept, and what it leaves open is the newest release,
    so no range of exo's holds a dependency back."""
    chosen = _resolve(f"{REPO}[ui]", *PROJECT_PINS, tmp_path=tmp_path)
    for pin in PROJECT_PINS:
        name, version = pin.split("==")
        assert chosen[name] == version, (name, chosen.get(name))
    for name in ("pyarrow", "fsspec", "pyyaml", "universal-pathlib"):
        newest = subprocess.run(
            [sys.executable, "-m", "pip", "index", "versions", name], capture_output=True, text=True, timeout=120
        ).stdout.split("\n")[0]
        assert newest.startswith(f"{name} ("), newest
        assert chosen[name] == newest.split("(")[1].rstrip(")"), (name, chosen[name], newest)
