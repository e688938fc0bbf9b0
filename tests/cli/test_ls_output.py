"""`ckpt-tui ls` for people and pipes: fits the terminal (fresh processes under a pty via `script`), plain
tab-separated rows when piped, `-q` paths for `rm $(...)`, `--filter`, NO_COLOR."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures import synthetic as s
from tui.cli import filters, listing, main
from tui.core.model import CheckpointInfo, Metric

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "import sys; from tui.cli import main; sys.exit(main())"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES")}
    return {**env, "PYTHONPATH": str(REPO), "TERM": "xterm-256color", **extra}


def piped(*argv: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *argv], capture_output=True, text=True, env=_env(**env), timeout=120, stdin=subprocess.DEVNULL
    )


def on_a_tty(*argv: str, **env: str) -> str:
    """stdout of the CLI run with a pseudo-terminal as its stdout (util-linux `script`)."""
    command = " ".join(shlex.quote(a) for a in [*CLI, *argv])
    proc = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        capture_output=True,
        text=True,
        env=_env(**env),
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.replace("\r\n", "\n")


needs_script = pytest.mark.skipif(shutil.which("script") is None, reason="needs util-linux `script`")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("ls")
    s.make_tree(root, 4)
    s.write_run(root, "run1", lora=True)
    s.write_safetensors(root / "sparse" / "model.safetensors", {"w": ("F32", (1024, 1024))})
    s.write_hf_model(root / "name\twith tab", tokenizer=False)
    return root


@needs_script
@pytest.mark.parametrize("columns", [60, 80, 120, 200])
def test_the_table_fits_the_terminal_and_never_cuts_a_path(tree, columns):
    out = on_a_tty("ls", str(tree), COLUMNS=str(columns), NO_COLOR="1")
    lines = out.rstrip("\n").splitlines()
    assert max(len(line) for line in lines) <= columns
    assert "…" not in out and "..." not in out
    header = lines[0].split()
    assert header[:3] == ["path", "kind", "status"]  # kind and status never go
    rows = json.loads(piped("ls", str(tree), "--json").stdout)
    longest = max(len(r["path"]) for r in rows)
    if columns >= 80:  # room for the longest path: it is printed whole, on one line
        assert any(r["path"] in out for r in rows if len(r["path"]) == longest)
    if columns == 200:
        assert {"size", "step", "params", "dtypes", "epoch", "on"} <= set(header)  # "on disk"
    if columns == 60:
        assert "size" not in header and "left out at 60 columns" in out


@needs_script
def test_no_color_turns_escape_sequences_off(tree):
    assert "\x1b[" in on_a_tty("ls", str(tree), COLUMNS="120")
    assert "\x1b[" not in on_a_tty("ls", str(tree), COLUMNS="120", NO_COLOR="1")


def test_piped_ls_is_tab_separated_with_one_header_line(tree):
    proc = piped("ls", str(tree), COLUMNS="40")
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and lines[0].split("\t") == list(listing.TSV_COLUMNS)
    rows = [line.split("\t") for line in lines[1:]]
    assert all(len(r) == len(listing.TSV_COLUMNS) for r in rows) and "\x1b" not in proc.stdout
    by_path = {r[0]: dict(zip(listing.TSV_COLUMNS, r, strict=True)) for r in rows}
    sparse = by_path["sparse/model.safetensors"]
    assert int(sparse["size_bytes"]) > 4 << 20 and int(sparse["allocated_bytes"]) < 1 << 20
    assert "name\\x09with tab" in by_path  # a tab in a name never splits the row
    assert len(rows) == len(json.loads(piped("ls", str(tree), "--json").stdout))


def test_quiet_paths_feed_rm(tree, tmp_path):
    root = tmp_path / "r"
    shutil.copytree(tree, root)
    proc = piped("ls", str(root), "-q", "--filter", "kind=hf-checkpoint")
    paths = proc.stdout.split("\n")[:-1]
    assert proc.returncode == 0 and paths and all(Path(p).exists() for p in paths)
    dry = piped("rm", *paths, "--dry-run", "--json")
    plan = json.loads(dry.stdout)["plan"]
    assert plan["root"] == str(root / "group_0000") and f"ROOT {root / 'group_0000'}" in dry.stderr
    named = [i["path"] for i in plan["items"]] + [r["path"] for r in plan["refusals"]]
    assert sorted(str(Path(plan["root"]) / p) for p in named) == sorted(paths)


def test_filters_and_a_bad_filter(tree, capsys):
    assert main(["ls", str(tree), "--json", "--filter", "kind=deepspeed"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and {r["kind"] for r in rows} == {"deepspeed"}
    assert main(["ls", str(tree), "--json", "--filter", "best", "--filter", "fold=1"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["best"] and r["fold"] == 1 for r in rows)
    assert main(["ls", str(tree), "--json", "--filter", "larger=1M"]) == 0
    assert [r["path"] for r in json.loads(capsys.readouterr().out)] == ["sparse/model.safetensors"]
    for bad in ("size~1", "kind=nope", "colour=red", "size>lots", "age>7 fortnights"):
        assert main(["ls", str(tree), "--filter", bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--filter" in err or "not a" in err


def test_filter_expressions():
    now = time.time()
    info = CheckpointInfo(path="a/checkpoint-10", kind="hf-checkpoint", size_bytes=3 << 30, step=10,
                          fold=2, mtime=now - 8 * 86400, metric=Metric("loss", 0.1))  # fmt: skip
    broken = CheckpointInfo(path="b", kind="deepspeed", complete=False, mtime=None)
    cases = {
        "size>1G": (True, False), "larger=2GiB": (True, False), "size<=1024": (False, True),
        "older=7d": (True, False), "age<1w": (False, False), "step>=10": (True, False), "fold!=2": (False, False),
        "broken": (False, True), "!broken": (True, False), "kind!=deepspeed": (True, False), "run=a": (True, False),
    }  # fmt: skip
    for expr, expected in cases.items():
        test = filters.parse(expr, now=now)
        assert (test(info), test(broken)) == expected, expr
    assert filters.parse_size("1.5k") == 1536 and filters.parse_age("2h") == 7200


@needs_script
def test_inspect_and_metrics_tables_honour_no_color(tree):
    for argv in (["inspect", str(tree / "run1" / "tiny-bert_fold_0")], ["metrics", str(tree / "run1")]):
        assert "\x1b[" in on_a_tty(*argv, COLUMNS="120"), argv
        assert "\x1b[" not in on_a_tty(*argv, COLUMNS="120", NO_COLOR="1"), argv


def test_ls_filter_unsafe_lists_only_checkpoints_with_unsafe_pickles(tmp_path, capsys):
    from tests.fixtures import synthetic as s

    s.write_hf_checkpoint(tmp_path / "run" / "checkpoint-10", 10)
    s.write_hf_checkpoint(tmp_path / "run" / "checkpoint-20", 20)
    s.write_evil_pickle(tmp_path / "run" / "checkpoint-20" / "rng_state.pth", tmp_path / "pwned")
    assert main(["ls", str(tmp_path), "-q", "--filter", "unsafe"]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "run" / "checkpoint-20")]


def test_ls_makes_full_collections_rare_while_it_scans_and_restores_them(tree, capsys, monkeypatch):
    import gc

    import tui.core.snapshot

    seen: list[tuple[int, int, int]] = []
    real = tui.core.snapshot.iter_checkpoints

    def watching(*args, **kwargs):
        seen.append(gc.get_threshold())
        yield from real(*args, **kwargs)

    monkeypatch.setattr(tui.core.snapshot, "iter_checkpoints", watching)
    before = gc.get_threshold()
    assert main(["ls", str(tree), "--json"]) == 0 and json.loads(capsys.readouterr().out)
    assert seen[0][:2] == before[:2] and seen[0][2] >= 100 > before[2] and gc.get_threshold() == before
