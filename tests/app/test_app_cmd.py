"""`ckpt-tui ROOT` argument handling (the app itself is driven in test_app.py)."""

from __future__ import annotations

import pytest

from tui.cli import EXIT_USAGE, UsageError, main
from tui.cli.app_cmd import run_app


def test_missing_root_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(UsageError, match="no such folder"):
        run_app([str(tmp_path / "nope")])
    assert main([str(tmp_path / "nope")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope" in err


def test_file_root_and_bad_options_are_usage_errors(tmp_path):
    f = tmp_path / "x.safetensors"
    f.write_bytes(b"")
    with pytest.raises(UsageError, match="not a folder"):
        run_app([str(f)])
    with pytest.raises(UsageError, match="--poll"):
        run_app([str(tmp_path), "--poll", "-1"])
    with pytest.raises(UsageError):
        run_app([])
