"""`forge fanout --roles`: each role's system prompt sent to its models; a roles x models matrix."""

from __future__ import annotations

import json
from pathlib import Path

from forge.testing.fake_provider import FakeProvider, Reply
from tests.conftest import run_forge
from tests.test_fanout import fanout_config, write

ROLES = """
[roles.coder]
system = "You write code."
models = ["alpha", "beta"]

[roles.reviewer]
system = "You review code."
models = ["beta", "gamma"]
"""


def test_roles_by_models_matrix(fake: FakeProvider, tmp_path: Path) -> None:
    for name in ("alpha", "beta", "gamma"):
        fake.script(f"{name}-1", Reply(text=f"{name} at work on the task, carefully."))
    config = write(tmp_path, fanout_config(fake.url, ["alpha", "beta", "gamma"], extra=ROLES))
    done = run_forge(
        "fanout", "Add a login form.", "--roles", "coder,reviewer", "--json", "-c", str(config)
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    keys = [a["key"] for a in data["answers"]]
    assert keys == ["coder/alpha", "coder/beta", "reviewer/beta", "reviewer/gamma"]
    assert {a["role"] for a in data["answers"]} == {"coder", "reviewer"}
    assert data["roles"]["coder"]["system"] == "You write code."
    assert data["roles"]["reviewer"]["comparison"]["compared"] == [
        "reviewer/beta",
        "reviewer/gamma",
    ]
    systems = sorted(
        r.body["messages"][0]["content"] for r in fake.requests if r.path.endswith("completions")
    )
    assert systems == ["You review code.", "You review code.", "You write code.", "You write code."]

    table = run_forge("fanout", "--show", data["run_id"])
    assert "Roles x models" in table.stdout
    matrix = table.stdout[table.stdout.index("Roles x models") :]
    assert "coder" in matrix and "reviewer" in matrix and "gamma" in matrix


def test_models_on_the_command_line_play_every_role(fake: FakeProvider, tmp_path: Path) -> None:
    fake.script("gamma-1", Reply(text="ok"))
    config = write(tmp_path, fanout_config(fake.url, ["alpha", "beta", "gamma"], extra=ROLES))
    data = json.loads(
        run_forge(
            "fanout", "x", "--roles", "coder,reviewer", "-m", "gamma", "--json", "-c", str(config)
        ).stdout
    )
    assert [a["key"] for a in data["answers"]] == ["coder/gamma", "reviewer/gamma"]


def test_unknown_or_empty_roles_are_usage_errors(fake: FakeProvider, tmp_path: Path) -> None:
    extra = ROLES + '\n[roles.tester]\nsystem = "You test."\n'
    config = write(tmp_path, fanout_config(fake.url, ["alpha", "beta", "gamma"], extra=extra))
    wrong = run_forge("fanout", "x", "--roles", "codr", "-c", str(config))
    assert wrong.returncode == 2 and "did you mean 'coder'" in wrong.stderr
    empty = run_forge("fanout", "x", "--roles", "tester", "-c", str(config))
    assert empty.returncode == 2 and "names no models" in empty.stderr
    assert fake.requests == []
    bad = write(tmp_path, fanout_config(fake.url, ["alpha"], extra='[roles.x]\nprompt = "hi"\n'))
    refused = run_forge("fanout", "x", "--roles", "x", "-c", str(bad))
    assert refused.returncode == 2 and "roles.x" in refused.stderr


def test_judging_across_roles_is_refused(fake: FakeProvider, tmp_path: Path) -> None:
    config = write(tmp_path, fanout_config(fake.url, ["alpha", "beta", "gamma"], extra=ROLES))
    done = run_forge("fanout", "x", "--roles", "coder", "--judge", "alpha", "-c", str(config))
    assert done.returncode == 2 and "one role at a time" in done.stderr
