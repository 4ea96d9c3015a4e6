"""`forge route`: analysis, the explanation a user reads, --json, batches, the classifier,
and accuracy against the labelled cases in tests/data/route_cases.jsonl."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forge.cli import app
from forge.config import parse_config_text
from forge.routing.analysis import BANDS, TRIVIAL_BELOW, analyse
from forge.routing.codebase import Codebase
from forge.routing.decision import Router
from forge.routing.fleet import load_fleet
from forge.testing.fake_provider import FakeProvider, Reply
from tests.conftest import run_forge

CASES = Path(__file__).parent / "data" / "route_cases.jsonl"
FOUR_TIERS = """
[providers.local]
base_url = "http://127.0.0.1:1/v1"

[providers.cloud]
base_url = "https://cloud.example/v1"

[models.small]
provider = "local"
id = "small-1"
tier = "local"
input_price = 0
output_price = 0

[models.groq-llama]
provider = "cloud"
id = "llama"
tier = "free"
input_price = 0
output_price = 0

[models.deepseek]
provider = "cloud"
id = "deepseek"
tier = "cheap"
input_price = 0.27
output_price = 1.1

[models.sonnet]
provider = "cloud"
id = "sonnet"
tier = "premium"
input_price = 3
output_price = 15
"""
# The route accuracy floors: type and band as the issue asks; tier follows from both, so a miss
# on either can move it, and 80% is the floor stated for it.
TYPE_FLOOR = BAND_FLOOR = 0.85
TIER_FLOOR = 0.80

runner = CliRunner()


@pytest.fixture
def four_tiers(tmp_path: Path) -> Path:
    path = tmp_path / "forge.toml"
    path.write_text(FOUR_TIERS)
    return path


def forge(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


# -- analysis ----------------------------------------------------------------------------------


def test_pasted_rustc_error_is_a_bug_fix_and_named() -> None:
    task = (
        "cargo build fails:\n\nerror[E0308]: mismatched types\n  --> src/lib.rs:12:5\n"
        "   |\n12 |     n\n   |     ^ expected `usize`, found `i32`\n"
    )
    a = analyse(task)
    assert a.type == "bug_fix"
    assert a.type_reasons[0] == "pasted rustc error E0308"
    assert a.errors == ("rustc error E0308",)
    assert [f.path for f in a.files] == ["src/lib.rs"]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("Traceback (most recent call last):\n  File \"a.py\", line 1\nKeyError: 'x'", "KeyError"),
        ("src/a.ts:3:1 - error TS2322: Type 'string' is not assignable", "TypeScript error TS2322"),
        ("thread 'main' panicked at 'boom', src/main.rs:3:5", "Rust panic"),
        ("FAILED tests/test_a.py::test_b - assert 1 == 2", "test failures (FAILED)"),
    ],
)
def test_pasted_error_output_is_recognised(text: str, error: str) -> None:
    a = analyse(text)
    assert error in a.errors
    assert a.type == "bug_fix"


def test_signals_files_symbols_breadth_and_critical() -> None:
    a = analyse(
        "rename `load_cfg` to load_config() in every module, including ConfigLoader in "
        "src/config.rs, and check the JWT secret handling"
    )
    assert [f.path for f in a.files] == ["src/config.rs"]
    assert {"load_cfg", "load_config", "ConfigLoader"} <= set(a.symbols)
    assert "every module" in a.breadth_words
    assert a.quality == "critical"
    assert any(r.startswith("authentication ('JWT'") for r in a.quality_reasons)
    assert a.context_tokens == 1500 + 300 * len(a.symbols)


def test_subtasks_split_on_actions_and_then_makes_a_dependency() -> None:
    a = analyse("fix the parser crash and add a regression test, then update the changelog")
    assert [(s.text, s.after, s.analysis.type) for s in a.subtasks] == [
        ("fix the parser crash", (), "bug_fix"),
        ("add a regression test", (), "test"),
        ("update the changelog", (1,), "docs"),
    ]
    assert analyse("add X and Y to the config loader").subtasks == ()
    listed = analyse("1. add a --json flag to status\n2. then document it in the README")
    assert [s.after for s in listed.subtasks] == [(), (0,)]


def test_complexity_rises_with_difficulty_and_states_its_bands() -> None:
    trivial = analyse("bump version to 0.4.2 in pyproject.toml")
    complex_ = analyse(
        "redesign the job scheduler for zero downtime: leader election, exactly-once "
        "delivery and a migration path across every service"
    )
    assert trivial.band == "trivial" and trivial.complexity_score < TRIVIAL_BELOW
    assert complex_.band == "complex"
    assert complex_.complexity_score > trivial.complexity_score
    assert BANDS == ("trivial", "simple", "medium", "complex")


def test_files_are_measured_in_the_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "ledger.py").write_text("x = 1\n" * 400)
    for n in range(6):
        (repo / f"user_{n}.py").write_text("from src import ledger\n")
    (repo / "other.py").write_text("nothing to see\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)

    a = analyse("refactor ledger.py", codebase=Codebase(repo))

    (named,) = a.files
    assert (named.path, named.found, named.lines, named.referenced_by) == (
        "src/ledger.py",
        True,
        400,
        6,
    )
    assert named.tokens == len("x = 1\n" * 400) // 4
    assert "src/ledger.py 400 lines, referenced by 6 files" in " ".join(a.complexity_reasons)


# -- the command -------------------------------------------------------------------------------


def test_route_help_loads_no_routing_module() -> None:
    probe = (
        "import sys\nfrom forge.cli import main\nsys.argv = ['forge', 'route', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('LOADED=' + ','.join(m for m in sys.modules if m.startswith(('forge.routing', "
        "'forge.config', 'forge.ledger', 'forge.planning'))))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "--milestone" in done.stdout
    assert done.stdout.rsplit("LOADED=", 1)[1].strip() == ""


def test_route_explains_every_part(four_tiers: Path) -> None:
    code, out, _ = forge(
        "route",
        "-c",
        str(four_tiers),
        "fix the race condition in the connection pool that sometimes returns a closed "
        "connection to a caller",
    )
    assert code == 0
    lines = [line.strip() for line in out.splitlines()]
    assert lines[0].startswith("Task: fix the race condition")
    assert any(line.startswith("type=bug_fix: asks to 'fix'") for line in lines)
    assert any(line.startswith("complexity=medium (0.") for line in lines)
    assert "quality=standard: touches nothing critical" in lines
    assert any(
        line.startswith("first rung: free (medium) → model groq-llama via cost strategy")
        for line in lines
    )
    assert "escalation: free (groq-llama) → cheap (deepseek) → premium (sonnet)" in lines
    estimate = next(line for line in lines if line.startswith("estimate:"))
    assert "first attempt $0, worst case $0.0" in estimate
    assert "budget left today $5.00" in estimate
    assert "~1,500 output tokens per attempt" in estimate


def test_route_shows_a_table_of_subtasks(four_tiers: Path) -> None:
    code, out, _ = forge(
        "route", "-c", str(four_tiers), "add JWT auth to the API and then write tests for it"
    )
    assert code == 0
    assert "quality=critical: touches authentication ('JWT', 'auth')" in out
    assert "Subtasks" in out
    assert "write tests for it" in out


def test_route_json_is_a_documented_dict(four_tiers: Path) -> None:
    code, out, _ = forge(
        "route", "-c", str(four_tiers), "--json", "fix typo in README.md and bump the version"
    )
    assert code == 0
    data = json.loads(out)
    assert set(data) == {"task", "analysis", "route", "estimate", "subtasks"}
    assert set(data["analysis"]) >= {
        "type",
        "type_reasons",
        "complexity_score",
        "band",
        "complexity_reasons",
        "quality",
        "quality_reasons",
        "tokens",
        "context_tokens",
        "files",
        "symbols",
        "breadth_words",
        "errors",
        "classifier",
    }
    assert set(data["route"]) >= {
        "ladder",
        "tier",
        "model",
        "strategy",
        "skipped",
        "escalation",
        "history",
        "notes",
    }
    assert set(data["estimate"]) >= {
        "input_tokens",
        "output_tokens",
        "first_attempt_usd",
        "worst_case_usd",
        "budget_left_usd",
        "unpriced_models",
    }
    assert data["analysis"]["files"][0]["path"] == "README.md"
    assert [s["after"] for s in data["subtasks"]] == [[], []]
    assert data["estimate"]["budget_left_usd"] == "5"


def test_task_from_a_file_and_from_stdin(four_tiers: Path, tmp_path: Path) -> None:
    task = tmp_path / "task.txt"
    task.write_text("write unit tests for the slugify function")
    _, from_file, _ = forge("route", "-c", str(four_tiers), "--file", str(task), "--json")
    assert json.loads(from_file)["analysis"]["type"] == "test"
    code, from_stdin, _ = forge(
        "route", "-c", str(four_tiers), "--json", "-", stdin=task.read_text()
    )
    assert code == 0
    assert json.loads(from_stdin)["task"] == task.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tier", "platinum", "x"], "unknown tier 'platinum'"),
        (["--model", "sonet", "x"], "unknown model 'sonet'; did you mean 'sonnet'?"),
        (["--file", "/no/such/task.txt"], "cannot read the task file"),
        (["--classifier", "model", "x"], "needs a router model"),
        (["   "], "the task is empty"),
    ],
)
def test_bad_input_exits_2_with_one_message(
    four_tiers: Path, args: list[str], message: str
) -> None:
    done = run_forge("route", "-c", str(four_tiers), *args)
    assert done.returncode == 2
    assert done.stderr.startswith("forge: error: ")
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_pins_on_the_command_line(four_tiers: Path) -> None:
    _, out, _ = forge("route", "-c", str(four_tiers), "--json", "--tier", "premium", "fix a typo")
    assert json.loads(out)["route"]["model"] == "sonnet"
    _, out, _ = forge("route", "-c", str(four_tiers), "--json", "--model", "deepseek", "fix a typo")
    route = json.loads(out)["route"]
    assert (route["tier"], route["model"], route["pinned"]) == ("cheap", "deepseek", "model")


def test_batch_writes_one_json_line_per_task_and_survives_bad_lines(
    four_tiers: Path, tmp_path: Path
) -> None:
    batch = tmp_path / "tasks.jsonl"
    batch.write_text(
        '{"id": "a", "text": "fix typo in README.md"}\n'
        "this is not json\n"
        "\n"
        '{"id": "c"}\n'
        '{"id": 4, "text": "design the plugin architecture for validators"}\n'
        "[1, 2]\n"
    )
    code, out, _ = forge("route", "-c", str(four_tiers), "--batch", str(batch))
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r.get("id") for r in rows] == ["a", None, "c", 4, None]
    assert rows[0]["analysis"]["type"] == "simple_edit"
    assert rows[0]["route"]["tier"] == "local"
    assert rows[1] == {"id": None, "line": 2, "error": rows[1]["error"]}
    assert rows[2]["error"] == '"text" must be a non-empty string'
    assert rows[3]["analysis"]["type"] == "architecture"
    assert rows[4]["line"] == 6


def test_batch_in_worker_processes_keeps_the_order(four_tiers: Path, tmp_path: Path) -> None:
    texts = [json.loads(line)["text"] for line in CASES.read_text().splitlines() if line.strip()]
    batch = tmp_path / "tasks.jsonl"
    batch.write_text("".join(json.dumps({"id": n, "text": t}) + "\n" for n, t in enumerate(texts)))
    # Outside a repository: inside one, each task's named files would be looked up in it.
    route = ("route", "-c", str(four_tiers), "--batch", str(batch))
    one = run_forge(*route, "--jobs", "1", cwd=tmp_path)
    two = run_forge(*route, "--jobs", "2", cwd=tmp_path)
    assert one.returncode == two.returncode == 0
    assert one.stdout == two.stdout
    assert [json.loads(line)["id"] for line in two.stdout.splitlines()] == list(range(len(texts)))


# -- the optional classifier -------------------------------------------------------------------


def classifier_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "forge.toml"
    path.write_text(
        FOUR_TIERS
        + f"""
[providers.fake]
base_url = "{url}/v1"

[models.router]
provider = "fake"
id = "router-1"
tier = "local"
input_price = 0
output_price = 0

[local_models]
router = "router"
"""
    )
    return path


def test_the_heuristic_classifier_calls_no_model(fake: FakeProvider, tmp_path: Path) -> None:
    config = classifier_config(tmp_path, fake.url)
    code, _, _ = forge("route", "-c", str(config), "fix typo in README.md")
    assert code == 0
    assert fake.requests == []


def test_the_model_classifier_answer_is_used(fake: FakeProvider, tmp_path: Path) -> None:
    fake.script("router-1", Reply(text='{"type": "refactor", "complexity": "complex"}'))
    config = classifier_config(tmp_path, fake.url)
    code, out, _ = forge(
        "route", "-c", str(config), "--classifier", "model", "--json", "fix typo in README.md"
    )
    assert code == 0, out
    analysis = json.loads(out)["analysis"]
    assert (analysis["type"], analysis["band"]) == ("refactor", "complex")
    assert analysis["classifier"] == "model:router"
    assert analysis["complexity_score"] >= 0.7
    assert analysis["type_reasons"][0] == "classifier router answered refactor"
    assert len(fake.requests_for("router-1")) == 1


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("It is a bug fix, I think.", "not JSON"),
        ('{"type": "chore", "complexity": "simple"}', "unknown type 'chore'"),
        ('{"type": "docs", "complexity": "huge"}', "unknown complexity 'huge'"),
    ],
)
def test_a_bad_classifier_answer_falls_back_to_the_heuristic(
    fake: FakeProvider, tmp_path: Path, answer: str, why: str
) -> None:
    fake.script("router-1", Reply(text=answer))
    config = classifier_config(tmp_path, fake.url)
    code, out, _ = forge(
        "route", "-c", str(config), "--classifier", "model", "fix typo in README.md"
    )
    assert code == 0
    assert "type=simple_edit" in out
    assert "classifier router: its answer was unusable" in out
    assert why in out
    assert "the heuristic's answer is used" in out


# -- accuracy against labelled cases -----------------------------------------------------------


HOLDOUT = CASES.with_name("route_cases_holdout.jsonl")


def labelled_cases(path: Path = CASES) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_every_trivial_case_scores_below_every_complex_case() -> None:
    cases = labelled_cases()
    scores = {c["id"]: analyse(str(c["text"])).complexity_score for c in cases}
    trivial = [scores[c["id"]] for c in cases if c["band"] == "trivial"]
    complex_ = [scores[c["id"]] for c in cases if c["band"] == "complex"]
    assert trivial and complex_
    assert max(trivial) < min(complex_)


def accuracy_on(cases: list[dict[str, object]]) -> dict[str, float]:
    router = Router(load_fleet(parse_config_text(FOUR_TIERS), None, "."))
    hits = {"type": 0, "band": 0, "tier": 0, "critical": 0}
    for case in cases:
        analysis = analyse(str(case["text"]))
        found = {
            "type": analysis.type,
            "band": analysis.band,
            "tier": router.decide(analysis).first.rung,
            "critical": analysis.quality == "critical",
        }
        for field in hits:
            hits[field] += found[field] == case[field]
    return {field: count / len(cases) for field, count in hits.items()}


def test_accuracy_on_labelled_cases(capsys: pytest.CaptureFixture[str]) -> None:
    cases = labelled_cases()
    accuracy = accuracy_on(cases)
    with capsys.disabled():
        print(
            f"\nroute accuracy over {len(cases)} labelled cases: "
            + ", ".join(f"{field} {value:.1%}" for field, value in accuracy.items())
        )
    assert accuracy["type"] >= TYPE_FLOOR
    assert accuracy["band"] >= BAND_FLOOR
    assert accuracy["tier"] >= TIER_FLOOR


# The rules were first tuned on route_cases.jsonl; route_cases_holdout.jsonl was labelled
# afterwards by someone who saw neither the rules nor the first set, and first measured at type
# 78.3%, band 50.0%, tier 65.0%. In the next round BOTH files were used for development (general
# changes only: structural signals, weights, vocabulary, band calibration), so this set is no
# longer strictly held out. After that round: type 88.3%, band 68.3%, tier 71.7%; after the third
# round (below): type 88.3%, band 71.7%, tier 75.0%. The floors sit one case under.
HOLDOUT_FLOORS = {"type": 0.86, "band": 0.7, "tier": 0.73}


# route_cases_holdout2.jsonl was labelled by someone who saw no rules and no other set, and was
# evaluated once, after the second round of rule changes: type 80.0%, band 61.7%, tier 68.3%
# (the committed rules before that round scored 80.0%, 55.0%, 63.3% on it). The third round was
# developed on it and the two sets above (quoted values are not clauses, a pasted run-time trace
# means tracing a cause, "coverage" is no difficulty for a test task, a refactor or test of one
# named function stays within it): type 80.0%, band 66.7%, tier 71.7%.
HOLDOUT2 = CASES.with_name("route_cases_holdout2.jsonl")
HOLDOUT2_FLOORS = {"type": 0.78, "band": 0.65, "tier": 0.7}

# route_cases_holdout3.jsonl was labelled later by a fourth labeller who saw no rules and no
# other set. Measured once before the third round: type 80.0%, band 56.7%, tier 75.0%; and once
# after it: type 80.0%, band 58.3%, tier 75.0%. No rule was written with it in view: it is the
# honest estimate on new tasks, and the next round needs yet another fresh set.
HOLDOUT3 = CASES.with_name("route_cases_holdout3.jsonl")
HOLDOUT3_FLOORS = {"type": 0.78, "band": 0.56, "tier": 0.73}


@pytest.mark.parametrize(
    ("path", "floors"),
    [(HOLDOUT, HOLDOUT_FLOORS), (HOLDOUT2, HOLDOUT2_FLOORS), (HOLDOUT3, HOLDOUT3_FLOORS)],
    ids=["holdout", "holdout2", "holdout3"],
)
def test_accuracy_on_held_out_cases(
    path: Path, floors: dict[str, float], capsys: pytest.CaptureFixture[str]
) -> None:
    cases = labelled_cases(path)
    accuracy = accuracy_on(cases)
    with capsys.disabled():
        print(
            f"\nroute accuracy over {len(cases)} cases of {path.name}: "
            + ", ".join(f"{field} {value:.1%}" for field, value in accuracy.items())
        )
    for field, floor in floors.items():
        assert accuracy[field] >= floor, field
