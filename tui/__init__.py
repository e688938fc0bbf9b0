"""ckpt-tui: the checkpoint browser (app in tui.app, pure core in tui.core, CLI in tui.cli)."""

__version__ = "0.1.0"
