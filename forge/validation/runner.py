"""`validate()`: detect the projects, run their validators in stages and in parallel, report.

This is the library entry point that `forge validate`, the task engine and `forge fanout
--validate` share: a folder and a configuration in, a typed `ValidationReport` out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from forge.config.schema import ValidationConfig
from forge.errors import UsageError
from forge.home import forge_home
from forge.validation.cache import ResultCache
from forge.validation.findings import reported_once
from forge.validation.interpreter import Interpreter, Interpreters
from forge.validation.process import run
from forge.validation.projects import Project, detect, validators_for
from forge.validation.sandbox import Sandbox, require_bwrap
from forge.validation.tools import (
    ToolVersions,
    file_probe,
    file_stamp,
    lookup_probe,
    python_choice_probe,
    python_choice_stamp,
    python_environment_probe,
)
from forge.validation.tree import Listing, git_root, listing, repository_root
from forge.validation.types import PythonUsed, Stage, Status, ValidationReport, ValidatorResult
from forge.validation.validator import Context, Parsed, Validator

STAGE_SWITCH = {
    Stage.SYNTAX: "enable_syntax_check",
    Stage.BUILD: "enable_build_check",
    Stage.LINT: "enable_lint_check",
    Stage.TEST: "enable_test_execution",
}
BLOCKING = {Status.FAILED, Status.TIMEOUT, Status.ERROR}
POLL_SECONDS = 0.2  # how often the loop looks at Options.stop while validators run


class NothingToValidate(UsageError):
    pass


ProgressState = Literal["queued", "running", "done"]


@dataclass(frozen=True)
class ProgressEvent:
    """A validator was planned ("queued"), started a process or check ("running"), or has its
    result ("done"; a cache hit or a skip goes straight there from "queued")."""

    project: str  # relative to the repository root, as in ValidatorResult.project
    validator: str
    stage: Stage
    state: ProgressState
    result: ValidatorResult | None = None  # set when done


@dataclass(frozen=True)
class Options:
    use_cache: bool = True
    changed_since: str | None = None  # --changed: lint only files changed since this ref
    baseline: str | None = None  # --baseline: report only findings new since this ref
    jobs: int | None = None
    cache_dir: Path | None = None
    # Set by a caller that no longer wants the result (Ctrl-C in run-milestone): every running
    # validator is killed with its process group, and nothing more starts.
    stop: threading.Event | None = None
    # Builds here start from nothing (a CI job, a scratch copy): cargo runs without incremental
    # compilation, whose state no later build would read, unless CARGO_INCREMENTAL is set.
    cold_builds: bool = False
    # The repository's files as the caller already knows them (forge's own worktree, listed
    # before the caller wrote its edits): not listed again. None: asked of git.
    listing: Listing | None = None
    # Variables whose values never appear in a report (the configuration's API keys), besides
    # every one named like a credential: validators see the whole environment.
    secrets: tuple[str, ...] = ()
    # Tools (or validator names) that may be missing: skipped then, instead of failing the
    # gate as "could not run" (--allow-missing, besides [validation] optional).
    allow_missing: tuple[str, ...] = ()
    # The user's checkout when the folder validated is a copy of it (a worktree of forge's, a
    # baseline): its project environment (.venv) is looked for there.
    environment_root: Path | None = None
    # The code validated was written by a model (run-milestone's attempts, fanout's
    # candidates): its validators run without the user's credentials, but for the variables
    # `[validation] pass_env` keeps (see forge.providers.secrets.without_credentials).
    scrub_secrets: bool = False
    # Run every validator in a bubblewrap sandbox (`forge validate --sandbox`), whatever the
    # configuration says; model-written code (`scrub_secrets`) is sandboxed when `[validation]
    # sandbox = "bwrap"`. Either way, a sandbox that cannot be made is an error, never a reason
    # to run unsandboxed.
    sandbox: bool = False
    # Told of each validator's progress, one call at a time (never from two threads at once).
    on_event: Callable[[ProgressEvent], None] | None = None


@dataclass(frozen=True)
class Planned:
    project: Project
    validator: Validator
    after: tuple[tuple[str, str], ...]  # (project root, validator name) that must pass first

    @property
    def id(self) -> tuple[str, str]:
        return (str(self.project.root), self.validator.name)


def validate(
    path: Path, settings: ValidationConfig, options: Options | None = None
) -> ValidationReport:
    options = options or Options()
    started = time.monotonic()
    scope = path.resolve()
    if not scope.is_dir():
        raise UsageError(f"{path} is not a folder")
    _in_git_for_refs(scope, options)
    if sandboxed(settings, options):
        require_bwrap(_asking(options))  # before anything runs
    repo_root = repository_root(scope)
    listed = options.listing if options.listing is not None else listing(repo_root)
    found = detect(repo_root, scope, listed.files, tuple(settings.exclude))
    projects = found.projects
    if settings.custom:
        projects.append(Project("custom", repo_root))
    if not projects and found.not_validated:
        left = "; ".join(f"{n.path} — {n.reason}" for n in found.not_validated)
        raise NothingToValidate(f"nothing to validate in {path}: not validated: {left}")
    if not projects:
        raise NothingToValidate(
            f"nothing to validate in {path}: no Cargo.toml, pyproject.toml, setup.cfg, setup.py "
            "or tests folder was found, and [validation] configures no custom validator"
        )
    only = _changed_files(repo_root, options.changed_since) if options.changed_since else None
    home = options.cache_dir or forge_home() / "validate"
    known = Interpreters(home / "interpreters.json")
    pythons = _interpreters(projects, repo_root, known, options.environment_root)
    home_root = options.environment_root
    copy = home_root is not None and home_root.resolve() != repo_root
    plan = _plan(projects, settings, options.cold_builds, pythons, copy)
    runner = _Runner(repo_root, listed, settings, options, only)
    if sandboxed(settings, options):
        runner.sandbox = _sandbox(repo_root, plan, pythons, options)
    results = reported_once(runner.run_all(plan))
    report = ValidationReport(str(repo_root), results, time.monotonic() - started)
    report.tool_stamps = {
        **runner.versions.used,
        **_python_stamps(pythons, repo_root),
        **_extra_file_stamps(plan, listed.files, repo_root),
    }
    report.interpreters = {
        _relative(root, repo_root): PythonUsed(p.path, p.version, p.source, p.describe())
        for root, p in pythons.items()
    }
    report.not_validated, report.notes = found.not_validated, found.notes
    if options.baseline:
        report = _against_baseline(report, scope, repo_root, settings, options)
    report.duration = time.monotonic() - started
    return report


def sandboxed(settings: ValidationConfig, options: Options) -> bool:
    """Whether this run's validators run in the bubblewrap sandbox."""
    return options.sandbox or (options.scrub_secrets and settings.sandbox == "bwrap")


def _asking(options: Options) -> str:
    """What asked for the sandbox, as the user wrote it."""
    return "--sandbox" if options.sandbox else '[validation] sandbox = "bwrap"'


def _sandbox(
    repo_root: Path, plan: list[Planned], pythons: dict[Path, Interpreter], options: Options
) -> Sandbox:
    """The sandbox around `repo_root`, keeping what the planned validators run and read."""
    program = require_bwrap(_asking(options))
    needed: list[str | Path] = []
    for item in plan:
        needed += [*item.validator.argv[:1], *item.validator.user_files]
    for python in pythons.values():
        needed += [python.path, *python.sites, python.scripts]
    return Sandbox.around(program, repo_root, needed, os.environ)


def _interpreters(
    projects: list[Project], repo_root: Path, known: Interpreters, checkout: Path | None
) -> dict[Path, Interpreter]:
    """The Python each Python project's checks run under; in a copy of the user's `checkout`,
    the environment the checkout has."""
    home = checkout.resolve() if checkout is not None else repo_root
    return {
        p.root: known.find(home / p.root.relative_to(repo_root), home, os.environ)
        for p in projects
        if p.kind == "python"
    }


def _python_stamps(pythons: dict[Path, Interpreter], repo_root: Path) -> dict[str, str | None]:
    """What a replay of this run must find unchanged: which interpreter each project would
    get now (a `.venv` made since, another VIRTUAL_ENV), and what is installed in each."""
    stamps: dict[str, str | None] = {}
    for root, python in pythons.items():
        stamps[python_choice_probe(root, repo_root)] = python_choice_stamp(root, repo_root)
        stamps[python_environment_probe(python.sites)] = python.stamp
    return stamps


def _extra_file_stamps(
    plan: list[Planned], listed: tuple[str, ...], repo_root: Path
) -> dict[str, str | None]:
    """Configuration the tools read that the listing does not hold (above the repository, in
    the user's home, ignored by git): a replay of this run must find it as it was."""
    files = set(listed)
    paths = {path for item in plan for path in item.validator.files_read(item.project.root)}
    stamps: dict[str, str | None] = {}
    for path in sorted(paths):
        inside = path.is_relative_to(repo_root) and _relative(path, repo_root) in files
        if not inside:
            stamps[file_probe(path)] = file_stamp(path)
    for item in plan:
        for name, search in item.validator.lookups:
            stamps[lookup_probe(name, search)] = shutil.which(name, path=search)
    return stamps


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _plan(
    projects: list[Project],
    settings: ValidationConfig,
    cold: bool,
    pythons: dict[Path, Interpreter],
    copy: bool = False,
) -> list[Planned]:
    """`copy`: the tree is a copy of the user's checkout, run with the checkout's Python."""
    plan: list[Planned] = []
    for project in projects:
        python = pythons.get(project.root)
        for validator in validators_for(project, settings, cold, python, copy):
            after = tuple((str(project.root), name) for name in validator.after)
            plan.append(Planned(project, validator, after))
    gates = tuple(p.id for p in plan if p.validator.stage in (Stage.SYNTAX, Stage.BUILD))
    # Custom test-stage validators wait for every syntax and build check, as built-in ones do.
    return [
        replace(p, after=gates)
        if p.project.kind == "custom" and p.validator.stage is Stage.TEST
        else p
        for p in plan
    ]


class _Runner:
    def __init__(
        self,
        repo_root: Path,
        listed: Listing,
        settings: ValidationConfig,
        options: Options,
        only: tuple[str, ...] | None,
    ) -> None:
        self.repo_root = repo_root
        self.files = listed.files
        self.known = listed.known
        self.settings = settings
        self.options = options
        self.only = only
        home = options.cache_dir or forge_home() / "validate"
        self.cache = ResultCache(home / "results")
        self.versions = ToolVersions(home / "tools.json")
        from forge.providers.secrets import Redactor, without_credentials

        self.redact = Redactor.for_tools(os.environ, options.secrets)
        self.environ: dict[str, str] | None = None
        self.environment_marker = ""
        if options.scrub_secrets:
            keep = settings.pass_env
            self.environ = without_credentials(os.environ, options.secrets, keep)
            dropped = sorted(set(os.environ) - set(self.environ))
            self.environment_marker = f"|without:{','.join(dropped)}"
        self.sandbox: Sandbox | None = None  # set when the run is sandboxed
        if sandboxed(settings, options):
            self.environment_marker += "|sandbox:bwrap"  # a sandbox changes what tools can do
        self._telling = threading.Lock()

    def _tell(
        self, item: Planned, state: ProgressState, result: ValidatorResult | None = None
    ) -> None:
        if self.options.on_event is None:
            return
        project = item.project.root.relative_to(self.repo_root).as_posix()
        event = ProgressEvent(project, item.validator.name, item.validator.stage, state, result)
        with self._telling:
            self.options.on_event(event)

    def run_all(self, plan: list[Planned]) -> list[ValidatorResult]:
        """Every validator as soon as the ones it waits for are done, several at a time.

        A speculative validator (cargo test, clippy) starts at once beside the build check it
        depends on; if that check fails, it is killed and reported as skipped because of it.
        """
        done: dict[tuple[str, str], ValidatorResult] = {}
        early: dict[tuple[str, str], ValidatorResult] = {}  # speculative, deps not yet known
        cancels = {p.id: threading.Event() for p in plan}
        planned_ids = {p.id for p in plan}
        waiting = list(plan)
        for item in plan:
            self._tell(item, "queued")
        told: set[tuple[str, str]] = set()
        jobs = self.options.jobs or max(4, 2 * (os.cpu_count() or 2))
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            running: dict[Future[ValidatorResult], Planned] = {}
            while waiting or running or early:
                self._tell_done(plan, done, told)
                for item in list(waiting):
                    deps = [d for d in item.after if d in planned_ids]
                    blockers = [done[d] for d in deps if d in done and done[d].status in BLOCKING]
                    ready = all(d in done for d in deps)
                    if blockers:
                        cancels[item.id].set()
                    if item.validator.speculative and not blockers:
                        waiting.remove(item)
                        running[pool.submit(self.execute, item, cancels[item.id])] = item
                    elif ready or blockers:
                        waiting.remove(item)
                        if blockers:
                            done[item.id] = self._blocked(item, blockers)
                        else:
                            running[pool.submit(self.execute, item, cancels[item.id])] = item
                for item_id, result in list(early.items()):
                    item = next(p for p in plan if p.id == item_id)
                    deps = [d for d in item.after if d in planned_ids]
                    blockers = [done[d] for d in deps if d in done and done[d].status in BLOCKING]
                    if blockers:
                        done[item_id] = self._blocked(item, blockers)
                        del early[item_id]
                    elif all(d in done for d in deps):
                        done[item_id] = result
                        del early[item_id]
                for item in plan:
                    deps = [d for d in item.after if d in planned_ids]
                    stopped = self.options.stop is not None and self.options.stop.is_set()
                    if stopped or any(d in done and done[d].status in BLOCKING for d in deps):
                        cancels[item.id].set()
                if not running:
                    continue
                finished, _ = wait(running, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                for future in finished:
                    item = running.pop(future)
                    if item.validator.speculative:
                        early[item.id] = future.result()
                    else:
                        done[item.id] = future.result()
        self._tell_done(plan, done, told)
        return [done[p.id] for p in plan]

    def _tell_done(
        self,
        plan: list[Planned],
        done: dict[tuple[str, str], ValidatorResult],
        told: set[tuple[str, str]],
    ) -> None:
        for item in plan:
            if item.id in done and item.id not in told:
                told.add(item.id)
                self._tell(item, "done", done[item.id])

    def execute(self, item: Planned, cancel: threading.Event | None = None) -> ValidatorResult:
        validator = item.validator
        base = self._result(item, Status.SKIPPED)
        switch = STAGE_SWITCH[validator.stage]
        if not getattr(self.settings, switch):
            return replace(base, reason=f"switched off by [validation] {switch} = false")
        if validator.unavailable is not None:
            return self._missing(item, validator.unavailable)
        version = ""
        if validator.probe is not None:
            found = self.versions.version(validator.probe, dict(validator.env))
            program = validator.probe[0]
            if found is None and shutil.which(program) is None:
                # The program itself is missing (clippy's `cargo clippy` without cargo).
                return self._missing(item, f"{program} is not installed (looked on PATH)", program)
            if found is None:
                command = " ".join(validator.probe)
                return self._missing(
                    item, f"{validator.tool} is not installed (`{command}` failed; looked on PATH)"
                )
            version = found
        ctx = self._context(item)
        argv = list(validator.argv)
        if self.only is not None and validator.lints_files:
            targets = validator.relevant(ctx.only or ())
            if not targets:
                return replace(base, reason="no changed file for it to check")
            if "." in argv:
                at = argv.index(".")
                argv[at : at + 1] = [str(self.repo_root / f) for f in targets]
        # The environment the tool gets is part of what it sees: scrubbed or whole.
        settings = validator.settings + self.environment_marker
        key = self.cache.key(replace(validator, argv=tuple(argv), settings=settings), ctx, version)
        if self.options.use_cache and (hit := self.cache.get(key)) is not None:
            return hit
        result = self._run(item, ctx, argv, cancel)
        if cancel is None or not cancel.is_set():
            self.cache.put(key, result)
        return result

    def _run(
        self, item: Planned, ctx: Context, argv: list[str], cancel: threading.Event | None
    ) -> ValidatorResult:
        validator = item.validator
        self._tell(item, "running")
        with tempfile.TemporaryDirectory(prefix="forge-validate-") as scratch:
            ctx = replace(ctx, scratch=Path(scratch), sandbox=self.sandbox)
            started = time.monotonic()
            if validator.run_in_process is not None:
                parsed = validator.run_in_process(ctx)
                return self._result(item, parsed, time.monotonic() - started)
            command = [part.replace("{scratch}", scratch) for part in argv]
            try:
                if validator.prepare is not None:
                    validator.prepare(item.project.root)
                if self.sandbox is not None:
                    command = self.sandbox.wrap(command, item.project.root, [Path(scratch)])
                out = run(
                    command,
                    item.project.root,
                    validator.timeout,
                    validator.env,
                    cancel,
                    base_env=self.environ,
                )
            except OSError as exc:
                return self._result(item, Parsed(Status.ERROR, reason=f"cannot start: {exc}"))
            if cancel is not None and cancel.is_set():
                return self._result(item, Parsed(Status.SKIPPED, reason="cancelled"))
            if out.timed_out:
                parsed = Parsed(
                    Status.TIMEOUT,
                    reason=f"killed after {validator.timeout:g}s, past its time limit",
                )
            else:
                assert validator.parse is not None
                try:
                    parsed = validator.parse(out, ctx)
                except Exception as exc:  # a parser bug must not hide the tool's result
                    parsed = Parsed(Status.ERROR, reason=f"output not understood: {exc!r}")
            if parsed.status is Status.COULD_NOT_RUN:  # a custom command's program is missing
                return self._missing(item, self.redact(parsed.reason or "not installed"))
            result = self._result(item, parsed, out.duration, command, out.exit_code)
            if result.status in (Status.ERROR, Status.TIMEOUT) or result.unexplained:
                result.output_tail = out.tail(self.redact)  # nothing else says what went wrong
            return result

    def _context(self, item: Planned) -> Context:
        root = item.project.root
        prefix = root.relative_to(self.repo_root).as_posix()
        files = (
            self.files
            if prefix == "."
            else tuple(f for f in self.files if f.startswith(prefix + "/"))
        )
        # The folders it leaves alone (uv workspace members, [validation] exclude) are every
        # file's business for the cache key, but --changed names none of their files to it.
        skip = tuple(s if prefix == "." else f"{prefix}/{s}" for s in item.project.skip)
        mine = {f for f in files if not f.startswith(tuple(f"{s}/" for s in skip))}
        only = None if self.only is None else tuple(f for f in self.only if f in mine)
        return Context(self.repo_root, root, files, only, known=self.known, repository=self.files)

    def _result(
        self,
        item: Planned,
        parsed: Parsed | Status,
        duration: float = 0.0,
        command: list[str] | None = None,
        exit_code: int | None = None,
    ) -> ValidatorResult:
        if isinstance(parsed, Status):
            parsed = Parsed(parsed)
        redact = self.redact
        return ValidatorResult(
            name=item.validator.name,
            tool=item.validator.tool,
            stage=item.validator.stage,
            project=item.project.root.relative_to(self.repo_root).as_posix(),
            status=parsed.status,
            command=command or list(item.validator.argv),
            reason=parsed.reason and redact(parsed.reason),
            exit_code=exit_code,
            duration=duration,
            # What tools print is theirs to word, and may quote the environment they were given.
            diagnostics=[
                replace(d, message=redact(d.message), rendered=d.rendered and redact(d.rendered))
                for d in parsed.diagnostics
            ],
            tests=[replace(t, message=t.message and redact(t.message)) for t in parsed.tests],
        )

    def _missing(self, item: Planned, why: str, program: str = "") -> ValidatorResult:
        """A tool the project needs is not there: a failure, unless the user made it optional
        (by the validator's tool or name, or the `program` missing under it)."""
        validator = item.validator
        allowed = {*self.settings.optional, *self.options.allow_missing}
        if allowed.intersection({validator.tool, validator.name, program} - {""}):
            return replace(self._result(item, Status.SKIPPED), reason=f"{why}; optional")
        return replace(self._result(item, Status.COULD_NOT_RUN), reason=why)

    def _blocked(self, item: Planned, blockers: list[ValidatorResult]) -> ValidatorResult:
        names = ", ".join(sorted({b.name for b in blockers}))
        return replace(
            self._result(item, Status.SKIPPED),
            reason=f"skipped because {names} failed",
        )


def _git(repo_root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo_root, capture_output=True, text=True)
    if done.returncode != 0:
        raise UsageError(f"git {' '.join(args)}: {done.stderr.strip() or 'failed'}")
    return done.stdout


def _in_git_for_refs(scope: Path, options: Options) -> None:
    """--changed and --baseline name git refs: outside a repository, one line, not git's usage."""
    asked = [
        flag
        for flag, ref in (("--changed", options.changed_since), ("--baseline", options.baseline))
        if ref is not None
    ]
    if asked and git_root(scope) is None:
        needs = "needs" if len(asked) == 1 else "need"
        raise UsageError(
            f"{' and '.join(asked)} {needs} git history, and {scope} is not inside a git repository"
        )


def _changed_files(repo_root: Path, base: str) -> tuple[str, ...]:
    """Files that differ from `base` in the work tree, plus new untracked files."""
    changed = _git(repo_root, "diff", "--name-only", "-z", base, "--").split("\0")
    new = _git(repo_root, "ls-files", "-z", "--others", "--exclude-standard").split("\0")
    return tuple(sorted({f for f in changed + new if f and (repo_root / f).is_file()}))


def _against_baseline(
    report: ValidationReport,
    scope: Path,
    repo_root: Path,
    settings: ValidationConfig,
    options: Options,
) -> ValidationReport:
    """Keep only the findings and failing tests that `options.baseline` did not have."""
    ref = options.baseline
    assert ref is not None
    _git(repo_root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    holder = Path(tempfile.mkdtemp(prefix="forge-baseline-"))
    tree = holder / "tree"
    try:
        _git(repo_root, "worktree", "add", "--detach", str(tree), ref)
        old = validate(
            tree / scope.relative_to(repo_root),
            settings,
            # Its progress is not this run's: the view shows the tree being validated.
            replace(
                options,
                baseline=None,
                changed_since=None,
                listing=None,
                environment_root=options.environment_root or repo_root,
                on_event=None,
            ),
        )
    except NothingToValidate:
        old = ValidationReport(str(tree), [])
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(tree)], cwd=repo_root, capture_output=True
        )
        shutil.rmtree(holder, ignore_errors=True)
    previous = {(r.project, r.name): r for r in old.results}
    results = [_only_new(r, previous.get((r.project, r.name)), ref) for r in report.results]
    return replace(report, results=results, baseline=ref)


def _only_new(result: ValidatorResult, before: ValidatorResult | None, ref: str) -> ValidatorResult:
    if before is None or result.status not in (Status.PASSED, Status.FAILED):
        return result
    seen = Counter(d.baseline_key() for d in before.diagnostics)
    fresh = []
    for finding in result.diagnostics:
        key = finding.baseline_key()
        if seen[key] > 0:
            seen[key] -= 1
        else:
            fresh.append(finding)
    failed_before = {(t.suite, t.name) for t in before.tests if t.outcome in ("failed", "error")}
    new_failures = [
        t
        for t in result.tests
        if t.outcome in ("failed", "error") and (t.suite, t.name) not in failed_before
    ]
    still_failing = any(d.severity == "error" for d in fresh) or bool(new_failures)
    # A failure nothing explains is new unless the baseline failed too.
    still_failing = still_failing or (result.unexplained and before.status is not Status.FAILED)
    status = result.status
    reason = result.reason
    if status is Status.FAILED and not still_failing:
        status, reason = Status.PASSED, f"its failures were already present in {ref}"
    return replace(result, diagnostics=fresh, status=status, reason=reason)
