"""Model set-up that matters on a GPU and can be checked on CPU: fp32 weights from a 16-bit folder,
gradient checkpointing, in-place compilation of the blocks, and the collective timeout."""

from __future__ import annotations

from datetime import timedelta

import pytest

from trainer.config import parse_args
from trainer.data import LabelMap
from trainer.modeling import ModelError, check_compile_backend, compile_blocks, load_model

LABELS = LabelMap(("neg", "pos"))


def _batch():
    import torch

    ids = torch.tensor([[2, 4, 11, 8, 3, 0], [2, 7, 15, 12, 9, 3]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": torch.tensor([0, 1])}


def _saved(tmp_path, dtype):
    from tests.fixtures.ckpt import tiny_model

    folder = tmp_path / "base"
    tiny_model(seed=1).to(dtype).save_pretrained(folder)
    return folder


def test_a_bf16_saved_base_trains_with_fp32_parameters(tmp_path):
    """transformers 5 loads the saved dtype by default; an update far below bf16's resolution must land."""
    import torch
    from accelerate import Accelerator

    from tests.fixtures.ckpt import fresh_accelerate_state

    model = load_model(_saved(tmp_path, torch.bfloat16), LABELS, parse_args([]))
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    with fresh_accelerate_state():
        accelerator = Accelerator(cpu=True, mixed_precision="bf16")
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.0)
        model, optimizer = accelerator.prepare(model, optimizer)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        accelerator.backward(model(**_batch()).loss)
        optimizer.step()
    moved = [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    # Adam moves every weight by ~lr = 1e-6: lost in bf16 (8 bits of mantissa), kept in fp32.
    assert len(moved) > len(before) // 2
    lost_in_bf16 = [n for n in moved if torch.equal(before[n].bfloat16(), dict(model.named_parameters())[n].bfloat16())]
    assert lost_in_bf16, "the update should be below bf16's resolution for this test to mean anything"


def _grads(model):
    import torch

    torch.manual_seed(5)
    model.train()
    model.zero_grad()
    model(**_batch()).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_gradient_checkpointing_gives_the_same_gradients(tmp_path):
    import torch

    folder = _saved(tmp_path, torch.float32)
    plain = load_model(folder, LABELS, parse_args([]))
    ckpt = load_model(folder, LABELS, parse_args(["--train.gradient_checkpointing"]))
    def checkpointed(model):
        return any(getattr(m, "gradient_checkpointing", False) for m in model.modules())

    assert checkpointed(ckpt) and not checkpointed(plain)
    ckpt.load_state_dict(plain.state_dict())  # the classifier head is freshly initialised on each load
    a, b = _grads(plain), _grads(ckpt)
    assert a.keys() == b.keys() and a
    for name in a:  # dropout masks are replayed in the recomputation: same gradients
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)


def test_compile_blocks_in_place_keeps_the_state_dict_keys():
    import torch

    from tests.fixtures.ckpt import tiny_model

    model = tiny_model(seed=2)
    keys = list(model.state_dict())
    with torch.no_grad():
        expected = model(**_batch()).logits
    compile_blocks(model, "eager")
    layers = model.deberta.encoder.layer
    assert all(layer._compiled_call_impl is not None for layer in layers)
    assert list(model.state_dict()) == keys  # the fold folder must load into a plain model
    with torch.no_grad():
        torch.testing.assert_close(model(**_batch()).logits, expected)
    compile_blocks(tiny_model(), None)  # a no-op


def test_an_unknown_compile_backend_is_one_line():
    check_compile_backend(None)
    check_compile_backend("inductor")
    with pytest.raises(ModelError, match="unknown torch.compile backend 'indcutor'"):
        check_compile_backend("indcutor")


@pytest.mark.parametrize("launched", [False, True])
def test_the_collective_timeout_reaches_every_backend(monkeypatch, launched):
    from trainer.distributed import process_group_handlers

    for name in ("RANK", "LOCAL_RANK"):
        if launched:
            monkeypatch.setenv(name, "0")
        else:
            monkeypatch.delenv(name, raising=False)
    (handler,) = process_group_handlers(parse_args(["--run.dist_timeout_s", "4321"]).run.dist_timeout_s)
    kwargs = handler.to_kwargs()  # what accelerate hands to init_process_group / deepspeed.init_distributed
    assert kwargs["timeout"] == timedelta(seconds=4321)
    assert kwargs.get("backend") == ("gloo" if launched else None)  # no GPU here
    assert parse_args([]).run.dist_timeout_s == 7200


class _Coordinator:
    def __init__(self, invalid: bool):
        self.invalid, self.invalidations = invalid, 0

    def is_invalid_trace(self) -> bool:
        return self.invalid

    def _invalidate_trace(self) -> None:
        assert not self.invalid, "DeepSpeed raises when an invalid trace is invalidated again"
        self.invalid, self.invalidations = True, self.invalidations + 1


def test_reset_zero3_trace_invalidates_a_recorded_trace_once_and_ignores_other_engines():
    from types import SimpleNamespace

    from trainer.modeling import reset_zero3_trace

    coordinator = _Coordinator(invalid=False)
    offload = SimpleNamespace(get_param_coordinator=lambda: coordinator)
    engine = SimpleNamespace(optimizer=SimpleNamespace(parameter_offload=offload))
    assert reset_zero3_trace(engine) and coordinator.invalidations == 1
    assert reset_zero3_trace(engine) and coordinator.invalidations == 1  # already invalid: left alone
    assert not reset_zero3_trace(SimpleNamespace(optimizer=SimpleNamespace()))  # ZeRO-2: no offload
    assert not reset_zero3_trace(__import__("torch").nn.Linear(2, 2))  # a plain module: no engine
