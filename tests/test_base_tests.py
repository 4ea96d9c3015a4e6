"""What counts as a change to the base's tests, and how the base's tests are put back.

Pure functions on text: the Rust item scanner, the comparison that tells a new test from a
changed one, and the splicing of a file's test parts (a `#[cfg(test)]` module, a doc-test
example, pytest's section of pyproject.toml, Cargo's `[dev-dependencies]` and test targets).
The run-milestone tests drive the same rules through the real CLI.
"""

from __future__ import annotations

import pytest

from forge.execution import config_sections, rust_tests
from forge.execution.base_tests import change_in_tests, is_test_file, with_base_tests
from forge.execution.rust_items import cfg_test_modules, items

TRICKY_RS = r"""
//! A crate whose literals and comments hold braces.
#![allow(dead_code)]
use std::fmt; // a brace in a comment: {

/// Doc with a brace {
pub fn tricky<'a>(text: &'a str) -> usize {
    let _open = '{';
    let _close = b'}';
    let _escaped = '\'';
    let _string = "}\"{";
    let _raw = r#"}"{"#;
    let _bytes = br##"}"#}"##;
    /* a block comment with } and /* a nested one { */ still in it } */
    'outer: loop {
        break 'outer;
    }
    text.len()
}

const ORIGIN: Point = Point { x: 0 };

struct Point {
    x: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(tricky("{"), 1);
    }
}
"""


def test_the_scanner_skips_braces_in_comments_strings_and_characters() -> None:
    found = items(TRICKY_RS)
    assert [(i.kind, i.name) for i in found] == [
        ("inner attribute", ""),
        ("inner attribute", ""),
        ("use", "std"),
        ("fn", "tricky"),
        ("other", ""),  # the const, up to its `;`, not the struct literal's `}`
        ("other", ""),
        ("mod", "tests"),
    ]
    tricky = found[3]
    assert tricky.attributes == ("/// Doc with a brace {",)
    assert tricky.text.endswith("text.len()\n}")
    assert found[4].text == "const ORIGIN: Point = Point { x: 0 };"
    tests = found[6]
    assert [(i.kind, i.name) for i in tests.children] == [("use", "super"), ("fn", "counts")]
    assert tests.children[1].attributes == ("#[test]",)
    assert [m.name for m in cfg_test_modules(TRICKY_RS)] == ["tests"]


def test_lifetimes_are_not_character_literals() -> None:
    text = "fn a<'x>(s: &'x str) -> &'x str { s }\nfn b() -> char { '}' }\nfn c() {}\n"
    assert [i.name for i in items(text)] == ["a", "b", "c"]


def test_an_unclosed_item_ends_with_the_file() -> None:
    assert [i.name for i in items("fn a() {}\nfn b() {\n")] == ["a", "b"]


INTEGRATION = """\
use shapes::area;

#[test]
fn area_of_a_rectangle() {
    assert_eq!(area(3, 4), 12);
}
"""


@pytest.mark.parametrize(
    ("now", "how"),
    [
        (INTEGRATION + "\n#[test]\nfn area_of_a_square() {\n    assert_eq!(area(2, 2), 4);\n}\n",
         "added"),
        (INTEGRATION.replace("use shapes::area;", "use shapes::{area, perimeter};"), "added"),
        ("#![cfg(any())]\n" + INTEGRATION, "edited"),
        (INTEGRATION.replace("#[test]", "#[ignore]\n#[test]"), "edited"),
        (INTEGRATION.replace("{\n    assert_eq", "{\n    return;\n    assert_eq"), "edited"),
        (INTEGRATION.replace("{\n    assert_eq", "{\n    if true { return; }\n    assert_eq"),
         "edited"),
        (INTEGRATION.replace("12", "7"), "edited"),
        ("use shapes::area;\n", "edited"),
        # Comments are not tests (nor, as in Python, a change to one).
        (INTEGRATION.replace("    assert_eq", "    // a comment\n    assert_eq"), "added"),
    ],
    ids=["new-fn", "use", "inner-cfg", "ignore", "return", "if-return", "expectation",
         "deleted", "comment"],
)  # fmt: skip
def test_a_rust_integration_test_is_added_only_when_every_base_item_stays(
    now: str, how: str
) -> None:
    assert change_in_tests("tests/area.rs", INTEGRATION, now) == how


LIB_RS = """\
pub fn area(width: u32, height: u32) -> u32 {
    width + height
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_of_a_rectangle() {
        assert_eq!(area(3, 4), 12);
    }
}
"""
FIXED = LIB_RS.replace("width + height", "width * height")
NEW_TEST = "    #[test]\n    fn square() {\n        assert_eq!(area(2, 2), 4);\n    }\n"


@pytest.mark.parametrize(
    ("now", "how"),
    [
        (FIXED, None),
        (FIXED.replace("    #[test]", NEW_TEST + "\n    #[test]", 1), "added"),
        (FIXED + "\n#[cfg(test)]\nmod more_tests {\n    #[test]\n    fn t() {}\n}\n", "added"),
        (FIXED.replace("    #[test]", "    #[test]\n    #[ignore]"), "edited"),
        (FIXED.replace("#[cfg(test)]", "#[cfg(all(test, any()))]"), "edited"),
        (FIXED.split("#[cfg(test)]")[0], "edited"),
        (FIXED.replace("use super::*;", "use super::area;"), "added"),
    ],
    ids=["code-only", "new-test-fn", "new-module", "ignore", "cfg-off", "module-removed", "use"],
)  # fmt: skip
def test_the_cfg_test_module_of_a_source_file_is_its_tests(now: str, how: str | None) -> None:
    assert not is_test_file("src/lib.rs")
    assert change_in_tests("src/lib.rs", LIB_RS, now) == how


def test_the_base_s_test_module_goes_back_into_the_attempt_s_code() -> None:
    weakened = FIXED.replace("    #[test]", "    #[test]\n    #[ignore]")
    assert with_base_tests("src/lib.rs", LIB_RS, weakened) == FIXED

    removed = FIXED.split("#[cfg(test)]")[0]
    restored = with_base_tests("src/lib.rs", LIB_RS, removed)
    assert restored is not None and "width * height" in restored
    assert cfg_test_modules(restored)[0].text == cfg_test_modules(LIB_RS)[0].text

    new_module = FIXED + "\n#[cfg(test)]\nmod more_tests {\n    #[test]\n    fn t() {}\n}\n"
    assert with_base_tests("src/lib.rs", LIB_RS, new_module) == FIXED

    added_in_a_new_file = "pub fn f() {}\n\n#[cfg(test)]\nmod tests {}\n"
    assert with_base_tests("src/new.rs", None, added_in_a_new_file) == "pub fn f() {}\n"


PYPROJECT = """\
[project]
name = "calc"
version = "0.1.0"

[tool.pytest.ini_options]
pythonpath = ["."]
testpaths = ["tests"]

[tool.ruff]
line-length = 100
"""
WITH_A_PLUGIN = (
    PYPROJECT.replace('version = "0.1.0"', 'version = "0.1.0"\ndependencies = ["attrs"]')
    .replace('testpaths = ["tests"]', 'testpaths = ["tests"]\naddopts = "-p cheat_plugin"')
    .replace("line-length = 100", "line-length = 120")
)


def test_pytest_s_section_of_pyproject_is_test_configuration() -> None:
    assert change_in_tests("pyproject.toml", PYPROJECT, WITH_A_PLUGIN) == "edited"
    other_changes = WITH_A_PLUGIN.replace('\naddopts = "-p cheat_plugin"', "")
    assert change_in_tests("pyproject.toml", PYPROJECT, other_changes) is None
    assert with_base_tests("pyproject.toml", PYPROJECT, WITH_A_PLUGIN) == other_changes

    # A section the base lacks is removed; one the attempt removed comes back.
    without = PYPROJECT.replace('[tool.pytest.ini_options]\npythonpath = ["."]\n', "").replace(
        'testpaths = ["tests"]\n\n', ""
    )
    assert change_in_tests("pyproject.toml", without, PYPROJECT) == "edited"
    assert with_base_tests("pyproject.toml", without, PYPROJECT) == without
    assert change_in_tests("pyproject.toml", PYPROJECT, without) == "edited"
    back = with_base_tests("pyproject.toml", PYPROJECT, without)
    assert back == without.rstrip("\n") + "\n\n" + (
        '[tool.pytest.ini_options]\npythonpath = ["."]\ntestpaths = ["tests"]\n'
    )


@pytest.mark.parametrize(
    ("path", "base", "now"),
    [
        ("setup.cfg", "[metadata]\nname = a\n\n[tool:pytest]\ntestpaths = tests\n",
         "[metadata]\nname = a\n\n[tool:pytest]\ntestpaths = tests\naddopts = -p cheat\n"),
        ("tox.ini", "[tox]\nenvlist = py3\n", "[tox]\nenvlist = py3\n\n[pytest]\naddopts = -x\n"),
        ("Cargo.toml", '[package]\nname = "a"\n\n[dev-dependencies]\n',
         '[package]\nname = "a"\n\n[dev-dependencies]\ncheat = "1"\n'),
        ("crates/a/Cargo.toml", '[package]\nname = "a"\n',
         '[package]\nname = "a"\n\n[target.\'cfg(unix)\'.dev-dependencies.cheat]\nversion = "1"\n'),
        ("pytest.ini", "[pytest]\naddopts = -q\n", "[pytest]\naddopts = -q -p cheat\n"),
        (".cargo/config.toml", None, '[build]\nrustflags = ["--cfg", "cheat"]\n'),
    ],
    ids=["setup.cfg", "tox.ini", "dev-dependencies", "target-dev-dependencies", "pytest.ini",
         "cargo-config"],
)  # fmt: skip
def test_test_configuration_changes_are_edits(path: str, base: str | None, now: str) -> None:
    assert change_in_tests(path, base, now) == "edited"
    assert with_base_tests(path, base, now) == base


def test_the_rest_of_a_cargo_manifest_is_code() -> None:
    base = '[package]\nname = "a"\n\n[dependencies]\n\n[dev-dependencies]\nproptest = "1"\n'
    now = base.replace("[dependencies]\n", '[dependencies]\nserde = "1"\n')
    assert change_in_tests("Cargo.toml", base, now) is None
    assert change_in_tests("Cargo.toml", base, now.replace('proptest = "1"', "")) == "edited"


NESTED = """\
pub mod geometry {
    pub fn area(width: u32, height: u32) -> u32 {
        width + height
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn area_of_a_rectangle() {
            assert_eq!(area(3, 4), 12);
        }
    }
}
"""
NESTED_FIXED = NESTED.replace("width + height", "width * height")


def test_a_test_module_inside_another_module_is_tests_too() -> None:
    assert [m.name for m in cfg_test_modules(NESTED)] == ["geometry::tests"]
    weakened = NESTED_FIXED.replace("(3, 4), 12)", "(3, 4), 7)")
    assert change_in_tests("src/lib.rs", NESTED, weakened) == "edited"
    assert with_base_tests("src/lib.rs", NESTED, weakened) == NESTED_FIXED
    assert change_in_tests("src/lib.rs", NESTED, NESTED_FIXED) is None

    # Removed, it goes back into the module that held it.
    removed = NESTED_FIXED.split("    #[cfg(test)]")[0].rstrip() + "\n}\n"
    assert change_in_tests("src/lib.rs", NESTED, removed) == "edited"
    restored = with_base_tests("src/lib.rs", NESTED, removed)
    assert restored is not None and "width * height" in restored
    assert [(m.name, m.text) for m in cfg_test_modules(restored)] == [
        (m.name, m.text) for m in cfg_test_modules(NESTED)
    ]


@pytest.mark.parametrize(
    ("path", "text", "files"),
    [
        ("src/geometry.rs", "pub fn a() {}\n#[cfg(test)]\nmod checks;\n",
         {"src/geometry/checks.rs", "src/geometry/checks/"}),
        ("src/lib.rs", "#[cfg(test)]\nmod checks;\nmod code;\n", {"src/checks.rs", "src/checks/"}),
        ("src/bin/tool.rs", "#[cfg(test)] mod checks;\n", {"src/bin/checks.rs", "src/bin/checks/"}),
        ("src/lib.rs", "pub mod shapes {\n    #[cfg(test)]\n    mod checks;\n}\n",
         {"src/shapes/checks.rs", "src/shapes/checks/"}),
        ("src/lib.rs", '#[cfg(test)]\n#[path = "../check/all.rs"]\nmod checks;\n',
         {"check/all.rs", "check/all/"}),
        ("src/lib.rs", "#[cfg(test)]\nmod checks {\n    mod helpers;\n}\n",
         {"src/checks/helpers.rs", "src/checks/helpers/"}),
        ("src/lib.rs", "mod code;\n", set()),
    ],
    ids=["sibling-folder", "crate-root", "bin", "inside-a-module", "path", "inside-a-test-module",
         "code"],
)  # fmt: skip
def test_a_test_module_s_own_file_is_found_from_its_declaration(
    path: str, text: str, files: set[str]
) -> None:
    assert rust_tests.module_files(path, text) == files


def test_an_out_of_line_test_module_is_a_test_file() -> None:
    modules = rust_tests.module_files("src/geometry.rs", "#[cfg(test)]\nmod checks;\n")
    for path in ("src/geometry/checks.rs", "src/geometry/checks/helpers.rs", "src/a/tests.rs"):
        assert is_test_file(path, modules), path
    assert not is_test_file("src/geometry/code.rs", modules)
    weakened = INTEGRATION.replace("12", "7")
    assert change_in_tests("src/geometry/checks.rs", INTEGRATION, weakened, modules) == "edited"
    assert with_base_tests("src/geometry/checks.rs", INTEGRATION, weakened, modules) == INTEGRATION


CARGO = '[package]\nname = "shapes"\nversion = "0.1.0"\n\n[dependencies]\n'


@pytest.mark.parametrize(
    ("now", "spliced"),
    [
        (CARGO + '\n[[test]]\nname = "area"\npath = "src/checks.rs"\n', CARGO),
        (CARGO + '\n[[bench]]\nname = "area"\nharness = false\n', CARGO),
        (CARGO + "\n[profile.test]\ndebug-assertions = false\n", CARGO),
        (CARGO + "\n[lib]\ntest = false\n", None),
        (CARGO + "\n[lib]\ndoctest = false\n", None),
        (CARGO.replace('version = "0.1.0"', 'version = "0.1.0"\nautotests = false'), None),
        ('test = [{ name = "area", path = "src/c.rs" }]\n\n' + CARGO, None),
        (CARGO + '\n[[bin]]\nname = "tool"\ntest = false\n', None),
    ],
    ids=["test-target", "bench-target", "test-profile", "lib-test", "lib-doctest", "autotests",
         "inline-test-array", "bin-test"],
)  # fmt: skip
def test_cargo_s_test_targets_and_keys_are_test_configuration(
    now: str, spliced: str | None
) -> None:
    with_a_dependency = now.replace("[dependencies]\n", '[dependencies]\nserde = "1"\n')
    assert change_in_tests("Cargo.toml", CARGO, with_a_dependency) == "edited"
    # What a splice cannot give back as the base had it is the base's whole manifest.
    expected = CARGO.replace("[dependencies]\n", '[dependencies]\nserde = "1"\n')
    assert with_base_tests("Cargo.toml", CARGO, with_a_dependency) == (
        expected if spliced else CARGO
    )


def test_the_files_of_cargo_s_test_targets_are_found() -> None:
    manifest = (
        CARGO + '\n[[test]]\nname = "area"\npath = "checks/area.rs"\n\n[[bench]]\nname = "b"\n'
    )
    found = config_sections.cargo_test_targets("crates/shapes/Cargo.toml", manifest)
    assert found == {"crates/shapes/checks/area.rs"}


DOCUMENTED = """\
//! Shapes.
//!
//! ```
//! assert_eq!(shapes::area(1, 1), 1);
//! ```

/// The area of a rectangle.
///
/// ```
/// assert_eq!(shapes::area(3, 4), 12);
/// ```
///
/// ```text
/// area(3, 4) is 12
/// ```
pub fn area(width: u32, height: u32) -> u32 {
    width + height
}

pub struct Square(u32);

impl Square {
    /** The side.

    ```
    assert_eq!(shapes::Square(2).side(), 2);
    ``` */
    pub fn side(&self) -> u32 {
        self.0
    }
}
"""
DOC_FIXED = DOCUMENTED.replace("width + height", "width * height")


@pytest.mark.parametrize(
    ("now", "how"),
    [
        (DOC_FIXED, None),
        (DOC_FIXED.replace("/// assert_eq!(shapes::area(3, 4), 12);", "/// assert!(true);"),
         "edited"),
        (DOC_FIXED.replace("/// ```\n/// assert_eq!(shapes::area(3, 4)",
                           "/// ```ignore\n/// assert_eq!(shapes::area(3, 4)"), "edited"),
        (DOC_FIXED.replace("//! assert_eq!(shapes::area(1, 1), 1);", "//!"), "edited"),
        (DOC_FIXED.replace("Square(2).side(), 2)", "Square(2).side(), 3)"), "edited"),
        (DOC_FIXED.replace("area(3, 4) is 12", "area(3, 4) is twelve"), None),
        (DOC_FIXED.replace("/// ```text", "/// ```\n/// assert_eq!(shapes::area(2, 2), 4);\n"
                           "/// ```\n///\n/// ```text"), "added"),
    ],
    ids=["code-only", "expectation", "ignored", "crate-doc", "block-comment", "text-block",
         "new-example"],
)  # fmt: skip
def test_doc_test_examples_are_tests(now: str, how: str | None) -> None:
    assert change_in_tests("src/lib.rs", DOCUMENTED, now) == how
    if how == "edited":
        assert with_base_tests("src/lib.rs", DOCUMENTED, now) == DOC_FIXED


def test_a_doc_comment_removed_with_its_examples_gives_the_base_s_file_back() -> None:
    removed = DOC_FIXED.replace("/// The area of a rectangle.\n", "").split("/// ```text")[0]
    removed += "pub fn area(width: u32, height: u32) -> u32 {\n    width * height\n}\n"
    assert change_in_tests("src/lib.rs", DOCUMENTED, removed) == "edited"


INLINE = LIB_RS
SHADOW = "#[cfg(test)]\nmacro_rules! assert_eq {\n    ($a:expr, $b:expr) => {};\n}\n\n"
SWAP = (
    "#[cfg(not(test))]\npub fn area(width: u32, height: u32) -> u32 {\n    width + height\n}\n\n"
    "#[cfg(test)]\npub fn area(width: u32, height: u32) -> u32 {\n    width * height\n}\n"
)
IMPL = """\
pub struct Shape;

impl Shape {
    pub fn area(&self) -> u32 {
        1 + 1
    }

    #[cfg(test)]
    pub fn probe(&self) -> u32 {
        2
    }
}
"""


@pytest.mark.parametrize(
    ("now", "how"),
    [
        (SHADOW + FIXED, "edited"),
        (FIXED.replace("pub fn area(width: u32, height: u32) -> u32 {\n    width * height\n}\n",
                       SWAP), "edited"),
        (FIXED.replace("width * height", "if cfg!(test) { width * height } else { 0 }"),
         "edited"),
        ("#[cfg_attr(test, derive(PartialEq))]\npub struct S;\n\n" + FIXED, "edited"),
        ("#[cfg(not(doctest))]\npub fn f() {}\n\n" + FIXED, "edited"),
    ],
    ids=["macro-shadows-assert", "cfg-not-test-copy", "cfg-macro", "cfg-attr", "doctest"],
)  # fmt: skip
def test_code_that_behaves_differently_under_test_is_a_test_edit(now: str, how: str) -> None:
    assert rust_tests.under_test(LIB_RS) == []
    assert change_in_tests("src/lib.rs", LIB_RS, now) == how
    # Nothing short of the base's file takes it out again.
    assert with_base_tests("src/lib.rs", LIB_RS, now) == LIB_RS


def test_a_fix_beside_existing_test_only_code_is_not_a_test_edit() -> None:
    fixed = IMPL.replace("1 + 1", "2")
    assert change_in_tests("src/lib.rs", IMPL, fixed) is None
    assert change_in_tests("src/lib.rs", IMPL, fixed.replace("        2\n", "        3\n")) == (
        "edited"
    )


# -- Python test modules: what counts as only added ------------------------------------------

PY_BASE = """\
import pytest

from calc import add


@pytest.fixture
def expected():
    return 5


def test_add(expected):
    assert add(2, 3) == expected


class TestAdd:
    def test_zero(self):
        assert add(0, 0) == 0
"""
NEW_TEST = "\n\ndef test_more():\n    assert add(1, 1) == 2\n"


@pytest.mark.parametrize(
    ("now", "how"),
    [
        ("import math\n" + PY_BASE + NEW_TEST, "added"),  # a new import beside a new test
        (
            PY_BASE.replace(
                "        assert add(0, 0) == 0\n",
                "        assert add(0, 0) == 0\n\n    def test_one(self):\n"
                "        assert add(1, 0) == 1\n",
            ),
            "added",  # a new method in an existing class
        ),
        (PY_BASE + "\nfrom fake import add\n", "edited"),  # rebinds what the tests call
        (PY_BASE + "\n\ndef add(a, b):\n    return 5\n", "edited"),
        (PY_BASE + "\n\n@pytest.fixture\ndef expected():\n    return -1\n", "edited"),
        (PY_BASE + "\n\ndef pytest_generate_tests(metafunc):\n    pass\n", "edited"),
        (
            PY_BASE.replace("class TestAdd:", "@pytest.mark.skip\nclass TestAdd:"),
            "edited",  # the class's header changed
        ),
        (
            PY_BASE + "    def setup_method(self):\n        pass\n",
            "edited",  # runs before every existing test of the class
        ),
    ],
    ids=["import", "method", "rebind", "shadow", "fixture", "hook", "class-skip", "setup"],
)
def test_a_python_test_module_is_added_to_only_by_new_tests(now: str, how: str) -> None:
    assert change_in_tests("tests/test_calc.py", PY_BASE, now) == how


def test_every_file_under_a_tests_folder_is_the_tests_own() -> None:
    assert is_test_file("tests/data/expected.json") and is_test_file("pkg/testdata/out.txt")
    assert change_in_tests("tests/data/expected.json", '{"add": 5}\n', '{"add": -1}\n') == "edited"
    assert change_in_tests("tests/data/more.json", None, "{}\n") == "added"
    assert not is_test_file("src/calc.py") and not is_test_file("docs/testing.md")


@pytest.mark.parametrize("name", ["pytest.ini", ".pytest.ini", "pytest.toml", ".pytest.toml"])
def test_every_pytest_configuration_file_is_test_configuration(name: str) -> None:
    assert change_in_tests(name, None, "[pytest]\naddopts = -p cheat\n") == "edited"


# -- doctests ------------------------------------------------------------------------------------

DOCTESTED = '''\
def add(a, b):
    """The sum.

    >>> add(2, 3)
    5
    """
    return a - b
'''


def test_a_doctest_is_a_test_of_the_module_it_lives_in() -> None:
    weakened = DOCTESTED.replace("    5\n", "    -1\n")
    assert change_in_tests("calc.py", DOCTESTED, weakened) == "edited"
    fixed = DOCTESTED.replace("return a - b", "return a + b")
    assert change_in_tests("calc.py", DOCTESTED, fixed) is None
    more = DOCTESTED.replace("    5\n", "    5\n    >>> add(1, 1)\n    2\n")
    assert change_in_tests("calc.py", DOCTESTED, more) == "added"
    # The base's docstring goes back; the attempt's code stays.
    both = weakened.replace("return a - b", "return a + b")
    assert with_base_tests("calc.py", DOCTESTED, both) == fixed


# -- pyproject: what pytest reads, not what the text looks like ---------------------------------

SMALL_PYPROJECT = """\
[project]
name = "calc"

[tool.pytest.ini_options]
pythonpath = ["."]
"""


@pytest.mark.parametrize(
    "now",
    [
        # A decoy copy of the section in a string, the real one behind an indented header.
        SMALL_PYPROJECT.replace(
            '[tool.pytest.ini_options]\npythonpath = ["."]\n',
            'description = """\n[tool.pytest.ini_options]\npythonpath = ["."]\n[x]"""\n'
            ' [tool.pytest.ini_options]\npythonpath = ["."]\naddopts = "-p cheat"\n',
        ),
        SMALL_PYPROJECT + "\n[tool.'pytest'.ini_options.x]\ny = 1\n",
        SMALL_PYPROJECT.replace('name = "calc"', 'name = "calc"\n\n[tool]\npytest.other = 1'),
    ],
    ids=["decoy", "single-quoted", "dotted-key"],
)
def test_pytest_settings_hidden_from_the_text_are_still_edits(now: str) -> None:
    assert change_in_tests("pyproject.toml", SMALL_PYPROJECT, now) == "edited"
    restored = with_base_tests("pyproject.toml", SMALL_PYPROJECT, now)
    assert restored is not None
    import tomllib

    assert tomllib.loads(restored)["tool"]["pytest"] == {"ini_options": {"pythonpath": ["."]}}
