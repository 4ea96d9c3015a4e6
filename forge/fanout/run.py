"""One fan-out from start to end: plan the requests, stream them, compare, ask for opinions.

The CLI calls `plan_run()` then `run_fanout()` and renders what comes back; a display can
watch `run.answers` as they fill in, and `on_streamed` tells it when the last one is in.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence

import anyio

from forge.config.schema import ForgeConfig
from forge.fanout import judge as judging
from forge.fanout.answers import Answer, FanoutRun, Settings
from forge.fanout.comparison import DEFAULT_THRESHOLD
from forge.fanout.execution import OnChange, OnFinish, Request, execute, request_for
from forge.fanout.report import Report, build_report
from forge.fanout.roles import plan_roles
from forge.fanout.selection import Selection, select
from forge.ledger.store import Ledger
from forge.providers.client import ModelClient

# A judge reads every answer it is shown; past this many, it is shown each cluster's most
# central answer instead (largest clusters first), which is what a reader would compare.
OPINION_MAX_ANSWERS = 20


def new_run_id(prefix: str = "fo") -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def plan_run(
    config: ForgeConfig,
    ledger: Ledger | None,
    prompt: str,
    selection: Selection,
    settings: Settings,
    roles: Sequence[str] = (),
) -> tuple[FanoutRun, list[Request]]:
    """The run and its requests: the selected models, or each role's models with its prompt."""
    if roles:
        plan = plan_roles(config, roles, selection, ledger, prompt, settings.system)
        requests, systems = plan.requests, plan.systems
    else:
        targets = select(config, selection, ledger)
        requests, systems = [request_for(t, prompt, settings.system) for t in targets], {}
    run = FanoutRun(
        run_id=new_run_id(),
        prompt=prompt,
        settings=settings,
        answers=[r.answer for r in requests],
        started_at=time.time(),
        roles=systems,
    )
    return run, requests


async def run_fanout(
    client: ModelClient,
    run: FanoutRun,
    requests: Sequence[Request],
    *,
    stop: anyio.Event,
    threshold: float = DEFAULT_THRESHOLD,
    judge: str | None = None,
    synthesize: str | None = None,
    on_finish: OnFinish | None = None,
    on_streamed: Callable[[], None] | None = None,
    on_change: OnChange | None = None,
) -> Report:
    """Stream every answer, compare them, then the judge and the synthesis if asked.

    Setting `stop` (Ctrl-C) cancels whatever is in flight; what arrived is kept and the run is
    marked interrupted.
    """
    outcome = await execute(
        client, requests, run.settings, on_finish=on_finish, stop=stop, on_change=on_change
    )
    if on_streamed is not None:
        on_streamed()
    run.duration = outcome.duration
    run.interrupted = outcome.interrupted
    run.deadline_passed = outcome.deadline_passed
    report = build_report(run, threshold)
    if not run.interrupted and (judge or synthesize):
        await _second_opinions(client, report, judge, synthesize, stop)
        run.interrupted = stop.is_set()
    return report


async def _second_opinions(
    client: ModelClient,
    report: Report,
    judge: str | None,
    synthesize: str | None,
    stop: anyio.Event,
) -> None:
    """The judge and the synthesis side by side, cancelled together if `stop` is set."""
    run = report.run
    answered = shown_to_judge(report)
    if not answered:
        return

    async def verdict(model: str) -> None:
        fallback = report.comparison.consensus
        report.verdict = await judging.judge(client, model, run.prompt, answered, fallback)

    async def synthesis(model: str) -> None:
        report.synthesis = await judging.synthesize(client, model, run.prompt, answered)

    async def cancel_on_stop(scope: anyio.CancelScope) -> None:
        await stop.wait()
        scope.cancel()

    async with anyio.create_task_group() as group:
        group.start_soon(cancel_on_stop, group.cancel_scope)
        async with anyio.create_task_group() as calls:
            if judge:
                calls.start_soon(verdict, judge)
            if synthesize:
                calls.start_soon(synthesis, synthesize)
        group.cancel_scope.cancel()


def shown_to_judge(report: Report) -> list[Answer]:
    answered = report.run.answered()
    if len(answered) <= OPINION_MAX_ANSWERS:
        return answered
    centers = [cluster.center for cluster in report.comparison.clusters[:OPINION_MAX_ANSWERS]]
    return [report.answer(key) for key in centers]
