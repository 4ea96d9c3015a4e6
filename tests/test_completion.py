"""Shell completion: `forge --show-completion` / `--install-completion` for bash, zsh and fish,
and the completions those scripts ask forge for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_forge

# Typer finds the shell from the processes above it; this lets a test name the shell instead.
NAMED_SHELL = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}


@pytest.fixture
def forge_on_path(tmp_path: Path) -> dict[str, str]:
    """A `forge` on PATH that runs this checkout, as the completion scripts call it by name."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "forge"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m forge "$@"\n')
    script.chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def complete(shell: str, words: str, **extra: str) -> list[str]:
    env = {"_FORGE_COMPLETE": f"complete_{shell}", **extra}
    if shell == "bash":
        env |= {"COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1)}
    else:
        env |= {"_TYPER_COMPLETE_ARGS": words}
    done = run_forge(env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_each_shell_gets_its_own_script_that_calls_forge() -> None:
    for shell, marker in (
        ("bash", "complete -o default -F _forge_completion forge"),
        ("zsh", "compdef _forge_completion forge"),
        ("fish", "complete --command forge"),
    ):
        done = run_forge("--show-completion", shell, env=NAMED_SHELL)

        assert done.returncode == 0, done.stderr
        assert marker in done.stdout and f"_FORGE_COMPLETE=complete_{shell}" in done.stdout


def test_commands_and_options_complete_in_every_shell() -> None:
    assert complete("bash", "forge ru") == ["run-milestone", "runs"]
    zsh = "\n".join(complete("zsh", "forge run-milestone --res"))
    assert '"--resume":"Continue the run with this id."' in zsh
    fish = complete("fish", "forge st", _TYPER_COMPLETE_FISH_ACTION="get-args")
    assert fish[0].startswith("stats\tFirst-attempt success")


def test_bash_completes_forge_with_the_script_it_was_shown(forge_on_path: dict[str, str]) -> None:
    script = (
        'eval "$(forge --show-completion)"; COMP_WORDS=(forge run-milestone --dry); '
        'COMP_CWORD=2; _forge_completion forge; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, **forge_on_path},
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["--dry-run"]


@pytest.mark.parametrize(
    ("shell", "script"),
    [
        ("bash", ".bash_completions/forge.sh"),
        ("zsh", ".zfunc/_forge"),
        ("fish", ".config/fish/completions/forge.fish"),
    ],
)
def test_install_completion_writes_the_shell_s_own_file(
    shell: str, script: str, isolated_home: Path
) -> None:
    done = run_forge("--install-completion", shell, env=NAMED_SHELL)

    assert done.returncode == 0, done.stderr
    assert f"{shell} completion installed in" in done.stdout
    assert f"_FORGE_COMPLETE=complete_{shell}" in (isolated_home / script).read_text()


COMPLETE_PROBE = """
import os, sys
os.environ.update(_FORGE_COMPLETE="complete_bash", COMP_WORDS="forge ", COMP_CWORD="1")
sys.argv = ["forge"]
from forge.cli import main
try:
    main()
except SystemExit:
    pass
print("LOADED=" + ",".join(sorted(m for m in sys.modules if m.startswith("forge.commands."))))
"""


def test_completing_a_command_name_loads_no_command() -> None:
    """A Tab after `forge ` is answered from the command table, as `forge --help` is."""
    done = subprocess.run(
        [sys.executable, "-c", COMPLETE_PROBE], capture_output=True, text=True, check=True
    )

    assert "run-milestone" in done.stdout.splitlines()
    loaded = done.stdout.rsplit("LOADED=", 1)[1].split()[0].split(",")
    # The two command groups (`config`, `ledger`) are light and registered as the app is made.
    assert loaded == ["forge.commands.config", "forge.commands.ledger", "forge.commands.options"]
