"""The integrity rules every checkpoint is held to, shared by the scan (``ls``) and ``inspect``.

Each rule becomes a one-line ``problems`` entry and ``complete: false``: truncated safetensors, bad or
oversized header, overlapping offsets (tui.core.weights / safetensors_header), a shard named in an index but
missing, zero-byte weights, invalid config.json, a DeepSpeed ``latest`` naming a tag that does not exist, a
manifest that does not match the files (tui.core.commit.verify), a truncated pickle zip and unsafe pickle
globals (tui.core.pickle_scan), a MindSpore file's wire-format problems (tui.core.mindspore_ckpt, with the
sibling check the scanner runs per folder) and a torch DCP folder's (tui.core.dcp). The scanner adds the
rules that need the walk: a leftover ``.<name>.tmp``/``.<name>.old`` folder and a run checkpoint without
manifest. Nothing here raises on bad input: readers return problems.
"""

from __future__ import annotations

import _thread  # threading's Lock, local and get_ident, without importing threading (~1 ms of every start)
import os
from collections.abc import Callable
from pathlib import Path

from tui.core import cache, commit, summaries, weights
from tui.core.files import is_folder, json_int, read_file
from tui.core.model import CheckpointInfo, Kind
from tui.core.names import (
    CONFIG_FILE,
    DCP_DATA_SUFFIX,
    DCP_METADATA,
    DEEPSPEED_LATEST,
    FOLD_MODEL_KIND,
    MANIFEST_NAME,
    PICKLE_WEIGHT_SHARD,
    PICKLE_WEIGHTS,
    PROMOTED_KIND,
    STEP_CHECKPOINT_KIND,
    TRAIN_STATE,
    TRAINER_STATE,
)
from tui.core.pickle_scan.sniff import is_pickle_file
from tui.core.text import bare_metric_name

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~3 ms of every command's start)
if TYPE_CHECKING:  # the DCP, MindSpore and pickle readers are imported where a file needs them
    from typing import Any

    from tui.core.dcp import DcpReport
    from tui.core.metric import Metric
    from tui.core.mindspore_ckpt import MindSporeReport
    from tui.core.pickle_scan import PickleReport

LATEST_LIMIT = 4096

# The scan's cache of trainer_state.json summaries: folder -> (summary, problems).
TrainerStateCache = Callable[[str], "tuple[dict[str, Any] | None, list[str]]"]


def check_folder(
    info: CheckpointInfo,
    folder: Path,
    files: set[str],
    kind: Kind,
    *,
    trainer_state: TrainerStateCache | None = None,
) -> dict[str, Any] | None:
    """Fill weight numbers, step/epoch/metric and problems of a checkpoint folder; return its manifest.

    ``files`` are posix paths relative to ``folder`` (from the walk, so no listing is repeated).
    ``trainer_state(folder)`` is the scan's cache of trainer_state.json summaries (read once per scan).
    """
    problems: list[str] = []
    top = {f for f in files if "/" not in f}
    scans = PickleScans()  # the weight pickle and ZeRO model states are scanned once, for numbers and verdict
    if kind == "torch-dcp":
        dcp_into(info, read_dcp_cached(folder, top), problems)
    elif kind != "deepspeed":
        weights_into(info, folder, top, problems, listed=True, scans=scans)
    if kind in ("deepspeed", "accelerate-state") and info.parameters is None:
        _model_states_into(info, folder, files, problems, scans)
    if CONFIG_FILE in top:
        problems += summaries.config_summary(folder)[1]
    if kind == "peft-adapter":
        problems += summaries.adapter_config_summary(folder)[1]
    if kind == "deepspeed":
        problems += latest_problems(folder.parent, only_if_names=folder.name)
    if DEEPSPEED_LATEST in top:  # accelerate save_state under DeepSpeed keeps `latest` inside the folder
        problems += latest_problems(folder)
    pickles_into(info, folder, files, problems, scans)
    _state_into(info, folder, top, kind, problems, trainer_state)
    manifest = _manifest_into(info, folder, problems) if MANIFEST_NAME in top else None
    for p in dict.fromkeys(problems):  # same text from two rules once
        info.add_problem(p)
    return manifest


def check_file(info: CheckpointInfo, path: Path) -> None:
    """A loose .safetensors or pickle file: header / static pickle scan numbers and problems."""
    problems: list[str] = []
    if info.kind == "safetensors-file":
        weights_into(info, path.parent, {path.name}, problems, only=[path])
    else:
        report = scan_pickle_into(path, problems)
        info.pickle_scan = worst_verdict(info.pickle_scan, report)
        if report is not None:
            _pickle_numbers_into(info, report)
            if report.lightning:
                info.kind = "lightning"
                _lightning_into(info, report)
    for p in dict.fromkeys(problems):
        info.add_problem(p)


def mindspore_into(info: CheckpointInfo, report: MindSporeReport, problems: list[str]) -> None:
    """A MindSpore file's numbers, step and epoch (``global_step`` / ``step_num`` / ``epoch_num`` it holds; the
    name's epoch stays when both say one) and problems, plus ``problems`` found beside its siblings."""
    if report.format == "mindspore":
        info.tensors, info.parameters, info.dtypes = report.tensors, report.parameters, dict(report.dtypes)
    info.unsupported = report.unsupported
    step = report.scalars.get("global_step", report.scalars.get("step_num"))
    if isinstance(step, int) and step >= 0:
        info.step = step
    epoch = report.scalars.get("epoch_num")
    if info.epoch is None and isinstance(epoch, int) and epoch >= 0:
        info.epoch = float(epoch)
    for p in dict.fromkeys([*report.problems, *problems]):
        info.add_problem(p)


def read_dcp_cached(folder: Path, names: set[str]) -> DcpReport:
    """``read_dcp(folder)``, kept in the summary cache while ``.metadata`` and the ``.distcp`` files among
    ``names`` (the folder's files) are unchanged, none added or removed."""
    from tui.core.dcp import DcpReport, read_dcp

    files = sorted(n for n in names if n == DCP_METADATA or n.endswith(DCP_DATA_SUFFIX))
    return cache.memo(
        "dcp/2",  # 2: the report carries its pickle verdict
        [(folder / n, None) for n in files],
        lambda: read_dcp(folder),
        encode=DcpReport.to_json,
        decode=DcpReport.from_json,
    )


def dcp_into(info: CheckpointInfo, report: DcpReport, problems: list[str]) -> None:
    """A torch DCP folder's numbers (from ``.metadata``) and problems."""
    info.tensors, info.parameters = report.tensors, report.parameters
    info.dtypes = dict(report.dtypes) if report.dtypes is not None else None
    problems += report.problems
    info.pickle_scan = report.verdict


def latest_problems(folder: Path, *, only_if_names: str | None = None) -> list[str]:
    """DeepSpeed's ``latest`` file in ``folder`` must name a tag folder that exists beside it."""
    path = folder / DEEPSPEED_LATEST
    try:
        raw = read_file(path, LATEST_LIMIT)[:LATEST_LIMIT]
    except FileNotFoundError:
        return []
    except OSError as e:
        return [f"latest: unreadable ({e.strerror})"]
    except ValueError as e:
        return [f"latest: {e}"]
    tag = raw.decode("utf-8", "replace").strip()
    if not tag or "/" in tag or tag in (".", ".."):
        return [f"latest: does not name a tag folder ({tag[:60]!r})"]
    if is_folder(folder / tag):
        return []
    if only_if_names is not None and only_if_names == tag:
        return []
    return [f"latest: names {tag!r}, which does not exist here; DeepSpeed resume from this folder will fail"]


def _weight_files(top: set[str]) -> tuple[list[str], str | None, list[str]]:
    """(safetensors files, safetensors index, weight pickles) among a folder's top-level names."""
    index = next((f for f in sorted(top) if f.endswith(".safetensors.index.json")), None)
    tensors = sorted(f for f in top if f.endswith(".safetensors"))
    pickles = sorted(f for f in top if f in PICKLE_WEIGHTS or PICKLE_WEIGHT_SHARD.match(f))
    return tensors, index, pickles


def weights_into(
    info: CheckpointInfo,
    folder: Path,
    top: set[str],
    problems: list[str],
    *,
    only: list[Path] | None = None,
    listed: bool = False,
    scans: PickleScans | None = None,
) -> weights.WeightsSummary | None:
    """Weight numbers of ``info`` from the safetensors headers (or the one weight pickle) among ``top``;
    problems go to ``problems``; returns the safetensors summary when there is one. ``listed``: ``top`` is
    the scan's listing of the folder's regular files, so the summary need not list it again. ``scans``:
    the folder's pickle scans, shared with ``pickles_into``."""
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
            summary = _cached_weights(info, folder, st_files, index, only, top if listed else None)
        except Exception as e:  # the contract is "never raises"; keep the scan alive if it does
            problems.append(f"{folder.name}: weights could not be summarised ({type(e).__name__}: {e})")
        if summary is not None:
            problems += list(summary.problems)
            info.tensors, info.parameters = summary.tensors, summary.parameters
            info.dtypes = dict(summary.dtypes)
    elif pickles:
        scan = scans.into if scans is not None else scan_pickle_into
        report = scan(os.path.join(folder, pickles[0]), problems) if len(pickles) == 1 else None
        if report is not None:
            _pickle_numbers_into(info, report)
    return summary


def _cached_weights(
    info: CheckpointInfo,
    folder: Path,
    st_files: list[str],
    index: str | None,
    only: list[Path] | None,
    listing: set[str] | None = None,
) -> weights.WeightsSummary:
    """The safetensors summary, parsed once per change of the files: keyed by every safetensors file and
    index among the folder's names (a superset of what the summary reads)."""
    if only is not None:  # loose files: one entry per reader and folder, so the reader names them
        paths, how = list(only), "files/" + "/".join(p.name for p in only)
        compute = lambda: weights.summarize_weights(only)  # noqa: E731
    elif info.kind == "accelerate-state" and not index:
        # save_state writes model.safetensors, model_1.safetensors, ... one per prepared model
        paths, how = [os.path.join(folder, f) for f in st_files], "files"
        compute = lambda: weights.summarize_weights(paths)  # noqa: E731
    else:  # weights.py picks the index, model.safetensors or adapter_model.safetensors
        paths, how = [os.path.join(folder, f) for f in sorted([*st_files, *([index] if index else [])])], "folder"
        compute = lambda: weights.summarize_weights(folder, listing=listing)  # noqa: E731
    return cache.memo(
        f"weights/1/{how}",
        [(p, None) for p in paths],
        compute,
        encode=weights.WeightsSummary.to_json,
        decode=lambda d: weights.WeightsSummary(**d),
    )


def _model_states_into(
    info: CheckpointInfo, folder: Path, files: set[str], problems: list[str], scans: PickleScans
) -> None:
    """A DeepSpeed checkpoint's numbers from its model-states file (ZeRO-1/2 keep every parameter there;
    ZeRO-3's are placeholders, which leave the numbers unknown)."""
    from tui.core import zero  # here: only DeepSpeed folders need it

    states = zero.model_states_copy(folder, files, lambda path: scans.into(path, problems))
    if states is not None and states.parameters:
        info.tensors, info.parameters, info.dtypes = states.tensors, states.parameters, states.dtypes


def scan_pickle_into(path: str | os.PathLike, problems: list[str]) -> PickleReport | None:
    """The static pickle scan of ``path``; its problems (each naming the file) go to ``problems``."""
    from tui.core.pickle_scan import scan_pickle

    name = os.path.basename(path)
    try:
        report = cache.memo(f"pickle/4/{name}", [(path, None)], lambda: scan_pickle(path), encode=_pickle_json,
                            decode=_pickle_from_json)  # fmt: skip
    except Exception as e:
        problems.append(f"{name}: pickle scan failed ({type(e).__name__}: {e})")
        return None
    # pickle_scan's problems name the file already, unsafe globals included.
    problems += [p if p.startswith(name) else f"{name}: {p}" for p in report.problems]
    return report


class PickleScans:
    """The pickle scans of one checkpoint folder: a file read for its numbers (the weight pickle, ZeRO
    model states) hands its report and problems on to the verdict of every pickle (``pickles_into``)
    instead of being scanned, or read back from the cache, a second time."""

    def __init__(self) -> None:
        self._done: dict[str, tuple[PickleReport | None, list[str]]] = {}

    def into(self, path: str | os.PathLike, problems: list[str]) -> PickleReport | None:
        """``scan_pickle_into(path, problems)``, once per path."""
        key = os.fspath(path)
        done = self._done.get(key)
        if done is None:
            found: list[str] = []
            done = self._done[key] = (scan_pickle_into(key, found), found)
        problems += done[1]
        return done[0]


_VERDICT_RANK = {None: 0, "clean": 1, "not verified": 2, "unsafe": 3}


def worst_verdict(current: str | None, report: PickleReport | None) -> str | None:
    """The worse of ``current`` and ``report``'s verdict; a scan that failed outright is not verified."""
    verdict = report.verdict if report is not None else "not verified"
    return verdict if _VERDICT_RANK.get(verdict, 2) > _VERDICT_RANK.get(current, 2) else current


def pickles_into(
    info: CheckpointInfo, folder: Path, files: set[str], problems: list[str], scans: PickleScans | None = None
) -> None:
    """Scan the pickle stream of every pickle file in the checkpoint (``files``: paths relative to
    ``folder``, nested ones included): optimizer.pt, scheduler.pt, rng_state*.pth, training_args.bin,
    weight shards, ZeRO states... Only their pickles are read (a zip's data.pkl, never tensor storages),
    each scan is cached per file. ``info.pickle_scan`` becomes the worst verdict; problems name the file."""
    for rel in sorted(files):
        path = os.path.join(folder, rel)
        if not is_pickle_file(rel.rsplit("/", 1)[-1], path):
            continue
        found: list[str] = []
        report = scans.into(path, found) if scans is not None else scan_pickle_into(path, found)
        problems += [p if "/" not in rel else f"{rel.rsplit('/', 1)[0]}/{p}" for p in found]
        info.pickle_scan = worst_verdict(info.pickle_scan, report)


def _metric_of(name: object, value: object, step: object = None) -> Metric | None:
    """``Metric.of``, imported here: a checkpoint without an evaluation never creates the dataclass."""
    from tui.core.metric import Metric

    return Metric.of(name, value, step)


def _pickle_json(report: PickleReport) -> dict[str, Any]:
    """What the scan and inspect use of a report; the per-tensor table (for diffs) is read afresh."""
    return report.to_json(table=False)


def _pickle_from_json(data: dict[str, Any]) -> PickleReport:
    from tui.core.pickle_scan import PickleReport

    return PickleReport(**data)


def _lightning_into(info: CheckpointInfo, report: PickleReport) -> None:
    """A Lightning checkpoint: numbers of its model (``state_dict``; the optimizer state is not the model),
    step / epoch from ``global_step`` / ``epoch`` where the name says none (last.ckpt), and its own score of the
    ModelCheckpoint's monitored metric."""
    if "state_dict" in report.parameters_by_key:
        info.tensors = report.tensors_by_key.get("state_dict", 0)
        info.parameters = report.parameters_by_key["state_dict"]
        dtypes = report.dtypes_by_key.get("state_dict", {})
        info.dtypes = dict(sorted(dtypes.items(), key=lambda kv: (-kv[1], kv[0])))
    state = report.lightning_state or {}
    if isinstance(state.get("global_step"), int) and info.step is None:
        info.step = state["global_step"]
    if isinstance(state.get("epoch"), int) and info.epoch is None:
        info.epoch = float(state["epoch"])
    if state.get("monitor") is not None and state.get("current_score") is not None:
        info.metric = _metric_of(state["monitor"], state["current_score"], info.step)


class LightningBest:
    """The best ``.ckpt`` among ``names`` in ``folder`` (``lightning_best``), decided once, when a Lightning
    file first asks (from any thread: the scan reads files on a pool)."""

    def __init__(self, folder: str, names: list[str]) -> None:
        self.folder, self.names = folder, [n for n in names if n.endswith(".ckpt")]
        self._lock = _thread.allocate_lock()
        self._done = False
        self._best: str | None = None

    def __reduce__(self):  # handed to a forked reader (tui.core.scan_reads): decided there afresh
        return LightningBest, (self.folder, self.names)

    def get(self) -> str | None:
        with self._lock:
            if not self._done:
                self._best, self._done = lightning_best(Path(self.folder), self.names), True
        return self._best


def lightning_best(folder: Path, names: list[str]) -> str | None:
    """The ``.ckpt`` among ``names`` (files of ``folder``) that Lightning's ModelCheckpoint calls best: the
    ``best_model_path`` of the newest checkpoint (highest global_step), matched by its last component in this
    folder only (a copied run keeps old absolute paths; a path elsewhere never decides)."""
    newest: tuple[int, str] | None = None
    for name in names:
        if not name.endswith(".ckpt"):
            continue
        report = scan_pickle_into(folder / name, [])
        state = report.lightning_state if report is not None else None
        if not state or not isinstance(state.get("global_step"), int) or not state.get("best_model_path"):
            continue
        if newest is None or state["global_step"] > newest[0]:
            newest = (state["global_step"], state["best_model_path"])
    if newest is None:
        return None
    best = newest[1].replace("\\", "/").rsplit("/", 1)[-1]
    return best if best in names else None


def _pickle_numbers_into(info: CheckpointInfo, report: PickleReport) -> None:
    info.tensors = report.tensors
    info.parameters = report.parameters
    info.dtypes = dict(report.dtypes) if report.dtypes is not None else None


def _state_into(
    info: CheckpointInfo,
    folder: Path,
    top: set[str],
    kind: Kind,
    problems: list[str],
    trainer_state: TrainerStateCache | None = None,
) -> None:
    """step / epoch / metric from trainer_state.json (HF) or train_state.json (our step folders)."""
    name = TRAINER_STATE if TRAINER_STATE in top else TRAIN_STATE if TRAIN_STATE in top else None
    if name is None:
        return
    if name == TRAINER_STATE and trainer_state is not None:
        state, errs = trainer_state(str(folder))
    else:
        state, errs = summaries.trainer_state_summary(folder, name=name, lean=True)
    problems += errs
    if state is None:
        return
    metric_name = state["metric_name"]
    label = bare_metric_name(metric_name) if metric_name else None
    if name == TRAIN_STATE:
        info.step = state["global_step"] if state["global_step"] is not None else info.step
        info.epoch = float(state["epoch"]) if state["epoch"] is not None else info.epoch
        _own_evaluation_into(info, state, label)
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
    if names_itself and state["best_metric"] is not None:
        info.metric = _metric_of(label, state["best_metric"], state["best_global_step"])
    else:
        _own_evaluation_into(info, state, label)


def _own_evaluation_into(info: CheckpointInfo, state: dict[str, Any], label: str | None) -> None:
    """A resumable checkpoint's metric: its last evaluation at or before its step (the state's
    ``best_metric`` is the best *so far*, another checkpoint's number)."""
    found = summaries.last_evaluation(state["log_history"], state["metric_name"], info.step)
    if found is not None:
        info.metric = _metric_of(label, found[0], found[1])


def _read_manifest(folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        return commit.read_manifest(folder), None
    except commit.ManifestError as e:
        return None, str(e)


def _manifest_into(info: CheckpointInfo, folder: Path, problems: list[str]) -> dict[str, Any] | None:
    manifest, error = cache.memo(
        "manifest/1", [(folder / MANIFEST_NAME, None)], lambda: _read_manifest(folder), decode=tuple
    )
    if error is not None:
        problems.append(error)
        return None
    if manifest is None:
        return None
    problems += commit.verify(folder, manifest=manifest)
    if manifest.get("kind") == PROMOTED_KIND:
        info.promoted = True
    if json_int(manifest.get("step")) is not None:
        info.step = manifest["step"]
    if json_int(manifest.get("fold")) is not None:
        info.fold = manifest["fold"]
    metric = manifest.get("metric")
    # A step-checkpoint manifest without "best_metric" predates it: its "metric" was the best so far,
    # another checkpoint's number; the train_state.json history gave this one its own.
    own = manifest.get("kind") != STEP_CHECKPOINT_KIND or "best_metric" in manifest
    if own and isinstance(metric, dict):
        # A fold model (or an export of one) was evaluated at the step it holds.
        at = metric.get("step", manifest.get("step") if manifest.get("kind") == FOLD_MODEL_KIND else None)
        found = _metric_of(metric.get("name"), metric.get("value"), at)
        if found is not None:
            info.metric = found
    if manifest.get("kind") == FOLD_MODEL_KIND:
        info.best = True  # FORMAT.md: a committed fold folder holds the best model of its fold
    return manifest
