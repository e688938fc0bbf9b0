"""``ckpt-tui serve ROOT``: the same app in a browser tab (textual-serve), one app process per tab.

It binds to 127.0.0.1 unless ``--host`` says otherwise; any other address prints a one-line warning (the
page has no authentication of its own). ``--token`` makes the page and its websocket answer only URLs
carrying the token. The websocket also refuses pages of another origin, so a web page the user visits
cannot drive the app through a local port.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import shlex
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tui.cli.output import warn
from tui.core.text import safe_text

LOCAL_NAMES = ("localhost",)


def register(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the app on a web page (ssh -L 8000:127.0.0.1:8000 HOST to open it from your machine)",
        description="Serve the app on a web page: every browser tab runs its own app on ROOT. Binds to "
        "127.0.0.1 by default; from your own machine open it through an SSH tunnel "
        "(ssh -L 8000:127.0.0.1:8000 LOGIN_NODE, then http://127.0.0.1:8000). Any other --host prints a "
        "warning: the page has no authentication beyond --token.",
    )
    p.add_argument("root", metavar="ROOT")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--token", nargs="?", const="", default=None, metavar="TOKEN",
        help="require ?token=TOKEN in the page URL (a random one when TOKEN is left out); the URL is printed",
    )  # fmt: skip
    p.add_argument("--poll", type=float, default=2.0, metavar="SECONDS", help="the app's --poll")
    p.set_defaults(handler=cmd_serve)


def is_local(host: str) -> bool:
    if host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def app_command(root: Path, poll: float) -> str:
    """The shell command one tab's app runs (textual-serve starts it through the shell)."""
    args = [sys.executable, "-m", "tui.cli", str(root.resolve()), "--poll", str(poll)]
    return " ".join(shlex.quote(a) for a in args)


def cmd_serve(args) -> int:
    from tui.cli import UsageError
    from tui.cli.runs_cmds import need_folder

    need_folder(args.root)
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be 1..65535, got {args.port}")
    if args.poll < 0:
        raise UsageError(f"--poll must be 0 or more seconds, got {args.poll}")
    try:
        import textual_serve  # noqa: F401
    except ImportError:
        raise UsageError("serve needs textual-serve (pip install textual-serve)") from None
    token = None if args.token is None else (args.token or secrets.token_urlsafe(16))
    if not is_local(args.host):
        if token is None:
            warn(f"serving on {safe_text(args.host)}: the page has no authentication; anyone who can reach "
                 "the port controls the app (delete included); use --token or bind 127.0.0.1 + SSH tunnel")  # fmt: skip
        else:
            warn(f"serving on {safe_text(args.host)} over plain HTTP: the token travels unencrypted")
    server = make_server(Path(args.root), args.host, args.port, token, args.poll)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"ckpt-tui: serving {safe_text(args.root)} on http://{safe_text(shown)}:{args.port}/"
          + (f"?token={token}" if token else ""), flush=True)  # fmt: skip
    server.serve()
    return 0


def make_server(root: Path, host: str, port: int, token: str | None, poll: float = 2.0) -> Any:
    """A textual_serve Server whose page and websocket check the token and the websocket's origin."""
    import aiohttp_jinja2
    import jinja2
    from aiohttp import web
    from textual_serve.server import Server

    def allowed(given: str | None) -> bool:
        return token is None or (given is not None and hmac.compare_digest(given.encode(), token.encode()))

    class GuardedServer(Server):
        async def _make_app(self) -> web.Application:
            app = web.Application()
            aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(self.templates_path))
            app.add_routes([
                web.get("/", self.handle_index, name="index"),
                web.get("/ws/{token}", self.guarded_websocket, name="websocket"),
                web.get("/download/{key}", self.handle_download, name="download"),
                web.static("/static", self.statics_path, name="static"),
            ])  # fmt: skip
            app.on_shutdown.append(self.on_shutdown)
            return app

        async def handle_index(self, request: web.Request):
            if not allowed(request.query.get("token")):
                raise web.HTTPForbidden(text="ckpt-tui: this page needs its ?token=... (printed by serve)\n")
            scheme = "wss" if request.secure else "ws"
            context = {
                "font_size": _int(request.query.get("fontsize"), 16),
                # built from the Host the browser used: right through an SSH tunnel or a 0.0.0.0 bind
                "app_websocket_url": f"{scheme}://{request.host}/ws/{token or '-'}",
                "config": {"static": {"url": "/static/"}},
                "application": {"name": f"ckpt-tui {root}"},
            }
            return aiohttp_jinja2.render_template("app_index.html", request, context)

        async def guarded_websocket(self, request: web.Request):
            if not allowed(request.match_info.get("token")):
                raise web.HTTPForbidden(text="bad token\n")
            origin = request.headers.get("Origin")
            if origin is not None and urlsplit(origin).netloc != request.host:
                raise web.HTTPForbidden(text="cross-origin websocket refused\n")
            return await self.handle_websocket(request)

        def initialize_logging(self) -> None:  # textual-serve's banner and request log stay quiet
            pass

    return GuardedServer(app_command(root, poll), host=host, port=port, title="ckpt-tui")


def _int(value: str | None, default: int) -> int:
    try:
        return max(6, min(int(value), 64)) if value else default
    except ValueError:
        return default
