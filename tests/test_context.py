"""Context selection: which files' text a task's prompt carries, within its token budget."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from forge.execution.context import SelectedContext, SymbolIndex, select_context
from forge.validation.tree import list_files
from tests.test_validate_python import make_repo

CONFIG_PY = '''\
"""Reading the configuration."""

from pathlib import Path

DEFAULT_NAME = "app.toml"


class Config:
    """The settings, by key."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get_value(self, key: str) -> str:
        """One setting."""
        return self.values[key]


def parse_config(
    path: Path,
) -> Config:
    """Read a config file of key=value lines."""
    pairs = [line.split("=", 1) for line in path.read_text().splitlines()]
    return Config(dict(pairs))


def _strip(text: str) -> str:
    return text.strip()
'''
APP_PY = """\
from pkg.config import parse_config


def main(path: str) -> None:
    config = parse_config(path)
    print(config.get_value("name"))
"""
REPORT_PY = """\
from pkg.config import Config


def describe(config: Config) -> str:
    return ", ".join(sorted(config.values))
"""
BROKEN_PY = """\
def ok_function(x):
    return x


def broken(:
    pass


class StillFound:
    def method(self):
        return 1
"""
PYTHON_REPO = {
    "pkg/__init__.py": "",
    "pkg/config.py": CONFIG_PY,
    "pkg/app.py": APP_PY,
    "pkg/report.py": REPORT_PY,
    "pkg/broken.py": BROKEN_PY,
    "vendor/pkg/config.py": "# an older copy\n",
    "docs/notes.md": "Notes about the project.\n",
}

LEXER_RS = """\
/// A piece of the source text.
#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    Number(i64),
    Plus,
}

/// Splits source text into tokens.
pub struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a str) -> Self {
        Lexer { src, pos: 0 }
    }

    /// The next token, or None at the end.
    pub fn next_token(&mut self) -> Option<Token> {
        self.skip_spaces();
        let rest = &self.src[self.pos..];
        let first = rest.chars().next()?;
        self.pos += first.len_utf8();
        if first == '+' {
            Some(Token::Plus)
        } else {
            Some(Token::Number(first.to_digit(10)? as i64))
        }
    }

    fn skip_spaces(&mut self) {
        while self.src[self.pos..].starts_with(' ') {
            self.pos += 1;
        }
    }
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        self.next_token()
    }
}

pub fn tokenize(src: &str) -> Vec<Token> {
    Lexer::new(src).collect()
}
"""
PARSER_RS = """\
use crate::lexer::{Lexer, Token};

#[derive(Debug)]
pub struct ParseError {
    pub position: usize,
}

pub(crate) fn parse_sum(src: &str) -> Result<i64, ParseError> {
    let mut total = 0;
    for token in Lexer::new(src) {
        if let Token::Number(n) = token {
            total += n;
        }
    }
    Ok(total)
}
"""
RUST_REPO = {
    "Cargo.toml": '[package]\nname = "calc"\nversion = "0.1.0"\nedition = "2021"\n',
    "src/lib.rs": "pub mod lexer;\npub mod parser;\n",
    "src/lexer.rs": LEXER_RS,
    "src/parser.rs": PARSER_RS,
}


def python_repo(tmp_path: Path, extra: dict[str, str] | None = None) -> Path:
    return make_repo(tmp_path / "py", {**PYTHON_REPO, **(extra or {})})


def rust_repo(tmp_path: Path, extra: dict[str, str] | None = None) -> Path:
    return make_repo(tmp_path / "rs", {**RUST_REPO, **(extra or {})})


def paths(context: SelectedContext) -> list[str]:
    return [f.path for f in context.files]


def by_path(context: SelectedContext) -> dict[str, str]:
    """Each chosen file's reason, by path."""
    return {f.path: f.reason for f in context.files}


def numbers(text: str) -> list[int]:
    return [int(n.replace(",", "")) for n in re.findall(r"\d[\d,]*", text)]


def test_named_files_are_included_whole(tmp_path: Path) -> None:
    root = python_repo(tmp_path)
    context = select_context(
        root,
        "Log the config path in pkg/app.py when it is read.",
        named_files=["pkg/config.py"],
        budget_tokens=8_000,
    )
    chosen = {f.path: f for f in context.files}
    assert paths(context)[:2] == ["pkg/config.py", "pkg/app.py"]
    assert chosen["pkg/config.py"].text == CONFIG_PY
    assert chosen["pkg/config.py"].reason == "named in the task"
    assert not chosen["pkg/config.py"].summary
    assert chosen["pkg/app.py"].text == APP_PY
    rendered = context.render()
    assert f"pkg/config.py\n```python\n{CONFIG_PY}```" in rendered
    assert "Left out" not in rendered
    assert context.tokens <= context.budget_tokens


def test_a_file_named_by_its_basename_resolves_to_the_shortest_tracked_path(
    tmp_path: Path,
) -> None:
    root = python_repo(tmp_path)
    context = select_context(
        root, "The parser in config.py drops blank lines.", budget_tokens=8_000
    )
    assert paths(context)[0] == "pkg/config.py"
    assert "vendor/pkg/config.py" not in paths(context)


def test_a_named_file_that_does_not_exist_is_reported_as_left_out(tmp_path: Path) -> None:
    root = python_repo(tmp_path)
    context = select_context(
        root,
        "Add a cache for parsed configs.",
        named_files=["pkg/cache.py", "pkg/config.py"],
        budget_tokens=8_000,
    )
    assert [(note.path, note.reason) for note in context.left_out] == [
        ("pkg/cache.py", "not found in the repository (the task may create it)")
    ]
    assert "pkg/config.py" in paths(context)
    rendered = context.render()
    assert rendered.rstrip().endswith(
        "Left out of this context:\n"
        "- pkg/cache.py: not found in the repository (the task may create it)"
    )


def test_a_snake_case_symbol_brings_in_the_file_that_defines_it(tmp_path: Path) -> None:
    root = python_repo(tmp_path)
    context = select_context(root, "Make parse_config skip comment lines.", budget_tokens=8_000)
    assert paths(context)[0] == "pkg/config.py"
    assert by_path(context)["pkg/config.py"] == "defines `parse_config`"


def test_a_rust_method_named_with_its_type_brings_in_its_file(tmp_path: Path) -> None:
    root = rust_repo(tmp_path)
    context = select_context(
        root, "`Lexer::next_token` panics on an empty string.", budget_tokens=8_000
    )
    assert paths(context)[0] == "src/lexer.rs"
    assert by_path(context)["src/lexer.rs"] == "defines `Lexer::next_token`"


def test_a_camel_case_struct_brings_in_its_file(tmp_path: Path) -> None:
    root = rust_repo(tmp_path)
    context = select_context(
        root, "ParseError should also carry the offending text.", budget_tokens=8_000
    )
    assert paths(context)[0] == "src/parser.rs"
    assert by_path(context)["src/parser.rs"] == "defines `ParseError`"


def test_a_big_named_file_that_does_not_fit_is_summarised_with_the_numbers(
    tmp_path: Path,
) -> None:
    functions = "".join(
        f"pub fn step_{i}(x: i64) -> i64 {{\n" + "    let y = x + 1;\n" * 20 + "    y\n}\n\n"
        for i in range(40)
    )
    root = rust_repo(tmp_path, {"src/steps.rs": functions})
    context = select_context(
        root, "Rename the steps.", named_files=["src/steps.rs"], budget_tokens=2_000
    )
    (steps,) = [f for f in context.files if f.path == "src/steps.rs"]
    assert steps.summary
    assert "pub fn step_39(x: i64) -> i64" in steps.text
    assert "let y = x + 1;" not in steps.text
    whole, left = numbers(steps.reason)
    assert steps.reason.startswith("named in the task; summarised: ")
    assert steps.reason.endswith(f"{whole:,} tokens is over the {left:,}-token budget left")
    assert whole > left
    assert "src/steps.rs (summary: public signatures only" in context.render()
    assert context.tokens <= 2_000


def test_a_big_named_file_without_a_summary_is_left_out_and_the_render_says_so(
    tmp_path: Path,
) -> None:
    rows = "".join(f'  {{"id": {i}, "name": "row number {i}"}},\n' for i in range(600))
    root = python_repo(tmp_path, {"data/fixtures.json": f"[\n{rows}]\n"})
    context = select_context(
        root,
        "Check data/fixtures.json against parse_config.",
        budget_tokens=3_000,
    )
    assert "data/fixtures.json" not in paths(context)
    assert "pkg/config.py" in paths(context)
    (note,) = context.left_out
    assert note.path == "data/fixtures.json"
    whole, left = numbers(note.reason)
    assert note.reason == (
        f"named in the task, but {whole:,} tokens is over the {left:,}-token budget left"
    )
    assert whole > left
    assert left <= 3_000
    assert f"Left out of this context:\n- data/fixtures.json: {note.reason}" in context.render()
    assert context.tokens <= 3_000


def test_neighbours_join_a_small_context_strongest_first(tmp_path: Path) -> None:
    root = python_repo(tmp_path)
    context = select_context(root, "Tidy up.", named_files=["pkg/config.py"], budget_tokens=8_000)
    assert paths(context) == ["pkg/config.py", "pkg/app.py", "pkg/report.py"]
    assert by_path(context)["pkg/app.py"] == "uses `parse_config` from pkg/config.py"
    assert by_path(context)["pkg/report.py"] == "uses `Config` from pkg/config.py"
    assert context.left_out == ()


def test_neighbours_never_take_the_context_over_the_budget(tmp_path: Path) -> None:
    root = python_repo(tmp_path)
    files = list_files(root)
    index = SymbolIndex.build(root, files)
    seen = set()
    for budget in range(150, 400, 5):
        context = select_context(
            root,
            "Tidy up.",
            named_files=["pkg/config.py"],
            budget_tokens=budget,
            files=files,
            index=index,
        )
        assert context.tokens <= budget
        assert context.left_out == ()  # neighbours that do not fit are not listed
        seen.add(tuple(paths(context)))
    assert seen == {
        ("pkg/config.py",),
        ("pkg/config.py", "pkg/report.py"),  # the smaller neighbour fits where app.py does not
        ("pkg/config.py", "pkg/app.py"),
        ("pkg/config.py", "pkg/app.py", "pkg/report.py"),
    }


def test_neighbours_stop_at_a_handful_of_files(tmp_path: Path) -> None:
    users = {
        f"pkg/user_{i}.py": f"from pkg.config import parse_config\n\nX_{i} = parse_config\n"
        for i in range(8)
    }
    root = python_repo(tmp_path, users)
    context = select_context(root, "Tidy up.", named_files=["pkg/config.py"], budget_tokens=20_000)
    assert len(context.files) == 5
    assert context.files[0].path == "pkg/config.py"


def test_summarized_context_gives_the_module_tree_and_signatures_not_bodies(
    tmp_path: Path,
) -> None:
    root = rust_repo(tmp_path)
    context = select_context(
        root,
        "Plan how to split the lexer into a scanner and a token stream.",
        named_files=["src/lexer.rs"],
        budget_tokens=4_000,
        summarize=True,
    )
    rendered = context.render()
    assert context.tree == "src/\n  lexer.rs  lib.rs  parser.rs"
    assert rendered.startswith("Repository layout (source files):\n```text\nsrc/\n")
    lexer = context.files[0]
    assert (lexer.path, lexer.summary, lexer.reason) == ("src/lexer.rs", True, "named in the task")
    assert lexer.text == (
        "/// A piece of the source text.\n"
        "pub enum Token\n"
        "/// Splits source text into tokens.\n"
        "pub struct Lexer<'a>\n"
        "impl<'a> Lexer<'a>\n"
        "    pub fn new(src: &'a str) -> Self\n"
        "    /// The next token, or None at the end.\n"
        "    pub fn next_token(&mut self) -> Option<Token>\n"
        "impl Iterator for Lexer<'_>\n"
        "    fn next(&mut self) -> Option<Token>\n"
        "pub fn tokenize(src: &str) -> Vec<Token>"
    )
    assert "let rest = &self.src[self.pos..];" not in rendered
    assert "skip_spaces" not in rendered
    assert "src/lexer.rs (summary: public signatures only, bodies left out)" in rendered
    # The most referenced other file comes next, summarised too.
    assert [(f.path, f.summary) for f in context.files[1:]] == [("src/parser.rs", True)]
    assert context.tokens <= 4_000


def test_python_summaries_carry_the_first_docstring_line(tmp_path: Path) -> None:
    root = python_repo(tmp_path)
    context = select_context(
        root,
        "Plan a config format change.",
        named_files=["pkg/config.py"],
        budget_tokens=4_000,
        summarize=True,
    )
    config = context.files[0]
    assert config.summary
    assert config.text == (
        '"""Reading the configuration."""\n'
        'DEFAULT_NAME = "app.toml"\n'
        "class Config\n"
        '    """The settings, by key."""\n'
        "    def __init__(self, values: dict[str, str]) -> None\n"
        "    def get_value(self, key: str) -> str\n"
        '        """One setting."""\n'
        "def parse_config(path: Path) -> Config\n"
        '    """Read a config file of key=value lines."""'
    )
    assert "path.read_text().splitlines()" not in context.render()
    assert "pkg/\n  __init__.py  app.py  broken.py  config.py  report.py\n" in context.tree


def test_a_python_file_with_a_syntax_error_is_still_indexed(tmp_path: Path) -> None:
    root = python_repo(tmp_path)
    index = SymbolIndex.build(root, list_files(root))
    [still_found] = index.definitions("StillFound")
    assert (still_found.path, still_found.line, still_found.kind) == ("pkg/broken.py", 9, "class")
    [method] = index.definitions("StillFound.method")
    assert (method.line, method.kind, method.signature) == (10, "method", "def method(self)")
    assert [d.symbol for d in index.defined_in("pkg/broken.py")] == [
        "ok_function",
        "broken",
        "StillFound",
        "method",
    ]
    context = select_context(root, "Fix `StillFound`.", budget_tokens=4_000, index=index)
    assert by_path(context)["pkg/broken.py"] == "defines `StillFound`"


def test_python_definitions_come_from_the_parser(tmp_path: Path) -> None:
    root = python_repo(tmp_path)
    index = SymbolIndex.build(root, list_files(root))
    [parse] = index.definitions("parse_config")
    assert (parse.path, parse.line, parse.kind, parse.public) == (
        "pkg/config.py",
        19,
        "function",
        True,
    )
    assert parse.signature == "def parse_config(path: Path) -> Config"
    [private] = index.definitions("_strip")
    assert not private.public
    [constant] = index.definitions("DEFAULT_NAME")
    assert (constant.kind, constant.signature) == ("const", 'DEFAULT_NAME = "app.toml"')
    assert [d.path for d in index.definitions("Config.get_value")] == ["pkg/config.py"]
    assert [d.path for d in index.definitions("config.parse_config")] == ["pkg/config.py"]
    assert index.references("pkg/config.py") == 2
    assert index.neighbours("pkg/config.py") == [("pkg/app.py", 2), ("pkg/report.py", 2)]


def test_rust_impl_methods_are_indexed_with_their_type(tmp_path: Path) -> None:
    root = rust_repo(tmp_path)
    index = SymbolIndex.build(root, list_files(root))
    [method] = index.definitions("Lexer::next_token")
    assert (method.symbol, method.path, method.line, method.kind, method.public) == (
        "next_token",
        "src/lexer.rs",
        20,
        "method",
        True,
    )
    assert method.signature == "pub fn next_token(&mut self) -> Option<Token>"
    assert index.definitions("next_token") == [method]
    assert index.definitions("Lexer.next_token") == [method]
    assert index.definitions("Parser::next_token") == []
    found = {(d.symbol, d.kind, d.public) for d in index.defined_in("src/lexer.rs")}
    assert {
        ("Token", "enum", True),
        ("Lexer", "struct", True),
        ("Lexer", "impl", True),
        ("skip_spaces", "method", False),
        ("next", "method", True),
        ("tokenize", "function", True),
    } <= found
    [parse_sum] = index.definitions("parse_sum")
    assert parse_sum.signature == "pub(crate) fn parse_sum(src: &str) -> Result<i64, ParseError>"
    assert index.neighbours("src/parser.rs")[0] == ("src/lexer.rs", 3)


DETERMINISM_SCRIPT = """
import sys
from pathlib import Path
from forge.execution.context import select_context
context = select_context(Path(sys.argv[1]), "Tidy up parse_config.", named_files=["app.py"],
                         budget_tokens=6000)
print(context.render())
print([(f.path, f.reason) for f in context.files])
"""


def test_the_same_inputs_give_the_same_context_whatever_the_hash_seed(tmp_path: Path) -> None:
    users = {f"pkg/user_{i}.py": "from pkg.config import Config, parse_config\n" for i in range(6)}
    root = python_repo(tmp_path, users)
    outputs = []
    for seed in ("1", "2", "3"):
        done = subprocess.run(
            [sys.executable, "-c", DETERMINISM_SCRIPT, str(root)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
        )
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1] == outputs[2]
    assert "pkg/user_0.py" in outputs[0]


def test_go_and_typescript_definitions_are_found_by_the_line_scanner(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "mixed",
        {
            "lexer/lexer.go": (
                "package lexer\n\ntype Lexer struct {\n\tsrc string\n}\n\n"
                "func (l *Lexer) Next() (Token, error) {\n\treturn Token{}, nil\n}\n"
            ),
            "web/tokens.ts": (
                'import { Token } from "./token";\n\n'
                "export async function tokenize(src: string): Promise<Token[]> {\n"
                "  return [];\n}\n"
            ),
        },
    )
    index = SymbolIndex.build(root, list_files(root))
    [next_] = index.definitions("Lexer.Next")
    assert (next_.path, next_.line, next_.kind) == ("lexer/lexer.go", 7, "method")
    assert next_.signature == "func (l *Lexer) Next() (Token, error)"
    [tokenize] = index.definitions("tokenize")
    assert tokenize.signature == ("export async function tokenize(src: string): Promise<Token[]>")


def test_the_index_sees_a_file_as_it_is_now_after_an_earlier_task_indexed_it(
    tmp_path: Path,
) -> None:
    """Scans are kept between tasks by path and text: an unchanged file is not scanned again,
    a changed one is."""
    old = "def old_name():\n    pass\n"
    root = make_repo(tmp_path / "repo", {"pkg/__init__.py": "", "pkg/a.py": old})
    files = list_files(root)
    before = SymbolIndex.build(root, files)
    assert [d.path for d in before.definitions("old_name")] == ["pkg/a.py"]

    (root / "pkg/a.py").write_text("def new_name():\n    pass\n")
    after = SymbolIndex.build(root, files)
    assert after.definitions("old_name") == []
    assert [d.path for d in after.definitions("new_name")] == ["pkg/a.py"]
