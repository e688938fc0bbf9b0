#!/usr/bin/env python
"""K-fold fine-tuning entry point: ``accelerate launch bin/train.py [--config FILE] [--SECTION.KEY VALUE ...]``.

Thin on purpose: parse the config, validate inputs and the run folder (before any process group), train.
With no arguments it trains the embedded demo model on the embedded demo data (docs/TRAINER.md).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from trainer.config import ConfigError, parse_args  # noqa: E402
from trainer.data import DataError  # noqa: E402
from trainer.disk_guard import DiskFullError  # noqa: E402
from trainer.folds import FoldsError  # noqa: E402
from trainer.layout import ResumeLayoutError  # noqa: E402
from trainer.modeling import ModelError  # noqa: E402
from trainer.outputs import RunFolderError  # noqa: E402

USER_ERRORS = (ConfigError, DataError, FoldsError, ModelError, RunFolderError, ResumeLayoutError, DiskFullError)


def _is_first_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_args(argv)
        from trainer.plan import make_plan

        plan = make_plan(cfg)
    except USER_ERRORS as e:
        if _is_first_process():  # every launched process checks; one of them says so
            print(f"error: {e}", file=sys.stderr)
        return 2
    from trainer.loop import train

    try:
        train(cfg, plan)
    except USER_ERRORS as e:
        if _is_first_process():
            print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
