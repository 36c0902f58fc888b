"""The `exo` command: validate cluster files, run one in-process, list satellites, print the editor schema,
query the outputs."""

from __future__ import annotations

import sys

import click

from exo_dagster.keys import PARTITION_TAG
from exo_dagster.spec.errors import SpecError, render_diagnostics
from exo_dagster.spec.untrusted_text import terminal


class _Group(click.Group):
    """A user's mistake or an unset environment is one line with the fix, never a traceback
    (`EXO_DEBUG=1` shows the traceback of an unexpected error)."""

    def invoke(self, ctx: click.Context):
        import os

        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            if os.environ.get("EXO_DEBUG"):
                raise
            text = " ".join(terminal(exc, newlines=False).split())[:500]
            click.echo(
                f"exo {ctx.invoked_subcommand or ''}: {type(exc).__name__}: {text} (EXO_DEBUG=1 shows the traceback)",
                err=True,
            )
            sys.exit(1)


@click.group(cls=_Group)
def main() -> None:
    """exo-dagster: YAML clusters of satellites on Dagster."""
    _load_dotenv()


def _load_dotenv() -> None:
    """A `.env` in the current folder sets the environment, as it does for Dagster's CLIs (`dagster`, `dg`), so
    exo and dg agree on DAGSTER_HOME in a project of `exo init` (whose .env names its instance folder)."""
    import os

    if not os.path.isfile(".env"):
        return
    from dotenv import dotenv_values  # python-dotenv: Dagster's own dependency, which its CLIs read .env with

    os.environ.update({key: value for key, value in dotenv_values(".env").items() if value is not None})


@main.command()
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--name", default=None, help="The project's Python package (default: from FOLDER's name).")
@click.option(
    "--force",
    is_flag=True,
    help="Write into a non-empty FOLDER: files of the same name are replaced, "
    "an existing .env and .gitignore get exo's lines added.",
)
def init(folder: str, name: str | None, force: bool) -> None:
    """Create a new dg project in FOLDER: its clusters in FOLDER/clusters (an example included), a ClusterComponent
    pointing at them, exo's instance defaults in FOLDER/.dagster (named in FOLDER/.env), a README of commands."""
    import importlib.util
    import shlex

    from exo_dagster.project_init import InitError, init_project

    try:
        made = init_project(folder, name=name, force=force)
    except InitError as exc:
        click.echo(f"exo init: {exc}", err=True)
        sys.exit(1)
    click.echo(
        f"wrote a dg project in {made.root} (package {made.package}, DAGSTER_HOME {made.home}); try:\n"
        f"  cd {shlex.quote(folder)}\n  dg list defs\n  dg launch --job {made.job}\n  dg dev"
    )
    missing = [module for module in ("dagster_dg_cli", "dagster_webserver") if importlib.util.find_spec(module) is None]
    if missing:  # `dg` and its UI are extras of exo-dagster
        click.echo(
            f"note: {' and '.join(missing)} not installed here; `dg` needs them: pip install 'exo-dagster[ui,dg]'",
            err=True,
        )


def _require_dagster_home() -> str:
    """The instance folder `exo run` uses: DAGSTER_HOME, created when missing; unset is a one-line error with the
    fix."""
    import os

    home = os.environ.get("DAGSTER_HOME")
    if not home:
        click.echo(
            "exo run: DAGSTER_HOME is not set: runs are recorded in a Dagster instance folder; set one, e.g. "
            "`export DAGSTER_HOME=$PWD/.exo/home` (exo creates it and writes its dagster.yaml)",
            err=True,
        )
        sys.exit(1)
    home = os.path.abspath(os.path.expanduser(home))
    try:
        os.makedirs(home, exist_ok=True)
    except OSError as exc:
        click.echo(
            f"exo run: DAGSTER_HOME={home} cannot be created ({exc.strerror}); point it at a writable folder", err=True
        )
        sys.exit(1)
    os.environ["DAGSTER_HOME"] = home
    return home


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--strict", is_flag=True, help="Treat warnings (e.g. literal secret values) as errors.")
def validate(paths: tuple[str, ...], strict: bool) -> None:
    """Check cluster files as one code location; exit 1 with located errors.

    Succeeds exactly when a code location built from PATHS loads every file: each file is parsed and
    checked, all clusters are compiled together (name clashes between clusters), and Dagster builds
    the repository and resolves every job."""
    from exo_dagster.catalog.registry import default_registry
    from exo_dagster.location import build_location, source_lines

    built = build_location(paths, strict=strict)
    # file names and text from the files are printed through `terminal`: no escape sequence reaches the terminal
    for problem in default_registry().problems():  # the whole catalog's, not only the plugins the location imported
        click.echo(terminal(f"warning: {problem}"), err=True)
    for file, definition in built.satellites.items():
        click.echo(
            terminal(
                f"ok  {file}: {definition.id}@{definition.version} (configured {definition.based_on})", newlines=False
            )
        )
    for cluster in built.clusters:
        if cluster.warnings:
            click.echo(render_diagnostics(cluster.warnings, {cluster.file: source_lines(cluster.file)}), err=True)
        click.echo(
            terminal(
                f"ok  {cluster.file}: cluster/{cluster.spec.identifier} -> job {cluster.job_name} "
                f"({len(cluster.steps)} steps)",
                newlines=False,
            )
        )
    if built.broken:
        click.echo(str(built.error()), err=True)
        click.echo(
            f"{len(built.broken)} of {len(built.broken) + len(built.clusters)} cluster file(s) would not load", err=True
        )
        sys.exit(1)


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--strict", is_flag=True)
@click.option(
    "--input",
    "given",
    metavar="NAME=VALUE",
    multiple=True,
    help="A run input (repeatable): `--input region=east --input since=2026-11-01`; a list as a, b or JSON.",
)
@click.option(
    "--partition",
    "partition_args",
    multiple=True,
    metavar="KEY",
    help="Run this partition (repeatable); `FIRST...LAST` runs a range of time partitions, one run each, in order.",
)
def run(path: str, strict: bool, given: tuple[str, ...], partition_args: tuple[str, ...]) -> None:
    """Run one cluster's job as `dagster job execute` does: its own executor, its SLA, its sections.
    A partitioned cluster needs `--partition`: one run per key, a summary line per run."""
    import os

    from dagster import DagsterInstance, build_reconstructable_job, execute_job

    from exo_dagster.catalog.loading import load_cluster_file
    from exo_dagster.execution.instance_home import prepare
    from exo_dagster.sections.run_end import run_pending

    path = os.path.abspath(path)
    try:
        cluster = load_cluster_file(path, strict=strict)
    except SpecError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    run_config = _run_config(cluster, given)
    keys = _partition_keys(cluster, partition_args)
    _require_dagster_home()
    prepare()  # an empty DAGSTER_HOME gets the default dagster.yaml, set up once under a lock
    job = build_reconstructable_job("exo_dagster.cli", "cluster_job", reconstructable_args=(path,))
    failed = 0
    with DagsterInstance.get() as instance:
        for key in keys:
            tags = {PARTITION_TAG: key} if key is not None else None
            # not `with execute_job(...) as result`: entering it rebuilds the run's resources to load outputs,
            # which `exo run` never reads
            result = execute_job(job, instance=instance, raise_on_error=False, run_config=run_config, tags=tags)
            run_id, success = result.run_id, result.success
            run_pending()  # the run's failure/logs sections (run_end.py), before the summary line
            where = f" partition {key}" if key is not None else ""
            click.echo(f"run {run_id} of {cluster.job_name}{where}: {'success' if success else 'FAILURE'}")
            failed += not success
    if len(keys) > 1:
        click.echo(f"{len(keys) - failed} of {len(keys)} partition runs succeeded")
    sys.exit(0 if not failed else 1)


def _partition_keys(cluster, wanted: tuple[str, ...]) -> list[str | None]:
    """The runs `exo run` makes: [None] for an unpartitioned cluster, else one per partition key asked for;
    exit 1 (nothing runs) for a missing or unknown key."""
    from exo_dagster.spec_dagster.partitions import UnknownPartition, keys_for

    partitions = cluster.spec.partitions
    if not wanted:
        if partitions is None:
            return [None]
        click.echo(
            f"cluster/{cluster.spec.identifier} is partitioned ({partitions.kind}): "
            "name the partitions to run with --partition KEY (repeatable) or --partition FIRST...LAST",
            err=True,
        )
        sys.exit(1)
    try:
        return list(keys_for(cluster, list(wanted)))
    except UnknownPartition as exc:
        click.echo(f"exo run: {exc}", err=True)
        sys.exit(1)


def _run_config(cluster, given: tuple[str, ...]) -> dict:
    """`--input NAME=VALUE` pairs as the run config of the cluster's inputs; a clear error and exit 1 if they do
    not fit."""
    from exo_dagster.compile.inputs_resource import run_config
    from exo_dagster.spec.input_values import InputValueError, parse_assignment

    try:
        values = dict(parse_assignment(text) for text in given)
        return run_config(cluster, values) if (values or cluster.spec.inputs) else {}
    except InputValueError as exc:
        declared = (
            ", ".join(
                f"{name} ({spec.type}{', required' if spec.required else ''})"
                for name, spec in cluster.spec.inputs.items()
            )
            or "none"
        )
        click.echo(
            f"error: {exc}\n  inputs of {cluster.spec.identifier}: {declared}\n  give them as --input NAME=VALUE",
            err=True,
        )
        sys.exit(1)


def cluster_job(path: str):
    """The job of the cluster in `path`, rebuilt by name in step processes (`exo run`'s reconstructable job)."""
    from exo_dagster.catalog.loading import load_cluster_file
    from exo_dagster.compile.compiler import compile_cluster

    cluster = load_cluster_file(path)
    return compile_cluster(cluster).resolve_job_def(cluster.job_name)


@main.command()
@click.option(
    "--config",
    "config_id",
    metavar="ID",
    default=None,
    help="Print one satellite's config fields: YAML key, type, default (or required), description.",
)
@click.option("--markdown", is_flag=True, help="Print the full Markdown reference (docs/satellites.md).")
@click.argument("paths", nargs=-1, type=click.Path())
def satellites(config_id: str | None, markdown: bool, paths: tuple[str, ...]) -> None:
    """List the known satellites: id@version, the providing distribution (when known), one line each.

    Aliases are listed too, each naming the satellite it stands for. Configured satellites
    (`*.satellite.yaml`) are found in EXO_SATELLITE_PATH and under PATHS (e.g. the cluster folders)."""
    from exo_dagster.catalog import presets, reference
    from exo_dagster.catalog.registry import default_registry

    if config_id is not None and markdown:
        raise click.UsageError("--config and --markdown do not go together")
    found = presets.presets_for(paths, default_registry())
    for file, error in found.broken.items():
        click.echo(f"warning: configured satellite {terminal(file, newlines=False)} did not load:\n{error}", err=True)
    registry = found.registry
    if markdown:  # configured satellites' descriptions come from their files
        click.echo(terminal(reference.markdown(registry)), nl=False)
        return
    if config_id is not None:
        definition = _satellite_named(registry, config_id)
        click.echo(terminal(reference.config_table(definition)), nl=False)
        return
    rows = []
    for definition in reference.definitions(registry):
        source = reference.source_of(registry, definition.id) or ""
        rows.append((f"{definition.id}@{definition.version}", source, reference.summary(definition)))
        rows += [(f"{alias}@{definition.version}", source, f"alias of {definition.id}") for alias in definition.aliases]
    rows.sort(key=lambda row: row[0])
    width = max((len(r[0]) for r in rows), default=0)
    source_width = max((len(r[1]) for r in rows), default=0)
    for uses, source, line in rows:
        middle = f"  {source.ljust(source_width)}" if source_width else ""
        click.echo(terminal(f"{uses.ljust(width)}{middle}  {line}".rstrip(), newlines=False))


@main.command()
@click.option(
    "--out",
    "out",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the schema to FILE instead of printing it.",
)
@click.option(
    "--satellite-file",
    is_flag=True,
    help="The schema of configured-satellite files (*.satellite.yaml) instead of cluster files.",
)
@click.argument("paths", nargs=-1, type=click.Path())
def schema(out: str | None, satellite_file: bool, paths: tuple[str, ...]) -> None:
    """Print a JSON Schema (draft 2020-12) of cluster files, for editors (yaml-language-server, VS Code).

    Every known satellite's `config` is included, chosen by the step's `uses`: the installed ones, and
    the configured satellites (`*.satellite.yaml`) in EXO_SATELLITE_PATH and under PATHS, as `exo
    satellites` finds them. The shipped copy is docs/exo-cluster.schema.json."""
    from exo_dagster.catalog import presets
    from exo_dagster.catalog import schema as schemas
    from exo_dagster.catalog.registry import default_registry

    found = presets.presets_for(paths, default_registry())
    for file, error in found.broken.items():
        click.echo(f"warning: configured satellite {terminal(file, newlines=False)} did not load:\n{error}", err=True)
    made = schemas.satellite_file_schema(found.registry) if satellite_file else schemas.cluster_schema(found.registry)
    text = schemas.dumps(made)
    if out is None:
        click.echo(text, nl=False)
        return
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(text)
    click.echo(f"wrote {out}", err=True)


def _satellite_named(registry, name: str):
    """The satellite `name` names (an id, an alias, `id@version`, or a bare name such as `read-table` when only
    one project has it); exit 1 with suggestions otherwise."""
    from exo_dagster.spec.lookup import UnknownSatellite

    try:
        return registry.get(name)
    except UnknownSatellite as exc:
        problem = exc
    if "/" not in name:
        named = [uses for uses in registry.ids() if uses.rsplit("/", 1)[-1] == name]
        if len(named) == 1:
            return registry.get(named[0])
    suggestions = problem.suggestions or registry.suggest(name)
    hint = (
        f"; did you mean {', '.join(f'`{s}`' for s in suggestions)}?"
        if suggestions
        else "; `exo satellites` lists the known ones"
    )
    click.echo(f"{problem.reason} `{name}`{hint}", err=True)
    sys.exit(1)


@main.command()
@click.argument("sql")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="table: aligned text; csv: a header and one line per row; json: an array of objects.",
)
@click.option(
    "--max-rows", type=int, default=1000, show_default=True, help="Rows a table shows (csv and json print all)."
)
def query(sql: str, fmt: str, max_rows: int) -> None:
    """Run read-only SQL over the DuckDB catalog of step outputs (`<data folder>/catalog.duckdb`).

    Every stored output is a view `<cluster>.<identifier>` (a bare identifier works when one cluster
    has it), e.g. `exo query "select region, revenue from orders_report.revenue"`. The catalog is opened
    read-only and the query can read only the outputs: statements that write (create, insert, copy ... to,
    attach, install, set, ...) are refused."""
    from exo_dagster.storage.query_output import render
    from exo_dagster.storage.views_query import QueryError
    from exo_dagster.storage.views_query import query as run_query

    try:
        result = run_query(sql)
    except QueryError as exc:
        click.echo(f"exo query: {exc}", err=True)
        sys.exit(1)
    click.echo(render(result, fmt, max_rows=max_rows), nl=False)


@main.group("catalog")
def catalog_group() -> None:
    """The DuckDB catalog of step outputs (`<data folder>/catalog.duckdb`, EXO_CATALOG)."""


@catalog_group.command("sync")
@click.option(
    "--outputs", default=None, help="The outputs base path (default: EXO_OUTPUTS, else <data folder>/outputs)."
)
def catalog_sync(outputs: str | None) -> None:
    """Register a view for every stored output (e.g. in S3), on a host whose catalog did not see them written."""
    from exo_dagster.storage.views_sync import sync

    views = sync(outputs)
    click.echo(f"{len(views)} view(s): {', '.join(views)}" if views else "no outputs found")


@main.group()
def cache() -> None:
    """The per-row result cache (EXO_CACHE_DIR, default <data folder>/cache)."""


@cache.command("clear")
@click.argument("cluster")
@click.option("--step", default=None, help="Only this step's rows (its identifier).")
def cache_clear(cluster: str, step: str | None) -> None:
    """Forget finished rows of CLUSTER (a cluster file, `project/name`, or its job name)."""
    import os

    from exo_dagster.catalog.loading import load_cluster_file
    from exo_dagster.sdk.row_cache import cache_file, exists, open_cache
    from exo_dagster.spec.ir import asset_name
    from exo_dagster.spec.models import CLUSTER_ID

    if os.path.isfile(cluster):
        try:
            job_name = load_cluster_file(cluster).job_name
        except SpecError as exc:
            click.echo(str(exc), err=True)
            sys.exit(1)
    elif matched := CLUSTER_ID.match(cluster):
        project, name = matched.groups()
        job_name = asset_name(f"{project}__{name}")
    else:
        job_name = asset_name(cluster)
    path = cache_file(job_name)
    if not exists(path):
        click.echo(f"no cache for {job_name} ({path})")
        return
    with open_cache(path) as rows:
        removed = rows.clear(step)
    click.echo(f"cleared {removed} cached row(s) of {job_name}" + (f" step {step}" if step else ""))


if __name__ == "__main__":
    main()
