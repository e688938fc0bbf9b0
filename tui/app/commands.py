"""Command palette entries: one per app binding, so every action is reachable without remembering keys."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider


class ActionsProvider(Provider):
    """Lists the app's bindings (and extra palette-only actions) by their description."""

    def _entries(self) -> list[tuple[str, str, str]]:
        app = self.app
        entries = [
            (b.description, b.action, f"key: {b.key_display or b.key}") for b in app.BINDINGS if b.description
        ]
        entries += list(getattr(app, "PALETTE_ONLY", ()))
        return entries

    async def discover(self) -> Hits:
        for title, action, help_text in self._entries():
            yield DiscoveryHit(title, partial(self.app.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, action, help_text in self._entries():
            score = matcher.match(title)
            if score > 0:
                yield Hit(
                    score, matcher.highlight(title), partial(self.app.run_action, action), help=help_text
                )
