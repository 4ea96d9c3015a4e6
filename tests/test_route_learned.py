"""The learned router: pasted material kept out of the score, the repository's say about named
files, a critical flag that reads what a change touches, and the chances `forge route` prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from forge.routing.analysis import analyse
from forge.routing.codebase import Codebase
from tests.conftest import run_forge
from tests.test_route import FOUR_TIERS

ISSUE = (
    "DateField.to_python() raises a TypeError on an empty string instead of returning None.\n"
    "This used to work: `DateField().to_python('')` returned None. I think the check for "
    "empty values in forms/fields.py was lost when the parsing moved to the new helper."
)
TEMPLATE = """<!--
Thanks for contributing! Please search the existing issues and read CONTRIBUTING.md before
filing. Describe the bug, the expected behaviour and how to reproduce it, with every step,
the version, the platform and anything else that might help a maintainer to reproduce it.
-->
- [x] I searched the existing issues
- [x] I can reproduce this on the main branch
- [ ] I would like to work on a fix
"""
VERSIONS = """INSTALLED VERSIONS
------------------
commit: None
python: 3.10.5 | packaged by conda-forge | (main, Jun 14 2022) [GCC 10.3.0]
python-bits: 64
OS: Linux
machine: x86_64
byteorder: little
LC_ALL: None
numpy: 1.21.6
distributed: 2022.6.0
bottleneck: 1.3.5
cryptography: 41.0.1
"""


def traceback(frames: int) -> str:
    lines = ["Traceback (most recent call last):"]
    for n in range(frames):
        lines += [f'  File "/usr/lib/python3/site-packages/pkg/mod{n}.py", line {n + 10}, in f{n}']
        lines += [f"    return helper_{n}(value)"]
    return "\n".join([*lines, "TypeError: expected string or bytes-like object, got 'NoneType'"])


# -- pasted material ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pasted",
    [
        pytest.param(TEMPLATE + "\n" + ISSUE, id="template"),
        pytest.param(ISSUE + "\n\n" + VERSIONS, id="version dump"),
        pytest.param(ISSUE + "\n\n```\n" + VERSIONS + "```\n", id="fenced version dump"),
    ],
)
def test_templates_and_version_dumps_do_not_move_the_score(pasted: str) -> None:
    plain, noisy = analyse(ISSUE), analyse(pasted)

    assert noisy.difficulty == plain.difficulty
    assert noisy.complexity_score == plain.complexity_score
    assert noisy.quality == plain.quality == "standard"  # "cryptography: 41.0.1" is a version
    assert noisy.pasted  # and what was left out is said


def test_a_longer_traceback_does_not_move_the_score() -> None:
    short = analyse(ISSUE + "\n\n" + traceback(2))
    long = analyse(ISSUE + "\n\n" + traceback(60))

    assert long.difficulty == short.difficulty
    assert long.complexity_score == short.complexity_score
    assert long.tokens > 4 * short.tokens  # the model still reads all of it
    assert any(p.startswith("traceback (") for p in long.pasted)


def test_pasted_lines_counts_are_not_read_as_sizes() -> None:
    # A traceback's "1632 lines" once read as a 1,632-line change.
    text = "fix the crash in parse_header\n\n" + traceback(1).replace(
        "line 10", "line 1632"
    ).replace("return helper_0(value)", "# 1632 lines of output skipped")
    a = analyse(text)

    assert "1632" not in " ".join(a.complexity_reasons)


# -- the repository's say ----------------------------------------------------------------------


def git_repository(root: Path) -> Path:
    (root / "core").mkdir(parents=True)
    (root / "core" / "engine.py").write_text("def step(x):\n    return x\n" * 1800)
    (root / "core" / "tiny.py").write_text("def tiny():\n    return 1\n")
    for n in range(45):
        (root / f"user_{n}.py").write_text("from core import engine\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "."], check=True)
    return root


def test_a_named_large_widely_imported_untested_file_raises_the_difficulty(
    tmp_path: Path,
) -> None:
    repo = git_repository(tmp_path / "repo")

    big = run_forge("route", "--json", "fix the rounding bug in core/engine.py", cwd=repo)
    small = run_forge("route", "--json", "fix the rounding bug in core/tiny.py", cwd=repo)

    assert big.returncode == small.returncode == 0, big.stderr + small.stderr
    big_a, small_a = json.loads(big.stdout)["analysis"], json.loads(small.stdout)["analysis"]
    assert big_a["difficulty"] > small_a["difficulty"]
    why = " ".join(big_a["difficulty_reasons"])
    assert "core/engine.py: 3600 lines, imported by 45 files" in why
    assert "no test names core/engine.py" in why


def test_a_test_that_names_the_file_counts_as_coverage(tmp_path: Path) -> None:
    repo = git_repository(tmp_path / "repo")
    (repo / "tests").mkdir()
    (repo / "tests" / "test_engine.py").write_text("from core import engine\n")
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)

    a = analyse("fix the rounding bug in core/engine.py", codebase=Codebase(repo))

    assert "no test names" not in " ".join(a.difficulty_reasons)


def test_a_traceback_s_frames_are_kept_for_the_repository_lookup() -> None:
    a = analyse(ISSUE + "\n\n" + traceback(3))
    from forge.routing.signals import read_signals

    pasted = read_signals(a.text).pasted
    assert pasted is not None
    assert "/usr/lib/python3/site-packages/pkg/mod2.py" in pasted.trace_files
    assert "f1" in pasted.trace_functions


# -- the critical flag -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "fix the regex in validators.py that rejects emails with a plus sign before the password",
        "the migration guide has a typo in its second heading",
        "Django's makemigrations crashes when a model has a Meta.ordering on a related field",
        'the form shows "Invalid password or permission denied" when the locale is de; fix the '
        "translation lookup in i18n/messages.py",
        "git checkout of a tag prints a warning twice; silence the second one in cli/warn.py",
    ],
)
def test_the_critical_flag_ignores_subject_words(text: str) -> None:
    a = analyse(text)

    assert a.quality == "standard", a.quality_reasons


@pytest.mark.parametrize(
    ("text", "touched"),
    [
        ("Change BCRYPT_COST from 10 to 12 in auth/hashing.ts", "authentication"),
        ("bump the timeout in app/payments/retry.py from 5 to 10 seconds", "payments"),
        ("add password reset by email to the account settings", "authentication"),
        ("write the migration that adds a status column to the orders table", "migrations"),
        ("rotate the signing keys in crypto/keys.py every 90 days", "cryptography"),
        ("rename the exported NewClient in our public Go SDK", "a public API"),
    ],
)
def test_the_critical_flag_fires_on_the_things_named(text: str, touched: str) -> None:
    a = analyse(text)

    assert a.quality == "critical"
    assert any(r.startswith(touched) for r in a.quality_reasons), a.quality_reasons


# -- what `forge route` prints -----------------------------------------------------------------


def test_route_prints_each_tier_s_chance_and_why(tmp_path: Path) -> None:
    config = tmp_path / "forge.toml"
    config.write_text(FOUR_TIERS)
    text = TEMPLATE + "\n" + ISSUE + "\n\n" + VERSIONS

    shown = run_forge("route", "-c", str(config), text, cwd=tmp_path)
    as_json = run_forge("route", "-c", str(config), "--json", text, cwd=tmp_path)

    assert shown.returncode == as_json.returncode == 0, shown.stderr + as_json.stderr
    (line,) = [x for x in shown.stdout.splitlines() if "chance the first attempt passes" in x]
    for tier in ("local", "free", "cheap", "premium"):
        assert f" {tier} " in line
    assert "learned difficulty" in line
    assert "left out of the counts: issue template" in line and "version dump" in line
    chances = json.loads(as_json.stdout)["route"]["chances"]
    assert [c["tier"] for c in chances] == ["local", "free", "cheap", "premium"]
    probabilities = [c["probability"] for c in chances]
    assert all(0 < p < 1 for p in probabilities)
    assert probabilities[0] < probabilities[-1]  # a stronger tier is likelier to pass


def test_the_learned_score_needs_no_scientific_stack() -> None:
    probe = (
        "import sys\nfrom forge.routing.analysis import analyse\n"
        "analyse('fix the rounding bug in core/engine.py')\n"
        "print(sorted(m for m in ('numpy', 'sklearn', 'scipy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_symbols_and_traceback_frames_are_looked_up_in_the_repository(tmp_path: Path) -> None:
    repo = git_repository(tmp_path / "repo")
    frame = (
        "Traceback (most recent call last):\n"
        '  File "/home/me/venv/lib/python3.11/site-packages/core/engine.py", line 7, in step\n'
        "    return x\nValueError: bad x"
    )

    by_symbol = analyse("`step()` rounds half down", codebase=Codebase(repo))
    by_frame = analyse(f"rounding fails\n\n{frame}", codebase=Codebase(repo))
    outside = analyse(f"rounding fails\n\n{frame}")

    assert "core/engine.py: 3600 lines" in " ".join(by_symbol.difficulty_reasons)
    assert "core/engine.py: 3600 lines" in " ".join(by_frame.difficulty_reasons)
    assert by_frame.difficulty > outside.difficulty
