"""Run-time fault injection: the failures Google documents, on demand.

Reference for the failures themselves:
https://developers.google.com/workspace/calendar/api/guides/errors (403/429
`rateLimitExceeded` "functionally similar ... exponential backoff", 500 `backendError`,
503). "latency" delays an answer; "outage" closes the connection without answering, which
is what a client sees when Google is unreachable.

Two kinds hit writes only (any request but a GET; a batch envelope's parts are all carried
out): "lostAnswer" carries the request out, then closes the connection without answering,
as when Google or the network fails after the write; "heldAnswer" carries it out, then holds
the answer until the faults are cleared (and closes the connection without one). A client
killed while its answer is held died between a write and its record of it: the state the
next run of a crashed process starts from. Every fault counts its `hits` (GET
/_admin/faults), so a test sees when a write is held.

A fault applies to every request (or one user's requests) until cleared, for the next
`count` requests, or to a `rate` share of them drawn from `random.Random(seed)`, so a test
that injects "30 % of requests fail" sees the same requests fail on every run.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

from emulators.google import errors

KINDS = ("403", "429", "500", "503", "latency", "outage", "lostAnswer", "heldAnswer")
#: the kinds that hit writes only, after carrying them out
AFTER_WRITE = frozenset({"lostAnswer", "heldAnswer"})


class FaultSpecError(ValueError):
    pass


@dataclass(slots=True)
class Fault:
    id: int
    kind: str
    user: str | None = None
    count: int | None = None
    rate: float | None = None
    seed: int = 0
    retry_after: int | None = None
    latency_ms: int = 0
    rng: random.Random = field(default_factory=random.Random)
    #: how many requests it has hit
    hits: int = 0
    #: set when the faults are cleared: a held answer is let go (and dropped)
    released: threading.Event = field(default_factory=threading.Event)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "user": self.user, "count": self.count,
                "rate": self.rate, "seed": self.seed, "retryAfter": self.retry_after,
                "latencyMs": self.latency_ms, "hits": self.hits}

    def error(self) -> errors.GoogleApiError | None:
        if self.kind == "403":
            return errors.rate_limit_exceeded(403, self.retry_after)
        if self.kind == "429":
            return errors.rate_limit_exceeded(429, self.retry_after)
        if self.kind == "500":
            return errors.backend_error()
        if self.kind == "503":
            return errors.service_unavailable(self.retry_after)
        return None


def parse_fault(spec: Any, fault_id: int) -> Fault:
    """Validate an admin request body; a bad one is a 400 with a one-line reason."""
    if not isinstance(spec, dict):
        raise FaultSpecError("a fault is a JSON object")
    kind = str(spec.get("kind", ""))
    if kind not in KINDS:
        raise FaultSpecError(f"kind must be one of {', '.join(KINDS)}")
    count = spec.get("count")
    rate = spec.get("rate")
    if count is not None and (not isinstance(count, int) or count < 1):
        raise FaultSpecError("count must be a positive integer")
    if rate is not None and (not isinstance(rate, int | float) or not 0 <= rate <= 1):
        raise FaultSpecError("rate must be between 0 and 1")
    seed = spec.get("seed", 0)
    if not isinstance(seed, int):
        raise FaultSpecError("seed must be an integer")
    latency = spec.get("latencyMs", 0)
    if not isinstance(latency, int) or latency < 0:
        raise FaultSpecError("latencyMs must be a non-negative integer")
    retry_after = spec.get("retryAfter")
    if retry_after is not None and (not isinstance(retry_after, int) or retry_after < 0):
        raise FaultSpecError("retryAfter must be a non-negative integer")
    user = spec.get("user")
    if user is not None and not isinstance(user, str):
        raise FaultSpecError("user must be an address")
    return Fault(fault_id, kind, user, count, None if rate is None else float(rate), seed,
                 retry_after, latency, random.Random(seed))  # noqa: S311 - test determinism, not crypto


class FaultInjector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._held: list[Fault] = []
        self._next_id = 1

    def add(self, spec: Any) -> Fault:
        with self._lock:
            fault = parse_fault(spec, self._next_id)
            self._next_id += 1
            self._faults.append(fault)
            if fault.kind == "heldAnswer":
                self._held.append(fault)
            return fault

    def clear(self) -> None:
        with self._lock:
            # held answers are let go, also those of faults whose count is used up
            for fault in self._held:
                fault.released.set()
            self._held.clear()
            self._faults.clear()

    def active(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def pick(self, user: str | None, kinds: tuple[str, ...] = KINDS, *,
             write: bool = False) -> Fault | None:
        """The first fault that fires for this request, consuming one use of it. `write`:
        the request changes something (the after-write kinds skip the others)."""
        with self._lock:
            for fault in self._faults:
                if fault.kind not in kinds:
                    continue
                if fault.user is not None and fault.user != user:
                    continue
                if fault.kind in AFTER_WRITE and not write:
                    continue
                if fault.rate is not None and fault.rng.random() >= fault.rate:
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                fault.hits += 1
                return fault
            return None
