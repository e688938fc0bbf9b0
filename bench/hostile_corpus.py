"""A hostile tree per input class, and every CLI command run on it as a user would: a fresh process, a
10 s timeout, its peak RSS (docs: issue "Hostile and odd input", sections 4 and 5).

Classes: FIFOs and device links named like the files we read (trainer_state.json, latest, manifests,
tokenizer files, vocab.txt, CSVs, trash entries), a 2 GB line-less vocab.txt, a 990-level-deep tree,
looping links, 5,000 missing shards, 401-digit integers, lone surrogates, 1e999 / inf / 1e308 values,
a 200 MB CSV and 100k probability columns, and names holding ESC/BEL/U+202E echoed by usage errors.

Each row: the case, the command, exit code, seconds, peak RSS, and what went wrong (HANG over the
timeout, TRACEBACK, an exit code outside 0/1/2, a raw ESC/BEL/bidi character in the output, numpy/pandas
warnings on stderr, RSS over the budget). Exit status 1 when any row went wrong.

    python bench/hostile_corpus.py [--only SUBSTR] [--quick] [--keep DIR]   # --quick: no 200 MB / 2 GB files
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.synthetic import (  # noqa: E402
    deep_folders,
    write_hf_checkpoint,
    write_manifest,
    write_safetensors,
    write_tokenizer,
    write_trainer_state,
)
from tui.core.files import FULL_WALK_DEPTH, walk  # noqa: E402
from tui.core.trash import remove_tree  # noqa: E402

TIMEOUT_S = 10.0
RSS_BUDGET_MB = 500
# The CLI, writing its own peak RSS (VmHWM, kB) to $HOSTILE_HWM_FILE when it exits.
CLI = """import atexit, os, sys
def _hwm():
    with open("/proc/self/status") as f:
        kb = next((line.split()[1] for line in f if line.startswith("VmHWM:")), "")
    with open(os.environ["HOSTILE_HWM_FILE"], "w") as f:
        f.write(kb)
atexit.register(_hwm)
from tui.cli import main
sys.exit(main())"""
# A raw byte of these in our output means a name reached the terminal unescaped.
RAW_CONTROLS = ("\x1b", "\x07", "\u202e", "\u2066")


# --- builders: each makes one ROOT and returns the commands to run in it -------------------------------


def _ckpt(root: Path, name: str = "run/checkpoint-10") -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    write_hf_checkpoint(folder, 10, best_metric=0.5, evals={10: 0.5})
    write_tokenizer(folder)
    return folder


def _inspect_all(ck: str) -> list[list[str]]:
    return [["ls", "."], ["ls", ".", "--json"], ["inspect", ck, "--json"], ["inspect", ck],
            ["rm", ck, "--dry-run", "--json"], ["slim", ck, "--dry-run", "--json"], ["diff", ck, ck, "--json"],
            ["prune", ".", "--keep", "0", "--metric", "eval_f1_macro", "--dry-run", "--json"],
            ["du", ".", "--json"], ["runs", ".", "--json"]]  # fmt: skip


def _replace(folder: Path, name: str, make: Callable[[Path], None]) -> None:
    target = folder / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    make(target)


def fifo(path: Path) -> None:
    os.mkfifo(path)


def link_to(dev: str) -> Callable[[Path], None]:
    return lambda path: path.symlink_to(dev)


# Files we read, where they live in a checkpoint (relative to the checkpoint folder).
READ_NAMES = ("trainer_state.json", "config.json", "tokenizer_config.json", "vocab.txt", "tokenizer.json",
              "special_tokens_map.json", "model.safetensors", "model.safetensors.index.json",
              "ckpt_manifest.json", "train_state.json", "adapter_config.json", "latest",
              "global_step10/latest")  # fmt: skip


def case_special(kind: str, name: str) -> Callable[[Path], list[list[str]]]:
    def build(root: Path) -> list[list[str]]:
        ck = _ckpt(root)
        if name == "ckpt_manifest.json" or name == "latest":
            (root / "run" / "run.json").write_text('{"format": "ckpt-tui/run/1"}')
        make = {"fifo": fifo, "zero": link_to("/dev/zero"), "urandom": link_to("/dev/urandom")}[kind]
        _replace(ck, name, make)
        cmds = _inspect_all("run/checkpoint-10")
        cmds.append(["rm", "run/checkpoint-10", "--yes", "--json"])
        return cmds

    return build


def case_run_files(kind: str) -> Callable[[Path], list[list[str]]]:
    """run.json, .lock, cv.json and a valid_df CSV as FIFOs or device links."""

    def build(root: Path) -> list[list[str]]:
        _ckpt(root)
        make = fifo if kind == "fifo" else link_to("/dev/zero")
        for name in ("run.json", ".lock", "cv.json", "valid_df_fold_0.csv"):
            _replace(root / "run", name, make)
        return [*_inspect_all("run/checkpoint-10"), ["metrics", "run", "--json"],
                ["rm", "run/checkpoint-10", "--yes", "--json"]]  # fmt: skip

    return build


def case_verify_dev_zero(root: Path) -> list[list[str]]:
    ck = _ckpt(root)
    (root / "run" / "run.json").write_text('{"format": "ckpt-tui/run/1"}')
    write_manifest(ck, kind="step-checkpoint", step=10)
    (ck / "model.safetensors").unlink()
    (ck / "model.safetensors").symlink_to("/dev/zero")
    return [
        ["inspect", "run/checkpoint-10", "--verify", "--json"],
        ["inspect", "run/checkpoint-10", "--verify"],
    ]


def case_big_lineless_vocab(root: Path) -> list[list[str]]:
    ck = _ckpt(root)
    with open(ck / "vocab.txt", "wb") as f:
        f.truncate(2 << 30)  # sparse: 2 GiB of zero bytes, no newline
    return _inspect_all("run/checkpoint-10")


def case_deep_tree(root: Path, depth: int = 990) -> list[list[str]]:
    _ckpt(root)
    (root / "deep").mkdir()
    deep_folders(root / "deep", depth, {"config.json": "{}"})
    ck = root / "run/checkpoint-10"
    os.symlink("../../deep", ck / "deep_link")  # a link to it: never followed
    return [["ls", "."], ["ls", ".", "--json"], ["inspect", "deep", "--json"], ["inspect", ".", "--json"],
            ["rm", "deep", "--dry-run", "--json"], ["rm", "deep", "--yes", "--json"],
            ["trash", "list", "--json"], ["trash", "empty", "--yes", "--json"]]  # fmt: skip


def case_deep_in_checkpoint(root: Path, depth: int = 990) -> list[list[str]]:
    ck = _ckpt(root)
    deep_folders(ck, depth)
    return [*_inspect_all("run/checkpoint-10"), ["rm", "run/checkpoint-10", "--yes", "--json"],
            ["trash", "empty", "--yes", "--json"]]  # fmt: skip


def case_looping_links(root: Path) -> list[list[str]]:
    ck = _ckpt(root)
    (ck / "loop.safetensors").symlink_to("loop.safetensors")
    (ck / "a.bin").symlink_to("b.bin")
    (ck / "b.bin").symlink_to("a.bin")
    (ck / "self").symlink_to(".")
    return _inspect_all("run/checkpoint-10")


def case_missing_shards(root: Path, n: int = 5000) -> list[list[str]]:
    folder = root / "sharded"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    write_safetensors(folder / f"model-00001-of-{n:05d}.safetensors", {"w0": ("F32", (2,))})
    weight_map = {f"w{i}": f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)}
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    return [["ls", "."], ["inspect", "sharded", "--json"], ["inspect", "sharded"]]


def _header_file(path: Path, tensors: int, name=lambda i: f"layer.{i}.weight") -> None:
    """A safetensors file whose header lists ``tensors`` one-element tensors (its data is sparse)."""
    import struct

    parts = [
        f'"{name(i)}":{{"dtype":"F32","shape":[1],"data_offsets":[{4 * i},{4 * i + 4}]}}'
        for i in range(tensors)
    ]
    header = ("{" + ",".join(parts) + "}").encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + 4 * tensors)


def case_big_header(root: Path) -> list[list[str]]:
    folder = root / "big"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    _header_file(folder / "model.safetensors", 1_260_000)  # just under the 100 MiB header limit
    return [["ls", "."], ["inspect", "big", "--json"]]


def case_long_name(root: Path) -> list[list[str]]:
    folder = root / "long"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    _header_file(folder / "model.safetensors", 1, name=lambda i: "a." * 25_000_000 + "w")
    return [["ls", "."], ["inspect", "long", "--json"]]


def case_linked_shards(root: Path, n: int = 12) -> list[list[str]]:
    folder = root / "shards"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    first = folder / f"model-00001-of-{n:05d}.safetensors"
    _header_file(first, 99_000)  # ~7 MiB header
    weight_map = {f"layer.{i}.weight": first.name for i in range(99_000)}
    for k in range(2, n + 1):
        os.link(first, folder / f"model-{k:05d}-of-{n:05d}.safetensors")
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    return [["ls", "."], ["inspect", "shards", "--json"]]


HUGE = int("9" * 401)


def _huge_json(value_text: str) -> Callable[[Path], list[list[str]]]:
    """trainer_state / train_state / manifest numbers, spelled ``value_text`` in the JSON."""

    def build(root: Path) -> list[list[str]]:
        ck = _ckpt(root)
        (root / "run" / "run.json").write_text('{"format": "ckpt-tui/run/1"}')
        write_trainer_state(ck, global_step=10, best_metric=0.5, evals={10: 0.5})
        text = (ck / "trainer_state.json").read_text()
        for key in ("epoch", "best_metric", "global_step", "best_global_step"):
            text = text.replace(f'"{key}": ', f'"{key}": {value_text}, "_{key}": ', 1)
        (ck / "trainer_state.json").write_text(text)
        step = _ckpt(root, "run/checkpoints/fold_0/step_10")
        (step / "train_state.json").write_text(
            f'{{"fold": 0, "global_step": {value_text}, "epoch": {value_text}, "best_metric": {value_text},'
            f' "best_step": {value_text}, "metric_name": "f1_macro", "log_history": []}}'
        )
        write_manifest(step, kind="step-checkpoint", step=10)
        m = json.loads((step / "ckpt_manifest.json").read_text())
        text = json.dumps(m).replace('"step": 10', f'"step": {value_text}, "metric": {{"name": "f1_macro",'
                                     f' "value": {value_text}, "step": {value_text}}}, "best_metric": {{'
                                     f'"name": "f1_macro", "value": {value_text}, "step": {value_text}}}')  # fmt: skip
        text = text.replace('"size": ', f'"size": {value_text}, "_size": ', 1)
        (step / "ckpt_manifest.json").write_text(text)
        cmds = _inspect_all("run/checkpoint-10")
        cmds += [["inspect", "run/checkpoints/fold_0/step_10", "--json"],
                 ["inspect", "run/checkpoints/fold_0/step_10", "--verify"],
                 ["prune", ".", "--keep", "1", "--metric", "f1_macro", "--dry-run"]]  # fmt: skip
        return cmds

    return build


def case_surrogates(root: Path) -> list[list[str]]:
    ck = _ckpt(root)
    bad = '"\\ud800x\\udfff"'
    for name in ("config.json", "trainer_state.json", "tokenizer_config.json", "tokenizer.json"):
        data = json.loads((ck / name).read_text()) if (ck / name).exists() else {}
        data["model_type" if name == "config.json" else "x"] = "PLACEHOLDER"
        data["\ud800key"] = "PLACEHOLDER"
        text = json.dumps(data).replace('"PLACEHOLDER"', bad)
        if name == "trainer_state.json":
            text = text.replace('"best_model_checkpoint": null', f'"best_model_checkpoint": {bad}')
            text = text.replace('"eval_f1_macro"', '"eval_\\ud800"')
        (ck / name).write_text(text)
    (ck / "added_tokens.json").write_text('{"\\ud800": 31}')
    (root / "run" / "run.json").write_text(
        '{"format": "ckpt-tui/run/1", "run_name": ' + bad + ', "metric": ' + bad + "}"
    )
    return [*_inspect_all("run/checkpoint-10"), ["metrics", "run", "--json"]]


def _trash_entry(root: Path, entry: str) -> None:
    folder = root / ".ckpt-trash" / "20260101T000000Z-00001"
    (folder / "item").mkdir(parents=True)
    (folder / "item" / "x").write_text("x")
    (folder / "entry.json").write_text(entry)


def case_trash_values(entry_text: str) -> Callable[[Path], list[list[str]]]:
    def build(root: Path) -> list[list[str]]:
        _ckpt(root)
        _trash_entry(root, entry_text)
        return [["trash", "list", "--json"], ["trash", "list"], ["trash", "empty", "--dry-run"],
                ["trash", "restore", "20260101T000000Z-00001", "--json"], ["trash", "empty", "--yes", "--json"]]  # fmt: skip

    return build


def case_trash_fifo(root: Path) -> list[list[str]]:
    _ckpt(root)
    folder = root / ".ckpt-trash" / "20260101T000000Z-00001"
    (folder / "item").mkdir(parents=True)
    os.mkfifo(folder / "entry.json")
    return [
        ["trash", "list", "--json"],
        ["trash", "empty", "--dry-run"],
        ["trash", "empty", "--yes", "--json"],
    ]


def _csv(root: Path, header: list[str], rows: list[list[object]]) -> None:
    run = root / "run"
    run.mkdir(parents=True, exist_ok=True)
    lines = [",".join(header)] + [",".join(str(v) for v in r) for r in rows]
    (run / "valid_df_fold_0.csv").write_text("\n".join(lines) + "\n")


def case_csv(kind: str) -> Callable[[Path], list[list[str]]]:
    def build(root: Path) -> list[list[str]]:
        h = ["id", "label", "prediction", "prob_a", "prob_b"]
        rows = {
            "inf": [[0, "a", "a", "inf", 0.5], [1, "b", "b", 0.1, 0.9]],
            "1e308": [[0, "a", "a", "1e308", "1e308"], [1, "b", "b", "1e-308", "1e308"]],
            "label-missing": [[0, "a", "a", 0.9, 0.1], [1, "c", "b", 0.1, 0.9]],
            "zero-row": [[0, "a", "a", 0, 0], [1, "b", "b", 0.1, 0.9]],
            "huge-int": [[0, "a", "a", "9" * 401, 0.1], [1, "b", "b", 0.1, 0.9]],
            "surrogate": [[0, "\udcff", "a", 0.9, 0.1], [1, "b", "b", 0.1, 0.9]],
            "esc": [[0, "\x1b[31m", "a", 0.9, 0.1], [1, "b", "b", 0.1, 0.9]],
            "esc-column": [[0, "a", "a", 0.9, 0.1], [1, "\u202eb", "b", 0.1, 0.9]],
        }[kind]
        if kind == "esc-column":
            h = ["id", "label", "prediction", "prob_a", "prob_\x1b]0;PWNED\x07"]
        if kind == "surrogate":
            run = root / "run"
            run.mkdir(parents=True)
            (run / "valid_df_fold_0.csv").write_bytes(
                b"id,label,prediction,prob_\xff,prob_b\n0,\xff,a,0.9,0.1\n"
            )
        else:
            _csv(root, h, rows)
        return [["metrics", "run", "--json"], ["metrics", "run"]]

    return build


def case_big_csv(root: Path, mb: int = 200) -> list[list[str]]:
    run = root / "run"
    run.mkdir()
    row = "123456,some text that is long enough to matter in a csv file,pos,neg,0.25,0.75\n"
    block = row * 10_000
    with open(run / "valid_df_fold_0.csv", "w") as f:
        f.write("id,text,label,prediction,prob_neg,prob_pos\n")
        for _ in range(mb * (1 << 20) // len(block)):
            f.write(block)
    return [["metrics", "run", "--json"]]


def case_wide_csv(root: Path, columns: int = 100_000) -> list[list[str]]:
    h = ["id", "label", "prediction"] + [f"prob_c{i}" for i in range(columns)]
    row = [0, "c0", "c0"] + ["0.00001"] * columns
    _csv(root, h, [row, row])
    return [["metrics", "run", "--json"]]


def case_usage_echo(root: Path) -> list[list[str]]:
    evil = "t\x1b]0;PWNED\x07x\u202e\x1b[31m"
    return [["rm", "--root", evil, "x"], ["prune", evil, "--keep", "1", "--metric", "loss"], ["promote", evil],
            ["inspect", evil], ["ls", evil], ["metrics", evil], ["trash", "list", "--root", evil],
            ["rm", "x", "--root", ".", "--bogus" + evil], [evil]]  # fmt: skip


def case_evil_names(root: Path) -> list[list[str]]:
    for name in ("evil\x1b[31mred", "t\x1b]0;PWNED\x07x", "a\nb", "rtl\u202eexe", "iso\u2066x", "b\udcffb"):
        ck = root / name / "checkpoint-1"
        ck.mkdir(parents=True)
        write_hf_checkpoint(ck, 1)
    return [["ls", "."], ["inspect", "rtl\u202eexe/checkpoint-1"], ["rm", "evil\x1b[31mred/checkpoint-1",
            "--dry-run"], ["prune", ".", "--keep", "0", "--metric", "loss", "--dry-run"]]  # fmt: skip


def cases(quick: bool) -> dict[str, Callable[[Path], list[list[str]]]]:
    out: dict[str, Callable[[Path], list[list[str]]]] = {}
    for name in READ_NAMES:
        out[f"fifo:{name}"] = case_special("fifo", name)
        out[f"dev-zero:{name}"] = case_special("zero", name)
    out["urandom:trainer_state.json"] = case_special("urandom", "trainer_state.json")
    out["fifo:run-files"] = case_run_files("fifo")
    out["dev-zero:run-files"] = case_run_files("zero")
    out["verify:manifest-entry->/dev/zero"] = case_verify_dev_zero
    out["deep-tree-990"] = case_deep_tree
    out["deep-in-checkpoint-990"] = case_deep_in_checkpoint
    out["looping-links"] = case_looping_links
    out["missing-shards-5000"] = case_missing_shards
    out["int-401-digits"] = _huge_json("9" * 401)
    out["float-1e999"] = _huge_json("1e999")
    out["nan"] = _huge_json("NaN")
    out["string-not-number"] = _huge_json('"x"')
    out["surrogates"] = case_surrogates
    base = {"id": "20260101T000000Z-00001", "original_path": "run/x", "deleted_at": "2026-01-01T00:00:00Z"}
    for label, value in (("1e999", "1e999"), ("int-401", "9" * 401), ("string", '"big"'), ("neg", "-5"),
                         ("surrogate", '"\\ud800"')):  # fmt: skip
        text = json.dumps({**base, "size_bytes": 0}).replace('"size_bytes": 0', f'"size_bytes": {value}')
        out[f"trash-size:{label}"] = case_trash_values(text)
    out["trash-entry:surrogate-path"] = case_trash_values(json.dumps(base).replace("run/x", "\\ud800/x"))
    out["trash-entry:not-object"] = case_trash_values("[1, 2]")
    out["trash-entry:esc-path"] = case_trash_values(
        json.dumps(base).replace("run/x", "run/\\u001b]0;PWNED\\u0007\\u202ex")
    )
    out["trash-entry:fifo"] = case_trash_fifo
    for kind in ("inf", "1e308", "label-missing", "zero-row", "huge-int", "surrogate", "esc", "esc-column"):
        out[f"csv:{kind}"] = case_csv(kind)
    out["csv:100k-prob-columns"] = case_wide_csv
    out["usage-errors-echo"] = case_usage_echo
    out["evil-names"] = case_evil_names
    out["shards:12-hard-links-of-a-7MiB-header"] = case_linked_shards
    if not quick:
        out["header:1.26M-tensors"] = case_big_header
        out["header:name-of-25M-dotted-parts"] = case_long_name
        out["vocab.txt-2GB-no-newline"] = case_big_lineless_vocab
        out["csv:200MB"] = case_big_csv
    return out


# --- running -------------------------------------------------------------------------------------------


def run_one(argv: list[str], cwd: Path, timeout: float = TIMEOUT_S) -> dict:
    """One fresh CLI process: rc, seconds, peak RSS (MiB), stdout/stderr (text, surrogates kept).

    The peak is the process's own VmHWM, written at exit: the rusage of a forked child also counts the
    memory of this runner at the fork (a tree builder that just wrote a 100 MiB header), and exec does
    not reset it. A process killed at the timeout reports its rusage instead."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile() as hwm,
    ):
        env = {**os.environ, "PYTHONPATH": str(REPO), "CKPT_TUI_NO_CACHE": "1", "PYTHONWARNINGS": "default",
               "HOSTILE_HWM_FILE": hwm.name}  # fmt: skip
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-c", CLI, *argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True)  # fmt: skip
        timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, 9))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "surrogateescape")
        stderr = err.read().decode("utf-8", "surrogateescape")
        own = Path(hwm.name).read_text().strip()
    rss_kb = int(own) if own.isdigit() else usage.ru_maxrss
    return {"rc": os.waitstatus_to_exitcode(status), "s": seconds, "rss_mb": rss_kb / 1024, "stdout": stdout,
            "stderr": stderr, "hang": seconds >= timeout}  # fmt: skip


def judge(result: dict) -> list[str]:
    bad = []
    if result["hang"]:
        bad.append("HANG")
    if "Traceback (most recent call last)" in result["stderr"]:
        bad.append("TRACEBACK")
    elif result["rc"] not in (0, 1, 2) and not result["hang"]:
        bad.append(f"rc={result['rc']}")
    both = result["stdout"] + result["stderr"]
    if any(c in both for c in RAW_CONTROLS):
        bad.append("RAW-CONTROL")
    if "Warning:" in result["stderr"]:
        bad.append("WARNING")
    if result["rss_mb"] > RSS_BUDGET_MB:
        bad.append(f"RSS>{RSS_BUDGET_MB}MB")
    return bad


def _age(root: Path, seconds: float = 3600) -> None:
    past = time.time() - seconds
    for dirpath, dirnames, filenames in walk(root, max_depth=FULL_WALK_DEPTH):  # os.walk recurses
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (past, past), follow_symlinks=False)


def run_corpus(
    base: Path, *, only: str | tuple[str, ...] = "", quick: bool = False, verbose: bool = False
) -> list[dict]:
    """Build and run the cases whose name contains ``only`` (a tuple: exactly these cases)."""
    rows = []
    for name, build in cases(quick).items():
        if (isinstance(only, tuple) and name not in only) or (isinstance(only, str) and only not in name):
            continue
        root = base / name.replace("/", "_").replace(":", "_")
        root.mkdir(parents=True)
        commands = build(root)
        _age(root)  # files written seconds ago count as being written: rm would refuse them all
        for argv in commands:
            result = run_one(argv, root)
            result.update(case=name, argv=argv, bad=judge(result))
            rows.append(result)
            if verbose and result["bad"]:
                print(name, argv, result["bad"], result["stderr"][-600:], file=sys.stderr)
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'case':34} {'command':46} {'rc':>3} {'s':>6} {'RSS MB':>7}  problems")
    for r in rows:
        cmd = " ".join(r["argv"]).encode("unicode_escape").decode()[:46]
        print(
            f"{r['case'][:34]:34} {cmd:46} {r['rc']:>3} {r['s']:6.2f} {r['rss_mb']:7.0f}  {' '.join(r['bad'])}"
        )
    hangs = sum("HANG" in r["bad"] for r in rows)
    tracebacks = sum("TRACEBACK" in r["bad"] for r in rows)
    failing = sum(bool(r["bad"]) for r in rows)
    print(f"\n{len(rows)} commands, {failing} with problems: {hangs} hangs, {tracebacks} tracebacks, "
          f"max RSS {max(r['rss_mb'] for r in rows):.0f} MB, slowest {max(r['s'] for r in rows):.2f} s")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="run the cases whose name contains this")
    ap.add_argument("--quick", action="store_true", help="leave out the 200 MB CSV and the 2 GB vocab")
    ap.add_argument("--keep", type=Path, help="build the trees here and keep them")
    ap.add_argument("-v", "--verbose", action="store_true", help="print stderr of every failing command")
    args = ap.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="hostile-"))
    try:
        rows = run_corpus(base, only=args.only, quick=args.quick, verbose=args.verbose)
    finally:
        if not args.keep:
            remove_tree(base)  # shutil.rmtree recurses: the 990-level trees would raise RecursionError
    print_table(rows)
    return 1 if any(r["bad"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
