"""Pinned routes: what `forge route --batch` decides for a handful of issue-like texts.

The analysis is tuned for speed (tests/test_route*.py cover its rules one by one); these texts
go through the pasted-text stripping, the output/prose split, the cue phrases, the SQL check and
the subtask split together, and their decisions, scores and chances must stay exactly these,
in one worker process and in two.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_forge
from tests.test_route import FOUR_TIERS

TEXTS = {
    "template_versions_traceback": (
        "<!-- Please search the existing issues before filing. -->\n"
        "- [x] I searched the existing issues\n"
        "### Description\n"
        "Reading a CSV with `parse_dates=True` raises a TypeError since 2.1; "
        "see io/parsers/readers.py. It used to work.\n"
        "```python\n"
        "import pandas as pd\n"
        "df = pd.read_csv('a.csv', parse_dates=True)\n"
        "```\n"
        "Traceback (most recent call last):\n"
        '  File "pandas/io/parsers/readers.py", line 912, in read_csv\n'
        "    return _read(filepath_or_buffer, kwds)\n"
        "TypeError: unhashable type: 'list'\n\n"
        "INSTALLED VERSIONS\n"
        "------------------\n"
        "python: 3.10.5\n"
        "numpy: 1.23.1\n"
        "pandas: 2.1.0\n"
        "OS: Linux\n"
    ),
    "unsafe_sql_in_a_call": (
        'The report endpoint builds its query by hand: cursor.EXECUTE(f"SELECT * FROM orders '
        'WHERE id = {order_id}") in app/reports.py. Switch it to a parameterised query, add a '
        "regression test, and check the other raw queries in the module for the same problem."
    ),
    "a_diff_and_phrases": (
        "Refactor the retry logic across the service layer so every client uses the same "
        "back-off. This is a breaking change for the public API of `RetryPolicy`.\n"
        "diff --git a/src/retry.py b/src/retry.py\n"
        "@@ -1,3 +1,4 @@\n"
        " import time\n"
        "+import random\n"
        "-DELAY = 1\n"
        "Then update the docs and the CHANGELOG."
    ),
    "short_and_plain": "fix the typo in the README, it says 'recieve' (#12).",
    "payments_list": (
        "Partial refunds for the payments platform:\n"
        "- new public endpoint POST /v2/payments/{id}/refunds with an Idempotency-Key header\n"
        "- refunds table + migration, and double-entry ledger rows for each refund\n"
        "- refuse if the sum of refunds would exceed the captured amount (watch for concurrent "
        "requests)\n"
        "- update openapi.yaml and regenerate the TypeScript SDK"
    ),
    "questions_and_parts": (
        "Should we cache the parsed config or re-read it on every request? Add a cache to "
        "load_config(), then invalidate it when forge.toml changes, and write a test for both."
    ),
}

# (type, band, complexity score, quality, learned difficulty, first tier, each tier's chance,
#  what was pasted, errors named, subtasks): as forge decided before the analysis was sped up.
PINNED = {
    "template_versions_traceback": (
        "bug_fix", "simple", 0.438, "standard", 0.152, "local", (0.04, 0.085, 0.157, 0.333),
        ("issue template (2 lines)", "version dump (6 lines)", "traceback (4 lines)"),
        ("Python traceback", "TypeError"), 0,
    ),
    "unsafe_sql_in_a_call": (
        "feature", "simple", 0.38, "critical", 0.342, "premium", (0.035, 0.073, 0.136, 0.291),
        (), (), 0,
    ),
    "a_diff_and_phrases": (
        "refactor", "complex", 0.745, "critical", 0.705, "premium", (0.023, 0.05, 0.094, 0.212),
        (), (), 2,
    ),
    "short_and_plain": (
        "simple_edit", "trivial", 0.057, "standard", 0.131, "local", (0.041, 0.087, 0.16, 0.337),
        (), (), 0,
    ),
    "payments_list": (
        "simple_edit", "medium", 0.513, "critical", 0.294, "premium", (0.036, 0.076, 0.141, 0.302),
        (), (), 4,
    ),
    "questions_and_parts": (
        "architecture", "medium", 0.574, "standard", 0.643, "cheap", (0.025, 0.054, 0.101, 0.226),
        (), (), 2,
    ),
}  # fmt: skip


def routed_batch(tmp_path: Path, texts: dict[str, str], *args: str) -> list[dict[str, Any]]:
    """`forge route --batch` over `texts` (outside any repository), one decision per text."""
    config = tmp_path / "forge.toml"
    config.write_text(FOUR_TIERS)
    batch = tmp_path / "tasks.jsonl"
    batch.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in texts.items()))
    done = run_forge("route", "-c", str(config), "--batch", str(batch), *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_batch_routes_stay_as_pinned(tmp_path: Path, jobs: str) -> None:
    found = {}
    for route in routed_batch(tmp_path, TEXTS, "--jobs", jobs):
        a = route["analysis"]
        found[route["id"]] = (
            a["type"],
            a["band"],
            a["complexity_score"],
            a["quality"],
            a["difficulty"],
            route["route"]["tier"],
            tuple(c["probability"] for c in route["route"]["chances"]),
            tuple(a["pasted"]),
            tuple(a["errors"]),
            len(route["subtasks"]),
        )
    assert found == PINNED


def test_sql_built_in_a_call_is_critical_whatever_its_case(tmp_path: Path) -> None:
    """The SQL check looks only where a call or an f-string starts: case must not hide one."""
    config = tmp_path / "forge.toml"
    config.write_text(FOUR_TIERS)
    calls = [
        "cursor.EXECUTE('DELETE FROM t WHERE id = ' + str(i))",
        "db.query('SELECT * FROM t WHERE a = %s' % name)",
        'conn.RAW("UPDATE t SET a = " + value)',
        "run(f'Insert into t values ({v})')",
    ]
    for call in calls:
        done = run_forge(
            "route", "-c", str(config), "--json", f"Tidy the helper: {call} here.", cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        reasons = json.loads(done.stdout)["analysis"]["quality_reasons"]
        assert "security ('SQL built from strings')" in reasons, (call, reasons)


# Texts at the edges of the analysis's shortcuts (a pattern tried only where its first
# character, its separator or its extension can be; a call looked for only in words with a
# parenthesis): environment keys behind bullets and bold stars, a platform line, a non-ASCII
# key, SQL and HTTP verbs inside longer words, calls after a dot or a digit, hex words, counts
# after a dot or in words ("someone"), upper-case extensions, bare file names in lower case,
# dotfiles, dashes and colons between sentences.
EDGE_TEXTS = {
    "version_lines": (
        "Plotting fails after the upgrade.\n"
        "- **Python**: /usr/bin/python3\n"
        "  * OS : Linux-5.4.0-x86_64\n"
        "machine: x86_64\n"
        "Darwin-21.6.0-arm64-arm-64bit\n"
        "numpy >= 1.21\n"
        "Pyth\u00f6n: 3.9.1\n"
        "Steps: run it 3 times, then look at the figure.\n"
        "matplotlib 3.5.1 (conda)\n"
    ),
    "word_starts": (
        "XSELECT a FROM b is fine but an INSERT INTO audit VALUES (1); breaks. The call "
        "foo.bar(x) and a.b.c::d(y) fail, not x.y( or 1.5.2(). Commits deadbeef1 and "
        "cafebabe12 but not abc1234x or feedface; someone moved 12 files, 1.5 files, 3,000 rows "
        "and a dozen tests; FORGET /x but GET /v1/items."
    ),
    "paths_and_breaks": (
        "Rename src/app.PY and update the Makefile, makefile, docs/.env.local and ./configure.ac "
        "- e.g. numpy.array in 1.2.3 - then fix it.py. Do this \u2014 and that: next; also,then "
        "ship it? Or wait."
    ),
}
# (type, complexity score, quality, difficulty, files, symbols, pasted, complexity reasons,
#  type reasons): as forge decided before the analysis took these shortcuts.
EDGE_PINNED = {
    "version_lines": (
        "review", 0.475, "standard", 0.324, (), (), ("version dump (6 lines)",),
        ("27 tokens", "pasted code to read"), ("asks to 'look'", "'look at'"),
    ),
    "word_starts": (
        "bug_fix", 0.583, "standard", 0.401, (), ("foo.bar", "a.b.c::d", "x.y"), (),
        ("66 tokens", "states '12 files'", "7 clauses"), ("'breaks'", "'fail'"),
    ),
    "paths_and_breaks": (
        "simple_edit", 0.493, "standard", 0.669,
        ("src/app.PY", "Makefile", "docs/.env.local", "it.py"), (), (),
        (
            "47 tokens",
            "names 4 files (src/app.PY not in the repository, Makefile not in the repository, "
            "docs/.env.local not in the repository, and 1 more)",
            "5 clauses", "4 parts", "size counted up to 0.20",
        ),
        ("asks to 'Rename'", "'update'"),
    ),
}  # fmt: skip


def test_edges_of_the_analysis_shortcuts_stay_as_pinned(tmp_path: Path) -> None:
    found = {}
    for route in routed_batch(tmp_path, EDGE_TEXTS):
        a = route["analysis"]
        found[route["id"]] = (
            a["type"],
            a["complexity_score"],
            a["quality"],
            a["difficulty"],
            tuple(f["path"] for f in a["files"]),
            tuple(a["symbols"]),
            tuple(a["pasted"]),
            tuple(a["complexity_reasons"]),
            tuple(a["type_reasons"]),
        )
    assert found == EDGE_PINNED
