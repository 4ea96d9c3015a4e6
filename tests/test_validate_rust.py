"""`forge validate` on Rust: the real cargo's output parsed into diagnostics and test results."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from textwrap import dedent

import pytest

from forge.validation.rust import (
    CHECK_ARGS,
    CLIPPY_ARGS,
    TEST_ARGS,
    parse_compiler_messages,
    parse_test_output,
    summed_counts,
)
from forge.validation.types import TestResult

# Read at import, before the autouse fixture points HOME at a temporary folder: the rustup proxy
# finds its toolchains through these.
TOOLCHAIN_ENV = {
    "CARGO_HOME": os.environ.get("CARGO_HOME", str(Path.home() / ".cargo")),
    "RUSTUP_HOME": os.environ.get("RUSTUP_HOME", str(Path.home() / ".rustup")),
}

DOC_AND_UNIT_TESTS = """\
/// Adds two numbers.
///
/// ```
/// assert_eq!(demo::add(1, 2), 3);
/// ```
pub fn add(a: i32, b: i32) -> i32 {
    a + b
}

#[cfg(test)]
mod tests {
    #[test]
    fn adds() {
        assert_eq!(super::add(2, 2), 4);
    }

    #[test]
    #[ignore]
    fn slow() {}
}
"""

INTEGRATION_TESTS = """\
#[test]
fn adds_right() {
    assert_eq!(demo::add(1, 1), 2);
}

#[test]
fn adds_wrong() {
    if demo::add(1, 1) != 3 {
        panic!("one plus one is not {}", 3);
    }
}
"""


@pytest.fixture(scope="session")
def target_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build folder for every crate in this file, so cargo's own setup is paid once."""
    return tmp_path_factory.mktemp("cargo-target")


def cargo_env(target_dir: Path, backtrace: str = "0") -> dict[str, str]:
    return {
        **os.environ,
        **TOOLCHAIN_ENV,
        "CARGO_TARGET_DIR": str(target_dir),
        "CARGO_TERM_COLOR": "never",
        "CARGO_NET_OFFLINE": "true",
        "RUST_BACKTRACE": backtrace,
    }


def cargo(
    args: list[str], cwd: Path, target_dir: Path, *, merged: bool = False, backtrace: str = "0"
) -> subprocess.CompletedProcess[str]:
    """Cargo as the runner spawns it; `merged` sends its stderr into stdout, in order."""
    return subprocess.run(
        args,
        cwd=cwd,
        env=cargo_env(target_dir, backtrace),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merged else subprocess.PIPE,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def write_files(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dedent(text), encoding="utf-8")
    return root


def manifest(name: str) -> str:
    # The empty [workspace] keeps cargo from adopting a Cargo.toml further up the temp folder.
    return f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2021"\n\n[workspace]\n'


def member_manifest(name: str) -> str:
    return f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2021"\n'


def outcomes(results: list[TestResult]) -> list[tuple[str | None, str, str]]:
    """Suite, name and outcome, sorted: libtest reports tests as they finish, in any order."""
    return sorted((r.suite, r.name, r.outcome) for r in results)


def count(results: list[TestResult], outcome: str) -> int:
    return sum(1 for r in results if r.outcome == outcome)


def raw_messages(stdout: str, code: str) -> int:
    """How many compiler messages with `code` cargo printed, duplicates included."""
    records = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return sum(
        1
        for r in records
        if r["reason"] == "compiler-message" and (r["message"]["code"] or {}).get("code") == code
    )


def test_type_error_is_one_diagnostic_at_its_span(tmp_path: Path, target_dir: Path) -> None:
    crate = write_files(
        tmp_path,
        {
            "Cargo.toml": manifest("demo"),
            "src/lib.rs": """\
                pub fn answer() -> u32 {
                    let text: u32 = "forty-two";
                    text
                }
                """,
        },
    )
    run = cargo(CHECK_ARGS, crate, target_dir)
    assert run.returncode == 101, run.stderr

    diagnostics = parse_compiler_messages(run.stdout, crate, "cargo check")

    assert raw_messages(run.stdout, "E0308") == 2  # the lib and its unit-test build
    assert [(d.file, d.line, d.column, d.code, d.severity) for d in diagnostics] == [
        ("src/lib.rs", 2, 21, "E0308", "error")
    ]
    (diagnostic,) = diagnostics
    assert diagnostic.tool == "cargo check"
    assert diagnostic.message == "mismatched types"
    assert diagnostic.rendered is not None
    assert "src/lib.rs:2:21" in diagnostic.rendered


def test_clippy_warning_reported_once_for_lib_and_test_targets(
    tmp_path: Path, target_dir: Path
) -> None:
    crate = write_files(
        tmp_path,
        {
            "Cargo.toml": manifest("demo"),
            "src/lib.rs": """\
                pub fn double(x: u32) -> u32 {
                    return x * 2;
                }
                """,
        },
    )
    run = cargo(CLIPPY_ARGS, crate, target_dir)
    assert run.returncode == 0, run.stderr

    diagnostics = parse_compiler_messages(run.stdout, crate, "cargo clippy")

    assert raw_messages(run.stdout, "clippy::needless_return") == 2
    assert [(d.file, d.line, d.column, d.code, d.severity) for d in diagnostics] == [
        ("src/lib.rs", 2, 5, "clippy::needless_return", "warning")
    ]
    assert diagnostics[0].message == "unneeded `return` statement"


@pytest.mark.parametrize("merged", [False, True], ids=["separate-streams", "merged-streams"])
def test_every_test_of_every_binary_with_its_outcome(
    tmp_path: Path, target_dir: Path, merged: bool
) -> None:
    crate = write_files(
        tmp_path,
        {
            "Cargo.toml": manifest("demo"),
            "src/lib.rs": DOC_AND_UNIT_TESTS,
            "tests/it.rs": INTEGRATION_TESTS,
        },
    )
    # A backtrace between the panic message and the next section must not leak into the message.
    run = cargo(TEST_ARGS, crate, target_dir, merged=merged, backtrace="1" if merged else "0")
    assert run.returncode == 101, run.stderr

    results = parse_test_output(run.stdout, "" if merged else run.stderr, crate)

    assert outcomes(results) == [
        ("doc-tests demo", "src/lib.rs - add (line 3)", "passed"),
        ("tests/it.rs", "adds_right", "passed"),
        ("tests/it.rs", "adds_wrong", "failed"),
        ("unittests src/lib.rs", "tests::adds", "passed"),
        ("unittests src/lib.rs", "tests::slow", "skipped"),
    ]
    (failure,) = [r for r in results if r.outcome == "failed"]
    assert (failure.file, failure.line) == ("tests/it.rs", 9)
    assert failure.message == "one plus one is not 3"
    doc_test = next(r for r in results if r.suite == "doc-tests demo")
    assert (doc_test.file, doc_test.line) == ("src/lib.rs", 3)

    counts = summed_counts(run.stdout)
    assert counts == {"passed": 3, "failed": 1, "ignored": 1, "measured": 0, "filtered_out": 0}
    assert [count(results, "passed"), count(results, "failed"), count(results, "skipped")] == [
        counts["passed"],
        counts["failed"],
        counts["ignored"],
    ]
    assert parse_compiler_messages(run.stdout, crate, "cargo test") == []


def test_workspace_members_in_sub_folders_get_repository_paths(
    tmp_path: Path, target_dir: Path
) -> None:
    root = write_files(
        tmp_path,
        {
            "Cargo.toml": '[workspace]\nmembers = ["crates/a", "crates/b"]\nresolver = "2"\n',
            "crates/a/Cargo.toml": member_manifest("a"),
            "crates/a/src/lib.rs": "pub fn a() -> u8 {\n    1\n}\n",
            "crates/b/Cargo.toml": member_manifest("b"),
            "crates/b/src/lib.rs": """\
                /// ```
                /// assert_eq!(b::b(), 2);
                /// ```
                pub fn b() -> u8 {
                    let unused = 1;
                    2
                }
                """,
            "crates/b/tests/it.rs": """\
                #[test]
                fn fails() {
                    assert!(b::b() == 3, "not 3");
                }
                """,
        },
    )
    check = cargo(CHECK_ARGS, root, target_dir)
    assert check.returncode == 0, check.stderr

    diagnostics = parse_compiler_messages(check.stdout, root, "cargo check")

    assert [(d.file, d.line, d.column, d.code) for d in diagnostics] == [
        ("crates/b/src/lib.rs", 5, 9, "unused_variables")
    ]
    # The same output seen from a repository that holds the workspace in a sub-folder.
    from_above = parse_compiler_messages(check.stdout, root.parent, "cargo check")
    assert [d.file for d in from_above] == [f"{root.name}/crates/b/src/lib.rs"]

    test = cargo(TEST_ARGS, root, target_dir)
    results = parse_test_output(test.stdout, test.stderr, root)

    (failure,) = [r for r in results if r.outcome == "failed"]
    assert (failure.suite, failure.file, failure.line) == ("tests/it.rs", "crates/b/tests/it.rs", 3)
    assert failure.message == "not 3"
    (doc_test,) = [r for r in results if r.suite == "doc-tests b"]
    assert (doc_test.outcome, doc_test.file, doc_test.line) == ("passed", "crates/b/src/lib.rs", 1)


def test_test_file_that_does_not_compile_is_a_diagnostic(tmp_path: Path, target_dir: Path) -> None:
    crate = write_files(
        tmp_path,
        {
            "Cargo.toml": manifest("demo"),
            "src/lib.rs": "pub fn one() -> u8 {\n    1\n}\n",
            "tests/broken.rs": '#[test]\nfn broken() {\n    let _n: u8 = "one";\n}\n',
        },
    )
    run = cargo(TEST_ARGS, crate, target_dir)
    assert run.returncode == 101

    diagnostics = parse_compiler_messages(run.stdout, crate, "cargo test")

    assert [(d.file, d.line, d.column, d.code, d.severity) for d in diagnostics] == [
        ("tests/broken.rs", 3, 18, "E0308", "error")
    ]
    assert parse_test_output(run.stdout, run.stderr, crate) == []
    assert summed_counts(run.stdout)["passed"] == 0


def test_crashed_test_binary_is_an_error_and_later_binaries_keep_their_names(
    tmp_path: Path, target_dir: Path
) -> None:
    crate = write_files(
        tmp_path,
        {
            "Cargo.toml": manifest("demo"),
            "src/lib.rs": "",
            "tests/crash.rs": "#[test]\nfn aborts() {\n    std::process::abort();\n}\n",
            "tests/ok.rs": "#[test]\nfn fine() {}\n",
        },
    )
    run = cargo([*TEST_ARGS, "--test", "crash", "--test", "ok"], crate, target_dir)

    results = parse_test_output(run.stdout, run.stderr, crate)

    assert outcomes(results) == [
        ("tests/crash.rs", "tests/crash.rs", "error"),
        ("tests/ok.rs", "fine", "passed"),
    ]


def test_panic_format_of_rustc_before_1_73() -> None:
    stdout = dedent(
        """\

        running 1 test
        test checks_sum ... FAILED

        failures:

        ---- checks_sum stdout ----
        thread 'checks_sum' panicked at 'assertion failed: `(left == right)`
          left: `2`,
         right: `3`', tests/sum.rs:4:5
        note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace


        failures:
            checks_sum

        test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; \
finished in 0.00s
        """
    )
    stderr = "     Running tests/sum.rs (target/debug/deps/sum-0123456789abcdef)\n"

    results = parse_test_output(stdout, stderr, Path("/repo"))

    assert results == [
        TestResult(
            name="checks_sum",
            outcome="failed",
            suite="tests/sum.rs",
            file="tests/sum.rs",
            line=4,
            message="assertion failed: `(left == right)`\n  left: `2`,\n right: `3`",
        )
    ]
