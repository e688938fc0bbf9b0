"""One checkpoint in detail (``inspect_path``) and the integrity rules shared with the scanner.

Integrity rules (each becomes a one-line ``problems`` entry and ``complete: false``):
truncated safetensors, bad or oversized header, overlapping offsets (tui.core.weights /
safetensors_header), a shard named in an index but missing, zero-byte weights, invalid config.json,
a DeepSpeed ``latest`` naming a tag that does not exist, a leftover ``.<name>.tmp``/``.<name>.old``
folder and a run checkpoint without manifest (tui.core.scan), a manifest that does not match the files
(tui.core.commit.verify), a truncated pickle zip and unsafe pickle globals (tui.core.pickle_scan).
Nothing here raises on bad input: readers return problems.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tui.core import commit, summaries
from tui.core.model import CheckpointInfo, Inspection

SAFETENSORS_INDEX = re.compile(r"\.safetensors\.index\.json$")
PICKLE_INDEX = re.compile(r"\.bin\.index\.json$")
ZERO_RANK = re.compile(r"zero_pp_rank_(\d+)_mp_rank_\d+_(?:model|optim)_states\.pt$")
WEIGHT_PICKLES = ("pytorch_model.bin", "adapter_model.bin", "model.bin")
LATEST_LIMIT = 4096


class NotACheckpoint(ValueError):
    """``inspect_path`` was given something that is not a checkpoint; one line naming it."""


# --- the rules the scanner applies to every checkpoint --------------------------------------------------


def check_folder(
    info: CheckpointInfo,
    folder: Path,
    files: set[str],
    kind: str,
    *,
    trainer_state: Callable[[str], tuple[dict[str, Any] | None, list[str]]] | None = None,
) -> dict[str, Any] | None:
    """Fill weight numbers, step/epoch/metric and problems of a checkpoint folder; return its manifest.

    ``files`` are posix paths relative to ``folder`` (from the walk, so no listing is repeated).
    ``trainer_state(folder)`` is the scan's cache of trainer_state.json summaries (read once per scan).
    """
    problems: list[str] = []
    top = {f for f in files if "/" not in f}
    if kind != "deepspeed":
        _weights_into(info, folder, top, problems)
    if "config.json" in top:
        problems += summaries.config_summary(folder)[1]
    if kind == "peft-adapter":
        problems += summaries.adapter_config_summary(folder)[1]
    if kind == "deepspeed":
        problems += latest_problems(folder.parent, only_if_names=folder.name)
    if "latest" in top:  # accelerate save_state under DeepSpeed keeps `latest` inside the folder
        problems += latest_problems(folder)
    _state_into(info, folder, top, kind, problems, trainer_state)
    manifest = _manifest_into(info, folder, problems) if commit.MANIFEST_NAME in top else None
    for p in dict.fromkeys(problems):  # same text from two rules once
        info.add_problem(p)
    return manifest


def check_file(info: CheckpointInfo, path: Path) -> None:
    """A loose .safetensors or pickle file: header / static pickle scan numbers and problems."""
    problems: list[str] = []
    if info.kind == "safetensors-file":
        _weights_into(info, path.parent, {path.name}, problems, only=[path])
    else:
        report = _scan_pickle(path, problems)
        if report is not None:
            if getattr(report, "lightning", False):
                info.kind = "lightning"
            _pickle_numbers_into(info, report)
    for p in dict.fromkeys(problems):
        info.add_problem(p)


def latest_problems(folder: Path, *, only_if_names: str | None = None) -> list[str]:
    """DeepSpeed's ``latest`` file in ``folder`` must name a tag folder that exists beside it."""
    path = folder / "latest"
    try:
        with open(path, "rb") as f:
            raw = f.read(LATEST_LIMIT)
    except FileNotFoundError:
        return []
    except OSError as e:
        return [f"latest: unreadable ({e.strerror})"]
    tag = raw.decode("utf-8", "replace").strip()
    if not tag or "/" in tag or tag in (".", ".."):
        return [f"latest: does not name a tag folder ({tag[:60]!r})"]
    if (folder / tag).is_dir():
        return []
    if only_if_names is not None and only_if_names == tag:
        return []
    return [f"latest: names {tag!r}, which does not exist here; DeepSpeed resume from this folder will fail"]


def _weight_files(top: set[str]) -> tuple[list[str], str | None, list[str]]:
    """(safetensors files, safetensors index, weight pickles) among a folder's top-level names."""
    index = next((f for f in sorted(top) if SAFETENSORS_INDEX.search(f)), None)
    tensors = sorted(f for f in top if f.endswith(".safetensors"))
    pickles = sorted(f for f in top if f in WEIGHT_PICKLES or re.match(r"^pytorch_model-\d+-of-\d+\.bin$", f))
    return tensors, index, pickles


def _weights_into(
    info: CheckpointInfo, folder: Path, top: set[str], problems: list[str], *, only: list[Path] | None = None
) -> Any:
    from tui.core import weights

    st_files, index, pickles = _weight_files(top)
    summary = None
    for name in pickles:  # weights.py reports zero-byte safetensors itself
        try:
            if (folder / name).stat().st_size == 0:
                problems.append(f"{name}: zero-byte weights file")
        except OSError:
            pass
    if st_files or index:
        try:
            if only is not None:
                summary = weights.summarize_weights(only)
            elif info.kind == "accelerate-state" and not index:
                # save_state writes model.safetensors, model_1.safetensors, ... one per prepared model
                summary = weights.summarize_weights([folder / f for f in st_files])
            else:  # weights.py picks the index, model.safetensors or adapter_model.safetensors
                summary = weights.summarize_weights(folder)
        except Exception as e:  # the contract is "never raises"; keep the scan alive if it does
            problems.append(f"{folder.name}: weights could not be summarised ({type(e).__name__}: {e})")
        if summary is not None:
            problems += list(summary.problems)
            info.tensors, info.parameters = summary.tensors, summary.parameters
            info.dtypes = dict(summary.dtypes)
    elif pickles:
        report = _scan_pickle(folder / pickles[0], problems) if len(pickles) == 1 else None
        if report is not None:
            _pickle_numbers_into(info, report)
    return summary


def _scan_pickle(path: Path, problems: list[str]) -> Any:
    from tui.core import pickle_scan

    try:
        report = pickle_scan.scan_pickle(path)
    except Exception as e:
        problems.append(f"{path.name}: pickle scan failed ({type(e).__name__}: {e})")
        return None
    # pickle_scan's problems name the file already, unsafe globals included.
    problems += [p if p.startswith(path.name) else f"{path.name}: {p}" for p in report.problems]
    return report


def _pickle_numbers_into(info: CheckpointInfo, report: Any) -> None:
    info.tensors = report.tensors
    info.parameters = report.parameters
    info.dtypes = dict(report.dtypes) if report.dtypes is not None else None


def _state_into(
    info: CheckpointInfo,
    folder: Path,
    top: set[str],
    kind: str,
    problems: list[str],
    trainer_state: Callable[[str], tuple[dict[str, Any] | None, list[str]]] | None = None,
) -> None:
    """step / epoch / metric from trainer_state.json (HF) or train_state.json (our step folders)."""
    name = (
        "trainer_state.json"
        if "trainer_state.json" in top
        else "train_state.json"
        if "train_state.json" in top
        else None
    )
    if name is None:
        return
    if name == "trainer_state.json" and trainer_state is not None:
        state, errs = trainer_state(str(folder))
    else:
        state, errs = summaries.trainer_state_summary(folder, name=name)
    problems += errs
    if state is None:
        return
    if name == "train_state.json":
        info.step = state["global_step"] if state["global_step"] is not None else info.step
        info.epoch = float(state["epoch"]) if state["epoch"] is not None else info.epoch
        return
    resolved = state["best_model_checkpoint_resolved"]
    names_itself = resolved is not None and os.path.normpath(resolved) == os.path.normpath(
        os.path.abspath(folder)
    )
    if kind == "hf-checkpoint":
        info.step = state["global_step"] if state["global_step"] is not None else info.step
    elif names_itself and state["best_global_step"] is not None:
        info.step = state["best_global_step"]  # a fold folder holds the weights of its best step
    elif state["best_model_checkpoint"] is None and info.step is None:
        info.step = state["global_step"]  # no best tracking: the weights are the last step's
    # else: an output_dir whose state names another best checkpoint may hold either weights; unknown.
    if state["epoch"] is not None and (
        kind == "hf-checkpoint"
        # a fold folder saved at its best step: the state's epoch is the weights' epoch
        or (names_itself and state["global_step"] is not None and state["global_step"] == info.step)
    ):
        info.epoch = float(state["epoch"])
    metric_name = state["metric_name"]
    if names_itself and state["best_metric"] is not None:
        info.metric = {"name": _metric_label(metric_name), "value": state["best_metric"]}
    elif metric_name:
        value = summaries.metric_at_step(state, metric_name, info.step)
        if value is not None:
            info.metric = {"name": _metric_label(metric_name), "value": value}


def _metric_label(name: str | None) -> str | None:
    return name[len("eval_") :] if name and name.startswith("eval_") else name


def _manifest_into(info: CheckpointInfo, folder: Path, problems: list[str]) -> dict[str, Any] | None:
    if not (folder / commit.MANIFEST_NAME).exists():
        return None
    try:
        manifest = commit.read_manifest(folder)
    except commit.ManifestError as e:
        problems.append(str(e))
        return None
    problems += commit.verify(folder)
    if manifest.get("kind") == "promoted":
        info.promoted = True
    if isinstance(manifest.get("step"), int):
        info.step = manifest["step"]
    if isinstance(manifest.get("fold"), int):
        info.fold = manifest["fold"]
    metric = manifest.get("metric")
    if isinstance(metric, dict) and isinstance(metric.get("value"), (int, float)):
        info.metric = {
            "name": metric.get("name") if isinstance(metric.get("name"), str) else None,
            "value": metric["value"],
        }
    if manifest.get("kind") == "fold-model":
        info.best = True  # FORMAT.md: a committed fold folder holds the best model of its fold
    return manifest


# --- one path in detail ---------------------------------------------------------------------------------


def find_root(path: Path) -> Path:
    """Root for inspecting ``path`` alone: the parent of its nearest run folder (run.json), else its parent."""
    path = Path(os.path.abspath(path))
    for ancestor in list(path.parents)[:8]:
        if (ancestor / "run.json").is_file():
            return ancestor.parent
    return path.parent


def inspect_path(
    root: str | os.PathLike, path: str | os.PathLike, *, verify_hashes: bool = False
) -> Inspection:
    """Everything ``ls`` reports about ``path`` plus config, tokenizer, weights, trainer state, files and
    manifest. Raises NotACheckpoint (one line) only when ``path`` is missing or is no checkpoint."""
    from tui.core import scan

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
        _detail_file(out, target)
        return out
    out.files = _files(target)
    top = {f["path"] for f in out.files if "/" not in f["path"]}
    _detail_folder(out, target, top, Path(root_abs))
    if verify_hashes and (target / commit.MANIFEST_NAME).exists():
        for p in commit.verify(target, check_hashes=True):
            if p not in info.problems:
                info.add_problem(p)
    return out


def _files(folder: Path) -> list[dict[str, Any]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
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


def _detail_file(out: Inspection, path: Path) -> None:
    if out.info.kind == "safetensors-file":
        from tui.core import weights

        try:
            out.weights = weights.summarize_weights([path]).to_json()
        except Exception as e:
            out.weights = {"error": f"{type(e).__name__}: {e}"}
        return
    report = _scan_pickle(path, [])
    if report is not None:
        out.weights = {
            "format": report.format,
            "entries": report.entries[:200],
            "tensors": report.tensors,
            "parameters": report.parameters,
            "dtypes": report.dtypes,
            "globals": report.globals,
            "unsafe_globals": report.unsafe_globals,
            "lightning": report.lightning,
            "top_keys": report.top_keys,
        }


def _detail_folder(out: Inspection, folder: Path, top: set[str], root: Path) -> None:
    info = out.info
    problems: list[str] = []
    if info.kind == "peft-adapter":
        out.config, _ = summaries.adapter_config_summary(folder)
    elif info.kind == "deepspeed":
        out.config = deepspeed_layout(folder)
    else:
        out.config, _ = summaries.config_summary(folder)
    out.tokenizer, errs = summaries.tokenizer_summary(folder)
    problems += errs
    for name in ("trainer_state.json", "train_state.json"):
        if name in top:
            out.trainer_state, _ = summaries.trainer_state_summary(folder, name=name, root=root)
            break
    if info.kind != "deepspeed":
        summary = _weights_into(CheckpointInfo(path=info.path, kind=info.kind), folder, top, [])
        out.weights = summary.to_json() if summary is not None else None
    try:
        out.manifest = commit.read_manifest(folder)
    except commit.ManifestError:
        out.manifest = None
    # ls scans only the weight pickles; inspect looks at every pickle (optimizer.pt, rng_state.pth ...).
    for name in sorted(top):
        if name.endswith((".pt", ".pth", ".bin", ".ckpt", ".pkl")) and name not in WEIGHT_PICKLES:
            _scan_pickle(folder / name, problems)
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
    ranks = {int(m.group(1)) for n in names if (m := ZERO_RANK.search(n))}
    per_rank_model = any(n.endswith("_model_states.pt") and n.startswith("zero_pp_rank_") for n in names)
    if per_rank_model:
        stage, candidates = 3, [3]
    elif ranks:
        stage, candidates = None, [1, 2]
    else:
        stage, candidates = 0, [0]
    latest = None
    try:
        latest = (folder.parent / "latest").read_text(errors="replace")[:LATEST_LIMIT].strip() or None
    except OSError:
        pass
    return {
        "tag": folder.name,
        "zero_stage": stage,
        "zero_stage_candidates": candidates,
        "world_size": (max(ranks) + 1) if ranks else None,
        "latest": latest,
        "latest_is_this": latest == folder.name if latest is not None else None,
    }
