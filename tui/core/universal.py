"""``ckpt-tui convert universal STEP``: DeepSpeed's universal form written into a ZeRO step checkpoint, beside
its shards (docs/TRAINER.md "Requeued on another node count", docs/FORMAT.md).

The step folder is rebuilt in a temp folder beside it (its files hard-linked, not copied; a copy where the
filesystem has no links), the universal form is written into ``universal/`` of that temp folder by the
torch-backed ``write`` (``tui.convert.universal``; the core never imports it), and the temp folder replaces
the step folder through the commit protocol, with the old manifest's kind and fields and its known
hashes. A kill at any moment leaves the committed step folder as it was, or the converted one.
Refused before anything is written: a folder without ZeRO shards, one that already holds the universal
form, one that is not a committed checkpoint, and one with a pickle whose static scan is not clean
(``ds_to_universal`` unpickles the shards with ``weights_only=False``: the rule of ``promote``).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui.core import commit as protocol
from tui.core.files import FULL_WALK_DEPTH, is_within, read_refusal, walk
from tui.core.names import MANIFEST_NAME
from tui.core.promote import pickle_trouble
from tui.core.resume_layout import DS_TAG_DIR, UNIVERSAL_TAG, has_universal, zero_shards

Writer = Callable[[Path, Path], None]  # (tag folder with the ZeRO shards, universal tag folder to create)
MANIFEST_OWN_KEYS = ("format", "kind", "created", "files")


class UniversalError(ValueError):
    """A step checkpoint that cannot be converted; one line naming it and why. Nothing was changed."""


@dataclass
class UniversalResult:
    source: str
    files_added: int
    bytes_added: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source, "universal": f"{self.source}/{UNIVERSAL_TAG}",
            "files_added": self.files_added, "bytes_added": self.bytes_added, "seconds": round(self.seconds, 2),
        }  # fmt: skip


def convert_universal(root: Path, step: Path, write: Writer) -> UniversalResult:
    """Write the universal form of the step checkpoint ``step`` (under ``root``) into it; UniversalError
    (nothing changed) when it cannot be."""
    root, step = Path(root), Path(step)
    shown = step.relative_to(root).as_posix() if is_within(step, root) else str(step)
    manifest = _check(root, step, shown)
    started = time.monotonic()
    tmp = protocol.unique_temp_for(step)
    old = None
    try:
        _link_tree(step, tmp)
        write(tmp / DS_TAG_DIR, tmp / UNIVERSAL_TAG)
        if not has_universal(tmp):
            raise UniversalError(f"{shown}: the conversion wrote no {UNIVERSAL_TAG}/zero/; nothing changed")
        added = [p.stat().st_size for p in (tmp / UNIVERSAL_TAG).rglob("*") if p.is_file()]
        old = protocol.unique_temp_for(step, protocol.OLD_MARK)
        protocol.commit(
            tmp, step, kind=manifest["kind"], old=old,
            hashes={rel: meta["sha256"] for rel, meta in manifest["files"].items()},
            fields={k: v for k, v in manifest.items() if k not in MANIFEST_OWN_KEYS},
        )  # fmt: skip
    except OSError as e:
        raise UniversalError(
            f"{shown}: cannot write the universal form ({e.strerror or e}); nothing changed"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after a commit; else the partial conversion
        if old is not None and old.is_dir() and not any(old.iterdir()):
            old.rmdir()
    return UniversalResult(shown, len(added), sum(added), time.monotonic() - started)


def _check(root: Path, step: Path, shown: str) -> dict[str, Any]:
    """The step's manifest, once every refusal has been ruled out."""
    if why := read_refusal(step, root, folder_ok=True):
        raise UniversalError(f"{shown}: {why}; nothing converted")
    tag = step / DS_TAG_DIR
    if not zero_shards(tag):
        raise UniversalError(
            f"{shown}: not a DeepSpeed ZeRO step checkpoint (no {DS_TAG_DIR}/zero_pp_rank_* shards); "
            "only those have a universal form"
        )
    if has_universal(step):
        raise UniversalError(
            f"{shown}: already holds DeepSpeed's universal form ({UNIVERSAL_TAG}/); nothing to do"
        )
    if problems := protocol.verify(step, root=root):
        raise UniversalError(f"{shown}: not a committed checkpoint ({problems[0]}); nothing converted")
    if trouble := pickle_trouble(tag):
        raise UniversalError(f"{shown}: cannot be converted ({trouble})")
    manifest = protocol.read_manifest(step)
    assert manifest is not None  # verify said it is there and valid
    return manifest


def _link_tree(source: Path, dest: Path) -> None:
    """Every regular file of ``source`` (but its manifest) at the same place under ``dest``: a hard link
    (the files are never written through it), a copy where linking fails."""
    for dirpath, _dirnames, filenames in walk(source, max_depth=FULL_WALK_DEPTH):  # never enters links
        here = Path(dirpath)
        into = dest / here.relative_to(source)
        into.mkdir(parents=True, exist_ok=True)
        for name in filenames:
            path = here / name
            if (here == source and name == MANIFEST_NAME) or path.is_symlink() or not path.is_file():
                continue
            try:
                os.link(path, into / name)
            except OSError:
                shutil.copy2(path, into / name)
