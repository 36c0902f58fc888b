"""The package layers import in one direction only, and satellites import only the SDK (and the leaf modules).

Read from the source (every import statement, lazy ones inside functions included), so a new
import that breaks the architecture fails here, naming the file and line.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# lowest first: a package may import only itself and the packages listed before it
LAYERS = [
    "<leaf>",
    "python_private",
    "sdk",
    "spec",
    "dagster_private",
    "catalog",
    "storage",
    "runtime",
    "execution",
    "spec_dagster",  # a cluster's partitions and retries as Dagster objects
    "sections",  # the failure/logs sections and their run at the end of the run's process
    "compile",
    "<top>",
]
MODULE_LAYERS = ("dagster_private", "python_private")  # layers that are one module, not a package
# leaf modules: the shared vocabulary (keys, the exception root), importing nothing else of exo's, so that every
# layer and every satellite may import them
LEAVES = ("keys", "errors")


def _package_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "exo_dagster":
        return None
    if len(parts) == 1:
        return "<top>"
    if parts[1] in LEAVES:
        return "<leaf>"
    return parts[1] if parts[1] in LAYERS else "<top>"  # MODULE_LAYERS are modules; the rest are packages


def _imports(path: Path, module_level_only: bool = False):
    tree = ast.parse(path.read_text(), str(path))
    lazy = (
        {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(f)}
        if module_level_only
        else set()
    )
    for node in (n for n in ast.walk(tree) if id(n) not in lazy):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "exo_dagster":
                for alias in node.names:  # `from exo_dagster import sdk` names a package
                    yield (
                        node.lineno,
                        f"exo_dagster.{alias.name}" if alias.name in (*LAYERS, *LEAVES) else "exo_dagster",
                    )
            else:
                yield node.lineno, node.module
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import; the layers use absolute imports")


def _layer_of_file(path: Path) -> str:
    rel = path.relative_to(ROOT / "exo_dagster").parts
    if len(rel) == 1 and rel[0].removesuffix(".py") in MODULE_LAYERS:
        return rel[0].removesuffix(".py")
    if len(rel) == 1 and rel[0].removesuffix(".py") in LEAVES:
        return "<leaf>"
    return rel[0] if len(rel) > 1 else "<top>"


def test_each_layer_imports_only_the_layers_below_it():
    problems = []
    for path in sorted((ROOT / "exo_dagster").rglob("*.py")):
        mine = _layer_of_file(path)
        for line, module in _imports(path):
            if module.startswith("satellites"):
                problems.append(f"{path.relative_to(ROOT)}:{line}: the core names the `satellites` package ({module})")
            other = _package_of(module)
            if other is None or other == mine:
                continue
            if LAYERS.index(other) > LAYERS.index(mine):
                problems.append(f"{path.relative_to(ROOT)}:{line}: {mine}/ imports {module} (a layer above it)")
    assert not problems, "\n".join(problems)


def test_satellites_import_only_the_sdk():
    problems = []
    for path in sorted((ROOT / "satellites").rglob("*.py")):
        domain = path.relative_to(ROOT / "satellites").parts[0]
        for line, module in _imports(path):
            internal = module == "exo_dagster.sdk.internal" or module.startswith("exo_dagster.sdk.internal.")
            if module.startswith("exo_dagster") and (
                internal
                or not (
                    module == "exo_dagster.sdk"
                    or module.startswith("exo_dagster.sdk.")
                    or _package_of(module) == "<leaf>"
                )
            ):
                problems.append(
                    f"{path.relative_to(ROOT)}:{line}: imports {module}; satellites import only the SDK "
                    "(not sdk.internal) and the leaves"
                )
            if module.startswith("satellites.") and module.split(".")[1] not in (domain,):
                problems.append(f"{path.relative_to(ROOT)}:{line}: imports another domain's satellite ({module})")
    assert not problems, "\n".join(problems)


def test_the_sdk_and_spec_layers_import_no_dagster_at_module_level():
    """(A function may import Dagster lazily, e.g. to raise its Failure; importing the layer must not.)"""
    problems = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in sorted(
            [*(ROOT / "exo_dagster" / "spec").rglob("*.py"), *(ROOT / "exo_dagster" / "sdk").rglob("*.py")]
        )
        for line, module in _imports(path, module_level_only=True)
        if module.split(".")[0] in ("dagster", "dagster_shared")
    ]
    assert not problems, "\n".join(problems)


def test_private_dagster_names_are_imported_only_through_the_adapter():
    problems = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in sorted([*(ROOT / "exo_dagster").rglob("*.py"), *(ROOT / "satellites").rglob("*.py")])
        if path.name != "dagster_private.py"
        for line, module in _imports(path)
        if module.startswith(("dagster._", "dagster_shared._")) or module == "dagster._check"
    ]
    assert not problems, "import these through exo_dagster.dagster_private:\n" + "\n".join(problems)


def _loaded_after(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_sdk_and_one_satellite_load_no_compiler_executor_or_other_satellite():
    loaded = _loaded_after("import exo_dagster.sdk, satellites.tables.sql")
    ours = [m for m in loaded if m.startswith(("exo_dagster", "satellites"))]
    assert "satellites.tables.sql" in ours
    core = [m for m in ours if m.startswith("exo_dagster.") and m.split(".")[1] not in ("sdk", *LEAVES)]
    other_satellites = [m for m in ours if m.startswith("satellites.") and not m.startswith("satellites.tables")]
    siblings = [m for m in ours if m.startswith("satellites.tables.") and m != "satellites.tables.sql"]
    assert not core, f"the SDK pulled in core layers: {core}"
    assert not other_satellites, f"other domains' satellites were imported: {other_satellites}"
    # the domain package imports its modules (how it registers); a satellite module itself needs no sibling
    assert set(siblings) <= {"satellites.tables.read_table", "satellites.tables.write_table"}, siblings
    assert not [m for m in loaded if m.startswith("dagster._core.execution")], (
        "the SDK loaded Dagster's execution machinery"
    )


def test_the_spec_layer_alone_loads_no_dagster():
    loaded = _loaded_after("import exo_dagster.spec.parser")
    assert not [m for m in loaded if m == "dagster" or m.startswith("dagster.")]


# -- no import circle -------------------------------------------------------------------------------


def _module_files() -> dict[str, Path]:
    files = {}
    for package in ("exo_dagster", "satellites"):
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def _import_graph(module_level_only: bool) -> dict[str, set[str]]:
    """Module -> the modules of exo_dagster and satellites it imports (`from x import y` counts x.y when y is a
    module, else x)."""
    files = _module_files()
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        lazy = (
            {
                id(n)
                for f in ast.walk(tree)
                if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                for n in ast.walk(f)
            }
            if module_level_only
            else set()
        )
        imported = set()
        for node in (n for n in ast.walk(tree) if id(n) not in lazy):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names if alias.name in files)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    if full in files:
                        imported.add(full)
                    elif node.module in files:
                        imported.add(node.module)
        graph[module] = imported - {module}
    return graph


def _a_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` (its modules in import order, the first repeated at the end), or None."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path, on_path, stack = [start], {start}, [iter(sorted(graph[start]))]
        while stack:
            following = next(stack[-1], None)
            if following is None:  # every import of path[-1] explored: no circle through it
                finished = path.pop()
                done.add(finished)
                on_path.discard(finished)
                stack.pop()
            elif following in on_path:
                return [*path[path.index(following) :], following]
            elif following not in done:
                path.append(following)
                on_path.add(following)
                stack.append(iter(sorted(graph[following])))
    return None


def test_no_import_circle_at_module_level():
    """A circle at module level makes which module loads first matter (a half-initialised module's names missing)."""
    cycle = _a_cycle(_import_graph(module_level_only=True))
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_no_import_circle_counting_imports_inside_functions():
    """A lazy import that closes a circle still ties the two modules together: each needs the other."""
    cycle = _a_cycle(_import_graph(module_level_only=False))
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_cycle_finder_names_a_circle():
    assert _a_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _a_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
