"""Fixtures shared by the trainer's tests."""

import pytest


@pytest.fixture()
def trained_parts():
    """A tiny model and AdamW prepared by a real single-process CPU Accelerator."""
    import torch
    from accelerate import Accelerator

    from tests.fixtures.ckpt import fresh_accelerate_state, tiny_model

    with fresh_accelerate_state():
        accelerator = Accelerator(cpu=True)
        model = tiny_model(seed=1)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        model, optimizer = accelerator.prepare(model, optimizer)
        yield accelerator, model, optimizer
