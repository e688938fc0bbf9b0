"""Which process layout (world size, ZeRO stage) wrote a step checkpoint, and whether this launch can
load it.

``save_state`` is per rank: each rank writes its ZeRO partitions and its RNG state, and the data position
in train_state.json counts that rank's batches. Such a checkpoint loads only on the layout that wrote it;
anything else fails deep inside accelerate/DeepSpeed (``pytorch_model.bin`` not found, a missing shard) or,
worse, loads with another rank's data position. So the trainer compares before it loads and says in one
line what the checkpoint needs (docs/TRAINER.md, "Requeued on another node count").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tui.core.names import RANDOM_STATES, ZERO_RANK_SHARD

# accelerate's save_state under DeepSpeed puts the engine's checkpoint in this tag folder.
DS_TAG_DIR = "pytorch_model"


class ResumeLayoutError(ValueError):
    """A checkpoint written by another process layout; one line naming what it needs."""


@dataclass(frozen=True)
class Layout:
    world_size: int
    zero_stage: int | None  # None: no DeepSpeed (plain accelerate / DDP)

    def describe(self) -> str:
        procs = f"{self.world_size} process{'es' if self.world_size != 1 else ''}"
        engine = "without DeepSpeed" if self.zero_stage is None else f"under DeepSpeed ZeRO-{self.zero_stage}"
        return f"{procs} {engine}"

    def to_state(self) -> dict[str, int | None]:
        """What train_state.json records, so a later launch need not guess from file names."""
        return {"world_size": self.world_size, "zero_stage": self.zero_stage}


def current_layout(accelerator) -> Layout:
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    stage = int(plugin.zero_stage) if plugin is not None else None
    return Layout(accelerator.num_processes, stage)


def layout_of(folder: Path, state: dict | None) -> Layout | None:
    """The layout that wrote the step checkpoint ``folder``: from its train_state.json when it says so,
    else from its file names (checkpoints written before train_state.json recorded it); None when the
    files tell nothing (no RNG state files)."""
    state = state or {}
    world, stage = state.get("world_size"), state.get("zero_stage", "?")
    if isinstance(world, int) and world > 0 and (stage is None or isinstance(stage, int)):
        return Layout(world, stage)
    return _layout_from_files(Path(folder))


def _layout_from_files(folder: Path) -> Layout | None:
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError:
        return None
    ranks = {int(m.group(1)) for n in names if (m := RANDOM_STATES.match(n))}  # every rank writes one
    if not ranks:
        return None
    tag = folder / DS_TAG_DIR
    if not tag.is_dir():
        return Layout(len(ranks), None)
    shards = [n for n in (p.name for p in tag.iterdir()) if ZERO_RANK_SHARD.match(n)]
    if any(n.endswith("_model_states.pt") for n in shards):
        stage = 3  # ZeRO-3 partitions the parameters: one model-states file per rank
    elif shards:
        stage = 2  # ZeRO-1/2 partition only the optimizer (file names cannot tell 1 from 2)
    else:
        stage = 0
    return Layout(len(ranks), stage)


def _same(a: Layout, b: Layout) -> bool:
    # ZeRO-1 and ZeRO-2 write and load the same per-rank optimizer partitions.
    stage_a, stage_b = ({1: 2}.get(s, s) for s in (a.zero_stage, b.zero_stage))
    return a.world_size == b.world_size and stage_a == stage_b


def check_resumable_here(folder: Path, state: dict | None, here: Layout) -> None:
    """Raise ResumeLayoutError unless this launch's layout is the one that wrote ``folder``."""
    needed = layout_of(folder, state)
    if needed is None or _same(needed, here):
        return
    hint = f"relaunch with {needed.world_size} process{'es' if needed.world_size != 1 else ''}"
    if needed.zero_stage is not None:
        hint += f" and DeepSpeed ZeRO-{needed.zero_stage}"
    raise ResumeLayoutError(
        f"{folder}: written by {needed.describe()}, this launch has {here.describe()}; {hint} "
        "(or --overwrite to start again)"
    )
