"""A configured satellite's fixed fields hold: no channel a cluster file controls sets one.

The preset below fixes call-webhook's `url` and an auth header from `${{ env.ACME_HOOK_TOKEN }}`. Each
attempt changes the `Call` step only, through one channel (config in any spelling, YAML aliases and merge
keys, `input:` per row or not, run-input templates), and must be a located error (FILE:LINE:COL) at
validate time; a step that reaches the runtime some other way is refused before any request is sent.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from exo_dagster.catalog import presets
from exo_dagster.catalog.loading import load_cluster_file
from exo_dagster.catalog.registry import Registry, default_registry
from exo_dagster.compile.compiler import compile_cluster
from exo_dagster.location import build_location
from exo_dagster.sdk import SatelliteConfig, satellite
from exo_dagster.spec import preset_rules
from exo_dagster.spec.errors import SpecError
from exo_dagster.spec.parser import parse_cluster
from tests.loopback import http_server

REPO = Path(__file__).resolve().parents[3]
EXO = Path(sys.executable).parent / "exo"
ATTACKER = "http://127.0.0.1:9/stolen"  # discard port: nothing listens; the e2e test uses a real second server
HOOK_ID = "satellite/acme/hook"

HOOK = """\
version: 0.0.1b
satellite:
  id: satellite/acme/hook
  uses: satellite/exospherehost/call-webhook
  config:
    url: {url}
    headers:
      Authorization: Bearer ${{{{ env.ACME_HOOK_TOKEN }}}}
  open: [timeout, max-redirects]
"""

CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: acme/hooks
  inputs:
    target: {{type: string, default: "{attacker}"}}
  satellites:
    - name: Rows
      uses: satellite/exospherehost/sql
      identifier: rows
      config: {{query: "select 1 as id, '{attacker}' as u"}}
    - name: Probe
      uses: satellite/exospherehost/call-webhook
      identifier: probe
      config: &evil {{url: "{attacker}"}}
      input: &evilrow {{url: "$${{{{ satellites.rows.output.u }}}}"}}
    - name: Call
      uses: satellite/acme/hook
      identifier: call
{call}
"""

LEGIT = """\
      config: {timeout: 5}
      input: {id: "$${{ satellites.rows.output.id }}"}"""

ROW = '"$${{ satellites.rows.output.u }}"'
ID = 'id: "$${{ satellites.rows.output.id }}"'

# name: (the Call step's body, the line marker and the text on it where the error is, the message)
ATTEMPTS = {
    "config, as written": (
        f'      config: {{url: "{ATTACKER}"}}',
        "config: {url:",
        "url",
        "`url` is fixed by `satellite/acme/hook`",
    ),
    "config, upper case": (
        f'      config: {{URL: "{ATTACKER}"}}',
        "config: {URL:",
        "URL",
        "`URL` names `url`, which is fixed by `satellite/acme/hook`",
    ),
    "config, Python spelling": (
        "      config: {follow_redirects: false}",
        "follow_redirects",
        None,
        "`follow_redirects` is fixed by `satellite/acme/hook`",
    ),
    "config, mixed case and hyphen": (
        "      config: {Verify-TLS: false}",
        "Verify-TLS",
        None,
        "`Verify-TLS` names `verify-tls`, which is fixed by",
    ),
    "config, YAML merge key": (
        "      config: {<<: *evil, timeout: 5}",
        "config: &evil {url:",
        "url",
        "`url` is fixed by `satellite/acme/hook`",
    ),
    "config, YAML alias": (
        "      config: *evil",
        "config: &evil {url:",
        "url",
        "`url` is fixed by `satellite/acme/hook`",
    ),
    "config, one field twice": (
        "      config: {max-redirects: 1, max_redirects: 9}",
        "max_redirects",
        None,
        "`max_redirects` sets `max-redirects` a second time",
    ),
    "input, per row": (
        f"      input: {{url: {ROW}}}",
        "input: {url:",
        "url",
        "`input.url` would set `url`, which is fixed by `satellite/acme/hook`",
    ),
    "input, one value for every row": (
        f'      input: {{url: "{ATTACKER}", {ID}}}',
        "input: {url:",
        "url",
        "`input.url` would set `url`, which is fixed by",
    ),
    "input, from a run input": (
        f'      input: {{url: "${{{{ inputs.target }}}}", {ID}}}',
        "input: {url:",
        "url",
        "`input.url` would set `url`, which is fixed by",
    ),
    "input, upper case": (f"      input: {{URL: {ROW}}}", "input: {URL:", "URL", "`input.URL` would set `url`"),
    "input, full-width letters": (
        f"      input: {{ｕｒｌ: {ROW}}}",
        "input: {ｕｒｌ:",
        "ｕｒｌ",
        "`input.ｕｒｌ` would set `url`",
    ),
    "input, trailing hyphen": (
        f"      input: {{Method-: GET, {ID}}}",
        "Method-",
        None,
        "`input.Method-` would set `method`, which is fixed by",
    ),
    "input, YAML merge key": (
        f"      input: {{<<: *evilrow, {ID}}}",
        "input: &evilrow {url:",
        "url",
        "`input.url` would set `url`, which is fixed by",
    ),
    "input, a field fixed at its default": (
        f"      input: {{body: {ROW}}}",
        "input: {body:",
        "body",
        "`input.body` would set `body`, which is fixed by",
    ),
}


@pytest.fixture(autouse=True)
def _no_satellite_path(monkeypatch):
    monkeypatch.delenv(presets.PATH_ENV, raising=False)


def _at(text: str, marker: str, value: str | None = None) -> tuple[int, int]:
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if marker in line)
    return index + 1, lines[index].index(value if value is not None else marker) + 1


def _folder(tmp_path: Path, call: str, hook_url: str = "http://127.0.0.1:9/preset", attacker: str = ATTACKER) -> Path:
    folder = tmp_path / "location"
    folder.mkdir(exist_ok=True)
    (folder / "hook.satellite.yaml").write_text(HOOK.format(url=hook_url))
    (folder / "hooks.yaml").write_text(CLUSTER.format(call=call, attacker=attacker))
    return folder


def test_the_preset_and_a_step_that_keeps_it_load(tmp_path):
    cluster = load_cluster_file(_folder(tmp_path, LEGIT) / "hooks.yaml")
    call = cluster.step("call")
    assert call.config["url"] == "http://127.0.0.1:9/preset" and call.config["timeout"] == 5
    assert preset_rules.step_problems(call.satellite, call.config, call.spec.input) == []


@pytest.mark.parametrize("attempt", sorted(ATTEMPTS))
def test_each_bypass_is_a_located_error(tmp_path, attempt):
    call, marker, value, message = ATTEMPTS[attempt]
    folder = _folder(tmp_path, call)
    text = (folder / "hooks.yaml").read_text()
    with pytest.raises(SpecError) as info:
        load_cluster_file(folder / "hooks.yaml")
    report = str(info.value)
    line, column = _at(text, marker, value)
    assert f"{folder / 'hooks.yaml'}:{line}:{column}: error: {message}" in report, report
    assert "Traceback" not in report
    assert all(d.location.line > 1 for d in info.value.errors)  # located, not the file's first line
    if "YAML" in attempt:  # the value is written at the anchor above; the step's own line is named too
        own = text.splitlines().index(call.splitlines()[0]) + 1
        assert f"{own}:7: note: it comes into this step here (a YAML alias or `<<:` merge)" in report, report


@pytest.mark.slow
def test_exo_validate_and_the_code_location_refuse_a_per_row_url(tmp_path):
    call, marker, value, message = ATTEMPTS["input, per row"]
    folder = _folder(tmp_path, call)
    file = (folder / "hooks.yaml").resolve()
    line, column = _at(file.read_text(), marker, value)

    built = build_location([folder])
    assert set(built.broken) == {str(file)}, built.error()
    assert f"{file}:{line}:{column}: error: {message}" in str(built.broken[str(file)])

    dropped = ("EXO_DATA_DIR", "EXO_CLUSTERS", "DAGSTER_HOME", presets.PATH_ENV)
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [str(EXO), "validate", str(folder)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"{file}:{line}:{column}: error: {message}" in output
    assert "open:" in output and "Traceback" not in output


def test_an_open_field_may_come_from_input_and_a_declared_non_override_is_not_refused(tmp_path):
    opened = HOOK.format(url="http://127.0.0.1:9/preset").replace("open: [timeout, max-redirects]", "open: [url, body]")
    registry = presets.load_presets([_write(tmp_path / "h.satellite.yaml", opened)], default_registry()).registry
    cluster = CLUSTER.format(attacker=ATTACKER, call=f"      input: {{URL: {ROW}, body: {ROW}}}")
    assert parse_cluster(cluster, "c.yaml", registry=registry).step("call").spec.input  # the preset opened them

    sink = """\
version: 0.0.1b
satellite:
  id: satellite/acme/sink
  uses: satellite/exospherehost/write-table
  config: {path: out/sink.parquet, table: events}
"""
    registry = presets.load_presets([_write(tmp_path / "s.satellite.yaml", sink)], default_registry()).registry
    text = CLUSTER.format(attacker=ATTACKER, call='      input: {table: "${{ satellites.rows.output }}"}').replace(
        "uses: satellite/acme/hook", "uses: satellite/acme/sink"
    )
    step = parse_cluster(text, "c.yaml", registry=registry).step("call")  # write-table declares no overrides
    assert step.config["table"] == "events"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


class LevelConfig(SatelliteConfig):
    level: str = "info"
    label: str = ""


def test_a_satellite_that_does_not_declare_its_overrides_is_taken_to_let_any_input_set_any_field(tmp_path):
    registry = Registry()
    for satellite_id, overrides in (("satellite/acme/undeclared", None), ("satellite/acme/declared", ("label",))):
        satellite(satellite_id, config=LevelConfig, overrides=overrides, registry=registry)(lambda ctx, config: None)
    merged = default_registry().merged(registry)
    files = []
    for name in ("undeclared", "declared"):
        text = (
            f"version: 0.0.1b\nsatellite:\n  id: satellite/acme/q-{name}\n  uses: satellite/acme/{name}\n"
            "  config: {level: warn}\n"
        )
        files.append(_write(tmp_path / f"{name}.satellite.yaml", text))
    loaded = presets.load_presets(files, merged)
    assert not loaded.broken, loaded.broken
    for name, refused in (("undeclared", ["Level", "LABEL"]), ("declared", ["LABEL"])):
        definition = loaded.registry.get(f"satellite/acme/q-{name}")
        given = {"Level": "debug", "LABEL": "x", "other": 1}
        assert [key for key, _ in preset_rules.fixed_by_input(definition, given)] == refused


def _variants(name: str, rng: random.Random) -> str:
    """`name` as a cluster could spell it: any case, `-` or `_`, full-width letters, a trailing `_` or `-`."""
    out = []
    for char in name:
        if char in "-_":
            out.append(rng.choice("-_"))
        else:
            char = char.upper() if rng.random() < 0.5 else char
            out.append(chr(ord(char) + 0xFEE0) if char.isascii() and char.isalnum() and rng.random() < 0.2 else char)
    return "".join(out) + rng.choice(["", "", "_", "-"])


def test_no_spelling_of_a_fixed_field_gets_through_config_or_input(tmp_path):
    """Property: every generated spelling of every fixed call-webhook field is refused, in `input:` by the
    shared rule and in `config:` by the checker (or by pydantic, as an unknown key)."""
    registry = presets.load_presets(
        [_write(tmp_path / "h.satellite.yaml", HOOK.format(url="http://127.0.0.1:9/p"))], default_registry()
    ).registry
    definition = registry.get(HOOK_ID)
    overridable = set(preset_rules.input_targets(definition).values())
    assert overridable == {"url", "method", "body"}
    rng = random.Random(21)
    tried = through = 0
    for field in sorted(preset_rules.locked(definition)):
        for _ in range(250):
            written = _variants(field, rng)
            tried += 1
            if field in overridable:
                through += not preset_rules.fixed_by_input(definition, {written: "x"})
            through += preset_rules.field_for(definition.config_model, written) != field
            if tried % 10 == 0:  # and the checker itself, on a sample: a located error, never a loaded step
                text = CLUSTER.format(attacker=ATTACKER, call=f"      config: {{{json.dumps(written)}: x}}")
                try:
                    parse_cluster(text, "c.yaml", registry=registry)
                    through += 1
                except SpecError as exc:
                    through += not any(d.location.line == text.count("\n") for d in exc.errors)
    assert tried >= 2500 and through == 0, f"{through} of {tried} spellings got through"


def test_the_runtime_rule_refuses_a_step_that_changes_a_fixed_field():
    registry = presets.load_presets([], default_registry()).registry
    base = registry.get("satellite/exospherehost/call-webhook")
    definition = dataclasses.replace(
        base,
        id=HOOK_ID,
        fixed_config={"url": "http://p", "mode": "per-row"},
        open_config=("timeout",),
        based_on=f"{base.id}@{base.version}",
    )
    kept = {"url": "http://p", "mode": "per-row", "timeout": 3}
    assert preset_rules.step_problems(definition, kept, {"id": "$${{ satellites.r.output.id }}"}) == []
    forged = {
        "changed": ({**kept, "url": "http://evil"}, {}, "`url` differs from the value the preset fixes"),
        "dropped": ({"mode": "per-row"}, {}, "`url`, fixed by the preset, is missing"),
        "respelled": ({"URL": "http://p", "mode": "per-row"}, {}, "config key `URL` is not a field"),
        "added": ({**kept, "verify_tls": False}, {}, "`verify-tls` differs from the value the preset fixes"),
        "per-row url": (kept, {"Url": "$${{ satellites.r.output.u }}"}, "`input.Url` would set `url`"),
    }
    for name, (config, given, problem) in forged.items():
        problems = preset_rules.step_problems(definition, config, given)
        assert any(problem in p for p in problems), (name, problems)


E2E = """\
version: 0.0.1b
cluster:
  identifier: acme/hooks
  satellites:
    - name: Rows
      uses: satellite/exospherehost/sql
      identifier: rows
      config: {{query: "select 1 as id, '{attacker}' as u"}}
    - name: Call
      uses: satellite/acme/hook
      identifier: call
      input: {{id: "$${{{{ satellites.rows.output.id }}}}"}}
    - name: Forged
      uses: satellite/acme/hook
      identifier: forged
      input: {{id: "$${{{{ satellites.rows.output.id }}}}"}}
"""


@pytest.mark.slow
def test_a_run_sends_only_to_the_presets_url_and_refuses_a_forged_step(tmp_path, monkeypatch):
    """End to end, on real loopback servers: the request carrying the preset's token goes to the preset's URL
    only; a step whose input was changed after the checker (a forged ParsedStep) fails before any request."""
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ACME_HOOK_TOKEN", "tok-preset-only-123456")
    with http_server() as preset, http_server() as attacker:
        _write(tmp_path / "hook.satellite.yaml", HOOK.format(url=preset.url + "/preset"))
        cluster = load_cluster_file(_write(tmp_path / "hooks.yaml", E2E.format(attacker=attacker.url + "/stolen")))
        forged_input = {"url": json.loads(ROW), "id": "$${{ satellites.rows.output.id }}"}
        cluster.steps = [
            dataclasses.replace(s, spec=s.spec.model_copy(update={"input": forged_input}))
            if s.identifier == "forged"
            else s
            for s in cluster.steps
        ]

        result = (
            compile_cluster(cluster)
            .resolve_job_def(cluster.job_name)
            .execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
        )

        [sent] = preset.to("/preset")
        assert sent.headers["Authorization"] == "Bearer tok-preset-only-123456"
        assert attacker.requests == []  # 0 requests reach the URL the cluster chose
        [failure] = [e for e in result.all_events if e.is_step_failure]
        assert "forged" in failure.step_key
        description = failure.step_failure_data.user_failure_data.description
        assert "changes what `satellite/acme/hook` fixes: `input.url` would set `url`" in description


def test_a_preset_that_writes_one_field_twice_is_a_located_error(tmp_path):
    twice = "    max-redirects: 1\n    max_redirects: 9\n    headers:\n"
    text = HOOK.format(url="http://127.0.0.1:9/p").replace("    headers:\n", twice)
    file = _write(tmp_path / "twice.satellite.yaml", text)
    with pytest.raises(SpecError) as info:
        presets.load_preset_file(file, default_registry())
    line, column = _at(text, "max_redirects")
    assert (
        f"{file}:{line}:{column}: error: `max_redirects` sets `max-redirects` a second time (as `max-redirects` "
        "above)" in str(info.value)
    )
