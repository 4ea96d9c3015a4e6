"""The `forge` command line: a thin front over the library.

Only typer is imported here and in the command modules at import time, so `forge --help` stays
fast; each command imports what it needs inside its function.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from forge import __version__
from forge.commands import config as config_cmd
from forge.commands import cost as cost_cmd
from forge.commands import fanout as fanout_cmd
from forge.commands import init as init_cmd
from forge.commands import logs as logs_cmd
from forge.commands import models as models_cmd
from forge.commands import route as route_cmd
from forge.commands import run_milestone as run_milestone_cmd
from forge.commands import runs as runs_cmd
from forge.commands import stats as stats_cmd
from forge.commands import validate as validate_cmd
from forge.errors import ExitCode, ForgeError


class ForgeGroup(TyperGroup):
    """Turns forge's errors into one message on stderr and the documented exit code."""

    def invoke(self, ctx: Any) -> Any:  # typer vendors click; its Context is private
        try:
            return super().invoke(ctx)
        except ForgeError as exc:
            typer.echo(f"forge: error: {exc}", err=True)
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            typer.echo("forge: interrupted", err=True)
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None


app = typer.Typer(
    cls=ForgeGroup,
    name="forge",
    help="Get coding work done by many language models at once, cheaply and safely.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
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
    4 no model could be reached, 130 interrupted.
    """


app.command("validate")(validate_cmd.validate)
app.command("init")(init_cmd.init)
app.add_typer(config_cmd.app, name="config")
app.command("models")(models_cmd.models)
app.command("logs")(logs_cmd.logs)
app.command("cost")(cost_cmd.cost)
app.command("fanout")(fanout_cmd.fanout)
app.command("route")(route_cmd.route)
app.command("run-milestone")(run_milestone_cmd.run_milestone)
app.command("runs")(runs_cmd.runs)
app.command("stats")(stats_cmd.stats)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
