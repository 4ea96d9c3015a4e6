"""What a task's text names: files, code symbols and pasted tool output.

Pasted output (a traceback, a compiler error) is evidence of a bug, not prose: it is recognised,
described ("rustc error E0308"), and kept out of the length and word counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from forge.routing.pasted import Pasted, strip_pasted
from forge.routing.vocabulary import words

EXTENSIONS = (
    "rs|py|pyi|ts|tsx|js|jsx|mjs|cjs|go|java|kt|kts|c|h|cc|cpp|cxx|hpp|hh|rb|php|cs|swift|"
    "scala|m|mm|lua|pl|ex|exs|erl|hs|ml|clj|dart|r|jl|zig|nim|vue|svelte|sql|sh|bash|zsh|ps1|"
    "toml|yaml|yml|json|jsonl|xml|ini|cfg|conf|env|md|rst|txt|adoc|html|htm|css|scss|sass|less|"
    "proto|graphql|gql|tf|hcl|gradle|lock|csv|ipynb|dockerfile|mk|cmake|bzl|nix"
)
FILE_PATH = re.compile(
    rf"(?:[\w.-]+/)*[\w-][\w.-]*\.(?:{EXTENSIONS})"
    r"|(?:[\w.-]+/)*(?:Makefile|Dockerfile|Justfile|Procfile|Rakefile|Gemfile|Jenkinsfile|LICENSE)"
    r"|(?:[\w.-]+/)*\.(?:gitignore|nvmrc|editorconfig|dockerignore|npmrc|prettierrc|eslintrc|"
    r"env(?:\.\w+)?|gitattributes|python-version|tool-versions)",
    re.IGNORECASE,
)
BARE_FILES = (
    "Makefile",
    "Dockerfile",
    "Justfile",
    "Procfile",
    "Rakefile",
    "Gemfile",
    "Jenkinsfile",
    "LICENSE",
)
BARE_LOWER = tuple(name.lower() for name in BARE_FILES)
EXTENSION_SET = frozenset(EXTENSIONS.split("|"))
PATH_TOKEN = re.compile(r"[^\s()\[\]{},;'\"`<>|=]+")
LINE_SUFFIX = re.compile(r"(?::\d+)+$")
BACKTICKED = re.compile(r"`([^`\n]{1,80})`")
# (Possessive: a name's characters given back could never be followed by ".", "::" or "(".)
CALLED = re.compile(r"(?<![\w.])([A-Za-z_]\w*+(?:(?:\.|::)[A-Za-z_]\w*+)*+)\(")
CAMEL = re.compile(r"\b([A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+|[a-z]+[0-9]*[A-Z][A-Za-z0-9]*)\b")
SNAKE = re.compile(r"\b([a-z][a-z0-9]*(?:_[a-z0-9]+)+|[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b")
SYMBOL_TRIM = ".,;:!?\"'()[]{}<>*`"
IDENTIFIER = re.compile(r"^[A-Za-z_][\w.:]*(?:\(\))?$")
# Product and format names written in CamelCase that are not code symbols.
NOT_SYMBOLS = frozenset(
    words(
        "JavaScript TypeScript GitHub GitLab PostgreSQL MySQL SQLite MongoDB OpenAI FastAPI "
        "GraphQL WebSocket WebSockets OAuth iOS macOS YouTube LinkedIn PyPI DynamoDB CloudFront "
        "DevOps NumPy PyTorch TensorFlow OpenRouter DeepSeek VSCode IntelliJ PowerShell OpenAPI "
        "JetBrains CircleCI GitOps RabbitMQ ElasticSearch Elasticsearch OpenTelemetry ClickHouse "
        "CockroachDB MariaDB NoSQL MacOS WebAssembly WebGL WebRTC JSONSchema LangChain LlamaIndex "
        "HuggingFace ChatGPT OpenID PagerDuty BigQuery CloudWatch AppKit UIKit SwiftUI TypeORM "
        "NestJS NextJS NodeJS VueJS ReactJS gRPC eBPF mTLS OAuth2 README CHANGELOG TODO FIXME"
    )
)
# Calls that are English in parentheses, not code: "(e.g." never matches, "see(" rarely does.
NOT_CALLS = frozenset(words("e.g i.e etc see note and or"))

# Pasted tool output: what each kind of line proves.
# (any of these substrings, the pattern, what it proves): the cheap test keeps the regular
# expressions off texts that cannot match them.
ERROR_KINDS: tuple[tuple[tuple[str, ...], re.Pattern[str], str], ...] = (
    (("error[",), re.compile(r"error\[(E\d{4})\]"), "rustc error {0}"),
    (("Traceback",), re.compile(r"Traceback \(most recent call last\)"), "Python traceback"),
    (("Error:", "Exception:"), re.compile(r"^\s*(\w+(?:Error|Exception)):", re.M), "{0}"),
    (("TS",), re.compile(r"\berror (TS\d{4,5})\b|\b(TS\d{4,5}):"), "TypeScript error {0}"),
    (("panicked",), re.compile(r"thread '[^']*' panicked at|panicked at '"), "Rust panic"),
    (("panic: ", "goroutine "), re.compile(r"^panic: |^goroutine \d+ \[", re.M), "Go panic"),
    (("FAIL",), re.compile(r"^(?:FAILED|FAIL:?) \S", re.M), "test failures (FAILED)"),
    (
        ("failed",),
        re.compile(r"=+ .*\b\d+ failed\b|^\d+ failed, \d+ passed\b", re.M),
        "test failures (FAILED)",
    ),
    (
        ("Exception in thread", ".java:", ".kt:", ".scala:"),
        re.compile(r"Exception in thread \"|^\s+at [\w.$]+\([\w.]+:\d+\)", re.M),
        "Java stack trace",
    ),
    (
        (".js:", ".ts:", ".mjs:", ".jsx:", ".tsx:", "<anonymous>"),
        re.compile(r"^\s+at .+\(.+:\d+:\d+\)$", re.M),
        "JavaScript stack trace",
    ),
    (
        ("Segmentation fault", "SIGSEGV"),
        re.compile(r"Segmentation fault|SIGSEGV"),
        "segmentation fault",
    ),
    (("undefined reference",), re.compile(r"undefined reference to `"), "linker error"),
    (
        (": error: ", ": fatal error: "),
        re.compile(r"^[\w./-]+:\d+:\d+: (?:fatal )?error: ", re.M),
        "compiler error",
    ),
    (("npm ERR!",), re.compile(r"^npm ERR!", re.M), "npm error"),
    (
        ("unbound variable", "command not found", "Syntax error: "),
        re.compile(
            r"line \d+: (?:[^:\n]+: )?(?:unbound variable|command not found)|Syntax error: "
        ),
        "shell error",
    ),
    (("error: ",), re.compile(r"^error: ", re.M), "tool error"),
)
ERROR_HINTS = tuple(dict.fromkeys(h for hints, _, _ in ERROR_KINDS for h in hints))
# A line of pasted output or code rather than the author's words. (Compiled when a text of
# several lines first needs it, through `re`'s cache: a one-line task's start-up never does.)
OUTPUT_LINE = (
    r"^\s*(?:error(?:\[E\d+\])?:|warning:|-->|\d*\s*\||= (?:note|help)|note:|help:|"
    r"Traceback|File \"|at [\w.$<>]+[ (]|\w+(?:Error|Exception):|thread '|panic:|goroutine |"
    r"FAILED|FAIL:|PASSED|E\s{2,}|>\s|\$ |={3,}|-{3,}|npm ERR!|\^+|~+|[\w./-]+:\d+(?::\d+)?\b|"
    r"\[signal |[\w.-]+/[\w./-]*\.\(?\*?\w+\)?\.?\w*\(|@@ |[+-](?![-+ ]*$)\S|"
    r"(?:SELECT|FROM|JOIN|LEFT JOIN|WHERE|ORDER BY|GROUP BY|INSERT INTO|UPDATE \w+ SET|"
    r"DELETE FROM|ALTER TABLE|CREATE TABLE|LIMIT)\b|"
    r"(?:func|def|fn|pub|let|const|var|import|package|class|for|if|while|return|done|fi)\b.*"
    r"(?:[{}:;)]|do|then)\s*$|#!|[}{)\]]+;?\s*$|\w+\s*(?::=|\+=|=)\s*\S.*[;)]?\s*$|"
    r"\s*[\d.]+[KMG]?B\s+[\d.]+%|platform \w+ --|rootdir:|collected \d+ items|_{3,}|"
    r"\d+\s{2,}\S)"
    r"|^\s{4,}\S|^\t|[;{]\s*$|\[\s*\d+%\]\s*$|^\s{2,}\S.*[$=;{}<>|]"
)
FENCE = re.compile(r"^\s*```")
# A unified diff: after its header every line is context (" "), removed ("-") or added ("+").
DIFF_STARTS = ("@@ ", "--- a/", "+++ b/", "diff --git ")
DIFF_LINE = re.compile(r"^(?:[ +-]|\\ No newline|$)")
# After a pattern's first character, what `\b` before it says: the one before is no word
# character. Written there, not as a leading `\b`, it lets the regex engine skip to the places
# where the first character occurs instead of trying the whole pattern at every position (five
# to ten times faster on an issue).
WORD_START = r"(?<!\w.)"
# A SQL statement written inside a sentence ("... table? ALTER TABLE orders ADD ...").
INLINE_SQL = re.compile(
    rf"(?:A{WORD_START}LTER TABLE|C{WORD_START}REATE (?:UNIQUE )?(?:TABLE|INDEX)|"
    rf"I{WORD_START}NSERT INTO|D{WORD_START}ELETE FROM|U{WORD_START}PDATE \w+ SET|"
    rf"S{WORD_START}ELECT\b[^.?!\n]*\bFROM)\b[^\n;]*;?"
)
# A long issue says what it asks in its first paragraphs: its prose is read word by word (cues,
# symbols, counts) up to here; its length still counts in full.
READ_CHARS = 1200
# Roughly what a model's tokenizer makes of English and code.
CHARS_PER_TOKEN = 4


# SQL built by formatting strings: an injection waiting to happen, whatever the task says.
UNSAFE_SQL = re.compile(
    r"""(?:execute|query|raw)\(\s*f["']|(?:execute|query|raw)\(\s*["'][^"']*["']\s*(?:%|\+|\.format)"""
    r"""|f["'](?:SELECT|INSERT|UPDATE|DELETE)\b[^"']*\{""",
    re.IGNORECASE,
)
SQL_CALLS = ("execute(", "query(", "raw(")
F_STRINGS = ('f"', "f'", 'F"', "F'")
SQL_HINTS = ("execute(", "query(", "raw(", 'f"', "f'", "EXECUTE(", "QUERY(", "RAW(")
NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "a dozen": 12, "dozens of": 24, "hundreds of": 200, "thousands of": 2000,
}  # fmt: skip
_UNITS = (
    r"(files|components|endpoints|routes|references|modules|services|tenants|rows|row|lines|"
    r"pages|handlers|tables|crates|packages|callers|call sites|places|tests|entries|records|"
    r"users|merchants|orders|customers|accounts|req|requests|rps|qps|jobs|microservices|repos|"
    r"repositories|screens|models|migrations|classes|functions)\b"
)
# A count is found where it starts (a digit, or a number word), then the unit after it is
# matched in place: scanning the whole text with one pattern would try every position.
DIGITS = re.compile(r"\d(?<![\w.]\d)\d*(?:[.,]\d+)?")  # not after a word or a dot
UNIT_AFTER = re.compile(r"[ \t]*([km])?\+?[ \t]+(?:[a-z-]+[ \t]+)?" + _UNITS)


# The units alone, as substrings: most texts have none, and this test is much cheaper.
QUANTITY_UNITS = words(
    "file component endpoint route reference module service tenant row line page handler table "
    "crate package caller call site place test entries record user merchant order customer "
    "account req rps qps job repo screen model migration class function"
)


@dataclass(frozen=True)
class Quantity:
    """A count the task states: "~25 class components", "12M rows", "two callers"."""

    count: float
    unit: str
    text: str


@dataclass(frozen=True)
class TextSignals:
    prose: str
    files: tuple[str, ...]
    symbols: tuple[str, ...]
    errors: tuple[str, ...]
    quantities: tuple[Quantity, ...] = ()
    unsafe_sql: bool = False
    has_code: bool = False
    # What was pasted around the author's words (templates, version dumps, tracebacks), by kind.
    pasted: Pasted | None = None
    code_lines: int = 0


def read_signals(text: str) -> TextSignals:
    """The signals of a task; templates, version dumps and tracebacks never reach the counts."""
    stripped = strip_pasted(text)
    clean = stripped.text
    prose, output = _split_output(clean)
    files = _files(clean)
    removed = stripped.removed
    return TextSignals(
        prose=prose,
        files=files,
        symbols=_symbols(prose[:READ_CHARS], set(files)),
        errors=_errors(f"{removed}\n{output}\n{prose}" if removed else f"{output}\n{prose}"),
        quantities=_quantities(prose[:READ_CHARS]),
        unsafe_sql=_unsafe_sql(text),
        has_code=bool(output.strip() or removed.strip()),
        pasted=stripped,
        code_lines=_code_lines(output),
    )


def _code_lines(output: str) -> int:
    """Lines of pasted code or output, fences and blank lines not counted."""
    if not output.strip():
        return 0
    return sum(1 for line in output.splitlines() if line.strip() and not FENCE.match(line))


def _unsafe_sql(text: str) -> bool:
    # Every form of UNSAFE_SQL is a call or an f-string: without one, no regex scan.
    if not any(word in text for word in SQL_HINTS):
        return False
    # A case-blind scan tries every position, slowly: the pattern is tried only where one of its
    # forms can start, at a call by name ("cursor.Execute(", found in the lowered text) or at an
    # f-string's opening quote.
    lowered = text.lower()
    if len(lowered) != len(text):  # lowering lengthened a letter: positions would not align
        return UNSAFE_SQL.search(text) is not None
    starts = [(lowered, call) for call in SQL_CALLS] + [(text, quote) for quote in F_STRINGS]
    for where, opening in starts:
        at = where.find(opening)
        while at != -1:
            if UNSAFE_SQL.match(text, at) is not None:
                return True
            at = where.find(opening, at + 1)
    return False


def _quantities(text: str) -> tuple[Quantity, ...]:
    lowered = text.lower()
    if not any(unit in lowered for unit in QUANTITY_UNITS):
        return ()
    found: list[Quantity] = []
    starts = [(m.start(), m.end(), _number(m.group(0))) for m in DIGITS.finditer(lowered)]
    starts += [(at, end, float(NUMBER_WORDS[word])) for at, end, word in _number_words(lowered)]
    for begin, end, count in starts:
        unit = UNIT_AFTER.match(lowered, end)
        if unit is None:
            continue
        scale = {"k": 1e3, "m": 1e6}.get(unit.group(1) or "", 1.0)
        text_span = text[begin : unit.end()]
        found.append(Quantity(count * scale, unit.group(2), text_span))
    return tuple(found)


def _number_words(lowered: str) -> list[tuple[int, int, str]]:
    r"""The number words standing as words of their own, in order, as (start, end, word).

    Found with `str.find`: a pattern `\b(one|two|...)\b` tried its alternatives at every position.
    No two of them can stand at one position or overlap, so these are the pattern's matches.
    """
    found = []
    for word in NUMBER_WORDS:
        at = lowered.find(word)
        while at != -1:
            end = at + len(word)
            if not _word_character_at(lowered, at - 1) and not _word_character_at(lowered, end):
                found.append((at, end, word))
            at = lowered.find(word, at + 1)
    return sorted(found)


def _word_character_at(text: str, index: int) -> bool:
    r"""What `\w` says of the character at `index` (nothing there is not one)."""
    return 0 <= index < len(text) and (text[index].isalnum() or text[index] == "_")


def _number(raw: str) -> float:
    # "1,400" is a thousands separator; "1.5" a decimal.
    return float(raw.replace(",", "")) if "," in raw else float(raw)


def token_count(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def _split_output(text: str) -> tuple[str, str]:
    """(the author's words, pasted output and code)."""
    inline = [m.group(0) for m in INLINE_SQL.finditer(text)]
    if inline:
        text = INLINE_SQL.sub(" ", text)
    if "\n" not in text:
        return text, "\n".join(inline)
    prose: list[str] = []
    pasted: list[str] = []
    fenced = in_diff = False
    output_line = re.compile(OUTPUT_LINE).match
    for line in text.splitlines():
        if "```" in line and FENCE.match(line):
            fenced = not fenced
            pasted.append(line)
            continue
        in_diff = line.startswith(DIFF_STARTS) or (in_diff and DIFF_LINE.match(line) is not None)
        if fenced or in_diff or output_line(line):
            pasted.append(line)
        else:
            prose.append(line)
    return "\n".join(prose), "\n".join(pasted + inline)


def _files(text: str) -> tuple[str, ...]:
    """Paths in the text, found token by token (a scan of the whole text backtracks)."""
    found: dict[str, None] = {}
    # Whitespace splits first (in C); only words that can hold a path are tokenised further.
    # (Every bare file name but LICENSE ends in "file"; most texts hold a dot only.)
    if "file" in text or "LICENSE" in text:
        words = [w for w in text.split() if "." in w or "file" in w or "LICENSE" in w]
    else:
        words = [w for w in text.split() if "." in w]
    for token in PATH_TOKEN.findall(" ".join(words)):
        if "." not in token and not token.endswith(BARE_FILES):
            continue
        if "://" in token or token[0] == "@":
            continue
        path = token.rstrip(".,:;!?")
        if ":" in path:
            path = LINE_SUFFIX.sub("", path)
        if (
            could_be_path(path)
            and FILE_PATH.fullmatch(path)
            and not path.replace(".", "").isdigit()
        ):
            found.setdefault(path, None)
    return tuple(found)


def could_be_path(name: str) -> bool:
    """Whether FILE_PATH can match all of `name`, said without it: a known extension after the
    last dot, a bare file name at the end, or a dotfile. Most names fail here ("it", "e.g",
    "numpy.array"), and the case-blind pattern is slow to say so."""
    if not name.isascii():
        return True  # (a few other letters fold to ASCII ones when case is ignored)
    lowered = name.lower()
    return (
        lowered.rpartition(".")[2] in EXTENSION_SET
        or lowered.endswith(BARE_LOWER)
        or lowered.startswith(".")
        or "/." in lowered
    )


def _symbols(prose: str, files: set[str]) -> tuple[str, ...]:
    found: dict[str, None] = {}
    if "`" not in prose and "(" not in prose and "_" not in prose and prose.islower():
        return ()
    if "`" in prose:
        for match in BACKTICKED.finditer(prose):
            name = match.group(1).strip()
            if name not in files and IDENTIFIER.match(name):
                found.setdefault(name.removesuffix("()"), None)
    tokens = prose.split()
    if "(" in prose:
        # A call holds no white space: it is looked for only in the words that hold a "(".
        for token in [t for t in tokens if "(" in t]:
            for match in CALLED.finditer(token):
                name = match.group(1)
                if name.lower() not in NOT_CALLS and not _inside_file(name, files):
                    found.setdefault(name, None)
    for token in tokens:
        if "_" not in token and (token.islower() or token.istitle() or token.isupper()):
            continue  # plain words, most of the text: no closer look needed
        name = token.strip(SYMBOL_TRIM)
        # CamelCase and snake_case words; checked by hand first, the regex only confirms.
        mixed = not name.islower() and not name.isupper() and not name.istitle()
        if (mixed or "_" in name) and name not in NOT_SYMBOLS:
            shaped = CAMEL.fullmatch(name) or SNAKE.fullmatch(name)
            if shaped and not _inside_file(name, files):
                found.setdefault(name, None)
    return tuple(found)


def _inside_file(name: str, files: set[str]) -> bool:
    return any(name in f for f in files) if files else False


def _errors(output: str) -> tuple[str, ...]:
    present = {hint for hint in ERROR_HINTS if hint in output}  # each hint looked for once
    if not present:
        return ()
    found: dict[str, None] = {}
    for hints, pattern, label in ERROR_KINDS:
        if present.isdisjoint(hints):
            continue
        for match in pattern.finditer(output):
            detail = next((g for g in match.groups() if g), "")
            found.setdefault(label.format(detail), None)
            if "{0}" not in label:
                break
    if any(e.endswith(("Error", "Exception")) for e in found):
        found.pop("tool error", None)
    return tuple(found)
