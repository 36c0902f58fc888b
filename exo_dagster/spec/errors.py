"""Located spec diagnostics: every user mistake says FILE:LINE:COL, shows the line, and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Location:
    """A 1-based line and column inside one cluster file."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a cluster file; `hint` tells the user how to fix it."""

    location: Location
    message: str
    hint: str = ""
    severity: str = "error"  # "error" | "warning"

    def render(self, source_lines: list[str] | None = None) -> str:
        head = f"{self.location}: {self.severity}: {self.message}"
        parts = [head]
        if source_lines and 1 <= self.location.line <= len(source_lines):
            text = source_lines[self.location.line - 1].rstrip("\n")
            parts.append(f"    {text}")
            parts.append("    " + " " * max(self.location.column - 1, 0) + "^")
        if self.hint:
            parts.append(f"  fix: {self.hint}")
        return "\n".join(parts)


@dataclass
class SpecError(Exception):
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
