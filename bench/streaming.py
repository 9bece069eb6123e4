"""Changes made directly in Exchange: how soon they are in Google with EWS streaming
notifications against polling, and what 1,000 users' subscriptions cost, in one run.

    .venv/bin/python bench/streaming.py [--changes 100] [--poll-changes 30] [--poll-interval 2]
                                        [--users 1000] [--notifications 200] [--idle-seconds 20]
                                        [--baseline-users N] [--only latency|scale]

Everything on 127.0.0.1; every change is made through the unmodified exchangelib straight
at the EWS stand-in (never through a proxy), as web mail, phones or Windows Outlook make
theirs.

(a) Latency. `calsync serve` as its own process (one user, exchange-to-google: no Google
    push channel whose echo runs would read the Exchange feed early), the EWS stand-in and
    the Google stand-in in this process. Start: when exchangelib has Exchange's answer to
    the change (a CreateItem, or an UpdateItem of the subject). End: when the Google
    stand-in commits the event with that summary (a change listener on its state).
    Streaming ([exchange] streaming = true, no poll): `--changes` changes, one at a time,
    0.05-0.25 s apart. Polling (streaming = false): a change waits for the next poll and
    then one run. Waiting 60 s for each is not needed to know its distribution:
    `--poll-changes` changes are timed with a poll every `--poll-interval` s, each made at
    a random point of the poll cycle; the runs' start is known (the job's SyncFolderItems
    as the stand-in answers it), so each change's wait is known as a share of its cycle,
    and scaled to a 60 s cycle the latency is that share of 60 s plus what the run took
    after its start. Printed: both measured, the scaled 60 s figures, their ratios, and
    the CPU `calsync serve` spent per streamed change (utime+stime from /proc, the sync
    run included). Targets (issue 14): streaming p50 <= 1 s, p99 <= 3 s.

(b) 1,000 users' subscriptions. The EWS stand-in as its own process (`--users` mailboxes
    and a service account that may impersonate them; Exchange 2016's limits: 200
    subscriptions a connection, 3 streaming connections per budget, a heartbeat every
    45 s); calsync's streaming source (sync/sources/streaming.py, as `calsync serve` runs
    it) in its own process, its trigger writing one line a user to this process instead
    of running a sync. Grouped: with impersonation, 200 users a connection. Measured:
    connections and subscriptions as the stand-in counts them
    (/_admin/subscriptions); setup time (start() until every subscription is live and
    every connection open); memory (VmRSS of both processes before and after); CPU
    (utime+stime from /proc) per idle minute and per notification read (`--notifications`
    creates, each in another user's calendar, until the source has triggered that user,
    the idle rate taken off; the stand-in's figure includes the CreateItem itself); the
    delay from the change to the trigger; and the time to subscribe everyone again after
    the stand-in loses every subscription (/_admin/recycle, an application pool recycle).
    Baseline, measured the same way in the same run: each user on a connection of her own
    (her own credentials, no impersonation), `--baseline-users` users (default 200; with
    1,000 a connection each, this machine had 340 of them open after 5 minutes).
    Figures of one user or one notification compare across the two sizes.

Figures vary with the machine and what else runs; the ratios are what compare.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PYTHON = sys.executable
USER, PASSWORD = "alice@example.com", "alice-secret"
SERVICE, SERVICE_PASSWORD = "svc-calsync@example.com", "svc-secret"
POLL_S = 60.0  # calsync's default [sync] interval_s
PER_CONNECTION = 200  # Exchange's subscriptions per GetStreamingEvents
_SERVE_READY = re.compile(r"calsync serve: listening on (\S+)")
_EWS_READY = re.compile(r"listening on (http://127\.0\.0\.1:\d+/EWS/Exchange\.asmx)")


# --- processes and /proc -------------------------------------------------------------------


@contextlib.contextmanager
def process(
    args: list[str], log: Path, ready: re.Pattern[str] | None, **env: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A process whose stderr and stdout go to `log` (stdout to a pipe when `ready` is
    None); yields it and what `ready` matched once its log shows it. SIGTERM at the end."""
    from bench.proxy import clean_env

    with log.open("wb") as out:
        child = subprocess.Popen(
            args,
            env=clean_env(**env),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out if ready is not None else subprocess.PIPE,
            stderr=out,
            start_new_session=True,
        )
    try:
        matched = ""
        if ready is not None:
            deadline = time.monotonic() + 60
            while not (found := ready.search(log.read_text(errors="replace"))):
                if child.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{args[:4]} did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.05)
            matched = found.group(1)
        yield child, matched
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # fields 14 and 15 of proc(5)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def admin(base_url: str, path: str, method: str = "GET") -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(
        base_url + path, method=method, data=b"" if method == "POST" else None
    )
    with opener.open(request, timeout=30) as answer:
        return json.load(answer)


def mailbox(url: str, address: str, *, impersonate: bool = False) -> Any:
    """An exchangelib Account on the stand-in: the user's own, or the service account
    impersonating her."""
    from exchangelib import BASIC, DELEGATE, IMPERSONATION, Account, Configuration, Credentials
    from exchangelib.protocol import FailFast
    from exchangelib.version import EXCHANGE_2016, Version

    login, secret = (SERVICE, SERVICE_PASSWORD) if impersonate else (address, PASSWORD)
    return Account(
        address,
        config=Configuration(
            service_endpoint=url,
            credentials=Credentials(login, secret),
            auth_type=BASIC,
            version=Version(build=EXCHANGE_2016),
            retry_policy=FailFast(),
            max_connections=4,
        ),
        autodiscover=False,
        access_type=IMPERSONATION if impersonate else DELEGATE,
    )


def create(account: Any, subject: str) -> Any:
    from exchangelib import EWSDateTime, EWSTimeZone
    from exchangelib.items import CalendarItem

    utc = EWSTimeZone("UTC")
    item = CalendarItem(
        account=account,
        folder=account.calendar,
        subject=subject,
        start=EWSDateTime(2027, 3, 4, 12, tzinfo=utc),
        end=EWSDateTime(2027, 3, 4, 13, tzinfo=utc),
    )
    item.save(send_meeting_invitations="SendToNone")
    return item


def config_text(
    work: Path,
    *,
    ews_url: str,
    users: list[str],
    google: Any = None,
    streaming: bool = True,
    interval_s: float = 0.0,
    impersonate: bool = False,
) -> Path:
    """calsync.toml: exchange-to-google users (no push channels), all with one password."""
    lines = ["[store]", f'path = "{work / "calsync.db"}"']
    if google is not None:
        lines += [
            "[google]",
            f'api_endpoint = "{google.api_endpoint}"',
            f'token_uri = "{google.token_uri}"',
        ]
    lines += ["[exchange]", f'ews_url = "{ews_url}"', f"streaming = {str(streaming).lower()}"]
    if impersonate:
        lines += [
            f'impersonation_username = "{SERVICE}"',
            'impersonation_password_env = "CALSYNC_BENCH_SERVICE_PASSWORD"',
        ]
    lines += ["[sync]", f"interval_s = {interval_s}"]
    for user in users:
        lines += ["[[users]]", f'mailbox = "{user}"', 'direction = "exchange-to-google"']
        if google is not None:
            token = work / f"{user}.json"
            token.write_text(
                json.dumps(
                    {
                        "token": user,  # the stand-in's access token for a user is the address
                        "refresh_token": f"refresh-{user}",
                        "token_uri": google.token_uri,
                        "client_id": "bench",
                        "client_secret": "bench",
                        "scopes": ["https://www.googleapis.com/auth/calendar"],
                    }
                )
            )
            token.chmod(0o600)
            lines.append(f'google_token_file = "{token}"')
        else:  # the streaming source reads Exchange only
            lines.append(f'google_token_file = "{work / "unused.json"}"')
        if not impersonate:
            lines.append('exchange_password_env = "CALSYNC_BENCH_PASSWORD"')
    path = work / "calsync.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


# --- (a) latency ---------------------------------------------------------------------------


class Arrivals:
    """When each summary was first committed to the Google stand-in (time.time()): a
    change listener, run under the stand-in's state lock, reading the changes since its
    last call from the calendar's change index."""

    def __init__(self, google: Any) -> None:
        self.google = google
        self.seen: dict[str, float] = {}
        self._position: dict[str, int] = {}
        google.state.change_listeners.append(self._on_change)

    def _on_change(self, calendar_id: str) -> None:
        now = time.time()
        calendar = self.google.state.calendars[calendar_id]
        last = self._position.get(calendar_id, 0)
        for event_id, position in reversed(calendar.changes.items()):
            if position <= last:
                break
            summary = calendar.events[event_id].resource.get("summary")
            if summary:
                self.seen.setdefault(summary, now)
        if calendar.changes:
            self._position[calendar_id] = next(reversed(calendar.changes.values()))

    def wait(self, summary: str, limit: float) -> float | None:
        deadline = time.monotonic() + limit
        while summary not in self.seen:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.002)
        return self.seen[summary]


class PollStarts(logging.Handler):
    """When the job's runs began, as the EWS stand-in saw them: its SyncFolderItems
    answers (only the job sends those here), those within `gap` s of one another one run."""

    def __init__(self, gap: float = 0.5) -> None:
        super().__init__(logging.INFO)
        self.gap = gap
        self.starts: list[float] = []
        self._last = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("SyncFolderItems ->"):
            if record.created - self._last > self.gap:
                self.starts.append(record.created)
            self._last = record.created

    def around(self, moment: float) -> tuple[float, float] | None:
        """The run start before `moment` and the first after it."""
        before = [t for t in self.starts if t <= moment]
        after = [t for t in self.starts if t > moment]
        return (before[-1], after[0]) if before and after else None


@dataclass
class Timed:
    """One mode's changes: (made at, in Google at) each, and serve's CPU over them."""

    made: list[float] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)
    missing: int = 0
    cpu_s: float = 0.0

    @property
    def latencies(self) -> list[float]:
        return sorted(a - m for m, a in zip(self.made, self.arrived, strict=True))


def changes(
    account: Any,
    arrivals: Arrivals,
    label: str,
    count: int,
    pause: Callable[[], float],
    limit: float,
    pid: int,
) -> Timed:
    """`count` changes, one at a time: even ones create an item, odd ones rename the
    item made just before; each waits until its summary is in Google."""
    timed = Timed()
    cpu_before = cpu_s(pid)
    item = None
    for n in range(count):
        time.sleep(pause())
        subject = f"{label} {n}"
        if item is None or n % 2 == 0:
            item = create(account, subject)
        else:
            item.subject = subject
            item.save(update_fields=["subject"])
        made = time.time()
        arrived = arrivals.wait(subject, limit)
        if arrived is None:
            timed.missing += 1
            continue
        timed.made.append(made)
        timed.arrived.append(arrived)
    timed.cpu_s = cpu_s(pid) - cpu_before
    return timed


@contextlib.contextmanager
def serve(config: Path, log: Path) -> Iterator[int]:
    args = [PYTHON, "-m", "sync.cli", "serve", "--config", str(config), "--port", "0"]
    with process(args, log, _SERVE_READY, CALSYNC_BENCH_PASSWORD=PASSWORD) as (child, _):
        yield child.pid


def latency(args: argparse.Namespace, work: Path) -> None:
    from emulators.ews import start_server
    from emulators.google.server import GoogleCalendarServer

    polls = PollStarts()
    ews_log = logging.getLogger("calsync.emulators.ews")
    ews_log.setLevel(logging.INFO)
    ews_log.addHandler(polls)
    ews = start_server(users={USER: PASSWORD})
    try:
        with GoogleCalendarServer(port=0, users=[USER]) as google:
            arrivals = Arrivals(google)
            account = mailbox(ews.url, USER)
            results: dict[str, Timed] = {}
            for mode in ("streaming", "poll"):
                folder = work / mode
                folder.mkdir()
                streamed = mode == "streaming"
                config = config_text(
                    folder,
                    ews_url=ews.url,
                    users=[USER],
                    google=google,
                    streaming=streamed,
                    interval_s=0.0 if streamed else args.poll_interval,
                )
                with serve(config, folder / "serve.log") as pid:
                    # warm: the start's catch-up run, then one change carried
                    create(account, f"{mode} warm-up")
                    if arrivals.wait(f"{mode} warm-up", 60) is None:
                        raise RuntimeError(
                            f"{mode}: nothing reached Google:\n"
                            + (folder / "serve.log").read_text()[-2000:]
                        )
                    if streamed:
                        results[mode] = changes(
                            account,
                            arrivals,
                            mode,
                            args.changes,
                            functools.partial(random.uniform, 0.05, 0.25),
                            10.0,
                            pid,
                        )
                    else:
                        cycle = args.poll_interval
                        results[mode] = changes(
                            account,
                            arrivals,
                            mode,
                            args.poll_changes,
                            functools.partial(random.uniform, 0.0, cycle),
                            cycle * 3 + 10,
                            pid,
                        )
    finally:
        ews.stop()
        ews_log.removeHandler(polls)
    report_latency(args, results, polls)


def report_latency(args: argparse.Namespace, results: dict[str, Timed], polls: PollStarts) -> None:
    from bench.proxy import percentile  # here: the child of (b) need not load it

    streamed, polled = results["streaming"], results["poll"]
    s = [x * 1000 for x in streamed.latencies]
    p = [x * 1000 for x in polled.latencies]
    scaled = []
    for made, arrived in zip(polled.made, polled.arrived, strict=True):
        cycle = polls.around(made)
        if cycle is None:
            continue
        before, after = cycle
        share = (after - made) / (after - before)  # of the cycle this change waited
        scaled.append((share * POLL_S + (arrived - after)) * 1000)
    scaled.sort()
    print(
        "\n(a) latency: a change made directly in Exchange (exchangelib, no proxy) -> "
        "the event committed in Google"
    )
    print(f"{'':<34}{'changes':>8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'min ms':>9}")

    def row(name: str, values: list[float], count: int | str, target: str = "") -> None:
        if not values:
            print(f"{name:<34}{'none':>8}")
            return
        print(
            f"{name:<34}{count!s:>8}{statistics.median(values):>10.0f}"
            f"{percentile(values, 0.99):>10.0f}{values[-1]:>10.0f}{values[0]:>9.0f}{target}"
        )

    row("streaming (no poll)", s, len(s), "   target p50 1000, p99 3000")
    row(f"poll every {args.poll_interval:g} s (measured)", p, len(p))
    row(f"poll every {POLL_S:.0f} s (scaled)", scaled, len(scaled))
    for name, timed in (("streaming", streamed), ("poll", polled)):
        if timed.missing:
            print(f"({name}: {timed.missing} changes never arrived)")
    if s and scaled:
        print(
            f"60 s poll / streaming: p50 {statistics.median(scaled) / statistics.median(s):,.0f}x, "
            f"p99 {percentile(scaled, 0.99) / percentile(s, 0.99):,.0f}x"
        )
    if s:
        print(
            f"calsync serve CPU per streamed change (notification read + the sync run): "
            f"{streamed.cpu_s / len(s) * 1000:.1f} ms"
        )
    print(
        f"(scaled: each polled change's wait as a share of its poll cycle, times {POLL_S:.0f} s, "
        "plus the run after the poll began)"
    )


# --- (b) 1,000 users ----------------------------------------------------------------------


def source_child(config_path: str) -> int:
    """The streaming source alone (`--source`): a trigger is a line on stdout
    ("trigger <time.time()> <mailbox>"); "started <time.time()>" once start() returned;
    SIGTERM stops it."""
    from sync.backends.clients import Clients
    from sync.config import load_config
    from sync.sources.streaming import Streaming

    logging.basicConfig(level=logging.WARNING)
    config = load_config(config_path)
    lock = threading.Lock()

    def trigger(user: Any) -> None:
        with lock:
            sys.stdout.write(f"trigger {time.time():.6f} {user.mailbox}\n")
            sys.stdout.flush()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    source = Streaming(config, Clients(config), trigger)
    with lock:
        print(f"starting {time.time():.6f}", flush=True)
    source.start()
    stop.wait()
    source.stop(timeout=5.0)
    return 0


class Source:
    """The child process running the streaming source, and what it triggered."""

    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        self.child = child
        self.pid = child.pid
        self.started: float | None = None
        self.triggers: dict[str, list[float]] = {}
        self.count = 0
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.child.stdout is not None
        for raw in self.child.stdout:
            word, at, *rest = raw.decode().split()
            with self.changed:
                if word == "starting":
                    self.started = float(at)
                elif word == "trigger":
                    self.triggers.setdefault(rest[0], []).append(float(at))
                    self.count += 1
                self.changed.notify_all()

    def wait(self, predicate: Callable[[], bool], limit: float) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, limit)

    def triggered_after(self, user: str, moment: float) -> float | None:
        return next((t for t in self.triggers.get(user, ()) if t >= moment), None)

    def wait_trigger(self, user: str, moment: float, limit: float) -> float | None:
        """When the source first triggered `user` at or after `moment` (time.time())."""
        self.wait(lambda: self.triggered_after(user, moment) is not None, limit)
        return self.triggered_after(user, moment)


@dataclass
class Scale:
    name: str
    users: int
    connections: int = 0
    subscriptions: int = 0
    setup_s: float = math.nan
    resubscribe_s: float = math.nan
    source_mib: tuple[float, float] = (math.nan, math.nan)
    ews_mib: tuple[float, float] = (math.nan, math.nan)
    source_idle_cpu_min: float = math.nan
    ews_idle_cpu_min: float = math.nan
    source_cpu_per_note_ms: float = math.nan
    ews_cpu_per_note_ms: float = math.nan
    delays: list[float] = field(default_factory=list)
    missing: int = 0


def wait_counted(base: str, subscriptions: int, connections: int, limit: float) -> float | None:
    """time.time() once the stand-in counts these subscriptions and open streams."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        status = admin(base, "/_admin/subscriptions")
        if status["subscriptions"] >= subscriptions and status["connections"] >= connections:
            return time.time()
        time.sleep(0.05)
    return None


def scale_run(args: argparse.Namespace, work: Path, grouped: bool, users: int) -> Scale:
    name = "grouped" if grouped else "baseline"
    folder = work / name
    folder.mkdir()
    addresses = [f"user{n:04d}@example.com" for n in range(users)]
    expected = math.ceil(users / PER_CONNECTION) if grouped else users
    result = Scale(name, users)
    ews_args = [PYTHON, "-m", "emulators.ews", "--impersonator", f"{SERVICE}:{SERVICE_PASSWORD}"]
    for address in addresses:
        ews_args += ["--user", f"{address}:{PASSWORD}"]
    with process(ews_args, folder / "ews.log", _EWS_READY) as (ews, ews_url):
        base = ews_url.split("/EWS/")[0]
        config = config_text(folder, ews_url=ews_url, users=addresses, impersonate=grouped)
        ews_before = rss_mib(ews.pid)
        source_args = [PYTHON, str(Path(__file__).resolve()), "--source", str(config)]
        with process(
            source_args,
            folder / "source.log",
            None,
            CALSYNC_BENCH_PASSWORD=PASSWORD,
            CALSYNC_BENCH_SERVICE_PASSWORD=SERVICE_PASSWORD,
        ) as (child, _):
            source = Source(child)
            if not source.wait(lambda: source.started is not None, 60):
                raise RuntimeError(f"{name}: the source did not start")
            source_before = rss_mib(child.pid)
            assert source.started is not None
            ready = wait_counted(base, users, expected, args.setup_limit)
            status = admin(base, "/_admin/subscriptions")
            result.connections, result.subscriptions = (
                status["connections"],
                status["subscriptions"],
            )
            if ready is None:
                print(f"({name}: not every subscription or connection after {args.setup_limit} s)")
                return result
            result.setup_s = ready - source.started
            # the start's catch-up triggers every user once; then it is idle
            source.wait(lambda: source.count >= users, 60)
            time.sleep(1.0)
            result.source_mib = (source_before, rss_mib(child.pid))
            result.ews_mib = (ews_before, rss_mib(ews.pid))

            idle = (cpu_s(child.pid), cpu_s(ews.pid), time.monotonic())
            time.sleep(args.idle_seconds)
            idle_took = time.monotonic() - idle[2]
            source_idle = (cpu_s(child.pid) - idle[0]) / idle_took
            ews_idle = (cpu_s(ews.pid) - idle[1]) / idle_took
            result.source_idle_cpu_min = source_idle * 60
            result.ews_idle_cpu_min = ews_idle * 60

            notify(
                args,
                ews_url,
                addresses,
                source,
                child.pid,
                ews.pid,
                (source_idle, ews_idle),
                result,
            )

            recycled = time.time()
            admin(base, "/_admin/recycle", "POST")
            again = wait_counted(base, users, expected, args.setup_limit)
            if again is not None:
                result.resubscribe_s = again - recycled
    return result


def notify(
    args: argparse.Namespace,
    ews_url: str,
    addresses: list[str],
    source: Source,
    source_pid: int,
    ews_pid: int,
    idle: tuple[float, float],
    result: Scale,
) -> None:
    """`--notifications` creates, each in another user's calendar (the service account
    impersonating her), each waited for until the source triggered her."""
    chosen = random.sample(addresses, min(args.notifications, len(addresses)))
    accounts = [mailbox(ews_url, a, impersonate=True) for a in chosen]
    create(accounts[0], "warm-up")  # the client's connection and exchangelib's first call
    source.wait_trigger(chosen[0], 0, 10)
    began = (cpu_s(source_pid), cpu_s(ews_pid), time.monotonic())
    for address, account in zip(chosen, accounts, strict=True):
        asked = time.time()
        create(account, "Made in OWA")
        made = time.time()
        # the trigger may come before exchangelib has read the answer: one after the
        # request went out is this change's (0 ms when it came before the answer)
        at = source.wait_trigger(address, asked, 10)
        if at is not None:
            result.delays.append(max(0.0, at - made))
        else:
            result.missing += 1
    took = time.monotonic() - began[2]
    notes = len(result.delays) or 1
    result.source_cpu_per_note_ms = (cpu_s(source_pid) - began[0] - idle[0] * took) / notes * 1000
    result.ews_cpu_per_note_ms = (cpu_s(ews_pid) - began[1] - idle[1] * took) / notes * 1000
    result.delays.sort()


def scale(args: argparse.Namespace, work: Path) -> None:
    from bench.proxy import percentile

    grouped = scale_run(args, work, True, args.users)
    baseline = scale_run(args, work, False, args.baseline_users)
    g, b = grouped, baseline
    print(
        f"\n(b) streaming subscriptions on users' calendars: grouped ({g.users:,} users, "
        f"impersonation, {PER_CONNECTION} a connection) vs baseline ({b.users:,} users, a "
        "connection each)"
    )
    print(f"{'':<44}{'grouped':>11}{'baseline':>11}{'ratio':>8}")

    def row(name: str, gv: float, bv: float, fmt: str = ".1f", compare: bool = True) -> None:
        """`compare`: a figure of one user or one notification, so the runs' sizes do
        not matter; totals are printed without a ratio when the sizes differ."""
        same = compare or g.users == b.users
        ratio = f"{gv / bv:.2f}" if same and bv and not math.isnan(gv + bv) else ""
        print(f"{name:<44}{gv:>11{fmt}}{bv:>11{fmt}}{ratio:>8}")

    row("streaming connections", g.connections, b.connections, ".0f", False)
    row("  users per connection", g.users / max(1, g.connections), b.users / max(1, b.connections))
    row("subscriptions", g.subscriptions, b.subscriptions, ".0f", False)
    row("setup s (start -> every one live)", g.setup_s, b.setup_s, ".2f", False)
    row("  per user ms", g.setup_s * 1000 / g.users, b.setup_s * 1000 / b.users, ".2f")
    row("resubscribe all after a recycle s", g.resubscribe_s, b.resubscribe_s, ".2f", False)
    row(
        "  per user ms",
        g.resubscribe_s * 1000 / g.users,
        b.resubscribe_s * 1000 / b.users,
        ".2f",
    )
    row("source RSS MiB before start", g.source_mib[0], b.source_mib[0])
    row("source RSS MiB subscribed", g.source_mib[1], b.source_mib[1], ".1f", False)
    row(
        "  KiB per user",
        (g.source_mib[1] - g.source_mib[0]) * 1024 / g.users,
        (b.source_mib[1] - b.source_mib[0]) * 1024 / b.users,
    )
    row("stand-in RSS MiB before", g.ews_mib[0], b.ews_mib[0], ".1f", False)
    row("stand-in RSS MiB subscribed", g.ews_mib[1], b.ews_mib[1], ".1f", False)
    row(
        "  KiB per user",
        (g.ews_mib[1] - g.ews_mib[0]) * 1024 / g.users,
        (b.ews_mib[1] - b.ews_mib[0]) * 1024 / b.users,
    )
    row(
        "source CPU ms per idle minute",
        g.source_idle_cpu_min * 1000,
        b.source_idle_cpu_min * 1000,
        ".0f",
        False,
    )
    row(
        "stand-in CPU ms per idle minute",
        g.ews_idle_cpu_min * 1000,
        b.ews_idle_cpu_min * 1000,
        ".0f",
        False,
    )
    row("source CPU ms per notification", g.source_cpu_per_note_ms, b.source_cpu_per_note_ms, ".2f")
    row(
        "stand-in CPU ms per change (its write incl.)",
        g.ews_cpu_per_note_ms,
        b.ews_cpu_per_note_ms,
        ".2f",
    )
    for label, share in (("p50", 0.5), ("p99", 0.99)):
        row(
            f"change -> trigger ms {label}",
            percentile(g.delays, share) * 1000 if g.delays else math.nan,
            percentile(b.delays, share) * 1000 if b.delays else math.nan,
        )
    print(
        f"(notifications timed: {len(g.delays)} grouped, {len(b.delays)} baseline; never "
        f"triggered: {g.missing}, {b.missing}; idle CPU over {args.idle_seconds:g} s, in "
        "10 ms clock ticks; a heartbeat every 45 s a connection)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=100, help="(a) streamed changes timed")
    parser.add_argument("--poll-changes", type=int, default=30, help="(a) polled changes timed")
    parser.add_argument(
        "--poll-interval", type=float, default=2.0, help="(a) the poll measured, in seconds"
    )
    parser.add_argument("--users", type=int, default=1000, help="(b) users subscribed")
    parser.add_argument("--baseline-users", type=int, default=200, help="(b) users of the baseline")
    parser.add_argument(
        "--notifications", type=int, default=200, help="(b) changes timed and costed"
    )
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="(b) idle window for CPU")
    parser.add_argument(
        "--setup-limit", type=float, default=300.0, help="(b) longest wait for every subscription"
    )
    parser.add_argument("--only", choices=("latency", "scale"), help="run one part")
    parser.add_argument("--source", help=argparse.SUPPRESS)  # the child of (b)
    args = parser.parse_args()
    if args.source:
        return source_child(args.source)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        os.environ.pop(name, None)
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    work = Path(tempfile.mkdtemp(prefix="calsync-bench-streaming-"))
    try:
        if args.only in (None, "latency"):
            latency(args, work)
        if args.only in (None, "scale"):
            scale(args, work)
    finally:
        if os.environ.get("CALSYNC_BENCH_KEEP"):
            print(work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
