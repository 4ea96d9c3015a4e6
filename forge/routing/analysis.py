"""Task analysis: what kind of work a task is, how hard, how critical, how much context it needs.

Deterministic and offline, well under a millisecond per task: a handful of precompiled regular
expressions and one pass of dictionary look-ups over the words. The parts, in order:
`signals` (files, symbols and pasted output in the text), `reading` (the words and the
vocabulary cues in them), `task_type`, `quality`, `complexity` (a score made of named terms,
and its band), `subtasks` (the actions a task holds, each analysed on its own). Inside a git
repository the files a task names are measured (`codebase`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from forge.routing.codebase import Codebase, NamedFile
from forge.routing.complexity import (
    BAND_RANGES,
    BANDS,
    MEDIUM_BELOW,
    SIMPLE_BELOW,
    TRIVIAL_BELOW,
    Band,
    band_of,
    complexity,
)
from forge.routing.learned import logit_of, repository_logit, sigmoid, text_features
from forge.routing.quality import Quality, judge_quality
from forge.routing.reading import Words, read_cues
from forge.routing.signals import READ_CHARS, TextSignals, read_signals, token_count
from forge.routing.subtasks import split_task, starts_with_action
from forge.routing.task_type import classify_type
from forge.routing.vocabulary import TaskType

__all__ = [
    "BANDS",
    "MEDIUM_BELOW",
    "SIMPLE_BELOW",
    "TRIVIAL_BELOW",
    "Band",
    "NamedFile",
    "Quality",
    "Subtask",
    "TaskAnalysis",
    "analyse",
    "band_of",
    "with_classification",
]

# Context a model needs: a named file's own size when the repository has it, else a typical
# file; the code around each named symbol; a map of the repository when nothing is named.
DEFAULT_FILE_TOKENS = 1500
SYMBOL_TOKENS = 300
REPOSITORY_MAP_TOKENS = 1000
# A long issue says what it asks in its first paragraphs: its words are read up to READ_CHARS
# (its length still counts in full), and only a task this short is split into parts.
SPLIT_UP_TO_TOKENS = 250


@dataclass(frozen=True)
class Subtask:
    index: int
    text: str
    after: tuple[int, ...]
    analysis: TaskAnalysis


@dataclass(frozen=True)
class TaskAnalysis:
    text: str
    type: TaskType
    type_reasons: tuple[str, ...]
    complexity_score: float
    band: Band
    complexity_reasons: tuple[str, ...]
    quality: Quality
    quality_reasons: tuple[str, ...]
    tokens: int
    context_tokens: int
    files: tuple[NamedFile, ...]
    symbols: tuple[str, ...]
    breadth_words: tuple[str, ...]
    errors: tuple[str, ...]
    subtasks: tuple[Subtask, ...] = ()
    # "heuristic", or "model:ALIAS" when the router model's answer was used.
    classifier: str = "heuristic"
    classifier_note: str | None = None
    # The learned model's chance that this is hour-plus work (see `learned`), and why.
    difficulty: float = 0.0
    difficulty_reasons: tuple[str, ...] = ()
    pasted: tuple[str, ...] = ()  # what was pasted and kept out of the counts, described


def analyse(
    text: str,
    *,
    codebase: Codebase | None = None,
    files: Sequence[str] = (),
    split: bool = True,
) -> TaskAnalysis:
    """Analyse one task. `files` adds files named outside the text (a milestone's `files:`)."""
    signals = read_signals(text)
    named = tuple(dict.fromkeys([*files, *signals.files]))
    words = Words.read(signals.prose[:READ_CHARS])
    reading = read_cues(words.lowered, words.original)
    task_type, type_reasons = classify_type(words, reading, signals, named)
    measured = tuple(_measure(path, codebase) for path in named)
    parts = split_task(signals.prose) if split and _splittable(signals) else ()
    if len(parts) < 2:
        parts = ()
    quality, quality_reasons = judge_quality(reading, words.lowered, signals)
    # Only parts that ask for an action add work: "- full refund" in a list of cases to cover,
    # or "- #412 add jitter" in a list of merged changes, is an item of input, not a task.
    actions = sum(starts_with_action(part.text) for part in parts)
    score, complexity_reasons = complexity(task_type, signals, words, reading, measured, actions)
    features = text_features(score, signals, actions)
    learned = logit_of(features)
    repo_delta, repo_why = _repository(codebase, measured, signals) if codebase else (0.0, "")
    subtasks = tuple(
        Subtask(
            index=i,
            text=part.text,
            after=(i - 1,) if part.after_previous and i > 0 else (),
            analysis=analyse(part.text, codebase=codebase, split=False),
        )
        for i, part in enumerate(parts)
    )
    return TaskAnalysis(
        text=text,
        type=task_type,
        type_reasons=type_reasons,
        complexity_score=score,
        band=band_of(score),
        complexity_reasons=complexity_reasons,
        quality=quality,
        quality_reasons=quality_reasons,
        tokens=token_count(text),
        context_tokens=_context_tokens(measured, signals.symbols),
        files=measured,
        symbols=signals.symbols,
        breadth_words=tuple(reading.breadth),
        errors=signals.errors,
        subtasks=subtasks if len(subtasks) > 1 else (),
        difficulty=round(sigmoid(learned + repo_delta), 3),
        difficulty_reasons=_difficulty_reasons(features, repo_why),
        pasted=_describe_pasted(signals),
    )


def training_row(text: str) -> dict[str, float]:
    """The learned model's inputs for one text (scripts/train_router.py trains on them)."""
    signals = read_signals(text)
    words = Words.read(signals.prose[:READ_CHARS])
    reading = read_cues(words.lowered, words.original)
    named = signals.files
    task_type, _ = classify_type(words, reading, signals, named)
    measured = tuple(_measure(path, None) for path in named)
    parts = split_task(signals.prose) if _splittable(signals) else ()
    actions = sum(starts_with_action(part.text) for part in parts) if len(parts) > 1 else 0
    score, _ = complexity(task_type, signals, words, reading, measured, actions)
    return text_features(score, signals, actions)


# Symbols looked up in a repository (one `git grep` each), in the order the task names them.
MAX_SYMBOL_LOOKUPS = 3
MAX_TRACE_FILES = 3


def _repository(
    codebase: Codebase, measured: tuple[NamedFile, ...], signals: TextSignals
) -> tuple[float, str]:
    """What the repository says of the files the task, its traceback and its symbols name."""
    found = {f.path: f for f in measured if f.found}
    named: list[str] = []
    if signals.pasted is not None:
        # The innermost frames are nearest the failure.
        named += [p for p in signals.pasted.trace_files if p.endswith(".py")][-MAX_TRACE_FILES:]
    named += list(signals.symbols[:MAX_SYMBOL_LOOKUPS])
    for name in named:
        path = name if name.endswith(".py") else codebase.defining(name)
        if path is None:
            continue
        facts = codebase.facts(path)
        if facts is not None and facts.path not in found:
            found[facts.path] = _measure(facts.path, codebase)
    files = tuple(found.values())
    return repository_logit(files, codebase.tested(files))


def _splittable(signals: TextSignals) -> bool:
    return token_count(signals.prose) <= SPLIT_UP_TO_TOKENS


def _difficulty_reasons(features: dict[str, float], repo_why: str) -> tuple[str, ...]:
    tokens = round(2 ** features["log_prose_tokens"] - 1)
    found = [
        f"{tokens} tokens of the author's own words",
        f"hand score {features['hand_score']:.2f}",
    ]
    code = round(2 ** features["code_lines"] - 1)
    if code:
        found.append(f"{code} lines of code or output")
    if repo_why:
        found.append(repo_why)
    return tuple(found)


def _describe_pasted(signals: TextSignals) -> tuple[str, ...]:
    p = signals.pasted
    if p is None:
        return ()
    found = []
    if p.template_lines or p.checkboxes:
        found.append(f"issue template ({p.template_lines + p.checkboxes} lines)")
    if p.version_lines:
        found.append(f"version dump ({p.version_lines} lines)")
    if p.tracebacks:
        found.append(f"traceback ({p.traceback_lines} lines)")
    if p.repl_lines:
        found.append(f"interpreter session ({p.repl_lines} lines)")
    return tuple(found)


def with_classification(
    analysis: TaskAnalysis, task_type: TaskType, band: Band, model: str
) -> TaskAnalysis:
    """The analysis with a classifier's type and band; the score moves into the band's range."""
    low, high = BAND_RANGES[band]
    score = min(max(analysis.complexity_score, low), high - 0.001 if band != "complex" else high)
    said = f"classifier {model} answered"
    return replace(
        analysis,
        type=task_type,
        type_reasons=(f"{said} {task_type}", f"the heuristic said {analysis.type}"),
        band=band,
        complexity_score=round(score, 3),
        complexity_reasons=(
            f"{said} {band}",
            f"the heuristic said {analysis.band} ({analysis.complexity_score:.2f})",
            *analysis.complexity_reasons,
        ),
        classifier=f"model:{model}",
    )


def _measure(path: str, codebase: Codebase | None) -> NamedFile:
    facts = codebase.facts(path) if codebase is not None else None
    if facts is None:
        return NamedFile(path, False, None, None, DEFAULT_FILE_TOKENS)
    tokens = max(1, facts.size_bytes // 4)
    return NamedFile(facts.path, True, facts.lines, facts.referenced_by, tokens)


def _context_tokens(files: tuple[NamedFile, ...], symbols: tuple[str, ...]) -> int:
    if not files and not symbols:
        return REPOSITORY_MAP_TOKENS
    return sum(f.tokens for f in files) + SYMBOL_TOKENS * len(symbols)
