"""The leaderboard: every K-fold run under ROOT side by side (``ckpt-tui runs``, the app's Runs screen).

A run is a folder holding ``run.json``, ``cv.json`` or ``valid_df_fold_<k>.csv`` files (a Kaggle-style
folder has only the CSVs). Its metrics come from ``cv.json`` when it has the ranking metric, else they are
recomputed from the CSVs (``tui.core.metrics``, the same definitions). Runs are ranked by their OOF metric
(the mean over folds where there is no OOF value) in the metric's direction (``text.lower_is_better``).

Nothing here raises on bad input: an unreadable file becomes one of the run's ``problems``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui.core import cache
from tui.core.diff import flatten
from tui.core.files import allocated_bytes, load_json
from tui.core.metrics import MetricsError, compute_metrics, fold_files
from tui.core.names import CV_FILE, LOCK_FILE, RUN_FILE, SKIP_DIRS, VALID_DF
from tui.core.process import read_lock
from tui.core.text import format_value, lower_is_better

DEFAULT_METRIC = "f1_macro"
METRICS_READER = "runs-metrics/1"  # the summary cache's reader name (bump when compute_metrics changes)
MAX_DEPTH = 4  # runs are found at most this deep below ROOT
MAX_FOLDERS = 20_000  # folders looked at while finding runs (a 2 TB tree is not walked)
# Config keys a person compares runs by, shown first (and by these short names) when they differ.
KEY_NAMES = {
    "model.model_name_or_path": "model",
    "train.lr": "lr",
    "train.epochs": "epochs",
    "train.batch_size": "batch",
    "data.max_length": "max_len",
    "train.seed": "seed",
    "lora.enabled": "lora",
    "lora.r": "lora_r",
}
# Keys that differ between runs without saying anything about the model: where the run was written.
IGNORED_KEYS = frozenset({"run.run_name", "run.output_dir", "run.resume", "run.overwrite"})


@dataclass
class RunRow:
    """One run: where it is, how far it got, its scores on the ranking metric and its config."""

    path: str  # relative to ROOT ("." for ROOT itself)
    model: str | None
    status: str  # running | complete | failed | interrupted | unknown
    folds_done: int
    folds_total: int | None
    oof: float | None
    mean: float | None
    std: float | None
    folds: dict[str, dict[str, Any]]  # fold -> {"n", metric: value} (all metrics the source has)
    config: dict[str, Any]  # flattened run.json "config" (empty without run.json)
    size_bytes: int
    source: str | None  # "cv.json" | "valid_df" | None (no scores)
    metric_of_run: str | None  # the run's own selection metric
    problems: list[str] = field(default_factory=list)

    @property
    def score(self) -> float | None:
        return self.oof if self.oof is not None else self.mean

    def to_json(self, differing: list[str]) -> dict[str, Any]:
        return {
            "path": self.path,
            "model": self.model,
            "status": self.status,
            "folds_done": self.folds_done,
            "folds_total": self.folds_total,
            "oof": self.oof,
            "mean": self.mean,
            "std": self.std,
            "folds": self.folds,
            "config": {key: self.config.get(key) for key in differing},
            "size_bytes": self.size_bytes,
            "source": self.source,
            "run_metric": self.metric_of_run,
            "problems": list(self.problems),
        }


@dataclass
class Leaderboard:
    root: str
    metric: str
    lower_is_better: bool
    runs: list[RunRow]
    differing: list[str]  # config keys whose values differ between runs, the KEY_NAMES ones first

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "metric": self.metric,
            "lower_is_better": self.lower_is_better,
            "differing": self.differing,
            "runs": [r.to_json(self.differing) for r in self.runs],
        }


def short_key(key: str) -> str:
    """The column name of a config key: ``train.lr`` -> ``lr``; others keep their dotted name."""
    return KEY_NAMES.get(key, key)


def find_runs(root: Path, *, max_depth: int = MAX_DEPTH, max_folders: int = MAX_FOLDERS) -> list[Path]:
    """Run folders under ``root`` (``root`` itself included), never below a run, through a link or into
    the trash; bounded by depth and by the number of folders looked at."""
    root = Path(root)
    found: list[Path] = []
    level, visited = [root], 0
    for _ in range(max_depth + 1):
        below: list[Path] = []
        for folder in level:
            try:
                with os.scandir(folder) as it:
                    entries = list(it)
            except OSError:
                continue
            visited += 1
            names = {e.name for e in entries}
            if RUN_FILE in names or CV_FILE in names or any(VALID_DF.match(n) for n in names):
                found.append(folder)
                continue
            below += sorted(Path(e.path) for e in entries if e.name not in SKIP_DIRS and _is_dir(e))
            if visited >= max_folders:
                return sorted(found)
        level = below
    return sorted(found)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def folder_size(folder: Path) -> int:
    """Bytes the folder occupies on disk (links not followed)."""
    total, stack = 0, [folder]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for e in it:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(Path(e.path))
                        else:
                            st = e.stat(follow_symlinks=False)
                            total += allocated_bytes(st) or st.st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def _status(folder: Path, run: dict[str, Any] | None) -> str:
    lock = read_lock(folder / LOCK_FILE)
    if lock is not None and lock.live:
        return "running"
    status = (run or {}).get("status")
    if status == "running":  # run.json says so, yet no live trainer holds the run
        return "interrupted"
    return status if status in ("complete", "failed") else "unknown"


def _scores(folder: Path, metric: str, cv: dict | None, problems: list[str]) -> tuple[dict, str | None]:
    """The cv.json-shaped object holding ``metric``: cv.json, else recomputed from the CSVs."""
    if cv and isinstance(cv.get("oof"), dict) and metric in cv["oof"]:
        return cv, CV_FILE
    try:
        files = fold_files(folder)
        if files:
            # cached while every CSV is unchanged: sklearn's scoring is most of a leaderboard's time
            paths = [(path, None) for path in files.values()]
            return cache.memo(METRICS_READER, paths, lambda: compute_metrics(folder)), "valid_df"
    except MetricsError as e:
        problems.append(str(e))
    return {}, None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def read_run(root: Path, folder: Path, metric: str) -> RunRow:
    problems: list[str] = []
    run, error = load_json(folder / RUN_FILE)
    if error:
        problems.append(error)
    run = run if isinstance(run, dict) else None
    cv, error = load_json(folder / CV_FILE)
    if error:
        problems.append(error)
    cv = cv if isinstance(cv, dict) else None
    scores, source = _scores(folder, metric, cv, problems)
    folds = {
        str(k): {name: v for name, v in f.items() if name != "error"}
        for k, f in (scores.get("folds") or {}).items()
        if isinstance(f, dict)
    }
    config = run.get("config") if run else None
    flat, _ = flatten(config) if isinstance(config, dict) else ({}, True)
    done = run.get("folds_done") if run else None
    total = (run.get("num_folds") if run else None) or None
    to_train = run.get("folds_to_train") if run else None
    if isinstance(to_train, list) and to_train:
        total = len(to_train)
    usable = [k for k, f in folds.items() if f.get(metric) is not None]
    return RunRow(
        path=os.path.relpath(folder, root),
        model=(run or {}).get("model_name") or flat.get("model.model_name_or_path"),
        status=_status(folder, run),
        folds_done=len(done) if isinstance(done, list) else len(usable),
        folds_total=total if isinstance(total, int) else None,
        oof=_number((scores.get("oof") or {}).get(metric)),
        mean=_number((scores.get("mean") or {}).get(metric)),
        std=_number((scores.get("std") or {}).get(metric)),
        folds=folds,
        config=flat,
        size_bytes=folder_size(folder),
        source=source,
        metric_of_run=(cv or {}).get("metric") or (run or {}).get("metric"),
        problems=problems,
    )


def _differing(rows: list[RunRow]) -> list[str]:
    rows = [r for r in rows if r.config]  # a run without run.json says nothing about its config
    keys: set[str] = set()
    for row in rows:
        keys |= set(row.config)
    differing = [k for k in keys - IGNORED_KEYS if len({repr(r.config.get(k)) for r in rows}) > 1]
    order = list(KEY_NAMES)
    return sorted(differing, key=lambda k: (order.index(k) if k in order else len(order), k))


def default_metric(folders: list[Path]) -> str:
    """The metric most runs select by (cv.json, else run.json), else f1_macro."""
    counts: dict[str, int] = {}
    for folder in folders:
        for name in (CV_FILE, RUN_FILE):
            data, _ = load_json(folder / name)
            found = data.get("metric") if isinstance(data, dict) else None
            if isinstance(found, str) and found:
                counts[found] = counts.get(found, 0) + 1
                break
    return max(counts, key=lambda m: (counts[m], m)) if counts else DEFAULT_METRIC


def leaderboard(root: Path, metric: str | None = None) -> Leaderboard:
    """Every run under ``root``, best first on ``metric`` (default: the one most runs select by);
    runs without a score last, then by path."""
    root = Path(root)
    folders = find_runs(root)
    metric = metric or default_metric(folders)
    rows = [read_run(root, f, metric) for f in folders]
    lower = lower_is_better(metric)

    def rank(row: RunRow) -> tuple:
        s = row.score
        return (s is None, 0.0 if s is None else (s if lower else -s), row.path)

    rows.sort(key=rank)
    return Leaderboard(str(root), metric, lower, rows, _differing(rows))


# --- the table (the CLI and the app's Runs screen show the same cells) -------------------------------------


def table(board: Leaderboard) -> tuple[list[str], list[list[str]]]:
    """Column names and one row of cell text per run, ranked; text from disk is NOT yet terminal-safe
    (callers pass each cell through ``safe_text``)."""
    from tui.core.text import format_bytes

    headers = ["#", "run", "model", "status", "folds", f"oof {board.metric}", "mean ± std"]
    headers += [short_key(k) for k in board.differing if k != "model.model_name_or_path"]
    headers.append("size")
    rows = []
    for i, r in enumerate(board.runs, 1):
        total = "?" if r.folds_total is None else str(r.folds_total)
        spread = "-" if r.mean is None else f"{r.mean:.4f} ± {r.std or 0:.4f}"
        cells = [str(i), r.path, r.model or "-", r.status, f"{r.folds_done}/{total}",
                 "-" if r.oof is None else f"{r.oof:.4f}", spread]  # fmt: skip
        cells += [format_value(r.config.get(k)) for k in board.differing if k != "model.model_name_or_path"]
        cells.append(format_bytes(r.size_bytes, compact=True))
        rows.append(cells)
    return headers, rows
