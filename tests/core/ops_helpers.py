"""Shared helpers for the trash / safety / actions / promote tests (standard library only)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from tui.core.model import CheckpointInfo

HOUR = 3600.0


def later_clock(seconds: float = HOUR):
    """A clock ``seconds`` ahead, so files written by the test count as quiet (not being written)."""
    return lambda: time.time() + seconds


def age_tree(top: Path, seconds: float = HOUR) -> None:
    """Set every mtime under ``top`` into the past (for code paths that use the real clock)."""
    past = time.time() - seconds
    for dirpath, dirnames, filenames in os.walk(top):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (past, past), follow_symlinks=False)
    os.utime(top, (past, past))


def tree_hashes(top: Path) -> dict[str, str]:
    """posix relative path -> sha256 of every file (links: their target text)."""
    out = {}
    for dirpath, _dirnames, filenames in os.walk(top):
        for name in filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(top).as_posix()
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def write_file(path: Path, data: bytes | str = b"x" * 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def make_checkpoint(folder: Path, *, optimizer: bool = True, weights_bytes: int = 1000) -> Path:
    """A small HF-Trainer-like checkpoint folder."""
    write_file(folder / "config.json", json.dumps({"model_type": "bert"}))
    write_file(folder / "model.safetensors", os.urandom(weights_bytes))
    write_file(folder / "tokenizer.json", "{}")
    if optimizer:
        write_file(folder / "optimizer.pt", os.urandom(500))
        write_file(folder / "scheduler.pt", os.urandom(50))
        write_file(folder / "rng_state.pth", os.urandom(30))
    return folder


def info(path: str, **kw) -> CheckpointInfo:
    kw.setdefault("kind", "hf-checkpoint")
    return CheckpointInfo(path=path, **kw)
