"""Text pasted into an issue that is not the author's words: templates, version dumps, tracebacks.

Issue trackers fill a new issue with a template (HTML comments, check-box lists), and reporters
paste what their tools print: `show_versions()` tables, tracebacks, REPL sessions. Counted as
words, they made a one-line fix look long and put "bottleneck" or "distributed" (package names in
a version table) among the cues. `strip_pasted` takes them out before anything is counted and
keeps each kind as its own count, with the files and functions a traceback names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
CHECKBOX = re.compile(r"^\s*(?:[-*+]|\d+\.)\s+\[[ xX]?\]")
# "numpy: 1.16.1", "  * Matplotlib version: 3.3.1", "pydap: None", "numpy==1.19", "pytest 6.2.1".
# (VERSION_VALUE and ENV_KEYS are compiled when a text of several lines first needs them,
# through `re`'s cache: a one-line task's start-up never does.)
VERSION_VALUE = (
    r"^\s*(?:[-*+]\s+)?\**[A-Za-z][\w.+/() -]{0,60}?\**\s*(?::|==|>=|<=)\s*\**"
    r"(?:v?\d+(?:\.\d+)+[\w.+-]*|None|True|False|v?\d+\b)(?:\s|\*|,|\(|\||\[|$)"
    r"|^\s*(?:[-*+]\s+)?[A-Za-z][\w.+-]{0,30}\s+v?\d+\.\d+[\w.+-]*\s*(?:\(.*\))?\s*$"
)
# A key of an environment report whatever its value: paths, machine names, locales.
ENV_KEY_NAMES = (
    "python|python-bits|executable|machine|platform|os|os-release|processor|byteorder|lc_all|"
    "lang|locale|commit|macros|lib_dirs|cblas_libs|operating system|backend|installation|"
    "build|compiler|sys.version|sys.platform|filepath|prefix|user_api|internal_api|version|"
    "num_threads"
)
ENV_KEY_SET = frozenset(ENV_KEY_NAMES.split("|"))
ENV_KEYS = (
    r"(?i)^\s*(?:[-*+]\s+)?\**(?:" + re.escape(ENV_KEY_NAMES).replace(r"\|", "|") + r")\**\s*:"
)
# What stands around a key before its colon (white space, a list bullet, bold stars): with it
# stripped, a line's text before its first colon is the key itself when ENV_KEYS can match.
ENV_KEY_FRAME = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f*-+"
PLATFORMS = ("Linux", "Darwin", "Windows", "macOS", "CYGWIN", "MINGW")
PLATFORM = re.compile(rf"^\s*(?:{'|'.join(PLATFORMS)})[-\w.]*-[\w.-]+\s*$")
# "System:", "Python deps:", "INSTALLED VERSIONS", "-----", "[GCC 7.3.0]": the frame of a table.
DUMP_FRAME = re.compile(
    r"^\s*(?:[A-Za-z][\w ]{0,30}:\s*|INSTALLED VERSIONS\s*|-{4,}\s*|={4,}\s*|\[[A-Z][^\]]*\]\s*|)$"
)
TRACEBACK_START = re.compile(r"^\s*Traceback(?: \(most recent call last\))?:")
# IPython's: "ValueError    Traceback (most recent call last)", frames not indented.
IPYTHON_START = re.compile(r"\S.*Traceback \(most recent call last\)")
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Warning|Exit|Interrupt|Failure)\b")
MAX_TRACEBACK_LINES = 400
TRACE_FRAME = re.compile(r'^\s*File "([^"]+)", line \d+(?:, in (\w+))?')
CHAINED = ("During handling of the above exception", "The above exception was the direct cause")
REPL_PROMPT = re.compile(r"^\s*(?:>>>|\.\.\.)(?: |$)|^\s*In \[\d+\]: |^\s*Out\[\d+\]: ")
# What every VERSION_VALUE line holds: at its first ":", "=", "<" or ">" (nothing before the
# separator can be one) a separator with a version, None, True or False after it; or a dotted
# number. Quick searches for these rule out most lines of prose before the full pattern is tried.
FIRST_SEPARATOR = re.compile(r"[:=<>]").search
VERSION_AFTER_SEPARATOR = re.compile(r"(?::|==|>=|<=)\s*\**(?:v?\d|None|True|False)").match
DOTTED_NUMBER = re.compile(r"\d\.\d").search
MIN_DUMP_LINES = 2
# What a check-box list or an interpreter session cannot do without.
PROMPT_SIGNS = ("- [", "* [", "+ [", ". [", ">>>", "...", "In [", "Out[")
HAS_DIGIT = re.compile(r"\d").search


@dataclass(frozen=True)
class Pasted:
    """The text without pasted material, and what was taken out, by kind."""

    text: str
    template_lines: int = 0
    checkboxes: int = 0
    version_lines: int = 0
    traceback_lines: int = 0
    tracebacks: int = 0
    repl_lines: int = 0
    removed: str = ""
    trace_files: tuple[str, ...] = ()
    trace_functions: tuple[str, ...] = ()


def strip_pasted(text: str) -> Pasted:
    """`text` without templates, version dumps, tracebacks and REPL sessions, with their counts."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    template_lines = 0
    if "<!--" in text:
        for match in HTML_COMMENT.finditer(text):
            template_lines += match.group(0).count("\n") + 1
        text = HTML_COMMENT.sub("", text)
    if "\n" not in text:
        return Pasted(text, template_lines=template_lines)
    lines = text.split("\n")
    keep = [True] * len(lines)
    counts = {"checkboxes": 0, "version": 0, "trace": 0, "tracebacks": 0, "repl": 0}
    files: dict[str, None] = {}
    functions: dict[str, None] = {}
    # Each kind is looked for line by line only when the whole text shows a sign of it.
    if "Traceback" in text:
        _mark_tracebacks(lines, keep, counts, files, functions)
    if HAS_DIGIT(text) or "None" in text:
        _mark_dumps(lines, keep, counts)
    if any(sign in text for sign in PROMPT_SIGNS):
        _mark_prompts(lines, keep, counts)
    if all(keep):
        return Pasted(text, template_lines=template_lines)
    return Pasted(
        "\n".join(line for line, kept in zip(lines, keep, strict=True) if kept),
        template_lines=template_lines,
        checkboxes=counts["checkboxes"],
        version_lines=counts["version"],
        traceback_lines=counts["trace"],
        tracebacks=counts["tracebacks"],
        repl_lines=counts["repl"],
        removed="\n".join(line for line, kept in zip(lines, keep, strict=True) if not kept),
        trace_files=tuple(files),
        trace_functions=tuple(functions),
    )


def _mark_prompts(lines: list[str], keep: list[bool], counts: dict[str, int]) -> None:
    """Check-box lines of a template, and the prompts of an interpreter session."""
    for index, line in enumerate(lines):
        if not keep[index]:
            continue
        if "[" in line and CHECKBOX.match(line):
            keep[index] = False
            counts["checkboxes"] += 1
        elif (">" in line or "..." in line or "[" in line) and REPL_PROMPT.match(line):
            keep[index] = False
            counts["repl"] += 1


def _mark_tracebacks(
    lines: list[str],
    keep: list[bool],
    counts: dict[str, int],
    files: dict[str, None],
    functions: dict[str, None],
) -> None:
    """From "Traceback" through its frames to the exception line that ends it."""
    index = 0
    total = len(lines)
    while index < total:
        line = lines[index]
        if "Traceback" not in line:
            index += 1
            continue
        ipython = not TRACEBACK_START.match(line)
        if ipython and not IPYTHON_START.match(line):
            index += 1
            continue
        counts["tracebacks"] += 1
        start = index
        index += 1
        while index < min(total, start + MAX_TRACEBACK_LINES):
            line = lines[index]
            frame = TRACE_FRAME.match(line) if "File" in line else None
            if frame is not None:
                files.setdefault(frame.group(1), None)
                if frame.group(2) and frame.group(2) != "<module>":
                    functions.setdefault(frame.group(2), None)
            elif line.startswith(CHAINED) or TRACEBACK_START.match(line):
                pass
            elif ipython:
                if EXCEPTION_LINE.match(line):
                    index += 1
                    break
            elif line.strip() and not line[:1].isspace():
                index += 1  # the exception line ends the traceback
                break
            index += 1
        for marked in range(start, index):
            keep[marked] = False
        counts["trace"] += index - start


def _mark_dumps(lines: list[str], keep: list[bool], counts: dict[str, int]) -> None:
    """Runs of version lines (with their headers and blanks) holding at least two of them."""
    index = 0
    total = len(lines)
    while index < total:
        if not keep[index] or not _version_line(lines[index]):
            index += 1
            continue
        end = index
        strong = 0
        scan = index
        while scan < total and keep[scan]:
            line = lines[scan]
            if _version_line(line):
                strong += 1
                end = scan + 1
            elif not DUMP_FRAME.match(line) and not line.strip().startswith("```"):
                break
            scan += 1
        start = index
        while start > 0 and keep[start - 1] and DUMP_FRAME.match(lines[start - 1]):
            if not lines[start - 1].strip():
                break
            start -= 1
        if strong >= MIN_DUMP_LINES:
            for marked in range(start, end):
                if not lines[marked].strip().startswith("```"):
                    keep[marked] = False
                    counts["version"] += 1
        index = max(end, index + 1)


def _version_line(line: str) -> bool:
    if len(line) > 200 or (":" not in line and "=" not in line and not HAS_DIGIT(line)):
        return False  # every kind below has one of these
    if not line.strip():
        return False
    if ":" in line and _env_key(line):
        return True
    if line.lstrip().startswith(PLATFORMS) and PLATFORM.match(line):
        return True
    # The patterns below backtrack through a line: first what they cannot do without.
    separator = FIRST_SEPARATOR(line)
    after = separator is not None and VERSION_AFTER_SEPARATOR(line, separator.start()) is not None
    if not after and DOTTED_NUMBER(line) is None:
        return False
    return re.match(VERSION_VALUE, line) is not None


def _env_key(line: str) -> bool:
    """ENV_KEYS, tried only when the text before the first colon is a key (case-blind)."""
    if line.isascii():  # (a few other letters fold to ASCII ones when case is ignored)
        key = line.partition(":")[0].strip(ENV_KEY_FRAME).lower()
        if key not in ENV_KEY_SET:
            return False
    return re.match(ENV_KEYS, line) is not None
