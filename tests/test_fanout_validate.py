"""`forge fanout --validate`: candidates tried in scratch copies, ranked by what passes."""

from __future__ import annotations

import json
from pathlib import Path

from forge.testing.fake_provider import FakeProvider, Fault, Reply
from tests.conftest import run_forge
from tests.test_fanout import write

TESTS = """\
from wordcount import word_count


def test_words():
    assert word_count("a b c") == 3


def test_empty():
    assert word_count("") == 0


def test_extra_spaces():
    assert word_count("  a   b ") == 2
"""

CANDIDATES = {
    # model: (price per million tokens, answer)
    "dear": (
        "50",
        "```python\ndef word_count(text):\n    return len(text.split())\n```",
    ),
    "thrifty": (
        "1",
        "Here:\n```python\ndef word_count(text: str) -> int:\n"
        "    return len([w for w in text.split(' ') if w])\n```\n",
    ),
    "naive": ("0.5", "```python\ndef word_count(text):\n    return len(text.split(' '))\n```"),
    "counter": ("0.1", "```python\ndef word_count(text):\n    return text.count(' ') + 1\n```"),
    "talker": ("0.01", "Count the words by splitting on whitespace."),
}


def config_for(url: str) -> str:
    text = f'[providers.fake]\nbase_url = "{url}/v1"\n'
    for name, (price, _) in CANDIDATES.items():
        text += (
            f'\n[models.{name}]\nprovider = "fake"\nid = "{name}-1"\n'
            f"input_price = {price}\noutput_price = {price}\n"
        )
    return text


def test_candidates_that_pass_the_tests_rank_first_then_by_cost(
    fake: FakeProvider, tmp_path: Path
) -> None:
    for name, (_, answer) in CANDIDATES.items():
        fake.script(f"{name}-1", Reply(text=answer))
    tests = tmp_path / "test_wordcount.py"
    tests.write_text(TESTS, encoding="utf-8")
    config = write(tmp_path, config_for(fake.url))
    done = run_forge(
        "fanout",
        "Write word_count(text) in Python.",
        "-m",
        ",".join(CANDIDATES),
        "--validate",
        "--tests",
        str(tests),
        "--json",
        "--config",
        str(config),
    )
    assert done.returncode == 0, done.stderr
    ranked = json.loads(done.stdout)["candidates"]
    order = [c["model"] for c in ranked]
    assert order[:2] == ["thrifty", "dear"], "both passing candidates first, the cheaper leading"
    assert [c["status"] for c in ranked[:2]] == ["passed", "passed"]
    assert ranked[0]["tests_passed"] == 3 and ranked[0]["tests_failed"] == 0
    failing = {c["model"]: c for c in ranked[2:4]}
    assert set(failing) == {"naive", "counter"}
    assert all(c["status"] == "failed" and c["tests_failed"] > 0 for c in failing.values())
    assert ranked[4]["model"] == "talker" and ranked[4]["status"] == "no_code"
    # The user's test file is untouched and no candidate was written beside it.
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".py") == [tests.name]

    terminal = run_forge("fanout", "--show", "last")
    assert "candidates ranked by what passes" in terminal.stdout
    assert "pytest: 3 passed, 0 failed" in terminal.stdout


def test_target_file_is_replaced_in_a_scratch_copy_of_the_project(
    fake: FakeProvider, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "wc"\nversion = "0"\n')
    target = project / "wordcount.py"
    target.write_text("def word_count(text):\n    raise NotImplementedError\n")
    (project / "tests" / "test_wordcount.py").write_text(TESTS, encoding="utf-8")
    fake.script("dear-1", Reply(text=CANDIDATES["dear"][1]))
    fake.script("naive-1", Reply(text=CANDIDATES["naive"][1]))
    config = write(tmp_path, config_for(fake.url))
    done = run_forge(
        "fanout",
        "Implement word_count.",
        "-m",
        "naive,dear",
        "--validate",
        "--target",
        str(target),
        "--json",
        "--config",
        str(config),
    )
    assert done.returncode == 0, done.stderr
    ranked = json.loads(done.stdout)["candidates"]
    assert [(c["model"], c["status"]) for c in ranked] == [("dear", "passed"), ("naive", "failed")]
    assert "NotImplementedError" in target.read_text(), "the real file is never changed"


def test_no_passing_candidate_exits_1_and_validate_needs_a_target(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("naive-1", Reply(text=CANDIDATES["naive"][1]))
    tests = tmp_path / "test_wordcount.py"
    tests.write_text(TESTS, encoding="utf-8")
    config = write(tmp_path, config_for(fake.url))
    base = ("fanout", "wc", "-m", "naive", "--config", str(config))
    assert run_forge(*base, "--validate", "--tests", str(tests)).returncode == 1
    missing = run_forge(*base, "--validate")
    assert missing.returncode == 2 and "--target FILE" in missing.stderr
    assert len(fake.requests_for("naive-1")) == 1, "the usage error came before any call"


def test_validate_exits_4_when_no_model_answered_and_3_when_the_budget_refused_all(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("naive-1", Reply(fault=Fault.NOT_FOUND))
    tests = tmp_path / "test_wordcount.py"
    tests.write_text(TESTS, encoding="utf-8")
    text = config_for(fake.url) + "\n[cost]\ndaily_budget_usd = 0.05\n"
    text += (
        '\n[models.pricey]\nprovider = "fake"\nid = "pricey-1"\ninput_price = 100000\n'
        "output_price = 100000\nmax_output_tokens = 1000\n"
    )
    config = write(tmp_path, text)
    base = ("fanout", "wc", "--validate", "--tests", str(tests), "--config", str(config))
    unreachable = run_forge(*base, "-m", "naive")
    assert unreachable.returncode == 4, unreachable.stderr
    refused = run_forge(*base, "-m", "pricey")
    assert refused.returncode == 3, refused.stderr
    assert fake.requests_for("pricey-1") == []


def test_lint_findings_in_the_users_test_file_do_not_fail_a_candidate(
    fake: FakeProvider, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "wc"\nversion = "0"\n\n[tool.ruff.lint]\nselect = ["I", "F"]\n'
    )
    target = project / "wordcount.py"
    target.write_text("def word_count(text):\n    raise NotImplementedError\n")
    tests = tmp_path / "test_wordcount.py"
    # Imports out of order (ruff's I001), in the user's test file, not in the answer.
    unsorted = "import sys\nimport os\n\n" + TESTS + "\n\nassert os.sep and sys.argv\n"
    tests.write_text(unsorted, encoding="utf-8")
    fake.script("dear-1", Reply(text=CANDIDATES["dear"][1]))
    config = write(tmp_path, config_for(fake.url))
    done = run_forge(
        "fanout",
        "Implement word_count.",
        "-m",
        "dear",
        "--validate",
        "--target",
        str(target),
        "--tests",
        str(tests),
        "--json",
        "--config",
        str(config),
    )
    assert done.returncode == 0, done.stderr
    (only,) = json.loads(done.stdout)["candidates"]
    assert only["status"] == "passed" and only["tests_passed"] == 3, only
    assert only["failed_checks"] == [] and only["test_file_findings"] >= 1
    assert "findings in the test file (not counted)" in only["summary"]
    assert tests.read_text() == unsorted, "the user's test file is untouched"


def test_a_candidate_is_validated_without_the_configured_key(
    fake: FakeProvider, tmp_path: Path
) -> None:
    """The key variable the configuration names is dropped from the candidates' validators
    even when its name does not look like a credential."""
    seen = tmp_path / "seen.json"
    spy = (
        "```python\nimport json\nimport os\n\n"
        f"with open({str(seen)!r}, 'w') as out:\n    json.dump(dict(os.environ), out)\n\n\n"
        "def word_count(text):\n    return len(text.split())\n```"
    )
    fake.script("dear-1", Reply(text=spy))
    tests = tmp_path / "test_wordcount.py"
    tests.write_text(TESTS, encoding="utf-8")
    text = config_for(fake.url).replace(
        "[providers.fake]\n", '[providers.fake]\napi_key_env = "LLM_GATEWAY"\n', 1
    )
    config = write(tmp_path, text)

    done = run_forge(
        "fanout",
        "Write word_count(text) in Python.",
        "-m",
        "dear",
        "--validate",
        "--tests",
        str(tests),
        "--config",
        str(config),
        env={"LLM_GATEWAY": "gw-0123456789abcdef"},
    )

    assert done.returncode == 0, done.stderr
    environment = json.loads(seen.read_text())
    assert "LLM_GATEWAY" not in environment and "PATH" in environment
    assert "gw-0123456789abcdef" not in seen.read_text()
