"""One of each: retrying, atomic writes, hashing and TLS contexts each live in one SDK helper.

Read from the source of `exo_dagster/` and `satellites/`, so a new copy fails here, naming the file and
line and the helper to use instead."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "exo_dagster", ROOT / "satellites"]

# a call of one of these, outside its helper module, is a copy of the helper
CALLS = {
    "os.replace": ("exo_dagster/sdk/atomic_write.py", "exo_dagster.sdk.atomic_write"),
    "os.rename": ("exo_dagster/sdk/atomic_write.py", "exo_dagster.sdk.atomic_write"),
    "hashlib.sha256": ("exo_dagster/sdk/hashing.py", "exo_dagster.sdk.hashing"),
    "ssl.create_default_context": ("exo_dagster/sdk/tls.py", "exo_dagster.sdk.tls"),
    "ssl.SSLContext": ("exo_dagster/sdk/tls.py", "exo_dagster.sdk.tls"),
}
RETRY_HELPER = "exo_dagster/sdk/retrying.py"
TEMP_NAMERS = {"exo_dagster/sdk/atomic_write.py", "exo_dagster/sdk/internal/temp_files.py"}  # the ".tmp" names
SLEEPS = {"time.sleep", "asyncio.sleep"}


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name:
                yield node, name


def _imported_names(tree: ast.AST) -> dict[str, str]:
    """`from os import replace as r` -> {"r": "os.replace"}, so aliases are caught too."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _retry_loops(tree: ast.AST):
    """Hand-written retry loops: a sleep inside an `except` block of a loop, or a `for ... in range(...)`
    loop that both tries something and sleeps."""
    for loop in ast.walk(tree):
        if not isinstance(loop, (ast.For, ast.While, ast.AsyncFor)):
            continue
        handlers = [h for n in ast.walk(loop) if isinstance(n, ast.Try) for h in n.handlers]
        for handler in handlers:
            for node, name in _calls(handler):
                if name in SLEEPS:
                    yield node.lineno, "sleeps in an `except` block of a loop"
        ranged = isinstance(loop, ast.For) and isinstance(loop.iter, ast.Call) and _dotted(loop.iter.func) == "range"
        if ranged and any(isinstance(n, ast.Try) for n in ast.walk(loop)):
            for node, name in _calls(loop):
                if name in SLEEPS:
                    yield node.lineno, "tries and sleeps in a `for ... in range()` loop"


def _files():
    for folder in SOURCES:
        for path in sorted(folder.rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(), str(path))


@pytest.mark.slow
def test_no_copies_of_the_atomic_write_hashing_and_tls_helpers():
    problems = []
    for rel, tree in _files():
        aliases = _imported_names(tree)
        for node, name in _calls(tree):
            name = aliases.get(name.split(".")[0], name.split(".")[0]) + name[len(name.split(".")[0]) :]
            helper = CALLS.get(name)
            if helper and rel != helper[0]:
                problems.append(f"{rel}:{node.lineno}: {name}(...); use {helper[1]}")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_no_temporary_file_names_outside_the_atomic_write_helper():
    """A `.tmp` name built by hand is the start of another write-then-rename copy."""
    problems = []
    for rel, tree in _files():
        if rel in TEMP_NAMERS:
            continue
        docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and ".tmp" in node.value
                and id(node) not in docstrings
            ):
                problems.append(f"{rel}:{node.lineno}: {node.value!r}; use exo_dagster.sdk.atomic_write")
    assert not problems, "\n".join(problems)


def test_no_hand_written_retry_loops():
    problems = [
        f"{rel}:{line}: {what}; use exo_dagster.sdk.retrying"
        for rel, tree in _files()
        if rel != RETRY_HELPER
        for line, what in _retry_loops(tree)
    ]
    assert not problems, "\n".join(sorted(set(problems)))


def test_the_scan_finds_what_it_forbids():
    """The patterns above still match the copies they replaced."""
    copy = ast.parse(
        "import os, time, random\n"
        "def send():\n"
        "    for attempt in range(4):\n"
        "        try:\n"
        "            return go()\n"
        "        except OSError:\n"
        "            time.sleep(0.05 * 2 ** attempt)\n"
        "async def ask():\n"
        "    for attempt in range(3):\n"
        "        try:\n"
        "            r = await go()\n"
        "        except OSError:\n"
        "            pass\n"
        "        await asyncio.sleep(1)\n"
        "def poll():\n"
        "    while True:\n"
        "        if done():\n"
        "            return\n"
        "        time.sleep(1)\n"
    )
    assert sorted(line for line, _ in _retry_loops(copy)) == [7, 7, 14]
    names = {name for _, name in _calls(ast.parse("import os, hashlib\nos.replace(a, b)\nhashlib.sha256(b'')\n"))}
    assert {"os.replace", "hashlib.sha256"} <= names
