"""Everything checked before a process group or a model exists: the run's inputs and its folder.

Every launched process runs these checks; they read files only, so a bad path or a config clash costs
about a second and one line on stderr, not a distributed traceback.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from trainer import demo
from trainer.config import Config
from trainer.data import Table, load_and_validate, validate
from trainer.folds import FOLDS_FILE, read_folds
from trainer.modeling import check_compile_backend, check_model_dir
from trainer.outputs import RunFolderError, check_run_folder
from tui.core.files import json_object
from tui.core.names import LOCK_FILE
from tui.core.process import judge_lock


@dataclass
class RunPlan:
    """What a launch will do, decided before any process group exists."""

    table: Table
    data_path: Path
    model_dir: Path
    mode: str  # "new" | "resume" | "overwrite"
    notices: list[str] = field(default_factory=list)  # one-line notes for the main process to print


def make_plan(cfg: Config) -> RunPlan:
    mode = check_run_folder(cfg)
    data_path, model_dir = demo.demo_paths(Path(cfg.run.output_dir))
    if cfg.data.path is None:
        # The demo frame is generated in memory here; the same rows are written to data_path later.
        table = validate(demo.demo_dataframe(), cfg, data_path)
    else:
        data_path = Path(cfg.data.path)
        table = load_and_validate(cfg, data_path)
    if not cfg.model.is_demo():
        model_dir = Path(cfg.model.model_name_or_path)
        check_model_dir(model_dir)
    check_compile_backend(cfg.train.compile)
    run_dir = cfg.run.run_dir()
    notices = []
    if mode in ("resume", "overwrite"):  # never continue or delete a run a live trainer is writing
        notices = _check_not_owned(run_dir)
    if mode == "resume":
        if (run_dir / FOLDS_FILE).exists():
            read_folds(run_dir / FOLDS_FILE, len(table.frame), cfg.folds.num_folds)
    return RunPlan(table=table, data_path=data_path, model_dir=model_dir, mode=mode, notices=notices)


def _check_not_owned(run_dir: Path) -> list[str]:
    """Refuse a run a live trainer holds, on this host (its pid runs) or another (its heartbeat is
    fresh); a lock left by a dead one is taken over. Returns the one-line notices to print."""
    path = run_dir / LOCK_FILE
    lock = json_object(path)
    if lock is None:
        return []
    try:
        mtime: float | None = path.stat().st_mtime
    except OSError:
        mtime = None
    holder = judge_lock(lock, mtime=mtime, now=time.time(), hostname=socket.gethostname())
    if holder.pid is None:
        return [f"{path}: not a trainer's lock (no pid); ignored"]
    if holder.pid == os.getpid() and holder.host in (None, socket.gethostname()):
        return []
    if holder.live:
        raise RunFolderError(
            f"{run_dir}: in use by process {holder.pid} on {holder.host or socket.gethostname()} "
            f"({LOCK_FILE}: {holder.why}); wait for it or stop it"
        )
    return [f"{run_dir}: taking over a {holder.why}"]
