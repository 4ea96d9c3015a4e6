"""`forge validate` on Rust crates and mixed repositories, with the real cargo and clippy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from forge.config.schema import ValidationConfig
from forge.validation.projects import Project, cargo_env, detect, in_ci, validators_for
from tests.conftest import run_forge
from tests.test_validate_python import PACKAGE, by_name, make_repo, report

CARGO = '[package]\nname = "calc"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n'
GITIGNORE = {".gitignore": "target/\n"}


def test_rust_type_error_fails_the_build_and_skips_the_tests(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            **GITIGNORE,
            "Cargo.toml": CARGO,
            "src/lib.rs": 'pub fn half(x: i32) -> i32 {\n    let y: i32 = "two";\n    x / y\n}\n',
        },
    )
    code, data = report(root)
    assert code == 1
    found = by_name(data)
    errors = [d for d in found["cargo check"]["diagnostics"] if d["severity"] == "error"]
    assert [(d["code"], d["file"], d["line"], d["column"]) for d in errors] == [
        ("E0308", "src/lib.rs", 2, 18)
    ]
    assert found["cargo test"]["status"] == "skipped"
    assert "cargo check failed" in found["cargo test"]["reason"]


LIB = """\
/// Adds one.
///
/// ```
/// assert_eq!(calc::inc(1), 2);
/// ```
pub fn inc(x: i32) -> i32 {
    return x + 1;
}

#[cfg(test)]
mod tests {
    #[test]
    fn unit() {
        assert_eq!(super::inc(2), 3);
    }
}
"""
IT = """\
#[test]
fn passes() {
    assert_eq!(calc::inc(0), 1);
}

#[test]
fn fails() {
    assert_eq!(calc::inc(0), 5, "inc is off");
}
"""


def test_rust_clippy_warning_and_test_counts_summed_across_binaries(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {**GITIGNORE, "Cargo.toml": CARGO, "src/lib.rs": LIB, "tests/it.rs": IT},
    )
    code, data = report(root)
    assert code == 1
    found = by_name(data)
    clippy = found["cargo clippy"]["diagnostics"]
    assert [(d["code"], d["file"], d["line"], d["severity"]) for d in clippy] == [
        ("clippy::needless_return", "src/lib.rs", 7, "warning")
    ]
    assert found["cargo clippy"]["status"] == "passed", "a warning alone does not fail the gate"
    tests = found["cargo test"]
    # unit (1) + integration (1 passed, 1 failed) + doc-test (1)
    assert tests["tests"] == {
        "passed": 3,
        "failed": 1,
        "skipped": 0,
        "error": 0,
        "xfailed": 0,
        "xpassed": 0,
    }
    failed = [t for t in tests["test_results"] if t["outcome"] == "failed"]
    assert [(t["name"], t["file"], t["line"]) for t in failed] == [("fails", "tests/it.rs", 8)]
    assert "inc is off" in failed[0]["message"]
    doc = [t for t in tests["test_results"] if "doc" in (t["suite"] or "").lower()]
    assert [t["outcome"] for t in doc] == ["passed"]


def test_a_repository_with_rust_and_python(tmp_path: Path) -> None:
    files = {
        **GITIGNORE,
        "Cargo.toml": CARGO,
        "src/lib.rs": "pub fn inc(x: i32) -> i32 {\n    x + 1\n}\n",
        "py/pyproject.toml": PACKAGE["pyproject.toml"],
        "py/pkg/__init__.py": PACKAGE["pkg/__init__.py"],
        "py/tests/test_add.py": PACKAGE["tests/test_add.py"],
    }
    root = make_repo(tmp_path / "repo", files)
    code, data = report(root)
    assert code == 1
    projects = {(v["project"], v["name"]): v["status"] for v in data["validators"]}
    assert projects[(".", "cargo check")] == "passed"
    assert projects[(".", "cargo test")] == "passed", "a crate with no tests yet passes"
    assert projects[("py", "ruff")] == "failed"
    assert projects[("py", "pytest")] == "failed"
    ruff = next(v for v in data["validators"] if v["name"] == "ruff")
    assert {d["file"] for d in ruff["diagnostics"]} >= {"py/pkg/__init__.py"}

    github = run_forge("validate", str(root), "--format", "github")
    lines = github.stdout.splitlines()
    assert any(line.startswith("::error file=py/pkg/__init__.py,line=1") for line in lines)


def test_a_cache_folder_that_cannot_be_written_costs_speed_not_results(tmp_path: Path) -> None:
    home = tmp_path / "forge-home"
    home.mkdir()
    (home / "validate").write_text("a file where the cache folder should be\n")
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "0"\n')
    (project / "tests" / "test_ok.py").write_text("def test_ok():\n    assert True\n")
    done = run_forge("validate", str(project), env={"FORGE_HOME": str(home)})
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


def test_the_files_a_validation_looks_at_are_files_that_are_here(tmp_path: Path) -> None:
    """What git lists but is not a file in the working tree is left out: a deleted tracked file,
    a nested repository, a broken link, a file outside a sparse checkout."""
    import os
    import subprocess

    from forge.validation.tree import list_files

    def git(*args: str, cwd: Path = tmp_path) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=cwd,
            check=True,
            capture_output=True,
        )

    git("init", "-q")
    for name in ("kept.py", "gone.py", "far/away.py"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x = 1\n")
    git("add", "-A")
    git("commit", "-qm", "start")
    (tmp_path / "gone.py").unlink()
    (tmp_path / "new.py").write_text("y = 2\n")
    (tmp_path / "nested").mkdir()
    git("init", "-q", cwd=tmp_path / "nested")
    os.symlink(tmp_path / "missing.py", tmp_path / "dangling.py")
    git("sparse-checkout", "set", "--no-cone", "/*.py", "/*.toml")

    assert list_files(tmp_path) == ("kept.py", "new.py")


def test_the_cache_sees_every_edit_git_s_index_does_not_record(tmp_path: Path) -> None:
    """Unchanged files are keyed by git's ids without being read; nothing else is: a same-size
    edit in the second git wrote its index, a file marked assume-unchanged, a file reached
    through a link, an untracked file."""
    outside = tmp_path / "outside.txt"
    outside.write_text("GOOD\n")
    script = tmp_path / "no_bad.py"  # fails when a .txt file here says BAD
    script.write_text(
        "import pathlib, sys\n"
        "sys.exit(any('BAD' in p.read_text() for p in pathlib.Path('.').glob('*.txt')))\n"
    )
    config = tmp_path / "forge.toml"
    config.write_text(
        '[[validation.custom]]\nname = "no-bad"\nparser = "exit_code"\n'
        f'command = "{sys.executable} {script}"\n'
    )
    root = make_repo(tmp_path / "repo", {"a.txt": "GOOD\n", "b.txt": "GOOD\n"})
    os.symlink(outside, root / "linked.txt")
    subprocess.run(["git", "add", "linked.txt"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "link"], cwd=root, check=True)

    def status() -> tuple[str, bool]:
        code, data = report(root, "--config", str(config))
        found = by_name(data)["no-bad"]
        assert code == (1 if found["status"] == "failed" else 0)
        return found["status"], found["cached"]

    def edit(path: Path, text: str) -> None:
        path.write_text(text)
        assert status() == ("failed", False), path.name
        path.write_text("GOOD\n")
        assert status()[0] == "passed"

    assert status() == ("passed", False)
    assert status() == ("passed", True)
    edit(root / "a.txt", "BAD\n\n")  # same size, same second as the index git just wrote
    subprocess.run(["git", "update-index", "--assume-unchanged", "b.txt"], cwd=root, check=True)
    edit(root / "b.txt", "BAD\n\n")
    edit(outside, "BAD\n")
    edit(root / "c.txt", "BAD\n")


def custom_checks(tmp_path: Path, checks: dict[str, tuple[str, str]]) -> Path:
    """A forge.toml with custom validators: name -> (stage, Python code run in the repo)."""
    parts = []
    for name, (stage, code) in checks.items():
        script = tmp_path / f"{name}.py"
        script.write_text(code)
        parts.append(
            f'[[validation.custom]]\nname = "{name}"\nparser = "exit_code"\nstage = "{stage}"\n'
            f'command = "{sys.executable} {script}"\n'
        )
    config = tmp_path / "forge.toml"
    config.write_text("\n".join(parts))
    return config


def test_the_cache_tells_apart_files_line_ending_conversion_makes_alike(tmp_path: Path) -> None:
    """Two clones of one commit, one checked out with core.autocrlf: git's ids are the same,
    the bytes are not, and the result of one is never served for the other."""
    import time

    config = custom_checks(
        tmp_path,
        {
            "no-crlf": (
                "lint",
                "import sys\nsys.exit(b'\\r\\n' in open('data.txt', 'rb').read())\n",
            )
        },
    )
    origin = make_repo(tmp_path / "origin", {"data.txt": "a\nb\n"})
    plain, converted = tmp_path / "plain", tmp_path / "converted"
    subprocess.run(["git", "clone", "-q", str(origin), str(plain)], check=True)
    subprocess.run(
        ["git", "clone", "-q", "-c", "core.autocrlf=true", str(origin), str(converted)], check=True
    )
    assert (converted / "data.txt").read_bytes() == b"a\r\nb\r\n"
    for clone in (plain, converted):
        # Written a while ago (settled: files changed just before a listing are read whatever
        # git says), then a later index: git trusts the stat, as after any status.
        past = time.time() - 10
        os.utime(clone / "data.txt", (past, past))
        subprocess.run(["git", "status", "--porcelain"], cwd=clone, check=True)
    code, data = report(plain, "--config", str(config))
    assert (code, by_name(data)["no-crlf"]["cached"]) == (0, False)
    code, data = report(converted, "--config", str(config))
    assert (code, by_name(data)["no-crlf"]["cached"]) == (1, False)


def test_a_file_a_validator_rewrites_is_keyed_by_what_the_next_one_reads(tmp_path: Path) -> None:
    """Git's ids are taken once, before the validators run; a file an earlier validator
    rewrote is read again for the later ones' keys (the library, below the whole-run replay)."""
    from forge.config.loader import load_config
    from forge.validation.runner import Options, validate

    config = custom_checks(
        tmp_path,
        {
            "spoil": ("build", "open('data.txt', 'w').write('BAD\\n')\n"),
            "no-bad": ("test", "import sys\nsys.exit('BAD' in open('data.txt').read())\n"),
        },
    )
    settings = load_config(config).config.validation
    root = make_repo(tmp_path / "repo", {"data.txt": "GOOD\n"})
    options = Options(cache_dir=tmp_path / "cache")
    first = {r.name: r for r in validate(root, settings, options).results}
    assert first["no-bad"].status.value == "failed", "spoil ran first, no-bad saw BAD"
    subprocess.run(["git", "checkout", "data.txt"], cwd=root, check=True)
    again = {r.name: r for r in validate(root, settings, options).results}
    assert again["spoil"].cached, "its key is the same: it is not run again"
    assert (again["no-bad"].status.value, again["no-bad"].cached) == ("passed", False)


def test_listing_gives_git_s_ids_only_for_files_as_the_index_has_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from forge.validation import tree

    root = make_repo(tmp_path / "repo", {"same.py": "x = 1\n", "edited.py": "y = 1\n"})
    (root / "edited.py").write_text("y = 2\n")
    (root / "new.py").write_text("z = 1\n")
    assert tree.listing(root).known == {}, "all changed just now: git may have seen them before"
    monkeypatch.setattr(tree, "RACY_NS", 0)  # as if they had settled
    listed = tree.listing(root)
    assert listed.files == ("edited.py", "new.py", "same.py")
    blob = subprocess.run(
        ["git", "hash-object", "same.py"], cwd=root, capture_output=True, text=True, check=True
    )
    assert {name: entry.object_id for name, entry in listed.known.items()} == {
        "same.py": blob.stdout.strip()
    }


def test_a_listing_after_the_caller_s_writes_holds_new_files_and_no_stale_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What run-milestone validates an attempt with: its context's listing plus its edits."""
    from forge.validation import tree

    root = make_repo(tmp_path / "repo", {"same.py": "x = 1\n", "edited.py": "y = 1\n"})
    monkeypatch.setattr(tree, "RACY_NS", 0)
    before = tree.listing(root)
    assert set(before.known) == {"same.py", "edited.py"}
    (root / "edited.py").write_text("y = 2\n")
    (root / "pkg").mkdir()
    (root / "pkg" / "new.py").write_text("z = 1\n")
    (root / "build").mkdir()
    (root / "build" / "out.py").write_text("generated = 1\n")
    written = ["edited.py", "pkg/new.py", "build/out.py", "never-made.py"]
    after = before.with_written(root, written)
    assert after.files == ("edited.py", "pkg/new.py", "same.py")
    assert set(after.known) == {"same.py"}
    assert after.files == tree.listing(root).files  # what git lists now, without asking it
    # A written .gitignore may hide or reveal files: the caller lists again.
    assert before.with_written(root, ["edited.py", "pkg/.gitignore"]) is None


def test_in_ci_cargo_builds_without_incremental_state_unless_the_user_asks(
    tmp_path: Path,
) -> None:
    """A CI job builds from cold: incremental state is written for nobody and costs time."""
    root = make_repo(
        tmp_path / "repo",
        {**GITIGNORE, "Cargo.toml": CARGO, "src/lib.rs": LIB.replace("return x + 1;", "x + 1")},
    )
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "CARGO_INCREMENTAL")}

    def validate(env: dict[str, str]) -> set[str]:
        shutil.rmtree(root / "target", ignore_errors=True)
        done = subprocess.run(
            [sys.executable, "-m", "forge", "validate", str(root), "--no-cache"],
            env={**base, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        # cargo makes the folder either way; with incremental compilation it fills it.
        return {
            p.relative_to(root).as_posix()
            for p in root.glob("target/**/incremental")
            if any(p.iterdir())
        }

    assert validate({"CI": "true"}) == set()
    # The user's own setting wins, in CI or not.
    assert validate({"CI": "true", "CARGO_INCREMENTAL": "1"}) == {
        "target/debug/incremental",
        "target/forge-test/debug/incremental",
    }


def test_what_counts_as_ci() -> None:
    assert in_ci({"CI": "true"}) and in_ci({"CI": "1"})
    for value in ("", "0", "false", "False", "no"):
        assert not in_ci({"CI": value}), value
    assert not in_ci({})


def test_only_cold_builds_go_without_incremental_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CI job's `forge validate` and fanout's scratch copies build from nothing; run-milestone's
    worktrees keep their target folder from task to task, where incremental state pays."""
    assert cargo_env({}, cold_builds=True) == {
        "CARGO_TERM_COLOR": "never",
        "CARGO_INCREMENTAL": "0",
    }
    assert cargo_env({"CARGO_INCREMENTAL": "1"}, cold_builds=True) == {"CARGO_TERM_COLOR": "never"}
    assert cargo_env({"CI": "true"}, cold_builds=False) == {"CARGO_TERM_COLOR": "never"}
    monkeypatch.delenv("CARGO_INCREMENTAL", raising=False)  # the user's own would win
    rust = Project("rust", Path("/repo"))
    warm = validators_for(rust, ValidationConfig())
    cold = validators_for(rust, ValidationConfig(), cold_builds=True)
    assert all("CARGO_INCREMENTAL" not in v.env for v in warm)
    assert all(v.env.get("CARGO_INCREMENTAL") == "0" for v in cold)


def test_a_workspace_at_the_root_is_one_project_whatever_its_members_are_called(
    tmp_path: Path,
) -> None:
    """Outermost first means by depth: "." and a one-letter member folder are the same length."""
    files = (
        "Cargo.toml",
        "a/Cargo.toml",
        "b/Cargo.toml",
        "a/src/lib.rs",
        "b/src/lib.rs",
        "tools/x/pyproject.toml",
        "tools/pyproject.toml",
    )
    root = tmp_path / "repo"
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    (root / "Cargo.toml").write_text('[workspace]\nmembers = ["a", "b"]\n')
    found = detect(root, root, files)
    assert [(p.kind, p.root.relative_to(root.resolve()).as_posix()) for p in found.projects] == [
        ("rust", "."),
        ("python", "tools"),
    ]


def test_no_git_id_is_trusted_where_checkouts_may_convert_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from forge.validation import tree
    from forge.validation.tree import listing

    monkeypatch.setattr(tree, "RACY_NS", 0)
    root = make_repo(tmp_path / "repo", {"a.txt": "x\n"})
    assert set(listing(root).known) == {"a.txt"}
    subprocess.run(["git", "config", "core.autocrlf", "input"], cwd=root, check=True)
    assert listing(root).known == {}
    subprocess.run(["git", "config", "core.autocrlf", "false"], cwd=root, check=True)
    assert set(listing(root).known) == {"a.txt"}
    (tmp_path / "home" / ".config" / "git").mkdir(parents=True)
    (tmp_path / "home" / ".config" / "git" / "attributes").write_text("*.txt text\n")
    assert listing(root).known == {}
    (tmp_path / "home" / ".config" / "git" / "attributes").unlink()
    info = root / ".git" / "info" / "attributes"
    info.parent.mkdir(exist_ok=True)
    info.write_text("*.txt text eol=crlf\n")
    assert listing(root).known == {}
    info.unlink()
    (root / "sub").mkdir()
    (root / "sub" / ".gitattributes").write_text("*.txt ident\n")
    assert listing(root).known == {}
    assert listing(root).files == ("a.txt", "sub/.gitattributes")


def test_a_failure_no_finding_explains_shows_the_end_of_the_tool_s_output(tmp_path: Path) -> None:
    """A validator that fails without a finding forge can read (a custom check's exit code,
    cargo stopping before it tests) says why in its own words, on the terminal and in JSON."""
    gate = (
        '[[validation.custom]]\nname = "gate"\n'
        "command = \"echo 'the schema has no version field' >&2; exit 3\"\n"
        'parser = "exit_code"\n'
    )
    root = make_repo(tmp_path / "repo", {"forge.toml": gate, "a.txt": "x\n"})

    shown = run_forge("validate", "--no-cache", cwd=root)
    code, data = report(root, "--no-cache", "-c", str(root / "forge.toml"))

    assert shown.returncode == 1
    assert "the schema has no version field" in shown.stdout
    assert code == 1
    assert "the schema has no version field" in by_name(data)["gate"]["output_tail"]


def test_cargo_s_target_folder_is_made_before_cargo_test_starts_beside_cargo_check(
    tmp_path: Path,
) -> None:
    """Two cargos that each find `target/` missing race to make it, and cargo test lost now
    and then ("No such file or directory", exit 101). forge makes it first, as cargo would."""
    from forge.validation.projects import CACHEDIR_TAG, make_target_folder

    make_target_folder(tmp_path)
    assert (tmp_path / "target" / "CACHEDIR.TAG").read_text(encoding="utf-8") == CACHEDIR_TAG
    (tmp_path / "target" / "CACHEDIR.TAG").unlink()
    make_target_folder(tmp_path)  # one already there is left as it is
    assert list((tmp_path / "target").iterdir()) == []


def test_cargo_test_makes_the_target_folder_before_it_starts() -> None:
    from forge.validation.projects import make_target_folder

    found = {v.name: v for v in validators_for(Project("rust", Path("crate")), ValidationConfig())}
    assert found["cargo test"].prepare is make_target_folder
    assert found["cargo check"].prepare is None  # it starts first, on its own


def test_a_tool_s_output_never_shows_a_key(tmp_path: Path) -> None:
    """Validators see the whole environment; what they print about it is masked: the keys the
    configuration names, and every variable named like a credential."""
    leak = (
        '[providers.llm]\nbase_url = "http://127.0.0.1:9/v1"\napi_key_env = "LLM_CREDS"\n\n'
        '[[validation.custom]]\nname = "leaky"\n'
        'command = "echo \\"key $LLM_CREDS token $CI_DEPLOY_TOKEN\\" >&2; exit 3"\n'
        'parser = "exit_code"\n\n'
        '[[validation.custom]]\nname = "finding"\n'
        'command = "echo \\"a.txt:1: key $LLM_CREDS token $CI_DEPLOY_TOKEN\\"; exit 1"\n'
        'parser = "regex"\n'
        "pattern = '^(?P<file>[^:]+):(?P<line>\\d+): (?P<message>.*)$'\n"
    )
    root = make_repo(tmp_path / "repo", {"forge.toml": leak, "a.txt": "x\n"})
    env = {"LLM_CREDS": "sk-sentinel-4242-abcdefgh", "CI_DEPLOY_TOKEN": "tok-sentinel-9999-xyz"}

    shown = run_forge("validate", cwd=root, env=env)
    as_json = run_forge("validate", "--format", "json", cwd=root, env=env)

    assert shown.returncode == as_json.returncode == 1
    assert "key [redacted] token [redacted]" in shown.stdout
    assert as_json.stdout.count("key [redacted] token [redacted]") == 3  # tail, message, rendered
    assert "sentinel" not in shown.stdout + as_json.stdout
    home = Path(os.environ["FORGE_HOME"])
    stored = [p.read_text(errors="replace") for p in home.rglob("*") if p.is_file()]
    assert not any("sentinel" in text for text in stored)  # nor in a cache or replay entry


def test_a_failure_no_finding_explains_is_not_answered_from_the_cache(tmp_path: Path) -> None:
    """It may have been the machine (a race, a full disk): the next run runs the check again."""
    flaky = (
        '[[validation.custom]]\nname = "flaky"\n'
        "command = \"test -f seen || { touch seen; echo 'disk full' >&2; exit 1; }\"\n"
        'parser = "exit_code"\n'
    )
    root = make_repo(tmp_path / "repo", {"forge.toml": flaky, ".gitignore": "seen\n"})

    first = run_forge("validate", cwd=root)
    second = run_forge("validate", cwd=root)

    assert first.returncode == 1 and "disk full" in first.stdout
    assert second.returncode == 0, second.stdout
    assert "cached" not in second.stdout


def test_a_file_keys_the_same_whether_git_vouched_for_it_or_it_was_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file changed in the 2 s before a listing is read; a moment later git's id stands for
    it: both must give the same cache key, or every validation right after an edit misses."""
    from forge.validation import tree

    root = make_repo(tmp_path / "repo", {"a.py": "x = 1\n", "b.py": "y = 2\n"})
    read = tree.listing(root)
    assert read.known == {}
    monkeypatch.setattr(tree, "RACY_NS", 0)
    vouched = tree.listing(root)
    assert set(vouched.known) == {"a.py", "b.py"}
    for name in ("a.py", "b.py"):
        assert tree.content_key(root, name, read.known) == tree.content_key(
            root, name, vouched.known
        )
    before = tree.content_key(root, "a.py", vouched.known)
    (root / "a.py").write_text("x = 3\n")  # its stat no longer matches: read, new content
    assert tree.content_key(root, "a.py", vouched.known) != before


def test_a_credential_variable_holding_a_path_or_a_name_like_one_is_not_masked() -> None:
    from forge.providers.secrets import Redactor

    redact = Redactor.for_tools(
        {
            "GOOGLE_APPLICATION_CREDENTIALS": "/home/runner/work/_temp/gha-creds-1234.json",
            "PIP_KEYRING_PROVIDER": "subprocess",
            "HF_TOKEN": "hf_abcdefghijklmnop",
        }
    )
    text = "/home/runner/work/proj/src/lib.rs: subprocess.CalledProcessError hf_abcdefghijklmnop"
    assert redact(text) == (
        "/home/runner/work/proj/src/lib.rs: subprocess.CalledProcessError [redacted]"
    )


def test_a_file_made_executable_or_not_is_validated_again(tmp_path: Path) -> None:
    """A check that runs a script passes or fails by its mode, which git's id does not hold."""
    check = '[[validation.custom]]\nname = "script"\ncommand = "./check.sh"\nparser = "exit_code"\n'
    root = make_repo(
        tmp_path / "repo", {"forge.toml": check, "check.sh": "#!/bin/sh\nexit 0\n"}, commit=False
    )
    (root / "check.sh").chmod(0o755)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "start"], cwd=root, check=True)
    assert run_forge("validate", cwd=root).returncode == 0
    (root / "check.sh").chmod(0o644)

    again = run_forge("validate", cwd=root)

    assert again.returncode == 1, again.stdout
    assert "cached" not in again.stdout


def test_baseline_keeps_a_new_failure_nothing_explains(tmp_path: Path) -> None:
    """The base passed; now the check fails without a finding: that failure is new."""
    gate = '[[validation.custom]]\nname = "gate"\ncommand = "test ! -f bad"\nparser = "exit_code"\n'
    root = make_repo(tmp_path / "repo", {"forge.toml": gate, "a.txt": "x\n"})
    (root / "bad").write_text("")

    done = run_forge("validate", "--baseline", "HEAD", cwd=root)

    assert done.returncode == 1, done.stdout


def test_changed_or_baseline_outside_a_git_repository_is_one_clear_line(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "pyproject.toml").write_text('[project]\nname = "plain"\nversion = "0"\n')
    (plain / "plain.py").write_text("x = 1\n")

    for flags, message in (
        (["--changed"], "--changed needs git history"),
        (["--baseline", "main"], "--baseline needs git history"),
    ):
        done = run_forge("validate", *flags, cwd=plain)

        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines() == [
            f"forge: error: {message}, and {plain.resolve()} is not inside a git repository"
        ]
