"""`ckpt-tui serve` arguments: localhost by default, a one-line warning for any other address, the token."""

from __future__ import annotations

import pytest

from tui.cli import main, serve_cmd


@pytest.fixture()
def served(monkeypatch):
    calls = []

    class Dummy:
        def serve(self):
            calls.append("served")

    def fake(root, host, port, token, poll=2.0):
        calls.append((host, port, token))
        return Dummy()

    monkeypatch.setattr(serve_cmd, "make_server", fake)
    return calls


def test_localhost_by_default_without_warning(tmp_path, served, capsys):
    assert main(["serve", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert served == [("127.0.0.1", 8000, None), "served"] and err == ""
    assert "http://127.0.0.1:8000/" in out


def test_other_host_warns_in_one_line(tmp_path, served, capsys):
    assert main(["serve", str(tmp_path), "--host", "0.0.0.0", "--port", "8123"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no authentication" in err and "--token" in err


def test_token_is_generated_and_carried_in_the_url(tmp_path, served, capsys):
    assert main(["serve", str(tmp_path), "--token"]) == 0
    token = served[0][2]
    assert token and len(token) >= 16
    assert f"?token={token}" in capsys.readouterr().out
    assert main(["serve", str(tmp_path), "--token", "abc", "--host", "::"]) == 0
    assert served[2][2] == "abc" and "unencrypted" in capsys.readouterr().err


@pytest.mark.parametrize("host, local", [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                         ("127.0.0.2", True), ("0.0.0.0", False), ("node7", False)])  # fmt: skip
def test_is_local(host, local):
    assert serve_cmd.is_local(host) is local


def test_bad_port_and_missing_root(tmp_path, capsys):
    assert main(["serve", str(tmp_path), "--port", "0"]) == 2
    assert main(["serve", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
