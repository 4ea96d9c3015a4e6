"""`forge models`: what can be called, at what price, and how it has been doing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from forge.commands.options import ConfigOption, JsonOption

if TYPE_CHECKING:
    from forge.config import ForgeConfig
    from forge.ledger import Ledger
    from forge.providers.catalogue import CatalogueEntry

HEALTH_PROMPT = "Reply with the single word: ok"


def models(
    model: Annotated[
        str | None,
        typer.Argument(
            help="With --reset: the model whose breaker to reset (default: every model).",
            show_default=False,
            metavar="[MODEL]",
        ),
    ] = None,
    config: ConfigOption = None,
    discover: Annotated[
        bool, typer.Option("--discover", help="Ask providers which models they serve.")
    ] = False,
    health: Annotated[
        bool, typer.Option("--health", help="Send each configured model a tiny request.")
    ] = False,
    reset: Annotated[
        bool,
        typer.Option(
            "--reset",
            help="Clear the saved circuit-breaker state (cooldown, failure count) of every "
            "model, or of MODEL, e.g. once a stopped local server runs again.",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """List configured and discovered models: tier, prices, context, latency, errors, breaker."""
    import anyio

    from forge.config import load_config
    from forge.errors import UsageError
    from forge.ledger import Ledger
    from forge.providers.catalogue import build_catalogue

    if model is not None and not reset:
        raise UsageError(f"a MODEL ({model!r}) goes with --reset: forge models --reset {model}")
    cfg = load_config(config).config
    ledger = Ledger.configured(cfg)
    notes: list[str] = []
    reset_done = _reset(cfg, ledger, model) if reset else None
    if reset_done is not None and not json_output:
        from forge.commands.output import console

        console().print(reset_done["message"], markup=False)
    if discover:
        notes = anyio.run(_discover, cfg, ledger)
    checks = anyio.run(_health, cfg, ledger) if health else {}
    entries = build_catalogue(cfg, ledger)
    if json_output:
        from forge.commands.output import print_json

        data: dict[str, object] = {}
        if reset_done is not None:
            data["reset"] = reset_done
        data["models"] = [_entry_json(e, checks.get(e.alias)) for e in entries]
        print_json(data)
    else:
        _render(entries, checks, notes)
    if checks and all(c.get("budget") for c in checks.values()):
        raise typer.Exit(3)
    if checks and not any(c["ok"] for c in checks.values()):
        raise typer.Exit(4)
    if checks and not all(c["ok"] for c in checks.values()):
        raise typer.Exit(1)


def _reset(cfg: ForgeConfig, ledger: Ledger, ref: str | None) -> dict[str, object]:
    """Forget saved breaker state: what a user does once the cause of the failures is fixed
    (a local server started again) rather than wait out a cooldown. An unknown MODEL is a
    usage error with a did-you-mean, as everywhere a model is named."""
    from forge.providers.client import ModelClient

    if ref is None:
        cleared = ledger.clear_breakers()
        message = (
            f"Breaker state reset for {cleared} model{'s' if cleared != 1 else ''}."
            if cleared
            else "No model has saved breaker state: nothing to reset."
        )
        return {"model": None, "cleared": cleared, "message": message}
    target = ModelClient(cfg).resolve(ref)
    saved = ledger.breakers().get((target.provider, target.model_id))
    cleared = ledger.clear_breakers(target.provider, target.model_id)
    if not cleared or saved is None:
        message = f"{ref} has no saved breaker state: nothing to reset."
    else:
        message = f"{ref}: breaker reset ({_was(saved.failures, saved.open_until)})."
    return {"model": ref, "cleared": cleared, "message": message}


def _was(failures: int, open_until: float) -> str:
    import time

    counted = f"{failures} failure{'s' if failures != 1 else ''}"
    if open_until > time.time():
        clock = time.strftime("%H:%M:%S", time.localtime(open_until))
        return f"it was cooling down until {clock} after {counted}"
    return f"{counted} counted, no cooldown left"


async def _discover(cfg: ForgeConfig, ledger: Ledger) -> list[str]:
    """Query every provider with `discover` set, in parallel; store what they list."""
    import os

    import anyio
    import httpx

    from forge.providers.discovery import discover
    from forge.providers.failures import ProviderError
    from forge.providers.secrets import Redactor

    redact = Redactor.for_config(cfg, os.environ)
    notes: list[str] = []

    async def one(http: httpx.AsyncClient, name: str) -> None:
        try:
            found = await discover(http, name, cfg.providers[name], os.environ)
        except ProviderError as err:
            notes.append(redact(f"{name}: discovery failed: {err.kind.value}: {err.detail}"))
            return
        except (ValueError, TypeError, AttributeError, ArithmeticError) as err:
            notes.append(f"{name}: discovery failed: unexpected answer ({type(err).__name__})")
            return
        ledger.save_discovered(name, [m.to_json() for m in found])
        notes.append(f"{name}: {len(found)} models discovered")

    async with httpx.AsyncClient() as http, anyio.create_task_group() as group:
        for name, provider in cfg.providers.items():
            if provider.discover != "none":
                group.start_soon(one, http, name)
    return sorted(notes)


async def _health(cfg: ForgeConfig, ledger: Ledger) -> dict[str, dict[str, object]]:
    """One tiny request per configured model, all at once, each logged like any call."""
    import anyio

    from forge.errors import BudgetExceeded, ForgeError
    from forge.providers.client import ModelClient

    results: dict[str, dict[str, object]] = {}

    async def probe(client: ModelClient, alias: str) -> None:
        try:
            done = await client.complete(
                alias, HEALTH_PROMPT, max_tokens=8, deadline=60, max_attempts=1, task_id="health"
            )
        except BudgetExceeded as err:
            results[alias] = {"ok": False, "error": str(err), "budget": True}
            return
        except ForgeError as err:
            results[alias] = {"ok": False, "error": str(err)}
            return
        results[alias] = {"ok": True, "latency": done.latency, "ttft": done.ttft}

    async with ModelClient(cfg, ledger=ledger) as client, anyio.create_task_group() as group:
        for alias in cfg.models:
            group.start_soon(probe, client, alias)
    return results


def _entry_json(entry: CatalogueEntry, check: dict[str, object] | None) -> dict[str, object]:
    data: dict[str, object] = {
        "alias": entry.alias,
        "provider": entry.provider,
        "model_id": entry.model_id,
        "tier": entry.tier,
        "configured": entry.configured,
        "context_window": entry.context_window,
        "input_price_per_mtok": None if entry.input_price is None else str(entry.input_price),
        "output_price_per_mtok": None if entry.output_price is None else str(entry.output_price),
        "price_source": entry.price_origin,
        "calls_7d": entry.calls,
        "error_rate_7d": entry.error_rate,
        "median_latency_s": entry.median_latency,
        "breaker": "open" if entry.breaker_open_for else "closed",
        "breaker_open_for_s": entry.breaker_open_for,
    }
    if check is not None:
        data["health"] = check
    return data


def _render(
    entries: list[CatalogueEntry], checks: dict[str, dict[str, object]], notes: list[str]
) -> None:
    from rich.text import Text

    from forge.commands.output import console, seconds
    from forge.commands.tables import Column, FittedTable
    from forge.printable import printable

    out = console()
    for note in notes:
        out.print(Text(printable(note)))
    if not entries:
        out.print("No models configured. Run `forge init`, or add \\[models] to forge.toml.")
        return
    # A narrow terminal keeps each model, what it is, and its price (and its health check).
    table = FittedTable(
        Column("model"),
        Column("provider / id", drop=5),
        Column("tier", drop=4),
        Column("$/Mtok in/out"),
        Column("context", drop=1),
        Column("7d calls", drop=0),
        Column("errors", drop=3),
        Column("p50", drop=2),
        Column("breaker", drop=6),
        *([Column("health", prose=True)] if checks else []),
        title="Models",
    )
    for e in entries:
        price = (
            "unpriced"
            if e.input_price is None or e.output_price is None
            else f"{e.input_price:g} / {e.output_price:g}"
        )
        row = [
            e.alias,
            f"{e.provider} / {e.model_id}",
            e.tier or "-",
            price,
            f"{e.context_window:,}" if e.context_window else "-",
            str(e.calls),
            "-" if e.error_rate is None else f"{e.error_rate:.0%}",
            seconds(e.median_latency),
            f"open {e.breaker_open_for:.0f}s" if e.breaker_open_for else "closed",
        ]
        if checks:
            check = checks.get(e.alias)
            if check is None:
                row.append("-")
            elif check["ok"]:
                row.append(f"ok {check['latency']:.2f}s")
            else:
                row.append(f"failed: {check['error']}")
        # Provider text: never read as markup, never obeyed as a terminal escape.
        table.add_row(*(Text(printable(cell)) for cell in row))
    out.print(table)
