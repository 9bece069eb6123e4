"""The admin server: one small HTTP server on `[admin] listen_host:listen_port`, on threads of
its own (never mitmproxy's event loop), serving

- /metrics (Prometheus text format: the counters of sync/ops/metrics.py and the state read
  at scrape time, sync/ops/collector.py),
- /healthz and /readyz (sync/ops/health.py),
- the admin console: pages rendered on the server from Jinja2 templates (autoescaped;
  Jinja2 comes with mitmproxy already), a stylesheet, charts as inline SVG; no script.

Pages are read-only and carry no event text or attendee address unless an administrator is
signed in (sync/ops/admin/auth.py); actions are POSTs that carry the session's CSRF token.
Pages are sent with a Content-Security-Policy that allows nothing but this server's own
stylesheet.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import jinja2
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from sync.config import AdminConfig, Config
from sync.ops.admin.auth import Session, Sessions, cookie_header, cookie_value, verify_password
from sync.ops.admin.console import ActionError, Console, Result
from sync.ops.collector import Scrape, StateCollector
from sync.ops.health import Health
from sync.store import Store

log = logging.getLogger("calsync.admin")

MAX_FORM_BYTES = 16 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
ACTIONS = ("retry", "discard", "dry-run", "undo", "pause", "resume")


class AdminServer:
    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        job: Any = None,
        runs: Any = None,
        wake: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.settings = config.admin or AdminConfig()
        self.console = Console(config, store, job=job, runs=runs, wake=wake, clock=clock)
        self.health = Health(config, store, clock=clock)
        self.collector = StateCollector(config, store, per_user=self.settings.per_user_metrics)
        self.scrape = Scrape(self.collector)
        self.sessions = Sessions(clock=clock)
        #: one password check at a time: guessing costs a scrypt each, one after the other
        self.checking = threading.Lock()
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("sync.ops.admin", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters["when"] = _when
        self.templates.filters["ago"] = lambda t: _ago(t, clock())
        self.templates.filters["short"] = _short
        self.templates.filters["path"] = lambda s: quote(str(s), safe="@")
        self.stylesheet = (resources.files("sync.ops.admin") / "static" / "admin.css").read_bytes()
        handler = type("Handler", (_Handler,), {"admin": self})
        self.httpd = ThreadingHTTPServer(
            (self.settings.listen_host, self.settings.listen_port), handler
        )
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def start(self) -> AdminServer:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="calsync-admin", daemon=True
        )
        self._thread.start()
        log.info("admin: /metrics, /healthz, /readyz and the console on %s", self.url)
        return self

    def stop(self, timeout: float = 2.0) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout)
            self._thread = None
        self.httpd.server_close()


def start_admin(config: Config, store: Store, **parts: Any) -> AdminServer | None:
    """The admin server when the config has an [admin] section (started), else None.
    OSError when it cannot listen."""
    if config.admin is None:
        return None
    return AdminServer(config, store, **parts).start()


def restart_admin(
    old: AdminServer | None, config: Config | None, store: Store | None, **parts: Any
) -> AdminServer | None:
    """The addon's (re)configuration: the old server stopped, a new one started for the
    new config (None: none). One that cannot listen is logged and left out: the proxy
    goes on without it."""
    if old is not None:
        old.stop()
    if config is None or store is None:
        return None
    try:
        return start_admin(config, store, **parts)
    except OSError as exc:
        log.error("admin: cannot listen: %s", exc.strerror or exc)
        return None


class _Handler(BaseHTTPRequestHandler):
    admin: AdminServer
    server_version = "calsync-admin"
    disable_nagle_algorithm = True  # headers and body go in two sends (STYLE.md pitfalls)
    protocol_version = "HTTP/1.1"

    # --- dispatch -----------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._set_cookie: str | None = None
        try:
            self._get()
        except Exception as exc:  # a bug of ours is a 500, never a dead server
            log.error("admin: GET failed: %s", type(exc).__name__)
            self._text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error\n")

    def do_POST(self) -> None:
        self._set_cookie = None
        try:
            self._post()
        except Exception as exc:
            log.error("admin: POST failed: %s", type(exc).__name__)
            self._text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error\n")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # request lines may carry ids; the access log is the reverse proxy's

    def _get(self) -> None:
        admin = self.admin
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        if path == "/metrics":
            self._send(HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest(admin.scrape))
            return
        if path == "/healthz":
            self._json(*admin.health.alive())
            return
        if path == "/readyz":
            self._json(*admin.health.ready())
            return
        if path == "/static/admin.css":
            self._send(HTTPStatus.OK, "text/css; charset=utf-8", admin.stylesheet, cache=True)
            return
        session = self._session()
        signed_in = session is not None
        console = admin.console
        if path == "/":
            self._page(
                "index.html",
                session,
                users=console.users(signed_in=signed_in),
                charts=console.charts(),
                recent=console.recent(signed_in=signed_in)[:30],
            )
        elif path.startswith("/users/"):
            try:
                detail = console.detail(unquote(path.removeprefix("/users/")), signed_in=signed_in)
            except ActionError:
                self._text(HTTPStatus.NOT_FOUND, "no such user\n")
                return
            self._page("user.html", session, **detail, can_act=console.job is not None)
        elif path == "/explain":
            try:
                found = console.explain(
                    query.get("user", [""])[0], query.get("key", [""])[0], signed_in=signed_in
                )
            except ActionError:
                self._text(HTTPStatus.NOT_FOUND, "no such user\n")
                return
            self._page("explain.html", session, **found)
        elif path == "/login":
            self._page("login.html", session, error=None)
        else:
            self._text(HTTPStatus.NOT_FOUND, "not found\n")

    def _post(self) -> None:
        admin = self.admin
        path = urlsplit(self.path).path
        form = self._form()
        if form is None:
            self._text(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "form too large\n")
            return
        if not self._same_origin():
            self._text(HTTPStatus.FORBIDDEN, "cross-site request refused\n")
            return
        if path == "/login":
            self._login(form)
            return
        session = self._session()
        if session is None:
            self._text(HTTPStatus.FORBIDDEN, "sign in first\n")
            return
        if not Sessions.csrf_ok(session, form):
            self._text(HTTPStatus.FORBIDDEN, "missing or wrong CSRF token\n")
            return
        if path == "/logout":
            admin.sessions.end(session.id)
            self._set_cookie = cookie_header("", expire=True)
            self._redirect("/")
            return
        name = path.removeprefix("/actions/")
        if not path.startswith("/actions/") or name not in ACTIONS:
            self._text(HTTPStatus.NOT_FOUND, "no such action\n")
            return
        try:
            result = self._act(name, form)
        except ActionError as exc:
            result = Result(str(exc), ok=False, mailbox=form.get("user"))
        except Exception as exc:  # a side refused (dry run, undo): said, never a traceback
            result = Result(
                f"{name} failed: {type(exc).__name__}", ok=False, mailbox=form.get("user")
            )
        log.info("admin: %s by %s: %s", name, session.user, "done" if result.ok else "refused")
        self._page("result.html", session, result=result, action=name)

    def _act(self, name: str, form: dict[str, str]) -> Result:
        console = self.admin.console
        if name in ("retry", "discard"):
            try:
                entry_id = int(form.get("entry", ""))
            except ValueError:
                raise ActionError("no entry given") from None
            return console.retry(entry_id) if name == "retry" else console.discard(entry_id)
        user = form.get("user", "")
        if name == "dry-run":
            return console.dry_run(user)
        if name == "undo":
            return console.undo(user)
        return console.pause(user) if name == "pause" else console.resume(user)

    # --- who is asking ------------------------------------------------------------------------

    def _session(self) -> Session | None:
        admin = self.admin
        session = admin.sessions.get(cookie_value(self.headers.get("Cookie")))
        header = admin.settings.trusted_header
        vouched = (self.headers.get(header) or "").strip() if header else ""
        if session is not None and session.via_header and session.user != vouched:
            session = None  # the proxy no longer vouches for this session's administrator
        if session is None and vouched:
            session = admin.sessions.start(vouched, via_header=True)
            self._set_cookie = cookie_header(session.id)
        return session

    def _login(self, form: dict[str, str]) -> None:
        admin = self.admin
        encoded = admin.settings.password_hash
        with admin.checking:
            right = encoded is not None and verify_password(form.get("password", ""), encoded)
        if not right:
            log.warning("admin: a sign-in was refused")
            self._page(
                "login.html",
                None,
                status=HTTPStatus.UNAUTHORIZED,
                error="Wrong password." if encoded else "Signing in is not configured.",
            )
            return
        session = admin.sessions.start("admin")
        self._set_cookie = cookie_header(session.id)
        self._redirect("/")

    def _same_origin(self) -> bool:
        """A browser's cross-site POST says where it comes from: refused (with the CSRF
        token, a second wall)."""
        origin = self.headers.get("Origin")
        if not origin or origin == "null":
            return origin != "null"
        return urlsplit(origin).netloc == self.headers.get("Host", "")

    # --- answers ------------------------------------------------------------------------------

    def _form(self) -> dict[str, str] | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > MAX_FORM_BYTES:
            return None
        body = self.rfile.read(length).decode("utf-8", "replace") if length > 0 else ""
        return {k: v[0] for k, v in parse_qs(body).items()}

    def _page(
        self,
        template: str,
        session: Session | None,
        *,
        status: HTTPStatus = HTTPStatus.OK,
        **values: Any,
    ) -> None:
        admin = self.admin
        html = admin.templates.get_template(template).render(
            signed_in=session is not None,
            who=session.user if session is not None else None,
            csrf=session.csrf if session is not None else "",
            can_sign_in=admin.settings.password_hash is not None,
            now=time.time(),
            **values,
        )
        self._send(status, "text/html; charset=utf-8", html.encode("utf-8"), page=True)

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._send(HTTPStatus(status), "application/json", json.dumps(body).encode() + b"\n")

    def _text(self, status: HTTPStatus, text: str) -> None:
        self._send(status, "text/plain; charset=utf-8", text.encode())

    def _redirect(self, location: str) -> None:
        self.send_response(HTTPStatus.SEE_OTHER)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        if self._set_cookie:
            self.send_header("Set-Cookie", self._set_cookie)
        self.end_headers()

    def _send(
        self,
        status: HTTPStatus,
        content_type: str,
        body: bytes,
        *,
        page: bool = False,
        cache: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if page:
            for name, value in SECURITY_HEADERS.items():
                self.send_header(name, value)
        elif not cache:
            self.send_header("Cache-Control", "no-store")
        if self._set_cookie:
            self.send_header("Set-Cookie", self._set_cookie)
        self.end_headers()
        self.wfile.write(body)


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return "never"
    return dt.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def _ago(timestamp: float | None, now: float) -> str:
    if not timestamp:
        return "never"
    seconds = max(0.0, now - timestamp)
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _short(key: str | None) -> str:
    if not key:
        return "-"
    return key if len(key) <= 24 else f"{key[:10]}...{key[-10:]}"
