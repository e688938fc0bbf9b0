"""Crash-safe checkpoints: resumable step checkpoints and the clean HF fold model folder.

Both go through the commit protocol of ``tui.core.commit`` (docs/FORMAT.md): every rank writes into the
one deterministic temp folder, hashes and fsyncs the files it wrote itself (on a multi-node run they sit
in that node's page cache, and only that node can flush them), rank 0 gathers the hashes, renames the
folder into place and writes the manifest last. A kill at any moment leaves the previous committed folder
intact, so resume never picks a half-written one. Which checkpoint to resume is decided by rank 0 alone.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from trainer.disk_guard import (
    DiskGuard,
    committed_bytes,
    need_bytes,
    previous_step_bytes,
    previous_step_bytes_in_run,
    prunable_now,
    write_failure,
    write_point,
)
from trainer.distributed import main_decides
from trainer.layout import check_resumable_here, current_layout, layout_state
from tui.core import commit as protocol
from tui.core.commit import fsync_path as _fsync_file
from tui.core.names import RANDOM_STATES, ZERO_RANK_SHARD, step_dir_name
from tui.core.names import STEP_DIR as _STEP_RE
from tui.core.names import TRAIN_STATE as TRAIN_STATE_NAME
from tui.core.names import TRAINER_STATE as TRAINER_STATE_NAME
from tui.core.summaries import last_evaluation

ADAPTER_DIR = "adapter"
# Above this size save_pretrained writes model-0000i-of-0000n.safetensors + an index (docs/FORMAT.md).
DEFAULT_MAX_SHARD_SIZE = "2GB"
# The files of save_state that one rank writes: its ZeRO partitions and its RNG state (docs/FORMAT.md).
_RANK_FILE_RES = (ZERO_RANK_SHARD, RANDOM_STATES)


def select_to_keep(steps: list[int], best_step: int | None, keep_last: int) -> set[int]:
    """The steps that survive pruning: the newest ``keep_last`` of ``steps`` plus ``best_step``.

    ``best_step`` is protected only when it is one of ``steps`` (a best evaluation between two saves
    has no checkpoint to protect). Never returns a step that is not in ``steps``.
    """
    unique = sorted(set(steps))
    kept = set(unique[-keep_last:]) if keep_last > 0 else set()
    if best_step is not None and best_step in unique:
        kept.add(best_step)
    return kept


def _committed_steps(folder: Path) -> dict[int, Path]:
    """Step folders of this fold that carry a readable step-checkpoint manifest (complete or not)."""
    found: dict[int, Path] = {}
    if not folder.is_dir():
        return found
    for child in folder.iterdir():
        match = _STEP_RE.match(child.name)
        if not match or not child.is_dir():
            continue
        try:
            manifest = protocol.read_manifest(child)
        except protocol.ManifestError:
            continue
        if manifest is not None and manifest.get("kind") == "step-checkpoint":
            found[int(match.group(1))] = child
    return found


def step_manifest_fields(step: int, fold: int, state: dict) -> dict[str, Any]:
    """What a step checkpoint's manifest says besides its files (docs/FORMAT.md): ``metric`` is the
    checkpoint's own last evaluation (at or before ``step``), ``best_metric`` the fold's best so far;
    readers tell this layout from the older one (whose ``metric`` was the best so far) by ``best_metric``,
    which is always written, null before the first evaluation."""
    fields: dict[str, Any] = {"step": step, "fold": fold, "best_step": state.get("best_step")}
    if "epoch" in state:
        fields["epoch"] = state["epoch"]
    name = state.get("metric_name")
    own = last_evaluation(state.get("log_history"), f"eval_{name}" if name else None, step)
    fields["metric"] = {"name": name, "value": own[0], "step": own[1]} if own is not None else None
    best = state.get("best_metric")
    fields["best_metric"] = (
        {"name": name, "value": best, "step": state.get("best_step")} if name and best is not None else None
    )
    return fields


def writer_rank(name: str, world_size: int) -> int:
    """The rank that wrote the ``save_state`` file called ``name``; 0 for the shared ones (model states of
    ZeRO-2, scheduler, sampler...), and for any name this does not recognise."""
    for pattern in _RANK_FILE_RES:
        match = pattern.match(name)
        if match and int(match.group(1)) < world_size:
            return int(match.group(1))
    return 0


def hash_while_flushing(folder: Path, keep: Callable[[Path], bool] | None = None) -> dict[str, str]:
    """sha256 of every file under ``folder`` (those ``keep`` accepts), computed while a second thread
    fsyncs the same files.

    Hashing (CPU, from the page cache) and flushing (disk) overlap instead of adding up; both release the
    GIL. The commit then finds the files clean, so its own fsync costs nothing. Measured in
    bench/bench_checkpoint.py.
    """
    files = sorted(
        p for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink() and (keep is None or keep(p))
    )
    with ThreadPoolExecutor(max_workers=1) as flusher:
        flushed = [flusher.submit(_fsync_file, p) for p in files]
        hashes = {p.relative_to(folder).as_posix(): protocol.sha256_file(p) for p in files}
        for future in flushed:
            future.result()
    return hashes


def _remove_atomically(path: Path) -> None:
    """Rename to our temp name first, so a kill mid-delete leaves a leftover, never a half folder."""
    doomed = protocol.tmp_path_for(path)
    if doomed.exists():
        shutil.rmtree(doomed)
    path.rename(doomed)
    shutil.rmtree(doomed)


class StepCheckpointer:
    """Resumable ``accelerator.save_state`` checkpoints of one fold under ``checkpoints/fold_<k>/``.

    Every method is called by ALL ranks: save_state under DeepSpeed writes each rank's ZeRO shards and
    every rank's RNG state, so a rank that skips it deadlocks the others at the barrier.
    """

    def __init__(
        self, accelerator, run_dir: Path, fold: int, keep_last: int, *,
        guard: DiskGuard | None = None, estimate_bytes: int = 0, batch: tuple[int, int] | None = None,
    ):  # fmt: skip
        """``guard``: rank 0 checks free space before each save (``estimate_bytes``: the size of a first
        checkpoint, before there is a previous one to go by)."""
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1 to be able to resume (got {keep_last})")
        if getattr(accelerator.project_configuration, "automatic_checkpoint_naming", False):
            raise ValueError("StepCheckpointer names its own folders: disable automatic_checkpoint_naming")
        self.accelerator = accelerator
        self.fold = fold
        self.keep_last = keep_last
        self.folder = Path(run_dir) / "checkpoints" / f"fold_{fold}"
        self.guard, self.estimate_bytes = guard, estimate_bytes
        # (batch_size, grad_accum) recorded with each save: a resume on another world size keeps the
        # global batch they make (trainer/universal.py)
        self.batch = batch
        self.messages: list[str] = []  # the one-line notes latest() printed, for callers and tests
        if accelerator.is_main_process:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._clean_leftovers()
        accelerator.wait_for_everyone()

    def _clean_leftovers(self) -> None:
        """Remove temp folders a killed writer of THIS fold left behind, restoring a stranded old one."""
        for child in self.folder.iterdir():
            name = protocol.target_name_of_temp(child.name)
            if name is None or not _STEP_RE.match(name) or not child.is_dir():
                continue
            target = self.folder / name
            killed_between_renames = (
                child.name.endswith(protocol.OLD_MARK) and not target.exists() and not protocol.verify(child)
            )
            if killed_between_renames:
                child.rename(target)  # the previous committed version; the new one never landed
            else:
                shutil.rmtree(child)

    def _say(self, text: str) -> None:
        self.messages.append(text)
        if self.accelerator.is_main_process:
            print(text, file=sys.stderr, flush=True)

    def save(self, step: int, train_state: dict, best_step: int | None) -> Path:
        """Room first (rank 0 decides), then every rank writes; a write that fails on any rank (ENOSPC)
        fails the save on every rank, leaving no temp folder and every committed checkpoint in place."""
        acc = self.accelerator
        target = self.folder / step_dir_name(step)
        tmp = protocol.tmp_path_for(target)
        for note in main_decides(acc, lambda: self._begin(target, step, best_step)):
            self._say(note)
        failure = None
        try:
            write_point("save_state")
            acc.save_state(str(tmp))
        except OSError as e:
            failure = (target.name, e.errno, str(e))
        self._all_ranks_agree(failure, tmp)
        hashes = self._hash_own_files(tmp)
        main_decides(acc, lambda: self._commit(tmp, target, step, train_state, best_step, hashes))
        return target

    def _begin(self, target: Path, step: int, best_step: int | None) -> list[str]:
        """Rank 0: make room for the save (DiskFullError when there is none), then the temp folder."""
        notes = []
        if self.guard is not None:
            committed = _committed_steps(self.folder)
            previous = previous_step_bytes(committed) or previous_step_bytes_in_run(self.folder.parent)
            doomed = prunable_now(committed, step, best_step, self.keep_last)
            removed = self.guard.ensure(
                self.folder, need_bytes(previous, self.estimate_bytes), doomed, remove=_remove_atomically
            )
            notes = [
                f"low disk space: removed {p.name} now (keep_last would after {target.name})" for p in removed
            ]
        protocol.begin(target)
        return notes

    def _all_ranks_agree(self, failure: tuple | None, tmp: Path) -> None:
        """Every rank learns whether any rank's write failed; then all raise, and the temp folder goes."""
        from accelerate.utils import gather_object

        acc = self.accelerator
        failures = [failure] if acc.num_processes == 1 else gather_object([failure])
        failures = [f for f in failures if f]
        if not failures:
            return
        acc.wait_for_everyone()
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        raise write_failure(*failures[0], self.folder)

    def _commit(
        self, tmp: Path, target: Path, step: int, train_state: dict, best_step: int | None, hashes: dict
    ) -> None:
        """Rank 0: train_state.json, the commit, then pruning; a failure removes the temp folder."""
        acc = self.accelerator
        state = {
            "fold": self.fold, "global_step": step, "best_step": best_step, **train_state,
            **layout_state(current_layout(acc)),
            **({"batch_size": self.batch[0], "grad_accum": self.batch[1]} if self.batch else {}),
        }  # fmt: skip
        try:
            write_point("train_state")
            (tmp / TRAIN_STATE_NAME).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
            write_point("commit")
            protocol.commit(
                tmp, target, kind="step-checkpoint", hashes=hashes,
                fields=step_manifest_fields(step, self.fold, state),
            )  # fmt: skip
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)  # a failed commit has put everything back first
            raise write_failure(target.name, e.errno, str(e), self.folder) from None
        self._prune(best_step)

    def _hash_own_files(self, tmp: Path) -> dict[str, str]:
        """Every rank hashes and flushes the files it wrote; rank 0 gets the union (others get {})."""
        from accelerate.utils import gather_object

        acc = self.accelerator
        rank, world = acc.process_index, acc.num_processes
        own = hash_while_flushing(tmp, keep=lambda p: writer_rank(p.name, world) == rank)
        if world == 1:
            return own
        merged: dict[str, str] = {}
        for part in gather_object([own]):
            merged.update(part)
        return merged if acc.is_main_process else {}

    def _prune(self, best_step: int | None) -> None:
        committed = _committed_steps(self.folder)
        keep = select_to_keep(list(committed), best_step, self.keep_last)
        for step, path in sorted(committed.items()):
            if step not in keep:
                _remove_atomically(path)

    def latest(self, *, check_hashes: bool = False) -> tuple[Path, dict] | None:
        """The newest checkpoint that verifies, was not slimmed and whose train_state.json parses, else None.

        Rank 0 looks and decides; every rank gets its answer (and its notes)."""
        found, notes = main_decides(self.accelerator, lambda: self._find_latest(check_hashes))
        for note in notes:
            self._say(note)
        return found

    def _find_latest(self, check_hashes: bool) -> tuple[tuple[Path, dict] | None, list[str]]:
        skipped: list[tuple[str, str]] = []
        candidates = []
        if self.folder.is_dir():
            candidates = sorted(
                (int(m.group(1)), p)
                for p in self.folder.iterdir()
                if (m := _STEP_RE.match(p.name)) and p.is_dir()
            )
        for _step, path in reversed(candidates):
            state, why = _resumable_state(path, check_hashes)
            if why is not None:
                skipped.append((path.name, why))
                continue
            return (path, state), [f"checkpoint {n} {w}; resuming from {path.name}" for n, w in skipped]
        no_left = f"no complete checkpoint left for fold {self.fold}"
        return None, [f"checkpoint {n} {w}; {no_left}" for n, w in skipped]

    def load(self, path: Path) -> dict:
        """Restore model, optimizer, scheduler, scaler and RNG of every rank; returns train_state (as rank 0
        read it)."""
        here = current_layout(self.accelerator)

        def read_and_check() -> tuple[dict | None, str | None]:
            state, problem = _read_train_state(Path(path))
            if not problem:
                check_resumable_here(Path(path), state, here)  # rank 0 decides; every rank raises
            return state, problem

        state, problem = main_decides(self.accelerator, read_and_check)
        if problem:
            raise ValueError(f"{Path(path) / TRAIN_STATE_NAME}: {problem}")
        self.accelerator.load_state(str(path))
        return state


def _resumable_state(path: Path, check_hashes: bool) -> tuple[dict | None, str | None]:
    """(train_state, None) when ``path`` can be resumed from, else (None, why) where ``why`` completes
    the one-line message "checkpoint step_N <why>; ..."."""
    problems = protocol.verify(path, check_hashes=check_hashes)
    if problems:
        return None, f"is incomplete ({'; '.join(problems)})"
    # verify() passed, so the manifest exists and parses. A slimmed one still verifies (its file list was
    # rewritten to what remains) but the optimizer, scheduler and RNG state are gone: loading it would
    # either fail inside load_state or, worse, restart the optimizer from zero and diverge silently.
    if "slimmed" in protocol.read_manifest(path):
        return None, "was slimmed by ckpt-tui slim (no optimizer state left to resume)"
    state, problem = _read_train_state(path)
    if problem:
        return None, f"is incomplete ({problem})"
    return state, None


def _read_train_state(folder: Path) -> tuple[dict | None, str | None]:
    try:
        state = json.loads((folder / TRAIN_STATE_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"{TRAIN_STATE_NAME} missing"
    except (OSError, ValueError, UnicodeDecodeError) as e:
        return None, f"{TRAIN_STATE_NAME} unreadable ({e})"
    if not isinstance(state, dict):
        return None, f"{TRAIN_STATE_NAME} is not a JSON object"
    return state, None


def hf_trainer_state(trainer_state: dict, *, metric: dict, step: int) -> dict:
    """HF Trainer's trainer_state.json schema, with best_model_checkpoint relative ("." = this folder)."""
    state = dict(trainer_state)
    state.setdefault("global_step", step)
    state.setdefault("epoch", None)
    state.setdefault("log_history", [])
    state["best_metric"] = metric.get("value")
    state["best_global_step"] = step
    state["best_model_checkpoint"] = "."
    return state


def save_fold_model(
    accelerator,
    model,
    tokenizer,
    target: Path,
    *,
    trainer_state: dict,
    metric: dict,
    step: int,
    fold: int,
    lora: bool = False,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    guard: DiskGuard | None = None,
    estimate_bytes: int = 0,
) -> None:
    """Write the fold's clean HF folder through the commit protocol. ALL ranks call this.

    ``get_state_dict`` runs on every rank because under ZeRO-3 it is a collective gather; only the main
    process writes, and its failure (a full disk) is raised on every rank. ``metric`` is
    ``{"name": ..., "value": ...}``. ``guard``: free space is checked first against the previous fold
    model x 1.1 (both exist while the new one replaces it), else ``estimate_bytes``.
    """
    target = Path(target)
    state_dict = accelerator.get_state_dict(model)

    def write() -> None:
        if guard is not None:
            guard.ensure(target.parent, need_bytes(committed_bytes(target), estimate_bytes))
        unwrapped = accelerator.unwrap_model(model)
        tmp = protocol.begin(target)
        try:
            write_point("weights")
            weight_hashes = _write_model_folder(tmp, unwrapped, state_dict, tokenizer, lora, max_shard_size)
            state = hf_trainer_state(trainer_state, metric=metric, step=step)
            write_point("trainer_state")
            (tmp / TRAINER_STATE_NAME).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
            write_point("commit")
            protocol.commit(
                tmp,
                target,
                kind="fold-model",
                hashes=weight_hashes,
                fields={"step": step, "fold": fold, "metric": metric},
            )
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)  # a failed commit has put the previous folder back
            raise write_failure(target.name, e.errno, str(e), target.parent) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    main_decides(accelerator, write)


def _write_model_folder(
    tmp: Path, unwrapped, state_dict: dict, tokenizer, lora: bool, max_shard_size
) -> dict[str, str]:
    """config.json, the weights, tokenizer files (and adapter/ for LoRA); returns the weights' sha256."""
    from trainer.weights_io import save_config, write_weights

    if lora:
        from trainer.lora import merged_state_dict, save_adapter

        save_adapter(unwrapped, state_dict, tmp / ADAPTER_DIR)
        model = unwrapped.get_base_model()
        weights = merged_state_dict(unwrapped, state_dict)
    else:
        model, weights = unwrapped, state_dict
    dtype = next((t.dtype for t in weights.values() if t.is_floating_point()), None)
    save_config(model, tmp, dtype)
    hashes = write_weights(model, weights, tmp, max_shard_size)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    return hashes
