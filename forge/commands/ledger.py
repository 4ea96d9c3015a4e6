"""`forge ledger copy`: a person's local history into a team's shared ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from forge.commands.options import JsonOption

app = typer.Typer(help="The ledger itself: copy local history into a team's.", no_args_is_help=True)


@app.command("copy")
def copy(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="postgresql://USER@HOST:PORT/DB",
            help="The team's PostgreSQL ledger (a password may come from ~/.pgpass or PGPASSWORD).",
        ),
    ],
    source: Annotated[
        Path | None,
        typer.Option("--from", help="The SQLite ledger to copy (default: forge's home's)."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Copy this machine's SQLite ledger into a team's PostgreSQL ledger.

    Every call, run, task and route, each once: running it again copies only what is new.
    Reservations still in flight are left for a later copy.
    """
    from forge.commands.output import console, print_json
    from forge.ledger import Ledger, ledger_home
    from forge.ledger.copy import copy_ledger
    from forge.ledger.postgres import PostgresLedger

    target = Ledger.open(url=to)
    assert isinstance(target, PostgresLedger)
    try:
        report = copy_ledger(source or ledger_home() / "ledger.db", target)
    finally:
        target.close()
    if json_output:
        print_json(report.as_json())
        return
    out = console()
    total = sum(report.copied.values())
    out.print(f"copied {total} row(s) from {report.source} to {report.target}", markup=False)
    for table, copied in report.copied.items():
        out.print(f"  {table}: {copied} copied, {report.already[table]} already there")
    if report.in_flight:
        out.print(f"  {report.in_flight} reservation(s) in flight left out: copy again later")
