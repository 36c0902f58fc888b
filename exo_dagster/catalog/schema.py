"""JSON Schemas (draft 2020-12) of cluster files and configured-satellite files, for editors.

`cluster_schema(registry)` is what `exo schema` prints (docs/exo-cluster.schema.json): the spec's
pydantic models by their YAML spelling, and every satellite's `config` chosen by the step's `uses`
(its id, an alias, or either `@version`). `satellite_file_schema(registry)` is `exo schema
--satellite-file` (docs/exo-satellite.schema.json), for `*.satellite.yaml`.

The schema follows the checker (exo_dagster/spec/parser.py) and never rejects a file it accepts;
it may accept some it rejects (cross-field rules, templates' references, cron strings, paths):

- keys: the YAML spelling (`folder-path`); the Python spelling (`folder_path`), which the models also
  accept, is allowed too (marked `doNotSuggest`, so editors do not offer it);
  unknown keys are rejected where the models forbid extras;
- values are read as pydantic reads them (lax mode): an integer, number or boolean field also takes
  its text (`"5"`, `"yes"`), integers and numbers take booleans, booleans take 0 and 1;
- inside a step's `config`, any value may be a `${{ ... }}` template (the checker leaves templated
  values to run time), and `secrets:` maps the step's secrets; a configured satellite (preset) takes
  only its open fields;
- a field whose model reshapes it before validation (a `mode="before"` validator, e.g. `to:` of
  send-email takes one address or a list) takes any value, its description kept;
- an unknown `uses` (a plugin not installed where the schema was made) takes any `config`; the
  checker reports unknown ids. A `uses` that is not shaped like a satellite id is rejected, and a
  known id with another `@version` is rejected.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, BeforeValidator, PlainValidator, WrapValidator
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from exo_dagster.catalog import reference
from exo_dagster.catalog.presets import PresetFile
from exo_dagster.catalog.registry import Registry
from exo_dagster.sdk.satellite import SatelliteDef
from exo_dagster.spec.models import STEP_ID, SUPPORTED_VERSIONS, ClusterFile

DIALECT = "https://json-schema.org/draft/2020-12/schema"
CLUSTER_ID = f"urn:exo-dagster:schema:cluster:{SUPPORTED_VERSIONS[-1]}"
SATELLITE_FILE_ID = f"urn:exo-dagster:schema:satellite-file:{SUPPORTED_VERSIONS[-1]}"
DOCS_PATH = "docs/exo-cluster.schema.json"
SATELLITE_DOCS_PATH = "docs/exo-satellite.schema.json"
REGENERATE = f"exo schema --out {DOCS_PATH}"
REGENERATE_SATELLITE = f"exo schema --satellite-file --out {SATELLITE_DOCS_PATH}"

TEMPLATE = "template"
INT_TEXT, NUMBER_TEXT, BOOL_TEXT = "integer-text", "number-text", "boolean-text"
CONFIG_PREFIX = "config."  # a satellite's Config model and the models it nests
PRESET_PREFIX = "configured."  # a configured satellite's config (its open fields)

_ANNOTATIONS = ("title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly")
_BOOL_WORDS = ("0", "off", "f", "false", "n", "no", "1", "on", "t", "true", "y", "yes")  # pydantic's, any case

# The spec models' fields carry comments, not descriptions: what editors show on hover.
SPEC_DOCS = {
    "ClusterFile": {
        "version": "The spec version; `0.0.1b`.",
        "cluster": "The cluster: its identity, trigger, settings and satellites.",
    },
    "ClusterBody": {
        "identifier": "`project/name` (optionally `cluster/project/name`): the job and asset group `project__name`.",
        "title": "Shown in the UI.",
        "description": "What the cluster does.",
        "sla": "The longest a run may take: any duration (6h, 90m, 30s, or seconds); enforced.",
        "concurrency": "At most this many runs of the cluster at once (1 or more); the rest wait in the run queue.",
        "trigger": (
            "What starts a run: `cron`, `files` or `after` (one of them), or a list of such triggers; "
            "`none`/`manual` or absent: launched by hand or API."
        ),
        "inputs": (
            "Run inputs, `NAME: {type, default, required, description, values}`, read as `${{ inputs.NAME }}`; "
            "given at launch."
        ),
        "retries": "Default retries of every step.",
        "retry": "How long to wait between retries (delay, backoff, jitter, max-delay).",
        "execution": (
            "sequential (default: each step follows the one above it) or dataflow (only references and `after:`)."
        ),
        "executor": "Where steps run: local (GPU-aware processes, the default), in-process, celery or k8s.",
        "queues": "Celery queue names for GPU and CPU steps (`executor: celery`).",
        "secrets": "Named secrets, each `NAME: ${{ env.VAR }}`; a step sees only what its `config.secrets` maps.",
        "satellites": "The steps, in order.",
        "logs": "Satellites that receive the run's logs.",
        "failure": "Satellites run when a step (from `from:` onward) fails.",
    },
    "Step": {
        "name": "Shown in the UI; the identifier's default.",
        "uses": "The satellite: `satellite/<project>/<name>`, optionally `@<version>` (`exo satellites` lists them).",
        "identifier": (
            "How other steps refer to this one (`${{ satellites.ID.output }}`); default: the name, slugified."
        ),
        "description": "What the step does.",
        "retries": "Overrides the cluster's `retries`.",
        "retry": "Overrides the cluster's `retry`.",
        "config": (
            "The satellite's settings, checked against its Config model; values may be `${{ }}` templates; "
            "`secrets:` maps its secrets."
        ),
        "input": "The data, templated from upstream outputs (`$${{ satellites.X.output.col }}`: once per row).",
        "resources": "What the step needs: gpu, gpu-type, cpu, memory.",
        "after": "Extra upstream identifiers (dataflow mode).",
        "concurrency": "Rows in flight at once (1 to 4096).",
        "on-row-error": "collect: a failed row gets `_error`; fail: the step fails.",
        "cache": "Reuse finished rows across runs (the per-row cache).",
        "fan-out": "Split the per-row input into chunks of `chunk-rows`.",
        "timeout": "The longest one attempt may run (a duration); then it fails and is retried.",
        "skip-when-empty": (
            "true: when the step's input has no rows, the step and what depends on it are skipped (not materialized)."
        ),
    },
    "Trigger": {
        "cron": 'Five-field cron, e.g. "0 * * * *" (quote it).',
        "timezone": "An IANA name; default UTC.",
        "files": "Run when files arrive in a folder.",
        "after": "Run after another cluster's run succeeds: `cluster/<project>/<name>`.",
        "inputs": (
            "The run inputs of the runs this trigger launches (`NAME: value`); declared inputs not given take "
            "their defaults."
        ),
    },
    "RunInput": {
        "type": "string, int, float, bool, date (YYYY-MM-DD), datetime (ISO 8601), list or enum.",
        "default": "The value when none is given at launch.",
        "required": "A launch must give it (no default).",
        "description": "Shown in the launchpad and `exo run` errors.",
        "values": "The choices of an `enum`.",
    },
    "FilesTrigger": {
        "path": "The folder watched.",
        "pattern": "Glob of file names; default `*`.",
        "min-age": "Files younger than this are left for a later tick.",
        "interval": "How often the folder is looked at.",
    },
    "RetrySettings": {
        "delay": "The first wait (a duration).",
        "backoff": "How the wait grows.",
        "jitter": "Randomise the wait.",
        "max-delay": "The longest wait.",
    },
    "Queues": {"gpu": "The queue GPU steps are sent to.", "cpu": "The queue CPU steps are sent to."},
    "FanOut": {"chunk-rows": "Rows per chunk."},
    "LogsSection": {"level": "The lowest level forwarded.", "satellites": "Satellites that receive the logs."},
    "FailureSection": {
        "from": "Only failures from this step (an identifier) onward.",
        "satellites": "Satellites run on failure.",
    },
    "Resources": {
        "gpu": "GPUs leased for the step (0 to 64).",
        "gpu-type": "A GPU type hint (Celery/Kubernetes).",
        "cpu": "CPUs (a hint for Celery/Kubernetes).",
        "memory": "Memory, e.g. 16Gi.",
    },
    "PresetFile": {"version": "The spec version; `0.0.1b`.", "satellite": "The configured satellite."},
    "PresetBody": {
        "id": "The new id, `satellite/<project>/<name>` (no version).",
        "version": "Its version; default 1.0.0.",
        "uses": "The base satellite, written in Python (optionally `@version`).",
        "docs": "What it does.",
        "config": (
            "Fixed config, checked against the base's Config model; may use `${{ env.* }}` and `${{ cluster.* }}`."
        ),
        "open": "The only config fields a cluster may set (`secrets` always may).",
    },
}


# -- public ------------------------------------------------------------------------------------
def cluster_schema(registry: Registry) -> dict[str, Any]:
    """The schema of a cluster file, with the config of every satellite `registry` knows."""
    defs, roots = _spec_defs([ClusterFile])
    config_refs = _config_defs(registry, defs)
    body = defs[roots[ClusterFile]]
    _adapt_cluster(defs)
    step = defs["Step"]
    step["properties"]["uses"] = _uses_schema(SPEC_DOCS["Step"]["uses"], reference.definitions(registry))
    step["allOf"] = [_step_rule(d, _step_config(d, config_refs, defs)) for d in reference.definitions(registry)]
    return {
        "$schema": DIALECT,
        "$id": CLUSTER_ID,
        "title": "exo-dagster cluster file",
        "description": f"A cluster file (`version: {SUPPORTED_VERSIONS[-1]}`). Generated by `exo schema`; "
        "regenerate after installing satellites. See docs/spec-reference.md.",
        **{k: v for k, v in body.items() if k not in ("title", "description")},
        "$defs": _sorted(defs, roots[ClusterFile]),
    }


def satellite_file_schema(registry: Registry) -> dict[str, Any]:
    """The schema of a configured-satellite file (`*.satellite.yaml`), based on the satellites of `registry`."""
    defs, roots = _spec_defs([PresetFile])
    config_refs = _config_defs(registry, defs, fixed=True)
    _version(defs["PresetFile"])
    body = defs["PresetBody"]
    props = body["properties"]
    props["id"] = {
        "description": SPEC_DOCS["PresetBody"]["id"],
        "type": "string",
        "pattern": r"^satellite/[a-z0-9][a-z0-9_.-]*/[a-z0-9][a-z0-9_.-]*$",
    }
    bases = [d for d in reference.definitions(registry) if d.fixed_config is None]
    props["uses"] = _uses_schema(SPEC_DOCS["PresetBody"]["uses"], bases)
    props["config"] = _nullable({"type": "object"}, props["config"].get("description"))
    props["open"] = _nullable(
        {"type": "array", "items": {"type": "string", "not": {"const": "secrets"}}}, props["open"].get("description")
    )
    rules = []
    for definition in bases:
        ref = config_refs[definition.config_model]
        keys = _keys(definition.config_model)
        rule = _step_rule(
            definition,
            {
                "config": _nullable({"$ref": _ref(ref)}, reference.summary(definition) or None),
                "open": _nullable({"type": "array", "items": {"enum": keys}}),
            },
        )
        rules.append(rule)
    body["allOf"] = rules
    root = defs[roots[PresetFile]]
    return {
        "$schema": DIALECT,
        "$id": SATELLITE_FILE_ID,
        "title": "exo-dagster configured satellite (*.satellite.yaml)",
        "description": "A configured satellite: a new id for a fixed setup of a satellite written in Python. "
        "Generated by `exo schema --satellite-file`. See docs/custom-satellites.md, configured satellites.",
        **{k: v for k, v in root.items() if k not in ("title", "description")},
        "$defs": _sorted(defs, roots[PresetFile]),
    }


def dumps(schema: dict[str, Any]) -> str:
    """The schema as the shipped files hold it: indented JSON, one trailing newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


# -- models to $defs ---------------------------------------------------------------------------
def _ref(name: str) -> str:
    return "#/$defs/" + name.replace("~", "~0").replace("/", "~1")


def _all_models(models: Iterable[type[BaseModel]]) -> list[type[BaseModel]]:
    out: list[type[BaseModel]] = []
    for model in models:
        for m in (model, *reference.nested_models(model)):
            if m not in out:
                out.append(m)
    return out


def _generate(models: list[type[BaseModel]], prefix: str) -> tuple[dict[str, dict], dict[type[BaseModel], str]]:
    """$defs of `models` and every model they nest (YAML spelling), names prefixed; each model's def name."""
    models = _all_models(models)
    pairs: list[tuple[type[BaseModel], JsonSchemaMode]] = [(m, "validation") for m in models]
    refs, schema = models_json_schema(pairs, by_alias=True, ref_template="#/$defs/{model}")
    _, by_name = models_json_schema(pairs, by_alias=False, ref_template="#/$defs/{model}")
    names = {m: refs[(m, "validation")]["$ref"].removeprefix("#/$defs/") for m in models}
    raw = schema.get("$defs", {})
    renamed = {prefix + name: _renamed_refs(d, prefix) for name, d in raw.items()}
    for model, name in names.items():
        definition = renamed[prefix + name]
        python = by_name.get("$defs", {}).get(name, {}).get("properties", {})
        _python_spellings(definition, list(python), prefix + name)
        _reshaped_fields(definition, model)
    return renamed, {m: prefix + n for m, n in names.items()}


def _renamed_refs(node: Any, prefix: str) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in ("properties", "$defs", "patternProperties"):
                out[key] = {k: _renamed_refs(v, prefix) for k, v in value.items()}
            elif key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                out[key] = _ref(prefix + value.removeprefix("#/$defs/"))
            else:
                out[key] = _renamed_refs(value, prefix)
        return out
    if isinstance(node, list):
        return [_renamed_refs(v, prefix) for v in node]
    return node


def _python_spellings(definition: dict, python_names: list[str], def_name: str) -> None:
    """The models accept each field's Python name too (populate_by_name): allow it, the same schema, not offered
    for completion (`doNotSuggest`, a VS Code / yaml-language-server keyword that validators ignore)."""
    props = definition.get("properties", {})
    if len(python_names) != len(props):
        return
    for alias, name in zip(list(props), python_names):
        if alias != name and name not in props:
            pointer = alias.replace("~", "~0").replace("/", "~1")
            props[name] = {"$ref": f"{_ref(def_name)}/properties/{pointer}", "doNotSuggest": True}


def _reshaped_fields(definition: dict, model: type[BaseModel]) -> None:
    """A field validated `before` (or wrapped, or replaced) may take any input: keep its docs, accept anything."""
    decorators = model.__pydantic_decorators__
    reshaped: set[str] = set()
    for dec in decorators.field_validators.values():
        if dec.info.mode in ("before", "wrap", "plain"):
            reshaped |= set(model.model_fields) if "*" in dec.info.fields else set(dec.info.fields)
    for name, info in model.model_fields.items():
        if any(isinstance(m, (BeforeValidator, WrapValidator, PlainValidator)) for m in info.metadata):
            reshaped.add(name)
    props = definition.get("properties", {})
    for name in reshaped:
        info = model.model_fields.get(name)
        key = (info.alias or name) if info else name
        if key in props:
            props[key] = _anything(props[key])
    if any(dec.info.mode in ("before", "wrap") for dec in decorators.model_validators.values()):
        definition.pop("additionalProperties", None)  # the model may rename or add keys itself
        definition.pop("required", None)


def _anything(node: dict) -> dict:
    annotations = {k: node[k] for k in _ANNOTATIONS if k in node}
    shape = {k: v for k, v in node.items() if k not in _ANNOTATIONS}
    return {**annotations, "anyOf": [shape, {}]} if shape else annotations


# -- lax values and templates --------------------------------------------------------------------
def _case_free(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


def _shared_defs() -> dict[str, dict]:
    return {
        TEMPLATE: {
            "description": "A `${{ ... }}` template, filled in at run time.",
            "type": "string",
            "pattern": r"\$\{\{",
        },
        INT_TEXT: {
            "description": "A whole number written as text.",
            "type": "string",
            "pattern": r"^\s*[+-]?[0-9][0-9_]*(\.0*)?\s*$",
        },
        NUMBER_TEXT: {
            "description": "A number written as text.",
            "type": "string",
            "pattern": r"^\s*[+-]?(([0-9][0-9_]*(\.[0-9_]*)?|\.[0-9][0-9_]*)([eE][+-]?[0-9]+)?|"
            + _case_free("inf")
            + "("
            + _case_free("inity")
            + ")?|"
            + _case_free("nan")
            + r")\s*$",
        },
        BOOL_TEXT: {
            "description": "true or false written as text (yes/no, on/off, ...).",
            "type": "string",
            "pattern": "^(" + "|".join(_case_free(w) for w in _BOOL_WORDS) + ")$",
        },
    }


def _lax(node: Any) -> Any:
    """Integer, number and boolean schemas also take what pydantic's lax mode turns into them."""
    node = _map_schemas(node, _lax)
    if not isinstance(node, dict):
        return node
    if isinstance(node.get("anyOf"), list):  # a lax branch inside an anyOf: one flat list
        node["anyOf"] = [
            b
            for branch in node["anyOf"]
            for b in (branch["anyOf"] if isinstance(branch, dict) and list(branch) == ["anyOf"] else [branch])
        ]
    kind = node.get("type")
    if kind not in ("integer", "number", "boolean") or "enum" in node or "const" in node:
        return node
    annotations = {k: node[k] for k in _ANNOTATIONS if k in node}
    shape = {k: v for k, v in node.items() if k not in _ANNOTATIONS}
    if kind == "boolean":
        others = [{"enum": [0, 1]}, {"$ref": _ref(BOOL_TEXT)}]
    else:
        others = [{"type": "boolean"}, {"$ref": _ref(INT_TEXT if kind == "integer" else NUMBER_TEXT)}]
    return {**annotations, "anyOf": [shape, *others]}


def _takes_any_string(node: Any) -> bool:
    if node is True or node == {} or not isinstance(node, dict):
        return node is True or node == {}
    shape = {k: v for k, v in node.items() if k not in _ANNOTATIONS}
    if not shape:
        return True
    if shape == {"type": "string"}:
        return True
    return any(_takes_any_string(b) for b in shape.get("anyOf", []))


def _templated(node: Any) -> Any:
    """Any value inside a satellite's config may be a template (checked when the step runs)."""
    if not isinstance(node, dict):
        return node
    node = dict(node)
    for key in ("properties", "patternProperties"):
        if isinstance(node.get(key), dict):
            node[key] = {k: _or_template(v) for k, v in node[key].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            node[key] = _or_template(node[key])
    if isinstance(node.get("prefixItems"), list):
        node["prefixItems"] = [_or_template(v) for v in node["prefixItems"]]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(node.get(key), list):
            node[key] = [_templated(v) for v in node[key]]
    return node


def _or_template(node: Any) -> Any:
    node = _templated(node)
    if (
        not isinstance(node, dict) or _takes_any_string(node) or "/properties/" in node.get("$ref", "")
    ):  # a Python spelling
        return node
    annotations = {k: node[k] for k in _ANNOTATIONS if k in node}
    shape = {k: v for k, v in node.items() if k not in _ANNOTATIONS}
    if list(shape) == ["anyOf"]:
        return {**annotations, "anyOf": [*shape["anyOf"], {"$ref": _ref(TEMPLATE)}]}
    return {**annotations, "anyOf": [shape, {"$ref": _ref(TEMPLATE)}]}


def _clean_titles(node: Any) -> Any:
    """Drop pydantic's per-property titles (`Folder-Path`): editors show the key itself."""
    node = _map_schemas(node, _clean_titles)
    if isinstance(node, dict) and isinstance(node.get("properties"), dict):
        node["properties"] = {
            k: ({kk: vv for kk, vv in v.items() if kk != "title"} if isinstance(v, dict) else v)
            for k, v in node["properties"].items()
        }
    return node


def _map_schemas(node: Any, fn) -> Any:
    """`node` with `fn` applied to each subschema it holds (by keyword: a property named `enum` is a subschema)."""
    if isinstance(node, list):
        return [fn(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties", "$defs", "dependentSchemas") and isinstance(value, dict):
            out[key] = {k: fn(v) for k, v in value.items()}
        elif key in ("enum", "const", "default", "examples", "required", "description", "title", "pattern", "type"):
            out[key] = value
        else:
            out[key] = fn(value)
    return out


# -- the spec ----------------------------------------------------------------------------------
def _spec_defs(models: list[type[BaseModel]]) -> tuple[dict[str, dict], dict[type[BaseModel], str]]:
    defs, roots = _generate(models, "")
    for model, name in roots.items():
        docs = SPEC_DOCS.get(model.__name__, {})
        for key, prop in defs[name].get("properties", {}).items():
            if key in docs and "description" not in prop:
                prop["description"] = docs[key]
    defs = {name: _lax(_clean_titles(d)) for name, d in defs.items()}
    defs.update(_shared_defs())
    return defs, roots


def _config_defs(registry: Registry, defs: dict[str, dict], *, fixed: bool = False) -> dict[type[BaseModel], str]:
    """Every satellite's Config model (and the models it nests) into `defs`; each Config model's def name.

    As a step sets it (`fixed` False): with `secrets`. As a preset file fixes it: no secrets, no field
    required (a required field may be left open for the clusters to set)."""
    models = []
    for definition in reference.definitions(registry):
        if definition.config_model not in models:
            models.append(definition.config_model)
    config, names = _generate(models, CONFIG_PREFIX)
    tops = {names[m] for m in models}
    for name, d in config.items():
        d = _templated(_lax(_clean_titles(d)))
        if name in tops and fixed:
            d.pop("required", None)
        elif name in tops:  # a step's config also maps its secrets (the checker takes them out before the model)
            d.setdefault("properties", {})["secrets"] = {"$ref": _ref("step-secrets")}
        defs[name] = d
    if not fixed:
        defs["step-secrets"] = _secrets_schema(
            "The secrets this satellite sees: `- NAME: ${{ secrets.CLUSTER_SECRET }}` (or `${{ env.VAR }}`)."
        )
    return {m: names[m] for m in models}


def _secrets_schema(description: str) -> dict:
    one = {"type": "object", "additionalProperties": {"type": "string", "minLength": 1}}
    return {"description": description, "anyOf": [{"type": "array", "items": one}, one, {"type": "null"}]}


def _version(definition: dict) -> None:
    definition["properties"]["version"] = {
        "description": SPEC_DOCS["ClusterFile"]["version"],
        "type": "string",
        "enum": list(SUPPORTED_VERSIONS),
    }


def _nullable(schema: dict, description: str | None = None) -> dict:
    out = {"description": description} if description else {}
    return {**out, "anyOf": [schema, {"type": "null"}]}


def _adapt_cluster(defs: dict[str, dict]) -> None:
    """What the spec's `before` validators accept, said precisely (they were made permissive above)."""
    _version(defs["ClusterFile"])
    body = defs["ClusterBody"]["properties"]
    body["trigger"] = {
        "description": SPEC_DOCS["ClusterBody"]["trigger"],
        "anyOf": [
            {"$ref": _ref("Trigger")},
            {"type": "array", "items": {"$ref": _ref("Trigger")}},
            {"type": "null"},
            {"enum": ["none", "None", "manual"]},
        ],
    }
    body["secrets"] = _secrets_schema(SPEC_DOCS["ClusterBody"]["secrets"])
    step = defs["Step"]["properties"]
    step["config"] = _nullable({"type": "object"}, SPEC_DOCS["Step"]["config"])
    step["input"] = _nullable({"type": "object"}, SPEC_DOCS["Step"]["input"])
    step["identifier"] = {
        "description": SPEC_DOCS["Step"]["identifier"],
        "anyOf": [{"type": "string", "pattern": STEP_ID.pattern}, {"type": "null"}],
    }


_SATELLITE_ID_PATTERN = r"^satellite/[a-z0-9][a-z0-9_.-]*/[a-z0-9][a-z0-9_.-]*(@[A-Za-z0-9_.+-]+)?$"


def _uses_schema(description: str, definitions: list[SatelliteDef]) -> dict:
    """A satellite id: the known ones offered (editors complete an enum), any well-formed one accepted."""
    known = sorted({n for d in definitions for n in (d.id, *d.aliases)})
    return {
        "description": description,
        "anyOf": [{"enum": known}, {"type": "string", "pattern": _SATELLITE_ID_PATTERN}],
    }


def _step_rule(definition: SatelliteDef, then: dict[str, dict]) -> dict:
    """`if uses names this satellite (an id or alias, any @version) then` its version and `then`'s properties."""
    names = (definition.id, *definition.aliases)
    alternatives = "|".join(n.replace(".", "\\.").replace("+", "\\+") for n in names)
    accepted = [spelled for n in names for spelled in (n, f"{n}@{definition.version}")]
    summary = reference.summary(definition)
    uses: dict[str, Any] = {"enum": accepted}
    if summary:
        uses["description"] = summary
    return {
        "if": {
            "properties": {"uses": {"type": "string", "pattern": f"^({alternatives})(@.*)?$"}},
            "required": ["uses"],
        },
        "then": {"properties": {"uses": uses, **then}},
    }


def _step_config(definition: SatelliteDef, config_refs: dict, defs: dict[str, dict]) -> dict[str, dict]:
    ref = config_refs[definition.config_model]
    target = ref
    if definition.fixed_config is not None:  # a configured satellite: only its open fields (and secrets)
        target = PRESET_PREFIX + definition.id.removeprefix("satellite/").replace("/", ".")
        base = defs[ref]
        keep = set(definition.open_config) | {"secrets"}
        props = {
            k: v
            for k, v in base.get("properties", {}).items()
            if k in keep or ("/properties/" in v.get("$ref", "") and v["$ref"].rsplit("/", 1)[-1] in keep)
        }
        required = [
            k for k in base.get("required", []) if k in definition.open_config and k not in definition.fixed_config
        ]
        defs[target] = {
            k: v
            for k, v in {
                "description": f"`{definition.id}`, configured from `{definition.based_on}`: only its open fields "
                + (", ".join(definition.open_config) or "(none)")
                + " may be set.",
                "type": "object",
                "properties": props,
                "required": required or None,
                "additionalProperties": False,
            }.items()
            if v is not None
        }
    summary = reference.summary(definition)
    schema: dict = {"$ref": _ref(target)}
    if summary:
        schema["description"] = summary
    if not defs[target].get("required"):
        schema = _nullable({"$ref": _ref(target)}, summary or None)
    return {"config": schema}


def _keys(model: type[BaseModel]) -> list[str]:
    out = []
    for name, info in model.model_fields.items():
        for key in (info.alias or name, name):
            if key not in out:
                out.append(key)
    return out


def _sorted(defs: dict[str, dict], root: str) -> dict[str, dict]:
    return {name: defs[name] for name in sorted(defs) if name != root}
