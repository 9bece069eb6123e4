"""The HTTP side of GetStreamingEvents: one chunked response kept open, one chunk per SOAP
envelope, written as the stream (`services/get_streaming_events.py`) has them.

The serving thread sleeps in a selector (epoll: select() refuses a descriptor past 1023,
and a process serving many connections has those) on the client's socket and the stream's
wake-up socket until a notification, a heartbeat or the deadline is due: an idle stream costs no
CPU. A client that hangs up is noticed at once (its socket turns readable; a client sends
nothing while it streams), which frees its place among the account's connections.
"""

from __future__ import annotations

import logging
import selectors
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
    selector = selectors.DefaultSelector()
    try:
        selector.register(handler.connection, selectors.EVENT_READ)
        selector.register(stream, selectors.EVENT_READ)
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
            ready = selector.select(stream.wait_seconds())
            if any(key.fileobj is handler.connection for key, _ in ready):
                state = "gone"
                break
    except OSError:
        state = "gone"
    except Exception:  # a bug of ours (strict mode: a response off the schema)
        log.exception("GetStreamingEvents failed: the connection is dropped")
        state = "gone"
    finally:
        selector.close()
        stream.close()
        if state != "end":
            handler.close_connection = True
