"""`forge validate` against running the same checks by hand, and a cache hit against a cold run.

Builds a repository with a Rust crate and a Python package of a modest size (48 Rust modules
with unit tests, 12 doc-tests, two integration test files; 48 Python modules with their tests),
then measures, interleaved, in this one run:
  - by hand: cargo check, cargo clippy, cargo test, ruff check, pytest, one after another;
  - cold forge: `forge validate --no-cache` (which runs the same tools, in stages and in parallel),
    both as a CI job runs it (`CI=true`: forge turns cargo's incremental compilation off, as a
    build from cold gains nothing from it) and as a developer at a terminal does;
  - cache hit: `forge validate` on the unchanged tree.
Every cold measurement starts from an empty cargo target folder. forge's bytecode is compiled
first, as an installed forge's is.

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

from bytecode import compile_forge

from forge.validation.rust import TARGETS  # what cargo test builds by default, as forge checks

MODULES = 48

RUST_MODULE = """\
/// Scales `x` by {n} and adds one.
{doc}pub fn scale(x: u64) -> u64 {{
    x * {n} + 1
}}

/// Sums the first `count` multiples of {n}.
pub fn multiples(count: u64) -> u64 {{
    (1..=count).map(|i| i * {n}).sum()
}}

#[cfg(test)]
mod tests {{
    use super::*;

    #[test]
    fn scales() {{
        assert_eq!(scale(2), 2 * {n} + 1);
    }}

    #[test]
    fn sums() {{
        assert_eq!(multiples(3), 6 * {n});
    }}
}}
"""

DOC_TEST = """\
///
/// ```
/// assert_eq!(inventory::m{n}::scale({n}), {n} * {n} + 1);
/// ```
"""

PY_MODULE = """\
def scale(x: int) -> int:
    return x * {n} + 1


def multiples(count: int) -> int:
    return sum(i * {n} for i in range(1, count + 1))
"""

PY_TEST = """\
import pytest

from inventory.m{n} import multiples, scale


def test_scale() -> None:
    assert scale(2) == 2 * {n} + 1


@pytest.mark.parametrize("count", [0, 1, 5])
def test_multiples(count: int) -> None:
    assert multiples(count) == {n} * count * (count + 1) // 2
"""


def make_repo(root: Path) -> None:
    files = {
        "Cargo.toml": '[package]\nname = "inventory"\nversion = "0.1.0"\nedition = "2021"\n',
        "src/lib.rs": "".join(f"pub mod m{n};\n" for n in range(1, MODULES + 1)),
        "py/pyproject.toml": '[project]\nname = "inventory"\nversion = "0.1.0"\n',
        "py/inventory/__init__.py": "",
        ".gitignore": "target/\n",
    }
    for n in range(1, MODULES + 1):
        # A doc-test in one module out of four: each one is compiled as a program of its own.
        doc = DOC_TEST.format(n=n) if n % 4 == 0 else ""
        files[f"src/m{n}.rs"] = RUST_MODULE.format(n=n, doc=doc)
        files[f"py/inventory/m{n}.py"] = PY_MODULE.format(n=n)
        files[f"py/tests/test_m{n}.py"] = PY_TEST.format(n=n)
    for part in ("a", "b"):
        calls = "\n".join(
            f"#[test]\nfn scale_{n}() {{\n    assert!(inventory::m{n}::scale(1) > 1);\n}}\n"
            for n in range(1, MODULES + 1)
        )
        files[f"tests/integration_{part}.rs"] = calls
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for args in (["init", "-q"], ["add", "-A"]):
        subprocess.run(["git", *args], cwd=root, check=True)


def by_hand(root: Path) -> None:
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    for command, cwd in (
        (["cargo", "check", *TARGETS, "--message-format=json"], root),
        (["cargo", "clippy", *TARGETS, "--message-format=json"], root),
        (["cargo", "test", "--message-format=json"], root),
        (["ruff", "check", "--output-format=json", "."], root / "py"),
        ([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], root / "py"),
    ):
        subprocess.run(command, cwd=cwd, check=True, **quiet)  # type: ignore[call-overload]


def forge(root: Path, *args: str, ci: bool = False) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "forge", "validate", str(root), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "CI": "true"} if ci else None,
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
        for name in ("CI", "CARGO_INCREMENTAL"):  # a terminal's environment, and cargo's defaults
            os.environ.pop(name, None)
        make_repo(root)

        def clean() -> None:
            shutil.rmtree(root / "target", ignore_errors=True)

        compile_forge()  # forge's bytecode, as an installed forge has it
        forge(root)  # warm the OS file cache and the tool version probes
        hand, cold, cold_ci, hit = [], [], [], []
        for _ in range(rounds):
            hand.append(timed(lambda: by_hand(root), clean))
            cold_ci.append(timed(lambda: forge(root, "--no-cache", ci=True), clean))
            cold.append(timed(lambda: forge(root, "--no-cache"), clean))
            for _ in range(3):
                hit.append(timed(lambda: forge(root)))
    medians = {
        "by hand, one after another": statistics.median(hand),
        "forge validate, cold, in CI": statistics.median(cold_ci),
        "forge validate, cold": statistics.median(cold),
        "forge validate, cache hit": statistics.median(hit),
    }
    for name, value in medians.items():
        print(f"{name:<32} median {value:6.2f} s")
    hand_median = medians["by hand, one after another"]
    ci_ratio = medians["forge validate, cold, in CI"] / hand_median
    cold_ratio = medians["forge validate, cold"] / hand_median
    hit_ratio = medians["forge validate, cache hit"] / medians["forge validate, cold"]
    print(f"cold forge in CI / by hand: {ci_ratio:.2f}x (target: at most 0.80x)")
    print(f"cold forge at a terminal / by hand: {cold_ratio:.2f}x")
    print(f"cache hit / cold forge: {hit_ratio:.3f}x (target: at most 0.05x)")


if __name__ == "__main__":
    main()
