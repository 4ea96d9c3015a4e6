"""Whether a task is critical: a mistake there costs more than a premium model does.

Critical means it touches security, authentication or authorization, cryptography, payments,
production data, database migrations or a public API. The reasons quote the words that said so.
"""

from __future__ import annotations

from typing import Literal

from forge.routing.reading import CueReading
from forge.routing.signals import TextSignals
from forge.routing.vocabulary import (
    DATA_WORDS,
    MIGRATION_NOUNS,
    MIGRATION_VERBS,
    NOT_DATA_MIGRATION,
    PRODUCTION_WORDS,
)

Quality = Literal["standard", "critical"]


def judge_quality(
    reading: CueReading, lowered: list[str], signals: TextSignals
) -> tuple[Quality, tuple[str, ...]]:
    touched = dict(reading.critical)
    words = set(lowered)
    has_data = not DATA_WORDS.isdisjoint(words)
    if "migrations" not in touched:
        for index, word in enumerate(lowered):
            following = lowered[index + 1] if index + 1 < len(lowered) else ""
            noun = word in MIGRATION_NOUNS and following not in NOT_DATA_MIGRATION
            if noun or (word in MIGRATION_VERBS and has_data):
                touched["migrations"] = [word]
                break
    if "production data" not in touched and has_data:
        production = next((w for w in lowered if w in PRODUCTION_WORDS), None)
        if production is not None:
            touched["production data"] = [production]
    if signals.unsafe_sql:
        touched.setdefault("security", []).append("SQL built from strings")
    if not touched:
        return "standard", ()
    reasons = tuple(
        f"{category} ({', '.join(repr(w) for w in found[:3])})"
        for category, found in touched.items()
    )
    return "critical", reasons
