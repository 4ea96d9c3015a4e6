"""One forge process on one "machine", making calls in batches a test asks for on stdin.

Each line `MODEL N` makes N concurrent calls to MODEL and prints one JSON line of their outcomes;
`quit` (or the end of stdin) ends it. One client and one ledger serve every batch, as in a long
run: a database restarted between two batches is met by the connection opened before it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio

from forge.config import load_config
from forge.errors import ForgeError
from forge.ledger import Ledger
from forge.providers.client import ModelClient


async def batch(client: ModelClient, model: str, calls: int) -> list[dict[str, str]]:
    outcomes: list[dict[str, str]] = []

    async def one(index: int) -> None:
        try:
            done = await client.complete(model, f"call {index}: say ok")
        except ForgeError as exc:
            outcomes.append({"outcome": "refused", "kind": type(exc).__name__, "why": str(exc)})
        else:
            outcomes.append({"outcome": "ok", "cost": str(done.cost.usd)})

    async with anyio.create_task_group() as g:
        for index in range(calls):
            g.start_soon(one, index)
    return outcomes


async def main(config_path: str) -> None:
    config = load_config(Path(config_path)).config
    async with ModelClient(config, ledger=Ledger.configured(config)) as client:
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            if line.strip() in ("", "quit"):
                break
            model, calls = line.split()
            print(json.dumps(await batch(client, model, int(calls))), flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
