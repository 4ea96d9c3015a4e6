"""`forge validate` against the same tools by hand, on real open-source Python projects.

For each project, in a temporary folder: its sdist, pinned, from PyPI, extracted and committed to
a new git repository (forge lists files through git); a `.venv` in it with the project installed
editable, its test dependencies, and pytest, ruff and (when the project configures mypy, so forge
runs it) mypy, all pinned. The tools go into the `.venv` rather than coming from PATH: forge looks
in the project's environment first, so forge and the hand run use the same binaries, and PATH's
ruff (here a pyenv shim in front of the binary) stays out of the timings. Then, interleaved:
  - by hand: `ruff check --output-format=json --no-fix .`, mypy with forge's flags when
    configured, `.venv/bin/python -m pytest -q -p no:cacheprovider`, one after another; the test
    counts are read from pytest's own closing line;
  - cold forge: `forge validate PROJECT --format json --no-cache`, the statuses, the interpreter
    and the test counts read from its JSON;
  - cache hit: `forge validate PROJECT --format json` on the unchanged tree, three times a round.
Before every by-hand and cold run the tools' own caches (.ruff_cache, .mypy_cache) are removed, so
both start the tools from cold. forge's bytecode is compiled first, as an installed forge's is.
The numbers are medians of this one run; the machine's load moves them, the ratios less.

    python bench/validate_real.py [--rounds 3] [--projects more-itertools,click,python-dateutil]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bytecode import ROOT, compile_forge

PYTEST = "pytest==9.2.0"
RUFF = "ruff==0.17.6"
MYPY = "mypy==2.4.1"
HITS_PER_ROUND = 3
OUTCOMES = ("passed", "failed", "skipped", "xfailed", "xpassed", "error")
# forge's mypy flags (forge/validation/python.py).
MYPY_FLAGS = (
    "--show-column-numbers",
    "--show-error-codes",
    "--no-error-summary",
    "--no-color-output",
    "--no-pretty",
)


@dataclass(frozen=True)
class Project:
    name: str  # on PyPI
    version: str
    test_requirements: tuple[str, ...]
    mypy: bool  # the project configures mypy, so forge runs it
    why: str


PROJECTS = (
    Project(
        "more-itertools",
        "11.2.1",
        test_requirements=(),
        mypy=True,
        why="unittest suite with ~21,000 subTest cases and no test dependencies; mypy "
        "configured in setup.cfg without `files`",
    ),
    Project(
        "click",
        "8.5.1",
        test_requirements=(),
        mypy=True,
        why="pytest suite needing only pytest, with skips, an xfail and 31,000 stress tests "
        "deselected by addopts; strict mypy in pyproject.toml with `files`; ruff configured "
        "with fix = true and output-format = full, which forge's flags override",
    ),
    Project(
        "python-dateutil",
        "4.0.0",
        # tests/conftest.py adds pytest-cov's no_cover mark, an error without it
        # (filterwarnings = error); test_tzfile.py imports attr.
        test_requirements=(
            "hypothesis==6.170.27",
            "freezegun==1.5.5",
            "attrs==26.1.0",
            "pytest-cov==7.1.0",
        ),
        mypy=False,
        why="pytest suite with hypothesis, freezegun and xfail_strict = true (many xfails); "
        "no mypy configuration",
    ),
)


def run(argv: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def set_up(project: Project, folder: Path) -> Path:
    """The project's sdist extracted into a git repository, with its .venv installed."""
    downloads = folder / "sdists"
    spec = f"{project.name}=={project.version}"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-binary",
            ":all:",
            "--no-deps",
            spec,
            "-d",
            str(downloads),
            "-q",
        ],
        folder,
        f"downloading {spec}",
    )
    normalized = re.sub(r"[-_.]+", "_", project.name).lower()
    (sdist,) = [p for p in downloads.iterdir() if p.name.lower().startswith(f"{normalized}-")]
    with tarfile.open(sdist) as archive:
        archive.extractall(folder, filter="data")
    root = folder / f"{sdist.name.removesuffix('.tar.gz')}"
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    run([*git, "init", "-q"], root, "git init")
    # What a developer's .gitignore would hold; the project's own files are left as shipped.
    (root / ".git" / "info" / "exclude").write_text(".venv/\n.mypy_cache/\n.ruff_cache/\n")
    run([*git, "add", "-A"], root, "git add")
    run([*git, "commit", "-q", "-m", f"{spec} sdist"], root, "git commit")
    run([sys.executable, "-m", "venv", ".venv"], root, "python -m venv")
    tools = [PYTEST, RUFF, *([MYPY] if project.mypy else [])]
    run(
        [
            ".venv/bin/python",
            "-m",
            "pip",
            "install",
            "-q",
            "-e",
            ".",
            *tools,
            *project.test_requirements,
        ],
        root,
        f"installing {spec} and its test dependencies",
    )
    return root


def hand_commands(project: Project, root: Path) -> list[tuple[str, list[str]]]:
    venv = root / ".venv" / "bin"
    commands = [("ruff", [str(venv / "ruff"), "check", "--output-format=json", "--no-fix", "."])]
    if project.mypy:
        # What the project's mypy configuration says to check, as forge reads it (its files,
        # else the project's own packages): `mypy .` would also check tests and docs.
        from forge.validation.python import mypy_targets

        commands.append(("mypy", [str(venv / "mypy"), *MYPY_FLAGS, *mypy_targets(root)]))
    commands.append(
        # -rfEX as forge runs it: the short summary that names xpassed tests.
        ("pytest", [str(venv / "python"), "-m", "pytest", "-q", "-rfEX", "-p", "no:cacheprovider"])
    )
    return commands


def clear_tool_caches(root: Path) -> None:
    for name in (".ruff_cache", ".mypy_cache"):
        shutil.rmtree(root / name, ignore_errors=True)


_SUMMARY = re.compile(r"^=*\s*(?P<parts>\d+ [^=]*?|no tests ran) in [\d.]+s\b.*$")
_NAMES = {"errors": "error", "warning": "warnings"}


def pytest_counts(output: str) -> dict[str, int]:
    """The counts on pytest's closing line ("3 failed, 5060 passed, 17 xfailed in 45.41s")."""
    for line in reversed(output.splitlines()):
        match = _SUMMARY.match(line.strip())
        if match is None:
            continue
        counts: dict[str, int] = {}
        for part in match["parts"].split(", "):
            number, _, name = part.partition(" ")
            if number.isdigit():
                counts[_NAMES.get(name, name)] = int(number)
        return counts
    return {}


@dataclass
class HandRun:
    seconds: float
    exit_codes: dict[str, int]
    findings: dict[str, int]
    tool_seconds: dict[str, float]
    counts: dict[str, int]
    summary_line: str


def by_hand(project: Project, root: Path) -> HandRun:
    clear_tool_caches(root)
    exit_codes, tool_seconds, findings = {}, {}, {}
    output = ""
    started = time.perf_counter()
    for tool, argv in hand_commands(project, root):
        began = time.perf_counter()
        done = subprocess.run(argv, cwd=root, capture_output=True, text=True)
        tool_seconds[tool] = time.perf_counter() - began
        exit_codes[tool] = done.returncode
        if tool == "pytest":
            output = done.stdout
        elif tool == "ruff":
            findings[tool] = len(json.loads(done.stdout or "[]")) if done.returncode < 2 else 0
        else:
            findings[tool] = len(re.findall(r"^\S[^\n]*: error: ", done.stdout, re.M))
    seconds = time.perf_counter() - started
    lines = [line for line in output.splitlines() if _SUMMARY.match(line.strip())]
    summary = (lines or [""])[-1]
    return HandRun(seconds, exit_codes, findings, tool_seconds, pytest_counts(output), summary)


@dataclass
class ForgeRun:
    seconds: float
    exit_code: int
    document: dict[str, Any]

    def validator(self, name: str) -> dict[str, Any] | None:
        for found in self.document.get("validators", []):
            if found["name"] == name:
                return dict(found)
        return None


def forge(root: Path, *args: str) -> ForgeRun:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "forge", "validate", str(root), "--format", "json", *args],
        cwd=ROOT,  # this checkout's forge, whichever one is installed
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    try:
        document = json.loads(done.stdout)
    except ValueError:
        message = f"forge validate printed no JSON ({done.returncode}):\n{done.stderr}"
        raise SystemExit(message) from None
    return ForgeRun(seconds, done.returncode, document)


@dataclass
class Measured:
    project: Project
    root: Path
    setup_seconds: float
    hand: list[HandRun] = field(default_factory=list)
    cold: list[ForgeRun] = field(default_factory=list)
    hit: list[ForgeRun] = field(default_factory=list)


def measure(project: Project, folder: Path, rounds: int) -> Measured:
    started = time.perf_counter()
    root = set_up(project, folder)
    measured = Measured(project, root, time.perf_counter() - started)
    for _ in range(rounds):
        measured.hand.append(by_hand(project, root))
        clear_tool_caches(root)
        measured.cold.append(forge(root, "--no-cache"))
        for _ in range(HITS_PER_ROUND):
            measured.hit.append(forge(root))
    return measured


def forge_command(validator: dict[str, Any]) -> list[str]:
    """forge's command for a tool, less the flags it adds to read pytest's JUnit report."""
    command = [str(part) for part in validator.get("command") or []]
    if "junit_family=xunit1" in command:
        at = command.index("junit_family=xunit1")
        del command[at - 1 : at + 1]
    return [part for part in command if not part.startswith("--junitxml=")]


def median(values: list[float]) -> float:
    return statistics.median(values)


def compare_counts(hand: dict[str, int], forged: dict[str, int]) -> list[str]:
    """Plain sentences on how forge's test counts differ from pytest's own, if they do."""
    keys = [k for k in OUTCOMES if hand.get(k) or forged.get(k)]
    if all(hand.get(k, 0) == forged.get(k, 0) for k in keys):
        return ["test counts: the same"]
    differing = ", ".join(
        f"{k} {hand.get(k, 0)} by pytest, {forged.get(k, 0)} by forge"
        for k in keys
        if hand.get(k, 0) != forged.get(k, 0)
    )
    lines = [f"test counts DIFFER: {differing}"]
    folded = {
        "passed": hand.get("passed", 0) + hand.get("xpassed", 0),
        "failed": hand.get("failed", 0),
        "skipped": hand.get("skipped", 0) + hand.get("xfailed", 0),
        "error": hand.get("error", 0),
    }
    if all(forged.get(k, 0) == v for k, v in folded.items()):
        lines.append(
            "  explained: forge counts pytest's xfailed as skipped and xpassed as passed "
            "(JUnit XML has no such outcomes)"
        )
    else:
        lines.append("  NOT explained by xfailed -> skipped and xpassed -> passed")
    return lines


def report(measured: Measured) -> list[str]:
    project, last_hand, last_cold = measured.project, measured.hand[-1], measured.cold[-1]
    document = last_cold.document
    out = [
        f"== {project.name} {project.version}: {project.why}",
        f"   set up (download, venv, install) in {measured.setup_seconds:.0f} s",
    ]
    for used in document.get("interpreters", []):
        out.append(
            f"   interpreter forge used for {used['project']}: {used['path']} "
            f"(Python {used['version']}, from {used['source']})"
        )
    by_hand_codes = ", ".join(
        f"{tool} exit {code}"
        + (f" ({last_hand.findings[tool]} findings)" if last_hand.findings.get(tool) else "")
        for tool, code in last_hand.exit_codes.items()
    )
    out.append(f"   by hand: {by_hand_codes}")
    statuses = []
    for validator in document.get("validators", []):
        findings = len(validator["diagnostics"])
        extra = f" ({findings} findings)" if findings else ""
        extra += f" [{validator['reason']}]" if validator.get("reason") else ""
        statuses.append(f"{validator['name']} {validator['status']}{extra}")
    out.append(f"   forge:   exit {last_cold.exit_code}; " + ", ".join(statuses))
    forge_ran = {v["name"] for v in document.get("validators", [])} - {"python syntax"}
    if forge_ran != set(last_hand.exit_codes):
        out.append(
            f"   forge ran {sorted(forge_ran)}, by hand ran {sorted(last_hand.exit_codes)}: "
            "NOT the same tools"
        )
    for tool, argv in hand_commands(project, measured.root):
        ran = last_cold.validator(tool)
        if ran is not None and forge_command(ran) != argv:
            shown = [
                shlex.join(c).replace(str(measured.root), "<project>")
                for c in (forge_command(ran), argv)
            ]
            out.append(f"   {tool}: forge ran `{shown[0]}`, NOT `{shown[1]}` as by hand")
    hand_red = any(code != 0 for code in last_hand.exit_codes.values())
    forge_red = last_cold.exit_code != 0
    verdict = "red" if hand_red else "green"
    if hand_red == forge_red:
        out.append(f"   gate: both {verdict}")
    else:
        out.append(
            f"   gate DIFFERS: by hand {verdict}, forge exit {last_cold.exit_code} "
            f"({'red' if forge_red else 'green'})"
        )

    pytest_doc = last_cold.validator("pytest") or {}
    forged: dict[str, int] = dict(pytest_doc.get("tests", {}))
    columns = [k for k in OUTCOMES if last_hand.counts.get(k) or forged.get(k)] or ["passed"]
    out.append("   tests              " + "".join(f"{k:>9}" for k in columns))
    for label, counts in (("pytest's own line", last_hand.counts), ("forge's JSON", forged)):
        out.append(f"   {label:<19}" + "".join(f"{counts.get(k, 0):>9}" for k in columns))
    out.append(f"   pytest printed: {last_hand.summary_line.strip('= ')}")
    out += [f"   {line}" for line in compare_counts(last_hand.counts, forged)]
    subtests = [f"{v} {k}" for k, v in last_hand.counts.items() if "subtests" in k]
    if subtests:
        out.append(
            f"   pytest also printed {', '.join(subtests)}; forge's JSON has no subtest counts"
        )
    others = {k: v for k, v in forged.items() if k not in OUTCOMES and v}
    if others:
        out.append(f"   forge's JSON also has: {others}")
    varying = {json.dumps(r.counts, sort_keys=True) for r in measured.hand} | {
        json.dumps((r.validator("pytest") or {}).get("tests"), sort_keys=True)
        for r in measured.cold
    }
    if len(varying) > 2:
        out.append("   the counts changed between rounds: the suite is not deterministic here")

    rerun = Counter(
        f"{v['name']} ({v['status']})"
        for r in measured.hit
        for v in r.document.get("validators", [])
        if v["status"] != "skipped" and not v["cached"]
    )
    if rerun:
        again = ", ".join(f"{name} in {count}" for name, count in rerun.items())
        out.append(f"   not from the cache in the {len(measured.hit)} cache-hit runs: {again}")
    tools = list(last_hand.tool_seconds)
    out.append("   per tool, median s  " + "".join(f"{t:>9}" for t in tools))
    out.append(
        "     by hand           "
        + "".join(f"{median([r.tool_seconds[t] for r in measured.hand]):>9.2f}" for t in tools)
    )
    in_forge = {
        t: [(r.validator(t) or {}).get("duration_s", 0.0) for r in measured.cold] for t in tools
    }
    out.append("     in cold forge     " + "".join(f"{median(in_forge[t]):>9.2f}" for t in tools))
    hand_s = median([r.seconds for r in measured.hand])
    cold_s = median([r.seconds for r in measured.cold])
    hit_s = median([r.seconds for r in measured.hit])
    out += [
        f"   by hand, one after another   median {hand_s:6.2f} s",
        f"   forge validate, cold         median {cold_s:6.2f} s",
        f"   forge validate, cache hit    median {hit_s:6.2f} s",
        f"   cold forge / by hand: {cold_s / hand_s:.2f}x   cache hit / cold forge: "
        f"{hit_s / cold_s:.3f}x",
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--projects",
        default=",".join(p.name for p in PROJECTS),
        help="comma-separated, of: " + ", ".join(p.name for p in PROJECTS),
    )
    args = parser.parse_args()
    rounds = max(1, args.rounds)
    known = {p.name: p for p in PROJECTS}
    names = [name.strip() for name in args.projects.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        parser.error(f"unknown project(s) {', '.join(unknown)}; known: {', '.join(known)}")
    with tempfile.TemporaryDirectory() as folder:
        os.environ["FORGE_HOME"] = str(Path(folder) / "forge-home")
        # A terminal's environment: no CI, and no virtual environment active, so forge finds the
        # project's .venv as it would for a developer who has not activated it.
        for name in ("CI", "VIRTUAL_ENV"):
            os.environ.pop(name, None)
        compile_forge()  # forge's bytecode, as an installed forge has it
        print(f"forge from {ROOT}, {rounds} rounds, Python {sys.version.split()[0]}", flush=True)
        results = []
        for name in names:
            workspace = Path(folder) / name
            workspace.mkdir()
            measured = measure(known[name], workspace, rounds)
            print("\n".join(report(measured)), flush=True)
            results.append(measured)
    print("\nproject              by hand   cold forge   cache hit   cold/hand   hit/cold")
    for measured in results:
        hand_s = median([r.seconds for r in measured.hand])
        cold_s = median([r.seconds for r in measured.cold])
        hit_s = median([r.seconds for r in measured.hit])
        print(
            f"{measured.project.name:<18} {hand_s:8.2f}s {cold_s:11.2f}s {hit_s:10.2f}s "
            f"{cold_s / hand_s:10.2f}x {hit_s / cold_s:9.3f}x"
        )


if __name__ == "__main__":
    main()
