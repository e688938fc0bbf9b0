"""tui.core.text: terminal-safe text per character class, JSON-safe text, number formatting, metric direction."""

from __future__ import annotations

import json
import os

import pytest

from tui.core.text import (
    first_line,
    format_bytes,
    format_count,
    json_safe,
    lower_is_better,
    safe_message,
    safe_text,
)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        # C0 controls: escape sequences, bell, newline, carriage return, tab, NUL
        ("evil\x1b[31mred", "evil\\x1b[31mred"),
        ("t\x1b]0;PWNED\x07x", "t\\x1b]0;PWNED\\x07x"),
        ("a\nb", "a\\x0ab"),
        ("a\rb", "a\\x0db"),
        ("a\tb", "a\\x09b"),
        ("a\x00b", "a\\x00b"),
        # DEL and C1 controls (0x9b is the 8-bit CSI some terminals obey)
        ("a\x7fb", "a\\x7fb"),
        ("a\x9b31mb", "a\\x9b31mb"),
        ("a\x85b", "a\\x85b"),
        # bidi overrides and embeddings U+202A-U+202E, isolates U+2066-U+2069
        ("invoice\u202egnp.exe", "invoice\\u202egnp.exe"),
        ("a\u202ab\u202bc\u202cd\u202de", "a\\u202ab\\u202bc\\u202cd\\u202de"),
        ("a\u2066b\u2067c\u2068d\u2069e", "a\\u2066b\\u2067c\\u2068d\\u2069e"),
        # other invisible format characters and separators that split or hide text
        ("zero\u200bwidth\u200d\ufeff", "zero\\u200bwidth\\u200d\\ufeff"),
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
        ("tag\U000e0041", "tag\\U000e0041"),
        # lone surrogates: an undecodable file-name byte shows as that byte, others as code points
        (os.fsdecode(b"run\xff"), "run\\xff"),
        ("bad\ud800", "bad\\ud800"),
    ],
)
def test_safe_text_escapes_each_class(raw, shown):
    assert safe_text(raw) == shown
    assert safe_text(shown) == shown  # escaping twice changes nothing: safe to apply at every boundary
    shown.encode("utf-8")


@pytest.mark.parametrize(
    "text", ["plain/path-1.2_x", "[bold]markup[/]", "ünïcödé", "日本語", "emoji 🙂", "a b"]
)
def test_safe_text_keeps_printable_text(text):
    assert safe_text(text) == text


def test_safe_text_takes_any_object_and_cuts_long_text():
    assert safe_text(12) == "12"
    assert safe_text(ValueError("x\x1by")) == "x\\x1by"
    assert safe_text("abcdefghij", 6) == "abc..."
    long = "\x1b" * 5000
    cut = safe_message(long)
    assert "\x1b" not in cut and cut.endswith("...") and len(cut) < 5000 * 4


def test_json_safe_keeps_text_json_can_encode_and_escapes_only_lone_surrogates():
    assert json_safe("a\x1bb\u202e") == "a\x1bb\u202e"  # the JSON encoder escapes controls itself
    assert json_safe(os.fsdecode(b"ckpt-\xff\xfe")) == "ckpt-\\xff\\xfe"
    assert json_safe("x\ud800") == "x\\ud800"
    json.dumps(json_safe(os.fsdecode(b"\xe9")), ensure_ascii=False).encode("utf-8")


def test_first_line():
    assert first_line(ValueError("one\ntwo")) == "one"
    assert first_line(KeyError()) == "KeyError"
    assert first_line("x" * 300, 10) == "x" * 10


@pytest.mark.parametrize(
    ("n", "wide", "compact"),
    [
        (0, "0 B", "0B"),
        (512, "512 B", "512B"),
        (1536, "1.5 KiB", "1.5K"),
        (1024**2, "1.0 MiB", "1.0M"),
        (3 * 1024**3, "3.0 GiB", "3.0G"),
        (5 * 1024**4, "5.0 TiB", "5.0T"),
        (None, "?", "?"),
    ],
)
def test_format_bytes_in_both_widths(n, wide, compact):
    assert format_bytes(n) == wide
    assert format_bytes(n, compact=True) == compact


def test_format_count():
    assert [format_count(n) for n in (None, 17, 3400, 110_000_000, 1_200_000_000)] == [
        "-",
        "17",
        "3.4k",
        "110.0M",
        "1.2B",
    ]


@pytest.mark.parametrize(
    "name",
    [
        "loss",
        "eval_loss",
        "log_loss",
        "val/loss",
        "ppl",
        "eval_ppl",
        "perplexity",
        "wer",
        "eval_cer",
        "rmse",
        "mae",
        "mse",
        "error_rate",
    ],
)
def test_lower_is_better(name):
    assert lower_is_better(name)


@pytest.mark.parametrize(
    "name", ["accuracy", "f1_macro", "eval_f1", "answer_f1", "lower_bound", "power", None]
)
def test_higher_is_better(name):
    assert not lower_is_better(name)


def test_format_value_cells():
    from tui.core.text import format_value

    assert format_value(None) == "-"
    assert format_value(None, missing="–") == "–"
    assert format_value(0.123456) == "0.1235"
    assert format_value(0.5, ".4f") == "0.5000"
    assert format_value(3) == "3"
    assert format_value("bf16") == "bf16"


def test_plural_agrees_with_the_count():
    from tui.core.text import plural

    assert plural(1, "item") == "1 item"
    assert plural(0, "item") == "0 items"
    assert plural(2, "trash entry", "trash entries") == "2 trash entries"
    assert plural(1, "trash entry", "trash entries") == "1 trash entry"
