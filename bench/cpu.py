"""calsync's CPU per mirrored event next to mitmdump's own per request, in one run (issue 17).

    .venv/bin/python bench/cpu.py [--events 100] [--warm 5] [--pace 0.02] [--profile DIR]

Everything on 127.0.0.1 over plain HTTP. The EWS stand-in (`python -m emulators.ews`) is a
process of its own; the Google stand-in runs in this process (a change listener on its
state tells when an event is there); neither's CPU is counted. mitmdump runs in reverse
mode in front of the EWS stand-in, one at a time, each with a mailbox of its own (so no
proxy's traffic is another's streaming notification):

- bare: no addon (bob);
- addon, `[exchange] streaming = true` (the default): the addon and its worker process
  (alice). The streaming notification each change causes is part of the addon's cost;
- addon, `streaming = false` (carol), to tell the two apart.

The periodic two-way job is off (`calsync_sync_interval=0`): it is not per-event work.

Through each: `--events` CreateItems one at a time (the next sent once the previous one's
event is in the Google stand-in), then an UpdateItem of each (its subject: the next sent
once Google has the new summary), then a DeleteItem of each (once Google's event is
cancelled); once without a series (single items), once with one (a weekly recurring
master, ten occurrences). `--warm` of each kind go first, uncounted. Every pass sends at
the same pace, one request each `--pace` seconds (or once the previous one is mirrored, if
later), as users' clients send theirs: the same work costs a process more CPU after a
pause (its caches cold) than back to back, and bare mitmdump sent back to back would be
measured cheaper than it is next to the addon, whose requests wait for Google. CPU is utime+stime
from /proc of mitmdump and every process under it (the worker), read before a phase and
after its last event is in Google and the outbox is empty (kernel figures: steady on a
busy machine, unlike wall-clock ones). From the same reading before and after an idle
`--idle` seconds, the addon's background CPU per second (streaming's heartbeats, polls)
is printed, not subtracted.

Printed per kind: bare mitmdump's CPU per request; mitmdump + addon per mirrored event
(split into mitmdump's process and the worker's); calsync's added CPU (addon minus bare)
and its ratio to bare's, against the target 0.25 (issue 17).

`--profile DIR`: afterwards one more addon pass (streaming on; dave) with its worker
process under cProfile, timed by its main thread's CPU clock (`CALSYNC_PROFILE_DIR`,
sync/sources/warmup.py; a sampling profiler on a loaded machine counts a thread waiting for
a core where it was woken), the warm-up changes taken off; printed: the worker's CPU by
library (inclusive) and the functions with most own time. cProfile's own cost inflates
call-heavy code: the shares are what compare.

Figures vary with the machine and what else runs; the ratios are what compare.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import pstats
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.proxy import ENVELOPE, PASSWORD, running, stand_in, write_config  # noqa: E402
from bench.streaming import cpu_s  # noqa: E402
from emulators.google.server import GoogleCalendarServer  # noqa: E402
from mapping.event import event_id_for  # noqa: E402
from sync.sources.warmup import PROFILE_ENV  # noqa: E402
from sync.state.sqlite import outbox_size  # noqa: E402
from tests.e2e.processes import Mitmdump, children  # noqa: E402

PYTHON = Path(sys.executable)
BARE, STREAMING, POLLING, PROFILED = (
    "bob@example.com",
    "alice@example.com",
    "carol@example.com",
    "dave@example.com",
)
USERS = (BARE, STREAMING, POLLING, PROFILED)
TARGET = 0.25
KINDS = ("create", "update", "delete")

_RECURRENCE = (
    "<t:Recurrence><t:WeeklyRecurrence><t:Interval>1</t:Interval>"
    "<t:DaysOfWeek>Monday</t:DaysOfWeek></t:WeeklyRecurrence>"
    "<t:NumberedRecurrence><t:StartDate>2026-03-02</t:StartDate>"
    "<t:NumberOfOccurrences>10</t:NumberOfOccurrences></t:NumberedRecurrence></t:Recurrence>"
)
_ITEM_ID = re.compile(rb'<t:ItemId Id="([^"]+)" ChangeKey="([^"]+)"')


def create_item(subject: str, *, series: bool) -> bytes:
    return ENVELOPE.format(
        '<m:CreateItem SendMeetingInvitations="SendToNone"><m:SavedItemFolderId>'
        '<t:DistinguishedFolderId Id="calendar"/></m:SavedItemFolderId><m:Items>'
        f"<t:CalendarItem><t:Subject>{subject}</t:Subject>"
        '<t:Body BodyType="Text">Agenda: none</t:Body>'
        "<t:Start>2026-03-02T08:00:00Z</t:Start><t:End>2026-03-02T09:00:00Z</t:End>"
        "<t:Location>Room 4</t:Location>"
        + (_RECURRENCE if series else "")
        + "</t:CalendarItem></m:Items></m:CreateItem>"
    ).encode()


def update_item(item_id: str, change_key: str, subject: str) -> bytes:
    return ENVELOPE.format(
        '<m:UpdateItem ConflictResolution="AutoResolve"'
        ' SendMeetingInvitationsOrCancellations="SendToNone"><m:ItemChanges><t:ItemChange>'
        f'<t:ItemId Id="{item_id}" ChangeKey="{change_key}"/><t:Updates><t:SetItemField>'
        '<t:FieldURI FieldURI="item:Subject"/><t:CalendarItem>'
        f"<t:Subject>{subject}</t:Subject></t:CalendarItem></t:SetItemField></t:Updates>"
        "</t:ItemChange></m:ItemChanges></m:UpdateItem>"
    ).encode()


def delete_item(item_id: str) -> bytes:
    return ENVELOPE.format(
        '<m:DeleteItem DeleteType="MoveToDeletedItems" SendMeetingCancellations="SendToNone">'
        f'<m:ItemIds><t:ItemId Id="{item_id}"/></m:ItemIds></m:DeleteItem>'
    ).encode()


# --- the Google stand-in, watched -------------------------------------------------------------


class Watched:
    """The Google stand-in in this process; `until(user, check)` returns once `check` holds
    of that user's calendar's events (checked at each change it commits)."""

    def __init__(self, google: GoogleCalendarServer) -> None:
        self.google = google
        self.changed = threading.Condition()
        google.state.change_listeners.append(self._on_change)

    def _on_change(self, calendar_id: str) -> None:
        with self.changed:
            self.changed.notify_all()

    def event(self, user: str, event_id: str) -> dict[str, object] | None:
        stored = self.google.state.calendars[user].events.get(event_id)
        return None if stored is None else stored.resource

    def until(self, check: Callable[[], bool], limit: float = 30.0) -> None:
        deadline = time.monotonic() + limit
        with self.changed:
            while not check():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("the change never reached the Google stand-in")
                self.changed.wait(min(left, 0.5))


# --- one proxy -------------------------------------------------------------------------------


@dataclass
class Proxy:
    """One mitmdump in front of the EWS stand-in, for one mailbox."""

    name: str
    user: str
    node: Mitmdump
    store: Path | None  # the addon's store (None: bare)
    conn: http.client.HTTPConnection = field(init=False)

    def __post_init__(self) -> None:
        assert self.node.port is not None
        self.conn = http.client.HTTPConnection("127.0.0.1", self.node.port, timeout=30)
        auth = base64.b64encode(f"{self.user}:{PASSWORD}".encode()).decode()
        self.headers = {"Authorization": f"Basic {auth}", "Content-Type": "text/xml"}

    def send(self, body: bytes) -> bytes:
        self.conn.request("POST", "/EWS/Exchange.asmx", body=body, headers=self.headers)
        reply = self.conn.getresponse()
        data = reply.read()
        if reply.status != 200 or b"NoError" not in data:
            raise RuntimeError(f"{self.name}: HTTP {reply.status} {data[:300]!r}")
        return data

    @property
    def pid(self) -> int:
        assert self.node.process is not None
        return self.node.process.pid

    def cpu(self) -> tuple[float, float]:
        """(mitmdump's, its worker processes') utime+stime, seconds."""
        return cpu_s(self.pid), sum(cpu_s(p) for p in _descendants(self.pid))

    def settled(self) -> None:
        """The outbox empty (every entry's bookkeeping done), and a moment for what the
        last change's streaming notification makes the addon do."""
        if self.store is None:
            return
        deadline = time.monotonic() + 60
        while outbox_size(self.store) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)


def _descendants(pid: int) -> list[int]:
    found, todo = [], children(pid)
    while todo:
        child = todo.pop()
        found.append(child)
        todo += children(child)
    return found


@dataclass
class Phase:
    events: int
    proxy_s: float  # mitmdump's own process
    worker_s: float  # the processes under it
    seconds: float  # wall clock

    @property
    def per_event_ms(self) -> float:
        return (self.proxy_s + self.worker_s) * 1000 / self.events


def run_kinds(
    proxy: Proxy,
    watched: Watched | None,
    *,
    series: bool,
    count: int,
    tag: str,
    pace: float = 0.0,
) -> dict[str, Phase]:
    """`count` creates, then an update of each, then a delete of each, one at a time, each
    waited for in Google when `watched`, one each `pace` seconds at most; the CPU each
    phase took."""
    items: list[tuple[str, str]] = []
    phases: dict[str, Phase] = {}
    label = "series" if series else "single"

    def mirrored(check: Callable[[], bool]) -> None:
        if watched is not None:
            watched.until(check)

    def create(n: int) -> None:
        subject = f"{tag} {label} {n}"
        found = _ITEM_ID.search(proxy.send(create_item(subject, series=series)))
        assert found is not None
        item_id, change_key = found.group(1).decode(), found.group(2).decode()
        items.append((item_id, change_key))
        event_id = event_id_for(item_id)
        mirrored(lambda: watched is not None and watched.event(proxy.user, event_id) is not None)

    def update(n: int) -> None:
        item_id, change_key = items[n]
        subject = f"{tag} {label} {n} moved"
        proxy.send(update_item(item_id, change_key, subject))
        event_id = event_id_for(item_id)

        def done() -> bool:
            event = watched.event(proxy.user, event_id) if watched else None
            return event is not None and event.get("summary") == subject

        mirrored(done)

    def delete(n: int) -> None:
        item_id, _ = items[n]
        proxy.send(delete_item(item_id))
        event_id = event_id_for(item_id)

        def done() -> bool:
            event = watched.event(proxy.user, event_id) if watched else None
            return event is None or event.get("status") == "cancelled"

        mirrored(done)

    for kind, step in (("create", create), ("update", update), ("delete", delete)):
        proxy.settled()
        (proxy_before, worker_before), began = proxy.cpu(), time.monotonic()
        for n in range(count):
            step(n)
            time.sleep(max(0.0, began + (n + 1) * pace - time.monotonic()))
        proxy.settled()
        proxy_after, worker_after = proxy.cpu()
        phases[kind] = Phase(
            count,
            proxy_after - proxy_before,
            worker_after - worker_before,
            time.monotonic() - began,
        )
    return phases


def idle_rate(proxy: Proxy, seconds: float) -> float:
    """ms of CPU a second the proxy (and its workers) spend doing nothing asked of them."""
    before = sum(proxy.cpu())
    time.sleep(seconds)
    return (sum(proxy.cpu()) - before) * 1000 / seconds


@contextmanager
def proxy_for(
    work: Path,
    name: str,
    user: str,
    ews_url: str,
    google_url: str | None,
    streaming: str,
    env: dict[str, str] | None = None,
) -> Iterator[Proxy]:
    ews = urlsplit(ews_url)
    options = {"mode": f"reverse:{ews.scheme}://{ews.netloc}/"}
    store = None
    if google_url is not None:
        config = write_config(work, name, google_url, ews_url, streaming, user=user)
        store = work / f"{name}.db"
        options |= {"calsync_config": str(config), "calsync_sync_interval": "0"}
    directory = work / name
    directory.mkdir()
    node = Mitmdump(
        directory,
        addon=google_url is not None,
        options=options,
        env={"CALSYNC_BENCH_PASSWORD": PASSWORD, **(env or {})},
        name=name,
    )
    node.start()
    try:
        if store is not None:  # the worker process spawned and warm (sync/sources/warmup.py)
            deadline = time.monotonic() + 60
            while "calsync worker: warm in" not in node.log():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: the worker never said it was warm")
                time.sleep(0.05)
        yield Proxy(name, user, node, store)
    finally:
        node.stop()


Results = dict[tuple[str, str], Phase]  # (kind, single|series) -> phase


def measure(proxy: Proxy, watched: Watched | None, args: argparse.Namespace) -> Results:
    results: Results = {}
    for series in (False, True):
        label = "series" if series else "single"
        # uncounted: first-use work (connections, caches, the store's pages)
        run_kinds(proxy, watched, series=series, count=args.warm, tag="warm", pace=args.pace)
        phases = run_kinds(
            proxy, watched, series=series, count=args.events, tag="bench", pace=args.pace
        )
        for kind, phase in phases.items():
            results[(kind, label)] = phase
    return results


# --- the profile ------------------------------------------------------------------------------

#: How the summary names a function's file: the first rule that matches (a path fragment).
_GROUPS = (
    ("googleapiclient/", "googleapiclient"),
    ("google_auth_httplib2", "google-auth"),
    ("google/auth/", "google-auth"),
    ("google/oauth2/", "google-auth"),
    ("httplib2/", "httplib2"),
    ("http/client.py", "http.client"),
    ("exchangelib/", "exchangelib"),
    ("sqlite_utils/", "sqlite-utils"),
    ("cryptography/", "cryptography"),
    ("mitmproxy/", "mitmproxy"),
    ("multiprocessing/", "multiprocessing (pool, pickling)"),
    ("concurrent/futures/", "multiprocessing (pool, pickling)"),
    ("lxml", "lxml"),
    ("/ews_parser/", "ews_parser"),
    ("/mapping/", "mapping"),
    ("/sync/state/", "sync.state (SQLite, sealing)"),
    ("/sync/backends/", "sync.backends"),
    ("/sync/ops/", "sync.ops (metrics)"),
    ("/sync/", "sync (reconciler, fast path, sources)"),
    ("/addon/", "addon"),
    ("json/", "json"),
    ("logging/", "logging"),
    ("asyncio/", "asyncio"),
    ("of 'sqlite3.", "sqlite3 (C)"),
    ("ciphers.", "cryptography"),
    ("socket", "sockets"),
)

Function = tuple[str, int, str]  # pstats' (file, line, name)


def _group(where: str) -> str:
    for fragment, name in _GROUPS:
        if fragment in where:
            return name
    return "other"


def _where(function: Function) -> str:
    path, line, name = function
    return f"{name} ({path}:{line})" if path != "~" else name


def summarise(paths: list[Path], events: int, top: int = 14) -> None:
    """The worker's CPU (cProfile on its main thread's CPU clock) per event: by library,
    inclusive (the time of the library's functions called from outside it), and the
    functions with most own time."""
    stats = pstats.Stats(*(str(p) for p in paths))
    table = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in table.values())
    by_group: Counter[str] = Counter()
    for function, (_, _, _, _, callers) in table.items():
        group = _group(_where(function))
        for caller, timing in callers.items():
            if _group(_where(caller)) != group:
                by_group[group] += timing[3]
    print(
        f"\n  worker: {total * 1000 / events:.2f} ms of CPU an event under cProfile "
        f"({events} events); by library, inclusive (% of the worker's CPU)"
    )
    for group, seconds in [g for g in by_group.most_common() if g[0] != "other"][:top]:
        print(f"    {100 * seconds / total:5.1f}  {group}")
    print("  worker: top functions by own time (%)")
    own = sorted(table.items(), key=lambda item: item[1][2], reverse=True)
    for function, entry in own[:top]:
        print(f"    {100 * entry[2] / total:5.1f}  {_where(function)[:110]}")


def _workers(pid: int) -> list[int]:
    """The worker processes under `pid` (not multiprocessing's resource tracker)."""
    found = []
    for child in _descendants(pid):
        with suppress(OSError):
            command = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in command:
                found.append(child)
    return found


def profile(args: argparse.Namespace, work: Path, ews_url: str, watched: Watched) -> None:
    """One more addon pass (streaming on) with its worker profiled (sync/sources/warmup.py:
    `CALSYNC_PROFILE_DIR`); the profile written on SIGUSR1, then summarised."""
    directory = Path(args.profile).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("worker-*.prof"):
        old.unlink()
    env = {PROFILE_ENV: str(directory)}
    with proxy_for(work, "profiled", PROFILED, ews_url, watched.google.url, "on", env) as proxy:
        run_kinds(proxy, watched, series=False, count=args.warm, tag="warm", pace=args.pace)
        workers = _workers(proxy.pid)
        for pid in workers:  # from here on
            os.kill(pid, signal.SIGUSR1)
        time.sleep(0.5)
        firsts = {p: pstats.Stats(str(directory / f"worker-{p}.prof")) for p in workers}
        for series in (False, True):
            run_kinds(
                proxy, watched, series=series, count=args.events, tag="profiled", pace=args.pace
            )
        for pid in workers:
            os.kill(pid, signal.SIGUSR1)
        time.sleep(0.5)
    paths = []
    for pid, first in firsts.items():
        # what the warm-up pass cost taken off: a profile of the counted changes alone
        last = pstats.Stats(str(directory / f"worker-{pid}.prof"))
        table = last.stats  # type: ignore[attr-defined]
        for function, entry in first.stats.items():  # type: ignore[attr-defined]
            if function in table:
                table[function] = _minus(table[function], entry)
        path = directory / f"counted-{pid}.prof"
        last.dump_stats(str(path))
        paths.append(path)
    print(f"\nprofile: cProfile in the worker, the addon pass of every kind: {directory}")
    summarise(paths, 6 * args.events)


def _minus(after: tuple, before: tuple) -> tuple:  # type: ignore[type-arg]
    """A pstats entry less an earlier one of the same function."""
    cc, nc, tt, ct, callers = after
    old_callers = before[4]
    return (
        cc - before[0],
        nc - before[1],
        tt - before[2],
        ct - before[3],
        {
            k: tuple(a - b for a, b in zip(v, old_callers.get(k, (0, 0, 0, 0)), strict=True))
            for k, v in callers.items()
        },
    )


# --- report -----------------------------------------------------------------------------------


def report(bare: Results, addons: dict[str, Results], idle: dict[str, float]) -> None:
    print(
        "\nCPU per request / mirrored event, ms (utime+stime from /proc: mitmdump and its "
        "worker processes)"
    )
    header = f"{'kind':<8}{'series':<8}{'bare':>7}"
    for name in addons:
        header += f"{name + ' addon':>17}{'proxy':>7}{'worker':>8}{'added':>7}{'ratio':>7}"
    print(header + f"{'target':>8}")
    for label in ("single", "series"):
        for kind in KINDS:
            base = bare[(kind, label)].per_event_ms
            row = f"{kind:<8}{label:<8}{base:>7.2f}"
            for results in addons.values():
                phase = results[(kind, label)]
                added = phase.per_event_ms - base
                row += (
                    f"{phase.per_event_ms:>17.2f}{phase.proxy_s * 1000 / phase.events:>7.2f}"
                    f"{phase.worker_s * 1000 / phase.events:>8.2f}{added:>7.2f}"
                    f"{added / base:>7.2f}"
                )
            print(row + f"{TARGET:>8.2f}")
    print(
        "(added: addon minus bare, ms an event; ratio: added / bare, the target's terms. "
        "proxy / worker: the addon's ms in mitmdump's process and in its worker)"
    )
    print(
        "idle, ms of CPU a second: "
        + ", ".join(f"{name} {rate:.2f}" for name, rate in idle.items())
        + " (not subtracted)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100, help="changes of each kind counted")
    parser.add_argument("--warm", type=int, default=5, help="changes of each kind first, uncounted")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of idle measured")
    parser.add_argument(
        "--pace", type=float, default=0.02, help="seconds from one request to the next, at least"
    )
    parser.add_argument("--profile", help="also profile an addon pass's worker, into DIR")
    parser.add_argument(
        "--no-measure", action="store_true", help="with --profile: the profiled pass alone"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="calsync-bench-cpu-"))
    print(
        f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at the start; "
        f"a request each {args.pace * 1000:.0f} ms at most"
    )
    try:
        users = [a for u in USERS for a in ("--user", f"{u}:{PASSWORD}")]
        ews_ready = re.compile(r"listening on (http://127\.0\.0\.1:\d+/EWS/Exchange\.asmx)")
        with (
            running(stand_in("emulators.ews", *users), ews_ready, work / "ews.log") as ews_url,
            GoogleCalendarServer(port=0, users=list(USERS[1:])) as google,
        ):
            watched = Watched(google)
            if not args.no_measure:
                compare(args, work, ews_url, watched)
            if args.profile:
                profile(args, work, ews_url, watched)
    finally:
        if not os.environ.get("CALSYNC_BENCH_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(work)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


def compare(args: argparse.Namespace, work: Path, ews_url: str, watched: Watched) -> None:
    """Bare, then the addon with streaming on and off, each measured; the table."""
    with proxy_for(work, "bare", BARE, ews_url, None, "on") as proxy:
        bare = measure(proxy, None, args)
    addons: dict[str, Results] = {}
    idle: dict[str, float] = {}
    for name, user, streaming in (("streaming", STREAMING, "on"), ("polling", POLLING, "off")):
        with proxy_for(work, name, user, ews_url, watched.google.url, streaming) as proxy:
            idle[name] = idle_rate(proxy, args.idle)
            addons[name] = measure(proxy, watched, args)
    report(bare, addons, idle)


if __name__ == "__main__":
    raise SystemExit(main())
