"""Which Python a project's checks run under, and what is installed in it.

forge may be installed on its own (pipx, a venv of its own) while the project keeps its test
dependencies in its own environment. Python validators run in the project's environment,
chosen in this order:
  1. the active virtual environment (`VIRTUAL_ENV`);
  2. a `.venv` or `venv` folder at the project root or a folder above it inside the repository
     (uv, poetry and hatch put a workspace's environment at its root);
  3. the first `python3` or `python` on PATH;
  4. the interpreter forge itself runs under.
What is installed is read from the interpreter's site folders by listing them (no import, no
process): the names and versions of the distributions key the cache, and say whether pytest or
mypy is there at all.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from forge.validation.atomic import write_cache_entry

# What the chosen interpreter reports about itself, asked once per interpreter file.
# Its site folders are every folder on its path but the standard library's (a `.pth` file can
# add one), and sys.path[0], which is the folder it was started in.
_ABOUT = """\
import sys
sys.path[:] = [p for p in sys.path if p not in ("", ".")]  # no module of the project's folder
import json, os, site, sysconfig
paths = sysconfig.get_paths()
std = {os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib")}
std |= {os.path.join(s, "lib-dynload") for s in std}
def ours(p):
    return os.path.isdir(p) and os.path.realpath(p) not in std
# Where installs go is kept even before anything is installed there (a user site made later).
sites = [paths["purelib"], paths["platlib"], *site.getsitepackages()]
if site.ENABLE_USER_SITE:
    sites.append(site.getusersitepackages())
sites += [p for p in sys.path if p and ours(p)]
print(json.dumps({"executable": sys.executable, "version": ".".join(map(str, sys.version_info[:3])),
    "sites": list(dict.fromkeys(sites)), "scripts": paths["scripts"]}))
"""

ASK_SECONDS = 30.0

SOURCES = {
    "VIRTUAL_ENV": "the active virtual environment (VIRTUAL_ENV)",
    "project": "the project's environment",
    "PATH": "the first Python on PATH",
    "forge": "the Python forge runs under",
}


@dataclass(frozen=True)
class Candidate:
    """The interpreter chosen for a project, before it is asked anything."""

    path: str
    source: str  # a key of SOURCES
    looked: tuple[str, ...]  # the places tried before it, for "not installed" messages


@dataclass(frozen=True)
class Interpreter:
    path: str  # what forge runs: the environment's own python (not resolved through links)
    source: str
    version: str  # "3.12.1"
    sites: tuple[str, ...]  # where its distributions are installed
    scripts: str  # where its console scripts are (pytest, mypy, ruff)
    looked: tuple[str, ...] = ()
    broken: str | None = None  # why it does not run: then nothing of the project's can

    @property
    def minor(self) -> tuple[int, int] | None:
        try:
            major, minor, *_ = (int(p) for p in self.version.split("."))
        except ValueError:
            return None
        return (major, minor)

    def describe(self) -> str:
        return f"{self.path} (Python {self.version}, {SOURCES[self.source]})"

    def lacks(self, distribution: str) -> str:
        """Why a tool that must run inside this environment cannot: where it was looked for,
        and which interpreters were passed over before this one was chosen."""
        if self.broken is not None:
            return f"{self.broken} ({SOURCES[self.source]})"
        sites = ", ".join(dict.fromkeys(self.sites))
        passed_over = f"; before it, forge tried {', '.join(self.looked)}" if self.looked else ""
        return (
            f"{distribution} is not installed in the environment of {self.describe()}; "
            f"looked in {sites}{passed_over}"
        )

    def distribution(self, name: str) -> str | None:
        """The installed version of distribution `name` (None when it is not installed)."""
        wanted = _normalise(name)
        for entry in self.installed:
            stem = entry.rsplit(".", 1)[0]
            dist, _, version = stem.partition("-")
            if _normalise(dist) == wanted and entry.endswith((".dist-info", ".egg-info")):
                return version or "?"
        return None

    @functools.cached_property
    def installed(self) -> tuple[str, ...]:
        """What `installed` lists for its site folders, read once per run."""
        return installed(self.sites)

    @functools.cached_property
    def stamp(self) -> str:
        """`environment_stamp` of its site folders, read once per run."""
        return environment_stamp(self.sites)


def _normalise(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def installed(sites: tuple[str, ...]) -> tuple[str, ...]:
    """The distributions installed in these site folders (`name-version.dist-info` and the
    like), and the `.pth` files with what they add to the path (editable installs)."""
    found: list[str] = []
    for site in dict.fromkeys(sites):
        try:
            entries = os.scandir(site)
        except OSError:
            continue
        with entries:
            for entry in entries:
                name = entry.name
                if name.endswith((".dist-info", ".egg-info", ".egg-link")):
                    found.append(name)
                elif name.endswith(".pth"):
                    try:
                        found.append(f"{name}:{Path(entry.path).read_text(errors='replace')}")
                    except OSError:
                        found.append(name)
    return tuple(sorted(found))


def path_files_stamp(sites: tuple[str, ...]) -> str:
    """The `.pth` files in these site folders, by name and mtime: what adds folders to the
    interpreter's path."""
    found = []
    for site in dict.fromkeys(sites):
        try:
            with os.scandir(site) as entries:
                found += [
                    f"{e.name}@{e.stat().st_mtime_ns}" for e in entries if e.name.endswith(".pth")
                ]
        except OSError:
            found.append(f"{site}:-")
    return hashlib.sha256("\0".join(sorted(found)).encode()).hexdigest()[:32]


def environment_stamp(sites: tuple[str, ...]) -> str:
    """One value for everything installed in these site folders: each distribution's name,
    version and when it was installed (a reinstall of the same version counts), and what the
    `.pth` files add to the path."""
    digest = hashlib.sha256()
    for entry in installed(sites):
        digest.update(entry.encode() + b"\0")
    for site in dict.fromkeys(sites):
        try:
            with os.scandir(site) as entries:
                for found in entries:
                    if found.name.endswith((".dist-info", ".egg-info", ".egg-link")):
                        digest.update(f"{found.name}@{found.stat().st_mtime_ns}".encode())
        except OSError:
            continue
    return digest.hexdigest()[:32]


def candidate(project: Path, repo_root: Path, environ: Mapping[str, str]) -> Candidate:
    """The interpreter a project's Python checks run under (see the module docstring)."""
    looked: list[str] = []
    active = environ.get("VIRTUAL_ENV")
    if active:
        python = _venv_python(Path(active))
        if python is not None:
            return Candidate(python, "VIRTUAL_ENV", tuple(looked))
        looked.append(f"VIRTUAL_ENV={active} (no python in it)")
    else:
        looked.append("VIRTUAL_ENV (not set)")
    top = repo_root.resolve()
    folder = project.resolve()
    for place in (folder, *folder.parents):
        for name in (".venv", "venv"):
            python = _venv_python(place / name)
            if python is not None:
                return Candidate(python, "project", tuple(looked))
        if place == top or not place.is_relative_to(top):
            break
    looked.append(f"{folder / '.venv'} and venv (none)")
    path = environ.get("PATH", os.defpath)
    for name in ("python3", "python"):
        found = shutil.which(name, path=path)
        if found is not None:
            return Candidate(found, "PATH", tuple(looked))
    looked.append("python3 and python on PATH (none)")
    return Candidate(sys.executable, "forge", tuple(looked))


def _venv_python(venv: Path) -> str | None:
    """The environment's python, also when it is broken (a link to a Python removed since):
    the project's environment it is all the same, and its checks cannot run."""
    for name in ("bin/python", "bin/python3", "Scripts/python.exe"):
        path = os.path.join(venv, name)
        if os.path.lexists(path):  # False, not an error, when the folder cannot be read
            return path
    if os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
        return os.path.join(venv, "bin", "python")
    return None


def choice_stamp(chosen: Candidate, project: Path) -> str:
    """What decides which Python `chosen` really is, besides its path: a venv's pyvenv.cfg
    (`include-system-site-packages`), a version manager's choice (pyenv reads PYENV_VERSION,
    the nearest `.python-version`, its global version file), PYTHONPATH (on its path)."""
    parts = [chosen.source, chosen.path]
    parts += [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("PYTHON")]
    config = Path(chosen.path).parent.parent / "pyvenv.cfg"
    parts.append(_read(config))
    if _is_shim(chosen.path):
        parts.append(os.environ.get("PYENV_VERSION", ""))
        parts.append(_read(Path(chosen.path).parent.parent / "version"))
        for folder in (project.resolve(), *project.resolve().parents):
            if os.path.isfile(folder / ".python-version"):
                parts.append(f"{folder}:{_read(folder / '.python-version')}")
                break
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def _is_shim(path: str) -> bool:
    """A version manager's shim (pyenv, asdf): a script that picks the real interpreter by
    the folder it runs in, not an interpreter itself."""
    try:
        with open(path, "rb") as script:
            return script.read(2) == b"#!"
    except OSError:
        return False


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


class Interpreters:
    """What each interpreter says about itself, asked once and kept in `path` (a JSON file)
    across runs, keyed by its file (a venv's python links to its base interpreter: the link
    and the file it leads to, with that file's size and mtime) and by `choice_stamp`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            known = json.loads(path.read_text())
        except (OSError, ValueError):
            known = {}
        self._known: dict[str, object] = known if isinstance(known, dict) else {}

    def find(self, project: Path, repo_root: Path, environ: Mapping[str, str]) -> Interpreter:
        return self.about(candidate(project, repo_root, environ), project)

    def about(self, chosen: Candidate, project: Path) -> Interpreter:
        key = f"{_file_key(chosen.path)}|{choice_stamp(chosen, project)}"
        with self._lock:
            entry = self._known.get(key)
        known = _valid(entry)
        # A `.pth` file added or changed since may put a new folder on its path: ask again.
        if known is not None and _pth_of(entry) != path_files_stamp(tuple(known["sites"])):
            known = None
        if known is None:
            asked = _ask(chosen.path, project)
            if isinstance(asked, str):  # it does not run: nothing of the project's can
                return Interpreter(chosen.path, chosen.source, "?", (), "", chosen.looked, asked)
            known = asked
            stored = {**known, "pth": path_files_stamp(tuple(known["sites"]))}
            with self._lock:
                self._known[key] = stored
                write_cache_entry(self.path, json.dumps(self._known, indent=1))
        return Interpreter(
            path=known["executable"],
            source=chosen.source,
            version=known["version"],
            sites=tuple(known["sites"]),
            scripts=known["scripts"],
            looked=chosen.looked,
        )


def _pth_of(entry: object) -> object:
    return entry.get("pth") if isinstance(entry, dict) else None


class _About(TypedDict):
    executable: str
    version: str
    sites: list[str]
    scripts: str


def _valid(entry: object) -> _About | None:
    """An answer as _ABOUT gives it, or None (an older forge's, or a damaged file)."""
    if not isinstance(entry, dict):
        return None
    texts = all(isinstance(entry.get(k), str) for k in ("executable", "version", "scripts"))
    sites = entry.get("sites")
    if not texts or not isinstance(sites, list) or not all(isinstance(s, str) for s in sites):
        return None
    return _About(
        executable=entry["executable"],
        version=entry["version"],
        sites=sites,
        scripts=entry["scripts"],
    )


def _file_key(path: str) -> str:
    real = os.path.realpath(path)
    try:
        info = os.stat(real)
    except OSError:
        return f"{path}|{real}|missing"
    # The question asked is part of the key: a forge that asks more asks again.
    asked = hashlib.sha256(_ABOUT.encode()).hexdigest()[:12]
    return f"{os.path.abspath(path)}|{real}|{info.st_size}|{info.st_mtime_ns}|{asked}"


def _ask(path: str, project: Path) -> _About | str:
    """What the interpreter says about itself, asked in the project's folder (a shim picks
    the interpreter by it); or why it could not say."""
    from forge.validation.process import run

    environ = {k: v for k, v in os.environ.items() if k != "PYTHONHOME"}
    try:
        done = run([path, "-c", _ABOUT], project, ASK_SECONDS, env=environ)
    except OSError as err:
        return f"{path} does not run: {err.strerror or err}"
    if done.timed_out:
        return f"{path} does not run: no answer in {ASK_SECONDS:g} s"
    lines = done.stdout.strip().splitlines()
    try:
        about = _valid(json.loads(lines[-1])) if lines and done.exit_code == 0 else None
    except ValueError:
        about = None
    if about is None:
        said = (done.stderr.strip().splitlines() or ["it printed nothing"])[-1]
        return f"{path} does not run (exit {done.exit_code}): {said}"
    return about
