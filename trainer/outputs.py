"""Run-folder files of docs/FORMAT.md: run.json, .lock, valid_df_fold_<k>.csv, oof.csv, cv.json.

Only the main process calls the writers here. JSON goes through ``write_json_atomic`` and CSVs through a
temp file + rename, so a kill never leaves half a file that a reader (or a resume) would trust.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd

from trainer.config import Config
from tui.core.commit import utc_now, write_json_atomic
from tui.core.files import json_object, read_json_dict
from tui.core.names import CV_FILE, LOCK_FILE, OOF_FILE, RUN_FILE, fold_model_dir_name, valid_df_name
from tui.core.process import HEARTBEAT_S

RUN_FORMAT = "ckpt-tui/run/1"


class RunFolderError(ValueError):
    """The run folder cannot be used as asked; one line."""


def read_run(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / RUN_FILE
    data = read_json_dict(path, RunFolderError, "; use --overwrite or another run.run_name")
    if data is None:
        return None
    if data.get("format") != RUN_FORMAT:
        raise RunFolderError(f"{path}: not a {RUN_FORMAT} file; use --overwrite or another run.run_name")
    return data


def check_run_folder(cfg: Config) -> str:
    """Decide what to do with an existing run folder, before any process group exists.

    Returns "new" (no folder or an empty one), "resume" (same config hash, or --resume) or "overwrite".
    """
    run_dir = cfg.run.run_dir()
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return "new"
    if cfg.run.overwrite:
        return "overwrite"
    run = read_run(run_dir)
    if run is None:
        raise RunFolderError(
            f"{run_dir}: exists but holds no {RUN_FILE}; use --overwrite or another run.run_name"
        )
    if run.get("config_hash") == cfg.config_hash() or cfg.run.resume:
        return "resume"
    raise RunFolderError(
        f"{run_dir}: exists with a different config (hash {str(run.get('config_hash'))[:12]} vs "
        f"{cfg.config_hash()[:12]}); pass --resume to continue it anyway or --overwrite to start again"
    )


def versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("torch", "transformers", "accelerate", "deepspeed", "ckpt-tui"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def new_run_record(
    cfg: Config,
    *,
    world_size: int,
    mixed_precision: str,
    deepspeed_config: dict | None,
    previous: dict[str, Any] | None,
) -> dict[str, Any]:
    """run.json for this invocation; keeps ``folds_done`` and ``started`` of a run being resumed."""
    stamp = utc_now()
    return {
        "format": RUN_FORMAT,
        "run_name": cfg.run.run_name,
        "status": "running",
        "config": cfg.to_dict(),
        "versions": versions(),
        "world_size": world_size,
        "mixed_precision": mixed_precision,
        "deepspeed_config": deepspeed_config,
        "model_name": cfg.model_name(),
        "num_folds": cfg.folds.num_folds,
        "folds_to_train": cfg.folds.to_train(),
        "folds_done": sorted((previous or {}).get("folds_done", [])),
        "fold_stats": dict((previous or {}).get("fold_stats", {})),
        "metric": cfg.train.metric,
        "metric_mode": cfg.train.mode(),
        "config_hash": cfg.config_hash(),
        "started": (previous or {}).get("started", stamp),
        "updated": stamp,
    }


def update_run(run_dir: Path, record: dict[str, Any], **changes: Any) -> dict[str, Any]:
    record.update(changes, updated=utc_now())
    write_json_atomic(Path(run_dir) / RUN_FILE, record)
    return record


def write_lock(run_dir: Path, heartbeat_s: float = HEARTBEAT_S, started: str | None = None) -> None:
    write_json_atomic(
        Path(run_dir) / LOCK_FILE,
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": started or utc_now(),
            "heartbeat": time.time(),
            "heartbeat_s": heartbeat_s,
        },
    )


def remove_lock(run_dir: Path) -> None:
    try:
        (Path(run_dir) / LOCK_FILE).unlink()
    except FileNotFoundError:
        pass


class LockHeartbeat:
    """Hold the run's .lock while training: write it, refresh its heartbeat from a daemon thread (so a
    trainer on another node can tell a live run from one whose node died), remove it at the end.

    If the lock on disk stops naming this process (someone took it over after our heartbeats stopped, a
    suspended job say), refreshing stops with a one-line warning instead of fighting over it.
    """

    def __init__(self, run_dir: Path, heartbeat_s: float = HEARTBEAT_S):
        self.run_dir, self.heartbeat_s = Path(run_dir), heartbeat_s
        self.started = utc_now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True)

    def start(self) -> LockHeartbeat:
        write_lock(self.run_dir, self.heartbeat_s, self.started)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop refreshing and remove the lock (if it is still ours)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._still_ours():
            remove_lock(self.run_dir)

    def __enter__(self) -> LockHeartbeat:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _still_ours(self) -> bool:
        lock = json_object(self.run_dir / LOCK_FILE) or {}
        return lock.get("pid") == os.getpid() and lock.get("host") == socket.gethostname()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            if not self._still_ours():
                print(
                    f"warning: {self.run_dir / LOCK_FILE} no longer names this process; "
                    "another trainer may be writing this run",
                    file=sys.stderr,
                    flush=True,
                )
                return
            try:
                write_lock(self.run_dir, self.heartbeat_s, self.started)
            except OSError as e:  # a full or flaky filesystem must not kill the training
                print(f"warning: cannot refresh {self.run_dir / LOCK_FILE} ({e})", file=sys.stderr, flush=True)


def write_csv_atomic(path: Path, frame: pd.DataFrame) -> None:
    """A kill leaves the previous file (or none) or the whole new one, never half a CSV."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        frame.to_csv(f, index=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def valid_df_path(run_dir: Path, fold: int) -> Path:
    return Path(run_dir) / valid_df_name(fold)


def fold_model_dir(run_dir: Path, cfg: Config, fold: int) -> Path:
    return Path(run_dir) / fold_model_dir_name(cfg.model_name(), fold)


def write_cv(run_dir: Path, cv: dict[str, Any], oof: pd.DataFrame) -> None:
    write_csv_atomic(Path(run_dir) / OOF_FILE, oof)
    write_json_atomic(Path(run_dir) / CV_FILE, cv)
