"""`forge validate`: the CI gate. Detects the project, runs its checks, reports and exits."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from forge.commands.options import ConfigOption

if TYPE_CHECKING:
    from rich.console import Console

    from forge.validation.replay import ReplayStore
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
    allow_missing: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-missing",
            metavar="TOOL",
            help="Skip TOOL (ruff, mypy, pytest, cargo, clippy, or a validator's name) when it "
            "is not installed, instead of failing; repeat or separate with commas.",
        ),
    ] = None,
) -> None:
    """Run the project's checks in stages: syntax, build, lint, test.

    Exit codes: 0 all passed, 1 a check failed or a tool it needs could not run, 2 usage or
    configuration error.
    """
    import os
    import sys

    allowed = _tool_names(allow_missing or [])
    # --changed and --baseline depend on git refs, so only whole-tree runs are replayed.
    replay = None
    if not changed and baseline is None:
        key = [fmt.value, str(output), str(jobs), ",".join(allowed)]
        replay = _replay_store(path, config, key)
    if replay is not None and not no_cache and (hit := replay[0].lookup(replay[1])) is not None:
        sys.stdout.write(hit.stdout)
        if output is not None and hit.output_file is not None:
            output.write_text(hit.output_file, encoding="utf-8")
        raise typer.Exit(hit.exit_code)

    from forge.config import load_config
    from forge.providers.secrets import key_names
    from forge.validation.projects import in_ci
    from forge.validation.runner import Options
    from forge.validation.runner import validate as run_validation

    loaded = load_config(config).config
    settings = loaded.validation
    options = Options(
        secrets=key_names(loaded),
        use_cache=not no_cache,
        changed_since=base if changed else None,
        baseline=baseline,
        jobs=jobs,
        cold_builds=in_ci(os.environ),  # a CI job builds from nothing
        allow_missing=allowed,
    )
    report = run_validation(path, settings, options)
    shown, written = _render(report, fmt, output)
    sys.stdout.write(shown)
    if output is not None and written is not None:
        output.write_text(written, encoding="utf-8")
    if replay is not None and _replayable(report):
        from forge.validation.replay import Replay

        for result in report.results:
            result.cached = True  # what a replay shows: every result came from the cache
        shown, written = _render(report, fmt, output, replayed=True)
        replay[0].save(replay[1], Replay(report.exit_code, shown, written, report.tool_stamps))
    raise typer.Exit(report.exit_code)


KNOWN_TOOLS = ("python", "ruff", "mypy", "pytest", "cargo", "clippy")


def _tool_names(values: list[str]) -> tuple[str, ...]:
    """--allow-missing values, split on commas. A name forge does not know may be a custom
    validator's, so it is kept; a near miss of a built-in tool is refused as a typo."""
    import difflib

    from forge.errors import UsageError

    names = tuple(dict.fromkeys(n.strip() for v in values for n in v.split(",") if n.strip()))
    for name in names:
        close = difflib.get_close_matches(name, KNOWN_TOOLS, n=1, cutoff=0.75)
        if name not in KNOWN_TOOLS and close:
            raise UsageError(f"--allow-missing {name}: no such tool; did you mean {close[0]}?")
    return names


def _replay_store(
    path: Path, config: Path | None, options: list[str]
) -> tuple[ReplayStore, str] | None:
    """The store and key for replaying this exact run, or None when it cannot be replayed."""
    import os
    import sys

    from forge.config.discovery import config_files
    from forge.home import forge_home
    from forge.validation.replay import ReplayStore

    if not path.is_dir():
        return None  # the normal path reports the error
    store = ReplayStore(forge_home() / "validate" / "replay")
    files = config_files(config, Path.cwd(), os.environ)
    return store, store.key(path, options, files, os.environ, sys.stdout.isatty())


def _replayable(report: ValidationReport) -> bool:
    from forge.validation.types import Status

    steady = {Status.PASSED, Status.FAILED, Status.NO_TESTS, Status.SKIPPED}
    return all(r.status in steady and not r.unexplained for r in report.results)


def _render(
    report: ValidationReport, fmt: Format, output: Path | None, replayed: bool = False
) -> tuple[str, str | None]:
    """(what goes to stdout, what goes to --output) for this report."""
    import io

    if fmt is not Format.summary:
        from forge.validation.formats import render

        if output is None:
            return render(report, fmt.value), None
        written: str | None = render(report, fmt.value)
    else:
        written = None
    from forge.commands.output import console

    buffer = io.StringIO()
    _summary(report, console(capture=buffer), replayed)
    return buffer.getvalue(), written


def _summary(report: ValidationReport, out: Console, replayed: bool = False) -> None:
    from rich.markup import escape

    from forge.validation.types import Status

    for project, python in sorted(report.interpreters.items()):
        where = "" if project == "." else f" for {project}"
        out.print(f"[dim]Python{escape(where)}: {escape(python.description)}[/]")
    for result in report.results:
        _validator(out, report, result)
    _projects(out, report)
    diagnostics = report.diagnostics
    errors = sum(1 for d in diagnostics if d.severity == "error")
    warnings = sum(1 for d in diagnostics if d.severity == "warning")
    verdict = "[green]passed[/]" if report.passed else "[red]failed[/]"
    against = f" (new since {report.baseline})" if report.baseline else ""
    timing = "answered from the cache" if replayed else f"in {report.duration:.1f}s"
    missing = sum(1 for r in report.results if r.status is Status.COULD_NOT_RUN)
    could_not = f", {missing} could not run" if missing else ""
    out.print(
        f"\n{verdict}: {len(report.results)} validators{could_not}, {errors} errors, "
        f"{warnings} warnings{against}, {timing}"
    )


def _projects(out: Console, report: ValidationReport) -> None:
    """What the report says about projects besides their validators' results."""
    from rich.markup import escape

    for note in report.notes:
        out.print(f"[dim]note:[/] {escape(note.path)} — {escape(note.reason)}")
    for left in report.not_validated:
        out.print(f"[yellow]not validated:[/] {escape(left.path)} — {escape(left.reason)}")


ICONS = {
    "passed": "[green]✓[/]",
    "failed": "[red]✗[/]",
    "skipped": "[yellow]-[/]",
    "timeout": "[red]⏱[/]",
    "error": "[red]![/]",
    "no_tests": "[red]∅[/]",
    "could_not_run": "[red]![/]",
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
        f"{result.status.value.replace('_', ' ')}{reason}{escape(counts)}{extra}"
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
    if result.output_tail:  # set when nothing above says what went wrong
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
