"""A zip's central directory read the way ``zipfile.ZipFile`` reads it, for the common layout only, at a
fraction of its cost (``ls`` reads the directory of every optimizer.pt: one record per storage).

``read_directory(f, size)`` returns a ``Directory`` (what the scan reads of the members), or None whenever the archive is anything but plain
(an end record not at the very end, a comment, data prepended, zip64 sizes in an extra field, a bad
signature, an undecodable or NUL-holding name, a version zipfile refuses...). The caller then asks
``zipfile`` itself, so every odd archive gets zipfile's own verdict and messages. On the archives it does
read, the members are exactly zipfile's ``infolist()`` (same order, names, offsets, sizes, CRCs, flags);
tests compare the two.

Checkpoints of one model share their optimizer.pt's directory byte for byte but for the CRC fields (the
storages hold other numbers): a layout seen twice is kept as a template (``_remember``); a later directory
equal to it outside the CRC fields (one masked compare of two big integers, in C) takes the template's
reading and only its own ``*.pkl`` CRCs (``_from_template``). The reading depends on no byte of a CRC
field but the member's own CRC, so it is the full parse's exactly; ``members()`` parses its own bytes.
"""

from __future__ import annotations

import struct
import threading

from tui.core.pickle_scan.bounded import Bounded, masked

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any, BinaryIO

_EOCD = struct.Struct("<4s4H2LH")  # zipfile.structEndArchive
_LOC64 = struct.Struct("<4sLQL")  # zipfile.structEndArchive64Locator
_EOCD64 = struct.Struct("<4sQ2H2L4Q")  # zipfile.structEndArchive64
# zipfile.structCentralDir, only the fields read: signature, extract version, flags, method, CRC,
# compressed and file size, name / extra / comment lengths, local header offset
_CDIR = struct.Struct("<4s2xBxHH4xLLLHHH8xL")
_TAIL = 64 << 10  # one read holds the end records and, for most torch files, the whole directory
_MAX_EXTRACT_VERSION = 63  # zipfile.MAX_EXTRACT_VERSION
_CRC_AT = 16  # a central record's CRC field: bytes 16..19
_NAME_LENS = struct.Struct("<3H")  # name, extra and comment lengths, at byte 28 of a central record


class Member:
    """The fields of ``zipfile.ZipInfo`` the scanner reads."""

    __slots__ = ("filename", "orig_filename", "header_offset", "file_size", "compress_size", "compress_type",
                 "CRC", "flag_bits")  # fmt: skip

    def __init__(
        self, name: str, offset: int, size: int, csize: int, method: int, crc: int, flags: int
    ) -> None:
        self.filename = self.orig_filename = name
        self.header_offset, self.file_size, self.compress_size = offset, size, csize
        self.compress_type, self.CRC, self.flag_bits = method, crc, flags


# (name, local header offset, file size, compressed size, method, CRC, flags)
Entry = tuple[str, int, int, int, int, int, int]


class Directory:
    """What the scan reads off a directory: the first member's name, the lowest local header offset,
    every member's size by name (the last of a repeated name, as zipfile's name lookup), the ``*.pkl``
    members in order, and, on demand, every member (``members``)."""

    __slots__ = ("first", "low", "sizes", "pkls", "_cdir", "_infos", "_pkl_at")

    def __init__(self) -> None:
        self.first: str | None = None
        self.low = 0
        self.sizes: dict[str, int] = {}
        self.pkls: list[Any] = []
        self._cdir: bytes | None = None
        self._infos: list[Any] | None = None
        self._pkl_at: list[int] = []  # where each ``pkls`` member's record starts in ``_cdir``

    @classmethod
    def of_infos(cls, infos: list[Any]) -> Directory:
        """The same from zipfile's ``infolist()``."""
        d = cls()
        d._infos = infos
        if infos:
            d.first, d.low = infos[0].filename, min(i.header_offset for i in infos)
        d.sizes = {i.filename: i.file_size for i in infos}
        d.pkls = [i for i in infos if i.filename.lower().endswith(".pkl")]
        return d

    def members(self) -> list[Any]:
        if self._infos is None:
            cdir = self._cdir or b""
            self._infos = [Member(*e) for e in _records(cdir, len(cdir), keep=True)[0]]
        return self._infos


def read_directory(f: BinaryIO, size: int) -> Directory | None:
    """The members of the zip ``f`` (``size`` bytes), or None: ask ``zipfile`` (see the module docstring)."""
    if size < _EOCD.size:
        return None
    start = max(0, size - _TAIL)
    f.seek(start)
    tail = f.read(size - start)
    if len(tail) != size - start:
        return None
    end = len(tail) - _EOCD.size
    sig, _disk, _dstart, _n1, _n2, size_cd, offset_cd, comment = _EOCD.unpack_from(tail, end)
    if sig != b"PK\x05\x06" or comment != 0:
        return None
    location, extra64 = size - _EOCD.size, 0
    if end >= _LOC64.size and tail[end - _LOC64.size : end - _LOC64.size + 4] == b"PK\x06\x07":
        _s, diskno, _rel, disks = _LOC64.unpack_from(tail, end - _LOC64.size)
        at = end - _LOC64.size - _EOCD64.size
        if diskno != 0 or disks > 1 or at < 0:
            return None
        rec = _EOCD64.unpack_from(tail, at)
        if rec[0] == b"PK\x06\x06":  # zipfile then takes the zip64 record's sizes
            size_cd, offset_cd, extra64 = rec[8], rec[9], _LOC64.size + _EOCD64.size
    if location - size_cd - offset_cd - extra64 != 0:
        return None  # data prepended (zipfile shifts every offset): let zipfile say so
    if offset_cd >= start:
        cdir = memoryview(tail)[offset_cd - start : offset_cd - start + size_cd]
    else:
        f.seek(offset_cd)
        cdir = memoryview(f.read(size_cd))
    raw = bytes(cdir)
    if len(raw) != size_cd:  # the file shrank under us: the full parse says what is off
        return _records(raw, size_cd, keep=False)[1]
    d = _from_template(raw)
    if d is None:
        d = _records(raw, size_cd, keep=False)[1]
        if d is not None:
            d._cdir = raw
            _remember(raw, d)
    return d


def _records(cdir: bytes, size_cd: int, *, keep: bool) -> tuple[list[Entry], Directory | None]:
    """One pass over the directory: a ``Directory``, None when anything is off; ``keep``: also every
    record as an ``Entry``. A tight loop (an optimizer.pt holds one record per storage); a record cut off
    raises struct.error, which sends the caller to zipfile."""
    out: list[Entry] = []
    d = Directory()
    sizes, pkls = d.sizes, d.pkls
    unpack_from, fixed = _CDIR.unpack_from, _CDIR.size
    low = 1 << 64
    pos = 0
    while pos < size_cd:
        start = pos
        sig, version, flags, method, crc, csize, fsize, nlen, xlen, clen, offset = unpack_from(cdir, pos)
        if sig != b"PK\x01\x02" or version > _MAX_EXTRACT_VERSION:
            return out, None
        pos += fixed
        raw = cdir[pos : pos + nlen]
        if len(raw) != nlen or b"\x00" in raw:
            return out, None
        try:
            name = raw.decode("utf-8") if flags & 0x800 else raw.decode("ascii")
        except UnicodeDecodeError:
            return out, None  # zipfile decodes cp437 names or fails: let it
        if xlen and not _plain_extra(cdir[pos + nlen : pos + nlen + xlen], fsize, csize, offset):
            return out, None
        pos += nlen + xlen + clen
        sizes[name] = fsize
        if offset < low:
            low = offset
        # only "l"/"L" lower to a text ending in "l" (checked over all of Unicode): a cheap first test
        if keep or (name.endswith(("l", "L")) and name.lower().endswith(".pkl")):
            entry = (name, offset, fsize, csize, method, crc, flags)
            if keep:
                out.append(entry)
            if name.lower().endswith(".pkl"):
                pkls.append(Member(*entry))
                d._pkl_at.append(start)
            if d.first is None:
                d.first = name
        elif d.first is None:
            d.first = name
    d.low = low if d.first is not None else 0
    return out, d


def _plain_extra(extra: bytes, fsize: int, csize: int, offset: int) -> bool:
    """An extra field zipfile reads without changing a size or an offset, and without raising."""
    while len(extra) >= 4:
        tp, ln = struct.unpack_from("<HH", extra)
        if ln + 4 > len(extra):
            return False  # zipfile: "Corrupt extra field"
        if tp == 1 and 0xFFFF_FFFF in (fsize, csize, offset):
            return False  # zip64 sizes: zipfile's own decoding
        extra = extra[ln + 4 :]
    return True


# --- templates: directories alike but for their CRCs --------------------------------------------------------


class _Template:
    """A directory's reading, and its bytes as an integer with every CRC field masked off."""

    __slots__ = ("mask", "masked", "first", "low", "sizes", "pkls")

    def __init__(self, raw: bytes, d: Directory) -> None:
        crcs, pos = [], 0
        while pos < len(raw):  # the records as _records walked them
            crcs.append((pos + _CRC_AT, 4))
            nlen, xlen, clen = _NAME_LENS.unpack_from(raw, pos + 28)
            pos += _CDIR.size + nlen + xlen + clen
        self.mask, self.masked = masked(raw, crcs)
        self.first, self.low, self.sizes = d.first, d.low, d.sizes
        # each *.pkl member: (its record's start, its fields but the CRC)
        self.pkls = [(at, (m.filename, m.header_offset, m.file_size, m.compress_size, m.compress_type),
                      m.flag_bits) for at, m in zip(d._pkl_at, d.pkls, strict=True)]  # fmt: skip


_TEMPLATE_MIN = 1 << 10  # smaller directories parse in microseconds: not worth a template
_TEMPLATE_MAX = 32
_TEMPLATE_BUDGET = 8 << 20  # directory bytes held, all templates together
_TEMPLATES = Bounded(max_items=_TEMPLATE_MAX, max_bytes=_TEMPLATE_BUDGET)  # key -> _Template, sized by length
_SEEN_MAX = 256
_SEEN = Bounded(max_items=_SEEN_MAX)  # keys seen once: a template is built on the second sighting
_TEMPLATES_LOCK = threading.Lock()  # the step from seen once to template


def _key(raw: bytes) -> tuple[int, bytes]:
    """The length and the first record's bytes but its CRC: a cheap first test of the layout."""
    return len(raw), raw[:_CRC_AT] + raw[_CRC_AT + 4 : 128]


def _from_template(raw: bytes) -> Directory | None:
    """``raw``'s reading from a template when ``raw`` equals it outside the CRC fields, else None."""
    t = _TEMPLATES.get(_key(raw))
    if t is None or int.from_bytes(raw, "little") & t.mask != t.masked:
        return None
    d = Directory()
    d.first, d.low, d.sizes, d._cdir = t.first, t.low, dict(t.sizes), raw
    for at, fields, flags in t.pkls:  # the CRC from these bytes: the scan checks each pickle against it
        crc = int.from_bytes(raw[at + _CRC_AT : at + _CRC_AT + 4], "little")
        d.pkls.append(Member(*fields, crc, flags))
        d._pkl_at.append(at)
    return d


def _remember(raw: bytes, d: Directory) -> None:
    """Keep ``d`` (``raw``'s full parse) as the template of its layout once its key is seen a second
    time (building one costs half a parse: a tree of layouts all different pays none); the oldest go first."""
    if not _TEMPLATE_MIN <= len(raw) <= _TEMPLATE_BUDGET:
        return
    key = _key(raw)
    with _TEMPLATES_LOCK:
        if key not in _SEEN and key not in _TEMPLATES:
            _SEEN.put(key, None)
            return
    t = _Template(raw, d)
    _SEEN.pop(key)
    _TEMPLATES.put(key, t, len(raw), replace=True)
