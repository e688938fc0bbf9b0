"""Torch file formats around the pickles: the zip of ``torch.save`` (torch >= 1.6) and legacy / plain
pickles, with the limits on how many bytes are read. ``scan_pickle`` is the entry point."""

from __future__ import annotations

import os
import zipfile
from typing import Any

from tui.core.files import open_regular_file
from tui.core.pickle_scan.machine import Machine, ScanStop
from tui.core.pickle_scan.report import PickleReport, fill_report
from tui.core.text import safe_message

MAX_PICKLE_BYTES = 64 << 20
LEGACY_FIRST_READ = 4 << 20
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of a pre-1.6 torch.save


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


def _scan(path: str | os.PathLike, label: str) -> PickleReport:
    try:
        fd, size = open_regular_file(path)
    except ValueError as e:
        return PickleReport(format="not-pickle", problems=[f"{label}: {e}"])
    except OSError as e:
        return PickleReport(format="not-pickle", problems=[f"{label}: cannot open ({e.strerror or e})"])
    with os.fdopen(fd, "rb") as f:
        if size == 0:
            return PickleReport(format="not-pickle", problems=[f"{label}: zero-byte file"])
        head = f.read(2)
        f.seek(0)
        if head == b"PK":
            return _scan_zip(f, label)
        return _scan_legacy(f, size, label)


def _scan_zip(f: Any, label: str) -> PickleReport:
    report = PickleReport(format="zip")
    try:
        zf = zipfile.ZipFile(f)
    except zipfile.BadZipFile as e:
        report.problems.append(f"{label}: zip central directory missing: truncated file? ({e})")
        return report
    except Exception as e:  # LargeZipFile, OSError, struct/Unicode errors from hostile directories
        report.problems.append(
            f"{label}: zip central directory unreadable: corrupt file? ({type(e).__name__}: {e})"
        )
        return report
    with zf:
        try:
            infos = zf.infolist()
            pkls = sorted(
                (i for i in infos if i.filename == "data.pkl" or i.filename.endswith("/data.pkl")),
                key=lambda i: (i.filename.count("/"), i.filename),
            )
            if not pkls:
                report.problems.append(f"{label}: zip archive has no data.pkl: not a torch.save file")
                return report
            info = pkls[0]
            report.pickle_name = info.filename
            if info.file_size > MAX_PICKLE_BYTES:
                report.problems.append(
                    f"{label}: {info.filename} is {info.file_size} bytes; only the first "
                    f"{MAX_PICKLE_BYTES >> 20} MiB were scanned, counts are partial"
                )
            with zf.open(info) as member:
                data = member.read(MAX_PICKLE_BYTES)
            sizes = {i.filename: i.file_size for i in infos}
        except Exception as e:  # bad local header, CRC mismatch, unsupported compression, zlib errors
            report.problems.append(
                f"{label}: cannot read {report.pickle_name or 'the archive'}: corrupt file? "
                f"({type(e).__name__}: {e})"
            )
            return report
    machine = Machine()
    root, _end, stop = _run_one(machine, data, 0)
    if stop is not None:
        report.problems.append(stop.describe(label, info.filename))
    fill_report(machine, root, report, label)
    # Each storage named in data.pkl is a data/<key> record holding exactly its bytes.
    prefix = info.filename[: -len("data.pkl")]
    missing, short = [], []
    for key, (_dtype, nbytes) in machine.storages.items():
        have = sizes.get(f"{prefix}data/{key}")
        if have is None:
            missing.append(key)
        elif have < nbytes:
            short.append(f"{key} ({have} of {nbytes} bytes)")
    if missing:
        report.problems.append(
            f"{label}: {len(missing)} storage record(s) named in {info.filename} missing from the archive: "
            + ", ".join(missing[:10])
        )
    if short:
        report.problems.append(
            f"{label}: {len(short)} storage record(s) shorter than their tensors: " + ", ".join(short[:10])
        )
    return report


def _scan_legacy(f: Any, size: int, label: str) -> PickleReport:
    """A plain pickle or pre-1.6 torch file. Its pickles come before any storage bytes, so read a small
    prefix first and a bigger one (up to MAX_PICKLE_BYTES) only if the pickles run past it."""
    data = f.read(min(size, LEGACY_FIRST_READ))
    report = _replay_legacy(data, label, final=len(data) >= size)
    if report is None:
        data += f.read(min(size, MAX_PICKLE_BYTES) - len(data))
        report = _replay_legacy(data, label, final=True, cut=len(data) < size)
    assert report is not None
    return report


def _replay_legacy(data: bytes, label: str, *, final: bool, cut: bool = False) -> PickleReport | None:
    """The report; None when a pickle ran past the end of ``data`` and a longer prefix may help."""
    machine = Machine()
    first, end, stop = _run_one(machine, data, 0)
    if stop is not None:
        if stop.truncated and not final:
            return None
        if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
            # It claims to be a pickle (PROTO 2..5) but does not replay: "legacy", and say why.
            report = PickleReport(format="legacy", problems=[stop.describe(label, "pickle")])
            if cut and stop.truncated:
                report.problems.append(f"{label}: only the first {MAX_PICKLE_BYTES >> 20} MiB were scanned")
            fill_report(machine, None, report, label)
            return report
        return PickleReport(
            format="not-pickle", problems=[f"{label}: not a torch zip archive or a pickle ({stop})"]
        )
    report = PickleReport(format="legacy")
    root = first
    if isinstance(first, int) and not isinstance(first, bool) and first == _LEGACY_MAGIC:
        # torch.save before 1.6: protocol version, sys info, the object, then the storage keys.
        root = None
        for i in range(3):
            obj, end, stop = _run_one(machine, data, end)
            if stop is not None:
                if stop.truncated and not final:
                    return None
                report.problems.append(stop.describe(label, "legacy torch pickle"))
                if cut and stop.truncated:
                    report.problems.append(
                        f"{label}: only the first {MAX_PICKLE_BYTES >> 20} MiB were scanned"
                    )
                break
            if i == 2:
                root = obj
    fill_report(machine, root, report, label)
    return report


def _run_one(machine: Machine, data: bytes, pos: int) -> tuple[Any, int, ScanStop | None]:
    """(root, offset after STOP, None) or (None, pos, the reason it stopped)."""
    try:
        root, end = machine.run(data, pos)
        return root, end, None
    except ScanStop as e:
        stop = ScanStop(f"pickle at byte {pos}: {e}", truncated=e.truncated, limit=e.limit)
        return None, pos, stop
