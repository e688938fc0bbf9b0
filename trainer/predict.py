"""Fold-ensemble prediction: every ``<model>_fold_<k>/`` of a run (or a folder of promoted models)
predicts a CSV in batches, and the fold probabilities are averaged (optionally weighted by fold score).

Runs under ``accelerate launch`` too: rows are split across processes and gathered back in order with
``gather_for_metrics`` (which drops the padding rows of the last uneven batch).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.console import quiet_libraries
from trainer.cpu_threads import configure_cpu_threads
from trainer.sampling import longest_first
from tui.core import commit as protocol
from tui.core.files import read_json_dict
from tui.core.names import CONFIG_FILE, CV_FILE, FOLD_MODEL_DIR, MANIFEST_NAME, RUN_FILE, TOKENIZER_FILES
from tui.core.text import lower_is_better


class PredictError(ValueError):
    """A one-line, user-facing problem with the run folder, the models or the input file."""


@dataclass
class FoldModel:
    path: Path
    fold: int | None
    score: float | None  # the fold's selection metric (cv.json, or the promoted manifest)


@dataclass
class Source:
    """What a run folder (or a folder of promoted models) provides for prediction."""

    models: list[FoldModel]
    metric: str | None
    data_config: dict[str, Any]
    weights: list[float] | None = None  # an ensemble spec's; else fold_weights decides


def _checked_model(path: Path, fold: int | None, score: float | None) -> FoldModel:
    problems = protocol.verify(path)
    if problems and (path / MANIFEST_NAME).exists():
        raise PredictError(f"{path}: incomplete model folder ({problems[0]})")
    if not (path / CONFIG_FILE).is_file():
        raise PredictError(f"{path}: no config.json (not a Hugging Face model folder)")
    return FoldModel(path, fold, score)


def find_models(source: Path) -> Source:
    """Fold folders of a run, or model folders under a promoted folder, in fold order."""
    source = Path(source)
    if not source.is_dir():
        raise PredictError(f"{source}: no such run folder")
    run = (
        read_json_dict(source / RUN_FILE, PredictError)
        or read_json_dict(source.parent / RUN_FILE, PredictError)
        or {}
    )
    data_config = (run.get("config") or {}).get("data") or {}
    cv = read_json_dict(source / CV_FILE, PredictError) or {}
    metric = cv.get("metric") or run.get("metric")

    if (source / RUN_FILE).is_file():
        models = []
        for child in sorted(source.iterdir()):
            match = FOLD_MODEL_DIR.match(child.name)
            if match and child.is_dir():
                fold = int(match.group("fold"))
                score = ((cv.get("folds") or {}).get(str(fold)) or {}).get(metric) if metric else None
                models.append(_checked_model(child, fold, score))
        if not models:
            raise PredictError(f"{source}: no <model>_fold_<k>/ folders (has any fold finished?)")
    elif (source / CONFIG_FILE).is_file():
        models = [_checked_model(source, None, None)]
    else:
        models = []
        for child in sorted(p for p in source.iterdir() if p.is_dir() and (p / CONFIG_FILE).is_file()):
            manifest = protocol.read_manifest(child) if (child / MANIFEST_NAME).exists() else None
            manifest_metric = (manifest or {}).get("metric") or {}
            metric = metric or manifest_metric.get("name")
            match = FOLD_MODEL_DIR.match(child.name)
            fold = (manifest or {}).get("fold", int(match.group("fold")) if match else None)
            models.append(_checked_model(child, fold, manifest_metric.get("value")))
        if not models:
            raise PredictError(f"{source}: neither a run folder (run.json) nor a folder of model folders")
    models.sort(key=lambda m: (m.fold is None, m.fold if m.fold is not None else 0, m.path.name))
    return Source(models, metric, data_config)


def ensemble_models(spec: Path) -> Source:
    """The members of an ensemble spec (tui.core.ensemble; fold folders of several runs, with weights).
    The text columns and max_length are the first member's run's."""
    from tui.core.ensemble import EnsembleError, read_spec

    try:
        members = read_spec(Path(spec))
    except EnsembleError as e:
        raise PredictError(str(e)) from None
    models = []
    for folder, fold, _ in members:
        if not folder.is_dir():
            raise PredictError(f"{spec}: member folder {folder} does not exist")
        models.append(_checked_model(folder, fold, None))
    run = read_json_dict(members[0][0].parent / RUN_FILE, PredictError) or {}
    weights = [w / sum(w for *_, w in members) for *_, w in members]
    return Source(models, None, (run.get("config") or {}).get("data") or {}, weights)


def fold_weights(models: list[FoldModel], metric: str | None, weighted: bool) -> list[float]:
    """Equal weights, or weights proportional to fold score (inverse score for lower-is-better metrics)."""
    if not weighted:
        return [1.0 / len(models)] * len(models)
    missing = [m.path.name for m in models if m.score is None]
    if missing or metric is None:
        raise PredictError(
            f"--weighted needs a fold score for every model; none for {', '.join(missing) or 'all'}"
        )
    raw = [1.0 / m.score if lower_is_better(metric) else m.score for m in models]
    if any(w <= 0 for w in raw) or sum(raw) <= 0:
        raise PredictError(
            f"--weighted: fold scores must be positive ({metric}: {[m.score for m in models]})"
        )
    return [w / sum(raw) for w in raw]


def read_table(path: Path):
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise PredictError(f"{path}: no such input file")
    try:
        return pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path)
    except Exception as e:  # pandas raises many types; the user needs the file and the reason
        raise PredictError(f"{path}: cannot read ({type(e).__name__}: {str(e).splitlines()[0]})") from None


def _require_column(table, name: str, path: Path, flag: str) -> None:
    if name not in table.columns:
        raise PredictError(
            f"{path}: column {name!r} not found (columns: {', '.join(map(str, table.columns))}); pass {flag}"
        )


def _label_names(configs, paths) -> list[str]:
    """The class names in label-id order, the same for every fold (else the average is meaningless)."""
    names = None
    for config, path in zip(configs, paths, strict=True):
        these = [str(config.id2label[i]) for i in range(config.num_labels)]
        if names is not None and these != names:
            raise PredictError(f"{path}: labels {these} differ from the other folds' {names}")
        names = these
    return names or []


def predict(
    source: Path,
    input_path: Path,
    output_path: Path | None = None,
    *,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    id_column: str | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    weighted: bool = False,
    accelerator=None,
    ensemble: Path | None = None,
):
    """Ensemble predictions of ``source``'s fold models on ``input_path``; returns the frame (every rank)."""
    import numpy as np
    import pandas as pd
    import torch
    from torch.utils.data import DataLoader
    from transformers import (
        AutoConfig,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
    )

    found = ensemble_models(ensemble) if ensemble is not None else find_models(Path(source))
    paths = [m.path for m in found.models]
    labels = _label_names([AutoConfig.from_pretrained(p) for p in paths], paths)
    weights = found.weights or fold_weights(found.models, found.metric, weighted)
    data_cfg = found.data_config
    text_column = text_column or data_cfg.get("text_column") or "text"
    text_pair_column = text_pair_column or data_cfg.get("text_pair_column")
    id_column = id_column or data_cfg.get("id_column")
    max_length = max_length or data_cfg.get("max_length") or 512

    table = read_table(input_path)
    _require_column(table, text_column, Path(input_path), "--text-column")
    if text_pair_column:
        _require_column(table, text_pair_column, Path(input_path), "--text-pair-column")
    ids = table[id_column] if id_column and id_column in table.columns else pd.Series(range(len(table)))
    texts = table[text_column].fillna("").astype(str).tolist()
    pairs = table[text_pair_column].fillna("").astype(str).tolist() if text_pair_column else None

    threads = None
    if accelerator is None:
        from accelerate import Accelerator

        from trainer.distributed import process_group_handlers

        threads = configure_cpu_threads()
        accelerator = Accelerator(kwargs_handlers=process_group_handlers())
    quiet_libraries(accelerator.is_main_process)
    if accelerator.is_main_process:
        print(
            f"predicting {len(table)} rows with {len(paths)} fold models on {accelerator.num_processes} "
            f"process{'es' if accelerator.num_processes != 1 else ''}" + (f"; {threads}" if threads else ""),
            file=sys.stderr,
        )

    def make_loader(path: Path):
        tokenizer = AutoTokenizer.from_pretrained(path)
        encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length)
        pad = DataCollatorWithPadding(tokenizer, return_tensors="pt")

        def collate(rows: list[int]) -> dict[str, Any]:
            batch = pad([{key: values[i] for key, values in encoded.items()} for i in rows])
            batch["rows"] = torch.tensor(rows)
            return dict(batch)

        # Longest rows first: batches of similar length pad little; the rows carry their index back.
        order = longest_first([len(ids) for ids in encoded["input_ids"]]).tolist()
        return accelerator.prepare_data_loader(
            DataLoader(order, batch_size=batch_size, shuffle=False, collate_fn=collate)
        )

    loaders: dict[str, Any] = {}  # tokenized once per distinct tokenizer (an ensemble may mix models)
    dtype = torch.float32 if accelerator.device.type == "cpu" else "auto"
    mean = np.zeros((len(table), len(labels)))
    for weight, path in zip(weights, paths, strict=True):
        key = _tokenizer_key(path)
        if key not in loaders:
            loaders[key] = make_loader(path)
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=dtype)
        model.to(accelerator.device).eval()
        mean += weight * _predict_probs(accelerator, model, loaders[key], len(table))
        del model  # one fold model in memory at a time

    frame = pd.DataFrame({"id": ids.to_numpy(), "prediction": [labels[i] for i in mean.argmax(axis=1)]})
    for j, name in enumerate(labels):
        frame[f"prob_{name}"] = mean[:, j]
    if output_path is not None and accelerator.is_main_process:
        from trainer.outputs import write_csv_atomic

        Path(output_path).parent.mkdir(parents=True, exist_ok=True)
        write_csv_atomic(Path(output_path), frame)
    accelerator.wait_for_everyone()
    return frame


def _tokenizer_key(folder: Path) -> str:
    """Digest of the folder's tokenizer files: fold models of one run share it, other models do not."""
    import hashlib

    digest = hashlib.sha256()
    for name in TOKENIZER_FILES:
        if (folder / name).is_file():
            digest.update(name.encode() + b"\0" + (folder / name).read_bytes())
    return digest.hexdigest()


def _predict_probs(accelerator, model, loader, n_rows: int):
    import numpy as np
    import torch

    out = np.zeros((n_rows, model.config.num_labels))
    with torch.no_grad():
        for batch in loader:
            rows = batch.pop("rows")
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            probs = torch.softmax(model(**batch).logits.float(), dim=-1)
            rows, probs = accelerator.gather_for_metrics((rows, probs))
            out[rows.cpu().numpy()] = probs.cpu().numpy()
    return out
