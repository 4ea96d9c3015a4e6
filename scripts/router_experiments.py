"""Experiments towards a better learned router score (issue 19): every attempt, one run.

Each attempt is scored exactly as bench/route.py scores the shipped model: leave-one-repository-
out over the 413 training issues, AUROC of quick fixes against hour-plus work on the pooled
held-out scores, Spearman with the four buckets; and, beside them, the AUROC over pairs of issues
of the same project only. Settings (the L2 strength, a vocabulary's penalty, which features are
kept) are chosen inside each training fold by an inner leave-one-repository-out, never on the
held-out project. Choosing between the attempts below is still a choice made on the same 413
issues: the best of many is optimistic, which docs/router-experiments.md says.

With `--centred`, each fold's held-out scores are moved by the mean score of the fold's own
training rows, which takes out the intercept's effect on the pooled AUROC (see CENTRED); with
`--within`, each fold picks its settings by the inner AUROC within projects (see WITHIN).
The results are in docs/router-experiments.md. All attempts take about ten minutes on 2 cores.

    pip install -e '.[train]'
    python scripts/router_experiments.py [--only NAME ...] [--centred] [--within]
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import train_router as base  # noqa: E402

from forge.routing.signals import read_signals  # noqa: E402

L2_GRID = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)

# -- features of the expected fix, from the text without pasted material --------------------

WORD = re.compile(r"[a-z][a-z0-9']+")
IDENT = re.compile(r"\b[A-Za-z_]\w*(?:\.\w+)+\b|\b\w+_\w+\b|\b[a-z]+[A-Z]\w*\b|\b\w+\(\)")
DOTTED_MODULE = re.compile(r"\b[a-z_]+(?:\.[a-z_]+){1,}\b")
LINE_REF = re.compile(r"\bline \d+\b|#L\d+|:\d+\b")
CUES: dict[str, tuple[str, ...]] = {
    "cue_patch": (
        "diff --git", "--- a/", "+++ b/", "@@ ", "patch", "pull request", "pr #", "i propose",
        "fix seems", "a fix", "the fix", "should be changed", "change line", "replace",
        "one-line", "simply", "should be:", "instead of",
    ),
    "cue_expected": ("expected", "actual", "instead", "but got", "should return", "returns"),
    "cue_breadth": (
        " all ", "every", "refactor", "design", " api", "consistent", "inconsistent",
        "deprecat", "backward", "compatib", "general", "overhaul", "rewrite",
    ),
    "cue_feature": (
        "feature", "enhancement", "support", "would be nice", "it would be", "add a",
        "new option", "keyword", "parameter", "allow", "implement", "propos",
    ),
    "cue_docs": ("documentation", "docstring", "typo", "docs", "spelling", "message"),
    "cue_regress": ("regression", "used to", "since version", "worked in", "broke", "bisect"),
    "cue_discussion": ("i think", "i'm not sure", "not sure", "maybe", "perhaps", "discuss",
                       "thoughts", "opinion", "should we", "wonder"),
    "cue_wrong": ("wrong", "incorrect", "crash", "raises", "exception", "error", "fails"),
}  # fmt: skip


def fix_features(text: str) -> dict[str, float]:
    signals = read_signals(text)
    pasted = signals.pasted
    clean = pasted.text if pasted is not None else text
    low = f" {clean.lower()} "
    prose = signals.prose
    first = clean.strip().split("\n", 1)[0]
    idents = set(IDENT.findall(clean))
    modules = set(DOTTED_MODULE.findall(clean))
    out: dict[str, float] = {
        f"n_{name}": math.log2(1 + sum(low.count(c) for c in cues)) for name, cues in CUES.items()
    }
    out.update({name: float(any(c in low for c in cues)) for name, cues in CUES.items()})
    out.update(
        {
            "title_words": math.log2(1 + len(first.split())),
            "questions": math.log2(1 + prose.count("?")),
            "idents": math.log2(1 + len(idents)),
            "modules": math.log2(1 + len(modules)),
            "line_refs": math.log2(1 + len(LINE_REF.findall(clean))),
            "fences": math.log2(1 + clean.count("```") // 2),
            "has_diff": float(any(s in clean for s in ("diff --git", "\n+++ ", "\n@@ "))),
            "headings": math.log2(1 + clean.count("\n#")),
            "sentences": math.log2(1 + len(re.findall(r"[.!?](?:\s|$)", prose))),
            "traceback": float(bool(pasted and pasted.tracebacks)),
            "trace_own": float(_ends_in_own_code(pasted.trace_files if pasted else ())),
        }
    )
    return out


def _ends_in_own_code(files: Sequence[str]) -> bool:
    """The innermost frame is not the standard library (a library's own code, or a script's)."""
    if not files:
        return False
    last = files[-1].replace("\\", "/")
    return not (re.search(r"/lib/python3?\.?\d*/", last) and "site-packages" not in last)


def rule_parts(text: str) -> dict[str, float]:
    """The hand rules' parts as separate features: type, harder/easier words, breadth."""
    from forge.routing.reading import Words, read_cues
    from forge.routing.signals import READ_CHARS
    from forge.routing.task_type import classify_type

    signals = read_signals(text)
    words = Words.read(signals.prose[:READ_CHARS])
    reading = read_cues(words.lowered, words.original)
    task_type, _ = classify_type(words, reading, signals, signals.files)
    out = {f"type_{task_type}": 1.0}
    out["harder"] = sum(d for d, _ in reading.harder)
    out["easier"] = sum(d for d, _ in reading.easier)
    out["breadth"] = reading.breadth_score
    return out


def words_of(text: str) -> list[str]:
    signals = read_signals(text)
    return WORD.findall(signals.prose.lower())


# -- fitting ----------------------------------------------------------------------------------


class Design:
    """A dense matrix of named features for every row, built once."""

    def __init__(self, names: list[str], x: np.ndarray) -> None:
        self.names, self.x = names, x

    @classmethod
    def of(cls, dicts: Sequence[dict[str, float]]) -> Design:
        names = sorted({n for d in dicts for n in d})
        return cls(names, np.array([[d.get(n, 0.0) for n in names] for d in dicts], dtype=float))

    def __or__(self, other: Design) -> Design:
        return Design(self.names + other.names, np.hstack([self.x, other.x]))


def fit_logistic(
    x: np.ndarray, y: np.ndarray, l2: float | np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(beta with intercept first, mean, scale): L2 logistic on standardised columns."""
    mean, scale = x.mean(0), x.std(0)
    scale[scale == 0] = 1.0
    design = np.hstack([np.ones((len(x), 1)), (x - mean) / scale])
    w = np.ones(len(x)) if weights is None else weights
    penalty = np.concatenate([[0.0], np.broadcast_to(l2, (x.shape[1],))])
    beta = np.zeros(design.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-(design @ beta)))
        gradient = design.T @ (w * (p - y)) + penalty * beta
        hessian = (design.T * (w * p * (1 - p))) @ design + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta, mean, scale


def apply(fitted: tuple[np.ndarray, np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
    beta, mean, scale = fitted
    return beta[0] + ((x - mean) / scale) @ beta[1:]


# A learner: (train indices, test indices, hyper-parameter) -> test scores.
Learner = Callable[[np.ndarray, np.ndarray, float], np.ndarray]


class Data:
    def __init__(self) -> None:
        self.rows = base.load_rows(base.DATA)
        self.repos = np.array([r.repo for r in self.rows])
        self.bucket = np.array([r.bucket for r in self.rows])
        self.hard = (self.bucket >= 2).astype(float)
        self.share = np.array(
            [np.nan if r.resolved_share is None else r.resolved_share for r in self.rows]
        )
        self.strong = np.array(
            [np.nan if r.strong_resolved is None else float(r.strong_resolved) for r in self.rows]
        )
        self.base = Design.of([r.features for r in self.rows])
        self.fix = Design.of([fix_features(r.text) for r in self.rows])
        self.rules = Design.of([rule_parts(r.text) for r in self.rows])
        self.words = [words_of(r.text) for r in self.rows]
        self.length = np.array([float(len(r.text)) for r in self.rows])


def pooled_auroc(data: Data, idx: np.ndarray, scores: np.ndarray) -> float:
    ends = data.bucket[idx] != 1
    positive = data.bucket[idx][ends] >= 2
    if positive.all() or not positive.any():
        return float("nan")
    return base.auroc(list(scores[ends]), list(positive))


# With CENTRED, every fold's scores are moved by the mean score of its own training rows: the
# held-out project's scores no longer carry the intercept of a fit without it. (Leaving a project
# out moves the intercept against that project's own rate of hour-plus work, which costs the
# pooled AUROC; a model trained on all projects has no such link to a new one.)
CENTRED = False
# With WITHIN, each fold picks its settings by the inner AUROC within projects, not pooled.
WITHIN = False


def scored(learner: Learner, train: np.ndarray, test: np.ndarray, value: float) -> np.ndarray:
    if not CENTRED:
        return learner(train, test, value)
    both = learner(train, np.concatenate([test, train]), value)
    return both[: len(test)] - both[len(test) :].mean()


def inner_choice(data: Data, train: np.ndarray, learner: Learner, grid: Sequence[float]) -> float:
    """The grid value with the best pooled AUROC over leave-one-repository-out inside `train`."""
    best, best_auc = grid[0], -1.0
    for value in grid:
        scores = np.zeros(len(train))
        for repo in sorted(set(data.repos[train])):
            inner_test = data.repos[train] == repo
            scores[inner_test] = scored(learner, train[~inner_test], train[inner_test], value)
        auc = within_project(data, scores, train) if WITHIN else pooled_auroc(data, train, scores)
        if auc > best_auc:
            best, best_auc = value, auc
    return best


def outer(data: Data, learner: Learner, grid: Sequence[float]) -> tuple[np.ndarray, list[float]]:
    """Held-out scores for every row; the grid value is picked inside each training fold."""
    scores = np.zeros(len(data.rows))
    chosen = []
    everything = np.arange(len(data.rows))
    for repo in sorted(set(data.repos)):
        test = everything[data.repos == repo]
        train = everything[data.repos != repo]
        value = grid[0] if len(grid) == 1 else inner_choice(data, train, learner, grid)
        chosen.append(value)
        scores[test] = scored(learner, train, test, value)
    return scores, chosen


def within_project(data: Data, scores: np.ndarray, rows: np.ndarray | None = None) -> float:
    """AUROC over pairs of a quick fix and hour-plus work of the same project only: no fold's
    intercept can move it. `scores` are those of `rows` (all rows when None)."""
    rows = np.arange(len(data.rows)) if rows is None else rows
    repos, bucket = data.repos[rows], data.bucket[rows]
    won = pairs = 0.0
    for repo in set(repos):
        mine = repos == repo
        quick = scores[mine & (bucket == 0)]
        for hard in scores[mine & (bucket >= 2)]:
            won += (hard > quick).sum() + 0.5 * (hard == quick).sum()
            pairs += len(quick)
    return won / pairs


def report(data: Data, name: str, scores: np.ndarray, chosen: Sequence[float] = ()) -> None:
    auc, rho = base.figures(data.rows, list(scores))
    length, _ = base.figures(data.rows, list(data.length))
    picked = f"  (picked {sorted(Counter(chosen).items())})" if chosen else ""
    print(
        f"{name:<44} AUROC {auc:.3f}  Spearman {rho:.3f}  vs length {auc - length:+.3f}  "
        f"within projects {within_project(data, scores):.3f}{picked}",
        flush=True,
    )


# -- learners ---------------------------------------------------------------------------------


def logistic(x: np.ndarray, target: np.ndarray) -> Learner:
    def learn(train: np.ndarray, test: np.ndarray, l2: float) -> np.ndarray:
        return apply(fit_logistic(x[train], target[train], l2), x[test])

    return learn


def ordinal(x: np.ndarray, bucket: np.ndarray) -> Learner:
    """All-threshold expansion: one shared weight vector, a row per cut (>=1, >=2, >=3)."""

    def learn(train: np.ndarray, test: np.ndarray, l2: float) -> np.ndarray:
        cuts = (1, 2, 3)
        xs = [np.hstack([x[train], np.tile(np.eye(3)[c - 1], (len(train), 1))]) for c in cuts]
        ys = [(bucket[train] >= c).astype(float) for c in cuts]
        fitted = fit_logistic(np.vstack(xs), np.concatenate(ys), l2)
        # The hour-plus cut's logit, its intercept included.
        return apply(fitted, np.hstack([x[test], np.tile(np.eye(3)[1], (len(test), 1))]))

    return learn


def multitask(x: np.ndarray, data: Data, aux_weight: float, which: str) -> Learner:
    """Shared weights over hour-plus and the agents' failures, each with its own intercept."""

    def learn(train: np.ndarray, test: np.ndarray, l2: float) -> np.ndarray:
        blocks_x, blocks_y, blocks_w = [], [], []
        tasks = [("hard", data.hard, 1.0)]
        if which in ("share", "both"):
            tasks.append(("share", 1 - data.share, aux_weight))
        if which in ("strong", "both"):
            tasks.append(("strong", 1 - data.strong, aux_weight))
        for t, (_, y, weight) in enumerate(tasks):
            keep = train[~np.isnan(y[train])]
            indicator = np.zeros((len(keep), len(tasks) - 1))
            if t:
                indicator[:, t - 1] = 1.0
            blocks_x.append(np.hstack([x[keep], indicator]))
            blocks_y.append(y[keep])
            blocks_w.append(np.full(len(keep), weight))
        fitted = fit_logistic(
            np.vstack(blocks_x), np.concatenate(blocks_y), l2, np.concatenate(blocks_w)
        )
        return apply(fitted, np.hstack([x[test], np.zeros((len(test), len(tasks) - 1))]))

    return learn


def shared(
    x: np.ndarray,
    data: Data,
    aux_weight: float = 0.0,
    cuts: Sequence[int] = (1, 2, 3),
    fixed: int = 0,
    fixed_l2: float = 0.3,
    balance: float = 0.0,
) -> Learner:
    """One weight vector over several targets, each with its own intercept: the cuts of the four
    buckets (ordinal, all-threshold) and, with `aux_weight`, the agents' failures."""
    targets = [((data.bucket >= c).astype(float), 1.0) for c in cuts]
    if aux_weight:
        targets += [(1 - data.share, aux_weight), (1 - data.strong, aux_weight)]

    def learn(train: np.ndarray, test: np.ndarray, l2: float) -> np.ndarray:
        blocks_x, blocks_y, blocks_w = [], [], []
        for t, (y, weight) in enumerate(targets):
            keep = train[~np.isnan(y[train])]
            indicator = np.zeros((len(keep), len(targets)))
            indicator[:, t] = 1.0
            blocks_x.append(np.hstack([x[keep], indicator[:, 1:]]))
            blocks_y.append(y[keep])
            per_repo = Counter(data.repos[keep])
            # balance 1: every project weighs the same; 0: every issue does.
            share = np.array([per_repo[r] for r in data.repos[keep]], dtype=float) ** -balance
            blocks_w.append(weight * share * len(keep) / share.sum())
        k = x.shape[1]
        # The first `fixed` columns at `fixed_l2`, the others at the fold's `l2`; intercepts free.
        penalty = np.array([fixed_l2] * fixed + [l2] * (k - fixed) + [0.0] * (len(targets) - 1))
        fitted = fit_logistic(
            np.vstack(blocks_x),
            np.concatenate(blocks_y),
            penalty if fixed else l2,
            np.concatenate(blocks_w),
        )
        main = np.zeros((len(test), len(targets)))
        main[:, list(cuts).index(2) if 2 in cuts else 0] = 1.0
        return apply(fitted, np.hstack([x[test], main[:, 1:]]))

    return learn


def selected(
    x: np.ndarray, always: int, data: Data, keep: int, inner: Callable[[np.ndarray], Learner]
) -> Learner:
    """The first `always` columns, plus the `keep` other columns whose training-fold AUROC is
    furthest from 0.5: feature selection inside the fold, never on the held-out project."""

    def learn(train: np.ndarray, test: np.ndarray, l2: float) -> np.ndarray:
        ends = train[data.bucket[train] != 1]
        positive = list(data.bucket[ends] >= 2)
        strength = [
            abs(base.auroc(list(x[ends, j]), positive) - 0.5) for j in range(always, x.shape[1])
        ]
        chosen = list(range(always)) + [always + j for j in np.argsort(strength)[::-1][:keep]]
        return inner(x[:, chosen])(train, test, l2)

    return learn


def pairwise(x: np.ndarray, data: Data) -> Learner:
    """Conditional (within-project) logistic: pairs of issues of one project, the harder first or
    second, features differenced, no intercept; so project base rates cannot be learned. The
    intercept is then fitted alone, the weights held, on the training rows (hour-plus)."""

    def learn(train: np.ndarray, test: np.ndarray, l2: float) -> np.ndarray:
        diffs, ys = [], []
        for repo in sorted(set(data.repos[train])):
            members = train[data.repos[train] == repo]
            for i in members:
                for j in members:
                    if data.bucket[i] > data.bucket[j]:
                        diffs.append(x[i] - x[j])
                        ys.append(1.0)
                        diffs.append(x[j] - x[i])
                        ys.append(0.0)
        d, y = np.array(diffs), np.array(ys)
        scale = x[train].std(0)
        scale[scale == 0] = 1.0
        # Each issue appears in many pairs: weigh the pairs so the penalty means what it does
        # for a plain fit on len(train) rows.
        w = np.full(len(y), len(train) / len(y))
        beta = np.zeros(x.shape[1])
        ds = d / scale
        for _ in range(50):
            p = 1 / (1 + np.exp(-(ds @ beta)))
            gradient = ds.T @ (w * (p - y)) + l2 * beta
            hessian = (ds.T * (w * p * (1 - p))) @ ds + l2 * np.eye(len(beta))
            step = np.linalg.solve(hessian, gradient)
            beta -= step
            if np.abs(step).max() < 1e-8:
                break
        score_train = (x[train] / scale) @ beta
        bias = fit_logistic(score_train[:, None], data.hard[train], 0.0)
        return apply(bias, ((x[test] / scale) @ beta)[:, None])

    return learn


def ends_only(x: np.ndarray, data: Data) -> Learner:
    """Fitted on quick fixes and hour-plus work only, the rows the AUROC compares."""

    def learn(train: np.ndarray, test: np.ndarray, l2: float) -> np.ndarray:
        keep = train[data.bucket[train] != 1]
        return apply(fit_logistic(x[keep], data.hard[keep], l2), x[test])

    return learn


def backward(x: np.ndarray, data: Data, make: Callable[[np.ndarray], Learner]) -> Learner:
    """Features dropped one at a time while the inner leave-one-project-out AUROC improves,
    inside the training fold."""

    def inner_auc(train: np.ndarray, columns: list[int], l2: float) -> float:
        scores = np.zeros(len(train))
        learner = make(x[:, columns])
        for repo in sorted(set(data.repos[train])):
            mask = data.repos[train] == repo
            scores[mask] = scored(learner, train[~mask], train[mask], l2)
        return pooled_auroc(data, train, scores)

    def learn(train: np.ndarray, test: np.ndarray, l2: float) -> np.ndarray:
        columns = list(range(x.shape[1]))
        best = inner_auc(train, columns, l2)
        while len(columns) > 1:
            trials = [
                (inner_auc(train, [c for c in columns if c != drop], l2), drop) for drop in columns
            ]
            auc, drop = max(trials)
            if auc <= best:
                break
            best = auc
            columns.remove(drop)
        return make(x[:, columns])(train, test, l2)

    return learn


def stacked_aux(x: np.ndarray, data: Data, l2_aux: float = 10.0) -> Learner:
    """An auxiliary model of the agents' failure, fitted on the training fold only, as a feature.

    Its value on the training rows is itself out-of-fold (inner leave-one-repository-out), so the
    main model does not learn to trust an in-sample fit."""
    aux_y = np.where(np.isnan(data.share), np.nan, 1 - data.share)
    aux_y = np.where(np.isnan(aux_y), 1 - data.strong, aux_y)

    def aux_scores(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        keep = train[~np.isnan(aux_y[train])]
        return apply(fit_logistic(x[keep], aux_y[keep], l2_aux), x[test])

    def learn(train: np.ndarray, test: np.ndarray, l2: float) -> np.ndarray:
        in_fold = np.zeros(len(train))
        for repo in sorted(set(data.repos[train])):
            mask = data.repos[train] == repo
            in_fold[mask] = aux_scores(train[~mask], train[mask])
        test_aux = aux_scores(train, test)
        xt = np.hstack([x[train], in_fold[:, None]])
        xs = np.hstack([x[test], test_aux[:, None]])
        return apply(fit_logistic(xt, data.hard[train], l2), xs)

    return learn


def bag_of_words(
    data: Data,
    dense: np.ndarray,
    min_docs: int,
    target: np.ndarray,
    ordinal_fit: bool = False,
    fixed: int = 0,
) -> Learner:
    """Dense features plus binary word presence, the vocabulary pruned inside the training fold."""

    def learn(train: np.ndarray, test: np.ndarray, l2: float) -> np.ndarray:
        df = Counter(w for i in train for w in set(data.words[i]))
        vocab = sorted(w for w, n in df.items() if min_docs <= n <= 0.5 * len(train))
        at = {w: j for j, w in enumerate(vocab)}

        def matrix(idx: np.ndarray) -> np.ndarray:
            m = np.zeros((len(idx), len(vocab)))
            for r, i in enumerate(idx):
                for w in set(data.words[i]):
                    if w in at:
                        m[r, at[w]] = 1.0
            return np.hstack([dense[idx], m])

        if ordinal_fit:
            full = np.zeros((len(data.rows), dense.shape[1] + len(vocab)))
            full[train], full[test] = matrix(train), matrix(test)
            return shared(full, data, fixed=fixed)(train, test, l2)
        return apply(fit_logistic(matrix(train), target[train], l2), matrix(test))

    return learn


def stumps(x: np.ndarray, target: np.ndarray, rounds: int, rate: float = 0.1) -> Learner:
    """Gradient-boosted stumps (logistic loss) on a few quantile thresholds per feature."""

    def learn(train: np.ndarray, test: np.ndarray, l2: float) -> np.ndarray:
        xt, y = x[train], target[train]
        f = np.full(len(train), math.log(y.mean() / (1 - y.mean())))
        ft = np.full(len(test), f[0])
        cuts = [np.unique(np.quantile(xt[:, j], [0.2, 0.4, 0.6, 0.8])) for j in range(x.shape[1])]
        for _ in range(int(rounds)):
            p = 1 / (1 + np.exp(-f))
            g, h = y - p, p * (1 - p)
            best = (0.0, 0, 0.0, 0.0, 0.0)
            for j, thresholds in enumerate(cuts):
                for c in thresholds:
                    left = xt[:, j] <= c
                    gl, hl = g[left].sum(), h[left].sum() + l2
                    gr, hr = g[~left].sum(), h[~left].sum() + l2
                    gain = gl * gl / hl + gr * gr / hr
                    if gain > best[0]:
                        best = (gain, j, c, gl / hl, gr / hr)
            _, j, c, vl, vr = best
            f += rate * np.where(xt[:, j] <= c, vl, vr)
            ft += rate * np.where(x[test][:, j] <= c, vl, vr)
        return ft

    return learn


def rank_mean(*columns: np.ndarray) -> np.ndarray:
    def ranks(v: np.ndarray) -> np.ndarray:
        return np.argsort(np.argsort(v, kind="mergesort"), kind="mergesort") / (len(v) - 1)

    return np.mean([ranks(c) for c in columns], axis=0)


# -- the attempts -----------------------------------------------------------------------------


def attempts(data: Data) -> dict[str, Callable[[], tuple[np.ndarray, list[float]]]]:
    b, fx = data.base.x, (data.base | data.fix).x
    fix_only = np.hstack([b[:, [data.base.names.index("log_prose_tokens")]], data.fix.x])
    return {
        "shipped (L2 1.0, as train_router.py)": lambda: outer(data, logistic(b, data.hard), [1.0]),
        "shipped features, L2 chosen in fold": lambda: outer(data, logistic(b, data.hard), L2_GRID),
        "ordinal (4 buckets), shipped features": lambda: outer(
            data, ordinal(b, data.bucket), L2_GRID
        ),
        "expected-fix features alone (+length)": lambda: outer(
            data, logistic(fix_only, data.hard), L2_GRID
        ),
        "shipped + expected-fix features": lambda: outer(data, logistic(fx, data.hard), L2_GRID),
        "ordinal, shipped + expected-fix": lambda: outer(data, ordinal(fx, data.bucket), L2_GRID),
        "multi-task + agents' share (w 0.5)": lambda: outer(
            data, multitask(b, data, 0.5, "share"), L2_GRID
        ),
        "multi-task + strong agent (w 0.5)": lambda: outer(
            data, multitask(b, data, 0.5, "strong"), L2_GRID
        ),
        "multi-task + both (w 0.5)": lambda: outer(data, multitask(b, data, 0.5, "both"), L2_GRID),
        "multi-task + both (w 1.0)": lambda: outer(data, multitask(b, data, 1.0, "both"), L2_GRID),
        "multi-task + both, shipped + fix features": lambda: outer(
            data, multitask(fx, data, 0.5, "both"), L2_GRID
        ),
        "ordinal, L2 grid down to 0.01": lambda: outer(
            data, shared(b, data), (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
        ),
        "ordinal + agents' failures (w 0.5)": lambda: outer(data, shared(b, data, 0.5), L2_GRID),
        "ordinal + agents' failures (w 0.25)": lambda: outer(data, shared(b, data, 0.25), L2_GRID),
        "ordinal + agents' failures (w 1.0)": lambda: outer(data, shared(b, data, 1.0), L2_GRID),
        "ordinal, shipped + 4 fix features picked in fold": lambda: outer(
            data, selected(fx, len(data.base.names), data, 4, lambda z: shared(z, data)), L2_GRID
        ),
        "ordinal, shipped + 8 fix features picked in fold": lambda: outer(
            data, selected(fx, len(data.base.names), data, 8, lambda z: shared(z, data)), L2_GRID
        ),
        "ordinal bag of words (df>=15) + shipped": lambda: outer(
            data, bag_of_words(data, b, 15, data.hard, ordinal_fit=True), (10.0, 30.0, 100.0, 300.0)
        ),
        "ordinal, shipped at 0.3 + fix features at own L2": lambda: outer(
            data, shared(fx, data, fixed=len(data.base.names)), (3.0, 10.0, 30.0, 100.0, 1000.0)
        ),
        "ordinal, shipped at 0.3 + words (df>=15) at own L2": lambda: outer(
            data,
            bag_of_words(data, b, 15, data.hard, True, b.shape[1]),
            (30.0, 100.0, 300.0, 3000.0),
        ),
        "ordinal, shipped + hand rules' parts": lambda: outer(
            data, shared((data.base | data.rules).x, data), L2_GRID
        ),
        "ordinal, shipped at 0.3 + rules' parts at own L2": lambda: outer(
            data, shared((data.base | data.rules).x, data, fixed=b.shape[1]), L2_GRID
        ),
        "ordinal, L2 fixed at 1.0 (the shipped value)": lambda: outer(data, shared(b, data), [1.0]),
        "ordinal, projects weighed 1/sqrt(issues)": lambda: outer(
            data, shared(b, data, balance=0.5), L2_GRID
        ),
        "ordinal, every project weighed the same": lambda: outer(
            data, shared(b, data, balance=1.0), L2_GRID
        ),
        "pairwise within-project ranking": lambda: outer(data, pairwise(b, data), L2_GRID),
        "pairwise within-project, shipped + fix": lambda: outer(data, pairwise(fx, data), L2_GRID),
        "fitted on quick and hour-plus issues only": lambda: outer(
            data, ends_only(b, data), L2_GRID
        ),
        "shipped, features dropped in fold (backward)": lambda: outer(
            data, backward(b, data, lambda z: logistic(z, data.hard)), [1.0]
        ),
        "stacked aux model as a feature": lambda: outer(data, stacked_aux(b, data), L2_GRID),
        "bag of words (df>=10) + shipped": lambda: outer(
            data, bag_of_words(data, b, 10, data.hard), (10.0, 30.0, 100.0, 300.0)
        ),
        "bag of words (df>=25) + shipped": lambda: outer(
            data, bag_of_words(data, b, 25, data.hard), (10.0, 30.0, 100.0, 300.0)
        ),
        "boosted stumps, shipped features": lambda: outer(
            data, stumps(b, data.hard, 60), (1.0, 10.0)
        ),
        "boosted stumps, shipped + fix": lambda: outer(
            data, stumps(fx, data.hard, 60), (1.0, 10.0)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=())
    parser.add_argument("--centred", action="store_true", help="see CENTRED")
    parser.add_argument("--within", action="store_true", help="see WITHIN")
    args = parser.parse_args()
    global CENTRED, WITHIN
    CENTRED, WITHIN = args.centred, args.within
    data = Data()
    length, rho = base.figures(data.rows, list(data.length))
    print(f"length of the text                           AUROC {length:.3f}  Spearman {rho:.3f}")
    results = {}
    for name, run in attempts(data).items():
        if args.only and not any(o in name for o in args.only):
            continue
        scores, chosen = run()
        results[name] = scores
        report(data, name, scores, chosen)
    if args.only:
        return
    ordinal_name = "ordinal, L2 fixed at 1.0 (the shipped value)"
    hand = data.base.x[:, data.base.names.index("hand_score")]
    report(data, "rank mean: ordinal + hand score", rank_mean(results[ordinal_name], hand))
    report(
        data,
        "rank mean: ordinal + multi-task share",
        rank_mean(results[ordinal_name], results["multi-task + agents' share (w 0.5)"]),
    )
    report(
        data,
        "rank mean: ordinal + stumps",
        rank_mean(results[ordinal_name], results["boosted stumps, shipped features"]),
    )
    paired_bootstrap(data, results[ordinal_name], results["shipped (L2 1.0, as train_router.py)"])


def paired_bootstrap(data: Data, new: np.ndarray, old: np.ndarray, draws: int = 2000) -> None:
    """How sure the gain of `new` over `old` is: issues resampled, both scored on each draw."""
    ends = np.flatnonzero(data.bucket != 1)
    positive = data.bucket[ends] >= 2
    rng = np.random.default_rng(19)
    gains = []
    for _ in range(draws):
        pick = rng.choice(len(ends), len(ends))
        if positive[pick].all() or not positive[pick].any():
            continue
        a = base.auroc(list(new[ends][pick]), list(positive[pick]))
        b = base.auroc(list(old[ends][pick]), list(positive[pick]))
        gains.append(a - b)
    low, high = np.quantile(gains, [0.025, 0.975])
    print(
        f"ordinal - shipped AUROC, paired bootstrap over issues: mean {np.mean(gains):+.3f}, "
        f"95% interval {low:+.3f} to {high:+.3f}, above zero in {np.mean(np.array(gains) > 0):.0%}"
    )


if __name__ == "__main__":
    main()
