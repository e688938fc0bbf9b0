"""Fixtures shared by the core tests: torch DCP folders written once per session (two processes take ~15 s)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.subprocess_env import cpu_only

DCP_WRITER = Path(__file__).parents[1] / "fixtures" / "dcp_writer.py"
REPO = Path(__file__).parents[2]


def write_dcp(out: Path, world: int) -> Path:
    """A DCP folder written by ``torch.distributed.checkpoint.save`` in ``world`` processes (tests/fixtures/dcp_writer.py)."""
    env = cpu_only({**os.environ, "PYTHONPATH": str(REPO)})
    proc = subprocess.run(
        [sys.executable, str(DCP_WRITER), str(out), str(world)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def dcp_saved(tmp_path_factory) -> dict[int, Path]:
    """{1: written by one process, 2: by two gloo processes (weights sharded as DTensors)}."""
    pytest.importorskip("torch")
    base = tmp_path_factory.mktemp("dcp")
    return {1: write_dcp(base / "one", 1), 2: write_dcp(base / "two", 2)}
