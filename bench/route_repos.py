"""What the repository adds to the router, measured on real checkouts of training projects.

For each project below, its sdist is fetched from PyPI (pip download --no-binary :all:
--no-deps, into --cache; at a version of the period the training issues come from), unpacked
and made a git repository; then every training issue of that project is analysed twice, as
text alone and inside the checkout, where the files and symbols it names (and its traceback's
frames) are looked up: their size, how many files import them, whether a test names them.

Reported, per project and pooled: how many issues named something the checkout has, and the
AUROC (quick fixes against hour-plus work) and Spearman (four buckets) of the held-out learned
score (cross-validated by repository, as bench/route.py) without and with the repository's
terms. Needs numpy (the `train` extra) and network access to PyPI; never run by the tests.

    python bench/route_repos.py [--data DIR] [--cache DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "routing"
# (training repository, sdist): versions from the middle of each project's issues in the set.
PROJECTS = (
    ("psf/requests", "requests==2.26.0"),
    ("pytest-dev/pytest", "pytest==6.2.5"),
    ("pylint-dev/pylint", "pylint==2.14.5"),
    ("sphinx-doc/sphinx", "sphinx==4.2.0"),
)


def checkout(spec: str, cache: Path, into: Path) -> Path:
    name, version = spec.split("==")
    found = sorted(cache.glob(f"{name}-{version}.tar.gz")) + sorted(
        cache.glob(f"{name.capitalize()}-{version}.tar.gz")
    )
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
             "-q", "-d", str(cache), spec],
            check=True,
        )  # fmt: skip
        found = sorted(cache.glob(f"*{version}.tar.gz"))
    with tarfile.open(found[0]) as archive:
        archive.extractall(into, filter="data")
    root = next(p for p in into.iterdir() if p.is_dir())
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "sdists")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "scripts"))
    import train_router as train

    from forge.routing.analysis import analyse
    from forge.routing.codebase import Codebase
    from forge.routing.learned import logit

    rows = train.load_rows(args.data)
    held_out = train.grouped_predictions(rows)
    chosen = {repo for repo, _ in PROJECTS}
    picked = [(r, h) for r, h in zip(rows, held_out, strict=True) if r.repo in chosen]
    without: list[float] = []
    within: list[float] = []
    kept = []
    with tempfile.TemporaryDirectory() as folder:
        for repo, spec in PROJECTS:
            root = checkout(spec, args.cache, Path(folder) / repo.replace("/", "_"))
            codebase = Codebase(root)
            named = 0
            started = time.perf_counter()
            issues = [(r, h) for r, h in picked if r.repo == repo]
            for row, held in issues:
                plain = analyse(row.text, split=False)
                inside = analyse(row.text, codebase=codebase, split=False)
                lift = logit(inside.difficulty) - logit(plain.difficulty)
                named += any("imported by" in x for x in inside.difficulty_reasons) or lift != 0
                without.append(held)
                within.append(held + lift)
                kept.append(row)
            per_issue = (time.perf_counter() - started) / max(1, len(issues)) * 1000
            part = [r for r, _ in issues]
            base = train.figures(part, without[-len(part) :]) if _both_ends(part) else None
            more = train.figures(part, within[-len(part) :]) if _both_ends(part) else None
            figures = (
                f"AUROC {base[0]:.3f} -> {more[0]:.3f}, Spearman {base[1]:.3f} -> {more[1]:.3f}"
                if base and more
                else "too few quick and hour-plus issues for an AUROC"
            )
            print(
                f"{repo:<20} {spec:<18} {len(issues):3} issues, {named:3} name something the "
                f"checkout has; {figures}; {per_issue:.0f} ms per issue in the checkout"
            )
    base, more = train.figures(kept, without), train.figures(kept, within)
    print(
        f"pooled, {len(kept)} issues: AUROC {base[0]:.3f} without the repository, {more[0]:.3f} "
        f"with it; Spearman {base[1]:.3f} -> {more[1]:.3f}"
    )


def _both_ends(rows: list[object]) -> bool:
    buckets = {r.bucket for r in rows}
    return 0 in buckets and bool(buckets & {2, 3})


if __name__ == "__main__":
    main()
