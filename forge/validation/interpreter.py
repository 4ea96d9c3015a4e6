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

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from forge.validation.atomic import write_cache_entry

# What the chosen interpreter reports about itself, asked once per interpreter file.
# Its site folders are every folder on its path but the standard library's (a `.pth` file can
# add one), and sys.path[0], which is the folder it was started in.
_ABOUT = """\
import json, os, site, sys, sysconfig
paths = sysconfig.get_paths()
std = {os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib")}
std |= {os.path.join(s, "lib-dynload") for s in std}
def ours(p):
    return os.path.isdir(p) and os.path.realpath(p) not in std
sites = [paths["purelib"], paths["platlib"], *site.getsitepackages(), *sys.path[1:]]
if site.ENABLE_USER_SITE:
    sites.append(site.getusersitepackages())
print(json.dumps({"executable": sys.executable, "version": ".".join(map(str, sys.version_info[:3])),
    "sites": [p for p in dict.fromkeys(sites) if p and ours(p)], "scripts": paths["scripts"]}))
"""

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

    @property
    def minor(self) -> tuple[int, int]:
        major, minor, *_ = (int(p) for p in self.version.split("."))
        return (major, minor)

    def describe(self) -> str:
        return f"{self.path} (Python {self.version}, {SOURCES[self.source]})"

    def lacks(self, distribution: str) -> str:
        """Why a tool that must run inside this environment cannot."""
        sites = ", ".join(dict.fromkeys(self.sites))
        return (
            f"{distribution} is not installed in the environment of {self.describe()}; "
            f"looked in {sites}"
        )

    def distribution(self, name: str) -> str | None:
        """The installed version of distribution `name` (None when it is not installed)."""
        wanted = _normalise(name)
        for entry in self.installed():
            stem = entry.rsplit(".", 1)[0]
            dist, _, version = stem.partition("-")
            if _normalise(dist) == wanted and entry.endswith((".dist-info", ".egg-info")):
                return version or "?"
        return None

    def installed(self) -> tuple[str, ...]:
        return installed(self.sites)

    def script(self, name: str) -> str | None:
        path = Path(self.scripts) / name
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None


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


def environment_stamp(sites: tuple[str, ...]) -> str:
    """One value for everything installed in these site folders."""
    digest = hashlib.sha256("\0".join(installed(sites)).encode())
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
    for name in ("bin/python", "bin/python3", "Scripts/python.exe"):
        path = venv / name
        if path.is_file():
            return str(path)
    return None


class Interpreters:
    """What each interpreter says about itself, asked once per interpreter file and kept in
    `path` (a JSON file) across runs: a venv's python is a link to its base interpreter, so
    the key is the link's path and the file it leads to, with that file's size and mtime."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._known: dict[str, dict[str, object]] = json.loads(path.read_text())
        except (OSError, ValueError):
            self._known = {}

    def find(self, project: Path, repo_root: Path, environ: Mapping[str, str]) -> Interpreter:
        chosen = candidate(project, repo_root, environ)
        return self.about(chosen)

    def about(self, chosen: Candidate) -> Interpreter:
        key = _file_key(chosen.path)
        with self._lock:
            known = self._known.get(key)
        if known is None:
            known = _ask(chosen.path)
            if known is None and chosen.source != "forge":
                # It does not run: fall back to forge's own, and say so.
                looked = (*chosen.looked, f"{chosen.path} (does not run)")
                return self.about(Candidate(sys.executable, "forge", looked))
            if known is None:
                known = _about_this()
            with self._lock:
                self._known[key] = known
                write_cache_entry(self.path, json.dumps(self._known, indent=1))
        sites = known["sites"]
        assert isinstance(sites, list)
        return Interpreter(
            path=str(known["executable"]),
            source=chosen.source,
            version=str(known["version"]),
            sites=tuple(str(s) for s in sites),
            scripts=str(known["scripts"]),
            looked=chosen.looked,
        )


def _about_this() -> dict[str, object]:
    """What forge's own interpreter would answer, from the standard places alone."""
    import site

    paths = sysconfig.get_paths()
    return {
        "executable": sys.executable,
        "version": ".".join(map(str, sys.version_info[:3])),
        "sites": list(dict.fromkeys([paths["purelib"], paths["platlib"], *site.getsitepackages()])),
        "scripts": paths["scripts"],
    }


def _file_key(path: str) -> str:
    real = os.path.realpath(path)
    try:
        info = os.stat(real)
    except OSError:
        return f"{path}|{real}|missing"
    # The question asked is part of the key: a forge that asks more asks again.
    asked = hashlib.sha256(_ABOUT.encode()).hexdigest()[:12]
    return f"{os.path.abspath(path)}|{real}|{info.st_size}|{info.st_mtime_ns}|{asked}"


def _ask(path: str) -> dict[str, object] | None:
    try:
        done = subprocess.run(
            [path, "-c", _ABOUT],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if k not in ("PYTHONHOME",)},
        )
        about = json.loads(done.stdout)
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    return about if isinstance(about, dict) and done.returncode == 0 else None
