"""calsync's CPU per mirrored event next to mitmdump's own per request, in one run (issue 17).

    .venv/bin/python bench/cpu.py [--events 100] [--warm 5] [--profile DIR]

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
master, ten occurrences). `--warm` of each kind go first, uncounted. CPU is utime+stime
from /proc of mitmdump and every process under it (the worker), read before a phase and
after its last event is in Google and the outbox is empty (kernel figures: steady on a
busy machine, unlike wall-clock ones). From the same reading before and after an idle
`--idle` seconds, the addon's background CPU per second (streaming's heartbeats, polls)
is printed, not subtracted.

Printed per kind: bare mitmdump's CPU per request; mitmdump + addon per mirrored event
(split into mitmdump's process and the worker's); calsync's added CPU (addon minus bare)
and its ratio to bare's, against the target 0.25 (issue 17).

`--profile DIR`: afterwards one more addon pass (streaming on; dave) under py-spy
(`py-spy record --subprocesses --nonblocking`, raw collapsed stacks in DIR), and a summary
of where the worker's and mitmdump's CPU go: shares of the samples by library and by our
own modules, and the top functions by own time. py-spy comes with the `test` extra.

Figures vary with the machine and what else runs; the ratios are what compare.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.proxy import ENVELOPE, PASSWORD, running, stand_in, write_config  # noqa: E402
from bench.streaming import cpu_s  # noqa: E402
from emulators.google.server import GoogleCalendarServer  # noqa: E402
from mapping.event import event_id_for  # noqa: E402
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
    proxy: Proxy, watched: Watched | None, *, series: bool, count: int, tag: str
) -> dict[str, Phase]:
    """`count` creates, then an update of each, then a delete of each, one at a time, each
    waited for in Google when `watched`; the CPU each phase took."""
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
    work: Path, name: str, user: str, ews_url: str, google_url: str | None, streaming: str
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
        env={"CALSYNC_BENCH_PASSWORD": PASSWORD},
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
        run_kinds(proxy, watched, series=series, count=args.warm, tag="warm")
        phases = run_kinds(proxy, watched, series=series, count=args.events, tag="bench")
        for kind, phase in phases.items():
            results[(kind, label)] = phase
    return results


# --- the profile ------------------------------------------------------------------------------

#: How the summary names a frame's file: the first rule that matches (a path fragment).
_GROUPS = (
    ("googleapiclient/", "googleapiclient"),
    ("google_auth_httplib2", "google-auth"),
    ("google/auth/", "google-auth"),
    ("google/oauth2/", "google-auth"),
    ("httplib2/", "httplib2"),
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
)


def _group(frame: str) -> str:
    for fragment, name in _GROUPS:
        if fragment in frame:
            return name
    return "other"


def summarise(raw: Path, top: int = 12) -> None:
    """Shares of py-spy's samples (raw collapsed stacks) per process: by library (a sample
    counts once for each library on its stack: inclusive) and the functions with most
    samples on top of the stack (own time)."""
    inclusive: dict[str, Counter[str]] = {}
    own: dict[str, Counter[str]] = {}
    totals: Counter[str] = Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        process = "worker" if "spawn_main" in stack else "mitmdump"
        count = int(count_text)
        totals[process] += count
        for name in {_group(f) for f in frames[1:]}:
            inclusive.setdefault(process, Counter())[name] += count
        own.setdefault(process, Counter())[frames[-1]] += count
    for process in ("worker", "mitmdump"):
        total = totals[process]
        if not total:
            continue
        print(f"\n  {process}: {total} samples; by library (inclusive, % of samples)")
        for name, count in inclusive[process].most_common(top):
            print(f"    {100 * count / total:5.1f}  {name}")
        print(f"  {process}: top functions by own samples")
        for name, count in own[process].most_common(top):
            print(f"    {100 * count / total:5.1f}  {name[:110]}")


def profile(args: argparse.Namespace, work: Path, ews_url: str, watched: Watched) -> None:
    spy = PYTHON.parent / "py-spy"
    directory = Path(args.profile)
    directory.mkdir(parents=True, exist_ok=True)
    raw = directory / "addon.txt"
    with proxy_for(work, "profiled", PROFILED, ews_url, watched.google.url, "on") as proxy:
        run_kinds(proxy, watched, series=False, count=args.warm, tag="warm")
        recorder = subprocess.Popen(
            [
                str(spy),
                "record",
                "--pid",
                str(proxy.pid),
                "--subprocesses",
                "--nonblocking",
                "--rate",
                str(args.rate),
                "--format",
                "raw",
                "--output",
                str(raw),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # py-spy attached
        for series in (False, True):
            run_kinds(proxy, watched, series=series, count=args.events, tag="profiled")
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=60)
    print(f"\nprofile: py-spy, {args.rate}/s, the addon pass of every kind (streaming on): {raw}")
    summarise(raw)


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
    parser.add_argument("--profile", help="also profile an addon pass with py-spy, into DIR")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples a second")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="calsync-bench-cpu-"))
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at the start")
    try:
        users = [a for u in USERS for a in ("--user", f"{u}:{PASSWORD}")]
        ews_ready = re.compile(r"listening on (http://127\.0\.0\.1:\d+/EWS/Exchange\.asmx)")
        with (
            running(stand_in("emulators.ews", *users), ews_ready, work / "ews.log") as ews_url,
            GoogleCalendarServer(port=0, users=list(USERS[1:])) as google,
        ):
            watched = Watched(google)
            with proxy_for(work, "bare", BARE, ews_url, None, "on") as proxy:
                bare = measure(proxy, None, args)
            addons: dict[str, Results] = {}
            idle: dict[str, float] = {}
            for name, user, streaming in (
                ("streaming", STREAMING, "on"),
                ("polling", POLLING, "off"),
            ):
                with proxy_for(work, name, user, ews_url, google.url, streaming) as proxy:
                    idle[name] = idle_rate(proxy, args.idle)
                    addons[name] = measure(proxy, watched, args)
            report(bare, addons, idle)
            if args.profile:
                profile(args, work, ews_url, watched)
    finally:
        if not os.environ.get("CALSYNC_BENCH_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(work)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
