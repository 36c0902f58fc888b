"""One exception root: every exception class exo defines derives from errors.ExoError, on the branch that
decides what happens next (a UserError is never retried, a TransientError is, an ExoBug shows its trace)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from exo_dagster import errors
from exo_dagster.sdk import step_errors

ROOT = Path(__file__).resolve().parents[2]
# control flow, never raised out of its module: the YAML reader's early stop
NOT_ERRORS = {"exo_dagster.spec.located_yaml._Stop"}


def _exception_classes() -> dict[str, type]:
    """Every class defined at module level in exo_dagster/ and satellites/ that is an Exception (an interrupt such
    as step_limit.RunStopped, a KeyboardInterrupt, stays out of `except Exception` on purpose, and of the root)."""
    found = {}
    for path in sorted([*(ROOT / "exo_dagster").rglob("*.py"), *(ROOT / "satellites").rglob("*.py")]):
        names = [n.name for n in ast.parse(path.read_text(), str(path)).body if isinstance(n, ast.ClassDef) and n.bases]
        if not names:
            continue
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        loaded = importlib.import_module(module)
        for name in names:
            cls = getattr(loaded, name)
            if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == module:
                found[f"{module}.{name}"] = cls
    return found


def test_every_exception_class_derives_from_the_root():
    classes = _exception_classes()
    assert len(classes) > 25 and "exo_dagster.sdk.step_errors.PermanentError" in classes  # the scan finds them
    outside = sorted(name for name, cls in classes.items() if not issubclass(cls, errors.ExoError))
    assert outside == sorted(NOT_ERRORS), f"derive these from exo_dagster.errors.ExoError (or a branch): {outside}"


@pytest.mark.parametrize(
    "exc, kind",
    [
        (errors.UserError("a bad value"), step_errors.PERMANENT),
        (errors.TransientError("busy"), step_errors.TRANSIENT),
        (errors.ExoBug("broken rule"), step_errors.BUG),
        (step_errors.PermanentError("bad input"), step_errors.PERMANENT),
        (step_errors.TransientError("down"), step_errors.TRANSIENT),
        (step_errors.MissingFile("/abs/x.csv", "read-table"), step_errors.PERMANENT),
        (ValueError("not exo's"), step_errors.PERMANENT),  # foreign types keep their own rules
        (AttributeError("not exo's"), step_errors.BUG),
    ],
)
def test_the_branch_decides_the_kind(exc, kind):
    assert step_errors.kind(exc) == kind


def test_a_user_error_stays_a_user_error_whatever_builtin_base_it_keeps():
    """A TimeoutError is transient and a ValueError permanent, unless exo said otherwise by its branch."""

    class SlowButWrong(errors.UserError, TimeoutError):
        pass

    class BusyValue(errors.TransientError, ValueError):
        pass

    assert step_errors.kind(SlowButWrong("x")) == step_errors.PERMANENT
    assert step_errors.kind(BusyValue("x")) == step_errors.TRANSIENT
    assert step_errors.cause(BusyValue("x")) == step_errors.REMOTE


def test_the_sdk_errors_keep_their_builtin_bases():
    """Existing `except ValueError` / `except RuntimeError` / `except FileNotFoundError` clauses still catch them."""
    assert issubclass(step_errors.PermanentError, ValueError) and issubclass(
        step_errors.PermanentError, errors.UserError
    )
    assert issubclass(step_errors.TransientError, RuntimeError)
    assert issubclass(step_errors.TransientError, errors.TransientError)
    assert issubclass(step_errors.MissingFile, FileNotFoundError) and issubclass(
        step_errors.MissingFile, errors.UserError
    )
