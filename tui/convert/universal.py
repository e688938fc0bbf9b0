"""DeepSpeed's universal checkpoint of a ZeRO tag folder (``deepspeed.checkpoint.ds_to_universal``): per
parameter fp32 weights, Adam ``exp_avg``/``exp_avg_sq`` and ``step``, loadable on any number of processes.
``tui.core.universal`` decides whether to convert and commits the result; this only writes it."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from types import SimpleNamespace

from tui.convert import ConvertError


def write_universal(tag_dir: Path, out: Path) -> None:
    """The universal form of the ZeRO tag folder ``tag_dir`` into the new folder ``out`` (its
    ``latest_universal`` lands in ``out``'s parent, as DeepSpeed writes it)."""
    try:
        with contextlib.redirect_stdout(sys.stderr):  # DeepSpeed logs to stdout on import; --json owns it
            from deepspeed.checkpoint import ds_to_universal
    except ImportError:
        raise ConvertError(
            f"{tag_dir}: the universal form needs deepspeed: pip install 'ckpt-tui[train]'"
        ) from None
    args = SimpleNamespace(
        input_folder=str(tag_dir), output_folder=str(out), num_extract_workers=1, num_merge_workers=1,
        keep_temp_folder=False, strict=True, inject_missing_state=True,
    )  # fmt: skip
    try:
        with contextlib.redirect_stdout(sys.stderr):  # its progress is not our output (--json)
            ds_to_universal.main(args)
    except (OSError, ValueError, KeyError, RuntimeError, AssertionError, IndexError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConvertError(f"{tag_dir}: DeepSpeed cannot convert it ({why})") from None
