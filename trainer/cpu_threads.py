"""How many threads torch uses per process on CPU.

Launchers set ``OMP_NUM_THREADS`` themselves when the user did not: ``accelerate launch`` to 1 (also for a
single process, so a one-process CPU run used 1 core of 2), ``torchrun`` to 1 for several processes. That
value says nothing about the machine, so it is replaced by the cores this process may run on
(``os.sched_getaffinity``, which honours cgroups/Slurm/taskset) divided by the processes on this machine.
A count the user chose is kept: ``train.cpu_threads``, or ``OMP_NUM_THREADS`` / accelerate's
``--num_cpu_threads_per_process`` given to the launcher. Launchers change the variable inside their own
process, after it started, so the launcher's start-up environment (``/proc/<ppid>/environ``) still holds
only what the user exported. GPU runs are left alone: the GPU does the work.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

THREADS_VAR = "OMP_NUM_THREADS"
LAUNCHER_FLAG = "--num_cpu_threads_per_process"
# Set in a process started by accelerate launch / torchrun (any of them).
LAUNCHED_MARKERS = ("LOCAL_RANK", "LOCAL_WORLD_SIZE", "ACCELERATE_MIXED_PRECISION", "TORCHELASTIC_RUN_ID")


@dataclass(frozen=True)
class ThreadChoice:
    threads: int | None  # None: keep what torch has (the user's OMP_NUM_THREADS)
    reason: str


@dataclass(frozen=True)
class Launcher:
    """What the user handed the launcher that started this process (None: not known)."""

    env: Mapping[str, str] | None
    argv: list[str] | None


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def local_processes(env: Mapping[str, str]) -> int:
    try:
        return max(1, int(env.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def _read_nul_separated(path: Path) -> list[str] | None:
    try:
        return [part for part in path.read_bytes().decode(errors="replace").split("\0") if part]
    except OSError:
        return None


def parent_launcher(pid: int | None = None) -> Launcher:
    """The start-up environment and command line of the parent process, where /proc shows them."""
    proc = Path("/proc") / str(os.getppid() if pid is None else pid)
    env_items = _read_nul_separated(proc / "environ")
    env = None if env_items is None else dict(item.split("=", 1) for item in env_items if "=" in item)
    return Launcher(env, _read_nul_separated(proc / "cmdline"))


def _set_by_user(env: Mapping[str, str], launcher: Launcher) -> bool:
    """Whether this process's OMP_NUM_THREADS is the user's choice rather than a launcher default."""
    if not any(marker in env for marker in LAUNCHED_MARKERS):
        return True  # no launcher: whoever set it is the user
    if launcher.env is None or launcher.argv is None:
        return env[THREADS_VAR].strip() != "1"  # both launchers default to 1; 1 is theirs
    flag_given = any(arg == LAUNCHER_FLAG or arg.startswith(LAUNCHER_FLAG + "=") for arg in launcher.argv)
    return THREADS_VAR in launcher.env or flag_given


def choose_threads(
    requested: int, env: Mapping[str, str], launcher: Launcher, cores: int, gpu: bool
) -> ThreadChoice | None:
    """The thread count for this process; None on a GPU machine (left alone, nothing to say)."""
    if gpu:
        return None
    if requested > 0:
        return ThreadChoice(requested, f"train.cpu_threads = {requested}")
    if THREADS_VAR in env and _set_by_user(env, launcher):
        return ThreadChoice(None, f"{THREADS_VAR}={env[THREADS_VAR]} as set")
    procs = local_processes(env)
    threads = max(1, cores // procs)
    launcher_note = (
        f" (replacing the launcher's {THREADS_VAR}={env[THREADS_VAR]})" if THREADS_VAR in env else ""
    )
    process_word = "process" if procs == 1 else "processes"
    return ThreadChoice(threads, f"{cores} cores available / {procs} {process_word} here{launcher_note}")


def configure_cpu_threads(requested: int = 0) -> str | None:
    """Apply the choice to torch in this process; returns the line to log once (None on GPU)."""
    import torch

    choice = choose_threads(
        requested, os.environ, parent_launcher(), available_cores(), torch.cuda.is_available()
    )
    if choice is None:
        return None
    if choice.threads is not None:
        torch.set_num_threads(choice.threads)
    return f"CPU threads per process: {torch.get_num_threads()} ({choice.reason})"
