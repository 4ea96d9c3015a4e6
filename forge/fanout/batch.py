"""`--input prompts.jsonl`: prompts x models, graded, and a leaderboard per model.

Each line is a JSON object (or a bare JSON string: a prompt with nothing to grade it by):
`{"prompt": "...", "expected": "..."}` passes when the expected words appear, in order, in the
answer (case, punctuation and spacing aside); `{"prompt": "...", "test": "python check.py",
"file": "solution.py", "files": ["check.py"]}` passes when the command exits 0 in a scratch folder
holding the answer's code as `file` and the listed files (relative to the JSONL file). A model
that did not answer a graded prompt failed it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio

from forge.config.schema import ForgeConfig
from forge.errors import UsageError
from forge.fanout.answers import Answer, FanoutRun, Settings
from forge.fanout.code import extract_blocks
from forge.fanout.comparison import normalise
from forge.fanout.execution import Request, execute, request_for, watch_interrupts
from forge.fanout.report import answer_json, seconds, usd
from forge.fanout.run import new_run_id
from forge.fanout.stats import mcnemar_exact, percentile, wilson_interval
from forge.fanout.store import RunStore, SavedRun
from forge.ledger.store import Ledger
from forge.printable import printable
from forge.providers.client import ModelClient
from forge.providers.types import Target
from forge.validation.process import run as run_process

DEFAULT_CONCURRENCY = 64
TEST_TIMEOUT = 120.0
SIGNIFICANCE = 0.05
INTERRUPTED = "interrupted before it was graded"


@dataclass(frozen=True)
class BatchPrompt:
    index: int
    id: str
    prompt: str
    expected: str | None = None
    test: str | None = None
    file: str = "solution.py"
    files: tuple[str, ...] = ()
    system: str | None = None
    base: Path | None = None  # the JSONL file's folder: `files` are relative to it

    @property
    def graded(self) -> bool:
        return self.expected is not None or self.test is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prompt": self.prompt,
            "expected": self.expected,
            "test": self.test,
            "file": self.file,
            "files": list(self.files),
            "system": self.system,
        }


@dataclass(frozen=True)
class Grade:
    passed: bool | None  # None: nothing to grade it by
    detail: str


@dataclass(frozen=True)
class LeaderRow:
    model: str
    prompts: int
    answered: int
    graded: int
    passed: int
    errors: int
    cost_usd: Decimal
    latency_p50: float | None
    latency_p95: float | None

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.graded if self.graded else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.passed, self.graded)


@dataclass(frozen=True)
class Paired:
    """Two models on the prompts graded for both."""

    a: str
    b: str
    pairs: int
    both: int
    only_a: int
    only_b: int
    neither: int

    @property
    def p_value(self) -> float:
        return mcnemar_exact(self.only_a, self.only_b)

    @property
    def significant(self) -> bool:
        return self.p_value < SIGNIFICANCE

    def sentence(self) -> str:
        verdict = (
            f"significant at the 5% level: {self.a if self.only_a > self.only_b else self.b} "
            "is better on these prompts"
            if self.significant
            else "not significant at the 5% level"
        )
        return (
            f"{self.a} vs {self.b} on {self.pairs} paired prompts: both passed {self.both}, "
            f"only {self.a} {self.only_a}, only {self.b} {self.only_b}, neither {self.neither}; "
            f"exact McNemar p = {self.p_value:.3g}: {verdict}."
        )


@dataclass(frozen=True)
class Leaderboard:
    rows: tuple[LeaderRow, ...]  # best pass rate first, then cheapest
    paired: Paired | None


@dataclass
class BatchResult:
    run_id: str
    prompts: list[BatchPrompt]
    answers: list[Answer]
    grades: dict[str, Grade]
    interrupted: bool = False
    duration: float = 0.0
    leaderboard: Leaderboard = field(default_factory=lambda: Leaderboard((), None))


def read_prompts(path: Path) -> list[BatchPrompt]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--input {path}: cannot read it ({exc})") from None
    prompts: list[BatchPrompt] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise UsageError(f"{path}:{number}: not JSON ({exc})") from None
        prompts.append(_prompt(data, len(prompts), f"{path}:{number}", path.parent))
    if not prompts:
        raise UsageError(f"--input {path}: no prompts in it")
    ids = [p.id for p in prompts]
    if len(set(ids)) != len(ids):
        raise UsageError(f"--input {path}: two prompts share an id")
    return prompts


def _prompt(data: Any, index: int, where: str, base: Path) -> BatchPrompt:
    """One line, checked in full here so that a bad line stops the batch before any call."""
    if isinstance(data, str):
        return BatchPrompt(index, str(index + 1), data, base=base)
    if not isinstance(data, dict) or not isinstance(data.get("prompt"), str):
        raise UsageError(f'{where}: expected a string or an object with a "prompt" string')
    known = {"id", "prompt", "expected", "test", "file", "files", "system"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    for key in ("system", "test", "file"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise UsageError(f'{where}: "{key}" must be a string')
    ident = data.get("id", index + 1)
    if isinstance(ident, bool) or not isinstance(ident, str | int):
        raise UsageError(f'{where}: "id" must be a string')
    expected = data.get("expected")
    if expected is not None and (not isinstance(expected, str) or not normalise(expected)):
        raise UsageError(f'{where}: "expected" must be a non-empty string')
    test = data.get("test")
    if test is not None:
        try:
            command = shlex.split(test)
        except ValueError as exc:
            raise UsageError(f'{where}: "test" is not a valid command line ({exc})') from None
        if not command:
            raise UsageError(f'{where}: "test" is empty')
    files = data.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise UsageError(f'{where}: "files" must be a list of paths')
    file = data.get("file") or "solution.py"
    for name in [file, *files]:
        _check_relative(name, where)
    return BatchPrompt(
        index=index,
        id=str(ident),
        prompt=data["prompt"],
        expected=expected,
        test=test,
        file=file,
        files=tuple(files),
        system=data.get("system"),
        base=base,
    )


def _check_relative(name: str, where: str) -> None:
    """`file` and `files` name places inside the scratch folder: nothing absolute, no `..` out."""
    path = Path(name)
    if not name.strip() or path.is_absolute() or path.drive:
        raise UsageError(f"{where}: {name!r} must be a relative path inside the test folder")
    normal = os.path.normpath(name)
    if normal == os.curdir or normal == os.pardir or normal.startswith(os.pardir + os.sep):
        raise UsageError(f"{where}: {name!r} leads outside the test folder")


def _inside(folder: Path, name: str) -> bool:
    """Whether `folder / name`, resolved (symbolic links followed where they exist), stays in it."""
    root = folder.resolve()
    target = (root / name).resolve()
    return target != root and target.is_relative_to(root)


def run_batch(
    config: ForgeConfig,
    ledger: Ledger,
    prompts: Sequence[BatchPrompt],
    targets: Sequence[Target],
    settings: Settings,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: bool = False,
) -> BatchResult:
    """Ask every prompt of every model (`concurrency` at a time), grade, rank, save."""
    grading = Grading.of(config) if any(p.test is not None for p in prompts) else Grading()
    run_id = new_run_id("fb")
    requests = [
        request_for(
            t,
            p.prompt,
            p.system or settings.system,
            key=f"{p.id}/{t.alias}",
            prompt_index=p.index,
        )
        for p in prompts
        for t in targets
    ]
    started = time.time()
    interrupted, duration = anyio.run(
        _ask, config, ledger, run_id, requests, settings, concurrency, progress
    )
    answers = [r.answer for r in requests]
    result = BatchResult(run_id, list(prompts), answers, {}, interrupted, duration)
    result.grades, cut_short = grade_all(prompts, answers, grading)
    result.interrupted = interrupted or cut_short
    result.leaderboard = leaderboard(result, [t.alias for t in targets])
    run = FanoutRun(run_id, f"batch of {len(prompts)} prompts", settings, answers, started)
    run.duration, run.interrupted = duration, result.interrupted
    RunStore(ledger.path).save(run, {"batch": batch_extras(result)})
    return result


async def _ask(
    config: ForgeConfig,
    ledger: Ledger,
    run_id: str,
    requests: list[Request],
    settings: Settings,
    concurrency: int,
    progress: bool,
) -> tuple[bool, float]:
    on_finish = _progress_line if progress else None
    stop = anyio.Event()
    async with (
        ModelClient(config, ledger=ledger, run_id=run_id) as client,
        anyio.create_task_group() as group,
    ):
        await group.start(watch_interrupts, stop)
        outcome = await execute(
            client, requests, settings, on_finish=on_finish, stop=stop, concurrency=concurrency
        )
        group.cancel_scope.cancel()
    return outcome.interrupted, outcome.duration


def _progress_line(answer: Answer) -> None:
    import sys

    line = f"{answer.key:<32} {answer.label:<9} {seconds(answer.latency)}"
    sys.stdout.write(printable(line) + "\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class Grading:
    """How a test command runs on a model's answer: model-written code, so without the
    user's credentials (`environ`), and in the sandbox when `[validation] sandbox` asks."""

    environ: Mapping[str, str] | None = None  # None: forge's own (nothing to grade by tests)
    sandbox: str | None = None  # the bwrap program

    @classmethod
    def of(cls, config: ForgeConfig) -> Grading:
        """Checked before any model is asked: a sandbox that cannot be made is exit 2."""
        from forge.providers.secrets import key_names, without_credentials
        from forge.validation.sandbox import require_bwrap

        validation = config.validation
        environ = without_credentials(os.environ, key_names(config), validation.pass_env)
        program = require_bwrap() if validation.sandbox == "bwrap" else None
        return cls(environ, program)

    def command(self, argv: list[str], folder: Path) -> list[str]:
        if self.sandbox is None or self.environ is None:
            return argv
        from forge.validation.sandbox import Sandbox

        box = Sandbox.around(self.sandbox, folder, argv[:1], self.environ)
        return box.wrap(argv, folder)


def grade_all(
    prompts: Sequence[BatchPrompt], answers: Sequence[Answer], grading: Grading | None = None
) -> tuple[dict[str, Grade], bool]:
    """Every answer's grade, and whether Ctrl-C cut the grading short.

    On Ctrl-C the grades already given stay; running tests are stopped, and every answer not yet
    graded gets an ungraded `interrupted` grade, so the leaderboard counts only what was graded.
    """
    by_index = {p.index: p for p in prompts}
    cancel = threading.Event()
    pool = ThreadPoolExecutor(max_workers=4)
    grading = grading or Grading()
    futures = [pool.submit(grade, by_index[a.prompt_index], a, cancel, grading) for a in answers]
    try:
        for future in futures:
            future.result()
    except KeyboardInterrupt:
        finished = [f.done() and not f.cancelled() for f in futures]  # graded before Ctrl-C
        cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        grades = {
            a.key: f.result() if done else _cut_short(by_index[a.prompt_index])
            for a, f, done in zip(answers, futures, finished, strict=True)
        }
        return grades, True
    pool.shutdown(wait=True)
    return {a.key: f.result() for a, f in zip(answers, futures, strict=True)}, False


def _cut_short(prompt: BatchPrompt) -> Grade:
    return Grade(None, INTERRUPTED if prompt.graded else "nothing to grade by")


def grade(
    prompt: BatchPrompt,
    answer: Answer,
    cancel: threading.Event | None = None,
    grading: Grading | None = None,
) -> Grade:
    if not prompt.graded:
        return Grade(None, "nothing to grade by")
    if not answer.ok:
        return Grade(False, f"no answer ({answer.status.value})")
    if prompt.expected is not None:
        wanted = " ".join(normalise(prompt.expected))
        found = f" {wanted} " in f" {' '.join(normalise(answer.text))} "
        return Grade(found, "expected answer found" if found else "expected answer not found")
    return _run_test(prompt, answer, cancel, grading or Grading())


def _run_test(
    prompt: BatchPrompt, answer: Answer, cancel: threading.Event | None, grading: Grading
) -> Grade:
    assert prompt.test is not None
    blocks = extract_blocks(answer.text)
    code = max(blocks, key=lambda b: len(b.source)).source if blocks else answer.text
    try:
        command = shlex.split(prompt.test)
    except ValueError as exc:
        return Grade(False, f"the test command does not parse: {exc}")
    if not command:
        return Grade(False, "the test command is empty")
    with tempfile.TemporaryDirectory(prefix="forge-batch-") as scratch:
        folder = Path(scratch)
        for name in (*prompt.files, prompt.file):
            if Path(name).is_absolute() or not _inside(folder, name):
                return Grade(False, f"{name}: outside the test folder")
        for name in prompt.files:
            source = (prompt.base or Path.cwd()) / name
            if not source.is_file():
                return Grade(False, f"{name}: listed in files but not found")
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / name)
        answer_file = folder / prompt.file
        if not _inside(folder, prompt.file):  # a listed file may be a link leading out
            return Grade(False, f"{prompt.file}: outside the test folder")
        answer_file.parent.mkdir(parents=True, exist_ok=True)
        answer_file.write_text(code.rstrip("\n") + "\n", encoding="utf-8")
        env = {"FORGE_ANSWER_FILE": str(answer_file)}
        try:
            argv = grading.command(command, folder)
            out = run_process(argv, folder, TEST_TIMEOUT, env, cancel, base_env=grading.environ)
        except (OSError, ValueError) as exc:
            return Grade(False, f"the test could not start: {exc}")
    if cancel is not None and cancel.is_set() and out.exit_code is None:
        return Grade(None, INTERRUPTED)
    if out.timed_out:
        return Grade(False, f"the test ran past {TEST_TIMEOUT:g}s")
    if out.exit_code == 0:
        return Grade(True, "test passed")
    return Grade(False, f"test exited {out.exit_code}")


def leaderboard(result: BatchResult, models: Sequence[str]) -> Leaderboard:
    rows = [_row(result, alias) for alias in dict.fromkeys(models)]
    rows.sort(key=lambda r: (-(r.pass_rate if r.pass_rate is not None else -1), r.cost_usd))
    paired = _paired(result, rows[0].model, rows[1].model) if len(rows) == 2 else None
    return Leaderboard(tuple(rows), paired)


def _row(result: BatchResult, alias: str) -> LeaderRow:
    mine = [a for a in result.answers if a.alias == alias]
    grades = [result.grades[a.key] for a in mine]
    latencies = [a.latency for a in mine if a.ok and a.latency is not None]
    cost = sum((a.cost_usd for a in mine if a.cost_usd is not None), Decimal(0))
    return LeaderRow(
        model=alias,
        prompts=len(mine),
        answered=sum(1 for a in mine if a.ok),
        graded=sum(1 for g in grades if g.passed is not None),
        passed=sum(1 for g in grades if g.passed),
        errors=sum(1 for a in mine if not a.ok),
        cost_usd=cost,
        latency_p50=percentile(latencies, 0.5),
        latency_p95=percentile(latencies, 0.95),
    )


def _paired(result: BatchResult, a: str, b: str) -> Paired:
    by_prompt: dict[int, dict[str, bool | None]] = {}
    for answer in result.answers:
        if answer.alias in (a, b):
            passed = result.grades[answer.key].passed
            by_prompt.setdefault(answer.prompt_index, {})[answer.alias] = passed
    both = only_a = only_b = neither = 0
    for marks in by_prompt.values():
        x, y = marks.get(a), marks.get(b)
        if x is None or y is None:
            continue
        both += x and y
        only_a += x and not y
        only_b += y and not x
        neither += not x and not y
    return Paired(a, b, both + only_a + only_b + neither, both, only_a, only_b, neither)


# -- output and saving ----------------------------------------------------------------------------


def batch_extras(result: BatchResult) -> dict[str, Any]:
    return {
        "prompts": [p.to_json() for p in result.prompts],
        "grades": {k: {"passed": g.passed, "detail": g.detail} for k, g in result.grades.items()},
        "models": [r.model for r in result.leaderboard.rows],
    }


def from_saved(saved: SavedRun) -> BatchResult:
    data = saved.extras["batch"]
    prompts = [
        BatchPrompt(i, p["id"], p["prompt"], p["expected"], p["test"], p["file"], tuple(p["files"]))
        for i, p in enumerate(data["prompts"])
    ]
    grades = {k: Grade(g["passed"], g["detail"]) for k, g in data["grades"].items()}
    run = saved.run
    result = BatchResult(run.run_id, prompts, run.answers, grades, run.interrupted, run.duration)
    result.leaderboard = leaderboard(result, data["models"])
    return result


def batch_json(result: BatchResult) -> dict[str, Any]:
    board = result.leaderboard
    return {
        "run_id": result.run_id,
        "interrupted": result.interrupted,
        "duration_s": round(result.duration, 3),
        "prompts": [p.to_json() for p in result.prompts],
        "leaderboard": [
            {
                "model": r.model,
                "prompts": r.prompts,
                "answered": r.answered,
                "graded": r.graded,
                "passed": r.passed,
                "errors": r.errors,
                "pass_rate": r.pass_rate,
                "pass_rate_95ci": None if r.interval is None else list(r.interval),
                "cost_usd": str(r.cost_usd),
                "latency_p50_s": r.latency_p50,
                "latency_p95_s": r.latency_p95,
            }
            for r in board.rows
        ],
        "paired": None
        if board.paired is None
        else {
            "a": board.paired.a,
            "b": board.paired.b,
            "pairs": board.paired.pairs,
            "both": board.paired.both,
            "only_a": board.paired.only_a,
            "only_b": board.paired.only_b,
            "neither": board.paired.neither,
            "p_value": board.paired.p_value,
            "significant": board.paired.significant,
            "test": "exact McNemar (two-sided)",
        },
        "answers": [
            answer_json(a) | {"grade": _grade_json(result.grades.get(a.key))}
            for a in result.answers
        ],
    }


def _grade_json(g: Grade | None) -> dict[str, Any] | None:
    return None if g is None else {"passed": g.passed, "detail": g.detail}


def batch_markdown(result: BatchResult) -> str:
    out = [
        f"# forge fanout batch {result.run_id}",
        "",
        f"{len(result.prompts)} prompts.",
        "",
        "| model | pass rate | 95% CI | passed | graded | errors | cost | p50 | p95 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result.leaderboard.rows:
        rate = "-" if r.pass_rate is None else f"{r.pass_rate:.0%}"
        ci = "-" if r.interval is None else f"{r.interval[0]:.0%} to {r.interval[1]:.0%}"
        cells = [
            r.model,
            rate,
            ci,
            str(r.passed),
            str(r.graded),
            str(r.errors),
            usd(r.cost_usd),
            seconds(r.latency_p50),
            seconds(r.latency_p95),
        ]
        out.append("| " + " | ".join(cells) + " |")
    if result.leaderboard.paired is not None:
        out += ["", result.leaderboard.paired.sentence()]
    return "\n".join(out) + "\n"
