"""Export one checkpoint as a clean Hugging Face folder (docs/FORMAT.md, "Promoted exports").

Safetensors weights (existing shards and index kept as they are), config.json, tokenizer files,
trainer_state.json when present, and a ``kind: "promoted"`` manifest naming the ``source`` — all written
through ``tui.core.commit`` (temp folder, fsync, rename, manifest last), so a kill leaves no half export.

A MindSpore ``.ckpt`` file is exported here, without torch: its network weights become
``model.safetensors`` (tui.core.mindspore_ckpt.export, verified byte for byte). Weights that are not
safetensors yet (a lone ``pytorch_model.bin``, DeepSpeed ZeRO shards, a LoRA adapter without merged
weights, a torch DCP folder) need torch. The core never imports it: the caller passes a ``Converter``
(the CLI passes ``tui.convert``); without one a conversion is refused with the command to run, and
without torch installed the error says what to install. The pure-copy path needs neither, so the app
calls it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shlex
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tui.core import commit
from tui.core.dcp import is_dcp_folder, read_dcp
from tui.core.files import is_within, json_object, open_regular_file, read_head, read_refusal, read_small_text
from tui.core.integrity import scan_pickle_into
from tui.core.mindspore_ckpt import export as mindspore_export
from tui.core.mindspore_ckpt import read_mindspore, sniff
from tui.core.model import CheckpointInfo
from tui.core.names import (
    ADAPTER_CONFIG,
    CONFIG_FILE,
    DEEPSPEED_LATEST,
    DEEPSPEED_SHARD,
    MANIFEST_NAME,
    PROMOTED_DIR,
    PROMOTED_KIND,
    RUN_FILE,
    SAFETENSORS_INDEX,
    SAFETENSORS_WEIGHTS,
    TOKENIZER_FILES,
    TRAIN_STATE,
    TRAINER_STATE,
)
from tui.core.pickle_scan.sniff import is_pickle_file
from tui.core.safety import Safety

INSTALL_HINT = "pip install 'ckpt-tui[train]'"
EXPORT_WEIGHTS = "model.safetensors"
TORCH_CONVERSIONS = ("zero", "lora", "bin", "dcp")
WEIGHTS_ONLY = ("mindspore", "dcp")  # their names are not an HF model's: no config or tokenizer is copied
EXPORT_TOKENIZER_FILES = (*TOKENIZER_FILES, "chat_template.jinja")
EXTRA_FILES = (TRAINER_STATE, "generation_config.json")
_COPY_CHUNK = 8 << 20


class Converter(Protocol):
    """The torch-backed conversions ``promote`` needs (``tui.convert`` is one); each raises
    ``ConvertError`` with one line for the user."""

    ConvertError: type[Exception]

    def consolidate_zero(self, checkpoint_dir: Path, tag: str | None, config_path: Path, out: Path) -> None: ...

    def merge_lora(
        self, adapter_dir: Path, out: Path, *, root: Path, config: Path | None = None, base: Path | None = None
    ) -> None: ...

    def bin_to_safetensors(self, bin_path: Path, config_path: Path, out: Path) -> None: ...

    def verify_reload(self, folder: Path | str) -> str | None: ...

    def consolidate_dcp(self, dcp_dir: Path, tensors: dict[str, tuple[str, tuple[int, ...]]], out: Path) -> None: ...

    def verify_dcp(self, dcp_dir: Path, exported: Path) -> str | None: ...


class PromoteError(Exception):
    """Promote refused or failed; the message is one line naming the path and what to do."""


@dataclass
class PromoteResult:
    source: str  # posix, relative to ROOT
    target: str  # absolute
    files: list[str] = field(default_factory=list)
    conversion: str | None = None  # None (copy) | "zero" | "lora" | "bin" | "dcp" | "mindspore"
    manifest: dict[str, Any] = field(default_factory=dict)
    verified: bool | None = None  # reloaded with from_pretrained (None: not attempted)
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "files": self.files,
            "conversion": self.conversion,
            "verified": self.verified,
            "problems": self.problems,
            "manifest": self.manifest,
        }


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


# --- what to export --------------------------------------------------------------------------------------


def weights_plan(source: Path) -> tuple[str, list[str]]:
    """("copy", files) when ``source`` holds safetensors weights; else the conversion it needs and []."""
    if source.is_file():
        return "mindspore", []  # promote accepts no other file
    names = sorted(p.name for p in source.iterdir() if p.is_file())
    if is_dcp_folder(set(names)):
        return "dcp", []
    shards = [n for n in names if SAFETENSORS_WEIGHTS.match(n)]
    if shards:
        if len(shards) > 1 or SAFETENSORS_INDEX in names:
            if SAFETENSORS_INDEX not in names:
                raise PromoteError(f"{source}: {len(shards)} weight shards but no {SAFETENSORS_INDEX}")
            return "copy", [*_indexed_shards(source / SAFETENSORS_INDEX), SAFETENSORS_INDEX]
        return "copy", shards
    if ADAPTER_CONFIG in names:
        return "lora", []
    if zero_checkpoint(source) is not None:
        return "zero", []
    if "pytorch_model.bin" in names:
        return "bin", []
    raise PromoteError(
        f"{source}: no weights to export (expected model*.safetensors, pytorch_model.bin, ZeRO shards or a LoRA adapter)"
    )


def _indexed_shards(index: Path) -> list[str]:
    weight_map = (json_object(index, limit=64 << 20) or {}).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise PromoteError(f"{index}: unreadable shard index (no weight_map of tensor name -> shard file)")
    files = sorted(set(weight_map.values()))
    for name in files:
        if "/" in name or name.startswith(".") or not (index.parent / name).is_file():
            raise PromoteError(f"{index}: lists {name!r}, which is missing or not a plain shard name")
    return files


def zero_checkpoint(source: Path) -> tuple[Path, str | None] | None:
    """(checkpoint_dir, tag) for DeepSpeed's zero_to_fp32, or None when ``source`` holds no ZeRO shards.

    Accepts the folder holding ``latest`` (accelerate's step folder, HF's checkpoint-N), or the tag folder
    itself (``global_stepN`` / ``pytorch_model``)."""

    def has_shards(folder: Path) -> bool:
        try:
            return any(DEEPSPEED_SHARD.match(n) for n in os.listdir(folder))
        except OSError:
            return False

    latest = read_small_text(source / DEEPSPEED_LATEST)
    if latest is not None:
        tag = latest.strip()
        if tag and "/" not in tag and has_shards(source / tag):
            return source, None
    if has_shards(source):
        return source.parent, source.name
    for sub in sorted(p for p in source.iterdir() if p.is_dir()):
        if has_shards(sub):
            return source, sub.name
    return None


def find_upwards(start: Path, root: Path, name: str) -> Path | None:
    """``name`` in ``start`` or its ancestors up to ``root``; then in the run's fold model folders."""
    folder = start
    while True:
        if (folder / name).is_file():
            return folder / name
        if folder == root or root not in folder.parents:
            break
        folder = folder.parent
    run = run_folder(start, root)
    if run is not None:
        for sub in sorted(p for p in run.iterdir() if p.is_dir() and p.name != PROMOTED_DIR):
            if (sub / name).is_file():
                return sub / name
    return None


def run_folder(path: Path, root: Path) -> Path | None:
    for folder in [path, *path.parents]:
        if folder != root and root not in folder.parents:
            return None
        if (folder / RUN_FILE).is_file():
            return folder
    return None


def default_target(source: Path, root: Path, info: CheckpointInfo | None) -> Path:
    """``<run>/promoted/<name>``: the run folder from run.json / the scan, else the source's parent; the
    name is the source's path inside the run, so folds and steps never collide."""
    run = run_folder(source, root)
    if run is None and info is not None and info.run:
        run = root / info.run
    if run is None or run == source:
        run = source.parent
    name = source.relative_to(run).as_posix().replace("/", "-")
    if source.is_file():
        name = name.removesuffix(source.suffix)  # promoted/fer-50_449/, not promoted/fer-50_449.ckpt/
    return run / PROMOTED_DIR / name


# --- metadata --------------------------------------------------------------------------------------------


def source_fields(source: Path, info: CheckpointInfo | None) -> dict[str, Any]:
    """step / fold / metric from the scan when given, else from the source's manifest or trainer state."""
    fields: dict[str, Any] = {"step": None, "fold": None, "metric": None}
    if info is not None:
        fields.update(step=info.step, fold=info.fold, metric=info.metric.to_json() if info.metric else None)
    manifest = json_object(source / MANIFEST_NAME) or {}
    state = json_object(source / TRAINER_STATE) or json_object(source / TRAIN_STATE) or {}
    if fields["step"] is None:
        fields["step"] = manifest.get("step", state.get("global_step"))
    if fields["fold"] is None:
        fields["fold"] = manifest.get("fold", state.get("fold"))
    if fields["metric"] is None:
        if isinstance(manifest.get("metric"), dict):
            fields["metric"] = manifest["metric"]
        elif isinstance(state.get("best_metric"), int | float):
            fields["metric"] = {
                "name": state.get("metric_name") or "best_metric",
                "value": state["best_metric"],
            }
    return fields


# --- promote ---------------------------------------------------------------------------------------------


def cli_command(root: Path, source: Path) -> str:
    """The ``ckpt-tui promote`` command for ``source``, absolute (it works from any directory) and with
    the app's ROOT (the CLI would otherwise derive its own), quoted for a POSIX shell."""
    return f"ckpt-tui promote --root {shlex.quote(str(root))} {shlex.quote(str(source))}"


def promote(
    root: Path | str,
    path: Path | str,
    to: Path | str | None = None,
    *,
    infos: list[CheckpointInfo] | None = None,
    overwrite: bool = False,
    convert: Converter | None = None,
    verify_reload: bool | None = None,
    base: Path | str | None = None,
) -> PromoteResult:
    """Export ``path`` (absolute, or relative to ROOT) to ``to`` or ``<run>/promoted/<name>/``.

    ``convert`` does the torch-backed conversions; without it (the app) they are refused with the CLI
    command to run. ``verify_reload`` reloads the export with from_pretrained (through ``convert``): None
    means "when torch did a conversion". ``base``: the base model folder a LoRA adapter is merged into,
    instead of its ``base_model_name_or_path``.
    """
    if verify_reload and convert is None:
        raise ValueError("verify_reload needs a converter (tui.convert)")
    root_p = Path(os.path.realpath(root))
    safety = Safety(root_p)
    source, reason = safety.locate(path)
    if source is None:
        raise PromoteError(f"{path}: {reason}")
    source = Path(os.path.realpath(source))
    if not source.is_dir() and not (source.is_file() and sniff(read_head(source)) is not None):
        raise PromoteError(f"{path}: not a checkpoint folder or a MindSpore .ckpt file")
    rel = source.relative_to(root_p).as_posix()
    if source.is_dir():  # what says step, fold and metric, before anything reads it
        _refuse_unreadable([source / n for n in (MANIFEST_NAME, TRAINER_STATE, TRAIN_STATE)], root_p)
    committed = (source / MANIFEST_NAME).exists()
    if committed and (broken := commit.verify(source, root=root_p)):
        raise PromoteError(f"{rel}: not a complete checkpoint ({broken[0]})")
    # Promote only reads: a verified committed manifest is trusted over a recent mtime.
    if busy := safety.being_written(source, committed=committed):
        raise PromoteError(f"{rel}: {busy[0]}")
    if (
        PROMOTED_DIR in Path(rel).parts[:-1]
        and (json_object(source / MANIFEST_NAME) or {}).get("kind") == PROMOTED_KIND
    ):
        raise PromoteError(f"{rel}: already a promoted export")
    info = next((i for i in infos or [] if i.path == rel), None)
    target = _real_target(to if to is not None else default_target(source, root_p, info))
    if to is None and not is_within(target.parent, root_p):  # a planted `promoted` link: not the user's choice
        raise PromoteError(f"{rel}: the default export folder leads outside ROOT to {target.parent}; choose one with --to")
    _check_target(target, source, overwrite)

    conversion, weight_files = weights_plan(source)
    if base is not None and conversion != "lora":
        raise PromoteError(f"{rel}: a base model only applies to a LoRA adapter (this is a {conversion} export)")
    _refuse_unreadable([source / n for n in (*weight_files, *EXTRA_FILES)], root_p)
    _refuse_unreadable(_conversion_reads(conversion, source), root_p, folder_ok=True)
    readable = _readable_source(conversion, source, rel)
    if conversion in TORCH_CONVERSIONS:
        if convert is None:
            raise PromoteError(
                f"{rel}: needs a {conversion} conversion with torch; run `{cli_command(root_p, source)}`"
            )
        if not torch_available():
            raise PromoteError(f"{rel}: {_CONVERSION_TEXT[conversion]} needs torch: {INSTALL_HINT}")

    config, tokenizer_home = None, None
    if conversion not in WEIGHTS_ONLY:
        config = (
            source / CONFIG_FILE if (source / CONFIG_FILE).is_file() else find_upwards(source, root_p, CONFIG_FILE)
        )
        tokenizer_home = _tokenizer_home(source, root_p, config)
        tokenizer = [tokenizer_home / n for n in EXPORT_TOKENIZER_FILES] if tokenizer_home else []
        _refuse_unreadable([source / CONFIG_FILE, *([config] if config else []), *tokenizer], root_p)
        if config is None and conversion != "lora":
            raise PromoteError(f"{rel}: no config.json in it or in its run / parent folders")

    # Names unique to this call: a .<name>.tmp / .old already there is someone else's (never ours to remove).
    tmp, old = commit.unique_temp_for(target), None
    try:
        old = commit.unique_temp_for(target, commit.OLD_MARK)
        hashes: dict[str, str] = {}
        for name in weight_files:
            hashes[name] = copy_hashed(source / name, tmp / name)
        if conversion == "mindspore":
            hashes[EXPORT_WEIGHTS] = _write_mindspore(readable, source, tmp / EXPORT_WEIGHTS)
        elif convert is not None and conversion != "copy":
            _convert(convert, conversion, source, tmp, config, root_p, readable, base)
        if config is not None and not (tmp / CONFIG_FILE).exists():
            hashes[CONFIG_FILE] = copy_hashed(config, tmp / CONFIG_FILE)
        if tokenizer_home is not None:
            for name in EXPORT_TOKENIZER_FILES:
                if (tokenizer_home / name).is_file() and not (tmp / name).exists():
                    hashes[name] = copy_hashed(tokenizer_home / name, tmp / name)
        for name in EXTRA_FILES:
            if (source / name).is_file():
                hashes[name] = copy_hashed(source / name, tmp / name)
        fields = {"source": rel, **source_fields(source, info)}
        manifest = commit.commit(tmp, target, kind=PROMOTED_KIND, hashes=hashes, fields=fields, old=old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _unpark(old, target)
        raise
    result = PromoteResult(
        rel, str(target), sorted(manifest["files"]), None if conversion == "copy" else conversion, manifest
    )
    result.problems = commit.verify(target, check_hashes=True)
    problem: str | None = None
    if conversion == "mindspore":  # cheap and torch-free: always
        problem = mindspore_export.verify(readable, source, target / EXPORT_WEIGHTS)
        result.verified = problem is None
    elif convert is not None and (verify_reload or (verify_reload is None and conversion != "copy")):
        if conversion == "dcp":
            problem = convert.verify_dcp(source, target / EXPORT_WEIGHTS)
        else:
            problem = convert.verify_reload(target)
        result.verified = problem is None
    if problem:
        result.problems.append(problem)
    return result


def _refuse_unreadable(paths: Iterable[Path], root: Path, *, folder_ok: bool = False) -> None:
    """Refuse, before anything is written, when a file the export would read leads outside ROOT or is not a
    regular file (``files.read_refusal``); names that do not exist are the caller's to judge."""
    for path in paths:
        if os.path.lexists(path) and (why := read_refusal(path, root, folder_ok=folder_ok)):
            shown = path.relative_to(root).as_posix() if is_within(path, root) else str(path)
            raise PromoteError(f"{shown}: {why}; nothing exported")


def _conversion_reads(conversion: str, source: Path) -> Iterator[Path]:
    """What a conversion opens besides the weight files. torch, DeepSpeed and PEFT pick files by name in
    the folder they are given, so: that folder and every entry at its top (a subfolder counts only for
    where it leads). Lazy: a folder is listed only once it has passed the check."""
    if conversion in ("mindspore", "bin"):
        yield source if conversion == "mindspore" else source / "pytorch_model.bin"
        return
    folder = source
    if conversion == "zero":
        checkpoint_dir, tag = zero_checkpoint(source)  # type: ignore[misc]
        if tag is None:  # zero_to_fp32 reads `latest` for the tag
            yield checkpoint_dir / DEEPSPEED_LATEST
            tag = (read_small_text(checkpoint_dir / DEEPSPEED_LATEST) or "").strip()
        folder = checkpoint_dir / tag
    elif conversion not in ("lora", "dcp"):
        return
    yield folder
    try:
        with os.scandir(folder) as entries:
            names = sorted(Path(e.path) for e in entries)
    except OSError:
        return  # the conversion then says what it cannot read
    yield from names


def _readable_source(conversion: str, source: Path, rel: str) -> Any:
    """The MindSpore / DCP report of a source those conversions read; refuses a source with problems (a
    truncated file, a .metadata with pickle globals off the allowlist: loading it would run them)."""
    if conversion == "mindspore":
        report: Any = read_mindspore(source)
        trouble = report.unsupported or (report.problems[0] if report.problems else None)
    elif conversion == "dcp":
        report = read_dcp(source)
        trouble = report.problems[0] if report.problems else None
    elif conversion in ("zero", "bin", "lora"):
        # DeepSpeed's zero_to_fp32 loads model and optimizer states with weights_only=False: a pickle that
        # is not proven clean would run during the conversion
        report, trouble = None, pickle_trouble(source)
    else:
        return None
    if trouble:
        raise PromoteError(f"{rel}: cannot be exported ({trouble})")
    return report


def pickle_trouble(source: Path) -> str | None:
    """The first problem of a pickle under ``source`` (two levels: a ZeRO tag folder) whose static scan is
    not clean (docs/SECURITY.md "Pickle scanner"); None when all are."""
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(dirnames) if Path(dirpath) == source else []
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not is_pickle_file(name, path):
                continue
            found: list[str] = []
            report = scan_pickle_into(path, found)
            if report is None or report.verdict != "clean":
                verdict = report.verdict if report is not None else "not verified"
                return f"{found[0] if found else name} (pickle scan: {verdict})"
    return None


def _write_mindspore(report: Any, source: Path, dest: Path) -> str:
    try:
        return mindspore_export.write_safetensors(report, source, dest)
    except mindspore_export.ExportError as e:
        raise PromoteError(f"{source.name}: {e}") from None


_CONVERSION_TEXT = {
    "dcp": "consolidating a torch DCP checkpoint",
    "zero": "consolidating DeepSpeed ZeRO shards",
    "lora": "merging a LoRA adapter into its base model",
    "bin": "converting pytorch_model.bin to safetensors",
}


def _unpark(old: Path | None, target: Path) -> None:
    """After a failed promote: put a previous export parked in ``old`` back, or remove our empty ``old``."""
    if old is None or not old.is_dir() or old.is_symlink():
        return
    if any(old.iterdir()):
        if not os.path.lexists(target):
            os.replace(old, target)
    else:
        old.rmdir()


def _real_target(to: Path | str) -> Path:
    """``to`` with every existing folder on the way resolved, so that a symlink into the source is seen
    as the source; the last component stays (a link there is refused as not our export)."""
    lexical = Path(os.path.abspath(to))
    return Path(os.path.realpath(lexical.parent)) / lexical.name


def _check_target(target: Path, source: Path, overwrite: bool) -> None:
    if target == source or source in target.parents or target in source.parents:
        raise PromoteError(f"{target}: the export must not contain or lie inside its source {source}")
    if not os.path.lexists(target):
        return
    if not overwrite:
        raise PromoteError(f"{target}: already exists; pass --overwrite to replace it")
    manifest = json_object(target / MANIFEST_NAME) or {}
    if manifest.get("kind") != PROMOTED_KIND or target.is_symlink():
        # Replacing renames the old folder aside and removes it: only ever do that to our own export.
        raise PromoteError(f"{target}: exists and is not a promoted export; refusing to replace it")


def _tokenizer_home(source: Path, root: Path, config: Path | None) -> Path | None:
    for folder in (source, config.parent if config else None):
        if folder is not None and any((folder / n).is_file() for n in EXPORT_TOKENIZER_FILES):
            return folder
    found = find_upwards(source, root, "tokenizer_config.json") or find_upwards(
        source, root, "tokenizer.json"
    )
    return found.parent if found else None


def _convert(
    convert: Converter,
    conversion: str,
    source: Path,
    tmp: Path,
    config: Path | None,
    root: Path,
    report: Any,
    base: Path | str | None = None,
) -> None:
    try:
        if conversion == "dcp":
            convert.consolidate_dcp(source, report.tensor_table(), tmp)
        elif conversion == "zero":
            checkpoint_dir, tag = zero_checkpoint(source)  # type: ignore[misc]
            convert.consolidate_zero(checkpoint_dir, tag, config, tmp)
        elif conversion == "lora":
            extra = {"base": Path(base)} if base is not None else {}
            convert.merge_lora(source, tmp, root=root, config=config, **extra)
        else:
            convert.bin_to_safetensors(source / "pytorch_model.bin", config, tmp)  # type: ignore[arg-type]
    except convert.ConvertError as e:
        raise PromoteError(str(e)) from None


def copy_hashed(src: Path, dest: Path) -> str:
    """Copy ``src`` to ``dest`` and return its sha256, read once (big weights are read from disk once).
    Opened as a regular file only: one swapped for a FIFO since the checks must not hang the copy."""
    h = hashlib.sha256()
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, _ = open_regular_file(src)
    except (OSError, ValueError) as e:
        raise PromoteError(f"{src}: {getattr(e, 'strerror', None) or e}; nothing exported") from None
    with os.fdopen(fd, "rb") as fin, open(dest, "wb") as fout:
        while chunk := fin.read(_COPY_CHUNK):
            h.update(chunk)
            fout.write(chunk)
    shutil.copystat(src, dest)
    return h.hexdigest()
