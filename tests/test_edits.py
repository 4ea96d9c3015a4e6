"""Edit formats: the ways models write SEARCH/REPLACE blocks and whole files, read and applied."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from forge.execution.edits import (
    Application,
    EditFormatName,
    EditPolicy,
    SearchReplaceFormat,
    WholeFileFormat,
    apply_answer,
    edit_format,
    write_changes,
)

APP = """\
import os


class Greeter:
    def greet(self, name):
        return "Hello " + name

    def leave(self, name):
        return "Bye " + name
"""
GREET_SEARCH = '    def greet(self, name):\n        return "Hello " + name\n'
GREET_REPLACE = '    def greet(self, name: str) -> str:\n        return f"Hello, {name}!"\n'
GREETED = APP.replace(GREET_SEARCH, GREET_REPLACE)


def make_repo(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_bytes(content.encode())
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"src/app.py": APP})


def apply(answer: str, root: Path, fmt: EditFormatName = "search_replace") -> Application:
    return apply_answer(answer, edit_format(fmt), EditPolicy(root))


def block(search: str, replace: str, size: int = 7) -> str:
    return f"{'<' * size} SEARCH\n{search}{'=' * size}\n{replace}{'>' * size} REPLACE\n"


BLOCK = block(GREET_SEARCH, GREET_REPLACE)
SPACED = f"<<<<<<< SEARCH   \n{GREET_SEARCH}=======  \n{GREET_REPLACE}>>>>>>> REPLACE \n"


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(f"src/app.py\n```python\n{BLOCK}```\n", id="path-before-fence"),
        pytest.param(f"```python\nsrc/app.py\n{BLOCK}```\n", id="path-inside-fence"),
        pytest.param(f"src/app.py\n{BLOCK}", id="no-fence"),
        pytest.param(f"Here it is.\n\nsrc/app.py\n\n```\n{BLOCK}```\nDone.", id="prose-around"),
        pytest.param(f"**src/app.py**\n```python\n{BLOCK}```\n", id="bold-path"),
        pytest.param(f"`src/app.py`:\n```python\n{BLOCK}```\n", id="backticks-and-colon"),
        pytest.param(f"```python\n# src/app.py\n{BLOCK}```\n", id="hash-comment-path"),
        pytest.param(f"// ./src/app.py\n~~~\n{BLOCK}~~~\n", id="slash-comment-tilde-fence"),
        pytest.param(f"File: src/app.py\n```python\n{BLOCK}```\n", id="file-label"),
        pytest.param(
            f"src/app.py\n```python\n{BLOCK}```\n".replace("\n", "\r\n"), id="crlf-answer"
        ),
        pytest.param(f"src/app.py\n{SPACED}", id="trailing-spaces-on-markers"),
    ],
)
def test_the_usual_ways_of_writing_a_block(answer: str, repo: Path) -> None:
    application = apply(answer, repo)
    assert application.ok, application.errors
    assert application.changes == {"src/app.py": GREETED}
    assert application.applied[0].path.endswith("src/app.py")


@pytest.mark.parametrize("size", [5, 6, 7, 8, 9])
def test_markers_from_five_to_nine_characters(size: int, repo: Path) -> None:
    application = apply(f"src/app.py\n{block(GREET_SEARCH, GREET_REPLACE, size)}", repo)
    assert application.changes == {"src/app.py": GREETED}


@pytest.mark.parametrize(
    "heading", ["### Changes", "**Fix**", "Done.", "Updated:", "Next, the greeting:"]
)
def test_a_heading_before_a_block_is_not_a_path(heading: str, repo: Path) -> None:
    first = block("import os\n", "import sys\n")
    answer = f"src/app.py\n{first}\n{heading}\n```\n{BLOCK}```\n"
    application = apply(answer, repo)
    assert application.ok, application.errors
    assert [b.path for b in application.applied] == ["src/app.py", "src/app.py"]


@pytest.mark.parametrize("path", ["Makefile", "`configure`", "Dockerfile:", "src/main.rs."])
def test_files_without_an_extension_are_paths(path: str, tmp_path: Path) -> None:
    application = apply(path + "\n" + block("", "all:\n"), tmp_path)
    name = path.strip("`:.")
    assert application.ok, application.errors
    assert application.changes == {name: "all:\n"}


def test_markers_of_ten_characters_are_not_markers(repo: Path) -> None:
    application = apply(f"src/app.py\n{block(GREET_SEARCH, GREET_REPLACE, 10)}", repo)
    assert not application.ok
    assert "contains no SEARCH/REPLACE block" in application.errors[0].message


def test_several_blocks_share_a_path_line_and_later_files_get_their_own(repo: Path) -> None:
    answer = (
        "src/app.py\n```python\n"
        + block("import os\n", "import os\nimport sys\n")
        + block(GREET_SEARCH, GREET_REPLACE)
        + "```\n\nAnd the leave method:\n\n```python\n"
        + block('        return "Bye " + name\n', '        return f"Bye, {name}."\n')
        + "```\n\nREADME.md\n```markdown\n"
        + block("", "# App\n")
        + "```\n"
    )
    application = apply(answer, repo)
    assert application.ok, application.errors
    assert [(b.index, b.path) for b in application.applied] == [
        (1, "src/app.py"),
        (2, "src/app.py"),
        (3, "src/app.py"),
        (4, "README.md"),
    ]
    assert application.changes["src/app.py"] == GREETED.replace(
        "import os\n", "import os\nimport sys\n"
    ).replace('"Bye " + name', 'f"Bye, {name}."')
    assert application.changes["README.md"] == "# App\n"
    assert application.applied[0].raw.startswith("src/app.py\n```python\n<<<<<<< SEARCH")
    assert application.applied[2].raw.endswith(">>>>>>> REPLACE")


def test_empty_search_creates_a_new_file_in_new_folders(repo: Path) -> None:
    answer = "src/util/text.py\n```python\n" + block("", "def shout(s):\n    return s.upper()\n")
    application = apply(answer + "```\n", repo)
    assert application.ok
    policy = EditPolicy(repo)
    assert write_changes(application, policy) == ["src/util/text.py"]
    assert (repo / "src/util/text.py").read_text() == "def shout(s):\n    return s.upper()\n"
    assert (repo / "src/app.py").read_text() == APP


def test_empty_search_on_an_empty_file_fills_it(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"pkg/__init__.py": ""})
    application = apply("pkg/__init__.py\n" + block("", "VERSION = 1\n"), root)
    assert application.changes == {"pkg/__init__.py": "VERSION = 1\n"}


def test_trailing_whitespace_in_the_file_or_the_search_is_forgiven(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"a.py": "x = 1   \ny = 2\n"})
    application = apply("a.py\n" + block("x = 1\ny = 2  \n", "x = 10\ny = 20\n"), root)
    assert application.changes == {"a.py": "x = 10\ny = 20\n"}


def test_a_block_quoted_without_its_indentation_is_reindented(repo: Path) -> None:
    search = 'def leave(self, name):\n    return "Bye " + name\n'
    replace = (
        'def leave(self, name):\n    if not name:\n        return "Bye"\n    return "Bye " + name\n'
    )
    application = apply("src/app.py\n" + block(search, replace), repo)
    assert application.ok, application.errors
    assert application.changes["src/app.py"].endswith(
        '    def leave(self, name):\n        if not name:\n            return "Bye"\n'
        '        return "Bye " + name\n'
    )


def test_a_block_indented_too_deep_is_reindented(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"a.py": "def f():\n    return 1\n"})
    search = "        def f():\n            return 1\n"
    replace = "        def f():\n            return 2\n"
    application = apply("a.py\n" + block(search, replace), root)
    assert application.changes == {"a.py": "def f():\n    return 2\n"}


def test_a_replacement_already_in_the_file_counts_as_applied(repo: Path) -> None:
    answer = "src/app.py\n" + block('    return "Hi " + name\n', '        return "Bye " + name\n')
    application = apply(answer, repo)
    assert application.ok
    assert application.applied == []
    assert [b.index for b in application.already_present] == [1]
    assert application.changes == {}
    assert write_changes(application, EditPolicy(repo)) == []


def test_a_later_block_edits_what_an_earlier_block_wrote(repo: Path) -> None:
    answer = "src/app.py\n" + block(GREET_SEARCH, GREET_REPLACE)
    answer += block('        return f"Hello, {name}!"\n', '        return f"Hello, {name}!!"\n')
    application = apply(answer, repo)
    assert application.ok, application.errors
    assert 'f"Hello, {name}!!"' in application.changes["src/app.py"]


def test_one_bad_block_means_nothing_is_written(repo: Path) -> None:
    answer = "src/app.py\n" + block(GREET_SEARCH, GREET_REPLACE)
    answer += block("    def missing(self):\n", "    def found(self):\n")
    application = apply(answer, repo)
    assert not application.ok
    assert [b.index for b in application.applied] == [1]
    assert [(e.kind, e.block and e.block.index) for e in application.errors] == [("no_match", 2)]
    with pytest.raises(ValueError):
        write_changes(application, EditPolicy(repo))
    assert (repo / "src/app.py").read_text() == APP


def test_a_refused_block_leaves_no_change_behind(repo: Path) -> None:
    answer = "src/new.py\n" + block("", "# ... rest of the module ...\n")
    answer += "src/gone.py\n" + block("x = 1\n", "x = 2\n")
    application = apply(answer, repo)
    assert [e.kind for e in application.errors] == ["elision", "no_match"]
    assert application.changes == {}


def test_a_crlf_file_stays_crlf(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"a.txt": b"one\r\ntwo\r\nthree\r\n"})
    application = apply("a.txt\n" + block("two\n", "2\nand a half\n"), root)
    write_changes(application, EditPolicy(root))
    assert (root / "a.txt").read_bytes() == b"one\r\n2\r\nand a half\r\nthree\r\n"


def test_a_file_without_a_final_newline_keeps_it_that_way(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"a.txt": "one\ntwo"})
    application = apply("a.txt\n" + block("two\n", "2\n"), root)
    assert application.changes == {"a.txt": "one\n2"}
    whole = apply("a.txt\n```\nuno\ndos\n```\n", root, "whole")
    assert whole.changes == {"a.txt": "uno\ndos"}


def test_elision_markers_already_in_the_original_are_allowed(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"a.py": "def f():\n    # ... more later ...\n    pass\n"})
    search = "def f():\n    # ... more later ...\n"
    application = apply("a.py\n" + block(search, "def g():\n    # ... more later ...\n"), root)
    assert application.ok, application.errors


def test_code_that_looks_like_an_ellipsis_is_not_elision(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"p.py": "", "s.js": ""})
    stub = "class P(Protocol):\n    def run(self) -> None:\n        ...\n"
    spread = "const next = {\n  ...state,\n  done: true,\n};\n"
    answer = "p.py\n" + block("", stub) + "s.js\n" + block("", spread)
    application = apply(answer, root)
    assert application.ok, application.errors
    assert application.changes == {"p.py": stub, "s.js": spread}


def test_whole_files_replace_and_create(repo: Path) -> None:
    answer = (
        "Here are the files.\n\nsrc/app.py\n```python\nprint('hello')\n```\n\n"
        "**docs/guide.md**\n````markdown\n# Guide\n\n```sh\nmake\n```\n````\n"
    )
    application = apply(answer, repo, "whole")
    assert application.ok, application.errors
    assert application.changes == {
        "src/app.py": "print('hello')\n",
        "docs/guide.md": "# Guide\n\n```sh\nmake\n```\n",
    }
    assert [b.search for b in application.applied] == [None, None]
    assert write_changes(application, EditPolicy(repo)) == ["docs/guide.md", "src/app.py"]
    assert (repo / "docs/guide.md").read_text().endswith("```\n")


def test_whole_file_with_nested_fences_under_three_backticks(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"README.md": "old\n"})
    content = "# Tool\n\n```python\nimport tool\n```\n\nMore text.\n"
    application = apply(f"README.md\n```markdown\n{content}```\n", root, "whole")
    assert application.changes == {"README.md": content}


def test_whole_file_keeps_crlf_and_an_identical_file_is_already_present(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"a.txt": b"one\r\ntwo\r\n"})
    application = apply("a.txt\n```\none\n2\n```\n", root, "whole")
    assert application.changes == {"a.txt": "one\r\n2\r\n"}
    same = apply("a.txt\n```\none\ntwo\n```\n", root, "whole")
    assert same.ok and same.changes == {} and len(same.already_present) == 1


def test_extra_blocks_from_an_earlier_answer_are_applied_first(repo: Path) -> None:
    first = apply(
        "src/app.py\n"
        + block(GREET_SEARCH, GREET_REPLACE)
        + block("    def gone(self):\n", "    def back(self):\n"),
        repo,
    )
    assert not first.ok
    good = first.applied
    # The re-ask repairs block 2, which edits what block 1 wrote.
    repaired = "src/app.py\n" + block(
        '        return f"Hello, {name}!"\n', '        return f"Hi, {name}!"\n'
    )
    application = apply_answer(repaired, SearchReplaceFormat(), EditPolicy(repo), extra_blocks=good)
    assert application.ok, application.errors
    assert application.applied == [*good, *application.applied[1:]]
    assert application.changes["src/app.py"] == GREETED.replace("Hello, ", "Hi, ")


def test_a_block_given_twice_is_applied_once(repo: Path) -> None:
    answer = "src/app.py\n" + block("import os\n", "import os\nimport sys\n")
    first = apply(answer + "src/app.py\n" + block("    def gone(self):\n", "\n"), repo)
    kept = first.applied + first.applied
    application = apply_answer(answer, SearchReplaceFormat(), EditPolicy(repo), extra_blocks=kept)
    assert application.ok
    assert application.changes["src/app.py"].count("import sys") == 1


def test_write_changes_keeps_the_file_mode_and_leaves_no_temporary_file(repo: Path) -> None:
    script = repo / "run.sh"
    script.write_text("echo hi\n")
    script.chmod(0o755)
    application = apply("run.sh\n" + block("echo hi\n", "echo hello\n"), repo)
    assert write_changes(application, EditPolicy(repo)) == ["run.sh"]
    assert script.read_text() == "echo hello\n"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert sorted(os.listdir(repo)) == ["run.sh", "src"]


def test_each_format_teaches_its_own_markers() -> None:
    search_replace = edit_format("search_replace").instructions()
    for marker in ("<<<<<<< SEARCH", "=======", ">>>>>>> REPLACE", "```"):
        assert marker in search_replace
    whole = edit_format("whole").instructions()
    assert "```" in whole and "````" in whole and "SEARCH" not in whole
    assert isinstance(edit_format("whole"), WholeFileFormat)
    assert edit_format("search_replace").name == "search_replace"


def test_the_example_in_each_format_parses() -> None:
    for fmt in (SearchReplaceFormat(), WholeFileFormat()):
        blocks, errors = fmt.parse(fmt.instructions())
        assert errors == [] and [b.path for b in blocks] == ["src/greet.py"]


def test_a_failed_block_is_shown_against_the_file_as_the_whole_answer_leaves_it(
    tmp_path: Path,
) -> None:
    """The repair is applied after every good block of the answer, later ones included, so the
    lines quoted for the failed block must already carry their changes."""
    from forge.execution.prompt import repair_prompt

    root = make_repo(tmp_path, {"m.py": "def f():\n    a = 1\n    b = 2\n    return a + b\n"})
    answer = (
        "m.py\n<<<<<<< SEARCH\n    a = 9\n=======\n    a = 10\n>>>>>>> REPLACE\n\n"
        "m.py\n<<<<<<< SEARCH\n    b = 2\n=======\n    b = 3\n>>>>>>> REPLACE\n"
    )
    application = apply_answer(answer, SearchReplaceFormat(), EditPolicy(root=root))

    assert [b.index for b in application.applied] == [2]
    prompt = repair_prompt(application.errors, root)
    assert "b = 3" in prompt and "b = 2" not in prompt
    fix = "m.py\n<<<<<<< SEARCH\n    a = 1\n    b = 3\n=======\n    a = 10\n    b = 3\n"
    fix += ">>>>>>> REPLACE\n"
    repaired = apply_answer(
        fix, SearchReplaceFormat(), EditPolicy(root=root), extra_blocks=application.applied
    )
    assert repaired.ok
    assert repaired.changes["m.py"] == "def f():\n    a = 10\n    b = 3\n    return a + b\n"
