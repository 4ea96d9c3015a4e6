"""The route: which ladder, which rung first, which model on it, and where it escalates.

The ladder is `[tiers]`'s ladder for the task type (`critical` for critical tasks when set, else
`ladder`). The first rung follows the band on the default four-rung ladder local / free / cheap /
premium: trivial and simple start on rung 0, medium on 1, complex on 2, architecture and planning
one higher; other ladders map those positions proportionally. Critical tasks start at the top.
History can move the start one rung up, or, for a task that is not critical, down to the
cheapest rung whose chance of passing first time (the learned model's prior moved by that rung's
own record here, `chances`) is good enough. Inside a rung, `[routing] strategy` picks the model
among those that can take the call now: no open breaker, free quota left, a context window that
fits, and premium calls left today.
"""

from __future__ import annotations

import difflib
import math
from collections import Counter
from dataclasses import dataclass

from forge.errors import UsageError
from forge.routing.analysis import Band, TaskAnalysis
from forge.routing.estimate import (
    TYPICAL_OUTPUT_TOKENS,
    Estimate,
    estimate,
    money,
    worst_call_cost,
)
from forge.routing.fleet import Fleet, ModelFacts
from forge.routing.history import MIN_SAMPLES
from forge.routing.learned import tier_chance, with_history

BAND_POSITION: dict[Band, int] = {"trivial": 0, "simple": 0, "medium": 1, "complex": 2}
ONE_RUNG_HIGHER = frozenset({"architecture", "planning"})
DEFAULT_TOP = 3  # positions are placed on the default four-rung ladder, then scaled
# A cheaper rung whose chance (the model's prior moved by its record here) reaches this starts.
GOOD_ENOUGH = 0.8


@dataclass(frozen=True)
class Pins:
    """`--tier` or `--model`: the user's choice of where to start."""

    tier: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class Skip:
    rung: str
    model: str | None
    reason: str

    def __str__(self) -> str:
        return f"{self.model or self.rung} because {self.reason}"


@dataclass(frozen=True)
class RungChoice:
    rung: str
    model: str | None
    why: str
    skipped: tuple[Skip, ...] = ()


@dataclass(frozen=True)
class RungChance:
    """The chance that a first attempt on `rung` passes validation, and what it rests on."""

    rung: str
    probability: float
    prior: float
    successes: int = 0
    samples: int = 0

    def __str__(self) -> str:
        if not self.samples:
            return f"{self.rung} {self.probability:.0%}"
        return (
            f"{self.rung} {self.probability:.0%} (model {self.prior:.0%}, here "
            f"{self.successes}/{self.samples})"
        )


@dataclass(frozen=True)
class RouteDecision:
    analysis: TaskAnalysis
    ladder_name: str
    ladder: tuple[str, ...]
    start_reason: str
    first: RungChoice
    escalation: tuple[RungChoice, ...]
    strategy: str
    pinned: str | None
    history: tuple[str, ...]
    notes: tuple[str, ...]
    estimate: Estimate
    chances: tuple[RungChance, ...] = ()


class Router:
    """Routes tasks against one snapshot of the fleet (read once, used for every task)."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.config = fleet.config
        self._turns: Counter[str] = Counter()  # round robin: routes handed out by this router
        # What depends only on the snapshot, kept for the next task: a batch of thousands of
        # tasks asks the same questions (a rung's models, a difficulty's chances) again and again.
        self._budget_left = fleet.budget_left
        self._aliases: dict[str, list[str]] = {}
        self._chances: dict[tuple[float, str, str, tuple[str, ...]], tuple[RungChance, ...]] = {}

    # -- the whole decision ------------------------------------------------------------------

    def decide(self, analysis: TaskAnalysis, pins: Pins = Pins()) -> RouteDecision:
        self.check(pins)
        name, ladder = self.ladder_for(analysis)
        needed = analysis.context_tokens + analysis.tokens
        notes: list[str] = []
        history: list[str] = []
        if self.fleet.premium_limit_reached():
            limit = self.config.cost.max_premium_calls_per_day
            notes.append(
                f"max_premium_calls_per_day reached ({self.fleet.premium_calls_today} of "
                f"{limit} used today): premium models are skipped"
            )
        if pins.model is not None:
            index, first, reason = self._pinned_model(pins.model, ladder, needed, notes)
        else:
            start, reason = self._start(analysis, ladder, pins, notes)
            if pins.tier is None and self.config.routing.learn_from_history:
                start, history = self._learn(analysis, ladder, start)
            index, first = self._first(ladder, start, analysis, needed, notes, pins)
        later = ladder[index + 1 :] if index is not None else ()
        escalation = tuple(self._choose(rung, analysis, needed) for rung in later)
        chain = [self.fleet.models[c.model] for c in (first, *escalation) if c.model]
        routing = self.config.routing
        chances = self.chances(analysis, ladder)
        return RouteDecision(
            analysis=analysis,
            ladder_name=name,
            ladder=tuple(ladder),
            start_reason=reason,
            first=first,
            escalation=escalation,
            strategy=routing.strategy,
            pinned="model" if pins.model else "tier" if pins.tier else None,
            history=tuple(history),
            notes=tuple(notes),
            estimate=estimate(
                chain if first.model else [],
                needed,
                attempts_per_rung=routing.max_attempts_per_tier,
                total_attempts=routing.max_total_attempts,
                budget_left=self._budget_left,
            ),
            chances=chances,
        )

    def chances(self, analysis: TaskAnalysis, ladder: list[str]) -> tuple[RungChance, ...]:
        """Each rung's chance of passing first time: the learned model's, moved by history.

        Rungs are placed on the default four-rung ladder as the start is (proportionally).
        """
        key = (analysis.difficulty, analysis.type, analysis.band, tuple(ladder))
        found = self._chances.get(key)
        if found is None:
            found = self._chances[key] = self._chances_of(analysis, ladder)
        return found

    def _chances_of(self, analysis: TaskAnalysis, ladder: list[str]) -> tuple[RungChance, ...]:
        top = len(ladder) - 1
        rates = self.fleet.history
        learn = self.config.routing.learn_from_history
        found = []
        for index, rung in enumerate(ladder):
            position = math.floor(index * DEFAULT_TOP / top + 0.5) if top else DEFAULT_TOP
            prior = tier_chance(analysis.difficulty, position)
            record = rates.get(analysis.type, analysis.band, rung) if learn else None
            if record is None or not record.samples:
                found.append(RungChance(rung, round(prior, 3), round(prior, 3)))
                continue
            chance = with_history(prior, record.successes, record.samples)
            found.append(
                RungChance(
                    rung, round(chance, 3), round(prior, 3), record.successes, record.samples
                )
            )
        return tuple(found)

    def check(self, pins: Pins) -> None:
        """Unknown `--tier` or `--model` names are usage errors (exit 2), with a guess."""
        if pins.tier is not None and pins.model is not None:
            raise UsageError("use --tier or --model, not both")
        if pins.tier is not None:
            rungs = self.config.tier_names() | {
                r for ladder in self.config.tiers.ladders().values() for r in ladder
            }
            rungs -= set(self.config.models)
            if pins.tier not in rungs:
                raise UsageError(_unknown("tier", pins.tier, sorted(rungs)))
        if pins.model is not None and pins.model not in self.config.models:
            raise UsageError(_unknown("model", pins.model, sorted(self.config.models)))

    def ladder_for(self, analysis: TaskAnalysis) -> tuple[str, list[str]]:
        tiers = self.config.tiers
        if analysis.quality == "critical" and tiers.critical is not None:
            return "critical", tiers.critical
        own: list[str] | None = getattr(tiers, analysis.type)
        return (analysis.type, own) if own is not None else ("ladder", tiers.ladder)

    # -- where to start ----------------------------------------------------------------------

    def _start(
        self, analysis: TaskAnalysis, ladder: list[str], pins: Pins, notes: list[str]
    ) -> tuple[int, str]:
        top = len(ladder) - 1
        if pins.tier is not None:
            if pins.tier in ladder:
                return ladder.index(pins.tier), "pinned by --tier"
            notes.append(f"tier {pins.tier} is not on this ladder: no escalation after it")
            return -1, "pinned by --tier"
        if analysis.quality == "critical":
            return top, "critical: the top of the ladder"
        position = BAND_POSITION[analysis.band]
        reason: str = analysis.band
        if analysis.type in ONE_RUNG_HIGHER:
            position += 1
            reason += f", one rung higher for {analysis.type}"
        position = min(position, DEFAULT_TOP)
        return min(top, math.floor(position * top / DEFAULT_TOP + 0.5)), reason

    def _learn(
        self, analysis: TaskAnalysis, ladder: list[str], start: int
    ) -> tuple[int, list[str]]:
        """Start one rung higher where this kind of task keeps failing the first time."""
        rates = self.fleet.history
        kind = f"{analysis.type}/{analysis.band}"
        lines: list[str] = []
        failing = rates.keeps_failing(analysis.type, analysis.band, ladder[start])
        if failing is not None and start < len(ladder) - 1:
            lines.append(
                f"history: {ladder[start]} got {kind} tasks in this repository right on the "
                f"first attempt only {failing} times; starting one rung higher at "
                f"{ladder[start + 1]}"
            )
            start += 1
        if analysis.quality != "critical":
            chances = self.chances(analysis, ladder)
            for index, rung in enumerate(ladder[:start]):
                # The cheapest rung whose own record makes its chance good enough.
                chance = chances[index]
                if chance.samples >= MIN_SAMPLES and chance.probability >= GOOD_ENOUGH:
                    lines.append(
                        f"history: {rung} got {kind} tasks in this repository right on the "
                        f"first attempt {chance.successes}/{chance.samples} times; its chance "
                        f"{chance.probability:.0%} is good enough (at least {GOOD_ENOUGH:.0%}): "
                        f"starting there instead of {ladder[start]}"
                    )
                    return index, lines
        for rung in ladder[:start]:
            good = rates.does_well(analysis.type, analysis.band, rung)
            if good is not None:
                lines.append(
                    f"hint: {rung} got {kind} tasks here right on the first attempt {good} "
                    f"times; `--tier {rung}` may be enough"
                )
        return start, lines

    def _first(
        self,
        ladder: list[str],
        start: int,
        analysis: TaskAnalysis,
        needed: int,
        notes: list[str],
        pins: Pins,
    ) -> tuple[int | None, RungChoice]:
        """The start rung, else the next one up with a usable model, else the next one down."""
        if pins.tier is not None:
            choice = self._choose(pins.tier, analysis, needed)
            self._turns[choice.rung] += 1
            return (start if start >= 0 else None), choice
        skipped: list[Skip] = []
        upward = range(start, len(ladder))
        downward = range(start - 1, -1, -1)
        for index in [*upward, *downward]:
            choice = self._choose(ladder[index], analysis, needed)
            if choice.model is not None:
                if index < start:
                    notes.append(
                        f"no usable model at or above {ladder[start]}: "
                        f"falling back to {ladder[index]}"
                    )
                self._turns[choice.rung] += 1
                return index, RungChoice(
                    choice.rung, choice.model, choice.why, (*skipped, *choice.skipped)
                )
            skipped += choice.skipped
        notes.append("no usable model on any rung of the ladder")
        return start, RungChoice(ladder[start], None, "", tuple(skipped))

    def _pinned_model(
        self, alias: str, ladder: list[str], needed: int, notes: list[str]
    ) -> tuple[int | None, RungChoice, str]:
        model = self.fleet.models[alias]
        problem = self._unusable(model, needed)
        if problem is not None:
            notes.append(f"pinned model {alias}: {problem}")
        rung = alias if alias in ladder else model.tier or alias
        if rung not in ladder:
            notes.append(f"{alias} is not on this ladder: no escalation after it")
        index = ladder.index(rung) if rung in ladder else None
        return index, RungChoice(rung, alias, "pinned by --model"), "pinned by --model"

    # -- the model inside a rung -------------------------------------------------------------

    def _models_in(self, rung: str) -> list[str]:
        aliases = self._aliases.get(rung)
        if aliases is None:
            aliases = self._aliases[rung] = self.config.models_in(rung)
        return aliases

    def _choose(self, rung: str, analysis: TaskAnalysis, needed: int) -> RungChoice:
        aliases = self._models_in(rung)
        if not aliases:
            return RungChoice(rung, None, "", (Skip(rung, None, "no model is configured on it"),))
        usable: list[ModelFacts] = []
        skipped: list[Skip] = []
        for alias in aliases:
            problem = self._unusable(self.fleet.models[alias], needed)
            if problem is None:
                usable.append(self.fleet.models[alias])
            else:
                skipped.append(Skip(rung, alias, problem))
        if not usable:
            return RungChoice(rung, None, "", tuple(skipped))
        usable, long_note = self._long_context(usable, needed)
        model, why = self._pick(rung, usable, needed)
        return RungChoice(rung, model.alias, f"{why}{long_note}", tuple(skipped))

    def _unusable(self, model: ModelFacts, needed: int) -> str | None:
        fleet = self.fleet
        if model.alias in fleet.open_breakers:
            until, error = fleet.open_breakers[model.alias]
            cause = f" after {error}" if error else ""
            return f"its breaker is open for {until - fleet.now:.0f}s more{cause}"
        quota = fleet.quota(model.provider)
        if quota is not None and quota[0] >= quota[1]:
            return (
                f"the free quota is spent ({model.provider} sent {quota[0]} of "
                f"{quota[1]} requests today)"
            )
        window = model.context_window
        if window is not None and window < needed + TYPICAL_OUTPUT_TOKENS:
            return f"its context window ({window:,} tokens) is too small for ~{needed:,}"
        if model.premium and fleet.premium_limit_reached():
            return "max_premium_calls_per_day is reached"
        return None

    def _long_context(self, usable: list[ModelFacts], needed: int) -> tuple[list[ModelFacts], str]:
        threshold = self.config.routing.long_context_threshold_tokens
        if needed <= threshold:
            return usable, ""
        reason = f"; long context (~{needed:,} tokens > {threshold:,})"
        long = [m for m in usable if m.long_context]
        if long:
            return long, f"{reason}: prefers long_context models"
        largest = max((m.context_window or 0 for m in usable), default=0)
        if largest == 0:
            return usable, f"{reason}: no model states its window"
        widest = [m for m in usable if m.context_window == largest]
        return widest, f"{reason}: the largest window ({largest:,})"

    def _pick(self, rung: str, usable: list[ModelFacts], needed: int) -> tuple[ModelFacts, str]:
        strategy = self.config.routing.strategy
        fleet = self.fleet

        # min() keeps the first of equals, so ties go to the order of forge.toml.
        def cost(m: ModelFacts) -> tuple[float, float]:
            usd = worst_call_cost(m, needed)
            return (1.0, 0.0) if usd is None else (0.0, float(usd))

        if strategy == "latency":
            model = min(
                usable, key=lambda m: (fleet.median_latency.get(m.alias, math.inf), *cost(m))
            )
            latency = fleet.median_latency.get(model.alias)
            known = f"median latency {latency:.2f}s" if latency else "no latency recorded yet"
            return model, known
        if strategy == "least_loaded":
            load = fleet.attempts_last_minute
            model = min(usable, key=lambda m: (float(load.get(m.alias, 0)), *cost(m)))
            return model, f"{load.get(model.alias, 0)} calls in the last minute"
        if strategy == "round_robin":
            served = sum(fleet.attempts_today.get(a, 0) for a in self._models_in(rung))
            turn = (served + self._turns[rung]) % len(usable)
            return usable[turn], f"turn {turn + 1} of {len(usable)}"
        model = min(usable, key=cost)
        return model, f"worst case per call {money(worst_call_cost(model, needed))}"


def _unknown(kind: str, name: str, known: list[str]) -> str:
    guess = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {guess[0]!r}?" if guess else ""
    listed = f" (known: {', '.join(known)})" if known else f" (no {kind} is configured)"
    return f"unknown {kind} {name!r}{hint}{listed}"
