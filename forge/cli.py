"""The `forge` command line: a thin front over the library.

Only typer is imported here, and a command's module is imported only when that command runs or
its own help is asked for: `forge --help` lists the commands from the table below without
building their options. Each command imports what it needs inside its function.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from forge import __version__
from forge.commands import config as config_cmd
from forge.commands import ledger as ledger_cmd
from forge.errors import ExitCode, ForgeError

# name: (module, function, the first line of its docstring, which `forge --help` shows).
# tests/test_startup.py checks that these lines match the docstrings.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "validate": (
        "forge.commands.validate",
        "validate",
        "Run the project's checks in stages: syntax, build, lint, test.",
    ),
    "init": (
        "forge.commands.init",
        "init",
        "Write a starter forge.toml from the Ollama models found and the API keys set.",
    ),
    "models": (
        "forge.commands.models",
        "models",
        "List configured and discovered models: tier, prices, context, latency, errors, breaker.",
    ),
    "logs": (
        "forge.commands.logs",
        "logs",
        "Show recent model attempts: tokens, latency, cost and outcome.",
    ),
    "cost": (
        "forge.commands.cost",
        "cost",
        "Spend today and this month, grouped by provider, model and tier, against the budget.",
    ),
    "fanout": (
        "forge.commands.fanout",
        "fanout",
        "Send one prompt to many models at once; compare, judge and validate the answers.",
    ),
    "route": (
        "forge.commands.route",
        "route",
        "Show what forge would do with a task: type, complexity, tier, model, escalation, cost.",
    ),
    "run-milestone": (
        "forge.commands.run_milestone",
        "run_milestone",
        "Run a milestone: independent tasks in parallel, each in its own worktree, validated.",
    ),
    "ray-node": (
        "forge.commands.ray_node",
        "ray_node",
        "Start or join a Ray cluster as a node for run-milestone --executor ray.",
    ),
    "runs": (
        "forge.commands.runs",
        "runs",
        "List runs, newest first: state, start, duration, source, tasks and cost.",
    ),
    "stats": (
        "forge.commands.stats",
        "stats",
        "First-attempt success, escalation, work per tier, each model's record, and the savings.",
    ),
}
ORDER = ("validate", "init", "config", "models", "logs", "cost", "fanout", "route")


def load_command(name: str) -> Any:
    """The real command: its module imported, its options built by Typer."""
    module, function, _ = COMMANDS[name]
    one = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    one.command(name)(getattr(importlib.import_module(module), function))
    return typer.main.get_command(one)


class ForgeGroup(TyperGroup):
    """Loads a command only when it is used, and turns forge's errors into one message on stderr
    and the documented exit code."""

    listing = False  # while `forge --help` is drawn: commands are only named, not loaded

    def list_commands(self, ctx: Any) -> list[str]:
        names = [*super().list_commands(ctx), *COMMANDS]
        return sorted(names, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))

    def get_command(self, ctx: Any, name: str) -> Any:
        if name not in COMMANDS:
            return super().get_command(ctx, name)
        if self.listing:
            summary = COMMANDS[name][2]
            return TyperCommand(name, help=summary, short_help=summary)
        return load_command(name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self.listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self.listing = False

    def shell_complete(self, ctx: Any, incomplete: str) -> list[Any]:
        # Completing a command's name needs its summary, not its module and options.
        self.listing = True
        try:
            return list(super().shell_complete(ctx, incomplete))
        finally:
            self.listing = False

    def invoke(self, ctx: Any) -> Any:  # typer vendors click; its Context is private
        try:
            try:
                return super().invoke(ctx)
            finally:
                # What is still buffered meets a closed pipe here, where it is handled, rather
                # than at the interpreter's exit ("Exception ignored", exit 120).
                sys.stdout.flush()
        except ForgeError as exc:
            from forge.printable import printable

            # An error may quote a server (a model's name, a message it sent).
            typer.echo(printable(f"forge: error: {exc}"), err=True)
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            typer.echo("forge: interrupted", err=True)
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except BrokenPipeError:
            raise typer.Exit(pipe_closed()) from None
        except BaseExceptionGroup as group:  # a closed pipe met by tasks writing as they finish
            if group.split(BrokenPipeError)[1] is not None:
                raise
            raise typer.Exit(pipe_closed()) from None


def pipe_closed() -> int:
    """The reader of stdout went away (`forge ... | head`): stop quietly, as `cat` would.

    Whatever is still buffered for stdout would fail again when the interpreter flushes it at
    exit ("Exception ignored ... BrokenPipeError"), so stdout is pointed at /dev/null first.
    """
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    return int(ExitCode.PIPE_CLOSED)


app = typer.Typer(
    cls=ForgeGroup,
    name="forge",
    help="Get coding work done by many language models at once, cheaply and safely.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"forge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Get coding work done by many language models at once, cheaply and safely.

    Exit codes: 0 ok, 1 work failed, 2 usage or configuration error, 3 budget stopped the work,
    4 no model could be reached, 130 interrupted, 141 the reader of the output closed the pipe.
    """


app.add_typer(config_cmd.app, name="config")
app.add_typer(ledger_cmd.app, name="ledger")


def main() -> None:
    try:
        # Named `forge` however it is started (`python -m forge` too): the shell completion
        # scripts call the program by this name.
        app(prog_name="forge")
    finally:
        # The command is over. At exit the interpreter runs full garbage collections over every
        # object still alive (0.3 s after a 40-task run); frozen, they are skipped and the memory
        # goes back with the process. Python does not promise to finalize objects alive at exit
        # anyway; what must be closed is closed at exit explicitly (the ledger: store.py).
        import gc

        gc.freeze()


if __name__ == "__main__":
    main()
