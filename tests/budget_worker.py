"""One forge process making many concurrent calls; run twice at once by test_budget.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio

from forge.config import load_config
from forge.errors import BudgetExceeded, ForgeError
from forge.ledger import Ledger
from forge.providers.client import ModelClient


async def main(config_path: str, calls: int, prompt: str | None = None) -> None:
    config = load_config(Path(config_path)).config
    outcomes: list[dict[str, str]] = []

    async def one(client: ModelClient, index: int) -> None:
        try:
            done = await client.complete("alpha", prompt or f"call {index}: say ok")
        except BudgetExceeded as exc:
            outcomes.append({"outcome": "refused", "why": str(exc)})
        except ForgeError as exc:
            outcomes.append({"outcome": "failed", "why": str(exc)})
        else:
            outcomes.append({"outcome": "ok", "cost": str(done.cost.usd)})

    ledger = Ledger.configured(config)  # [ledger] url or FORGE_LEDGER_URL: a shared one
    async with ModelClient(config, ledger=ledger) as client, anyio.create_task_group() as g:
        for index in range(calls):
            g.start_soon(one, client, index)
    print(json.dumps(outcomes))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], int(sys.argv[2]), *sys.argv[3:4])
