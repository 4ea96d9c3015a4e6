"""`forge validate` against running the same checks by hand, and a cache hit against a cold run.

Builds a repository with a Rust crate and a Python package (copies of examples/), then measures,
interleaved, in this one run:
  - by hand: cargo check, cargo clippy, cargo test, ruff check, pytest, one after another;
  - cold forge: `forge validate --no-cache` (which runs the same tools, in stages and in parallel);
  - cache hit: `forge validate` on the unchanged tree.
Every cold measurement starts from an empty cargo target folder.

    python bench/validate.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def make_repo(root: Path) -> None:
    shutil.copytree(EXAMPLES / "rust-crate", root, dirs_exist_ok=True)
    shutil.copytree(EXAMPLES / "python-package", root / "py", dirs_exist_ok=True)
    # No mypy for either side: keep the comparison to the five commands below.
    pyproject = root / "py" / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("[tool.mypy]\nstrict = true\n", ""))
    (root / ".gitignore").write_text("target/\n")
    for args in (["init", "-q"], ["add", "-A"]):
        subprocess.run(["git", *args], cwd=root, check=True)


def by_hand(root: Path) -> None:
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    for command, cwd in (
        (["cargo", "check", "--all-targets", "--message-format=json"], root),
        (["cargo", "clippy", "--all-targets", "--message-format=json"], root),
        (["cargo", "test", "--message-format=json"], root),
        (["ruff", "check", "--output-format=json", "."], root / "py"),
        ([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], root / "py"),
    ):
        subprocess.run(command, cwd=cwd, check=True, **quiet)  # type: ignore[call-overload]


def forge(root: Path, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "forge", "validate", str(root), *args],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"forge validate failed:\n{done.stdout}\n{done.stderr}")


def timed(action: Callable[[], None], before: Callable[[], None] | None = None) -> float:
    if before is not None:
        before()
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = max(1, parser.parse_args().rounds)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "repo"
        os.environ["FORGE_HOME"] = str(Path(folder) / "forge-home")
        make_repo(root)

        def clean() -> None:
            shutil.rmtree(root / "target", ignore_errors=True)

        forge(root)  # warm the OS file cache, the tool version probes, Python's bytecode
        hand, cold, hit = [], [], []
        for _ in range(rounds):
            hand.append(timed(lambda: by_hand(root), clean))
            cold.append(timed(lambda: forge(root, "--no-cache"), clean))
            for _ in range(3):
                hit.append(timed(lambda: forge(root)))
    medians = {
        "by hand, one after another": statistics.median(hand),
        "forge validate, cold": statistics.median(cold),
        "forge validate, cache hit": statistics.median(hit),
    }
    for name, value in medians.items():
        print(f"{name:<28} median {value:6.2f} s")
    cold_ratio = medians["forge validate, cold"] / medians["by hand, one after another"]
    hit_ratio = medians["forge validate, cache hit"] / medians["forge validate, cold"]
    print(f"cold forge / by hand: {cold_ratio:.2f}x (target: at most 0.80x)")
    print(f"cache hit / cold forge: {hit_ratio:.3f}x (target: at most 0.05x)")


if __name__ == "__main__":
    main()
