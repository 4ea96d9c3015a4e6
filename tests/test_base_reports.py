"""A base's validation shared by the tasks that start from it (a Ray node's runner keeps one)."""

from __future__ import annotations

from forge.execution.engine import BaseReports
from forge.validation.types import Diagnostic, Stage, Status, ValidationReport, ValidatorResult


def report(*statuses: Status) -> ValidationReport:
    """One check per status, each with a finding (so a failed one says what failed)."""
    found = [Diagnostic("tool", "error", "E1 wrong", "a.py", 1)]
    return ValidationReport(
        root="/work/tree",
        results=[
            ValidatorResult(f"check {n}", "tool", Stage.TEST, ".", status, diagnostics=found)
            for n, status in enumerate(statuses)
        ],
    )


def test_a_report_is_shared_for_its_base_and_nothing_else() -> None:
    bases = BaseReports()
    red = report(Status.PASSED, Status.FAILED, Status.SKIPPED, Status.COULD_NOT_RUN)
    bases.keep("a" * 40, red)
    bases.keep("b" * 40, None)  # nothing to validate there: known too
    assert bases.known("a" * 40) == (red,)
    assert bases.known("b" * 40) == (None,)
    assert bases.known("c" * 40) == ()


def test_a_check_that_errored_timed_out_or_failed_unsaid_is_run_again_for_the_next_task() -> None:
    bases = BaseReports()
    bases.keep("a" * 40, report(Status.PASSED, Status.ERROR))
    bases.keep("b" * 40, report(Status.TIMEOUT))
    unsaid = report(Status.FAILED)
    unsaid.results[0].diagnostics.clear()  # failed, and said nothing forge could read
    bases.keep("c" * 40, unsaid)
    assert [bases.known(h * 40) for h in "abc"] == [(), (), ()]


def test_only_the_newest_heads_are_kept() -> None:
    bases = BaseReports()
    heads = [f"{n:040x}" for n in range(BaseReports.KEPT + 2)]
    for head in heads:
        bases.keep(head, report(Status.PASSED))
    assert [bases.known(h) != () for h in heads] == [False, False] + [True] * BaseReports.KEPT
