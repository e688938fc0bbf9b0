"""Ensembles of fold models chosen across runs: their out-of-fold metric, and the spec file that
``bin/predict.py --ensemble FILE`` predicts with (docs/FORMAT.md, "Ensemble spec").

The OOF estimate mirrors what prediction does: each run's OOF rows come from its chosen folds' valid_df
CSVs (a row predicted by the fold model that did not train on it); the ensemble's probability for a row is
the weighted mean of the runs' probabilities (a run weighs the sum of its members' weights), over the rows
(by id) present in every chosen run; the prediction is the most probable class.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui.core.commit import utc_now, write_json_atomic
from tui.core.files import load_json
from tui.core.metrics import MetricsError, read_fold, score
from tui.core.names import FOLD_MODEL_DIR, RUN_FILE, valid_df_name

SPEC_FORMAT = "ckpt-tui/ensemble/1"


class EnsembleError(ValueError):
    """The ensemble cannot be built or read; the message is one line naming the file or run."""


@dataclass(frozen=True)
class Member:
    run: Path  # the run folder
    fold: int
    weight: float = 1.0


def fold_model_folder(run: Path, fold: int) -> Path | None:
    """``<model>_fold_<k>/`` of the run: the one named by run.json's model_name, else the only match."""
    run = Path(run)
    data, _ = load_json(run / RUN_FILE)
    model = data.get("model_name") if isinstance(data, dict) else None
    if isinstance(model, str) and (run / f"{model}_fold_{fold}").is_dir():
        return run / f"{model}_fold_{fold}"
    try:
        found = sorted(
            p
            for p in run.iterdir()
            if (m := FOLD_MODEL_DIR.match(p.name)) and int(m["fold"]) == fold and p.is_dir()
        )
    except OSError:
        return None
    return found[0] if len(found) == 1 else None


def _normalised(members: list[Member]) -> list[Member]:
    if not members:
        raise EnsembleError("no members chosen")
    if any(not (m.weight > 0) for m in members):
        raise EnsembleError("every member's weight must be a positive number")
    total = sum(m.weight for m in members)
    return [Member(Path(m.run), m.fold, m.weight / total) for m in members]


def oof_metrics(members: list[Member]) -> dict[str, Any]:
    """``{"n", "accuracy", "f1_macro", "log_loss", "runs", "rows_left_out"}`` of the ensemble's OOF
    predictions. Raises EnsembleError (one line) when a CSV is unusable, has no ids or probabilities,
    or the runs disagree on classes or labels."""
    import pandas as pd

    members = _normalised(members)
    by_run: dict[Path, list[Member]] = {}
    for m in members:
        by_run.setdefault(m.run, []).append(m)
    frames, classes = [], None
    for run, chosen in by_run.items():
        frame = _run_frame(run, sorted({m.fold for m in chosen}))
        these = frame.attrs["classes"]
        if classes is not None and these != classes:
            raise EnsembleError(f"{run}: classes {these} differ from the other runs' {classes}")
        classes = these
        frames.append((sum(m.weight for m in chosen), frame))
    ids = set.intersection(*(set(f["id"]) for _, f in frames))
    if not ids:
        raise EnsembleError("the chosen runs share no OOF row ids")
    base = frames[0][1].loc[lambda f: f["id"].isin(ids)].sort_values("id").reset_index(drop=True)
    prob_columns = [f"prob::{c}" for c in classes]
    mean = sum(weight * _aligned(f, ids, base, prob_columns) for weight, f in frames)
    out = pd.DataFrame({"label": base["label"], "prediction": [classes[i] for i in mean.argmax(axis=1)]})
    for j, column in enumerate(prob_columns):
        out[column] = mean[:, j]
    out.attrs["classes"] = classes
    result = score(out)
    result["runs"] = len(frames)
    result["rows_left_out"] = sum(len(f) for _, f in frames) - len(frames) * len(ids)
    return result


def _aligned(frame, ids: set[str], base, prob_columns: list[str]):
    """The frame's probabilities for ``ids``, in ``base``'s row order; its labels must agree with base's."""
    rows = frame.loc[frame["id"].isin(ids)].sort_values("id").reset_index(drop=True)
    mismatch = rows["label"] != base["label"]
    if mismatch.any():
        raise EnsembleError(f"row id {rows['id'][mismatch.idxmax()]!r}: the runs disagree on its label")
    probs = rows[prob_columns].to_numpy(dtype=float)
    return probs / probs.sum(axis=1, keepdims=True)


def _run_frame(run: Path, folds: list[int]):
    import pandas as pd

    parts = []
    for k in folds:
        path = Path(run) / valid_df_name(k)
        if not path.is_file():
            raise EnsembleError(f"{path}: missing (fold {k} has no OOF predictions)")
        try:
            frame, _ = read_fold(path)
        except MetricsError as e:
            raise EnsembleError(f"{run}: {e}") from None
        if "id" not in frame.columns or not frame.attrs["classes"]:
            raise EnsembleError(f"{path}: an ensemble needs an id column and prob_<class> columns")
        parts.append(frame)
    frame = pd.concat(parts, ignore_index=True)
    if frame["id"].duplicated().any():
        raise EnsembleError(f"{run}: row id {frame['id'][frame['id'].duplicated()].iloc[0]!r} appears twice")
    frame.attrs["classes"] = parts[0].attrs["classes"]
    return frame


def build_spec(members: list[Member], spec_path: Path, *, metric: str | None = None) -> dict[str, Any]:
    """The spec of ``members`` (fold folders relative to the spec file's folder, weights summing to 1)
    with its OOF metrics; every member needs its fold model folder."""
    members = _normalised(members)
    here = Path(spec_path).absolute().parent
    entries = []
    for m in members:
        folder = fold_model_folder(m.run, m.fold)
        if folder is None:
            raise EnsembleError(f"{m.run}: no <model>_fold_{m.fold}/ model folder to predict with")
        entries.append(
            {
                "folder": os.path.relpath(folder.absolute(), here),
                "run": os.path.relpath(Path(m.run).absolute(), here),
                "fold": m.fold,
                "weight": m.weight,
            }
        )
    return {"format": SPEC_FORMAT, "created": utc_now(), "metric": metric, "members": entries,
            "oof": oof_metrics(members)}  # fmt: skip


def write_spec(members: list[Member], spec_path: Path, *, metric: str | None = None) -> dict[str, Any]:
    """Write the spec; an existing file is replaced only when it is an ensemble spec itself (a mistyped
    path never overwrites a run's cv.json or anything else)."""
    spec_path = Path(spec_path)
    if spec_path.exists() or spec_path.is_symlink():
        data, _ = load_json(spec_path) if spec_path.is_file() and not spec_path.is_symlink() else (None, None)
        if not (isinstance(data, dict) and data.get("format") == SPEC_FORMAT):
            raise EnsembleError(f"{spec_path}: exists and is not an ensemble spec; not overwritten")
    spec = build_spec(members, spec_path, metric=metric)
    Path(spec_path).absolute().parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(spec_path), spec)
    return spec


def read_spec(spec_path: Path) -> list[tuple[Path, int | None, float]]:
    """(fold model folder, fold, weight) of each member, folders resolved against the spec's folder.
    Raises EnsembleError (one line naming the file)."""
    spec_path = Path(spec_path)
    data, error = load_json(spec_path)
    if error or data is None:
        raise EnsembleError(error or f"{spec_path}: no such file")
    if not isinstance(data, dict) or data.get("format") != SPEC_FORMAT:
        raise EnsembleError(f"{spec_path}: not a {SPEC_FORMAT} file")
    members = data.get("members")
    if not isinstance(members, list) or not members:
        raise EnsembleError(f"{spec_path}: no members")
    out = []
    for i, m in enumerate(members):
        folder, weight = (m.get("folder"), m.get("weight")) if isinstance(m, dict) else (None, None)
        fold = m.get("fold") if isinstance(m, dict) else None
        if not isinstance(folder, str) or not isinstance(weight, int | float) or isinstance(weight, bool):
            raise EnsembleError(f"{spec_path}: member {i} needs a folder (text) and a weight (number)")
        if not weight > 0:
            raise EnsembleError(f"{spec_path}: member {i} has weight {weight}; weights must be positive")
        out.append(
            (spec_path.absolute().parent / folder, fold if isinstance(fold, int) else None, float(weight))
        )
    return out
