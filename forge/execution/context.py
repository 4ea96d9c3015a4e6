"""Which files' text goes into a task's prompt, within its token budget.

In order: the files the task names, the files that define the symbols it mentions, then, while
the context is small and budget remains, the files most connected to those. A planning or
architecture task gets the repository's module tree and public signatures instead of bodies.
Whatever the task named that could not go in is listed, so the model knows it was not shown.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from forge.execution.symbols import (
    MAX_HEADER_LINES,
    Definition,
    SymbolIndex,
    language_of,
    module_name,
    read_text,
)
from forge.routing.signals import BACKTICKED, IDENTIFIER, read_signals, token_count
from forge.validation.tree import list_files

__all__ = [
    "ContextFile",
    "Definition",
    "LeftOut",
    "SelectedContext",
    "SymbolIndex",
    "module_tree",
    "select_context",
    "summarize_file",
]

# Below this many files, the files connected to the chosen ones are worth their tokens.
HANDFUL = 5
# A symbol defined in more files than this ("run", "parse") brings none of them in.
MAX_DEFINERS_PER_SYMBOL = 3
# Neighbours looked at before giving up on fitting one more.
MAX_NEIGHBOUR_CANDIDATES = 20
# Files summarised, most referenced first, for a planning task.
MAX_SUMMARIES = 60
# Less room than this holds no summary worth having; after this many summaries in a row that
# did not fit, the room left is too small for the files that remain.
MIN_SUMMARY_ROOM = 32
MAX_SUMMARY_MISSES = 5
# Tokens kept back for the notes on what was left out (at most a tenth of the budget).
LEFT_OUT_ALLOWANCE = 40
# The module tree may take this share of the budget; beyond it, folders only.
TREE_SHARE = 3
# "\n\n" between blocks: at most one more token than the blocks alone.
SEPARATOR_TOKENS = 1
TREE_WIDTH = 96
SUMMARY_NOTE = "summary: public signatures only, bodies left out"
LEFT_OUT_HEADING = "Left out of this context:"
# Fence languages of the files that are not source code (those go by their language).
FENCES = {
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".json": "json",
    ".md": "markdown",
    ".sh": "bash",
    ".bash": "bash",
    ".html": "html",
    ".css": "css",
    ".sql": "sql",
    ".ini": "ini",
    ".cfg": "ini",
    ".xml": "xml",
    ".txt": "text",
    ".rst": "rst",
}
CONTAINERS = frozenset({"class", "trait", "impl", "interface"})
# A string literal opening a line: its quotes, and the text after them.
PY_STRING_START = re.compile(r"""\s*[rRuUbBfF]{0,2}("{3}|'{3}|"|')(.*)""")
BACKTICK_RUN = re.compile(r"`{3,}")
RUST_ATTRIBUTE = re.compile(r"\s*#!?\[")


@dataclass(frozen=True)
class ContextFile:
    """A file in the context; `tokens` is what its block costs in the prompt, framing included."""

    path: str
    text: str
    reason: str
    tokens: int
    summary: bool = False


@dataclass(frozen=True)
class LeftOut:
    path: str
    reason: str


@dataclass(frozen=True)
class SelectedContext:
    """The files chosen for a task's prompt, what was left out and why, and the budget.

    `tree` is the repository's module tree, given to planning tasks ahead of the files.
    """

    files: tuple[ContextFile, ...]
    left_out: tuple[LeftOut, ...]
    budget_tokens: int
    tree: str = ""

    @property
    def tokens(self) -> int:
        return token_count(self.render())

    def render(self) -> str:
        """The prompt section: the tree, each file in a fence, then what was left out."""
        blocks = [_tree_block(self.tree)] if self.tree else []
        blocks += [_file_block(f.path, f.text, f.summary) for f in self.files]
        if self.left_out:
            blocks.append("\n".join([LEFT_OUT_HEADING, *map(_left_out_line, self.left_out)]))
        return "\n\n".join(blocks)


def select_context(
    root: Path,
    task_text: str,
    *,
    named_files: Sequence[str] = (),
    budget_tokens: int,
    summarize: bool = False,
    files: Sequence[str] | None = None,
    index: SymbolIndex | None = None,
) -> SelectedContext:
    """The context for one task: named files, then symbol definers, then neighbours (or, with
    `summarize`, the module tree and summaries), never over `budget_tokens`."""
    listed = tuple(files) if files is not None else list_files(root)
    index = index if index is not None else SymbolIndex.build(root, listed)
    signals = read_signals(task_text)
    selection = _Selection(root, index, budget_tokens, summarize)
    if summarize:
        selection.add_tree(listed)
    named = dict.fromkeys([*named_files, *signals.files])
    for name, path in _resolve_all(root, named, listed):
        if path is not None:
            selection.offer(path, "named in the task")
        elif Path(name).is_absolute() and not Path(name).is_relative_to(root):
            selection.leave_out(name, "outside the repository")
        else:
            selection.leave_out(name, "not found in the repository (the task may create it)")
    for symbol in _task_symbols(task_text, signals.symbols):
        for path in _definers(index, symbol):
            selection.offer(path, f"defines `{symbol}`")
    if summarize:
        selection.add_most_referenced()
    elif len(selection.files) < HANDFUL:
        selection.add_neighbours()
    return selection.result()


def summarize_file(path: str, text: str, index_definitions: Sequence[Definition]) -> str:
    """The file's public definitions, one signature a line in file order, methods indented
    under their class or impl; with a docstring's first line for Python and a doc comment's
    for Rust. Empty when the file defines nothing public."""
    language = language_of(path)
    lines = text.split("\n")  # as the index counts lines
    summary: list[str] = []
    pending = ""  # an impl's line, written once one of its methods is
    inside = False  # after a class, trait or impl: its methods are indented under it
    for definition in sorted((d for d in index_definitions if d.public), key=lambda d: d.line):
        indent = "    " if definition.kind == "method" and inside else ""
        if definition.kind in CONTAINERS:
            inside = True
        elif definition.kind != "method":
            inside = False
        if definition.kind == "impl":
            pending = definition.signature
            continue
        if pending and indent:
            summary.append(pending)
        pending = ""
        if language == "rust":
            summary.extend(indent + doc for doc in _rust_doc(lines, definition.line))
        summary.append(indent + definition.signature)
        doc = _python_doc(lines, definition.line) if language == "python" else ""
        if doc and definition.kind != "const":
            summary.append(f'{indent}    """{doc}"""')
    if not summary:
        return ""
    module_doc = _module_doc(lines) if language == "python" else ""
    return "\n".join([f'"""{module_doc}"""', *summary] if module_doc else summary)


def module_tree(files: Sequence[str]) -> str:
    """The source files as an indented tree: a folder's files on its lines, then its folders;
    a chain of folders holding only one folder is written as one path."""
    return "\n".join(_tree_lines(_folders(files), "", with_files=True))


# Selection --------------------------------------------------------------------------------------


@dataclass
class _Selection:
    """The context as it is being chosen, and what it has cost so far."""

    root: Path
    index: SymbolIndex
    budget: int
    summarize: bool
    files: list[ContextFile] = field(default_factory=list)
    left_out: list[LeftOut] = field(default_factory=list)
    tree: str = ""
    used: int = 0  # tokens of the tree and file blocks
    notes: int = 0  # tokens of the left-out section
    seen: set[str] = field(default_factory=set)

    def room(self) -> int:
        """Tokens a file may still take: the budget less what is used and what is kept back
        for notes on files left out."""
        allowance = min(LEFT_OUT_ALLOWANCE, self.budget // 10)
        return self.budget - self.used - self.notes - max(0, allowance - self.notes)

    def offer(self, path: str, reason: str) -> None:
        """A named file or a symbol's definer: whole if it fits, else its summary, else a note
        with the numbers. A planning task gets the summary first."""
        if path in self.seen:
            return
        self.seen.add(path)
        text = read_text(self.root, path)
        if text is None:
            self.leave_out(path, f"{reason}, but it is not a text file under 1 MB")
            return
        room, whole = self.room(), _cost(path, text, summary=False)
        if whole <= room and not self.summarize:
            self._add(path, text, reason, summary=False)
            return
        summary = summarize_file(path, text, self.index.defined_in(path))
        if not summary:
            # Prose, data, or nothing public: the text itself or nothing.
            if whole <= room:
                self._add(path, text, reason, summary=False)
            else:
                self.leave_out(path, f"{reason}, but {_over(whole, room)}")
            return
        brief = _cost(path, summary, summary=True)
        if brief <= room:
            why = "" if self.summarize else f"; summarised: {_over(whole, room)}"
            self._add(path, summary, reason + why, summary=True)
        elif self.summarize:
            self.leave_out(path, f"{reason}, but its summary's {_over(brief, room)}")
        else:
            also = f"and so is its {brief:,}-token summary"
            self.leave_out(path, f"{reason}, but {_over(whole, room)}, {also}")

    def add_tree(self, listed: Sequence[str]) -> None:
        """The module tree, or only its folders when the files would take too much."""
        for tree in (module_tree(listed), "\n".join(_tree_lines(_folders(listed), "", False))):
            cost = token_count(_tree_block(tree)) + SEPARATOR_TOKENS
            if tree and cost <= self.room() // TREE_SHARE:
                self.tree, self.used = tree, self.used + cost
                return

    def add_neighbours(self) -> None:
        """Whole files connected to the chosen ones, strongest first, while they fit."""
        ranked = _neighbours(self.index, [f.path for f in self.files], self.seen)
        for path, reason in ranked[:MAX_NEIGHBOUR_CANDIDATES]:
            if len(self.files) >= HANDFUL:
                return
            text = read_text(self.root, path)
            if text is not None and _cost(path, text, summary=False) <= self.room():
                self.seen.add(path)
                self._add(path, text, reason, summary=False)

    def add_most_referenced(self) -> None:
        """Summaries of the files the most others use, while the budget lasts."""
        counts = {path: self.index.references(path) for path in self.index.sources()}
        ranked = [path for path in _most_first(counts) if counts[path] and path not in self.seen]
        misses = 0
        for path in ranked[:MAX_SUMMARIES]:
            if self.room() < MIN_SUMMARY_ROOM or misses >= MAX_SUMMARY_MISSES:
                return
            text = read_text(self.root, path)
            summary = (
                "" if text is None else summarize_file(path, text, self.index.defined_in(path))
            )
            if summary and _cost(path, summary, summary=True) <= self.room():
                self.seen.add(path)
                others = "file" if counts[path] == 1 else "files"
                self._add(path, summary, f"used by {counts[path]} other {others}", summary=True)
                misses = 0
            else:
                misses += 1

    def leave_out(self, path: str, reason: str) -> None:
        note = LeftOut(path, reason)
        heading = 0 if self.left_out else token_count(LEFT_OUT_HEADING) + SEPARATOR_TOKENS
        self.notes += heading + token_count(_left_out_line(note)) + SEPARATOR_TOKENS
        self.left_out.append(note)

    def result(self) -> SelectedContext:
        return SelectedContext(tuple(self.files), tuple(self.left_out), self.budget, self.tree)

    def _add(self, path: str, text: str, reason: str, summary: bool) -> None:
        cost = _cost(path, text, summary)
        self.files.append(ContextFile(path, text, reason, cost, summary))
        self.used += cost


def _cost(path: str, text: str, summary: bool) -> int:
    return token_count(_file_block(path, text, summary)) + SEPARATOR_TOKENS


def _over(tokens: int, room: int) -> str:
    return f"{tokens:,} tokens is over the {max(room, 0):,}-token budget left"


def _most_first(counts: dict[str, int]) -> list[str]:
    """The keys, highest count first, then by path: the same inputs give the same order."""
    return sorted(counts, key=lambda path: (-counts[path], path))


def _resolve_all(
    root: Path, names: Iterable[str], listed: Sequence[str]
) -> list[tuple[str, str | None]]:
    """Each name with the listed path it means: the exact path, else the shortest one ending
    in "/" + name; None when nothing matches."""
    known = set(listed)
    by_name: dict[str, list[str]] = defaultdict(list)
    for path in listed:
        by_name[PurePosixPath(path).name].append(path)
    resolved: list[tuple[str, str | None]] = []
    for name in names:
        wanted = name.strip().replace("\\", "/").removeprefix("./")
        if Path(wanted).is_absolute() and Path(wanted).is_relative_to(root):
            wanted = Path(wanted).relative_to(root).as_posix()
        if wanted in known:
            resolved.append((name, wanted))
            continue
        ending = [
            p for p in by_name.get(PurePosixPath(wanted).name, ()) if p.endswith("/" + wanted)
        ]
        resolved.append((name, min(ending, key=lambda p: (len(p), p)) if ending else None))
    return resolved


def _task_symbols(task_text: str, symbols: Sequence[str]) -> list[str]:
    """The symbols the task mentions, in order: read_signals' and every backticked identifier
    (read_signals skips backticks inside pasted code)."""
    found = dict.fromkeys(symbols)
    for match in BACKTICKED.finditer(task_text):
        name = match.group(1).strip()
        if IDENTIFIER.match(name):
            found.setdefault(name.removesuffix("()"), None)
    return list(found)


def _definers(index: SymbolIndex, symbol: str) -> list[str]:
    """The files that define `symbol`, those with only an `impl` of it last; none when more
    than a handful define it, which says too little about which one the task means."""
    impl_only: dict[str, bool] = {}
    for definition in index.definitions(symbol):
        only = impl_only.get(definition.path, True)
        impl_only[definition.path] = only and definition.kind == "impl"
    if sum(not only for only in impl_only.values()) > MAX_DEFINERS_PER_SYMBOL:
        return []
    ranked = sorted(impl_only, key=lambda path: (impl_only[path], path))
    return ranked[:MAX_DEFINERS_PER_SYMBOL]


def _neighbours(index: SymbolIndex, chosen: Sequence[str], seen: set[str]) -> list[tuple[str, str]]:
    """Files connected to the chosen ones, strongest overall first, each with the reason
    taken from its strongest single connection."""
    strength: dict[str, int] = defaultdict(int)
    best: dict[str, tuple[int, str]] = {}
    for path in chosen:
        for other, link in index.links(path).items():
            if other in seen:
                continue
            strength[other] += link.strength
            if other not in best or link.strength > best[other][0]:
                best[other] = (link.strength, _connection(path, other, link.uses, link.used_by))
    return [(path, best[path][1]) for path in _most_first(strength)]


def _connection(path: str, other: str, uses: Sequence[str], used_by: Sequence[str]) -> str:
    """Why `other` is in the context, in terms of the chosen file `path`."""
    if len(uses) >= len(used_by):
        name = _telling(uses, module_name(other))
        what = f"module `{name}`" if name == module_name(other) else f"`{name}`"
        return f"defines {what}, which {path} uses"
    name = _telling(used_by, module_name(path))
    what = f"module `{name}`" if name == module_name(path) else f"`{name}`"
    return f"uses {what} from {path}"


def _telling(names: Sequence[str], module: str) -> str:
    """The name that best explains a connection: a symbol rather than a module name."""
    return next((name for name in names if name != module), names[0])


# Rendering --------------------------------------------------------------------------------------


def _file_block(path: str, text: str, summary: bool) -> str:
    fence = _fence(text)
    header = f"{path} ({SUMMARY_NOTE})" if summary else path
    return f"{header}\n{fence}{_fence_language(path)}\n{text.rstrip(chr(10))}\n{fence}"


def _tree_block(tree: str) -> str:
    return f"Repository layout (source files):\n```text\n{tree}\n```"


def _left_out_line(note: LeftOut) -> str:
    return f"- {note.path}: {note.reason}"


def _fence(text: str) -> str:
    """Three backticks, or one more than the longest run in the text, so it cannot close early."""
    runs = [len(run) for run in BACKTICK_RUN.findall(text)]
    return "`" * (max(runs) + 1 if runs else 3)


def _fence_language(path: str) -> str:
    return language_of(path) or FENCES.get(PurePosixPath(path).suffix.lower(), "")


# Summaries --------------------------------------------------------------------------------------


def _python_doc(lines: Sequence[str], line: int) -> str:
    """The first line of the docstring under the `def` or `class` on `line` (1-based), or "".

    Read from the lines, not parsed: a summary is made of many files, and `ast` is slow.
    """
    depth = 0
    for at in range(line - 1, min(line - 1 + MAX_HEADER_LINES, len(lines))):
        code = lines[at].split("#")[0].rstrip()
        depth += sum(code.count(c) for c in "([{") - sum(code.count(c) for c in ")]}")
        if depth <= 0:
            return _opening_string(lines, at + 1) if code.endswith(":") else ""
    return ""


def _module_doc(lines: Sequence[str]) -> str:
    at = 0
    while at < len(lines) and (not lines[at].strip() or lines[at].lstrip().startswith("#")):
        at += 1
    return _opening_string(lines, at)


def _opening_string(lines: Sequence[str], at: int) -> str:
    """The first line of text of the string literal that opens the block at line index `at`."""
    while at < len(lines) and not lines[at].strip():
        at += 1
    opened = PY_STRING_START.match(lines[at]) if at < len(lines) else None
    if opened is None:
        return ""
    quote, rest = opened.groups()
    if not rest.strip() and len(quote) == 3 and at + 1 < len(lines):
        rest = lines[at + 1]  # the text starts on the line after the quotes
    return rest.split(quote)[0].strip()


def _rust_doc(lines: Sequence[str], line: int) -> list[str]:
    """The first line of the `///` comment above a Rust item, past its attributes."""
    at = line - 2
    while at >= 0 and RUST_ATTRIBUTE.match(lines[at]):
        at -= 1
    first = ""
    while at >= 0 and lines[at].lstrip().startswith("///"):
        first = lines[at].strip()
        at -= 1
    return [first] if first.strip("/ ") else []


# Module tree ------------------------------------------------------------------------------------


@dataclass
class _Folder:
    files: list[str] = field(default_factory=list)
    folders: dict[str, _Folder] = field(default_factory=dict)

    def count(self) -> int:
        return len(self.files) + sum(folder.count() for folder in self.folders.values())


def _folders(files: Sequence[str]) -> _Folder:
    top = _Folder()
    for path in sorted(f for f in set(files) if language_of(f) is not None):
        *parents, name = path.split("/")
        folder = top
        for part in parents:
            folder = folder.folders.setdefault(part, _Folder())
        folder.files.append(name)
    return top


def _tree_lines(folder: _Folder, indent: str, with_files: bool) -> list[str]:
    lines = _wrapped(folder.files, indent) if with_files else []
    for name in sorted(folder.folders):
        label, inner = name, folder.folders[name]
        while not inner.files and len(inner.folders) == 1:
            (child, inner), *_ = inner.folders.items()
            label = f"{label}/{child}"
        count = "" if with_files else f" ({inner.count()} files)"
        lines.append(f"{indent}{label}/{count}")
        lines.extend(_tree_lines(inner, indent + "  ", with_files))
    return lines


def _wrapped(names: Sequence[str], indent: str) -> list[str]:
    """File names side by side, two spaces apart, in lines of a readable width."""
    lines: list[str] = []
    current = ""
    for name in names:
        if current and len(indent) + len(current) + 2 + len(name) > TREE_WIDTH:
            lines.append(indent + current)
            current = ""
        current = f"{current}  {name}" if current else name
    return [*lines, indent + current] if current else lines
