"""The optional classifier: ask the `[local_models] router` model for a task's type and band.

Only `forge route --classifier model` calls it. The answer must be one strict JSON object,
`{"type": ..., "complexity": ...}` with known values; a failed call, text that is not that
object, or an unknown value leaves the heuristic's answer in place, with the reason noted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import cast

from forge.config.schema import ForgeConfig
from forge.errors import ForgeError, UsageError
from forge.ledger.store import Ledger
from forge.routing.analysis import BANDS, Band, TaskAnalysis, with_classification
from forge.routing.vocabulary import TYPES, TaskType

PROMPT = """Classify this software engineering task.
Answer with exactly one JSON object and nothing else:
{{"type": "<{types}>", "complexity": "<{bands}>"}}

Task:
{task}"""
# Models often wrap JSON in a Markdown fence even when told not to; that much is tolerated.
FENCED = re.compile(r"^```(?:json)?\s*\n(.*)\n```$", re.DOTALL)
MAX_ANSWER_TOKENS = 60
DEADLINE_SECONDS = 60.0


@dataclass(frozen=True)
class Classification:
    type: TaskType
    band: Band


def parse_answer(text: str) -> Classification:
    """The classification in a model's answer; ValueError says what was wrong with it."""
    stripped = text.strip()
    fenced = FENCED.match(stripped)
    if fenced:
        stripped = fenced.group(1).strip()
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError:
        raise ValueError(f"not JSON: {_clip(text)!r}") from None
    if not isinstance(data, dict):
        raise ValueError(f"not a JSON object: {_clip(text)!r}")
    task_type, band = data.get("type"), data.get("complexity")
    if task_type not in TYPES:
        raise ValueError(f"unknown type {task_type!r}")
    if band not in BANDS:
        raise ValueError(f"unknown complexity {band!r}")
    return Classification(cast(TaskType, task_type), cast(Band, band))


def router_model(config: ForgeConfig) -> str:
    alias = config.local_models.router
    if alias is None:
        raise UsageError(
            "--classifier model needs a router model: set [local_models] router = "
            '"ALIAS" in forge.toml'
        )
    return alias


def classify(
    config: ForgeConfig, ledger: Ledger, analyses: Sequence[TaskAnalysis]
) -> list[TaskAnalysis]:
    """Each analysis with the router model's type and band, or unchanged with the reason."""
    import anyio

    alias = router_model(config)
    return anyio.run(_classify_all, config, ledger, alias, list(analyses))


async def _classify_all(
    config: ForgeConfig, ledger: Ledger, alias: str, analyses: list[TaskAnalysis]
) -> list[TaskAnalysis]:
    from forge.providers.client import ModelClient

    out: list[TaskAnalysis] = []
    async with ModelClient(config, ledger=ledger) as client:
        for analysis in analyses:
            prompt = PROMPT.format(types="|".join(TYPES), bands="|".join(BANDS), task=analysis.text)
            try:
                done = await client.complete(
                    alias,
                    prompt,
                    max_tokens=MAX_ANSWER_TOKENS,
                    temperature=0,
                    deadline=DEADLINE_SECONDS,
                    task_id="route-classifier",
                )
                found = parse_answer(done.text)
            except ForgeError as exc:
                out.append(_fallback(analysis, alias, f"the call failed: {exc}"))
                continue
            except ValueError as exc:
                out.append(_fallback(analysis, alias, f"its answer was unusable ({exc})"))
                continue
            out.append(with_classification(analysis, found.type, found.band, alias))
    return out


def _fallback(analysis: TaskAnalysis, alias: str, why: str) -> TaskAnalysis:
    note = f"classifier {alias}: {why}; the heuristic's answer is used"
    return replace(analysis, classifier_note=note)


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
