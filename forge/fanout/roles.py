"""`--roles coder,tester,reviewer`: each role's system prompt sent to its models, all at once.

A role is `[roles.NAME]` in forge.toml: a system prompt and the models that play it. Models
chosen on the command line (-m, --tier, --all) play every role instead, which is how one model
is tried in several roles. The result is a roles x models matrix, compared within each role.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from forge.config.schema import ForgeConfig
from forge.errors import UsageError
from forge.fanout.answers import Answer, FanoutRun
from forge.fanout.execution import Request, request_for
from forge.fanout.selection import Selection, select
from forge.ledger.store import Ledger


@dataclass(frozen=True)
class RolePlan:
    requests: list[Request]
    systems: dict[str, str]  # role -> the system prompt its models receive


@dataclass(frozen=True)
class RoleMatrix:
    roles: tuple[str, ...]
    models: tuple[str, ...]
    cells: dict[tuple[str, str], Answer]

    def cell(self, role: str, alias: str) -> Answer | None:
        return self.cells.get((role, alias))


def plan_roles(
    config: ForgeConfig,
    names: Sequence[str],
    selection: Selection,
    ledger: Ledger | None,
    prompt: str,
    system: str | None = None,
) -> RolePlan:
    chosen = bool(selection.models or selection.tiers or selection.every)
    requests: list[Request] = []
    systems: dict[str, str] = {}
    for name in dict.fromkeys(names):
        role = config.roles.get(name)
        if role is None:
            raise UsageError(_unknown_role(name, list(config.roles)))
        if chosen:
            targets = select(config, selection, ledger)
        elif role.models:
            targets = select(config, Selection(models=tuple(role.models), cap=selection.cap))
        else:
            raise UsageError(
                f"role {name!r} names no models: add models = [...] to [roles.{name}] "
                "or choose them with -m, --tier or --all"
            )
        systems[name] = "\n\n".join(part for part in (role.system, system) if part)
        requests += [
            request_for(t, prompt, systems[name], key=f"{name}/{t.alias}", role=name)
            for t in targets
        ]
    return RolePlan(requests, systems)


def role_matrix(run: FanoutRun) -> RoleMatrix:
    roles = tuple(run.roles)
    models = tuple(dict.fromkeys(a.alias for a in run.answers))
    cells = {(a.role, a.alias): a for a in run.answers if a.role is not None}
    return RoleMatrix(roles, models, cells)


def _unknown_role(name: str, known: list[str]) -> str:
    guess = difflib.get_close_matches(name, known, n=1)
    if guess:
        return f"unknown role {name!r}; did you mean {guess[0]!r}?"
    if known:
        return f"unknown role {name!r}; roles in the configuration: {', '.join(sorted(known))}"
    return f"unknown role {name!r}: add [roles.{name}] with a system prompt to forge.toml"
