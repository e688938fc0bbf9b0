"""Static scan of torch pickles (.pt/.pth/.bin/.ckpt): zip structure + pickle opcodes, never unpickled.

API (docs/ARCHITECTURE.md, "Core API")::

    @dataclass PickleReport(format, entries, tensors, parameters, dtypes, globals, unsafe_globals,
                            lightning, top_keys, problems, ...)
    scan_pickle(path) -> PickleReport        # never unpickles, never imports what it reads, never raises

Formats (``formats``, read the way ``torch.load`` reads them; docs/SECURITY.md "Pickle scanner"):

* ``"zip"``: what ``torch.save`` writes since torch 1.6; every ``*.pkl`` member is replayed (CRC reported,
  not enforced, as torch does), never a storage record.
* ``"tar"``: torch < 0.4: the pickles of the ``storages``, ``tensors`` and ``pickle`` members.
* ``"legacy"``: a pickle stream: a plain pickle (any protocol), or pre-1.6 ``torch.save`` (magic number,
  protocol, sys-info, object and storage-key pickles, all five replayed). Only the first 64 MiB are read.
* ``"not-pickle"``: anything else, with a problem saying so.

``verdict``: ``"unsafe"`` (a global off the exact allowlist, ``policy``/``allowlist``), ``"clean"`` (every
pickle torch would unpickle replayed to its STOP within the limits) or ``"not verified"``.

How: a small *symbolic* stack machine replays the opcodes (arguments decoded with ``struct`` for the
common binary opcodes and with ``pickletools``' own argument readers for the rest). It pushes inert
placeholders (a ``GLOBAL`` becomes a name, ``REDUCE`` a record of "call this name with these
arguments") and never imports or calls anything, so a malicious ``__reduce__`` is just data here.
Limits make hostile files cheap: at most 64 MiB of pickle bytes (legacy files: 4 MiB first, more only
if the pickles run past it), 2,000,000 opcodes (about 1 s) and 100,000 nested MARKs per file, 1,000,000
containers walked for names; no recursion anywhere (deeply nested pickles are walked with explicit
stacks). Hitting a limit is a problem "scan of ... stopped at a limit (...)"; counts are then partial.

What the replay yields:

* ``tensors``: the number of tensor objects (``torch._utils._rebuild_tensor*`` calls, including ones
  wrapped in ``_rebuild_parameter`` or a tensor subclass); a tensor object referenced twice (pickle memo)
  counts once. ``parameters``: the sum of their numels, from the shapes in the pickle, so views and
  shared storages count like ``sum(t.numel())`` does. ``dtypes``: dtype -> parameters, with safetensors
  names (F32, F16, BF16, I64, U8, BOOL, C64, F8_E4M3, ...) and torch's own name where safetensors has
  none (``complex128``, ``qint8``). Every tensor in the file counts: weights, buffers, optimizer moments.
  ``parameters_by_key`` splits the count by top-level key (e.g. ``state_dict`` vs ``optimizer_states``).
* ``entries``: the tensors' names, dotted key paths from the root (``l.weight`` in a state_dict,
  ``state_dict.l.weight`` in a Lightning checkpoint); ``tensor_table``: name -> [dtype, shape].
* ``storages`` / ``storage_bytes``: from the persistent ids ``('storage', torch.FloatStorage, key,
  location, numel)`` (torch >= 2.x writes ``torch.storage.UntypedStorage`` + a ``torch.<dtype>`` argument
  of ``_rebuild_tensor_v3`` for newer dtypes such as float8; numel is then in bytes). For zips, each
  storage is checked against its ``data/<key>`` record (missing or short records are problems).
* ``top_keys``: the root dict's keys (first 1000); ``lightning``: the root holds
  ``pytorch-lightning_version``, or ``state_dict`` with ``callbacks``/``optimizer_states``/``loops``.

Modules: ``allowlist`` (exact names), ``policy`` (``classify_global``, ``may_call``), ``machine`` (the symbolic pickle
machine), ``report`` (``PickleReport`` and what is read off the replay), ``formats`` (zip and legacy
files, the limits on bytes read; ``scan_pickle``), ``zipdir`` (a plain zip's central directory in one tight
pass; anything odd goes to ``zipfile``).

Speed: a file holding one pickle whose exact bytes were replayed before in this process (scheduler.pt,
training_args.bin, alike across a run's checkpoints) takes that replay (``formats._SHARED``, keyed by the
bytes themselves, never a digest a hostile file could collide with; at most 8 MiB of pickles, each kept
from its second replay on: an rng_state.pth, unlike every other, is never kept); the
verdict and report are the same as a fresh replay's. A zip directory equal outside its CRC fields to
one of a layout read twice before (optimizer.pt across a run's checkpoints) takes that one's reading and
its own pickle CRCs (``zipdir``, at most 32 layouts, 8 MiB); the members are the same as a full parse's.
A pickle equal to one replayed before but for the values of its BINFLOATs (optimizer.pt: the learning
rate changes at every checkpoint) takes that replay too (``formats.FloatTemplates``: no verdict, count or
name depends on a float's value; never for Lightning files, whose state is read off the graph, nor for a
replay that stopped early). A shared replay's graph is walked for tensor names once (``Machine.walked``).
"""

from __future__ import annotations

from tui.core.lazy import lazy_attributes

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~3 ms of every command's start)
if TYPE_CHECKING:
    from tui.core.pickle_scan.formats import scan_pickle
    from tui.core.pickle_scan.policy import classify_global
    from tui.core.pickle_scan.report import PickleReport

__all__ = ["PickleReport", "classify_global", "scan_pickle"]
# Loaded on first use (PEP 562): the scan imports ``sniff`` for every walk, while the machine, zip and tar
# readers (~6 ms of start-up) are needed only where a pickle is scanned.
_LAZY = {"scan_pickle": "formats", "classify_global": "policy", "PickleReport": "report"}


__getattr__ = lazy_attributes(__name__, _LAZY, globals())
