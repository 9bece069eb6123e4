"""The HTTP(S) side of the EWS stand-in, and the API to run it in-process.

`POST /EWS/Exchange.asmx` with Basic credentials, or on a connection NTLM authenticated
(`ntlm=True`; see `ntlm.py`), carries SOAP; anything else gets 401 with a
`WWW-Authenticate` offer per scheme, as IIS answers; `/_admin/...` is this stand-in's own
control surface (faults, recorded meeting-message options), never part of EWS.
Reference: https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/authentication-and-ews-in-exchange

    with start_server(users={"alice@example.com": "secret"}) as server:
        Configuration(service_endpoint=server.url, ...)
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

from emulators.ews import streaming, tls
from emulators.ews.faults import AFTER_WRITE, Fault, FaultSpecError, FaultSwitch
from emulators.ews.mailbox import Store
from emulators.ews.ntlm import SCHEMES, NtlmAcceptor
from emulators.ews.service import Answer, EwsService, fault_answer
from emulators.ews.subscriptions import Hub, Policy

log = logging.getLogger("calsync.emulators.ews")

EWS_PATH: Final = "/EWS/Exchange.asmx"
#: Larger bodies are refused before reading (EWS calendar traffic is far smaller).
MAX_BODY: Final = 32 * 1024 * 1024
#: the longest a "heldAnswer" fault holds an answer when nobody clears it
HELD_ANSWER_MAX_S: Final = 60.0
#: IIS's page for an unhandled error in the EWS application.
_IIS_500: Final = (b"<html><head><title>Runtime Error</title></head><body>"
                   b"<h1>Server Error in '/EWS' Application.</h1></body></html>")
_HTTP_503: Final = b"<html><body><h1>Service Unavailable</h1></body></html>"


def system_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keep-alive, as IIS speaks: exchangelib treats "Connection: close" as
    # ErrorServerBusy and retries.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this a keep-alive client's next
    # request waits ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True
    server: _HttpServer
    # One handler serves one connection: NTLM's state lives here, so it is bound to the
    # connection (MS-NTHT 3.2.5.1.2).
    _ntlm_context: Any = None
    _ntlm_user: str | None = None

    def log_message(self, format: str, *args: Any) -> None:  # stdlib's name
        log.debug("%s %s", self.address_string(), format % args)

    # -- plumbing

    def _body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            return b""
        size = int(length)
        if size > MAX_BODY:
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"", "text/plain", close=True)
            return None
        return self.rfile.read(size)

    def _send(self, status: int, body: bytes, content_type: str = "text/xml; charset=utf-8",
              headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None, *,
              close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
        for name, value in pairs:
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _unauthorized(self, challenge: str | None = None) -> None:
        # IIS answers a missing or wrong password with a challenge and no body.
        if challenge is not None:
            offers = [challenge]
        else:
            log.info("401 for a request without valid credentials")
            offers = ["NTLM"] if self.server.ntlm is not None else []
            offers.append('Basic realm="127.0.0.1"')
        self._send(HTTPStatus.UNAUTHORIZED, b"", "text/plain",
                   [("WWW-Authenticate", offer) for offer in offers])

    def _authenticate(self) -> str | None:
        """The authenticated user, or None once a 401 has been sent."""
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        acceptor = self.server.ntlm
        if acceptor is not None and scheme.lower() in SCHEMES:
            # A new NTLM exchange starts over, even on an authenticated connection.
            self._ntlm_user = None
            step, self._ntlm_context = acceptor.step(scheme, value, self._ntlm_context)
            if step.address is not None:
                self._ntlm_user = step.address
                log.info("NTLM authenticated the connection")
                return step.address
            self._unauthorized(step.challenge)
            return None
        if not header and self._ntlm_user is not None:
            return self._ntlm_user
        user = self._credentials(scheme, value)
        if user is None:
            self._unauthorized()
        return user

    def _credentials(self, scheme: str, value: str) -> str | None:
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        if not sep:
            return None
        return self.server.service.check_password(user, password)

    # -- verbs

    def do_POST(self) -> None:
        body = self._body()
        if body is None:
            return
        path = self.path.split("?", 1)[0]
        if path.startswith("/_admin/"):
            self._admin("POST", path, body)
        elif path.lower() == EWS_PATH.lower():
            self._ews(body)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"", "text/plain")

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path.startswith("/_admin/"):
            self._admin("GET", path, b"")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"", "text/plain")

    def do_DELETE(self) -> None:
        self._body()
        self._admin("DELETE", self.path.split("?", 1)[0], b"")

    def _ews(self, body: bytes) -> None:
        user = self._authenticate()
        if user is None:
            return
        service = self.server.service
        parsed = service.parse(body)
        if isinstance(parsed, Answer):
            self._send(parsed.status, parsed.body)
            return
        users = {user}
        if parsed.header.impersonation is not None and parsed.header.impersonation.mailbox:
            users.add(parsed.header.impersonation.mailbox.lower())
        after_write: Fault | None = None
        for fault in self.server.faults.draw(users, parsed.operation or ""):
            log.info("injected fault %s (%s)", fault.kind, parsed.operation)
            if fault.kind == "latency":
                time.sleep(fault.latency_ms / 1000)
            elif fault.kind == "ErrorServerBusy":
                answer = fault_answer("ErrorServerBusy", back_off_ms=fault.back_off_ms)
                self._send(answer.status, answer.body)
                return
            elif fault.kind == "http500":
                self._send(500, _IIS_500, "text/html")
                return
            elif fault.kind == "http503":
                self._send(503, _HTTP_503, "text/html")
                return
            elif fault.kind == "outage":
                # No answer at all: drop the connection.
                self.close_connection = True
                return
            elif fault.kind in AFTER_WRITE:
                after_write = fault
        headers = {name.lower(): value for name, value in self.headers.items()}
        secure = self.server.tls is not None
        try:
            if parsed.operation == "GetStreamingEvents":
                opened = service.open_stream(user, parsed, body, headers, secure=secure)
                if not isinstance(opened, Answer):
                    log.info("GetStreamingEvents -> stream")
                    streaming.serve(self, opened)
                    return
                answer = opened
            else:
                answer = service.handle(user, parsed, body, headers, secure=secure)
        except Exception:  # a bug here must still answer, as Exchange's 500 does
            log.exception("%s failed", parsed.operation)
            answer = fault_answer("ErrorInternalServerError",
                                  text="An internal server error occurred. The operation failed.")
        log.info("%s -> %d", parsed.operation, answer.status)
        if after_write is not None:
            # carried out; the client never learns it
            if after_write.kind == "heldAnswer":
                after_write.released.wait(HELD_ANSWER_MAX_S)
            self.close_connection = True
            return
        self._send(answer.status, answer.body, headers=answer.headers)

    def _admin(self, verb: str, path: str, body: bytes) -> None:
        server = self.server
        if path == "/_admin/faults":
            if verb == "GET":
                self._json(200, server.faults.list())
            elif verb == "DELETE":
                server.faults.clear()
                self._json(200, [])
            else:
                try:
                    fault = server.faults.add(json.loads(body or b"null"))
                except (FaultSpecError, ValueError) as exc:
                    self._json(400, {"error": str(exc)})
                    return
                self._json(201, fault.to_json())
        elif path == "/_admin/recycle" and verb == "POST":
            # An EWS application pool recycle: subscriptions and open streams are lost.
            server.service.hub.recycle()
            self._json(200, server.service.hub.status())
        elif path == "/_admin/subscriptions":
            self._json(200, server.service.hub.status())
        elif path == "/_admin/send-options":
            if verb == "DELETE":
                server.service.clear_records()
            self._json(200, server.service.records())
        else:
            self._json(404, {"error": "unknown admin path"})


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], service: EwsService, faults: FaultSwitch) -> None:
        self.service = service
        self.faults = faults
        self.tls: ssl.SSLContext | None = None
        self.ntlm: NtlmAcceptor | None = None
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is not None:
            # Handshake in the connection's own thread: done in accept(), one client that
            # stalls or fails its handshake would hold up or break the whole server.
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                log.info("TLS handshake failed: %s", exc)
                return
        super().finish_request(request, client_address)


def _parse_accounts(accounts: Mapping[str, str] | Iterable[str]) -> dict[str, str]:
    if isinstance(accounts, Mapping):
        return dict(accounts)
    out = {}
    for spec in accounts:
        address, sep, password = spec.partition(":")
        if not sep or "@" not in address or not password:
            raise ValueError(f"expected ADDRESS:PASSWORD, got {address!r}")
        out[address] = password
    return out


class EwsServer:
    """The stand-in on 127.0.0.1; `start()` serves from a background thread."""

    def __init__(
        self,
        *,
        users: Mapping[str, str] | Iterable[str] = (),
        impersonators: Mapping[str, str] | Iterable[str] = (),
        port: int = 0,
        tls_dir: Path | str | None = None,
        use_tls: bool = False,
        ntlm: bool = False,
        clock: Callable[[], dt.datetime] = system_clock,
        strict_responses: bool | None = None,
        notifications: Policy | None = None,
    ) -> None:
        plain = _parse_accounts(users)
        services = _parse_accounts(impersonators)
        passwords = {**plain, **services}
        self.store = Store(passwords, clock)
        # strict_responses: answer ErrorInternalServerError for any response that fails the
        # EWS schema (None: CALSYNC_EWS_STRICT_RESPONSES decides; the tests turn it on).
        # notifications: the limits and timings of subscriptions and streams (the
        # defaults are Exchange 2016 on-premises')
        self.service = EwsService(self.store, passwords, set(services),
                                  strict_responses=strict_responses, policy=notifications)
        self.faults = FaultSwitch()
        self._http = _HttpServer(("127.0.0.1", port), self.service, self.faults)
        if ntlm:
            # Accepted as `user@domain` and as `DOMAIN\user` (ntlm.py), next to Basic.
            self._http.ntlm = NtlmAcceptor(passwords)
        self._thread: threading.Thread | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.cert_files: tls.CertFiles | None = None
        if use_tls or tls_dir is not None:
            if tls_dir is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="calsync-ews-tls-")
                tls_dir = self._tmp.name
            self.cert_files = tls.generate(Path(tls_dir), clock())
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.cert_files.cert, self.cert_files.key)
            self._http.tls = context

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    @property
    def base_url(self) -> str:
        scheme = "https" if self.cert_files else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The EWS endpoint, for exchangelib's `service_endpoint`."""
        return self.base_url + EWS_PATH

    @property
    def ca_path(self) -> Path | None:
        return self.cert_files.ca if self.cert_files else None

    @property
    def hub(self) -> Hub:
        """The notification subscriptions and streaming connections."""
        return self.service.hub

    def recycle(self) -> None:
        """Restart EWS as an application pool recycle does: every subscription is lost and
        open streams break off; the mailboxes stay (POST /_admin/recycle)."""
        self.service.hub.recycle()

    def serve_forever(self) -> None:
        self._http.serve_forever(poll_interval=0.1)

    def start(self) -> EwsServer:
        self._thread = threading.Thread(target=self.serve_forever, name="ews-stand-in",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.service.hub.recycle()  # open streams end with the server
        if self._thread is not None:
            self._http.shutdown()
            self._thread.join()
            self._thread = None
        self._http.server_close()
        if self._http.ntlm is not None:
            self._http.ntlm.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EwsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(**kwargs: Any) -> EwsServer:
    """Start the stand-in on an ephemeral port in a background thread; `stop()` it (or use
    it as a context manager) when done. Keyword arguments are `EwsServer`'s."""
    return EwsServer(**kwargs).start()
