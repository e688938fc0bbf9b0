"""The summary cache: a hit only while every file a reader read is unchanged; every way a file changes is
a miss; concurrent writers, corrupt files and a disabled cache never change an answer or crash."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from tests.fixtures import synthetic as syn
from tui.cli import main as cli_main
from tui.core import cache, cache_files, pickle_scan, scan
from tui.core import safetensors_header as sh

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def trusted_now(monkeypatch):
    """Files written by the test are seconds old; let the cache store them (the racy rule has its own test)."""
    monkeypatch.setattr(cache, "RACY_SECONDS", -1.0)


@pytest.fixture
def header_reads(monkeypatch):
    calls: list[str] = []
    real = sh.read_header

    def counting(path, **kw):
        calls.append(os.path.basename(os.fspath(path)))
        return real(path, **kw)

    monkeypatch.setattr("tui.core.weights.read_header", counting)
    return calls


def _tree(root: Path) -> Path:
    syn.write_hf_model(root / "run" / "model_fold_0")
    syn.write_hf_checkpoint(root / "out" / "checkpoint-2", 2, best_model_checkpoint="checkpoint-2", best_metric=0.5)
    syn.write_safetensors(root / "loose.safetensors", syn.tiny_bert_tensors())
    return root


def _fresh_process_scan(root: Path) -> list[dict]:
    """A scan as a new command runs it: the in-memory view dropped, the cache files read back."""
    cache.shared().flush()
    cache.configure()
    return [i.to_json() for i in scan.scan(root)]


def _truth(root: Path) -> list[dict]:
    previous = cache.shared()
    cache.configure(enabled=False)
    try:
        return [i.to_json() for i in scan.scan(root)]
    finally:
        cache.configure(directory=previous.directory) if previous.directory else cache.configure()


def _strip_mtime(infos: list[dict]) -> list[dict]:
    return [{k: v for k, v in i.items() if k != "mtime"} for i in infos]


def test_a_repeat_scan_reads_no_header(tmp_path, trusted_now, header_reads, private_cache):
    root = _tree(tmp_path / "t")
    first = _fresh_process_scan(root)
    assert len(header_reads) == 3
    header_reads.clear()
    second = _fresh_process_scan(root)
    assert header_reads == [] and second == first
    assert list(private_cache.rglob("*.cache"))  # on disk, under XDG_CACHE_HOME
    assert cache.shared().hits > 0


def _touch(p: Path) -> None:
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def _truncate(p: Path) -> None:
    os.truncate(p, p.stat().st_size - 4)


def _replace_by_rename(p: Path) -> None:
    """Same bytes, same size, same mtime, new inode: what an atomic re-save of identical bytes looks like."""
    tmp = p.with_name(p.name + ".new")
    shutil.copy2(p, tmp)
    os.replace(tmp, p)


def _rewrite_in_place_same_size_and_mtime(p: Path) -> None:
    """Different bytes, same size, same mtime, same inode: only ctime tells."""
    st = p.stat()
    raw = bytearray(p.read_bytes())
    raw[8:10] = b"[1"  # the header no longer parses as an object
    with open(p, "r+b") as f:
        f.write(raw)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert p.stat().st_size == st.st_size and p.stat().st_mtime_ns == st.st_mtime_ns


@pytest.mark.parametrize(
    "change", [_touch, _truncate, _replace_by_rename, _rewrite_in_place_same_size_and_mtime], ids=lambda f: f.__name__
)
def test_every_key_invalidates(tmp_path, trusted_now, header_reads, change):
    root = _tree(tmp_path / "t")
    weights = root / "run" / "model_fold_0" / "model.safetensors"
    _fresh_process_scan(root)
    header_reads.clear()
    time.sleep(0.01)  # a later ctime on filesystems with coarse timestamps
    change(weights)
    after = _fresh_process_scan(root)
    assert header_reads == ["model.safetensors"]  # that file read again, the others from the cache
    assert _strip_mtime(after) == _strip_mtime(_truth(root))
    fold = next(i for i in after if i["path"] == "run/model_fold_0")
    if change in (_truncate, _rewrite_in_place_same_size_and_mtime):
        assert not fold["complete"]


def test_new_and_removed_files_change_the_key(tmp_path, trusted_now):
    root = _tree(tmp_path / "t")
    _fresh_process_scan(root)
    folder = root / "run" / "model_fold_0"
    syn.write_safetensors(folder / "model-00001-of-00002.safetensors", {"x": ("F32", (2,))})
    assert _strip_mtime(_fresh_process_scan(root)) == _strip_mtime(_truth(root))
    (folder / "model-00001-of-00002.safetensors").unlink()
    (folder / "config.json").unlink()
    assert _strip_mtime(_fresh_process_scan(root)) == _strip_mtime(_truth(root))


def test_loose_files_of_one_folder_keep_their_own_entries(tmp_path, trusted_now, header_reads, monkeypatch):
    pickles: list[str] = []
    real = pickle_scan.scan_pickle  # integrity imports it when a pickle is met
    monkeypatch.setattr(pickle_scan, "scan_pickle", lambda p: pickles.append(p.name) or real(p))
    for name in ("a", "b"):
        syn.write_torch_zip(tmp_path / f"{name}.pt")
        syn.write_safetensors(tmp_path / f"{name}.safetensors", {"e": ("F32", (2, 2))})
    first = _fresh_process_scan(tmp_path)
    assert sorted(pickles) == ["a.pt", "b.pt"] and sorted(header_reads) == ["a.safetensors", "b.safetensors"]
    pickles.clear()
    header_reads.clear()
    assert _fresh_process_scan(tmp_path) == first and pickles == [] and header_reads == []


def test_racy_entries_are_used_once_in_memory_and_never_written(tmp_path, header_reads, private_cache):
    root = _tree(tmp_path / "t")  # just written: every key is racy
    scan.scan(root)
    scan.scan(root)
    assert len(header_reads) == 3  # the second scan, same process, within the racy window: from memory
    cache.shared().flush()
    assert not list(private_cache.rglob("*.cache"))


def test_corrupt_cache_files_are_ignored_and_rewritten(tmp_path, trusted_now, header_reads, private_cache):
    root = _tree(tmp_path / "t")
    good = _fresh_process_scan(root)
    cache.shared().flush()
    files = sorted(private_cache.rglob("*.cache"))
    assert files
    damage = [
        lambda raw: raw[: len(raw) // 2],  # torn
        lambda raw: raw[:-9] + bytes([raw[-9] ^ 1]) + raw[-8:],  # edited: the CRC no longer matches
        lambda raw: b"",
        lambda raw: b"\x00\xff" * 100,
        lambda raw: raw.split(b"\n", 1)[0] + b"\n" + b"not json at all",
    ]
    intact = {f: f.read_bytes() for f in files}  # the scan's one file (the pack of the root)
    for harm in [*damage, None]:
        for f, raw in intact.items():
            if harm is None:  # a FIFO where a cache file should be: never blocks, replaced on write
                f.unlink()
                os.mkfifo(f)
            else:
                f.write_bytes(harm(raw))
        header_reads.clear()
        assert _fresh_process_scan(root) == good
        assert len(header_reads) == 3
        header_reads.clear()
        assert _fresh_process_scan(root) == good
        assert header_reads == []  # rewritten intact


def _resign(path: Path, form: str, old: str, new: str) -> None:
    """Put ``new`` where the file names ``old`` and write a valid CRC: intact, but about something else."""
    body = path.read_bytes().split(b"\n", 1)[1]
    packed = form == cache.PACK_FORMAT
    body = zlib.decompress(body) if packed else body
    body = body.replace(json.dumps(old).encode(), json.dumps(new).encode(), 1)
    body = zlib.compress(body) if packed else body
    path.write_bytes(f"{form} {zlib.crc32(body):08x}\n".encode() + body)


def test_forged_entry_with_valid_crc_for_another_folder_is_not_used(tmp_path, trusted_now, private_cache):
    root = _tree(tmp_path / "t")
    _fresh_process_scan(root)
    cache.shared().flush()
    directory = str(private_cache / "ckpt-tui" / "v1")
    pack = Path(cache.SummaryCache(directory).file_for(str(root), cache._PACK))
    _resign(pack, cache.PACK_FORMAT, str(root), str(root) + "x")  # the scan's one file, another root's
    assert cache._decode_pack(pack.read_bytes(), str(root) + "x", str(root) + "x") is not None
    assert cache.SummaryCache(directory)._load_pack(str(root), str(root)) is None

    folder = str(root / "run" / "model_fold_0")  # a folder's own file (what inspect writes)
    writer = cache.SummaryCache(directory)
    writer.put("r/1", folder, [["config.json", None]], "1")
    writer.flush()
    path = Path(writer.file_for(folder))
    _resign(path, cache.FORMAT, folder, folder + "x")
    assert cache._decode_bucket(path.read_bytes(), folder + "x")  # intact, but another folder's
    assert cache.SummaryCache(directory)._load(folder).entries == {}


def test_disabled_by_env_and_by_flag(tmp_path, trusted_now, private_cache, monkeypatch, capsys):
    root = _tree(tmp_path / "t")
    monkeypatch.setenv(cache.ENV_DISABLE, "1")
    cache.configure()
    scan.scan(root)
    cache.shared().flush()
    assert not list(private_cache.rglob("*.cache"))
    monkeypatch.delenv(cache.ENV_DISABLE)
    cache.configure()
    assert cli_main(["ls", str(root), "--json", "--no-cache"]) == 0
    cache.shared().flush()
    assert not list(private_cache.rglob("*.cache"))
    assert len(json.loads(capsys.readouterr().out)) == 3
    cache.configure()
    assert cli_main(["ls", str(root), "--json"]) == 0
    cache.shared().flush()
    assert list(private_cache.rglob("*.cache"))


def test_an_unwritable_cache_directory_is_only_slower(tmp_path, trusted_now, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    cache.configure()
    root = _tree(tmp_path / "t")
    assert _strip_mtime(_fresh_process_scan(root)) == _strip_mtime(_truth(root))


def test_sweep_keeps_the_cache_under_its_cap(tmp_path):
    d = tmp_path / "c"
    for i in range(40):
        f = d / f"{i:02d}" / f"{i}.cache"
        f.parent.mkdir(parents=True)
        f.write_bytes(b"x" * 1000)
        os.utime(f, (1000 + i, 1000 + i))
    (d / "00" / "dead.tmp").write_bytes(b"x")
    os.utime(d / "00" / "dead.tmp", (1, 1))
    left = cache.sweep(str(d), 20_000)
    assert left <= 15_000
    kept = sorted(int(p.stem) for p in d.rglob("*.cache"))
    assert kept == list(range(40 - len(kept), 40))  # the most recently used stay
    assert not (d / "00" / "dead.tmp").exists()


WRITER = """
import sys
sys.path.insert(0, sys.argv[2])
from tui.core import cache, integrity, scan
cache.RACY_SECONDS = -1.0
for _ in range(int(sys.argv[3])):
    cache.configure()
    infos = scan.scan(sys.argv[1])
    cache.shared().flush()
print(len(infos))
"""


def test_concurrent_writers_in_processes(tmp_path, trusted_now, private_cache):
    root = tmp_path / "t"
    for k in range(6):
        syn.write_hf_model(root / f"run{k}" / f"model_fold_{k}")
    truth = _strip_mtime(_truth(root))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), str(REPO), "4"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        assert out.strip() == "6"
    files = list(private_cache.rglob("*.cache"))
    assert files and not list(private_cache.rglob("*.tmp"))
    for f in files:  # every file intact: written whole and renamed
        head, body = f.read_bytes().split(b"\n", 1)
        assert int(head.split()[-1], 16) == zlib.crc32(body)
    assert _strip_mtime(_fresh_process_scan(root)) == truth


def test_a_scan_keeps_one_file_for_its_root_that_a_sub_folder_scan_reads(
    tmp_path, trusted_now, header_reads, private_cache
):
    root = _tree(tmp_path / "t")
    first = _fresh_process_scan(root)
    cache.shared().flush()
    assert len(list(private_cache.rglob("*.cache"))) == 1  # one file written, not one per folder
    header_reads.clear()
    cache.configure()
    sub = [i.to_json() for i in scan.scan(root / "run")]  # the root's file serves a sub-folder
    assert header_reads == [] and sub[0]["parameters"] == first[[i["path"] for i in first].index("run/model_fold_0")]["parameters"]


def test_a_pack_over_half_the_cap_is_written_a_file_per_folder(tmp_path, trusted_now, header_reads, private_cache):
    root = _tree(tmp_path / "t")
    _fresh_process_scan(root)
    cache.shared().flush()
    (pack,) = private_cache.rglob("*.cache")
    size = pack.stat().st_size
    pack.unlink()
    cache.configure()
    cache.shared().max_bytes = size * 3 // 2  # half the cap is less than the pack; the cap holds it all
    scan.scan(root)
    cache.shared().flush()
    files = list(private_cache.rglob("*.cache"))
    assert len(files) == 3 and all(f.read_bytes().startswith(cache.FORMAT.encode()) for f in files)
    header_reads.clear()
    assert _fresh_process_scan(root) and header_reads == []


def test_the_scan_keys_the_cache_with_the_stats_of_its_walk(tmp_path, trusted_now, monkeypatch):
    root = _tree(tmp_path / "t")
    asked: list[str] = []
    real = cache.stat_of
    monkeypatch.setattr(cache, "stat_of", lambda p: asked.append(os.path.basename(p)) or real(p))
    first = _fresh_process_scan(root)
    assert "model.safetensors" not in asked and "config.json" not in asked  # the walk stat'ed them
    (root / "run" / "model_fold_0" / "config.json").write_text("{")  # changed: read again, never stale
    after = _fresh_process_scan(root)
    fold = next(i for i in after if i["path"] == "run/model_fold_0")
    assert fold["problems"] and not fold["complete"] and first != after


def test_a_pack_is_compressed_and_a_bomb_is_refused(tmp_path, trusted_now, private_cache, monkeypatch):
    root = _tree(tmp_path / "t")
    _fresh_process_scan(root)
    cache.shared().flush()
    (pack,) = private_cache.rglob("*.cache")
    head, body = pack.read_bytes().split(b"\n", 1)
    assert head.startswith(cache.PACK_FORMAT.encode()) and b'"tensors"' in zlib.decompress(body)
    monkeypatch.setattr(cache_files, "MAX_PACK_TEXT", 100)  # expands past the limit: not used, never a crash
    assert cache.SummaryCache(str(private_cache / "ckpt-tui" / "v1"))._load_pack(str(root), str(root)) is None


def test_a_first_scan_opens_no_cache_file_per_folder(tmp_path, trusted_now, private_cache, monkeypatch):
    """An empty cache directory has no subfolder: no folder's file is tried (a round trip each on NFS).
    A file another process writes later is used once the listing is SUBDIRS_SECONDS old."""
    root = _tree(tmp_path / "t")
    opened: list[str] = []
    real = cache._read_cache_file
    monkeypatch.setattr(cache, "_read_cache_file", lambda path, limit: opened.append(path) or real(path, limit))
    shared = cache.configure()
    folder = str(root / "run" / "model_fold_0")
    scan.scan(root)
    assert shared.file_for(folder) not in opened and opened  # the packs of the root and above were looked for
    other = cache.SummaryCache(shared.directory)  # another process: a file for the folder alone
    other.put("test/1", folder, [], '"theirs"')
    other.flush()
    assert shared._load(folder).entries == {}  # listed moments ago: not looked for yet (a miss, not wrong)
    monkeypatch.setattr(cache, "SUBDIRS_SECONDS", -1.0)
    assert shared._load(folder).entries["test/1"][1] == '"theirs"'


def test_a_pack_built_in_pieces_reads_back_as_one_text(tmp_path, trusted_now, header_reads, private_cache, monkeypatch):
    root = _tree(tmp_path / "t")
    first = _fresh_process_scan(root)
    cache.shared().flush()
    (pack,) = private_cache.rglob("*.cache")
    whole = zlib.decompress(pack.read_bytes().split(b"\n", 1)[1])
    pack.unlink()
    monkeypatch.setattr(cache_files, "PACK_PIECE", 1)  # every folder compressed on its own piece
    cache.configure()
    scan.scan(root)
    cache.shared().flush()
    assert zlib.decompress(pack.read_bytes().split(b"\n", 1)[1]) == whole
    header_reads.clear()
    assert _fresh_process_scan(root) == first and header_reads == []


def _pack_text(private_cache: Path) -> str:
    (pack,) = [f for f in private_cache.rglob("*.cache") if f.read_bytes().startswith(cache.PACK_FORMAT.encode())]
    return zlib.decompress(pack.read_bytes().split(b"\n", 1)[1]).decode()


def test_a_root_with_more_folders_than_the_memory_cap_keeps_that_many_cached(
    tmp_path, trusted_now, header_reads, private_cache, monkeypatch
):
    root = _tree(tmp_path / "t")  # three folders with entries; two fit in memory
    monkeypatch.setattr(cache, "MAX_MEMORY_BUCKETS", 2)
    good = _truth(root)
    for _ in range(3):
        header_reads.clear()
        assert _strip_mtime(_fresh_process_scan(root)) == _strip_mtime(good)
    assert len(header_reads) == 1  # was 3 on every run: the pack lost what the cap made it forget


def test_a_pack_forgets_folders_that_are_gone(tmp_path, trusted_now, private_cache):
    root = _tree(tmp_path / "t")
    _fresh_process_scan(root)
    cache.shared().flush()
    assert '/out/checkpoint-2"' in _pack_text(private_cache)
    shutil.rmtree(root / "out" / "checkpoint-2")  # rotated away by its trainer
    syn.write_hf_model(root / "run" / "model_fold_1")  # and a new one: the pack is written again
    _fresh_process_scan(root)
    cache.shared().flush()
    text = _pack_text(private_cache)
    assert "/out/checkpoint-2" not in text and '/run/model_fold_1"' in text and '/run/model_fold_0"' in text


def test_a_pack_is_read_a_piece_at_a_time_and_a_stream_cut_short_is_refused(
    tmp_path, trusted_now, private_cache, monkeypatch
):
    root = _tree(tmp_path / "t")
    _fresh_process_scan(root)
    cache.shared().flush()
    directory = str(private_cache / "ckpt-tui" / "v1")
    pack = Path(cache.SummaryCache(directory).file_for(str(root), cache._PACK))
    whole = cache.SummaryCache(directory)._load_pack(str(root), str(root))
    monkeypatch.setattr(cache_files, "PACK_READ", 7)  # lines cut across pieces
    assert whole and cache.SummaryCache(directory)._load_pack(str(root), str(root)) == whole
    deflate = zlib.compressobj(1)  # every line, with a valid CRC, in a stream that never ends
    text = zlib.decompress(pack.read_bytes().split(b"\n", 1)[1])
    body = deflate.compress(text) + deflate.flush(zlib.Z_SYNC_FLUSH)
    pack.write_bytes(f"{cache.PACK_FORMAT} {zlib.crc32(body):08x}\n".encode() + body)
    assert cache.SummaryCache(directory)._load_pack(str(root), str(root)) is None
