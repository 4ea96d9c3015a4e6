"""Finding the projects in a repository and the validators each one gets."""

from __future__ import annotations

import os
import shutil
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from forge.config.schema import ValidationConfig
from forge.validation.custom import custom_validator
from forge.validation.interpreter import Interpreter
from forge.validation.process import ProcessOutput
from forge.validation.python import python_validators
from forge.validation.types import Stage, Status
from forge.validation.validator import Context, Parsed, Validator

PYTHON_MARKERS = ("pyproject.toml", "setup.cfg", "setup.py")


@dataclass(frozen=True)
class Project:
    kind: Literal["rust", "python", "custom"]
    root: Path  # absolute


def detect(repo_root: Path, scope: Path, files: tuple[str, ...]) -> list[Project]:
    """Rust crates and workspaces, Python projects, outermost first, inside `scope`."""
    # git lists paths as they are in the repository (it does not walk into symlinked folders),
    # so a prefix test says what is inside the scope without resolving every file.
    scope_rel = _relative(scope, repo_root)
    prefix = "" if scope_rel == "." else scope_rel + "/"
    inside = [f for f in files if f.startswith(prefix)]
    projects: list[Project] = []
    # Plain string work per file: a Path per file costs more than the rest of the detection.
    named = [f.rpartition("/") for f in inside]  # (folder, "/", name)
    cargo = sorted({folder or "." for folder, _, name in named if name == "Cargo.toml"}, key=_depth)
    for folder in cargo:
        if not any(_member_of_workspace(repo_root, p.root, folder) for p in projects):
            projects.append(Project("rust", (repo_root / folder).resolve()))
    python = sorted(
        {folder or "." for folder, _, name in named if name in PYTHON_MARKERS}, key=_depth
    )
    roots: list[str] = []
    for folder in python:
        if not any(folder == r or folder.startswith(r + "/") or r == "." for r in roots):
            roots.append(folder)
    # No packaging file, but a tests folder (or test files) is a Python project too.
    depth = len(Path(scope_rel).parts) + 1
    if (
        not roots
        and any(f.endswith(".py") for f in inside)
        and any(f.split("/")[:depth][-1:] == ["tests"] for f in inside)
    ):
        roots.append(scope_rel)
    projects += [Project("python", (repo_root / r).resolve()) for r in roots]
    return projects


def _depth(folder: str) -> tuple[int, str]:
    """Outermost first: the root, then by how deep (not how long: "." and "a" are both short)."""
    return (0 if folder == "." else folder.count("/") + 1, folder)


def _relative(path: Path, root: Path) -> str:
    return path.resolve().relative_to(root.resolve()).as_posix() or "."


def _member_of_workspace(repo_root: Path, workspace: Path, folder: str) -> bool:
    """A crate folder below a Cargo.toml that declares [workspace] belongs to it."""
    candidate = (repo_root / folder).resolve()
    if not candidate.is_relative_to(workspace) or candidate == workspace:
        return candidate == workspace
    try:
        manifest = tomllib.loads((workspace / "Cargo.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False
    return "workspace" in manifest


def validators_for(
    project: Project,
    settings: ValidationConfig,
    cold_builds: bool = False,
    interpreter: Interpreter | None = None,
) -> list[Validator]:
    """`interpreter`: the Python a Python project's checks run under (see interpreter.py)."""
    limit = settings.timeout_seconds
    if project.kind == "rust":
        return rust_validators(dict(settings.commands), dict(settings.timeouts), limit, cold_builds)
    if project.kind == "python":
        assert interpreter is not None
        return python_validators(
            project.root, interpreter, dict(settings.commands), dict(settings.timeouts), limit
        )
    return [custom_validator(spec, limit) for spec in settings.custom]


def rust_validators(
    commands: dict[str, str],
    timeouts: dict[str, float],
    default_timeout: float,
    cold_builds: bool = False,
) -> list[Validator]:
    import shlex

    from forge.validation import rust

    env = cargo_env(os.environ, cold_builds)
    # Read by cargo whether git tracks them or not (a library's Cargo.lock is often ignored).
    extra = ("Cargo.lock", "rust-toolchain", "rust-toolchain.toml", ".cargo/config.toml")

    def argv(name: str, default: list[str]) -> tuple[str, ...]:
        return tuple(shlex.split(commands[name])) if name in commands else tuple(default)

    def messages(tool: str) -> object:
        def parse(out: ProcessOutput, ctx: Context) -> Parsed:
            found = rust.parse_compiler_messages(out.stdout, ctx.repo_root, tool)
            if ctx.only is not None:
                found = [d for d in found if d.file in ctx.only]
            failed = out.exit_code != 0 or any(d.severity == "error" for d in found)
            if out.exit_code not in (0, 101) and not found:
                return Parsed(Status.ERROR, reason=_last_line(out.stderr))
            return Parsed(Status.FAILED if failed else Status.PASSED, found)

        return parse

    def tests(out: ProcessOutput, ctx: Context) -> Parsed:
        found = rust.parse_compiler_messages(out.stdout, ctx.repo_root, "cargo test")
        results = rust.parse_test_output(out.stdout, out.stderr, ctx.repo_root)
        bad = any(t.outcome in ("failed", "error") for t in results)
        if out.exit_code not in (0, 101) and not results and not found:
            return Parsed(Status.ERROR, reason=_last_line(out.stderr))
        if out.exit_code == 0 and not results:
            return Parsed(Status.NO_TESTS, found, reason="cargo test ran no tests")
        failed = bad or out.exit_code != 0 or any(d.severity == "error" for d in found)
        return Parsed(Status.FAILED if failed else Status.PASSED, found, results)

    return [
        Validator(
            name="cargo check",
            tool="cargo",
            stage=Stage.BUILD,
            argv=argv("cargo check", rust.CHECK_ARGS),
            parse=messages("cargo check"),  # type: ignore[arg-type]
            probe=("cargo", "--version"),
            env=env,
            timeout=timeouts.get("cargo check", default_timeout),
            extra_files=extra,
        ),
        Validator(
            name="cargo clippy",
            tool="clippy",
            stage=Stage.LINT,
            argv=argv("cargo clippy", rust.CLIPPY_ARGS),
            parse=messages("cargo clippy"),  # type: ignore[arg-type]
            probe=("cargo", "clippy", "--version"),
            # After cargo check, in the same target folder: clippy reuses the dependencies'
            # check results instead of building them again.
            after=("cargo check",),
            env=env,
            timeout=timeouts.get("cargo clippy", default_timeout),
            lints_files=True,
            extra_files=extra,
        ),
        Validator(
            name="cargo test",
            tool="cargo",
            stage=Stage.TEST,
            argv=argv("cargo test", rust.TEST_ARGS),
            parse=tests,
            probe=("cargo", "--version"),
            after=("cargo check",),
            # The test build shares nothing with a check build, so it starts at once in a
            # folder of its own instead of queueing on cargo's lock; if cargo check fails, it
            # is stopped and reported as skipped because of that.
            speculative=True,
            env={**env, "CARGO_TARGET_DIR": "target/forge-test"},
            prepare=make_target_folder,
            timeout=timeouts.get("cargo test", default_timeout),
            extra_files=extra,
        ),
    ]


# What cargo writes into a target folder it makes, so that backup tools skip it.
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by cargo.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)


def make_target_folder(project: Path) -> None:
    """`target/`, made before cargo test starts beside cargo check. A cargo that finds its
    target folder missing makes it by renaming a new folder into place; cargo test (in
    `target/forge-test`) makes `target/` first, and cargo check's rename can then replace
    that empty folder under it: cargo test stops at once ("No such file or directory", exit
    101). forge makes it the way cargo does, tag included, so it is never there empty."""
    import tempfile

    target = project / "target"
    if target.exists():
        return
    made = Path(tempfile.mkdtemp(prefix="target.", dir=project))
    try:
        (made / "CACHEDIR.TAG").write_text(CACHEDIR_TAG, encoding="utf-8")
        made.rename(target)
    except OSError:
        if not target.is_dir():  # not made by a cargo meanwhile
            raise
    finally:
        if made.exists():
            shutil.rmtree(made, ignore_errors=True)


def cargo_env(environ: Mapping[str, str], cold_builds: bool) -> dict[str, str]:
    """What forge adds to the environment of the cargo commands it runs.

    Where builds start from nothing (`Options.cold_builds`: a CI job, a scratch copy),
    incremental compilation only writes state that no later build reads: a cold `cargo test`
    took twice as long with it. There forge turns it off, unless CARGO_INCREMENTAL is set.
    """
    env = {"CARGO_TERM_COLOR": "never"}
    if cold_builds and "CARGO_INCREMENTAL" not in environ:
        env["CARGO_INCREMENTAL"] = "0"
    return env


def in_ci(environ: Mapping[str, str]) -> bool:
    """`CI` set, as GitHub Actions, GitLab CI and most other CI services set it."""
    return environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "the tool failed without a message"
