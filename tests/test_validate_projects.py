"""`forge validate` finds every project: each Cargo.toml and Python project is validated as the
tool that builds it would, or listed as not validated with why. Real repositories, the real CLI,
the real cargo, ruff, mypy and pytest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from forge.validation.projects import detect
from tests.conftest import run_forge
from tests.test_validate_python import by_name, make_repo, report
from tests.test_validate_rust import manifest, member_manifest

GITIGNORE = {".gitignore": "target/\n"}
PASSING = "#[test]\nfn passes() {\n    assert_eq!(1 + 1, 2);\n}\n"
FAILING = '#[test]\nfn adds_up() {\n    assert_eq!(1 + 1, 3, "one plus one");\n}\n'


@pytest.fixture(scope="session")
def target_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build folder for cargo check and clippy of every crate here (cargo test keeps its
    own, `target/forge-test` in each project)."""
    return tmp_path_factory.mktemp("cargo-target")


@pytest.fixture(autouse=True)
def shared_target(monkeypatch: pytest.MonkeyPatch, target_dir: Path) -> None:
    monkeypatch.setenv("CARGO_TARGET_DIR", str(target_dir))
    monkeypatch.setenv("CARGO_NET_OFFLINE", "true")


def results(data: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Each validator's result by (project, name)."""
    return {(v["project"], v["name"]): v for v in data["validators"]}


def failed_tests(result: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(t["name"], t["file"]) for t in result["test_results"] if t["outcome"] == "failed"]


# -- Cargo workspaces ------------------------------------------------------------------------


def test_a_crate_the_workspace_excludes_is_validated_on_its_own(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            **GITIGNORE,
            "Cargo.toml": '[workspace]\nmembers = ["crates/*"]\nexclude = ["crates/x"]\n',
            "crates/a/Cargo.toml": member_manifest("a"),
            "crates/a/src/lib.rs": "",
            "crates/a/tests/it.rs": PASSING,
            "crates/x/Cargo.toml": member_manifest("x"),
            "crates/x/src/lib.rs": "",
            "crates/x/tests/it.rs": FAILING,
        },
    )

    shown = run_forge("validate", str(root))
    code, data = report(root)

    assert shown.returncode == code == 1, shown.stdout
    found = results(data)
    assert found[(".", "cargo test")]["status"] == "passed"
    assert found[(".", "cargo test")]["tests"]["passed"] == 1
    excluded = found[("crates/x", "cargo test")]
    assert excluded["status"] == "failed"
    assert failed_tests(excluded) == [("adds_up", "crates/x/tests/it.rs")]
    assert data["not_validated"] == []
    assert "FAILED adds_up crates/x/tests/it.rs" in shown.stdout
    assert "note: crates/x — validated on its own: the workspace at . excludes it" in shown.stdout


FUZZ_MANIFEST = """\
[package]
name = "calc-fuzz"
version = "0.0.0"
publish = false
edition = "2021"

[package.metadata]
cargo-fuzz = true

[dependencies]
libfuzzer-sys = "0.4"

[[bin]]
name = "parse"
path = "fuzz_targets/parse.rs"

[workspace]
members = ["."]
"""
FUZZ_TARGET = "#![no_main]\nlibfuzzer_sys::fuzz_target!(|data: &[u8]| {});\n"


def test_crates_cargo_would_not_build_here_are_listed_with_why(tmp_path: Path) -> None:
    """A cargo-fuzz crate, a crate in the workspace folder that is no member, and a member
    [validation] exclude matches: none is run, each is listed, the rest passes."""
    config = tmp_path / "forge.toml"
    config.write_text('[validation]\nexclude = ["crates/skip*"]\n')
    root = make_repo(
        tmp_path / "repo",
        {
            **GITIGNORE,
            "Cargo.toml": member_manifest("calc")
            + '\n[workspace]\nmembers = ["crates/*"]\n\n[dependencies]\n'
            + 'helper = { path = "lib/helper" }\n',
            "src/lib.rs": "pub fn one() -> u8 {\n    helper::one()\n}\n",
            "tests/it.rs": PASSING,
            "lib/helper/Cargo.toml": member_manifest("helper"),  # a member: a path dependency
            "lib/helper/src/lib.rs": "pub fn one() -> u8 {\n    1\n}\n",
            "crates/skipped/Cargo.toml": member_manifest("skipped"),
            "crates/skipped/src/lib.rs": "",
            "crates/skipped/tests/it.rs": FAILING,
            "fuzz/Cargo.toml": FUZZ_MANIFEST,
            "fuzz/fuzz_targets/parse.rs": FUZZ_TARGET,
            "plugins/demo/Cargo.toml": member_manifest("plugin"),
            "plugins/demo/src/lib.rs": "",
        },
    )

    shown = run_forge("validate", str(root), "--config", str(config))
    code, data = report(root, "--config", str(config))

    assert shown.returncode == code == 0, shown.stdout
    assert {v["project"] for v in data["validators"]} == {"."}
    test = results(data)[(".", "cargo test")]
    assert "--exclude" in test["command"] and "skipped" in test["command"]
    assert test["tests"]["passed"] == 1
    assert data["not_validated"] == [
        {
            "path": "crates/skipped",
            "kind": "rust",
            "reason": 'matched [validation] exclude ("crates/skip*")',
        },
        {
            "path": "fuzz",
            "kind": "rust",
            "reason": "a cargo-fuzz crate: it needs a nightly toolchain; run it with `cargo fuzz`",
        },
        {
            "path": "plugins/demo",
            "kind": "rust",
            "reason": "inside the workspace at . but not a member of it "
            "(cargo refuses to build it)",
        },
    ]
    assert "not validated: fuzz — a cargo-fuzz crate" in shown.stdout
    assert "not validated: plugins/demo — inside the workspace at ." in shown.stdout


def test_a_tree_whose_only_crate_is_not_validated_says_so(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo", {"fuzz/Cargo.toml": FUZZ_MANIFEST, "fuzz/fuzz_targets/parse.rs": ""}
    )

    done = run_forge("validate", str(root))

    assert done.returncode == 2
    assert "nothing to validate" in done.stderr
    assert "not validated: fuzz — a cargo-fuzz crate" in done.stderr


def test_workspace_membership_as_cargo_reads_it(tmp_path: Path) -> None:
    """Globs match one folder level per `*`; a literal member wins over `exclude`; path
    dependencies inside the workspace folder are members, a nested [workspace] is its own."""
    manifests = {
        "Cargo.toml": '[workspace]\nmembers = ["crates/*", "kept/inner"]\nexclude = ["kept"]\n',
        "crates/a/Cargo.toml": member_manifest("a")
        + '\n[dev-dependencies]\nb = { path = "../../support/b" }\n',
        "crates/a/deep/Cargo.toml": member_manifest("deep"),
        "support/b/Cargo.toml": member_manifest("b"),
        "kept/inner/Cargo.toml": member_manifest("inner"),
        "kept/other/Cargo.toml": member_manifest("other"),
        "nested/Cargo.toml": manifest("nested"),
    }
    root = tmp_path / "repo"
    for name, text in manifests.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)

    found = detect(root, root, tuple(manifests))

    assert [p.root.relative_to(root.resolve()).as_posix() for p in found.projects] == [
        ".",
        "nested",
        "kept/other",
    ]
    assert [(n.path, n.reason.split(" (")[0]) for n in found.not_validated] == [
        ("crates/a/deep", "inside the workspace at . but not a member of it")
    ]
    assert [(n.path, n.reason) for n in found.notes] == [
        ("kept/other", "validated on its own: the workspace at . excludes it")
    ]


NIGHTLY_BENCH = """\
#![feature(test)]
extern crate test;

#[bench]
fn bench_add(b: &mut test::Bencher) {
    b.iter(|| calc::add(1, 2));
}
"""


def test_a_nightly_only_bench_does_not_stop_a_stable_crate_s_tests(tmp_path: Path) -> None:
    """As itoa 1.0.1 ships: `cargo test` passes on stable, so the gate does too."""
    root = make_repo(
        tmp_path / "repo",
        {
            **GITIGNORE,
            "Cargo.toml": manifest("calc"),
            "src/lib.rs": "pub fn add(a: u8, b: u8) -> u8 {\n    a + b\n}\n",
            "tests/it.rs": PASSING
            + "\n#[test]\nfn adds() {\n    assert_eq!(calc::add(1, 2), 3);\n}\n",
            "benches/bench.rs": NIGHTLY_BENCH,
        },
    )

    code, data = report(root)

    found = by_name(data)
    assert code == 0, {k: (v["status"], v["reason"]) for k, v in found.items()}
    assert found["cargo check"]["status"] == found["cargo clippy"]["status"] == "passed"
    assert found["cargo test"]["tests"]["passed"] == 2
    assert found["cargo test"]["tests"]["failed"] == 0


def test_a_crate_without_tests_passes_with_a_note(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {**GITIGNORE, "Cargo.toml": manifest("calc"), "src/main.rs": "fn main() {}\n"},
    )

    shown = run_forge("validate", str(root))
    code, data = report(root)

    assert shown.returncode == code == 0, shown.stdout
    test = by_name(data)["cargo test"]
    assert (test["status"], test["reason"]) == ("passed", "cargo test ran 0 tests")
    assert "cargo test passed: cargo test ran 0 tests" in shown.stdout


# -- Python ----------------------------------------------------------------------------------


def test_validation_exclude_leaves_a_folder_to_itself(tmp_path: Path) -> None:
    """The folder's project is listed; the enclosing project's syntax check, ruff and pytest
    do not look at its files."""
    config = tmp_path / "forge.toml"
    config.write_text('[validation]\nexclude = ["tools/*"]\n')
    root = make_repo(
        tmp_path / "repo",
        {
            "pyproject.toml": '[project]\nname = "app"\nversion = "0"\n',
            "app/__init__.py": "",
            "tests/test_app.py": "def test_app():\n    assert True\n",
            "tools/gen/gen.py": "import os\ndef broken(:\n",
            "tools/gen/test_gen.py": "def test_gen():\n    assert False\n",
            "tools/lint/pyproject.toml": '[project]\nname = "lint"\nversion = "0"\n',
            "tools/lint/tests/test_lint.py": "def test_lint():\n    assert False\n",
        },
    )

    shown = run_forge("validate", str(root), "--config", str(config))
    code, data = report(root, "--config", str(config))

    assert shown.returncode == code == 0, shown.stdout
    found = by_name(data)
    assert found["python syntax"]["diagnostics"] == found["ruff"]["diagnostics"] == []
    assert found["pytest"]["tests"]["passed"] == 1 and found["pytest"]["tests"]["failed"] == 0
    assert data["not_validated"] == [
        {
            "path": "tools/lint",
            "kind": "python",
            "reason": 'matched [validation] exclude ("tools/*")',
        }
    ]
    assert 'not validated: tools/lint — matched [validation] exclude ("tools/*")' in shown.stdout


MYPY_ERROR = 'def half(x: int) -> int:\n    return "two"\n'


def test_mypy_checks_the_files_its_configuration_names(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "pyproject.toml": '[project]\nname = "pkg"\nversion = "0"\n',
            "mypy.ini": "[mypy]\nfiles = pkg/checked.py\n",
            "pkg/__init__.py": "",
            "pkg/checked.py": MYPY_ERROR,
            "pkg/unchecked.py": MYPY_ERROR,
            "tests/test_pkg.py": "def test_pkg():\n    assert True\n",
        },
    )

    _, data = report(root)

    mypy = by_name(data)["mypy"]
    assert mypy["status"] == "failed"
    assert [(d["file"], d["code"]) for d in mypy["diagnostics"]] == [
        ("pkg/checked.py", "return-value")
    ]


def test_a_files_line_of_another_tool_in_setup_cfg_is_not_mypy_s(tmp_path: Path) -> None:
    """bumpversion's `files =` is no mypy target list: mypy checks the project's own package,
    and not the whole tree (its examples are not checked)."""
    setup_cfg = (
        "[bumpversion]\ncurrent_version = 0.1.0\nfiles = setup.py pkg/__init__.py\n\n"
        "[bumpversion:file:setup.py]\n\n[mypy]\nstrict = true\n"
    )
    root = make_repo(
        tmp_path / "repo",
        {
            "setup.cfg": setup_cfg,
            "setup.py": "from setuptools import setup\nsetup()\n",
            "pkg/__init__.py": MYPY_ERROR,
            "examples/demo.py": MYPY_ERROR,
            "tests/test_pkg.py": "def test_pkg() -> None:\n    assert True\n",
        },
    )

    _, data = report(root)

    mypy = by_name(data)["mypy"]
    assert (mypy["status"], mypy["reason"]) == ("failed", None)
    assert mypy["command"][-1] == "pkg"
    assert {(d["file"], d["code"]) for d in mypy["diagnostics"]} == {
        ("pkg/__init__.py", "return-value")
    }


def uv_member(name: str, pytest_options: str = "") -> str:
    return f'[project]\nname = "{name}"\nversion = "0"\n{pytest_options}'


def test_each_member_of_a_uv_workspace_is_a_project_with_its_own_pytest_settings(
    tmp_path: Path,
) -> None:
    stress = '\n[tool.pytest.ini_options]\naddopts = "-m \'not stress\'"\nmarkers = ["stress"]\n'
    root = make_repo(
        tmp_path / "repo",
        {
            "pyproject.toml": uv_member("root")
            + '\n[tool.uv.workspace]\nmembers = ["packages/*"]\nexclude = ["packages/old"]\n',
            "tests/test_root.py": "def test_root():\n    assert True\n",
            "packages/a/pyproject.toml": uv_member("a", stress),
            "packages/a/tests/test_a.py": (
                "import pytest\n\n\ndef test_quick():\n    assert True\n\n\n"
                "@pytest.mark.stress\ndef test_heavy():\n    assert False, 'too slow here'\n"
            ),
            "packages/b/pyproject.toml": uv_member("b"),
            "packages/b/b.py": "import os\n",
            "packages/b/tests/test_b.py": "def test_b():\n    assert 1 == 2\n",
            "packages/old/pyproject.toml": uv_member("old"),  # not a member: the root's
            "packages/old/tests/test_old.py": "def test_old():\n    assert True\n",
        },
    )

    code, data = report(root)

    assert code == 1
    found = results(data)
    assert [p for p, n in found if n == "pytest"] == [".", "packages/a", "packages/b"]
    assert found[(".", "pytest")]["status"] == "passed"
    assert found[(".", "pytest")]["tests"]["passed"] == 2  # its own and packages/old's
    assert found[(".", "ruff")]["diagnostics"] == []
    assert found[("packages/a", "pytest")]["status"] == "passed"
    assert found[("packages/a", "pytest")]["tests"]["passed"] == 1
    assert found[("packages/b", "pytest")]["status"] == "failed"
    assert failed_tests(found[("packages/b", "pytest")]) == [
        ("test_b", "packages/b/tests/test_b.py")
    ]
    linted = {(d["file"], d["code"]) for d in found[("packages/b", "ruff")]["diagnostics"]}
    assert ("packages/b/b.py", "F401") in linted


def test_a_virtual_uv_workspace_root_is_no_project(tmp_path: Path) -> None:
    files = {
        "pyproject.toml": '[tool.uv.workspace]\nmembers = ["libs/*"]\n',
        "libs/one/pyproject.toml": uv_member("one"),
        "libs/two/pyproject.toml": uv_member("two"),
        "scripts/pyproject.toml": uv_member("scripts"),  # no member, no project around it
    }
    root = tmp_path / "repo"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)

    found = detect(root, root, tuple(files))

    assert [(p.root.relative_to(root.resolve()).as_posix(), p.skip) for p in found.projects] == [
        ("scripts", ()),
        ("libs/one", ()),
        ("libs/two", ()),
    ]
