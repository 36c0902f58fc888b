"""Every private Dagster name exo relies on still exists where the adapter says, with the shape exo uses.

When a Dagster upgrade moves or reshapes one, this fails first, naming the name and where it was
expected, instead of a code location failing to load or a run failing mid-way.
"""

from __future__ import annotations

import ast
import importlib
import inspect

import dagster
import pytest

from exo_dagster import dagster_private


@pytest.mark.parametrize("name", sorted(dagster_private.NAMES))
def test_every_private_name_resolves(name):
    module, attribute = dagster_private.NAMES[name]
    try:
        loaded = importlib.import_module(module)
    except ImportError as exc:
        pytest.fail(
            f"Dagster {dagster.__version__} has no module {module} (exo's `{name}`): {exc}; "
            f"update exo_dagster/dagster_private.py"
        )
    if attribute is not None:
        assert hasattr(loaded, attribute), (
            f"Dagster {dagster.__version__} moved {module}.{attribute} (exo's `{name}`); "
            f"update exo_dagster/dagster_private.py"
        )
    assert getattr(dagster_private, name) is dagster_private.resolve(name)


# What exo's subclasses override or call: a rename inside these classes breaks the executor quietly.
MEMBERS = {
    "ActiveExecution": [
        "get_steps_to_execute",
        "_update",
        "get_step_by_key",
        "_prep_for_dynamic_outputs",
        "handle_event",
        "verify_complete",
        "plan_events_iterator",
        "concurrency_event_iterator",
        "check_for_interrupts",
        "mark_interrupted",
        "get_known_state",
        "is_complete",
    ],
    "MultiprocessExecutor": ["execute", "log_failure_or_retry_event_after_error", "retries", "step_dependency_config"],
    "MultiprocessExecutorChildProcessCommand": ["execute"],
    "RunLauncher": [
        "launch_run",
        "terminate",
        "check_run_worker_health",
        "resume_run",
        "supports_check_run_worker_health",
    ],
    "DagsterEvent": ["engine_event", "step_worker_starting"],
    "EngineEventData": ["multiprocess", "interrupted", "engine_error"],
}


@pytest.mark.parametrize("name", sorted(MEMBERS))
def test_the_members_exo_uses_are_there(name):
    cls = getattr(dagster_private, name)
    missing = [m for m in MEMBERS[name] if not hasattr(cls, m)]
    assert not missing, f"Dagster {dagster.__version__}: {name} lost {missing}; exo's executor/launcher use them"


def test_the_scheduler_state_exo_reads_is_still_set_up():
    """DeviceScheduler (execution/step_scheduler.py) reads ActiveExecution's private state."""
    source = inspect.getsource(dagster_private.ActiveExecution.__init__)
    for attribute in (
        "_context_guard",
        "_executable",
        "_in_flight",
        "_sort_key_fn",
        "_max_concurrent",
        "_tag_concurrency_limits",
        "_instance_concurrency_context",
    ):
        assert f"self.{attribute}" in source, f"ActiveExecution no longer sets {attribute}; DeviceScheduler reads it"


def test_the_child_command_still_takes_what_exo_passes():
    params = inspect.signature(dagster_private.MultiprocessExecutorChildProcessCommand.__init__).parameters
    for expected in (
        "run_config",
        "dagster_run",
        "step_key",
        "instance_ref",
        "term_event",
        "recon_pipeline",
        "retry_mode",
        "known_state",
        "repository_load_data",
    ):
        assert expected in params, f"MultiprocessExecutorChildProcessCommand no longer takes {expected}"


def test_cron_rules_still_match_what_exo_tells_users():
    assert dagster_private.is_valid_cron_string("0 * * * *")
    assert not dagster_private.is_valid_cron_string("0 0 30 2 *")  # 30 February
    assert not dagster_private.is_valid_cron_string("0 0 * * * *")  # a seconds field


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError):
        dagster_private.no_such_name  # noqa: B018


def _type_checking_imports() -> dict[str, tuple[str, str | None]]:
    """The names the `if TYPE_CHECKING:` block imports, as (module, attribute) like NAMES."""
    tree = ast.parse(inspect.getsource(dagster_private))
    block = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    found: dict[str, tuple[str, str | None]] = {}
    for node in block.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                found[alias.asname or alias.name] = (alias.name, None)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                found[alias.asname or alias.name] = (node.module or "", alias.name)
    return found


def test_the_type_checker_sees_the_same_names_the_runtime_resolves():
    """pyright types every name from the TYPE_CHECKING imports; a name that differs from NAMES would be typed wrong."""
    assert _type_checking_imports() == dagster_private.NAMES
