"""`forge validate`: the CI gate. Detects the project, runs its checks, reports and exits."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from forge.commands.options import ConfigOption

if TYPE_CHECKING:
    from rich.console import Console

    from forge.validation.types import ValidationReport, ValidatorResult

FIRST_FINDINGS = 10
CONTEXT_LINES = 1


class Format(StrEnum):
    summary = "summary"
    json = "json"
    junit = "junit"
    github = "github"
    sarif = "sarif"


def validate(
    path: Annotated[Path, typer.Argument(help="The project or repository folder.")] = Path("."),
    config: ConfigOption = None,
    fmt: Annotated[
        Format,
        typer.Option("--format", "-f", help="summary (default), json, junit, github or sarif."),
    ] = Format.summary,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write --format to this file; the summary still prints."
        ),
    ] = None,
    changed: Annotated[
        bool, typer.Option("--changed", help="Lint only the files changed since --base.")
    ] = False,
    base: Annotated[str, typer.Option("--base", help="The ref --changed compares with.")] = "HEAD",
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", help="Report and fail only on findings new since this ref."),
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Run every validator.")] = False,
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", min=1, help="Validators run at once.")
    ] = None,
) -> None:
    """Run the project's checks in stages: syntax, build, lint, test.

    Exit codes: 0 all passed, 1 a check failed, 2 usage or configuration error.
    """
    from forge.config import load_config
    from forge.validation.runner import Options
    from forge.validation.runner import validate as run_validation

    settings = load_config(config).config.validation
    options = Options(
        use_cache=not no_cache,
        changed_since=base if changed else None,
        baseline=baseline,
        jobs=jobs,
    )
    report = run_validation(path, settings, options)
    if fmt is not Format.summary:
        from forge.validation.formats import render
    if fmt is Format.summary or output is not None:
        if output is not None and fmt is not Format.summary:
            output.write_text(render(report, fmt.value), encoding="utf-8")
        _summary(report)
    else:
        typer.echo(render(report, fmt.value), nl=False)
    raise typer.Exit(report.exit_code)


def _summary(report: ValidationReport) -> None:
    from forge.commands.output import console

    out = console()
    for result in report.results:
        _validator(out, report, result)
    diagnostics = report.diagnostics
    errors = sum(1 for d in diagnostics if d.severity == "error")
    warnings = sum(1 for d in diagnostics if d.severity == "warning")
    verdict = "[green]passed[/]" if report.passed else "[red]failed[/]"
    against = f" (new since {report.baseline})" if report.baseline else ""
    out.print(
        f"\n{verdict}: {len(report.results)} validators, {errors} errors, {warnings} warnings"
        f"{against} in {report.duration:.1f}s"
    )


ICONS = {
    "passed": "[green]✓[/]",
    "failed": "[red]✗[/]",
    "skipped": "[yellow]-[/]",
    "timeout": "[red]⏱[/]",
    "error": "[red]![/]",
    "no_tests": "[red]∅[/]",
}


def _validator(out: Console, report: ValidationReport, result: ValidatorResult) -> None:
    from rich.markup import escape
    from rich.table import Table

    where = "" if result.project == "." else f" ({result.project})"
    counts = ""
    if result.tests:
        counts = ", ".join(
            f"{result.count(o)} {o}"
            for o in ("passed", "failed", "skipped", "error")
            if result.count(o)
        )
        counts = f" — tests: {counts}"
    extra = " [dim](cached)[/]" if result.cached else f" [dim]{result.duration:.2f}s[/]"
    reason = f": {escape(result.reason)}" if result.reason else ""
    out.print(
        f"{ICONS[result.status.value]} [bold]{escape(result.name)}[/]{escape(where)} "
        f"{result.status.value}{reason}{escape(counts)}{extra}"
    )
    if result.diagnostics:
        table = Table(show_header=True, box=None, padding=(0, 1))
        for column in ("severity", "location", "code", "message"):
            table.add_column(column, overflow="fold")
        for d in result.diagnostics[:FIRST_FINDINGS]:
            location = ":".join(str(p) for p in (d.file, d.line, d.column) if p is not None)
            table.add_row(d.severity, location or "-", d.code or "", d.message)
            context = _code_context(Path(report.root), d.file, d.line)
            if context:
                table.add_row("", "", "", f"[dim]{escape(context)}[/]")
        out.print(table)
        if len(result.diagnostics) > FIRST_FINDINGS:
            out.print(f"  … and {len(result.diagnostics) - FIRST_FINDINGS} more")
    for test in [t for t in result.tests if t.outcome in ("failed", "error")][:FIRST_FINDINGS]:
        location = ":".join(str(p) for p in (test.file, test.line) if p is not None)
        message = (test.message or "").strip().splitlines()[:1]
        out.print(
            f"  [red]FAILED[/] {escape(test.name)} {escape(location)} "
            f"{escape(message[0] if message else '')}"
        )
    if result.output_tail and result.status.value in ("error", "timeout"):
        out.print(f"[dim]{escape(result.output_tail[-800:])}[/]")


def _code_context(root: Path, file: str | None, line: int | None) -> str | None:
    """The finding's line with one line either side, numbered."""
    if not file or not line:
        return None
    try:
        lines = (root / file).read_text(errors="replace").splitlines()
    except OSError:
        return None
    start, end = max(1, line - CONTEXT_LINES), min(len(lines), line + CONTEXT_LINES)
    return "\n".join(
        f"{'>' if n == line else ' '} {n:4} | {lines[n - 1]}" for n in range(start, end + 1)
    )
