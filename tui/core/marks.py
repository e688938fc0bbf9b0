"""What the folders around a checkpoint say about it, gathered while a scan reads them: the run it belongs
to (``run.json``, who holds the ``.lock``), whether it was promoted (the sources named by ``promoted/*``
manifests) and whether its trainer called it best (the newest ``trainer_state.json`` /
``train_state.json`` beside it).

``scan.py`` walks and classifies; this module judges. The walk and ``scan.describe`` feed it the same
folders, so a checkpoint gets the same marks from either: its best mark is decided by its own folder's
trainer_state and by its parent folder's (the newest of the checkpoints there), nothing else. The walk only
notes which states decide a folder's children (``decide_best``, no file read); they are parsed when a
checkpoint under it is first judged (``mark_best``), by the reader of that checkpoint: on a forked first scan
(``forked``), in the reader process, so the walk never parses a trainer_state.json (~0.1 ms each, 10,000 of them in
a 10,000-checkpoint sweep) and the same state serves that checkpoint's own step and metric.
"""

from __future__ import annotations

import os
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tui.core import summaries
from tui.core.files import load_json
from tui.core.model import CheckpointInfo, Kind
from tui.core.names import (
    CHECKPOINT_N,
    LOCK_FILE,
    MANIFEST_NAME,
    PROMOTED_DIR,
    PROMOTED_KIND,
    STEP_DIR,
    TRAIN_STATE,
    TRAINER_STATE,
    step_dir_name,
)
from tui.core.process import lock_text

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~3 ms of every command's start)
if TYPE_CHECKING:
    from typing import Any


@dataclass
class RunContext:
    """What a run folder (holding run.json) tells the checkpoints under it."""

    rel: str
    lock: str | None = None  # "pid 12 on host-a" when a .lock file is present
    lock_path: str | None = None  # that .lock file


@dataclass
class Marks:
    """The marks found so far in one scan of ``root`` (absolute paths, normalised)."""

    root: str
    promoted_sources: set[str] = field(default_factory=set)
    # folder -> its trainer_state.json summary: the best-of-parent rule, the checkpoint's own step /
    # metric and the names-itself-best rule each need it; read and parsed once per scan (and process).
    trainer_states: dict[str, tuple[dict[str, Any] | None, list[str]]] = field(default_factory=dict)
    # folder -> the states that decide which of its children is best (checkpoint-N, step_N), noted by the
    # walk, parsed by ``best_of`` when first wanted
    deciders: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    # folder -> (whether a trainer_state decided its checkpoint-N children, the children it names best)
    decided: dict[str, tuple[bool, set[str]]] = field(default_factory=dict)

    def trainer_state(
        self, folder: str, name: str = TRAINER_STATE
    ) -> tuple[dict[str, Any] | None, list[str]]:
        key = folder if name == TRAINER_STATE else os.path.join(folder, name)
        if key not in self.trainer_states:
            self.trainer_states[key] = summaries.trainer_state_summary(folder, name=name, lean=True)
        return self.trainer_states[key]

    def enter_run(self, path: str, rel: str, files: Container[str], dirs: Container[str]) -> RunContext:
        """The run folder at ``path``: its lock holder; the checkpoints its promoted/ copies came from."""
        run = RunContext(rel)
        if LOCK_FILE in files:
            run.lock_path = os.path.join(path, LOCK_FILE)
            run.lock = lock_text(run.lock_path)
        if PROMOTED_DIR in dirs:
            self._promoted_from(path, os.path.join(path, PROMOTED_DIR))
        return run

    def _promoted_from(self, run_path: str, promoted: str) -> None:
        try:
            names = os.listdir(promoted)
        except OSError:
            names = []
        for name in names:
            manifest, _ = load_json(Path(promoted) / name / MANIFEST_NAME, limit=64 << 20)
            if (
                isinstance(manifest, dict)
                and manifest.get("kind") == PROMOTED_KIND
                and isinstance(manifest.get("source"), str)
            ):
                source = manifest["source"]
                # FORMAT.md: source is relative; accept it relative to the run or to the root.
                for base in (run_path, self.root):
                    self.promoted_sources.add(os.path.normpath(os.path.join(base, source)))

    def decide_best(self, path: str, files: Container[str], dirs: Iterable[str]) -> None:
        """Note which states decide the best ``checkpoint-N`` child of the folder at ``path`` (its own
        trainer_state and those of its two newest checkpoint-N) and its best ``step_N`` child (our
        resumable checkpoints: the train_state.json of its two newest step_N). Nothing is read here."""
        dirs = list(dirs)
        steps = sorted(((int(m.group(1)), n) for n in dirs if (m := STEP_DIR.match(n))), reverse=True)
        children = sorted(((int(m.group(1)), n) for n in dirs if (m := CHECKPOINT_N.match(n))), reverse=True)
        candidates = [os.path.join(path, n) for _, n in children[:2]]
        if candidates and TRAINER_STATE in files:
            candidates.insert(0, path)
        if candidates or steps:
            self.deciders[os.path.normpath(path)] = (
                candidates,
                [os.path.join(path, n) for _, n in steps[:2]],
            )

    def best_of(self, folder: str) -> tuple[bool, set[str]]:
        """(whether its trainer_states decided, the folders (normal absolute paths) they call best: children of
        ``folder`` but in odd layouts), judged once from what ``decide_best`` noted.

        Each checkpoint's state names the best *so far*; only the newest one (highest global_step, the
        output folder's own trainer_state included) speaks for the run. A step_N's train_state.json names
        the run's best step: the newest step_N speaks, or the one before it when the newest is half-written.
        """
        if folder in self.decided:
            return self.decided[folder]
        candidates, steps = self.deciders.get(folder, ([], []))  # kept: a forked reader may be handed it
        best: set[str] = set()
        for step_folder in steps:
            summary, _ = self.trainer_state(step_folder, TRAIN_STATE)
            if summary is None or summary["global_step"] is None:
                continue
            if summary["best_global_step"] is not None:
                best.add(os.path.normpath(os.path.join(folder, step_dir_name(summary["best_global_step"]))))
            break
        newest: tuple[int, str | None] | None = None
        for candidate in candidates:
            summary, _ = self.trainer_state(candidate)
            if summary is None or summary["global_step"] is None:
                continue
            if newest is None or summary["global_step"] > newest[0]:
                newest = (summary["global_step"], summary["best_model_checkpoint_resolved"])
        if newest is not None and newest[1] is not None:
            best.add(os.path.normpath(newest[1]))
        self.decided[folder] = (newest is not None, best)
        return self.decided[folder]

    def is_promoted(self, path: str) -> bool:
        """A ``promoted/*`` manifest of a run walked so far names the checkpoint at ``path`` as its source."""
        return os.path.normpath(path) in self.promoted_sources

    def mark_best(self, info: CheckpointInfo, path: str, kind: Kind, files: Container[str]) -> None:
        """Set ``info.best`` of the checkpoint folder at ``path``."""
        if kind not in ("accelerate-state", "hf-checkpoint", "hf-model"):
            return
        abspath = os.path.normpath(path)
        decided, best = self.best_of(os.path.dirname(abspath))
        if kind == "accelerate-state" and abspath in best:
            info.best = True  # our step_N at the fold's best step
        if kind in ("hf-checkpoint", "hf-model"):
            if abspath in best:
                info.best = True
            elif (kind == "hf-model" or not decided) and TRAINER_STATE in files:
                summary, _ = self.trainer_state(path)
                best_path = summary["best_model_checkpoint_resolved"] if summary is not None else None
                info.best = best_path is not None and os.path.normpath(best_path) == abspath
