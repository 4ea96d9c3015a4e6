"""Where answers agree: similarity between every pair, clusters, the consensus, and diffs.

Similarity is measured on normalised words (case folded, punctuation and spacing dropped) as the
mean of two ratios: one where word order matters (difflib's matching blocks) and one where it
does not (the overlap of the two bags of words), so "Paris is the capital" and "the capital is
Paris" agree while "Lyon is the capital" does not. Identical normalised answers are compared once,
which keeps a thousand identical answers cheap.

Each cluster gathers every answer at least `threshold` similar to its founding answer, founders
taken from the most central answer down (central: most similar, on average, to all the others).
The consensus is the most central member of the largest cluster; its share is that cluster's
size over the answers compared. When the two largest clusters are the same size there is no
majority and no consensus: diffs are then against the `reference`, the most central member of the
cluster listed first, which no reader should take for a consensus.

Only the first COMPARED_CHARS characters of an answer take part: difflib's cost grows with the
product of two answers' lengths, and a 20 MB answer must not keep every other from being shown.

Answers that arrived but hold no words (empty, or only punctuation and spacing) are `empty`: left
out of the comparison, so that blank replies can never agree with one another into a consensus.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from forge.fanout.answers import Answer
from forge.fanout.code import answer_code, code_similarity, readable_lines

DEFAULT_THRESHOLD = 0.6
# Past this many distinct answers the full matrix costs too much; clusters form around founders,
# the commonest answers, and an answer is compared with at most FOUNDER_LIMIT of them.
MATRIX_LIMIT = 150
FOUNDER_LIMIT = 100
WORD_DIFF_MAX_LINES = 3
COMPARED_CHARS = 50_000
WORDS = re.compile(r"\w+(?:[.,']\w+)*")


@dataclass(frozen=True)
class Cluster:
    members: tuple[str, ...]  # answer keys, the most central first
    center: str


@dataclass(frozen=True)
class Diff:
    """One answer against the consensus: `words` marks [-removed-] and {+added+} words inline;
    `lines` is a unified diff."""

    key: str
    similarity: float
    style: str  # "words" or "lines"
    text: str


@dataclass(frozen=True)
class CodeComparison:
    keys: tuple[str, ...]  # answers that contain code
    groups: tuple[tuple[str, ...], ...]  # identical code once normalised, largest first
    matrix: tuple[tuple[float, ...], ...]
    consensus: str
    diffs: dict[str, str]  # key -> unified diff of its code against the consensus code

    def same_as_consensus(self, key: str) -> bool:
        return key in self.groups[0]


@dataclass(frozen=True)
class Comparison:
    keys: tuple[str, ...]  # the answers compared (those that arrived), in run order
    threshold: float
    clusters: tuple[Cluster, ...] = ()  # largest first
    matrix: tuple[tuple[float, ...], ...] | None = None  # None past MATRIX_LIMIT distinct answers
    diffs: dict[str, Diff] = field(default_factory=dict)  # against the reference
    code: CodeComparison | None = None
    empty: tuple[str, ...] = ()  # answers that arrived with no words: left out, never agreeing

    @property
    def reference(self) -> str | None:
        """The answer diffs are against: the consensus when there is one."""
        return self.clusters[0].center if self.clusters else None

    @property
    def tied(self) -> bool:
        """Whether the two largest clusters are the same size: no majority, no consensus."""
        return len(self.clusters) > 1 and len(self.clusters[0].members) == len(
            self.clusters[1].members
        )

    @property
    def consensus(self) -> str | None:
        """The answer most others agree with; one answer alone agrees with nobody."""
        return None if self.tied or len(self.keys) < 2 else self.reference

    @property
    def reason(self) -> str | None:
        """Why there is no consensus (None when there is one)."""
        if not self.clusters:
            return "no_answers"
        if len(self.keys) < 2:
            return "one_answer"
        if not self.tied:
            return None
        return "no_agreement" if len(self.clusters[0].members) == 1 else "no_majority"

    @property
    def share(self) -> float:
        return len(self.clusters[0].members) / len(self.keys) if self.clusters else 0.0

    @property
    def agreed(self) -> bool:
        """Whether any two answers agree; if not, the "consensus" is only the most central."""
        return len(self.keys) == 1 or (bool(self.clusters) and len(self.clusters[0].members) > 1)

    def outside(self) -> list[str]:
        """Answers outside the consensus cluster, in run order."""
        inside = set(self.clusters[0].members) if self.clusters else set()
        return [k for k in self.keys if k not in inside]

    def similarity(self, a: str, b: str) -> float | None:
        if self.matrix is None:
            return None
        return self.matrix[self.keys.index(a)][self.keys.index(b)]


def normalise(text: str) -> tuple[str, ...]:
    return tuple(WORDS.findall(unicodedata.normalize("NFKC", text).casefold()))


def similarity(a: Sequence[str], b: Sequence[str]) -> float:
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return (matcher.ratio() + matcher.quick_ratio()) / 2


def compare(answers: Sequence[Answer], threshold: float = DEFAULT_THRESHOLD) -> Comparison:
    """Compare the answers that arrived (status ok) with words in them; the others take no part."""
    words = {a.key: normalise(a.text[:COMPARED_CHARS]) for a in answers if a.ok}
    empty = tuple(k for k, w in words.items() if not w)
    arrived = [a for a in answers if a.ok and words[a.key]]
    keys = tuple(a.key for a in arrived)
    if not arrived:
        return Comparison(keys, threshold, empty=empty)
    texts = {a.key: a.text[:COMPARED_CHARS] for a in arrived}
    words = {k: words[k] for k in keys}
    distinct = list(dict.fromkeys(words.values()))
    if len(distinct) <= MATRIX_LIMIT:
        matrix = _matrix(keys, words, distinct)
        clusters = _clusters_by_centrality(keys, matrix, threshold)
    else:
        matrix = None
        clusters = _clusters_by_founders(keys, words, threshold)
    consensus = clusters[0].center  # the reference: the consensus unless the top clusters tie
    diffs = {
        key: _diff(consensus, texts, key, similarity(words[consensus], words[key]))
        for key in keys
        if key != consensus
    }
    code = _compare_code(keys, texts, consensus)
    return Comparison(keys, threshold, clusters, matrix, diffs, code, empty)


def _matrix(
    keys: tuple[str, ...], words: dict[str, tuple[str, ...]], distinct: list[tuple[str, ...]]
) -> tuple[tuple[float, ...], ...]:
    index = {text: i for i, text in enumerate(distinct)}
    pair: dict[tuple[int, int], float] = {}
    for i, a in enumerate(distinct):
        for j in range(i + 1, len(distinct)):
            pair[(i, j)] = similarity(a, distinct[j])

    def value(a: int, b: int) -> float:
        return 1.0 if a == b else pair[(min(a, b), max(a, b))]

    at = [index[words[k]] for k in keys]
    return tuple(tuple(value(a, b) for b in at) for a in at)


def _clusters_by_centrality(
    keys: tuple[str, ...], matrix: tuple[tuple[float, ...], ...], threshold: float
) -> tuple[Cluster, ...]:
    n = len(keys)
    centrality = [(sum(row) - 1.0) / (n - 1) if n > 1 else 1.0 for row in matrix]
    order = sorted(range(n), key=lambda i: (-centrality[i], i))
    unassigned = set(range(n))
    groups: list[list[int]] = []
    for founder in order:
        if founder not in unassigned:
            continue
        group = [i for i in range(n) if i in unassigned and matrix[founder][i] >= threshold]
        unassigned -= set(group)
        groups.append(group)
    clusters = [_cluster(keys, matrix, group) for group in groups]
    return _largest_first(clusters, {k: centrality[i] for i, k in enumerate(keys)})


def _cluster(
    keys: tuple[str, ...], matrix: tuple[tuple[float, ...], ...], group: list[int]
) -> Cluster:
    def inner(i: int) -> float:
        return sum(matrix[i][j] for j in group if j != i)

    ranked = sorted(group, key=lambda i: (-inner(i), i))
    members = tuple(keys[i] for i in ranked)
    return Cluster(members, members[0])


def _clusters_by_founders(
    keys: tuple[str, ...], words: dict[str, tuple[str, ...]], threshold: float
) -> tuple[Cluster, ...]:
    """Without a matrix: the commonest answers found clusters; each answer joins the founder
    it is most similar to, if that is similar enough."""
    counts: dict[tuple[str, ...], int] = {}
    for key in keys:
        counts[words[key]] = counts.get(words[key], 0) + 1
    founders: list[tuple[str, ...]] = []
    # One matcher per founder: difflib indexes its second sequence once, then reuses it.
    matchers: list[difflib.SequenceMatcher[str]] = []
    home: dict[tuple[str, ...], tuple[str, ...]] = {}
    for text in sorted(counts, key=lambda t: -counts[t]):
        compared = zip(matchers, founders[: len(matchers)], strict=True)
        scored = [(_similarity_if_close(m, text, threshold), f) for m, f in compared]
        best = max(scored, default=(0.0, text))
        if best[0] >= threshold:
            home[text] = best[1]
            continue
        founders.append(text)
        home[text] = text
        if len(matchers) < FOUNDER_LIMIT:
            matchers.append(difflib.SequenceMatcher(None, (), text, autojunk=False))
    groups: dict[tuple[str, ...], list[str]] = {f: [] for f in founders}
    for key in keys:
        groups[home[words[key]]].append(key)
    clusters = []
    for founder, members in groups.items():
        center = next(k for k in members if words[k] == founder)
        ordered = (center, *(k for k in members if k != center))
        clusters.append(Cluster(ordered, center))
    return _largest_first(clusters, {})


def _similarity_if_close(
    matcher: difflib.SequenceMatcher[str], text: Sequence[str], threshold: float
) -> float:
    """`similarity(text, founder)`, or 0 when a cheap upper bound is already below `threshold`."""
    matcher.set_seq1(text)
    if matcher.real_quick_ratio() < threshold or matcher.quick_ratio() < threshold:
        return 0.0  # similarity never exceeds the bag-of-words overlap
    return (matcher.ratio() + matcher.quick_ratio()) / 2


def _largest_first(clusters: list[Cluster], centrality: dict[str, float]) -> tuple[Cluster, ...]:
    def weight(c: Cluster) -> tuple[int, float]:
        return (-len(c.members), -sum(centrality.get(k, 0.0) for k in c.members))

    return tuple(sorted(clusters, key=weight))


def _diff(reference: str, texts: dict[str, str], key: str, score: float) -> Diff:
    """`key`'s answer against the reference's; a unified diff names both by their keys, since
    the reference is not always a consensus."""
    base, other = texts[reference], texts[key]
    if base == other:
        return Diff(key, 1.0, "words", "")  # identical: nothing to show
    a_lines, b_lines = base.splitlines(), other.splitlines()
    if max(len(a_lines), len(b_lines)) <= WORD_DIFF_MAX_LINES:
        return Diff(key, score, "words", word_diff(base, other))
    lines = difflib.unified_diff(a_lines, b_lines, reference, key, lineterm="", n=1)
    return Diff(key, score, "lines", "\n".join(lines))


def diff_line_kind(line: str) -> str:
    """ "add", "del", "hunk" or "" for one line of a unified diff (how every view colours it)."""
    if line.startswith("+") and not line.startswith("+++"):
        return "add"
    if line.startswith("-") and not line.startswith("---"):
        return "del"
    return "hunk" if line.startswith("@@") else ""


def word_diff(old: str, new: str) -> str:
    """`git diff --word-diff` style: [-removed-] and {+added+} inline."""
    a, b = old.split(), new.split()
    out: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out += a[i1:i2]
            continue
        if i2 > i1:
            out.append("[-" + " ".join(a[i1:i2]) + "-]")
        if j2 > j1:
            out.append("{+" + " ".join(b[j1:j2]) + "+}")
    return " ".join(out)


def _code_matrix(codes: list[tuple[str, ...]]) -> tuple[tuple[float, ...], ...]:
    distinct = list(dict.fromkeys(codes))
    if len(distinct) > MATRIX_LIMIT:
        return ()
    scores = {(a, b): code_similarity(a, b) for a in distinct for b in distinct}
    return tuple(tuple(scores[(a, b)] for b in codes) for a in codes)


def _compare_code(
    keys: tuple[str, ...], texts: dict[str, str], consensus: str
) -> CodeComparison | None:
    code = {k: answer_code(texts[k]) for k in keys}
    with_code = tuple(k for k in keys if code[k])
    if len(with_code) < 2:
        return None
    by_code: dict[tuple[str, ...], list[str]] = {}
    for key in with_code:
        by_code.setdefault(code[key], []).append(key)
    # The consensus answer's code leads when it has some; otherwise the commonest code does.
    groups = sorted(by_code.values(), key=lambda g: (consensus not in g, -len(g)))
    center = groups[0][0] if consensus not in groups[0] else consensus
    matrix = _code_matrix([code[k] for k in with_code])
    base = readable_lines(texts[center])
    diffs = {
        key: "\n".join(
            difflib.unified_diff(base, readable_lines(texts[key]), center, key, lineterm="", n=1)
        )
        for key in with_code
        if code[key] != code[center]
    }
    return CodeComparison(with_code, tuple(tuple(g) for g in groups), matrix, center, diffs)
