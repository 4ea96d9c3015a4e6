"""`--html FILE`: one self-contained page (inline CSS, no script, no external asset).

The page's Content-Security-Policy forbids every fetch, so even a browser that would follow a
link in a model's answer loads nothing: the answers side by side, each diff against the
consensus, the agreement matrix as a heat map, and per-model latency and cost as bars.
"""

from __future__ import annotations

import re
from decimal import Decimal
from html import escape

from forge.fanout.answers import Answer
from forge.fanout.comparison import Comparison, diff_line_kind
from forge.fanout.report import (
    Report,
    code_summary,
    headline,
    nothing_to_compare,
    seconds,
    summary_line,
    usd,
)

HEAT_MAP_MAX = 60  # answers; a larger matrix is unreadable as a page
POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'"
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #1d232a;
  background: #fafbfc }
h1 { font-size: 20px }
h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #dde2e8; padding-bottom: 4px }
h3 { font-size: 15px; margin: 0 0 6px }
table { border-collapse: collapse; margin: 8px 0 }
td, th { border: 1px solid #dde2e8; padding: 3px 8px; text-align: left; vertical-align: top }
th { background: #eef1f5 }
td.num { text-align: right; font-variant-numeric: tabular-nums }
pre { white-space: pre-wrap; word-break: break-word; background: #fff; margin: 0;
  border: 1px solid #e3e7ec; padding: 8px; font: 12.5px/1.4 ui-monospace, monospace }
.prompt { background: #fff; border-left: 4px solid #6b8afd; padding: 8px 12px;
  white-space: pre-wrap }
.answers { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr));
  gap: 12px }
.answer { background: #fff; border: 1px solid #dde2e8; border-radius: 6px; padding: 10px }
.answer.consensus { border: 2px solid #2f9e44 }
.status { font-size: 12px; padding: 1px 6px; border-radius: 8px; background: #e9ecef }
.s-ok { background: #d3f9d8 }
.s-failed, .s-refused { background: #ffe3e3 }
.s-timeout, .s-late { background: #fff3bf }
.bar { height: 10px; background: #6b8afd; border-radius: 2px; min-width: 1px }
.bar.cost { background: #f59f00 }
.add { background: #e6ffec; color: #1a7f37 }
.del { background: #ffebe9; color: #cf222e }
.hunk { color: #0969da }
.heat td.num { min-width: 44px }
.note { color: #5c6670 }
"""


def report_html(report: Report) -> str:
    run = report.run
    title = f"forge fanout {run.run_id}"
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<div class="prompt" id="prompt">{escape(run.prompt)}</div>',
        _notes(report),
        "<h2>Models</h2>",
        _models_table(run.answers),
    ]
    if run.roles:
        for role, system in run.roles.items():
            body += [f"<h2>Role: {escape(role)}</h2>", f'<p class="note">{escape(system)}</p>']
            answers = [a for a in run.answers if a.role == role]
            body += _comparison(report, report.by_role[role], answers)
    else:
        body += _comparison(report, report.comparison, run.answers)
    body += _extras(report)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _notes(report: Report) -> str:
    run = report.run
    parts = [f"{len(run.answers)} models asked", f"{len(run.answered())} answered"]
    parts.append(f"total cost {report.cost_text()}")
    parts.append(f"{run.duration:.2f}s")
    if run.interrupted:
        parts.append("interrupted: unfinished answers were cancelled")
    if run.deadline_passed and run.settings.deadline is not None:
        parts.append(f"deadline {run.settings.deadline:g}s passed: unfinished answers are late")
    return f'<p class="note">{escape(" · ".join(parts))}</p>'


def _models_table(answers: list[Answer]) -> str:
    slowest = max((a.latency or 0.0 for a in answers), default=0.0) or 1.0
    dearest = max((a.cost_usd or Decimal(0) for a in answers), default=Decimal(0)) or Decimal(1)
    rows = [
        '<table id="models"><tr><th>model</th><th>tier</th><th>status</th><th>first token</th>'
        "<th>latency</th><th></th><th>tokens</th><th>tok/s</th><th>cost</th><th></th>"
        "<th>answer</th></tr>"
    ]
    for a in answers:
        latency_bar = 100 * (a.latency or 0.0) / slowest
        cost_bar = float(100 * (a.cost_usd or Decimal(0)) / dearest)
        speed = a.tokens_per_second
        rows.append(
            "<tr>"
            f"<td>{escape(a.key)}</td><td>{escape(a.tier or '-')}</td>"
            f'<td><span class="status s-{a.status.value}">{a.label}</span></td>'
            f'<td class="num">{seconds(a.ttft)}</td><td class="num">{seconds(a.latency)}</td>'
            f'<td style="width:120px"><div class="bar" style="width:{latency_bar:.0f}%"></div></td>'
            f'<td class="num">{a.output_tokens or "-"}</td>'
            f'<td class="num">{"-" if speed is None else f"{speed:.0f}"}</td>'
            f'<td class="num">{usd(a.cost_usd)}</td>'
            f'<td style="width:120px"><div class="bar cost" style="width:{cost_bar:.0f}%">'
            "</div></td>"
            f"<td>{escape(summary_line(a))}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _comparison(report: Report, c: Comparison, answers: list[Answer]) -> list[str]:
    out = ["<h2>Agreement</h2>"]
    if not c.keys:
        return [*out, f"<p>{escape(nothing_to_compare(c))}</p>"]
    consensus = c.consensus
    reference = c.reference or "-"
    before, after = headline(c, "\0").split("\0", 1)
    out.append(f"<p>{escape(before)}<strong>{escape(reference)}</strong>{escape(after)}</p>")
    if c.empty:
        out.append(
            f'<p class="note">Left out as empty (no words): {escape(", ".join(c.empty))}</p>'
        )
    clusters = "".join(f"<li>{escape(', '.join(cl.members))}</li>" for cl in c.clusters)
    out.append(f"<p>Clusters:</p><ol>{clusters}</ol>")
    out.append(_heat_map(c))
    out.append("<h2>Answers side by side</h2>")
    out.append(_answers_grid(answers, consensus))
    if c.code is not None:
        out += ["<h2>Code</h2>", f"<p>{escape(code_summary(c))}</p>"]
        for key, diff in c.code.diffs.items():
            out += [f"<h3>{escape(key)} against {escape(c.code.consensus)}</h3>", _diff(diff)]
    against = "the consensus" if consensus else f"the reference ({reference}), not a consensus"
    out.append(f"<h2>Diffs against {escape(against)}</h2>")
    for key, d in c.diffs.items():
        out.append(
            f'<h3>{escape(key)} <span class="note">similarity {d.similarity:.2f}</span></h3>'
        )
        if not d.text:
            out.append(f'<p class="note">Identical to {escape(against)}.</p>')
        else:
            out.append(_diff(d.text) if d.style == "lines" else _word_diff(d.text))
    return out


def _heat_map(c: Comparison) -> str:
    if c.matrix is None or len(c.keys) > HEAT_MAP_MAX:
        return (
            '<p class="note" id="agreement-matrix">Too many answers for a readable matrix; '
            "`forge fanout --show RUN --json` has it in full.</p>"
        )
    head = "".join(f"<th>{escape(k)}</th>" for k in c.keys)
    rows = [f'<table class="heat" id="agreement-matrix"><tr><th></th>{head}</tr>']
    for key, row in zip(c.keys, c.matrix, strict=True):
        cells = "".join(
            f'<td class="num" style="background:{_colour(v)}" title="{v:.3f}">{v:.2f}</td>'
            for v in row
        )
        rows.append(f"<tr><th>{escape(key)}</th>{cells}</tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _colour(value: float) -> str:
    """Red (0) through yellow to green (1)."""
    return f"hsl({120 * max(0.0, min(1.0, value)):.0f},70%,78%)"


def _answers_grid(answers: list[Answer], consensus: str | None) -> str:
    cards = []
    for a in answers:
        extra = " consensus" if a.key == consensus else ""
        body = a.text if a.text else (a.cause or "")
        cards.append(
            f'<div class="answer{extra}" data-model="{escape(a.key)}">'
            f'<h3>{escape(a.key)} <span class="status s-{a.status.value}">{a.label}'
            f"</span></h3><pre>{escape(body)}</pre></div>"
        )
    return '<div class="answers">' + "\n".join(cards) + "</div>"


def _diff(text: str) -> str:
    lines = []
    for line in text.splitlines():
        cls = diff_line_kind(line)
        lines.append(f'<span class="{cls}">{escape(line)}</span>' if cls else escape(line))
    return '<pre class="diff">' + "\n".join(lines) + "</pre>"


def _word_diff(text: str) -> str:
    out = []
    for piece in re.split(r"(\[-.*?-\]|\{\+.*?\+\})", text):
        if piece.startswith("[-") and piece.endswith("-]"):
            out.append(f'<span class="del">{escape(piece)}</span>')
        elif piece.startswith("{+") and piece.endswith("+}"):
            out.append(f'<span class="add">{escape(piece)}</span>')
        else:
            out.append(escape(piece))
    return '<pre class="diff">' + "".join(out) + "</pre>"


def _extras(report: Report) -> list[str]:
    out: list[str] = []
    if report.verdict is not None:
        v = report.verdict
        out += [f"<h2>Judge: {escape(v.judge)}</h2>"]
        out.append(f"<p>Best: <strong>{escape(v.best or '-')}</strong>. {escape(v.reason)}</p>")
        if not v.valid:
            out.append(f'<p class="note">{escape(v.note or "")}</p>')
        points = "".join(
            f"<li>{escape(d.point)} ({escape(', '.join(d.answers))})</li>" for d in v.disagreements
        )
        if points:
            out.append(f"<ul>{points}</ul>")
    if report.synthesis is not None:
        s = report.synthesis
        out += [
            f"<h2>Synthesis: {escape(s.model)}</h2>",
            f"<pre>{escape(s.text or s.note or '')}</pre>",
        ]
    if report.candidates is not None:
        out += ["<h2>Validation</h2>", '<table id="candidates"><tr><th>rank</th><th>model</th>']
        out[-1] += "<th>result</th><th>checks</th><th>cost</th></tr>"
        for rank, c in enumerate(report.candidates, start=1):
            out.append(
                f"<tr><td>{rank}</td><td>{escape(c.key)}</td><td>{escape(c.status)}</td>"
                f'<td>{escape(c.summary)}</td><td class="num">{usd(c.cost_usd)}</td></tr>'
            )
        out.append("</table>")
    return out
