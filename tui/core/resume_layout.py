"""The process layout a resumable step checkpoint needs (docs/TRAINER.md, "Requeued on another node count").

accelerate's ``save_state`` is per rank: every rank writes ``random_states_<r>.pkl`` and, under DeepSpeed,
its ZeRO partitions in the ``pytorch_model/`` tag folder. So the folder loads only on the world size and
ZeRO stage that wrote it, unless it also holds DeepSpeed's universal form (the ``universal/`` tag folder
beside the shards, written by ``ckpt-tui convert universal``: a ``zero/`` folder of per-parameter fp32
weights and Adam moments, ``ds_to_universal``), which any layout can load. The trainer
records the layout in train_state.json (``world_size``, ``zero_stage``); older folders are read from their
file names. Standard library only: the trainer and ``ckpt-tui inspect`` share it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui.core.names import RANDOM_STATES, ZERO_RANK_SHARD

DS_TAG_DIR = "pytorch_model"  # accelerate's save_state puts the DeepSpeed engine's checkpoint here
UNIVERSAL_TAG = "universal"  # the tag folder `ckpt-tui convert universal` writes beside DS_TAG_DIR
UNIVERSAL_DIR = "zero"  # what ds_to_universal writes per parameter


@dataclass(frozen=True)
class Layout:
    world_size: int
    zero_stage: int | None  # None: no DeepSpeed (plain accelerate / DDP)
    universal: bool = False

    def describe(self) -> str:
        procs = f"{self.world_size} process{'es' if self.world_size != 1 else ''}"
        engine = "without DeepSpeed" if self.zero_stage is None else f"under DeepSpeed ZeRO-{self.zero_stage}"
        return f"{procs} {engine}"

    def same_as(self, other: Layout) -> bool:
        """Loads on ``other``: same world size and stage (ZeRO-1 and ZeRO-2 write the same files)."""
        a, b = ({1: 2}.get(s, s) for s in (self.zero_stage, other.zero_stage))
        return self.world_size == other.world_size and a == b

    def to_json(self) -> dict[str, Any]:
        """``ckpt-tui inspect --json``'s "resume" object."""
        if self.universal:
            where = ["any"]
        elif self.zero_stage:  # the trainer converts ZeRO-1/2/3 shards to the universal form on its own
            where = [
                self.describe(),
                f"any number of processes under DeepSpeed ZeRO-{self.zero_stage}",
                "any number of processes without DeepSpeed",
            ]
        elif self.zero_stage is None:  # the trainer writes it into ZeRO partitions (engine_switch)
            where = [self.describe(), "any number of processes under DeepSpeed ZeRO"]
        else:
            where = [self.describe()]
        return {
            "world_size": self.world_size,
            "zero_stage": self.zero_stage,
            "universal": self.universal,
            "resumable_on": where,
        }


def resumes_on(resume: dict[str, Any] | None) -> str | None:
    """The app's Overview line for ``inspect``'s "resume" object: "2 processes / any" (universal form
    written), "2 processes / any count under ZeRO-2 or without DeepSpeed", "1 process without DeepSpeed /
    any count under ZeRO"; None when absent."""
    if not isinstance(resume, dict) or not isinstance(resume.get("world_size"), int):
        return None
    world, stage = resume["world_size"], resume.get("zero_stage")
    procs = f"{world} process{'es' if world != 1 else ''}"
    if resume.get("universal"):
        return f"{procs} / any"
    if isinstance(stage, int) and stage > 0:
        return f"{procs} / any count under ZeRO-{stage} or without DeepSpeed"
    if stage is None:
        return f"{procs} without DeepSpeed / any count under ZeRO"
    return f"{procs} under DeepSpeed"


def has_universal(folder: Path) -> bool:
    """True when the step checkpoint ``folder`` holds DeepSpeed's universal form."""
    return any((Path(folder) / tag / UNIVERSAL_DIR).is_dir() for tag in (UNIVERSAL_TAG, DS_TAG_DIR))


def zero_shards(tag: Path) -> list[str]:
    """The ZeRO per-rank shard names in the DeepSpeed tag folder ``tag``; [] when it cannot be listed."""
    try:
        return [n for n in os.listdir(tag) if ZERO_RANK_SHARD.match(n)]
    except OSError:
        return []


def layout_of(folder: Path, state: dict | None) -> Layout | None:
    """The layout that wrote the step checkpoint ``folder``: train_state.json's ``world_size`` and
    ``zero_stage`` when it records them, else the file names; None when nothing tells (no RNG files)."""
    folder = Path(folder)
    state = state if isinstance(state, dict) else {}
    universal = has_universal(folder)
    world, stage = state.get("world_size"), state.get("zero_stage", "?")
    if isinstance(world, int) and not isinstance(world, bool) and world > 0:
        if stage is None or (isinstance(stage, int) and not isinstance(stage, bool)):
            return Layout(world, stage, universal)
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    ranks = {int(m.group(1)) for n in names if (m := RANDOM_STATES.match(n))}  # every rank writes one
    if not ranks:
        return None
    tag = folder / DS_TAG_DIR
    if not tag.is_dir():
        return Layout(len(ranks), None, universal)
    shards = zero_shards(tag)
    if any(n.endswith("_model_states.pt") for n in shards):
        stage = 3  # ZeRO-3 partitions the parameters: one model-states file per rank
    elif shards:
        stage = 2  # ZeRO-1/2 partition only the optimizer (the names cannot tell 1 from 2)
    else:
        stage = 0
    return Layout(len(ranks), stage, universal)
