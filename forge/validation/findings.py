"""One finding, one report: what a later validator of a project repeats is dropped from it.

cargo clippy re-reports the rustc warnings cargo check already reported, and cargo test's build
reports them a third time. The validators still run (each has its own say on pass or fail); only
the repeated diagnostic entries go.
"""

from __future__ import annotations

from dataclasses import replace

from forge.validation.types import Diagnostic, ValidatorResult

FindingKey = tuple[str, str | None, int | None, int | None, str | None, str, str]


def family(tool: str) -> str:
    """The program behind a diagnostic's tool: "cargo check" and "cargo clippy" are both cargo."""
    return tool.split(maxsplit=1)[0] if tool.strip() else tool


def finding_key(d: Diagnostic) -> FindingKey:
    """What makes two diagnostics the same finding; the tool's rendering may differ."""
    return (family(d.tool), d.file, d.line, d.column, d.code, d.message, d.severity)


def reported_once(results: list[ValidatorResult]) -> list[ValidatorResult]:
    """`results` in the same order, each without the diagnostics an earlier validator of the same
    project already reported.

    Statuses are left as they are. A failed validator whose every finding was a repeat keeps
    them, so that it never shows as a failure with nothing to say why.
    """
    seen: dict[str, set[FindingKey]] = {}
    kept: list[ValidatorResult] = []
    for result in results:
        earlier = seen.setdefault(result.project, set())
        keys = [finding_key(d) for d in result.diagnostics]
        fresh = [d for d, key in zip(result.diagnostics, keys, strict=True) if key not in earlier]
        earlier.update(keys)
        unexplained = not fresh and not result.tests and not result.ok
        if len(fresh) == len(result.diagnostics) or unexplained:
            kept.append(result)
        else:
            kept.append(replace(result, diagnostics=fresh))
    return kept
