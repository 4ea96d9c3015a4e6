"""`forge validate` runs each project's checks in the project's environment, fails when a tool
the project needs cannot run, and never answers from a cache made in another environment."""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_forge
from tests.test_validate_python import by_name, make_repo, write

SITE = Path(sysconfig.get_paths()["purelib"])
# What a forge installed on its own (pipx, a venv of its own) does not have.
TEST_TOOLS = ("pytest", "_pytest", "py.py", "ruff", "mypy", "xdist", "pluggy", "iniconfig")

FAILING_PROJECT = {
    "pyproject.toml": '[project]\nname = "pkg"\nversion = "0.1.0"\n',
    "pkg/__init__.py": "def add(a, b):\n    return a - b\n",
    "tests/test_add.py": "from pkg import add\n\n\ndef test_add():\n    assert add(1, 1) == 2\n",
}


def make_venv(where: Path, python: str = sys.executable) -> Path:
    """A virtual environment without pip; returns its site-packages folder."""
    subprocess.run([python, "-m", "venv", "--without-pip", str(where)], check=True)
    (site,) = glob.glob(str(where / "lib" / "python3*" / "site-packages"))
    return Path(site)


def forge_alone(tmp_path: Path) -> Path:
    """A Python that has forge and its dependencies but no test tools: forge installed on its
    own. Returns its interpreter."""
    env = tmp_path / "forge-env"
    site = make_venv(env)
    for entry in SITE.iterdir():
        if not entry.name.lower().startswith(TEST_TOOLS):
            (site / entry.name).symlink_to(entry)
    return env / "bin" / "python"


def project_venv(root: Path) -> Path:
    """A `.venv` in the project that holds pytest (and what the tests import)."""
    site = make_venv(root / ".venv")
    (site / "test-tools.pth").write_text(f"{SITE}\n")
    return site


def only_git(tmp_path: Path) -> str:
    """A PATH with git on it and nothing else: no python, no ruff, no cargo."""
    folder = tmp_path / "only-git"
    folder.mkdir()
    git = shutil.which("git")
    assert git is not None
    (folder / "git").symlink_to(git)
    return str(folder)


def forge_in(
    python: Path, *args: str, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], Any]:
    done = subprocess.run(
        [str(python), "-m", "forge", "validate", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in done.stderr, done.stderr
    data = json.loads(done.stdout) if "json" in args else None
    return done, data


def test_missing_pytest_and_ruff_fail_the_gate_and_say_where_forge_looked(tmp_path: Path) -> None:
    python = forge_alone(tmp_path)
    root = make_repo(tmp_path / "repo", FAILING_PROJECT)
    env = {"PATH": only_git(tmp_path)}

    for ci in ("", "true"):
        done, data = forge_in(python, str(root), "--format", "json", env={**env, "CI": ci})
        assert done.returncode == 1, "a failing test suite that could not run is not a pass"
        found = by_name(data)
        assert found["pytest"]["status"] == "could_not_run"
        assert found["pytest"]["reason"].startswith("pytest is not installed in the environment")
        assert str(SITE) not in found["pytest"]["reason"], "forge's own site is not the project's"
        assert "before it, forge tried VIRTUAL_ENV" in found["pytest"]["reason"]
        assert ".venv and venv (none)" in found["pytest"]["reason"]
        assert found["ruff"]["status"] == "could_not_run"
        assert "looked in PATH" in found["ruff"]["reason"]
        assert data["interpreters"][0]["source"] == "forge"

    shown, _ = forge_in(python, str(root), env=env)
    assert shown.returncode == 1
    assert "pytest could not run: pytest is not installed" in shown.stdout
    assert "2 could not run" in shown.stdout

    allowed, data = forge_in(
        python, str(root), "--format", "json", "--allow-missing", "pytest",
        "--allow-missing", "ruff", env=env,
    )  # fmt: skip
    assert allowed.returncode == 0, "the user said both may be missing"
    assert by_name(data)["pytest"]["status"] == "skipped"

    config = tmp_path / "forge.toml"
    config.write_text('[validation]\noptional = ["ruff"]\n')
    partly, data = forge_in(python, str(root), "--format", "json", "--config", str(config), env=env)
    assert partly.returncode == 1, "pytest is still needed"
    assert by_name(data)["ruff"]["status"] == "skipped"
    assert by_name(data)["pytest"]["status"] == "could_not_run"


def test_pytest_runs_in_the_projects_venv_when_forge_has_none(tmp_path: Path) -> None:
    python = forge_alone(tmp_path)
    root = make_repo(tmp_path / "repo", FAILING_PROJECT)
    project_venv(root)
    env = {"PATH": only_git(tmp_path), "VIRTUAL_ENV": ""}
    done, data = forge_in(python, str(root), "--format", "json", "--allow-missing", "ruff", env=env)
    assert done.returncode == 1
    pytest_result = by_name(data)["pytest"]
    assert pytest_result["status"] == "failed", pytest_result
    assert pytest_result["tests"]["failed"] == 1
    assert pytest_result["command"][0] == str(root / ".venv" / "bin" / "python")
    (used,) = data["interpreters"]
    assert used["source"] == "project"
    assert used["path"] == str(root / ".venv" / "bin" / "python")

    shown, _ = forge_in(python, str(root), "--allow-missing", "ruff", env=env)
    assert f"Python: {root / '.venv' / 'bin' / 'python'}" in shown.stdout
    assert "the project's environment" in shown.stdout

    # An activated environment comes first.
    other = tmp_path / "activated"
    (make_venv(other) / "test-tools.pth").write_text(f"{SITE}\n")
    _, data = forge_in(
        python, str(root), "--format", "json", "--allow-missing", "ruff",
        env={**env, "VIRTUAL_ENV": str(other)},
    )  # fmt: skip
    assert data["interpreters"][0]["path"] == str(other / "bin" / "python")
    assert data["interpreters"][0]["source"] == "VIRTUAL_ENV"


def wheel(folder: Path, name: str, version: str, module: str) -> Path:
    """A pure-Python wheel of one module, made by hand (pip installs it from the file)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": module,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    made = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(made, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return made


def test_uninstalling_a_dependency_is_never_answered_from_the_cache(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "pyproject.toml": '[project]\nname = "app"\nversion = "0.1.0"\n',
            "tests/test_dep.py": "import dep\n\n\ndef test_dep():\n    assert dep.VALUE == 1\n",
        },
    )
    project_venv(root)
    venv_python = str(root / ".venv" / "bin" / "python")
    package = wheel(tmp_path, "dep", "1.0", "VALUE = 1\n")
    pip = [venv_python, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--no-index", "--no-deps", str(package)], check=True)

    env = {"VIRTUAL_ENV": ""}
    first = run_forge("validate", str(root), "--format", "json", env=env)
    assert first.returncode == 0, first.stdout
    again = run_forge("validate", str(root), "--format", "json", env=env)
    assert by_name(json.loads(again.stdout))["pytest"]["cached"]
    run_forge("validate", str(root), env=env)
    assert "answered from the cache" in run_forge("validate", str(root), env=env).stdout

    subprocess.run([*pip, "uninstall", "-y", "dep"], check=True)
    summary = run_forge("validate", str(root), env=env)
    assert summary.returncode == 1, "dep is gone: the tests cannot import it"
    assert "answered from the cache" not in summary.stdout
    after = run_forge("validate", str(root), "--format", "json", "--no-cache", env=env)
    assert by_name(json.loads(after.stdout))["pytest"]["status"] == "failed"


def test_a_new_rustflags_is_never_answered_from_the_cache(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "Cargo.toml": '[package]\nname = "w"\nversion = "0.1.0"\nedition = "2021"\n',
            "src/lib.rs": "pub fn f() -> u32 {\n    let unused = 1;\n    2\n}\n\n"
            "#[test]\nfn two() {\n    assert_eq!(f(), 2);\n}\n",
            ".gitignore": "/target\nCargo.lock\n",
        },
    )
    first = run_forge("validate", str(root), "--format", "json")
    assert first.returncode == 0, "warnings alone pass"
    assert by_name(json.loads(first.stdout))["cargo check"]["diagnostics"]

    strict = run_forge("validate", str(root), "--format", "json", env={"RUSTFLAGS": "-D warnings"})
    check = by_name(json.loads(strict.stdout))["cargo check"]
    assert not check["cached"]
    assert strict.returncode == 1, "with -D warnings the warning is an error"
    assert check["status"] == "failed"
    shown = run_forge("validate", str(root), env={"RUSTFLAGS": "-D warnings"})
    assert shown.returncode == 1

    # Cargo.lock is ignored by git here, but cargo reads it: a change to it is not cached over.
    lock = root / "Cargo.lock"
    assert lock.exists()
    again = run_forge("validate", str(root), "--format", "json")
    assert by_name(json.loads(again.stdout))["cargo check"]["cached"]
    lock.write_text(lock.read_text() + "\n")
    edited = run_forge("validate", str(root), "--format", "json")
    assert not by_name(json.loads(edited.stdout))["cargo check"]["cached"]


NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {},
            "outputs": [],
            "source": ["import os\n", "print('hi')\n"],
        }
    ],
    "metadata": {"language_info": {"name": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


def test_a_notebook_with_a_lint_error_is_linted_after_a_clean_run(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "pyproject.toml": '[project]\nname = "pkg"\nversion = "0.1.0"\n',
            "pkg/__init__.py": "VALUE = 1\n",
            "tests/test_value.py": "from pkg import VALUE\n\n\ndef test_value():\n"
            "    assert VALUE == 1\n",
        },
    )
    clean = run_forge("validate", str(root), "--format", "json")
    assert clean.returncode == 0, clean.stdout
    write(root, {"analysis.ipynb": json.dumps(NOTEBOOK)})
    dirty = run_forge("validate", str(root), "--format", "json")
    ruff = by_name(json.loads(dirty.stdout))["ruff"]
    assert not ruff["cached"]
    assert ("analysis.ipynb", "F401") in [(d["file"], d["code"]) for d in ruff["diagnostics"]]
    assert dirty.returncode == 1


def other_python() -> str:
    """An installed Python of another minor version than the one running the tests."""
    mine = f"{sys.version_info[0]}.{sys.version_info[1]}"
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv"), "/root/.pyenv"]
    for version in ("3.13", "3.12"):
        if version == mine:
            continue
        for root in roots:
            found = sorted(glob.glob(f"{root}/versions/{version}*/bin/python{version}"))
            if found:
                return found[-1]
        on_path = shutil.which(f"python{version}")
        if on_path and subprocess.run([on_path, "-V"], capture_output=True).returncode == 0:
            return on_path
    pytest.fail("this test needs a Python 3.12 or 3.13 besides the one running it")


def test_the_syntax_check_compiles_with_the_projects_interpreter(tmp_path: Path) -> None:
    newer = other_python()
    files = {
        "pyproject.toml": '[project]\nname = "pkg"\nversion = "0.1.0"\n'
        'requires-python = ">=3.12"\n',
        "pkg/__init__.py": "type Pair = tuple[int, int]\n\n\ndef first[T](items: list[T]) -> T:\n"
        "    return items[0]\n",
    }
    plain = make_repo(tmp_path / "plain", files)
    done = run_forge("validate", str(plain), "--format", "json", "--allow-missing", "pytest")
    syntax = by_name(json.loads(done.stdout))["python syntax"]
    if sys.version_info < (3, 12):
        assert syntax["status"] == "failed", "3.12 syntax does not compile on this Python"

    root = make_repo(tmp_path / "repo", files)
    make_venv(root / ".venv", newer)
    done = run_forge(
        "validate", str(root), "--format", "json", "--allow-missing", "pytest",
        env={"VIRTUAL_ENV": ""},
    )  # fmt: skip
    data = json.loads(done.stdout)
    assert by_name(data)["python syntax"]["status"] == "passed"
    assert data["interpreters"][0]["version"].startswith(Path(newer).name.removeprefix("python"))
    broken = make_repo(tmp_path / "broken", {**files, "pkg/bad.py": "def f(:\n    pass\n"})
    make_venv(broken / ".venv", newer)
    done = run_forge("validate", str(broken), "--format", "json", "--allow-missing", "pytest")
    syntax = by_name(json.loads(done.stdout))["python syntax"]
    assert done.returncode == 1
    assert [(d["file"], d["line"]) for d in syntax["diagnostics"]] == [("pkg/bad.py", 1)]


def test_a_copy_of_the_checkout_is_validated_with_the_checkouts_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run-milestone's worktrees live under forge's home, away from the checkout's `.venv`;
    and that `.venv` holds the project installed in editable mode, pointing at the checkout's
    sources: the copy's tests must import the copy's code."""
    from forge.config.schema import ValidationConfig
    from forge.validation.runner import Options, validate

    files = {
        "pyproject.toml": FAILING_PROJECT["pyproject.toml"],
        "src/pkg/__init__.py": FAILING_PROJECT["pkg/__init__.py"],
        "tests/test_add.py": FAILING_PROJECT["tests/test_add.py"],
        ".gitignore": ".venv/\n",
    }
    root = make_repo(tmp_path / "repo", files)
    site = project_venv(root)
    (site / "__editable__.pkg.pth").write_text(f"{root / 'src'}\n")
    copy = tmp_path / "elsewhere" / "tree"
    subprocess.run(["git", "worktree", "add", "-q", "--detach", str(copy)], cwd=root, check=True)
    assert not (copy / ".venv").exists()
    (copy / "src" / "pkg" / "__init__.py").write_text("def add(a, b):\n    return a + b\n")
    settings = ValidationConfig(enable_lint_check=False)
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)

    alone = validate(copy, settings, Options(cache_dir=tmp_path / "cache"))
    assert alone.interpreters["."].source != "project"

    report = validate(copy, settings, Options(cache_dir=tmp_path / "cache", environment_root=root))
    used = report.interpreters["."]
    assert (used.source, used.path) == ("project", str(root / ".venv" / "bin" / "python"))
    pytest_result = next(r for r in report.results if r.name == "pytest")
    assert pytest_result.command[0] == used.path
    assert pytest_result.status.value == "passed", "the copy's fix is what its tests import"
    checkout = validate(root, settings, Options(cache_dir=tmp_path / "cache"))
    assert not checkout.passed, "the checkout itself still has the bug"


def test_configuration_above_the_project_is_never_answered_from_the_cache(
    tmp_path: Path,
) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "sub/pyproject.toml": '[project]\nname = "sub"\nversion = "0.1.0"\n',
            "sub/pkg/__init__.py": "import os\n\nVALUE = 1\n",
            "sub/tests/test_value.py": "from pkg import VALUE\n\n\ndef test_value():\n"
            "    assert VALUE == 1\n",
            "ruff.toml": '[lint]\nignore = ["F401"]\n',
            "crate/Cargo.toml": '[package]\nname = "w"\nversion = "0.1.0"\nedition = "2021"\n',
            "crate/src/lib.rs": "pub fn f() -> u32 {\n    let unused = 1;\n    2\n}\n\n"
            "#[test]\nfn two() {\n    assert_eq!(f(), 2);\n}\n",
        },
    )
    first = run_forge("validate", str(root), "--format", "json")
    assert first.returncode == 0, first.stdout
    run_forge("validate", str(root), "--format", "json")  # once more: cargo wrote Cargo.lock
    again = run_forge("validate", str(root), "--format", "json", "--jobs", "3")
    assert all(v["cached"] for v in json.loads(again.stdout)["validators"])

    # The repository's ruff.toml stops ignoring F401; cargo's configuration above the crate
    # turns warnings into errors. Both are read from folders above the projects.
    (root / "ruff.toml").write_text("[lint]\nignore = []\n")
    write(root, {".cargo/config.toml": '[build]\nrustflags = ["-D", "warnings"]\n'})
    after = run_forge("validate", str(root), "--format", "json")
    found = {(v["project"], v["name"]): v for v in json.loads(after.stdout)["validators"]}
    assert after.returncode == 1
    assert found[("sub", "ruff")]["status"] == "failed"
    assert not found[("sub", "ruff")]["cached"]
    assert found[("crate", "cargo check")]["status"] == "failed"
    shown = run_forge("validate", str(root))
    assert "answered from the cache" not in shown.stdout and shown.returncode == 1


def test_a_tool_installed_since_an_allowed_miss_runs(tmp_path: Path) -> None:
    python = forge_alone(tmp_path)
    root = make_repo(tmp_path / "repo", {**FAILING_PROJECT, "pkg/__init__.py": "import os\n"})
    project_venv(root)
    tools = only_git(tmp_path)
    env = {"PATH": tools, "VIRTUAL_ENV": ""}
    write(root, {"tests/test_add.py": "def test_nothing():\n    pass\n", ".gitignore": ".venv/\n"})
    for _ in range(2):
        done, _ = forge_in(python, str(root), "--allow-missing", "ruff", env=env)
        assert done.returncode == 0, done.stdout
    assert "answered from the cache" in done.stdout
    ruff = shutil.which("ruff")
    assert ruff is not None
    (Path(tools) / "ruff").symlink_to(ruff)
    done, _ = forge_in(python, str(root), "--allow-missing", "ruff", env=env)
    assert "answered from the cache" not in done.stdout
    assert done.returncode == 1, "ruff is there now, and finds the unused import"
    assert "F401" in done.stdout


def test_the_interpreter_a_shim_picks_for_the_project_is_the_one_used(tmp_path: Path) -> None:
    """A version manager's shim (pyenv) picks the Python by the `.python-version` in the
    folder it runs in: forge asks it from the project's folder, and a new choice is seen."""
    newer = other_python()
    shims = tmp_path / "shims"
    shims.mkdir()
    shim = shims / "python3"
    shim.write_text(
        "#!/bin/sh\n"
        f'if [ -f .python-version ]; then exec "{newer}" "$@"; fi\n'
        f'exec "{sys.executable}" "$@"\n'
    )
    shim.chmod(0o755)
    git = shutil.which("git")
    assert git is not None
    (shims / "git").symlink_to(git)
    # pyenv's shim for a tool the chosen version lacks: "command not found", exit 127.
    (shims / "ruff").write_text("#!/bin/sh\necho 'pyenv: ruff: command not found' >&2\nexit 127\n")
    (shims / "ruff").chmod(0o755)
    root = make_repo(tmp_path / "repo", FAILING_PROJECT)
    env = {"PATH": str(shims), "VIRTUAL_ENV": ""}
    args = ("validate", str(root), "--format", "json", "--allow-missing", "ruff")
    first = run_forge(*args, env=env)
    found = by_name(json.loads(first.stdout))
    assert found["pytest"]["tests"]["failed"] == 1
    assert not found["ruff"]["command"][0].startswith(str(shims)), "a shim is not the tool"

    write(root, {".python-version": "3.12\n"})  # this Python has no pytest
    picked = run_forge(*args, env=env)
    data = json.loads(picked.stdout)
    assert data["interpreters"][0]["path"] != sys.executable
    assert by_name(data)["pytest"]["status"] == "could_not_run"
    summary = run_forge(*args[:2], "--allow-missing", "ruff", env=env)
    assert summary.returncode == 1 and "answered from the cache" not in summary.stdout


def test_a_venv_that_stops_seeing_the_system_site_is_seen(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {**FAILING_PROJECT, ".gitignore": ".venv/\n"})
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run(
        [base, "-m", "venv", "--without-pip", "--system-site-packages", str(root / ".venv")],
        check=True,
    )
    env = {"VIRTUAL_ENV": ""}
    args = ("validate", str(root), "--format", "json", "--allow-missing", "ruff")
    first = by_name(json.loads(run_forge(*args, env=env).stdout))["pytest"]
    assert first["tests"]["failed"] == 1, "pytest comes from the system site"
    run_forge(*args[:2], "--allow-missing", "ruff", env=env)

    config = root / ".venv" / "pyvenv.cfg"
    config.write_text(config.read_text().replace("= true", "= false"))
    summary = run_forge(*args[:2], "--allow-missing", "ruff", env=env)
    assert "answered from the cache" not in summary.stdout
    assert "pytest could not run" in summary.stdout


def test_a_project_python_that_does_not_run_is_a_failure_not_forges_own(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {**FAILING_PROJECT, ".gitignore": ".venv/\n"})
    broken = root / ".venv" / "bin" / "python"
    broken.parent.mkdir(parents=True)
    broken.write_text("#!/bin/sh\necho 'cannot start: no such library' >&2\nexit 127\n")
    broken.chmod(0o755)
    done = run_forge("validate", str(root), "--format", "json", env={"VIRTUAL_ENV": ""})
    data = json.loads(done.stdout)
    assert done.returncode == 1
    pytest_result = by_name(data)["pytest"]
    assert pytest_result["status"] == "could_not_run"
    assert "does not run (exit 127): cannot start: no such library" in pytest_result["reason"]
    assert data["interpreters"][0]["path"] == str(broken)

    # The state a venv is left in when its base Python is removed: a link to nothing.
    broken.unlink()
    broken.symlink_to(tmp_path / "gone" / "python3.9")
    done = run_forge("validate", str(root), "--format", "json", env={"VIRTUAL_ENV": ""})
    data = json.loads(done.stdout)
    assert done.returncode == 1
    assert by_name(data)["pytest"]["status"] == "could_not_run"
    assert "does not run" in by_name(data)["pytest"]["reason"]


def test_damaged_caches_are_misses_not_crashes(tmp_path: Path, isolated_home: Path) -> None:
    root = make_repo(tmp_path / "repo", FAILING_PROJECT)
    store = isolated_home / "forge-home" / "validate"
    store.mkdir(parents=True)
    (store / "interpreters.json").write_text("[]")
    (store / "tools.json").write_text('{"a": 1}')
    done = run_forge("validate", str(root), "--format", "json")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert by_name(json.loads(done.stdout))["pytest"]["tests"]["failed"] == 1
    (store / "interpreters.json").write_text('{"x": {"sites": 3}}')
    again = run_forge("validate", str(root), "--format", "json", "--no-cache")
    assert again.returncode == 1 and "Traceback" not in again.stderr


def test_a_path_file_added_to_the_venv_is_seen(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {**FAILING_PROJECT, ".gitignore": ".venv/\n"})
    site = make_venv(root / ".venv")
    env = {"VIRTUAL_ENV": ""}
    args = ("validate", str(root), "--format", "json", "--allow-missing", "ruff")
    before = by_name(json.loads(run_forge(*args, env=env).stdout))["pytest"]
    assert before["status"] == "could_not_run"
    (site / "test-tools.pth").write_text(f"{SITE}\n")  # pytest is now on its path
    after = by_name(json.loads(run_forge(*args, env=env).stdout))["pytest"]
    assert after["status"] == "failed" and after["tests"]["failed"] == 1


def test_code_a_project_imports_from_elsewhere_in_the_repository_keys_its_tests(
    tmp_path: Path,
) -> None:
    """`app` imports `lib`, a sibling project installed in editable mode in app's venv."""
    root = make_repo(
        tmp_path / "repo",
        {
            "lib/pyproject.toml": '[project]\nname = "lib"\nversion = "0.1.0"\n',
            "lib/src/lib/__init__.py": "def answer():\n    return 42\n",
            "lib/tests/test_lib.py": "def test_nothing():\n    pass\n",
            "app/pyproject.toml": '[project]\nname = "app"\nversion = "0.1.0"\n',
            "app/tests/test_app.py": "from lib import answer\n\n\ndef test_answer():\n"
            "    assert answer() == 42\n",
            ".gitignore": ".venv/\n",
        },
    )
    site = project_venv(root / "app")
    (site / "__editable__.lib.pth").write_text(f"{root / 'lib' / 'src'}\n")
    args = ("validate", str(root), "--format", "json", "--jobs", "3", "--allow-missing", "ruff")
    first = run_forge(*args, env={"VIRTUAL_ENV": ""})
    assert first.returncode == 0, first.stdout
    write(root, {"lib/src/lib/__init__.py": "def answer():\n    return 41\n"})
    after = run_forge(*args, env={"VIRTUAL_ENV": ""})
    found = {(v["project"], v["name"]): v for v in json.loads(after.stdout)["validators"]}
    assert not found[("app", "pytest")]["cached"]
    assert found[("app", "pytest")]["status"] == "failed"
    assert after.returncode == 1


def test_tracked_files_in_a_folder_named_build_are_validated(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {**FAILING_PROJECT, "pkg/build/helpers.py": "def helper(:\n    pass\n"},
    )
    done = run_forge("validate", str(root), "--format", "json")
    syntax = by_name(json.loads(done.stdout))["python syntax"]
    assert [d["file"] for d in syntax["diagnostics"]] == ["pkg/build/helpers.py"]


def test_a_pytest_ini_above_the_project_keeps_test_locations_right(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "pytest.ini": "[pytest]\n",
            "sub/pyproject.toml": '[project]\nname = "sub"\nversion = "0.1.0"\n',
            "sub/tests/test_a.py": "def test_a():\n    assert 1 == 2\n\n\n"
            "def test_b():\n    pass\n",
        },
    )
    done = run_forge("validate", str(root / "sub"), "--format", "json", "--allow-missing", "ruff")
    found = by_name(json.loads(done.stdout))["pytest"]["test_results"]
    assert [(t["name"], t["file"], t["line"]) for t in found] == [
        ("test_a", "sub/tests/test_a.py", 2),  # where it failed
        ("test_b", "sub/tests/test_a.py", 5),  # where it lives
    ]


def test_a_custom_validator_whose_program_is_missing_could_not_run(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", FAILING_PROJECT)
    config = tmp_path / "forge.toml"
    config.write_text(
        '[[validation.custom]]\nname = "mycheck"\ncommand = "no-such-program-here --check"\n'
    )
    done = run_forge("validate", str(root), "--format", "json", "--config", str(config))
    mine = by_name(json.loads(done.stdout))["mycheck"]
    assert mine["status"] == "could_not_run"
    assert "not found" in mine["reason"]
    allowed = run_forge(
        "validate", str(root), "--format", "json", "--config", str(config),
        "--allow-missing", "mycheck",
    )  # fmt: skip
    assert by_name(json.loads(allowed.stdout))["mycheck"]["status"] == "skipped"

    typo = tmp_path / "typo.toml"
    typo.write_text('[validation]\noptional = ["pytets"]\n')
    refused = run_forge("validate", str(root), "--config", str(typo))
    assert refused.returncode == 2
    assert "did you mean pytest" in refused.stderr


def test_forge_never_imports_a_module_of_the_projects_folder_while_asking_python(
    tmp_path: Path,
) -> None:
    """Asking the project's Python about itself (and compiling with another version) runs it
    in the project's folder: a `json.py` there must not be imported."""
    marker = tmp_path / "imported"
    root = make_repo(
        tmp_path / "repo",
        {
            **FAILING_PROJECT,
            "json.py": f"open({str(marker)!r}, 'w').close()\nfrom _json import *\n",
        },
    )
    make_venv(root / ".venv", other_python())
    run_forge("validate", str(root), "--allow-missing", "pytest", env={"VIRTUAL_ENV": ""})
    assert not marker.exists()


def test_a_scrubbed_run_and_a_whole_one_never_share_a_cached_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from forge.config.schema import ValidationConfig
    from forge.validation.runner import Options, validate

    root = make_repo(
        tmp_path / "repo",
        {
            "pyproject.toml": FAILING_PROJECT["pyproject.toml"],
            "tests/test_env.py": "import os\n\n\ndef test_env():\n"
            "    assert os.environ.get('DB_PASSWORD') == 'pw'\n",
        },
    )
    monkeypatch.setenv("DB_PASSWORD", "pw")
    settings = ValidationConfig(enable_lint_check=False)
    cache = tmp_path / "cache"
    assert validate(root, settings, Options(cache_dir=cache)).passed
    scrubbed = validate(root, settings, Options(cache_dir=cache, scrub_secrets=True))
    assert not scrubbed.passed, "the password is not in a model's code's environment"
    kept = ValidationConfig(enable_lint_check=False, pass_env=["DB_PASSWORD"])
    assert validate(root, kept, Options(cache_dir=cache, scrub_secrets=True)).passed
