"""What `forge validate` tells its reader: code text as written, each finding once, test outcomes
as pytest counts them, a broken tool on record, and each validator's progress while it runs."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
import tomli_w

from forge.config.schema import ValidationConfig
from forge.validation.findings import reported_once
from forge.validation.runner import Options, ProgressEvent, validate
from forge.validation.types import Diagnostic, Stage, Status, ValidatorResult
from tests.conftest import TOOLCHAIN_HOMES, run_forge
from tests.test_validate_python import PACKAGE, by_name, make_repo, report

# -- the summary shows code text exactly ----------------------------------------------------------


def test_brackets_in_findings_and_failures_survive_the_summary(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "pyproject.toml": PACKAGE["pyproject.toml"] + "\n[tool.mypy]\nstrict = true\n",
            "pkg/__init__.py": (
                "def ids(values: list[int]) -> list[str]:\n    return values\n"
                "FLAG = ':bug: [bold]loud[/bold]'\n"
            ),
            "tests/test_ids.py": (
                "def test_ids() -> None:\n    assert [1, 2] == [1, 3], '[red]list[int][/]'\n"
            ),
        },
    )
    done = run_forge("validate", str(root))
    assert done.returncode == 1
    assert 'Incompatible return value type (got "list[int]", expected "list[str]")' in done.stdout
    assert "FLAG = ':bug: [bold]loud[/bold]'" in done.stdout  # the code around a finding
    assert "[red]list[int][/]" in done.stdout  # a failed test's message


# -- each finding once ----------------------------------------------------------------------------

CRATE = {
    # The empty [workspace] keeps cargo from adopting a Cargo.toml further up the temp folder.
    "Cargo.toml": '[package]\nname = "demo"\nversion = "0.1.0"\nedition = "2021"\n\n[workspace]\n',
    ".gitignore": "target/\n",
    "src/lib.rs": (
        "pub fn double(x: u32) -> u32 {\n    let unused = 1;\n    x * 2\n}\n\n"
        "#[cfg(test)]\nmod tests {\n    #[test]\n    fn doubles() {\n"
        "        assert_eq!(super::double(2), 4);\n    }\n}\n"
    ),
}


@pytest.fixture(scope="module")
def cargo_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cargo-target")


def test_a_rust_warning_from_check_clippy_and_the_test_build_is_reported_once(
    tmp_path: Path, cargo_target: Path
) -> None:
    root = make_repo(tmp_path / "crate", CRATE)
    env = {**TOOLCHAIN_HOMES, "CARGO_TARGET_DIR": str(cargo_target), "CARGO_NET_OFFLINE": "true"}

    def run(fmt: str) -> str:
        done = run_forge("validate", str(root), "--format", fmt, env=env, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr  # warnings alone pass
        return done.stdout

    document = json.loads(run("json"))
    unused = [
        (v["name"], d["file"], d["line"])
        for v in document["validators"]
        for d in v["diagnostics"]
        if d["code"] == "unused_variables"
    ]
    assert unused == [("cargo check", "src/lib.rs", 2)]
    assert document["summary"]["warnings"] == 1
    assert {v["name"]: v["status"] for v in document["validators"]} == {
        "cargo check": "passed",
        "cargo clippy": "passed",
        "cargo test": "passed",
    }

    sarif = json.loads(run("sarif"))
    rules = [r["ruleId"] for run_ in sarif["runs"] for r in run_["results"]]
    assert rules.count("unused_variables") == 1

    github = run("github").splitlines()
    assert sum("unused variable" in line for line in github if line.startswith("::")) == 1

    junit = ET.fromstring(run("junit"))
    assert junit.findall(".//failure") == [], "a passing run's warnings are not failures"
    assert junit.get("failures") == "0"
    (warning,) = [c for c in junit.iter("testcase") if "unused_variables" in (c.get("name") or "")]
    assert warning.find("properties/property[@name='severity']") is not None
    assert "unused variable" in (warning.findtext("system-out") or "")


def result(name: str, status: Status, *found: Diagnostic, project: str = ".") -> ValidatorResult:
    return ValidatorResult(name, "cargo", Stage.LINT, project, status, diagnostics=list(found))


def test_a_repeat_is_dropped_but_no_status_changes() -> None:
    warning = Diagnostic("cargo check", "warning", "unused variable: `x`", "src/lib.rs", 2, 9, "w")
    again = Diagnostic(
        "cargo clippy", "warning", warning.message, "src/lib.rs", 2, 9, "w", rendered="other"
    )
    lint = Diagnostic("cargo clippy", "warning", "needless return", "src/lib.rs", 3, 5, "c")
    as_error = Diagnostic("cargo test", "error", warning.message, "src/lib.rs", 2, 9, "w")
    check, clippy, test, other, silent = reported_once(
        [
            result("cargo check", Status.PASSED, warning),
            result("cargo clippy", Status.PASSED, again, lint),
            result("cargo test", Status.FAILED, again, as_error),
            result("cargo check", Status.PASSED, again, project="other"),
            # Failed on nothing but repeats: keeps them, so it does not fail without a reason.
            result("deny warnings", Status.FAILED, again),
        ]
    )
    assert check.diagnostics == [warning]
    assert clippy.diagnostics == [lint]
    assert test.diagnostics == [as_error] and test.status is Status.FAILED
    assert other.diagnostics == [again], "another project's findings are its own"
    assert silent.diagnostics == [again] and silent.status is Status.FAILED


# -- test outcomes as pytest counts them ----------------------------------------------------------

OUTCOMES_TESTS = """\
import unittest

import pytest


@pytest.mark.xfail(reason="known bug")
def test_xfail():
    assert False


def test_imperative_xfail():
    pytest.xfail("not yet")


@pytest.mark.xfail(reason="maybe fixed")
def test_xpass():
    pass


@pytest.mark.xfail(reason="must fail", strict=True)
def test_xpass_strict():
    pass


def test_subtests(subtests):
    for i in range(3):
        with subtests.test(msg="check", i=i):
            assert i != 1


def test_subtests_pass(subtests):
    for i in range(2):
        with subtests.test(i=i):
            assert i < 2


class Numbers(unittest.TestCase):
    def test_sub(self):
        for i in range(3):
            with self.subTest(i=i):
                self.assertNotEqual(i, 2)

    def test_plain(self):
        self.assertTrue(True)
"""

PYTEST_COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)\b")


def pytest_counts(root: Path) -> dict[str, int]:
    """The counts on pytest's own last line, run as forge runs it (-q)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    last = done.stdout.strip().splitlines()[-1]
    # "N subtests passed" is a count of its own: JUnit XML has no trace of a passed subtest.
    last = re.sub(r"\d+ subtests passed", "", last)
    counts = {
        kind.rstrip("s") if kind.startswith("error") else kind: int(n)
        for n, kind in PYTEST_COUNT.findall(last)
    }
    return {k: v for k, v in counts.items() if v}


def test_xfail_xpass_and_subtests_are_counted_as_pytest_counts_them(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {"pyproject.toml": PACKAGE["pyproject.toml"], "tests/test_outcomes.py": OUTCOMES_TESTS},
    )
    expected = pytest_counts(root)
    assert expected == {"failed": 4, "passed": 3, "xfailed": 2, "xpassed": 1}

    code, data = report(root)
    pytest_ = by_name(data)["pytest"]
    assert {k: v for k, v in pytest_["tests"].items() if v} == expected
    assert code == 1 and pytest_["status"] == "failed"  # the strict xpass and the subtests
    outcomes = {(t["name"], t["outcome"]) for t in pytest_["test_results"]}
    assert {
        ("test_xfail", "xfailed"),
        ("test_xpass", "xpassed"),
        ("test_xpass_strict", "failed"),
        ("test_subtests [check] (i=1)", "failed"),
        ("test_subtests", "failed"),
        ("test_sub", "passed"),
        ("test_sub (i=2)", "failed"),
    } <= outcomes

    summary = run_forge("validate", str(root)).stdout
    assert "tests: 3 passed, 4 failed, 2 xfailed, 1 xpassed" in summary

    junit = ET.fromstring(run_forge("validate", str(root), "--format", "junit").stdout)
    cases = {c.get("name"): c for c in junit.iter("testcase")}
    assert cases["test_xfail"].find("skipped[@type='xfailed']") is not None
    assert cases["test_xpass"].find("properties/property[@value='xpassed']") is not None
    assert cases["test_xpass"].find("failure") is None


def test_xfailed_and_xpassed_tests_do_not_fail_the_run(tmp_path: Path) -> None:
    xfails = OUTCOMES_TESTS.split('@pytest.mark.xfail(reason="must fail"')[0]
    tests = xfails.replace("import unittest\n\n", "")
    root = make_repo(
        tmp_path / "repo",
        {"pyproject.toml": PACKAGE["pyproject.toml"], "tests/test_outcomes.py": tests},
    )
    code, data = report(root)
    assert code == 0, by_name(data)["pytest"]
    assert by_name(data)["pytest"]["tests"]["xfailed"] == 2


# -- a broken tool is on record -------------------------------------------------------------------


def test_a_tool_that_broke_or_timed_out_is_in_sarif_invocations(tmp_path: Path) -> None:
    custom = [
        {"name": "not-xml", "command": "echo nonsense", "parser": "junit"},
        {"name": "slow", "command": "sleep 30", "timeout": 0.5},
    ]
    config = tmp_path / "forge.toml"
    config.write_text(tomli_w.dumps({"validation": {"custom": custom}}))
    root = make_repo(tmp_path / "repo", {"notes.txt": "a\n"})
    done = run_forge("validate", str(root), "--config", str(config), "--format", "sarif")
    assert done.returncode == 1
    runs = {r["tool"]["driver"]["name"]: r for r in json.loads(done.stdout)["runs"]}
    for tool, status, says in (
        ("not-xml", "error", "not XML"),
        ("slow", "timeout", "past its time limit"),
    ):
        (invocation,) = runs[tool]["invocations"]
        assert invocation["executionSuccessful"] is False
        assert invocation["properties"]["status"] == status
        (notification,) = invocation["toolExecutionNotifications"]
        assert notification["level"] == "error"
        assert says in notification["message"]["text"]


# -- progress while the run goes on ---------------------------------------------------------------


def test_progress_events_queue_run_and_finish_every_validator(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", PACKAGE)
    events: list[ProgressEvent] = []
    options = Options(cache_dir=tmp_path / "cache", on_event=events.append)

    first = validate(root, ValidationConfig(), options)

    names = [r.name for r in first.results]
    assert names == ["python syntax", "ruff", "pytest"]
    states = [(e.validator, e.state) for e in events]
    assert states[:3] == [(name, "queued") for name in names]
    for name in names:
        assert [s for v, s in states if v == name] == ["queued", "running", "done"]
    done = {e.validator: e.result for e in events if e.state == "done"}
    assert {n: r.status if r else None for n, r in done.items()} == {
        r.name: r.status for r in first.results
    }
    assert {e.project for e in events} == {"."}

    events.clear()
    validate(root, ValidationConfig(), options)  # answered from the cache: never running
    assert Counter(e.state for e in events) == {"queued": 3, "done": 3}


def test_a_terminal_shows_each_validator_running_before_the_summary(tmp_path: Path) -> None:
    release = tmp_path / "release"
    root = make_repo(
        tmp_path / "repo",
        {
            "pyproject.toml": PACKAGE["pyproject.toml"],
            "tests/test_wait.py": (
                "import os\nimport time\nfrom pathlib import Path\n\n\ndef test_waits():\n"
                "    flag = Path(os.environ['RELEASE_FILE'])\n"
                "    deadline = time.monotonic() + 60\n"
                "    while not flag.exists() and time.monotonic() < deadline:\n"
                "        time.sleep(0.05)\n"
                "    assert flag.exists()\n"
            ),
        },
    )
    screen = Terminal(
        [sys.executable, "-m", "forge", "validate", str(root)], RELEASE_FILE=str(release)
    )
    try:
        screen.wait_for(re.compile(r"pytest +\. +running"))
        release.touch()
        assert screen.wait_exit() == 0, screen.text
    finally:
        screen.close()
    assert re.search(r"ruff +\. +passed", screen.text), "finished ones say how they ended"
    assert "passed: 3 validators" in screen.text  # the summary still prints


class Terminal:
    """A command on a pseudo-terminal, its screen output read as it comes."""

    def __init__(self, argv: list[str], **env: str) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=slave,
            env={**os.environ, **env},
        )
        os.close(slave)
        self.raw = b""

    @property
    def text(self) -> str:
        return re.sub(r"\x1b\[[0-?]*[ -/]*[@-~]", "", self.raw.decode(errors="replace"))

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # the other end closed: the command exited
            return False
        self.raw += chunk
        return bool(chunk)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not pattern.search(self.text):
            assert time.monotonic() < deadline, f"never saw {pattern.pattern!r}:\n{self.text}"
            assert self._read(0.2), f"exited before {pattern.pattern!r}:\n{self.text}"

    def wait_exit(self, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while self._read(0.2) and time.monotonic() < deadline:
            pass
        return self.process.wait(timeout=max(1.0, deadline - time.monotonic()))

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)
