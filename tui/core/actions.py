"""THE one module that deletes or moves user data.

Every destructive action is two steps: a ``plan_*`` function that only reads the disk and returns a
``Plan`` (what goes, how many bytes, what is refused and why, and the one-paragraph summary that the app's
confirmation modal and the CLI prompt show verbatim), then ``execute(plan)``, which re-checks every rule
(things change between plan and confirm) and moves things into the trash under ROOT, so that
``undo_last`` can put them back. Only ``trash-empty`` removes bytes for good.
"""

from __future__ import annotations

import fnmatch
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

from tui.core import zero
from tui.core.commit import ManifestError, read_manifest, utc_now, write_json_atomic
from tui.core.files import FULL_WALK_DEPTH, walk
from tui.core.integrity import scan_pickle_into
from tui.core.model import CheckpointInfo, Kind, progress_key, run_of
from tui.core.names import MANIFEST_NAME, TRASH_DIR
from tui.core.safety import Safety
from tui.core.text import format_bytes, lower_is_better, plural
from tui.core.trash import Trash, TrashError, tree_size

# Files that only matter to resume training. Weights, config and tokenizer never match.
SLIM_PATTERNS: tuple[tuple[str, str], ...] = (
    ("optimizer.pt", "optimizer state"),
    ("optimizer.bin", "optimizer state"),
    ("optimizer_*.bin", "optimizer state"),
    ("optimizer.safetensors", "optimizer state"),
    ("scheduler.pt", "scheduler state"),
    ("scheduler.bin", "scheduler state"),
    ("scheduler_*.bin", "scheduler state"),
    ("scaler.pt", "AMP scaler state"),
    ("rng_state*.pth", "RNG state"),
    ("random_states_*.pkl", "RNG state"),
    ("*optim_states.pt", "ZeRO optimizer shard"),
)
ZERO_SHARD = "ZeRO optimizer shard"
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "model*.bin", "*.ckpt")


# What a plan does; a Result also reports "undo" (restoring trash entries).
PlanAction = Literal["delete", "slim", "prune", "trash-empty"]
ResultAction = Literal["delete", "slim", "prune", "trash-empty", "undo"]
Paths = Iterable[Path | str]  # absolute, or relative to ROOT
Infos = Iterable[CheckpointInfo]  # the scan's records (best / promoted protect)
Clock = Callable[[], float]


@dataclass
class PlanItem:
    path: str  # posix, relative to ROOT
    bytes: int
    what: str  # what goes, in words: "hf-checkpoint, step 120" / "optimizer state"
    group: str | None = None  # slim: the checkpoint folder the file is taken from


@dataclass
class Refusal:
    path: str
    reason: str


@dataclass
class Plan:
    action: PlanAction
    root: str
    items: list[PlanItem] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    kept: list[Refusal] = field(default_factory=list)  # prune/slim: what stays, and why
    total_bytes: int = 0
    summary: str = ""
    # Not part of the JSON: what execute() needs to re-check the same rules.
    infos: list[CheckpointInfo] = field(default_factory=list, repr=False)
    clock: Callable[[], float] = field(default=time.time, repr=False)

    def to_json(self) -> dict[str, Any]:
        return _json_fields(self, skip=("infos", "clock"))


@dataclass
class Result:
    action: ResultAction
    root: str
    done: list[PlanItem] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)  # failed the re-check at execution time
    errors: list[str] = field(default_factory=list)
    trash_ids: list[str] = field(default_factory=list)
    bytes: int = 0  # moved to the trash, or (trash-empty) freed for good
    summary: str = ""

    @property
    def ok(self) -> bool:
        return not self.refused and not self.errors

    def to_json(self) -> dict[str, Any]:
        out = _json_fields(self)
        out["ok"] = self.ok
        out["summary"] = out.pop("summary")  # last, as in the plan
        return out


def _json_fields(record: Plan | Result, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A plan's or result's fields as JSON: item and refusal records become objects."""
    out: dict[str, Any] = {}
    for f in fields(record):
        if f.name not in skip:
            value = getattr(record, f.name)
            out[f.name] = [asdict(v) if is_dataclass(v) else v for v in value] if isinstance(value, list) else value
    return out


def _root(root: Path | str) -> Path:
    return Path(os.path.realpath(root))


def _new_plan(action: PlanAction, root: Path | str, infos: Infos, clock: Clock) -> tuple[Plan, Safety]:
    """An empty plan over a snapshot of ``infos``, and the safety rules it is checked against."""
    root_p, infos = _root(root), list(infos)
    return Plan(action, str(root_p), infos=infos, clock=clock), Safety(root_p, infos, clock=clock)


def _info_index(infos: Iterable[CheckpointInfo]) -> dict[str, CheckpointInfo]:
    return {i.path: i for i in infos}


def _describe(rel: str, full: Path, infos: dict[str, CheckpointInfo]) -> str:
    info = infos.get(rel)
    if info is not None:
        parts = [info.kind]
        if info.fold is not None:
            parts.append(f"fold {info.fold}")
        if info.step is not None:
            parts.append(f"step {info.step}")
        if info.metric is not None:
            parts.append(f"{info.metric.name} {info.metric.value:.4g}")
        return ", ".join(parts)
    if full.is_symlink():
        return "symlink"
    if full.is_dir():
        return f"folder ({sum(len(f) for _, _, f in walk(full, max_depth=FULL_WALK_DEPTH))} files)"
    return "file"


def _drop_nested(paths: Sequence[Path]) -> list[Path]:
    """Deleting a folder deletes what is inside: keep only the outermost of overlapping paths."""
    unique = sorted(dict.fromkeys(paths), key=lambda p: len(p.parts))
    kept: list[Path] = []
    for p in unique:
        if not any(k == p or k in p.parents for k in kept):
            kept.append(p)
    return kept


def _names(items: Sequence[PlanItem | Refusal], limit: int = 3, *, words: bool = False) -> str:
    """The first ``limit`` paths (``words``: what each item is, in words), then how many more."""
    shown = ", ".join(i.what if words and isinstance(i, PlanItem) else i.path for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _refusal_sentence(refusals: Sequence[Refusal]) -> str:
    if not refusals:
        return ""
    first = refusals[0]
    more = f" (and {len(refusals) - 1} more refused)" if len(refusals) > 1 else ""
    return f" Refused: {first.path} {first.reason}{more}."


def _undo_sentence(root: Path) -> str:
    return (
        f" They go to {root.name}/{TRASH_DIR}/ (a rename on the same disk, instant); the space comes back "
        "when the trash is emptied, and until then `u` in the app or `ckpt-tui trash restore ID` undoes it."
    )


# --- delete ----------------------------------------------------------------------------------------------


def plan_delete(root: Path | str, paths: Paths, infos: Infos = (), *, clock: Clock = time.time) -> Plan:
    """Plan moving ``paths`` (absolute, or relative to ROOT) to the trash."""
    plan, safety = _new_plan("delete", root, infos, clock)
    root_p, index = safety.root, _info_index(plan.infos)
    allowed: list[Path] = []
    for given in paths:
        # Located once: another process may delete it meanwhile, and a second look would then find nothing.
        located, reason = safety.locate(given)
        shown = safety.rel(located) if located is not None else str(given)
        reasons = [reason or "refused"] if located is None else safety.reasons(located)
        if located is None or reasons:
            plan.refusals.append(Refusal(shown, "; ".join(reasons)))
        else:
            allowed.append(located)
    for full in _drop_nested(allowed):
        rel = safety.rel(full)
        plan.items.append(PlanItem(rel, tree_size(full), _describe(rel, full, index)))
    _finish_delete_summary(plan, root_p, "Delete")
    return plan


def _finish_delete_summary(plan: Plan, root: Path, verb: str, extra: str = "") -> None:
    plan.total_bytes = sum(i.bytes for i in plan.items)
    if plan.items:
        head = (
            f"{verb} {plural(len(plan.items), 'item')} "
            f"({format_bytes(plan.total_bytes)}): {_names(plan.items)}."
        )
        plan.summary = head + _undo_sentence(root) + extra + _refusal_sentence(plan.refusals)
    else:
        plan.summary = f"Nothing to {verb.lower()}." + extra + _refusal_sentence(plan.refusals)


# --- prune -----------------------------------------------------------------------------------------------


def _metric_value(info: CheckpointInfo, metric: str) -> float | None:
    if info.metric is None or not info.metric.same_name(metric) or math.isnan(info.metric.value):
        return None
    return float(info.metric.value)


# Kinds that are a part of the checkpoint holding them (an adapter in a fold folder, a ZeRO tag folder in
# an HF checkpoint-N): they go with it. Any other checkpoint inside another one is ranked on its own.
PART_KINDS: tuple[Kind, ...] = ("peft-adapter", "deepspeed")


def _prune_units(infos: Sequence[CheckpointInfo]) -> tuple[list[CheckpointInfo], list[CheckpointInfo]]:
    """(checkpoints to rank, folders that hold other ranked checkpoints and are never pruned).

    A Trainer ``output_dir`` after ``save_model`` is itself an hf-model holding its ``checkpoint-N``
    folders: ranking only the outermost would never prune a checkpoint-N, and pruning the output_dir
    would take every checkpoint of the run with it.
    """
    paths = sorted({i.path for i in infos})

    def inside(path: str, other: str) -> bool:
        return other != path and (other == "." or path.startswith(other.rstrip("/") + "/"))

    parts = {i.path for i in infos if i.kind in PART_KINDS and any(inside(i.path, p) for p in paths)}
    ranked_paths = [p for p in paths if p not in parts]
    units, holders = [], []
    for i in infos:
        if i.path in parts:
            continue
        (holders if any(inside(p, i.path) for p in ranked_paths) else units).append(i)
    return units, holders


def _group_key(info: CheckpointInfo) -> tuple[str, int | None]:
    """Checkpoints compete within their run and fold (each fold is its own training)."""
    return run_of(info), info.fold


def plan_prune(
    root: Path | str,
    infos: Iterable[CheckpointInfo],
    keep: int,
    metric: str,
    *,
    mode: str | None = None,
    clock: Callable[[], float] = time.time,
) -> Plan:
    """Keep the top ``keep`` by ``metric`` plus the latest of each run/fold; plan deleting the rest.

    Checkpoints without a value of ``metric`` are kept (never delete what cannot be ranked), and so is
    everything the safety rules protect; both are listed under ``kept`` with the reason.
    """
    if keep < 0:
        raise ValueError(f"--keep must be 0 or more, got {keep}")
    if mode not in (None, "max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    lower = lower_is_better(metric) if mode is None else mode == "min"
    plan, safety = _new_plan("prune", root, infos, clock)
    root_p, infos = safety.root, plan.infos
    groups: dict[tuple[str, int | None], list[CheckpointInfo]] = {}
    units, holders = _prune_units(infos)
    for info in units:
        groups.setdefault(_group_key(info), []).append(info)
    for info in sorted(holders, key=lambda i: i.path):
        plan.kept.append(Refusal(info.path, "holds other checkpoints: those are pruned one by one, not it"))

    ranked_any = False
    for members in groups.values():
        ranked = [i for i in members if _metric_value(i, metric) is not None]
        ranked_any |= bool(ranked)
        ranked.sort(key=lambda i: (_metric_value(i, metric) * (1 if lower else -1), -(i.step or 0)))
        top = {i.path for i in ranked[:keep]}
        latest = max(members, key=lambda i: (*progress_key(i), i.mtime or 0.0))
        for info in sorted(members, key=lambda i: i.path):
            if info.path in top:
                rank = [r.path for r in ranked].index(info.path) + 1
                plan.kept.append(Refusal(info.path, f"top {keep} by {metric} (#{rank})"))
            elif info is latest:
                plan.kept.append(Refusal(info.path, "latest of its run"))
            elif _metric_value(info, metric) is None:
                plan.kept.append(Refusal(info.path, f"no {metric} value: not ranked, kept"))
            elif reasons := safety.reasons(info.path):
                plan.kept.append(Refusal(info.path, "protected: " + "; ".join(reasons)))
            else:
                full = root_p / info.path
                plan.items.append(
                    PlanItem(info.path, tree_size(full), _describe(info.path, full, {info.path: info}))
                )
    plan.items.sort(key=lambda i: i.path)
    direction = "lowest" if lower else "highest"
    extra = f" Kept: {len(plan.kept)} ({direction} {metric} top {keep} and the latest of each run/fold, plus protected)."
    if not ranked_any:
        extra += f" No checkpoint has a {metric} value, so nothing is ranked."
    _finish_delete_summary(plan, root_p, "Prune", extra)
    return plan


# --- slim ------------------------------------------------------------------------------------------------


def slim_label(name: str) -> str | None:
    for pattern, label in SLIM_PATTERNS:
        if fnmatch.fnmatchcase(name, pattern):
            return label
    return None


def _slim_candidates(folder: Path) -> tuple[list[tuple[Path, str]], bool]:
    """(files to drop with their label, whether the folder holds weights outside ZeRO shard folders)."""
    found: list[tuple[Path, str]] = []
    has_weights = False
    for dirpath, dirnames, filenames in walk(folder, max_depth=FULL_WALK_DEPTH):
        dirnames[:] = [d for d in dirnames if d != TRASH_DIR and not os.path.islink(os.path.join(dirpath, d))]
        here = Path(dirpath)
        labels = {name: slim_label(name) for name in filenames}
        zero_folder = ZERO_SHARD in labels.values()
        for name in sorted(filenames):
            if labels[name]:
                if not (here / name).is_symlink():
                    found.append((here / name, labels[name]))
            elif not zero_folder and any(fnmatch.fnmatchcase(name, p) for p in WEIGHT_PATTERNS):
                has_weights = True
    return found, has_weights


def plan_slim(root: Path | str, paths: Paths, infos: Infos = (), *, clock: Clock = time.time) -> Plan:
    """Plan dropping optimizer / scheduler / RNG / ZeRO optimizer states from checkpoint folders.

    ZeRO optimizer shards hold the fp32 master weights: they go only when another copy of the weights in
    the folder is full precision (an fp32 run's model states, consolidated fp32 weights); under ZeRO-3
    or mixed precision they are the only full-precision copy and stay (``tui.core.zero``). ``kept``
    says, per folder, which copy of the weights stays.
    """
    plan, safety = _new_plan("slim", root, infos, clock)
    root_p = safety.root
    for given in paths:
        located, reason = safety.locate(given)
        shown = safety.rel(located) if located is not None else str(given)
        if located is not None and (not located.is_dir() or located.is_symlink()):
            reason = "is not a folder: slim drops training-state files from checkpoint folders"
        reasons = [reason] if reason else safety.reasons(located, action="slim")
        if reasons:
            plan.refusals.append(Refusal(shown, "; ".join(reasons)))
            continue
        found, _ = _slim_candidates(located)
        shards = [f for f, label in found if label == ZERO_SHARD]
        copies = zero.weight_copies(located, zero.files_under(located), lambda p: scan_pickle_into(p, []))
        if shards and not any(c.full_precision for c in copies):
            plan.kept.append(Refusal(shown, _shards_kept_reason(shards, copies)))
            found = [(f, label) for f, label in found if label != ZERO_SHARD]
        elif held := [c.describe() for c in copies if c.parameters]:
            duplicates = " (the ZeRO optimizer shards duplicate them in fp32 and go)" if shards else ""
            plan.kept.append(Refusal(shown, f"weights stay: {'; '.join(held)}{duplicates}"))
        if not found:
            plan.kept.append(Refusal(shown, "nothing to drop (no optimizer/scheduler/RNG states)"))
        for f, label in found:
            plan.items.append(PlanItem(safety.rel(f), tree_size(f), label, group=shown))
    plan.total_bytes = sum(i.bytes for i in plan.items)
    folders = sorted({i.group for i in plan.items if i.group})
    if plan.items:
        what = ", ".join(dict.fromkeys(sorted(i.what for i in plan.items)))
        plan.summary = (
            f"Slim {plural(len(folders), 'checkpoint')} ({', '.join(folders[:3])}"
            f"{' ...' if len(folders) > 3 else ''}): drop {len(plan.items)} training-state files "
            f"({format_bytes(plan.total_bytes)}: {what}); weights, "
            "config and tokenizer stay, and the folders can no longer resume training."
            + _undo_sentence(root_p)
            + _refusal_sentence(plan.refusals)
        )
    else:
        plan.summary = "Nothing to slim." + _refusal_sentence(plan.refusals)
    return plan


def _shards_kept_reason(shards: list[Path], copies: list[zero.WeightCopy]) -> str:
    size = format_bytes(sum(tree_size(f) for f in shards))
    others = "; ".join(c.describe() for c in copies) if copies else "no other copy of the weights here"
    return (
        f"weights stay in the {len(shards)} ZeRO optimizer shard(s) ({size}), kept: the only full-precision "
        f"(fp32) copy of the weights (besides them: {others}); promote this checkpoint first, then slim"
    )


# --- trash -----------------------------------------------------------------------------------------------


def plan_trash_empty(root: Path | str, ids: Iterable[str] | None = None) -> Plan:
    """Plan removing trash entries for good: every one, or only ``ids`` (an unknown id is refused)."""
    root_p = _root(root)
    plan = Plan("trash-empty", str(root_p))
    try:
        entries = Trash(root_p).list()
    except TrashError as e:
        entries, plan.refusals = [], [Refusal(TRASH_DIR, str(e))]
    if ids is not None:
        wanted = list(dict.fromkeys(ids))
        known = {e.id for e in entries}
        plan.refusals += [Refusal(i, "no such trash entry") for i in wanted if i not in known]
        entries = [e for e in entries if e.id in set(wanted)]
    for entry in [e for e in entries if e.foreign]:  # only what we wrote is ever deleted for good
        plan.refusals.append(Refusal(entry.id, f"is not a trash entry written by ckpt-tui ({entry.problems[0]}): left alone"))
    for entry in [e for e in entries if not e.foreign]:
        what = f"{entry.what} (deleted {entry.deleted_at or '?'})"
        plan.items.append(PlanItem(entry.id, tree_size(root_p / TRASH_DIR / entry.id), what))
    if ids is None:  # the empty entries of deletes killed half-way: nothing of the user's in them
        plan.items += [PlanItem(i, 0, "empty entry of an interrupted delete") for i in Trash(root_p).debris()]
    plan.total_bytes = sum(i.bytes for i in plan.items)
    n = len(plan.items)
    plan.summary = (
        f"Permanently delete {n} trash entr{'ies' if n != 1 else 'y'} in {root_p.name}/{TRASH_DIR}/ "
        f"({format_bytes(plan.total_bytes)} come back). This cannot be undone."
        if n
        else "The trash is empty." if ids is None and not plan.refusals else "Nothing to delete from the trash."
    ) + _refusal_sentence(plan.refusals)
    return plan


# --- execute ---------------------------------------------------------------------------------------------


def execute(plan: Plan, *, infos: Iterable[CheckpointInfo] | None = None, origin: str | None = None) -> Result:
    """Carry out ``plan``: the only function here that changes the disk. Every item is re-checked first;
    an item that became unsafe since planning is refused and the rest still run. ``origin`` ("app" /
    "cli") is recorded in the trash entries, so the trash can say who deleted what."""
    root = _root(plan.root)
    result = Result(plan.action, str(root))
    safety = Safety(root, plan.infos if infos is None else list(infos), clock=plan.clock)
    trash = Trash(root)
    if plan.action in ("delete", "prune"):
        _execute_delete(plan, safety, trash, result, origin)
    elif plan.action == "slim":
        _execute_slim(plan, safety, trash, result, origin)
    elif plan.action == "trash-empty":
        for item in plan.items:
            try:
                result.bytes += trash.remove(item.path)
                result.done.append(item)
            except (TrashError, OSError) as e:
                result.errors.append(f"{TRASH_DIR}/{item.path}: {e}")
    else:
        raise ValueError(f"unknown plan action {plan.action!r}")
    result.summary = _result_summary(result)
    return result


def _execute_delete(plan: Plan, safety: Safety, trash: Trash, result: Result, origin: str | None) -> None:
    batch: str | None = None
    for item in plan.items:
        if reasons := safety.reasons(item.path):
            result.refused.append(Refusal(item.path, "; ".join(reasons)))
            continue
        try:
            entry = trash.move(item.path, batch=batch, action=plan.action, origin=origin)
        except (TrashError, OSError) as e:
            result.errors.append(str(e))
            continue
        batch = batch or entry.id
        result.trash_ids.append(entry.id)
        result.bytes += entry.size_bytes
        result.done.append(item)


def _execute_slim(plan: Plan, safety: Safety, trash: Trash, result: Result, origin: str | None) -> None:
    batch: str | None = None
    by_folder: dict[str, list[PlanItem]] = {}
    for item in plan.items:
        by_folder.setdefault(item.group or str(Path(item.path).parent.as_posix()), []).append(item)
    for folder_rel, items in by_folder.items():
        folder = safety.root / folder_rel
        if reasons := safety.reasons(folder_rel, action="slim"):
            result.refused.extend(Refusal(i.path, "; ".join(reasons)) for i in items)
            continue
        present = [i for i in items if os.path.lexists(safety.root / i.path)]
        result.errors.extend(f"{i.path}: no longer exists" for i in items if i not in present)
        if not present:
            continue
        files = [Path(i.path).relative_to(Path(folder_rel)).as_posix() for i in present]
        try:
            manifest = read_manifest(folder)
        except ManifestError:
            manifest = None  # an invalid manifest is left as it is: it was already not trusted
        try:
            entry = trash.move_files(
                folder_rel,
                files + ([MANIFEST_NAME] if manifest else []),
                batch=batch,
                action="slim",
                origin=origin,
            )
        except (TrashError, OSError) as e:
            result.errors.append(str(e))
            continue
        if manifest:
            _write_slimmed_manifest(folder, manifest, files, entry.id)
        batch = batch or entry.id
        result.trash_ids.append(entry.id)
        result.bytes += sum(i.bytes for i in present)
        result.done.extend(present)


def _write_slimmed_manifest(folder: Path, manifest: dict, dropped: list[str], trash_id: str) -> None:
    """The folder stays a complete committed checkpoint of what is left; ``slimmed`` says what went and
    tells a resuming trainer that the optimizer state is gone. The original manifest is in the trash
    entry, and restore puts it back."""
    new = dict(manifest)
    new["files"] = {k: v for k, v in manifest["files"].items() if k not in set(dropped)}
    new["slimmed"] = {
        "at": utc_now(),
        "dropped": sorted(dropped),
        "trash_id": trash_id,
    }
    write_json_atomic(folder / MANIFEST_NAME, new)


def _result_summary(result: Result) -> str:
    n = len(result.done)
    if result.action == "trash-empty":
        text = f"Emptied {n} trash entr{'ies' if n != 1 else 'y'}: {format_bytes(result.bytes)} freed."
    elif result.action == "undo":
        text = (
            f"Restored {_names(result.done, words=True)} ({format_bytes(result.bytes)}) from the trash."
            if n
            else "Restored nothing from the trash."
        )
    else:
        verb = {"slim": "Slimmed", "prune": "Pruned", "delete": "Deleted"}[result.action]
        text = f"{verb} {plural(n, 'item')} ({format_bytes(result.bytes)} moved to the trash)."
        if result.trash_ids:
            text += f" Undo: `u` in the app or `ckpt-tui trash restore {result.trash_ids[0]}`."
    if result.refused:
        text += f" Refused at execution: {result.refused[0].path} {result.refused[0].reason}."
    if result.errors:
        text += f" Errors: {result.errors[0]}" + (
            f" (+{len(result.errors) - 1} more)" if len(result.errors) > 1 else ""
        )
    return text


# --- undo / restore --------------------------------------------------------------------------------------


def restore(root: Path | str, entry_id: str) -> Result:
    """Put one trash entry back where it was (refused when that place is occupied again)."""
    root_p = _root(root)
    return _restore_into(Result("undo", str(root_p)), Trash(root_p), [entry_id])


def undo_last(root: Path | str) -> Result:
    """Restore the newest action: every trash entry of the newest entry's batch."""
    root_p = _root(root)
    trash, result = Trash(root_p), Result("undo", str(root_p))
    try:
        entries = [e for e in trash.list() if not e.foreign]  # what we did not write is not ours to undo
    except TrashError as e:
        entries, result.errors = [], [str(e)]
    if not entries and not result.errors:
        result.errors.append(f"the trash under {root_p} is empty: nothing to undo")
    batch = entries[-1].batch if entries else None
    return _restore_into(result, trash, [e.id for e in reversed(entries) if e.batch == batch])


def _restore_into(result: Result, trash: Trash, entry_ids: list[str]) -> Result:
    for entry_id in entry_ids:
        try:
            entry = trash.restore(entry_id)
        except (TrashError, OSError) as e:
            result.errors.append(str(e))
            continue
        result.done.append(PlanItem(entry.original_path, entry.size_bytes, entry.what))
        result.trash_ids.append(entry.id)
        result.bytes += entry.size_bytes
    result.summary = _result_summary(result)
    return result
