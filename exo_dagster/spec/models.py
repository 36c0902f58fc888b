"""Pydantic models of the cluster spec (`version: 0.0.1b`), spelled in YAML with hyphens."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from exo_dagster import keys
from exo_dagster.sdk.durations import MAX_DURATION_SECONDS, duration_seconds  # noqa: F401  (re-exported)
from exo_dagster.sdk.resources import Resources, StrictModel, kebab  # noqa: F401  (re-exported)
from exo_dagster.spec.input_values import InputValueError, choice_text, coerce
from exo_dagster.spec.partition_checks import PARTITION_KINDS, partition_key_problem

SpecModel = StrictModel  # every spec model: strict, YAML spelling with hyphens

SUPPORTED_VERSIONS = ("0.0.1b",)
CLUSTER_ID = re.compile(r"^(?:cluster/)?([A-Za-z0-9][A-Za-z0-9_.-]*)/([A-Za-z0-9][A-Za-z0-9_.-]*)$")
STEP_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


# Dagster's rules for asset owners and tags (dagster/_core/definitions/utils.py is_valid_owner,
# dagster/_utils/tags.py VALID_TAG_KEY_REGEX / VALID_STRICT_TAG_VALUE_REGEX), checked here so a bad one is
# a located error in the cluster file, not a Dagster traceback at load time.
OWNER_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Z|a-z]{2,7}\b")
TAG_KEY = re.compile(r"^([A-Za-z0-9_.-]{1,63}/)?[A-Za-z0-9_.-]{1,63}$")
TAG_VALUE = re.compile(r"^[A-Za-z0-9_.-]{0,63}$")
RESERVED_TAG_PREFIXES = (keys.DAGSTER_PREFIX, keys.EXO_PREFIX)  # Dagster's own tags and exo's (keys.py)


def _check_owner(value: str) -> str:
    if value.startswith("team:"):
        if len(value) > len("team:"):
            return value
        raise ValueError("a team owner needs a name after `team:`, e.g. `team:data-eng`")
    if OWNER_EMAIL.fullmatch(value):
        return value
    raise ValueError(f"owner {value!r} is neither an email address nor `team:<name>` (Dagster's owner rule)")


def _tag_text(value: Any) -> Any:
    """A number or boolean tag value is its YAML text (`tier: 1` is "1", `pii: true` is "true")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, (int, float)) else value


def _check_tag_key(value: str) -> str:
    if value.startswith(RESERVED_TAG_PREFIXES):
        raise ValueError(f"tag key {value!r} uses a reserved prefix ({', '.join(RESERVED_TAG_PREFIXES)}); pick another")
    if not TAG_KEY.match(value):
        raise ValueError(
            f"tag key {value!r} must be letters, digits, `_`, `-`, `.` (at most 63), optionally "
            "after one `namespace/` (Dagster's tag rule)"
        )
    return value


def _check_tag_value(value: str) -> str:
    if not TAG_VALUE.match(value):
        raise ValueError(
            f"tag value {value!r} must be at most 63 letters, digits, `_`, `-` or `.` (Dagster's tag rule)"
        )
    return value


Owner = Annotated[str, AfterValidator(_check_owner)]
TagKey = Annotated[str, AfterValidator(_check_tag_key)]
TagValue = Annotated[str, BeforeValidator(_tag_text), AfterValidator(_check_tag_value)]


def _check_duration(value: Any) -> Any:
    if value is not None:
        duration_seconds(value)
    return value


def _check_positive_duration(value: Any) -> Any:
    """`sla:` and `timeout:`: a duration longer than zero (zero would stop every run at once)."""
    if value is not None and duration_seconds(value) <= 0:
        raise ValueError(f"{value!r} must be longer than 0 seconds, e.g. 30s, 5m, 6h")
    return value


class FilesTrigger(SpecModel):
    path: str
    pattern: str = "*"
    min_age: str | int | float = 0  # files younger than this are left for a later tick (still being written)
    interval: str | int | float = 30  # how often the folder is looked at

    _durations = field_validator("min_age", "interval")(_check_duration)


class RetrySettings(SpecModel):
    """How long to wait between retries: `delay` grown by `backoff`, randomised by `jitter`, capped by `max-delay`."""

    delay: str | int | float = 1
    backoff: Literal["exponential", "linear", "fixed"] = "exponential"
    jitter: bool | Literal["full", "plus-minus", "none"] = True
    max_delay: str | int | float | None = None

    _durations = field_validator("delay", "max_delay")(_check_duration)


INPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # a Dagster config key and a `--input NAME=VALUE` name


def _check_input_name(value: str) -> str:
    if not INPUT_NAME.match(value):
        raise ValueError(
            f"input name `{value}` must be letters, digits and `_`, not starting with a digit "
            "(it is a run-config key and `--input NAME=VALUE`), e.g. `{}`".format(
                re.sub(r"[^A-Za-z0-9_]", "_", value) if value[:1].isalpha() else "since"
            )
        )
    return value


InputName = Annotated[
    str, AfterValidator(_check_input_name), WithJsonSchema({"type": "string", "pattern": INPUT_NAME.pattern})
]


class RunInput(SpecModel):
    """One declared run input (`inputs: {since: {type: date, required: true}}`), given at launch."""

    type: Literal["string", "int", "float", "bool", "date", "datetime", "list", "enum"] = "string"
    default: Any = None
    required: bool = False
    description: str | None = None
    values: list[str | int | float | bool] | None = None  # the choices of an `enum`

    @model_validator(mode="after")
    def _consistent(self) -> RunInput:
        if self.type == "enum" and not self.values:
            raise ValueError("an `enum` input needs `values: [...]`, the choices it accepts")
        if self.type != "enum" and self.values is not None:
            raise ValueError(f"`values:` lists an enum's choices; this input is a {self.type} (write `type: enum`)")
        if self.values is not None and len(set(map(choice_text, self.values))) != len(self.values):
            raise ValueError("`values:` lists a choice twice")
        if self.required and self.default is not None:
            raise ValueError("an input with a `default:` is not `required:`; keep one of the two")
        if self.default is not None:
            try:
                coerce(self, self.default)
            except InputValueError as exc:
                raise ValueError(f"`default:` {exc}") from None
        return self


class Trigger(SpecModel):
    cron: str | None = None
    timezone: str = "UTC"
    files: FilesTrigger | None = None
    after: str | None = Field(None, pattern=CLUSTER_ID.pattern)  # cluster/<project>/<name>
    inputs: dict[str, Any] = Field(default_factory=dict)  # the run inputs of the runs this trigger launches

    @field_validator("inputs", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @model_validator(mode="after")
    def _one_kind(self) -> Trigger:
        kinds = [k for k in ("cron", "files", "after") if getattr(self, k) is not None]
        if len(kinds) > 1:
            raise ValueError(
                f"a trigger has one kind, got {', '.join(kinds)}; make `trigger:` a list with one entry each"
            )
        return self

    @property
    def kind(self) -> str | None:
        return next((k for k in ("cron", "files", "after") if getattr(self, k) is not None), None)


# `trigger:` is one mapping or a list; the shape written picks the branch, so a mistake is reported once, for the
# shape written (a plain union would report it for both). The tags are left out of error paths (UNION_TAGS).
UNION_TAGS = frozenset({"one-trigger", "trigger-list"})
Triggers = Annotated[
    Annotated[Trigger, Tag("one-trigger")] | Annotated[list[Trigger], Tag("trigger-list")],
    Discriminator(lambda value: "trigger-list" if isinstance(value, list) else "one-trigger"),
]


class Queues(SpecModel):
    """Celery queue names GPU and CPU steps are sent to (`executor: celery`)."""

    gpu: str = Field(default="gpu", pattern=r"^[A-Za-z0-9_.:-]+$")
    cpu: str = Field(default="cpu", pattern=r"^[A-Za-z0-9_.:-]+$")


class FanOut(SpecModel):
    chunk_rows: int = Field(gt=0)


class Step(SpecModel):
    name: str
    uses: str
    identifier: str | None = Field(None, pattern=STEP_ID.pattern)
    description: str | None = None
    retries: int | None = Field(None, ge=0)
    retry: RetrySettings | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    input: dict[str, Any] = Field(default_factory=dict)
    resources: Resources | None = None
    after: list[str] = Field(default_factory=list)
    concurrency: int | None = Field(None, ge=1, le=4096)
    on_row_error: Literal["collect", "fail"] = "collect"
    cache: bool = True
    fan_out: FanOut | None = None
    skip_when_empty: bool = False  # no input rows: the step and what depends on it are skipped (compile/skip_gate.py)
    timeout: str | int | float | None = None  # longest one attempt of the step may run; then it fails (and is retried)
    owners: list[Owner] | None = None  # the asset's owners (replace the cluster's); emails or `team:<name>`
    tags: dict[TagKey, TagValue] = Field(default_factory=dict)  # asset tags, over the cluster's

    _timeout = field_validator("timeout")(lambda value: _check_positive_duration(value))

    @field_validator("config", "input", "tags", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @property
    def key(self) -> str:
        """The step's identifier, or one derived from its name."""
        if self.identifier:
            return self.identifier
        slug = re.sub(r"[^A-Za-z0-9]+", "-", self.name).strip("-").lower() or "step"
        return slug if slug[0].isalpha() else f"s-{slug}"


def parse_start(value: Any) -> Any:
    """A date or datetime as written (`2026-11-01`, `2026-11-01T06:00`); YAML hands unquoted dates over as
    `datetime.date`, which is accepted too. Returned as ISO text, the form Dagster is given."""
    import datetime as dt

    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a date; write one as `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM`")
    try:
        return (
            dt.datetime.fromisoformat(value).isoformat()
            if "T" in value or " " in value.strip()
            else dt.date.fromisoformat(value).isoformat()
        )
    except ValueError:
        raise ValueError(f"{value!r} is not a date; write one as `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM`") from None


def _check_timezone(value: str) -> str:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError, UnicodeError):
        raise ValueError(f"unknown timezone `{value}`") from None
    return value


def as_datetime(text: str):
    import datetime as dt

    return dt.datetime.fromisoformat(text)


class TimePartitions(SpecModel):
    """`daily: {start, timezone, end}` (or hourly/weekly/monthly): one partition per period from `start`."""

    start: Annotated[str, BeforeValidator(parse_start)]
    timezone: Annotated[str, AfterValidator(_check_timezone)] = "UTC"
    end: Annotated[str | None, BeforeValidator(lambda v: None if v is None else parse_start(v))] = None

    @model_validator(mode="after")
    def _end_after_start(self) -> TimePartitions:
        if self.end is not None and as_datetime(self.end) <= as_datetime(self.start):
            raise ValueError(f"`end` ({self.end}) must be after `start` ({self.start})")
        return self


def _static_key(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return value
    text = str(value)
    problem = partition_key_problem(text)
    if problem:
        raise ValueError(problem)
    return text


class Partitions(SpecModel):
    """`partitions:` of a cluster: exactly one kind, time-based (hourly/daily/weekly/monthly) or `static` keys."""

    # One kind, non-empty and unique static keys are checked by the parser on the raw mapping
    # (spec/partition_checks.py), so they are reported even when a field inside has an error too.

    hourly: TimePartitions | None = None
    daily: TimePartitions | None = None
    weekly: TimePartitions | None = None
    monthly: TimePartitions | None = None
    static: list[Annotated[str, BeforeValidator(_static_key)]] | None = None

    @property
    def kind(self) -> str:
        return next(k for k in (*PARTITION_KINDS, "static") if getattr(self, k) is not None)

    @property
    def time(self) -> TimePartitions | None:
        return None if self.kind == "static" else getattr(self, self.kind)


class LogsSection(SpecModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    satellites: list[Step] = Field(default_factory=list)


class FailureSection(SpecModel):
    from_: str | None = Field(None, alias="from")
    satellites: list[Step] = Field(default_factory=list)


class ClusterBody(SpecModel):
    identifier: str = Field(pattern=CLUSTER_ID.pattern)
    title: str | None = None
    description: str | None = None
    owners: list[Owner] = Field(default_factory=list)  # every asset's owners (a step's `owners:` replaces them)
    tags: dict[TagKey, TagValue] = Field(default_factory=dict)  # on every asset (steps add/override) and the job
    sla: str | int | float | None = (
        None  # any duration (the seed's 6h/12h/24h, or 90m, 5s...): the longest a run may take
    )
    # At most this many runs of the cluster at once; the rest wait (execution/run_queue.py, run_slots.py).
    concurrency: int | None = Field(None, ge=1)
    trigger: Triggers | None = None  # one trigger (the seed's form) or a list of them
    inputs: dict[InputName, RunInput] = Field(default_factory=dict)  # run inputs, `${{ inputs.NAME }}`
    partitions: Partitions | None = (
        None  # a run per partition (time periods or static keys); see spec_dagster/partitions.py
    )
    retries: int = Field(0, ge=0)
    retry: RetrySettings | None = None
    execution: Literal["sequential", "dataflow"] = "sequential"
    # Where steps run: local processes (GPU-aware, the default), Celery workers, or Kubernetes jobs.
    executor: Literal["local", "in-process", "celery", "k8s"] | None = None
    queues: Queues | None = None
    secrets: list[dict[str, Any]] = Field(default_factory=list)
    satellites: list[Step] = Field(min_length=1)
    logs: LogsSection | None = None
    failure: FailureSection | None = None

    _sla = field_validator("sla")(lambda value: _check_positive_duration(value))

    @property
    def sla_seconds(self) -> float | None:
        return duration_seconds(self.sla) if self.sla is not None else None

    @field_validator("owners", "tags", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any, info: ValidationInfo) -> Any:
        return ([] if info.field_name == "owners" else {}) if value is None else value

    @field_validator("trigger", mode="before")
    @classmethod
    def _none_trigger(cls, value: Any) -> Any:
        return None if value in ("none", "None", "manual") else value

    @field_validator("inputs", mode="before")
    @classmethod
    def _none_inputs(cls, value: Any) -> Any:
        return {} if value is None else value

    @property
    def triggers(self) -> list[Trigger]:
        """Every trigger, whether `trigger:` was one mapping or a list."""
        if self.trigger is None:
            return []
        return list(self.trigger) if isinstance(self.trigger, list) else [self.trigger]

    @field_validator("secrets", mode="before")
    @classmethod
    def _secrets_map(cls, value: Any) -> Any:
        # Both the seed's list of single-key maps and a plain mapping are accepted.
        if isinstance(value, dict):
            return [{k: v} for k, v in value.items()]
        return [] if value is None else value

    @property
    def project(self) -> str:
        return CLUSTER_ID.match(self.identifier).group(1)  # type: ignore[union-attr]

    @property
    def short_name(self) -> str:
        return CLUSTER_ID.match(self.identifier).group(2)  # type: ignore[union-attr]


def _known_version(value: Any) -> str:
    if str(value) not in SUPPORTED_VERSIONS:
        raise ValueError(f"unsupported spec version {value!r}; supported: {', '.join(SUPPORTED_VERSIONS)}")
    return str(value)


SpecVersion = Annotated[str, BeforeValidator(_known_version)]  # `version:` of every spec file


class ClusterFile(SpecModel):
    version: SpecVersion
    cluster: ClusterBody
