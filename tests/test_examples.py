"""The README's walkthrough of the example milestones, as a user would follow it.

`forge init` finds the "Ollama" models (forge's fake provider speaking Ollama's discovery API on
127.0.0.1) and writes forge.toml; `forge run-milestone` then runs each example's milestone with
answers scripted per task, validated by the real tools: a wrong first answer is caught (by
pytest, by cargo's doc-tests) and the task tried again.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from forge.testing.fake_provider import FakeProvider, Reply
from tests.conftest import run_forge
from tests.test_run_milestone import git

ROOT = Path(__file__).resolve().parents[1]
MODEL = "qwen2.5-coder:7b"  # what the README pulls


def example(name: str, tmp_path: Path) -> Path:
    """`cp -r examples/NAME /tmp/...; git init; git add -A; git commit`, as the README says."""
    project = tmp_path / name
    shutil.copytree(ROOT / "examples" / name, project, ignore=shutil.ignore_patterns("target"))
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "start")
    return project


def init_with_ollama(project: Path, fake: FakeProvider) -> None:
    """`forge init` with Ollama serving the model: forge.toml gets it as a local model."""
    host = fake.url.removeprefix("http://")
    done = run_forge("init", cwd=project, env={"OLLAMA_HOST": host})
    assert done.returncode == 0, done.stdout + done.stderr
    assert f'id = "{MODEL}"' in (project / "forge.toml").read_text(encoding="utf-8")


def run_milestone(project: Path, milestone: str) -> dict[str, Any]:
    done = run_forge("run-milestone", milestone, "--json", cwd=project, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def whole(path: str, language: str, text: str) -> str:
    """An answer in the whole-file format local models are taught."""
    return f"{path}\n```{language}\n{text}```\n"


def trailers(project: Path, branch: str) -> list[str]:
    text = git(project, "log", "--format=%(trailers:key=Forge-Task,valueonly)", f"main..{branch}")
    return sorted(line.strip() for line in text.splitlines() if line.strip())


# -- the Python package --------------------------------------------------------------------------

SHAPES_START = '''\
"""Areas of simple shapes: a small package to try `forge validate` on."""

import math


'''
TRIANGLE = """\
def triangle_area(base: float, height: float) -> float:
    return base * height / 2


"""
CIRCLE_RECTANGLE = """\
def circle_area(radius: float) -> float:
    return math.pi * radius * radius


def rectangle_area(width: float, height: float) -> float:
    return width * height
"""
SQUARE = """\


def square_area(side: float) -> float:
    return rectangle_area(side, side)
"""
TESTS_START = """\
import math

from shapes import circle_area, rectangle_area


"""
TRIANGLE_TEST = """\
def test_triangle() -> None:
    from shapes import triangle_area

    assert triangle_area(4.0, 3.0) == 6.0


"""
CIRCLE_RECTANGLE_TESTS = """\
def test_circle() -> None:
    assert math.isclose(circle_area(1.0), math.pi)


def test_rectangle() -> None:
    assert rectangle_area(2.0, 3.0) == 6.0
"""
SQUARE_TEST = """\


def test_square() -> None:
    from shapes import square_area

    assert square_area(3.0) == 9.0
"""
DOCUMENTED = '''\
"""Areas of simple shapes: a small package to try `forge validate` on."""

import math


def triangle_area(base: float, height: float) -> float:
    """The area of a triangle: half its base times its height."""
    return base * height / 2


def circle_area(radius: float) -> float:
    """The area of a circle of the given radius."""
    return math.pi * radius * radius


def rectangle_area(width: float, height: float) -> float:
    """The area of a rectangle: width times height."""
    return width * height


def square_area(side: float) -> float:
    """The area of a square: a rectangle with equal sides."""
    return rectangle_area(side, side)
'''


def test_the_python_package_milestone_runs_as_the_readme_walks_through_it(
    fake: FakeProvider, tmp_path: Path
) -> None:
    """triangle and square both rewrite the same two files on the base, side by side; their
    changes merge, and the docstrings task sees both."""
    project = example("python-package", tmp_path)

    def triangle(function: str) -> Reply:
        tests = TESTS_START + TRIANGLE_TEST + CIRCLE_RECTANGLE_TESTS
        return Reply(
            text=whole("shapes/__init__.py", "python", SHAPES_START + function + CIRCLE_RECTANGLE)
            + whole("tests/test_shapes.py", "python", tests),
            when="Add triangle_area(base, height)",
        )

    fake.script(
        MODEL,
        triangle(TRIANGLE.replace("base * height / 2", "base * height")),  # wrong first
        triangle(TRIANGLE),
        Reply(
            text=whole("shapes/__init__.py", "python", SHAPES_START + CIRCLE_RECTANGLE + SQUARE)
            + whole(
                "tests/test_shapes.py", "python", TESTS_START + CIRCLE_RECTANGLE_TESTS + SQUARE_TEST
            ),
            when="Add square_area(side)",
        ),
        Reply(text=whole("shapes/__init__.py", "python", DOCUMENTED), when="one-line docstring"),
    )
    init_with_ollama(project, fake)

    report = run_milestone(project, "milestone.toml")

    assert [(t["id"], t["state"], t["tier"]) for t in report["tasks"]] == [
        ("triangle", "done", "local"),
        ("square", "done", "local"),
        ("docstrings", "done", "local"),
    ]
    attempts = [a["outcome"] for a in report["tasks"][0]["attempts"]]
    assert attempts == ["failed", "passed"], "pytest caught the first triangle_area"
    retry = [r for r in fake.requests_for(MODEL) if "Add triangle_area" in _prompt(r)][1]
    assert "test_triangle" in _prompt(retry) and "assert 12.0 == 6.0" in _prompt(retry)
    branch = report["branch"]
    assert trailers(project, branch) == ["docstrings", "square", "triangle"]
    assert git(project, "show", f"{branch}:shapes/__init__.py") == DOCUMENTED
    tests = git(project, "show", f"{branch}:tests/test_shapes.py")
    assert "def test_triangle()" in tests and "def test_square()" in tests
    docstrings = next(r for r in fake.requests_for(MODEL) if "one-line docstring" in _prompt(r))
    assert "def square_area" in _prompt(docstrings) and "def triangle_area" in _prompt(docstrings)
    assert git(project, "status", "--porcelain") == "?? forge.toml\n"  # the user's tree as it was


def _prompt(request: Any) -> str:
    return "\n".join(m["content"] for m in request.body["messages"])


def test_the_readme_shows_the_dry_run_forge_prints(tmp_path: Path) -> None:
    """The README's `--dry-run` example is the output of the command it shows."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = (
        "forge run-milestone milestone.toml --dry-run -c $OLDPWD/examples/quickstart/forge.toml"
    )
    assert command in readme
    shown = re.search(r"```\n(level 1 .*?)```", readme[readme.index(command) :], re.DOTALL)
    assert shown is not None
    project = example("python-package", tmp_path)
    config = str(ROOT / "examples" / "quickstart" / "forge.toml")

    done = run_forge("run-milestone", "milestone.toml", "--dry-run", "-c", config, cwd=project)

    assert done.returncode == 0, done.stderr
    assert done.stdout == shown.group(1)


# -- the Rust crate ------------------------------------------------------------------------------

LIB_START = """\
//! Temperature conversions: a small crate to try `forge validate` on.

/// Degrees Celsius to degrees Fahrenheit.
///
/// ```
/// assert_eq!(temperature::to_fahrenheit(100.0), 212.0);
/// ```
pub fn to_fahrenheit(celsius: f64) -> f64 {
    celsius * 9.0 / 5.0 + 32.0
}

/// Degrees Fahrenheit to degrees Celsius.
pub fn to_celsius(fahrenheit: f64) -> f64 {
    (fahrenheit - 32.0) * 5.0 / 9.0
}
"""
KELVIN = """
/// Degrees Celsius to kelvins.
///
/// ```
/// assert_eq!(temperature::to_kelvin(0.0), 273.15);
/// ```
pub fn to_kelvin(celsius: f64) -> f64 {
    celsius + 273.15
}

/// Kelvins to degrees Celsius.
pub fn from_kelvin(kelvin: f64) -> f64 {
    kelvin - 273.15
}
"""
RANKINE = """
/// Degrees Celsius to degrees Rankine.
pub fn to_rankine(celsius: f64) -> f64 {
    to_kelvin(celsius) * 9.0 / 5.0
}
"""
LIB_TESTS = """
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freezing_point() {
        assert_eq!(to_fahrenheit(0.0), 32.0);
    }

    #[test]
    fn absolute_zero() {
        assert_eq!(from_kelvin(0.0), -273.15);
    }
}
"""
ROUND_TRIP = """\
use temperature::{from_kelvin, to_celsius, to_fahrenheit, to_kelvin};

#[test]
fn round_trip() {
    let celsius = 37.0;
    assert!((to_celsius(to_fahrenheit(celsius)) - celsius).abs() < 1e-9);
}

#[test]
fn kelvin_round_trip() {
    let celsius = -40.0;
    assert!((from_kelvin(to_kelvin(celsius)) - celsius).abs() < 1e-9);
}
"""


def test_the_rust_crate_milestone_runs_as_the_readme_walks_through_it(
    fake: FakeProvider, tmp_path: Path
) -> None:
    """kelvin first, then rankine and round-trip side by side, each checked by cargo check,
    clippy and cargo test (doc-tests included)."""
    project = example("rust-crate", tmp_path)
    wrong = KELVIN.replace("celsius + 273.15", "celsius + 273.0")
    fake.script(
        MODEL,
        Reply(
            text=whole("src/lib.rs", "rust", LIB_START + wrong + LIB_TESTS),
            when="Add to_kelvin and from_kelvin",
        ),
        Reply(
            text=whole("src/lib.rs", "rust", LIB_START + KELVIN + LIB_TESTS),
            when="Add to_kelvin and from_kelvin",
        ),
        Reply(
            text=whole("src/lib.rs", "rust", LIB_START + KELVIN + RANKINE + LIB_TESTS),
            when="Add to_rankine",
        ),
        Reply(text=whole("tests/round_trip.rs", "rust", ROUND_TRIP), when="Cover Kelvin"),
    )
    init_with_ollama(project, fake)

    report = run_milestone(project, "milestone.md")

    assert [(t["id"], t["state"]) for t in report["tasks"]] == [
        ("kelvin", "done"),
        ("rankine", "done"),
        ("round-trip", "done"),
    ]
    attempts = [a["outcome"] for a in report["tasks"][0]["attempts"]]
    assert attempts == ["failed", "passed"], "cargo's doc-test caught the first to_kelvin"
    retry = [r for r in fake.requests_for(MODEL) if "Add to_kelvin" in _prompt(r)][1]
    assert "src/lib.rs - to_kelvin (line 19) failed" in _prompt(retry)  # the doc-test
    assert "left: 273.0" in _prompt(retry)
    branch = report["branch"]
    assert trailers(project, branch) == ["kelvin", "rankine", "round-trip"]
    assert git(project, "show", f"{branch}:src/lib.rs") == LIB_START + KELVIN + RANKINE + LIB_TESTS
    assert git(project, "show", f"{branch}:tests/round_trip.rs") == ROUND_TRIP
    rankine = next(r for r in fake.requests_for(MODEL) if "Add to_rankine" in _prompt(r))
    assert "pub fn to_kelvin" in _prompt(rankine)  # it started from kelvin's merged work
