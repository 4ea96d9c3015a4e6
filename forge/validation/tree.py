"""The files a validation looks at: what git tracks or would track, read without any tool."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

SKIP_DIRS = {
    ".git",
    "target",
    "node_modules",
    ".venv",
    "venv",
    "__pycache__",
    "build",
    "dist",
    ".tox",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
}


# Variables that point git at a repository elsewhere than the folder it runs in.
GIT_LOCATION = frozenset({"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR"})


def git_root(start: Path) -> Path | None:
    """The git work tree containing `start` (the nearest folder with a `.git` folder or, in a
    worktree or submodule, a `.git` file), None outside one. No git process is needed."""
    resolved = start.resolve()
    for folder in (resolved, *resolved.parents):
        if os.path.exists(os.path.join(folder, ".git")):
            return folder
    return None


def repository_root(path: Path) -> Path:
    """The git work tree containing `path`, else `path` itself."""
    return git_root(path) or path.resolve()


RACY_NS = 2_000_000_000
Stamp = tuple[int, int, int, int]  # size, mtime and ctime in ns, inode: what a rewrite changes


@dataclass(frozen=True)
class Known:
    """A file as git's index has it, and its stat when the listing was taken."""

    object_id: str
    stamp: Stamp


@dataclass(frozen=True)
class Listing:
    """The files a validation looks at, and the content ids git already holds for them."""

    files: tuple[str, ...]
    # Each regular file the work tree holds byte for byte as git's index does: the validation
    # cache keys it by git's id instead of reading it, while its stat stays the same.
    known: Mapping[str, Known] = field(default_factory=dict)

    def with_written(self, root: Path, written: Iterable[str]) -> Listing | None:
        """This listing of `root` after its taker wrote the files `written` (repository paths)
        and nothing else changed the tree: new files join it, and none of the written ones is
        keyed by the id git holds for its old content. None when a written file may change
        what git lists (a `.gitignore`, or `.gitattributes` and the ids): list again then."""
        changed = set(written)
        if any(n.rpartition("/")[2] in (".gitignore", ".gitattributes") for n in changed):
            return None
        names = set(self.files) | {n for n in changed if _kept(n)}
        files = tuple(sorted(n for n in names if n not in changed or _is_file(root / n)))
        known = {n: k for n, k in self.known.items() if n not in changed}
        return Listing(files, known)


def list_files(root: Path) -> tuple[str, ...]:
    """Files git tracks or would track (untracked but not ignored), relative, sorted."""
    return listing(root, with_ids=False).files


def listing(root: Path, *, with_ids: bool = True) -> Listing:
    """Files git tracks or would track (untracked but not ignored), relative, sorted, with the
    ids git knows for the unchanged ones (`with_ids`: the configuration that decides whether
    they can be trusted is asked of git beside the listing).

    Untracked files count because pytest collects them. Outside git: every file, minus the
    usual build and environment folders, and no ids.
    """
    # -v: lower-case tags for files marked assume-unchanged, whose ids are not to be trusted;
    # -m: files whose content differs from the index ("C"): when a stat alone cannot tell, git
    # compares the bytes, here with no line-ending or attribute conversion (so two files that
    # convert to the same content never pass for each other); see `_converts`.
    started = time.time_ns()
    # What decides whether checkouts here convert files, asked beside the listing.
    asked = None
    if with_ids:
        asked = subprocess.Popen(
            ["git", "config", "-z", "--get-regexp", r"^core\.(autocrlf|attributesfile)$"],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    command = ["git", "-c", "core.autocrlf=false", "-c", f"core.attributesFile={os.devnull}"]
    command += ["ls-files", "-z", "-v", "-s", "--cached", "--modified", "--others"]
    done = subprocess.run(
        [*command, "--exclude-standard"],
        cwd=root,
        capture_output=True,
        env={**os.environ, "GIT_ATTR_NOSYSTEM": "1"},
    )
    settings = asked.communicate()[0].decode("utf-8", "replace") if asked else ""
    if done.returncode != 0:
        return Listing(_walk(root))
    names: set[str] = set()
    untracked: set[str] = set()
    ids: dict[str, str] = {}
    changed: set[str] = set()
    for entry in done.stdout.decode("utf-8", "replace").split("\0"):
        tag, _, rest = entry.partition(" ")
        if tag == "?":  # untracked: "? NAME"
            names.add(rest)
            untracked.add(rest)
            continue
        info, _, name = rest.partition("\t")  # "TAG MODE ID STAGE\tNAME"
        if not name:
            continue
        if tag == "C":
            changed.add(name)
            continue
        names.add(name)
        mode, object_id, stage = [*info.split(" "), "", "", ""][:3]
        # Only plain files: a link's id is its target's name, not the content read through it.
        if tag == "H" and stage == "0" and mode in ("100644", "100755"):
            ids[name] = object_id
    if not with_ids or _converts(root, names, settings):
        ids = {}
    # git's racy-entry rule: a file changed just before or while git looked may have been
    # seen by git in its old state and by os.stat in its new one. Time stamps can lag the
    # clock, by up to 2 s on some file systems.
    settled = started - RACY_NS
    # Build output and bytecode that a project forgot to ignore would change on every run; a
    # file git tracks is the project's, whatever its folder is called (a package `build/`).
    kept = sorted(n for n in names if n not in untracked or _kept(n))
    # Only what is a file here: not a deleted one, a submodule, a nested repository, a file
    # outside a sparse checkout or a broken link.
    files: list[str] = []
    known: dict[str, Known] = {}
    for name in kept:
        try:
            found = os.stat(os.path.join(root, name))
        except OSError:
            continue
        if stat.S_ISREG(found.st_mode):
            files.append(name)
            stamp = _stamp(found)
            if name in ids and name not in changed and max(stamp[1], stamp[2]) < settled:
                known[name] = Known(ids[name], stamp)
    return Listing(tuple(files), known)


def content_key(root: Path, name: str, known: Mapping[str, Known]) -> bytes:
    """What a cache key holds for a file's content: its git blob id, as the listing has it
    when the file has not been touched since (nothing is read), else computed from its bytes.
    Both give one key for one content, so a file keys the same whether git vouched for it or
    it had to be read (it changed in the 2 s before the listing, say)."""
    path = root / name
    try:
        found = os.stat(path)
    except OSError:
        return b"unreadable"
    # The executable bit counts: a check that runs the file passes or fails by it.
    kind = b"blob+x " if found.st_mode & stat.S_IXUSR else b"blob "
    entry = known.get(name)
    if entry is not None and _stamp(found) == entry.stamp:
        return kind + entry.object_id.encode()
    try:
        return kind + blob_id(path.read_bytes()).encode()
    except OSError:
        return b"unreadable"


def blob_id(data: bytes) -> str:
    """The id git gives these bytes as a blob (SHA-1, git's default object format; in a
    SHA-256 repository a file read here keys apart from one git vouched for)."""
    import hashlib  # (not at import: `forge route` needs this module, not hashing)

    digest = hashlib.sha1(b"blob %d\0" % len(data), usedforsecurity=False)
    digest.update(data)
    return digest.hexdigest()


def _kept(name: str) -> bool:
    """Not inside a build, cache or environment folder."""
    return not SKIP_DIRS.intersection(name.split("/")[:-1])


def _is_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _stamp(found: os.stat_result) -> Stamp:
    return (found.st_size, found.st_mtime_ns, found.st_ctime_ns, found.st_ino)


def _converts(root: Path, names: set[str], settings: str) -> bool:
    """Whether checkouts here may convert files (core.autocrlf; attributes: text, eol, filters,
    ident...): then the bytes of a file git calls unchanged need not be its blob's, and two
    work trees may hold different bytes for one id. `settings` is `git config -z
    --get-regexp` output for core.autocrlf and core.attributesFile. True when unsure."""
    for entry in settings.split("\0"):
        key, _, value = entry.partition("\n")
        if key == "core.autocrlf" and value.strip().lower() not in ("false", "no", "off", "0"):
            return True
        if key == "core.attributesfile" and Path(value).expanduser().exists():
            return True
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    if (config_home / "git" / "attributes").exists():
        return True
    if not os.environ.get("GIT_ATTR_NOSYSTEM") and Path("/etc/gitattributes").exists():
        return True
    if any(n == ".gitattributes" or n.endswith("/.gitattributes") for n in names):
        return True
    if (root / ".gitattributes").exists() or GIT_LOCATION.intersection(os.environ):
        return True  # an ignored one still counts; a moved repository cannot be told
    try:
        dot = root / ".git"
        if dot.is_dir():
            common = dot
        else:
            pointer = dot.read_text(encoding="utf-8").strip()
            if not pointer.startswith("gitdir:"):
                return True
            gitdir = root / pointer.removeprefix("gitdir:").strip()
            shared = gitdir / "commondir"
            common = gitdir / shared.read_text().strip() if shared.exists() else gitdir
        return (common / "info" / "attributes").exists()
    except OSError:
        return True


def _walk(root: Path) -> tuple[str, ...]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in files:
            found.append((Path(folder) / name).relative_to(root).as_posix())
    return tuple(sorted(found))
