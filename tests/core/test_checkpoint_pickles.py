"""``ls``/``inspect`` scan the pickle stream of every pickle file a checkpoint holds and report the worst
verdict: a checkpoint whose optimizer.pt (or any other pickle) calls os.system is never complete/clean."""

from __future__ import annotations

import os
import pickle

import pytest

from tests.fixtures import synthetic as s
from tests.fixtures.hostile_pickles import build_corpus
from tui.core.inspect import inspect_path
from tui.core.scan import scan


def _infos(root):
    return {i.path: i for i in scan(root)}


def test_a_clean_checkpoint_reads_clean(tmp_path):
    s.write_hf_checkpoint(tmp_path / "run" / "checkpoint-10", 10)
    info = _infos(tmp_path)["run/checkpoint-10"]
    assert info.complete and info.pickle_scan == "clean", info.problems


@pytest.mark.parametrize(
    "name",
    [
        "optimizer.pt",
        "scheduler.pt",
        "rng_state.pth",
        "rng_state_3.pth",
        "training_args.bin",
        "pytorch_model-00001-of-00002.bin",
        "pytorch_model.bin",  # beside model.safetensors: the weights come from safetensors, it is still scanned
        "scaler.pt",
        "nested/extra_state.pkl",
    ],
)
def test_any_pickle_of_a_checkpoint_calling_os_system_makes_it_unsafe(tmp_path, name):
    folder = tmp_path / "run" / "checkpoint-10"
    s.write_hf_checkpoint(folder, 10)
    marker = tmp_path / "pwned"
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    s.write_evil_pickle(folder / name, marker)
    info = _infos(tmp_path)["run/checkpoint-10"]
    assert not info.complete and info.pickle_scan == "unsafe"
    assert any(p.startswith(name) and "system (would run code" in p for p in info.problems), info.problems
    detail = inspect_path(tmp_path, folder)
    assert not detail.info.complete and detail.info.pickle_scan == "unsafe"
    assert not marker.exists()


def test_every_pickle_calling_os_system_is_reported_once_each(tmp_path):
    folder = tmp_path / "ckpt" / "checkpoint-5"
    s.write_hf_checkpoint(folder, 5)
    names = ["optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"]
    for name in names:
        s.write_evil_pickle(folder / name, tmp_path / "pwned")
    info = _infos(tmp_path)["ckpt/checkpoint-5"]
    flagged = {p.split(":", 1)[0] for p in info.problems if "system" in p}
    assert flagged == set(names)


def test_a_truncated_optimizer_pickle_is_not_verified(tmp_path):
    folder = tmp_path / "run" / "checkpoint-10"
    s.write_hf_checkpoint(folder, 10)
    data = pickle.dumps({"state": {i: list(range(50)) for i in range(50)}}, protocol=2)
    (folder / "optimizer.pt").write_bytes(data[: len(data) // 2])  # a legacy stream cut short
    info = _infos(tmp_path)["run/checkpoint-10"]
    assert info.pickle_scan == "not verified" and not info.complete


def test_a_bin_of_raw_bytes_in_a_checkpoint_is_not_a_pickle(tmp_path):
    folder = tmp_path / "run" / "checkpoint-10"
    s.write_hf_checkpoint(folder, 10)
    (folder / "data.bin").write_bytes(bytes(range(256)) * 4)
    info = _infos(tmp_path)["run/checkpoint-10"]
    assert info.complete and info.pickle_scan == "clean", info.problems


def test_loose_pickles_of_any_name_are_listed_and_judged(tmp_path):
    corpus = build_corpus(tmp_path / "corpus")
    infos = _infos(tmp_path)
    for h in corpus:
        rel = f"corpus/{h.name}"
        assert rel in infos, rel
        assert infos[rel].pickle_scan == h.expect and not infos[rel].complete, rel
    (tmp_path / "notes.txt").write_text("cos\nsystem\n")  # text formats are never sniffed
    (tmp_path / "latest").write_text("global_step10")
    (tmp_path / "data.bin").write_bytes(bytes(range(256)))
    (tmp_path / "README").write_text("Checkpoints of the run.\n")
    found = _infos(tmp_path)
    assert not {"notes.txt", "latest", "data.bin", "README"} & set(found)



@pytest.mark.parametrize("size", [5000, 300_000])
def test_a_payload_behind_a_long_first_string_is_still_found(tmp_path, size):
    """Protocol 1, no PROTO: a long BINSTRING first, then the call. The first 4 KiB alone do not tell."""
    folder = tmp_path / "run" / "checkpoint-10"
    s.write_hf_checkpoint(folder, 10)
    payload = b"T" + size.to_bytes(4, "little") + b"x" * size + b"0" + b"cos\nsystem\n(S'true'\ntR."
    (folder / "training_args.bin").write_bytes(payload)
    (tmp_path / "loose.bin").write_bytes(payload)
    infos = _infos(tmp_path)
    assert infos["run/checkpoint-10"].pickle_scan == "unsafe"
    assert infos["loose.bin"].pickle_scan == "unsafe"


def test_random_bytes_that_start_like_a_long_string_are_not_a_pickle(tmp_path):
    (tmp_path / "data.bin").write_bytes(b"B" + (10**9).to_bytes(4, "little") + bytes(range(256)) * 40)
    assert _infos(tmp_path) == {}


@pytest.mark.parametrize("layout", ["weight-pickle", "zero-states", "accelerate-zero"])
def test_a_pickle_read_for_its_numbers_is_scanned_once(tmp_path, monkeypatch, private_cache, layout):
    """The weight pickle (or the ZeRO model states) gives the numbers and joins the verdict of every
    pickle from one scan: not a second scan, nor a second read of its cache entry."""
    from tui.core import integrity

    if layout == "weight-pickle":
        folder = tmp_path / "model"
        s.write_config(folder)
        s.write_evil_pickle(folder / "pytorch_model.bin", tmp_path / "pwned")
        want = {"pytorch_model.bin"}
    elif layout == "zero-states":
        folder = s.write_deepspeed(tmp_path / "ds", 10, stage=2)
        want = {"mp_rank_00_model_states.pt", "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt",
                "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt"}  # fmt: skip
    else:
        folder = tmp_path / "acc" / "step_5"
        s.write_accelerate_state(folder)
        (folder / "model.safetensors").unlink()
        s.write_deepspeed(folder / "pytorch_model", 5, stage=2, latest=None)
        s.write_evil_pickle(folder / "pytorch_model" / "global_step5" / "mp_rank_00_model_states.pt", tmp_path / "x")
        want = None
    scanned: list[str] = []
    real = integrity.scan_pickle_into
    monkeypatch.setattr(integrity, "scan_pickle_into", lambda p, found: scanned.append(os.fspath(p)) or real(p, found))
    info = _infos(tmp_path)[folder.relative_to(tmp_path).as_posix()]
    assert sorted(scanned) == sorted(set(scanned)) and scanned, scanned
    if want is not None:
        assert {os.path.basename(p) for p in scanned} >= want
    if layout != "zero-states":
        assert info.pickle_scan == "unsafe" and any("system (would run code" in p for p in info.problems)


def test_sniffing_reads_no_more_than_the_scans_limit(monkeypatch):
    """A first string longer than any read leaves the head undecided up to the limit, never past it."""
    from tui.core.pickle_scan import sniff

    asked: list[int] = []
    head = b"T" + (10**9).to_bytes(4, "little")

    def read_head(path, n):
        asked.append(n)
        return head + bytes(n - len(head))

    monkeypatch.setattr(sniff, "MAX_SNIFF_BYTES", 100_000)
    monkeypatch.setattr(sniff, "read_head", read_head)
    assert sniff.looks_like_pickle("big.bin")  # still open at the limit: a pickle, the scan says not verified
    assert asked == [4096, 65536, 100_000]
