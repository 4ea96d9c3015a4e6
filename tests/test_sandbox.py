"""The bubblewrap sandbox: `forge validate --sandbox` and `[validation] sandbox = "bwrap"`.

These run the real bwrap (CI installs it): none is skipped when it is missing, they fail.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.testing.fake_provider import FakeProvider, Reply
from tests.conftest import TOOLCHAIN_HOMES, run_forge
from tests.test_run_milestone import (
    FIX_ADD,
    config,
    forge_run,
    git,
    make_repo,
    python_repo,
)

KEY = "gw-0123456789abcdef"


@pytest.fixture
def outside() -> Iterator[Path]:
    """A folder outside the repository, /tmp and the home: writable to forge's tests, read-only
    inside the sandbox (where /tmp and the home are private, empty folders)."""
    folder = Path(tempfile.mkdtemp(prefix="forge-sandbox-test-", dir="/var/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def listener() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections (a local database, say)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def test_bwrap_is_installed() -> None:
    """CI installs bubblewrap (.ci/run); the sandbox tests run there, never skipped."""
    assert shutil.which("bwrap"), "install bubblewrap: apt-get install bubblewrap"


def test_validate_sandbox_keeps_writes_in_the_tree_the_network_off_and_the_home_hidden(
    tmp_path: Path, outside: Path, listener: int
) -> None:
    """The same tests pass without --sandbox and fail with it; the cache never answers one
    for the other."""
    home = outside / "home"  # not under /tmp, which the sandbox hides anyway
    secret = home / ".aws" / "credentials"
    secret.parent.mkdir(parents=True)
    secret.write_text("[default]\naws_secret_access_key = hunter2\n")
    leak = outside / "leak.txt"
    tests = f"""\
import socket
from pathlib import Path


def test_writes_outside():
    Path({str(leak)!r}).write_text("out")


def test_writes_inside():
    Path("made-by-test.txt").write_text("in")


def test_reaches_the_network():
    socket.create_connection(("127.0.0.1", {listener}), timeout=5).close()


def test_reads_the_home():
    assert "hunter2" in Path({str(secret)!r}).read_text()
"""
    repo = make_repo(
        tmp_path / "repo",
        {
            "pyproject.toml": '[project]\nname = "p"\nversion = "0"\n',
            ".gitignore": "__pycache__/\n.ruff_cache/\nmade-by-test.txt\n",
            "tests/test_escape.py": tests,
        },
    )

    env = {"HOME": str(home)}
    boxed = run_forge("validate", str(repo), "--sandbox", "--format", "json", env=env)
    assert boxed.returncode == 1, boxed.stderr
    pytest_result = _result(boxed.stdout, "pytest")
    outcomes = {t["name"]: t for t in pytest_result["test_results"]}  # type: ignore[attr-defined]
    assert outcomes["test_writes_inside"]["outcome"] == "passed"
    assert "Read-only file system" in outcomes["test_writes_outside"]["message"]
    for name in ("test_writes_outside", "test_reaches_the_network", "test_reads_the_home"):
        assert outcomes[name]["outcome"] == "failed", name
    assert not leak.exists()
    assert (repo / "made-by-test.txt").read_text() == "in"

    (repo / "made-by-test.txt").unlink()
    free = run_forge("validate", str(repo), "--format", "json", env=env)
    assert free.returncode == 0, free.stdout + free.stderr
    assert not _result(free.stdout, "pytest")["cached"]
    assert leak.read_text() == "out"

    leak.unlink()
    again = run_forge("validate", str(repo), "--sandbox", "--format", "json", env=env)
    assert again.returncode == 1, again.stderr
    assert not leak.exists()


def test_model_written_conftest_reads_no_key_and_writes_nothing_outside_in_the_sandbox(
    fake: FakeProvider, tmp_path: Path, outside: Path
) -> None:
    """An answer's conftest.py (the task names it, so it is not refused as a risky file)
    looks for the provider's key and writes what it finds outside the worktree. The key is
    never in its environment; with `[validation] sandbox = "bwrap"` the write fails, and so
    does the task, saying why."""
    leak = outside / "key.txt"
    conftest = (
        "tests/conftest.py\n```python\n<<<<<<< SEARCH\n=======\nimport os\n\n"
        f"with open({str(leak)!r}, 'w') as out:\n"
        "    out.write(os.environ.get('LLM_GATEWAY', 'absent'))\n>>>>>>> REPLACE\n```\n"
    )
    for model in ("alpha-1", "beta-1", "gamma-1"):  # every rung answers the same
        fake.script(model, Reply(text=FIX_ADD + "\n" + conftest))
    task = "fix: Fix add in calc.py and add tests/conftest.py (files: calc.py, tests/conftest.py)"

    def run(name: str, extra: str) -> tuple[int, dict[str, object], str]:
        repo = python_repo(tmp_path / name)
        cfg = config(tmp_path / name, fake.url, extra)
        text = cfg.read_text().replace(
            "[providers.fake]\n", '[providers.fake]\napi_key_env = "LLM_GATEWAY"\n', 1
        )
        cfg.write_text(text)
        milestone = tmp_path / name / "m.md"
        milestone.write_text(f"- [ ] {task}\n")
        done = run_forge(
            "run-milestone", str(milestone), "--model", "alpha", "--json", "-c", str(cfg),
            cwd=repo, env={"LLM_GATEWAY": KEY}, timeout=300,
        )  # fmt: skip
        return done.returncode, json.loads(done.stdout), done.stderr

    (tmp_path / "free").mkdir()
    code, _, stderr = run("free", "")
    assert code == 0, stderr
    assert leak.read_text() == "absent"  # written, but without the key

    leak.unlink()
    (tmp_path / "boxed").mkdir()
    code, report, stderr = run("boxed", '[validation]\nsandbox = "bwrap"\n')
    assert code == 1, stderr
    assert not leak.exists()
    [outcome] = report["tasks"]  # type: ignore[misc]
    assert outcome["state"] == "failed"
    assert "Read-only file system" in outcome["last_findings"], outcome
    assert str(leak) in outcome["last_findings"]


def test_without_bwrap_nothing_runs_and_the_error_says_how_to_install_it(
    fake: FakeProvider, tmp_path: Path, outside: Path
) -> None:
    """A PATH without bwrap: exit 2 with the package to install, before any validator runs
    (`forge validate --sandbox`) or any branch or worktree is made (run-milestone)."""
    tools = tmp_path / "bin"
    tools.mkdir()
    found = shutil.which("git")
    assert found is not None
    (tools / "git").symlink_to(found)
    (tools / "python").symlink_to(sys.executable)
    path = {"PATH": str(tools)}
    marker = outside / "ran.txt"
    repo = python_repo(
        tmp_path,
        extra={"tests/test_mark.py": f"def test_mark():\n    open({str(marker)!r}, 'w')\n"},
    )

    done = run_forge("validate", str(repo), "--sandbox", env=path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--sandbox runs the validators under bubblewrap, which is not installed" in done.stderr
    assert "apt-get install bubblewrap" in done.stderr
    assert not marker.exists()

    # A bwrap the kernel does not let make namespaces (as in a locked-down container).
    (tools / "bwrap").write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n"
    )
    (tools / "bwrap").chmod(0o755)
    done = run_forge("validate", str(repo), "--sandbox", env=path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot make a sandbox here (bwrap: No permissions" in done.stderr
    assert "user namespaces may not be allowed" in done.stderr
    assert not marker.exists()
    (tools / "bwrap").unlink()

    cfg = config(tmp_path, fake.url, '[validation]\nsandbox = "bwrap"\n')
    milestone = tmp_path / "m.md"
    milestone.write_text("- [ ] fix: Fix add in calc.py (files: calc.py)\n")
    fake.script("alpha-1", Reply(text=FIX_ADD))
    branches = git(repo, "branch", "--list")
    done = run_forge(
        "run-milestone", str(milestone), "--model", "alpha", "-c", str(cfg),
        cwd=repo, env=path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert '[validation] sandbox = "bwrap" runs the validators under bubblewrap' in done.stderr
    assert "apt-get install bubblewrap" in done.stderr
    assert git(repo, "branch", "--list") == branches  # no forge/RUN branch
    assert git(repo, "worktree", "list").count("\n") == 1
    assert not fake.requests_for("alpha-1")
    assert not marker.exists()

    code, report, stderr = forge_run(repo, cfg, str(milestone), "--model", "alpha")
    assert code == 0, stderr  # with bwrap on PATH again, the same run works
    assert report["tasks"][0]["state"] == "done"
    assert not marker.exists()  # the attempt's tests ran sandboxed: /var/tmp was read-only


def test_a_rust_crate_builds_lints_and_tests_in_the_sandbox(tmp_path: Path, outside: Path) -> None:
    """cargo check, clippy and test run offline in the sandbox, with the toolchain read-only
    and a CARGO_TARGET_DIR outside the crate bound writable; a build script that writes
    outside fails the build."""
    crate = make_repo(
        tmp_path / "crate",
        {
            "Cargo.toml": '[package]\nname = "demo"\nversion = "0.1.0"\nedition = "2021"\n\n'
            "[workspace]\n",
            ".gitignore": "target/\n",
            "src/lib.rs": "pub fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n\n"
            "#[cfg(test)]\nmod tests {\n    #[test]\n    fn adds() {\n"
            "        assert_eq!(super::add(2, 2), 4);\n    }\n}\n",
        },
    )
    env = {**TOOLCHAIN_HOMES, "CARGO_TARGET_DIR": str(tmp_path / "target")}
    done = run_forge("validate", str(crate), "--sandbox", "--format", "json", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    results = {r["name"]: r for r in json.loads(done.stdout)["validators"]}
    assert {n: r["status"] for n, r in results.items()} == {
        "cargo check": "passed",
        "cargo clippy": "passed",
        "cargo test": "passed",
    }
    assert results["cargo test"]["test_results"][0]["name"].endswith("adds")

    private = tmp_path / "escape.txt"  # under /tmp: a private, empty folder in the sandbox
    escape = outside / "escape.txt"
    (crate / "build.rs").write_text(
        f'fn main() {{\n    std::fs::write({json.dumps(str(private))}, "x")'
        '.expect("write to /tmp");\n'
        f'    std::fs::write({json.dumps(str(escape))}, "x").expect("write outside");\n}}\n'
    )
    git(crate, "add", "build.rs")
    done = run_forge("validate", str(crate), "--sandbox", "--format", "json", env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Read-only file system" in done.stdout
    assert not escape.exists()
    assert not private.exists()


def _result(stdout: str, name: str) -> dict[str, object]:
    results = json.loads(stdout)["validators"]
    return next(r for r in results if r["name"] == name)  # type: ignore[no-any-return]
