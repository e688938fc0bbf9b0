"""The GPU lane: every test here is marked ``gpu`` (``pytestmark`` of each module) and skipped, with the reason, where no CUDA GPU is visible.

The default run (``pytest``) deselects the lane (``-m "not gpu"`` in pyproject's addopts); ``pytest -m gpu``
selects it, and ``bench/gpu_check.sh`` runs it after its own jobs. ``CKPT_TUI_GPU_LANE_ON_CPU=1`` rehearses
it on CPU processes (tests/gpu/lane.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gpu import lane

HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    mine = [item for item in items if Path(str(item.fspath)).parent == HERE]
    if not mine:
        return
    reason = None
    if not lane.rehearsal() and lane.gpu_count() == 0:
        reason = (
            "needs an NVIDIA GPU (torch.cuda.is_available() is False here); run `pytest -m gpu` or "
            f"bench/gpu_check.sh on a GPU machine, or rehearse on CPU with {lane.REHEARSAL_ENV}=1"
        )
    for item in mine:
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))
