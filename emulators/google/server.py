"""The HTTP server around `Api`, and the in-process handle tests and the demo start.

Reference for what is served: https://developers.google.com/workspace/calendar/api/v3/reference
(base URL `/calendar/v3/`), the OAuth token endpoint at `/token`, batch at
`/batch/calendar/v3`.

Only 127.0.0.1 is ever bound. Point the real clients here with

    build("calendar", "v3", static_discovery=True, credentials=creds,
          client_options={"api_endpoint": f"{server.url}/calendar/v3/"})

and batches with `BatchHttpRequest(batch_uri=server.batch_uri)`: the client derives
`new_batch_http_request()`'s URI from the discovery document's rootUrl, which
`api_endpoint` does not change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from emulators.google.api import Api, Request, Response
from emulators.google.faults import FaultInjector
from emulators.google.push import PushNotifier
from emulators.google.state import Clock, GoogleCalendarState, utc_now

log = logging.getLogger("calsync.emulators.google")

HOST = "127.0.0.1"
MAX_BODY = 32 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive, as Google serves: httplib2 reuses its connection between calls.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this a keep-alive client's next
    # request waits ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True
    server_version = "ESF"
    sys_version = ""
    server: _Server

    def _serve(self) -> None:
        target = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.send_error(413)
            return
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        request = Request(self.command, target.path, target.query, headers, body)
        response = self.server.api.handle(request)
        if response.delay_ms:
            time.sleep(response.delay_ms / 1000)
        if response.drop:
            self.close_connection = True
            return
        self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        # The request line can carry sync and page tokens; log the method and path only.
        log.debug("%s %s", self.command, urlsplit(self.path).path)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: Api


class GoogleCalendarServer:
    """A running stand-in: `start()` serves on a background thread, `stop()` ends it."""

    def __init__(self, port: int = 0, users: Iterable[str] = (), db: str | Path | None = None,
                 clock: Clock = utc_now) -> None:
        persistence = None
        self._store: Any = None
        if db is not None:
            from emulators.google.store import SqliteStore

            self._store = SqliteStore(Path(db))
            persistence = self._store
        self.state = GoogleCalendarState(clock, persistence)
        if self._store is not None:
            self._store.load(self.state)
        self.faults = FaultInjector()
        self.notifier = PushNotifier(clock)
        self.state.change_listeners.append(self.notifier.on_change)
        for email in users:
            self.state.add_user(email)
        self.api = Api(self.state, self.notifier, self.faults)
        self._httpd = _Server((HOST, port), _Handler)
        self._httpd.api = self.api
        self.port = int(self._httpd.server_address[1])
        self.url = f"http://{HOST}:{self.port}"
        self.api.base_url = self.url
        self._thread: threading.Thread | None = None

    @property
    def api_endpoint(self) -> str:
        """What to pass as `client_options={"api_endpoint": ...}`."""
        return f"{self.url}/calendar/v3/"

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    @property
    def batch_uri(self) -> str:
        return f"{self.url}/batch/calendar/v3"

    def add_user(self, email: str, time_zone: str = "UTC") -> None:
        with self.state.lock:
            self.state.add_user(email, time_zone)

    def start(self) -> GoogleCalendarServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        name="google-stand-in", daemon=True)
        self._thread.start()
        log.info("Google Calendar stand-in listening on %s", self.url)
        return self

    def serve_forever(self) -> None:
        log.info("Google Calendar stand-in listening on %s", self.url)
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.notifier.close()
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> GoogleCalendarServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
