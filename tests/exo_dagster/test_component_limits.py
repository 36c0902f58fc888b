"""An alias bomb in an inline cluster of a `defs.yaml`: what exo bounds, loaded by Dagster's own defs-folder loader.

Dagster parses every defs.yaml before any component's code runs, and walks its source positions once per expanded
value (`populate_source_position_and_key_paths`), so a bomb far past exo's bound costs Dagster's time before exo sees
it (README, "Two ways to load clusters", has the figures). What reaches exo is refused by exo's bounded loader, located
at the defs.yaml line, as a broken file: the healthy components of the project still load.
"""

from __future__ import annotations

import time

import dagster as dg
import pytest

from exo_dagster.location import ERRORS_GROUP

PACKAGE = "exo_bomb_demo"
PYPROJECT = f"""\
[project]
name = "exo-bomb-demo"
version = "0.1.0"

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "{PACKAGE}"
"""


def bomb_defs(levels: int, width: int = 10) -> str:
    """An inline cluster whose aliases expand to width**levels values (the YAML is ~65 bytes a level)."""
    lines = [
        "type: exo_dagster.ClusterComponent",
        "attributes:",
        "  cluster:",
        "    version: 0.0.1b",
        "    cluster:",
        "      identifier: acme/bomb",
        f"      l0: &l0 [{', '.join(['lol'] * width)}]",
    ]
    lines += [f"      l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    step = "      satellites: [{name: Q, uses: satellite/exospherehost/sql, config: {query: select 1}}]"
    return "\n".join(lines + [step]) + "\n"


HEALTHY = """\
type: exo_dagster.ClusterComponent
attributes:
  cluster:
    version: 0.0.1b
    cluster:
      identifier: acme/fine
      satellites: [{name: Q, uses: satellite/exospherehost/sql, identifier: q, config: {query: select 1 as x}}]
"""


@pytest.mark.slow
def test_an_inline_alias_bomb_is_a_located_broken_cluster_and_the_project_loads(tmp_path, monkeypatch):
    package = tmp_path / PACKAGE
    for folder in ("bomb", "fine"):
        (package / "defs" / folder).mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (package / "__init__.py").write_text("")
    (package / "defs" / "__init__.py").write_text("")
    (package / "defs" / "bomb" / "defs.yaml").write_text(bomb_defs(5))  # 100,000 values and more: past exo's bound
    (package / "defs" / "fine" / "defs.yaml").write_text(HEALTHY)
    for name in ("EXO_STRICT_LOAD", "DAGSTER_IS_DEFS_VALIDATION_CLI", "EXO_CLUSTERS", "EXO_SATELLITE_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    defs = dg.load_from_defs_folder(path_within_project=package)
    assert time.monotonic() - started < 60
    assert defs.resolve_job_def("acme__fine") is not None  # the healthy component loads
    broken = [
        spec for asset in defs.assets or [] for key, spec in asset.specs_by_key.items() if key.path[0] == ERRORS_GROUP
    ]
    assert len(broken) == 1, [s.key for s in broken]
    defs_yaml = package / "defs" / "bomb" / "defs.yaml"
    assert f"{defs_yaml}:11:51: error: aliases expand to more than 100,000 values" in broken[0].description
    with pytest.raises(dg.DagsterInvariantViolationError):  # no such job: the broken file made none
        defs.resolve_job_def("acme__bomb")
