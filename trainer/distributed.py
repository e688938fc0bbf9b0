"""What every entry point needs from torch.distributed before it builds an ``Accelerator``."""

from __future__ import annotations

import os


def process_group_handlers() -> list:
    """accelerate's kwargs handlers for this machine. Without a GPU a launched job needs the gloo backend:
    accelerate would otherwise pick none, and each of the N processes would believe it is alone."""
    import torch
    from accelerate.utils import InitProcessGroupKwargs

    launched = "RANK" in os.environ or "LOCAL_RANK" in os.environ  # a launcher set up a process group
    return [InitProcessGroupKwargs(backend="gloo")] if launched and not torch.cuda.is_available() else []
