"""The environment of the child processes the CPU tests launch (accelerate, DeepSpeed, scripts).

On a machine with a GPU those children would otherwise see it: a 2-process "CPU" launch switches to NCCL
(on a 1-GPU box rank 1 asks for cuda:1), and the bit-exact resume checks meet non-deterministic CUDA
kernels. The GPU lane (tests/gpu, ``pytest -m gpu``) launches with the GPU visible on purpose.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


def cpu_only(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's environment) with every GPU hidden."""
    out = dict(os.environ if env is None else env)
    out["CUDA_VISIBLE_DEVICES"] = ""
    return out


def free_port() -> int:
    """A free TCP port for a launch's rendezvous: the default 29500 collides with other tests on the box,
    and a killed store can leave its port busy for a moment."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
