"""replay_pickle: the pickle machine's object graph for readers of pickled metadata (torch DCP)."""

from __future__ import annotations

import importlib
import os
import pickle

from tui.core.pickle_scan.dcp_names import DCP_METADATA_GLOBALS
from tui.core.pickle_scan.policy import classify_global
from tui.core.pickle_scan.replay import class_of, replay_pickle, shape_of, state_of


class Point:  # pickled by reference as tests.core.test_pickle_replay.Point
    def __init__(self) -> None:
        self.x, self.y = 1, (2, 3)


def test_graph_of_a_plain_object_and_its_state():
    r = replay_pickle(pickle.dumps({"p": Point(), "n": [1, 2]}, protocol=4), "meta")
    assert r.root is not None
    top = state_of(r.root)
    assert top["n"] == [1, 2]
    assert class_of(top["p"]) == "tests.core.test_pickle_replay.Point"
    assert state_of(top["p"]) == {"x": 1, "y": (2, 3)}
    assert r.unsafe_globals == ["tests.core.test_pickle_replay.Point"]
    assert r.problems == [
        "meta: pickle global tests.core.test_pickle_replay.Point is not on the allowlist "
        "(loading imports it and may run its code)"
    ]


def test_hostile_pickle_is_data_and_flagged(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    r = replay_pickle(pickle.dumps(Evil(), protocol=2), ".metadata")
    assert not marker.exists()
    assert r.problems[0].startswith(".metadata: unsafe pickle global posix.system")
    assert class_of(r.root) == "posix.system"


def test_truncated_pickle_stops_with_a_problem():
    data = pickle.dumps({"a": list(range(100))}, protocol=4)
    r = replay_pickle(data[:-10], ".metadata", what="DCP metadata")
    assert r.root is None
    assert r.problems[0].startswith(".metadata: DCP metadata is corrupt or truncated")


def test_shape_of_bounds_dims():
    assert shape_of((2, 3)) == (2, 3)
    assert shape_of((1 << 40, 1 << 40)) is None
    assert shape_of(("a",)) is None


def test_dcp_metadata_globals_are_real_torch_names_and_allowed():
    for name in sorted(DCP_METADATA_GLOBALS):
        module, _, attr = name.rpartition(".")
        assert hasattr(importlib.import_module(module), attr), name
        assert classify_global(module, attr) == "ok", name
