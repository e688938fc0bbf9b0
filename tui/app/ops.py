"""What the app does to the disk, and the screens that choose it: delete (the marked checkpoints or the
selected one), slim, prune (the prune screen), the trash screen (restore, empty), undo, promote (with the
converter the CLI injected), marks and diff.

Every destructive action is planned in a worker by ``tui.core.actions``, shown by the one
``ConfirmModal`` and executed in a worker after ``y``; the app only posts what the core returns.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from textual import work

from tui.app import messages as msg
from tui.app import tasks
from tui.app.screens.confirm import ConfirmModal
from tui.core.model import CheckpointInfo
from tui.core.text import format_bytes

if TYPE_CHECKING:
    from tui.core.actions import Plan, PlanAction
    from tui.core.trash import TrashEntry


class ActionsMixin:
    """Mixed into ``CkptApp`` (it relies on its store, browser, root, notify and _post_outcome)."""

    promoting: dict[str, tuple[str, float]]  # path -> (the step running now, when promote started)

    # --- what to act on ---------------------------------------------------------------------------------

    def _selected_or_refuse(self, verb: str) -> CheckpointInfo | None:
        info = self.browser.current_info
        if info is None:
            self.notify(f"Nothing to {verb}: select a checkpoint row first.", severity="warning")
        return info

    def action_delete(self) -> None:
        """The marked checkpoints, all in one plan; with no marks, the selected one."""
        if self.store.marked:
            self._plan_worker("delete", list(self.store.marked), self.store.snapshot())
        elif info := self._selected_or_refuse("delete"):
            self._plan_worker("delete", [info.path], self.store.snapshot())

    def action_slim(self) -> None:
        if info := self._selected_or_refuse("slim"):
            self._plan_worker("slim", [info.path], self.store.snapshot())

    # --- prune: the prune screen previews the plan, the confirmation modal confirms it -------------------

    def action_prune(self) -> None:
        group = self.browser.current_group
        if group is None:
            self.notify("Nothing to prune: no checkpoints yet.", severity="warning")
            return
        from tui.app.screens.prune import PruneScreen

        infos = self.store.of_run(group)
        screen = PruneScreen(self.root, group, infos, self.prune_keep, self.prune_metric)

        def chosen(plan: Plan | None) -> None:
            if plan is None:
                self.notify("Prune cancelled; nothing changed.")
            else:
                self._confirm_plan("prune", plan)

        self.push_screen(screen, chosen)

    # --- the one confirmation path ----------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="plan", exit_on_error=False)
    def _plan_worker(self, action: PlanAction, paths: list[str], infos: list[CheckpointInfo]) -> None:
        self._post_outcome(
            lambda: msg.PlanReady(
                action, tasks.plan(self.root, action, paths, infos, self.prune_keep, self.prune_metric)
            ),
            lambda error: msg.PlanReady(action, None, error=error),
        )

    def on_plan_ready(self, message: msg.PlanReady) -> None:
        if message.error or message.plan is None:
            self.notify(f"Cannot {message.action}: {message.error}", severity="error", timeout=8)
            return
        self._confirm_plan(message.action, message.plan)

    def _confirm_plan(self, action: str, plan: Plan) -> None:
        if not plan.items:
            # Everything asked for was refused (the reasons are in the summary), or there is nothing to do.
            severity = "error" if plan.refusals else "information"
            self.notify(plan.summary or f"Nothing to {action}.", severity=severity, timeout=10)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._execute_worker(plan)
            else:
                self.notify(f"{action.capitalize()} cancelled; nothing changed.")

        self.push_screen(ConfirmModal.for_plan(action, plan), answered)

    @work(thread=True, exclusive=True, group="action", exit_on_error=False)
    def _execute_worker(self, plan: Plan) -> None:
        self._post_outcome(
            lambda: msg.ActionDone(plan.action, *tasks.execute(plan)),
            lambda error: msg.ActionDone(plan.action, False, f"{plan.action} failed: {error}"),
        )

    def on_action_done(self, message: msg.ActionDone) -> None:
        if self._torn_down:
            return
        self.notify(message.text, severity="information" if message.ok else "error", timeout=8)
        if message.action == "delete" and message.ok:
            self.browser.refresh_names(self.store.clear_marks())  # what was marked has gone
        if message.action == "promote":
            self.promoting.pop(message.path or "", None)
        if message.changed_disk:
            self.store.inspections.clear()
            self.start_scan()
            for screen in self.screen_stack:
                if hasattr(screen, "reload_trash"):
                    screen.reload_trash()
        self._update_status()

    # --- trash ------------------------------------------------------------------------------------------

    def action_undo(self) -> None:
        self._undo_worker()

    @work(thread=True, exclusive=True, group="action", exit_on_error=False)
    def _undo_worker(self) -> None:
        self._post_outcome(
            lambda: msg.ActionDone("undo", *tasks.undo_last(self.root)),
            lambda error: msg.ActionDone("undo", False, f"undo failed: {error}"),
        )

    def action_trash(self) -> None:
        from tui.app.screens.trash import TrashScreen

        self.push_screen(TrashScreen(self.root))

    def action_empty_trash(self) -> None:
        self._plan_worker("trash-empty", [], [])

    def empty_trash_entries(self, ids: list[str]) -> None:
        self._plan_worker("trash-empty", ids, [])

    def restore_trash_entry(self, entry: TrashEntry) -> None:
        """Ask, then put ``entry`` back where it was (a worker)."""
        size = format_bytes(entry.size_bytes)
        summary = f"Put back {entry.what} ({size}) at {entry.original_path or '?'}."

        def answered(yes: bool | None) -> None:
            if yes:
                self._restore_worker(entry.id)
            else:
                self.notify("Restore cancelled; nothing changed.")

        items = [(entry.original_path, entry.size_bytes, entry.what)]
        self.push_screen(ConfirmModal("Confirm restore", summary, items), answered)

    @work(thread=True, exclusive=True, group="action", exit_on_error=False)
    def _restore_worker(self, entry_id: str) -> None:
        self._post_outcome(
            lambda: msg.ActionDone("undo", *tasks.restore(self.root, entry_id)),
            lambda error: msg.ActionDone("undo", False, f"restore failed: {error}"),
        )

    # --- promote ----------------------------------------------------------------------------------------

    def action_promote(self) -> None:
        info = self._selected_or_refuse("promote")
        if info is None:
            return
        from tui.app.screens.promote import PromoteScreen

        def answered(choice: tuple[str, str] | None) -> None:
            if choice is None:
                self.notify("Promote cancelled.")
                return
            target, base = choice
            self.notify(f"Promoting {info.path}…", timeout=4)
            self.promoting[info.path] = ("starting", time.monotonic())
            self._update_status()
            self._promote_worker(info.path, target or None, base or None, self.store.snapshot())

        self.push_screen(PromoteScreen(info.path, info.kind, self.convert_loader is not None), answered)

    @work(thread=True, exclusive=False, group="promote", exit_on_error=False)
    def _promote_worker(self, path: str, target: str | None, base: str | None, infos: list[Any]) -> None:
        def progress(stage: str) -> None:
            self.post_message(msg.PromoteProgress(path, stage))

        def run() -> msg.ActionDone:
            convert = self.convert_loader() if self.convert_loader is not None else None
            done = tasks.promote(self.root, path, target, infos, convert=convert, base=base, progress=progress)
            return msg.ActionDone("promote", *done, path=path)

        self._post_outcome(
            run,
            lambda error: msg.ActionDone("promote", False, f"Promote refused: {error}", False, path=path),
        )

    def on_promote_progress(self, message: msg.PromoteProgress) -> None:
        if message.path in self.promoting:
            self.promoting[message.path] = (message.stage, self.promoting[message.path][1])
            self._update_status()

    def promote_status(self) -> list[str]:
        """The status line's part for each promote running: what it does now, for how long."""
        now = time.monotonic()
        return [
            f"promoting {path}: {stage} ({now - started:.0f} s)"
            for path, (stage, started) in self.promoting.items()
        ]

    # --- marks and diff ---------------------------------------------------------------------------------

    def action_mark(self) -> None:
        info = self._selected_or_refuse("mark")
        if info is None:
            return
        self.store.toggle_mark(info.path)
        self.browser.refresh_names([info.path])
        self._update_status()
        if len(self.store.marked) == 2:
            self.notify("Two checkpoints marked: D shows their diff, d deletes both.")

    def action_clear_marks(self) -> None:
        self.browser.refresh_names(self.store.clear_marks())
        self._update_status()

    def action_diff(self) -> None:
        marked = self.store.marked
        if len(marked) != 2:
            self.notify(
                f"Diff needs exactly two marked checkpoints (m marks); {len(marked)} marked.",
                severity="warning",
            )
            return
        self._diff_worker(marked[0], marked[1])

    @work(thread=True, exclusive=True, group="diff", exit_on_error=False)
    def _diff_worker(self, left: str, right: str) -> None:
        self._post_outcome(
            lambda: msg.DiffReady(left, right, *tasks.diff(self.root, left, right)),
            lambda error: msg.DiffReady(left, right, error=error),
        )

    def on_diff_ready(self, message: msg.DiffReady) -> None:
        if message.error:
            self.notify(f"Diff failed: {message.error}", severity="error", timeout=8)
            return
        from tui.app.screens.diff import DiffScreen

        self.push_screen(DiffScreen(message.left, message.right, message.config_diff, message.tensor_diff))
