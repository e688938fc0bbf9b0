"""Torch file formats around the pickles, read the way ``torch.load`` reads them, so that every pickle torch
would unpickle is replayed; ``scan_pickle`` is the entry point.

What ``torch.load(weights_only=False)`` does with a file, and what is scanned for each:

* starts with ``PK\\x03\\x04``: a zip (torch >= 1.6). Torch unpickles ``<archive>/data.pkl`` (names
  compared case-insensitively) and ignores CRCs. Every ``*.pkl`` member is replayed (a second
  ``data.pkl`` under another folder, a TorchScript ``constants.pkl``), each read from its local header with
  the CRC not enforced (a wrong CRC is a problem, the pickle is still judged). Never a ``data/<key>``
  storage record. A TorchScript archive (``constants.pkl``) goes to ``torch.jit.load``: not verified.
* a tar (the format of torch < 0.4): the ``storages`` member (a count pickle, then per storage an
  argument pickle and raw bytes, then the views pickle), ``tensors`` (a count, then per tensor an argument
  pickle and its raw shape) and ``pickle``: every pickle among them.
* anything else: a pickle stream. Torch unpickles the first pickle before checking it is its magic
  number, so a plain pickle runs; after the magic number come the protocol, sys-info, object and
  storage-key pickles (pre-1.6 ``torch.save``): all five are replayed.

The verdict: ``unsafe`` when any global is off the allowlist; ``clean`` only when every one of those
pickles was replayed to its STOP within the limits; else ``not verified`` (corrupt, truncated, not a
pickle, a limit hit, TorchScript), with a problem saying why.
"""

from __future__ import annotations

import io
import itertools
import os
import struct
import zlib

from tui.core.files import open_regular_file, read_bounded
from tui.core.pickle_scan import sniff
from tui.core.pickle_scan.bounded import Bounded, masked
from tui.core.pickle_scan.lightning import lightning_state
from tui.core.pickle_scan.machine import GlobalRef, Machine, ScanStop, is_count
from tui.core.pickle_scan.report import PickleReport, fill_report
from tui.core.pickle_scan.torch_names import STORAGE_TYPES
from tui.core.pickle_scan.zipdir import Directory, Member, read_directory
from tui.core.text import safe_message

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    import zipfile
    from typing import Any, BinaryIO

MAX_PICKLE_BYTES = sniff.MAX_SNIFF_BYTES  # per file, all its pickles together (sniffing stops there too)
LEGACY_FIRST_READ = 4 << 20
# A file this small is read whole in one system call (the zip directory reader reads this much of the end
# anyway): the seeks and reads of its records and pickles are then no system calls.
WHOLE_FILE_BYTES = 64 << 10
MAX_PKL_MEMBERS = 64
MAX_TAR_RECORDS = 100_000
MAX_TAR_MEMBERS = 10_000
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of a pre-1.6 torch.save
ZIP_STORED, ZIP_DEFLATED = 0, 8  # zipfile's compression methods (the zip format's numbers)
_ZIP_MAGIC = b"PK\x03\x04"  # torch's _is_zipfile: exactly these first bytes


class _Scan:
    """One file's scan: the shared machine (budget, globals), the report, whether all was replayed."""

    def __init__(self, report: PickleReport, label: str) -> None:
        self.machine = Machine()
        self.report = report
        self.label = label
        self.verified = True
        self.bytes_left = MAX_PICKLE_BYTES
        self.root: Any = None  # the object torch.load returns, when it was replayed
        self.directory: Directory | None = None  # a zip's
        self.prefix: str | None = None  # "<archive>/data/": the storage records' names start with it
        self._records: dict[str, Any] | None = None
        self.file: BinaryIO | None = None

    def read_scalar(self, key: str, offset: int, size: int) -> bytes | None:
        """``size`` bytes at ``offset`` of a zip's storage record ``key`` (stored records only)."""
        info = self.records().get(key)
        if self.file is None or info is None or info.compress_type != ZIP_STORED:
            return None
        if size > 16 or offset + size > info.file_size:
            return None
        try:
            self.file.seek(info.header_offset)
            local = self.file.read(30)
            if local[:4] != _ZIP_MAGIC:
                return None
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            self.file.seek(info.header_offset + 30 + name_len + extra_len + offset)
            raw = self.file.read(size)
        except (OSError, struct.error):
            return None
        return raw if len(raw) == size else None

    def records(self) -> dict[str, Any]:
        """A zip's storage records by key, built on first use (only Lightning files read any)."""
        if self._records is None:
            p, d = self.prefix, self.directory
            self._records = (
                {}
                if p is None or d is None
                else {i.filename[len(p) :]: i for i in d.members() if i.filename.startswith(p)}
            )
        return self._records

    def unverified(self, problem: str) -> None:
        self.verified = False
        self.report.problems.append(problem)

    def replay(
        self, data: bytes, pos: int, what: str, *, shared: bool = False
    ) -> tuple[Any, int, ScanStop | None]:
        """(root, offset after STOP, None), or (None, pos, why it stopped) with a problem added.
        ``shared``: this is the file's only replay, so an earlier replay of the same bytes (scheduler.pt,
        training_args.bin... alike across checkpoints) is taken as is, machine included."""
        key = None
        if shared and pos == 0 and self.machine.opcodes == 0 and len(data) <= _SHARED_MAX_BYTES:
            key = bytes(data)  # the bytes themselves: a digest could be made to collide by a hostile file
            hit = _SHARED.get(key) or _FLOATS.match(key)
            if hit is not None:
                self.machine = hit[0]
                return hit[1]
        try:
            root, end = self.machine.run(data, pos)
            out: tuple[Any, int, ScanStop | None] = (root, end, None)
        except ScanStop as e:
            out = (None, pos, ScanStop(f"pickle at byte {pos}: {e}", truncated=e.truncated, limit=e.limit))
        if key is not None:
            seen = hash(key)
            if seen in _SEEN_ONCE:  # kept from its second replay on: most pickles seen once stay unique
                _SHARED.put(key, (self.machine, out), len(key))
            else:
                _SEEN_ONCE.put(seen, None)
            _FLOATS.add(key, self.machine, out)
        return out


# Replays by their exact bytes (never a digest), within a process. Read-only once stored: the scan of a
# file with one pickle only reads its machine and graph. Bounded by the bytes replayed (the graphs are ~10x that).
_SHARED_MAX_BYTES = 1 << 20
_SHARED_BUDGET = 8 << 20
_SHARED = Bounded(max_bytes=_SHARED_BUDGET)  # pickle bytes -> (machine, out)
# The hashes of the pickles replayed once. A replay is kept only when its bytes come again: an
# rng_state.pth holds its own Mersenne state (each of a sweep's 5,000 unlike the others), and keeping them
# all filled the budget with ~25 KB graphs never used again (~60 MB of a 10,000-checkpoint scan, which
# every fork of the first scan then copied page by page). A hash that collides only admits a replay:
# what is taken from _SHARED is still matched by its bytes.
_SEEN_ONCE = Bounded(max_items=4096)


class FloatTemplates:
    """Replays shared by pickles equal but for the values of their BINFLOATs: an optimizer state saved at
    each checkpoint differs from the last one in its learning rate alone (8 bytes of 44 KB), yet replaying
    it costs ~10 ms. Nothing a scan reports depends on a float's value: the machine never compares,
    hashes or counts with one (a count or a shape must be an int: a float is "not a count" whatever it
    holds), names a dict key that is a float "?", and words no problem with a value. The exception is the
    Lightning state (``lightning_state`` reads epoch, step and scores off the graph): a pickle holding any
    Lightning marker key is never a template, nor is one whose replay stopped early.

    The bytes outside the float operands are compared whole (one masked big-integer XOR), so the opcode
    stream, and with it every global, container and count, is the template's. Within a process; bounded."""

    MAX = 32
    BUDGET = 8 << 20

    def __init__(self) -> None:
        # (length, serial) -> (mask, masked template, machine, out): a float may sit anywhere, so only the
        # length sorts them (at most MAX compares on a miss, ~20 us each for an optimizer.pt)
        self._templates = Bounded(max_items=self.MAX, max_bytes=self.BUDGET)
        self._serial = itertools.count()

    def __len__(self) -> int:
        return len(self._templates)

    def match(self, data: bytes) -> tuple[Machine, tuple[Any, int, ScanStop | None]] | None:
        value = None
        for key in self._templates:
            entry = self._templates.get(key)
            if key[0] != len(data) or entry is None:
                continue
            mask, template, machine, out = entry
            value = int.from_bytes(data, "little") if value is None else value
            if value & mask == template:
                return machine, out
        return None

    def add(self, data: bytes, machine: Machine, out: tuple[Any, int, ScanStop | None]) -> None:
        if not machine.float_operands or machine.markers or out[2] is not None or self.match(data) is not None:
            return
        mask, template = masked(data, ((at, 8) for at in machine.float_operands))
        self._templates.put((len(data), next(self._serial)), (mask, template, machine, out), len(data))

    def clear(self) -> None:
        self._templates.clear()


_FLOATS = FloatTemplates()


def scan_pickle(path: str | os.PathLike) -> PickleReport:
    """Describe the pickle at ``path`` without unpickling it (see the module docstring). Never raises."""
    try:
        name = os.fsdecode(path)
        label = safe_message(os.path.basename(name) or name)
        report = _scan(name, label)
    except Exception as e:  # a last line of defence: the contract is "never raises"
        return PickleReport(
            format="not-pickle", problems=[safe_message(f"scan failed ({type(e).__name__}: {e})"[:300])]
        )
    report.problems = [safe_message(p) for p in report.problems]
    return report


def _scan(path: str, label: str) -> PickleReport:
    try:
        fd, size = open_regular_file(path)
    except ValueError as e:
        return PickleReport(format="not-pickle", problems=[f"{label}: {e}"])
    except OSError as e:
        return PickleReport(format="not-pickle", problems=[f"{label}: cannot open ({e.strerror or e})"])
    if size == 0:
        os.close(fd)
        return PickleReport(format="not-pickle", problems=[f"{label}: zero-byte file"])
    if size <= WHOLE_FILE_BYTES:  # read at once: each seek and read below is then no system call
        try:
            data = read_bounded(fd, size, size - 1)  # at most ``size`` bytes (the limit's one more)
        finally:
            os.close(fd)
        with io.BytesIO(data) as f:
            return _scan_open(f, size, label)
    with os.fdopen(fd, "rb") as f:
        return _scan_open(f, size, label)


def _scan_open(f: BinaryIO, size: int, label: str) -> PickleReport:
    """The scan of the open file ``f`` of ``size`` bytes."""
    head = f.read(4)
    f.seek(0)
    scan: _Scan
    if head == _ZIP_MAGIC:
        scan = _Scan(PickleReport(format="zip"), label)
        _scan_zip(scan, f, size)
    elif _is_tar(f):
        scan = _Scan(PickleReport(format="tar"), label)
        _scan_tar(scan, f)
    else:
        scan = _Scan(PickleReport(format="legacy"), label)
        _scan_stream(scan, f, size)
    report = scan.report
    if report.format != "not-pickle":
        fill_report(scan.machine, scan.root, report, label)
    if report.lightning and scan.root is not None:
        scan.file = f
        report.lightning_state = lightning_state(scan.root, scan.read_scalar)
    report.verdict = "unsafe" if report.unsafe_globals else "clean" if scan.verified else "not verified"
    return report


# --- zip ----------------------------------------------------------------------------------------------------


def _scan_zip(scan: _Scan, f: BinaryIO, size: int) -> None:
    label, report = scan.label, scan.report
    d: Directory | None
    try:
        d = read_directory(f, size)
    except Exception:  # the fast reader never decides: zipfile reads it again below
        d = None
    if d is None:  # anything but the plain layout: zipfile's own reading and messages
        d = _directory_by_zipfile(scan, f)
        if d is None:
            return
    if d.low != 0:
        # torch's reader takes offsets as written; zipfile shifts them when the directory says data was
        # prepended: the two may read different records
        scan.unverified(
            f"{label}: zip directory offsets do not start at the first record: inconsistent archive"
        )
    pkls = d.pkls
    archive = d.first.split("/", 1)[0] if d.first is not None else ""
    main = next((i for i in pkls if i.filename.lower() == f"{archive}/data.pkl".lower()), None)
    if main is None:  # not torch's layout; the shallowest data.pkl is the likeliest meant
        main = min(
            (i for i in pkls if i.filename.lower().rsplit("/", 1)[-1] == "data.pkl"),
            key=lambda i: (i.filename.count("/"), i.filename),
            default=None,
        )
    if main is None:
        scan.unverified(f"{label}: zip archive has no data.pkl: not a torch.save file")
    if any(i.filename.lower() == f"{archive}/constants.pkl".lower() for i in pkls):
        scan.unverified(
            f"{label}: a TorchScript archive (torch.load runs it with torch.jit.load): not verified"
        )
    if len(pkls) > MAX_PKL_MEMBERS:
        scan.unverified(f"{label}: {len(pkls)} pickle members; only {MAX_PKL_MEMBERS} were scanned")
    root = None
    ordered = ([main] if main is not None else []) + [i for i in pkls if i is not main][: MAX_PKL_MEMBERS - 1]
    for info in ordered:
        data = _zip_member(scan, f, info)
        if data is None:
            continue
        # one pickle into a fresh machine: its replay depends on its bytes only, so it may be shared
        obj, _end, stop = scan.replay(data, 0, info.filename, shared=len(ordered) == 1)
        if stop is not None:
            scan.unverified(stop.describe(label, info.filename))
        if info is main:
            report.pickle_name, root = info.filename, obj
    scan.root = root
    if main is not None:
        prefix = main.filename[: -len("data.pkl")] + "data/"
        scan.directory, scan.prefix = d, prefix
        _storage_problems(scan, main.filename[: -len("data.pkl")], d.sizes)


def _directory_by_zipfile(scan: _Scan, f: BinaryIO) -> Directory | None:
    """The zip directory as zipfile reads it (imported here: ~2 ms of a start that plain torch.save files,
    which the fast reader reads, never need), or None with the problem noted."""
    import zipfile

    try:
        f.seek(0)
        return Directory.of_infos(zipfile.ZipFile(f).infolist())
    except zipfile.BadZipFile as e:
        scan.unverified(f"{scan.label}: zip central directory missing: truncated file? ({e})")
    except Exception as e:  # LargeZipFile, OSError, struct/Unicode errors from hostile directories
        scan.unverified(
            f"{scan.label}: zip central directory unreadable: corrupt file? ({type(e).__name__}: {e})"
        )
    return None


def _zip_member(scan: _Scan, f: BinaryIO, info: zipfile.ZipInfo | Member) -> bytes | None:
    """A member's bytes read from its local header, as torch's reader does: the CRC is checked and a
    mismatch reported, but not enforced. None (with a problem) when it cannot be read."""
    label, name = scan.label, info.filename
    try:
        f.seek(info.header_offset)
        local = f.read(30)
        if len(local) < 30 or local[:4] != _ZIP_MAGIC:
            raise ValueError("bad local file header")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        local_name = f.read(name_len).decode("utf-8" if info.flag_bits & 0x800 else "cp437", "replace")
        if local_name != info.orig_filename:
            scan.unverified(
                f"{label}: {name}: the local header names it {local_name[:200]!r}: the archive is inconsistent "
                "(another reader may take another record)"
            )
        f.seek(info.header_offset + 30 + name_len + extra_len)
        want = min(info.file_size, scan.bytes_left)
        if info.compress_type == ZIP_STORED:
            data = f.read(want)
        elif info.compress_type == ZIP_DEFLATED:
            data = zlib.decompressobj(-15).decompress(f.read(min(info.compress_size, MAX_PICKLE_BYTES)), want)
        else:
            raise ValueError(f"compression method {info.compress_type} is not supported")
    except Exception as e:  # OSError, zlib.error, ValueError
        scan.unverified(f"{label}: cannot read {name}: corrupt file? ({type(e).__name__}: {e})")
        return None
    scan.bytes_left -= len(data)
    if len(data) < info.file_size:
        scan.unverified(
            f"{label}: {name} is {info.file_size} bytes; only the first {len(data)} bytes were scanned"
            + (f" (only the first {MAX_PICKLE_BYTES >> 20} MiB were scanned)" if not scan.bytes_left else "")
            + "; counts are partial"
        )
    elif zlib.crc32(data) != info.CRC:
        scan.report.problems.append(f"{label}: {name}: CRC mismatch (corrupt; torch loads it anyway)")
    return data


def _storage_problems(scan: _Scan, prefix: str, sizes: dict[str, int]) -> None:
    """Each storage named in data.pkl is a data/<key> record holding exactly its bytes."""
    missing, short = [], []
    for key, (_dtype, nbytes) in scan.machine.storages.items():
        have = sizes.get(f"{prefix}data/{key}")
        if have is None:
            missing.append(key)
        elif have < nbytes:
            short.append(f"{key} ({have} of {nbytes} bytes)")
    problems = scan.report.problems
    if missing:
        problems.append(
            f"{scan.label}: {len(missing)} storage record(s) named in {prefix}data.pkl missing from the archive: "
            + ", ".join(missing[:10])
        )
    if short:
        problems.append(
            f"{scan.label}: {len(short)} storage record(s) shorter than their tensors: "
            + ", ".join(short[:10])
        )


# --- tar (torch < 0.4) ----------------------------------------------------------------------------------------


def _is_tar(f: BinaryIO) -> bool:
    """torch.load tries ``tarfile.open`` first on every non-zip file: the same test."""
    try:
        import tarfile  # here: torch < 0.4's format, ~5 ms of a start that no zip file needs

        with tarfile.open(fileobj=f, mode="r:"):
            return True
    except Exception:
        return False
    finally:
        f.seek(0)


def _scan_tar(scan: _Scan, f: BinaryIO) -> None:
    label = scan.label
    import tarfile

    try:
        tar = tarfile.open(fileobj=f, mode="r:")
        members: dict[str, tarfile.TarInfo] = {}
        for i, m in enumerate(tar):
            if i >= MAX_TAR_MEMBERS:
                scan.unverified(
                    f"{label}: tar holds over {MAX_TAR_MEMBERS} members; the rest were not scanned"
                )
                break
            members.setdefault(m.name, m)
    except Exception as e:
        scan.unverified(f"{label}: tar archive unreadable ({type(e).__name__}: {e})")
        return
    root = None
    for name, records in (("storages", "storage"), ("tensors", "tensor"), ("pickle", None)):
        member = members.get(name)
        if member is None or not member.isfile():
            scan.unverified(f"{label}: tar archive has no {name} member: not a torch file")
            continue
        try:
            data = tar.extractfile(member).read(min(member.size, scan.bytes_left))  # type: ignore[union-attr]
        except Exception as e:
            scan.unverified(f"{label}: cannot read tar member {name} ({type(e).__name__}: {e})")
            continue
        scan.bytes_left -= len(data)
        if records is None:
            root, _, stop = scan.replay(data, 0, name)
            if stop is not None:
                scan.unverified(stop.describe(label, f"tar member {name}"))
        else:
            _tar_records(scan, data, name, records, cut=len(data) < member.size)
    scan.root = root


def _tar_records(scan: _Scan, data: bytes, name: str, kind: str, *, cut: bool) -> None:
    """``storages``: count pickle, per storage (args pickle, int64 count, raw bytes), then a views pickle.
    ``tensors``: count pickle, per tensor (args pickle, int32 ndim, 4 bytes, sizes, strides, offset)."""
    what = f"tar member {name}"
    count, pos, stop = scan.replay(data, 0, what)
    if stop is None and not (is_count(count) and count <= MAX_TAR_RECORDS):
        stop = ScanStop(f"record count {str(count)[:40]} is not a plausible count")
    for _ in range(count if stop is None else 0):
        args, pos, stop = scan.replay(data, pos, what)
        if stop is not None:
            break
        try:
            if kind == "storage":
                stype = args[2] if isinstance(args, tuple) and len(args) >= 3 else None
                size = STORAGE_TYPES.get(stype.name, ("?", 1))[1] if isinstance(stype, GlobalRef) else 1
                (numel,) = struct.unpack_from("<q", data, pos)
                pos += 8 + numel * size
            else:
                (ndim,) = struct.unpack_from("<i", data, pos)
                pos += 8 + 16 * ndim + 8
        except struct.error:
            stop = ScanStop("record cut off", truncated=True)
            break
        if pos > len(data) or pos < 0:
            stop = ScanStop("record runs past the end", truncated=True)
            break
    if stop is None and kind == "storage":
        _views, pos, stop = scan.replay(data, pos, what)
    if stop is not None:
        scan.unverified(stop.describe(scan.label, what))
        if cut:
            scan.unverified(
                f"{scan.label}: only the first {MAX_PICKLE_BYTES >> 20} MiB of {name} were scanned"
            )


# --- a pickle stream: a plain pickle, or pre-1.6 torch.save ---------------------------------------------------


def _scan_stream(scan: _Scan, f: BinaryIO, size: int) -> None:
    """Its pickles come before any storage bytes, so read a small prefix first and a bigger one (up to
    MAX_PICKLE_BYTES) only if the pickles run past it."""
    data = f.read(min(size, LEGACY_FIRST_READ))
    if not _replay_stream(scan, data, final=len(data) >= size):
        data += f.read(min(size, MAX_PICKLE_BYTES) - len(data))
        scan.machine = Machine()
        scan.report.problems.clear()
        scan.verified = True
        _replay_stream(scan, data, final=True, cut=len(data) < size)


def _replay_stream(scan: _Scan, data: bytes, *, final: bool, cut: bool = False) -> bool:
    """Replay the stream into ``scan``; False when a pickle ran past the end of ``data`` and a longer
    prefix may help (``scan`` is then to be redone)."""
    label, report = scan.label, scan.report
    first, end, stop = scan.replay(data, 0, "pickle")
    if stop is not None:
        if stop.truncated and not final:
            return False
        if not scan.machine.globals and not (len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5):
            report.format = "not-pickle"
            scan.unverified(f"{label}: not a torch zip archive or a pickle ({stop})")
        else:
            scan.unverified(stop.describe(label, "pickle"))
            if cut and stop.truncated:
                scan.unverified(f"{label}: only the first {MAX_PICKLE_BYTES >> 20} MiB were scanned")
        return True
    root = first
    if isinstance(first, int) and not isinstance(first, bool) and first == _LEGACY_MAGIC:
        # torch.save before 1.6: protocol version, sys info, the object, then the storage keys.
        root = None
        for i in range(4):
            obj, end, stop = scan.replay(data, end, "legacy torch pickle")
            if stop is not None:
                if stop.truncated and not final:
                    return False
                scan.unverified(stop.describe(label, "legacy torch pickle"))
                if cut and stop.truncated:
                    scan.unverified(f"{label}: only the first {MAX_PICKLE_BYTES >> 20} MiB were scanned")
                break
            if i == 2:
                root = obj
    scan.root = root
    return True
