"""Cross-check against MindSpore itself: checkpoints written by ``mindspore.save_checkpoint`` / ``ModelCheckpoint``
and read back by ``mindspore.load_checkpoint`` must be described the same way by tui.core.mindspore_ckpt.

MindSpore is an 800 MB wheel, so it is not a project dependency and CI does not install it; this lane runs
where a Python with MindSpore is named by ``CKPT_TUI_MINDSPORE_PYTHON`` (or when this interpreter has it).
The writer runs in a subprocess (tests/fixtures/mindspore_real_writer.py).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tui.core.mindspore_ckpt import MINDSPORE_TYPES, read_mindspore

WRITER = Path(__file__).parents[1] / "fixtures" / "mindspore_real_writer.py"


def _mindspore_python() -> str | None:
    named = os.environ.get("CKPT_TUI_MINDSPORE_PYTHON")
    if named:
        return named
    return sys.executable if importlib.util.find_spec("mindspore") is not None else None


PYTHON = _mindspore_python()
pytestmark = pytest.mark.skipif(
    PYTHON is None,
    reason="MindSpore is not installed (an 800 MB wheel, not in CI); set CKPT_TUI_MINDSPORE_PYTHON to a "
    "Python that has it to run this cross-check",
)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("mindspore")
    proc = subprocess.run(
        [PYTHON, str(WRITER), str(out)], capture_output=True, text=True, timeout=600, cwd=out
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads(proc.stdout.strip().splitlines()[-1])


def _content(path: Path, slices: list[tuple[int, int]]) -> bytes:
    with open(path, "rb") as f:
        parts = []
        for offset, length in slices:
            f.seek(offset)
            parts.append(f.read(length))
    return b"".join(parts)


def test_every_file_reads_as_mindspore_reads_it(written):
    out, found = written
    assert len(found["files"]) >= 10
    for rel, loaded in found["files"].items():
        path = out / rel
        report = read_mindspore(path, verify_crc=True)
        assert report.format == "mindspore" and report.problems == [] and report.unsupported is None, rel
        ours = {t.name: t for t in report.entries}
        strings = {n: v["string"] for n, v in loaded.items() if "string" in v}
        assert report.strings == strings, rel
        assert set(ours) == set(loaded) - set(strings), rel
        for name, t in ours.items():
            want = loaded[name]
            assert t.dtype == MINDSPORE_TYPES[want["type"]][0], (rel, name)
            assert list(t.shape) == want["shape"], (rel, name)
            assert hashlib.sha256(_content(path, t.slices)).hexdigest() == want["sha256"], (rel, name)
        if rel == "kinds/crc.ckpt":
            assert report.crc is not None and report.crc_ok is True


def test_steps_and_optimizer_state_of_a_trained_run(written):
    out, _ = written
    report = read_mindspore(out / "run" / "fer-5_8.ckpt")
    assert report.scalars["global_step"] == 5 * 8  # 8 batches per epoch
    assert report.tensors == 8 and report.parameters == 16 * 8 + 16 + 4 * 16 + 3 * 16 + 3
    assert {t.name for t in report.entries if t.role == "optimizer"} >= {
        "global_step",
        "learning_rate",
        "beta1_power",
        "moment1.fc1.weight",
        "moment2.fc2.bias",
    }
    best = read_mindspore(out / "run" / "best_model.ckpt")
    assert best.tensor_table() == report.tensor_table() and best.optimizer_tensors == 0


def test_exported_safetensors_hold_what_mindspore_loads(written, tmp_path):
    from tui.core.promote import promote
    from tui.core.safetensors_header import read_header

    out, found = written
    for rel in ("kinds/dtypes.ckpt", "run/fer-5_8.ckpt", "run/best_model.ckpt"):
        source = out / rel
        os.utime(source, (1e9, 1e9))  # promote waits for files modified in the last minute
        target = tmp_path / rel.replace("/", "_")
        result = promote(out, source, target)
        assert result.verified and result.problems == [], rel
        exported = target / "model.safetensors"
        header = read_header(exported)
        data = exported.read_bytes()[8 + header.header_len :]
        loaded = found["files"][rel]
        network = {t.name for t in read_mindspore(source).network()}
        assert set(header.tensors) == network, rel
        for name, entry in header.tensors.items():
            assert (
                entry.dtype == MINDSPORE_TYPES[loaded[name]["type"]][0]
                and list(entry.shape) == loaded[name]["shape"]
            )
            assert hashlib.sha256(data[entry.start : entry.end]).hexdigest() == loaded[name]["sha256"], (
                rel,
                name,
            )
