"""The MindSpore files of one folder together: a checkpoint missing network tensors its siblings hold (an
incomplete save that the wire format alone cannot see when it ends on a value boundary), the names MindSpore
scripts give the best and the final model, and what a run's remaining files say about it."""

from __future__ import annotations

import _thread  # threading's Lock, local and get_ident, without importing threading (~1 ms of every start)
import os
from collections import Counter

from tui.core import cache
from tui.core.files import read_head
from tui.core.names import (
    MINDSPORE_BEST,
    MINDSPORE_FINAL,
    MINDSPORE_PERIODIC,
    MINDSPORE_RERUN_PREFIX,
    MINDSPORE_SUFFIX,
)
from tui.core.text import quoted

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~3 ms of every command's start)
if TYPE_CHECKING:  # the readers are imported where a MindSpore file is read (the scan imports this module)
    from tui.core.mindspore_ckpt.records import MindSporeReport

_SHOWN = 5  # missing tensor names quoted in one problem


def incomplete(reports: dict[str, MindSporeReport]) -> dict[str, str]:
    """file name -> problem, for each file whose network tensors are a strict subset of the set most of its
    siblings hold (ties: the larger set). Files of other models (other names) are not compared."""
    sets = {n: frozenset(t.name for t in r.network()) for n, r in reports.items() if r.format == "mindspore"}
    sets = {n: s for n, s in sets.items() if s}
    if len(sets) < 2:
        return {}
    counts = Counter(sets.values())
    reference = max(counts, key=lambda s: (counts[s], len(s)))
    example = min(n for n, s in sets.items() if s == reference)
    out = {}
    for name, names in sets.items():
        if names < reference:
            missing = sorted(reference - names)
            shown = ", ".join(quoted(m) for m in missing[:_SHOWN])
            more = f" and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""
            out[name] = (
                f"{name}: holds {len(names)} of the {len(reference)} network tensors of its siblings "
                f"(e.g. {example}; {reports[name].file_size:,} vs {reports[example].file_size:,} bytes), "
                f"missing {shown}{more}: an incomplete save"
            )
    return out


def name_role(name: str) -> str | None:
    """ "best" / "final" for the names MindSpore scripts save those models under."""
    return {MINDSPORE_BEST: "best", MINDSPORE_FINAL: "final"}.get(name)


def run_note(names: list[str], siblings: list[str] | None = None) -> str | None:
    """What the remaining ``<prefix>-<epoch>_<step>.ckpt`` files of one run say: that it is a second run with a
    renamed prefix, and why only its last epochs are left (ModelCheckpoint's keep_checkpoint_max). ``siblings``
    are the other names in the folder (a renamed prefix is one whose base prefix has files there)."""
    found = [m for n in names if (m := MINDSPORE_PERIODIC.match(n))]
    if not found:
        return None
    prefix = found[0]["prefix"]
    epochs = sorted({int(m["epoch"]) for m in found})
    parts = []
    rerun = MINDSPORE_RERUN_PREFIX.match(prefix)
    others = siblings or []
    if rerun and any(n.startswith(rerun["base"] + "-") for n in others):
        parts.append(
            f"a later run than {rerun['base']}-*: MindSpore's ModelCheckpoint renames the prefix "
            f"{rerun['base']!r} to {prefix!r} when {rerun['base']}-* files are in the folder"
        )
    if epochs[0] > 1:
        parts.append(
            f"only epochs {epochs[0]}-{epochs[-1]} remain ({len(found)} files): ModelCheckpoint keeps the newest "
            f"keep_checkpoint_max files (5 by default) and deletes older ones itself"
        )
    return "; ".join(parts) or None


class FolderReports:
    """The MindSpore files among ``names`` in ``folder``, read together the first time one is asked for (from
    any thread: the scan reads files on a pool); ``get(name)`` -> (report, sibling problem) or None."""

    def __init__(self, folder: str, names: list[str]) -> None:
        self.folder, self.names = folder, [n for n in names if n.endswith(MINDSPORE_SUFFIX)]
        self._lock = _thread.allocate_lock()
        self._read: tuple[dict[str, MindSporeReport], dict[str, str]] | None = None

    def __reduce__(self):  # handed to a forked reader (tui.core.scan_reads): read there afresh
        return FolderReports, (self.folder, self.names)

    def get(self, name: str) -> tuple[MindSporeReport, str | None] | None:
        if name not in self.names:
            return None
        with self._lock:
            if self._read is None:
                self._read = read_folder(self.folder, self.names)
        reports, problems = self._read
        return (reports[name], problems.get(name)) if name in reports else None


def read_folder(folder: str, names: list[str]) -> tuple[dict[str, MindSporeReport], dict[str, str]]:
    """The MindSpore checkpoints among ``names`` in ``folder`` (``.ckpt`` files whose first bytes say so), read,
    and the sibling problems of ``incomplete``."""
    reports = {}
    for name in names:
        if (
            name.endswith(MINDSPORE_SUFFIX)
            and (report := read_cached(os.path.join(folder, name))) is not None
        ):
            reports[name] = report
    return reports, incomplete(reports)


def read_cached(path: str) -> MindSporeReport | None:
    """``read_mindspore(path)`` when the file's first bytes say MindSpore, else None; kept in the summary
    cache while the file is unchanged (a pure function of the file)."""
    from tui.core.mindspore_ckpt.records import MindSporeReport
    from tui.core.mindspore_ckpt.wire import read_mindspore, sniff

    def compute() -> MindSporeReport | None:
        return read_mindspore(path) if sniff(read_head(path)) is not None else None

    return cache.memo(
        f"mindspore/1/{os.path.basename(path)}",  # one entry per reader and folder: name the file
        [(path, None)],
        compute,
        encode=lambda r: r.to_json() if r is not None else None,
        decode=lambda d: MindSporeReport.from_json(d) if d is not None else None,
    )
