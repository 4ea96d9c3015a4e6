"""forge's exception hierarchy and the exit codes it maps to (SPEC section 10)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    BUDGET = 3
    UNREACHABLE = 4
    INTERRUPTED = 130
    PIPE_CLOSED = 141  # 128 + SIGPIPE, as a shell reports a tool the closed pipe ended


class ForgeError(Exception):
    """Base of every error forge reports to a user; the CLI prints it without a traceback."""

    exit_code: ExitCode = ExitCode.FAILED


class UsageError(ForgeError):
    exit_code = ExitCode.USAGE


class ConfigError(ForgeError):
    """Bad configuration: names the file, the line or dotted key, what was expected and found."""

    exit_code = ExitCode.USAGE

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.detail = message
        where = f"{path}:{line}: " if path and line else f"{path}: " if path else ""
        super().__init__(f"{where}{message}")


class BudgetExceeded(ForgeError):
    exit_code = ExitCode.BUDGET


class NoModelAvailable(ForgeError):
    """No candidate model could answer; the message carries the real cause of each."""

    exit_code = ExitCode.UNREACHABLE
