"""Machine-readable reports of `forge validate`: JSON, JUnit XML, GitHub workflow commands, SARIF.

Each renderer is a pure function from a report to text; `forge validate --format` picks one with
`render`. `JSON_SCHEMA` describes the JSON document; docs/validate-report.schema.json is its copy.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, get_args
from urllib.parse import quote

from forge.validation.types import (
    Diagnostic,
    Severity,
    Stage,
    Status,
    TestOutcome,
    TestResult,
    ValidationReport,
    ValidatorResult,
)

FORMATS = ("json", "junit", "github", "sarif")
SCHEMA_VERSION = 2

_OUTCOMES: tuple[str, ...] = get_args(TestOutcome)
_SEVERITIES: tuple[str, ...] = get_args(Severity)
_FAILING_OUTCOMES = ("failed", "error")


def render(report: ValidationReport, fmt: str) -> str:
    """The report in one of FORMATS; ValueError for any other name."""
    renderers: dict[str, Callable[[ValidationReport], str]] = {
        "json": to_json,
        "junit": to_junit,
        "github": to_github,
        "sarif": to_sarif,
    }
    try:
        renderer = renderers[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}") from None
    return renderer(report)


def _seconds(value: float) -> float:
    return round(value, 3)


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0]


def _test_id(test: TestResult) -> str:
    return f"{test.suite}::{test.name}" if test.suite else test.name


# -- JSON -----------------------------------------------------------------------------------------


def to_json(report: ValidationReport) -> str:
    """The report as the JSON document JSON_SCHEMA describes (schema_version 2)."""
    document = {
        "schema_version": SCHEMA_VERSION,
        "root": report.root,
        "passed": report.passed,
        "exit_code": report.exit_code,
        "duration_s": _seconds(report.duration),
        "baseline": report.baseline,
        "summary": _summary(report),
        "interpreters": [
            {"project": project, "path": used.path, "version": used.version, "source": used.source}
            for project, used in sorted(report.interpreters.items())
        ],
        "validators": [_validator_document(result) for result in report.results],
        "not_validated": [
            {"path": n.path, "kind": n.kind, "reason": n.reason} for n in report.not_validated
        ],
        "notes": [{"path": n.path, "kind": n.kind, "reason": n.reason} for n in report.notes],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _test_counts(tests: Iterable[TestResult]) -> dict[str, int]:
    counts = dict.fromkeys(_OUTCOMES, 0)
    for test in tests:
        counts[test.outcome] += 1
    return counts


def _summary(report: ValidationReport) -> dict[str, Any]:
    severities = [d.severity for d in report.diagnostics]
    return {
        "validators": len(report.results),
        "failed": sum(1 for r in report.results if not r.ok),
        "skipped": sum(1 for r in report.results if r.status == Status.SKIPPED),
        "could_not_run": sum(1 for r in report.results if r.status == Status.COULD_NOT_RUN),
        "errors": severities.count("error"),
        "warnings": severities.count("warning"),
        "notes": severities.count("note"),
        "tests": _test_counts(t for r in report.results for t in r.tests),
    }


def _validator_document(result: ValidatorResult) -> dict[str, Any]:
    return {
        "name": result.name,
        "tool": result.tool,
        "stage": result.stage.value,
        "project": result.project,
        "status": result.status.value,
        "reason": result.reason,
        "command": list(result.command),
        "exit_code": result.exit_code,
        "duration_s": _seconds(result.duration),
        "cached": result.cached,
        "output_tail": result.output_tail,
        "tests": _test_counts(result.tests),
        "diagnostics": [_diagnostic_document(d) for d in result.diagnostics],
        "test_results": [_test_document(t) for t in result.tests],
    }


def _diagnostic_document(diagnostic: Diagnostic) -> dict[str, Any]:
    return {
        "tool": diagnostic.tool,
        "severity": diagnostic.severity,
        "file": diagnostic.file,
        "line": diagnostic.line,
        "column": diagnostic.column,
        "code": diagnostic.code,
        "message": diagnostic.message,
        "rendered": diagnostic.rendered,
    }


def _test_document(test: TestResult) -> dict[str, Any]:
    return {
        "name": test.name,
        "outcome": test.outcome,
        "suite": test.suite,
        "file": test.file,
        "line": test.line,
        "duration_s": None if test.duration is None else _seconds(test.duration),
        "message": test.message,
    }


def _field(kind: str | list[str], description: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "description": description, **extra}


def _optional(kind: str, description: str, **extra: Any) -> dict[str, Any]:
    return _field([kind, "null"], description, **extra)


def _closed_object(properties: dict[str, Any], description: str) -> dict[str, Any]:
    """An object with exactly these properties, all required (absent values are null)."""
    return {
        "type": "object",
        "description": description,
        "required": list(properties),
        "additionalProperties": False,
        "properties": properties,
    }


_COUNT = {"type": "integer", "minimum": 0}
_LINE = {"minimum": 1}

JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "forge validate report",
    **_closed_object(
        {
            "schema_version": _field(
                "integer",
                "Incremented when a field is removed, renamed or changes meaning.",
                const=SCHEMA_VERSION,
            ),
            "root": _field("string", "Absolute path of the repository (or project) root."),
            "passed": _field("boolean", "True when every validator passed or was skipped."),
            "exit_code": _field("integer", "0 all passed, 1 a check failed.", enum=[0, 1]),
            "duration_s": _field("number", "Wall-clock seconds for the whole run.", minimum=0),
            "baseline": _optional(
                "string", "The ref findings were compared with (--baseline), else null."
            ),
            "summary": {"$ref": "#/$defs/summary"},
            "interpreters": {
                "type": "array",
                "description": "The Python each Python project's checks ran under.",
                "items": _closed_object(
                    {
                        "project": _field("string", 'Project folder ("." for the root).'),
                        "path": _field("string", "The interpreter run."),
                        "version": _field("string", 'Its version, e.g. "3.12.1".'),
                        "source": _field(
                            "string",
                            "How forge chose it: the active virtual environment, the "
                            "project's .venv/venv, the first Python on PATH, or forge's own.",
                            enum=["VIRTUAL_ENV", "project", "PATH", "forge"],
                        ),
                    },
                    "One project's interpreter.",
                ),
            },
            "validators": {
                "type": "array",
                "description": "One entry per validator, in the order they were planned.",
                "items": {"$ref": "#/$defs/validator"},
            },
            "not_validated": {
                "type": "array",
                "description": "Every project found but not validated, with why.",
                "items": {"$ref": "#/$defs/not_validated"},
            },
            "notes": {
                "type": "array",
                "description": "Projects validated, but not as one may expect (e.g. a crate a "
                "workspace excludes, validated on its own); the reason says how.",
                "items": {"$ref": "#/$defs/not_validated"},
            },
        },
        "The output of `forge validate --format json`.",
    ),
    "$defs": {
        "test_counts": _closed_object(
            {outcome: _COUNT for outcome in _OUTCOMES}, "Number of tests per outcome."
        ),
        "summary": _closed_object(
            {
                "validators": _field("integer", "Number of validators.", minimum=0),
                "failed": _field(
                    "integer",
                    "Validators that did not pass: failed, timeout, error or no_tests.",
                    minimum=0,
                ),
                "skipped": _field(
                    "integer", "Validators not run, as asked (see their reason).", minimum=0
                ),
                "could_not_run": _field(
                    "integer",
                    "Validators whose tool is not installed where forge looked (counted in "
                    "failed too).",
                    minimum=0,
                ),
                "errors": _field("integer", "Diagnostics of severity error.", minimum=0),
                "warnings": _field("integer", "Diagnostics of severity warning.", minimum=0),
                "notes": _field("integer", "Diagnostics of severity note.", minimum=0),
                "tests": {"$ref": "#/$defs/test_counts"},
            },
            "Totals over all validators.",
        ),
        "validator": _closed_object(
            {
                "name": _field("string", 'e.g. "cargo clippy", "ruff", or a custom name.'),
                "tool": _field("string", "The program that produced the findings."),
                "stage": _field("string", "Stage it ran in.", enum=[s.value for s in Stage]),
                "project": _field(
                    "string", 'Project folder relative to the root ("." for the root).'
                ),
                "status": _field(
                    "string",
                    "no_tests: the runner collected nothing, which never counts as a pass.",
                    enum=[s.value for s in Status],
                ),
                "reason": _optional("string", "Why it was skipped, timed out or errored."),
                "command": {
                    "type": "array",
                    "description": "The command line run (empty when not run).",
                    "items": {"type": "string"},
                },
                "exit_code": _optional("integer", "The tool's exit code, if it exited."),
                "duration_s": _field("number", "Seconds the validator took.", minimum=0),
                "cached": _field("boolean", "True when answered from the result cache."),
                "output_tail": _optional(
                    "string",
                    "The end of the tool's output when nothing else says what went wrong (it "
                    "broke, timed out, or failed without a finding).",
                ),
                "tests": {"$ref": "#/$defs/test_counts"},
                "diagnostics": {"type": "array", "items": {"$ref": "#/$defs/diagnostic"}},
                "test_results": {"type": "array", "items": {"$ref": "#/$defs/test_result"}},
            },
            "The result of one validator.",
        ),
        "not_validated": _closed_object(
            {
                "path": _field("string", 'Project folder relative to the root ("." for the root).'),
                "kind": _field("string", "What kind of project.", enum=["rust", "python"]),
                "reason": _field("string", "Why it was not validated."),
            },
            "A project found and not validated.",
        ),
        "diagnostic": _closed_object(
            {
                "tool": _field("string", "The tool that reported the finding."),
                "severity": _field("string", "How serious the finding is.", enum=list(_SEVERITIES)),
                "file": _optional("string", "Relative to the root, with forward slashes."),
                "line": _optional("integer", "1-based line.", **_LINE),
                "column": _optional("integer", "1-based column.", **_LINE),
                "code": _optional("string", 'Rule or error code, e.g. "F401", "E0308".'),
                "message": _field("string", "The finding in one or more lines."),
                "rendered": _optional("string", "The tool's own rendering, with context."),
            },
            "One finding.",
        ),
        "test_result": _closed_object(
            {
                "name": _field("string", "The test's name within its suite."),
                "outcome": _field("string", "How the test ended.", enum=list(_OUTCOMES)),
                "suite": _optional("string", "The test binary, module or class."),
                "file": _optional(
                    "string", "Where it failed (panic or assertion), else where it lives."
                ),
                "line": _optional("integer", "1-based line.", **_LINE),
                "duration_s": _optional("number", "Seconds the test took.", minimum=0),
                "message": _optional("string", "Failure, error or skip message."),
            },
            "One test.",
        ),
    },
}


# -- JUnit XML ------------------------------------------------------------------------------------
#
# One <testsuite> per validator. Errors are <failure>s; warnings and notes are passing cases with
# their severity as a property and their text in <system-out>: a CI that fails on any <failure>
# must not fail a run forge passed. A validator's own status becomes a case of its own when the
# findings alone would not show it. An xfailed test is <skipped type="xfailed">; an xpassed one
# passes, with outcome "xpassed" as a property.

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
# Characters XML 1.0 forbids: ElementTree writes them anyway and the reader then rejects the file.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(value: object) -> str:
    return _NOT_XML.sub("\ufffd", _ANSI.sub("", str(value)))


def _child(parent: ET.Element, tag: str, text: str | None = None, **attrs: object) -> ET.Element:
    """A sub-element with the attributes that are not None, made safe for XML."""
    attrib = {key: _xml_text(value) for key, value in attrs.items() if value is not None}
    element = ET.SubElement(parent, tag, attrib)
    if text:
        element.text = _xml_text(text)
    return element


def to_junit(report: ValidationReport) -> str:
    suites = ET.Element("testsuites", name="forge validate")
    for result in report.results:
        _junit_suite(suites, result)
    _set_counts(suites, list(suites.iter("testcase")), report.duration)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, "unicode") + "\n"


def _set_counts(element: ET.Element, cases: list[ET.Element], duration: float) -> None:
    def having(tag: str) -> int:
        return sum(1 for case in cases if case.find(tag) is not None)

    element.set("tests", str(len(cases)))
    element.set("failures", str(having("failure")))
    element.set("errors", str(having("error")))
    element.set("skipped", str(having("skipped")))
    element.set("time", f"{duration:.3f}")


def _junit_suite(parent: ET.Element, result: ValidatorResult) -> None:
    suite = _child(parent, "testsuite", name=f"{result.name} ({result.project})")
    _status_case(suite, result)
    for diagnostic in result.diagnostics:
        _diagnostic_case(suite, diagnostic)
    for test in result.tests:
        _test_case(suite, result, test)
    _set_counts(suite, list(suite), result.duration)


def _status_case(suite: ET.Element, result: ValidatorResult) -> None:
    """A case for the validator itself when its findings would not tell its status."""
    has_findings = bool(result.diagnostics or result.tests)
    failing = any(d.severity == "error" for d in result.diagnostics) or any(
        t.outcome in _FAILING_OUTCOMES for t in result.tests
    )
    status, reason, tail = result.status, result.reason, result.output_tail
    if status == Status.PASSED and has_findings:
        return
    if status == Status.FAILED and failing:
        return
    case = _child(suite, "testcase", classname=result.tool, name=result.name)
    if status == Status.SKIPPED:
        _child(case, "skipped", message=reason or "skipped")
    elif status in (Status.TIMEOUT, Status.ERROR, Status.COULD_NOT_RUN):
        _child(case, "error", tail, message=reason or status.value, type=status.value)
    elif status == Status.NO_TESTS:
        _child(case, "failure", tail, message=reason or "no tests were collected", type="no_tests")
    elif status == Status.FAILED:
        message = reason or f"exited with code {result.exit_code}"
        _child(case, "failure", tail, message=message, type="failed")


def _location_name(diagnostic: Diagnostic) -> str | None:
    if diagnostic.file is None:
        return None
    parts: list[object] = [diagnostic.file]
    if diagnostic.line is not None:
        parts.append(diagnostic.line)
        if diagnostic.column is not None:
            parts.append(diagnostic.column)
    return ":".join(str(part) for part in parts)


def _diagnostic_case(suite: ET.Element, diagnostic: Diagnostic) -> None:
    named = " ".join(p for p in (diagnostic.code, _location_name(diagnostic)) if p)
    case = _child(
        suite,
        "testcase",
        classname=diagnostic.tool,
        name=named or _first_line(diagnostic.message),
        file=diagnostic.file,
        line=diagnostic.line,
    )
    text = diagnostic.rendered or diagnostic.message
    if diagnostic.severity == "error":
        _child(case, "failure", text, message=_first_line(diagnostic.message), type="error")
    else:
        _properties(case, severity=diagnostic.severity)
        _child(case, "system-out", text)


def _properties(case: ET.Element, **values: str) -> None:
    properties = _child(case, "properties")
    for name, value in values.items():
        _child(properties, "property", name=name, value=value)


def _test_case(suite: ET.Element, result: ValidatorResult, test: TestResult) -> None:
    case = _child(
        suite,
        "testcase",
        classname=test.suite or result.tool,
        name=test.name,
        file=test.file,
        line=test.line,
        time=None if test.duration is None else f"{test.duration:.3f}",
    )
    summary = _first_line(test.message) if test.message else None
    if test.outcome == "failed":
        _child(case, "failure", test.message, message=summary or "failed", type="failed")
    elif test.outcome == "error":
        _child(case, "error", test.message, message=summary or "error", type="error")
    elif test.outcome == "skipped":
        _child(case, "skipped", message=summary)
    elif test.outcome == "xfailed":
        _child(case, "skipped", test.message, message=summary or "xfailed", type="xfailed")
    elif test.outcome == "xpassed":
        _properties(case, outcome="xpassed")
        if test.message:
            _child(case, "system-out", test.message)


# -- GitHub Actions workflow commands -------------------------------------------------------------
#
# One annotation per diagnostic and per failed test, plus one for a validator whose status its
# findings do not show (timed out, broke, collected no tests, failed silently, skipped). Errors come
# first, then warnings, then notices: GitHub shows only the first 10 of each kind per step. The last
# line is a plain-text summary for the log; it is not a command, so it uses no annotation slot.

_GITHUB_KIND: dict[str, str] = {"error": "error", "warning": "warning", "note": "notice"}
_GITHUB_RANK = {"error": 0, "warning": 1, "notice": 2}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


@dataclass(frozen=True)
class _Annotation:
    kind: str  # "error", "warning" or "notice"
    title: str
    message: str
    file: str | None = None
    line: int | None = None
    col: int | None = None

    def command(self) -> str:
        properties = {"file": self.file, "line": self.line, "col": self.col, "title": self.title}
        listed = ",".join(
            f"{key}={_escape_property(str(value))}"
            for key, value in properties.items()
            if value is not None
        )
        return f"::{self.kind} {listed}::{_escape_data(self.message)}"


def to_github(report: ValidationReport) -> str:
    annotations = [a for result in report.results for a in _annotations(result)]
    annotations.sort(key=lambda a: _GITHUB_RANK[a.kind])  # stable: report order within a kind
    lines = [a.command() for a in annotations]
    lines.append(_summary_line(report))
    return "\n".join(lines) + "\n"


def _validator_label(result: ValidatorResult) -> str:
    return result.name if result.project == "." else f"{result.name} ({result.project})"


def _annotations(result: ValidatorResult) -> Iterator[_Annotation]:
    label = _validator_label(result)
    status = _status_annotation(result, label)
    if status is not None:
        yield status
    for d in result.diagnostics:
        title = f"{label} {d.code}" if d.code else label
        yield _Annotation(_GITHUB_KIND[d.severity], title, d.message, d.file, d.line, d.column)
    for t in result.tests:
        if t.outcome in _FAILING_OUTCOMES:
            message = t.message or f"test {t.outcome}"
            yield _Annotation("error", f"{label} {_test_id(t)}", message, t.file, t.line)


def _status_annotation(result: ValidatorResult, label: str) -> _Annotation | None:
    status = result.status
    if status == Status.SKIPPED:
        return _Annotation("notice", label, f"skipped: {result.reason or 'no reason given'}")
    if status is Status.COULD_NOT_RUN:
        return _Annotation("error", label, f"could not run: {result.reason}")
    if status in (Status.TIMEOUT, Status.ERROR, Status.NO_TESTS):
        return _Annotation("error", label, f"{status.value}: {result.reason or status.value}")
    has_errors = any(d.severity == "error" for d in result.diagnostics) or any(
        t.outcome in _FAILING_OUTCOMES for t in result.tests
    )
    if status == Status.FAILED and not has_errors:
        return _Annotation("error", label, result.reason or f"exited with code {result.exit_code}")
    return None


def _summary_line(report: ValidationReport) -> str:
    s = _summary(report)
    tests = ", ".join(f"{n} {outcome}" for outcome, n in s["tests"].items())
    verdict = "passed" if report.passed else "FAILED"
    return (
        f"forge validate {verdict}: {s['validators']} validators ({s['failed']} failed, "
        f"{s['could_not_run']} could not run, {s['skipped']} skipped); {s['errors']} errors, "
        f"{s['warnings']} warnings, {s['notes']} notes; tests: {tests}"
    )


# -- SARIF 2.1.0 ----------------------------------------------------------------------------------
#
# One run per tool (GitHub code scanning keeps one analysis per tool name). A tool none of whose
# validators ran is left out: an empty run would tell code scanning that its old alerts are fixed.
# A tool that broke or timed out is kept, so that its failure is on record: its invocation says
# executionSuccessful false, with the reason as an error notification.

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_SRCROOT = "%SRCROOT%"
_RAN = (Status.PASSED, Status.FAILED, Status.NO_TESTS)
_BROKE = (Status.ERROR, Status.TIMEOUT, Status.COULD_NOT_RUN)
_RUST_TOOLS = ("cargo", "rustc", "clippy")
_RUST_ERROR_CODE = re.compile(r"E\d{4}")
_TEST_RULES = {
    "failed": ("test-failure", "A test failed."),
    "error": ("test-error", "A test could not run: an error outside its assertions."),
}


def to_sarif(report: ValidationReport) -> str:
    root_uri = Path(report.root).absolute().as_uri().rstrip("/") + "/"
    runs = [
        _sarif_run(tool, validators, report.root, root_uri)
        for tool, validators in _by_tool(report.results).items()
        if any(v.status in (*_RAN, *_BROKE) or v.diagnostics or v.tests for v in validators)
    ]
    document = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": runs}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _by_tool(results: list[ValidatorResult]) -> dict[str, list[ValidatorResult]]:
    grouped: dict[str, list[ValidatorResult]] = {}
    for result in results:
        grouped.setdefault(result.tool, []).append(result)
    return grouped


class _Rules:
    """The run's rule table: one rule per distinct id, referenced by index from results."""

    def __init__(self) -> None:
        self.rules: list[dict[str, Any]] = []
        self._index: dict[str, int] = {}

    def index(self, rule_id: str, help_uri: str | None = None, text: str | None = None) -> int:
        if rule_id not in self._index:
            rule: dict[str, Any] = {"id": rule_id}
            if text:
                rule["shortDescription"] = {"text": text}
            if help_uri:
                rule["helpUri"] = help_uri
            self._index[rule_id] = len(self.rules)
            self.rules.append(rule)
        return self._index[rule_id]


def _sarif_run(
    tool: str, validators: list[ValidatorResult], root: str, root_uri: str
) -> dict[str, Any]:
    rules = _Rules()
    results: list[dict[str, Any]] = []
    for validator in validators:
        results.extend(_diagnostic_result(d, tool, rules, root) for d in validator.diagnostics)
        failed = (t for t in validator.tests if t.outcome in _FAILING_OUTCOMES)
        results.extend(_test_failure_result(t, rules, root) for t in failed)
    return {
        "tool": {"driver": {"name": tool, "rules": rules.rules}},
        "invocations": [_invocation(v) for v in validators],
        "originalUriBaseIds": {_SRCROOT: {"uri": root_uri}},
        "columnKind": "unicodeCodePoints",
        "results": results,
    }


def _help_uri(code: str, tool: str) -> str | None:
    """Documentation links built only from patterns the tools themselves print."""
    if code.startswith("clippy::"):
        lint = code.removeprefix("clippy::")
        return f"https://rust-lang.github.io/rust-clippy/master/index.html#{lint}"
    if tool.split()[0] in _RUST_TOOLS and _RUST_ERROR_CODE.fullmatch(code):
        return f"https://doc.rust-lang.org/error_codes/{code}.html"
    # ruff's rule pages are named by slug ("unused-import"), which a diagnostic does not carry.
    return None


def _diagnostic_result(
    diagnostic: Diagnostic, tool: str, rules: _Rules, root: str
) -> dict[str, Any]:
    # Code scanning requires a ruleId; a finding without a code is filed under its tool's name.
    rule_id = diagnostic.code or diagnostic.tool
    help_uri = _help_uri(diagnostic.code, tool) if diagnostic.code else None
    result: dict[str, Any] = {
        "ruleId": rule_id,
        "ruleIndex": rules.index(rule_id, help_uri),
        "level": diagnostic.severity,
        "message": {"text": diagnostic.message},
    }
    location = _location(diagnostic.file, diagnostic.line, diagnostic.column, root)
    if location is not None:
        result["locations"] = [location]
    return result


def _test_failure_result(test: TestResult, rules: _Rules, root: str) -> dict[str, Any]:
    rule_id, description = _TEST_RULES[test.outcome]
    text = f"{_test_id(test)} {test.outcome}"
    result: dict[str, Any] = {
        "ruleId": rule_id,
        "ruleIndex": rules.index(rule_id, text=description),
        "level": "error",
        "message": {"text": f"{text}: {test.message}" if test.message else text},
    }
    location = _location(test.file, test.line, None, root)
    if location is not None:
        result["locations"] = [location]
    return result


def _invocation(validator: ValidatorResult) -> dict[str, Any]:
    invocation: dict[str, Any] = {"executionSuccessful": validator.status in _RAN}
    if validator.exit_code is not None:
        invocation["exitCode"] = validator.exit_code
    broke = validator.status in _BROKE
    if validator.reason or broke:
        text = validator.reason or f"{validator.status.value}, without a reason given"
        if broke and validator.output_tail:
            text += "\n" + validator.output_tail.strip()
        level = "note" if validator.ok else "error"
        notification = {"level": level, "message": {"text": text}}
        invocation["toolExecutionNotifications"] = [notification]
    invocation["properties"] = {
        "validator": validator.name,
        "project": validator.project,
        "status": validator.status.value,
    }
    if validator.tests:
        invocation["properties"]["tests"] = _test_counts(validator.tests)
    return invocation


def _relative_uri(file: str, root: str) -> str | None:
    """`file` as a URI relative to the root, or None when it lies outside it."""
    path = file.replace("\\", "/")
    if PurePosixPath(path).is_absolute() or PureWindowsPath(file).is_absolute():
        try:
            path = PurePosixPath(path).relative_to(root.replace("\\", "/")).as_posix()
        except ValueError:
            return None
    relative = PurePosixPath(path)
    if ".." in relative.parts:
        return None
    # Percent-encoding keeps spaces legal and stops a ':' in the first segment reading as a scheme.
    return quote(relative.as_posix(), safe="/")


def _location(
    file: str | None, line: int | None, column: int | None, root: str
) -> dict[str, Any] | None:
    uri = _relative_uri(file, root) if file else None
    if uri is None:
        return None
    physical: dict[str, Any] = {"artifactLocation": {"uri": uri, "uriBaseId": _SRCROOT}}
    if line is not None and line >= 1:
        region = {"startLine": line}
        if column is not None and column >= 1:
            region["startColumn"] = column
        physical["region"] = region
    return {"physicalLocation": physical}
