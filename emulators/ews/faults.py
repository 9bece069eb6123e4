"""Run-time fault injection: the failures Exchange documents, on demand.

- `ErrorServerBusy`: the throttling fault, with `BackOffMilliseconds` in its MessageXml
  (https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/ews-throttling-in-exchange)
- `http500`: IIS's "Server Error in '/EWS' Application." page; `http503`: Service
  Unavailable, as a load balancer in front of Exchange answers while a server restarts
- `latency`: the answer comes `latency_ms` later; `outage`: the connection is closed
  without an answer, as when Exchange is unreachable.
- `lostAnswer` and `heldAnswer` hit writes only (CreateItem, UpdateItem, DeleteItem,
  MoveItem, CopyItem, CreateFolder, DeleteFolder): the request is carried out, then the
  connection is closed without an answer, at once (Exchange or the network failed after
  the write; exchangelib reports it as ErrorTimeoutExpired "Reraised from ...") or once the
  faults are cleared (`heldAnswer`: a client killed while its answer is held died between
  a write and its record of it). Every fault counts its `hits` (GET /_admin/faults).

A fault applies to one user's requests or everyone's, for the next `count` requests or to
a `rate` share of them drawn from `random.Random(seed)` (the same requests fail on every
run), or until cleared.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any, Final

KINDS: Final = ("ErrorServerBusy", "http500", "http503", "latency", "outage", "lostAnswer",
                "heldAnswer")
#: the kinds that hit writes only, after carrying them out
AFTER_WRITE: Final = frozenset({"lostAnswer", "heldAnswer"})
#: the operations that change a mailbox
WRITES: Final = frozenset({"CreateItem", "UpdateItem", "DeleteItem", "MoveItem", "CopyItem",
                           "CreateFolder", "DeleteFolder"})


class FaultSpecError(ValueError):
    """An admin request that does not describe a fault; the message says why."""


@dataclass(slots=True)
class Fault:
    id: int
    kind: str
    user: str | None = None
    count: int | None = None
    rate: float | None = None
    seed: int = 0
    back_off_ms: int = 1000
    latency_ms: int = 0
    rng: random.Random = field(default_factory=random.Random)
    #: how many requests it has hit
    hits: int = 0
    #: set when the faults are cleared: a held answer is let go (and dropped)
    released: threading.Event = field(default_factory=threading.Event)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "user": self.user, "count": self.count,
                "rate": self.rate, "seed": self.seed, "backOffMilliseconds": self.back_off_ms,
                "latencyMs": self.latency_ms, "hits": self.hits}


def _int(spec: dict[str, Any], name: str, default: int | None, minimum: int) -> int | None:
    value = spec.get(name, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise FaultSpecError(f"{name} must be an integer >= {minimum}")
    return value


def parse_fault(spec: Any, fault_id: int) -> Fault:
    """Validate an admin request body (POST /_admin/faults)."""
    if not isinstance(spec, dict):
        raise FaultSpecError("a fault is a JSON object")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise FaultSpecError(f"kind must be one of {', '.join(KINDS)}")
    user = spec.get("user")
    if user is not None and not isinstance(user, str):
        raise FaultSpecError("user must be an address")
    rate = spec.get("rate")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1
    ):
        raise FaultSpecError("rate must be between 0 and 1")
    seed = _int(spec, "seed", 0, -(2**63)) or 0
    return Fault(
        id=fault_id,
        kind=kind,
        user=user.lower() if user else None,
        count=_int(spec, "count", None, 1),
        rate=float(rate) if rate is not None else None,
        seed=seed,
        back_off_ms=_int(spec, "backOffMilliseconds", 1000, 0) or 0,
        latency_ms=_int(spec, "latencyMs", 0, 0) or 0,
        # Seeded on purpose: the same requests fail on every run (not for secrets).
        rng=random.Random(seed),  # noqa: S311
    )


class FaultSwitch:
    """The faults in force; `draw` picks the one (if any) that hits a request."""

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

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_json() for f in self._faults]

    def draw(self, users: set[str], operation: str = "") -> list[Fault]:
        """The faults that hit a request made by or for `users` (lower-case addresses):
        latency first, then at most one failure."""
        hits: list[Fault] = []
        with self._lock:
            for fault in list(self._faults):
                if fault.user is not None and fault.user not in users:
                    continue
                if fault.kind in AFTER_WRITE and operation not in WRITES:
                    continue
                if fault.rate is not None and fault.rng.random() >= fault.rate:
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                fault.hits += 1
                hits.append(fault)
        hits.sort(key=lambda f: f.kind != "latency")
        failures = [f for f in hits if f.kind != "latency"]
        return [f for f in hits if f.kind == "latency"] + failures[:1]
