"""The scanner's own zip directory reader (pickle_scan.zipdir) and the replay shared between files of the
same pickle bytes: both only make the scan cheaper. Every report is the same as the one zipfile and a fresh
replay give: over the hostile corpus, torch.save files and odd archives."""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib

import pytest

from tests.fixtures.hostile_pickles import bad_crc, build_corpus, torch_zip
from tests.fixtures.readers import torch_like_zip
from tui.core.pickle_scan import formats, scan_pickle, zipdir
from tui.core.pickle_scan.bounded import Bounded

FIELDS = ("filename", "orig_filename", "header_offset", "file_size", "compress_size", "compress_type", "CRC",
          "flag_bits")  # fmt: skip


def _reference(path, monkeypatch) -> dict:
    """The report with zipfile reading every directory and no shared replay."""
    with monkeypatch.context() as m:
        m.setattr(formats, "read_directory", lambda f, size: None)
        m.setattr(formats, "_SHARED_MAX_BYTES", -1)
        return scan_pickle(path).to_json()


def _zips(folder) -> dict[str, bytes]:
    """Plain and odd archives: what zipdir reads itself, and what it hands to zipfile."""
    plain = torch_like_zip({"a.w": ("F32", [4, 5]), "b.w": ("BF16", [7])})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("arch/data.pkl", b"\x80\x02}q\x00.")
        z.writestr(zipfile.ZipInfo("arch/dätä/ü.pkl"), b"\x80\x02]q\x00.")  # a UTF-8 name
        z.writestr("arch/version", b"3\n")
    deflated_utf8 = buf.getvalue()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("arch/data.pkl", b"\x80\x02}q\x00.")
        z.comment = b"a comment"
    commented = buf.getvalue()
    cut = plain[:-30]  # the end record cut off
    prepended = b"junk" * 10 + plain  # zipfile shifts the offsets
    upper = plain.replace(b"data.pkl", b"DATA.PKL")
    bad_sig = plain.replace(b"PK\x01\x02", b"PK\x01\x03", 1)
    return {"plain.pt": plain, "deflated_utf8.pt": deflated_utf8, "commented.pt": commented, "cut.pt": cut,
            "prepended.pt": prepended, "upper.pt": upper, "bad_sig.pt": bad_sig,
            "two_pickles.pt": torch_zip(b"\x80\x02}q\x00.", extra=[("archive/x/data.pkl", b"\x80\x02]q\x00.")])}  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zips")
    out = [h.path for h in build_corpus(folder / "hostile")]
    for name, raw in _zips(folder).items():
        (folder / name).write_bytes(raw)
        out.append(folder / name)
    return out


def test_every_report_is_the_same_as_zipfile_and_a_fresh_replay_give(files, monkeypatch):
    formats._SHARED.clear()
    for path in files + files:  # the second round takes every shared replay
        assert scan_pickle(path).to_json() == _reference(path, monkeypatch), path.name


def _assert_zipfiles(d, raw: bytes) -> None:
    """``d`` reads ``raw`` as zipfile's ``infolist()`` does."""
    infos = zipfile.ZipFile(io.BytesIO(raw)).infolist()
    assert [[getattr(i, k) for k in FIELDS] for i in d.pkls] == [
        [getattr(i, k) for k in FIELDS] for i in infos if i.filename.lower().endswith(".pkl")
    ]
    assert d.sizes == {i.filename: i.file_size for i in infos}
    assert (d.first, d.low) == (infos[0].filename, min(i.header_offset for i in infos))
    assert [[getattr(i, k) for k in FIELDS] for i in d.members()] == [
        [getattr(i, k) for k in FIELDS] for i in infos
    ]


def test_the_directory_is_zipfiles_where_zipdir_reads_it(files):
    read = 0
    for path in files:
        raw = path.read_bytes()
        if raw[:4] != b"PK\x03\x04":
            continue
        d = zipdir.read_directory(io.BytesIO(raw), len(raw))
        if d is None:
            continue
        read += 1
        _assert_zipfiles(d, raw)
    assert read >= 20


@pytest.mark.parametrize("name", ["commented.pt", "cut.pt", "prepended.pt", "bad_sig.pt"])
def test_odd_archives_go_to_zipfile(tmp_path, name):
    raw = _zips(tmp_path)[name]
    assert zipdir.read_directory(io.BytesIO(raw), len(raw)) is None


def _record(name: bytes, extra: bytes, *, size: int = 5) -> bytes:
    return struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, 0, 0, 0, 0, 0, size, size, len(name),
                       len(extra), 0, 0, 0, 0, 0) + name + extra  # fmt: skip


def test_zip64_sizes_and_corrupt_extra_fields_go_to_zipfile():
    ok = _record(b"a/data.pkl", struct.pack("<HH", 0xCAFE, 2) + b"xx")
    assert zipdir._records(ok, len(ok), keep=False)[1] is not None
    zip64 = _record(b"a/data.pkl", struct.pack("<HHQ", 1, 8, 5), size=0xFFFF_FFFF)
    corrupt = _record(b"a/data.pkl", struct.pack("<HH", 0xCAFE, 9) + b"xx")
    nul = _record(b"a/data.pkl\x00x", b"")
    for raw in (zip64, corrupt, nul):
        assert zipdir._records(raw, len(raw), keep=False)[1] is None


def test_torch_save_files_are_read_by_zipdir(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    path = tmp_path / "t.pt"
    torch.save({"w": torch.zeros(3), "b": torch.ones(2, dtype=torch.float16)}, path)  # zip64 end records
    raw = path.read_bytes()
    assert zipdir.read_directory(io.BytesIO(raw), len(raw)) is not None
    report = scan_pickle(path)
    assert report.verdict == "clean" and report.tensors == 2
    assert report.to_json() == _reference(path, monkeypatch)


def test_a_shared_replay_is_only_taken_for_the_same_bytes(tmp_path):
    formats._SHARED.clear()
    clean_pkl = b"\x80\x02}q\x00X\x01\x00\x00\x00aK\x01s."
    evil_pkl = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R."
    clean, evil = torch_zip(clean_pkl), torch_zip(evil_pkl)
    for i, raw in enumerate([clean, evil, clean, evil]):
        (tmp_path / f"{i}.pt").write_bytes(raw)
    verdicts = [scan_pickle(tmp_path / f"{i}.pt").verdict for i in range(4)]
    assert verdicts == ["clean", "unsafe", "clean", "unsafe"]
    assert set(formats._SHARED) == {clean_pkl, evil_pkl}  # keyed by the bytes: no digest to collide


def test_a_replay_is_kept_from_its_second_sighting_on(tmp_path, monkeypatch):
    # an rng_state.pth holds its own Mersenne state: a replay seen once is not kept (it would only fill the
    # budget); bytes seen again are kept, and taken as they are the third time
    formats._SHARED.clear()
    formats._SEEN_ONCE.clear()
    pickles = [b"\x80\x02}q\x00X\x01\x00\x00\x00aK%cs." % n for n in range(3)]
    for i, pkl in enumerate(pickles + [pickles[0], pickles[0]]):
        (tmp_path / f"{i}.pt").write_bytes(torch_zip(pkl))
    runs = []
    real = formats.Machine.run
    monkeypatch.setattr(formats.Machine, "run", lambda self, *a: runs.append(1) or real(self, *a))
    for i in range(3):
        assert scan_pickle(tmp_path / f"{i}.pt").verdict == "clean"
    assert len(formats._SHARED) == 0 and len(runs) == 3
    assert scan_pickle(tmp_path / "3.pt").verdict == "clean"  # pickles[0] again: replayed, now kept
    assert set(formats._SHARED) == {pickles[0]} and len(runs) == 4
    assert scan_pickle(tmp_path / "4.pt").to_json() == scan_pickle(tmp_path / "0.pt").to_json()
    assert len(runs) == 4  # both taken from the kept replay


# --- templates: directories alike but for their CRCs --------------------------------------------------------

PKL = b"\x80\x02}q\x00."


def _state(seed: int, *, pkl: bytes = PKL, sizes: dict[int, int] | None = None,
           names: dict[int, str] | None = None) -> bytes:  # fmt: skip
    """An optimizer.pt-like zip of 60 storages; ``seed`` picks their bytes (so their CRCs), ``sizes`` and
    ``names`` change some storages' lengths or names. One timestamp for all: the layout depends on no clock."""
    rnd = random.Random(seed)
    sizes, names = sizes or {}, names or {}
    members = [("archive/data.pkl", pkl), ("archive/byteorder", b"little"), ("archive/version", b"3\n")]
    members += [(f"archive/data/{names.get(i, i)}", rnd.randbytes(sizes.get(i, 4))) for i in range(60)]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in members:
            z.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def _read(raw: bytes, monkeypatch) -> tuple[zipdir.Directory, int]:
    """The directory read and how many full parses it took."""
    parses = []
    full = zipdir._records

    def counting(*a, **k):
        parses.append(1)
        return full(*a, **k)

    with monkeypatch.context() as m:
        m.setattr(zipdir, "_records", counting)
        d = zipdir.read_directory(io.BytesIO(raw), len(raw))
    assert d is not None
    return d, len(parses)


@pytest.fixture
def templates(monkeypatch):
    monkeypatch.setattr(zipdir, "_TEMPLATES", Bounded(max_items=zipdir._TEMPLATE_MAX, max_bytes=zipdir._TEMPLATE_BUDGET))
    monkeypatch.setattr(zipdir, "_SEEN", Bounded(max_items=zipdir._SEEN_MAX))
    return zipdir._TEMPLATES


def _prime(raw: bytes, monkeypatch) -> None:
    """Read ``raw``'s layout twice: the second sighting keeps a template."""
    for _ in range(2):
        _read(raw, monkeypatch)


def test_a_directory_alike_but_for_its_crcs_takes_the_template_and_is_zipfiles(templates, monkeypatch):
    first, second, third = _state(1), _state(2), _state(3)
    assert len(first) == len(second) and first != second
    assert _read(first, monkeypatch)[1] == 1 and not templates  # a layout seen once: no template yet
    assert _read(second, monkeypatch)[1] == 1 and len(templates) == 1
    d, parses = _read(third, monkeypatch)
    assert parses == 0
    _assert_zipfiles(d, third)
    assert _read(first, monkeypatch)[1] == 0


@pytest.mark.parametrize(
    "change",
    [{"names": {30: "3x"}}, {"names": {59: "5a"}}, {"sizes": {10: 5, 11: 3}}, {"sizes": {59: 7}}],
    ids=["name-same-length", "last-name", "size-and-offsets", "last-size"],
)
def test_a_directory_of_the_same_length_but_another_layout_is_parsed_in_full(templates, monkeypatch, change):
    _prime(_state(1), monkeypatch)
    other = _state(2, **change)
    d, parses = _read(other, monkeypatch)
    assert parses == 1
    _assert_zipfiles(d, other)


def test_the_pickles_crc_is_read_from_the_new_bytes(templates, monkeypatch, tmp_path):
    first, second = _state(1, pkl=b"\x80\x02K\x01."), _state(1, pkl=b"\x80\x02K\x02.")
    _prime(first, monkeypatch)
    d, parses = _read(second, monkeypatch)
    assert parses == 0
    assert d.pkls[0].CRC == zlib.crc32(b"\x80\x02K\x02.") != zlib.crc32(b"\x80\x02K\x01.")
    _assert_zipfiles(d, second)


def test_a_wrong_pickle_crc_is_still_found_through_a_template(templates, monkeypatch, tmp_path):
    good, corrupt = _state(1), bad_crc(_state(2), "archive/data.pkl")
    (tmp_path / "good.pt").write_bytes(good)
    (tmp_path / "corrupt.pt").write_bytes(corrupt)
    for _ in range(2):
        assert not any("CRC" in p for p in scan_pickle(tmp_path / "good.pt").problems)
    assert _read(corrupt, monkeypatch)[1] == 0  # the template is taken
    problems = scan_pickle(tmp_path / "corrupt.pt").problems
    assert any("data.pkl: CRC mismatch" in p for p in problems), problems


def test_templates_are_bounded(templates, monkeypatch):
    for i in range(zipdir._TEMPLATE_MAX + 10):
        _prime(_state(0, names={0: "0" * (i + 2)}), monkeypatch)  # each its own length
    assert len(templates) == zipdir._TEMPLATE_MAX
    small = torch_zip(PKL)  # a small directory parses fast: never a template
    _prime(small, monkeypatch)
    assert zipdir._key(small) not in templates
    for i in range(zipdir._SEEN_MAX + 10):  # layouts seen once: keys only, and only so many
        _read(_state(0, names={1: "1" * (i + 100)}), monkeypatch)  # lengths of no template
    assert len(zipdir._SEEN) == zipdir._SEEN_MAX and len(templates) == zipdir._TEMPLATE_MAX
