"""The CPU tests' child processes never see a GPU, even when the parent does."""

from __future__ import annotations

from tests.subprocess_env import cpu_only


def test_cpu_only_hides_every_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setenv("SOME_SETTING", "kept")
    env = cpu_only()
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["SOME_SETTING"] == "kept"
    assert cpu_only({"PATH": "/bin"}) == {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": ""}
