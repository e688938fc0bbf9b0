"""Whether this launch can load a step checkpoint (``tui.core.resume_layout`` says which layout wrote it).

``save_state`` is per rank: each rank writes its ZeRO partitions and its RNG state, and the data position
in train_state.json counts that rank's batches. Such a checkpoint loads only on the layout that wrote it;
anything else fails deep inside accelerate/DeepSpeed (``pytorch_model.bin`` not found, a missing shard) or,
worse, loads with another rank's data position. So the trainer compares before it loads and says in one
line what the checkpoint needs (docs/TRAINER.md, "Requeued on another node count").
"""

from __future__ import annotations

from pathlib import Path

from tui.core.resume_layout import Layout, layout_of

__all__ = [
    "Layout", "ResumeLayoutError", "check_resumable_here", "current_layout", "layout_of", "layout_state",
    "other_layout",
]  # fmt: skip


class ResumeLayoutError(ValueError):
    """A checkpoint written by another process layout; one line naming what it needs."""


def current_layout(accelerator) -> Layout:
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    stage = int(plugin.zero_stage) if plugin is not None else None
    return Layout(accelerator.num_processes, stage)


def layout_state(layout: Layout) -> dict[str, int | None]:
    """What train_state.json records, so a later launch need not guess from file names."""
    return {"world_size": layout.world_size, "zero_stage": layout.zero_stage}


def other_layout(folder: Path, needed: Layout, here: Layout, alternative: str) -> ResumeLayoutError:
    """The one-line refusal: which layout wrote ``folder``, this launch's, and the relaunch that loads it
    (``alternative``: what else would, in parentheses)."""
    hint = f"relaunch with {needed.world_size} process{'es' if needed.world_size != 1 else ''}"
    if needed.zero_stage is not None:
        hint += f" and DeepSpeed ZeRO-{needed.zero_stage}"
    return ResumeLayoutError(
        f"{folder}: written by {needed.describe()}, this launch has {here.describe()}; {hint} {alternative}"
    )


def check_resumable_here(folder: Path, state: dict | None, here: Layout) -> None:
    """Raise ResumeLayoutError unless this launch's layout is the one that wrote ``folder``."""
    needed = layout_of(folder, state)
    if needed is None or needed.same_as(here):
        return
    raise other_layout(folder, needed, here, "(or --overwrite to start again)")
