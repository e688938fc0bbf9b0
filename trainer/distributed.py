"""What every entry point needs from torch.distributed before it builds an ``Accelerator``."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

T = TypeVar("T")

# accelerate's own default is 600 s for NCCL (DeepSpeed: 10 min), shorter than rank 0 may take to hash and
# fsync a large checkpoint or write a fold model while every other rank waits in a barrier.
DEFAULT_TIMEOUT_S = 7200


def main_decides(accelerator, decide: Callable[[], T]) -> T:
    """``decide()`` run on the main process only, its result returned on every rank.

    For every decision read from the shared filesystem (which checkpoint to resume, which folds are
    done): NFS and Lustre cache listings and attributes per node, so ranks that each look for themselves
    can disagree, and then train on different batches or wait in different collectives. An exception on
    the main process is raised on every rank, so none is left waiting.
    """
    from accelerate.utils import broadcast_object_list

    box: list = [None]
    if accelerator.is_main_process:
        try:
            box[0] = (True, decide())
        except Exception as e:  # re-raised below, on every rank
            box[0] = (False, e)
    if accelerator.num_processes > 1:
        broadcast_object_list(box, from_process=0)
    ok, value = box[0]
    if not ok:
        raise value
    return value


def process_group_handlers(timeout_s: int = DEFAULT_TIMEOUT_S) -> list:
    """accelerate's kwargs handlers for this machine: the collective timeout on every backend, and gloo
    without a GPU (accelerate would otherwise pick none, and each of the N launched processes would
    believe it is alone). The timeout reaches DeepSpeed's ``init_distributed`` too."""
    import torch
    from accelerate.utils import InitProcessGroupKwargs

    launched = "RANK" in os.environ or "LOCAL_RANK" in os.environ  # a launcher set up a process group
    timeout = timedelta(seconds=timeout_s)
    if launched and not torch.cuda.is_available():
        return [InitProcessGroupKwargs(backend="gloo", timeout=timeout)]
    # backend stays accelerate's default ("nccl"), which its to_kwargs() drops: accelerate picks the backend.
    return [InitProcessGroupKwargs(timeout=timeout)]
