"""`--html FILE`: one self-contained page (inline CSS, no script, no external asset).

The page's Content-Security-Policy forbids every fetch, and a model's answer is rendered as
Markdown with no link or image left in it (`forge.fanout.safe_markdown`), so the page loads
nothing: the answers side by side, each diff against the consensus, the agreement matrix as a
heat map, and per-model latency and cost as bars. Every text a model or a server sent passes
through `forge.printable`, which shows control characters instead of passing them on.
"""

from __future__ import annotations

import re
from decimal import Decimal
from html import escape

from forge.fanout.answers import Answer, Status
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
from forge.fanout.safe_markdown import markdown_to_html
from forge.printable import printable

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
.s-consensus { background: #2f9e44; color: #fff }
th.bars, td.bars { width: 120px }
th.bars { font-weight: normal; font-size: 12px }
.bar { height: 10px; background: #6b8afd; border-radius: 2px; min-width: 1px }
.bar.cost { background: #f59f00 }
.add { background: #e6ffec; color: #1a7f37 }
.del { background: #ffebe9; color: #cf222e }
.hunk { color: #0969da }
pre.diff { margin-bottom: 14px }
.heat td.num { min-width: 44px }
.note { color: #5c6670 }
.cause { color: #a61e4d; white-space: pre-wrap; overflow-wrap: anywhere }
.md { overflow-wrap: anywhere }
.md > :first-child { margin-top: 0 }
.md p, .md ul, .md ol, .md blockquote, .md table, .md pre { margin: 6px 0 }
.md h4, .md h5, .md h6 { margin: 10px 0 4px; font-size: 14px }
.md h4 { font-size: 15px }
.md code { font: 12.5px ui-monospace, monospace; background: #f1f3f5; padding: 0 3px;
  border-radius: 3px }
.md pre code { background: none; padding: 0 }
.md blockquote { border-left: 3px solid #dde2e8; padding-left: 10px; color: #4a535c }
.link { text-decoration: underline dotted }
.url { color: #5c6670; font-size: 12px; overflow-wrap: anywhere }
"""


def report_html(report: Report) -> str:
    run = report.run
    title = f"forge fanout {run.run_id}"
    body = [
        f"<h1>{_text(title)}</h1>",
        f'<div class="prompt" id="prompt">{_text(run.prompt)}</div>',
        _notes(report),
        "<h2>Models</h2>",
        _models_table(run.answers),
    ]
    if run.roles:
        for role, system in run.roles.items():
            body += [f"<h2>Role: {_text(role)}</h2>", f'<p class="note">{_text(system)}</p>']
            answers = [a for a in run.answers if a.role == role]
            body += _comparison(report, report.by_role[role], answers)
    else:
        body += _comparison(report, report.comparison, run.answers)
    body += _extras(report)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_text(title)}</title><style>{STYLE}</style></head>\n<body>\n"
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
    return f'<p class="note">{_text(" · ".join(parts))}</p>'


def _models_table(answers: list[Answer]) -> str:
    slowest = max((a.latency or 0.0 for a in answers), default=0.0)
    dearest = max((a.cost_usd or Decimal(0) for a in answers), default=Decimal(0))
    rows = [
        '<table id="models"><tr><th>model</th><th>tier</th><th>status</th><th>first token</th>'
        '<th>latency</th><th class="bars">latency, full bar = slowest</th><th>tokens</th>'
        '<th>tok/s</th><th>cost</th><th class="bars">cost, full bar = dearest</th>'
        "<th>answer</th></tr>"
    ]
    for a in answers:
        latency_share = (a.latency or 0.0) / slowest if slowest else 0.0
        cost_share = float((a.cost_usd or Decimal(0)) / dearest) if dearest else 0.0
        speed = a.tokens_per_second
        rows.append(
            "<tr>"
            f"<td>{_text(a.key)}</td><td>{_text(a.tier or '-')}</td>"
            f'<td><span class="status s-{a.status.value}">{a.label}</span></td>'
            f'<td class="num">{seconds(a.ttft)}</td><td class="num">{seconds(a.latency)}</td>'
            + _bar("latency", latency_share, f"{seconds(a.latency)} of {seconds(slowest)}")
            + f'<td class="num">{a.output_tokens or "-"}</td>'
            f'<td class="num">{"-" if speed is None else f"{speed:.0f}"}</td>'
            f'<td class="num">{usd(a.cost_usd)}</td>'
            + _bar("cost", cost_share, f"{usd(a.cost_usd)} of {usd(dearest)}")
            + f"<td>{_text(summary_line(a))}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _bar(kind: str, share: float, title: str) -> str:
    """One bar cell; its tooltip says what the bar measures, against what."""
    return (
        f'<td class="bars"><div class="bar {kind}" style="width:{100 * share:.0f}%" '
        f'title="{kind} {title}"></div></td>'
    )


def _comparison(report: Report, c: Comparison, answers: list[Answer]) -> list[str]:
    """Agreement, the answers, and the diffs. A consensus is named only where there is one: not
    for a single answer, nor when the largest clusters tie (diffs are then against the
    reference, named as such)."""
    out = ["<h2>Agreement</h2>"]
    if not c.keys:
        out.append(f"<p>{_text(nothing_to_compare(c))}</p>")
    elif len(c.keys) == 1:
        out.append(
            f"<p>Only one answer to compare (<strong>{_text(c.keys[0])}</strong>), so there "
            "is no agreement to measure and no consensus.</p>"
        )
    else:
        out += _agreement(c)
    if c.empty and c.keys:
        out.append(f'<p class="note">Left out as empty (no words): {_text(", ".join(c.empty))}</p>')
    consensus = c.consensus if len(c.keys) > 1 else None
    out += ["<h2>Answers</h2>", _answers_grid(answers, consensus)]
    if len(c.keys) < 2:
        return out
    if c.code is not None:
        out += ["<h2>Code</h2>", f"<p>{_text(code_summary(c))}</p>"]
        for key, diff in c.code.diffs.items():
            out += [f"<h3>{_text(key)} against {_text(c.code.consensus)}</h3>", _diff(diff)]
    against = "the consensus" if consensus else f"the reference, {c.reference}"
    out.append(f"<h2>Diffs against {_text(against)}</h2>")
    for key, d in c.diffs.items():
        out.append(f'<h3>{_text(key)} <span class="note">similarity {d.similarity:.2f}</span></h3>')
        if not d.text:
            out.append(f'<p class="note">Identical to {_text(against)}.</p>')
        else:
            out.append(_diff(d.text) if d.style == "lines" else _word_diff(d.text))
    return out


def _agreement(c: Comparison) -> list[str]:
    before, after = headline(c, "\0").split("\0", 1)
    reference = c.reference or "-"
    clusters = "".join(f"<li>{_text(', '.join(cl.members))}</li>" for cl in c.clusters)
    return [
        f"<p>{_text(before)}<strong>{_text(reference)}</strong>{_text(after)}</p>",
        f"<p>Clusters:</p><ol>{clusters}</ol>",
        _heat_map(c),
    ]


def _heat_map(c: Comparison) -> str:
    if c.matrix is None or len(c.keys) > HEAT_MAP_MAX:
        return (
            '<p class="note" id="agreement-matrix">Too many answers for a readable matrix; '
            "`forge fanout --show RUN --json` has it in full.</p>"
        )
    head = "".join(f"<th>{_text(k)}</th>" for k in c.keys)
    rows = [f'<table class="heat" id="agreement-matrix"><tr><th></th>{head}</tr>']
    for key, row in zip(c.keys, c.matrix, strict=True):
        cells = "".join(
            f'<td class="num" style="background:{_colour(v)}" title="{v:.3f}">{v:.2f}</td>'
            for v in row
        )
        rows.append(f"<tr><th>{_text(key)}</th>{cells}</tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _colour(value: float) -> str:
    """Red (0) through yellow to green (1)."""
    return f"hsl({120 * max(0.0, min(1.0, value)):.0f},70%,78%)"


def _answers_grid(answers: list[Answer], consensus: str | None) -> str:
    cards = []
    for a in answers:
        mark = ""
        if a.key == consensus:
            mark = ' <span class="status s-consensus">consensus</span>'
        cards.append(
            f'<div class="answer{" consensus" if mark else ""}" data-model="{_text(a.key)}">'
            f'<h3>{_text(a.key)} <span class="status s-{a.status.value}">{a.label}</span>'
            f"{mark}</h3>{_answer_body(a)}</div>"
        )
    return '<div class="answers">' + "\n".join(cards) + "</div>"


def _answer_body(a: Answer) -> str:
    """The answer as Markdown; for one that brought no text, why not."""
    if a.text:
        return f'<div class="md">{markdown_to_html(a.text)}</div>'
    if a.status is Status.OK:
        return '<p class="note">(empty: left out of the comparison)</p>'
    return f'<p class="cause">{_text(a.cause or a.status.value)}</p>'


def _diff(text: str) -> str:
    lines = []
    for line in text.splitlines():
        cls = diff_line_kind(line)
        lines.append(f'<span class="{cls}">{_text(line)}</span>' if cls else _text(line))
    return '<pre class="diff">' + "\n".join(lines) + "</pre>"


def _word_diff(text: str) -> str:
    out = []
    for piece in re.split(r"(\[-.*?-\]|\{\+.*?\+\})", text):
        if piece.startswith("[-") and piece.endswith("-]"):
            out.append(f'<span class="del">{_text(piece)}</span>')
        elif piece.startswith("{+") and piece.endswith("+}"):
            out.append(f'<span class="add">{_text(piece)}</span>')
        else:
            out.append(_text(piece))
    return '<pre class="diff">' + "".join(out) + "</pre>"


def _extras(report: Report) -> list[str]:
    out: list[str] = []
    if report.verdict is not None:
        v = report.verdict
        out += [f"<h2>Judge: {_text(v.judge)}</h2>"]
        out.append(f"<p>Best: <strong>{_text(v.best or '-')}</strong>. {_text(v.reason)}</p>")
        if not v.valid:
            out.append(f'<p class="note">{_text(v.note or "")}</p>')
        points = "".join(
            f"<li>{_text(d.point)} ({_text(', '.join(d.answers))})</li>" for d in v.disagreements
        )
        if points:
            out.append(f"<ul>{points}</ul>")
    if report.synthesis is not None:
        s = report.synthesis
        out += [
            f"<h2>Synthesis: {_text(s.model)}</h2>",
            f'<div class="md">{markdown_to_html(s.text)}</div>'
            if s.text
            else f'<p class="note">{_text(s.note or "")}</p>',
        ]
    if report.candidates is not None:
        out += ["<h2>Validation</h2>", '<table id="candidates"><tr><th>rank</th><th>model</th>']
        out[-1] += "<th>result</th><th>checks</th><th>cost</th></tr>"
        for rank, c in enumerate(report.candidates, start=1):
            out.append(
                f"<tr><td>{rank}</td><td>{_text(c.key)}</td><td>{_text(c.status)}</td>"
                f'<td>{_text(c.summary)}</td><td class="num">{usd(c.cost_usd)}</td></tr>'
            )
        out.append("</table>")
    return out


def _text(text: str) -> str:
    """Text for the page: control characters shown (a model's or a server's text may hold
    any), then HTML-escaped."""
    return escape(printable(text))
