"""Finding the projects in a repository and the validators each one gets."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

from forge.config.schema import ValidationConfig
from forge.validation.custom import custom_validator
from forge.validation.interpreter import Interpreter
from forge.validation.process import ProcessOutput
from forge.validation.python import python_validators
from forge.validation.types import ProjectNote, Stage, Status
from forge.validation.validator import Context, Parsed, Validator
from forge.validation.workspaces import (
    cargo_workspace,
    has_library,
    inside,
    is_cargo_fuzz,
    read_toml,
    uv_members,
)

PYTHON_MARKERS = ("pyproject.toml", "setup.cfg", "setup.py")


@dataclass(frozen=True)
class Project:
    kind: Literal["rust", "python", "custom"]
    root: Path  # absolute
    # Folders inside it (relative to it) that its checks leave alone: uv workspace members,
    # projects of their own, and folders [validation] exclude matches.
    skip: tuple[str, ...] = ()
    left_out: tuple[str, ...] = ()  # cargo packages of its workspace [validation] excludes
    library: bool = False  # a package cargo builds here has a library target


@dataclass(frozen=True)
class Detection:
    """The projects to validate, and every other one found, with why it is not validated."""

    projects: list[Project]
    not_validated: list[ProjectNote]
    notes: list[ProjectNote]  # validated, but not as a reader of the manifests would expect


def detect(
    repo_root: Path, scope: Path, files: tuple[str, ...], exclude: tuple[str, ...] = ()
) -> Detection:
    """Rust crates and workspaces, Python projects, outermost first, inside `scope`; folders
    matching an `exclude` pattern (fnmatch, repository-relative) and what is below them are
    left out."""
    # git lists paths as they are in the repository (it does not walk into symlinked folders),
    # so a prefix test says what is inside the scope without resolving every file.
    scope_rel = _relative(scope, repo_root)
    prefix = "" if scope_rel == "." else scope_rel + "/"
    in_scope = [f for f in files if f.startswith(prefix)]
    # Plain string work per file: a Path per file costs more than the rest of the detection.
    named = [f.rpartition("/") for f in in_scope]  # (folder, "/", name)
    excluded = _excluded_folders({folder or "." for folder, _, _ in named}, exclude)
    found = Detection([], [], [])
    cargo = sorted({folder or "." for folder, _, name in named if name == "Cargo.toml"}, key=_depth)
    _detect_rust(repo_root, cargo, frozenset(in_scope), excluded, found)
    python = sorted(
        {folder or "." for folder, _, name in named if name in PYTHON_MARKERS}, key=_depth
    )
    roots = _detect_python(repo_root, python, excluded, found)
    # No packaging file, but a tests folder (or test files) is a Python project too.
    depth = len(Path(scope_rel).parts) + 1
    if (
        not roots
        and not any(_excluded_by(scope_rel, excluded))
        and any(f.endswith(".py") for f in in_scope)
        and any(f.split("/")[:depth][-1:] == ["tests"] for f in in_scope)
    ):
        roots.append(scope_rel)
    for root in roots:
        inner = [r for r in [*roots, *excluded] if r != root and inside(r, root)]
        skip = tuple(r if root == "." else r[len(root) + 1 :] for r in inner)
        found.projects.append(Project("python", (repo_root / root).resolve(), skip))
    found.not_validated.sort(key=lambda n: (n.path, n.kind))
    return found


def _detect_rust(
    repo_root: Path,
    cargo: list[str],
    files: frozenset[str],
    excluded: dict[str, str],
    found: Detection,
) -> None:
    """Each workspace root and crate of its own is a project; the rest is listed with why."""
    crates = {c: read_toml(repo_root / c / "Cargo.toml") for c in cargo}
    workspaces = {c: cargo_workspace(c, crates) for c, m in crates.items() if "workspace" in m}
    validated: dict[str, set[str]] = {}  # project folder -> crates cargo builds there
    left_out: dict[str, list[str]] = {}  # workspace folder -> packages [validation] excludes
    for crate in cargo:
        manifest = crates[crate]
        # The nearest workspace that does not exclude it is its own, as cargo looks it up.
        around = [w for f, w in workspaces.items() if f != crate and inside(crate, f)]
        around.sort(key=lambda w: _depth(w.folder), reverse=True)
        owner = next((w for w in around if not w.excludes(crate)), None)
        if "workspace" in manifest:
            owner = None
        if pattern := next(_excluded_by(crate, excluded), None):
            found.not_validated.append(ProjectNote(crate, "rust", _matched(pattern)))
            if owner is not None and crate in owner.members:
                left_out.setdefault(owner.folder, []).append(_package_name(manifest))
        elif is_cargo_fuzz(manifest):
            reason = "a cargo-fuzz crate: it needs a nightly toolchain; run it with `cargo fuzz`"
            found.not_validated.append(ProjectNote(crate, "rust", reason))
        elif owner is not None and crate in owner.members and owner.folder in validated:
            validated[owner.folder].add(crate)
        elif owner is not None and crate in owner.members:
            reason = f"a member of the workspace at {owner.folder}, which is not validated"
            found.not_validated.append(ProjectNote(crate, "rust", reason))
        elif owner is not None:
            reason = (
                f"inside the workspace at {owner.folder} but not a member of it "
                "(cargo refuses to build it)"
            )
            found.not_validated.append(ProjectNote(crate, "rust", reason))
        else:
            built = validated.setdefault(crate, set())
            if "package" in manifest:
                built.add(crate)
            if excluder := next((w for w in around if w.excludes(crate)), None):
                note = f"validated on its own: the workspace at {excluder.folder} excludes it"
                found.notes.append(ProjectNote(crate, "rust", note))
    for folder, built in validated.items():
        skipped = left_out.get(folder, [])
        library = any(
            has_library(c, crates[c], files)
            for c in built
            if _package_name(crates[c]) not in skipped
        )
        root = (repo_root / folder).resolve()
        found.projects.append(Project("rust", root, left_out=tuple(skipped), library=library))


def _detect_python(
    repo_root: Path, python: list[str], excluded: dict[str, str], found: Detection
) -> list[str]:
    """The folders of Python projects: the outermost ones, and each member of a uv workspace
    (a root with no [project] of its own is no project). Folders are outermost first."""
    roots: list[str] = []
    virtual: set[str] = set()
    members: set[str] = set()
    listed: list[str] = []
    for folder in python:
        if pattern := next(_excluded_by(folder, excluded), None):
            if not any(inside(folder, f) for f in listed):
                listed.append(folder)
                found.not_validated.append(ProjectNote(folder, "python", _matched(pattern)))
            continue
        around = [r for r in roots if inside(folder, r)]
        if folder not in members and any(r not in virtual for r in around):
            continue  # its enclosing project covers it
        roots.append(folder)
        pyproject = read_toml(repo_root / folder / "pyproject.toml")
        found_members = uv_members(folder, pyproject, python)
        if found_members is not None:
            members.update(found_members)
            if "project" not in pyproject:
                virtual.add(folder)
    return [r for r in roots if r not in virtual]


def _excluded_folders(folders: set[str], patterns: tuple[str, ...]) -> dict[str, str]:
    """The outermost folders (of these and their parents) each pattern matches, with it."""
    if not patterns:
        return {}
    every = set(folders)
    for folder in folders:
        while folder not in (".", ""):
            folder = folder.rpartition("/")[0] or "."
            every.add(folder)
    cleaned = [(p, p.strip().removeprefix("./").rstrip("/") or ".") for p in patterns]
    matched: dict[str, str] = {}
    for folder in sorted(every, key=_depth):
        if any(inside(folder, m) for m in matched):
            continue
        pattern = next((p for p, c in cleaned if fnmatchcase(folder, c)), None)
        if pattern is not None:
            matched[folder] = pattern
    return matched


def _excluded_by(folder: str, excluded: dict[str, str]) -> Iterator[str]:
    return (pattern for match, pattern in excluded.items() if inside(folder, match))


def _matched(pattern: str) -> str:
    return f'matched [validation] exclude ("{pattern}")'


def _package_name(manifest: dict[str, Any]) -> str:
    package = manifest.get("package")
    name = package.get("name") if isinstance(package, dict) else None
    return name if isinstance(name, str) else ""


def _depth(folder: str) -> tuple[int, str]:
    """Outermost first: the root, then by how deep (not how long: "." and "a" are both short)."""
    return (0 if folder == "." else folder.count("/") + 1, folder)


def _relative(path: Path, root: Path) -> str:
    return path.resolve().relative_to(root.resolve()).as_posix() or "."


def validators_for(
    project: Project,
    settings: ValidationConfig,
    cold_builds: bool = False,
    interpreter: Interpreter | None = None,
    copy: bool = False,
) -> list[Validator]:
    """`interpreter`: the Python a Python project's checks run under (see interpreter.py);
    `copy`: the project is a copy of the user's checkout, whose environment it runs in."""
    limit = settings.timeout_seconds
    if project.kind == "rust":
        return rust_validators(
            dict(settings.commands),
            dict(settings.timeouts),
            limit,
            cold_builds,
            library=project.library,
            left_out=project.left_out,
        )
    if project.kind == "python":
        assert interpreter is not None
        return python_validators(
            project.root,
            interpreter,
            dict(settings.commands),
            dict(settings.timeouts),
            limit,
            project.skip,
            copy=copy,
        )
    return [custom_validator(spec, limit) for spec in settings.custom]


def rust_validators(
    commands: dict[str, str],
    timeouts: dict[str, float],
    default_timeout: float,
    cold_builds: bool = False,
    library: bool = False,
    left_out: tuple[str, ...] = (),
) -> list[Validator]:
    """cargo check, clippy and test; `library`: a package has a library target (cargo check
    and clippy get `--lib`); `left_out`: workspace packages not validated (`--exclude`)."""
    import shlex

    from forge.validation import rust

    env = cargo_env(os.environ, cold_builds)
    # Read by cargo here and in every folder above, whether git tracks them or not (a
    # library's Cargo.lock is often ignored), and from CARGO_HOME.
    config: tuple[str, ...] = (".cargo/config.toml", ".cargo/config", "Cargo.lock")
    config += ("rust-toolchain", "rust-toolchain.toml")
    cargo_home = Path(os.environ.get("CARGO_HOME") or Path.home() / ".cargo")
    user = (str(cargo_home / "config.toml"), str(cargo_home / "config"))

    def argv(name: str, default: list[str]) -> tuple[str, ...]:
        if name in commands:
            found = shlex.split(commands[name])
        else:
            found = [a for a in default if library or a != "--lib"]
        if "--workspace" in found:  # cargo takes --exclude only beside it
            found += [part for name in left_out for part in ("--exclude", name)]
        return tuple(found)

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
            if any(rust.summed_counts(out.stdout).values()):  # tests ran, none was read
                return Parsed(Status.ERROR, found, reason="cargo test's report was not understood")
            # A crate with no tests yet passes, as `cargo test` says (pytest's exit 5 does not).
            return Parsed(Status.PASSED, found, reason="cargo test ran 0 tests")
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
            config_files=config,
            user_files=user,
            reads_repository=True,
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
            config_files=config,
            user_files=user,
            reads_repository=True,
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
            config_files=config,
            user_files=user,
            reads_repository=True,
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
