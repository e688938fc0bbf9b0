"""Metrics and the prediction tables of docs/FORMAT.md (valid_df_fold_<k>.csv, oof.csv, cv.json).

The definitions match ``ckpt-tui metrics`` (tui/core/metrics.py), which must reproduce cv.json from the
CSVs alone: accuracy, macro F1 over the classes present in labels and predictions, log loss over all
classes with each row renormalised, and the population standard deviation across folds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from trainer.config import Config
from trainer.data import LabelMap, Table

METRIC_NAMES = ("accuracy", "f1_macro", "log_loss")


def compute(label_ids: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """accuracy, f1_macro and log_loss of class probabilities ``probs`` (rows, classes)."""
    from sklearn.metrics import accuracy_score, f1_score, log_loss

    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum(axis=1, keepdims=True)
    predictions = probs.argmax(axis=1)
    return {
        "accuracy": float(accuracy_score(label_ids, predictions)),
        "f1_macro": float(f1_score(label_ids, predictions, average="macro")),
        "log_loss": float(log_loss(label_ids, probs, labels=np.arange(probs.shape[1]))),
    }


def is_better(value: float, best: float | None, mode: str) -> bool:
    if best is None:
        return True
    return value > best if mode == "max" else value < best


def predict(accelerator, model, loader) -> tuple[np.ndarray, np.ndarray]:
    """(input row indices, softmax probabilities) of every validation row, gathered from all ranks in
    dataset order, without the duplicates that even batches add. Every rank must call this."""
    import torch

    model.eval()
    rows, probs = [], []
    with torch.no_grad():
        for batch in loader:
            row = batch.pop("row")
            batch.pop("labels", None)
            logits = model(**batch).logits.float()
            row, p = accelerator.gather_for_metrics((row, torch.softmax(logits, dim=-1)))
            rows.append(row.cpu().numpy())
            probs.append(p.cpu().numpy())
    model.train()
    return np.concatenate(rows), np.concatenate(probs).astype(np.float64)


def prob_columns(labels: LabelMap) -> list[str]:
    return [f"prob_{name}" for name in labels.id2label().values()]


def valid_frame(table: Table, cfg: Config, rows: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
    """valid_df_fold_<k>.csv: id, text, [text_pair], label, prediction, prob_<class>... (FORMAT.md)."""
    order = np.argsort(rows, kind="stable")
    rows, probs = rows[order], probs[order]
    frame = table.frame.iloc[rows]
    out = pd.DataFrame(
        {"id": table.ids.iloc[rows].to_numpy(), "text": frame[cfg.data.text_column].to_numpy()}
    )
    if cfg.data.text_pair_column:
        out["text_pair"] = frame[cfg.data.text_pair_column].to_numpy()
    out["label"] = table.labels.decode(table.label_ids()[rows])
    out["prediction"] = table.labels.decode(probs.argmax(axis=1))
    for j, column in enumerate(prob_columns(table.labels)):
        out[column] = probs[:, j]
    return out


def frame_metrics(frame: pd.DataFrame, labels: LabelMap) -> dict[str, float]:
    probs = frame[prob_columns(labels)].to_numpy(dtype=np.float64)
    return compute(labels.encode(frame["label"]), probs)


def cv_summary(
    fold_frames: dict[int, pd.DataFrame], best_steps: dict[int, int | None], labels: LabelMap, metric: str
) -> tuple[dict[str, Any], pd.DataFrame]:
    """(cv.json object, oof frame) over the folds given; oof adds ``fold`` last."""
    folds = {}
    for k in sorted(fold_frames):
        folds[str(k)] = {
            "n": len(fold_frames[k]),
            **frame_metrics(fold_frames[k], labels),
            "best_step": best_steps.get(k),
        }
    oof = pd.concat([f.assign(fold=k) for k, f in sorted(fold_frames.items())], ignore_index=True)
    per_fold = {name: np.array([folds[k][name] for k in folds]) for name in METRIC_NAMES}
    cv = {
        "metric": metric,
        "folds": folds,
        "oof": {"n": len(oof), **frame_metrics(oof, labels)},
        "mean": {name: float(v.mean()) for name, v in per_fold.items()},
        "std": {name: float(v.std(ddof=0)) for name, v in per_fold.items()},
    }
    return cv, oof
