"""calsync's Prometheus metrics: the families, in a registry of calsync's own, and the one-line
hooks the sources and the backends call where a thing happens.

What happens is counted here (requests, runs, conflicts, each change's latency); what *is*
(outbox depth, quarantine, channels, subscriptions, leases) is read from the store and the
live sources at scrape time by `sync.ops.collector`. Labels are bounded: sources, directions,
operations, outcomes and status codes, never an event; per-user families are optional
(`[admin] per_user_metrics`) and only on the scrape-time gauges.

Latency (`calsync_change_latency_seconds`, by the source that carried a change and its
direction) is measured from when the change was made to when the run or worker that wrote
it to the other side was done with it:

- proxy: from the moment the proxy recorded the change Exchange accepted (the outbox
  entry) to the worker's Google write;
- streaming / push: from the notification that triggered the user's run to the end of that
  run, when the run wrote in the direction the notification is about;
- exchange_feed / google_feed (runs no notification triggered: polls): from the newest
  change stamp an incremental feed listed in the run (Exchange's LastModifiedTime, Google's
  `updated`) to the end of the run, when the run wrote in that direction. A full listing
  (a first run, a 410) is not measured: its stamps are the calendar's history.

Worker processes (the addon's `calsync_worker_processes`) record into their own copy of
this module; `forward_from_this_process()` makes them keep what they recorded, the worker
hands it back with each entry (`handover`), and the parent replays it (`take_over`), so one
scrape of the parent sees everything.

Besides the registry, this module keeps (in memory, for the admin console's charts) a
per-minute history of the changes carried and their latencies, for the last `HISTORY_MIN`
minutes, and when Google and Exchange last answered (readiness, `sync.ops.health`).
"""

from __future__ import annotations

import bisect
import datetime as dt
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

Source = Literal["proxy", "exchange_feed", "streaming", "google_feed", "push"]
Direction = Literal["exchange_to_google", "google_to_exchange"]
SOURCES: tuple[Source, ...] = ("proxy", "exchange_feed", "streaming", "google_feed", "push")
DIRECTIONS: tuple[Direction, ...] = ("exchange_to_google", "google_to_exchange")
#: how a run ended (`calsync_sync_runs_total{outcome}`)
RUN_OUTCOMES = ("changed", "unchanged", "error", "stopped", "backing_off", "failed")
#: what the outbox worker made of an entry (`calsync_outbox_entries_total{result}`)
OUTBOX_RESULTS = ("written", "skipped", "retry", "quarantined")
WINNERS = ("exchange", "google")

#: the console's charts: how many minutes of history are kept
HISTORY_MIN = 360
#: latencies kept per minute for its percentiles (a sample beyond: reservoir replacement)
SAMPLES_PER_MIN = 256

REGISTRY = CollectorRegistry()
# no `_created` series beside each counter and histogram: they double a scrape for nothing
# Prometheus's text format uses (the process's one prometheus_client is calsync's)
disable_created_metrics()

LATENCY = Histogram(
    "calsync_change_latency_seconds",
    "From a change on one side to calsync's write of it on the other, by the source that "
    "carried it (proxy, exchange_feed, streaming, google_feed, push) and its direction",
    ["source", "direction"],
    registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
)
RUNS = Counter(
    "calsync_sync_runs",
    "Two-way sync runs (streaming, push, polls) by outcome: changed (wrote something), "
    "unchanged, error (a change or a feed failed), stopped (the safety rule), backing_off "
    "(a server asked to wait), failed (the run raised)",
    ["outcome"],
    registry=REGISTRY,
)
RUN_SECONDS = Histogram(
    "calsync_sync_run_duration_seconds",
    "How long a two-way sync run took",
    registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
CONFLICTS = Counter(
    "calsync_conflicts",
    "Fields both sides changed, by the side the conflict policy let win",
    ["winner"],
    registry=REGISTRY,
)
GOOGLE_REQUESTS = Counter(
    "calsync_google_requests",
    "Google Calendar API calls by operation (events.insert, events.list, ...) and status "
    "(ok, an HTTP status code, or unreachable); a batch's calls one by one",
    ["operation", "status"],
    registry=REGISTRY,
)
EWS_REQUESTS = Counter(
    "calsync_ews_requests",
    "EWS requests by operation (GetItem, SyncFolderItems, ...) and HTTP status (or unreachable)",
    ["operation", "status"],
    registry=REGISTRY,
)
OUTBOX_ENTRIES = Counter(
    "calsync_outbox_entries",
    "Outbox entries the worker handled, by result (written, skipped, retry, quarantined)",
    ["result"],
    registry=REGISTRY,
)
NOTIFICATIONS = Counter(
    "calsync_notifications",
    "Notifications that triggered a user's run, by source (streaming, push)",
    ["source"],
    registry=REGISTRY,
)
NOTIFICATIONS_HELD = Counter(
    "calsync_notifications_held",
    "Notifications that needed no run: every change they told was held already (calsync's"
    " own write, a change the proxy had in hand), by source",
    ["source"],
    registry=REGISTRY,
)

# every label value known in advance is there from the start: a scrape shows 0, not nothing
#: the direction each source carries changes in
SOURCE_DIRECTIONS: dict[Source, Direction] = {
    "proxy": "exchange_to_google",
    "exchange_feed": "exchange_to_google",
    "streaming": "exchange_to_google",
    "google_feed": "google_to_exchange",
    "push": "google_to_exchange",
}
for _source, _direction in SOURCE_DIRECTIONS.items():
    LATENCY.labels(_source, _direction)
for _outcome in RUN_OUTCOMES:
    RUNS.labels(_outcome)
for _winner in WINNERS:
    CONFLICTS.labels(_winner)
for _result in OUTBOX_RESULTS:
    OUTBOX_ENTRIES.labels(_result)
for _source in ("streaming", "push"):
    NOTIFICATIONS.labels(_source)
NOTIFICATIONS_HELD.labels("streaming")


# --- what the console keeps in memory ------------------------------------------------------


@dataclass(slots=True)
class Minute:
    """One minute of carried changes: how many, and a sample of their latencies (a run's
    latency is measured once for all it carried in a direction)."""

    start: float
    count: int = 0
    latencies: list[float] = field(default_factory=list)
    seen: int = 0  # latencies offered (the sample keeps SAMPLES_PER_MIN of them)

    def add(self, seconds: float) -> None:
        self.seen += 1
        if len(self.latencies) < SAMPLES_PER_MIN:
            bisect.insort(self.latencies, seconds)
            return
        # reservoir sampling: each latency offered is kept with the same chance
        slot = random.randrange(self.seen)  # noqa: S311 - a sample, not security
        if slot < SAMPLES_PER_MIN:
            del self.latencies[slot]
            bisect.insort(self.latencies, seconds)

    def quantile(self, q: float) -> float | None:
        if not self.latencies:
            return None
        return self.latencies[min(len(self.latencies) - 1, int(q * len(self.latencies)))]


class History:
    """The last `minutes` minutes of carried changes, a `Minute` each (minutes without
    changes are not stored)."""

    def __init__(self, minutes: int = HISTORY_MIN) -> None:
        self.minutes = minutes
        self._lock = threading.Lock()
        self._by_minute: deque[Minute] = deque()

    def add(self, *, at: float, changes: int = 0, latency: float | None = None) -> None:
        start = at - at % 60
        with self._lock:
            if not self._by_minute or self._by_minute[-1].start < start:
                self._by_minute.append(Minute(start))
            newest = self._by_minute[-1].start
            if start < newest - (self.minutes - 1) * 60:
                return  # older than the history keeps
            # late ones (a worker's replay) go to their own minute
            minute = next((m for m in reversed(self._by_minute) if m.start <= start), None)
            if minute is None or minute.start != start:
                minute = Minute(start)
                self._by_minute.append(minute)
                self._by_minute = deque(sorted(self._by_minute, key=lambda m: m.start))
            minute.count += changes
            if latency is not None:
                minute.add(latency)
            while self._by_minute and self._by_minute[0].start < newest - self.minutes * 60:
                self._by_minute.popleft()

    def series(self, *, now: float, minutes: int) -> list[Minute]:
        """One `Minute` per minute of the last `minutes` (empty ones for quiet minutes),
        oldest first; the current minute last."""
        first = now - now % 60 - (minutes - 1) * 60
        with self._lock:
            have = {m.start: m for m in self._by_minute if m.start >= first}
            return [have.get(first + i * 60) or Minute(first + i * 60) for i in range(minutes)]

    def clear(self) -> None:
        with self._lock:
            self._by_minute.clear()


HISTORY = History()


@dataclass(slots=True)
class Answers:
    """When a side last answered (any HTTP answer) and last could not be reached."""

    answered: float | None = None
    unreachable: float | None = None


#: "google" / "exchange" -> Answers (readiness)
ANSWERS: dict[str, Answers] = {"google": Answers(), "exchange": Answers()}


@dataclass(frozen=True, slots=True)
class Change:
    """A decision a run or the worker carried out: the console's recent changes (ids and
    the plan's reason, which names fields and sides, never their values)."""

    at: float
    mailbox: str
    source: str
    kind: str
    ews_item_id: str | None
    google_event_id: str | None
    reason: str


#: the last changes carried, newest last
RECENT: deque[Change] = deque(maxlen=500)

#: the streaming sources of this process (the collector counts their subscriptions)
STREAMING: weakref.WeakSet[Any] = weakref.WeakSet()


# --- recording (and forwarding from worker processes) -----------------------------------------

_forwarding: list[tuple[str, tuple[Any, ...]]] | None = None
_forward_lock = threading.Lock()


def forward_from_this_process() -> None:
    """In a worker process: keep what is recorded, for `handover`."""
    global _forwarding
    _forwarding = []


def handover() -> list[tuple[str, tuple[Any, ...]]]:
    """What this worker process recorded since the last handover (empty elsewhere)."""
    global _forwarding
    if _forwarding is None:
        return []
    with _forward_lock:
        taken, _forwarding = _forwarding, []
    return taken


def take_over(samples: Iterable[tuple[str, tuple[Any, ...]]]) -> None:
    """Record in this process what a worker process handed over."""
    for name, args in samples:
        record = _RECORDERS.get(name)
        if record is not None:
            record(*args)


def _emit(name: str, *args: Any) -> None:
    _RECORDERS[name](*args)
    if _forwarding is not None:
        with _forward_lock:
            _forwarding.append((name, args))


def _latency(source: str, direction: str, seconds: float, at: float) -> None:
    seconds = max(0.0, seconds)
    LATENCY.labels(source, direction).observe(seconds)
    HISTORY.add(at=at, latency=seconds)


def _request(side: str, operation: str, status: str, at: float) -> None:
    (GOOGLE_REQUESTS if side == "google" else EWS_REQUESTS).labels(operation, status).inc()
    answers = ANSWERS[side]
    if status == "unreachable":
        answers.unreachable = max(answers.unreachable or 0.0, at)
    else:
        answers.answered = max(answers.answered or 0.0, at)


def _outbox(result: str) -> None:
    OUTBOX_ENTRIES.labels(result).inc()


def _change(*fields: Any) -> None:
    change = Change(*fields)
    RECENT.append(change)
    HISTORY.add(at=change.at, changes=1)


def _conflict(winner: str) -> None:
    CONFLICTS.labels(winner if winner in WINNERS else "other").inc()


_RECORDERS: dict[str, Callable[..., None]] = {
    "latency": _latency,
    "request": _request,
    "outbox": _outbox,
    "conflict": _conflict,
    "change": _change,
}


# --- the hooks ------------------------------------------------------------------------------


def outbox_written(entry: Any, *, now: float | None = None) -> None:
    """The worker wrote an outbox entry (an OutboxEntry the proxy recorded)."""
    at = time.time() if now is None else now
    _emit("outbox", "written")
    _emit("latency", "proxy", "exchange_to_google", at - entry.created_at, at)
    reason = f"Exchange accepted a change ({entry.op}) through the proxy"
    _emit("change", at, entry.mailbox, "proxy", entry.op, entry.ews_item_id, None, reason)


def outbox_result(result: str) -> None:
    """An entry the worker did not write: skipped, retry, quarantined."""
    _emit("outbox", result)


def google_request(operation: str, status: str) -> None:
    """One Google Calendar API call (sync/backends/google.py)."""
    _emit("request", "google", _operation(operation), status, time.time())


def ews_request(body: bytes | str | None, status: str) -> None:
    """One EWS request, named by the operation its SOAP body asks for."""
    _emit("request", "exchange", ews_operation(body), status, time.time())


def conflict(winner: str) -> None:
    """A conflict the policy settled, `winner` the side that won."""
    _emit("conflict", winner)


def _operation(method_id: str) -> str:
    # googleapiclient's methodId: "calendar.events.insert"
    return method_id.removeprefix("calendar.") or "unknown"


def ews_operation(body: bytes | str | None) -> str:
    """The EWS operation a SOAP request asks for: the first element in its Body. Only a
    name of letters (the operation's), else "unknown": labels stay bounded."""
    if not body:
        return "unknown"
    head = body[:4096] if isinstance(body, bytes) else body[:4096].encode("utf-8", "replace")
    at = head.find(b"Body")
    if at < 0:
        return "unknown"
    start = head.find(b"<", at)
    if start < 0:
        return "unknown"
    end = start + 1
    while end < len(head) and head[end : end + 1] not in (b" ", b">", b"/", b"\n", b"\r", b"\t"):
        end += 1
    name = head[start + 1 : end].decode("ascii", "replace").rpartition(":")[2]
    return name if name.isalpha() and len(name) <= 40 else "unknown"


# --- runs: what triggered them, what they carried ---------------------------------------------

#: (mailbox, source) -> when the first notification not yet served by a run came
_notified: dict[tuple[str, str], float] = {}
_notified_lock = threading.Lock()
_scope = threading.local()

T = TypeVar("T")


def noting(
    source: Literal["streaming", "push"], trigger: Callable[[T], None]
) -> Callable[[T], None]:
    """`trigger` (a user's run), remembering when a notification of `source` asked for it:
    the run that follows measures its latency from then."""

    def noted(user: T) -> None:
        mailbox = str(getattr(user, "mailbox", user))
        NOTIFICATIONS.labels(source).inc()
        with _notified_lock:
            _notified.setdefault((mailbox, source), time.time())
        trigger(user)

    return noted


def streaming_source(streaming: Any, trigger: Callable[[T], None]) -> Callable[[T], None]:
    """A streaming source's trigger, noted (`noting`); the source is counted at scrape."""
    STREAMING.add(streaming)
    return noting("streaming", trigger)


def feed_stamps(side: Literal["exchange", "google"], stamps: Iterable[Any]) -> None:
    """The change stamps an incremental feed listed in the current run (the backends'
    feed calls): the newest is where a poll's latency is measured from."""
    scope = getattr(_scope, "run", None)
    if scope is None:
        return
    newest = max((t for t in map(_timestamp, stamps) if t is not None), default=None)
    if newest is not None:
        scope[side] = max(scope.get(side, 0.0), newest)


def _timestamp(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.timestamp() if value.tzinfo is not None else None
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed.timestamp() if parsed.tzinfo is not None else None
    return None


@contextmanager
def _run_scope() -> Iterator[dict[str, float]]:
    outer = getattr(_scope, "run", None)
    _scope.run = {}
    try:
        yield _scope.run
    finally:
        _scope.run = outer


def observed_runs(run: Callable[[T], Any]) -> Callable[[T], Any]:
    """`run` (a user's two-way sync, returning its Report), counted: its outcome, its
    duration, and the latency of what it carried (see the module's docstring)."""

    def observed(user: T) -> Any:
        mailbox = str(getattr(user, "mailbox", user))
        started = time.time()
        with _notified_lock:  # the notifications this run serves
            served = {s: t for (m, s), t in _notified.items() if m == mailbox and t <= started}
            for source in served:
                _notified.pop((mailbox, source), None)
        with _run_scope() as stamps:
            try:
                report = run(user)
            except Exception:
                RUNS.labels("failed").inc()
                raise
        ended = time.time()
        RUN_SECONDS.observe(ended - started)
        if report is None:  # another node holds the user's lease: no run here
            return report
        RUNS.labels(run_outcome(report)).inc()
        sources: dict[str, str] = {}
        for direction in written_directions(report):
            if direction == "exchange_to_google":
                source, since = "streaming", served.get("streaming")
                if since is None:
                    source, since = "exchange_feed", stamps.get("exchange")
            else:
                source, since = "push", served.get("push")
                if since is None:
                    source, since = "google_feed", stamps.get("google")
            sources[direction] = source
            if since is not None:
                _emit("latency", source, direction, ended - since, ended)
        for action in getattr(report, "actions", ()) if report.applied else ():
            directions = _KIND_DIRECTIONS.get(action.kind)
            if directions is not None:
                source = sources.get(directions[0], "feed")
                _emit(
                    "change",
                    ended,
                    mailbox,
                    source,
                    action.kind,
                    action.ews_item_id,
                    action.google_event_id,
                    action.reason,
                )
        return report

    return observed


def run_outcome(report: Any) -> str:
    if getattr(report, "backing_off_until", None) is not None:
        return "backing_off"
    if getattr(report, "stopped", None):
        return "stopped"
    if getattr(report, "errors", None):
        return "error"
    return "changed" if getattr(report, "applied", 0) else "unchanged"


_KIND_DIRECTIONS: dict[str, tuple[Direction, ...]] = {
    "create-google": ("exchange_to_google",),
    "update-google": ("exchange_to_google",),
    "delete-google": ("exchange_to_google",),
    "create-exchange": ("google_to_exchange",),
    "update-exchange": ("google_to_exchange",),
    "delete-exchange": ("google_to_exchange",),
    "update-both": ("exchange_to_google", "google_to_exchange"),
}


def written_directions(report: Any) -> list[Direction]:
    """The directions a run wrote in: its planned actions that write (none when it applied
    nothing)."""
    if not getattr(report, "applied", 0):
        return []
    found: set[Direction] = set()
    for action in getattr(report, "actions", ()):
        found.update(_KIND_DIRECTIONS.get(getattr(action, "kind", ""), ()))
    return [d for d in DIRECTIONS if d in found]


def reset_for_tests() -> None:
    """Forget the in-memory history, answers and notifications (the registry's counters
    only go up: tests compare before and after)."""
    HISTORY.clear()
    RECENT.clear()
    for side in ANSWERS:
        ANSWERS[side] = Answers()
    with _notified_lock:
        _notified.clear()
