"""Every table forge draws reads at 60, 80 and 120 columns: the fan-out's live and final tables,
run-milestone's live table and report, and `forge logs`, `models`, `cost`, `stats`, `runs`,
`route` and `validate`.

At a width a table cannot fill, its least important columns leave (and the table says which);
what stays is whole: model names, costs and ids are never cut into `…`, and an answer, a reason
or an error has at least 30 characters a line. Wider terminals get more columns and more text.
Finished tables go through the real CLI with `COLUMNS` set, as on a pipe; live tables through a
pseudo-terminal of that size.
"""

from __future__ import annotations

import fcntl
import io
import itertools
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console

from forge.commands.tables import Column, FittedTable
from forge.fanout.report import usd
from forge.testing.fake_provider import FakeProvider, Fault, Reply
from tests.conftest import run_forge
from tests.test_fanout import fanout_config, write
from tests.test_run_milestone import AUTHOR, FIX_ADD, python_repo
from tests.test_validate_python import make_repo

WIDTHS = (60, 80, 120)
TEXT_WIDTH = 30  # the least an answer, a reason or an error is given a line, at any width
ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
REDRAW = re.compile(r"\r(?:\x1b\[2K\x1b\[1A)+\x1b\[2K")  # Rich Live going back over a frame


# -- reading a drawn table back ----------------------------------------------------------------


@dataclass
class Drawn:
    """One column of a table as drawn: its header and its lines of text, top to bottom."""

    header: str
    lines: list[str]
    width: int  # characters of text a line, padding left out

    def values(self) -> str:
        """Every value in the column with its wrapping undone and spaces left out."""
        return "".join("".join(self.lines).split())

    def prose(self) -> str:
        return " ".join(line.strip() for line in self.lines if line.strip())


def drawn(output: str, title: str) -> dict[str, Drawn]:
    """The boxed table under the line that starts with `title`, by header."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    top = next(i for i in range(start, len(lines)) if lines[i].startswith("┏"))
    head = list(itertools.takewhile(lambda line: line.startswith("┃"), lines[top + 1 :]))
    body = list(
        itertools.takewhile(lambda line: line.startswith("│"), lines[top + len(head) + 2 :])
    )
    widths = [len(cell) - 2 for cell in lines[top][1:-1].split("┳")]
    columns = {}
    for i, width in enumerate(widths):
        header = " ".join(line.split("┃")[1:-1][i].strip() for line in head).strip()
        cells = [line.split("│")[1:-1][i] for line in body]
        columns[" ".join(header.split())] = Drawn(header, cells, width)
    return columns


def unboxed(output: str, after: str) -> dict[str, Drawn]:
    """The borderless table (one-word headers) that follows the line starting with `after`."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(after))
    header = lines[start + 1]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    body = list(itertools.takewhile(lambda line: line.startswith(" "), lines[start + 2 :]))
    columns = {}
    for left, right in zip(starts, [*starts[1:], None], strict=True):
        cells = [line[left:right] for line in body]
        width = (right or max(len(line) for line in [header, *body])) - left - 1
        columns[header[left:right].strip()] = Drawn(header[left:right].strip(), cells, width)
    return columns


def assert_fits(output: str, width: int) -> None:
    wide = [line for line in output.splitlines() if cell_len(line) > width]
    assert not wide, f"lines wider than {width} columns:\n" + "\n".join(wide)
    assert "…" not in output, output


def frames(raw: bytes) -> list[str]:
    """Each frame a Rich live display drew on the terminal, as plain text."""
    text = raw.decode("utf-8", "replace")
    return [ESCAPE.sub("", frame).replace("\r\n", "\n") for frame in REDRAW.split(text)]


def on_terminal(
    *args: str, width: int, live_on: str = "stdout", cwd: Path | None = None
) -> tuple[int, bytes, str]:
    """forge with `live_on` (stdout or stderr) on a pseudo-terminal `width` columns wide; the
    exit code, what the terminal received, and the other stream."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, width, 0, 0))
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, live_on: follower}
    process = subprocess.Popen(
        [sys.executable, "-m", "forge", *args],
        stdin=subprocess.DEVNULL,
        env={**os.environ, **AUTHOR, "COLUMNS": str(width), "LINES": "40"},
        cwd=cwd,
        **pipes,  # type: ignore[arg-type]
    )
    os.close(follower)
    received = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the last writer closed the terminal
            break
        if not chunk:
            break
        received += chunk
    os.close(leader)
    out, err = process.communicate(timeout=300)
    return process.returncode, received, (err if live_on == "stdout" else out).decode()


# -- the layout on its own ---------------------------------------------------------------------


def render(table: FittedTable, width: int) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(table)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_columns_leave_least_important_first_and_what_stays_is_whole() -> None:
    table = FittedTable(
        Column("model"),
        Column("tier", drop=1),
        Column("latency", drop=0),
        Column("cost"),
        Column("answer", prose=True),
        title="t",
    )
    table.add_row("llama-3.1-8b-instruct", "free", "0.42s", "$0.000123", "Paris " * 12)
    wide = drawn(render(table, 120), "t")
    assert list(wide) == ["model", "tier", "latency", "cost", "answer"]
    assert wide["answer"].prose() == " ".join(["Paris"] * 12)
    at_80 = render(table, 80)
    assert list(drawn(at_80, "t")) == ["model", "tier", "cost", "answer"]
    assert "not shown at 80 columns: latency" in at_80
    narrow = drawn(render(table, 60), "t")
    assert list(narrow) == ["model", "cost", "answer"]
    assert narrow["answer"].width >= TEXT_WIDTH
    assert narrow["model"].values() == "llama-3.1-8b-instruct", "folded, never cut"
    assert narrow["cost"].values() == "$0.000123"
    for width in (40, 60, 80, 120):
        assert_fits(render(table, width), width)


def test_a_live_table_keeps_room_for_text_that_has_not_arrived() -> None:
    def table(live: bool) -> FittedTable:
        t = FittedTable(
            Column("model"), Column("status", drop=0), Column("answer", prose=True), live=live
        )
        t.add_row("gpt-4o-mini", "waiting", "")
        return t

    assert list(drawn(render(table(live=False), 50), "┏")) == ["model", "status", "answer"]
    assert list(drawn(render(table(live=True), 50), "┏")) == ["model", "answer"], (
        "the answer will need its 30 columns"
    )


# -- fan-out -----------------------------------------------------------------------------------

MODELS = ["llama-3.1-8b-instruct", "gpt-4o-mini", "broken"]
ANSWER = "The capital of France is Paris, a city on the Seine with many museums."


def fanout_models(fake: FakeProvider, tmp_path: Path, slow: bool = False) -> Path:
    pace = 6.0 if slow else None  # a slow stream keeps the live table up after the failure
    fake.script("llama-3.1-8b-instruct-1", Reply(text=ANSWER, tokens_per_second=pace))
    fake.script("gpt-4o-mini-1", Reply(text="Paris is the capital of France."))
    fake.script("broken-1", Reply(fault=Fault.AUTH, latency=0.05))
    text = fanout_config(fake.url, [], price="1.5")
    for name in MODELS:
        text += (
            f'\n[models."{name}"]\nprovider = "fake"\nid = "{name}-1"\ntier = "free"\n'
            "input_price = 1.5\noutput_price = 2.5\n"
        )
    return write(tmp_path, text)


@pytest.mark.parametrize("width", WIDTHS)
def test_fanout_table_at_width(fake: FakeProvider, tmp_path: Path, width: int) -> None:
    config = fanout_models(fake, tmp_path)
    done = run_forge("fanout", "Capital of France?", "-m", ",".join(MODELS), "-c", str(config))
    assert done.returncode == 0, done.stderr
    answers = {
        a["key"]: a
        for a in json.loads(run_forge("fanout", "--show", "last", "--json").stdout)["answers"]
    }
    reason = " ".join(str(answers["broken"]["cause"]).split())
    assert len(reason) > TEXT_WIDTH, reason

    shown = run_forge("fanout", "--show", "last", env={"COLUMNS": str(width)}).stdout
    assert_fits(shown, width)
    columns = drawn(shown, "forge fanout")
    assert columns["model"].values() == "".join(MODELS)
    costs = [usd(Decimal(answers[m]["cost_usd"])) for m in MODELS[:2]]
    assert costs[0] != costs[1] and all(len(c) >= 8 for c in costs), costs
    assert columns["cost"].values() == costs[0] + costs[1] + "-"
    assert columns["answer"].width >= TEXT_WIDTH
    assert columns["answer"].prose() == f"{ANSWER} Paris is the capital of France. {reason}"
    if width == 120:
        assert {"tier", "status", "latency", "tokens"} <= set(columns), "room for the rest"
    else:
        assert f"not shown at {width} columns:" in shown

    listed = run_forge("fanout", "--list", env={"COLUMNS": str(width)}).stdout
    assert_fits(listed, width)
    runs = drawn(listed, "Recent fan-out runs")
    assert re.fullmatch(r"fo-\d{8}-\d{6}-[0-9a-f]{4}", runs["run"].values()), listed
    assert runs["prompt"].prose() == "Capital of France?"


@pytest.mark.parametrize("width", WIDTHS)
def test_fanout_live_table_at_width(fake: FakeProvider, tmp_path: Path, width: int) -> None:
    config = fanout_models(fake, tmp_path, slow=True)
    code, received, _ = on_terminal(
        "fanout", "Capital of France?", "-m", ",".join(MODELS), "-c", str(config), width=width
    )
    assert code == 0
    reason = "auth (HTTP 401): Incorrect API key provided:"
    seen = []
    for frame in frames(received):
        if "┏" not in frame or reason.split()[-1] not in frame:
            continue
        assert_fits(frame, width)
        columns = drawn(frame, "┏")
        assert columns["model"].values() == "".join(MODELS)
        assert columns["answer"].width >= TEXT_WIDTH
        seen.append(columns["answer"].prose())
    assert seen, "a frame showed the failure while an answer was still streaming"
    assert any(reason in text for text in seen), seen


def test_fanout_roles_and_leaderboard_at_every_width(fake: FakeProvider, tmp_path: Path) -> None:
    fake.script("llama-3.1-8b-instruct-1", Reply(text="The form posts to /login over HTTPS only."))
    fake.script("gpt-4o-mini-1", Reply(text="Review: the form needs a CSRF token and a label."))
    roles = (
        '\n[roles.coder]\nsystem = "You write code."\nmodels = ["llama-3.1-8b-instruct"]\n'
        '\n[roles.reviewer]\nsystem = "You review code."\nmodels = ["gpt-4o-mini", "broken"]\n'
    )
    config = fanout_models(fake, tmp_path)
    config.write_text(config.read_text() + roles, encoding="utf-8")
    ask = ["Add a login form.", "--roles", "coder,reviewer", "-c", str(config), "--json"]
    roles_run = json.loads(run_forge("fanout", *ask).stdout)["run_id"]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Capital?", "expected": "Paris"}) + "\n")
    batch = ["--input", str(prompts), "-m", ",".join(MODELS[:2]), "-c", str(config), "--json"]
    run_id = json.loads(run_forge("fanout", *batch).stdout)["run_id"]
    for width in WIDTHS:
        shown = run_forge("fanout", "--show", roles_run, env={"COLUMNS": str(width)}).stdout
        assert_fits(shown, width)
        roles_table = drawn(shown, "Roles x models")
        if width < 120:  # one row per role and model, with room for the answer
            assert roles_table["model"].values() == "".join(MODELS)
            assert roles_table["answer"].width >= TEXT_WIDTH
            assert (
                "Review: the form needs a CSRF token and a label." in roles_table["answer"].prose()
            )
        else:
            assert list(roles_table) == ["role", *MODELS]
        board = run_forge("fanout", "--show", run_id, env={"COLUMNS": str(width)}).stdout
        assert_fits(board, width)
        leaderboard = drawn(board, "Leaderboard")
        names = leaderboard["model"].values()
        assert len(names) == len(MODELS[0] + MODELS[1]) and all(m in names for m in MODELS[:2])
        assert re.fullmatch(r"(\$0\.\d{4,6}){2}", leaderboard["cost"].values()), board


# -- run-milestone, and the ledger's views of it -------------------------------------------------

LLAMA = "llama-3-1-8b-instruct"
HAIKU = "claude-3-5-haiku"
MILESTONE = """# Calculator

- [ ] fix-add: Fix add in calc.py so the tests pass (files: calc.py)
- [ ] docs-readme: Document add in the README (files: README.md) (tier: cheap)
"""


def milestone_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "forge.toml"
    path.write_text(
        f"""
[providers.fake]
base_url = "{url}/v1"

[models.llama-3-1-8b-instruct]
provider = "fake"
id = "alpha-1"
tier = "free"
input_price = 0.1
output_price = 0.2

[models.claude-3-5-haiku]
provider = "fake"
id = "beta-1"
tier = "cheap"
input_price = 3
output_price = 3

[tiers]
ladder = ["free", "cheap"]

[routing]
max_attempts_per_tier = 1
max_total_attempts = 1
learn_from_history = false
max_call_attempts = 1
""",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize("width", WIDTHS)
def test_run_milestone_and_the_ledger_views_at_width(
    fake: FakeProvider, tmp_path: Path, width: int
) -> None:
    repo = python_repo(tmp_path, extra={"milestone.md": MILESTONE})
    config = milestone_config(tmp_path, fake.url)
    fake.script("alpha-1", Reply(text=FIX_ADD))
    fake.script("beta-1", Reply(fault=Fault.AUTH))
    code, received, report = on_terminal(
        "run-milestone", "milestone.md", "-c", str(config), width=width, live_on="stderr", cwd=repo
    )
    assert code == 4, report  # the README task's model could not be reached
    reason = "no model of the ladder could be reached (tried: cheap)"

    last = frames(received)[-1]  # the live table stays up, in its final state
    assert_fits(last, width)
    live = drawn(last, "┏")
    assert live["task"].values() == "fix-add" + "docs-readme"
    assert live["state"].values() == "done" + "failed"
    total = re.search(r"^cost (\$0\.\d{4,6}) of \$5\.0000; done 1, failed 1", last, re.M)
    assert total is not None, last
    spent = total.group(1)
    assert live["note"].width >= TEXT_WIDTH
    assert reason in live["note"].prose()

    assert_fits(report, width)
    final = drawn(report, "run ")
    assert final["task"].values() == "fix-add" + "docs-readme"
    assert final["why"].width >= TEXT_WIDTH
    assert reason in final["why"].prose()
    assert f"cost: {spent} (the same work at the top tier: $" in report
    if width > 60:  # at 60 the tasks' costs give way to the reasons; the totals stay
        assert live["cost"].values() == spent + "-"
        assert final["cost"].values() == spent + "$0"
    if width == 120:
        assert {"tier/model", "stage", "elapsed"} <= set(live)
        assert {"tiers tried", "attempts", "time"} <= set(final)

    def view(title: str, *args: str) -> dict[str, Drawn]:
        output = run_forge(*args, env={"COLUMNS": str(width)}, cwd=repo).stdout
        assert_fits(output, width)
        return drawn(output, title)

    runs = view("Runs", "runs")
    assert re.fullmatch(r"\d{4}-\d{4}-[0-9a-f]{4}", runs["run"].values())
    assert runs["cost"].values() == spent
    stats = view("Models", "stats")
    logs = view("Recent attempts", "logs", "-c", str(config))
    cost = view("Today", "cost", "-c", str(config))
    for table, name in ((stats, "model"), (logs, "model"), (cost, "name")):
        assert LLAMA in table[name].values() and HAIKU in table[name].values()
        assert spent in table["cost"].values()
    assert logs["error"].prose().startswith("Incorrect API key provided")
    models = view("Models", "models", "-c", str(config))
    assert models["model"].values() == LLAMA + HAIKU
    assert models["$/Mtok in/out"].values() == "0.1/0.2" + "3/3"


# -- route and validate ------------------------------------------------------------------------


@pytest.mark.parametrize("width", WIDTHS)
def test_route_tables_at_width(width: int) -> None:
    examples = Path(__file__).parent.parent / "examples"
    config = ["-c", str(examples / "quickstart" / "forge.toml")]
    milestone = examples / "python-package" / "milestone.toml"
    plan = run_forge("route", "--milestone", str(milestone), *config, env={"COLUMNS": str(width)})
    assert plan.returncode == 0, plan.stderr
    table = plan.stdout[: plan.stdout.index("Total for")]
    assert_fits(table, width)
    columns = drawn(table, "Milestone")
    assert columns["id"].values() == "triangle" + "square" + "docstrings"
    assert re.fullmatch(r"(\$0|\$\d\.\d{4,6}){3}", columns["first"].values()), table
    task = "Fix the off-by-one in the pagination of the admin users list, then add a test for it"
    parts = run_forge("route", task, *config, env={"COLUMNS": str(width)}).stdout
    subtasks = parts[parts.index("Subtasks") :]
    assert_fits(subtasks, width)
    columns = drawn(subtasks, "Subtasks")
    assert columns["part"].width >= TEXT_WIDTH
    assert columns["part"].prose().startswith("Fix the off-by-one in the pagination")
    assert columns["model"].values() == "small" * 2


def test_validate_findings_at_every_width(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "pyproject.toml": '[project]\nname = "pkg"\nversion = "0.1.0"\n\n'
            "[tool.mypy]\nstrict = true\n",
            "pkg/__init__.py": "",
            "pkg/identifiers_of_things.py": (
                "def identifiers(values: list[int]) -> list[str]:\n    return values\n"
            ),
            "tests/test_ok.py": "def test_ok() -> None:\n    assert True\n",
        },
    )
    message = 'Incompatible return value type (got "list[int]", expected "list[str]")'
    for width in WIDTHS:  # the first run fills the cache the other two answer from
        done = run_forge("validate", str(root), env={"COLUMNS": str(width)})
        assert done.returncode == 1, done.stdout + done.stderr
        assert_fits(done.stdout, width)
        findings = unboxed(done.stdout, "✗ mypy")
        assert findings["location"].values() == "pkg/identifiers_of_things.py:2:12"
        assert findings["message"].width >= TEXT_WIDTH
        assert message in findings["message"].prose()
        if width == 120:
            assert findings["code"].values() == "return-value"
