"""`forge fanout`: one prompt to many models at once, streamed, compared, judged.

The command parses its options, calls `forge.fanout`, and renders: a Rich live table on a
terminal (one plain line per finished model otherwise), then the comparison, verdict and ranking.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from forge.commands.options import ConfigOption, FileOption, JsonOption
from forge.printable import printable

if TYPE_CHECKING:
    import anyio
    from rich.console import Console
    from rich.table import Table

    from forge.commands.tables import FittedTable
    from forge.config.schema import ForgeConfig
    from forge.fanout.answers import Answer, FanoutRun, Settings
    from forge.fanout.batch import BatchResult
    from forge.fanout.candidates import Workspace
    from forge.fanout.comparison import Comparison
    from forge.fanout.execution import Request
    from forge.fanout.report import Report
    from forge.fanout.roles import RoleMatrix
    from forge.fanout.selection import Selection
    from forge.fanout.store import RunStore
    from forge.ledger import Ledger

VIEWS = ("summary", "all", "different", "consensus")
REFRESH_SECONDS = 0.125
MATRIX_MAX_MODELS = 12
# Without a live table, a wait this long before a retry is said on stderr as it starts.
NOTED_WAIT_SECONDS = 2.0
MATRIX_TOO_WIDE = "Agreement matrix: too wide for the terminal; see --json, --markdown or --html."
STATUS_STYLE = {
    "ok": "green",
    "done": "green",
    "connecting": "cyan",
    "waiting (first token)": "cyan",
    "streaming": "cyan",
    "retrying": "yellow",
    "waiting": "dim",
    "failed": "red",
    "timeout": "yellow",
    "late": "yellow",
    "refused": "magenta",
    "cancelled": "dim",
    "cut off": "yellow",
}


def fanout(
    prompt: Annotated[
        str | None,
        typer.Argument(
            help="The prompt; @PATH reads a file, - (or a pipe) reads stdin.",
            show_default=False,
            metavar="PROMPT",
        ),
    ] = None,
    file: FileOption = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "-m", "--model", metavar="A,B,C", help="Models: aliases or provider/model-id."
        ),
    ] = None,
    tier: Annotated[
        list[str] | None, typer.Option("--tier", metavar="NAME", help="Every model of a tier.")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every configured and discovered model.")
    ] = False,
    cap: Annotated[
        int | None, typer.Option("-n", min=1, metavar="N", help="Ask at most N models.")
    ] = None,
    system: Annotated[str | None, typer.Option("--system", help="A system prompt.")] = None,
    temperature: Annotated[
        float | None, typer.Option("--temperature", min=0, max=2, help="Sampling temperature.")
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", min=1, help="Cap on each answer.")
    ] = None,
    deadline: Annotated[
        float | None,
        typer.Option(
            "--deadline",
            min=0.01,
            metavar="SECONDS",
            help="Stop waiting after SECONDS; unfinished answers are marked late.",
        ),
    ] = None,
    attempts: Annotated[
        int | None,
        typer.Option("--attempts", min=1, help="HTTP attempts per model (default: config)."),
    ] = None,
    threshold: Annotated[
        float,
        typer.Option("--threshold", min=0, max=1, help="Similarity at which answers agree."),
    ] = 0.6,
    show: Annotated[
        list[str] | None,
        typer.Option(
            "--show",
            metavar="VIEW|RUN",
            help="What to print: summary, all, different (only answers outside the consensus), "
            "consensus; or a saved RUN id (or 'last') to print it again.",
        ),
    ] = None,
    list_runs: Annotated[bool, typer.Option("--list", help="List recent saved runs.")] = False,
    judge: Annotated[
        str | None,
        typer.Option("--judge", metavar="MODEL", help="A model that picks the best answer."),
    ] = None,
    synthesize: Annotated[
        str | None,
        typer.Option(
            "--synthesize",
            metavar="MODEL",
            help="A model that combines the answers, citing the models behind each claim.",
        ),
    ] = None,
    validate: Annotated[
        bool, typer.Option("--validate", help="Run the validators on each code answer.")
    ] = False,
    target: Annotated[
        Path | None,
        typer.Option("--target", metavar="FILE", help="--validate: the file a candidate replaces."),
    ] = None,
    tests: Annotated[
        Path | None,
        typer.Option(
            "--tests", metavar="FILE", help="--validate: a test file the candidates face."
        ),
    ] = None,
    input_file: Annotated[
        Path | None,
        typer.Option(
            "--input", metavar="FILE", help="A batch (prompts.jsonl): prompts x models, graded."
        ),
    ] = None,
    roles: Annotated[
        str | None,
        typer.Option("--roles", metavar="A,B", help="Roles from \\[roles.NAME] in forge.toml."),
    ] = None,
    json_output: JsonOption = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print Markdown.")] = False,
    html: Annotated[
        Path | None,
        typer.Option("--html", metavar="FILE", help="Also write a self-contained HTML page."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Send one prompt to many models at once; compare, judge and validate the answers.

    Exit codes: 0 answers arrived, 1 no candidate passed --validate, 2 usage error, 3 the budget
    refused every call, 4 no model answered, 130 interrupted.
    """
    from forge.errors import UsageError

    views, runs = _split_show(show or [])
    output = _Output(json_output, markdown, html, views)
    if list_runs:
        _list_runs(json_output)
        return
    if runs:
        if prompt is not None or file is not None:
            raise UsageError(f"--show {runs[0]} prints a saved run; it takes no prompt")
        for run_id in runs:
            _show_saved(run_id, output)
        return
    if input_file is not None and (prompt is not None or file is not None):
        raise UsageError(f"--input {input_file} runs the prompts in that file; it takes no prompt")
    text = None if input_file is not None else _prompt_text(prompt, file)
    from forge.config import load_config
    from forge.fanout.answers import Settings
    from forge.fanout.run import plan_run
    from forge.fanout.selection import Selection, split_names
    from forge.ledger import Ledger

    cfg = load_config(config).config
    ledger = Ledger.configured(cfg)
    settings = Settings(system, temperature, max_tokens, deadline, attempts)
    selection = Selection(split_names(model or []), split_names(tier or []), every, cap)
    if input_file is not None:
        _batch(cfg, ledger, input_file, selection, settings, output)
        return
    assert text is not None
    workspace = _workspace(validate, target, tests)
    if workspace is not None and cfg.validation.sandbox == "bwrap":
        from forge.validation.sandbox import require_bwrap

        require_bwrap()  # before any model is asked: the candidates could not be validated
    if roles and (judge or synthesize):
        raise UsageError(
            "--judge and --synthesize weigh answers to one request; with --roles each role "
            "answers a different one, so run them for one role at a time"
        )
    run, requests = plan_run(cfg, ledger, text, selection, settings, split_names([roles or ""]))
    report = _run(cfg, ledger, run, requests, output, threshold, judge, synthesize)
    if workspace is not None and not run.interrupted:
        from forge.fanout.candidates import try_candidates
        from forge.providers.secrets import key_names

        try:
            report.candidates = try_candidates(
                run.answered(), workspace, cfg.validation, secrets=key_names(cfg)
            )
        except KeyboardInterrupt:
            run.interrupted = True  # the answers stay; the ranking is what was cut short
    from forge.fanout.store import RunStore

    RunStore(ledger.path).save(run, report.extras())
    output.emit(report)
    raise typer.Exit(_exit_code(report))


# -- planning -------------------------------------------------------------------------------------


def _split_show(values: list[str]) -> tuple[list[str], list[str]]:
    names = [n for value in values for n in value.split(",") if n.strip()]
    return [n for n in names if n in VIEWS], [n for n in names if n not in VIEWS]


def _prompt_text(prompt: str | None, file: Path | None) -> str:
    from forge.commands.options import given_text

    usage = (
        'give a prompt: forge fanout "PROMPT", --file PATH, @PATH, or pipe it on stdin '
        "(or --input prompts.jsonl for a batch, --show RUN for a saved run)"
    )
    return given_text(prompt, file, what="prompt", usage=usage)


def _workspace(validate: bool, target: Path | None, tests: Path | None) -> Workspace | None:
    from forge.errors import UsageError

    if not validate:
        if target is not None or tests is not None:
            raise UsageError("--target and --tests go with --validate")
        return None
    from forge.fanout.candidates import workspace_for

    return workspace_for(target, tests)


# -- running --------------------------------------------------------------------------------------


def _run(
    cfg: ForgeConfig,
    ledger: Ledger,
    run: FanoutRun,
    requests: list[Request],
    output: _Output,
    threshold: float,
    judge: str | None,
    synthesize: str | None,
) -> Report:
    """The run with a live table or plain lines as it goes; Ctrl-C ends it with what arrived."""
    import anyio

    from forge.fanout.execution import watch_interrupts
    from forge.fanout.run import run_fanout
    from forge.providers.client import ModelClient

    async def main() -> Report:
        stop = anyio.Event()
        streamed = anyio.Event()
        live = output.live_console()
        async with (
            ModelClient(cfg, ledger=ledger, run_id=run.run_id) as client,
            anyio.create_task_group() as group,
        ):
            await group.start(watch_interrupts, stop)
            if live is not None:
                group.start_soon(_refresh_live, live, run.answers, streamed)
            report = await run_fanout(
                client,
                run,
                requests,
                stop=stop,
                threshold=threshold,
                judge=judge,
                synthesize=synthesize,
                on_finish=_plain_line if output.plain_lines() else None,
                on_streamed=streamed.set,
                on_change=_wait_note if live is None else None,
            )
            group.cancel_scope.cancel()
        return report

    return anyio.run(main)


async def _refresh_live(console: Console, answers: list[Answer], done: anyio.Event) -> None:
    """Redrawn from the event loop, never from a thread, so rows are read between updates;
    redrawn on a timer, not on events, so clocks and countdowns move while nothing arrives."""
    import time

    import anyio
    from rich.live import Live

    rows = max(5, console.height - 4)
    with Live(console=console, auto_refresh=False, transient=True) as live:
        while not done.is_set():
            table = _answers_table(answers, limit=rows, now=time.monotonic(), live=True)
            live.update(table, refresh=True)
            with anyio.move_on_after(REFRESH_SECONDS):
                await done.wait()


def _wait_note(answer: Answer) -> None:
    """Without a live table, a long wait is said as it starts rather than sat through."""
    import sys

    from forge.fanout.answers import Status

    pause = answer.pause
    if answer.status is not Status.RETRYING or pause is None:
        return
    if pause.seconds < NOTED_WAIT_SECONDS:
        return
    sys.stderr.write(printable(f"{answer.key}: {pause.describe()} ({pause.error})") + "\n")
    sys.stderr.flush()


def _plain_line(answer: Answer) -> None:
    import sys

    from forge.fanout.report import seconds, summary_line, usd

    speed = answer.tokens_per_second
    parts = [
        f"{answer.key:<24}",
        f"{answer.label:<9}",
        f"ttft {seconds(answer.ttft):>6}",
        f"latency {seconds(answer.latency):>7}",
        f"{answer.output_tokens:>5} tok",
        f"{'-' if speed is None else f'{speed:.0f}':>5} tok/s",
        f"{usd(answer.cost_usd):>10}",
        summary_line(answer),
    ]
    sys.stdout.write(printable("  ".join(parts)) + "\n")
    sys.stdout.flush()  # a pipe is block-buffered: each line must leave as its model finishes


def _exit_code(report: Report) -> int:
    from forge.errors import ExitCode

    run = report.run
    if run.interrupted:
        return int(ExitCode.INTERRUPTED)
    if not run.answered():  # before --validate: no answer is not a failed candidate
        return int(_no_answer_exit(run.answers))
    if report.candidates is not None and not any(c.status == "passed" for c in report.candidates):
        return int(ExitCode.FAILED)
    return int(ExitCode.OK)


def _no_answer_exit(answers: list[Answer]) -> int:
    """3 when the budget refused every call, 4 when no model answered for any other reason."""
    from forge.errors import ExitCode
    from forge.fanout.answers import Status

    if answers and all(a.status is Status.REFUSED for a in answers):
        return int(ExitCode.BUDGET)
    return int(ExitCode.UNREACHABLE)


# -- saved runs -----------------------------------------------------------------------------------


def _store() -> RunStore:
    from forge.fanout.store import RunStore
    from forge.ledger import ledger_home

    return RunStore(ledger_home() / "ledger.db")


def _show_saved(ref: str, output: _Output) -> None:
    from forge.fanout import batch
    from forge.fanout.report import from_saved

    saved = _store().load(ref)
    if "batch" in saved.extras:
        output.emit_batch(batch.from_saved(saved))
    else:
        output.emit(from_saved(saved))


def _list_runs(json_output: bool) -> None:
    import time

    from forge.commands.output import console, print_json

    runs = _store().recent(20)
    if json_output:
        print_json({"runs": [r.__dict__ for r in runs]})
        return
    out = console()
    if not runs:
        out.print("No fan-out runs saved yet.")
        return
    from rich.text import Text

    from forge.commands.tables import Column, FittedTable

    table = FittedTable(
        Column("run"),
        Column("when", drop=1),
        Column("models", drop=0),
        Column("prompt", prose=True),
        title="Recent fan-out runs",
    )
    for r in runs:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started_at))
        first = r.prompt.strip().splitlines()[0] if r.prompt.strip() else ""
        table.add_row(r.run_id, when, str(r.models), Text(first[:100]))
    out.print(table)


# -- batch ----------------------------------------------------------------------------------------


def _batch(
    cfg: ForgeConfig,
    ledger: Ledger,
    path: Path,
    selection: Selection,
    settings: Settings,
    output: _Output,
) -> None:
    from forge.fanout.batch import read_prompts, run_batch
    from forge.fanout.selection import select

    prompts = read_prompts(path)
    targets = select(cfg, selection, ledger)
    result = run_batch(cfg, ledger, prompts, targets, settings, progress=output.plain_lines())
    output.emit_batch(result)
    raise typer.Exit(_batch_exit(result))


def _batch_exit(result: BatchResult) -> int:
    from forge.errors import ExitCode

    if result.interrupted:
        return int(ExitCode.INTERRUPTED)
    if any(a.ok for a in result.answers):
        return int(ExitCode.OK)
    return _no_answer_exit(result.answers)


# -- output ---------------------------------------------------------------------------------------


class _Output:
    """Where the run goes: the terminal (live table or plain lines), JSON, Markdown, HTML."""

    def __init__(self, json_output: bool, markdown: bool, html: Path | None, views: list[str]):
        self.json = json_output
        self.markdown = markdown
        self.html = html
        self.view = views[-1] if views else "summary"

    def live_console(self) -> Console | None:
        """A live table where someone is watching: stdout on a terminal, or stderr when stdout
        carries JSON or Markdown."""
        import sys

        from forge.commands.output import console

        data_out = self.json or self.markdown
        stream = sys.stderr if data_out else sys.stdout
        return console(stderr=data_out) if stream.isatty() else None

    def plain_lines(self) -> bool:
        import sys

        quiet = self.json or self.markdown or self.view in ("different", "consensus")
        return not quiet and not sys.stdout.isatty()

    def emit(self, report: Report) -> None:
        if self.html is not None:
            from forge.fanout.html import report_html

            self.html.write_text(report_html(report), encoding="utf-8")
        if self.json:
            from forge.commands.output import print_json
            from forge.fanout.report import report_json

            print_json(report_json(report))
        elif self.markdown:
            import sys

            from forge.fanout.report import report_markdown

            sys.stdout.write(printable(report_markdown(report)))
        else:
            _render(report, self.view)
        if self.html is not None and not self.json and not self.markdown:
            from forge.commands.output import console

            console(stderr=True).print(f"HTML report written to {self.html}", markup=False)

    def emit_batch(self, result: BatchResult) -> None:
        if self.json:
            from forge.commands.output import print_json
            from forge.fanout.batch import batch_json

            print_json(batch_json(result))
        elif self.markdown:
            import sys

            from forge.fanout.batch import batch_markdown

            sys.stdout.write(printable(batch_markdown(result)))
        else:
            _render_batch(result)


def _render(report: Report, view: str) -> None:
    from forge.commands.output import console

    out = console()
    run = report.run
    if view == "different":
        _print_different(out, report)
        return
    if view == "consensus":
        _print_consensus_only(out, report)
        return
    out.print(_answers_table(run.answers, title=f"forge fanout {run.run_id}"))
    if run.interrupted:
        out.print("Interrupted: the answers that arrived are kept; the rest were cancelled.")
    if run.deadline_passed:
        out.print(f"Deadline of {run.settings.deadline:g}s passed: unfinished answers are late.")
    if run.roles:
        out.print(_roles_matrix(run, out.width))
        for role in run.roles:
            out.rule(f"role: {role}", style="dim")
            _print_comparison(out, report, report.by_role[role], view)
    elif not run.interrupted:
        _print_comparison(out, report, report.comparison, view)
    _print_extras(out, report)
    _print_footer(out, report)


def _answers_table(
    answers: list[Answer],
    *,
    limit: int | None = None,
    title: str | None = None,
    now: float | None = None,
    live: bool = False,
) -> FittedTable:
    """The answers as they stand at `now` (monotonic): a row in flight shows what it is doing
    and its clock so far in the latency column."""
    import time

    from rich.text import Text

    from forge.commands.tables import Column, FittedTable
    from forge.fanout.report import seconds, summary_line, usd

    now = time.monotonic() if now is None else now

    # A narrow terminal keeps the model, its cost and its answer (or why there is none).
    table = FittedTable(
        Column("model"),
        Column("tier", drop=2),
        Column("status", drop=5),
        Column("first token", "right", drop=1),
        Column("latency", "right", drop=4),
        Column("tokens", "right", drop=3),
        Column("tok/s", "right", drop=0),
        Column("cost", "right"),
        Column("answer", prose=True),  # a refusal's reason is shown whole, wrapped
        title=title,
        live=live,
    )
    shown, hidden = _rows_to_show(answers, limit)
    for a in shown:
        speed = a.tokens_per_second
        table.add_row(
            Text(printable(a.key)),
            Text(a.tier or "-"),
            Text(a.state(now), style=STATUS_STYLE.get(a.label, "")),
            seconds(a.ttft),
            _clock(a, now),
            str(a.output_tokens) if a.output_tokens else "-",
            "-" if speed is None else f"{speed:.0f}",
            usd(a.cost_usd),
            Text(printable(summary_line(a))),  # model text, never read as markup
        )
    if hidden:
        table.add_row(Text(f"… {hidden} more", style="dim"), *[""] * 8)
    return table


def _clock(a: Answer, now: float) -> str:
    """A finished answer's latency; a running one's seconds so far, whole, ticking."""
    from forge.fanout.report import seconds

    elapsed = a.elapsed(now)
    if a.finished or elapsed is None:
        return seconds(elapsed)
    return f"{int(elapsed)}s"


def _rows_to_show(answers: list[Answer], limit: int | None) -> tuple[list[Answer], int]:
    """All rows when they fit; otherwise the ones still running first, then failures."""
    from forge.fanout.answers import IN_FLIGHT, Status

    if limit is None or len(answers) <= limit:
        return answers, 0
    order = {Status.WAITING: 1, Status.FAILED: 2, Status.TIMEOUT: 2, Status.REFUSED: 2}
    ranked = sorted(answers, key=lambda a: 0 if a.status in IN_FLIGHT else order.get(a.status, 3))
    return ranked[: limit - 1], len(answers) - (limit - 1)


def _print_comparison(out: Console, report: Report, c: Comparison, view: str) -> None:
    from rich.panel import Panel
    from rich.text import Text

    from forge.fanout.report import answer_title, headline, nothing_to_compare

    if not c.keys:
        out.print(Text(nothing_to_compare(c)))
        return
    consensus = c.reference  # the consensus, or the reference when there is none
    assert consensus is not None
    before, after = headline(c, "\0").split("\0", 1)
    out.print(Text.assemble(before, (consensus, "bold"), after))
    if c.empty:
        out.print(Text(f"Left out as empty (no words): {', '.join(c.empty)}", style="yellow"))
    clusters = "  ".join("[" + ", ".join(cl.members) + "]" for cl in c.clusters)
    out.print(Text(f"Clusters: {clusters}"))
    if c.matrix is not None and 1 < len(c.keys) <= MATRIX_MAX_MODELS:
        out.print(_matrix_table(c, out))
    elif len(c.keys) > MATRIX_MAX_MODELS:
        out.print(MATRIX_TOO_WIDE)
    if c.code is not None:
        from forge.fanout.report import code_summary

        out.print(Text(code_summary(c)))
        for key, diff in c.code.diffs.items():
            out.print(Text(f"code of {key} against {c.code.consensus}:", style="bold"))
            out.print(_diff_text(diff))
    title = answer_title(c).lower()
    out.print(Panel(Text(printable(report.answer(consensus).text)), title=f"{title}: {consensus}"))
    outside = set(c.outside())
    for key, d in c.diffs.items():
        if view == "summary" and key not in outside:
            continue
        if view == "all":
            out.print(Panel(Text(printable(report.answer(key).text)), title=key))
        against = "the consensus" if c.consensus else "the reference"
        out.print(Text(f"{key}: similarity {d.similarity:.2f} to {against}", style="bold"))
        if not d.text:
            out.print(Text(f"identical to {against}", style="dim"))
        else:
            out.print(_diff_text(d.text) if d.style == "lines" else _word_diff_text(d.text))
    hidden = len([k for k in c.diffs if k not in outside])
    if view == "summary" and hidden:
        out.print(
            Text(
                f"{hidden} answers agree with the consensus; --show all prints them.",
                style="dim",
            )
        )


def _print_different(out: Console, report: Report) -> None:
    from rich.panel import Panel
    from rich.text import Text

    comparisons = list(report.by_role.values()) if report.run.roles else [report.comparison]
    found = False
    for c in comparisons:
        for key in c.outside():
            found = True
            d = c.diffs[key]
            answer = Text(printable(report.answer(key).text))
            out.print(Panel(answer, title=f"{key} (outside the consensus)"))
            against = "the consensus" if c.consensus else "the reference, not a consensus"
            out.print(Text(f"against {against} ({c.reference}):", style="bold"))
            out.print(_diff_text(d.text) if d.style == "lines" else _word_diff_text(d.text))
    if not found:
        out.print("Every answer that arrived is in the consensus.")


def _print_consensus_only(out: Console, report: Report) -> None:
    import sys

    from forge.fanout.report import headline, nothing_to_compare

    comparisons = list(report.by_role.values()) if report.run.roles else [report.comparison]
    for c in comparisons:
        if c.consensus is not None:
            sys.stdout.write(printable(report.answer(c.consensus).text.rstrip("\n")) + "\n")
        elif c.reference is None:
            sys.stderr.write(printable(nothing_to_compare(c)) + "\n")
        else:
            sys.stderr.write(printable(headline(c, c.reference)) + "\n")


def _matrix_table(c: Comparison, out: Console) -> Table | str:
    """The matrix headed by the models' names, or by their numbers when the names are too wide
    for the terminal; when even that is too wide, where to find it."""
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    assert c.matrix is not None
    for numbered in (False, True):
        table = Table(title="Agreement matrix (similarity)", title_justify="left")
        table.add_column("", no_wrap=True)
        for n, key in enumerate(c.keys, start=1):
            table.add_column(str(n) if numbered else Text(key), justify="right", no_wrap=True)
        for n, (key, row) in enumerate(zip(c.keys, c.matrix, strict=True), start=1):
            label = Text(f"{n} {key}" if numbered else key)
            table.add_row(label, *(_heat(v) for v in row))
        unbounded = out.options.update_width(10 * out.width)  # a table measures within its room
        if Measurement.get(out, unbounded, table).maximum <= out.width:
            return table
    return MATRIX_TOO_WIDE


def _heat(value: float) -> str:
    style = "green" if value >= 0.8 else "yellow" if value >= 0.5 else "red"
    return f"[{style}]{value:.2f}[/]"


def _diff_text(diff: str) -> object:
    from rich.text import Text

    from forge.fanout.comparison import diff_line_kind

    styles = {"add": "green", "del": "red", "hunk": "cyan", "": ""}
    text = Text()
    for line in diff.splitlines():
        text.append(line + "\n", style=styles[diff_line_kind(line)])
    return text


def _word_diff_text(diff: str) -> object:
    import re

    from rich.text import Text

    text = Text()
    for piece in re.split(r"(\[-.*?-\]|\{\+.*?\+\})", diff):
        if piece.startswith("[-") and piece.endswith("-]"):
            text.append(piece, style="red")
        elif piece.startswith("{+") and piece.endswith("+}"):
            text.append(piece, style="green")
        else:
            text.append(piece)
    return text


def _roles_matrix(run: FanoutRun, width: int) -> Table | FittedTable:
    """Roles down, models across, when each model's column can be `PROSE_MIN_WIDTH` wide;
    otherwise one row per role and model."""
    from rich.table import Table
    from rich.text import Text

    from forge.commands.tables import PROSE_MIN_WIDTH
    from forge.fanout.report import seconds
    from forge.fanout.roles import role_matrix

    matrix = role_matrix(run)
    role_width = max(len(r) for r in [*matrix.roles, "role"])
    if role_width + len(matrix.models) * (PROSE_MIN_WIDTH + 3) + 4 > width:
        return _roles_rows(matrix)
    table = Table(title="Roles x models", title_justify="left")
    table.add_column("role")
    for alias in matrix.models:
        table.add_column(alias, overflow="fold")
    for role in matrix.roles:
        cells: list[Text] = []
        for alias in matrix.models:
            a = matrix.cell(role, alias)
            if a is None:
                cells.append(Text("-", style="dim"))
                continue
            style = STATUS_STYLE.get(a.status.value, "")
            text = f"{a.label} {seconds(a.latency)}\n{_role_line(a)}"
            cells.append(Text(printable(text), style=style))
        table.add_row(role, *cells)
    return table


def _roles_rows(matrix: RoleMatrix) -> FittedTable:
    from rich.text import Text

    from forge.commands.tables import Column, FittedTable
    from forge.fanout.report import seconds

    table = FittedTable(
        Column("role"),
        Column("model"),
        Column("status", drop=1),
        Column("latency", "right", drop=0),
        Column("answer", prose=True),
        title="Roles x models",
    )
    for role in matrix.roles:
        for alias in matrix.models:
            a = matrix.cell(role, alias)
            if a is not None:
                label = Text(a.label, style=STATUS_STYLE.get(a.status.value, ""))
                answer = Text(printable(_role_line(a)))
                table.add_row(role, Text(printable(alias)), label, seconds(a.latency), answer)
    return table


def _role_line(a: Answer) -> str:
    return (a.first_line if a.ok else (a.cause or ""))[:60]


def _print_extras(out: Console, report: Report) -> None:
    from rich.panel import Panel
    from rich.text import Text

    from forge.fanout.report import usd

    if report.verdict is not None:
        v = report.verdict
        head = f"Judge {v.judge}: best answer {v.best or '-'}"
        out.print(Text(head + (f" ({usd(v.cost_usd)})" if v.cost_usd else ""), style="bold"))
        out.print(Text(printable(v.reason)))
        if not v.valid:
            out.print(Text(f"fallback: {v.note}", style="yellow"))
        for d in v.disagreements:
            out.print(Text(f"  • {d.point} ({', '.join(d.answers)})"))
    if report.synthesis is not None:
        s = report.synthesis
        if s.text:
            title = f"synthesis by {s.model} ({usd(s.cost_usd)})"
            out.print(Panel(Text(printable(s.text)), title=title))
            if s.unknown:
                out.print(Text(f"citations naming no model asked: {', '.join(s.unknown)}"))
        else:
            out.print(Text(f"synthesis: {s.note}", style="yellow"))
    if report.candidates is not None:
        out.print(_candidates_table(report))


def _candidates_table(report: Report) -> FittedTable:
    from rich.text import Text

    from forge.commands.tables import Column, FittedTable
    from forge.fanout.report import usd

    table = FittedTable(
        Column("rank", drop=0),
        Column("model"),
        Column("result"),
        Column("checks", prose=True),
        Column("cost"),
        title="Validation: candidates ranked by what passes, then cost",
    )
    for rank, c in enumerate(report.candidates or [], start=1):
        style = "green" if c.status == "passed" else "red"
        table.add_row(
            str(rank), Text(c.key), Text(c.status, style=style), Text(c.summary), usd(c.cost_usd)
        )
    return table


def _print_footer(out: Console, report: Report) -> None:
    from rich.text import Text

    from forge.fanout.report import counts

    run = report.run
    tally = ", ".join(f"{n} {status}" for status, n in counts(run.answers).items())
    out.print(
        Text(
            f"run {run.run_id}: {tally}; {report.cost_text()}; {run.duration:.2f}s. "
            f"`forge fanout --show {run.run_id}` prints it again; "
            f"`forge logs --run {run.run_id}` lists its calls.",
            style="dim",
        )
    )


def _render_batch(result: BatchResult) -> None:
    from rich.text import Text

    from forge.commands.output import console
    from forge.commands.tables import Column, FittedTable
    from forge.fanout.report import seconds, usd

    out = console()
    board = result.leaderboard
    table = FittedTable(
        Column("model"),
        Column("pass rate", "right"),
        Column("95% CI", "right", drop=4),
        Column("passed", "right", drop=2),
        Column("graded", "right", drop=1),
        Column("errors", "right", drop=5),
        Column("cost", "right"),
        Column("p50", "right", drop=3),
        Column("p95", "right", drop=0),
        title=f"Leaderboard: {len(result.prompts)} prompts",
    )
    for row in board.rows:
        rate = "-" if row.pass_rate is None else f"{row.pass_rate:.0%}"
        interval = (
            "-" if row.interval is None else f"{row.interval[0]:.0%} to {row.interval[1]:.0%}"
        )
        table.add_row(
            Text(row.model),
            rate,
            interval,
            str(row.passed),
            str(row.graded),
            str(row.errors),
            usd(row.cost_usd),
            seconds(row.latency_p50),
            seconds(row.latency_p95),
        )
    out.print(table)
    if board.paired is not None:
        out.print(Text(board.paired.sentence()))
    if result.interrupted:
        from forge.fanout.batch import INTERRUPTED

        cut = sum(1 for g in result.grades.values() if g.detail == INTERRUPTED)
        out.print(
            f"Interrupted while grading: {cut} answers were left ungraded; the leaderboard "
            "counts what was graded."
            if cut
            else "Interrupted: the answers that arrived are counted; the rest were cancelled."
        )
