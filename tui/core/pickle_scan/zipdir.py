"""A zip's central directory read the way ``zipfile.ZipFile`` reads it, for the common layout only, at a
fraction of its cost (``ls`` reads the directory of every optimizer.pt: one record per storage).

``read_directory(f, size)`` returns the members, or None whenever the archive is anything but plain
(an end record not at the very end, a comment, data prepended, zip64 sizes in an extra field, a bad
signature, an undecodable or NUL-holding name, a version zipfile refuses...). The caller then asks
``zipfile`` itself, so every odd archive gets zipfile's own verdict and messages. On the archives it does
read, the members are exactly zipfile's ``infolist()`` (same order, names, offsets, sizes, CRCs, flags);
tests compare the two.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

_EOCD = struct.Struct("<4s4H2LH")  # zipfile.structEndArchive
_LOC64 = struct.Struct("<4sLQL")  # zipfile.structEndArchive64Locator
_EOCD64 = struct.Struct("<4sQ2H2L4Q")  # zipfile.structEndArchive64
_CDIR = struct.Struct("<4s4B4HL2L5H2L")  # zipfile.structCentralDir
_TAIL = 64 << 10  # one read holds the end records and, for most torch files, the whole directory
_MAX_EXTRACT_VERSION = 63  # zipfile.MAX_EXTRACT_VERSION


class Member:
    """The fields of ``zipfile.ZipInfo`` the scanner reads."""

    __slots__ = ("filename", "orig_filename", "header_offset", "file_size", "compress_size", "compress_type",
                 "CRC", "flag_bits")  # fmt: skip

    def __init__(self, name: str, offset: int, size: int, csize: int, method: int, crc: int, flags: int) -> None:
        self.filename = self.orig_filename = name
        self.header_offset, self.file_size, self.compress_size = offset, size, csize
        self.compress_type, self.CRC, self.flag_bits = method, crc, flags


def read_directory(f: BinaryIO, size: int) -> list[Member] | None:
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
    return _members(bytes(cdir), size_cd)


def _members(cdir: bytes, size_cd: int) -> list[Member] | None:
    out: list[Member] = []
    unpack_from, fixed = _CDIR.unpack_from, _CDIR.size
    pos = 0
    while pos < size_cd:
        if pos + fixed > len(cdir):
            return None
        (sig, _cv, _cs, version, _r, flags, method, _t, _d, crc, csize, fsize, nlen, xlen, clen, _v, _ia, _ea,
         offset) = unpack_from(cdir, pos)  # fmt: skip
        if sig != b"PK\x01\x02" or version > _MAX_EXTRACT_VERSION:
            return None
        pos += fixed
        raw = cdir[pos : pos + nlen]
        if len(raw) != nlen or b"\x00" in raw:
            return None
        try:
            name = raw.decode("utf-8") if flags & 0x800 else raw.decode("ascii")
        except UnicodeDecodeError:
            return None  # zipfile decodes cp437 names or fails: let it
        if xlen and not _plain_extra(cdir[pos + nlen : pos + nlen + xlen], fsize, csize, offset):
            return None
        pos += nlen + xlen + clen
        out.append(Member(name, offset, fsize, csize, method, crc, flags))
    return out


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
