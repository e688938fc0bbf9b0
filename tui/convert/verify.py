"""Reload an export with ``from_pretrained(local_files_only=True)`` in this process (the CLI's promote is
allowed to import torch); returns a one-line problem or None."""

from __future__ import annotations

from pathlib import Path


def verify_reload(folder: Path | str) -> str | None:
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    folder = str(folder)
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        archs = getattr(config, "architectures", None) or []
        cls = (
            AutoModelForSequenceClassification
            if any(a.endswith("ForSequenceClassification") for a in archs)
            else AutoModel
        )
        _model, info = cls.from_pretrained(folder, local_files_only=True, output_loading_info=True)
    except Exception as e:  # any failure to load is the answer we are asked for
        return f"{folder}: does not reload with from_pretrained ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    missing = list(info.get("missing_keys") or [])
    mismatched = list(info.get("mismatched_keys") or [])
    if missing or mismatched:
        return (
            f"{folder}: reloads with {cls.__name__} but {len(missing)} weights are missing and "
            f"{len(mismatched)} have the wrong shape (e.g. {(missing or mismatched)[0]})"
        )
    return None
