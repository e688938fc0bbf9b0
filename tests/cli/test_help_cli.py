"""`ckpt-tui --help` documents the app's `ckpt-tui ROOT` and the dispatch rule; `--version`; a command
name wins over a folder of that name."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest

from tui import __version__
from tui.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_help_documents_the_app_its_options_and_the_dispatch_rule():
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from tui.cli import main; sys.exit(main())", "--help"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0 and out.startswith("usage: ckpt-tui ROOT")
    for text in ("ckpt-tui ROOT [options] opens the app", "--poll SECONDS", "--keep K", "--metric NAME",
                 "--no-cache", "--version", "ckpt-tui ./ls", "diff", "Exit codes"):  # fmt: skip
        assert text in out, text
    assert max(len(line) for line in out.splitlines()) <= 120


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"ckpt-tui {__version__}"


def test_a_command_name_wins_and_a_path_opens_the_folder(tmp_path, capsys, monkeypatch):
    (tmp_path / "ls").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["ls"]) == 2  # the command, missing its ROOT
    assert "ROOT" in capsys.readouterr().err
    opened = []

    class FakeApp:
        def run(self):
            opened.append(True)

    import tui.app.app as app_module

    monkeypatch.setattr(app_module, "make_app", lambda root, **kw: opened.append(Path(root)) or FakeApp())
    assert main(["./ls"]) == 0
    assert opened == [Path("./ls"), True]


def test_no_argument_and_a_typo_say_what_to_do(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([]) == 2
    assert "--help" in capsys.readouterr().err
    assert main(["lss"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean the command `ls`" in err


def test_each_command_is_registered_by_the_module_commands_names():
    # running a command imports only the module COMMANDS names for it: the table must say the truth
    import argparse

    from tui.cli import COMMANDS, build_parser

    for command, module in COMMANDS.items():
        sub = argparse.ArgumentParser().add_subparsers()
        import_module(f"tui.cli.{module}").register(sub)
        assert command in sub.choices, (command, module)
    everything = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(everything.choices) == list(COMMANDS)


def test_a_command_imports_only_its_own_module():
    probe = (
        "import sys, io, contextlib\nfrom tui.cli import main\n"
        "with contextlib.redirect_stderr(io.StringIO()):\n    main(['ls', '/nonexistent-folder'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('tui.cli.')))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["['tui.cli.inspect_cmds',", "'tui.cli.output']"]


def test_a_command_leaves_the_collector_as_it_was_with_what_it_built_frozen(tmp_path, capsys):
    # inspect runs without cyclic collection and every command freezes what it built for the exit: a
    # caller that goes on (this test process) gets the collector back as it had it
    import gc

    from tests.fixtures import synthetic

    synthetic.write_hf_model(tmp_path / "model")
    try:
        assert main(["inspect", str(tmp_path / "model"), "--json"]) == 0
        assert gc.isenabled() and gc.get_freeze_count() > 0
        gc.disable()
        assert main(["inspect", str(tmp_path / "model"), "--json"]) == 0
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()
