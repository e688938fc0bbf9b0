"""Ask where to promote (empty: the default ``<run>/promoted/<name>/``) and, for a LoRA adapter, which base
model folder to merge into (empty: the adapter's ``base_model_name_or_path``)."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from tui.core.text import safe_text

# Kinds whose export is a conversion with torch (tui.convert): what the user waits for, in words.
CONVERSIONS = {
    "deepspeed": "ZeRO shards are consolidated into model.safetensors",
    "peft-adapter": "the adapter is merged into its base model",
    "torch-dcp": "the DCP shards are consolidated into model.safetensors",
}


class PromoteScreen(ModalScreen["tuple[str, str] | None"]):
    """Dismisses with (target, base) ('' for the defaults) or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="promote.cancel")]

    def __init__(self, source: str, kind: str = "", can_convert: bool = False) -> None:
        super().__init__()
        self.source = source
        self.kind = kind
        self.can_convert = can_convert

    def compose(self) -> ComposeResult:
        with Vertical(id="promote-box"):
            yield Static(
                f"Promote [b]{escape(safe_text(self.source))}[/b] as a clean HF folder",
                id="promote-title",
                markup=True,
            )
            if self.kind in CONVERSIONS:
                how = "runs in the background" if self.can_convert else "needs `ckpt-tui promote` (torch)"
                yield Static(f"{CONVERSIONS[self.kind]}: {how}.", classes="hint", id="promote-conversion")
            yield Static("Target folder (empty: <run>/promoted/<name>/; relative: to ROOT):", classes="hint")
            yield Input(placeholder="leave empty for the default", id="promote-target")
            if self.kind == "peft-adapter":
                yield Static(
                    "Base model folder (empty: the adapter's base_model_name_or_path; relative: to ROOT):",
                    classes="hint",
                )
                yield Input(placeholder="leave empty to use adapter_config.json", id="promote-base")
            yield Static("[b]enter[/b] promote   [b]tab[/b] next field   [b]esc[/b] cancel", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        target = self.query_one("#promote-target", Input).value.strip()
        bases = self.query("#promote-base").results(Input)
        self.dismiss((target, next((b.value.strip() for b in bases), "")))

    def action_cancel(self) -> None:
        self.dismiss(None)
