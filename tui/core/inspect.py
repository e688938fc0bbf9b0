"""One checkpoint in detail: ``inspect_path`` gives everything ``ls`` reports about a path (the scan's
``describe``, which applies tui.core.integrity) plus the config, tokenizer, weights, trainer state, files
and manifest panes. Nothing here raises on bad input except ``NotACheckpoint`` for a path that is none.
"""

from __future__ import annotations

import os
from pathlib import Path

from tui.core import commit, scan, summaries, weights
from tui.core.files import MAX_WALK_DEPTH, json_object, read_small_text, walk
from tui.core.integrity import LATEST_LIMIT, read_dcp_cached, scan_pickle_into, weights_into
from tui.core.model import CheckpointInfo, Inspection
from tui.core.names import (
    DEEPSPEED_LATEST,
    MANIFEST_NAME,
    RUN_FILE,
    TRAIN_STATE,
    TRAINER_STATE,
    ZERO_RANK_SHARD,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~3 ms of every command's start)
if TYPE_CHECKING:
    from typing import Any


class NotACheckpoint(ValueError):
    """``inspect_path`` was given something that is not a checkpoint; one line naming it."""


# --- one path in detail ---------------------------------------------------------------------------------


def find_root(path: Path) -> Path:
    """Root for inspecting ``path`` alone: the parent of its nearest run folder (run.json), else its parent."""
    path = Path(os.path.abspath(path))
    for ancestor in list(path.parents)[:8]:
        if (ancestor / RUN_FILE).is_file():
            return ancestor.parent
    return path.parent


def inspect_path(
    root: str | os.PathLike, path: str | os.PathLike, *, verify_hashes: bool = False
) -> Inspection:
    """Everything ``ls`` reports about ``path`` plus config, tokenizer, weights, trainer state, files and
    manifest. Raises NotACheckpoint (one line) only when ``path`` is missing or is no checkpoint."""
    root_abs, abs_path = os.path.abspath(root), os.path.abspath(path)
    info = scan.describe(root_abs, abs_path)
    if info is None:
        if not os.path.exists(abs_path):
            raise NotACheckpoint(f"{path}: no such file or folder")
        raise NotACheckpoint(f"{path}: not a checkpoint (no weights, state or shard files this tool knows)")
    target = Path(abs_path)
    out = Inspection(info=info)
    if target.is_file():
        out.files = [{"path": target.name, "size_bytes": info.size_bytes}]
        _detail_file(out, target, verify_hashes)
        return out
    skipped: list[str] = []
    out.files = _files(target, skipped)
    if skipped:
        info.add_problem(f"{len(skipped)} folder(s) nested deeper than {MAX_WALK_DEPTH} levels not listed")
    top = {f["path"] for f in out.files if "/" not in f["path"]}
    _detail_folder(out, target, top, Path(root_abs))
    if verify_hashes and (target / MANIFEST_NAME).exists():
        for p in commit.verify(target, check_hashes=True, root=Path(root_abs)):
            if p not in info.problems:
                info.add_problem(p)
    return out


def _files(folder: Path, skipped: list[str]) -> list[dict[str, Any]]:
    out = []
    for dirpath, dirnames, filenames in walk(folder, skipped=skipped):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            try:
                size = os.stat(full).st_size
            except OSError:
                size = None
            rel = os.path.relpath(full, folder).replace(os.sep, "/")
            out.append({"path": rel, "size_bytes": size})
    return out


def _detail_file(out: Inspection, path: Path, verify_hashes: bool) -> None:
    if out.info.kind == "safetensors-file":
        out.weights = weights.summarize_weights([path])  # never raises
        return
    if out.info.kind == "mindspore":
        from tui.core.mindspore_ckpt import read_mindspore

        out.weights = read_mindspore(path, verify_crc=verify_hashes)  # the CRC reads the whole file
        for p in out.weights.problems:
            if p not in out.info.problems:
                out.info.add_problem(p)
        return
    out.weights = scan_pickle_into(path, [])


def _detail_folder(out: Inspection, folder: Path, top: set[str], root: Path) -> None:
    info = out.info
    problems: list[str] = []
    if info.kind == "peft-adapter":
        out.config, _ = summaries.adapter_config_summary(folder)
    elif info.kind == "deepspeed":
        out.config = deepspeed_layout(folder)
    else:
        out.config, _ = summaries.config_summary(folder)
    out.config_file, _ = summaries.config_file(folder)
    out.tokenizer, errs = summaries.tokenizer_summary(folder)
    problems += errs
    for name in (TRAINER_STATE, TRAIN_STATE):
        if name in top:
            out.trainer_state, _ = summaries.trainer_state_summary(folder, name=name, root=root)
            break
    if TRAIN_STATE in top:  # our resumable step checkpoint: which layout it resumes on
        from tui.core.resume_layout import layout_of

        layout = layout_of(folder, json_object(folder / TRAIN_STATE, limit=summaries.STATE_LIMIT))
        out.resume = layout.to_json() if layout is not None else None
    if info.kind == "torch-dcp":
        out.weights = read_dcp_cached(folder, top)
    elif info.kind != "deepspeed":
        summary = weights_into(CheckpointInfo(path=info.path, kind=info.kind), folder, top, [])
        out.weights = summary
    try:
        out.manifest = commit.read_manifest(folder)
    except commit.ManifestError:
        out.manifest = None
    # every pickle (optimizer.pt, rng_state.pth ...) was scanned by check_folder, as ls does
    for p in dict.fromkeys(problems):
        if p not in info.problems:
            info.add_problem(p)


def deepspeed_layout(folder: Path) -> dict[str, Any]:
    """ZeRO stage and world size read from shard names (``zero_pp_rank_{r}_mp_rank_00_*``).

    ZeRO-3 writes one ``zero_pp_rank_{r}_mp_rank_00_model_states.pt`` per rank; stages 1 and 2 write a
    single ``mp_rank_00_model_states.pt`` plus per-rank optimizer shards, and their names do not tell
    1 from 2 (``zero_stage`` is then null and ``zero_stage_candidates`` is [1, 2]).
    """
    try:
        names = os.listdir(folder)
    except OSError:
        names = []
    ranks = {int(m.group(1)) for n in names if (m := ZERO_RANK_SHARD.match(n))}
    per_rank_model = any(n.endswith("_model_states.pt") and n.startswith("zero_pp_rank_") for n in names)
    if per_rank_model:
        stage, candidates = 3, [3]
    elif ranks:
        stage, candidates = None, [1, 2]
    else:
        stage, candidates = 0, [0]
    latest = None
    text = read_small_text(folder.parent / DEEPSPEED_LATEST)
    latest = (text or "")[:LATEST_LIMIT].strip() or None
    return {
        "tag": folder.name,
        "zero_stage": stage,
        "zero_stage_candidates": candidates,
        "world_size": (max(ranks) + 1) if ranks else None,
        "latest": latest,
        "latest_is_this": latest == folder.name if latest is not None else None,
    }
