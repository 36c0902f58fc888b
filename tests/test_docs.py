"""The docs site builds, and what its examples show works.

`mkdocs build --strict` must pass (mkdocs.yml turns every broken link, anchor or page left out of the nav into an
error), and every example a reader would copy is checked: each ```yaml cluster (or configured satellite, or a
defs.yaml's inline cluster) is checked by `exo validate`'s own build, every other ```yaml block at least parses, and
each command of a ```bash/```shell/```console block names a program that exists here, with a real `exo`, `dagster` or
`dg` subcommand. The README stays a front page (at most 250 lines) whose links lead somewhere.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

from exo_dagster.location import build_location

pytestmark = pytest.mark.slow  # builds the site and runs `--help` of the CLIs: about a minute

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
BIN = Path(sys.executable).parent  # the venv's bin: exo, dagster, dg, mkdocs
FRAGMENT = "<!-- exo: fragment -->"  # the line before a ```yaml block that is part of a cluster, not a whole one
README_MAX_LINES = 250
# shell builtins and tools from outside the project that a docs command may use (PostgreSQL's and Kubernetes' CLIs
# are the reader's, not exo's: allowed where this machine lacks them)
BUILTINS = {"cd", "export"}
EXTERNAL = {"psql", "kubectl"}
# programs whose first words are subcommands (click groups), checked with `--help`
GROUPS = {"exo", "dagster", "dg", "dagster-daemon", "dagster-celery"}
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)\n(?P<body>.*?)^(?P=indent)```$", re.M | re.S)


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    file: Path
    line: int
    lang: str
    body: str
    fragment: bool

    def __str__(self) -> str:
        return f"{self.file.relative_to(REPO)}:{self.line}"


def markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]


def blocks(langs: set[str]) -> list[Block]:
    found = []
    for file in markdown_files():
        text = file.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            if match.group("lang") not in langs:
                continue
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
            indent = len(match.group("indent"))
            body = "\n".join(line[indent:] for line in match.group("body").splitlines())
            line = text.count("\n", 0, match.start()) + 1
            found.append(Block(file, line, match.group("lang"), body, before == FRAGMENT))
    return found


# -- the site ----------------------------------------------------------------------------------------------------
def nav_pages(entries) -> list[str]:
    pages = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_mkdocs_build_strict(tmp_path):
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "mkdocs.yml", "-d", str(site)],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    for page in ("index.html", "getting-started/index.html", "satellites/index.html", "design/gpu-leases/index.html"):
        assert (site / page).is_file(), page
    assert "<table>" in (site / "benchmarks" / "index.html").read_text()  # BENCHMARKS.md, included


def test_mkdocs_config_fails_on_broken_links_and_anchors():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    assert config["strict"] is True and config["docs_dir"] == "docs"
    assert all(config["validation"][key] == "warn" for key in ("omitted_files", "unrecognized_links", "anchors"))


def test_every_page_is_in_the_nav():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    in_nav = nav_pages(config["nav"])
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(set(in_nav)) == pages
    assert len(in_nav) == len(set(in_nav)), "a page is in the nav twice"


# -- YAML examples -----------------------------------------------------------------------------------------------
def check_cluster(tmp_path: Path, block: Block, text: str, name: str) -> list[str]:
    """`exo validate`'s build over the example, written to a file of its own: its problems."""
    folder = tmp_path / f"{block.file.stem}-{block.line}"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    built = build_location([path])
    if built.broken:
        return [f"{block}: the example does not validate:\n{built.error()}"]
    return [] if built.clusters or built.satellites else [f"{block}: nothing was loaded"]


def test_yaml_examples_parse_and_clusters_validate(tmp_path):
    found = blocks({"yaml"})
    kinds = {"cluster": 0, "preset": 0, "inline": 0, "fragment": 0, "other": 0}
    problems: list[str] = []
    for block in found:
        documents = list(yaml.safe_load_all(block.body))
        assert documents, f"{block}: empty"
        if block.fragment:
            kinds["fragment"] += 1
            continue
        for document in documents:
            if isinstance(document, dict) and "version" in document and "cluster" in document:
                problems += check_cluster(tmp_path, block, block.body, "cluster.yaml")
                kinds["cluster"] += 1
            elif isinstance(document, dict) and "version" in document and "satellite" in document:
                problems += check_cluster(tmp_path, block, block.body, "example.satellite.yaml")
                kinds["preset"] += 1
            elif isinstance(document, dict) and document.get("type") == "exo_dagster.ClusterComponent":
                inline = document.get("attributes", {}).get("cluster")
                if inline is not None:
                    problems += check_cluster(tmp_path, block, yaml.safe_dump(inline, sort_keys=False), "inline.yaml")
                    kinds["inline"] += 1
            else:
                if isinstance(document, dict) and "cluster" in document:
                    problems.append(f"{block}: a cluster without `version:`; make it whole or mark it `{FRAGMENT}`")
                kinds["other"] += 1
    print(f"yaml blocks: {len(found)}; checked as: {kinds}")
    assert not problems, "\n\n".join(problems)
    assert kinds["cluster"] + kinds["preset"] + kinds["inline"] >= 5, kinds
    assert kinds["fragment"] < len(found) / 2, f"fragments must stay a minority: {kinds}"


# -- shell examples ----------------------------------------------------------------------------------------------
def commands(block: Block) -> list[list[str]]:
    """Each simple command of a shell block: comments dropped, continuation lines joined, `&&`, `||`, `;`, `|` and
    `&` split, `NAME=value` prefixes dropped. A ```console block's commands are its `$ ` lines."""
    text = block.body.replace("\\\n", " ")
    lines = text.splitlines()
    if block.lang == "console":
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    found = []
    for line in lines:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = list(lexer)
        command: list[str] = []
        for word in [*words, ";"]:
            if word in ("&&", "||", ";", "|", "&"):
                while command and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", command[0]):
                    command.pop(0)
                if command:
                    found.append(command)
                command = []
            else:
                command.append(word)
    return found


def env() -> dict[str, str]:
    """This checkout's code, the venv's programs first; no exo or Dagster settings from outside."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("EXO_", "DAGSTER_"))}
    return {**kept, "PATH": f"{BIN}{os.pathsep}{kept.get('PATH', '')}", "PYTHONPATH": str(REPO), "NO_COLOR": "1"}


@cache
def help_of(words: tuple[str, ...]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / words[0]), *words[1:], "--help"], cwd=REPO, env=env(), capture_output=True, text=True, timeout=300
    )


def subcommand(words: list[str]) -> tuple[str, ...]:
    """The longest run of subcommands `words` names (`dagster job execute`), each checked with `--help`."""
    path = (words[0],)
    for word in words[1:]:
        if word.startswith("-"):
            break
        group = help_of(path)
        assert group.returncode == 0, f"`{' '.join(path)} --help` failed:\n{group.stdout}{group.stderr}"
        if not re.search(r"^\s*Usage: .*\bCOMMAND\b", group.stdout, re.M):  # a group: `[OPTIONS] COMMAND [ARGS]`
            break  # `word` is an argument, not a subcommand
        path += (word,)
        result = help_of(path)
        assert result.returncode == 0, f"`{' '.join(path)}` is not a subcommand:\n{result.stdout}{result.stderr}"
    return path


def test_shell_examples_name_real_programs_and_subcommands():
    found = blocks({"bash", "shell", "sh", "console"})
    checked: set[tuple[str, ...]] = set()
    count = 0
    for block in found:
        for words in commands(block):
            count += 1
            program = words[0]
            if program in BUILTINS:
                continue
            if program.startswith(".venv/bin/"):
                assert (BIN / program.removeprefix(".venv/bin/")).is_file(), f"{block}: no {program} in the venv"
                program = program.removeprefix(".venv/bin/")
            elif program not in EXTERNAL:
                assert shutil.which(program, path=env()["PATH"]), f"{block}: `{program}` is not installed here"
            if program in GROUPS and len(words) > 1:
                path = subcommand([program, *words[1:]])
                assert len(path) > 1 or words[1].startswith("-"), f"{block}: `{' '.join(words)}` names no subcommand"
                checked.add(path)
    print(f"shell blocks: {len(found)}, commands: {count}, subcommands checked: {sorted(checked)}")
    assert ("exo", "init") in checked and ("dagster", "job", "execute") in checked and ("dg", "launch") in checked


def test_a_made_up_subcommand_fails_the_check():
    with pytest.raises(AssertionError, match="is not a subcommand"):
        subcommand(["exo", "no-such-command", "x"])


def test_a_broken_anchor_fails_the_strict_build(tmp_path):
    """The site's own validation settings, on a page that links to an anchor it lacks."""
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# Home\n\nSee [nowhere](#nowhere).\n")
    mini = {"site_name": "t", "docs_dir": "docs", "strict": True, "validation": config["validation"]}
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(mini))
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "-f", "mkdocs.yml", "-d", str(tmp_path / "site")],
        cwd=tmp_path,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0 and "#nowhere" in result.stderr, result.stderr


def test_command_parsing_splits_chains_and_drops_env_prefixes():
    block = Block(REPO / "README.md", 1, "bash", "A=1 B=$PWD/x exo run f.yaml && cd x # note\nx & y --z 'a b'", False)
    assert commands(block) == [["exo", "run", "f.yaml"], ["cd", "x"], ["x"], ["y", "--z", "a b"]]
    console = Block(REPO / "README.md", 1, "console", "$ exo validate a \\\n  b\nok  a\n", False)
    assert commands(console) == [["exo", "validate", "a", "b"]]


# -- the README --------------------------------------------------------------------------------------------------
def test_readme_is_a_front_page_whose_links_exist():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link]
    assert "docs/getting-started.md" in local and "docs/satellites.md" in local
    missing = [link for link in local if not (REPO / link).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
