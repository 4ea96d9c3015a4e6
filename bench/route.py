"""How fast `forge route` decides: in-process, as a batch, and as one command against --help.

Builds a batch of varied tasks from the labelled cases (each case text perturbed: a different
suffix, a task number, sometimes an extra clause, so no two lines are the same text), then
measures, in this one run:
  - in-process: tasks per second over analysis + decision (the library path, no JSON);
  - batch: `forge route --batch FILE` end to end, process start-up included, tasks per second
    (target: at least 5,000/s);
  - one task: the median time of `forge route "..."` against the median of `forge --help`,
    interleaved, as a ratio.

    python bench/route.py [--tasks 20000] [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bytecode import compile_forge

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "tests" / "data" / "route_cases.jsonl"
SUFFIXES = (
    "",
    " please",
    " before Friday",
    " (see the ticket)",
    " for the next release",
    ", and keep the change small",
    ". Then update the CHANGELOG.",
    " in the api service",
)
CONFIG = """
[providers.local]
base_url = "http://127.0.0.1:11434/v1"

[providers.cloud]
base_url = "https://cloud.example/v1"
requests_per_day = 1000

[models.small]
provider = "local"
id = "qwen2.5-coder"
tier = "local"
input_price = 0
output_price = 0

[models.groq-llama]
provider = "cloud"
id = "llama-3.3-70b"
tier = "free"
input_price = 0
output_price = 0

[models.deepseek]
provider = "cloud"
id = "deepseek-chat"
tier = "cheap"
input_price = 0.27
output_price = 1.1

[models.sonnet]
provider = "cloud"
id = "claude-sonnet"
tier = "premium"
input_price = 3
output_price = 15
"""
ONE_TASK = "fix the race condition in src/pool.rs that deadlocks under load across every worker"


def tasks(count: int) -> list[dict[str, str]]:
    texts = [json.loads(line)["text"] for line in CASES.read_text().splitlines() if line.strip()]
    rnd = random.Random(20)
    return [
        {"id": f"t{n}", "text": f"{texts[n % len(texts)]}{rnd.choice(SUFFIXES)} (#{n})"}
        for n in range(count)
    ]


def in_process(batch: list[dict[str, str]], config: Path) -> float:
    sys.path.insert(0, str(ROOT))
    from forge.config import load_config
    from forge.routing.analysis import analyse
    from forge.routing.decision import Router
    from forge.routing.fleet import load_fleet

    router = Router(load_fleet(load_config(config).config, None, str(ROOT)))
    started = time.perf_counter()
    for item in batch:
        router.decide(analyse(item["text"]))
    return len(batch) / (time.perf_counter() - started)


def end_to_end(batch_file: Path, config: Path, count: int, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "forge", "route", "-c", str(config), "--batch", str(batch_file)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    elapsed = time.perf_counter() - started
    assert done.stdout.count("\n") == count, "one output line per task"
    return count / elapsed


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    return time.perf_counter() - started


def one_task_ratio(config: Path, runs: int, env: dict[str, str]) -> tuple[float, float]:
    commands = {
        "route": [sys.executable, "-m", "forge", "route", "-c", str(config), ONE_TASK],
        "help": [sys.executable, "-m", "forge", "--help"],
    }
    for command in commands.values():  # warm the file cache and .pyc files
        timed(command, env)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            samples[name].append(timed(command, env))
    return statistics.median(samples["route"]), statistics.median(samples["help"])


def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    count = max(3_000, args.tasks)
    runs = max(10, args.runs)
    batch = tasks(count)
    compile_forge()  # forge's bytecode, as an installed forge has it
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        config = home / "forge.toml"
        config.write_text(CONFIG)
        batch_file = home / "tasks.jsonl"
        batch_file.write_text("".join(json.dumps(item) + "\n" for item in batch))
        env = {**os.environ, "FORGE_HOME": str(home / "state"), "PYTHONPATH": str(ROOT)}
        rate = in_process(batch, config)
        print(f"in-process analysis + decision: {rate:8,.0f} tasks/s over {count:,} tasks")
        batch_rate = end_to_end(batch_file, config, count, env)
        print(
            f"forge route --batch, end to end: {batch_rate:8,.0f} tasks/s over {count:,} tasks "
            f"(target: at least 5,000/s; {os.cpu_count()} CPUs)"
        )
        route, help_ = one_task_ratio(config, runs, env)
    print(f'forge route "..."  median {route * 1000:7.1f} ms over {runs} runs')
    print(f"forge --help       median {help_ * 1000:7.1f} ms over {runs} runs")
    print(f"ratio route / --help: {route / help_:.2f}x")


if __name__ == "__main__":
    main()
