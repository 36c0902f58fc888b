"""Configured satellites (presets): a YAML file that declares a new satellite id as a fixed setup of another.

    # summarize.satellite.yaml
    version: 0.0.1b
    satellite:
      id: satellite/acme/summarize          # the new id; clusters write `uses: satellite/acme/summarize@1.2.0`
      version: 1.2.0                        # default 1.0.0
      uses: satellite/exospherehost/llm-complete   # the base: a satellite written in Python (optionally @version)
      docs: Summarize a support ticket in one sentence.
      config:                               # fixed: validated by the base's Config model
        model: gpt-4o-mini
        system: Summarize the ticket in one sentence.
      open: [temperature, timeout]          # the only config fields a cluster may set (`secrets` always may)

A field both in `config` and `open` is a default the cluster may change; every other field is fixed (at its
value, or the base's default) and no channel sets it: not `config:` in any case or spelling, not an `input:`
key that the satellite reads in its place (call-webhook's per-row `url`); see spec/preset_rules.py, which
the checker (located errors) and the step runtime (a refusal) share. A required base field must be
fixed or open. A preset's config may use `${{ env.NAME }}` and `${{ cluster.* }}` templates; table and
secret references belong in the cluster. A preset is based on a satellite written in Python, not on
another preset.

Where presets are found: files named `*.satellite.yaml` (or `.yml`) under the folders in
`EXO_SATELLITE_PATH` (separated by os.pathsep) and under the code location's / `exo validate`'s paths
(a folder: recursively, as cluster files are found; a cluster file: its own folder). `exo run FILE`
and a cluster loaded alone look in EXO_SATELLITE_PATH and the file's folder. Every mistake in a preset
file is a located error in that file; a broken preset file is left out (the location shows it in
`exo_errors`) and named where a cluster uses its id.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator

from exo_dagster.catalog.registry import Registry
from exo_dagster.sdk import templates
from exo_dagster.sdk.satellite import SATELLITE_ID, SatelliteDef
from exo_dagster.spec.errors import Diagnostic, Location, SpecError
from exo_dagster.spec.located_yaml import load_located
from exo_dagster.spec.lookup import UnknownSatellite
from exo_dagster.spec.models import SpecModel, SpecVersion
from exo_dagster.spec.parser import config_key, did_you_mean, unknown_satellite_hint, validation_diagnostics

SUFFIXES = (".satellite.yaml", ".satellite.yml")
PATH_ENV = "EXO_SATELLITE_PATH"
TEMPLATE_ROOTS = ("env", "cluster")  # what a preset's fixed config may reference
BODY = ("satellite",)


class PresetBody(SpecModel):
    id: str
    version: str = Field("1.0.0", pattern=r"^[A-Za-z0-9_.+-]+$")
    uses: str
    docs: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    open: list[str] = Field(default_factory=list)

    @field_validator("config", "open", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any, info) -> Any:
        return ({} if info.field_name == "config" else []) if value is None else value


class PresetFile(SpecModel):
    version: SpecVersion
    satellite: PresetBody


def is_preset_file(path: str | os.PathLike) -> bool:
    return str(path).endswith(SUFFIXES)


def env_folders() -> list[str]:
    return [p for p in os.environ.get(PATH_ENV, "").split(os.pathsep) if p.strip()]


def find_preset_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Preset files for these paths: a folder is searched recursively, a preset file is itself, any other
    file stands for its own folder (not recursively). Sorted per path, de-duplicated, in path order."""
    found: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            if is_preset_file(path):
                found[path.resolve()] = None
                continue
            candidates = files_in(path.resolve().parent)
        elif path.is_dir():
            candidates = sorted(path.rglob("*"))
        else:
            continue
        for file in candidates:
            if is_preset_file(file.name) and file.is_file():
                found[file.resolve()] = None
    return list(found)


def files_in(folder: str | os.PathLike) -> list[Path]:
    """The preset files directly in `folder` (not below it), sorted."""
    path = Path(folder)
    if not path.is_dir():
        return []
    return [f.resolve() for f in sorted(path.glob("*")) if is_preset_file(f.name) and f.is_file()]


@dataclass
class Presets:
    """A registry with the presets that loaded, and each broken preset file's located errors."""

    registry: Registry
    loaded: dict[str, SatelliteDef] = field(default_factory=dict)  # file -> its satellite
    broken: dict[str, SpecError] = field(default_factory=dict)


def load_presets(files: Iterable[str | os.PathLike], base: Registry) -> Presets:
    """Load preset files in order on top of `base` (which is not changed). A broken file is recorded, and its
    id (when it could be read) answers with "declared by preset file ..., which did not load"."""
    files = [str(f) for f in files]
    if not files:
        return Presets(registry=base)
    out = Presets(registry=base.merged(Registry()))
    for file in files:
        definition, error, declared_id = _load(file, out.registry)
        if error is not None:
            out.broken[file] = error
            first = error.errors[0] if error.errors else None
            reason = f"{first.location}: {first.message}" if first else "see its errors"
            if declared_id:
                out.registry.unavailable(
                    f"`{declared_id}` is declared by preset file {file}, which did not load ({reason})",
                    satellite_id=declared_id,
                )
            else:
                out.registry.unavailable(f"preset file {file} did not load ({reason})")
            continue
        assert definition is not None
        out.registry.add(definition, source=f"preset {file}")
        out.loaded[file] = definition
    return out


def presets_for(paths: Iterable[str | os.PathLike], base: Registry) -> Presets:
    """The presets of EXO_SATELLITE_PATH and of `paths` (see the module docstring), on top of `base`."""
    return load_presets(find_preset_files([*env_folders(), *paths]), base)


def load_preset_file(path: str | os.PathLike, registry: Registry) -> SatelliteDef:
    """One preset file checked against `registry` (its base satellite); raises SpecError with every located problem."""
    definition, error, _ = _load(str(path), registry)
    if error is not None:
        raise error
    assert definition is not None
    return definition


def _load(file: str, registry: Registry) -> tuple[SatelliteDef | None, SpecError | None, str | None]:
    try:
        text = Path(file).read_bytes()
    except OSError as exc:
        return (
            None,
            SpecError(
                [
                    Diagnostic(
                        Location(file, 1, 1),
                        f"cannot read satellite file: {exc.strerror}",
                        "check the path and permissions",
                    )
                ]
            ),
            None,
        )
    doc, diagnostics = load_located(text, file)
    sources = {file: doc.lines}
    if diagnostics:
        return None, SpecError(diagnostics, sources), None
    data = doc.data
    body = data.get("satellite") if isinstance(data, dict) else None
    raw_id = body.get("id") if isinstance(body, dict) else None
    declared_id = raw_id if isinstance(raw_id, str) and SATELLITE_ID.match(raw_id) and "@" not in raw_id else None
    checker = _PresetChecker(doc, registry)
    definition = checker.check()
    if checker.errors or definition is None:
        return None, SpecError(checker.errors, sources), declared_id
    return definition, None, declared_id


class _PresetChecker:
    def __init__(self, doc, registry: Registry):
        self.doc, self.registry = doc, registry
        self.errors: list[Diagnostic] = []

    def error(self, path: tuple, message: str, hint: str = "", *, key: bool = False) -> None:
        self.errors.append(Diagnostic(self.doc.at(path, key=key), message, hint))

    def check(self) -> SatelliteDef | None:
        if not isinstance(self.doc.data, dict):
            self.error(
                (),
                "a satellite file must be a mapping with `version:` and `satellite:`",
                "start the file with `version: 0.0.1b` and a `satellite:` section "
                "(see docs/custom-satellites.md, configured satellites)",
            )
            return None
        try:
            spec = PresetFile.model_validate(self.doc.data)
        except ValidationError as exc:
            self.errors += validation_diagnostics(self.doc, exc.errors(), (), PresetFile)
            return None
        body = spec.satellite
        self._check_id(body.id)
        base = self._base(body.uses)
        if base is None:
            return None
        opened = self._open(body.open, base)
        fixed = self._config(body.config, base, set(opened))
        if self.errors:
            return None
        docs = (body.docs or "").strip() or f"`{base.id}` configured: {base.docs}".strip()
        return dataclasses.replace(
            base,
            id=body.id,
            version=body.version,
            docs=docs,
            aliases=(),
            fixed_config=fixed,
            open_config=tuple(opened),
            based_on=f"{base.id}@{base.version}",
        )

    def _check_id(self, satellite_id: str) -> None:
        if not SATELLITE_ID.match(satellite_id) or "@" in satellite_id:
            self.error(
                BODY + ("id",),
                f"`id`: `{satellite_id}` is not a satellite id",
                "write `satellite/<project>/<name>` in lower case (letters, digits, `.`, `_`, `-`), "
                "e.g. `satellite/acme/summarize`; the version goes in `version:`",
            )
            return
        try:
            self.registry.get(satellite_id)
        except UnknownSatellite:
            return
        self.error(
            BODY + ("id",),
            f"satellite `{satellite_id}` already exists ({self.registry.source(satellite_id)})",
            "give the configured satellite an id of its own, e.g. under your project: `satellite/<project>/<name>`",
        )

    def _base(self, uses: str) -> SatelliteDef | None:
        try:
            base = self.registry.get(uses)
        except UnknownSatellite as exc:
            self.error(BODY + ("uses",), f"{exc.reason} `{uses}`", unknown_satellite_hint(exc))
            return None
        if base.fixed_config is not None:
            self.error(
                BODY + ("uses",),
                f"`{uses}` is itself a configured satellite ({self.registry.source(uses)})",
                f"base a configured satellite on one written in Python: `uses: {base.based_on}` "
                "and copy the fixed config you need",
            )
            return None
        return base

    def _open(self, names: list[str], base: SatelliteDef) -> list[str]:
        fields = [info.alias or name for name, info in base.config_model.model_fields.items()]
        out: list[str] = []
        for i, name in enumerate(names):
            if name == "secrets":
                self.error(
                    BODY + ("open", i),
                    "`secrets` is always the cluster's, it need not be open",
                    "remove it from `open:`; a cluster maps its own secrets in `config.secrets`",
                )
                continue
            canonical = config_key(base.config_model, name)
            if canonical is None:
                self.error(
                    BODY + ("open", i),
                    f"`open`: `{name}` is not a config field of `{base.id}`",
                    did_you_mean(name, fields)
                    or ("its fields: " + ", ".join(fields) if fields else f"`{base.id}` has no config fields"),
                )
            elif canonical not in out:
                out.append(canonical)
        return out

    def _config(self, config: dict, base: SatelliteDef, opened: set[str]) -> dict[str, Any]:
        path = BODY + ("config",)
        model = base.config_model
        if "secrets" in config:
            self.error(
                path + ("secrets",),
                "a configured satellite cannot fix `secrets`",
                "remove it: secrets are the cluster's; a cluster using this satellite maps them in its step's "
                "`config.secrets`",
                key=True,
            )
            config = {k: v for k, v in config.items() if k != "secrets"}
        spelled: dict[str, str] = {}
        for key in config:  # `max-tokens` and `max_tokens` both: which one pydantic keeps is not what a reader sees
            canonical = config_key(model, key)
            if canonical in spelled:
                self.error(
                    path + (key,),
                    f"`{key}` sets `{canonical}` a second time (as `{spelled[canonical]}` above)",
                    "write each field once",
                    key=True,
                )
            elif canonical is not None:
                spelled[canonical] = key
        templated: set[tuple] = set()
        for sub, text in templates.walk_strings(config):
            if not templates.has_template(text):
                continue
            templated.add(path + sub)
            try:
                template = templates.parse(text)
            except templates.TemplateSyntaxError as exc:
                self.error(path + sub, f"bad template: {exc.message}", exc.hint)
                continue
            for ref in template.references:
                if ref.root not in TEMPLATE_ROOTS:
                    self.error(
                        path + sub,
                        f"`{ref.text}`: a configured satellite's config may use only "
                        "`${{ env.NAME }}` and `${{ cluster.* }}`",
                        "table and secret references belong in the cluster that uses it: leave this field "
                        "`open:` and set it there",
                    )
        try:
            model.model_validate(config, context={"cluster_dir": os.path.dirname(os.path.abspath(self.doc.file))})
        except ValidationError as exc:
            missing_closed = []
            rest = []
            for err in exc.errors():
                if err["type"] == "missing" and len(err["loc"]) == 1:
                    name = config_key(model, err["loc"][0]) or str(err["loc"][0])
                    if name not in opened:
                        missing_closed.append(name)
                    continue  # an open field: the cluster sets it
                rest.append(err)
            for name in missing_closed:
                self.error(
                    path,
                    f"missing required field `{name}` of `{base.id}`",
                    f"fix it here (`{name}: ...`) or let clusters set it: add `{name}` to `open:`",
                    key=True,
                )
            self.errors += validation_diagnostics(self.doc, rest, path, model, skip=templated)
        return {config_key(model, k) or k: v for k, v in config.items()}
