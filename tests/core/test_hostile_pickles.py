"""The hostile pickle corpus (tests/fixtures/hostile_pickles.py): the scanner flags every file, never runs
anything, and wherever ``torch.load(weights_only=False)`` really runs the payload (measured in a child process
with a canary file per entry) the verdict is not "clean"."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.fixtures.hostile_pickles import build_corpus
from tui.core.pickle_scan import scan_pickle

LOADER = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
import torch
for path in sys.argv[1:]:
    try:
        torch.load(path, weights_only=False)
    except BaseException:
        pass
time.sleep(0.5)  # Popen payloads run in a child of their own
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def verdicts(corpus):
    return {h.name: scan_pickle(h.path) for h in corpus}


def test_corpus_is_big_enough_and_every_file_is_flagged(corpus, verdicts):
    assert len(corpus) >= 40
    wrong = {h.name: (verdicts[h.name].verdict, verdicts[h.name].problems[:2]) for h in corpus
             if verdicts[h.name].verdict != h.expect}  # fmt: skip
    assert wrong == {}
    assert all(verdicts[h.name].problems for h in corpus)  # each says why
    assert not any(h.canary.exists() for h in corpus)  # the scan ran nothing


def test_wherever_torch_runs_the_payload_the_scan_was_not_clean(corpus, verdicts, tmp_path):
    pytest.importorskip("torch")
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, *(str(h.path) for h in corpus)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    ran = [h for h in corpus if h.canary.exists()]
    # The corpus is meant to run: if torch stopped running most of it, the test proves little.
    assert len(ran) >= 60, json.dumps([h.name for h in corpus if h not in ran])
    assert [h.name for h in ran if verdicts[h.name].verdict == "clean"] == []
    for h in ran:
        assert verdicts[h.name].verdict == h.expect, h.name


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("zip_reexported_popen.pt", "subprocess_handler.subprocess_handler.Popen"),
        ("p4_timer_from_benchmark.pt", "torch.utils.benchmark.Timer.timeit"),
        ("legacy_evil_storage_keys.pt", "os.system"),
        ("tar_evil_storages.pt", "os.system"),
        ("zip_bad_crc.pt", "CRC mismatch"),
        ("zip_duplicate_name_evil_last.pt", "os.system"),
        ("p0_reduce_py2_builtin_open.pth", "builtins.open"),
        ("p0_py2_commands_getoutput.pt", "subprocess.getoutput"),
        ("truncated_after_payload.pt", "os.system"),
        ("opcode_limit_then_payload.pt", "stopped at a limit"),
    ],
)
def test_problem_names_what_was_found(verdicts, name, fragment):
    assert any(fragment in p for p in verdicts[name].problems), verdicts[name].problems


def test_an_inconsistent_zip_is_not_verified_and_still_judged(tmp_path):
    from tests.fixtures.hostile_pickles import torch_zip

    evil = b"\x80\x02cos\nsystem\n(S'true'\ntR."
    data = bytearray(torch_zip(evil))
    at = data.index(b"archive/data.pkl")  # the first copy of the name: the local header's
    data[at : at + 7] = b"archivX"
    path = tmp_path / "x.pt"
    path.write_bytes(bytes(data))
    r = scan_pickle(path)
    assert r.verdict == "unsafe" and any("local header names it" in p for p in r.problems)
    # prepended bytes: zipfile shifts the offsets, torch (which needs PK\x03\x04 first) would not
    clean = torch_zip(b"\x80\x02}q\x00.")
    path.write_bytes(clean[:30] + b"\x00" * 64 + clean)
    r = scan_pickle(path)
    assert r.verdict == "not verified"


def test_a_small_file_read_whole_gives_the_report_of_the_open_file(corpus, tmp_path, monkeypatch):
    """Files up to WHOLE_FILE_BYTES are scanned from one read: every report is the one read record by
    record from the file (zip, legacy, tar, truncated, not a pickle)."""
    from tests.fixtures import synthetic as s
    from tui.core.pickle_scan import formats

    extra = [tmp_path / n for n in ("ok.pt", "lightning.ckpt", "cut.pt", "plain.pkl", "junk.bin")]
    s.write_torch_zip(extra[0], {"w": list(range(10))})
    s.write_lightning_ckpt(extra[1])
    s.write_torch_zip(extra[2], {"w": list(range(100))})
    extra[2].write_bytes(extra[2].read_bytes()[:300])
    extra[3].write_bytes(b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s.")
    extra[4].write_bytes(bytes(range(256)))
    paths = [h.path for h in corpus] + extra
    assert sum(p.stat().st_size <= formats.WHOLE_FILE_BYTES for p in paths) >= 40  # mostly read whole
    whole = [scan_pickle(p).to_json() for p in paths]
    monkeypatch.setattr(formats, "WHOLE_FILE_BYTES", 0)
    assert [scan_pickle(p).to_json() for p in paths] == whole
    assert [w["verdict"] for w in whole[-5:]] == ["clean", "clean", "not verified", "clean", "not verified"], whole[-5:]
    assert whole[-4]["lightning"]
