"""Milestone files: Markdown checklists and TOML, ids, dependencies, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forge.planning.milestone import MilestoneError, load_milestone, parse_markdown, parse_toml
from tests.conftest import run_forge

MARKDOWN = """# Milestone: empty input

Some prose that is not a task.

- [x] lexer: Tokenise comments (files: src/lexer.rs)
- [ ] parser: Accept empty input (files: src/parse.rs, src/ast.rs) (after: lexer)
  The parser panics on an empty file; it should return an empty module.
  Keep the public signature.
- [ ] Update the CHANGELOG (after: parser)
* [ ] Update the changelog
- [ ] docs: Document empty modules (after: parser, lexer) (type: docs) (tier: cheap)

Notes at the end are not a description.
"""

TOML = """
title = "empty input"

[[task]]
id = "lexer"
title = "Tokenise comments"
files = ["src/lexer.rs"]
done = true

[[task]]
title = "Accept empty input"
description = "The parser panics on an empty file."
files = ["src/parse.rs"]
after = ["lexer"]
type = "bug_fix"
tier = "free"
"""


def test_markdown_tasks_ids_files_after_and_descriptions() -> None:
    plan = parse_markdown(MARKDOWN, "m.md")
    assert [t.id for t in plan.tasks] == [
        "lexer",
        "parser",
        "update-the-changelog",
        "update-the-changelog-2",
        "docs",
    ]
    lexer, parser, changelog, _, docs = plan.tasks
    assert lexer.done and not parser.done
    assert parser.files == ("src/parse.rs", "src/ast.rs")
    assert parser.after == ("lexer",)
    assert parser.title == "Accept empty input"
    assert parser.description == (
        "The parser panics on an empty file; it should return an empty module.\n"
        "Keep the public signature."
    )
    assert "Keep the public signature." in parser.text
    assert changelog.description == ""
    assert (docs.type, docs.tier, docs.after) == ("docs", "cheap", ("parser", "lexer"))
    assert [t.id for t in plan.pending()] == [
        "parser",
        "update-the-changelog",
        "update-the-changelog-2",
        "docs",
    ]
    assert ("parser", "update-the-changelog") in plan.edges()


def test_slug_ids_are_stable_and_explicit_ids_keep_their_names() -> None:
    first = parse_markdown(MARKDOWN, "m.md")
    again = parse_markdown(MARKDOWN + "- [ ] lexer-2: Something else\n", "m.md")
    assert [t.id for t in first.tasks] == [t.id for t in again.tasks][:5]
    clash = parse_markdown("- [ ] Lexer\n- [ ] lexer: The real lexer\n", "m.md")
    assert [t.id for t in clash.tasks] == ["lexer-2", "lexer"]


def test_toml_tasks_with_type_tier_and_done() -> None:
    plan = parse_toml(TOML, "m.toml")
    assert plan.title == "empty input"
    lexer, parser = plan.tasks
    assert lexer.done
    assert parser.id == "accept-empty-input"
    assert (parser.type, parser.tier, parser.after) == ("bug_fix", "free", ("lexer",))
    assert parser.description == "The parser panics on an empty file."


def test_dependency_order_puts_every_task_after_what_it_needs() -> None:
    plan = parse_markdown(
        "- [ ] c: third (after: b)\n- [ ] a: first\n- [ ] b: second (after: a)\n", "m.md"
    )
    assert [t.id for t in plan.in_order()] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "- [ ] a: one\n- [ ] b: two (after: a, zz)\n",
            "task 'b' (line 2) comes after unknown id 'zz'",
        ),
        ("- [ ] a: one\n- [ ] a: again\n", "duplicate task id 'a' (line 1 and line 2)"),
        (
            "- [ ] a: one (after: c)\n- [ ] b: two (after: a)\n- [ ] c: three (after: b)\n",
            "dependency cycle: a -> c -> b -> a",
        ),
        ("- [ ] a: one (after: a)\n", "dependency cycle: a -> a"),
        ("just prose\n", "no tasks found"),
    ],
)
def test_markdown_errors_name_the_ids(text: str, message: str) -> None:
    with pytest.raises(MilestoneError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_markdown(text, "m.md")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[task]]\ntitle = "x"\nafter = ["nope"]\n', "comes after unknown id 'nope'"),
        ('[[task]]\nid = "a"\ntitle = "x"\n[[task]]\nid = "a"\ntitle = "y"\n', "duplicate"),
        ('[[task]]\nid = "a"\ntitel = "x"\n', "unknown key 'titel'; did you mean 'title'?"),
        ('[[task]]\nid = "a"\n', "title is required"),
        ('[[task]]\ntitle = "x"\ntype = "chore"\n', "unknown type 'chore'"),
        ('[[task]]\ntitle = "x"\nfiles = "a.rs"\n', "files must be a list of strings"),
        ("[[task]\n", "invalid TOML"),
    ],
)
def test_toml_errors(text: str, message: str) -> None:
    with pytest.raises(MilestoneError, match=message.replace("(", r"\(").replace("?", r"\?")):
        parse_toml(text, "m.toml")


def test_load_milestone_picks_the_format_by_suffix(tmp_path: Path) -> None:
    (tmp_path / "m.toml").write_text(TOML)
    (tmp_path / "m.md").write_text(MARKDOWN)
    assert len(load_milestone(tmp_path / "m.toml").tasks) == 2
    assert len(load_milestone(tmp_path / "m.md").tasks) == 5
    with pytest.raises(MilestoneError, match="cannot read the milestone file"):
        load_milestone(tmp_path / "missing.md")


def test_route_milestone_totals_the_estimate(tmp_path: Path) -> None:
    (tmp_path / "m.md").write_text(MARKDOWN)
    done = run_forge("route", "--milestone", str(tmp_path / "m.md"), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    tasks = {t["id"]: t for t in report["tasks"]}
    assert tasks["lexer"]["done"] and tasks["lexer"]["route"] is None
    assert tasks["parser"]["route"]["analysis"]["type"] == "bug_fix"
    assert tasks["docs"]["route"]["route"]["pinned"] == "tier"
    assert tasks["docs"]["route"]["route"]["tier"] == "cheap"
    assert tasks["docs"]["route"]["analysis"]["type_reasons"] == ["set in the milestone"]
    assert set(report["total"]) >= {"first_attempts_usd", "worst_case_usd", "budget_left_usd"}

    text = run_forge("route", "--milestone", str(tmp_path / "m.md"), cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "Total for 4 tasks: first attempts" in text.stdout


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("- [ ] a: one (after: c)\n- [ ] b: two (after: a)\n- [ ] c: x (after: b)\n", "a -> c"),
        ("- [ ] a: one (after: ghost)\n", "'ghost'"),
        ("- [ ] a: one\n- [ ] a: two\n", "duplicate task id 'a'"),
        ("- [ ] a: one (tier: platinum)\n", "task 'a' (line 1): unknown tier 'platinum'"),
    ],
)
def test_bad_milestones_exit_2_naming_the_ids(tmp_path: Path, text: str, named: str) -> None:
    (tmp_path / "bad.md").write_text(text)
    done = run_forge("route", "--milestone", str(tmp_path / "bad.md"), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("forge: error: ")
    assert named in done.stderr
    assert "Traceback" not in done.stderr


def test_a_task_may_be_allowed_to_edit_existing_tests() -> None:
    markdown = parse_markdown("- [ ] a: Rework the checks (tests: edit)\n- [ ] b: Fix it\n")
    assert [t.edit_tests for t in markdown.tasks] == [True, False]
    assert markdown.tasks[0].title == "Rework the checks"
    toml = parse_toml('[[task]]\ntitle = "Rework"\ntests = "edit"\n[[task]]\ntitle = "Fix"\n')
    assert [t.edit_tests for t in toml.tasks] == [True, False]
    with pytest.raises(MilestoneError, match="tests must be one of keep, edit"):
        parse_markdown("- [ ] a: Rework (tests: rewrite)\n")
