"""How long a keep-alive client waits for a response's body once its headers are in.

Both stand-ins write a response's headers and its body in two sends. With Nagle's algorithm
on, the body waits for the client's ACK of the headers, which a client that has nothing to
send delays (40 ms on Linux): every request on a kept-alive connection stalls. With
TCP_NODELAY the body follows at once, whatever the server spent preparing the response.
"""

from __future__ import annotations

import http.client
import statistics
import time
from urllib.parse import urlsplit

#: Far below the delayed-ACK timer (40 ms), far above a body sent at once (well under 1 ms,
#: a few ms on a busy machine).
STALL_MS = 20.0


def body_wait_ms(url: str, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None, count: int = 15) -> float:
    """The median wait, over `count` requests on one connection, between the end of a
    response's headers and the end of its body."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    waits = []
    try:
        for _ in range(count):
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()  # returns once the headers are parsed
            headers_in = time.perf_counter()
            data = response.read()
            waits.append((time.perf_counter() - headers_in) * 1000)
            assert response.status == 200 and data, (response.status, data[:200])
            assert not response.will_close  # the same connection carries the next request
    finally:
        conn.close()
    return statistics.median(waits)
