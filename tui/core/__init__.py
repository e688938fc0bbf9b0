"""The pure inspection core: standard library (plus pandas/sklearn, lazily) only.

Never imports textual, torch, transformers or deepspeed (tests/core/test_import_hygiene.py).
"""
