"""scan_pickle on real torch.save / Lightning / HF-style files (numbers vs torch truth), on malicious
pickles (the payload must never run), and the global allowlist."""

from __future__ import annotations

import argparse
import io
import os
import pickle
import pickletools
import subprocess
import zipfile

import pytest

from tests.fixtures.readers import Asm, torch_like_zip
from tui.core.pickle_scan import classify_global, scan_pickle

try:
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch (the train extra)")

ST_NAMES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64", "int32": "I32",
            "uint8": "U8", "bool": "BOOL", "float64": "F64"}  # fmt: skip


def tensors_in(obj) -> list:
    """Every tensor in a nested dict/list/tuple (what torch.load would hand back), in order."""
    out, todo = [], [obj]
    while todo:
        x = todo.pop()
        if torch is not None and isinstance(x, torch.Tensor):
            out.append(x)
        elif isinstance(x, dict):
            todo.extend(reversed(list(x.values())))
        elif isinstance(x, (list, tuple)):
            todo.extend(reversed(x))
    return out


def truth(obj) -> tuple[int, int, dict[str, int]]:
    """(tensors, parameters, dtype -> parameters) as torch counts them."""
    per: dict[str, int] = {}
    ts = tensors_in(obj)
    for t in ts:
        name = ST_NAMES[str(t.dtype).removeprefix("torch.")]
        per[name] = per.get(name, 0) + t.numel()
    return len(ts), sum(per.values()), per


def mixed_state_dict():
    g = torch.Generator().manual_seed(0)
    return {
        "encoder.weight": torch.randn(12, 8, generator=g),
        "encoder.bias": torch.randn(12, generator=g).half(),
        "head.weight": torch.randn(3, 12, generator=g).bfloat16(),
        "head.bias": torch.zeros(3, dtype=torch.bfloat16),
        "position_ids": torch.arange(16, dtype=torch.int64),
        "num_batches_tracked": torch.tensor(7),
    }


# ------------------------------------------------------------------------------------- real torch files


@needs_torch
@pytest.mark.parametrize("name", ["pytorch_model.bin", "fer-5_449.ckpt", "best_model.ckpt", "model.pth"])
def test_state_dict_counts_match_torch(tmp_path, name):
    sd = mixed_state_dict()
    path = tmp_path / name
    torch.save(sd, path)
    r = scan_pickle(path)
    assert r.format == "zip"
    assert r.problems == [] and r.unsafe_globals == []
    n, params, per = truth(torch.load(path, weights_only=True))
    assert (r.tensors, r.parameters, r.dtypes) == (n, params, per)
    assert set(per) == {"F32", "F16", "BF16", "I64"}
    assert r.entries == list(sd) == r.top_keys
    assert r.tensor_table["head.weight"] == ["BF16", [3, 12]]
    assert r.storages == len(sd)
    assert r.storage_bytes == sum(t.numel() * t.element_size() for t in sd.values())
    assert r.lightning is False
    assert r.pickle_name.endswith("/data.pkl")


@needs_torch
def test_whole_training_dict_with_optimizer_state(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 6)).sum().backward()
    opt.step()
    ckpt = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "epoch": 3,
        "args": argparse.Namespace(lr=1e-3, fold=2),
        "history": [0.9, 0.7],
    }
    path = tmp_path / "last.pt"
    torch.save(ckpt, path)
    r = scan_pickle(path)
    assert r.problems == [] and r.unsafe_globals == []
    assert "argparse.Namespace" in r.globals
    loaded = torch.load(path, weights_only=False)
    assert (r.tensors, r.parameters, r.dtypes) == truth(loaded)
    assert r.top_keys == ["model", "optimizer", "epoch", "args", "history"]
    assert r.parameters_by_key["model"] == sum(p.numel() for p in model.parameters())
    assert r.parameters_by_key["optimizer"] == truth(loaded["optimizer"])[1]
    assert "model.0.weight" in r.entries and "optimizer.state.0.exp_avg" in r.entries
    assert r.lightning is False


@needs_torch
def test_parameters_views_and_new_dtypes(tmp_path):
    base = torch.zeros(4, 6)
    obj = {
        "param": torch.nn.Parameter(torch.ones(3, 3)),
        "base": base,
        "row": base[1],  # a view: same storage, its own numel
        "f8": torch.zeros(5, dtype=torch.float8_e4m3fn),
        "u16": torch.zeros(2, 2, dtype=torch.uint16),
    }
    path = tmp_path / "mixed.pt"
    torch.save(obj, path)
    r = scan_pickle(path)
    assert r.problems == []
    assert r.tensors == 5
    assert r.parameters == sum(t.numel() for t in obj.values())
    assert r.dtypes == {"F32": 9 + 24 + 6, "F8_E4M3": 5, "U16": 4}
    assert r.storages == 4  # base and row share one


@needs_torch
def test_legacy_torch_format(tmp_path):
    sd = mixed_state_dict()
    path = tmp_path / "old.bin"
    torch.save(sd, path, _use_new_zipfile_serialization=False)
    r = scan_pickle(path)
    assert r.format == "legacy" and r.problems == []
    assert (r.tensors, r.parameters, r.dtypes) == truth(sd)
    assert r.top_keys == list(sd) == r.entries


def test_plain_pickle_is_legacy_without_tensors(tmp_path):
    path = tmp_path / "random_states_0.pkl"
    path.write_bytes(pickle.dumps({"step": 3, "rng": (1, 2, 3), "name": "x"}, protocol=4))
    r = scan_pickle(path)
    assert r.format == "legacy" and r.problems == [] and r.unsafe_globals == []
    assert (r.tensors, r.parameters, r.dtypes) == (0, 0, {})
    assert r.top_keys == ["step", "rng", "name"]


def test_torch_like_zip_without_torch(tmp_path):
    path = tmp_path / "sd.pt"
    path.write_bytes(torch_like_zip({"a.w": ("F32", [4, 5]), "b.w": ("BF16", [7]), "ids": ("I64", [3])}))
    r = scan_pickle(path)
    assert r.problems == []
    assert (r.tensors, r.parameters, r.dtypes) == (3, 30, {"F32": 20, "BF16": 7, "I64": 3})


def test_zip_missing_and_short_storage_records(tmp_path):
    good = torch_like_zip({"a": ("F32", [4]), "b": ("F32", [4])})
    src = zipfile.ZipFile(io.BytesIO(good))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for info in src.infolist():
            if info.filename == "archive/data/1":
                continue
            data = src.read(info)
            z.writestr(info.filename, data[:5] if info.filename == "archive/data/0" else data)
    path = tmp_path / "holes.pt"
    path.write_bytes(buf.getvalue())
    text = "\n".join(scan_pickle(path).problems)
    assert "1 storage record(s) named in archive/data.pkl missing from the archive: 1" in text
    assert "shorter than their tensors: 0 (5 of 16 bytes)" in text


@needs_torch
def test_torch_save_of_whole_module_flags_the_user_class(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(TinyNet(), path)
    r = scan_pickle(path)
    assert "torch.nn.modules.linear.Linear" in r.globals
    assert "torch.nn.modules.linear.Linear" not in r.unsafe_globals
    mine = f"{TinyNet.__module__}.TinyNet"
    assert r.unsafe_globals == [mine]
    assert r.problems == [
        f"whole.pt: pickle global {mine} is not on the allowlist (loading imports it and may run its code)"
    ]
    assert r.tensors == 2 and r.parameters == 3 * 4 + 3


if torch is not None:

    class TinyNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)


@needs_torch
def test_hf_style_training_args_and_rng_state_are_clean(tmp_path):
    transformers = pytest.importorskip("transformers")
    import random

    import numpy as np

    args = transformers.TrainingArguments(str(tmp_path / "out"), report_to=[], use_cpu=True)
    torch.save(args, tmp_path / "training_args.bin")  # exactly what Trainer._save does
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.random.get_rng_state()}
    torch.save(rng, tmp_path / "rng_state.pth")
    for name in ("training_args.bin", "rng_state.pth"):
        r = scan_pickle(tmp_path / name)
        assert r.problems == [] and r.unsafe_globals == [], (name, r.problems)
        assert r.verdict == "clean"
    assert (
        "transformers.training_args.TrainingArguments" in scan_pickle(tmp_path / "training_args.bin").globals
    )


# ------------------------------------------------------------------------------------------- Lightning


def lightning_like_dict(state_dict):
    return {
        "epoch": 1,
        "global_step": 10,
        "pytorch-lightning_version": "2.6.6",
        "state_dict": state_dict,
        "loops": {"fit_loop": {"state_dict": {}}},
        "callbacks": {"ModelCheckpoint{'monitor': 'val_loss'}": {"best_model_score": None}},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]}],
        "lr_schedulers": [],
        "hyper_parameters": {"hidden": 4},
    }


@needs_torch
def test_lightning_like_dict_is_detected(tmp_path):
    sd = mixed_state_dict()
    path = tmp_path / "epoch=1-step=10.ckpt"
    torch.save(lightning_like_dict(sd), path)
    r = scan_pickle(path)
    assert r.lightning is True and r.problems == []
    assert r.parameters_by_key == {"state_dict": truth(sd)[1]}
    assert r.entries == [f"state_dict.{k}" for k in sd]
    # without the version key, state_dict + optimizer_states/callbacks still says Lightning
    d = lightning_like_dict(sd)
    del d["pytorch-lightning_version"]
    torch.save(d, path)
    assert scan_pickle(path).lightning is True
    torch.save({"state_dict": sd, "epoch": 1}, path)
    assert scan_pickle(path).lightning is False


@needs_torch
def test_real_lightning_checkpoint(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")

    class M(pl.LightningModule):
        def __init__(self, hidden: int = 4):
            super().__init__()
            self.save_hyperparameters()
            self.a = torch.nn.Linear(3, hidden)
            self.b = torch.nn.Linear(hidden, 1)

        def training_step(self, batch, _):
            x, y = batch
            return torch.nn.functional.mse_loss(self.b(self.a(x)).squeeze(-1), y)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.01)

    data = torch.utils.data.TensorDataset(torch.randn(8, 3), torch.randn(8))
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpts", save_top_k=1, monitor=None)
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=[ckpt],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
    )
    model = M()
    trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=4))
    (path,) = (tmp_path / "ckpts").glob("*.ckpt")
    r = scan_pickle(path)
    assert r.lightning is True and r.verdict == "clean"
    assert r.problems == [] and r.unsafe_globals == [], r.problems
    loaded = torch.load(path, weights_only=False)
    assert (r.tensors, r.parameters, r.dtypes) == truth(loaded)
    assert r.parameters_by_key["state_dict"] == sum(p.numel() for p in model.parameters())
    assert {"state_dict", "optimizer_states", "pytorch-lightning_version"} <= set(r.top_keys)


# ------------------------------------------------------------------------------------ malicious pickles


class _Payload:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker):
    cmd = f"touch {marker}"
    return {
        "os.system": _Payload(os.system, (cmd,)),
        "builtins.eval": _Payload(eval, (f"__import__('os').system({cmd!r})",)),
        "subprocess": _Payload(subprocess.call, (["touch", str(marker)],)),
    }


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "subprocess"])
@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_malicious_plain_pickle_is_flagged_and_never_runs(tmp_path, kind, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"w": [1.0, 2.0], "x": _payloads(marker)[kind]}, protocol=protocol))
    r = scan_pickle(path)
    # protocols < 3 write Python 2 names: __builtin__.eval, commands.call (pickle's fix_imports)
    expected = {
        "os.system": {"posix.system", "os.system", "nt.system"},
        "builtins.eval": {"builtins.eval", "__builtin__.eval"},
        "subprocess": {"subprocess.call", "commands.call"},
    }[kind]
    assert set(r.unsafe_globals) & expected, r.globals
    assert any("unsafe pickle global" in p and "(would run code on load)" in p for p in r.problems)
    assert not marker.exists()


@needs_torch
@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "subprocess"])
def test_malicious_torch_save_is_flagged_and_never_runs(tmp_path, kind):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.ckpt"
    torch.save({"weight": torch.zeros(2, 2), "payload": _payloads(marker)[kind]}, path)
    assert not marker.exists()  # writing it does not run it either
    r = scan_pickle(path)
    assert r.format == "zip" and r.tensors == 1 and r.parameters == 4
    assert r.unsafe_globals and any("unsafe pickle global" in p for p in r.problems)
    assert not marker.exists()


def test_exact_problem_text_for_os_system(tmp_path):
    marker = tmp_path / "pwned"
    data = Asm(2).glob("os", "system").mark().str(f"touch {marker}").tuple().reduce().stop()
    path = tmp_path / "evil.pt"
    path.write_bytes(data)
    r = scan_pickle(path)
    assert r.unsafe_globals == ["os.system"]
    assert r.problems == ["evil.pt: unsafe pickle global os.system (would run code on load)"]
    assert not marker.exists()


def test_stack_global_through_memo(tmp_path):
    """Protocol 4: STACK_GLOBAL takes module and name from the stack, here fetched back from the memo."""
    a = Asm(4).str("posix").memoize().str("system").memoize().raw(b"0").raw(b"0")  # POP, POP
    a.str("harmless").raw(b"0")
    a.get(0).get(1).raw(b"\x93")  # BINGET 0, BINGET 1, STACK_GLOBAL
    a.mark().str("touch x").tuple().reduce()
    path = tmp_path / "memo.pkl"
    path.write_bytes(a.stop())
    pickletools.dis(path.read_bytes(), out=io.StringIO())  # it is a well-formed pickle
    r = scan_pickle(path)
    assert r.format == "legacy"
    assert r.unsafe_globals == ["posix.system"]


def test_dotted_name_reaching_os_through_an_allowed_module(tmp_path):
    a = Asm(4).str("torch.serialization").str("os.system").raw(b"\x93")
    a.mark().str("id").tuple().reduce()
    path = tmp_path / "dotted.pkl"
    path.write_bytes(a.stop())
    r = scan_pickle(path)
    assert r.unsafe_globals == ["torch.serialization.os.system"]
    assert "would run code on load" in r.problems[0]


@pytest.mark.parametrize(
    "module,name,verdict",
    [
        ("torch._utils", "_rebuild_tensor_v2", "ok"),
        ("torch._utils", "_rebuild_parameter", "ok"),
        ("torch", "FloatStorage", "ok"),
        ("torch", "bfloat16", "ok"),
        ("torch", "device", "ok"),
        ("torch.storage", "UntypedStorage", "ok"),
        ("torch.nn.modules.linear", "Linear", "ok"),
        ("torch.storage", "TypedStorage", "ok"),
        ("torch", "Tensor", "ok"),
        ("torch._utils", "_rebuild_qtensor", "ok"),
        ("collections", "OrderedDict", "ok"),
        ("builtins", "set", "ok"),
        ("_codecs", "encode", "ok"),
        ("numpy._core.multiarray", "_reconstruct", "ok"),
        ("numpy", "dtype", "ok"),
        ("argparse", "Namespace", "ok"),
        ("pathlib", "PosixPath", "ok"),
        ("transformers.training_args", "TrainingArguments", "ok"),
        ("accelerate.state", "PartialState", "ok"),
        ("lightning.fabric.utilities.data", "AttributeDict", "ok"),
        ("omegaconf.dictconfig", "DictConfig", "ok"),
        ("typing", "Any", "ok"),
        ("transformers.trainer_utils", "IntervalStrategy", "ok"),
        ("deepspeed.runtime.fp16.loss_scaler", "LossScaler", "ok"),
        # exact names only: class-like names in trusted namespaces are not allowed for their spelling
        ("torch.distributed.elastic.multiprocessing.subprocess_handler.subprocess_handler", "Popen", "unsafe"),
        ("torch.distributed.elastic.multiprocessing.subprocess_handler", "SubprocessHandler", "unsafe"),
        ("torch.utils.benchmark", "Timer", "unsafe"),
        ("torch.utils.benchmark.utils.timer", "Timer", "unsafe"),
        ("numpy.testing._private.utils", "runstring", "unsafe"),
        ("transformers", "TrainingArguments", "unlisted"),
        ("transformers.models.bert.modeling_bert", "BertModel", "unlisted"),
        ("accelerate", "Accelerator", "unlisted"),
        ("torch.nn.modules.module", "Module.__init__", "unsafe"),
        ("typing", "get_type_hints", "unlisted"),
        ("os", "system", "unsafe"),
        ("posix", "system", "unsafe"),
        ("nt", "system", "unsafe"),
        ("subprocess", "Popen", "unsafe"),
        ("builtins", "eval", "unsafe"),
        ("builtins", "exec", "unsafe"),
        ("builtins", "getattr", "unsafe"),
        ("builtins", "__import__", "unsafe"),
        ("__builtin__", "open", "unsafe"),
        ("sys", "modules", "unsafe"),
        ("shutil", "rmtree", "unsafe"),
        ("socket", "socket", "unsafe"),
        ("importlib", "import_module", "unsafe"),
        ("runpy", "run_path", "unsafe"),
        ("pty", "spawn", "unsafe"),
        ("webbrowser", "open", "unsafe"),
        ("torch.nn.modules.module", "Module.__init__.__globals__", "unsafe"),
        ("torch.serialization", "os.system", "unsafe"),
        ("builtins", "print", "unsafe"),
        ("functools", "partial", "unsafe"),
        ("collections", "namedtuple", "unlisted"),
        ("__main__", "Model", "unlisted"),
        ("torch", "load", "unsafe"),
        ("torch._utils", "_load_from_bytes", "unlisted"),
        ("torch.fx.graph_module", "reduce_graph_module", "unlisted"),
        ("torch.jit._script", "RecursiveScriptModule", "unlisted"),
        ("torch.hub", "load", "unsafe"),
        ("torch.hub", "download_url_to_file", "unlisted"),
        ("transformers.dynamic_module_utils", "get_class_from_dynamic_module", "unlisted"),
        ("transformers", "pipeline", "unlisted"),
        ("numpy", "memmap", "unlisted"),
    ],
)
def test_classify_global(module, name, verdict):
    assert classify_global(module, name) == verdict


@needs_torch
def test_deepspeed_zero_objects_are_allowed(tmp_path):
    """What ZeRO optimizer-state files hold besides tensors (checked against real ZeRO-2/3 fp32/bf16
    checkpoints: ZeroStageEnum, LossScaler, fragment_address, torch.Size), without launching DeepSpeed."""
    deepspeed = pytest.importorskip("deepspeed")
    from collections import OrderedDict

    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    state = {
        "optimizer_state_dict": {
            "zero_stage": ZeroStageEnum.gradients,
            "loss_scaler": LossScaler(1.0),
            "partition_count": [1],
            "base_optimizer_state": {"state": {0: {"exp_avg": torch.zeros(10)}}},
            "single_partition_of_fp32_groups": [torch.zeros(10)],
            "param_slice_mappings": [OrderedDict({"0.weight": fragment_address(numel=8, start=0)})],
        },
        "param_shapes": [OrderedDict({"0.weight": torch.Size([2, 4])})],
        "ds_config": {"zero_optimization": {"stage": 2}},
        "ds_version": deepspeed.__version__,
    }
    path = tmp_path / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    torch.save(state, path)
    r = scan_pickle(path)
    assert r.problems == [] and r.unsafe_globals == [], r.problems
    assert (r.tensors, r.parameters) == (2, 20) and r.verdict == "clean"


@needs_torch
@pytest.mark.parametrize("cut", [10, 60, -3])
def test_a_pickle_not_replayed_in_full_is_not_verified_never_clean(tmp_path, cut):
    path = tmp_path / "state.pt"
    torch.save({"w": torch.zeros(3)}, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    path.write_bytes(data[:cut] if cut > 0 else data.replace(b"FloatStorage", b"FloatStorag\xff", 1))
    r = scan_pickle(path)
    assert r.verdict == "not verified" and r.problems and r.unsafe_globals == []


@needs_torch
def test_whole_module_rebuilt_is_clean_but_calling_a_rebuilt_only_class_is_flagged(tmp_path):
    path = tmp_path / "seq.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()), path)
    assert scan_pickle(path).verdict == "clean"
    # REDUCE of TrainingArguments runs its constructor with the file's arguments
    a = Asm(2).glob("transformers.training_args", "TrainingArguments").mark().str("/tmp/x").tuple().reduce()
    path.write_bytes(a.stop())
    r = scan_pickle(path)
    assert r.verdict == "unsafe"
    assert r.unsafe_globals == ["transformers.training_args.TrainingArguments()"]
    assert "calling runs its constructor" in r.problems[0]


@needs_torch
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16] if torch else [])
def test_lightning_model_checkpoint_state_is_read_statically(tmp_path, dtype):
    sd = mixed_state_dict()
    d = lightning_like_dict(sd)
    d["optimizer_states"] = [{"state": {0: {"exp_avg": torch.zeros(12, 8)}}, "param_groups": []}]
    d["callbacks"] = {
        "ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min'}": {
            "monitor": "val_loss",
            "best_model_score": torch.tensor(0.25, dtype=dtype),
            "best_model_path": "/elsewhere/run/epoch=0-step=5.ckpt",
            "current_score": torch.tensor([0.5], dtype=dtype)[0],  # a view: storage offset 0 of a 1-element storage
            "best_k_models": {"/elsewhere/run/epoch=0-step=5.ckpt": torch.tensor(0.25, dtype=dtype)},
        }
    }
    path = tmp_path / "last.ckpt"
    torch.save(d, path)
    r = scan_pickle(path)
    assert r.verdict == "clean" and r.lightning
    assert r.lightning_state == {
        "epoch": 1,
        "global_step": 10,
        "monitor": "val_loss",
        "best_model_path": "/elsewhere/run/epoch=0-step=5.ckpt",
        "best_model_score": 0.25,
        "current_score": 0.5,
        "best_k_models": {"/elsewhere/run/epoch=0-step=5.ckpt": 0.25},
    }
    n, params, dtypes = truth(sd)
    assert r.tensors_by_key["state_dict"] == n and r.parameters_by_key["state_dict"] == params
    assert r.dtypes_by_key["state_dict"] == dtypes
    assert r.parameters_by_key["optimizer_states"] == 96


def test_lightning_scan_numbers_come_from_the_state_dict_and_the_best_is_marked(tmp_path):
    pytest.importorskip("torch")
    from tui.core.scan import scan

    folder = tmp_path / "ckpts"
    folder.mkdir()
    for step, score in ((5, 0.3), (10, 0.2), (15, 0.4)):
        d = lightning_like_dict({"w": torch.zeros(3, 2)})
        d["global_step"], d["epoch"] = step, step // 5
        d["optimizer_states"] = [{"state": {0: {"exp_avg": torch.zeros(3, 2), "exp_avg_sq": torch.zeros(3, 2)}}}]
        d["callbacks"] = {"ModelCheckpoint{}": {
            "monitor": "val_loss", "current_score": torch.tensor(score),
            "best_model_path": "/old/place/../../etc/epoch=2-step=10.ckpt" if step == 15 else "x",
        }}  # fmt: skip
        torch.save(d, folder / f"epoch={step // 5}-step={step}.ckpt")
    torch.save(d, folder / "last.ckpt")  # a copy of the newest: step 15
    infos = {i.path: i for i in scan(tmp_path)}
    assert [p for p, i in infos.items() if i.best] == ["ckpts/epoch=2-step=10.ckpt"]
    last = infos["ckpts/last.ckpt"]
    assert (last.step, last.epoch, last.parameters, last.tensors, last.dtypes) == (15, 3.0, 6, 1, {"F32": 6})
    assert infos["ckpts/epoch=2-step=10.ckpt"].metric.to_json() == {"name": "val_loss", "value": pytest.approx(0.2), "step": 10}


def test_a_rebuilt_only_class_called_through_rebuild_from_type_is_flagged(tmp_path):
    """torch._tensor._rebuild_from_type_v2(func, type, args, state) calls func(*args): func is judged as a call."""
    a = Asm(2).glob("torch._tensor", "_rebuild_from_type_v2").mark()
    a.glob("accelerate.state", "PartialState").glob("torch", "Tensor").mark().tuple().raw(b"}").tuple().reduce()
    path = tmp_path / "x.pt"
    path.write_bytes(a.stop())
    r = scan_pickle(path)
    assert r.verdict == "unsafe" and r.unsafe_globals == ["accelerate.state.PartialState()"]
