"""Commands that change the disk: ``rm``, ``slim``, ``prune``, ``promote``, ``trash list|restore|empty``.

Each plans first (``tui.core.actions``), prints the plan's summary, then asks: on a TTY ``[y/N]``, and
without a TTY it refuses (exit 1) unless ``--yes`` is given. ``--dry-run`` prints the plan and changes
nothing. ``--json`` prints one JSON object on stdout. Exit 0 done, 1 refused (by a rule, by the user, by
a missing TTY), 2 usage.

Which ROOT (where the trash lives, and the boundary nothing is touched outside of): ``--root`` when
given; else derived from the PATHs, never from the current directory (``derive_root``): the nearest
ancestor holding a ``.ckpt-trash`` folder (repeated deletes share one trash, and the app opened there
sees them); else the folder holding the enclosing run (run.json, or the output folder of a
``checkpoint-N`` / ``step_N``), so the run's best / promoted checkpoints and its lock are in view; else
the folder holding the PATH. ``trash`` has no PATH: the nearest ancestor of the current directory
holding a trash, else the current directory. The ROOT used is said on stderr. A PATH outside ROOT is
refused, never followed. The trash is a rename on ROOT's filesystem, so a PATH on another disk is
refused rather than copied.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from tui.cli.output import note, print_json
from tui.core.names import CHECKPOINT_N, RUN_FILE, STEP_DIR, TRASH_DIR
from tui.core.text import format_bytes, plural, safe_text

EXIT_OK, EXIT_REFUSED = 0, 1
ROOT_HELP = (
    "ROOT holding the trash (default, said on stderr: the nearest folder above PATH holding .ckpt-trash, "
    "else the folder holding PATH's run, else PATH's folder)"
)


def register(sub) -> None:
    for name, text in (
        ("rm", "move checkpoints to the trash under ROOT (undo with `trash restore`)"),
        ("slim", "drop optimizer / scheduler / RNG / ZeRO optimizer states, keep weights, config, tokenizer"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("paths", nargs="+", metavar="PATH")
        p.add_argument(
            "--root", default=None, help=ROOT_HELP
        )
        _confirm_flags(p)
        p.set_defaults(handler=cmd_rm if name == "rm" else cmd_slim)

    p = sub.add_parser(
        "prune", help="keep the top K by a metric plus the latest of each run/fold; trash the rest"
    )
    p.add_argument("root", metavar="ROOT")
    p.add_argument("--keep", type=int, required=True, metavar="K")
    p.add_argument("--metric", required=True, metavar="NAME", help="e.g. f1_macro, eval_loss")
    p.add_argument(
        "--mode", choices=("max", "min"), default=None, help="default: min for losses/errors, else max"
    )
    _confirm_flags(p)
    p.set_defaults(handler=cmd_prune)

    p = sub.add_parser(
        "promote",
        help="export a checkpoint as a clean HF folder with a manifest (a MindSpore .ckpt or a torch DCP "
        "folder: its network weights as model.safetensors)",
    )
    p.add_argument("path", metavar="PATH")
    p.add_argument("--to", default=None, metavar="DIR", help="default: <run>/promoted/<name>/")
    p.add_argument("--overwrite", action="store_true", help="replace an existing promoted export")
    p.add_argument(
        "--base",
        default=None,
        metavar="DIR",
        help="LoRA adapter: the base model folder to merge into (default: its base_model_name_or_path)",
    )
    p.add_argument("--root", default=None, help=ROOT_HELP)
    p.add_argument(
        "--verify",
        action="store_true",
        help="reload the export with from_pretrained (needs torch); a DCP export is compared tensor by tensor "
        "with its source (a MindSpore export always is)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_promote)

    p = sub.add_parser("trash", help="list, restore or empty the trash under ROOT")
    p.add_argument("trash_command", choices=("list", "restore", "empty"))
    p.add_argument("id", nargs="?", metavar="ID")
    p.add_argument("--root", default=None, help="ROOT (default: the nearest folder above the current one holding .ckpt-trash, else .)")
    p.add_argument("--yes", action="store_true", help="empty without asking")
    p.add_argument("--dry-run", action="store_true", help="empty: show what would go")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_trash)


def _confirm_flags(p) -> None:
    p.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    p.add_argument("--yes", action="store_true", help="do not ask (required without a TTY)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


# --- ROOT and infos --------------------------------------------------------------------------------------


def _usage(message: str) -> Exception:
    from tui.cli import UsageError  # tui.cli imports this module: import lazily

    return UsageError(message)


def derive_root(paths: list[Path]) -> tuple[Path, str]:
    """ROOT when ``--root`` is not given, from the PATHs (never the current directory), and why: the
    nearest ancestor holding ``.ckpt-trash`` (repeated deletes share one trash, and the app opened there
    sees them); else the folder holding the enclosing run (run.json; or the output folder of a
    ``checkpoint-N`` / ``step_N``), so its best / promoted checkpoints and lock are in view; else the
    folder holding the PATH. Several PATHs: the folder holding them all, unless a trash lies above it."""
    starts = [Path(os.path.abspath(p)) for p in paths]
    common = Path(os.path.commonpath([str(p) for p in starts]))
    if common in starts:  # one PATH, or one PATH inside another: start above it
        common = common.parent
    trash_root = _nearest_trash(common)
    if trash_root is not None:
        return trash_root, f"it holds {TRASH_DIR}"
    roots = [_root_of_one(p) for p in starts]
    if len({r for r, _ in roots}) == 1:
        return roots[0]
    top = Path(os.path.commonpath([str(r) for r, _ in roots]))
    if top == top.parent or top == Path.home():
        raise _usage(f"the PATHs share no folder below {safe_text(top)}: pass --root ROOT")
    return top, "the folder holding every PATH's run or folder"


def _root_of_one(path: Path) -> tuple[Path, str]:
    for folder in [path, *path.parents]:
        if (folder / RUN_FILE).is_file() and folder.parent != folder:
            return folder.parent, f"the folder holding the run {folder.name}"
    if (CHECKPOINT_N.match(path.name) or STEP_DIR.match(path.name)) and path.parent.parent != path.parent:
        return path.parent.parent, f"the folder holding {path.parent.name}, the output folder of {path.name}"
    return path.parent, f"the folder holding {path.name}"


def _root_for(args, paths: list[Path] | None) -> Path:
    """``--root``, else the derived ROOT, said on stderr (where the trash goes is never a surprise)."""
    if args.root is not None:
        if not os.path.isdir(args.root):
            raise _usage(f"--root {safe_text(args.root)}: no such folder")
        return Path(args.root)
    if paths:
        root, why = derive_root(paths)
    else:
        root, why = _trash_root_from_cwd()
    note(f"ROOT {root} ({why}; --root to choose)")
    return root


def _trash_root_from_cwd() -> tuple[Path, str]:
    """``trash`` has no PATH: the nearest ancestor of the current directory holding a trash, else it."""
    cwd = Path.cwd()
    trash_root = _nearest_trash(cwd)
    if trash_root is not None:
        return trash_root, f"the nearest folder holding {TRASH_DIR}"
    return cwd, "the current directory"


def _nearest_trash(start: Path) -> Path | None:
    """``start`` or its nearest ancestor holding ``.ckpt-trash``: repeated deletes share one trash."""
    return next((folder for folder in [start, *start.parents] if (folder / TRASH_DIR).is_dir()), None)


def _abs(path: str) -> Path:
    return Path(os.path.abspath(path))


def _scan(root: Path) -> list:
    """Scanned infos for the protection rules (best / promoted); a scan warning never blocks."""
    from tui.core.scan import iter_checkpoints

    return list(iter_checkpoints(root, errors=[]))


# --- output and confirmation -----------------------------------------------------------------------------


def _emit(args, obj: dict[str, Any], text: str) -> None:
    if args.json:
        print_json(obj)
    else:
        print(text)


def _plan_text(plan) -> str:
    lines = [f"  {format_bytes(i.bytes):>10}  {safe_text(i.path)}  ({safe_text(i.what)})" for i in plan.items]
    lines += [f"  {'refused':>10}  {safe_text(r.path)}: {safe_text(r.reason)}" for r in plan.refusals]
    lines += [f"  {'kept':>10}  {safe_text(k.path)}: {safe_text(k.reason)}" for k in plan.kept]
    return "\n".join([*lines, safe_text(plan.summary)])


def dry_run_text(plan) -> str:
    """A dry run's plan in the conditional, so that it never reads as done: the item, refused and kept
    lines, then "Would move 1 item (12.5 MiB) to the trash in root/.ckpt-trash/: ..." and a last line
    saying nothing changed."""
    lines = _plan_text(plan).splitlines()[:-1]  # the summary is written for a confirmation: left out
    n, size = len(plan.items), format_bytes(plan.total_bytes)
    names = [safe_text(i.path) for i in plan.items[:3]]
    listed = ", ".join(names) + (f" and {n - 3} more" if n > 3 else "")
    trash = f"{safe_text(Path(plan.root).name)}/{TRASH_DIR}/"
    if not n:
        lines.append("Nothing would change.")
    elif plan.action == "trash-empty":
        lines.append(f"Would permanently delete {plural(n, 'trash entry', 'trash entries')} ({size}): {listed}.")
    elif plan.action == "slim":
        folders = len({i.group for i in plan.items})
        lines.append(
            f"Would move {plural(n, 'training-state file')} ({size}) from {plural(folders, 'checkpoint')} "
            f"to the trash in {trash}: {listed}."
        )
    else:
        lines.append(f"Would move {plural(n, 'item')} ({size}) to the trash in {trash}: {listed}.")
    if plan.action == "prune" and plan.kept:
        lines.append(f"Would keep {plural(len(plan.kept), 'checkpoint')} (see above).")
    if plan.refusals:
        lines.append(f"Would refuse {plural(len(plan.refusals), 'path')} (see above).")
    lines.append("Dry run: nothing was changed.")
    return "\n".join(lines)


def _confirm(args, plan) -> str | None:
    """None to go ahead, else the one-line reason for not going ahead."""
    if args.yes:
        return None
    if not sys.stdin.isatty():
        return f"not a terminal: refusing to {plan.action} without --yes (or use --dry-run to look first)"
    print(_plan_text(plan), file=sys.stderr if args.json else sys.stdout)
    sys.stderr.write("Proceed? [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    return None if answer in ("y", "yes") else "not confirmed: nothing changed"


def _run_plan(args, plan) -> int:
    """Dry-run, confirm, execute, print: the one path every destructive command takes."""
    from tui.core.actions import execute

    refused = EXIT_REFUSED if plan.refusals else EXIT_OK
    if args.dry_run:
        _emit(args, {"plan": plan.to_json(), "executed": False, "dry_run": True}, dry_run_text(plan))
        return refused
    if not plan.items:
        _emit(args, {"plan": plan.to_json(), "executed": False}, _plan_text(plan))
        return refused
    if (stop := _confirm(args, plan)) is not None:
        note(stop)
        if args.json:
            _emit(args, {"plan": plan.to_json(), "executed": False, "error": stop}, "")
        return EXIT_REFUSED
    result = execute(plan, origin="cli")
    _emit(args, {"plan": plan.to_json(), "executed": True, "result": result.to_json()}, safe_text(result.summary))
    return EXIT_OK if result.ok and not plan.refusals else EXIT_REFUSED


# --- commands --------------------------------------------------------------------------------------------


def cmd_rm(args) -> int:
    from tui.core.actions import plan_delete

    paths = [_abs(p) for p in args.paths]
    root = _root_for(args, paths)
    return _run_plan(args, plan_delete(root, paths, _scan(root)))


def cmd_slim(args) -> int:
    from tui.core.actions import plan_slim

    paths = [_abs(p) for p in args.paths]
    root = _root_for(args, paths)
    return _run_plan(args, plan_slim(root, paths, _scan(root)))


def cmd_prune(args) -> int:
    from tui.core.actions import plan_prune

    if not os.path.isdir(args.root):
        raise _usage(f"{safe_text(args.root)}: no such folder")
    if args.keep < 0:
        raise _usage(f"--keep must be 0 or more, got {args.keep}")
    root = Path(args.root)
    return _run_plan(args, plan_prune(root, _scan(root), args.keep, args.metric, mode=args.mode))


def cmd_promote(args) -> int:
    from tui import convert
    from tui.core.promote import PromoteError, promote

    if not os.path.exists(args.path):
        raise _usage(f"{safe_text(args.path)}: no such file or folder")
    source = _abs(args.path)
    root = _root_for(args, [source])
    try:
        result = promote(
            root,
            source,
            args.to,
            infos=_scan_quiet(root),
            overwrite=args.overwrite,
            convert=convert,
            verify_reload=True if args.verify else None,
            base=_abs(args.base) if args.base else None,
        )
    except PromoteError as e:
        note(e)
        if args.json:
            _emit(args, {"error": str(e)}, "")
        return EXIT_REFUSED
    text = f"Promoted {safe_text(result.source)} -> {safe_text(result.target)} ({len(result.files)} files"
    text += f", {result.conversion} conversion" if result.conversion else ""
    if result.verified:
        same = result.conversion in ("mindspore", "dcp")
        text += ", every tensor equals its source" if same else ", reloads with from_pretrained"
    text += ")." + "".join(f"\n  problem: {safe_text(p)}" for p in result.problems)
    _emit(args, result.to_json(), text)
    return EXIT_OK if not result.problems else EXIT_REFUSED


def _scan_quiet(root: Path) -> list:
    try:
        return _scan(root)
    except OSError:
        return []


def cmd_trash(args) -> int:
    from tui.core import actions
    from tui.core.trash import Trash, TrashError

    if args.trash_command == "restore" and not args.id:
        raise _usage("trash restore needs an ID (see `ckpt-tui trash list`)")
    if args.trash_command != "restore" and args.id:
        raise _usage(f"trash {args.trash_command} takes no ID")
    root = _root_for(args, None)
    if args.trash_command == "list":
        try:
            entries = Trash(root).list()
        except TrashError as e:
            note(e)
            return EXIT_REFUSED
        lines = [
            f"{safe_text(e.id)}  {format_bytes(e.size_bytes):>10}  {safe_text(e.action or '?'):<6} "
            f"{safe_text(e.origin or '?'):<3}  {safe_text(e.what)}"
            + "".join(f"  [{safe_text(p)}]" for p in e.problems)
            for e in entries
        ]
        _emit(
            args,
            {"root": str(root), "entries": [e.to_json() for e in entries]},
            "\n".join(lines) or "The trash is empty.",
        )
        return EXIT_OK
    if args.trash_command == "restore":
        result = actions.restore(root, args.id)
        if not result.ok:
            note(result.errors[0])
        _emit(args, result.to_json(), safe_text(result.summary))
        return EXIT_OK if result.ok else EXIT_REFUSED
    return _run_plan(args, actions.plan_trash_empty(root))
