"""A route decision as people read it (explanation lines) and as scripts read it (JSON).

`forge route --json` prints `decision_json()`:

    {
      "task": str,                      # the task's text
      "analysis": {
        "type": str,                    # simple_edit | bug_fix | refactor | feature | test |
                                        # docs | review | architecture | planning | question
        "type_reasons": [str],
        "complexity_score": float,      # 0..1; trivial < 0.25 <= simple < 0.45 <= medium < 0.7
        "band": str,                    # trivial | simple | medium | complex
        "complexity_reasons": [str],
        "quality": str,                 # standard | critical
        "quality_reasons": [str],       # e.g. "authentication ('jwt')"
        "tokens": int,                  # the task's own text
        "context_tokens": int,          # files and symbols it names (or a repository map)
        "files": [{"path", "found", "lines", "referenced_by", "tokens"}],
        "symbols": [str], "breadth_words": [str], "errors": [str],
        "classifier": str,              # "heuristic" or "model:ALIAS"
        "classifier_note": str | null,  # why a classifier answer was not used
        "difficulty": float,            # 0..1, the learned chance this is hour-plus work
        "difficulty_reasons": [str],
        "pasted": [str]                 # templates, version dumps, tracebacks left out
      },
      "route": {
        "ladder_name": str,             # "ladder", a task type, or "critical"
        "ladder": [str],
        "start_reason": str,            # "medium", "critical: the top of the ladder", ...
        "tier": str,                    # the first rung
        "model": str | null,            # null when no model on the ladder can take it
        "why": str,                     # why this model inside the rung
        "strategy": str,
        "pinned": "tier" | "model" | null,
        "skipped": [{"rung", "model", "reason"}],
        "escalation": [{"tier", "model", "why", "skipped"}],
        "history": [str],               # what the ledger's history changed or suggests
        "notes": [str],
        "chances": [{"tier", "probability", "prior", "successes", "samples"}]
                                        # per rung, the chance a first attempt passes: the
                                        # learned model's prior moved by this repository's
                                        # first attempts on that rung (successes of samples)
      },
      "estimate": {
        "input_tokens": int,            # per attempt: context_tokens + tokens
        "output_tokens": int,           # assumed per attempt (a typical answer)
        "first_attempt_usd": str | null,   # a decimal string; null when unpriced or no model
        "worst_case_usd": str,          # every rung tried max_attempts_per_tier times, at most
                                        # max_total_attempts in all; priced attempts only
        "worst_case_attempts": int,
        "unpriced_models": [str],       # models whose attempts the worst case cannot price
        "budget_left_usd": str | null,  # today's stop threshold minus today's spend
        "over_budget": bool             # the worst case exceeds what is left today
      },
      "subtasks": [{"index", "text", "after": [int], "type", "band", "quality", "tier",
                    "model", "first_attempt_usd"}]
    }

Batch lines (`--batch`) are this object plus `"id"`; a line that cannot be routed is
`{"id": ..., "line": n, "error": "..."}`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from forge.routing.analysis import NamedFile, TaskAnalysis
from forge.routing.decision import RouteDecision, RungChoice, Skip
from forge.routing.estimate import Estimate, money

ARROW = "\u2192"


def explain(decision: RouteDecision) -> list[str]:
    """One line per part of the decision, each saying why."""
    a = decision.analysis
    lines = [
        f"type={a.type}: {', '.join(a.type_reasons)}",
        f"complexity={a.band} ({a.complexity_score:.2f}): {', '.join(a.complexity_reasons)}",
        _quality_line(a),
        f"context: ~{a.context_tokens:,} tokens ({_context_basis(a)})",
    ]
    if a.classifier_note:
        lines.append(a.classifier_note)
    lines.append(f"ladder ({decision.ladder_name}): {f' {ARROW} '.join(decision.ladder)}")
    lines.append(_first_line(decision))
    lines.append(_chances_line(decision))
    lines += decision.history
    lines.append(_escalation_line(decision))
    lines.append(_estimate_line(decision))
    lines += decision.notes
    return lines


def _chances_line(d: RouteDecision) -> str:
    a = d.analysis
    why = "; ".join(a.difficulty_reasons)
    pasted = f"; left out of the counts: {', '.join(a.pasted)}" if a.pasted else ""
    return (
        f"chance the first attempt passes: {', '.join(str(c) for c in d.chances)} "
        f"(learned difficulty {a.difficulty:.2f}: {why}{pasted})"
    )


def _quality_line(a: TaskAnalysis) -> str:
    if a.quality == "critical":
        return f"quality=critical: touches {'; '.join(a.quality_reasons)}"
    return "quality=standard: touches nothing critical"


def _context_basis(a: TaskAnalysis) -> str:
    if not a.files and not a.symbols:
        return "nothing named: a map of the repository"
    parts = []
    if a.files:
        found = sum(1 for f in a.files if f.found)
        noun = "file" if len(a.files) == 1 else "files"
        parts.append(f"{len(a.files)} {noun} named, {found} measured in the repository")
    if a.symbols:
        parts.append(f"{len(a.symbols)} symbols: {', '.join(a.symbols[:4])}")
    return "; ".join(parts)


def _first_line(d: RouteDecision) -> str:
    first = d.first
    if first.model is None:
        text = f"first rung: {first.rung} ({d.start_reason}) {ARROW} no usable model"
    else:
        how = "" if d.pinned == "model" else f" via {d.strategy} strategy ({first.why})"
        text = f"first rung: {first.rung} ({d.start_reason}) {ARROW} model {first.model}{how}"
    if first.skipped:
        text += f"; skipped: {skipped_text(first.skipped)}"
    return text


def skipped_text(skips: tuple[Skip, ...]) -> str:
    """Skips grouped by reason: "local, free because no model is configured on it; ..."."""
    by_reason: dict[str, list[str]] = {}
    for s in skips:
        by_reason.setdefault(s.reason, []).append(s.model or s.rung)
    return "; ".join(f"{', '.join(names)} because {reason}" for reason, names in by_reason.items())


def _escalation_line(d: RouteDecision) -> str:
    if not d.escalation:
        return f"escalation: none after {d.first.rung}"
    steps = [_rung_text(d.first), *(_rung_text(c) for c in d.escalation)]
    return f"escalation: {f' {ARROW} '.join(steps)}"


def _rung_text(choice: RungChoice) -> str:
    if choice.model is None:
        own = tuple(s for s in choice.skipped if s.rung == choice.rung)
        reasons = "; ".join(dict.fromkeys(s.reason for s in own)) or "no usable model"
        return f"{choice.rung} (skipped: {reasons})"
    return choice.rung if choice.model == choice.rung else f"{choice.rung} ({choice.model})"


def _estimate_line(d: RouteDecision) -> str:
    e = d.estimate
    if d.first.model is None:
        return "estimate: none (no model to price)"
    worst = money(e.worst_case_usd) if e.worst_case_known else _partial(e)
    left = "no daily limit" if e.budget_left_usd is None else money(e.budget_left_usd)
    text = (
        f"estimate: first attempt {money(e.first_attempt_usd)}, worst case {worst} "
        f"({e.worst_case_attempts} attempts), budget left today {left} "
        f"(~{e.input_tokens:,} input and ~{e.output_tokens:,} output tokens per attempt, "
        "a typical answer)"
    )
    if e.over_budget:
        text += "; the worst case is more than today's budget has left"
    return text


def _partial(e: Estimate) -> str:
    if e.worst_case_usd == 0:
        return "unpriced"
    return f"{money(e.worst_case_usd)} plus unpriced attempts on {', '.join(e.unpriced)}"


# -- JSON ----------------------------------------------------------------------------------


def decision_json(d: RouteDecision) -> dict[str, Any]:
    return {
        "task": d.analysis.text,
        "analysis": analysis_json(d.analysis),
        "route": route_json(d),
        "estimate": estimate_json(d.estimate, priced=d.first.model is not None),
        "subtasks": [],
    }


def analysis_json(a: TaskAnalysis) -> dict[str, Any]:
    return {
        "type": a.type,
        "type_reasons": list(a.type_reasons),
        "complexity_score": a.complexity_score,
        "band": a.band,
        "complexity_reasons": list(a.complexity_reasons),
        "quality": a.quality,
        "quality_reasons": list(a.quality_reasons),
        "tokens": a.tokens,
        "context_tokens": a.context_tokens,
        "files": [_file_json(f) for f in a.files],
        "symbols": list(a.symbols),
        "breadth_words": list(a.breadth_words),
        "errors": list(a.errors),
        "classifier": a.classifier,
        "classifier_note": a.classifier_note,
        "difficulty": a.difficulty,
        "difficulty_reasons": list(a.difficulty_reasons),
        "pasted": list(a.pasted),
    }


def route_json(d: RouteDecision) -> dict[str, Any]:
    return {
        "ladder_name": d.ladder_name,
        "ladder": list(d.ladder),
        "start_reason": d.start_reason,
        "tier": d.first.rung,
        "model": d.first.model,
        "why": d.first.why,
        "strategy": d.strategy,
        "pinned": d.pinned,
        "skipped": [_skip_json(s) for s in d.first.skipped],
        "escalation": [
            {
                "tier": c.rung,
                "model": c.model,
                "why": c.why,
                "skipped": [_skip_json(s) for s in c.skipped],
            }
            for c in d.escalation
        ],
        "history": list(d.history),
        "notes": list(d.notes),
        "chances": [
            {
                "tier": c.rung,
                "probability": c.probability,
                "prior": c.prior,
                "successes": c.successes,
                "samples": c.samples,
            }
            for c in d.chances
        ],
    }


def estimate_json(e: Estimate, *, priced: bool = True) -> dict[str, Any]:
    return {
        "input_tokens": e.input_tokens,
        "output_tokens": e.output_tokens,
        "first_attempt_usd": _decimal(e.first_attempt_usd) if priced else None,
        "worst_case_usd": _decimal(e.worst_case_usd),
        "worst_case_attempts": e.worst_case_attempts,
        "unpriced_models": list(e.unpriced),
        "budget_left_usd": _decimal(e.budget_left_usd),
        "over_budget": e.over_budget,
    }


def subtask_json(index: int, after: tuple[int, ...], d: RouteDecision) -> dict[str, Any]:
    return {
        "index": index,
        "text": d.analysis.text,
        "after": list(after),
        "type": d.analysis.type,
        "band": d.analysis.band,
        "quality": d.analysis.quality,
        "tier": d.first.rung,
        "model": d.first.model,
        "first_attempt_usd": _decimal(d.estimate.first_attempt_usd),
    }


def _file_json(f: NamedFile) -> dict[str, Any]:
    return {
        "path": f.path,
        "found": f.found,
        "lines": f.lines,
        "referenced_by": f.referenced_by,
        "tokens": f.tokens,
    }


def _skip_json(s: Skip) -> dict[str, Any]:
    return {"rung": s.rung, "model": s.model, "reason": s.reason}


def _decimal(value: Decimal | None) -> str | None:
    """Fixed notation ("0.000012", never "1.2E-5"): scripts compare these as decimals."""
    if value is None:
        return None
    return format(value.normalize(), "f") if value else "0"
