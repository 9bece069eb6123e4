"""The HTTP side of GetStreamingEvents: one chunked response kept open, one chunk per SOAP
envelope, written as the stream (`services/get_streaming_events.py`) has them.

The serving thread sleeps in select() on the client's socket and the stream's wake-up
socket until a notification, a heartbeat or the deadline is due: an idle stream costs no
CPU. A client that hangs up is noticed at once (its socket turns readable; a client sends
nothing while it streams), which frees its place among the account's connections.
"""

from __future__ import annotations

import logging
import select
import socket
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler

from emulators.ews.services.get_streaming_events import Stream

log = logging.getLogger("calsync.emulators.ews")


def serve(handler: BaseHTTPRequestHandler, stream: Stream) -> None:
    """Write `stream` on the handler's connection until it ends, the client hangs up, or
    the EWS process "restarts" (`Hub.recycle`: the connection drops without the last
    chunk, as when the process dies)."""
    # A notification must not wait for the ACK of the one before it (Nagle).
    handler.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    handler.send_response(HTTPStatus.OK)
    handler.send_header("Content-Type", "text/xml; charset=utf-8")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    state = "open"
    try:
        while True:
            documents, state = stream.step()
            if state == "abort":
                break
            for document in documents:
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(document), document))
            stream.sent()
            if state == "end":
                handler.wfile.write(b"0\r\n\r\n")
                break
            ready, _, _ = select.select([handler.connection, stream], [], [],
                                        stream.wait_seconds())
            if handler.connection in ready:
                state = "gone"
                break
    except OSError:
        state = "gone"
    except Exception:  # a bug of ours (strict mode: a response off the schema)
        log.exception("GetStreamingEvents failed: the connection is dropped")
        state = "gone"
    finally:
        stream.close()
        if state != "end":
            handler.close_connection = True
