"""The learned difficulty: a logistic model over the task's signals, trained offline.

`scripts/train_router.py` fits it on real issues with human difficulty labels and writes
`router_model.json` beside this file: a weight per named feature and the calibration of each
tier's first attempt. Here it is only applied: a dot product and a sigmoid, pure Python, a few
microseconds per task. The features are the hand rules' score and what the
text says once pasted material is out of it (see `pasted`), so a version table, a template or a
longer traceback does not change them; in a repository, what the named files are adds a fixed,
documented amount on top (the training data has no checkouts to learn it from).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from forge.routing.codebase import NamedFile
from forge.routing.signals import TextSignals, token_count

MODEL_FILE = Path(__file__).with_name("router_model.json")
# What the repository says about the named files, in log-odds: not learnable from the training
# set (issue texts without checkouts), so set by hand, in the range of the learned weights
# (asking for new work adds about 0.5).
REPO_LINES = ((3000, 0.6), (1000, 0.4), (300, 0.2))
REPO_IMPORTERS = ((40, 0.6), (15, 0.4), (5, 0.2))
REPO_UNTESTED = 0.2
# Asking for something new is more work than a reported crash with its message.
# (Substrings of the lowered text: one `in` each is much cheaper than a regular expression.)
NEW_WORK = (
    "add support", "support for", "feature request", "would be nice", "it would be",
    "new option", "allow", "implement", "enhancement", "propos",
)  # fmt: skip
CRASH = ("crash", "raises", "exception", "error")
COMMIT = re.compile(r"[0-9a-f](?<!\w.)[0-9a-f]{6,39}\b")  # a word of 7 to 40 hex digits
# The cues above are looked for in this much of the text (the start of an issue says what it is).
CUE_CHARS = 3000


@dataclass(frozen=True)
class Model:
    bias: float
    weights: dict[str, float]
    # The chance each tier's first attempt passes validation on work under an hour and on
    # hour-plus work; a task's chance mixes the two by its difficulty.
    tiers: dict[str, tuple[float, float]]
    trained_on: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Model:
        return cls(
            bias=float(data["bias"]),
            weights={k: float(v) for k, v in data["weights"].items()},
            tiers={k: (float(v[0]), float(v[1])) for k, v in data.get("tiers", {}).items()},
            trained_on=str(data.get("trained_on", "")),
        )


@cache
def model() -> Model:
    return Model.from_json(json.loads(MODEL_FILE.read_text(encoding="utf-8")))


def text_features(hand_score: float, signals: TextSignals, parts: int) -> dict[str, float]:
    """The features the model reads, all from the author's words and code, none from pastes."""
    prose_tokens = token_count(signals.prose)
    # The text without pastes, its code kept: "raises ValueError" is often in a snippet.
    text = (signals.pasted.text if signals.pasted is not None else signals.prose)[:CUE_CHARS]
    lowered = text.lower()
    return {
        "hand_score": hand_score,
        "log_prose_tokens": math.log2(1 + prose_tokens),
        "files": math.log2(1 + len(signals.files)),
        "symbols": math.log2(1 + len(signals.symbols)),
        "code_lines": math.log2(1 + min(signals.code_lines, 400)),
        "errors": float(bool(signals.errors)),
        "parts": math.log2(1 + parts),
        "question": float("?" in signals.prose),
        "new_work": float(any(cue in lowered for cue in NEW_WORK)),
        "crash": float(any(cue in lowered for cue in CRASH)),
        "links": math.log2(1 + text.count("http")),
        "commits": math.log2(1 + len(COMMIT.findall(text))),
    }


def logit_of(features: dict[str, float], m: Model | None = None) -> float:
    m = m or model()
    weights = m.weights
    return m.bias + sum(weights.get(name, 0.0) * value for name, value in features.items())


def repository_logit(files: tuple[NamedFile, ...], tested: dict[str, bool]) -> tuple[float, str]:
    """What the named files add in a repository, and the reason to show ("" when nothing)."""
    found = [f for f in files if f.found]
    if not found:
        return 0.0, ""
    lines = max(f.lines or 0 for f in found)
    importers = max(f.referenced_by or 0 for f in found)
    delta = next((d for at_least, d in REPO_LINES if lines >= at_least), 0.0)
    delta += next((d for at_least, d in REPO_IMPORTERS if importers >= at_least), 0.0)
    untested = [f.path for f in found if tested.get(f.path) is False]
    if untested:
        delta += REPO_UNTESTED
    if not delta:
        return 0.0, ""
    biggest = max(found, key=lambda f: (f.lines or 0, f.referenced_by or 0))
    why = f"{biggest.path}: {biggest.lines} lines, imported by {biggest.referenced_by} files"
    if untested:
        why += f"; no test names {untested[0]}"
    return delta, why


DEFAULT_TIERS = ("local", "free", "cheap", "premium")
# A ledger's record of a rung counts as this many tasks' worth against the model's prior.
PRIOR_WEIGHT = 4


def tier_chance(difficulty: float, position: int) -> float:
    """The model's chance that a first attempt on the default ladder's rung `position` passes."""
    under_hour, hour_plus = model().tiers[DEFAULT_TIERS[max(0, min(3, position))]]
    return (1 - difficulty) * under_hour + difficulty * hour_plus


def with_history(prior: float, successes: int, samples: int) -> float:
    """The prior chance moved by a rung's own first attempts in this repository."""
    return (PRIOR_WEIGHT * prior + successes) / (PRIOR_WEIGHT + samples)


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def logit(p: float) -> float:
    p = min(1 - 1e-6, max(1e-6, p))
    return math.log(p / (1 - p))
