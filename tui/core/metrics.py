"""Fold metrics from a run's ``valid_df_fold_<k>.csv`` files (docs/FORMAT.md, "valid_df" and "cv.json").

pandas is imported inside the functions: the browser pays for it only when it shows metrics. The
scores are counted on integer codes with numpy (the same definitions as sklearn's accuracy, macro F1 and
log loss, which tests compare against): sklearn sorted millions of label strings to find the classes.
A CSV that cannot be used becomes that fold's ``error`` (the other folds still count, but a fold with an
error is left out of ``oof``/``mean``/``std``); when no fold is usable, ``MetricsError`` carries one line
for the CLI.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from tui.core.files import open_regular_file
from tui.core.names import SKIP_DIRS, VALID_DF
from tui.core.text import first_line

LABEL_COLUMNS = ("label", "target", "y", "labels")
PREDICTION_COLUMNS = ("prediction", "pred", "preds", "predicted")
ID_COLUMNS = ("id", "row_id", "idx")
PROB_PREFIXES = ("prob_", "proba_", "p_")
METRIC_NAMES = ("accuracy", "f1_macro", "log_loss")
MAX_CSV_BYTES = 2 << 30
# Memory is bounded by values held, not by file size: label, prediction and one float per probability
# column per row, over every fold together (the OOF frame holds them all again). 20 M values is ~160 MiB
# of floats; a run with more is refused with one line, never read into gigabytes.
MAX_VALUES = 20_000_000
MAX_COLUMNS = 20_000  # 100k probability columns: pandas alone takes minutes
HEADER_LIMIT = 4 << 20  # bytes of the header line
_CHUNK_ROWS = 200_000


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

    folds: dict[str, dict[str, Any]] = {}
    frames = []
    columns_by_fold: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    budget = MAX_VALUES
    for k, path in files.items():
        try:
            frame, columns = _read_fold(path, budget)
            budget -= frame.shape[0] * frame.shape[1]
            folds[str(k)] = _score(frame, f"fold {k}", problems)
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
    oof_frame = concat_folds(frames)
    oof_frame.attrs["classes"] = frames[0].attrs["classes"] if same_classes else None
    oof = _score(oof_frame, "oof", problems)
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
    return {"folds": folds, "oof": oof, "mean": mean, "std": std, "columns": columns, "problems": problems}


def read_fold(path: Path):
    """One fold CSV as a frame of ``label``, ``prediction``, ``id`` (when the CSV has one) and
    ``prob::<class>`` columns (``attrs["classes"]``), plus the columns used; ``MetricsError`` (one line)
    when it cannot be used."""
    try:
        frame, columns = _read_fold(Path(path))
    except _FoldError as e:
        raise MetricsError(str(e)) from None
    for col in ("label", "prediction"):  # text: callers compare them across runs
        frame[col] = frame[col].astype(str)
    return frame, columns


def score(frame, what: str = "oof") -> dict[str, Any]:
    """``{"n", "accuracy", "f1_macro", "log_loss"}`` of a frame shaped like ``read_fold``'s."""
    return _score(frame, what, [])


def concat_folds(frames: list):
    """Frames of rows one under the other, labels and predictions kept as categories (``pd.concat`` would
    turn categories that differ into a string per row)."""
    import pandas as pd
    from pandas.api.types import union_categoricals

    if len(frames) == 1:
        return frames[0]
    out = pd.concat([f.drop(columns=["label", "prediction"]) for f in frames], ignore_index=True)
    for col in ("prediction", "label"):
        out.insert(0, col, union_categoricals([pd.Categorical(f[col]) for f in frames]))
    return out


def _pick(names: list[str], candidates: tuple[str, ...]) -> str | None:
    lowered = {n.strip().lower(): n for n in names}
    for c in candidates:
        if c in lowered:
            return lowered[c]
    return None


def _header(path: Path) -> list[str]:
    """The CSV's column names, read from its first line only (bounded), so that a file of 100k columns
    or a header without an end is refused before pandas sees it."""
    import csv

    try:
        fd, _ = open_regular_file(path)
    except (OSError, ValueError) as e:
        raise _FoldError(f"{path.name}: not a readable CSV ({first_line(e)})") from None
    with os.fdopen(fd, "rb") as f:
        line = f.readline(HEADER_LIMIT + 1)
    if len(line) > HEADER_LIMIT:
        raise _FoldError(f"{path.name}: header line longer than {HEADER_LIMIT >> 20} MiB, not read")
    names = next(csv.reader([line.decode("utf-8", "replace")]), [])
    if not names:
        raise _FoldError(f"{path.name}: not a readable CSV (no header line)")
    if len(names) > MAX_COLUMNS:
        raise _FoldError(f"{path.name}: {len(names)} columns, more than {MAX_COLUMNS}; not read")
    return names


def _read_fold(path: Path, budget: int = MAX_VALUES):
    """The fold's rows as (label, prediction, probabilities...) strings/floats, plus the columns used.
    Only the columns used are read, in chunks, and the read stops past ``budget`` values."""
    import pandas as pd

    try:
        if path.stat().st_size > MAX_CSV_BYTES:
            raise _FoldError(f"{path.name}: larger than {MAX_CSV_BYTES >> 30} GiB, not read")
    except OSError as e:
        raise _FoldError(f"{path.name}: not a readable CSV ({first_line(e)})") from None
    names = _header(path)
    label = _pick(names, LABEL_COLUMNS)
    pred = _pick(names, PREDICTION_COLUMNS)
    if label is None or pred is None:
        missing = "label" if label is None else "prediction"
        wanted = LABEL_COLUMNS if label is None else PREDICTION_COLUMNS
        raise _FoldError(f"{path.name}: no {missing} column (looked for {', '.join(wanted)})")
    probs = _prob_columns(names)
    id_column = _pick(names, ID_COLUMNS)  # kept: joins one run's rows with another's (ensembles)
    try:
        try:  # probabilities parsed as floats by the C reader: millions of rows stay small and fast
            chunks, rows = _read_chunks(path, label, pred, probs, id_column, budget, floats=True)
        except _FoldError:
            raise
        except ValueError:  # a cell that is not a number: read as text to name the column
            chunks, rows = _read_chunks(path, label, pred, probs, id_column, budget, floats=False)
    except _FoldError:
        raise
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise _FoldError(f"{path.name}: not a readable CSV ({first_line(e)})") from None
    if not rows:
        raise _FoldError(f"{path.name}: no rows")
    out = concat_folds(chunks)
    out.attrs["classes"] = list(probs) or None
    columns = {
        "id": id_column,
        "label": label,
        "prediction": pred,
        "probabilities": probs or None,
    }
    return out, columns


def _read_chunks(
    path: Path,
    label: str,
    pred: str,
    probs: dict[str, str],
    id_column: str | None,
    budget: int,
    *,
    floats: bool,
):
    """The used columns in chunks of ``_CHUNK_ROWS`` rows, stopping past ``budget`` values. Labels and
    predictions are categories of text: labels stay in the user's label space ("1" and "pos" alike), and
    a million rows of the same few strings are codes, not a million strings."""
    import pandas as pd

    # Read as text, then made categories: read_csv's own "category" infers the categories' type per file
    # ("1" an int, "inf" a float), so a label "1" would not equal a prediction "1" in a column holding "x".
    dtypes: dict[str, Any] = {label: str, pred: str}
    dtypes.update({col: float if floats else str for col in probs.values()})
    used = [label, pred, *probs.values()]
    if id_column is not None:
        dtypes[id_column] = str
        used.append(id_column)
    width = len(used)
    chunks, rows = [], 0
    with pd.read_csv(path, dtype=dtypes, keep_default_na=False, usecols=used,
                     chunksize=_CHUNK_ROWS) as reader:  # fmt: skip
        for chunk in reader:
            rows += len(chunk)
            if rows * width > budget:
                raise _FoldError(f"{path.name}: more than {budget:,} values (rows x columns used), not read")
            chunks.append(_fold_values(chunk, path, label, pred, probs, id_column))
    return chunks, rows


def _fold_values(
    chunk, path: Path, label: str, pred: str, probs: dict[str, str], id_column: str | None = None
):
    """One chunk as label and prediction text plus one float column per class; a value that is not a
    finite, non-negative number in a probability column is the fold's error."""
    import numpy as np
    import pandas as pd

    data = {"label": chunk[label].astype("category"), "prediction": chunk[pred].astype("category")}
    if id_column is not None:
        data["id"] = chunk[id_column].astype(str)
    for cls, col in probs.items():
        values = pd.to_numeric(chunk[col], errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(values).all() or (values < 0).any():
            raise _FoldError(f"{path.name}: column {col} holds a value that is not a probability")
        data[f"prob::{cls}"] = values
    return pd.DataFrame(data)  # built at once: inserting 20k columns one by one is quadratic


def _prob_columns(names: list[str]) -> dict[str, str]:
    """class -> column, using the first prefix family that is present (prob_ before proba_ before p_)."""
    for prefix in PROB_PREFIXES:
        found = {n[len(prefix) :]: n for n in names if n.lower().startswith(prefix) and len(n) > len(prefix)}
        if found:
            return found
    return {}


def _score(frame, what: str, problems: list[str]) -> dict[str, Any]:
    """accuracy, macro F1 and log loss of one fold (or of all of them), computed on integer codes: sklearn
    sorts its inputs to find the classes, and sorting millions of strings took a minute."""
    import numpy as np
    import pandas as pd

    classes = frame.attrs.get("classes") or []
    y_cat, p_cat = pd.Categorical(frame["label"]), pd.Categorical(frame["prediction"])
    # The probability columns' classes take codes 0..k-1 in column order, the other labels follow; rows
    # are mapped through their categories' codes, never compared as strings.
    known = [np.asarray(c, dtype=object) for c in (classes, y_cat.categories, p_cat.categories)]
    names = pd.Index(pd.unique(np.concatenate(known)))
    y = names.get_indexer(y_cat.categories)[y_cat.codes]
    p = names.get_indexer(p_cat.categories)[p_cat.codes]
    result: dict[str, Any] = {
        "n": int(len(frame)),
        "accuracy": float(np.mean(y == p)),
        "f1_macro": _f1_macro(y, p, len(names)),
        "log_loss": None,
    }
    if classes:
        loss, why = _log_loss(frame, y, names, classes)
        result["log_loss"] = loss
        if why is not None:
            problems.append(f"{what}: log_loss not computed: {why}")
    return result


def _f1_macro(y, p, k: int) -> float:
    """sklearn's ``f1_score(average="macro", zero_division=0)`` on codes below ``k``, by counting: per
    class of labels and predictions, 2 tp / (true + predicted), averaged over the classes present."""
    import numpy as np

    tp = np.bincount(y[y == p], minlength=k)
    true, predicted = np.bincount(y, minlength=k), np.bincount(p, minlength=k)
    present = (true + predicted) > 0
    return float(np.mean(2 * tp[present] / (true + predicted)[present])) if present.any() else 0.0


def _log_loss(frame, y, names, classes: list[str]) -> tuple[float | None, str | None]:
    """(log loss over the renormalised rows, None) or (None, why not). ``y`` holds codes whose first
    ``len(classes)`` are the probability columns in order."""
    import numpy as np

    k = len(classes)
    missing = sorted({str(names[c]) for c in np.unique(y[y >= k])})
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        return None, f"label {', '.join(repr(m) for m in missing[:3])}{more} has no probability column"
    if k < 2:
        return None, "one probability column: a log loss needs two classes or more"
    probs = frame[[f"prob::{c}" for c in classes]].to_numpy(dtype=float, copy=True)  # scaled in place
    # Divide by the row's largest value first: rows of 1e308 would overflow their sum to inf.
    top = probs.max(axis=1, keepdims=True)
    zero = int((top[:, 0] <= 0).sum())
    if zero:
        return None, f"{zero} row(s) with every probability 0"
    with np.errstate(all="ignore"):
        probs /= top
        probs /= probs.sum(axis=1, keepdims=True)
        # sklearn's log_loss, without its one-hot matrix of every row: clip to [eps, 1 - eps], then the
        # mean of -log of each row's probability of its label.
        eps = np.finfo(float).eps
        truth = np.clip(probs[np.arange(len(y)), y], eps, 1 - eps)
        value = float(-np.log(truth).mean())
    return (value, None) if math.isfinite(value) else (None, "not finite")
