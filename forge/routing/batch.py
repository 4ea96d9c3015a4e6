"""Batch routing: one JSON decision per input line, in input order.

The configuration and the fleet are read once. A large batch is spread over forked worker
processes, which inherit what was read, so each line costs only its analysis and decision;
results come back in the order the lines went in. A line that cannot be routed becomes an
error object for that line (`{"id", "line", "error"}`), never a crash.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from forge.errors import ForgeError
from forge.routing.analysis import analyse
from forge.routing.codebase import Codebase
from forge.routing.decision import Pins, Router
from forge.routing.report import decision_json, subtask_json

# Below this many lines (or characters of tasks), starting workers costs more than it saves.
PARALLEL_FROM = 2000
PARALLEL_FROM_CHARS = 400_000
CHUNK = 128
MAX_WORKERS = 8


@dataclass
class BatchRouter:
    router: Router
    codebase: Codebase | None
    pins: Pins

    def line(self, number: int, line: str) -> str:
        """The JSON line for input line `number`."""
        task_id: Any = None
        try:
            item = json.loads(line)
            if not isinstance(item, dict):
                raise ValueError('expected an object like {"id": ..., "text": ...}')
            task_id = item.get("id", number)
            text = item.get("text")
            if not isinstance(text, str) or not text.strip():
                raise ValueError('"text" must be a non-empty string')
            result = self._route(text)
        except (ValueError, ForgeError) as exc:
            return json.dumps({"id": task_id, "line": number, "error": str(exc)})
        return json.dumps({"id": task_id} | result, separators=(",", ":"), default=str)

    def _route(self, text: str) -> dict[str, Any]:
        analysis = analyse(text, codebase=self.codebase)
        decision = self.router.decide(analysis, self.pins)
        parts = [
            subtask_json(s.index, s.after, self.router.decide(s.analysis, self.pins))
            for s in analysis.subtasks
        ]
        return decision_json(decision) | {"subtasks": parts}


def default_workers(lines: int, chars: int = 0) -> int:
    small = lines < PARALLEL_FROM and chars < PARALLEL_FROM_CHARS
    if small or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


def route_lines(batch: BatchRouter, lines: Iterable[str], workers: int = 1) -> Iterator[str]:
    """The output lines for the non-blank input lines, in order (in parallel, a chunk of
    lines joined by newlines at a time)."""
    numbered = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    if workers <= 1:
        yield from (batch.line(n, line) for n, line in numbered)
        return
    global _WORKER_BATCH, _WORKER_LINES
    # Forked workers find the batch and the lines here, already loaded: only the (start, end)
    # of each chunk goes to them, and one string of output lines per chunk comes back.
    _WORKER_BATCH, _WORKER_LINES = batch, numbered
    chunks = [
        (start, min(start + CHUNK, len(numbered))) for start in range(0, len(numbered), CHUNK)
    ]
    # What was read so far stays out of the collector's sight: its passes would touch (and so
    # copy) the pages each forked worker shares with this process.
    gc.freeze()
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            yield from pool.imap(_route_chunk, chunks)
    finally:
        gc.unfreeze()
        _WORKER_BATCH, _WORKER_LINES = None, []


_WORKER_BATCH: BatchRouter | None = None
_WORKER_LINES: list[tuple[int, str]] = []


def _route_chunk(chunk: tuple[int, int]) -> str:
    assert _WORKER_BATCH is not None, "workers are forked after the batch is set"
    start, end = chunk
    return "\n".join(_WORKER_BATCH.line(*item) for item in _WORKER_LINES[start:end])
