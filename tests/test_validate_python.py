"""`forge validate` on Python projects the tests create, through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import tomli_w

from tests.conftest import run_forge


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def make_repo(root: Path, files: dict[str, str], commit: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "dev@example.com")
    git(root, "config", "user.name", "dev")
    write(root, files)
    if commit:
        git(root, "add", "-A")
        git(root, "commit", "-qm", "start")
    return root


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def report(root: Path, *args: str) -> tuple[int, dict[str, Any]]:
    done = run_forge("validate", str(root), "--format", "json", *args)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def by_name(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in data["validators"]}


PACKAGE = {
    "pyproject.toml": '[project]\nname = "pkg"\nversion = "0.1.0"\n',
    "pkg/__init__.py": "import os\n\n\ndef add(a, b):\n    return a + b\n",
    "tests/test_add.py": (
        "from pkg import add\n\n\ndef test_ok():\n    assert add(1, 2) == 3\n\n\n"
        "def test_bad():\n    assert add(1, 1) == 3\n"
    ),
}


def test_syntax_error_ruff_violation_and_a_failing_test(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {**PACKAGE, "pkg/broken.py": "def broken(:\n    pass\n"})
    code, data = report(root)
    assert code == 1
    found = by_name(data)
    syntax = found["python syntax"]
    assert syntax["status"] == "failed"
    assert [(d["file"], d["line"]) for d in syntax["diagnostics"]] == [("pkg/broken.py", 1)]
    ruff_codes = {(d["file"], d["code"]) for d in found["ruff"]["diagnostics"]}
    assert ("pkg/__init__.py", "F401") in ruff_codes
    assert found["pytest"]["status"] == "skipped"
    assert "python syntax failed" in found["pytest"]["reason"]

    (root / "pkg/broken.py").unlink()
    code, data = report(root)
    pytest_result = by_name(data)["pytest"]
    assert code == 1 and pytest_result["status"] == "failed"
    failed = [t for t in pytest_result["test_results"] if t["outcome"] == "failed"]
    assert [(t["name"], t["file"], t["line"]) for t in failed] == [
        ("test_bad", "tests/test_add.py", 9)
    ]
    assert pytest_result["tests"] == {
        "passed": 1,
        "failed": 1,
        "skipped": 0,
        "error": 0,
        "xfailed": 0,
        "xpassed": 0,
    }


def test_a_clean_project_passes(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "pyproject.toml": PACKAGE["pyproject.toml"],
            "pkg/__init__.py": "def add(a: int, b: int) -> int:\n    return a + b\n",
            "tests/test_add.py": "from pkg import add\n\n\ndef test_ok() -> None:\n"
            "    assert add(1, 2) == 3\n",
        },
    )
    done = run_forge("validate", str(root))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed" in done.stdout and "pytest" in done.stdout


def test_no_tests_collected_is_not_a_pass(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {"pyproject.toml": PACKAGE["pyproject.toml"], "pkg/__init__.py": "VALUE = 1\n"},
    )
    code, data = report(root)
    assert code == 1
    assert by_name(data)["pytest"]["status"] == "no_tests"


def test_nothing_to_validate_is_a_usage_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hello\n")
    done = run_forge("validate", str(empty))
    assert done.returncode == 2
    assert "nothing to validate" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_hanging_validator_is_killed_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    config = tmp_path / "forge.toml"
    config.write_text(
        "[[validation.custom]]\n"
        'name = "hangs"\n'
        f'command = "sleep 60 & echo $! > {pid_file}; wait"\n'
        "timeout = 1\n"
    )
    root = make_repo(tmp_path / "repo", {"README.md": "hi\n"})
    code, data = report(root, "--config", str(config))
    assert code == 1
    hung = by_name(data)["hangs"]
    assert hung["status"] == "timeout"
    assert "killed after 1s" in hung["reason"]
    child = int(pid_file.read_text())
    time.sleep(0.2)
    assert not _alive(child), "the validator's child process outlived the timeout"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too: it only waits to be reaped by its (killed) parent's reaper.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


def test_a_missing_cargo_could_not_run_and_fails_unless_allowed(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "Cargo.toml": '[package]\nname = "c"\nversion = "0.1.0"\nedition = "2021"\n',
            "src/lib.rs": "pub fn f() {}\n",
        },
    )
    for ci in ("", "true"):
        env = {"PATH": "/usr/bin:/bin", "CI": ci}
        done = run_forge("validate", str(root), "--format", "json", env=env)
        data = json.loads(done.stdout)
        check = by_name(data)["cargo check"]
        assert check["status"] == "could_not_run"
        assert "cargo is not installed" in check["reason"]
        assert done.returncode == 1, "a gate that could not check has not passed"
        assert not data["passed"]
    shown = run_forge("validate", str(root), env={"PATH": "/usr/bin:/bin"})
    assert shown.returncode == 1
    assert "cargo check could not run: cargo is not installed" in shown.stdout
    assert "3 could not run" in shown.stdout

    allowed = run_forge(
        "validate", str(root), "--format", "json", "--allow-missing", "cargo",
        env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    data = json.loads(allowed.stdout)
    assert allowed.returncode == 0, "the user said cargo may be missing: clippy goes with it"
    assert data["summary"]["skipped"] == 3
    assert by_name(data)["cargo test"]["reason"].endswith("; optional")


def test_cache_answers_an_unchanged_tree_and_reruns_on_relevant_changes(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", PACKAGE)
    _, first = report(root)
    assert not any(v["cached"] for v in first["validators"])
    _, again = report(root)
    assert all(v["cached"] for v in again["validators"])

    write(root, {"pkg/__init__.py": "def add(a, b):\n    return a + b\n"})  # tracked file edited
    _, edited = report(root)
    assert not by_name(edited)["ruff"]["cached"] and not by_name(edited)["pytest"]["cached"]

    write(root, {"tests/test_new.py": "def test_new():\n    assert True\n"})  # untracked file
    _, added = report(root)
    assert not by_name(added)["pytest"]["cached"]
    assert by_name(added)["pytest"]["tests"]["passed"] == 2

    (root / "tests/test_add.py").unlink()  # a tracked file deleted, not yet committed
    _, deleted = report(root)
    assert not by_name(deleted)["pytest"]["cached"]
    assert by_name(deleted)["pytest"]["tests"]["passed"] == 1
    _, again_deleted = report(root)
    assert by_name(again_deleted)["pytest"]["cached"], "the deleted file no longer counts"

    config = tmp_path / "forge.toml"
    config.write_text('[validation.commands]\npytest = "python -m pytest -x"\n')
    _, resettled = report(root, "--config", str(config))
    assert not by_name(resettled)["pytest"]["cached"], "new settings, new run"
    _, forced = report(root, "--no-cache")
    assert not any(v["cached"] for v in forced["validators"])


def test_baseline_reports_only_new_findings(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "pyproject.toml": PACKAGE["pyproject.toml"],
            "pkg/__init__.py": "import os\n",
            "tests/test_a.py": "def test_a():\n    assert True\n",
        },
    )
    # The old finding moves down a line; a new one appears in another file.
    write(root, {"pkg/__init__.py": "\nimport os\n", "pkg/extra.py": "import sys\n"})
    code, data = report(root, "--baseline", "HEAD")
    assert code == 1
    assert data["baseline"] == "HEAD"
    findings = [(d["file"], d["code"]) for d in by_name(data)["ruff"]["diagnostics"]]
    assert findings == [("pkg/extra.py", "F401")]

    (root / "pkg/extra.py").unlink()
    code, data = report(root, "--baseline", "HEAD")
    assert code == 0, "only old findings remain: the gate passes"
    assert by_name(data)["ruff"]["diagnostics"] == []
    assert "already present in HEAD" in by_name(data)["ruff"]["reason"]


def test_changed_lints_only_changed_files(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", PACKAGE)
    write(root, {"pkg/new.py": "import sys\n"})
    _, data = report(root, "--changed")
    files = {d["file"] for d in by_name(data)["ruff"]["diagnostics"]}
    assert files == {"pkg/new.py"}


def test_output_file_and_summary_together(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", PACKAGE)
    sarif = tmp_path / "out.sarif"
    done = run_forge("validate", str(root), "--format", "sarif", "--output", str(sarif))
    assert done.returncode == 1
    assert "ruff" in done.stdout and "F401" in done.stdout, "the summary still prints"
    data = json.loads(sarif.read_text())
    assert data["version"] == "2.1.0"


def test_custom_validators_with_each_parser(tmp_path: Path) -> None:
    junit = (
        '<testsuite><testcase classname="c" name="ok"/>'
        '<testcase classname="c" name="bad"><failure message="boom">x</failure></testcase>'
        "</testsuite>"
    )
    sarif = json.dumps(
        {
            "version": "2.1.0",
            "runs": [
                {
                    "results": [
                        {
                            "ruleId": "R1",
                            "level": "warning",
                            "message": {"text": "careful"},
                            "locations": [
                                {
                                    "physicalLocation": {
                                        "artifactLocation": {"uri": "a.txt"},
                                        "region": {"startLine": 2},
                                    }
                                }
                            ],
                        }
                    ]
                }
            ],
        }
    )
    custom = [
        {
            "name": "grep-todo",
            "command": "echo 'notes.txt:3: TODO left here'",
            "parser": "regex",
            "pattern": r"^(?P<file>[^:]+):(?P<line>\d+): (?P<message>.*)$",
        },
        {
            "name": "junit-suite",
            "command": f"printf '%s' '{junit}' > {{report}}",
            "parser": "junit",
            "stage": "test",
        },
        {"name": "sarif-tool", "command": f"printf '%s' '{sarif}'", "parser": "sarif"},
        {"name": "exit-code", "command": "exit 3"},
    ]
    config = tmp_path / "forge.toml"
    config.write_text(tomli_w.dumps({"validation": {"custom": custom}}))
    root = make_repo(tmp_path / "repo", {"notes.txt": "a\nb\nTODO\n"})
    code, data = report(root, "--config", str(config))
    assert code == 1
    found = by_name(data)
    grep = found["grep-todo"]["diagnostics"][0]
    assert (grep["file"], grep["line"], grep["message"]) == ("notes.txt", 3, "TODO left here")
    assert found["junit-suite"]["tests"] == {
        "passed": 1,
        "failed": 1,
        "skipped": 0,
        "error": 0,
        "xfailed": 0,
        "xpassed": 0,
    }
    sarif_found = found["sarif-tool"]["diagnostics"][0]
    assert (sarif_found["code"], sarif_found["severity"], sarif_found["line"]) == (
        "R1",
        "warning",
        2,
    )
    assert found["sarif-tool"]["status"] == "passed", "a warning alone does not fail the gate"
    assert found["exit-code"]["status"] == "failed"


def test_an_unchanged_tree_is_replayed_without_running_anything(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", PACKAGE)
    junit = tmp_path / "report.xml"
    first = run_forge("validate", str(root), "--format", "junit", "--output", str(junit))
    assert "answered from the cache" not in first.stdout
    junit.unlink()
    again = run_forge("validate", str(root), "--format", "junit", "--output", str(junit))
    assert again.returncode == first.returncode == 1
    assert "answered from the cache" in again.stdout
    assert "(cached)" in again.stdout
    assert junit.read_text().startswith("<?xml"), "--output is written on a replay too"

    write(root, {"tests/test_more.py": "def test_more():\n    assert True\n"})
    changed = run_forge("validate", str(root))
    assert "answered from the cache" not in changed.stdout
    assert "2 passed" in changed.stdout


def test_a_replay_is_refused_when_a_tool_changes(tmp_path: Path) -> None:
    import shutil

    real = shutil.which("ruff")
    assert real is not None
    tools = tmp_path / "bin"
    tools.mkdir()
    wrapper = tools / "ruff"
    wrapper.write_text(f'#!/bin/sh\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    env = {"PATH": f"{tools}:{os.environ['PATH']}"}
    root = make_repo(tmp_path / "repo", PACKAGE)
    run_forge("validate", str(root), env=env)
    assert "answered from the cache" in run_forge("validate", str(root), env=env).stdout
    wrapper.write_text(f'#!/bin/sh\n# upgraded\nexec "{real}" "$@"\n')  # new size and mtime
    after = run_forge("validate", str(root), env=env)
    assert "answered from the cache" not in after.stdout


def test_mypy_runs_when_the_project_configures_it(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "pyproject.toml": PACKAGE["pyproject.toml"] + "\n[tool.mypy]\nstrict = true\n",
            "pkg/__init__.py": 'def half(x: int) -> int:\n    return "two"\n',
            "tests/test_half.py": "def test_nothing() -> None:\n    assert True\n",
        },
    )
    _, data = report(root)
    mypy = by_name(data)["mypy"]
    assert mypy["status"] == "failed"
    found = [(d["file"], d["line"], d["code"]) for d in mypy["diagnostics"]]
    assert ("pkg/__init__.py", 2, "return-value") in found

    plain = make_repo(tmp_path / "plain", PACKAGE)
    _, data = report(plain)
    assert "mypy" not in by_name(data), "mypy runs only where the project asks for it"
