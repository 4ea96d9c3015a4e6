"""A finished run as data: the `Report` bundle, its JSON form and its Markdown form."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from forge.fanout.answers import Answer, FanoutRun, Status
from forge.fanout.candidates import CandidateResult
from forge.fanout.comparison import DEFAULT_THRESHOLD, Comparison, compare, normalise
from forge.fanout.judge import Synthesis, Verdict
from forge.fanout.store import SavedRun

FIRST_LINE_WIDTH = 100


@dataclass
class Report:
    run: FanoutRun
    comparison: Comparison
    verdict: Verdict | None = None
    synthesis: Synthesis | None = None
    candidates: list[CandidateResult] | None = None
    by_role: dict[str, Comparison] = field(default_factory=dict)  # --roles: one per role

    def extras(self) -> dict[str, Any]:
        """What the saved run keeps beside its answers."""
        return {
            "threshold": self.comparison.threshold,
            "verdict": self.verdict.to_json() if self.verdict else None,
            "synthesis": self.synthesis.to_json() if self.synthesis else None,
            "candidates": None
            if self.candidates is None
            else [c.to_json() for c in self.candidates],
        }

    def answer(self, key: str) -> Answer:
        return next(a for a in self.run.answers if a.key == key)

    def cost_parts(self) -> dict[str, Decimal | None]:
        """What the run spent on the answers, the judge and the synthesis (those asked for);
        None where a call was made whose price is unknown."""
        parts: dict[str, Decimal | None] = {"answers": self.run.cost_usd}
        if self.verdict is not None:
            parts["judge"] = self.verdict.cost_usd
        if self.synthesis is not None:
            parts["synthesis"] = self.synthesis.cost_usd
        return parts

    @property
    def cost_usd(self) -> Decimal:
        """Everything the run spent: the answers, and the judge's and synthesiser's calls."""
        return sum((c for c in self.cost_parts().values() if c is not None), Decimal(0))

    def cost_text(self) -> str:
        """`$0.0011 (answers $0.000002, judge $0.001098)`: the total, then its parts."""
        parts = self.cost_parts()
        if len(parts) == 1:
            return usd(self.cost_usd)
        shown = ", ".join(
            f"{name} {usd(cost) if cost is not None else 'unpriced'}"
            for name, cost in parts.items()
        )
        return f"{usd(self.cost_usd)} ({shown})"


def build_report(run: FanoutRun, threshold: float = DEFAULT_THRESHOLD) -> Report:
    """The comparison of a run: across all its answers, or within each role."""
    if not run.roles:
        return Report(run, compare(run.answers, threshold))
    by_role = {
        role: compare([a for a in run.answers if a.role == role], threshold) for role in run.roles
    }
    return Report(run, compare([], threshold), by_role=by_role)


def from_saved(saved: SavedRun) -> Report:
    extras = saved.extras
    report = build_report(saved.run, float(extras.get("threshold") or DEFAULT_THRESHOLD))
    if extras.get("verdict"):
        report.verdict = Verdict.from_json(extras["verdict"])
    if extras.get("synthesis"):
        report.synthesis = Synthesis.from_json(extras["synthesis"])
    if extras.get("candidates") is not None:
        report.candidates = [CandidateResult.from_json(c) for c in extras["candidates"]]
    return report


# -- JSON ---------------------------------------------------------------------------------------


def report_json(report: Report) -> dict[str, Any]:
    run = report.run
    data: dict[str, Any] = {
        "run_id": run.run_id,
        "prompt": run.prompt,
        "settings": {
            "system": run.settings.system,
            "temperature": run.settings.temperature,
            "max_tokens": run.settings.max_tokens,
            "deadline_s": run.settings.deadline,
            "attempts": run.settings.attempts,
        },
        "started_at": run.started_at,
        "duration_s": round(run.duration, 3),
        "interrupted": run.interrupted,
        "deadline_passed": run.deadline_passed,
        "cost_usd": str(report.cost_usd),
        "cost_parts_usd": {
            name: None if cost is None else str(cost) for name, cost in report.cost_parts().items()
        },
        "counts": counts(run.answers),
        "answers": [answer_json(a) for a in run.answers],
    }
    if run.roles:
        data["roles"] = {
            role: {"system": system, "comparison": comparison_json(report.by_role[role])}
            for role, system in run.roles.items()
        }
    else:
        data["comparison"] = comparison_json(report.comparison)
    data["judge"] = report.verdict.to_json() if report.verdict else None
    data["synthesis"] = report.synthesis.to_json() if report.synthesis else None
    data["candidates"] = (
        None if report.candidates is None else [c.to_json() for c in report.candidates]
    )
    return data


def answer_json(a: Answer) -> dict[str, Any]:
    return {
        "key": a.key,
        "model": a.alias,
        "provider": a.provider,
        "model_id": a.model_id,
        "tier": a.tier,
        "role": a.role,
        "status": a.status.value,
        "truncated": a.truncated,
        "ttft_s": _round(a.ttft),
        "latency_s": _round(a.latency),
        "input_tokens": a.input_tokens,
        "output_tokens": a.output_tokens,
        "tokens_per_second": _round(a.tokens_per_second, 1),
        "cost_usd": None if a.cost_usd is None else str(a.cost_usd),
        "cost_source": a.cost_source,
        "error_kind": a.error_kind,
        "cause": a.cause,
        "attempts": a.attempts,
        "text": a.text,
    }


def comparison_json(c: Comparison) -> dict[str, Any]:
    code = c.code
    return {
        "threshold": c.threshold,
        "compared": list(c.keys),
        "consensus": c.consensus,
        "consensus_reason": c.reason,
        "reference": c.reference,
        "empty": list(c.empty),
        "share": round(c.share, 4),
        "agreed": c.agreed,
        "clusters": [list(cluster.members) for cluster in c.clusters],
        "outside_consensus": c.outside(),
        "matrix": None
        if c.matrix is None
        else {"models": list(c.keys), "similarity": [[round(v, 4) for v in r] for r in c.matrix]},
        "diffs": {
            k: {"similarity": round(d.similarity, 4), "style": d.style, "diff": d.text}
            for k, d in c.diffs.items()
        },
        "code": None
        if code is None
        else {
            "answers": list(code.keys),
            "identical_groups": [list(g) for g in code.groups],
            "consensus": code.consensus,
            "similarity": [[round(v, 4) for v in r] for r in code.matrix],
            "diffs": code.diffs,
        },
    }


def counts(answers: list[Answer]) -> dict[str, int]:
    found: dict[str, int] = {}
    for a in answers:
        found[a.status.value] = found.get(a.status.value, 0) + 1
    return found


# -- Markdown -------------------------------------------------------------------------------------


def report_markdown(report: Report) -> str:
    run = report.run
    out = [f"# forge fanout {run.run_id}", "", "**Prompt:**", "", _quote(run.prompt), ""]
    if run.settings.system:
        out += ["**System:**", "", _quote(run.settings.system), ""]
    out += _markdown_table(run.answers)
    out += ["", f"Total cost: {report.cost_text()}."]
    notes = _run_notes(run)
    if notes:
        out += ["", *notes]
    if run.roles:
        for role in run.roles:
            out += ["", f"## Role: {role}", ""]
            out += _markdown_comparison(report, report.by_role[role], level=3)
    else:
        out += ["", "## Agreement", "", *_markdown_comparison(report, report.comparison, 3)]
    out += _markdown_extras(report)
    return "\n".join(out).rstrip() + "\n"


def _markdown_table(answers: list[Answer]) -> list[str]:
    rows = [
        "| model | tier | status | first token | latency | tokens | tok/s | cost | answer |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for a in answers:
        cells = [
            a.key,
            a.tier or "-",
            a.label,
            seconds(a.ttft),
            seconds(a.latency),
            str(a.output_tokens or "-"),
            "-" if a.tokens_per_second is None else f"{a.tokens_per_second:.0f}",
            usd(a.cost_usd),
            summary_line(a),
        ]
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return rows


def _markdown_comparison(report: Report, c: Comparison, level: int) -> list[str]:
    if not c.keys:
        return [nothing_to_compare(c)]
    hashes = "#" * level
    reference = c.reference
    assert reference is not None
    out = [
        headline(c, f"**{reference}**"),
        "",
        *([f"Left out as empty (no words): {', '.join(c.empty)}.", ""] if c.empty else []),
        "Clusters: " + "; ".join("[" + ", ".join(cl.members) + "]" for cl in c.clusters),
        "",
    ]
    if c.matrix is not None and len(c.keys) > 1:
        out += [f"{hashes} Agreement matrix", ""]
        out.append("| | " + " | ".join(_cell(k) for k in c.keys) + " |")
        out.append("|---" * (len(c.keys) + 1) + "|")
        for key, row in zip(c.keys, c.matrix, strict=True):
            out.append(f"| {_cell(key)} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
        out.append("")
    out += [f"{hashes} {answer_title(c)} ({reference})", "", report.answer(reference).text, ""]
    if c.code is not None:
        out += [f"{hashes} Code", "", code_summary(c), ""]
        for key, diff in c.code.diffs.items():
            out += [f"`{key}` against `{c.code.consensus}`:", "", "```diff", diff, "```", ""]
    for key, d in c.diffs.items():
        out += [f"{hashes} {key} (similarity {d.similarity:.2f})", ""]
        if not d.text:
            out += [f"Identical to the {'consensus' if c.consensus else 'reference'}.", ""]
        elif d.style == "words":
            out += [d.text, ""]
        else:
            out += ["```diff", d.text, "```", ""]
    return out


def _markdown_extras(report: Report) -> list[str]:
    out: list[str] = []
    if report.verdict is not None:
        v = report.verdict
        out += ["", f"## Judge ({v.judge})", ""]
        out += [f"Best: **{v.best or '-'}**. {v.reason}"]
        if not v.valid:
            out += ["", f"_{v.note}_"]
        for d in v.disagreements:
            out.append(f"- {d.point} ({', '.join(d.answers)})")
    if report.synthesis is not None:
        s = report.synthesis
        out += ["", f"## Synthesis ({s.model})", ""]
        out += [s.text if s.text else f"_{s.note}_"]
        if s.unknown:
            out += ["", f"_Citations naming no model asked: {', '.join(s.unknown)}_"]
    if report.candidates is not None:
        out += ["", "## Validation", "", "| rank | model | result | checks | cost |"]
        out.append("|---|---|---|---|---|")
        for rank, c in enumerate(report.candidates, start=1):
            cells = [str(rank), c.key, c.status, c.summary, usd(c.cost_usd)]
            out.append("| " + " | ".join(_cell(x) for x in cells) + " |")
    return out


def headline(c: Comparison, reference: str) -> str:
    """One sentence on the agreement; `reference` is the reference key as the output shows it."""
    top = len(c.clusters[0].members)
    if c.reason == "one_answer":
        return f"One answer arrived ({reference}): there is nothing to agree or differ with."
    if c.consensus is not None and c.agreed:
        return (
            f"Consensus: {reference}, with {top} of {len(c.keys)} answers ({c.share:.0%}) in its "
            f"cluster (similarity at least {c.threshold:g})."
        )
    if c.reason == "no_majority":
        return (
            f"No majority: the two largest clusters have {top} of {len(c.keys)} answers each, so "
            f"there is no consensus; diffs are against {reference}, the most central answer of "
            "the first cluster listed."
        )
    return (
        f"No consensus: no two answers reach similarity {c.threshold:g}; diffs are against the "
        f"most central answer, {reference}."
    )


def answer_title(c: Comparison) -> str:
    """What the answer diffs are against is, in a heading's words."""
    if c.reason == "one_answer":
        return "The only answer"
    return "Consensus answer" if c.consensus else "Reference answer (not a consensus)"


def nothing_to_compare(c: Comparison) -> str:
    if c.empty:
        return f"Every answer that arrived was empty ({', '.join(c.empty)}): nothing to compare."
    return "No answer arrived, so there is nothing to compare."


def code_summary(c: Comparison) -> str:
    code = c.code
    assert code is not None
    same = code.groups[0]
    text = (
        f"{len(code.keys)} answers contain code. "
        f"{len(same)} wrote the same code once formatting and comments are set aside: "
        + ", ".join(same)
        + "."
    )
    others = [", ".join(g) for g in code.groups[1:]]
    return text + (f" Different code: {'; '.join(others)}." if others else "")


def _run_notes(run: FanoutRun) -> list[str]:
    notes = []
    if run.interrupted:
        notes.append("Interrupted: the answers that had arrived are kept; the rest were cancelled.")
    if run.deadline_passed:
        notes.append(
            f"The deadline ({run.settings.deadline:g}s) passed: unfinished answers are marked late."
        )
    return notes


# -- formatting shared by every output ------------------------------------------------------------


def summary_line(a: Answer) -> str:
    """What a table shows in its answer column: the first line (cut to fit), or the cause of a
    failure whole, since a cut cause hides what to do about it."""
    if a.status is Status.OK and not normalise(a.text):
        return "(empty: left out of the comparison)"
    if a.status in (Status.OK, Status.STREAMING) or (a.status is Status.LATE and a.text):
        line = a.first_line
        return line if len(line) <= FIRST_LINE_WIDTH else line[: FIRST_LINE_WIDTH - 1] + "…"
    return " ".join((a.cause or "").split())  # one paragraph, wrapped by the table


def usd(value: Decimal | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "$0"
    return f"${value:.4f}" if value >= Decimal("0.01") else f"${value:.6f}"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _quote(text: str) -> str:
    return "\n".join("> " + line for line in text.splitlines())


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
