"""Fold metrics from a run's ``valid_df_fold_<k>.csv`` files (docs/FORMAT.md, "valid_df" and "cv.json").

pandas and sklearn are imported inside the functions: the browser pays for them only when it shows
metrics. A CSV that cannot be used becomes that fold's ``error`` (the other folds still count, but a
fold with an error is left out of ``oof``/``mean``/``std``); when no fold is usable, ``MetricsError``
carries one line for the CLI.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from tui.core.names import SKIP_DIRS, VALID_DF
from tui.core.text import first_line

LABEL_COLUMNS = ("label", "target", "y", "labels")
PREDICTION_COLUMNS = ("prediction", "pred", "preds", "predicted")
ID_COLUMNS = ("id", "row_id", "idx")
PROB_PREFIXES = ("prob_", "proba_", "p_")
METRIC_NAMES = ("accuracy", "f1_macro", "log_loss")
MAX_CSV_BYTES = 2 << 30


class MetricsError(ValueError):
    """No usable fold CSV under the folder; the message is one line naming the folder or file."""


class _FoldError(ValueError):
    pass


def fold_files(folder: Path) -> dict[int, Path]:
    """fold index -> its valid_df CSV, for the files directly in ``folder``."""
    out = {}
    try:
        with os.scandir(folder) as it:
            for entry in it:
                m = VALID_DF.match(entry.name)
                if m and entry.is_file():
                    out[int(m.group(1))] = Path(entry.path)
    except OSError as e:
        raise MetricsError(f"{folder}: cannot list ({e.strerror or e})") from None
    return dict(sorted(out.items()))


def folders_with_folds(root: Path, *, max_depth: int = 3, max_folders: int = 20_000) -> list[Path]:
    """Folders at most ``max_depth`` below ``root`` that hold valid_df_fold CSVs (run folders), for a
    ROOT given one level too high. Bounded (a 2 TB tree is not walked), links and trash never entered,
    and nothing below a folder that has them."""
    found: list[Path] = []
    level, visited = [Path(root)], 0
    for _ in range(max_depth):
        below: list[Path] = []
        for folder in level:
            try:
                with os.scandir(folder) as it:
                    subs = [
                        Path(e.path)
                        for e in it
                        if e.name not in SKIP_DIRS and e.is_dir(follow_symlinks=False)
                    ]
            except OSError:
                continue
            for sub in sorted(subs):
                visited += 1
                if visited > max_folders:
                    return found
                try:
                    has_folds = any(VALID_DF.match(n) for n in os.listdir(sub))
                except OSError:
                    continue
                (found if has_folds else below).append(sub)
        level = below
    return sorted(found)


def compute_metrics(folder: Path) -> dict[str, Any]:
    """``{"folds": {k: {n, accuracy, f1_macro, log_loss}}, "oof", "mean", "std", "columns"}``."""
    folder = Path(folder)
    files = fold_files(folder)
    if not files:
        raise MetricsError(f"{folder}: no valid_df_fold_<k>.csv files")
    import pandas as pd

    folds: dict[str, dict[str, Any]] = {}
    frames = []
    columns_by_fold: dict[str, dict[str, Any]] = {}
    for k, path in files.items():
        try:
            frame, columns = _read_fold(path)
            folds[str(k)] = _score(frame, f"{path.name}")
        except _FoldError as e:
            folds[str(k)] = {"n": None, "accuracy": None, "f1_macro": None, "log_loss": None, "error": str(e)}
            continue
        frames.append(frame)
        columns_by_fold[str(k)] = columns
    if not frames:
        first = next(iter(folds.values()))["error"]
        raise MetricsError(first if len(files) == 1 else f"{folder}: no usable fold CSV ({first})")
    good = [f for f in folds.values() if "error" not in f]
    # Only folds whose probability columns name the same classes can share an OOF log loss.
    same_classes = len({tuple(f.attrs["classes"] or ()) for f in frames}) == 1
    oof_frame = pd.concat(frames, ignore_index=True)
    oof_frame.attrs["classes"] = frames[0].attrs["classes"] if same_classes else None
    oof = _score(oof_frame, "oof")
    mean, std = {}, {}
    for name in METRIC_NAMES:
        values = [f[name] for f in good]
        if values and all(v is not None for v in values):
            m = sum(values) / len(values)
            mean[name] = m
            std[name] = math.sqrt(sum((v - m) ** 2 for v in values) / len(values))  # population (ddof=0)
        else:
            mean[name] = std[name] = None
    distinct = {repr(c) for c in columns_by_fold.values()}
    columns = next(iter(columns_by_fold.values())) if len(distinct) == 1 else {"by_fold": columns_by_fold}
    return {"folds": folds, "oof": oof, "mean": mean, "std": std, "columns": columns}


def _pick(names: list[str], candidates: tuple[str, ...]) -> str | None:
    lowered = {n.strip().lower(): n for n in names}
    for c in candidates:
        if c in lowered:
            return lowered[c]
    return None


def _read_fold(path: Path):
    """The fold's rows as (label, prediction, probabilities...) strings/floats, plus the columns used."""
    import pandas as pd

    try:
        if path.stat().st_size > MAX_CSV_BYTES:
            raise _FoldError(f"{path.name}: larger than {MAX_CSV_BYTES >> 30} GiB, not read")
        # Everything as text first: labels stay in the user's label space ("1" and "pos" alike).
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except _FoldError:
        raise
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise _FoldError(f"{path.name}: not a readable CSV ({first_line(e)})") from None
    names = [str(c) for c in frame.columns]
    label = _pick(names, LABEL_COLUMNS)
    pred = _pick(names, PREDICTION_COLUMNS)
    if label is None or pred is None:
        missing = "label" if label is None else "prediction"
        wanted = LABEL_COLUMNS if label is None else PREDICTION_COLUMNS
        raise _FoldError(f"{path.name}: no {missing} column (looked for {', '.join(wanted)})")
    if frame.empty:
        raise _FoldError(f"{path.name}: no rows")
    probs = _prob_columns(names)
    out = pd.DataFrame({"label": frame[label].astype(str), "prediction": frame[pred].astype(str)})
    for cls, col in probs.items():
        values = pd.to_numeric(frame[col], errors="coerce")
        if values.isna().any() or (values < 0).any():
            raise _FoldError(f"{path.name}: column {col} holds a value that is not a probability")
        out[f"prob::{cls}"] = values.astype(float)
    out.attrs["classes"] = list(probs) or None
    columns = {
        "id": _pick(names, ID_COLUMNS),
        "label": label,
        "prediction": pred,
        "probabilities": probs or None,
    }
    return out, columns


def _prob_columns(names: list[str]) -> dict[str, str]:
    """class -> column, using the first prefix family that is present (prob_ before proba_ before p_)."""
    for prefix in PROB_PREFIXES:
        found = {n[len(prefix) :]: n for n in names if n.lower().startswith(prefix) and len(n) > len(prefix)}
        if found:
            return found
    return {}


def _score(frame, what: str) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, f1_score, log_loss

    y, p = frame["label"].to_numpy(), frame["prediction"].to_numpy()
    result: dict[str, Any] = {
        "n": int(len(frame)),
        "accuracy": float(accuracy_score(y, p)),
        "f1_macro": float(f1_score(y, p, average="macro", zero_division=0)),
        "log_loss": None,
    }
    classes = frame.attrs.get("classes")
    if classes and set(y) <= set(classes):
        probs = frame[[f"prob::{c}" for c in classes]].to_numpy(dtype=float)
        sums = probs.sum(axis=1, keepdims=True)
        if (sums > 0).all():
            result["log_loss"] = float(log_loss(y, probs / sums, labels=classes))
    return result

