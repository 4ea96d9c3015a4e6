"""`--judge` and `--synthesize`: strict JSON checked, a fallback when it is not, both costed."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from forge.fanout.judge import citations, read_ballot
from forge.testing.fake_provider import FakeProvider, Reply
from tests.conftest import run_forge
from tests.test_fanout import AGREE, DISAGREE, fanout_config, fanout_json, write

NAMES = ["alpha", "beta", "gamma", "delta"]


def script_answers(fake: FakeProvider) -> None:
    for name, text in zip(NAMES, (*AGREE, DISAGREE[0]), strict=True):
        fake.script(f"{name}-1", Reply(text=text))


def test_judge_returns_the_best_answer_and_disagreements(
    fake: FakeProvider, tmp_path: Path
) -> None:
    script_answers(fake)
    verdict = {
        "best": 2,
        "reason": "Correct and mentions the river.",
        "disagreements": [{"point": "Which city is the capital", "answers": [4]}],
    }
    fake.script("judge-1", Reply(text="```json\n" + json.dumps(verdict) + "\n```"))
    config = write(tmp_path, fanout_config(fake.url, [*NAMES, "judge"]))
    data = fanout_json("Capital?", "-m", ",".join(NAMES), "--judge", "judge", "-c", str(config))
    judged = data["judge"]
    assert isinstance(judged, dict)
    assert judged["valid"] is True and judged["best"] == "beta"
    assert judged["disagreements"] == [{"point": "Which city is the capital", "answers": ["delta"]}]
    assert judged["cost_usd"] is not None and float(judged["cost_usd"]) > 0
    asked = fake.requests_for("judge-1")[0].body["messages"]
    prompt = asked[-1]["content"]
    assert "<answer number=4>" in prompt and "Lyon" in prompt
    assert "alpha" not in prompt and "delta" not in prompt, "the judge sees no model names"
    logged = json.loads(run_forge("logs", "--run", str(data["run_id"]), "--json").stdout)
    judge_rows = [a for a in logged["attempts"] if a["task_id"] == "judge"]
    assert len(judge_rows) == 1 and judge_rows[0]["model"] == "judge"
    terminal = run_forge("fanout", "--show", str(data["run_id"]))
    assert "Judge judge: best answer beta" in terminal.stdout


def test_malformed_verdict_is_asked_again_then_falls_back_to_the_consensus(
    fake: FakeProvider, tmp_path: Path
) -> None:
    script_answers(fake)
    fake.script(
        "judge-1",
        Reply(text="I think answer two is best."),
        Reply(text='{"best": 9, "reason": "out of range"}'),
    )
    fake.script("fixed-1", Reply(text="no json"), Reply(text='{"best": "3", "reason": "ok"}'))
    config = write(tmp_path, fanout_config(fake.url, [*NAMES, "judge", "fixed"]))
    data = fanout_json("Capital?", "-m", ",".join(NAMES), "--judge", "judge", "-c", str(config))
    judged = data["judge"]
    assert isinstance(judged, dict) and isinstance(data["comparison"], dict)
    assert judged["valid"] is False
    assert judged["best"] == data["comparison"]["consensus"]
    assert "answer number from 1 to 4" in judged["note"]
    assert len(fake.requests_for("judge-1")) == 2, "one request to fix the reply, then fallback"
    second = fake.requests_for("judge-1")[1].body["messages"]
    assert "not usable" in second[-1]["content"]
    repaired = fanout_json("Capital?", "-m", ",".join(NAMES), "--judge", "fixed", "-c", str(config))
    assert repaired["judge"]["valid"] is True and repaired["judge"]["best"] == "gamma"  # type: ignore[index]


def test_synthesis_cites_the_models_each_claim_came_from(
    fake: FakeProvider, tmp_path: Path
) -> None:
    script_answers(fake)
    fake.script(
        "synth-1",
        Reply(text="Paris is the capital [alpha, beta]. One answer said Lyon [delta] [ghost]."),
    )
    config = write(tmp_path, fanout_config(fake.url, [*NAMES, "synth"]))
    data = fanout_json(
        "Capital?", "-m", ",".join(NAMES), "--synthesize", "synth", "-c", str(config)
    )
    synthesis = data["synthesis"]
    assert isinstance(synthesis, dict)
    assert synthesis["cited"] == ["alpha", "beta", "delta"]
    assert synthesis["unknown_citations"] == ["ghost"]
    assert float(synthesis["cost_usd"]) > 0
    prompt = fake.requests_for("synth-1")[0].body["messages"][-1]["content"]
    assert '<answer model="delta">' in prompt


def test_ballot_checks() -> None:
    keys = ["a", "b"]
    assert read_ballot('{"best": 1, "reason": "r", "disagreements": []}', keys).best == "a"  # type: ignore[union-attr]
    assert "no JSON object" in str(read_ballot("nothing here", keys))
    assert "from 1 to 2" in str(read_ballot('{"best": true}', keys))
    assert "a list" in str(read_ballot('{"best": 1, "disagreements": {}}', keys))
    bad_point = '{"best": 1, "disagreements": [{"point": "x", "answers": [3]}]}'
    assert "outside 1 to 2" in str(read_ballot(bad_point, keys))
    prose = 'Sure! Here you go: {"best": 2, "reason": "why"} Hope that helps.'
    assert read_ballot(prose, keys).best == "b"  # type: ignore[union-attr]


def test_citations_ignore_links_code_and_bracketed_prose() -> None:
    text = (
        "Claim [a, b]. See [the docs](https://example.invalid). An aside [as noted above].\n"
        "```python\nx = items[a]\n```\nAnother [c] and [zz]."
    )
    assert citations(text, ["a", "b", "c"]) == (("a", "b", "c"), ("zz",))


def test_a_wide_fanout_shows_the_judge_one_answer_per_cluster(
    fake: FakeProvider, tmp_path: Path
) -> None:
    names = [f"m{i:02d}" for i in range(25)]
    texts = (AGREE[0], DISAGREE[0], DISAGREE[1])
    for i, name in enumerate(names):
        fake.script(f"{name}-1", Reply(text=texts[0] if i < 20 else texts[1 + i % 2]))
    fake.script("judge-1", Reply(text='{"best": 1, "reason": "most agree", "disagreements": []}'))
    config = write(tmp_path, fanout_config(fake.url, [*names, "judge"]))
    data = fanout_json("Capital?", "-m", ",".join(names), "--judge", "judge", "-c", str(config))
    prompt = fake.requests_for("judge-1")[0].body["messages"][-1]["content"]
    assert prompt.count("<answer number=") == 3, "one answer per cluster, not 25"
    assert data["judge"]["best"] == data["comparison"]["consensus"]  # type: ignore[index]


def test_the_judge_and_the_synthesis_are_in_the_runs_cost(
    fake: FakeProvider, tmp_path: Path
) -> None:
    script_answers(fake)
    fake.script("judge-1", Reply(text=json.dumps({"best": 1, "reason": "Right."})))
    fake.script("synth-1", Reply(text="Paris [alpha, beta]."))
    dear = "".join(
        f'\n[models.{name}]\nprovider = "fake"\nid = "{name}-1"\n'
        "input_price = 500\noutput_price = 500\n"
        for name in ("judge", "synth")
    )
    config = write(tmp_path, fanout_config(fake.url, NAMES, price="0.01") + dear)
    ask = ["Capital?", "-m", ",".join(NAMES), "--judge", "judge", "--synthesize", "synth"]
    data = fanout_json(*ask, "-c", str(config))
    answers = sum(Decimal(str(a["cost_usd"])) for a in data["answers"])  # type: ignore[union-attr]
    judge = Decimal(str(data["judge"]["cost_usd"]))  # type: ignore[index]
    synthesis = Decimal(str(data["synthesis"]["cost_usd"]))  # type: ignore[index]
    assert judge > 100 * answers and synthesis > 100 * answers, "the judge costs the most here"
    assert Decimal(str(data["cost_usd"])) == answers + judge + synthesis
    assert data["cost_parts_usd"] == {
        "answers": str(answers),
        "judge": str(judge),
        "synthesis": str(synthesis),
    }
    # The total line, now and when the saved run is printed again, shows the total and its parts.
    total = f"${answers + judge + synthesis:.4f}"
    for shown in (
        run_forge("fanout", *ask, "-c", str(config)).stdout,
        run_forge("fanout", "--show", str(data["run_id"])).stdout,
    ):
        footer = next(line for line in shown.splitlines() if line.startswith("run fo-"))
        assert f"{total} (answers $" in footer and ", judge $0." in footer, footer
        assert ", synthesis $0." in footer, footer
    saved = fanout_json("--show", str(data["run_id"]))
    assert saved["cost_usd"] == data["cost_usd"]
