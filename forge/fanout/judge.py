"""`--judge MODEL` and `--synthesize MODEL`: one more model reads the answers.

The judge sees the answers numbered, without model names (so a famous name cannot sway it), and
must reply with one JSON object: the best answer's number, why, and the points of disagreement.
A reply that is not that object gets one request to fix it; if that fails too, the verdict falls
back to the consensus and says so. The synthesis is a combined answer that cites, for each
claim, the models it came from (Mixture-of-Agents style). Both are ordinary calls: logged in the
ledger under the run and costed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from forge.errors import ForgeError
from forge.fanout.answers import Answer
from forge.fanout.code import FENCE
from forge.providers.client import ModelClient
from forge.providers.types import Completion, Message

JUDGE_SYSTEM = (
    "You compare answers that several assistants gave to the same request. You reply with one "
    "JSON object and nothing else: no prose, no code fence."
)
JUDGE_SHAPE = (
    '{"best": <number of the best answer>, "reason": "<one or two sentences>", '
    '"disagreements": [{"point": "<what the answers disagree on>", '
    '"answers": [<numbers of the answers on one side>]}]}'
)
SYNTHESIS_SYSTEM = (
    "You combine answers that several assistants gave to the same request into one answer."
)
CITATION = re.compile(r"\[([^\[\]\n]{1,200})\](?!\()")
JUDGE_MAX_TOKENS = 2048


@dataclass(frozen=True)
class Disagreement:
    point: str
    answers: tuple[str, ...]  # answer keys on one side of it


@dataclass(frozen=True)
class Verdict:
    judge: str
    best: str | None  # the answer key chosen (the consensus when the judge failed)
    reason: str
    disagreements: tuple[Disagreement, ...] = ()
    valid: bool = True  # False: the judge's reply was unusable and `best` is the fallback
    note: str | None = None  # why it fell back
    raw: str = ""
    cost_usd: Decimal | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "judge": self.judge,
            "best": self.best,
            "reason": self.reason,
            "disagreements": [
                {"point": d.point, "answers": list(d.answers)} for d in self.disagreements
            ],
            "valid": self.valid,
            "note": self.note,
            "raw": self.raw,
            "cost_usd": None if self.cost_usd is None else str(self.cost_usd),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verdict:
        return cls(
            judge=data["judge"],
            best=data["best"],
            reason=data["reason"],
            disagreements=tuple(
                Disagreement(d["point"], tuple(d["answers"])) for d in data["disagreements"]
            ),
            valid=data["valid"],
            note=data["note"],
            raw=data["raw"],
            cost_usd=None if data["cost_usd"] is None else Decimal(data["cost_usd"]),
        )


@dataclass(frozen=True)
class Synthesis:
    model: str
    text: str
    cited: tuple[str, ...] = ()  # answer keys the text cites
    unknown: tuple[str, ...] = ()  # citations that name no answer
    note: str | None = None  # why there is no synthesis
    cost_usd: Decimal | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "text": self.text,
            "cited": list(self.cited),
            "unknown_citations": list(self.unknown),
            "note": self.note,
            "cost_usd": None if self.cost_usd is None else str(self.cost_usd),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Synthesis:
        return cls(
            model=data["model"],
            text=data["text"],
            cited=tuple(data["cited"]),
            unknown=tuple(data["unknown_citations"]),
            note=data["note"],
            cost_usd=None if data["cost_usd"] is None else Decimal(data["cost_usd"]),
        )


@dataclass(frozen=True)
class Ballot:
    """A judge's reply once checked: answer numbers turned back into answer keys."""

    best: str
    reason: str
    disagreements: tuple[Disagreement, ...]


async def judge(
    client: ModelClient,
    model: str,
    prompt: str,
    answers: Sequence[Answer],
    fallback: str | None,
) -> Verdict:
    """Ask `model` for the best answer; `fallback` (the consensus) stands in if it cannot say."""
    keys = [a.key for a in answers]
    messages = [Message("system", JUDGE_SYSTEM), Message("user", judge_prompt(prompt, answers))]
    spent: list[Completion] = []
    problem = "no reply"
    for _ in range(2):
        try:
            reply = await client.complete(
                model, messages, temperature=0, max_tokens=JUDGE_MAX_TOKENS, task_id="judge"
            )
        except ForgeError as err:
            return _fallback(model, fallback, f"the judge could not answer: {err}", spent)
        spent.append(reply)
        ballot = read_ballot(reply.text, keys)
        if isinstance(ballot, Ballot):
            return Verdict(
                model,
                ballot.best,
                ballot.reason,
                ballot.disagreements,
                raw=reply.text,
                cost_usd=_cost(spent),
            )
        problem = ballot
        messages += [
            Message("assistant", reply.text),
            Message("user", f"That reply is not usable: {problem}. Reply with {JUDGE_SHAPE}"),
        ]
    return _fallback(model, fallback, f"the judge's reply was not valid JSON: {problem}", spent)


def judge_prompt(prompt: str, answers: Sequence[Answer]) -> str:
    parts = [f"The request:\n<request>\n{prompt}\n</request>\n"]
    for number, answer in enumerate(answers, start=1):
        parts.append(f"<answer number={number}>\n{answer.text}\n</answer>\n")
    parts.append(
        "Which answer is best: correct, complete and clear? Where do the answers disagree on "
        f"substance? Reply with exactly this JSON shape:\n{JUDGE_SHAPE}"
    )
    return "\n".join(parts)


def read_ballot(text: str, keys: Sequence[str]) -> Ballot | str:
    """The judge's reply checked against the shape, or what is wrong with it."""
    data = _json_object(text)
    if isinstance(data, str):
        return data
    best = _number(data.get("best"), len(keys))
    if best is None:
        return f'"best" must be an answer number from 1 to {len(keys)}'
    reason = data.get("reason", "")
    if not isinstance(reason, str):
        return '"reason" must be a string'
    raw_points = data.get("disagreements", [])
    if not isinstance(raw_points, list):
        return '"disagreements" must be a list'
    points = []
    for item in raw_points:
        if not isinstance(item, dict) or not isinstance(item.get("point"), str):
            return 'each disagreement must be an object with a "point" string'
        numbers = item.get("answers", [])
        if not isinstance(numbers, list):
            return 'a disagreement\'s "answers" must be a list of answer numbers'
        picked = [_number(n, len(keys)) for n in numbers]
        if any(p is None for p in picked):
            return f"a disagreement names an answer number outside 1 to {len(keys)}"
        points.append(Disagreement(item["point"], tuple(keys[p - 1] for p in picked if p)))
    return Ballot(keys[best - 1], reason, tuple(points))


async def synthesize(
    client: ModelClient, model: str, prompt: str, answers: Sequence[Answer]
) -> Synthesis:
    keys = [a.key for a in answers]
    messages = [
        Message("system", SYNTHESIS_SYSTEM),
        Message("user", synthesis_prompt(prompt, answers)),
    ]
    try:
        reply = await client.complete(model, messages, temperature=0, task_id="synthesis")
    except ForgeError as err:
        return Synthesis(model, "", note=f"the synthesis could not be made: {err}")
    cited, unknown = citations(reply.text, keys)
    return Synthesis(model, reply.text, cited, unknown, cost_usd=reply.cost.usd)


def synthesis_prompt(prompt: str, answers: Sequence[Answer]) -> str:
    parts = [f"The request:\n<request>\n{prompt}\n</request>\n"]
    for answer in answers:
        parts.append(f'<answer model="{answer.key}">\n{answer.text}\n</answer>\n')
    names = ", ".join(a.key for a in answers)
    parts.append(
        "Write the best single answer to the request, using only what these answers say. After "
        f"each claim, cite in square brackets the models it came from, e.g. [{answers[0].key}]. "
        "Where they disagree, say so and cite each side. Models you may cite: " + names + "."
    )
    return "\n".join(parts)


def citations(text: str, keys: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Answer keys cited in `text` (outside code blocks), and citations that name none."""
    prose = FENCE.sub("", text)
    known = set(keys)
    cited: dict[str, None] = {}
    unknown: dict[str, None] = {}
    for match in CITATION.finditer(prose):
        names = [n.strip() for n in match.group(1).split(",")]
        if not any(n in known for n in names) and any(" " in n for n in names):
            continue  # bracketed prose, not a citation
        for name in names:
            (cited if name in known else unknown)[name] = None
    return tuple(cited), tuple(unknown)


def _json_object(text: str) -> dict[str, Any] | str:
    body = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.S)
    if fenced:
        body = fenced.group(1)
    try:
        data = json.loads(body)
    except ValueError:
        start, end = body.find("{"), body.rfind("}")
        if start < 0 or end <= start:
            return "no JSON object found"
        try:
            data = json.loads(body[start : end + 1])
        except ValueError as exc:
            return f"invalid JSON ({exc})"
    if not isinstance(data, dict):
        return "the JSON is not an object"
    return data


def _number(value: Any, count: int) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and 1 <= value <= count else None


def _cost(spent: Sequence[Completion]) -> Decimal | None:
    costs = [c.cost.usd for c in spent]
    if any(c is None for c in costs):
        return None
    return sum((c for c in costs if c is not None), Decimal(0))


def _fallback(model: str, fallback: str | None, note: str, spent: Sequence[Completion]) -> Verdict:
    raw = spent[-1].text if spent else ""
    reason = (
        "the consensus answer, because the judge gave no usable verdict"
        if fallback is not None
        else "no answer chosen: the judge gave no usable verdict and the answers have no consensus"
    )
    return Verdict(model, fallback, reason, valid=False, note=note, raw=raw, cost_usd=_cost(spent))
