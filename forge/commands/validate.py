"""`forge validate`: the CI gate. Detects the project, runs its checks, reports and exits."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from forge.commands.options import ConfigOption

if TYPE_CHECKING:
    from rich.console import Console

    from forge.commands.tables import FittedTable
    from forge.validation.replay import ReplayStore
    from forge.validation.runner import ProgressEvent
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
    sandbox: Annotated[
        bool,
        typer.Option(
            "--sandbox",
            help="Run the checks under bubblewrap: no network, only this tree and a private "
            "/tmp writable, your home hidden but for the toolchains they need.",
        ),
    ] = False,
) -> None:
    """Run the project's checks in stages: syntax, build, lint, test.

    Exit codes: 0 all passed, 1 a check failed or a tool it needs could not run, 2 usage or
    configuration error.
    """
    import os
    import sys

    allowed = _tool_names(allow_missing or [])
    if sandbox:  # before a replay too: asked for a sandbox, forge answers only from one
        from forge.validation.sandbox import require_bwrap

        require_bwrap("--sandbox")
    # --changed and --baseline depend on git refs, so only whole-tree runs are replayed.
    replay = None
    if not changed and baseline is None:
        key = [fmt.value, str(output), str(jobs), ",".join(allowed), f"sandbox={sandbox}"]
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
    custom = [c.name for c in settings.custom]
    _check_tool_names(allowed, custom, "--allow-missing")
    _check_tool_names(tuple(settings.optional), custom, "[validation] optional")
    options = Options(
        secrets=key_names(loaded),
        use_cache=not no_cache,
        changed_since=base if changed else None,
        baseline=baseline,
        jobs=jobs,
        cold_builds=in_ci(os.environ),  # a CI job builds from nothing
        allow_missing=allowed,
        sandbox=sandbox,
    )
    if sys.stderr.isatty():
        from rich.live import Live

        from forge.commands.output import console

        progress = _Progress()
        # Transient: the view goes when the run ends, and the summary prints as it always does.
        with Live(progress, console=console(stderr=True), refresh_per_second=4, transient=True):
            report = run_validation(path, settings, replace(options, on_event=progress.tell))
    else:
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
    """--allow-missing values, split on commas."""
    return tuple(dict.fromkeys(n.strip() for v in values for n in v.split(",") if n.strip()))


def _check_tool_names(names: tuple[str, ...], custom: list[str], where: str) -> None:
    """A name that is neither a built-in tool nor a custom validator's, but close to one of
    them, is refused as a typo (a misspelt opt-out would fail the gate confusingly)."""
    import difflib

    from forge.errors import UsageError

    known = (*KNOWN_TOOLS, "cargo check", "cargo clippy", "cargo test", "python syntax", *custom)
    for name in names:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        if name not in known and close:
            raise UsageError(f"{where} {name!r}: no such tool; did you mean {close[0]}?")


@dataclass
class _Row:
    state: str = "queued"
    started: float | None = None
    finished: float | None = None
    status: str = ""  # once done: passed, failed, ... and whether the cache answered


class _Progress:
    """Each validator's state while the run goes on: a Rich renderable that `Live` redraws, so
    the elapsed seconds tick between events. Events arrive from the runner's threads."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._rows: dict[tuple[str, str], _Row] = {}  # (validator, project) -> its row

    def tell(self, event: ProgressEvent) -> None:
        import time

        with self._lock:
            row = self._rows.setdefault((event.validator, event.project), _Row())
            row.state = event.state
            if event.state == "running":
                row.started = time.monotonic()
            if event.state == "done" and event.result is not None:
                row.finished = time.monotonic()
                row.status = event.result.status.value + (" (cached)" * event.result.cached)

    def __rich__(self) -> FittedTable:
        import time

        from rich.text import Text

        from forge.commands.tables import Column, FittedTable

        table = FittedTable(
            Column("validator"),
            Column("project", drop=1),
            Column("state"),
            Column("elapsed", drop=0),
            box=None,
            padding=(0, 1),
            show_header=False,
        )
        now = time.monotonic()
        with self._lock:
            rows = [(key, replace(row)) for key, row in self._rows.items()]
        for (name, project), row in rows:
            elapsed = ""
            if row.started is not None:
                elapsed = f"{int((row.finished or now) - row.started)}s"
            state = row.status if row.state == "done" else row.state
            table.add_row(Text(name, "bold"), Text(project), Text(state), Text(elapsed, "dim"))
        return table


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
    from rich.text import Text

    from forge.validation.types import Status

    for project, python in sorted(report.interpreters.items()):
        where = "" if project == "." else f" for {project}"
        out.print(Text(f"Python{where}: {python.description}", "dim"))
    for result in report.results:
        _validator(out, report, result)
    _projects(out, report)
    diagnostics = report.diagnostics
    errors = sum(1 for d in diagnostics if d.severity == "error")
    warnings = sum(1 for d in diagnostics if d.severity == "warning")
    verdict = ("passed", "green") if report.passed else ("failed", "red")
    against = f" (new since {report.baseline})" if report.baseline else ""
    timing = "answered from the cache" if replayed else f"in {report.duration:.1f}s"
    missing = sum(1 for r in report.results if r.status is Status.COULD_NOT_RUN)
    could_not = f", {missing} could not run" if missing else ""
    out.print(
        Text("\n").append(verdict[0], verdict[1])
        + Text(
            f": {len(report.results)} validators{could_not}, {errors} errors, "
            f"{warnings} warnings{against}, {timing}"
        )
    )


def _projects(out: Console, report: ValidationReport) -> None:
    """What the report says about projects besides their validators' results."""
    from rich.text import Text

    for note in report.notes:
        out.print(Text.assemble(("note:", "dim"), f" {note.path} — {note.reason}"))
    for left in report.not_validated:
        out.print(Text.assemble(("not validated:", "yellow"), f" {left.path} — {left.reason}"))


# What tools print (messages, paths, reasons, their output) is shown as plain Text, never as
# markup: `list[int]` and `#![feature(...)]` keep their brackets, `:bug:` stays a word.
ICONS = {
    "passed": ("✓", "green"),
    "failed": ("✗", "red"),
    "skipped": ("-", "yellow"),
    "timeout": ("⏱", "red"),
    "error": ("!", "red"),
    "no_tests": ("∅", "red"),
    "could_not_run": ("!", "red"),
}


def _validator(out: Console, report: ValidationReport, result: ValidatorResult) -> None:
    from typing import get_args

    from rich.text import Text

    from forge.commands.tables import Column, FittedTable
    from forge.validation.types import TestOutcome

    where = "" if result.project == "." else f" ({result.project})"
    counts = ", ".join(f"{result.count(o)} {o}" for o in get_args(TestOutcome) if result.count(o))
    line = Text.assemble(
        ICONS[result.status.value],
        " ",
        (result.name, "bold"),
        f"{where} {result.status.value.replace('_', ' ')}",
        f": {result.reason}" if result.reason else "",
        f" — tests: {counts}" if counts else "",
        (" (cached)" if result.cached else f" {result.duration:.2f}s", "dim"),
    )
    out.print(line)
    if result.diagnostics:
        table = FittedTable(
            Column("severity", drop=1),
            Column("location"),
            Column("code", drop=0),
            Column("message", prose=True),
            box=None,
            padding=(0, 1),
        )
        for d in result.diagnostics[:FIRST_FINDINGS]:
            location = ":".join(str(p) for p in (d.file, d.line, d.column) if p is not None)
            table.add_row(d.severity, Text(location or "-"), Text(d.code or ""), Text(d.message))
            context = _code_context(Path(report.root), d.file, d.line)
            if context:
                table.add_row("", "", "", Text(context, "dim"))
        out.print(table)
        if len(result.diagnostics) > FIRST_FINDINGS:
            out.print(f"  … and {len(result.diagnostics) - FIRST_FINDINGS} more")
    for test in [t for t in result.tests if t.outcome in ("failed", "error")][:FIRST_FINDINGS]:
        location = ":".join(str(p) for p in (test.file, test.line) if p is not None)
        message = (test.message or "").strip().splitlines()[:1]
        out.print(
            Text.assemble(
                "  ", ("FAILED", "red"), f" {test.name} {location} {message[0] if message else ''}"
            )
        )
    if result.output_tail:  # set when nothing above says what went wrong
        out.print(Text(result.output_tail[-800:], "dim"))


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
