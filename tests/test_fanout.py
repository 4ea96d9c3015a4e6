"""`forge fanout` through the real CLI against the fake providers: streaming, failures as rows,
the deadline, budget refusals, Ctrl-C, the comparison, and saved runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from forge.fanout.answers import Answer, Status
from forge.fanout.comparison import MATRIX_LIMIT, compare
from forge.ledger import Ledger
from forge.providers.client import _origin
from forge.testing.fake_provider import FakeProvider, Fault, Reply
from tests.conftest import run_forge

CAPITAL = "The capital of France is Paris, a city on the Seine."
AGREE = (
    CAPITAL,
    "Paris is the capital of France, a city on the Seine.",
    "The capital of France is Paris, the city on the Seine river.",
)
DISAGREE = (
    "Lyon has been the French capital since 1950 according to my notes.",
    "No country called France exists in my training data; I cannot say.",
)


def fanout_config(
    url: str, models: list[str], timeouts: str = "", extra: str = "", price: str = "1"
) -> str:
    """A forge.toml with one provider on the fake server and one model per name (id NAME-1)."""
    lines = [f'[providers.fake]\nbase_url = "{url}/v1"\n{timeouts}']
    for name in models:
        lines.append(
            f'[models.{name}]\nprovider = "fake"\nid = "{name}-1"\ntier = "free"\n'
            f"input_price = {price}\noutput_price = {price}\n"
        )
    return "\n".join(lines) + extra


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "forge.toml"
    path.write_text(text, encoding="utf-8")
    return path


def fanout_json(*args: str) -> dict[str, object]:
    done = run_forge("fanout", *args, "--json")
    assert done.returncode in (0, 130), done.stderr
    data: dict[str, object] = json.loads(done.stdout)
    return data


def rows(data: dict[str, object]) -> dict[str, dict[str, object]]:
    answers = data["answers"]
    assert isinstance(answers, list)
    return {a["key"]: a for a in answers}


# -- execution ------------------------------------------------------------------------------------


def test_twenty_models_at_once_give_seventeen_answers_and_three_error_rows(
    fake: FakeProvider, tmp_path: Path
) -> None:
    names = [f"m{i:02d}" for i in range(20)]
    for i, name in enumerate(names[:17]):
        fake.script(f"{name}-1", Reply(text=f"answer {i} " * 5, latency=0.2 + 0.03 * i))
    fake.script("m17-1", Reply(fault=Fault.RATE_LIMIT, latency=0.3, retry_after=0.1))
    fake.script("m18-1", Reply(fault=Fault.STALL, latency=0.3, stall_seconds=10))
    fake.script("m19-1", Reply(fault=Fault.MALFORMED, latency=0.3))
    fake.hold_until_open = 20  # no call is answered until all twenty are open at once
    timers = "[providers.fake.timeout]\nfirst_token = 1.0\n"
    config = write(tmp_path, fanout_config(fake.url, names, timers))
    done = run_forge("fanout", "Say something.", "-m", ",".join(names), "--config", str(config))
    assert done.returncode == 0, done.stderr
    # Without a terminal: one plain line per finished model, then the table.
    plain = [line for line in done.stdout.splitlines() if line.startswith("m") and "tok/s" in line]
    assert len(plain) == 20
    data = fanout_json("--show", "last")
    by_key = rows(data)
    assert [k for k, a in by_key.items() if a["status"] == "ok"] == names[:17]
    assert by_key["m17"]["status"] == "failed"
    assert "rate_limit (HTTP 429)" in str(by_key["m17"]["cause"])
    assert by_key["m18"]["status"] == "timeout"
    assert "no first token" in str(by_key["m18"]["cause"])
    assert by_key["m19"]["status"] == "failed"
    assert "malformed_response" in str(by_key["m19"]["cause"])
    # Every request was in flight at the same moment (how long that takes is bench/'s to say).
    assert fake.max_concurrent_streams == 20
    assert data["counts"] == {"ok": 17, "failed": 2, "timeout": 1}


def test_deadline_marks_late_answers_and_keeps_what_arrived(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("quick-1", Reply(text=CAPITAL, latency=0.1))
    fake.script("slow-1", Reply(text="one two three four five six", tokens_per_second=2))
    fake.script("asleep-1", Reply(text="never", latency=20))
    config = write(tmp_path, fanout_config(fake.url, ["quick", "slow", "asleep"]))
    data = fanout_json(
        "Capital?", "-m", "quick,slow,asleep", "--deadline", "1.2", "-c", str(config)
    )
    by_key = rows(data)
    assert by_key["quick"]["status"] == "ok"
    assert by_key["slow"]["status"] == "late" and by_key["asleep"]["status"] == "late"
    assert str(by_key["slow"]["text"]).startswith("one two"), "what arrived is kept"
    assert "deadline" in str(by_key["asleep"]["cause"])
    assert data["deadline_passed"] is True
    # The cut-off stream was charged in the ledger; the run's row says what it cost too.
    assert by_key["slow"]["cost_usd"] not in (None, "0"), by_key["slow"]


def test_budget_refusal_is_a_row_with_its_cause(fake: FakeProvider, tmp_path: Path) -> None:
    fake.script("cheap-1", Reply(text=CAPITAL))
    text = fanout_config(fake.url, ["cheap"], extra="\n[cost]\ndaily_budget_usd = 0.05\n")
    text += (
        '\n[models.dear]\nprovider = "fake"\nid = "dear-1"\ninput_price = 100000\n'
        "output_price = 100000\nmax_output_tokens = 1000\n"
    )
    config = write(tmp_path, text)
    done = run_forge("fanout", "Capital?", "-m", "cheap,dear", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "refused" in done.stdout and "budget" in done.stdout
    by_key = rows(fanout_json("--show", "last"))
    assert by_key["cheap"]["status"] == "ok"
    assert by_key["dear"]["status"] == "refused"
    assert "daily stop threshold" in str(by_key["dear"]["cause"])
    assert fake.requests_for("dear-1") == [], "a refused call is never sent"
    only = run_forge("fanout", "Capital?", "-m", "dear", "--config", str(config))
    assert only.returncode == 3, "every call refused by the budget: exit 3"


def test_a_spent_budget_never_refuses_a_free_model_and_its_reason_is_shown_whole(
    fake: FakeProvider, tmp_path: Path
) -> None:
    for name in ("paid", "zero", "home"):
        fake.script(f"{name}-1", Reply(text=CAPITAL, output_tokens=5))
    models = (
        '\n[models.paid]\nprovider = "fake"\nid = "paid-1"\ninput_price = 50000\n'
        "output_price = 50000\nmax_output_tokens = 10\n"
        '\n[models.zero]\nprovider = "fake"\nid = "zero-1"\ninput_price = 0\noutput_price = 0\n'
        '\n[models.home]\nprovider = "fake"\nid = "home-1"\ntier = "local"\n'  # no prices
    )
    rich = write(tmp_path, fanout_config(fake.url, [], extra=models))
    first = run_forge("fanout", "Capital?", "-m", "paid", "-c", str(rich))
    assert first.returncode == 0, first.stderr  # the default $5 a day holds it
    # The day's spend is now past a $0.10 stop: the paid model is refused, the free ones are not.
    (tmp_path / "budget.toml").write_text(
        fanout_config(fake.url, [], extra=models + "\n[cost]\ndaily_budget_usd = 0.1\n"),
        encoding="utf-8",
    )
    ask = ["Capital?", "-m", "paid,zero,home", "-c", str(tmp_path / "budget.toml")]
    by_key = rows(fanout_json(*ask))
    assert by_key["zero"]["status"] == "ok" and by_key["home"]["status"] == "ok", by_key
    assert by_key["paid"]["status"] == "refused"
    assert "may cost up to $0.0000" not in json.dumps(by_key)
    assert len(fake.requests_for("zero-1")) == 1 and len(fake.requests_for("home-1")) == 1
    # The table shows the refusal's reason whole, wrapped in its cell, not cut with an ellipsis.
    reason = str(by_key["paid"]["cause"])
    assert len(reason) > 150 and reason.endswith("more is needed"), reason
    table = run_forge("fanout", "--show", "last", env={"COLUMNS": "120"}).stdout
    cells = [line.split("│")[1:-1] for line in table.splitlines() if line.count("│") == 10]
    start = next(i for i, row in enumerate(cells) if row[0].strip() == "paid")
    end = next(i for i, row in enumerate(cells) if i > start and row[0].strip())
    shown = " ".join(row[-1].strip() for row in cells[start:end])
    assert shown == " ".join(reason.split()), table


def test_no_model_reachable_exits_4_and_unknown_model_exits_2(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("down-1", Reply(fault=Fault.NOT_FOUND))
    config = write(tmp_path, fanout_config(fake.url, ["down"]))
    done = run_forge("fanout", "hi", "-m", "down", "--config", str(config))
    assert done.returncode == 4
    assert "not_found (HTTP 404)" in done.stdout
    wrong = run_forge("fanout", "hi", "-m", "dwon", "--config", str(config))
    assert wrong.returncode == 2 and "did you mean 'down'" in wrong.stderr


def free_port() -> int:
    """A port nothing listens on: bound to learn its number, then closed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


STOPPED_SERVER = """
[providers.{provider}]
base_url = "http://{host}:{port}/v1"
{discover}

[models.local-model]
provider = "{provider}"
id = "qwen2.5-coder:7b"
tier = "local"
"""


def test_a_stopped_local_server_fails_at_once_with_what_to_start_and_never_cools_down(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = write(
        tmp_path,
        STOPPED_SERVER.format(
            provider="ollama", host="localhost", port=port, discover='discover = "ollama"'
        ),
    )
    for _run in range(3):  # runs used to take 2 s, then 32 s, then 280 s
        done = run_forge("fanout", "hi", "-m", "local-model", "-c", str(config), "--json")
        assert done.returncode == 4, done.stderr
        answer = rows(json.loads(done.stdout))["local-model"]
        assert answer["status"] == "failed" and answer["error_kind"] == "connection"
        cause = str(answer["cause"])
        assert f"nothing listens on localhost:{port} — is `ollama serve` running?" in cause
        assert "cooling" not in cause
        assert answer["attempts"] == 1, "a refused connection is not retried"
    ledger = Ledger.open()
    assert len(ledger.attempts(limit=None)) == 3, "one attempt a run, each sent at once"
    assert not ledger.breakers(), "no cooldown was saved for the next run to wait on"


def test_a_refused_connection_under_a_deadline_is_not_called_overloaded(tmp_path: Path) -> None:
    port = free_port()
    config = write(
        tmp_path, STOPPED_SERVER.format(provider="lab", host="127.0.0.1", port=port, discover="")
    )
    done = run_forge("fanout", "hi", "-m", "local-model", "-c", str(config), "--deadline", "2")
    assert done.returncode == 4
    assert f"nothing listens on 127.0.0.1:{port} — is the server running?" in done.stdout
    assert "overloaded" not in done.stdout
    assert "1 failed" in done.stdout


def test_without_models_fanout_asks_the_configured_ones_or_says_how_to_set_them(
    fake: FakeProvider, tmp_path: Path
) -> None:
    for name in ("one", "two", "three"):
        fake.script(f"{name}-1", Reply(text=CAPITAL))
    bare = fanout_config(fake.url, ["one", "two", "three"])
    config = write(tmp_path, bare)
    unset = run_forge("fanout", "Capital?", "-c", str(config))
    assert unset.returncode == 2 and "Traceback" not in unset.stderr
    assert "-m a,b,c, --tier NAME or --all" in unset.stderr
    toml = unset.stderr.split("\n\n", 1)[1]  # the TOML the message gives, pasted as it is
    write(tmp_path, bare + "\n" + toml)
    assert sorted(rows(fanout_json("Capital?", "-c", str(config)))) == ["one", "three", "two"]
    write(tmp_path, bare + '\n[fanout]\nmodels = ["three"]\ntier = "free"\n')
    asked = list(rows(fanout_json("Capital?", "-c", str(config))))
    assert asked == ["three", "one", "two"], "the models first, then the tier's, each once"
    assert list(rows(fanout_json("Capital?", "-m", "two", "-c", str(config)))) == ["two"]
    write(tmp_path, bare + '\n[fanout]\nmodel = ["three"]\n')
    typo = run_forge("fanout", "Capital?", "-c", str(config))
    assert typo.returncode == 2 and "fanout.model: unknown key 'model'" in typo.stderr
    assert "did you mean 'models'" in typo.stderr


def test_sigint_prints_the_partial_table_and_exits_130(fake: FakeProvider, tmp_path: Path) -> None:
    fake.script("fast-1", Reply(text=CAPITAL, latency=0.1))
    fake.script("fast2-1", Reply(text=CAPITAL, latency=0.2))
    fake.script("slow-1", Reply(text="too late", latency=60))
    fake.script("stuck-1", Reply(text="a b c d e f g", tokens_per_second=0.2))
    config = write(tmp_path, fanout_config(fake.url, ["fast", "fast2", "slow", "stuck"]))
    process = subprocess.Popen(
        [sys.executable, "-m", "forge", "fanout", "Capital?", "-m", "fast,fast2,slow,stuck"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "FORGE_CONFIG": str(config)},
    )
    assert process.stdout is not None
    seen = []
    while len([line for line in seen if " done " in line]) < 2:
        line = process.stdout.readline()
        assert line, "forge ended before the first answers"
        seen.append(line)
    process.send_signal(signal.SIGINT)
    rest, errors = process.communicate(timeout=30)
    assert process.returncode == 130, errors
    assert "Interrupted" in rest
    table = rest[rest.index("forge fanout") :]
    for name in ("fast", "fast2", "slow", "stuck"):
        assert name in table
    assert table.count("cancelled") >= 2
    saved = rows(fanout_json("--show", "last"))
    assert saved["slow"]["status"] == "cancelled" and saved["fast"]["status"] == "ok"
    assert str(saved["stuck"]["text"]).startswith("a"), "what arrived before Ctrl-C is kept"


def test_live_table_on_a_terminal(fake: FakeProvider, tmp_path: Path) -> None:
    import pty

    fake.script("alpha-1", Reply(text=CAPITAL, latency=0.3))
    fake.script("beta-1", Reply(text=AGREE[1], latency=0.6))
    config = write(tmp_path, fanout_config(fake.url, ["alpha", "beta"]))
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "forge",
            "fanout",
            "Capital?",
            "-m",
            "alpha,beta",
            "-c",
            str(config),
        ],
        stdout=follower,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "160", "LINES": "40"},
    )
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    process.wait(timeout=30)
    os.close(leader)
    text = output.decode("utf-8", "replace")
    assert process.returncode == 0
    assert "streaming" in text or "waiting" in text, "the live table showed rows in flight"
    assert "ttft" not in text, "no plain progress lines on a terminal"
    assert "Consensus" in text


# -- comparison -----------------------------------------------------------------------------------


def test_consensus_and_clusters_for_three_agreeing_and_two_disagreeing(
    fake: FakeProvider, tmp_path: Path
) -> None:
    names = ["a1", "a2", "a3", "d1", "d2"]
    for name, text in zip(names, AGREE + DISAGREE, strict=True):
        fake.script(f"{name}-1", Reply(text=text))
    config = write(tmp_path, fanout_config(fake.url, names))
    data = fanout_json("Capital of France?", "-m", ",".join(names), "-c", str(config))
    comparison = data["comparison"]
    assert isinstance(comparison, dict)
    assert comparison["consensus"] == "a1", "the most central of the agreeing three"
    assert comparison["share"] == 0.6
    clusters = comparison["clusters"]
    assert sorted(clusters[0]) == ["a1", "a2", "a3"]
    assert sorted(map(tuple, clusters[1:])) == [("d1",), ("d2",)]
    assert comparison["outside_consensus"] == ["d1", "d2"]
    matrix = comparison["matrix"]
    assert matrix["models"] == names and len(matrix["similarity"]) == 5
    assert matrix["similarity"][0][1] > 0.6 > matrix["similarity"][0][3]
    assert set(comparison["diffs"]) == {"a2", "a3", "d1", "d2"}
    assert "{+Lyon" in comparison["diffs"]["d1"]["diff"]

    different = run_forge("fanout", "--show", "last", "--show", "different")
    assert different.returncode == 0
    assert "Lyon" in different.stdout and "No country" in different.stdout
    assert "Seine river" not in different.stdout, "only the answers outside the consensus"


def test_code_blocks_compared_with_formatting_and_comments_set_aside(
    fake: FakeProvider, tmp_path: Path
) -> None:
    black = (
        "Here it is:\n\n```python\ndef area(width, height):\n"
        '    """Rectangle area."""\n    # multiply the sides\n'
        "    return width * height\n\n\nprint(area(2, 3), 'done')\n```\n"
    )
    squashed = (
        "Sure.\n```py\ndef area(width,height):\n"
        "  '''Rectangle area.'''\n  return width*height  # product\n"
        'print(area(2,3), "done")\n```'
    )
    wrong = "```python\ndef area(width, height):\n    return width + height\n```"
    for name, text in (("black", black), ("squashed", squashed), ("wrong", wrong)):
        fake.script(f"{name}-1", Reply(text=text))
    config = write(tmp_path, fanout_config(fake.url, ["black", "squashed", "wrong"]))
    data = fanout_json("Write area().", "-m", "black,squashed,wrong", "-c", str(config))
    code = data["comparison"]["code"]  # type: ignore[index]
    assert code["answers"] == ["black", "squashed", "wrong"]
    assert sorted(code["identical_groups"][0]) == ["black", "squashed"]
    assert code["identical_groups"][1] == ["wrong"]
    assert code["similarity"][0][1] == 1.0 and code["similarity"][0][2] < 1.0
    assert set(code["diffs"]) == {"wrong"}
    assert "+return width + height" in code["diffs"]["wrong"]


def test_json_markdown_and_saved_runs(fake: FakeProvider, tmp_path: Path) -> None:
    fake.script("alpha-1", Reply(text=CAPITAL))
    fake.script("beta-1", Reply(text=DISAGREE[0]))
    config = write(tmp_path, fanout_config(fake.url, ["alpha", "beta"]))
    data = fanout_json("Capital?", "--tier", "free", "--system", "Be brief.", "-c", str(config))
    run_id = str(data["run_id"])
    assert data["settings"]["system"] == "Be brief."  # type: ignore[index]
    sent = fake.requests_for("alpha-1")[0].body["messages"]
    assert sent[0] == {"role": "system", "content": "Be brief."}
    again = fanout_json("--show", run_id[:-2])  # a unique start of the id will do
    assert again["answers"] == data["answers"] and again["comparison"] == data["comparison"]
    markdown = run_forge("fanout", "--show", run_id, "--markdown").stdout
    assert markdown.startswith(f"# forge fanout {run_id}")
    assert "| alpha | free | done |" in markdown and "### Agreement matrix" in markdown
    listing = run_forge("fanout", "--list")
    assert run_id in listing.stdout
    logs = run_forge("logs", "--run", run_id, "--json")
    assert {a["model"] for a in json.loads(logs.stdout)["attempts"]} == {"alpha", "beta"}
    missing = run_forge("fanout", "--show", "fo-nope")
    assert missing.returncode == 2 and "no saved fan-out run" in missing.stderr


def test_selection_by_tier_all_and_cap(fake: FakeProvider, tmp_path: Path) -> None:
    for name in ("one", "two", "three"):
        fake.script(f"{name}-1", Reply(text=CAPITAL))
    text = fanout_config(fake.url, ["one", "two"])
    text += '\n[models.three]\nprovider = "fake"\nid = "three-1"\ntier = "paid"\n'
    text += "input_price = 1\noutput_price = 1\n"
    config = write(tmp_path, text)
    assert list(rows(fanout_json("q", "--tier", "paid", "-c", str(config)))) == ["three"]
    assert list(rows(fanout_json("q", "--all", "-n", "2", "-c", str(config)))) == ["one", "two"]
    mixed = fanout_json("q", "-m", "fake/three-1", "-m", "one", "-c", str(config))
    assert list(rows(mixed)) == ["fake/three-1", "one"]


# -- connection pools -----------------------------------------------------------------------------


async def test_a_fanout_wider_than_one_pool_runs_all_at_once(
    fake: FakeProvider, tmp_path: Path
) -> None:
    from forge.config import parse_config_text
    from forge.fanout.answers import Settings
    from forge.fanout.execution import execute, request_for
    from forge.ledger import Ledger
    from forge.providers.client import POOL_SIZE, ModelClient

    count = 2 * POOL_SIZE + 20
    names = [f"w{i}" for i in range(count)]
    for name in names:
        fake.script(f"{name}-1", Reply(text="same answer"))
    # Each request waits until all are open at once: a pool that held one back would leave
    # them all waiting, and fewer than `count` would ever be open together.
    fake.hold_until_open = count
    config = parse_config_text(fanout_config(fake.url, names))
    async with ModelClient(config, ledger=Ledger(tmp_path / "ledger.db")) as client:
        requests = [request_for(client.resolve(n), "hi", None) for n in names]
        await execute(client, requests, Settings())
    assert all(r.answer.ok for r in requests)
    assert fake.max_concurrent_streams == count, "no pool held a call back"


def test_a_providers_proxy_carries_its_calls(fake: FakeProvider, tmp_path: Path) -> None:
    fake.script("alpha-1", Reply(text=CAPITAL))
    text = fanout_config("http://models.example.invalid", ["alpha"])
    text = text.replace('/v1"\n', f'/v1"\nproxy = "{fake.url}"\n', 1)
    config = write(tmp_path, text)
    data = fanout_json("Capital?", "-m", "alpha", "-c", str(config))
    assert rows(data)["alpha"]["status"] == "ok"
    assert fake.requests[0].path == "http://models.example.invalid/v1/chat/completions"


# -- comparison, beyond what a matrix can hold ---------------------------------------------------


def answered(texts: list[str]) -> list[Answer]:
    found = []
    for i, text in enumerate(texts):
        answer = Answer(f"k{i:03d}", f"k{i:03d}", "fake", "m")
        answer.status, answer.pieces = Status.OK, [text]
        found.append(answer)
    return found


def test_many_distinct_answers_cluster_without_a_matrix() -> None:
    majority = "the quick brown fox jumps over the lazy dog near the river bank today"
    minority = "a completely different reply about compilers parsers and type systems"
    texts = [f"{majority} {i}" for i in range(MATRIX_LIMIT)]
    texts += [f"{minority} {i}" for i in range(40)]
    found = compare(answered(texts))
    assert found.matrix is None
    assert [len(c.members) for c in found.clusters] == [MATRIX_LIMIT, 40]
    assert found.consensus is not None and found.consensus < f"k{MATRIX_LIMIT:03d}"
    assert len(found.outside()) == 40


def test_no_two_answers_agree_means_no_consensus() -> None:
    found = compare(answered(["alpha beta gamma", "delta epsilon zeta", "eta theta iota"]))
    assert not found.agreed and len(found.clusters) == 3
    assert compare(answered(["only one"])).agreed


def test_empty_answers_are_left_out_and_never_form_the_consensus(
    fake: FakeProvider, tmp_path: Path
) -> None:
    names = ["e1", "e2", "e3", "r1", "r2"]
    for name in names[:3]:
        fake.script(f"{name}-1", Reply(text="  \n ... \n"))
    fake.script("r1-1", Reply(text=AGREE[0]))
    fake.script("r2-1", Reply(text=AGREE[1]))
    config = write(tmp_path, fanout_config(fake.url, names))
    data = fanout_json("Capital?", "-m", ",".join(names), "--config", str(config))
    comparison = data["comparison"]
    assert isinstance(comparison, dict)
    assert comparison["consensus"] in ("r1", "r2") and comparison["consensus_reason"] is None
    assert comparison["empty"] == ["e1", "e2", "e3"]
    assert comparison["compared"] == ["r1", "r2"]
    assert all(k not in comparison["outside_consensus"] for k in ("r1", "r2"))
    terminal = run_forge("fanout", "--show", str(data["run_id"]))
    assert "Left out as empty (no words): e1, e2, e3" in terminal.stdout
    assert "(empty: left out of the comparison)" in terminal.stdout
    only_empty = compare(answered(["", "  ", "?!"]))
    assert only_empty.keys == () and only_empty.consensus is None
    assert only_empty.empty == ("k000", "k001", "k002") and only_empty.reason == "no_answers"


def test_one_answer_is_never_called_a_consensus(fake: FakeProvider, tmp_path: Path) -> None:
    fake.script("solo-1", Reply(text=AGREE[0]))
    fake.script("gone-1", Reply(fault=Fault.AUTH))
    config = write(tmp_path, fanout_config(fake.url, ["solo", "gone"]))
    data = fanout_json("Capital?", "-m", "solo,gone", "--config", str(config))
    comparison = data["comparison"]
    assert isinstance(comparison, dict)
    assert comparison["consensus"] is None and comparison["consensus_reason"] == "one_answer"
    terminal = run_forge("fanout", "--show", str(data["run_id"]))
    assert "One answer arrived (solo): there is nothing to agree or differ with." in terminal.stdout
    assert "the only answer: solo" in terminal.stdout
    markdown = run_forge("fanout", "--show", str(data["run_id"]), "--markdown").stdout
    assert "The only answer (solo)" in markdown
    for shown in (terminal.stdout, markdown):
        assert "onsensus" not in shown, shown


def test_two_clusters_of_the_same_size_mean_no_majority(fake: FakeProvider, tmp_path: Path) -> None:
    found = compare(answered([AGREE[0], DISAGREE[0], AGREE[1], DISAGREE[0] + " Really."]))
    assert [len(c.members) for c in found.clusters] == [2, 2]
    assert found.tied and found.consensus is None and found.reason == "no_majority"
    assert found.reference is not None and found.diffs
    lonely = compare(answered(["alpha beta gamma", "delta epsilon zeta"]))
    assert lonely.consensus is None and lonely.reason == "no_agreement"

    names = ["p1", "p2", "l1", "l2"]
    texts = [AGREE[0], AGREE[1], DISAGREE[0], DISAGREE[0] + " Really."]
    for name, text in zip(names, texts, strict=True):
        fake.script(f"{name}-1", Reply(text=text))
    config = write(tmp_path, fanout_config(fake.url, names))
    data = fanout_json("Capital?", "-m", ",".join(names), "--config", str(config))
    comparison = data["comparison"]
    assert isinstance(comparison, dict)
    assert comparison["consensus"] is None and comparison["consensus_reason"] == "no_majority"
    assert comparison["reference"] in names
    terminal = run_forge("fanout", "--show", str(data["run_id"]))
    assert "No majority: the two largest clusters have 2 of 4 answers each" in terminal.stdout
    assert "Consensus:" not in terminal.stdout
    markdown = run_forge("fanout", "--show", str(data["run_id"]), "--markdown").stdout
    assert "No majority" in markdown and "Reference answer (not a consensus)" in markdown
    only = run_forge("fanout", "--show", str(data["run_id"]), "--show", "consensus")
    assert only.stdout == "" and "No majority" in only.stderr


def test_a_proxy_on_an_ipv6_base_url_does_not_break_the_client(tmp_path: Path) -> None:
    assert _origin("http://[::1]:8080/v1") == "http://[::1]:8080"
    assert _origin("https://api.example.com/v1") == "https://api.example.com"
    text = fanout_config("http://[::1]:9", ["six"]).replace(
        '/v1"\n', '/v1"\nproxy = "http://127.0.0.1:9"\n', 1
    )
    assert 'proxy = "http://127.0.0.1:9"' in text
    config = write(tmp_path, text)
    done = run_forge("fanout", "hi", "-m", "six", "--attempts", "1", "--config", str(config))
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 4, done.stderr


def test_after_a_fanout_the_ledger_file_alone_holds_every_row(
    fake: FakeProvider, tmp_path: Path
) -> None:
    """The write-ahead log is folded back into ledger.db when the command ends, so a copy of the
    file (a backup, a move to another machine) loses nothing."""
    import os
    import shutil
    import sqlite3

    names = ["m0", "m1", "m2"]
    for name in names:
        fake.script(f"{name}-1", Reply(text="an answer"))
    config = write(tmp_path, fanout_config(fake.url, names))
    done = run_forge("fanout", "Say something.", "-m", ",".join(names), "--config", str(config))
    assert done.returncode == 0, done.stderr
    ledger = Path(os.environ["FORGE_HOME"]) / "ledger.db"
    assert not ledger.with_name("ledger.db-wal").exists()
    copy = tmp_path / "copy.db"
    shutil.copy(ledger, copy)
    with sqlite3.connect(copy) as db:
        assert db.execute("SELECT count(*) FROM attempts").fetchone()[0] == 3


# -- hostile answers ------------------------------------------------------------------------------


def test_an_answer_cut_off_at_its_token_limit_is_marked_in_every_output(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("alpha-1", Reply(text="The capital of France is", finish_reason="length"))
    fake.script("beta-1", Reply(text=CAPITAL))
    config = write(tmp_path, fanout_config(fake.url, ["alpha", "beta"]))
    done = run_forge("fanout", "Capital?", "-m", "alpha,beta", "--config", str(config))
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if "tok/s" in line}
    assert "cut off" in lines["alpha"] and "cut off" not in lines["beta"]
    by_key = rows(fanout_json("--show", "last"))
    assert by_key["alpha"]["status"] == "ok" and by_key["alpha"]["truncated"] is True
    assert by_key["beta"]["truncated"] is False
    markdown = run_forge("fanout", "--show", "last", "--markdown").stdout
    assert "| alpha | free | cut off |" in markdown


DEEP = b"[" * 100_000 + b"]" * 100_000


def test_a_hostile_body_fails_its_own_row_and_keeps_every_other_answer(
    fake: FakeProvider, tmp_path: Path
) -> None:
    fake.script("deep-1", Reply(body=DEEP))
    fake.script("huge-1", Reply(text=CAPITAL, usage={"prompt_tokens": 1e308}))
    fake.script("minus-1", Reply(text=CAPITAL, usage={"completion_tokens": -(10**6)}))
    fake.script("fine-1", Reply(text=CAPITAL))
    names = ["deep", "huge", "minus", "fine"]
    config = write(tmp_path, fanout_config(fake.url, names))
    done = run_forge("fanout", "Capital?", "-m", ",".join(names), "--json", "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    by_key = rows(json.loads(done.stdout))
    assert by_key["deep"]["status"] == "failed"
    assert "malformed_response" in str(by_key["deep"]["cause"])
    assert "nested too deeply" in str(by_key["deep"]["cause"])
    assert [by_key[k]["text"] for k in ("huge", "minus", "fine")] == [CAPITAL] * 3
    assert by_key["huge"]["cost_source"] == by_key["minus"]["cost_source"] == "reservation"
    assert by_key["fine"]["cost_source"] == "computed"
    assert done.stderr.count("does not trust") == 2, "one warning per model"
    attempts = json.loads(run_forge("logs", "--json", "-n", "100").stdout)["attempts"]
    assert {a["status"] for a in attempts} == {"settled"}, "no row is left reserved"
    assert all(a["cost_usd"] is not None and float(a["cost_usd"]) >= 0 for a in attempts)

    health = run_forge("models", "--health", "--json", "-c", str(config))
    assert health.returncode == 1 and "Traceback" not in health.stderr
    checks = {m["alias"]: m["health"] for m in json.loads(health.stdout)["models"]}
    assert checks["deep"]["ok"] is False and "nested too deeply" in checks["deep"]["error"]
    assert checks["huge"]["ok"] is checks["fine"]["ok"] is True


def test_a_twenty_megabyte_answer_reaches_the_user_whole_and_the_store_cut(
    fake: FakeProvider, tmp_path: Path
) -> None:
    text = "".join(f"line {i} of a very long answer\n" for i in range(700_000))
    assert len(text) > 20_000_000
    body = {
        "choices": [{"index": 0, "message": {"content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 4000},
    }
    fake.script("big-1", Reply(body=json.dumps(body).encode()))
    fake.script("small-1", Reply(text="line 0 of a short answer"))
    config = write(tmp_path, fanout_config(fake.url, ["big", "small"]))
    # With a second answer to compare it with (the comparison reads the first 50,000
    # characters of each: comparing all of it took minutes).
    done = run_forge("fanout", "Talk.", "-m", "big,small", "--json", "-c", str(config))
    assert done.returncode == 0, done.stderr
    answers = rows(json.loads(done.stdout))
    assert answers["big"]["text"] == text, "the output has all of it"
    assert answers["small"]["text"] == "line 0 of a short answer"
    saved = str(rows(fanout_json("--show", "last"))["big"]["text"])
    assert saved.startswith(text[:999_000]) and len(saved) < 1_100_000
    assert saved.endswith("characters not stored]")
    ledger_file = Path(os.environ["FORGE_HOME"]) / "ledger.db"
    sizes = [p.stat().st_size for p in ledger_file.parent.glob("ledger.db*")]
    assert sum(sizes) < 5_000_000


# -- a closed pipe --------------------------------------------------------------------------------


def test_a_reader_that_closes_the_pipe_ends_forge_quietly_with_141(
    fake: FakeProvider, tmp_path: Path
) -> None:
    # `forge fanout ... | head -c 2`. In the run, the second model is still answering when the
    # pipe closes, so the plain line it ends with meets the closed pipe; printing the saved run
    # again, the long answer's panel is more than a pipe holds, so forge is still writing.
    fake.script("first-1", Reply(text=CAPITAL), Reply(text=CAPITAL))
    long = Reply(text="Paris and the Seine. " * 5_000, latency=0.5, output_tokens=900)
    fake.script("second-1", long, long)
    config = write(tmp_path, fanout_config(fake.url, ["first", "second"]))
    ask = ["fanout", "Capital?", "-m", "first,second", "-c", str(config)]
    assert run_forge(*ask).returncode == 0
    for args in (ask, ["fanout", "--show", "last", "--show", "all"]):
        forge = subprocess.Popen(
            [sys.executable, "-m", "forge", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert forge.stdout is not None and forge.stderr is not None
        assert len(forge.stdout.read(2)) == 2
        forge.stdout.close()
        stderr = forge.stderr.read().decode()
        assert forge.wait(timeout=120) == 141, (args, stderr)
        assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
        assert stderr == "", "a closed pipe is not an error worth a word"


# -- where the prompt comes from ------------------------------------------------------------------


def test_the_prompt_comes_from_a_pipe_a_file_or_at_path(fake: FakeProvider, tmp_path: Path) -> None:
    config = write(tmp_path, fanout_config(fake.url, ["only"]))
    ask = ["-m", "only", "-c", str(config), "--json"]
    piped = subprocess.run(
        [sys.executable, "-m", "forge", "fanout", *ask],
        input="Capital of France?\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["prompt"] == "Capital of France?\n"
    prompt_file = tmp_path / "prompt.md"
    prompt_file.write_text("Capital of Italy?\nAnswer in one word.\n", encoding="utf-8")
    for given in (["--file", str(prompt_file)], ["-f", str(prompt_file)], [f"@{prompt_file}"]):
        data = fanout_json(*given, *ask[:-1])
        assert data["prompt"] == "Capital of Italy?\nAnswer in one word.\n", given
    assert len(fake.requests_for("only-1")) == 4


def test_a_prompt_that_cannot_be_read_exits_2_before_any_model_is_asked(
    fake: FakeProvider, tmp_path: Path
) -> None:
    config = write(tmp_path, fanout_config(fake.url, ["only"]))
    (tmp_path / "blank.txt").write_text("  \n\n", encoding="utf-8")
    cases = [
        (["--file", str(tmp_path / "nope.txt")], "cannot read the prompt file", "No such file"),
        ([f"@{tmp_path / 'nope.txt'}"], "cannot read the prompt file", "nope.txt"),
        (["--file", str(tmp_path / "blank.txt")], "the prompt is empty", "holds no text"),
        (["Capital?", "--file", str(tmp_path / "blank.txt")], "give the prompt once", "not both"),
        (["   "], "the prompt is empty", ""),
        ([], 'give a prompt: forge fanout "PROMPT", --file PATH, @PATH', "pipe it on stdin"),
    ]
    for args, message, detail in cases:
        done = run_forge("fanout", *args, "-m", "only", "-c", str(config))
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith("forge: error: ") and "Traceback" not in done.stderr
        assert message in done.stderr and detail in done.stderr, (args, done.stderr)
    empty_pipe = subprocess.run(
        [sys.executable, "-m", "forge", "fanout", "-m", "only", "-c", str(config)],
        input="",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert empty_pipe.returncode == 2
    assert "the prompt is empty (nothing came on stdin)" in empty_pipe.stderr
    assert fake.requests_for("only-1") == [], "no model is asked without a prompt"
