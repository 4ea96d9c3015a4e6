"""The bubblewrap sandbox validators run in (`[validation] sandbox = "bwrap"` for model-written
code, `forge validate --sandbox` for the user's own tree).

Inside: no network (a private loopback only), the repository validated and the validator's
report folder writable, a private empty `/tmp` and home, and the rest of the file system
read-only. Of the user's home only what the validators need to run is there, read-only: the
toolchains (cargo, rustup, pyenv, uv's Pythons), the pip cache, the user's site-packages, the
folders of PATH, the project's interpreters and the tools' own configuration files.

forge never runs a validator unsandboxed when the sandbox was asked for: `require_bwrap()`
fails with the reason and how to install bubblewrap instead.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from forge.errors import UsageError

INSTALL = "install it with `apt-get install bubblewrap` (Debian, Ubuntu; `dnf install bubblewrap` "
INSTALL += "on Fedora)"
# What a sandbox needs of the kernel, asked the way every validator's sandbox asks.
NAMESPACES = ("--unshare-all", "--die-with-parent")
MOUNTS = ("--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc")
PRIVATE_TMP = "/tmp"
# Folders of the home that hold nothing a validator needs, and much it must not read: kept
# only in part (their own subfolders below), never whole.
TOO_WIDE = (".", ".local", ".local/share", ".config", ".cache")


class SandboxUnavailable(UsageError):
    """The sandbox was asked for and cannot be made here: nothing runs."""


def require_bwrap(why: str = '[validation] sandbox = "bwrap"') -> str:
    """The bwrap program that makes working sandboxes here, or `SandboxUnavailable` saying
    why not and how to get one (`why`: what asked for the sandbox)."""
    program = shutil.which("bwrap")
    if program is None:
        raise SandboxUnavailable(
            f"{why} runs the validators under bubblewrap, which is not installed (no bwrap on "
            f"PATH); {INSTALL}. forge does not run them unsandboxed instead."
        )
    problem = _cannot_sandbox(program)
    if problem is not None:
        raise SandboxUnavailable(
            f"{why}: {program} cannot make a sandbox here ({problem}); user namespaces may "
            "not be allowed: see `sysctl user.max_user_namespaces` (must be above 0), "
            "kernel.unprivileged_userns_clone (Debian) or "
            "kernel.apparmor_restrict_unprivileged_userns (Ubuntu), or a container that "
            "forbids them. forge does not run the validators unsandboxed instead."
        )
    return program


@functools.cache
def _cannot_sandbox(program: str) -> str | None:
    """Why `program` fails to make a sandbox (None: it works), asked once per process."""
    try:
        done = subprocess.run(
            [program, *NAMESPACES, *MOUNTS, "--", "true"],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return str(err)
    if done.returncode == 0:
        return None
    said = done.stderr.strip().splitlines()
    return said[-1] if said else f"exit {done.returncode}"


@dataclass(frozen=True)
class Sandbox:
    program: str  # bwrap
    writable: tuple[Path, ...]  # the repository validated (and an outside cargo target)
    hidden: Path | None  # the user's home, replaced by an empty private folder
    readable: tuple[Path, ...]  # kept of the home, read-only

    @classmethod
    def around(
        cls,
        program: str,
        repo_root: Path,
        needed: Iterable[str | Path],
        environ: Mapping[str, str],
    ) -> Sandbox:
        """A sandbox for validating `repo_root`; `needed`: programs, interpreters and files
        the validators run or read (those in the home are kept, read-only)."""
        home = _home(environ)
        writable = [repo_root]
        target = environ.get("CARGO_TARGET_DIR")
        if target and Path(target).is_absolute():
            Path(target).mkdir(parents=True, exist_ok=True)  # a bind needs it there
            writable.append(Path(target))
        readable: list[Path] = []
        if home is not None:
            wanted = [*_toolchains(home, environ), *_path_folders(environ)]
            wanted += [place for item in needed for place in _places(Path(item))]
            readable = _kept(wanted, home)
        return cls(program, tuple(writable), home, tuple(readable))

    def wrap(self, argv: Sequence[str], cwd: Path, writable: Sequence[Path] = ()) -> list[str]:
        """`argv` run in `cwd` inside the sandbox; `writable`: more folders it may write to
        (its report folder)."""
        mounts = [*MOUNTS, "--tmpfs", PRIVATE_TMP]
        if self.hidden is not None:
            mounts += ["--tmpfs", str(self.hidden)]
        for path in self.readable:
            mounts += ["--ro-bind-try", str(path), str(path)]
        for path in (*self.writable, *writable):
            mounts += ["--bind", str(path), str(path)]
        return [
            self.program,
            *NAMESPACES,
            *mounts,
            "--setenv",
            "TMPDIR",
            PRIVATE_TMP,
            "--chdir",
            str(cwd),
            "--",
            *argv,
        ]


def _home(environ: Mapping[str, str]) -> Path | None:
    """The home to hide: None when there is none worth hiding (unset, or the root)."""
    value = environ.get("HOME")
    if not value:
        return None
    home = Path(os.path.abspath(value))
    return home if home != Path("/") and home.is_dir() else None


def _toolchains(home: Path, environ: Mapping[str, str]) -> list[Path]:
    """Where the toolchains, caches and user-installed packages the validators use live."""

    def place(variable: str, default: Path) -> Path:
        value = environ.get(variable)
        return Path(value) if value else default

    data = place("XDG_DATA_HOME", home / ".local/share")
    cache = place("XDG_CACHE_HOME", home / ".cache")
    return [
        place("CARGO_HOME", home / ".cargo"),
        place("RUSTUP_HOME", home / ".rustup"),
        place("PYENV_ROOT", home / ".pyenv"),
        place("PIP_CACHE_DIR", cache / "pip"),
        place("UV_PYTHON_INSTALL_DIR", data / "uv/python"),
        data / "uv/tools",
        home / ".local/bin",
        home / ".local/lib",  # the user's site-packages (pip install --user)
    ]


def _path_folders(environ: Mapping[str, str]) -> list[Path]:
    """PATH's folders, and the installation each `bin` folder belongs to."""
    found = []
    for entry in environ.get("PATH", "").split(os.pathsep):
        if entry and os.path.isabs(entry):
            folder = Path(entry)
            found += [folder, folder.parent] if folder.name in ("bin", "shims") else [folder]
    return found


def _places(path: Path) -> list[Path]:
    """A program or file and where it is installed: the path itself, what its links lead
    to, and for a program in a `bin` folder, that installation (its library beside it)."""
    if not path.is_absolute():
        found = shutil.which(str(path))
        if found is None:
            return []
        path = Path(found)
    real = Path(os.path.realpath(path))
    places = []
    for each in dict.fromkeys((path, real)):
        places.append(each)
        if each.parent.name == "bin":
            places.append(each.parent.parent)
    return places


def _kept(paths: Iterable[Path], home: Path) -> list[Path]:
    """Of `paths`, those in `home` (elsewhere everything is readable already), but none so
    wide it would show the home itself; outermost first, each once."""
    too_wide = {home / name for name in TOO_WIDE}
    kept = []
    for path in paths:
        absolute = Path(os.path.abspath(path))
        if absolute.is_relative_to(home) and absolute not in too_wide:
            kept.append(absolute)
    outermost: list[Path] = []
    for path in sorted(set(kept), key=lambda p: (len(p.parts), str(p))):
        if not any(path.is_relative_to(other) for other in outermost):
            outermost.append(path)
    return outermost
