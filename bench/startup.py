"""How fast `forge --help` starts, against the floor for any Typer command line.

The floor is a two-command Typer app that imports nothing else. Both are run the same number of
times, interleaved, in this one run; the ratio of the medians is what to compare across machines.

    python bench/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bytecode import compile_forge

BARE_APP = '''
import typer

app = typer.Typer()


@app.command()
def hello(name: str = "world") -> None:
    """Say hello."""
    print(f"hello {name}")


@app.command()
def bye() -> None:
    """Say goodbye."""
    print("bye")


if __name__ == "__main__":
    app()
'''


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = max(10, parser.parse_args().runs)
    compile_forge()  # forge's bytecode, as an installed forge has it
    with tempfile.TemporaryDirectory() as folder:
        bare = Path(folder) / "bare.py"
        bare.write_text(BARE_APP)
        commands = {
            "forge --help": [sys.executable, "-m", "forge", "--help"],
            "bare Typer app --help": [sys.executable, str(bare), "--help"],
        }
        for command in commands.values():  # warm the file cache and .pyc files
            timed(command)
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, command in commands.items():
                samples[name].append(timed(command))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    for name, value in medians.items():
        print(f"{name:<24} median {value * 1000:7.1f} ms over {runs} runs")
    ratio = medians["forge --help"] / medians["bare Typer app --help"]
    print(f"ratio forge / bare Typer: {ratio:.2f}x (target: at most 1.30x)")


if __name__ == "__main__":
    main()
