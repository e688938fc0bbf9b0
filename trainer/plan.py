"""Everything checked before a process group or a model exists: the run's inputs and its folder.

Every launched process runs these checks; they read files only, so a bad path or a config clash costs
about a second and one line on stderr, not a distributed traceback.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from trainer import demo
from trainer.config import Config
from trainer.data import Table, load_and_validate, validate
from trainer.folds import FOLDS_FILE, read_folds
from trainer.modeling import check_compile_backend, check_model_dir
from trainer.outputs import RunFolderError, check_run_folder
from tui.core.files import json_object
from tui.core.names import LOCK_FILE
from tui.core.process import pid_alive


@dataclass
class RunPlan:
    """What a launch will do, decided before any process group exists."""

    table: Table
    data_path: Path
    model_dir: Path
    mode: str  # "new" | "resume" | "overwrite"


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
    if mode in ("resume", "overwrite"):  # never continue or delete a run a live trainer is writing
        _check_not_owned(run_dir)
    if mode == "resume":
        if (run_dir / FOLDS_FILE).exists():
            read_folds(run_dir / FOLDS_FILE, len(table.frame), cfg.folds.num_folds)
    return RunPlan(table=table, data_path=data_path, model_dir=model_dir, mode=mode)


def _check_not_owned(run_dir: Path) -> None:
    """Refuse a run another live trainer on this host holds; a lock left by a killed one is stale."""
    lock = json_object(run_dir / LOCK_FILE) or {}
    try:
        pid, host = int(lock["pid"]), lock["host"]
    except (ValueError, KeyError, TypeError, OverflowError):
        return
    if host != socket.gethostname() or pid == os.getpid():
        return
    if not pid_alive(pid):
        return
    raise RunFolderError(
        f"{run_dir}: in use by process {pid} on {host} ({LOCK_FILE}); wait for it or stop it"
    )
