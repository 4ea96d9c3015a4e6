"""How well and how fast `forge route` decides, in one run.

Accuracy, on the training issues (`--data`, ../shared/data/routing/), by cross-validation grouped
by repository (each project's issues scored by a model fitted without them; needs numpy, the
`train` extra): AUROC of quick fixes (< 15 min) against hour-plus work, and Spearman with the four
difficulty buckets, for the learned score, the hand score alone and the text's length.

Speed, measured in this one run:
  - in-process: tasks per second over analysis + decision (the library path, no JSON), on the
    short labelled cases and on the issue-length training texts;
  - batch: `forge route --batch FILE` end to end, process start-up included, tasks per second,
    on short tasks and on the training texts (target: at least 2,000/s on issue-length texts
    with 2 cores);
  - one task: the median time of `forge route "..."` against the median of `forge --help`,
    interleaved, as a ratio (target: at most 1.5x); then again with the paid models' prices
    left to genai-prices (none in the file), as many configs have them.

  - with `--baseline DIR` (another checkout of forge, e.g. `git worktree add /tmp/base main`):
    `forge route --batch` on the issue texts from that checkout and from this one, alternated
    three times, best of each, as a ratio (the machine's load moves both alike).

    python bench/route.py [--tasks 20000] [--runs 15] [--data DIR] [--baseline DIR]
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
DATA = ROOT.parent / "shared" / "data" / "routing"
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
# The same fleet with its paid models priced by genai-prices (no prices in the file), as a config
# that leaves prices to the library has it: forge keeps the library's answers in FORGE_HOME.
LIBRARY_PRICED = (
    CONFIG.replace("input_price = 0.27\noutput_price = 1.1\n", "")
    .replace("input_price = 3\noutput_price = 15\n", "")
    .replace('id = "deepseek-chat"', 'id = "gpt-4o-mini"')
    .replace('id = "claude-sonnet"', 'id = "gpt-4o"')
    .replace("https://cloud.example/v1", "https://api.openai.com/v1")
)
assert "price" not in LIBRARY_PRICED.split("[models.deepseek]")[1], "the paid models are unpriced"
ONE_TASK = "fix the race condition in src/pool.rs that deadlocks under load across every worker"


def tasks(count: int) -> list[dict[str, str]]:
    texts = [json.loads(line)["text"] for line in CASES.read_text().splitlines() if line.strip()]
    rnd = random.Random(20)
    return [
        {"id": f"t{n}", "text": f"{texts[n % len(texts)]}{rnd.choice(SUFFIXES)} (#{n})"}
        for n in range(count)
    ]


def issue_tasks(data: Path, count: int) -> list[dict[str, str]]:
    """The training file's issue texts, repeated (with a task number) up to `count` lines."""
    lines = (data / "swebench_difficulty_train.jsonl").read_text().splitlines()
    texts = [json.loads(line)["problem_statement"] for line in lines if line.strip()]
    return [{"id": f"i{n}", "text": f"{texts[n % len(texts)]}\n(#{n})"} for n in range(count)]


def accuracy(data: Path) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    import train_router as train

    rows = train.load_rows(data)
    learned = train.grouped_predictions(rows)
    scores = {
        "learned score": learned,
        "hand score alone": [r.features["hand_score"] for r in rows],
        "text length": [float(len(r.text)) for r in rows],
    }
    quick = sum(r.bucket == 0 for r in rows)
    hours = sum(r.bucket >= 2 for r in rows)
    print(
        f"accuracy on {len(rows)} issues of {len({r.repo for r in rows})} repositories, "
        f"leave-one-repository-out ({quick} quick fixes against {hours} hour-plus):"
    )
    for name, values in scores.items():
        auc, rho = train.figures(rows, values)
        print(f"  {name:<17} AUROC {auc:.3f}   Spearman with the buckets {rho:.3f}")
    auc, _ = train.figures(rows, learned)
    base, _ = train.figures(rows, scores["text length"])
    print(f"  learned - length: {auc - base:+.3f} AUROC (target: AUROC >= 0.72, >= +0.05)")


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
    subprocess.run(  # warm the file cache and .pyc files
        [sys.executable, "-m", "forge", "--help"], check=True, capture_output=True, env=env
    )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "forge", "route", "-c", str(config), "--batch", str(batch_file)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=config.parent,  # outside any repository: the routing itself, no git look-ups
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
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--baseline", type=Path, help="another forge checkout to compare")
    args = parser.parse_args()
    count = max(3_000, args.tasks)
    runs = max(10, args.runs)
    batch = tasks(count)
    issues = issue_tasks(args.data, count // 2)
    accuracy(args.data)
    compile_forge()  # forge's bytecode, as an installed forge has it
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        config = home / "forge.toml"
        config.write_text(CONFIG)
        batch_file = home / "tasks.jsonl"
        batch_file.write_text("".join(json.dumps(item) + "\n" for item in batch))
        env = {**os.environ, "FORGE_HOME": str(home / "state"), "PYTHONPATH": str(ROOT)}
        issue_file = home / "issues.jsonl"
        issue_file.write_text("".join(json.dumps(item) + "\n" for item in issues))
        cpus = os.cpu_count()
        rate = in_process(batch, config)
        print(f"in-process, short tasks:        {rate:8,.0f} tasks/s over {count:,} tasks")
        rate = in_process(issues, config)
        print(f"in-process, issue texts:        {rate:8,.0f} tasks/s over {len(issues):,} tasks")
        batch_rate = end_to_end(batch_file, config, count, env)
        print(
            f"forge route --batch, short tasks: {batch_rate:8,.0f} tasks/s over {count:,} "
            f"tasks, end to end ({cpus} CPUs)"
        )
        batch_rate = end_to_end(issue_file, config, len(issues), env)
        chars = sum(len(item["text"]) for item in issues) // len(issues)
        print(
            f"forge route --batch, issue texts: {batch_rate:8,.0f} tasks/s over {len(issues):,} "
            f"tasks of {chars:,} characters on average, end to end (target: at least 2,000/s "
            f"on 2 CPUs; {cpus} CPUs)"
        )
        if args.baseline is not None:
            import compileall

            compileall.compile_dir(args.baseline / "forge", quiet=1)  # as compile_forge()
            base_env = {**env, "PYTHONPATH": str(args.baseline.resolve())}
            rates: dict[str, list[float]] = {"baseline": [], "this tree": []}
            for _ in range(3):
                for name, use in (("baseline", base_env), ("this tree", env)):
                    rates[name].append(end_to_end(issue_file, config, len(issues), use))
            base, this = max(rates["baseline"]), max(rates["this tree"])
            print(
                f"forge route --batch, issue texts, best of 3 alternated: baseline "
                f"{base:,.0f}/s, this tree {this:,.0f}/s, ratio {this / base:.2f}x"
            )
        route, help_ = one_task_ratio(config, runs, env)
        library = home / "library-priced.toml"
        library.write_text(LIBRARY_PRICED)
        priced, priced_help = one_task_ratio(library, runs, env)
    print(f'forge route "..."  median {route * 1000:7.1f} ms over {runs} runs')
    print(f"forge --help       median {help_ * 1000:7.1f} ms over {runs} runs")
    print(f"ratio route / --help: {route / help_:.2f}x (target: at most 1.5x)")
    print(
        f"with prices left to genai-prices: route {priced * 1000:.1f} ms, --help "
        f"{priced_help * 1000:.1f} ms, ratio {priced / priced_help:.2f}x"
    )


if __name__ == "__main__":
    main()
