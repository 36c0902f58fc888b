"""Located spec diagnostics: every user mistake says FILE:LINE:COL, shows the line, and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass, field

from exo_dagster.errors import UserError
from exo_dagster.spec.untrusted_text import terminal


@dataclass(frozen=True)
class Location:
    """A 1-based line and column inside one cluster file."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Note:
    """A second place that explains a diagnostic (e.g. where YAML gave up, or the first of two duplicates)."""

    location: Location
    message: str


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a cluster file; `hint` tells the user how to fix it."""

    location: Location
    message: str
    hint: str = ""
    severity: str = "error"  # "error" | "warning"
    notes: tuple[Note, ...] = ()

    def render(self, source_lines: list[str] | None = None) -> str:
        """The report's lines; text from the file (messages quote it) cannot move the cursor or forge a line."""
        parts = [f"{self.location}: {self.severity}: {self.message}"]
        parts += _quoted(self.location, source_lines)
        for note in self.notes:
            where = (
                f"{note.location.line}:{note.location.column}"
                if note.location.file == self.location.file
                else str(note.location)
            )
            parts.append(f"  {where}: note: {note.message}")
            parts += _quoted(note.location, source_lines if note.location.file == self.location.file else None)
        if self.hint:
            parts.append(f"  fix: {self.hint}")
        return "\n".join(terminal(part, newlines=False) for part in parts)


def _quoted(location: Location, source_lines: list[str] | None) -> list[str]:
    """The location's line and a caret under its column (nothing when the line is unknown)."""
    if not source_lines or not 1 <= location.line <= len(source_lines):
        return []
    text = source_lines[location.line - 1].rstrip("\n")
    pad = "".join(
        c if c == "\t" else " " for c in text[: max(location.column - 1, 0)]
    )  # a tab stays a tab: the caret lines up
    return [f"    {text}", f"    {pad}" + " " * max(location.column - 1 - len(text), 0) + "^"]


@dataclass
class SpecError(UserError):
    """All errors found in one or more cluster files; its str() is the user-facing report."""

    diagnostics: list[Diagnostic]
    sources: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.report())

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    def report(self) -> str:
        return render_diagnostics(self.diagnostics, self.sources)

    def __str__(self) -> str:
        return self.report()


def render_diagnostics(diagnostics: list[Diagnostic], sources: dict[str, list[str]]) -> str:
    ordered = sorted(diagnostics, key=lambda d: (d.location.file, d.location.line, d.location.column))
    body = "\n\n".join(d.render(sources.get(d.location.file)) for d in ordered)
    n_err = sum(d.severity == "error" for d in diagnostics)
    n_warn = len(diagnostics) - n_err
    summary = f"{n_err} error{'s' if n_err != 1 else ''}"
    if n_warn:
        summary += f", {n_warn} warning{'s' if n_warn != 1 else ''}"
    return f"{body}\n\n{summary}" if body else summary
