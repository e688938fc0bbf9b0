"""Summaries of the small JSON files beside the weights: config.json, the tokenizer files and
trainer_state.json. Every reader is bounded in size and never raises: a file that cannot be used
becomes a one-line problem naming it, and the summary is None."""

from __future__ import annotations

import os
from pathlib import Path

from tui.core import cache
from tui.core.files import is_folder, json_int, json_number, load_json, load_json_object, open_regular_file
from tui.core.names import ADAPTER_CONFIG, CHECKPOINT_N, CONFIG_FILE, TOKENIZER_FILES, TRAINER_STATE

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~3 ms of every command's start)
if TYPE_CHECKING:
    from typing import Any

CONFIG_LIMIT = 16 << 20
TOKENIZER_LIMIT = 64 << 20  # tokenizer.json of a 250k-token vocabulary is ~20 MB
STATE_LIMIT = 64 << 20  # trainer_state.json / train_state.json hold the log history: large, never unbounded
# transformers' "no limit" sentinel (VERY_LARGE_INTEGER) is int(1e30); anything this large means unknown.
_NO_MAX_LENGTH = 10**18


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


# --- config.json ------------------------------------------------------------------------------------------


def config_summary(folder: Path) -> tuple[dict[str, Any] | None, list[str]]:
    path = os.path.join(folder, CONFIG_FILE)  # a string: the scan reads one per checkpoint
    return cache.memo("config/1", [(path, None)], lambda: _config_summary(path), decode=tuple)


def _config_summary(path: str | os.PathLike) -> tuple[dict[str, Any] | None, list[str]]:
    data, problems = load_json_object(path, limit=CONFIG_LIMIT)
    if data is None:
        return None, problems
    id2label = data.get("id2label")
    id2label = {str(k): str(v) for k, v in id2label.items()} if isinstance(id2label, dict) else None
    num_labels = len(id2label) if id2label else json_int(data.get("num_labels"))
    architectures = data.get("architectures")
    return {
        "model_type": _str(data.get("model_type")),
        "architectures": [a for a in architectures if isinstance(a, str)]
        if isinstance(architectures, list)
        else None,
        "hidden_size": json_int(data.get("hidden_size")),
        "num_hidden_layers": json_int(data.get("num_hidden_layers")),
        "num_attention_heads": json_int(data.get("num_attention_heads")),
        "vocab_size": json_int(data.get("vocab_size")),
        "num_labels": num_labels,
        "id2label": id2label,
        # transformers 5 writes "dtype"; 4.x wrote "torch_dtype".
        "dtype": _str(data.get("dtype")) or _str(data.get("torch_dtype")),
    }, []


def config_file(path: str | os.PathLike) -> tuple[dict[str, Any] | None, list[str]]:
    """The whole config of a checkpoint folder, as written: ``config.json``, else a PEFT
    ``adapter_config.json``; (None, []) for a file or a folder with neither. At most ``CONFIG_LIMIT``
    bytes are read (``inspect --json`` prints it as ``config_file``; diffs compare it key by key)."""
    folder = Path(path)
    if not folder.is_dir():
        return None, []
    for name in (CONFIG_FILE, ADAPTER_CONFIG):
        target = folder / name
        if target.is_file():
            return cache.memo(
                f"config-file/1/{name}",
                [(target, None)],
                lambda target=target: load_json_object(target, limit=CONFIG_LIMIT),
                decode=tuple,
            )
    return None, []


def adapter_config_summary(folder: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """PEFT adapter_config.json: base model, method, rank and targets."""
    data, problems = load_json_object(Path(folder) / ADAPTER_CONFIG, limit=CONFIG_LIMIT)
    if data is None:
        return None, problems
    targets = data.get("target_modules")
    return {
        "peft_type": _str(data.get("peft_type")),
        "base_model": _str(data.get("base_model_name_or_path")),
        "r": json_int(data.get("r")),
        "lora_alpha": json_number(data.get("lora_alpha")),
        "target_modules": targets if isinstance(targets, (list, str)) else None,
        "task_type": _str(data.get("task_type")),
    }, []


# --- tokenizer ----------------------------------------------------------------------------------------


def tokenizer_summary(folder: Path) -> tuple[dict[str, Any] | None, list[str]]:
    folder = Path(folder)
    try:
        present = sorted(n for n in os.listdir(folder) if n in TOKENIZER_FILES)
    except OSError:
        present = []
    if not present:
        return None, []
    problems: list[str] = []
    tok_config, err = load_json(folder / "tokenizer_config.json")
    if err:
        problems.append(err)
    tok_config = tok_config if isinstance(tok_config, dict) else {}
    specials: dict[str, str] = {}
    special_map, err = load_json(folder / "special_tokens_map.json")
    if err:
        problems.append(err)
    for source in (tok_config, special_map if isinstance(special_map, dict) else {}):
        for key, value in source.items():
            if key.endswith("_token"):
                text = value.get("content") if isinstance(value, dict) else value
                if isinstance(text, str):
                    specials[key] = text
    vocab_size, added_special, err = _vocab_size(folder, present)
    if err:
        problems.append(err)
    max_len = json_int(tok_config.get("model_max_length"))
    return {
        "class": _str(tok_config.get("tokenizer_class")),
        "vocab_size": vocab_size,
        "special_tokens": specials,
        "added_special_tokens": added_special,
        "model_max_length": max_len if max_len is not None and max_len < _NO_MAX_LENGTH else None,
        "files": present,
    }, problems


def _vocab_size(folder: Path, present: list[str]) -> tuple[int | None, list[str], str | None]:
    """Size of the id space: model vocab plus added tokens (deduplicated by id)."""
    if "tokenizer.json" in present:
        data, err = load_json(folder / "tokenizer.json", limit=TOKENIZER_LIMIT)
        if err or not isinstance(data, dict):
            return None, [], err or "tokenizer.json: not a JSON object"
        model = data.get("model") if isinstance(data.get("model"), dict) else {}
        vocab = model.get("vocab")
        if isinstance(vocab, dict):  # WordPiece / BPE / WordLevel: token -> id
            ids = {v for v in vocab.values() if isinstance(v, int)}
        elif isinstance(vocab, list):  # Unigram: [[piece, score], ...], id = position
            ids = set(range(len(vocab)))
        else:
            ids = set()
        added = data.get("added_tokens") if isinstance(data.get("added_tokens"), list) else []
        special = []
        for tok in added:
            if isinstance(tok, dict) and isinstance(tok.get("id"), int):
                ids.add(tok["id"])
                if tok.get("special") and isinstance(tok.get("content"), str):
                    special.append(tok["content"])
        return (len(ids) or None), special, None
    if "vocab.txt" in present:
        return _count_vocab_lines(folder / "vocab.txt")
    if "vocab.json" in present:
        data, err = load_json(folder / "vocab.json", limit=TOKENIZER_LIMIT)
        return (len(data) if isinstance(data, dict) else None), [], err
    return None, [], None


def _count_vocab_lines(path: Path) -> tuple[int | None, list[str], str | None]:
    """Non-blank lines of a WordPiece vocab.txt, read in chunks up to TOKENIZER_LIMIT bytes (a 2 GB file
    without a newline is one line: iterating lines would hold all of it)."""
    try:
        fd, _ = open_regular_file(path)
    except OSError as e:
        return None, [], f"vocab.txt: unreadable ({e.strerror})"
    except ValueError as e:
        return None, [], f"vocab.txt: {e}"
    count, read, last = 0, 0, b"\n"
    with os.fdopen(fd, "rb") as f:
        while read <= TOKENIZER_LIMIT and (chunk := f.read(1 << 20)):
            read += len(chunk)
            lines = chunk.split(b"\n")
            lines[0] = last + lines[0]
            last = lines.pop()
            count += sum(1 for line in lines if line.strip())
    if read > TOKENIZER_LIMIT:
        return None, [], f"vocab.txt: larger than {TOKENIZER_LIMIT >> 20} MiB, not read"
    return count + (1 if last.strip() else 0), [], None


# --- trainer_state.json -------------------------------------------------------------------------------


def resolve_best_checkpoint(folder: Path, value: Any, root: Path | None = None) -> Path | None:
    """Where ``best_model_checkpoint`` of ``folder/trainer_state.json`` points, or None.

    Ours is relative to ``folder`` (``"."`` = itself). HF writes ``<output_dir>/checkpoint-N``, absolute
    or relative to the training CWD, and a copied run keeps the old absolute path, which may still exist
    elsewhere: so the last component is looked up first, as ``folder`` itself, a sibling or a child (the
    copy's own checkpoint). The path as written is used only when it lies inside ``root`` once links are
    resolved (never without a ``root``): a folder outside ROOT must never decide what is best.
    """
    found = _resolve_best(folder, value, root)
    return Path(found) if found is not None else None


def _resolve_best(folder: str | os.PathLike, value: Any, root: str | os.PathLike | None) -> str | None:
    """``resolve_best_checkpoint`` on strings (the scan resolves one per trainer_state.json): the folder is
    made absolute and normal by ``abspath``, so joining names onto it is what ``Path`` would do."""
    if not isinstance(value, str) or not value.strip():
        return None
    folder = os.path.abspath(folder)
    if os.sep != "/" or folder.startswith("//"):  # POSIX leaves a leading "//" to the system: Path's rules
        found = _resolve_best_path(Path(folder), value, root)
        return str(found) if found is not None else None
    parent, own = os.path.split(folder)
    if not os.path.isabs(value):
        direct = os.path.normpath(os.path.join(folder, value))
        # ours, relative to the folder: itself, a sibling or a child
        if (direct == parent or direct.startswith(parent.rstrip("/") + "/")) and is_folder(direct):
            return direct
    parts = [p for p in value.rstrip("/\\").replace("\\", "/").split("/") if p and p != "."]
    last = parts[-1] if parts else ""
    if last and last != "..":
        if own == last:
            return folder
        # A checkpoint-N names its siblings; an output folder (its own trainer_state) its children.
        near = (os.path.join(parent, last), os.path.join(folder, last))
        for candidate in near if CHECKPOINT_N.match(own) else near[::-1]:
            if is_folder(candidate):
                return candidate
    found = _inside_root(value, root)
    return str(found) if found is not None else None


def _resolve_best_path(folder: Path, value: str, root: str | os.PathLike | None) -> Path | None:
    if not os.path.isabs(value):
        direct = Path(os.path.normpath(folder / value))
        if is_folder(direct) and (direct == folder.parent or folder.parent in direct.parents):
            return direct
    last = Path(value.rstrip("/\\").replace("\\", "/")).name
    if last and last not in (".", ".."):
        if folder.name == last:
            return folder
        near = (folder.parent / last, folder / last)
        for candidate in near if CHECKPOINT_N.match(folder.name) else near[::-1]:
            if is_folder(candidate):
                return candidate
    return _inside_root(value, root)


def _inside_root(value: str, root: str | os.PathLike | None) -> Path | None:
    """``value`` as written, when it is an existing folder inside ``root`` once links are resolved."""
    if root is not None and os.path.isabs(value) and is_folder(value):
        real, real_root = Path(os.path.realpath(value)), Path(os.path.realpath(root))
        if real == real_root or real_root in real.parents:
            return Path(os.path.normpath(value))
    return None


def trainer_state_summary(
    folder: Path, *, name: str = TRAINER_STATE, root: Path | None = None, lean: bool = False
) -> tuple[dict[str, Any] | None, list[str]]:
    """global_step, epoch, best_metric, best_model_checkpoint (raw and resolved), log_history.

    ``name`` may be ``train_state.json`` (our resumable step folders) which shares the keys it has.
    ``best_model_checkpoint_resolved`` is posix relative to ``root`` when given, else absolute.
    ``lean``: what the scan needs, from the cache when the file is unchanged: ``log_history`` keeps only
    the steps and values of ``metric_name`` (enough for ``last_evaluation``).
    """
    path = os.path.join(folder, name)  # a string: the scan reads one per checkpoint, Path costs more
    if lean:
        facts, problems = cache.memo(
            f"trainer-state/2/lean/{name}",
            [(path, None)],
            lambda: _state_facts(path, lean=True),
            decode=tuple,
        )
    else:
        facts, problems = _state_facts(path, lean=False)
    if facts is None:
        return None, problems
    # Where the best checkpoint is depends on other folders: resolved on every call, never cached.
    resolved = _resolve_best(folder, facts["best_model_checkpoint"], root)
    resolved_text = _relative_text(resolved, root) if resolved is not None else None
    return {
        "global_step": facts["global_step"],
        "epoch": facts["epoch"],
        "best_metric": facts["best_metric"],
        "best_global_step": facts["best_global_step"],
        "best_model_checkpoint": facts["best_model_checkpoint"],
        "best_model_checkpoint_resolved": resolved_text,
        "metric_name": facts["metric_name"],
        "log_history": facts["log_history"],
    }, problems


def _relative_text(resolved: str, root: str | os.PathLike | None) -> str:
    """``resolved`` (absolute, normal) as posix text relative to ``root`` when inside it, else as is:
    ``Path.relative_to(...).as_posix()`` on strings."""
    if root is None:
        return resolved
    base = os.path.abspath(root)
    if os.sep != "/" or resolved.startswith("//") or base.startswith("//"):
        try:
            return Path(resolved).relative_to(Path(base)).as_posix()
        except ValueError:
            return Path(resolved).as_posix()
    if resolved == base:
        return "."
    prefix = base if base.endswith("/") else base + "/"
    return resolved[len(prefix) :] if resolved.startswith(prefix) else resolved


def _state_facts(path: str | os.PathLike, *, lean: bool) -> tuple[dict[str, Any] | None, list[str]]:
    """What trainer_state.json says by itself (a function of the file alone, so it can be cached)."""
    data, problems = load_json_object(path, limit=STATE_LIMIT)
    if data is None:
        return None, problems
    history = data.get("log_history")
    entries = [e for e in history if type(e) is dict] if isinstance(history, list) else []
    metric_name = _named_metric_key(data, entries) or _infer_metric_name(data, entries)
    if lean:
        cleaned = []
        if metric_name:  # JSON gives exact types: int/float (never bool) is a number
            # most entries are training logs without the metric: filtered in C before the loop
            for e in [e for e in entries if metric_name in e]:
                value = e[metric_name]
                if type(value) is int or type(value) is float:
                    step = e.get("step")
                    step = step if type(step) is int or type(step) is float else None
                    cleaned.append({"step": step, metric_name: value})
    else:
        cleaned = [_clean_log_entry(e) for e in entries]
    return {
        "global_step": json_int(data.get("global_step")),
        "epoch": json_number(data.get("epoch")),
        "best_metric": json_number(data.get("best_metric")),
        "best_global_step": json_int(data.get("best_global_step")) or json_int(data.get("best_step")),
        "best_model_checkpoint": _str(data.get("best_model_checkpoint")),
        "metric_name": metric_name,
        "log_history": cleaned,
    }, []


def _clean_log_entry(entry: dict[str, Any]) -> dict[str, Any]:
    return {str(k): v for k, v in entry.items() if json_number(v) is not None}


def _named_metric_key(state: dict[str, Any], entries: list[dict[str, Any]]) -> str | None:
    """``eval_<metric_name>`` when the state names its metric (our train_state.json does) and the history
    logs it: known before the first improvement, where ``infer_metric_name`` needs a best value."""
    name = state.get("metric_name")
    if not isinstance(name, str) or not name:
        return None
    key = name if name.startswith("eval_") else f"eval_{name}"
    return key if any(key in e for e in entries) else None


def infer_metric_name(state: dict[str, Any]) -> str | None:
    """The eval_* key whose value at the best step equals best_metric (HF does not store the name).

    Returns None unless exactly one key matches: a name is never guessed.
    """
    history = state.get("log_history")
    if not isinstance(history, list):
        return None
    return _infer_metric_name(state, [e for e in history if isinstance(e, dict)])


def _infer_metric_name(state: dict[str, Any], entries: list[dict[str, Any]]) -> str | None:
    """``infer_metric_name`` over the dict entries of the state's ``log_history`` (a list)."""
    best = json_number(state.get("best_metric"))
    if best is None or not isinstance(state.get("log_history"), list):
        return None
    best_step = json_int(state.get("best_global_step"))
    if best_step is not None:  # only the entries logged at the best step can hold its value
        entries = [e for e in entries if e.get("step") == best_step]
    names = set()
    for entry in entries:
        for key, value in entry.items():
            if isinstance(key, str) and key.startswith("eval_") and json_number(value) == best:
                names.add(key)
    return names.pop() if len(names) == 1 else None


def last_evaluation(
    log_history: Any, metric_key: str | None, step: int | None
) -> tuple[float, int | None] | None:
    """(value, step) of the last ``metric_key`` entry of ``log_history`` logged at or before ``step``: the
    evaluation that describes a checkpoint saved at ``step`` (its own, or the newest one before it when
    saves and evaluations are not aligned). None when there is none. The trainer writes it into step
    manifests and the scan reads it back, so both use this one rule."""
    if not metric_key or step is None or not isinstance(log_history, list):
        return None
    found: tuple[float, int | None] | None = None
    for entry in log_history:
        if not isinstance(entry, dict):
            continue
        value, at = json_number(entry.get(metric_key)), json_int(entry.get("step"))
        if value is None or at is None or at > step:
            continue
        if found is None or found[1] is None or at >= found[1]:
            found = (value, at)
    return found
