"""The core never imports torch & co.; `ckpt-tui ls` never imports torch (fresh subprocesses)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import tui.core
from tests.fixtures import synthetic as s

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN_CORE = ("torch", "transformers", "deepspeed", "textual", "accelerate", "safetensors.torch", "mindspore")
FORBIDDEN_LS = ("torch", "transformers", "deepspeed", "accelerate", "mindspore")
CORE_MODULES = sorted(m.name for m in pkgutil.iter_modules(tui.core.__path__))


def loaded_after(code: str) -> set[str]:
    probe = code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    import json

    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_imports_nothing_heavy(module):
    loaded = loaded_after(f"import tui.core.{module}")
    assert not [m for m in FORBIDDEN_CORE if m in loaded]


@pytest.mark.slow  # ~6 s: pandas + sklearn in a fresh interpreter
def test_ls_and_metrics_never_import_torch(tmp_path):
    s.make_tree(tmp_path, 10)
    s.write_run(tmp_path, "run1", lora=True)
    loaded = loaded_after(
        "import contextlib, io\nfrom tui.cli import main\n"
        f"with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['ls', {str(tmp_path)!r}, '--json']) == 0\n"
        f"    assert main(['inspect', {str(tmp_path / 'run1' / 'tiny-bert_fold_0')!r}, '--json']) == 0\n"
        f"    assert main(['metrics', {str(tmp_path / 'run1')!r}, '--json']) == 0\n"
    )
    assert not [m for m in FORBIDDEN_LS if m in loaded]
    assert "textual" not in loaded


# What a tree of safetensors models never needs at start-up (each costs milliseconds of every `ls`): the
# pickle, DCP, MindSpore and ZeRO readers, the thread pool (work starts inline), socket (only a .lock needs the
# host name), orjson (worth its import only past ORJSON_AFTER_BYTES of JSON), shutil (bz2, lzma: argparse
# imports it for the terminal width; the CLI reads that itself).
NOT_FOR_SAFETENSORS = (
    "tui.core.pickle_scan.formats", "tui.core.pickle_scan.machine", "tui.core.dcp", "tui.core.mindspore_ckpt.wire",
    "tui.core.mindspore_ckpt.records", "concurrent.futures", "socket", "orjson", "tui.cli.listing", "tui.cli.serve_cmd",
    "shutil", "tui.core.zero",
)  # fmt: skip


def test_ls_and_inspect_of_safetensors_models_import_only_what_they_use(tmp_path):
    s.write_hf_model(tmp_path / "run" / "model", shards=3)
    s.write_hf_model(tmp_path / "run" / "single")
    loaded = loaded_after(
        "import contextlib, io\nfrom tui.cli import main\n"
        f"with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['ls', {str(tmp_path)!r}, '--json', '--no-cache']) == 0\n"
        f"    assert main(['inspect', {str(tmp_path / 'run' / 'model')!r}, '--json', '--no-cache']) == 0\n"
    )
    assert "tui.core.weights" in loaded  # the probe did read the models
    assert [m for m in NOT_FOR_SAFETENSORS if m in loaded] == []


# What `ls` of HF Trainer checkpoints (zip pickles a plain torch.save writes) never needs: typing (annotations
# only), tarfile (torch < 0.4's format), zipfile (the fast zip reader reads them): ~11 ms of every start.
NOT_FOR_TRAINER_CHECKPOINTS = ("typing", "tarfile", "zipfile")


def test_ls_of_trainer_checkpoints_imports_only_what_it_uses(tmp_path):
    for step in (10, 20):
        s.write_hf_checkpoint(tmp_path / "run" / f"checkpoint-{step}", step)
    loaded = loaded_after(
        "import contextlib, io\nfrom tui.cli import main\n"
        f"with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['ls', {str(tmp_path)!r}, '--json', '--no-cache']) == 0\n"
    )
    assert "tui.core.pickle_scan.formats" in loaded  # the probe did scan the pickles
    assert [m for m in NOT_FOR_TRAINER_CHECKPOINTS if m in loaded] == []


# What `inspect` of a safetensors model never needs (each costs its import, or its dataclass's generated
# methods compiled, at every start): hashing (only --verify and commits hash), typing (annotations only),
# threading (the locks come from _thread), the TensorEntry objects, the MindSpore/DCP base report, a
# metric (the model has no evaluation) and a lock's verdict (it has no .lock).
NOT_FOR_INSPECT = (
    "hashlib", "typing", "threading", "heapq", "tui.core.tensor_entry", "tui.core.split_weights", "tui.core.metric",
    "tui.core.lock_holder",
)  # fmt: skip


def test_inspect_of_a_safetensors_model_imports_only_what_it_uses(tmp_path):
    s.write_hf_model(tmp_path / "run" / "model", shards=3)
    loaded = loaded_after(
        "import contextlib, io\nfrom tui.cli import main\n"
        f"with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['inspect', {str(tmp_path / 'run' / 'model')!r}, '--json']) == 0\n"
    )
    assert "tui.core.weights" in loaded
    assert [m for m in NOT_FOR_INSPECT if m in loaded] == []


def test_the_kind_literal_for_type_checkers_lists_the_kinds():
    # model.py spells the kinds twice: KINDS at run time, Kind = Literal[...] for type checkers only
    import ast

    from tui.core import model

    tree = ast.parse((REPO / "tui" / "core" / "model.py").read_text())
    literals = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["Kind"]
        and isinstance(node.value, ast.Subscript)
    ]
    assert len(literals) == 1
    assert tuple(ast.literal_eval(literals[0].slice)) == model.KINDS
