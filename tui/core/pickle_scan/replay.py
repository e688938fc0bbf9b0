"""One pickle replayed into its placeholder object graph, for readers that need what a pickle holds rather
than a ``PickleReport`` (torch DCP's ``.metadata``). Same machine, limits and allowlist as ``scan_pickle``;
nothing is imported or called.

API::

    @dataclass Replay(root, globals, unsafe_globals, problems)
    replay_pickle(data: bytes, label: str, what: str = "pickle") -> Replay   # never raises
    class_of(node) -> str | None          # "module.Name" of the class a Call builds or calls
    state_of(node) -> dict[str, Any]      # a built object's attributes (BUILD with a dict, or SETITEMs)
    shape_of(value) -> tuple[int, ...] | None   # a torch.Size / tuple of dims, bounded like tensor shapes

The graph holds ``Call`` (a class or function "called" with ``args``; ``state`` from BUILD), ``DictNode``
(``pairs``), ``SetNode``, ``GlobalRef`` (``module``, ``name``), ``Persistent``, lists, tuples and constants.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tui.core.pickle_scan.machine import Call, DictNode, GlobalRef, Machine, ScanStop, SetNode, _shape
from tui.core.pickle_scan.report import global_problems
from tui.core.text import safe_message

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "Call",
    "DictNode",
    "GlobalRef",
    "Replay",
    "SetNode",
    "class_of",
    "replay_pickle",
    "shape_of",
    "state_of",
]


@dataclass
class Replay:
    root: Any  # None when the replay stopped (a problem says why)
    globals: dict[str, str] = field(default_factory=dict)  # "module.name" -> "ok" | "unlisted" | "unsafe"
    unsafe_globals: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def replay_pickle(data: bytes, label: str, what: str = "pickle") -> Replay:
    """Replay the pickle at the start of ``data``. Problems: why it stopped (``what`` names it in the line),
    and every global off the allowlist, as ``scan_pickle`` words them. Never raises."""
    machine = Machine()
    try:
        root, _ = machine.run(data, 0)
        out = Replay(root)
    except ScanStop as e:
        out = Replay(None, problems=[e.describe(label, what)])
    except Exception as e:  # "never raises": a last line of defence around the machine
        out = Replay(None, problems=[f"{label}: {what} could not be replayed ({type(e).__name__}: {e})"])
    out.globals = dict(machine.globals)
    out.unsafe_globals, flagged = global_problems(machine.globals, label)
    out.problems = [safe_message(p) for p in flagged + out.problems]
    return out


def class_of(node: Any) -> str | None:
    if isinstance(node, Call) and isinstance(node.func, GlobalRef):
        return f"{node.func.module}.{node.func.name}"
    return None


def state_of(node: Any) -> dict[str, Any]:
    """String-keyed attributes of a rebuilt object: its BUILD state dict (dataclasses, ``__getstate__``
    dicts), or the SETITEMs of a dict subclass; {} when it has none."""
    pairs: list = []
    if isinstance(node, Call):
        if isinstance(node.state, DictNode):
            pairs = node.state.pairs
        elif isinstance(node.state, tuple) and len(node.state) == 2 and isinstance(node.state[0], DictNode):
            pairs = node.state[0].pairs  # (dict state, slots state)
        elif node.pairs:
            pairs = node.pairs
    elif isinstance(node, DictNode):
        pairs = node.pairs
    return {k: v for k, v in pairs if isinstance(k, str)}


def shape_of(value: Any) -> tuple[int, ...] | None:
    return _shape(value)
