"""`forge --help` and `--version` stay fast: no heavy library is imported for them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

HEAVY = (
    "httpx",
    "anyio",
    "networkx",
    "git",
    "genai_prices",
    "sqlite3",
    "forge.providers",
    "ray",
    "psycopg",
)

PROBE = """
import json, sys
from forge.cli import main
sys.argv = ["forge", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit:
    pass
sys.stdout.flush()
print("\\nMODULES=" + json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize(
    ("args", "also_absent"),
    [
        (["--help"], ("pydantic", "forge.config")),
        (["--version"], ("pydantic", "forge.config")),
        # Typer itself builds a subcommand's parameters with pydantic, so only forge's own
        # heavy modules are checked there.
        (["models", "--help"], ("forge.config", "forge.ledger")),
    ],
)
def test_help_and_version_load_no_heavy_module(args: list[str], also_absent: tuple[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Usage" in done.stdout or "forge " in done.stdout
    modules = json.loads(done.stdout.rsplit("MODULES=", 1)[1])
    heavy = HEAVY + also_absent
    loaded = [m for m in modules if any(m == h or m.startswith(h + ".") for h in heavy)]
    assert loaded == [], f"{args} imported {loaded}"


def test_routing_one_task_loads_no_model_client(tmp_path: Path) -> None:
    """`forge route` reads the config and the ledger and calls no model: the provider layer's
    clients, requests and stream events stay unloaded (only its accounting types are needed)."""
    (tmp_path / "forge.toml").write_text(
        '[providers.local]\nbase_url = "http://127.0.0.1:9/v1"\n'
        '[models.small]\nprovider = "local"\nid = "m"\ntier = "local"\n'
        "input_price = 0\noutput_price = 0\n"  # (else prices are looked up in genai-prices)
    )
    decision, modules = route_probe(tmp_path, tmp_path / "forge.toml")
    assert decision["route"]["model"] == "small"
    providers = [m for m in modules if m.startswith("forge.providers.")]
    assert providers == ["forge.providers.accounting"]
    assert not [m for m in modules if m.split(".")[0] in ("httpx", "anyio", "networkx")]


def route_probe(tmp_path: Path, config: Path) -> tuple[dict[str, Any], list[str]]:
    """`forge route --json` on one task: its decision and the modules it loaded."""
    args = ["route", "--json", "-c", str(config), "fix the typo in README.md"]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={**os.environ, "FORGE_HOME": str(tmp_path / "home")},
    )
    decision, modules = done.stdout.rsplit("MODULES=", 1)
    return json.loads(decision), json.loads(modules)


def test_prices_left_to_genai_prices_are_looked_up_once_per_copy_of_its_data(
    tmp_path: Path,
) -> None:
    """A model without prices in forge.toml is priced by genai-prices, whose data takes longer
    to load than the rest of `forge route`: its answer is kept in FORGE_HOME and used while
    the same copy of the library is installed, then asked again."""
    config = tmp_path / "forge.toml"
    config.write_text(
        '[providers.openai]\nbase_url = "https://api.openai.com/v1"\n'
        '[models.mini]\nprovider = "openai"\nid = "gpt-4o-mini"\ntier = "cheap"\n'
    )
    first, modules = route_probe(tmp_path, config)
    price = first["estimate"]["first_attempt_usd"]
    assert price is not None and Decimal(price) > 0
    assert "genai_prices" in modules

    again, modules = route_probe(tmp_path, config)
    assert again["estimate"]["first_attempt_usd"] == price
    assert "genai_prices" not in modules

    # What is used is what the cache says: ten times the input price, ten times the estimate...
    cache = tmp_path / "home" / "cache" / "library-prices.json"
    kept = json.loads(cache.read_text())
    (entry,) = kept["prices"].values()
    kept["prices"] = {k: [str(Decimal(v) * 10) for v in entry] for k in kept["prices"]}
    cache.write_text(json.dumps(kept))
    tenfold, _ = route_probe(tmp_path, config)
    assert Decimal(tenfold["estimate"]["first_attempt_usd"]) == Decimal(price) * 10
    # ...until another copy of the library's data is installed: then it is asked again.
    cache.write_text(json.dumps({**kept, "library": "another copy"}))
    asked, modules = route_probe(tmp_path, config)
    assert asked["estimate"]["first_attempt_usd"] == price
    assert "genai_prices" in modules
    # A damaged cache is not believed: a negative price, then bytes that are not JSON.
    kept = json.loads(cache.read_text())
    for damaged in (["-1", "5"], ["1e999999", "5"], [0.15, 0.6], ["NaN", "5"]):
        cache.write_text(json.dumps({**kept, "prices": {k: damaged for k in kept["prices"]}}))
        assert route_probe(tmp_path, config)[0]["estimate"]["first_attempt_usd"] == price
    cache.write_bytes(b"\x00{not json")
    assert route_probe(tmp_path, config)[0]["estimate"]["first_attempt_usd"] == price


def test_prices_the_library_dates_or_varies_by_the_hour_are_asked_every_time(
    tmp_path: Path,
) -> None:
    """DeepSeek's prices change with the time of day in genai-prices' data: an answer kept
    from one hour would price the calls of another, so it is not kept."""
    from genai_prices import Usage, calc_price

    asked = calc_price(
        Usage(input_tokens=1), "deepseek-chat", provider_api_url="https://api.deepseek.com/v1"
    )
    assert isinstance(asked.model.prices, list), "the premise: prices under constraints"
    config = tmp_path / "forge.toml"
    config.write_text(
        '[providers.deepseek]\nbase_url = "https://api.deepseek.com/v1"\n'
        '[models.chat]\nprovider = "deepseek"\nid = "deepseek-chat"\ntier = "cheap"\n'
    )
    for _ in range(2):
        decision, modules = route_probe(tmp_path, config)
        assert Decimal(decision["estimate"]["first_attempt_usd"]) > 0
        assert "genai_prices" in modules
    cache = tmp_path / "home" / "cache" / "library-prices.json"
    assert not cache.exists() or json.loads(cache.read_text())["prices"] == {}


def test_python_dash_m_forge_matches_the_console_script() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "forge", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("forge ")


def test_the_command_list_shows_each_command_s_own_summary() -> None:
    import importlib
    import inspect

    from forge.cli import COMMANDS

    for name, (module, function, summary) in COMMANDS.items():
        doc = inspect.getdoc(getattr(importlib.import_module(module), function)) or ""
        assert doc.splitlines()[0] == summary, name


def test_a_lazily_loaded_command_still_reports_errors_with_its_exit_code(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "forge", "validate", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("forge: error: nothing to validate")


FIRST_IMPORTS = """
import importlib, pkgutil, sys
import forge
names = [m.name for m in pkgutil.walk_packages(forge.__path__, "forge.")
         if m.name != "forge.__main__"]
failed = []
for name in names:
    for loaded in [m for m in sys.modules if m == "forge" or m.startswith("forge.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except ImportError as exc:
        failed.append(f"{name}: {exc!r}")
print(len(names))
print("\\n".join(failed))
"""


def test_every_forge_module_can_be_the_first_one_imported() -> None:
    """The tests start most commands from a process that has imported all of forge already
    (tests/warm_forge.py): an import cycle that only a cold start meets would hide there. Here
    each module is the first of forge's to be imported, as in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", FIRST_IMPORTS], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    count, *failed = done.stdout.split("\n")
    assert int(count) > 100
    assert [line for line in failed if line] == []
