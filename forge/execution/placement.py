"""Where a task may run on a Ray cluster: what each node has, as Ray resources, and what each
task needs of them.

A node that joins with `forge ray-node` looks at its own environment first: the validators'
toolchains (Python with pytest, cargo) and the API key variables forge.toml names. It says what
it lacks, and joins with one custom resource per thing it has (`forge_python`, `forge_cargo`,
`forge_key_GROQ_API_KEY`). A task asks for the toolchains its repository's projects need and
the keys of every model its route may call, so Ray places it only on a node that has them all.
Each node holds a large amount of each, and a task takes a sliver: the resources choose nodes,
CPUs bound how many tasks a node runs at once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forge.config.schema import ForgeConfig
    from forge.routing.decision import RouteDecision

TOOLCHAINS = ("python", "cargo")
NODE_AMOUNT = 10_000.0  # of each resource a node declares
TASK_AMOUNT = 0.001  # of each a task asks for: 10 million tasks' worth per node
PROBE_TIMEOUT_SECONDS = 60


def toolchain_resource(name: str) -> str:
    return f"forge_{name}"


def key_resource(variable: str) -> str:
    return f"forge_key_{variable}"


@dataclass(frozen=True)
class NodeProbe:
    """What one node has: each toolchain's version (None when missing), each key's presence."""

    toolchains: dict[str, str | None]
    keys: dict[str, bool] = field(default_factory=dict)

    def resources(self) -> dict[str, float]:
        have = [toolchain_resource(n) for n, v in self.toolchains.items() if v is not None]
        have += [key_resource(name) for name, present in self.keys.items() if present]
        return dict.fromkeys(sorted(have), NODE_AMOUNT)

    def report(self) -> list[str]:
        """What the node says when it starts: what it has, then each thing it lacks."""
        found = [f"{name} ({version})" for name, version in self.toolchains.items() if version]
        keys = [name for name, present in self.keys.items() if present]
        lines = [
            f"this node runs tasks with: {', '.join(found) or 'no validator toolchain'}; "
            f"keys: {', '.join(keys) or 'none'}"
        ]
        for name, version in self.toolchains.items():
            if version is None:
                lines.append(
                    f"this node lacks {_toolchain_words(name)}: tasks on {name} projects are "
                    "not placed here"
                )
        for name, present in self.keys.items():
            if not present:
                lines.append(
                    f"this node lacks {name}: tasks whose models need it are not placed here"
                )
        return lines


def _toolchain_words(name: str) -> str:
    return "Python with pytest" if name == "python" else "cargo"


def probe_node(config: ForgeConfig, env: Mapping[str, str] = os.environ) -> NodeProbe:
    variables = sorted({p.api_key_env for p in config.providers.values() if p.api_key_env})
    return NodeProbe(
        toolchains={"python": _pytest_version(env), "cargo": _cargo_version(env)},
        keys={name: bool(env.get(name)) for name in variables},
    )


def _version(command: list[str], env: Mapping[str, str]) -> str | None:
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            env=dict(env),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0].strip() if done.returncode == 0 and text else None


def _pytest_version(env: Mapping[str, str]) -> str | None:
    python = shutil.which("python3", path=env.get("PATH")) or sys.executable
    return _version([python, "-m", "pytest", "--version"], env)


def _cargo_version(env: Mapping[str, str]) -> str | None:
    cargo = shutil.which("cargo", path=env.get("PATH"))
    return _version([cargo, "--version"], env) if cargo else None


def repository_toolchains(root: Path, files: Iterable[str]) -> set[str]:
    """The toolchains the validators of this repository's projects need."""
    from forge.validation.projects import detect

    kinds = {project.kind for project in detect(root, root, tuple(files)).projects}
    return {"python" if kind == "python" else "cargo" for kind in kinds if kind != "custom"}


def task_needs(
    config: ForgeConfig, decision: RouteDecision, toolchains: Iterable[str]
) -> dict[str, float]:
    """The resources a task asks for: its projects' toolchains and its route's keys."""
    models = [decision.first.model, *(choice.model for choice in decision.escalation)]
    variables = set()
    for alias in models:
        if alias is not None and alias in config.models:
            variable = config.providers[config.models[alias].provider].api_key_env
            if variable:
                variables.add(variable)
    names = [toolchain_resource(t) for t in toolchains] + [key_resource(v) for v in variables]
    return dict.fromkeys(sorted(names), TASK_AMOUNT)
