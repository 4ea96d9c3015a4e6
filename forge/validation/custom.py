"""Custom validators from `[[validation.custom]]`: any command, read as JUnit, SARIF, a regex or
its exit code.

A command that writes its report to a file names it `{report}`; forge substitutes a private path
and reads the file. Otherwise the report is read from the command's standard output.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from forge.config.schema import CustomValidator
from forge.validation.process import ProcessOutput
from forge.validation.python import read_junit, rel
from forge.validation.types import Diagnostic, Stage, Status
from forge.validation.validator import Context, Parsed, Validator

SHELL_NOT_FOUND = 127  # what the shell exits with when the command's program is not found
SARIF_LEVELS = {"error": "error", "warning": "warning", "note": "note", "none": "note"}


def custom_validator(spec: CustomValidator, default_timeout: float) -> Validator:
    return Validator(
        name=spec.name,
        tool=spec.name,
        stage=Stage(spec.stage),
        argv=("/bin/sh", "-c", spec.command.replace("{report}", "{scratch}/report")),
        parse=_parser(spec),
        timeout=spec.timeout or default_timeout,
        settings=f"{spec.parser}:{spec.pattern}",
    )


def _parser(spec: CustomValidator) -> Any:
    uses_file = "{report}" in spec.command

    def report_text(out: ProcessOutput, ctx: Context) -> str:
        if uses_file and ctx.scratch is not None:
            path = ctx.scratch / "report"
            return path.read_text(errors="replace") if path.is_file() else ""
        return out.stdout

    def parse(out: ProcessOutput, ctx: Context) -> Parsed:
        if out.exit_code == SHELL_NOT_FOUND:
            said = (out.stderr.strip().splitlines() or ["command not found"])[-1]
            return Parsed(Status.COULD_NOT_RUN, reason=f"{spec.name}'s command: {said}")
        failed_exit = out.exit_code != 0
        if spec.parser == "exit_code":
            return Parsed(Status.FAILED if failed_exit else Status.PASSED)
        if spec.parser == "regex":
            found = _regex(spec, out, ctx)
        elif spec.parser == "junit":
            try:
                tests = read_junit(report_text(out, ctx), ctx)
            except ET.ParseError:
                return Parsed(Status.ERROR, reason=f"{spec.name}: the JUnit report is not XML")
            bad = any(t.outcome in ("failed", "error") for t in tests)
            return Parsed(Status.FAILED if bad or failed_exit else Status.PASSED, tests=tests)
        else:
            try:
                found = _sarif(json.loads(report_text(out, ctx) or "{}"), spec.name, ctx)
            except (ValueError, AttributeError, TypeError):
                return Parsed(Status.ERROR, reason=f"{spec.name}: the SARIF report is not valid")
        errors = any(d.severity == "error" for d in found)
        return Parsed(Status.FAILED if errors or failed_exit else Status.PASSED, found)

    return parse


def _regex(spec: CustomValidator, out: ProcessOutput, ctx: Context) -> list[Diagnostic]:
    """Named groups: file, line, col, severity, code, message (all optional but message)."""
    pattern = re.compile(spec.pattern or r"^(?P<file>[^:\s]+):(?P<line>\d+):(?P<message>.*)$")
    found = []
    for line in (out.stdout + "\n" + out.stderr).splitlines():
        match = pattern.search(line)
        if not match:
            continue
        groups = match.groupdict()
        severity = (groups.get("severity") or "error").lower()
        found.append(
            Diagnostic(
                tool=spec.name,
                severity=severity if severity in ("error", "warning", "note") else "error",  # type: ignore[arg-type]
                message=(groups.get("message") or line).strip(),
                file=rel(groups["file"], ctx) if groups.get("file") else None,
                line=int(groups["line"]) if groups.get("line") else None,
                column=int(groups["col"]) if groups.get("col") else None,
                code=groups.get("code"),
                rendered=line,
            )
        )
    return found


def _sarif(data: dict[str, Any], tool: str, ctx: Context) -> list[Diagnostic]:
    found = []
    for run in data.get("runs", []):
        for result in run.get("results", []):
            location = (result.get("locations") or [{}])[0].get("physicalLocation", {})
            uri = location.get("artifactLocation", {}).get("uri")
            region = location.get("region", {})
            found.append(
                Diagnostic(
                    tool=tool,
                    severity=SARIF_LEVELS.get(result.get("level", "warning"), "warning"),  # type: ignore[arg-type]
                    message=str(result.get("message", {}).get("text", "")),
                    file=rel(_uri_path(uri), ctx) if uri else None,
                    line=region.get("startLine"),
                    column=region.get("startColumn"),
                    code=result.get("ruleId"),
                )
            )
    return found


def _uri_path(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))
