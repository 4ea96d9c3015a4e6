"""`forge validate --format json | junit | github | sarif`: each output parsed back and checked."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from forge.validation.formats import JSON_SCHEMA, render, to_github, to_json, to_junit, to_sarif
from forge.validation.types import (
    Diagnostic,
    ProjectNote,
    PythonUsed,
    Stage,
    Status,
    ValidationReport,
    ValidatorResult,
)
from forge.validation.types import TestResult as CaseResult  # a "Test*" name pytest would collect

ROOT = "/work/repo"
SCHEMA_FILE = Path(__file__).resolve().parents[1] / "docs" / "validate-report.schema.json"

UNUSED_IMPORT = Diagnostic(
    "ruff", "error", "`os` imported but unused", "src/app.py", 1, 8, "F401", "rendered F401"
)
LONG_LINE = Diagnostic("ruff", "error", "Line too long (120 > 100)", "src/app.py", 10, 101, "E501")
NEEDLESS_RETURN = Diagnostic(
    tool="clippy",
    severity="warning",
    message="unneeded `return` statement",
    file="crates/core/src/lib.rs",
    line=5,
    column=5,
    code="clippy::needless_return",
    rendered="warning: unneeded `return` statement\n --> crates/core/src/lib.rs:5:5",
)
LINT_NOTE = Diagnostic("clippy", "note", "`#[warn(clippy::all)]` on by default")
TEST_OK = CaseResult("test_ok", "passed", "tests.test_app", "tests/test_app.py", 3, 0.0123)
TEST_BAD = CaseResult(
    "test_bad", "failed", "tests.test_app", "tests/test_app.py", 12, 0.5, "assert 1 == 2\n+1\n-2"
)
TEST_LATER = CaseResult("test_later", "skipped", "tests.test_app", message="needs network")


def sample_report() -> ValidationReport:
    """One validator of each kind a run produces."""
    return ValidationReport(
        root=ROOT,
        duration=12.34567,
        baseline="origin/main",
        not_validated=[ProjectNote("fuzz", "rust", "a cargo-fuzz crate")],
        interpreters={
            ".": PythonUsed(
                "/work/repo/.venv/bin/python", "3.12.1", "project", "/work/repo/.venv/bin/python"
            )
        },
        results=[
            ValidatorResult(
                "ruff",
                "ruff",
                Stage.LINT,
                ".",
                Status.FAILED,
                command=["ruff", "check", "--output-format=json", "."],
                exit_code=1,
                duration=0.25,
                diagnostics=[UNUSED_IMPORT, LONG_LINE],
            ),
            ValidatorResult(
                "cargo clippy",
                "cargo",
                Stage.LINT,
                "crates/core",
                Status.PASSED,
                command=["cargo", "clippy", "--message-format=json"],
                exit_code=0,
                duration=3.5,
                diagnostics=[NEEDLESS_RETURN, LINT_NOTE],
                cached=True,
            ),
            ValidatorResult(
                "pytest",
                "pytest",
                Stage.TEST,
                ".",
                Status.FAILED,
                command=["pytest", "--junitxml=report.xml"],
                exit_code=1,
                duration=4.0,
                tests=[TEST_OK, TEST_BAD, TEST_LATER],
            ),
            ValidatorResult(
                "mypy", "mypy", Stage.LINT, ".", Status.SKIPPED, reason="mypy is not installed"
            ),
            ValidatorResult(
                "cargo test",
                "cargo",
                Stage.TEST,
                "crates/core",
                Status.TIMEOUT,
                command=["cargo", "test"],
                reason="timed out after 600 s",
                duration=600.0,
                output_tail="running 3 tests\n",
            ),
            ValidatorResult(
                "check-docs", "check-docs", Stage.LINT, "docs", Status.PASSED, exit_code=0
            ),
        ],
    )


# -- JSON -----------------------------------------------------------------------------------------


def test_json_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(JSON_SCHEMA)


def test_json_schema_file_matches_the_code() -> None:
    on_disk = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert on_disk == JSON_SCHEMA, (
        "docs/validate-report.schema.json is stale; regenerate it with: python -c "
        '"import json; from forge.validation.formats import JSON_SCHEMA; '
        'print(json.dumps(JSON_SCHEMA, indent=2))" > docs/validate-report.schema.json'
    )


def test_json_report_validates_and_carries_every_value() -> None:
    document = json.loads(to_json(sample_report()))
    jsonschema.validate(document, JSON_SCHEMA, cls=jsonschema.Draft202012Validator)

    assert {k: v for k, v in document.items() if k not in ("summary", "validators")} == {
        "schema_version": 2,
        "root": ROOT,
        "passed": False,
        "exit_code": 1,
        "duration_s": 12.346,
        "baseline": "origin/main",
        "not_validated": [{"path": "fuzz", "kind": "rust", "reason": "a cargo-fuzz crate"}],
        "interpreters": [
            {
                "project": ".",
                "path": "/work/repo/.venv/bin/python",
                "version": "3.12.1",
                "source": "project",
            }
        ],
        "notes": [],
    }
    assert document["summary"] == {
        "validators": 6,
        "failed": 3,
        "skipped": 1,
        "could_not_run": 0,
        "errors": 2,
        "warnings": 1,
        "notes": 1,
        "tests": {
            "passed": 1,
            "failed": 1,
            "skipped": 1,
            "error": 0,
            "xfailed": 0,
            "xpassed": 0,
        },
    }
    names = [(v["name"], v["project"], v["stage"], v["status"]) for v in document["validators"]]
    assert names == [
        ("ruff", ".", "lint", "failed"),
        ("cargo clippy", "crates/core", "lint", "passed"),
        ("pytest", ".", "test", "failed"),
        ("mypy", ".", "lint", "skipped"),
        ("cargo test", "crates/core", "test", "timeout"),
        ("check-docs", "docs", "lint", "passed"),
    ]


def test_json_validator_entry_in_full() -> None:
    ruff, clippy, pytest_, mypy, cargo_test, _ = json.loads(to_json(sample_report()))["validators"]
    assert ruff == {
        "name": "ruff",
        "tool": "ruff",
        "stage": "lint",
        "project": ".",
        "status": "failed",
        "reason": None,
        "command": ["ruff", "check", "--output-format=json", "."],
        "exit_code": 1,
        "duration_s": 0.25,
        "cached": False,
        "output_tail": None,
        "tests": dict.fromkeys(("passed", "failed", "skipped", "error", "xfailed", "xpassed"), 0),
        "diagnostics": [
            {
                "tool": "ruff",
                "severity": "error",
                "file": "src/app.py",
                "line": 1,
                "column": 8,
                "code": "F401",
                "message": "`os` imported but unused",
                "rendered": "rendered F401",
            },
            {
                "tool": "ruff",
                "severity": "error",
                "file": "src/app.py",
                "line": 10,
                "column": 101,
                "code": "E501",
                "message": "Line too long (120 > 100)",
                "rendered": None,
            },
        ],
        "test_results": [],
    }
    assert clippy["cached"] is True
    assert clippy["diagnostics"][1]["file"] is None
    assert pytest_["tests"] == {
        "passed": 1,
        "failed": 1,
        "skipped": 1,
        "error": 0,
        "xfailed": 0,
        "xpassed": 0,
    }
    assert pytest_["test_results"][1] == {
        "name": "test_bad",
        "outcome": "failed",
        "suite": "tests.test_app",
        "file": "tests/test_app.py",
        "line": 12,
        "duration_s": 0.5,
        "message": "assert 1 == 2\n+1\n-2",
    }
    assert pytest_["test_results"][2]["duration_s"] is None
    assert (mypy["reason"], mypy["command"], mypy["exit_code"]) == (
        "mypy is not installed",
        [],
        None,
    )
    assert (cargo_test["reason"], cargo_test["output_tail"]) == (
        "timed out after 600 s",
        "running 3 tests\n",
    )


def test_json_of_an_empty_report_is_valid_and_passes() -> None:
    document = json.loads(to_json(ValidationReport(root=ROOT, results=[])))
    jsonschema.validate(document, JSON_SCHEMA, cls=jsonschema.Draft202012Validator)
    assert (document["passed"], document["exit_code"], document["validators"]) == (True, 0, [])


def test_json_schema_rejects_an_undocumented_field() -> None:
    document = json.loads(to_json(sample_report()))
    document["validators"][0]["extra"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, JSON_SCHEMA, cls=jsonschema.Draft202012Validator)


# -- JUnit XML ------------------------------------------------------------------------------------


def junit_tree() -> ET.Element:
    text = to_junit(sample_report())
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites ')
    return ET.fromstring(text.encode("utf-8"))


def counts(element: ET.Element) -> tuple[str | None, ...]:
    return tuple(element.get(k) for k in ("tests", "failures", "errors", "skipped", "time"))


def test_junit_has_one_suite_per_validator_with_counts() -> None:
    root = junit_tree()
    assert root.tag == "testsuites"
    assert counts(root) == ("10", "3", "1", "2", "12.346")
    suites = {s.get("name"): counts(s) for s in root.findall("testsuite")}
    assert suites == {
        "ruff (.)": ("2", "2", "0", "0", "0.250"),
        "cargo clippy (crates/core)": ("2", "0", "0", "0", "3.500"),
        "pytest (.)": ("3", "1", "0", "1", "4.000"),
        "mypy (.)": ("1", "0", "0", "1", "0.000"),
        "cargo test (crates/core)": ("1", "0", "1", "0", "600.000"),
        "check-docs (docs)": ("1", "0", "0", "0", "0.000"),
    }


def suite(name: str) -> ET.Element:
    found = junit_tree().find(f"testsuite[@name='{name}']")
    assert found is not None
    return found


def test_junit_diagnostics_are_failing_cases_named_by_code_and_location() -> None:
    cases = suite("ruff (.)").findall("testcase")
    assert [(c.get("classname"), c.get("name"), c.get("file"), c.get("line")) for c in cases] == [
        ("ruff", "F401 src/app.py:1:8", "src/app.py", "1"),
        ("ruff", "E501 src/app.py:10:101", "src/app.py", "10"),
    ]
    first, second = (c.find("failure") for c in cases)
    assert first is not None and second is not None
    assert first.attrib == {"message": "`os` imported but unused", "type": "error"}
    assert first.text == "rendered F401"  # the tool's rendering when there is one
    assert second.text == "Line too long (120 > 100)"


def test_junit_warnings_and_notes_pass_with_their_text_in_system_out() -> None:
    # A CI that fails on any <failure> must not fail a run forge passed with warnings.
    warning, note = suite("cargo clippy (crates/core)").findall("testcase")
    assert warning.get("name") == "clippy::needless_return crates/core/src/lib.rs:5:5"
    assert [child.tag for child in warning] == ["properties", "system-out"]
    assert warning.find("properties/property[@name='severity']").attrib == {  # type: ignore[union-attr]
        "name": "severity",
        "value": "warning",
    }
    assert warning.findtext("system-out") == NEEDLESS_RETURN.rendered
    assert note.get("name") == "`#[warn(clippy::all)]` on by default"  # no code, no file
    assert [child.tag for child in note] == ["properties", "system-out"]
    assert note.findtext("system-out") == "`#[warn(clippy::all)]` on by default"


def test_junit_test_results_keep_suite_file_line_time_and_outcome() -> None:
    ok, bad, later = suite("pytest (.)").findall("testcase")
    assert ok.attrib == {
        "classname": "tests.test_app",
        "name": "test_ok",
        "file": "tests/test_app.py",
        "line": "3",
        "time": "0.012",
    }
    assert list(ok) == []
    failure = bad.find("failure")
    assert failure is not None
    assert failure.attrib == {"message": "assert 1 == 2", "type": "failed"}
    assert failure.text == "assert 1 == 2\n+1\n-2"
    assert "time" not in later.attrib
    skipped = later.find("skipped")
    assert skipped is not None and skipped.attrib == {"message": "needs network"}


def test_junit_skipped_timed_out_and_empty_validators_get_one_case_each() -> None:
    (mypy,) = suite("mypy (.)").findall("testcase")
    assert (mypy.get("classname"), mypy.get("name")) == ("mypy", "mypy")
    skipped = mypy.find("skipped")
    assert skipped is not None and skipped.attrib == {"message": "mypy is not installed"}

    (timeout,) = suite("cargo test (crates/core)").findall("testcase")
    error = timeout.find("error")
    assert error is not None
    assert error.attrib == {"message": "timed out after 600 s", "type": "timeout"}
    assert error.text == "running 3 tests\n"

    (empty,) = suite("check-docs (docs)").findall("testcase")
    assert (empty.get("classname"), empty.get("name"), list(empty)) == (
        "check-docs",
        "check-docs",
        [],
    )


def test_junit_shows_a_failure_the_findings_do_not() -> None:
    silent = ValidatorResult("lint-sh", "lint-sh", Stage.LINT, ".", Status.FAILED, exit_code=3)
    no_tests = ValidatorResult("pytest", "pytest", Stage.TEST, ".", Status.NO_TESTS)
    root = ET.fromstring(to_junit(ValidationReport(ROOT, [silent, no_tests])))
    failures = [case.find("failure") for case in root.iter("testcase")]
    assert [(f.get("message"), f.get("type")) for f in failures if f is not None] == [
        ("exited with code 3", "failed"),
        ("no tests were collected", "no_tests"),
    ]


def test_junit_drops_characters_xml_cannot_hold() -> None:
    broken = Diagnostic("cargo", "error", "bad \x1b[31mred\x1b[0m byte \x00 here & <there>")
    result = ValidatorResult("cargo check", "cargo", Stage.BUILD, ".", Status.FAILED)
    result.diagnostics.append(broken)
    failure = ET.fromstring(to_junit(ValidationReport(ROOT, [result]))).find(".//failure")
    assert failure is not None
    assert failure.get("message") == "bad red byte \ufffd here & <there>"


# -- GitHub workflow commands ---------------------------------------------------------------------


def test_github_escapes_data_and_properties_exactly() -> None:
    tricky = Diagnostic(
        "ruff", "warning", "100% sure: a, b\r\nnext", "data/a,b:c.py", 2, 4, "RUF001"
    )
    result = ValidatorResult("ruff", "ruff", Stage.LINT, "py,x:y", Status.PASSED)
    result.diagnostics.append(tricky)
    lines = to_github(ValidationReport(ROOT, [result])).splitlines()
    assert lines[0] == (
        "::warning file=data/a%2Cb%3Ac.py,line=2,col=4,title=ruff (py%2Cx%3Ay) RUF001"
        "::100%25 sure: a, b%0D%0Anext"
    )


def test_github_lists_errors_then_warnings_then_notices_and_ends_with_a_summary() -> None:
    assert to_github(sample_report()).splitlines() == [
        "::error file=src/app.py,line=1,col=8,title=ruff F401::`os` imported but unused",
        "::error file=src/app.py,line=10,col=101,title=ruff E501::Line too long (120 > 100)",
        "::error file=tests/test_app.py,line=12,title=pytest tests.test_app%3A%3Atest_bad"
        "::assert 1 == 2%0A+1%0A-2",
        "::error title=cargo test (crates/core)::timeout: timed out after 600 s",
        "::warning file=crates/core/src/lib.rs,line=5,col=5,"
        "title=cargo clippy (crates/core) clippy%3A%3Aneedless_return::unneeded `return` statement",
        "::notice title=cargo clippy (crates/core)::`#[warn(clippy::all)]` on by default",
        "::notice title=mypy::skipped: mypy is not installed",
        "forge validate FAILED: 6 validators (3 failed, 0 could not run, 1 skipped); "
        "2 errors, 1 warnings, 1 notes; "
        "tests: 1 passed, 1 failed, 1 skipped, 0 error, 0 xfailed, 0 xpassed",
    ]


def test_github_of_a_clean_report_is_just_the_summary() -> None:
    result = ValidatorResult("ruff", "ruff", Stage.LINT, ".", Status.PASSED)
    assert to_github(ValidationReport(ROOT, [result])) == (
        "forge validate passed: 1 validators (0 failed, 0 could not run, 0 skipped); "
        "0 errors, 0 warnings, 0 notes; "
        "tests: 0 passed, 0 failed, 0 skipped, 0 error, 0 xfailed, 0 xpassed\n"
    )


# -- SARIF ----------------------------------------------------------------------------------------


def sarif() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(to_sarif(sample_report()))
    return document


def run_of(document: dict[str, Any], tool: str) -> dict[str, Any]:
    runs: list[dict[str, Any]] = document["runs"]
    (run,) = [r for r in runs if r["tool"]["driver"]["name"] == tool]
    return run


def test_sarif_has_one_run_per_tool_that_ran() -> None:
    document = sarif()
    assert document["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    assert document["version"] == "2.1.0"
    # mypy never ran: an empty run would mark its old code-scanning alerts as fixed.
    names = [run["tool"]["driver"]["name"] for run in document["runs"]]
    assert names == ["ruff", "cargo", "pytest", "check-docs"]
    for run in document["runs"]:
        assert run["originalUriBaseIds"] == {"%SRCROOT%": {"uri": "file:///work/repo/"}}


def test_sarif_ruff_results_rules_levels_and_relative_locations() -> None:
    run = run_of(sarif(), "ruff")
    assert run["tool"]["driver"]["rules"] == [{"id": "F401"}, {"id": "E501"}]
    assert run["results"] == [
        {
            "ruleId": "F401",
            "ruleIndex": 0,
            "level": "error",
            "message": {"text": "`os` imported but unused"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": "src/app.py", "uriBaseId": "%SRCROOT%"},
                        "region": {"startLine": 1, "startColumn": 8},
                    }
                }
            ],
        },
        {
            "ruleId": "E501",
            "ruleIndex": 1,
            "level": "error",
            "message": {"text": "Line too long (120 > 100)"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": "src/app.py", "uriBaseId": "%SRCROOT%"},
                        "region": {"startLine": 10, "startColumn": 101},
                    }
                }
            ],
        },
    ]
    assert run["invocations"] == [
        {
            "executionSuccessful": True,
            "exitCode": 1,
            "properties": {"validator": "ruff", "project": ".", "status": "failed"},
        }
    ]


def test_sarif_groups_cargo_validators_and_links_clippy_lints() -> None:
    run = run_of(sarif(), "cargo")
    assert run["tool"]["driver"]["rules"] == [
        {
            "id": "clippy::needless_return",
            "helpUri": "https://rust-lang.github.io/rust-clippy/master/index.html#needless_return",
        },
        {"id": "clippy"},  # a finding without a code is filed under its tool
    ]
    assert [(r["ruleId"], r["level"], "locations" in r) for r in run["results"]] == [
        ("clippy::needless_return", "warning", True),
        ("clippy", "note", False),
    ]
    assert [
        (i["executionSuccessful"], i["properties"]["validator"]) for i in run["invocations"]
    ] == [
        (True, "cargo clippy"),
        (False, "cargo test"),
    ]
    assert run["invocations"][1]["toolExecutionNotifications"] == [
        # The end of its output says where it stopped.
        {"level": "error", "message": {"text": "timed out after 600 s\nrunning 3 tests"}}
    ]


def test_sarif_failed_tests_are_error_results() -> None:
    run = run_of(sarif(), "pytest")
    assert run["tool"]["driver"]["rules"] == [
        {"id": "test-failure", "shortDescription": {"text": "A test failed."}}
    ]
    assert run["results"] == [
        {
            "ruleId": "test-failure",
            "ruleIndex": 0,
            "level": "error",
            "message": {"text": "tests.test_app::test_bad failed: assert 1 == 2\n+1\n-2"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": "tests/test_app.py", "uriBaseId": "%SRCROOT%"},
                        "region": {"startLine": 12},
                    }
                }
            ],
        }
    ]


def test_sarif_uris_are_never_absolute() -> None:
    paths = [
        f"{ROOT}/src/inside.py",  # relativised
        "/elsewhere/outside.py",  # outside the root: no location rather than an absolute uri
        "../up.py",
        "src\\win.py",
        "my dir/a:b,c.rs",
    ]
    result = ValidatorResult("cargo check", "cargo", Stage.BUILD, ".", Status.FAILED)
    result.diagnostics.extend(Diagnostic("rustc", "error", "e", p, 1, code="E0308") for p in paths)
    (run,) = json.loads(to_sarif(ValidationReport(ROOT, [result])))["runs"]
    uris = [
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        if "locations" in r
        else None
        for r in run["results"]
    ]
    assert uris == ["src/inside.py", None, None, "src/win.py", "my%20dir/a%3Ab%2Cc.rs"]
    assert run["tool"]["driver"]["rules"] == [
        {"id": "E0308", "helpUri": "https://doc.rust-lang.org/error_codes/E0308.html"}
    ]


# -- dispatch -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "renderer"),
    [("json", to_json), ("junit", to_junit), ("github", to_github), ("sarif", to_sarif)],
)
def test_render_dispatches_by_name(fmt: str, renderer: Any) -> None:
    report = sample_report()
    assert render(report, fmt) == renderer(report)


def test_render_rejects_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        render(sample_report(), "xml")
