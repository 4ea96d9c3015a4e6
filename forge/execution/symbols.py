"""Where a repository defines its symbols, and which files use which.

The index is built before every task, so it is cheap: each source file is read once, scanned for
definitions by a line-anchored regular expression per language, and split into the words it
mentions. Python files are also parsed with `ast`, but only when their definitions are asked
for: parsing costs ten times what the scan does, and a task looks at a handful of files. A file
that does not parse keeps what the scanner found.
"""

from __future__ import annotations

import ast
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from forge.routing.codebase import GENERIC_STEMS, MIN_STEM_LENGTH
from forge.routing.vocabulary import words

MAX_FILE_BYTES = 1_000_000
BINARY_SNIFF_BYTES = 8192
MAX_SIGNATURE_CHARS = 200
MAX_HEADER_LINES = 12
MAX_HEADER_CHARS = 2000
# A name defined in more files than this says nothing about which of them another file uses.
MAX_DEFINERS = 5
# A word more than this share of the files mention is the language of the project, not a link
# ("forge", "config" in forge); small repositories are exempt: a core type is in every file.
COMMON_SHARE = 0.25
COMMON_MIN_FILES = 20
# A plain lowercase word ("report", "write") is as often English or a variable as it is the
# module or function of that name: it links files only while few mention it.
PLAIN_WORD_SHARE = 0.1

LANGUAGES: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".rs": "rust",
    ".go": "go",
    ".js": "javascript",
    ".jsx": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".mts": "typescript",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hh": "cpp",
    ".hpp": "cpp",
    ".hxx": "cpp",
    ".java": "java",
    ".kt": "kotlin",
    ".kts": "kotlin",
    ".cs": "csharp",
    ".swift": "swift",
    ".scala": "scala",
    ".rb": "ruby",
    ".php": "php",
}
# Protocol methods and entry points every other file defines or calls: as links between files
# they are noise ("new" would join every Rust file to every other).
COMMON_NAMES = frozenset(
    words(
        "new default from into fmt clone drop deref eq cmp partial_cmp hash next iter into_iter "
        "as_ref as_mut borrow try_from try_into from_str to_string len is_empty main run get set "
        "init setup teardown test self cls args kwargs"
    )
)
# Folders that hold a crate's or package's sources: `src/lib.rs` is not a module named "src".
SOURCE_FOLDERS = frozenset(words("src lib source sources pkg app"))

# Everything that cannot be part of an ASCII identifier becomes a space, so `split()` yields the
# words: several times faster than a regular expression's findall.
_NOT_WORD = str.maketrans({chr(c): " " for c in range(128) if not (chr(c).isalnum() or c == 95)})
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Definition:
    """One definition: `symbol` is the bare name; a method's class or type is not part of it."""

    symbol: str
    path: str
    line: int
    kind: str
    signature: str
    public: bool


@dataclass(frozen=True)
class _Spot:
    """A definition as the scan saw it: enough to look it up and to link files. Its signature
    is read only when the definition is asked for."""

    symbol: str
    kind: str
    owner: str  # the class, impl or trait it sits in; "" at top level
    line: int
    offset: int  # where its declaration starts, after the indentation
    public: bool


@dataclass(frozen=True)
class _Found:
    definition: Definition
    owner: str = ""


@dataclass
class _Source:
    path: str
    language: str
    text: str
    module: str
    spots: tuple[_Spot, ...]
    words: frozenset[str]
    found: tuple[_Found, ...] | None = None  # the definitions, read on first need
    # The names another file could use it by: its public definitions and its module name.
    # Methods are left out: a method's name alone ("count", "add") is any object's method; and
    # so are `mod` lines: `mod lexer;` in lib.rs names lexer.rs, whose own module name it is.
    names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        public = {
            spot.symbol
            for spot in self.spots
            if spot.public and not spot.owner and spot.kind != "module"
        }
        self.names = frozenset(public | {self.module} if self.module else public)


@dataclass(frozen=True)
class Link:
    """How a file is connected to another: the names it uses that the other defines, and its
    names the other uses."""

    uses: tuple[str, ...]
    used_by: tuple[str, ...]

    @property
    def strength(self) -> int:
        return len(self.uses) + len(self.used_by)


class SymbolIndex:
    """Definitions by name and by file, and who mentions whom, for one repository snapshot.

    A file uses another when it mentions, as a whole word, a name the other defines publicly
    at its top level or the other's module name, and does not define that name itself. Names
    that cannot tell files apart link nothing: protocol methods ("new", "fmt", "__init__"),
    names defined in more than a handful of files, and words more than a quarter of a larger
    repository mentions.
    """

    def __init__(self, sources: Iterable[_Source]) -> None:
        self._sources = {source.path: source for source in sources}
        # bare and qualified ("Owner.name") names -> the files whose scan defines them
        self._definers: dict[str, list[str]] = defaultdict(list)
        self._modules: dict[str, list[str]] = defaultdict(list)
        linking: dict[str, list[str]] = defaultdict(list)
        for path, source in self._sources.items():
            qualified = {f"{spot.owner}.{spot.symbol}" for spot in source.spots if spot.owner}
            for name in {spot.symbol for spot in source.spots} | qualified:
                self._definers[name].append(path)
            if source.module:
                self._modules[source.module].append(path)
            for name in source.names:
                if _links_files(name):
                    linking[name].append(path)
        candidates = frozenset(n for n, paths in linking.items() if len(paths) <= MAX_DEFINERS)
        mentions: dict[str, list[str]] = defaultdict(list)
        for path, source in self._sources.items():
            for name in source.words & candidates:
                if name not in source.names:
                    mentions[name].append(path)
        # linking names -> the files that define them, and the other files that mention them
        self._linking = {
            n: linking[n] for n in candidates if not self._too_common(n, len(mentions[n]))
        }
        self._linking_set = frozenset(self._linking)
        self._mentions = {n: mentions[n] for n in self._linking}

    @classmethod
    def build(cls, root: Path, files: Sequence[str]) -> SymbolIndex:
        """Index the source files among `files` (repository-relative) under `root`."""
        sources = (_read_source(root, path) for path in sorted(set(files)))
        return cls(source for source in sources if source is not None)

    def definitions(self, symbol: str) -> list[Definition]:
        """Where `symbol` is defined; "Type::method" and "Class.method" name one type's method,
        and "module.name" a name defined at the top of that module."""
        name = symbol.strip().removesuffix("()")
        owner, _, bare = name.replace("::", ".").rpartition(".")
        if not owner:
            return self._matching(self._definers.get(bare, ()), bare, None)
        owner = owner.rpartition(".")[2]
        found = self._matching(self._definers.get(f"{owner}.{bare}", ()), bare, owner)
        return found or self._matching(self._modules.get(owner, ()), bare, "")

    def defined_in(self, path: str) -> list[Definition]:
        """Everything `path` defines, in file order."""
        return [found.definition for found in self._found(path)]

    def references(self, path: str) -> int:
        """How many other files mention a symbol defined in `path`, or its module name."""
        source = self._sources.get(path)
        if source is None:
            return 0
        users: set[str] = set()
        for name in source.names & self._linking_set:
            users.update(self._mentions[name])
        return len(users)

    def neighbours(self, path: str) -> list[tuple[str, int]]:
        """The files most connected to `path`, strongest first: the strength is how many
        distinct names one of the two defines and the other mentions."""
        ranked = sorted(self.links(path).items(), key=lambda item: (-item[1].strength, item[0]))
        return [(other, link.strength) for other, link in ranked]

    def sources(self) -> list[str]:
        """The files the index holds (source files, text, under 1 MB), sorted."""
        return list(self._sources)

    def links(self, path: str) -> dict[str, Link]:
        """Every file connected to `path`, with the names that connect them, by path."""
        source = self._sources.get(path)
        if source is None:
            return {}
        used_by: dict[str, set[str]] = defaultdict(set)
        for name in source.names & self._linking_set:
            for other in self._mentions[name]:
                used_by[other].add(name)
        uses: dict[str, set[str]] = defaultdict(set)
        for name in (source.words & self._linking_set) - source.names:
            for other in self._linking[name]:
                uses[other].add(name)
        others = sorted((used_by.keys() | uses.keys()) - {path})
        return {
            other: Link(tuple(sorted(uses.get(other, ()))), tuple(sorted(used_by.get(other, ()))))
            for other in others
        }

    def _too_common(self, name: str, mentioned_by: int) -> bool:
        files = len(self._sources)
        if files < COMMON_MIN_FILES:
            return False
        plain = name.isalpha() and name.islower()
        return mentioned_by > files * (PLAIN_WORD_SHARE if plain else COMMON_SHARE)

    def _matching(self, paths: Iterable[str], bare: str, owner: str | None) -> list[Definition]:
        """The definitions of `bare` in `paths`; `owner` None accepts any owner."""
        return [
            found.definition
            for path in sorted(set(paths))
            for found in self._found(path)
            if found.definition.symbol == bare and (owner is None or found.owner == owner)
        ]

    def _found(self, path: str) -> tuple[_Found, ...]:
        source = self._sources.get(path)
        if source is None:
            return ()
        if source.found is None:
            parsed = None
            if source.language == "python":
                parsed = _python_definitions(path, source.text)
            source.found = parsed if parsed is not None else _from_spots(source)
        return source.found


def language_of(path: str) -> str | None:
    """The programming language of a source file, from its extension; None for other files."""
    return LANGUAGES.get(PurePosixPath(path).suffix.lower())


def read_text(root: Path, path: str) -> str | None:
    """A file's text, or None when it is missing, binary, over 1 MB, or really outside `root`
    (a tracked symlink to /etc/... or ~/.aws must not put that file in a prompt)."""
    file = root / path
    try:
        real_root = os.path.realpath(root)
        if os.path.commonpath([real_root, os.path.realpath(file)]) != real_root:
            return None
        if file.stat().st_size > MAX_FILE_BYTES:
            return None
        data = file.read_bytes()
    except OSError:
        return None
    if b"\0" in data[:BINARY_SNIFF_BYTES]:
        return None
    return data.decode("utf-8", "replace")


def module_name(path: str) -> str:
    """The name other files use for this module ("lexer" for src/lexer.rs), or ""."""
    pure = PurePosixPath(path)
    stem = pure.stem
    if stem in GENERIC_STEMS:
        stem = pure.parent.name
        if stem in SOURCE_FOLDERS:
            return ""
    return stem if len(stem) >= MIN_STEM_LENGTH and stem.isidentifier() else ""


# Scans by path and text, for the life of the process: each task of a run indexes its whole
# worktree, and from one task to the next nearly every file is the same (a 5,000-file repository
# takes seconds to scan, and moments to read).
_SCANNED: dict[tuple[str, str], _Source] = {}


def _read_source(root: Path, path: str) -> _Source | None:
    language = language_of(path)
    if language is None:
        return None
    text = read_text(root, path)
    if text is None:
        return None
    source = _SCANNED.get((path, text))
    if source is None:
        spots = SCANNERS.get(language, _scan_keywords)(text, language)
        found_words = frozenset(text.translate(_NOT_WORD).split())
        source = _Source(path, language, text, module_name(path), spots, found_words)
        _SCANNED[(path, text)] = source
    return source


def _links_files(name: str) -> bool:
    dunder = name.startswith("__") and name.endswith("__")
    return len(name) >= MIN_STEM_LENGTH and not dunder and name not in COMMON_NAMES


def _is_private(name: str) -> bool:
    """Python's convention: a leading underscore, except the dunder protocol methods."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _from_spots(source: _Source) -> tuple[_Found, ...]:
    """The scan's definitions, with their signatures read from the text."""
    stops, comment = ":", "#"
    if source.language != "python":
        stops, comment = "{;", "//"
    found = []
    for spot in source.spots:
        if source.language == "python" and spot.kind == "const":
            signature = _collapse(_rest_of_line(source.text, spot.offset))
        else:
            signature = _header(source.text, spot.offset, stops, comment)
        definition = Definition(
            spot.symbol, source.path, spot.line, spot.kind, signature, spot.public
        )
        found.append(_Found(definition, spot.owner))
    return tuple(found)


class _Lines:
    """Line numbers for offsets visited in increasing order, counted incrementally."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._offset = 0
        self._line = 1

    def at(self, offset: int) -> int:
        self._line += self.text.count("\n", self._offset, offset)
        self._offset = offset
        return self._line


def _collapse(header: str) -> str:
    """One line: runs of spaces joined, no space inside brackets, cut to a readable length."""
    line = _SPACES.sub(" ", header).strip()
    line = line.replace("( ", "(").replace(" )", ")").replace("[ ", "[").replace(" ]", "]")
    line = re.sub(r",\s*([)\]])", r"\1", line)
    if len(line) > MAX_SIGNATURE_CHARS:
        line = line[: MAX_SIGNATURE_CHARS - 3].rstrip() + "..."
    return line


def _strip_comment(line: str, marker: str) -> str:
    """The line without its trailing comment, unless a quote comes first (it may hold one)."""
    at = line.find(marker)
    if at < 0 or any(quote in line[:at] for quote in "\"'"):
        return line
    return line[:at]


def _header(text: str, start: int, stops: str, comment: str) -> str:
    """The declaration that begins at `start`, up to the first of `stops` outside brackets
    (the colon of a Python `def`, the brace or semicolon of a Rust item), as one line.

    It runs on to the next line only while a bracket is open: parameters one per line.
    """
    parts: list[str] = []
    depth = 0
    for line in text[start : start + MAX_HEADER_CHARS].split("\n", MAX_HEADER_LINES)[:-1]:
        code = _strip_comment(line, comment)
        for i, char in enumerate(code):
            if char in "([":
                depth += 1
            elif char in ")]":
                depth -= 1
            elif char in stops and depth <= 0:
                parts.append(code[:i])
                return _collapse(" ".join(parts))
        parts.append(code)
        if depth <= 0:
            break  # a complete line with no stop: a declaration without a body
    return _collapse(" ".join(parts))


def _rest_of_line(text: str, start: int) -> str:
    end = text.find("\n", start)
    return text[start:] if end < 0 else text[start:end]


# Python ---------------------------------------------------------------------------------------

# Two literal patterns are several times faster than one alternation: `re` skips to a literal.
PY_DEF = re.compile(r"def[ \t]+([A-Za-z_]\w*)")
PY_CLASS = re.compile(r"class[ \t]+([A-Za-z_]\w*)")
# Searched in the text with a newline put in front, so that it starts on a literal too.
PY_CONST = re.compile(r"\n(_?[A-Z][A-Z0-9_]*)[ \t]*(?::[^=\n]*)?=(?!=)")
PY_CONST_NAME = re.compile(r"_?[A-Z][A-Z0-9_]*")
PY_TOP_LEVEL_LINE = re.compile(r"\n[A-Za-z_]")


def _python_definitions(path: str, text: str) -> tuple[_Found, ...] | None:
    """Top-level functions, classes and their methods, UPPER_CASE constants; None if the file
    does not parse."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return None
    starts = [0, *(match.end() for match in re.finditer("\n", text))]
    found: list[_Found] = []

    def add(node: ast.stmt, name: str, kind: str, owner: str = "") -> None:
        line_start = starts[min(node.lineno, len(starts)) - 1]
        if kind == "const":
            signature = _collapse(_rest_of_line(text, line_start))
        else:
            signature = _header(text, line_start, ":", "#")
        public = not _is_private(name) and not _is_private(owner)
        found.append(_Found(Definition(name, path, node.lineno, kind, signature, public), owner))

    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            add(node, node.name, "function")
        elif isinstance(node, ast.ClassDef):
            add(node, node.name, "class")
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    add(item, item.name, "method", node.name)
        elif name := _constant_name(node):
            add(node, name, "const")
    return tuple(found)


def _constant_name(node: ast.stmt) -> str:
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target: ast.expr = node.targets[0]
    elif isinstance(node, ast.AnnAssign):
        target = node.target
    else:
        return ""
    if isinstance(target, ast.Name) and PY_CONST_NAME.fullmatch(target.id):
        return target.id
    return ""


def _scan_python(text: str, language: str) -> tuple[_Spot, ...]:
    """What `ast` would find, read from the lines alone: it also serves files that do not parse.

    A `def` belongs to the class above it when it is indented under it and no top-level line
    came between; anything nested in a function, or under an `if`, is left out, as `ast` over
    the module body leaves it out.
    """
    spots: list[_Spot] = []
    lines = _Lines(text)
    stack: list[tuple[int, bool, str]] = []  # (indent, is a class, name) of open definitions
    checked = 0
    matches = sorted([*PY_DEF.finditer(text), *PY_CLASS.finditer(text)], key=lambda m: m.start())
    for match in matches:
        line_start = text.rfind("\n", 0, match.start()) + 1
        prefix = text[line_start : match.start()]
        is_class = match.group(0).startswith("class")
        if prefix.strip() not in ("", "async") or (prefix.strip() and is_class):
            continue
        if PY_TOP_LEVEL_LINE.search(text, checked, line_start):
            stack.clear()  # a line at column 0 since the last definition closed every block
        checked = match.end()
        indent = len(prefix) - len(prefix.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        name = match.group(1)
        in_class = len(stack) == 1 and stack[0][1] and stack[0][0] == 0 and not is_class
        owner = stack[0][2] if in_class else ""
        top_level = not stack and indent == 0
        stack.append((indent, is_class, name))
        if top_level or owner:
            kind = "class" if is_class else ("method" if owner else "function")
            public = not _is_private(name) and not _is_private(owner)
            line = lines.at(match.start())
            spots.append(_Spot(name, kind, owner, line, line_start + indent, public))
    constant_lines = _Lines(text)
    for match in PY_CONST.finditer("\n" + text):
        # In the padded text the match starts on the newline, which is the line's start here.
        name, line = match.group(1), constant_lines.at(match.start())
        spots.append(_Spot(name, "const", "", line, match.start(), not _is_private(name)))
    return tuple(sorted(spots, key=lambda spot: spot.line))


# Rust -----------------------------------------------------------------------------------------

RUST_ITEM = re.compile(
    r"\n(?P<indent>[ \t]*)(?P<vis>pub(?:[ \t]*\([^)\n]*\))?[ \t]+)?"
    r"(?:(?:default|const|async|unsafe|extern(?:[ \t]+\"[^\"\n]*\")?)[ \t]+)*"
    r"(?P<kw>fn|struct|enum|trait|type|const|static|mod|union|impl|macro_rules!)(?!\w)"
)
RUST_NAME = re.compile(r"[ \t]+(?:mut[ \t]+)?(?:r#)?([A-Za-z_]\w*)")
MACRO_NAME = re.compile(r"[ \t]*([A-Za-z_]\w*)")
RUST_KINDS = {"fn": "function", "mod": "module", "macro_rules!": "macro"}
RUST_BLOCKS = frozenset({"impl", "trait", "mod"})
IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def _scan_rust(text: str, language: str) -> tuple[_Spot, ...]:
    """Items by their keyword at the start of a line; a `fn` indented under an `impl` or
    `trait` is that type's method (rustfmt's indentation stands in for the braces)."""
    spots: list[_Spot] = []
    lines = _Lines(text)
    # Open blocks: (indent, keyword, type name, whether its methods are public).
    stack: list[tuple[int, str, str, bool]] = []
    for match in RUST_ITEM.finditer("\n" + text):
        indent, keyword = len(match.group("indent")), match.group("kw")
        rest = _rest_of_line(text, match.end() - 1)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        trait_impl = False
        if keyword == "impl":
            name, trait_impl = _impl_target(rest)
        else:
            named = (MACRO_NAME if keyword == "macro_rules!" else RUST_NAME).match(rest)
            name = named.group(1) if named else ""
        if not name or name == "_":
            continue
        public = match.group("vis") is not None
        owner, kind = "", RUST_KINDS.get(keyword, keyword)
        if keyword == "fn" and stack and stack[-1][1] in ("impl", "trait"):
            owner, kind = stack[-1][2], "method"
            public = public or stack[-1][3]
        elif keyword == "impl":
            public = True
        elif keyword == "macro_rules!":
            public = "macro_export" in text[max(0, match.start() - 80) : match.start()]
        if keyword in RUST_BLOCKS and _opens_block(rest):
            # A trait's methods are as public as the trait; a trait impl's are public.
            stack.append((indent, keyword, name, trait_impl if keyword == "impl" else public))
        line = lines.at(match.start())
        spots.append(_Spot(name, kind, owner, line, match.start() + indent, public))
    return tuple(spots)


def _impl_target(rest: str) -> tuple[str, bool]:
    """The type an `impl` line is for, and whether it implements a trait for it."""
    head = rest.strip()
    if head.startswith("<"):
        depth = 0
        for i, char in enumerate(head):
            depth += {"<": 1, ">": -1}.get(char, 0)
            if depth == 0:
                head = head[i + 1 :]
                break
    head = head.split("{")[0].split(" where")[0]
    trait, _, target = head.partition(" for ")
    names = IDENTIFIER.findall((target or trait).split("<")[0])
    return (names[-1] if names else ""), bool(target)


def _opens_block(rest: str) -> bool:
    """Whether the item's body continues on the following lines."""
    if "{" in rest:
        return rest.count("{") > rest.count("}")
    return not rest.rstrip().endswith(";")


# Other languages: best effort, one pattern each ------------------------------------------------

GO_ITEM = re.compile(
    r"\n(?:func[ \t]*(?:\((?P<recv>[^)\n]*)\)[ \t]*)?(?P<func>[A-Za-z_]\w*)"
    r"|type[ \t]+(?P<type>[A-Za-z_]\w*)(?:\[[^\]\n]*\])?[ \t]+(?P<tkind>struct|interface)?"
    r"|(?:const|var)[ \t]+(?P<const>[A-Za-z_]\w*))"
)
JS_ITEM = re.compile(
    r"\n(?:export[ \t]+(?:default[ \t]+)?)?(?:declare[ \t]+)?(?:abstract[ \t]+)?"
    r"(?:async[ \t]+)?(?P<kw>function\*?|class|interface|type|enum|const|let|var|namespace)"
    r"[ \t]+(?P<name>[A-Za-z_$][\w$]*)"
)
C_ITEM = re.compile(
    r"\n(?:(?:typedef[ \t]+)?(?P<kw>struct|class|enum(?:[ \t]+class)?|union|namespace)[ \t]+"
    r"(?P<name>[A-Za-z_]\w*)(?![\w \t]*;)"
    r"|#[ \t]*define[ \t]+(?P<macro>[A-Za-z_]\w*)"
    r"|(?!(?:return|else|if|for|while|switch|case|do|goto|typedef|using|template)\b)"
    r"(?:[A-Za-z_][\w:<>,]*[ \t\*&]+){1,6}(?P<func>~?[A-Za-z_]\w*(?:::~?[A-Za-z_]\w*)?)[ \t]*\()"
)
KEYWORD_ITEM = re.compile(
    r"\n[ \t]*(?:(?:public|private|protected|internal|static|final|abstract|sealed|open|data|"
    r"export|async|override|inline)[ \t]+)*"
    r"(?P<kw>class|interface|enum|struct|record|object|trait|def|fun|func|function|module|"
    r"protocol|extension)[ \t]+(?P<name>[A-Za-z_]\w*)"
)
KINDS = {
    "function*": "function",
    "def": "function",
    "fun": "function",
    "func": "function",
    "let": "variable",
    "var": "variable",
    "namespace": "module",
    "record": "class",
    "object": "class",
    "protocol": "interface",
    "extension": "impl",
    "enum class": "enum",
}


def _read_go(match: re.Match[str]) -> tuple[str, str, str]:
    if match.group("func"):
        receiver = IDENTIFIER.findall(match.group("recv") or "")
        owner = receiver[-1] if receiver else ""
        return match.group("func"), "method" if owner else "function", owner
    if match.group("type"):
        return match.group("type"), match.group("tkind") or "type", ""
    return match.group("const"), "const", ""


def _read_c(match: re.Match[str]) -> tuple[str, str, str]:
    if match.group("macro"):
        return match.group("macro"), "macro", ""
    if match.group("func"):
        owner, _, name = match.group("func").rpartition("::")
        return name, "method" if owner else "function", owner
    keyword = _SPACES.sub(" ", match.group("kw"))
    return match.group("name"), KINDS.get(keyword, keyword), ""


def _read_keyword(match: re.Match[str]) -> tuple[str, str, str]:
    keyword = match.group("kw")
    return match.group("name"), KINDS.get(keyword, keyword), ""


def _scan_keywords(text: str, language: str) -> tuple[_Spot, ...]:
    """Go, C and C++, JavaScript and TypeScript, and the languages that declare with a
    keyword (Java, Kotlin, C#, Swift, Scala, Ruby, PHP): top-level declarations only, all
    counted public."""
    pattern, read = PATTERNS.get(language, (KEYWORD_ITEM, _read_keyword))
    spots: list[_Spot] = []
    lines = _Lines(text)
    for match in pattern.finditer("\n" + text):
        name, kind, owner = read(match)
        declared = match.group(0)
        indent = len(declared) - len(declared.lstrip()) - 1  # less the newline in front
        line = lines.at(match.start())
        spots.append(_Spot(name, kind, owner, line, match.start() + indent, True))
    return tuple(spots)


PATTERNS: dict[str, tuple[re.Pattern[str], Callable[[re.Match[str]], tuple[str, str, str]]]] = {
    "go": (GO_ITEM, _read_go),
    "c": (C_ITEM, _read_c),
    "cpp": (C_ITEM, _read_c),
    "javascript": (JS_ITEM, _read_keyword),
    "typescript": (JS_ITEM, _read_keyword),
}
SCANNERS: dict[str, Callable[[str, str], tuple[_Spot, ...]]] = {
    "python": _scan_python,
    "rust": _scan_rust,
}
