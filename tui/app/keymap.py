"""Keys remapped by binding id: ``$XDG_CONFIG_HOME/ckpt-tui/keymap.toml`` (default ``~/.config``).

    # binding id (shown by `?`) = the keys, comma-separated, in Textual's names
    "app.delete" = "x"
    "browser.down" = "j,ctrl+n"

A dotted key without quotes is a TOML table (``[app]`` then ``delete = "x"``): both spellings mean the
same id. The result goes to Textual's ``App.set_keymap``.
"""

from __future__ import annotations

import os
from pathlib import Path

from tui.core.files import read_small_text
from tui.core.text import safe_text

KEYMAP_LIMIT = 64 << 10


def keymap_path() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(config) / "ckpt-tui" / "keymap.toml"


def _flatten(table: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def load_keymap(path: Path | None = None) -> tuple[dict[str, str], str | None]:
    """(binding id -> keys, the one-line problem with the file or None). A missing file is no problem;
    a bad one is named and ignored whole (a half-applied keymap would surprise more)."""
    path = keymap_path() if path is None else path
    if not path.exists():
        return {}, None
    text = read_small_text(path, KEYMAP_LIMIT)
    if text is None:
        return {}, f"{path}: unreadable or over {KEYMAP_LIMIT >> 10} KiB; keys not remapped"
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        return {}, f"{path}: reading it needs Python 3.11 (tomllib); keys not remapped"
    try:
        table = _flatten(tomllib.loads(text))
    except tomllib.TOMLDecodeError as e:
        return {}, f"{path}: {safe_text(str(e).splitlines()[0])}; keys not remapped"
    bad = [k for k, v in table.items() if not isinstance(v, str) or not v.strip()]
    if bad:
        return {}, f"{path}: {safe_text(bad[0])} must be a string of keys, e.g. \"x\"; keys not remapped"
    return {k: str(v).replace(" ", "") for k, v in table.items()}, None
