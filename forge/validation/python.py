"""Python validators: syntax, ruff (JSON), mypy when configured, pytest (JUnit XML)."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from forge.validation.interpreter import Interpreter
from forge.validation.process import ProcessOutput
from forge.validation.types import Diagnostic, Stage, Status, TestOutcome, TestResult
from forge.validation.validator import Context, InProcess, Parsed, Validator

PYTEST_NO_TESTS = 5
# What each tool reads: ruff lints notebooks too; mypy reads stubs, py.typed markers and its
# configuration wherever it lives.
RUFF_FILES = (".py", ".pyi", ".ipynb", "pyproject.toml", "ruff.toml", ".ruff.toml")
# The configuration each tool looks for in the project's folder and the folders above it.
RUFF_CONFIG = ("pyproject.toml", "ruff.toml", ".ruff.toml")
MYPY_CONFIG = ("mypy.ini", ".mypy.ini", "pyproject.toml", "setup.cfg")
PYTEST_CONFIG: tuple[str, ...] = ("pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini")
PYTEST_CONFIG += ("pyproject.toml", "tox.ini")
PYTEST_CONFIG += ("setup.cfg", "conftest.py")
MYPY_FILES = (
    ".py",
    ".pyi",
    "py.typed",
    "pyproject.toml",
    "mypy.ini",
    ".mypy.ini",
    "setup.cfg",
)


def rel(path: str | Path, ctx: Context) -> str:
    """A tool's path (absolute, or relative to the project) as repository-relative posix.

    pytest writes paths relative to its rootdir, which a `pytest.ini` above the project puts
    in a folder above it: the first folder from the project up in which the path exists."""
    candidate = Path(path)
    if not candidate.is_absolute():
        bases = [ctx.project, *ctx.project.parents]
        bases = bases[: bases.index(ctx.repo_root) + 1] if ctx.repo_root in bases else bases[:1]
        found = (base / candidate for base in bases if (base / candidate).exists())
        candidate = next(found, ctx.project / candidate)
    try:
        return candidate.resolve().relative_to(ctx.repo_root.resolve()).as_posix()
    except ValueError:
        return candidate.as_posix()


# -- syntax ------------------------------------------------------------------------------------


def syntax_check(interpreter: Interpreter, skip: tuple[str, ...] = ()) -> InProcess:
    """The syntax check for a project that runs under `interpreter`: in forge's own process
    when it is the same Python version, else by that interpreter (3.12 syntax is valid on a
    project that runs 3.12, whatever forge runs under). None of the `skip` folders."""
    if interpreter.minor == sys.version_info[:2] or interpreter.broken is not None:
        return functools.partial(check_syntax, skip=skip)

    def check(ctx: Context) -> Parsed:
        return _syntax_by(interpreter.path, ctx, skip)

    return check


# Run by another interpreter: compile each file named on stdin, print the errors as JSON.
_COMPILE_EACH = """\
import sys
sys.path[:] = [p for p in sys.path if p not in ("", ".")]  # no module of the project's folder
import json
found = []
for name in sys.stdin.read().split("\\0"):
    if not name:
        continue
    try:
        with open(name, "rb") as source:
            compile(source.read(), name, "exec", dont_inherit=True)
    except SyntaxError as err:
        found.append([name, err.msg, err.lineno, err.offset, type(err).__name__])
    except ValueError as err:
        found.append([name, str(err), None, None, "ValueError"])
    except OSError:
        pass
print(json.dumps(found))
"""


def _syntax_by(python: str, ctx: Context, skip: tuple[str, ...]) -> Parsed:
    try:
        argv = [python, "-c", _COMPILE_EACH]
        if ctx.sandbox is not None:
            argv = ctx.sandbox.wrap(argv, ctx.repo_root)
        done = subprocess.run(
            argv,
            input="\0".join(_python_files(ctx, skip)),
            capture_output=True,
            text=True,
            cwd=ctx.repo_root,
            timeout=600,
        )
        errors = json.loads(done.stdout)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return Parsed(Status.ERROR, reason=f"{python} could not compile the project's files")
    found = [
        Diagnostic(
            tool="python",
            severity="error",
            message=str(message),
            file=str(name),
            line=line,
            column=column,
            code=str(code),
            rendered=f"{name}:{line}:{column}: {code}: {message}",
        )
        for name, message, line, column, code in errors
    ]
    return Parsed(Status.FAILED if found else Status.PASSED, found)


def _python_files(ctx: Context, skip: tuple[str, ...]) -> list[str]:
    """The project's `.py` files, none in the `skip` folders (relative to the project)."""
    prefix = ctx.project.relative_to(ctx.repo_root).as_posix()
    skipped = tuple(s if prefix == "." else f"{prefix}/{s}" for s in skip)
    return [
        name
        for name in ctx.files
        if name.endswith(".py") and not any(name.startswith(f"{s}/") for s in skipped)
    ]


def check_syntax(ctx: Context, skip: tuple[str, ...] = ()) -> Parsed:
    """Compile every Python file forge can see, reporting file and line of each error;
    none in the `skip` folders (relative to the project)."""
    found = []
    for name in _python_files(ctx, skip):
        path = ctx.repo_root / name
        try:
            source = path.read_bytes()
        except OSError:
            continue
        try:
            compile(source, name, "exec", dont_inherit=True)
        except SyntaxError as err:
            found.append(
                Diagnostic(
                    tool="python",
                    severity="error",
                    message=err.msg,
                    file=name,
                    line=err.lineno,
                    column=err.offset,
                    code=type(err).__name__,
                    rendered=f"{name}:{err.lineno}:{err.offset}: {type(err).__name__}: {err.msg}",
                )
            )
        except ValueError as err:  # null bytes in the source
            found.append(Diagnostic("python", "error", str(err), file=name, code="ValueError"))
    return Parsed(Status.FAILED if found else Status.PASSED, found)


# -- ruff --------------------------------------------------------------------------------------


def parse_ruff(out: ProcessOutput, ctx: Context) -> Parsed:
    if out.exit_code not in (0, 1):
        return Parsed(Status.ERROR, reason=f"ruff exited with {out.exit_code}")
    try:
        items = json.loads(out.stdout or "[]")
    except ValueError:
        return Parsed(Status.ERROR, reason="ruff's JSON output could not be read")
    found = []
    for item in items:
        location = item.get("location") or {}
        code = item.get("code")
        found.append(
            Diagnostic(
                tool="ruff",
                severity="error",
                message=str(item.get("message", "")),
                file=rel(item.get("filename", ""), ctx),
                line=location.get("row"),
                column=location.get("column"),
                code=code
                or ("syntax-error" if "SyntaxError" in str(item.get("message")) else None),
                rendered=None,
            )
        )
    return Parsed(Status.FAILED if found else Status.PASSED, found)


# -- mypy --------------------------------------------------------------------------------------

_MYPY_LINE = re.compile(
    r"^(?P<file>[^:\n]+):(?P<line>\d+):(?:(?P<col>\d+):)? (?P<sev>error|warning|note): "
    r"(?P<msg>.*?)(?:  \[(?P<code>[\w-]+)\])?$"
)


MYPY_TARGET_KEYS = ("files", "packages", "modules")
# Folders of a flat layout that hold no package of the project's own.
NOT_PACKAGES = {"tests", "test", "docs", "doc", "examples", "example", "build", "dist", "scripts"}


def mypy_settings(project: Path) -> dict[str, object] | None:
    """The `[mypy]` settings of the file mypy itself would read in the project folder, in its
    order (mypy.ini, .mypy.ini, pyproject.toml's [tool.mypy], setup.cfg's [mypy]), or None."""
    import configparser

    for name in ("mypy.ini", ".mypy.ini", "pyproject.toml", "setup.cfg"):
        path = project / name
        if not path.is_file():
            continue
        if name == "pyproject.toml":
            try:
                tool = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {})
            except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
                continue
            if isinstance(tool, dict) and isinstance(tool.get("mypy"), dict):
                return dict(tool["mypy"])
            continue
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
        if parser.has_section("mypy"):
            return dict(parser.items("mypy"))
        if name in ("mypy.ini", ".mypy.ini"):
            return {}  # mypy reads it even without a [mypy] section
    return None


def mypy_configured(project: Path) -> bool:
    return mypy_settings(project) is not None


def mypy_targets(project: Path, skip: tuple[str, ...] = ()) -> tuple[str, ...]:
    """What to pass mypy: nothing when its configuration names files, packages or modules;
    else the project's own code, never the whole tree (examples, build output, vendored code
    and other projects' folders would be checked as if they were the project's)."""
    settings = mypy_settings(project) or {}
    if any(settings.get(key) for key in MYPY_TARGET_KEYS):
        return ()
    ignored = set(skip)
    src = project / "src"
    if src.is_dir() and "src" not in ignored:
        found = [
            f"src/{p.name}"
            for p in sorted(src.iterdir())
            if (p.is_dir() and not p.name.startswith(".") and any(p.rglob("*.py")))
            or p.suffix in (".py", ".pyi")
        ]
        if found:
            return tuple(found)
    folders = [
        p.name
        for p in sorted(project.iterdir())
        if p.is_dir()
        and p.name not in NOT_PACKAGES
        and p.name not in ignored
        and (p / "__init__.py").is_file()
    ]
    modules = [p.name for p in sorted(project.glob("*.py")) if p.name not in ("setup.py",)]
    return tuple(folders or modules) or (".",)


def parse_mypy(out: ProcessOutput, ctx: Context) -> Parsed:
    if out.exit_code not in (0, 1):
        return Parsed(Status.ERROR, reason=f"mypy exited with {out.exit_code}")
    found = []
    for line in out.stdout.splitlines():
        match = _MYPY_LINE.match(line)
        if not match or match["sev"] == "note":
            continue
        found.append(
            Diagnostic(
                tool="mypy",
                severity="error" if match["sev"] == "error" else "warning",
                message=match["msg"],
                file=rel(match["file"], ctx),
                line=int(match["line"]),
                column=int(match["col"]) if match["col"] else None,
                code=match["code"],
                rendered=line,
            )
        )
    failed = out.exit_code == 1 or any(d.severity == "error" for d in found)
    return Parsed(Status.FAILED if failed else Status.PASSED, found)


# -- pytest ------------------------------------------------------------------------------------

_FAILURE_AT = re.compile(r"^(?P<file>[^\s:][^:\n]*\.py):(?P<line>\d+): ", re.MULTILINE)


def junit_path(ctx: Context) -> Path:
    assert ctx.scratch is not None
    return ctx.scratch / "pytest-junit.xml"


def parse_pytest(out: ProcessOutput, ctx: Context) -> Parsed:
    if out.exit_code == PYTEST_NO_TESTS:
        return Parsed(Status.NO_TESTS, reason="pytest collected no tests")
    report = junit_path(ctx)
    if not report.is_file():
        return Parsed(Status.ERROR, reason=f"pytest exited with {out.exit_code} and no report")
    try:
        tests = read_junit(report.read_text(errors="replace"), ctx, out.stdout)
    except ET.ParseError:
        return Parsed(Status.ERROR, reason="pytest's JUnit report could not be read")
    failed = any(t.outcome in ("failed", "error") for t in tests) or out.exit_code not in (0, None)
    if out.exit_code in (3, 4):
        return Parsed(Status.ERROR, tests=tests, reason=f"pytest exited with {out.exit_code}")
    return Parsed(Status.FAILED if failed else Status.PASSED, tests=tests)


def read_junit(text: str, ctx: Context, terminal: str = "") -> list[TestResult]:
    """Results from JUnit XML (pytest's xunit1 family carries file and line), one per report.

    pytest counts reports, not tests: a failed subtest is a failure of its own beside its test,
    and a test that passed but broke in teardown is "1 passed, 1 error". The XML holds a child
    per report that did not pass; what it cannot tell (which test passed unexpectedly, which
    failure was a subtest's) is read from `terminal`, pytest's short test summary, when given.
    """
    root = ET.fromstring(text)
    cases = list(root.iter("testcase"))
    summary = _ShortSummary.read(terminal, {_case_key(c) for c in cases})
    return [result for case in cases for result in _junit_case(case, ctx, summary)]


CaseKey = tuple[str, str]  # (classname, name) as pytest's JUnit XML writes them


def _case_key(case: ET.Element) -> CaseKey:
    return (case.get("classname") or "", case.get("name") or "")


def _mangled(nodeid: str) -> CaseKey:
    """A node id as pytest's JUnit writer turns it into (classname, name)."""
    path, bracket, params = nodeid.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    names[-1] += bracket + params
    return ".".join(names[:-1]), names[-1]


_SUMMARY_HEADER = re.compile(r"^=+ short test summary info =+$", re.MULTILINE)
_SUMMARY_WORDS = ("SUBFAILED", "XPASS")


@dataclass
class _ShortSummary:
    """What pytest's short test summary adds to the XML: xpassed tests and subtest failures."""

    xpassed: dict[CaseKey, str | None] = field(default_factory=dict)  # -> the xfail reason
    subtests_failed: dict[CaseKey, list[str]] = field(default_factory=dict)  # -> descriptions

    @classmethod
    def read(cls, terminal: str, known: set[CaseKey]) -> _ShortSummary:
        found = cls()
        headers = list(_SUMMARY_HEADER.finditer(terminal))
        if not headers:
            return found
        for line in terminal[headers[-1].end() :].splitlines():
            if not line.startswith(_SUMMARY_WORDS):
                continue
            tokens = line.split(" ")
            for first in (i for i, token in enumerate(tokens) if "::" in token):
                match = _known_nodeid(tokens, first, known)
                if match is None:
                    continue
                key, after = match
                message = " ".join(tokens[after:]).removeprefix("- ") or None
                if line.startswith("XPASS"):
                    found.xpassed[key] = message
                else:
                    description = " ".join(tokens[:first]).removeprefix("SUBFAILED").strip()
                    found.subtests_failed.setdefault(key, []).append(description)
                break
        return found


def _known_nodeid(tokens: list[str], first: int, known: set[CaseKey]) -> tuple[CaseKey, int] | None:
    """The shortest run of tokens from `first` that is the node id of a case in the XML."""
    for last in range(first + 1, len(tokens) + 1):
        key = _mangled(" ".join(tokens[first:last]))
        if key in known:
            return key, last
    return None


def _junit_case(case: ET.Element, ctx: Context, summary: _ShortSummary) -> list[TestResult]:
    key = _case_key(case)
    base = TestResult(
        name=key[1],
        outcome="passed",
        suite=key[0] or None,
        file=rel(case.get("file") or "", ctx) if case.get("file") else None,
        line=int(case.get("line") or 0) + 1 if case.get("line") else None,  # xunit1 is 0-based
        duration=float(case.get("time") or 0),
    )
    reports = [c for c in case if c.tag in ("failure", "error", "skipped")]
    subtests = list(summary.subtests_failed.get(key, ()))
    results = [_report(base, element, subtests, ctx) for element in reports]
    if _call_passed(reports, len(summary.subtests_failed.get(key, ()))):
        if key in summary.xpassed:
            results.insert(0, replace(base, outcome="xpassed", message=summary.xpassed[key]))
        else:
            results.insert(0, base)
    return results


def _report(base: TestResult, element: ET.Element, subtests: list[str], ctx: Context) -> TestResult:
    """One report that did not pass. Subtest failures come first, in the order they ran."""
    text = element.text or ""
    message = element.get("message") or text.strip()[:2000] or None
    outcome: TestOutcome = "skipped"
    name, file, line = base.name, base.file, base.line
    if element.tag == "skipped" and element.get("type") == "pytest.xfail":
        outcome = "xfailed"
    elif element.tag in ("failure", "error"):
        outcome = "failed" if element.tag == "failure" else "error"
        if element.tag == "failure" and subtests:
            name = f"{name} {subtests.pop(0)}".strip()
        if where := list(_FAILURE_AT.finditer(text)):
            file, line = rel(where[-1]["file"], ctx), int(where[-1]["line"])
    return replace(base, name=name, outcome=outcome, file=file, line=line, message=message)


def _call_passed(reports: list[ET.Element], subtest_failures: int) -> bool:
    """Whether the test's own call passed, beside the reports of its subtests and teardown.

    A test with a single skip or xfail report is that skip or xfail (a lone skipped subtest in
    a passing test reads the same way, and is counted as the test's skip).
    """
    teardown = [r for r in reports if r.tag == "error" and _in_teardown(r)]
    own = [r for r in reports if r not in teardown]
    failures = [r for r in own if r.tag == "failure"]
    if len(failures) > subtest_failures or any(r.tag == "error" for r in own):
        return False
    skips = [r for r in own if r.tag == "skipped"]
    return not (len(skips) == 1 and not failures)


def _in_teardown(element: ET.Element) -> bool:
    return (element.get("message") or "").startswith("failed on teardown")


# -- building the validators for a Python project ---------------------------------------------


def locate(name: str, interpreter: Interpreter, environ: Mapping[str, str]) -> Located:
    """A console script (ruff, mypy): in the project's virtual environment, else on PATH, else
    beside the project's Python, else beside the Python forge runs under. Returns the path
    (None: nowhere) and where it looked.

    A version manager's shim on PATH (pyenv's `shims/ruff`) is passed over: it picks the tool
    by the folder it runs in, so the same file would stand for different tools; the real
    program it would pick is beside the project's Python, which was asked in that folder."""
    places: list[tuple[str, str | None]] = []
    if interpreter.source in ("VIRTUAL_ENV", "project"):
        places.append((interpreter.scripts, None))
    path = environ.get("PATH", os.defpath).split(os.pathsep)
    places.append((os.pathsep.join(p for p in path if Path(p).name != "shims"), "PATH"))
    places += [(interpreter.scripts, None), (str(Path(sys.executable).parent), None)]
    search = os.pathsep.join(place for place, _ in places if place)
    looked: list[str] = []
    for place, label in places:
        found = shutil.which(name, path=place) if place else None
        if found is not None:
            return Located(found, place == interpreter.scripts, (name, search))
        looked.append(label or place)
    return Located(None, lookup=(name, search), looked=tuple(dict.fromkeys(looked)))


@dataclass(frozen=True)
class Located:
    path: str | None
    in_environment: bool = False
    lookup: tuple[str, str] = ("", "")  # (name, search path): a replay asks it again
    looked: tuple[str, ...] = ()

    def missing(self, tool: str) -> str | None:
        if self.path is not None:
            return None
        return f"{tool} is not installed (looked in {', '.join(self.looked)})"


def python_validators(
    project: Path,
    interpreter: Interpreter,
    commands: dict[str, str],
    timeouts: dict[str, float],
    default_timeout: float,
    skip: tuple[str, ...] = (),
    environ: Mapping[str, str] | None = None,
    copy: bool = False,
) -> list[Validator]:
    """The validators of the Python project in `project`; its `skip` folders (relative to it:
    uv workspace members, folders [validation] excludes) are left to themselves."""
    import shlex

    environ = os.environ if environ is None else environ

    def argv(name: str, default: list[str]) -> tuple[str, ...]:
        return tuple(shlex.split(commands[name])) if name in commands else tuple(default)

    def limit(name: str) -> float:
        return timeouts.get(name, default_timeout)

    config_home = Path(environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    python = interpreter.path
    # What is installed in the project's environment changes what pytest and mypy find.
    environment = f"{python}|{interpreter.version}|{interpreter.stamp}"
    ruff = locate("ruff", interpreter, environ)
    ruff_argv = [
        ruff.path or "ruff",
        "check",
        "--output-format=json",
        "--no-fix",
        *(part for folder in skip for part in ("--extend-exclude", folder)),
        ".",
    ]
    # In a copy of the checkout (a worktree of run-milestone's, a candidate of fanout's), the
    # checkout's environment often holds the project installed in editable mode, pointing at
    # the checkout's sources: the copy's own sources come first on the path, or its tests
    # would import the checkout's code and judge that instead.
    imports = {}
    if copy:
        first = [str(project / "src")] if (project / "src").is_dir() else []
        first += [str(project), *filter(None, [environ.get("PYTHONPATH")])]
        imports = {"PYTHONPATH": os.pathsep.join(first)}
    pytest_missing = None
    if "pytest" not in commands and interpreter.distribution("pytest") is None:
        pytest_missing = interpreter.lacks("pytest")
    found = [
        Validator(
            name="python syntax",
            tool="python",
            stage=Stage.SYNTAX,
            run_in_process=syntax_check(interpreter, skip),
            file_suffixes=(".py",),
            settings="\0".join((python, interpreter.version, *skip)),
            unavailable=interpreter.broken,
        ),
        Validator(
            name="ruff",
            tool="ruff",
            stage=Stage.LINT,
            argv=argv("ruff", ruff_argv),
            parse=parse_ruff,
            probe=(ruff.path, "--version") if ruff.path and "ruff" not in commands else None,
            timeout=limit("ruff"),
            lints_files=True,
            file_suffixes=RUFF_FILES,
            config_files=RUFF_CONFIG,
            user_files=tuple(str(config_home / "ruff" / n) for n in RUFF_CONFIG),
            unavailable=None if "ruff" in commands else ruff.missing("ruff"),
            lookups=(ruff.lookup,),
        ),
        Validator(
            name="pytest",
            tool="pytest",
            stage=Stage.TEST,
            argv=(
                *argv("pytest", [python, "-m", "pytest"]),
                "-q",
                "-rfEX",  # the short summary names xpassed tests, which the XML does not
                "-p",
                "no:cacheprovider",
                "-o",
                "junit_family=xunit1",
                "--junitxml={scratch}/pytest-junit.xml",
                *(f"--ignore={folder}" for folder in skip),
            ),
            parse=parse_pytest,
            after=("python syntax",),
            timeout=limit("pytest"),
            settings=environment,
            config_files=PYTEST_CONFIG,
            env=imports,
            reads_repository=True,
            unavailable=pytest_missing,
        ),
    ]
    if mypy_configured(project):
        mypy = locate("mypy", interpreter, environ)
        # A mypy from elsewhere is pointed at the project's environment, where the project's
        # dependencies and their type information are installed.
        elsewhere = () if mypy.in_environment else ("--python-executable", python)
        found.insert(
            2,
            Validator(
                name="mypy",
                tool="mypy",
                stage=Stage.LINT,
                argv=(
                    *argv("mypy", [mypy.path or "mypy", *elsewhere]),
                    "--show-column-numbers",
                    "--show-error-codes",
                    "--no-error-summary",
                    "--no-color-output",
                    "--no-pretty",
                    *mypy_targets(project, skip),
                ),
                parse=parse_mypy,
                probe=(mypy.path, "--version") if mypy.path and "mypy" not in commands else None,
                timeout=limit("mypy"),
                lints_files=True,
                file_suffixes=MYPY_FILES,
                config_files=MYPY_CONFIG,
                reads_repository=True,
                user_files=(str(config_home / "mypy" / "config"), str(Path.home() / ".mypy.ini")),
                settings=environment,
                unavailable=interpreter.broken
                or (None if "mypy" in commands else mypy.missing("mypy")),
                lookups=(mypy.lookup,),
            ),
        )
    return found
