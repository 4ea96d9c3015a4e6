"""Train forge's learned router score and write forge/routing/router_model.json.

The model is a logistic regression (L2, fitted by Newton's method with numpy) of "hour-plus work"
on the features `forge.routing.analysis.training_row` computes: the hand score, the length of the
author's own words once templates, version dumps, tracebacks and code are out, code lines, files
and symbols named, whether it asks for new work or reports a crash, links, the task type. (A bag
of words was tried and lowered the grouped figures: 413 issues are too few for it.) It is
evaluated by cross-validation grouped by repository (every fold leaves one project out
entirely), then refitted on all rows and written as JSON; forge applies it in pure Python.

Tier calibration: the chance that a tier's first attempt passes is a mixture,
(1 - d) * p_tier(under an hour) + d * p_tier(hour-plus), with d the learned difficulty and the
two rates measured on the training issues for `cheap`: the share of 77 agent systems that solved
each issue (the average system of the SWE-bench Lite leaderboard); `premium`, `free` and `local`
are placed by fixed steps in log-odds from it (+1.0, -0.7, -1.5: assumptions, no public outcome
data per model size; one strong agent's results, devin_resolved.jsonl, cover a harder subset and
came out below the average system, so they are reported, not used). A ledger of your own
runs refines these per repository at route time (see history.py).

    pip install -e '.[train]'
    python scripts/train_router.py [--data DIR] [--ledger-csv FILE] [--out PATH] [--check]

`--ledger-csv` adds your own labelled tasks: a CSV with `text,hours` columns (hours the work
took), or `text,label` with label in 0..3 (quick / under an hour / 1-4 hours / more); `repo`
optional. `--check` only prints the cross-validated figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from forge.routing.analysis import training_row  # noqa: E402

DATA = Path("/work/shared/data/routing")
OUT = ROOT / "forge" / "routing" / "router_model.json"
BUCKETS = {"<15 min fix": 0, "15 min - 1 hour": 1, "1-4 hours": 2, ">4 hours": 3}
L2 = 1.0
# Log-odds below `cheap` of the smaller tiers' chance to pass first time.
TIER_STEPS = {"premium": 1.0, "free": -0.7, "local": -1.5}


@dataclass
class Row:
    repo: str
    text: str
    bucket: int
    features: dict[str, float]
    resolved_share: float | None = None
    strong_resolved: bool | None = None


def load_rows(data: Path) -> list[Row]:
    rows = []
    for line in (data / "swebench_difficulty_train.jsonl").read_text().splitlines():
        item = json.loads(line)
        rows.append(
            Row(
                repo=item["repo"],
                text=item["problem_statement"],
                bucket=BUCKETS[item["difficulty"]],
                features=training_row(item["problem_statement"]),
            )
        )
    by_id = {
        json.loads(line)["instance_id"]: i
        for i, line in enumerate(
            (data / "swebench_difficulty_train.jsonl").read_text().splitlines()
        )
    }
    for line in (data / "swebench_lite_resolve_counts.jsonl").read_text().splitlines():
        item = json.loads(line)
        if item["instance_id"] in by_id:
            rows[by_id[item["instance_id"]]].resolved_share = item["n_resolved"] / item["n_systems"]
    for line in (data / "devin_resolved.jsonl").read_text().splitlines():
        item = json.loads(line)
        if item["instance_id"] in by_id:
            rows[by_id[item["instance_id"]]].strong_resolved = bool(item["resolved"])
    return rows


def load_csv(path: Path) -> list[Row]:
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        for item in csv.DictReader(handle):
            if item.get("hours"):
                hours = float(item["hours"])
                bucket = 0 if hours < 0.25 else 1 if hours < 1 else 2 if hours <= 4 else 3
            else:
                bucket = int(item["label"])
            repo = item.get("repo") or "own"
            rows.append(Row(repo, item["text"], bucket, training_row(item["text"])))
    return rows


@dataclass
class Fitted:
    names: list[str]
    bias: float
    weights: np.ndarray

    def logits(self, rows: Sequence[Row]) -> np.ndarray:
        return self.bias + dense(rows, self.names) @ self.weights


def dense(rows: Sequence[Row], names: list[str]) -> np.ndarray:
    return np.array([[r.features.get(n, 0.0) for n in names] for r in rows], dtype=float)


def target(rows: Sequence[Row]) -> np.ndarray:
    return np.array([1.0 if r.bucket >= 2 else 0.0 for r in rows])


def newton(x: np.ndarray, y: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    """L2 logistic regression; column 0 of x is the intercept (penalty 0)."""
    beta = np.zeros(x.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-(x @ beta)))
        gradient = x.T @ (p - y) + penalty * beta
        hessian = (x.T * (p * (1 - p))) @ x + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta


def fit(rows: Sequence[Row], names: list[str]) -> Fitted:
    """Fitted on standardised features (so one penalty fits all), returned in raw units."""
    x = dense(rows, names)
    mean, scale = x.mean(0), x.std(0)
    scale[scale == 0] = 1.0
    design = np.hstack([np.ones((len(rows), 1)), (x - mean) / scale])
    penalty = np.array([0.0] + [L2] * len(names))
    beta = newton(design, target(rows), penalty)
    weights = beta[1:] / scale
    bias = beta[0] - float((beta[1:] * mean / scale).sum())
    return Fitted(names, float(bias), weights)


def feature_names(rows: Sequence[Row]) -> list[str]:
    return sorted({n for r in rows for n in r.features})


def auroc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    pairs = sorted(zip(scores, positive, strict=True))
    ranks: list[float] = [0.0] * len(pairs)
    i = 0
    while i < len(pairs):
        j = i
        while j + 1 < len(pairs) and pairs[j + 1][0] == pairs[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        i = j + 1
    pos = sum(1 for _, p in pairs if p)
    neg = len(pairs) - pos
    rank_sum = sum(r for r, (_, p) in zip(ranks, pairs, strict=True) if p)
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    def ranked(v: Sequence[float]) -> np.ndarray:
        order = np.argsort(v, kind="mergesort")
        r = np.empty(len(v))
        values = np.asarray(v)[order]
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and values[j + 1] == values[i]:
                j += 1
            r[order[i : j + 1]] = (i + j) / 2
            i = j + 1
        return r

    return float(np.corrcoef(ranked(a), ranked(b))[0, 1])


def grouped_predictions(rows: Sequence[Row]) -> list[float]:
    """Each row's held-out logit, from a model fitted without its repository."""
    names = feature_names(rows)
    out = [0.0] * len(rows)
    for repo in sorted({r.repo for r in rows}):
        train = [r for r in rows if r.repo != repo]
        test = [i for i, r in enumerate(rows) if r.repo == repo]
        model = fit(train, names)
        for i, value in zip(test, model.logits([rows[i] for i in test]), strict=True):
            out[i] = float(value)
    return out


def figures(rows: Sequence[Row], scores: Sequence[float]) -> tuple[float, float]:
    """(AUROC of quick fixes against hour-plus work, Spearman with the four buckets)."""
    ends = [(s, r.bucket >= 2) for s, r in zip(scores, rows, strict=True) if r.bucket != 1]
    return (
        auroc([s for s, _ in ends], [p for _, p in ends]),
        spearman(list(scores), [float(r.bucket) for r in rows]),
    )


def calibrate(rows: Sequence[Row]) -> dict[str, tuple[float, float]]:
    """Per tier, the chance a first attempt passes: (under an hour, hour-plus) work."""
    tiers: dict[str, tuple[float, float]] = {}
    for name, attribute in (("cheap", "resolved_share"),):
        rates = []
        for hard in (False, True):
            values = [
                float(getattr(r, attribute))
                for r in rows
                if getattr(r, attribute) is not None and (r.bucket >= 2) == hard
            ]
            rates.append(round(sum(values) / len(values), 4))
        tiers[name] = (rates[0], rates[1])
    strong = [r for r in rows if r.strong_resolved is not None]
    print(
        f"strong agent: {sum(bool(r.strong_resolved) for r in strong)}/{len(strong)} solved; "
        f"average system on SWE-bench Lite: under an hour {tiers['cheap'][0]:.1%}, "
        f"hour-plus {tiers['cheap'][1]:.1%}"
    )
    for name, step in TIER_STEPS.items():
        low, high = tiers["cheap"]
        tiers[name] = (round(shift(low, step), 4), round(shift(high, step), 4))
    return tiers


def shift(p: float, step: float) -> float:
    """`p` moved by `step` in log-odds."""
    return 1 / (1 + math.exp(-(math.log(p / (1 - p)) + step)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--ledger-csv", type=Path)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    rows = load_rows(args.data)
    if args.ledger_csv:
        rows += load_csv(args.ledger_csv)
    held_out = grouped_predictions(rows)
    lengths = [float(len(r.text)) for r in rows]
    auc, rho = figures(rows, held_out)
    auc_len, rho_len = figures(rows, lengths)
    print(f"{len(rows)} rows, {len({r.repo for r in rows})} repositories, leave-one-repo-out")
    print(f"learned: AUROC {auc:.3f}  Spearman {rho:.3f}")
    print(f"length:  AUROC {auc_len:.3f}  Spearman {rho_len:.3f}")
    if args.check:
        return
    names = feature_names(rows)
    model = fit(rows, names)
    data = {
        "trained_on": f"{len(rows)} issues; grouped CV AUROC {auc:.3f} (length {auc_len:.3f})",
        "bias": round(model.bias, 5),
        "weights": {n: round(float(w), 5) for n, w in zip(names, model.weights, strict=True)},
        "tiers": calibrate(rows),
    }
    args.out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
