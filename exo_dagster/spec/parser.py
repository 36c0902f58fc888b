"""Cluster files in, checked `Cluster` objects out; every problem becomes a located Diagnostic.

The parser reports all problems of a file at once: YAML syntax, the spec's shape (pydantic),
satellite ids, satellite configs, template syntax and references, cron, secrets.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from exo_dagster.sdk import templates
from exo_dagster.spec import partition_checks, preset_rules
from exo_dagster.spec.errors import Diagnostic, Location, Note, SpecError
from exo_dagster.spec.input_values import InputValueError, choice_text
from exo_dagster.spec.input_values import coerce as coerce_input
from exo_dagster.spec.ir import Cluster, ParsedStep, SecretSource, asset_name
from exo_dagster.spec.located_yaml import KEY, LocatedDocument, load_located
from exo_dagster.spec.lookup import SatelliteLookup, UnknownSatellite
from exo_dagster.spec.models import UNION_TAGS, ClusterFile, RunInput, Step

STEPS_PATH = ("cluster", "satellites")
CronCheck = typing.Callable[[str], bool]


def load_cluster_file(
    path: str | os.PathLike, *, registry: SatelliteLookup, strict: bool = False, cron_check: CronCheck | None = None
) -> Cluster:
    """Load one cluster file; raises SpecError with every located problem."""
    file = str(path)
    try:
        text = Path(file).read_bytes()
    except OSError as exc:
        raise SpecError(
            [
                Diagnostic(
                    Location(file, 1, 1), f"cannot read cluster file: {exc.strerror}", "check the path and permissions"
                )
            ]
        ) from None
    return parse_cluster(text, file, registry=registry, strict=strict, cron_check=cron_check)


def parse_cluster(
    text: str | bytes,
    file: str = "<string>",
    *,
    registry: SatelliteLookup,
    strict: bool = False,
    cron_check: CronCheck | None = None,
) -> Cluster:
    """Check one cluster file's text (or raw bytes); raises SpecError with every located problem.

    `registry` answers for `uses:`; `cron_check` says whether Dagster accepts a cron string (the spec
    layer imports no Dagster: `exo_dagster.catalog.loading` passes both).
    """
    doc, diagnostics = load_located(text, file)
    sources = {file: doc.lines}
    if diagnostics:
        raise SpecError(diagnostics, sources)
    checker = _Checker(doc, registry, strict, cron_check)
    cluster = checker.check()
    if checker.errors:
        raise SpecError(checker.diagnostics, sources)
    assert cluster is not None
    return cluster


class _Checker:
    def __init__(self, doc: LocatedDocument, registry: SatelliteLookup, strict: bool, cron_check: CronCheck | None):
        self.doc, self.registry, self.strict, self.cron_check = doc, registry, strict, cron_check
        self.diagnostics: list[Diagnostic] = []
        self.partition_kind: str | None = None  # "time", "static" or None: what `${{ partition.* }}` may read

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    def error(
        self, path: tuple, message: str, hint: str = "", *, key: bool = False, location: Location | None = None
    ) -> None:
        self.diagnostics.append(Diagnostic(location or self.doc.at(path, key=key), message, hint))

    def warn(self, path: tuple, message: str, hint: str = "") -> None:
        self.diagnostics.append(Diagnostic(self.doc.at(path), message, hint, severity="warning"))

    # -- whole file -------------------------------------------------------------------------
    def check(self) -> Cluster | None:
        data = self.doc.data
        if not isinstance(data, dict):
            self.error(
                (),
                "a cluster file must be a mapping with `version:` and `cluster:`",
                "start the file with `version: 0.0.1b` and a `cluster:` section",
            )
            return None
        spec: ClusterFile | None = None
        try:
            spec = ClusterFile.model_validate(data)
        except ValidationError as exc:
            self._pydantic_errors(exc, (), ClusterFile)
        body = data.get("cluster")
        if not isinstance(body, dict):
            body = {}
        self.inputs = _declared_inputs(body.get("inputs"))
        secrets = self._cluster_secrets(body)
        self.partition_kind = partition_checks.partition_kind(body.get("partitions"))
        partition_checks.check_partitions(body.get("partitions"), self.error)
        partition_checks.check_trigger_kinds(body.get("partitions"), body.get("trigger"), self.error)
        steps = self._steps(body.get("satellites"), STEPS_PATH, "main", secrets, known=[])
        main_ids = self._all_main_ids()  # also those of steps with errors: no second error for a reference to them
        logs = self._section_steps(body, "logs", secrets, main_ids)
        failure = self._section_steps(body, "failure", secrets, main_ids)
        # every check below reads the raw data, so each runs whatever else is wrong in the file
        self._check_triggers(body.get("trigger"))
        section = body.get("failure")
        from_ = section.get("from") if isinstance(section, dict) else None
        if isinstance(from_, str) and from_ not in main_ids:
            self.error(
                ("cluster", "failure", "from"),
                f"`from: {from_}` is not a satellite identifier of this cluster",
                did_you_mean(from_, main_ids),
            )
        if spec is None or self.errors:
            return None
        return Cluster(
            file=self.doc.file,
            spec=spec.cluster,
            steps=steps,
            logs_steps=logs,
            failure_steps=failure,
            secrets=secrets,
            warnings=[d for d in self.diagnostics if d.severity == "warning"],
            location=self.doc.at(("cluster",), key=True),
            identifier_location=self.doc.at(("cluster", "identifier")),
        )

    def _pydantic_errors(
        self, exc: ValidationError, prefix: tuple, model: type[BaseModel], skip: set[tuple] | frozenset = frozenset()
    ) -> None:
        self.diagnostics += validation_diagnostics(self.doc, exc.errors(), prefix, model, skip)

    # -- secrets ----------------------------------------------------------------------------
    def _cluster_secrets(self, body: dict) -> dict[str, SecretSource]:
        out: dict[str, SecretSource] = {}
        raw = body.get("secrets")
        if isinstance(raw, dict):
            raw = [{k: v} for k, v in raw.items()]
        if not isinstance(raw, list):
            return out
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                continue
            for name, value in item.items():
                path = ("cluster", "secrets", i, name)
                source = self._secret_source(path, str(name), value, allow_secrets=False)
                if source:
                    out[str(name)] = source
        return out

    def _secret_source(self, path: tuple, name: str, value: Any, *, allow_secrets: bool) -> SecretSource | None:
        if not isinstance(value, str) or not value:
            self.error(
                path, f"secret `{name}` needs a value", "write `NAME: ${{ env.VAR }}` to read it from the environment"
            )
            return None
        if templates.has_template(value):
            try:
                template = templates.parse(value)
            except templates.TemplateSyntaxError as exc:
                self._template_error(path, value, exc)
                return None
            ref = template.whole
            ok_roots = ("env", "secrets") if allow_secrets else ("env",)
            if ref is None or ref.root not in ok_roots:
                self.error(
                    path,
                    f"secret `{name}` must be a single `${{{{ env.VAR }}}}`"
                    + (" or `${{ secrets.NAME }}`" if allow_secrets else ""),
                    "write the value as exactly one reference, e.g. `${{ env.OPENAI_API_KEY }}`",
                )
                return None
            return SecretSource(ref.root if ref.root == "env" else "secret", ref.parts[0])
        message = f"secret `{name}` has a literal value in the file"
        hint = (
            "move the value to an environment variable and write `${{ env.VAR }}`; literal values are masked but "
            "live in the file"
        )
        if self.strict:
            self.error(path, message, hint)
        else:
            self.warn(path, message, hint)
        return SecretSource("literal", name, literal=value)

    # -- steps ------------------------------------------------------------------------------
    def _section_steps(self, body: dict, section: str, secrets: dict, main_ids: list[str]) -> list[ParsedStep]:
        raw = body.get(section)
        if not isinstance(raw, dict):
            return []
        return self._steps(
            raw.get("satellites"), ("cluster", section, "satellites"), section, secrets, known=list(main_ids)
        )

    def _steps(self, raw_steps: Any, base: tuple, role: str, secrets: dict, known: list[str]) -> list[ParsedStep]:
        out: list[ParsedStep] = []
        if not isinstance(raw_steps, list):
            return out
        taken = {templates_key(k) for k in known}
        earlier = _Earlier(known)
        for index, raw in enumerate(raw_steps):
            path = base + (index,)
            step, key, bad = lenient_step(raw)
            if step is None:
                continue  # no usable `name`/`uses`: already reported by the whole-file validation
            norm = templates_key(key)
            duplicate = norm in taken
            if duplicate:  # reported, and the step is still checked
                self.error(
                    path + ("identifier",)
                    if isinstance(raw, dict) and isinstance(raw.get("identifier"), str)
                    else path + ("name",),
                    f"duplicate identifier `{key}`",
                    "give each satellite its own `identifier:` (case, hyphens and underscores do not count: "
                    "`rows`, `Rows` and `ro-ws` would all be one DuckDB view)",
                )
            taken.add(norm)
            parsed = self._step(step, path, index, role, secrets, earlier=earlier, check_config="config" not in bad)
            if not duplicate:
                earlier.add(key)
            if parsed and not bad and not duplicate:
                out.append(parsed)
        return out

    def _step(
        self,
        step: Step,
        path: tuple,
        index: int,
        role: str,
        cluster_secrets: dict,
        earlier: _Earlier,
        check_config: bool = True,
    ) -> ParsedStep | None:
        ok = True
        try:
            definition = self.registry.get(step.uses)
        except UnknownSatellite as exc:
            self.error(path + ("uses",), f"{exc.reason} `{step.uses}`", unknown_satellite_hint(exc))
            definition, ok = None, False  # its secrets, templates and `after:` are still checked below
        config = dict(step.config)
        step_secrets = self._step_secrets(config.pop("secrets", None), path + ("config", "secrets"), cluster_secrets)
        fixed = getattr(definition, "fixed_config", None)
        if fixed is not None:  # a configured satellite: the step sets only its open fields, on top of the fixed ones
            merged = self._preset_config(definition, fixed, config, path + ("config",))
            ok &= merged is not None
            config = merged if merged is not None else config  # templates are still checked
            ok &= self._preset_input(definition, step.input, path + ("input",))
        refs: list[str] = []
        per_row: set[str] = set()
        for section, value in (("config", config), ("input", step.input)):
            for sub, text in templates.walk_strings(value):
                spath = path + (section,) + sub
                ok &= self._step_template(spath, text, role, section, earlier, cluster_secrets, refs, per_row)
        if definition is not None:
            ok &= self._embedded_templates(definition, config, step.input, path)
        if definition is not None and definition.table_references is not None:
            for name in sorted(definition.table_references(config)):
                if name in earlier and name not in refs:
                    refs.append(name)
        for i, name in enumerate(step.after):
            if name not in earlier:
                self.error(
                    path + ("after", i),
                    f"`after: {name}` does not name an earlier satellite",
                    did_you_mean(name, earlier) or "list identifiers of satellites above this one",
                )
                ok = False
            elif name not in refs:
                refs.append(name)
        if len(per_row) > 1:
            self.error(
                path + ("input",),
                "per-row templates read from more than one satellite: " + ", ".join(sorted(per_row)),
                "a step fans out over the rows of one table; join the tables first with a `sql` satellite",
            )
            ok = False
        if definition is not None and check_config and (fixed is None or ok):
            ok &= self._check_config(definition, config, path + ("config",))
        if step.fan_out and not per_row:
            self.error(
                path + ("fan-out",),
                "`fan-out` splits a step's rows, but this step has no per-row input",
                "give it an input such as `text: $${{ satellites.X.output.text }}`, or remove `fan-out`",
                key=True,
            )
            ok = False
        if step.skip_when_empty:
            self._check_skip_when_empty(path, index, role, refs)
        if not ok:
            return None
        keys, template_at = self._key_locations(path, config, step.input)
        return ParsedStep(
            spec=step,
            index=index,
            role=role,
            identifier=step.key,
            satellite=definition,
            config=config,
            secrets=step_secrets,
            references=tuple(refs),
            per_row_source=next(iter(per_row), None),
            location=self.doc.at(path),
            key_locations=keys,
            template_locations=template_at,
        )

    def _key_locations(self, path: tuple, config: dict, given: Any) -> tuple[dict, dict]:
        """Where each config/input key (dotted: `config.path`) and each template in their values is written;
        keys a preset fixes are not in this file and are left out."""
        keys: dict[str, Location] = {}
        template_at: dict[tuple[str, str], Location] = {}
        stack = [(("config",), config), (("input",), given)]
        while stack:
            sub, value = stack.pop()
            if isinstance(value, dict):
                stack += [(sub + (k,), v) for k, v in value.items()]
            elif isinstance(value, list):
                stack += [(sub + (i,), v) for i, v in enumerate(value)]
            where = path + sub
            if len(sub) > 1 and where + (KEY,) in self.doc.locations:
                keys[".".join(map(str, sub))] = self.doc.locations[where + (KEY,)]
            elif len(sub) > 1 and where in self.doc.locations:  # a list item: the item itself
                keys[".".join(map(str, sub))] = self.doc.locations[where]
            if isinstance(value, str) and templates.has_template(value) and where in self.doc.locations:
                try:
                    found = templates.parse(value).references
                except templates.TemplateSyntaxError:
                    continue
                for ref in found:
                    template_at.setdefault((".".join(map(str, sub)), ref.text), self._written_at(where, value, ref))
        return keys, template_at

    def _written_at(self, where: tuple, value: str, ref: templates.Reference) -> Location:
        """The template's own line and column, also inside a multi-line (`|`) value; else the value's."""
        base = self.doc.locations[where]
        last = min(len(self.doc.lines), base.line + value.count("\n") + 1)
        for number in range(base.line, last + 1):
            found = self.doc.lines[number - 1].find(ref.text, base.column - 1 if number == base.line else 0)
            if found >= 0:
                return Location(base.file, number, found + 1)
        return self._template_location(where, value, ref.start)

    def _check_skip_when_empty(self, path: tuple, index: int, role: str, refs: list[str]) -> None:
        """`skip-when-empty` needs a table to look at: a reference, `after:`, or (sequential) the step above."""
        where = path + ("skip-when-empty",)
        if role != "main":
            self.error(
                where,
                f"`skip-when-empty` applies to the cluster's satellites, not to its `{role}:` section",
                "remove `skip-when-empty` here",
                key=True,
            )
            return
        body = self.doc.data.get("cluster") if isinstance(self.doc.data, dict) else None
        dataflow = isinstance(body, dict) and body.get("execution") == "dataflow"
        if refs or (index > 0 and not dataflow):
            return
        why = (
            "it is the first satellite and references no other"
            if not dataflow
            else "with `execution: dataflow` it reads only what it references or lists in `after:`, and it has none"
        )
        self.error(
            where,
            f"`skip-when-empty` skips a step whose input has no rows, but this step reads no table: {why}",
            "reference an upstream output (e.g. `${{ satellites.X.output }}`) or add `after: [X]`, "
            "or remove `skip-when-empty`",
            key=True,
        )

    def _preset_config(self, definition: Any, fixed: dict, config: dict, path: tuple) -> dict | None:
        """The step's config on top of a preset's fixed config; a located error per key the preset does not leave
        open."""
        model, open_fields = definition.config_model, tuple(definition.open_config)
        opened = (
            ("clusters may set only its open fields: " + ", ".join(f"`{f}`" for f in open_fields))
            if open_fields
            else "it leaves no config field open: remove the key"
        )
        about = f"`{definition.id}` is a configured satellite (of `{definition.based_on}`)"
        overridden, ok = set(), True
        for key in config:
            canonical = config_key(model, key)
            near = preset_rules.field_for(model, key)  # the field it names in another case or spelling
            if canonical is None and near is not None and near not in open_fields:
                self._preset_error(
                    path,
                    key,
                    f"`{key}` names `{near}`, which is fixed by `{definition.id}`, a "
                    f"configured satellite of `{definition.based_on}`",
                    opened,
                )
                ok = False
            elif canonical is None:
                close = did_you_mean(str(key), list(open_fields))
                self._preset_error(path, key, f"unknown key `{key}`: {about}", close or opened)
                ok = False
            elif canonical not in open_fields:
                self._preset_error(
                    path,
                    key,
                    f"`{key}` is fixed by `{definition.id}`, a configured satellite of `{definition.based_on}`",
                    opened,
                )
                ok = False
            elif canonical in overridden:
                self._preset_error(path, key, f"`{key}` sets `{canonical}` a second time", "write each field once")
                ok = False
            else:
                overridden.add(canonical)
        if not ok:
            return None
        return {**{k: v for k, v in fixed.items() if k not in overridden}, **config}

    def _preset_input(self, definition: Any, given: dict, path: tuple) -> bool:
        """An `input:` key the satellite reads in place of a config field (call-webhook's `url`) must not reach a
        field the preset fixes: per row or not, in any case or spelling, written or merged in (`<<:`)."""
        problems = preset_rules.fixed_by_input(definition, given)
        for key, field in problems:
            self._preset_error(
                path,
                key,
                f"`input.{key}` would set `{field}`, which is fixed by `{definition.id}`, a "
                f"configured satellite of `{definition.based_on}`",
                f"a fixed field cannot be set from `input:` either: give the input another name, or "
                f"have the preset list `{field}` in `open:`",
            )
        return not problems

    def _preset_error(self, section: tuple, key: Any, message: str, hint: str) -> None:
        """At the key; one that a YAML alias or `<<:` merge brought in from above also names the step's own line."""
        at, own = self.doc.at(section + (key,), key=True), self.doc.at(section, key=True)
        notes = (Note(own, "it comes into this step here (a YAML alias or `<<:` merge)"),) if at.line < own.line else ()
        self.diagnostics.append(Diagnostic(at, message, hint, notes=notes))

    def _step_secrets(self, raw: Any, path: tuple, cluster_secrets: dict) -> dict[str, SecretSource]:
        out: dict[str, SecretSource] = {}
        if raw is None:
            return out
        items = [{k: v} for k, v in raw.items()] if isinstance(raw, dict) else raw
        if not isinstance(items, list):
            self.error(
                path,
                "`config.secrets` must be a list of `NAME: ${{ secrets.NAME }}` entries",
                "write `secrets:` followed by `- API_KEY: ${{ secrets.OPENAI_API_KEY }}`",
            )
            return out
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                self.error(
                    path + (i,),
                    "each secret entry must be `NAME: ${{ secrets.NAME }}`",
                    "write `- API_KEY: ${{ secrets.OPENAI_API_KEY }}`",
                )
                continue
            for name, value in item.items():
                source = self._secret_source(path + (i, name), str(name), value, allow_secrets=True)
                if source and source.kind == "secret" and source.name not in cluster_secrets:
                    self.error(
                        path + (i, name),
                        f"secret `{source.name}` is used but not declared",
                        "declare it in the cluster's `secrets:` list, e.g. "
                        f"`- {source.name}: ${{{{ env.{source.name} }}}}`",
                    )
                elif source:
                    out[str(name)] = cluster_secrets.get(source.name, source) if source.kind == "secret" else source
        return out

    def _step_template(self, path, text, role, section, earlier, cluster_secrets, refs, per_row) -> bool:
        if not templates.has_template(text):
            return True
        try:
            template = templates.parse(text)
        except templates.TemplateSyntaxError as exc:
            self._template_error(path, text, exc)
            return False
        ok = True
        for ref in template.references:
            location = self._template_location(path, text, ref.start)
            if (name := ref.satellite) is not None:  # a `satellites.` reference
                if name not in earlier:
                    later = name in self._all_main_ids()
                    self.error(
                        path,
                        f"`{ref.text}` refers to "
                        + ("a later satellite" if later else "an unknown satellite")
                        + f" `{name}`",
                        ("a step can only read satellites listed above it; move this step below `" + name + "`")
                        if later
                        else (did_you_mean(name, earlier) or "use the `identifier:` of a satellite above this one"),
                        location=location,
                    )
                    ok = False
                    continue
                if name not in refs:
                    refs.append(name)
                if ref.per_row:
                    if section == "config":
                        self.error(
                            path,
                            "per-row templates (`$${{ }}`) belong in `input:`, not `config:`",
                            "move this value to the step's `input:` section",
                            location=location,
                        )
                        ok = False
                    per_row.add(name)
            elif ref.root == "secrets" and ref.parts[0] not in cluster_secrets:
                self.error(
                    path,
                    f"secret `{ref.parts[0]}` is used but not declared",
                    "declare it in the cluster's `secrets:` list, e.g. "
                    f"`- {ref.parts[0]}: ${{{{ env.{ref.parts[0]} }}}}`",
                    location=location,
                )
                ok = False
            elif ref.root == "inputs":
                ok &= self._input_reference(path, ref, role, location)
            elif ref.root == "partition" and (problem := self._partition_reference(ref, role)):
                self.error(path, *problem, location=location)
                ok = False
            elif ref.root == "failure" and role != "failure":
                self.error(
                    path,
                    f"`{ref.text}` is only available in the cluster's `failure:` satellites",
                    "use it inside `failure: {satellites: [...]}`",
                    location=location,
                )
                ok = False
        return ok

    def _partition_reference(self, ref: templates.Reference, role: str) -> tuple[str, str] | None:
        if role != "main":
            return (
                f"`{ref.text}` is only available in the cluster's `satellites`",
                "the `logs:` and `failure:` sections run outside any partition",
            )
        return partition_checks.check_partition_reference(self.partition_kind, ref.parts[0], ref.text)

    def _input_reference(self, path: tuple, ref: templates.Reference, role: str, location: Location) -> bool:
        name = ref.parts[0]
        if role != "main":
            self.error(
                path,
                f"`{ref.text}`: run inputs are read by the cluster's satellites, not by its `{role}:` section",
                "pass what the section needs through a satellite's output, or use `${{ cluster.FIELD }}`",
                location=location,
            )
            return False
        if name not in self.inputs.names:
            declared = list(self.inputs.names)
            self.error(
                path,
                f"`{ref.text}` reads input `{name}`, which is not declared",
                did_you_mean(name, declared)
                or f"declare it under the cluster's `inputs:`, e.g. `{name}: {{type: string}}`",
                location=location,
            )
            return False
        return True

    def _all_main_ids(self) -> list[str]:
        body = self.doc.data.get("cluster") if isinstance(self.doc.data, dict) else None
        raw = body.get("satellites") if isinstance(body, dict) else None
        out = []
        for item in raw if isinstance(raw, list) else []:
            step, key, _bad = lenient_step(item)
            if step is not None:
                out.append(key)
        return out

    def _embedded_templates(self, definition: Any, config: dict, given: Any, path: tuple) -> bool:
        """A template in another language's text (a `sql` query) where no value can stand (a `$$` string, glued
        to a word): an error at the template now, not a failed run later."""
        ok = True
        for section, fields in (("config", config), ("input", given)):
            for key, text in fields.items() if isinstance(fields, dict) else ():
                language = getattr(definition, "embeds", {}).get(str(key))
                if (
                    language is None
                    or language.check is None
                    or not isinstance(text, str)
                    or not language.applies(config)
                ):
                    continue
                for problem in language.check(text):
                    where = path + (section, key)
                    self.error(
                        where,
                        problem.problem,
                        problem.hint,
                        location=self._template_location(where, text, problem.offset),
                    )
                    ok = False
        return ok

    def _template_error(self, path: tuple, text: str, exc: templates.TemplateSyntaxError) -> None:
        self.error(
            path, f"bad template: {exc.message}", exc.hint, location=self._template_location(path, text, exc.offset)
        )

    def _template_location(self, path: tuple, text: str, offset: int) -> Location:
        base = self.doc.at(path)
        if 1 <= base.line <= len(self.doc.lines):
            line = self.doc.lines[base.line - 1]
            snippet = text[offset : offset + 12]
            found = line.find(snippet, base.column - 1)
            if snippet and found >= 0:
                return Location(base.file, base.line, found + 1)
        return base

    def _check_config(self, definition: Any, config: dict, path: tuple) -> bool:
        try:
            # context: the cluster's folder, for path rules (allowed_paths) that depend on it
            definition.config_model.model_validate(
                config, context={"cluster_dir": os.path.dirname(os.path.abspath(self.doc.file))}
            )
        except ValidationError as exc:
            templated = {path + sub for sub, text in templates.walk_strings(config) if templates.has_template(text)}
            before = len(self.errors)
            self._pydantic_errors(exc, path, definition.config_model, skip=templated)
            return len(self.errors) == before
        return True

    # -- trigger ----------------------------------------------------------------------------
    def _check_triggers(self, trigger: Any) -> None:
        """`trigger:` as one mapping (the seed's form) or a list of them."""
        if isinstance(trigger, list):
            for index, one in enumerate(trigger):
                self._check_trigger(one, ("cluster", "trigger", index))
        else:
            self._check_trigger(trigger, ("cluster", "trigger"))

    def _check_trigger(self, trigger: Any, path: tuple) -> None:
        """Cron, timezone and the trigger's `inputs:`, read from the raw mapping: checked even when other parts of
        the file (or of the trigger) have errors; a value of the wrong type is the whole-file validation's to report."""
        if not isinstance(trigger, dict):
            return
        cron = trigger.get("cron")
        if isinstance(cron, str) and self.cron_check is not None and not _accepts(self.cron_check, cron):
            self.error(
                path + ("cron",),
                f"`{cron}` is not a valid cron expression",
                'use five fields: minute hour day-of-month month day-of-week, e.g. "0 * * * *" (quote it)',
            )
        timezone = trigger.get("timezone", "UTC")
        if isinstance(timezone, str):
            try:
                zoneinfo.ZoneInfo(timezone)
            except (
                zoneinfo.ZoneInfoNotFoundError,
                ValueError,
                OSError,
                UnicodeError,
            ):  # OSError: a folder such as `America`
                self.error(
                    path + ("timezone",),
                    f"unknown timezone `{timezone}`",
                    "use an IANA name such as `UTC` or `Europe/Berlin`",
                )
        self._trigger_inputs(trigger.get("inputs"), path)

    def _trigger_inputs(self, given: Any, path: tuple) -> None:
        """A trigger launches runs with no one to ask: every value it gives fits its input, every required input is
        given."""
        given = given if isinstance(given, dict) else {}  # another shape is the whole-file validation's to report
        for name, value in given.items():
            spec = self.inputs.valid.get(name)
            if name not in self.inputs.names:
                self.error(
                    path + ("inputs", name),
                    f"the trigger gives input `{name}`, which is not declared",
                    did_you_mean(str(name), list(self.inputs.names)) or "declare it under the cluster's `inputs:`",
                    key=True,
                )
            elif spec is not None:
                try:
                    coerce_input(spec, value)
                except InputValueError as exc:
                    self.error(
                        path + ("inputs", name),
                        f"input `{name}` {exc}",
                        f"give a {spec.type}"
                        + (f": one of {', '.join(map(choice_text, spec.values))}" if spec.values else ""),
                    )
        for name, spec in self.inputs.valid.items():
            if spec.required and given.get(name) is None:
                self.error(
                    path,
                    f"this trigger launches runs without the required input `{name}`",
                    f"give it under the trigger's `inputs:` (`inputs: {{{name}: ...}}`), or give the input a "
                    "`default:`",
                    key=True,
                )


class _DeclaredInputs:
    """The cluster's `inputs:` as written: every name (for references), and the declarations that are valid."""

    def __init__(self, names: list[str], valid: dict[str, RunInput]):
        self.names, self.valid = names, valid


def _declared_inputs(raw: Any) -> _DeclaredInputs:
    if not isinstance(raw, dict):
        return _DeclaredInputs([], {})
    valid = {}
    for name, value in raw.items():
        try:
            valid[str(name)] = RunInput.model_validate(value if value is not None else {})
        except ValidationError:
            pass  # reported by the whole-file validation
    return _DeclaredInputs([str(n) for n in raw], valid)


def _accepts(cron_check: CronCheck, cron: str) -> bool:
    try:
        return bool(cron_check(cron))
    except Exception:
        return False


def lenient_step(raw: Any) -> tuple[Step | None, str, frozenset]:
    """(step, identifier, fields with shape errors) for one raw step. A step with shape errors (reported by the
    whole-file validation) is checked further without its bad fields, so its satellite, config and templates are
    checked too; its identifier is the one written, even if malformed, so references to it raise no second error.
    (None, "", ...) when it has no usable `name` or `uses`."""
    try:
        step = Step.model_validate(raw)
        return step, step.key, frozenset()
    except ValidationError as exc:
        if not isinstance(raw, dict):
            return None, "", frozenset({"*"})
        bad = frozenset(err["loc"][0] for err in exc.errors() if err["loc"])
        if bad & {"name", "uses"} or not {"name", "uses"} <= raw.keys():
            return None, "", frozenset({"*"})
        try:
            step = Step.model_validate({k: v for k, v in raw.items() if k not in bad})
        except ValidationError:
            return None, "", frozenset({"*"})
        written = raw.get("identifier")
        return step, written if "identifier" in bad and isinstance(written, str) and written else step.key, bad


def validation_diagnostics(
    doc: LocatedDocument,
    errors: Sequence[Mapping[str, Any]],
    prefix: tuple,
    model: type[BaseModel],
    skip: set[tuple] | frozenset = frozenset(),
) -> list[Diagnostic]:
    """Pydantic errors (`ValidationError.errors()`) of data found at `prefix` in `doc`, located in the file.
    Errors at or under a path in `skip` are left out (e.g. templated values, checked at run time), except
    unknown keys: a misspelled key is a mistake whatever its value."""
    out: list[Diagnostic] = []
    for err in errors:
        loc = prefix + tuple(err["loc"])
        real = _existing_path(doc, loc)
        kind, field_name = err["type"], _last_name(err["loc"])
        if err["loc"] and err["loc"][-1] == "[key]":  # a mapping key that is not allowed: point at the key
            out.append(
                Diagnostic(
                    doc.at(_existing_path(doc, loc[:-1]), key=True),
                    err["msg"].removeprefix("Value error, "),
                    _hint_for(kind, field_name, err),
                )
            )
            continue
        if kind != "extra_forbidden" and any(real[: len(s)] == s for s in skip):
            continue
        if kind == "missing":
            out.append(
                Diagnostic(doc.at(real), f"missing required field `{field_name}`", f"add `{field_name}: ...` here")
            )
        elif kind == "extra_forbidden":
            allowed = _allowed_keys(model, err["loc"][:-1])
            out.append(
                Diagnostic(
                    doc.at(real, key=True),
                    f"unknown key `{field_name}`",
                    did_you_mean(str(field_name), allowed) or ("allowed keys here: " + ", ".join(allowed)),
                )
            )
        else:
            where = f"`{field_name}`: " if field_name is not None else ""
            message = err["msg"].removeprefix("Value error, ")
            out.append(Diagnostic(doc.at(real), where + message, _hint_for(kind, field_name, err)))
    return out


def config_key(model: type[BaseModel], key: Any) -> str | None:
    """The YAML spelling of a config model's field given either spelling (`max-tokens`, `max_tokens`); None if
    unknown."""
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info.alias or name
    return None


def unknown_satellite_hint(exc: UnknownSatellite) -> str:
    """Close ids, else where to look; plus the catalog's note (what did not load, who else declares it)."""
    if exc.note and exc.reason != "unknown satellite":
        return exc.note
    hint = (
        ("did you mean " + " or ".join(f"`{s}`" for s in exc.suggestions) + "?")
        if exc.suggestions
        else "run `exo satellites` to list the known satellites"
    )
    return f"{hint}; it may come from what did not load: {exc.note}" if exc.note else hint


class _Earlier:
    """Identifiers above a step, shared (not copied) as steps are added: set-speed `in`, iterable for hints."""

    def __init__(self, known: list[str]):
        self._names, self._set = list(known), set(known)

    def add(self, name: str) -> None:
        self._names.append(name)
        self._set.add(name)

    def __contains__(self, name: object) -> bool:
        return name in self._set

    def __iter__(self):
        return iter(list(self._names))


def templates_key(identifier: str) -> str:
    """What makes two identifiers the same: DuckDB view names ignore case, asset names map `-` to `_`."""
    return asset_name(identifier).lower()


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """`did you mean `x`?` for the closest options, or ""."""
    close = difflib.get_close_matches(word, options, n=3, cutoff=0.6)
    return ("did you mean " + " or ".join(f"`{c}`" for c in close) + "?") if close else ""


def _last_name(loc: tuple) -> Any:
    for part in reversed(loc):
        if isinstance(part, str) and "[" not in part:
            return part
    return None


def _existing_path(doc: LocatedDocument, loc: tuple) -> tuple:
    """The longest prefix of `loc` that names real data (pydantic adds union/validator names)."""
    out: tuple = ()
    node = doc.data
    for part in loc:
        if part in UNION_TAGS:
            continue  # which branch of a tagged union was taken: not a key of the file
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str):
            return out + (part,)  # a missing or unknown key: keep it, the locator falls back
        else:
            continue
        out += (part,)
    return out


def _unwrap(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [_unwrap(a) for a in typing.get_args(annotation) if a is not type(None)]
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if models else (args[0] if args else annotation)
    if origin in (list, list):
        return _unwrap(typing.get_args(annotation)[0])
    return annotation


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        fields = {(f.alias or n): f for n, f in current.model_fields.items()}
        if part in fields:
            current = _unwrap(fields[part].annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _hint_for(kind: str, field_name: Any, err: Mapping[str, Any]) -> str:
    loc = tuple(err.get("loc", ()))
    if loc[:2] == ("cluster", "inputs"):
        return (
            "an input is a name (letters, digits, _) with `type:` (string, int, float, bool, date, datetime, list, "
            "enum with `values: [...]`) and optionally `default:`, `required: true`, `description:`"
        )
    if field_name == "identifier" and kind == "string_pattern_mismatch":
        return (
            "a cluster identifier is `project/name` (e.g. `acme/ticket-triage`); a satellite identifier is a word "
            "of letters, digits, - and _"
        )
    if field_name == "concurrency" and len(err.get("loc", ())) == 2:  # the cluster's, not a step's
        return "a whole number, 1 or more: how many runs of this cluster may run at once (the rest wait)"
    if field_name == "sla":
        return "any duration longer than 0: a number of seconds or a number with a unit, e.g. 6h, 90m, 30s"
    message = str(err.get("msg", ""))
    if "owner rule" in message or "a team owner" in message:
        return "write an email address (`ana@example.com`) or a team (`team:data-eng`)"
    if "tag rule" in message or "reserved prefix" in message:
        return (
            "tags are `key: value` of letters, digits, `_`, `-` and `.` (at most 63 each); a key may have one "
            "`namespace/`"
        )
    if field_name in ("start", "end"):
        return "write a date `YYYY-MM-DD` (quoted or not) or a date and time `YYYY-MM-DDTHH:MM`"
    if field_name == "timezone":
        return "use an IANA name such as `UTC` or `Europe/Berlin`"
    if "partition key" in message:
        return partition_checks.KEY_HINT
    if field_name == "version":
        return "write `version: 0.0.1b` at the top of the file"
    if kind.endswith(("_type", "_parsing")):
        expected = kind.split("_")[0]
        names = {
            "int": "a whole number",
            "float": "a number",
            "bool": "true or false",
            "string": "a string",
            "list": "a list (`- item` lines or `[a, b]`)",
            "dict": "a mapping (`key: value` lines)",
            "model": "a mapping (`key: value` lines)",
        }
        return f"change it to {names.get(expected, expected)}"
    if kind == "literal_error":
        return "use one of the values listed"
    if kind == "too_short":
        return "add at least one entry"
    return "see the spec reference in docs/spec-reference.md"
