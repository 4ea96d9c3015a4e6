"""`forge fanout --input prompts.jsonl`: prompts x models, graded, with a leaderboard and A/B."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forge.fanout.answers import Answer, Status
from forge.fanout.batch import BatchPrompt, Grade, grade
from forge.fanout.stats import mcnemar_exact, percentile, wilson_interval
from forge.testing.fake_provider import FakeProvider, Fault, Reply
from tests.conftest import run_forge
from tests.test_fanout import fanout_config, write

CHECK = """\
from solution import double

assert double(2) == 4
assert double(-3) == -6
"""


def test_leaderboard_with_intervals_and_a_significant_paired_difference(
    fake: FakeProvider, tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    lines = [json.dumps({"prompt": f"What is 40 + 2? ({i})", "expected": "42"}) for i in range(10)]
    prompts.write_text("\n".join(lines) + "\n")
    # Replies are handed out in arrival order, so only counts are scripted, never pairings:
    # alpha is always right; beta twice.
    fake.script("alpha-1", Reply(text="The answer is 42.", latency=0.05))
    fake.script("beta-1", Reply(text="42"), Reply(text="42"), Reply(text="It is 142, or 7."))
    config = write(tmp_path, fanout_config(fake.url, ["alpha", "beta"]))
    done = run_forge(
        "fanout", "--input", str(prompts), "-m", "alpha,beta", "--json", "-c", str(config)
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert [row["model"] for row in data["leaderboard"]] == ["alpha", "beta"]
    board = {row["model"]: row for row in data["leaderboard"]}
    assert board["alpha"]["passed"] == 10 and board["alpha"]["pass_rate"] == 1.0
    assert board["beta"]["passed"] == 2 and board["beta"]["graded"] == 10
    low, high = board["alpha"]["pass_rate_95ci"]
    assert low == pytest.approx(0.7225, abs=1e-3) and high == pytest.approx(1.0)
    assert board["alpha"]["latency_p50_s"] is not None and board["alpha"]["cost_usd"] != "0"
    paired = data["paired"]
    assert (paired["both"], paired["only_a"], paired["only_b"]) == (2, 8, 0)
    assert paired["p_value"] == pytest.approx(2 / 256) and paired["significant"] is True
    assert len(data["answers"]) == 20
    # Saved like any run, and printed again without asking the models.
    shown = run_forge("fanout", "--show", data["run_id"])
    assert "Leaderboard: 10 prompts" in shown.stdout
    assert "significant at the 5% level: alpha is better" in shown.stdout
    assert len(fake.requests_for("alpha-1")) == 10


def test_a_test_command_grades_code_answers(fake: FakeProvider, tmp_path: Path) -> None:
    (tmp_path / "check.py").write_text(CHECK)
    prompts = tmp_path / "prompts.jsonl"
    line = {
        "id": "double",
        "prompt": "Write double(x) in Python.",
        "test": "python check.py",
        "files": ["check.py"],
    }
    prompts.write_text(json.dumps(line) + "\n" + json.dumps("Just say hi.") + "\n")
    fake.script("alpha-1", Reply(text="```python\ndef double(x):\n    return 2 * x\n```"))
    fake.script("beta-1", Reply(text="```python\ndef double(x):\n    return x + 2\n```"))
    config = write(tmp_path, fanout_config(fake.url, ["alpha", "beta"]))
    done = run_forge(
        "fanout", "--input", str(prompts), "-m", "alpha,beta", "--json", "-c", str(config)
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    grades = {a["key"]: a["grade"] for a in data["answers"]}
    assert grades["double/alpha"] == {"passed": True, "detail": "test passed"}
    assert grades["double/beta"]["passed"] is False
    assert grades["2/alpha"]["passed"] is None, "a bare prompt has nothing to grade it by"
    board = {row["model"]: row for row in data["leaderboard"]}
    assert board["alpha"]["graded"] == 1 and board["alpha"]["passed"] == 1
    assert data["paired"]["pairs"] == 1 and data["paired"]["significant"] is False


def test_bad_input_lines_are_usage_errors(tmp_path: Path, fake: FakeProvider) -> None:
    config = write(tmp_path, fanout_config(fake.url, ["alpha"]))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "ok"}\n{"prompt": 3}\n')
    done = run_forge("fanout", "--input", str(prompts), "-m", "alpha", "-c", str(config))
    assert done.returncode == 2 and "prompts.jsonl:2" in done.stderr
    prompts.write_text('{"prompt": "ok", "expect": "typo"}\n')
    done = run_forge("fanout", "--input", str(prompts), "-m", "alpha", "-c", str(config))
    assert done.returncode == 2 and "unknown key 'expect'" in done.stderr


def test_statistics() -> None:
    low, high = wilson_interval(9, 10)  # type: ignore[misc]
    assert low == pytest.approx(0.5958, abs=1e-4) and high == pytest.approx(0.9821, abs=1e-4)
    assert wilson_interval(0, 0) is None
    assert wilson_interval(0, 5) == (0.0, pytest.approx(0.4345, abs=1e-4))
    assert mcnemar_exact(8, 0) == pytest.approx(0.0078125)
    assert mcnemar_exact(6, 1) == pytest.approx(0.125)
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([5.0], 0.95) == 5.0 and percentile([], 0.5) is None


def test_untrusted_lines_are_refused_before_any_call(tmp_path: Path, fake: FakeProvider) -> None:
    config = write(tmp_path, fanout_config(fake.url, ["alpha"]))
    prompts = tmp_path / "prompts.jsonl"
    bad = [
        ({"prompt": "p", "test": 5}, '"test" must be a string'),
        ({"prompt": "p", "test": "python 'check.py"}, '"test" is not a valid command line'),
        ({"prompt": "p", "system": 5}, '"system" must be a string'),
        ({"prompt": "p", "id": ["x"]}, '"id" must be a string'),
        ({"prompt": "p", "expected": ""}, '"expected" must be a non-empty string'),
        ({"prompt": "p", "expected": 42}, '"expected" must be a non-empty string'),
    ]
    for line, message in bad:
        prompts.write_text(json.dumps({"prompt": "fine"}) + "\n" + json.dumps(line) + "\n")
        done = run_forge("fanout", "--input", str(prompts), "-m", "alpha", "-c", str(config))
        assert done.returncode == 2, (line, done.stderr)
        assert "prompts.jsonl:2" in done.stderr and message in done.stderr, done.stderr
    assert fake.requests_for("alpha-1") == [], "no model was asked"


def test_files_stay_inside_the_scratch_folder(tmp_path: Path, fake: FakeProvider) -> None:
    config = write(tmp_path, fanout_config(fake.url, ["alpha"]))
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    prompts = work / "prompts.jsonl"
    outside = tmp_path / "x"
    bad = [
        {"prompt": "p", "test": "true", "file": "../../x"},
        {"prompt": "p", "test": "true", "file": str(outside)},
        {"prompt": "p", "test": "true", "files": ["../../x"]},
        {"prompt": "p", "test": "true", "files": ["/etc/hostname"]},
        {"prompt": "p", "test": "true", "file": "sub/../../x"},
    ]
    fake.script("alpha-1", Reply(text="```python\nprint('pwned')\n```"))
    for line in bad:
        prompts.write_text(json.dumps(line) + "\n")
        done = run_forge("fanout", "--input", str(prompts), "-m", "alpha", "-c", str(config))
        assert done.returncode == 2, (line, done.stderr)
        assert "prompts.jsonl:1" in done.stderr and "test folder" in done.stderr, done.stderr
    assert not outside.exists(), "nothing was written outside the scratch folder"
    assert fake.requests_for("alpha-1") == []


def test_a_test_command_that_does_not_parse_is_a_failing_grade(tmp_path: Path) -> None:
    answer = Answer("1/alpha", "alpha", "fake", "alpha-1", status=Status.OK, pieces=["x = 1"])
    broken = BatchPrompt(0, "1", "p", test="python 'check.py", base=tmp_path)
    assert grade(broken, answer) == Grade(
        False, "the test command does not parse: No closing quotation"
    )
    outside = BatchPrompt(0, "1", "p", test="true", file="../x", base=tmp_path)
    assert grade(outside, answer).passed is False
    assert not (tmp_path.parent / "x").exists()


def test_a_batch_the_budget_refused_entirely_exits_3(tmp_path: Path, fake: FakeProvider) -> None:
    text = fanout_config(fake.url, [], extra="\n[cost]\ndaily_budget_usd = 0.05\n")
    text += (
        '\n[models.pricey]\nprovider = "fake"\nid = "pricey-1"\ninput_price = 100000\n'
        "output_price = 100000\nmax_output_tokens = 1000\n"
    )
    config = write(tmp_path, text)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "2 + 2?", "expected": "4"}) + "\n")
    done = run_forge("fanout", "--input", str(prompts), "-m", "pricey", "-c", str(config))
    assert done.returncode == 3, done.stderr
    assert fake.requests_for("pricey-1") == []
    fake.script("down-1", Reply(fault=Fault.NOT_FOUND))
    config = write(tmp_path, fanout_config(fake.url, ["down"]))
    done = run_forge("fanout", "--input", str(prompts), "-m", "down", "-c", str(config))
    assert done.returncode == 4, done.stderr


def test_ctrl_c_while_grading_keeps_what_was_graded_and_exits_130(
    tmp_path: Path, fake: FakeProvider
) -> None:
    marker = tmp_path / "slow-started"
    (tmp_path / "slow.py").write_text(
        f"import pathlib, time\npathlib.Path({str(marker)!r}).write_text('x')\ntime.sleep(60)\n"
    )
    prompts = tmp_path / "prompts.jsonl"
    lines = [
        {"id": "quick", "prompt": "2 + 2?", "expected": "4"},
        {"id": "slow", "prompt": "Code?", "test": "python slow.py", "files": ["slow.py"]},
    ]
    prompts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    fake.script("alpha-1", Reply(text="4"))
    config = write(tmp_path, fanout_config(fake.url, ["alpha"]))
    command = [sys.executable, "-m", "forge", "fanout", "--input", str(prompts), "-m", "alpha"]
    process = subprocess.Popen(
        [*command, "--json", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), "the slow test started"
    process.send_signal(signal.SIGINT)
    # The slow test sleeps 60 s: forge ending within 30 means it was stopped, not waited for.
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    data = json.loads(stdout)
    assert data["interrupted"] is True
    grades = {a["key"]: a["grade"] for a in data["answers"]}
    assert grades["quick/alpha"] == {"passed": True, "detail": "expected answer found"}
    assert grades["slow/alpha"] == {"passed": None, "detail": "interrupted before it was graded"}
    (row,) = data["leaderboard"]
    assert (row["graded"], row["passed"]) == (1, 1)
    shown = run_forge("fanout", "--show", data["run_id"])
    assert "Interrupted while grading: 1 answers were left ungraded" in shown.stdout


def test_a_graded_answer_runs_without_the_key_and_in_the_sandbox_when_asked(
    fake: FakeProvider, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The answer's code runs under the prompt's test command: it sees no configured key,
    and with `[validation] sandbox = "bwrap"` it cannot write outside its scratch folder."""
    (tmp_path / "check.py").write_text(CHECK)
    # Outside the private /tmp and home a sandbox gives (writes there vanish with it).
    seen = Path("/var/tmp") / f"forge-{tmp_path.name}-{os.getpid()}.json"
    request.addfinalizer(lambda: seen.unlink(missing_ok=True))
    spy = (
        "```python\nimport json\nimport os\n\n"
        f"with open({str(seen)!r}, 'w') as out:\n    json.dump(dict(os.environ), out)\n\n\n"
        "def double(x):\n    return 2 * x\n```"
    )
    line = {"prompt": "Write double(x).", "test": "python check.py", "files": ["check.py"]}
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps(line) + "\n")
    text = fanout_config(fake.url, ["alpha"]).replace(
        "base_url", 'api_key_env = "LLM_GATEWAY"\nbase_url', 1
    )
    config = write(tmp_path, text)
    key = {"LLM_GATEWAY": "gw-0123456789abcdef"}

    def graded() -> bool:
        fake.script("alpha-1", Reply(text=spy))
        done = run_forge(
            "fanout", "--input", str(prompts), "-m", "alpha", "--json", "-c", str(config), env=key
        )
        assert done.returncode in (0, 1), done.stderr
        return bool(json.loads(done.stdout)["leaderboard"][0]["passed"])

    assert graded()
    assert "LLM_GATEWAY" not in json.loads(seen.read_text()) and "PATH" in seen.read_text()
    seen.unlink()
    config.write_text(config.read_text() + '\n[validation]\nsandbox = "bwrap"\n')
    assert not graded()  # its write outside failed, and so did the test
    assert not seen.exists()
