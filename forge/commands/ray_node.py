"""`forge ray-node`: start or join a Ray cluster as a node that can run forge's tasks.

It looks at this machine first (Python with pytest, cargo, the API key variables forge.toml
names), says what it lacks, then becomes `ray start` with one Ray resource per thing it has, so
`run-milestone --executor ray` places a task only where its validators and keys are.
"""

from __future__ import annotations

from typing import Annotated

import typer

from forge.commands.options import ConfigOption


def ray_node(
    ray_args: Annotated[
        list[str] | None,
        typer.Argument(
            help="More options for `ray start`, after `--` (e.g. -- --num-cpus 4 --block).",
            show_default=False,
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option("--address", metavar="HOST:PORT", help="Join the cluster at this head."),
    ] = None,
    head: Annotated[
        bool, typer.Option("--head", help="Start a new cluster with this machine as its head.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Say what this node has and lacks; start nothing."),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Start or join a Ray cluster as a node for run-milestone --executor ray."""
    import json
    import os
    import shlex
    import sys

    from forge.config import load_config
    from forge.errors import UsageError
    from forge.execution.placement import probe_node
    from forge.execution.ray_executor import import_ray
    from forge.printable import printable

    if head == (address is not None):
        raise UsageError("give --head to start a cluster, or --address HOST:PORT to join one")
    import_ray()
    probe = probe_node(load_config(config).config)
    for line in probe.report():
        typer.echo(printable(f"forge: {line}"), err=True)
    command = [sys.executable, "-m", "ray.scripts.scripts", "start"]
    command += ["--head"] if head else ["--address", str(address)]
    resources = json.dumps(probe.resources(), separators=(",", ":"))
    command += ["--resources", resources, *(ray_args or [])]
    if dry_run:
        typer.echo(shlex.join(command))
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)
