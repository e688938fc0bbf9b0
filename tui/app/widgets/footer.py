"""The key footer: Textual's Footer, rebuilt only when what it shows changes.

The screen announces a bindings change on every focus move and stack update, and Textual's Footer then
removes and mounts every key again (styles, layout, a repaint): three times in the first 0.2 s of a start,
~25 ms of the UI thread each, while the first scan's rows wait for that thread. The keys it would show are
compared first, and an unchanged footer is left as it is.
"""

from __future__ import annotations

from textual.widgets import Footer


class KeysFooter(Footer):
    _shown: tuple | None = None  # what the footer last composed: shown_keys() then

    def shown_keys(self) -> tuple:
        """What ``Footer.compose`` shows: each shown binding's key, label, action, state and group, and the
        command palette's key."""
        if not self._bindings_ready:
            return ()
        app, active = self.app, self.screen.active_bindings
        keys = tuple(
            (
                binding.key,
                app.get_key_display(binding),
                binding.description,
                binding.action,
                enabled,
                tooltip,
                binding.group,
            )
            for _, binding, enabled, tooltip in active.values()
            if binding.show
        )
        palette = None
        if self.show_command_palette and app.ENABLE_COMMAND_PALETTE:
            found = active.get(app.COMMAND_PALETTE_BINDING)
            if found is not None:
                _, binding, enabled, tooltip = found
                palette = (binding.key, app.get_key_display(binding), binding.description, enabled, tooltip)
        return keys, palette

    async def recompose(self) -> None:
        shown = self.shown_keys()
        if shown == self._shown:
            return
        self._shown = shown
        await super().recompose()
